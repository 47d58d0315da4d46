/* husk-agent: the guest agent.
 *
 *   husk-agent                       as PID 1 of the guest initramfs
 *   husk-agent --channel-fd N --root DIR [--cgroup-root DIR|none]
 *              [--log-level LEVEL]   on a host (the local backend)
 *
 * As PID 1: mounts /proc, /sys, /dev, /dev/pts, /run and cgroup2, loads the
 * modules of /lib/modules/load-order (those before "#early-end" first; the
 * rest in a child while serving), opens the virtio-serial port named
 * agent.0 and serves it (agent/guest/agent.h).  It never exits: should the
 * server fail, it powers the VM off.  The kernel command line may carry
 * agent.log=debug|info|warn|error.
 *
 * On a host it takes the channel as an inherited descriptor and keeps its
 * state under --root; when it is PID 1 of a fresh pid namespace it mounts a
 * /proc of its own (in its private mount namespace).  It exits when the
 * channel closes, on SIGTERM, or SIGINT, killing its containers. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/guest/agent.h"
#include "agent/guest/container.h"
#include "agent/guest/init.h"
#include "common/log.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

static bool is_cgroup2(const char *path)
{
    struct statfs sf;
    return statfs(path, &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC;
}

static void usage(void)
{
    fprintf(stderr, "usage: husk-agent                     (as PID 1 of the guest)\n"
                    "       husk-agent --channel-fd N --root DIR [--cgroup-root DIR|none]\n"
                    "                  [--log-level debug|info|warn|error]\n");
}

static _Noreturn void power_off(void)
{
    sync();
    reboot(RB_POWER_OFF);
    reboot(RB_AUTOBOOT);
    for (;;)
        pause();
}

static int run_init(int level)
{
    err_t err = ERR_INIT;
    if (agent_init_mounts(&err) < 0) {
        log_error("init: %s", err_str(&err));
        power_off();
    }
    char cmdline[2048] = "";
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
        cmdline[n > 0 ? n : 0] = 0;
        close(fd);
    }
    char *l = strstr(cmdline, "agent.log=");
    if (l) {
        char lv[16];
        snprintf(lv, sizeof lv, "%.*s", (int)strcspn(l + 10, " \n"), l + 10);
        if ((level = log_level_parse(lv)) >= 0)
            log_setup(2, LOG_FMT_LOGFMT, (enum log_level)level);
    }
    int n = agent_load_modules(AGENT_LOAD_ORDER, 1, &err);
    if (n < 0) {
        log_error("init: %s", err_str(&err));
        power_off();
    }
    char dev[64];
    int port = agent_open_port(AGENT_PORT_NAME, 10000, dev, sizeof dev, &err);
    if (port < 0) {
        log_error("init: %s", err_str(&err));
        power_off();
    }
    log_info("husk-agent %s ready: port %s (/dev/%s), %d early modules, uptime %.3f s",
             AGENT_VERSION_STR, AGENT_PORT_NAME, dev, n, agent_uptime());
    /* The rest of the modules load beside the server (reaped by it), at
     * idle priority: on one vCPU they would otherwise hold up the first
     * requests by ~0.15 s, and the first container needs none of them (a
     * NIC's update_interface waits for its device). */
    pid_t pid = fork();
    if (pid == 0) {
        err_t e2 = ERR_INIT;
        struct sched_param sp = {0};
        if (sched_setscheduler(0, SCHED_IDLE, &sp) < 0)
            log_warn("late modules: SCHED_IDLE: %s", strerror(errno));
        int m = agent_load_modules(AGENT_LOAD_ORDER, 2, &e2);
        if (m < 0)
            log_warn("late modules: %s", err_str(&e2));
        else
            log_debug("late modules: %d loaded, uptime %.3f s", m, agent_uptime());
        _exit(m < 0 ? 1 : 0);
    }
    agent_opts_t opts = {
        .channel_fd = port,
        .virtio_port = true,
        .root = "/run/husk-agent",
        .cgroup_root = is_cgroup2(AGENT_CGROUP_DIR) ? AGENT_CGROUP_DIR : NULL,
        .init = true,
        .listen_fd = -1,
        .late_loader = pid > 0 ? pid : 0,
    };
    if (agent_serve(&opts, &err) < 0)
        log_error("agent: %s", err_str(&err));
    else
        log_error("agent: the server ended");
    power_off();
}

int main(int argc, char **argv)
{
    int chan = -1, level = LOG_INFO;
    const char *root = NULL, *cg = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--channel-fd") && v) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 0 || n > INT_MAX) {
                fprintf(stderr, "husk-agent: --channel-fd %s: not a descriptor\n", v);
                return 2;
            }
            chan = (int)n;
            i++;
        } else if (!strcmp(a, "--root") && v) {
            root = v;
            i++;
        } else if (!strcmp(a, "--cgroup-root") && v) {
            cg = v;
            i++;
        } else if (!strcmp(a, "--log-level") && v) {
            if ((level = log_level_parse(v)) < 0) {
                fprintf(stderr, "husk-agent: --log-level %s: unknown level\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--version")) {
            printf("husk-agent %s\n", AGENT_VERSION_STR);
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    log_setup(2, LOG_FMT_LOGFMT, (enum log_level)level);
    log_set_component("agent-guest");
    if (chan < 0) {
        if (getpid() != 1) {
            fprintf(stderr, "husk-agent: not PID 1: give --channel-fd and --root\n");
            usage();
            return 2;
        }
        return run_init(level);
    }
    if (!root) {
        fprintf(stderr, "husk-agent: --channel-fd needs --root DIR\n");
        return 2;
    }
    if (fcntl(chan, F_SETFD, FD_CLOEXEC) < 0) {
        fprintf(stderr, "husk-agent: --channel-fd %d: %s\n", chan, strerror(errno));
        return 2;
    }
    err_t err = ERR_INIT;
    if (getpid() == 1 && agent_local_mounts(&err) < 0) {
        log_error("%s", err_str(&err));
        return 1;
    }
    /* cgroup v2: given, or a fresh directory on the unified hierarchy */
    char made[PATH_MAX] = "";
    if (cg && !strcmp(cg, "none")) {
        cg = NULL;
    } else if (!cg) {
        const char *base = is_cgroup2("/sys/fs/cgroup")           ? "/sys/fs/cgroup"
                           : is_cgroup2("/sys/fs/cgroup/unified") ? "/sys/fs/cgroup/unified"
                                                                  : NULL;
        if (base) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            snprintf(made, sizeof made, "%s/husk-agent.%lx%lx", base, (long)ts.tv_sec,
                     (long)ts.tv_nsec);
            if (mkdir(made, 0755) < 0) {
                log_warn("mkdir %s: %s; containers get no cgroup", made, strerror(errno));
                made[0] = 0;
            } else {
                cg = made;
            }
        } else {
            log_warn("no cgroup v2 hierarchy: containers get no cgroup (no pause, fewer stats)");
        }
    } else if (!is_cgroup2(cg)) {
        fprintf(stderr, "husk-agent: --cgroup-root %s: not a cgroup v2 directory\n", cg);
        return 2;
    }
    /* The local backend hands over a listening socket (same shape as
     * qemu's chardev): wait for the host to connect. */
    int listening = 0, listen_fd = -1;
    socklen_t optlen = sizeof listening;
    if (getsockopt(chan, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) == 0 && listening) {
        int c;
        while ((c = accept4(chan, NULL, NULL, SOCK_CLOEXEC)) < 0 && errno == EINTR)
            ;
        if (c < 0) {
            log_error("accept on the channel: %s", strerror(errno));
            return 1;
        }
        listen_fd = chan; /* kept: a restarted daemon connects again */
        chan = c;
    }
    container_cgroup_host_mode(true); /* on a host: skip controllers it lacks */
    agent_opts_t opts = {
        .channel_fd = chan, .root = root, .cgroup_root = cg, .listen_fd = listen_fd};
    int rc = agent_serve(&opts, &err);
    if (rc < 0)
        log_error("%s", err_str(&err));
    if (made[0] && rmdir(made) < 0)
        log_warn("rmdir %s: %s", made, strerror(errno));
    return rc < 0 ? 1 : 0;
}
