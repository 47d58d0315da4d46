#include "common/clock.h"
#include "actors/actor.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bus/bus.h"
#include "bus/zev.h"
#include "common/log.h"

#define PENDING_BUCKETS 256
#define OUTBOX_MAX      100000
#define DRAIN_BUDGET    64

enum phase { PH_STARTING, PH_READY, PH_FAILED, PH_FINISHED };

struct pending {
    uint64_t id;
    actor_reply_fn cb;
    void *arg;
    struct event *timer;
    actor_t *a;
    int timeout_ms;
    msg_type_t type;
    char to[MSG_NAME_MAX];
    struct pending *next;
};

struct actor_timer {
    struct event *ev;
    actor_t *a;
    actor_timer_fn cb;
    void *arg;
    bool repeat;
    actor_timer_t *prev, *next;
};

struct actor_watch {
    struct event *ev;
    actor_t *a;
    actor_fd_fn cb;
    void *arg;
    int fd;
    actor_watch_t *prev, *next;
};

struct outbox_item {
    zmq_msg_t parts[3];
    struct outbox_item *next;
};

struct actor {
    const actor_def_t *def;
    void *state;
    char name[MSG_NAME_MAX];
    char sandbox[80];
    char endpoint[256];
    void *zctx;
    bool own_ctx;
    void *sock;
    zev_t *zev;
    struct event_base *base;
    struct event *stop_ev;
    int stop_fd;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum phase phase;
    err_t start_err;
    int start_timeout_ms;
    bool init_ran, registered, exiting, detached;
    char exit_reason[128];
    uint64_t next_id;
    struct pending *pending[PENDING_BUCKETS];
    actor_handler_fn by_type[MSG_TYPE_COUNT];
    actor_timer_t *timers;
    actor_watch_t *watches;
    struct outbox_item *out_head, *out_tail;
    size_t out_len;
    struct event *flush_ev;
};

const char *actor_name(actor_t *a)
{
    return a->name;
}

struct event_base *actor_base(actor_t *a)
{
    return a->base;
}

/* ---- sending ------------------------------------------------------------- */

static void free_buf(void *data, void *hint)
{
    free(data);
}

static void str_frame(zmq_msg_t *f, const char *s)
{
    size_t n = strlen(s);
    zmq_msg_init_size(f, n);
    memcpy(zmq_msg_data(f), s, n);
}

/* Sends the parts now; 0, or -EAGAIN when the socket is full (nothing sent). */
static int send_parts(actor_t *a, zmq_msg_t parts[3])
{
    if (zmq_msg_send(&parts[0], a->sock, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -errno;
    zmq_msg_send(&parts[1], a->sock, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_msg_send(&parts[2], a->sock, ZMQ_DONTWAIT);
    return 0;
}

static void flush_outbox(evutil_socket_t fd, short what, void *arg)
{
    actor_t *a = arg;
    while (a->out_head) {
        struct outbox_item *it = a->out_head;
        if (send_parts(a, it->parts) < 0)
            break;
        a->out_head = it->next;
        if (!a->out_head)
            a->out_tail = NULL;
        a->out_len--;
        free(it);
    }
    zev_after_send(a->zev);
    if (a->out_head) {
        struct timeval tv = {0, 1000};
        event_add(a->flush_ev, &tv);
    }
}

static int send_msg(actor_t *a, const char *to, msg_t *m, err_t *err)
{
    m->id = ++a->next_id;
    snprintf(m->from, sizeof m->from, "%s", a->name);
    snprintf(m->to, sizeof m->to, "%s", to);
    m->ts_ns = clock_real_ns();
    uint8_t *buf;
    size_t len;
    int rc = msg_encode(m, &buf, &len, err);
    if (rc < 0)
        return rc;
    zmq_msg_t parts[3];
    str_frame(&parts[0], to);
    str_frame(&parts[1], msg_type_name(m->type));
    zmq_msg_init_data(&parts[2], buf, len, free_buf, NULL);
    if (!a->out_head && send_parts(a, parts) == 0) {
        zev_after_send(a->zev);
        return 0;
    }
    if (a->out_len >= OUTBOX_MAX) {
        for (int i = 0; i < 3; i++)
            zmq_msg_close(&parts[i]);
        return err_make(err, ENOBUFS, "send %s to %s: outbox full (%d messages)",
                        msg_type_name(m->type), to, OUTBOX_MAX);
    }
    struct outbox_item *it = calloc(1, sizeof *it);
    if (!it) {
        for (int i = 0; i < 3; i++)
            zmq_msg_close(&parts[i]);
        return err_make(err, ENOMEM, "send: out of memory");
    }
    memcpy(it->parts, parts, sizeof parts);
    if (a->out_tail)
        a->out_tail->next = it;
    else
        a->out_head = it;
    a->out_tail = it;
    a->out_len++;
    struct timeval tv = {0, 1000};
    event_add(a->flush_ev, &tv);
    return 0;
}

int actor_send(actor_t *a, const char *to, msg_t **m, err_t *err)
{
    if (!m || !*m)
        return err_make(err, EINVAL, "send: no message");
    int rc = send_msg(a, to, *m, err);
    msg_destroy(m);
    return rc;
}

int actor_publish(actor_t *a, msg_t **m, err_t *err)
{
    return actor_send(a, "*", m, err);
}

int actor_reply(actor_t *a, const msg_t *req, msg_t **reply)
{
    if (!reply || !*reply)
        return -EINVAL;
    (*reply)->reply_to = req->id;
    err_t err = ERR_INIT;
    int rc = send_msg(a, req->from, *reply, &err);
    if (rc < 0) {
        log_warn("reply %s to %s: %s", msg_type_name((*reply)->type), req->from, err_str(&err));
        err_clear(&err);
    }
    msg_destroy(reply);
    return rc;
}

int actor_reply_error(actor_t *a, const msg_t *req, int code, const char *fmt, ...)
{
    va_list ap;
    char *text = NULL;
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    msg_t *e = msg_new_error(req, code, "%s", text ? text : "error");
    free(text);
    return e ? actor_reply(a, req, &e) : -ENOMEM;
}

/* ---- requests -------------------------------------------------------------- */

static struct pending **bucket(actor_t *a, uint64_t id)
{
    return &a->pending[id % PENDING_BUCKETS];
}

static struct pending *take_pending(actor_t *a, uint64_t id)
{
    for (struct pending **pp = bucket(a, id); *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            struct pending *p = *pp;
            *pp = p->next;
            return p;
        }
    }
    return NULL;
}

static void complete(struct pending *p, msg_t **reply)
{
    if (p->timer)
        event_free(p->timer);
    p->cb(p->a, reply, p->arg);
    msg_destroy(reply);
    free(p);
}

static void complete_error(struct pending *p, int code, const char *fmt, ...)
{
    msg_t *e = msg_new(MSG_BUS_ERROR);
    if (!e) {
        free(p);
        return;
    }
    e->reply_to = p->id;
    snprintf(e->from, sizeof e->from, "%s", p->to);
    snprintf(e->to, sizeof e->to, "%s", p->a->name);
    e->status = code;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&e->status_text, fmt, ap) < 0)
        e->status_text = NULL;
    va_end(ap);
    complete(p, &e);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    actor_t *a = p->a;
    if (take_pending(a, p->id) != p)
        return;
    complete_error(p, ETIMEDOUT, "%s did not answer %s within %d ms", p->to, msg_type_name(p->type),
                   p->timeout_ms);
}

int actor_request(actor_t *a, const char *to, msg_t **m, int timeout_ms, actor_reply_fn cb,
                  void *arg, err_t *err)
{
    if (!m || !*m || !cb) {
        msg_destroy(m);
        return err_make(err, EINVAL, "request: no message or callback");
    }
    struct pending *p = calloc(1, sizeof *p);
    if (!p) {
        msg_destroy(m);
        return err_make(err, ENOMEM, "request: out of memory");
    }
    p->cb = cb;
    p->arg = arg;
    p->a = a;
    p->type = (*m)->type;
    p->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
    snprintf(p->to, sizeof p->to, "%s", to);
    int rc = send_msg(a, to, *m, err);
    if (rc < 0) {
        free(p);
        msg_destroy(m);
        return rc;
    }
    p->id = (*m)->id;
    msg_destroy(m);
    p->timer = evtimer_new(a->base, on_deadline, p);
    struct timeval tv = {p->timeout_ms / 1000, (p->timeout_ms % 1000) * 1000};
    if (!p->timer || evtimer_add(p->timer, &tv) < 0) {
        if (p->timer)
            event_free(p->timer);
        free(p);
        return err_make(err, ENOMEM, "request: cannot arm deadline");
    }
    struct pending **b = bucket(a, p->id);
    p->next = *b;
    *b = p;
    return 0;
}

static void cancel_all_pending(actor_t *a)
{
    for (int i = 0; i < PENDING_BUCKETS; i++) {
        while (a->pending[i]) {
            struct pending *p = a->pending[i];
            a->pending[i] = p->next;
            complete_error(p, ECANCELED, "actor %s stopping: %s to %s cancelled", a->name,
                           msg_type_name(p->type), p->to);
        }
    }
}

/* An actor that is down will answer nothing: its pending requests fail now
 * rather than at their deadlines. */
static void fail_pending_to(actor_t *a, const char *name, const char *reason)
{
    for (int i = 0; i < PENDING_BUCKETS; i++) {
        for (struct pending **pp = &a->pending[i]; *pp;) {
            struct pending *p = *pp;
            if (strcmp(p->to, name)) {
                pp = &p->next;
                continue;
            }
            *pp = p->next;
            complete_error(p, EHOSTDOWN, "%s is down (%s): %s not answered", name, reason,
                           msg_type_name(p->type));
            pp = &a->pending[i]; /* the callback may have changed the bucket */
        }
    }
}

/* ---- receiving --------------------------------------------------------------- */

static void dispatch(actor_t *a, msg_t **mp)
{
    msg_t *m = *mp;
    if (m->reply_to) {
        struct pending *p = take_pending(a, m->reply_to);
        if (!p) {
            log_debug("late or duplicate reply %s from %s (re %llu), dropped",
                      msg_type_name(m->type), m->from, (unsigned long long)m->reply_to);
            return;
        }
        if (strcmp(m->from, p->to) && strcmp(m->from, "bus")) {
            log_warn("reply to request %llu came from %s, not %s; dropped",
                     (unsigned long long)m->reply_to, m->from, p->to);
            struct pending **b = bucket(a, p->id);
            p->next = *b;
            *b = p;
            return;
        }
        complete(p, mp);
        return;
    }
    if (m->type == MSG_BUS_PING) {
        msg_t *pong = msg_new_reply(m, MSG_BUS_PONG);
        if (pong) {
            ((msg_bus_pong_t *)pong->body)->seq = ((msg_bus_ping_t *)m->body)->seq;
            actor_reply(a, m, &pong);
        }
        return;
    }
    if (m->type == MSG_FAULT_INJECT && !strcmp(m->from, "bus") &&
        !strcmp(((msg_fault_inject_t *)m->body)->action, "kill")) {
        /* fault injection (docs/faults.md): the thread ends as if it had
         * died: fini runs, but no goodbye; the supervisor finds out */
        log_warn("killed by fault injection");
        a->registered = false;
        actor_exit(a, "killed by fault injection");
        return;
    }
    if (m->type == MSG_ACTOR_DOWN && strcmp(m->to, a->name)) {
        msg_actor_down_t *d = m->body;
        fail_pending_to(a, d->name, d->reason);
    }
    actor_handler_fn fn = a->by_type[m->type];
    if (fn) {
        fn(a, mp, a->state);
        return;
    }
    if (strcmp(m->to, "*"))
        actor_reply_error(a, m, EPROTO, "actor %s does not handle %s", a->name,
                          msg_type_name(m->type));
}

static int on_read(void *arg)
{
    actor_t *a = arg;
    zmq_msg_t parts[3];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, a->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f);
            break;
        }
        more = zmq_msg_more(&f);
        if (n < 3)
            parts[n++] = f;
        else
            zmq_msg_close(&f);
    }
    if (n == 0)
        return -1;
    if (n == 3 && !more) {
        char from[MSG_NAME_MAX];
        size_t fl = zmq_msg_size(&parts[0]);
        if (fl >= sizeof from)
            fl = sizeof from - 1;
        memcpy(from, zmq_msg_data(&parts[0]), fl);
        from[fl] = 0;
        msg_t *m = NULL;
        err_t err = ERR_INIT;
        const void *env = zmq_msg_data(&parts[2]);
        size_t len = zmq_msg_size(&parts[2]);
        if (msg_decode(env, len, &m, &err) < 0) {
            log_warn("undecodable message from %s: %s", from, err_str(&err));
            uint64_t id, re;
            if (msg_peek_ids(env, len, &id, &re) == 0 && re == 0 && id) {
                msg_t req = {.id = id};
                snprintf(req.from, sizeof req.from, "%s", from);
                actor_reply_error(a, &req, EBADMSG, "%s: %s", a->name, err_str(&err));
            } else if (re) {
                /* an unreadable answer still ends its request: now, with
                 * the reason, rather than at the deadline */
                struct pending *p = take_pending(a, re);
                if (p && !strcmp(p->to, from))
                    complete_error(p, EBADMSG, "unreadable answer from %s to %s: %s", from,
                                   msg_type_name(p->type), err_str(&err));
                else if (p) {
                    struct pending **b = bucket(a, p->id);
                    p->next = *b;
                    *b = p;
                }
            }
            err_clear(&err);
        } else {
            snprintf(m->from, sizeof m->from, "%s", from); /* the broker's word, not the sender's */
            dispatch(a, &m);
            msg_destroy(&m);
        }
    } else {
        log_warn("malformed frame set (%d parts) dropped", n);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
    return a->exiting ? -1 : 0;
}

/* ---- timers and fds ----------------------------------------------------------- */

static void timer_unlink(actor_t *a, actor_timer_t *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        a->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    actor_timer_t *t = arg;
    actor_t *a = t->a;
    if (!t->repeat) {
        timer_unlink(a, t);
        actor_timer_fn cb = t->cb;
        void *cbarg = t->arg;
        event_free(t->ev);
        free(t);
        cb(a, cbarg);
        return;
    }
    t->cb(a, t->arg);
}

actor_timer_t *actor_timer(actor_t *a, int ms, bool repeat, actor_timer_fn cb, void *arg)
{
    actor_timer_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->a = a;
    t->cb = cb;
    t->arg = arg;
    t->repeat = repeat;
    t->ev = event_new(a->base, -1, repeat ? EV_PERSIST : 0, on_timer, t);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (!t->ev || event_add(t->ev, &tv) < 0) {
        if (t->ev)
            event_free(t->ev);
        free(t);
        return NULL;
    }
    t->next = a->timers;
    if (a->timers)
        a->timers->prev = t;
    a->timers = t;
    return t;
}

void actor_timer_cancel(actor_t *a, actor_timer_t **tp)
{
    if (!tp || !*tp)
        return;
    actor_timer_t *t = *tp;
    timer_unlink(a, t);
    event_free(t->ev);
    free(t);
    *tp = NULL;
}

static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    actor_watch_t *w = arg;
    w->cb(w->a, (int)fd, what, w->arg);
}

actor_watch_t *actor_watch(actor_t *a, int fd, short what, actor_fd_fn cb, void *arg)
{
    actor_watch_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->a = a;
    w->cb = cb;
    w->arg = arg;
    w->fd = fd;
    w->ev = event_new(a->base, fd, (short)(what | EV_PERSIST), on_watch, w);
    if (!w->ev || event_add(w->ev, NULL) < 0) {
        if (w->ev)
            event_free(w->ev);
        free(w);
        return NULL;
    }
    w->next = a->watches;
    if (a->watches)
        a->watches->prev = w;
    a->watches = w;
    return w;
}

void actor_unwatch(actor_t *a, actor_watch_t **wp)
{
    if (!wp || !*wp)
        return;
    actor_watch_t *w = *wp;
    if (w->prev)
        w->prev->next = w->next;
    else
        a->watches = w->next;
    if (w->next)
        w->next->prev = w->prev;
    event_free(w->ev);
    free(w);
    *wp = NULL;
}

/* ---- lifecycle --------------------------------------------------------------- */

static void set_phase(actor_t *a, enum phase ph)
{
    pthread_mutex_lock(&a->mu);
    a->phase = ph;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

void actor_exit(actor_t *a, const char *reason)
{
    if (!a->exiting)
        snprintf(a->exit_reason, sizeof a->exit_reason, "%s", reason ? reason : "exit");
    a->exiting = true;
    event_base_loopbreak(a->base);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    actor_t *a = arg;
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
    actor_exit(a, "stop requested");
}

static void start_failed(actor_t *a, err_t *err)
{
    pthread_mutex_lock(&a->mu);
    err_move(&a->start_err, err);
    pthread_mutex_unlock(&a->mu);
    actor_exit(a, "start failed");
}

static void on_hello(actor_t *a, msg_t **reply, void *arg)
{
    err_t err = ERR_INIT;
    if ((*reply)->status) {
        err_make(&err, (*reply)->status, "actor %s: register with bus at %s: %s", a->name,
                 a->endpoint, (*reply)->status_text ? (*reply)->status_text : "error");
        start_failed(a, &err);
        return;
    }
    a->registered = true;
    a->init_ran = true;
    if (a->def->init && a->def->init(a, a->state, &err) < 0) {
        err_wrap(&err, "actor %s: init", a->name);
        start_failed(a, &err);
        return;
    }
    set_phase(a, PH_READY);
}

/* Subscribes the actor's prefixes, then says hello; cb gets the hello's
 * answer.  Subscriptions go first: the broker handles them before the
 * hello, so the hello's answer means they are in place. */
static int join_bus(actor_t *a, actor_reply_fn cb, err_t *err)
{
    for (const char *const *s = a->def->subscribe; s && *s; s++) {
        msg_t *sub = msg_new(MSG_BUS_SUBSCRIBE);
        if (!sub)
            return err_make(err, ENOMEM, "actor %s: out of memory", a->name);
        msg_set_str(&((msg_bus_subscribe_t *)sub->body)->prefix, *s);
        if (actor_send(a, "bus", &sub, err) < 0)
            return -1;
    }
    msg_t *hello = msg_new(MSG_BUS_HELLO);
    if (!hello)
        return err_make(err, ENOMEM, "actor %s: out of memory", a->name);
    msg_set_str(&((msg_bus_hello_t *)hello->body)->name, a->name);
    ((msg_bus_hello_t *)hello->body)->pid = (uint64_t)getpid();
    return actor_request(a, "bus", &hello, a->start_timeout_ms, cb, NULL, err);
}

static int setup(actor_t *a, err_t *err)
{
    struct event_config *cfg = event_config_new();
    if (cfg) {
        /* poll again after a bounded number of callbacks: no starvation */
        event_config_set_max_dispatch_interval(cfg, NULL, 64, 0);
        a->base = event_base_new_with_config(cfg);
        event_config_free(cfg);
    }
    if (!a->base)
        return err_make(err, ENOMEM, "actor %s: event_base_new failed", a->name);
    if (!a->zctx) {
        a->zctx = zmq_ctx_new();
        a->own_ctx = true;
        if (!a->zctx)
            return err_make(err, errno, "actor %s: zmq_ctx_new: %s", a->name, zmq_strerror(errno));
        zmq_ctx_set(a->zctx, ZMQ_BLOCKY, 0);
        zmq_ctx_set(a->zctx, ZMQ_IO_THREADS, 1);
    }
    a->sock = zmq_socket(a->zctx, ZMQ_DEALER);
    if (!a->sock)
        return err_make(err, errno, "actor %s: zmq_socket: %s", a->name, zmq_strerror(errno));
    bus_sockopts(a->sock);
    zmq_setsockopt(a->sock, ZMQ_ROUTING_ID, a->name, strlen(a->name));
    if (zmq_connect(a->sock, a->endpoint) < 0)
        return err_make(err, errno, "actor %s: connect %s: %s", a->name, a->endpoint,
                        zmq_strerror(errno));
    a->zev = zev_new(a->base, a->sock, on_read, a, DRAIN_BUDGET);
    a->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!a->zev || a->stop_fd < 0)
        return err_make(err, ENOMEM, "actor %s: loop set-up failed", a->name);
    a->stop_ev = event_new(a->base, a->stop_fd, EV_READ | EV_PERSIST, on_stop, a);
    a->flush_ev = evtimer_new(a->base, flush_outbox, a);
    if (!a->stop_ev || !a->flush_ev || event_add(a->stop_ev, NULL) < 0)
        return err_make(err, ENOMEM, "actor %s: loop set-up failed", a->name);

    for (const actor_handler_t *h = a->def->handlers; h && h->fn; h++)
        if (h->type > MSG_NONE && h->type < MSG_TYPE_COUNT)
            a->by_type[h->type] = h->fn;
    return join_bus(a, on_hello, err);
}

static void on_rejoined(actor_t *a, msg_t **reply, void *arg)
{
    if ((*reply)->status)
        log_debug("actor %s: rejoin: %s", a->name,
                  (*reply)->status_text ? (*reply)->status_text : "failed");
}

int actor_rejoin(actor_t *a, err_t *err)
{
    return join_bus(a, on_rejoined, err);
}

static void teardown(actor_t *a)
{
    cancel_all_pending(a);
    if (a->def->fini)
        a->def->fini(a, a->state);
    if (a->registered) {
        msg_t *bye = msg_new(MSG_BUS_BYE);
        if (bye) {
            msg_set_str(&((msg_bus_bye_t *)bye->body)->reason, a->exit_reason);
            err_t err = ERR_INIT;
            actor_send(a, "bus", &bye, &err);
            err_clear(&err);
        }
    }
    while (a->timers) {
        actor_timer_t *t = a->timers;
        actor_timer_cancel(a, &t);
    }
    while (a->watches) {
        actor_watch_t *w = a->watches;
        actor_unwatch(a, &w);
    }
    while (a->out_head) {
        struct outbox_item *it = a->out_head;
        a->out_head = it->next;
        for (int i = 0; i < 3; i++)
            zmq_msg_close(&it->parts[i]);
        free(it);
    }
    zev_destroy(&a->zev);
    if (a->stop_ev)
        event_free(a->stop_ev);
    if (a->flush_ev)
        event_free(a->flush_ev);
    if (a->stop_fd >= 0)
        close(a->stop_fd);
    a->stop_fd = -1;
    if (a->sock) {
        /* a bye must leave before the socket goes: linger briefly for it */
        int linger = a->registered ? 100 : 0;
        zmq_setsockopt(a->sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(a->sock);
    }
    a->sock = NULL;
    if (a->own_ctx && a->zctx)
        zmq_ctx_term(a->zctx);
    if (a->base)
        event_base_free(a->base);
    a->base = NULL;
}

static void *actor_main(void *arg)
{
    actor_t *a = arg;
    log_set_component(a->name);
    log_set_sandbox(a->sandbox[0] ? a->sandbox : NULL);
    err_t err = ERR_INIT;
    if (setup(a, &err) < 0) {
        start_failed(a, &err);
    } else {
        event_base_dispatch(a->base);
    }
    teardown(a);
    pthread_mutex_lock(&a->mu);
    bool failed = a->phase == PH_STARTING;
    if (failed && !a->start_err.code)
        err_make(&a->start_err, ECANCELED, "actor %s: stopped before it was ready", a->name);
    a->phase = failed ? PH_FAILED : PH_FINISHED;
    pthread_cond_broadcast(&a->cv);
    bool detached = a->detached;
    pthread_mutex_unlock(&a->mu);
    if (detached) {
        err_clear(&a->start_err);
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
        free(a);
    }
    return NULL;
}

int actor_start(const actor_def_t *def, void *state, const actor_opts_t *opts, actor_t **out,
                err_t *err)
{
    if (!def || !def->name || !*def->name || strlen(def->name) >= MSG_NAME_MAX ||
        !strcmp(def->name, "bus") || !strcmp(def->name, "*")) {
        if (def && def->fini)
            def->fini(NULL, state);
        return err_make(err, EINVAL, "actor: invalid name '%s'", def && def->name ? def->name : "");
    }
    if (!opts || !opts->endpoint) {
        if (def->fini)
            def->fini(NULL, state);
        return err_make(err, EINVAL, "actor %s: no bus endpoint", def->name);
    }
    actor_t *a = calloc(1, sizeof *a);
    if (!a) {
        if (def->fini)
            def->fini(NULL, state);
        return err_make(err, ENOMEM, "actor: out of memory");
    }
    a->def = def;
    a->state = state;
    a->stop_fd = -1;
    a->zctx = opts->zctx;
    a->start_timeout_ms = opts->start_timeout_ms > 0 ? opts->start_timeout_ms : 5000;
    snprintf(a->name, sizeof a->name, "%s", def->name);
    snprintf(a->endpoint, sizeof a->endpoint, "%s", opts->endpoint);
    snprintf(a->sandbox, sizeof a->sandbox, "%s", opts->sandbox ? opts->sandbox : "");
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    int rc = pthread_create(&a->thread, NULL, actor_main, a);
    if (rc) {
        if (def->fini)
            def->fini(NULL, state);
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
        free(a);
        return err_make(err, rc, "actor %s: pthread_create: %s", def->name, strerror(rc));
    }
    pthread_mutex_lock(&a->mu);
    while (a->phase == PH_STARTING)
        pthread_cond_wait(&a->cv, &a->mu);
    bool ok = a->phase == PH_READY;
    pthread_mutex_unlock(&a->mu);
    if (!ok) {
        pthread_join(a->thread, NULL);
        err_move(err, &a->start_err);
        if (err && !err->code)
            err_make(err, EIO, "actor %s: failed to start", def->name);
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
        free(a);
        return err ? -err->code : -EIO;
    }
    *out = a;
    return 0;
}

bool actor_finished(actor_t *a)
{
    pthread_mutex_lock(&a->mu);
    bool done = a->phase == PH_FINISHED || a->phase == PH_FAILED;
    pthread_mutex_unlock(&a->mu);
    return done;
}

int actor_stop(actor_t **ap, int timeout_ms)
{
    if (!ap || !*ap)
        return 0;
    actor_t *a = *ap;
    *ap = NULL;
    uint64_t one = 1;
    pthread_mutex_lock(&a->mu);
    bool done = a->phase == PH_FINISHED || a->phase == PH_FAILED;
    if (!done && a->stop_fd >= 0) {
        ssize_t w = write(a->stop_fd, &one, sizeof one);
        (void)w;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    if (timeout_ms <= 0)
        timeout_ms = 5000;
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    int rc = 0;
    while (a->phase != PH_FINISHED && a->phase != PH_FAILED && rc == 0)
        rc = pthread_cond_timedwait(&a->cv, &a->mu, &deadline);
    if (rc == ETIMEDOUT) {
        a->detached = true; /* it frees itself if it ever ends */
        pthread_mutex_unlock(&a->mu);
        pthread_detach(a->thread);
        log_error("actor %s did not stop within %d ms; detached", a->name, timeout_ms);
        return -ETIMEDOUT;
    }
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    err_clear(&a->start_err);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
    return 0;
}
