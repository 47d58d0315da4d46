#include "common/clock.h"
#include "actors/client.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bus/bus.h"

#define QUEUE_MAX 4096

struct bus_client {
    msg_t *queue[QUEUE_MAX]; /* received while waiting for a reply */
    size_t qhead, qlen;
    void *ctx;
    void *sock;
    char name[MSG_NAME_MAX];
    char endpoint[256];
    uint64_t next_id;
};

int bus_client_new(const char *endpoint, const char *name, bus_client_t **out, err_t *err)
{
    bus_client_t *c = calloc(1, sizeof *c);
    if (!c)
        return err_make(err, ENOMEM, "bus client: out of memory");
    if (name)
        snprintf(c->name, sizeof c->name, "%s", name);
    else
        snprintf(c->name, sizeof c->name, "client-%d", (int)getpid());
    snprintf(c->endpoint, sizeof c->endpoint, "%s", endpoint);
    /* ids are unique per sender; start from the clock so a reused name
     * cannot be mistaken for its predecessor's late replies */
    c->next_id = (uint64_t)clock_mono_ms() << 20;
    c->ctx = zmq_ctx_new();
    if (!c->ctx) {
        free(c);
        return err_make(err, errno, "bus client: zmq_ctx_new: %s", zmq_strerror(errno));
    }
    zmq_ctx_set(c->ctx, ZMQ_BLOCKY, 0);
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    int rc = 0;
    if (!c->sock) {
        rc = err_make(err, errno, "bus client: zmq_socket: %s", zmq_strerror(errno));
    } else {
        bus_sockopts(c->sock);
        zmq_setsockopt(c->sock, ZMQ_ROUTING_ID, c->name, strlen(c->name));
        if (zmq_connect(c->sock, endpoint) < 0)
            rc = err_make(err, errno, "bus client: connect %s: %s", endpoint, zmq_strerror(errno));
    }
    if (rc < 0) {
        bus_client_destroy(&c);
        return rc;
    }
    *out = c;
    return 0;
}

void bus_client_destroy(bus_client_t **cp)
{
    if (!cp || !*cp)
        return;
    bus_client_t *c = *cp;
    while (c->qlen) {
        msg_destroy(&c->queue[c->qhead]);
        c->qhead = (c->qhead + 1) % QUEUE_MAX;
        c->qlen--;
    }
    if (c->sock)
        zmq_close(c->sock);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    free(c);
    *cp = NULL;
}

int bus_client_send(bus_client_t *c, const char *to, msg_t **mp, err_t *err)
{
    msg_t *m = *mp;
    m->id = ++c->next_id;
    snprintf(m->from, sizeof m->from, "%s", c->name);
    snprintf(m->to, sizeof m->to, "%s", to);
    m->ts_ns = clock_real_ns();
    uint8_t *buf;
    size_t len;
    int rc = msg_encode(m, &buf, &len, err);
    if (rc == 0) {
        const char *type = msg_type_name(m->type);
        if (zmq_send(c->sock, to, strlen(to), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
            zmq_send(c->sock, type, strlen(type), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
            zmq_send(c->sock, buf, len, ZMQ_DONTWAIT) < 0)
            rc = err_make(err, errno, "bus client: send %s to %s: %s", type, to,
                          zmq_strerror(errno));
        free(buf);
    }
    msg_destroy(mp); /* its id stays in c->next_id for the caller's matching */
    return rc;
}

/* Keeps a message that arrived while a call waited (oldest dropped when full). */
static void enqueue(bus_client_t *c, msg_t **m)
{
    if (c->qlen == QUEUE_MAX) {
        msg_destroy(&c->queue[c->qhead]);
        c->qhead = (c->qhead + 1) % QUEUE_MAX;
        c->qlen--;
    }
    c->queue[(c->qhead + c->qlen) % QUEUE_MAX] = *m;
    c->qlen++;
    *m = NULL;
}

static int recv_wire(bus_client_t *c, int timeout_ms, msg_t **out, err_t *err);

int bus_client_recv(bus_client_t *c, int timeout_ms, msg_t **out, err_t *err)
{
    if (c->qlen) {
        *out = c->queue[c->qhead];
        c->queue[c->qhead] = NULL;
        c->qhead = (c->qhead + 1) % QUEUE_MAX;
        c->qlen--;
        return 0;
    }
    return recv_wire(c, timeout_ms, out, err);
}

static int recv_wire(bus_client_t *c, int timeout_ms, msg_t **out, err_t *err)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    for (;;) {
        long left = (long)(deadline - clock_mono_ms());
        if (left < 0)
            left = 0;
        zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&it, 1, left);
        if (n < 0 && errno == EINTR)
            return err_make(err, EINTR, "bus client: interrupted");
        if (n <= 0)
            return err_make(err, ETIMEDOUT, "bus client: nothing received within %d ms",
                            timeout_ms);
        zmq_msg_t parts[3];
        int np = 0, more = 1;
        while (more) {
            zmq_msg_t f;
            zmq_msg_init(&f);
            if (zmq_msg_recv(&f, c->sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&f);
                break;
            }
            more = zmq_msg_more(&f);
            if (np < 3)
                parts[np++] = f;
            else
                zmq_msg_close(&f);
        }
        int rc = -EAGAIN;
        if (np == 3) {
            msg_t *m = NULL;
            rc = msg_decode(zmq_msg_data(&parts[2]), zmq_msg_size(&parts[2]), &m, err);
            if (rc == 0) {
                size_t fl = zmq_msg_size(&parts[0]);
                if (fl >= sizeof m->from)
                    fl = sizeof m->from - 1;
                memcpy(m->from, zmq_msg_data(&parts[0]), fl);
                m->from[fl] = 0;
                *out = m;
            }
        }
        for (int i = 0; i < np; i++)
            zmq_msg_close(&parts[i]);
        if (rc == 0 || rc != -EAGAIN)
            return rc;
    }
}

/* While a long call waits, the broker is pinged every LIVE_MS: a broker
 * that stops answering (its daemon died with the request) fails the call
 * after LIVE_MISSES pings instead of at the caller's full deadline. */
#define LIVE_MS     2000
#define LIVE_MISSES 3

int bus_client_call(bus_client_t *c, const char *to, msg_t **req, int timeout_ms, msg_t **reply,
                    err_t *err)
{
    *reply = NULL;
    msg_type_t type = (*req)->type;
    int rc = bus_client_send(c, to, req, err);
    if (rc < 0)
        return rc;
    uint64_t id = c->next_id, ping_id = 0;
    int64_t start = clock_mono_ms(), deadline = start + timeout_ms;
    int64_t next_ping = strcmp(to, "bus") && timeout_ms > 2 * LIVE_MS ? start + LIVE_MS : INT64_MAX;
    int misses = 0;
    for (;;) {
        int64_t now = clock_mono_ms();
        long left = (long)(deadline - now);
        if (left <= 0)
            return err_make(err, ETIMEDOUT, "%s did not answer %s within %d ms", to,
                            msg_type_name(type), timeout_ms);
        if (now >= next_ping) {
            if (ping_id && ++misses >= LIVE_MISSES)
                return err_make(err, EHOSTDOWN,
                                "the bus stopped answering while %s handled %s (%lld ms): its "
                                "daemon is gone",
                                to, msg_type_name(type), (long long)(now - start));
            msg_t *p = msg_new(MSG_BUS_PING);
            err_t e3 = ERR_INIT;
            if (p && bus_client_send(c, "bus", &p, &e3) == 0)
                ping_id = c->next_id;
            else
                ping_id = ping_id ? ping_id : 1; /* not even queued: a miss next time */
            msg_destroy(&p);
            err_clear(&e3);
            next_ping = now + LIVE_MS;
        }
        if (next_ping - now < left)
            left = (long)(next_ping - now);
        msg_t *m = NULL;
        err_t e2 = ERR_INIT;
        rc = recv_wire(c, (int)left, &m, &e2);
        if (rc == -ETIMEDOUT) {
            err_clear(&e2);
            continue;
        }
        if (rc < 0) {
            err_move(err, &e2);
            return rc;
        }
        if (m->reply_to != id) {
            if (m->reply_to == 0)
                enqueue(c, &m); /* an event: for bus_client_recv */
            else {
                if (ping_id && m->reply_to == ping_id)
                    misses = 0, ping_id = 0; /* the broker lives */
                msg_destroy(&m);             /* a pong or a stale reply */
            }
            continue;
        }
        if (m->status) {
            rc = err_make(err, m->status, "%s",
                          m->status_text ? m->status_text : strerror(m->status));
            msg_destroy(&m);
            return rc;
        }
        *reply = m;
        return 0;
    }
}
