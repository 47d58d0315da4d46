/* QMP client against a scripted peer on a socketpair. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "hypervisors/qmp.h"

#define GREETING                                                                                   \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, "             \
    "\"capabilities\": [\"oob\"]}}\n"

struct t {
    struct event_base *base;
    int peer;
    hv_qmp_t *q;
    int ready, closed, closed_code, events, replies, reply_code;
    char last_event[64], reply_text[256], close_text[256];
    char order[64];
    bool destroy_in_cb;
};

static void on_ready(hv_qmp_t *q, void *arg, int status, const err_t *err)
{
    struct t *t = arg;
    t->ready++;
}

static void on_closed(hv_qmp_t *q, void *arg, int status, const err_t *err)
{
    struct t *t = arg;
    t->closed++;
    t->closed_code = err ? err->code : 0;
    snprintf(t->close_text, sizeof(t->close_text), "%s", err_str(err));
}

static void on_event(hv_qmp_t *q, void *arg, const char *name, json_t *data)
{
    struct t *t = arg;
    t->events++;
    snprintf(t->last_event, sizeof(t->last_event), "%s", name);
    strcat(t->order, "E");
}

static void on_reply(hv_qmp_t *q, void *arg, json_t *ret, const err_t *err)
{
    struct t *t = arg;
    t->replies++;
    strcat(t->order, "R");
    t->reply_code = err ? err->code : 0;
    if (err)
        snprintf(t->reply_text, sizeof(t->reply_text), "%s", err_str(err));
    else {
        char *s = json_dumps(ret, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(t->reply_text, sizeof(t->reply_text), "%s", s ? s : "");
        free(s);
    }
    if (t->destroy_in_cb)
        hv_qmp_destroy(&t->q);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Runs the loop until *counter >= want or ms elapse. */
static void pump_until(struct t *t, int *counter, int want, int ms)
{
    double end = now_ms() + ms;
    while ((!counter || *counter < want) && now_ms() < end) {
        event_base_loop(t->base, EVLOOP_NONBLOCK);
        usleep(500);
    }
}

static void peer_send(struct t *t, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(write(t->peer, s, n), (ssize_t)n);
}

/* Reads one request line from the client (pumping the loop so it writes). */
static json_t *peer_read(struct t *t)
{
    char buf[4096];
    size_t used = 0;
    double end = now_ms() + 2000;
    while (now_ms() < end) {
        event_base_loop(t->base, EVLOOP_NONBLOCK);
        ssize_t n = recv(t->peer, buf + used, 1, MSG_DONTWAIT);
        if (n == 1) {
            if (buf[used] == '\n') {
                json_t *j = json_loadb(buf, used, 0, NULL);
                assert_non_null(j);
                return j;
            }
            used++;
            assert_true(used < sizeof(buf));
        } else {
            usleep(200);
        }
    }
    fail_msg("no request from the client");
    return NULL;
}

static void reply(struct t *t, json_t *req, const char *ret_json)
{
    char line[1024];
    snprintf(line, sizeof(line), "{\"return\": %s, \"id\": \"%s\"}\n", ret_json,
             json_string_value(json_object_get(req, "id")));
    peer_send(t, line);
}

static int setup_opts(void **state, size_t max_line, int nt)
{
    struct t *t = calloc(1, sizeof(*t));
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    t->base = event_base_new();
    t->peer = sv[1];
    struct hv_qmp_callbacks cb = {on_ready, on_closed, on_event, t};
    struct hv_qmp_opts o = {.max_line = max_line, .negotiate_timeout_ms = nt};
    err_t err = ERR_INIT;
    assert_int_equal(hv_qmp_new(t->base, sv[0], &cb, &o, &t->q, &err), 0);
    *state = t;
    return 0;
}

static int setup(void **state)
{
    return setup_opts(state, 0, 2000);
}

static int setup_small(void **state)
{
    return setup_opts(state, 1024, 2000);
}

static int setup_fast_timeout(void **state)
{
    return setup_opts(state, 0, 100);
}

static int teardown(void **state)
{
    struct t *t = *state;
    hv_qmp_destroy(&t->q);
    close(t->peer);
    event_base_free(t->base);
    free(t);
    return 0;
}

/* Greeting, then the client's qmp_capabilities is answered. */
static void negotiate(struct t *t)
{
    peer_send(t, GREETING);
    json_t *req = peer_read(t);
    assert_string_equal(json_string_value(json_object_get(req, "execute")), "qmp_capabilities");
    reply(t, req, "{}");
    json_decref(req);
    pump_until(t, &t->ready, 1, 2000);
    assert_int_equal(t->ready, 1);
    assert_true(hv_qmp_is_ready(t->q));
}

static void test_hv_qmp_greeting_negotiates_capabilities(void **state)
{
    struct t *t = *state;
    assert_false(hv_qmp_is_ready(t->q));
    negotiate(t);
    assert_int_equal(t->closed, 0);
}

static void test_hv_qmp_command_reply_delivered(void **state)
{
    struct t *t = *state;
    negotiate(t);
    err_t err = ERR_INIT;
    assert_int_equal(hv_qmp_command(t->q, "query-status", NULL, 1000, on_reply, t, &err), 0);
    assert_int_equal(t->replies, 0); /* never from inside the call */
    json_t *req = peer_read(t);
    assert_string_equal(json_string_value(json_object_get(req, "execute")), "query-status");
    reply(t, req, "{\"status\": \"running\"}");
    json_decref(req);
    pump_until(t, &t->replies, 1, 2000);
    assert_int_equal(t->replies, 1);
    assert_int_equal(t->reply_code, 0);
    assert_string_equal(t->reply_text, "{\"status\":\"running\"}");
    assert_int_equal(hv_qmp_pending(t->q), 0);
}

static void test_hv_qmp_arguments_sent(void **state)
{
    struct t *t = *state;
    negotiate(t);
    err_t err = ERR_INIT;
    json_t *args = json_pack("{s:s}", "id", "dev0");
    assert_int_equal(hv_qmp_command(t->q, "device_del", args, 1000, on_reply, t, &err), 0);
    json_t *req = peer_read(t);
    assert_string_equal(json_string_value(json_object_get(json_object_get(req, "arguments"), "id")),
                        "dev0");
    json_decref(req);
}

static void test_hv_qmp_error_reply_maps_class(void **state)
{
    struct t *t = *state;
    negotiate(t);
    err_t err = ERR_INIT;
    assert_int_equal(hv_qmp_command(t->q, "device_del", NULL, 1000, on_reply, t, &err), 0);
    json_t *req = peer_read(t);
    char line[512];
    snprintf(line, sizeof(line),
             "{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device 'x' not found\"}, "
             "\"id\": \"%s\"}\n",
             json_string_value(json_object_get(req, "id")));
    json_decref(req);
    peer_send(t, line);
    pump_until(t, &t->replies, 1, 2000);
    assert_int_equal(t->reply_code, ENODEV);
    assert_non_null(strstr(t->reply_text, "Device 'x' not found"));
    assert_non_null(strstr(t->reply_text, "device_del"));
    /* The connection survives an error reply. */
    assert_true(hv_qmp_is_ready(t->q));
}

static void test_hv_qmp_generic_error_is_eio(void **state)
{
    struct t *t = *state;
    negotiate(t);
    err_t err = ERR_INIT;
    assert_int_equal(hv_qmp_command(t->q, "cont", NULL, 1000, on_reply, t, &err), 0);
    json_t *req = peer_read(t);
    char line[512];
    snprintf(line, sizeof(line),
             "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}, \"id\": \"%s\"}\n",
             json_string_value(json_object_get(req, "id")));
    json_decref(req);
    peer_send(t, line);
    pump_until(t, &t->replies, 1, 2000);
    assert_int_equal(t->reply_code, EIO);
}

static void test_hv_qmp_event_interleaved_with_reply(void **state)
{
    struct t *t = *state;
    negotiate(t);
    err_t err = ERR_INIT;
    assert_int_equal(hv_qmp_command(t->q, "stop", NULL, 1000, on_reply, t, &err), 0);
    json_t *req = peer_read(t);
    char line[512];
    /* event and reply in one write, event first */
    snprintf(line, sizeof(line),
             "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\n"
             "{\"return\": {}, \"id\": \"%s\"}\n",
             json_string_value(json_object_get(req, "id")));
    json_decref(req);
    peer_send(t, line);
    pump_until(t, &t->replies, 1, 2000);
    assert_int_equal(t->events, 1);
    assert_string_equal(t->last_event, "STOP");
    assert_string_equal(t->order, "ER");
}

static void test_hv_qmp_timeout_fails_command_not_connection(void **state)
{
    struct t *t = *state;
    negotiate(t);
    err_t err = ERR_INIT;
    assert_int_equal(hv_qmp_command(t->q, "query-status", NULL, 50, on_reply, t, &err), 0);
    json_t *req = peer_read(t);
    double t0 = now_ms();
    pump_until(t, &t->replies, 1, 2000);
    assert_int_equal(t->replies, 1);
    assert_int_equal(t->reply_code, ETIMEDOUT);
    assert_true(now_ms() - t0 < 1000);
    /* A late reply is ignored; the connection is still usable. */
    reply(t, req, "{}");
    json_decref(req);
    pump_until(t, NULL, 0, 50);
    assert_int_equal(t->replies, 1);
    assert_true(hv_qmp_is_ready(t->q));
    assert_int_equal(hv_qmp_command(t->q, "query-status", NULL, 1000, on_reply, t, &err), 0);
    req = peer_read(t);
    reply(t, req, "{}");
    json_decref(req);
    pump_until(t, &t->replies, 2, 2000);
    assert_int_equal(t->reply_code, 0);
}

static void test_hv_qmp_garbage_line_closes_with_eproto(void **state)
{
    struct t *t = *state;
    negotiate(t);
    err_t err = ERR_INIT;
    assert_int_equal(hv_qmp_command(t->q, "query-status", NULL, 1000, on_reply, t, &err), 0);
    json_decref(peer_read(t));
    peer_send(t, "this is not json\n");
    pump_until(t, &t->closed, 1, 2000);
    assert_int_equal(t->closed, 1);
    assert_int_equal(t->closed_code, EPROTO);
    assert_int_equal(t->replies, 1); /* pending command failed */
    assert_int_equal(t->reply_code, EPROTO);
    assert_true(hv_qmp_is_closed(t->q));
    assert_int_equal(hv_qmp_command(t->q, "cont", NULL, 1000, on_reply, t, &err), -ENOTCONN);
    err_clear(&err);
}

static void test_hv_qmp_oversized_line_closes_with_emsgsize(void **state)
{
    struct t *t = *state;
    negotiate(t);
    char *big = malloc(64 * 1024 + 1);
    memset(big, 'a', 64 * 1024);
    big[64 * 1024] = '\0';
    /* A lying peer: a huge line that never ends. */
    peer_send(t, "{\"return\": \"");
    for (int i = 0; i < 4 && !t->closed; i++) {
        ssize_t n = send(t->peer, big, 64 * 1024, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)n;
        pump_until(t, &t->closed, 1, 100);
    }
    free(big);
    pump_until(t, &t->closed, 1, 2000);
    assert_int_equal(t->closed, 1);
    assert_int_equal(t->closed_code, EMSGSIZE);
}

static void test_hv_qmp_peer_close_mid_reply_fails_pending(void **state)
{
    struct t *t = *state;
    negotiate(t);
    err_t err = ERR_INIT;
    assert_int_equal(hv_qmp_command(t->q, "quit", NULL, 1000, on_reply, t, &err), 0);
    json_decref(peer_read(t));
    peer_send(t, "{\"return\": {\"stat");
    close(t->peer);
    t->peer = -1;
    pump_until(t, &t->closed, 1, 2000);
    assert_int_equal(t->closed, 1);
    assert_int_equal(t->replies, 1);
    assert_int_equal(t->reply_code, ECONNRESET);
    t->peer = open("/dev/null", O_RDONLY); /* for teardown */
}

static void test_hv_qmp_non_qmp_greeting_rejected(void **state)
{
    struct t *t = *state;
    peer_send(t, "{\"hello\": 1}\n");
    pump_until(t, &t->closed, 1, 2000);
    assert_int_equal(t->closed, 1);
    assert_int_equal(t->closed_code, EPROTO);
    assert_int_equal(t->ready, 0);
}

static void test_hv_qmp_silent_peer_negotiation_times_out(void **state)
{
    struct t *t = *state;
    pump_until(t, &t->closed, 1, 2000);
    assert_int_equal(t->closed, 1);
    assert_int_equal(t->closed_code, ETIMEDOUT);
}

static void test_hv_qmp_command_before_ready_is_queued(void **state)
{
    struct t *t = *state;
    err_t err = ERR_INIT;
    assert_int_equal(hv_qmp_command(t->q, "query-status", NULL, 2000, on_reply, t, &err), 0);
    negotiate(t);
    json_t *req = peer_read(t);
    assert_string_equal(json_string_value(json_object_get(req, "execute")), "query-status");
    reply(t, req, "{\"status\": \"prelaunch\"}");
    json_decref(req);
    pump_until(t, &t->replies, 1, 2000);
    assert_int_equal(t->reply_code, 0);
}

static void test_hv_qmp_destroy_inside_callback_is_safe(void **state)
{
    struct t *t = *state;
    negotiate(t);
    err_t err = ERR_INIT;
    t->destroy_in_cb = true;
    assert_int_equal(hv_qmp_command(t->q, "a", NULL, 1000, on_reply, t, &err), 0);
    assert_int_equal(hv_qmp_command(t->q, "b", NULL, 1000, on_reply, t, &err), 0);
    json_t *r1 = peer_read(t);
    json_t *r2 = peer_read(t);
    char line[256];
    snprintf(
        line, sizeof(line), "{\"return\": {}, \"id\": \"%s\"}\n{\"return\": {}, \"id\": \"%s\"}\n",
        json_string_value(json_object_get(r1, "id")), json_string_value(json_object_get(r2, "id")));
    json_decref(r1);
    json_decref(r2);
    peer_send(t, line);
    pump_until(t, &t->replies, 1, 2000);
    pump_until(t, NULL, 0, 50);
    assert_null(t->q);
    assert_int_equal(t->replies, 1); /* the second is never delivered */
}

static void test_hv_qmp_ids_unique_and_unknown_ids_ignored(void **state)
{
    struct t *t = *state;
    negotiate(t);
    err_t err = ERR_INIT;
    assert_int_equal(hv_qmp_command(t->q, "a", NULL, 1000, on_reply, t, &err), 0);
    assert_int_equal(hv_qmp_command(t->q, "b", NULL, 1000, on_reply, t, &err), 0);
    json_t *r1 = peer_read(t);
    json_t *r2 = peer_read(t);
    assert_string_not_equal(json_string_value(json_object_get(r1, "id")),
                            json_string_value(json_object_get(r2, "id")));
    peer_send(t, "{\"return\": {}, \"id\": \"h999\"}\n{\"return\": {}}\n");
    reply(t, r2, "2"); /* out of order */
    reply(t, r1, "1");
    json_decref(r1);
    json_decref(r2);
    pump_until(t, &t->replies, 2, 2000);
    assert_int_equal(t->replies, 2);
    assert_string_equal(t->reply_text, "1");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hv_qmp_greeting_negotiates_capabilities, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hv_qmp_command_reply_delivered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hv_qmp_arguments_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hv_qmp_error_reply_maps_class, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hv_qmp_generic_error_is_eio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hv_qmp_event_interleaved_with_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hv_qmp_timeout_fails_command_not_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hv_qmp_garbage_line_closes_with_eproto, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hv_qmp_oversized_line_closes_with_emsgsize,
                                        setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_hv_qmp_peer_close_mid_reply_fails_pending, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hv_qmp_non_qmp_greeting_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hv_qmp_silent_peer_negotiation_times_out,
                                        setup_fast_timeout, teardown),
        cmocka_unit_test_setup_teardown(test_hv_qmp_command_before_ready_is_queued, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hv_qmp_destroy_inside_callback_is_safe, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hv_qmp_ids_unique_and_unknown_ids_ignored, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("hv_qmp", tests, NULL, NULL);
}
