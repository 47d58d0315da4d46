/* resources/devices: the checks a spec's devices pass before they reach
 * the agent (linux.devices: nodes made in the container's /dev;
 * linux.resources.devices: device cgroup rules applied in the guest).
 *
 * A device node is refused unless:
 *  - its path, once "//" and "." components are folded, names a file below
 *    /dev ("..", relative paths, /dev itself and anything outside /dev are
 *    refused: a spec must not plant a device node elsewhere in the rootfs);
 *  - no other entry names the same path;
 *  - its major and minor fit Linux's dev_t (12-bit major, 20-bit minor);
 *  - fileMode holds permission bits only (no setuid/setgid/sticky), and
 *    uid/gid are not (uint32_t)-1 (which chown reads as "unchanged").
 * At most RES_DEVICES_MAX entries of each kind (the guest builds one eBPF
 * program from the rules; this bounds its size).
 *
 * Errors name the field: "linux.devices[2].path: `/etc/x` is not below /dev". */
#ifndef HUSK_RES_DEVICES_H
#define HUSK_RES_DEVICES_H

#include <stddef.h>

#include "common/err.h"
#include "oci/spec.h"

#define RES_DEVICES_MAX       256
#define RES_DEVICES_MAJOR_MAX 0xfffu
#define RES_DEVICES_MINOR_MAX 0xfffffu

/* Checks linux.devices and linux.resources.devices of spec (either may be
 * absent).  0 or a negative errno (EINVAL, E2BIG) with err set. */
int res_devices_check(const oci_spec_t *spec, err_t *err);

/* Folds "//" and "." components of the absolute path in into out (size
 * outsz): "/dev//./fuse" -> "/dev/fuse".  Refuses (EINVAL) a relative path
 * or one with a ".." component, ENAMETOOLONG when out is too small. */
int res_devices_normalize(const char *in, char *out, size_t outsz, err_t *err);

#endif
