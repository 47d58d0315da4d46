/* resources/sizing: the VM size of a sandbox.  See sizing.h. */
#include "resources/sizing.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024ull * 1024ull)

#define ANN_CPU_QUOTA  "io.kubernetes.cri.sandbox-cpu-quota"
#define ANN_CPU_PERIOD "io.kubernetes.cri.sandbox-cpu-period"
#define ANN_MEMORY     "io.kubernetes.cri.sandbox-memory"

/* Reads an integer annotation; 0 when absent. */
static int ann_int(const oci_spec_t *spec, const char *key, int64_t *out, bool *set, err_t *err)
{
    *set = false;
    const char *v = spec ? oci_spec_annotation(spec, key) : NULL;
    if (!v)
        return 0;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end)
        return err_make(err, EINVAL, "annotation %s: `%s` is not an integer", key, v);
    *out = x;
    *set = true;
    return 0;
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

int res_sizing_from_spec(const oci_spec_t *spec, const res_sizing_defaults_t *d, res_sizing_t *out,
                         err_t *err)
{
    if (!d || d->vcpus < 1 || d->memory_mib < 1)
        return err_make(err, EINVAL, "sizing: default vcpus and memory must be >= 1");
    if ((d->max_vcpus && d->max_vcpus < d->vcpus) ||
        (d->max_memory_mib && d->max_memory_mib < d->memory_mib))
        return err_make(err, EINVAL, "sizing: a maximum is below its default");

    const oci_resources_t *res = spec && spec->lnx ? spec->lnx->resources : NULL;
    int64_t quota = 0, period = 0, mem = 0;
    const char *cpu_from = "default", *mem_from = "default";
    const char *quota_field = "linux.resources.cpu.quota";
    bool qs = false, ps = false, ms = false;
    int r;

    if ((r = ann_int(spec, ANN_CPU_QUOTA, &quota, &qs, err)) < 0 ||
        (r = ann_int(spec, ANN_CPU_PERIOD, &period, &ps, err)) < 0 ||
        (r = ann_int(spec, ANN_MEMORY, &mem, &ms, err)) < 0)
        return r;
    if (qs || ps) {
        cpu_from = "annotation";
        quota_field = ANN_CPU_QUOTA;
    } else if (res) {
        qs = res->cpu.quota.set;
        quota = res->cpu.quota.value;
        ps = res->cpu.period.set;
        period = res->cpu.period.value;
        cpu_from = "linux.resources";
    }
    if (ms)
        mem_from = "annotation";
    else if (res && res->memory.limit.set) {
        ms = true;
        mem = res->memory.limit.value;
        mem_from = "linux.resources";
    }

    uint64_t vcpus = d->vcpus;
    if (qs && quota > 0) {
        if (!ps || period <= 0)
            return err_make(err, EINVAL, "%s is %" PRId64 " but the period is %s", quota_field,
                            quota, ps ? "not positive" : "missing");
        vcpus = ceil_div((uint64_t)quota, (uint64_t)period);
    } else {
        cpu_from = "default";
    }
    if (vcpus < 1)
        vcpus = 1;
    if (d->max_vcpus && vcpus > d->max_vcpus)
        vcpus = d->max_vcpus;

    uint64_t mib = d->memory_mib;
    if (ms && mem > 0) {
        mib = ceil_div((uint64_t)mem, MIB) + d->overhead_mib;
        if (d->min_memory_mib && mib < d->min_memory_mib)
            mib = d->min_memory_mib;
    } else {
        mem_from = "default";
    }
    if (d->max_memory_mib && mib > d->max_memory_mib)
        mib = d->max_memory_mib;

    out->vcpus = (uint32_t)vcpus;
    out->memory_mib = mib;
    out->vcpus_from = cpu_from;
    out->memory_from = mem_from;
    return 0;
}
