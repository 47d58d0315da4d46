/* Bus and actor runtime tests: routing, unknown destination, deadlines,
 * tap, fault rules, supervision, an actor in a second process, shutdown. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <cmocka.h>

#include "actors/client.h"
#include "bus_probe.h"
#include "common/clock.h"
#include "common/log.h"

/* ---- the echo actor: answers bus.echo; "hold" mode never answers -------- */

struct echo_state {
    pthread_mutex_t mu;
    int seen;
    int hold;     /* take requests and never answer */
    int block_ms; /* block the loop this long on the first request */
    msg_t *held[64];
    int nheld;
};

static void echo_on_echo(actor_t *a, msg_t **m, void *state)
{
    struct echo_state *s = state;
    pthread_mutex_lock(&s->mu);
    s->seen++;
    int hold = s->hold, block = s->block_ms;
    s->block_ms = 0;
    pthread_mutex_unlock(&s->mu);
    if (block)
        usleep(block * 1000);
    if (hold) {
        if (s->nheld < 64)
            s->held[s->nheld++] = *m, *m = NULL;
        return;
    }
    msg_t *r = msg_new_reply(*m, MSG_BUS_ECHO);
    msg_bus_echo_t *in = (*m)->body, *out = r->body;
    out->seq = in->seq;
    msg_set_bin(&out->data, in->data.data, in->data.len);
    actor_reply(a, *m, &r);
}

static void echo_fini(actor_t *a, void *state)
{
    struct echo_state *s = state;
    for (int i = 0; i < s->nheld; i++)
        msg_destroy(&s->held[i]);
    s->nheld = 0;
}

static const actor_handler_t echo_handlers[] = {{MSG_BUS_ECHO, echo_on_echo}, {MSG_NONE, NULL}};
static const actor_def_t echo_def = {.name = "echo", .handlers = echo_handlers, .fini = echo_fini};

static const actor_handler_t probe_handlers[] = {{MSG_ACTOR_DOWN, probe_on_event},
                                                 {MSG_NONE, NULL}};
static const char *const probe_subs[] = {"actor.down", NULL};
static const actor_def_t probe_def = {
    .name = "probe", .handlers = probe_handlers, .subscribe = probe_subs, .init = probe_init};

struct fixture {
    bus_t *bus;
    actor_t *echo;
    actor_t *probe;
    struct echo_state es;
    struct probe p;
    char dir[64];
};

static struct fixture *fx_new(const char *faults, int supervise_ms, bool with_dir)
{
    struct fixture *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->es.mu, NULL);
    probe_setup(&f->p);
    err_t err = ERR_INIT;
    bus_opts_t o = {.supervise_ms = supervise_ms, .faults = faults};
    if (with_dir) {
        strcpy(f->dir, "/tmp/husk-test-bus-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        o.dir = f->dir;
    }
    if (bus_new(&o, &f->bus, &err) < 0)
        fail_msg("bus_new: %s", err_str(&err));
    return f;
}

static void fx_start(struct fixture *f, void (*script)(actor_t *, struct probe *))
{
    err_t err = ERR_INIT;
    actor_opts_t ao = {.zctx = bus_context(f->bus), .endpoint = bus_endpoint(f->bus)};
    if (actor_start(&echo_def, &f->es, &ao, &f->echo, &err) < 0)
        fail_msg("start echo: %s", err_str(&err));
    f->p.script = script;
    if (actor_start(&probe_def, &f->p, &ao, &f->probe, &err) < 0)
        fail_msg("start probe: %s", err_str(&err));
}

static void fx_free(struct fixture *f)
{
    assert_int_equal(actor_stop(&f->probe, 2000), 0);
    assert_int_equal(actor_stop(&f->echo, 2000), 0);
    bus_destroy(&f->bus);
    if (f->dir[0]) {
        struct stat st;
        char path[128];
        snprintf(path, sizeof path, "%s/bus.sock", f->dir);
        assert_int_equal(stat(path, &st), -1); /* sockets removed */
        rmdir(f->dir);
    }
    probe_cleanup(&f->p);
    pthread_mutex_destroy(&f->es.mu);
    free(f);
}

static void send_echo(actor_t *a, struct probe *p, const char *to, int timeout_ms)
{
    msg_t *m = msg_new(MSG_BUS_ECHO);
    ((msg_bus_echo_t *)m->body)->seq = 42;
    msg_set_bin(&((msg_bus_echo_t *)m->body)->data, "payload", 7);
    err_t err = ERR_INIT;
    if (actor_request(a, to, &m, timeout_ms, probe_on_reply, p, &err) < 0)
        fail_msg("request: %s", err_str(&err));
}

/* ---- routing ------------------------------------------------------------- */

static void check_echo_reply(actor_t *a, msg_t **reply, void *arg)
{
    struct probe *p = arg;
    msg_bus_echo_t *b = MSG_BODY(*reply, BUS_ECHO, bus_echo);
    pthread_mutex_lock(&p->mu);
    p->status = (*reply)->status;
    if (b && b->seq == 42 && b->data.len == 7 && !memcmp(b->data.data, "payload", 7) &&
        !strcmp((*reply)->from, "echo"))
        p->count++;
    pthread_mutex_unlock(&p->mu);
    probe_finish(p);
}

static void script_echo(actor_t *a, struct probe *p)
{
    msg_t *m = msg_new(MSG_BUS_ECHO);
    ((msg_bus_echo_t *)m->body)->seq = 42;
    msg_set_bin(&((msg_bus_echo_t *)m->body)->data, "payload", 7);
    err_t err = ERR_INIT;
    actor_request(a, "echo", &m, 2000, check_echo_reply, p, &err);
}

static void test_bus_request_routed_by_name_gets_reply(void **s)
{
    struct fixture *f = fx_new(NULL, -1, false);
    fx_start(f, script_echo);
    assert_int_equal(probe_wait(&f->p, 1, 3000), 1);
    assert_int_equal(f->p.status, 0);
    assert_int_equal(f->p.count, 1);
    fx_free(f);
}

static void script_unknown(actor_t *a, struct probe *p)
{
    send_echo(a, p, "nobody", 2000);
}

static void test_bus_unknown_destination_gets_clear_error(void **s)
{
    struct fixture *f = fx_new(NULL, -1, false);
    fx_start(f, script_unknown);
    assert_int_equal(probe_wait(&f->p, 1, 3000), 1);
    assert_int_equal(f->p.status, EHOSTUNREACH);
    assert_non_null(strstr(f->p.text, "no actor named 'nobody'"));
    assert_true(f->p.elapsed_ms < 1000); /* answered, not timed out */
    fx_free(f);
}

static void script_deadline(actor_t *a, struct probe *p)
{
    send_echo(a, p, "echo", 150);
}

static void test_bus_request_deadline_yields_timeout_error(void **s)
{
    struct fixture *f = fx_new(NULL, -1, false);
    f->es.hold = 1;
    fx_start(f, script_deadline);
    assert_int_equal(probe_wait(&f->p, 1, 3000), 1);
    assert_int_equal(f->p.status, ETIMEDOUT);
    assert_non_null(strstr(f->p.text, "echo did not answer bus.echo within 150 ms"));
    assert_true(f->p.elapsed_ms >= 140);
    fx_free(f);
}

static void script_no_handler(actor_t *a, struct probe *p)
{
    msg_t *m = msg_new(MSG_BUS_LIST);
    err_t err = ERR_INIT;
    actor_request(a, "echo", &m, 2000, probe_on_reply, p, &err);
}

static void test_actor_unhandled_type_answered_with_eproto(void **s)
{
    struct fixture *f = fx_new(NULL, -1, false);
    fx_start(f, script_no_handler);
    assert_int_equal(probe_wait(&f->p, 1, 3000), 1);
    assert_int_equal(f->p.status, EPROTO);
    assert_non_null(strstr(f->p.text, "does not handle bus.list"));
    fx_free(f);
}

/* ---- tap ----------------------------------------------------------------- */

static void test_bus_tap_receives_exact_copies(void **s)
{
    struct fixture *f = fx_new(NULL, -1, false);
    void *sub = zmq_socket(bus_context(f->bus), ZMQ_SUB);
    int zero = 0, tmo = 2000;
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "bus.echo", 8);
    assert_int_equal(zmq_connect(sub, bus_tap_endpoint(f->bus)), 0);
    usleep(50000); /* the subscription travels to the XPUB */
    fx_start(f, script_echo);
    assert_int_equal(probe_wait(&f->p, 1, 3000), 1);
    /* request then reply, each [type][from][to][env][note] */
    const char *want_from[2] = {"probe", "echo"}, *want_to[2] = {"echo", "probe"};
    uint64_t req_id = 0;
    for (int i = 0; i < 2; i++) {
        char type[64] = {0}, from[64] = {0}, to[64] = {0}, note[64] = {0};
        assert_true(zmq_recv(sub, type, sizeof type - 1, 0) > 0);
        assert_true(zmq_recv(sub, from, sizeof from - 1, 0) > 0);
        assert_true(zmq_recv(sub, to, sizeof to - 1, 0) > 0);
        zmq_msg_t env;
        zmq_msg_init(&env);
        assert_true(zmq_msg_recv(&env, sub, 0) > 0);
        assert_true(zmq_recv(sub, note, sizeof note - 1, 0) >= 0);
        assert_string_equal(type, "bus.echo");
        assert_string_equal(from, want_from[i]);
        assert_string_equal(to, want_to[i]);
        assert_string_equal(note, "");
        msg_t *m = NULL;
        err_t err = ERR_INIT;
        assert_int_equal(msg_decode(zmq_msg_data(&env), zmq_msg_size(&env), &m, &err), 0);
        msg_bus_echo_t *b = m->body;
        assert_int_equal(b->seq, 42);
        assert_memory_equal(b->data.data, "payload", 7);
        if (i == 0)
            req_id = m->id;
        else
            assert_true(m->reply_to == req_id);
        msg_destroy(&m);
        zmq_msg_close(&env);
    }
    zmq_close(sub);
    fx_free(f);
}

/* ---- faults ---------------------------------------------------------------- */

static void test_fault_drop_makes_request_time_out(void **s)
{
    struct fixture *f = fx_new("drop type=bus.echo to=echo", -1, false);
    f->p.script = NULL;
    fx_start(f, script_deadline);
    assert_int_equal(probe_wait(&f->p, 1, 3000), 1);
    assert_int_equal(f->p.status, ETIMEDOUT);
    assert_int_equal(f->es.seen, 0);
    fx_free(f);
}

static void test_fault_delay_holds_message(void **s)
{
    struct fixture *f = fx_new("delay:300 type=bus.echo from=probe count=1", -1, false);
    fx_start(f, script_echo);
    assert_int_equal(probe_wait(&f->p, 1, 3000), 1);
    assert_int_equal(f->p.status, 0);
    assert_int_equal(f->p.count, 1);
    assert_true(probe_ms_since(&f->p.t0) >= 290);
    fx_free(f);
}

static void test_fault_duplicate_delivers_twice(void **s)
{
    struct fixture *f = fx_new("duplicate type=bus.echo to=echo", -1, false);
    fx_start(f, script_echo);
    assert_int_equal(probe_wait(&f->p, 1, 3000), 1);
    usleep(100000);
    pthread_mutex_lock(&f->es.mu);
    assert_int_equal(f->es.seen, 2); /* the second reply is dropped as a duplicate */
    pthread_mutex_unlock(&f->es.mu);
    assert_int_equal(f->p.done, 1);
    fx_free(f);
}

static void test_fault_corrupt_gives_error_or_timeout_never_crash(void **s)
{
    for (int seed = 1; seed <= 8; seed++) {
        char rule[96];
        snprintf(rule, sizeof rule, "corrupt:3 type=bus.echo to=echo seed=%d", seed);
        struct fixture *f = fx_new(rule, -1, false);
        fx_start(f, script_deadline);
        assert_int_equal(probe_wait(&f->p, 1, 3000), 1);
        /* a flipped body is either still valid (answered), rejected by the
         * receiver (EBADMSG) or unreadable enough that the request times out */
        assert_true(f->p.status == 0 || f->p.status == EBADMSG || f->p.status == ETIMEDOUT);
        fx_free(f);
    }
}

static void script_many(actor_t *a, struct probe *p)
{
    for (int i = 0; i < 200; i++)
        send_echo(a, p, "echo", 3000);
}

static void test_fault_count_and_probability_limit_hits(void **s)
{
    struct fixture *f = fx_new("drop type=bus.echo to=echo count=5", -1, false);
    fx_start(f, script_many);
    assert_int_equal(probe_wait(&f->p, 200, 6000), 200);
    pthread_mutex_lock(&f->es.mu);
    assert_int_equal(f->es.seen, 195);
    pthread_mutex_unlock(&f->es.mu);
    fx_free(f);

    f = fx_new("drop type=bus.echo to=echo prob=0.5 seed=7", -1, false);
    fx_start(f, script_many);
    probe_wait(&f->p, 200, 6000);
    pthread_mutex_lock(&f->es.mu);
    int seen = f->es.seen;
    pthread_mutex_unlock(&f->es.mu);
    assert_true(seen > 60 && seen < 140);
    fx_free(f);
}

static void on_fault_state(actor_t *a, msg_t **reply, void *arg)
{
    struct probe *p = arg;
    msg_bus_fault_state_t *st = MSG_BODY(*reply, BUS_FAULT_STATE, bus_fault_state);
    pthread_mutex_lock(&p->mu);
    p->status = (*reply)->status;
    snprintf(p->text, sizeof p->text, "%s",
             st && st->rules.n ? st->rules.v[0]
                               : ((*reply)->status_text ? (*reply)->status_text : ""));
    p->count = st && st->hits.n ? (int)st->hits.v[0] : -1;
    pthread_mutex_unlock(&p->mu);
    probe_finish(p);
}

static void after_drop(actor_t *a, msg_t **reply, void *arg)
{
    msg_t *m = msg_new(MSG_BUS_FAULT_LIST);
    err_t err = ERR_INIT;
    actor_request(a, "bus", &m, 1000, on_fault_state, arg, &err);
}

static void on_rules_set(actor_t *a, msg_t **reply, void *arg)
{
    struct probe *p = arg;
    msg_t *m = msg_new(MSG_BUS_ECHO);
    err_t err = ERR_INIT;
    actor_request(a, "echo", &m, 100, after_drop, p, &err);
}

static void script_set_faults(actor_t *a, struct probe *p)
{
    msg_t *m = msg_new(MSG_BUS_FAULT_SET);
    msg_set_str(&((msg_bus_fault_set_t *)m->body)->rules, (const char *)p->user);
    err_t err = ERR_INIT;
    actor_request(a, "bus", &m, 1000, (const char *)p->user == NULL ? probe_on_reply : on_rules_set,
                  p, &err);
}

static void script_bad_faults(actor_t *a, struct probe *p)
{
    msg_t *m = msg_new(MSG_BUS_FAULT_SET);
    msg_set_str(&((msg_bus_fault_set_t *)m->body)->rules, "explode type=x");
    err_t err = ERR_INIT;
    actor_request(a, "bus", &m, 1000, probe_on_reply, p, &err);
}

static void test_fault_rules_set_at_runtime_and_listed_with_hits(void **s)
{
    struct fixture *f = fx_new(NULL, -1, false);
    f->p.user = "drop type=bus.echo";
    fx_start(f, script_set_faults);
    assert_int_equal(probe_wait(&f->p, 1, 3000), 1);
    assert_int_equal(f->p.status, 0);
    assert_string_equal(f->p.text, "drop type=bus.echo from=* to=*");
    assert_int_equal(f->p.count, 1);
    fx_free(f);

    f = fx_new(NULL, -1, false);
    fx_start(f, script_bad_faults);
    assert_int_equal(probe_wait(&f->p, 1, 3000), 1);
    assert_int_equal(f->p.status, EINVAL);
    assert_non_null(strstr(f->p.text, "unknown action 'explode'"));
    fx_free(f);
}

static void test_bus_bad_fault_env_fails_start(void **s)
{
    setenv("HUSK_FAULTS", "delay type=x", 1);
    bus_t *b = NULL;
    err_t err = ERR_INIT;
    assert_true(bus_new(NULL, &b, &err) < 0);
    assert_non_null(strstr(err_str(&err), "HUSK_FAULTS"));
    assert_non_null(strstr(err_str(&err), "delay needs a duration"));
    err_clear(&err);
    unsetenv("HUSK_FAULTS");
}

/* ---- supervision ----------------------------------------------------------- */

static void script_nothing(actor_t *a, struct probe *p)
{
}

static void test_actor_stop_is_reported_as_actor_down(void **s)
{
    struct fixture *f = fx_new(NULL, 100, false);
    fx_start(f, script_nothing);
    assert_int_equal(actor_stop(&f->echo, 2000), 0);
    for (int i = 0; i < 50 && f->p.events == 0; i++)
        usleep(20000);
    pthread_mutex_lock(&f->p.mu);
    assert_int_equal(f->p.events, 1);
    assert_string_equal(f->p.event_names[0], "echo");
    assert_non_null(strstr(f->p.event_reasons[0], "stopped: stop requested"));
    pthread_mutex_unlock(&f->p.mu);
    fx_free(f);
}

static void script_block_echo(actor_t *a, struct probe *p)
{
    send_echo(a, p, "echo", 3000);
}

static void test_actor_that_stops_answering_is_reported_down(void **s)
{
    struct fixture *f = fx_new(NULL, 100, false);
    f->es.block_ms = 800; /* the echo actor's loop is stuck for 800 ms */
    fx_start(f, script_block_echo);
    for (int i = 0; i < 100 && f->p.events == 0; i++)
        usleep(20000);
    pthread_mutex_lock(&f->p.mu);
    assert_int_equal(f->p.events, 1);
    assert_string_equal(f->p.event_names[0], "echo");
    assert_non_null(strstr(f->p.event_reasons[0], "stopped answering"));
    pthread_mutex_unlock(&f->p.mu);
    probe_wait(&f->p, 1, 3000);
    fx_free(f);
}

/* ---- an actor in another process -------------------------------------------- */

static char helper_path[512];

/* The remote process may not have joined yet: retry while unreachable. */
static void remote_reply(actor_t *a, msg_t **reply, void *arg);

static void remote_send(actor_t *a, void *arg)
{
    msg_t *m = msg_new(MSG_BUS_ECHO);
    err_t err = ERR_INIT;
    actor_request(a, "remote", &m, 3000, remote_reply, arg, &err);
}

static void remote_reply(actor_t *a, msg_t **reply, void *arg)
{
    struct probe *p = arg;
    if ((*reply)->status == EHOSTUNREACH && p->count++ < 200) {
        actor_timer(a, 20, false, remote_send, p);
        return;
    }
    probe_on_reply(a, reply, arg);
}

static void script_remote_echo(actor_t *a, struct probe *p)
{
    remote_send(a, p);
}

static void test_actor_in_second_process_over_ipc(void **s)
{
    struct fixture *f = fx_new(NULL, 100, true);
    pid_t pid = fork();
    if (pid == 0) {
        execl(helper_path, helper_path, bus_ipc_endpoint(f->bus), "remote", (char *)NULL);
        _exit(127);
    }
    assert_true(pid > 0);
    fx_start(f, script_nothing);
    /* ask it through the bus from a second probe */
    struct probe p2;
    probe_setup(&p2);
    p2.script = script_remote_echo;
    actor_def_t d2 = probe_def;
    d2.name = "probe2";
    d2.subscribe = NULL;
    actor_t *a2 = NULL;
    err_t err = ERR_INIT;
    actor_opts_t ao = {.zctx = bus_context(f->bus), .endpoint = bus_endpoint(f->bus)};
    assert_int_equal(actor_start(&d2, &p2, &ao, &a2, &err), 0);
    int done = probe_wait(&p2, 1, 6000);
    if (done != 1 || p2.status != 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("remote echo: done=%d status=%d %s", done, p2.status, p2.text);
    }
    /* kill -9 the other process: it stops answering, the bus says so */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    for (int i = 0; i < 100 && f->p.events == 0; i++)
        usleep(20000);
    pthread_mutex_lock(&f->p.mu);
    assert_true(f->p.events >= 1);
    assert_string_equal(f->p.event_names[0], "remote");
    assert_non_null(strstr(f->p.event_reasons[0], "stopped answering"));
    pthread_mutex_unlock(&f->p.mu);
    actor_stop(&a2, 2000);
    probe_cleanup(&p2);
    fx_free(f);
}

static void test_actor_start_fails_cleanly_without_broker(void **s)
{
    actor_t *a = NULL;
    err_t err = ERR_INIT;
    actor_opts_t ao = {.endpoint = "ipc:///tmp/husk-no-such-bus.sock", .start_timeout_ms = 200};
    struct probe p;
    probe_setup(&p);
    assert_true(actor_start(&probe_def, &p, &ao, &a, &err) < 0);
    assert_null(a);
    assert_non_null(strstr(err_str(&err), "did not answer bus.hello"));
    err_clear(&err);
    probe_cleanup(&p);
}

static int failing_init(actor_t *a, void *state, err_t *err)
{
    return err_make(err, EACCES, "no access to the thing");
}

static void test_actor_init_failure_reported_by_start(void **s)
{
    struct fixture *f = fx_new(NULL, -1, false);
    actor_def_t d = {.name = "bad", .init = failing_init};
    actor_t *a = NULL;
    err_t err = ERR_INIT;
    actor_opts_t ao = {.zctx = bus_context(f->bus), .endpoint = bus_endpoint(f->bus)};
    assert_int_equal(actor_start(&d, NULL, &ao, &a, &err), -EACCES);
    assert_string_equal(err_str(&err), "actor bad: init: no access to the thing");
    err_clear(&err);
    bus_destroy(&f->bus);
    probe_cleanup(&f->p);
    pthread_mutex_destroy(&f->es.mu);
    free(f);
}

static void test_client_call_over_ipc_reply_error_and_timeout(void **s)
{
    struct fixture *f = fx_new(NULL, -1, true);
    fx_start(f, script_nothing);
    bus_client_t *c = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(bus_client_new(bus_ipc_endpoint(f->bus), "cli-test", &c, &err), 0);
    msg_t *m = msg_new(MSG_BUS_ECHO), *reply = NULL;
    ((msg_bus_echo_t *)m->body)->seq = 9;
    assert_int_equal(bus_client_call(c, "echo", &m, 2000, &reply, &err), 0);
    assert_null(m);
    assert_int_equal(MSG_BODY(reply, BUS_ECHO, bus_echo)->seq, 9);
    msg_destroy(&reply);
    m = msg_new(MSG_BUS_ECHO);
    assert_int_equal(bus_client_call(c, "ghost", &m, 2000, &reply, &err), -EHOSTUNREACH);
    assert_non_null(strstr(err_str(&err), "no actor named 'ghost'"));
    err_clear(&err);
    f->es.hold = 1;
    m = msg_new(MSG_BUS_ECHO);
    assert_int_equal(bus_client_call(c, "echo", &m, 150, &reply, &err), -ETIMEDOUT);
    assert_string_equal(err_str(&err), "echo did not answer bus.echo within 150 ms");
    err_clear(&err);
    m = msg_new(MSG_BUS_LIST);
    assert_int_equal(bus_client_call(c, "bus", &m, 2000, &reply, &err), 0);
    msg_bus_actors_t *names = MSG_BODY(reply, BUS_ACTORS, bus_actors);
    assert_int_equal(names->names.n, 2); /* echo and probe; clients are not registered */
    msg_destroy(&reply);
    bus_client_destroy(&c);
    assert_null(c);
    fx_free(f);
}

/* A held bus.sock appears only when the owner says all is up, and then
 * carries requests to actors started before. */
static void test_held_ipc_socket_appears_on_open(void **s)
{
    (void)s;
    struct fixture *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->es.mu, NULL);
    probe_setup(&f->p);
    strcpy(f->dir, "/tmp/husk-test-bus-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    err_t err = ERR_INIT;
    bus_opts_t o = {.supervise_ms = -1, .dir = f->dir, .hold_ipc = true};
    assert_int_equal(bus_new(&o, &f->bus, &err), 0);
    char path[128];
    struct stat st;
    snprintf(path, sizeof path, "%s/bus.sock", f->dir);
    assert_int_equal(stat(path, &st), -1);
    fx_start(f, script_nothing);
    assert_int_equal(bus_open_ipc(f->bus, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(bus_open_ipc(f->bus, &err), 0); /* once is enough */
    bus_client_t *c = NULL;
    assert_int_equal(bus_client_new(bus_ipc_endpoint(f->bus), "cli-held", &c, &err), 0);
    msg_t *m = msg_new(MSG_BUS_ECHO), *reply = NULL;
    ((msg_bus_echo_t *)m->body)->seq = 4;
    assert_int_equal(bus_client_call(c, "echo", &m, 2000, &reply, &err), 0);
    assert_int_equal(MSG_BODY(reply, BUS_ECHO, bus_echo)->seq, 4);
    msg_destroy(&reply);
    bus_client_destroy(&c);
    fx_free(f); /* checks that bus.sock is gone */
}

/* A client that connects under the name of one the broker still knows
 * takes the route over instead of being ignored. */
static void test_reconnect_under_same_name_takes_route_over(void **s)
{
    (void)s;
    struct fixture *f = fx_new(NULL, -1, true);
    fx_start(f, script_nothing);
    err_t err = ERR_INIT;
    bus_client_t *a = NULL, *b = NULL;
    assert_int_equal(bus_client_new(bus_ipc_endpoint(f->bus), "cli-same", &a, &err), 0);
    msg_t *m = msg_new(MSG_BUS_ECHO), *reply = NULL;
    assert_int_equal(bus_client_call(a, "echo", &m, 2000, &reply, &err), 0);
    msg_destroy(&reply);
    assert_int_equal(bus_client_new(bus_ipc_endpoint(f->bus), "cli-same", &b, &err), 0);
    m = msg_new(MSG_BUS_ECHO);
    ((msg_bus_echo_t *)m->body)->seq = 5;
    assert_int_equal(bus_client_call(b, "echo", &m, 2000, &reply, &err), 0);
    assert_int_equal(MSG_BODY(reply, BUS_ECHO, bus_echo)->seq, 5);
    msg_destroy(&reply);
    bus_client_destroy(&b);
    bus_client_destroy(&a);
    fx_free(f);
}

struct call_arg {
    const char *ep;
    int rc;
    int64_t ms;
    char text[256];
};

static void *call_held_echo(void *arg)
{
    struct call_arg *ca = arg;
    bus_client_t *c = NULL;
    err_t err = ERR_INIT;
    if (bus_client_new(ca->ep, "cli-dying", &c, &err) < 0) {
        ca->rc = -999;
        return NULL;
    }
    int64_t t0 = clock_mono_ms();
    msg_t *m = msg_new(MSG_BUS_ECHO), *reply = NULL;
    ca->rc = bus_client_call(c, "echo", &m, 30000, &reply, &err);
    ca->ms = clock_mono_ms() - t0;
    snprintf(ca->text, sizeof ca->text, "%s", err_str(&err));
    err_clear(&err);
    msg_destroy(&m);
    msg_destroy(&reply);
    bus_client_destroy(&c);
    return NULL;
}

/* A call whose broker goes away fails once the broker stops answering
 * pings, long before its own 30 s deadline. */
static void test_call_fails_soon_when_broker_dies(void **s)
{
    (void)s;
    struct fixture *f = fx_new(NULL, -1, true);
    fx_start(f, script_nothing);
    f->es.hold = 1;
    char ep[256];
    snprintf(ep, sizeof ep, "%s", bus_ipc_endpoint(f->bus));
    struct call_arg ca = {.ep = ep};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, call_held_echo, &ca), 0);
    usleep(2500 * 1000); /* the first ping is answered: the broker lives */
    assert_int_equal(actor_stop(&f->probe, 2000), 0);
    assert_int_equal(actor_stop(&f->echo, 2000), 0);
    bus_destroy(&f->bus);
    pthread_join(th, NULL);
    assert_int_equal(ca.rc, -EHOSTDOWN);
    assert_non_null(strstr(ca.text, "its daemon is gone"));
    assert_true(ca.ms < 15000);
    rmdir(f->dir);
    probe_cleanup(&f->p);
    pthread_mutex_destroy(&f->es.mu);
    free(f);
}

int main(int argc, char **argv)
{
    /* the ipc peer helper sits in ../tests/helpers relative to this binary */
    char self[400];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = 0;
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = 0;
    snprintf(helper_path, sizeof helper_path, "%s/helpers/bus_peer", self);
    signal(SIGPIPE, SIG_IGN);
    log_setup(2, LOG_FMT_LOGFMT, LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_request_routed_by_name_gets_reply),
        cmocka_unit_test(test_bus_unknown_destination_gets_clear_error),
        cmocka_unit_test(test_bus_request_deadline_yields_timeout_error),
        cmocka_unit_test(test_actor_unhandled_type_answered_with_eproto),
        cmocka_unit_test(test_bus_tap_receives_exact_copies),
        cmocka_unit_test(test_fault_drop_makes_request_time_out),
        cmocka_unit_test(test_fault_delay_holds_message),
        cmocka_unit_test(test_fault_duplicate_delivers_twice),
        cmocka_unit_test(test_fault_corrupt_gives_error_or_timeout_never_crash),
        cmocka_unit_test(test_fault_count_and_probability_limit_hits),
        cmocka_unit_test(test_fault_rules_set_at_runtime_and_listed_with_hits),
        cmocka_unit_test(test_bus_bad_fault_env_fails_start),
        cmocka_unit_test(test_actor_stop_is_reported_as_actor_down),
        cmocka_unit_test(test_actor_that_stops_answering_is_reported_down),
        cmocka_unit_test(test_actor_in_second_process_over_ipc),
        cmocka_unit_test(test_actor_start_fails_cleanly_without_broker),
        cmocka_unit_test(test_actor_init_failure_reported_by_start),
        cmocka_unit_test(test_client_call_over_ipc_reply_error_and_timeout),
        cmocka_unit_test(test_held_ipc_socket_appears_on_open),
        cmocka_unit_test(test_reconnect_under_same_name_takes_route_over),
        cmocka_unit_test(test_call_fails_soon_when_broker_dies),
    };
    return cmocka_run_group_tests_name("bus", tests, NULL, NULL);
}
