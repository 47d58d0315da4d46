/* qmp: a non-blocking QMP client on a libevent loop.
 *
 * Reads the greeting, negotiates capabilities, then sends commands with ids
 * and per-command deadlines and dispatches asynchronous events.  Lines are
 * bounded: a peer sending more than max_line bytes without a newline, or a
 * line that is not a JSON object, gets the connection closed with an error.
 * Callbacks run from the event_base; any of them may call hv_qmp_destroy().
 * Non-logging except at debug level.  The process must ignore SIGPIPE (a
 * peer that vanishes would otherwise kill it on the next write). */
#ifndef HUSK_HV_QMP_H
#define HUSK_HV_QMP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

struct event_base;
typedef struct hv_qmp hv_qmp_t;

#define HV_QMP_MAX_LINE_DEFAULT (1u << 20)

/* Reply to one command: `ret` is the "return" member (borrowed until the
 * callback returns) and err NULL; or ret NULL and err set (error reply:
 * EIO/ENODEV/EOPNOTSUPP with QMP's class and desc; deadline: ETIMEDOUT;
 * connection lost: ECONNRESET or the close reason). */
typedef void (*hv_qmp_reply_fn)(hv_qmp_t *q, void *arg, json_t *ret, const err_t *err);
/* An asynchronous event: name and data (borrowed; data may be NULL). */
typedef void (*hv_qmp_event_fn)(hv_qmp_t *q, void *arg, const char *event, json_t *data);
/* on_ready: status 0, err NULL.  on_closed: status < 0 and err, once; the
 * client is then inert (commands fail) but must still be destroyed. */
typedef void (*hv_qmp_state_fn)(hv_qmp_t *q, void *arg, int status, const err_t *err);

struct hv_qmp_callbacks {
    hv_qmp_state_fn on_ready;
    hv_qmp_state_fn on_closed;
    hv_qmp_event_fn on_event;
    void *arg;
};

struct hv_qmp_opts {
    size_t max_line;          /* 0: HV_QMP_MAX_LINE_DEFAULT */
    int negotiate_timeout_ms; /* greeting + qmp_capabilities; 0: 5000 */
};

/* Starts a client on the connected stream socket fd (takes ownership, also
 * on failure).  cb and opts are copied; opts may be NULL.  Caller owns *out
 * and must hv_qmp_destroy() it. */
int hv_qmp_new(struct event_base *base, int fd, const struct hv_qmp_callbacks *cb,
               const struct hv_qmp_opts *opts, hv_qmp_t **out, err_t *err);

/* Connects a non-blocking unix stream socket to path.  Returns the fd. */
int hv_qmp_connect_unix(const char *path, err_t *err);

/* Sends `cmd` with `args` (stolen, also on failure; may be NULL).  Before
 * negotiation completes the command is queued.  cb is called exactly once
 * (never from inside this call) unless the client is destroyed first.
 * timeout_ms <= 0 means 5000. */
int hv_qmp_command(hv_qmp_t *q, const char *cmd, json_t *args, int timeout_ms, hv_qmp_reply_fn cb,
                   void *arg, err_t *err);

bool hv_qmp_is_ready(const hv_qmp_t *q);
bool hv_qmp_is_closed(const hv_qmp_t *q);
/* Number of commands awaiting a reply. */
size_t hv_qmp_pending(const hv_qmp_t *q);

/* Closes the socket, cancels timers, frees; pending callbacks are not
 * called.  Accepts NULL. */
void hv_qmp_destroy(hv_qmp_t **q_p);

#endif
