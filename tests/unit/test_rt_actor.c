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
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "actors/client.h"
#include "hypervisors/hypervisor_actor.h"
#include "resources/resource_actor.h"
#include "runtimes/runtime_actor.h"
#include "bus/bus.h"
#include "common/log.h"
#include "persist/persist_actor.h"
#include "persist/store.h"
#include "resources/net.h"
#include "resources/netlink.h"

/* ---- the scripted agent ---------------------------------------------------- */

struct fake_agent {
    bool refuse_sandbox; /* create_sandbox fails */
    msg_type_t refuse;   /* requests of this type fail (0: none) */
    int calls;
    int net_calls[3];    /* update_interface, update_routes, add_arp_neighbors */
    char ifaces[4096]; /* every update_interface body, one a line */
    int list_mode;     /* list_containers: 0 the script below, 1 malformed */
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
    if (fa->refuse && (*m)->type == fa->refuse) {
        actor_reply_error(a, *m, EIO, "scripted refusal of %s", msg_type_name((*m)->type));
        return;
    }
    switch ((*m)->type) {
    case MSG_AGENT_UPDATE_INTERFACE:
        fa->net_calls[0]++;
        size_t used = strlen(fa->ifaces);
        snprintf(fa->ifaces + used, sizeof fa->ifaces - used, "%s\n",
                 ((msg_agent_update_interface_t *)(*m)->body)->interface);
        ok(a, m, MSG_AGENT_OK);
        break;
    case MSG_AGENT_UPDATE_ROUTES:
        fa->net_calls[1]++;
        ok(a, m, MSG_AGENT_OK);
        break;
    case MSG_AGENT_ADD_ARP_NEIGHBORS:
        fa->net_calls[2]++;
        ok(a, m, MSG_AGENT_OK);
        break;
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
    case MSG_AGENT_LIST_CONTAINERS: {
        /* restore: c1 runs (and its exec e1 exited 3), c2 exited 7, c3 is
         * unknown to the guest, zz is unknown to the host */
        msg_t *r = msg_new_reply(*m, MSG_AGENT_CONTAINERS);
        msg_agent_containers_t *b = r->body;
        const char *rows[][3] = {{"c1", "", "running"},
                                 {"c1", "e1", "stopped"},
                                 {"c2", "", "stopped"},
                                 {"zz", "", "running"}};
        const uint64_t exited_v[] = {0, 1, 1, 0}, status_v[] = {0, 3, 7, 0};
        for (int i = 0; i < 4; i++) {
            msg_strv_push(&b->container_ids, rows[i][0]);
            msg_strv_push(&b->exec_ids, rows[i][1]);
            msg_strv_push(&b->states, rows[i][2]);
            msg_u64v_push(&b->pids, 10 + (uint64_t)i);
            msg_u64v_push(&b->exited, exited_v[i]);
            msg_u64v_push(&b->statuses, status_v[i]);
        }
        if (fa->list_mode == 1)
            msg_u64v_push(&b->statuses, 1); /* one more status than entries */
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
    MSG_AGENT_CONNECT,           MSG_AGENT_CREATE_SANDBOX,   MSG_AGENT_DESTROY_SANDBOX,
    MSG_AGENT_CREATE_CONTAINER,  MSG_AGENT_START_CONTAINER,  MSG_AGENT_REMOVE_CONTAINER,
    MSG_AGENT_EXEC_PROCESS,      MSG_AGENT_SIGNAL_PROCESS,   MSG_AGENT_PAUSE_CONTAINER,
    MSG_AGENT_RESUME_CONTAINER,  MSG_AGENT_UPDATE_CONTAINER, MSG_AGENT_STATS_CONTAINER,
    MSG_AGENT_LIST_PROCESSES,    MSG_AGENT_UPDATE_INTERFACE, MSG_AGENT_UPDATE_ROUTES,
    MSG_AGENT_ADD_ARP_NEIGHBORS, MSG_AGENT_LIST_CONTAINERS,
};
static actor_handler_t fa_handlers[sizeof fa_types / sizeof fa_types[0] + 1];

/* ---- fixture -------------------------------------------------------------------- */

struct fx {
    char root[64], bundle[128];
    bus_t *bus;
    actor_t *hv, *agent, *rt, *pst, *res;
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

/* netns: a network namespace path for the spec, or NULL (none). */
static struct fx *fx_new_net(bool refuse_sandbox, msg_type_t refuse, const char *netns)
{
    struct fx *f = calloc(1, sizeof *f);
    f->fa.refuse_sandbox = refuse_sandbox;
    f->fa.refuse = refuse;
    strcpy(f->root, "/tmp/husk-test-rt-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->bundle, sizeof f->bundle, "%s/bundle", f->root);
    char p[256];
    snprintf(p, sizeof p, "%s/rootfs", f->bundle);
    assert_int_equal(mkdir(f->bundle, 0755), 0);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/config.json", f->bundle);
    char spec[1024], ns[256] = "";
    if (netns)
        snprintf(ns, sizeof ns, "\"namespaces\":[{\"type\":\"network\",\"path\":\"%s\"}],", netns);
    snprintf(spec, sizeof spec,
             "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"},"
             "\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"user\":{\"uid\":0,\"gid\":0}},"
             "\"annotations\":{\"a\":\"b\"},"
             "\"linux\":{%s\"resources\":{\"devices\":[{\"allow\":false,\"access\":\"rwm\"}]}}}",
             ns);
    write_file(p, spec);
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
    assert_int_equal(persist_actor_start(&ao, f->root, &f->pst, &err), 0);
    assert_int_equal(hv_actor_start(&ao, f->cfg, NULL, &f->hv, &err), 0);
    /* no cgroup file system under the root: the sandbox runs without a host
     * cgroup (tests/unit/test_res_actor.c covers it) */
    char cgfs[192];
    snprintf(cgfs, sizeof cgfs, "%s/no-cgroupfs", f->root);
    res_actor_opts_t rso = {.cgroup_fs_root = cgfs};
    assert_int_equal(res_actor_start(&ao, &rso, &f->res, &err), 0);
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

static struct fx *fx_new(bool refuse_sandbox)
{
    return fx_new_net(refuse_sandbox, 0, NULL);
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
    actor_stop(&f->res, 2000);
    actor_stop(&f->pst, 2000);
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

/* ---- restore ---------------------------------------------------------------------- */

/* The daemon "dies" (runtime and hypervisor actors stop; the state stays),
 * the sandbox records a live VMM (vmm_pid: this process, or a dead pid),
 * and a restoring runtime takes over.  Returns what restored_fd said (1
 * restored, 2 given up, 0 nothing within 10 s). */
static uint64_t fx_restore(struct fx *f, bool vmm_alive)
{
    err_t err = ERR_INIT;
    actor_stop(&f->rt, 2000);
    actor_stop(&f->hv, 2000);
    actor_stop(&f->res, 2000); /* it releases what it held: adopt finds less */
    if (done(f, 0)) {          /* the dead runtime's last word: consumed */
        uint64_t v;
        assert_int_equal(read(f->done_fd, &v, sizeof v), sizeof v);
    }
    persist_store_t *st = NULL;
    persist_sandbox_t *sb = NULL;
    assert_int_equal(persist_store_open(f->root, &st, NULL), 0);
    assert_int_equal(persist_sandbox_load(st, "sb", &sb, NULL), 0);
    pid_t pid = getpid();
    if (!vmm_alive) { /* a child that has exited and been reaped */
        pid = fork();
        if (pid == 0)
            _exit(0);
        waitpid(pid, NULL, 0);
    }
    sb->vmm_pid = pid;
    sb->vmm_start = 0;
    free(sb->agent_socket); /* the fake VM has none; the scripted agent connects anyway */
    sb->agent_socket = strdup("/nonexistent/agent.sock");
    if (vmm_alive)
        assert_int_equal(persist_proc_start_time(pid, &sb->vmm_start, NULL), 0);
    assert_int_equal(persist_sandbox_save(st, sb, NULL), 0);
    persist_sandbox_free(&sb);
    persist_store_destroy(&st);
    actor_opts_t ao = {.zctx = bus_context(f->bus), .endpoint = bus_endpoint(f->bus)};
    assert_int_equal(hv_actor_start(&ao, f->cfg, NULL, &f->hv, &err), 0);
    char cgfs[192];
    snprintf(cgfs, sizeof cgfs, "%s/no-cgroupfs", f->root);
    res_actor_opts_t rso = {.cgroup_fs_root = cgfs};
    assert_int_equal(res_actor_start(&ao, &rso, &f->res, &err), 0);
    int rfd = eventfd(0, EFD_CLOEXEC);
    rt_actor_opts_t ro = {.cfg = f->cfg,
                          .root = f->root,
                          .sandbox_id = "sb",
                          .done_fd = f->done_fd,
                          .restore = true,
                          .restored_fd = rfd};
    if (rt_actor_start(&ao, &ro, &f->rt, &err) < 0)
        fail_msg("runtime: %s", err_str(&err));
    struct pollfd p = {rfd, POLLIN, 0};
    uint64_t v = 0;
    if (poll(&p, 1, 10000) == 1)
        assert_int_equal(read(rfd, &v, sizeof v), sizeof v);
    close(rfd);
    return v;
}

static int exit_status_of(struct fx *f, const char *id)
{
    persist_store_t *st = NULL;
    persist_container_t *c = NULL;
    assert_int_equal(persist_store_open(f->root, &st, NULL), 0);
    int s = -1;
    if (persist_container_load(st, "sb", id, &c, NULL) == 0 && c->exited)
        s = c->exit_status;
    persist_container_free(&c);
    persist_store_destroy(&st);
    return s;
}

static void test_rt_actor_restore_reconciles_with_the_guest(void **s)
{
    struct fx *f = fx_new(false);
    char text[512];
    for (int i = 1; i <= 3; i++) {
        char id[8];
        snprintf(id, sizeof id, "c%d", i);
        assert_int_equal(create(f, id, text), 0);
        assert_int_equal(rt(f, idmsg(MSG_RT_START, id), NULL, text), 0);
    }
    assert_int_equal(fx_restore(f, true), 1);
    expect_state(f, "c1", "running"); /* the guest runs it */
    expect_state(f, "c2", "stopped"); /* exited while no daemon ran */
    assert_int_equal(exit_status_of(f, "c2"), 7);
    expect_state(f, "c3", "stopped"); /* unknown to the guest */
    assert_int_equal(exit_status_of(f, "c3"), 255);
    /* the restored runtime serves: waits answer with the guest's statuses */
    msg_t *w = idmsg(MSG_RT_WAIT, "c2"), *r = NULL;
    assert_int_equal(rt(f, w, &r, text), 0);
    assert_int_equal(MSG_BODY(r, RT_EXITED, rt_exited)->status, 7);
    msg_destroy(&r);
    w = idmsg(MSG_RT_WAIT, "c1");
    msg_set_str(&((msg_rt_wait_t *)w->body)->exec_id, "e1");
    assert_int_equal(rt(f, w, &r, text), 0);
    assert_int_equal(MSG_BODY(r, RT_EXITED, rt_exited)->status, 3);
    msg_destroy(&r);
    /* the id only the guest reported was refused, not adopted */
    assert_int_equal(rt(f, idmsg(MSG_RT_KILL, "zz"), NULL, text), ENOENT);
    /* and the sandbox records this (living) daemon as its own */
    persist_store_t *st = NULL;
    persist_sandbox_t *sb = NULL;
    assert_int_equal(persist_store_open(f->root, &st, NULL), 0);
    assert_int_equal(persist_sandbox_load(st, "sb", &sb, NULL), 0);
    assert_string_equal(sb->state, "ready");
    assert_true(persist_daemon_alive(sb));
    persist_sandbox_free(&sb);
    persist_store_destroy(&st);
    assert_false(done(f, 0));
    /* and tears the sandbox down as a booted one (the share found again) */
    assert_int_equal(rt(f, msg_new(MSG_RT_SHUTDOWN), NULL, text), 0);
    assert_true(done(f, 5000));
    struct stat stb;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/sb", f->root);
    assert_int_equal(stat(dir, &stb), -1);
    fx_free(f);
}

static void test_rt_actor_restore_malformed_list_gives_up(void **s)
{
    struct fx *f = fx_new(false);
    char text[512];
    assert_int_equal(create(f, "c1", text), 0);
    assert_int_equal(rt(f, idmsg(MSG_RT_START, "c1"), NULL, text), 0);
    f->fa.list_mode = 1;
    assert_int_equal(fx_restore(f, true), 2);
    expect_state(f, "c1", "stopped");
    assert_int_equal(exit_status_of(f, "c1"), 255);
    assert_true(done(f, 5000)); /* the daemon leaves */
    fx_free(f);
}

static void test_rt_actor_restore_with_a_dead_vmm_gives_up(void **s)
{
    struct fx *f = fx_new(false);
    char text[512];
    assert_int_equal(create(f, "c1", text), 0);
    assert_int_equal(fx_restore(f, false), 2);
    expect_state(f, "c1", "stopped");
    assert_true(done(f, 5000));
    fx_free(f);
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


/* What a failing test leaves for net_teardown. */
static struct fx *g_fx;
static struct netns *g_ns;

/* Each agent step failing: the request fails with the agent's reason and
 * the container stays where it was (or is gone, for create). */
static void test_rt_actor_agent_step_failures(void **s)
{
    static const struct {
        msg_type_t refuse;
        msg_type_t step; /* the rt request that fails */
        const char *state_after;
    } cases[] = {
        {MSG_AGENT_CREATE_CONTAINER, MSG_RT_CREATE, NULL},
        {MSG_AGENT_START_CONTAINER, MSG_RT_START, "created"},
        {MSG_AGENT_PAUSE_CONTAINER, MSG_RT_PAUSE, "running"},
        {MSG_AGENT_SIGNAL_PROCESS, MSG_RT_KILL, "running"},
        {MSG_AGENT_LIST_PROCESSES, MSG_RT_PS, "running"},
        {MSG_AGENT_STATS_CONTAINER, MSG_RT_STATS_GET, "running"},
        {MSG_AGENT_UPDATE_CONTAINER, MSG_RT_UPDATE, "running"},
        {MSG_AGENT_EXEC_PROCESS, MSG_RT_EXEC, "running"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct fx *f = g_fx = fx_new_net(false, cases[i].refuse, NULL);
        char text[512];
        int rc = create(f, "c1", text);
        if (cases[i].step != MSG_RT_CREATE) {
            assert_int_equal(rc, 0);
            if (cases[i].step != MSG_RT_START)
                assert_int_equal(rt(f, idmsg(MSG_RT_START, "c1"), NULL, text), 0);
            msg_t *m = idmsg(cases[i].step, "c1");
            if (cases[i].step == MSG_RT_KILL)
                ((msg_rt_kill_t *)m->body)->signal = 15;
            if (cases[i].step == MSG_RT_UPDATE)
                msg_set_str(&((msg_rt_update_t *)m->body)->resources, "{\"pids\":{\"limit\":10}}");
            if (cases[i].step == MSG_RT_EXEC) {
                msg_set_str(&((msg_rt_exec_t *)m->body)->exec_id, "x1");
                msg_set_str(&((msg_rt_exec_t *)m->body)->process,
                            "{\"args\":[\"true\"],\"cwd\":\"/\"}");
            }
            rc = rt(f, m, NULL, text);
        }
        if (rc == 0 || !strstr(text, "scripted refusal"))
            fail_msg("case %zu (%s): rc %d, \"%s\"", i, msg_type_name(cases[i].refuse), rc, text);
        if (cases[i].state_after)
            expect_state(f, "c1", cases[i].state_after);
        else
            assert_null(state_of(f, "c1")); /* gone before the reply */
        /* the failed step left nothing half done: the sandbox ends */
        if (cases[i].state_after) {
            msg_t *d = idmsg(MSG_RT_DELETE, "c1");
            ((msg_rt_delete_t *)d->body)->force = true;
            assert_int_equal(rt(f, d, NULL, text), 0);
        }
        assert_true(done(f, 5000));
        fx_free(f);
        g_fx = NULL;
    }
}

/* ---- the sandbox network: a namespace with veth links ------------------------- */

struct netns {
    pid_t holder; /* a child paused in the namespace */
    char path[64];
};

static void netns_new(struct netns *n)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    n->holder = fork();
    assert_true(n->holder >= 0);
    if (n->holder == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives a failed test */
        char c = unshare(CLONE_NEWNET) == 0 ? 'y' : 'n';
        if (write(p[1], &c, 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(p[1]);
    char c = 0;
    assert_int_equal(read(p[0], &c, 1), 1);
    close(p[0]);
    assert_int_equal(c, 'y');
    snprintf(n->path, sizeof n->path, "/proc/%d/ns/net", (int)n->holder);
}

static void netns_free(struct netns *n)
{
    if (n->holder > 0) {
        kill(n->holder, SIGKILL);
        waitpid(n->holder, NULL, 0);
        n->holder = 0;
    }
}

/* Runs netlink requests in the namespace (this thread enters and leaves). */
struct nl_req {
    struct nlmsghdr *(*build)(char *buf, void *arg);
    void *arg;
};

static int in_ns(struct netns *n, int (*fn)(void *arg, err_t *err), void *arg, err_t *err)
{
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int ns = open(n->path, O_RDONLY | O_CLOEXEC);
    assert_true(self >= 0 && ns >= 0);
    assert_int_equal(setns(ns, CLONE_NEWNET), 0);
    int r = fn(arg, err);
    assert_int_equal(setns(self, CLONE_NEWNET), 0);
    close(self);
    close(ns);
    return r;
}

/* A veth pair (name, peer "p" + name) with address 10.77.<i>.2/24, both
 * up; for i == 0 also a default route and a permanent neighbour. */
static int veth_up(void *arg, err_t *err)
{
    int i = *(int *)arg;
    char name[16], peer[16], buf[RES_NL_BUF];
    snprintf(name, sizeof name, "eth%d", i);
    snprintf(peer, sizeof peer, "peth%d", i);
    uint8_t mac[6] = {0x0a, 0x58, 0x0a, 0x4d, (uint8_t)i, 0x02};
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWLINK;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof *ifi);
    ifi->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    mnl_attr_put(nlh, IFLA_ADDRESS, 6, mac);
    struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
    struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    struct nlattr *pe = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
    struct ifinfomsg *pifi = mnl_nlmsg_put_extra_header(nlh, sizeof *pifi);
    pifi->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
    mnl_attr_nest_end(nlh, pe);
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, info);
    res_nl_t *nl = NULL;
    int r = res_nl_open(&nl, err);
    if (r == 0)
        r = res_nl_talk(nl, nlh, NULL, NULL, "add a veth pair", err);
    int idx = (int)if_nametoindex(name), pidx = (int)if_nametoindex(peer);
    uint8_t a[4] = {10, 77, (uint8_t)i, 2}, gw[4] = {10, 77, (uint8_t)i, 1};
    if (r == 0)
        r = res_nl_talk(nl, res_nl_link_set(buf, pidx, NULL, 0, true, true), NULL, NULL, "peer up",
                        err);
    if (r == 0)
        r = res_nl_talk(nl, res_nl_link_set(buf, idx, NULL, 0, true, true), NULL, NULL, "link up",
                        err);
    if (r == 0)
        r = res_nl_talk(nl, res_nl_addr(buf, RTM_NEWADDR, AF_INET, idx, a, 24, false), NULL, NULL,
                        "address", err);
    if (r == 0 && i == 0)
        r = res_nl_talk(nl,
                        res_nl_route(buf, RTM_NEWROUTE, AF_INET, NULL, 0, gw, NULL, idx,
                                     RT_SCOPE_UNIVERSE, 0),
                        NULL, NULL, "default route", err);
    uint8_t nmac[6] = {2, 0, 0, 0, 0, 9};
    if (r == 0 && i == 0)
        r = res_nl_talk(nl, res_nl_neigh(buf, AF_INET, idx, gw, nmac, NUD_PERMANENT), NULL, NULL,
                        "neighbour", err);
    res_nl_close(&nl);
    return r;
}

static int link_del(void *arg, err_t *err)
{
    char buf[RES_NL_BUF];
    res_nl_t *nl = NULL;
    int r = res_nl_open(&nl, err);
    if (r == 0)
        r = res_nl_talk(nl, res_nl_link_del(buf, (int)if_nametoindex(arg)), NULL, NULL,
                        "delete a link", err);
    res_nl_close(&nl);
    return r;
}

struct has_link {
    const char *name;
    bool found;
};

static int has_link_fn(void *arg, err_t *err)
{
    struct has_link *h = arg;
    h->found = if_nametoindex(h->name) > 0;
    return 0;
}

static bool ns_has(struct netns *n, const char *name)
{
    struct has_link h = {name, false};
    err_t err = ERR_INIT;
    in_ns(n, has_link_fn, &h, &err);
    return h.found;
}

static void add_veth(struct netns *n, int i)
{
    err_t err = ERR_INIT;
    if (in_ns(n, veth_up, &i, &err) < 0)
        fail_msg("netns: %s", err_str(&err));
}

/* The sandbox's namespace is brought into the VM (a tap per interface),
 * the guest told its interfaces, routes and neighbours; update_network
 * hot-plugs what came and unplugs what went; shutdown gives it all back. */
static void test_rt_actor_network_boot_update_shutdown(void **s)
{
    static struct netns n;
    netns_new(&n);
    g_ns = &n;
    add_veth(&n, 0);
    struct fx *f = g_fx = fx_new_net(false, 0, n.path);
    char text[512];
    int rc = create(f, "c1", text);
    /* a veth pair is two interfaces of the namespace: eth0 and peth0 */
    bool booted = rc == 0 && f->fa.net_calls[0] == 2 && f->fa.net_calls[1] == 1 &&
                  f->fa.net_calls[2] == 1 && strstr(f->fa.ifaces, "\"name\":\"eth0\"") &&
                  strstr(f->fa.ifaces, "\"name\":\"peth0\"") &&
                  strstr(f->fa.ifaces, "\"10.77.0.2/24\"") &&
                  ns_has(&n, "tap0" RES_NET_TAP_SUFFIX) && ns_has(&n, "tap1" RES_NET_TAP_SUFFIX);
    if (!booted)
        fail_msg("create: %d %s; agent calls %d %d %d; interfaces:\n%s", rc, text,
                 f->fa.net_calls[0], f->fa.net_calls[1], f->fa.net_calls[2], f->fa.ifaces);

    /* a second pair comes: hot-plugged, only it is configured */
    f->fa.ifaces[0] = 0;
    add_veth(&n, 1);
    assert_int_equal(rt(f, idmsg(MSG_RT_UPDATE_NETWORK, "sb"), NULL, text), 0);
    assert_int_equal(f->fa.net_calls[0], 4);
    assert_int_equal(f->fa.net_calls[1], 2);
    assert_non_null(strstr(f->fa.ifaces, "\"name\":\"eth1\""));
    assert_null(strstr(f->fa.ifaces, "\"name\":\"eth0\""));
    assert_true(ns_has(&n, "tap2" RES_NET_TAP_SUFFIX));
    assert_true(ns_has(&n, "tap3" RES_NET_TAP_SUFFIX));
    /* nothing changed: nothing plugged, routes told again */
    assert_int_equal(rt(f, idmsg(MSG_RT_UPDATE_NETWORK, "c1"), NULL, text), 0);
    assert_int_equal(f->fa.net_calls[0], 4);
    assert_int_equal(f->fa.net_calls[1], 3);
    /* the pair goes: unplugged, its taps removed */
    err_t err = ERR_INIT;
    assert_int_equal(in_ns(&n, link_del, "eth1", &err), 0);
    assert_int_equal(rt(f, idmsg(MSG_RT_UPDATE_NETWORK, "sb"), NULL, text), 0);
    assert_false(ns_has(&n, "tap2" RES_NET_TAP_SUFFIX));
    assert_false(ns_has(&n, "tap3" RES_NET_TAP_SUFFIX));
    assert_true(ns_has(&n, "tap0" RES_NET_TAP_SUFFIX));
    /* the guest refusing a new interface fails the update */
    f->fa.refuse = MSG_AGENT_UPDATE_INTERFACE;
    add_veth(&n, 2);
    assert_int_equal(rt(f, idmsg(MSG_RT_UPDATE_NETWORK, "sb"), NULL, text), EIO);
    assert_non_null(strstr(text, "configure the guest network"));
    f->fa.refuse = 0;
    assert_int_equal(rt(f, idmsg(MSG_RT_UPDATE_NETWORK, "nosuch"), NULL, text), ENOENT);

    assert_int_equal(rt(f, msg_new(MSG_RT_SHUTDOWN), NULL, text), 0);
    assert_true(done(f, 5000));
    for (int i = 0; i < 6; i++) {
        char tap[16];
        snprintf(tap, sizeof tap, "tap%d" RES_NET_TAP_SUFFIX, i);
        if (ns_has(&n, tap))
            fail_msg("%s left in the namespace after shutdown", tap);
    }
    assert_true(ns_has(&n, "eth0"));
}

/* The guest refusing its network fails the boot; the namespace is given back. */
static void test_rt_actor_network_refused_fails_the_boot(void **s)
{
    static struct netns n;
    netns_new(&n);
    g_ns = &n;
    add_veth(&n, 0);
    struct fx *f = g_fx = fx_new_net(false, MSG_AGENT_UPDATE_ROUTES, n.path);
    char text[512];
    int rc = create(f, "c1", text);
    bool ok = rc == EIO && strstr(text, "configure the guest network");
    assert_true(done(f, 5000));
    if (!ok)
        fail_msg("create: %d %s", rc, text);
    assert_false(ns_has(&n, "tap0" RES_NET_TAP_SUFFIX));
}

/* A namespace path that is not one fails the boot with the reason. */
static void test_rt_actor_network_bad_namespace(void **s)
{
    struct fx *f = g_fx = fx_new_net(false, 0, "/nonexistent/netns");
    char text[512];
    assert_int_equal(create(f, "c1", text), EIO);
    assert_non_null(strstr(text, "network"));
    assert_non_null(strstr(text, "/nonexistent/netns"));
    assert_true(done(f, 5000));
}

/* Frees what a test made, passed or failed. */
static int net_teardown(void **s)
{
    if (g_fx)
        fx_free(g_fx);
    if (g_ns)
        netns_free(g_ns);
    g_fx = NULL;
    g_ns = NULL;
    return 0;
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
        cmocka_unit_test(test_rt_actor_restore_reconciles_with_the_guest),
        cmocka_unit_test(test_rt_actor_restore_malformed_list_gives_up),
        cmocka_unit_test(test_rt_actor_restore_with_a_dead_vmm_gives_up),
        cmocka_unit_test_teardown(test_rt_actor_agent_step_failures, net_teardown),
        cmocka_unit_test_teardown(test_rt_actor_network_boot_update_shutdown, net_teardown),
        cmocka_unit_test_teardown(test_rt_actor_network_refused_fails_the_boot, net_teardown),
        cmocka_unit_test_teardown(test_rt_actor_network_bad_namespace, net_teardown),
    };
    return cmocka_run_group_tests_name("rt_actor", tests, NULL, NULL);
}
