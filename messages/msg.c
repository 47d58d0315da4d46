#include "messages/msg.h"

#include <errno.h>
#include <jansson.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "messages/mpread.h"

/* ---- the catalog, expanded into descriptor tables ----------------------- */

#define FIELD_DESC_(S, KIND, fname, fmax)                                                          \
    {.name = #fname, .kind = MSG_K_##KIND, .max = (fmax), .offset = offsetof(msg_##S##_t, fname)},
#define FIELDS_TABLE_(SYM, sym, wire)                                                              \
    static const msg_field_t fields_##sym[] = {MSG_FIELDS_##sym(FIELD_DESC_, sym){NULL, 0, 0, 0}};
MSG_CATALOG(FIELDS_TABLE_)

struct type_desc {
    const char *name;
    size_t name_len;
    size_t size;
    const msg_field_t *fields;
};

static const struct type_desc types[MSG_TYPE_COUNT] = {[MSG_NONE] = {"?", 1, 0, NULL},
#define TYPE_DESC_(SYM, sym, wire)                                                                 \
    [MSG_##SYM] = {wire, sizeof(wire) - 1, sizeof(msg_##sym##_t), fields_##sym},
                                                       MSG_CATALOG(TYPE_DESC_)};

const char *msg_type_name(msg_type_t type)
{
    if (type <= MSG_NONE || type >= MSG_TYPE_COUNT)
        return "?";
    return types[type].name;
}

/* Sorted index over wire names, built once (the table is read-only). */
static msg_type_t by_name[MSG_TYPE_COUNT];
static int index_cmp(const void *a, const void *b)
{
    return strcmp(types[*(const msg_type_t *)a].name, types[*(const msg_type_t *)b].name);
}
static void build_index(void)
{
    for (int i = 1; i < MSG_TYPE_COUNT; i++)
        by_name[i - 1] = (msg_type_t)i;
    qsort(by_name, MSG_TYPE_COUNT - 1, sizeof by_name[0], index_cmp);
}

msg_type_t msg_type_by_name(const char *name, size_t len)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, build_index);
    size_t lo = 0, hi = MSG_TYPE_COUNT - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const struct type_desc *t = &types[by_name[mid]];
        size_t n = t->name_len < len ? t->name_len : len;
        int c = memcmp(t->name, name, n);
        if (c == 0)
            c = t->name_len < len ? -1 : t->name_len > len ? 1 : 0;
        if (c == 0)
            return by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return MSG_NONE;
}

const msg_field_t *msg_fields(msg_type_t type, size_t *body_size)
{
    if (type <= MSG_NONE || type >= MSG_TYPE_COUNT)
        return NULL;
    if (body_size)
        *body_size = types[type].size;
    return types[type].fields;
}

/* ---- lifecycle -------------------------------------------------------- */

msg_t *msg_new(msg_type_t type)
{
    if (type <= MSG_NONE || type >= MSG_TYPE_COUNT)
        return NULL;
    msg_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->type = type;
    m->body = calloc(1, types[type].size ? types[type].size : 1);
    if (!m->body) {
        free(m);
        return NULL;
    }
    return m;
}

msg_t *msg_new_reply(const msg_t *req, msg_type_t type)
{
    msg_t *m = msg_new(type);
    if (!m)
        return NULL;
    m->reply_to = req->id;
    memcpy(m->to, req->from, sizeof m->to);
    return m;
}

msg_t *msg_new_error(const msg_t *req, int code, const char *fmt, ...)
{
    msg_t *m = msg_new_reply(req, MSG_BUS_ERROR);
    if (!m)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    m->status = code > 0 ? code : code < 0 ? -code : EIO;
    m->status_text = text;
    return m;
}

static void free_body(msg_type_t type, void *body)
{
    for (const msg_field_t *f = types[type].fields; f && f->name; f++) {
        void *p = (char *)body + f->offset;
        switch (f->kind) {
        case MSG_K_STR:
        case MSG_K_JSON:
            free(*(char **)p);
            break;
        case MSG_K_BIN:
            free(((msg_bin_t *)p)->data);
            break;
        case MSG_K_STRV: {
            msg_strv_t *v = p;
            for (size_t i = 0; i < v->n; i++)
                free(v->v[i]);
            free(v->v);
            break;
        }
        case MSG_K_U64V:
            free(((msg_u64v_t *)p)->v);
            break;
        default:
            break;
        }
    }
    free(body);
}

void msg_destroy(msg_t **mp)
{
    if (!mp || !*mp)
        return;
    msg_t *m = *mp;
    if (m->body)
        free_body(m->type, m->body);
    free(m->status_text);
    free(m);
    *mp = NULL;
}

void *msg_body_of(const msg_t *m, msg_type_t type)
{
    return m && m->type == type ? m->body : NULL;
}

int msg_set_str(char **dst, const char *s)
{
    char *c = s ? strdup(s) : NULL;
    if (s && !c)
        return -ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

int msg_strv_push(msg_strv_t *v, const char *s)
{
    char **nv = realloc(v->v, (v->n + 1) * sizeof *nv);
    if (!nv)
        return -ENOMEM;
    v->v = nv;
    if (!(nv[v->n] = strdup(s ? s : "")))
        return -ENOMEM;
    v->n++;
    return 0;
}

int msg_u64v_push(msg_u64v_t *v, uint64_t x)
{
    uint64_t *nv = realloc(v->v, (v->n + 1) * sizeof *nv);
    if (!nv)
        return -ENOMEM;
    v->v = nv;
    nv[v->n++] = x;
    return 0;
}

int msg_set_bin(msg_bin_t *b, const void *data, size_t len)
{
    uint8_t *c = malloc(len ? len : 1);
    if (!c)
        return -ENOMEM;
    if (len)
        memcpy(c, data, len);
    free(b->data);
    b->data = c;
    b->len = len;
    return 0;
}

void msg_set_status(msg_t *m, int code, const char *text)
{
    m->status = code < 0 ? -code : code;
    msg_set_str(&m->status_text, text);
}

/* ---- encoding ----------------------------------------------------------- */

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s ? s : "", n);
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    pack_str(pk, k);
}

static int check_len(const msg_field_t *f, size_t n, err_t *err)
{
    if (n > f->max)
        return err_make(err, EMSGSIZE, "body.%s: %zu exceeds the limit of %u", f->name, n, f->max);
    return 0;
}

static int pack_body(msgpack_packer *pk, msg_type_t type, const void *body, err_t *err)
{
    const msg_field_t *fields = types[type].fields;
    size_t n = 0;
    for (const msg_field_t *f = fields; f->name; f++)
        n++;
    msgpack_pack_map(pk, n);
    for (const msg_field_t *f = fields; f->name; f++) {
        const void *p = (const char *)body + f->offset;
        pack_key(pk, f->name);
        switch (f->kind) {
        case MSG_K_BOOL:
            if (*(const bool *)p)
                msgpack_pack_true(pk);
            else
                msgpack_pack_false(pk);
            break;
        case MSG_K_I64:
            msgpack_pack_int64(pk, *(const int64_t *)p);
            break;
        case MSG_K_U64:
            msgpack_pack_uint64(pk, *(const uint64_t *)p);
            break;
        case MSG_K_STR:
        case MSG_K_JSON: {
            const char *s = *(char *const *)p;
            /* an unset JSON field is JSON null, as the decoder reads a missing one */
            if (!s && f->kind == MSG_K_JSON)
                s = "null";
            if (check_len(f, s ? strlen(s) : 0, err) < 0)
                return -EMSGSIZE;
            pack_str(pk, s);
            break;
        }
        case MSG_K_BIN: {
            const msg_bin_t *b = p;
            if (check_len(f, b->len, err) < 0)
                return -EMSGSIZE;
            msgpack_pack_bin(pk, b->len);
            msgpack_pack_bin_body(pk, b->data, b->len);
            break;
        }
        case MSG_K_STRV: {
            const msg_strv_t *v = p;
            if (check_len(f, v->n, err) < 0)
                return -EMSGSIZE;
            msgpack_pack_array(pk, v->n);
            for (size_t i = 0; i < v->n; i++) {
                if (v->v[i] && strlen(v->v[i]) > MSG_ITEM_MAX)
                    return err_make(err, EMSGSIZE, "body.%s[%zu]: longer than %d bytes", f->name, i,
                                    MSG_ITEM_MAX);
                pack_str(pk, v->v[i]);
            }
            break;
        }
        case MSG_K_U64V: {
            const msg_u64v_t *v = p;
            if (check_len(f, v->n, err) < 0)
                return -EMSGSIZE;
            msgpack_pack_array(pk, v->n);
            for (size_t i = 0; i < v->n; i++)
                msgpack_pack_uint64(pk, v->v[i]);
            break;
        }
        }
    }
    return 0;
}

int msg_encode(const msg_t *m, uint8_t **out, size_t *len, err_t *err)
{
    if (!m || m->type <= MSG_NONE || m->type >= MSG_TYPE_COUNT)
        return err_make(err, EINVAL, "encode: invalid message type");
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, m->status_text ? 10 : 9);
    pack_key(&pk, "v");
    msgpack_pack_uint32(&pk, MSG_PROTO_VERSION);
    pack_key(&pk, "type");
    pack_str(&pk, types[m->type].name);
    pack_key(&pk, "id");
    msgpack_pack_uint64(&pk, m->id);
    pack_key(&pk, "re");
    msgpack_pack_uint64(&pk, m->reply_to);
    pack_key(&pk, "from");
    pack_str(&pk, m->from);
    pack_key(&pk, "to");
    pack_str(&pk, m->to);
    pack_key(&pk, "ts");
    msgpack_pack_uint64(&pk, m->ts_ns);
    pack_key(&pk, "code");
    msgpack_pack_int32(&pk, m->status);
    if (m->status_text) {
        pack_key(&pk, "status");
        pack_str(&pk, m->status_text);
    }
    pack_key(&pk, "body");
    int r = pack_body(&pk, m->type, m->body, err);
    if (r == 0 && sb.size > MSG_MAX_BYTES)
        r = err_make(err, EMSGSIZE, "%s: encoded size %zu exceeds %d bytes", types[m->type].name,
                     sb.size, MSG_MAX_BYTES);
    if (r < 0) {
        msgpack_sbuffer_destroy(&sb);
        return r;
    }
    *out = (uint8_t *)sb.data; /* sbuffer data is malloc'd */
    *len = sb.size;
    return 0;
}

/* ---- decoding ----------------------------------------------------------- */

static int key_is(const char *k, uint32_t n, const char *want)
{
    return strlen(want) == n && memcmp(k, want, n) == 0;
}

static int bad(err_t *err, const char *where, const char *field, const char *what, mpr_t *r)
{
    const char *got = mpr_type_name(mpr_peek(r));
    if (r->failed && r->p >= r->end)
        return err_make(err, EBADMSG, "%s%s: %s (truncated)", where, field, what);
    return err_make(err, EBADMSG, "%s%s: %s, got %s", where, field, what, got);
}

static char *dup_checked(const char *s, uint32_t n)
{
    if (memchr(s, 0, n))
        return NULL;
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = 0;
    }
    return c;
}

static int decode_str(mpr_t *r, const msg_field_t *f, uint32_t max, char **dst, err_t *err,
                      const char *suffix)
{
    const char *s;
    uint32_t n;
    mpr_t save = *r;
    if (mpr_str(r, &s, &n) < 0) {
        *r = save;
        char where[MSG_SMALL];
        snprintf(where, sizeof where, "%s%s", f->name, suffix);
        int rc = bad(err, "body.", where, "expected string", r);
        r->failed = true;
        return rc;
    }
    if (n > max)
        return err_make(err, EMSGSIZE, "body.%s%s: %u bytes exceeds the limit of %u", f->name,
                        suffix, n, max);
    char *c = dup_checked(s, n);
    if (!c)
        return err_make(err, EBADMSG, "body.%s%s: string contains a NUL byte", f->name, suffix);
    free(*dst);
    *dst = c;
    return 0;
}

static int decode_field(mpr_t *r, const msg_field_t *f, void *body, err_t *err)
{
    void *p = (char *)body + f->offset;
    mpr_t save = *r;
    uint32_t n;
    switch (f->kind) {
    case MSG_K_BOOL:
        if (mpr_bool(r, p) < 0)
            goto type_error;
        return 0;
    case MSG_K_I64:
        if (mpr_i64(r, p) < 0)
            goto type_error;
        return 0;
    case MSG_K_U64:
        if (mpr_u64(r, p) < 0)
            goto type_error;
        return 0;
    case MSG_K_STR:
        return decode_str(r, f, f->max, p, err, "");
    case MSG_K_JSON: {
        int rc = decode_str(r, f, f->max, p, err, "");
        if (rc < 0)
            return rc;
        json_error_t je;
        json_t *j = json_loads(*(char **)p, JSON_DECODE_ANY, &je);
        if (!j)
            return err_make(err, EBADMSG, "body.%s: invalid JSON: %s", f->name, je.text);
        json_decref(j);
        return 0;
    }
    case MSG_K_BIN: {
        const uint8_t *b;
        if (mpr_bin(r, &b, &n) < 0)
            goto type_error;
        if (n > f->max)
            return err_make(err, EMSGSIZE, "body.%s: %u bytes exceeds the limit of %u", f->name, n,
                            f->max);
        return msg_set_bin(p, b, n) < 0 ? err_make(err, ENOMEM, "body.%s: out of memory", f->name)
                                        : 0;
    }
    case MSG_K_STRV: {
        msg_strv_t *v = p;
        if (mpr_array(r, &n) < 0)
            goto type_error;
        if (n > f->max)
            return err_make(err, EMSGSIZE, "body.%s: %u items exceeds the limit of %u", f->name, n,
                            f->max);
        for (size_t i = 0; i < v->n; i++)
            free(v->v[i]);
        free(v->v);
        v->n = 0;
        v->v = calloc(n ? n : 1, sizeof *v->v);
        if (!v->v)
            return err_make(err, ENOMEM, "body.%s: out of memory", f->name);
        for (uint32_t i = 0; i < n; i++) {
            char suffix[24];
            snprintf(suffix, sizeof suffix, "[%u]", i);
            int rc = decode_str(r, f, MSG_ITEM_MAX, &v->v[i], err, suffix);
            if (rc < 0)
                return rc;
            v->n++;
        }
        return 0;
    }
    case MSG_K_U64V: {
        msg_u64v_t *v = p;
        if (mpr_array(r, &n) < 0)
            goto type_error;
        if (n > f->max)
            return err_make(err, EMSGSIZE, "body.%s: %u items exceeds the limit of %u", f->name, n,
                            f->max);
        free(v->v);
        v->n = 0;
        v->v = calloc(n ? n : 1, sizeof *v->v);
        if (!v->v)
            return err_make(err, ENOMEM, "body.%s: out of memory", f->name);
        for (uint32_t i = 0; i < n; i++) {
            if (mpr_u64(r, &v->v[i]) < 0)
                return err_make(err, EBADMSG, "body.%s[%u]: expected unsigned integer", f->name, i);
            v->n++;
        }
        return 0;
    }
    }
    return err_make(err, EINVAL, "body.%s: unknown field kind", f->name);
type_error : {
    static const char *const expect[] = {"expected boolean",          "expected integer",
                                         "expected unsigned integer", "expected string",
                                         "expected string",           "expected binary",
                                         "expected array of strings", "expected array of integers"};
    *r = save;
    int rc = bad(err, "body.", f->name, expect[f->kind], r);
    r->failed = true;
    return rc;
}
}

/* Fills missing STR/JSON fields with "" so that decoded strings are never NULL. */
static int fill_defaults(msg_type_t type, void *body)
{
    for (const msg_field_t *f = types[type].fields; f->name; f++) {
        char **p = (char **)((char *)body + f->offset);
        if ((f->kind == MSG_K_STR || f->kind == MSG_K_JSON) && !*p) {
            *p = strdup(f->kind == MSG_K_JSON ? "null" : "");
            if (!*p)
                return -ENOMEM;
        }
    }
    return 0;
}

static int decode_body(mpr_t *r, msg_t *m, err_t *err)
{
    uint32_t n;
    if (mpr_map(r, &n) < 0)
        return bad(err, "", "body", "expected map", r);
    const msg_field_t *fields = types[m->type].fields;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kn;
        if (mpr_str(r, &k, &kn) < 0)
            return bad(err, "", "body", "expected string key", r);
        int idx = 0;
        const msg_field_t *f = fields;
        for (; f->name; f++, idx++)
            if (key_is(k, kn, f->name))
                break;
        if (!f->name) {
            if (mpr_skip(r, MPR_MAX_DEPTH) < 0)
                return err_make(err, EBADMSG, "body.%.*s: unreadable value of unknown field",
                                (int)(kn > 64 ? 64 : kn), k);
            continue;
        }
        if (idx < 64 && (seen & (1ull << idx)))
            return err_make(err, EBADMSG, "body.%s: duplicate field", f->name);
        if (idx < 64)
            seen |= 1ull << idx;
        int rc = decode_field(r, f, m->body, err);
        if (rc < 0)
            return rc;
    }
    if (fill_defaults(m->type, m->body) < 0)
        return err_make(err, ENOMEM, "body: out of memory");
    return 0;
}

static int copy_name(char *dst, const char *s, uint32_t n, const char *field, err_t *err)
{
    if (n >= MSG_NAME_MAX)
        return err_make(err, EMSGSIZE, "%s: name longer than %d bytes", field, MSG_NAME_MAX - 1);
    if (memchr(s, 0, n))
        return err_make(err, EBADMSG, "%s: contains a NUL byte", field);
    memcpy(dst, s, n);
    dst[n] = 0;
    return 0;
}

int msg_decode(const void *buf, size_t len, msg_t **out, err_t *err)
{
    *out = NULL;
    if (len > MSG_MAX_BYTES)
        return err_make(err, EMSGSIZE, "message of %zu bytes exceeds %d", len, MSG_MAX_BYTES);
    mpr_t r;
    mpr_init(&r, buf, len);
    uint32_t n;
    if (mpr_map(&r, &n) < 0)
        return bad(err, "", "envelope", "expected map", &r);

    /* The body may come before "type": remember where it is, decode last. */
    const uint8_t *body_at = NULL;
    msg_t tmp = {0};
    bool have_v = false;
    char *status_text = NULL;
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        const char *k, *s;
        uint32_t kn, sn;
        if (mpr_str(&r, &k, &kn) < 0) {
            rc = bad(err, "", "envelope", "expected string key", &r);
            break;
        }
        uint64_t u;
        int64_t iv;
        if (key_is(k, kn, "v")) {
            if (mpr_u64(&r, &u) < 0)
                rc = bad(err, "", "v", "expected unsigned integer", &r);
            else if (u != MSG_PROTO_VERSION)
                rc = err_make(err, EPROTO, "v: protocol version %llu, expected %d",
                              (unsigned long long)u, MSG_PROTO_VERSION);
            have_v = true;
        } else if (key_is(k, kn, "type")) {
            if (mpr_str(&r, &s, &sn) < 0)
                rc = bad(err, "", "type", "expected string", &r);
            else if ((tmp.type = msg_type_by_name(s, sn)) == MSG_NONE)
                rc = err_make(err, EBADMSG, "type: unknown message type '%.*s'",
                              (int)(sn > 64 ? 64 : sn), s);
        } else if (key_is(k, kn, "id")) {
            if (mpr_u64(&r, &tmp.id) < 0)
                rc = bad(err, "", "id", "expected unsigned integer", &r);
        } else if (key_is(k, kn, "re")) {
            if (mpr_u64(&r, &tmp.reply_to) < 0)
                rc = bad(err, "", "re", "expected unsigned integer", &r);
        } else if (key_is(k, kn, "from") || key_is(k, kn, "to")) {
            const char *field = key_is(k, kn, "from") ? "from" : "to";
            if (mpr_str(&r, &s, &sn) < 0)
                rc = bad(err, "", field, "expected string", &r);
            else
                rc = copy_name(field[0] == 'f' ? tmp.from : tmp.to, s, sn, field, err);
        } else if (key_is(k, kn, "ts")) {
            if (mpr_u64(&r, &tmp.ts_ns) < 0)
                rc = bad(err, "", "ts", "expected unsigned integer", &r);
        } else if (key_is(k, kn, "code")) {
            if (mpr_i64(&r, &iv) < 0 || iv < 0 || iv > 4095)
                rc = bad(err, "", "code", "expected integer 0..4095", &r);
            else
                tmp.status = (int32_t)iv;
        } else if (key_is(k, kn, "status")) {
            if (mpr_str(&r, &s, &sn) < 0)
                rc = bad(err, "", "status", "expected string", &r);
            else if (sn > MSG_ITEM_MAX)
                rc = err_make(err, EMSGSIZE, "status: text longer than %d bytes", MSG_ITEM_MAX);
            else if (status_text) /* found by the fuzzer: the first copy leaked */
                rc = err_make(err, EBADMSG, "status: given twice");
            else if (!(status_text = dup_checked(s, sn)) && sn)
                rc = err_make(err, EBADMSG, "status: contains a NUL byte");
        } else if (key_is(k, kn, "body")) {
            body_at = r.p;
            if (mpr_skip(&r, MPR_MAX_DEPTH) < 0)
                rc = bad(err, "", "body", "unreadable value", &r);
        } else if (mpr_skip(&r, MPR_MAX_DEPTH) < 0) {
            rc = err_make(err, EBADMSG, "envelope: unreadable value of unknown key");
        }
    }
    if (rc == 0 && r.p != r.end)
        rc = err_make(err, EBADMSG, "envelope: %zu trailing bytes", (size_t)(r.end - r.p));
    if (rc == 0 && !have_v)
        rc = err_make(err, EBADMSG, "v: missing protocol version");
    if (rc == 0 && tmp.type == MSG_NONE)
        rc = err_make(err, EBADMSG, "type: missing");
    if (rc == 0 && !body_at)
        rc = err_make(err, EBADMSG, "body: missing");
    if (rc < 0) {
        free(status_text);
        return rc;
    }
    msg_t *m = msg_new(tmp.type);
    if (!m) {
        free(status_text);
        return err_make(err, ENOMEM, "decode: out of memory");
    }
    void *body = m->body;
    *m = tmp;
    m->body = body;
    m->status_text = status_text;
    mpr_t br;
    mpr_init(&br, body_at, (size_t)(r.end - body_at));
    rc = decode_body(&br, m, err);
    if (rc < 0) {
        err_wrap(err, "%s", types[m->type].name);
        msg_destroy(&m);
        return rc;
    }
    *out = m;
    return 0;
}

msg_type_t msg_peek_type(const void *buf, size_t len)
{
    mpr_t r;
    uint32_t n;
    mpr_init(&r, buf, len);
    if (mpr_map(&r, &n) < 0)
        return MSG_NONE;
    for (uint32_t i = 0; i < n; i++) {
        const char *k, *s;
        uint32_t kn, sn;
        if (mpr_str(&r, &k, &kn) < 0)
            return MSG_NONE;
        if (key_is(k, kn, "type"))
            return mpr_str(&r, &s, &sn) < 0 ? MSG_NONE : msg_type_by_name(s, sn);
        if (mpr_skip(&r, MPR_MAX_DEPTH) < 0)
            return MSG_NONE;
    }
    return MSG_NONE;
}

int msg_peek_ids(const void *buf, size_t len, uint64_t *id, uint64_t *reply_to)
{
    mpr_t r;
    uint32_t n;
    int found = 0;
    *id = *reply_to = 0;
    mpr_init(&r, buf, len);
    if (mpr_map(&r, &n) < 0)
        return -1;
    for (uint32_t i = 0; i < n && found < 2; i++) {
        const char *k;
        uint32_t kn;
        if (mpr_str(&r, &k, &kn) < 0)
            return -1;
        if (key_is(k, kn, "id") || key_is(k, kn, "re")) {
            if (mpr_u64(&r, k[0] == 'i' ? id : reply_to) < 0)
                return -1;
            found++;
        } else if (mpr_skip(&r, MPR_MAX_DEPTH) < 0) {
            return -1;
        }
    }
    return found == 2 ? 0 : -1;
}

/* ---- the schema-less printer ------------------------------------------- */

static json_t *to_json(mpr_t *r, int depth)
{
    if (depth <= 0)
        return NULL;
    const char *s;
    const uint8_t *b;
    uint32_t n;
    bool bo;
    int64_t i;
    uint64_t u;
    double d;
    switch (mpr_peek(r)) {
    case MPR_NIL:
        return mpr_nil(r) < 0 ? NULL : json_null();
    case MPR_BOOL:
        return mpr_bool(r, &bo) < 0 ? NULL : json_boolean(bo);
    case MPR_UINT:
        if (mpr_u64(r, &u) < 0)
            return NULL;
        return u > INT64_MAX ? json_real((double)u) : json_integer((json_int_t)u);
    case MPR_INT:
        return mpr_i64(r, &i) < 0 ? NULL : json_integer(i);
    case MPR_FLOAT:
        return mpr_double(r, &d) < 0 ? NULL : json_real(d);
    case MPR_STR: {
        if (mpr_str(r, &s, &n) < 0)
            return NULL;
        json_t *j = json_stringn(s, n);
        if (j)
            return j;
        /* not UTF-8: show the ASCII and mark the rest */
        char *c = malloc(n + 1);
        if (!c)
            return NULL;
        for (uint32_t k = 0; k < n; k++)
            c[k] = (s[k] > 0 && (unsigned char)s[k] < 0x80) ? s[k] : '?';
        j = json_stringn(c, n);
        free(c);
        return j;
    }
    case MPR_BIN: {
        if (mpr_bin(r, &b, &n) < 0)
            return NULL;
        /* printable bins are shown as text, others as hex (truncated) */
        size_t show = n > 256 ? 256 : n;
        char *hex = malloc(show * 2 + 32);
        if (!hex)
            return NULL;
        size_t pos = (size_t)sprintf(hex, "bin:%u:", n);
        for (size_t k = 0; k < show; k++)
            pos += (size_t)sprintf(hex + pos, "%02x", b[k]);
        if (show < n)
            strcpy(hex + pos, "...");
        json_t *j = json_string(hex);
        free(hex);
        return j;
    }
    case MPR_ARRAY: {
        if (mpr_array(r, &n) < 0)
            return NULL;
        json_t *a = json_array();
        for (uint32_t k = 0; k < n && a; k++) {
            json_t *v = to_json(r, depth - 1);
            if (!v || json_array_append_new(a, v) < 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case MPR_MAP: {
        if (mpr_map(r, &n) < 0)
            return NULL;
        json_t *o = json_object();
        for (uint32_t k = 0; k < n && o; k++) {
            char key[128];
            if (mpr_peek(r) == MPR_STR) {
                uint32_t kn;
                if (mpr_str(r, &s, &kn) < 0)
                    goto fail;
                snprintf(key, sizeof key, "%.*s", (int)(kn > 127 ? 127 : kn), s);
                for (char *c = key; *c; c++)
                    if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x80)
                        *c = '?';
            } else {
                json_t *kj = to_json(r, depth - 1);
                char *ks = kj ? json_dumps(kj, JSON_ENCODE_ANY) : NULL;
                json_decref(kj);
                if (!ks)
                    goto fail;
                snprintf(key, sizeof key, "%s", ks);
                free(ks);
            }
            json_t *v = to_json(r, depth - 1);
            if (!v)
                goto fail;
            json_object_set_new_nocheck(o, key, v);
            continue;
        fail:
            json_decref(o);
            return NULL;
        }
        return o;
    }
    case MPR_EXT:
        return mpr_skip(r, 1) < 0 ? NULL : json_string("ext");
    default:
        return NULL;
    }
}

char *msg_to_json(const void *buf, size_t len, err_t *err)
{
    mpr_t r;
    mpr_init(&r, buf, len);
    json_t *j = to_json(&r, MPR_MAX_DEPTH);
    if (!j) {
        err_make(err, EBADMSG, "not a readable msgpack value (at byte %zu of %zu)",
                 (size_t)(r.p - (const uint8_t *)buf), len);
        return NULL;
    }
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!s)
        err_make(err, ENOMEM, "render JSON: out of memory");
    return s;
}
