#include "agent/agent_actor.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/frame.h"
#include "common/clock.h"
#include "common/log.h"

#define BUCKETS           256
#define READ_BUDGET       (256 * 1024)
#define REMOVE_GRACE_MS   5000
#define REMOVE_DEFAULT_MS 10000
#define MAX_STREAMS       65536
#define PROBE_AFTER_MS    1000 /* silence, with a request waiting, before a health probe */
#define LIVENESS_MS       6000 /* default wait for the probe's answer */

struct fwd {
    uint64_t gid;    /* id on the channel */
    msg_t *stub;     /* the requester's id and name (body empty) */
    msg_type_t type; /* request type */
    struct event *timer;
    struct agent_actor *aa;
    char cid[AGENT_ID_MAX + 1], eid[AGENT_ID_MAX + 1];
    uint64_t window;
    int64_t sent_ms; /* when it went to the guest */
    struct fwd *next;
};

struct hstream {
    char cid[AGENT_ID_MAX + 1], eid[AGENT_ID_MAX + 1];
    uint64_t credit[2];
    bool eof[2];
    struct hstream *next;
};

struct agent_actor {
    agent_actor_opts_t o;
    char name[MSG_NAME_MAX];
    actor_def_t def;
    actor_t *actor;
    int fd;
    struct event *rev, *wev;
    bool wev_armed;
    agent_frame_reader_t *reader;
    agent_frame_writer_t *writer;
    bool lost;
    char lost_reason[200];
    /* liveness: once the guest has answered, a request waiting in silence
     * is followed by an agent.check probe; no answer in time = hung */
    bool guest_seen;        /* a frame came in since the channel was attached */
    int64_t last_rx_ms;     /* when the last frame came in */
    uint64_t probe_gid;     /* the probe in flight, 0 = none */
    int64_t probe_sent_ms;  /* when it was sent */
    struct event *liveness; /* the check's timer, armed while requests wait */
    uint64_t next_gid;
    struct fwd *pending[BUCKETS];
    size_t npending;
    struct hstream *streams;
    size_t nstreams;
    agent_actor_counters_t cnt; /* atomics */
};

static const struct {
    msg_type_t req, reply;
} reply_types[] = {
    {MSG_AGENT_CHECK, MSG_AGENT_HEALTH},
    {MSG_AGENT_GUEST_DETAILS, MSG_AGENT_DETAILS},
    {MSG_AGENT_CREATE_SANDBOX, MSG_AGENT_OK},
    {MSG_AGENT_DESTROY_SANDBOX, MSG_AGENT_OK},
    {MSG_AGENT_CREATE_CONTAINER, MSG_AGENT_PID},
    {MSG_AGENT_START_CONTAINER, MSG_AGENT_OK},
    {MSG_AGENT_REMOVE_CONTAINER, MSG_AGENT_OK},
    {MSG_AGENT_EXEC_PROCESS, MSG_AGENT_PID},
    {MSG_AGENT_SIGNAL_PROCESS, MSG_AGENT_OK},
    {MSG_AGENT_WAIT_PROCESS, MSG_AGENT_EXIT_STATUS},
    {MSG_AGENT_WRITE_STDIN, MSG_AGENT_WRITTEN},
    {MSG_AGENT_CLOSE_STDIN, MSG_AGENT_OK},
    {MSG_AGENT_TTY_RESIZE, MSG_AGENT_OK},
    {MSG_AGENT_PAUSE_CONTAINER, MSG_AGENT_OK},
    {MSG_AGENT_RESUME_CONTAINER, MSG_AGENT_OK},
    {MSG_AGENT_UPDATE_CONTAINER, MSG_AGENT_OK},
    {MSG_AGENT_STATS_CONTAINER, MSG_AGENT_STATS},
    {MSG_AGENT_LIST_PROCESSES, MSG_AGENT_PROCESSES},
    {MSG_AGENT_LIST_CONTAINERS, MSG_AGENT_CONTAINERS},
    {MSG_AGENT_MOUNT_STORAGES, MSG_AGENT_OK},
    {MSG_AGENT_UPDATE_INTERFACE, MSG_AGENT_INTERFACE},
    {MSG_AGENT_UPDATE_ROUTES, MSG_AGENT_ROUTES},
    {MSG_AGENT_ADD_ARP_NEIGHBORS, MSG_AGENT_OK},
    {MSG_AGENT_LIST_INTERFACES, MSG_AGENT_INTERFACES},
    {MSG_AGENT_LIST_ROUTES, MSG_AGENT_ROUTES},
    {MSG_FAULT_INJECT, MSG_AGENT_OK}, /* agent-exit, agent-hang: for husk-agent */
};
#define N_REQ (sizeof reply_types / sizeof reply_types[0])

msg_type_t agent_reply_type(msg_type_t t)
{
    for (size_t i = 0; i < N_REQ; i++)
        if (reply_types[i].req == t)
            return reply_types[i].reply;
    return MSG_NONE;
}

#define CNT_ADD(aa, f, n) __atomic_add_fetch(&(aa)->cnt.f, (n), __ATOMIC_RELAXED)

void agent_actor_counters(agent_actor_t *aa, agent_actor_counters_t *out)
{
    out->frames_in = __atomic_load_n(&aa->cnt.frames_in, __ATOMIC_RELAXED);
    out->frames_out = __atomic_load_n(&aa->cnt.frames_out, __ATOMIC_RELAXED);
    out->dropped_replies = __atomic_load_n(&aa->cnt.dropped_replies, __ATOMIC_RELAXED);
    out->dropped_events = __atomic_load_n(&aa->cnt.dropped_events, __ATOMIC_RELAXED);
    out->timeouts = __atomic_load_n(&aa->cnt.timeouts, __ATOMIC_RELAXED);
    out->lost = __atomic_load_n(&aa->cnt.lost, __ATOMIC_RELAXED);
}

/* ---- streams (host-side credit) -------------------------------------------- */

static struct hstream *stream_find(struct agent_actor *aa, const char *cid, const char *eid)
{
    for (struct hstream *s = aa->streams; s; s = s->next)
        if (!strcmp(s->cid, cid) && !strcmp(s->eid, eid))
            return s;
    return NULL;
}

static void stream_add(struct agent_actor *aa, const char *cid, const char *eid, uint64_t window)
{
    struct hstream *s = stream_find(aa, cid, eid);
    if (!s) {
        if (aa->nstreams >= MAX_STREAMS)
            return; /* output on it will then be refused: the guest is disconnected */
        s = calloc(1, sizeof *s);
        if (!s)
            return;
        snprintf(s->cid, sizeof s->cid, "%s", cid);
        snprintf(s->eid, sizeof s->eid, "%s", eid);
        s->next = aa->streams;
        aa->streams = s;
        aa->nstreams++;
    }
    s->credit[0] = s->credit[1] = window ? window : AGENT_OUTPUT_WINDOW;
    s->eof[0] = s->eof[1] = false;
}

/* Restore: the guest's streams as it listed them (it restarts their
 * credit from AGENT_OUTPUT_WINDOW when it answers the list).  Only ids
 * the guest would accept; the runtime judges the rest of the list. */
static void streams_listed(struct agent_actor *aa, const msg_agent_containers_t *b)
{
    size_t n = b->container_ids.n;
    if (b->exec_ids.n != n || b->exited.n != n)
        return;
    for (size_t i = 0; i < n; i++)
        if (!b->exited.v[i] && strlen(b->container_ids.v[i]) <= AGENT_ID_MAX &&
            strlen(b->exec_ids.v[i]) <= AGENT_ID_MAX)
            stream_add(aa, b->container_ids.v[i], b->exec_ids.v[i], 0);
}

static void streams_drop(struct agent_actor *aa, const char *cid)
{
    for (struct hstream **pp = &aa->streams; *pp;) {
        struct hstream *s = *pp;
        if (!cid || !strcmp(s->cid, cid)) {
            *pp = s->next;
            free(s);
            aa->nstreams--;
        } else {
            pp = &s->next;
        }
    }
}

/* ---- pending requests -------------------------------------------------------- */

static struct fwd **bucket(struct agent_actor *aa, uint64_t gid)
{
    return &aa->pending[gid % BUCKETS];
}

static struct fwd *take_fwd(struct agent_actor *aa, uint64_t gid)
{
    for (struct fwd **pp = bucket(aa, gid); *pp; pp = &(*pp)->next)
        if ((*pp)->gid == gid) {
            struct fwd *f = *pp;
            *pp = f->next;
            aa->npending--;
            return f;
        }
    return NULL;
}

static void fwd_free(struct fwd *f)
{
    if (f->timer)
        event_free(f->timer);
    msg_destroy(&f->stub);
    free(f);
}

static void fwd_fail(struct agent_actor *aa, struct fwd *f, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fwd_fail(struct agent_actor *aa, struct fwd *f, int code, const char *fmt, ...)
{
    va_list ap;
    char *text = NULL;
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    actor_reply_error(aa->actor, f->stub, code, "%s", text ? text : "agent error");
    free(text);
    fwd_free(f);
}

static void on_fwd_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct fwd *f = arg;
    struct agent_actor *aa = f->aa;
    if (take_fwd(aa, f->gid) != f)
        return;
    CNT_ADD(aa, timeouts, 1);
    log_warn("guest did not answer %s (guest id %llu) in time", msg_type_name(f->type),
             (unsigned long long)f->gid);
    fwd_fail(aa, f, ETIMEDOUT, "agent: the guest did not answer %s in time",
             msg_type_name(f->type));
}

/* ---- the channel ----------------------------------------------------------- */

static void chan_lost(struct agent_actor *aa, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void chan_lost_code(struct agent_actor *aa, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void chan_flush(struct agent_actor *aa)
{
    if (aa->lost)
        return;
    err_t err = ERR_INIT;
    int r = agent_frame_writer_flush(aa->writer, aa->fd, &err);
    if (r < 0) {
        chan_lost(aa, "%s", err_str(&err));
        err_clear(&err);
        return;
    }
    bool want = r == 1;
    if (want && !aa->wev_armed)
        event_add(aa->wev, NULL);
    else if (!want && aa->wev_armed)
        event_del(aa->wev);
    aa->wev_armed = want;
}

/* Disconnects the guest: pending requests fail with `code`. */
static void chan_lost_code(struct agent_actor *aa, int code, const char *fmt, va_list ap)
{
    if (aa->lost)
        return;
    vsnprintf(aa->lost_reason, sizeof aa->lost_reason, fmt, ap);
    aa->lost = true;
    aa->probe_gid = 0;
    if (aa->liveness)
        evtimer_del(aa->liveness);
    __atomic_store_n(&aa->cnt.lost, true, __ATOMIC_RELAXED);
    if (aa->rev)
        event_del(aa->rev);
    if (aa->wev)
        event_del(aa->wev);
    aa->wev_armed = false;
    if (aa->fd >= 0)
        close(aa->fd);
    aa->fd = -1;
    agent_frame_writer_reset(aa->writer);
    agent_frame_reader_reset(aa->reader);
    size_t n = aa->npending;
    log_error("agent channel lost: %s (%zu requests pending)", aa->lost_reason, n);
    for (int i = 0; i < BUCKETS; i++)
        while (aa->pending[i]) {
            struct fwd *f = aa->pending[i];
            aa->pending[i] = f->next;
            aa->npending--;
            fwd_fail(aa, f, code, "agent channel lost: %s", aa->lost_reason);
        }
    streams_drop(aa, NULL);
    msg_t *m = msg_new(MSG_AGENT_LOST);
    if (m) {
        msg_set_str(&((msg_agent_lost_t *)m->body)->reason, aa->lost_reason);
        ((msg_agent_lost_t *)m->body)->pending = n;
        err_t err = ERR_INIT;
        if (actor_publish(aa->actor, &m, &err) < 0)
            log_warn("publish agent.lost: %s", err_str(&err));
        err_clear(&err);
        msg_destroy(&m);
    }
}

static void chan_lost(struct agent_actor *aa, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    chan_lost_code(aa, ECONNRESET, fmt, ap);
    va_end(ap);
}

/* ---- liveness ---------------------------------------------------------------
 * A guest that stops answering (a hung agent, a wedged guest kernel) would
 * cost every request its full deadline.  So while a request with a deadline
 * waits and the guest has been silent for PROBE_AFTER_MS, the actor sends
 * an agent.check of its own; when that goes unanswered for liveness_ms the
 * guest is declared hung: the channel is dropped as if it had closed
 * (pending requests fail with ETIMEDOUT, agent.lost is published).  The
 * guest agent answers in order on one loop, so the probe's answer only
 * waits for the request being handled; its slowest synchronous handlers
 * (create_sandbox's mounts, a container's create) take about a second
 * under TCG.  Before the guest's first frame (the boot) nothing is probed:
 * agent.connect's own deadline covers a slow boot. */

static int liveness_ms(const struct agent_actor *aa)
{
    return aa->o.liveness_ms > 0 ? aa->o.liveness_ms : LIVENESS_MS;
}

static void liveness_arm(struct agent_actor *aa, int64_t ms)
{
    if (ms < 1)
        ms = 1;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(aa->liveness, &tv);
}

/* The oldest request that waits for the guest with a deadline, or NULL. */
static const struct fwd *oldest_timed(const struct agent_actor *aa)
{
    const struct fwd *o = NULL;
    for (int i = 0; i < BUCKETS; i++)
        for (const struct fwd *f = aa->pending[i]; f; f = f->next)
            if (f->timer && (!o || f->sent_ms < o->sent_ms))
                o = f;
    return o;
}

static void chan_hung(struct agent_actor *aa, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void chan_hung(struct agent_actor *aa, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    chan_lost_code(aa, ETIMEDOUT, fmt, ap);
    va_end(ap);
}

static int chan_send(struct agent_actor *aa, msg_t *m, uint64_t gid, err_t *err);

static void on_liveness(evutil_socket_t fd, short what, void *arg)
{
    struct agent_actor *aa = arg;
    if (aa->lost || !aa->guest_seen || aa->o.liveness_ms < 0)
        return;
    int64_t now = clock_mono_ms();
    const struct fwd *o = oldest_timed(aa);
    if (aa->probe_gid) {
        int64_t waited = now - aa->probe_sent_ms;
        if (waited < liveness_ms(aa)) {
            liveness_arm(aa, liveness_ms(aa) - waited);
            return;
        }
        CNT_ADD(aa, timeouts, 1);
        if (o)
            chan_hung(aa,
                      "the agent is not responding: no answer to a health check in %d ms "
                      "(%s waiting for %lld ms)",
                      liveness_ms(aa), msg_type_name(o->type), (long long)(now - o->sent_ms));
        else
            chan_hung(aa, "the agent is not responding: no answer to a health check in %d ms",
                      liveness_ms(aa));
        return;
    }
    if (!o)
        return; /* nothing waits: the next request arms the timer again */
    int64_t since = o->sent_ms > aa->last_rx_ms ? o->sent_ms : aa->last_rx_ms;
    if (now - since < PROBE_AFTER_MS) {
        liveness_arm(aa, PROBE_AFTER_MS - (now - since));
        return;
    }
    msg_t *m = msg_new(MSG_AGENT_CHECK);
    err_t err = ERR_INIT;
    uint64_t gid = ++aa->next_gid;
    if (!m || chan_send(aa, m, gid, &err) < 0) {
        log_warn("liveness probe: %s", m ? err_str(&err) : "out of memory");
        err_clear(&err);
        msg_destroy(&m);
        liveness_arm(aa, PROBE_AFTER_MS);
        return;
    }
    msg_destroy(&m);
    if (aa->lost)
        return;
    log_debug("guest silent for %lld ms with %s waiting: health probe (guest id %llu)",
              (long long)(now - since), msg_type_name(o->type), (unsigned long long)gid);
    aa->probe_gid = gid;
    aa->probe_sent_ms = now;
    liveness_arm(aa, liveness_ms(aa));
}

/* A request with a deadline went to the guest: make sure someone watches. */
static void liveness_watch(struct agent_actor *aa)
{
    if (aa->liveness && aa->guest_seen && aa->o.liveness_ms >= 0 &&
        !evtimer_pending(aa->liveness, NULL))
        liveness_arm(aa, PROBE_AFTER_MS);
}

/* Queues m (re-addressed to the guest under gid) on the channel. */
static int chan_send(struct agent_actor *aa, msg_t *m, uint64_t gid, err_t *err)
{
    m->id = gid;
    m->reply_to = 0;
    snprintf(m->from, sizeof m->from, "%s", aa->name);
    snprintf(m->to, sizeof m->to, "guest");
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = msg_encode(m, &buf, &len, err);
    if (rc < 0)
        return rc;
    rc = agent_frame_writer_push(aa->writer, buf, len, err);
    free(buf);
    if (rc < 0)
        return rc;
    CNT_ADD(aa, frames_out, 1);
    chan_flush(aa);
    return 0;
}

static void send_ack(struct agent_actor *aa, const char *cid, const char *eid, uint64_t stream,
                     uint64_t bytes)
{
    msg_t *m = msg_new(MSG_AGENT_OUTPUT_ACK);
    if (!m)
        return;
    msg_agent_output_ack_t *b = m->body;
    msg_set_str(&b->container_id, cid);
    msg_set_str(&b->exec_id, eid);
    b->stream = stream;
    b->bytes = bytes;
    struct hstream *s = stream_find(aa, cid, eid);
    if (s && stream >= 1 && stream <= 2)
        s->credit[stream - 1] += bytes;
    err_t err = ERR_INIT;
    if (chan_send(aa, m, ++aa->next_gid, &err) < 0) {
        log_warn("output_ack: %s", err_str(&err));
        err_clear(&err);
    }
    msg_destroy(&m);
}

/* A reply from the guest. */
static void on_guest_reply(struct agent_actor *aa, msg_t **mp)
{
    msg_t *m = *mp;
    if (aa->probe_gid && m->reply_to == aa->probe_gid) {
        aa->probe_gid = 0; /* alive: whatever it answered, it answered */
        liveness_arm(aa, PROBE_AFTER_MS); /* not the probe's long wait */
        return;
    }
    struct fwd *f = take_fwd(aa, m->reply_to);
    if (!f) {
        CNT_ADD(aa, dropped_replies, 1);
        log_warn("guest reply %s to unknown or expired id %llu dropped", msg_type_name(m->type),
                 (unsigned long long)m->reply_to);
        return;
    }
    msg_type_t want = agent_reply_type(f->type);
    if (m->type != want && m->type != MSG_BUS_ERROR) {
        log_warn("guest answered %s with %s", msg_type_name(f->type), msg_type_name(m->type));
        fwd_fail(aa, f, EPROTO, "agent: the guest answered %s with %s", msg_type_name(f->type),
                 msg_type_name(m->type));
        return;
    }
    if (m->type == MSG_BUS_ERROR && !m->status)
        m->status = EIO;
    if (m->type != MSG_BUS_ERROR && m->status == 0) {
        if (f->type == MSG_AGENT_CREATE_CONTAINER || f->type == MSG_AGENT_EXEC_PROCESS)
            stream_add(aa, f->cid, f->eid, f->window);
        else if (f->type == MSG_AGENT_LIST_CONTAINERS)
            streams_listed(aa, m->body);
        else if (f->type == MSG_AGENT_REMOVE_CONTAINER)
            streams_drop(aa, f->cid);
    }
    m->reply_to = 0;
    actor_reply(aa->actor, f->stub, mp);
    fwd_free(f);
}

/* An event from the guest. */
static int on_guest_event(struct agent_actor *aa, msg_t **mp)
{
    msg_t *m = *mp;
    err_t err = ERR_INIT;
    char cid[AGENT_ID_MAX + 1] = "", eid[AGENT_ID_MAX + 1] = "";
    uint64_t stream = 0, len = 0;
    switch (m->type) {
    case MSG_AGENT_OUTPUT: {
        msg_agent_output_t *b = m->body;
        struct hstream *s = stream_find(aa, b->container_id, b->exec_id);
        if (b->stream != 1 && b->stream != 2) {
            chan_lost(aa, "guest sent output on stream %llu", (unsigned long long)b->stream);
            return -1;
        }
        if (!s) {
            chan_lost(aa, "guest sent output for %.64s/%.64s, which it never started",
                      b->container_id, b->exec_id);
            return -1;
        }
        uint64_t *credit = &s->credit[b->stream - 1];
        if (b->data.len > *credit || s->eof[b->stream - 1]) {
            chan_lost(aa,
                      "guest flooded: %zu bytes of output on %.64s/%.64s stream %llu with %llu "
                      "bytes of credit%s",
                      b->data.len, b->container_id, b->exec_id, (unsigned long long)b->stream,
                      (unsigned long long)*credit,
                      s->eof[b->stream - 1] ? " after end of stream" : "");
            return -1;
        }
        *credit -= b->data.len;
        if (b->eof)
            s->eof[b->stream - 1] = true;
        snprintf(cid, sizeof cid, "%s", b->container_id);
        snprintf(eid, sizeof eid, "%s", b->exec_id);
        stream = b->stream;
        len = b->data.len;
        break;
    }
    case MSG_AGENT_EXITED:
    case MSG_AGENT_OOM:
        break;
    default:
        CNT_ADD(aa, dropped_events, 1);
        log_warn("unexpected %s from the guest dropped", msg_type_name(m->type));
        return 0;
    }
    m->status = 0;
    if (actor_publish(aa->actor, mp, &err) < 0) {
        chan_lost(aa, "cannot publish guest events: %s", err_str(&err));
        err_clear(&err);
        return -1;
    }
    if (aa->o.auto_ack && len > 0)
        send_ack(aa, cid, eid, stream, len);
    return 0;
}

static int on_frame(void *arg, const uint8_t *buf, size_t len)
{
    struct agent_actor *aa = arg;
    CNT_ADD(aa, frames_in, 1);
    aa->last_rx_ms = clock_mono_ms();
    if (!aa->guest_seen) {
        aa->guest_seen = true;
        liveness_watch(aa);
    }
    msg_t *m = NULL;
    err_t err = ERR_INIT;
    if (msg_decode(buf, len, &m, &err) < 0) {
        chan_lost(aa, "undecodable frame from the guest (%zu bytes): %s", len, err_str(&err));
        err_clear(&err);
        return -EBADMSG;
    }
    if (m->reply_to) {
        on_guest_reply(aa, &m);
    } else if (on_guest_event(aa, &m) < 0) {
        msg_destroy(&m);
        return -EPIPE;
    }
    msg_destroy(&m);
    return aa->lost ? -EPIPE : 0;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct agent_actor *aa = arg;
    if (aa->lost)
        return;
    err_t err = ERR_INIT;
    int r = agent_frame_read(aa->reader, aa->fd, READ_BUDGET, on_frame, aa, &err);
    if (r < 0 && !aa->lost) {
        if (r == -EPIPE)
            chan_lost(aa, "the guest closed the channel (%s)", err_str(&err));
        else
            chan_lost(aa, "%s", err_str(&err));
    }
    err_clear(&err);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    chan_flush(arg);
}

/* ---- bus side --------------------------------------------------------------- */

static void on_request(actor_t *a, msg_t **mp, void *state)
{
    struct agent_actor *aa = state;
    msg_t *m = *mp;
    err_t err = ERR_INIT;
    if (m->type == MSG_AGENT_OUTPUT_ACK) { /* one-way */
        msg_agent_output_ack_t *b = m->body;
        if (aa->lost)
            return;
        struct hstream *s = stream_find(aa, b->container_id, b->exec_id);
        /* an ack for a stream not (or no longer, or not yet after a
         * restore) known here is dropped: guest and host credit stay equal */
        if (!s || b->stream < 1 || b->stream > 2)
            return;
        s->credit[b->stream - 1] += b->bytes;
        if (chan_send(aa, m, ++aa->next_gid, &err) < 0) {
            log_warn("output_ack from %s: %s", m->from, err_str(&err));
            err_clear(&err);
        }
        return;
    }
    if (m->reply_to)
        return; /* a stray reply */
    if (aa->lost) {
        actor_reply_error(a, m, ENOTCONN, "agent channel lost: %s", aa->lost_reason);
        return;
    }
    size_t maxp = aa->o.max_pending ? aa->o.max_pending : 4096;
    if (aa->npending >= maxp) {
        actor_reply_error(a, m, ENOBUFS, "agent: %zu requests already pending at the guest",
                          aa->npending);
        return;
    }
    struct fwd *f = calloc(1, sizeof *f);
    msg_t *stub = msg_new(MSG_AGENT_OK);
    if (!f || !stub) {
        free(f);
        msg_destroy(&stub);
        actor_reply_error(a, m, ENOMEM, "agent: out of memory");
        return;
    }
    stub->id = m->id;
    memcpy(stub->from, m->from, sizeof stub->from);
    f->stub = stub;
    f->type = m->type;
    f->aa = aa;
    int timeout = aa->o.request_timeout_ms > 0 ? aa->o.request_timeout_ms : 30000;
    if (m->type == MSG_AGENT_CREATE_CONTAINER) {
        msg_agent_create_container_t *b = m->body;
        snprintf(f->cid, sizeof f->cid, "%s", b->container_id);
        f->window = b->output_window;
    } else if (m->type == MSG_AGENT_EXEC_PROCESS) {
        msg_agent_exec_process_t *b = m->body;
        snprintf(f->cid, sizeof f->cid, "%s", b->container_id);
        snprintf(f->eid, sizeof f->eid, "%s", b->exec_id);
        f->window = b->output_window;
    } else if (m->type == MSG_AGENT_REMOVE_CONTAINER) {
        msg_agent_remove_container_t *b = m->body;
        snprintf(f->cid, sizeof f->cid, "%s", b->container_id);
        uint64_t t = (b->timeout_ms ? b->timeout_ms : REMOVE_DEFAULT_MS) + REMOVE_GRACE_MS;
        timeout = t > 3600000 ? 3600000 : (int)t;
    } else if (m->type == MSG_AGENT_WAIT_PROCESS) {
        timeout = 0; /* answered at exit */
    }
    f->gid = ++aa->next_gid;
    if (chan_send(aa, m, f->gid, &err) < 0) {
        actor_reply_error(a, stub, err.code ? err.code : EIO, "agent: %s", err_str(&err));
        err_clear(&err);
        fwd_free(f);
        return;
    }
    if (aa->lost) { /* the send found the channel gone */
        actor_reply_error(a, stub, ENOTCONN, "agent channel lost: %s", aa->lost_reason);
        fwd_free(f);
        return;
    }
    f->sent_ms = clock_mono_ms();
    if (timeout > 0) {
        f->timer = evtimer_new(actor_base(a), on_fwd_timeout, f);
        struct timeval tv = {timeout / 1000, (timeout % 1000) * 1000};
        if (f->timer)
            evtimer_add(f->timer, &tv);
    }
    struct fwd **b = bucket(aa, f->gid);
    f->next = *b;
    *b = f;
    aa->npending++;
    if (f->timer)
        liveness_watch(aa);
}

/* Watches a connected channel fd (taken). */
static int chan_attach(struct agent_actor *aa, int fd, err_t *err)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    if (aa->rev)
        event_free(aa->rev);
    if (aa->wev)
        event_free(aa->wev);
    aa->fd = fd;
    aa->wev_armed = false;
    agent_frame_writer_reset(aa->writer);
    agent_frame_reader_reset(aa->reader);
    aa->rev = event_new(actor_base(aa->actor), fd, EV_READ | EV_PERSIST, on_read, aa);
    aa->wev = event_new(actor_base(aa->actor), fd, EV_WRITE | EV_PERSIST, on_write, aa);
    if (!aa->rev || !aa->wev || event_add(aa->rev, NULL) < 0)
        return err_make(err, ENOMEM, "agent actor: cannot watch the channel");
    aa->lost = false;
    aa->guest_seen = false;
    aa->probe_gid = 0;
    __atomic_store_n(&aa->cnt.lost, false, __ATOMIC_RELAXED);
    return 0;
}

static int aa_init(actor_t *a, void *state, err_t *err)
{
    struct agent_actor *aa = state;
    aa->actor = a;
    if (!(aa->liveness = evtimer_new(actor_base(a), on_liveness, aa))) {
        if (aa->fd >= 0)
            close(aa->fd);
        aa->fd = -1;
        return err_make(err, ENOMEM, "agent actor: out of memory");
    }
    if (aa->fd < 0) {
        /* no channel yet: agent.connect brings one */
        aa->lost = true;
        snprintf(aa->lost_reason, sizeof aa->lost_reason, "not connected yet");
        return 0;
    }
    int fd = aa->fd;
    aa->fd = -1;
    return chan_attach(aa, fd, err);
}

/* ---- agent.connect: the channel is a unix socket that listens already
 * (qemu's chardev, or the local backend's); retry until it accepts, then
 * answer with the guest's health check (so the answer means "agent up"). */

struct connect_op {
    struct agent_actor *aa;
    msg_t *req;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct timespec deadline;
    int timeout_ms;
    struct event *retry;
};

static void connect_try(evutil_socket_t unused, short what, void *arg)
{
    struct connect_op *op = arg;
    struct agent_actor *aa = op->aa;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, op->path, sizeof sa.sun_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int e = 0;
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        e = errno;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    if (fd < 0) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        bool late = now.tv_sec > op->deadline.tv_sec ||
                    (now.tv_sec == op->deadline.tv_sec && now.tv_nsec >= op->deadline.tv_nsec);
        if ((e == ENOENT || e == ECONNREFUSED || e == EAGAIN) && !late) {
            struct timeval tv = {0, 20000};
            evtimer_add(op->retry, &tv);
            return;
        }
        actor_reply_error(aa->actor, op->req, late ? ETIMEDOUT : e, "agent: connect to %s: %s",
                          op->path, late ? "no answer in time" : strerror(e));
        goto done;
    }
    err_t err = ERR_INIT;
    if (chan_attach(aa, fd, &err) < 0) {
        actor_reply_error(aa->actor, op->req, err.code, "%s", err_str(&err));
        err_clear(&err);
        goto done;
    }
    log_info("agent channel connected: %s", op->path);
    /* the health check answers the connect request */
    msg_t *check = msg_new(MSG_AGENT_CHECK);
    check->id = op->req->id;
    memcpy(check->from, op->req->from, sizeof check->from);
    int saved = aa->o.request_timeout_ms;
    aa->o.request_timeout_ms = op->timeout_ms;
    on_request(aa->actor, &check, aa);
    aa->o.request_timeout_ms = saved;
    msg_destroy(&check);
done:
    event_free(op->retry);
    msg_destroy(&op->req);
    free(op);
}

static void on_connect(actor_t *a, msg_t **mp, void *state)
{
    struct agent_actor *aa = state;
    msg_agent_connect_t *b = (*mp)->body;
    if (!aa->lost) {
        actor_reply_error(a, *mp, EISCONN, "agent: already connected");
        return;
    }
    struct connect_op *op = calloc(1, sizeof *op);
    if (!op || strlen(b->socket) >= sizeof op->path || b->socket[0] != '/') {
        free(op);
        actor_reply_error(a, *mp, EINVAL, "agent: connect: `%s` is not an absolute socket path",
                          b->socket);
        return;
    }
    op->aa = aa;
    op->req = *mp;
    *mp = NULL;
    snprintf(op->path, sizeof op->path, "%s", b->socket);
    op->timeout_ms = b->timeout_ms ? (int)b->timeout_ms : 30000;
    clock_gettime(CLOCK_MONOTONIC, &op->deadline);
    op->deadline.tv_sec += op->timeout_ms / 1000;
    op->deadline.tv_nsec += (long)(op->timeout_ms % 1000) * 1000000L;
    if (op->deadline.tv_nsec >= 1000000000L) {
        op->deadline.tv_sec++;
        op->deadline.tv_nsec -= 1000000000L;
    }
    op->retry = evtimer_new(actor_base(a), connect_try, op);
    connect_try(-1, 0, op);
}

static void aa_fini(actor_t *a, void *state)
{
    struct agent_actor *aa = state;
    for (int i = 0; i < BUCKETS; i++)
        while (aa->pending[i]) {
            struct fwd *f = aa->pending[i];
            aa->pending[i] = f->next;
            aa->npending--;
            fwd_fail(aa, f, ECANCELED, "agent actor stopping");
        }
    if (aa->liveness)
        event_free(aa->liveness);
    aa->liveness = NULL;
    if (aa->rev)
        event_free(aa->rev);
    if (aa->wev)
        event_free(aa->wev);
    aa->rev = aa->wev = NULL;
    if (aa->fd >= 0)
        close(aa->fd);
    aa->fd = -1;
    streams_drop(aa, NULL);
}

static actor_handler_t handlers[N_REQ + 3];
static const char *const no_subs[] = {NULL};

static void build_handlers(void)
{
    size_t n = 0;
    for (size_t i = 0; i < N_REQ; i++)
        handlers[n++] = (actor_handler_t){reply_types[i].req, on_request};
    handlers[n++] = (actor_handler_t){MSG_AGENT_OUTPUT_ACK, on_request};
    handlers[n++] = (actor_handler_t){MSG_AGENT_CONNECT, on_connect};
    handlers[n] = (actor_handler_t){MSG_NONE, NULL};
}

int agent_actor_start(const actor_opts_t *bus, const agent_actor_opts_t *opts, agent_actor_t **out,
                      err_t *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, build_handlers);
    if (!opts)
        return err_make(err, EINVAL, "agent actor: no options");
    struct agent_actor *aa = calloc(1, sizeof *aa);
    if (!aa) {
        if (opts->fd >= 0)
            close(opts->fd);
        return err_make(err, ENOMEM, "agent actor: out of memory");
    }
    aa->o = *opts;
    aa->fd = opts->fd; /* -1: wait for agent.connect */
    snprintf(aa->name, sizeof aa->name, "%s", opts->name ? opts->name : AGENT_ACTOR_NAME);
    aa->o.name = aa->name;
    aa->reader = agent_frame_reader_new(opts->frame_max);
    aa->writer = agent_frame_writer_new(opts->queue_max, opts->frame_max);
    if (!aa->reader || !aa->writer) {
        agent_frame_reader_destroy(&aa->reader);
        agent_frame_writer_destroy(&aa->writer);
        if (aa->fd >= 0)
            close(aa->fd);
        free(aa);
        return err_make(err, ENOMEM, "agent actor: out of memory");
    }
    aa->def = (actor_def_t){
        .name = aa->name,
        .handlers = handlers,
        .subscribe = no_subs,
        .init = aa_init,
        .fini = aa_fini,
    };
    int rc = actor_start(&aa->def, aa, bus, &aa->actor, err);
    if (rc < 0) {
        if (aa->fd >= 0)
            close(aa->fd);
        agent_frame_reader_destroy(&aa->reader);
        agent_frame_writer_destroy(&aa->writer);
        free(aa);
        return rc;
    }
    *out = aa;
    return 0;
}

int agent_actor_stop(agent_actor_t **ap, int timeout_ms)
{
    if (!ap || !*ap)
        return 0;
    agent_actor_t *aa = *ap;
    *ap = NULL;
    int rc = actor_stop(&aa->actor, timeout_ms);
    if (rc == -ETIMEDOUT)
        return rc; /* its thread still uses aa: leak rather than free under it */
    agent_frame_reader_destroy(&aa->reader);
    agent_frame_writer_destroy(&aa->writer);
    free(aa);
    return rc;
}
