/* err: the error contract (see docs/error_handling.md).
 *
 * A fallible function returns a negative int (or NULL) and fills an err_t.
 * Only the function that detects a failure calls err_make(); callers pass
 * the value on or add context with err_wrap().  Nobody logs and returns. */
#ifndef HUSK_ERR_H
#define HUSK_ERR_H

#include <stdarg.h>

typedef struct err {
    int code;  /* positive errno-style code, 0 when no error */
    char *msg; /* heap message, NULL when no error */
} err_t;

#define ERR_INIT                                                                                   \
    {                                                                                              \
        0, NULL                                                                                    \
    }

/* Records an error; replaces any previous one.  Returns -code (or -1 when
 * code is 0) so that `return err_make(err, EINVAL, "...")` works.  err may
 * be NULL. */
int err_make(err_t *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Like err_make, appending ": strerror(errno)" and using errno as code. */
int err_errno(err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the recorded message with context: "ctx: old".  Returns -code. */
int err_wrap(err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Frees the message and resets to no error. */
void err_clear(err_t *err);

/* The message, or "unknown error" when none. Borrowed. */
const char *err_str(const err_t *err);

/* Moves the error from src to dst (dst's old one is freed). */
void err_move(err_t *dst, err_t *src);

#endif
