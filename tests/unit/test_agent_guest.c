/* agent/guest/agent: the request handling of husk-agent, served by
 * agent_serve() in a forked child over a socketpair (the local backend's
 * shape), driven frame by frame from the test: bad frames, unknown types
 * and containers, invalid ids, and, with busybox-static at hand, a real
 * container in fresh namespaces: create, start, output, wait, exec,
 * stdin, signals, processes, remove. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/clock.h"

#include "agent/guest/agent.h"
#include "common/log.h"
#include "messages/msg.h"

#define DEADLINE_MS 20000
#define MAX_EVENTS  256

struct fx {
    char root[64];    /* the agent's state directory */
    char rootfs[128]; /* a busybox root, or "" */
    pid_t pid;        /* the agent */
    int fd;           /* our end of the channel */
    uint64_t next_id;
    msg_t *events[MAX_EVENTS];
    int nevents;
};

/* ---- the channel, from the host's side ------------------------------------------- */

static void write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void send_frame(struct fx *f, const void *payload, uint32_t len)
{
    uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                      (uint8_t)len};
    write_all(f->fd, hdr, 4);
    if (len)
        write_all(f->fd, payload, len);
}

static uint64_t send_msg(struct fx *f, msg_t *m)
{
    m->id = ++f->next_id;
    snprintf(m->from, sizeof m->from, "agent");
    snprintf(m->to, sizeof m->to, "guest");
    uint8_t *buf = NULL;
    size_t len = 0;
    err_t err = ERR_INIT;
    assert_int_equal(msg_encode(m, &buf, &len, &err), 0);
    send_frame(f, buf, (uint32_t)len);
    free(buf);
    uint64_t id = m->id;
    msg_destroy(&m);
    return id;
}

/* Reads exactly len bytes before the deadline; false at EOF or timeout. */
static bool read_full(int fd, void *buf, size_t len, int64_t deadline)
{
    uint8_t *p = buf;
    while (len) {
        int left = (int)(deadline - clock_mono_ms());
        if (left <= 0)
            return false;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        ssize_t n = read(fd, p, len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* The next message from the agent, or NULL at EOF / deadline. */
static msg_t *recv_msg(struct fx *f, int64_t deadline)
{
    uint8_t hdr[4];
    if (!read_full(f->fd, hdr, 4, deadline))
        return NULL;
    uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    assert_true(len > 0 && len <= 2 * 1024 * 1024);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    assert_true(read_full(f->fd, buf, len, deadline));
    msg_t *m = NULL;
    err_t err = ERR_INIT;
    int r = msg_decode(buf, len, &m, &err);
    free(buf);
    if (r < 0)
        fail_msg("the agent sent an undecodable frame: %s", err_str(&err));
    assert_string_equal(m->from, "guest");
    return m;
}

static void keep_event(struct fx *f, msg_t *m)
{
    assert_int_equal(m->reply_to, 0);
    assert_true(f->nevents < MAX_EVENTS);
    f->events[f->nevents++] = m;
}

/* Sends m and returns the reply to it; events met on the way are kept. */
static msg_t *call(struct fx *f, msg_t *m)
{
    uint64_t id = send_msg(f, m);
    int64_t dl = clock_mono_ms() + DEADLINE_MS;
    for (;;) {
        msg_t *r = recv_msg(f, dl);
        if (!r)
            fail_msg("no reply to request %llu", (unsigned long long)id);
        if (r->reply_to == id)
            return r;
        keep_event(f, r);
    }
}

/* The error code of a reply (0 when it is not a bus.error), and its text. */
static int call_err(struct fx *f, msg_t *m, const char *want_text)
{
    msg_t *r = call(f, m);
    int code = r->type == MSG_BUS_ERROR ? r->status : 0;
    if (code && want_text && (!r->status_text || !strstr(r->status_text, want_text)))
        fail_msg("error text '%s' does not say '%s'", r->status_text ? r->status_text : "",
                 want_text);
    msg_destroy(&r);
    return code;
}

static void call_ok(struct fx *f, msg_t *m, msg_type_t want)
{
    msg_t *r = call(f, m);
    if (r->type != want)
        fail_msg("%s (%d %s) instead of %s", msg_type_name(r->type), r->status,
                 r->status_text ? r->status_text : "", msg_type_name(want));
    msg_destroy(&r);
}

/* Removes and returns the first kept or incoming event of type t for
 * (cid, eid) that matches pred (NULL: any). */
static msg_t *wait_event(struct fx *f, msg_type_t t, const char *cid, const char *eid,
                         bool (*pred)(const msg_t *))
{
    int64_t dl = clock_mono_ms() + DEADLINE_MS;
    for (int i = 0;; i++) {
        for (; i < f->nevents; i++) {
            msg_t *e = f->events[i];
            if (e->type != t)
                continue;
            /* every agent event starts with container_id, exec_id */
            const char *const *ids = e->body;
            if (strcmp(ids[0], cid) || strcmp(ids[1], eid) || (pred && !pred(e)))
                continue;
            memmove(&f->events[i], &f->events[i + 1], (size_t)(f->nevents - i - 1) * sizeof e);
            f->nevents--;
            return e;
        }
        msg_t *m = recv_msg(f, dl);
        if (!m)
            fail_msg("no %s for %s/%s", msg_type_name(t), cid, eid);
        keep_event(f, m);
        i = f->nevents - 2;
    }
}

/* All stdout bytes of cid/eid up to its eof, acknowledged as we go. */
static char *collect_stdout(struct fx *f, const char *cid, const char *eid)
{
    char *out = calloc(1, 1);
    size_t n = 0;
    for (;;) {
        msg_t *e = wait_event(f, MSG_AGENT_OUTPUT, cid, eid, NULL);
        msg_agent_output_t *o = e->body;
        if (o->stream == 1 && o->data.len) {
            out = realloc(out, n + o->data.len + 1);
            memcpy(out + n, o->data.data, o->data.len);
            n += o->data.len;
            out[n] = 0;
            msg_t *ack = msg_new(MSG_AGENT_OUTPUT_ACK);
            msg_agent_output_ack_t *b = ack->body;
            msg_set_str(&b->container_id, cid);
            msg_set_str(&b->exec_id, eid);
            b->stream = 1;
            b->bytes = o->data.len;
            send_msg(f, ack);
        }
        bool eof = o->stream == 1 && o->eof;
        msg_destroy(&e);
        if (eof)
            return out;
    }
}

/* ---- the agent ------------------------------------------------------------------- */

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    assert_true(in >= 0);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    assert_true(out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        write_all(out, buf, (size_t)n);
    assert_int_equal(n, 0);
    close(in);
    assert_int_equal(close(out), 0);
}

/* A static busybox (the agent's containers run it), or NULL. */
static const char *static_busybox(void)
{
    static const char *const cands[] = {"/bin/busybox", "/usr/bin/busybox"};
    for (size_t i = 0; i < 2; i++) {
        char buf[4096];
        int fd = open(cands[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf);
        close(fd);
        /* statically linked: no PT_INTERP, so no "ld-linux" in the headers */
        if (n > 64 && !memmem(buf, (size_t)n, "ld-linux", 8) && !memmem(buf, (size_t)n, "/lib", 4))
            return cands[i];
    }
    return NULL;
}

static void make_rootfs(struct fx *f)
{
    const char *bb = static_busybox();
    if (!bb || geteuid() != 0)
        return;
    snprintf(f->rootfs, sizeof f->rootfs, "%s/rootfs", f->root);
    char p[256];
    assert_int_equal(mkdir(f->rootfs, 0755), 0);
    static const char *const dirs[] = {"bin", "proc", "dev", "tmp", "etc"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", f->rootfs, dirs[i]);
        assert_int_equal(mkdir(p, 0755), 0);
    }
    snprintf(p, sizeof p, "%s/bin/busybox", f->rootfs);
    copy_file(bb, p);
    snprintf(p, sizeof p, "%s/bin/sh", f->rootfs);
    assert_int_equal(symlink("busybox", p), 0);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    strcpy(f->root, "/tmp/husk-test-agent-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    make_rootfs(f);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    char state_dir[128];
    snprintf(state_dir, sizeof state_dir, "%s/state", f->root);
    pid_t parent = getpid();
    f->pid = fork();
    assert_true(f->pid >= 0);
    if (f->pid == 0) {
        close(sv[0]);
        /* cmocka's handlers must not run a test runner in the agent */
        static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            signal(sigs[i], SIG_DFL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(99);
        /* the containers' mounts stay in a namespace of their own */
        if (geteuid() == 0 && (unshare(CLONE_NEWNS | CLONE_NEWUTS) < 0 ||
                               mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0))
            _exit(98);
        int fl = fcntl(sv[1], F_GETFL);
        fcntl(sv[1], F_SETFL, fl | O_NONBLOCK);
        agent_opts_t o = {.channel_fd = sv[1], .root = state_dir};
        err_t err = ERR_INIT;
        int rc = agent_serve(&o, &err);
        if (rc < 0)
            fprintf(stderr, "agent_serve: %s\n", err_str(&err));
        err_clear(&err);
        exit(rc < 0 ? 1 : 0); /* exit, not _exit: coverage data is written at exit */
    }
    close(sv[1]);
    f->fd = sv[0];
    *state = f;
    return 0;
}

static int rm_tree(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    return system(cmd);
}

/* Ends the agent by closing the channel; it must exit 0 on its own. */
static int fx_teardown(void **state)
{
    struct fx *f = *state;
    int status = -1;
    if (f->fd >= 0)
        close(f->fd);
    int64_t dl = clock_mono_ms() + DEADLINE_MS;
    pid_t r;
    while ((r = waitpid(f->pid, &status, WNOHANG)) == 0 && clock_mono_ms() < dl)
        usleep(5000);
    if (r == 0) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, &status, 0);
    }
    for (int i = 0; i < f->nevents; i++)
        msg_destroy(&f->events[i]);
    pid_t want = f->pid;
    rm_tree(f->root);
    free(f);
    assert_int_equal(r, want);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    return 0;
}

/* ---- requests ------------------------------------------------------------------- */

static msg_t *req_ce(msg_type_t t, const char *cid, const char *eid)
{
    msg_t *m = msg_new(t);
    char **ids = m->body; /* container_id, exec_id first */
    msg_set_str(&ids[0], cid);
    if (eid)
        msg_set_str(&ids[1], eid);
    return m;
}

static msg_t *req_c(msg_type_t t, const char *cid)
{
    msg_t *m = msg_new(t);
    msg_set_str((char **)m->body, cid);
    return m;
}

/* The build directory (the parent of this test's own directory): a
 * coverage build's counters are files there, written by every process
 * before it execs, so the containers see it at the same path. */
static const char *build_dir(void)
{
    static char dir[4096];
    if (!dir[0]) {
        ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
        assert_true(n > 0);
        dir[n] = 0;
        for (int i = 0; i < 2; i++)
            *strrchr(dir, '/') = 0;
    }
    return dir;
}

static char *spec_json(const struct fx *f, const char *args, bool terminal)
{
    char *s = NULL;
    int n = asprintf(&s,
                     "{\"ociVersion\":\"1.0.2\",\"process\":{\"terminal\":%s,\"user\":{\"uid\":0,"
                     "\"gid\":0},\"args\":%s,\"env\":[\"PATH=/bin\"],\"cwd\":\"/\"},"
                     "\"root\":{\"path\":\"%s\"},\"hostname\":\"unit\","
                     "\"mounts\":[{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":"
                     "\"proc\"},%s{\"destination\":\"%s\",\"type\":\"bind\",\"source\":"
                     "\"%s\",\"options\":[\"rbind\"]}],\"linux\":{\"namespaces\":[{\"type\":"
                     "\"pid\"},{\"type\":\"mount\"},{\"type\":\"uts\"},{\"type\":\"ipc\"}]}}",
                     terminal ? "true" : "false", args, f->rootfs,
                     terminal ? "{\"destination\":\"/dev/pts\",\"type\":\"devpts\",\"source\":"
                                "\"devpts\",\"options\":[\"newinstance\",\"ptmxmode=0666\"]},"
                              : "",
                     build_dir(), build_dir());
    assert_true(n > 0);
    return s;
}

static msg_t *create_req(const struct fx *f, const char *cid, const char *args, bool in)
{
    msg_t *m = msg_new(MSG_AGENT_CREATE_CONTAINER);
    msg_agent_create_container_t *b = m->body;
    msg_set_str(&b->container_id, cid);
    b->spec = spec_json(f, args, false);
    b->stdin = in;
    return m;
}

static void test_agent_guest_check_and_details(void **state)
{
    struct fx *f = *state;
    msg_t *r = call(f, msg_new(MSG_AGENT_CHECK));
    assert_int_equal(r->type, MSG_AGENT_HEALTH);
    msg_agent_health_t *h = r->body;
    assert_string_equal(h->status, "SERVING");
    assert_string_equal(h->version, AGENT_VERSION_STR);
    msg_destroy(&r);

    r = call(f, msg_new(MSG_AGENT_GUEST_DETAILS));
    assert_int_equal(r->type, MSG_AGENT_DETAILS);
    msg_agent_details_t *d = r->body;
    assert_string_equal(d->agent_version, AGENT_VERSION_STR);
    assert_false(d->init);
    assert_true(d->kernel_release && *d->kernel_release);
    assert_true(d->machine && *d->machine);
    msg_destroy(&r);
}

static void test_agent_guest_bad_frames_are_answered_or_dropped(void **state)
{
    struct fx *f = *state;
    /* garbage: not an envelope, nothing to answer; the agent lives on */
    send_frame(f, "\xc1\xc1\xc1 not msgpack", 14);
    /* a decodable envelope of a type the agent does not serve */
    assert_int_equal(call_err(f, msg_new(MSG_BUS_PING), "does not serve"), EPROTO);
    /* a reply from the host is dropped, not answered */
    msg_t *rep = msg_new(MSG_AGENT_OK);
    rep->reply_to = 12345;
    send_msg(f, rep);
    /* a valid envelope with a body field of the wrong kind: EBADMSG, by id */
    msg_t *bad = req_c(MSG_AGENT_START_CONTAINER, "c1");
    bad->id = ++f->next_id;
    snprintf(bad->from, sizeof bad->from, "agent");
    snprintf(bad->to, sizeof bad->to, "guest");
    uint8_t *buf = NULL;
    size_t len = 0;
    err_t err = ERR_INIT;
    assert_int_equal(msg_encode(bad, &buf, &len, &err), 0);
    /* the body is {"container_id": "c1"}: turn the str "c1" into an int */
    uint8_t *s = memmem(buf, len,
                        "\xa2"
                        "c1",
                        3);
    assert_non_null(s);
    s[0] = 0x07;
    s[1] = 0xc0; /* nil */
    s[2] = 0xc0;
    uint64_t id = bad->id;
    msg_destroy(&bad);
    send_frame(f, buf, (uint32_t)len);
    free(buf);
    int64_t dl = clock_mono_ms() + DEADLINE_MS;
    msg_t *r = recv_msg(f, dl);
    assert_non_null(r);
    assert_int_equal(r->reply_to, id);
    assert_int_equal(r->type, MSG_BUS_ERROR);
    assert_int_equal(r->status, EBADMSG);
    msg_destroy(&r);
    /* still serving */
    call_ok(f, msg_new(MSG_AGENT_CHECK), MSG_AGENT_HEALTH);
}

static void test_agent_guest_unknown_container_is_enoent(void **state)
{
    struct fx *f = *state;
    assert_int_equal(call_err(f, req_c(MSG_AGENT_START_CONTAINER, "nope"), "nope"), ENOENT);
    assert_int_equal(call_err(f, req_c(MSG_AGENT_REMOVE_CONTAINER, "nope"), NULL), ENOENT);
    assert_int_equal(call_err(f, req_ce(MSG_AGENT_WAIT_PROCESS, "nope", ""), NULL), ENOENT);
    msg_t *sig = req_ce(MSG_AGENT_SIGNAL_PROCESS, "nope", "");
    ((msg_agent_signal_process_t *)sig->body)->signal = SIGTERM;
    assert_int_equal(call_err(f, sig, NULL), ENOENT);
    msg_t *w = req_ce(MSG_AGENT_WRITE_STDIN, "nope", "");
    msg_set_bin(&((msg_agent_write_stdin_t *)w->body)->data, "x", 1);
    assert_int_equal(call_err(f, w, NULL), ENOENT);
    assert_int_equal(call_err(f, req_ce(MSG_AGENT_CLOSE_STDIN, "nope", ""), NULL), ENOENT);
    assert_int_equal(call_err(f, req_ce(MSG_AGENT_TTY_RESIZE, "nope", ""), NULL), ENOENT);
    assert_int_equal(call_err(f, req_c(MSG_AGENT_PAUSE_CONTAINER, "nope"), NULL), ENOENT);
    assert_int_equal(call_err(f, req_c(MSG_AGENT_RESUME_CONTAINER, "nope"), NULL), ENOENT);
    assert_int_equal(call_err(f, req_c(MSG_AGENT_STATS_CONTAINER, "nope"), NULL), ENOENT);
    assert_int_equal(call_err(f, req_c(MSG_AGENT_LIST_PROCESSES, "nope"), NULL), ENOENT);
    msg_t *u = req_c(MSG_AGENT_UPDATE_CONTAINER, "nope");
    msg_set_str(&((msg_agent_update_container_t *)u->body)->resources, "{}");
    assert_int_equal(call_err(f, u, NULL), ENOENT);
    msg_t *ex = req_ce(MSG_AGENT_EXEC_PROCESS, "nope", "e1");
    msg_set_str(&((msg_agent_exec_process_t *)ex->body)->process,
                "{\"args\":[\"true\"],\"cwd\":\"/\",\"user\":{\"uid\":0,\"gid\":0}}");
    assert_int_equal(call_err(f, ex, NULL), ENOENT);
    /* an ack for nothing is one-way and ignored */
    msg_t *ack = req_ce(MSG_AGENT_OUTPUT_ACK, "nope", "");
    ((msg_agent_output_ack_t *)ack->body)->bytes = 10;
    send_msg(f, ack);
    call_ok(f, msg_new(MSG_AGENT_CHECK), MSG_AGENT_HEALTH);
}

static void test_agent_guest_invalid_requests_are_einval(void **state)
{
    struct fx *f = *state;
    assert_int_equal(call_err(f, req_c(MSG_AGENT_START_CONTAINER, "../x"), NULL), EINVAL);
    assert_int_equal(call_err(f, req_c(MSG_AGENT_START_CONTAINER, ""), NULL), EINVAL);
    msg_t *c = msg_new(MSG_AGENT_CREATE_CONTAINER);
    msg_set_str(&((msg_agent_create_container_t *)c->body)->container_id, "bad id");
    assert_int_equal(call_err(f, c, "container_id"), EINVAL);
    /* no spec */
    c = msg_new(MSG_AGENT_CREATE_CONTAINER);
    msg_set_str(&((msg_agent_create_container_t *)c->body)->container_id, "c1");
    assert_int_equal(call_err(f, c, "spec"), EINVAL);
    /* a spec without a process */
    c = msg_new(MSG_AGENT_CREATE_CONTAINER);
    msg_set_str(&((msg_agent_create_container_t *)c->body)->container_id, "c1");
    msg_set_str(&((msg_agent_create_container_t *)c->body)->spec,
                "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"/r\"}}");
    assert_int_equal(call_err(f, c, "process is required"), EINVAL);
    /* a relative root path */
    c = msg_new(MSG_AGENT_CREATE_CONTAINER);
    msg_set_str(&((msg_agent_create_container_t *)c->body)->container_id, "c1");
    msg_set_str(&((msg_agent_create_container_t *)c->body)->spec,
                "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\","
                "\"user\":{\"uid\":0,\"gid\":0}},\"root\":{\"path\":\"rootfs\"}}");
    assert_int_equal(call_err(f, c, "root.path"), EINVAL);
    /* a rootfs with .. */
    c = msg_new(MSG_AGENT_CREATE_CONTAINER);
    msg_set_str(&((msg_agent_create_container_t *)c->body)->container_id, "c1");
    msg_set_str(&((msg_agent_create_container_t *)c->body)->rootfs, "/a/../b");
    assert_int_equal(call_err(f, c, "rootfs"), EINVAL);
    /* an output window above the cap */
    c = msg_new(MSG_AGENT_CREATE_CONTAINER);
    msg_set_str(&((msg_agent_create_container_t *)c->body)->container_id, "c1");
    ((msg_agent_create_container_t *)c->body)->output_window = UINT64_MAX;
    assert_int_equal(call_err(f, c, "output_window"), EINVAL);
    /* resources without a cgroup hierarchy */
    c = msg_new(MSG_AGENT_CREATE_CONTAINER);
    msg_set_str(&((msg_agent_create_container_t *)c->body)->container_id, "c1");
    msg_set_str(&((msg_agent_create_container_t *)c->body)->spec,
                "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\","
                "\"user\":{\"uid\":0,\"gid\":0}},\"root\":{\"path\":\"/"
                "r\"},\"linux\":{\"resources\":{\"pids\":{\"limit\":"
                "5}}}}");
    assert_int_equal(call_err(f, c, "cgroup"), ENOTSUP);
    /* storages that are not an array of 9p mounts */
    msg_t *ms = msg_new(MSG_AGENT_MOUNT_STORAGES);
    msg_set_str(&((msg_agent_mount_storages_t *)ms->body)->storages, "{\"driver\":\"9p\"}");
    assert_int_not_equal(call_err(f, ms, NULL), 0);
    ms = msg_new(MSG_AGENT_MOUNT_STORAGES);
    msg_set_str(&((msg_agent_mount_storages_t *)ms->body)->storages,
                "[{\"driver\":\"nfs\",\"source\":\"x\",\"mount_point\":\"/m\"}]");
    assert_int_equal(call_err(f, ms, "nfs"), ENOTSUP);
    ms = msg_new(MSG_AGENT_MOUNT_STORAGES);
    msg_set_str(&((msg_agent_mount_storages_t *)ms->body)->storages,
                "[{\"driver\":\"9p\",\"source\":\"x\",\"mount_point\":\"rel\"}]");
    assert_int_equal(call_err(f, ms, NULL), EINVAL);
    /* an unknown fault */
    msg_t *fi = msg_new(MSG_FAULT_INJECT);
    msg_set_str(&((msg_fault_inject_t *)fi->body)->action, "agent-dance");
    assert_int_equal(call_err(f, fi, "agent-dance"), EINVAL);
}

static void test_agent_guest_sandbox_requests(void **state)
{
    struct fx *f = *state;
    msg_t *m = msg_new(MSG_AGENT_CREATE_SANDBOX);
    msg_agent_create_sandbox_t *b = m->body;
    msg_set_str(&b->sandbox_id, "bad/id");
    assert_int_equal(call_err(f, m, "sandbox_id"), EINVAL);
    m = msg_new(MSG_AGENT_CREATE_SANDBOX);
    msg_set_str(&((msg_agent_create_sandbox_t *)m->body)->sandbox_id, "sb-unit");
    call_ok(f, m, MSG_AGENT_OK);
    m = msg_new(MSG_AGENT_CREATE_SANDBOX);
    msg_set_str(&((msg_agent_create_sandbox_t *)m->body)->sandbox_id, "sb-unit");
    assert_int_equal(call_err(f, m, "already created"), EEXIST);
    /* destroy forgets the sandbox: it can be created again */
    call_ok(f, msg_new(MSG_AGENT_DESTROY_SANDBOX), MSG_AGENT_OK);
    m = msg_new(MSG_AGENT_CREATE_SANDBOX);
    b = m->body;
    msg_set_str(&b->sandbox_id, "sb-unit2");
    msg_set_str(&b->hostname, "bad host");
    assert_int_equal(call_err(f, m, "hostname"), EINVAL);
    if (geteuid() == 0) { /* the agent has a UTS namespace of its own */
        m = msg_new(MSG_AGENT_CREATE_SANDBOX);
        b = m->body;
        msg_set_str(&b->sandbox_id, "sb-unit2");
        msg_set_str(&b->hostname, "unit-host");
        call_ok(f, m, MSG_AGENT_OK);
    }
}

#define NEED_ROOTFS(f)                                                                             \
    do {                                                                                           \
        if (!(f)->rootfs[0])                                                                       \
            skip();                                                                                \
    } while (0)

static bool is_stdout_eof(const msg_t *e)
{
    const msg_agent_output_t *o = e->body;
    return o->stream == 1 && o->eof;
}

static void test_agent_guest_container_lifecycle(void **state)
{
    struct fx *f = *state;
    NEED_ROOTFS(f);
    call_ok(
        f, create_req(f, "c1", "[\"sh\",\"-c\",\"echo hello; read x; echo got $x; exit 3\"]", true),
        MSG_AGENT_PID);
    /* a second create of the same id */
    assert_int_equal(call_err(f, create_req(f, "c1", "[\"sh\"]", false), "exists"), EEXIST);
    call_ok(f, req_c(MSG_AGENT_START_CONTAINER, "c1"), MSG_AGENT_OK);
    assert_int_equal(call_err(f, req_c(MSG_AGENT_START_CONTAINER, "c1"), NULL), EBUSY);
    /* processes: init is one of them */
    msg_t *r = call(f, req_c(MSG_AGENT_LIST_PROCESSES, "c1"));
    assert_int_equal(r->type, MSG_AGENT_PROCESSES);
    assert_true(((msg_agent_processes_t *)r->body)->pids.n >= 1);
    msg_destroy(&r);
    /* stats without a cgroup: still answered */
    r = call(f, req_c(MSG_AGENT_STATS_CONTAINER, "c1"));
    assert_true(r->type == MSG_AGENT_STATS || r->type == MSG_BUS_ERROR);
    msg_destroy(&r);
    /* pause needs the freezer of a cgroup */
    assert_int_not_equal(call_err(f, req_c(MSG_AGENT_PAUSE_CONTAINER, "c1"), NULL), 0);
    /* a tty resize of a process without a terminal */
    msg_t *tr = req_ce(MSG_AGENT_TTY_RESIZE, "c1", "");
    ((msg_agent_tty_resize_t *)tr->body)->rows = 24;
    ((msg_agent_tty_resize_t *)tr->body)->cols = 80;
    assert_int_not_equal(call_err(f, tr, NULL), 0);
    /* stdin reaches the shell */
    msg_t *w = req_ce(MSG_AGENT_WRITE_STDIN, "c1", "");
    msg_set_bin(&((msg_agent_write_stdin_t *)w->body)->data, "abc\n", 4);
    r = call(f, w);
    assert_int_equal(r->type, MSG_AGENT_WRITTEN);
    assert_int_equal(((msg_agent_written_t *)r->body)->len, 4);
    msg_destroy(&r);
    call_ok(f, req_ce(MSG_AGENT_CLOSE_STDIN, "c1", ""), MSG_AGENT_OK);
    char *out = collect_stdout(f, "c1", "");
    assert_string_equal(out, "hello\ngot abc\n");
    free(out);
    r = call(f, req_ce(MSG_AGENT_WAIT_PROCESS, "c1", ""));
    assert_int_equal(r->type, MSG_AGENT_EXIT_STATUS);
    assert_int_equal(((msg_agent_exit_status_t *)r->body)->status, 3);
    msg_destroy(&r);
    msg_t *e = wait_event(f, MSG_AGENT_EXITED, "c1", "", NULL);
    assert_int_equal(((msg_agent_exited_t *)e->body)->status, 3);
    msg_destroy(&e);
    /* exec into a stopped container */
    msg_t *ex = req_ce(MSG_AGENT_EXEC_PROCESS, "c1", "e1");
    msg_set_str(&((msg_agent_exec_process_t *)ex->body)->process,
                "{\"args\":[\"sh\",\"-c\",\"true\"],\"cwd\":\"/\",\"user\":{\"uid\":0,\"gid\":0}}");
    assert_int_not_equal(call_err(f, ex, NULL), 0);
    call_ok(f, req_c(MSG_AGENT_REMOVE_CONTAINER, "c1"), MSG_AGENT_OK);
    assert_int_equal(call_err(f, req_c(MSG_AGENT_REMOVE_CONTAINER, "c1"), NULL), ENOENT);
}

static void test_agent_guest_exec_and_signals(void **state)
{
    struct fx *f = *state;
    NEED_ROOTFS(f);
    call_ok(f, create_req(f, "c2", "[\"sh\",\"-c\",\"echo up; exec sleep 1000\"]", false),
            MSG_AGENT_PID);
    call_ok(f, req_c(MSG_AGENT_START_CONTAINER, "c2"), MSG_AGENT_OK);
    /* exec: bad ids and processes first */
    msg_t *ex = req_ce(MSG_AGENT_EXEC_PROCESS, "c2", "bad id");
    msg_set_str(&((msg_agent_exec_process_t *)ex->body)->process, "{\"args\":[\"true\"]}");
    assert_int_equal(call_err(f, ex, NULL), EINVAL);
    ex = req_ce(MSG_AGENT_EXEC_PROCESS, "c2", "e0");
    msg_set_str(&((msg_agent_exec_process_t *)ex->body)->process, "{\"args\":[]}");
    assert_int_not_equal(call_err(f, ex, NULL), 0);
    ex = req_ce(MSG_AGENT_EXEC_PROCESS, "c2", "e1");
    msg_set_str(&((msg_agent_exec_process_t *)ex->body)->process,
                "{\"args\":[\"sh\",\"-c\",\"echo from-exec; exit 5\"],\"cwd\":\"/\","
                "\"env\":[\"PATH=/bin\"],\"user\":{\"uid\":0,\"gid\":0}}");
    call_ok(f, ex, MSG_AGENT_PID);
    /* the same exec id again */
    ex = req_ce(MSG_AGENT_EXEC_PROCESS, "c2", "e1");
    msg_set_str(&((msg_agent_exec_process_t *)ex->body)->process,
                "{\"args\":[\"true\"],\"cwd\":\"/\",\"user\":{\"uid\":0,\"gid\":0}}");
    assert_int_equal(call_err(f, ex, NULL), EEXIST);
    char *out = collect_stdout(f, "c2", "e1");
    assert_string_equal(out, "from-exec\n");
    free(out);
    msg_t *r = call(f, req_ce(MSG_AGENT_WAIT_PROCESS, "c2", "e1"));
    assert_int_equal(r->type, MSG_AGENT_EXIT_STATUS);
    assert_int_equal(((msg_agent_exit_status_t *)r->body)->status, 5);
    msg_destroy(&r);
    /* unknown exec */
    assert_int_equal(call_err(f, req_ce(MSG_AGENT_WAIT_PROCESS, "c2", "e9"), NULL), ENOENT);
    /* what a restoring host asks: every process with its state */
    r = call(f, msg_new(MSG_AGENT_LIST_CONTAINERS));
    assert_int_equal(r->type, MSG_AGENT_CONTAINERS);
    msg_agent_containers_t *lc = r->body;
    /* init, and e1 unless its wait above already released it */
    assert_true(lc->container_ids.n == 1 || lc->container_ids.n == 2);
    assert_int_equal(lc->states.n, lc->container_ids.n);
    assert_int_equal(lc->statuses.n, lc->container_ids.n);
    bool saw_init = false;
    for (size_t i = 0; i < lc->container_ids.n; i++) {
        assert_string_equal(lc->container_ids.v[i], "c2");
        if (!lc->exec_ids.v[i][0]) {
            saw_init = true;
            assert_string_equal(lc->states.v[i], "running");
            assert_true(lc->pids.v[i] > 0);
            assert_int_equal(lc->exited.v[i], 0);
        } else {
            assert_string_equal(lc->exec_ids.v[i], "e1");
            assert_string_equal(lc->states.v[i], "stopped");
            assert_int_equal(lc->exited.v[i], 1);
            assert_int_equal(lc->statuses.v[i], 5);
        }
    }
    assert_true(saw_init);
    msg_destroy(&r);
    /* a bad signal number */
    msg_t *sig = req_ce(MSG_AGENT_SIGNAL_PROCESS, "c2", "");
    ((msg_agent_signal_process_t *)sig->body)->signal = 4096;
    assert_int_equal(call_err(f, sig, NULL), EINVAL);
    /* init gets SIGKILL: 128 + 9 */
    msg_t *e = wait_event(f, MSG_AGENT_OUTPUT, "c2", "", NULL);
    msg_destroy(&e);
    sig = req_ce(MSG_AGENT_SIGNAL_PROCESS, "c2", "");
    ((msg_agent_signal_process_t *)sig->body)->signal = SIGKILL;
    ((msg_agent_signal_process_t *)sig->body)->all = true;
    call_ok(f, sig, MSG_AGENT_OK);
    e = wait_event(f, MSG_AGENT_EXITED, "c2", "", NULL);
    assert_int_equal(((msg_agent_exited_t *)e->body)->status, 128 + SIGKILL);
    msg_destroy(&e);
    e = wait_event(f, MSG_AGENT_OUTPUT, "c2", "", is_stdout_eof);
    msg_destroy(&e);
    msg_t *rm = req_c(MSG_AGENT_REMOVE_CONTAINER, "c2");
    ((msg_agent_remove_container_t *)rm->body)->timeout_ms = 5000;
    call_ok(f, rm, MSG_AGENT_OK);
}

static void test_agent_guest_remove_kills_a_running_container(void **state)
{
    struct fx *f = *state;
    NEED_ROOTFS(f);
    call_ok(f, create_req(f, "c3", "[\"sh\",\"-c\",\"exec sleep 1000\"]", true), MSG_AGENT_PID);
    call_ok(f, req_c(MSG_AGENT_START_CONTAINER, "c3"), MSG_AGENT_OK);
    msg_t *rm = req_c(MSG_AGENT_REMOVE_CONTAINER, "c3");
    ((msg_agent_remove_container_t *)rm->body)->timeout_ms = 10000;
    call_ok(f, rm, MSG_AGENT_OK);
    assert_int_equal(call_err(f, req_c(MSG_AGENT_LIST_PROCESSES, "c3"), NULL), ENOENT);
}

static void test_agent_guest_a_running_container_ends_with_the_channel(void **state)
{
    struct fx *f = *state;
    NEED_ROOTFS(f);
    /* created, not started; the teardown closes the channel and checks
     * the agent exits 0 after killing it */
    call_ok(f, create_req(f, "c4", "[\"sh\",\"-c\",\"exec sleep 1000\"]", false), MSG_AGENT_PID);
}

/* A spec with most of what runc applies: capabilities, rlimits, seccomp,
 * no_new_privs, extra groups, env, cwd, oom score, sysctl, a tmpfs,
 * masked and read-only paths; the container reports what it sees. */
static void test_agent_guest_full_spec_is_applied(void **state)
{
    struct fx *f = *state;
    NEED_ROOTFS(f);
    char p[256];
    snprintf(p, sizeof p, "%s/etc/secret", f->rootfs);
    FILE *sec = fopen(p, "w");
    assert_non_null(sec);
    fputs("s3cret\n", sec);
    assert_int_equal(fclose(sec), 0);
    const char *script =
        "grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; ulimit -n; "
        "mkdir /tmp/d 2>/dev/null && echo mkdir-ok || echo mkdir-denied; "
        "cat /etc/secret; touch /etc/x 2>/dev/null && echo etc-rw || echo etc-ro; "
        "hostname; cat /proc/sys/kernel/domainname; pwd; echo $FOO; id -G; "
        "cat /proc/self/oom_score_adj; grep ' /run ' /proc/mounts | cut -d' ' -f3; "
        "ls -l /dev/unit-null | cut -c1";
    char *spec = NULL;
    int n = asprintf(
        &spec,
        "{\"ociVersion\":\"1.0.2\",\"process\":{\"terminal\":false,\"user\":{\"uid\":0,"
        "\"gid\":0,\"additionalGids\":[5,7]},\"args\":[\"sh\",\"-c\",\"%s\"],"
        "\"env\":[\"PATH=/bin\",\"FOO=bar\"],\"cwd\":\"/tmp\",\"noNewPrivileges\":true,"
        "\"oomScoreAdj\":100,\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"hard\":200,"
        "\"soft\":100}],\"capabilities\":{\"bounding\":[\"CAP_CHOWN\",\"CAP_KILL\"],"
        "\"effective\":[\"CAP_CHOWN\",\"CAP_KILL\"],\"permitted\":[\"CAP_CHOWN\",\"CAP_KILL\"],"
        "\"inheritable\":[],\"ambient\":[\"CAP_KILL\"]}},"
        "\"root\":{\"path\":\"%s\"},\"hostname\":\"unit-full\","
        "\"mounts\":[{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"},"
        "{\"destination\":\"/run\",\"type\":\"tmpfs\",\"source\":\"tmpfs\",\"options\":"
        "[\"nosuid\",\"nodev\",\"mode=755\",\"size=1m\"]},"
        "{\"destination\":\"%s\",\"type\":\"bind\",\"source\":\"%s\",\"options\":[\"rbind\"]}],"
        "\"linux\":{\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"mount\"},{\"type\":\"uts\"},"
        "{\"type\":\"ipc\"}],\"devices\":[{\"path\":\"/dev/unit-null\",\"type\":\"c\","
        "\"major\":1,\"minor\":3,\"fileMode\":438}],\"sysctl\":{\"kernel.domainname\":\"unit."
        "example\"},"
        "\"maskedPaths\":[\"/etc/secret\",\"/proc/kcore\",\"/nonexistent\"],"
        "\"readonlyPaths\":[\"/etc\",\"/nonexistent2\"],"
        "\"seccomp\":{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"architectures\":"
        "[\"SCMP_ARCH_X86_64\",\"SCMP_ARCH_X86\",\"SCMP_ARCH_X32\"],\"syscalls\":["
        "{\"names\":[\"mkdir\",\"mkdirat\",\"no_such_syscall\"],\"action\":\"SCMP_ACT_ERRNO\","
        "\"errnoRet\":1},"
        "{\"names\":[\"personality\"],\"action\":\"SCMP_ACT_ERRNO\",\"args\":["
        "{\"index\":0,\"value\":4294967295,\"op\":\"SCMP_CMP_EQ\"},"
        "{\"index\":1,\"value\":1,\"valueTwo\":1,\"op\":\"SCMP_CMP_MASKED_EQ\"}]},"
        "{\"names\":[\"getpid\"],\"action\":\"SCMP_ACT_ALLOW\"}]}}}",
        script, f->rootfs, build_dir(), build_dir());
    assert_true(n > 0);
    msg_t *m = msg_new(MSG_AGENT_CREATE_CONTAINER);
    msg_agent_create_container_t *b = m->body;
    msg_set_str(&b->container_id, "full");
    b->spec = spec;
    call_ok(f, m, MSG_AGENT_PID);
    call_ok(f, req_c(MSG_AGENT_START_CONTAINER, "full"), MSG_AGENT_OK);
    char *out = collect_stdout(f, "full", "");
    assert_string_equal(out, "CapEff:\t0000000000000021\n"
                             "NoNewPrivs:\t1\n"
                             "100\n"
                             "mkdir-denied\n"
                             "etc-ro\n"
                             "unit-full\n"
                             "unit.example\n"
                             "/tmp\n"
                             "bar\n"
                             "0 5 7\n"
                             "100\n"
                             "tmpfs\n"
                             "c\n");
    free(out);
    msg_t *r = call(f, req_ce(MSG_AGENT_WAIT_PROCESS, "full", ""));
    assert_int_equal(r->type, MSG_AGENT_EXIT_STATUS);
    assert_int_equal(((msg_agent_exit_status_t *)r->body)->status, 0);
    msg_destroy(&r);
    call_ok(f, req_c(MSG_AGENT_REMOVE_CONTAINER, "full"), MSG_AGENT_OK);
}

/* Specs the agent refuses before it forks anything. */
static void test_agent_guest_bad_specs_are_refused(void **state)
{
    struct fx *f = *state;
    NEED_ROOTFS(f);
    /* process, extra top-level fields, extra linux fields; the text the error must name */
    static const char *const bad[][4] = {
        {",\"capabilities\":{\"bounding\":[\"CAP_FLY\"]}", "", "", "CAP_FLY"},
        {"", "",
         ",\"seccomp\":{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"architectures\":"
         "[\"SCMP_ARCH_VAX\"]}",
         "VAX"},
        {"", "",
         ",\"seccomp\":{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":"
         "[\"read\"],\"action\":\"SCMP_ACT_ERRNO\",\"args\":[{\"index\":9,\"value\":1,"
         "\"op\":\"SCMP_CMP_EQ\"}]}]}",
         "index"},
        {",\"rlimits\":[{\"type\":\"RLIMIT_BOGUS\",\"hard\":1,\"soft\":1}]", "", "",
         "RLIMIT_BOGUS"},
        {"", "", ",\"sysctl\":{\"vm.swappiness\":\"10\"}", "vm.swappiness"},
        {"", ",\"mounts\":[{\"destination\":\"/m\",\"type\":\"bind\"}]", "", "source"},
        {"",
         ",\"mounts\":[{\"destination\":\"/m\",\"type\":\"tmpfs\",\"source\":"
         "\"tmpfs\",\"options\":[\"nosuchoption\"]}]",
         "", "tmpfs on /m"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        msg_t *m = msg_new(MSG_AGENT_CREATE_CONTAINER);
        msg_agent_create_container_t *b = m->body;
        msg_set_str(&b->container_id, "bad");
        int len = asprintf(&b->spec,
                           "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"%s\"},"
                           "\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"user\":{\"uid\":0,"
                           "\"gid\":0}%s}%s,\"linux\":{\"namespaces\":[{\"type\":\"mount\"}]%s}}",
                           f->rootfs, bad[i][0], bad[i][1], bad[i][2]);
        assert_true(len > 0);
        print_message("spec %zu: %s\n", i, bad[i][3]);
        assert_int_not_equal(call_err(f, m, bad[i][3]), 0);
    }
    /* nothing was left behind by the refusals */
    assert_int_equal(call_err(f, req_c(MSG_AGENT_START_CONTAINER, "bad"), NULL), ENOENT);
}

/* A terminal container: its console is the agent's, output comes on
 * stdout, a resize is accepted. */
static void test_agent_guest_terminal_container(void **state)
{
    struct fx *f = *state;
    NEED_ROOTFS(f);
    msg_t *m = msg_new(MSG_AGENT_CREATE_CONTAINER);
    msg_agent_create_container_t *b = m->body;
    msg_set_str(&b->container_id, "tty");
    b->spec = spec_json(f, "[\"sh\",\"-c\",\"read x; [ -t 0 ] && echo tty-$x; exit 4\"]", true);
    b->stdin = true;
    call_ok(f, m, MSG_AGENT_PID);
    call_ok(f, req_c(MSG_AGENT_START_CONTAINER, "tty"), MSG_AGENT_OK);
    msg_t *tr = req_ce(MSG_AGENT_TTY_RESIZE, "tty", "");
    ((msg_agent_tty_resize_t *)tr->body)->rows = 30;
    ((msg_agent_tty_resize_t *)tr->body)->cols = 100;
    call_ok(f, tr, MSG_AGENT_OK);
    msg_t *w = req_ce(MSG_AGENT_WRITE_STDIN, "tty", "");
    msg_set_bin(&((msg_agent_write_stdin_t *)w->body)->data, "yes\n", 4);
    msg_t *r = call(f, w);
    assert_int_equal(r->type, MSG_AGENT_WRITTEN);
    msg_destroy(&r);
    /* the console echoes the input; the output ends when the shell does */
    char *out = collect_stdout(f, "tty", "");
    assert_non_null(strstr(out, "tty-yes"));
    free(out);
    msg_t *e = wait_event(f, MSG_AGENT_EXITED, "tty", "", NULL);
    assert_int_equal(((msg_agent_exited_t *)e->body)->status, 4);
    msg_destroy(&e);
    call_ok(f, req_c(MSG_AGENT_REMOVE_CONTAINER, "tty"), MSG_AGENT_OK);
}

int main(void)
{
    log_setup(2, LOG_FMT_LOGFMT, LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_agent_guest_check_and_details, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_guest_full_spec_is_applied, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_guest_bad_specs_are_refused, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_guest_terminal_container, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_guest_bad_frames_are_answered_or_dropped,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_guest_unknown_container_is_enoent, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_guest_invalid_requests_are_einval, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_guest_sandbox_requests, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_guest_container_lifecycle, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_guest_exec_and_signals, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_guest_remove_kills_a_running_container, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_guest_a_running_container_ends_with_the_channel,
                                        fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("agent_guest", tests, NULL, NULL);
}
