/* daemon: the sandbox daemon behind the husk CLI.
 *
 * One process per sandbox: a bus with ipc endpoints in <root>/<sandbox-id>/
 * (bus.sock, tap.sock) and the actors runtime, hypervisor and agent.  The
 * CLI starts it on the first create of a sandbox (`husk __daemon ID`) and
 * talks to it over bus.sock.  It runs until the sandbox is gone (its last
 * container deleted, or rt.shutdown), or SIGTERM/SIGINT, which shuts the
 * sandbox down first. */
#ifndef HUSK_DAEMON_H
#define HUSK_DAEMON_H

#include "actors/actor.h"
#include "common/err.h"

typedef struct svc_daemon_opts {
    const char *root;        /* runtime root, e.g. /run/husk */
    const char *sandbox_id;  /* the sandbox this daemon serves */
    const char *config_path; /* --config, or NULL for the usual resolution */
    /* path of the running husk binary (husk-agent is found next to it,
     * unless HUSK_AGENT_BINARY names it); NULL = /proc/self/exe */
    const char *exe;
    void (*ready)(
        void *arg); /* called once the bus and actors are up (e.g. to signal the parent) */
    void *ready_arg;
    /* Optional front end run as one more actor of the daemon (the shim's
     * ttRPC service), started after the runtime.  exit_fd is an eventfd it
     * writes when the daemon should end.  With a front end, the runtime
     * being done (its last container deleted) no longer ends the daemon:
     * only exit_fd does, or a signal (which shuts the sandbox down first).
     * The front end is stopped before the other actors.  NULL: none. */
    int (*frontend_start)(const actor_opts_t *ao, int exit_fd, void *arg, actor_t **out,
                          err_t *err);
    void *frontend_arg;
    /* Restore (docs/state.md): take over the running sandbox of an existing
     * state directory (its previous daemon died, its VMM lives).  The bus
     * opens and `ready` is called only once the restore succeeded; when it
     * gives up (VMM killed, containers stopped) the daemon returns < 0. */
    bool restore;
} svc_daemon_opts_t;

/* Runs the daemon; returns 0 after an orderly end, < 0 when it could not
 * start or shut down cleanly. */
int svc_daemon_run(const svc_daemon_opts_t *opts, err_t *err);

#endif
