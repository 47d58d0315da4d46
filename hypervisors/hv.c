/* hv: backend registry, the public wrappers and acceleration detection. */
#include "hypervisors/hv-internal.h"

#include <ctype.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/config.h"

/* The registry: a new backend is one line here. */
static const struct hv_ops *const backends[] = {
    &hv_qemu_ops,
    &hv_local_ops,
    &hv_fake_ops,
    NULL,
};

const struct hv_ops *const *hv_ops_list(void)
{
    return backends;
}

const struct hv_ops *hv_ops_by_name(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; backends[i]; i++)
        if (!strcmp(backends[i]->name, name))
            return backends[i];
    return NULL;
}

static const char *const accel_names[] = {"auto", "kvm", "tcg"};
static const char *const arch_names[] = {"x86_64", "aarch64"};
static const char *const dev_names[] = {"share-fs", "block", "net", "vfio", "vhost-user"};

const char *hv_accel_name(enum hv_accel a)
{
    return (unsigned)a < 3 ? accel_names[a] : "?";
}

int hv_accel_parse(const char *s)
{
    for (int i = 0; s && i < 3; i++)
        if (!strcmp(s, accel_names[i]))
            return i;
    return -1;
}

const char *hv_arch_name(enum hv_arch a)
{
    return (unsigned)a < 2 ? arch_names[a] : "?";
}

int hv_arch_parse(const char *s)
{
    if (s && !strcmp(s, "arm64"))
        return HV_ARCH_AARCH64;
    for (int i = 0; s && i < 2; i++)
        if (!strcmp(s, arch_names[i]))
            return i;
    return -1;
}

enum hv_arch hv_arch_host(void)
{
#if defined(__aarch64__)
    return HV_ARCH_AARCH64;
#else
    return HV_ARCH_X86_64;
#endif
}

const char *hv_dev_kind_name(enum hv_dev_kind k)
{
    return (unsigned)k < 5 ? dev_names[k] : "?";
}

void hv_config_init(struct hv_config *c)
{
    memset(c, 0, sizeof(*c));
    c->arch = hv_arch_host();
    c->machine = c->arch == HV_ARCH_AARCH64 ? "virt" : "q35";
    c->accel = HV_ACCEL_AUTO;
    c->vcpus = 1;
    c->memory_mib = 512;
    c->fs_slots = 4;
    c->pci_slots = 4;
}

void hv_config_from_cfg(struct hv_config *c, const struct cfg *cfg)
{
    c->binary = cfg->qemu_binary;
    c->kernel = cfg->kernel;
    c->initrd = cfg->initrd;
    c->kernel_params = cfg->kernel_params;
    c->machine = cfg->machine;
    c->arch = !strcmp(cfg->machine, "virt") ? HV_ARCH_AARCH64 : HV_ARCH_X86_64;
    int a = hv_accel_parse(cfg->accel);
    c->accel = a < 0 ? HV_ACCEL_AUTO : (enum hv_accel)a;
    c->vcpus = cfg->vcpus;
    c->memory_mib = cfg->memory_mib;
    c->debug_console = cfg->debug_console;
    c->fs_slots = cfg->fs_slots;
    c->pci_slots = cfg->pci_slots;
}

int hv_check_id(const char *what, const char *id, err_t *err)
{
    if (!id || !*id)
        return err_make(err, EINVAL, "%s: empty id", what);
    size_t n = strlen(id);
    if (n > 31)
        return err_make(err, EINVAL, "%s `%.40s`: id longer than 31 characters", what, id);
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]) && id[i] != '_' && id[i] != '-' && id[i] != '.')
            return err_make(err, EINVAL, "%s `%s`: id has a character outside [A-Za-z0-9_.-]", what,
                            id);
    return 0;
}

/* ---- instance ---- */

static void free_strv(const char *const *v)
{
    for (size_t i = 0; v && v[i]; i++)
        free((char *)v[i]);
    free((void *)v);
}

static void free_config(struct hv_config *c)
{
    free((char *)c->id);
    free((char *)c->sandbox_dir);
    free((char *)c->binary);
    free((char *)c->kernel);
    free((char *)c->initrd);
    free((char *)c->kernel_params);
    free((char *)c->machine);
    for (size_t i = 0; i < c->n_shares; i++) {
        free((char *)c->shares[i].host_path);
        free((char *)c->shares[i].mount_tag);
    }
    free((void *)c->shares);
    free_strv(c->extra_args);
    free_strv(c->cgroup_dirs);
    free((void *)c->accel_probe);
    free((char *)c->netns);
    for (size_t i = 0; i < c->n_nets; i++) {
        free((char *)c->nets[i].id);
        free((char *)c->nets[i].tap);
        free((char *)c->nets[i].mac);
    }
    free((void *)c->nets);
    memset(c, 0, sizeof(*c));
}

static int dup_str(const char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : -1;
}

/* Copies a NULL-terminated vector (NULL stays NULL). */
static int dup_strv(const char *const **dst, const char *const *src)
{
    *dst = NULL;
    if (!src)
        return 0;
    size_t n = 0;
    while (src[n])
        n++;
    const char **a = calloc(n + 1, sizeof(*a));
    if (!a)
        return -1;
    *dst = a;
    for (size_t i = 0; i < n; i++)
        if (dup_str(&a[i], src[i]))
            return -1;
    return 0;
}

static int copy_config(struct hv_config *d, const struct hv_config *s)
{
    *d = *s;
    d->shares = NULL;
    d->n_shares = 0;
    d->extra_args = NULL;
    d->cgroup_dirs = NULL;
    d->accel_probe = NULL;
    d->nets = NULL;
    d->n_nets = 0;
    if (dup_str(&d->netns, s->netns))
        return -1;
    if (s->n_nets) {
        struct hv_net *nv = calloc(s->n_nets, sizeof(*nv));
        if (!nv)
            return -1;
        d->nets = nv;
        d->n_nets = s->n_nets;
        for (size_t i = 0; i < s->n_nets; i++)
            if (dup_str(&nv[i].id, s->nets[i].id) || dup_str(&nv[i].tap, s->nets[i].tap) ||
                dup_str(&nv[i].mac, s->nets[i].mac))
                return -1;
    }
    if (dup_str(&d->id, s->id ? s->id : "vm") || dup_str(&d->sandbox_dir, s->sandbox_dir) ||
        dup_str(&d->binary, s->binary) || dup_str(&d->kernel, s->kernel) ||
        dup_str(&d->initrd, s->initrd) || dup_str(&d->kernel_params, s->kernel_params) ||
        dup_str(&d->machine, s->machine))
        return -1;
    if (s->n_shares) {
        struct hv_share *sh = calloc(s->n_shares, sizeof(*sh));
        if (!sh)
            return -1;
        d->shares = sh;
        d->n_shares = s->n_shares;
        for (size_t i = 0; i < s->n_shares; i++) {
            sh[i].readonly = s->shares[i].readonly;
            if (dup_str(&sh[i].host_path, s->shares[i].host_path) ||
                dup_str(&sh[i].mount_tag, s->shares[i].mount_tag))
                return -1;
        }
    }
    if (dup_strv(&d->extra_args, s->extra_args) || dup_strv(&d->cgroup_dirs, s->cgroup_dirs))
        return -1;
    if (s->accel_probe) {
        struct hv_accel_probe *p = calloc(1, sizeof(*p));
        if (!p)
            return -1;
        d->accel_probe = p; /* the paths stay borrowed: tests keep them alive */
        *p = *s->accel_probe;
    }
    return 0;
}

int hv_new(const struct hv_ops *ops, struct event_base *base, const struct hv_config *cfg,
           hv_t **out, err_t *err)
{
    if (!ops || !base || !cfg || !out)
        return err_make(err, EINVAL, "hv_new: missing argument");
    hv_t *hv = calloc(1, sizeof(*hv));
    if (!hv)
        return err_make(err, ENOMEM, "%s: out of memory", ops->name);
    hv->ops = ops;
    hv->base = base;
    if (copy_config(&hv->cfg, cfg) < 0) {
        free_config(&hv->cfg);
        free(hv);
        return err_make(err, ENOMEM, "%s: out of memory", ops->name);
    }
    if (ops->create) {
        int r = ops->create(hv, &hv->cfg, err);
        if (r < 0) {
            if (ops->destroy)
                ops->destroy(hv);
            free_config(&hv->cfg);
            free(hv);
            return r;
        }
    }
    *out = hv;
    return 0;
}

static void really_destroy(hv_t *hv)
{
    if (hv->ops->destroy)
        hv->ops->destroy(hv);
    free_config(&hv->cfg);
    free(hv);
}

void hv_destroy(hv_t **hv_p)
{
    if (!hv_p || !*hv_p)
        return;
    hv_t *hv = *hv_p;
    *hv_p = NULL;
    hv->event_fn = NULL;
    if (hv->busy > 0) {
        hv->doomed = true;
        return;
    }
    really_destroy(hv);
}

bool hv_leave(hv_t *hv)
{
    if (--hv->busy == 0 && hv->doomed) {
        really_destroy(hv);
        return true;
    }
    return false;
}

void hv_emit(hv_t *hv, const struct hv_event *ev)
{
    if (hv->event_fn && !hv->doomed)
        hv->event_fn(hv, hv->event_arg, ev);
}

void hv_done(hv_t *hv, hv_done_fn done, void *arg, int status, const err_t *err)
{
    if (done && !hv->doomed)
        done(hv, arg, status, status < 0 ? err : NULL);
}

void hv_set_event_cb(hv_t *hv, hv_event_fn fn, void *arg)
{
    hv->event_fn = fn;
    hv->event_arg = arg;
}

const char *hv_name(const hv_t *hv)
{
    return hv->ops->name;
}

const struct hv_config *hv_config(const hv_t *hv)
{
    return &hv->cfg;
}

struct event_base *hv_base(const hv_t *hv)
{
    return hv->base;
}

/* ---- wrappers: NULL slot -> EOPNOTSUPP ---- */

#define NOTSUP(hv, op) err_make(err, EOPNOTSUPP, "%s: " op " not supported", (hv)->ops->name)

int hv_prepare(hv_t *hv, err_t *err)
{
    return hv->ops->prepare ? hv->ops->prepare(hv, err) : NOTSUP(hv, "prepare");
}

int hv_start(hv_t *hv, hv_done_fn done, void *arg, err_t *err)
{
    return hv->ops->start ? hv->ops->start(hv, done, arg, err) : NOTSUP(hv, "start");
}

int hv_attach(hv_t *hv, pid_t pid, uint64_t pid_start, hv_done_fn done, void *arg, err_t *err)
{
    if (pid <= 0)
        return err_make(err, EINVAL, "%s: attach: no VMM pid", hv->ops->name);
    return hv->ops->attach ? hv->ops->attach(hv, pid, pid_start, done, arg, err)
                           : NOTSUP(hv, "attach");
}

int hv_pid_check(pid_t pid, uint64_t start, err_t *err)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_make(err, ESRCH, "VMM pid %d is gone", (int)pid);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return err_make(err, ESRCH, "VMM pid %d is gone", (int)pid);
    buf[n] = 0;
    /* after the last ')' (the name may hold any byte): state, then field 22 */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return err_make(err, ESRCH, "VMM pid %d: unreadable /proc stat", (int)pid);
    char state = p[2];
    if (state == 'Z' || state == 'X' || state == 'x')
        return err_make(err, ESRCH, "VMM pid %d has exited", (int)pid);
    p += 2;
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    unsigned long long st = 0;
    if (!p || sscanf(p, "%llu", &st) != 1)
        return err_make(err, ESRCH, "VMM pid %d: unreadable /proc stat", (int)pid);
    if (start && st != start)
        return err_make(err, ESRCH, "VMM pid %d is another process now (start time %llu, not %llu)",
                        (int)pid, st, (unsigned long long)start);
    return 0;
}

void hv_pidfd_kill_wait(int pidfd, int timeout_ms)
{
    if (pidfd < 0)
        return;
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    struct pollfd p = {pidfd, POLLIN, 0};
    while (poll(&p, 1, timeout_ms) < 0 && errno == EINTR)
        ;
    close(pidfd);
}

int hv_stop(hv_t *hv, hv_done_fn done, void *arg, err_t *err)
{
    return hv->ops->stop ? hv->ops->stop(hv, done, arg, err) : NOTSUP(hv, "stop");
}

int hv_pause(hv_t *hv, hv_done_fn done, void *arg, err_t *err)
{
    return hv->ops->pause ? hv->ops->pause(hv, done, arg, err) : NOTSUP(hv, "pause");
}

int hv_resume(hv_t *hv, hv_done_fn done, void *arg, err_t *err)
{
    return hv->ops->resume ? hv->ops->resume(hv, done, arg, err) : NOTSUP(hv, "resume");
}

int hv_add_device(hv_t *hv, const struct hv_device *dev, hv_done_fn done, void *arg, err_t *err)
{
    if (!dev)
        return err_make(err, EINVAL, "%s: add_device: no device", hv->ops->name);
    return hv->ops->add_device ? hv->ops->add_device(hv, dev, done, arg, err)
                               : NOTSUP(hv, "add_device");
}

int hv_remove_device(hv_t *hv, const struct hv_device *dev, hv_done_fn done, void *arg, err_t *err)
{
    if (!dev)
        return err_make(err, EINVAL, "%s: remove_device: no device", hv->ops->name);
    return hv->ops->remove_device ? hv->ops->remove_device(hv, dev, done, arg, err)
                                  : NOTSUP(hv, "remove_device");
}

int hv_resize_vcpus(hv_t *hv, unsigned vcpus, hv_done_fn done, void *arg, err_t *err)
{
    return hv->ops->resize_vcpus ? hv->ops->resize_vcpus(hv, vcpus, done, arg, err)
                                 : NOTSUP(hv, "resize_vcpus");
}

int hv_resize_memory(hv_t *hv, unsigned memory_mib, hv_done_fn done, void *arg, err_t *err)
{
    return hv->ops->resize_memory ? hv->ops->resize_memory(hv, memory_mib, done, arg, err)
                                  : NOTSUP(hv, "resize_memory");
}

int hv_save(hv_t *hv, const char *path, hv_done_fn done, void *arg, err_t *err)
{
    return hv->ops->save ? hv->ops->save(hv, path, done, arg, err) : NOTSUP(hv, "save");
}

int hv_restore(hv_t *hv, const char *path, hv_done_fn done, void *arg, err_t *err)
{
    return hv->ops->restore ? hv->ops->restore(hv, path, done, arg, err) : NOTSUP(hv, "restore");
}

int hv_pids(hv_t *hv, pid_t *pids, size_t max, size_t *n, err_t *err)
{
    *n = 0;
    return hv->ops->pids ? hv->ops->pids(hv, pids, max, n, err) : NOTSUP(hv, "pids");
}

uint32_t hv_capabilities(hv_t *hv)
{
    return hv->ops->capabilities ? hv->ops->capabilities(hv) : hv->ops->caps;
}

const char *hv_agent_socket(hv_t *hv)
{
    return hv->ops->agent_socket ? hv->ops->agent_socket(hv) : NULL;
}

/* ---- acceleration detection ---- */

static bool has_word(const char *line, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = line; (p = strstr(p, word)); p += n) {
        bool start = p == line || p[-1] == ' ' || p[-1] == '\t';
        bool end = p[n] == '\0' || p[n] == ' ' || p[n] == '\n' || p[n] == '\t';
        if (start && end)
            return true;
    }
    return false;
}

/* 1: a "flags" line of cpuinfo has vmx or svm; 0: not; -1: unreadable. */
static int cpu_has_virt(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    int found = 0;
    while (getline(&line, &cap, f) > 0) {
        if (strncmp(line, "flags", 5))
            continue;
        if (has_word(line, "vmx") || has_word(line, "svm")) {
            found = 1;
            break;
        }
    }
    free(line);
    fclose(f);
    return found;
}

static bool module_listed(const char *proc_modules, const char *name)
{
    FILE *f = fopen(proc_modules, "re");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0, n = strlen(name);
    bool found = false;
    while (getline(&line, &cap, f) > 0)
        if (!strncmp(line, name, n) && line[n] == ' ') {
            found = true;
            break;
        }
    free(line);
    fclose(f);
    return found;
}

enum hv_accel hv_accel_detect(enum hv_accel requested, const struct hv_accel_probe *probe,
                              char *reason, size_t reason_len)
{
    char dummy[8];
    if (!reason) {
        reason = dummy;
        reason_len = sizeof(dummy);
    }
    const char *dev = probe && probe->dev_kvm ? probe->dev_kvm : "/dev/kvm";
    const char *cpuinfo = probe && probe->cpuinfo ? probe->cpuinfo : "/proc/cpuinfo";
    const char *sysmod = probe && probe->sys_module ? probe->sys_module : "/sys/module";
    const char *procmod = probe && probe->proc_modules ? probe->proc_modules : "/proc/modules";

    if (requested == HV_ACCEL_KVM || requested == HV_ACCEL_TCG) {
        snprintf(reason, reason_len, "forced by configuration (accel=%s)",
                 hv_accel_name(requested));
        return requested;
    }
    int fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(reason, reason_len, "%s cannot be opened (%s)", dev, strerror(errno));
        return HV_ACCEL_TCG;
    }
    close(fd);
    char pvm[512];
    snprintf(pvm, sizeof(pvm), "%s/kvm_pvm", sysmod);
    struct stat st;
    if (stat(pvm, &st) == 0 || module_listed(procmod, "kvm_pvm")) {
        snprintf(reason, reason_len,
                 "%s is the PVM flavour (module kvm_pvm): a standard guest kernel hangs under it",
                 dev);
        return HV_ACCEL_TCG;
    }
    if (hv_arch_host() == HV_ARCH_X86_64) {
        int v = cpu_has_virt(cpuinfo);
        if (v <= 0) {
            snprintf(reason, reason_len, "%s: %s", cpuinfo,
                     v < 0 ? "unreadable" : "no vmx or svm CPU flag (no hardware virtualization)");
            return HV_ACCEL_TCG;
        }
    }
    snprintf(reason, reason_len, "%s usable, hardware virtualization present", dev);
    return HV_ACCEL_KVM;
}
