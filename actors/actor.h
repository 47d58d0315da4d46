/* actor: the actor runtime.
 *
 * An actor is a thread with its own libevent loop, its own DEALER socket
 * (identity = actor name) connected to the broker, and private state that
 * only its own thread touches.  Everything it does runs as a callback on
 * its loop: message handlers, request replies and deadlines, timers and
 * extra file descriptors.  Nothing ever blocks the loop.
 *
 * Start is a handshake: actor_start() returns once the actor is registered
 * with the broker (bus.hello answered), subscribed to its events and its
 * init callback succeeded.  Stop is orderly: fini runs on the actor's own
 * thread, pending requests are completed with ECANCELED, the broker gets a
 * bus.bye (and announces actor.down), then the thread ends.
 *
 * An actor in another process joins over the bus's ipc:// endpoint with
 * the same API (actor_opts_t.endpoint, no context). */
#ifndef HUSK_ACTOR_H
#define HUSK_ACTOR_H

#include <event2/event.h>
#include <stdbool.h>

#include "common/err.h"
#include "messages/msg.h"

typedef struct actor actor_t;
typedef struct actor_timer actor_timer_t;
typedef struct actor_watch actor_watch_t;

/* A message handler.  *m is the incoming message; the handler may take it
 * (set *m = NULL) to answer later, otherwise it is freed on return. */
typedef void (*actor_handler_fn)(actor_t *a, msg_t **m, void *state);

/* A reply callback: *reply is the answer, or a synthesized bus.error with
 * status ETIMEDOUT (deadline), ECANCELED (actor stopping) or the error the
 * broker/peer sent.  The callback may take *reply. */
typedef void (*actor_reply_fn)(actor_t *a, msg_t **reply, void *arg);

typedef struct actor_handler {
    msg_type_t type;
    actor_handler_fn fn;
} actor_handler_t;

typedef struct actor_def {
    const char *name;                /* bus identity, unique per bus */
    const actor_handler_t *handlers; /* terminated by {MSG_NONE, NULL} */
    const char *const *subscribe;    /* event type prefixes, NULL-terminated; may be NULL */
    /* On the actor's thread before it is announced ready; < 0 fails start. */
    int (*init)(actor_t *a, void *state, err_t *err);
    /* Exactly once for every actor_start() call, whatever happened: on the
     * actor's thread when it stops or fails to start (a is NULL only when
     * the thread could not even be created).  The place to free state. */
    void (*fini)(actor_t *a, void *state);
} actor_def_t;

typedef struct actor_opts {
    void *zctx;           /* zmq context of the in-process bus (bus_context) */
    const char *endpoint; /* bus_endpoint() or an ipc:// endpoint */
    const char *sandbox;  /* for log lines; may be NULL */
    int start_timeout_ms; /* 0 = 5000 */
} actor_opts_t;

/* Starts an actor.  `state` is borrowed and handed to every callback.
 * Caller owns *out and must stop it with actor_stop(). */
int actor_start(const actor_def_t *def, void *state, const actor_opts_t *opts, actor_t **out,
                err_t *err);

/* Stops the actor (from another thread) and frees it; waits up to
 * timeout_ms for its thread.  Idempotent, NULLs *a.  Returns -ETIMEDOUT
 * when the thread did not finish in time (it is then detached). */
int actor_stop(actor_t **a, int timeout_ms);

/* True once the actor's loop has ended (stopped itself or failed). */
bool actor_finished(actor_t *a);

/* ---- on the actor's own thread only ------------------------------------ */

const char *actor_name(actor_t *a);
struct event_base *actor_base(actor_t *a);

/* Sends a one-way message; takes ownership of *m and NULLs it. */
int actor_send(actor_t *a, const char *to, msg_t **m, err_t *err);

/* Sends a request; cb runs exactly once, with the reply or an error.
 * timeout_ms <= 0 means 30 s.  Takes ownership of *m. */
int actor_request(actor_t *a, const char *to, msg_t **m, int timeout_ms, actor_reply_fn cb,
                  void *arg, err_t *err);

/* Answers req (to its sender, reply_to = its id).  Takes *reply. */
int actor_reply(actor_t *a, const msg_t *req, msg_t **reply);

/* Answers req with a bus.error carrying code and text. */
int actor_reply_error(actor_t *a, const msg_t *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Publishes an event to every subscriber of its type.  Takes *m. */
int actor_publish(actor_t *a, msg_t **m, err_t *err);

/* Calls cb(a, arg) after ms; repeats every ms when repeat.  The handle is
 * owned by the actor; cancel with actor_timer_cancel (a one-shot timer is
 * released after it fires: do not cancel it then).  Released at stop. */
typedef void (*actor_timer_fn)(actor_t *a, void *arg);
actor_timer_t *actor_timer(actor_t *a, int ms, bool repeat, actor_timer_fn cb, void *arg);
void actor_timer_cancel(actor_t *a, actor_timer_t **t);

/* Watches fd for EV_READ and/or EV_WRITE (persistent) until unwatched or
 * the actor stops.  fd stays the caller's. */
typedef void (*actor_fd_fn)(actor_t *a, int fd, short what, void *arg);
actor_watch_t *actor_watch(actor_t *a, int fd, short what, actor_fd_fn cb, void *arg);
void actor_unwatch(actor_t *a, actor_watch_t **w);

/* Ends the actor's loop from inside (fini runs, bye is sent). */
void actor_exit(actor_t *a, const char *reason);

/* Registers again with a broker that may be a new one (its daemon was
 * restarted, docs/state.md "Restore"): the subscriptions of the actor's
 * definition and a hello.  Harmless with the same broker (it ignores a
 * subscription it has).  From the actor's own thread. */
int actor_rejoin(actor_t *a, err_t *err);

#endif
