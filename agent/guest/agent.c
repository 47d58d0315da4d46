#include "agent/guest/agent.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "agent/frame.h"
#include "agent/guest/container.h"
#include "agent/guest/net.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "messages/msg.h"
#include "oci/spec.h"

#define READ_BUDGET       (256 * 1024)
#define DRAIN_MS          500
#define LOADER_IDLE_MS    3000 /* the late-module loader's time at SCHED_IDLE */
#define MAX_CONTAINERS    256
#define MAX_PROCS         1024 /* per container */
#define MAX_STORAGES      64
#define CREDIT_CAP        (64ull * 1024 * 1024)
#define RECONNECT_MS      20
#define REMOVE_DEFAULT_MS 10000

struct agent;
struct ctr;
struct proc;

struct stream {
    struct proc *p;
    int idx;          /* 1 stdout, 2 stderr */
    int fd;           /* -1 once closed */
    struct event *ev; /* EV_READ on fd */
    bool armed;       /* ev is added */
    uint64_t credit;
};

struct waiter {
    uint64_t id;
    struct waiter *next;
};

struct chunk {
    struct chunk *next;
    uint64_t req_id; /* answered when this chunk is fully written */
    size_t len, off;
    uint8_t data[];
};

struct proc {
    struct ctr *c;
    char exec_id[AGENT_ID_MAX + 1]; /* "" = init */
    pid_t pid;
    bool exited, reported, waited;
    int status;
    bool tty;
    /* stdin */
    int in_fd;
    struct event *in_ev;
    bool in_armed;
    struct chunk *in_head, *in_tail;
    size_t in_queued;
    bool in_close; /* close once the queue is written */
    struct stream out[2];
    struct waiter *waiters;
    struct event *drain_timer;
    struct proc *next;
};

enum ctr_state { CTR_CREATED, CTR_RUNNING, CTR_PAUSED, CTR_STOPPED };

struct ctr {
    struct agent *ag;
    char id[AGENT_ID_MAX + 1];
    oci_spec_t *spec;
    container_t *handle; /* until started */
    char *cgroup;        /* cgroup v2 directory or NULL */
    enum ctr_state state;
    struct proc *procs; /* init first */
    size_t nprocs;
    bool removing;
    uint64_t remove_req; /* 0: removal without a reply (destroy_sandbox) */
    struct event *remove_timer;
    int oom_wd;
    uint64_t oom_kills;
    struct ctr *next;
};

struct agent {
    const agent_opts_t *opts;
    struct event_base *base;
    int chan;
    struct event *chan_rev, *chan_wev, *reconnect;
    struct event *accept_ev; /* opts->listen_fd while no host is connected */
    bool chan_wev_armed, host_gone;
    agent_frame_reader_t *reader;
    agent_frame_writer_t *writer;
    bool out_paused; /* send queue above half: all output reads stopped */
    /* A host came back (restore): no output until it has listed the
     * containers (agent.list_containers), so that it knows every stream
     * and both ends restart their credit from AGENT_OUTPUT_WINDOW. */
    bool out_held;
    bool had_host; /* a frame came from a host once */
    int sfd;
    struct event *sig_ev;
    int ino;
    struct event *ino_ev;
    uint64_t next_id;
    struct ctr *ctrs;
    size_t nctrs;
    bool sandbox;
    char sandbox_id[AGENT_ID_MAX + 1];
    char *mounts[MAX_STORAGES];
    size_t nmounts;
    bool quit;
    int rc;
    struct net_retry *net_retries; /* update_interface waiting for its NIC */
    bool lo_up;                    /* the agent's own loopback is up */
    pid_t loader;                  /* late-module loader still at SCHED_IDLE, or 0 */
    struct event *loader_timer;
};

/* ---- validation ---------------------------------------------------------- */

bool agent_id_valid(const char *s, bool allow_empty)
{
    if (!s)
        return allow_empty;
    size_t n = strlen(s);
    if (n == 0)
        return allow_empty;
    if (n > AGENT_ID_MAX)
        return false;
    if (!strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

bool agent_path_valid(const char *p)
{
    if (!p || p[0] != '/' || strlen(p) >= 4096)
        return false;
    const char *s = p;
    while (*s) {
        while (*s == '/')
            s++;
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        s += n;
    }
    return true;
}

/* ---- sending --------------------------------------------------------------- */

static void chan_want_write(struct agent *ag);

static void stream_update(struct stream *s);

static void update_out_pause(struct agent *ag)
{
    size_t pend = agent_frame_writer_pending(ag->writer);
    size_t max = agent_frame_writer_max(ag->writer);
    bool pause = pend > max / 2;
    if (!pause && ag->out_paused && pend > max / 4)
        pause = true; /* hysteresis: resume below a quarter */
    if (pause == ag->out_paused)
        return;
    ag->out_paused = pause;
    for (struct ctr *c = ag->ctrs; c; c = c->next)
        for (struct proc *p = c->procs; p; p = p->next)
            for (int i = 0; i < 2; i++)
                stream_update(&p->out[i]);
}

static void send_msg(struct agent *ag, msg_t **mp)
{
    msg_t *m = *mp;
    m->id = ++ag->next_id;
    snprintf(m->from, sizeof m->from, "guest");
    if (!m->to[0])
        snprintf(m->to, sizeof m->to, "%s", m->reply_to ? "agent" : "*");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    m->ts_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    err_t err = ERR_INIT;
    if (ag->chan < 0) {
        /* between two host connections (listen mode): nobody to tell; the
         * next host asks for the state (agent.list_containers) */
        log_debug("no host connected: %s dropped", msg_type_name(m->type));
        msg_destroy(mp);
        return;
    }
    if (agent_frame_writer_push_msg(ag->writer, m, &err) < 0) {
        log_warn("send %s: %s", msg_type_name(m->type), err_str(&err));
        err_clear(&err);
    } else {
        chan_want_write(ag);
    }
    msg_destroy(mp);
    update_out_pause(ag);
}

static void reply_msg(struct agent *ag, uint64_t req_id, msg_t **mp)
{
    (*mp)->reply_to = req_id;
    send_msg(ag, mp);
}

static void reply_ok(struct agent *ag, const msg_t *req)
{
    msg_t *m = msg_new_reply(req, MSG_AGENT_OK);
    if (m)
        reply_msg(ag, req->id, &m);
}

static void reply_err_id(struct agent *ag, uint64_t req_id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply_err_id(struct agent *ag, uint64_t req_id, int code, const char *fmt, ...)
{
    msg_t *m = msg_new(MSG_BUS_ERROR);
    if (!m)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&m->status_text, fmt, ap) < 0)
        m->status_text = NULL;
    va_end(ap);
    m->status = code > 0 ? code : code < 0 ? -code : EIO;
    log_info("request %llu failed: %s", (unsigned long long)req_id,
             m->status_text ? m->status_text : "?");
    reply_msg(ag, req_id, &m);
}

/* Answers with the error recorded in err (and clears it). */
static void reply_err_t(struct agent *ag, const msg_t *req, err_t *err)
{
    reply_err_id(ag, req->id, err->code ? err->code : EIO, "%s", err_str(err));
    err_clear(err);
}

/* ---- helpers ------------------------------------------------------------------ */

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, cap - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return -e;
    buf[n] = 0;
    return (int)n;
}

static uint64_t kv_get(const char *buf, const char *key, bool *found)
{
    size_t kl = strlen(key);
    for (const char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (!strncmp(l, key, kl) && l[kl] == ' ') {
            *found = true;
            return strtoull(l + kl + 1, NULL, 10);
        }
    }
    return 0;
}

/* Sends agent.oom when the container's memory.events counts a new OOM kill.
 * Also called when one of its processes is reaped: the kernel counts the
 * kill before it sends SIGKILL, so the OOM is reported before the exit. */
static void oom_check(struct agent *ag, struct ctr *c)
{
    if (c->oom_wd < 0)
        return;
    char path[4200], data[1024];
    snprintf(path, sizeof path, "%s/memory.events", c->cgroup);
    bool f = false;
    uint64_t k = read_file(path, data, sizeof data) > 0 ? kv_get(data, "oom_kill", &f) : 0;
    if (k <= c->oom_kills)
        return;
    c->oom_kills = k;
    msg_t *m = msg_new(MSG_AGENT_OOM);
    if (!m)
        return;
    msg_set_str(&((msg_agent_oom_t *)m->body)->container_id, c->id);
    ((msg_agent_oom_t *)m->body)->oom_kills = k;
    send_msg(ag, &m);
}

static int write_file(const char *path, const char *data, err_t *err)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return err_errno(err, "open %s", path);
    ssize_t n = write(fd, data, strlen(data));
    if (n < 0) {
        int r = err_errno(err, "write %s to %s", data, path);
        close(fd);
        return r;
    }
    close(fd);
    return 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static struct ctr *find_ctr(struct agent *ag, const char *id)
{
    for (struct ctr *c = ag->ctrs; c; c = c->next)
        if (!strcmp(c->id, id))
            return c;
    return NULL;
}

static struct proc *find_proc(struct ctr *c, const char *exec_id)
{
    for (struct proc *p = c->procs; p; p = p->next)
        if (!strcmp(p->exec_id, exec_id ? exec_id : ""))
            return p;
    return NULL;
}

/* Looks up container and process of a request, answering the error. */
static struct proc *lookup(struct agent *ag, const msg_t *req, const char *cid, const char *eid,
                           struct ctr **cout)
{
    if (!agent_id_valid(cid, false)) {
        reply_err_id(ag, req->id, EINVAL, "container_id '%.80s': must match [A-Za-z0-9_.-]{1,64}",
                     cid ? cid : "");
        return NULL;
    }
    if (!agent_id_valid(eid, true)) {
        reply_err_id(ag, req->id, EINVAL, "exec_id '%.80s': must match [A-Za-z0-9_.-]{0,64}",
                     eid ? eid : "");
        return NULL;
    }
    struct ctr *c = find_ctr(ag, cid);
    if (!c) {
        reply_err_id(ag, req->id, ENOENT, "container %s: no such container", cid);
        return NULL;
    }
    if (cout)
        *cout = c;
    struct proc *p = find_proc(c, eid);
    if (!p && eid) {
        reply_err_id(ag, req->id, ENOENT, "container %s: no process '%s'", cid, eid);
        return NULL;
    }
    return p;
}

/* ---- output streams -------------------------------------------------------- */

static void send_output(struct agent *ag, struct proc *p, int idx, const void *data, size_t len,
                        bool eof)
{
    msg_t *m = msg_new(MSG_AGENT_OUTPUT);
    if (!m)
        return;
    msg_agent_output_t *b = m->body;
    msg_set_str(&b->container_id, p->c->id);
    msg_set_str(&b->exec_id, p->exec_id);
    b->stream = (uint64_t)idx;
    msg_set_bin(&b->data, data, len);
    b->eof = eof;
    send_msg(ag, &m);
}

static void maybe_report(struct proc *p);

static void stream_close(struct stream *s)
{
    if (s->fd < 0)
        return;
    if (s->ev) {
        event_free(s->ev);
        s->ev = NULL;
    }
    s->armed = false;
    close(s->fd);
    s->fd = -1;
}

static void stream_update(struct stream *s)
{
    if (s->fd < 0 || !s->ev)
        return;
    bool want = s->credit > 0 && !s->p->c->ag->out_paused && !s->p->c->ag->out_held;
    if (want && !s->armed)
        event_add(s->ev, NULL);
    else if (!want && s->armed)
        event_del(s->ev);
    s->armed = want;
}

static void on_stream(evutil_socket_t fd, short what, void *arg)
{
    struct stream *s = arg;
    struct proc *p = s->p;
    struct agent *ag = p->c->ag;
    uint8_t buf[AGENT_CHUNK_MAX];
    size_t want = s->credit < sizeof buf ? (size_t)s->credit : sizeof buf;
    if (want == 0 || ag->out_paused || ag->out_held) {
        stream_update(s);
        return;
    }
    ssize_t n = read(s->fd, buf, want);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) { /* EOF, or EIO on a pty master once every slave closed */
        send_output(ag, p, s->idx, NULL, 0, true);
        stream_close(s);
        maybe_report(p);
        return;
    }
    s->credit -= (uint64_t)n;
    send_output(ag, p, s->idx, buf, (size_t)n, false);
    stream_update(s);
}

/* ---- stdin ------------------------------------------------------------------- */

static void stdin_close(struct proc *p)
{
    if (p->in_ev) {
        event_free(p->in_ev);
        p->in_ev = NULL;
    }
    p->in_armed = false;
    if (p->in_fd >= 0) {
        if (p->tty) {
            ssize_t w = write(p->in_fd, "\x04", 1); /* EOF for the line discipline */
            (void)w;
        }
        close(p->in_fd);
    }
    p->in_fd = -1;
}

static void stdin_fail_all(struct proc *p, int code, const char *why)
{
    struct agent *ag = p->c->ag;
    while (p->in_head) {
        struct chunk *ch = p->in_head;
        p->in_head = ch->next;
        if (ch->req_id)
            reply_err_id(ag, ch->req_id, code, "stdin of %s/%s: %s", p->c->id,
                         p->exec_id[0] ? p->exec_id : "init", why);
        free(ch);
    }
    p->in_tail = NULL;
    p->in_queued = 0;
}

static void stdin_flush(struct proc *p)
{
    struct agent *ag = p->c->ag;
    while (p->in_head && p->in_fd >= 0) {
        struct chunk *ch = p->in_head;
        ssize_t n = ch->len > ch->off ? write(p->in_fd, ch->data + ch->off, ch->len - ch->off) : 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (!p->in_armed && p->in_ev) {
                    event_add(p->in_ev, NULL);
                    p->in_armed = true;
                }
                return;
            }
            stdin_fail_all(p, errno == EPIPE ? EPIPE : errno, strerror(errno));
            stdin_close(p);
            return;
        }
        ch->off += (size_t)n;
        if (ch->off < ch->len)
            continue;
        p->in_head = ch->next;
        if (!p->in_head)
            p->in_tail = NULL;
        p->in_queued -= ch->len;
        if (ch->req_id) {
            msg_t *m = msg_new(MSG_AGENT_WRITTEN);
            if (m) {
                ((msg_agent_written_t *)m->body)->len = ch->len;
                reply_msg(ag, ch->req_id, &m);
            }
        }
        free(ch);
    }
    if (p->in_armed && p->in_ev) {
        event_del(p->in_ev);
        p->in_armed = false;
    }
    if (!p->in_head && p->in_close)
        stdin_close(p);
}

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
    stdin_flush(arg);
}

/* ---- processes ------------------------------------------------------------ */

static struct proc *proc_new(struct ctr *c, const char *exec_id, uint64_t window)
{
    struct proc *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->c = c;
    snprintf(p->exec_id, sizeof p->exec_id, "%s", exec_id ? exec_id : "");
    p->pid = -1;
    p->in_fd = -1;
    for (int i = 0; i < 2; i++) {
        p->out[i].p = p;
        p->out[i].idx = i + 1;
        p->out[i].fd = -1;
        p->out[i].credit = window ? window : AGENT_OUTPUT_WINDOW;
    }
    return p;
}

/* Wires the parent ends: in (may be -1), out1, out2 (may be -1). */
static int proc_attach(struct proc *p, int in, int out1, int out2)
{
    struct event_base *base = p->c->ag->base;
    p->in_fd = in;
    if (in >= 0) {
        set_nonblock(in);
        p->in_ev = event_new(base, in, EV_WRITE | EV_PERSIST, on_stdin, p);
        if (!p->in_ev)
            return -ENOMEM;
    }
    int fds[2] = {out1, out2};
    for (int i = 0; i < 2; i++) {
        struct stream *s = &p->out[i];
        s->fd = fds[i];
        if (s->fd < 0)
            continue;
        set_nonblock(s->fd);
        s->ev = event_new(base, s->fd, EV_READ | EV_PERSIST, on_stream, s);
        if (!s->ev)
            return -ENOMEM;
        stream_update(s);
    }
    return 0;
}

static void proc_free(struct proc *p)
{
    stdin_fail_all(p, EPIPE, "process removed");
    stdin_close(p);
    for (int i = 0; i < 2; i++)
        stream_close(&p->out[i]);
    if (p->drain_timer)
        event_free(p->drain_timer);
    while (p->waiters) {
        struct waiter *w = p->waiters;
        p->waiters = w->next;
        reply_err_id(p->c->ag, w->id, ESRCH, "process %s/%s removed", p->c->id,
                     p->exec_id[0] ? p->exec_id : "init");
        free(w);
    }
    free(p);
}

static void proc_unlink(struct proc *p)
{
    struct ctr *c = p->c;
    for (struct proc **pp = &c->procs; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            c->nprocs--;
            return;
        }
}

static void answer_wait(struct proc *p, uint64_t req_id)
{
    msg_t *m = msg_new(MSG_AGENT_EXIT_STATUS);
    if (!m)
        return;
    msg_agent_exit_status_t *b = m->body;
    msg_set_str(&b->container_id, p->c->id);
    msg_set_str(&b->exec_id, p->exec_id);
    b->pid = (uint64_t)p->pid;
    b->status = p->status;
    reply_msg(p->c->ag, req_id, &m);
    p->waited = true;
}

static void ctr_maybe_finish_remove(struct ctr *c);

/* Exec processes are forgotten once reported, waited for and drained. */
static void proc_maybe_gc(struct proc *p)
{
    if (!p->exec_id[0] || !p->reported || !p->waited || p->out[0].fd >= 0 || p->out[1].fd >= 0)
        return;
    proc_unlink(p);
    proc_free(p);
}

static void report(struct proc *p)
{
    if (p->reported)
        return;
    p->reported = true;
    if (p->drain_timer) {
        event_free(p->drain_timer);
        p->drain_timer = NULL;
    }
    struct agent *ag = p->c->ag;
    msg_t *m = msg_new(MSG_AGENT_EXITED);
    if (m) {
        msg_agent_exited_t *b = m->body;
        msg_set_str(&b->container_id, p->c->id);
        msg_set_str(&b->exec_id, p->exec_id);
        b->pid = (uint64_t)p->pid;
        b->status = p->status;
        send_msg(ag, &m);
    }
    while (p->waiters) {
        struct waiter *w = p->waiters;
        p->waiters = w->next;
        answer_wait(p, w->id);
        free(w);
    }
    struct ctr *c = p->c;
    proc_maybe_gc(p);
    ctr_maybe_finish_remove(c);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    report(arg);
}

/* Reports an exited process once its output is drained, or DRAIN_MS later. */
static void maybe_report(struct proc *p)
{
    if (!p->exited || p->reported)
        return;
    if (p->out[0].fd < 0 && p->out[1].fd < 0) {
        report(p);
        return;
    }
    if (!p->drain_timer) {
        p->drain_timer = evtimer_new(p->c->ag->base, on_drain_timeout, p);
        struct timeval tv = {0, DRAIN_MS * 1000};
        if (p->drain_timer)
            evtimer_add(p->drain_timer, &tv);
        else
            report(p);
    }
}

static void on_child_exit(struct agent *ag, pid_t pid, int st)
{
    for (struct ctr *c = ag->ctrs; c; c = c->next)
        for (struct proc *p = c->procs; p; p = p->next) {
            if (p->pid != pid || p->exited)
                continue;
            p->exited = true;
            p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            log_debug("process %s/%s (pid %d) exited with %d", c->id,
                      p->exec_id[0] ? p->exec_id : "init", (int)pid, p->status);
            if (!p->exec_id[0])
                c->state = CTR_STOPPED;
            oom_check(ag, c);
            stdin_fail_all(p, EPIPE, "process exited");
            stdin_close(p);
            maybe_report(p);
            return;
        }
    log_debug("reaped pid %d (status %d)", (int)pid, st);
}

/* The late modules are wanted now (a request waits for a device, or
 * they have had LOADER_IDLE_MS): the loader leaves SCHED_IDLE. */
static void hurry_loader(struct agent *ag)
{
    if (ag->loader <= 0)
        return;
    struct sched_param sp = {0};
    if (sched_setscheduler(ag->loader, SCHED_OTHER, &sp) < 0)
        log_warn("late-module loader %d: SCHED_OTHER: %s", (int)ag->loader, strerror(errno));
    else
        log_debug("late-module loader %d: back to SCHED_OTHER", (int)ag->loader);
    ag->loader = 0;
}

static void on_loader_timer(evutil_socket_t fd, short what, void *arg)
{
    hurry_loader(arg);
}

static void reap_all(struct agent *ag)
{
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0)
            return;
        if (pid == ag->loader)
            ag->loader = 0; /* done (reaped: its pid is free again) */
        on_child_exit(ag, pid, st);
    }
}

/* ---- containers ---------------------------------------------------------- */

static void ctr_free(struct ctr *c)
{
    while (c->procs) {
        struct proc *p = c->procs;
        c->procs = p->next;
        proc_free(p);
    }
    if (c->remove_timer)
        event_free(c->remove_timer);
    container_destroy(&c->handle);
    if (c->oom_wd >= 0 && c->ag->ino >= 0)
        inotify_rm_watch(c->ag->ino, c->oom_wd);
    if (c->cgroup) {
        if (rmdir(c->cgroup) < 0 && errno != ENOENT)
            log_warn("rmdir %s: %s", c->cgroup, strerror(errno));
        free(c->cgroup);
    }
    oci_spec_destroy(&c->spec);
    free(c);
}

static void ctr_unlink(struct ctr *c)
{
    struct agent *ag = c->ag;
    for (struct ctr **pp = &ag->ctrs; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            ag->nctrs--;
            return;
        }
}

/* Sends sig to every process of the container: cgroup.procs when there is
 * a cgroup (catches grandchildren), plus the processes we know. */
static void ctr_kill_all(struct ctr *c, int sig)
{
    if (c->cgroup) {
        char path[4200];
        if (sig == SIGKILL) {
            snprintf(path, sizeof path, "%s/cgroup.kill", c->cgroup);
            if (access(path, W_OK) == 0) {
                err_t err = ERR_INIT;
                if (write_file(path, "1", &err) == 0)
                    goto known;
                err_clear(&err);
            }
        }
        snprintf(path, sizeof path, "%s/cgroup.procs", c->cgroup);
        FILE *f = fopen(path, "re");
        if (f) {
            long pid;
            while (fscanf(f, "%ld", &pid) == 1)
                if (pid > 1)
                    kill((pid_t)pid, sig);
            fclose(f);
        }
    }
known:
    for (struct proc *p = c->procs; p; p = p->next)
        if (p->pid > 0 && !p->exited)
            kill(p->pid, sig);
}

static bool ctr_all_gone(struct ctr *c)
{
    for (struct proc *p = c->procs; p; p = p->next)
        if (p->pid > 0 && !p->reported)
            return false;
    return true;
}

static void ctr_maybe_finish_remove(struct ctr *c)
{
    if (!c->removing || !ctr_all_gone(c))
        return;
    struct agent *ag = c->ag;
    uint64_t req = c->remove_req;
    log_info("container %s removed", c->id);
    ctr_unlink(c);
    ctr_free(c);
    if (req) {
        msg_t *m = msg_new(MSG_AGENT_OK);
        if (m)
            reply_msg(ag, req, &m);
    }
}

static void on_remove_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct ctr *c = arg;
    event_free(c->remove_timer);
    c->remove_timer = NULL;
    c->removing = false;
    if (c->remove_req)
        reply_err_id(c->ag, c->remove_req, ETIMEDOUT,
                     "remove container %s: its processes did not exit in time", c->id);
    c->remove_req = 0;
}

/* Starts removing c; replies to req_id (if any) when done. */
static void ctr_remove(struct ctr *c, uint64_t req_id, uint64_t timeout_ms)
{
    c->removing = true;
    c->remove_req = req_id;
    if (c->handle && c->state == CTR_CREATED)
        container_destroy(&c->handle); /* init sees the start pipe close and _exits */
    if (c->cgroup && c->state == CTR_PAUSED) {
        char path[4200];
        snprintf(path, sizeof path, "%s/cgroup.freeze", c->cgroup);
        err_t err = ERR_INIT;
        write_file(path, "0", &err);
        err_clear(&err);
    }
    ctr_kill_all(c, SIGKILL);
    if (ctr_all_gone(c)) {
        ctr_maybe_finish_remove(c);
        return;
    }
    if (req_id) {
        c->remove_timer = evtimer_new(c->ag->base, on_remove_timeout, c);
        uint64_t ms = timeout_ms ? timeout_ms : REMOVE_DEFAULT_MS;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
        if (c->remove_timer)
            evtimer_add(c->remove_timer, &tv);
    }
}

/* ---- storages ------------------------------------------------------------- */

static bool opt_valid(const char *s)
{
    if (!*s || strlen(s) > 128)
        return false;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              strchr("_.=-/:", *s)))
            return false;
    return true;
}

static int mount_storages(struct agent *ag, const char *json, err_t *err)
{
    if (!json || !strcmp(json, "null") || !*json)
        return 0;
    json_error_t je;
    json_t *arr = json_loads(json, JSON_REJECT_DUPLICATES, &je);
    if (!arr)
        return err_make(err, EINVAL, "storages: invalid JSON: %s", je.text);
    int rc = 0;
    if (!json_is_array(arr)) {
        rc = err_make(err, EINVAL, "storages: expected an array");
        goto out;
    }
    if (json_array_size(arr) + ag->nmounts > MAX_STORAGES) {
        rc = err_make(err, E2BIG, "storages: more than %d", MAX_STORAGES);
        goto out;
    }
    size_t i;
    json_t *s;
    json_array_foreach(arr, i, s)
    {
        const char *driver = json_string_value(json_object_get(s, "driver"));
        const char *source = json_string_value(json_object_get(s, "source"));
        const char *mp = json_string_value(json_object_get(s, "mount_point"));
        json_t *opts = json_object_get(s, "options");
        if (!json_is_object(s) || !driver || !source || !mp) {
            rc = err_make(err, EINVAL, "storages[%zu]: needs driver, source and mount_point", i);
            goto out;
        }
        if (strcmp(driver, "9p")) {
            rc = err_make(err, ENOTSUP, "storages[%zu].driver: '%.40s' is not supported (9p)", i,
                          driver);
            goto out;
        }
        if (!agent_id_valid(source, false)) {
            rc = err_make(err, EINVAL, "storages[%zu].source: '%.80s' is not a valid 9p tag", i,
                          source);
            goto out;
        }
        if (!agent_path_valid(mp) || !strcmp(mp, "/")) {
            rc = err_make(err, EINVAL,
                          "storages[%zu].mount_point: '%.200s' must be absolute, "
                          "not /, without . or ..",
                          i, mp);
            goto out;
        }
        char data[1024] = "";
        if (opts && !json_is_array(opts)) {
            rc = err_make(err, EINVAL, "storages[%zu].options: expected an array", i);
            goto out;
        }
        size_t j;
        json_t *o;
        json_array_foreach(opts, j, o)
        {
            const char *os = json_string_value(o);
            if (!os || !opt_valid(os) || strlen(data) + strlen(os) + 2 > sizeof data) {
                rc = err_make(err, EINVAL, "storages[%zu].options[%zu]: invalid option", i, j);
                goto out;
            }
            if (data[0])
                strcat(data, ",");
            strcat(data, os);
        }
        if (!data[0])
            snprintf(data, sizeof data, "trans=virtio,version=9p2000.L,msize=262144");
        int r = mkdir_p(mp, 0755);
        if (r < 0) {
            rc = err_make(err, -r, "storages[%zu]: mkdir %s: %s", i, mp, strerror(-r));
            goto out;
        }
        if (mount(source, mp, "9p", MS_NODEV | MS_NOSUID, data) < 0) {
            rc = err_errno(err, "storages[%zu]: mount 9p %s on %s (%s)", i, source, mp, data);
            goto out;
        }
        ag->mounts[ag->nmounts++] = strdup(mp);
        log_info("mounted 9p %s on %s", source, mp);
    }
out:
    json_decref(arr);
    return rc;
}

static void unmount_storages(struct agent *ag)
{
    while (ag->nmounts > 0) {
        char *mp = ag->mounts[--ag->nmounts];
        if (umount2(mp, MNT_DETACH) < 0)
            log_warn("umount %s: %s", mp, strerror(errno));
        free(mp);
    }
}

/* ---- stdio plumbing --------------------------------------------------------- */

struct stdio_set {
    int child[3];  /* ends for the process: stdin (-1 = /dev/null), stdout, stderr */
    int parent[3]; /* our ends: stdin writer (-1), stdout reader, stderr reader */
};

static void stdio_close(struct stdio_set *s, bool parent)
{
    for (int i = 0; i < 3; i++) {
        int *fd = parent ? &s->parent[i] : &s->child[i];
        if (*fd >= 0)
            close(*fd);
        *fd = -1;
    }
}

static int stdio_make(struct stdio_set *s, bool want_stdin, bool tty, err_t *err)
{
    for (int i = 0; i < 3; i++)
        s->child[i] = s->parent[i] = -1;
    if (tty)
        return 0; /* the pty carries it all */
    int p[2];
    if (want_stdin) {
        if (pipe2(p, O_CLOEXEC) < 0)
            return err_errno(err, "stdin pipe");
        s->child[0] = p[0];
        s->parent[0] = p[1];
    }
    for (int i = 1; i < 3; i++) {
        if (pipe2(p, O_CLOEXEC) < 0) {
            stdio_close(s, false);
            stdio_close(s, true);
            return err_errno(err, "output pipe");
        }
        s->parent[i] = p[0];
        s->child[i] = p[1];
    }
    return 0;
}

/* Attaches process stdio: pipes, or the pty master for everything. */
static int attach_stdio(struct proc *p, struct stdio_set *s, int console, bool want_stdin)
{
    if (console >= 0) {
        p->tty = true;
        int in = want_stdin ? fcntl(console, F_DUPFD_CLOEXEC, 3) : -1;
        return proc_attach(p, in, console, -1);
    }
    int r = proc_attach(p, s->parent[0], s->parent[1], s->parent[2]);
    for (int i = 0; i < 3; i++)
        s->parent[i] = -1; /* now the process's */
    return r;
}

/* ---- request handlers ------------------------------------------------------- */

static void h_check(struct agent *ag, const msg_t *req)
{
    msg_t *m = msg_new(MSG_AGENT_HEALTH);
    if (!m)
        return;
    msg_agent_health_t *b = m->body;
    msg_set_str(&b->status, "SERVING");
    msg_set_str(&b->version, AGENT_VERSION_STR);
    reply_msg(ag, req->id, &m);
}

static void h_guest_details(struct agent *ag, const msg_t *req)
{
    msg_t *m = msg_new(MSG_AGENT_DETAILS);
    if (!m)
        return;
    msg_agent_details_t *b = m->body;
    struct utsname u;
    uname(&u);
    msg_set_str(&b->agent_version, AGENT_VERSION_STR);
    msg_set_str(&b->kernel_release, u.release);
    msg_set_str(&b->kernel_version, u.version);
    msg_set_str(&b->machine, u.machine);
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    b->uptime_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    b->init = ag->opts->init;
    b->cgroup2 = ag->opts->cgroup_root != NULL;
    msg_strv_push(&b->features, "storage.9p");
    msg_strv_push(&b->features, "stdio.credit");
    msg_strv_push(&b->features, "seccomp");
    if (ag->opts->cgroup_root)
        msg_strv_push(&b->features, "cgroup2.freezer");
    reply_msg(ag, req->id, &m);
}

static void h_create_sandbox(struct agent *ag, const msg_t *req)
{
    const msg_agent_create_sandbox_t *b = req->body;
    err_t err = ERR_INIT;
    if (ag->sandbox)
        return reply_err_id(ag, req->id, EEXIST, "sandbox %s already created", ag->sandbox_id);
    if (!agent_id_valid(b->sandbox_id, true))
        return reply_err_id(ag, req->id, EINVAL, "sandbox_id: must match [A-Za-z0-9_.-]{0,64}");
    if (b->hostname && *b->hostname) {
        if (strlen(b->hostname) > 63 || !agent_id_valid(b->hostname, false))
            return reply_err_id(ag, req->id, EINVAL, "hostname '%.80s': invalid", b->hostname);
        if (sethostname(b->hostname, strlen(b->hostname)) < 0)
            return reply_err_id(ag, req->id, errno, "sethostname: %s", strerror(errno));
    }
    if (mount_storages(ag, b->storages, &err) < 0)
        return reply_err_t(ag, req, &err);
    ag->sandbox = true;
    snprintf(ag->sandbox_id, sizeof ag->sandbox_id, "%s", b->sandbox_id ? b->sandbox_id : "");
    log_set_sandbox(ag->sandbox_id[0] ? ag->sandbox_id : NULL);
    reply_ok(ag, req);
}

static void h_destroy_sandbox(struct agent *ag, const msg_t *req)
{
    for (struct ctr *c = ag->ctrs, *n; c; c = n) {
        n = c->next;
        if (!c->removing)
            ctr_remove(c, 0, 0);
    }
    unmount_storages(ag);
    ag->sandbox = false;
    reply_ok(ag, req);
}

static void watch_oom(struct agent *ag, struct ctr *c)
{
    c->oom_wd = -1;
    if (!c->cgroup || ag->ino < 0)
        return;
    char path[4200], buf[1024];
    snprintf(path, sizeof path, "%s/memory.events", c->cgroup);
    if (read_file(path, buf, sizeof buf) < 0)
        return; /* no memory controller here */
    bool f = false;
    c->oom_kills = kv_get(buf, "oom_kill", &f);
    c->oom_wd = inotify_add_watch(ag->ino, path, IN_MODIFY);
}

/* The agent's network namespace gets its loopback up on first use (a
 * container that shares it, or a network request) rather than before the
 * agent serves: ~20 ms under TCG, on the boot's critical path, that a
 * container in a namespace of its own never needs. */
static void ensure_lo_up(struct agent *ag)
{
    if (ag->lo_up)
        return;
    err_t err = ERR_INIT;
    if (agent_net_lo_up(&err) < 0)
        log_warn("network: %s", err_str(&err));
    err_clear(&err);
    ag->lo_up = true; /* one try, as before */
}

/* True when the container gets a network namespace of its own (an entry
 * without a path); else it shares the agent's or joins a given one. */
static bool spec_new_netns(const oci_spec_t *spec)
{
    for (size_t i = 0; spec->lnx && i < spec->lnx->n_namespaces; i++) {
        const oci_namespace_t *ns = &spec->lnx->namespaces[i];
        if (ns->type == OCI_NS_NETWORK)
            return !ns->path || !ns->path[0];
    }
    return false;
}

static void h_create_container(struct agent *ag, const msg_t *req)
{
    const msg_agent_create_container_t *b = req->body;
    err_t err = ERR_INIT;
    if (!agent_id_valid(b->container_id, false))
        return reply_err_id(ag, req->id, EINVAL,
                            "container_id '%.80s': must match [A-Za-z0-9_.-]{1,64}",
                            b->container_id);
    if (find_ctr(ag, b->container_id))
        return reply_err_id(ag, req->id, EEXIST, "container %s already exists", b->container_id);
    if (ag->nctrs >= MAX_CONTAINERS)
        return reply_err_id(ag, req->id, EMFILE, "too many containers (%d)", MAX_CONTAINERS);
    if (b->rootfs && *b->rootfs && !agent_path_valid(b->rootfs))
        return reply_err_id(ag, req->id, EINVAL,
                            "rootfs '%.200s': must be absolute, without . or ..", b->rootfs);
    if (b->output_window > CREDIT_CAP)
        return reply_err_id(ag, req->id, EINVAL, "output_window: at most %llu",
                            (unsigned long long)CREDIT_CAP);
    oci_spec_t *spec = NULL;
    if (!b->spec || oci_spec_parse(b->spec, strlen(b->spec), &spec, &err) < 0) {
        err_wrap(&err, "spec");
        return reply_err_t(ag, req, &err);
    }
    if (!spec->process) {
        oci_spec_destroy(&spec);
        return reply_err_id(ag, req->id, EINVAL, "spec: process is required");
    }
    if ((!b->rootfs || !*b->rootfs) && !agent_path_valid(spec->root_path)) {
        reply_err_id(ag, req->id, EINVAL,
                     "spec root.path '%.200s': must be an absolute guest path without . "
                     "or .. (or give rootfs)",
                     spec->root_path ? spec->root_path : "");
        oci_spec_destroy(&spec);
        return;
    }
    if (mount_storages(ag, b->storages, &err) < 0) {
        oci_spec_destroy(&spec);
        return reply_err_t(ag, req, &err);
    }
    if (!spec_new_netns(spec))
        ensure_lo_up(ag);
    struct ctr *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->ag = ag;
    c->oom_wd = -1;
    snprintf(c->id, sizeof c->id, "%s", b->container_id);
    c->spec = spec;
    if (ag->opts->cgroup_root) {
        if (asprintf(&c->cgroup, "%s/%s", ag->opts->cgroup_root, c->id) < 0)
            abort();
    } else if (spec->lnx && spec->lnx->resources) {
        ctr_free(c);
        return reply_err_id(ag, req->id, ENOTSUP,
                            "linux.resources: this agent has no cgroup v2 hierarchy");
    }
    struct proc *p = proc_new(c, "", b->output_window);
    struct stdio_set io;
    if (!p || stdio_make(&io, b->stdin, spec->process->terminal, &err) < 0) {
        free(p);
        ctr_free(c);
        return reply_err_t(ag, req, &err);
    }
    container_config_t cfg = {
        .spec = spec,
        .rootfs = b->rootfs && *b->rootfs ? b->rootfs : NULL,
        .bundle = ag->opts->root,
        .cgroup_path = c->cgroup,
        .stdio = {io.child[0], io.child[1], io.child[2]},
    };
    int r = container_create(&cfg, &c->handle, &err);
    stdio_close(&io, false);
    if (r < 0) {
        stdio_close(&io, true);
        free(p);
        if (c->cgroup)
            rmdir(c->cgroup);
        ctr_free(c);
        err_wrap(&err, "create container %s", b->container_id);
        return reply_err_t(ag, req, &err);
    }
    p->pid = container_pid(c->handle);
    c->procs = p;
    c->nprocs = 1;
    c->state = CTR_CREATED;
    c->next = ag->ctrs;
    ag->ctrs = c;
    ag->nctrs++;
    if (attach_stdio(p, &io, container_take_console(c->handle), b->stdin) < 0)
        log_warn("container %s: cannot watch its stdio", c->id);
    watch_oom(ag, c);
    log_info("container %s created, init pid %d", c->id, (int)p->pid);
    msg_t *m = msg_new(MSG_AGENT_PID);
    if (m) {
        ((msg_agent_pid_t *)m->body)->pid = (uint64_t)p->pid;
        reply_msg(ag, req->id, &m);
    }
}

static void h_start_container(struct agent *ag, const msg_t *req)
{
    const msg_agent_start_container_t *b = req->body;
    struct ctr *c = NULL;
    struct proc *p = lookup(ag, req, b->container_id, "", &c);
    if (!p)
        return;
    if (c->state != CTR_CREATED || !c->handle || c->removing)
        return reply_err_id(ag, req->id, EBUSY, "container %s: not in the created state", c->id);
    err_t err = ERR_INIT;
    int r = container_start(c->handle, &err);
    container_destroy(&c->handle);
    if (r < 0) {
        c->state = CTR_STOPPED;
        err_wrap(&err, "start container %s", c->id);
        return reply_err_t(ag, req, &err);
    }
    if (!p->exited)
        c->state = CTR_RUNNING;
    log_info("container %s started", c->id);
    reply_ok(ag, req);
}

static void h_remove_container(struct agent *ag, const msg_t *req)
{
    const msg_agent_remove_container_t *b = req->body;
    struct ctr *c = NULL;
    if (!lookup(ag, req, b->container_id, NULL, &c) && !c)
        return;
    if (c->removing && c->remove_req)
        return reply_err_id(ag, req->id, EBUSY, "container %s: removal already in progress", c->id);
    ctr_remove(c, req->id, b->timeout_ms);
}

static void h_exec_process(struct agent *ag, const msg_t *req)
{
    const msg_agent_exec_process_t *b = req->body;
    struct ctr *c = NULL;
    if (!agent_id_valid(b->exec_id, false))
        return reply_err_id(ag, req->id, EINVAL, "exec_id '%.80s': must match [A-Za-z0-9_.-]{1,64}",
                            b->exec_id);
    lookup(ag, req, b->container_id, NULL, &c);
    if (!c)
        return;
    if (find_proc(c, b->exec_id))
        return reply_err_id(ag, req->id, EEXIST, "container %s: exec id %s in use", c->id,
                            b->exec_id);
    if (c->state != CTR_RUNNING || c->removing)
        return reply_err_id(ag, req->id, EBUSY, "container %s: not running", c->id);
    if (c->nprocs >= MAX_PROCS)
        return reply_err_id(ag, req->id, EMFILE, "container %s: too many processes", c->id);
    if (b->output_window > CREDIT_CAP)
        return reply_err_id(ag, req->id, EINVAL, "output_window: at most %llu",
                            (unsigned long long)CREDIT_CAP);
    err_t err = ERR_INIT;
    oci_process_t *proc = NULL;
    if (!b->process || oci_process_parse(b->process, strlen(b->process), &proc, &err) < 0) {
        err_wrap(&err, "process");
        return reply_err_t(ag, req, &err);
    }
    struct proc *p = proc_new(c, b->exec_id, b->output_window);
    struct stdio_set io;
    if (!p || stdio_make(&io, b->stdin, proc->terminal, &err) < 0) {
        free(p);
        oci_process_destroy(&proc);
        return reply_err_t(ag, req, &err);
    }
    container_exec_config_t x = {
        .init_pid = c->procs->pid,
        .spec = c->spec,
        .process = proc,
        .cgroup_path = c->cgroup,
        .stdio = {io.child[0], io.child[1], io.child[2]},
    };
    pid_t pid = -1;
    int console = -1;
    int r = container_exec(&x, &pid, &console, &err);
    stdio_close(&io, false);
    oci_process_destroy(&proc);
    if (r < 0) {
        stdio_close(&io, true);
        free(p);
        err_wrap(&err, "exec in container %s", c->id);
        return reply_err_t(ag, req, &err);
    }
    p->pid = pid;
    /* append: init stays first */
    struct proc **pp = &c->procs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = p;
    c->nprocs++;
    if (attach_stdio(p, &io, console, b->stdin) < 0)
        log_warn("exec %s/%s: cannot watch its stdio", c->id, p->exec_id);
    msg_t *m = msg_new(MSG_AGENT_PID);
    if (m) {
        ((msg_agent_pid_t *)m->body)->pid = (uint64_t)pid;
        reply_msg(ag, req->id, &m);
    }
}

static void h_signal_process(struct agent *ag, const msg_t *req)
{
    const msg_agent_signal_process_t *b = req->body;
    struct ctr *c = NULL;
    struct proc *p = lookup(ag, req, b->container_id, b->exec_id, &c);
    if (!p)
        return;
    if (b->signal < 1 || b->signal > 64)
        return reply_err_id(ag, req->id, EINVAL, "signal %llu: out of range 1..64",
                            (unsigned long long)b->signal);
    if (b->all && !p->exec_id[0]) {
        ctr_kill_all(c, (int)b->signal);
        return reply_ok(ag, req);
    }
    if (p->exited)
        return reply_err_id(ag, req->id, ESRCH, "process %s/%s has exited", c->id,
                            p->exec_id[0] ? p->exec_id : "init");
    if (c->state == CTR_CREATED && !p->exec_id[0])
        return reply_err_id(ag, req->id, EBUSY, "container %s: not started", c->id);
    if (kill(p->pid, (int)b->signal) < 0)
        return reply_err_id(ag, req->id, errno, "kill %d: %s", (int)p->pid, strerror(errno));
    reply_ok(ag, req);
}

static void h_wait_process(struct agent *ag, const msg_t *req)
{
    const msg_agent_wait_process_t *b = req->body;
    struct proc *p = lookup(ag, req, b->container_id, b->exec_id, NULL);
    if (!p)
        return;
    if (p->reported) {
        answer_wait(p, req->id);
        proc_maybe_gc(p);
        return;
    }
    struct waiter *w = calloc(1, sizeof *w);
    if (!w)
        abort();
    w->id = req->id;
    w->next = p->waiters;
    p->waiters = w;
}

static void h_write_stdin(struct agent *ag, const msg_t *req)
{
    const msg_agent_write_stdin_t *b = req->body;
    struct proc *p = lookup(ag, req, b->container_id, b->exec_id, NULL);
    if (!p)
        return;
    if (p->in_fd < 0 || p->in_close)
        return reply_err_id(ag, req->id, EPIPE, "stdin of %s/%s: %s", p->c->id,
                            p->exec_id[0] ? p->exec_id : "init",
                            p->exited ? "process exited" : "closed or not opened");
    if (p->in_queued + b->data.len > AGENT_STDIN_MAX)
        return reply_err_id(ag, req->id, ENOBUFS, "stdin of %s/%s: %zu bytes already queued",
                            p->c->id, p->exec_id[0] ? p->exec_id : "init", p->in_queued);
    struct chunk *ch = malloc(sizeof *ch + b->data.len);
    if (!ch)
        abort();
    ch->next = NULL;
    ch->req_id = req->id;
    ch->len = b->data.len;
    ch->off = 0;
    if (b->data.len)
        memcpy(ch->data, b->data.data, b->data.len);
    if (p->in_tail)
        p->in_tail->next = ch;
    else
        p->in_head = ch;
    p->in_tail = ch;
    p->in_queued += ch->len;
    stdin_flush(p);
}

static void h_close_stdin(struct agent *ag, const msg_t *req)
{
    const msg_agent_close_stdin_t *b = req->body;
    struct proc *p = lookup(ag, req, b->container_id, b->exec_id, NULL);
    if (!p)
        return;
    p->in_close = true;
    if (!p->in_head)
        stdin_close(p);
    reply_ok(ag, req);
}

static void h_output_ack(struct agent *ag, const msg_t *req)
{
    const msg_agent_output_ack_t *b = req->body;
    if (!agent_id_valid(b->container_id, false) || !agent_id_valid(b->exec_id, true) ||
        (b->stream != 1 && b->stream != 2)) {
        log_warn("agent.output_ack: invalid ids or stream, ignored");
        return;
    }
    struct ctr *c = find_ctr(ag, b->container_id);
    struct proc *p = c ? find_proc(c, b->exec_id) : NULL;
    if (!p)
        return; /* gone already: nothing to credit */
    struct stream *s = &p->out[b->stream - 1];
    uint64_t add = b->bytes > CREDIT_CAP ? CREDIT_CAP : b->bytes;
    s->credit = s->credit + add > CREDIT_CAP ? CREDIT_CAP : s->credit + add;
    stream_update(s);
}

static void h_tty_resize(struct agent *ag, const msg_t *req)
{
    const msg_agent_tty_resize_t *b = req->body;
    struct proc *p = lookup(ag, req, b->container_id, b->exec_id, NULL);
    if (!p)
        return;
    if (!p->tty || p->out[0].fd < 0)
        return reply_err_id(ag, req->id, ENOTTY, "process %s/%s has no terminal", p->c->id,
                            p->exec_id[0] ? p->exec_id : "init");
    if (b->rows > 65535 || b->cols > 65535)
        return reply_err_id(ag, req->id, EINVAL, "rows/cols: at most 65535");
    struct winsize ws = {.ws_row = (unsigned short)b->rows, .ws_col = (unsigned short)b->cols};
    if (ioctl(p->out[0].fd, TIOCSWINSZ, &ws) < 0)
        return reply_err_id(ag, req->id, errno, "TIOCSWINSZ: %s", strerror(errno));
    reply_ok(ag, req);
}

static struct ctr *cgroup_ctr(struct agent *ag, const msg_t *req, const char *cid)
{
    struct ctr *c = NULL;
    lookup(ag, req, cid, NULL, &c);
    if (!c)
        return NULL;
    if (!c->cgroup) {
        reply_err_id(ag, req->id, ENOTSUP, "container %s: no cgroup v2 hierarchy in this agent",
                     c->id);
        return NULL;
    }
    return c;
}

static int freeze(struct ctr *c, bool on, err_t *err)
{
    char path[4200], buf[512];
    snprintf(path, sizeof path, "%s/cgroup.freeze", c->cgroup);
    if (write_file(path, on ? "1" : "0", err) < 0)
        return -1;
    /* wait (briefly) for the kernel to report the new state */
    snprintf(path, sizeof path, "%s/cgroup.events", c->cgroup);
    for (int i = 0; i < 1000; i++) {
        if (read_file(path, buf, sizeof buf) < 0)
            return 0;
        char *f = strstr(buf, "frozen ");
        if (!f || (f[7] == '1') == on)
            return 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return err_make(err, ETIMEDOUT, "cgroup %s: not %s after 1 s", c->cgroup,
                    on ? "frozen" : "thawed");
}

static void h_pause(struct agent *ag, const msg_t *req, bool on)
{
    const char *cid = on ? ((msg_agent_pause_container_t *)req->body)->container_id
                         : ((msg_agent_resume_container_t *)req->body)->container_id;
    struct ctr *c = cgroup_ctr(ag, req, cid);
    if (!c)
        return;
    if (on && c->state != CTR_RUNNING)
        return reply_err_id(ag, req->id, EBUSY, "container %s: not running", c->id);
    if (!on && c->state != CTR_PAUSED)
        return reply_err_id(ag, req->id, EBUSY, "container %s: not paused", c->id);
    err_t err = ERR_INIT;
    if (freeze(c, on, &err) < 0) {
        err_wrap(&err, "%s container %s", on ? "pause" : "resume", c->id);
        return reply_err_t(ag, req, &err);
    }
    c->state = on ? CTR_PAUSED : CTR_RUNNING;
    reply_ok(ag, req);
}

static void h_pause_container(struct agent *ag, const msg_t *req)
{
    h_pause(ag, req, true);
}

static void h_resume_container(struct agent *ag, const msg_t *req)
{
    h_pause(ag, req, false);
}

static void h_update_container(struct agent *ag, const msg_t *req)
{
    const msg_agent_update_container_t *b = req->body;
    struct ctr *c = cgroup_ctr(ag, req, b->container_id);
    if (!c)
        return;
    /* parse linux.resources through the spec parser (same checks as create) */
    const char *pre =
        "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"/\"},\"linux\":{\"resources\":";
    _cleanup_free_ char *doc = NULL;
    if (asprintf(&doc, "%s%s}}", pre, b->resources ? b->resources : "null") < 0)
        abort();
    err_t err = ERR_INIT;
    oci_spec_t *s = NULL;
    if (oci_spec_parse(doc, strlen(doc), &s, &err) < 0) {
        err_wrap(&err, "resources");
        return reply_err_t(ag, req, &err);
    }
    int r = container_cgroup_apply(c->cgroup, s->lnx ? s->lnx->resources : NULL, &err);
    oci_spec_destroy(&s);
    if (r < 0) {
        err_wrap(&err, "update container %s", c->id);
        return reply_err_t(ag, req, &err);
    }
    reply_ok(ag, req);
}

static void h_stats_container(struct agent *ag, const msg_t *req)
{
    const msg_agent_stats_container_t *b = req->body;
    struct ctr *c = cgroup_ctr(ag, req, b->container_id);
    if (!c)
        return;
    msg_t *m = msg_new(MSG_AGENT_STATS);
    if (!m)
        return;
    msg_agent_stats_t *s = m->body;
    char path[4200], buf[8192];
    bool f = false;
    snprintf(path, sizeof path, "%s/cpu.stat", c->cgroup);
    if (read_file(path, buf, sizeof buf) >= 0) {
        s->cpu_usage_usec = kv_get(buf, "usage_usec", &f);
        s->cpu_user_usec = kv_get(buf, "user_usec", &f);
        s->cpu_system_usec = kv_get(buf, "system_usec", &f);
        if (f)
            msg_strv_push(&s->present, "cpu");
    }
    snprintf(path, sizeof path, "%s/memory.current", c->cgroup);
    if (read_file(path, buf, sizeof buf) > 0) {
        s->memory_current = strtoull(buf, NULL, 10);
        snprintf(path, sizeof path, "%s/memory.max", c->cgroup);
        if (read_file(path, buf, sizeof buf) > 0)
            s->memory_max = strncmp(buf, "max", 3) ? strtoull(buf, NULL, 10) : UINT64_MAX;
        snprintf(path, sizeof path, "%s/memory.events", c->cgroup);
        if (read_file(path, buf, sizeof buf) > 0)
            s->memory_oom_kills = kv_get(buf, "oom_kill", &f);
        msg_strv_push(&s->present, "memory");
    }
    snprintf(path, sizeof path, "%s/pids.current", c->cgroup);
    if (read_file(path, buf, sizeof buf) > 0) {
        s->pids_current = strtoull(buf, NULL, 10);
        msg_strv_push(&s->present, "pids");
    } else {
        snprintf(path, sizeof path, "%s/cgroup.procs", c->cgroup);
        FILE *fp = fopen(path, "re");
        if (fp) {
            long pid;
            while (fscanf(fp, "%ld", &pid) == 1)
                s->pids_current++;
            fclose(fp);
            msg_strv_push(&s->present, "pids");
        }
    }
    snprintf(path, sizeof path, "%s/io.stat", c->cgroup);
    FILE *fp = fopen(path, "re");
    if (fp) {
        char line[1024];
        while (fgets(line, sizeof line, fp)) {
            char *r = strstr(line, "rbytes="), *w = strstr(line, "wbytes=");
            if (r)
                s->io_read_bytes += strtoull(r + 7, NULL, 10);
            if (w)
                s->io_write_bytes += strtoull(w + 7, NULL, 10);
        }
        fclose(fp);
        msg_strv_push(&s->present, "io");
    }
    snprintf(path, sizeof path, "%s/cgroup.events", c->cgroup);
    if (read_file(path, buf, sizeof buf) > 0) {
        bool ff = false;
        s->frozen = kv_get(buf, "frozen", &ff) == 1;
        if (ff)
            msg_strv_push(&s->present, "freezer");
    }
    reply_msg(ag, req->id, &m);
}

static void h_list_processes(struct agent *ag, const msg_t *req)
{
    const msg_agent_list_processes_t *b = req->body;
    struct ctr *c = NULL;
    lookup(ag, req, b->container_id, NULL, &c);
    if (!c)
        return;
    msg_t *m = msg_new(MSG_AGENT_PROCESSES);
    if (!m)
        return;
    msg_u64v_t *v = &((msg_agent_processes_t *)m->body)->pids;
    FILE *fp = NULL;
    if (c->cgroup) {
        char path[4200];
        snprintf(path, sizeof path, "%s/cgroup.procs", c->cgroup);
        fp = fopen(path, "re");
    }
    if (fp) {
        long pid;
        while (fscanf(fp, "%ld", &pid) == 1 && v->n < 65536)
            msg_u64v_push(v, (uint64_t)pid);
        fclose(fp);
    } else {
        for (struct proc *p = c->procs; p; p = p->next)
            if (p->pid > 0 && !p->exited)
                msg_u64v_push(v, (uint64_t)p->pid);
    }
    reply_msg(ag, req->id, &m);
}

static void h_mount_storages(struct agent *ag, const msg_t *req)
{
    err_t err = ERR_INIT;
    if (mount_storages(ag, ((msg_agent_mount_storages_t *)req->body)->storages, &err) < 0)
        return reply_err_t(ag, req, &err);
    reply_ok(ag, req);
}

/* ---- network (agent/guest/net.c) ---- */

/* A hot-plugged NIC may appear after its update_interface arrives: retry
 * every 50 ms for up to 10 s. */
struct net_retry {
    struct agent *ag;
    uint64_t id;
    char *json;
    int left;
    struct event *timer;
    struct net_retry *next;
};

static void net_retry_free(struct agent *ag, struct net_retry *r)
{
    for (struct net_retry **pp = &ag->net_retries; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    if (r->timer)
        event_free(r->timer);
    free(r->json);
    free(r);
}

static void net_reply_interface(struct agent *ag, uint64_t id, char **json)
{
    msg_t *m = msg_new(MSG_AGENT_INTERFACE);
    if (!m) {
        free(*json);
        return;
    }
    msg_set_str(&((msg_agent_interface_t *)m->body)->interface, *json);
    free(*json);
    *json = NULL;
    reply_msg(ag, id, &m);
}

static void on_net_retry(evutil_socket_t fd, short what, void *arg)
{
    struct net_retry *r = arg;
    struct agent *ag = r->ag;
    err_t err = ERR_INIT;
    char *out = NULL;
    int rc = agent_net_update_interface(r->json, &out, &err);
    if (rc == -EAGAIN && --r->left > 0) {
        struct timeval tv = {0, 50000};
        evtimer_add(r->timer, &tv);
        err_clear(&err);
        return;
    }
    if (rc < 0)
        reply_err_id(ag, r->id, err.code ? err.code : EIO, "%s", err_str(&err));
    else
        net_reply_interface(ag, r->id, &out);
    err_clear(&err);
    net_retry_free(ag, r);
}

static void h_network(struct agent *ag, const msg_t *req)
{
    err_t err = ERR_INIT;
    char *out = NULL;
    msg_t *m = NULL;
    int rc = 0;
    ensure_lo_up(ag);
    switch (req->type) {
    case MSG_AGENT_UPDATE_INTERFACE: {
        const char *json = ((msg_agent_update_interface_t *)req->body)->interface;
        rc = agent_net_update_interface(json, &out, &err);
        if (rc == -EAGAIN) {
            hurry_loader(ag); /* virtio_net may be among the late modules */
            struct net_retry *r = calloc(1, sizeof *r);
            if (r && (r->json = strdup(json)) &&
                (r->timer = evtimer_new(ag->base, on_net_retry, r))) {
                r->ag = ag;
                r->id = req->id;
                r->left = 200;
                r->next = ag->net_retries;
                ag->net_retries = r;
                struct timeval tv = {0, 50000};
                evtimer_add(r->timer, &tv);
                err_clear(&err);
                return;
            }
            if (r) {
                free(r->json);
                free(r);
            }
        }
        if (rc == 0)
            return net_reply_interface(ag, req->id, &out);
        break;
    }
    case MSG_AGENT_UPDATE_ROUTES: {
        const char *routes = ((msg_agent_update_routes_t *)req->body)->routes;
        if ((rc = agent_net_update_routes(routes, &err)) == 0 && (m = msg_new(MSG_AGENT_ROUTES))) {
            msg_set_str(&((msg_agent_routes_t *)m->body)->routes, routes);
            return reply_msg(ag, req->id, &m);
        }
        break;
    }
    case MSG_AGENT_ADD_ARP_NEIGHBORS:
        if ((rc = agent_net_add_neighbors(((msg_agent_add_arp_neighbors_t *)req->body)->neighbors,
                                          &err)) == 0)
            return reply_ok(ag, req);
        break;
    case MSG_AGENT_LIST_INTERFACES:
        if ((rc = agent_net_list_interfaces(&out, &err)) == 0 &&
            (m = msg_new(MSG_AGENT_INTERFACES))) {
            msg_set_str(&((msg_agent_interfaces_t *)m->body)->interfaces, out);
            free(out);
            return reply_msg(ag, req->id, &m);
        }
        break;
    case MSG_AGENT_LIST_ROUTES:
        if ((rc = agent_net_list_routes(&out, &err)) == 0 && (m = msg_new(MSG_AGENT_ROUTES))) {
            msg_set_str(&((msg_agent_routes_t *)m->body)->routes, out);
            free(out);
            return reply_msg(ag, req->id, &m);
        }
        break;
    default:
        break;
    }
    free(out);
    if (rc == 0)
        err_make(&err, ENOMEM, "%s: out of memory", msg_type_name(req->type));
    reply_err_t(ag, req, &err);
}

/* Fault injection (docs/faults.md), a test facility: the host's broker
 * sends fault.inject only when a fault rule asks for it.  agent-exit ends
 * the agent at once (in a VM: PID 1 exits, the guest panics); agent-hang
 * stops it for good without exiting: nothing is answered any more. */
static void h_fault(struct agent *ag, const msg_t *req)
{
    const msg_fault_inject_t *b = req->body;
    if (!strcmp(b->action, "agent-exit")) {
        log_warn("fault injection: exiting");
        _exit(70);
    }
    if (!strcmp(b->action, "agent-hang")) {
        log_warn("fault injection: hanging");
        for (;;)
            pause();
    }
    reply_err_id(ag, req->id, EINVAL, "husk-agent: no fault '%s'", b->action);
}

/* Restore: every container and process the agent knows, with its state,
 * so that a host re-attaching after its daemon died learns the truth
 * (exits it missed included).  Bounded by AGENT_LIST_MAX entries. */
static void streams_refresh(struct agent *ag)
{
    for (struct ctr *c = ag->ctrs; c; c = c->next)
        for (struct proc *p = c->procs; p; p = p->next)
            for (int i = 0; i < 2; i++)
                stream_update(&p->out[i]);
}

static void h_list_containers(struct agent *ag, const msg_t *req)
{
    /* the host now knows every stream with AGENT_OUTPUT_WINDOW of credit */
    if (ag->out_held) {
        ag->out_held = false;
        for (struct ctr *c = ag->ctrs; c; c = c->next)
            for (struct proc *p = c->procs; p; p = p->next)
                for (int i = 0; i < 2; i++)
                    p->out[i].credit = AGENT_OUTPUT_WINDOW;
        streams_refresh(ag);
    }
    static const char *const names[] = {[CTR_CREATED] = "created",
                                        [CTR_RUNNING] = "running",
                                        [CTR_PAUSED] = "paused",
                                        [CTR_STOPPED] = "stopped"};
    msg_t *m = msg_new(MSG_AGENT_CONTAINERS);
    if (!m)
        return;
    msg_agent_containers_t *b = m->body;
    size_t n = 0;
    for (struct ctr *c = ag->ctrs; c; c = c->next) {
        for (struct proc *p = c->procs; p && n < AGENT_LIST_MAX; p = p->next, n++) {
            bool init = p == c->procs;
            const char *st = init ? names[c->state] : p->exited ? "stopped" : "running";
            if (init && p->exited)
                st = "stopped";
            msg_strv_push(&b->container_ids, c->id);
            msg_strv_push(&b->exec_ids, p->exec_id);
            msg_strv_push(&b->states, st);
            msg_u64v_push(&b->pids, p->pid > 0 ? (uint64_t)p->pid : 0);
            msg_u64v_push(&b->exited, p->exited ? 1 : 0);
            msg_u64v_push(&b->statuses, p->exited ? (uint64_t)(p->status & 0xffff) : 0);
        }
        if (!c->procs && n < AGENT_LIST_MAX) { /* created, init not forked yet */
            msg_strv_push(&b->container_ids, c->id);
            msg_strv_push(&b->exec_ids, "");
            msg_strv_push(&b->states, names[c->state]);
            msg_u64v_push(&b->pids, 0);
            msg_u64v_push(&b->exited, 0);
            msg_u64v_push(&b->statuses, 0);
            n++;
        }
    }
    if (n >= AGENT_LIST_MAX)
        log_warn("list_containers: more than %d processes, the rest left out", AGENT_LIST_MAX);
    reply_msg(ag, req->id, &m);
}

typedef void (*handler_fn)(struct agent *ag, const msg_t *req);
static const struct {
    msg_type_t type;
    handler_fn fn;
} handlers[] = {
    {MSG_AGENT_CHECK, h_check},
    {MSG_AGENT_GUEST_DETAILS, h_guest_details},
    {MSG_AGENT_CREATE_SANDBOX, h_create_sandbox},
    {MSG_AGENT_DESTROY_SANDBOX, h_destroy_sandbox},
    {MSG_AGENT_CREATE_CONTAINER, h_create_container},
    {MSG_AGENT_START_CONTAINER, h_start_container},
    {MSG_AGENT_REMOVE_CONTAINER, h_remove_container},
    {MSG_AGENT_EXEC_PROCESS, h_exec_process},
    {MSG_AGENT_SIGNAL_PROCESS, h_signal_process},
    {MSG_AGENT_WAIT_PROCESS, h_wait_process},
    {MSG_AGENT_WRITE_STDIN, h_write_stdin},
    {MSG_AGENT_CLOSE_STDIN, h_close_stdin},
    {MSG_AGENT_OUTPUT_ACK, h_output_ack},
    {MSG_AGENT_TTY_RESIZE, h_tty_resize},
    {MSG_AGENT_PAUSE_CONTAINER, h_pause_container},
    {MSG_AGENT_RESUME_CONTAINER, h_resume_container},
    {MSG_AGENT_UPDATE_CONTAINER, h_update_container},
    {MSG_AGENT_STATS_CONTAINER, h_stats_container},
    {MSG_AGENT_LIST_PROCESSES, h_list_processes},
    {MSG_AGENT_LIST_CONTAINERS, h_list_containers},
    {MSG_AGENT_MOUNT_STORAGES, h_mount_storages},
    {MSG_AGENT_UPDATE_INTERFACE, h_network},
    {MSG_AGENT_UPDATE_ROUTES, h_network},
    {MSG_AGENT_ADD_ARP_NEIGHBORS, h_network},
    {MSG_AGENT_LIST_INTERFACES, h_network},
    {MSG_AGENT_LIST_ROUTES, h_network},
    {MSG_FAULT_INJECT, h_fault},
};

/* ---- the channel ------------------------------------------------------------ */

static int on_frame(void *arg, const uint8_t *buf, size_t len)
{
    struct agent *ag = arg;
    ag->had_host = true;
    msg_t *m = NULL;
    err_t err = ERR_INIT;
    if (msg_decode(buf, len, &m, &err) < 0) {
        uint64_t id, re;
        log_warn("undecodable frame (%zu bytes): %s", len, err_str(&err));
        if (msg_peek_ids(buf, len, &id, &re) == 0 && id && !re)
            reply_err_id(ag, id, EBADMSG, "husk-agent: %s", err_str(&err));
        err_clear(&err);
        return 0;
    }
    if (m->reply_to) {
        log_debug("unexpected reply %s from the host, dropped", msg_type_name(m->type));
        msg_destroy(&m);
        return 0;
    }
    log_debug("request %s id %llu", msg_type_name(m->type), (unsigned long long)m->id);
    for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
        if (handlers[i].type == m->type) {
            handlers[i].fn(ag, m);
            msg_destroy(&m);
            return 0;
        }
    reply_err_id(ag, m->id, EPROTO, "husk-agent does not serve %s", msg_type_name(m->type));
    msg_destroy(&m);
    return 0;
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    struct agent *ag = arg;
    event_add(ag->chan_rev, NULL);
}

static void on_chan_read(evutil_socket_t fd, short what, void *arg);
static void on_chan_write(evutil_socket_t fd, short what, void *arg);

/* Listen mode: a host connected; it becomes the channel. */
static void on_accept(evutil_socket_t fd, short what, void *arg)
{
    struct agent *ag = arg;
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            log_warn("accept on the channel: %s", strerror(errno));
        return;
    }
    struct event *r = event_new(ag->base, c, EV_READ | EV_PERSIST, on_chan_read, ag);
    struct event *w = event_new(ag->base, c, EV_WRITE | EV_PERSIST, on_chan_write, ag);
    if (!r || !w || event_add(r, NULL) < 0) {
        log_error("agent channel: out of memory for a new host connection");
        if (r)
            event_free(r);
        if (w)
            event_free(w);
        close(c);
        return;
    }
    event_del(ag->accept_ev);
    ag->chan = c;
    ag->chan_rev = r;
    ag->chan_wev = w;
    ag->chan_wev_armed = false;
    log_info("agent channel: host connected");
    update_out_pause(ag);
}

static void hold_output(struct agent *ag)
{
    if (!ag->had_host || ag->out_held)
        return;
    ag->out_held = true;
    for (struct ctr *c = ag->ctrs; c; c = c->next)
        for (struct proc *p = c->procs; p; p = p->next)
            for (int i = 0; i < 2; i++)
                stream_update(&p->out[i]);
}

static void chan_lost(struct agent *ag, const char *why)
{
    hold_output(ag);
    if (ag->opts->listen_fd > 0 && ag->accept_ev) {
        /* listen mode: drop this host, wait for the next one; what was
         * queued for it is of no use to another */
        log_info("agent channel: host gone (%s); waiting for the next one", why);
        event_free(ag->chan_rev);
        event_free(ag->chan_wev);
        ag->chan_rev = ag->chan_wev = NULL;
        ag->chan_wev_armed = false;
        close(ag->chan);
        ag->chan = -1;
        agent_frame_reader_reset(ag->reader);
        agent_frame_writer_reset(ag->writer);
        event_add(ag->accept_ev, NULL);
        update_out_pause(ag);
        return;
    }
    if (ag->opts->virtio_port) {
        /* the host side of the port is not (or no longer) connected: a
         * virtio port reads EOF / polls HUP until it is; poll gently */
        if (!ag->host_gone)
            log_info("agent channel: host not connected (%s); waiting", why);
        ag->host_gone = true;
        agent_frame_reader_reset(ag->reader);
        if (ag->had_host) /* what was queued for that host is of no use to the next */
            agent_frame_writer_reset(ag->writer);
        event_del(ag->chan_rev);
        struct timeval tv = {0, RECONNECT_MS * 1000};
        evtimer_add(ag->reconnect, &tv);
        return;
    }
    log_info("agent channel closed (%s): shutting down", why);
    ag->quit = true;
    event_base_loopbreak(ag->base);
}

static void on_chan_read(evutil_socket_t fd, short what, void *arg)
{
    struct agent *ag = arg;
    err_t err = ERR_INIT;
    int r = agent_frame_read(ag->reader, ag->chan, READ_BUDGET, on_frame, ag, &err);
    if (ag->chan != fd) { /* listen mode: that host is gone already */
        err_clear(&err);
        return;
    }
    if (r >= 0) {
        if (ag->host_gone)
            log_info("agent channel: host connected");
        ag->host_gone = false;
    }
    if (r == -EPIPE) {
        chan_lost(ag, err_str(&err));
    } else if (r < 0) {
        log_error("agent channel: %s", err_str(&err));
        if (ag->opts->virtio_port || ag->opts->listen_fd > 0) {
            chan_lost(ag, err_str(&err));
        } else {
            ag->quit = true;
            ag->rc = -EPROTO;
            event_base_loopbreak(ag->base);
        }
    }
    err_clear(&err);
}

static void on_chan_write(evutil_socket_t fd, short what, void *arg)
{
    chan_want_write(arg);
}

static void chan_want_write(struct agent *ag)
{
    err_t err = ERR_INIT;
    if (ag->chan < 0)
        return;
    int r = agent_frame_writer_flush(ag->writer, ag->chan, &err);
    if (r < 0) {
        log_warn("agent channel: %s", err_str(&err));
        err_clear(&err);
        if (ag->opts->listen_fd > 0) {
            /* may run inside the reader's callback: let the read side see
             * the end (EOF) and drop this host there */
            agent_frame_writer_reset(ag->writer);
            shutdown(ag->chan, SHUT_RDWR);
            r = 0;
        } else if (!ag->opts->virtio_port) {
            agent_frame_writer_reset(ag->writer);
            chan_lost(ag, "write failed");
        } else {
            r = 1; /* retry when writable */
        }
    }
    bool want = r == 1;
    if (want && !ag->chan_wev_armed)
        event_add(ag->chan_wev, NULL);
    else if (!want && ag->chan_wev_armed)
        event_del(ag->chan_wev);
    ag->chan_wev_armed = want;
    update_out_pause(ag);
}

/* ---- signals and inotify ------------------------------------------------------ */

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    struct agent *ag = arg;
    struct signalfd_siginfo si;
    while (read(ag->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGCHLD)
            continue; /* reaped below */
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            if (ag->opts->init) {
                log_info("signal %d ignored: the agent is init", (int)si.ssi_signo);
                continue;
            }
            log_info("signal %d: shutting down", (int)si.ssi_signo);
            ag->quit = true;
            event_base_loopbreak(ag->base);
        }
    }
    reap_all(ag);
}

static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
    struct agent *ag = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    while ((n = read(ag->ino, buf, sizeof buf)) > 0) {
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            for (struct ctr *c = ag->ctrs; c; c = c->next)
                if (c->oom_wd == ev->wd)
                    oom_check(ag, c);
            p += sizeof *ev + ev->len;
        }
    }
}

/* ---- serve ------------------------------------------------------------------ */

static void shutdown_all(struct agent *ag)
{
    for (struct ctr *c = ag->ctrs; c; c = c->next) {
        if (c->handle && c->state == CTR_CREATED)
            container_destroy(&c->handle);
        ctr_kill_all(c, SIGKILL);
    }
    /* reap what we killed (bounded: 2 s) */
    for (int i = 0; i < 200; i++) {
        reap_all(ag);
        bool left = false;
        for (struct ctr *c = ag->ctrs; c; c = c->next)
            for (struct proc *p = c->procs; p; p = p->next)
                if (p->pid > 0 && !p->exited)
                    left = true;
        if (!left)
            break;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    while (ag->ctrs) {
        struct ctr *c = ag->ctrs;
        ag->ctrs = c->next;
        ctr_free(c);
    }
    unmount_storages(ag);
}

int agent_serve(const agent_opts_t *opts, err_t *err)
{
    struct agent ag = {.opts = opts, .chan = opts->channel_fd, .sfd = -1, .ino = -1};
    int rc = 0;
    if (opts->root && mkdir_p(opts->root, 0700) < 0)
        return err_errno(err, "state directory %s", opts->root);
    set_nonblock(ag.chan);
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGCHLD);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    signal(SIGPIPE, SIG_IGN);
    ag.sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
    ag.ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    ag.base = event_base_new();
    ag.reader = agent_frame_reader_new(0);
    ag.writer = agent_frame_writer_new(0, 0);
    if (ag.sfd < 0 || !ag.base || !ag.reader || !ag.writer) {
        rc = err_make(err, ENOMEM, "agent: loop set-up failed");
        goto out;
    }
    ag.chan_rev = event_new(ag.base, ag.chan, EV_READ | EV_PERSIST, on_chan_read, &ag);
    ag.chan_wev = event_new(ag.base, ag.chan, EV_WRITE | EV_PERSIST, on_chan_write, &ag);
    ag.reconnect = evtimer_new(ag.base, on_reconnect, &ag);
    if (opts->late_loader > 0) {
        ag.loader = opts->late_loader;
        struct timeval tv = {LOADER_IDLE_MS / 1000, LOADER_IDLE_MS % 1000 * 1000};
        if (!(ag.loader_timer = evtimer_new(ag.base, on_loader_timer, &ag)) ||
            evtimer_add(ag.loader_timer, &tv) < 0)
            hurry_loader(&ag);
    }
    if (opts->listen_fd > 0) {
        set_nonblock(opts->listen_fd);
        ag.accept_ev = event_new(ag.base, opts->listen_fd, EV_READ | EV_PERSIST, on_accept, &ag);
        if (!ag.accept_ev) {
            rc = err_make(err, ENOMEM, "agent: loop set-up failed");
            goto out;
        }
    }
    ag.sig_ev = event_new(ag.base, ag.sfd, EV_READ | EV_PERSIST, on_signal, &ag);
    if (ag.ino >= 0)
        ag.ino_ev = event_new(ag.base, ag.ino, EV_READ | EV_PERSIST, on_inotify, &ag);
    if (!ag.chan_rev || !ag.chan_wev || !ag.reconnect || !ag.sig_ev ||
        event_add(ag.chan_rev, NULL) < 0 || event_add(ag.sig_ev, NULL) < 0 ||
        (ag.ino_ev && event_add(ag.ino_ev, NULL) < 0)) {
        rc = err_make(err, ENOMEM, "agent: loop set-up failed");
        goto out;
    }
    reap_all(&ag);
    log_info("serving the agent channel (root %s, cgroup %s)", opts->root ? opts->root : "-",
             opts->cgroup_root ? opts->cgroup_root : "none");
    while (!ag.quit) {
        if (event_base_dispatch(ag.base) < 0) {
            rc = err_make(err, EIO, "agent: event loop failed");
            break;
        }
        if (!ag.quit && !event_base_got_break(ag.base))
            break; /* no events left: cannot happen with the channel watched */
    }
    if (ag.rc < 0 && rc == 0)
        rc = err_make(err, -ag.rc, "agent channel: protocol error");
out:
    shutdown_all(&ag);
    while (ag.net_retries)
        net_retry_free(&ag, ag.net_retries);
    if (ag.chan_rev)
        event_free(ag.chan_rev);
    if (ag.chan_wev)
        event_free(ag.chan_wev);
    if (ag.reconnect)
        event_free(ag.reconnect);
    if (ag.loader_timer)
        event_free(ag.loader_timer);
    if (ag.accept_ev)
        event_free(ag.accept_ev);
    if (opts->listen_fd > 0)
        close(opts->listen_fd);
    if (ag.sig_ev)
        event_free(ag.sig_ev);
    if (ag.ino_ev)
        event_free(ag.ino_ev);
    if (ag.base)
        event_base_free(ag.base);
    agent_frame_reader_destroy(&ag.reader);
    agent_frame_writer_destroy(&ag.writer);
    if (ag.sfd >= 0)
        close(ag.sfd);
    if (ag.ino >= 0)
        close(ag.ino);
    if (ag.chan >= 0)
        close(ag.chan);
    return rc;
}
