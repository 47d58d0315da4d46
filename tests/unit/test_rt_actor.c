/* The runtime handler actor, driven through a real bus with the fake
 * hypervisor backend and a scripted agent actor: the orchestration and its
 * refusals without any VM or process. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "actors/client.h"
#include "actors/hypervisor_actor.h"
#include "actors/runtime_actor.h"
#include "bus/bus.h"
#include "common/log.h"
#include "persist/store.h"

/* ---- the scripted agent ---------------------------------------------------- */

struct fake_agent {
    bool refuse_sandbox; /* create_sandbox fails */
    int calls;
};

static void ok(actor_t *a, msg_t **m, msg_type_t t)
{
    msg_t *r = msg_new_reply(*m, t);
    actor_reply(a, *m, &r);
}

static void exited(actor_t *a, const char *cid, const char *eid, int64_t status)
{
    msg_t *e = msg_new(MSG_AGENT_EXITED);
    msg_agent_exited_t *b = e->body;
    msg_set_str(&b->container_id, cid);
    msg_set_str(&b->exec_id, eid);
    b->status = status;
    err_t err = ERR_INIT;
    actor_publish(a, &e, &err);
}

static void fa_any(actor_t *a, msg_t **m, void *state)
{
    struct fake_agent *fa = state;
    fa->calls++;
    switch ((*m)->type) {
    case MSG_AGENT_CONNECT:
        ok(a, m, MSG_AGENT_HEALTH);
        break;
    case MSG_AGENT_CREATE_SANDBOX:
        if (fa->refuse_sandbox)
            actor_reply_error(a, *m, EIO, "no room in the guest");
        else
            ok(a, m, MSG_AGENT_OK);
        break;
    case MSG_AGENT_CREATE_CONTAINER:
    case MSG_AGENT_EXEC_PROCESS: {
        msg_t *r = msg_new_reply(*m, MSG_AGENT_PID);
        ((msg_agent_pid_t *)r->body)->pid = 7;
        actor_reply(a, *m, &r);
        if ((*m)->type == MSG_AGENT_EXEC_PROCESS) {
            msg_agent_exec_process_t *b = (*m)->body;
            exited(a, b->container_id, b->exec_id, 3);
        }
        break;
    }
    case MSG_AGENT_SIGNAL_PROCESS: {
        msg_agent_signal_process_t *b = (*m)->body;
        ok(a, m, MSG_AGENT_OK);
        exited(a, b->container_id, b->exec_id, 128 + (int64_t)b->signal);
        break;
    }
    case MSG_AGENT_LIST_PROCESSES: {
        msg_t *r = msg_new_reply(*m, MSG_AGENT_PROCESSES);
        msg_u64v_push(&((msg_agent_processes_t *)r->body)->pids, 1);
        actor_reply(a, *m, &r);
        break;
    }
    case MSG_AGENT_STATS_CONTAINER: {
        msg_t *r = msg_new_reply(*m, MSG_AGENT_STATS);
        ((msg_agent_stats_t *)r->body)->memory_current = 4096;
        actor_reply(a, *m, &r);
        break;
    }
    default:
        ok(a, m, MSG_AGENT_OK);
        break;
    }
}

static const msg_type_t fa_types[] = {
    MSG_AGENT_CONNECT,          MSG_AGENT_CREATE_SANDBOX,   MSG_AGENT_DESTROY_SANDBOX,
    MSG_AGENT_CREATE_CONTAINER, MSG_AGENT_START_CONTAINER,  MSG_AGENT_REMOVE_CONTAINER,
    MSG_AGENT_EXEC_PROCESS,     MSG_AGENT_SIGNAL_PROCESS,   MSG_AGENT_PAUSE_CONTAINER,
    MSG_AGENT_RESUME_CONTAINER, MSG_AGENT_UPDATE_CONTAINER, MSG_AGENT_STATS_CONTAINER,
    MSG_AGENT_LIST_PROCESSES,
};
static actor_handler_t fa_handlers[sizeof fa_types / sizeof fa_types[0] + 1];

/* ---- fixture -------------------------------------------------------------------- */

struct fx {
    char root[64], bundle[128];
    bus_t *bus;
    actor_t *hv, *agent, *rt;
    bus_client_t *c;
    cfg_t *cfg;
    int done_fd;
    struct fake_agent fa;
    actor_def_t agent_def;
};

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static struct fx *fx_new(bool refuse_sandbox)
{
    struct fx *f = calloc(1, sizeof *f);
    f->fa.refuse_sandbox = refuse_sandbox;
    strcpy(f->root, "/tmp/husk-test-rt-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->bundle, sizeof f->bundle, "%s/bundle", f->root);
    char p[256];
    snprintf(p, sizeof p, "%s/rootfs", f->bundle);
    assert_int_equal(mkdir(f->bundle, 0755), 0);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/config.json", f->bundle);
    write_file(p,
               "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"},"
               "\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"user\":{\"uid\":0,\"gid\":0}},"
               "\"annotations\":{\"a\":\"b\"},"
               "\"linux\":{\"resources\":{\"devices\":[{\"allow\":false,\"access\":\"rwm\"}]}}}");
    char dir[128];
    snprintf(dir, sizeof dir, "%s/sb", f->root);
    err_t err = ERR_INIT;
    bus_opts_t bo = {.dir = dir, .supervise_ms = -1};
    assert_int_equal(bus_new(&bo, &f->bus, &err), 0);
    f->cfg = cfg_new_defaults(NULL);
    free(f->cfg->backend);
    f->cfg->backend = strdup("fake");
    f->done_fd = eventfd(0, EFD_CLOEXEC);
    actor_opts_t ao = {.zctx = bus_context(f->bus), .endpoint = bus_endpoint(f->bus)};
    assert_int_equal(hv_actor_start(&ao, f->cfg, NULL, &f->hv, &err), 0);
    for (size_t i = 0; i < sizeof fa_types / sizeof fa_types[0]; i++)
        fa_handlers[i] = (actor_handler_t){fa_types[i], fa_any};
    f->agent_def.name = "agent";
    f->agent_def.handlers = fa_handlers;
    assert_int_equal(actor_start(&f->agent_def, &f->fa, &ao, &f->agent, &err), 0);
    rt_actor_opts_t ro = {
        .cfg = f->cfg, .root = f->root, .sandbox_id = "sb", .done_fd = f->done_fd};
    if (rt_actor_start(&ao, &ro, &f->rt, &err) < 0)
        fail_msg("runtime: %s", err_str(&err));
    assert_int_equal(bus_client_new(bus_ipc_endpoint(f->bus), "cli", &f->c, &err), 0);
    msg_t *sub = msg_new(MSG_BUS_SUBSCRIBE), *r = NULL;
    msg_set_str(&((msg_bus_subscribe_t *)sub->body)->prefix, "rt.");
    assert_int_equal(bus_client_call(f->c, "bus", &sub, 2000, &r, &err), 0);
    msg_destroy(&r);
    return f;
}

static bool done(struct fx *f, int timeout_ms)
{
    struct pollfd p = {f->done_fd, POLLIN, 0};
    return poll(&p, 1, timeout_ms) == 1;
}

static void fx_free(struct fx *f)
{
    bus_client_destroy(&f->c);
    actor_stop(&f->rt, 2000);
    actor_stop(&f->agent, 2000);
    actor_stop(&f->hv, 2000);
    bus_destroy(&f->bus);
    cfg_destroy(&f->cfg);
    close(f->done_fd);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->root);
    assert_int_equal(system(cmd), 0);
    free(f);
}

static int rt(struct fx *f, msg_t *m, msg_t **out, char *text)
{
    err_t err = ERR_INIT;
    msg_t *r = NULL;
    int rc = bus_client_call(f->c, "runtime", &m, 5000, &r, &err);
    snprintf(text, 512, "%s", rc < 0 ? err_str(&err) : "");
    err_clear(&err);
    if (out)
        *out = r;
    else
        msg_destroy(&r);
    return rc < 0 ? -rc : 0;
}

static msg_t *idmsg(msg_type_t t, const char *id)
{
    msg_t *m = msg_new(t);
    msg_set_str((char **)m->body, id); /* every rt request starts with its id */
    return m;
}

static int create(struct fx *f, const char *id, char *text)
{
    char p[256], buf[4096];
    snprintf(p, sizeof p, "%s/config.json", f->bundle);
    int fd = open(p, O_RDONLY);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    msg_t *m = msg_new(MSG_RT_CREATE);
    msg_rt_create_t *b = m->body;
    msg_set_str(&b->id, id);
    msg_set_str(&b->bundle, f->bundle);
    msg_set_str(&b->spec, buf);
    return rt(f, m, NULL, text);
}

static char *state_of(struct fx *f, const char *id)
{
    persist_store_t *st = NULL;
    persist_container_t *c = NULL;
    assert_int_equal(persist_store_open(f->root, &st, NULL), 0);
    char *s = NULL;
    if (persist_container_load(st, "sb", id, &c, NULL) == 0)
        s = strdup(c->state);
    persist_container_free(&c);
    persist_store_destroy(&st);
    return s;
}

static void expect_state(struct fx *f, const char *id, const char *want)
{
    char *s = state_of(f, id);
    if (!s || strcmp(s, want))
        fail_msg("%s: state %s, want %s", id, s ? s : "(none)", want);
    free(s);
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_rt_actor_lifecycle_through_the_bus(void **s)
{
    struct fx *f = fx_new(false);
    char text[512];
    assert_int_equal(create(f, "c1", text), 0);
    expect_state(f, "c1", "created");
    assert_int_equal(create(f, "c1", text), EEXIST);
    assert_int_equal(rt(f, idmsg(MSG_RT_START, "c1"), NULL, text), 0);
    expect_state(f, "c1", "running");
    assert_int_equal(rt(f, idmsg(MSG_RT_START, "c1"), NULL, text), EINVAL);
    assert_string_equal(text, "cannot start an already running container");
    assert_int_equal(rt(f, idmsg(MSG_RT_RESUME, "c1"), NULL, text), EINVAL);
    assert_string_equal(text, "container not paused");
    assert_int_equal(rt(f, idmsg(MSG_RT_PAUSE, "c1"), NULL, text), 0);
    expect_state(f, "c1", "paused");
    assert_int_equal(rt(f, idmsg(MSG_RT_RESUME, "c1"), NULL, text), 0);
    expect_state(f, "c1", "running");
    msg_t *r = NULL;
    assert_int_equal(rt(f, idmsg(MSG_RT_PS, "c1"), &r, text), 0);
    assert_int_equal(MSG_BODY(r, RT_PROCESSES, rt_processes)->pids.n, 1);
    msg_destroy(&r);
    assert_int_equal(rt(f, idmsg(MSG_RT_STATS_GET, "c1"), &r, text), 0);
    assert_non_null(strstr(MSG_BODY(r, RT_STATS, rt_stats)->data, "\"usage\":4096"));
    msg_destroy(&r);
    msg_t *u = idmsg(MSG_RT_UPDATE, "c1");
    msg_set_str(&((msg_rt_update_t *)u->body)->resources, "{\"pids\":{\"limit\":10}}");
    assert_int_equal(rt(f, u, NULL, text), 0);
    /* exec: exits 3; wait answers with it */
    msg_t *e = idmsg(MSG_RT_EXEC, "c1");
    msg_set_str(&((msg_rt_exec_t *)e->body)->exec_id, "x1");
    msg_set_str(&((msg_rt_exec_t *)e->body)->process, "{\"args\":[\"true\"],\"cwd\":\"/\"}");
    assert_int_equal(rt(f, e, NULL, text), 0);
    msg_t *w = idmsg(MSG_RT_WAIT, "c1");
    msg_set_str(&((msg_rt_wait_t *)w->body)->exec_id, "x1");
    assert_int_equal(rt(f, w, &r, text), 0);
    assert_int_equal(MSG_BODY(r, RT_EXITED, rt_exited)->status, 3);
    msg_destroy(&r);
    /* delete refused while running; kill; wait; delete */
    assert_int_equal(rt(f, idmsg(MSG_RT_DELETE, "c1"), NULL, text), EINVAL);
    assert_non_null(strstr(text, "that is not stopped: running"));
    msg_t *k = idmsg(MSG_RT_KILL, "c1");
    ((msg_rt_kill_t *)k->body)->signal = 9;
    assert_int_equal(rt(f, k, NULL, text), 0);
    assert_int_equal(rt(f, idmsg(MSG_RT_WAIT, "c1"), &r, text), 0);
    assert_int_equal(MSG_BODY(r, RT_EXITED, rt_exited)->status, 137);
    msg_destroy(&r);
    expect_state(f, "c1", "stopped");
    k = idmsg(MSG_RT_KILL, "c1");
    ((msg_rt_kill_t *)k->body)->signal = 15;
    assert_int_equal(rt(f, k, NULL, text), EINVAL);
    assert_string_equal(text, "container not running");
    assert_int_equal(rt(f, idmsg(MSG_RT_START, "nope"), NULL, text), ENOENT);
    assert_int_equal(rt(f, idmsg(MSG_RT_DELETE, "c1"), NULL, text), 0);
    /* the last container gone: the sandbox and its state go too */
    assert_true(done(f, 5000));
    char dir[128];
    struct stat st;
    snprintf(dir, sizeof dir, "%s/sb/sandbox.json", f->root);
    assert_int_equal(stat(dir, &st), -1);
    fx_free(f);
}

static void test_rt_actor_two_containers_and_force_delete(void **s)
{
    struct fx *f = fx_new(false);
    char text[512];
    assert_int_equal(create(f, "a", text), 0);
    assert_int_equal(create(f, "b", text), 0);
    assert_int_equal(rt(f, idmsg(MSG_RT_START, "a"), NULL, text), 0);
    msg_t *d = idmsg(MSG_RT_DELETE, "a");
    ((msg_rt_delete_t *)d->body)->force = true;
    assert_int_equal(rt(f, d, NULL, text), 0);
    assert_null(state_of(f, "a"));
    expect_state(f, "b", "created");
    assert_false(done(f, 100)); /* b keeps the sandbox */
    assert_int_equal(rt(f, idmsg(MSG_RT_DELETE, "b"), NULL, text), 0);
    assert_true(done(f, 5000));
    fx_free(f);
}

static void test_rt_actor_boot_failure_is_reported_and_cleaned(void **s)
{
    struct fx *f = fx_new(true);
    char text[512];
    assert_int_equal(create(f, "c1", text), EIO);
    assert_non_null(strstr(text, "no room in the guest"));
    assert_true(done(f, 5000)); /* nothing left to serve */
    fx_free(f);
}

static void test_rt_actor_bad_spec_refused_before_boot(void **s)
{
    struct fx *f = fx_new(false);
    char text[512];
    msg_t *m = msg_new(MSG_RT_CREATE);
    msg_set_str(&((msg_rt_create_t *)m->body)->id, "c1");
    msg_set_str(&((msg_rt_create_t *)m->body)->bundle, f->bundle);
    msg_set_str(&((msg_rt_create_t *)m->body)->spec, "{\"root\":{\"path\":\"rootfs\"}}");
    assert_int_equal(rt(f, m, NULL, text), EINVAL);
    assert_non_null(strstr(text, "ociVersion"));
    m = msg_new(MSG_RT_CREATE);
    msg_set_str(&((msg_rt_create_t *)m->body)->id, "../x");
    msg_set_str(&((msg_rt_create_t *)m->body)->spec, "{}");
    assert_int_equal(rt(f, m, NULL, text), EINVAL);
    assert_string_equal(text, "invalid container ID format");
    assert_int_equal(f->fa.calls, 0); /* no VM was booted for them */
    fx_free(f);
}

static void test_rt_actor_vm_death_stops_every_container(void **s)
{
    struct fx *f = fx_new(false);
    char text[512];
    assert_int_equal(create(f, "c1", text), 0);
    assert_int_equal(rt(f, idmsg(MSG_RT_START, "c1"), NULL, text), 0);
    /* the hypervisor reports the VM gone */
    msg_t *ev = msg_new(MSG_HV_EXITED);
    msg_set_str(&((msg_hv_exited_t *)ev->body)->sandbox_id, "sb");
    msg_set_str(&((msg_hv_exited_t *)ev->body)->reason, "qemu killed by signal 9");
    err_t err = ERR_INIT;
    assert_int_equal(bus_client_send(f->c, "runtime", &ev, &err), 0);
    msg_t *r = NULL;
    assert_int_equal(rt(f, idmsg(MSG_RT_WAIT, "c1"), &r, text), 0);
    assert_int_equal(MSG_BODY(r, RT_EXITED, rt_exited)->status, 255);
    msg_destroy(&r);
    expect_state(f, "c1", "stopped");
    assert_int_equal(rt(f, idmsg(MSG_RT_PAUSE, "c1"), NULL, text), EINVAL);
    assert_int_equal(rt(f, idmsg(MSG_RT_DELETE, "c1"), NULL, text), 0);
    assert_true(done(f, 5000));
    fx_free(f);
}

static void test_rt_actor_shutdown_removes_everything(void **s)
{
    struct fx *f = fx_new(false);
    char text[512];
    assert_int_equal(create(f, "c1", text), 0);
    assert_int_equal(rt(f, msg_new(MSG_RT_SHUTDOWN), NULL, text), 0);
    assert_true(done(f, 5000));
    assert_null(state_of(f, "c1"));
    fx_free(f);
}

int main(void)
{
    log_setup(2, LOG_FMT_LOGFMT, LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rt_actor_lifecycle_through_the_bus),
        cmocka_unit_test(test_rt_actor_two_containers_and_force_delete),
        cmocka_unit_test(test_rt_actor_boot_failure_is_reported_and_cleaned),
        cmocka_unit_test(test_rt_actor_bad_spec_refused_before_boot),
        cmocka_unit_test(test_rt_actor_vm_death_stops_every_container),
        cmocka_unit_test(test_rt_actor_shutdown_removes_everything),
    };
    return cmocka_run_group_tests_name("rt_actor", tests, NULL, NULL);
}
