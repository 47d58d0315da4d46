/* qemu command line, aarch64 part: the `virt` machine. */
#include <errno.h>
#include <string.h>

#include "hypervisors/qemu-internal.h"

#define ARM64_PARAMS                                                                               \
    "rcupdate.rcu_expedited=1 cryptomgr.notests net.ifnames=0 panic=1 console=ttyAMA0"

const char *hv_qemu_base_params_arm64(const struct hv_config *cfg)
{
    return ARM64_PARAMS;
}

int hv_qemu_arch_arm64(const struct hv_config *cfg, struct hv_qemu_arch *a, err_t *err)
{
    memset(a, 0, sizeof(*a));
    if (strcmp(cfg->machine, "virt"))
        return err_make(err, EINVAL, "qemu: machine `%s` is not `virt` for aarch64", cfg->machine);
    a->console_dev = "ttyAMA0";
    a->pci_suffix = "-pci";
    a->hotplug = true;
    a->root_ports = true;
    return 0;
}

int hv_qemu_argv_arm64(const struct hv_qemu_argv_in *in, struct hv_qemu_strv *s, err_t *err)
{
    const struct hv_config *cfg = in->cfg;
    struct hv_qemu_arch a;
    int r = hv_qemu_arch_arm64(cfg, &a, err);
    if (r < 0)
        return r;
    bool kvm = in->accel == HV_ACCEL_KVM;
    hv_qemu_strv_add(s, "-machine");
    hv_qemu_strv_add(s, kvm ? "virt,gic-version=host" : "virt,gic-version=3");
    hv_qemu_strv_add(s, "-accel");
    hv_qemu_strv_add(s, kvm ? "kvm" : "tcg");
    hv_qemu_strv_add(s, "-cpu");
    /* virt defaults to a 32-bit cortex-a15: name a 64-bit model. */
    hv_qemu_strv_add(s, kvm ? "host" : "cortex-a57");
    for (unsigned i = 0; i < cfg->pci_slots; i++) {
        hv_qemu_strv_add(s, "-device");
        hv_qemu_strv_addf(s, "pcie-root-port,id=rp%u,bus=pcie.0,chassis=%u", i, i + 1);
    }
    return 0;
}
