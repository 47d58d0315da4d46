/* Unit tests for resources/cgroup_host: pure v2 and hybrid layouts on a
 * fake tree (plain files), skipped parts reported, removal waiting for the
 * cgroup to empty, and the real host hierarchy when root can write it. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "resources/cgroup_host.h"

static char top[128];

static void put(const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", top, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void dir(const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", top, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static char *get(const char *rel)
{
    static char buf[4096];
    char p[512];
    snprintf(p, sizeof p, "%s/%s", top, rel);
    FILE *f = fopen(p, "r");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static bool there(const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", top, rel);
    return access(p, F_OK) == 0;
}

static int setup(void **state)
{
    (void)state;
    snprintf(top, sizeof top, "/tmp/husk-test-cgroup.XXXXXX");
    return mkdtemp(top) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
    return system(cmd) == 0 ? 0 : -1;
}

static const res_cgroup_limits_t lim = {
    .memory_bytes = 300 << 20, .cpu_quota_us = 150000, .cpu_period_us = 100000};

static void test_res_cgroup_v2_fake_tree(void **state)
{
    (void)state;
    put("cgroup.controllers", "cpuset cpu io memory pids\n");
    put("cgroup.subtree_control", "");
    res_cgroup_opts_t o = {.fs_root = top, .parent = "husk/pods"};
    res_cgroup_t *cg = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(res_cgroup_create(&o, "s1", &lim, &cg, &err), 0);
    assert_string_equal(res_cgroup_mode(cg), "v2");
    size_t n = 0, nw = 0;
    const char *const *paths = res_cgroup_paths(cg, &n);
    assert_int_equal(n, 1);
    char want[256];
    snprintf(want, sizeof want, "%s/husk/pods/s1", top);
    assert_string_equal(paths[0], want);
    res_cgroup_warnings(cg, &nw);
    assert_int_equal(nw, 0);
    /* Controllers enabled down the chain (the last write was +cpu). */
    assert_string_equal(get("cgroup.subtree_control"), "+cpu");
    assert_string_equal(get("husk/cgroup.subtree_control"), "+cpu");
    assert_string_equal(get("husk/pods/cgroup.subtree_control"), "+cpu");
    assert_string_equal(get("husk/pods/s1/memory.max"), "314572800");
    assert_string_equal(get("husk/pods/s1/cpu.max"), "150000 100000");

    assert_int_equal(res_cgroup_add_pid(cg, 4321, &err), 0);
    assert_string_equal(get("husk/pods/s1/cgroup.procs"), "4321");
    assert_int_equal(res_cgroup_remove(cg, 50, &err), -EBUSY);
    assert_non_null(strstr(err_str(&err), "still holds processes 4321"));
    err_clear(&err);
    put("husk/pods/s1/cgroup.procs", "");
    assert_int_equal(res_cgroup_remove(cg, 50, &err), 0);
    assert_false(there("husk/pods/s1"));
    assert_true(there("husk/pods")); /* the parent stays */
    res_cgroup_destroy(&cg);
    assert_null(cg);
    res_cgroup_destroy(&cg);
}

static void test_res_cgroup_hybrid_fake_tree_uses_v1_controllers(void **state)
{
    (void)state;
    dir("memory");
    put("memory/memory.limit_in_bytes", "");
    dir("cpu,cpuacct");
    put("cpu,cpuacct/cpu.cfs_quota_us", "");
    dir("unified");
    put("unified/cgroup.controllers", ""); /* v1 owns every controller */
    res_cgroup_t *cg = NULL;
    err_t err = ERR_INIT;
    res_cgroup_opts_t o = {.fs_root = top};
    assert_int_equal(res_cgroup_create(&o, "s2", &lim, &cg, &err), 0);
    assert_string_equal(res_cgroup_mode(cg), "hybrid");
    size_t n = 0, nw = 0;
    res_cgroup_paths(cg, &n);
    assert_int_equal(n, 3);
    res_cgroup_warnings(cg, &nw);
    assert_int_equal(nw, 0);
    assert_string_equal(get("memory/husk/s2/memory.limit_in_bytes"), "314572800");
    assert_string_equal(get("cpu,cpuacct/husk/s2/cpu.cfs_period_us"), "100000");
    assert_string_equal(get("cpu,cpuacct/husk/s2/cpu.cfs_quota_us"), "150000");
    assert_true(there("unified/husk/s2"));
    assert_false(there("unified/husk/s2/memory.max"));
    assert_int_equal(res_cgroup_add_pid(cg, 77, &err), 0);
    assert_string_equal(get("unified/husk/s2/cgroup.procs"), "77");
    assert_string_equal(get("memory/husk/s2/cgroup.procs"), "77");

    /* Twice is refused; open finds it. */
    res_cgroup_t *again = NULL;
    assert_int_equal(res_cgroup_create(&o, "s2", &lim, &again, &err), -EEXIST);
    err_clear(&err);
    assert_int_equal(res_cgroup_open(&o, "s2", &again, &err), 0);
    res_cgroup_paths(again, &n);
    assert_int_equal(n, 3);
    put("memory/husk/s2/cgroup.procs", "");
    put("cpu,cpuacct/husk/s2/cgroup.procs", "");
    put("unified/husk/s2/cgroup.procs", "");
    assert_int_equal(res_cgroup_remove(again, 0, &err), 0);
    assert_false(there("memory/husk/s2"));
    assert_false(there("unified/husk/s2"));
    res_cgroup_destroy(&again);
    res_cgroup_destroy(&cg);
    assert_int_equal(res_cgroup_open(&o, "s2", &again, &err), -ENOENT);
    err_clear(&err);
}

static void test_res_cgroup_skipped_parts_are_reported(void **state)
{
    (void)state;
    /* v2 without the memory controller. */
    put("cgroup.controllers", "cpu pids\n");
    res_cgroup_t *cg = NULL;
    err_t err = ERR_INIT;
    res_cgroup_opts_t o = {.fs_root = top};
    assert_int_equal(res_cgroup_create(&o, "s3", &lim, &cg, &err), 0);
    size_t nw = 0;
    const char *const *w = res_cgroup_warnings(cg, &nw);
    assert_int_equal(nw, 1);
    assert_string_equal(w[0], "memory limit not applied: no memory controller available");
    assert_string_equal(get("husk/s3/cpu.max"), "150000 100000");
    assert_int_equal(res_cgroup_remove(cg, 0, &err), 0);
    res_cgroup_destroy(&cg);
}

static void test_res_cgroup_unwritable_hierarchy_skipped(void **state)
{
    (void)state;
    dir("memory");
    put("memory/memory.limit_in_bytes", "");
    put("memory/husk", "a file where the parent should be");
    dir("unified");
    put("unified/cgroup.controllers", "memory\n");
    res_cgroup_t *cg = NULL;
    err_t err = ERR_INIT;
    res_cgroup_opts_t o = {.fs_root = top};
    assert_int_equal(res_cgroup_create(&o, "s4", &lim, &cg, &err), 0);
    size_t n = 0, nw = 0;
    res_cgroup_paths(cg, &n);
    assert_int_equal(n, 1); /* only unified */
    const char *const *w = res_cgroup_warnings(cg, &nw);
    assert_true(nw >= 1);
    assert_non_null(strstr(w[0], "cgroup v1 hierarchy"));
    assert_non_null(strstr(w[0], "skipped"));
    /* v2 took the memory limit the v1 hierarchy could not. */
    assert_string_equal(get("unified/husk/s4/memory.max"), "314572800");
    assert_int_equal(res_cgroup_remove(cg, 0, &err), 0);
    res_cgroup_destroy(&cg);

    /* Nothing writable at all: an error. */
    put("memory/husk2", "file");
    put("unified/husk2", "file");
    res_cgroup_opts_t o2 = {.fs_root = top, .parent = "husk2"};
    assert_true(res_cgroup_create(&o2, "s5", &lim, &cg, &err) < 0);
    assert_non_null(strstr(err_str(&err), "no hierarchy is writable"));
    err_clear(&err);
}

static void test_res_cgroup_bad_arguments(void **state)
{
    (void)state;
    put("cgroup.controllers", "memory\n");
    res_cgroup_t *cg = NULL;
    err_t err = ERR_INIT;
    const char *bad_parents[] = {"/abs", "../up", "a/../b", "a//b", ""};
    for (size_t i = 0; i < sizeof bad_parents / sizeof bad_parents[0]; i++) {
        res_cgroup_opts_t o = {.fs_root = top, .parent = bad_parents[i]};
        assert_int_equal(res_cgroup_create(&o, "s", NULL, &cg, &err), -EINVAL);
        err_clear(&err);
    }
    res_cgroup_opts_t o = {.fs_root = top};
    assert_int_equal(res_cgroup_create(&o, "a/b", NULL, &cg, &err), -EINVAL);
    err_clear(&err);
    res_cgroup_opts_t none = {.fs_root = "/nonexistent-cgroup-root"};
    assert_int_equal(res_cgroup_create(&none, "s", NULL, &cg, &err), -ENOENT);
    assert_non_null(strstr(err_str(&err), "no cgroup hierarchy found"));
    err_clear(&err);
}

static void test_res_cgroup_limits_from_spec(void **state)
{
    (void)state;
    const char *j = "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"r\"},\"linux\":{"
                    "\"resources\":{\"memory\":{\"limit\":1048576},\"cpu\":{\"quota\":20000}}}}";
    oci_spec_t *s = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(oci_spec_parse(j, strlen(j), &s, &err), 0);
    res_cgroup_limits_t l;
    res_cgroup_limits_from_spec(s, 1000, &l);
    assert_int_equal(l.memory_bytes, 1048576 + 1000);
    assert_int_equal(l.cpu_quota_us, 20000);
    assert_int_equal(l.cpu_period_us, RES_CGROUP_DEFAULT_PERIOD);
    oci_spec_destroy(&s);
    res_cgroup_limits_from_spec(NULL, 1000, &l);
    assert_int_equal(l.memory_bytes, 0);
    assert_int_equal(l.cpu_quota_us, 0);
}

/* The real hierarchy of this host, when root may write it. */
static void test_res_cgroup_real_host(void **state)
{
    (void)state;
    if (geteuid() != 0 || access(RES_CGROUP_FS_ROOT, W_OK) != 0)
        skip();
    char parent[64];
    snprintf(parent, sizeof parent, "husk-test-%d", (int)getpid());
    res_cgroup_opts_t o = {.parent = parent};
    res_cgroup_t *cg = NULL;
    err_t err = ERR_INIT;
    if (res_cgroup_create(&o, "real", &lim, &cg, &err) < 0) {
        fprintf(stderr, "skip: %s\n", err_str(&err));
        err_clear(&err);
        skip();
    }
    size_t n = 0, nw = 0;
    const char *const *paths = res_cgroup_paths(cg, &n);
    const char *const *w = res_cgroup_warnings(cg, &nw);
    fprintf(stderr, "# mode %s, %zu hierarchies, %zu warnings\n", res_cgroup_mode(cg), n, nw);
    for (size_t i = 0; i < nw; i++)
        fprintf(stderr, "#   warning: %s\n", w[i]);
    assert_true(n >= 1);
    for (size_t i = 0; i < n; i++) {
        char lp[512], v[64] = "";
        snprintf(lp, sizeof lp, "%s/memory.limit_in_bytes", paths[i]);
        FILE *lf = fopen(lp, "r");
        if (!lf)
            continue;
        if (fgets(v, sizeof v, lf))
            assert_string_equal(v, "314572800\n"); /* v1 memory, applied */
        fclose(lf);
    }

    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    assert_int_equal(res_cgroup_add_pid(cg, child, &err), 0);
    char p[128], line[4096], needle[128];
    snprintf(p, sizeof p, "/proc/%d/cgroup", (int)child);
    snprintf(needle, sizeof needle, "/%s/real", parent);
    FILE *f = fopen(p, "r");
    int hits = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            hits++;
    fclose(f);
    assert_int_equal(hits, (int)n);
    assert_int_equal(res_cgroup_remove(cg, 50, &err), -EBUSY);
    err_clear(&err);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    assert_int_equal(res_cgroup_remove(cg, 2000, &err), 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(access(paths[i], F_OK), -1);
        char par[512];
        snprintf(par, sizeof par, "%s", paths[i]);
        *strrchr(par, '/') = '\0';
        rmdir(par);
    }
    res_cgroup_destroy(&cg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_res_cgroup_v2_fake_tree),
        T(test_res_cgroup_hybrid_fake_tree_uses_v1_controllers),
        T(test_res_cgroup_skipped_parts_are_reported),
        T(test_res_cgroup_unwritable_hierarchy_skipped),
        T(test_res_cgroup_bad_arguments),
        T(test_res_cgroup_limits_from_spec),
        T(test_res_cgroup_real_host),
#undef T
    };
    return cmocka_run_group_tests_name("res_cgroup", tests, NULL, NULL);
}
