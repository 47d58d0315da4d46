/* agent/guest/container: create/start/exec, runc-style.  See container.h. */
#include "agent/guest/container.h"
#include "agent/guest/net.h"

#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <linux/close_range.h>
#include <linux/sched.h> /* struct clone_args, CLONE_INTO_CGROUP */
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent/guest/container-internal.h"
#include "common/cleanup.h"
#include "resources/devices.h"

/* How long start waits for the init's exec.  The agent serves one request
 * at a time, so it must stay well below the host's liveness probe (a hung
 * guest after 7 s, agent/agent_actor.h): an exec stuck on a dead share
 * fails the start instead of freezing the agent. */
#define START_EXEC_MS 5000

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

struct container {
    pid_t pid;
    int sync_fd;  /* parent end of the sync socket; -1 after start */
    int start_fd; /* write end of the start pipe; -1 after start */
    int console_fd;
};

/* ---- small helpers ------------------------------------------------------ */

int container_write_file(const char *path, const char *data, err_t *err)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return err_errno(err, "open %s", path);
    size_t len = strlen(data), off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return err_errno(err, "write %s", path);
        off += (size_t)n;
    }
    return 0;
}

static const unsigned long ns_flags[OCI_NS_NTYPES] = {
    [OCI_NS_PID] = CLONE_NEWPID,       [OCI_NS_NETWORK] = CLONE_NEWNET,
    [OCI_NS_MOUNT] = CLONE_NEWNS,      [OCI_NS_IPC] = CLONE_NEWIPC,
    [OCI_NS_UTS] = CLONE_NEWUTS,       [OCI_NS_USER] = CLONE_NEWUSER,
    [OCI_NS_CGROUP] = CLONE_NEWCGROUP, [OCI_NS_TIME] = CLONE_NEWTIME,
};
/* /proc/<pid>/ns/ file names, in the order a joiner enters them: user
 * first (it owns the others), mount last (it changes path resolution). */
static const struct {
    enum oci_ns_type type;
    const char *file;
} ns_join_order[] = {
    {OCI_NS_USER, "user"},   {OCI_NS_IPC, "ipc"},   {OCI_NS_UTS, "uts"},
    {OCI_NS_NETWORK, "net"}, {OCI_NS_PID, "pid"},   {OCI_NS_CGROUP, "cgroup"},
    {OCI_NS_TIME, "time"},   {OCI_NS_MOUNT, "mnt"},
};

static const oci_namespace_t *find_ns(const oci_spec_t *spec, enum oci_ns_type t)
{
    for (size_t i = 0; spec->lnx && i < spec->lnx->n_namespaces; i++)
        if (spec->lnx->namespaces[i].type == t)
            return &spec->lnx->namespaces[i];
    return NULL;
}

static bool has_new_ns(const oci_spec_t *spec, enum oci_ns_type t)
{
    const oci_namespace_t *ns = find_ns(spec, t);
    return ns && !ns->path;
}

static const struct {
    const char *name;
    int resource;
} rlimit_table[] = {
    {"RLIMIT_AS", RLIMIT_AS},
    {"RLIMIT_CORE", RLIMIT_CORE},
    {"RLIMIT_CPU", RLIMIT_CPU},
    {"RLIMIT_DATA", RLIMIT_DATA},
    {"RLIMIT_FSIZE", RLIMIT_FSIZE},
    {"RLIMIT_LOCKS", RLIMIT_LOCKS},
    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
    {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
    {"RLIMIT_NICE", RLIMIT_NICE},
    {"RLIMIT_NOFILE", RLIMIT_NOFILE},
    {"RLIMIT_NPROC", RLIMIT_NPROC},
    {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
    {"RLIMIT_RTTIME", RLIMIT_RTTIME},
    {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_STACK", RLIMIT_STACK},
};

static int rlimit_resource(const char *name)
{
    for (size_t i = 0; i < sizeof(rlimit_table) / sizeof(*rlimit_table); i++)
        if (strcmp(rlimit_table[i].name, name) == 0)
            return rlimit_table[i].resource;
    return -1;
}

/* ---- validation ------------------------------------------------------------ */

static bool sysctl_namespaced(const oci_spec_t *spec, const char *key, err_t *err)
{
    static const char *const ipc_keys[] = {
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
        "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
    };
    bool ipc = strncmp(key, "fs.mqueue.", 10) == 0;
    for (size_t i = 0; i < sizeof(ipc_keys) / sizeof(*ipc_keys); i++)
        ipc |= strcmp(key, ipc_keys[i]) == 0;
    if (ipc && find_ns(spec, OCI_NS_IPC))
        return true;
    if (strncmp(key, "net.", 4) == 0 && find_ns(spec, OCI_NS_NETWORK))
        return true;
    if ((strcmp(key, "kernel.hostname") == 0 || strcmp(key, "kernel.domainname") == 0) &&
        find_ns(spec, OCI_NS_UTS))
        return true;
    err_make(err, EINVAL,
             "linux.sysctl[\"%s\"]: not in a namespace of the container (or not namespaced)", key);
    return false;
}

static int validate_process(const oci_process_t *p, const char *where, err_t *err)
{
    if (p->apparmor_profile && p->apparmor_profile[0])
        return err_make(err, ENOTSUP, "%sapparmorProfile: AppArmor is not supported by husk",
                        where);
    if (p->selinux_label && p->selinux_label[0])
        return err_make(err, ENOTSUP, "%sselinuxLabel: SELinux is not supported by husk", where);
    if (p->has_scheduler)
        return err_make(err, ENOTSUP, "%sscheduler: not supported by husk", where);
    int r = container_caps_validate(p, err);
    if (r < 0)
        return r;
    return 0;
}

int container_validate(const oci_spec_t *spec, err_t *err)
{
    const oci_linux_t *l = spec->lnx;
    int r;
    if (!spec->process)
        return err_make(err, EINVAL, "process: missing (required to create a container)");
    if ((r = validate_process(spec->process, "process.", err)) < 0)
        return r;
    if ((r = container_mounts_validate(spec, err)) < 0)
        return r;
    if (!has_new_ns(spec, OCI_NS_MOUNT))
        return err_make(err, EINVAL, "linux.namespaces: a new mount namespace is required");
    if (!l)
        return 0;
    if (l->mount_label && l->mount_label[0])
        return err_make(err, ENOTSUP, "linux.mountLabel: SELinux is not supported by husk");
    if (l->has_intel_rdt)
        return err_make(err, ENOTSUP, "linux.intelRdt: not supported by husk");
    if (l->has_time_offsets)
        return err_make(err, ENOTSUP, "linux.timeOffsets: not supported by husk");
    if (l->n_personality_flags)
        return err_make(err, ENOTSUP, "linux.personality.flags: not supported by husk");
    if (l->seccomp && (r = container_seccomp_validate(l->seccomp, err)) < 0)
        return r;
    if (l->resources && (r = container_cgroup_validate(l->resources, err)) < 0)
        return r;
    /* the host checked them too: the agent does not rely on it */
    if ((r = res_devices_check(spec, err)) < 0)
        return r;
    bool user = find_ns(spec, OCI_NS_USER) != NULL;
    if ((l->n_uid_mappings || l->n_gid_mappings) && !user)
        return err_make(err, EINVAL, "linux.uidMappings: given without a user namespace");
    if (has_new_ns(spec, OCI_NS_USER) && (!l->n_uid_mappings || !l->n_gid_mappings))
        return err_make(err, EINVAL,
                        "linux.namespaces: a new user namespace needs uidMappings and gidMappings");
    if (spec->hostname && spec->hostname[0] && !find_ns(spec, OCI_NS_UTS))
        return err_make(err, EINVAL, "hostname: needs a UTS namespace");
    if (spec->domainname && spec->domainname[0] && !find_ns(spec, OCI_NS_UTS))
        return err_make(err, EINVAL, "domainname: needs a UTS namespace");
    for (size_t i = 0; i < l->n_sysctl; i++)
        if (!sysctl_namespaced(spec, l->sysctl[i].key, err))
            return -EINVAL;
    return 0;
}

/* ---- the sync socket ------------------------------------------------------- */
/* Messages: one tag byte, then text or a pid.
 *   parent -> child  'G' go on
 *   child  -> parent 'U' write my id maps, 'P' pid of stage 2, 'T' + fd
 *                    the pty master, 'R' ready, 'E' error text */

static int send_msg(int fd, char tag, const void *data, size_t len, int pass_fd)
{
    char buf[4096];
    if (len > sizeof(buf) - 1)
        len = sizeof(buf) - 1;
    buf[0] = tag;
    if (len)
        memcpy(buf + 1, data, len);
    struct iovec iov = {.iov_base = buf, .iov_len = len + 1};
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cm;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (pass_fd >= 0) {
        memset(&cm, 0, sizeof(cm));
        mh.msg_control = cm.b;
        mh.msg_controllen = sizeof(cm.b);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    ssize_t n;
    do
        n = sendmsg(fd, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}

/* Returns the message length (>= 1), 0 on EOF, -errno on error.
 * *fd_out gets a passed descriptor or -1. */
static ssize_t recv_msg(int fd, char *buf, size_t cap, int *fd_out)
{
    struct iovec iov = {.iov_base = buf, .iov_len = cap - 1};
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cm;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b)};
    ssize_t n;
    if (fd_out)
        *fd_out = -1;
    do
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int got;
            memcpy(&got, CMSG_DATA(c), sizeof(int));
            if (fd_out && *fd_out < 0)
                *fd_out = got;
            else
                close(got);
        }
    }
    return n;
}

/* ---- the children ---------------------------------------------------------- */

struct child {
    const oci_spec_t *spec; /* NULL for exec without a spec */
    const oci_process_t *proc;
    const char *rootfs; /* create only */
    const char *bundle;
    pid_t init_pid; /* exec only */
    int sync;
    int start; /* create: read end of the start pipe; exec: -1 */
    int stdio[3];
    bool is_exec;
};

static _Noreturn void child_die(struct child *c, err_t *err)
{
    const char *msg = err_str(err);
    send_msg(c->sync, 'E', msg, strlen(msg), -1);
    _exit(1);
}

static _Noreturn void child_die_errno(struct child *c, const char *fmt, ...)
{
    err_t err = ERR_INIT;
    char head[512];
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof(head), fmt, ap);
    va_end(ap);
    errno = saved;
    err_errno(&err, "%s", head);
    child_die(c, &err);
}

static void child_wait_go(struct child *c)
{
    char buf[16];
    ssize_t n = recv_msg(c->sync, buf, sizeof(buf), NULL);
    if (n <= 0 || buf[0] != 'G')
        _exit(1); /* the parent gave up */
}

/* Moves the caller's stdio descriptors onto 0, 1, 2 (-1: /dev/null). */
static void child_stdio(struct child *c)
{
    int tmp[3];
    for (int i = 0; i < 3; i++) {
        if (c->stdio[i] < 0)
            tmp[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
        else
            tmp[i] = fcntl(c->stdio[i], F_DUPFD_CLOEXEC, 3);
        if (tmp[i] < 0)
            child_die_errno(c, "set up stdio %d", i);
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(tmp[i], i) < 0)
            child_die_errno(c, "dup2 stdio %d", i);
        close(tmp[i]);
    }
}

/* Allocates a pty in the container's devpts, sends the master to the
 * parent and makes the slave our controlling terminal and stdio. */
static void child_console(struct child *c)
{
    const oci_process_t *p = c->proc;
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        child_die_errno(c, "open /dev/ptmx in the container");
    int unlock = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
        child_die_errno(c, "unlock pty");
    int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    if (slave < 0)
        child_die_errno(c, "open pty peer");
    if (fchown(slave, p->user.uid, p->user.gid) < 0 && errno != EINVAL)
        child_die_errno(c, "chown pty");
    if (p->has_console_size) {
        struct winsize ws = {.ws_row = (unsigned short)p->console_height,
                             .ws_col = (unsigned short)p->console_width};
        if (ioctl(slave, TIOCSWINSZ, &ws) < 0)
            child_die_errno(c, "set console size");
    }
    if (send_msg(c->sync, 'T', NULL, 0, master) < 0)
        _exit(1);
    close(master);
    if (ioctl(slave, TIOCSCTTY, 0) < 0)
        child_die_errno(c, "set controlling terminal");
    for (int i = 0; i < 3; i++)
        if (dup2(slave, i) < 0)
            child_die_errno(c, "dup2 pty to stdio %d", i);
    if (slave > 2)
        close(slave);
}

static const char *env_get(char **env, const char *key)
{
    size_t kl = strlen(key);
    for (char **e = env; e && *e; e++)
        if (strncmp(*e, key, kl) == 0 && (*e)[kl] == '=')
            return *e + kl + 1;
    return NULL;
}

/* The environment plus HOME (from the container's /etc/passwd, else "/")
 * when it is missing, as runc does. */
static char **child_env(const oci_process_t *p)
{
    size_t n = p->n_env;
    char **env = calloc(n + 2, sizeof(char *));
    if (!env)
        abort();
    memcpy(env, p->env, n * sizeof(char *));
    if (env_get(p->env, "HOME"))
        return env;
    char *home = NULL, *line = NULL;
    size_t cap = 0;
    FILE *f = fopen("/etc/passwd", "re");
    while (f && getline(&line, &cap, f) > 0) {
        /* name:pw:uid:gid:gecos:home:shell */
        char *fields[7] = {0}, *s = line;
        int i = 0;
        for (; i < 7 && s; i++)
            fields[i] = strsep(&s, ":");
        if (i >= 6 && fields[2] && strtoul(fields[2], NULL, 10) == p->user.uid && fields[5]) {
            if (asprintf(&home, "HOME=%s", fields[5]) < 0)
                home = NULL;
            break;
        }
    }
    if (f)
        fclose(f);
    free(line);
    env[n] = home ? home : strdup("HOME=/");
    return env;
}

/* runc's lookup: a name with a slash is used as is; otherwise search the
 * process's PATH.  Returns a path or NULL with errno set. */
static char *child_lookup(const char *name, char **env)
{
    if (strchr(name, '/'))
        return strdup(name);
    const char *path = env_get(env, "PATH");
    if (!path) {
        errno = ENOENT;
        return NULL;
    }
    char *copy = strdup(path), *s = copy, *dir;
    while ((dir = strsep(&s, ":")) != NULL) {
        char *cand = NULL;
        struct stat st;
        if (asprintf(&cand, "%s/%s", dir[0] ? dir : ".", name) < 0)
            break;
        if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0) {
            free(copy);
            return cand;
        }
        free(cand);
    }
    free(copy);
    errno = ENOENT;
    return NULL;
}

static void child_set_user(struct child *c)
{
    const oci_process_t *p = c->proc;
    err_t err = ERR_INIT;
    if (container_caps_bounding(p, &err) < 0)
        child_die(c, &err);
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        child_die_errno(c, "prctl(PR_SET_KEEPCAPS)");
    gid_t *groups = calloc(p->user.n_additional_gids + 1, sizeof(gid_t));
    for (size_t i = 0; i < p->user.n_additional_gids; i++)
        groups[i] = p->user.additional_gids[i];
    if (setgroups(p->user.n_additional_gids, groups) < 0)
        child_die_errno(c, "setgroups");
    free(groups);
    if (setresgid(p->user.gid, p->user.gid, p->user.gid) < 0)
        child_die_errno(c, "setgid %u", p->user.gid);
    if (setresuid(p->user.uid, p->user.uid, p->user.uid) < 0)
        child_die_errno(c, "setuid %u", p->user.uid);
    if (container_caps_apply(p, &err) < 0)
        child_die(c, &err);
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
        child_die_errno(c, "prctl(PR_SET_KEEPCAPS)");
}

static void child_reset_signals(void)
{
    struct sigaction sa = {.sa_handler = SIG_DFL};
    sigemptyset(&sa.sa_mask);
    for (int s = 1; s < _NSIG; s++)
        sigaction(s, &sa, NULL); /* EINVAL for SIGKILL/SIGSTOP and glibc's own */
}

static void child_cloexec_all(void)
{
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++) {
        int fl = fcntl((int)fd, F_GETFD);
        if (fl >= 0 && !(fl & FD_CLOEXEC))
            fcntl((int)fd, F_SETFD, fl | FD_CLOEXEC);
    }
}

/* Everything from the process's identity to exec.  For create, blocks on
 * the start pipe right before exec. */
static _Noreturn void child_finish(struct child *c)
{
    const oci_process_t *p = c->proc;
    const oci_seccomp_t *sc = c->spec && c->spec->lnx ? c->spec->lnx->seccomp : NULL;
    void *filter = NULL;
    err_t err = ERR_INIT;

    if (p->has_io_priority) {
        int cls = strcmp(p->io_priority_class, "IOPRIO_CLASS_RT") == 0   ? 1
                  : strcmp(p->io_priority_class, "IOPRIO_CLASS_BE") == 0 ? 2
                                                                         : 3;
        if (syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, (cls << 13) | p->io_priority) <
            0)
            child_die_errno(c, "set I/O priority");
    }
    if (sc && container_seccomp_build(sc, &filter, &err) < 0)
        child_die(c, &err);
    /* Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it
     * while we still have it (the profile must then allow what follows,
     * as with runc). */
    if (filter && !p->no_new_privileges && container_seccomp_load(filter, &err) < 0)
        child_die(c, &err);
    child_set_user(c);
    umask(p->user.umask.set ? (mode_t)p->user.umask.value : 022);
    if (chdir(p->cwd) < 0)
        child_die_errno(c, "chdir to cwd %s", p->cwd);
    char **env = child_env(p);
    char *exe = child_lookup(p->args[0], env);
    if (!exe) {
        err_make(&err, ENOENT, "exec: \"%s\": executable file not found in $PATH", p->args[0]);
        child_die(c, &err);
    }
    child_cloexec_all();
    child_reset_signals();
    if (p->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        child_die_errno(c, "prctl(PR_SET_NO_NEW_PRIVS)");
    if (filter && p->no_new_privileges && container_seccomp_load(filter, &err) < 0)
        child_die(c, &err);
    if (!c->is_exec) {
        char b;
        if (send_msg(c->sync, 'R', NULL, 0, -1) < 0)
            _exit(1);
        ssize_t n;
        do
            n = read(c->start, &b, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1)
            _exit(1); /* aborted: destroyed before start */
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(exe, p->args, env);
    child_die_errno(c, "exec %s", exe);
}

/* Container init (stage 2 of create). */
static _Noreturn void child_init(struct child *c)
{
    const oci_spec_t *spec = c->spec;
    const oci_linux_t *l = spec->lnx;
    bool userns = find_ns(spec, OCI_NS_USER) != NULL;
    err_t err = ERR_INIT;

    child_wait_go(c); /* the parent has applied rlimits and oom_score_adj */
    if (setsid() < 0)
        child_die_errno(c, "setsid");
    if (!spec->process->terminal)
        child_stdio(c);
    umask(0);
    if (container_rootfs_prepare(spec, c->rootfs, c->bundle, userns, &err) < 0)
        child_die(c, &err);
    if (spec->process->terminal)
        child_console(c);
    if (spec->hostname && spec->hostname[0] &&
        sethostname(spec->hostname, strlen(spec->hostname)) < 0)
        child_die_errno(c, "sethostname %s", spec->hostname);
    if (spec->domainname && spec->domainname[0] &&
        setdomainname(spec->domainname, strlen(spec->domainname)) < 0)
        child_die_errno(c, "setdomainname %s", spec->domainname);
    for (size_t i = 0; l && i < l->n_sysctl; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "/proc/sys/%s", l->sysctl[i].key);
        for (char *s = path + 10; *s; s++)
            if (*s == '.')
                *s = '/';
        if (container_write_file(path, l->sysctl[i].value, &err) < 0) {
            err_wrap(&err, "sysctl %s", l->sysctl[i].key);
            child_die(c, &err);
        }
    }
    if (container_rootfs_readonly_paths(spec, &err) < 0 ||
        container_rootfs_masked_paths(spec, &err) < 0 || container_rootfs_finalize(spec, &err) < 0)
        child_die(c, &err);
    if (l && l->has_personality) {
        unsigned long pers =
            strcmp(l->personality_domain, "LINUX32") == 0 ? PER_LINUX32 : PER_LINUX;
        if (personality(pers) < 0)
            child_die_errno(c, "personality %s", l->personality_domain);
    }
    child_finish(c);
}

/* Stage 2 of exec: already in the container's namespaces. */
static _Noreturn void child_exec(struct child *c, int rootfd)
{
    child_wait_go(c);
    if (setsid() < 0)
        child_die_errno(c, "setsid");
    if (fchdir(rootfd) < 0 || chroot(".") < 0 || chdir("/") < 0)
        child_die_errno(c, "enter the container root");
    close(rootfd);
    if (c->proc->terminal)
        child_console(c);
    else
        child_stdio(c);
    child_finish(c);
}

static pid_t clone_parent(void)
{
    return (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, NULL, NULL, NULL, NULL);
}

/* Stage 1 of create: namespaces, then fork init. */
static _Noreturn void child_stage1(struct child *c)
{
    const oci_spec_t *spec = c->spec;
    int fds[OCI_NS_NTYPES];
    unsigned long unshare_flags = 0;

    child_wait_go(c); /* we are in the cgroup */
    for (int t = 0; t < OCI_NS_NTYPES; t++) {
        const oci_namespace_t *ns = find_ns(spec, t);
        fds[t] = -1;
        if (ns && ns->path) {
            fds[t] = open(ns->path, O_RDONLY | O_CLOEXEC);
            if (fds[t] < 0)
                child_die_errno(c, "open %s namespace %s", oci_ns_type_name(t), ns->path);
        } else if (ns) {
            unshare_flags |= ns_flags[t];
        }
    }
    for (size_t i = 0; i < sizeof(ns_join_order) / sizeof(*ns_join_order); i++) {
        int t = ns_join_order[i].type;
        if (fds[t] >= 0 && setns(fds[t], (int)ns_flags[t]) < 0)
            child_die_errno(c, "join %s namespace %s", oci_ns_type_name(t), find_ns(spec, t)->path);
    }
    if (unshare_flags & CLONE_NEWUSER) {
        if (unshare(CLONE_NEWUSER) < 0)
            child_die_errno(c, "create user namespace");
        if (send_msg(c->sync, 'U', NULL, 0, -1) < 0)
            _exit(1);
        child_wait_go(c);
    }
    if (find_ns(spec, OCI_NS_USER)) {
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
            child_die_errno(c, "become root in the user namespace (is 0 mapped?)");
    }
    if (unshare(unshare_flags & ~CLONE_NEWUSER) < 0)
        child_die_errno(c, "create namespaces");
    if (unshare_flags & CLONE_NEWNET)
        agent_net_lo_up(NULL); /* a new network namespace: loopback up, as runc */
    pid_t pid = clone_parent();
    if (pid < 0)
        child_die_errno(c, "clone the container init");
    if (pid == 0)
        child_init(c);
    send_msg(c->sync, 'P', &pid, sizeof(pid), -1);
    _exit(0);
}

/* Stage 1 of exec: join the init's namespaces and root. */
static _Noreturn void child_exec_stage1(struct child *c)
{
    int fds[OCI_NS_NTYPES];
    char path[64];
    child_wait_go(c);
    snprintf(path, sizeof(path), "/proc/%d/root", (int)c->init_pid);
    int rootfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        child_die_errno(c, "open %s", path);
    for (size_t i = 0; i < sizeof(ns_join_order) / sizeof(*ns_join_order); i++) {
        int t = ns_join_order[i].type;
        struct stat mine, theirs;
        char self[64];
        fds[t] = -1;
        snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)c->init_pid, ns_join_order[i].file);
        snprintf(self, sizeof(self), "/proc/self/ns/%s", ns_join_order[i].file);
        if (stat(path, &theirs) < 0) {
            if (errno == ENOENT)
                continue; /* kernel without this namespace type */
            child_die_errno(c, "stat %s", path);
        }
        if (stat(self, &mine) == 0 && mine.st_ino == theirs.st_ino && mine.st_dev == theirs.st_dev)
            continue;
        fds[t] = open(path, O_RDONLY | O_CLOEXEC);
        if (fds[t] < 0)
            child_die_errno(c, "open %s", path);
    }
    for (size_t i = 0; i < sizeof(ns_join_order) / sizeof(*ns_join_order); i++) {
        int t = ns_join_order[i].type;
        if (fds[t] >= 0 && setns(fds[t], (int)ns_flags[t]) < 0)
            child_die_errno(c, "join the container's %s namespace", ns_join_order[i].file);
        if (fds[t] >= 0)
            close(fds[t]);
        if (t == OCI_NS_USER && fds[t] >= 0 && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0))
            child_die_errno(c, "become root in the container's user namespace");
    }
    pid_t pid = clone_parent();
    if (pid < 0)
        child_die_errno(c, "clone the exec process");
    if (pid == 0)
        child_exec(c, rootfd);
    send_msg(c->sync, 'P', &pid, sizeof(pid), -1);
    _exit(0);
}

/* ---- parent side ----------------------------------------------------------- */

static int write_idmaps(pid_t pid, const oci_linux_t *l, err_t *err)
{
    for (int g = 0; g < 2; g++) {
        const oci_idmap_t *m = g ? l->gid_mappings : l->uid_mappings;
        size_t n = g ? l->n_gid_mappings : l->n_uid_mappings;
        char path[64], *buf = calloc(n ? n : 1, 40), *s = buf;
        if (!buf)
            abort();
        for (size_t i = 0; i < n; i++)
            s += sprintf(s, "%u %u %u\n", m[i].container_id, m[i].host_id, m[i].size);
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, g ? "gid_map" : "uid_map");
        int r = container_write_file(path, buf, err);
        free(buf);
        if (r < 0)
            return r;
    }
    return 0;
}

static int apply_limits(pid_t pid, const oci_process_t *p, err_t *err)
{
    for (size_t i = 0; i < p->n_rlimits; i++) {
        struct rlimit rl = {.rlim_cur = p->rlimits[i].soft, .rlim_max = p->rlimits[i].hard};
        int res = rlimit_resource(p->rlimits[i].type);
        if (res < 0 || prlimit(pid, res, &rl, NULL) < 0)
            return err_errno(err, "set %s", p->rlimits[i].type);
    }
    if (p->oom_score_adj.set) {
        char path[64], val[16];
        snprintf(path, sizeof(path), "/proc/%d/oom_score_adj", (int)pid);
        snprintf(val, sizeof(val), "%d", (int)p->oom_score_adj.value);
        if (container_write_file(path, val, err) < 0)
            return err_wrap(err, "set oomScoreAdj");
    }
    return 0;
}

static void reap(pid_t pid, bool kill_it)
{
    if (pid <= 0)
        return;
    if (kill_it)
        kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

static int move_fd_high(int fd)
{
    if (fd >= 3)
        return fd;
    int n = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return n;
}

struct launch {
    pid_t stage1;
    pid_t pid;
    int sync;    /* parent end */
    int console; /* received pty master */
};

/* Forks stage 1 with every signal blocked (restored in the parent), so
 * that no inherited handler ever runs in the child.
 *
 * Given a cgroup (v2 directory fd), the child starts in it: clone3 with
 * CLONE_INTO_CGROUP.  Moving it afterwards through cgroup.procs takes the
 * kernel's global threadgroup lock for writing, which waits for an RCU
 * grace period (10-15 ms measured on an idle host, docs/performance.md).
 * The agent has a single thread, so a raw clone3 without CLONE_VM is a
 * fork (no atfork handlers run: the agent registers none).  *joined
 * says whether the child is in the cgroup already; where clone3 is
 * refused (old kernel, seccomp, a cgroup that takes no process), a plain
 * fork is used and the caller moves the child. */
static pid_t fork_blocked(int cgroup_fd, bool *joined)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = -1;
    *joined = false;
    if (cgroup_fd >= 0) {
        struct clone_args ca = {.flags = CLONE_INTO_CGROUP,
                                .exit_signal = SIGCHLD,
                                .cgroup = (uint64_t)cgroup_fd};
        pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
        *joined = pid >= 0;
    }
    if (pid < 0)
        pid = fork();
    if (pid != 0)
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    return pid;
}

/* The cgroup directory as an fd for clone3, or -1 (then joined by pid). */
static int cgroup_dir_fd(const char *path)
{
    return path ? open(path, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
}

/* Drives the sync protocol until 'R' (create) or EOF after 'P' (exec). */
static int parent_protocol(struct launch *L, const oci_spec_t *spec, const oci_process_t *proc,
                           bool is_exec, err_t *err)
{
    char buf[4096];
    if (send_msg(L->sync, 'G', NULL, 0, -1) < 0)
        return err_errno(err, "signal the container process");
    for (;;) {
        int fd = -1;
        ssize_t n = recv_msg(L->sync, buf, sizeof(buf), &fd);
        if (n < 0)
            return err_make(err, (int)-n, "read from the container process: %s", strerror((int)-n));
        if (n == 0) {
            if (is_exec && L->pid > 0)
                return 0; /* exec'd: the socket closed on exec */
            return err_make(err, EIO, "the container process exited during setup");
        }
        switch (buf[0]) {
        case 'E':
            return err_make(err, EIO, "%s", buf + 1);
        case 'U':
            if (write_idmaps(L->stage1, spec->lnx, err) < 0)
                return err_wrap(err, "write id mappings");
            if (send_msg(L->sync, 'G', NULL, 0, -1) < 0)
                return err_errno(err, "signal the container process");
            break;
        case 'P':
            if (n != 1 + (ssize_t)sizeof(pid_t))
                return err_make(err, EPROTO, "bad pid message from the container process");
            memcpy(&L->pid, buf + 1, sizeof(pid_t));
            if (apply_limits(L->pid, proc, err) < 0)
                return -EIO;
            if (send_msg(L->sync, 'G', NULL, 0, -1) < 0)
                return err_errno(err, "signal the container process");
            break;
        case 'T':
            if (fd < 0)
                return err_make(err, EPROTO, "terminal message without a descriptor");
            if (L->console >= 0)
                close(L->console);
            L->console = fd;
            fd = -1;
            break;
        case 'R':
            if (!is_exec)
                return 0;
            /* fallthrough */
        default:
            if (fd >= 0)
                close(fd);
            return err_make(err, EPROTO, "unexpected message '%c' from the container process",
                            buf[0]);
        }
    }
}

static int resolve_rootfs(const container_config_t *cfg, char **out, err_t *err)
{
    char joined[PATH_MAX], real[PATH_MAX];
    const char *r = cfg->rootfs ? cfg->rootfs : cfg->spec->root_path;
    if (r[0] == '/' || !cfg->bundle)
        snprintf(joined, sizeof(joined), "%s", r);
    else if (snprintf(joined, sizeof(joined), "%s/%s", cfg->bundle, r) >= (int)sizeof(joined))
        return err_make(err, ENAMETOOLONG, "rootfs path too long");
    if (!realpath(joined, real))
        return err_errno(err, "rootfs %s", joined);
    struct stat st;
    if (stat(real, &st) < 0 || !S_ISDIR(st.st_mode))
        return err_make(err, ENOTDIR, "rootfs %s: not a directory", real);
    *out = strdup(real);
    return 0;
}

int container_create(const container_config_t *cfg, container_t **out, err_t *err)
{
    const oci_spec_t *spec = cfg->spec;
    _cleanup_free_ char *rootfs = NULL;
    _cleanup_free_ char *bundle = NULL;
    int sv[2] = {-1, -1}, sp[2] = {-1, -1};
    int r;

    if ((r = container_validate(spec, err)) < 0)
        return r;
    if (spec->lnx && spec->lnx->resources && !cfg->cgroup_path)
        return err_make(err, EINVAL, "linux.resources: set, but no cgroup directory was given");
    if ((r = resolve_rootfs(cfg, &rootfs, err)) < 0)
        return r;
    if (cfg->bundle && !(bundle = realpath(cfg->bundle, NULL)))
        return err_errno(err, "bundle %s", cfg->bundle);
    if (cfg->cgroup_path &&
        (r = container_cgroup_apply(cfg->cgroup_path, spec->lnx ? spec->lnx->resources : NULL,
                                    err)) < 0)
        return err_wrap(err, "cgroup %s", cfg->cgroup_path);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return err_errno(err, "socketpair");
    if (pipe2(sp, O_CLOEXEC) < 0) {
        r = err_errno(err, "pipe");
        close(sv[0]);
        close(sv[1]);
        return r;
    }
    for (int i = 0; i < 2; i++) {
        sv[i] = move_fd_high(sv[i]);
        sp[i] = move_fd_high(sp[i]);
    }

    struct child c = {
        .spec = spec,
        .proc = spec->process,
        .rootfs = rootfs,
        .bundle = bundle,
        .sync = sv[1],
        .start = sp[0],
        .stdio = {cfg->stdio[0], cfg->stdio[1], cfg->stdio[2]},
    };
    struct launch L = {.stage1 = -1, .pid = -1, .sync = sv[0], .console = -1};
    int cgfd = cgroup_dir_fd(cfg->cgroup_path);
    bool joined;
    L.stage1 = fork_blocked(cgfd, &joined);
    if (L.stage1 == 0) {
        close(sv[0]);
        close(sp[1]);
        child_stage1(&c);
    }
    if (cgfd >= 0)
        close(cgfd);
    close(sv[1]);
    close(sp[0]);
    if (L.stage1 < 0) {
        r = err_errno(err, "fork");
        goto fail;
    }
    if (cfg->cgroup_path && !joined &&
        (r = container_cgroup_join(cfg->cgroup_path, L.stage1, err)) < 0)
        goto fail;
    if ((r = parent_protocol(&L, spec, spec->process, false, err)) < 0)
        goto fail;
    reap(L.stage1, false);

    container_t *ct = calloc(1, sizeof(*ct));
    if (!ct)
        abort();
    ct->pid = L.pid;
    ct->sync_fd = L.sync;
    ct->start_fd = sp[1];
    ct->console_fd = L.console;
    *out = ct;
    return 0;

fail:
    close(sp[1]);
    close(L.sync);
    if (L.console >= 0)
        close(L.console);
    reap(L.pid, true);
    reap(L.stage1, true);
    return r < 0 ? r : -EIO;
}

pid_t container_pid(const container_t *c)
{
    return c ? c->pid : -1;
}

int container_take_console(container_t *c)
{
    if (!c)
        return -1;
    int fd = c->console_fd;
    c->console_fd = -1;
    return fd;
}

int container_start(container_t *c, err_t *err)
{
    char buf[4096];
    if (c->start_fd < 0)
        return err_make(err, EALREADY, "container already started");
    ssize_t n;
    do
        n = write(c->start_fd, "S", 1);
    while (n < 0 && errno == EINTR);
    int saved = errno;
    close(c->start_fd);
    c->start_fd = -1;
    if (n != 1) {
        errno = saved;
        return err_errno(err, "release the container init");
    }
    /* EOF: the socket closed on exec.  'E': exec failed. */
    struct pollfd pf = {c->sync_fd, POLLIN, 0};
    int pr;
    do
        pr = poll(&pf, 1, START_EXEC_MS);
    while (pr < 0 && errno == EINTR);
    if (pr == 0) /* the init stays: kill or delete ends it */
        return err_make(err, ETIMEDOUT, "the container's init did not exec within %d ms",
                        START_EXEC_MS);
    n = recv_msg(c->sync_fd, buf, sizeof(buf), NULL);
    close(c->sync_fd);
    c->sync_fd = -1;
    if (n > 0 && buf[0] == 'E')
        return err_make(err, EIO, "%s", buf + 1);
    return 0;
}

void container_destroy(container_t **c_p)
{
    if (!c_p || !*c_p)
        return;
    container_t *c = *c_p;
    if (c->start_fd >= 0)
        close(c->start_fd);
    if (c->sync_fd >= 0)
        close(c->sync_fd);
    if (c->console_fd >= 0)
        close(c->console_fd);
    free(c);
    *c_p = NULL;
}

int container_exec(const container_exec_config_t *cfg, pid_t *pid_out, int *console_out, err_t *err)
{
    int sv[2] = {-1, -1};
    int r;
    if (console_out)
        *console_out = -1;
    if ((r = validate_process(cfg->process, "process.", err)) < 0)
        return r;
    if (cfg->process->terminal && !console_out)
        return err_make(err, EINVAL, "process.terminal: set, but the caller takes no console");
    if (cfg->spec && cfg->spec->lnx && cfg->spec->lnx->seccomp &&
        (r = container_seccomp_validate(cfg->spec->lnx->seccomp, err)) < 0)
        return r;
    if (kill(cfg->init_pid, 0) < 0)
        return err_errno(err, "container init %d", (int)cfg->init_pid);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return err_errno(err, "socketpair");
    sv[0] = move_fd_high(sv[0]);
    sv[1] = move_fd_high(sv[1]);
    struct child c = {
        .spec = cfg->spec,
        .proc = cfg->process,
        .init_pid = cfg->init_pid,
        .sync = sv[1],
        .start = -1,
        .stdio = {cfg->stdio[0], cfg->stdio[1], cfg->stdio[2]},
        .is_exec = true,
    };
    struct launch L = {.stage1 = -1, .pid = -1, .sync = sv[0], .console = -1};
    int cgfd = cgroup_dir_fd(cfg->cgroup_path);
    bool joined;
    L.stage1 = fork_blocked(cgfd, &joined);
    if (L.stage1 == 0) {
        close(sv[0]);
        child_exec_stage1(&c);
    }
    if (cgfd >= 0)
        close(cgfd);
    close(sv[1]);
    if (L.stage1 < 0) {
        r = err_errno(err, "fork");
        goto fail;
    }
    if (cfg->cgroup_path && !joined &&
        (r = container_cgroup_join(cfg->cgroup_path, L.stage1, err)) < 0)
        goto fail;
    if ((r = parent_protocol(&L, cfg->spec, cfg->process, true, err)) < 0)
        goto fail;
    reap(L.stage1, false);
    close(L.sync);
    *pid_out = L.pid;
    if (console_out)
        *console_out = L.console;
    else if (L.console >= 0)
        close(L.console);
    return 0;

fail:
    close(L.sync);
    if (L.console >= 0)
        close(L.console);
    reap(L.pid, true);
    reap(L.stage1, true);
    return r < 0 ? r : -EIO;
}
