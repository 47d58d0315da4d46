/* shim_mount: mounting CreateTaskRequest.rootfs on <bundle>/rootfs. */
#ifndef HUSK_SERVICES_SHIM_MOUNT_H
#define HUSK_SERVICES_SHIM_MOUNT_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "services/proto/containerd/types/mount.pb-c.h"

/* Splits mount options into MS_* flags and the data string (the options
 * that are not flags, comma-joined), as containerd's parseMountOptions.
 * Caller owns *data (free()). */
int svc_shim_mount_options(char *const *options, size_t n, unsigned long *flags, char **data,
                           err_t *err);

/* Mounts each mount on target, in order (containerd's mount.All).  On
 * failure what was mounted is undone. */
int svc_shim_mount_all(Containerd__Types__Mount *const *mounts, size_t n, const char *target,
                       err_t *err);

/* Unmounts everything stacked on target (lazy), ignoring errors. */
void svc_shim_unmount_all(const char *target);

#endif
