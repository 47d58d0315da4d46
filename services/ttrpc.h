/* ttrpc: containerd's ttRPC (v1.1, as vendored by containerd 1.6) over unix
 * sockets, on a libevent event_base owned by the caller.  See docs/ttrpc.md.
 *
 * Wire: a 10-byte header (length u32 BE, stream id u32 BE, type u8, flags u8)
 * then `length` bytes holding a protobuf ttrpc.Request (type 1) or
 * ttrpc.Response (type 2).  Status travels as google.rpc.Status with gRPC
 * codes.  Many requests may be in flight on one connection; the server
 * answers each on its stream id, in any order, whenever it likes.
 *
 * SIGPIPE: creating a server or client sets SIGPIPE to SIG_IGN if it is
 * still SIG_DFL (Linux has no per-socket way to avoid it with writev), so a
 * peer that vanishes mid-answer is an EPIPE, not a dead shim.
 *
 * Threading: every object here belongs to the thread running its event_base.
 * Nothing is thread-safe.  Callbacks run from that loop, never from inside
 * the API call that registered them.
 *
 * Hostile input: a frame longer than TTRPC_MAX_DATA is skipped without being
 * allocated and answered with ResourceExhausted; an even stream id gets
 * InvalidArgument; a Request that does not unmarshal gets InvalidArgument; an
 * unknown service or method gets Unimplemented; frames of other types are
 * ignored (as the Go server does).  Nothing a peer sends closes the
 * connection except EOF and socket errors. */
#ifndef HUSK_SERVICES_TTRPC_H
#define HUSK_SERVICES_TTRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "common/err.h"

#define TTRPC_HEADER_LEN 10
/* containerd's messageLengthMax: a length of exactly 4 MiB is allowed. */
#define TTRPC_MAX_DATA (4u << 20)
/* Requests one server connection may have unanswered at once; more get
 * ResourceExhausted.  containerd keeps a handful (one Wait per process). */
#define TTRPC_MAX_CALLS_PER_CONN 1024

enum ttrpc_msg_type {
    TTRPC_MSG_REQUEST = 1,
    TTRPC_MSG_RESPONSE = 2,
};

/* gRPC status codes (google.rpc.Code). */
enum ttrpc_code {
    TTRPC_OK = 0,
    TTRPC_CANCELED = 1,
    TTRPC_UNKNOWN = 2,
    TTRPC_INVALID_ARGUMENT = 3,
    TTRPC_DEADLINE_EXCEEDED = 4,
    TTRPC_NOT_FOUND = 5,
    TTRPC_ALREADY_EXISTS = 6,
    TTRPC_PERMISSION_DENIED = 7,
    TTRPC_RESOURCE_EXHAUSTED = 8,
    TTRPC_FAILED_PRECONDITION = 9,
    TTRPC_ABORTED = 10,
    TTRPC_OUT_OF_RANGE = 11,
    TTRPC_UNIMPLEMENTED = 12,
    TTRPC_INTERNAL = 13,
    TTRPC_UNAVAILABLE = 14,
    TTRPC_DATA_LOSS = 15,
    TTRPC_UNAUTHENTICATED = 16,
};

/* "NotFound", "Unimplemented"...; "Code(N)" style "Unknown" for others.
 * Static string. */
const char *ttrpc_code_name(int code);
/* Maps an err_t code (positive errno) to the gRPC code a handler should
 * answer: ENOENT/ESRCH -> NotFound, EEXIST -> AlreadyExists, EINVAL/EBADMSG
 * -> InvalidArgument, ETIMEDOUT -> DeadlineExceeded, ECANCELED -> Canceled,
 * ENOSYS/ENOTSUP -> Unimplemented, EPERM/EACCES -> PermissionDenied,
 * EBUSY/EALREADY/ENOTEMPTY -> FailedPrecondition, ECONNREFUSED/ENOTCONN/
 * ECONNRESET/EPIPE/EAGAIN -> Unavailable, EMSGSIZE/ENOSPC -> ResourceExhausted,
 * 0 -> OK, anything else -> Unknown. */
int ttrpc_code_from_errno(int errnum);

/* ---- framing --------------------------------------------------------- */

typedef struct ttrpc_header {
    uint32_t length;    /* data bytes after the header */
    uint32_t stream_id; /* odd for client-initiated streams */
    uint8_t type;       /* enum ttrpc_msg_type */
    uint8_t flags;      /* 0 on send, ignored on receive */
} ttrpc_header_t;

void ttrpc_header_pack(const ttrpc_header_t *h, uint8_t out[TTRPC_HEADER_LEN]);
void ttrpc_header_unpack(const uint8_t in[TTRPC_HEADER_LEN], ttrpc_header_t *h);

typedef struct ttrpc_frame {
    ttrpc_header_t hdr;
    const uint8_t *data; /* Borrowed; valid until the callback returns. NULL when
                            len is 0 or the frame is oversized */
    size_t len;          /* == hdr.length unless oversized */
    bool oversized;      /* hdr.length > max: the body is being skipped, unread */
} ttrpc_frame_t;

/* Return 0 to go on, a negative value to stop the parser (that value is then
 * returned by ttrpc_parser_feed and the rest of the buffer is not parsed). */
typedef int (*ttrpc_frame_fn)(const ttrpc_frame_t *frame, void *arg);

/* Incremental frame parser: bytes in, whole frames out.  No I/O. */
typedef struct ttrpc_parser ttrpc_parser_t;

/* max_data: the largest body accepted (TTRPC_MAX_DATA for the protocol).
 * Caller owns return value and must destroy it when done. Aborts on OOM. */
ttrpc_parser_t *ttrpc_parser_new(uint32_t max_data);
void ttrpc_parser_destroy(ttrpc_parser_t **self_p);

/* Feeds len bytes (borrowed).  Calls fn once per complete frame, in order;
 * an oversized frame is reported as soon as its header is complete and its
 * body is then discarded as it arrives, so nothing larger than max_data is
 * ever allocated.  Returns 0, or fn's negative value. */
int ttrpc_parser_feed(ttrpc_parser_t *self, const uint8_t *buf, size_t len, ttrpc_frame_fn fn,
                      void *arg);
/* True while a partial frame (header, body or skipped body) is buffered. */
bool ttrpc_parser_partial(const ttrpc_parser_t *self);

/* ---- server ---------------------------------------------------------- */

typedef struct ttrpc_server ttrpc_server_t;
/* One request being served: the handler's duty to answer it. */
typedef struct ttrpc_call ttrpc_call_t;

/* Called once per request.  payload: Borrowed; valid until the handler
 * returns (decode it there).  The handler (or whoever it hands `call` to)
 * must answer exactly once with ttrpc_call_reply() or ttrpc_call_fail(), now
 * or later from the same loop; the answer frees the call.  Until then the
 * call stays valid, even if its connection closes (the answer is then
 * dropped). */
typedef void (*ttrpc_handler_fn)(ttrpc_call_t *call, const uint8_t *payload, size_t len, void *arg);
/* Runs at most once, when the call's connection closes (or the server is
 * destroyed) before the call was answered.  The call must still be answered
 * (the answer is dropped), from here or later. */
typedef void (*ttrpc_cancel_fn)(ttrpc_call_t *call, void *arg);

/* base: Borrowed; must outlive the server.  Caller owns return value and
 * must destroy it when done. */
int ttrpc_server_new(struct event_base *base, ttrpc_server_t **out, err_t *err);
/* Stops listening, closes every connection and cancels their calls (cancel
 * callbacks run).  Calls not yet answered stay valid until answered.
 * Idempotent, accepts NULL, nullifies *self_p. */
void ttrpc_server_destroy(ttrpc_server_t **self_p);

/* name: "service/method", e.g. "containerd.task.v2.Task/Create" (copied).
 * arg: Borrowed; passed to fn.  -EEXIST if already registered. */
int ttrpc_server_register(ttrpc_server_t *self, const char *name, ttrpc_handler_fn fn, void *arg,
                          err_t *err);
/* Binds and listens on address ("unix:///abs/path" or a plain path); the
 * socket file gets mode 0600.  An existing file at path is an error
 * (-EADDRINUSE): stale-socket policy belongs to the caller.  May be called
 * more than once. */
int ttrpc_server_listen(ttrpc_server_t *self, const char *address, err_t *err);
/* Serves an already-listening unix socket, e.g. fd 3 from `shim start`.
 * Takes ownership of fd, also on failure (it is closed). */
int ttrpc_server_listen_fd(ttrpc_server_t *self, int fd, err_t *err);
/* Serves one already-connected stream socket (tests, socketpair).  Takes
 * ownership of fd, also on failure. */
int ttrpc_server_adopt_fd(ttrpc_server_t *self, int fd, err_t *err);
/* Accepted connections whose peer has a different effective uid are closed
 * (containerd's UnixSocketRequireSameUser).  On by default. */
void ttrpc_server_set_require_same_uid(ttrpc_server_t *self, bool on);
/* Connections currently open. */
size_t ttrpc_server_connections(const ttrpc_server_t *self);

/* Accessors; strings Borrowed; valid until the call is answered. */
const char *ttrpc_call_service(const ttrpc_call_t *call);
const char *ttrpc_call_method(const ttrpc_call_t *call);
uint32_t ttrpc_call_stream_id(const ttrpc_call_t *call);
/* timeout_nano as the client sent it; 0 = no deadline. */
int64_t ttrpc_call_timeout_ns(const ttrpc_call_t *call);
/* Value of the first metadata entry with this key, or NULL. */
const char *ttrpc_call_metadata(const ttrpc_call_t *call, const char *key);
/* True once the connection closed: an answer would be dropped. */
bool ttrpc_call_cancelled(const ttrpc_call_t *call);
/* Replaces the cancel callback (NULL to clear).  If the call is already
 * cancelled, fn does not run. */
void ttrpc_call_set_cancel(ttrpc_call_t *call, ttrpc_cancel_fn fn, void *arg);

/* Answers OK with payload (Borrowed; copied), which may be empty.  A payload
 * too large for one frame turns into ResourceExhausted.  Frees call. */
void ttrpc_call_reply(ttrpc_call_t *call, const uint8_t *payload, size_t len);
/* Answers with a gRPC status (code != TTRPC_OK).  Frees call. */
void ttrpc_call_fail(ttrpc_call_t *call, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Answers with ttrpc_code_from_errno(err->code) and err_str(err).  err is
 * Borrowed (not cleared).  Frees call. */
void ttrpc_call_fail_err(ttrpc_call_t *call, const err_t *err);

/* ---- client ---------------------------------------------------------- */

typedef struct ttrpc_client ttrpc_client_t;

typedef struct ttrpc_kv {
    const char *key;
    const char *value;
} ttrpc_kv_t;

typedef struct ttrpc_call_opts {
    int64_t timeout_ns;         /* 0 = none; sent as timeout_nano and enforced here */
    const ttrpc_kv_t *metadata; /* Borrowed; copied into the request */
    size_t n_metadata;
} ttrpc_call_opts_t;

typedef struct ttrpc_status {
    int code;            /* enum ttrpc_code */
    const char *message; /* never NULL; "" when none */
} ttrpc_status_t;

/* The answer to one call: st and payload Borrowed; valid until the callback
 * returns.  payload is what the server sent (empty on error).  Client-side
 * outcomes use: DeadlineExceeded (timeout_ns passed), Unavailable
 * ("ttrpc: closed", connection lost), Canceled (client destroyed). */
typedef void (*ttrpc_reply_fn)(const ttrpc_status_t *st, const uint8_t *payload, size_t len,
                               void *arg);
typedef void (*ttrpc_close_fn)(ttrpc_client_t *client, void *arg);

/* Connects to address ("unix:///abs/path" or a plain path).  The connect is
 * immediate for unix sockets.  Caller owns return value and must destroy it
 * when done. */
int ttrpc_client_connect(struct event_base *base, const char *address, ttrpc_client_t **out,
                         err_t *err);
/* Same over an already-connected stream socket.  Takes ownership of fd, also
 * on failure. */
int ttrpc_client_from_fd(struct event_base *base, int fd, ttrpc_client_t **out, err_t *err);
/* Closes the connection; every pending callback runs with Canceled before
 * this returns.  Safe from inside a reply or close callback.  Idempotent,
 * accepts NULL, nullifies *self_p. */
void ttrpc_client_destroy(ttrpc_client_t **self_p);
/* fn runs once when the peer closes the connection or it fails (after the
 * pending calls got Unavailable); not on ttrpc_client_destroy. */
void ttrpc_client_set_close_cb(ttrpc_client_t *self, ttrpc_close_fn fn, void *arg);
bool ttrpc_client_closed(const ttrpc_client_t *self);
/* Calls in flight. */
size_t ttrpc_client_pending(const ttrpc_client_t *self);

/* Sends one request.  payload Borrowed (copied).  opts may be NULL.  On
 * success fn runs exactly once, later, from the loop.  On failure (closed,
 * request too large) returns negative and fn never runs. */
int ttrpc_client_call(ttrpc_client_t *self, const char *service, const char *method,
                      const uint8_t *payload, size_t len, const ttrpc_call_opts_t *opts,
                      ttrpc_reply_fn fn, void *arg, err_t *err);

typedef struct ttrpc_result {
    int code;         /* enum ttrpc_code */
    char *message;    /* heap, never NULL after a successful call_sync */
    uint8_t *payload; /* heap, NULL when empty */
    size_t len;
} ttrpc_result_t;

#define TTRPC_RESULT_INIT                                                                          \
    {                                                                                              \
        0, NULL, NULL, 0                                                                           \
    }

/* Sends one request and runs the client's event_base (EVLOOP_ONCE) until the
 * answer, the timeout or the close.  For short-lived programs (`shim start`,
 * `shim delete`) and tests; never from inside a callback of the same base.
 * Returns 0 when an answer (of any code) is in *res (caller owns: clear it
 * with ttrpc_result_clear), negative when the request could not be sent. */
int ttrpc_client_call_sync(ttrpc_client_t *self, const char *service, const char *method,
                           const uint8_t *payload, size_t len, const ttrpc_call_opts_t *opts,
                           ttrpc_result_t *res, err_t *err);
void ttrpc_result_clear(ttrpc_result_t *res);

#endif
