/* Unit tests for resources/sizing: vCPUs and memory from linux.resources
 * and the CRI sandbox annotations, defaults, caps, bad values. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "resources/sizing.h"

static const res_sizing_defaults_t defs = {
    .vcpus = 1, .memory_mib = 512, .overhead_mib = 160, .max_vcpus = 8, .max_memory_mib = 16384};

/* Parses a spec whose linux/annotations parts are given. */
static oci_spec_t *spec_with(const char *linux_json, const char *annotations_json)
{
    char doc[4096];
    snprintf(doc, sizeof doc, "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"}%s%s%s%s}",
             linux_json ? ",\"linux\":" : "", linux_json ? linux_json : "",
             annotations_json ? ",\"annotations\":" : "", annotations_json ? annotations_json : "");
    oci_spec_t *s = NULL;
    err_t err = ERR_INIT;
    if (oci_spec_parse(doc, strlen(doc), &s, &err) < 0)
        fail_msg("parse %s: %s", doc, err_str(&err));
    return s;
}

static void size(const char *lnx, const char *ann, uint32_t vcpus, uint64_t mib,
                 const char *cpu_from, const char *mem_from)
{
    oci_spec_t *s = spec_with(lnx, ann);
    res_sizing_t z;
    err_t err = ERR_INIT;
    if (res_sizing_from_spec(s, &defs, &z, &err) < 0)
        fail_msg("%s: %s", lnx ? lnx : "-", err_str(&err));
    if (z.vcpus != vcpus || z.memory_mib != mib || strcmp(z.vcpus_from, cpu_from) ||
        strcmp(z.memory_from, mem_from))
        fail_msg("%s %s: got %u vcpus (%s) %llu MiB (%s)", lnx ? lnx : "-", ann ? ann : "-",
                 z.vcpus, z.vcpus_from, (unsigned long long)z.memory_mib, z.memory_from);
    oci_spec_destroy(&s);
}

static void test_res_sizing_defaults_without_resources(void **state)
{
    (void)state;
    size(NULL, NULL, 1, 512, "default", "default");
    size("{}", NULL, 1, 512, "default", "default");
    res_sizing_t z;
    assert_int_equal(res_sizing_from_spec(NULL, &defs, &z, NULL), 0);
    assert_int_equal(z.vcpus, 1);
    assert_int_equal(z.memory_mib, 512);
}

static void test_res_sizing_quota_rounds_up(void **state)
{
    (void)state;
    size("{\"resources\":{\"cpu\":{\"quota\":150000,\"period\":100000}}}", NULL, 2, 512,
         "linux.resources", "default");
    size("{\"resources\":{\"cpu\":{\"quota\":100000,\"period\":100000}}}", NULL, 1, 512,
         "linux.resources", "default");
    size("{\"resources\":{\"cpu\":{\"quota\":1000,\"period\":100000}}}", NULL, 1, 512,
         "linux.resources", "default");
    size("{\"resources\":{\"cpu\":{\"quota\":-1,\"period\":100000}}}", NULL, 1, 512, "default",
         "default");
    /* Capped at max_vcpus. */
    size("{\"resources\":{\"cpu\":{\"quota\":6400000,\"period\":100000}}}", NULL, 8, 512,
         "linux.resources", "default");
}

static void test_res_sizing_memory_limit_plus_overhead(void **state)
{
    (void)state;
    size("{\"resources\":{\"memory\":{\"limit\":268435456}}}", NULL, 1, 256 + 160, "default",
         "linux.resources");
    /* Partial MiB rounds up. */
    size("{\"resources\":{\"memory\":{\"limit\":268435457}}}", NULL, 1, 257 + 160, "default",
         "linux.resources");
    size("{\"resources\":{\"memory\":{\"limit\":-1}}}", NULL, 1, 512, "default", "default");
    size("{\"resources\":{\"memory\":{\"limit\":1099511627776}}}", NULL, 1, 16384, "default",
         "linux.resources");
}

static void test_res_sizing_cri_annotations_win(void **state)
{
    (void)state;
    size("{\"resources\":{\"cpu\":{\"quota\":100000,\"period\":100000},"
         "\"memory\":{\"limit\":268435456}}}",
         "{\"io.kubernetes.cri.sandbox-cpu-quota\":\"250000\","
         "\"io.kubernetes.cri.sandbox-cpu-period\":\"100000\","
         "\"io.kubernetes.cri.sandbox-memory\":\"1073741824\"}",
         3, 1024 + 160, "annotation", "annotation");
    /* A zero pod quota means unlimited: the default. */
    size(NULL,
         "{\"io.kubernetes.cri.sandbox-cpu-quota\":\"0\","
         "\"io.kubernetes.cri.sandbox-cpu-period\":\"100000\"}",
         1, 512, "default", "default");
}

static void test_res_sizing_min_memory_floor(void **state)
{
    (void)state;
    res_sizing_defaults_t d = defs;
    d.min_memory_mib = 256;
    oci_spec_t *s = spec_with("{\"resources\":{\"memory\":{\"limit\":4194304}}}", NULL);
    res_sizing_t z;
    assert_int_equal(res_sizing_from_spec(s, &d, &z, NULL), 0);
    assert_int_equal(z.memory_mib, 256);
    oci_spec_destroy(&s);
}

static void test_res_sizing_bad_values_named(void **state)
{
    (void)state;
    err_t err = ERR_INIT;
    res_sizing_t z;
    oci_spec_t *s = spec_with(NULL, "{\"io.kubernetes.cri.sandbox-memory\":\"1G\"}");
    assert_int_equal(res_sizing_from_spec(s, &defs, &z, &err), -EINVAL);
    assert_string_equal(err_str(&err),
                        "annotation io.kubernetes.cri.sandbox-memory: `1G` is not an integer");
    err_clear(&err);
    oci_spec_destroy(&s);

    s = spec_with("{\"resources\":{\"cpu\":{\"quota\":50000}}}", NULL);
    assert_int_equal(res_sizing_from_spec(s, &defs, &z, &err), -EINVAL);
    assert_string_equal(err_str(&err),
                        "linux.resources.cpu.quota is 50000 but the period is missing");
    err_clear(&err);
    oci_spec_destroy(&s);

    s = spec_with(NULL, "{\"io.kubernetes.cri.sandbox-cpu-quota\":\"50000\"}");
    assert_int_equal(res_sizing_from_spec(s, &defs, &z, &err), -EINVAL);
    assert_non_null(strstr(err_str(&err), "io.kubernetes.cri.sandbox-cpu-quota is 50000"));
    err_clear(&err);
    oci_spec_destroy(&s);

    res_sizing_defaults_t bad = {.vcpus = 0, .memory_mib = 512};
    assert_int_equal(res_sizing_from_spec(NULL, &bad, &z, &err), -EINVAL);
    err_clear(&err);
    res_sizing_defaults_t badmax = {.vcpus = 4, .memory_mib = 512, .max_vcpus = 2};
    assert_int_equal(res_sizing_from_spec(NULL, &badmax, &z, &err), -EINVAL);
    err_clear(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_res_sizing_defaults_without_resources),
        cmocka_unit_test(test_res_sizing_quota_rounds_up),
        cmocka_unit_test(test_res_sizing_memory_limit_plus_overhead),
        cmocka_unit_test(test_res_sizing_cri_annotations_win),
        cmocka_unit_test(test_res_sizing_min_memory_floor),
        cmocka_unit_test(test_res_sizing_bad_values_named),
    };
    return cmocka_run_group_tests_name("res_sizing", tests, NULL, NULL);
}
