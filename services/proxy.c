/* proxy: see proxy.h. */
#include "services/proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "actors/actor.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "persist/store.h"

#define CHUNK          (64 * 1024) /* AGENT_CHUNK_MAX */
#define STDIN_INFLIGHT 4           /* write_stdin requests in flight */
#define DRAIN_GRACE_MS 2000        /* after the exit, wait this long for EOFs */
#define PING_MS        1000
#define PING_MISSES    3
#define WRITER_DRAIN_S 10 /* at exit, wait this long for blocked writers */

/* ---- writer threads: blocking writes off the actor's loop ---------------- */

struct chunk {
    struct chunk *next;
    int stream;
    size_t len;
    uint8_t data[];
};

typedef struct writer {
    int fd;
    int notify_fd; /* records {stream, len} for the actor's acks */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct chunk *head, *tail;
    bool closing;
    bool broken; /* the reader went away: drop, still ack */
} writer_t;

struct ack_rec {
    int32_t stream;
    uint32_t len;
};

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->head && !w->closing)
            pthread_cond_wait(&w->cv, &w->mu);
        struct chunk *c = w->head;
        if (c) {
            w->head = c->next;
            if (!w->head)
                w->tail = NULL;
        }
        pthread_mutex_unlock(&w->mu);
        if (!c)
            return NULL; /* closing and empty */
        size_t off = 0;
        while (off < c->len && !w->broken) {
            ssize_t n = write(w->fd, c->data + off, c->len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                w->broken = true;
                break;
            }
            off += (size_t)n;
        }
        struct ack_rec r = {c->stream, (uint32_t)c->len};
        ssize_t wr = write(w->notify_fd, &r, sizeof r);
        (void)wr;
        free(c);
    }
}

static void writer_push(writer_t *w, int stream, const uint8_t *data, size_t len)
{
    struct chunk *c = xmalloc(sizeof *c + len);
    c->next = NULL;
    c->stream = stream;
    c->len = len;
    memcpy(c->data, data, len);
    pthread_mutex_lock(&w->mu);
    if (w->tail)
        w->tail->next = c;
    else
        w->head = c;
    w->tail = c;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int writer_start(writer_t *w, int fd, int notify_fd)
{
    memset(w, 0, sizeof *w);
    w->fd = fd;
    w->notify_fd = notify_fd;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0)
        return -1;
    w->started = true;
    return 0;
}

/* Lets the writer finish what is queued, up to WRITER_DRAIN_S. */
static void writer_finish(writer_t *w)
{
    if (!w->started)
        return;
    pthread_mutex_lock(&w->mu);
    w->closing = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WRITER_DRAIN_S;
    if (pthread_timedjoin_np(w->thread, NULL, &ts) != 0)
        pthread_detach(w->thread); /* blocked on a reader that never reads */
    w->started = false;
}

/* ---- stdin reader thread: any fd type into a pipe the loop can watch ------ */

typedef struct reader {
    int fd;  /* source (borrowed) */
    int out; /* pipe write end (owned; closed at EOF) */
    pthread_t thread;
} reader_t;

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    char buf[CHUNK];
    for (;;) {
        ssize_t n = read(r->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(r->out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    close(r->out);
    r->out = -1;
    return NULL;
}

/* ---- the actor ---------------------------------------------------------------- */

typedef struct proxy {
    const proxy_opts_t *o;
    const char *exec_id;
    char name[64];
    int in_fd, out_fd, err_fd, tty_fd;
    writer_t wout, werr;
    int ack_pipe[2];
    int stdin_pipe[2];
    reader_t reader;
    bool reader_started;
    int sigfd;
    int done_pipe[2];
    /* actor-side state */
    actor_watch_t *w_sync, *w_ack, *w_stdin, *w_sig;
    actor_timer_t *t_ping, *t_grace;
    bool go;
    int stdin_inflight;
    bool stdin_eof, stdin_closed;
    bool eof[3];
    bool exited;
    int status;
    int ping_misses;
    bool detached;        /* the daemon is gone, the VMM lives: waiting for a restore */
    uint64_t epoch;       /* the broker's, from its pongs: a change is a new daemon */
    char ctr_created[64]; /* exec proxy: its container's `created`, read at start */
    bool restore_started; /* this proxy started a restoring daemon (once per detach) */
    bool finished;
} proxy_t;

static bool ours(proxy_t *p, const char *cid, const char *eid)
{
    return cid && !strcmp(cid, p->o->id) && !strcmp(eid ? eid : "", p->exec_id);
}

static void finish(actor_t *a, proxy_t *p, int status, const char *why)
{
    if (p->finished)
        return;
    p->finished = true;
    p->status = status;
    log_debug("proxy %s: exiting with %d (%s)", p->name, status, why);
    actor_exit(a, why);
}

static void lost(actor_t *a, proxy_t *p, const char *fmt, const char *what)
{
    if (p->finished)
        return;
    char msg[512];
    snprintf(msg, sizeof msg, fmt, what);
    dprintf(2, "husk: container %s%s%s: %s\n", p->o->id, *p->exec_id ? " exec " : "", p->exec_id,
            msg);
    finish(a, p, 255, "sandbox lost");
}

static bool drained(proxy_t *p)
{
    if (p->o->terminal)
        return p->eof[1];
    return p->eof[1] && p->eof[2];
}

static void maybe_finish(actor_t *a, proxy_t *p)
{
    if (p->exited && drained(p))
        finish(a, p, p->status, "exited and drained");
}

static void on_grace(actor_t *a, void *arg)
{
    proxy_t *p = arg;
    p->t_grace = NULL;
    if (!p->exited) { /* deleted without an exit status: killed */
        p->exited = true;
        p->status = 128 + SIGKILL;
    }
    finish(a, p, p->status, "exited (drain grace over)");
}

static void set_exited(actor_t *a, proxy_t *p, int64_t status)
{
    if (p->exited)
        return;
    p->exited = true;
    p->status = (int)(status & 0xff);
    if (drained(p)) {
        maybe_finish(a, p);
        return;
    }
    if (!p->t_grace)
        p->t_grace = actor_timer(a, DRAIN_GRACE_MS, false, on_grace, p);
}

static void ignore_reply(actor_t *a, msg_t **reply, void *arg)
{
    if ((*reply)->status)
        log_debug("%s: %s", (const char *)arg,
                  (*reply)->status_text ? (*reply)->status_text : "error");
}

static void send_ack(actor_t *a, proxy_t *p, int stream, uint64_t bytes)
{
    msg_t *m = msg_new(MSG_AGENT_OUTPUT_ACK);
    msg_agent_output_ack_t *b = m->body;
    msg_set_str(&b->container_id, p->o->id);
    msg_set_str(&b->exec_id, p->exec_id);
    b->stream = (uint64_t)stream;
    b->bytes = bytes;
    err_t err = ERR_INIT;
    if (actor_send(a, "agent", &m, &err) < 0)
        log_debug("output_ack: %s", err_str(&err));
    err_clear(&err);
    msg_destroy(&m);
}

static void on_output(actor_t *a, msg_t **mp, void *state)
{
    proxy_t *p = state;
    msg_agent_output_t *b = (*mp)->body;
    if (!ours(p, b->container_id, b->exec_id))
        return;
    int stream = b->stream == 2 ? 2 : 1;
    if (b->data.len) {
        writer_t *w = (stream == 2 && !p->o->terminal) ? &p->werr : &p->wout;
        if (w->started)
            writer_push(w, stream, b->data.data, b->data.len);
        else
            send_ack(a, p, stream, b->data.len);
    }
    if (b->eof) {
        p->eof[stream] = true;
        maybe_finish(a, p);
    }
}

static void on_exited(actor_t *a, msg_t **mp, void *state)
{
    proxy_t *p = state;
    msg_agent_exited_t *b = (*mp)->body;
    if (ours(p, b->container_id, b->exec_id))
        set_exited(a, p, b->status);
}

static void on_rt_exited(actor_t *a, msg_t **mp, void *state)
{
    proxy_t *p = state;
    msg_rt_exited_t *b = (*mp)->body;
    if (ours(p, b->id, b->exec_id))
        set_exited(a, p, b->status);
}

static void on_state_changed(actor_t *a, msg_t **mp, void *state)
{
    proxy_t *p = state;
    msg_rt_state_changed_t *b = (*mp)->body;
    if (!b->id || strcmp(b->id, p->o->id))
        return;
    if (!strcmp(b->state, "deleted") && p->exited) {
        /* its exit is known and it is gone: no more output can come (a
         * restored local agent, say, outlives the channel that ended it) */
        finish(a, p, p->status, "exited and deleted");
        return;
    }
    /* the container is gone: whatever of ours still ran was killed; give
     * the exit event a moment to arrive with the real status */
    if (!strcmp(b->state, "deleted") && !p->t_grace && !p->finished)
        p->t_grace = actor_timer(a, DRAIN_GRACE_MS, false, on_grace, p);
}

static void on_agent_lost(actor_t *a, msg_t **mp, void *state)
{
    proxy_t *p = state;
    if (p->exited)
        return;
    lost(a, p, "the sandbox's agent is gone (%s)", ((msg_agent_lost_t *)(*mp)->body)->reason);
}

static void on_hv_exited(actor_t *a, msg_t **mp, void *state)
{
    proxy_t *p = state;
    if (p->exited)
        return;
    lost(a, p, "the sandbox VM exited (%s)", ((msg_hv_exited_t *)(*mp)->body)->reason);
}

/* ---- heartbeat ---------------------------------------------------------------- */

/* The sandbox state dir of this proxy, from its endpoint ipc://DIR/bus.sock:
 * root and sandbox id (docs/state.md layout). */
static bool sandbox_of(const proxy_t *p, char *root, size_t rlen, char *sb, size_t slen)
{
    const char *e = p->o->endpoint;
    if (strncmp(e, "ipc://", 6))
        return false;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", e + 6);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return false;
    *slash = 0; /* DIR */
    slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return false;
    snprintf(sb, slen, "%s", slash + 1);
    *slash = 0;
    snprintf(root, rlen, "%s", dir);
    return true;
}

/* A restoring daemon for the sandbox (as the CLI starts one): its own
 * session, not our child; the daemon's claim keeps it to one. */
static void start_restore_daemon(const char *root, const char *sb)
{
    char log_path[4096 + 512];
    snprintf(log_path, sizeof log_path, "%.4096s/%.256s/daemon.log", root, sb);
    pid_t pid = fork();
    if (pid < 0)
        return;
    if (pid == 0) {
        setsid();
        if (fork() != 0)
            _exit(0);
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            dup2(nul, 2);
        }
        syscall(SYS_close_range, 3, ~0U, 0);
        setenv("HUSK_DAEMON_RESTORE", "1", 1);
        unsetenv("HUSK_READY_FD");
        char *argv[] = {"husk",   "--root",   (char *)root, "--log",
                        log_path, "__daemon", (char *)sb,   NULL};
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* The container this proxy stands for is still the one on disk: a
 * container deleted and created again under the same id (and its sandbox
 * with it) is another one, whose daemon this proxy must not rejoin.  init
 * proxies are its init_pid; exec proxies saw its `created` at start. */
static bool still_ours(const proxy_t *p, persist_store_t *store, const char *sb)
{
    persist_container_t *c = NULL;
    if (persist_container_load(store, sb, p->o->id, &c, NULL) < 0)
        return false;
    bool ours = !p->exec_id[0]
                    ? c->init_pid == getpid()
                    : p->ctr_created[0] && c->created && !strcmp(c->created, p->ctr_created);
    persist_container_free(&c);
    return ours;
}

static void remember_container(proxy_t *p)
{
    char root[4096], sb[256];
    persist_store_t *store = NULL;
    persist_container_t *c = NULL;
    if (p->exec_id[0] && sandbox_of(p, root, sizeof root, sb, sizeof sb) &&
        persist_store_open(root, &store, NULL) == 0 &&
        persist_container_load(store, sb, p->o->id, &c, NULL) == 0 && c->created)
        snprintf(p->ctr_created, sizeof p->ctr_created, "%s", c->created);
    persist_container_free(&c);
    persist_store_destroy(&store);
}

/* The daemon stopped answering: the container is gone only when its VMM
 * is (or the sandbox is no longer a ready one); while the VMM lives, a
 * restoring daemon is started and awaited (docs/state.md "Restore"). */
static void daemon_silent(actor_t *a, proxy_t *p, const char *why)
{
    char root[4096], sb[256];
    persist_store_t *store = NULL;
    persist_sandbox_t *s = NULL;
    err_t err = ERR_INIT;
    bool vmm = false, daemon = false;
    if (sandbox_of(p, root, sizeof root, sb, sizeof sb) &&
        persist_store_open(root, &store, &err) == 0 &&
        persist_sandbox_load(store, sb, &s, &err) == 0) {
        vmm = s->vmm_pid > 0 && persist_pid_alive(s->vmm_pid, s->vmm_start) && s->state &&
              !strcmp(s->state, "ready") && still_ours(p, store, sb);
        daemon = persist_daemon_alive(s);
    }
    err_clear(&err);
    persist_sandbox_free(&s);
    persist_store_destroy(&store);
    if (!vmm) {
        lost(a, p, "%s", why);
        return;
    }
    if (!p->detached)
        log_info("proxy %s: the sandbox daemon is silent, its VMM lives: waiting for a restore",
                 p->name);
    p->detached = true;
    if (!daemon && !p->restore_started) {
        p->restore_started = true;
        start_restore_daemon(root, sb);
    }
}

static void rejoin(actor_t *a, proxy_t *p)
{
    err_t err = ERR_INIT;
    if (p->epoch || p->detached) { /* a new daemon: is it still our container's? */
        char root[4096], sb[256];
        persist_store_t *store = NULL;
        bool ours = sandbox_of(p, root, sizeof root, sb, sizeof sb) &&
                    persist_store_open(root, &store, NULL) == 0 && still_ours(p, store, sb);
        persist_store_destroy(&store);
        if (!ours) {
            lost(a, p, "%s", "its container was deleted (another one has its id now)");
            return;
        }
    }
    if (p->epoch)
        log_info("proxy %s: a new sandbox daemon answers: rejoining", p->name);
    if (actor_rejoin(a, &err) < 0) {
        log_warn("proxy %s: rejoin: %s", p->name, err_str(&err));
        err_clear(&err);
        return; /* the next pong tries again */
    }
    p->detached = false;
    p->restore_started = false;
}

static void on_pong(actor_t *a, msg_t **reply, void *arg)
{
    proxy_t *p = arg;
    if ((*reply)->status == 0) {
        msg_bus_pong_t *b = MSG_BODY(*reply, BUS_PONG, bus_pong);
        uint64_t epoch = b ? b->epoch : 0;
        p->ping_misses = 0;
        /* a restored daemon may answer before any ping was missed, even
         * before the first daemon ever did (it died right after our
         * start): rejoin on every new epoch, the first one included (the
         * same broker ignores what it already has) */
        if (p->detached || (epoch && epoch != p->epoch))
            rejoin(a, p);
        if (epoch)
            p->epoch = epoch;
    } else if (++p->ping_misses >= PING_MISSES) {
        daemon_silent(a, p, "the sandbox daemon stopped answering");
    }
}

static void ping(actor_t *a, void *arg)
{
    msg_t *m = msg_new(MSG_BUS_PING);
    err_t err = ERR_INIT;
    if (actor_request(a, "bus", &m, PING_MS * 3 / 2, on_pong, arg, &err) < 0) {
        /* no broker to queue to (its daemon was killed): a miss as well,
         * or the proxy would outlive its sandbox forever */
        proxy_t *p = arg;
        log_debug("ping: %s", err_str(&err));
        err_clear(&err);
        if (++p->ping_misses >= PING_MISSES)
            daemon_silent(a, p, "the sandbox daemon is gone");
    }
    msg_destroy(&m);
}

/* ---- acks from the writers ------------------------------------------------------ */

static void on_ack(actor_t *a, int fd, short what, void *arg)
{
    proxy_t *p = arg;
    struct ack_rec r[64];
    ssize_t n = read(fd, r, sizeof r);
    for (ssize_t i = 0; i + (ssize_t)sizeof r[0] <= n; i += (ssize_t)sizeof r[0]) {
        struct ack_rec *x = (struct ack_rec *)((char *)r + i);
        send_ack(a, p, x->stream, x->len);
    }
}

/* ---- stdin -------------------------------------------------------------------------- */

static void stdin_pump(actor_t *a, proxy_t *p);

static void on_written(actor_t *a, msg_t **reply, void *arg)
{
    proxy_t *p = arg;
    p->stdin_inflight--;
    if ((*reply)->status)
        log_debug("write_stdin: %s", (*reply)->status_text ? (*reply)->status_text : "error");
    stdin_pump(a, p);
}

static void on_stdin(actor_t *a, int fd, short what, void *arg)
{
    proxy_t *p = arg;
    if (p->stdin_inflight >= STDIN_INFLIGHT)
        return;
    uint8_t buf[CHUNK];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        p->stdin_eof = true;
        actor_unwatch(a, &p->w_stdin);
        stdin_pump(a, p);
        return;
    }
    msg_t *m = msg_new(MSG_AGENT_WRITE_STDIN);
    msg_agent_write_stdin_t *b = m->body;
    msg_set_str(&b->container_id, p->o->id);
    msg_set_str(&b->exec_id, p->exec_id);
    msg_set_bin(&b->data, buf, (size_t)n);
    err_t err = ERR_INIT;
    if (actor_request(a, "agent", &m, 30000, on_written, p, &err) == 0)
        p->stdin_inflight++;
    else
        err_clear(&err);
    msg_destroy(&m);
    stdin_pump(a, p);
}

/* Pauses reading while too much is in flight; closes stdin at EOF once
 * everything queued was written. */
static void stdin_pump(actor_t *a, proxy_t *p)
{
    if (p->stdin_eof) {
        if (!p->stdin_closed && p->stdin_inflight == 0) {
            p->stdin_closed = true;
            msg_t *m = msg_new(MSG_AGENT_CLOSE_STDIN);
            msg_agent_close_stdin_t *b = m->body;
            msg_set_str(&b->container_id, p->o->id);
            msg_set_str(&b->exec_id, p->exec_id);
            err_t err = ERR_INIT;
            if (actor_request(a, "agent", &m, 30000, ignore_reply, "close_stdin", &err) < 0)
                err_clear(&err);
            msg_destroy(&m);
        }
        return;
    }
    if (p->stdin_inflight >= STDIN_INFLIGHT && p->w_stdin)
        actor_unwatch(a, &p->w_stdin);
    else if (p->stdin_inflight < STDIN_INFLIGHT && !p->w_stdin)
        p->w_stdin = actor_watch(a, p->stdin_pipe[0], EV_READ, on_stdin, p);
}

/* ---- signals and resizes -------------------------------------------------------------- */

static void resize(actor_t *a, proxy_t *p)
{
    struct winsize ws;
    if (!p->o->terminal || p->tty_fd < 0 || ioctl(p->tty_fd, TIOCGWINSZ, &ws) < 0 ||
        (!ws.ws_row && !ws.ws_col))
        return;
    msg_t *m = msg_new(MSG_AGENT_TTY_RESIZE);
    msg_agent_tty_resize_t *b = m->body;
    msg_set_str(&b->container_id, p->o->id);
    msg_set_str(&b->exec_id, p->exec_id);
    b->rows = ws.ws_row;
    b->cols = ws.ws_col;
    err_t err = ERR_INIT;
    if (actor_request(a, "agent", &m, 5000, ignore_reply, "tty_resize", &err) < 0)
        err_clear(&err);
    msg_destroy(&m);
}

static void on_signal(actor_t *a, int fd, short what, void *arg)
{
    proxy_t *p = arg;
    struct signalfd_siginfo si[16];
    ssize_t n = read(fd, si, sizeof si);
    for (ssize_t i = 0; i < n / (ssize_t)sizeof si[0]; i++) {
        int sig = (int)si[i].ssi_signo;
        if (sig == SIGWINCH) {
            resize(a, p);
            continue;
        }
        if (sig == SIGCHLD || sig == SIGPIPE || p->exited)
            continue;
        msg_t *m = msg_new(MSG_RT_KILL);
        msg_rt_kill_t *b = m->body;
        msg_set_str(&b->id, p->o->id);
        msg_set_str(&b->exec_id, p->exec_id);
        b->signal = (uint64_t)sig;
        err_t err = ERR_INIT;
        if (actor_request(a, "runtime", &m, 10000, ignore_reply, "forward signal", &err) < 0)
            err_clear(&err);
        msg_destroy(&m);
    }
}

static void start_relaying(actor_t *a, proxy_t *p)
{
    p->go = true;
    if (p->sigfd >= 0)
        p->w_sig = actor_watch(a, p->sigfd, EV_READ, on_signal, p);
    if (p->reader_started)
        stdin_pump(a, p);
    resize(a, p);
}

static void on_sync(actor_t *a, int fd, short what, void *arg)
{
    proxy_t *p = arg;
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    actor_unwatch(a, &p->w_sync);
    if (n > 0 && !strncmp(buf, "go", 2)) {
        start_relaying(a, p);
        return;
    }
    /* the CLI gave up (create/exec failed) or died before saying go */
    finish(a, p, 255, "aborted by the CLI");
}

static int proxy_init(actor_t *a, void *state, err_t *err)
{
    proxy_t *p = state;
    p->w_ack = actor_watch(a, p->ack_pipe[0], EV_READ, on_ack, p);
    p->t_ping = actor_timer(a, PING_MS, true, ping, p);
    remember_container(p);
    if (!p->w_ack || !p->t_ping)
        return err_make(err, ENOMEM, "proxy: watch");
    if (p->o->sync_fd >= 0)
        p->w_sync = actor_watch(a, p->o->sync_fd, EV_READ, on_sync, p);
    else
        start_relaying(a, p);
    return 0;
}

static void proxy_fini(actor_t *a, void *state)
{
    proxy_t *p = state;
    if (!p->finished) { /* stopped from outside */
        p->finished = true;
        p->status = 255;
    }
    char c = 1;
    ssize_t w = write(p->done_pipe[1], &c, 1);
    (void)w;
}

static const actor_handler_t proxy_handlers[] = {
    {MSG_AGENT_OUTPUT, on_output},
    {MSG_AGENT_EXITED, on_exited},
    {MSG_RT_EXITED, on_rt_exited},
    {MSG_RT_STATE_CHANGED, on_state_changed},
    {MSG_AGENT_LOST, on_agent_lost},
    {MSG_HV_EXITED, on_hv_exited},
    {MSG_NONE, NULL},
};

static const char *const proxy_subs[] = {
    "agent.output", "agent.exited",     "agent.lost", "hv.exited",
    "rt.exited",    "rt.state_changed", NULL};

/* ---- console socket -------------------------------------------------------------------- */

int proxy_send_console(const char *path, int fd, const char *name, err_t *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return err_make(err, ENAMETOOLONG, "console socket path too long: %s", path);
    strcpy(sa.sun_path, path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return err_errno(err, "socket");
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(s);
        errno = e;
        return err_errno(err, "dial unix %s", path);
    }
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {.iov_base = (void *)name, .iov_len = strlen(name)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    ssize_t n;
    do
        n = sendmsg(s, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    int rc = n < 0 ? err_errno(err, "send the console to %s", path) : 0;
    close(s);
    return rc;
}

/* A host pty: the master goes to the console socket, the slave becomes
 * our controlling terminal and stdio. */
static int setup_console(proxy_t *p, err_t *err)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        return err_errno(err, "open /dev/ptmx");
    char name[128];
    if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof name) != 0) {
        close(m);
        return err_errno(err, "set up the pty");
    }
    if (getsid(0) != getpid())
        setsid();
    int s = open(name, O_RDWR | O_CLOEXEC); /* no O_NOCTTY: our controlling tty */
    if (s < 0) {
        close(m);
        return err_errno(err, "open %s", name);
    }
    ioctl(s, TIOCSCTTY, 0);
    struct termios t;
    if (tcgetattr(s, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(s, TCSANOW, &t);
    }
    if (p->o->rows || p->o->cols) {
        struct winsize ws = {.ws_row = (unsigned short)p->o->rows,
                             .ws_col = (unsigned short)p->o->cols};
        ioctl(s, TIOCSWINSZ, &ws);
    }
    int rc = proxy_send_console(p->o->console_socket, m, "/dev/ptmx", err);
    close(m);
    if (rc < 0) {
        close(s);
        return rc;
    }
    /* the slave is our stdio from now on (the caller's fds are let go) */
    for (int fd = 0; fd < 3; fd++)
        dup2(s, fd);
    if (s > 2)
        close(s);
    p->in_fd = p->out_fd = p->err_fd = p->tty_fd = 0;
    return 0;
}

/* ---- run ---------------------------------------------------------------------------------- */

static void forwarded_signals(sigset_t *set)
{
    sigemptyset(set);
    for (int s = 1; s < 32; s++) {
        switch (s) {
        case SIGKILL:
        case SIGSTOP:
        case SIGSEGV:
        case SIGBUS:
        case SIGILL:
        case SIGFPE:
        case SIGTRAP:
        case SIGSYS:
        case SIGPIPE:
        case SIGURG:
        case SIGCHLD:
            break;
        default:
            sigaddset(set, s);
        }
    }
    for (int s = SIGRTMIN; s <= SIGRTMAX; s++)
        sigaddset(set, s);
}

int proxy_run(const proxy_opts_t *o)
{
    proxy_t p = {.o = o, .exec_id = o->exec_id ? o->exec_id : "", .sigfd = -1};
    p.ack_pipe[0] = p.ack_pipe[1] = p.stdin_pipe[0] = p.stdin_pipe[1] = -1;
    p.done_pipe[0] = p.done_pipe[1] = -1;
    p.in_fd = 0, p.out_fd = 1, p.err_fd = 2, p.tty_fd = -1;
    err_t err = ERR_INIT;
    struct termios saved;
    bool restore_tty = false;
    int status = 255;
    actor_t *a = NULL;
    actor_def_t def = {0}; /* borrowed by the actor until actor_stop */

    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    forwarded_signals(&set);
    sigprocmask(SIG_BLOCK, &set, NULL); /* threads inherit the mask */
    p.sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);

    if (getsid(0) != getpid())
        setsid(); /* its own session, like runc's init */
    int rc = 0;
    if (o->terminal && o->console_socket) {
        rc = setup_console(&p, &err);
    } else if (o->terminal) {
        /* `run` in the foreground: the caller's terminal is ours */
        if (isatty(0)) {
            p.tty_fd = 0;
            if (tcgetattr(0, &saved) == 0) {
                struct termios raw = saved;
                cfmakeraw(&raw); /* the guest's pty does the line discipline */
                tcsetattr(0, TCSANOW, &raw);
                restore_tty = true;
            }
        } else if (isatty(1)) {
            p.tty_fd = 1;
        }
    }
    if (rc == 0 && (pipe2(p.ack_pipe, O_CLOEXEC) < 0 || pipe2(p.stdin_pipe, O_CLOEXEC) < 0 ||
                    pipe2(p.done_pipe, O_CLOEXEC) < 0))
        rc = err_errno(&err, "pipe");
    if (rc == 0) {
        fcntl(p.ack_pipe[0], F_SETFL, O_NONBLOCK);
        fcntl(p.stdin_pipe[0], F_SETFL, O_NONBLOCK);
        if (writer_start(&p.wout, p.out_fd, p.ack_pipe[1]) < 0 ||
            (!o->terminal && writer_start(&p.werr, p.err_fd, p.ack_pipe[1]) < 0))
            rc = err_make(&err, EAGAIN, "start writer threads");
    }
    if (rc == 0) {
        p.reader.fd = p.in_fd;
        p.reader.out = p.stdin_pipe[1];
        p.stdin_pipe[1] = -1;
        if (pthread_create(&p.reader.thread, NULL, reader_main, &p.reader) == 0) {
            pthread_detach(p.reader.thread); /* may block in read() forever */
            p.reader_started = true;
        } else {
            close(p.reader.out);
        }
    }
    if (rc == 0) {
        int n = snprintf(p.name, sizeof p.name, "proxy-%s%s%s", o->id, *p.exec_id ? "-" : "",
                         p.exec_id);
        if (n < 0 || (size_t)n >= sizeof p.name)
            snprintf(p.name, sizeof p.name, "proxy-p%d", (int)getpid());
        def = (actor_def_t){.name = p.name,
                            .handlers = proxy_handlers,
                            .subscribe = proxy_subs,
                            .init = proxy_init,
                            .fini = proxy_fini};
        actor_opts_t ao = {.endpoint = o->endpoint, .sandbox = NULL, .start_timeout_ms = 10000};
        rc = actor_start(&def, &p, &ao, &a, &err);
    }
    if (o->sync_fd >= 0) {
        char line[600];
        if (rc == 0)
            snprintf(line, sizeof line, "ok\n");
        else
            snprintf(line, sizeof line, "error: %s\n", err_str(&err));
        ssize_t w = send(o->sync_fd, line, strlen(line), MSG_NOSIGNAL);
        (void)w;
    } else if (rc < 0) {
        dprintf(2, "husk: proxy: %s\n", err_str(&err));
    }
    if (rc == 0) {
        char c;
        ssize_t r;
        do
            r = read(p.done_pipe[0], &c, 1);
        while (r < 0 && errno == EINTR);
        status = p.status;
        actor_stop(&a, 2000);
    }
    writer_finish(&p.wout);
    writer_finish(&p.werr);
    if (restore_tty)
        tcsetattr(0, TCSADRAIN, &saved);
    err_clear(&err);
    return status;
}

/* ---- argv ------------------------------------------------------------------------------------ */

char **proxy_argv(const proxy_opts_t *o)
{
    char **v = xcalloc(16, sizeof *v);
    int n = 0;
#define ADD(s)                                                                                     \
    do {                                                                                           \
        if (!(v[n++] = strdup(s)))                                                                 \
            abort();                                                                               \
    } while (0)
    char tmp[64];
    ADD("--endpoint");
    ADD(o->endpoint);
    ADD("--id");
    ADD(o->id);
    if (o->exec_id && *o->exec_id) {
        ADD("--exec-id");
        ADD(o->exec_id);
    }
    if (o->sync_fd >= 0) {
        snprintf(tmp, sizeof tmp, "%d", o->sync_fd);
        ADD("--sync-fd");
        ADD(tmp);
    }
    if (o->terminal)
        ADD("--terminal");
    if (o->console_socket) {
        ADD("--console-socket");
        ADD(o->console_socket);
    }
    if (o->rows || o->cols) {
        snprintf(tmp, sizeof tmp, "%ux%u", o->rows, o->cols);
        ADD("--console-size");
        ADD(tmp);
    }
#undef ADD
    return v;
}

int proxy_main(int argc, char **argv)
{
    proxy_opts_t o = {.sync_fd = -1, .exec_id = ""};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--terminal")) {
            o.terminal = true;
            continue;
        }
        if (!v) {
            dprintf(2, "husk __proxy: %s needs a value\n", a);
            return 255;
        }
        i++;
        if (!strcmp(a, "--endpoint"))
            o.endpoint = v;
        else if (!strcmp(a, "--id"))
            o.id = v;
        else if (!strcmp(a, "--exec-id"))
            o.exec_id = v;
        else if (!strcmp(a, "--sync-fd"))
            o.sync_fd = atoi(v);
        else if (!strcmp(a, "--console-socket"))
            o.console_socket = v;
        else if (!strcmp(a, "--console-size"))
            sscanf(v, "%ux%u", &o.rows, &o.cols);
        else {
            dprintf(2, "husk __proxy: unknown option %s\n", a);
            return 255;
        }
    }
    if (!o.endpoint || !o.id) {
        dprintf(2, "husk __proxy: --endpoint and --id are required\n");
        return 255;
    }
    return proxy_run(&o);
}
