/* services/shim_service: the shim's TaskService served over a real ttRPC
 * socket, in front of the real runtime actor with the fake hypervisor and
 * a scripted agent (as tests/unit/test_rt_actor.c): every RPC, its refusals
 * and the stdio it relays to the fifos. */
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
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "hypervisors/hypervisor_actor.h"
#include "resources/resource_actor.h"
#include "persist/persist_actor.h"
#include "runtimes/runtime_actor.h"
#include "bus/bus.h"
#include "common/log.h"
#include "services/proto/containerd/task/v2/shim.pb-c.h"
#include "services/proto/google/protobuf/any.pb-c.h"
#include "services/shim_service.h"
#include "services/ttrpc.h"
#include "services/ttrpc_task.h"

/* ---- the scripted agent ----------------------------------------------------------- */

static void ok(actor_t *a, msg_t **m, msg_type_t t)
{
    msg_t *r = msg_new_reply(*m, t);
    actor_reply(a, *m, &r);
}

static void publish_exited(actor_t *a, const char *cid, const char *eid, int64_t status)
{
    msg_t *e = msg_new(MSG_AGENT_EXITED);
    msg_agent_exited_t *b = e->body;
    msg_set_str(&b->container_id, cid);
    msg_set_str(&b->exec_id, eid);
    b->status = status;
    err_t err = ERR_INIT;
    actor_publish(a, &e, &err);
}

static void publish_output(actor_t *a, const char *cid, const char *eid, const char *text, bool eof)
{
    msg_t *e = msg_new(MSG_AGENT_OUTPUT);
    msg_agent_output_t *b = e->body;
    msg_set_str(&b->container_id, cid);
    msg_set_str(&b->exec_id, eid);
    b->stream = 1;
    msg_set_bin(&b->data, text, strlen(text));
    b->eof = eof;
    err_t err = ERR_INIT;
    actor_publish(a, &e, &err);
}

struct fake_agent {
    int acks;   /* agent.output_ack seen */
    int stdins; /* agent.write_stdin seen */
};

static void fa_any(actor_t *a, msg_t **m, void *state)
{
    struct fake_agent *fa = state;
    switch ((*m)->type) {
    case MSG_AGENT_CONNECT:
        ok(a, m, MSG_AGENT_HEALTH);
        break;
    case MSG_AGENT_CREATE_CONTAINER:
    case MSG_AGENT_EXEC_PROCESS: {
        msg_t *r = msg_new_reply(*m, MSG_AGENT_PID);
        ((msg_agent_pid_t *)r->body)->pid = 7;
        actor_reply(a, *m, &r);
        if ((*m)->type == MSG_AGENT_EXEC_PROCESS) {
            msg_agent_exec_process_t *b = (*m)->body;
            publish_output(a, b->container_id, b->exec_id, "exec says hi\n", true);
            publish_exited(a, b->container_id, b->exec_id, 3);
        }
        break;
    }
    case MSG_AGENT_START_CONTAINER: {
        msg_agent_start_container_t *b = (*m)->body;
        ok(a, m, MSG_AGENT_OK);
        publish_output(a, b->container_id, "", "hello from init\n", false);
        break;
    }
    case MSG_AGENT_SIGNAL_PROCESS: {
        msg_agent_signal_process_t *b = (*m)->body;
        ok(a, m, MSG_AGENT_OK);
        publish_output(a, b->container_id, b->exec_id, "", true);
        publish_exited(a, b->container_id, b->exec_id, 128 + (int64_t)b->signal);
        break;
    }
    case MSG_AGENT_LIST_PROCESSES: {
        msg_t *r = msg_new_reply(*m, MSG_AGENT_PROCESSES);
        msg_u64v_push(&((msg_agent_processes_t *)r->body)->pids, 1);
        msg_u64v_push(&((msg_agent_processes_t *)r->body)->pids, 9);
        actor_reply(a, *m, &r);
        break;
    }
    case MSG_AGENT_STATS_CONTAINER: {
        msg_t *r = msg_new_reply(*m, MSG_AGENT_STATS);
        msg_agent_stats_t *s = r->body;
        s->memory_current = 4096;
        s->pids_current = 2;
        s->cpu_usage_usec = 1000;
        msg_strv_push(&s->present, "memory");
        msg_strv_push(&s->present, "pids");
        msg_strv_push(&s->present, "cpu");
        actor_reply(a, *m, &r);
        break;
    }
    case MSG_AGENT_WRITE_STDIN: {
        fa->stdins++;
        msg_t *r = msg_new_reply(*m, MSG_AGENT_WRITTEN);
        ((msg_agent_written_t *)r->body)->len = ((msg_agent_write_stdin_t *)(*m)->body)->data.len;
        actor_reply(a, *m, &r);
        break;
    }
    case MSG_AGENT_OUTPUT_ACK:
        fa->acks++;
        break;
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
    MSG_AGENT_LIST_PROCESSES,   MSG_AGENT_WRITE_STDIN,      MSG_AGENT_CLOSE_STDIN,
    MSG_AGENT_TTY_RESIZE,       MSG_AGENT_OUTPUT_ACK,
};
static actor_handler_t fa_handlers[sizeof fa_types / sizeof fa_types[0] + 1];

/* ---- fixture ------------------------------------------------------------------------ */

struct fx {
    char root[64], bundle[128], sock[160], out[160], in[160];
    bus_t *bus;
    actor_t *hv, *agent, *rt, *shim, *pst, *res;
    cfg_t *cfg;
    int done_fd, exit_fd;
    struct fake_agent fa;
    actor_def_t agent_def;
    struct event_base *base;
    ttrpc_client_t *cl;
};

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    strcpy(f->root, "/tmp/husk-test-shimsvc-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->bundle, sizeof f->bundle, "%s/bundle", f->root);
    assert_int_equal(mkdir(f->bundle, 0755), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/rootfs", f->bundle);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/config.json", f->bundle);
    write_file(p, "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"},"
                  "\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"user\":{\"uid\":0,\"gid\":0}}}");
    snprintf(f->out, sizeof f->out, "%s/stdout", f->root);
    assert_int_equal(mkfifo(f->out, 0600), 0);
    snprintf(f->in, sizeof f->in, "%s/stdin", f->root);
    assert_int_equal(mkfifo(f->in, 0600), 0);
    snprintf(f->sock, sizeof f->sock, "unix://%s/shim.sock", f->root);

    char dir[128];
    snprintf(dir, sizeof dir, "%s/sb", f->root);
    err_t err = ERR_INIT;
    bus_opts_t bo = {.dir = dir, .supervise_ms = -1};
    assert_int_equal(bus_new(&bo, &f->bus, &err), 0);
    f->cfg = cfg_new_defaults(NULL);
    free(f->cfg->backend);
    f->cfg->backend = strdup("fake");
    f->done_fd = eventfd(0, EFD_CLOEXEC);
    f->exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
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
    svc_shim_service_opts_t so = {
        .listen_fd = -1, .address = f->sock, .ns = "unit", .exit_fd = f->exit_fd};
    if (svc_shim_service_start(&ao, &so, &f->shim, &err) < 0)
        fail_msg("shim service: %s", err_str(&err));
    f->base = event_base_new();
    if (ttrpc_client_connect(f->base, f->sock, &f->cl, &err) < 0)
        fail_msg("connect: %s", err_str(&err));
    *state = f;
    return 0;
}

/* A failed test may leave the runtime's share mounts: detach them. */
static void umount_under(const char *root)
{
    FILE *m = fopen("/proc/self/mountinfo", "r");
    if (!m)
        return;
    char line[4096], mp[4096];
    size_t n = strlen(root);
    while (fgets(line, sizeof line, m))
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && !strncmp(mp, root, n))
            umount2(mp, MNT_DETACH);
    fclose(m);
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    ttrpc_client_destroy(&f->cl);
    event_base_free(f->base);
    actor_stop(&f->shim, 2000);
    actor_stop(&f->rt, 2000);
    actor_stop(&f->agent, 2000);
    actor_stop(&f->hv, 2000);
    actor_stop(&f->res, 2000);
    actor_stop(&f->pst, 2000);
    bus_destroy(&f->bus);
    cfg_destroy(&f->cfg);
    close(f->done_fd);
    close(f->exit_fd);
    umount_under(f->root);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->root);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* ---- calls -------------------------------------------------------------------------- */

/* Calls method with req; returns the ttRPC code; *out (when given and OK)
 * is the unpacked answer of type out_desc; msg gets the error text. */
static int rpc(struct fx *f, const char *method, const ProtobufCMessage *req,
               const ProtobufCMessageDescriptor *out_desc, ProtobufCMessage **out, char *msg)
{
    size_t n = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(n ? n : 1);
    protobuf_c_message_pack(req, buf);
    ttrpc_result_t res = TTRPC_RESULT_INIT;
    err_t err = ERR_INIT;
    ttrpc_call_opts_t o = {.timeout_ns = 10ll * 1000 * 1000 * 1000};
    if (ttrpc_client_call_sync(f->cl, SVC_TTRPC_TASK_SERVICE, method, buf, n, &o, &res, &err) < 0)
        fail_msg("%s: %s", method, err_str(&err));
    free(buf);
    int code = res.code;
    if (msg)
        snprintf(msg, 512, "%s", res.message ? res.message : "");
    if (out) {
        *out = NULL;
        if (code == TTRPC_OK) {
            *out = protobuf_c_message_unpack(out_desc, NULL, res.len, res.payload);
            assert_non_null(*out);
        }
    }
    ttrpc_result_clear(&res);
    return code;
}

#define RPC_OK(f, method, req) assert_int_equal(rpc(f, method, &(req).base, NULL, NULL, NULL), 0)

static int create(struct fx *f, const char *id, const char *out, const char *in, char *msg)
{
    Containerd__Task__V2__CreateTaskRequest r = CONTAINERD__TASK__V2__CREATE_TASK_REQUEST__INIT;
    r.id = (char *)id;
    r.bundle = f->bundle;
    if (out)
        r.stdout = (char *)out;
    if (in)
        r.stdin = (char *)in;
    ProtobufCMessage *resp = NULL;
    int code =
        rpc(f, "Create", &r.base, &containerd__task__v2__create_task_response__descriptor, &resp, msg);
    if (resp) {
        assert_true(((Containerd__Task__V2__CreateTaskResponse *)resp)->pid > 0);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return code;
}

static Containerd__Task__V2__StateResponse *state_of(struct fx *f, const char *id, const char *eid)
{
    Containerd__Task__V2__StateRequest r = CONTAINERD__TASK__V2__STATE_REQUEST__INIT;
    r.id = (char *)id;
    if (eid)
        r.exec_id = (char *)eid;
    ProtobufCMessage *resp = NULL;
    char msg[512];
    int code = rpc(f, "State", &r.base, &containerd__task__v2__state_response__descriptor, &resp, msg);
    if (code)
        fail_msg("State %s: %d %s", id, code, msg);
    return (Containerd__Task__V2__StateResponse *)resp;
}

static int kill_proc(struct fx *f, const char *id, const char *eid, int sig)
{
    Containerd__Task__V2__KillRequest k = CONTAINERD__TASK__V2__KILL_REQUEST__INIT;
    k.id = (char *)id;
    if (eid)
        k.exec_id = (char *)eid;
    k.signal = (uint32_t)sig;
    return rpc(f, "Kill", &k.base, NULL, NULL, NULL);
}

static uint32_t wait_proc(struct fx *f, const char *id, const char *eid)
{
    Containerd__Task__V2__WaitRequest w = CONTAINERD__TASK__V2__WAIT_REQUEST__INIT;
    w.id = (char *)id;
    if (eid)
        w.exec_id = (char *)eid;
    ProtobufCMessage *resp = NULL;
    assert_int_equal(
        rpc(f, "Wait", &w.base, &containerd__task__v2__wait_response__descriptor, &resp, NULL), 0);
    uint32_t st = ((Containerd__Task__V2__WaitResponse *)resp)->exit_status;
    assert_non_null(((Containerd__Task__V2__WaitResponse *)resp)->exited_at);
    protobuf_c_message_free_unpacked(resp, NULL);
    return st;
}

/* Reads from fd until want has been seen (the fifo's reader end). */
static void expect_fifo(int fd, const char *want)
{
    char buf[4096];
    size_t n = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (n < strlen(want)) {
        struct pollfd p = {fd, POLLIN, 0};
        assert_int_equal(poll(&p, 1, 10000), 1);
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        assert_true(r > 0);
        n += (size_t)r;
    }
    buf[n] = 0;
    assert_string_equal(buf, want);
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_svc_shim_service_task_lifecycle(void **state)
{
    struct fx *f = *state;
    char msg[512];
    int rfd = open(f->out, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    assert_true(rfd >= 0);
    assert_int_equal(create(f, "c1", f->out, NULL, msg), 0);
    Containerd__Task__V2__StateResponse *st = state_of(f, "c1", NULL);
    assert_int_equal(st->status, CONTAINERD__V1__TYPES__STATUS__CREATED);
    assert_string_equal(st->bundle, f->bundle);
    assert_string_equal(st->stdout, f->out);
    protobuf_c_message_free_unpacked(&st->base, NULL);

    Containerd__Task__V2__StartRequest s = CONTAINERD__TASK__V2__START_REQUEST__INIT;
    s.id = "c1";
    ProtobufCMessage *resp = NULL;
    assert_int_equal(
        rpc(f, "Start", &s.base, &containerd__task__v2__start_response__descriptor, &resp, msg), 0);
    assert_true(((Containerd__Task__V2__StartResponse *)resp)->pid > 0);
    protobuf_c_message_free_unpacked(resp, NULL);
    /* the init's output reaches the stdout fifo */
    expect_fifo(rfd, "hello from init\n");
    st = state_of(f, "c1", NULL);
    assert_int_equal(st->status, CONTAINERD__V1__TYPES__STATUS__RUNNING);
    protobuf_c_message_free_unpacked(&st->base, NULL);

    /* Pids, Stats, Update, Pause, Resume, ResizePty, CloseIO, Connect */
    Containerd__Task__V2__PidsRequest pr = CONTAINERD__TASK__V2__PIDS_REQUEST__INIT;
    pr.id = "c1";
    assert_int_equal(
        rpc(f, "Pids", &pr.base, &containerd__task__v2__pids_response__descriptor, &resp, msg), 0);
    assert_int_equal(((Containerd__Task__V2__PidsResponse *)resp)->n_processes, 2);
    protobuf_c_message_free_unpacked(resp, NULL);
    Containerd__Task__V2__StatsRequest sr = CONTAINERD__TASK__V2__STATS_REQUEST__INIT;
    sr.id = "c1";
    assert_int_equal(
        rpc(f, "Stats", &sr.base, &containerd__task__v2__stats_response__descriptor, &resp, msg),
        0);
    Google__Protobuf__Any *stats = ((Containerd__Task__V2__StatsResponse *)resp)->stats;
    assert_non_null(stats);
    assert_non_null(strstr(stats->type_url, "io.containerd.cgroups.v2.Metrics"));
    assert_true(stats->value.len > 0);
    protobuf_c_message_free_unpacked(resp, NULL);

    Google__Protobuf__Any res = GOOGLE__PROTOBUF__ANY__INIT;
    res.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
    res.value.data = (uint8_t *)"{\"pids\":{\"limit\":64}}";
    res.value.len = strlen((char *)res.value.data);
    Containerd__Task__V2__UpdateTaskRequest ur = CONTAINERD__TASK__V2__UPDATE_TASK_REQUEST__INIT;
    ur.id = "c1";
    ur.resources = &res;
    assert_int_equal(rpc(f, "Update", &ur.base, NULL, NULL, msg), 0);
    Containerd__Task__V2__PauseRequest pa = CONTAINERD__TASK__V2__PAUSE_REQUEST__INIT;
    pa.id = "c1";
    RPC_OK(f, "Pause", pa);
    st = state_of(f, "c1", NULL);
    assert_int_equal(st->status, CONTAINERD__V1__TYPES__STATUS__PAUSED);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    Containerd__Task__V2__ResumeRequest re = CONTAINERD__TASK__V2__RESUME_REQUEST__INIT;
    re.id = "c1";
    RPC_OK(f, "Resume", re);
    Containerd__Task__V2__ResizePtyRequest rz = CONTAINERD__TASK__V2__RESIZE_PTY_REQUEST__INIT;
    rz.id = "c1";
    rz.width = 80;
    rz.height = 24;
    RPC_OK(f, "ResizePty", rz);
    Containerd__Task__V2__ConnectRequest cr = CONTAINERD__TASK__V2__CONNECT_REQUEST__INIT;
    cr.id = "c1";
    assert_int_equal(
        rpc(f, "Connect", &cr.base, &containerd__task__v2__connect_response__descriptor, &resp, msg),
        0);
    assert_int_equal(((Containerd__Task__V2__ConnectResponse *)resp)->shim_pid, (uint32_t)getpid());
    protobuf_c_message_free_unpacked(resp, NULL);
    Containerd__Task__V2__CheckpointTaskRequest ck =
        CONTAINERD__TASK__V2__CHECKPOINT_TASK_REQUEST__INIT;
    ck.id = "c1";
    assert_int_equal(rpc(f, "Checkpoint", &ck.base, NULL, NULL, msg), TTRPC_UNIMPLEMENTED);

    /* an exec: added, started, its output, its exit */
    Google__Protobuf__Any spec = GOOGLE__PROTOBUF__ANY__INIT;
    spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process";
    spec.value.data = (uint8_t *)"{\"args\":[\"ls\"],\"cwd\":\"/\",\"user\":{\"uid\":0,\"gid\":0}}";
    spec.value.len = strlen((char *)spec.value.data);
    Containerd__Task__V2__ExecProcessRequest ex = CONTAINERD__TASK__V2__EXEC_PROCESS_REQUEST__INIT;
    ex.id = "c1";
    ex.exec_id = "e1";
    ex.spec = &spec;
    ex.stdout = f->out;
    RPC_OK(f, "Exec", ex);
    assert_int_equal(rpc(f, "Exec", &ex.base, NULL, NULL, msg), TTRPC_ALREADY_EXISTS);
    st = state_of(f, "c1", "e1");
    assert_int_equal(st->status, CONTAINERD__V1__TYPES__STATUS__CREATED);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    s.exec_id = "e1";
    assert_int_equal(
        rpc(f, "Start", &s.base, &containerd__task__v2__start_response__descriptor, &resp, msg), 0);
    protobuf_c_message_free_unpacked(resp, NULL);
    expect_fifo(rfd, "exec says hi\n");
    assert_int_equal(wait_proc(f, "c1", "e1"), 3);
    st = state_of(f, "c1", "e1");
    assert_int_equal(st->status, CONTAINERD__V1__TYPES__STATUS__STOPPED);
    assert_int_equal(st->exit_status, 3);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    /* deleting an exec only forgets it */
    Containerd__Task__V2__DeleteRequest d = CONTAINERD__TASK__V2__DELETE_REQUEST__INIT;
    d.id = "c1";
    d.exec_id = "e1";
    assert_int_equal(
        rpc(f, "Delete", &d.base, &containerd__task__v2__delete_response__descriptor, &resp, msg), 0);
    assert_int_equal(((Containerd__Task__V2__DeleteResponse *)resp)->exit_status, 3);
    protobuf_c_message_free_unpacked(resp, NULL);
    assert_int_equal(rpc(f, "Delete", &d.base, NULL, NULL, msg), TTRPC_NOT_FOUND);

    /* Shutdown refuses while a container lives */
    Containerd__Task__V2__ShutdownRequest sd = CONTAINERD__TASK__V2__SHUTDOWN_REQUEST__INIT;
    RPC_OK(f, "Shutdown", sd);
    uint64_t v;
    assert_int_equal(read(f->exit_fd, &v, sizeof v), -1);

    /* kill the init; Wait answers; Delete; then Shutdown ends the shim */
    assert_int_equal(kill_proc(f, "c1", NULL, 9), 0);
    assert_int_equal(wait_proc(f, "c1", NULL), 137);
    d.exec_id = "";
    assert_int_equal(
        rpc(f, "Delete", &d.base, &containerd__task__v2__delete_response__descriptor, &resp, msg), 0);
    assert_int_equal(((Containerd__Task__V2__DeleteResponse *)resp)->exit_status, 137);
    protobuf_c_message_free_unpacked(resp, NULL);
    assert_int_equal(rpc(f, "State", &pr.base, NULL, NULL, msg), TTRPC_NOT_FOUND);
    RPC_OK(f, "Shutdown", sd);
    struct pollfd p = {f->exit_fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 10000), 1);
    close(rfd);
    assert_true(f->fa.acks > 0);
}

static void test_svc_shim_service_refusals(void **state)
{
    struct fx *f = *state;
    char msg[512];
    /* Create: bad id, relative bundle, missing config, checkpoint */
    assert_int_equal(create(f, "", NULL, NULL, msg), TTRPC_INVALID_ARGUMENT);
    Containerd__Task__V2__CreateTaskRequest r = CONTAINERD__TASK__V2__CREATE_TASK_REQUEST__INIT;
    r.id = "c1";
    r.bundle = "rel/bundle";
    assert_int_equal(rpc(f, "Create", &r.base, NULL, NULL, msg), TTRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "absolute"));
    r.bundle = f->root; /* no config.json there */
    assert_int_not_equal(rpc(f, "Create", &r.base, NULL, NULL, msg), TTRPC_OK);
    assert_non_null(strstr(msg, "config.json"));
    r.bundle = f->bundle;
    r.checkpoint = "/ck";
    assert_int_equal(rpc(f, "Create", &r.base, NULL, NULL, msg), TTRPC_UNIMPLEMENTED);
    /* a stdout that cannot be opened */
    char bad[200];
    snprintf(bad, sizeof bad, "%s/no/such/fifo", f->root);
    assert_int_not_equal(create(f, "c1", bad, NULL, msg), TTRPC_OK);
    /* a good one; then the same id again */
    assert_int_equal(create(f, "c1", NULL, NULL, msg), 0);
    assert_int_equal(create(f, "c1", NULL, NULL, msg), TTRPC_ALREADY_EXISTS);

    /* unknown containers and processes */
    static const char *const methods[] = {"Start", "Delete", "Pids", "Pause", "Resume",
                                          "Kill", "Stats", "Wait", "State", "CloseIO",
                                          "ResizePty", "Update"};
    Containerd__Task__V2__KillRequest k = CONTAINERD__TASK__V2__KILL_REQUEST__INIT;
    k.id = "nope"; /* every request has id as field 1; Kill's shape works for all */
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        int code = rpc(f, methods[i], &k.base, NULL, NULL, msg);
        if (code != TTRPC_NOT_FOUND)
            fail_msg("%s of an unknown container: %d %s", methods[i], code, msg);
    }
    k.id = "c1";
    k.exec_id = "e9";
    k.signal = 9;
    assert_int_equal(rpc(f, "Kill", &k.base, NULL, NULL, msg), TTRPC_NOT_FOUND);

    /* Exec before Start, without a spec, with a bad id */
    Google__Protobuf__Any spec = GOOGLE__PROTOBUF__ANY__INIT;
    spec.value.data = (uint8_t *)"{\"args\":[\"ls\"],\"cwd\":\"/\"}";
    spec.value.len = strlen((char *)spec.value.data);
    Containerd__Task__V2__ExecProcessRequest ex = CONTAINERD__TASK__V2__EXEC_PROCESS_REQUEST__INIT;
    ex.id = "c1";
    ex.exec_id = "e1";
    ex.spec = &spec;
    assert_int_equal(rpc(f, "Exec", &ex.base, NULL, NULL, msg), TTRPC_FAILED_PRECONDITION);
    ex.id = "nope";
    assert_int_equal(rpc(f, "Exec", &ex.base, NULL, NULL, msg), TTRPC_NOT_FOUND);
    ex.id = "c1";
    ex.exec_id = "";
    assert_int_equal(rpc(f, "Exec", &ex.base, NULL, NULL, msg), TTRPC_INVALID_ARGUMENT);

    /* a created init may be killed (as with runc), then deleted */
    k.exec_id = "";
    assert_int_equal(rpc(f, "Kill", &k.base, NULL, NULL, msg), TTRPC_OK);
    assert_int_equal(wait_proc(f, "c1", NULL), 137);
    Containerd__Task__V2__DeleteRequest d = CONTAINERD__TASK__V2__DELETE_REQUEST__INIT;
    d.id = "c1";
    int code = rpc(f, "Delete", &d.base, NULL, NULL, msg);
    if (code)
        fail_msg("Delete of a created container: %d %s", code, msg);
}

static void test_svc_shim_service_stdin_is_relayed(void **state)
{
    struct fx *f = *state;
    char msg[512];
    int wfd = open(f->in, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    assert_true(wfd >= 0);
    assert_int_equal(create(f, "c2", NULL, f->in, msg), 0);
    Containerd__Task__V2__StartRequest s = CONTAINERD__TASK__V2__START_REQUEST__INIT;
    s.id = "c2";
    assert_int_equal(rpc(f, "Start", &s.base, NULL, NULL, msg), 0);
    assert_int_equal(write(wfd, "input\n", 6), 6);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        /* the shim relays what it reads as agent.write_stdin */
        usleep(2000);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (__atomic_load_n(&f->fa.stdins, __ATOMIC_SEQ_CST) == 0 && t.tv_sec - t0.tv_sec < 10);
    assert_true(f->fa.stdins > 0);
    Containerd__Task__V2__CloseIORequest c = CONTAINERD__TASK__V2__CLOSE_IOREQUEST__INIT;
    c.id = "c2";
    c.stdin = true;
    assert_int_equal(rpc(f, "CloseIO", &c.base, NULL, NULL, msg), 0);
    close(wfd);
    assert_int_equal(kill_proc(f, "c2", NULL, 15), 0);
    assert_int_equal(wait_proc(f, "c2", NULL), 128 + 15);
    Containerd__Task__V2__DeleteRequest d = CONTAINERD__TASK__V2__DELETE_REQUEST__INIT;
    d.id = "c2";
    assert_int_equal(rpc(f, "Delete", &d.base, NULL, NULL, msg), 0);
}

int main(void)
{
    log_setup(2, LOG_FMT_LOGFMT, LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_svc_shim_service_task_lifecycle, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_svc_shim_service_refusals, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_svc_shim_service_stdin_is_relayed, fx_setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests_name("svc_shim_service", tests, NULL, NULL);
}
