/* xalloc: allocation that aborts on failure, for code whose OOM policy is
 * "abort" (most of the host side: a failed malloc of a few bytes leaves
 * nothing sensible to do).  Code that must survive OOM (the guest agent's
 * request paths, decoders of untrusted input) checks malloc itself. */
#ifndef HUSK_COMMON_XALLOC_H
#define HUSK_COMMON_XALLOC_H

#include <stdarg.h>
#include <stddef.h>

/* malloc/calloc of at least one byte. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);

/* strdup; NULL for NULL. */
char *xstrdup(const char *s);

/* The formatted string; caller frees it. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

#endif
