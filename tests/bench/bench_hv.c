/* bench_hv: exec -> QMP negotiated, husk's qemu backend vs bare qemu.
 *
 * husk: hv_new + hv_start (prepare: accel detection, argv, 9p slots;
 * sockets, fork, pidfd, exec) until the start completion, i.e. greeting
 * read and qmp_capabilities answered, all on a libevent loop.
 * bare: the very same argv (built by the same builder) started with
 * posix_spawn, the same listening sockets inherited as fds 3 and 4, then a
 * blocking connect / read greeting / qmp_capabilities / read answer.
 * Runs alternate; medians printed with the ratio and the ms overhead.
 *
 *   bench_hv [runs] [machine]     (default 20 q35) */
#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <signal.h>
#include <stdbool.h>
#include <spawn.h>
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
#include "hypervisors/qemu-internal.h"
#include "hypervisors/qmp.h"

extern char **environ;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof(*v), cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int done_count, done_status;
static void on_done(hv_t *hv, void *arg, int status, const err_t *err)
{
    done_count++;
    done_status = status;
    if (status < 0)
        fprintf(stderr, "bench: %s\n", err_str(err));
}

static int listen_at(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0)
        return -1;
    /* Above the target numbers, so the spawn's dup2s cannot clobber. */
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    close(fd);
    return high;
}

static ssize_t read_line(int fd, char *buf, size_t len)
{
    size_t n = 0;
    while (n + 1 < len) {
        ssize_t r = read(fd, buf + n, 1);
        if (r <= 0)
            return -1;
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = '\0';
    return (ssize_t)n;
}

/* One bare run; returns ms from spawn to qmp_capabilities answered. */
static double bare_run(char **argv, const char *dir)
{
    char qp[100], ap[100], line[4096];
    snprintf(qp, sizeof(qp), "%s/bare-qmp.sock", dir);
    snprintf(ap, sizeof(ap), "%s/bare-agent.sock", dir);
    double t0 = now_ms();
    int ql = listen_at(qp), al = listen_at(ap);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, ql, HV_QEMU_QMP_FD);
    posix_spawn_file_actions_adddup2(&fa, al, HV_QEMU_AGENT_FD);
    pid_t pid;
    int r = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(ql);
    close(al);
    if (r != 0)
        return -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", qp);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    double t = -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        read_line(fd, line, sizeof(line)) > 0 &&
        write(fd, "{\"execute\":\"qmp_capabilities\"}\n", 31) == 31 &&
        read_line(fd, line, sizeof(line)) > 0 && strstr(line, "return"))
        t = now_ms() - t0;
    /* Wait for quit's answer: closing first makes qemu drop the command. */
    bool quit_ok = write(fd, "{\"execute\":\"quit\"}\n", 19) == 19;
    while (quit_ok && read_line(fd, line, sizeof(line)) > 0 && !strstr(line, "\"return\""))
        ;
    if (!quit_ok)
        kill(pid, SIGKILL);
    close(fd);
    waitpid(pid, NULL, 0);
    unlink(qp);
    unlink(ap);
    return t;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 20;
    const char *machine = argc > 2 ? argv[2] : "q35";
    if (runs < 1)
        runs = 1;
    signal(SIGPIPE, SIG_IGN);
    log_setup(2, LOG_FMT_LOGFMT, LOG_WARN);
    if (access("/usr/bin/qemu-system-x86_64", X_OK) < 0) {
        printf("bench_hv: skip: /usr/bin/qemu-system-x86_64 missing\n");
        return 77;
    }
    char dir[64] = "/tmp/bench_hv.XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    struct event_base *base = event_base_new();
    struct hv_config cfg;
    hv_config_init(&cfg);
    cfg.id = "bench";
    cfg.sandbox_dir = dir;
    cfg.binary = "/usr/bin/qemu-system-x86_64";
    cfg.machine = machine;
    cfg.memory_mib = 256;
    cfg.start_paused = true;
    cfg.accel = HV_ACCEL_TCG;

    /* The bare argv: same builder, same slot layout (own dir). */
    char slots[128], empty[160], link[200];
    snprintf(slots, sizeof(slots), "%s/bare-slots", dir);
    snprintf(empty, sizeof(empty), "%s/empty", slots);
    mkdir(slots, 0700);
    mkdir(empty, 0500);
    for (unsigned i = 0; i < cfg.fs_slots; i++) {
        snprintf(link, sizeof(link), "%s/%u", slots, i);
        symlink(empty, link);
        snprintf(link, sizeof(link), "%s/%uro", slots, i);
        symlink(empty, link);
    }
    char console[128];
    snprintf(console, sizeof(console), "%s/bare-console.log", dir);
    struct hv_qemu_argv_in in = {
        .cfg = &cfg, .accel = HV_ACCEL_TCG, .console_log = console, .slot_dir = slots};
    char **bare_argv = NULL;
    err_t err = ERR_INIT;
    if (hv_qemu_build_argv(&in, &bare_argv, &err) < 0) {
        fprintf(stderr, "bench_hv: %s\n", err_str(&err));
        return 1;
    }

    double *h = calloc(runs, sizeof(double)), *b = calloc(runs, sizeof(double));
    int nh = 0, nb = 0;
    for (int i = 0; i < runs + 1; i++) { /* first pair: warm-up */
        double tb = bare_run(bare_argv, dir);
        hv_t *hv = NULL;
        done_count = 0;
        double t0 = now_ms();
        if (hv_new(&hv_qemu_ops, base, &cfg, &hv, &err) < 0 ||
            hv_start(hv, on_done, NULL, &err) < 0) {
            fprintf(stderr, "bench_hv: %s\n", err_str(&err));
            return 1;
        }
        while (done_count == 0)
            event_base_loop(base, EVLOOP_ONCE);
        double th = now_ms() - t0;
        done_count = 0;
        hv_stop(hv, on_done, NULL, &err);
        while (done_count == 0)
            event_base_loop(base, EVLOOP_ONCE);
        hv_destroy(&hv);
        if (i == 0)
            continue;
        if (done_status == 0)
            h[nh++] = th;
        if (tb > 0)
            b[nb++] = tb;
    }
    double mh = median(h, nh), mb = median(b, nb);
    printf("bench_hv: exec -> QMP negotiated, %s -S -nodefaults TCG, %d runs (medians)\n", machine,
           runs);
    printf("  bare qemu (posix_spawn, same argv): %7.2f ms  (min %.2f, max %.2f)\n", mb, b[0],
           b[nb - 1]);
    printf("  husk qemu backend (hv_start):        %7.2f ms  (min %.2f, max %.2f)\n", mh, h[0],
           h[nh - 1]);
    printf("  ratio %.3f, overhead %+.2f ms\n", mh / mb, mh - mb);
    hv_qemu_strv_free(&bare_argv);
    free(h);
    free(b);
    event_base_free(base);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
