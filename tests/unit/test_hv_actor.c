/* The hypervisor actor shell over the fake backend: hv.* requests through a
 * real bus, replies and errors. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "actors/client.h"
#include "hypervisors/hypervisor_actor.h"
#include "bus/bus.h"
#include "common/log.h"

struct fx {
    char dir[64];
    bus_t *bus;
    actor_t *hv;
    bus_client_t *c;
    cfg_t *cfg;
};

static struct fx *fx_new(const char *backend)
{
    struct fx *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/husk-test-hva-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    err_t err = ERR_INIT;
    bus_opts_t bo = {.dir = f->dir, .supervise_ms = -1};
    assert_int_equal(bus_new(&bo, &f->bus, &err), 0);
    f->cfg = cfg_new_defaults(NULL);
    free(f->cfg->backend);
    f->cfg->backend = strdup(backend);
    if (!strcmp(backend, "qemu")) { /* no guest images: the start must say so */
        free(f->cfg->kernel);
        f->cfg->kernel = NULL;
    }
    actor_opts_t ao = {.zctx = bus_context(f->bus), .endpoint = bus_endpoint(f->bus)};
    assert_int_equal(hv_actor_start(&ao, f->cfg, "/bin/true", &f->hv, &err), 0);
    assert_int_equal(bus_client_new(bus_ipc_endpoint(f->bus), "test", &f->c, &err), 0);
    return f;
}

static void fx_free(struct fx *f)
{
    bus_client_destroy(&f->c);
    assert_int_equal(actor_stop(&f->hv, 2000), 0);
    bus_destroy(&f->bus);
    cfg_destroy(&f->cfg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
}

/* Sends m to the hypervisor; returns the status, the reply in *out. */
static int call(struct fx *f, msg_t *m, msg_t **out, char *text, size_t cap)
{
    err_t err = ERR_INIT;
    msg_t *r = NULL;
    int rc = bus_client_call(f->c, HV_ACTOR_NAME, &m, 3000, &r, &err);
    if (text)
        snprintf(text, cap, "%s", rc < 0 ? err_str(&err) : "");
    err_clear(&err);
    if (out)
        *out = r;
    else
        msg_destroy(&r);
    return rc < 0 ? -rc : 0;
}

static msg_t *start_msg(struct fx *f)
{
    msg_t *m = msg_new(MSG_HV_START);
    msg_hv_start_t *b = m->body;
    msg_set_str(&b->sandbox_id, "sb1");
    msg_set_str(&b->dir, f->dir);
    b->vcpus = 2;
    b->memory_mib = 256;
    msg_set_str(&b->share_dir, f->dir);
    msg_set_str(&b->share_tag, "t");
    msg_set_str(&b->kernel_params, "quiet");
    return m;
}

static void test_hv_actor_start_pause_device_stop_with_fake(void **s)
{
    struct fx *f = fx_new("fake");
    msg_t *r = NULL;
    char text[512];
    assert_int_equal(call(f, start_msg(f), &r, text, sizeof text), 0);
    msg_hv_started_t *st = MSG_BODY(r, HV_STARTED, hv_started);
    assert_non_null(st);
    assert_string_equal(st->backend, "fake");
    msg_destroy(&r);
    /* a second start is refused */
    assert_int_equal(call(f, start_msg(f), NULL, text, sizeof text), EALREADY);
    assert_non_null(strstr(text, "already has a VM"));
    assert_int_equal(call(f, msg_new(MSG_HV_PAUSE), NULL, text, sizeof text), 0);
    assert_int_equal(call(f, msg_new(MSG_HV_RESUME), NULL, text, sizeof text), 0);
    /* devices: every kind maps, an unknown kind is refused by name */
    const char *kinds[] = {"share-fs", "block", "network", "vfio", "vhost-user"};
    for (size_t i = 0; i < 5; i++) {
        msg_t *m = msg_new(MSG_HV_ADD_DEVICE);
        msg_hv_add_device_t *b = m->body;
        msg_set_str(&b->kind, kinds[i]);
        char id[16];
        snprintf(id, sizeof id, "d%zu", i);
        msg_set_str(&b->id, id);
        msg_set_str(&b->path, "/tmp");
        call(f, m, NULL, text, sizeof text); /* the fake may refuse some kinds */
        m = msg_new(MSG_HV_REMOVE_DEVICE);
        msg_set_str(&((msg_hv_remove_device_t *)m->body)->kind, kinds[i]);
        msg_set_str(&((msg_hv_remove_device_t *)m->body)->id, id);
        call(f, m, NULL, text, sizeof text);
    }
    msg_t *m = msg_new(MSG_HV_ADD_DEVICE);
    msg_set_str(&((msg_hv_add_device_t *)m->body)->kind, "floppy");
    assert_int_equal(call(f, m, NULL, text, sizeof text), EINVAL);
    assert_non_null(strstr(text, "unknown device kind `floppy`"));
    m = msg_new(MSG_HV_REMOVE_DEVICE);
    msg_set_str(&((msg_hv_remove_device_t *)m->body)->kind, "floppy");
    assert_int_equal(call(f, m, NULL, text, sizeof text), EINVAL);
    /* stop, and stop again: both answered */
    m = msg_new(MSG_HV_STOP);
    assert_int_equal(call(f, m, &r, text, sizeof text), 0);
    assert_non_null(MSG_BODY(r, HV_STOPPED, hv_stopped));
    msg_destroy(&r);
    assert_int_equal(call(f, msg_new(MSG_HV_STOP), NULL, text, sizeof text), 0);
    fx_free(f);
}

static void test_hv_actor_requests_without_vm_are_refused(void **s)
{
    struct fx *f = fx_new("fake");
    char text[512];
    assert_int_equal(call(f, msg_new(MSG_HV_PAUSE), NULL, text, sizeof text), ESRCH);
    assert_non_null(strstr(text, "no VM running"));
    assert_int_equal(call(f, msg_new(MSG_HV_RESUME), NULL, text, sizeof text), ESRCH);
    msg_t *m = msg_new(MSG_HV_ADD_DEVICE);
    msg_set_str(&((msg_hv_add_device_t *)m->body)->kind, "block");
    assert_int_equal(call(f, m, NULL, text, sizeof text), ESRCH);
    m = msg_new(MSG_HV_REMOVE_DEVICE);
    assert_int_equal(call(f, m, NULL, text, sizeof text), ESRCH);
    /* stop without a VM: nothing to do, answered */
    assert_int_equal(call(f, msg_new(MSG_HV_STOP), NULL, text, sizeof text), 0);
    fx_free(f);
}

static void test_hv_actor_bad_backend_and_missing_kernel_are_clear(void **s)
{
    char text[512];
    struct fx *f = fx_new("vmware");
    assert_int_equal(call(f, start_msg(f), NULL, text, sizeof text), EINVAL);
    assert_non_null(strstr(text, "unknown backend `vmware`"));
    fx_free(f);
    f = fx_new("qemu");
    assert_int_equal(call(f, start_msg(f), NULL, text, sizeof text), ENOENT);
    assert_non_null(strstr(text, "no guest kernel"));
    fx_free(f);
}

static void test_hv_actor_local_backend_reports_the_agent_process(void **s)
{
    struct fx *f = fx_new("local");
    char text[512];
    /* /bin/true stands in for husk-agent: the start succeeds as soon as
     * the channel socket listens, with the process's pid */
    msg_t *r = NULL;
    assert_int_equal(call(f, start_msg(f), &r, text, sizeof text), 0);
    msg_hv_started_t *st = MSG_BODY(r, HV_STARTED, hv_started);
    assert_string_equal(st->backend, "local");
    assert_true(st->pid > 0);
    assert_non_null(strstr(st->agent_socket, "/agent.sock"));
    msg_destroy(&r);
    fx_free(f);
}

int main(void)
{
    log_setup(2, LOG_FMT_LOGFMT, LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hv_actor_start_pause_device_stop_with_fake),
        cmocka_unit_test(test_hv_actor_requests_without_vm_are_refused),
        cmocka_unit_test(test_hv_actor_bad_backend_and_missing_kernel_are_clear),
        cmocka_unit_test(test_hv_actor_local_backend_reports_the_agent_process),
    };
    return cmocka_run_group_tests_name("hv_actor", tests, NULL, NULL);
}
