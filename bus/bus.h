/* bus: the broker of one sandbox's message bus.
 *
 * A ROUTER socket bound on inproc:// (actors of this process) and, when a
 * state directory is given, on ipc://<dir>/bus.sock (actors and clients in
 * other processes; the directory is created 0700).  It routes every message
 * by destination actor name, answers an unknown destination with a
 * bus.error (EHOSTUNREACH), fans events (to = "*") out to subscribers,
 * copies every message to the tap (an XPUB on inproc:// and
 * ipc://<dir>/tap.sock) for husk-trace, applies fault rules
 * (bus/faults.h), and supervises actors: an actor that says bye or stops
 * answering heartbeats is announced with an actor.down event.
 *
 * Frames: actor -> broker [to][type][envelope]; broker -> actor
 * [from][type][envelope]; tap [type][from][to][envelope][note]. */
#ifndef HUSK_BUS_H
#define HUSK_BUS_H

#include "common/err.h"
#include <stdbool.h>

typedef struct bus bus_t;

typedef struct bus_opts {
    const char *dir;    /* state directory for ipc sockets, or NULL (inproc only) */
    const char *name;   /* sandbox id, for logs and endpoint names; may be NULL */
    int supervise_ms;   /* heartbeat period; 0 = 1000, < 0 = no supervision */
    int miss_limit;     /* silent periods before actor.down; 0 = 3 */
    const char *faults; /* rules applied at start, after those in HUSK_FAULTS */
    /* bind bus.sock under a private name until bus_open_ipc(): a client that
     * waits for bus.sock to appear must find every actor already routable */
    bool hold_ipc;
} bus_opts_t;

/* Starts the broker thread.  Caller owns return value and must destroy it
 * when done.  Fails on a bad fault rule, an unusable dir, or zmq errors. */
int bus_new(const bus_opts_t *opts, bus_t **out, err_t *err);

/* Gives the held ipc socket its public name (<dir>/bus.sock); a no-op
 * unless the bus was made with hold_ipc. */
int bus_open_ipc(bus_t *bus, err_t *err);
/* Stops the broker and terminates the context; every actor must have been
 * stopped first.  Idempotent, NULLs *bus. */
void bus_destroy(bus_t **bus);

/* The zmq context actors of this process must use (borrowed). */
void *bus_context(bus_t *bus);
/* Endpoints (borrowed strings). ipc ones are NULL without a dir. */
const char *bus_endpoint(bus_t *bus);
const char *bus_ipc_endpoint(bus_t *bus);
const char *bus_tap_endpoint(bus_t *bus);
const char *bus_tap_ipc_endpoint(bus_t *bus);

/* Socket options every bus socket gets: linger 0, large HWMs. */
void bus_sockopts(void *sock);

#endif
