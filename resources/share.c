/* resources/share: the per-sandbox 9p share.  See share.h. */
#include "resources/share.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

/* ---- the journal: what was done, undone in reverse ---------------------------- */

enum undo_kind { UNDO_RMDIR, UNDO_UNLINK, UNDO_UMOUNT };

typedef struct undo {
    enum undo_kind kind;
    char *path;
} undo_t;

typedef struct journal {
    undo_t *items;
    size_t n, cap;
    long fail_after; /* HUSK_SHARE_FAIL_AFTER; < 0 = off */
    long steps;
} journal_t;

static void journal_init(journal_t *j)
{
    memset(j, 0, sizeof *j);
    j->fail_after = -1;
    const char *f = getenv("HUSK_SHARE_FAIL_AFTER");
    if (f && *f) {
        char *end = NULL;
        long v = strtol(f, &end, 10);
        if (end && !*end && v >= 0)
            j->fail_after = v;
    }
}

/* Called before every mutating step: the injected failure point. */
static int journal_step(journal_t *j, const char *what, err_t *err)
{
    if (j->fail_after >= 0 && j->steps >= j->fail_after)
        return err_make(err, EIO, "%s: injected failure (HUSK_SHARE_FAIL_AFTER=%ld)", what,
                        j->fail_after);
    j->steps++;
    return 0;
}

static void journal_push(journal_t *j, enum undo_kind kind, const char *path)
{
    if (j->n == j->cap) {
        j->cap = j->cap ? j->cap * 2 : 16;
        undo_t *bigger = realloc(j->items, j->cap * sizeof *bigger);
        if (!bigger)
            abort();
        j->items = bigger;
    }
    j->items[j->n].kind = kind;
    j->items[j->n].path = xstrdup(path);
    j->n++;
}

static void umount_path(const char *path)
{
    if (umount2(path, UMOUNT_NOFOLLOW) < 0 && errno == EBUSY)
        umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW);
}

/* Undoes everything in reverse (best effort: the journal only holds what
 * we did, so each undo is expected to succeed). */
static void journal_rollback(journal_t *j)
{
    for (size_t i = j->n; i-- > 0;) {
        undo_t *u = &j->items[i];
        switch (u->kind) {
        case UNDO_UMOUNT:
            umount_path(u->path);
            break;
        case UNDO_RMDIR:
            rmdir(u->path);
            break;
        case UNDO_UNLINK:
            unlink(u->path);
            break;
        }
    }
}

static void journal_free(journal_t *j)
{
    for (size_t i = 0; i < j->n; i++)
        free(j->items[i].path);
    free(j->items);
    j->items = NULL;
    j->n = j->cap = 0;
}

static int do_mkdir(journal_t *j, const char *path, mode_t mode, err_t *err)
{
    int r = journal_step(j, path, err);
    if (r < 0)
        return r;
    if (mkdir(path, mode) < 0)
        return err_errno(err, "mkdir `%s`", path);
    journal_push(j, UNDO_RMDIR, path);
    return 0;
}

static int do_mkfile(journal_t *j, const char *path, err_t *err)
{
    int r = journal_step(j, path, err);
    if (r < 0)
        return r;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return err_errno(err, "create `%s`", path);
    close(fd);
    journal_push(j, UNDO_UNLINK, path);
    return 0;
}

static int do_mount(journal_t *j, const char *src, const char *dst, unsigned long flags, err_t *err)
{
    int r = journal_step(j, dst, err);
    if (r < 0)
        return r;
    if (mount(src, dst, NULL, flags, NULL) < 0)
        return err_errno(err, "bind `%s` on `%s`", src, dst);
    journal_push(j, UNDO_UMOUNT, dst);
    return 0;
}

/* Flag changes on an existing mount (propagation, remount ro): not
 * journaled, they go with the mount. */
static int do_flags(journal_t *j, const char *dst, unsigned long flags, const char *what,
                    err_t *err)
{
    int r = journal_step(j, dst, err);
    if (r < 0)
        return r;
    if (mount(NULL, dst, NULL, flags, NULL) < 0)
        return err_errno(err, "%s `%s`", what, dst);
    return 0;
}

/* ---- mount table ---------------------------------------------------------------- */

static void unescape_mnt(char *s)
{
    char *d = s;
    while (*s) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 4;
        } else {
            *d++ = *s++;
        }
    }
    *d = '\0';
}

/* The mount points at or below prefix, in mount table order.  Caller frees
 * each and the array. */
static int mounts_below(const char *prefix, char ***out, size_t *n_out, err_t *err)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return err_errno(err, "open /proc/self/mountinfo");
    size_t plen = strlen(prefix), n = 0, cap = 0;
    char **v = NULL, *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) > 0) {
        char *save = NULL, *tok = strtok_r(line, " ", &save);
        for (int i = 0; tok && i < 4; i++)
            tok = strtok_r(NULL, " ", &save);
        if (!tok)
            continue;
        unescape_mnt(tok);
        if (strncmp(tok, prefix, plen) != 0 || (tok[plen] != '\0' && tok[plen] != '/'))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            char **bigger = realloc(v, cap * sizeof *v);
            if (!bigger)
                abort();
            v = bigger;
        }
        v[n++] = xstrdup(tok);
    }
    free(line);
    fclose(f);
    *out = v;
    *n_out = n;
    return 0;
}

static void strs_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Unmounts everything at or below prefix, newest first, until the table
 * holds nothing there. */
static int umount_below(const char *prefix, err_t *err)
{
    for (int round = 0; round < 64; round++) {
        char **v = NULL;
        size_t n = 0;
        int r = mounts_below(prefix, &v, &n, err);
        if (r < 0)
            return r;
        if (n == 0) {
            free(v);
            return 0;
        }
        for (size_t i = n; i-- > 0;)
            umount_path(v[i]);
        strs_free(v, n);
    }
    char **v = NULL;
    size_t n = 0;
    int r = mounts_below(prefix, &v, &n, err);
    if (r < 0)
        return r;
    if (n > 0)
        r = err_make(err, EBUSY, "`%s` is still mounted", v[0]);
    strs_free(v, n);
    return r;
}

static bool is_mount_point(const char *path)
{
    char **v = NULL;
    size_t n = 0;
    if (mounts_below(path, &v, &n, NULL) < 0)
        return false;
    bool found = false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], path) == 0)
            found = true;
    strs_free(v, n);
    return found;
}

/* ---- paths ----------------------------------------------------------------------- */

static bool cid_valid(const char *cid)
{
    if (!cid || !*cid || cid[0] == '.' || strlen(cid) > 1024 || strchr(cid, '/'))
        return false;
    return true;
}

/* realpath of <sandbox_dir>/shared; -ENOENT when missing. */
static int share_path(const char *sandbox_dir, char **out, err_t *err)
{
    if (!sandbox_dir || sandbox_dir[0] != '/')
        return err_make(err, EINVAL, "sandbox directory must be an absolute path");
    _cleanup_free_ char *p = xasprintf("%s/%s", sandbox_dir, RES_SHARE_DIR);
    char *real = realpath(p, NULL);
    if (!real) {
        if (errno == ENOENT)
            return err_make(err, ENOENT, "share `%s` does not exist", p);
        return err_errno(err, "resolve `%s`", p);
    }
    *out = real;
    return 0;
}

/* ---- setup / teardown ---------------------------------------------------------------- */

int res_share_setup(const char *sandbox_dir, char **path_out, err_t *err)
{
    if (!sandbox_dir || sandbox_dir[0] != '/')
        return err_make(err, EINVAL, "share setup: sandbox directory must be an absolute path");
    _cleanup_free_ char *sd = realpath(sandbox_dir, NULL);
    if (!sd)
        return err_errno(err, "share setup: resolve `%s`", sandbox_dir);
    _cleanup_free_ char *p = xasprintf("%s/%s", sd, RES_SHARE_DIR);
    journal_t j;
    journal_init(&j);
    int r = 0;
    struct stat st;
    if (lstat(p, &st) < 0) {
        if (errno != ENOENT) {
            r = err_errno(err, "stat `%s`", p);
            goto out;
        }
        if ((r = do_mkdir(&j, p, 0755, err)) < 0)
            goto out;
    } else if (!S_ISDIR(st.st_mode)) {
        r = err_make(err, ENOTDIR, "`%s` exists and is not a directory", p);
        goto out;
    }
    if (!is_mount_point(p)) {
        if ((r = do_mount(&j, p, p, MS_BIND, err)) < 0 ||
            (r = do_flags(&j, p, MS_PRIVATE, "make private", err)) < 0)
            goto out;
    }
out:
    if (r < 0) {
        journal_rollback(&j);
        err_wrap(err, "share setup");
    } else if (path_out) {
        *path_out = TAKE_PTR(p);
    }
    journal_free(&j);
    return r;
}

/* Removes the fixed layout of shared/<cid> after its mounts are gone. */
static int remove_layout(const char *cdir, err_t *err)
{
    _cleanup_free_ char *mounts = xasprintf("%s/mounts", cdir);
    _cleanup_free_ char *rootfs = xasprintf("%s/rootfs", cdir);
    DIR *d = opendir(mounts);
    if (d) {
        struct dirent *e;
        int r = 0;
        while (r == 0 && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            struct stat st;
            if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                continue;
            if (S_ISDIR(st.st_mode)) {
                if (unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) < 0)
                    r = err_errno(err, "remove `%s/%s`", mounts, e->d_name);
            } else if (S_ISREG(st.st_mode) && st.st_size == 0) {
                if (unlinkat(dirfd(d), e->d_name, 0) < 0)
                    r = err_errno(err, "remove `%s/%s`", mounts, e->d_name);
            } else {
                r = err_make(err, ENOTEMPTY, "`%s/%s` is not ours; not removing it", mounts,
                             e->d_name);
            }
        }
        closedir(d);
        if (r < 0)
            return r;
        if (rmdir(mounts) < 0 && errno != ENOENT)
            return err_errno(err, "remove `%s`", mounts);
    }
    if (rmdir(rootfs) < 0 && errno != ENOENT)
        return err_errno(err, "remove `%s`", rootfs);
    if (rmdir(cdir) < 0 && errno != ENOENT)
        return err_errno(err, "remove `%s`", cdir);
    return 0;
}

static int remove_container_in(const char *share, const char *cid, err_t *err)
{
    _cleanup_free_ char *cdir = xasprintf("%s/%s", share, cid);
    int r = umount_below(cdir, err);
    if (r < 0 || (r = remove_layout(cdir, err)) < 0)
        return err_wrap(err, "unshare container `%s`", cid);
    return 0;
}

int res_share_remove_container(const char *sandbox_dir, const char *cid, err_t *err)
{
    if (!cid_valid(cid))
        return err_make(err, EINVAL, "unshare container: invalid id `%s`", cid ? cid : "");
    _cleanup_free_ char *share = NULL;
    err_t e = ERR_INIT;
    int r = share_path(sandbox_dir, &share, &e);
    if (r == -ENOENT) {
        err_clear(&e);
        return 0;
    }
    if (r < 0) {
        err_move(err, &e);
        return r;
    }
    return remove_container_in(share, cid, err);
}

int res_share_teardown(const char *sandbox_dir, err_t *err)
{
    _cleanup_free_ char *share = NULL;
    err_t e = ERR_INIT;
    int r = share_path(sandbox_dir, &share, &e);
    if (r == -ENOENT) {
        err_clear(&e);
        return 0;
    }
    if (r < 0) {
        err_move(err, &e);
        return err_wrap(err, "share teardown");
    }
    /* Container mounts first (newest first), then the share itself. */
    if ((r = umount_below(share, err)) < 0)
        return err_wrap(err, "share teardown");
    DIR *d = opendir(share);
    if (!d)
        return err_errno(err, "share teardown: open `%s`", share);
    struct dirent *e2;
    r = 0;
    while (r == 0 && (e2 = readdir(d))) {
        if (!strcmp(e2->d_name, ".") || !strcmp(e2->d_name, ".."))
            continue;
        _cleanup_free_ char *cdir = xasprintf("%s/%s", share, e2->d_name);
        struct stat st;
        if (lstat(cdir, &st) == 0 && S_ISDIR(st.st_mode))
            r = remove_layout(cdir, err);
        else
            r = err_make(err, ENOTEMPTY, "`%s` is not ours; not removing it", cdir);
    }
    closedir(d);
    if (r < 0)
        return err_wrap(err, "share teardown");
    if (rmdir(share) < 0 && errno != ENOENT)
        return err_errno(err, "share teardown: remove `%s`", share);
    return 0;
}

/* ---- containers ------------------------------------------------------------------- */

void res_container_share_free(res_container_share_t **share_p)
{
    if (!share_p || !*share_p)
        return;
    res_container_share_t *s = *share_p;
    free(s->rootfs);
    oci_mounts_free(s->mounts, s->n_mounts);
    free(s);
    *share_p = NULL;
}

static bool has_option(const oci_mount_t *m, const char *opt)
{
    for (size_t i = 0; i < m->n_options; i++)
        if (strcmp(m->options[i], opt) == 0)
            return true;
    return false;
}

static bool is_bind(const oci_mount_t *m)
{
    return (m->type && strcmp(m->type, "bind") == 0) || has_option(m, "bind") ||
           has_option(m, "rbind");
}

static bool is_host_dev(const char *src)
{
    return src && (strcmp(src, "/dev") == 0 || strncmp(src, "/dev/", 5) == 0);
}

static bool device_listed(const oci_spec_t *spec, const char *path)
{
    if (!spec->lnx)
        return false;
    for (size_t i = 0; i < spec->lnx->n_devices; i++)
        if (spec->lnx->devices[i].path && strcmp(spec->lnx->devices[i].path, path) == 0)
            return true;
    return false;
}

static char **strv_copy(char **v, size_t n)
{
    char **d = xcalloc(n + 1, sizeof *d);
    for (size_t i = 0; i < n; i++)
        d[i] = xstrdup(v[i]);
    return d;
}

static void mount_copy(oci_mount_t *dst, const oci_mount_t *src)
{
    dst->destination = xstrdup(src->destination);
    dst->type = xstrdup(src->type);
    dst->source = xstrdup(src->source);
    dst->options = strv_copy(src->options, src->n_options);
    dst->n_options = src->n_options;
    dst->has_idmap = src->has_idmap;
}

/* Resolves a source relative to the bundle. */
static char *resolve(const char *bundle, const char *path)
{
    if (path[0] == '/')
        return xstrdup(path);
    return xasprintf("%s/%s", bundle, path);
}

/* Binds one spec bind mount at <cdir>/mounts/<i>. */
static int share_bind(journal_t *j, const char *cdir, const char *cid, size_t i,
                      const oci_mount_t *m, const char *bundle, oci_mount_t *out, err_t *err)
{
    if (!m->source || !*m->source)
        return err_make(err, EINVAL, "mounts[%zu] (%s): bind mount without a source", i,
                        m->destination);
    _cleanup_free_ char *src = resolve(bundle, m->source);
    struct stat st;
    if (stat(src, &st) < 0)
        return err_errno(err, "mounts[%zu] (%s): source `%s`", i, m->destination, src);
    _cleanup_free_ char *mdir = xasprintf("%s/mounts", cdir);
    if (access(mdir, F_OK) < 0) {
        int r = do_mkdir(j, mdir, 0755, err);
        if (r < 0)
            return r;
    }
    _cleanup_free_ char *target = xasprintf("%s/%zu", mdir, i);
    int r = S_ISDIR(st.st_mode) ? do_mkdir(j, target, 0755, err) : do_mkfile(j, target, err);
    if (r < 0)
        return r;
    unsigned long flags = MS_BIND | (has_option(m, "rbind") ? MS_REC : 0);
    if ((r = do_mount(j, src, target, flags, err)) < 0 ||
        (r = do_flags(j, target, MS_SLAVE | (flags & MS_REC), "make slave", err)) < 0)
        return r;
    if (has_option(m, "ro") &&
        (r = do_flags(j, target, MS_BIND | MS_REMOUNT | MS_RDONLY, "remount read-only", err)) < 0)
        return r;
    mount_copy(out, m);
    free(out->type);
    out->type = xstrdup("bind");
    free(out->source);
    out->source = xasprintf("%s/%s/mounts/%zu", RES_SHARE_GUEST_ROOT, cid, i);
    return 0;
}

static int add_container(journal_t *j, const char *share, const char *cid, const oci_spec_t *spec,
                         const char *bundle, res_container_share_t *res, err_t *err)
{
    if (!spec->root_path || !*spec->root_path)
        return err_make(err, EINVAL, "root.path is empty");
    _cleanup_free_ char *rootfs_src = resolve(bundle, spec->root_path);
    struct stat st;
    if (stat(rootfs_src, &st) < 0)
        return err_errno(err, "rootfs `%s`", rootfs_src);
    if (!S_ISDIR(st.st_mode))
        return err_make(err, ENOTDIR, "rootfs `%s` is not a directory", rootfs_src);

    /* Refuse what cannot be shared before touching anything. */
    for (size_t i = 0; i < spec->n_mounts; i++) {
        const oci_mount_t *m = &spec->mounts[i];
        if (is_host_dev(m->source) && !device_listed(spec, m->source))
            return err_make(err, EPERM,
                            "mounts[%zu] (%s): host device `%s` is refused; list it in "
                            "linux.devices to have it in the guest",
                            i, m->destination, m->source);
    }

    _cleanup_free_ char *cdir = xasprintf("%s/%s", share, cid);
    if (access(cdir, F_OK) == 0)
        return err_make(err, EEXIST, "`%s` already exists: container already shared", cdir);
    int r = do_mkdir(j, cdir, 0755, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *rootfs = xasprintf("%s/rootfs", cdir);
    if ((r = do_mkdir(j, rootfs, 0755, err)) < 0 ||
        (r = do_mount(j, rootfs_src, rootfs, MS_BIND | MS_REC, err)) < 0 ||
        (r = do_flags(j, rootfs, MS_SLAVE | MS_REC, "make slave", err)) < 0)
        return r;
    if (spec->root_readonly &&
        (r = do_flags(j, rootfs, MS_BIND | MS_REMOUNT | MS_RDONLY, "remount read-only", err)) < 0)
        return r;
    res->rootfs = xasprintf("%s/%s/rootfs", RES_SHARE_GUEST_ROOT, cid);
    res->rootfs_readonly = spec->root_readonly;

    res->mounts = xcalloc(spec->n_mounts, sizeof *res->mounts);
    for (size_t i = 0; i < spec->n_mounts; i++) {
        const oci_mount_t *m = &spec->mounts[i];
        if (is_bind(m) && !is_host_dev(m->source)) {
            if ((r = share_bind(j, cdir, cid, i, m, bundle, &res->mounts[i], err)) < 0)
                return r;
        } else {
            /* Passed through: pseudo file systems, listed devices. */
            mount_copy(&res->mounts[i], m);
        }
        res->n_mounts = i + 1;
    }
    return 0;
}

int res_share_add_container(const char *sandbox_dir, const char *cid, const oci_spec_t *spec,
                            const char *bundle, res_container_share_t **out, err_t *err)
{
    if (!cid_valid(cid))
        return err_make(err, EINVAL, "share container: invalid id `%s`", cid ? cid : "");
    if (!spec || !bundle || bundle[0] != '/')
        return err_make(err, EINVAL, "share container `%s`: bundle must be an absolute path", cid);
    _cleanup_free_ char *share = NULL;
    int r = share_path(sandbox_dir, &share, err);
    if (r < 0)
        return err_wrap(err, "share container `%s`", cid);
    journal_t j;
    journal_init(&j);
    res_container_share_t *res = xcalloc(1, sizeof *res);
    r = add_container(&j, share, cid, spec, bundle, res, err);
    if (r < 0) {
        journal_rollback(&j);
        journal_free(&j);
        res_container_share_free(&res);
        return err_wrap(err, "share container `%s`", cid);
    }
    journal_free(&j);
    *out = res;
    return 0;
}
