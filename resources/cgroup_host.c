/* resources/cgroup_host: the host cgroup of a sandbox.  See cgroup_host.h. */
#include "resources/cgroup_host.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

#ifndef CGROUP_SUPER_MAGIC
#define CGROUP_SUPER_MAGIC 0x27e0eb
#endif
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define MAX_HIER 4

typedef struct hier {
    char *root;  /* hierarchy mount: <fs_root>, <fs_root>/memory... */
    char *path;  /* our cgroup: <root>/<parent>/<sid> */
    int version; /* 1 or 2 */
    bool memory; /* limits of this controller are written here */
    bool cpu;
} hier_t;

struct res_cgroup {
    const char *mode;
    hier_t h[MAX_HIER];
    size_t n;
    char *paths[MAX_HIER + 1];
    char **warnings;
    size_t n_warnings;
};

/* ---- helpers ------------------------------------------------------------------ */

static void warn(res_cgroup_t *cg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(res_cgroup_t *cg, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    va_end(ap);
    char **bigger = realloc(cg->warnings, (cg->n_warnings + 2) * sizeof *bigger);
    if (!bigger)
        abort();
    cg->warnings = bigger;
    cg->warnings[cg->n_warnings++] = s;
    cg->warnings[cg->n_warnings] = NULL;
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* Writes value to dir/file; -errno. */
static int write_ctl(const char *dir, const char *file, const char *value)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, file);
    _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    if (n < 0)
        return -errno;
    if ((size_t)n != len)
        return -EIO;
    return 0;
}

static int mkdir_p(const char *path)
{
    _cleanup_free_ char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static bool parent_valid(const char *parent)
{
    if (!parent || !*parent || parent[0] == '/')
        return false;
    for (const char *p = parent; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += n + (slash ? 1 : 0);
    }
    return true;
}

/* Finds the hierarchies under fs_root.  Fills cg->h (paths unset). */
static int detect(res_cgroup_t *cg, const char *fs_root, err_t *err)
{
    _cleanup_free_ char *v2 = xasprintf("%s/cgroup.controllers", fs_root);
    if (exists(v2)) {
        cg->mode = "v2";
        cg->h[cg->n++] = (hier_t){.root = strdup(fs_root), .version = 2};
        return 0;
    }
    _cleanup_free_ char *mem = xasprintf("%s/memory/memory.limit_in_bytes", fs_root);
    if (exists(mem))
        cg->h[cg->n++] =
            (hier_t){.root = xasprintf("%s/memory", fs_root), .version = 1, .memory = true};
    static const char *const cpu_dirs[] = {"cpu", "cpu,cpuacct", "cpuacct,cpu", NULL};
    for (size_t i = 0; cpu_dirs[i]; i++) {
        _cleanup_free_ char *q = xasprintf("%s/%s/cpu.cfs_quota_us", fs_root, cpu_dirs[i]);
        if (exists(q)) {
            cg->h[cg->n++] = (hier_t){
                .root = xasprintf("%s/%s", fs_root, cpu_dirs[i]), .version = 1, .cpu = true};
            break;
        }
    }
    _cleanup_free_ char *uni = xasprintf("%s/unified/cgroup.controllers", fs_root);
    if (exists(uni))
        cg->h[cg->n++] = (hier_t){.root = xasprintf("%s/unified", fs_root), .version = 2};
    if (cg->n == 0)
        return err_make(err, ENOENT, "no cgroup hierarchy found under `%s`", fs_root);
    cg->mode = (cg->n == 1 && cg->h[0].version == 2) ? "v2" : exists(uni) ? "hybrid" : "v1";
    return 0;
}

/* Whether a v2 hierarchy offers controller name at its root. */
static bool v2_has(const char *root, const char *name)
{
    _cleanup_free_ char *p = xasprintf("%s/cgroup.controllers", root);
    FILE *f = fopen(p, "re");
    if (!f)
        return false;
    char word[64];
    bool found = false;
    while (!found && fscanf(f, "%63s", word) == 1)
        found = strcmp(word, name) == 0;
    fclose(f);
    return found;
}

static void set_paths(res_cgroup_t *cg, const char *parent, const char *sid)
{
    for (size_t i = 0; i < cg->n; i++) {
        cg->h[i].path = xasprintf("%s/%s/%s", cg->h[i].root, parent, sid);
        cg->paths[i] = cg->h[i].path;
    }
    cg->paths[cg->n] = NULL;
}

void res_cgroup_destroy(res_cgroup_t **cg_p)
{
    if (!cg_p || !*cg_p)
        return;
    res_cgroup_t *cg = *cg_p;
    for (size_t i = 0; i < cg->n; i++) {
        free(cg->h[i].root);
        free(cg->h[i].path);
    }
    for (size_t i = 0; i < cg->n_warnings; i++)
        free(cg->warnings[i]);
    free(cg->warnings);
    free(cg);
    *cg_p = NULL;
}

/* Drops hierarchy i (not created); keeps the arrays dense. */
static void drop(res_cgroup_t *cg, size_t i)
{
    free(cg->h[i].root);
    free(cg->h[i].path);
    memmove(&cg->h[i], &cg->h[i + 1], (cg->n - i - 1) * sizeof cg->h[0]);
    cg->n--;
    for (size_t k = 0; k < cg->n; k++)
        cg->paths[k] = cg->h[k].path;
    cg->paths[cg->n] = NULL;
}

/* ---- limits --------------------------------------------------------------------- */

void res_cgroup_limits_from_spec(const oci_spec_t *spec, uint64_t overhead_bytes,
                                 res_cgroup_limits_t *out)
{
    memset(out, 0, sizeof *out);
    const oci_resources_t *r = spec && spec->lnx ? spec->lnx->resources : NULL;
    if (!r)
        return;
    if (r->memory.limit.set && r->memory.limit.value > 0)
        out->memory_bytes = r->memory.limit.value + (int64_t)overhead_bytes;
    if (r->cpu.quota.set && r->cpu.quota.value > 0) {
        out->cpu_quota_us = r->cpu.quota.value;
        out->cpu_period_us = r->cpu.period.set && r->cpu.period.value > 0
                                 ? (uint64_t)r->cpu.period.value
                                 : RES_CGROUP_DEFAULT_PERIOD;
    }
}

/* Enables +name in every ancestor's subtree_control, root down to parent. */
static int v2_enable(const hier_t *h, const char *parent, const char *name)
{
    char ctl[32];
    snprintf(ctl, sizeof ctl, "+%s", name);
    _cleanup_free_ char *dir = strdup(h->root);
    _cleanup_free_ char *rest = strdup(parent);
    if (!dir || !rest)
        abort();
    int r = write_ctl(dir, "cgroup.subtree_control", ctl);
    char *save = NULL;
    for (char *tok = strtok_r(rest, "/", &save); r == 0 && tok; tok = strtok_r(NULL, "/", &save)) {
        char *next = xasprintf("%s/%s", dir, tok);
        free(dir);
        dir = next;
        r = write_ctl(dir, "cgroup.subtree_control", ctl);
    }
    return r;
}

static void apply_limits(res_cgroup_t *cg, const char *parent, const res_cgroup_limits_t *lim)
{
    bool want_mem = lim && lim->memory_bytes > 0, want_cpu = lim && lim->cpu_quota_us > 0;
    bool mem_done = false, cpu_done = false;
    size_t warned_before = cg->n_warnings;
    uint64_t period = lim && lim->cpu_period_us ? lim->cpu_period_us : RES_CGROUP_DEFAULT_PERIOD;
    char buf[64];
    int r;
    for (size_t i = 0; i < cg->n; i++) {
        hier_t *h = &cg->h[i];
        if (h->version == 2) {
            /* v2 limits only where v2 owns the controller and v1 did not
             * already apply it. */
            bool mem = want_mem && !mem_done && v2_has(h->root, "memory");
            bool cpu = want_cpu && !cpu_done && v2_has(h->root, "cpu");
            if (mem && (r = v2_enable(h, parent, "memory")) < 0) {
                warn(cg, "memory limit not applied: enable memory controller under `%s`: %s",
                     h->root, strerror(-r));
                mem = false;
            }
            if (cpu && (r = v2_enable(h, parent, "cpu")) < 0) {
                warn(cg, "cpu limit not applied: enable cpu controller under `%s`: %s", h->root,
                     strerror(-r));
                cpu = false;
            }
            if (mem) {
                snprintf(buf, sizeof buf, "%" PRId64, lim->memory_bytes);
                if ((r = write_ctl(h->path, "memory.max", buf)) < 0)
                    warn(cg, "memory limit not applied: write `%s/memory.max`: %s", h->path,
                         strerror(-r));
                else
                    mem_done = h->memory = true;
            }
            if (cpu) {
                snprintf(buf, sizeof buf, "%" PRId64 " %" PRIu64, lim->cpu_quota_us, period);
                if ((r = write_ctl(h->path, "cpu.max", buf)) < 0)
                    warn(cg, "cpu limit not applied: write `%s/cpu.max`: %s", h->path,
                         strerror(-r));
                else
                    cpu_done = h->cpu = true;
            }
            continue;
        }
        if (h->memory && want_mem) {
            snprintf(buf, sizeof buf, "%" PRId64, lim->memory_bytes);
            if ((r = write_ctl(h->path, "memory.limit_in_bytes", buf)) < 0)
                warn(cg, "memory limit not applied: write `%s/memory.limit_in_bytes`: %s", h->path,
                     strerror(-r));
            else
                mem_done = true;
        }
        if (h->cpu && want_cpu) {
            snprintf(buf, sizeof buf, "%" PRIu64, period);
            if ((r = write_ctl(h->path, "cpu.cfs_period_us", buf)) < 0) {
                warn(cg, "cpu limit not applied: write `%s/cpu.cfs_period_us`: %s", h->path,
                     strerror(-r));
            } else {
                snprintf(buf, sizeof buf, "%" PRId64, lim->cpu_quota_us);
                if ((r = write_ctl(h->path, "cpu.cfs_quota_us", buf)) < 0)
                    warn(cg, "cpu limit not applied: write `%s/cpu.cfs_quota_us`: %s", h->path,
                         strerror(-r));
                else
                    cpu_done = true;
            }
        }
    }
    /* A limit that nothing even tried to apply gets its own line. */
    bool tried = cg->n_warnings > warned_before;
    if (want_mem && !mem_done && !tried)
        warn(cg, "memory limit not applied: no memory controller available");
    if (want_cpu && !cpu_done && !tried)
        warn(cg, "cpu limit not applied: no cpu controller available");
}

/* ---- lifecycle ------------------------------------------------------------------- */

static int begin(const res_cgroup_opts_t *opts, const char *sandbox_id, res_cgroup_t **out,
                 const char **parent_out, err_t *err)
{
    const char *fs_root = opts && opts->fs_root ? opts->fs_root : RES_CGROUP_FS_ROOT;
    const char *parent = opts && opts->parent ? opts->parent : RES_CGROUP_PARENT;
    if (!parent_valid(parent))
        return err_make(err, EINVAL, "cgroup parent `%s` must be a relative path without `..`",
                        parent);
    if (!sandbox_id || !*sandbox_id || strchr(sandbox_id, '/') || sandbox_id[0] == '.')
        return err_make(err, EINVAL, "invalid sandbox id `%s` for a cgroup",
                        sandbox_id ? sandbox_id : "");
    res_cgroup_t *cg = xcalloc(1, sizeof *cg);
    int r = detect(cg, fs_root, err);
    if (r < 0) {
        res_cgroup_destroy(&cg);
        return r;
    }
    set_paths(cg, parent, sandbox_id);
    *out = cg;
    *parent_out = parent;
    return 0;
}

int res_cgroup_create(const res_cgroup_opts_t *opts, const char *sandbox_id,
                      const res_cgroup_limits_t *lim, res_cgroup_t **out, err_t *err)
{
    res_cgroup_t *cg = NULL;
    const char *parent = NULL;
    int r = begin(opts, sandbox_id, &cg, &parent, err);
    if (r < 0)
        return err_wrap(err, "create cgroup for sandbox `%s`", sandbox_id ? sandbox_id : "");
    for (size_t i = 0; i < cg->n; i++)
        if (exists(cg->h[i].path)) {
            r = err_make(err, EEXIST, "create cgroup for sandbox `%s`: `%s` exists already",
                         sandbox_id, cg->h[i].path);
            res_cgroup_destroy(&cg);
            return r;
        }
    int last = 0;
    for (size_t i = 0; i < cg->n;) {
        _cleanup_free_ char *par = xasprintf("%s/%s", cg->h[i].root, parent);
        if ((r = mkdir_p(par)) < 0 || (mkdir(cg->h[i].path, 0755) < 0 && (r = -errno))) {
            warn(cg, "cgroup v%d hierarchy `%s` skipped: mkdir `%s`: %s", cg->h[i].version,
                 cg->h[i].root, cg->h[i].path, strerror(-r));
            last = r;
            drop(cg, i);
            continue;
        }
        i++;
    }
    if (cg->n == 0) {
        r = err_make(err, -last, "create cgroup for sandbox `%s`: no hierarchy is writable (%s)",
                     sandbox_id, cg->n_warnings ? cg->warnings[0] : "none found");
        res_cgroup_destroy(&cg);
        return r;
    }
    apply_limits(cg, parent, lim);
    *out = cg;
    return 0;
}

int res_cgroup_open(const res_cgroup_opts_t *opts, const char *sandbox_id, res_cgroup_t **out,
                    err_t *err)
{
    res_cgroup_t *cg = NULL;
    const char *parent = NULL;
    int r = begin(opts, sandbox_id, &cg, &parent, err);
    if (r < 0)
        return err_wrap(err, "open cgroup of sandbox `%s`", sandbox_id ? sandbox_id : "");
    for (size_t i = 0; i < cg->n;) {
        if (!exists(cg->h[i].path)) {
            drop(cg, i);
            continue;
        }
        i++;
    }
    if (cg->n == 0) {
        res_cgroup_destroy(&cg);
        return err_make(err, ENOENT, "sandbox `%s` has no cgroup", sandbox_id);
    }
    *out = cg;
    return 0;
}

int res_cgroup_add_pid(res_cgroup_t *cg, pid_t pid, err_t *err)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%d", (int)pid);
    for (size_t i = 0; i < cg->n; i++) {
        int r = write_ctl(cg->h[i].path, "cgroup.procs", buf);
        if (r < 0)
            return err_make(err, -r, "move pid %d into `%s/cgroup.procs`: %s", (int)pid,
                            cg->h[i].path, strerror(-r));
    }
    return 0;
}

/* The pids in dir/cgroup.procs, space-separated, or "" (caller frees). */
static char *procs_of(const char *dir)
{
    _cleanup_free_ char *p = xasprintf("%s/cgroup.procs", dir);
    FILE *f = fopen(p, "re");
    char *out = xcalloc(1, 256);
    if (!f)
        return out;
    char line[64];
    size_t len = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!*line)
            continue;
        if (len + strlen(line) + 5 >= 256) {
            strcpy(out + len, " ...");
            break;
        }
        len += (size_t)sprintf(out + len, "%s%s", len ? " " : "", line);
    }
    fclose(f);
    return out;
}

/* rmdir of a cgroup; on a plain directory tree, its files first. */
static int remove_dir(const char *dir)
{
    struct statfs sf;
    if (statfs(dir, &sf) == 0 && sf.f_type != CGROUP_SUPER_MAGIC &&
        sf.f_type != CGROUP2_SUPER_MAGIC) {
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (e->d_type == DT_REG)
                unlinkat(dirfd(d), e->d_name, 0);
        if (d)
            closedir(d);
    }
    if (rmdir(dir) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int res_cgroup_remove(res_cgroup_t *cg, int timeout_ms, err_t *err)
{
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (size_t i = 0; i < cg->n; i++) {
        const char *dir = cg->h[i].path;
        for (;;) {
            if (!exists(dir))
                break;
            _cleanup_free_ char *pids = procs_of(dir);
            if (!*pids)
                break;
            if (now_ms() >= deadline)
                return err_make(err, EBUSY, "remove cgroup `%s`: still holds processes %s", dir,
                                pids);
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
        /* An emptied cgroup may stay busy a moment (dying tasks): retry. */
        int r;
        while ((r = remove_dir(dir)) == -EBUSY && now_ms() < deadline) {
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (r < 0)
            return err_make(err, -r, "remove cgroup `%s`: %s", dir, strerror(-r));
    }
    return 0;
}

const char *res_cgroup_mode(const res_cgroup_t *cg)
{
    return cg->mode;
}

const char *const *res_cgroup_paths(const res_cgroup_t *cg, size_t *n_out)
{
    if (n_out)
        *n_out = cg->n;
    return (const char *const *)cg->paths;
}

const char *const *res_cgroup_warnings(const res_cgroup_t *cg, size_t *n_out)
{
    static const char *const none[] = {NULL};
    if (n_out)
        *n_out = cg->n_warnings;
    return cg->warnings ? (const char *const *)cg->warnings : none;
}
