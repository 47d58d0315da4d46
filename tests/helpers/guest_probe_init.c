/* guest_probe_init: a stand-in for husk-agent as /init of the guest
 * initramfs, used to test the image builder (tools/mkguest.sh) and to
 * measure boot time (tests/e2e/guest_boot.sh, docs/guest-boot.md).
 *
 * It does what the agent's start-up must do, and nothing else:
 *   1. mount /proc, /sys, /dev (devtmpfs);
 *   2. load the modules listed in /lib/modules/load-order with
 *      finit_module(2), in order (EEXIST: fine; ENODEV: hardware absent);
 *      with "probe.early" on the kernel command line only those before the
 *      "#early-end" line, the rest after GUEST-READY (as an agent would);
 *   3. find the virtio-serial port named "agent.0" through
 *      /sys/class/virtio-ports/<dev>/name (no udev) and open /dev/<dev>;
 *   4. mount every 9p share (mount tags from
 *      /sys/bus/virtio/drivers/9pnet_virtio/<dev>/mount_tag) on
 *      /mnt/<tag> and write a file "guest-ready" into it;
 *   5. write one line to the console and to the port:
 *        GUEST-READY uptime=<s> modules=<n> modload_ms=<ms> port=<dev> share=<tag|none>
 *      (or GUEST-FAIL <reason>);
 *   6. power off (reboot(RB_POWER_OFF); falls back to RB_AUTOBOOT, which
 *      makes QEMU exit when run with -no-reboot).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LOAD_ORDER   "/lib/modules/load-order"
#define PORT_NAME    "agent.0"
#define PORT_WAIT_MS 10000

static int console_fd = -1;
static int verbose; /* "probe.verbose" on the kernel command line */
static int early;   /* "probe.early": split the module load at #early-end */

static void out(int fd, const char *fmt, va_list ap)
{
    char buf[512];
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof buf)
        n = sizeof buf - 1;
    size_t off = 0;
    while (off < (size_t)n) {
        ssize_t w = write(fd, buf + off, (size_t)n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

static void con(const char *fmt, ...)
{
    if (console_fd < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    out(console_fd, fmt, ap);
    va_end(ap);
}

static void port_write(int fd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    out(fd, fmt, ap);
    va_end(ap);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return (int)n;
}

static void power_off(void)
{
    sync();
    reboot(RB_POWER_OFF);
    /* no ACPI/poweroff path: a reboot makes QEMU exit under -no-reboot */
    reboot(RB_AUTOBOOT);
    for (;;)
        pause();
}

static void fail(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    con("GUEST-FAIL %s\n", buf);
    power_off();
}

static void mount_or_fail(const char *src, const char *dst, const char *type, unsigned long fl)
{
    mkdir(dst, 0755);
    if (mount(src, dst, type, fl, NULL) < 0 && errno != EBUSY)
        fail("mount %s on %s: %s", type, dst, strerror(errno));
}

/* Loads the modules of load-order: phase 0 = all, 1 = up to #early-end,
 * 2 = after it.  Returns how many were loaded; fails on a hard error. */
static int load_modules(int phase)
{
    FILE *f = fopen(LOAD_ORDER, "re");
    if (!f) {
        con("probe: no %s: %s\n", LOAD_ORDER, strerror(errno));
        return 0;
    }
    char line[512];
    int n = 0, late = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strcmp(line, "#early-end") == 0) {
            if (phase == 1)
                break;
            late = 1;
        }
        if (line[0] == '\0' || line[0] == '#')
            continue;
        if (phase == 2 && !late)
            continue;
        int fd = open(line, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            fail("open module %s: %s", line, strerror(errno));
        double t = now_ms();
        long r = syscall(SYS_finit_module, fd, "", 0);
        int e = errno;
        close(fd);
        if (verbose)
            con("probe: %.1f ms %s\n", now_ms() - t, line);
        if (r == 0) {
            n++;
        } else if (e == EEXIST) {
            /* already loaded or built in */
        } else if (e == ENODEV) {
            con("probe: %s: no such device (skipped)\n", line);
        } else {
            fail("finit_module %s: %s", line, strerror(e));
        }
    }
    fclose(f);
    return n;
}

/* Polls /sys/class/virtio-ports for the port named PORT_NAME: the port is
 * announced by the host over the control queue after the driver binds, so
 * it can appear a little after virtio_console is loaded. */
static int open_agent_port(char *dev, size_t devlen)
{
    double deadline = now_ms() + PORT_WAIT_MS;
    for (;;) {
        DIR *d = opendir("/sys/class/virtio-ports");
        if (d) {
            struct dirent *de;
            while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                    continue;
                char p[512], name[128];
                snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", de->d_name);
                if (read_small(p, name, sizeof name) <= 0 || strcmp(name, PORT_NAME) != 0)
                    continue;
                snprintf(p, sizeof p, "/dev/%s", de->d_name);
                int fd = open(p, O_RDWR | O_CLOEXEC | O_NOCTTY);
                if (fd >= 0) {
                    memcpy(dev, de->d_name, strnlen(de->d_name, devlen - 1));
                    dev[strnlen(de->d_name, devlen - 1)] = '\0';
                    closedir(d);
                    return fd;
                }
            }
            closedir(d);
        }
        if (now_ms() > deadline)
            return -1;
        sleep_ms(2);
    }
}

/* Mounts the first 9p share found on /mnt/<tag>, writes guest-ready into it. */
static void mount_share(char *tag, size_t taglen, const char *line)
{
    snprintf(tag, taglen, "none");
    DIR *d = opendir("/sys/bus/virtio/drivers/9pnet_virtio");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "virtio", 6) != 0)
            continue;
        char p[512], t[64];
        snprintf(p, sizeof p, "/sys/bus/virtio/drivers/9pnet_virtio/%s/mount_tag", de->d_name);
        if (read_small(p, t, sizeof t) <= 0)
            continue;
        snprintf(p, sizeof p, "/mnt/%s", t);
        mkdir(p, 0755);
        if (mount(t, p, "9p", 0, "trans=virtio,version=9p2000.L,msize=262144") < 0) {
            fail("mount 9p %s: %s", t, strerror(errno));
        }
        char fp[600];
        snprintf(fp, sizeof fp, "%s/guest-ready", p);
        int fd = open(fp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            fail("write %s: %s", fp, strerror(errno));
        port_write(fd, "%s", line);
        close(fd);
        snprintf(tag, taglen, "%s", t);
        break;
    }
    closedir(d);
}

int main(void)
{
    console_fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
    mount_or_fail("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
    mount_or_fail("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC);
    mount_or_fail("devtmpfs", "/dev", "devtmpfs", MS_NOSUID);
    if (console_fd < 0)
        console_fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);

    char cmdline[1024];
    if (read_small("/proc/cmdline", cmdline, sizeof cmdline) > 0) {
        verbose = strstr(cmdline, "probe.verbose") != NULL;
        early = strstr(cmdline, "probe.early") != NULL;
    }

    double t0 = now_ms();
    int nmod = load_modules(early ? 1 : 0);
    double modload = now_ms() - t0;

    char dev[256];
    int port = open_agent_port(dev, sizeof dev);
    if (port < 0)
        fail("no virtio-serial port named %s after %d ms", PORT_NAME, PORT_WAIT_MS);

    char tag[64];
    mount_share(tag, sizeof tag, "ok\n");

    char uptime[64] = "?";
    if (read_small("/proc/uptime", uptime, sizeof uptime) > 0)
        uptime[strcspn(uptime, " ")] = '\0';

    char line[512];
    snprintf(line, sizeof line,
             "GUEST-READY uptime=%s modules=%d modload_ms=%.0f port=%s share=%s\n", uptime, nmod,
             modload, dev, tag);
    con("%s", line);
    port_write(port, "%s", line);
    if (early) {
        t0 = now_ms();
        int nlate = load_modules(2);
        con("GUEST-LATE modules=%d modload_ms=%.0f\n", nlate, now_ms() - t0);
    }
    /* let the host side drain the port before the device goes away */
    fsync(port);
    close(port);
    power_off();
    return 0;
}
