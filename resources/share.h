/* resources/share: the per-sandbox 9p share.
 *
 * Host side, under the sandbox directory:
 *
 *   <sandbox dir>/shared/                   bind-mounted onto itself, MS_PRIVATE
 *   <sandbox dir>/shared/<cid>/rootfs       the container rootfs (MS_BIND|MS_REC,
 *                                           MS_SLAVE; read-only when root.readonly)
 *   <sandbox dir>/shared/<cid>/mounts/<n>   spec mount n when it is a bind
 *                                           (directory, or an empty file for a
 *                                           file bind); read-only with "ro"
 *
 * The hypervisor exports shared/ with mount tag RES_SHARE_TAG and the
 * guest mounts it at RES_SHARE_GUEST_ROOT, so the guest sees
 * /run/husk/shared/<cid>/rootfs and /run/husk/shared/<cid>/mounts/<n>.
 * The mounts live in the host mount namespace (qemu must see them);
 * shared/ is a private mount so nothing propagates back into the host
 * tree, and each bind is a slave of its source (host changes flow in,
 * nothing flows out).
 *
 * Spec mounts are handed back rewritten for the guest, in spec order:
 *  - bind mounts (type "bind", or option "bind"/"rbind"): source replaced
 *    by the guest path, type "bind", options kept (the agent applies ro,
 *    rbind, propagation...).  Relative sources are relative to the bundle.
 *  - a bind of a host device (source under /dev/) is refused unless
 *    linux.devices lists that path; a listed one is passed through
 *    unchanged (the guest binds its own device node).
 *  - other types (tmpfs, proc, sysfs, devpts, mqueue, cgroup, cgroup2,
 *    shm, ...) are passed through unchanged for the guest to create; one
 *    whose source is a host device (/dev/...) is refused (block devices
 *    are not shared over 9p).
 *
 * Every step of res_share_add_container is journaled and undone in reverse
 * on failure, so a failed add leaves nothing.  Removal works from the
 * mount table and the fixed layout alone (after a daemon restart too):
 * every mount at or below shared/<cid> is unmounted (MNT_DETACH when
 * busy), then only the known entries are removed (directories, and the
 * empty placeholder files); anything else is reported, never deleted.
 *
 * Fault injection (tests): HUSK_SHARE_FAIL_AFTER=N makes the N+1-th
 * mutating step (mkdir, mount, file creation) of res_share_setup or
 * res_share_add_container fail with EIO, read at each call.
 *
 * Needs CAP_SYS_ADMIN in the host mount namespace. */
#ifndef HUSK_RES_SHARE_H
#define HUSK_RES_SHARE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "oci/spec.h"

#define RES_SHARE_DIR        "shared"
#define RES_SHARE_GUEST_ROOT "/run/husk/shared"
#define RES_SHARE_TAG        "husk-shared"

/* What the guest must do for one container. */
typedef struct res_container_share {
    char *rootfs;         /* guest path of the rootfs: /run/husk/shared/<cid>/rootfs */
    bool rootfs_readonly; /* root.readonly (also enforced on the host side) */
    oci_mount_t *mounts;  /* the spec's mounts rewritten for the guest, in order */
    size_t n_mounts;
} res_container_share_t;

/* Creates <sandbox_dir>/shared (0755), bind-mounts it onto itself and
 * makes it private.  Idempotent.  *path_out (optional) gets the host path
 * to export (caller frees).  Undoes itself on failure. */
int res_share_setup(const char *sandbox_dir, char **path_out, err_t *err);

/* Removes every container share, unmounts shared/ and removes it.  A
 * missing share is not an error. */
int res_share_teardown(const char *sandbox_dir, err_t *err);

/* Shares container cid's rootfs (spec->root_path, relative to bundle when
 * not absolute) and bind mounts.  The share must be set up.  -EEXIST
 * when cid is already shared.  On success caller owns *out
 * (res_container_share_free); on failure nothing is left behind. */
int res_share_add_container(const char *sandbox_dir, const char *cid, const oci_spec_t *spec,
                            const char *bundle, res_container_share_t **out, err_t *err);

/* Unmounts and removes shared/<cid>.  A missing one is not an error. */
int res_share_remove_container(const char *sandbox_dir, const char *cid, err_t *err);

/* Frees; accepts NULL and *NULL; nulls *share_p. */
void res_container_share_free(res_container_share_t **share_p);

#endif
