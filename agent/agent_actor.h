/* agent_actor: the host end of the agent protocol.
 *
 * The `agent` actor bridges the bus and the agent channel, a connected
 * stream descriptor: the unix socket of QEMU's virtio-serial chardev, or a
 * socketpair end for the local backend.
 *
 * - A request of an agent.* type sent to the actor by any other actor is
 *   forwarded to the guest as a frame (agent/frame.h) under a fresh
 *   guest-side id; the guest's answer is mapped back to the requester as a
 *   reply to its request (bus.error with the guest's status and text on
 *   failure).  The requester's own deadline (actor_request) still applies;
 *   the actor also gives up on its side after request_timeout_ms (ETIMEDOUT)
 *   except for agent.wait_process, which is answered when the process
 *   exits, and agent.remove_container, which gets its timeout_ms + 5 s.
 * - agent.output_ack is one-way: forwarded, never answered.
 * - Guest events (agent.output, agent.exited, agent.oom) are published on
 *   the bus.
 *
 * The guest is untrusted.  Every frame is bounded (frame_max, refused
 * before any allocation) and decoded with full validation; a reply whose
 * id is not pending is dropped and logged; a reply of the wrong type
 * becomes an EPROTO error.  The guest is disconnected — the channel closed,
 * every pending request failed with ECONNRESET, an agent.lost event
 * published with the reason, and later requests failed with ENOTCONN — when
 * it sends an undecodable frame, an impossible length, output beyond the
 * credit the host granted (agent.output_ack), more than the bus can take,
 * or when it closes the channel; and, with ETIMEDOUT for the pending
 * requests, when it stops answering: once the guest has answered a first
 * time, a request with a deadline that waits in silence for a second is
 * followed by a health probe (agent.check), and a probe unanswered for
 * liveness_ms means the guest is hung.  Reads are budgeted per loop turn so a
 * flooding guest cannot starve the actor's other work.
 *
 * Output credit is tracked on the host too: a stream gets the
 * output_window of its create_container / exec_process (default
 * AGENT_OUTPUT_WINDOW) when the guest confirms it, and every
 * agent.output_ack passing through adds to it. */
#ifndef HUSK_AGENT_ACTOR_H
#define HUSK_AGENT_ACTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actors/actor.h"
#include "common/err.h"

#define AGENT_ACTOR_NAME "agent"

typedef struct agent_actor agent_actor_t;

typedef struct agent_actor_opts {
    const char *name;       /* bus identity; NULL = AGENT_ACTOR_NAME */
    int fd;                 /* connected channel (taken, even on failure), or -1: the
                             * channel comes later with agent.connect {socket}, which
                             * retries until the listening socket accepts and is
                             * answered with the guest's agent.health */
    int request_timeout_ms; /* the actor's own wait for a guest answer; 0 = 30000 */
    size_t frame_max;       /* largest frame payload accepted; 0 = AGENT_FRAME_MAX */
    size_t queue_max;       /* bound of the send queue to the guest; 0 = AGENT_FRAME_QUEUE_MAX */
    size_t max_pending;     /* requests in flight at the guest; 0 = 4096 */
    int liveness_ms;        /* a silent guest's wait for a health probe's answer before
                             * it counts as hung; 0 = 6000, < 0 = never probe */
    bool auto_ack;          /* acknowledge output as soon as it is published */
} agent_actor_opts_t;

/* What the actor has seen (readable from any thread). */
typedef struct agent_actor_counters {
    uint64_t frames_in, frames_out;
    uint64_t dropped_replies; /* unknown or late reply ids */
    uint64_t dropped_events;  /* unexpected event types */
    uint64_t timeouts;        /* requests the actor itself gave up on */
    bool lost;
} agent_actor_counters_t;

/* Starts the actor on the bus described by bus (zctx + endpoint).  Caller
 * owns *out and must stop it with agent_actor_stop(). */
int agent_actor_start(const actor_opts_t *bus, const agent_actor_opts_t *opts, agent_actor_t **out,
                      err_t *err);

/* Stops the actor: pending requests fail with ECANCELED, the channel is
 * closed.  Idempotent, NULLs *a. */
int agent_actor_stop(agent_actor_t **a, int timeout_ms);

/* A snapshot of the counters. */
void agent_actor_counters(agent_actor_t *a, agent_actor_counters_t *out);

/* The reply type the guest must answer a request type with (MSG_NONE when
 * t is not an agent request, e.g. agent.output_ack). */
msg_type_t agent_reply_type(msg_type_t t);

#endif
