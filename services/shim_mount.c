/* shim_mount: the task's rootfs mounts (CreateTaskRequest.rootfs) on the
 * bundle's rootfs directory, the way containerd's mount.All does it. */
#include "services/shim_mount.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include "common/xalloc.h"

static const struct {
    const char *name;
    bool clear;
    unsigned long flag;
} opts[] = {
    {"async", true, MS_SYNCHRONOUS},
    {"atime", true, MS_NOATIME},
    {"bind", false, MS_BIND},
    {"defaults", false, 0},
    {"dev", true, MS_NODEV},
    {"diratime", true, MS_NODIRATIME},
    {"dirsync", false, MS_DIRSYNC},
    {"exec", true, MS_NOEXEC},
    {"mand", false, MS_MANDLOCK},
    {"noatime", false, MS_NOATIME},
    {"nodev", false, MS_NODEV},
    {"nodiratime", false, MS_NODIRATIME},
    {"noexec", false, MS_NOEXEC},
    {"nomand", true, MS_MANDLOCK},
    {"norelatime", true, MS_RELATIME},
    {"nostrictatime", true, MS_STRICTATIME},
    {"nosuid", false, MS_NOSUID},
    {"rbind", false, MS_BIND | MS_REC},
    {"relatime", false, MS_RELATIME},
    {"remount", false, MS_REMOUNT},
    {"ro", false, MS_RDONLY},
    {"rw", true, MS_RDONLY},
    {"strictatime", false, MS_STRICTATIME},
    {"suid", true, MS_NOSUID},
    {"sync", false, MS_SYNCHRONOUS},
};

int svc_shim_mount_options(char *const *options, size_t n, unsigned long *flags, char **data,
                           err_t *err)
{
    *flags = 0;
    *data = NULL;
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += strlen(options[i]) + 1;
    char *d = xcalloc(1, cap);
    for (size_t i = 0; i < n; i++) {
        const char *o = options[i];
        bool known = false;
        for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
            if (strcmp(opts[k].name, o))
                continue;
            known = true;
            if (opts[k].clear)
                *flags &= ~opts[k].flag;
            else
                *flags |= opts[k].flag;
            break;
        }
        if (known)
            continue;
        if (*d)
            strcat(d, ",");
        strcat(d, o);
    }
    *data = d;
    return 0;
}

int svc_shim_mount_all(Containerd__Types__Mount *const *mounts, size_t n, const char *target,
                       err_t *err)
{
    for (size_t i = 0; i < n; i++) {
        const Containerd__Types__Mount *m = mounts[i];
        unsigned long flags;
        char *data = NULL;
        svc_shim_mount_options(m->options, m->n_options, &flags, &data, err);
        const char *type = m->type && *m->type ? m->type : "none";
        int r = mount(m->source, target, type, flags & ~MS_RDONLY & ~MS_REMOUNT, data);
        if (r == 0 && (flags & MS_BIND) && (flags & MS_RDONLY))
            r = mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | flags, NULL);
        else if (r == 0 && (flags & MS_RDONLY))
            r = mount(NULL, target, NULL, MS_REMOUNT | flags, data);
        if (r < 0) {
            int e = errno;
            free(data);
            for (size_t k = 0; k < i + (r == 0); k++)
                umount2(target, MNT_DETACH);
            errno = e;
            return err_errno(err, "mount %s (%s) on %s", m->source, type, target);
        }
        free(data);
    }
    return 0;
}

void svc_shim_unmount_all(const char *target)
{
    for (int i = 0; i < 64; i++)
        if (umount2(target, MNT_DETACH) < 0)
            break;
}
