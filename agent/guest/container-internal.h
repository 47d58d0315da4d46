/* agent/guest/container-internal.h: what the container modules share
 * (container.c, mounts.c, caps.c, seccomp.c, cgroup.c).  Not a public API.
 * Everything here runs in the forked container children unless noted. */
#ifndef HUSK_AGENT_GUEST_CONTAINER_INTERNAL_H
#define HUSK_AGENT_GUEST_CONTAINER_INTERNAL_H

#include <stdbool.h>

#include "common/err.h"
#include "oci/spec.h"

/* Writes data to an existing file (no O_CREAT), all of it. */
int container_write_file(const char *path, const char *data, err_t *err);

/* mounts.c: in a fresh mount namespace, sets rootfs propagation, binds the
 * rootfs onto itself, mounts spec->mounts, creates /dev nodes and symlinks,
 * and pivots into it (MS_MOVE + chroot where pivot_root cannot work, as in
 * an initramfs).  userns: the container has a user namespace (device nodes
 * are bind-mounted, locked mount flags kept). */
int container_rootfs_prepare(const oci_spec_t *spec, const char *rootfs, const char *bundle,
                             bool userns, err_t *err);
/* After pivot: readonly paths, masked paths, read-only root. */
int container_rootfs_readonly_paths(const oci_spec_t *spec, err_t *err);
int container_rootfs_masked_paths(const oci_spec_t *spec, err_t *err);
int container_rootfs_finalize(const oci_spec_t *spec, err_t *err);
/* Checks mount options for what husk refuses ("tmpcopyup", "idmap"...). */
int container_mounts_validate(const oci_spec_t *spec, err_t *err);

/* caps.c */
int container_caps_validate(const oci_process_t *p, err_t *err);
/* Drops what is not in the bounding set (needs CAP_SETPCAP: call before
 * changing uid). */
int container_caps_bounding(const oci_process_t *p, err_t *err);
/* Sets effective/permitted/inheritable (capset) and the ambient set. */
int container_caps_apply(const oci_process_t *p, err_t *err);

/* seccomp.c: ctx is a libseccomp scmp_filter_ctx. */
int container_seccomp_validate(const oci_seccomp_t *s, err_t *err);
int container_seccomp_build(const oci_seccomp_t *s, void **ctx_out, err_t *err);
int container_seccomp_load(void *ctx, err_t *err);
void container_seccomp_release(void **ctx_p);

/* cgroup.c */
int container_cgroup_validate(const oci_resources_t *res, err_t *err);

#endif
