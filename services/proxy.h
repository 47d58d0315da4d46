/* proxy: the host process that stands for one container process.
 *
 * `husk create|run|exec` leaves one proxy per container process behind
 * (a fresh exec of `husk __proxy ...`, so that no zmq state of the CLI
 * crosses the fork).  Its pid is what --pid-file, `state` and `list`
 * report, so that conmon, containerd-shim-runc-v2 and shells see an
 * ordinary child process (reparented to them when the CLI exits):
 *
 *   - it joins the sandbox's bus over ipc:// as the actor
 *     `proxy-<id>[-<exec-id>]` and subscribes to agent.output,
 *     agent.exited, agent.lost, hv.exited, rt.exited, rt.state_changed;
 *   - it writes the process's output to its stdout/stderr (or the pty)
 *     from writer threads and returns credit with agent.output_ack once a
 *     chunk is written;
 *   - it copies its stdin (or the pty) into agent.write_stdin, and sends
 *     agent.close_stdin at EOF;
 *   - it forwards every catchable signal it receives with rt.kill, and
 *     SIGWINCH as agent.tty_resize when there is a terminal;
 *   - with a console socket it allocates a host pty, sends the master
 *     over the socket exactly as runc does (one sendmsg: payload
 *     "/dev/ptmx", one SCM_RIGHTS fd), keeps the slave as its controlling
 *     terminal and stdio (raw mode: the guest's pty does the line
 *     discipline), so that resizes reach it as SIGWINCH;
 *   - it exits with the process's status as a shell reports it (the code,
 *     or 128+signal: conmon and containerd's reaper compute exactly that
 *     from a plain exit, and re-raising would risk core dumps), once the
 *     output is drained (EOF on every stream, or 2 s after the exit);
 *   - it exits 255 with a message on stderr when the sandbox is lost
 *     (agent.lost, hv.exited, or the broker stops answering pings).
 *
 * Sync protocol with the CLI over a socketpair (--sync-fd): the proxy
 * writes "ok\n" once it is on the bus (and the pty master was sent), or
 * "error: <text>\n"; the CLI then creates/execs the process and writes
 * "go\n" (stdin relaying and signal forwarding start), or closes the
 * socket (the proxy exits 255). */
#ifndef HUSK_PROXY_H
#define HUSK_PROXY_H

#include <stdbool.h>

#include "common/err.h"

typedef struct proxy_opts {
    const char *endpoint;       /* the bus's ipc:// endpoint */
    const char *id;             /* container id */
    const char *exec_id;        /* "" or NULL: the container's init */
    int sync_fd;                /* socketpair end to the CLI, -1: none (go at once) */
    bool terminal;              /* the process has a terminal */
    const char *console_socket; /* send a pty master there (terminal only) */
    unsigned rows, cols;        /* initial console size, 0: unknown */
} proxy_opts_t;

/* Runs the proxy until the process exits; returns the exit status. */
int proxy_run(const proxy_opts_t *opts);

/* `husk __proxy --endpoint E --id C [--exec-id X] [--sync-fd N]
 * [--terminal] [--console-socket P] [--console-size ROWSxCOLS]`. */
int proxy_main(int argc, char **argv);

/* Builds the argv tail after "__proxy" (for the CLI).  Caller frees each
 * string and the array (NULL-terminated). */
char **proxy_argv(const proxy_opts_t *opts);

/* Sends fd over the unix socket `path` as runc does (payload name).
 * Returns 0 or < 0 with err. */
int proxy_send_console(const char *path, int fd, const char *name, err_t *err);

#endif
