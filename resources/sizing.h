/* resources/sizing: the VM size of a sandbox from the OCI spec.
 *
 * vCPUs: linux.resources.cpu quota/period, rounded up (quota 150000 /
 * period 100000 -> 2); no quota (absent, <= 0 or -1) -> the default.
 * Memory: linux.resources.memory.limit in bytes, rounded up to MiB, plus
 * the configured overhead (guest kernel, agent); no limit (absent, <= 0)
 * -> the default memory (which already includes everything).
 * For a pod sandbox the CRI annotations io.kubernetes.cri.sandbox-cpu-quota,
 * -cpu-period and io.kubernetes.cri.sandbox-memory (the pod's totals) take
 * precedence over linux.resources.  Results are clamped to the maxima
 * (when set); vCPUs are at least 1 and memory at least min_memory_mib.
 *
 * Bad values (a non-numeric annotation, a quota without a period) are
 * errors naming the field. */
#ifndef HUSK_RES_SIZING_H
#define HUSK_RES_SIZING_H

#include <stdint.h>

#include "common/err.h"
#include "oci/spec.h"

typedef struct res_sizing_defaults {
    uint32_t vcpus;          /* when the spec sets no quota; >= 1 */
    uint64_t memory_mib;     /* when the spec sets no limit; >= 1 */
    uint64_t overhead_mib;   /* added to a spec limit */
    uint32_t max_vcpus;      /* 0 = no cap */
    uint64_t max_memory_mib; /* 0 = no cap */
    uint64_t min_memory_mib; /* floor for limit + overhead (0 = none) */
} res_sizing_defaults_t;

typedef struct res_sizing {
    uint32_t vcpus;
    uint64_t memory_mib;
    /* What decided each value, for logs: "default", "linux.resources",
     * "annotation"; static strings. */
    const char *vcpus_from;
    const char *memory_from;
} res_sizing_t;

/* Computes the size.  spec may be NULL (defaults).  -EINVAL on bad
 * defaults or bad values in the spec. */
int res_sizing_from_spec(const oci_spec_t *spec, const res_sizing_defaults_t *defaults,
                         res_sizing_t *out, err_t *err);

#endif
