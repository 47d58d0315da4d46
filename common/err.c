#include "common/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int set(err_t *err, int code, char *msg)
{
    if (code < 0)
        code = -code;
    if (code == 0)
        code = EIO;
    if (!err) {
        free(msg);
        return -code;
    }
    free(err->msg);
    err->code = code;
    err->msg = msg;
    return -code;
}

int err_make(err_t *err, int code, const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    return set(err, code, msg);
}

int err_errno(err_t *err, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    char *head = NULL, *msg = NULL;
    va_start(ap, fmt);
    if (vasprintf(&head, fmt, ap) < 0)
        head = NULL;
    va_end(ap);
    if (asprintf(&msg, "%s: %s", head ? head : "", strerror(saved)) < 0)
        msg = NULL;
    free(head);
    return set(err, saved, msg);
}

int err_wrap(err_t *err, const char *fmt, ...)
{
    va_list ap;
    char *head = NULL, *msg = NULL;
    if (!err)
        return -EIO;
    va_start(ap, fmt);
    if (vasprintf(&head, fmt, ap) < 0)
        head = NULL;
    va_end(ap);
    if (asprintf(&msg, "%s: %s", head ? head : "", err->msg ? err->msg : "unknown error") < 0)
        msg = NULL;
    free(head);
    free(err->msg);
    err->msg = msg;
    if (err->code == 0)
        err->code = EIO;
    return -err->code;
}

void err_clear(err_t *err)
{
    if (!err)
        return;
    free(err->msg);
    err->msg = NULL;
    err->code = 0;
}

const char *err_str(const err_t *err)
{
    return err && err->msg ? err->msg : "unknown error";
}

void err_move(err_t *dst, err_t *src)
{
    if (!dst || !src)
        return;
    free(dst->msg);
    *dst = *src;
    src->msg = NULL;
    src->code = 0;
}
