/* zev: a ZeroMQ socket inside a libevent loop, done right.
 *
 * ZMQ_FD is edge-triggered and only says "look at ZMQ_EVENTS".  zev
 * registers it level-triggered, re-reads ZMQ_EVENTS before deciding
 * anything, drains at most a budget of messages per wake-up (re-arming
 * itself with event_active when more are waiting, so other events get a
 * turn), and offers zev_after_send() to catch the edge a send can eat.
 * See STYLE.md "libevent + ZeroMQ: pitfalls". */
#ifndef HUSK_ZEV_H
#define HUSK_ZEV_H

#include <event2/event.h>

typedef struct zev zev_t;

/* Called once per readable message; it must receive exactly one message
 * (all its frames) with ZMQ_DONTWAIT.  Return < 0 to stop draining for
 * this wake-up (e.g. the owner is closing). */
typedef int (*zev_read_fn)(void *arg);

/* Watches sock on base.  sock and base are borrowed and must outlive the
 * zev.  Caller owns return value and must destroy it before closing sock. */
zev_t *zev_new(struct event_base *base, void *sock, zev_read_fn on_read, void *arg, int budget);

/* Call after every send on the socket: re-arms the read callback when the
 * send consumed an edge with messages waiting. */
void zev_after_send(zev_t *z);

/* True when ZMQ_EVENTS reports POLLOUT. */
int zev_writable(zev_t *z);

/* Stops watching; idempotent, NULLs *z.  Must come before zmq_close. */
void zev_destroy(zev_t **z);

#endif
