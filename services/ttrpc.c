/* ttrpc: see ttrpc.h and docs/ttrpc.md. */
#include "services/ttrpc.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "services/proto/ttrpc/ttrpc.pb-c.h"

/* OOM policy: abort (crun's xmalloc).  Nobody tests recovery paths. */
/* protobuf-c leaves unset strings NULL on some paths: keep "" instead */
static char *dup_or_empty(const char *s)
{
    return xstrdup(s ? s : "");
}

/* libevent writes with writev(), which raises SIGPIPE on a connection the
 * peer closed (containerd going away while we answer).  Linux has no
 * per-socket opt-out, so ignore the signal process-wide unless the program
 * chose a disposition of its own; the write then fails with EPIPE and the
 * connection is closed as for any error. */
static void ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL &&
        !(sa.sa_flags & SA_SIGINFO))
        signal(SIGPIPE, SIG_IGN);
}

/* ---- codes ----------------------------------------------------------- */

static const char *const code_names[] = {
    [TTRPC_OK] = "OK",
    [TTRPC_CANCELED] = "Canceled",
    [TTRPC_UNKNOWN] = "Unknown",
    [TTRPC_INVALID_ARGUMENT] = "InvalidArgument",
    [TTRPC_DEADLINE_EXCEEDED] = "DeadlineExceeded",
    [TTRPC_NOT_FOUND] = "NotFound",
    [TTRPC_ALREADY_EXISTS] = "AlreadyExists",
    [TTRPC_PERMISSION_DENIED] = "PermissionDenied",
    [TTRPC_RESOURCE_EXHAUSTED] = "ResourceExhausted",
    [TTRPC_FAILED_PRECONDITION] = "FailedPrecondition",
    [TTRPC_ABORTED] = "Aborted",
    [TTRPC_OUT_OF_RANGE] = "OutOfRange",
    [TTRPC_UNIMPLEMENTED] = "Unimplemented",
    [TTRPC_INTERNAL] = "Internal",
    [TTRPC_UNAVAILABLE] = "Unavailable",
    [TTRPC_DATA_LOSS] = "DataLoss",
    [TTRPC_UNAUTHENTICATED] = "Unauthenticated",
};

const char *ttrpc_code_name(int code)
{
    if (code < 0 || (size_t)code >= sizeof(code_names) / sizeof(code_names[0]))
        return "Unknown";
    return code_names[code];
}

int ttrpc_code_from_errno(int errnum)
{
    if (errnum < 0)
        errnum = -errnum;
    switch (errnum) {
    case 0:
        return TTRPC_OK;
    case ENOENT:
    case ESRCH:
        return TTRPC_NOT_FOUND;
    case EEXIST:
        return TTRPC_ALREADY_EXISTS;
    case EINVAL:
    case EBADMSG:
        return TTRPC_INVALID_ARGUMENT;
    case ETIMEDOUT:
        return TTRPC_DEADLINE_EXCEEDED;
    case ECANCELED:
        return TTRPC_CANCELED;
    case ENOSYS:
    case ENOTSUP:
        return TTRPC_UNIMPLEMENTED;
    case EPERM:
    case EACCES:
        return TTRPC_PERMISSION_DENIED;
    case EBUSY:
    case EALREADY:
    case ENOTEMPTY:
        return TTRPC_FAILED_PRECONDITION;
    case ECONNREFUSED:
    case ENOTCONN:
    case ECONNRESET:
    case EPIPE:
    case EAGAIN:
        return TTRPC_UNAVAILABLE;
    case EMSGSIZE:
    case ENOSPC:
        return TTRPC_RESOURCE_EXHAUSTED;
    default:
        return TTRPC_UNKNOWN;
    }
}

/* ---- framing --------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

void ttrpc_header_pack(const ttrpc_header_t *h, uint8_t out[TTRPC_HEADER_LEN])
{
    put_be32(out, h->length);
    put_be32(out + 4, h->stream_id);
    out[8] = h->type;
    out[9] = h->flags;
}

void ttrpc_header_unpack(const uint8_t in[TTRPC_HEADER_LEN], ttrpc_header_t *h)
{
    h->length = get_be32(in);
    h->stream_id = get_be32(in + 4);
    h->type = in[8];
    h->flags = in[9];
}

struct ttrpc_parser {
    uint32_t max;
    uint8_t hbuf[TTRPC_HEADER_LEN];
    size_t hlen; /* header bytes buffered */
    ttrpc_header_t hdr;
    uint8_t *body; /* non-NULL while a body is being collected */
    size_t got;    /* body bytes collected */
    uint32_t skip; /* bytes of an oversized body still to discard */
};

ttrpc_parser_t *ttrpc_parser_new(uint32_t max_data)
{
    ttrpc_parser_t *p = xcalloc(1, sizeof(*p));
    p->max = max_data;
    return p;
}

void ttrpc_parser_destroy(ttrpc_parser_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->body);
    free(*self_p);
    *self_p = NULL;
}

bool ttrpc_parser_partial(const ttrpc_parser_t *self)
{
    return self->hlen > 0 || self->body || self->skip > 0;
}

int ttrpc_parser_feed(ttrpc_parser_t *self, const uint8_t *buf, size_t len, ttrpc_frame_fn fn,
                      void *arg)
{
    size_t off = 0;
    while (off < len) {
        size_t avail = len - off;
        if (self->skip > 0) {
            size_t n = avail < self->skip ? avail : self->skip;
            self->skip -= (uint32_t)n;
            off += n;
            continue;
        }
        if (self->body) {
            size_t want = self->hdr.length - self->got;
            size_t n = avail < want ? avail : want;
            memcpy(self->body + self->got, buf + off, n);
            self->got += n;
            off += n;
            if (self->got < self->hdr.length)
                break;
            uint8_t *body = self->body;
            self->body = NULL;
            ttrpc_frame_t f = {.hdr = self->hdr, .data = body, .len = self->hdr.length};
            int r = fn(&f, arg);
            free(body);
            if (r < 0)
                return r;
            continue;
        }
        size_t n = TTRPC_HEADER_LEN - self->hlen;
        if (n > avail)
            n = avail;
        memcpy(self->hbuf + self->hlen, buf + off, n);
        self->hlen += n;
        off += n;
        if (self->hlen < TTRPC_HEADER_LEN)
            break;
        self->hlen = 0;
        ttrpc_header_unpack(self->hbuf, &self->hdr);
        ttrpc_frame_t f = {.hdr = self->hdr, .len = self->hdr.length};
        if (self->hdr.length > self->max) {
            /* Report now, discard the body as it comes: never allocated. */
            f.oversized = true;
            f.len = 0;
            self->skip = self->hdr.length;
        } else if (self->hdr.length > len - off) {
            self->body = xmalloc(self->hdr.length);
            self->got = 0;
            continue;
        } else if (self->hdr.length > 0) {
            /* Whole body already here: hand it out without copying. */
            f.data = buf + off;
            off += self->hdr.length;
        }
        int r = fn(&f, arg);
        if (r < 0)
            return r;
    }
    return 0;
}

static int parse_address(const char *address, struct sockaddr_un *sun, err_t *err)
{
    const char *path = address;
    if (!address || !*address)
        return err_make(err, EINVAL, "empty ttrpc address");
    if (strncmp(path, "unix://", 7) == 0)
        path += 7;
    if (!*path)
        return err_make(err, EINVAL, "ttrpc address `%s` has no path", address);
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun->sun_path))
        return err_make(err, ENAMETOOLONG, "ttrpc address `%s`: path longer than %zu bytes",
                        address, sizeof(sun->sun_path) - 1);
    strcpy(sun->sun_path, path);
    return 0;
}

/* Packs header + Response into one buffer and queues it. */
static void send_response(struct bufferevent *bev, uint32_t sid, int code, const char *message,
                          const uint8_t *payload, size_t len)
{
    Ttrpc__Response resp = TTRPC__RESPONSE__INIT;
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    _cleanup_free_ char *too_big = NULL;
    if (code != TTRPC_OK) {
        st.code = code;
        st.message = (char *)(message ? message : "");
        resp.status = &st;
    } else if (len > 0) {
        resp.payload.data = (uint8_t *)payload;
        resp.payload.len = len;
    }
    size_t n = ttrpc__response__get_packed_size(&resp);
    if (n > TTRPC_MAX_DATA) {
        if (asprintf(&too_big, "response of %zu bytes exceeds maximum message size of %u", n,
                     TTRPC_MAX_DATA) < 0)
            abort();
        st.code = TTRPC_RESOURCE_EXHAUSTED;
        st.message = too_big;
        resp.status = &st;
        resp.payload.data = NULL;
        resp.payload.len = 0;
        n = ttrpc__response__get_packed_size(&resp);
    }
    _cleanup_free_ uint8_t *buf = xmalloc(TTRPC_HEADER_LEN + n);
    ttrpc_header_t h = {.length = (uint32_t)n, .stream_id = sid, .type = TTRPC_MSG_RESPONSE};
    ttrpc_header_pack(&h, buf);
    ttrpc__response__pack(&resp, buf + TTRPC_HEADER_LEN);
    if (bufferevent_write(bev, buf, TTRPC_HEADER_LEN + n) < 0)
        abort(); /* only fails on OOM */
}

/* ---- server ---------------------------------------------------------- */

struct method {
    char *name; /* "service/method" */
    ttrpc_handler_fn fn;
    void *arg;
};

struct conn {
    ttrpc_server_t *server;
    struct conn *prev, *next;
    struct bufferevent *bev;
    ttrpc_parser_t *parser;
    ttrpc_call_t *calls; /* unanswered, doubly linked */
    size_t n_calls;
    int busy;  /* > 0 while inside one of our callbacks */
    bool dead; /* closed; freed when busy drops to 0 */
};

struct ttrpc_call {
    struct conn *conn; /* NULL once cancelled */
    ttrpc_call_t *prev, *next;
    uint32_t stream_id;
    char *service, *method;
    int64_t timeout_ns;
    size_t n_md;
    char **md; /* key, value, key, value... */
    ttrpc_cancel_fn cancel_fn;
    void *cancel_arg;
};

struct ttrpc_server {
    struct event_base *base;
    struct method *methods;
    size_t n_methods;
    struct evconnlistener **listeners;
    size_t n_listeners;
    struct conn *conns;
    size_t n_conns;
    bool same_uid;
};

int ttrpc_server_new(struct event_base *base, ttrpc_server_t **out, err_t *err)
{
    assert(base && out);
    ignore_sigpipe();
    ttrpc_server_t *s = xcalloc(1, sizeof(*s));
    s->base = base;
    s->same_uid = true;
    *out = s;
    return 0;
}

static void call_free(ttrpc_call_t *c)
{
    for (size_t i = 0; i < 2 * c->n_md; i++)
        free(c->md[i]);
    free(c->md);
    free(c->service);
    free(c->method);
    free(c);
}

static void conn_unlink_call(struct conn *conn, ttrpc_call_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        conn->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    conn->n_calls--;
}

static void conn_free(struct conn *conn)
{
    ttrpc_parser_destroy(&conn->parser);
    free(conn);
}

/* Closes the socket, cancels the calls, frees conn unless a callback of
 * ours is running on it (then the callback frees it on its way out). */
static void conn_close(struct conn *conn)
{
    if (conn->dead)
        return;
    conn->dead = true;
    ttrpc_server_t *s = conn->server;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        s->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    s->n_conns--;
    bufferevent_setcb(conn->bev, NULL, NULL, NULL, NULL);
    bufferevent_free(conn->bev);
    conn->bev = NULL;
    conn->busy++;
    while (conn->calls) {
        ttrpc_call_t *c = conn->calls;
        conn_unlink_call(conn, c);
        c->conn = NULL;
        ttrpc_cancel_fn fn = c->cancel_fn;
        c->cancel_fn = NULL;
        if (fn)
            fn(c, c->cancel_arg); /* may answer, which frees c */
    }
    conn->busy--;
    if (conn->busy == 0)
        conn_free(conn);
}

static const struct method *find_method(const ttrpc_server_t *s, const char *service,
                                        const char *method, bool *service_known)
{
    size_t sl = strlen(service);
    *service_known = false;
    for (size_t i = 0; i < s->n_methods; i++) {
        const char *n = s->methods[i].name;
        if (strncmp(n, service, sl) != 0 || n[sl] != '/')
            continue;
        *service_known = true;
        if (strcmp(n + sl + 1, method) == 0)
            return &s->methods[i];
    }
    return NULL;
}

static void conn_fail(struct conn *conn, uint32_t sid, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void conn_fail(struct conn *conn, uint32_t sid, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    send_response(conn->bev, sid, code, msg, NULL, 0);
}

static int conn_on_frame(const ttrpc_frame_t *f, void *arg)
{
    struct conn *conn = arg;
    uint32_t sid = f->hdr.stream_id;
    if (conn->dead)
        return -ECONNRESET;
    if (f->hdr.type != TTRPC_MSG_REQUEST)
        return 0; /* "for future compat", as the Go server */
    if (f->oversized) {
        conn_fail(conn, sid, TTRPC_RESOURCE_EXHAUSTED,
                  "message length %u exceed maximum message size of %u", f->hdr.length,
                  TTRPC_MAX_DATA);
        return 0;
    }
    if (sid % 2 == 0) {
        conn_fail(conn, sid, TTRPC_INVALID_ARGUMENT,
                  "StreamID must be odd for client initiated streams");
        return 0;
    }
    if (conn->n_calls >= TTRPC_MAX_CALLS_PER_CONN) {
        conn_fail(conn, sid, TTRPC_RESOURCE_EXHAUSTED, "more than %d requests in flight",
                  TTRPC_MAX_CALLS_PER_CONN);
        return 0;
    }
    Ttrpc__Request *req = ttrpc__request__unpack(NULL, f->len, f->data);
    if (!req) {
        conn_fail(conn, sid, TTRPC_INVALID_ARGUMENT,
                  "unmarshal request error: malformed ttrpc.Request");
        return 0;
    }
    bool service_known;
    const struct method *m = find_method(conn->server, req->service, req->method, &service_known);
    if (!m) {
        if (service_known)
            conn_fail(conn, sid, TTRPC_UNIMPLEMENTED, "method %s", req->method);
        else
            conn_fail(conn, sid, TTRPC_UNIMPLEMENTED, "service %s", req->service);
        ttrpc__request__free_unpacked(req, NULL);
        return 0;
    }
    ttrpc_call_t *c = xcalloc(1, sizeof(*c));
    c->conn = conn;
    c->stream_id = sid;
    c->service = dup_or_empty(req->service);
    c->method = dup_or_empty(req->method);
    c->timeout_ns = req->timeout_nano;
    c->n_md = req->n_metadata;
    c->md = xcalloc(2 * c->n_md, sizeof(char *));
    for (size_t i = 0; i < c->n_md; i++) {
        c->md[2 * i] = dup_or_empty(req->metadata[i]->key);
        c->md[2 * i + 1] = dup_or_empty(req->metadata[i]->value);
    }
    c->next = conn->calls;
    if (conn->calls)
        conn->calls->prev = c;
    conn->calls = c;
    conn->n_calls++;
    /* The handler may answer (freeing c), close conn or destroy the server:
     * touch neither c nor conn->server afterwards. */
    m->fn(c, req->payload.data, req->payload.len, m->arg);
    ttrpc__request__free_unpacked(req, NULL);
    return conn->dead ? -ECONNRESET : 0;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *conn = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    conn->busy++;
    while (!conn->dead && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        int r = ttrpc_parser_feed(conn->parser, v.iov_base, v.iov_len, conn_on_frame, conn);
        if (conn->dead)
            break; /* bev and its buffer are gone */
        evbuffer_drain(in, v.iov_len);
        if (r < 0)
            break;
    }
    conn->busy--;
    if (conn->dead && conn->busy == 0)
        conn_free(conn);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *conn = arg;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (what & BEV_EVENT_ERROR)
        log_debug("ttrpc: connection error: %s", strerror(EVUTIL_SOCKET_ERROR()));
    conn->busy++;
    conn_close(conn);
    conn->busy--;
    if (conn->busy == 0)
        conn_free(conn);
}

static int server_add_conn(ttrpc_server_t *s, int fd, err_t *err)
{
    struct bufferevent *bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        close(fd);
        return err_make(err, ENOMEM, "ttrpc: bufferevent for fd %d", fd);
    }
    struct conn *conn = xcalloc(1, sizeof(*conn));
    conn->server = s;
    conn->bev = bev;
    conn->parser = ttrpc_parser_new(TTRPC_MAX_DATA);
    conn->next = s->conns;
    if (s->conns)
        s->conns->prev = conn;
    s->conns = conn;
    s->n_conns++;
    bufferevent_setcb(bev, conn_read_cb, NULL, conn_event_cb, conn);
    if (bufferevent_enable(bev, EV_READ | EV_WRITE) < 0) {
        conn_close(conn);
        return err_make(err, EIO, "ttrpc: enable bufferevent");
    }
    return 0;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    ttrpc_server_t *s = arg;
    if (s->same_uid) {
        struct ucred cred = {0, 0, 0};
        socklen_t cl = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || cred.uid != geteuid()) {
            log_warn("ttrpc: rejected connection from uid %d (pid %d)", (int)cred.uid,
                     (int)cred.pid);
            close(fd);
            return;
        }
    }
    err_t err = ERR_INIT;
    if (server_add_conn(s, fd, &err) < 0)
        log_warn("ttrpc: %s", err_str(&err)); /* nobody to return to */
    err_clear(&err);
}

static void listener_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    evconnlistener_enable(arg);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();
    log_warn("ttrpc: accept: %s", strerror(e));
    if (e == EMFILE || e == ENFILE) {
        /* The socket stays readable: pause a little instead of spinning. */
        struct timeval tv = {0, 100000};
        evconnlistener_disable(l);
        event_base_once(evconnlistener_get_base(l), -1, EV_TIMEOUT, listener_resume_cb, l, &tv);
    }
}

static int server_add_listener(ttrpc_server_t *s, int fd, err_t *err)
{
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    struct evconnlistener *l =
        evconnlistener_new(s->base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                           0 /* already listening */, fd);
    if (!l) {
        close(fd);
        return err_make(err, ENOMEM, "ttrpc: listener for fd %d", fd);
    }
    evconnlistener_set_error_cb(l, accept_error_cb);
    s->listeners = realloc(s->listeners, (s->n_listeners + 1) * sizeof(*s->listeners));
    if (!s->listeners)
        abort();
    s->listeners[s->n_listeners++] = l;
    return 0;
}

int ttrpc_server_listen(ttrpc_server_t *self, const char *address, err_t *err)
{
    struct sockaddr_un sun;
    int r = parse_address(address, &sun, err);
    if (r < 0)
        return r;
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return err_errno(err, "socket for `%s`", address);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
        return err_errno(err, "bind `%s`", sun.sun_path);
    if (chmod(sun.sun_path, 0600) < 0 || listen(fd, 128) < 0) {
        r = err_errno(err, "listen on `%s`", sun.sun_path);
        unlink(sun.sun_path);
        return r;
    }
    return server_add_listener(self, TAKE_FD(fd), err);
}

int ttrpc_server_listen_fd(ttrpc_server_t *self, int fd, err_t *err)
{
    _cleanup_close_ int owned = fd;
    int on = 0;
    socklen_t l = sizeof(on);
    if (fd < 0)
        return err_make(err, EBADF, "ttrpc: listen on fd %d", fd);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &l) < 0)
        return err_errno(err, "ttrpc: fd %d is not a socket", fd);
    if (!on)
        return err_make(err, EINVAL, "ttrpc: fd %d is not a listening socket", fd);
    return server_add_listener(self, TAKE_FD(owned), err);
}

int ttrpc_server_adopt_fd(ttrpc_server_t *self, int fd, err_t *err)
{
    if (fd < 0)
        return err_make(err, EBADF, "ttrpc: adopt fd %d", fd);
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    return server_add_conn(self, fd, err);
}

void ttrpc_server_set_require_same_uid(ttrpc_server_t *self, bool on)
{
    self->same_uid = on;
}

size_t ttrpc_server_connections(const ttrpc_server_t *self)
{
    return self->n_conns;
}

int ttrpc_server_register(ttrpc_server_t *self, const char *name, ttrpc_handler_fn fn, void *arg,
                          err_t *err)
{
    assert(name && fn);
    const char *slash = strchr(name, '/');
    if (!slash || slash == name || !slash[1] || strchr(slash + 1, '/'))
        return err_make(err, EINVAL, "ttrpc method name `%s` is not service/method", name);
    for (size_t i = 0; i < self->n_methods; i++)
        if (strcmp(self->methods[i].name, name) == 0)
            return err_make(err, EEXIST, "ttrpc method `%s` already registered", name);
    self->methods = realloc(self->methods, (self->n_methods + 1) * sizeof(*self->methods));
    if (!self->methods)
        abort();
    self->methods[self->n_methods++] = (struct method){.name = dup_or_empty(name), .fn = fn, .arg = arg};
    return 0;
}

void ttrpc_server_destroy(ttrpc_server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ttrpc_server_t *s = *self_p;
    *self_p = NULL;
    for (size_t i = 0; i < s->n_listeners; i++)
        evconnlistener_free(s->listeners[i]);
    free(s->listeners);
    while (s->conns)
        conn_close(s->conns);
    for (size_t i = 0; i < s->n_methods; i++)
        free(s->methods[i].name);
    free(s->methods);
    free(s);
}

const char *ttrpc_call_service(const ttrpc_call_t *call)
{
    return call->service;
}

const char *ttrpc_call_method(const ttrpc_call_t *call)
{
    return call->method;
}

uint32_t ttrpc_call_stream_id(const ttrpc_call_t *call)
{
    return call->stream_id;
}

int64_t ttrpc_call_timeout_ns(const ttrpc_call_t *call)
{
    return call->timeout_ns;
}

const char *ttrpc_call_metadata(const ttrpc_call_t *call, const char *key)
{
    for (size_t i = 0; i < call->n_md; i++)
        if (strcmp(call->md[2 * i], key) == 0)
            return call->md[2 * i + 1];
    return NULL;
}

bool ttrpc_call_cancelled(const ttrpc_call_t *call)
{
    return call->conn == NULL;
}

void ttrpc_call_set_cancel(ttrpc_call_t *call, ttrpc_cancel_fn fn, void *arg)
{
    if (!call->conn)
        return;
    call->cancel_fn = fn;
    call->cancel_arg = arg;
}

static void call_answer(ttrpc_call_t *call, int code, const char *msg, const uint8_t *payload,
                        size_t len)
{
    assert(call);
    struct conn *conn = call->conn;
    if (conn) {
        conn_unlink_call(conn, call);
        send_response(conn->bev, call->stream_id, code, msg, payload, len);
    } else {
        log_debug("ttrpc: dropped the answer to %s/%s (stream %u): connection closed",
                  call->service, call->method, call->stream_id);
    }
    call_free(call);
}

void ttrpc_call_reply(ttrpc_call_t *call, const uint8_t *payload, size_t len)
{
    call_answer(call, TTRPC_OK, NULL, payload, len);
}

void ttrpc_call_fail(ttrpc_call_t *call, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    if (code == TTRPC_OK)
        code = TTRPC_UNKNOWN; /* a failure must not read as success */
    call_answer(call, code, msg, NULL, 0);
}

void ttrpc_call_fail_err(ttrpc_call_t *call, const err_t *err)
{
    int code = ttrpc_code_from_errno(err ? err->code : 0);
    ttrpc_call_fail(call, code, "%s", err_str(err));
}

/* ---- client ---------------------------------------------------------- */

struct pending {
    ttrpc_client_t *client;
    struct pending *prev, *next;
    uint32_t stream_id;
    ttrpc_reply_fn fn;
    void *arg;
    struct event *timer; /* NULL without a timeout */
};

struct ttrpc_client {
    struct event_base *base;
    struct bufferevent *bev; /* NULL once closed */
    ttrpc_parser_t *parser;
    uint32_t next_sid;
    struct pending *pending;
    size_t n_pending;
    ttrpc_close_fn close_fn;
    void *close_arg;
    int busy;
    bool destroyed; /* freed when busy drops to 0 */
};

static void pending_unlink(ttrpc_client_t *c, struct pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        c->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    c->n_pending--;
    if (p->timer)
        event_free(p->timer);
}

/* Unlinks p, runs its callback, frees it. */
static void pending_finish(ttrpc_client_t *c, struct pending *p, int code, const char *msg,
                           const uint8_t *payload, size_t len)
{
    pending_unlink(c, p);
    ttrpc_status_t st = {.code = code, .message = msg ? msg : ""};
    p->fn(&st, payload, len, p->arg);
    free(p);
}

static struct pending *pending_find(ttrpc_client_t *c, uint32_t sid)
{
    for (struct pending *p = c->pending; p; p = p->next)
        if (p->stream_id == sid)
            return p;
    return NULL;
}

static void client_leave(ttrpc_client_t *c)
{
    c->busy--;
    if (c->destroyed && c->busy == 0) {
        ttrpc_parser_destroy(&c->parser);
        free(c);
    }
}

/* Closes the socket and fails every pending call with code. */
static void client_shut(ttrpc_client_t *c, int code, const char *msg)
{
    if (c->bev) {
        bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    while (c->pending)
        pending_finish(c, c->pending, code, msg, NULL, 0);
}

static int client_on_frame(const ttrpc_frame_t *f, void *arg)
{
    ttrpc_client_t *c = arg;
    if (c->destroyed || !c->bev)
        return -ECONNRESET;
    struct pending *p = pending_find(c, f->hdr.stream_id);
    if (!p) {
        log_debug("ttrpc: dropped a response for unknown stream %u", f->hdr.stream_id);
        return 0;
    }
    if (f->hdr.type != TTRPC_MSG_RESPONSE) {
        pending_finish(c, p, TTRPC_INTERNAL, "unknown message type received", NULL, 0);
    } else if (f->oversized) {
        _cleanup_free_ char *m = NULL;
        if (asprintf(&m, "message length %u exceed maximum message size of %u", f->hdr.length,
                     TTRPC_MAX_DATA) < 0)
            abort();
        pending_finish(c, p, TTRPC_RESOURCE_EXHAUSTED, m, NULL, 0);
    } else {
        Ttrpc__Response *resp = ttrpc__response__unpack(NULL, f->len, f->data);
        if (!resp) {
            pending_finish(c, p, TTRPC_INTERNAL, "unmarshal response error", NULL, 0);
        } else {
            int code = resp->status ? resp->status->code : TTRPC_OK;
            const char *msg = resp->status ? resp->status->message : "";
            pending_finish(c, p, code, msg, code == TTRPC_OK ? resp->payload.data : NULL,
                           code == TTRPC_OK ? resp->payload.len : 0);
            ttrpc__response__free_unpacked(resp, NULL);
        }
    }
    return (c->destroyed || !c->bev) ? -ECONNRESET : 0;
}

static void client_closed(ttrpc_client_t *c)
{
    client_shut(c, TTRPC_UNAVAILABLE, "ttrpc: closed");
    if (c->close_fn && !c->destroyed) {
        ttrpc_close_fn fn = c->close_fn;
        c->close_fn = NULL;
        fn(c, c->close_arg);
    }
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    ttrpc_client_t *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    c->busy++;
    while (c->bev && !c->destroyed && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        int r = ttrpc_parser_feed(c->parser, v.iov_base, v.iov_len, client_on_frame, c);
        if (!c->bev || c->destroyed)
            break;
        evbuffer_drain(in, v.iov_len);
        if (r < 0)
            break;
    }
    client_leave(c);
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    ttrpc_client_t *c = arg;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    c->busy++;
    client_closed(c);
    client_leave(c);
}

static void pending_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    ttrpc_client_t *c = p->client;
    c->busy++;
    /* A late answer finds no pending entry and is dropped. */
    pending_finish(c, p, TTRPC_DEADLINE_EXCEEDED, "context deadline exceeded", NULL, 0);
    client_leave(c);
}

int ttrpc_client_from_fd(struct event_base *base, int fd, ttrpc_client_t **out, err_t *err)
{
    assert(base && out);
    if (fd < 0)
        return err_make(err, EBADF, "ttrpc client: fd %d", fd);
    ignore_sigpipe();
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        close(fd);
        return err_make(err, ENOMEM, "ttrpc client: bufferevent");
    }
    ttrpc_client_t *c = xcalloc(1, sizeof(*c));
    c->base = base;
    c->bev = bev;
    c->parser = ttrpc_parser_new(TTRPC_MAX_DATA);
    c->next_sid = 1;
    bufferevent_setcb(bev, client_read_cb, NULL, client_event_cb, c);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    *out = c;
    return 0;
}

int ttrpc_client_connect(struct event_base *base, const char *address, ttrpc_client_t **out,
                         err_t *err)
{
    struct sockaddr_un sun;
    int r = parse_address(address, &sun, err);
    if (r < 0)
        return r;
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_errno(err, "socket");
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
        return err_errno(err, "connect to `%s`", sun.sun_path);
    return ttrpc_client_from_fd(base, TAKE_FD(fd), out, err);
}

void ttrpc_client_destroy(ttrpc_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ttrpc_client_t *c = *self_p;
    *self_p = NULL;
    if (c->destroyed)
        return;
    c->destroyed = true;
    c->busy++;
    client_shut(c, TTRPC_CANCELED, "ttrpc: client closed");
    client_leave(c);
}

void ttrpc_client_set_close_cb(ttrpc_client_t *self, ttrpc_close_fn fn, void *arg)
{
    self->close_fn = fn;
    self->close_arg = arg;
}

bool ttrpc_client_closed(const ttrpc_client_t *self)
{
    return self->bev == NULL;
}

size_t ttrpc_client_pending(const ttrpc_client_t *self)
{
    return self->n_pending;
}

int ttrpc_client_call(ttrpc_client_t *self, const char *service, const char *method,
                      const uint8_t *payload, size_t len, const ttrpc_call_opts_t *opts,
                      ttrpc_reply_fn fn, void *arg, err_t *err)
{
    assert(self && service && method && fn);
    if (!self->bev || self->destroyed)
        return err_make(err, ENOTCONN, "ttrpc call %s/%s: ttrpc: closed", service, method);
    Ttrpc__Request req = TTRPC__REQUEST__INIT;
    req.service = (char *)service;
    req.method = (char *)method;
    req.payload.data = (uint8_t *)payload;
    req.payload.len = len;
    size_t n_md = opts ? opts->n_metadata : 0;
    _cleanup_free_ Ttrpc__KeyValue *kvs = xcalloc(n_md, sizeof(*kvs));
    _cleanup_free_ Ttrpc__KeyValue **kvp = xcalloc(n_md, sizeof(*kvp));
    for (size_t i = 0; i < n_md; i++) {
        ttrpc__key_value__init(&kvs[i]);
        kvs[i].key = (char *)opts->metadata[i].key;
        kvs[i].value = (char *)opts->metadata[i].value;
        kvp[i] = &kvs[i];
    }
    req.n_metadata = n_md;
    req.metadata = kvp;
    if (opts && opts->timeout_ns > 0)
        req.timeout_nano = opts->timeout_ns;
    size_t n = ttrpc__request__get_packed_size(&req);
    if (n > TTRPC_MAX_DATA)
        return err_make(err, EMSGSIZE, "ttrpc call %s/%s: request of %zu bytes exceeds %u", service,
                        method, n, TTRPC_MAX_DATA);
    _cleanup_free_ uint8_t *buf = xmalloc(TTRPC_HEADER_LEN + n);
    uint32_t sid = self->next_sid;
    self->next_sid += 2;
    ttrpc_header_t h = {.length = (uint32_t)n, .stream_id = sid, .type = TTRPC_MSG_REQUEST};
    ttrpc_header_pack(&h, buf);
    ttrpc__request__pack(&req, buf + TTRPC_HEADER_LEN);

    struct pending *p = xcalloc(1, sizeof(*p));
    p->client = self;
    p->stream_id = sid;
    p->fn = fn;
    p->arg = arg;
    if (opts && opts->timeout_ns > 0) {
        p->timer = evtimer_new(self->base, pending_timeout_cb, p);
        if (!p->timer)
            abort();
        struct timeval tv = {.tv_sec = opts->timeout_ns / 1000000000,
                             .tv_usec = (opts->timeout_ns % 1000000000) / 1000};
        evtimer_add(p->timer, &tv);
    }
    if (bufferevent_write(self->bev, buf, TTRPC_HEADER_LEN + n) < 0)
        abort(); /* only fails on OOM */
    p->next = self->pending;
    if (self->pending)
        self->pending->prev = p;
    self->pending = p;
    self->n_pending++;
    return 0;
}

struct sync_ctx {
    bool done;
    ttrpc_result_t *res;
};

static void sync_reply_cb(const ttrpc_status_t *st, const uint8_t *payload, size_t len, void *arg)
{
    struct sync_ctx *ctx = arg;
    ctx->done = true;
    ctx->res->code = st->code;
    ctx->res->message = dup_or_empty(st->message);
    if (len > 0) {
        ctx->res->payload = xmalloc(len);
        memcpy(ctx->res->payload, payload, len);
    }
    ctx->res->len = len;
}

int ttrpc_client_call_sync(ttrpc_client_t *self, const char *service, const char *method,
                           const uint8_t *payload, size_t len, const ttrpc_call_opts_t *opts,
                           ttrpc_result_t *res, err_t *err)
{
    struct sync_ctx ctx = {.res = res};
    ttrpc_result_clear(res);
    uint32_t sid = self->next_sid;
    int r = ttrpc_client_call(self, service, method, payload, len, opts, sync_reply_cb, &ctx, err);
    if (r < 0)
        return r;
    struct event_base *base = self->base;
    while (!ctx.done) {
        /* The pending read (or the timer) guarantees progress: the callback
         * runs on answer, timeout, close and destroy. */
        if (event_base_loop(base, EVLOOP_ONCE) != 0 && !ctx.done) {
            /* No progress possible (nested loop?): forget the call so that
             * nothing writes to ctx after we return. */
            struct pending *p = pending_find(self, sid);
            if (p) {
                pending_unlink(self, p);
                free(p);
            }
            return err_make(err, EIO, "ttrpc call %s/%s: event loop failed", service, method);
        }
    }
    return 0;
}

void ttrpc_result_clear(ttrpc_result_t *res)
{
    if (!res)
        return;
    free(res->message);
    free(res->payload);
    *res = (ttrpc_result_t)TTRPC_RESULT_INIT;
}
