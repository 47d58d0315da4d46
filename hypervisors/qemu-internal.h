/* qemu-internal: shared by qemu.c and the per-architecture command-line
 * builders (qemu_argv_x86.c, qemu_argv_arm64.c).  Not for callers. */
#ifndef HUSK_HV_QEMU_INTERNAL_H
#define HUSK_HV_QEMU_INTERNAL_H

#include "hypervisors/hv.h"

/* A growing NULL-terminated vector of owned strings.  An allocation
 * failure is remembered in `oom` and reported once at the end. */
struct hv_qemu_strv {
    char **v;
    size_t n, cap;
    bool oom;
};

void hv_qemu_strv_add(struct hv_qemu_strv *s, const char *arg);
void hv_qemu_strv_addf(struct hv_qemu_strv *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void hv_qemu_strv_free(char ***v_p);

/* Fixed fd numbers in the child: QMP and agent listening sockets. */
#define HV_QEMU_QMP_FD   3
#define HV_QEMU_AGENT_FD 4

/* Everything a builder needs besides the config. */
struct hv_qemu_argv_in {
    const struct hv_config *cfg;
    enum hv_accel accel;     /* KVM or TCG (already resolved) */
    const char *console_log; /* serial console log file */
    const char *slot_dir;    /* 9p hotplug slots: <slot_dir>/<n> and <n>ro */
    unsigned tsc_khz;        /* host TSC kHz for tsc_early_khz= (x86), 0: omit */
};

/* The host TSC frequency in kHz from a cpuinfo file ("cpu MHz"), 0 if
 * unknown. */
unsigned hv_qemu_host_tsc_khz(const char *cpuinfo);

/* Per-architecture parts: machine, cpu, kernel parameters, buses. */
struct hv_qemu_arch {
    const char *console_dev; /* kernel console device, "ttyS0" */
    const char *pci_suffix;  /* "-pci" or "-device" (virtio-mmio) */
    bool hotplug;            /* PCI hotplug available */
    bool root_ports;         /* hotplug needs pcie-root-ports rp<N> */
};

/* Fills `a` for the machine type, or fails with EINVAL naming it. */
int hv_qemu_arch_x86(const struct hv_config *cfg, struct hv_qemu_arch *a, err_t *err);
int hv_qemu_arch_arm64(const struct hv_config *cfg, struct hv_qemu_arch *a, err_t *err);
/* Appends the machine, accel/cpu and platform devices. */
int hv_qemu_argv_x86(const struct hv_qemu_argv_in *in, struct hv_qemu_strv *s, err_t *err);
int hv_qemu_argv_arm64(const struct hv_qemu_argv_in *in, struct hv_qemu_strv *s, err_t *err);
/* Kernel parameters husk always passes (before cfg->kernel_params). */
const char *hv_qemu_base_params_x86(const struct hv_config *cfg);
const char *hv_qemu_base_params_arm64(const struct hv_config *cfg);

/* The whole command line.  Caller owns *argv (hv_qemu_strv_free). */
int hv_qemu_build_argv(const struct hv_qemu_argv_in *in, char ***argv, err_t *err);
/* The architecture part for cfg. */
int hv_qemu_arch_for(const struct hv_config *cfg, struct hv_qemu_arch *a, err_t *err);

#endif
