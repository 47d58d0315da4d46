/* agent/guest/init: what husk-agent does as PID 1 of the guest before it
 * serves: the early mounts, kernel modules, and finding its port. */
#ifndef HUSK_AGENT_GUEST_INIT_H
#define HUSK_AGENT_GUEST_INIT_H

#include <stddef.h>

#include "common/err.h"

#define AGENT_LOAD_ORDER "/lib/modules/load-order"
#define AGENT_PORT_NAME  "agent.0"
#define AGENT_CGROUP_DIR "/sys/fs/cgroup"

/* Mounts /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm, /run and cgroup2
 * at /sys/fs/cgroup, and enables every available controller in the root's
 * cgroup.subtree_control.  Already-mounted targets are fine (EBUSY). */
int agent_init_mounts(err_t *err);

/* Loads the modules listed in path (one absolute .ko path per line, '#'
 * starts a comment) with finit_module(2).  part: 0 = all, 1 = up to the
 * "#early-end" line, 2 = after it.  EEXIST is success, ENODEV means the
 * hardware is absent (skipped).  A missing file loads nothing.  Returns
 * how many were loaded, or < 0 with err. */
int agent_load_modules(const char *path, int part, err_t *err);

/* Finds the virtio-serial port called name through
 * /sys/class/virtio-ports/<vportNpM>/name, polling up to timeout_ms for it
 * to appear, and opens /dev/<vportNpM> read-write, non-blocking.  dev gets
 * the device name.  Returns the fd or < 0 with err. */
int agent_open_port(const char *name, int timeout_ms, char *dev, size_t devlen, err_t *err);

/* In a fresh pid + mount namespace (the local backend): makes mounts
 * private and mounts a new /proc for this pid namespace. */
int agent_local_mounts(err_t *err);

/* Seconds since boot (CLOCK_BOOTTIME). */
double agent_uptime(void);

#endif
