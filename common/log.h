/* log: structured logging.
 *
 * One line per event: time, level, component (husk.<actor>), sandbox and
 * container ids when known, msg.  logfmt by default, JSON lines on request.
 * The component and ids are per thread (each actor sets its own), so an
 * actor's lines carry its name without passing it around. */
#ifndef HUSK_LOG_H
#define HUSK_LOG_H

#include <errno.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };
enum log_format { LOG_FMT_LOGFMT = 0, LOG_FMT_JSON };

/* Process-wide sink.  fd is borrowed (stderr by default).  The first call
 * logs the husk version and commit once, at info level. */
void log_setup(int fd, enum log_format fmt, enum log_level level);

/* Parses "debug|info|warn|error|off"; -1 if unknown. */
int log_level_parse(const char *s);
/* Parses "text|logfmt|json"; -1 if unknown. */
int log_format_parse(const char *s);
enum log_level log_get_level(void);

/* Per-thread context: component is "husk.<name>" (copied). NULL clears. */
void log_set_component(const char *name);
void log_set_sandbox(const char *sandbox_id);
void log_set_container(const char *container_id);

/* Writes one line.  Returns -errnum when errnum != 0, else 0, so that
 * `return log_write(LOG_ERROR, -r, "...")` style code works. */
int log_write(enum log_level level, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(...)          log_write(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)           log_write(LOG_INFO, 0, __VA_ARGS__)
#define log_warn(...)           log_write(LOG_WARN, 0, __VA_ARGS__)
#define log_error(...)          log_write(LOG_ERROR, 0, __VA_ARGS__)
#define log_error_errno(e, ...) log_write(LOG_ERROR, (e), __VA_ARGS__)

#endif
