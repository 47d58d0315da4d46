/* Unit tests for services/ttrpc: framing, server, client, hostile input. */
#include <malloc.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "services/proto/ttrpc/ttrpc.pb-c.h"
#include "services/ttrpc.h"

/* ---- fixtures ---------------------------------------------------------- */

struct held {
    ttrpc_call_t *calls[16];
    char payload[16][64];
    int n;
    int cancelled;
};

struct fx {
    struct event_base *base;
    ttrpc_server_t *server;
    ttrpc_client_t *client;
    int raw; /* test end of a socketpair whose other end the server serves */
    struct held held;
};

static void echo_handler(ttrpc_call_t *call, const uint8_t *payload, size_t len, void *arg)
{
    ttrpc_call_reply(call, payload, len);
}

static void on_cancel(ttrpc_call_t *call, void *arg)
{
    struct held *h = arg;
    h->cancelled++;
}

/* Keeps the call to answer later. */
static void hold_handler(ttrpc_call_t *call, const uint8_t *payload, size_t len, void *arg)
{
    struct held *h = arg;
    assert_true(h->n < 16);
    snprintf(h->payload[h->n], sizeof(h->payload[0]), "%.*s", (int)len, (const char *)payload);
    h->calls[h->n++] = call;
    ttrpc_call_set_cancel(call, on_cancel, h);
}

static void fail_handler(ttrpc_call_t *call, const uint8_t *payload, size_t len, void *arg)
{
    err_t err = ERR_INIT;
    err_make(&err, ENOENT, "container `%.*s`: not found", (int)len, (const char *)payload);
    ttrpc_call_fail_err(call, &err);
    err_clear(&err);
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    int sv[2];
    err_t err = ERR_INIT;
    fx->base = event_base_new();
    assert_non_null(fx->base);
    assert_int_equal(ttrpc_server_new(fx->base, &fx->server, &err), 0);
    assert_int_equal(ttrpc_server_register(fx->server, "test.Svc/Echo", echo_handler, NULL, &err),
                     0);
    assert_int_equal(
        ttrpc_server_register(fx->server, "test.Svc/Hold", hold_handler, &fx->held, &err), 0);
    assert_int_equal(ttrpc_server_register(fx->server, "test.Svc/Fail", fail_handler, NULL, &err),
                     0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(ttrpc_server_adopt_fd(fx->server, sv[0], &err), 0);
    assert_int_equal(ttrpc_client_from_fd(fx->base, sv[1], &fx->client, &err), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(ttrpc_server_adopt_fd(fx->server, sv[0], &err), 0);
    fx->raw = sv[1];
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    for (int i = 0; i < fx->held.n; i++)
        if (fx->held.calls[i])
            ttrpc_call_reply(fx->held.calls[i], NULL, 0);
    ttrpc_client_destroy(&fx->client);
    ttrpc_server_destroy(&fx->server);
    if (fx->raw >= 0)
        close(fx->raw);
    event_base_free(fx->base);
    free(fx);
    return 0;
}

static void spin(struct fx *fx, int ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        event_base_loop(fx->base, EVLOOP_NONBLOCK);
        usleep(1000);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
}

/* Runs the loop until cond(fx) or 2 s. */
#define SPIN_UNTIL(fx, cond)                                                                       \
    do {                                                                                           \
        for (int i_ = 0; i_ < 2000 && !(cond); i_++)                                               \
            spin(fx, 1);                                                                           \
        assert_true(cond);                                                                         \
    } while (0)

/* Writes everything, running the loop while the socket buffer is full (the
 * server lives on this thread). */
static void raw_write(struct fx *fx, const void *buf, size_t len)
{
    size_t off = 0;
    for (int tries = 0; off < len && tries < 5000; tries++) {
        ssize_t w = send(fx->raw, (const uint8_t *)buf + off, len - off, MSG_DONTWAIT);
        if (w > 0)
            off += (size_t)w;
        else
            spin(fx, 1);
    }
    assert_int_equal(off, len);
}

static void raw_frame(struct fx *fx, uint32_t sid, uint8_t type, const void *body, uint32_t len)
{
    uint8_t h[TTRPC_HEADER_LEN];
    ttrpc_header_t hdr = {.length = len, .stream_id = sid, .type = type};
    ttrpc_header_pack(&hdr, h);
    raw_write(fx, h, sizeof(h));
    if (len)
        raw_write(fx, body, len);
}

static void raw_request(struct fx *fx, uint32_t sid, const char *service, const char *method,
                        const char *payload)
{
    Ttrpc__Request req = TTRPC__REQUEST__INIT;
    uint8_t buf[512];
    req.service = (char *)service;
    req.method = (char *)method;
    req.payload.data = (uint8_t *)payload;
    req.payload.len = strlen(payload);
    size_t n = ttrpc__request__pack(&req, buf);
    raw_frame(fx, sid, TTRPC_MSG_REQUEST, buf, (uint32_t)n);
}

/* Reads n bytes from the raw socket while running the loop; false on timeout. */
static bool raw_read(struct fx *fx, void *buf, size_t n, int timeout_ms)
{
    size_t got = 0;
    for (int t = 0; got < n && t < timeout_ms; t++) {
        event_base_loop(fx->base, EVLOOP_NONBLOCK);
        struct pollfd p = {.fd = fx->raw, .events = POLLIN};
        if (poll(&p, 1, 1) == 1) {
            ssize_t r = read(fx->raw, (uint8_t *)buf + got, n - got);
            if (r <= 0)
                return false;
            got += (size_t)r;
        }
    }
    return got == n;
}

/* Reads one Response frame; caller frees the unpacked message. */
static Ttrpc__Response *raw_response(struct fx *fx, ttrpc_header_t *hdr, uint8_t *body, size_t *len)
{
    uint8_t h[TTRPC_HEADER_LEN];
    if (!raw_read(fx, h, sizeof(h), 2000))
        return NULL;
    ttrpc_header_unpack(h, hdr);
    assert_int_equal(hdr->type, TTRPC_MSG_RESPONSE);
    assert_true(hdr->length <= 4096);
    assert_true(raw_read(fx, body, hdr->length, 2000));
    *len = hdr->length;
    Ttrpc__Response *r = ttrpc__response__unpack(NULL, hdr->length, body);
    assert_non_null(r);
    return r;
}

static void expect_status(struct fx *fx, uint32_t sid, int code, const char *msg)
{
    ttrpc_header_t hdr;
    uint8_t body[4096];
    size_t len;
    Ttrpc__Response *r = raw_response(fx, &hdr, body, &len);
    assert_non_null(r);
    assert_int_equal(hdr.stream_id, sid);
    if (code == TTRPC_OK) {
        assert_true(!r->status || r->status->code == 0);
    } else {
        assert_non_null(r->status);
        assert_int_equal(r->status->code, code);
        if (msg)
            assert_string_equal(r->status->message, msg);
    }
    ttrpc__response__free_unpacked(r, NULL);
}

struct reply {
    int n;
    int code;
    char msg[256];
    char payload[64];
};

static void reply_cb(const ttrpc_status_t *st, const uint8_t *payload, size_t len, void *arg)
{
    struct reply *r = arg;
    r->n++;
    r->code = st->code;
    snprintf(r->msg, sizeof(r->msg), "%s", st->message);
    snprintf(r->payload, sizeof(r->payload), "%.*s", (int)len, (const char *)payload);
}

static void call(struct fx *fx, const char *method, const char *payload, int64_t timeout_ns,
                 struct reply *r)
{
    err_t err = ERR_INIT;
    ttrpc_call_opts_t o = {.timeout_ns = timeout_ns};
    assert_int_equal(ttrpc_client_call(fx->client, "test.Svc", method, (const uint8_t *)payload,
                                       strlen(payload), &o, reply_cb, r, &err),
                     0);
    assert_int_equal(r->n, 0); /* never from inside the call */
}

/* ---- framing ------------------------------------------------------------ */

struct frames {
    int n;
    ttrpc_header_t hdr[8];
    char data[8][64];
    size_t len[8];
    bool oversized[8];
};

static int collect(const ttrpc_frame_t *f, void *arg)
{
    struct frames *fr = arg;
    assert_true(fr->n < 8);
    fr->hdr[fr->n] = f->hdr;
    fr->len[fr->n] = f->len;
    fr->oversized[fr->n] = f->oversized;
    if (f->len)
        memcpy(fr->data[fr->n], f->data, f->len < 63 ? f->len : 63);
    fr->n++;
    return 0;
}

static void test_svc_ttrpc_header_round_trip(void **state)
{
    uint8_t b[TTRPC_HEADER_LEN];
    ttrpc_header_t h = {.length = 0x28, .stream_id = 3, .type = 1, .flags = 0}, g;
    ttrpc_header_pack(&h, b);
    /* LIVE bytes from the reference: Connect{id:"t1"} on stream 3. */
    const uint8_t want[] = {0, 0, 0, 0x28, 0, 0, 0, 3, 1, 0};
    assert_memory_equal(b, want, sizeof(want));
    ttrpc_header_unpack(b, &g);
    assert_int_equal(g.length, 0x28);
    assert_int_equal(g.stream_id, 3);
    assert_int_equal(g.type, 1);
    assert_int_equal(g.flags, 0);
    h = (ttrpc_header_t){.length = 0xfffffffe, .stream_id = 0x80000001, .type = 2, .flags = 0xff};
    ttrpc_header_pack(&h, b);
    ttrpc_header_unpack(b, &g);
    assert_int_equal(g.length, 0xfffffffe);
    assert_int_equal(g.stream_id, 0x80000001);
    assert_int_equal(g.type, 2);
    assert_int_equal(g.flags, 0xff);
}

static void test_svc_ttrpc_parser_frames_split_anywhere(void **state)
{
    uint8_t stream[64];
    size_t n = 0;
    const char *bodies[] = {"hello", "", "world!"};
    for (int i = 0; i < 3; i++) {
        ttrpc_header_t h = {
            .length = (uint32_t)strlen(bodies[i]), .stream_id = (uint32_t)(2 * i + 1), .type = 1};
        ttrpc_header_pack(&h, stream + n);
        n += TTRPC_HEADER_LEN;
        memcpy(stream + n, bodies[i], strlen(bodies[i]));
        n += strlen(bodies[i]);
    }
    /* Every split point, and byte by byte: same three frames. */
    for (size_t cut = 0; cut <= n; cut++) {
        struct frames fr = {0};
        ttrpc_parser_t *p = ttrpc_parser_new(TTRPC_MAX_DATA);
        assert_int_equal(ttrpc_parser_feed(p, stream, cut, collect, &fr), 0);
        assert_int_equal(ttrpc_parser_feed(p, stream + cut, n - cut, collect, &fr), 0);
        assert_int_equal(fr.n, 3);
        assert_false(ttrpc_parser_partial(p));
        for (int i = 0; i < 3; i++) {
            assert_int_equal(fr.hdr[i].stream_id, 2 * i + 1);
            assert_int_equal(fr.len[i], strlen(bodies[i]));
            assert_string_equal(fr.data[i], bodies[i]);
        }
        ttrpc_parser_destroy(&p);
    }
    struct frames fr = {0};
    ttrpc_parser_t *p = ttrpc_parser_new(TTRPC_MAX_DATA);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ttrpc_parser_feed(p, stream + i, 1, collect, &fr), 0);
    assert_int_equal(fr.n, 3);
    ttrpc_parser_destroy(&p);
    ttrpc_parser_destroy(&p); /* idempotent */
}

static void test_svc_ttrpc_parser_truncated_header_and_body(void **state)
{
    uint8_t b[TTRPC_HEADER_LEN + 4];
    ttrpc_header_t h = {.length = 8, .stream_id = 1, .type = 1};
    ttrpc_header_pack(&h, b);
    memcpy(b + TTRPC_HEADER_LEN, "abcd", 4);
    struct frames fr = {0};
    ttrpc_parser_t *p = ttrpc_parser_new(TTRPC_MAX_DATA);
    assert_int_equal(ttrpc_parser_feed(p, b, 5, collect, &fr), 0); /* half a header */
    assert_int_equal(fr.n, 0);
    assert_true(ttrpc_parser_partial(p));
    assert_int_equal(ttrpc_parser_feed(p, b + 5, sizeof(b) - 5, collect, &fr), 0); /* 4 of 8 */
    assert_int_equal(fr.n, 0);
    assert_true(ttrpc_parser_partial(p));
    ttrpc_parser_destroy(&p); /* frees the half body: ASan/LSan would tell */
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void test_svc_ttrpc_parser_oversized_not_allocated(void **state)
{
    uint8_t b[TTRPC_HEADER_LEN];
    ttrpc_header_t h = {.length = TTRPC_MAX_DATA + 1, .stream_id = 7, .type = 1};
    ttrpc_header_pack(&h, b);
    struct frames fr = {0};
    ttrpc_parser_t *p = ttrpc_parser_new(TTRPC_MAX_DATA);
    size_t before = heap_in_use();
    assert_int_equal(ttrpc_parser_feed(p, b, sizeof(b), collect, &fr), 0);
    assert_true(heap_in_use() < before + 4096); /* not 4 MiB */
    assert_int_equal(fr.n, 1);
    assert_true(fr.oversized[0]);
    assert_int_equal(fr.hdr[0].length, TTRPC_MAX_DATA + 1);
    assert_int_equal(fr.len[0], 0);
    assert_true(ttrpc_parser_partial(p)); /* skipping the body */
    /* The body is discarded as it arrives, then parsing resumes in sync. */
    static uint8_t chunk[1 << 16];
    for (uint32_t left = TTRPC_MAX_DATA + 1; left > 0;) {
        uint32_t k = left < sizeof(chunk) ? left : sizeof(chunk);
        assert_int_equal(ttrpc_parser_feed(p, chunk, k, collect, &fr), 0);
        left -= k;
    }
    assert_true(heap_in_use() < before + 4096);
    assert_false(ttrpc_parser_partial(p));
    h = (ttrpc_header_t){.length = 2, .stream_id = 9, .type = 1};
    uint8_t b2[TTRPC_HEADER_LEN + 2];
    ttrpc_header_pack(&h, b2);
    memcpy(b2 + TTRPC_HEADER_LEN, "ok", 2);
    assert_int_equal(ttrpc_parser_feed(p, b2, sizeof(b2), collect, &fr), 0);
    assert_int_equal(fr.n, 2);
    assert_int_equal(fr.hdr[1].stream_id, 9);
    assert_string_equal(fr.data[1], "ok");
    /* Exactly the maximum is allowed. */
    h = (ttrpc_header_t){.length = TTRPC_MAX_DATA, .stream_id = 11, .type = 1};
    ttrpc_header_pack(&h, b);
    assert_int_equal(ttrpc_parser_feed(p, b, sizeof(b), collect, &fr), 0);
    assert_int_equal(fr.n, 2);
    assert_true(ttrpc_parser_partial(p));
    ttrpc_parser_destroy(&p);
}

static int stop_at_first(const ttrpc_frame_t *f, void *arg)
{
    (*(int *)arg)++;
    return -42;
}

static void test_svc_ttrpc_parser_callback_stops(void **state)
{
    uint8_t b[2 * TTRPC_HEADER_LEN] = {0};
    ttrpc_header_t h = {.length = 0, .stream_id = 1, .type = 1};
    ttrpc_header_pack(&h, b);
    ttrpc_header_pack(&h, b + TTRPC_HEADER_LEN);
    int n = 0;
    ttrpc_parser_t *p = ttrpc_parser_new(TTRPC_MAX_DATA);
    assert_int_equal(ttrpc_parser_feed(p, b, sizeof(b), stop_at_first, &n), -42);
    assert_int_equal(n, 1);
    ttrpc_parser_destroy(&p);
}

/* ---- server and client --------------------------------------------------- */

static void test_svc_ttrpc_echo_and_status(void **state)
{
    struct fx *fx = *state;
    struct reply a = {0}, b = {0};
    call(fx, "Echo", "ping", 0, &a);
    call(fx, "Fail", "c1", 0, &b);
    SPIN_UNTIL(fx, a.n == 1 && b.n == 1);
    assert_int_equal(a.code, TTRPC_OK);
    assert_string_equal(a.payload, "ping");
    assert_int_equal(b.code, TTRPC_NOT_FOUND);
    assert_string_equal(b.msg, "container `c1`: not found");
    assert_string_equal(b.payload, "");
    assert_int_equal(ttrpc_client_pending(fx->client), 0);
}

static void test_svc_ttrpc_concurrent_out_of_order(void **state)
{
    struct fx *fx = *state;
    struct reply r[3] = {{0}}, e = {0};
    call(fx, "Hold", "one", 0, &r[0]);
    call(fx, "Hold", "two", 0, &r[1]);
    call(fx, "Hold", "three", 0, &r[2]);
    SPIN_UNTIL(fx, fx->held.n == 3);
    /* A blocked call does not stall the connection. */
    call(fx, "Echo", "meanwhile", 0, &e);
    SPIN_UNTIL(fx, e.n == 1);
    assert_string_equal(e.payload, "meanwhile");
    assert_int_equal(r[0].n + r[1].n + r[2].n, 0);
    /* Answer in reverse order, each with its own payload. */
    for (int i = 2; i >= 0; i--) {
        char out[64];
        snprintf(out, sizeof(out), "re:%s", fx->held.payload[i]);
        ttrpc_call_reply(fx->held.calls[i], (const uint8_t *)out, strlen(out));
        fx->held.calls[i] = NULL;
        SPIN_UNTIL(fx, r[i].n == 1);
        for (int j = 0; j < i; j++)
            assert_int_equal(r[j].n, 0);
    }
    assert_string_equal(r[0].payload, "re:one");
    assert_string_equal(r[1].payload, "re:two");
    assert_string_equal(r[2].payload, "re:three");
}

static void test_svc_ttrpc_unknown_method_and_service(void **state)
{
    struct fx *fx = *state;
    raw_request(fx, 1, "test.Svc", "Bogus", "");
    /* Byte-exact with the Go server (reference §1.4). */
    ttrpc_header_t hdr;
    uint8_t body[4096];
    size_t len;
    Ttrpc__Response *r = raw_response(fx, &hdr, body, &len);
    const uint8_t want[] = "\x0a\x10\x08\x0c\x12\x0cmethod Bogus";
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(body, want, len);
    ttrpc__response__free_unpacked(r, NULL);
    raw_request(fx, 3, "foo.Bar", "Echo", "");
    expect_status(fx, 3, TTRPC_UNIMPLEMENTED, "service foo.Bar");
    /* And through the client API. */
    struct reply c = {0};
    call(fx, "Nope", "", 0, &c);
    SPIN_UNTIL(fx, c.n == 1);
    assert_int_equal(c.code, TTRPC_UNIMPLEMENTED);
    assert_string_equal(c.msg, "method Nope");
}

static void test_svc_ttrpc_empty_reply_is_zero_bytes(void **state)
{
    struct fx *fx = *state;
    raw_request(fx, 5, "test.Svc", "Echo", "");
    uint8_t h[TTRPC_HEADER_LEN];
    assert_true(raw_read(fx, h, sizeof(h), 2000));
    const uint8_t want[] = {0, 0, 0, 0, 0, 0, 0, 5, 2, 0}; /* reference §1.6 */
    assert_memory_equal(h, want, sizeof(want));
}

static void test_svc_ttrpc_oversized_frame_answered_conn_survives(void **state)
{
    struct fx *fx = *state;
    size_t before = heap_in_use();
    uint8_t h[TTRPC_HEADER_LEN];
    ttrpc_header_t hdr = {.length = TTRPC_MAX_DATA + 1, .stream_id = 9, .type = 1};
    ttrpc_header_pack(&hdr, h);
    raw_write(fx, h, sizeof(h));
    expect_status(fx, 9, TTRPC_RESOURCE_EXHAUSTED,
                  "message length 4194305 exceed maximum message size of 4194304");
    assert_true(heap_in_use() < before + (1 << 20));
    /* Send the body in chunks (the server discards it), then a request. */
    static uint8_t chunk[1 << 16];
    for (uint32_t left = TTRPC_MAX_DATA + 1; left > 0;) {
        uint32_t k = left < sizeof(chunk) ? left : sizeof(chunk);
        raw_write(fx, chunk, k);
        left -= k;
    }
    raw_request(fx, 11, "test.Svc", "Echo", "still here");
    expect_status(fx, 11, TTRPC_OK, NULL);
    assert_int_equal(ttrpc_server_connections(fx->server), 2);
    /* A header announcing 4 GiB never allocates either. */
    hdr.length = 0xffffffff;
    hdr.stream_id = 13;
    ttrpc_header_pack(&hdr, h);
    raw_write(fx, h, sizeof(h));
    expect_status(fx, 13, TTRPC_RESOURCE_EXHAUSTED, NULL);
    assert_true(heap_in_use() < before + (1 << 20));
}

static void test_svc_ttrpc_truncated_then_eof(void **state)
{
    struct fx *fx = *state;
    uint8_t h[TTRPC_HEADER_LEN];
    ttrpc_header_t hdr = {.length = 100, .stream_id = 1, .type = 1};
    ttrpc_header_pack(&hdr, h);
    raw_write(fx, h, 4); /* truncated header */
    spin(fx, 5);
    raw_write(fx, h + 4, 6);
    raw_write(fx, "0123456789", 10); /* truncated body */
    spin(fx, 5);
    assert_int_equal(ttrpc_server_connections(fx->server), 2);
    close(fx->raw);
    fx->raw = -1;
    SPIN_UNTIL(fx, ttrpc_server_connections(fx->server) == 1);
    /* The other connection still works. */
    struct reply a = {0};
    call(fx, "Echo", "x", 0, &a);
    SPIN_UNTIL(fx, a.n == 1);
    assert_int_equal(a.code, TTRPC_OK);
}

static void test_svc_ttrpc_unknown_type_ignored(void **state)
{
    struct fx *fx = *state;
    raw_frame(fx, 1, 3, "data", 4);  /* Data frame (ttrpc >= 1.2): ignored */
    raw_frame(fx, 3, 2, "resp", 4);  /* a Response sent to a server: ignored */
    raw_frame(fx, 5, 0xff, NULL, 0); /* nonsense type: ignored */
    raw_request(fx, 7, "test.Svc", "Echo", "after");
    expect_status(fx, 7, TTRPC_OK, NULL); /* the first answer is for stream 7 */
}

static void test_svc_ttrpc_even_stream_id(void **state)
{
    struct fx *fx = *state;
    raw_request(fx, 2, "test.Svc", "Echo", "x");
    expect_status(fx, 2, TTRPC_INVALID_ARGUMENT,
                  "StreamID must be odd for client initiated streams");
    raw_request(fx, 0, "test.Svc", "Echo", "x");
    expect_status(fx, 0, TTRPC_INVALID_ARGUMENT, NULL);
}

static void test_svc_ttrpc_garbage_protobuf(void **state)
{
    struct fx *fx = *state;
    /* Field 1 as length-delimited with a length past the end. */
    raw_frame(fx, 1, TTRPC_MSG_REQUEST,
              "\x0a\x7f"
              "abc",
              5);
    expect_status(fx, 1, TTRPC_INVALID_ARGUMENT, NULL);
    /* Wire type 7 does not exist. */
    raw_frame(fx, 3, TTRPC_MSG_REQUEST, "\x0f\x01\x02", 3);
    expect_status(fx, 3, TTRPC_INVALID_ARGUMENT, NULL);
    /* A varint that never ends. */
    raw_frame(fx, 5, TTRPC_MSG_REQUEST, "\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 12);
    expect_status(fx, 5, TTRPC_INVALID_ARGUMENT, NULL);
    /* Still serving. */
    raw_request(fx, 7, "test.Svc", "Echo", "y");
    expect_status(fx, 7, TTRPC_OK, NULL);
}

static void test_svc_ttrpc_client_timeout_late_answer_dropped(void **state)
{
    struct fx *fx = *state;
    struct reply r = {0}, e = {0};
    call(fx, "Hold", "slow", 30 * 1000000LL, &r);
    SPIN_UNTIL(fx, fx->held.n == 1);
    assert_int_equal(ttrpc_call_timeout_ns(fx->held.calls[0]), 30 * 1000000LL);
    SPIN_UNTIL(fx, r.n == 1);
    assert_int_equal(r.code, TTRPC_DEADLINE_EXCEEDED);
    assert_int_equal(ttrpc_client_pending(fx->client), 0);
    /* The late answer reaches the client, finds nobody waiting, is dropped. */
    ttrpc_call_reply(fx->held.calls[0], (const uint8_t *)"late", 4);
    fx->held.calls[0] = NULL;
    call(fx, "Echo", "next", 0, &e);
    SPIN_UNTIL(fx, e.n == 1);
    assert_int_equal(r.n, 1);
    assert_string_equal(e.payload, "next");
}

static void test_svc_ttrpc_close_with_pending_then_late_answer(void **state)
{
    struct fx *fx = *state;
    struct reply r[2] = {{0}};
    call(fx, "Hold", "a", 0, &r[0]);
    call(fx, "Hold", "b", 0, &r[1]);
    SPIN_UNTIL(fx, fx->held.n == 2);
    /* Client goes away: its callbacks run now, with Canceled. */
    ttrpc_client_destroy(&fx->client);
    assert_null(fx->client);
    assert_int_equal(r[0].n, 1);
    assert_int_equal(r[1].n, 1);
    assert_int_equal(r[0].code, TTRPC_CANCELED);
    /* The server notices, cancels both calls once. */
    SPIN_UNTIL(fx, fx->held.cancelled == 2);
    assert_true(ttrpc_call_cancelled(fx->held.calls[0]));
    assert_int_equal(ttrpc_server_connections(fx->server), 1);
    /* Late answers (the container exited) are dropped, calls freed: under
     * ASan a use-after-free here would abort the test. */
    ttrpc_call_reply(fx->held.calls[0], (const uint8_t *)"exit", 4);
    ttrpc_call_fail(fx->held.calls[1], TTRPC_NOT_FOUND, "gone");
    fx->held.calls[0] = fx->held.calls[1] = NULL;
    spin(fx, 5);
    assert_int_equal(fx->held.cancelled, 2);
}

static void close_cb(ttrpc_client_t *c, void *arg)
{
    (*(int *)arg)++;
}

static void test_svc_ttrpc_server_destroy_fails_client_calls(void **state)
{
    struct fx *fx = *state;
    struct reply r = {0};
    int closed = 0;
    ttrpc_client_set_close_cb(fx->client, close_cb, &closed);
    call(fx, "Hold", "w", 0, &r);
    SPIN_UNTIL(fx, fx->held.n == 1);
    ttrpc_server_destroy(&fx->server);
    assert_int_equal(fx->held.cancelled, 1);
    SPIN_UNTIL(fx, r.n == 1);
    assert_int_equal(r.code, TTRPC_UNAVAILABLE);
    assert_string_equal(r.msg, "ttrpc: closed");
    assert_int_equal(closed, 1);
    assert_true(ttrpc_client_closed(fx->client));
    err_t err = ERR_INIT;
    assert_true(
        ttrpc_client_call(fx->client, "test.Svc", "Echo", NULL, 0, NULL, reply_cb, &r, &err) < 0);
    assert_int_equal(err.code, ENOTCONN);
    err_clear(&err);
    /* The call outlives its server until answered. */
    ttrpc_call_reply(fx->held.calls[0], NULL, 0);
    fx->held.calls[0] = NULL;
}

static void destroy_in_cb(const ttrpc_status_t *st, const uint8_t *payload, size_t len, void *arg)
{
    struct fx *fx = arg;
    ttrpc_client_destroy(&fx->client);
}

static void test_svc_ttrpc_client_destroy_inside_callback(void **state)
{
    struct fx *fx = *state;
    err_t err = ERR_INIT;
    struct reply other = {0};
    assert_int_equal(ttrpc_client_call(fx->client, "test.Svc", "Echo", (const uint8_t *)"a", 1,
                                       NULL, destroy_in_cb, fx, &err),
                     0);
    call(fx, "Hold", "b", 0, &other);
    SPIN_UNTIL(fx, fx->client == NULL);
    assert_int_equal(other.n, 1);
    assert_int_equal(other.code, TTRPC_CANCELED);
}

static void test_svc_ttrpc_metadata_and_sync_over_path(void **state)
{
    struct fx *fx = *state;
    err_t err = ERR_INIT;
    char dir[] = "/tmp/ttrpc-test-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "unix://%s/s.sock", dir);
    assert_int_equal(ttrpc_server_listen(fx->server, path, &err), 0);
    /* A second bind on the same path: EADDRINUSE, the caller decides. */
    assert_true(ttrpc_server_listen(fx->server, path, &err) < 0);
    assert_int_equal(err.code, EADDRINUSE);
    err_clear(&err);
    ttrpc_client_t *c = NULL;
    assert_int_equal(ttrpc_client_connect(fx->base, path + 7, &c, &err), 0);
    ttrpc_result_t res = TTRPC_RESULT_INIT;
    ttrpc_kv_t md[] = {{"containerd-namespace-ttrpc", "default"}};
    ttrpc_call_opts_t o = {.metadata = md, .n_metadata = 1};
    /* Hold never answers by itself: the sync call times out. */
    o.timeout_ns = 20000000;
    assert_int_equal(
        ttrpc_client_call_sync(c, "test.Svc", "Hold", (const uint8_t *)"m", 1, &o, &res, &err), 0);
    assert_int_equal(res.code, TTRPC_DEADLINE_EXCEEDED);
    assert_string_equal(
        ttrpc_call_metadata(fx->held.calls[fx->held.n - 1], "containerd-namespace-ttrpc"),
        "default");
    assert_null(ttrpc_call_metadata(fx->held.calls[0], "nope"));
    assert_string_equal(ttrpc_call_service(fx->held.calls[0]), "test.Svc");
    assert_string_equal(ttrpc_call_method(fx->held.calls[0]), "Hold");
    assert_int_equal(ttrpc_call_stream_id(fx->held.calls[0]) % 2, 1);
    ttrpc_result_clear(&res);
    assert_int_equal(
        ttrpc_client_call_sync(c, "test.Svc", "Echo", (const uint8_t *)"sync", 4, NULL, &res, &err),
        0);
    assert_int_equal(res.code, TTRPC_OK);
    assert_int_equal(res.len, 4);
    assert_memory_equal(res.payload, "sync", 4);
    ttrpc_result_clear(&res);
    ttrpc_client_destroy(&c);
    ttrpc_server_destroy(&fx->server);
    char sock[160];
    snprintf(sock, sizeof(sock), "%s/s.sock", dir);
    unlink(sock);
    rmdir(dir);
}

static void test_svc_ttrpc_listen_fd(void **state)
{
    struct fx *fx = *state;
    err_t err = ERR_INIT;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    /* Not a listening socket: refused, and the fd is consumed. */
    assert_true(ttrpc_server_listen_fd(fx->server, sv[0], &err) < 0);
    assert_int_equal(err.code, EINVAL);
    err_clear(&err);
    close(sv[1]);
    /* An abstract listening socket handed over as containerd's fd 3 would be. */
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path + 1, sizeof(sun.sun_path) - 1, "husk-ttrpc-test-%d", getpid());
    socklen_t sl = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sun.sun_path + 1);
    assert_int_equal(bind(l, (struct sockaddr *)&sun, sl), 0);
    assert_int_equal(listen(l, 8), 0);
    assert_int_equal(ttrpc_server_listen_fd(fx->server, l, &err), 0);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sun, sl), 0);
    ttrpc_client_t *cl = NULL;
    assert_int_equal(ttrpc_client_from_fd(fx->base, c, &cl, &err), 0);
    ttrpc_result_t res = TTRPC_RESULT_INIT;
    assert_int_equal(
        ttrpc_client_call_sync(cl, "test.Svc", "Echo", (const uint8_t *)"fd3", 3, NULL, &res, &err),
        0);
    assert_int_equal(res.code, 0);
    assert_memory_equal(res.payload, "fd3", 3);
    assert_int_equal(ttrpc_server_connections(fx->server), 3);
    ttrpc_result_clear(&res);
    ttrpc_client_destroy(&cl);
}

static void test_svc_ttrpc_register_rejects_bad_names(void **state)
{
    struct fx *fx = *state;
    err_t err = ERR_INIT;
    assert_true(ttrpc_server_register(fx->server, "test.Svc/Echo", echo_handler, NULL, &err) < 0);
    assert_int_equal(err.code, EEXIST);
    assert_true(ttrpc_server_register(fx->server, "noslash", echo_handler, NULL, &err) < 0);
    assert_int_equal(err.code, EINVAL);
    assert_true(ttrpc_server_register(fx->server, "/m", echo_handler, NULL, &err) < 0);
    assert_true(ttrpc_server_register(fx->server, "s/", echo_handler, NULL, &err) < 0);
    err_clear(&err);
}

static void test_svc_ttrpc_codes(void **state)
{
    assert_string_equal(ttrpc_code_name(TTRPC_NOT_FOUND), "NotFound");
    assert_string_equal(ttrpc_code_name(TTRPC_UNIMPLEMENTED), "Unimplemented");
    assert_string_equal(ttrpc_code_name(99), "Unknown");
    assert_int_equal(ttrpc_code_from_errno(0), TTRPC_OK);
    assert_int_equal(ttrpc_code_from_errno(ENOENT), TTRPC_NOT_FOUND);
    assert_int_equal(ttrpc_code_from_errno(-EEXIST), TTRPC_ALREADY_EXISTS);
    assert_int_equal(ttrpc_code_from_errno(ENOTSUP), TTRPC_UNIMPLEMENTED);
    assert_int_equal(ttrpc_code_from_errno(EBUSY), TTRPC_FAILED_PRECONDITION);
    assert_int_equal(ttrpc_code_from_errno(EIO), TTRPC_UNKNOWN);
}

static ttrpc_call_t *parked[TTRPC_MAX_CALLS_PER_CONN + 8];
static int n_parked;

static void park_handler(ttrpc_call_t *call, const uint8_t *payload, size_t len, void *arg)
{
    parked[n_parked++] = call;
}

static void test_svc_ttrpc_too_many_calls_in_flight(void **state)
{
    struct fx *fx = *state;
    err_t err = ERR_INIT;
    assert_int_equal(ttrpc_server_register(fx->server, "test.Svc/Park", park_handler, NULL, &err),
                     0);
    n_parked = 0;
    for (int i = 0; i < TTRPC_MAX_CALLS_PER_CONN; i++)
        raw_request(fx, (uint32_t)(2 * i + 1), "test.Svc", "Park", "");
    SPIN_UNTIL(fx, n_parked == TTRPC_MAX_CALLS_PER_CONN);
    raw_request(fx, 5001, "test.Svc", "Echo", "z");
    expect_status(fx, 5001, TTRPC_RESOURCE_EXHAUSTED, "more than 1024 requests in flight");
    /* Answering one makes room again. */
    ttrpc_call_reply(parked[0], NULL, 0);
    expect_status(fx, 1, TTRPC_OK, NULL);
    raw_request(fx, 5003, "test.Svc", "Echo", "z");
    expect_status(fx, 5003, TTRPC_OK, NULL);
    /* The rest are cancelled with the connection (teardown) and answered here. */
    close(fx->raw);
    fx->raw = -1;
    SPIN_UNTIL(fx, ttrpc_server_connections(fx->server) == 1);
    for (int i = 1; i < n_parked; i++) {
        assert_true(ttrpc_call_cancelled(parked[i]));
        ttrpc_call_reply(parked[i], NULL, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_svc_ttrpc_header_round_trip),
        cmocka_unit_test(test_svc_ttrpc_parser_frames_split_anywhere),
        cmocka_unit_test(test_svc_ttrpc_parser_truncated_header_and_body),
        cmocka_unit_test(test_svc_ttrpc_parser_oversized_not_allocated),
        cmocka_unit_test(test_svc_ttrpc_parser_callback_stops),
        cmocka_unit_test(test_svc_ttrpc_codes),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_echo_and_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_concurrent_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_unknown_method_and_service, setup, teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_empty_reply_is_zero_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_oversized_frame_answered_conn_survives,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_truncated_then_eof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_unknown_type_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_even_stream_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_garbage_protobuf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_client_timeout_late_answer_dropped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_close_with_pending_then_late_answer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_server_destroy_fails_client_calls, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_client_destroy_inside_callback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_metadata_and_sync_over_path, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_listen_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_register_rejects_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_svc_ttrpc_too_many_calls_in_flight, setup, teardown),
    };
    return cmocka_run_group_tests_name("svc_ttrpc", tests, NULL, NULL);
}
