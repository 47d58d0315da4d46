#include "agent/guest/init.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

double agent_uptime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int do_mount(const char *src, const char *dst, const char *type, unsigned long fl,
                    const char *data, err_t *err)
{
    if (mkdir(dst, 0755) < 0 && errno != EEXIST)
        return err_errno(err, "mkdir %s", dst);
    if (mount(src, dst, type, fl, data) < 0 && errno != EBUSY)
        return err_errno(err, "mount %s on %s", type, dst);
    return 0;
}

static void enable_controllers(void)
{
    char buf[1024];
    int fd = open(AGENT_CGROUP_DIR "/cgroup.controllers", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = 0;
    int sc = open(AGENT_CGROUP_DIR "/cgroup.subtree_control", O_WRONLY | O_CLOEXEC);
    if (sc < 0)
        return;
    for (char *save = NULL, *c = strtok_r(buf, " \n", &save); c; c = strtok_r(NULL, " \n", &save)) {
        char w[64];
        int l = snprintf(w, sizeof w, "+%s", c);
        if (write(sc, w, (size_t)l) < 0)
            log_warn("enable cgroup controller %s: %s", c, strerror(errno));
    }
    close(sc);
}

int agent_init_mounts(err_t *err)
{
    const unsigned long nse = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (do_mount("proc", "/proc", "proc", nse, NULL, err) < 0 ||
        do_mount("sysfs", "/sys", "sysfs", nse, NULL, err) < 0 ||
        do_mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755", err) < 0 ||
        do_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666",
                 err) < 0 ||
        do_mount("shm", "/dev/shm", "tmpfs", nse, "mode=1777", err) < 0 ||
        do_mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", err) < 0)
        return -1;
    if (do_mount("cgroup2", AGENT_CGROUP_DIR, "cgroup2", nse, NULL, err) < 0) {
        log_warn("%s: containers get no cgroup", err_str(err));
        err_clear(err);
    } else {
        enable_controllers();
    }
    return 0;
}

int agent_load_modules(const char *path, int part, err_t *err)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char line[1024];
    int n = 0, late = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!strcmp(line, "#early-end")) {
            if (part == 1)
                break;
            late = 1;
        }
        if (!line[0] || line[0] == '#' || (part == 2 && !late))
            continue;
        int fd = open(line, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            int r = err_errno(err, "open module %s", line);
            fclose(f);
            return r;
        }
        long r = syscall(SYS_finit_module, fd, "", 0);
        int e = errno;
        close(fd);
        if (r == 0)
            n++;
        else if (e == ENODEV)
            log_info("module %s: no such device, skipped", line);
        else if (e != EEXIST) {
            fclose(f);
            return err_make(err, e, "finit_module %s: %s", line, strerror(e));
        }
    }
    fclose(f);
    return n;
}

static int read_name(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    return (int)n;
}

int agent_open_port(const char *name, int timeout_ms, char *dev, size_t devlen, err_t *err)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        DIR *d = opendir("/sys/class/virtio-ports");
        if (d) {
            struct dirent *de;
            while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                    continue;
                char p[512], nm[128];
                snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", de->d_name);
                if (read_name(p, nm, sizeof nm) <= 0 || strcmp(nm, name))
                    continue;
                snprintf(p, sizeof p, "/dev/%s", de->d_name);
                int fd = open(p, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
                if (fd >= 0) {
                    snprintf(dev, devlen, "%s", de->d_name);
                    closedir(d);
                    return fd;
                }
            }
            closedir(d);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms > timeout_ms)
            return err_make(err, ENODEV, "no virtio-serial port named %s after %d ms", name,
                            timeout_ms);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

int agent_local_mounts(err_t *err)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return err_errno(err, "make / private");
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return err_errno(err, "mount proc on /proc");
    return 0;
}
