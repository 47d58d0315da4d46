/* agent/guest/caps: OCI capability names to the five kernel sets. */
#include <errno.h>
#include <linux/capability.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/guest/container-internal.h"

/* Index = capability number (linux/capability.h). */
static const char *const cap_names[] = {
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
};
#define NCAPS ((int)(sizeof(cap_names) / sizeof(*cap_names)))

static int cap_number(const char *name)
{
    for (int i = 0; i < NCAPS; i++)
        if (strcmp(cap_names[i], name) == 0)
            return i;
    return -1;
}

/* Highest capability the running kernel knows. */
static int cap_last(void)
{
    static int last = -1;
    if (last < 0) {
        FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
        int v = -1;
        if (f) {
            if (fscanf(f, "%d", &v) != 1)
                v = -1;
            fclose(f);
        }
        last = v >= 0 && v < 64 ? v : NCAPS - 1;
    }
    return last;
}

int container_caps_validate(const oci_process_t *p, err_t *err)
{
    if (!p->has_capabilities)
        return 0;
    for (int s = 0; s < OCI_CAP_NSETS; s++)
        for (size_t i = 0; i < p->n_caps[s]; i++)
            if (cap_number(p->caps[s][i]) < 0)
                return err_make(err, EINVAL, "process.capabilities.%s[%zu]: unknown capability %s",
                                oci_cap_set_name(s), i, p->caps[s][i]);
    return 0;
}

/* Capabilities newer than the kernel are skipped: it could not grant them. */
static uint64_t cap_mask(const oci_process_t *p, enum oci_cap_set set)
{
    uint64_t m = 0;
    for (size_t i = 0; i < p->n_caps[set]; i++) {
        int c = cap_number(p->caps[set][i]);
        if (c >= 0 && c <= cap_last())
            m |= 1ULL << c;
    }
    return m;
}

int container_caps_bounding(const oci_process_t *p, err_t *err)
{
    if (!p->has_capabilities)
        return 0;
    uint64_t keep = cap_mask(p, OCI_CAP_BOUNDING);
    for (int c = 0; c <= cap_last(); c++) {
        if (keep & (1ULL << c))
            continue;
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
            return err_errno(err, "drop %s from the bounding set",
                             c < NCAPS ? cap_names[c] : "capability");
    }
    return 0;
}

int container_caps_apply(const oci_process_t *p, err_t *err)
{
    if (!p->has_capabilities)
        return 0;
    uint64_t eff = cap_mask(p, OCI_CAP_EFFECTIVE), prm = cap_mask(p, OCI_CAP_PERMITTED);
    uint64_t inh = cap_mask(p, OCI_CAP_INHERITABLE), amb = cap_mask(p, OCI_CAP_AMBIENT);
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2] = {
        {.effective = (uint32_t)eff, .permitted = (uint32_t)prm, .inheritable = (uint32_t)inh},
        {.effective = (uint32_t)(eff >> 32),
         .permitted = (uint32_t)(prm >> 32),
         .inheritable = (uint32_t)(inh >> 32)},
    };
    if (syscall(SYS_capset, &hdr, data) < 0)
        return err_errno(err, "capset");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return err_errno(err, "clear ambient capabilities");
    for (int c = 0; c <= cap_last(); c++) {
        if (!(amb & (1ULL << c)))
            continue;
        /* as runc: an ambient capability the kernel refuses (not permitted
         * and inheritable) is skipped, not fatal; the host runtime logs it */
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0 && errno != EPERM)
            return err_errno(err, "raise ambient %s", cap_names[c]);
    }
    return 0;
}
