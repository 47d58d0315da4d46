/* local: the no-VM backend.
 *
 * Runs husk-agent as a host process in fresh namespaces (mount, pid, ipc,
 * uts, and net unless a network namespace is given) instead of inside a
 * VM.  It gives container isolation only — no VM boundary — and says so
 * when it starts.  It exists so that every layer above can be exercised in
 * milliseconds and used on hosts without virtualization.
 *
 * The agent channel has the same shape as qemu's: a unix socket at
 * <sandbox dir>/agent.sock, listening, handed to the agent as fd 3
 * (`husk-agent --channel-fd 3 --root <sandbox dir>/agent`); the agent
 * actor connects to it.  The agent accepts one host connection at a time
 * and waits for the next after EOF, so it outlives a daemon that dies (no
 * PR_SET_PDEATHSIG) and a new daemon takes it over with hv_attach.  The
 * agent's death is seen through a pidfd (an attached agent is not our
 * child: no exit status). */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <linux/sched.h> /* struct clone_args, CLONE_INTO_CGROUP */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "hypervisors/hv-internal.h"

#define LOCAL_CHANNEL_FD 3

enum lstate { L_NEW = 0, L_RUNNING, L_STOPPING, L_EXITED };

struct local {
    hv_t *hv;
    enum lstate state;
    pid_t pid;
    int pidfd;
    bool attached; /* taken over from a previous daemon: not our child */
    struct event *pid_ev;
    struct event *kill_timer;
    bool stop_requested;
    hv_done_fn stop_done;
    void *stop_arg;
    char *agent_path; /* listening socket */
    char *root;       /* the agent's state dir */
    char *log_path;   /* the agent's stderr */
    char *netns;      /* join this netns instead of a new one (optional) */
    char cgroup[256]; /* the agent's cgroup v2 directory, ours to remove ("" = none) */
    bool in_cgroup;   /* the agent started in cfg.cgroup_dirs */
};

/* The agent's cgroup v2 directory: made here and removed when the agent is
 * gone, however it ended (a killed agent cannot clean up after itself). */
static void cgroup_make(struct local *lo, const char *id)
{
    const char *bases[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    for (size_t i = 0; i < 2; i++) {
        char probe[300];
        snprintf(probe, sizeof probe, "%s/cgroup.controllers", bases[i]);
        if (access(probe, F_OK) < 0)
            continue;
        snprintf(lo->cgroup, sizeof lo->cgroup, "%s/husk-agent.%s", bases[i], id);
        if (mkdir(lo->cgroup, 0755) < 0 && errno != EEXIST)
            lo->cgroup[0] = 0;
        return;
    }
}

static void cgroup_remove_tree(const char *dir, int depth);

void hv_local_cleanup(const char *sandbox_id)
{
    const char *bases[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    for (size_t i = 0; i < 2; i++) {
        char dir[300];
        snprintf(dir, sizeof dir, "%s/husk-agent.%s", bases[i], sandbox_id);
        if (access(dir, F_OK) == 0)
            cgroup_remove_tree(dir, 0);
    }
}

/* Removes a cgroup tree bottom-up (its processes are gone: they lived in
 * the agent's pid namespace, which ended with it). */
static void cgroup_remove_tree(const char *dir, int depth)
{
    if (depth > 16)
        return;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_type != DT_DIR || e->d_name[0] == '.')
                continue;
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
            cgroup_remove_tree(sub, depth + 1);
        }
        closedir(d);
    }
    if (rmdir(dir) < 0 && errno != ENOENT)
        log_warn("local: remove cgroup %s: %s, ignoring", dir, strerror(errno));
}

static struct local *L(hv_t *hv)
{
    return hv->priv;
}

static int lo_create(hv_t *hv, const struct hv_config *cfg, err_t *err)
{
    struct local *lo = calloc(1, sizeof *lo);
    if (!lo)
        return err_make(err, ENOMEM, "local: out of memory");
    lo->hv = hv;
    lo->pid = -1;
    lo->pidfd = -1;
    hv->priv = lo;
    if (!cfg->sandbox_dir || cfg->sandbox_dir[0] != '/')
        return err_make(err, EINVAL, "local: sandbox dir must be an absolute path");
    if (!cfg->binary || cfg->binary[0] != '/')
        return err_make(err, EINVAL, "local: the husk-agent binary must be an absolute path");
    if (hv->cfg.stop_timeout_ms <= 0)
        hv->cfg.stop_timeout_ms = 3000;
    const char *d = cfg->sandbox_dir;
    if (asprintf(&lo->agent_path, "%s/agent.sock", d) < 0 ||
        asprintf(&lo->root, "%s/agent", d) < 0 || asprintf(&lo->log_path, "%s/agent.log", d) < 0)
        return err_make(err, ENOMEM, "local: out of memory");
    struct sockaddr_un sa;
    if (strlen(lo->agent_path) >= sizeof sa.sun_path)
        return err_make(err, ENAMETOOLONG, "local: sandbox dir `%s` too long for a unix socket", d);
    /* the netns to join: cfg->netns, or (older callers) an extra arg */
    if (cfg->netns && cfg->netns[0] && !(lo->netns = strdup(cfg->netns)))
        return err_make(err, ENOMEM, "local: out of memory");
    for (const char *const *a = cfg->extra_args; a && *a; a++)
        if (!lo->netns && !strncmp(*a, "netns=", 6) && !(lo->netns = strdup(*a + 6)))
            return err_make(err, ENOMEM, "local: out of memory");
    return 0;
}

static void lo_destroy(hv_t *hv)
{
    struct local *lo = L(hv);
    if (!lo)
        return;
    if (lo->pid_ev)
        event_free(lo->pid_ev);
    if (lo->kill_timer)
        event_free(lo->kill_timer);
    if (lo->pidfd >= 0 && lo->attached) {
        hv_pidfd_kill_wait(lo->pidfd, 5000); /* not ours to reap */
        lo->pidfd = -1;
    }
    if (lo->pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, lo->pidfd, SIGKILL, NULL, 0);
        siginfo_t si;
        while (waitid(P_PIDFD, lo->pidfd, &si, WEXITED) < 0 && errno == EINTR)
            ;
        close(lo->pidfd);
    }
    if (lo->agent_path)
        unlink(lo->agent_path);
    if (lo->cgroup[0])
        cgroup_remove_tree(lo->cgroup, 0);
    free(lo->agent_path);
    free(lo->root);
    free(lo->log_path);
    free(lo->netns);
    free(lo);
    hv->priv = NULL;
}

static int lo_prepare(hv_t *hv, err_t *err)
{
    struct local *lo = L(hv);
    if (access(hv->cfg.binary, X_OK) < 0)
        return err_errno(err, "local: husk-agent `%s`", hv->cfg.binary);
    if (mkdir(lo->root, 0700) < 0 && errno != EEXIST)
        return err_errno(err, "local: mkdir %s", lo->root);
    return 0;
}

static void on_pid_exit(evutil_socket_t fd, short what, void *arg)
{
    struct local *lo = arg;
    hv_t *hv = lo->hv;
    hv_enter(hv);
    siginfo_t si = {0};
    int r;
    if (lo->attached) {
        /* not our child: gone, with a status only its reaper knows */
        si.si_code = CLD_KILLED;
        si.si_status = lo->stop_requested ? SIGKILL : 0;
    } else {
        while ((r = waitid(P_PIDFD, lo->pidfd, &si, WEXITED | WNOHANG)) < 0 && errno == EINTR)
            ;
        if (r == 0 && si.si_pid == 0)
            goto out;
    }
    event_del(lo->pid_ev);
    event_del(lo->kill_timer);
    close(lo->pidfd);
    lo->pidfd = -1;
    unlink(lo->agent_path);
    if (lo->cgroup[0])
        cgroup_remove_tree(lo->cgroup, 0);
    lo->cgroup[0] = 0;
    lo->state = L_EXITED;
    bool sig = si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED;
    char why[256];
    snprintf(why, sizeof why, "husk-agent pid %d %s %d", (int)lo->pid,
             sig ? "killed by signal" : "exited with status", si.si_status);
    if (lo->stop_done) {
        hv_done_fn done = lo->stop_done;
        lo->stop_done = NULL;
        hv_done(hv, done, lo->stop_arg, 0, NULL);
    }
    if (!hv->doomed) {
        struct hv_event ev = {.kind = HV_EV_EXITED,
                              .name = "EXITED",
                              .wait_status = si.si_status,
                              .exited_by_signal = sig,
                              .expected = lo->stop_requested,
                              .reason = why};
        hv_emit(hv, &ev);
    }
out:
    hv_leave(hv);
}

static void on_kill_timer(evutil_socket_t fd, short what, void *arg)
{
    struct local *lo = arg;
    if (lo->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, lo->pidfd, SIGKILL, NULL, 0);
}

struct child_args {
    struct local *lo;
    int listen_fd, log_fd;
    pid_t parent;
    const char *binary;
    const int *tasks_fds; /* v1 `tasks` files of the host cgroup, to write "0" to */
    size_t n_tasks;
};

/* The agent, pid 1 of its new pid namespace, between clone and exec: no
 * allocation, never exit(). */
static int child(void *arg)
{
    struct child_args *c = arg;
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);
    setsid(); /* no PDEATHSIG: the agent outlives a dead daemon (hv_attach) */
    /* "0" in a v1 `tasks` file moves the calling thread only, and the
     * kernel then skips the global threadgroup lock (and its RCU grace
     * period): we are single-threaded, so that moves the process. */
    for (size_t i = 0; i < c->n_tasks; i++)
        if (write(c->tasks_fds[i], "0", 1) != 1) {
            static const char why[] = "husk-agent: cannot join the sandbox's v1 host cgroup\n";
            if (write(c->log_fd, why, sizeof why - 1) < 0)
                _exit(120);
            _exit(120);
        }
    if (c->lo->netns) {
        int nfd = open(c->lo->netns, O_RDONLY | O_CLOEXEC);
        if (nfd < 0 || setns(nfd, CLONE_NEWNET) < 0)
            _exit(125);
    }
    /* nothing of ours propagates back to the host mount tree; a /proc
     * that shows this pid namespace */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        _exit(122);
    int l = fcntl(c->listen_fd, F_DUPFD, 10), g = fcntl(c->log_fd, F_DUPFD, 10);
    int n = open("/dev/null", O_RDWR);
    if (l < 0 || g < 0 || n < 0 || dup2(n, 0) < 0 || dup2(g, 1) < 0 || dup2(g, 2) < 0 ||
        dup2(l, LOCAL_CHANNEL_FD) < 0)
        _exit(121);
    syscall(SYS_close_range, LOCAL_CHANNEL_FD + 1, ~0U, 0);
    char *argv[] = {(char *)c->binary,
                    "--channel-fd",
                    "3",
                    "--root",
                    c->lo->root,
                    "--cgroup-root",
                    c->lo->cgroup[0] ? c->lo->cgroup : "none",
                    NULL};
    execv(c->binary, argv);
    _exit(127);
}

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

/* The host cgroup the agent starts in, opened before the clone so that
 * every error names its path: the v2 directory for CLONE_INTO_CGROUP, the
 * v1 `tasks` files for the child to write to. */
struct host_cgroup {
    int v2_fd;
    int tasks_fds[8];
    size_t n_tasks;
};

static void host_cgroup_close(struct host_cgroup *hc)
{
    if (hc->v2_fd >= 0)
        close(hc->v2_fd);
    hc->v2_fd = -1;
    for (size_t i = 0; i < hc->n_tasks; i++)
        close(hc->tasks_fds[i]);
    hc->n_tasks = 0;
}

static int host_cgroup_open(const char *const *dirs, struct host_cgroup *hc, err_t *err)
{
    for (size_t i = 0; dirs && dirs[i]; i++) {
        struct statfs sf;
        if (statfs(dirs[i], &sf) < 0) {
            int r = err_errno(err, "local: host cgroup %s", dirs[i]);
            host_cgroup_close(hc);
            return r;
        }
        int fd;
        if (sf.f_type == CGROUP2_SUPER_MAGIC) {
            if (hc->v2_fd >= 0) {
                host_cgroup_close(hc);
                return err_make(err, EINVAL, "local: host cgroup %s: a second v2 directory",
                                dirs[i]);
            }
            fd = hc->v2_fd = open(dirs[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
        } else if (hc->n_tasks < sizeof hc->tasks_fds / sizeof hc->tasks_fds[0]) {
            _cleanup_free_ char *p = NULL;
            if (asprintf(&p, "%s/tasks", dirs[i]) < 0)
                abort();
            fd = open(p, O_WRONLY | O_CLOEXEC);
            if (fd >= 0)
                hc->tasks_fds[hc->n_tasks++] = fd;
        } else {
            host_cgroup_close(hc);
            return err_make(err, E2BIG, "local: more than 8 host cgroup directories");
        }
        if (fd < 0) {
            int r = err_errno(err, "local: open host cgroup %s", dirs[i]);
            host_cgroup_close(hc);
            return r;
        }
    }
    return 0;
}

static uint32_t lo_capabilities(hv_t *hv)
{
    struct local *lo = L(hv);
    return HV_CAP_SHARE_FS_9P | (lo && lo->in_cgroup ? HV_CAP_VMM_IN_CGROUP : 0);
}

static int lo_start(hv_t *hv, hv_done_fn done, void *arg, err_t *err)
{
    struct local *lo = L(hv);
    if (lo->state != L_NEW)
        return err_make(err, EALREADY, "local: already started");
    int r = lo_prepare(hv, err);
    if (r < 0)
        return r;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", lo->agent_path);
    unlink(lo->agent_path);
    _cleanup_close_ int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        return err_errno(err, "local: socket");
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(lo->agent_path, 0600) < 0 ||
        listen(lfd, 4) < 0)
        return err_errno(err, "local: listen on %s", lo->agent_path);
    _cleanup_close_ int log_fd =
        open(lo->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0)
        return err_errno(err, "local: open %s", lo->log_path);
    cgroup_make(lo, hv->cfg.id ? hv->cfg.id : "sandbox");
    struct host_cgroup hc = {.v2_fd = -1};
    if ((r = host_cgroup_open(hv->cfg.cgroup_dirs, &hc, err)) < 0)
        return r;
    struct child_args ca = {lo, lfd, log_fd, getpid(), hv->cfg.binary, hc.tasks_fds, hc.n_tasks};
    uint64_t flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID;
    if (!lo->netns)
        flags |= CLONE_NEWNET;
    /* clone3 without CLONE_VM nor a stack is a fork into new namespaces;
     * CLONE_INTO_CGROUP starts the agent in the v2 cgroup (a move by pid
     * would wait for an RCU grace period). */
    struct clone_args cla = {.flags = flags, .exit_signal = SIGCHLD};
    if (hc.v2_fd >= 0) {
        cla.flags |= CLONE_INTO_CGROUP;
        cla.cgroup = (uint64_t)hc.v2_fd;
    }
    pid_t pid = (pid_t)syscall(SYS_clone3, &cla, sizeof cla);
    if (pid == 0)
        _exit(child(&ca));
    bool joined = pid > 0;
    _cleanup_free_ char *stack = NULL;
    if (pid < 0) {
        /* clone3 refused (a seccomp profile answering ENOSYS, an old
         * kernel) or a v2 cgroup that takes no process (controllers
         * enabled below it): a classic clone outside it; the runtime then
         * moves the agent by pid */
        log_warn("local: clone3 husk-agent%s: %s; a classic clone instead",
                 hc.v2_fd >= 0 ? " into its host cgroup" : "", strerror(errno));
        size_t stack_size = 256 * 1024;
        if (!(stack = malloc(stack_size))) {
            host_cgroup_close(&hc);
            return err_make(err, ENOMEM, "local: out of memory");
        }
        pid = clone(child, stack + stack_size, (int)flags | SIGCHLD, &ca);
    }
    int e = errno;
    host_cgroup_close(&hc);
    if (pid < 0) {
        errno = e;
        return err_errno(err, "local: clone husk-agent in new namespaces");
    }
    lo->in_cgroup = joined && hv->cfg.cgroup_dirs && hv->cfg.cgroup_dirs[0];
    lo->pid = pid;
    lo->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (lo->pidfd < 0) {
        r = err_errno(err, "local: pidfd_open %d", (int)pid);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return r;
    }
    lo->pid_ev = event_new(hv->base, lo->pidfd, EV_READ | EV_PERSIST, on_pid_exit, lo);
    lo->kill_timer = evtimer_new(hv->base, on_kill_timer, lo);
    if (!lo->pid_ev || !lo->kill_timer || event_add(lo->pid_ev, NULL) < 0)
        return err_make(err, ENOMEM, "local: out of memory");
    lo->state = L_RUNNING;
    log_info("local backend: husk-agent pid %d in new namespaces; container isolation only, "
             "no VM",
             (int)pid);
    /* the socket listens already: the agent actor can connect right away */
    hv_done(hv, done, arg, 0, NULL);
    if (!hv->doomed) {
        struct hv_event ev = {.kind = HV_EV_READY, .name = "READY"};
        hv_emit(hv, &ev);
    }
    return 0;
}

/* Takes over the agent process a previous daemon started: the pid must
 * still be that process; its cgroup is re-found by name; the listening
 * agent.sock is the agent's, the agent actor connects to it. */
static int lo_attach(hv_t *hv, pid_t pid, uint64_t pid_start, hv_done_fn done, void *arg,
                     err_t *err)
{
    struct local *lo = L(hv);
    if (lo->state != L_NEW)
        return err_make(err, EALREADY, "local: already started");
    int r = hv_pid_check(pid, pid_start, err);
    if (r < 0)
        return r;
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0)
        return err_make(err, ESRCH, "local: pidfd_open %d: %s", (int)pid, strerror(errno));
    if ((r = hv_pid_check(pid, pid_start, err)) < 0) {
        close(pidfd);
        return r;
    }
    if (access(lo->agent_path, F_OK) < 0) {
        close(pidfd);
        return err_make(err, ENOENT, "local: husk-agent pid %d: its socket %s is gone", (int)pid,
                        lo->agent_path);
    }
    lo->pid = pid;
    lo->pidfd = pidfd;
    lo->attached = true;
    const char *bases[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    for (size_t i = 0; i < 2 && !lo->cgroup[0]; i++) {
        snprintf(lo->cgroup, sizeof lo->cgroup, "%s/husk-agent.%s", bases[i],
                 hv->cfg.id ? hv->cfg.id : "sandbox");
        if (access(lo->cgroup, F_OK) < 0)
            lo->cgroup[0] = 0;
    }
    lo->pid_ev = event_new(hv->base, lo->pidfd, EV_READ | EV_PERSIST, on_pid_exit, lo);
    lo->kill_timer = evtimer_new(hv->base, on_kill_timer, lo);
    if (!lo->pid_ev || !lo->kill_timer || event_add(lo->pid_ev, NULL) < 0)
        return err_make(err, ENOMEM, "local: out of memory");
    lo->state = L_RUNNING;
    log_info("local backend: attached to husk-agent pid %d", (int)pid);
    hv_done(hv, done, arg, 0, NULL);
    return 0;
}

static int lo_stop(hv_t *hv, hv_done_fn done, void *arg, err_t *err)
{
    struct local *lo = L(hv);
    if (lo->state != L_RUNNING)
        return err_make(err, ESRCH, "local: not running");
    lo->stop_requested = true;
    lo->stop_done = done;
    lo->stop_arg = arg;
    lo->state = L_STOPPING;
    int t = hv->cfg.stop_timeout_ms;
    struct timeval tv = {t / 1000, (t % 1000) * 1000};
    evtimer_add(lo->kill_timer, &tv);
    syscall(SYS_pidfd_send_signal, lo->pidfd, SIGTERM, NULL, 0);
    return 0;
}

static int lo_pids(hv_t *hv, pid_t *pids, size_t max, size_t *n, err_t *err)
{
    struct local *lo = L(hv);
    *n = 0;
    if (lo->pidfd < 0)
        return 0;
    if (max > 0)
        pids[0] = lo->pid;
    *n = 1;
    return 0;
}

static const char *lo_agent_socket(hv_t *hv)
{
    return L(hv)->agent_path;
}

const struct hv_ops hv_local_ops = {
    .name = "local",
    .caps = HV_CAP_SHARE_FS_9P, /* the "share" is the host directory itself */
    .capabilities = lo_capabilities,
    .create = lo_create,
    .destroy = lo_destroy,
    .prepare = lo_prepare,
    .start = lo_start,
    .stop = lo_stop,
    .pids = lo_pids,
    .agent_socket = lo_agent_socket,
    .attach = lo_attach,
};
