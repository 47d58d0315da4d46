/* oci_run: runs an OCI bundle with agent/guest/container on this host, for
 * the e2e tests.
 *
 *   oci_run [--cgroup DIR] [--exec PROCESS_JSON] BUNDLE
 *
 * Loads BUNDLE/config.json, creates and starts the container with this
 * program's stdio (or relays a pty when process.terminal is set), waits,
 * and exits with the container's status (128+signal when killed).  With
 * --exec, once the container runs, also runs PROCESS_JSON in it (runc exec
 * --process), waits for that, kills the container and exits with the exec'd
 * process's status.  Errors go to stderr as "oci_run: <message>", exit 125.
 *
 * agent/guest/ is not part of libhusk-core.a (the Makefile builds it only
 * into husk-agent), so the guest modules are compiled in here. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/guest/container.h"

static int die(err_t *err, const char *what)
{
    fprintf(stderr, "oci_run: %s%s%s\n", what ? what : "", what ? ": " : "", err_str(err));
    err_clear(err);
    return 125;
}

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 125;
}

static int wait_for(pid_t pid)
{
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return 125;
    }
    return status_code(st);
}

/* Copies stdin -> master and master -> stdout until the pty hangs up. */
static void relay(int master)
{
    char buf[4096];
    bool in_open = true;
    for (;;) {
        struct pollfd p[2] = {{.fd = master, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
        int n = poll(p, in_open ? 2 : 1, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return;
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = read(master, buf, sizeof(buf));
            if (r <= 0)
                return; /* EIO: every slave closed */
            if (write(1, buf, (size_t)r) < 0)
                return;
        }
        if (in_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = read(0, buf, sizeof(buf));
            if (r <= 0)
                in_open = false;
            else if (write(master, buf, (size_t)r) < 0)
                return;
        }
    }
}

int main(int argc, char **argv)
{
    const char *cgroup = NULL, *exec_json = NULL, *bundle = NULL;
    err_t err = ERR_INIT;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--cgroup") == 0 && i + 1 < argc)
            cgroup = argv[++i];
        else if (strcmp(argv[i], "--exec") == 0 && i + 1 < argc)
            exec_json = argv[++i];
        else if (argv[i][0] != '-' && !bundle)
            bundle = argv[i];
        else {
            fprintf(stderr, "usage: oci_run [--cgroup DIR] [--exec PROCESS_JSON] BUNDLE\n");
            return 125;
        }
    }
    if (!bundle) {
        fprintf(stderr, "usage: oci_run [--cgroup DIR] [--exec PROCESS_JSON] BUNDLE\n");
        return 125;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/config.json", bundle);
    oci_spec_t *spec = NULL;
    if (oci_spec_load(path, &spec, &err) < 0)
        return die(&err, NULL);
    for (int k = 0; k < OCI_HOOK_NKINDS; k++)
        if (spec->n_hooks[k]) {
            fprintf(stderr, "oci_run: hooks.%s: hooks are not run by this helper\n",
                    oci_hook_kind_name(k));
            return 125;
        }
    oci_process_t *xproc = NULL;
    if (exec_json && oci_process_load(exec_json, &xproc, &err) < 0)
        return die(&err, NULL);

    signal(SIGPIPE, SIG_IGN);
    container_config_t cfg = {
        .spec = spec, .bundle = bundle, .cgroup_path = cgroup, .stdio = {0, 1, 2}};
    container_t *c = NULL;
    if (container_create(&cfg, &c, &err) < 0)
        return die(&err, "create");
    int console = container_take_console(c);
    if (container_start(c, &err) < 0) {
        int rc = die(&err, "start");
        wait_for(container_pid(c));
        return rc;
    }
    pid_t pid = container_pid(c);
    int rc;
    if (xproc) {
        container_exec_config_t x = {.init_pid = pid,
                                     .spec = spec,
                                     .process = xproc,
                                     .cgroup_path = cgroup,
                                     .stdio = {0, 1, 2}};
        pid_t xpid;
        int xconsole = -1;
        if (container_exec(&x, &xpid, &xconsole, &err) < 0) {
            rc = die(&err, "exec");
        } else {
            if (xconsole >= 0) {
                relay(xconsole);
                close(xconsole);
            }
            rc = wait_for(xpid);
        }
        kill(pid, SIGKILL);
        if (console >= 0)
            close(console);
        wait_for(pid);
    } else {
        if (console >= 0) {
            relay(console);
            close(console);
        }
        rc = wait_for(pid);
    }
    container_destroy(&c);
    oci_process_destroy(&xproc);
    oci_spec_destroy(&spec);
    return rc;
}
