/* agent/guest/mounts: the container's filesystem view, runc-style.
 *
 * Mount points inside the rootfs are resolved with openat2(RESOLVE_IN_ROOT)
 * so that symlinks in an untrusted image cannot redirect a mount outside of
 * it; the mount then targets /proc/self/fd/N. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "agent/guest/container-internal.h"
#include "common/cleanup.h"

struct mount_opt {
    const char *name;
    bool clear;
    unsigned long flag;
};

static const struct mount_opt mount_opts[] = {
    {"async", true, MS_SYNCHRONOUS},
    {"atime", true, MS_NOATIME},
    {"bind", false, MS_BIND},
    {"defaults", false, 0},
    {"dev", true, MS_NODEV},
    {"diratime", true, MS_NODIRATIME},
    {"dirsync", false, MS_DIRSYNC},
    {"exec", true, MS_NOEXEC},
    {"iversion", false, MS_I_VERSION},
    {"lazytime", false, MS_LAZYTIME},
    {"loud", true, MS_SILENT},
    {"mand", false, MS_MANDLOCK},
    {"noatime", false, MS_NOATIME},
    {"nodev", false, MS_NODEV},
    {"nodiratime", false, MS_NODIRATIME},
    {"noexec", false, MS_NOEXEC},
    {"noiversion", true, MS_I_VERSION},
    {"nolazytime", true, MS_LAZYTIME},
    {"nomand", true, MS_MANDLOCK},
    {"norelatime", true, MS_RELATIME},
    {"nostrictatime", true, MS_STRICTATIME},
    {"nosuid", false, MS_NOSUID},
    {"rbind", false, MS_BIND | MS_REC},
    {"relatime", false, MS_RELATIME},
    {"remount", false, MS_REMOUNT},
    {"ro", false, MS_RDONLY},
    {"rw", true, MS_RDONLY},
    {"silent", false, MS_SILENT},
    {"strictatime", false, MS_STRICTATIME},
    {"suid", true, MS_NOSUID},
    {"sync", false, MS_SYNCHRONOUS},
};

static const struct {
    const char *name;
    unsigned long flag;
} prop_opts[] = {
    {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
    {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
    {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
    {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
};

/* Options runc or crun understand that husk does not implement. */
static const char *const refused_opts[] = {
    "tmpcopyup",   "idmap",     "ridmap",       "copy-symlink", "rro",          "rrw",
    "rnosuid",     "rsuid",     "rnodev",       "rdev",         "rnoexec",      "rexec",
    "rnoatime",    "ratime",    "rrelatime",    "rnorelatime",  "rstrictatime", "rnostrictatime",
    "rnodiratime", "rdiratime", "rnosymfollow", "rsymfollow",   "nosymfollow",  "symfollow",
};

static unsigned long propagation_flag(const char *name)
{
    for (size_t i = 0; i < sizeof(prop_opts) / sizeof(*prop_opts); i++)
        if (strcmp(prop_opts[i].name, name) == 0)
            return prop_opts[i].flag;
    return 0;
}

/* Splits options into mount flags, propagation flags and the data string
 * (the options the kernel's filesystem parses, comma-joined). */
static int parse_options(const oci_mount_t *m, size_t idx, unsigned long *flags_out,
                         unsigned long *prop_out, char **data_out, err_t *err)
{
    unsigned long flags = 0, prop = 0;
    size_t cap = 1;
    for (size_t i = 0; i < m->n_options; i++)
        cap += strlen(m->options[i]) + 1;
    _cleanup_free_ char *data = calloc(1, cap);
    if (!data)
        abort();
    for (size_t i = 0; i < m->n_options; i++) {
        const char *o = m->options[i];
        bool done = false;
        for (size_t j = 0; !done && j < sizeof(mount_opts) / sizeof(*mount_opts); j++) {
            if (strcmp(mount_opts[j].name, o) != 0)
                continue;
            if (mount_opts[j].clear)
                flags &= ~mount_opts[j].flag;
            else
                flags |= mount_opts[j].flag;
            done = true;
        }
        unsigned long p = propagation_flag(o);
        if (p) {
            prop = p;
            done = true;
        }
        for (size_t j = 0; !done && j < sizeof(refused_opts) / sizeof(*refused_opts); j++)
            if (strcmp(refused_opts[j], o) == 0)
                return err_make(err, ENOTSUP,
                                "mounts[%zu].options[%zu]: \"%s\" is not supported by husk", idx, i,
                                o);
        if (!done) {
            if (data[0])
                strcat(data, ",");
            strcat(data, o);
        }
    }
    *flags_out = flags;
    *prop_out = prop;
    *data_out = data[0] ? TAKE_PTR(data) : NULL;
    return 0;
}

int container_mounts_validate(const oci_spec_t *spec, err_t *err)
{
    for (size_t i = 0; i < spec->n_mounts; i++) {
        unsigned long f, p;
        _cleanup_free_ char *data = NULL;
        if (spec->mounts[i].has_idmap)
            return err_make(err, ENOTSUP,
                            "mounts[%zu]: idmapped mounts (uidMappings/gidMappings) are not "
                            "supported by husk",
                            i);
        int r = parse_options(&spec->mounts[i], i, &f, &p, &data, err);
        if (r < 0)
            return r;
        bool bind =
            (f & MS_BIND) || (spec->mounts[i].type && strcmp(spec->mounts[i].type, "bind") == 0);
        if (bind && !spec->mounts[i].source)
            return err_make(err, EINVAL, "mounts[%zu].source: required for a bind mount", i);
    }
    return 0;
}

/* ---- path resolution inside the rootfs ------------------------------- */

static int open_in_root(int rootfd, const char *rel, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .mode = (flags & O_CREAT) ? mode : 0,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    while (*rel == '/')
        rel++;
    if (!*rel)
        rel = ".";
    return (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof(how));
}

/* Creates rel (a directory, or an empty file when !dir) and its parents
 * inside the root, never following a symlink out of it. */
static int ensure_path(int rootfd, const char *rel, bool dir, err_t *err)
{
    char buf[PATH_MAX];
    while (*rel == '/')
        rel++;
    if (snprintf(buf, sizeof(buf), "%s", rel) >= (int)sizeof(buf))
        return err_make(err, ENAMETOOLONG, "path too long: /%s", rel);
    size_t len = strlen(buf);
    for (size_t i = 0; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        if (i == 0 || buf[i - 1] == '/')
            continue;
        bool last = buf[i] == '\0';
        char saved = buf[i];
        buf[i] = '\0';
        int fd = open_in_root(rootfd, buf, O_PATH, 0);
        if (fd >= 0) {
            close(fd);
            buf[i] = saved;
            continue;
        }
        if (errno != ENOENT)
            return err_errno(err, "open /%s in the rootfs", buf);
        char *slash = strrchr(buf, '/');
        const char *name = slash ? slash + 1 : buf;
        int r;
        if (slash)
            *slash = '\0';
        _cleanup_close_ int parent =
            open_in_root(rootfd, slash ? buf : ".", O_PATH | O_DIRECTORY, 0);
        if (slash)
            *slash = '/';
        if (parent < 0)
            return err_errno(err, "open parent of /%s in the rootfs", buf);
        if (last && !dir) {
            r = openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
            if (r >= 0)
                close(r);
        } else {
            r = mkdirat(parent, name, 0755);
        }
        if (r < 0 && errno != EEXIST)
            return err_errno(err, "create /%s in the rootfs", buf);
        buf[i] = saved;
    }
    return 0;
}

static unsigned long statvfs_mount_flags(const char *path)
{
    struct statvfs st;
    unsigned long f = 0;
    if (statvfs(path, &st) < 0)
        return 0;
    if (st.f_flag & ST_RDONLY)
        f |= MS_RDONLY;
    if (st.f_flag & ST_NOSUID)
        f |= MS_NOSUID;
    if (st.f_flag & ST_NODEV)
        f |= MS_NODEV;
    if (st.f_flag & ST_NOEXEC)
        f |= MS_NOEXEC;
    if (st.f_flag & ST_NOATIME)
        f |= MS_NOATIME;
    if (st.f_flag & ST_NODIRATIME)
        f |= MS_NODIRATIME;
    if (st.f_flag & ST_RELATIME)
        f |= MS_RELATIME;
    return f;
}

#define FDPATH(buf, fd) (snprintf((buf), sizeof(buf), "/proc/self/fd/%d", (fd)), (buf))

/* Mount flags a bind remount may set (MS_BIND/MS_REC/MS_REMOUNT aside). */
#define REMOUNT_MASK                                                                               \
    (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME |     \
     MS_STRICTATIME | MS_SYNCHRONOUS | MS_DIRSYNC | MS_MANDLOCK | MS_LAZYTIME)

static int bind_remount(int rootfd, const char *dest, unsigned long flags, bool userns, err_t *err)
{
    char p[64];
    _cleanup_close_ int fd = open_in_root(rootfd, dest, O_PATH, 0);
    if (fd < 0)
        return err_errno(err, "open %s in the rootfs", dest);
    unsigned long keep = 0;
    if (userns) /* locked flags of the source cannot be cleared */
        keep = statvfs_mount_flags(FDPATH(p, fd)) & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY |
                                                     MS_NOATIME | MS_NODIRATIME | MS_RELATIME);
    if (keep & MS_RDONLY && !(flags & MS_RDONLY))
        keep &= ~MS_RDONLY; /* let the kernel say EPERM if it must */
    if (mount(NULL, FDPATH(p, fd), NULL, MS_REMOUNT | MS_BIND | (flags & REMOUNT_MASK) | keep,
              NULL) < 0)
        return err_errno(err, "remount %s", dest);
    return 0;
}

static int set_propagation(int rootfd, const char *dest, unsigned long prop, err_t *err)
{
    char p[64];
    _cleanup_close_ int fd = open_in_root(rootfd, dest, O_PATH, 0);
    if (fd < 0)
        return err_errno(err, "open %s in the rootfs", dest);
    if (mount(NULL, FDPATH(p, fd), NULL, prop, NULL) < 0)
        return err_errno(err, "set propagation of %s", dest);
    return 0;
}

static int bind_host_path(int rootfd, const char *src, const char *dest, unsigned long flags,
                          bool userns, err_t *err)
{
    struct stat st;
    char p[64];
    if (stat(src, &st) < 0)
        return err_errno(err, "mount %s on %s", src, dest);
    int r = ensure_path(rootfd, dest, S_ISDIR(st.st_mode), err);
    if (r < 0)
        return r;
    _cleanup_close_ int fd = open_in_root(rootfd, dest, O_PATH, 0);
    if (fd < 0)
        return err_errno(err, "open %s in the rootfs", dest);
    if (mount(src, FDPATH(p, fd), NULL, MS_BIND | (flags & MS_REC), NULL) < 0)
        return err_errno(err, "mount %s on %s", src, dest);
    if (flags & REMOUNT_MASK)
        return bind_remount(rootfd, dest, flags, userns, err);
    return 0;
}

/* Does the container get a cgroup namespace of its own (new or joined)? */
static bool own_cgroupns(const oci_spec_t *spec)
{
    for (size_t i = 0; spec->lnx && i < spec->lnx->n_namespaces; i++)
        if (spec->lnx->namespaces[i].type == OCI_NS_CGROUP)
            return true;
    return false;
}

/* The mount point of a cgroup2 mount showing the root of our cgroup
 * namespace (mountinfo's root field "/"), the first (oldest) one: the
 * agent's own /sys/fs/cgroup (or /sys/fs/cgroup/unified on a hybrid host).
 * A container in our cgroup namespace gets a bind of it: the same
 * superblock and root, so the same view as a fresh `mount -t cgroup2`,
 * which in the initial cgroup namespace waits for an RCU grace period
 * (10-16 ms, docs/performance.md).  -1 when there is none. */
static int cgroup2_root_mount(char *out, size_t cap)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -1;
    char line[4096];
    int r = -1;
    while (r < 0 && fgets(line, sizeof line, f)) {
        char root[PATH_MAX], point[PATH_MAX], fstype[64];
        const char *sep = strstr(line, " - ");
        if (!sep || sscanf(line, "%*d %*d %*s %4095s %4095s", root, point) != 2 ||
            sscanf(sep + 3, "%63s", fstype) != 1)
            continue;
        /* a mount point with an escaped character (\040...) is skipped */
        if (strcmp(fstype, "cgroup2") == 0 && strcmp(root, "/") == 0 && !strchr(point, '\\') &&
            strlen(point) < cap) {
            snprintf(out, cap, "%s", point);
            r = 0;
        }
    }
    fclose(f);
    return r;
}

static int mount_one(const oci_spec_t *spec, const oci_mount_t *m, size_t idx, int rootfd,
                     const char *bundle, bool userns, err_t *err)
{
    unsigned long flags, prop;
    _cleanup_free_ char *data = NULL;
    const char *type = m->type ? m->type : "";
    const char *dest = m->destination;
    char p[64];
    int r = parse_options(m, idx, &flags, &prop, &data, err);
    if (r < 0)
        return r;
    bool bind = (flags & MS_BIND) || strcmp(type, "bind") == 0;
    if (bind) {
        char src[PATH_MAX];
        if (m->source[0] == '/' || !bundle)
            snprintf(src, sizeof(src), "%s", m->source);
        else
            snprintf(src, sizeof(src), "%s/%s", bundle, m->source);
        r = bind_host_path(rootfd, src, dest, flags | MS_BIND, userns, err);
    } else {
        if ((r = ensure_path(rootfd, dest, true, err)) < 0)
            return r;
        _cleanup_close_ int fd = open_in_root(rootfd, dest, O_PATH | O_DIRECTORY, 0);
        if (fd < 0)
            return err_errno(err, "open %s in the rootfs", dest);
        if (strcmp(type, "cgroup") == 0 || strcmp(type, "cgroup2") == 0) {
            /* The guest runs cgroup v2 only: "cgroup" means the unified
             * hierarchy, as runc does on a v2 host. */
            char croot[PATH_MAX];
            if (!own_cgroupns(spec) && cgroup2_root_mount(croot, sizeof croot) == 0) {
                close(TAKE_FD(fd));
                return bind_host_path(rootfd, croot, dest, flags | MS_BIND, userns, err);
            }
            r = mount("cgroup2", FDPATH(p, fd), "cgroup2", flags & ~MS_REMOUNT, NULL);
            if (r < 0 && (errno == EPERM || errno == EBUSY))
                r = mount("/sys/fs/cgroup", FDPATH(p, fd), NULL, MS_BIND | MS_REC, NULL);
        } else {
            const char *src = m->source ? m->source : type;
            r = mount(src, FDPATH(p, fd), type, flags, data);
            if (r < 0 && errno == EPERM && userns && strcmp(type, "sysfs") == 0) {
                /* sysfs of a netns we do not own: bind the host's, as runc. */
                close(TAKE_FD(fd));
                return bind_host_path(rootfd, "/sys", dest, MS_BIND | MS_REC | flags, userns, err);
            }
        }
        if (r < 0)
            return err_errno(err, "mount %s on %s", type[0] ? type : m->source, dest);
    }
    if (r < 0)
        return r;
    if (prop)
        return set_propagation(rootfd, dest, prop, err);
    return 0;
}

/* ---- /dev ---------------------------------------------------------- */

static int make_device(int rootfd, const char *path, char type, unsigned maj, unsigned min,
                       mode_t perm, uid_t uid, gid_t gid, bool userns, err_t *err)
{
    if (userns) /* mknod is not allowed: bind the host's node */
        return bind_host_path(rootfd, path, path, MS_BIND, userns, err);
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    const char *name = slash + 1;
    *slash = '\0';
    int r = ensure_path(rootfd, dir, true, err);
    if (r < 0)
        return r;
    _cleanup_close_ int dfd = open_in_root(rootfd, dir, O_PATH | O_DIRECTORY, 0);
    if (dfd < 0)
        return err_errno(err, "open %s in the rootfs", dir[0] ? dir : "/");
    mode_t fmt = type == 'b' ? S_IFBLK : type == 'p' ? S_IFIFO : S_IFCHR;
    dev_t dev = type == 'p' ? 0 : makedev(maj, min);
    if (mknodat(dfd, name, fmt | perm, dev) < 0) {
        struct stat st;
        if (errno == EPERM) /* as runc: no mknod here, bind the node of our own /dev */
            return bind_host_path(rootfd, path, path, MS_BIND, userns, err);
        if (errno != EEXIST)
            return err_errno(err, "mknod %s", path);
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && (st.st_mode & S_IFMT) == fmt &&
            st.st_rdev == dev)
            return 0;
        if (unlinkat(dfd, name, 0) < 0 || mknodat(dfd, name, fmt | perm, dev) < 0)
            return err_errno(err, "mknod %s", path);
    }
    if (fchownat(dfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
        return err_errno(err, "chown %s", path);
    return 0;
}

static int make_symlink(int devfd, const char *target, const char *name, err_t *err)
{
    if (symlinkat(target, devfd, name) == 0)
        return 0;
    if (errno != EEXIST)
        return err_errno(err, "symlink /dev/%s", name);
    /* ptmx must point to the container's devpts instance */
    if (strcmp(name, "ptmx") == 0 &&
        (unlinkat(devfd, name, 0) < 0 || symlinkat(target, devfd, name) < 0))
        return err_errno(err, "symlink /dev/%s", name);
    return 0;
}

static int setup_dev(const oci_spec_t *spec, int rootfd, bool userns, err_t *err)
{
    static const struct {
        const char *path;
        unsigned maj, min;
    } defaults[] = {
        {"/dev/null", 1, 3},   {"/dev/zero", 1, 5},    {"/dev/full", 1, 7},
        {"/dev/random", 1, 8}, {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0},
    };
    int r;
    for (size_t i = 0; i < spec->n_mounts; i++) {
        unsigned long f = 0, p = 0;
        _cleanup_free_ char *d = NULL;
        const oci_mount_t *m = &spec->mounts[i];
        if (strcmp(m->destination, "/dev") != 0)
            continue;
        if (parse_options(m, i, &f, &p, &d, err) < 0)
            return -EINVAL;
        if ((f & MS_BIND) || (m->type && strcmp(m->type, "bind") == 0))
            return 0; /* a bind-mounted /dev is used as it is */
    }
    if ((r = ensure_path(rootfd, "dev", true, err)) < 0)
        return r;
    for (size_t i = 0; i < sizeof(defaults) / sizeof(*defaults); i++)
        if ((r = make_device(rootfd, defaults[i].path, 'c', defaults[i].maj, defaults[i].min, 0666,
                             0, 0, userns, err)) < 0)
            return r;
    for (size_t i = 0; spec->lnx && i < spec->lnx->n_devices; i++) {
        const oci_device_t *d = &spec->lnx->devices[i];
        mode_t perm = d->file_mode.set ? (mode_t)d->file_mode.value : 0666;
        if ((r = make_device(rootfd, d->path, d->type, (unsigned)d->major, (unsigned)d->minor, perm,
                             d->uid.set ? (uid_t)d->uid.value : 0,
                             d->gid.set ? (gid_t)d->gid.value : 0, userns, err)) < 0)
            return err_wrap(err, "linux.devices[%zu]", i);
    }
    _cleanup_close_ int devfd = open_in_root(rootfd, "dev", O_PATH | O_DIRECTORY, 0);
    if (devfd < 0)
        return err_errno(err, "open /dev in the rootfs");
    static const char *const links[][2] = {
        {"/proc/self/fd", "fd"},       {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
        {"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},
    };
    for (size_t i = 0; i < sizeof(links) / sizeof(*links); i++)
        if ((r = make_symlink(devfd, links[i][0], links[i][1], err)) < 0)
            return r;
    return 0;
}

/* ---- pivot ---------------------------------------------------------- */

static int pivot(const char *rootfs, err_t *err)
{
    _cleanup_close_ int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    _cleanup_close_ int newroot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (oldroot < 0 || newroot < 0)
        return err_errno(err, "open %s", oldroot < 0 ? "/" : rootfs);
    if (fchdir(newroot) < 0)
        return err_errno(err, "chdir %s", rootfs);
    if (syscall(SYS_pivot_root, ".", ".") < 0) {
        if (errno != EINVAL)
            return err_errno(err, "pivot_root %s", rootfs);
        /* The current root is an initramfs (rootfs cannot be pivoted):
         * move the rootfs over / and chroot, as runc --no-pivot. */
        if (mount(rootfs, "/", NULL, MS_MOVE, NULL) < 0)
            return err_errno(err, "move %s to /", rootfs);
        if (chroot(".") < 0)
            return err_errno(err, "chroot %s", rootfs);
        if (chdir("/") < 0)
            return err_errno(err, "chdir /");
        return 0;
    }
    /* The old root is stacked under the new one: detach it without
     * propagating the unmount to the host. */
    if (fchdir(oldroot) < 0)
        return err_errno(err, "chdir to the old root");
    if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        return err_errno(err, "make the old root rslave");
    if (umount2(".", MNT_DETACH) < 0)
        return err_errno(err, "unmount the old root");
    if (chdir("/") < 0)
        return err_errno(err, "chdir /");
    return 0;
}

int container_rootfs_prepare(const oci_spec_t *spec, const char *rootfs, const char *bundle,
                             bool userns, err_t *err)
{
    unsigned long prop = MS_SLAVE | MS_REC;
    const char *rp = spec->lnx ? spec->lnx->rootfs_propagation : NULL;
    int r;
    if (rp && rp[0])
        prop = propagation_flag(rp);
    if (mount(NULL, "/", NULL, prop, NULL) < 0)
        return err_errno(err, "set propagation of / to %s", rp && rp[0] ? rp : "rslave");
    if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
        return err_errno(err, "bind %s onto itself", rootfs);
    _cleanup_close_ int rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return err_errno(err, "open %s", rootfs);
    for (size_t i = 0; i < spec->n_mounts; i++)
        if ((r = mount_one(spec, &spec->mounts[i], i, rootfd, bundle, userns, err)) < 0)
            return r;
    if ((r = setup_dev(spec, rootfd, userns, err)) < 0)
        return r;
    close(TAKE_FD(rootfd));
    if ((r = pivot(rootfs, err)) < 0)
        return r;
    if (rp && rp[0] && mount(NULL, "/", NULL, prop, NULL) < 0)
        return err_errno(err, "set propagation of the container root to %s", rp);
    return 0;
}

int container_rootfs_readonly_paths(const oci_spec_t *spec, err_t *err)
{
    for (size_t i = 0; spec->lnx && i < spec->lnx->n_readonly_paths; i++) {
        const char *p = spec->lnx->readonly_paths[i];
        if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
            if (errno == ENOENT)
                continue;
            return err_errno(err, "bind readonly path %s", p);
        }
        unsigned long keep = statvfs_mount_flags(p) & (MS_NOSUID | MS_NODEV | MS_NOEXEC);
        if (mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | keep, NULL) < 0)
            return err_errno(err, "remount readonly path %s", p);
    }
    return 0;
}

int container_rootfs_masked_paths(const oci_spec_t *spec, err_t *err)
{
    for (size_t i = 0; spec->lnx && i < spec->lnx->n_masked_paths; i++) {
        const char *p = spec->lnx->masked_paths[i];
        struct stat st;
        int r;
        if (stat(p, &st) < 0) {
            if (errno == ENOENT)
                continue;
            return err_errno(err, "mask %s", p);
        }
        if (S_ISDIR(st.st_mode))
            r = mount("tmpfs", p, "tmpfs", MS_RDONLY, NULL);
        else
            r = mount("/dev/null", p, NULL, MS_BIND, NULL);
        if (r < 0 && errno != ENOENT)
            return err_errno(err, "mask %s", p);
    }
    return 0;
}

int container_rootfs_finalize(const oci_spec_t *spec, err_t *err)
{
    if (!spec->root_readonly)
        return 0;
    unsigned long keep = statvfs_mount_flags("/") & (MS_NOSUID | MS_NODEV | MS_NOEXEC);
    if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, NULL) < 0)
        return err_errno(err, "remount / read-only");
    return 0;
}
