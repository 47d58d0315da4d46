/* shim_cmd: the commands of containerd-shim-husk-v2 (the binary protocol
 * of containerd 1.6; see docs/shim.md).  Each returns the process exit
 * status. */
#ifndef HUSK_SERVICES_SHIM_CMD_H
#define HUSK_SERVICES_SHIM_CMD_H

#include "services/shim.h"

/* `start`: cwd is the bundle.  Finds the pod's shim (its socket listens)
 * or binds the socket and spawns the daemon with it as fd 3; writes the
 * address file and prints the address.  Prints nothing else on stdout or
 * stderr: containerd reads both as the address. */
int svc_shim_cmd_start(const svc_shim_args_t *args);

/* `delete`: the task's shim is gone (or the task is).  Unmounts the
 * rootfs, asks a live shim to forget the task, else cleans the sandbox
 * state a dead shim left; prints a DeleteResponse (137, now). */
int svc_shim_cmd_delete(const svc_shim_args_t *args);

/* No action: the long-running daemon, serving fd 3 (or -socket). */
int svc_shim_cmd_serve(const svc_shim_args_t *args);

#endif
