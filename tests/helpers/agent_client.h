/* agent_client: a synchronous bus client for agent tests.
 *
 * A small actor ("client" by default) whose thread does the bus work while
 * the test thread calls aclient_call() and waits for the answer.  It
 * subscribes to agent.* events, keeps them in arrival order, and (with
 * auto_ack) returns the credit of every agent.output it receives to the
 * agent actor with agent.output_ack, as a real consumer would. */
#ifndef HUSK_TEST_AGENT_CLIENT_H
#define HUSK_TEST_AGENT_CLIENT_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "actors/actor.h"
#include "messages/msg.h"

#define ACLIENT_MAX_EVENTS 4096

struct aclient;
struct aclient_job {
    struct aclient *c;
    msg_t *req;
    char to[MSG_NAME_MAX];
    int timeout_ms;
    bool oneway;
    msg_t *reply;
    bool done;
    struct aclient_job *next;
};

typedef struct aclient {
    actor_t *actor;
    actor_def_t def;
    actor_handler_t handlers[8];
    const char *subs[2];
    char name[MSG_NAME_MAX];
    char agent[MSG_NAME_MAX];
    bool auto_ack;
    int efd;
    actor_watch_t *watch;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct aclient_job *jobs, *jobs_tail;
    msg_t *events[ACLIENT_MAX_EVENTS];
    int nevents;
} aclient_t;

static inline int aclient_ms_left(const struct timespec *dl)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long ms = (dl->tv_sec - now.tv_sec) * 1000 + (dl->tv_nsec - now.tv_nsec) / 1000000;
    return ms < 0 ? 0 : (int)ms;
}

static inline void aclient_deadline(struct timespec *dl, int ms)
{
    clock_gettime(CLOCK_REALTIME, dl);
    dl->tv_sec += ms / 1000;
    dl->tv_nsec += (long)(ms % 1000) * 1000000;
    if (dl->tv_nsec >= 1000000000) {
        dl->tv_sec++;
        dl->tv_nsec -= 1000000000;
    }
}

static inline void aclient_on_reply(actor_t *a, msg_t **reply, void *arg)
{
    struct aclient_job *j = arg;
    struct aclient *c = j->c;
    (void)a;
    pthread_mutex_lock(&c->mu);
    j->reply = *reply;
    *reply = NULL;
    j->done = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static inline void aclient_on_wake(actor_t *a, int fd, short what, void *arg)
{
    aclient_t *c = arg;
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        struct aclient_job *j = c->jobs;
        if (j) {
            c->jobs = j->next;
            if (!c->jobs)
                c->jobs_tail = NULL;
        }
        pthread_mutex_unlock(&c->mu);
        if (!j)
            return;
        err_t err = ERR_INIT;
        msg_t *m = j->req;
        j->req = NULL;
        if (j->oneway) {
            actor_send(a, j->to, &m, &err);
            err_clear(&err);
            free(j);
            continue;
        }
        if (actor_request(a, j->to, &m, j->timeout_ms, aclient_on_reply, j, &err) < 0) {
            msg_t *e = msg_new(MSG_BUS_ERROR);
            e->status = err.code ? err.code : EIO;
            msg_set_str(&e->status_text, err_str(&err));
            err_clear(&err);
            pthread_mutex_lock(&c->mu);
            j->reply = e;
            j->done = true;
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
        }
    }
}

static inline void aclient_on_event(actor_t *a, msg_t **m, void *state)
{
    aclient_t *c = state;
    msg_agent_output_t *o = MSG_BODY(*m, AGENT_OUTPUT, agent_output);
    if (o && c->auto_ack && o->data.len > 0) {
        msg_t *ack = msg_new(MSG_AGENT_OUTPUT_ACK);
        msg_agent_output_ack_t *b = ack->body;
        msg_set_str(&b->container_id, o->container_id);
        msg_set_str(&b->exec_id, o->exec_id);
        b->stream = o->stream;
        b->bytes = o->data.len;
        err_t err = ERR_INIT;
        actor_send(a, c->agent, &ack, &err);
        err_clear(&err);
    }
    pthread_mutex_lock(&c->mu);
    if (c->nevents < ACLIENT_MAX_EVENTS) {
        c->events[c->nevents++] = *m;
        *m = NULL;
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static inline int aclient_init(actor_t *a, void *state, err_t *err)
{
    aclient_t *c = state;
    c->watch = actor_watch(a, c->efd, EV_READ, aclient_on_wake, c);
    return c->watch ? 0 : err_make(err, ENOMEM, "client: watch");
}

/* Starts the client on the bus; agent = the agent actor's name. */
static inline int aclient_start(aclient_t *c, const actor_opts_t *bus, const char *name,
                                const char *agent, bool auto_ack, err_t *err)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name ? name : "client");
    snprintf(c->agent, sizeof c->agent, "%s", agent ? agent : "agent");
    c->auto_ack = auto_ack;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    msg_type_t ev[] = {MSG_AGENT_OUTPUT, MSG_AGENT_EXITED, MSG_AGENT_OOM, MSG_AGENT_LOST};
    for (int i = 0; i < 4; i++)
        c->handlers[i] = (actor_handler_t){ev[i], aclient_on_event};
    c->handlers[4] = (actor_handler_t){MSG_NONE, NULL};
    c->subs[0] = "agent.";
    c->subs[1] = NULL;
    c->def = (actor_def_t){
        .name = c->name, .handlers = c->handlers, .subscribe = c->subs, .init = aclient_init};
    return actor_start(&c->def, c, bus, &c->actor, err);
}

static inline void aclient_stop(aclient_t *c)
{
    actor_stop(&c->actor, 5000);
    for (int i = 0; i < c->nevents; i++)
        msg_destroy(&c->events[i]);
    c->nevents = 0;
    while (c->jobs) {
        struct aclient_job *j = c->jobs;
        c->jobs = j->next;
        msg_destroy(&j->req);
        free(j);
    }
    if (c->efd >= 0)
        close(c->efd);
    c->efd = -1;
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

static inline void aclient_post(aclient_t *c, struct aclient_job *j)
{
    pthread_mutex_lock(&c->mu);
    if (c->jobs_tail)
        c->jobs_tail->next = j;
    else
        c->jobs = j;
    c->jobs_tail = j;
    pthread_mutex_unlock(&c->mu);
    uint64_t one = 1;
    ssize_t w = write(c->efd, &one, sizeof one);
    (void)w;
}

/* Sends req (taken) to `to` with a deadline of timeout_ms; returns the job
 * to finish with aclient_finish(). */
static inline struct aclient_job *aclient_begin(aclient_t *c, const char *to, msg_t *req,
                                                int timeout_ms)
{
    struct aclient_job *j = calloc(1, sizeof *j);
    j->c = c;
    j->req = req;
    snprintf(j->to, sizeof j->to, "%s", to);
    j->timeout_ms = timeout_ms;
    aclient_post(c, j);
    return j;
}

/* Waits for the job's answer (caller owns it; NULL if none came within
 * the request's deadline + 5 s). */
static inline msg_t *aclient_finish(aclient_t *c, struct aclient_job *j)
{
    struct timespec dl;
    aclient_deadline(&dl, (j->timeout_ms > 0 ? j->timeout_ms : 30000) + 5000);
    pthread_mutex_lock(&c->mu);
    while (!j->done)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) != 0)
            break;
    bool done = j->done;
    msg_t *r = done ? j->reply : NULL;
    pthread_mutex_unlock(&c->mu);
    if (done)
        free(j);
    /* else: the callback still owns j (leaked on purpose: the test fails anyway) */
    return r;
}

/* Sends req (taken) and waits for the answer (caller owns it). */
static inline msg_t *aclient_call(aclient_t *c, const char *to, msg_t *req, int timeout_ms)
{
    return aclient_finish(c, aclient_begin(c, to, req, timeout_ms));
}

/* A one-way message (taken). */
static inline void aclient_send(aclient_t *c, const char *to, msg_t *m)
{
    struct aclient_job *j = calloc(1, sizeof *j);
    j->req = m;
    j->oneway = true;
    snprintf(j->to, sizeof j->to, "%s", to);
    aclient_post(c, j);
}

/* Waits for an event of type t (any when MSG_NONE) that matches pred (may
 * be NULL), removes it from the list and returns it (caller owns it). */
static inline msg_t *aclient_wait_event(aclient_t *c, msg_type_t t,
                                        bool (*pred)(const msg_t *, const void *), const void *arg,
                                        int timeout_ms)
{
    struct timespec dl;
    aclient_deadline(&dl, timeout_ms);
    pthread_mutex_lock(&c->mu);
    for (;;) {
        for (int i = 0; i < c->nevents; i++) {
            msg_t *m = c->events[i];
            if ((t == MSG_NONE || m->type == t) && (!pred || pred(m, arg))) {
                memmove(&c->events[i], &c->events[i + 1],
                        (size_t)(c->nevents - i - 1) * sizeof(msg_t *));
                c->nevents--;
                pthread_mutex_unlock(&c->mu);
                return m;
            }
        }
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) != 0)
            break;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Concatenates the output of (cid, eid, stream) received so far into buf
 * (NUL-terminated); sets *eof when the stream ended.  Returns the length. */
static inline size_t aclient_output(aclient_t *c, const char *cid, const char *eid, int stream,
                                    char *buf, size_t cap, bool *eof)
{
    size_t n = 0;
    if (eof)
        *eof = false;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->nevents; i++) {
        msg_agent_output_t *o = MSG_BODY(c->events[i], AGENT_OUTPUT, agent_output);
        if (!o || strcmp(o->container_id, cid) || strcmp(o->exec_id, eid) ||
            o->stream != (uint64_t)stream)
            continue;
        size_t k = o->data.len < cap - 1 - n ? o->data.len : cap - 1 - n;
        memcpy(buf + n, o->data.data, k);
        n += k;
        if (o->eof && eof)
            *eof = true;
    }
    buf[n] = 0;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* Waits until (cid, eid, stream) reached EOF; returns its output length. */
static inline size_t aclient_wait_output(aclient_t *c, const char *cid, const char *eid, int stream,
                                         char *buf, size_t cap, int timeout_ms)
{
    struct timespec dl;
    aclient_deadline(&dl, timeout_ms);
    for (;;) {
        bool eof = false;
        size_t n = aclient_output(c, cid, eid, stream, buf, cap, &eof);
        if (eof || aclient_ms_left(&dl) == 0)
            return n;
        pthread_mutex_lock(&c->mu);
        pthread_cond_timedwait(&c->cv, &c->mu, &dl);
        pthread_mutex_unlock(&c->mu);
    }
}

#endif
