/* client: a synchronous bus client for short-lived processes (husk CLI,
 * husk-trace).  No thread, no loop: a DEALER socket joined to a bus's
 * ipc:// endpoint, one blocking call at a time, each with a deadline.
 * Clients do not register with the broker and are not supervised. */
#ifndef HUSK_CLIENT_H
#define HUSK_CLIENT_H

#include "common/err.h"
#include "messages/msg.h"

typedef struct bus_client bus_client_t;

/* Connects to endpoint under the identity `name` (unique on that bus; NULL
 * = "client-<pid>").  Caller owns return value and must destroy it. */
int bus_client_new(const char *endpoint, const char *name, bus_client_t **out, err_t *err);
void bus_client_destroy(bus_client_t **c);

/* Sends *req to `to` (takes ownership) and waits up to timeout_ms for its
 * reply; *reply is the caller's.  A reply with a non-zero status is
 * returned as an error (-status) with its text; *reply is then NULL.
 * Events that arrive meanwhile are kept (up to 4096) for bus_client_recv;
 * stale replies are dropped. */
int bus_client_call(bus_client_t *c, const char *to, msg_t **req, int timeout_ms, msg_t **reply,
                    err_t *err);

/* Sends a one-way message (takes ownership). */
int bus_client_send(bus_client_t *c, const char *to, msg_t **m, err_t *err);

/* Receives the next message of any kind within timeout_ms (events after a
 * subscription, for example).  -ETIMEDOUT when none came. */
int bus_client_recv(bus_client_t *c, int timeout_ms, msg_t **out, err_t *err);

#endif
