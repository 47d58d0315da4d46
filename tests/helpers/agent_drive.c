/* agent_drive: end-to-end run of the agent protocol on this host.
 *
 *   agent_drive --agent PATH --bundle DIR [--log-level LEVEL]
 *   agent_drive --connect UNIX_SOCKET --rootfs GUEST_PATH --share-tag TAG
 *               --bundle DIR [--timeout-ms N] [--t0-ns REALTIME_NS]
 *
 * Local mode (the first form): starts husk-agent as PID 1 of fresh mount,
 * pid, ipc, uts and net namespaces over a socketpair (--channel-fd 3), a
 * bus, the agent actor and a client actor, then drives the agent through
 * the bus: check, guest details, sandbox, containers, exec, signals,
 * stdin, flow control, pause/resume, stats, processes, errors, removal.
 * BUNDLE/config.json is the spec template (process.args replaced per
 * container, root = BUNDLE/rootfs).
 *
 * QEMU mode (--connect): connects to the unix socket of the guest's agent.0
 * chardev, waits for the agent to answer a health check (boot to ready),
 * mounts the 9p share TAG through create_container's storages and runs
 * `echo` in a container whose root is GUEST_PATH.
 *
 * Prints "ok - name" / "not ok - name" lines and "# figure: ..." lines;
 * exits 0 when every check passed, 1 otherwise, 77 when a prerequisite is
 * missing. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent_actor.h"
#include "bus/bus.h"
#include "common/log.h"
#include "oci/spec.h"
#include "tests/helpers/agent_client.h"

static int failures;
static aclient_t C;
static oci_spec_t *tmpl;
static char rootfs[4096];

#define CHECK(name, cond, ...)                                                                     \
    do {                                                                                           \
        if (cond) {                                                                                \
            printf("ok - %s\n", name);                                                             \
        } else {                                                                                   \
            printf("not ok - %s\n", name);                                                         \
            printf("#   ");                                                                        \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
        fflush(stdout);                                                                            \
    } while (0)

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char *txt(const msg_t *r)
{
    return !r ? "no answer" : r->status_text ? r->status_text : "";
}

static msg_t *call(msg_t *m, int timeout_ms)
{
    return aclient_call(&C, "agent", m, timeout_ms);
}

/* The spec template with process.args = args and terminal set. */
static char *spec_json(const char *const *args, bool terminal)
{
    oci_process_t *p = tmpl->process;
    char **old = p->args;
    size_t oldn = p->n_args;
    bool oldt = p->terminal;
    size_t n = 0;
    while (args[n])
        n++;
    p->args = (char **)args;
    p->n_args = n;
    p->terminal = terminal;
    char *root = tmpl->root_path;
    tmpl->root_path = rootfs;
    char *out = NULL;
    err_t err = ERR_INIT;
    if (oci_spec_to_json(tmpl, &out, NULL, &err) < 0) {
        fprintf(stderr, "agent_drive: spec: %s\n", err_str(&err));
        exit(1);
    }
    tmpl->root_path = root;
    p->args = old;
    p->n_args = oldn;
    p->terminal = oldt;
    return out;
}

static msg_t *create(const char *cid, const char *const *args, bool in, uint64_t window,
                     const char *storages)
{
    msg_t *m = msg_new(MSG_AGENT_CREATE_CONTAINER);
    msg_agent_create_container_t *b = m->body;
    msg_set_str(&b->container_id, cid);
    b->spec = spec_json(args, false);
    msg_set_str(&b->rootfs, rootfs);
    msg_set_str(&b->storages, storages ? storages : "[]");
    b->stdin = in;
    b->output_window = window;
    return call(m, 30000);
}

static msg_t *simple(msg_type_t t, const char *cid)
{
    msg_t *m = msg_new(t);
    /* every container request starts with container_id */
    msg_set_str((char **)m->body, cid);
    return call(m, 30000);
}

static msg_t *exec_proc(const char *cid, const char *eid, const char *args_json, bool in, bool tty,
                        uint64_t window)
{
    msg_t *m = msg_new(MSG_AGENT_EXEC_PROCESS);
    msg_agent_exec_process_t *b = m->body;
    msg_set_str(&b->container_id, cid);
    msg_set_str(&b->exec_id, eid);
    char proc[2048];
    snprintf(proc, sizeof proc,
             "{\"terminal\":%s,\"user\":{\"uid\":0,\"gid\":0},\"args\":%s,"
             "\"env\":[\"PATH=/bin:/usr/bin\",\"TERM=xterm\"],\"cwd\":\"/\"}",
             tty ? "true" : "false", args_json);
    msg_set_str(&b->process, proc);
    b->stdin = in;
    b->output_window = window;
    return call(m, 30000);
}

static msg_t *wait_proc(const char *cid, const char *eid, int timeout_ms)
{
    msg_t *m = msg_new(MSG_AGENT_WAIT_PROCESS);
    msg_set_str(&((msg_agent_wait_process_t *)m->body)->container_id, cid);
    msg_set_str(&((msg_agent_wait_process_t *)m->body)->exec_id, eid);
    return call(m, timeout_ms);
}

static msg_t *signal_proc(const char *cid, const char *eid, int sig, bool all)
{
    msg_t *m = msg_new(MSG_AGENT_SIGNAL_PROCESS);
    msg_agent_signal_process_t *b = m->body;
    msg_set_str(&b->container_id, cid);
    msg_set_str(&b->exec_id, eid);
    b->signal = (uint64_t)sig;
    b->all = all;
    return call(m, 10000);
}

static int64_t exit_of(msg_t *r)
{
    msg_agent_exit_status_t *b = r ? MSG_BODY(r, AGENT_EXIT_STATUS, agent_exit_status) : NULL;
    return b ? b->status : -1000;
}

static bool is_exited(const msg_t *m, const void *arg)
{
    msg_agent_exited_t *b = m->body;
    return !strcmp(b->container_id, arg) && !b->exec_id[0];
}

static void run_local(void)
{
    char out[65536];
    msg_t *r;

    /* health check round trip */
    enum { N = 300 };
    double lat[N];
    int okc = 0;
    for (int i = 0; i < N; i++) {
        double t0 = now_us();
        r = call(msg_new(MSG_AGENT_CHECK), 5000);
        lat[i] = now_us() - t0;
        if (r && r->status == 0 && r->type == MSG_AGENT_HEALTH)
            okc++;
        msg_destroy(&r);
    }
    qsort(lat, N, sizeof lat[0], cmp_d);
    CHECK("agent.check answered SERVING", okc == N, "%d of %d", okc, N);
    printf("# figure: agent round trip (agent.check via bus+actor+channel): median %.0f us, "
           "p90 %.0f us, min %.0f us (n=%d)\n",
           lat[N / 2], lat[N * 9 / 10], lat[0], N);

    r = call(msg_new(MSG_AGENT_GUEST_DETAILS), 5000);
    msg_agent_details_t *d = r ? MSG_BODY(r, AGENT_DETAILS, agent_details) : NULL;
    CHECK("agent.guest_details reports versions", d && d->agent_version[0] && d->kernel_release[0],
          "%s", txt(r));
    bool cg2 = d && d->cgroup2;
    if (d)
        printf("# guest: agent %s, kernel %s, init=%d, cgroup2=%d\n", d->agent_version,
               d->kernel_release, d->init, d->cgroup2);
    msg_destroy(&r);

    msg_t *m = msg_new(MSG_AGENT_CREATE_SANDBOX);
    msg_set_str(&((msg_agent_create_sandbox_t *)m->body)->sandbox_id, "sb1");
    msg_set_str(&((msg_agent_create_sandbox_t *)m->body)->hostname, "husky-sb");
    msg_set_str(&((msg_agent_create_sandbox_t *)m->body)->storages, "[]");
    r = call(m, 5000);
    CHECK("create_sandbox", r && r->status == 0 && r->type == MSG_AGENT_OK, "%s", txt(r));
    msg_destroy(&r);

    /* ---- c1: echo hello ---- */
    const char *echo[] = {"sh", "-c", "echo hello; echo oops >&2; exit 0", NULL};
    r = create("c1", echo, false, 0, NULL);
    msg_agent_pid_t *pid = r ? MSG_BODY(r, AGENT_PID, agent_pid) : NULL;
    CHECK("create_container c1", pid && pid->pid > 0, "%s", txt(r));
    msg_destroy(&r);
    r = simple(MSG_AGENT_START_CONTAINER, "c1");
    CHECK("start_container c1", r && r->status == 0, "%s", txt(r));
    msg_destroy(&r);
    aclient_wait_output(&C, "c1", "", 1, out, sizeof out, 10000);
    CHECK("stdout of echo collected", !strcmp(out, "hello\n"), "got '%s'", out);
    aclient_wait_output(&C, "c1", "", 2, out, sizeof out, 10000);
    CHECK("stderr collected separately", !strcmp(out, "oops\n"), "got '%s'", out);
    r = wait_proc("c1", "", 10000);
    CHECK("wait_process c1 -> 0", exit_of(r) == 0, "%s status %lld", txt(r), (long long)exit_of(r));
    msg_destroy(&r);
    r = aclient_wait_event(&C, MSG_AGENT_EXITED, is_exited, "c1", 5000);
    CHECK("agent.exited event for c1", r != NULL, "none");
    msg_destroy(&r);
    r = wait_proc("c1", "", 5000);
    CHECK("wait_process after exit answers at once", exit_of(r) == 0, "%s", txt(r));
    msg_destroy(&r);
    r = simple(MSG_AGENT_REMOVE_CONTAINER, "c1");
    CHECK("remove_container c1", r && r->status == 0, "%s", txt(r));
    msg_destroy(&r);

    /* ---- c2: a long-running container ---- */
    const char *sleeper[] = {"sleep", "1000", NULL};
    r = create("c2", sleeper, false, 0, NULL);
    CHECK("create_container c2", r && r->status == 0, "%s", txt(r));
    msg_destroy(&r);
    r = simple(MSG_AGENT_START_CONTAINER, "c2");
    CHECK("start_container c2", r && r->status == 0, "%s", txt(r));
    msg_destroy(&r);

    r = exec_proc("c2", "e1", "[\"sh\",\"-c\",\"exit 3\"]", false, false, 0);
    CHECK("exec_process sh -c 'exit 3'", r && r->status == 0, "%s", txt(r));
    msg_destroy(&r);
    r = wait_proc("c2", "e1", 10000);
    CHECK("exec exit status 3", exit_of(r) == 3, "%s status %lld", txt(r), (long long)exit_of(r));
    msg_destroy(&r);

    r = exec_proc("c2", "e2", "[\"sh\",\"-c\",\"hostname; echo from-exec\"]", false, false, 0);
    msg_destroy(&r);
    aclient_wait_output(&C, "c2", "e2", 1, out, sizeof out, 10000);
    CHECK("exec output collected", strstr(out, "from-exec\n") != NULL, "got '%s'", out);
    r = wait_proc("c2", "e2", 10000);
    msg_destroy(&r);

    /* exec-to-exit latency of /bin/true */
    enum { NX = 20 };
    double xl[NX];
    int xok = 0;
    for (int i = 0; i < NX; i++) {
        char eid[32];
        snprintf(eid, sizeof eid, "t%d", i);
        double t0 = now_us();
        msg_t *a = exec_proc("c2", eid, "[\"/bin/true\"]", false, false, 0);
        msg_t *b = wait_proc("c2", eid, 10000);
        xl[i] = now_us() - t0;
        if (a && a->status == 0 && exit_of(b) == 0)
            xok++;
        msg_destroy(&a);
        msg_destroy(&b);
    }
    qsort(xl, NX, sizeof xl[0], cmp_d);
    CHECK("exec /bin/true x20 all exit 0", xok == NX, "%d of %d", xok, NX);
    printf("# figure: exec-to-exit of /bin/true (exec_process + wait_process): median %.2f ms, "
           "min %.2f ms, max %.2f ms (n=%d)\n",
           xl[NX / 2] / 1000, xl[0] / 1000, xl[NX - 1] / 1000, NX);

    /* signal: sleep killed with SIGKILL -> 137 */
    r = exec_proc("c2", "sl", "[\"sleep\",\"1000\"]", false, false, 0);
    CHECK("exec sleep", r && r->status == 0, "%s", txt(r));
    msg_destroy(&r);
    struct aclient_job *wj = aclient_begin(&C, "agent", ({
        msg_t *w = msg_new(MSG_AGENT_WAIT_PROCESS);
        msg_agent_wait_process_t *wb = w->body;
        msg_set_str(&wb->container_id, "c2");
        msg_set_str(&wb->exec_id, "sl");
        w;
    }),
                                           20000);
    usleep(100000);
    r = signal_proc("c2", "sl", SIGKILL, false);
    CHECK("signal_process SIGKILL", r && r->status == 0, "%s", txt(r));
    msg_destroy(&r);
    r = aclient_finish(&C, wj);
    CHECK("wait answered at exit with 137", exit_of(r) == 137, "%s status %lld", txt(r),
          (long long)exit_of(r));
    msg_destroy(&r);

    /* stdin */
    r = exec_proc("c2", "cat", "[\"cat\"]", true, false, 0);
    CHECK("exec cat with stdin", r && r->status == 0, "%s", txt(r));
    msg_destroy(&r);
    m = msg_new(MSG_AGENT_WRITE_STDIN);
    msg_set_str(&((msg_agent_write_stdin_t *)m->body)->container_id, "c2");
    msg_set_str(&((msg_agent_write_stdin_t *)m->body)->exec_id, "cat");
    msg_set_bin(&((msg_agent_write_stdin_t *)m->body)->data, "ping\n", 5);
    r = call(m, 5000);
    msg_agent_written_t *wr = r ? MSG_BODY(r, AGENT_WRITTEN, agent_written) : NULL;
    CHECK("write_stdin answers with the length", wr && wr->len == 5, "%s", txt(r));
    msg_destroy(&r);
    m = msg_new(MSG_AGENT_CLOSE_STDIN);
    msg_set_str(&((msg_agent_close_stdin_t *)m->body)->container_id, "c2");
    msg_set_str(&((msg_agent_close_stdin_t *)m->body)->exec_id, "cat");
    r = call(m, 5000);
    msg_destroy(&r);
    aclient_wait_output(&C, "c2", "cat", 1, out, sizeof out, 10000);
    CHECK("cat echoes stdin and ends at close_stdin", !strcmp(out, "ping\n"), "got '%s'", out);
    r = wait_proc("c2", "cat", 10000);
    CHECK("cat exits 0", exit_of(r) == 0, "%s", txt(r));
    msg_destroy(&r);

    /* terminal */
    r = exec_proc("c2", "tty", "[\"sh\",\"-c\",\"tty; stty size\"]", false, true, 0);
    CHECK("exec with a terminal", r && r->status == 0, "%s", txt(r));
    msg_destroy(&r);
    aclient_wait_output(&C, "c2", "tty", 1, out, sizeof out, 10000);
    CHECK("terminal process sees a pty", strstr(out, "/dev/pts/") != NULL, "got '%s'", out);
    r = wait_proc("c2", "tty", 10000);
    msg_destroy(&r);

    /* flow control: 2 MB through a 64 KiB window, acked by the client */
    double t0 = now_us();
    r = exec_proc("c2", "big", "[\"sh\",\"-c\",\"yes | head -c 2000000\"]", false, false, 65536);
    msg_destroy(&r);
    static char big[2100000];
    size_t n = aclient_wait_output(&C, "c2", "big", 1, big, sizeof big, 30000);
    double dt = (now_us() - t0) / 1e6;
    CHECK("2 MB of output through a 64 KiB credit window", n == 2000000, "got %zu bytes", n);
    printf("# figure: output throughput with a 64 KiB window: %.1f MB/s\n", n / dt / 1e6);
    r = wait_proc("c2", "big", 10000);
    msg_destroy(&r);

    /* processes and stats */
    r = simple(MSG_AGENT_LIST_PROCESSES, "c2");
    msg_agent_processes_t *ps = r ? MSG_BODY(r, AGENT_PROCESSES, agent_processes) : NULL;
    CHECK("list_processes lists the container init", ps && ps->pids.n >= 1, "%s", txt(r));
    msg_destroy(&r);
    if (cg2) {
        r = simple(MSG_AGENT_STATS_CONTAINER, "c2");
        msg_agent_stats_t *st = r ? MSG_BODY(r, AGENT_STATS, agent_stats) : NULL;
        char present[256] = "";
        for (size_t i = 0; st && i < st->present.n; i++) {
            strcat(present, st->present.v[i]);
            strcat(present, " ");
        }
        CHECK("stats_container reads cgroup v2", st && st->pids_current >= 1 && st->present.n > 0,
              "%s", txt(r));
        if (st)
            printf("# stats: present [%s] cpu_usage_usec=%llu pids=%llu memory=%llu\n", present,
                   (unsigned long long)st->cpu_usage_usec, (unsigned long long)st->pids_current,
                   (unsigned long long)st->memory_current);
        msg_destroy(&r);

        r = simple(MSG_AGENT_PAUSE_CONTAINER, "c2");
        CHECK("pause_container (cgroup v2 freezer)", r && r->status == 0, "%s", txt(r));
        msg_destroy(&r);
        r = simple(MSG_AGENT_STATS_CONTAINER, "c2");
        st = r ? MSG_BODY(r, AGENT_STATS, agent_stats) : NULL;
        CHECK("paused container reports frozen", st && st->frozen, "%s", txt(r));
        msg_destroy(&r);
        r = exec_proc("c2", "nope", "[\"true\"]", false, false, 0);
        CHECK("exec into a paused container is refused", r && r->status == EBUSY, "%s", txt(r));
        msg_destroy(&r);
        r = simple(MSG_AGENT_RESUME_CONTAINER, "c2");
        CHECK("resume_container", r && r->status == 0, "%s", txt(r));
        msg_destroy(&r);
        r = simple(MSG_AGENT_STATS_CONTAINER, "c2");
        st = r ? MSG_BODY(r, AGENT_STATS, agent_stats) : NULL;
        CHECK("resumed container is thawed", st && !st->frozen, "%s", txt(r));
        msg_destroy(&r);
    } else {
        printf("ok - pause/resume/stats # SKIP no cgroup v2 hierarchy for the agent\n");
    }

    /* errors */
    const char *bad[] = {"true", NULL};
    r = create("../evil", bad, false, 0, NULL);
    CHECK("invalid container id refused", r && r->status == EINVAL, "%s", txt(r));
    msg_destroy(&r);
    r = simple(MSG_AGENT_START_CONTAINER, "ghost");
    CHECK("unknown container is ENOENT", r && r->status == ENOENT, "%s", txt(r));
    msg_destroy(&r);
    m = msg_new(MSG_AGENT_CREATE_CONTAINER);
    msg_set_str(&((msg_agent_create_container_t *)m->body)->container_id, "c3");
    msg_set_str(&((msg_agent_create_container_t *)m->body)->spec, "{\"ociVersion\":5}");
    msg_set_str(&((msg_agent_create_container_t *)m->body)->storages, "[]");
    r = call(m, 5000);
    CHECK("bad spec refused with the field named", r && r->status && strstr(txt(r), "ociVersion"),
          "%s", txt(r));
    msg_destroy(&r);
    m = msg_new(MSG_AGENT_LIST_ROUTES);
    r = call(m, 5000);
    CHECK("network: list_routes answers with the routes",
          r && r->status == 0 && MSG_BODY(r, AGENT_ROUTES, agent_routes), "%s", txt(r));
    msg_destroy(&r);

    /* remove a running container: kills it */
    m = msg_new(MSG_AGENT_REMOVE_CONTAINER);
    msg_set_str(&((msg_agent_remove_container_t *)m->body)->container_id, "c2");
    r = call(m, 20000);
    CHECK("remove_container of a running container", r && r->status == 0, "%s", txt(r));
    msg_destroy(&r);
    r = simple(MSG_AGENT_LIST_PROCESSES, "c2");
    CHECK("removed container is gone", r && r->status == ENOENT, "%s", txt(r));
    msg_destroy(&r);

    r = call(msg_new(MSG_AGENT_DESTROY_SANDBOX), 5000);
    CHECK("destroy_sandbox", r && r->status == 0, "%s", txt(r));
    msg_destroy(&r);
}

/* QEMU mode: boot-to-ready and echo in a container on the 9p share. */
static void run_qemu(const char *tag, int timeout_ms, double t_start)
{
    msg_t *r = NULL;
    double t0 = t_start;
    /* the first check waits in the socket until the guest opens its port */
    for (;;) {
        r = call(msg_new(MSG_AGENT_CHECK), timeout_ms);
        if ((r && r->status == 0) || now_us() - t0 > timeout_ms * 1000.0)
            break;
        msg_destroy(&r);
        usleep(20000);
    }
    double ready = (now_us() - t0) / 1e6;
    CHECK("guest agent answers agent.check", r && r->status == 0, "%s", txt(r));
    msg_destroy(&r);
    printf("# figure: boot to agent-ready (wall, from qemu start): %.3f s\n", ready);
    r = call(msg_new(MSG_AGENT_GUEST_DETAILS), 10000);
    msg_agent_details_t *d = r ? MSG_BODY(r, AGENT_DETAILS, agent_details) : NULL;
    CHECK("guest details from PID 1", d && d->init, "%s", txt(r));
    if (d)
        printf("# figure: guest uptime at guest_details: %.3f s (kernel %s)\n",
               d->uptime_ms / 1000.0, d->kernel_release);
    msg_destroy(&r);
    double t1 = now_us();
    for (int i = 0; i < 50; i++) {
        r = call(msg_new(MSG_AGENT_CHECK), 10000);
        msg_destroy(&r);
    }
    printf("# figure: agent round trip over virtio-serial (TCG): mean %.0f us (n=50)\n",
           (now_us() - t1) / 50);
    char storages[512];
    snprintf(storages, sizeof storages,
             "[{\"driver\":\"9p\",\"source\":\"%s\",\"mount_point\":\"/run/husk/shared\","
             "\"options\":[\"trans=virtio\",\"version=9p2000.L\",\"msize=262144\"]}]",
             tag);
    const char *echo[] = {"sh", "-c", "echo hello from the guest; uname -r", NULL};
    r = create("vm1", echo, false, 0, storages);
    CHECK("create_container on the 9p share", r && r->status == 0, "%s", txt(r));
    msg_destroy(&r);
    r = simple(MSG_AGENT_START_CONTAINER, "vm1");
    CHECK("start_container", r && r->status == 0, "%s", txt(r));
    msg_destroy(&r);
    char out[4096];
    aclient_wait_output(&C, "vm1", "", 1, out, sizeof out, 30000);
    CHECK("echo in a container in the VM", strstr(out, "hello from the guest\n") == out, "got '%s'",
          out);
    r = wait_proc("vm1", "", 30000);
    CHECK("exit status 0", exit_of(r) == 0, "%s", txt(r));
    msg_destroy(&r);
    r = simple(MSG_AGENT_REMOVE_CONTAINER, "vm1");
    CHECK("remove_container", r && r->status == 0, "%s", txt(r));
    msg_destroy(&r);
}

int main(int argc, char **argv)
{
    const char *agent = NULL, *bundle = NULL, *connect_to = NULL, *tag = "share";
    const char *grootfs = NULL, *level = "warn";
    int timeout_ms = 120000;
    unsigned long long t0_ns = 0; /* CLOCK_REALTIME of the VM start, for boot-to-ready */
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--agent"))
            agent = argv[i + 1];
        else if (!strcmp(argv[i], "--bundle"))
            bundle = argv[i + 1];
        else if (!strcmp(argv[i], "--connect"))
            connect_to = argv[i + 1];
        else if (!strcmp(argv[i], "--share-tag"))
            tag = argv[i + 1];
        else if (!strcmp(argv[i], "--rootfs"))
            grootfs = argv[i + 1];
        else if (!strcmp(argv[i], "--timeout-ms"))
            timeout_ms = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--log-level"))
            level = argv[i + 1];
        else if (!strcmp(argv[i], "--t0-ns"))
            t0_ns = strtoull(argv[i + 1], NULL, 10);
    }
    if (!bundle || (!agent && !connect_to) || (connect_to && !grootfs)) {
        fprintf(stderr, "usage: agent_drive --agent PATH --bundle DIR\n"
                        "       agent_drive --connect SOCK --rootfs GUEST_PATH --share-tag TAG "
                        "--bundle DIR\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int lv = log_level_parse(level);
    log_setup(2, LOG_FMT_LOGFMT, lv < 0 ? LOG_WARN : (enum log_level)lv);
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", bundle);
    err_t err = ERR_INIT;
    if (oci_spec_load(path, &tmpl, &err) < 0) {
        fprintf(stderr, "agent_drive: %s\n", err_str(&err));
        return 2;
    }
    double t_start = now_us();
    if (t0_ns) { /* move the start back to when the caller started the VM */
        struct timespec rt;
        clock_gettime(CLOCK_REALTIME, &rt);
        double ago = ((double)rt.tv_sec * 1e9 + rt.tv_nsec - (double)t0_ns) / 1e3;
        if (ago > 0)
            t_start -= ago;
    }
    int chan = -1;
    pid_t child = -1;
    if (connect_to) {
        snprintf(rootfs, sizeof rootfs, "%s", grootfs);
        chan = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", connect_to);
        int ok = -1;
        for (int i = 0; i < 500 && ok < 0; i++) {
            ok = connect(chan, (struct sockaddr *)&sa, sizeof sa);
            if (ok < 0)
                usleep(10000);
        }
        if (ok < 0) {
            printf("not ok - connect to %s: %s\n", connect_to, strerror(errno));
            return 1;
        }
    } else {
        if (!realpath(bundle, path)) {
            fprintf(stderr, "agent_drive: %s: %s\n", bundle, strerror(errno));
            return 2;
        }
        snprintf(rootfs, sizeof rootfs, "%.4000s/rootfs", path);
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
            return 1;
        char state[4200];
        snprintf(state, sizeof state, "%.4000s/agent-state", path);
        /* before any thread exists: the child execs at once */
        child = (pid_t)syscall(SYS_clone,
                               CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
                                   CLONE_NEWNET | SIGCHLD,
                               NULL, NULL, NULL, NULL);
        if (child < 0) {
            printf("not ok - clone the agent into new namespaces: %s\n", strerror(errno));
            return 1;
        }
        if (child == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (dup2(sv[1], 3) < 0)
                _exit(127);
            execl(agent, "husk-agent", "--channel-fd", "3", "--root", state, "--log-level", level,
                  (char *)NULL);
            _exit(127);
        }
        close(sv[1]);
        chan = sv[0];
    }
    bus_t *bus = NULL;
    bus_opts_t bo = {.name = "drive", .supervise_ms = -1};
    if (bus_new(&bo, &bus, &err) < 0) {
        printf("not ok - bus: %s\n", err_str(&err));
        return 1;
    }
    actor_opts_t ao = {.zctx = bus_context(bus), .endpoint = bus_endpoint(bus)};
    agent_actor_t *aa = NULL;
    agent_actor_opts_t o = {.fd = chan, .request_timeout_ms = timeout_ms};
    if (agent_actor_start(&ao, &o, &aa, &err) < 0 ||
        aclient_start(&C, &ao, "drive", "agent", true, &err) < 0) {
        printf("not ok - actors: %s\n", err_str(&err));
        return 1;
    }
    if (connect_to)
        run_qemu(tag, timeout_ms, t_start);
    else
        run_local();
    aclient_stop(&C);
    agent_actor_stop(&aa, 5000); /* closes the channel: the agent exits */
    bus_destroy(&bus);
    if (child > 0) {
        int st = 0;
        for (int i = 0; i < 500; i++) {
            if (waitpid(child, &st, WNOHANG) == child)
                break;
            usleep(10000);
            if (i == 499) {
                kill(child, SIGKILL);
                waitpid(child, &st, 0);
            }
        }
        CHECK("husk-agent exits 0 when the channel closes", WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "status 0x%x", st);
    }
    oci_spec_destroy(&tmpl);
    return failures ? 1 : 0;
}
