/* Unit tests for agent/guest/cgroup: linux.resources in cgroup v2 terms.
 * The conversions are checked in a fake cgroup tree (plain files in a temp
 * directory: cgroup.controllers marks a cgroup directory, as the code
 * reads it); the host-mode skip, unified keys and join in a real cgroup2
 * subtree this test creates and removes (skipped where the host has no
 * writable cgroup2 mount). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

#include "agent/guest/container-internal.h"
#include "agent/guest/container.h"
#include "common/log.h"

static const char *leaf_files[] = {
    "memory.max",  "memory.low",  "memory.swap.max", "cpu.weight",     "cpu.max",
    "cpu.max.burst", "cpu.idle",  "cpuset.cpus",     "cpuset.mems",    "pids.max",
    "io.weight",   "hugetlb.2MB.max", "cgroup.procs", "memory.high",
};

struct tree {
    char root[128]; /* not a cgroup directory */
    char top[192];  /* root/top: the topmost cgroup directory */
    char pod[256];  /* top/pod */
    char leaf[320]; /* pod/c1, what apply is given */
};

static void write_str(const char *dir, const char *file, const char *s)
{
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(s, f);
    assert_int_equal(fclose(f), 0);
}

static char *read_str(const char *dir, const char *file, char *buf, size_t size)
{
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *f = fopen(p, "r");
    if (!f)
        fail_msg("open %s: %s", p, strerror(errno));
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* (Re)sets the fake tree: every file empty; controllers as given. */
static void tree_reset(struct tree *t, const char *controllers)
{
    mkdir(t->top, 0755);
    mkdir(t->pod, 0755);
    mkdir(t->leaf, 0755);
    const char *dirs[] = {t->top, t->pod};
    for (size_t i = 0; i < 2; i++) {
        write_str(dirs[i], "cgroup.controllers", controllers);
        write_str(dirs[i], "cgroup.subtree_control", "");
    }
    for (size_t i = 0; i < sizeof leaf_files / sizeof *leaf_files; i++)
        write_str(t->leaf, leaf_files[i], "");
}

static int setup(void **state)
{
    struct tree *t = calloc(1, sizeof *t);
    snprintf(t->root, sizeof t->root, "/tmp/husk-cgroup-test.XXXXXX");
    if (!mkdtemp(t->root)) {
        free(t);
        return -1;
    }
    snprintf(t->top, sizeof t->top, "%s/top", t->root);
    snprintf(t->pod, sizeof t->pod, "%s/pod", t->top);
    snprintf(t->leaf, sizeof t->leaf, "%s/c1", t->pod);
    tree_reset(t, "cpuset cpu io memory hugetlb pids");
    log_setup(2, LOG_FMT_LOGFMT, LOG_OFF);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct tree *t = *state;
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->root);
    int rc = system(cmd);
    container_cgroup_host_mode(false);
    free(t);
    return rc == 0 ? 0 : -1;
}

static oci_opt_int_t val(int64_t v)
{
    return (oci_opt_int_t){.set = true, .value = v};
}

/* Each refused setting names its field. */
static void test_cgroup_validate_refuses_what_v2_cannot_express(void **state)
{
    struct {
        oci_resources_t res;
        int code;
        const char *field;
    } cases[] = {
        {{.n_devices = 100000}, E2BIG, "devices"},
        {{.memory = {.swappiness = val(10)}}, ENOTSUP, "swappiness"},
        {{.memory = {.disable_oom_killer = val(1)}}, ENOTSUP, "disableOOMKiller"},
        {{.cpu = {.realtime_runtime = val(1)}}, ENOTSUP, "realtime"},
        {{.cpu = {.realtime_period = val(1)}}, ENOTSUP, "realtime"},
        {{.block_io = {.leaf_weight = val(100)}}, ENOTSUP, "leafWeight"},
        {{.block_io = {.has_device_rules = true}}, ENOTSUP, "per-device"},
        {{.has_network = true}, ENOTSUP, "network"},
        {{.has_rdma = true}, ENOTSUP, "rdma"},
        {{.memory = {.swap = val(1 << 20)}}, EINVAL, "without a memory limit"},
        {{.memory = {.limit = val(2 << 20), .swap = val(1 << 20)}}, EINVAL,
         "must be >= memory.limit"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const oci_resources_t *res = &cases[i].res;
        err_t err = ERR_INIT;
        assert_true(container_cgroup_validate(res, &err) < 0);
        assert_int_equal(err.code, cases[i].code);
        if (!strstr(err_str(&err), cases[i].field))
            fail_msg("case %zu: \"%s\" does not name %s", i, err_str(&err), cases[i].field);
        err_clear(&err);
        /* apply validates first: nothing is created */
        struct tree *t = *state;
        char dir[PATH_MAX + 16];
        snprintf(dir, sizeof dir, "%s/refused", t->pod);
        assert_true(container_cgroup_apply(dir, res, &err) < 0);
        assert_int_equal(err.code, cases[i].code);
        err_clear(&err);
        assert_int_equal(access(dir, F_OK), -1);
    }
    err_t err = ERR_INIT;
    oci_resources_t ok = {.memory = {.limit = val(1 << 20), .swap = val(-1)}};
    assert_int_equal(container_cgroup_validate(&ok, &err), 0);
    assert_int_equal(container_cgroup_validate(NULL, &err), 0);
}

/* runc's conversions, one setting at a time: the file written, its value,
 * and the controller enabled in every ancestor cgroup, top-down. */
static void test_cgroup_apply_converts_as_runc(void **state)
{
    struct tree *t = *state;
    static oci_hugepage_limit_t huge[] = {{.page_size = "2MB", .limit = 4 << 20}};
    static oci_kv_t unified[] = {{.key = "memory.high", .value = "12345"}};
    struct {
        oci_resources_t res;
        const char *file, *want, *ctrl;
    } cases[] = {
        {{.memory = {.limit = val(64 << 20)}}, "memory.max", "67108864", "memory"},
        {{.memory = {.limit = val(-1)}}, "memory.max", "max", "memory"},
        {{.memory = {.reservation = val(1 << 20)}}, "memory.low", "1048576", "memory"},
        /* swap is memory+swap in OCI, swap alone in v2 */
        {{.memory = {.limit = val(64 << 20), .swap = val(96 << 20)}},
         "memory.swap.max",
         "33554432",
         "memory"},
        {{.memory = {.limit = val(64 << 20), .swap = val(-1)}}, "memory.swap.max", "max", "memory"},
        /* shares 2..262144 -> weight 1..10000, clamped */
        {{.cpu = {.shares = val(1024)}}, "cpu.weight", "39", "cpu"},
        {{.cpu = {.shares = val(1)}}, "cpu.weight", "1", "cpu"},
        {{.cpu = {.shares = val(1 << 20)}}, "cpu.weight", "10000", "cpu"},
        {{.cpu = {.quota = val(50000), .period = val(200000)}}, "cpu.max", "50000 200000", "cpu"},
        {{.cpu = {.quota = val(-1)}}, "cpu.max", "max 100000", "cpu"},
        {{.cpu = {.period = val(250000)}}, "cpu.max", "max 250000", "cpu"},
        {{.cpu = {.burst = val(1000)}}, "cpu.max.burst", "1000", "cpu"},
        {{.cpu = {.idle = val(1)}}, "cpu.idle", "1", "cpu"},
        {{.cpu = {.cpus = "0-1"}}, "cpuset.cpus", "0-1", "cpuset"},
        {{.cpu = {.mems = "0"}}, "cpuset.mems", "0", "cpuset"},
        {{.pids_limit = val(100)}, "pids.max", "100", "pids"},
        {{.pids_limit = val(-1)}, "pids.max", "max", "pids"},
        /* weight 10..1000 -> 1..10000 */
        {{.block_io = {.weight = val(10)}}, "io.weight", "1", "io"},
        {{.block_io = {.weight = val(1000)}}, "io.weight", "10000", "io"},
        {{.block_io = {.weight = val(500)}}, "io.weight", "4950", "io"},
        {{.hugepage_limits = huge, .n_hugepage_limits = 1}, "hugetlb.2MB.max", "4194304", "hugetlb"},
        {{.unified = unified, .n_unified = 1}, "memory.high", "12345", NULL},
    };
    char buf[128], want_ctrl[32];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tree_reset(t, "cpuset cpu io memory hugetlb pids");
        err_t err = ERR_INIT;
        if (container_cgroup_apply(t->leaf, &cases[i].res, &err) < 0)
            fail_msg("case %zu (%s): %s", i, cases[i].file, err_str(&err));
        if (strcmp(read_str(t->leaf, cases[i].file, buf, sizeof buf), cases[i].want))
            fail_msg("case %zu: %s is \"%s\", want \"%s\"", i, cases[i].file, buf, cases[i].want);
        snprintf(want_ctrl, sizeof want_ctrl, "+%s", cases[i].ctrl ? cases[i].ctrl : "");
        if (!cases[i].ctrl)
            want_ctrl[0] = 0;
        assert_string_equal(read_str(t->top, "cgroup.subtree_control", buf, sizeof buf), want_ctrl);
        assert_string_equal(read_str(t->pod, "cgroup.subtree_control", buf, sizeof buf), want_ctrl);
    }
    /* shares 0 means "unset", as in runc: no controller, no file */
    tree_reset(t, "cpu");
    oci_resources_t zero = {.cpu = {.shares = val(0)}};
    err_t err = ERR_INIT;
    assert_int_equal(container_cgroup_apply(t->leaf, &zero, &err), 0);
    assert_string_equal(read_str(t->leaf, "cpu.weight", buf, sizeof buf), "");
    assert_string_equal(read_str(t->top, "cgroup.subtree_control", buf, sizeof buf), "");
}

/* Parents are created; no resources means only the directory. */
static void test_cgroup_apply_creates_the_directory(void **state)
{
    struct tree *t = *state;
    char dir[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/new/deeper/c2", t->pod);
    err_t err = ERR_INIT;
    assert_int_equal(container_cgroup_apply(dir, NULL, &err), 0);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));

    /* a path that cannot be created says which */
    char file_parent[PATH_MAX + 32];
    snprintf(file_parent, sizeof file_parent, "%s/cgroup.controllers/c3", t->pod);
    assert_true(container_cgroup_apply(file_parent, NULL, &err) < 0);
    assert_int_equal(err.code, ENOTDIR);
    assert_non_null(strstr(err_str(&err), "mkdir"));
    err_clear(&err);

    char longp[PATH_MAX + 16];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = 0;
    assert_true(container_cgroup_apply(longp, NULL, &err) < 0);
    assert_int_equal(err.code, ENAMETOOLONG);
    err_clear(&err);
}

/* A controller the hierarchy lacks: an error in a VM (the write to
 * subtree_control fails there), skipped with its files left alone on a host. */
static void test_cgroup_apply_missing_controller(void **state)
{
    struct tree *t = *state;
    oci_resources_t res = {.pids_limit = val(10), .memory = {.limit = val(1 << 20)}};
    char buf[64];

    /* host mode: pids is not offered, memory is */
    tree_reset(t, "memory");
    container_cgroup_host_mode(true);
    err_t err = ERR_INIT;
    assert_int_equal(container_cgroup_apply(t->leaf, &res, &err), 0);
    assert_string_equal(read_str(t->leaf, "pids.max", buf, sizeof buf), "");
    assert_string_equal(read_str(t->leaf, "memory.max", buf, sizeof buf), "1048576");

    /* a file that cannot be written is an error naming it (here: a leaf
     * without pids.max, as a kernel without the controller has) */
    container_cgroup_host_mode(false);
    tree_reset(t, "memory pids");
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/pids.max", t->leaf);
    assert_int_equal(unlink(p), 0);
    assert_true(container_cgroup_apply(t->leaf, &res, &err) < 0);
    assert_int_equal(err.code, ENOENT);
    assert_non_null(strstr(err_str(&err), "pids.max"));
    err_clear(&err);

    /* enabling fails: the error says which controller */
    tree_reset(t, "memory pids");
    snprintf(p, sizeof p, "%s/cgroup.subtree_control", t->top);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(mkdir(p, 0755), 0); /* opening a directory for writing fails, even as root */
    assert_true(container_cgroup_apply(t->leaf, &res, &err) < 0);
    assert_non_null(strstr(err_str(&err), "enable controller memory"));
    err_clear(&err);
    assert_int_equal(rmdir(p), 0);
}

/* ---- a real cgroup2 subtree ----------------------------------------------------- */

/* The cgroup2 mount point (unified or hybrid), or NULL. */
static const char *cgroup2_mount(char *buf, size_t size)
{
    FILE *f = fopen("/proc/self/mounts", "re");
    if (!f)
        return NULL;
    char dev[256], dir[PATH_MAX], type[64];
    const char *found = NULL;
    while (!found && fscanf(f, "%255s %4095s %63s %*[^\n]", dev, dir, type) == 3)
        if (!strcmp(type, "cgroup2")) {
            snprintf(buf, size, "%s", dir);
            found = buf;
        }
    fclose(f);
    return found;
}

/* Our own cgroup2 directory (the "0::" line). */
static bool own_cgroup(const char *mnt, char *buf, size_t size)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return false;
    char line[PATH_MAX + 16];
    bool ok = false;
    while (!ok && fgets(line, sizeof line, f))
        if (!strncmp(line, "0::", 3)) {
            line[strcspn(line, "\n")] = 0;
            ok = snprintf(buf, size, "%s%s", mnt, strcmp(line + 3, "/") ? line + 3 : "") <
                 (int)size;
        }
    fclose(f);
    return ok;
}

static void test_cgroup_real_subtree_apply_and_join(void **state)
{
    (void)state;
    char mnt[PATH_MAX], own[PATH_MAX];
    if (!cgroup2_mount(mnt, sizeof mnt) || !own_cgroup(mnt, own, sizeof own)) {
        print_message("no cgroup2 mount: skipped\n");
        skip();
    }
    char parent[PATH_MAX + 64], leaf[PATH_MAX + 96];
    snprintf(parent, sizeof parent, "%s/husk-unit-cgroup.%d", own, (int)getpid());
    snprintf(leaf, sizeof leaf, "%s/c1", parent);
    if (mkdir(parent, 0755) < 0) {
        print_message("cannot create a cgroup under %s (%s): skipped\n", own, strerror(errno));
        skip();
    }
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        pause();
        _exit(0);
    }
    /* a unified key only: no controller is enabled, so no cgroup but ours
     * is written (on a pure v2 host ours may hold processes) */
    oci_kv_t unified[] = {{.key = "cgroup.max.descendants", .value = "7"}};
    oci_resources_t res = {.unified = unified, .n_unified = 1};
    err_t err = ERR_INIT;
    int r = container_cgroup_apply(leaf, &res, &err);
    int r_join = r < 0 ? -1 : container_cgroup_join(leaf, child, &err);
    char buf[64] = "", procs[PATH_MAX + 32] = "", want[PATH_MAX + 32];
    if (r == 0) {
        read_str(leaf, "cgroup.max.descendants", buf, sizeof buf);
        snprintf(want, sizeof want, "/proc/%d/cgroup", (int)child);
        FILE *f = fopen(want, "re");
        while (f && fgets(procs, sizeof procs, f) && strncmp(procs, "0::", 3))
            ;
        if (f)
            fclose(f);
        procs[strcspn(procs, "\n")] = 0;
    }
    /* clean up before asserting: the child leaves the cgroup when it dies */
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    rmdir(leaf);
    int rm = rmdir(parent);
    if (r < 0 || r_join < 0)
        fail_msg("apply/join in %s: %s", leaf, err_str(&err));
    assert_int_equal(rm, 0);
    assert_string_equal(buf, "7\n");
    snprintf(want, sizeof want, "0::%s/c1", parent + strlen(mnt));
    assert_string_equal(procs, want);

    /* joining a cgroup that is gone says where */
    assert_true(container_cgroup_join(leaf, getpid(), &err) < 0);
    assert_int_equal(err.code, ENOENT);
    assert_non_null(strstr(err_str(&err), "cgroup.procs"));
    err_clear(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cgroup_validate_refuses_what_v2_cannot_express,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_apply_converts_as_runc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_apply_creates_the_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_apply_missing_controller, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_real_subtree_apply_and_join, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
