/* Bus benchmark: request/reply round trip through the broker between two
 * actors (p50, p99) and one-way throughput, for 64 B and 4 KiB bodies, each
 * beside the same measurement over a bare libzmq inproc PAIR pair run in
 * the same process.  Figures are printed, not asserted. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "actors/actor.h"
#include "bus/bus.h"
#include "common/log.h"

static int RTT_N = 20000;
static int TPUT_N = 200000;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    return v[(int)(p * (n - 1))];
}

/* ---- the bus side ------------------------------------------------------ */

struct bench {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    size_t size;
    int i, n;
    double *lat;
    double t_send;
    long received;
    long expect;
    double t_first, t_last;
};

static void on_echo(actor_t *a, msg_t **m, void *state)
{
    msg_t *r = msg_new_reply(*m, MSG_BUS_ECHO);
    msg_bus_echo_t *in = (*m)->body, *out = r->body;
    /* hand the body back without copying */
    out->data = in->data;
    in->data.data = NULL;
    in->data.len = 0;
    actor_reply(a, *m, &r);
}

static void on_sink(actor_t *a, msg_t **m, void *state)
{
    struct bench *b = state;
    if (++b->received == b->expect) {
        b->t_last = now_us();
        pthread_mutex_lock(&b->mu);
        b->done = 1;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
    }
}

static void send_one(actor_t *a, struct bench *b);

static void on_reply(actor_t *a, msg_t **reply, void *arg)
{
    struct bench *b = arg;
    b->lat[b->i++] = now_us() - b->t_send;
    if (b->i < b->n) {
        send_one(a, b);
        return;
    }
    pthread_mutex_lock(&b->mu);
    b->done = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void send_one(actor_t *a, struct bench *b)
{
    msg_t *m = msg_new(MSG_BUS_ECHO);
    msg_bus_echo_t *body = m->body;
    body->data.data = calloc(1, b->size);
    body->data.len = b->size;
    err_t err = ERR_INIT;
    b->t_send = now_us();
    if (actor_request(a, "ponger", &m, 5000, on_reply, b, &err) < 0) {
        fprintf(stderr, "request: %s\n", err_str(&err));
        exit(1);
    }
}

static void start_rtt(actor_t *a, void *arg)
{
    send_one(a, arg);
}

static void start_flood(actor_t *a, void *arg)
{
    struct bench *b = arg;
    b->t_first = now_us();
    for (long i = 0; i < b->expect; i++) {
        msg_t *m = msg_new(MSG_BUS_ECHO);
        msg_bus_echo_t *body = m->body;
        body->data.data = calloc(1, b->size);
        body->data.len = b->size;
        err_t err = ERR_INIT;
        if (actor_send(a, "sink", &m, &err) < 0) {
            fprintf(stderr, "send: %s\n", err_str(&err));
            exit(1);
        }
    }
}

static void wait_done(struct bench *b)
{
    pthread_mutex_lock(&b->mu);
    while (!b->done)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

static const actor_handler_t pong_h[] = {{MSG_BUS_ECHO, on_echo}, {MSG_NONE, NULL}};
static const actor_handler_t sink_h[] = {{MSG_BUS_ECHO, on_sink}, {MSG_NONE, NULL}};

static int rtt_init(actor_t *a, void *state, err_t *err)
{
    actor_timer(a, 0, false, start_rtt, state);
    return 0;
}

static int flood_init(actor_t *a, void *state, err_t *err)
{
    actor_timer(a, 0, false, start_flood, state);
    return 0;
}

static bus_t *new_bus(void)
{
    bus_t *bus;
    err_t err = ERR_INIT;
    bus_opts_t bo = {.supervise_ms = -1};
    if (bus_new(&bo, &bus, &err) < 0) {
        fprintf(stderr, "bus: %s\n", err_str(&err));
        exit(1);
    }
    return bus;
}

static actor_t *start(bus_t *bus, const actor_def_t *d, void *state)
{
    actor_t *a;
    err_t err = ERR_INIT;
    actor_opts_t ao = {.zctx = bus_context(bus), .endpoint = bus_endpoint(bus)};
    if (actor_start(d, state, &ao, &a, &err) < 0) {
        fprintf(stderr, "start %s: %s\n", d->name, err_str(&err));
        exit(1);
    }
    return a;
}

static void bus_rtt(size_t size, double *p50, double *p99)
{
    bus_t *bus = new_bus();
    struct bench b = {.size = size, .n = RTT_N};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    b.lat = calloc(RTT_N, sizeof(double));
    actor_def_t pong = {.name = "ponger", .handlers = pong_h};
    actor_def_t ping = {.name = "pinger", .init = rtt_init};
    actor_t *pa = start(bus, &pong, NULL);
    actor_t *pb = start(bus, &ping, &b);
    wait_done(&b);
    actor_stop(&pb, 1000);
    actor_stop(&pa, 1000);
    bus_destroy(&bus);
    qsort(b.lat, RTT_N, sizeof(double), cmp_double);
    *p50 = pct(b.lat, RTT_N, 0.5);
    *p99 = pct(b.lat, RTT_N, 0.99);
    free(b.lat);
}

static double bus_tput(size_t size)
{
    bus_t *bus = new_bus();
    struct bench b = {.size = size, .expect = TPUT_N};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    actor_def_t sink = {.name = "sink", .handlers = sink_h};
    actor_def_t src = {.name = "source", .init = flood_init};
    actor_t *sa = start(bus, &sink, &b);
    actor_t *so = start(bus, &src, &b);
    wait_done(&b);
    double secs = (b.t_last - b.t_first) / 1e6;
    actor_stop(&so, 1000);
    actor_stop(&sa, 1000);
    bus_destroy(&bus);
    return TPUT_N / secs;
}

/* ---- the bare PAIR baseline ------------------------------------------- */

struct pair_peer {
    void *ctx;
    int n;
    size_t size;
    int echo;
};

static void *pair_thread(void *arg)
{
    struct pair_peer *p = arg;
    void *s = zmq_socket(p->ctx, ZMQ_PAIR);
    int zero = 0, hwm = 100000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_connect(s, "inproc://bench-pair");
    char *buf = malloc(p->size + 1);
    for (int i = 0; i < p->n; i++) {
        int n = zmq_recv(s, buf, p->size + 1, 0);
        if (p->echo)
            zmq_send(s, buf, (size_t)n, 0);
    }
    free(buf);
    zmq_close(s);
    return NULL;
}

static void pair_run(size_t size, int echo, int n, double *p50, double *p99, double *rate)
{
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_PAIR);
    int zero = 0, hwm = 100000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_bind(s, "inproc://bench-pair");
    struct pair_peer peer = {ctx, n, size, echo};
    pthread_t t;
    pthread_create(&t, NULL, pair_thread, &peer);
    char *buf = calloc(1, size + 1);
    double *lat = calloc(n, sizeof(double));
    double t0 = now_us();
    for (int i = 0; i < n; i++) {
        double ts = now_us();
        zmq_send(s, buf, size, 0);
        if (echo) {
            zmq_recv(s, buf, size + 1, 0);
            lat[i] = now_us() - ts;
        }
    }
    pthread_join(t, NULL);
    double t1 = now_us();
    if (echo) {
        qsort(lat, n, sizeof(double), cmp_double);
        *p50 = pct(lat, n, 0.5);
        *p99 = pct(lat, n, 0.99);
    } else {
        *rate = n / ((t1 - t0) / 1e6);
    }
    free(lat);
    free(buf);
    zmq_close(s);
    zmq_ctx_term(ctx);
}

int main(int argc, char **argv)
{
    if (getenv("BENCH_QUICK")) {
        RTT_N = 2000;
        TPUT_N = 20000;
    }
    log_setup(2, LOG_FMT_LOGFMT, LOG_ERROR);
    size_t sizes[2] = {64, 4096};
    printf("bus benchmark: %d round trips, %d one-way messages per size (2-core host)\n", RTT_N,
           TPUT_N);
    for (int k = 0; k < 2; k++) {
        double b50, b99, p50, p99, dummy, brate, prate;
        bus_rtt(sizes[k], &b50, &b99);
        pair_run(sizes[k], 1, RTT_N, &p50, &p99, &dummy);
        brate = bus_tput(sizes[k]);
        pair_run(sizes[k], 0, TPUT_N, &dummy, &dummy, &prate);
        printf("  %4zu B  round trip via broker  p50 %7.1f us  p99 %7.1f us | bare PAIR p50 %6.1f "
               "us p99 %6.1f us | ratio p50 %.2fx\n",
               sizes[k], b50, b99, p50, p99, b50 / p50);
        printf("  %4zu B  one-way via broker    %9.0f msg/s            | bare PAIR %9.0f msg/s   "
               "      | ratio %.2fx\n",
               sizes[k], brate, prate, prate / brate);
    }
    printf("aims: round trip p50 <= 30 us and <= 3x bare PAIR; >= 300k msg/s at 64 B\n");
    return 0;
}
