/* msg: typed messages, their envelope, and the codec.
 *
 * Every message is an envelope (protocol version, type, id, reply-to,
 * sender, receiver, timestamp, status, body) encoded as a msgpack map; the
 * body is a msgpack map keyed by field name.  Types and fields come from
 * messages/catalog.h.  Decoding never trusts its input: every length is
 * bounded, every type checked, and errors name the offending field. */
#ifndef HUSK_MSG_H
#define HUSK_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "messages/catalog.h"

#define MSG_PROTO_VERSION 1
#define MSG_NAME_MAX      64                /* actor names, incl. NUL */
#define MSG_MAX_BYTES     (8 * 1024 * 1024) /* whole encoded envelope */

typedef struct msg_bin {
    uint8_t *data; /* owned */
    size_t len;
} msg_bin_t;

typedef struct msg_strv {
    char **v; /* owned, each owned */
    size_t n;
} msg_strv_t;

typedef struct msg_u64v {
    uint64_t *v; /* owned */
    size_t n;
} msg_u64v_t;

#define MSG_CTYPE_BOOL bool
#define MSG_CTYPE_I64  int64_t
#define MSG_CTYPE_U64  uint64_t
#define MSG_CTYPE_STR  char *
#define MSG_CTYPE_JSON char *
#define MSG_CTYPE_BIN  msg_bin_t
#define MSG_CTYPE_STRV msg_strv_t
#define MSG_CTYPE_U64V msg_u64v_t

/* The body structs: msg_<sym>_t. */
#define MSG_FIELD_DECL_(S, KIND, name, max) MSG_CTYPE_##KIND name;
#define MSG_STRUCT_DECL_(SYM, sym, wire)                                                           \
    typedef struct msg_##sym {                                                                     \
        MSG_FIELDS_##sym(MSG_FIELD_DECL_, sym)                                                     \
    } msg_##sym##_t;
MSG_CATALOG(MSG_STRUCT_DECL_)
#undef MSG_STRUCT_DECL_

/* The type ids: MSG_<SYM>.  0 is never a valid type. */
typedef enum msg_type {
    MSG_NONE = 0,
#define MSG_ENUM_(SYM, sym, wire) MSG_##SYM,
    MSG_CATALOG(MSG_ENUM_)
#undef MSG_ENUM_
        MSG_TYPE_COUNT
} msg_type_t;

typedef struct msg {
    msg_type_t type;
    uint64_t id;             /* unique per sender; set by the sender's runtime */
    uint64_t reply_to;       /* id of the request this answers, 0 otherwise */
    char from[MSG_NAME_MAX]; /* sender actor */
    char to[MSG_NAME_MAX];   /* receiver actor, "*" for an event */
    uint64_t ts_ns;          /* CLOCK_REALTIME at send, ns */
    int32_t status;          /* replies: 0 ok, else a positive errno */
    char *status_text;       /* replies: error text or NULL (owned) */
    void *body;              /* msg_<sym>_t of type (owned, never NULL) */
} msg_t;

/* Wire name ("bus.ping") of a type; "?" when out of range. */
const char *msg_type_name(msg_type_t type);
/* Type of a wire name; MSG_NONE when unknown. */
msg_type_t msg_type_by_name(const char *name, size_t len);

/* A new message with a zeroed body.  Caller owns return value and must
 * destroy it when done.  NULL only for an invalid type or OOM. */
msg_t *msg_new(msg_type_t type);

/* A reply to req: to = req->from, reply_to = req->id.  Caller owns it. */
msg_t *msg_new_reply(const msg_t *req, msg_type_t type);

/* An error reply (bus.error) to req with status code and text. */
msg_t *msg_new_error(const msg_t *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Frees the message and its body; idempotent, NULLs *m. */
void msg_destroy(msg_t **m);

/* Typed body access: NULL when m is not of that type. */
void *msg_body_of(const msg_t *m, msg_type_t type);
#define MSG_BODY(m, SYM, sym) ((msg_##sym##_t *)msg_body_of((m), MSG_##SYM))

/* Field helpers: copy s into *dst (freeing the old value). 0 or -ENOMEM. */
int msg_set_str(char **dst, const char *s);
int msg_strv_push(msg_strv_t *v, const char *s);
int msg_u64v_push(msg_u64v_t *v, uint64_t x);
int msg_set_bin(msg_bin_t *b, const void *data, size_t len);
void msg_set_status(msg_t *m, int code, const char *text);

/* Encodes m.  *out is malloc'd (caller frees), *len its size. */
int msg_encode(const msg_t *m, uint8_t **out, size_t *len, err_t *err);

/* Decodes untrusted bytes into a new message (caller owns it).  Errors
 * name the field: "body.name: expected string". */
int msg_decode(const void *buf, size_t len, msg_t **out, err_t *err);

/* Reads only the type name of an encoded envelope, without decoding the
 * rest: for the broker's fault matching.  Returns MSG_NONE if unreadable. */
msg_type_t msg_peek_type(const void *buf, size_t len);

/* Reads id and reply-to of an encoded envelope without decoding the rest.
 * Returns 0, or -1 when unreadable. */
int msg_peek_ids(const void *buf, size_t len, uint64_t *id, uint64_t *reply_to);

/* Renders any msgpack value (an envelope, or anything) as JSON text,
 * without a schema.  Depth and sizes are bounded.  Caller frees. */
char *msg_to_json(const void *buf, size_t len, err_t *err);

/* Field descriptors, for generic code (tests, tracer). */
enum msg_kind {
    MSG_K_BOOL,
    MSG_K_I64,
    MSG_K_U64,
    MSG_K_STR,
    MSG_K_JSON,
    MSG_K_BIN,
    MSG_K_STRV,
    MSG_K_U64V
};
typedef struct msg_field {
    const char *name;
    enum msg_kind kind;
    uint32_t max;
    size_t offset;
} msg_field_t;
/* Descriptor list of a type, terminated by a NULL name; *size = body size. */
const msg_field_t *msg_fields(msg_type_t type, size_t *body_size);

#endif
