/* shim_service: the shim's service actor ("shim").
 *
 * Serves containerd.task.v2.Task over ttRPC on its own loop (the listener
 * and every connection are watched by the actor's event_base) and maps
 * each RPC onto rt.* requests to the runtime actor:
 *
 *   Create  -> mount rootfs, open the stdio fifos, rt.create
 *   Start   -> rt.start (init) / rt.exec (an exec registered by Exec)
 *   Exec    -> kept until its Start; TaskExecAdded
 *   Kill    -> rt.kill            Pause/Resume -> rt.pause / rt.resume
 *   Pids    -> rt.ps              Update       -> rt.update, then with the
 *                                 annotation SVC_SHIM_ANN_NETWORK_RESCAN
 *                                 "true": rt.update_network
 *   Stats   -> rt.stats_get       (io.containerd.cgroups.v2.Metrics)
 *   Delete  -> rt.delete (init); an exec is only forgotten
 *   Wait    -> answered when rt.exited (event) names the process
 *   ResizePty -> agent.tty_resize; CloseIO -> agent.close_stdin
 *   State, Connect, Shutdown: answered from the actor's own state
 *   Checkpoint: Unimplemented
 *
 * stdio: agent.output events are written to the stdout/stderr fifos
 * (opened O_RDWR|O_NONBLOCK, so they never block and never EPIPE; a fifo
 * that is full is watched for writability) and their credit returned with
 * agent.output_ack once written; the stdin fifo is read when readable and
 * sent as agent.write_stdin, one chunk in flight, EOF as agent.close_stdin.
 *
 * Events go to containerd through svc_ttrpc_publisher (Events/Forward on
 * $TTRPC_ADDRESS) in the order svc_shim_order_may() allows.  Shutdown with
 * no container left writes exit_fd, which ends the daemon. */
#ifndef HUSK_SERVICES_SHIM_SERVICE_H
#define HUSK_SERVICES_SHIM_SERVICE_H

#include "actors/actor.h"
#include "common/err.h"

#define SVC_SHIM_ACTOR_NAME "shim"

/* UpdateTaskRequest annotation (husk-specific; containerd's task API has no
 * network verb): "true" asks the runtime to rescan the pod's network
 * namespace and hot-plug/unplug the VM's NICs to match, after the
 * resources (if any) are applied. */
#define SVC_SHIM_ANN_NETWORK_RESCAN "io.husk.network.rescan"

typedef struct svc_shim_service_opts {
    int listen_fd;             /* listening ttRPC socket (taken), or -1 */
    const char *address;       /* when listen_fd < 0: listen here ("unix:///path") */
    const char *ns;            /* containerd namespace (-namespace) */
    const char *ttrpc_address; /* $TTRPC_ADDRESS; NULL or "": events are only logged */
    int exit_fd;               /* eventfd written once when the shim may exit */
} svc_shim_service_opts_t;

/* Starts the service actor on the bus of opts.  Strings are copied.
 * Caller owns *out and must stop it with actor_stop(). */
int svc_shim_service_start(const actor_opts_t *ao, const svc_shim_service_opts_t *o, actor_t **out,
                           err_t *err);

#endif
