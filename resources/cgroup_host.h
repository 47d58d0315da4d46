/* resources/cgroup_host: the host cgroup of a sandbox's VMM and daemon.
 *
 * One cgroup per sandbox, <parent>/<sandbox-id> (parent default "husk"),
 * in every hierarchy that can hold it:
 *
 *  - pure cgroup v2 (<fs_root>/cgroup.controllers exists): one directory;
 *    the memory and cpu controllers are enabled in every ancestor's
 *    cgroup.subtree_control from the root down; limits in memory.max and
 *    cpu.max.
 *  - hybrid or v1 (<fs_root>/memory, <fs_root>/cpu or cpu,cpuacct mounted
 *    as v1): a directory in the v1 memory hierarchy (memory.limit_in_bytes)
 *    and in the v1 cpu hierarchy (cpu.cfs_period_us, cpu.cfs_quota_us),
 *    plus one in the v2 unified hierarchy (<fs_root>/unified) when present,
 *    for process tracking (and for limits when v2 owns a controller).
 *
 * What a host cannot do is skipped and reported, never silent: a
 * hierarchy that is not writable, a controller that cannot be enabled, a
 * limit that cannot be written (e.g. no CAP_SYS_RESOURCE, a delegated
 * subtree).  Each skipped part adds a line to res_cgroup_warnings(); the
 * caller logs them.  Only "no hierarchy at all could be created" fails.
 *
 * Removal waits (polling cgroup.procs) for the cgroup to empty, then
 * removes the directories; the parent is left for other sandboxes.  On a
 * file system that is not cgroupfs (tests use a plain directory tree as
 * fs_root) control files are plain files and are removed too. */
#ifndef HUSK_RES_CGROUP_HOST_H
#define HUSK_RES_CGROUP_HOST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "oci/spec.h"

#define RES_CGROUP_FS_ROOT        "/sys/fs/cgroup"
#define RES_CGROUP_PARENT         "husk"
#define RES_CGROUP_DEFAULT_PERIOD 100000 /* us */

typedef struct res_cgroup res_cgroup_t;

typedef struct res_cgroup_opts {
    const char *fs_root; /* NULL = RES_CGROUP_FS_ROOT */
    const char *parent;  /* relative path; NULL = RES_CGROUP_PARENT */
} res_cgroup_opts_t;

typedef struct res_cgroup_limits {
    int64_t memory_bytes;   /* <= 0: no limit */
    int64_t cpu_quota_us;   /* <= 0: no limit */
    uint64_t cpu_period_us; /* 0: RES_CGROUP_DEFAULT_PERIOD */
} res_cgroup_limits_t;

/* Limits for the sandbox from the spec: memory.limit + overhead_bytes,
 * cpu quota/period.  No linux.resources: no limits.  Never fails. */
void res_cgroup_limits_from_spec(const oci_spec_t *spec, uint64_t overhead_bytes,
                                 res_cgroup_limits_t *out);

/* Creates the sandbox cgroup and applies lim (may be NULL).  -EEXIST
 * when it exists already (see res_cgroup_open).  Caller owns *out. */
int res_cgroup_create(const res_cgroup_opts_t *opts, const char *sandbox_id,
                      const res_cgroup_limits_t *lim, res_cgroup_t **out, err_t *err);

/* Attaches to the existing cgroup of a sandbox (e.g. to remove it after a
 * daemon restart).  -ENOENT when it exists in no hierarchy. */
int res_cgroup_open(const res_cgroup_opts_t *opts, const char *sandbox_id, res_cgroup_t **out,
                    err_t *err);

/* Moves pid into the cgroup in every hierarchy. */
int res_cgroup_add_pid(res_cgroup_t *cg, pid_t pid, err_t *err);

/* Waits at most timeout_ms for the cgroup to empty (-EBUSY naming the
 * pids left), then removes its directories. */
int res_cgroup_remove(res_cgroup_t *cg, int timeout_ms, err_t *err);

/* Frees the handle (the cgroup stays); accepts NULL and *NULL. */
void res_cgroup_destroy(res_cgroup_t **cg_p);

/* "v2", "v1", or "hybrid" (v1 controllers + v2 unified).  Static. */
const char *res_cgroup_mode(const res_cgroup_t *cg);

/* The cgroup directories, one per hierarchy used.  Borrowed. */
const char *const *res_cgroup_paths(const res_cgroup_t *cg, size_t *n_out);

/* What was skipped, one human line each.  Borrowed. */
const char *const *res_cgroup_warnings(const res_cgroup_t *cg, size_t *n_out);

#endif
