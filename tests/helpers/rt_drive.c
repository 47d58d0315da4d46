/* Drives a sandbox daemon through the bus, as the CLI and the shim do, and
 * prints "ok - name" / "not ok - name" per step (tests/e2e/runtime.sh).
 *
 *   rt_drive ROOT SANDBOX BUNDLE [BUNDLE2]
 *
 * The daemon is forked from here (svc_daemon_run) before any bus use; the
 * backend comes from HUSK_HYPERVISOR.  BUNDLE runs `sh -c 'echo hello; sleep 30'`
 * style processes chosen by the script through config.json. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "actors/client.h"
#include "common/log.h"
#include "services/daemon.h"

static int failures;
static bus_client_t *cli;
static char out_buf[65536];
static size_t out_len;

static void result(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s - ", ok ? "ok" : "not ok");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    if (!ok)
        failures++;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strdup(buf);
}

/* Calls the runtime; returns the status (0 ok) and keeps the error text. */
static int call(msg_t *m, msg_t **reply, char *errtext, size_t cap, int timeout_ms)
{
    err_t err = ERR_INIT;
    msg_t *r = NULL;
    int rc = bus_client_call(cli, "runtime", &m, timeout_ms, &r, &err);
    if (errtext)
        snprintf(errtext, cap, "%s", rc < 0 ? err_str(&err) : "");
    err_clear(&err);
    if (reply)
        *reply = r;
    else
        msg_destroy(&r);
    return rc < 0 ? -rc : 0;
}

static int create(const char *id, const char *bundle, char *errtext, size_t cap)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/config.json", bundle);
    char *spec = slurp(path);
    msg_t *m = msg_new(MSG_RT_CREATE);
    msg_rt_create_t *b = m->body;
    msg_set_str(&b->id, id);
    msg_set_str(&b->bundle, bundle);
    msg_set_str(&b->spec, spec ? spec : "{}");
    b->proxy_pid = (uint64_t)getpid();
    free(spec);
    return call(m, NULL, errtext, cap, 120000);
}

static int simple(msg_type_t type, const char *id, char *errtext, size_t cap)
{
    msg_t *m = msg_new(type);
    /* every rt request body starts with `id` */
    char **idp = (char **)m->body;
    msg_set_str(idp, id);
    return call(m, NULL, errtext, cap, 30000);
}

/* Collects output and events until rt.exited for (id, exec_id) or timeout;
 * returns the exit status or -1. */
static long long collect(const char *id, const char *exec_id, int timeout_ms)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long el = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (el >= timeout_ms)
            return -1;
        msg_t *m = NULL;
        err_t err = ERR_INIT;
        if (bus_client_recv(cli, (int)(timeout_ms - el), &m, &err) < 0) {
            err_clear(&err);
            continue;
        }
        msg_agent_output_t *o = MSG_BODY(m, AGENT_OUTPUT, agent_output);
        if (o) { /* keep every container's output: the checks grep it */
            size_t n = o->data.len;
            if (out_len + n < sizeof out_buf) {
                memcpy(out_buf + out_len, o->data.data, n);
                out_len += n;
                out_buf[out_len] = 0;
            }
            msg_t *ack = msg_new(MSG_AGENT_OUTPUT_ACK);
            msg_agent_output_ack_t *a = ack->body;
            msg_set_str(&a->container_id, o->container_id);
            msg_set_str(&a->exec_id, o->exec_id);
            a->stream = o->stream;
            a->bytes = n;
            bus_client_send(cli, "agent", &ack, &err);
            err_clear(&err);
        }
        msg_rt_exited_t *x = MSG_BODY(m, RT_EXITED, rt_exited);
        if (x && !strcmp(x->id, id) && !strcmp(x->exec_id, exec_id)) {
            long long st = x->status;
            msg_destroy(&m);
            return st;
        }
        msg_destroy(&m);
    }
}

static void subscribe(const char *prefix)
{
    msg_t *m = msg_new(MSG_BUS_SUBSCRIBE), *r = NULL;
    msg_set_str(&((msg_bus_subscribe_t *)m->body)->prefix, prefix);
    err_t err = ERR_INIT;
    bus_client_call(cli, "bus", &m, 2000, &r, &err);
    err_clear(&err);
    msg_destroy(&r);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s ROOT SANDBOX BUNDLE [BUNDLE2]\n", argv[0]);
        return 2;
    }
    const char *root = argv[1], *sid = argv[2], *bundle = argv[3];
    const char *bundle2 = argc > 4 ? argv[4] : NULL;
    const char *bundle_badhook = argc > 5 ? argv[5] : NULL;
    char exe[PATH_MAX];
    const char *bin = getenv("HUSK_BIN_DIR");
    snprintf(exe, sizeof exe, "%s/husk", bin ? bin : ".");

    pid_t daemon = fork();
    if (daemon == 0) {
        char logp[PATH_MAX];
        snprintf(logp, sizeof logp, "%s/%s.daemon.log", root, sid);
        int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0)
            dup2(fd, 2);
        log_setup(2, LOG_FMT_LOGFMT, LOG_DEBUG);
        svc_daemon_opts_t o = {.root = root, .sandbox_id = sid, .exe = exe};
        err_t err = ERR_INIT;
        int rc = svc_daemon_run(&o, &err);
        if (rc < 0)
            fprintf(stderr, "daemon: %s\n", err_str(&err));
        _exit(rc < 0 ? 1 : 0);
    }
    char ep[PATH_MAX + 16], sock[PATH_MAX];
    snprintf(sock, sizeof sock, "%s/%s/bus.sock", root, sid);
    snprintf(ep, sizeof ep, "ipc://%s", sock);
    struct stat st;
    for (int i = 0; i < 500 && stat(sock, &st) < 0; i++)
        usleep(10000);
    err_t err = ERR_INIT;
    if (bus_client_new(ep, "rt-drive", &cli, &err) < 0) {
        result(false, "connect to the daemon: %s", err_str(&err));
        kill(daemon, SIGKILL);
        return 1;
    }
    subscribe("agent.output");
    subscribe("rt.exited");
    char text[4096];
    struct timespec t0, t1;

    /* 1: create + start + output + exit code */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = create("c1", bundle, text, sizeof text);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    result(rc == 0, "create c1 (sandbox boot included: %.0f ms) %s",
           (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6, text);
    rc = create("c1", bundle, text, sizeof text);
    result(rc == EEXIST && strstr(text, "already exists"), "duplicate create refused: %s", text);
    rc = simple(MSG_RT_START, "c1", text, sizeof text);
    result(rc == 0, "start c1 %s", text);
    rc = simple(MSG_RT_START, "c1", text, sizeof text);
    result(rc != 0 && strstr(text, "cannot start"), "second start refused: %s", text);

    /* exec while it runs */
    msg_t *m = msg_new(MSG_RT_EXEC);
    msg_rt_exec_t *e = m->body;
    msg_set_str(&e->id, "c1");
    msg_set_str(&e->exec_id, "x1");
    msg_set_str(&e->process,
                "{\"args\":[\"/bin/sh\",\"-c\",\"echo from-exec; exit 3\"],\"cwd\":\"/\","
                "\"env\":[\"PATH=/bin\"],\"user\":{\"uid\":0,\"gid\":0}}");
    rc = call(m, NULL, text, sizeof text, 30000);
    result(rc == 0, "exec x1 %s", text);
    long long xs = collect("c1", "x1", 20000);
    result(xs == 3, "exec exit status 3 (got %lld)", xs);
    result(strstr(out_buf, "from-exec") != NULL, "exec output relayed");
    if (!strstr(out_buf, "from-exec"))
        printf("# output seen: %s\n", out_buf);

    /* pause / resume */
    rc = simple(MSG_RT_PAUSE, "c1", text, sizeof text);
    result(rc == 0, "pause c1 %s", text);
    rc = simple(MSG_RT_PAUSE, "c1", text, sizeof text);
    result(rc != 0 && strstr(text, "not running"), "pause of paused refused: %s", text);
    rc = simple(MSG_RT_RESUME, "c1", text, sizeof text);
    result(rc == 0, "resume c1 %s", text);

    /* ps */
    msg_t *reply = NULL;
    m = msg_new(MSG_RT_PS);
    msg_set_str(&((msg_rt_ps_t *)m->body)->id, "c1");
    rc = call(m, &reply, text, sizeof text, 30000);
    msg_rt_processes_t *ps = reply ? MSG_BODY(reply, RT_PROCESSES, rt_processes) : NULL;
    result(rc == 0 && ps && ps->pids.n >= 1, "ps lists processes (%zu) %s", ps ? ps->pids.n : 0,
           text);
    msg_destroy(&reply);

    /* second container in the same sandbox */
    if (bundle2) {
        rc = create("c2", bundle2, text, sizeof text);
        result(rc == 0, "create c2 in the same sandbox %s", text);
        rc = simple(MSG_RT_START, "c2", text, sizeof text);
        result(rc == 0, "start c2 %s", text);
        long long s2 = collect("c2", "", 20000);
        result(s2 == 7, "c2 exits with 7 (got %lld)", s2);
        rc = simple(MSG_RT_DELETE, "c2", text, sizeof text);
        result(rc == 0, "delete c2 %s", text);
    }

    /* a failing createRuntime hook fails the create and leaves nothing */
    if (bundle_badhook) {
        rc = create("c3", bundle_badhook, text, sizeof text);
        result(rc != 0 && strstr(text, "hook"), "failing createRuntime hook fails create: %s",
               text);
        rc = simple(MSG_RT_START, "c3", text, sizeof text);
        result(rc == ENOENT, "the container of a failed hook is gone: %s", text);
    }

    /* kill: the init dies by SIGKILL -> 137 */
    rc = simple(MSG_RT_DELETE, "c1", text, sizeof text);
    result(rc != 0 && strstr(text, "not stopped"), "delete of running refused: %s", text);
    m = msg_new(MSG_RT_KILL);
    msg_set_str(&((msg_rt_kill_t *)m->body)->id, "c1");
    ((msg_rt_kill_t *)m->body)->signal = SIGKILL;
    rc = call(m, NULL, text, sizeof text, 30000);
    result(rc == 0, "kill -9 c1 %s", text);
    long long s1 = collect("c1", "", 20000);
    result(s1 == 137, "c1 status 137 after SIGKILL (got %lld)", s1);
    result(strstr(out_buf, "hello") != NULL, "init output relayed");
    if (!strstr(out_buf, "hello"))
        printf("# output seen: %s\n", out_buf);
    rc = simple(MSG_RT_KILL, "c1", text, sizeof text);
    result(rc != 0 && strstr(text, "not running"), "kill of stopped refused: %s", text);

    /* delete of the last container ends the sandbox and the daemon */
    rc = simple(MSG_RT_DELETE, "c1", text, sizeof text);
    result(rc == 0, "delete c1 %s", text);
    bus_client_destroy(&cli);
    int status = 0;
    pid_t w = 0;
    for (int i = 0; i < 1000 && (w = waitpid(daemon, &status, WNOHANG)) == 0; i++)
        usleep(10000);
    if (w == 0) {
        kill(daemon, SIGKILL);
        waitpid(daemon, &status, 0);
    }
    result(w == daemon && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "daemon exits after the last delete");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", root, sid);
    result(stat(dir, &st) < 0, "sandbox directory removed");
    return failures ? 1 : 0;
}
