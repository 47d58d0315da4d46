/* Unit tests for agent/guest/devfilter: the device cgroup rules as an eBPF
 * program.  The emitted program is run by a small interpreter of the few
 * instructions it uses (any other instruction fails the test), so the
 * decisions are checked without a kernel; one test loads it into the
 * kernel's verifier when this host allows it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/guest/devfilter.h"

/* Runs insns on the context { access << 16 | type, major, minor }. */
static int run(const struct bpf_insn *insns, size_t n, int type, unsigned access, uint32_t major,
               uint32_t minor)
{
    uint32_t ctx[3] = {(access << 16) | (uint32_t)type, major, minor};
    uint64_t r[11] = {0};
    size_t pc = 0, steps = 0;
    while (pc < n) {
        if (++steps > 100000)
            fail_msg("program does not end");
        const struct bpf_insn *i = &insns[pc++];
        switch (i->code) {
        case BPF_LDX | BPF_MEM | BPF_W:
            assert_int_equal(i->src_reg, 1);
            assert_true(i->off >= 0 && i->off <= 8 && i->off % 4 == 0);
            r[i->dst_reg] = ctx[i->off / 4];
            break;
        case BPF_ALU64 | BPF_MOV | BPF_X:
            r[i->dst_reg] = r[i->src_reg];
            break;
        case BPF_ALU64 | BPF_MOV | BPF_K:
            r[i->dst_reg] = (uint64_t)(int64_t)i->imm;
            break;
        case BPF_ALU64 | BPF_AND | BPF_K:
            r[i->dst_reg] &= (uint64_t)(int64_t)i->imm;
            break;
        case BPF_ALU64 | BPF_RSH | BPF_K:
            r[i->dst_reg] >>= i->imm;
            break;
        case BPF_JMP | BPF_JNE | BPF_K:
            if (r[i->dst_reg] != (uint64_t)(int64_t)i->imm)
                pc += (size_t)i->off;
            break;
        case BPF_JMP | BPF_JEQ | BPF_K:
            if (r[i->dst_reg] == (uint64_t)(int64_t)i->imm)
                pc += (size_t)i->off;
            break;
        case BPF_JMP | BPF_JA:
            pc += (size_t)i->off;
            break;
        case BPF_JMP | BPF_EXIT:
            return (int)r[0];
        default:
            fail_msg("unexpected instruction %#x at %zu", i->code, pc - 1);
        }
        assert_true(pc <= n);
    }
    fail_msg("ran off the end of the program");
    return -1;
}

#define C  BPF_DEVCG_DEV_CHAR
#define B  BPF_DEVCG_DEV_BLOCK
#define M  DEVFILTER_MKNOD
#define R  DEVFILTER_READ
#define W  DEVFILTER_WRITE
#define RW (R | W)

static oci_device_rule_t rule(bool allow, const char *type, int64_t major, int64_t minor,
                              const char *access)
{
    oci_device_rule_t d = {.allow = allow, .type = (char *)type, .access = (char *)access};
    if (major != -2)
        d.major = (oci_opt_int_t){.set = true, .value = major};
    if (minor != -2)
        d.minor = (oci_opt_int_t){.set = true, .value = minor};
    return d;
}
#define ANY (-2) /* field absent */

struct prog {
    struct bpf_insn *insns;
    size_t n;
};

static struct prog build(const oci_device_rule_t *rules, size_t n)
{
    struct prog p = {0};
    err_t err = ERR_INIT;
    if (devfilter_build(rules, n, &p.insns, &p.n, &err) < 0)
        fail_msg("build: %s", err_str(&err));
    return p;
}

static void test_devfilter_deny_all_keeps_defaults(void **state)
{
    oci_device_rule_t rules[] = {rule(false, NULL, ANY, ANY, "rwm")};
    struct prog p = build(rules, 1);
    assert_int_equal(run(p.insns, p.n, C, RW, 1, 3), 1);    /* null */
    assert_int_equal(run(p.insns, p.n, C, RW, 136, 7), 1);  /* a pts */
    assert_int_equal(run(p.insns, p.n, C, RW, 5, 2), 1);    /* ptmx */
    assert_int_equal(run(p.insns, p.n, C, M, 240, 77), 1);  /* mknod of anything */
    assert_int_equal(run(p.insns, p.n, B, M, 8, 0), 1);
    assert_int_equal(run(p.insns, p.n, C, R, 240, 77), 0);  /* but no open */
    assert_int_equal(run(p.insns, p.n, B, RW, 8, 0), 0);
    assert_int_equal(run(p.insns, p.n, C, RW, 10, 229), 0); /* fuse */
    assert_int_equal(run(p.insns, p.n, C, RW, 1, 1), 0);    /* mem */
    free(p.insns);
}

static void test_devfilter_allow_after_deny_opens_one_device(void **state)
{
    oci_device_rule_t rules[] = {rule(false, "a", ANY, ANY, NULL),
                                 rule(true, "c", 240, 77, "r")};
    struct prog p = build(rules, 2);
    assert_int_equal(run(p.insns, p.n, C, R, 240, 77), 1);
    assert_int_equal(run(p.insns, p.n, C, RW, 240, 77), 0); /* w is not allowed */
    assert_int_equal(run(p.insns, p.n, C, W, 240, 77), 0);
    assert_int_equal(run(p.insns, p.n, C, R, 240, 78), 0);
    assert_int_equal(run(p.insns, p.n, B, R, 240, 77), 0); /* a block device of those numbers */
    free(p.insns);
}

static void test_devfilter_wildcard_minor_and_split_access(void **state)
{
    /* r and w granted by two rules: "rw" is allowed, as cgroup v1 merges them */
    oci_device_rule_t rules[] = {rule(false, NULL, ANY, ANY, "rwm"), rule(true, "c", 240, -1, "r"),
                                 rule(true, "c", 240, ANY, "w")};
    struct prog p = build(rules, 3);
    assert_int_equal(run(p.insns, p.n, C, RW, 240, 1), 1);
    assert_int_equal(run(p.insns, p.n, C, RW, 240, 99999), 1);
    assert_int_equal(run(p.insns, p.n, C, RW, 241, 1), 0);
    free(p.insns);
}

static void test_devfilter_no_deny_rule_allows_all(void **state)
{
    /* no "a" deny: the default is allow, a later deny closes one device */
    oci_device_rule_t rules[] = {rule(false, "c", 240, 77, "w")};
    struct prog p = build(rules, 1);
    assert_int_equal(run(p.insns, p.n, C, R, 240, 77), 1);
    assert_int_equal(run(p.insns, p.n, C, RW, 240, 77), 0);
    assert_int_equal(run(p.insns, p.n, B, RW, 8, 1), 1);
    free(p.insns);
}

static void test_devfilter_last_rule_wins(void **state)
{
    /* the default allowed null cannot be denied by an earlier rule, as runc */
    oci_device_rule_t rules[] = {rule(false, NULL, ANY, ANY, "rwm"), rule(true, "c", 240, 1, "rw"),
                                 rule(false, "c", 240, 1, "w")};
    struct prog p = build(rules, 3);
    assert_int_equal(run(p.insns, p.n, C, R, 240, 1), 1);
    assert_int_equal(run(p.insns, p.n, C, W, 240, 1), 0);
    free(p.insns);
    oci_device_rule_t deny_null[] = {rule(false, "c", 1, 3, "rwm")};
    p = build(deny_null, 1);
    assert_int_equal(run(p.insns, p.n, C, RW, 1, 3), 1);
    free(p.insns);
}

static void test_devfilter_bad_rule_refused(void **state)
{
    struct bpf_insn *insns = NULL;
    size_t n = 0;
    err_t err = ERR_INIT;
    oci_device_rule_t bad[] = {rule(true, "x", ANY, ANY, NULL)};
    assert_int_equal(devfilter_build(bad, 1, &insns, &n, &err), -EINVAL);
    assert_non_null(strstr(err_str(&err), "linux.resources.devices[0].type"));
    err_clear(&err);
    oci_device_rule_t bad_access[] = {rule(true, "c", ANY, ANY, "rx")};
    assert_int_equal(devfilter_build(bad_access, 1, &insns, &n, &err), -EINVAL);
    assert_non_null(strstr(err_str(&err), "access"));
    err_clear(&err);
    assert_null(insns);
}

/* The kernel's verifier accepts the program (skipped where this process may
 * not load BPF programs). */
static void test_devfilter_kernel_verifier_accepts(void **state)
{
    oci_device_rule_t rules[] = {rule(false, NULL, ANY, ANY, "rwm"), rule(true, "c", 240, -1, "rw"),
                                 rule(false, "b", 8, ANY, "m")};
    struct prog p = build(rules, 3);
    static char log[65536];
    union bpf_attr a = {0};
    a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    a.insns = (uint64_t)(uintptr_t)p.insns;
    a.insn_cnt = (uint32_t)p.n;
    a.license = (uint64_t)(uintptr_t) "GPL";
    a.log_buf = (uint64_t)(uintptr_t)log;
    a.log_size = sizeof log;
    a.log_level = 1;
    int fd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof a);
    int e = errno;
    free(p.insns);
    if (fd < 0 && (e == EPERM || e == ENOSYS))
        skip();
    if (fd < 0)
        fail_msg("the verifier refused the program: %s\n%s", strerror(e), log);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_devfilter_deny_all_keeps_defaults),
        cmocka_unit_test(test_devfilter_allow_after_deny_opens_one_device),
        cmocka_unit_test(test_devfilter_wildcard_minor_and_split_access),
        cmocka_unit_test(test_devfilter_no_deny_rule_allows_all),
        cmocka_unit_test(test_devfilter_last_rule_wins),
        cmocka_unit_test(test_devfilter_bad_rule_refused),
        cmocka_unit_test(test_devfilter_kernel_verifier_accepts),
    };
    return cmocka_run_group_tests_name("agent_devfilter", tests, NULL, NULL);
}
