/* hv: registry, wrappers, acceleration detection, fake backend. */
#include <errno.h>
#include <event2/event.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "hypervisors/fake.h"
#include "hypervisors/hv.h"

static char tmpdir[64];

static void write_file(const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *path(const char *name)
{
    static char bufs[4][256];
    static int i;
    char *b = bufs[i++ % 4];
    snprintf(b, 256, "%s/%s", tmpdir, name);
    return b;
}

static int setup_dir(void **s)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_hv.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    mkdir(path("sysmod"), 0755);
    write_file("kvm", "");
    write_file("cpu_vmx", "processor\t: 0\nflags\t\t: fpu vme vmx sse\n");
    write_file("cpu_none", "processor\t: 0\nflags\t\t: fpu vme sse hypervisor\n");
    write_file("cpu_vmxish", "processor\t: 0\nflags\t\t: fpu vmxfoo sse\n");
    write_file("modules", "kvm 1234 0 - Live 0x0\n");
    write_file("modules_pvm", "kvm_pvm 1234 0 - Live 0x0\nkvm 1 1 kvm_pvm, Live 0x0\n");
    return 0;
}

static int teardown_dir(void **s)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_hv_accel_kvm_when_everything_fits(void **s)
{
    struct hv_accel_probe p = {path("kvm"), path("cpu_vmx"), path("sysmod"), path("modules")};
    char why[256];
    assert_int_equal(hv_accel_detect(HV_ACCEL_AUTO, &p, why, sizeof(why)), HV_ACCEL_KVM);
}

static void test_hv_accel_tcg_when_no_dev_kvm(void **s)
{
    struct hv_accel_probe p = {path("nope"), path("cpu_vmx"), path("sysmod"), path("modules")};
    char why[256];
    assert_int_equal(hv_accel_detect(HV_ACCEL_AUTO, &p, why, sizeof(why)), HV_ACCEL_TCG);
    assert_non_null(strstr(why, "cannot be opened"));
}

static void test_hv_accel_tcg_when_no_vmx_svm(void **s)
{
    struct hv_accel_probe p = {path("kvm"), path("cpu_none"), path("sysmod"), path("modules")};
    char why[256];
    assert_int_equal(hv_accel_detect(HV_ACCEL_AUTO, &p, why, sizeof(why)), HV_ACCEL_TCG);
    assert_non_null(strstr(why, "vmx or svm"));
    p.cpuinfo = path("cpu_vmxish"); /* "vmxfoo" is not "vmx" */
    assert_int_equal(hv_accel_detect(HV_ACCEL_AUTO, &p, why, sizeof(why)), HV_ACCEL_TCG);
}

static void test_hv_accel_tcg_when_kvm_pvm_module_listed(void **s)
{
    struct hv_accel_probe p = {path("kvm"), path("cpu_vmx"), path("sysmod"), path("modules_pvm")};
    char why[256];
    assert_int_equal(hv_accel_detect(HV_ACCEL_AUTO, &p, why, sizeof(why)), HV_ACCEL_TCG);
    assert_non_null(strstr(why, "PVM"));
}

static void test_hv_accel_tcg_when_sys_module_kvm_pvm(void **s)
{
    mkdir(path("sysmod/kvm_pvm"), 0755);
    struct hv_accel_probe p = {path("kvm"), path("cpu_vmx"), path("sysmod"), path("modules")};
    char why[256];
    assert_int_equal(hv_accel_detect(HV_ACCEL_AUTO, &p, why, sizeof(why)), HV_ACCEL_TCG);
    assert_non_null(strstr(why, "kvm_pvm"));
    rmdir(path("sysmod/kvm_pvm"));
}

static void test_hv_accel_forced_by_config(void **s)
{
    struct hv_accel_probe p = {path("nope"), path("cpu_none"), path("sysmod"), path("modules")};
    char why[256];
    assert_int_equal(hv_accel_detect(HV_ACCEL_KVM, &p, why, sizeof(why)), HV_ACCEL_KVM);
    assert_non_null(strstr(why, "forced"));
    assert_int_equal(hv_accel_detect(HV_ACCEL_TCG, NULL, why, sizeof(why)), HV_ACCEL_TCG);
}

static void test_hv_accel_this_machine_is_tcg(void **s)
{
    /* The build machines have the PVM flavour of /dev/kvm. */
    struct stat st;
    if (stat("/sys/module/kvm_pvm", &st) < 0)
        skip();
    assert_int_equal(hv_accel_detect(HV_ACCEL_AUTO, NULL, NULL, 0), HV_ACCEL_TCG);
}

static void test_hv_names_round_trip(void **s)
{
    assert_int_equal(hv_accel_parse("tcg"), HV_ACCEL_TCG);
    assert_int_equal(hv_accel_parse("bogus"), -1);
    assert_string_equal(hv_accel_name(HV_ACCEL_KVM), "kvm");
    assert_int_equal(hv_arch_parse("arm64"), HV_ARCH_AARCH64);
    assert_string_equal(hv_dev_kind_name(HV_DEV_VHOST_USER), "vhost-user");
}

static void test_hv_registry_finds_backends(void **s)
{
    assert_ptr_equal(hv_ops_by_name("qemu"), &hv_qemu_ops);
    assert_ptr_equal(hv_ops_by_name("fake"), &hv_fake_ops);
    assert_null(hv_ops_by_name("firecracker"));
    assert_null(hv_ops_by_name(NULL));
    int n = 0;
    for (const struct hv_ops *const *o = hv_ops_list(); *o; o++)
        n++;
    assert_true(n >= 2);
}

/* A backend with nothing but a name: every op is EOPNOTSUPP. */
static const struct hv_ops empty_ops = {.name = "empty", .caps = 0};

static void test_hv_null_slots_are_eopnotsupp(void **s)
{
    struct event_base *base = event_base_new();
    struct hv_config c;
    hv_config_init(&c);
    hv_t *hv = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(hv_new(&empty_ops, base, &c, &hv, &err), 0);
    assert_int_equal(hv_start(hv, NULL, NULL, &err), -EOPNOTSUPP);
    assert_string_equal(err_str(&err), "empty: start not supported");
    assert_int_equal(hv_resize_memory(hv, 1024, NULL, NULL, &err), -EOPNOTSUPP);
    assert_string_equal(err_str(&err), "empty: resize_memory not supported");
    struct hv_device d = {.kind = HV_DEV_BLOCK, .id = "b"};
    assert_int_equal(hv_add_device(hv, &d, NULL, NULL, &err), -EOPNOTSUPP);
    assert_int_equal(hv_save(hv, "/x", NULL, NULL, &err), -EOPNOTSUPP);
    size_t n = 7;
    assert_int_equal(hv_pids(hv, NULL, 0, &n, &err), -EOPNOTSUPP);
    assert_int_equal(n, 0);
    assert_int_equal(hv_capabilities(hv), 0);
    assert_null(hv_agent_socket(hv));
    err_clear(&err);
    hv_destroy(&hv);
    assert_null(hv);
    hv_destroy(&hv); /* idempotent */
    event_base_free(base);
}

struct rec {
    int done, status, events, last_kind;
    bool destroy;
    hv_t **hv_p;
};

static void rec_done(hv_t *hv, void *arg, int status, const err_t *err)
{
    struct rec *r = arg;
    r->done++;
    r->status = status;
    if (status < 0)
        assert_non_null(err);
    if (r->destroy)
        hv_destroy(r->hv_p);
}

static void rec_event(hv_t *hv, void *arg, const struct hv_event *ev)
{
    struct rec *r = arg;
    r->events++;
    r->last_kind = ev->kind;
}

static void test_hv_fake_completes_asynchronously(void **s)
{
    struct event_base *base = event_base_new();
    struct hv_config c;
    hv_config_init(&c);
    hv_t *hv = NULL;
    err_t err = ERR_INIT;
    struct rec r = {0};
    assert_int_equal(hv_new(hv_ops_by_name("fake"), base, &c, &hv, &err), 0);
    hv_set_event_cb(hv, rec_event, &r);
    assert_int_equal(hv_prepare(hv, &err), 0);
    assert_int_equal(hv_start(hv, rec_done, &r, &err), 0);
    assert_int_equal(r.done, 0); /* never from inside the call */
    event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.last_kind, HV_EV_READY);
    assert_int_equal(hv_fake_calls(hv, "start"), 1);

    hv_fake_script(hv, "pause", -EIO, 0);
    assert_int_equal(hv_pause(hv, rec_done, &r, &err), 0);
    event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(r.status, -EIO);

    hv_fake_fail_now(hv, "resume", -EBUSY);
    assert_int_equal(hv_resume(hv, rec_done, &r, &err), -EBUSY);
    assert_int_equal(r.done, 2);

    struct hv_device d = {.kind = HV_DEV_SHARE_FS, .id = "bad id"};
    assert_int_equal(hv_add_device(hv, &d, rec_done, &r, &err), -EINVAL);

    struct hv_event death = {
        .kind = HV_EV_EXITED, .name = "EXITED", .exited_by_signal = true, .wait_status = 9};
    hv_fake_emit(hv, &death);
    assert_int_equal(r.last_kind, HV_EV_EXITED);
    err_clear(&err);
    hv_destroy(&hv);
    event_base_free(base);
}

static void test_hv_destroy_inside_callback_is_safe(void **s)
{
    struct event_base *base = event_base_new();
    struct hv_config c;
    hv_config_init(&c);
    hv_t *hv = NULL;
    err_t err = ERR_INIT;
    struct rec r = {.destroy = true, .hv_p = &hv};
    assert_int_equal(hv_new(&hv_fake_ops, base, &c, &hv, &err), 0);
    hv_set_event_cb(hv, rec_event, &r);
    assert_int_equal(hv_start(hv, rec_done, &r, &err), 0);
    hv_fake_script(hv, "stop", 0, 1000);
    event_base_loop(base, EVLOOP_ONCE);
    assert_null(hv);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.events, 0); /* READY not delivered after destroy */
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
    event_base_free(base);
}

static void test_hv_destroy_cancels_pending_completions(void **s)
{
    struct event_base *base = event_base_new();
    struct hv_config c;
    hv_config_init(&c);
    hv_t *hv = NULL;
    err_t err = ERR_INIT;
    struct rec r = {0};
    assert_int_equal(hv_new(&hv_fake_ops, base, &c, &hv, &err), 0);
    hv_fake_script(hv, "start", 0, 5000);
    assert_int_equal(hv_start(hv, rec_done, &r, &err), 0);
    hv_destroy(&hv);
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
    assert_int_equal(r.done, 0);
    event_base_free(base);
}

static void test_hv_qemu_create_needs_absolute_sandbox_dir(void **s)
{
    struct event_base *base = event_base_new();
    struct hv_config c;
    hv_config_init(&c);
    c.sandbox_dir = "relative/dir";
    hv_t *hv = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(hv_new(&hv_qemu_ops, base, &c, &hv, &err), -EINVAL);
    assert_null(hv);
    err_clear(&err);
    event_base_free(base);
}

static void test_hv_qemu_prepare_reports_missing_kernel(void **s)
{
    struct event_base *base = event_base_new();
    struct hv_config c;
    hv_config_init(&c);
    c.sandbox_dir = tmpdir;
    c.kernel = "/nonexistent/vmlinux";
    c.accel = HV_ACCEL_TCG;
    hv_t *hv = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(hv_new(&hv_qemu_ops, base, &c, &hv, &err), 0);
    assert_int_equal(hv_prepare(hv, &err), -ENOENT);
    assert_non_null(strstr(err_str(&err), "/nonexistent/vmlinux"));
    assert_int_equal(hv_pause(hv, NULL, NULL, &err), -ESRCH);
    err_clear(&err);
    hv_destroy(&hv);
    event_base_free(base);
}

static void test_hv_qemu_caps_depend_on_machine(void **s)
{
    struct event_base *base = event_base_new();
    struct hv_config c;
    hv_config_init(&c);
    c.sandbox_dir = tmpdir;
    c.machine = "microvm";
    hv_t *hv = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(hv_new(&hv_qemu_ops, base, &c, &hv, &err), 0);
    uint32_t caps = hv_capabilities(hv);
    assert_true(caps & HV_CAP_VM_ISOLATION);
    assert_false(caps & HV_CAP_HOTPLUG_FS);
    assert_false(caps & HV_CAP_SAVE_RESTORE);
    hv_destroy(&hv);
    c.machine = "q35";
    assert_int_equal(hv_new(&hv_qemu_ops, base, &c, &hv, &err), 0);
    assert_true(hv_capabilities(hv) & HV_CAP_HOTPLUG_FS);
    hv_destroy(&hv);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hv_accel_kvm_when_everything_fits),
        cmocka_unit_test(test_hv_accel_tcg_when_no_dev_kvm),
        cmocka_unit_test(test_hv_accel_tcg_when_no_vmx_svm),
        cmocka_unit_test(test_hv_accel_tcg_when_kvm_pvm_module_listed),
        cmocka_unit_test(test_hv_accel_tcg_when_sys_module_kvm_pvm),
        cmocka_unit_test(test_hv_accel_forced_by_config),
        cmocka_unit_test(test_hv_accel_this_machine_is_tcg),
        cmocka_unit_test(test_hv_names_round_trip),
        cmocka_unit_test(test_hv_registry_finds_backends),
        cmocka_unit_test(test_hv_null_slots_are_eopnotsupp),
        cmocka_unit_test(test_hv_fake_completes_asynchronously),
        cmocka_unit_test(test_hv_destroy_inside_callback_is_safe),
        cmocka_unit_test(test_hv_destroy_cancels_pending_completions),
        cmocka_unit_test(test_hv_qemu_create_needs_absolute_sandbox_dir),
        cmocka_unit_test(test_hv_qemu_prepare_reports_missing_kernel),
        cmocka_unit_test(test_hv_qemu_caps_depend_on_machine),
    };
    return cmocka_run_group_tests_name("hv", tests, setup_dir, teardown_dir);
}
