#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/clock.h"
#include "bus/bus.h"
#include "bus/faults.h"
#include "common/log.h"
#include "messages/msg.h"

#define BUS_NAME     "bus"
#define EP_MAX       128
#define DRAIN_BUDGET 256
#define MAX_SUBS     1024
#define MAX_ACTORS   1024
#define MAX_DELAYED  100000

struct actor_rec {
    char name[MSG_NAME_MAX];
    uint64_t pid;
    int64_t last_seen_ms;
    int64_t last_ping_ms;
};

struct sub {
    char name[MSG_NAME_MAX];
    char prefix[MSG_SMALL + 1];
};

struct delayed {
    int64_t due_ms;
    zmq_msg_t parts[4]; /* to, from, type, env */
};

struct bus {
    uint64_t epoch; /* this broker's life (pongs carry it: a peer sees a restart) */
    void *ctx;
    void *router;
    void *tap;
    void *ctrl_in;  /* broker side of the stop pipe */
    void *ctrl_out; /* owner side */
    pthread_t thread;
    bool thread_started;
    char ep[EP_MAX], ep_ipc[EP_MAX + 8], tap_ep[EP_MAX], tap_ipc[EP_MAX + 8];
    char ipc_path[EP_MAX], tap_path[EP_MAX];
    char held_path[EP_MAX]; /* bus.sock's private name until bus_open_ipc() */
    char name[MSG_NAME_MAX];
    int supervise_ms, miss_limit;
    faults_t *faults;
    int tap_subscribers;
    struct actor_rec *actors;
    size_t nactors;
    struct sub *subs;
    size_t nsubs;
    struct delayed *delayed;
    size_t ndelayed;
    uint64_t next_id;
    int64_t next_tick_ms;
};

static _Atomic unsigned bus_seq;

void bus_sockopts(void *sock)
{
    int zero = 0, hwm = 100000;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
}

/* ---- helpers on frames -------------------------------------------------- */

static void copy_frame_str(zmq_msg_t *f, char *dst, size_t cap)
{
    size_t n = zmq_msg_size(f);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, zmq_msg_data(f), n);
    dst[n] = 0;
    /* names are printable; anything else is replaced so logs stay sane */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
            dst[i] = '?';
}

static int send_str(void *sock, const char *s, int flags)
{
    return zmq_send(sock, s, strlen(s), flags | ZMQ_DONTWAIT);
}

/* ---- tap --------------------------------------------------------------- */

static void tap_copy(bus_t *b, const char *type, const char *from, const char *to, const void *env,
                     size_t len, const char *note)
{
    if (b->tap_subscribers <= 0)
        return;
    send_str(b->tap, type, ZMQ_SNDMORE);
    send_str(b->tap, from, ZMQ_SNDMORE);
    send_str(b->tap, to, ZMQ_SNDMORE);
    zmq_send(b->tap, env, len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    send_str(b->tap, note ? note : "", 0);
}

static void tap_drain(bus_t *b)
{
    /* XPUB delivers (un)subscriptions: count them to skip the tap when idle */
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, b->tap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        if (zmq_msg_size(&m) > 0) {
            uint8_t c = *(uint8_t *)zmq_msg_data(&m);
            b->tap_subscribers += c == 1 ? 1 : c == 0 ? -1 : 0;
        }
        zmq_msg_close(&m);
    }
}

/* ---- sending from the broker ------------------------------------------- */

/* Delivers raw parts to `to`; returns 0, or -errno (EHOSTUNREACH, EAGAIN). */
static int deliver(bus_t *b, const char *to, const char *from, const char *type, const void *env,
                   size_t len)
{
    if (send_str(b->router, to, ZMQ_SNDMORE) < 0)
        return -errno;
    send_str(b->router, from, ZMQ_SNDMORE);
    send_str(b->router, type, ZMQ_SNDMORE);
    zmq_send(b->router, env, len, ZMQ_DONTWAIT);
    return 0;
}

/* Sends a message the broker made (takes ownership of *mp). */
static void broker_send(bus_t *b, msg_t **mp)
{
    msg_t *m = *mp;
    err_t err = ERR_INIT;
    uint8_t *buf = NULL;
    size_t len = 0;
    snprintf(m->from, sizeof m->from, "%s", BUS_NAME);
    m->id = ++b->next_id;
    m->ts_ns = clock_real_ns();
    if (msg_encode(m, &buf, &len, &err) < 0) {
        log_warn("encode %s: %s, dropping", msg_type_name(m->type), err_str(&err));
        err_clear(&err);
        msg_destroy(mp);
        return;
    }
    const char *type = msg_type_name(m->type);
    tap_copy(b, type, BUS_NAME, m->to, buf, len, NULL);
    if (deliver(b, m->to, BUS_NAME, type, buf, len) < 0)
        log_debug("deliver %s to %s: %s", type, m->to, strerror(errno));
    free(buf);
    msg_destroy(mp);
}

/* ---- events and supervision --------------------------------------------- */

static void route_event(bus_t *b, const char *from, const char *type, const void *env, size_t len);

static void publish(bus_t *b, msg_t **mp)
{
    msg_t *m = *mp;
    uint8_t *buf = NULL;
    size_t len = 0;
    err_t err = ERR_INIT;
    snprintf(m->from, sizeof m->from, "%s", BUS_NAME);
    snprintf(m->to, sizeof m->to, "*");
    m->id = ++b->next_id;
    m->ts_ns = clock_real_ns();
    if (msg_encode(m, &buf, &len, &err) == 0) {
        tap_copy(b, msg_type_name(m->type), BUS_NAME, "*", buf, len, NULL);
        route_event(b, BUS_NAME, msg_type_name(m->type), buf, len);
    } else {
        err_clear(&err);
    }
    free(buf);
    msg_destroy(mp);
}

static struct actor_rec *find_actor(bus_t *b, const char *name)
{
    for (size_t i = 0; i < b->nactors; i++)
        if (!strcmp(b->actors[i].name, name))
            return &b->actors[i];
    return NULL;
}

static void forget_subs(bus_t *b, const char *name)
{
    size_t j = 0;
    for (size_t i = 0; i < b->nsubs; i++)
        if (strcmp(b->subs[i].name, name))
            b->subs[j++] = b->subs[i];
    b->nsubs = j;
}

static void actor_gone(bus_t *b, const char *name, const char *reason)
{
    struct actor_rec *a = find_actor(b, name);
    if (!a)
        return;
    char n[MSG_NAME_MAX];
    snprintf(n, sizeof n, "%s", name);
    *a = b->actors[--b->nactors];
    forget_subs(b, n);
    log_info("actor %s down: %s", n, reason);
    msg_t *ev = msg_new(MSG_ACTOR_DOWN);
    if (!ev)
        return;
    msg_actor_down_t *body = ev->body;
    msg_set_str(&body->name, n);
    msg_set_str(&body->reason, reason);
    publish(b, &ev);
}

static void supervise(bus_t *b, int64_t now)
{
    if (b->supervise_ms <= 0)
        return;
    for (size_t i = 0; i < b->nactors;) {
        struct actor_rec *a = &b->actors[i];
        int64_t silent = now - a->last_seen_ms;
        if (silent >= (int64_t)b->supervise_ms * b->miss_limit) {
            char reason[128];
            snprintf(reason, sizeof reason, "stopped answering: silent for %lld ms",
                     (long long)silent);
            actor_gone(b, a->name, reason); /* swaps the last one into i */
            continue;
        }
        if (silent >= b->supervise_ms && now - a->last_ping_ms >= b->supervise_ms) {
            msg_t *ping = msg_new(MSG_BUS_PING);
            if (ping) {
                snprintf(ping->to, sizeof ping->to, "%s", a->name);
                ((msg_bus_ping_t *)ping->body)->seq = (uint64_t)now;
                a->last_ping_ms = now;
                broker_send(b, &ping);
            }
        }
        i++;
    }
}

/* ---- control messages to "bus" ----------------------------------------- */

static msg_t *fault_state(bus_t *b, const msg_t *req)
{
    msg_t *r = msg_new_reply(req, MSG_BUS_FAULT_STATE);
    if (!r)
        return NULL;
    msg_bus_fault_state_t *body = r->body;
    for (size_t i = 0; i < faults_count(b->faults); i++) {
        msg_strv_push(&body->rules, faults_rule_text(b->faults, i));
        msg_u64v_push(&body->hits, faults_rule_hits(b->faults, i));
    }
    return r;
}

static bool has_sub(const bus_t *b, const char *name, const char *prefix)
{
    for (size_t i = 0; i < b->nsubs; i++)
        if (!strcmp(b->subs[i].name, name) && !strcmp(b->subs[i].prefix, prefix))
            return true;
    return false;
}

static void control(bus_t *b, const char *from, const void *env, size_t len)
{
    msg_t *m = NULL, *reply = NULL;
    err_t err = ERR_INIT;
    if (msg_decode(env, len, &m, &err) < 0) {
        log_warn("bad control message from %s: %s", from, err_str(&err));
        uint64_t id, re;
        if (msg_peek_ids(env, len, &id, &re) == 0 && re == 0) {
            msg_t fake = {.id = id};
            snprintf(fake.from, sizeof fake.from, "%s", from);
            reply = msg_new_error(&fake, EBADMSG, "bus: %s", err_str(&err));
        }
        err_clear(&err);
        goto out;
    }
    snprintf(m->from, sizeof m->from, "%s", from);
    switch (m->type) {
    case MSG_BUS_HELLO: {
        msg_bus_hello_t *h = m->body;
        struct actor_rec *a = find_actor(b, from);
        if (!a && b->nactors < MAX_ACTORS)
            a = &b->actors[b->nactors++];
        if (a) {
            memset(a, 0, sizeof *a);
            snprintf(a->name, sizeof a->name, "%s", from);
            a->pid = h->pid;
            a->last_seen_ms = a->last_ping_ms = clock_mono_ms();
        }
        reply = msg_new_reply(m, MSG_BUS_HELLO);
        if (reply)
            msg_set_str(&((msg_bus_hello_t *)reply->body)->name, b->name);
        msg_t *up = msg_new(MSG_ACTOR_UP);
        if (up) {
            msg_set_str(&((msg_actor_up_t *)up->body)->name, from);
            ((msg_actor_up_t *)up->body)->pid = h->pid;
            publish(b, &up);
        }
        log_debug("actor %s up (pid %llu)", from, (unsigned long long)h->pid);
        break;
    }
    case MSG_BUS_BYE: {
        char reason[MSG_SMALL + 16];
        snprintf(reason, sizeof reason, "stopped: %s", ((msg_bus_bye_t *)m->body)->reason);
        actor_gone(b, from, reason);
        forget_subs(b, from);
        break;
    }
    case MSG_BUS_SUBSCRIBE:
        if (has_sub(b, from, ((msg_bus_subscribe_t *)m->body)->prefix)) {
            reply = msg_new_reply(m, MSG_BUS_SUBSCRIBE); /* a rejoin: once is enough */
        } else if (b->nsubs < MAX_SUBS) {
            struct sub *s = &b->subs[b->nsubs++];
            snprintf(s->name, sizeof s->name, "%s", from);
            snprintf(s->prefix, sizeof s->prefix, "%s", ((msg_bus_subscribe_t *)m->body)->prefix);
            reply = msg_new_reply(m, MSG_BUS_SUBSCRIBE);
        } else {
            reply = msg_new_error(m, ENOSPC, "bus: too many subscriptions");
        }
        break;
    case MSG_BUS_PING:
        reply = msg_new_reply(m, MSG_BUS_PONG);
        if (reply) {
            ((msg_bus_pong_t *)reply->body)->seq = ((msg_bus_ping_t *)m->body)->seq;
            ((msg_bus_pong_t *)reply->body)->epoch = b->epoch;
        }
        break;
    case MSG_BUS_PONG:
        break; /* heartbeat answer: last_seen already updated */
    case MSG_BUS_FAULT_SET:
        if (faults_add(b->faults, ((msg_bus_fault_set_t *)m->body)->rules, &err) < 0) {
            reply = msg_new_error(m, err.code, "bus: %s", err_str(&err));
            err_clear(&err);
        } else {
            log_info("fault rules set by %s: %s", from, ((msg_bus_fault_set_t *)m->body)->rules);
            reply = fault_state(b, m);
        }
        break;
    case MSG_BUS_FAULT_CLEAR:
        faults_clear(b->faults);
        reply = fault_state(b, m);
        break;
    case MSG_BUS_FAULT_LIST:
        reply = fault_state(b, m);
        break;
    case MSG_BUS_LIST:
        reply = msg_new_reply(m, MSG_BUS_ACTORS);
        for (size_t i = 0; reply && i < b->nactors; i++)
            msg_strv_push(&((msg_bus_actors_t *)reply->body)->names, b->actors[i].name);
        break;
    default:
        if (m->reply_to == 0)
            reply = msg_new_error(m, EPROTO, "bus: does not handle %s", msg_type_name(m->type));
    }
out:
    if (reply)
        broker_send(b, &reply);
    msg_destroy(&m);
}

/* ---- routing ------------------------------------------------------------- */

static void unroutable(bus_t *b, const char *from, const char *to, const char *type,
                       const void *env, size_t len)
{
    uint64_t id, re;
    if (msg_peek_ids(env, len, &id, &re) < 0 || re != 0)
        return; /* only requests get an answer; replies to a gone actor vanish */
    msg_t req = {.id = id};
    snprintf(req.from, sizeof req.from, "%s", from);
    msg_t *e =
        msg_new_error(&req, EHOSTUNREACH, "no actor named '%s' on the bus (for %s)", to, type);
    if (e)
        broker_send(b, &e);
}

static void enqueue_delayed(bus_t *b, const char *to, const char *from, const char *type,
                            const void *env, size_t len, unsigned ms)
{
    if (b->ndelayed >= MAX_DELAYED)
        return;
    struct delayed *nd = realloc(b->delayed, (b->ndelayed + 1) * sizeof *nd);
    if (!nd)
        return;
    b->delayed = nd;
    struct delayed *d = &nd[b->ndelayed++];
    d->due_ms = clock_mono_ms() + ms;
    const char *strs[3] = {to, from, type};
    for (int i = 0; i < 3; i++) {
        zmq_msg_init_size(&d->parts[i], strlen(strs[i]));
        memcpy(zmq_msg_data(&d->parts[i]), strs[i], strlen(strs[i]));
    }
    zmq_msg_init_size(&d->parts[3], len);
    memcpy(zmq_msg_data(&d->parts[3]), env, len);
}

/* A known actor whose socket is gone (a thread that died without a
 * goodbye): report it at once rather than at the next supervision miss. */
static void peer_unreachable(bus_t *b, const char *to)
{
    if (find_actor(b, to))
        actor_gone(b, to, "unreachable: its socket is closed");
}

/* Sends the fault.inject that carries out an effect rule (docs/faults.md). */
static void fire_effect(bus_t *b, fault_hit_t hit, const char *to)
{
    const char *target = fault_effect_target(hit.action, to);
    msg_t *m = target ? msg_new(MSG_FAULT_INJECT) : NULL;
    if (!m)
        return;
    snprintf(m->to, sizeof m->to, "%s", target);
    msg_fault_inject_t *body = m->body;
    msg_set_str(&body->action, fault_action_name(hit.action));
    body->count = hit.param ? hit.param : 1;
    log_info("fault: %s (rule %d) at %s", fault_action_name(hit.action), hit.rule + 1, target);
    broker_send(b, &m);
}

static void route_one(bus_t *b, const char *from, const char *to, const char *type, const void *env,
                      size_t len, bool faults_on)
{
    fault_hit_t hit = {FAULT_NONE, 0, -1};
    if (faults_on)
        hit = faults_match(b->faults, type, from, to);
    switch (hit.action) {
    case FAULT_DROP:
        tap_copy(b, type, from, to, env, len, "fault:drop");
        return;
    case FAULT_DELAY: {
        char note[32];
        snprintf(note, sizeof note, "fault:delay:%u", hit.param);
        tap_copy(b, type, from, to, env, len, note);
        enqueue_delayed(b, to, from, type, env, len, hit.param);
        return;
    }
    case FAULT_CORRUPT: {
        uint8_t *copy = malloc(len ? len : 1);
        if (!copy)
            return;
        memcpy(copy, env, len);
        faults_corrupt(b->faults, hit.rule, copy, len, hit.param);
        tap_copy(b, type, from, to, copy, len, "fault:corrupt");
        if (deliver(b, to, from, type, copy, len) < 0 && errno == EHOSTUNREACH)
            unroutable(b, from, to, type, env, len);
        free(copy);
        return;
    }
    case FAULT_DUPLICATE:
        tap_copy(b, type, from, to, env, len, "fault:duplicate");
        for (unsigned i = 0; i < hit.param; i++)
            deliver(b, to, from, type, env, len);
        break;
    default:
        if (fault_is_effect(hit.action)) {
            /* the effect first, the message it rode on shortly after */
            char note[48];
            snprintf(note, sizeof note, "fault:%s", fault_action_name(hit.action));
            tap_copy(b, type, from, to, env, len, note);
            fire_effect(b, hit, to);
            enqueue_delayed(b, to, from, type, env, len, FAULT_EFFECT_HOLD_MS);
            return;
        }
        tap_copy(b, type, from, to, env, len, NULL);
        break;
    }
    if (deliver(b, to, from, type, env, len) < 0) {
        if (errno == EHOSTUNREACH) {
            peer_unreachable(b, to);
            unroutable(b, from, to, type, env, len);
        } else
            log_warn("deliver %s from %s to %s: %s, dropped", type, from, to, strerror(errno));
    }
}

static void route_event(bus_t *b, const char *from, const char *type, const void *env, size_t len)
{
    for (size_t i = 0; i < b->nsubs; i++) {
        struct sub *s = &b->subs[i];
        if (strncmp(type, s->prefix, strlen(s->prefix)))
            continue;
        /* one delivery per subscriber even with overlapping prefixes */
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++)
            dup = !strcmp(b->subs[j].name, s->name) &&
                  !strncmp(type, b->subs[j].prefix, strlen(b->subs[j].prefix));
        if (dup)
            continue;
        fault_hit_t hit = faults_match(b->faults, type, from, s->name);
        if (hit.action == FAULT_DROP)
            continue;
        if (fault_is_effect(hit.action))
            fire_effect(b, hit, s->name);
        if (deliver(b, s->name, from, type, env, len) < 0)
            log_debug("event %s to %s: %s", type, s->name, strerror(errno));
    }
}

/* Receives and routes one message: [sender][to][type][env]. */
static int on_router(bus_t *b)
{
    zmq_msg_t parts[4];
    int n = 0;
    int more = 1;
    while (more) {
        zmq_msg_t tmp;
        zmq_msg_init(&tmp);
        if (zmq_msg_recv(&tmp, b->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&tmp);
            break;
        }
        more = zmq_msg_more(&tmp);
        if (n < 4)
            parts[n++] = tmp; /* moved */
        else
            zmq_msg_close(&tmp);
    }
    if (n == 0)
        return -1;
    char from[MSG_NAME_MAX], to[MSG_NAME_MAX], type[MSG_SMALL];
    copy_frame_str(&parts[0], from, sizeof from);
    if (n != 4 || more) {
        log_warn("malformed frame set from %s (%d parts), dropped", from, n);
        goto out;
    }
    copy_frame_str(&parts[1], to, sizeof to);
    copy_frame_str(&parts[2], type, sizeof type);
    const void *env = zmq_msg_data(&parts[3]);
    size_t len = zmq_msg_size(&parts[3]);

    struct actor_rec *a = find_actor(b, from);
    if (a)
        a->last_seen_ms = clock_mono_ms();

    if (!strcmp(to, BUS_NAME)) {
        tap_copy(b, type, from, to, env, len, NULL);
        control(b, from, env, len);
    } else if (!strcmp(to, "*")) {
        tap_copy(b, type, from, to, env, len, NULL);
        route_event(b, from, type, env, len);
    } else {
        route_one(b, from, to, type, env, len, faults_count(b->faults) > 0);
    }
out:
    for (int i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
    return 0;
}

static void release_delayed(bus_t *b, int64_t now)
{
    size_t j = 0;
    for (size_t i = 0; i < b->ndelayed; i++) {
        struct delayed *d = &b->delayed[i];
        if (d->due_ms > now) {
            b->delayed[j++] = *d;
            continue;
        }
        char to[MSG_NAME_MAX], from[MSG_NAME_MAX], type[MSG_SMALL];
        copy_frame_str(&d->parts[0], to, sizeof to);
        copy_frame_str(&d->parts[1], from, sizeof from);
        copy_frame_str(&d->parts[2], type, sizeof type);
        if (!strcmp(to, "*"))
            route_event(b, from, type, zmq_msg_data(&d->parts[3]), zmq_msg_size(&d->parts[3]));
        else if (deliver(b, to, from, type, zmq_msg_data(&d->parts[3]),
                         zmq_msg_size(&d->parts[3])) < 0 &&
                 errno == EHOSTUNREACH) {
            peer_unreachable(b, to);
            unroutable(b, from, to, type, zmq_msg_data(&d->parts[3]), zmq_msg_size(&d->parts[3]));
        }
        for (int k = 0; k < 4; k++)
            zmq_msg_close(&d->parts[k]);
    }
    b->ndelayed = j;
}

#define BUS_CLOSE_LINGER_MS 500

static void *broker_main(void *arg)
{
    bus_t *b = arg;
    log_set_component("bus");
    log_set_sandbox(b->name[0] ? b->name : NULL);
    zmq_pollitem_t items[3] = {
        {b->router, 0, ZMQ_POLLIN, 0},
        {b->tap, 0, ZMQ_POLLIN, 0},
        {b->ctrl_in, 0, ZMQ_POLLIN, 0},
    };
    b->next_tick_ms = clock_mono_ms() + (b->supervise_ms > 0 ? b->supervise_ms : 3600000);
    for (;;) {
        int64_t now = clock_mono_ms();
        int64_t due = b->next_tick_ms;
        for (size_t i = 0; i < b->ndelayed; i++)
            if (b->delayed[i].due_ms < due)
                due = b->delayed[i].due_ms;
        long timeout = due > now ? (long)(due - now) : 0;
        int rc = zmq_poll(items, 3, timeout);
        if (rc < 0 && errno != EINTR)
            break;
        if (items[2].revents & ZMQ_POLLIN) {
            /* stop requested: route what already arrived first (the
             * runtime's last answer, e.g. to the delete that ended the
             * sandbox, comes just before the daemon stops the bus) */
            for (int i = 0; i < DRAIN_BUDGET && on_router(b) == 0; i++)
                ;
            break;
        }
        if (items[1].revents & ZMQ_POLLIN)
            tap_drain(b);
        if (items[0].revents & ZMQ_POLLIN)
            for (int i = 0; i < DRAIN_BUDGET && on_router(b) == 0; i++)
                ;
        now = clock_mono_ms();
        if (b->ndelayed)
            release_delayed(b, now);
        if (now >= b->next_tick_ms) {
            supervise(b, now);
            b->next_tick_ms = now + (b->supervise_ms > 0 ? b->supervise_ms : 3600000);
        }
    }
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------ */

static int bind_ipc(bus_t *b, void *sock, const char *dir, const char *file, char *path, char *ep,
                    size_t epcap, err_t *err)
{
    struct sockaddr_un sa;
    if ((size_t)snprintf(path, EP_MAX, "%s/%s", dir, file) >= sizeof sa.sun_path)
        return err_make(err, ENAMETOOLONG, "bus: socket path %s/%s is longer than %zu bytes", dir,
                        file, sizeof sa.sun_path - 1);
    unlink(path); /* a stale socket from a dead broker */
    snprintf(ep, epcap, "ipc://%s", path);
    if (zmq_bind(sock, ep) < 0)
        return err_make(err, errno, "bus: bind %s: %s", ep, zmq_strerror(errno));
    if (chmod(path, 0600) < 0)
        return err_errno(err, "bus: chmod %s", path);
    return 0;
}

int bus_new(const bus_opts_t *opts, bus_t **out, err_t *err)
{
    bus_opts_t o = opts ? *opts : (bus_opts_t){0};
    bus_t *b = calloc(1, sizeof *b);
    if (b)
        b->epoch = clock_real_ns() ^ ((uint64_t)getpid() << 40);
    if (!b)
        return err_make(err, ENOMEM, "bus: out of memory");
    b->supervise_ms = o.supervise_ms == 0 ? 1000 : o.supervise_ms;
    b->miss_limit = o.miss_limit > 0 ? o.miss_limit : 3;
    snprintf(b->name, sizeof b->name, "%s", o.name ? o.name : "");
    b->actors = calloc(MAX_ACTORS, sizeof *b->actors);
    b->subs = calloc(MAX_SUBS, sizeof *b->subs);
    b->faults = faults_new();
    int rc;
    if (!b->actors || !b->subs || !b->faults) {
        rc = err_make(err, ENOMEM, "bus: out of memory");
        goto fail;
    }
    const char *env_faults = getenv("HUSK_FAULTS");
    if (env_faults && (rc = faults_add(b->faults, env_faults, err)) < 0) {
        err_wrap(err, "HUSK_FAULTS");
        goto fail;
    }
    if (o.faults && (rc = faults_add(b->faults, o.faults, err)) < 0)
        goto fail;

    b->ctx = zmq_ctx_new();
    if (!b->ctx) {
        rc = err_make(err, errno, "bus: zmq_ctx_new: %s", zmq_strerror(errno));
        goto fail;
    }
    zmq_ctx_set(b->ctx, ZMQ_BLOCKY, 0);
    unsigned seq = atomic_fetch_add(&bus_seq, 1);
    snprintf(b->ep, sizeof b->ep, "inproc://husk-bus-%u", seq);
    snprintf(b->tap_ep, sizeof b->tap_ep, "inproc://husk-tap-%u", seq);
    char ctrl_ep[64];
    snprintf(ctrl_ep, sizeof ctrl_ep, "inproc://husk-ctrl-%u", seq);

    b->router = zmq_socket(b->ctx, ZMQ_ROUTER);
    b->tap = zmq_socket(b->ctx, ZMQ_XPUB);
    b->ctrl_in = zmq_socket(b->ctx, ZMQ_PAIR);
    b->ctrl_out = zmq_socket(b->ctx, ZMQ_PAIR);
    if (!b->router || !b->tap || !b->ctrl_in || !b->ctrl_out) {
        rc = err_make(err, errno, "bus: zmq_socket: %s", zmq_strerror(errno));
        goto fail;
    }
    int one = 1;
    bus_sockopts(b->router);
    bus_sockopts(b->tap);
    bus_sockopts(b->ctrl_in);
    bus_sockopts(b->ctrl_out);
    zmq_setsockopt(b->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    /* a peer that reconnects under its name (a CLI's next call, a restarted
     * proxy) takes the route over; without this, libzmq ignores the new
     * connection while the old one is not yet reaped, and its requests are
     * silently dropped (seen: `husk run`'s delete lost, 30 s timeout) */
    zmq_setsockopt(b->router, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    zmq_setsockopt(b->tap, ZMQ_XPUB_VERBOSER, &one, sizeof one);
    if (zmq_bind(b->router, b->ep) < 0 || zmq_bind(b->tap, b->tap_ep) < 0 ||
        zmq_bind(b->ctrl_in, ctrl_ep) < 0 || zmq_connect(b->ctrl_out, ctrl_ep) < 0) {
        rc = err_make(err, errno, "bus: bind inproc: %s", zmq_strerror(errno));
        goto fail;
    }
    if (o.dir) {
        if (mkdir(o.dir, 0700) < 0 && errno != EEXIST) {
            rc = err_errno(err, "bus: mkdir %s", o.dir);
            goto fail;
        }
        struct stat st;
        if (stat(o.dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
            rc = err_make(err, ENOTDIR, "bus: %s is not a directory", o.dir);
            goto fail;
        }
        if ((st.st_mode & 077) && chmod(o.dir, 0700) < 0) {
            rc = err_errno(err, "bus: chmod 0700 %s", o.dir);
            goto fail;
        }
        char held_ep[EP_MAX + 8];
        if (o.hold_ipc && (rc = bind_ipc(b, b->router, o.dir, "bus.sock.held", b->held_path,
                                         held_ep, sizeof held_ep, err)) < 0)
            goto fail;
        if (o.hold_ipc) { /* the public names, taken by bus_open_ipc() */
            snprintf(b->ipc_path, sizeof b->ipc_path, "%s/bus.sock", o.dir);
            snprintf(b->ep_ipc, sizeof b->ep_ipc, "ipc://%s", b->ipc_path);
            unlink(b->ipc_path); /* a stale socket from a dead broker */
        }
        if ((!o.hold_ipc && (rc = bind_ipc(b, b->router, o.dir, "bus.sock", b->ipc_path, b->ep_ipc,
                                           sizeof b->ep_ipc, err)) < 0) ||
            (rc = bind_ipc(b, b->tap, o.dir, "tap.sock", b->tap_path, b->tap_ipc, sizeof b->tap_ipc,
                           err)) < 0)
            goto fail;
    }
    if ((rc = pthread_create(&b->thread, NULL, broker_main, b)) != 0) {
        rc = err_make(err, rc, "bus: start broker thread: %s", strerror(rc));
        goto fail;
    }
    b->thread_started = true;
    *out = b;
    return 0;
fail:
    bus_destroy(&b);
    return rc < 0 ? rc : -EIO;
}

void bus_destroy(bus_t **bp)
{
    if (!bp || !*bp)
        return;
    bus_t *b = *bp;
    if (b->thread_started) {
        zmq_send(b->ctrl_out, "STOP", 4, 0);
        pthread_join(b->thread, NULL);
    }
    /* what the broker routed last may still sit in an ipc pipe: give it
     * a moment to reach its peer instead of dropping it (linger 0) */
    if (b->router) {
        int linger = BUS_CLOSE_LINGER_MS;
        zmq_setsockopt(b->router, ZMQ_LINGER, &linger, sizeof linger);
    }
    void **socks[] = {&b->router, &b->tap, &b->ctrl_in, &b->ctrl_out};
    for (size_t i = 0; i < 4; i++)
        if (*socks[i]) {
            zmq_close(*socks[i]);
            *socks[i] = NULL;
        }
    if (b->ctx)
        zmq_ctx_term(b->ctx);
    if (b->ipc_path[0])
        unlink(b->ipc_path);
    if (b->held_path[0])
        unlink(b->held_path);
    if (b->tap_path[0])
        unlink(b->tap_path);
    for (size_t i = 0; i < b->ndelayed; i++)
        for (int k = 0; k < 4; k++)
            zmq_msg_close(&b->delayed[i].parts[k]);
    free(b->delayed);
    free(b->actors);
    free(b->subs);
    faults_destroy(&b->faults);
    free(b);
    *bp = NULL;
}

void *bus_context(bus_t *b)
{
    return b->ctx;
}
const char *bus_endpoint(bus_t *b)
{
    return b->ep;
}
int bus_open_ipc(bus_t *b, err_t *err)
{
    if (!b->held_path[0])
        return 0;
    if (rename(b->held_path, b->ipc_path) < 0)
        return err_errno(err, "bus: rename %s to %s", b->held_path, b->ipc_path);
    b->held_path[0] = 0;
    return 0;
}

const char *bus_ipc_endpoint(bus_t *b)
{
    return b->ep_ipc[0] ? b->ep_ipc : NULL;
}
const char *bus_tap_endpoint(bus_t *b)
{
    return b->tap_ep;
}
const char *bus_tap_ipc_endpoint(bus_t *b)
{
    return b->tap_ipc[0] ? b->tap_ipc : NULL;
}
