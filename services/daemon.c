#include "services/daemon.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "actors/client.h"
#include "hypervisors/hypervisor_actor.h"
#include "resources/resource_actor.h"
#include "runtimes/runtime_actor.h"
#include "agent/agent_actor.h"
#include "persist/persist_actor.h"
#include "bus/bus.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"

#define SHUTDOWN_TIMEOUT_MS 30000
/* a restore's own steps are bounded (attach 20 s, connect 15 s, list 10 s
 * and a give-up's stop 10 s): this only guards against a lost answer */
#define RESTORE_WAIT_MS 70000

/* HUSK_AGENT_BINARY names husk-agent when it is not installed next to
 * husk (tests run the daemon from a test binary, packagers may split
 * directories); it must be an absolute path (the local backend checks). */
static char *agent_binary_for(const char *exe)
{
    const char *env = getenv("HUSK_AGENT_BINARY");
    if (env && *env)
        return strdup(env);
    char self[PATH_MAX];
    if (!exe) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n < 0)
            return NULL;
        self[n] = 0;
        exe = self;
    }
    char *dir = strdup(exe), *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    char *path = NULL;
    if (asprintf(&path, "%s/husk-agent", dir) < 0)
        path = NULL;
    free(dir);
    return path;
}

/* Asks the runtime to shut the sandbox down (VM, resources, state)
 * without waiting for its answer: the daemon's loop keeps watching for a
 * second signal and for the runtime's done, up to SHUTDOWN_TIMEOUT_MS.
 * False when the request could not be sent: the caller then leaves at
 * once (the hypervisor actor's fini kills the VM).  *client stays open
 * until the daemon leaves, so that the request is not dropped with it. */
static bool request_shutdown(bus_t *bus, bus_client_t **client)
{
    err_t err = ERR_INIT;
    if (bus_client_new(bus_ipc_endpoint(bus), "daemon-signal", client, &err) < 0) {
        log_error("shutdown: %s", err_str(&err));
        err_clear(&err);
        return false;
    }
    msg_t *m = msg_new(MSG_RT_SHUTDOWN);
    bool ok = bus_client_send(*client, RT_ACTOR_NAME, &m, &err) == 0;
    if (!ok)
        log_error("shutdown: %s; leaving without it", err_str(&err));
    msg_destroy(&m);
    err_clear(&err);
    return ok;
}

/* One daemon per sandbox at a time: a daemon holds an abstract unix
 * socket named after its runtime root and sandbox id for its whole life
 * (the kernel frees the name when the process is gone, nothing is left on
 * disk).  A new daemon for the same id -- a create right after the last
 * delete -- waits here until the old one has finished its teardown, which
 * would otherwise clobber the new one's bus socket and cgroups. */
#define CLAIM_WAIT_MS 20000

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int claim_sandbox(const char *root, const char *id, int wait_ms, err_t *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "husk-daemon:%016llx:%016llx:%.40s",
                     (unsigned long long)fnv1a(root), (unsigned long long)fnv1a(id), id);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_errno(err, "daemon: socket");
    for (int waited = 0;; waited += 50) {
        if (bind(fd, (struct sockaddr *)&sa, len) == 0)
            return fd; /* held until exit */
        if (errno != EADDRINUSE || waited >= wait_ms) {
            int r = errno == EADDRINUSE
                        ? err_make(err, EBUSY,
                                   "sandbox %s: its previous daemon is still running after %d ms",
                                   id, wait_ms)
                        : err_errno(err, "daemon: bind its claim");
            close(fd);
            return r;
        }
        if (waited == 0)
            log_info("sandbox %s: waiting for its previous daemon to finish", id);
        usleep(50000);
    }
}

/* Restore: the bus opens to clients only once the runtime has the
 * sandbox back (or gave it up). */
static int wait_restored(int fd, const char *id, err_t *err)
{
    struct pollfd p = {fd, POLLIN, 0};
    int r;
    while ((r = poll(&p, 1, RESTORE_WAIT_MS)) < 0 && errno == EINTR)
        ;
    uint64_t v = 0;
    if (r <= 0 || read(fd, &v, sizeof v) != sizeof v)
        return err_make(err, ETIMEDOUT, "restore of sandbox %s: no outcome within %d s", id,
                        RESTORE_WAIT_MS / 1000);
    if (v != 1)
        return err_make(err, EIO, "restore of sandbox %s failed: it is stopped (see the log)", id);
    return 0;
}

int svc_daemon_run(const svc_daemon_opts_t *o, err_t *err)
{
    /* signals arrive on a signalfd; every thread inherits the mask */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    log_set_sandbox(o->sandbox_id);
    log_set_component("daemon");

    cfg_t *cfg = NULL;
    bus_t *bus = NULL;
    bus_client_t *sig_client = NULL; /* carries rt.shutdown after a signal */
    actor_t *hv = NULL, *rt = NULL, *fe = NULL, *pst = NULL, *res = NULL;
    agent_actor_t *agent = NULL;
    char *agent_bin = NULL;
    int done_fd = -1, sig_fd = -1, fe_fd = -1, claim_fd = -1, restored_fd = -1, rc;
    char dir[PATH_MAX];

    if ((rc = cfg_load(o->config_path, &cfg, err)) < 0)
        goto out;
    /* a restore finding the claim held: another daemon has the sandbox
     * (or is restoring it), nothing to wait for */
    if ((claim_fd = claim_sandbox(o->root, o->sandbox_id, o->restore ? 0 : CLAIM_WAIT_MS, err)) <
        0) {
        rc = claim_fd;
        goto out;
    }
    if (mkdir(o->root, 0700) < 0 && errno != EEXIST) {
        rc = err_errno(err, "create runtime root %s", o->root);
        goto out;
    }
    snprintf(dir, sizeof dir, "%s/%s", o->root, o->sandbox_id);
    bus_opts_t bo = {.dir = dir, .name = o->sandbox_id, .hold_ipc = true};
    if ((rc = bus_new(&bo, &bus, err)) < 0)
        goto out;
    done_fd = eventfd(0, EFD_CLOEXEC);
    sig_fd = signalfd(-1, &set, SFD_CLOEXEC);
    agent_bin = agent_binary_for(o->exe);
    if (done_fd < 0 || sig_fd < 0 || !agent_bin) {
        rc = err_errno(err, "daemon set-up");
        goto out;
    }
    actor_opts_t ao = {
        .zctx = bus_context(bus), .endpoint = bus_endpoint(bus), .sandbox = o->sandbox_id};
    /* first up, last down: the runtime's state writes go through it */
    if ((rc = persist_actor_start(&ao, o->root, &pst, err)) < 0)
        goto out;
    if ((rc = hv_actor_start(&ao, cfg, agent_bin, &hv, err)) < 0)
        goto out;
    if ((rc = res_actor_start(&ao, NULL, &res, err)) < 0)
        goto out;
    agent_actor_opts_t aopts = {.fd = -1};
    if ((rc = agent_actor_start(&ao, &aopts, &agent, err)) < 0)
        goto out;
    if (o->restore && (restored_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
        rc = err_errno(err, "daemon set-up");
        goto out;
    }
    rt_actor_opts_t ro = {.cfg = cfg,
                          .root = o->root,
                          .sandbox_id = o->sandbox_id,
                          .done_fd = done_fd,
                          .restore = o->restore,
                          .restored_fd = restored_fd};
    if ((rc = rt_actor_start(&ao, &ro, &rt, err)) < 0)
        goto out;
    if (o->restore && (rc = wait_restored(restored_fd, o->sandbox_id, err)) < 0)
        goto out;
    if (o->frontend_start) {
        if ((fe_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
            rc = err_errno(err, "daemon set-up");
            goto out;
        }
        if ((rc = o->frontend_start(&ao, fe_fd, o->frontend_arg, &fe, err)) < 0)
            goto out;
    }
    if ((rc = bus_open_ipc(bus, err)) < 0) /* clients wait for bus.sock: all is up now */
        goto out;
    log_info("sandbox daemon up: backend %s, bus %s", cfg->backend ? cfg->backend : "qemu",
             bus_ipc_endpoint(bus));
    if (o->ready)
        o->ready(o->ready_arg);

    bool shutting = false;
    bool rt_done = false;
    int64_t shutdown_deadline = 0;
    for (;;) {
        struct pollfd p[3] = {
            {rt_done ? -1 : done_fd, POLLIN, 0}, {sig_fd, POLLIN, 0}, {fe_fd, POLLIN, 0}};
        int wait_ms = -1;
        if (shutting) {
            int64_t left = shutdown_deadline - clock_mono_ms();
            if (left <= 0) {
                log_error("shutdown: the runtime did not finish in %d s; leaving without it",
                          SHUTDOWN_TIMEOUT_MS / 1000);
                break;
            }
            wait_ms = (int)left;
        }
        if (poll(p, 3, wait_ms) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[2].revents)
            break; /* the front end is done */
        if (p[0].revents) {
            if (!fe || shutting)
                break;
            rt_done = true; /* the front end decides when to leave */
        }
        if (p[1].revents) {
            struct signalfd_siginfo si;
            if (read(sig_fd, &si, sizeof si) == sizeof si)
                log_info("signal %u: shutting the sandbox down", si.ssi_signo);
            if (rt_done)
                break; /* the sandbox is already gone */
            if (!shutting) {
                shutting = true;
                shutdown_deadline = clock_mono_ms() + SHUTDOWN_TIMEOUT_MS + 2000;
                if (!request_shutdown(bus, &sig_client)) /* else the runtime signals done_fd */
                    break;
            } else {
                break; /* a second signal: leave now */
            }
        }
    }
    rc = 0;
out:
    bus_client_destroy(&sig_client);
    actor_stop(&fe, 5000);
    actor_stop(&rt, 5000);
    agent_actor_stop(&agent, 5000);
    actor_stop(&hv, 10000); /* its fini kills the VM if it still runs */
    actor_stop(&res, 5000); /* then the cgroup is empty: its fini releases what is left */
    actor_stop(&pst, 5000);
    bus_destroy(&bus);
    if (done_fd >= 0)
        close(done_fd);
    if (sig_fd >= 0)
        close(sig_fd);
    if (fe_fd >= 0)
        close(fe_fd);
    free(agent_bin);
    cfg_destroy(&cfg);
    if (restored_fd >= 0)
        close(restored_fd);
    if (claim_fd >= 0)
        close(claim_fd); /* the next daemon of this sandbox may start */
    return rc;
}
