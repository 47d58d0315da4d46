/* tools/trace: husk-trace's commands through trace_main, each in a child
 * process (a fatal error exits it): this binary re-executed as
 * "husk-trace", with its stdout and stderr in files: usage errors, recordings made here (show,
 * filters, JSON, stats, corrupt files), a live bus (watch, record, stats, inject, sandbox and
 * container lookup) and replays of a real runtime actor (the same
 * sequence, divergences). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_files.h"
#include "common/clock.h"
#include <msgpack.h>
#include <msgpack/fbuffer.h>

#include "actors/client.h"
#include "runtimes/runtime_actor.h"
#include "bus/bus.h"
#include "common/config.h"
#include "common/log.h"
#include "messages/msg.h"
#include "tools/trace.h"

#define DEADLINE_MS 20000

struct fx {
    char dir[64]; /* scratch: recordings, outputs, the runtime root */
};

struct run {
    pid_t pid;
    int rc; /* exit status, or -1 when killed */
    char *out, *err;
    char out_path[128], err_path[128];
};

/* Starts husk-trace ARGS... (NULL-terminated) in a child. */
static void trace_spawn(struct fx *f, struct run *r, ...)
{
    static int seq;
    char *argv[16] = {"husk-trace"};
    int argc = 1;
    va_list ap;
    va_start(ap, r);
    for (char *a; (a = va_arg(ap, char *)) && argc < 15;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    memset(r, 0, sizeof *r);
    seq++;
    snprintf(r->out_path, sizeof r->out_path, "%s/out.%d", f->dir, seq);
    snprintf(r->err_path, sizeof r->err_path, "%s/err.%d", f->dir, seq);
    fflush(NULL);
    pid_t parent = getpid();
    r->pid = fork();
    assert_true(r->pid >= 0);
    if (r->pid == 0) {
        static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            signal(sigs[i], SIG_DFL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(99);
        int o = open(r->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int e = open(r->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
            _exit(98);
        /* a fresh process (this binary as husk-trace, see main): none of
         * the parent's threads, locks or bus state comes along */
        execv("/proc/self/exe", argv);
        _exit(97);
    }
}

/* Waits for the child (killed after the deadline) and reads its output. */
static void trace_wait(struct run *r)
{
    int64_t dl = clock_mono_ms() + DEADLINE_MS;
    int status = 0;
    pid_t w;
    while ((w = waitpid(r->pid, &status, WNOHANG)) == 0 && clock_mono_ms() < dl)
        usleep(2000);
    if (w == 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, &status, 0);
    }
    r->rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r->out = test_slurp(r->out_path);
    r->err = test_slurp(r->err_path);
    unlink(r->out_path);
    unlink(r->err_path);
}

static bool trace_exited(struct run *r)
{
    int status;
    pid_t w = waitpid(r->pid, &status, WNOHANG);
    if (w == r->pid) {
        r->rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        r->out = test_slurp(r->out_path);
        r->err = test_slurp(r->err_path);
        unlink(r->out_path);
        unlink(r->err_path);
        return true;
    }
    return false;
}

#define TRACE(f, r, ...)                                                                           \
    do {                                                                                           \
        trace_spawn(f, r, __VA_ARGS__, NULL);                                                      \
        trace_wait(r);                                                                             \
    } while (0)

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

static void expect(const struct run *r, int rc, const char *out_has, const char *err_has)
{
    if (r->rc != rc || (out_has && !strstr(r->out, out_has)) ||
        (err_has && !strstr(r->err, err_has)))
        fail_msg("exit %d (want %d)\nstdout: %s\nstderr: %s\nwanted stdout with '%s', stderr "
                 "with '%s'",
                 r->rc, rc, r->out, r->err, out_has ? out_has : "", err_has ? err_has : "");
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    strcpy(f->dir, "/tmp/husk-test-trace-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    assert_int_equal(rc, 0);
    return 0;
}

/* ---- recordings written here ------------------------------------------------------- */

struct recw {
    FILE *f;
    msgpack_packer pk;
};

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void rec_open(struct recw *w, const char *path, const char *sandbox)
{
    w->f = fopen(path, "wb");
    assert_non_null(w->f);
    msgpack_packer_init(&w->pk, w->f, msgpack_fbuffer_write);
    msgpack_pack_map(&w->pk, sandbox ? 3 : 1);
    pk_str(&w->pk, "husk-trace");
    msgpack_pack_uint32(&w->pk, 1);
    if (sandbox) {
        pk_str(&w->pk, "sandbox");
        pk_str(&w->pk, sandbox);
        pk_str(&w->pk, "extra"); /* an unknown header key is skipped */
        msgpack_pack_array(&w->pk, 2);
        msgpack_pack_int(&w->pk, 1);
        msgpack_pack_nil(&w->pk);
    }
}

static void rec_raw(struct recw *w, uint64_t ts, const char *type, const char *from, const char *to,
                    const char *note, const void *env, size_t len)
{
    msgpack_pack_array(&w->pk, 6);
    msgpack_pack_uint64(&w->pk, ts);
    pk_str(&w->pk, type);
    pk_str(&w->pk, from);
    pk_str(&w->pk, to);
    pk_str(&w->pk, note);
    msgpack_pack_bin(&w->pk, len);
    msgpack_pack_bin_body(&w->pk, env, len);
}

/* Records m (destroyed) as sent from -> to at ts. */
static void rec_msg(struct recw *w, uint64_t ts, msg_t *m, const char *from, const char *to,
                    const char *note)
{
    snprintf(m->from, sizeof m->from, "%s", from);
    snprintf(m->to, sizeof m->to, "%s", to);
    m->ts_ns = ts;
    uint8_t *buf = NULL;
    size_t len = 0;
    err_t err = ERR_INIT;
    assert_int_equal(msg_encode(m, &buf, &len, &err), 0);
    rec_raw(w, ts, msg_type_name(m->type), from, to, note, buf, len);
    free(buf);
    msg_destroy(&m);
}

static void rec_close(struct recw *w)
{
    assert_int_equal(fclose(w->f), 0);
}

static msg_t *idmsg(msg_type_t t, const char *id)
{
    msg_t *m = msg_new(t);
    msg_set_str((char **)m->body, id); /* every rt request starts with its id */
    return m;
}

static msg_t *reply_err(uint64_t re, int code, const char *text)
{
    msg_t *m = msg_new(MSG_BUS_ERROR);
    m->reply_to = re;
    msg_set_status(m, code, text);
    return m;
}

#define T0 1700000000000000000ull

/* A small session: a request and its failure, a request and its answer,
 * an event, an undecodable envelope. */
static void write_session(const char *path)
{
    struct recw w;
    rec_open(&w, path, "sb1");
    msg_t *m = idmsg(MSG_RT_START, "c1");
    m->id = 5;
    rec_msg(&w, T0, m, "cli", "runtime", "");
    rec_msg(&w, T0 + 2500000, reply_err(5, ENOENT, "no container c1"), "runtime", "cli", "");
    m = idmsg(MSG_RT_PS, "c2");
    m->id = 6;
    rec_msg(&w, T0 + 3000000, m, "cli", "runtime", "");
    msg_t *p = msg_new(MSG_RT_PROCESSES);
    p->reply_to = 6;
    msg_set_str(&((msg_rt_processes_t *)p->body)->id, "c2");
    msg_u64v_push(&((msg_rt_processes_t *)p->body)->pids, 42);
    rec_msg(&w, T0 + 4000000, p, "runtime", "cli", "delayed");
    msg_t *e = msg_new(MSG_AGENT_EXITED);
    msg_set_str(&((msg_agent_exited_t *)e->body)->container_id, "c2");
    msg_set_str(&((msg_agent_exited_t *)e->body)->exec_id, "");
    ((msg_agent_exited_t *)e->body)->status = 3;
    e->id = 9;
    rec_msg(&w, T0 + 5000000, e, "agent", "*", "");
    rec_raw(&w, T0 + 6000000, "rt.kill", "cli", "runtime", "corrupted", "\xc1\xc1\xc1", 3);
    rec_close(&w);
}

/* ---- tests: usage and files ------------------------------------------------------------ */

static void test_trace_usage_errors(void **state)
{
    struct fx *f = *state;
    struct run r;
    TRACE(f, &r, "--help");
    expect(&r, 0, "usage:", NULL);
    run_free(&r);
    trace_spawn(f, &r, NULL);
    trace_wait(&r);
    expect(&r, 2, NULL, "usage:");
    run_free(&r);
    TRACE(f, &r, "--bogus");
    expect(&r, 2, NULL, "usage:");
    run_free(&r);
    TRACE(f, &r, "frobnicate", "x");
    expect(&r, 2, NULL, "usage:");
    run_free(&r);
    TRACE(f, &r, "watch");
    expect(&r, 2, NULL, "usage:");
    run_free(&r);
    TRACE(f, &r, "show", "a", "--bogus");
    expect(&r, 2, NULL, "usage:");
    run_free(&r);
    TRACE(f, &r, "show", "a", "--help");
    expect(&r, 0, "usage:", NULL);
    run_free(&r);
    TRACE(f, &r, "inject", "x");
    expect(&r, 2, NULL, "usage:");
    run_free(&r);
}

static void test_trace_bad_files(void **state)
{
    struct fx *f = *state;
    struct run r;
    char p[128];
    snprintf(p, sizeof p, "%s/missing.bin", f->dir);
    TRACE(f, &r, "show", p);
    expect(&r, 1, NULL, "husk-trace: open");
    assert_non_null(strstr(r.err, "No such file"));
    run_free(&r);

    snprintf(p, sizeof p, "%s/text.bin", f->dir);
    FILE *t = fopen(p, "w");
    fputs("hello, not msgpack\n", t);
    fclose(t);
    TRACE(f, &r, "show", p);
    expect(&r, 1, NULL, "not a husk-trace recording");
    run_free(&r);

    /* a record that is not an array of 6 */
    snprintf(p, sizeof p, "%s/bad-record.bin", f->dir);
    struct recw w;
    rec_open(&w, p, "sb");
    msgpack_pack_array(&w.pk, 2);
    msgpack_pack_int(&w.pk, 1);
    msgpack_pack_int(&w.pk, 2);
    rec_close(&w);
    TRACE(f, &r, "show", p);
    expect(&r, 1, NULL, "corrupt record at byte");
    run_free(&r);

    /* a record cut in the middle of its strings */
    snprintf(p, sizeof p, "%s/cut.bin", f->dir);
    rec_open(&w, p, "sb");
    msgpack_pack_array(&w.pk, 6);
    msgpack_pack_uint64(&w.pk, 1);
    pk_str(&w.pk, "rt.kill");
    msgpack_pack_int(&w.pk, 7); /* not a string */
    rec_close(&w);
    TRACE(f, &r, "show", p);
    expect(&r, 1, NULL, "corrupt record");
    run_free(&r);

    /* a record whose envelope is not bin */
    snprintf(p, sizeof p, "%s/nobin.bin", f->dir);
    rec_open(&w, p, "sb");
    msgpack_pack_array(&w.pk, 6);
    msgpack_pack_uint64(&w.pk, 1);
    for (int i = 0; i < 4; i++)
        pk_str(&w.pk, "x");
    pk_str(&w.pk, "not bin");
    rec_close(&w);
    TRACE(f, &r, "show", p);
    expect(&r, 1, NULL, "corrupt record");
    run_free(&r);

    /* a header key that is not a string */
    snprintf(p, sizeof p, "%s/badhdr.bin", f->dir);
    t = fopen(p, "wb");
    msgpack_packer pk;
    msgpack_packer_init(&pk, t, msgpack_fbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 2);
    fclose(t);
    TRACE(f, &r, "show", p);
    expect(&r, 1, NULL, "corrupt record");
    run_free(&r);
}

static void test_trace_show_prints_every_record(void **state)
{
    struct fx *f = *state;
    char p[128];
    snprintf(p, sizeof p, "%s/session.bin", f->dir);
    write_session(p);
    struct run r;
    TRACE(f, &r, "show", p);
    expect(&r, 0, "cli -> runtime rt.start id=5 {\"id\":\"c1\"}", NULL);
    assert_int_equal(count_lines(r.out), 6);
    /* the reply: matched to its request, 2.5 ms later, with its status */
    assert_non_null(strstr(r.out, "runtime -> cli bus.error id=0 re=5 +2500.0us status=2 "
                                  "\"no container c1\""));
    assert_non_null(strstr(r.out, "runtime -> cli rt.processes id=0 re=6 +1000.0us"));
    assert_non_null(strstr(r.out, "[delayed]"));
    assert_non_null(strstr(r.out, "agent -> * agent.exited id=9"));
    assert_non_null(strstr(r.out, "[corrupted] [undecodable:"));
    run_free(&r);

    /* filters */
    TRACE(f, &r, "show", p, "--actor", "agent");
    expect(&r, 0, "agent.exited", NULL);
    assert_int_equal(count_lines(r.out), 1);
    run_free(&r);
    TRACE(f, &r, "show", p, "--type", "rt.*");
    expect(&r, 0, "rt.start", NULL);
    assert_int_equal(count_lines(r.out), 4);
    run_free(&r);
    TRACE(f, &r, "show", p, "--container", "c2");
    expect(&r, 0, "rt.ps", NULL);
    assert_int_equal(count_lines(r.out), 3); /* rt.ps, rt.processes, agent.exited */
    run_free(&r);
    TRACE(f, &r, "show", p, "--count", "2");
    expect(&r, 0, "rt.start", NULL);
    assert_int_equal(count_lines(r.out), 2);
    run_free(&r);

    /* JSON: one object a line */
    TRACE(f, &r, "show", p, "--json", "--type", "bus.error");
    expect(&r, 0, "\"type\":\"bus.error\"", NULL);
    assert_int_equal(count_lines(r.out), 1);
    assert_non_null(strstr(r.out, "\"latency_us\":2500.0"));
    assert_non_null(strstr(r.out, "\"status\":2"));
    assert_non_null(strstr(r.out, "\"re\":5"));
    run_free(&r);
    TRACE(f, &r, "show", p, "--json", "--actor", "cli", "--count", "10");
    expect(&r, 0, "\"note\":\"delayed\"", NULL);
    assert_int_equal(count_lines(r.out), 5);
    run_free(&r);
}

static void test_trace_stats_of_a_file(void **state)
{
    struct fx *f = *state;
    char p[128];
    snprintf(p, sizeof p, "%s/session.bin", f->dir);
    write_session(p);
    struct run r;
    TRACE(f, &r, "stats", p);
    expect(&r, 0, "TYPE", NULL);
    /* a line per request type: count, replies, errors, latencies */
    char want[256];
    snprintf(want, sizeof want, "%-28s %8d %8d %7d %10.1f", "rt.start", 1, 1, 1, 2500.0);
    if (!strstr(r.out, want))
        fail_msg("no '%s' in\n%s", want, r.out);
    snprintf(want, sizeof want, "%-28s %8d %8d %7d %10.1f", "rt.ps", 1, 1, 0, 1000.0);
    if (!strstr(r.out, want))
        fail_msg("no '%s' in\n%s", want, r.out);
    snprintf(want, sizeof want, "%-28s %8d %8d %7d %10s", "agent.exited", 1, 0, 0, "-");
    if (!strstr(r.out, want))
        fail_msg("no '%s' in\n%s", want, r.out);
    run_free(&r);
}

/* ---- a live bus ------------------------------------------------------------------------- */

struct live {
    char root[128], sbdir[192];
    bus_t *bus;
    bus_client_t *a, *b;
};

static void live_start(struct fx *f, struct live *l)
{
    snprintf(l->root, sizeof l->root, "%s/root", f->dir);
    snprintf(l->sbdir, sizeof l->sbdir, "%s/sb-live", l->root);
    assert_int_equal(mkdir(l->root, 0700), 0);
    err_t err = ERR_INIT;
    bus_opts_t bo = {.dir = l->sbdir, .name = "sb-live", .supervise_ms = -1};
    assert_int_equal(bus_new(&bo, &l->bus, &err), 0);
    assert_int_equal(bus_client_new(bus_ipc_endpoint(l->bus), "alpha", &l->a, &err), 0);
    assert_int_equal(bus_client_new(bus_ipc_endpoint(l->bus), "beta", &l->b, &err), 0);
    /* a container of the sandbox: a directory inside the sandbox's */
    char p[256];
    snprintf(p, sizeof p, "%s/ctr-live", l->sbdir);
    assert_int_equal(mkdir(p, 0700), 0);
}

static void live_stop(struct live *l)
{
    bus_client_destroy(&l->a);
    bus_client_destroy(&l->b);
    bus_destroy(&l->bus);
}

/* Sends rt.kill alpha -> beta (beta drains) until the child exits. */
static void feed_until_exit(struct live *l, struct run *r)
{
    int64_t dl = clock_mono_ms() + DEADLINE_MS;
    err_t err = ERR_INIT;
    while (!trace_exited(r)) {
        if (clock_mono_ms() > dl) {
            kill(r->pid, SIGKILL);
            trace_wait(r);
            fail_msg("husk-trace did not end: %s %s", r->out, r->err);
        }
        msg_t *m = idmsg(MSG_RT_KILL, "ctr-live");
        assert_int_equal(bus_client_send(l->a, "beta", &m, &err), 0);
        msg_t *in = NULL;
        if (bus_client_recv(l->b, 20, &in, &err) == 0)
            msg_destroy(&in);
        err_clear(&err);
    }
}

static void test_trace_watch_record_stats_live(void **state)
{
    struct fx *f = *state;
    struct live l;
    live_start(f, &l);
    struct run r;
    /* by sandbox id under --root */
    trace_spawn(f, &r, "--root", l.root, "watch", "sb-live", "--count", "3", NULL);
    feed_until_exit(&l, &r);
    expect(&r, 0, "alpha -> beta rt.kill", NULL);
    assert_int_equal(count_lines(r.out), 3);
    run_free(&r);
    /* by container id, JSON, filtered */
    trace_spawn(f, &r, "watch", "ctr-live", "--root", l.root, "--json", "--container", "ctr-live",
                "--count", "2", NULL);
    feed_until_exit(&l, &r);
    expect(&r, 0, "\"from\":\"alpha\"", NULL);
    assert_int_equal(count_lines(r.out), 2);
    run_free(&r);
    /* a recording by tap path, then shown */
    char tap[256], rec[128];
    snprintf(tap, sizeof tap, "%s/tap.sock", l.sbdir);
    snprintf(rec, sizeof rec, "%s/live.bin", f->dir);
    trace_spawn(f, &r, "record", tap, rec, "--count", "4", NULL);
    feed_until_exit(&l, &r);
    expect(&r, 0, NULL, "recorded 4 messages");
    run_free(&r);
    TRACE(f, &r, "show", rec, "--type", "rt.kill");
    expect(&r, 0, "alpha -> beta rt.kill", NULL);
    assert_int_equal(count_lines(r.out), 4);
    run_free(&r);
    /* stats of the live bus, by directory */
    trace_spawn(f, &r, "stats", l.sbdir, "--count", "3", NULL);
    feed_until_exit(&l, &r);
    expect(&r, 0, "rt.kill", NULL);
    run_free(&r);
    /* a time limit ends a quiet watch */
    TRACE(f, &r, "watch", l.sbdir, "--seconds", "0.3");
    expect(&r, 0, NULL, NULL);
    run_free(&r);
    live_stop(&l);
}

static void test_trace_lookup_errors(void **state)
{
    struct fx *f = *state;
    struct run r;
    TRACE(f, &r, "--root", f->dir, "watch", "no-such-sandbox");
    expect(&r, 1, NULL, "no sandbox or container 'no-such-sandbox'");
    run_free(&r);
    TRACE(f, &r, "watch", f->dir);
    expect(&r, 1, NULL, "no tap socket");
    run_free(&r);
}

static void test_trace_inject_live(void **state)
{
    struct fx *f = *state;
    struct live l;
    live_start(f, &l);
    struct run r;
    TRACE(f, &r, "--root", l.root, "inject", "sb-live",
          "drop type=rt.kill count=2;delay:5 to=beta");
    expect(&r, 0, "drop type=rt.kill from=* to=* count=2\thits=0", NULL);
    assert_int_equal(count_lines(r.out), 2);
    run_free(&r);
    /* the rule acts: two kills vanish, the third arrives */
    err_t err = ERR_INIT;
    for (int i = 0; i < 3; i++) {
        msg_t *m = idmsg(MSG_RT_KILL, "x");
        assert_int_equal(bus_client_send(l.a, "beta", &m, &err), 0);
    }
    msg_t *in = NULL;
    assert_int_equal(bus_client_recv(l.b, 5000, &in, &err), 0);
    msg_destroy(&in);
    TRACE(f, &r, "inject", l.sbdir, "--list");
    expect(&r, 0, "count=2\thits=2", NULL);
    run_free(&r);
    TRACE(f, &r, "inject", l.sbdir, "--clear");
    expect(&r, 0, NULL, NULL);
    assert_string_equal(r.out, "");
    run_free(&r);
    TRACE(f, &r, "inject", l.sbdir, "explode type=*");
    expect(&r, 1, NULL, "inject:");
    run_free(&r);
    live_stop(&l);
}

/* ---- replay ------------------------------------------------------------------------- */

/* How many records of a recording have value at index idx (1 type,
 * 2 from, 3 to); 0 while the file is missing or partly written. */
static int count_records(const char *path, int idx, const char *value)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(f);
    fclose(m);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int count = 0;
    bool header = true;
    while (msgpack_unpack_next(&u, buf, len, &off) == MSGPACK_UNPACK_SUCCESS) {
        if (header) {
            header = false;
            continue;
        }
        msgpack_object o = u.data;
        if (o.type != MSGPACK_OBJECT_ARRAY || o.via.array.size != 6)
            continue;
        msgpack_object v = o.via.array.ptr[idx];
        if (v.type == MSGPACK_OBJECT_STR && v.via.str.size == strlen(value) &&
            !memcmp(v.via.str.ptr, value, v.via.str.size))
            count++;
    }
    msgpack_unpacked_destroy(&u);
    free(buf);
    return count;
}

/* A real runtime actor on a bus of sandbox "sb-rp", recorded by husk-trace
 * while a client asks it things it answers alone. */
static void record_runtime_session(struct fx *f, const char *rec)
{
    char root[128], dir[192];
    snprintf(root, sizeof root, "%s/rt-root", f->dir);
    snprintf(dir, sizeof dir, "%s/sb-rp", root);
    assert_int_equal(mkdir(root, 0700), 0);
    err_t err = ERR_INIT;
    bus_t *bus = NULL;
    bus_opts_t bo = {.dir = dir, .name = "sb-rp", .supervise_ms = -1};
    assert_int_equal(bus_new(&bo, &bus, &err), 0);
    cfg_t *cfg = cfg_new_defaults(NULL);
    int done_fd = eventfd(0, EFD_CLOEXEC);
    actor_opts_t ao = {.zctx = bus_context(bus), .endpoint = bus_endpoint(bus), .sandbox = "sb-rp"};
    rt_actor_opts_t ro = {.cfg = cfg, .root = root, .sandbox_id = "sb-rp", .done_fd = done_fd};
    actor_t *rt = NULL;
    assert_int_equal(rt_actor_start(&ao, &ro, &rt, &err), 0);
    bus_client_t *c = NULL;
    assert_int_equal(bus_client_new(bus_ipc_endpoint(bus), "cli", &c, &err), 0);

    /* warm-up traffic between two other clients shows when the recorder
     * is attached; the replay ignores it (neither input nor output of the
     * runtime) */
    bus_client_t *w1 = NULL, *w2 = NULL;
    assert_int_equal(bus_client_new(bus_ipc_endpoint(bus), "warm", &w1, &err), 0);
    assert_int_equal(bus_client_new(bus_ipc_endpoint(bus), "sink", &w2, &err), 0);
    struct run r;
    trace_spawn(f, &r, "--root", root, "record", "sb-rp", rec, NULL);
    int64_t dl = clock_mono_ms() + DEADLINE_MS;
    while (count_records(rec, 2, "warm") == 0) {
        msg_t *m = idmsg(MSG_RT_KILL, "warmup"), *in = NULL;
        assert_int_equal(bus_client_send(w1, "sink", &m, &err), 0);
        if (bus_client_recv(w2, 20, &in, &err) == 0)
            msg_destroy(&in);
        err_clear(&err);
        assert_true(clock_mono_ms() < dl);
    }
    /* the session proper: two requests the runtime answers alone */
    msg_t *m = idmsg(MSG_RT_PS, "nope"), *rep = NULL;
    assert_true(bus_client_call(c, "runtime", &m, 5000, &rep, &err) < 0);
    err_clear(&err);
    m = idmsg(MSG_RT_DELETE, "nope");
    assert_true(bus_client_call(c, "runtime", &m, 5000, &rep, &err) < 0);
    err_clear(&err);
    /* both answers are in the recording before it stops */
    while (count_records(rec, 2, "runtime") < 2) {
        assert_true(clock_mono_ms() < dl);
        usleep(5000);
    }
    bus_client_destroy(&w1);
    bus_client_destroy(&w2);
    kill(r.pid, SIGTERM);
    trace_wait(&r);
    expect(&r, 0, NULL, "recorded");
    run_free(&r);
    bus_client_destroy(&c);
    actor_stop(&rt, 5000);
    bus_destroy(&bus);
    cfg_destroy(&cfg);
    close(done_fd);
}

static void test_trace_replay_of_a_real_session_is_the_same(void **state)
{
    struct fx *f = *state;
    char rec[128];
    snprintf(rec, sizeof rec, "%s/rt.bin", f->dir);
    record_runtime_session(f, rec);
    struct run r;
    TRACE(f, &r, "show", rec);
    expect(&r, 0, "cli -> runtime rt.ps", NULL);
    run_free(&r);
    TRACE(f, &r, "replay", rec);
    expect(&r, 0, "outputs of the runtime: the same sequence", NULL);
    run_free(&r);
}

static void test_trace_replay_reports_divergence(void **state)
{
    struct fx *f = *state;
    char p[128];
    struct recw w;
    struct run r;

    /* the recorded answer differs from the runtime's */
    snprintf(p, sizeof p, "%s/diverge.bin", f->dir);
    rec_open(&w, p, "sb-div");
    msg_t *m = idmsg(MSG_RT_PS, "nope");
    m->id = 1;
    rec_msg(&w, T0, m, "cli", "runtime", "");
    rec_msg(&w, T0 + 1000, reply_err(1, EPERM, "made up"), "runtime", "cli", "");
    rec_close(&w);
    TRACE(f, &r, "replay", p);
    expect(&r, 1, "DIVERGENCE at record 1 (output 1 of the runtime):", NULL);
    assert_non_null(strstr(r.out, "recorded: bus.error -> cli status=1 \"made up\""));
    assert_non_null(strstr(r.out, "replayed: bus.error -> cli"));
    run_free(&r);

    /* the runtime answers what the recording left unanswered */
    snprintf(p, sizeof p, "%s/more.bin", f->dir);
    rec_open(&w, p, "sb-div");
    m = idmsg(MSG_RT_PS, "nope");
    m->id = 1;
    rec_msg(&w, T0, m, "cli", "runtime", "");
    rec_close(&w);
    TRACE(f, &r, "replay", p);
    expect(&r, 1, "DIVERGENCE after the recording's end", NULL);
    run_free(&r);

    /* an input that answers a request the runtime never made; an
     * undecodable input is reported and skipped first */
    snprintf(p, sizeof p, "%s/orphan.bin", f->dir);
    rec_open(&w, p, "sb-div");
    rec_raw(&w, T0, "rt.kill", "cli", "runtime", "", "\xc1", 1);
    msg_t *ans = msg_new(MSG_AGENT_OK);
    ans->reply_to = 77;
    rec_msg(&w, T0 + 1, ans, "agent", "runtime", "");
    rec_close(&w);
    TRACE(f, &r, "replay", p);
    expect(&r, 1, "answers a request the runtime did not make (re=77)", NULL);
    assert_non_null(strstr(r.out, "record 0 (rt.kill from cli) is undecodable"));
    run_free(&r);

    /* no sandbox anywhere */
    snprintf(p, sizeof p, "%s/nosb.bin", f->dir);
    rec_open(&w, p, NULL);
    rec_close(&w);
    TRACE(f, &r, "replay", p);
    expect(&r, 1, NULL, "names no sandbox");
    run_free(&r);
}

int main(int argc, char **argv)
{
    if (argc > 0 && !strcmp(argv[0], "husk-trace"))
        return trace_main(argc, argv);
    log_setup(2, LOG_FMT_LOGFMT, LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_trace_usage_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_trace_bad_files, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_trace_show_prints_every_record, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_trace_stats_of_a_file, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_trace_watch_record_stats_live, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_trace_lookup_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_trace_inject_live, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_trace_replay_of_a_real_session_is_the_same, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_trace_replay_reports_divergence, fx_setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
