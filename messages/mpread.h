/* mpread: a bounded, zero-copy msgpack reader for untrusted input.
 *
 * Every read checks the remaining bytes before touching them; declared
 * element counts are checked against what is left (each element needs at
 * least one byte), so a lying header cannot make us allocate or read past
 * the end.  Errors are sticky: after the first, every read fails. */
#ifndef HUSK_MPREAD_H
#define HUSK_MPREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mpr_type {
    MPR_ERR = 0,
    MPR_NIL,
    MPR_BOOL,
    MPR_UINT,
    MPR_INT,
    MPR_FLOAT,
    MPR_STR,
    MPR_BIN,
    MPR_ARRAY,
    MPR_MAP,
    MPR_EXT
};

typedef struct mpr {
    const uint8_t *p;   /* next byte */
    const uint8_t *end; /* one past the last byte */
    bool failed;        /* sticky error flag */
} mpr_t;

#define MPR_MAX_DEPTH 32

void mpr_init(mpr_t *r, const void *buf, size_t len);
/* Type of the next value without consuming it (MPR_ERR at end/garbage). */
enum mpr_type mpr_peek(const mpr_t *r);
const char *mpr_type_name(enum mpr_type t);

/* Each returns 0 on success, -1 (and sets failed) on a type mismatch or
 * truncation.  Strings/bins point into the buffer (not NUL-terminated). */
int mpr_nil(mpr_t *r);
int mpr_bool(mpr_t *r, bool *v);
int mpr_u64(mpr_t *r, uint64_t *v); /* any non-negative integer */
int mpr_i64(mpr_t *r, int64_t *v);  /* any integer fitting int64 */
int mpr_double(mpr_t *r, double *v);
int mpr_str(mpr_t *r, const char **s, uint32_t *len);
int mpr_bin(mpr_t *r, const uint8_t **b, uint32_t *len);
int mpr_array(mpr_t *r, uint32_t *n);
int mpr_map(mpr_t *r, uint32_t *n);
/* Skips one value of any type, nesting at most `depth` levels. */
int mpr_skip(mpr_t *r, int depth);

#endif
