/* qmp: non-blocking QMP client (see qmp.h). */
#include "hypervisors/qmp.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"

enum state { S_GREETING = 0, S_NEGOTIATING, S_READY, S_CLOSED };

struct pending {
    struct pending *next;
    hv_qmp_t *q;
    unsigned long id;
    char *cmd;  /* command name, for messages */
    char *line; /* serialized request, until sent */
    struct event *timer;
    hv_qmp_reply_fn cb;
    void *arg;
};

struct hv_qmp {
    struct event_base *base;
    struct bufferevent *bev;
    struct event *negotiate_timer;
    struct hv_qmp_callbacks cb;
    size_t max_line;
    enum state state;
    unsigned long next_id;
    struct pending *pending; /* in submission order */
    int busy;
    bool doomed;
};

static void really_free(hv_qmp_t *q);

static void enter(hv_qmp_t *q)
{
    q->busy++;
}

/* Returns true when q is gone (or must not be touched). */
static bool leave(hv_qmp_t *q)
{
    if (--q->busy == 0 && q->doomed) {
        really_free(q);
        return true;
    }
    return false;
}

static void pending_free(struct pending *p)
{
    if (p->timer)
        event_free(p->timer);
    free(p->cmd);
    free(p->line);
    free(p);
}

static void pending_unlink(hv_qmp_t *q, struct pending *p)
{
    for (struct pending **pp = &q->pending; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            return;
        }
}

/* Closes the connection; every pending command fails with err, then
 * on_closed.  Call between enter/leave. */
static void fail(hv_qmp_t *q, err_t *err)
{
    if (q->state == S_CLOSED)
        return;
    q->state = S_CLOSED;
    log_debug("qmp: closed: %s", err_str(err));
    if (q->bev) {
        bufferevent_free(q->bev);
        q->bev = NULL;
    }
    if (q->negotiate_timer)
        event_del(q->negotiate_timer);
    while (q->pending && !q->doomed) {
        struct pending *p = q->pending;
        q->pending = p->next;
        hv_qmp_reply_fn cb = p->cb;
        void *arg = p->arg;
        err_t e = ERR_INIT;
        err_make(&e, err->code, "qmp `%s`: %s", p->cmd, err_str(err));
        pending_free(p);
        if (cb)
            cb(q, arg, NULL, &e);
        err_clear(&e);
    }
    if (!q->doomed && q->cb.on_closed)
        q->cb.on_closed(q, q->cb.arg, -err->code, err);
}

static void fail_code(hv_qmp_t *q, int code, const char *fmt, const char *a)
{
    err_t e = ERR_INIT;
    err_make(&e, code, fmt, a);
    fail(q, &e);
    err_clear(&e);
}

static int send_line(hv_qmp_t *q, const char *line)
{
    if (bufferevent_write(q->bev, line, strlen(line)) < 0 || bufferevent_write(q->bev, "\n", 1) < 0)
        return -ENOMEM;
    return 0;
}

static void flush_queued(hv_qmp_t *q)
{
    for (struct pending *p = q->pending; p; p = p->next)
        if (p->line) {
            if (send_line(q, p->line) < 0) {
                fail_code(q, ENOMEM, "qmp: %s", "out of memory");
                return;
            }
            free(p->line);
            p->line = NULL;
        }
}

static void on_cmd_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    hv_qmp_t *q = p->q;
    enter(q);
    pending_unlink(q, p);
    hv_qmp_reply_fn cb = p->cb;
    void *cb_arg = p->arg;
    err_t e = ERR_INIT;
    err_make(&e, ETIMEDOUT, "qmp `%s`: no reply within the deadline", p->cmd);
    pending_free(p);
    if (cb)
        cb(q, cb_arg, NULL, &e);
    err_clear(&e);
    leave(q);
}

static void on_negotiate_timeout(evutil_socket_t fd, short what, void *arg)
{
    hv_qmp_t *q = arg;
    enter(q);
    fail_code(q, ETIMEDOUT, "qmp: %s",
              q->state == S_GREETING ? "no greeting within the deadline"
                                     : "capabilities negotiation timed out");
    leave(q);
}

static int error_code(const char *cls)
{
    if (!cls)
        return EIO;
    if (!strcmp(cls, "DeviceNotFound"))
        return ENODEV;
    if (!strcmp(cls, "CommandNotFound"))
        return EOPNOTSUPP;
    return EIO;
}

static void on_capabilities(hv_qmp_t *q, void *arg, json_t *ret, const err_t *err)
{
    if (err) {
        err_t e = ERR_INIT;
        err_make(&e, err->code, "qmp: negotiation: %s", err_str(err));
        fail(q, &e);
        err_clear(&e);
        return;
    }
    q->state = S_READY;
    event_del(q->negotiate_timer);
    flush_queued(q);
    if (q->state == S_READY && q->cb.on_ready)
        q->cb.on_ready(q, q->cb.arg, 0, NULL);
}

static void handle_reply(hv_qmp_t *q, json_t *msg)
{
    json_t *jid = json_object_get(msg, "id");
    if (!json_is_string(jid)) {
        log_debug("qmp: reply without our id, ignored");
        return;
    }
    const char *s = json_string_value(jid);
    char *end;
    if (s[0] != 'h')
        return;
    unsigned long id = strtoul(s + 1, &end, 10);
    if (*end)
        return;
    struct pending *p = q->pending;
    while (p && p->id != id)
        p = p->next;
    if (!p) {
        log_debug("qmp: reply to unknown or expired id %s, ignored", s);
        return;
    }
    pending_unlink(q, p);
    hv_qmp_reply_fn cb = p->cb;
    void *arg = p->arg;
    json_t *ret = json_object_get(msg, "return");
    json_t *error = json_object_get(msg, "error");
    err_t e = ERR_INIT;
    if (!ret) {
        const char *cls = json_string_value(json_object_get(error, "class"));
        const char *desc = json_string_value(json_object_get(error, "desc"));
        err_make(&e, error_code(cls), "qmp `%s`: %s: %s", p->cmd, cls ? cls : "error",
                 desc ? desc : "(no description)");
    }
    pending_free(p);
    if (cb)
        cb(q, arg, ret ? ret : NULL, ret ? NULL : &e);
    err_clear(&e);
}

static void handle_line(hv_qmp_t *q, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!msg || !json_is_object(msg)) {
        json_decref(msg);
        err_t e = ERR_INIT;
        err_make(&e, EPROTO, "qmp: peer sent a line that is not a JSON object (%s)",
                 msg ? "not an object" : jerr.text);
        fail(q, &e);
        err_clear(&e);
        return;
    }
    switch (q->state) {
    case S_GREETING:
        if (!json_object_get(msg, "QMP")) {
            fail_code(q, EPROTO, "qmp: %s", "first line is not a QMP greeting");
            break;
        }
        q->state = S_NEGOTIATING;
        {
            err_t e = ERR_INIT;
            q->state = S_READY; /* let the command through, then back */
            int r = hv_qmp_command(q, "qmp_capabilities", NULL, 0, on_capabilities, NULL, &e);
            q->state = S_NEGOTIATING;
            if (r < 0)
                fail(q, &e);
            err_clear(&e);
        }
        break;
    case S_NEGOTIATING:
    case S_READY:
        if (json_object_get(msg, "event")) {
            const char *name = json_string_value(json_object_get(msg, "event"));
            if (!name) {
                fail_code(q, EPROTO, "qmp: %s", "event without a name");
                break;
            }
            if (q->state == S_READY && q->cb.on_event)
                q->cb.on_event(q, q->cb.arg, name, json_object_get(msg, "data"));
        } else if (json_object_get(msg, "return") || json_object_get(msg, "error")) {
            handle_reply(q, msg);
        } else {
            log_debug("qmp: unknown message, ignored");
        }
        break;
    case S_CLOSED:
        break;
    }
    json_decref(msg);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    hv_qmp_t *q = arg;
    enter(q);
    struct evbuffer *in = bufferevent_get_input(bev);
    while (q->state != S_CLOSED && !q->doomed) {
        size_t eol_len = 0;
        struct evbuffer_ptr pos = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
        if (pos.pos < 0) {
            if (evbuffer_get_length(in) > q->max_line)
                fail_code(q, EMSGSIZE, "qmp: %s", "peer sent a line longer than the limit");
            break;
        }
        if ((size_t)pos.pos > q->max_line) {
            fail_code(q, EMSGSIZE, "qmp: %s", "peer sent a line longer than the limit");
            break;
        }
        size_t n = (size_t)pos.pos;
        char *line = malloc(n + 1);
        if (!line) {
            fail_code(q, ENOMEM, "qmp: %s", "out of memory");
            break;
        }
        evbuffer_remove(in, line, n);
        evbuffer_drain(in, eol_len);
        line[n] = '\0';
        size_t len = n;
        if (len && line[len - 1] == '\r')
            len--;
        if (len)
            handle_line(q, line, len);
        free(line);
    }
    leave(q);
}

static void on_bev_event(struct bufferevent *bev, short what, void *arg)
{
    hv_qmp_t *q = arg;
    enter(q);
    if (what & BEV_EVENT_EOF)
        fail_code(q, ECONNRESET, "qmp: %s", "connection closed by peer");
    else if (what & BEV_EVENT_ERROR) {
        err_t e = ERR_INIT;
        int saved = EVUTIL_SOCKET_ERROR();
        err_make(&e, saved ? saved : EIO, "qmp: socket error: %s", strerror(saved ? saved : EIO));
        fail(q, &e);
        err_clear(&e);
    }
    leave(q);
}

int hv_qmp_connect_unix(const char *path, err_t *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return err_make(err, ENAMETOOLONG, "qmp connect %s: path too long", path);
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return err_errno(err, "qmp connect %s: socket", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS &&
        errno != EAGAIN) {
        int r = err_errno(err, "qmp connect %s", path);
        close(fd);
        return r;
    }
    return fd;
}

int hv_qmp_new(struct event_base *base, int fd, const struct hv_qmp_callbacks *cb,
               const struct hv_qmp_opts *opts, hv_qmp_t **out, err_t *err)
{
    hv_qmp_t *q = calloc(1, sizeof(*q));
    if (!q) {
        close(fd);
        return err_make(err, ENOMEM, "qmp: out of memory");
    }
    q->base = base;
    if (cb)
        q->cb = *cb;
    q->max_line = opts && opts->max_line ? opts->max_line : HV_QMP_MAX_LINE_DEFAULT;
    int nt = opts && opts->negotiate_timeout_ms > 0 ? opts->negotiate_timeout_ms : 5000;
    q->next_id = 1;
    evutil_make_socket_nonblocking(fd);
    q->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    q->negotiate_timer = evtimer_new(base, on_negotiate_timeout, q);
    if (!q->bev || !q->negotiate_timer) {
        if (!q->bev)
            close(fd);
        really_free(q);
        return err_make(err, ENOMEM, "qmp: out of memory");
    }
    bufferevent_setcb(q->bev, on_read, NULL, on_bev_event, q);
    /* Stop reading once a whole line's worth is buffered: on_read decides. */
    bufferevent_setwatermark(q->bev, EV_READ, 0, q->max_line + 2);
    bufferevent_enable(q->bev, EV_READ | EV_WRITE);
    struct timeval tv = {nt / 1000, (nt % 1000) * 1000};
    evtimer_add(q->negotiate_timer, &tv);
    *out = q;
    return 0;
}

int hv_qmp_command(hv_qmp_t *q, const char *cmd, json_t *args, int timeout_ms, hv_qmp_reply_fn cb,
                   void *arg, err_t *err)
{
    if (q->state == S_CLOSED) {
        json_decref(args);
        return err_make(err, ENOTCONN, "qmp `%s`: connection closed", cmd);
    }
    struct pending *p = calloc(1, sizeof(*p));
    json_t *req = json_object();
    if (!p || !req) {
        free(p);
        json_decref(req);
        json_decref(args);
        return err_make(err, ENOMEM, "qmp `%s`: out of memory", cmd);
    }
    p->q = q;
    p->id = q->next_id++;
    p->cb = cb;
    p->arg = arg;
    p->cmd = strdup(cmd);
    char idbuf[32];
    snprintf(idbuf, sizeof(idbuf), "h%lu", p->id);
    json_object_set_new(req, "execute", json_string(cmd));
    if (args)
        json_object_set_new(req, "arguments", args);
    json_object_set_new(req, "id", json_string(idbuf));
    p->line = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    p->timer = evtimer_new(q->base, on_cmd_timeout, p);
    if (!p->cmd || !p->line || !p->timer) {
        pending_free(p);
        return err_make(err, ENOMEM, "qmp `%s`: out of memory", cmd);
    }
    if (timeout_ms <= 0)
        timeout_ms = 5000;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(p->timer, &tv);
    if (q->state == S_READY) {
        if (send_line(q, p->line) < 0) {
            pending_free(p);
            return err_make(err, ENOMEM, "qmp `%s`: out of memory", cmd);
        }
        free(p->line);
        p->line = NULL;
    }
    struct pending **pp = &q->pending;
    while (*pp)
        pp = &(*pp)->next;
    *pp = p;
    log_debug("qmp: -> %s id=h%lu", cmd, p->id);
    return 0;
}

bool hv_qmp_is_ready(const hv_qmp_t *q)
{
    return q->state == S_READY;
}

bool hv_qmp_is_closed(const hv_qmp_t *q)
{
    return q->state == S_CLOSED;
}

size_t hv_qmp_pending(const hv_qmp_t *q)
{
    size_t n = 0;
    for (struct pending *p = q->pending; p; p = p->next)
        n++;
    return n;
}

static void really_free(hv_qmp_t *q)
{
    while (q->pending) {
        struct pending *p = q->pending;
        q->pending = p->next;
        pending_free(p);
    }
    if (q->bev)
        bufferevent_free(q->bev);
    if (q->negotiate_timer)
        event_free(q->negotiate_timer);
    free(q);
}

void hv_qmp_destroy(hv_qmp_t **q_p)
{
    if (!q_p || !*q_p)
        return;
    hv_qmp_t *q = *q_p;
    *q_p = NULL;
    if (q->busy > 0) {
        /* Stop all I/O now; free when the running callback unwinds. */
        q->doomed = true;
        q->state = S_CLOSED;
        if (q->bev) {
            bufferevent_free(q->bev);
            q->bev = NULL;
        }
        return;
    }
    really_free(q);
}
