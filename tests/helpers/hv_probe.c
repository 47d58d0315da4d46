/* hv_probe: drives the qemu backend against a real qemu on its own
 * event_base and prints TAP-like "ok - name" / "not ok - name" lines
 * (tests/e2e/hv_qemu.sh).
 *
 *   hv_probe [--qemu BIN] [--kernel K --initrd I] [--machine M] [--dir D]
 *
 * Without a kernel the VM starts with -S (no guest code) and the guest
 * parts are skipped with a message.  Exit 0 when every check passed. */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "hypervisors/hv.h"

static int failures;
static struct event_base *base;
static const char *prefix = "";

static void check(bool ok, const char *name, const char *detail)
{
    if (ok && detail && !strcmp(detail, "unknown error"))
        detail = NULL;
    printf("%s - %s%s%s%s\n", ok ? "ok" : "not ok", prefix, name, detail && *detail ? ": " : "",
           detail ? detail : "");
    fflush(stdout);
    if (!ok)
        failures++;
}

/* State shared with callbacks. */
struct probe {
    int done_count;
    int last_status;
    char last_err[512];
    bool ready, exited, exited_expected, exited_signal;
    int exit_status;
    bool ev_stop, ev_resume, ev_shutdown, ev_devdel;
    char devdel_id[64];
};
static struct probe P;

static void on_done(hv_t *hv, void *arg, int status, const err_t *err)
{
    P.done_count++;
    P.last_status = status;
    snprintf(P.last_err, sizeof(P.last_err), "%s", err ? err_str(err) : "");
}

static void on_event(hv_t *hv, void *arg, const struct hv_event *ev)
{
    switch (ev->kind) {
    case HV_EV_READY:
        P.ready = true;
        break;
    case HV_EV_EXITED:
        P.exited = true;
        P.exited_expected = ev->expected;
        P.exited_signal = ev->exited_by_signal;
        P.exit_status = ev->wait_status;
        break;
    case HV_EV_PAUSED:
        P.ev_stop = true;
        break;
    case HV_EV_RESUMED:
        P.ev_resume = true;
        break;
    case HV_EV_SHUTDOWN:
        P.ev_shutdown = true;
        break;
    case HV_EV_DEVICE_DELETED:
        P.ev_devdel = true;
        snprintf(P.devdel_id, sizeof(P.devdel_id), "%s", ev->device_id ? ev->device_id : "");
        break;
    default:
        break;
    }
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Runs the loop until *flag or the deadline. */
static bool wait_for(bool *flag, int timeout_ms)
{
    double end = now_ms() + timeout_ms;
    while (!*flag && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK) ? usleep(1000) : (void)0;
    return *flag;
}

static bool wait_done(int count, int timeout_ms)
{
    double end = now_ms() + timeout_ms;
    while (P.done_count < count && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    return P.done_count >= count;
}

static bool process_gone(pid_t pid)
{
    return pid > 0 && kill(pid, 0) < 0 && errno == ESRCH;
}

/* Files left in dir other than the logs we keep on purpose. */
static int leftovers(const char *dir, char *out, size_t len)
{
    DIR *d = opendir(dir);
    int n = 0;
    out[0] = '\0';
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            !strcmp(e->d_name, "console.log") || !strcmp(e->d_name, "qemu.log") ||
            !strcmp(e->d_name, "share"))
            continue;
        n++;
        strncat(out, e->d_name, len - strlen(out) - 2);
        strncat(out, " ", len - strlen(out) - 1);
    }
    closedir(d);
    return n;
}

/* Does pid hold an fd on path (the 9p root of a realized device)? */
static bool holds_dir(pid_t pid, const char *path)
{
    char fddir[64], link[4096], target[4096];
    snprintf(fddir, sizeof(fddir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(fddir);
    bool found = false;
    if (!d)
        return false;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        snprintf(link, sizeof(link), "%s/%s", fddir, e->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n > 0) {
            target[n] = '\0';
            found = !strcmp(target, path);
        }
    }
    closedir(d);
    return found;
}

static hv_t *new_vm(struct hv_config *c, const char *tag)
{
    hv_t *hv = NULL;
    err_t err = ERR_INIT;
    memset(&P, 0, sizeof(P));
    if (hv_new(&hv_qemu_ops, base, c, &hv, &err) < 0) {
        check(false, tag, err_str(&err));
        err_clear(&err);
        return NULL;
    }
    hv_set_event_cb(hv, on_event, NULL);
    return hv;
}

static pid_t vm_pid(hv_t *hv)
{
    pid_t pid = -1;
    size_t n = 0;
    hv_pids(hv, &pid, 1, &n, NULL);
    return n ? pid : -1;
}

/* Reads the agent port until a line containing `want` or timeout. */
static bool read_agent(const char *sock, const char *want, int timeout_ms, char *line, size_t len)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        snprintf(line, len, "connect %s: %s", sock, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    char buf[4096];
    size_t used = 0;
    double end = now_ms() + timeout_ms;
    bool found = false;
    line[0] = '\0';
    while (!found && now_ms() < end && used < sizeof(buf) - 1) {
        struct timeval tv = {0, 100000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        ssize_t n = recv(fd, buf + used, sizeof(buf) - 1 - used, 0);
        if (n > 0) {
            used += n;
            buf[used] = '\0';
            char *p = strstr(buf, want);
            if (p) {
                char *nl = strchr(p, '\n');
                snprintf(line, len, "%.*s", (int)(nl ? nl - p : (long)strlen(p)), p);
                found = true;
            }
        } else if (n == 0) {
            break;
        }
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    close(fd);
    return found;
}

int main(int argc, char **argv)
{
    const char *qemu = "qemu-system-x86_64", *kernel = NULL, *initrd = NULL, *machine = "q35";
    char dir_buf[256] = "";
    const char *dir = NULL;
    static const struct option opts[] = {{"qemu", 1, 0, 'q'},   {"kernel", 1, 0, 'k'},
                                         {"initrd", 1, 0, 'i'}, {"machine", 1, 0, 'm'},
                                         {"dir", 1, 0, 'd'},    {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'q':
            qemu = optarg;
            break;
        case 'k':
            kernel = optarg;
            break;
        case 'i':
            initrd = optarg;
            break;
        case 'm':
            machine = optarg;
            break;
        case 'd':
            dir = optarg;
            break;
        default:
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    char pfx[64];
    snprintf(pfx, sizeof(pfx), "%s: ", machine);
    prefix = pfx;
    log_setup(2, LOG_FMT_LOGFMT, getenv("HV_PROBE_DEBUG") ? LOG_DEBUG : LOG_INFO);
    if (!dir) {
        snprintf(dir_buf, sizeof(dir_buf), "/tmp/hv_probe.XXXXXX");
        if (!mkdtemp(dir_buf)) {
            perror("mkdtemp");
            return 2;
        }
        dir = dir_buf;
    } else if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        perror(dir);
        return 2;
    }
    base = event_base_new();
    char share[512], tail[512];
    snprintf(share, sizeof(share), "%s/share", dir);
    mkdir(share, 0755);

    struct hv_config cfg;
    hv_config_init(&cfg);
    cfg.id = "probe";
    cfg.sandbox_dir = dir;
    cfg.binary = qemu;
    cfg.machine = machine;
    cfg.memory_mib = 256;
    cfg.start_paused = true;
    cfg.stop_timeout_ms = 3000;
    cfg.qmp_timeout_ms = 3000;
    err_t err = ERR_INIT;

    /* ---- run 1: -S, QMP, pause/resume, 9p hotplug, stop ---- */
    hv_t *hv = new_vm(&cfg, "create");
    if (!hv)
        return 1;
    double t0 = now_ms();
    int r = hv_start(hv, on_done, NULL, &err);
    check(r == 0, "start launches qemu", err_str(&err));
    bool up = r == 0 && wait_done(1, 10000) && P.last_status == 0;
    char detail[600];
    snprintf(detail, sizeof(detail), "%.1f ms exec to QMP negotiated%s%s", now_ms() - t0,
             P.last_err[0] ? "; " : "", P.last_err);
    check(up && P.ready, "start completes with QMP negotiated (READY)", detail);
    pid_t pid = vm_pid(hv);
    check(pid > 0 && !process_gone(pid), "qemu process tracked", NULL);
    struct stat st;
    check(stat(hv_agent_socket(hv), &st) == 0 && S_ISSOCK(st.st_mode),
          "agent socket present in sandbox dir", hv_agent_socket(hv));

    /* resume (prelaunch -> running), pause, resume */
    P.done_count = 0;
    r = hv_resume(hv, on_done, NULL, &err);
    bool ok = r == 0 && wait_done(1, 5000) && P.last_status == 0 && wait_for(&P.ev_resume, 2000);
    check(ok, "resume (cont) answered and RESUME event", P.last_err);
    P.done_count = 0;
    r = hv_pause(hv, on_done, NULL, &err);
    ok = r == 0 && wait_done(1, 5000) && P.last_status == 0 && wait_for(&P.ev_stop, 2000);
    check(ok, "pause (stop) answered and STOP event", P.last_err);
    P.done_count = 0;
    P.ev_resume = false;
    r = hv_resume(hv, on_done, NULL, &err);
    ok = r == 0 && wait_done(1, 5000) && P.last_status == 0 && wait_for(&P.ev_resume, 2000);
    check(ok, "resume after pause", P.last_err);

    /* 9p hotplug */
    if (hv_capabilities(hv) & HV_CAP_HOTPLUG_FS) {
        struct hv_device dev = {.kind = HV_DEV_SHARE_FS, .id = "shr0"};
        dev.u.share_fs.host_path = share;
        dev.u.share_fs.mount_tag = "hotshare";
        P.done_count = 0;
        err_clear(&err);
        r = hv_add_device(hv, &dev, on_done, NULL, &err);
        ok = r == 0 && wait_done(1, 5000) && P.last_status == 0;
        check(ok, "9p share hot-plugged (device_add virtio-9p on a slot fsdev)",
              r < 0 ? err_str(&err) : P.last_err);
        check(ok && holds_dir(pid, share), "qemu opened the shared directory", share);
        P.done_count = 0;
        r = hv_add_device(hv, &dev, on_done, NULL, &err);
        check(r == -EEXIST, "duplicate device id refused", err_str(&err));
        err_clear(&err);
        if (kernel) {
            printf("# 9p unplug with a guest: the probe guest powers off at once; not run\n");
        } else {
            /* Without a guest nobody ejects the PCI device: DEVICE_DELETED
             * never comes and the removal must time out cleanly. */
            P.done_count = 0;
            r = hv_remove_device(hv, &dev, on_done, NULL, &err);
            ok = r == 0 && wait_done(1, 10000) && P.last_status == -ETIMEDOUT;
            check(ok, "9p unplug without a guest times out cleanly (no DEVICE_DELETED)",
                  P.last_err);
            printf("# skip: 9p unplug completion needs a guest that releases the device\n");
        }
    } else {
        printf("# skip: machine %s has no hotplug bus\n", machine);
    }

    /* stop */
    P.done_count = 0;
    t0 = now_ms();
    r = hv_stop(hv, on_done, NULL, &err);
    ok = r == 0 && wait_done(1, 10000) && P.last_status == 0;
    snprintf(detail, sizeof(detail), "%.1f ms", now_ms() - t0);
    check(ok && P.exited && P.exited_expected && !P.exited_signal,
          "stop: QMP quit, qemu exited, EXITED(expected)", detail);
    check(P.ev_shutdown, "SHUTDOWN event seen before exit", NULL);
    check(process_gone(pid), "no qemu process left after stop", NULL);
    int left = leftovers(dir, tail, sizeof(tail));
    check(left == 0, "no socket or file left after stop", tail);
    hv_destroy(&hv);

    /* ---- run 2: kill -9 of qemu is detected as VM death ---- */
    hv = new_vm(&cfg, "create (2)");
    if (!hv)
        return 1;
    r = hv_start(hv, on_done, NULL, &err);
    up = r == 0 && wait_done(1, 10000) && P.last_status == 0;
    check(up, "second start", P.last_err);
    pid = vm_pid(hv);
    t0 = now_ms();
    if (pid > 0)
        kill(pid, SIGKILL);
    ok = wait_for(&P.exited, 5000);
    snprintf(detail, sizeof(detail), "detected in %.1f ms", now_ms() - t0);
    check(ok && !P.exited_expected && P.exited_signal && P.exit_status == SIGKILL,
          "kill -9 of qemu reported as EXITED (unexpected, SIGKILL)", detail);
    check(process_gone(pid), "no qemu process left after kill", NULL);
    left = leftovers(dir, tail, sizeof(tail));
    check(left == 0, "no socket or file left after kill", tail);
    P.done_count = 0;
    r = hv_pause(hv, on_done, NULL, &err);
    check(r == -ESRCH, "operations on a dead VM fail at once", err_str(&err));
    err_clear(&err);
    hv_destroy(&hv);

    /* ---- run 3: hv_destroy of a running VM leaves nothing ---- */
    hv = new_vm(&cfg, "create (3)");
    r = hv ? hv_start(hv, on_done, NULL, &err) : -1;
    up = r == 0 && wait_done(1, 10000) && P.last_status == 0;
    pid = hv ? vm_pid(hv) : -1;
    hv_destroy(&hv);
    left = leftovers(dir, tail, sizeof(tail));
    check(up && process_gone(pid) && left == 0, "destroy of a running VM kills, reaps, cleans",
          tail);

    /* ---- run 4: guest boot ---- */
    if (!kernel) {
        printf("# skip: guest boot: no kernel given (build/guest/vmlinux missing)\n");
    } else {
        cfg.kernel = kernel;
        cfg.initrd = initrd;
        cfg.start_paused = false;
        struct hv_share sh = {.host_path = share, .mount_tag = "share"};
        cfg.shares = &sh;
        cfg.n_shares = 1;
        hv = new_vm(&cfg, "create (boot)");
        t0 = now_ms();
        r = hv ? hv_start(hv, on_done, NULL, &err) : -1;
        up = r == 0 && wait_done(1, 10000) && P.last_status == 0;
        check(up, "boot: qemu started with kernel and initrd", P.last_err);
        char line[512];
        ok = up && read_agent(hv_agent_socket(hv), "GUEST-READY", 60000, line, sizeof(line));
        snprintf(detail, sizeof(detail), "%.0f ms: %s", now_ms() - t0, line);
        check(ok, "boot: guest wrote GUEST-READY on the agent port", detail);
        snprintf(detail, sizeof(detail), "%s/guest-ready", share);
        check(ok && access(detail, F_OK) == 0, "boot: guest mounted the 9p share and wrote to it",
              detail);
        /* The probe guest powers off by itself; the VM's exit is reported. */
        ok = wait_for(&P.exited, 20000);
        if (!ok) {
            P.done_count = 0;
            hv_stop(hv, on_done, NULL, &err);
            wait_done(1, 10000);
        }
        check(P.exited, "boot: VM exit reported", NULL);
        hv_destroy(&hv);
        left = leftovers(dir, tail, sizeof(tail));
        check(left == 0, "boot: no socket or file left", tail);
    }

    err_clear(&err);
    event_base_free(base);
    if (!getenv("HV_PROBE_KEEP")) {
        char p[600];
        snprintf(p, sizeof(p), "%s/guest-ready", share);
        unlink(p);
        rmdir(share);
        snprintf(p, sizeof(p), "%s/console.log", dir);
        unlink(p);
        snprintf(p, sizeof(p), "%s/qemu.log", dir);
        unlink(p);
        if (dir == dir_buf)
            rmdir(dir);
    }
    return failures ? 1 : 0;
}
