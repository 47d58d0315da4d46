/* agent/guest/devfilter: linux.resources.devices as a cgroup v2 device
 * filter (an eBPF program of type CGROUP_DEVICE attached to the container's
 * cgroup), the way runc does on a cgroup v2 host.
 *
 * Semantics (those of the cgroup v1 device controller, which the OCI rules
 * were written for): the rules of the spec are followed by runc's default
 * allowed devices (mknod of any node; /dev/null, zero, full, random,
 * urandom, tty, console, ptmx, the pts and tun/tap).  Each access an
 * opener asks for (m, r, w) is decided on its own by the last rule that
 * names that access and matches the device (type `a` matches both c and b;
 * an absent major or minor, or -1, matches any); an access no rule decides
 * is allowed.  An open for "rw" succeeds only when both r and w are
 * allowed.
 *
 * The program is attached without BPF_F_ALLOW_MULTI or _OVERRIDE: a new
 * attach (an update) replaces it, and no process in the container can
 * attach a program of its own below it. */
#ifndef HUSK_AGENT_GUEST_DEVFILTER_H
#define HUSK_AGENT_GUEST_DEVFILTER_H

#include <linux/bpf.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "oci/spec.h"

/* The access bits of struct bpf_cgroup_dev_ctx. */
enum devfilter_access {
    DEVFILTER_MKNOD = BPF_DEVCG_ACC_MKNOD,
    DEVFILTER_READ = BPF_DEVCG_ACC_READ,
    DEVFILTER_WRITE = BPF_DEVCG_ACC_WRITE,
};

/* Builds the program for rules[0..n) followed by the default allowed
 * devices.  Caller owns *insns (free()).  EINVAL for a rule the spec parser
 * would not accept (a type other than a, c, b; access beyond rwm). */
int devfilter_build(const oci_device_rule_t *rules, size_t n, struct bpf_insn **insns,
                    size_t *n_insns, err_t *err);

/* Builds the program, loads it and attaches it to the cgroup v2 directory
 * dir, replacing the program attached there before.  n == 0 attaches
 * nothing (no rule: every device is allowed).  Returns 1 when the kernel
 * has no cgroup eBPF (ENOSYS, or EPERM/EINVAL at load) and skip_unsupported
 * is set; 0 when attached. */
int devfilter_apply(const char *dir, const oci_device_rule_t *rules, size_t n,
                    bool skip_unsupported, err_t *err);

#endif
