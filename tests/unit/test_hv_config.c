/* common/config: parsing, validation errors, resolution and overrides. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/log.h"
#include "hypervisors/hv.h"

static char dir[64];

static int setup(void **s)
{
    snprintf(dir, sizeof(dir), "/tmp/test_cfg.XXXXXX");
    assert_non_null(mkdtemp(dir));
    unsetenv("HUSK_CONFIG");
    unsetenv("HUSK_HYPERVISOR");
    return 0;
}

static int teardown(void **s)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *write_conf(const char *name, const char *text)
{
    static char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    return p;
}

/* Parses text into a defaults config; returns the result code. */
static int parse(const char *text, cfg_t **out, err_t *err)
{
    *out = cfg_new_defaults("/nonexistent/bin/husk");
    assert_non_null(*out);
    return cfg_parse_string(*out, text, "husk.conf", err);
}

static void test_cfg_defaults(void **s)
{
    cfg_t *c = cfg_new_defaults("/nonexistent/bin/husk");
    assert_string_equal(c->backend, "qemu");
    assert_string_equal(c->runtime_root, "/run/husk");
    assert_string_equal(c->accel, "auto");
    assert_string_equal(c->machine, "q35");
    assert_int_equal(c->vcpus, 1);
    assert_int_equal(c->memory_mib, 512);
    assert_int_equal(c->log_level, LOG_INFO);
    assert_false(c->debug_console);
    assert_null(c->source);
    cfg_destroy(&c);
    assert_null(c);
    cfg_destroy(&c);
}

static void test_cfg_full_file_parses(void **s)
{
    cfg_t *c;
    err_t err = ERR_INIT;
    const char *text = "# husk\n"
                       "[runtime]\n"
                       "root = /var/run/husk2\n"
                       "log_level = debug\n"
                       "hypervisor = local\n"
                       "\n"
                       "; comment\n"
                       "[hypervisor]\n"
                       "kernel = /opt/g/vmlinux\n"
                       "initrd=/opt/g/initrd.img\n"
                       "kernel_params = \"agent.debug=1 quiet\"\n"
                       "vcpus = 2\n"
                       "memory_mib = 1024\n"
                       "debug_console = yes\n"
                       "  [ qemu ]  \n"
                       "binary = /usr/local/bin/qemu-system-x86_64\n"
                       "machine = microvm\n"
                       "accel = tcg\n"
                       "fs_slots = 0\n"
                       "pci_slots = 8\n";
    assert_int_equal(parse(text, &c, &err), 0);
    assert_string_equal(c->runtime_root, "/var/run/husk2");
    assert_int_equal(c->log_level, LOG_DEBUG);
    assert_string_equal(c->backend, "local");
    assert_string_equal(c->kernel, "/opt/g/vmlinux");
    assert_string_equal(c->initrd, "/opt/g/initrd.img");
    assert_string_equal(c->kernel_params, "agent.debug=1 quiet");
    assert_int_equal(c->vcpus, 2);
    assert_int_equal(c->memory_mib, 1024);
    assert_true(c->debug_console);
    assert_string_equal(c->qemu_binary, "/usr/local/bin/qemu-system-x86_64");
    assert_string_equal(c->machine, "microvm");
    assert_string_equal(c->accel, "tcg");
    assert_int_equal(c->fs_slots, 0);
    assert_int_equal(c->pci_slots, 8);

    struct hv_config hc;
    hv_config_init(&hc);
    hv_config_from_cfg(&hc, c);
    assert_int_equal(hc.accel, HV_ACCEL_TCG);
    assert_string_equal(hc.machine, "microvm");
    assert_int_equal(hc.memory_mib, 1024);
    assert_string_equal(hc.kernel, "/opt/g/vmlinux");
    cfg_destroy(&c);
}

static void expect_error(const char *text, int code, const char *needle)
{
    cfg_t *c;
    err_t err = ERR_INIT;
    int r = parse(text, &c, &err);
    if (r != -code || !strstr(err_str(&err), needle))
        fail_msg("text %s: got %d `%s`, want %d with `%s`", text, r, err_str(&err), -code, needle);
    err_clear(&err);
    cfg_destroy(&c);
}

static void test_cfg_errors_name_line_and_key(void **s)
{
    expect_error("[qemu]\nmachine = isapc\n", EINVAL,
                 "husk.conf:2: key `machine`: `isapc` is not one of q35|pc|microvm|virt");
    expect_error("[qemu]\n\n\naccel = hvf\n", EINVAL, "husk.conf:4: key `accel`");
    expect_error("[hypervisor]\nvcpus = 0\n", ERANGE,
                 "husk.conf:2: key `vcpus`: 0 is outside 1..256");
    expect_error("[hypervisor]\nvcpus = two\n", EINVAL, "key `vcpus`: `two` is not a number");
    expect_error("[hypervisor]\nvcpus = -1\n", EINVAL, "not a number");
    expect_error("[hypervisor]\nmemory_mib = 12x\n", EINVAL, "not a number");
    expect_error("[hypervisor]\nmemory_mib = 99999999999999999999\n", EINVAL, "not a number");
    expect_error("[hypervisor]\ndebug_console = maybe\n", EINVAL, "not a boolean");
    expect_error("[hypervisor]\nkernel = vmlinux\n", EINVAL,
                 "key `kernel`: `vmlinux` is not an absolute path");
    expect_error("[runtime]\nlog_level = loud\n", EINVAL, "husk.conf:2: key `log_level`");
    expect_error("[runtime]\nhypervisor = firecracker\n", EINVAL,
                 "`firecracker` is not one of qemu|local");
    expect_error("[runtime]\nbogus = 1\n", EINVAL, "husk.conf:2: unknown key `bogus` in [runtime]");
    expect_error("[nope]\n", EINVAL, "husk.conf:1: unknown section [nope]");
    expect_error("[qemu\n", EINVAL, "malformed section header");
    expect_error("vcpus = 1\n", EINVAL, "husk.conf:1: key `vcpus` outside any [section]");
    expect_error("[qemu]\njust words\n", EINVAL, "husk.conf:2: expected `key = value`");
    expect_error("[qemu]\naccel = tcg\naccel = kvm\n", EINVAL,
                 "husk.conf:3: key `accel` given twice");
    expect_error("[qemu]\nvcpus = 2\n", EINVAL, "unknown key `vcpus` in [qemu]");
}

static void test_cfg_empty_path_unsets(void **s)
{
    cfg_t *c;
    err_t err = ERR_INIT;
    assert_int_equal(parse("[hypervisor]\nkernel =\n", &c, &err), 0);
    assert_null(c->kernel);
    cfg_destroy(&c);
}

static void test_cfg_load_explicit_file(void **s)
{
    char *p = write_conf("a.conf", "[qemu]\nmachine = pc\n");
    cfg_t *c = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(cfg_load(p, &c, &err), 0);
    assert_string_equal(c->machine, "pc");
    assert_string_equal(c->source, p);
    cfg_destroy(&c);
}

static void test_cfg_load_missing_explicit_file_fails(void **s)
{
    cfg_t *c = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(cfg_load("/nonexistent/husk.conf", &c, &err), -ENOENT);
    assert_non_null(strstr(err_str(&err), "/nonexistent/husk.conf"));
    assert_null(c);
    err_clear(&err);
}

static void test_cfg_load_env_config_and_precedence(void **s)
{
    char *p = write_conf("env.conf", "[qemu]\nmachine = microvm\n");
    char env_path[256];
    snprintf(env_path, sizeof(env_path), "%s", p);
    char *q = write_conf("flag.conf", "[qemu]\nmachine = pc\n");
    setenv("HUSK_CONFIG", env_path, 1);
    cfg_t *c = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(cfg_load(NULL, &c, &err), 0);
    assert_string_equal(c->machine, "microvm");
    cfg_destroy(&c);
    /* --config beats HUSK_CONFIG */
    assert_int_equal(cfg_load(q, &c, &err), 0);
    assert_string_equal(c->machine, "pc");
    cfg_destroy(&c);
    unsetenv("HUSK_CONFIG");
}

static void test_cfg_env_hypervisor_overrides_file(void **s)
{
    char *p = write_conf("b.conf", "[runtime]\nhypervisor = qemu\n");
    setenv("HUSK_HYPERVISOR", "local", 1);
    cfg_t *c = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(cfg_load(p, &c, &err), 0);
    assert_string_equal(c->backend, "local");
    cfg_destroy(&c);
    setenv("HUSK_HYPERVISOR", "xen", 1);
    assert_int_equal(cfg_load(p, &c, &err), -EINVAL);
    assert_non_null(strstr(err_str(&err), "HUSK_HYPERVISOR"));
    err_clear(&err);
    unsetenv("HUSK_HYPERVISOR");
}

static void test_cfg_file_errors_carry_path(void **s)
{
    char *p = write_conf("bad.conf", "[qemu]\naccel = fast\n");
    cfg_t *c = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(cfg_load(p, &c, &err), -EINVAL);
    char want[300];
    snprintf(want, sizeof(want), "%s:2: key `accel`", p);
    assert_non_null(strstr(err_str(&err), want));
    err_clear(&err);
}

static void test_cfg_nul_byte_rejected(void **s)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/nul.conf", dir);
    FILE *f = fopen(p, "w");
    fwrite("[qemu]\n\0x", 1, 9, f);
    fclose(f);
    cfg_t *c = cfg_new_defaults(NULL);
    err_t err = ERR_INIT;
    assert_int_equal(cfg_parse_file(c, p, &err), -EINVAL);
    err_clear(&err);
    cfg_destroy(&c);
}

static void test_cfg_guest_files_found_next_to_binary(void **s)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/bin", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/guest", dir);
    mkdir(p, 0755);
    write_conf("guest/vmlinux", "x");
    snprintf(p, sizeof(p), "%s/bin/husk", dir);
    char *found = cfg_find_guest_file(p, NULL, "vmlinux");
    assert_non_null(found);
    assert_non_null(strstr(found, "/guest/vmlinux"));
    free(found);
    /* then the install dirs, in order */
    snprintf(p, sizeof(p), "%s/share1", dir);
    mkdir(p, 0755);
    write_conf("share1/initrd.img", "x");
    const char *dirs[] = {"/nonexistent", p, NULL};
    found = cfg_find_guest_file("/nonexistent/bin/husk", dirs, "initrd.img");
    assert_non_null(found);
    char want[300];
    snprintf(want, sizeof(want), "%s/initrd.img", p);
    assert_string_equal(found, want);
    free(found);
    assert_null(cfg_find_guest_file("/nonexistent/bin/husk", dirs, "vmlinux"));
    cfg_t *c = cfg_new_defaults(NULL);
    cfg_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cfg_defaults),
        cmocka_unit_test(test_cfg_full_file_parses),
        cmocka_unit_test(test_cfg_errors_name_line_and_key),
        cmocka_unit_test(test_cfg_empty_path_unsets),
        cmocka_unit_test(test_cfg_load_explicit_file),
        cmocka_unit_test(test_cfg_load_missing_explicit_file_fails),
        cmocka_unit_test(test_cfg_load_env_config_and_precedence),
        cmocka_unit_test(test_cfg_env_hypervisor_overrides_file),
        cmocka_unit_test(test_cfg_file_errors_carry_path),
        cmocka_unit_test(test_cfg_nul_byte_rejected),
        cmocka_unit_test(test_cfg_guest_files_found_next_to_binary),
    };
    return cmocka_run_group_tests_name("hv_config", tests, setup, teardown);
}
