/* libFuzzer target for the ttRPC edge: hostile bytes from a peer.
 *
 * The first input byte picks the path; the rest is the peer's data:
 *   0  server: bytes written to a connection of a real ttrpc server serving
 *      the TaskService codec (frame parser, Request unmarshal, method lookup,
 *      request decoders, typed dispatch, held Wait calls cancelled on close
 *      and answered late), then EOF;
 *   1  client: bytes are what a "server" answers to three pending calls of
 *      a real ttrpc client (one with a timeout), then EOF; every callback
 *      must run exactly once;
 *   2  decoders: byte 1 picks a TaskService RPC, the rest is its request and,
 *      separately, its response; what decodes must re-encode to a fixed point;
 *   3  parser: the bare frame parser fed in chunks whose sizes come from the
 *      data, checked against a one-shot feed.
 *
 * Build and run: tests/e2e/fuzz_ttrpc.sh (see docs/ttrpc.md). */
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "services/ttrpc.h"
#include "services/ttrpc_event.h"
#include "services/ttrpc_task.h"

static struct event_base *base;
static ttrpc_server_t *server;

/* ---- a TaskService that answers at once, except Wait -------------------- */

static void reply_empty(ttrpc_call_t *call)
{
    svc_ttrpc_task_reply(call, NULL);
}

static void op_state(void *arg, ttrpc_call_t *call, Containerd__Task__V2__StateRequest **req)
{
    Containerd__Task__V2__StateResponse r = CONTAINERD__TASK__V2__STATE_RESPONSE__INIT;
    Google__Protobuf__Timestamp ts;
    svc_ttrpc_timestamp_set(&ts, NULL);
    r.id = (*req)->exec_id[0] ? (*req)->exec_id : (*req)->id;
    r.exec_id = (*req)->exec_id;
    r.status = CONTAINERD__V1__TYPES__STATUS__RUNNING;
    r.exited_at = &ts;
    svc_ttrpc_task_reply(call, &r.base);
}

static void op_create(void *arg, ttrpc_call_t *call, Containerd__Task__V2__CreateTaskRequest **req)
{
    if (!(*req)->id[0]) {
        ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "empty id");
        return;
    }
    Containerd__Task__V2__CreateTaskResponse r = CONTAINERD__TASK__V2__CREATE_TASK_RESPONSE__INIT;
    r.pid = (uint32_t)(*req)->n_rootfs + 1;
    svc_ttrpc_task_reply(call, &r.base);
}

static void op_kill(void *arg, ttrpc_call_t *call, Containerd__Task__V2__KillRequest **req)
{
    if ((*req)->signal > 64)
        ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "signal %u", (*req)->signal);
    else
        reply_empty(call);
}

static void op_update(void *arg, ttrpc_call_t *call, Containerd__Task__V2__UpdateTaskRequest **req)
{
    size_t n = 0;
    for (size_t i = 0; i < (*req)->n_annotations; i++)
        n += strlen((*req)->annotations[i]->key) + strlen((*req)->annotations[i]->value);
    (void)n;
    reply_empty(call);
}

static void op_exec(void *arg, ttrpc_call_t *call, Containerd__Task__V2__ExecProcessRequest **req)
{
    if ((*req)->spec && (*req)->spec->value.len > 0)
        (void)(*req)->spec->value.data[(*req)->spec->value.len - 1];
    reply_empty(call);
}

static void wait_cancelled(ttrpc_call_t *call, void *arg)
{
    /* The connection went away: the container "exits" now; the answer is
     * dropped by ttrpc. */
    Containerd__Task__V2__WaitResponse r = CONTAINERD__TASK__V2__WAIT_RESPONSE__INIT;
    r.exit_status = 137;
    svc_ttrpc_task_reply(call, &r.base);
}

static void op_wait(void *arg, ttrpc_call_t *call, Containerd__Task__V2__WaitRequest **req)
{
    if (strcmp((*req)->id, "now") == 0) {
        Containerd__Task__V2__WaitResponse r = CONTAINERD__TASK__V2__WAIT_RESPONSE__INIT;
        svc_ttrpc_task_reply(call, &r.base);
        return;
    }
    ttrpc_call_set_cancel(call, wait_cancelled, NULL);
}

static void op_shutdown(void *arg, ttrpc_call_t *call, Containerd__Task__V2__ShutdownRequest **req)
{
    reply_empty(call);
}

static const struct svc_ttrpc_task_ops ops = {
    .state = op_state,
    .create = op_create,
    .kill = op_kill,
    .update = op_update,
    .exec = op_exec,
    .wait = op_wait,
    .shutdown = op_shutdown,
};
static const svc_ttrpc_task_service_t svc = {.ops = &ops};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    err_t err = ERR_INIT;
    log_setup(2, LOG_FMT_LOGFMT, LOG_OFF);
    base = event_base_new();
    if (!base || ttrpc_server_new(base, &server, &err) < 0 ||
        svc_ttrpc_task_register(server, &svc, &err) < 0) {
        fprintf(stderr, "fuzz_ttrpc: setup: %s\n", err_str(&err));
        abort();
    }
    return 0;
}

/* Writes data to fd while running the loop; then half-closes. */
static void feed_socket(int fd, const uint8_t *data, size_t size)
{
    size_t off = 0;
    for (int spins = 0; off < size && spins < 100000; spins++) {
        ssize_t w = send(fd, data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0)
            off += (size_t)w;
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    shutdown(fd, SHUT_WR);
}

static void drain(int fd)
{
    uint8_t sink[4096];
    while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
        ;
}

static void fuzz_server(const uint8_t *data, size_t size)
{
    int sv[2];
    err_t err = ERR_INIT;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        abort();
    if (ttrpc_server_adopt_fd(server, sv[0], &err) < 0)
        abort();
    feed_socket(sv[1], data, size);
    for (int spins = 0; ttrpc_server_connections(server) > 0; spins++) {
        assert(spins < 100000); /* EOF must close the connection */
        event_base_loop(base, EVLOOP_NONBLOCK);
        drain(sv[1]);
    }
    close(sv[1]);
}

struct calls {
    int answered[3];
};

static void on_reply(const ttrpc_status_t *st, const uint8_t *payload, size_t len, void *arg)
{
    int *n = arg;
    (*n)++;
    assert(st->message);
    if (len) /* touch every byte: ASan checks the bounds */
        (void)payload[len - 1];
    if (st->code == TTRPC_OK && len) {
        ProtobufCMessage *m = NULL;
        err_t err = ERR_INIT;
        if (svc_ttrpc_unpack(&containerd__task__v2__state_response__descriptor, payload, len, &m,
                             &err) == 0)
            svc_ttrpc_msg_free(&m);
        err_clear(&err);
    }
}

static void fuzz_client(const uint8_t *data, size_t size)
{
    int sv[2];
    err_t err = ERR_INIT;
    ttrpc_client_t *c = NULL;
    struct calls calls = {{0}};
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        abort();
    if (ttrpc_client_from_fd(base, sv[0], &c, &err) < 0)
        abort();
    ttrpc_call_opts_t slow = {.timeout_ns = 1000000};
    for (int i = 0; i < 3; i++)
        if (ttrpc_client_call(c, SVC_TTRPC_TASK_SERVICE, "State", NULL, 0, i == 2 ? &slow : NULL,
                              on_reply, &calls.answered[i], &err) < 0)
            abort();
    drain(sv[1]);
    feed_socket(sv[1], data, size);
    close(sv[1]);
    for (int spins = 0; ttrpc_client_pending(c) > 0; spins++) {
        assert(spins < 100000); /* EOF must fail what is left */
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    ttrpc_client_destroy(&c);
    for (int i = 0; i < 3; i++)
        assert(calls.answered[i] == 1);
}

static void round_trip(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t size)
{
    ProtobufCMessage *m = NULL, *m2 = NULL;
    err_t err = ERR_INIT;
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    if (svc_ttrpc_unpack(d, data, size, &m, &err) < 0) {
        assert(err.code == EBADMSG);
        err_clear(&err);
        return;
    }
    if (svc_ttrpc_pack(m, &b1, &n1, &err) < 0)
        abort();
    if (svc_ttrpc_unpack(d, b1, n1, &m2, &err) < 0)
        abort(); /* what we encode, we decode */
    if (svc_ttrpc_pack(m2, &b2, &n2, &err) < 0)
        abort();
    assert(n1 == n2 && (n1 == 0 || memcmp(b1, b2, n1) == 0));
    free(b1);
    free(b2);
    svc_ttrpc_msg_free(&m);
    svc_ttrpc_msg_free(&m2);
}

static void fuzz_decoders(const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    const struct svc_ttrpc_task_rpc_desc *rpc = svc_ttrpc_task_rpc(data[0] % SVC_TTRPC_TASK_N_RPCS);
    round_trip(rpc->request, data + 1, size - 1);
    round_trip(rpc->response, data + 1, size - 1);
    round_trip(&containerd__services__events__ttrpc__v1__forward_request__descriptor, data + 1,
               size - 1);
}

struct tally {
    size_t frames;
    uint64_t bytes;
    uint32_t last_sid;
};

static int count_frame(const ttrpc_frame_t *f, void *arg)
{
    struct tally *t = arg;
    assert(f->oversized ? f->data == NULL && f->len == 0 : f->len == f->hdr.length);
    assert(f->len == 0 || f->data != NULL);
    if (f->len)
        t->bytes += f->data[0] + f->data[f->len - 1];
    t->frames++;
    t->last_sid = f->hdr.stream_id;
    return 0;
}

static void fuzz_parser(const uint8_t *data, size_t size)
{
    struct tally whole = {0}, chunked = {0};
    /* Small limit so that oversized frames are common. */
    ttrpc_parser_t *p = ttrpc_parser_new(64);
    ttrpc_parser_feed(p, data, size, count_frame, &whole);
    ttrpc_parser_destroy(&p);
    p = ttrpc_parser_new(64);
    for (size_t off = 0, i = 0; off < size; i++) {
        size_t k = 1 + data[i % size] % 13;
        if (k > size - off)
            k = size - off;
        ttrpc_parser_feed(p, data + off, k, count_frame, &chunked);
        off += k;
    }
    ttrpc_parser_destroy(&p);
    assert(whole.frames == chunked.frames && whole.bytes == chunked.bytes &&
           whole.last_sid == chunked.last_sid);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 4) {
    case 0:
        fuzz_server(data + 1, size - 1);
        break;
    case 1:
        fuzz_client(data + 1, size - 1);
        break;
    case 2:
        fuzz_decoders(data + 1, size - 1);
        break;
    default:
        fuzz_parser(data + 1, size - 1);
        break;
    }
    return 0;
}
