/* Unit tests for resources/share (needs root for mounts; skipped
 * otherwise): the share mount, rootfs and bind mounts, guest mount list,
 * refusals, rollback at every injected failure point, removal that leaves
 * nothing and never touches the sources. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "resources/share.h"

static char top[128];   /* temp dir */
static char sbdir[256]; /* the sandbox directory */
static char bundle[256];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 4096);
    size_t n = fread(buf, 1, 4095, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Count of mountinfo lines whose mount point starts with prefix. */
static int mounts_under(const char *prefix)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[4096];
    int n = 0;
    size_t plen = strlen(prefix);
    while (fgets(line, sizeof line, f)) {
        char mp[4096];
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && strncmp(mp, prefix, plen) == 0)
            n++;
    }
    fclose(f);
    return n;
}

/* The mountinfo line of mount point path (first match), or "". */
static void mount_line(const char *path, char *out, size_t len)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[4096];
    out[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        char mp[4096];
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && strcmp(mp, path) == 0) {
            snprintf(out, len, "%s", line);
            break;
        }
    }
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    if (geteuid() != 0)
        return 0;
    snprintf(top, sizeof top, "/tmp/husk-test-share.XXXXXX");
    if (!mkdtemp(top))
        return -1;
    char p[512];
    snprintf(sbdir, sizeof sbdir, "%s/run/p1", top);
    snprintf(bundle, sizeof bundle, "%s/bundle", top);
    snprintf(p, sizeof p, "%s/run", top);
    mkdir(p, 0700);
    mkdir(sbdir, 0700);
    mkdir(bundle, 0755);
    snprintf(p, sizeof p, "%s/rootfs", bundle);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/rootfs/etc", bundle);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/rootfs/etc/os-release", bundle);
    write_file(p, "NAME=test\n");
    snprintf(p, sizeof p, "%s/data", top);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/data/keep", top);
    write_file(p, "precious\n");
    snprintf(p, sizeof p, "%s/hosts", top);
    write_file(p, "127.0.0.1 localhost\n");
    snprintf(p, sizeof p, "%s/rel", bundle);
    mkdir(p, 0755);
    unsetenv("HUSK_SHARE_FAIL_AFTER");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (geteuid() != 0)
        return 0;
    err_t err = ERR_INIT;
    res_share_teardown(sbdir, &err);
    err_clear(&err);
    if (mounts_under(top) != 0)
        return -1;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
    return system(cmd) == 0 ? 0 : -1;
}

static bool can_mount(void)
{
    if (geteuid() != 0)
        return false;
    err_t err = ERR_INIT;
    char *path = NULL;
    if (res_share_setup(sbdir, &path, &err) < 0) {
        fprintf(stderr, "share setup failed: %s\n", err_str(&err));
        err_clear(&err);
        return false;
    }
    free(path);
    return true;
}

static oci_spec_t *spec_from(const char *json)
{
    oci_spec_t *s = NULL;
    err_t err = ERR_INIT;
    if (oci_spec_parse(json, strlen(json), &s, &err) < 0)
        fail_msg("parse: %s", err_str(&err));
    return s;
}

static char *spec_json(bool readonly, const char *extra_mounts)
{
    char *j = NULL;
    if (asprintf(&j,
                 "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\",\"readonly\":%s},"
                 "\"mounts\":["
                 "{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"},"
                 "{\"destination\":\"/data\",\"type\":\"bind\",\"source\":\"%s/data\","
                 "\"options\":[\"rbind\",\"rw\"]},"
                 "{\"destination\":\"/etc/hosts\",\"type\":\"bind\",\"source\":\"%s/hosts\","
                 "\"options\":[\"bind\",\"ro\"]},"
                 "{\"destination\":\"/dev/shm\",\"type\":\"tmpfs\",\"source\":\"shm\","
                 "\"options\":[\"nosuid\",\"size=65536k\"]},"
                 "{\"destination\":\"/rel\",\"source\":\"rel\",\"options\":[\"rbind\"]}"
                 "%s]}",
                 readonly ? "true" : "false", top, top, extra_mounts ? extra_mounts : "") < 0)
        abort();
    return j;
}

static void test_res_share_setup_is_private_mount_and_idempotent(void **state)
{
    (void)state;
    if (!can_mount())
        skip();
    char p[512], line[4096];
    snprintf(p, sizeof p, "%s/shared", sbdir);
    mount_line(p, line, sizeof line);
    assert_true(line[0] != '\0');
    assert_null(strstr(line, "shared:")); /* private: no peer group */
    assert_null(strstr(line, "master:"));
    err_t err = ERR_INIT;
    assert_int_equal(res_share_setup(sbdir, NULL, &err), 0);
    assert_int_equal(mounts_under(p), 1);
    assert_int_equal(res_share_teardown(sbdir, &err), 0);
    assert_int_equal(mounts_under(p), 0);
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(res_share_teardown(sbdir, &err), 0); /* idempotent */
}

static void test_res_share_container_rootfs_and_binds(void **state)
{
    (void)state;
    if (!can_mount())
        skip();
    char *j = spec_json(true, NULL);
    oci_spec_t *spec = spec_from(j);
    free(j);
    res_container_share_t *cs = NULL;
    err_t err = ERR_INIT;
    if (res_share_add_container(sbdir, "c1", spec, bundle, &cs, &err) < 0)
        fail_msg("%s", err_str(&err));
    assert_string_equal(cs->rootfs, "/run/husk/shared/c1/rootfs");
    assert_true(cs->rootfs_readonly);
    assert_int_equal(cs->n_mounts, 5);
    /* Passed through unchanged. */
    assert_string_equal(cs->mounts[0].type, "proc");
    assert_string_equal(cs->mounts[0].source, "proc");
    assert_string_equal(cs->mounts[3].type, "tmpfs");
    assert_string_equal(cs->mounts[3].options[1], "size=65536k");
    /* Binds: guest paths, options kept. */
    assert_string_equal(cs->mounts[1].source, "/run/husk/shared/c1/mounts/1");
    assert_string_equal(cs->mounts[1].type, "bind");
    assert_string_equal(cs->mounts[1].destination, "/data");
    assert_string_equal(cs->mounts[1].options[0], "rbind");
    assert_string_equal(cs->mounts[2].source, "/run/husk/shared/c1/mounts/2");
    assert_string_equal(cs->mounts[2].options[1], "ro");
    assert_string_equal(cs->mounts[4].source, "/run/husk/shared/c1/mounts/4");
    assert_string_equal(cs->mounts[4].type, "bind");

    /* The host side holds what the guest will see. */
    char p[512];
    snprintf(p, sizeof p, "%s/shared/c1/rootfs/etc/os-release", sbdir);
    char *t = read_text(p);
    assert_string_equal(t, "NAME=test\n");
    free(t);
    snprintf(p, sizeof p, "%s/shared/c1/rootfs/new", sbdir);
    assert_int_equal(open(p, O_CREAT | O_WRONLY, 0600), -1); /* root.readonly */
    assert_int_equal(errno, EROFS);
    snprintf(p, sizeof p, "%s/shared/c1/mounts/1/keep", sbdir);
    t = read_text(p);
    assert_string_equal(t, "precious\n");
    free(t);
    snprintf(p, sizeof p, "%s/shared/c1/mounts/2", sbdir);
    t = read_text(p);
    assert_string_equal(t, "127.0.0.1 localhost\n"); /* a file bind */
    free(t);
    assert_int_equal(open(p, O_WRONLY), -1); /* "ro" */
    assert_int_equal(errno, EROFS);
    char line[4096];
    snprintf(p, sizeof p, "%s/shared/c1/rootfs", sbdir);
    mount_line(p, line, sizeof line);
    assert_null(strstr(line, " shared:")); /* slave or private, never shared */

    /* Twice is refused. */
    res_container_share_t *again = NULL;
    assert_int_equal(res_share_add_container(sbdir, "c1", spec, bundle, &again, &err), -EEXIST);
    err_clear(&err);

    assert_int_equal(res_share_remove_container(sbdir, "c1", &err), 0);
    snprintf(p, sizeof p, "%s/shared/c1", sbdir);
    assert_int_equal(mounts_under(p), 0);
    assert_int_equal(access(p, F_OK), -1);
    /* Sources untouched. */
    snprintf(p, sizeof p, "%s/data/keep", top);
    assert_int_equal(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/hosts", top);
    t = read_text(p);
    assert_string_equal(t, "127.0.0.1 localhost\n");
    free(t);
    snprintf(p, sizeof p, "%s/rootfs/etc/os-release", bundle);
    assert_int_equal(access(p, F_OK), 0);
    assert_int_equal(res_share_remove_container(sbdir, "c1", &err), 0); /* idempotent */
    res_container_share_free(&cs);
    assert_null(cs);
    oci_spec_destroy(&spec);
}

static void test_res_share_host_device_refused_unless_listed(void **state)
{
    (void)state;
    if (!can_mount())
        skip();
    char *j = spec_json(false, ",{\"destination\":\"/dev/fuse\",\"type\":\"bind\","
                               "\"source\":\"/dev/fuse\",\"options\":[\"bind\"]}");
    oci_spec_t *spec = spec_from(j);
    free(j);
    res_container_share_t *cs = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(res_share_add_container(sbdir, "c2", spec, bundle, &cs, &err), -EPERM);
    assert_non_null(strstr(err_str(&err), "mounts[5] (/dev/fuse): host device `/dev/fuse` is "
                                          "refused"));
    err_clear(&err);
    char p[512];
    snprintf(p, sizeof p, "%s/shared/c2", sbdir);
    assert_int_equal(access(p, F_OK), -1);
    oci_spec_destroy(&spec);

    /* Listed in linux.devices: passed through for the guest's own node. */
    char *j2 = NULL;
    if (asprintf(&j2, "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"},"
                      "\"mounts\":[{\"destination\":\"/dev/fuse\",\"type\":\"bind\","
                      "\"source\":\"/dev/fuse\",\"options\":[\"bind\"]}],"
                      "\"linux\":{\"devices\":[{\"path\":\"/dev/fuse\",\"type\":\"c\","
                      "\"major\":10,\"minor\":229}]}}") < 0)
        abort();
    spec = spec_from(j2);
    free(j2);
    assert_int_equal(res_share_add_container(sbdir, "c2", spec, bundle, &cs, &err), 0);
    assert_string_equal(cs->mounts[0].source, "/dev/fuse");
    res_container_share_free(&cs);
    assert_int_equal(res_share_remove_container(sbdir, "c2", &err), 0);
    oci_spec_destroy(&spec);

    /* A block device under another type is refused too. */
    spec = spec_from("{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"},"
                     "\"mounts\":[{\"destination\":\"/mnt\",\"type\":\"ext4\","
                     "\"source\":\"/dev/sdz1\"}]}");
    assert_int_equal(res_share_add_container(sbdir, "c3", spec, bundle, &cs, &err), -EPERM);
    err_clear(&err);
    oci_spec_destroy(&spec);
}

static void test_res_share_missing_source_leaves_nothing(void **state)
{
    (void)state;
    if (!can_mount())
        skip();
    char *j = spec_json(false, ",{\"destination\":\"/gone\",\"type\":\"bind\","
                               "\"source\":\"/nonexistent/husk\",\"options\":[\"bind\"]}");
    oci_spec_t *spec = spec_from(j);
    free(j);
    res_container_share_t *cs = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(res_share_add_container(sbdir, "c4", spec, bundle, &cs, &err), -ENOENT);
    assert_non_null(strstr(err_str(&err), "share container `c4`: mounts[5] (/gone): source "
                                          "`/nonexistent/husk`"));
    err_clear(&err);
    assert_null(cs);
    char p[512];
    snprintf(p, sizeof p, "%s/shared/c4", sbdir);
    assert_int_equal(mounts_under(p), 0);
    assert_int_equal(access(p, F_OK), -1);
    oci_spec_destroy(&spec);
}

static void test_res_share_every_injected_failure_rolls_back(void **state)
{
    (void)state;
    if (!can_mount())
        skip();
    char *j = spec_json(true, NULL);
    oci_spec_t *spec = spec_from(j);
    free(j);
    char p[512], shared[512];
    snprintf(p, sizeof p, "%s/shared/c5", sbdir);
    snprintf(shared, sizeof shared, "%s/shared", sbdir);
    int base = mounts_under(shared);
    int n;
    for (n = 0; n < 100; n++) {
        char v[16];
        snprintf(v, sizeof v, "%d", n);
        setenv("HUSK_SHARE_FAIL_AFTER", v, 1);
        res_container_share_t *cs = NULL;
        err_t err = ERR_INIT;
        int r = res_share_add_container(sbdir, "c5", spec, bundle, &cs, &err);
        unsetenv("HUSK_SHARE_FAIL_AFTER");
        if (r == 0) {
            res_container_share_free(&cs);
            assert_int_equal(res_share_remove_container(sbdir, "c5", &err), 0);
            break;
        }
        assert_int_equal(r, -EIO);
        assert_non_null(strstr(err_str(&err), "injected failure"));
        err_clear(&err);
        if (mounts_under(p) != 0 || access(p, F_OK) == 0)
            fail_msg("failure after %d steps left something behind", n);
        assert_int_equal(mounts_under(shared), base);
    }
    assert_true(n >= 10); /* every step was a failure point at least once */
    assert_int_equal(access(p, F_OK), -1);
    oci_spec_destroy(&spec);
}

static void test_res_share_setup_failure_rolls_back(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char p[512];
    snprintf(p, sizeof p, "%s/shared", sbdir);
    for (int n = 0; n < 3; n++) {
        char v[16];
        snprintf(v, sizeof v, "%d", n);
        setenv("HUSK_SHARE_FAIL_AFTER", v, 1);
        err_t err = ERR_INIT;
        assert_int_equal(res_share_setup(sbdir, NULL, &err), -EIO);
        unsetenv("HUSK_SHARE_FAIL_AFTER");
        err_clear(&err);
        assert_int_equal(mounts_under(p), 0);
        assert_int_equal(access(p, F_OK), -1);
    }
}

static void test_res_share_teardown_removes_containers(void **state)
{
    (void)state;
    if (!can_mount())
        skip();
    char *j = spec_json(false, NULL);
    oci_spec_t *spec = spec_from(j);
    free(j);
    err_t err = ERR_INIT;
    res_container_share_t *a = NULL, *b = NULL;
    assert_int_equal(res_share_add_container(sbdir, "a", spec, bundle, &a, &err), 0);
    assert_int_equal(res_share_add_container(sbdir, "b", spec, bundle, &b, &err), 0);
    /* Something mounted later below a container's rootfs goes too. */
    char p[512];
    snprintf(p, sizeof p, "%s/shared/a/rootfs/etc", sbdir);
    assert_int_equal(mount("tmpfs", p, "tmpfs", 0, NULL), 0);
    assert_int_equal(res_share_teardown(sbdir, &err), 0);
    assert_int_equal(mounts_under(top), 0);
    snprintf(p, sizeof p, "%s/shared", sbdir);
    assert_int_equal(access(p, F_OK), -1);
    snprintf(p, sizeof p, "%s/rootfs/etc/os-release", bundle);
    assert_int_equal(access(p, F_OK), 0);
    res_container_share_free(&a);
    res_container_share_free(&b);
    oci_spec_destroy(&spec);
}

static void test_res_share_bad_arguments(void **state)
{
    (void)state;
    err_t err = ERR_INIT;
    res_container_share_t *cs = NULL;
    oci_spec_t *spec = spec_from("{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"}}");
    assert_int_equal(res_share_add_container("/tmp", "../x", spec, "/b", &cs, &err), -EINVAL);
    err_clear(&err);
    assert_int_equal(res_share_add_container("/tmp", "c", spec, "rel", &cs, &err), -EINVAL);
    err_clear(&err);
    assert_int_equal(res_share_add_container("/nonexistent-sb", "c", spec, "/b", &cs, &err),
                     -ENOENT);
    err_clear(&err);
    assert_int_equal(res_share_setup("relative", NULL, &err), -EINVAL);
    err_clear(&err);
    assert_int_equal(res_share_remove_container("/nonexistent-sb", "c", &err), 0);
    assert_int_equal(res_share_teardown("/nonexistent-sb", &err), 0);
    oci_spec_destroy(&spec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_res_share_setup_is_private_mount_and_idempotent),
        T(test_res_share_container_rootfs_and_binds),
        T(test_res_share_host_device_refused_unless_listed),
        T(test_res_share_missing_source_leaves_nothing),
        T(test_res_share_every_injected_failure_rolls_back),
        T(test_res_share_setup_failure_rolls_back),
        T(test_res_share_teardown_removes_containers),
        T(test_res_share_bad_arguments),
#undef T
    };
    return cmocka_run_group_tests_name("res_share", tests, NULL, NULL);
}
