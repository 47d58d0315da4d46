/* qemu: the QEMU backend.
 *
 * husk forks and execs qemu itself (no -daemonize): the child gets the QMP
 * and agent listening sockets as fds 3 and 4 (bound by husk in the sandbox
 * dir, so there is no socket-appearance polling), closes everything else,
 * calls setsid() and execs.  qemu outlives a daemon that dies (no
 * PR_SET_PDEATHSIG, as runc's containers outlive runc): a new daemon takes
 * it over with hv_attach (QMP reconnected at qmp.sock; the agent channel's
 * chardev accepts the next host connection).  The pid is watched through a
 * pidfd in the owner's event_base; its readability is the VM's death,
 * whatever caused it (an attached qemu is not our child: no exit status).
 * Stop is QMP `quit`, then SIGKILL at the deadline.
 *
 * 9p hotplug: QEMU 7.2 has no fsdev_add (neither QMP nor HMP), and a
 * virtio-9p device needs an fsdev.  So the command line declares
 * `fs_slots` placeholder fsdevs (rw and readonly pairs) whose paths are
 * symlinks under <sandbox>/fs-slots/.  A hotplug retargets the symlink to
 * the host directory and device_adds virtio-9p-pci: the 9p local driver
 * opens its root at device realize, so it follows the new target. */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "hypervisors/hv-internal.h"
#include "hypervisors/qemu-internal.h"
#include "hypervisors/qmp.h"

#define MAX_FS_SLOTS  32
#define MAX_PCI_SLOTS 32

/* ---- argv vector ---- */

void hv_qemu_strv_add(struct hv_qemu_strv *s, const char *arg)
{
    if (s->oom)
        return;
    if (s->n + 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        char **v = realloc(s->v, cap * sizeof(*v));
        if (!v) {
            s->oom = true;
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n] = strdup(arg);
    if (!s->v[s->n]) {
        s->oom = true;
        return;
    }
    s->v[++s->n] = NULL;
}

void hv_qemu_strv_addf(struct hv_qemu_strv *s, const char *fmt, ...)
{
    char *str = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&str, fmt, ap);
    va_end(ap);
    if (r < 0) {
        s->oom = true;
        return;
    }
    hv_qemu_strv_add(s, str);
    free(str);
}

void hv_qemu_strv_free(char ***v_p)
{
    if (!v_p || !*v_p)
        return;
    for (char **p = *v_p; *p; p++)
        free(*p);
    free(*v_p);
    *v_p = NULL;
}

int hv_qemu_arch_for(const struct hv_config *cfg, struct hv_qemu_arch *a, err_t *err)
{
    return cfg->arch == HV_ARCH_AARCH64 ? hv_qemu_arch_arm64(cfg, a, err)
                                        : hv_qemu_arch_x86(cfg, a, err);
}

/* A path or mount tag given to qemu's option parser: a comma would split
 * the option (qemu's ",," escape is not worth the risk). */
static int check_opt_value(const char *what, const char *v, err_t *err)
{
    if (!v || !*v)
        return err_make(err, EINVAL, "qemu: %s is empty", what);
    if (strchr(v, ','))
        return err_make(err, EINVAL, "qemu: %s `%s` contains a comma", what, v);
    return 0;
}

int hv_qemu_build_argv(const struct hv_qemu_argv_in *in, char ***argv, err_t *err)
{
    const struct hv_config *cfg = in->cfg;
    struct hv_qemu_arch a;
    int r = hv_qemu_arch_for(cfg, &a, err);
    if (r < 0)
        return r;
    if (cfg->vcpus < 1 || (cfg->max_vcpus && cfg->max_vcpus < cfg->vcpus))
        return err_make(err, EINVAL, "qemu: vcpus %u / max %u invalid", cfg->vcpus, cfg->max_vcpus);
    if (cfg->memory_mib < 16)
        return err_make(err, EINVAL, "qemu: memory %u MiB is too small", cfg->memory_mib);
    if (cfg->fs_slots > MAX_FS_SLOTS || cfg->pci_slots > MAX_PCI_SLOTS)
        return err_make(err, EINVAL, "qemu: at most %d fs slots and %d pci slots", MAX_FS_SLOTS,
                        MAX_PCI_SLOTS);
    if ((r = check_opt_value("console log path", in->console_log, err)) < 0 ||
        (cfg->fs_slots && (r = check_opt_value("slot dir", in->slot_dir, err)) < 0))
        return r;
    for (const char *const *p = (const char *const[]){cfg->kernel, cfg->initrd, NULL}; *p; p++)
        if (**p && (r = check_opt_value("kernel/initrd path", *p, err)) < 0)
            return r;

    struct hv_qemu_strv s = {0};
    hv_qemu_strv_add(&s, cfg->binary ? cfg->binary : "qemu-system-x86_64");
    hv_qemu_strv_add(&s, "-name");
    hv_qemu_strv_addf(&s, "husk-%s", cfg->id ? cfg->id : "vm");
    hv_qemu_strv_add(&s, "-nodefaults");
    hv_qemu_strv_add(&s, "-no-user-config");
    hv_qemu_strv_add(&s, "-display");
    hv_qemu_strv_add(&s, "none");
    hv_qemu_strv_add(&s, "-sandbox");
    hv_qemu_strv_add(&s, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
    hv_qemu_strv_add(&s, "-no-reboot");
    if (cfg->start_paused)
        hv_qemu_strv_add(&s, "-S");
    r = cfg->arch == HV_ARCH_AARCH64 ? hv_qemu_argv_arm64(in, &s, err)
                                     : hv_qemu_argv_x86(in, &s, err);
    if (r < 0)
        goto fail;
    hv_qemu_strv_add(&s, "-m");
    hv_qemu_strv_addf(&s, "%uM", cfg->memory_mib);
    hv_qemu_strv_add(&s, "-smp");
    if (cfg->max_vcpus > cfg->vcpus)
        hv_qemu_strv_addf(&s, "%u,maxcpus=%u", cfg->vcpus, cfg->max_vcpus);
    else
        hv_qemu_strv_addf(&s, "%u", cfg->vcpus);
    if (cfg->kernel && *cfg->kernel) {
        hv_qemu_strv_add(&s, "-kernel");
        hv_qemu_strv_add(&s, cfg->kernel);
        if (cfg->initrd && *cfg->initrd) {
            hv_qemu_strv_add(&s, "-initrd");
            hv_qemu_strv_add(&s, cfg->initrd);
        }
        const char *base = cfg->arch == HV_ARCH_AARCH64 ? hv_qemu_base_params_arm64(cfg)
                                                        : hv_qemu_base_params_x86(cfg);
        const char *extra = cfg->kernel_params ? cfg->kernel_params : "";
        char tsc[40] = "";
        if (in->tsc_khz && cfg->arch == HV_ARCH_X86_64)
            snprintf(tsc, sizeof(tsc), " tsc_early_khz=%u", in->tsc_khz);
        hv_qemu_strv_add(&s, "-append");
        hv_qemu_strv_addf(&s, "%s%s%s%s%s", base, tsc, cfg->debug_console ? "" : " quiet",
                          *extra ? " " : "", extra);
    }
    /* QMP and agent: listening sockets inherited as fds. */
    hv_qemu_strv_add(&s, "-chardev");
    hv_qemu_strv_addf(&s, "socket,id=qmp,fd=%d,server=on,wait=off", HV_QEMU_QMP_FD);
    hv_qemu_strv_add(&s, "-mon");
    hv_qemu_strv_add(&s, "chardev=qmp,mode=control");
    hv_qemu_strv_add(&s, "-chardev");
    hv_qemu_strv_addf(&s, "file,id=console,path=%s", in->console_log);
    hv_qemu_strv_add(&s, "-serial");
    hv_qemu_strv_add(&s, "chardev:console");
    hv_qemu_strv_add(&s, "-device");
    hv_qemu_strv_addf(&s, "virtio-serial%s,id=vser0", a.pci_suffix);
    hv_qemu_strv_add(&s, "-chardev");
    hv_qemu_strv_addf(&s, "socket,id=agent,fd=%d,server=on,wait=off", HV_QEMU_AGENT_FD);
    hv_qemu_strv_add(&s, "-device");
    hv_qemu_strv_add(&s, "virtserialport,bus=vser0.0,chardev=agent,name=agent.0");
    /* entropy from the host: without it the guest's crng is seeded by jitter
     * only, and the first read of /dev/urandom (jansson's hash seed in the
     * agent, or any getrandom() in a container) waits ~1.5 s under TCG */
    hv_qemu_strv_add(&s, "-object");
    hv_qemu_strv_add(&s, "rng-builtin,id=rng0");
    hv_qemu_strv_add(&s, "-device");
    hv_qemu_strv_addf(&s, "virtio-rng%s,rng=rng0", a.pci_suffix);
    for (size_t i = 0; i < cfg->n_shares; i++) {
        const struct hv_share *sh = &cfg->shares[i];
        if ((r = check_opt_value("share path", sh->host_path, err)) < 0 ||
            (r = hv_check_id("share mount tag", sh->mount_tag, err)) < 0)
            goto fail;
        hv_qemu_strv_add(&s, "-fsdev");
        hv_qemu_strv_addf(&s, "local,id=fs-%s,path=%s,security_model=none%s", sh->mount_tag,
                          sh->host_path, sh->readonly ? ",readonly=on" : "");
        hv_qemu_strv_add(&s, "-device");
        hv_qemu_strv_addf(&s, "virtio-9p%s,id=share-%s,fsdev=fs-%s,mount_tag=%s", a.pci_suffix,
                          sh->mount_tag, sh->mount_tag, sh->mount_tag);
    }
    if (a.hotplug)
        for (unsigned i = 0; i < cfg->fs_slots; i++) {
            hv_qemu_strv_add(&s, "-fsdev");
            hv_qemu_strv_addf(&s, "local,id=fsslot%u,path=%s/%u,security_model=none", i,
                              in->slot_dir, i);
            hv_qemu_strv_add(&s, "-fsdev");
            hv_qemu_strv_addf(&s,
                              "local,id=fsslot%uro,path=%s/%uro,security_model=none,readonly=on", i,
                              in->slot_dir, i);
        }
    /* NICs at boot: a tap of cfg->netns (qemu runs there) by name; on
     * q35 each behind its own root port so that it can be unplugged */
    for (size_t i = 0; i < cfg->n_nets; i++) {
        const struct hv_net *nt = &cfg->nets[i];
        if ((r = hv_check_id("net device", nt->id, err)) < 0 ||
            (r = hv_check_id("tap", nt->tap, err)) < 0 ||
            (nt->mac && (r = check_opt_value("mac", nt->mac, err)) < 0))
            goto fail;
        hv_qemu_strv_add(&s, "-netdev");
        hv_qemu_strv_addf(&s, "tap,id=net-%s,ifname=%s,script=no,downscript=no%s", nt->id, nt->tap,
                          in->accel == HV_ACCEL_KVM ? ",vhost=on" : "");
        char bus[48] = "";
        if (a.root_ports) {
            hv_qemu_strv_add(&s, "-device");
            hv_qemu_strv_addf(&s, "pcie-root-port,id=rpn%zu,bus=pcie.0,chassis=%zu", i, 64 + i);
            snprintf(bus, sizeof bus, ",bus=rpn%zu", i);
        }
        hv_qemu_strv_add(&s, "-device");
        hv_qemu_strv_addf(&s, "virtio-net%s,id=%s,netdev=net-%s%s%s%s", a.pci_suffix, nt->id,
                          nt->id, nt->mac ? ",mac=" : "", nt->mac ? nt->mac : "", bus);
    }
    for (size_t i = 0; cfg->extra_args && cfg->extra_args[i]; i++)
        hv_qemu_strv_add(&s, cfg->extra_args[i]);
    if (s.oom) {
        r = err_make(err, ENOMEM, "qemu: out of memory building the command line");
        goto fail;
    }
    *argv = s.v;
    return 0;
fail:
    s.v ? (void)hv_qemu_strv_free(&s.v) : (void)0;
    return r;
}

/* ---- instance ---- */

enum qstate { Q_NEW = 0, Q_PREPARED, Q_STARTING, Q_RUNNING, Q_STOPPING, Q_EXITED };

struct qdev {
    struct qdev *next;
    enum hv_dev_kind kind;
    char id[32];
    int fs_slot;  /* share-fs: slot index, else -1 */
    bool fs_ro;   /* slot from the readonly half */
    int pci_slot; /* q35 root port index, else -1 */
    bool removing;
    hv_done_fn done; /* removal completion */
    void *arg;
    struct event *timer; /* DEVICE_DELETED deadline */
    struct qemu *qm;
};

struct qemu {
    hv_t *hv;
    enum qstate state;
    enum hv_accel accel;
    char accel_reason[256];
    struct hv_qemu_arch arch;
    char **argv;
    char *qmp_path, *agent_path, *console_path, *stderr_path, *pid_path, *slot_dir, *empty_dir;
    pid_t pid;
    int pidfd;
    bool attached; /* taken over from a previous daemon: not our child */
    struct event *pid_ev;
    struct event *kill_timer;
    hv_qmp_t *qmp;
    hv_done_fn start_done;
    void *start_arg;
    hv_done_fn stop_done;
    void *stop_arg;
    bool stop_requested;
    /* QMP failed while starting: qemu is killed, and this error is the
     * start's unless qemu had exited by itself (its status and stderr
     * say more than the socket's reset) */
    int qmp_fail_code;
    char qmp_fail[256];
    bool fs_used[2][MAX_FS_SLOTS];
    bool pci_used[MAX_PCI_SLOTS];
    struct qdev *devs;
};

static struct qemu *Q(hv_t *hv)
{
    return hv->priv;
}

static int qm_create(hv_t *hv, const struct hv_config *cfg, err_t *err)
{
    struct qemu *qm = calloc(1, sizeof(*qm));
    if (!qm)
        return err_make(err, ENOMEM, "qemu: out of memory");
    qm->hv = hv;
    qm->pidfd = -1;
    qm->pid = -1;
    hv->priv = qm;
    if (!cfg->sandbox_dir || cfg->sandbox_dir[0] != '/')
        return err_make(err, EINVAL, "qemu: sandbox dir must be an absolute path");
    if (!hv->cfg.binary) {
        hv->cfg.binary =
            strdup(cfg->arch == HV_ARCH_AARCH64 ? "qemu-system-aarch64" : "qemu-system-x86_64");
        if (!hv->cfg.binary)
            return err_make(err, ENOMEM, "qemu: out of memory");
    }
    if (!hv->cfg.machine) {
        hv->cfg.machine = strdup(cfg->arch == HV_ARCH_AARCH64 ? "virt" : "q35");
        if (!hv->cfg.machine)
            return err_make(err, ENOMEM, "qemu: out of memory");
    }
    if (hv->cfg.stop_timeout_ms <= 0)
        hv->cfg.stop_timeout_ms = 3000;
    if (hv->cfg.qmp_timeout_ms <= 0)
        hv->cfg.qmp_timeout_ms = 5000;
    const char *d = cfg->sandbox_dir;
    if (asprintf(&qm->qmp_path, "%s/qmp.sock", d) < 0 ||
        asprintf(&qm->agent_path, "%s/agent.sock", d) < 0 ||
        asprintf(&qm->console_path, "%s/console.log", d) < 0 ||
        asprintf(&qm->stderr_path, "%s/qemu.log", d) < 0 ||
        asprintf(&qm->pid_path, "%s/qemu.pid", d) < 0 ||
        asprintf(&qm->slot_dir, "%s/fs-slots", d) < 0 ||
        asprintf(&qm->empty_dir, "%s/fs-slots/empty", d) < 0)
        return err_make(err, ENOMEM, "qemu: out of memory");
    struct sockaddr_un sa;
    if (strlen(qm->agent_path) >= sizeof(sa.sun_path))
        return err_make(err, ENAMETOOLONG, "qemu: sandbox dir `%s` too long for a unix socket", d);
    return 0;
}

static void remove_files(struct qemu *qm)
{
    if (!qm->qmp_path)
        return;
    unlink(qm->qmp_path);
    unlink(qm->agent_path);
    unlink(qm->pid_path);
    if (qm->slot_dir) {
        char p[4096];
        for (unsigned i = 0; i < MAX_FS_SLOTS; i++) {
            snprintf(p, sizeof(p), "%s/%u", qm->slot_dir, i);
            unlink(p);
            snprintf(p, sizeof(p), "%s/%uro", qm->slot_dir, i);
            unlink(p);
        }
        rmdir(qm->empty_dir);
        rmdir(qm->slot_dir);
    }
}

static void qdev_free(struct qdev *d)
{
    if (d->timer)
        event_free(d->timer);
    free(d);
}

static void qm_destroy(hv_t *hv)
{
    struct qemu *qm = Q(hv);
    if (!qm)
        return;
    hv_qmp_destroy(&qm->qmp);
    if (qm->pid_ev)
        event_free(qm->pid_ev);
    if (qm->kill_timer)
        event_free(qm->kill_timer);
    if (qm->pidfd >= 0 && qm->attached) {
        hv_pidfd_kill_wait(qm->pidfd, 5000); /* not ours to reap */
        qm->pidfd = -1;
    }
    if (qm->pidfd >= 0) {
        /* Still alive or not yet reaped: kill and reap; bounded. */
        syscall(SYS_pidfd_send_signal, qm->pidfd, SIGKILL, NULL, 0);
        siginfo_t si;
        while (waitid(P_PIDFD, qm->pidfd, &si, WEXITED) < 0 && errno == EINTR)
            ;
        close(qm->pidfd);
    }
    remove_files(qm);
    while (qm->devs) {
        struct qdev *d = qm->devs;
        qm->devs = d->next;
        qdev_free(d);
    }
    hv_qemu_strv_free(&qm->argv);
    free(qm->qmp_path);
    free(qm->agent_path);
    free(qm->console_path);
    free(qm->stderr_path);
    free(qm->pid_path);
    free(qm->slot_dir);
    free(qm->empty_dir);
    free(qm);
    hv->priv = NULL;
}

static int symlink_replace(const char *target, const char *link, err_t *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", link);
    unlink(tmp);
    if (symlink(target, tmp) < 0)
        return err_errno(err, "qemu: symlink %s", tmp);
    if (rename(tmp, link) < 0) {
        int r = err_errno(err, "qemu: rename %s", tmp);
        unlink(tmp);
        return r;
    }
    return 0;
}

static char *find_in_path(const char *name)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *end = strchrnul(path, ':');
        char *cand = NULL;
        if (asprintf(&cand, "%.*s/%s", (int)(end - path), path, name) < 0)
            return NULL;
        if (access(cand, X_OK) == 0)
            return cand;
        free(cand);
        path = *end ? end + 1 : end;
    }
    return NULL;
}

unsigned hv_qemu_host_tsc_khz(const char *cpuinfo)
{
    FILE *f = fopen(cpuinfo ? cpuinfo : "/proc/cpuinfo", "re");
    if (!f)
        return 0;
    char line[256];
    double mhz = 0;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "cpu MHz", 7)) {
            char *colon = strchr(line, ':');
            if (colon)
                mhz = strtod(colon + 1, NULL);
            break;
        }
    fclose(f);
    return mhz > 0 && mhz < 100000 ? (unsigned)(mhz * 1000) : 0;
}

static int qm_prepare(hv_t *hv, err_t *err)
{
    struct qemu *qm = Q(hv);
    struct hv_config *cfg = &hv->cfg;
    if (qm->state != Q_NEW)
        return err_make(err, EALREADY, "qemu: already prepared");
    struct stat st;
    if (stat(cfg->sandbox_dir, &st) < 0)
        return err_errno(err, "qemu: sandbox dir %s", cfg->sandbox_dir);
    int r = hv_qemu_arch_for(cfg, &qm->arch, err);
    if (r < 0)
        return r;
    if (cfg->kernel && access(cfg->kernel, R_OK) < 0)
        return err_errno(err, "qemu: kernel %s", cfg->kernel);
    if (cfg->initrd && access(cfg->initrd, R_OK) < 0)
        return err_errno(err, "qemu: initrd %s", cfg->initrd);
    if (!strchr(cfg->binary, '/')) {
        char *path = find_in_path(cfg->binary);
        if (!path)
            return err_make(err, ENOENT, "qemu: binary `%s` not found in PATH", cfg->binary);
        free((char *)cfg->binary);
        cfg->binary = path;
    } else if (access(cfg->binary, X_OK) < 0) {
        return err_errno(err, "qemu: binary %s", cfg->binary);
    }
    qm->accel =
        hv_accel_detect(cfg->accel, cfg->accel_probe, qm->accel_reason, sizeof(qm->accel_reason));
    /* The one info line of this layer: the choice matters to every user. */
    log_info("hypervisor qemu accel=%s reason=\"%s\"", hv_accel_name(qm->accel), qm->accel_reason);
    if (qm->arch.hotplug && cfg->fs_slots) {
        if ((mkdir(qm->slot_dir, 0700) < 0 && errno != EEXIST) ||
            (mkdir(qm->empty_dir, 0500) < 0 && errno != EEXIST))
            return err_errno(err, "qemu: mkdir %s", qm->slot_dir);
        char p[4096];
        for (unsigned i = 0; i < cfg->fs_slots; i++) {
            snprintf(p, sizeof(p), "%s/%u", qm->slot_dir, i);
            if ((r = symlink_replace(qm->empty_dir, p, err)) < 0)
                return r;
            snprintf(p, sizeof(p), "%s/%uro", qm->slot_dir, i);
            if ((r = symlink_replace(qm->empty_dir, p, err)) < 0)
                return r;
        }
    }
    struct hv_qemu_argv_in in = {
        .cfg = cfg,
        .accel = qm->accel,
        .console_log = qm->console_path,
        .slot_dir = qm->slot_dir,
        .tsc_khz = qm->accel == HV_ACCEL_TCG ? hv_qemu_host_tsc_khz(NULL) : 0,
    };
    r = hv_qemu_build_argv(&in, &qm->argv, err);
    if (r < 0)
        return r;
    qm->state = Q_PREPARED;
    return 0;
}

static int listen_unix(const char *path, err_t *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_errno(err, "qemu: socket");
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
        listen(fd, 16) < 0) {
        int r = err_errno(err, "qemu: listen on %s", path);
        close(fd);
        return r;
    }
    return fd;
}

/* The last line of qemu's stderr, for error messages. */
static void stderr_tail(struct qemu *qm, char *buf, size_t len)
{
    buf[0] = '\0';
    int fd = open(qm->stderr_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char tmp[1024];
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > (off_t)sizeof(tmp) - 1 ? size - (off_t)sizeof(tmp) + 1 : 0;
    ssize_t n = pread(fd, tmp, sizeof(tmp) - 1, from);
    close(fd);
    if (n <= 0)
        return;
    tmp[n] = '\0';
    while (n > 0 && (tmp[n - 1] == '\n' || tmp[n - 1] == '\r'))
        tmp[--n] = '\0';
    char *last = strrchr(tmp, '\n');
    last = last ? last + 1 : tmp;
    size_t m = strnlen(last, len - 1);
    memcpy(buf, last, m);
    buf[m] = '\0';
}

static void finish_start(struct qemu *qm, int status, const err_t *err)
{
    hv_done_fn done = qm->start_done;
    void *arg = qm->start_arg;
    qm->start_done = NULL;
    hv_done(qm->hv, done, arg, status, err);
}

static void fail_device_ops(struct qemu *qm, const err_t *err)
{
    for (struct qdev *d = qm->devs; d && !qm->hv->doomed; d = d->next)
        if (d->removing && d->done) {
            hv_done_fn done = d->done;
            d->done = NULL;
            if (d->timer)
                event_del(d->timer);
            hv_done(qm->hv, done, d->arg, -err->code, err);
        }
}

/* The pidfd became readable: qemu is gone. */
static void on_pid_exit(evutil_socket_t fd, short what, void *arg)
{
    struct qemu *qm = arg;
    hv_t *hv = qm->hv;
    hv_enter(hv);
    siginfo_t si = {0};
    int r;
    if (qm->attached) {
        /* not our child: gone, with a status only its reaper knows */
        si.si_code = CLD_KILLED;
        si.si_status = qm->stop_requested ? SIGKILL : 0;
    } else {
        while ((r = waitid(P_PIDFD, qm->pidfd, &si, WEXITED | WNOHANG)) < 0 && errno == EINTR)
            ;
        if (r == 0 && si.si_pid == 0)
            goto out; /* spurious */
    }
    event_del(qm->pid_ev);
    close(qm->pidfd);
    qm->pidfd = -1;
    if (qm->kill_timer)
        event_del(qm->kill_timer);
    hv_qmp_destroy(&qm->qmp);
    remove_files(qm);
    bool expected = qm->stop_requested;
    qm->state = Q_EXITED;
    bool sig = si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED;
    char why[512], tail[300];
    stderr_tail(qm, tail, sizeof(tail));
    if (sig)
        snprintf(why, sizeof(why), "qemu pid %d killed by signal %d%s%s", (int)qm->pid,
                 si.si_status, *tail ? ": " : "", tail);
    else
        snprintf(why, sizeof(why), "qemu pid %d exited with status %d%s%s", (int)qm->pid,
                 si.si_status, *tail ? ": " : "", tail);
    log_debug("%s", why);
    err_t e = ERR_INIT;
    if (qm->qmp_fail_code && sig && si.si_status == SIGKILL)
        err_make(&e, qm->qmp_fail_code, "%s", qm->qmp_fail);
    else
        err_make(&e, ECHILD, "%s", why);
    if (qm->start_done)
        finish_start(qm, -e.code, &e);
    if (!hv->doomed)
        fail_device_ops(qm, &e);
    if (!hv->doomed && qm->stop_done) {
        hv_done_fn done = qm->stop_done;
        qm->stop_done = NULL;
        hv_done(hv, done, qm->stop_arg, 0, NULL);
    }
    if (!hv->doomed) {
        struct hv_event ev = {
            .kind = HV_EV_EXITED,
            .name = "EXITED",
            .wait_status = si.si_status,
            .exited_by_signal = sig,
            .expected = expected,
            .reason = why,
        };
        hv_emit(hv, &ev);
    }
    err_clear(&e);
out:
    hv_leave(hv);
}

static void on_kill_timer(evutil_socket_t fd, short what, void *arg)
{
    struct qemu *qm = arg;
    if (qm->pidfd >= 0) {
        log_debug("qemu pid %d: no exit within %d ms of quit, SIGKILL", (int)qm->pid,
                  qm->hv->cfg.stop_timeout_ms);
        syscall(SYS_pidfd_send_signal, qm->pidfd, SIGKILL, NULL, 0);
    }
}

static struct qdev *find_dev(struct qemu *qm, const char *id)
{
    for (struct qdev *d = qm->devs; d; d = d->next)
        if (!strcmp(d->id, id))
            return d;
    return NULL;
}

static void remove_dev_finish(struct qdev *d, int status, const err_t *err);

static void on_qmp_event(hv_qmp_t *q, void *arg, const char *name, json_t *data)
{
    struct qemu *qm = arg;
    hv_t *hv = qm->hv;
    hv_enter(hv);
    struct hv_event ev = {.kind = HV_EV_OTHER, .name = name};
    if (!strcmp(name, "SHUTDOWN")) {
        ev.kind = HV_EV_SHUTDOWN;
        ev.reason = json_string_value(json_object_get(data, "reason"));
    } else if (!strcmp(name, "STOP")) {
        ev.kind = HV_EV_PAUSED;
    } else if (!strcmp(name, "RESUME")) {
        ev.kind = HV_EV_RESUMED;
    } else if (!strcmp(name, "DEVICE_DELETED")) {
        ev.kind = HV_EV_DEVICE_DELETED;
        ev.device_id = json_string_value(json_object_get(data, "device"));
    }
    hv_emit(hv, &ev);
    if (!hv->doomed && ev.kind == HV_EV_DEVICE_DELETED && ev.device_id) {
        struct qdev *d = find_dev(qm, ev.device_id);
        if (d && d->removing)
            remove_dev_finish(d, 0, NULL);
    }
    hv_leave(hv);
}

static void on_qmp_ready(hv_qmp_t *q, void *arg, int status, const err_t *err)
{
    struct qemu *qm = arg;
    hv_t *hv = qm->hv;
    hv_enter(hv);
    if (qm->state == Q_STARTING)
        qm->state = Q_RUNNING;
    finish_start(qm, 0, NULL);
    if (!hv->doomed) {
        struct hv_event ev = {.kind = HV_EV_READY, .name = "READY"};
        hv_emit(hv, &ev);
    }
    hv_leave(hv);
}

static void on_qmp_closed(hv_qmp_t *q, void *arg, int status, const err_t *err)
{
    struct qemu *qm = arg;
    hv_t *hv = qm->hv;
    hv_enter(hv);
    log_debug("qemu: qmp closed: %s", err_str(err));
    /* Usually qemu exiting: the pidfd reports it.  A live qemu whose QMP
     * failed (negotiation timeout, garbage) is unusable: kill it.  The
     * start completes when the pidfd says qemu is gone: with this error
     * if our SIGKILL ended it, else with qemu's own exit status and the
     * last line of its stderr (a qemu that rejects its command line
     * exits, and its socket resets, at about the same time). */
    if (qm->pidfd >= 0 && qm->state == Q_STARTING && qm->start_done && !qm->qmp_fail_code) {
        qm->qmp_fail_code = err && err->code > 0 ? err->code : EIO;
        snprintf(qm->qmp_fail, sizeof(qm->qmp_fail), "qemu: %s", err_str(err));
        syscall(SYS_pidfd_send_signal, qm->pidfd, SIGKILL, NULL, 0);
    }
    hv_leave(hv);
}

static int write_pid_file(struct qemu *qm)
{
    char tmp[4096], buf[32];
    snprintf(tmp, sizeof(tmp), "%s.tmp", qm->pid_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)qm->pid);
    bool ok = write(fd, buf, n) == n;
    close(fd);
    if (!ok || rename(tmp, qm->pid_path) < 0) {
        unlink(tmp);
        return -EIO;
    }
    return 0;
}

/* Runs in the child between fork and exec: async-signal-safe calls only,
 * never exit(). */
static void __attribute__((noreturn)) child_exec(char **argv, int qmp_fd, int agent_fd, int null_fd,
                                                 int log_fd, int netns_fd, pid_t parent)
{
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);
    (void)parent; /* no PDEATHSIG: qemu outlives a dead daemon (hv_attach) */
    setsid();
    if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) < 0)
        _exit(125);
    /* Move everything above 4 first so dup2 cannot clobber a source. */
    int q = fcntl(qmp_fd, F_DUPFD, 10), a = fcntl(agent_fd, F_DUPFD, 10);
    int n = fcntl(null_fd, F_DUPFD, 10), l = fcntl(log_fd, F_DUPFD, 10);
    if (q < 0 || a < 0 || n < 0 || l < 0 || dup2(n, 0) < 0 || dup2(l, 1) < 0 || dup2(l, 2) < 0 ||
        dup2(q, HV_QEMU_QMP_FD) < 0 || dup2(a, HV_QEMU_AGENT_FD) < 0)
        _exit(126);
    syscall(SYS_close_range, HV_QEMU_AGENT_FD + 1, ~0U, 0);
    execv(argv[0], argv);
    _exit(127);
}

static int qm_start(hv_t *hv, hv_done_fn done, void *arg, err_t *err)
{
    struct qemu *qm = Q(hv);
    if (qm->state == Q_NEW) {
        int r = qm_prepare(hv, err);
        if (r < 0)
            return r;
    }
    if (qm->state != Q_PREPARED)
        return err_make(err, EALREADY, "qemu: already started");
    _cleanup_close_ int qmp_l = listen_unix(qm->qmp_path, err);
    if (qmp_l < 0)
        return qmp_l;
    _cleanup_close_ int agent_l = listen_unix(qm->agent_path, err);
    if (agent_l < 0)
        return agent_l;
    _cleanup_close_ int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    _cleanup_close_ int log_fd =
        open(qm->stderr_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0600);
    if (null_fd < 0 || log_fd < 0)
        return err_errno(err, "qemu: open %s", null_fd < 0 ? "/dev/null" : qm->stderr_path);
    _cleanup_close_ int netns_fd = -1;
    if (hv->cfg.netns && hv->cfg.netns[0] &&
        (netns_fd = open(hv->cfg.netns, O_RDONLY | O_CLOEXEC)) < 0)
        return err_errno(err, "qemu: open network namespace %s", hv->cfg.netns);
    /* Connect before fork: the listening socket queues us until qemu's
     * monitor accepts, so no polling for the socket is needed. */
    int cfd = hv_qmp_connect_unix(qm->qmp_path, err);
    if (cfd < 0)
        return cfd;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(cfd);
        return err_errno(err, "qemu: fork");
    }
    if (pid == 0)
        child_exec(qm->argv, qmp_l, agent_l, null_fd, log_fd, netns_fd, parent);
    qm->pid = pid;
    qm->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (qm->pidfd < 0) {
        int r = err_errno(err, "qemu: pidfd_open %d", (int)pid);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(cfd);
        return r;
    }
    for (size_t i = 0; i < hv->cfg.n_nets; i++) {
        struct qdev *d = calloc(1, sizeof(*d));
        if (!d)
            break;
        d->qm = qm;
        d->kind = HV_DEV_NET;
        d->fs_slot = -1;
        d->pci_slot = -1;
        snprintf(d->id, sizeof(d->id), "%s", hv->cfg.nets[i].id);
        d->next = qm->devs;
        qm->devs = d;
    }
    qm->state = Q_STARTING;
    qm->start_done = done;
    qm->start_arg = arg;
    write_pid_file(qm); /* informational; failure is harmless */
    qm->pid_ev = event_new(hv->base, qm->pidfd, EV_READ | EV_PERSIST, on_pid_exit, qm);
    qm->kill_timer = evtimer_new(hv->base, on_kill_timer, qm);
    if (!qm->pid_ev || !qm->kill_timer || event_add(qm->pid_ev, NULL) < 0) {
        close(cfd);
        qm->start_done = NULL;
        return err_make(err, ENOMEM, "qemu: out of memory");
    }
    struct hv_qmp_callbacks cb = {
        .on_ready = on_qmp_ready,
        .on_closed = on_qmp_closed,
        .on_event = on_qmp_event,
        .arg = qm,
    };
    /* Loading a large kernel with a cold page cache can take ~250 ms. */
    struct hv_qmp_opts o = {.negotiate_timeout_ms = hv->cfg.qmp_timeout_ms};
    int r = hv_qmp_new(hv->base, cfd, &cb, &o, &qm->qmp, err);
    if (r < 0) {
        qm->start_done = NULL;
        return r;
    }
    log_debug("qemu: started pid %d", (int)pid);
    return 0;
}

/* Takes over a qemu started by a previous daemon: the pid must still be
 * that process (starttime), then QMP is reconnected and negotiated; done
 * is called then (or with the error when qemu is gone or QMP fails, in
 * which case qemu is killed: a VMM we cannot drive is of no use). */
static int qm_attach(hv_t *hv, pid_t pid, uint64_t pid_start, hv_done_fn done, void *arg,
                     err_t *err)
{
    struct qemu *qm = Q(hv);
    if (qm->state != Q_NEW)
        return err_make(err, EALREADY, "qemu: already started");
    int r = hv_pid_check(pid, pid_start, err);
    if (r < 0)
        return r;
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0)
        return err_make(err, ESRCH, "qemu: pidfd_open %d: %s", (int)pid, strerror(errno));
    /* the pid may have been reused between the check and the open */
    if ((r = hv_pid_check(pid, pid_start, err)) < 0) {
        close(pidfd);
        return r;
    }
    int cfd = hv_qmp_connect_unix(qm->qmp_path, err);
    if (cfd < 0) {
        close(pidfd);
        return cfd;
    }
    qm->pid = pid;
    qm->pidfd = pidfd;
    qm->attached = true;
    qm->pid_ev = event_new(hv->base, qm->pidfd, EV_READ | EV_PERSIST, on_pid_exit, qm);
    qm->kill_timer = evtimer_new(hv->base, on_kill_timer, qm);
    if (!qm->pid_ev || !qm->kill_timer || event_add(qm->pid_ev, NULL) < 0) {
        close(cfd);
        return err_make(err, ENOMEM, "qemu: out of memory");
    }
    qm->state = Q_STARTING;
    qm->start_done = done;
    qm->start_arg = arg;
    struct hv_qmp_callbacks cb = {
        .on_ready = on_qmp_ready,
        .on_closed = on_qmp_closed,
        .on_event = on_qmp_event,
        .arg = qm,
    };
    struct hv_qmp_opts o = {.negotiate_timeout_ms = hv->cfg.qmp_timeout_ms};
    if ((r = hv_qmp_new(hv->base, cfd, &cb, &o, &qm->qmp, err)) < 0) {
        qm->start_done = NULL;
        return r;
    }
    log_debug("qemu: attaching to pid %d", (int)pid);
    return 0;
}

static void on_quit_reply(hv_qmp_t *q, void *arg, json_t *ret, const err_t *err)
{
    /* Nothing: the pidfd tells when qemu is gone; the kill timer bounds it. */
}

static int qm_stop(hv_t *hv, hv_done_fn done, void *arg, err_t *err)
{
    struct qemu *qm = Q(hv);
    if (qm->state == Q_NEW || qm->state == Q_PREPARED || qm->state == Q_EXITED)
        return err_make(err, ESRCH, "qemu: not running");
    if (qm->stop_done)
        return err_make(err, EALREADY, "qemu: stop already in progress");
    qm->stop_requested = true;
    qm->stop_done = done;
    qm->stop_arg = arg;
    qm->state = Q_STOPPING;
    int t = hv->cfg.stop_timeout_ms;
    struct timeval tv = {t / 1000, (t % 1000) * 1000};
    evtimer_add(qm->kill_timer, &tv);
    err_t e = ERR_INIT;
    if (!qm->qmp || !hv_qmp_is_ready(qm->qmp) ||
        hv_qmp_command(qm->qmp, "quit", NULL, t, on_quit_reply, qm, &e) < 0)
        syscall(SYS_pidfd_send_signal, qm->pidfd, SIGKILL, NULL, 0);
    err_clear(&e);
    return 0;
}

/* ---- simple QMP-backed operations ---- */

struct simple_op {
    struct qemu *qm;
    hv_done_fn done;
    void *arg;
};

static void on_simple_reply(hv_qmp_t *q, void *arg, json_t *ret, const err_t *err)
{
    struct simple_op *op = arg;
    hv_t *hv = op->qm->hv;
    hv_enter(hv);
    hv_done(hv, op->done, op->arg, err ? -err->code : 0, err);
    free(op);
    hv_leave(hv);
}

static int need_qmp(struct qemu *qm, const char *what, err_t *err)
{
    if (qm->state != Q_RUNNING || !qm->qmp || !hv_qmp_is_ready(qm->qmp))
        return err_make(err, ESRCH, "qemu: %s: VM not running", what);
    return 0;
}

static int simple_cmd(struct qemu *qm, const char *what, const char *cmd, json_t *args,
                      hv_done_fn done, void *arg, err_t *err)
{
    int r = need_qmp(qm, what, err);
    if (r < 0) {
        json_decref(args);
        return r;
    }
    struct simple_op *op = calloc(1, sizeof(*op));
    if (!op) {
        json_decref(args);
        return err_make(err, ENOMEM, "qemu: out of memory");
    }
    *op = (struct simple_op){qm, done, arg};
    r = hv_qmp_command(qm->qmp, cmd, args, qm->hv->cfg.qmp_timeout_ms, on_simple_reply, op, err);
    if (r < 0)
        free(op);
    return r;
}

static int qm_pause(hv_t *hv, hv_done_fn done, void *arg, err_t *err)
{
    return simple_cmd(Q(hv), "pause", "stop", NULL, done, arg, err);
}

static int qm_resume(hv_t *hv, hv_done_fn done, void *arg, err_t *err)
{
    return simple_cmd(Q(hv), "resume", "cont", NULL, done, arg, err);
}

/* ---- hotplug ---- */

/* A multi-step device addition: up to two QMP commands. */
struct add_op {
    struct qemu *qm;
    struct qdev *dev; /* not yet linked into qm->devs */
    hv_done_fn done;
    void *arg;
    json_t *device_args;  /* second step (device_add) */
    char backend_del[16]; /* undo command for step one, e.g. "blockdev-del" */
    char backend_id[40];
};

static void add_op_free(struct add_op *op)
{
    json_decref(op->device_args);
    if (op->dev)
        qdev_free(op->dev);
    free(op);
}

static void release_slots(struct qemu *qm, struct qdev *d)
{
    if (d->fs_slot >= 0) {
        char p[4096];
        snprintf(p, sizeof(p), "%s/%d%s", qm->slot_dir, d->fs_slot, d->fs_ro ? "ro" : "");
        symlink_replace(qm->empty_dir, p, NULL);
        qm->fs_used[d->fs_ro][d->fs_slot] = false;
    }
    if (d->pci_slot >= 0)
        qm->pci_used[d->pci_slot] = false;
}

static void on_undo_reply(hv_qmp_t *q, void *arg, json_t *ret, const err_t *err)
{
}

static void on_device_added(hv_qmp_t *q, void *arg, json_t *ret, const err_t *err)
{
    struct add_op *op = arg;
    struct qemu *qm = op->qm;
    hv_t *hv = qm->hv;
    hv_enter(hv);
    if (err) {
        release_slots(qm, op->dev);
        if (op->backend_del[0] && qm->qmp) {
            err_t e = ERR_INIT;
            json_t *a = json_object();
            json_object_set_new(a, !strcmp(op->backend_del, "netdev_del") ? "id" : "node-name",
                                json_string(op->backend_id));
            hv_qmp_command(qm->qmp, op->backend_del, a, hv->cfg.qmp_timeout_ms, on_undo_reply, NULL,
                           &e);
            err_clear(&e);
        }
        err_t e = ERR_INIT;
        err_make(&e, err->code, "add %s `%s`: %s", hv_dev_kind_name(op->dev->kind), op->dev->id,
                 err_str(err));
        hv_done(hv, op->done, op->arg, -e.code, &e);
        err_clear(&e);
    } else {
        op->dev->next = qm->devs;
        qm->devs = op->dev;
        op->dev = NULL;
        hv_done(hv, op->done, op->arg, 0, NULL);
    }
    add_op_free(op);
    hv_leave(hv);
}

static void on_backend_added(hv_qmp_t *q, void *arg, json_t *ret, const err_t *err)
{
    struct add_op *op = arg;
    struct qemu *qm = op->qm;
    if (err) {
        op->backend_del[0] = '\0';
        on_device_added(q, arg, NULL, err);
        return;
    }
    err_t e = ERR_INIT;
    json_t *a = op->device_args;
    op->device_args = NULL;
    if (hv_qmp_command(qm->qmp, "device_add", a, qm->hv->cfg.qmp_timeout_ms, on_device_added, op,
                       &e) < 0)
        on_device_added(q, arg, NULL, &e);
    err_clear(&e);
}

static int pick_pci(struct qemu *qm, json_t *dev_args, struct qdev *d, err_t *err)
{
    if (!qm->arch.root_ports)
        return 0;
    for (unsigned i = 0; i < qm->hv->cfg.pci_slots; i++)
        if (!qm->pci_used[i]) {
            char bus[16];
            snprintf(bus, sizeof(bus), "rp%u", i);
            json_object_set_new(dev_args, "bus", json_string(bus));
            qm->pci_used[i] = true;
            d->pci_slot = (int)i;
            return 0;
        }
    return err_make(err, ENOSPC, "qemu: all %u hotplug PCI slots in use (qemu.pci_slots)",
                    qm->hv->cfg.pci_slots);
}

static int qm_add_device(hv_t *hv, const struct hv_device *dev, hv_done_fn done, void *arg,
                         err_t *err)
{
    struct qemu *qm = Q(hv);
    int r = need_qmp(qm, "add_device", err);
    if (r < 0)
        return r;
    if ((r = hv_check_id("device", dev->id, err)) < 0)
        return r;
    if (find_dev(qm, dev->id))
        return err_make(err, EEXIST, "qemu: device `%s` already present", dev->id);
    if (!qm->arch.hotplug)
        return err_make(err, EOPNOTSUPP, "qemu: machine `%s` has no hotplug bus", hv->cfg.machine);
    struct add_op *op = calloc(1, sizeof(*op));
    struct qdev *d = calloc(1, sizeof(*d));
    json_t *da = json_object();
    if (!op || !d || !da) {
        free(op);
        free(d);
        json_decref(da);
        return err_make(err, ENOMEM, "qemu: out of memory");
    }
    *op = (struct add_op){.qm = qm, .dev = d, .done = done, .arg = arg, .device_args = da};
    d->qm = qm;
    d->kind = dev->kind;
    d->fs_slot = -1;
    d->pci_slot = -1;
    snprintf(d->id, sizeof(d->id), "%s", dev->id);
    json_object_set_new(da, "id", json_string(dev->id));
    const char *sfx = qm->arch.pci_suffix;
    char drv[48];
    json_t *backend = NULL;
    const char *backend_cmd = NULL;
    switch (dev->kind) {
    case HV_DEV_SHARE_FS: {
        const char *path = dev->u.share_fs.host_path, *tag = dev->u.share_fs.mount_tag;
        bool ro = dev->u.share_fs.readonly;
        struct stat st;
        if (!path || stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
            r = err_make(err, ENOTDIR, "qemu: share `%s`: %s is not a directory", dev->id,
                         path ? path : "(null)");
            goto fail;
        }
        if ((r = hv_check_id("mount tag", tag, err)) < 0)
            goto fail;
        int slot = -1;
        for (unsigned i = 0; i < hv->cfg.fs_slots && slot < 0; i++)
            if (!qm->fs_used[ro][i])
                slot = (int)i;
        if (slot < 0) {
            r = err_make(err, ENOSPC, "qemu: share `%s`: all %u %s 9p slots in use (qemu.fs_slots)",
                         dev->id, hv->cfg.fs_slots, ro ? "readonly" : "read-write");
            goto fail;
        }
        char link[4096], fsdev[32];
        snprintf(link, sizeof(link), "%s/%d%s", qm->slot_dir, slot, ro ? "ro" : "");
        if ((r = symlink_replace(path, link, err)) < 0)
            goto fail;
        qm->fs_used[ro][slot] = true;
        d->fs_slot = slot;
        d->fs_ro = ro;
        snprintf(fsdev, sizeof(fsdev), "fsslot%d%s", slot, ro ? "ro" : "");
        snprintf(drv, sizeof(drv), "virtio-9p%s", sfx);
        json_object_set_new(da, "driver", json_string(drv));
        json_object_set_new(da, "fsdev", json_string(fsdev));
        json_object_set_new(da, "mount_tag", json_string(tag));
        break;
    }
    case HV_DEV_BLOCK: {
        const char *fmt = dev->u.block.format ? dev->u.block.format : "raw";
        if (strcmp(fmt, "raw") && strcmp(fmt, "qcow2")) {
            r = err_make(err, EINVAL, "qemu: block `%s`: format `%s` is not raw|qcow2", dev->id,
                         fmt);
            goto fail;
        }
        struct stat st;
        if (!dev->u.block.path || stat(dev->u.block.path, &st) < 0) {
            r = err_make(err, ENOENT, "qemu: block `%s`: no such file %s", dev->id,
                         dev->u.block.path ? dev->u.block.path : "(null)");
            goto fail;
        }
        snprintf(op->backend_id, sizeof(op->backend_id), "drive-%s", dev->id);
        backend =
            json_pack("{s:s, s:s, s:b, s:{s:s, s:s}}", "driver", fmt, "node-name", op->backend_id,
                      "read-only", dev->u.block.readonly, "file", "driver",
                      S_ISBLK(st.st_mode) ? "host_device" : "file", "filename", dev->u.block.path);
        backend_cmd = "blockdev-add";
        snprintf(op->backend_del, sizeof(op->backend_del), "blockdev-del");
        snprintf(drv, sizeof(drv), "virtio-blk%s", sfx);
        json_object_set_new(da, "driver", json_string(drv));
        json_object_set_new(da, "drive", json_string(op->backend_id));
        break;
    }
    case HV_DEV_NET: {
        if (!dev->u.net.tap || !*dev->u.net.tap) {
            r = err_make(err, EINVAL, "qemu: net `%s`: no tap interface", dev->id);
            goto fail;
        }
        snprintf(op->backend_id, sizeof(op->backend_id), "net-%s", dev->id);
        backend = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "tap", "id", op->backend_id,
                            "ifname", dev->u.net.tap, "script", "no", "downscript", "no");
        if (backend && qm->accel == HV_ACCEL_KVM)
            json_object_set_new(backend, "vhost", json_true());
        backend_cmd = "netdev_add";
        snprintf(op->backend_del, sizeof(op->backend_del), "netdev_del");
        snprintf(drv, sizeof(drv), "virtio-net%s", sfx);
        json_object_set_new(da, "driver", json_string(drv));
        json_object_set_new(da, "netdev", json_string(op->backend_id));
        if (dev->u.net.mac)
            json_object_set_new(da, "mac", json_string(dev->u.net.mac));
        break;
    }
    case HV_DEV_VFIO:
        if (!dev->u.vfio.host_bdf) {
            r = err_make(err, EINVAL, "qemu: vfio `%s`: no host PCI address", dev->id);
            goto fail;
        }
        json_object_set_new(da, "driver", json_string("vfio-pci"));
        json_object_set_new(da, "host", json_string(dev->u.vfio.host_bdf));
        break;
    case HV_DEV_VHOST_USER:
    default:
        r = err_make(err, EOPNOTSUPP,
                     "qemu: %s hotplug not supported (vhost-user needs shared guest memory "
                     "declared at boot)",
                     hv_dev_kind_name(dev->kind));
        goto fail;
    }
    if ((r = pick_pci(qm, da, d, err)) < 0)
        goto fail;
    if (backend_cmd) {
        if (!backend) {
            r = err_make(err, ENOMEM, "qemu: out of memory");
            goto fail;
        }
        r = hv_qmp_command(qm->qmp, backend_cmd, backend, hv->cfg.qmp_timeout_ms, on_backend_added,
                           op, err);
        backend = NULL;
    } else {
        json_t *a = op->device_args;
        op->device_args = NULL;
        r = hv_qmp_command(qm->qmp, "device_add", a, hv->cfg.qmp_timeout_ms, on_device_added, op,
                           err);
    }
    if (r < 0)
        goto fail;
    return 0;
fail:
    json_decref(backend);
    release_slots(qm, d);
    add_op_free(op);
    return r;
}

static void unlink_dev(struct qemu *qm, struct qdev *d)
{
    for (struct qdev **pp = &qm->devs; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            return;
        }
}

/* DEVICE_DELETED arrived (status 0) or the wait failed. */
static void remove_dev_finish(struct qdev *d, int status, const err_t *err)
{
    struct qemu *qm = d->qm;
    hv_t *hv = qm->hv;
    hv_done_fn done = d->done;
    void *arg = d->arg;
    d->done = NULL;
    d->removing = status < 0 ? false : d->removing;
    if (d->timer)
        event_del(d->timer);
    if (status == 0) {
        const char *cmd = d->kind == HV_DEV_BLOCK ? "blockdev-del"
                          : d->kind == HV_DEV_NET ? "netdev_del"
                                                  : NULL;
        if (cmd && qm->qmp) {
            char bid[40];
            snprintf(bid, sizeof(bid), "%s-%s", d->kind == HV_DEV_BLOCK ? "drive" : "net", d->id);
            json_t *a = json_object();
            json_object_set_new(a, d->kind == HV_DEV_BLOCK ? "node-name" : "id", json_string(bid));
            err_t e = ERR_INIT;
            hv_qmp_command(qm->qmp, cmd, a, hv->cfg.qmp_timeout_ms, on_undo_reply, NULL, &e);
            err_clear(&e);
        }
        release_slots(qm, d);
        unlink_dev(qm, d);
        qdev_free(d);
    }
    hv_done(hv, done, arg, status, err);
}

static void on_unplug_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct qdev *d = arg;
    hv_t *hv = d->qm->hv;
    hv_enter(hv);
    err_t e = ERR_INIT;
    err_make(&e, ETIMEDOUT,
             "remove %s `%s`: no DEVICE_DELETED within %d ms (the guest must release the device)",
             hv_dev_kind_name(d->kind), d->id, hv->cfg.qmp_timeout_ms);
    remove_dev_finish(d, -ETIMEDOUT, &e);
    err_clear(&e);
    hv_leave(hv);
}

static void on_device_del(hv_qmp_t *q, void *arg, json_t *ret, const err_t *err)
{
    struct qdev *d = arg;
    hv_t *hv = d->qm->hv;
    hv_enter(hv);
    if (err && d->removing) {
        err_t e = ERR_INIT;
        err_make(&e, err->code, "remove %s `%s`: %s", hv_dev_kind_name(d->kind), d->id,
                 err_str(err));
        remove_dev_finish(d, -e.code, &e);
        err_clear(&e);
    }
    hv_leave(hv);
}

static int qm_remove_device(hv_t *hv, const struct hv_device *dev, hv_done_fn done, void *arg,
                            err_t *err)
{
    struct qemu *qm = Q(hv);
    int r = need_qmp(qm, "remove_device", err);
    if (r < 0)
        return r;
    struct qdev *d = dev->id ? find_dev(qm, dev->id) : NULL;
    if (!d)
        return err_make(err, ENODEV, "qemu: no device `%s`", dev->id ? dev->id : "(null)");
    if (d->removing)
        return err_make(err, EALREADY, "qemu: device `%s` removal in progress", d->id);
    if (!d->timer && !(d->timer = evtimer_new(hv->base, on_unplug_timeout, d)))
        return err_make(err, ENOMEM, "qemu: out of memory");
    json_t *a = json_pack("{s:s}", "id", d->id);
    r = hv_qmp_command(qm->qmp, "device_del", a, hv->cfg.qmp_timeout_ms, on_device_del, d, err);
    if (r < 0)
        return r;
    d->removing = true;
    d->done = done;
    d->arg = arg;
    int t = hv->cfg.qmp_timeout_ms;
    struct timeval tv = {t / 1000, (t % 1000) * 1000};
    evtimer_add(d->timer, &tv);
    return 0;
}

static int qm_pids(hv_t *hv, pid_t *pids, size_t max, size_t *n, err_t *err)
{
    struct qemu *qm = Q(hv);
    *n = 0;
    if (qm->pidfd < 0)
        return 0;
    if (max > 0)
        pids[0] = qm->pid;
    *n = 1;
    return 0;
}

static uint32_t qm_capabilities(hv_t *hv)
{
    struct qemu *qm = Q(hv);
    uint32_t c = HV_CAP_PAUSE | HV_CAP_SHARE_FS_9P | HV_CAP_VM_ISOLATION;
    struct hv_qemu_arch a;
    if (hv_qemu_arch_for(&hv->cfg, &a, NULL) == 0 && a.hotplug) {
        c |= HV_CAP_HOTPLUG_BLOCK | HV_CAP_HOTPLUG_NET | HV_CAP_HOTPLUG_VFIO;
        if (hv->cfg.fs_slots)
            c |= HV_CAP_HOTPLUG_FS;
    }
    (void)qm;
    return c;
}

static const char *qm_agent_socket(hv_t *hv)
{
    return Q(hv)->agent_path;
}

const struct hv_ops hv_qemu_ops = {
    .attach = qm_attach,
    .name = "qemu",
    .caps = HV_CAP_PAUSE | HV_CAP_SHARE_FS_9P | HV_CAP_HOTPLUG_FS | HV_CAP_HOTPLUG_BLOCK |
            HV_CAP_HOTPLUG_NET | HV_CAP_HOTPLUG_VFIO | HV_CAP_VM_ISOLATION,
    .create = qm_create,
    .destroy = qm_destroy,
    .prepare = qm_prepare,
    .start = qm_start,
    .stop = qm_stop,
    .pause = qm_pause,
    .resume = qm_resume,
    .add_device = qm_add_device,
    .remove_device = qm_remove_device,
    .pids = qm_pids,
    .capabilities = qm_capabilities,
    .agent_socket = qm_agent_socket,
};
