/* hypervisors/qemu: the backend driving a process, with
 * tests/helpers/fake_qemu standing in for qemu (QMP on fd 3): start and
 * READY, pause/resume, stop (quit, and the kill timer when quit is
 * ignored), an unexpected death, start failures (exit, garbage, silence),
 * hotplug of every device kind with its refusals, slot accounting and
 * unplug timeouts, and what prepare checks. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/clock.h"

#include "common/log.h"
#include "hypervisors/hv.h"

#define DEADLINE_MS 15000

struct op {
    int done;
    int status;
    char msg[512];
};

struct fx {
    char dir[64], sbdir[96], kernel[96], initrd[96], share[96], disk[96];
    char fake[4096];
    struct event_base *base;
    struct event *tick;
    struct hv_config c;
    struct hv_net net;
    hv_t *hv;
    /* events seen */
    int n_ready, n_paused, n_resumed, n_shutdown, n_deleted, n_exited, n_other;
    bool exit_expected, exit_by_signal;
    char exit_reason[512], deleted[64];
};

static void on_done(hv_t *hv, void *arg, int status, const err_t *err)
{
    struct op *o = arg;
    o->done++;
    o->status = status;
    snprintf(o->msg, sizeof o->msg, "%s", err ? err_str(err) : "");
}

static void on_event(hv_t *hv, void *arg, const struct hv_event *ev)
{
    struct fx *f = arg;
    switch (ev->kind) {
    case HV_EV_READY:
        f->n_ready++;
        break;
    case HV_EV_PAUSED:
        f->n_paused++;
        break;
    case HV_EV_RESUMED:
        f->n_resumed++;
        break;
    case HV_EV_SHUTDOWN:
        f->n_shutdown++;
        break;
    case HV_EV_DEVICE_DELETED:
        f->n_deleted++;
        snprintf(f->deleted, sizeof f->deleted, "%s", ev->device_id ? ev->device_id : "");
        break;
    case HV_EV_EXITED:
        f->n_exited++;
        f->exit_expected = ev->expected;
        f->exit_by_signal = ev->exited_by_signal;
        snprintf(f->exit_reason, sizeof f->exit_reason, "%s", ev->reason ? ev->reason : "");
        break;
    default:
        f->n_other++;
        break;
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
}

/* Runs the loop until *flag is non-zero. */
static void run_until(struct fx *f, const int *flag)
{
    int64_t dl = clock_mono_ms() + DEADLINE_MS;
    while (!*flag) {
        if (clock_mono_ms() > dl)
            fail_msg("nothing happened within %d ms", DEADLINE_MS);
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static void touch(const char *path)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("x", fp);
    fclose(fp);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    strcpy(f->dir, "/tmp/husk-test-qemu-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->sbdir, sizeof f->sbdir, "%s/sb", f->dir);
    snprintf(f->kernel, sizeof f->kernel, "%s/vmlinux", f->dir);
    snprintf(f->initrd, sizeof f->initrd, "%s/initrd", f->dir);
    snprintf(f->share, sizeof f->share, "%s/share", f->dir);
    snprintf(f->disk, sizeof f->disk, "%s/disk.img", f->dir);
    assert_int_equal(mkdir(f->sbdir, 0700), 0);
    assert_int_equal(mkdir(f->share, 0700), 0);
    touch(f->kernel);
    touch(f->initrd);
    touch(f->disk);
    /* the helper sits in tests/helpers/ beside this test */
    ssize_t n = readlink("/proc/self/exe", f->fake, sizeof f->fake - 32);
    assert_true(n > 0);
    f->fake[n] = 0;
    strcpy(strrchr(f->fake, '/'), "/helpers/fake_qemu");
    if (access(f->fake, X_OK) < 0)
        fail_msg("%s: %s (built by `make all`)", f->fake, strerror(errno));
    f->base = event_base_new();
    /* a tick, so that EVLOOP_ONCE returns to check deadlines */
    f->tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 50000};
    event_add(f->tick, &tv);
    hv_config_init(&f->c);
    f->c.id = "qt";
    f->c.sandbox_dir = f->sbdir;
    f->c.binary = f->fake;
    f->c.kernel = f->kernel;
    f->c.initrd = f->initrd;
    f->c.machine = "q35";
    f->c.arch = HV_ARCH_X86_64;
    f->c.accel = HV_ACCEL_TCG;
    f->c.memory_mib = 128;
    f->c.fs_slots = 2;
    f->c.pci_slots = 3;
    f->c.qmp_timeout_ms = 1000;
    f->c.stop_timeout_ms = 500;
    f->net = (struct hv_net){.id = "eth0", .tap = "tap-qt0", .mac = "52:54:00:12:34:56"};
    f->c.nets = &f->net;
    f->c.n_nets = 1;
    unsetenv("FAKE_QEMU_MODE");
    *state = f;
    return 0;
}

static void new_hv(struct fx *f)
{
    err_t err = ERR_INIT;
    if (hv_new(hv_ops_by_name("qemu"), f->base, &f->c, &f->hv, &err) < 0)
        fail_msg("hv_new: %s", err_str(&err));
    hv_set_event_cb(f->hv, on_event, f);
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    hv_destroy(&f->hv);
    event_free(f->tick);
    event_base_free(f->base);
    unsetenv("FAKE_QEMU_MODE");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    assert_int_equal(rc, 0);
    return 0;
}

static void start_ok(struct fx *f)
{
    new_hv(f);
    struct op o = {0};
    err_t err = ERR_INIT;
    if (hv_start(f->hv, on_done, &o, &err) < 0)
        fail_msg("start: %s", err_str(&err));
    run_until(f, &o.done);
    if (o.status != 0)
        fail_msg("start: %d %s", o.status, o.msg);
    assert_int_equal(f->n_ready, 1);
}

static pid_t vm_pid(struct fx *f)
{
    pid_t pids[4];
    size_t n = 0;
    err_t err = ERR_INIT;
    assert_int_equal(hv_pids(f->hv, pids, 4, &n, &err), 0);
    return n == 1 ? pids[0] : -1;
}

static bool exists(const char *dir, const char *name)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* A "daemon" (a child process) starts the VM and dies without a word:
 * returns the qemu pid, which must outlive it (restore). */
static pid_t start_in_dying_daemon(struct fx *f)
{
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(pp[0]);
        struct event_base *base = event_base_new();
        hv_t *hv = NULL;
        struct op o = {0};
        pid_t pid = -1;
        if (base && hv_new(hv_ops_by_name("qemu"), base, &f->c, &hv, NULL) == 0 &&
            hv_start(hv, on_done, &o, NULL) == 0) {
            for (int i = 0; i < 200 && !o.done; i++)
                event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(10000);
            size_t n = 0;
            if (o.done && o.status == 0)
                hv_pids(hv, &pid, 1, &n, NULL);
        }
        ssize_t w = write(pp[1], &pid, sizeof pid);
        (void)w;
        kill(getpid(), SIGKILL); /* no destructor runs: as a daemon SIGKILLed */
        _exit(1);
    }
    close(pp[1]);
    pid_t pid = -1;
    assert_int_equal(read(pp[0], &pid, sizeof pid), sizeof pid);
    close(pp[0]);
    waitpid(child, NULL, 0);
    assert_true(pid > 0);
    return pid;
}

static uint64_t start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    assert_non_null(p);
    unsigned long long st = 0;
    /* fields 3..21 then 22 */
    p += 2;
    for (int i = 3; i < 22; i++)
        p = strchr(p, ' ') + 1;
    assert_int_equal(sscanf(p, "%llu", &st), 1);
    return st;
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_hv_qemu_vm_attach_after_its_daemon_died(void **state)
{
    struct fx *f = *state;
    pid_t pid = start_in_dying_daemon(f);
    assert_int_equal(kill(pid, 0), 0); /* qemu outlived its daemon */
    uint64_t st = start_time(pid);
    new_hv(f);
    err_t err = ERR_INIT;
    struct op o = {0};
    /* another process's start time: refused, nothing attached */
    assert_int_equal(hv_attach(f->hv, pid, st + 1, on_done, &o, &err), -ESRCH);
    assert_non_null(strstr(err_str(&err), "another process"));
    err_clear(&err);
    if (hv_attach(f->hv, pid, st, on_done, &o, &err) < 0)
        fail_msg("attach: %s", err_str(&err));
    run_until(f, &o.done);
    if (o.status != 0)
        fail_msg("attach: %d %s", o.status, o.msg);
    assert_int_equal(vm_pid(f), pid);
    /* QMP works again */
    struct op p = {0};
    assert_int_equal(hv_pause(f->hv, on_done, &p, &err), 0);
    run_until(f, &p.done);
    assert_int_equal(p.status, 0);
    /* stop: the exit of a process that is not our child is still seen */
    struct op s = {0};
    assert_int_equal(hv_stop(f->hv, on_done, &s, &err), 0);
    run_until(f, &s.done);
    run_until(f, &f->n_exited);
    assert_true(f->exit_expected);
    for (int i = 0; i < 100 && kill(pid, 0) == 0; i++)
        usleep(20000); /* its reaper (not us) collects it */
    assert_false(exists(f->sbdir, "qmp.sock"));
}

static void test_hv_qemu_vm_attach_to_a_dead_pid_fails(void **state)
{
    struct fx *f = *state;
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
    new_hv(f);
    err_t err = ERR_INIT;
    struct op o = {0};
    assert_int_equal(hv_attach(f->hv, pid, 0, on_done, &o, &err), -ESRCH);
    err_clear(&err);
    assert_int_equal(o.done, 0);
}

static void test_hv_qemu_vm_lifecycle(void **state)
{
    struct fx *f = *state;
    start_ok(f);
    pid_t pid = vm_pid(f);
    assert_true(pid > 0);
    assert_int_equal(kill(pid, 0), 0);
    assert_true(exists(f->sbdir, "qmp.sock"));
    assert_true(exists(f->sbdir, "qemu.pid"));
    assert_true(exists(f->sbdir, "fs-slots/0"));
    const char *as = hv_agent_socket(f->hv);
    assert_non_null(as);
    assert_non_null(strstr(as, "/sb/agent.sock"));
    uint32_t caps = hv_capabilities(f->hv);
    assert_true(caps & HV_CAP_HOTPLUG_BLOCK);
    assert_true(caps & HV_CAP_HOTPLUG_FS);
    assert_true(caps & HV_CAP_PAUSE);

    err_t err = ERR_INIT;
    struct op o = {0};
    assert_int_equal(hv_start(f->hv, on_done, &o, &err), -EALREADY);
    err_clear(&err);
    assert_int_equal(hv_pause(f->hv, on_done, &o, &err), 0);
    run_until(f, &o.done);
    assert_int_equal(o.status, 0);
    run_until(f, &f->n_paused);
    o = (struct op){0};
    assert_int_equal(hv_resume(f->hv, on_done, &o, &err), 0);
    run_until(f, &o.done);
    assert_int_equal(o.status, 0);
    run_until(f, &f->n_resumed);
    /* an operation qemu does not know: its error comes back */
    o = (struct op){0};
    assert_int_equal(hv_resize_vcpus(f->hv, 2, on_done, &o, &err), -EOPNOTSUPP);
    err_clear(&err);

    o = (struct op){0};
    assert_int_equal(hv_stop(f->hv, on_done, &o, &err), 0);
    struct op o2 = {0};
    assert_int_equal(hv_stop(f->hv, on_done, &o2, &err), -EALREADY);
    err_clear(&err);
    run_until(f, &o.done);
    assert_int_equal(o.status, 0);
    run_until(f, &f->n_exited);
    assert_true(f->exit_expected);
    assert_false(f->exit_by_signal);
    assert_int_equal(f->n_shutdown, 1);
    assert_false(exists(f->sbdir, "qmp.sock"));
    assert_false(exists(f->sbdir, "fs-slots"));
    assert_int_equal(vm_pid(f), -1);
    /* a stopped VM refuses */
    assert_int_equal(hv_pause(f->hv, on_done, &o, &err), -ESRCH);
    err_clear(&err);
    assert_int_equal(hv_stop(f->hv, on_done, &o, &err), -ESRCH);
    err_clear(&err);
}

static void test_hv_qemu_vm_quit_ignored_is_killed(void **state)
{
    struct fx *f = *state;
    setenv("FAKE_QEMU_MODE", "ignore-quit", 1);
    start_ok(f);
    err_t err = ERR_INIT;
    struct op o = {0};
    int64_t t0 = clock_mono_ms();
    assert_int_equal(hv_stop(f->hv, on_done, &o, &err), 0);
    run_until(f, &f->n_exited);
    assert_true(clock_mono_ms() - t0 >= 400); /* the kill timer, not the quit */
    assert_true(f->exit_by_signal);
    assert_true(f->exit_expected);
    assert_non_null(strstr(f->exit_reason, "killed by signal 9"));
    run_until(f, &o.done);
    assert_int_equal(o.status, 0);
}

static void test_hv_qemu_vm_unexpected_death(void **state)
{
    struct fx *f = *state;
    start_ok(f);
    pid_t pid = vm_pid(f);
    assert_int_equal(kill(pid, SIGKILL), 0);
    run_until(f, &f->n_exited);
    assert_false(f->exit_expected);
    assert_true(f->exit_by_signal);
    assert_int_equal(vm_pid(f), -1);
}

static void test_hv_qemu_vm_destroy_kills_a_running_vm(void **state)
{
    struct fx *f = *state;
    start_ok(f);
    pid_t pid = vm_pid(f);
    hv_destroy(&f->hv);
    assert_int_equal(kill(pid, 0), -1); /* reaped: gone */
    assert_int_equal(errno, ESRCH);
    assert_false(exists(f->sbdir, "qmp.sock"));
    assert_false(exists(f->sbdir, "agent.sock"));
}

static void start_fails(struct fx *f, const char *mode, const char *want)
{
    setenv("FAKE_QEMU_MODE", mode, 1);
    new_hv(f);
    struct op o = {0};
    err_t err = ERR_INIT;
    assert_int_equal(hv_start(f->hv, on_done, &o, &err), 0);
    run_until(f, &o.done);
    assert_true(o.status < 0);
    print_message("%s: %s\n", mode, o.msg);
    if (!strstr(o.msg, want))
        fail_msg("%s: '%s' does not say '%s'", mode, o.msg, want);
    run_until(f, &f->n_exited);
    assert_int_equal(f->n_ready, 0);
    assert_int_equal(vm_pid(f), -1);
    hv_destroy(&f->hv);
    f->n_exited = 0;
}

static void test_hv_qemu_vm_start_failures(void **state)
{
    struct fx *f = *state;
    /* qemu exits at once: its status and the last line of its stderr */
    start_fails(f, "die", "exited with status 1: fake_qemu: boom");
    /* no QMP greeting but garbage, then silence past the deadline */
    start_fails(f, "garbage", "qmp: peer sent a line that is not a JSON object");
    start_fails(f, "silent", "qmp: no greeting");
}

static void test_hv_qemu_vm_prepare_checks(void **state)
{
    struct fx *f = *state;
    err_t err = ERR_INIT;
    struct hv_config c = f->c;
    hv_t *hv = NULL;
    /* a relative sandbox dir */
    c.sandbox_dir = "relative";
    assert_true(hv_new(hv_ops_by_name("qemu"), f->base, &c, &hv, &err) < 0);
    assert_non_null(strstr(err_str(&err), "absolute"));
    err_clear(&err);
    hv_destroy(&hv);
    /* each missing piece, named */
    static const struct {
        const char *field, *value, *want;
    } bad[] = {
        {"dir", "/nonexistent/husk-sb", "sandbox dir /nonexistent/husk-sb"},
        {"kernel", "/nonexistent/vmlinux", "kernel /nonexistent/vmlinux"},
        {"initrd", "/nonexistent/initrd", "initrd /nonexistent/initrd"},
        {"binary", "no-such-qemu-for-husk", "`no-such-qemu-for-husk` not found in PATH"},
        {"binary", "/nonexistent/qemu", "binary /nonexistent/qemu"},
        {"machine", "nosuchmachine", "nosuchmachine"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = f->c;
        if (!strcmp(bad[i].field, "dir"))
            c.sandbox_dir = bad[i].value;
        else if (!strcmp(bad[i].field, "kernel"))
            c.kernel = bad[i].value;
        else if (!strcmp(bad[i].field, "initrd"))
            c.initrd = bad[i].value;
        else if (!strcmp(bad[i].field, "binary"))
            c.binary = bad[i].value;
        else
            c.machine = bad[i].value;
        assert_int_equal(hv_new(hv_ops_by_name("qemu"), f->base, &c, &hv, &err), 0);
        assert_true(hv_prepare(hv, &err) < 0);
        if (!strstr(err_str(&err), bad[i].want))
            fail_msg("'%s' does not say '%s'", err_str(&err), bad[i].want);
        err_clear(&err);
        hv_destroy(&hv);
    }
    /* a name is looked up in PATH; prepare runs once */
    char *old = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", f->fake);
    *strrchr(dir, '/') = 0;
    setenv("PATH", dir, 1);
    c = f->c;
    c.binary = "fake_qemu";
    assert_int_equal(hv_new(hv_ops_by_name("qemu"), f->base, &c, &hv, &err), 0);
    int r = hv_prepare(hv, &err);
    if (old) {
        setenv("PATH", old, 1);
        free(old);
    }
    assert_int_equal(r, 0);
    assert_string_equal(hv_config(hv)->binary, f->fake);
    assert_int_equal(hv_prepare(hv, &err), -EALREADY);
    err_clear(&err);
    /* nothing runs: pause, devices and stop refuse */
    struct op o = {0};
    assert_int_equal(hv_pause(hv, on_done, &o, &err), -ESRCH);
    err_clear(&err);
    struct hv_device d = {.kind = HV_DEV_VFIO, .id = "v", .u.vfio.host_bdf = "0000:01:00.0"};
    assert_int_equal(hv_add_device(hv, &d, on_done, &o, &err), -ESRCH);
    err_clear(&err);
    assert_int_equal(hv_remove_device(hv, &d, on_done, &o, &err), -ESRCH);
    err_clear(&err);
    assert_int_equal(hv_stop(hv, on_done, &o, &err), -ESRCH);
    err_clear(&err);
    size_t n = 9;
    pid_t p;
    assert_int_equal(hv_pids(hv, &p, 1, &n, &err), 0);
    assert_int_equal(n, 0);
    hv_destroy(&hv);
    assert_int_equal(o.done, 0);
}

/* Adds dev; returns the completion status (or the refusal). */
static int add(struct fx *f, const struct hv_device *d, char *msg)
{
    struct op o = {0};
    err_t err = ERR_INIT;
    int r = hv_add_device(f->hv, d, on_done, &o, &err);
    if (r < 0) {
        snprintf(msg, 512, "%s", err_str(&err));
        err_clear(&err);
        return r;
    }
    run_until(f, &o.done);
    snprintf(msg, 512, "%s", o.msg);
    return o.status;
}

static int del(struct fx *f, const char *id, char *msg)
{
    struct op o = {0};
    err_t err = ERR_INIT;
    struct hv_device d = {.kind = HV_DEV_SHARE_FS, .id = id};
    int r = hv_remove_device(f->hv, &d, on_done, &o, &err);
    if (r < 0) {
        snprintf(msg, 512, "%s", err_str(&err));
        err_clear(&err);
        return r;
    }
    run_until(f, &o.done);
    snprintf(msg, 512, "%s", o.msg);
    return o.status;
}

static void test_hv_qemu_vm_hotplug(void **state)
{
    struct fx *f = *state;
    start_ok(f);
    char msg[512];
    struct hv_device share = {.kind = HV_DEV_SHARE_FS, .id = "fs1"};
    share.u.share_fs.host_path = f->share;
    share.u.share_fs.mount_tag = "tag1";
    assert_int_equal(add(f, &share, msg), 0);
    /* its slot now points at the directory */
    char link[256], target[256];
    snprintf(link, sizeof link, "%s/fs-slots/0", f->sbdir);
    ssize_t n = readlink(link, target, sizeof target - 1);
    assert_true(n > 0);
    target[n] = 0;
    assert_string_equal(target, f->share);
    assert_int_equal(add(f, &share, msg), -EEXIST);

    /* refusals before any QMP */
    struct hv_device bad = share;
    bad.id = "fs2";
    bad.u.share_fs.host_path = f->disk;
    assert_int_equal(add(f, &bad, msg), -ENOTDIR);
    bad.u.share_fs.host_path = f->share;
    bad.u.share_fs.mount_tag = "bad tag";
    assert_int_equal(add(f, &bad, msg), -EINVAL);
    bad.id = "bad id";
    assert_int_equal(add(f, &bad, msg), -EINVAL);
    struct hv_device blk = {.kind = HV_DEV_BLOCK, .id = "blk1"};
    blk.u.block.path = f->disk;
    blk.u.block.format = "vmdk";
    assert_int_equal(add(f, &blk, msg), -EINVAL);
    assert_non_null(strstr(msg, "vmdk"));
    blk.u.block.format = NULL;
    blk.u.block.path = "/nonexistent/disk";
    assert_int_equal(add(f, &blk, msg), -ENOENT);
    struct hv_device net = {.kind = HV_DEV_NET, .id = "net1"};
    assert_int_equal(add(f, &net, msg), -EINVAL);
    struct hv_device vfio = {.kind = HV_DEV_VFIO, .id = "vf1"};
    assert_int_equal(add(f, &vfio, msg), -EINVAL);
    struct hv_device vu = {.kind = HV_DEV_VHOST_USER, .id = "vu1"};
    assert_int_equal(add(f, &vu, msg), -EOPNOTSUPP);

    /* a block device and a NIC take the other two PCI slots */
    blk.u.block.path = f->disk;
    blk.u.block.readonly = true;
    assert_int_equal(add(f, &blk, msg), 0);
    net.u.net.tap = "tap-qt1";
    net.u.net.mac = "52:54:00:00:00:01";
    assert_int_equal(add(f, &net, msg), 0);
    vfio.u.vfio.host_bdf = "0000:01:00.0";
    assert_int_equal(add(f, &vfio, msg), -ENOSPC);
    assert_non_null(strstr(msg, "pci_slots"));

    /* removal waits for DEVICE_DELETED; the slots come back */
    assert_int_equal(del(f, "fs1", msg), 0);
    assert_string_equal(f->deleted, "fs1");
    assert_int_equal(del(f, "fs1", msg), -ENODEV);
    n = readlink(link, target, sizeof target - 1);
    assert_true(n > 0);
    target[n] = 0;
    assert_non_null(strstr(target, "fs-slots/empty"));
    assert_int_equal(del(f, "blk1", msg), 0);
    assert_int_equal(del(f, "net1", msg), 0);
    assert_int_equal(add(f, &vfio, msg), 0);
    assert_int_equal(del(f, "vf1", msg), 0);
    /* the NIC present from boot is a device too */
    assert_int_equal(del(f, "eth0", msg), 0);

    /* qemu refuses the device; the backend step fails; the guest never
     * lets go of one */
    struct hv_device failing = share;
    failing.id = "fail1";
    assert_int_equal(add(f, &failing, msg), -EIO);
    assert_non_null(strstr(msg, "does not support hotplugging"));
    struct hv_device badblk = blk;
    badblk.id = "bad1";
    assert_true(add(f, &badblk, msg) < 0);
    assert_non_null(strstr(msg, "Could not open backend"));
    struct hv_device failnet = net;
    failnet.id = "fail2";
    assert_true(add(f, &failnet, msg) < 0);
    struct hv_device stuck = share;
    stuck.id = "stuck1";
    assert_int_equal(add(f, &stuck, msg), 0);
    struct op o = {0};
    err_t err = ERR_INIT;
    struct hv_device rm = {.kind = HV_DEV_SHARE_FS, .id = "stuck1"};
    assert_int_equal(hv_remove_device(f->hv, &rm, on_done, &o, &err), 0);
    assert_int_equal(hv_remove_device(f->hv, &rm, on_done, &o, &err), -EALREADY);
    err_clear(&err);
    run_until(f, &o.done);
    assert_int_equal(o.status, -ETIMEDOUT);
    assert_non_null(strstr(o.msg, "no DEVICE_DELETED"));

    /* read-only shares have slots of their own: two, then none */
    struct hv_device ro = share;
    ro.u.share_fs.readonly = true;
    ro.id = "ro1";
    assert_int_equal(add(f, &ro, msg), 0);
    ro.id = "ro2";
    assert_int_equal(add(f, &ro, msg), 0);
    ro.id = "ro3";
    assert_int_equal(add(f, &ro, msg), -ENOSPC);
    assert_non_null(strstr(msg, "readonly"));
}

int main(void)
{
    log_setup(2, LOG_FMT_LOGFMT, LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hv_qemu_vm_lifecycle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_hv_qemu_vm_quit_ignored_is_killed, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_hv_qemu_vm_unexpected_death, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_hv_qemu_vm_destroy_kills_a_running_vm, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_hv_qemu_vm_start_failures, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_hv_qemu_vm_prepare_checks, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_hv_qemu_vm_hotplug, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_hv_qemu_vm_attach_after_its_daemon_died, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_hv_qemu_vm_attach_to_a_dead_pid_fails, fx_setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
