/* Unit tests for resources/devices: the checks of linux.devices and
 * linux.resources.devices before they reach the agent. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "resources/devices.h"

static oci_spec_t *spec_with(const char *linux_json)
{
    size_t cap = strlen(linux_json) + 256;
    char *doc = malloc(cap);
    snprintf(doc, cap, "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"},\"linux\":%s}",
             linux_json);
    oci_spec_t *s = NULL;
    err_t err = ERR_INIT;
    if (oci_spec_parse(doc, strlen(doc), &s, &err) < 0)
        fail_msg("parse %s: %s", doc, err_str(&err));
    free(doc);
    return s;
}

/* Checks linux_json; expect NULL: accepted, else the error's text. */
static void check(const char *linux_json, int code, const char *expect)
{
    oci_spec_t *s = spec_with(linux_json);
    err_t err = ERR_INIT;
    int r = res_devices_check(s, &err);
    if (!expect) {
        if (r < 0)
            fail_msg("%s: refused: %s", linux_json, err_str(&err));
    } else {
        if (r == 0)
            fail_msg("%s: accepted, expected `%s`", linux_json, expect);
        assert_int_equal(r, -code);
        if (!strstr(err_str(&err), expect))
            fail_msg("%s: error `%s`, expected `%s`", linux_json, err_str(&err), expect);
    }
    err_clear(&err);
    oci_spec_destroy(&s);
}

#define DEV(path, rest) "{\"devices\":[{\"path\":\"" path "\"" rest "}]}"

static void test_res_devices_good_nodes_accepted(void **state)
{
    check(DEV("/dev/fuse", ",\"type\":\"c\",\"major\":10,\"minor\":229,\"fileMode\":438"), 0, NULL);
    check(DEV("/dev//./net/tun", ",\"type\":\"c\",\"major\":10,\"minor\":200,\"uid\":1,\"gid\":2"),
          0, NULL);
    check(DEV("/dev/sda", ",\"type\":\"b\",\"major\":8,\"minor\":0"), 0, NULL);
    check(DEV("/dev/fifo", ",\"type\":\"p\""), 0, NULL);
    check(DEV("/dev/x", ",\"type\":\"u\",\"major\":4095,\"minor\":1048575"), 0, NULL);
    check("{\"resources\":{\"devices\":[{\"allow\":false,\"access\":\"rwm\"},"
          "{\"allow\":true,\"type\":\"c\",\"major\":10,\"minor\":-1,\"access\":\"rw\"}]}}",
          0, NULL);
    check("{}", 0, NULL);
}

static void test_res_devices_path_outside_dev_refused(void **state)
{
    check(DEV("/etc/passwd", ",\"type\":\"c\",\"major\":1,\"minor\":3"), EINVAL,
          "linux.devices[0].path: `/etc/passwd` is not below /dev");
    check(DEV("/dev", ",\"type\":\"c\",\"major\":1,\"minor\":3"), EINVAL, "is not below /dev");
    check(DEV("/dev/.", ",\"type\":\"c\",\"major\":1,\"minor\":3"), EINVAL, "is not below /dev");
    check(DEV("/devices/x", ",\"type\":\"c\",\"major\":1,\"minor\":3"), EINVAL,
          "is not below /dev");
    check(DEV("//dev/./", ",\"type\":\"c\",\"major\":1,\"minor\":3"), EINVAL,
          "is not below /dev");
}

static void test_res_devices_duplicate_path_refused(void **state)
{
    check("{\"devices\":[{\"path\":\"/dev/a\",\"type\":\"p\"},"
          "{\"path\":\"/dev//a\",\"type\":\"c\",\"major\":1,\"minor\":3}]}",
          EINVAL, "linux.devices[1].path: `/dev//a` is also linux.devices[0]");
}

static void test_res_devices_numbers_bounded(void **state)
{
    check(DEV("/dev/x", ",\"type\":\"c\",\"major\":4096,\"minor\":0"), EINVAL,
          "linux.devices[0].major: 4096 is out of 0..4095");
    check(DEV("/dev/x", ",\"type\":\"c\",\"major\":1,\"minor\":1048576"), EINVAL,
          "linux.devices[0].minor: 1048576 is out of");
    check(DEV("/dev/x", ",\"type\":\"c\",\"major\":1,\"minor\":3,\"fileMode\":2560"), EINVAL,
          "linux.devices[0].fileMode: 05000 has bits beyond 0777");
    check(DEV("/dev/x", ",\"type\":\"c\",\"major\":1,\"minor\":3,\"uid\":4294967295"), EINVAL,
          "linux.devices[0].uid: 4294967295 is not a user id");
    check(DEV("/dev/x", ",\"type\":\"c\",\"major\":1,\"minor\":3,\"gid\":4294967295"), EINVAL,
          "linux.devices[0].gid");
    check("{\"resources\":{\"devices\":[{\"allow\":true,\"type\":\"c\",\"major\":5000}]}}", EINVAL,
          "linux.resources.devices[0].major: 5000 is out of -1..4095");
}

static void test_res_devices_count_bounded(void **state)
{
    size_t cap = 64 * (RES_DEVICES_MAX + 2);
    char *j = malloc(cap);
    size_t n = (size_t)snprintf(j, cap, "{\"resources\":{\"devices\":[");
    for (int i = 0; i <= RES_DEVICES_MAX; i++)
        n += (size_t)snprintf(j + n, cap - n, "%s{\"allow\":true,\"type\":\"c\",\"major\":%d}",
                              i ? "," : "", i);
    snprintf(j + n, cap - n, "]}}");
    check(j, E2BIG, "linux.resources.devices: 257 rules, at most 256");
    free(j);
}

static void test_res_devices_normalize_folds(void **state)
{
    char out[32];
    err_t err = ERR_INIT;
    assert_int_equal(res_devices_normalize("/dev//./fuse/", out, sizeof out, &err), 0);
    assert_string_equal(out, "/dev/fuse");
    assert_int_equal(res_devices_normalize("///", out, sizeof out, &err), 0);
    assert_string_equal(out, "/");
    assert_int_equal(res_devices_normalize("dev/x", out, sizeof out, &err), -EINVAL);
    err_clear(&err);
    assert_int_equal(res_devices_normalize("/dev/a/../b", out, sizeof out, &err), -EINVAL);
    err_clear(&err);
    assert_int_equal(res_devices_normalize("/dev/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", out, sizeof out,
                                           &err),
                     -ENAMETOOLONG);
    err_clear(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_res_devices_good_nodes_accepted),
        cmocka_unit_test(test_res_devices_path_outside_dev_refused),
        cmocka_unit_test(test_res_devices_duplicate_path_refused),
        cmocka_unit_test(test_res_devices_numbers_bounded),
        cmocka_unit_test(test_res_devices_count_bounded),
        cmocka_unit_test(test_res_devices_normalize_folds),
    };
    return cmocka_run_group_tests_name("res_devices", tests, NULL, NULL);
}
