/* shim_cmd: start, delete and the daemon of containerd-shim-husk-v2. */
#include "services/shim_cmd.h"
#include "services/orphan.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/cleanup.h"
#include "common/config.h"
#include "common/log.h"
#include "persist/store.h"
#include "services/daemon.h"
#include "services/shim_mount.h"
#include "services/shim_service.h"
#include "services/ttrpc.h"
#include "services/ttrpc_task.h"

#define DAEMON_LISTEN_FD 3
#define DEFAULT_ROOT     "/run/husk"

static int fail(err_t *err, const char *what)
{
    fprintf(stderr, "containerd-shim-husk-v2 %s: %s\n", what, err_str(err));
    err_clear(err);
    return 1;
}

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0711) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int unix_addr(const char *path, struct sockaddr_un *sa, err_t *err)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path)
        return err_make(err, ENAMETOOLONG, "socket path %s is too long", path);
    memcpy(sa->sun_path, path, strlen(path));
    return 0;
}

/* Whether something accepts connections at path. */
static bool socket_alive(const char *path)
{
    struct sockaddr_un sa;
    err_t err = ERR_INIT;
    if (unix_addr(path, &sa, &err) < 0) {
        err_clear(&err);
        return false;
    }
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    return fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
}

/* Writes <bundle>/address atomically (.address, then rename); no newline. */
static int write_address(const char *bundle, const char *address, err_t *err)
{
    char tmp[PATH_MAX + 64], dst[PATH_MAX + 64];
    snprintf(tmp, sizeof tmp, "%s/.address", bundle);
    snprintf(dst, sizeof dst, "%s/address", bundle);
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_errno(err, "create %s", tmp);
    size_t len = strlen(address);
    if (write(fd, address, len) != (ssize_t)len || fsync(fd) < 0)
        return err_errno(err, "write %s", tmp);
    if (rename(tmp, dst) < 0)
        return err_errno(err, "rename %s", tmp);
    return 0;
}

static char *read_small(const char *path)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char buf[PATH_MAX];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n <= 0)
        return NULL;
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    return strdup(buf);
}

static char *group_of_bundle(const char *bundle, const char *id, err_t *err)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/config.json", bundle);
    oci_spec_t *spec = NULL;
    if (oci_spec_load(path, &spec, err) < 0)
        return NULL;
    char *g = strdup(svc_shim_group_id(spec, id));
    oci_spec_destroy(&spec);
    return g;
}

static const char *socket_dir(void)
{
    const char *d = getenv("HUSK_SHIM_SOCKET_DIR");
    return d && *d ? d : SVC_SHIM_SOCKET_DIR;
}

/* ---- start ------------------------------------------------------------------------ */

static int spawn_daemon(const svc_shim_args_t *a, const char *group, const char *address,
                        const char *bundle, int lfd, err_t *err)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0)
        return err_errno(err, "readlink /proc/self/exe");
    self[n] = 0;
    const char *argv[] = {self,       "-namespace",
                          a->ns,      "-id",
                          a->id,      "-address",
                          a->address, "-socket",
                          address,    "-sandbox",
                          group,      "-bundle",
                          bundle,     a->debug ? "-debug" : NULL,
                          NULL};
    pid_t pid = fork();
    if (pid < 0)
        return err_errno(err, "fork the shim daemon");
    if (pid == 0) {
        setsid();
        int null = open("/dev/null", O_RDWR);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
            _exit(120);
        if (lfd == DAEMON_LISTEN_FD) {
            if (fcntl(lfd, F_SETFD, 0) < 0)
                _exit(121);
        } else if (dup2(lfd, DAEMON_LISTEN_FD) < 0) {
            _exit(121);
        }
        syscall(SYS_close_range, DAEMON_LISTEN_FD + 1, ~0U, 0);
        for (int s = 1; s < NSIG; s++)
            if (s != SIGKILL && s != SIGSTOP)
                signal(s, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(self, (char *const *)argv);
        _exit(127);
    }
    return 0;
}

int svc_shim_cmd_start(const svc_shim_args_t *a)
{
    err_t err = ERR_INIT;
    if (!a->ns || !*a->ns || !a->id || !*a->id || !a->address || !*a->address) {
        err_make(&err, EINVAL, "-namespace, -id and -address are required");
        return fail(&err, "start");
    }
    char bundle[PATH_MAX];
    if (!getcwd(bundle, sizeof bundle)) {
        err_errno(&err, "getcwd");
        return fail(&err, "start");
    }
    _cleanup_free_ char *group = group_of_bundle(bundle, a->id, &err);
    if (!group)
        return fail(&err, "start");
    char address[PATH_MAX];
    const char *dir = socket_dir();
    if (svc_shim_socket_address(dir, a->address, a->ns, group, address, sizeof address, &err) < 0)
        return fail(&err, "start");
    const char *path = svc_shim_socket_path(address);
    if (mkdir_p(dir, 0700) < 0) {
        err_errno(&err, "create %s", dir);
        return fail(&err, "start");
    }
    /* one `start` at a time decides whether the group's shim exists */
    _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || flock(dfd, LOCK_EX) < 0) {
        err_errno(&err, "lock %s", dir);
        return fail(&err, "start");
    }
    struct sockaddr_un sa;
    if (unix_addr(path, &sa, &err) < 0)
        return fail(&err, "start");
    _cleanup_close_ int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        err_errno(&err, "socket");
        return fail(&err, "start");
    }
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno != EADDRINUSE) {
            err_errno(&err, "bind %s", path);
            return fail(&err, "start");
        }
        if (socket_alive(path)) {
            /* the pod's shim runs: this container joins it */
            if (write_address(bundle, address, &err) < 0)
                return fail(&err, "start");
            printf("%s", address);
            fflush(stdout);
            return 0;
        }
        unlink(path); /* stale: its shim is gone */
        if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            err_errno(&err, "bind %s", path);
            return fail(&err, "start");
        }
    }
    if (chmod(path, 0600) < 0 || listen(lfd, 128) < 0) {
        err_errno(&err, "listen on %s", path);
        unlink(path);
        return fail(&err, "start");
    }
    if (write_address(bundle, address, &err) < 0 ||
        spawn_daemon(a, group, address, bundle, lfd, &err) < 0) {
        unlink(path);
        return fail(&err, "start");
    }
    printf("%s", address);
    fflush(stdout);
    return 0;
}

/* ---- delete ------------------------------------------------------------------------- */

/* Asks the live shim at address to kill and forget the task; errors
 * (NotFound after an ordinary teardown) are ignored. */
static void delete_in_shim(const char *address, const char *id)
{
    struct event_base *base = event_base_new();
    ttrpc_client_t *cl = NULL;
    err_t err = ERR_INIT;
    if (!base || ttrpc_client_connect(base, address, &cl, &err) < 0)
        goto out;
    ttrpc_call_opts_t opts = {.timeout_ns = 5000000000LL};
    Containerd__Task__V2__KillRequest kr = CONTAINERD__TASK__V2__KILL_REQUEST__INIT;
    kr.id = (char *)id;
    kr.signal = SIGKILL;
    kr.all = true;
    Containerd__Task__V2__DeleteRequest dr = CONTAINERD__TASK__V2__DELETE_REQUEST__INIT;
    dr.id = (char *)id;
    const ProtobufCMessage *reqs[] = {&kr.base, &dr.base};
    const char *methods[] = {"Kill", "Delete"};
    for (int i = 0; i < 2; i++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        ttrpc_result_t res = TTRPC_RESULT_INIT;
        if (svc_ttrpc_pack(reqs[i], &buf, &len, &err) == 0 &&
            ttrpc_client_call_sync(cl, SVC_TTRPC_TASK_SERVICE, methods[i], buf, len, &opts, &res,
                                   &err) == 0 &&
            res.code)
            log_debug("delete: %s %s: %s", methods[i], id, res.message);
        ttrpc_result_clear(&res);
        free(buf);
        err_clear(&err);
        if (i == 0)
            usleep(100 * 1000); /* let the exit land before the delete */
    }
out:
    err_clear(&err);
    ttrpc_client_destroy(&cl);
    if (base)
        event_base_free(base);
}

/* The shim is gone: what it left of the sandbox. */
static void delete_leftovers(const char *group, const char *id, const char *socket_path)
{
    err_t err = ERR_INIT;
    cfg_t *cfg = NULL;
    persist_store_t *store = NULL;
    persist_sandbox_t *sb = NULL;
    if (cfg_load(NULL, &cfg, &err) < 0)
        goto out;
    if (persist_store_open(cfg->runtime_root ? cfg->runtime_root : DEFAULT_ROOT, &store, &err) < 0)
        goto out;
    if (persist_sandbox_load(store, group, &sb, &err) < 0)
        goto out; /* nothing left: the ordinary case */
    if (persist_pid_alive(sb->daemon_pid, sb->daemon_start) && sb->daemon_pid != getpid()) {
        log_warn("delete: the sandbox daemon %d of %s still runs, leaving its state",
                 (int)sb->daemon_pid, group);
        goto out;
    }
    if (persist_pid_alive(sb->vmm_pid, sb->vmm_start)) {
        /* no restore for a shim's sandbox: its VM serves nobody now */
        log_warn("delete: killing the orphaned VM process %d of sandbox %s", (int)sb->vmm_pid,
                 group);
        kill(sb->vmm_pid, SIGKILL);
    }
    if (persist_container_remove(store, group, id, &err) < 0) {
        log_warn("delete: %s, ignoring", err_str(&err));
        err_clear(&err);
    }
    char **ids = NULL;
    size_t n = 0;
    if (persist_container_list(store, group, &ids, &n, &err) == 0 && n == 0) {
        /* the last container: the VM that outlived the shim, the share,
         * cgroups and taps go before the state */
        svc_release_orphaned_sandbox(store, persist_store_root(store), group);
        if (persist_sandbox_remove(store, group, &err) < 0)
            log_warn("delete: remove sandbox %s: %s, ignoring", group, err_str(&err));
        if (socket_path)
            unlink(socket_path);
    }
    for (size_t i = 0; ids && i < n; i++)
        free(ids[i]);
    free(ids);
out:
    if (err.code && err.code != ENOENT)
        log_warn("delete: %s, ignoring", err_str(&err));
    err_clear(&err);
    persist_sandbox_free(&sb);
    persist_store_destroy(&store);
    cfg_destroy(&cfg);
}

int svc_shim_cmd_delete(const svc_shim_args_t *a)
{
    err_t err = ERR_INIT;
    if (!a->id || !*a->id) {
        err_make(&err, EINVAL, "-id is required");
        return fail(&err, "delete");
    }
    char bundle[PATH_MAX];
    if (a->bundle && *a->bundle)
        snprintf(bundle, sizeof bundle, "%s", a->bundle);
    else if (!getcwd(bundle, sizeof bundle)) {
        err_errno(&err, "getcwd");
        return fail(&err, "delete");
    }
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/address", bundle);
    _cleanup_free_ char *address = read_small(path);
    const char *sock = address ? svc_shim_socket_path(address) : NULL;
    if (sock && socket_alive(sock)) {
        delete_in_shim(address, a->id);
    } else {
        _cleanup_free_ char *group = group_of_bundle(bundle, a->id, &err);
        if (!group) {
            log_warn("delete: %s, ignoring", err_str(&err));
            err_clear(&err);
        } else {
            delete_leftovers(group, a->id, sock);
        }
    }
    snprintf(path, sizeof path, "%s/rootfs", bundle);
    svc_shim_unmount_all(path);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (svc_shim_delete_response(0, SVC_SHIM_DELETE_STATUS, &buf, &len, &err) < 0)
        return fail(&err, "delete");
    if (len && fwrite(buf, 1, len, stdout) != len) {
        free(buf);
        err_errno(&err, "write the response");
        return fail(&err, "delete");
    }
    free(buf);
    fflush(stdout);
    return 0;
}

/* ---- the daemon --------------------------------------------------------------------- */

struct frontend {
    const svc_shim_args_t *args;
    int listen_fd;
};

static int start_frontend(const actor_opts_t *ao, int exit_fd, void *arg, actor_t **out, err_t *err)
{
    struct frontend *f = arg;
    svc_shim_service_opts_t so = {
        .listen_fd = f->listen_fd,
        .address = f->args->socket,
        .ns = f->args->ns,
        .ttrpc_address = getenv("TTRPC_ADDRESS"),
        .exit_fd = exit_fd,
    };
    f->listen_fd = -1; /* taken, also on failure */
    return svc_shim_service_start(ao, &so, out, err);
}

static bool is_listening(int fd)
{
    int v = 0;
    socklen_t l = sizeof v;
    return fcntl(fd, F_GETFD) >= 0 && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) == 0 && v;
}

int svc_shim_cmd_serve(const svc_shim_args_t *a)
{
    err_t err = ERR_INIT;
    char bundle[PATH_MAX];
    if (a->bundle && *a->bundle)
        snprintf(bundle, sizeof bundle, "%s", a->bundle);
    else if (!getcwd(bundle, sizeof bundle))
        bundle[0] = 0;
    /* containerd copies the bundle's `log` fifo into its own log */
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/log", bundle);
    int lfd = bundle[0] ? open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC) : -1;
    if (lfd >= 0) {
        dup2(lfd, 2);
        close(lfd);
    }
    log_setup(2, LOG_FMT_LOGFMT, a->debug ? LOG_DEBUG : LOG_INFO);
    log_set_component("shim");
    const char *sandbox = a->sandbox && *a->sandbox ? a->sandbox : a->id;
    if (!a->ns || !sandbox || !*sandbox) {
        err_make(&err, EINVAL, "-namespace and -id (or -sandbox) are required");
        log_error("%s", err_str(&err));
        err_clear(&err);
        return 1;
    }
    cfg_t *cfg = NULL;
    if (cfg_load(NULL, &cfg, &err) < 0) {
        log_error("configuration: %s", err_str(&err));
        err_clear(&err);
        return 1;
    }
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s", cfg->runtime_root ? cfg->runtime_root : DEFAULT_ROOT);
    cfg_destroy(&cfg);
    if (mkdir_p(root, 0700) < 0)
        log_warn("create %s: %m", root);
    struct frontend fe = {.args = a, .listen_fd = -1};
    if (is_listening(DAEMON_LISTEN_FD))
        fe.listen_fd = DAEMON_LISTEN_FD;
    else if (!a->socket) {
        log_error("no listening socket on fd %d and no -socket", DAEMON_LISTEN_FD);
        return 1;
    }
    log_info("shim for sandbox %s (namespace %s) on %s", sandbox, a->ns,
             a->socket ? a->socket : "fd 3");
    svc_daemon_opts_t o = {
        .root = root,
        .sandbox_id = sandbox,
        .frontend_start = start_frontend,
        .frontend_arg = &fe,
    };
    int rc = svc_daemon_run(&o, &err);
    if (fe.listen_fd >= 0)
        close(fe.listen_fd);
    const char *sock = svc_shim_socket_path(a->socket);
    if (sock)
        unlink(sock);
    if (rc < 0) {
        log_error("%s", err_str(&err));
        err_clear(&err);
        return 1;
    }
    log_info("shim for sandbox %s exits", sandbox);
    return 0;
}
