/* agent/guest/cgroup: linux.resources in cgroup v2 terms (the guest mounts
 * cgroup2 only).  Conversions follow runc's libcontainer/cgroups/fs2. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/guest/container-internal.h"
#include "agent/guest/container.h"
#include "agent/guest/devfilter.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "resources/devices.h"

/* On a host (the local backend) the unified hierarchy may lack controllers
 * (hybrid hosts keep them on v1): skip those with a warning.  In a VM every
 * controller exists and a failure stays an error. */
static bool g_host_mode;

void container_cgroup_host_mode(bool on)
{
    g_host_mode = on;
}

int container_cgroup_validate(const oci_resources_t *res, err_t *err)
{
    if (!res)
        return 0;
    if (res->n_devices > RES_DEVICES_MAX)
        return err_make(err, E2BIG, "linux.resources.devices: %zu rules, at most %d",
                        res->n_devices, RES_DEVICES_MAX);
    if (res->memory.swappiness.set)
        return err_make(err, ENOTSUP, "linux.resources.memory.swappiness: no cgroup v2 equivalent");
    if (res->memory.disable_oom_killer.set && res->memory.disable_oom_killer.value)
        return err_make(err, ENOTSUP,
                        "linux.resources.memory.disableOOMKiller: no cgroup v2 equivalent");
    if (res->cpu.realtime_runtime.set || res->cpu.realtime_period.set)
        return err_make(err, ENOTSUP, "linux.resources.cpu.realtime*: no cgroup v2 equivalent");
    if (res->block_io.leaf_weight.set)
        return err_make(err, ENOTSUP,
                        "linux.resources.blockIO.leafWeight: no cgroup v2 equivalent");
    if (res->block_io.has_device_rules)
        return err_make(err, ENOTSUP,
                        "linux.resources.blockIO: per-device weights and throttles are not "
                        "supported by husk");
    if (res->has_network)
        return err_make(err, ENOTSUP, "linux.resources.network: no cgroup v2 equivalent");
    if (res->has_rdma)
        return err_make(err, ENOTSUP, "linux.resources.rdma: not supported by husk");
    if (res->memory.swap.set && res->memory.swap.value > 0 &&
        (!res->memory.limit.set || res->memory.limit.value <= 0))
        return err_make(err, EINVAL, "linux.resources.memory.swap: set without a memory limit");
    if (res->memory.swap.set && res->memory.swap.value > 0 &&
        res->memory.swap.value < res->memory.limit.value)
        return err_make(err, EINVAL,
                        "linux.resources.memory.swap: must be >= memory.limit (it is memory+swap)");
    return 0;
}

static int mkdir_p(const char *dir, err_t *err)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
        return err_make(err, ENAMETOOLONG, "cgroup path too long");
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return err_errno(err, "mkdir %s", buf);
        *p = '/';
    }
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return err_errno(err, "mkdir %s", buf);
    return 0;
}

static bool is_cgroup_dir(const char *dir)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof(p), "%s/cgroup.controllers", dir) >= (int)sizeof(p))
        return false;
    return access(p, F_OK) == 0;
}

static bool offers(const char *dir, const char *ctrl)
{
    char p[PATH_MAX], buf[512];
    if (snprintf(p, sizeof(p), "%s/cgroup.controllers", dir) >= (int)sizeof(p))
        return false;
    FILE *f = fopen(p, "re");
    if (!f)
        return false;
    bool found = false;
    while (!found && fscanf(f, "%511s", buf) == 1)
        found = !strcmp(buf, ctrl);
    fclose(f);
    return found;
}

/* Enables ctrl in every ancestor's subtree_control, top-down, as far up as
 * the directories are cgroup directories.  Returns 1 when skipped (host
 * mode, the hierarchy does not offer ctrl). */
static int enable_controller(const char *dir, const char *ctrl, err_t *err)
{
    char path[PATH_MAX], *slashes[64];
    int n = 0;
    snprintf(path, sizeof(path), "%s", dir);
    for (char *s = strrchr(path, '/'); s && s > path && n < 64; s = strrchr(path, '/')) {
        *s = '\0';
        if (!is_cgroup_dir(path)) {
            *s = '/';
            break;
        }
        slashes[n++] = s;
    }
    /* path is now the topmost cgroup directory (or an ancestor of it);
     * walk back down restoring one slash at a time. */
    if (g_host_mode && !offers(path, ctrl)) {
        for (int i = n - 1; i >= 0; i--)
            *slashes[i] = '/';
        log_warn("cgroup %s: the host's cgroup v2 hierarchy has no %s controller: its limits are "
                 "not applied",
                 path, ctrl);
        return 1;
    }
    char file[PATH_MAX + 32], val[64];
    snprintf(val, sizeof(val), "+%s", ctrl);
    for (int i = n - 1; i >= 0; i--) {
        if (snprintf(file, sizeof(file), "%s/cgroup.subtree_control", path) < (int)sizeof(file) &&
            is_cgroup_dir(path)) {
            err_t e = ERR_INIT;
            if (container_write_file(file, val, &e) < 0) {
                err_move(err, &e);
                return err_wrap(err, "enable controller %s", ctrl);
            }
        }
        *slashes[i] = '/';
    }
    return 0;
}

static int put(const char *dir, const char *file, const char *val, err_t *err)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
        return err_make(err, ENAMETOOLONG, "cgroup path too long");
    return container_write_file(path, val, err);
}

static int put_i64(const char *dir, const char *file, int64_t v, err_t *err)
{
    char buf[32];
    if (v < 0)
        snprintf(buf, sizeof(buf), "max");
    else
        snprintf(buf, sizeof(buf), "%" PRId64, v);
    return put(dir, file, buf, err);
}

int container_cgroup_apply(const char *dir, const oci_resources_t *res, err_t *err)
{
    int r = container_cgroup_validate(res, err);
    if (r < 0)
        return r;
    if ((r = mkdir_p(dir, err)) < 0)
        return r;
    if (!res)
        return 0;

    bool mem = res->memory.limit.set || res->memory.reservation.set || res->memory.swap.set;
    bool cpu = (res->cpu.shares.set && res->cpu.shares.value) || res->cpu.quota.set ||
               res->cpu.period.set || res->cpu.burst.set || res->cpu.idle.set;
    bool cpuset = res->cpu.cpus || res->cpu.mems;
    bool pids = res->pids_limit.set && res->pids_limit.value != 0;
    bool io = res->block_io.weight.set;
    bool huge = res->n_hugepage_limits > 0;
    bool *want[] = {&mem, &cpu, &cpuset, &pids, &io, &huge};
    const char *needed[] = {"memory", "cpu", "cpuset", "pids", "io", "hugetlb"};
    for (size_t i = 0; i < sizeof(needed) / sizeof(*needed); i++) {
        if (!*want[i])
            continue;
        if ((r = enable_controller(dir, needed[i], err)) < 0)
            return r;
        if (r == 1) /* skipped: none of its files exist */
            *want[i] = false;
    }

    if (mem && res->memory.limit.set &&
        (r = put_i64(dir, "memory.max", res->memory.limit.value, err)) < 0)
        return r;
    if (mem && res->memory.reservation.set &&
        (r = put_i64(dir, "memory.low", res->memory.reservation.value, err)) < 0)
        return r;
    if (mem && res->memory.swap.set && res->memory.swap.value != 0) {
        int64_t sw =
            res->memory.swap.value < 0 ? -1 : res->memory.swap.value - res->memory.limit.value;
        if ((r = put_i64(dir, "memory.swap.max", sw, err)) < 0)
            return r;
    }
    if (cpu && res->cpu.shares.set && res->cpu.shares.value) {
        int64_t s = res->cpu.shares.value;
        s = s < 2 ? 2 : s > 262144 ? 262144 : s;
        if ((r = put_i64(dir, "cpu.weight", 1 + ((s - 2) * 9999) / 262142, err)) < 0)
            return r;
    }
    if (cpu && (res->cpu.quota.set || res->cpu.period.set)) {
        char buf[64];
        int64_t period =
            res->cpu.period.set && res->cpu.period.value ? res->cpu.period.value : 100000;
        if (!res->cpu.quota.set || res->cpu.quota.value < 0)
            snprintf(buf, sizeof(buf), "max %" PRId64, period);
        else
            snprintf(buf, sizeof(buf), "%" PRId64 " %" PRId64, res->cpu.quota.value, period);
        if ((r = put(dir, "cpu.max", buf, err)) < 0)
            return r;
    }
    if (cpu && res->cpu.burst.set &&
        (r = put_i64(dir, "cpu.max.burst", res->cpu.burst.value, err)) < 0)
        return r;
    if (cpu && res->cpu.idle.set && (r = put_i64(dir, "cpu.idle", res->cpu.idle.value, err)) < 0)
        return r;
    if (cpuset && res->cpu.cpus && (r = put(dir, "cpuset.cpus", res->cpu.cpus, err)) < 0)
        return r;
    if (cpuset && res->cpu.mems && (r = put(dir, "cpuset.mems", res->cpu.mems, err)) < 0)
        return r;
    if (pids && (r = put_i64(dir, "pids.max", res->pids_limit.value, err)) < 0)
        return r;
    if (io && (r = put_i64(dir, "io.weight", 1 + (res->block_io.weight.value - 10) * 9999 / 990,
                           err)) < 0)
        return r;
    for (size_t i = 0; huge && i < res->n_hugepage_limits; i++) {
        char file[128];
        snprintf(file, sizeof(file), "hugetlb.%.64s.max", res->hugepage_limits[i].page_size);
        if ((r = put_i64(dir, file, (int64_t)res->hugepage_limits[i].limit, err)) < 0)
            return r;
    }
    for (size_t i = 0; i < res->n_unified; i++)
        if ((r = put(dir, res->unified[i].key, res->unified[i].value, err)) < 0)
            return r;
    if ((r = devfilter_apply(dir, res->devices, res->n_devices, g_host_mode, err)) < 0)
        return err_wrap(err, "linux.resources.devices");
    if (r == 1)
        log_warn("cgroup %s: this host cannot attach a cgroup eBPF device filter: the device "
                 "rules are not applied",
                 dir);
    return 0;
}

int container_cgroup_join(const char *dir, pid_t pid, err_t *err)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%d", (int)pid);
    return put(dir, "cgroup.procs", buf, err);
}
