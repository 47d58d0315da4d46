/* shim_service: containerd.task.v2.Task served by an actor (shim_service.h).
 *
 * Everything runs on the actor's loop: ttRPC calls, bus replies, agent
 * output, fifo readiness.  A call that needs the runtime keeps its ids in a
 * struct op and looks its container up again when the reply comes (it may
 * have been deleted meanwhile). */
#include "common/clock.h"
#include "common/xalloc.h"
#include "services/shim_service.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtimes/runtime_actor.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "messages/msg.h"
#include "services/proto/cgroups/v2/metrics.pb-c.h"
#include "services/shim.h"
#include "services/shim_mount.h"
#include "services/ttrpc.h"
#include "services/ttrpc_event.h"
#include "services/ttrpc_task.h"

#define AGENT_NAME        "agent"
#define RT_TIMEOUT_MS     30000
#define CREATE_TIMEOUT_MS 180000 /* the first create boots the VM (TCG: seconds) */
#define DELETE_TIMEOUT_MS 90000  /* the last delete stops the VM */
#define IO_GRACE_MS       2000   /* output still open this long after an exit is closed */
#define EXIT_FLUSH_MS     3000   /* at most this long to flush events before exiting */
#define STDIN_CHUNK       (60 * 1024)

/* ---- state ------------------------------------------------------------------------ */

struct chunk {
    struct chunk *next;
    size_t len, off;
    uint8_t data[];
};

/* One output stream of a process: agent.output -> fifo. */
struct ostream {
    int fd; /* -1: discard (no path, or closed) */
    struct chunk *head, *tail;
    actor_watch_t *w;
    bool eof; /* the agent said the stream ended: close once drained */
};

struct waitq {
    ttrpc_call_t *call;
    struct proc *p;
    struct waitq *next;
};

struct ctr;

struct proc {
    struct ctr *c;
    char exec_id[RT_ID_MAX + 1]; /* "" = init */
    bool is_exec;
    char *stdin_path, *stdout_path, *stderr_path;
    bool terminal;
    char *spec; /* exec: the OCI process JSON */
    bool starting, started, exited;
    uint32_t exit_status;
    uint64_t exited_ns;
    svc_shim_order_t order;
    struct ostream out[2]; /* stdout (or the terminal), stderr */
    /* stdin */
    int in_fd;
    actor_watch_t *in_w;
    struct chunk *in_head, *in_tail;
    bool in_busy; /* one agent.write_stdin in flight */
    bool in_eof;  /* send agent.close_stdin once the queue is empty */
    bool in_close_sent;
    actor_timer_t *io_timer;
    struct waitq *waits;
    struct proc *next; /* ctr->execs */
};

struct shim;

struct ctr {
    struct shim *s;
    char id[RT_ID_MAX + 1];
    char *bundle;
    char rootfs[PATH_MAX];
    bool mounted;
    bool created; /* rt.create answered ok */
    bool paused;
    bool deleting;
    struct proc init;
    struct proc *execs;
    struct ctr *next;
};

struct shim {
    actor_t *a;
    ttrpc_server_t *srv;
    svc_ttrpc_publisher_t *pub;
    svc_ttrpc_task_service_t tsvc;
    char *ns, *ttrpc_address, *address;
    int listen_fd, exit_fd;
    struct ctr *ctrs;
    bool exiting;
    struct timespec exit_deadline;
};

struct op {
    struct shim *s;
    ttrpc_call_t *call;
    char id[RT_ID_MAX + 1], exec_id[RT_ID_MAX + 1];
    ProtobufCMessage *req; /* taken request, when the reply needs it */
    uint32_t u1, u2;
};

static struct op *op_new(struct shim *s, ttrpc_call_t *call, const char *id, const char *exec_id)
{
    struct op *op = xcalloc(1, sizeof *op);
    op->s = s;
    op->call = call;
    snprintf(op->id, sizeof op->id, "%s", id ? id : "");
    snprintf(op->exec_id, sizeof op->exec_id, "%s", exec_id ? exec_id : "");
    return op;
}

static void op_free(struct op *op)
{
    svc_ttrpc_msg_free(&op->req);
    free(op);
}

static uint32_t task_pid(void)
{
    /* The shim stands for every task: the processes live in the guest. */
    return (uint32_t)getpid();
}

static struct ctr *find_ctr(struct shim *s, const char *id)
{
    for (struct ctr *c = s->ctrs; c; c = c->next)
        if (!strcmp(c->id, id))
            return c;
    return NULL;
}

static struct proc *find_proc(struct ctr *c, const char *exec_id)
{
    if (!c)
        return NULL;
    if (!exec_id || !*exec_id)
        return &c->init;
    for (struct proc *p = c->execs; p; p = p->next)
        if (!strcmp(p->exec_id, exec_id))
            return p;
    return NULL;
}

/* Answers with NotFound the way runc's shim words it. */
static struct proc *need_proc(struct shim *s, ttrpc_call_t *call, const char *id,
                              const char *exec_id)
{
    struct ctr *c = find_ctr(s, id ? id : "");
    if (!c) {
        ttrpc_call_fail(call, TTRPC_NOT_FOUND, "container %s: container not created: not found",
                        id ? id : "");
        return NULL;
    }
    struct proc *p = find_proc(c, exec_id);
    if (!p)
        ttrpc_call_fail(call, TTRPC_NOT_FOUND, "process does not exist %s: not found", exec_id);
    return p;
}

static void fail_from(ttrpc_call_t *call, const msg_t *reply, const char *what)
{
    int code = ttrpc_code_from_errno(reply->status ? reply->status : EIO);
    ttrpc_call_fail(call, code, "%s: %s", what,
                    reply->status_text && *reply->status_text ? reply->status_text : "failed");
}

/* ---- events -------------------------------------------------------------------------- */

static void publish_raw(struct shim *s, const ProtobufCMessage *m)
{
    log_debug("event %s", svc_ttrpc_event_topic(m->descriptor));
    if (!s->pub)
        return;
    err_t err = ERR_INIT;
    if (svc_ttrpc_publish(s->pub, m, &err) < 0)
        log_warn("publish %s: %s, ignoring", svc_ttrpc_event_topic(m->descriptor), err_str(&err));
    err_clear(&err);
}

/* Publishes m for p if the order allows it; returns whether it did. */
static bool publish(struct shim *s, struct proc *p, enum svc_shim_ev ev, const ProtobufCMessage *m)
{
    if (!svc_shim_order_may(&p->order, p->is_exec, ev)) {
        log_debug("event %s for %s/%s held back (order)", svc_ttrpc_event_topic(m->descriptor),
                  p->c->id, p->exec_id);
        return false;
    }
    publish_raw(s, m);
    svc_shim_order_sent(&p->order, ev);
    return true;
}

static void publish_exit(struct shim *s, struct proc *p)
{
    Containerd__Events__TaskExit e = CONTAINERD__EVENTS__TASK_EXIT__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    svc_shim_timestamp_from_ns(&ts, p->exited_ns);
    e.container_id = p->c->id;
    e.id = p->is_exec ? p->exec_id : p->c->id;
    e.pid = task_pid();
    e.exit_status = p->exit_status;
    e.exited_at = &ts;
    if (!publish(s, p, SVC_SHIM_EV_EXIT, &e.base))
        p->order.exit_pending = true;
}

/* After a start event: an exit that came first goes now. */
static void release_exit(struct shim *s, struct proc *p)
{
    if (p->order.exit_pending)
        publish_exit(s, p);
}

/* ---- output ---------------------------------------------------------------------------- */

static void ack(struct shim *s, struct proc *p, int stream, size_t bytes)
{
    if (!bytes)
        return;
    msg_t *m = msg_new(MSG_AGENT_OUTPUT_ACK);
    msg_agent_output_ack_t *b = m->body;
    msg_set_str(&b->container_id, p->c->id);
    msg_set_str(&b->exec_id, p->exec_id);
    b->stream = (uint64_t)stream;
    b->bytes = bytes;
    err_t err = ERR_INIT;
    if (actor_send(s->a, AGENT_NAME, &m, &err) < 0)
        log_warn("output ack: %s, ignoring", err_str(&err));
    err_clear(&err);
    msg_destroy(&m);
}

static void ostream_close(struct shim *s, struct proc *p, int i)
{
    struct ostream *o = &p->out[i];
    actor_unwatch(s->a, &o->w);
    size_t dropped = 0;
    while (o->head) {
        struct chunk *ch = o->head;
        o->head = ch->next;
        dropped += ch->len - ch->off;
        free(ch);
    }
    o->tail = NULL;
    ack(s, p, i + 1, dropped);
    if (o->fd >= 0)
        close(o->fd);
    o->fd = -1;
}

static void ostream_flush(struct shim *s, struct proc *p, int i);

static void on_writable0(actor_t *a, int fd, short what, void *arg)
{
    struct proc *p = arg;
    ostream_flush(p->c->s, p, 0);
}

static void on_writable1(actor_t *a, int fd, short what, void *arg)
{
    struct proc *p = arg;
    ostream_flush(p->c->s, p, 1);
}

static void ostream_flush(struct shim *s, struct proc *p, int i)
{
    struct ostream *o = &p->out[i];
    while (o->head && o->fd >= 0) {
        struct chunk *ch = o->head;
        ssize_t n = write(o->fd, ch->data + ch->off, ch->len - ch->off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (!o->w)
                o->w = actor_watch(s->a, o->fd, EV_WRITE, i ? on_writable1 : on_writable0, p);
            return;
        }
        if (n < 0) {
            log_warn("container %s: write %s: %m; dropping its output", p->c->id,
                     i ? "stderr" : "stdout");
            ostream_close(s, p, i);
            return;
        }
        ch->off += (size_t)n;
        ack(s, p, i + 1, (size_t)n);
        if (ch->off == ch->len) {
            o->head = ch->next;
            if (!o->head)
                o->tail = NULL;
            free(ch);
        }
    }
    actor_unwatch(s->a, &o->w);
    if (o->eof && o->fd >= 0) {
        close(o->fd);
        o->fd = -1;
    }
}

static void on_output(actor_t *a, msg_t **m, void *state)
{
    struct shim *s = state;
    msg_agent_output_t *b = (*m)->body;
    struct proc *p = find_proc(find_ctr(s, b->container_id), b->exec_id);
    if (!p) {
        /* not ours (any more): give the credit back so nothing stalls */
        if (b->data.len && (b->stream == 1 || b->stream == 2)) {
            msg_t *r = msg_new(MSG_AGENT_OUTPUT_ACK);
            msg_agent_output_ack_t *k = r->body;
            msg_set_str(&k->container_id, b->container_id);
            msg_set_str(&k->exec_id, b->exec_id);
            k->stream = b->stream;
            k->bytes = b->data.len;
            err_t err = ERR_INIT;
            actor_send(a, AGENT_NAME, &r, &err);
            err_clear(&err);
            msg_destroy(&r);
        }
        return;
    }
    if (b->stream != 1 && b->stream != 2)
        return;
    int i = (int)b->stream - 1;
    struct ostream *o = &p->out[i];
    if (b->data.len) {
        if (o->fd < 0) {
            ack(s, p, i + 1, b->data.len);
        } else {
            struct chunk *ch = xmalloc(sizeof *ch + b->data.len);
            ch->next = NULL;
            ch->len = b->data.len;
            ch->off = 0;
            memcpy(ch->data, b->data.data, b->data.len);
            if (o->tail)
                o->tail->next = ch;
            else
                o->head = ch;
            o->tail = ch;
        }
    }
    if (b->eof)
        o->eof = true;
    ostream_flush(s, p, i);
}

/* "" -> -1; file:///p -> appended file; binary:// -> refused; else a fifo
 * (or any path), opened so that it never blocks. */
static int open_output(const char *uri, int *fd, err_t *err)
{
    *fd = -1;
    if (!uri || !*uri)
        return 0;
    if (!strncmp(uri, "binary://", 9))
        return err_make(err, ENOTSUP, "stdio %s: binary:// loggers are not supported", uri);
    if (!strncmp(uri, "file://", 7)) {
        *fd = open(uri + 7, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
        if (*fd < 0)
            return err_errno(err, "open %s", uri + 7);
        return 0;
    }
    const char *path = !strncmp(uri, "fifo://", 7) ? uri + 7 : uri;
    *fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (*fd < 0)
        return err_errno(err, "open %s", path);
    return 0;
}

static int proc_open_outputs(struct proc *p, err_t *err)
{
    int r = open_output(p->stdout_path, &p->out[0].fd, err);
    if (r == 0 && !p->terminal)
        r = open_output(p->stderr_path, &p->out[1].fd, err);
    return r;
}

/* ---- stdin ----------------------------------------------------------------------------- */

static void stdin_pump(struct shim *s, struct proc *p);
static void stdin_send(struct shim *s, struct proc *p);
static void on_stdin(actor_t *a, int fd, short what, void *arg);

/* Reads the fifo only while nothing is queued or in flight: the fifo is
 * the buffer, and the writer blocks when it is full. */
static void stdin_arm(struct shim *s, struct proc *p)
{
    bool want = p->in_fd >= 0 && p->started && !p->in_busy && !p->in_head;
    if (want && !p->in_w)
        p->in_w = actor_watch(s->a, p->in_fd, EV_READ, on_stdin, p);
    else if (!want && p->in_w)
        actor_unwatch(s->a, &p->in_w);
}

static void on_written(actor_t *a, msg_t **reply, void *arg)
{
    /* arg: the container id + exec id, copied (the process may be gone) */
    struct op *op = arg;
    struct shim *s = op->s;
    struct proc *p = find_proc(find_ctr(s, op->id), op->exec_id);
    if ((*reply)->status)
        log_warn("container %s: stdin: %s, ignoring", op->id,
                 (*reply)->status_text ? (*reply)->status_text : "");
    op_free(op);
    if (!p)
        return;
    p->in_busy = false;
    stdin_pump(s, p);
}

static void on_stdin_closed(actor_t *a, msg_t **reply, void *arg)
{
    if ((*reply)->status)
        log_debug("close stdin: %s, ignoring", (*reply)->status_text ? (*reply)->status_text : "");
}

static void stdin_stop_reading(struct shim *s, struct proc *p)
{
    actor_unwatch(s->a, &p->in_w);
    if (p->in_fd >= 0)
        close(p->in_fd);
    p->in_fd = -1;
}

/* Sends the next queued chunk, or agent.close_stdin once the queue is
 * empty after EOF.  Only once the process runs. */
static void stdin_pump(struct shim *s, struct proc *p)
{
    stdin_send(s, p);
    stdin_arm(s, p);
}

static void stdin_send(struct shim *s, struct proc *p)
{
    if (!p->started || p->in_busy)
        return;
    err_t err = ERR_INIT;
    if (p->in_head) {
        struct chunk *ch = p->in_head;
        p->in_head = ch->next;
        if (!p->in_head)
            p->in_tail = NULL;
        msg_t *m = msg_new(MSG_AGENT_WRITE_STDIN);
        msg_agent_write_stdin_t *b = m->body;
        msg_set_str(&b->container_id, p->c->id);
        msg_set_str(&b->exec_id, p->exec_id);
        msg_set_bin(&b->data, ch->data, ch->len);
        free(ch);
        struct op *op = op_new(s, NULL, p->c->id, p->exec_id);
        p->in_busy = true;
        if (actor_request(s->a, AGENT_NAME, &m, RT_TIMEOUT_MS, on_written, op, &err) < 0) {
            log_warn("stdin: %s, ignoring", err_str(&err));
            p->in_busy = false;
            op_free(op);
            msg_destroy(&m);
        }
        err_clear(&err);
        return;
    }
    if (p->in_eof && !p->in_close_sent && !p->exited) {
        p->in_close_sent = true;
        msg_t *m = msg_new(MSG_AGENT_CLOSE_STDIN);
        msg_set_str(&((msg_agent_close_stdin_t *)m->body)->container_id, p->c->id);
        msg_set_str(&((msg_agent_close_stdin_t *)m->body)->exec_id, p->exec_id);
        if (actor_request(s->a, AGENT_NAME, &m, RT_TIMEOUT_MS, on_stdin_closed, NULL, &err) < 0) {
            log_warn("close stdin: %s, ignoring", err_str(&err));
            msg_destroy(&m);
        }
        err_clear(&err);
    }
}

static void stdin_queue(struct proc *p, const uint8_t *data, size_t len)
{
    struct chunk *ch = xmalloc(sizeof *ch + len);
    ch->next = NULL;
    ch->len = len;
    ch->off = 0;
    memcpy(ch->data, data, len);
    if (p->in_tail)
        p->in_tail->next = ch;
    else
        p->in_head = ch;
    p->in_tail = ch;
}

/* Reads what is available (all of it when drain, else one chunk). */
static void stdin_read(struct shim *s, struct proc *p, bool drain)
{
    static uint8_t buf[STDIN_CHUNK];
    while (p->in_fd >= 0) {
        ssize_t n = read(p->in_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            p->in_eof = true;
            stdin_stop_reading(s, p);
            break;
        }
        stdin_queue(p, buf, (size_t)n);
        if (!drain)
            break;
    }
    stdin_pump(s, p);
}

static void on_stdin(actor_t *a, int fd, short what, void *arg)
{
    struct proc *p = arg;
    struct shim *s = p->c->s;
    if (p->in_head || p->in_busy) {
        stdin_arm(s, p);
        return;
    }
    stdin_read(s, p, false);
}

/* Called after the process started. */
static void stdin_begin(struct shim *s, struct proc *p)
{
    if (!p->stdin_path || !*p->stdin_path) {
        p->in_eof = true;
    } else if (p->in_fd < 0 && !p->in_eof) {
        p->in_fd = open(p->stdin_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (p->in_fd < 0) {
            log_warn("container %s: open stdin %s: %m; closing its stdin", p->c->id, p->stdin_path);
            p->in_eof = true;
        }
    }
    stdin_pump(s, p);
}

/* ---- processes ------------------------------------------------------------------------- */

static void proc_init(struct proc *p, struct ctr *c, const char *exec_id)
{
    p->c = c;
    snprintf(p->exec_id, sizeof p->exec_id, "%s", exec_id ? exec_id : "");
    p->is_exec = exec_id && *exec_id;
    p->out[0].fd = p->out[1].fd = -1;
    p->in_fd = -1;
}

static void answer_wait(struct waitq *w)
{
    Containerd__Task__V2__WaitResponse r = CONTAINERD__TASK__V2__WAIT_RESPONSE__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    svc_shim_timestamp_from_ns(&ts, w->p->exited_ns);
    r.exit_status = w->p->exit_status;
    r.exited_at = &ts;
    svc_ttrpc_task_reply(w->call, &r.base);
}

static void answer_waits(struct proc *p)
{
    while (p->waits) {
        struct waitq *w = p->waits;
        p->waits = w->next;
        answer_wait(w);
        free(w);
    }
}

/* Frees what the process holds; the struct itself stays (init) or is
 * freed by the caller (exec). */
static void proc_release(struct shim *s, struct proc *p)
{
    if (!p->exited) {
        /* waits on a process that goes away unseen: report it killed */
        p->exited = true;
        p->exit_status = 255;
        p->exited_ns = clock_real_ns();
    }
    answer_waits(p);
    if (p->io_timer)
        actor_timer_cancel(s->a, &p->io_timer);
    ostream_close(s, p, 0);
    ostream_close(s, p, 1);
    stdin_stop_reading(s, p);
    while (p->in_head) {
        struct chunk *ch = p->in_head;
        p->in_head = ch->next;
        free(ch);
    }
    free(p->stdin_path);
    free(p->stdout_path);
    free(p->stderr_path);
    free(p->spec);
}

static void ctr_free(struct shim *s, struct ctr *c)
{
    while (c->execs) {
        struct proc *p = c->execs;
        c->execs = p->next;
        proc_release(s, p);
        free(p);
    }
    proc_release(s, &c->init);
    if (c->mounted)
        svc_shim_unmount_all(c->rootfs);
    for (struct ctr **pp = &s->ctrs; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    free(c->bundle);
    free(c);
}

static void on_io_grace(actor_t *a, void *arg)
{
    struct proc *p = arg;
    struct shim *s = p->c->s;
    p->io_timer = NULL; /* one-shot: released after it fires */
    for (int i = 0; i < 2; i++) {
        if (p->out[i].fd >= 0) {
            log_debug("container %s/%s: output still open %d ms after the exit; closing it",
                      p->c->id, p->exec_id, IO_GRACE_MS);
            ostream_close(s, p, i);
        }
    }
}

/* The process exited (rt.exited). */
static void proc_exited(struct shim *s, struct proc *p, int64_t status, uint64_t at_ns)
{
    if (p->exited)
        return;
    p->exited = true;
    p->exit_status = svc_shim_exit_status(status);
    p->exited_ns = at_ns ? at_ns : clock_real_ns();
    log_info("container %s%s%s exited with status %u", p->c->id, p->is_exec ? " exec " : "",
             p->exec_id, p->exit_status);
    if (!p->is_exec)
        p->c->paused = false;
    answer_waits(p);
    publish_exit(s, p);
    stdin_stop_reading(s, p);
    if (!p->io_timer && (p->out[0].fd >= 0 || p->out[1].fd >= 0))
        p->io_timer = actor_timer(s->a, IO_GRACE_MS, false, on_io_grace, p);
}

static void on_rt_exited(actor_t *a, msg_t **m, void *state)
{
    struct shim *s = state;
    msg_rt_exited_t *b = (*m)->body;
    struct proc *p = find_proc(find_ctr(s, b->id), b->exec_id);
    if (p && p->started)
        proc_exited(s, p, b->status, b->exited_at_ns);
    else if (p && !p->exited && !p->is_exec) {
        /* the sandbox died before the start: a created init is gone too */
        proc_exited(s, p, b->status, b->exited_at_ns);
    }
}

static void on_rt_oom(actor_t *a, msg_t **m, void *state)
{
    struct shim *s = state;
    msg_rt_oom_t *b = (*m)->body;
    struct ctr *c = find_ctr(s, b->id);
    if (!c)
        return;
    Containerd__Events__TaskOOM e = CONTAINERD__EVENTS__TASK_OOM__INIT;
    e.container_id = c->id;
    publish(s, &c->init, SVC_SHIM_EV_OOM, &e.base);
}

/* ---- Create ------------------------------------------------------------------------------ */

static char *read_file(const char *path, size_t max, err_t *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_errno(err, "open %s", path);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || (size_t)st.st_size > max) {
        err_make(err, EFBIG, "%s: larger than %zu bytes", path, max);
        return NULL;
    }
    char *buf = xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = 0;
    return buf;
}

static void on_created(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    struct shim *s = op->s;
    struct ctr *c = find_ctr(s, op->id);
    Containerd__Task__V2__CreateTaskRequest *req = (void *)op->req;
    if (!c) {
        ttrpc_call_fail(op->call, TTRPC_NOT_FOUND, "container %s: deleted while created", op->id);
        op_free(op);
        return;
    }
    if ((*reply)->status) {
        fail_from(op->call, *reply, "create");
        ctr_free(s, c);
        op_free(op);
        return;
    }
    c->created = true;
    Containerd__Events__TaskCreate e = CONTAINERD__EVENTS__TASK_CREATE__INIT;
    Containerd__Events__TaskIO io = CONTAINERD__EVENTS__TASK_IO__INIT;
    io.stdin = req->stdin;
    io.stdout = req->stdout;
    io.stderr = req->stderr;
    io.terminal = req->terminal;
    e.container_id = c->id;
    e.bundle = req->bundle;
    e.n_rootfs = req->n_rootfs;
    e.rootfs = req->rootfs;
    e.io = &io;
    e.checkpoint = req->checkpoint;
    e.pid = task_pid();
    publish(s, &c->init, SVC_SHIM_EV_CREATE, &e.base);
    Containerd__Task__V2__CreateTaskResponse r = CONTAINERD__TASK__V2__CREATE_TASK_RESPONSE__INIT;
    r.pid = task_pid();
    svc_ttrpc_task_reply(op->call, &r.base);
    op_free(op);
}

static void h_create(void *arg, ttrpc_call_t *call, Containerd__Task__V2__CreateTaskRequest **req_p)
{
    struct shim *s = arg;
    Containerd__Task__V2__CreateTaskRequest *req = *req_p;
    err_t err = ERR_INIT;
    if (!req->id || !*req->id || strlen(req->id) > RT_ID_MAX)
        return ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "invalid container id `%s`",
                               req->id ? req->id : "");
    if (find_ctr(s, req->id))
        return ttrpc_call_fail(call, TTRPC_ALREADY_EXISTS, "id %s: already exists", req->id);
    if (req->checkpoint && *req->checkpoint)
        return ttrpc_call_fail(call, TTRPC_UNIMPLEMENTED,
                               "restore from a checkpoint: not supported");
    if (!req->bundle || req->bundle[0] != '/')
        return ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "bundle `%s` is not an absolute path",
                               req->bundle ? req->bundle : "");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/config.json", req->bundle);
    _cleanup_free_ char *spec = read_file(path, AGENT_SPEC_MAX, &err);
    if (!spec) {
        ttrpc_call_fail_err(call, &err);
        err_clear(&err);
        return;
    }
    struct ctr *c = xcalloc(1, sizeof *c);
    c->s = s;
    snprintf(c->id, sizeof c->id, "%s", req->id);
    c->bundle = strdup(req->bundle);
    snprintf(c->rootfs, sizeof c->rootfs, "%s/rootfs", req->bundle);
    proc_init(&c->init, c, NULL);
    c->init.stdin_path = strdup(req->stdin ? req->stdin : "");
    c->init.stdout_path = strdup(req->stdout ? req->stdout : "");
    c->init.stderr_path = strdup(req->stderr ? req->stderr : "");
    c->init.terminal = req->terminal;
    c->next = s->ctrs;
    s->ctrs = c;
    if (req->n_rootfs) {
        mkdir(c->rootfs, 0711);
        if (svc_shim_mount_all(req->rootfs, req->n_rootfs, c->rootfs, &err) < 0)
            goto fail;
        c->mounted = true;
    }
    if (proc_open_outputs(&c->init, &err) < 0)
        goto fail;
    msg_t *m = msg_new(MSG_RT_CREATE);
    msg_rt_create_t *b = m->body;
    msg_set_str(&b->id, c->id);
    msg_set_str(&b->bundle, c->bundle);
    free(b->spec);
    b->spec = TAKE_PTR(spec); /* as is: the guest applies its device rules too */
    b->proxy_pid = (uint64_t)getpid();
    b->console = req->terminal;
    b->owner_uid = getuid();
    struct op *op = op_new(s, call, c->id, NULL);
    op->req = (ProtobufCMessage *)TAKE_PTR(*req_p);
    if (actor_request(s->a, RT_ACTOR_NAME, &m, CREATE_TIMEOUT_MS, on_created, op, &err) < 0) {
        msg_destroy(&m);
        ttrpc_call_fail_err(call, &err);
        err_clear(&err);
        op_free(op);
        ctr_free(s, c);
    }
    return;
fail:
    ttrpc_call_fail_err(call, &err);
    err_clear(&err);
    ctr_free(s, c);
}

/* ---- Start / Exec ------------------------------------------------------------------------------
 */

static void on_started(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    struct shim *s = op->s;
    struct proc *p = find_proc(find_ctr(s, op->id), op->exec_id);
    if (!p) {
        ttrpc_call_fail(op->call, TTRPC_NOT_FOUND, "process %s/%s deleted while starting", op->id,
                        op->exec_id);
        op_free(op);
        return;
    }
    p->starting = false;
    if ((*reply)->status) {
        fail_from(op->call, *reply, p->is_exec ? "exec" : "start");
        op_free(op);
        return;
    }
    p->started = true;
    if (p->is_exec) {
        Containerd__Events__TaskExecStarted e = CONTAINERD__EVENTS__TASK_EXEC_STARTED__INIT;
        e.container_id = p->c->id;
        e.exec_id = p->exec_id;
        e.pid = task_pid();
        publish(s, p, SVC_SHIM_EV_EXEC_STARTED, &e.base);
    } else {
        Containerd__Events__TaskStart e = CONTAINERD__EVENTS__TASK_START__INIT;
        e.container_id = p->c->id;
        e.pid = task_pid();
        publish(s, p, SVC_SHIM_EV_START, &e.base);
    }
    Containerd__Task__V2__StartResponse r = CONTAINERD__TASK__V2__START_RESPONSE__INIT;
    r.pid = task_pid();
    svc_ttrpc_task_reply(op->call, &r.base);
    op_free(op);
    release_exit(s, p);
    stdin_begin(s, p);
}

static void h_start(void *arg, ttrpc_call_t *call, Containerd__Task__V2__StartRequest **req_p)
{
    struct shim *s = arg;
    Containerd__Task__V2__StartRequest *req = *req_p;
    struct proc *p = need_proc(s, call, req->id, req->exec_id);
    if (!p)
        return;
    if (!p->c->created)
        return ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "container must be created");
    if (p->started || p->starting)
        return ttrpc_call_fail(call, TTRPC_UNKNOWN, "cannot start a running process");
    if (p->exited)
        return ttrpc_call_fail(call, TTRPC_UNKNOWN, "cannot start a stopped process");
    msg_t *m;
    if (p->is_exec) {
        m = msg_new(MSG_RT_EXEC);
        msg_rt_exec_t *b = m->body;
        msg_set_str(&b->id, p->c->id);
        msg_set_str(&b->exec_id, p->exec_id);
        msg_set_str(&b->process, p->spec);
        b->proxy_pid = (uint64_t)getpid();
        b->console = p->terminal;
    } else {
        m = msg_new(MSG_RT_START);
        msg_set_str(&((msg_rt_start_t *)m->body)->id, p->c->id);
    }
    p->starting = true;
    struct op *op = op_new(s, call, p->c->id, p->exec_id);
    err_t err = ERR_INIT;
    if (actor_request(s->a, RT_ACTOR_NAME, &m, RT_TIMEOUT_MS, on_started, op, &err) < 0) {
        p->starting = false;
        msg_destroy(&m);
        ttrpc_call_fail_err(call, &err);
        err_clear(&err);
        op_free(op);
    }
}

static void h_exec(void *arg, ttrpc_call_t *call, Containerd__Task__V2__ExecProcessRequest **req_p)
{
    struct shim *s = arg;
    Containerd__Task__V2__ExecProcessRequest *req = *req_p;
    struct ctr *c = find_ctr(s, req->id ? req->id : "");
    if (!c)
        return ttrpc_call_fail(call, TTRPC_NOT_FOUND,
                               "container %s: container not created: not found",
                               req->id ? req->id : "");
    if (!req->exec_id || !*req->exec_id || strlen(req->exec_id) > RT_ID_MAX)
        return ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "invalid exec id `%s`",
                               req->exec_id ? req->exec_id : "");
    if (find_proc(c, req->exec_id))
        return ttrpc_call_fail(call, TTRPC_ALREADY_EXISTS, "id %s: already exists", req->exec_id);
    if (c->init.exited || !c->init.started)
        return ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "container %s is not running",
                               c->id);
    if (!req->spec || !req->spec->value.len || req->spec->value.len > AGENT_PROC_MAX)
        return ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "exec %s: no process spec",
                               req->exec_id);
    struct proc *p = xcalloc(1, sizeof *p);
    proc_init(p, c, req->exec_id);
    p->spec = strndup((const char *)req->spec->value.data, req->spec->value.len);
    p->stdin_path = strdup(req->stdin ? req->stdin : "");
    p->stdout_path = strdup(req->stdout ? req->stdout : "");
    p->stderr_path = strdup(req->stderr ? req->stderr : "");
    p->terminal = req->terminal;
    err_t err = ERR_INIT;
    if (proc_open_outputs(p, &err) < 0) {
        ttrpc_call_fail_err(call, &err);
        err_clear(&err);
        proc_release(s, p);
        free(p);
        return;
    }
    p->next = c->execs;
    c->execs = p;
    Containerd__Events__TaskExecAdded e = CONTAINERD__EVENTS__TASK_EXEC_ADDED__INIT;
    e.container_id = c->id;
    e.exec_id = p->exec_id;
    publish(s, p, SVC_SHIM_EV_EXEC_ADDED, &e.base);
    svc_ttrpc_task_reply(call, NULL);
}

/* ---- State / Wait / Connect --------------------------------------------------------------------
 */

static void h_state(void *arg, ttrpc_call_t *call, Containerd__Task__V2__StateRequest **req_p)
{
    struct shim *s = arg;
    Containerd__Task__V2__StateRequest *req = *req_p;
    struct proc *p = need_proc(s, call, req->id, req->exec_id);
    if (!p)
        return;
    Containerd__Task__V2__StateResponse r = CONTAINERD__TASK__V2__STATE_RESPONSE__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    const char *st = p->exited                       ? "stopped"
                     : !p->started                   ? "created"
                     : (!p->is_exec && p->c->paused) ? "paused"
                                                     : "running";
    r.id = p->is_exec ? p->exec_id : p->c->id;
    r.bundle = p->c->bundle;
    r.pid = task_pid();
    r.status = svc_shim_status_of(st);
    r.stdin = p->stdin_path;
    r.stdout = p->stdout_path;
    r.stderr = p->stderr_path;
    r.terminal = p->terminal;
    r.exit_status = p->exited ? p->exit_status : 0;
    svc_shim_timestamp_from_ns(&ts, p->exited ? p->exited_ns : 0);
    r.exited_at = &ts;
    r.exec_id = p->exec_id;
    svc_ttrpc_task_reply(call, &r.base);
}

static void on_wait_cancel(ttrpc_call_t *call, void *arg)
{
    struct waitq *w = arg;
    for (struct waitq **pp = &w->p->waits; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    ttrpc_call_fail(call, TTRPC_CANCELED, "connection closed");
    free(w);
}

static void h_wait(void *arg, ttrpc_call_t *call, Containerd__Task__V2__WaitRequest **req_p)
{
    struct shim *s = arg;
    Containerd__Task__V2__WaitRequest *req = *req_p;
    struct proc *p = need_proc(s, call, req->id, req->exec_id);
    if (!p)
        return;
    struct waitq *w = xcalloc(1, sizeof *w);
    w->call = call;
    w->p = p;
    if (p->exited) {
        answer_wait(w);
        free(w);
        return;
    }
    w->next = p->waits;
    p->waits = w;
    ttrpc_call_set_cancel(call, on_wait_cancel, w);
}

static void h_connect(void *arg, ttrpc_call_t *call, Containerd__Task__V2__ConnectRequest **req_p)
{
    struct shim *s = arg;
    Containerd__Task__V2__ConnectResponse r = CONTAINERD__TASK__V2__CONNECT_RESPONSE__INIT;
    r.shim_pid = (uint32_t)getpid();
    r.task_pid = find_ctr(s, (*req_p)->id ? (*req_p)->id : "") ? task_pid() : 0;
    svc_ttrpc_task_reply(call, &r.base);
}

/* ---- Delete ---------------------------------------------------------------------------------- */

static void delete_reply(ttrpc_call_t *call, const struct proc *p)
{
    Containerd__Task__V2__DeleteResponse r = CONTAINERD__TASK__V2__DELETE_RESPONSE__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    svc_shim_timestamp_from_ns(&ts, p->exited ? p->exited_ns : 0);
    r.pid = task_pid();
    r.exit_status = p->exited ? p->exit_status : 0;
    r.exited_at = &ts;
    svc_ttrpc_task_reply(call, &r.base);
}

static void on_deleted(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    struct shim *s = op->s;
    struct ctr *c = find_ctr(s, op->id);
    if (!c) {
        ttrpc_call_fail(op->call, TTRPC_NOT_FOUND, "container %s: not found", op->id);
        op_free(op);
        return;
    }
    c->deleting = false;
    if ((*reply)->status && (*reply)->status != ENOENT) {
        fail_from(op->call, *reply, "delete");
        op_free(op);
        return;
    }
    struct proc *p = &c->init;
    Containerd__Events__TaskDelete e = CONTAINERD__EVENTS__TASK_DELETE__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    svc_shim_timestamp_from_ns(&ts, p->exited ? p->exited_ns : 0);
    e.container_id = c->id;
    e.pid = task_pid();
    e.exit_status = p->exited ? p->exit_status : 0;
    e.exited_at = &ts;
    e.id = "";
    if (p->order.exit_pending)
        publish_exit(s, p);
    publish(s, p, SVC_SHIM_EV_DELETE, &e.base);
    delete_reply(op->call, p);
    op_free(op);
    ctr_free(s, c);
}

static void h_delete(void *arg, ttrpc_call_t *call, Containerd__Task__V2__DeleteRequest **req_p)
{
    struct shim *s = arg;
    Containerd__Task__V2__DeleteRequest *req = *req_p;
    struct proc *p = need_proc(s, call, req->id, req->exec_id);
    if (!p)
        return;
    struct ctr *c = p->c;
    if (p->is_exec) {
        if (p->started && !p->exited)
            return ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "cannot delete running exec %s",
                                   p->exec_id);
        delete_reply(call, p);
        for (struct proc **pp = &c->execs; *pp; pp = &(*pp)->next)
            if (*pp == p) {
                *pp = p->next;
                break;
            }
        proc_release(s, p);
        free(p);
        return;
    }
    if (c->deleting)
        return ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "container %s is being deleted",
                               c->id);
    if (p->started && !p->exited)
        return ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION,
                               "cannot delete container %s that is not stopped: running", c->id);
    if (!c->created)
        return ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "container must be created");
    msg_t *m = msg_new(MSG_RT_DELETE);
    msg_set_str(&((msg_rt_delete_t *)m->body)->id, c->id);
    c->deleting = true;
    struct op *op = op_new(s, call, c->id, NULL);
    err_t err = ERR_INIT;
    if (actor_request(s->a, RT_ACTOR_NAME, &m, DELETE_TIMEOUT_MS, on_deleted, op, &err) < 0) {
        c->deleting = false;
        msg_destroy(&m);
        ttrpc_call_fail_err(call, &err);
        err_clear(&err);
        op_free(op);
    }
}

/* ---- simple forwards: Kill, Pause, Resume, Update -------------------------------------------- */

enum simple_kind { K_KILL, K_PAUSE, K_RESUME, K_UPDATE, K_UPDATE_NETWORK };

/* A rescan hot-plugs NICs one by one (seconds each under TCG). */
#define RT_NETWORK_TIMEOUT_MS 300000

static void send_simple(struct shim *s, ttrpc_call_t *call, msg_t *m, const char *id,
                        enum simple_kind kind, bool then_rescan);

static void on_simple(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    struct shim *s = op->s;
    static const char *const what[] = {"kill", "pause", "resume", "update", "update"};
    if ((*reply)->status) {
        fail_from(op->call, *reply, what[op->u1]);
        op_free(op);
        return;
    }
    if (op->u1 == K_UPDATE && op->u2) { /* resources applied: now the network */
        msg_t *m = msg_new(MSG_RT_UPDATE_NETWORK);
        msg_set_str(&((msg_rt_update_network_t *)m->body)->id, op->id);
        send_simple(s, op->call, m, op->id, K_UPDATE_NETWORK, false);
        op_free(op);
        return;
    }
    struct ctr *c = find_ctr(s, op->id);
    if (c && op->u1 == K_PAUSE) {
        c->paused = true;
        Containerd__Events__TaskPaused e = CONTAINERD__EVENTS__TASK_PAUSED__INIT;
        e.container_id = c->id;
        publish(s, &c->init, SVC_SHIM_EV_PAUSED, &e.base);
    } else if (c && op->u1 == K_RESUME) {
        c->paused = false;
        Containerd__Events__TaskResumed e = CONTAINERD__EVENTS__TASK_RESUMED__INIT;
        e.container_id = c->id;
        publish(s, &c->init, SVC_SHIM_EV_RESUMED, &e.base);
    }
    svc_ttrpc_task_reply(op->call, NULL);
    op_free(op);
}

static void send_simple(struct shim *s, ttrpc_call_t *call, msg_t *m, const char *id,
                        enum simple_kind kind, bool then_rescan)
{
    struct op *op = op_new(s, call, id, NULL);
    op->u1 = kind;
    op->u2 = then_rescan;
    int timeout = kind == K_UPDATE_NETWORK ? RT_NETWORK_TIMEOUT_MS : RT_TIMEOUT_MS;
    err_t err = ERR_INIT;
    if (actor_request(s->a, RT_ACTOR_NAME, &m, timeout, on_simple, op, &err) < 0) {
        msg_destroy(&m);
        ttrpc_call_fail_err(call, &err);
        err_clear(&err);
        op_free(op);
    }
}

static void h_kill(void *arg, ttrpc_call_t *call, Containerd__Task__V2__KillRequest **req_p)
{
    struct shim *s = arg;
    Containerd__Task__V2__KillRequest *req = *req_p;
    struct proc *p = need_proc(s, call, req->id, req->exec_id);
    if (!p)
        return;
    if (p->is_exec && !p->started)
        return ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "process not created");
    if (p->exited && !req->all)
        return ttrpc_call_fail(call, TTRPC_NOT_FOUND, "process already finished: not found");
    msg_t *m = msg_new(MSG_RT_KILL);
    msg_rt_kill_t *b = m->body;
    msg_set_str(&b->id, p->c->id);
    msg_set_str(&b->exec_id, p->exec_id);
    b->signal = req->signal;
    b->all = req->all;
    send_simple(s, call, m, p->c->id, K_KILL, false);
}

static void h_pause(void *arg, ttrpc_call_t *call, Containerd__Task__V2__PauseRequest **req_p)
{
    struct shim *s = arg;
    struct proc *p = need_proc(s, call, (*req_p)->id, NULL);
    if (!p)
        return;
    msg_t *m = msg_new(MSG_RT_PAUSE);
    msg_set_str(&((msg_rt_pause_t *)m->body)->id, p->c->id);
    send_simple(s, call, m, p->c->id, K_PAUSE, false);
}

static void h_resume(void *arg, ttrpc_call_t *call, Containerd__Task__V2__ResumeRequest **req_p)
{
    struct shim *s = arg;
    struct proc *p = need_proc(s, call, (*req_p)->id, NULL);
    if (!p)
        return;
    msg_t *m = msg_new(MSG_RT_RESUME);
    msg_set_str(&((msg_rt_resume_t *)m->body)->id, p->c->id);
    send_simple(s, call, m, p->c->id, K_RESUME, false);
}

static void h_update(void *arg, ttrpc_call_t *call, Containerd__Task__V2__UpdateTaskRequest **req_p)
{
    struct shim *s = arg;
    Containerd__Task__V2__UpdateTaskRequest *req = *req_p;
    struct proc *p = need_proc(s, call, req->id, NULL);
    if (!p)
        return;
    bool rescan = false;
    for (size_t i = 0; i < req->n_annotations; i++) {
        const char *k = req->annotations[i]->key, *v = req->annotations[i]->value;
        if (!k || strcmp(k, SVC_SHIM_ANN_NETWORK_RESCAN))
            continue;
        if (v && !strcmp(v, "true"))
            rescan = true;
        else if (!v || strcmp(v, "false"))
            return ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT,
                                   "annotation %s: \"%.64s\" is not true or false",
                                   SVC_SHIM_ANN_NETWORK_RESCAN, v ? v : "");
    }
    msg_t *m;
    if (!req->resources || !req->resources->value.len) {
        if (!rescan)
            return svc_ttrpc_task_reply(call, NULL);
        m = msg_new(MSG_RT_UPDATE_NETWORK);
        msg_set_str(&((msg_rt_update_network_t *)m->body)->id, p->c->id);
        return send_simple(s, call, m, p->c->id, K_UPDATE_NETWORK, false);
    }
    if (req->resources->value.len > AGENT_STORE_MAX)
        return ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "resources: too large");
    m = msg_new(MSG_RT_UPDATE);
    msg_rt_update_t *b = m->body;
    msg_set_str(&b->id, p->c->id);
    free(b->resources);
    b->resources = strndup((const char *)req->resources->value.data, req->resources->value.len);
    send_simple(s, call, m, p->c->id, K_UPDATE, rescan);
}

/* ---- Pids, Stats ------------------------------------------------------------------------------
 */

static void on_pids(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    msg_rt_processes_t *b = MSG_BODY(*reply, RT_PROCESSES, rt_processes);
    if ((*reply)->status || !b) {
        fail_from(op->call, *reply, "pids");
        op_free(op);
        return;
    }
    Containerd__Task__V2__PidsResponse r = CONTAINERD__TASK__V2__PIDS_RESPONSE__INIT;
    Containerd__V1__Types__ProcessInfo *infos = calloc(b->pids.n + 1, sizeof *infos);
    Containerd__V1__Types__ProcessInfo **ptrs = calloc(b->pids.n + 1, sizeof *ptrs);
    if (!infos || !ptrs)
        abort();
    for (size_t i = 0; i < b->pids.n; i++) {
        Containerd__V1__Types__ProcessInfo init = CONTAINERD__V1__TYPES__PROCESS_INFO__INIT;
        infos[i] = init;
        infos[i].pid = (uint32_t)b->pids.v[i];
        ptrs[i] = &infos[i];
    }
    r.n_processes = b->pids.n;
    r.processes = ptrs;
    svc_ttrpc_task_reply(op->call, &r.base);
    free(ptrs);
    free(infos);
    op_free(op);
}

static void h_pids(void *arg, ttrpc_call_t *call, Containerd__Task__V2__PidsRequest **req_p)
{
    struct shim *s = arg;
    struct proc *p = need_proc(s, call, (*req_p)->id, NULL);
    if (!p)
        return;
    msg_t *m = msg_new(MSG_RT_PS);
    msg_set_str(&((msg_rt_ps_t *)m->body)->id, p->c->id);
    struct op *op = op_new(s, call, p->c->id, NULL);
    err_t err = ERR_INIT;
    if (actor_request(s->a, RT_ACTOR_NAME, &m, RT_TIMEOUT_MS, on_pids, op, &err) < 0) {
        msg_destroy(&m);
        ttrpc_call_fail_err(call, &err);
        err_clear(&err);
        op_free(op);
    }
}

static uint64_t jget(json_t *j, const char *a, const char *b, const char *c)
{
    json_t *v = json_object_get(j, a);
    if (b)
        v = json_object_get(v, b);
    if (c)
        v = json_object_get(v, c);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static void on_stats(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    msg_rt_stats_t *b = MSG_BODY(*reply, RT_STATS, rt_stats);
    if ((*reply)->status || !b) {
        fail_from(op->call, *reply, "stats");
        op_free(op);
        return;
    }
    json_t *j = json_loads(b->data, 0, NULL);
    Io__Containerd__Cgroups__V2__Metrics mt = IO__CONTAINERD__CGROUPS__V2__METRICS__INIT;
    Io__Containerd__Cgroups__V2__PidsStat pids = IO__CONTAINERD__CGROUPS__V2__PIDS_STAT__INIT;
    Io__Containerd__Cgroups__V2__CPUStat cpu = IO__CONTAINERD__CGROUPS__V2__CPUSTAT__INIT;
    Io__Containerd__Cgroups__V2__MemoryStat mem = IO__CONTAINERD__CGROUPS__V2__MEMORY_STAT__INIT;
    /* runc's events --stats object: cpu times in ns */
    pids.current = jget(j, "pids", "current", NULL);
    pids.limit = jget(j, "pids", "limit", NULL);
    cpu.usage_usec = jget(j, "cpu", "usage", "total") / 1000;
    cpu.user_usec = jget(j, "cpu", "usage", "user") / 1000;
    cpu.system_usec = jget(j, "cpu", "usage", "kernel") / 1000;
    mem.usage = jget(j, "memory", "usage", "usage");
    mem.usage_limit = jget(j, "memory", "usage", "limit");
    json_decref(j);
    mt.pids = &pids;
    mt.cpu = &cpu;
    mt.memory = &mem;
    uint8_t *buf = NULL;
    size_t len = 0;
    err_t err = ERR_INIT;
    if (svc_ttrpc_pack(&mt.base, &buf, &len, &err) < 0) {
        ttrpc_call_fail_err(op->call, &err);
        err_clear(&err);
        op_free(op);
        return;
    }
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = (char *)"io.containerd.cgroups.v2.Metrics";
    any.value.data = buf;
    any.value.len = len;
    Containerd__Task__V2__StatsResponse r = CONTAINERD__TASK__V2__STATS_RESPONSE__INIT;
    r.stats = &any;
    svc_ttrpc_task_reply(op->call, &r.base);
    free(buf);
    op_free(op);
}

static void h_stats(void *arg, ttrpc_call_t *call, Containerd__Task__V2__StatsRequest **req_p)
{
    struct shim *s = arg;
    struct proc *p = need_proc(s, call, (*req_p)->id, NULL);
    if (!p)
        return;
    msg_t *m = msg_new(MSG_RT_STATS_GET);
    msg_set_str(&((msg_rt_stats_get_t *)m->body)->id, p->c->id);
    struct op *op = op_new(s, call, p->c->id, NULL);
    err_t err = ERR_INIT;
    if (actor_request(s->a, RT_ACTOR_NAME, &m, RT_TIMEOUT_MS, on_stats, op, &err) < 0) {
        msg_destroy(&m);
        ttrpc_call_fail_err(call, &err);
        err_clear(&err);
        op_free(op);
    }
}

/* ---- ResizePty, CloseIO ------------------------------------------------------------------------
 */

static void on_agent_simple(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    int st = (*reply)->status;
    if (st == ENOTTY || st == ENOENT || st == ESRCH) {
        /* no console (any more): runc's shim answers nil too */
        log_debug("resize pty %s/%s: %s, ignoring", op->id, op->exec_id,
                  (*reply)->status_text ? (*reply)->status_text : "");
        st = 0;
    }
    if (st)
        fail_from(op->call, *reply, "resize pty");
    else
        svc_ttrpc_task_reply(op->call, NULL);
    op_free(op);
}

static void h_resize_pty(void *arg, ttrpc_call_t *call,
                         Containerd__Task__V2__ResizePtyRequest **req_p)
{
    struct shim *s = arg;
    Containerd__Task__V2__ResizePtyRequest *req = *req_p;
    struct proc *p = need_proc(s, call, req->id, req->exec_id);
    if (!p)
        return;
    if (!p->terminal || !p->started || p->exited)
        return svc_ttrpc_task_reply(call, NULL); /* nothing to resize (runc: no console) */
    msg_t *m = msg_new(MSG_AGENT_TTY_RESIZE);
    msg_agent_tty_resize_t *b = m->body;
    msg_set_str(&b->container_id, p->c->id);
    msg_set_str(&b->exec_id, p->exec_id);
    b->rows = req->height;
    b->cols = req->width;
    struct op *op = op_new(s, call, p->c->id, p->exec_id);
    err_t err = ERR_INIT;
    if (actor_request(s->a, AGENT_NAME, &m, RT_TIMEOUT_MS, on_agent_simple, op, &err) < 0) {
        msg_destroy(&m);
        ttrpc_call_fail_err(call, &err);
        err_clear(&err);
        op_free(op);
    }
}

static void h_close_io(void *arg, ttrpc_call_t *call, Containerd__Task__V2__CloseIORequest **req_p)
{
    struct shim *s = arg;
    Containerd__Task__V2__CloseIORequest *req = *req_p;
    struct proc *p = need_proc(s, call, req->id, req->exec_id);
    if (!p)
        return;
    if (req->stdin && !p->in_eof) {
        /* what the client wrote before closing is still in the fifo */
        if (p->in_fd >= 0)
            stdin_read(s, p, true);
        p->in_eof = true;
        stdin_stop_reading(s, p);
        stdin_pump(s, p);
    }
    svc_ttrpc_task_reply(call, NULL);
}

/* ---- Shutdown ------------------------------------------------------------------------------ */

static void on_exit_tick(actor_t *a, void *arg)
{
    struct shim *s = arg;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    bool late = now.tv_sec > s->exit_deadline.tv_sec ||
                (now.tv_sec == s->exit_deadline.tv_sec && now.tv_nsec >= s->exit_deadline.tv_nsec);
    if (s->ctrs) {
        s->exiting = false; /* a container came back (a new Create): stay */
        return;
    }
    if (!late && s->pub && svc_ttrpc_publisher_queued(s->pub) > 0) {
        actor_timer(a, 20, false, on_exit_tick, s);
        return;
    }
    log_info("no container left: the shim exits");
    uint64_t one = 1;
    if (s->exit_fd >= 0 && write(s->exit_fd, &one, sizeof one) < 0)
        log_error("signal the daemon to exit: %m");
}

static void h_shutdown(void *arg, ttrpc_call_t *call, Containerd__Task__V2__ShutdownRequest **req_p)
{
    struct shim *s = arg;
    svc_ttrpc_task_reply(call, NULL);
    if (s->ctrs || s->exiting)
        return;
    s->exiting = true;
    clock_gettime(CLOCK_MONOTONIC, &s->exit_deadline);
    s->exit_deadline.tv_sec += EXIT_FLUSH_MS / 1000;
    /* let the Empty answer and the last events go out first */
    actor_timer(s->a, 20, false, on_exit_tick, s);
}

/* ---- the actor ------------------------------------------------------------------------------ */

static const struct svc_ttrpc_task_ops ops = {
    .state = h_state,
    .create = h_create,
    .start = h_start,
    .delete = h_delete,
    .pids = h_pids,
    .pause = h_pause,
    .resume = h_resume,
    .checkpoint = NULL, /* Unimplemented */
    .kill = h_kill,
    .exec = h_exec,
    .resize_pty = h_resize_pty,
    .close_io = h_close_io,
    .update = h_update,
    .wait = h_wait,
    .stats = h_stats,
    .connect = h_connect,
    .shutdown = h_shutdown,
};

static int init(actor_t *a, void *state, err_t *err)
{
    struct shim *s = state;
    s->a = a;
    log_set_component("shim");
    int r = ttrpc_server_new(actor_base(a), &s->srv, err);
    if (r < 0)
        return r;
    s->tsvc.ops = &ops;
    s->tsvc.arg = s;
    if ((r = svc_ttrpc_task_register(s->srv, &s->tsvc, err)) < 0)
        return r;
    if (s->listen_fd >= 0) {
        r = ttrpc_server_listen_fd(s->srv, s->listen_fd, err);
        s->listen_fd = -1;
    } else if (s->address) {
        const char *path = svc_shim_socket_path(s->address);
        if (path)
            unlink(path);
        r = ttrpc_server_listen(s->srv, s->address, err);
    } else {
        r = err_make(err, EINVAL, "shim service: no socket to serve");
    }
    if (r < 0)
        return r;
    if (s->ttrpc_address && *s->ttrpc_address) {
        r = svc_ttrpc_publisher_new(actor_base(a), s->ttrpc_address, s->ns, &s->pub, err);
        if (r < 0)
            return err_wrap(err, "event publisher");
    } else {
        log_warn("TTRPC_ADDRESS is not set: task events are not published");
    }
    return 0;
}

static void fini(actor_t *a, void *state)
{
    struct shim *s = state;
    ttrpc_server_destroy(&s->srv); /* pending Waits are cancelled and answered */
    while (s->ctrs)
        ctr_free(s, s->ctrs);
    svc_ttrpc_publisher_destroy(&s->pub);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    free(s->ns);
    free(s->ttrpc_address);
    free(s->address);
    free(s);
}

static const actor_handler_t handlers[] = {
    {MSG_RT_EXITED, on_rt_exited},
    {MSG_RT_OOM, on_rt_oom},
    {MSG_AGENT_OUTPUT, on_output},
    {MSG_NONE, NULL},
};

static const char *const subscriptions[] = {"rt.exited", "rt.oom", "agent.output", NULL};

static const actor_def_t def = {.name = SVC_SHIM_ACTOR_NAME,
                                .handlers = handlers,
                                .subscribe = subscriptions,
                                .init = init,
                                .fini = fini};

int svc_shim_service_start(const actor_opts_t *ao, const svc_shim_service_opts_t *o, actor_t **out,
                           err_t *err)
{
    struct shim *s = calloc(1, sizeof *s);
    if (!s)
        return err_make(err, ENOMEM, "shim: out of memory");
    s->listen_fd = o->listen_fd;
    s->exit_fd = o->exit_fd;
    s->ns = strdup(o->ns ? o->ns : "default");
    s->ttrpc_address = o->ttrpc_address ? strdup(o->ttrpc_address) : NULL;
    s->address = o->address ? strdup(o->address) : NULL;
    return actor_start(&def, s, ao, out, err);
}
