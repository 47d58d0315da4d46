/* qemu command line, x86_64 part: q35, pc, microvm. */
#include <errno.h>
#include <string.h>

#include "hypervisors/qemu-internal.h"

/* Kata's parameters plus the initcall blacklist measured in
 * docs/guest-boot.md (minus pci=lastbus=0, which would hide hotplug root
 * ports); tsc_early_khz= is added by the common builder when known
 * (microvm hangs now and then in PIT calibration without it). */
#define X86_PARAMS                                                                                 \
    "tsc=reliable no_timer_check rcupdate.rcu_expedited=1 i8042.direct=1 i8042.dumbkbd=1 "         \
    "i8042.nopnp=1 i8042.noaux=1 noreplace-smp reboot=k cryptomgr.notests net.ifnames=0 "          \
    "panic=1 console=ttyS0 "                                                                       \
    "initcall_blacklist=crypto_kdf108_init,init_kprobe_trace,init_trace_printk_function_export"

const char *hv_qemu_base_params_x86(const struct hv_config *cfg)
{
    return X86_PARAMS;
}

int hv_qemu_arch_x86(const struct hv_config *cfg, struct hv_qemu_arch *a, err_t *err)
{
    memset(a, 0, sizeof(*a));
    a->console_dev = "ttyS0";
    if (!strcmp(cfg->machine, "q35")) {
        a->pci_suffix = "-pci";
        a->hotplug = true;
        a->root_ports = true;
    } else if (!strcmp(cfg->machine, "pc")) {
        a->pci_suffix = "-pci";
        a->hotplug = true;
    } else if (!strcmp(cfg->machine, "microvm")) {
        a->pci_suffix = "-device";
    } else {
        return err_make(err, EINVAL, "qemu: machine `%s` is not one of q35|pc|microvm for x86_64",
                        cfg->machine);
    }
    return 0;
}

int hv_qemu_argv_x86(const struct hv_qemu_argv_in *in, struct hv_qemu_strv *s, err_t *err)
{
    const struct hv_config *cfg = in->cfg;
    struct hv_qemu_arch a;
    int r = hv_qemu_arch_x86(cfg, &a, err);
    if (r < 0)
        return r;
    hv_qemu_strv_add(s, "-machine");
    if (!strcmp(cfg->machine, "microvm"))
        /* virtio-mmio devices are announced on the kernel command line by
         * qemu itself (auto-kernel-cmdline); no option ROMs to load. */
        hv_qemu_strv_add(s, "microvm,x-option-roms=off,isa-serial=on,rtc=on");
    else
        hv_qemu_strv_addf(s, "%s,smm=off,vmport=off", cfg->machine);
    hv_qemu_strv_add(s, "-accel");
    hv_qemu_strv_add(s, in->accel == HV_ACCEL_KVM ? "kvm" : "tcg");
    if (in->accel == HV_ACCEL_KVM) {
        hv_qemu_strv_add(s, "-cpu");
        hv_qemu_strv_add(s, "host");
    }
    /* Under TCG the default CPU model: -cpu max costs ~0.5 s of boot. */
    if (a.root_ports)
        for (unsigned i = 0; i < cfg->pci_slots; i++) {
            hv_qemu_strv_add(s, "-device");
            hv_qemu_strv_addf(s, "pcie-root-port,id=rp%u,bus=pcie.0,chassis=%u", i, i + 1);
        }
    return 0;
}
