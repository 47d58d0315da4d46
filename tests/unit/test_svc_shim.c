/* Unit tests of the pure parts of containerd-shim-husk-v2 (services/shim.c,
 * services/shim_mount.c): flags, grouping, socket address, statuses, exit
 * time, DeleteResponse, event ordering, the spec given to the runtime. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include <cmocka.h>

#include "services/proto/containerd/task/v2/shim.pb-c.h"
#include "services/proto/containerd/types/task/task.pb-c.h"
#include "services/shim.h"
#include "services/shim_mount.h"
#include "services/ttrpc_task.h"

static int parse(svc_shim_args_t *a, const char *const *argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    err_t err = ERR_INIT;
    int r = svc_shim_args_parse(argc, (char *const *)argv, a, &err);
    err_clear(&err);
    return r;
}

/* ---- flags ------------------------------------------------------------------- */

static void test_svc_shim_args_start_as_containerd_sends(void **state)
{
    const char *argv[] = {"shim",
                          "-namespace",
                          "test",
                          "-address",
                          "/tmp/c.sock",
                          "-publish-binary",
                          "/usr/bin/containerd",
                          "-id",
                          "t1",
                          "-debug",
                          "start",
                          NULL};
    svc_shim_args_t a;
    assert_int_equal(parse(&a, argv), 0);
    assert_string_equal(a.ns, "test");
    assert_string_equal(a.address, "/tmp/c.sock");
    assert_string_equal(a.publish_binary, "/usr/bin/containerd");
    assert_string_equal(a.id, "t1");
    assert_true(a.debug);
    assert_string_equal(a.action, "start");
    assert_null(a.bundle);
}

static void test_svc_shim_args_delete_with_bundle(void **state)
{
    const char *argv[] = {"shim", "-namespace", "ns", "-address", "/a",   "-publish-binary",
                          "/c",   "-id",        "x",  "-bundle",  "/b/x", "delete",
                          NULL};
    svc_shim_args_t a;
    assert_int_equal(parse(&a, argv), 0);
    assert_string_equal(a.bundle, "/b/x");
    assert_string_equal(a.action, "delete");
    assert_false(a.debug);
}

static void test_svc_shim_args_go_flag_forms(void **state)
{
    const char *argv[] = {"shim",     "--namespace=k8s.io", "-id=c1",   "-debug=false",
                          "--socket", "unix:///s",          "-sandbox", "pod",
                          NULL};
    svc_shim_args_t a;
    assert_int_equal(parse(&a, argv), 0);
    assert_string_equal(a.ns, "k8s.io");
    assert_string_equal(a.id, "c1");
    assert_false(a.debug);
    assert_string_equal(a.socket, "unix:///s");
    assert_string_equal(a.sandbox, "pod");
    assert_null(a.action);                               /* the daemon */
    assert_string_equal(a.publish_binary, "containerd"); /* Go's default */
}

static void test_svc_shim_args_errors(void **state)
{
    svc_shim_args_t a;
    const char *unknown[] = {"shim", "-bogus", "x", NULL};
    const char *missing[] = {"shim", "-id", NULL};
    const char *action[] = {"shim", "-id", "x", "stop", NULL};
    const char *extra[] = {"shim", "start", "more", NULL};
    const char *badbool[] = {"shim", "-debug=maybe", NULL};
    assert_int_equal(parse(&a, unknown), -EINVAL);
    assert_int_equal(parse(&a, missing), -EINVAL);
    assert_int_equal(parse(&a, action), -EINVAL);
    assert_int_equal(parse(&a, extra), -EINVAL);
    assert_int_equal(parse(&a, badbool), -EINVAL);
    const char *version[] = {"shim", "-v", NULL};
    assert_int_equal(parse(&a, version), 0);
    assert_true(a.version);
}

/* ---- sha256 and the socket address ---------------------------------------------------- */

static void hex(const uint8_t d[32], char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_svc_shim_sha256_known_vectors(void **state)
{
    uint8_t d[32];
    char h[65];
    svc_shim_sha256("", 0, d);
    hex(d, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    svc_shim_sha256("abc", 3, d);
    hex(d, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes */
    svc_shim_sha256(two, strlen(two), d);
    hex(d, h);
    assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char big[1000];
    memset(big, 'a', sizeof big);
    svc_shim_sha256(big, sizeof big, d); /* several blocks */
    hex(d, h);
    assert_string_equal(h, "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

static void test_svc_shim_socket_address_matches_live_containerd(void **state)
{
    /* reference §2.3: sha256("/tmp/shimlab/containerd.sock/default/t1") = cfa50fbc... */
    char addr[256];
    err_t err = ERR_INIT;
    assert_int_equal(svc_shim_socket_address(NULL, "/tmp/shimlab/containerd.sock", "default", "t1",
                                             addr, sizeof addr, &err),
                     0);
    assert_true(!strncmp(addr, "unix:///run/containerd/s/cfa50fbc", 33));
    assert_int_equal(strlen(addr), strlen("unix:///run/containerd/s/") + 64);
    assert_string_equal(svc_shim_socket_path(addr), addr + 7);
    assert_null(svc_shim_socket_path("abstract-name"));
    /* another group: another socket; the same group: the same */
    char other[256], same[256];
    svc_shim_socket_address(NULL, "/tmp/shimlab/containerd.sock", "default", "t2", other,
                            sizeof other, &err);
    svc_shim_socket_address(NULL, "/tmp/shimlab/containerd.sock", "default", "t1", same,
                            sizeof same, &err);
    assert_string_not_equal(addr, other);
    assert_string_equal(addr, same);
}

static void test_svc_shim_socket_address_too_long_refused(void **state)
{
    char dir[80], addr[512];
    memset(dir, 'd', sizeof dir - 1);
    dir[0] = '/';
    dir[sizeof dir - 1] = 0;
    err_t err = ERR_INIT;
    assert_int_equal(svc_shim_socket_address(dir, "/a", "ns", "g", addr, sizeof addr, &err),
                     -ENAMETOOLONG);
    err_clear(&err);
    assert_int_equal(svc_shim_socket_address("/tmp/s", "/a", "ns", "g", addr, sizeof addr, &err),
                     0);
    assert_true(!strncmp(addr, "unix:///tmp/s/", 14));
}

/* ---- grouping ------------------------------------------------------------------------------ */

static oci_spec_t *spec_with(const char *annotations)
{
    char json[1024];
    snprintf(json, sizeof json,
             "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"},\"annotations\":{%s}}",
             annotations);
    oci_spec_t *s = NULL;
    err_t err = ERR_INIT;
    if (oci_spec_parse(json, strlen(json), &s, &err) < 0)
        fail_msg("parse: %s", err_str(&err));
    return s;
}

static void test_svc_shim_group_id_order(void **state)
{
    oci_spec_t *s = spec_with("");
    assert_string_equal(svc_shim_group_id(s, "c1"), "c1");
    oci_spec_destroy(&s);
    s = spec_with("\"io.kubernetes.cri.container-type\":\"container\","
                  "\"io.kubernetes.cri.sandbox-id\":\"pod1\"");
    assert_string_equal(svc_shim_group_id(s, "c1"), "pod1");
    oci_spec_destroy(&s);
    s = spec_with("\"io.kubernetes.cri.container-type\":\"sandbox\","
                  "\"io.kubernetes.cri.sandbox-id\":\"pod1\"");
    assert_string_equal(svc_shim_group_id(s, "pod1"), "pod1");
    oci_spec_destroy(&s);
    s = spec_with("\"io.kubernetes.cri.sandbox-id\":\"pod2\"");
    assert_string_equal(svc_shim_group_id(s, "c1"), "pod2");
    oci_spec_destroy(&s);
    s = spec_with("\"io.containerd.runc.v2.group\":\"g\",\"io.kubernetes.cri.sandbox-id\":\"pod\"");
    assert_string_equal(svc_shim_group_id(s, "c1"), "g");
    oci_spec_destroy(&s);
    s = spec_with("\"io.kubernetes.cri-o.ContainerType\":\"container\","
                  "\"io.kubernetes.cri-o.SandboxID\":\"crio-pod\"");
    assert_string_equal(svc_shim_group_id(s, "c1"), "crio-pod");
    oci_spec_destroy(&s);
    assert_string_equal(svc_shim_group_id(NULL, "c9"), "c9");
}

/* ---- statuses and times -----------------------------------------------------------------------
 */

static void test_svc_shim_exit_status_mapping(void **state)
{
    assert_int_equal(svc_shim_exit_status(0), 0);
    assert_int_equal(svc_shim_exit_status(3), 3);
    assert_int_equal(svc_shim_exit_status(137), 137); /* 128 + SIGKILL, as runc */
    assert_int_equal(svc_shim_exit_status(255), 255);
    assert_int_equal(svc_shim_exit_status(-1), 255);
    assert_int_equal(svc_shim_exit_status(256), 255);
}

static void test_svc_shim_timestamp_zero_is_go_zero_time(void **state)
{
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    svc_shim_timestamp_from_ns(&ts, 0);
    assert_int_equal(ts.seconds, SVC_TTRPC_GO_ZERO_TIME_SECONDS);
    assert_int_equal(ts.nanos, 0);
    svc_shim_timestamp_from_ns(&ts, 1700000000123456789ull);
    assert_int_equal(ts.seconds, 1700000000);
    assert_int_equal(ts.nanos, 123456789);
}

static void test_svc_shim_status_names(void **state)
{
    assert_int_equal(svc_shim_status_of("created"), CONTAINERD__V1__TYPES__STATUS__CREATED);
    assert_int_equal(svc_shim_status_of("creating"), CONTAINERD__V1__TYPES__STATUS__CREATED);
    assert_int_equal(svc_shim_status_of("running"), CONTAINERD__V1__TYPES__STATUS__RUNNING);
    assert_int_equal(svc_shim_status_of("paused"), CONTAINERD__V1__TYPES__STATUS__PAUSED);
    assert_int_equal(svc_shim_status_of("stopped"), CONTAINERD__V1__TYPES__STATUS__STOPPED);
    assert_int_equal(svc_shim_status_of("bogus"), CONTAINERD__V1__TYPES__STATUS__UNKNOWN);
    assert_int_equal(svc_shim_status_of(NULL), CONTAINERD__V1__TYPES__STATUS__UNKNOWN);
}

static void test_svc_shim_delete_response_decodes_as_containerd_reads_it(void **state)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    err_t err = ERR_INIT;
    assert_int_equal(svc_shim_delete_response(1767, SVC_SHIM_DELETE_STATUS, &buf, &len, &err), 0);
    /* pid 1767 and status 137 as in the runc shim's LIVE bytes */
    assert_memory_equal(buf, "\x08\xe7\x0d\x10\x89\x01\x1a", 7);
    ProtobufCMessage *m = NULL;
    assert_int_equal(
        svc_ttrpc_unpack(&containerd__task__v2__delete_response__descriptor, buf, len, &m, &err),
        0);
    Containerd__Task__V2__DeleteResponse *r = (void *)m;
    assert_int_equal(r->pid, 1767);
    assert_int_equal(r->exit_status, 137);
    assert_non_null(r->exited_at);
    assert_true(r->exited_at->seconds > 1600000000);
    svc_ttrpc_msg_free(&m);
    free(buf);
}

/* ---- event ordering -------------------------------------------------------------------------- */

static void test_svc_shim_order_init_lifecycle(void **state)
{
    svc_shim_order_t o = {0};
    assert_false(svc_shim_order_may(&o, false, SVC_SHIM_EV_START));
    assert_false(svc_shim_order_may(&o, false, SVC_SHIM_EV_EXIT));
    assert_false(svc_shim_order_may(&o, false, SVC_SHIM_EV_PAUSED));
    assert_true(svc_shim_order_may(&o, false, SVC_SHIM_EV_CREATE));
    svc_shim_order_sent(&o, SVC_SHIM_EV_CREATE);
    assert_false(svc_shim_order_may(&o, false, SVC_SHIM_EV_CREATE)); /* once */
    assert_false(svc_shim_order_may(&o, false, SVC_SHIM_EV_EXIT));   /* not before start */
    assert_true(svc_shim_order_may(&o, false, SVC_SHIM_EV_START));
    svc_shim_order_sent(&o, SVC_SHIM_EV_START);
    assert_true(svc_shim_order_may(&o, false, SVC_SHIM_EV_PAUSED));
    assert_true(svc_shim_order_may(&o, false, SVC_SHIM_EV_OOM));
    assert_false(svc_shim_order_may(&o, false, SVC_SHIM_EV_DELETE)); /* not before exit */
    assert_true(svc_shim_order_may(&o, false, SVC_SHIM_EV_EXIT));
    svc_shim_order_sent(&o, SVC_SHIM_EV_EXIT);
    assert_false(svc_shim_order_may(&o, false, SVC_SHIM_EV_EXIT));
    assert_true(svc_shim_order_may(&o, false, SVC_SHIM_EV_DELETE));
    svc_shim_order_sent(&o, SVC_SHIM_EV_DELETE);
    assert_false(svc_shim_order_may(&o, false, SVC_SHIM_EV_DELETE));
    assert_false(svc_shim_order_may(&o, false, SVC_SHIM_EV_PAUSED)); /* after delete */
}

static void test_svc_shim_order_exit_before_start_is_held(void **state)
{
    svc_shim_order_t o = {0};
    svc_shim_order_sent(&o, SVC_SHIM_EV_CREATE);
    /* the exit arrived before the start was published: park it */
    assert_false(svc_shim_order_may(&o, false, SVC_SHIM_EV_EXIT));
    o.exit_pending = true;
    svc_shim_order_sent(&o, SVC_SHIM_EV_START);
    assert_true(o.exit_pending);
    assert_true(svc_shim_order_may(&o, false, SVC_SHIM_EV_EXIT));
    svc_shim_order_sent(&o, SVC_SHIM_EV_EXIT);
    assert_false(o.exit_pending);
}

static void test_svc_shim_order_exec_and_unstarted_delete(void **state)
{
    svc_shim_order_t e = {0};
    assert_false(svc_shim_order_may(&e, true, SVC_SHIM_EV_CREATE)); /* inits only */
    assert_false(svc_shim_order_may(&e, true, SVC_SHIM_EV_EXEC_STARTED));
    assert_true(svc_shim_order_may(&e, true, SVC_SHIM_EV_EXEC_ADDED));
    svc_shim_order_sent(&e, SVC_SHIM_EV_EXEC_ADDED);
    assert_false(svc_shim_order_may(&e, true, SVC_SHIM_EV_EXIT));
    assert_false(svc_shim_order_may(&e, true, SVC_SHIM_EV_START)); /* init's event */
    assert_true(svc_shim_order_may(&e, true, SVC_SHIM_EV_EXEC_STARTED));
    svc_shim_order_sent(&e, SVC_SHIM_EV_EXEC_STARTED);
    assert_true(svc_shim_order_may(&e, true, SVC_SHIM_EV_EXIT));
    assert_false(svc_shim_order_may(&e, true, SVC_SHIM_EV_PAUSED));
    /* an init created and deleted without ever starting: delete follows create */
    svc_shim_order_t i = {0};
    svc_shim_order_sent(&i, SVC_SHIM_EV_CREATE);
    assert_true(svc_shim_order_may(&i, false, SVC_SHIM_EV_DELETE));
    assert_false(svc_shim_order_may(&i, false, SVC_SHIM_EV_N));
}

/* ---- mount options ------------------------------------------------------------------------------
 */

static void test_svc_shim_mount_options_split(void **state)
{
    char *opts[] = {"ro", "nosuid", "index=off", "lowerdir=/a:/b", "rbind", "rw"};
    unsigned long flags;
    char *data = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(svc_shim_mount_options(opts, 5, &flags, &data, &err), 0);
    assert_int_equal(flags, MS_RDONLY | MS_NOSUID | MS_BIND | MS_REC);
    assert_string_equal(data, "index=off,lowerdir=/a:/b");
    free(data);
    assert_int_equal(svc_shim_mount_options(opts, 6, &flags, &data, &err), 0);
    assert_int_equal(flags & MS_RDONLY, 0); /* rw clears ro */
    free(data);
    assert_int_equal(svc_shim_mount_options(NULL, 0, &flags, &data, &err), 0);
    assert_int_equal(flags, 0);
    assert_string_equal(data, "");
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_svc_shim_args_start_as_containerd_sends),
        cmocka_unit_test(test_svc_shim_args_delete_with_bundle),
        cmocka_unit_test(test_svc_shim_args_go_flag_forms),
        cmocka_unit_test(test_svc_shim_args_errors),
        cmocka_unit_test(test_svc_shim_sha256_known_vectors),
        cmocka_unit_test(test_svc_shim_socket_address_matches_live_containerd),
        cmocka_unit_test(test_svc_shim_socket_address_too_long_refused),
        cmocka_unit_test(test_svc_shim_group_id_order),
        cmocka_unit_test(test_svc_shim_exit_status_mapping),
        cmocka_unit_test(test_svc_shim_timestamp_zero_is_go_zero_time),
        cmocka_unit_test(test_svc_shim_status_names),
        cmocka_unit_test(test_svc_shim_delete_response_decodes_as_containerd_reads_it),
        cmocka_unit_test(test_svc_shim_order_init_lifecycle),
        cmocka_unit_test(test_svc_shim_order_exit_before_start_is_held),
        cmocka_unit_test(test_svc_shim_order_exec_and_unstarted_delete),
        cmocka_unit_test(test_svc_shim_mount_options_split),
    };
    return cmocka_run_group_tests_name("svc_shim", tests, NULL, NULL);
}
