/* qemu command line per configuration (x86_64 q35/pc/microvm, aarch64 virt). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hypervisors/qemu-internal.h"

static char **build(struct hv_config *c, enum hv_accel accel, int expect)
{
    struct hv_qemu_argv_in in = {
        .cfg = c, .accel = accel, .console_log = "/run/sb/console.log", .slot_dir = "/run/sb/fs"};
    char **argv = NULL;
    err_t err = ERR_INIT;
    int r = hv_qemu_build_argv(&in, &argv, &err);
    assert_int_equal(r, expect);
    if (expect < 0) {
        assert_non_null(err.msg);
        err_clear(&err);
        return NULL;
    }
    return argv;
}

/* Index of the option `opt` whose value is `val` (or any value if NULL). */
static int find_opt(char **argv, const char *opt, const char *val)
{
    for (int i = 0; argv[i] && argv[i + 1]; i++)
        if (!strcmp(argv[i], opt) && (!val || !strcmp(argv[i + 1], val)))
            return i;
    return -1;
}

static bool has_arg(char **argv, const char *a)
{
    for (int i = 0; argv[i]; i++)
        if (!strcmp(argv[i], a))
            return true;
    return false;
}

static bool has_prefix(char **argv, const char *opt, const char *prefix)
{
    for (int i = 0; argv[i] && argv[i + 1]; i++)
        if (!strcmp(argv[i], opt) && !strncmp(argv[i + 1], prefix, strlen(prefix)))
            return true;
    return false;
}

static void base_cfg(struct hv_config *c)
{
    hv_config_init(c);
    c->arch = HV_ARCH_X86_64;
    c->machine = "q35";
    c->id = "sb1";
    c->binary = "/usr/bin/qemu-system-x86_64";
    c->kernel = "/g/vmlinux";
    c->initrd = "/g/initrd.img";
    c->vcpus = 2;
    c->memory_mib = 256;
}

static void test_hv_qemu_q35_tcg_has_hardening_and_channels(void **s)
{
    struct hv_config c;
    base_cfg(&c);
    char **a = build(&c, HV_ACCEL_TCG, 0);
    assert_string_equal(a[0], "/usr/bin/qemu-system-x86_64");
    assert_true(has_arg(a, "-nodefaults"));
    assert_true(has_arg(a, "-no-user-config"));
    assert_true(has_arg(a, "-no-reboot"));
    assert_true(find_opt(a, "-display", "none") >= 0);
    assert_true(
        find_opt(a, "-sandbox",
                 "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny") >= 0);
    assert_true(find_opt(a, "-accel", "tcg") >= 0);
    assert_true(find_opt(a, "-cpu", NULL) < 0); /* default model under TCG */
    assert_true(find_opt(a, "-machine", "q35,smm=off,vmport=off") >= 0);
    assert_true(find_opt(a, "-m", "256M") >= 0);
    assert_true(find_opt(a, "-smp", "2") >= 0);
    assert_true(find_opt(a, "-kernel", "/g/vmlinux") >= 0);
    assert_true(find_opt(a, "-initrd", "/g/initrd.img") >= 0);
    assert_true(find_opt(a, "-chardev", "socket,id=qmp,fd=3,server=on,wait=off") >= 0);
    assert_true(find_opt(a, "-mon", "chardev=qmp,mode=control") >= 0);
    assert_true(find_opt(a, "-chardev", "socket,id=agent,fd=4,server=on,wait=off") >= 0);
    assert_true(find_opt(a, "-device", "virtio-serial-pci,id=vser0") >= 0);
    /* host entropy, or the guest's first getrandom() waits for jitter */
    assert_true(find_opt(a, "-object", "rng-builtin,id=rng0") >= 0);
    assert_true(find_opt(a, "-device", "virtio-rng-pci,rng=rng0") >= 0);
    assert_true(find_opt(a, "-device", "virtserialport,bus=vser0.0,chardev=agent,name=agent.0") >=
                0);
    assert_true(find_opt(a, "-chardev", "file,id=console,path=/run/sb/console.log") >= 0);
    assert_true(find_opt(a, "-serial", "chardev:console") >= 0);
    assert_true(find_opt(a, "-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=1") >= 0);
    assert_true(find_opt(a, "-device", "pcie-root-port,id=rp3,bus=pcie.0,chassis=4") >= 0);
    assert_true(find_opt(a, "-fsdev", "local,id=fsslot0,path=/run/sb/fs/0,security_model=none") >=
                0);
    assert_true(
        find_opt(a, "-fsdev",
                 "local,id=fsslot0ro,path=/run/sb/fs/0ro,security_model=none,readonly=on") >= 0);
    /* no network, no display, no -daemonize, not paused by default */
    assert_false(has_prefix(a, "-netdev", ""));
    assert_false(has_arg(a, "-daemonize"));
    assert_false(has_arg(a, "-S"));
    assert_false(has_arg(a, "-nographic"));
    int i = find_opt(a, "-append", NULL);
    assert_true(i >= 0);
    assert_non_null(strstr(a[i + 1], "console=ttyS0"));
    assert_non_null(strstr(a[i + 1], "cryptomgr.notests"));
    assert_non_null(strstr(a[i + 1], "tsc=reliable"));
    assert_non_null(strstr(a[i + 1], " quiet"));
    assert_non_null(strstr(a[i + 1], "initcall_blacklist=crypto_kdf108_init"));
    assert_null(strstr(a[i + 1], "tsc_early_khz"));
    hv_qemu_strv_free(&a);
}

static void test_hv_qemu_tsc_khz_appended_when_known(void **s)
{
    struct hv_config c;
    base_cfg(&c);
    c.machine = "microvm";
    struct hv_qemu_argv_in in = {.cfg = &c,
                                 .accel = HV_ACCEL_TCG,
                                 .console_log = "/c",
                                 .slot_dir = "/s",
                                 .tsc_khz = 2600000};
    char **a = NULL;
    assert_int_equal(hv_qemu_build_argv(&in, &a, NULL), 0);
    int i = find_opt(a, "-append", NULL);
    assert_non_null(strstr(a[i + 1], " tsc_early_khz=2600000"));
    hv_qemu_strv_free(&a);
    FILE *f = fopen("/tmp/test_hv_qemu.cpuinfo", "w");
    fputs("processor\t: 0\ncpu MHz\t\t: 2593.906\n", f);
    fclose(f);
    assert_int_equal(hv_qemu_host_tsc_khz("/tmp/test_hv_qemu.cpuinfo"), 2593906);
    unlink("/tmp/test_hv_qemu.cpuinfo");
    assert_int_equal(hv_qemu_host_tsc_khz("/nonexistent"), 0);
}

static void test_hv_qemu_kvm_uses_host_cpu(void **s)
{
    struct hv_config c;
    base_cfg(&c);
    char **a = build(&c, HV_ACCEL_KVM, 0);
    assert_true(find_opt(a, "-accel", "kvm") >= 0);
    assert_true(find_opt(a, "-cpu", "host") >= 0);
    hv_qemu_strv_free(&a);
}

static void test_hv_qemu_pc_has_no_root_ports(void **s)
{
    struct hv_config c;
    base_cfg(&c);
    c.machine = "pc";
    char **a = build(&c, HV_ACCEL_TCG, 0);
    assert_true(find_opt(a, "-machine", "pc,smm=off,vmport=off") >= 0);
    assert_false(has_prefix(a, "-device", "pcie-root-port"));
    assert_true(has_prefix(a, "-fsdev", "local,id=fsslot0,"));
    hv_qemu_strv_free(&a);
}

static void test_hv_qemu_microvm_uses_mmio_and_no_slots(void **s)
{
    struct hv_config c;
    base_cfg(&c);
    c.machine = "microvm";
    struct hv_share sh = {"/srv/share", "rootfs", true};
    c.shares = &sh;
    c.n_shares = 1;
    char **a = build(&c, HV_ACCEL_TCG, 0);
    assert_true(has_prefix(a, "-machine", "microvm,"));
    assert_true(find_opt(a, "-device", "virtio-serial-device,id=vser0") >= 0);
    assert_true(find_opt(a, "-device", "virtio-rng-device,rng=rng0") >= 0);
    assert_true(find_opt(a, "-fsdev",
                         "local,id=fs-rootfs,path=/srv/share,security_model=none,readonly=on") >=
                0);
    assert_true(find_opt(a, "-device",
                         "virtio-9p-device,id=share-rootfs,fsdev=fs-rootfs,mount_tag=rootfs") >= 0);
    assert_false(has_prefix(a, "-fsdev", "local,id=fsslot"));
    assert_false(has_prefix(a, "-device", "pcie-root-port"));
    hv_qemu_strv_free(&a);
}

static void test_hv_qemu_paused_debug_and_params(void **s)
{
    struct hv_config c;
    base_cfg(&c);
    c.start_paused = true;
    c.debug_console = true;
    c.kernel_params = "agent.log=debug";
    c.max_vcpus = 4;
    const char *extra[] = {"-trace", "virtio*", NULL};
    c.extra_args = extra;
    char **a = build(&c, HV_ACCEL_TCG, 0);
    assert_true(has_arg(a, "-S"));
    assert_true(find_opt(a, "-smp", "2,maxcpus=4") >= 0);
    int i = find_opt(a, "-append", NULL);
    assert_null(strstr(a[i + 1], "quiet"));
    assert_non_null(strstr(a[i + 1], " agent.log=debug"));
    assert_true(find_opt(a, "-trace", "virtio*") >= 0);
    hv_qemu_strv_free(&a);
}

static void test_hv_qemu_no_kernel_means_no_append(void **s)
{
    struct hv_config c;
    base_cfg(&c);
    c.kernel = NULL;
    c.initrd = NULL;
    char **a = build(&c, HV_ACCEL_TCG, 0);
    assert_true(find_opt(a, "-kernel", NULL) < 0);
    assert_true(find_opt(a, "-append", NULL) < 0);
    hv_qemu_strv_free(&a);
}

static void test_hv_qemu_comma_in_path_rejected(void **s)
{
    struct hv_config c;
    base_cfg(&c);
    struct hv_share sh = {"/srv/a,b", "tag", false};
    c.shares = &sh;
    c.n_shares = 1;
    build(&c, HV_ACCEL_TCG, -EINVAL);
    base_cfg(&c);
    c.kernel = "/g/vm,linux";
    build(&c, HV_ACCEL_TCG, -EINVAL);
}

static void test_hv_qemu_unknown_machine_rejected(void **s)
{
    struct hv_config c;
    base_cfg(&c);
    c.machine = "isapc";
    build(&c, HV_ACCEL_TCG, -EINVAL);
    c.machine = "virt"; /* aarch64 machine on x86_64 */
    build(&c, HV_ACCEL_TCG, -EINVAL);
}

static void test_hv_qemu_bad_sizes_rejected(void **s)
{
    struct hv_config c;
    base_cfg(&c);
    c.vcpus = 0;
    build(&c, HV_ACCEL_TCG, -EINVAL);
    base_cfg(&c);
    c.vcpus = 4;
    c.max_vcpus = 2;
    build(&c, HV_ACCEL_TCG, -EINVAL);
    base_cfg(&c);
    c.memory_mib = 8;
    build(&c, HV_ACCEL_TCG, -EINVAL);
    base_cfg(&c);
    c.fs_slots = 33;
    build(&c, HV_ACCEL_TCG, -EINVAL);
}

static void test_hv_qemu_arm64_virt_tcg(void **s)
{
    struct hv_config c;
    base_cfg(&c);
    c.arch = HV_ARCH_AARCH64;
    c.machine = "virt";
    c.binary = "qemu-system-aarch64";
    c.kernel = "/g/Image";
    char **a = build(&c, HV_ACCEL_TCG, 0);
    assert_string_equal(a[0], "qemu-system-aarch64");
    assert_true(find_opt(a, "-machine", "virt,gic-version=3") >= 0);
    assert_true(find_opt(a, "-cpu", "cortex-a57") >= 0);
    assert_true(find_opt(a, "-accel", "tcg") >= 0);
    assert_true(find_opt(a, "-device", "virtio-serial-pci,id=vser0") >= 0);
    assert_true(has_prefix(a, "-device", "pcie-root-port,id=rp0"));
    int i = find_opt(a, "-append", NULL);
    assert_non_null(strstr(a[i + 1], "console=ttyAMA0"));
    assert_null(strstr(a[i + 1], "ttyS0"));
    assert_null(strstr(a[i + 1], "i8042"));
    hv_qemu_strv_free(&a);
}

static void test_hv_qemu_arm64_virt_kvm(void **s)
{
    struct hv_config c;
    base_cfg(&c);
    c.arch = HV_ARCH_AARCH64;
    c.machine = "virt";
    char **a = build(&c, HV_ACCEL_KVM, 0);
    assert_true(find_opt(a, "-machine", "virt,gic-version=host") >= 0);
    assert_true(find_opt(a, "-cpu", "host") >= 0);
    hv_qemu_strv_free(&a);
    c.machine = "q35";
    build(&c, HV_ACCEL_KVM, -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hv_qemu_q35_tcg_has_hardening_and_channels),
        cmocka_unit_test(test_hv_qemu_kvm_uses_host_cpu),
        cmocka_unit_test(test_hv_qemu_tsc_khz_appended_when_known),
        cmocka_unit_test(test_hv_qemu_pc_has_no_root_ports),
        cmocka_unit_test(test_hv_qemu_microvm_uses_mmio_and_no_slots),
        cmocka_unit_test(test_hv_qemu_paused_debug_and_params),
        cmocka_unit_test(test_hv_qemu_no_kernel_means_no_append),
        cmocka_unit_test(test_hv_qemu_comma_in_path_rejected),
        cmocka_unit_test(test_hv_qemu_unknown_machine_rejected),
        cmocka_unit_test(test_hv_qemu_bad_sizes_rejected),
        cmocka_unit_test(test_hv_qemu_arm64_virt_tcg),
        cmocka_unit_test(test_hv_qemu_arm64_virt_kvm),
    };
    return cmocka_run_group_tests_name("hv_qemu", tests, NULL, NULL);
}
