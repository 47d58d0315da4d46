/* The host's agent actor against a scripted fake guest over a socketpair:
 * the test thread plays the guest, a client actor plays the runtime. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/agent_actor.h"
#include "agent/frame.h"
#include "bus/bus.h"
#include "common/log.h"
#include "tests/helpers/agent_client.h"

struct fx {
    bus_t *bus;
    agent_actor_t *agent;
    aclient_t client;
    int g; /* the fake guest's end */
    agent_frame_reader_t *reader;
    msg_t *inbox[64];
    int nin;
};

static int fx_setup_opts(void **state, int req_timeout_ms, bool auto_ack, int liveness_ms)
{
    struct fx *f = calloc(1, sizeof *f);
    err_t err = ERR_INIT;
    bus_opts_t bo = {.name = "t-agent", .supervise_ms = -1};
    assert_int_equal(bus_new(&bo, &f->bus, &err), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f->g = sv[1];
    actor_opts_t ao = {.zctx = bus_context(f->bus), .endpoint = bus_endpoint(f->bus)};
    agent_actor_opts_t o = {
        .fd = sv[0],
        .request_timeout_ms = req_timeout_ms,
        .auto_ack = auto_ack,
        .liveness_ms = liveness_ms};
    if (agent_actor_start(&ao, &o, &f->agent, &err) < 0)
        fail_msg("agent_actor_start: %s", err_str(&err));
    if (aclient_start(&f->client, &ao, "client", "agent", false, &err) < 0)
        fail_msg("client: %s", err_str(&err));
    f->reader = agent_frame_reader_new(0);
    *state = f;
    return 0;
}

static int fx_setup(void **state)
{
    return fx_setup_opts(state, 0, false, 0);
}

static int fx_setup_liveness(void **state)
{
    return fx_setup_opts(state, 0, false, 400);
}

static int fx_setup_liveness_long(void **state)
{
    return fx_setup_opts(state, 0, false, 3000);
}

static int fx_setup_short(void **state)
{
    return fx_setup_opts(state, 500, false, 0);
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    aclient_stop(&f->client);
    agent_actor_stop(&f->agent, 5000);
    bus_destroy(&f->bus);
    if (f->g >= 0)
        close(f->g);
    for (int i = 0; i < f->nin; i++)
        msg_destroy(&f->inbox[i]);
    agent_frame_reader_destroy(&f->reader);
    free(f);
    return 0;
}

static int guest_collect(void *arg, const uint8_t *p, size_t len)
{
    struct fx *f = arg;
    msg_t *m = NULL;
    err_t err = ERR_INIT;
    if (msg_decode(p, len, &m, &err) < 0)
        fail_msg("the host sent an undecodable frame: %s", err_str(&err));
    assert_true(f->nin < 64);
    f->inbox[f->nin++] = m;
    return 0;
}

/* The next message the host sent to the guest (caller owns it). */
static msg_t *guest_recv(struct fx *f, int timeout_ms)
{
    while (f->nin == 0) {
        struct pollfd p = {.fd = f->g, .events = POLLIN};
        if (poll(&p, 1, timeout_ms) <= 0)
            return NULL;
        char buf[65536];
        ssize_t n = read(f->g, buf, sizeof buf);
        if (n <= 0)
            return NULL;
        err_t err = ERR_INIT;
        assert_int_equal(agent_frame_feed(f->reader, buf, (size_t)n, guest_collect, f, &err), 0);
    }
    msg_t *m = f->inbox[0];
    memmove(&f->inbox[0], &f->inbox[1], (size_t)(f->nin - 1) * sizeof(msg_t *));
    f->nin--;
    return m;
}

static void write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void guest_send(struct fx *f, msg_t *m)
{
    uint8_t *buf;
    size_t len;
    err_t err = ERR_INIT;
    snprintf(m->from, sizeof m->from, "guest");
    assert_int_equal(msg_encode(m, &buf, &len, &err), 0);
    uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                      (uint8_t)len};
    write_all(f->g, hdr, 4);
    write_all(f->g, buf, len);
    free(buf);
    msg_destroy(&m);
}

static msg_t *guest_reply(const msg_t *req, msg_type_t t)
{
    msg_t *m = msg_new(t);
    m->id = 1000 + req->id;
    m->reply_to = req->id;
    return m;
}

static msg_t *new_check(void)
{
    return msg_new(MSG_AGENT_CHECK);
}

static msg_t *wait_lost(struct fx *f)
{
    return aclient_wait_event(&f->client, MSG_AGENT_LOST, NULL, NULL, 5000);
}

/* ---- tests ------------------------------------------------------------------- */

static void test_agent_actor_check_roundtrip_reaches_requester(void **state)
{
    struct fx *f = *state;
    struct aclient_job *j = aclient_begin(&f->client, "agent", new_check(), 5000);
    msg_t *req = guest_recv(f, 5000);
    assert_non_null(req);
    assert_int_equal(req->type, MSG_AGENT_CHECK);
    assert_string_equal(req->from, "agent");
    assert_true(req->id > 0 && req->reply_to == 0);
    msg_t *r = guest_reply(req, MSG_AGENT_HEALTH);
    msg_set_str(&((msg_agent_health_t *)r->body)->status, "SERVING");
    msg_set_str(&((msg_agent_health_t *)r->body)->version, "9.9");
    guest_send(f, r);
    msg_destroy(&req);
    msg_t *rep = aclient_finish(&f->client, j);
    assert_non_null(rep);
    assert_int_equal(rep->status, 0);
    assert_int_equal(rep->type, MSG_AGENT_HEALTH);
    assert_string_equal(((msg_agent_health_t *)rep->body)->status, "SERVING");
    assert_string_equal(((msg_agent_health_t *)rep->body)->version, "9.9");
    assert_string_equal(rep->from, "agent");
    msg_destroy(&rep);
}

static void test_agent_actor_guest_error_keeps_code_and_text(void **state)
{
    struct fx *f = *state;
    msg_t *m = msg_new(MSG_AGENT_START_CONTAINER);
    msg_set_str(&((msg_agent_start_container_t *)m->body)->container_id, "nope");
    struct aclient_job *j = aclient_begin(&f->client, "agent", m, 5000);
    msg_t *req = guest_recv(f, 5000);
    assert_non_null(req);
    assert_string_equal(((msg_agent_start_container_t *)req->body)->container_id, "nope");
    msg_t *r = guest_reply(req, MSG_BUS_ERROR);
    msg_set_status(r, ENOENT, "container nope: no such container");
    guest_send(f, r);
    msg_destroy(&req);
    msg_t *rep = aclient_finish(&f->client, j);
    assert_int_equal(rep->status, ENOENT);
    assert_string_equal(rep->status_text, "container nope: no such container");
    msg_destroy(&rep);
}

static void test_agent_actor_unknown_reply_id_is_dropped(void **state)
{
    struct fx *f = *state;
    struct aclient_job *j = aclient_begin(&f->client, "agent", new_check(), 5000);
    msg_t *req = guest_recv(f, 5000);
    msg_t *bogus = msg_new(MSG_AGENT_HEALTH);
    bogus->id = 5;
    bogus->reply_to = req->id + 12345;
    guest_send(f, bogus);
    guest_send(f, guest_reply(req, MSG_AGENT_HEALTH));
    msg_destroy(&req);
    msg_t *rep = aclient_finish(&f->client, j);
    assert_int_equal(rep->status, 0);
    assert_int_equal(rep->type, MSG_AGENT_HEALTH);
    msg_destroy(&rep);
    agent_actor_counters_t c;
    agent_actor_counters(f->agent, &c);
    assert_int_equal(c.dropped_replies, 1);
    assert_false(c.lost);
}

static void test_agent_actor_wrong_reply_type_is_eproto(void **state)
{
    struct fx *f = *state;
    struct aclient_job *j = aclient_begin(&f->client, "agent", new_check(), 5000);
    msg_t *req = guest_recv(f, 5000);
    guest_send(f, guest_reply(req, MSG_AGENT_PID));
    msg_destroy(&req);
    msg_t *rep = aclient_finish(&f->client, j);
    assert_int_equal(rep->status, EPROTO);
    assert_non_null(strstr(rep->status_text, "answered agent.check with agent.pid"));
    msg_destroy(&rep);
}

static void test_agent_actor_output_without_credit_disconnects(void **state)
{
    struct fx *f = *state;
    msg_t *w = msg_new(MSG_AGENT_WAIT_PROCESS);
    msg_set_str(&((msg_agent_wait_process_t *)w->body)->container_id, "c1");
    struct aclient_job *j = aclient_begin(&f->client, "agent", w, 10000);
    msg_t *req = guest_recv(f, 5000);
    msg_destroy(&req);
    msg_t *o = msg_new(MSG_AGENT_OUTPUT);
    msg_set_str(&((msg_agent_output_t *)o->body)->container_id, "c1");
    ((msg_agent_output_t *)o->body)->stream = 1;
    msg_set_bin(&((msg_agent_output_t *)o->body)->data, "spam", 4);
    guest_send(f, o);
    msg_t *lost = wait_lost(f);
    assert_non_null(lost);
    assert_non_null(strstr(((msg_agent_lost_t *)lost->body)->reason, "never started"));
    assert_int_equal(((msg_agent_lost_t *)lost->body)->pending, 1);
    msg_destroy(&lost);
    msg_t *rep = aclient_finish(&f->client, j);
    assert_int_equal(rep->status, ECONNRESET);
    assert_non_null(strstr(rep->status_text, "agent channel lost"));
    msg_destroy(&rep);
    rep = aclient_call(&f->client, "agent", new_check(), 2000);
    assert_int_equal(rep->status, ENOTCONN);
    msg_destroy(&rep);
    /* the host closed its end */
    char b;
    assert_int_equal(read(f->g, &b, 1), 0);
}

static void send_output(struct fx *f, const char *cid, size_t n)
{
    static char data[4096];
    memset(data, 'x', sizeof data);
    msg_t *o = msg_new(MSG_AGENT_OUTPUT);
    msg_set_str(&((msg_agent_output_t *)o->body)->container_id, cid);
    ((msg_agent_output_t *)o->body)->stream = 1;
    msg_set_bin(&((msg_agent_output_t *)o->body)->data, data, n);
    guest_send(f, o);
}

static void test_agent_actor_output_beyond_credit_disconnects(void **state)
{
    struct fx *f = *state;
    msg_t *m = msg_new(MSG_AGENT_CREATE_CONTAINER);
    msg_agent_create_container_t *cc = m->body;
    msg_set_str(&cc->container_id, "c1");
    msg_set_str(&cc->spec, "{}");
    msg_set_str(&cc->storages, "[]");
    cc->output_window = 100;
    struct aclient_job *j = aclient_begin(&f->client, "agent", m, 5000);
    msg_t *req = guest_recv(f, 5000);
    assert_int_equal(req->type, MSG_AGENT_CREATE_CONTAINER);
    assert_int_equal(((msg_agent_create_container_t *)req->body)->output_window, 100);
    msg_t *r = guest_reply(req, MSG_AGENT_PID);
    ((msg_agent_pid_t *)r->body)->pid = 42;
    guest_send(f, r);
    msg_destroy(&req);
    msg_t *rep = aclient_finish(&f->client, j);
    assert_int_equal(rep->status, 0);
    assert_int_equal(((msg_agent_pid_t *)rep->body)->pid, 42);
    msg_destroy(&rep);

    send_output(f, "c1", 60); /* within the window: published */
    msg_t *ev = aclient_wait_event(&f->client, MSG_AGENT_OUTPUT, NULL, NULL, 5000);
    assert_non_null(ev);
    assert_int_equal(((msg_agent_output_t *)ev->body)->data.len, 60);
    msg_destroy(&ev);
    /* the consumer returns the credit: the ack reaches the guest */
    msg_t *ack = msg_new(MSG_AGENT_OUTPUT_ACK);
    msg_set_str(&((msg_agent_output_ack_t *)ack->body)->container_id, "c1");
    ((msg_agent_output_ack_t *)ack->body)->stream = 1;
    ((msg_agent_output_ack_t *)ack->body)->bytes = 60;
    aclient_send(&f->client, "agent", ack);
    msg_t *fwd = guest_recv(f, 5000);
    assert_non_null(fwd);
    assert_int_equal(fwd->type, MSG_AGENT_OUTPUT_ACK);
    assert_int_equal(((msg_agent_output_ack_t *)fwd->body)->bytes, 60);
    msg_destroy(&fwd);
    send_output(f, "c1", 100); /* exactly the credit */
    ev = aclient_wait_event(&f->client, MSG_AGENT_OUTPUT, NULL, NULL, 5000);
    assert_non_null(ev);
    msg_destroy(&ev);
    agent_actor_counters_t c;
    agent_actor_counters(f->agent, &c);
    assert_false(c.lost);
    send_output(f, "c1", 1); /* one byte too many */
    msg_t *lost = wait_lost(f);
    assert_non_null(lost);
    assert_non_null(strstr(((msg_agent_lost_t *)lost->body)->reason, "flooded"));
    msg_destroy(&lost);
}

static void test_agent_actor_garbage_frame_disconnects(void **state)
{
    struct fx *f = *state;
    uint8_t junk[14] = {0, 0, 0, 10, 0xc1, 0xc1, 0xff, 1, 2, 3, 4, 5, 6, 7};
    write_all(f->g, junk, sizeof junk);
    msg_t *lost = wait_lost(f);
    assert_non_null(lost);
    assert_non_null(strstr(((msg_agent_lost_t *)lost->body)->reason, "undecodable"));
    msg_destroy(&lost);
    msg_t *rep = aclient_call(&f->client, "agent", new_check(), 2000);
    assert_int_equal(rep->status, ENOTCONN);
    assert_non_null(strstr(rep->status_text, "undecodable"));
    msg_destroy(&rep);
}

static void test_agent_actor_4gib_length_disconnects(void **state)
{
    struct fx *f = *state;
    uint8_t hdr[4] = {0xff, 0xff, 0xff, 0xff};
    write_all(f->g, hdr, 4);
    msg_t *lost = wait_lost(f);
    assert_non_null(lost);
    assert_non_null(strstr(((msg_agent_lost_t *)lost->body)->reason, "exceeds the limit"));
    msg_destroy(&lost);
}

static void test_agent_actor_guest_hang_times_out(void **state)
{
    struct fx *f = *state; /* request_timeout_ms = 500 */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    msg_t *rep = aclient_call(&f->client, "agent", new_check(), 300);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_non_null(rep);
    assert_int_equal(rep->status, ETIMEDOUT);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 250 && ms < 3000);
    msg_destroy(&rep);
    msg_t *req = guest_recv(f, 2000);
    assert_non_null(req);
    /* the actor gives up on its side too, then a late answer is dropped */
    agent_actor_counters_t c = {0};
    for (int i = 0; i < 300 && c.timeouts == 0; i++) {
        usleep(10000);
        agent_actor_counters(f->agent, &c);
    }
    assert_int_equal(c.timeouts, 1);
    guest_send(f, guest_reply(req, MSG_AGENT_HEALTH));
    msg_destroy(&req);
    for (int i = 0; i < 300 && c.dropped_replies == 0; i++) {
        usleep(10000);
        agent_actor_counters(f->agent, &c);
    }
    assert_int_equal(c.dropped_replies, 1);
    assert_false(c.lost);
}

static void test_agent_actor_guest_close_fails_pending(void **state)
{
    struct fx *f = *state;
    msg_t *w = msg_new(MSG_AGENT_WAIT_PROCESS);
    msg_set_str(&((msg_agent_wait_process_t *)w->body)->container_id, "c1");
    struct aclient_job *j = aclient_begin(&f->client, "agent", w, 10000);
    msg_t *req = guest_recv(f, 5000);
    assert_non_null(req);
    msg_destroy(&req);
    close(f->g);
    f->g = -1;
    msg_t *rep = aclient_finish(&f->client, j);
    assert_int_equal(rep->status, ECONNRESET);
    msg_destroy(&rep);
    msg_t *lost = wait_lost(f);
    assert_non_null(lost);
    assert_non_null(strstr(((msg_agent_lost_t *)lost->body)->reason, "closed the channel"));
    msg_destroy(&lost);
}

static void test_agent_actor_guest_events_are_published(void **state)
{
    struct fx *f = *state;
    msg_t *e = msg_new(MSG_AGENT_EXITED);
    msg_set_str(&((msg_agent_exited_t *)e->body)->container_id, "c9");
    ((msg_agent_exited_t *)e->body)->status = 137;
    guest_send(f, e);
    msg_t *oom = msg_new(MSG_AGENT_OOM);
    msg_set_str(&((msg_agent_oom_t *)oom->body)->container_id, "c9");
    guest_send(f, oom);
    msg_t *ev = aclient_wait_event(&f->client, MSG_AGENT_EXITED, NULL, NULL, 5000);
    assert_non_null(ev);
    assert_int_equal(((msg_agent_exited_t *)ev->body)->status, 137);
    assert_string_equal(ev->from, "agent");
    msg_destroy(&ev);
    ev = aclient_wait_event(&f->client, MSG_AGENT_OOM, NULL, NULL, 5000);
    assert_non_null(ev);
    msg_destroy(&ev);
}

/* Many requests in flight, answered out of order. */
static void test_agent_actor_many_in_flight_out_of_order(void **state)
{
    struct fx *f = *state;
    enum { N = 50 };
    struct aclient_job *jobs[N];
    for (int i = 0; i < N; i++) {
        msg_t *m = msg_new(MSG_AGENT_LIST_PROCESSES);
        char id[16];
        snprintf(id, sizeof id, "c%d", i);
        msg_set_str(&((msg_agent_list_processes_t *)m->body)->container_id, id);
        jobs[i] = aclient_begin(&f->client, "agent", m, 10000);
    }
    msg_t *reqs[N];
    for (int i = 0; i < N; i++) {
        reqs[i] = guest_recv(f, 5000);
        assert_non_null(reqs[i]);
    }
    for (int i = N - 1; i >= 0; i--) {
        msg_t *r = guest_reply(reqs[i], MSG_AGENT_PROCESSES);
        const char *cid = ((msg_agent_list_processes_t *)reqs[i]->body)->container_id;
        msg_u64v_push(&((msg_agent_processes_t *)r->body)->pids, strtoull(cid + 1, NULL, 10));
        guest_send(f, r);
        msg_destroy(&reqs[i]);
    }
    for (int i = 0; i < N; i++) {
        msg_t *rep = aclient_finish(&f->client, jobs[i]);
        assert_int_equal(rep->status, 0);
        msg_agent_processes_t *p = rep->body;
        assert_int_equal(p->pids.n, 1);
        assert_int_equal(p->pids.v[0], (uint64_t)i);
        msg_destroy(&rep);
    }
}

static long ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* The guest answers one health check, so that it counts as up. */
static void guest_up(struct fx *f)
{
    struct aclient_job *j = aclient_begin(&f->client, "agent", new_check(), 5000);
    msg_t *req = guest_recv(f, 5000);
    assert_non_null(req);
    guest_send(f, guest_reply(req, MSG_AGENT_HEALTH));
    msg_destroy(&req);
    msg_t *rep = aclient_finish(&f->client, j);
    assert_int_equal(rep->status, 0);
    msg_destroy(&rep);
}

static msg_t *new_start(const char *cid)
{
    msg_t *m = msg_new(MSG_AGENT_START_CONTAINER);
    msg_set_str(&((msg_agent_start_container_t *)m->body)->container_id, cid);
    return m;
}

/* A guest that stops answering is found out by the health probe long
 * before the request's own deadline (30 s), and the sandbox is lost. */
static void test_agent_actor_silent_guest_is_declared_hung(void **state)
{
    struct fx *f = *state; /* liveness_ms = 400 */
    guest_up(f);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct aclient_job *j = aclient_begin(&f->client, "agent", new_start("c1"), 20000);
    msg_t *req = guest_recv(f, 5000);
    assert_non_null(req);
    assert_int_equal(req->type, MSG_AGENT_START_CONTAINER);
    msg_destroy(&req);
    /* about a second of silence later: the probe, left unanswered */
    msg_t *probe = guest_recv(f, 5000);
    assert_non_null(probe);
    assert_int_equal(probe->type, MSG_AGENT_CHECK);
    long at = ms_since(&t0);
    assert_true(at >= 900);
    msg_destroy(&probe);
    msg_t *rep = aclient_finish(&f->client, j);
    long ms = ms_since(&t0);
    assert_non_null(rep);
    assert_int_equal(rep->status, ETIMEDOUT);
    assert_non_null(strstr(rep->status_text, "agent is not responding"));
    assert_non_null(strstr(rep->status_text, "agent.start_container waiting"));
    assert_true(ms >= at + 300 && ms < 10000);
    msg_destroy(&rep);
    msg_t *lost = wait_lost(f);
    assert_non_null(lost);
    assert_non_null(strstr(((msg_agent_lost_t *)lost->body)->reason, "not responding"));
    msg_destroy(&lost);
    /* later requests fail at once */
    rep = aclient_call(&f->client, "agent", new_check(), 5000);
    assert_int_equal(rep->status, ENOTCONN);
    msg_destroy(&rep);
}

/* A guest that is slow with one request but answers the probes is alive:
 * the request gets its answer, however late, within its deadline. */
static void test_agent_actor_slow_guest_that_answers_probes_is_alive(void **state)
{
    struct fx *f = *state; /* liveness_ms = 400 */
    guest_up(f);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct aclient_job *j = aclient_begin(&f->client, "agent", new_start("c1"), 20000);
    msg_t *req = guest_recv(f, 5000);
    assert_non_null(req);
    int probes = 0;
    while (ms_since(&t0) < 3000) {
        msg_t *p = guest_recv(f, 200);
        if (!p)
            continue;
        assert_int_equal(p->type, MSG_AGENT_CHECK);
        guest_send(f, guest_reply(p, MSG_AGENT_HEALTH));
        msg_destroy(&p);
        probes++;
    }
    assert_true(probes >= 1);
    guest_send(f, guest_reply(req, MSG_AGENT_OK));
    msg_destroy(&req);
    msg_t *rep = aclient_finish(&f->client, j);
    assert_non_null(rep);
    assert_int_equal(rep->status, 0);
    assert_int_equal(rep->type, MSG_AGENT_OK);
    msg_destroy(&rep);
    agent_actor_counters_t c;
    agent_actor_counters(f->agent, &c);
    assert_false(c.lost);
    assert_int_equal(c.dropped_replies, 0); /* probe answers are not strays */
}

/* After an answered probe the watch goes back to a second of silence, not
 * to the probe's own (long) wait: the next hang is probed as soon. */
static void test_agent_actor_answered_probe_rearms_the_short_watch(void **state)
{
    struct fx *f = *state; /* liveness_ms = 3000 */
    guest_up(f);
    struct aclient_job *j = aclient_begin(&f->client, "agent", new_start("c1"), 20000);
    msg_t *req = guest_recv(f, 5000);
    assert_non_null(req);
    msg_t *probe = guest_recv(f, 5000);
    assert_non_null(probe);
    assert_int_equal(probe->type, MSG_AGENT_CHECK);
    guest_send(f, guest_reply(probe, MSG_AGENT_HEALTH));
    msg_destroy(&probe);
    guest_send(f, guest_reply(req, MSG_AGENT_OK));
    msg_destroy(&req);
    msg_t *rep = aclient_finish(&f->client, j);
    assert_int_equal(rep->status, 0);
    msg_destroy(&rep);
    /* a second request, left unanswered: probed a second later */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    j = aclient_begin(&f->client, "agent", new_start("c2"), 20000);
    req = guest_recv(f, 5000);
    assert_non_null(req);
    probe = guest_recv(f, 5000);
    assert_non_null(probe);
    assert_int_equal(probe->type, MSG_AGENT_CHECK);
    long at = ms_since(&t0);
    if (at < 900 || at > 2500)
        fail_msg("probe %ld ms after the request, want about 1000", at);
    guest_send(f, guest_reply(probe, MSG_AGENT_HEALTH));
    guest_send(f, guest_reply(req, MSG_AGENT_OK));
    msg_destroy(&probe);
    msg_destroy(&req);
    rep = aclient_finish(&f->client, j);
    assert_int_equal(rep->status, 0);
    msg_destroy(&rep);
}

/* Before the guest's first answer (a booting VM) nothing is probed: the
 * request's own deadline covers a slow boot. */
static void test_agent_actor_booting_guest_is_not_probed(void **state)
{
    struct fx *f = *state; /* liveness_ms = 400 */
    struct aclient_job *j = aclient_begin(&f->client, "agent", new_check(), 20000);
    msg_t *req = guest_recv(f, 5000);
    assert_non_null(req);
    msg_t *p = guest_recv(f, 2500);
    assert_null(p);
    guest_send(f, guest_reply(req, MSG_AGENT_HEALTH));
    msg_destroy(&req);
    msg_t *rep = aclient_finish(&f->client, j);
    assert_int_equal(rep->status, 0);
    msg_destroy(&rep);
    agent_actor_counters_t c;
    agent_actor_counters(f->agent, &c);
    assert_false(c.lost);
}

/* agent.wait_process has no deadline (answered at exit): waiting on it
 * alone is not a reason to probe. */
static void test_agent_actor_wait_alone_is_not_probed(void **state)
{
    struct fx *f = *state; /* liveness_ms = 400 */
    guest_up(f);
    msg_t *w = msg_new(MSG_AGENT_WAIT_PROCESS);
    msg_set_str(&((msg_agent_wait_process_t *)w->body)->container_id, "c1");
    struct aclient_job *j = aclient_begin(&f->client, "agent", w, 20000);
    msg_t *req = guest_recv(f, 5000);
    assert_non_null(req);
    assert_null(guest_recv(f, 2500));
    msg_t *r = guest_reply(req, MSG_AGENT_EXIT_STATUS);
    guest_send(f, r);
    msg_destroy(&req);
    msg_t *rep = aclient_finish(&f->client, j);
    assert_int_equal(rep->status, 0);
    msg_destroy(&rep);
}

int main(void)
{
    log_setup(2, LOG_FMT_LOGFMT, LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_agent_actor_check_roundtrip_reaches_requester,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_guest_error_keeps_code_and_text, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_unknown_reply_id_is_dropped, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_wrong_reply_type_is_eproto, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_output_without_credit_disconnects,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_output_beyond_credit_disconnects, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_garbage_frame_disconnects, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_4gib_length_disconnects, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_guest_hang_times_out, fx_setup_short,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_guest_close_fails_pending, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_guest_events_are_published, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_many_in_flight_out_of_order, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_silent_guest_is_declared_hung,
                                        fx_setup_liveness, fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_slow_guest_that_answers_probes_is_alive,
                                        fx_setup_liveness, fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_answered_probe_rearms_the_short_watch,
                                        fx_setup_liveness_long, fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_booting_guest_is_not_probed,
                                        fx_setup_liveness, fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_actor_wait_alone_is_not_probed,
                                        fx_setup_liveness, fx_teardown),
    };
    return cmocka_run_group_tests_name("agent_actor", tests, NULL, NULL);
}
