/* runtimes/hooks: OCI hooks on the host.  See hooks.h and docs/hooks.md. */
#include "runtimes/hooks.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

typedef struct hook {
    char *path;
    char **argv;    /* NULL-terminated, argv[0] present */
    char **envp;    /* NULL-terminated, maybe empty */
    long timeout_s; /* 0 = none */
} hook_t;

typedef struct capture {
    int fd;
    struct event *ev;
    char buf[RT_HOOK_OUTPUT_MAX + 1];
    size_t len;
    bool cut; /* more was written than kept */
} capture_t;

struct rt_hooks_run {
    struct event_base *base;
    enum oci_hook_kind kind;
    hook_t *hooks;
    size_t n;
    size_t idx; /* the hook running or next to run */
    char *state_json;
    char *cwd;
    pid_t pid; /* running hook, 0 when none */
    int pidfd;
    struct event *ev_pid;
    struct event *ev_timer;
    struct event *ev_kick; /* next step, from the loop */
    capture_t out, errc;
    bool timed_out;
    bool finished;
    int result;
    err_t err;
    rt_hooks_done_fn done;
    void *arg;
};

/* ---- small helpers ---------------------------------------------------------- */

static char **strv_dup(char *const *v, size_t n, const char *first_if_empty)
{
    size_t m = (n == 0 && first_if_empty) ? 1 : n;
    char **d = xcalloc(m + 1, sizeof *d);
    if (n == 0 && first_if_empty)
        d[0] = xstrdup(first_if_empty);
    for (size_t i = 0; i < n; i++)
        d[i] = xstrdup(v[i]);
    return d;
}

static void strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

static void cleanup_json(json_t **j)
{
    if (*j)
        json_decref(*j);
}

/* ---- state JSON ------------------------------------------------------------- */

char *rt_hook_state_json(const rt_hook_state_t *st)
{
    __attribute__((cleanup(cleanup_json))) json_t *o = json_object();
    json_t *v;
#define PUT(key, val)                                                                              \
    do {                                                                                           \
        if (!(v = (val)) || json_object_set_new(o, (key), v) < 0)                                  \
            return NULL;                                                                           \
    } while (0)
    PUT("ociVersion", json_string(st->oci_version ? st->oci_version : "1.0.2"));
    PUT("id", json_string(st->id ? st->id : ""));
    PUT("status", json_string(st->status ? st->status : ""));
    if (st->pid > 0)
        PUT("pid", json_integer(st->pid));
    PUT("bundle", json_string(st->bundle ? st->bundle : ""));
    if (st->n_annotations > 0) {
        json_t *a = json_object();
        json_object_set_new(o, "annotations", a);
        for (size_t i = 0; i < st->n_annotations; i++) {
            json_t *s = json_string(st->annotations[i].value ? st->annotations[i].value : "");
            if (!s || !st->annotations[i].key ||
                json_object_set_new(a, st->annotations[i].key, s) < 0)
                return NULL;
        }
    }
#undef PUT
    return json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

bool rt_hook_kind_fatal(enum oci_hook_kind kind)
{
    return kind == OCI_HOOK_PRESTART || kind == OCI_HOOK_CREATE_RUNTIME ||
           kind == OCI_HOOK_CREATE_CONTAINER || kind == OCI_HOOK_START_CONTAINER;
}

/* ---- the run ----------------------------------------------------------------- */

static void capture_close(capture_t *c)
{
    if (c->ev) {
        event_free(c->ev);
        c->ev = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

/* Reads what is available; returns true at EOF or error. */
static bool capture_read(capture_t *c)
{
    char tmp[4096];
    for (;;) {
        ssize_t n = read(c->fd, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno != EAGAIN;
        if (n == 0)
            return true;
        size_t room = RT_HOOK_OUTPUT_MAX - c->len;
        size_t keep = (size_t)n < room ? (size_t)n : room;
        memcpy(c->buf + c->len, tmp, keep);
        c->len += keep;
        if (keep < (size_t)n)
            c->cut = true;
    }
}

static void on_output(evutil_socket_t fd, short what, void *arg)
{
    capture_t *c = arg;
    if (capture_read(c))
        capture_close(c);
}

/* The captured text, trailing newlines trimmed. */
static const char *capture_text(capture_t *c)
{
    while (c->len > 0 && (c->buf[c->len - 1] == '\n' || c->buf[c->len - 1] == '\r'))
        c->len--;
    c->buf[c->len] = '\0';
    return c->buf;
}

static void stop_child_events(rt_hooks_run_t *run)
{
    if (run->ev_pid) {
        event_free(run->ev_pid);
        run->ev_pid = NULL;
    }
    if (run->ev_timer) {
        event_free(run->ev_timer);
        run->ev_timer = NULL;
    }
    if (run->pidfd >= 0) {
        close(run->pidfd);
        run->pidfd = -1;
    }
    capture_close(&run->out);
    capture_close(&run->errc);
    run->pid = 0;
}

/* Records a failure of the current hook.  Fatal kinds end the run. */
static void hook_failed(rt_hooks_run_t *run, int code, const char *what)
{
    const hook_t *h = &run->hooks[run->idx];
    const char *kind = oci_hook_kind_name(run->kind);
    _cleanup_free_ char *msg = NULL;
    if (asprintf(&msg, "error running %s hook #%zu (%s): %s, stdout: %s%s, stderr: %s%s", kind,
                 run->idx, h->path, what, capture_text(&run->out), run->out.cut ? "..." : "",
                 capture_text(&run->errc), run->errc.cut ? "..." : "") < 0)
        abort();
    if (rt_hook_kind_fatal(run->kind)) {
        err_make(&run->err, code, "%s", msg);
        run->result = -(code > 0 ? code : EIO);
        run->finished = true;
        return;
    }
    if (run->result == RT_HOOKS_WARNED)
        err_make(&run->err, run->err.code, "%s; %s", err_str(&run->err), msg);
    else
        err_make(&run->err, code, "%s", msg);
    run->result = RT_HOOKS_WARNED;
}

static void kick(rt_hooks_run_t *run)
{
    event_active(run->ev_kick, EV_TIMEOUT, 0);
}

static void on_exit_ready(evutil_socket_t fd, short what, void *arg)
{
    rt_hooks_run_t *run = arg;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid((idtype_t)P_PIDFD, (id_t)run->pidfd, &si, WEXITED | WNOHANG) < 0) {
        if (errno == EINTR)
            return;
        /* Someone else reaped it: we cannot know how it ended. */
        int e = errno;
        capture_read(&run->out);
        capture_read(&run->errc);
        _cleanup_free_ char *what_s = NULL;
        if (asprintf(&what_s, "wait: %s", strerror(e)) < 0)
            abort();
        hook_failed(run, e, what_s);
    } else if (si.si_pid == 0) {
        return; /* not yet */
    } else {
        /* Output written before the exit is in the pipes now. */
        if (run->out.fd >= 0)
            capture_read(&run->out);
        if (run->errc.fd >= 0)
            capture_read(&run->errc);
        char what_s[128];
        int code = 0;
        if (run->timed_out) {
            snprintf(what_s, sizeof what_s, "timed out after %lds (killed)",
                     run->hooks[run->idx].timeout_s);
            code = ETIMEDOUT;
        } else if (si.si_code == CLD_EXITED && si.si_status != 0) {
            snprintf(what_s, sizeof what_s, "exit status %d", si.si_status);
            code = EIO;
        } else if (si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED) {
            snprintf(what_s, sizeof what_s, "killed by signal %d (%s)", si.si_status,
                     sigabbrev_np(si.si_status) ? sigabbrev_np(si.si_status) : "?");
            code = EIO;
        }
        if (code)
            hook_failed(run, code, what_s);
    }
    stop_child_events(run);
    run->idx++;
    kick(run);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    rt_hooks_run_t *run = arg;
    if (run->pid <= 0)
        return;
    run->timed_out = true;
    kill(-run->pid, SIGKILL); /* the hook's process group */
    pidfd_send_signal(run->pidfd, SIGKILL, NULL, 0);
}

/* A memfd holding the state, positioned at 0, sealed. */
static int state_fd(const char *json, err_t *err)
{
    int fd = memfd_create("husk-hook-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return err_errno(err, "memfd_create");
    size_t len = strlen(json);
    const char *p = json;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int r = err_errno(err, "write hook state");
            close(fd);
            return r;
        }
        p += n;
        len -= (size_t)n;
    }
    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
    if (lseek(fd, 0, SEEK_SET) < 0) {
        int r = err_errno(err, "lseek hook state");
        close(fd);
        return r;
    }
    return fd;
}

/* Spawns hook idx and arms its events.  < 0: spawn failed (err set). */
static int spawn_hook(rt_hooks_run_t *run, err_t *err)
{
    const hook_t *h = &run->hooks[run->idx];
    run->timed_out = false;
    run->out.len = run->errc.len = 0;
    run->out.cut = run->errc.cut = false;

    _cleanup_close_ int in = state_fd(run->state_json, err);
    if (in < 0)
        return in;
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    if (pipe2(po, O_CLOEXEC) < 0)
        return err_errno(err, "pipe");
    if (pipe2(pe, O_CLOEXEC) < 0) {
        int r = err_errno(err, "pipe");
        close(po[0]);
        close(po[1]);
        return r;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    posix_spawn_file_actions_addchdir_np(&fa, run->cwd);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, h->path, &fa, &attr, h->argv, h->envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(po[1]);
    close(pe[1]);
    if (rc != 0) {
        close(po[0]);
        close(pe[0]);
        return err_make(err, rc, "exec: %s", strerror(rc));
    }
    run->pid = pid;
    run->out.fd = po[0];
    run->errc.fd = pe[0];
    fcntl(po[0], F_SETFL, O_NONBLOCK);
    fcntl(pe[0], F_SETFL, O_NONBLOCK);
    run->pidfd = pidfd_open(pid, 0);
    if (run->pidfd < 0) {
        int r = err_errno(err, "pidfd_open %d", (int)pid);
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        stop_child_events(run);
        return r;
    }
    run->out.ev = event_new(run->base, run->out.fd, EV_READ | EV_PERSIST, on_output, &run->out);
    run->errc.ev = event_new(run->base, run->errc.fd, EV_READ | EV_PERSIST, on_output, &run->errc);
    run->ev_pid = event_new(run->base, run->pidfd, EV_READ, on_exit_ready, run);
    if (!run->out.ev || !run->errc.ev || !run->ev_pid)
        abort();
    event_add(run->out.ev, NULL);
    event_add(run->errc.ev, NULL);
    event_add(run->ev_pid, NULL);
    if (h->timeout_s > 0) {
        run->ev_timer = evtimer_new(run->base, on_timeout, run);
        struct timeval tv = {h->timeout_s, 0};
        evtimer_add(run->ev_timer, &tv);
    }
    return 0;
}

static void run_free(rt_hooks_run_t *run)
{
    stop_child_events(run);
    if (run->ev_kick)
        event_free(run->ev_kick);
    for (size_t i = 0; i < run->n; i++) {
        free(run->hooks[i].path);
        strv_free(run->hooks[i].argv);
        strv_free(run->hooks[i].envp);
    }
    free(run->hooks);
    free(run->state_json);
    free(run->cwd);
    err_clear(&run->err);
    free(run);
}

/* The step function, always entered from the loop. */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    rt_hooks_run_t *run = arg;
    while (!run->finished && run->idx < run->n) {
        err_t e = ERR_INIT;
        if (spawn_hook(run, &e) == 0)
            return; /* on_exit_ready continues */
        hook_failed(run, e.code, err_str(&e));
        err_clear(&e);
        run->idx++;
    }
    rt_hooks_done_fn done = run->done;
    void *darg = run->arg;
    int result = run->result;
    done(result, result ? &run->err : NULL, darg);
    run_free(run);
}

int rt_hooks_start(struct event_base *base, enum oci_hook_kind kind, const oci_hook_t *hooks,
                   size_t n, const rt_hook_state_t *st, rt_hooks_done_fn done, void *arg,
                   rt_hooks_run_t **out, err_t *err)
{
    if (!base || !done || !st || (n > 0 && !hooks) || (unsigned)kind >= OCI_HOOK_NKINDS)
        return err_make(err, EINVAL, "run hooks: bad arguments");
    char *json = rt_hook_state_json(st);
    if (!json)
        return err_make(err, EINVAL, "run %s hooks: the state is not valid UTF-8",
                        oci_hook_kind_name(kind));
    for (size_t i = 0; i < n; i++)
        if (!hooks[i].path || hooks[i].path[0] != '/') {
            free(json);
            return err_make(err, EINVAL, "%s hook #%zu: path must be absolute",
                            oci_hook_kind_name(kind), i);
        }
    rt_hooks_run_t *run = xcalloc(1, sizeof *run);
    run->base = base;
    run->kind = kind;
    run->state_json = json;
    run->pidfd = run->out.fd = run->errc.fd = -1;
    run->done = done;
    run->arg = arg;
    struct stat sb;
    run->cwd = xstrdup(st->bundle && st->bundle[0] == '/' && stat(st->bundle, &sb) == 0 &&
                               S_ISDIR(sb.st_mode)
                           ? st->bundle
                           : "/");
    run->n = n;
    run->hooks = xcalloc(n, sizeof *run->hooks);
    for (size_t i = 0; i < n; i++) {
        run->hooks[i].path = xstrdup(hooks[i].path);
        run->hooks[i].argv = strv_dup(hooks[i].args, hooks[i].n_args, hooks[i].path);
        run->hooks[i].envp = strv_dup(hooks[i].env, hooks[i].n_env, NULL);
        run->hooks[i].timeout_s = hooks[i].timeout.set ? (long)hooks[i].timeout.value : 0;
    }
    run->ev_kick = event_new(base, -1, 0, on_kick, run);
    if (!run->ev_kick)
        abort();
    kick(run);
    if (out)
        *out = run;
    return 0;
}

void rt_hooks_cancel(rt_hooks_run_t **run_p)
{
    if (!run_p || !*run_p)
        return;
    rt_hooks_run_t *run = *run_p;
    if (run->pid > 0) {
        kill(-run->pid, SIGKILL);
        if (run->pidfd >= 0) {
            pidfd_send_signal(run->pidfd, SIGKILL, NULL, 0);
            siginfo_t si;
            while (waitid((idtype_t)P_PIDFD, (id_t)run->pidfd, &si, WEXITED) < 0 && errno == EINTR)
                ;
        }
    }
    run_free(run);
    *run_p = NULL;
}

/* ---- synchronous ------------------------------------------------------------- */

struct sync_wait {
    bool done;
    int result;
    err_t err;
};

static void sync_done(int result, err_t *err, void *arg)
{
    struct sync_wait *w = arg;
    w->done = true;
    w->result = result;
    if (err)
        err_move(&w->err, err);
}

int rt_hooks_run(enum oci_hook_kind kind, const oci_hook_t *hooks, size_t n,
                 const rt_hook_state_t *st, err_t *err)
{
    struct event_base *base = event_base_new();
    if (!base)
        return err_make(err, ENOMEM, "event_base_new");
    struct sync_wait w = {false, 0, ERR_INIT};
    int r = rt_hooks_start(base, kind, hooks, n, st, sync_done, &w, NULL, err);
    while (r == 0 && !w.done)
        event_base_loop(base, EVLOOP_ONCE);
    event_base_free(base);
    if (r < 0)
        return r;
    if (w.result != 0)
        err_move(err, &w.err);
    err_clear(&w.err);
    return w.result;
}
