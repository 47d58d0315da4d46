/* resources/devices: checks of the spec's devices.  See devices.h. */
#include "resources/devices.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"

int res_devices_normalize(const char *in, char *out, size_t outsz, err_t *err)
{
    if (!in || in[0] != '/')
        return err_make(err, EINVAL, "`%s` is not an absolute path", in ? in : "");
    size_t n = 0;
    for (const char *p = in; *p;) {
        while (*p == '/')
            p++;
        size_t len = strcspn(p, "/");
        if (len == 0)
            break;
        if (len == 1 && p[0] == '.') {
            p += len;
            continue;
        }
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return err_make(err, EINVAL, "`%s` has a \"..\" component", in);
        if (n + 1 + len + 1 > outsz)
            return err_make(err, ENAMETOOLONG, "`%.64s...` is too long", in);
        out[n++] = '/';
        memcpy(out + n, p, len);
        n += len;
        p += len;
    }
    if (n == 0) {
        if (outsz < 2)
            return err_make(err, ENAMETOOLONG, "`%s` is too long", in);
        out[n++] = '/';
    }
    out[n] = '\0';
    return 0;
}

static int check_node(const oci_device_t *d, size_t i, char (*paths)[4096], err_t *err)
{
    char *norm = paths[i];
    if (res_devices_normalize(d->path, norm, sizeof *paths, err) < 0)
        return err_wrap(err, "linux.devices[%zu].path", i);
    if (strncmp(norm, "/dev/", 5) != 0)
        return err_make(err, EINVAL,
                        "linux.devices[%zu].path: `%s` is not below /dev (device nodes are made "
                        "in the container's /dev only)",
                        i, d->path);
    for (size_t k = 0; k < i; k++)
        if (!strcmp(paths[k], norm))
            return err_make(err, EINVAL, "linux.devices[%zu].path: `%s` is also linux.devices[%zu]",
                            i, d->path, k);
    if (!strchr("cbup", d->type))
        return err_make(err, EINVAL, "linux.devices[%zu].type: `%c` is not one of c, b, u, p", i,
                        d->type);
    if (d->type != 'p' && (d->major < 0 || d->major > (int64_t)RES_DEVICES_MAJOR_MAX))
        return err_make(err, EINVAL, "linux.devices[%zu].major: %" PRId64 " is out of 0..%u", i,
                        d->major, RES_DEVICES_MAJOR_MAX);
    if (d->type != 'p' && (d->minor < 0 || d->minor > (int64_t)RES_DEVICES_MINOR_MAX))
        return err_make(err, EINVAL, "linux.devices[%zu].minor: %" PRId64 " is out of 0..%u", i,
                        d->minor, RES_DEVICES_MINOR_MAX);
    if (d->file_mode.set && (d->file_mode.value < 0 || d->file_mode.value > 0777))
        return err_make(err, EINVAL,
                        "linux.devices[%zu].fileMode: %#" PRIo64
                        " has bits beyond 0777 (setuid, setgid and sticky are refused)",
                        i, (uint64_t)d->file_mode.value);
    if (d->uid.set && (d->uid.value < 0 || d->uid.value >= (int64_t)UINT32_MAX))
        return err_make(err, EINVAL, "linux.devices[%zu].uid: %" PRId64 " is not a user id", i,
                        d->uid.value);
    if (d->gid.set && (d->gid.value < 0 || d->gid.value >= (int64_t)UINT32_MAX))
        return err_make(err, EINVAL, "linux.devices[%zu].gid: %" PRId64 " is not a group id", i,
                        d->gid.value);
    return 0;
}

static int check_rule(const oci_device_rule_t *d, size_t i, err_t *err)
{
    if (d->type && (strlen(d->type) != 1 || !strchr("acb", d->type[0])))
        return err_make(err, EINVAL, "linux.resources.devices[%zu].type: `%s` is not a, c or b", i,
                        d->type);
    if (d->major.set && (d->major.value < -1 || d->major.value > (int64_t)RES_DEVICES_MAJOR_MAX))
        return err_make(err, EINVAL,
                        "linux.resources.devices[%zu].major: %" PRId64 " is out of -1..%u", i,
                        d->major.value, RES_DEVICES_MAJOR_MAX);
    if (d->minor.set && (d->minor.value < -1 || d->minor.value > (int64_t)RES_DEVICES_MINOR_MAX))
        return err_make(err, EINVAL,
                        "linux.resources.devices[%zu].minor: %" PRId64 " is out of -1..%u", i,
                        d->minor.value, RES_DEVICES_MINOR_MAX);
    if (d->access && (!d->access[0] || strspn(d->access, "rwm") != strlen(d->access)))
        return err_make(err, EINVAL,
                        "linux.resources.devices[%zu].access: `%s` is not letters of \"rwm\"", i,
                        d->access);
    return 0;
}

int res_devices_check(const oci_spec_t *spec, err_t *err)
{
    const oci_linux_t *l = spec ? spec->lnx : NULL;
    if (!l)
        return 0;
    if (l->n_devices > RES_DEVICES_MAX)
        return err_make(err, E2BIG, "linux.devices: %zu entries, at most %d", l->n_devices,
                        RES_DEVICES_MAX);
    if (l->n_devices) {
        _cleanup_free_ char(*paths)[4096] = calloc(l->n_devices, sizeof *paths);
        if (!paths)
            return err_make(err, ENOMEM, "linux.devices: out of memory");
        for (size_t i = 0; i < l->n_devices; i++) {
            int r = check_node(&l->devices[i], i, paths, err);
            if (r < 0)
                return r;
        }
    }
    const oci_resources_t *res = l->resources;
    if (!res)
        return 0;
    if (res->n_devices > RES_DEVICES_MAX)
        return err_make(err, E2BIG, "linux.resources.devices: %zu rules, at most %d",
                        res->n_devices, RES_DEVICES_MAX);
    for (size_t i = 0; i < res->n_devices; i++) {
        int r = check_rule(&res->devices[i], i, err);
        if (r < 0)
            return r;
    }
    return 0;
}
