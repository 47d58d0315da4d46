/* agent/frame: the framing of the agent channel, shared by husk-agent (the
 * guest) and the host's agent actor.
 *
 * A frame is a u32 big-endian payload length followed by the payload: one
 * envelope encoded with msg_encode().  A length of 0 or above the reader's
 * bound (AGENT_FRAME_MAX by default) is refused as soon as the 4 header
 * bytes are in, before anything is allocated, so a peer announcing 4 GiB
 * costs nothing.
 *
 * The reader is incremental: it survives partial reads and any split of
 * the byte stream (one byte at a time works), and hands out each complete
 * payload to a callback.  The writer is a bounded queue of encoded frames
 * flushed to a non-blocking descriptor as it becomes writable.
 *
 * Neither touches an event loop: the caller watches the descriptor and
 * calls agent_frame_read() / agent_frame_writer_flush() when it is ready. */
#ifndef HUSK_AGENT_FRAME_H
#define HUSK_AGENT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "messages/msg.h"

#define AGENT_FRAME_HDR 4
#define AGENT_FRAME_MAX (1024 * 1024 + 64 * 1024) /* payload bytes */
/* Output credit per stream when create/exec say 0 (docs/agent-protocol.md). */
#define AGENT_OUTPUT_WINDOW (256 * 1024)
/* Default bound of a writer queue (bytes of frames not yet written). */
#define AGENT_FRAME_QUEUE_MAX (8 * 1024 * 1024)

typedef struct agent_frame_reader agent_frame_reader_t;
typedef struct agent_frame_writer agent_frame_writer_t;

/* A complete frame: payload is borrowed, valid until the callback returns.
 * Returning < 0 stops the reader, which returns that value. */
typedef int (*agent_frame_fn)(void *arg, const uint8_t *payload, size_t len);

/* A reader accepting payloads of 1..max bytes (0 = AGENT_FRAME_MAX).
 * Caller owns return value and must destroy it when done.  NULL on OOM. */
agent_frame_reader_t *agent_frame_reader_new(size_t max);
/* Frees the reader; idempotent, NULLs *r. */
void agent_frame_reader_destroy(agent_frame_reader_t **r);

/* Feeds len bytes of the stream; calls cb for every frame completed.
 * Returns 0, or < 0 with err set: -EMSGSIZE (length 0 or above the bound;
 * the stream is then unusable), or what cb returned. */
int agent_frame_feed(agent_frame_reader_t *r, const void *data, size_t len, agent_frame_fn cb,
                     void *arg, err_t *err);

/* Reads from the non-blocking fd at most budget bytes (0 = 256 KiB) and
 * feeds them.  Returns 0 when the fd has nothing more for now (EAGAIN), 1
 * when the budget ran out (call again later), -EPIPE at end of stream
 * (err says whether it fell inside a frame), or another error as
 * agent_frame_feed. */
int agent_frame_read(agent_frame_reader_t *r, int fd, size_t budget, agent_frame_fn cb, void *arg,
                     err_t *err);

/* True when the reader holds part of a frame. */
int agent_frame_reader_partial(const agent_frame_reader_t *r);

/* Forgets any partial frame (a reconnected stream starts afresh). */
void agent_frame_reader_reset(agent_frame_reader_t *r);

/* A writer queue bounded to max bytes (0 = AGENT_FRAME_QUEUE_MAX) for
 * frames of at most frame_max payload bytes (0 = AGENT_FRAME_MAX).  Caller
 * owns return value.  NULL on OOM. */
agent_frame_writer_t *agent_frame_writer_new(size_t max, size_t frame_max);
void agent_frame_writer_destroy(agent_frame_writer_t **w);

/* Queues one frame with a copy of payload.  -EMSGSIZE when the payload is
 * empty or too large, -ENOBUFS when the queue would exceed its bound. */
int agent_frame_writer_push(agent_frame_writer_t *w, const void *payload, size_t len, err_t *err);

/* Encodes m and queues it (errors as msg_encode and _push). */
int agent_frame_writer_push_msg(agent_frame_writer_t *w, const msg_t *m, err_t *err);

/* Writes what it can to the non-blocking fd.  Returns 0 when the queue is
 * empty, 1 when bytes remain (wait for the fd to be writable), < 0 on a
 * write error (-EPIPE when the peer is gone). */
int agent_frame_writer_flush(agent_frame_writer_t *w, int fd, err_t *err);

/* Bytes queued and not yet written. */
size_t agent_frame_writer_pending(const agent_frame_writer_t *w);
/* The queue bound. */
size_t agent_frame_writer_max(const agent_frame_writer_t *w);

/* Forgets everything queued. */
void agent_frame_writer_reset(agent_frame_writer_t *w);

#endif
