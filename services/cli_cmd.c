/* cli_cmd: the husk commands.
 *
 * Every command is a short-lived process.  State and list read the
 * persisted state (persist/store.h) and need no daemon.  The others find
 * the container's sandbox, connect to its daemon's bus
 * (<root>/<sandbox>/bus.sock) with the synchronous client and send rt.*
 * requests to the `runtime` actor.  create/run/exec leave a proxy process
 * behind (services/proxy.h) whose pid is the container's pid. */
#include "services/cli.h"

#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "actors/client.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "oci/spec.h"
#include "persist/store.h"
#include "hypervisors/hv.h"
#include "resources/cgroup_host.h"
#include "resources/resource_actor.h"
#include "resources/share.h"
#include "services/daemon.h"
#include "services/orphan.h"
#include "services/proxy.h"

#ifndef HUSK_VERSION
#define HUSK_VERSION "dev"
#endif
#ifndef HUSK_COMMIT
#define HUSK_COMMIT "unknown"
#endif

#define RT_NAME           "runtime"
#define CALL_TIMEOUT_MS   30000
#define CREATE_TIMEOUT_MS 180000 /* a cold TCG boot plus the container */
#define DAEMON_START_MS   30000
#define PROXY_START_MS    15000
#define SANDBOX_END_MS    30000 /* a dying daemon's own stop deadlines, bounded */
#define LOCK_TIMEOUT_MS   120000

static int g_log_fd = -1; /* --log file, -1: stderr */

/* Our own binary, for re-execs (`husk __daemon`, `husk __proxy`): the
 * resolved path, so that ps shows "husk" rather than "exe". */
static const char *self_exe(void)
{
    static char path[PATH_MAX];
    if (!path[0]) {
        ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
        if (n <= 0 || access(path, X_OK) < 0)
            snprintf(path, sizeof path, "/proc/self/exe");
        else
            path[n] = 0;
    }
    return path;
}

/* ---- errors ------------------------------------------------------------------ */

void cli_report_error(const cli_opts_t *o, const char *msg)
{
    bool json = o && o->log_format && !strcmp(o->log_format, "json");
    time_t now = time(NULL);
    struct tm lt;
    localtime_r(&now, &lt);
    char *line = cli_format_error_line(json, "error", msg, (int64_t)now, lt.tm_gmtoff);
    if (g_log_fd >= 0) {
        ssize_t w = write(g_log_fd, line, strlen(line));
        dprintf(2, "%s\n", msg);
        (void)w;
    } else {
        ssize_t w = write(2, line, strlen(line));
        (void)w;
    }
    free(line);
}

/* Reports "prefix: msg" (or msg) and returns code. */
static int fail(const cli_opts_t *o, int code, const char *prefix, const char *msg)
{
    if (prefix) {
        char *s = NULL;
        if (asprintf(&s, "%s: %s", prefix, msg) < 0)
            abort();
        cli_report_error(o, s);
        free(s);
    } else {
        cli_report_error(o, msg);
    }
    return code;
}

static int fail_err(const cli_opts_t *o, int code, const char *prefix, err_t *err)
{
    int r = fail(o, code, prefix, err_str(err));
    err_clear(err);
    return r;
}

/* ---- small helpers ------------------------------------------------------------ */

static char *abs_path(const char *p)
{
    if (!p)
        return NULL;
    if (p[0] == '/')
        return strdup(p);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return strdup(p);
    return xasprintf("%s/%s", cwd, p);
}

static int read_file(const char *path, size_t max, char **out, err_t *err)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "re") : stdin;
    if (!f)
        return err_errno(err, "open %s", path);
    cli_buf_t b = {0};
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        cli_buf_add(&b, buf, n);
        if (b.len > max) {
            if (f != stdin)
                fclose(f);
            free(cli_buf_take(&b));
            return err_make(err, EFBIG, "%s: larger than %zu bytes", path, max);
        }
    }
    if (f != stdin)
        fclose(f);
    *out = cli_buf_take(&b);
    return 0;
}

/* runc's pid file: <dir>/.<name> O_EXCL, then rename; no newline. */
static int write_pid_file(const char *path, pid_t pid, err_t *err)
{
    char *dir = strdup(path), *slash = strrchr(dir, '/');
    const char *name = slash ? slash + 1 : path;
    if (slash)
        *slash = 0;
    char *tmp = xasprintf("%s/.%s", slash ? (*dir ? dir : "/") : ".", name);
    free(dir);
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_SYNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        int r = err_errno(err, "open %s", tmp);
        free(tmp);
        return r;
    }
    char s[24];
    int n = snprintf(s, sizeof s, "%d", (int)pid);
    int rc = 0;
    if (write(fd, s, (size_t)n) != n)
        rc = err_errno(err, "write %s", tmp);
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = err_errno(err, "rename %s", path);
    if (rc < 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

static int64_t parse_rfc3339(const char *s)
{
    if (!s)
        return 0;
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return 0;
    int64_t ns = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++)
            if (digits < 9) {
                ns = ns * 10 + (*p - '0');
                digits++;
            }
        for (; digits < 9; digits++)
            ns *= 10;
    }
    return (int64_t)timegm(&tm) * 1000000000LL + ns;
}

static void short_random_id(char *out, size_t cap, const char *prefix)
{
    unsigned char r[8];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        uint64_t x = (uint64_t)getpid() * 2654435761u ^ (uint64_t)time(NULL);
        memcpy(r, &x, sizeof r);
    }
    snprintf(out, cap, "%s%02x%02x%02x%02x%02x%02x%02x%02x", prefix, r[0], r[1], r[2], r[3], r[4],
             r[5], r[6], r[7]);
}

/* ---- the bus ------------------------------------------------------------------- */

static char *bus_endpoint_of(const char *root, const char *sb)
{
    return xasprintf("ipc://%s/%s/bus.sock", root, sb);
}

/* The command's one connection to a sandbox's bus, kept until the command
 * ends: a connection per request cost a zmq context (two threads) and a
 * handshake each, and with one routing id for all of them the broker's
 * ROUTER ignored a new one while it still held the old (a lost request). */
static struct {
    char *endpoint;
    bus_client_t *c;
} g_bus;

/* Closes the command's bus connection (and its zmq context and threads). */
static void disconnect_bus(void)
{
    bus_client_destroy(&g_bus.c);
    free(g_bus.endpoint);
    g_bus.endpoint = NULL;
}

/* Borrowed: valid until disconnect_bus() or a connect to another sandbox. */
static int connect_bus(const char *root, const char *sb, bus_client_t **out, err_t *err)
{
    char *ep = bus_endpoint_of(root, sb);
    if (g_bus.c && !strcmp(g_bus.endpoint, ep)) {
        free(ep);
        *out = g_bus.c;
        return 0;
    }
    disconnect_bus();
    /* a fresh name per connection too: after a reconnect the broker may not
     * have reaped the previous one yet */
    static unsigned seq;
    char name[48];
    snprintf(name, sizeof name, "husk-cli-%d-%u", (int)getpid(), seq++);
    int r = bus_client_new(ep, name, &g_bus.c, err);
    if (r < 0) {
        free(ep);
        return r;
    }
    g_bus.endpoint = ep;
    *out = g_bus.c;
    return 0;
}

/* Does the daemon's bus answer a ping within ms? */
static bool bus_answers(const char *root, const char *sb, int ms)
{
    char *sock = xasprintf("%s/%s/bus.sock", root, sb);
    struct stat st;
    bool exists = stat(sock, &st) == 0;
    free(sock);
    if (!exists)
        return false;
    bus_client_t *c = NULL;
    err_t err = ERR_INIT;
    bool ok = false;
    if (connect_bus(root, sb, &c, &err) == 0) {
        msg_t *m = msg_new(MSG_BUS_PING), *reply = NULL;
        ok = bus_client_call(c, "bus", &m, ms, &reply, &err) == 0;
        msg_destroy(&m);
        msg_destroy(&reply);
    }
    err_clear(&err);
    if (!ok) /* a stale socket: a daemon started later gets a fresh connection */
        disconnect_bus();
    return ok;
}

/* One request to the runtime.  On failure err holds its text (runc's words). */
static int rt_call(const char *root, const char *sb, msg_t **req, int timeout_ms, msg_t **reply,
                   err_t *err)
{
    bus_client_t *c = NULL;
    int r = connect_bus(root, sb, &c, err);
    if (r == 0)
        r = bus_client_call(c, RT_NAME, req, timeout_ms, reply, err);
    msg_destroy(req);
    return r;
}

/* ---- state ----------------------------------------------------------------------- */

/* A container's view for state/list, with the liveness rules applied. */
typedef struct view {
    persist_container_t *c;
    cli_state_t st;
    const char **ann;
    char owner[64];
} view_t;

static void view_free(view_t *v)
{
    persist_container_free(&v->c);
    free(v->ann);
    v->ann = NULL;
}

static int load_view(persist_store_t *store, const char *sb_id, const char *id, view_t *v,
                     err_t *err)
{
    memset(v, 0, sizeof *v);
    int r = persist_container_load(store, sb_id, id, &v->c, err);
    if (r < 0)
        return r;
    persist_sandbox_t *sb = NULL;
    err_t e2 = ERR_INIT;
    bool daemon = persist_sandbox_load(store, sb_id, &sb, &e2) == 0 && persist_daemon_alive(sb);
    err_clear(&e2);
    persist_sandbox_free(&sb);
    const char *status = v->c->state ? v->c->state : "stopped";
    bool live = !strcmp(status, "created") || !strcmp(status, "running") ||
                !strcmp(status, "paused") || !strcmp(status, "pausing") ||
                !strcmp(status, "creating");
    /* a dead daemon or a dead proxy means the container is gone */
    if (live &&
        (!daemon || !v->c->init_pid || !persist_pid_alive(v->c->init_pid, v->c->init_start)))
        status = "stopped", live = false;
    v->st.id = v->c->id;
    v->st.status = status;
    v->st.pid = live ? v->c->init_pid : 0;
    v->st.bundle = v->c->bundle;
    v->st.rootfs = v->c->rootfs;
    v->st.created_ns = parse_rfc3339(v->c->created);
    v->ann = xcalloc(2 * v->c->n_annotations + 1, sizeof *v->ann);
    for (size_t i = 0; i < v->c->n_annotations; i++) {
        v->ann[2 * i] = v->c->annotations[i].key;
        v->ann[2 * i + 1] = v->c->annotations[i].value;
    }
    v->st.annotations = v->ann;
    v->st.owner = "";
    struct passwd *pw = getpwuid(v->c->owner_uid);
    if (pw)
        snprintf(v->owner, sizeof v->owner, "%s", pw->pw_name);
    else
        snprintf(v->owner, sizeof v->owner, "#%u", v->c->owner_uid);
    return 0;
}

static int open_store(const cli_opts_t *o, persist_store_t **store, err_t *err)
{
    return persist_store_open(o->root, store, err);
}

/* Finds the container's sandbox; "container does not exist" when none. */
static int find_sandbox(persist_store_t *store, const char *id, char **sb, err_t *err)
{
    int r = persist_find_sandbox(store, id, sb, err);
    if (r == -ENOENT) {
        err_clear(err);
        return err_make(err, ENOENT, "container does not exist");
    }
    return r;
}

static bool revive_sandbox(const cli_opts_t *o, const char *sb);

static int cmd_state(cli_opts_t *o)
{
    const char *id = o->args[0];
    err_t err = ERR_INIT;
    if (cli_validate_id(id, &err) < 0)
        return fail_err(o, 1, NULL, &err);
    persist_store_t *store = NULL;
    char *sb = NULL;
    view_t v;
    if (open_store(o, &store, &err) < 0 || find_sandbox(store, id, &sb, &err) < 0 ||
        (revive_sandbox(o, sb), load_view(store, sb, id, &v, &err) < 0)) {
        free(sb);
        persist_store_destroy(&store);
        if (err.code == ENOENT) {
            err_clear(&err);
            return fail(o, 1, NULL, "container does not exist");
        }
        return fail_err(o, 1, NULL, &err);
    }
    char *s = cli_format_state(&v.st);
    fputs(s, stdout);
    free(s);
    view_free(&v);
    free(sb);
    persist_store_destroy(&store);
    return 0;
}

static int view_cmp(const void *a, const void *b)
{
    return strcmp(((const view_t *)a)->st.id, ((const view_t *)b)->st.id);
}

static int cmd_list(cli_opts_t *o)
{
    err_t err = ERR_INIT;
    if (strcmp(o->format, "table") && strcmp(o->format, "json"))
        return fail(o, 1, NULL, "invalid format option");
    persist_store_t *store = NULL;
    if (open_store(o, &store, &err) < 0)
        return fail_err(o, 1, NULL, &err);
    char **sbs = NULL;
    size_t nsb = 0;
    if (persist_sandbox_list(store, &sbs, &nsb, &err) < 0) {
        persist_store_destroy(&store);
        return fail_err(o, 1, NULL, &err);
    }
    view_t *views = NULL;
    size_t nv = 0;
    for (size_t i = 0; i < nsb; i++) {
        char **ids = NULL;
        size_t n = 0;
        revive_sandbox(o, sbs[i]);
        if (persist_container_list(store, sbs[i], &ids, &n, &err) < 0) {
            err_clear(&err);
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            views = realloc(views, (nv + 1) * sizeof *views);
            if (!views)
                abort();
            if (load_view(store, sbs[i], ids[k], &views[nv], &err) == 0) {
                nv++;
            } else {
                log_warn("list: %s, ignoring", err_str(&err));
                err_clear(&err);
            }
        }
        persist_strv_free(ids);
    }
    if (nv > 1) /* qsort(NULL, 0) is undefined */
        qsort(views, nv, sizeof *views, view_cmp);
    cli_state_t *sts = xcalloc(nv + 1, sizeof *sts);
    for (size_t i = 0; i < nv; i++) {
        sts[i] = views[i].st;
        /* here, not before: realloc and qsort move the views */
        sts[i].owner = views[i].owner;
    }
    char *s = o->quiet                     ? cli_format_list_quiet(sts, nv)
              : !strcmp(o->format, "json") ? cli_format_list_json(sts, nv)
                                           : cli_format_list_table(sts, nv);
    fputs(s, stdout);
    free(s);
    free(sts);
    for (size_t i = 0; i < nv; i++)
        view_free(&views[i]);
    free(views);
    persist_strv_free(sbs);
    persist_store_destroy(&store);
    return 0;
}

/* ---- the sandbox daemon -------------------------------------------------------------- */

/* A sandbox whose daemon still runs but is shutting down (its last
 * container was just deleted, or it failed) must not be joined: a create
 * right after `delete -f` waits for that daemon to leave, then starts a
 * fresh one. */
static void wait_sandbox_end(persist_store_t *store, const char *sb, int ms)
{
    for (int waited = 0;; waited += 50) {
        persist_sandbox_t *s = NULL;
        err_t e = ERR_INIT;
        if (persist_sandbox_load(store, sb, &s, &e) < 0) {
            err_clear(&e); /* no such sandbox (or unreadable: create says so) */
            return;
        }
        bool ending = s->state && (!strcmp(s->state, "stopping") || !strcmp(s->state, "stopped") ||
                                   !strcmp(s->state, "failed"));
        bool alive = persist_daemon_alive(s);
        persist_sandbox_free(&s);
        if (!ending || !alive)
            return;
        if (waited >= ms) {
            log_warn("sandbox %s: its daemon is still shutting down after %d ms", sb, ms);
            return;
        }
        usleep(50000);
    }
}

static int start_daemon_mode(const cli_opts_t *o, const char *sb, bool restore, err_t *err);

static int start_daemon(const cli_opts_t *o, const char *sb, err_t *err)
{
    return start_daemon_mode(o, sb, false, err);
}

/* A restore bounds its own steps (docs/state.md): attach, connect, list,
 * and a give-up's stop. */
#define RESTORE_START_MS 75000

/* Restore: a sandbox whose daemon died while its VMM lives gets a
 * restoring daemon (one per sandbox: the daemon's claim); true when a
 * daemon serves it afterwards.  A dead daemon and a dead VMM: false, the
 * caller reports stopped and cleans up as before. */
static bool revive_sandbox(const cli_opts_t *o, const char *sb)
{
    persist_store_t *store = NULL;
    persist_sandbox_t *s = NULL;
    err_t err = ERR_INIT;
    bool daemon = false, vmm = false;
    if (open_store(o, &store, &err) == 0 && persist_sandbox_load(store, sb, &s, &err) == 0) {
        daemon = persist_daemon_alive(s);
        vmm = s->vmm_pid > 0 && persist_pid_alive(s->vmm_pid, s->vmm_start) && s->state &&
              !strcmp(s->state, "ready");
    }
    err_clear(&err);
    persist_sandbox_free(&s);
    persist_store_destroy(&store);
    if (daemon)
        return true;
    if (!vmm)
        return false;
    if (bus_answers(o->root, sb, 300))
        return true; /* another command's restore got there first */
    log_info("sandbox %s: its daemon is gone, its VMM lives: restoring", sb);
    if (start_daemon_mode(o, sb, true, &err) == 0)
        return true;
    log_info("restore sandbox %s: %s", sb, err_str(&err));
    err_clear(&err);
    /* another restore (a proxy's, another command's) may hold the claim:
     * wait for it while the VMM lives */
    for (int waited = 0; waited < RESTORE_START_MS; waited += 500) {
        if (bus_answers(o->root, sb, 500))
            return true;
        persist_sandbox_t *s2 = NULL;
        bool vmm2 = open_store(o, &store, &err) == 0 &&
                    persist_sandbox_load(store, sb, &s2, &err) == 0 && s2->vmm_pid > 0 &&
                    persist_pid_alive(s2->vmm_pid, s2->vmm_start);
        err_clear(&err);
        persist_sandbox_free(&s2);
        persist_store_destroy(&store);
        if (!vmm2)
            return false;
        usleep(200000);
        waited += 200;
    }
    return false;
}

static int start_daemon_mode(const cli_opts_t *o, const char *sb, bool restore, err_t *err)
{
    char *dir = xasprintf("%s/%s", o->root, sb);
    char *logp = xasprintf("%s/daemon.log", dir);
    mkdir(dir, 0700);
    int rp[2];
    if (pipe2(rp, O_CLOEXEC) < 0) {
        free(dir);
        free(logp);
        return err_errno(err, "pipe");
    }
    const char *argv[16];
    int n = 0;
    argv[n++] = "husk";
    argv[n++] = "--root";
    argv[n++] = o->root;
    if (o->config) {
        argv[n++] = "--config";
        argv[n++] = o->config;
    }
    argv[n++] = "--log";
    argv[n++] = logp;
    argv[n++] = "--log-format";
    argv[n++] = o->log_format;
    if (o->debug)
        argv[n++] = "--debug";
    argv[n++] = "__daemon";
    argv[n++] = sb;
    argv[n] = NULL;
    const char *exe = self_exe();
    pid_t pid = fork();
    if (pid < 0) {
        close(rp[0]);
        close(rp[1]);
        free(dir);
        free(logp);
        return err_errno(err, "fork");
    }
    if (pid == 0) {
        setsid();
        pid_t p2 = fork();
        if (p2 != 0)
            _exit(p2 < 0 ? 1 : 0);
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            dup2(nul, 2);
        }
        dup2(rp[1], 3); /* dup2 clears close-on-exec */
        syscall(SYS_close_range, 4, ~0U, 0);
        setenv("HUSK_READY_FD", "3", 1);
        if (restore)
            setenv("HUSK_DAEMON_RESTORE", "1", 1);
        else
            unsetenv("HUSK_DAEMON_RESTORE");
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    close(rp[1]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    struct pollfd pf = {rp[0], POLLIN, 0};
    int wait_ms = restore ? RESTORE_START_MS : DAEMON_START_MS;
    int r = poll(&pf, 1, wait_ms);
    char c = 0;
    ssize_t got = r > 0 ? read(rp[0], &c, 1) : -1;
    close(rp[0]);
    int rc = 0;
    if (r == 0)
        rc = err_make(err, ETIMEDOUT, "the sandbox daemon did not start within %d s (see %s)",
                      wait_ms / 1000, logp);
    else if (got != 1)
        rc = err_make(err, EIO, "the sandbox daemon exited during start-up (see %s)", logp);
    free(dir);
    free(logp);
    return rc;
}

/* ---- the proxy ------------------------------------------------------------------------- */

typedef struct proxy_proc {
    pid_t pid;
    int sync; /* our end of the socketpair */
} proxy_proc_t;

static int spawn_proxy(const cli_opts_t *o, const proxy_opts_t *po, proxy_proc_t *pp, err_t *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return err_errno(err, "socketpair");
    proxy_opts_t child = *po;
    child.sync_fd = 3;
    char **tail = proxy_argv(&child);
    const char *argv[48];
    int n = 0;
    argv[n++] = "husk";
    if (o->log) {
        argv[n++] = "--log";
        argv[n++] = o->log;
    }
    argv[n++] = "--log-format";
    argv[n++] = o->log_format;
    if (o->debug)
        argv[n++] = "--debug";
    argv[n++] = "__proxy";
    for (char **t = tail; *t && n < 46; t++)
        argv[n++] = *t;
    argv[n] = NULL;
    const char *exe = self_exe();
    pid_t pid = fork();
    if (pid == 0) {
        /* fresh exec: nothing of our zmq state survives; no stray fds */
        if (sv[1] != 3)
            dup2(sv[1], 3);
        else
            fcntl(3, F_SETFD, 0);
        syscall(SYS_close_range, 4, ~0U, 0);
        execv(exe, (char *const *)argv);
        _exit(255);
    }
    int e = errno;
    close(sv[1]);
    for (char **t = tail; *t; t++)
        free(*t);
    free(tail);
    if (pid < 0) {
        close(sv[0]);
        errno = e;
        return err_errno(err, "fork the proxy");
    }
    pp->pid = pid;
    pp->sync = sv[0];
    /* wait for "ok" (on the bus, console sent) or "error: ..." */
    char line[700];
    size_t len = 0;
    int64_t deadline = PROXY_START_MS;
    while (len < sizeof line - 1) {
        struct pollfd pf = {pp->sync, POLLIN, 0};
        int r = poll(&pf, 1, (int)deadline);
        if (r <= 0)
            break;
        ssize_t k = read(pp->sync, line + len, sizeof line - 1 - len);
        if (k <= 0)
            break;
        len += (size_t)k;
        if (memchr(line, '\n', len))
            break;
    }
    line[len] = 0;
    char *nl = strchr(line, '\n');
    if (nl)
        *nl = 0;
    if (!strcmp(line, "ok"))
        return 0;
    int rc = !strncmp(line, "error: ", 7) ? err_make(err, EIO, "%s", line + 7)
                                          : err_make(err, EIO, "the container proxy did not start");
    close(pp->sync);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    pp->pid = 0;
    pp->sync = -1;
    return rc;
}

static void proxy_go(proxy_proc_t *pp)
{
    ssize_t w = send(pp->sync, "go\n", 3, MSG_NOSIGNAL);
    (void)w;
    close(pp->sync);
    pp->sync = -1;
}

static void proxy_abort(proxy_proc_t *pp)
{
    if (pp->sync >= 0)
        close(pp->sync);
    pp->sync = -1;
    if (pp->pid > 0) {
        kill(pp->pid, SIGKILL);
        waitpid(pp->pid, NULL, 0);
    }
    pp->pid = 0;
}

/* run/exec in the foreground: forward our signals to the proxy (which
 * forwards them to the container) and wait for it. */
static volatile pid_t g_fwd_pid;
static void forward_sig(int sig)
{
    if (g_fwd_pid > 0)
        kill(g_fwd_pid, sig);
}

static int wait_proxy(pid_t pid)
{
    static const int sigs[] = {SIGINT,   SIGTERM, SIGHUP,  SIGQUIT, SIGUSR1, SIGUSR2,
                               SIGWINCH, SIGCONT, SIGALRM, SIGPWR,  0};
    g_fwd_pid = pid;
    struct sigaction sa = {.sa_handler = forward_sig, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    for (int i = 0; sigs[i]; i++)
        sigaction(sigs[i], &sa, NULL);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return 255;
    }
    g_fwd_pid = 0;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 255;
}

/* --preserve-fds and LISTEN_FDS: host fds cannot cross into a VM. */
static int check_fds(const cli_opts_t *o, err_t *err)
{
    if (o->preserve_fds < 0)
        return err_make(err, EINVAL, "--preserve-fds must not be negative");
    const char *lf = getenv("LISTEN_FDS"), *lp = getenv("LISTEN_PID");
    long nlisten = 0;
    if (lf && lp && atol(lp) == (long)getpid())
        nlisten = atol(lf);
    if (o->preserve_fds > 0 || nlisten > 0)
        return err_make(err, ENOTSUP,
                        "cannot pass file descriptors into the container (--preserve-fds %ld, "
                        "LISTEN_FDS %ld): husk runs it in a VM, host file descriptors cannot "
                        "cross into the guest",
                        o->preserve_fds, nlisten);
    return 0;
}

/* ---- create / run ------------------------------------------------------------------------ */

typedef struct created {
    char *sb;
    proxy_proc_t pp;
} created_t;

static int do_create(cli_opts_t *o, bool detach, created_t *out, err_t *err)
{
    const char *id = o->args[0];
    out->pp.pid = 0;
    out->pp.sync = -1;
    out->sb = NULL;
    int rc = cli_validate_id(id, err);
    if (rc < 0)
        return rc;
    if ((rc = check_fds(o, err)) < 0)
        return rc;
    char *pid_file = abs_path(o->pid_file), *console = abs_path(o->console_socket);
    char *bundle = NULL, *text = NULL;
    oci_spec_t *spec = NULL;
    persist_store_t *store = NULL;
    persist_lock_t *lock = NULL;
    char *sb = NULL;
    const char *bdir = o->bundle && *o->bundle ? o->bundle : ".";
    if (chdir(bdir) < 0) {
        rc = err_errno(err, "chdir %s", bdir);
        /* runc: "chdir /nonexist: no such file or directory" */
        if (errno == ENOENT)
            rc = err_make(err, ENOENT, "chdir %s: no such file or directory", bdir);
        goto out;
    }
    char cwd[PATH_MAX];
    bundle = strdup(getcwd(cwd, sizeof cwd) ? cwd : bdir);
    if ((rc = read_file("config.json", 768 * 1024, &text, err)) < 0 ||
        (rc = oci_spec_parse(text, strlen(text), &spec, err)) < 0)
        goto out;
    bool terminal = spec->process && spec->process->terminal;
    if (terminal && detach && !console) {
        rc = err_make(err, EINVAL,
                      "cannot allocate tty if runc will detach without setting console socket");
        goto out;
    }
    if (console && !terminal) {
        rc = err_make(err, EINVAL,
                      "cannot use console socket if runc will not detach or allocate tty");
        goto out;
    }
    enum oci_cri_kind kind;
    const char *sb_of = NULL;
    if ((rc = oci_spec_cri_info(spec, &kind, &sb_of, err)) < 0)
        goto out;
    sb = strdup(kind == OCI_CRI_CONTAINER && sb_of ? sb_of : id);
    if ((rc = open_store(o, &store, err)) < 0)
        goto out;
    char *other = NULL;
    err_t e2 = ERR_INIT;
    if (persist_find_sandbox(store, id, &other, &e2) == 0) {
        free(other);
        rc = err_make(err, EEXIST, "container with given ID already exists");
        goto out;
    }
    err_clear(&e2);
    if (kind == OCI_CRI_CONTAINER && !bus_answers(o->root, sb, 2000) && !revive_sandbox(o, sb)) {
        rc = err_make(err, ENOENT, "sandbox %s is not running", sb);
        goto out;
    }
    if (kind != OCI_CRI_CONTAINER)
        wait_sandbox_end(store, sb, SANDBOX_END_MS);
    if ((rc = persist_lock_sandbox(store, sb, PERSIST_LOCK_CREATE, LOCK_TIMEOUT_MS, &lock, err)) <
        0)
        goto out;
    if (!bus_answers(o->root, sb, 1000) && (rc = start_daemon(o, sb, err)) < 0)
        goto out;
    char *ep = bus_endpoint_of(o->root, sb);
    proxy_opts_t po = {
        .endpoint = ep, .id = id, .exec_id = "", .terminal = terminal, .console_socket = console};
    if (terminal && spec->process->has_console_size) {
        po.rows = spec->process->console_height;
        po.cols = spec->process->console_width;
    }
    rc = spawn_proxy(o, &po, &out->pp, err);
    free(ep);
    if (rc < 0)
        goto out;
    msg_t *m = msg_new(MSG_RT_CREATE), *reply = NULL;
    msg_rt_create_t *b = m->body;
    msg_set_str(&b->id, id);
    msg_set_str(&b->bundle, bundle);
    msg_set_str(&b->spec, text);
    b->proxy_pid = (uint64_t)out->pp.pid;
    msg_set_str(&b->pid_file, pid_file ? pid_file : "");
    b->console = console != NULL;
    b->owner_uid = geteuid();
    if ((rc = rt_call(o->root, sb, &m, CREATE_TIMEOUT_MS, &reply, err)) < 0) {
        proxy_abort(&out->pp);
        /* a sandbox left with no container is shut down (runc leaves
         * nothing behind after a failed create) */
        char **ids = NULL;
        size_t n = 0;
        err_t e3 = ERR_INIT;
        if (kind == OCI_CRI_SANDBOX && persist_container_list(store, sb, &ids, &n, &e3) == 0 &&
            n == 0) {
            msg_t *s = msg_new(MSG_RT_SHUTDOWN), *r2 = NULL;
            ((msg_rt_shutdown_t *)s->body)->timeout_ms = 10000;
            rt_call(o->root, sb, &s, 15000, &r2, &e3);
            msg_destroy(&r2);
        }
        err_clear(&e3);
        persist_strv_free(ids);
        goto out;
    }
    msg_destroy(&reply);
    if (pid_file && (rc = write_pid_file(pid_file, out->pp.pid, err)) < 0) {
        /* runc kills the container when it cannot write the pid file */
        msg_t *d = msg_new(MSG_RT_DELETE), *r2 = NULL;
        msg_set_str(&((msg_rt_delete_t *)d->body)->id, id);
        ((msg_rt_delete_t *)d->body)->force = true;
        err_t e3 = ERR_INIT;
        rt_call(o->root, sb, &d, CALL_TIMEOUT_MS, &r2, &e3);
        err_clear(&e3);
        msg_destroy(&r2);
        proxy_abort(&out->pp);
        goto out;
    }
    out->sb = TAKE_PTR(sb);
out:
    persist_unlock(&lock);
    persist_store_destroy(&store);
    oci_spec_destroy(&spec);
    free(text);
    free(bundle);
    free(pid_file);
    free(console);
    free(sb);
    return rc;
}

static int cmd_create(cli_opts_t *o)
{
    err_t err = ERR_INIT;
    created_t c;
    if (do_create(o, true, &c, &err) < 0)
        return fail_err(o, 1, "husk create failed", &err);
    proxy_go(&c.pp);
    free(c.sb);
    return 0;
}

static int simple_call(cli_opts_t *o, msg_type_t type, const char *dead_msg, const char *prefix,
                       int code);

static int cmd_run(cli_opts_t *o)
{
    err_t err = ERR_INIT;
    created_t c;
    if (do_create(o, o->detach, &c, &err) < 0)
        return fail_err(o, 1, "husk run failed", &err);
    proxy_go(&c.pp);
    msg_t *m = msg_new(MSG_RT_START), *reply = NULL;
    msg_set_str(&((msg_rt_start_t *)m->body)->id, o->args[0]);
    if (rt_call(o->root, c.sb, &m, CALL_TIMEOUT_MS, &reply, &err) < 0) {
        free(c.sb);
        return fail_err(o, 1, "husk run failed", &err);
    }
    msg_destroy(&reply);
    if (o->detach) {
        free(c.sb);
        return 0;
    }
    int status = wait_proxy(c.pp.pid);
    if (!o->keep) {
        m = msg_new(MSG_RT_DELETE);
        msg_set_str(&((msg_rt_delete_t *)m->body)->id, o->args[0]);
        ((msg_rt_delete_t *)m->body)->force = true;
        if (rt_call(o->root, c.sb, &m, CALL_TIMEOUT_MS, &reply, &err) < 0)
            log_error("run: delete %s: %s", o->args[0], err_str(&err));
        err_clear(&err);
        msg_destroy(&reply);
    }
    free(c.sb);
    return status;
}

/* ---- the simple requests ------------------------------------------------------------------ */

/* Finds the sandbox and whether its daemon answers. */
static int locate(const cli_opts_t *o, const char *id, char **sb, bool *alive, err_t *err)
{
    int rc = cli_validate_id(id, err);
    if (rc < 0)
        return rc;
    persist_store_t *store = NULL;
    if ((rc = open_store(o, &store, err)) < 0)
        return rc;
    rc = find_sandbox(store, id, sb, err);
    if (rc == 0 && alive) {
        persist_sandbox_t *s = NULL;
        err_t e2 = ERR_INIT;
        *alive = persist_sandbox_load(store, *sb, &s, &e2) == 0 && persist_daemon_alive(s);
        err_clear(&e2);
        persist_sandbox_free(&s);
        if (!*alive) /* sandbox.json may lag at start-up: ask the bus too */
            *alive = bus_answers(o->root, *sb, 500);
        if (!*alive) /* its VMM may have outlived its daemon */
            *alive = revive_sandbox(o, *sb);
    }
    persist_store_destroy(&store);
    return rc;
}

static int simple_call(cli_opts_t *o, msg_type_t type, const char *dead_msg, const char *prefix,
                       int code)
{
    err_t err = ERR_INIT;
    char *sb = NULL;
    bool alive = false;
    const char *id = o->args[0];
    if (locate(o, id, &sb, &alive, &err) < 0)
        return fail_err(o, code, prefix, &err);
    if (!alive) {
        free(sb);
        return fail(o, code, prefix, dead_msg);
    }
    msg_t *m = msg_new(type), *reply = NULL;
    /* every simple rt.* request starts with `id` */
    switch (type) {
    case MSG_RT_START:
        msg_set_str(&((msg_rt_start_t *)m->body)->id, id);
        break;
    case MSG_RT_PAUSE:
        msg_set_str(&((msg_rt_pause_t *)m->body)->id, id);
        break;
    case MSG_RT_RESUME:
        msg_set_str(&((msg_rt_resume_t *)m->body)->id, id);
        break;
    default:
        abort();
    }
    int rc = rt_call(o->root, sb, &m, CALL_TIMEOUT_MS, &reply, &err);
    free(sb);
    msg_destroy(&reply);
    if (rc < 0)
        return fail_err(o, code, prefix, &err);
    return 0;
}

static int cmd_start(cli_opts_t *o)
{
    return simple_call(o, MSG_RT_START, "cannot start a container that has stopped", NULL, 1);
}

static int cmd_pause(cli_opts_t *o)
{
    return simple_call(o, MSG_RT_PAUSE, "container not running", NULL, 1);
}

static int cmd_resume(cli_opts_t *o)
{
    return simple_call(o, MSG_RT_RESUME, "container not paused", NULL, 1);
}

static int cmd_kill(cli_opts_t *o)
{
    err_t err = ERR_INIT;
    char *sb = NULL;
    bool alive = false;
    if (locate(o, o->args[0], &sb, &alive, &err) < 0)
        return fail_err(o, 1, NULL, &err);
    int sig = cli_parse_signal(o->n_args > 1 ? o->args[1] : "SIGTERM", &err);
    if (sig < 0) {
        free(sb);
        return fail_err(o, 1, NULL, &err);
    }
    if (!alive) {
        free(sb);
        /* runc: kill --all of a stopped container whose cgroup is gone succeeds */
        return o->all ? 0 : fail(o, 1, NULL, "container not running");
    }
    msg_t *m = msg_new(MSG_RT_KILL), *reply = NULL;
    msg_rt_kill_t *b = m->body;
    msg_set_str(&b->id, o->args[0]);
    b->signal = (uint64_t)sig;
    b->all = o->all;
    int rc = rt_call(o->root, sb, &m, CALL_TIMEOUT_MS, &reply, &err);
    free(sb);
    msg_destroy(&reply);
    return rc < 0 ? fail_err(o, 1, NULL, &err) : 0;
}

static int cmd_delete(cli_opts_t *o)
{
    err_t err = ERR_INIT;
    char *sb = NULL;
    bool alive = false;
    const char *id = o->args[0];
    if (locate(o, id, &sb, &alive, &err) < 0) {
        if (err.code == ENOENT && o->force) { /* runc: silent, removes a stray dir */
            err_clear(&err);
            return 0;
        }
        return fail_err(o, 1, NULL, &err);
    }
    int rc = 0;
    if (alive) {
        msg_t *m = msg_new(MSG_RT_DELETE), *reply = NULL;
        msg_set_str(&((msg_rt_delete_t *)m->body)->id, id);
        ((msg_rt_delete_t *)m->body)->force = o->force;
        rc = rt_call(o->root, sb, &m, CALL_TIMEOUT_MS, &reply, &err);
        msg_destroy(&reply);
        /* the daemon may have shut down under us: fall through to cleanup */
        if (rc < 0 &&
            (err.code == ETIMEDOUT || err.code == EHOSTUNREACH || err.code == EHOSTDOWN) &&
            !bus_answers(o->root, sb, 500)) {
            err_clear(&err);
            alive = false, rc = 0;
        }
    }
    if (!alive) {
        /* the daemon is gone: the container is stopped; remove its state */
        persist_store_t *store = NULL;
        persist_lock_t *lock = NULL;
        if ((rc = open_store(o, &store, &err)) == 0 &&
            (rc = persist_lock_sandbox(store, sb, 0, LOCK_TIMEOUT_MS, &lock, &err)) == 0) {
            char **ids = NULL;
            size_t n = 0;
            rc = persist_container_remove(store, sb, id, &err);
            if (rc == 0 && persist_container_list(store, sb, &ids, &n, &err) == 0 && n == 0) {
                persist_unlock(&lock);
                /* a VMM that outlived its daemon and was not restored
                 * (its sandbox was not ready, or the restore gave up), and
                 * what the dead daemon would have removed */
                svc_release_orphaned_sandbox(store, o->root, sb);
                rc = persist_sandbox_remove(store, sb, &err);
            }
            persist_strv_free(ids);
        } else if (rc == -ENOENT) {
            err_clear(&err);
            rc = 0;
        }
        persist_unlock(&lock);
        persist_store_destroy(&store);
    }
    free(sb);
    return rc < 0 ? fail_err(o, 1, NULL, &err) : 0;
}

static int cmd_ps(cli_opts_t *o)
{
    err_t err = ERR_INIT;
    if (strcmp(o->format, "table") && strcmp(o->format, "json"))
        return fail(o, 1, NULL, "invalid format option");
    char *sb = NULL;
    bool alive = false;
    if (locate(o, o->args[0], &sb, &alive, &err) < 0)
        return fail_err(o, 1, NULL, &err);
    uint64_t *pids = NULL;
    size_t n = 0;
    if (alive) {
        msg_t *m = msg_new(MSG_RT_PS), *reply = NULL;
        msg_set_str(&((msg_rt_ps_t *)m->body)->id, o->args[0]);
        if (rt_call(o->root, sb, &m, CALL_TIMEOUT_MS, &reply, &err) < 0) {
            free(sb);
            return fail_err(o, 1, NULL, &err);
        }
        msg_rt_processes_t *b = MSG_BODY(reply, RT_PROCESSES, rt_processes);
        if (b && b->pids.n) {
            n = b->pids.n;
            pids = xmalloc(n * sizeof *pids);
            memcpy(pids, b->pids.v, n * sizeof *pids);
        }
        msg_destroy(&reply);
    }
    free(sb);
    char *s =
        !strcmp(o->format, "json") ? cli_format_ps_json(pids, n) : cli_format_ps_table(pids, n);
    fputs(s, stdout);
    free(s);
    free(pids);
    return 0;
}

static int cmd_events(cli_opts_t *o)
{
    err_t err = ERR_INIT;
    int64_t interval;
    if (cli_parse_duration(o->interval, &interval, &err) < 0)
        return fail_err(o, 1, NULL, &err);
    if (interval <= 0)
        return fail(o, 1, NULL, "duration interval must be greater than 0");
    char *sb = NULL;
    bool alive = false;
    const char *id = o->args[0];
    if (locate(o, id, &sb, &alive, &err) < 0)
        return fail_err(o, 1, NULL, &err);
    if (!alive) {
        free(sb);
        char *msg = xasprintf("container with id %s is not running", id);
        int r = fail(o, 1, NULL, msg);
        free(msg);
        return r;
    }
    bus_client_t *c = NULL;
    if (connect_bus(o->root, sb, &c, &err) < 0) {
        free(sb);
        return fail_err(o, 1, NULL, &err);
    }
    free(sb);
    if (!o->stats) { /* OOM events arrive as rt.oom */
        msg_t *sub = msg_new(MSG_BUS_SUBSCRIBE), *r = NULL;
        msg_set_str(&((msg_bus_subscribe_t *)sub->body)->prefix, "rt.oom");
        if (bus_client_call(c, "bus", &sub, 5000, &r, &err) < 0)
            err_clear(&err);
        msg_destroy(&sub);
        msg_destroy(&r);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = 0;
    for (;;) {
        msg_t *m = msg_new(MSG_RT_STATS_GET), *reply = NULL;
        msg_set_str(&((msg_rt_stats_get_t *)m->body)->id, id);
        int r = bus_client_call(c, RT_NAME, &m, CALL_TIMEOUT_MS, &reply, &err);
        msg_destroy(&m);
        if (r < 0) {
            /* the stream ends when the container is gone */
            if (o->stats || !(err.code == ESRCH || err.code == ENOENT))
                rc = fail_err(o, 1, NULL, &err);
            err_clear(&err);
            break;
        }
        msg_rt_stats_t *b = MSG_BODY(reply, RT_STATS, rt_stats);
        char *line = cli_format_event("stats", id, b && b->data ? b->data : "{}");
        if (line)
            fputs(line, stdout);
        free(line);
        msg_destroy(&reply);
        if (o->stats)
            break;
        /* wait for the next interval, printing OOM events meanwhile */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            int64_t left = interval / 1000000 -
                           ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
            if (left <= 0)
                break;
            msg_t *ev = NULL;
            if (bus_client_recv(c, (int)left, &ev, &err) < 0) {
                err_clear(&err);
                continue;
            }
            msg_rt_oom_t *oom = MSG_BODY(ev, RT_OOM, rt_oom);
            if (oom && !strcmp(oom->id, id)) {
                char *l = cli_format_event("oom", id, NULL);
                fputs(l, stdout);
                free(l);
            }
            msg_destroy(&ev);
        }
    }
    return rc;
}

/* `update --network` may hot-plug and unplug NICs one after the other under
 * TCG: each takes seconds, bounded by the runtime's own deadlines. */
#define NETWORK_TIMEOUT_MS 300000

static int cmd_update(cli_opts_t *o)
{
    err_t err = ERR_INIT;
    char *res = NULL;
    /* `--network` alone only rescans; runc's bare `update` sends {} */
    bool resources = cli_update_has_resources(o) || !o->update_network;
    if (o->resources) {
        if (read_file(o->resources, 64 * 1024, &res, &err) < 0)
            return fail_err(o, 1, NULL, &err);
        json_error_t je;
        json_t *j = json_loads(res, 0, &je);
        if (!j || !json_is_object(j)) {
            json_decref(j);
            free(res);
            char *msg = xasprintf("unable to parse resources: %s", j ? "not an object" : je.text);
            int r = fail(o, 1, NULL, msg);
            free(msg);
            return r;
        }
        json_decref(j);
    } else if (resources && cli_update_resources_json(o, &res, &err) < 0) {
        return fail_err(o, 1, NULL, &err);
    }
    char *sb = NULL;
    bool alive = false;
    if (locate(o, o->args[0], &sb, &alive, &err) < 0) {
        free(res);
        return fail_err(o, 1, NULL, &err);
    }
    if (!alive) {
        free(sb);
        free(res);
        return fail(o, 1, NULL, "container not running");
    }
    int rc = 0;
    msg_t *m = NULL, *reply = NULL;
    if (resources) {
        m = msg_new(MSG_RT_UPDATE);
        msg_set_str(&((msg_rt_update_t *)m->body)->id, o->args[0]);
        msg_set_str(&((msg_rt_update_t *)m->body)->resources, res);
        rc = rt_call(o->root, sb, &m, CALL_TIMEOUT_MS, &reply, &err);
        msg_destroy(&reply);
    }
    free(res);
    if (rc == 0 && o->update_network) {
        m = msg_new(MSG_RT_UPDATE_NETWORK);
        msg_set_str(&((msg_rt_update_network_t *)m->body)->id, o->args[0]);
        rc = rt_call(o->root, sb, &m, NETWORK_TIMEOUT_MS, &reply, &err);
        msg_destroy(&reply);
    }
    free(sb);
    return rc < 0 ? fail_err(o, 1, NULL, &err) : 0;
}

/* ---- exec ------------------------------------------------------------------------------ */

static void strv_append(char ***v, size_t *n, const char *s)
{
    char **x = realloc(*v, (*n + 2) * sizeof *x);
    if (!x)
        abort();
    x[*n] = strdup(s);
    x[++*n] = NULL;
    *v = x;
}

/* The process to exec: --process FILE, or the container's process with
 * the command-line overrides (runc's getProcess). */
static int exec_process(const cli_opts_t *o, const char *bundle, oci_process_t **out, err_t *err)
{
    if (o->process)
        return oci_process_load(o->process, out, err);
    char *path = xasprintf("%s/config.json", bundle);
    oci_spec_t *spec = NULL;
    int rc = oci_spec_load(path, &spec, err);
    free(path);
    if (rc < 0)
        return rc;
    if (!spec->process) {
        oci_spec_destroy(&spec);
        return err_make(err, EINVAL, "the container's config.json has no process");
    }
    oci_process_t *p = spec->process;
    spec->process = NULL;
    oci_spec_destroy(&spec);
    if (o->n_args < 2) {
        oci_process_destroy(&p);
        return err_make(err, EINVAL, "exec args cannot be empty");
    }
    oci_strv_free(p->args);
    p->args = NULL;
    p->n_args = 0;
    for (size_t i = 1; i < o->n_args; i++)
        strv_append(&p->args, &p->n_args, o->args[i]);
    for (size_t i = 0; i < o->env.n; i++)
        strv_append(&p->env, &p->n_env, o->env.v[i]);
    if (o->cwd) {
        free(p->cwd);
        p->cwd = strdup(o->cwd);
    }
    p->terminal = o->tty;
    if (o->user) {
        unsigned uid, gid;
        char extra;
        int k = sscanf(o->user, "%u:%u%c", &uid, &gid, &extra);
        if (k < 1 || k > 2 || (k == 1 && strchr(o->user, ':'))) {
            oci_process_destroy(&p);
            return err_make(err, EINVAL, "parsing %s as int for uid failed", o->user);
        }
        p->user.uid = uid;
        if (k == 2)
            p->user.gid = gid;
    }
    for (size_t i = 0; i < o->additional_gids.n; i++) {
        char *end;
        unsigned long g = strtoul(o->additional_gids.v[i], &end, 10);
        if (*end || end == o->additional_gids.v[i]) {
            oci_process_destroy(&p);
            return err_make(err, EINVAL, "parsing %s as int for gid failed",
                            o->additional_gids.v[i]);
        }
        uint32_t *x = realloc(p->user.additional_gids, (p->user.n_additional_gids + 1) * sizeof *x);
        if (!x)
            abort();
        x[p->user.n_additional_gids++] = (uint32_t)g;
        p->user.additional_gids = x;
    }
    if (o->caps.n) {
        p->has_capabilities = true;
        static const enum oci_cap_set sets[] = {OCI_CAP_BOUNDING, OCI_CAP_EFFECTIVE,
                                                OCI_CAP_PERMITTED};
        for (size_t s = 0; s < 3; s++)
            for (size_t i = 0; i < o->caps.n; i++)
                strv_append(&p->caps[sets[s]], &p->n_caps[sets[s]], o->caps.v[i]);
    }
    if (o->no_new_privs)
        p->no_new_privileges = true;
    if (o->apparmor) {
        free(p->apparmor_profile);
        p->apparmor_profile = strdup(o->apparmor);
    }
    if (o->process_label) {
        free(p->selinux_label);
        p->selinux_label = strdup(o->process_label);
    }
    *out = p;
    return 0;
}

static int do_exec(cli_opts_t *o, err_t *err, int *status)
{
    const char *id = o->args[0];
    int rc = check_fds(o, err);
    if (rc < 0)
        return rc;
    persist_store_t *store = NULL;
    char *sb = NULL;
    view_t v = {0};
    oci_process_t *proc = NULL;
    char *json = NULL, *ep = NULL;
    char *pid_file = abs_path(o->pid_file), *console = abs_path(o->console_socket);
    proxy_proc_t pp = {0, -1};
    if ((rc = cli_validate_id(id, err)) < 0 || (rc = open_store(o, &store, err)) < 0 ||
        (rc = find_sandbox(store, id, &sb, err)) < 0 ||
        (revive_sandbox(o, sb), (rc = load_view(store, sb, id, &v, err)) < 0))
        goto out;
    if (!strcmp(v.st.status, "stopped")) {
        rc = err_make(err, ESRCH, "cannot exec in a stopped container");
        goto out;
    }
    if (!strcmp(v.st.status, "paused") && !o->ignore_paused) {
        rc = err_make(err, EBUSY,
                      "cannot exec in a paused container (use --ignore-paused to override)");
        goto out;
    }
    if ((rc = exec_process(o, v.c->bundle, &proc, err)) < 0)
        goto out;
    if (proc->terminal && o->detach && !console) {
        rc = err_make(err, EINVAL,
                      "cannot allocate tty if runc will detach without setting console socket");
        goto out;
    }
    if (console && !proc->terminal) {
        rc = err_make(err, EINVAL,
                      "cannot use console socket if runc will not detach or allocate tty");
        goto out;
    }
    if ((rc = oci_process_to_json(proc, &json, NULL, err)) < 0)
        goto out;
    char exec_id[24];
    short_random_id(exec_id, sizeof exec_id, "e");
    ep = bus_endpoint_of(o->root, sb);
    proxy_opts_t po = {.endpoint = ep,
                       .id = id,
                       .exec_id = exec_id,
                       .terminal = proc->terminal,
                       .console_socket = console};
    if (proc->terminal && proc->has_console_size) {
        po.rows = proc->console_height;
        po.cols = proc->console_width;
    }
    if ((rc = spawn_proxy(o, &po, &pp, err)) < 0)
        goto out;
    msg_t *m = msg_new(MSG_RT_EXEC), *reply = NULL;
    msg_rt_exec_t *b = m->body;
    msg_set_str(&b->id, id);
    msg_set_str(&b->exec_id, exec_id);
    msg_set_str(&b->process, json);
    b->proxy_pid = (uint64_t)pp.pid;
    b->console = console != NULL;
    if ((rc = rt_call(o->root, sb, &m, CALL_TIMEOUT_MS, &reply, err)) < 0) {
        proxy_abort(&pp);
        goto out;
    }
    msg_destroy(&reply);
    if (pid_file && (rc = write_pid_file(pid_file, pp.pid, err)) < 0) {
        proxy_abort(&pp);
        goto out;
    }
    proxy_go(&pp);
    *status = o->detach ? 0 : wait_proxy(pp.pid);
out:
    free(ep);
    free(json);
    oci_process_destroy(&proc);
    view_free(&v);
    free(sb);
    free(pid_file);
    free(console);
    persist_store_destroy(&store);
    return rc;
}

static int cmd_exec(cli_opts_t *o)
{
    err_t err = ERR_INIT;
    int status = 0;
    if (do_exec(o, &err, &status) < 0)
        return fail_err(o, 255, "exec failed", &err);
    return status;
}

/* ---- spec, version, features, checkpoint --------------------------------------------------- */

static int cmd_spec(cli_opts_t *o)
{
    if (o->bundle && chdir(o->bundle) < 0) {
        err_t err = ERR_INIT;
        err_errno(&err, "chdir %s", o->bundle);
        return fail_err(o, 1, NULL, &err);
    }
    if (access("config.json", F_OK) == 0)
        return fail(o, 1, NULL, "File config.json exists. Remove it first");
    char *s = cli_format_spec(o->spec_rootless, (unsigned)geteuid(), (unsigned)getegid());
    int fd = open("config.json", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    int rc = 0;
    if (fd < 0 || write(fd, s, strlen(s)) != (ssize_t)strlen(s)) {
        err_t err = ERR_INIT;
        err_errno(&err, "open config.json");
        rc = fail_err(o, 1, NULL, &err);
    }
    if (fd >= 0)
        close(fd);
    free(s);
    return rc;
}

static char *libseccomp_version(void)
{
    const struct scmp_version *v = seccomp_version();
    return v ? xasprintf("%u.%u.%u", v->major, v->minor, v->micro) : NULL;
}

static char *qemu_version(void)
{
    FILE *p = popen("qemu-system-x86_64 --version 2>/dev/null", "re");
    if (!p)
        return NULL;
    char line[256] = "";
    char *r = fgets(line, sizeof line, p);
    pclose(p);
    const char *k = "QEMU emulator version ";
    if (!r || strncmp(line, k, strlen(k)))
        return NULL;
    char *v = line + strlen(k);
    v[strcspn(v, " \n")] = 0;
    return strdup(v);
}

static int cmd_version(cli_opts_t *o)
{
    char *sc = libseccomp_version(), *q = qemu_version();
    char *s = cli_format_version(HUSK_VERSION, HUSK_COMMIT, sc, q);
    fputs(s, stdout);
    free(s);
    free(sc);
    free(q);
    return 0;
}

static int cmd_features(cli_opts_t *o)
{
    char *sc = libseccomp_version();
    char *s = cli_format_features(HUSK_VERSION, HUSK_COMMIT, sc);
    fputs(s, stdout);
    free(s);
    free(sc);
    return 0;
}

/* ---- internal commands --------------------------------------------------------------------- */

static int g_ready_fd = -1;
static void daemon_ready(void *arg)
{
    if (g_ready_fd >= 0) {
        ssize_t w = write(g_ready_fd, "R", 1);
        (void)w;
        close(g_ready_fd);
        g_ready_fd = -1;
    }
}

static int cmd_daemon(cli_opts_t *o)
{
    const char *fd = getenv("HUSK_READY_FD");
    if (fd) {
        g_ready_fd = atoi(fd);
        fcntl(g_ready_fd, F_SETFD, FD_CLOEXEC);
        unsetenv("HUSK_READY_FD");
    }
    const char *restore = getenv("HUSK_DAEMON_RESTORE");
    svc_daemon_opts_t d = {.root = o->root,
                           .sandbox_id = o->args[0],
                           .config_path = o->config,
                           .ready = daemon_ready,
                           .restore = restore && !strcmp(restore, "1")};
    unsetenv("HUSK_DAEMON_RESTORE");
    err_t err = ERR_INIT;
    if (svc_daemon_run(&d, &err) < 0) {
        log_error("sandbox daemon %s: %s", o->args[0], err_str(&err));
        err_clear(&err);
        return 1;
    }
    return 0;
}

/* ---- help ---------------------------------------------------------------------------------- */

static const char app_help[] =
    "NAME:\n"
    "   husk - OCI containers in lightweight VMs, with runc's command line\n"
    "\n"
    "USAGE:\n"
    "   husk [global options] command [command options] [arguments...]\n"
    "\n"
    "COMMANDS:\n"
    "   checkpoint  not supported (containers run in VMs)\n"
    "   create      create a container\n"
    "   delete      delete any resources held by the container\n"
    "   events      display container events such as OOM notifications and stats\n"
    "   exec        execute new process inside the container\n"
    "   kill        send a signal to the container's init process (or all with --all)\n"
    "   list        lists containers started by husk with the given root\n"
    "   pause       pause all processes within the container\n"
    "   ps          ps displays the processes running inside a container (guest pids)\n"
    "   restore     not supported (containers run in VMs)\n"
    "   resume      resumes all processes that have been previously paused\n"
    "   run         create and run a container\n"
    "   spec        create a new specification file\n"
    "   start       executes the user defined process in a created container\n"
    "   state       output the state of a container\n"
    "   update      update container resource constraints (husk: --network rescans the\n"
    "               network namespace and hot-plugs/unplugs the VM's NICs to match)\n"
    "   features    show the enabled features\n"
    "   version     show the version\n"
    "   help, h     shows a list of commands or help for one command\n"
    "\n"
    "GLOBAL OPTIONS:\n"
    "   --debug             enable debug logging\n"
    "   --log value         set the log file to write husk logs to (default is stderr)\n"
    "   --log-format value  set the log format ('text' (default), or 'json') (default: \"text\")\n"
    "   --root value        root directory for storage of container state (default: "
    "\"/run/husk\")\n"
    "   --criu value        accepted for compatibility; checkpoint is not supported\n"
    "   --systemd-cgroup    accepted for compatibility (cgroups live in the guest)\n"
    "   --rootless value    accepted for compatibility (default: \"auto\")\n"
    "   --config value      husk configuration file (default: $HUSK_CONFIG or "
    "/etc/husk/husk.conf)\n"
    "   --help, -h          show help\n"
    "   --version, -v       print the version\n";

static void print_help(const cli_opts_t *o)
{
    if (o->cmd == CLI_CMD_NONE || o->cmd == CLI_CMD_HELP) {
        fputs(app_help, stdout);
        return;
    }
    printf("NAME:\n   husk %s\n\nUSAGE:\n   husk %s [command options] %s\n\n"
           "See docs/cli.md for the options (runc 1.1's).\n",
           o->cmd_name, o->cmd_name,
           o->cmd == CLI_CMD_LIST || o->cmd == CLI_CMD_SPEC || o->cmd == CLI_CMD_FEATURES
               ? ""
               : "<container-id>");
}

/* ---- dispatch ------------------------------------------------------------------------------ */

int cli_run(cli_opts_t *o)
{
    if (o->help) {
        print_help(o);
        return 0;
    }
    switch (o->cmd) {
    case CLI_CMD_NONE:
        if (o->version)
            return cmd_version(o);
        print_help(o);
        return 0;
    case CLI_CMD_HELP:
        print_help(o);
        return 0;
    case CLI_CMD_CREATE:
        return cmd_create(o);
    case CLI_CMD_RUN:
        return cmd_run(o);
    case CLI_CMD_START:
        return cmd_start(o);
    case CLI_CMD_STATE:
        return cmd_state(o);
    case CLI_CMD_KILL:
        return cmd_kill(o);
    case CLI_CMD_DELETE:
        return cmd_delete(o);
    case CLI_CMD_EXEC:
        return cmd_exec(o);
    case CLI_CMD_LIST:
        return cmd_list(o);
    case CLI_CMD_PAUSE:
        return cmd_pause(o);
    case CLI_CMD_RESUME:
        return cmd_resume(o);
    case CLI_CMD_PS:
        return cmd_ps(o);
    case CLI_CMD_EVENTS:
        return cmd_events(o);
    case CLI_CMD_UPDATE:
        return cmd_update(o);
    case CLI_CMD_SPEC:
        return cmd_spec(o);
    case CLI_CMD_VERSION:
        return cmd_version(o);
    case CLI_CMD_FEATURES:
        return cmd_features(o);
    case CLI_CMD_CHECKPOINT:
    case CLI_CMD_RESTORE: {
        char *msg = xasprintf("%s is not supported: husk runs containers inside VMs, which CRIU "
                              "cannot checkpoint",
                              o->cmd_name);
        int r = fail(o, 1, NULL, msg);
        free(msg);
        return r;
    }
    case CLI_CMD_DAEMON:
        return cmd_daemon(o);
    case CLI_CMD_PROXY:
        return proxy_main((int)o->n_args, o->args);
    }
    return 1;
}

int cli_main(int argc, char **argv)
{
    /* stdio must exist: later opens must not land on 0-2 */
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
            return 1;
    cli_opts_t o;
    int code;
    enum cli_usage usage;
    err_t err = ERR_INIT;
    int rc = cli_parse(argc, argv, &o, &code, &usage, &err);
    if (rc == 0 && log_format_parse(o.log_format) < 0) {
        char *msg = xasprintf("invalid log-format: %s", o.log_format);
        o.log_format = "text";
        int r = fail(&o, 1, NULL, msg);
        free(msg);
        cli_opts_free(&o);
        return r;
    }
    if (rc == 0 && o.log) {
        g_log_fd = open(o.log, O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0644);
        if (g_log_fd < 0) {
            err_errno(&err, "open %s", o.log);
            int r = fail_err(&o, 1, NULL, &err);
            cli_opts_free(&o);
            return r;
        }
    }
    int fmt = log_format_parse(o.log_format ? o.log_format : "text");
    log_setup(g_log_fd >= 0 ? g_log_fd : 2, fmt < 0 ? LOG_FMT_LOGFMT : (enum log_format)fmt,
              o.debug ? LOG_DEBUG : (o.cmd == CLI_CMD_DAEMON ? LOG_INFO : LOG_WARN));
    log_set_component(o.cmd == CLI_CMD_PROXY ? "proxy" : "cli");
    if (rc == 0 && cli_check_args(&o, &err) < 0) {
        rc = -1;
        usage = CLI_USAGE_INCORRECT;
        code = 1;
    }
    if (rc < 0) {
        if (usage == CLI_USAGE_INCORRECT) {
            printf("Incorrect Usage.\n\n");
            print_help(&o);
            fflush(stdout);
        }
        int r = fail_err(&o, code, NULL, &err);
        cli_opts_free(&o);
        return r;
    }
    if (o.args && o.n_args && o.cmd != CLI_CMD_PROXY && o.cmd != CLI_CMD_DAEMON)
        log_set_container(o.args[0]);
    rc = cli_run(&o);
    disconnect_bus();
    fflush(stdout);
    cli_opts_free(&o);
    return rc;
}
