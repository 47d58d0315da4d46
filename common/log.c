#include "common/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef HUSK_VERSION
#define HUSK_VERSION "dev"
#endif
#ifndef HUSK_COMMIT
#define HUSK_COMMIT "unknown"
#endif

static _Atomic int sink_fd = 2;
static _Atomic int sink_fmt = LOG_FMT_LOGFMT;
static _Atomic int sink_level = LOG_WARN;
static atomic_flag version_logged = ATOMIC_FLAG_INIT;

static __thread char t_component[64] = "husk";
static __thread char t_sandbox[80];
static __thread char t_container[80];

static const char *const level_names[] = {"debug", "info", "warning", "error", "off"};

void log_setup(int fd, enum log_format fmt, enum log_level level)
{
    sink_fd = fd;
    sink_fmt = fmt;
    sink_level = level;
    if (!atomic_flag_test_and_set(&version_logged))
        log_write(LOG_INFO, 0, "husk version %s commit %s pid %d", HUSK_VERSION, HUSK_COMMIT,
                  (int)getpid());
}

int log_level_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "debug"))
        return LOG_DEBUG;
    if (!strcmp(s, "info"))
        return LOG_INFO;
    if (!strcmp(s, "warn") || !strcmp(s, "warning"))
        return LOG_WARN;
    if (!strcmp(s, "error"))
        return LOG_ERROR;
    if (!strcmp(s, "off"))
        return LOG_OFF;
    return -1;
}

int log_format_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "text") || !strcmp(s, "logfmt"))
        return LOG_FMT_LOGFMT;
    if (!strcmp(s, "json"))
        return LOG_FMT_JSON;
    return -1;
}

enum log_level log_get_level(void)
{
    return sink_level;
}

static void set_field(char *dst, size_t cap, const char *prefix, const char *v)
{
    if (!v || !*v) {
        dst[0] = 0;
        return;
    }
    snprintf(dst, cap, "%s%s", prefix, v);
}

void log_set_component(const char *name)
{
    set_field(t_component, sizeof t_component, "husk.", name);
    if (!t_component[0])
        strcpy(t_component, "husk");
}

void log_set_sandbox(const char *id)
{
    set_field(t_sandbox, sizeof t_sandbox, "", id);
}

void log_set_container(const char *id)
{
    set_field(t_container, sizeof t_container, "", id);
}

/* Appends s quoted/escaped for the chosen format. */
static size_t put_escaped(char *out, size_t pos, size_t cap, const char *s, int json)
{
    if (pos + 1 < cap)
        out[pos++] = '"';
    for (; *s && pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[pos++] = '\\';
            out[pos++] = c;
        } else if (c == '\n') {
            out[pos++] = '\\';
            out[pos++] = 'n';
        } else if (c < 0x20) {
            pos += snprintf(out + pos, cap - pos, json ? "\\u%04x" : "\\x%02x", c);
        } else {
            out[pos++] = c;
        }
    }
    if (pos + 1 < cap)
        out[pos++] = '"';
    return pos;
}

static size_t put_raw(char *out, size_t pos, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (pos + n >= cap)
        n = cap - pos - 1;
    memcpy(out + pos, s, n);
    return pos + n;
}

static size_t put_kv(char *out, size_t pos, size_t cap, const char *k, const char *v, int json,
                     int first)
{
    if (json) {
        pos = put_raw(out, pos, cap, first ? "{\"" : ",\"");
        pos = put_raw(out, pos, cap, k);
        pos = put_raw(out, pos, cap, "\":");
        return put_escaped(out, pos, cap, v, 1);
    }
    if (!first)
        pos = put_raw(out, pos, cap, " ");
    pos = put_raw(out, pos, cap, k);
    pos = put_raw(out, pos, cap, "=");
    /* logfmt: bare value when it needs no quoting */
    if (*v && !strpbrk(v, " \"=\\\n\t"))
        return put_raw(out, pos, cap, v);
    return put_escaped(out, pos, cap, v, 0);
}

int log_write(enum log_level level, int errnum, const char *fmt, ...)
{
    int ret = errnum > 0 ? -errnum : errnum;
    if ((int)level < sink_level || level >= LOG_OFF)
        return ret;
    char msg[2048], line[3072], ts[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (errnum) {
        size_t n = strlen(msg);
        snprintf(msg + n, sizeof msg - n, ": %s", strerror(errnum < 0 ? -errnum : errnum));
    }
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%06ldZ", now.tv_nsec / 1000);

    int json = sink_fmt == LOG_FMT_JSON;
    size_t pos = 0, cap = sizeof line - 2;
    pos = put_kv(line, pos, cap, "time", ts, json, 1);
    pos = put_kv(line, pos, cap, "level", level_names[level], json, 0);
    pos = put_kv(line, pos, cap, "component", t_component, json, 0);
    if (t_sandbox[0])
        pos = put_kv(line, pos, cap, "sandbox", t_sandbox, json, 0);
    if (t_container[0])
        pos = put_kv(line, pos, cap, "container", t_container, json, 0);
    pos = put_kv(line, pos, cap, "msg", msg, json, 0);
    if (json)
        line[pos++] = '}';
    line[pos++] = '\n';
    ssize_t w = write(sink_fd, line, pos);
    (void)w;
    return ret;
}
