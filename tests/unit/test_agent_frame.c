/* agent/frame: the framing of the agent channel under hostile input. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/frame.h"

struct got {
    int n;
    size_t lens[64];
    uint8_t first[64];
    int stop_at; /* return -ECANCELED at this frame (0 = never) */
};

static int collect(void *arg, const uint8_t *p, size_t len)
{
    struct got *g = arg;
    if (g->n < 64) {
        g->lens[g->n] = len;
        g->first[g->n] = p[0];
    }
    g->n++;
    if (g->stop_at && g->n == g->stop_at)
        return -ECANCELED;
    return 0;
}

static size_t put_frame(uint8_t *dst, uint32_t len, uint8_t fill)
{
    dst[0] = (uint8_t)(len >> 24);
    dst[1] = (uint8_t)(len >> 16);
    dst[2] = (uint8_t)(len >> 8);
    dst[3] = (uint8_t)len;
    memset(dst + 4, fill, len);
    return 4 + (size_t)len;
}

static void test_frame_reader_any_split_yields_same_frames(void **s)
{
    static uint8_t stream[64 * 1024];
    size_t n = 0;
    uint32_t lens[] = {1, 2, 3, 4, 5, 100, 1000, 4096, 7, 30000};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        n += put_frame(stream + n, lens[i], (uint8_t)(i + 1));
    unsigned seed = 7;
    for (int rep = 0; rep < 200; rep++) {
        agent_frame_reader_t *r = agent_frame_reader_new(0);
        struct got g = {0};
        err_t err = ERR_INIT;
        size_t off = 0;
        while (off < n) {
            seed = seed * 1103515245u + 12345u;
            size_t chunk = rep == 0 ? 1 : 1 + (seed >> 8) % (rep < 100 ? 9 : 5000);
            if (chunk > n - off)
                chunk = n - off;
            assert_int_equal(agent_frame_feed(r, stream + off, chunk, collect, &g, &err), 0);
            off += chunk;
        }
        assert_int_equal(g.n, 10);
        for (int i = 0; i < 10; i++) {
            assert_int_equal(g.lens[i], lens[i]);
            assert_int_equal(g.first[i], i + 1);
        }
        assert_false(agent_frame_reader_partial(r));
        agent_frame_reader_destroy(&r);
        assert_null(r);
    }
}

static void test_frame_reader_4gib_length_refused_before_allocation(void **s)
{
    agent_frame_reader_t *r = agent_frame_reader_new(0);
    struct got g = {0};
    err_t err = ERR_INIT;
    uint8_t hdr[4] = {0xff, 0xff, 0xff, 0xff};
    assert_int_equal(agent_frame_feed(r, hdr, 3, collect, &g, &err), 0);
    assert_int_equal(agent_frame_feed(r, hdr + 3, 1, collect, &g, &err), -EMSGSIZE);
    assert_non_null(strstr(err_str(&err), "4294967295"));
    assert_int_equal(g.n, 0);
    err_clear(&err);
    agent_frame_reader_destroy(&r);
}

static void test_frame_reader_bound_is_exact(void **s)
{
    agent_frame_reader_t *r = agent_frame_reader_new(100);
    struct got g = {0};
    err_t err = ERR_INIT;
    uint8_t buf[4 + 101];
    size_t n = put_frame(buf, 100, 1);
    assert_int_equal(agent_frame_feed(r, buf, n, collect, &g, &err), 0);
    assert_int_equal(g.n, 1);
    n = put_frame(buf, 101, 1);
    assert_int_equal(agent_frame_feed(r, buf, n, collect, &g, &err), -EMSGSIZE);
    err_clear(&err);
    agent_frame_reader_destroy(&r);
}

static void test_frame_reader_zero_length_refused(void **s)
{
    agent_frame_reader_t *r = agent_frame_reader_new(0);
    struct got g = {0};
    err_t err = ERR_INIT;
    uint8_t z[4] = {0};
    assert_int_equal(agent_frame_feed(r, z, 4, collect, &g, &err), -EMSGSIZE);
    assert_non_null(strstr(err_str(&err), "empty"));
    err_clear(&err);
    agent_frame_reader_destroy(&r);
}

static void test_frame_reader_callback_error_stops(void **s)
{
    uint8_t buf[64];
    size_t n = put_frame(buf, 3, 1);
    n += put_frame(buf + n, 3, 2);
    n += put_frame(buf + n, 3, 3);
    agent_frame_reader_t *r = agent_frame_reader_new(0);
    struct got g = {.stop_at = 2};
    err_t err = ERR_INIT;
    assert_int_equal(agent_frame_feed(r, buf, n, collect, &g, &err), -ECANCELED);
    assert_int_equal(g.n, 2);
    agent_frame_reader_destroy(&r);
}

static void test_frame_read_fd_eof_inside_frame_says_so(void **s)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    uint8_t buf[16];
    size_t n = put_frame(buf, 8, 9);
    assert_int_equal(write(sv[1], buf, n - 3), (ssize_t)(n - 3));
    agent_frame_reader_t *r = agent_frame_reader_new(0);
    struct got g = {0};
    err_t err = ERR_INIT;
    assert_int_equal(agent_frame_read(r, sv[0], 0, collect, &g, &err), 0); /* EAGAIN */
    assert_true(agent_frame_reader_partial(r));
    close(sv[1]);
    assert_int_equal(agent_frame_read(r, sv[0], 0, collect, &g, &err), -EPIPE);
    assert_non_null(strstr(err_str(&err), "inside a frame"));
    err_clear(&err);
    assert_int_equal(g.n, 0);
    agent_frame_reader_destroy(&r);
    close(sv[0]);
}

static void test_frame_read_budget_returns_one(void **s)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    static uint8_t buf[40000];
    size_t n = 0;
    for (int i = 0; i < 10; i++)
        n += put_frame(buf + n, 3000, (uint8_t)i);
    assert_int_equal(write(sv[1], buf, n), (ssize_t)n);
    agent_frame_reader_t *r = agent_frame_reader_new(0);
    struct got g = {0};
    err_t err = ERR_INIT;
    assert_int_equal(agent_frame_read(r, sv[0], 10000, collect, &g, &err), 1);
    assert_true(g.n >= 3 && g.n < 10);
    assert_int_equal(agent_frame_read(r, sv[0], 0, collect, &g, &err), 0);
    assert_int_equal(g.n, 10);
    agent_frame_reader_destroy(&r);
    close(sv[0]);
    close(sv[1]);
}

static void test_frame_writer_queue_is_bounded(void **s)
{
    agent_frame_writer_t *w = agent_frame_writer_new(1000, 600);
    err_t err = ERR_INIT;
    uint8_t p[700] = {0};
    assert_int_equal(agent_frame_writer_push(w, p, 0, &err), -EMSGSIZE);
    assert_int_equal(agent_frame_writer_push(w, p, 601, &err), -EMSGSIZE);
    assert_int_equal(agent_frame_writer_push(w, p, 500, &err), 0);
    assert_int_equal(agent_frame_writer_pending(w), 504);
    assert_int_equal(agent_frame_writer_push(w, p, 500, &err), -ENOBUFS);
    assert_non_null(strstr(err_str(&err), "queue full"));
    assert_int_equal(agent_frame_writer_push(w, p, 400, &err), 0);
    err_clear(&err);
    agent_frame_writer_destroy(&w);
    assert_null(w);
}

/* Partial writes on a small socket buffer: every byte arrives in order. */
static void test_frame_writer_partial_writes_roundtrip(void **s)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int small = 4096;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    agent_frame_writer_t *w = agent_frame_writer_new(0, 0);
    agent_frame_reader_t *r = agent_frame_reader_new(0);
    err_t err = ERR_INIT;
    static uint8_t p[50000];
    for (int i = 0; i < 20; i++) {
        memset(p, i + 1, sizeof p);
        assert_int_equal(agent_frame_writer_push(w, p, 1000 + (size_t)i * 2000, &err), 0);
    }
    struct got g = {0};
    int rounds = 0, saw_partial = 0;
    for (;;) {
        int rc = agent_frame_writer_flush(w, sv[1], &err);
        assert_true(rc >= 0);
        if (rc == 1)
            saw_partial = 1;
        assert_true(agent_frame_read(r, sv[0], 0, collect, &g, &err) >= 0);
        if (rc == 0 && g.n == 20)
            break;
        assert_true(++rounds < 100000);
    }
    assert_true(saw_partial);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(g.lens[i], 1000 + (size_t)i * 2000);
        assert_int_equal(g.first[i], i + 1);
    }
    assert_int_equal(agent_frame_writer_pending(w), 0);
    close(sv[0]);
    assert_int_equal(agent_frame_writer_push(w, p, 10, &err), 0);
    assert_int_equal(agent_frame_writer_flush(w, sv[1], &err), -EPIPE); /* no SIGPIPE */
    err_clear(&err);
    agent_frame_writer_destroy(&w);
    agent_frame_reader_destroy(&r);
    close(sv[1]);
}

/* Random bytes: the reader never crashes, and whatever frames it hands out
 * go through msg_decode without harm. */
static int decode_cb(void *arg, const uint8_t *p, size_t len)
{
    msg_t *m = NULL;
    err_t err = ERR_INIT;
    if (msg_decode(p, len, &m, &err) == 0)
        msg_destroy(&m);
    err_clear(&err);
    (*(int *)arg)++;
    return 0;
}

static void test_frame_reader_random_garbage_is_harmless(void **s)
{
    unsigned seed = 99;
    static uint8_t buf[8192];
    for (int rep = 0; rep < 300; rep++) {
        agent_frame_reader_t *r = agent_frame_reader_new(4096);
        size_t n = 1 + (size_t)rep * 27 % sizeof buf;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = (uint8_t)(seed >> 16);
        }
        if (rep % 2) { /* a plausible small header */
            buf[0] = 0;
            buf[1] = 0;
            buf[2] = (uint8_t)(rep % 16);
        }
        int frames = 0;
        err_t err = ERR_INIT;
        agent_frame_feed(r, buf, n, decode_cb, &frames, &err);
        err_clear(&err);
        agent_frame_reader_destroy(&r);
    }
}

/* A real envelope, framed, split at every position. */
static void test_frame_envelope_roundtrip_every_split(void **s)
{
    msg_t *m = msg_new(MSG_AGENT_OUTPUT);
    msg_agent_output_t *b = m->body;
    msg_set_str(&b->container_id, "c1");
    msg_set_str(&b->exec_id, "");
    b->stream = 2;
    msg_set_bin(&b->data, "hello\n", 6);
    agent_frame_writer_t *w = agent_frame_writer_new(0, 0);
    err_t err = ERR_INIT;
    assert_int_equal(agent_frame_writer_push_msg(w, m, &err), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(agent_frame_writer_flush(w, sv[1], &err), 0);
    uint8_t buf[512];
    ssize_t n = read(sv[0], buf, sizeof buf);
    assert_true(n > 10);
    for (ssize_t cut = 0; cut <= n; cut++) {
        agent_frame_reader_t *r = agent_frame_reader_new(0);
        int frames = 0;
        assert_int_equal(agent_frame_feed(r, buf, (size_t)cut, decode_cb, &frames, &err), 0);
        assert_int_equal(
            agent_frame_feed(r, buf + cut, (size_t)(n - cut), decode_cb, &frames, &err), 0);
        assert_int_equal(frames, 1);
        agent_frame_reader_destroy(&r);
    }
    msg_destroy(&m);
    agent_frame_writer_destroy(&w);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_reader_any_split_yields_same_frames),
        cmocka_unit_test(test_frame_reader_4gib_length_refused_before_allocation),
        cmocka_unit_test(test_frame_reader_bound_is_exact),
        cmocka_unit_test(test_frame_reader_zero_length_refused),
        cmocka_unit_test(test_frame_reader_callback_error_stops),
        cmocka_unit_test(test_frame_read_fd_eof_inside_frame_says_so),
        cmocka_unit_test(test_frame_read_budget_returns_one),
        cmocka_unit_test(test_frame_writer_queue_is_bounded),
        cmocka_unit_test(test_frame_writer_partial_writes_roundtrip),
        cmocka_unit_test(test_frame_reader_random_garbage_is_harmless),
        cmocka_unit_test(test_frame_envelope_roundtrip_every_split),
    };
    return cmocka_run_group_tests_name("agent_frame", tests, NULL, NULL);
}
