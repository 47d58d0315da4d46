/* A probe actor for bus tests: runs a script on its own thread and lets the
 * test thread wait for the outcome. */
#ifndef HUSK_TEST_BUS_PROBE_H
#define HUSK_TEST_BUS_PROBE_H

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "actors/actor.h"
#include "bus/bus.h"

struct probe {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    void (*script)(actor_t *a, struct probe *p);
    /* results */
    int status;
    char text[512];
    int count;
    int events;
    char event_names[16][64];
    char event_reasons[16][256];
    long long elapsed_ms;
    struct timespec t0;
    void *user;
};

static inline long long probe_ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t0->tv_sec) * 1000LL + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

static inline void probe_finish(struct probe *p)
{
    pthread_mutex_lock(&p->mu);
    p->done++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Waits until done >= n or timeout; returns done. */
static inline int probe_wait(struct probe *p, int n, int timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->mu);
    while (p->done < n)
        if (pthread_cond_timedwait(&p->cv, &p->mu, &dl) != 0)
            break;
    int d = p->done;
    pthread_mutex_unlock(&p->mu);
    return d;
}

static inline void probe_run_script(actor_t *a, void *arg)
{
    struct probe *p = arg;
    clock_gettime(CLOCK_MONOTONIC, &p->t0);
    if (p->script)
        p->script(a, p);
}

static inline int probe_init(actor_t *a, void *state, err_t *err)
{
    actor_timer(a, 0, false, probe_run_script, state);
    return 0;
}

static inline void probe_on_event(actor_t *a, msg_t **m, void *state)
{
    struct probe *p = state;
    msg_actor_down_t *d = MSG_BODY(*m, ACTOR_DOWN, actor_down);
    pthread_mutex_lock(&p->mu);
    if (d && p->events < 16) {
        snprintf(p->event_names[p->events], 64, "%s", d->name);
        snprintf(p->event_reasons[p->events], 256, "%s", d->reason);
        p->events++;
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Records a reply's status and text, then finishes. */
static inline void probe_on_reply(actor_t *a, msg_t **reply, void *arg)
{
    struct probe *p = arg;
    pthread_mutex_lock(&p->mu);
    p->status = (*reply)->status;
    snprintf(p->text, sizeof p->text, "%s", (*reply)->status_text ? (*reply)->status_text : "");
    p->elapsed_ms = probe_ms_since(&p->t0);
    pthread_mutex_unlock(&p->mu);
    probe_finish(p);
}

static inline void probe_setup(struct probe *p)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->status = -1;
}

static inline void probe_cleanup(struct probe *p)
{
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

#endif
