#include "messages/mpread.h"

#include <string.h>

void mpr_init(mpr_t *r, const void *buf, size_t len)
{
    r->p = buf;
    r->end = (const uint8_t *)buf + len;
    r->failed = buf == NULL && len > 0;
}

static int fail(mpr_t *r)
{
    r->failed = true;
    return -1;
}

static size_t left(const mpr_t *r)
{
    return (size_t)(r->end - r->p);
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

enum mpr_type mpr_peek(const mpr_t *r)
{
    if (r->failed || left(r) == 0)
        return MPR_ERR;
    uint8_t c = *r->p;
    if (c <= 0x7f || c == 0xcc || c == 0xcd || c == 0xce || c == 0xcf)
        return MPR_UINT;
    if (c >= 0xe0 || (c >= 0xd0 && c <= 0xd3))
        return MPR_INT;
    if ((c & 0xf0) == 0x80 || c == 0xde || c == 0xdf)
        return MPR_MAP;
    if ((c & 0xf0) == 0x90 || c == 0xdc || c == 0xdd)
        return MPR_ARRAY;
    if ((c & 0xe0) == 0xa0 || c == 0xd9 || c == 0xda || c == 0xdb)
        return MPR_STR;
    if (c == 0xc0)
        return MPR_NIL;
    if (c == 0xc2 || c == 0xc3)
        return MPR_BOOL;
    if (c == 0xc4 || c == 0xc5 || c == 0xc6)
        return MPR_BIN;
    if (c == 0xca || c == 0xcb)
        return MPR_FLOAT;
    if ((c >= 0xc7 && c <= 0xc9) || (c >= 0xd4 && c <= 0xd8))
        return MPR_EXT;
    return MPR_ERR; /* 0xc1: never used */
}

const char *mpr_type_name(enum mpr_type t)
{
    static const char *const names[] = {"garbage", "nil",   "boolean", "integer",
                                        "integer", "float", "string",  "binary",
                                        "array",   "map",   "ext"};
    return t <= MPR_EXT ? names[t] : "garbage";
}

/* Consumes the tag byte plus n bytes of big-endian length/value. */
static int take(mpr_t *r, int n, uint64_t *v)
{
    if (left(r) < (size_t)n + 1)
        return fail(r);
    *v = be(r->p + 1, n);
    r->p += n + 1;
    return 0;
}

int mpr_nil(mpr_t *r)
{
    if (mpr_peek(r) != MPR_NIL)
        return fail(r);
    r->p++;
    return 0;
}

int mpr_bool(mpr_t *r, bool *v)
{
    if (mpr_peek(r) != MPR_BOOL)
        return fail(r);
    *v = *r->p++ == 0xc3;
    return 0;
}

int mpr_u64(mpr_t *r, uint64_t *v)
{
    enum mpr_type t = mpr_peek(r);
    if (t == MPR_INT) {
        int64_t s;
        if (mpr_i64(r, &s) < 0 || s < 0)
            return fail(r);
        *v = (uint64_t)s;
        return 0;
    }
    if (t != MPR_UINT)
        return fail(r);
    uint8_t c = *r->p;
    if (c <= 0x7f) {
        *v = c;
        r->p++;
        return 0;
    }
    return take(r, 1 << (c - 0xcc), v);
}

int mpr_i64(mpr_t *r, int64_t *v)
{
    enum mpr_type t = mpr_peek(r);
    uint64_t u;
    if (t == MPR_UINT) {
        if (mpr_u64(r, &u) < 0 || u > INT64_MAX)
            return fail(r);
        *v = (int64_t)u;
        return 0;
    }
    if (t != MPR_INT)
        return fail(r);
    uint8_t c = *r->p;
    if (c >= 0xe0) {
        *v = (int8_t)c;
        r->p++;
        return 0;
    }
    int n = 1 << (c - 0xd0);
    if (take(r, n, &u) < 0)
        return -1;
    switch (n) {
    case 1:
        *v = (int8_t)u;
        break;
    case 2:
        *v = (int16_t)u;
        break;
    case 4:
        *v = (int32_t)u;
        break;
    default:
        *v = (int64_t)u;
        break;
    }
    return 0;
}

int mpr_double(mpr_t *r, double *v)
{
    if (mpr_peek(r) != MPR_FLOAT)
        return fail(r);
    uint64_t u;
    if (*r->p == 0xca) {
        if (take(r, 4, &u) < 0)
            return -1;
        uint32_t u32 = (uint32_t)u;
        float f;
        memcpy(&f, &u32, 4);
        *v = f;
    } else {
        if (take(r, 8, &u) < 0)
            return -1;
        memcpy(v, &u, 8);
    }
    return 0;
}

/* Reads a length header of the given family; checks the payload fits. */
static int sized(mpr_t *r, uint64_t *len, uint8_t fix_mask, uint8_t fix_tag, uint8_t fix_bits,
                 uint8_t t8, uint8_t t16, uint8_t t32, size_t unit)
{
    if (left(r) == 0)
        return fail(r);
    uint8_t c = *r->p;
    if (fix_mask && (c & fix_mask) == fix_tag) {
        *len = c & fix_bits;
        r->p++;
    } else if (t8 && c == t8) {
        if (take(r, 1, len) < 0)
            return -1;
    } else if (c == t16) {
        if (take(r, 2, len) < 0)
            return -1;
    } else if (c == t32) {
        if (take(r, 4, len) < 0)
            return -1;
    } else {
        return fail(r);
    }
    /* each element takes at least `unit` bytes */
    if (*len > left(r) / unit)
        return fail(r);
    return 0;
}

int mpr_str(mpr_t *r, const char **s, uint32_t *len)
{
    uint64_t n;
    if (mpr_peek(r) != MPR_STR || sized(r, &n, 0xe0, 0xa0, 0x1f, 0xd9, 0xda, 0xdb, 1) < 0)
        return fail(r);
    *s = (const char *)r->p;
    *len = (uint32_t)n;
    r->p += n;
    return 0;
}

int mpr_bin(mpr_t *r, const uint8_t **b, uint32_t *len)
{
    uint64_t n;
    if (mpr_peek(r) != MPR_BIN || sized(r, &n, 0, 0, 0, 0xc4, 0xc5, 0xc6, 1) < 0)
        return fail(r);
    *b = r->p;
    *len = (uint32_t)n;
    r->p += n;
    return 0;
}

int mpr_array(mpr_t *r, uint32_t *n)
{
    uint64_t v;
    if (mpr_peek(r) != MPR_ARRAY || sized(r, &v, 0xf0, 0x90, 0x0f, 0, 0xdc, 0xdd, 1) < 0)
        return fail(r);
    *n = (uint32_t)v;
    return 0;
}

int mpr_map(mpr_t *r, uint32_t *n)
{
    uint64_t v;
    if (mpr_peek(r) != MPR_MAP || sized(r, &v, 0xf0, 0x80, 0x0f, 0, 0xde, 0xdf, 2) < 0)
        return fail(r);
    *n = (uint32_t)v;
    return 0;
}

int mpr_skip(mpr_t *r, int depth)
{
    uint32_t n, len;
    const char *s;
    const uint8_t *b;
    bool bo;
    int64_t i;
    uint64_t u;
    double d;
    if (depth <= 0)
        return fail(r);
    switch (mpr_peek(r)) {
    case MPR_NIL:
        return mpr_nil(r);
    case MPR_BOOL:
        return mpr_bool(r, &bo);
    case MPR_UINT:
        return mpr_u64(r, &u);
    case MPR_INT:
        return mpr_i64(r, &i);
    case MPR_FLOAT:
        return mpr_double(r, &d);
    case MPR_STR:
        return mpr_str(r, &s, &len);
    case MPR_BIN:
        return mpr_bin(r, &b, &len);
    case MPR_ARRAY:
        if (mpr_array(r, &n) < 0)
            return -1;
        for (uint32_t k = 0; k < n; k++)
            if (mpr_skip(r, depth - 1) < 0)
                return -1;
        return 0;
    case MPR_MAP:
        if (mpr_map(r, &n) < 0)
            return -1;
        for (uint32_t k = 0; k < 2 * n; k++)
            if (mpr_skip(r, depth - 1) < 0)
                return -1;
        return 0;
    case MPR_EXT: {
        uint8_t c = *r->p;
        uint64_t size;
        size_t hdr;
        if (c >= 0xd4 && c <= 0xd8) {
            size = 1u << (c - 0xd4);
            hdr = 2;
        } else {
            int nb = 1 << (c - 0xc7);
            if (left(r) < (size_t)nb + 2)
                return fail(r);
            size = be(r->p + 1, nb);
            hdr = 2 + nb;
        }
        if (left(r) < hdr || size > left(r) - hdr)
            return fail(r);
        r->p += hdr + size;
        return 0;
    }
    default:
        return fail(r);
    }
}
