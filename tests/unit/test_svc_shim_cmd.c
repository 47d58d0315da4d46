/* services/shim_cmd: the binary protocol of containerd-shim-husk-v2 as
 * containerd 1.6 drives it.  The built shim binary runs in forked children
 * with the flags and environment containerd passes (cwd = bundle for
 * `start`), against a private state: socket directory
 * (HUSK_SHIM_SOCKET_DIR), runtime root and config (HUSK_CONFIG, local
 * backend) in a temp dir.  This process is a child subreaper, so the shim
 * daemon that `start` spawns (setsid, its parent exits) is reparented here
 * and reaped; teardown kills whatever names the temp dir. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_files.h"
#include "common/clock.h"
#include <event2/event.h>

#include "persist/store.h"
#include "services/proto/containerd/task/v2/shim.pb-c.h"
#include "services/shim.h"
#include "services/ttrpc.h"
#include "services/ttrpc_task.h"

#define DEADLINE_MS 20000
#define GRPC        "/run/containerd/containerd.sock"

struct fx {
    char dir[64];
    char root[96], sockdir[96], conf[96], b1[96], b2[96], empty[96];
    char ns[48], id1[32], id2[32];
    char shim[4096];
    char *out, *err;
};

static void put_file(const char *dir, const char *name, const char *s)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(s, f);
    assert_int_equal(fclose(f), 0);
}

/* Runs the shim with args (NULL-terminated) in cwd; stdout and stderr
 * land in f->out and f->err (binary-safe length in *out_len); returns the
 * exit code (-1 when killed). */
static int shim(struct fx *f, const char *cwd, size_t *out_len, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = f->shim;
    va_list ap;
    va_start(ap, out_len);
    for (char *a; (a = va_arg(ap, char *)) && argc < 31;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    char op[128], ep[128];
    snprintf(op, sizeof op, "%s/out", f->dir);
    snprintf(ep, sizeof ep, "%s/err", f->dir);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int o = open(op, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int e = open(ep, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int n = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (o < 0 || e < 0 || n < 0 || dup2(n, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0 ||
            chdir(cwd) < 0)
            _exit(126);
        execv(f->shim, argv);
        _exit(127);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    free(f->out);
    free(f->err);
    f->out = test_slurp(op);
    f->err = test_slurp(ep);
    if (out_len) {
        struct stat sb;
        *out_len = stat(op, &sb) == 0 ? (size_t)sb.st_size : 0;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void write_bundle(const char *dir, const char *annotations)
{
    assert_int_equal(mkdir(dir, 0755), 0);
    char p[160];
    snprintf(p, sizeof p, "%s/rootfs", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"ociVersion\":\"1.0.2\",\"process\":{\"user\":{\"uid\":0,\"gid\":0},"
             "\"args\":[\"sh\"],\"cwd\":\"/\"},"
             "\"root\":{\"path\":\"rootfs\"},\"annotations\":{%s}}",
             annotations);
    put_file(dir, "config.json", spec);
    /* the shim daemon logs to the bundle's `log` (a fifo containerd
     * reads; a plain file here) */
    put_file(dir, "log", "");
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/husk-test-shimcmd-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->root, sizeof f->root, "%s/root", f->dir);
    snprintf(f->sockdir, sizeof f->sockdir, "%s/s", f->dir);
    snprintf(f->conf, sizeof f->conf, "%s/husk.conf", f->dir);
    snprintf(f->b1, sizeof f->b1, "%s/b1", f->dir);
    snprintf(f->b2, sizeof f->b2, "%s/b2", f->dir);
    snprintf(f->empty, sizeof f->empty, "%s/empty", f->dir);
    snprintf(f->ns, sizeof f->ns, "husk-unit-%d", (int)getpid());
    snprintf(f->id1, sizeof f->id1, "shimcmd%da", (int)getpid());
    snprintf(f->id2, sizeof f->id2, "shimcmd%db", (int)getpid());
    ssize_t n = readlink("/proc/self/exe", f->shim, sizeof f->shim - 64);
    assert_true(n > 0);
    f->shim[n] = 0;
    *strrchr(f->shim, '/') = 0; /* <B>/tests */
    *strrchr(f->shim, '/') = 0; /* <B> */
    strcat(f->shim, "/bin/containerd-shim-husk-v2");
    if (access(f->shim, X_OK) < 0)
        fail_msg("%s: %s (built by `make all`)", f->shim, strerror(errno));

    char conf[256];
    snprintf(conf, sizeof conf, "[runtime]\nroot = %s\nhypervisor = local\n", f->root);
    put_file(f->dir, "husk.conf", conf);
    /* the first container is its pod's sandbox; the second joins it */
    write_bundle(f->b1, "");
    char ann[256];
    snprintf(ann, sizeof ann,
             "\"io.kubernetes.cri.container-type\":\"container\","
             "\"io.kubernetes.cri.sandbox-id\":\"%s\"",
             f->id1);
    write_bundle(f->b2, ann);
    assert_int_equal(mkdir(f->empty, 0755), 0);

    setenv("HUSK_CONFIG", f->conf, 1);
    setenv("HUSK_SHIM_SOCKET_DIR", f->sockdir, 1);
    char ttrpc[128];
    snprintf(ttrpc, sizeof ttrpc, "%s/containerd.sock.ttrpc", f->dir);
    setenv("TTRPC_ADDRESS", ttrpc, 1); /* nobody there: events are dropped */
    setenv("NAMESPACE", f->ns, 1);
    unsetenv("HUSK_HYPERVISOR");
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    *state = f;
    return 0;
}

/* Our parent pid of process pid (field 4 of /proc/<pid>/stat), or -1. */
static pid_t ppid_of(pid_t pid)
{
    char p[64], buf[512];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    const char *rp = strrchr(buf, ')'); /* the command name may hold spaces */
    int ppid = -1;
    return rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 ? (pid_t)ppid : -1;
}

/* Kills every process whose command line names this test's directory or
 * that is our child (a shim daemon a failed test left: reparented here,
 * maybe before it exec'd), then reaps our children. */
static void kill_leftovers(struct fx *f)
{
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0 || pid == getpid())
            continue;
        char p[64], buf[4096];
        snprintf(p, sizeof p, "/proc/%d/cmdline", (int)pid);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        for (ssize_t i = 0; i < n; i++)
            if (!buf[i])
                buf[i] = ' ';
        buf[n > 0 ? n : 0] = 0;
        if (strstr(buf, f->dir) || ppid_of(pid) == getpid()) {
            kill(pid, SIGKILL);
            print_message("killed pid %d left behind: %s\n", (int)pid, buf);
        }
    }
    closedir(d);
    int64_t end = clock_mono_ms() + DEADLINE_MS;
    for (;;) {
        pid_t r = waitpid(-1, NULL, WNOHANG);
        if (r < 0 || (r == 0 && clock_mono_ms() > end))
            break;
        if (r == 0)
            usleep(20 * 1000);
    }
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    if (!f)
        return 0;
    kill_leftovers(f);
    prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f->out);
    free(f->err);
    free(f);
    unsetenv("HUSK_CONFIG");
    unsetenv("HUSK_SHIM_SOCKET_DIR");
    unsetenv("TTRPC_ADDRESS");
    unsetenv("NAMESPACE");
    assert_int_equal(rc, 0);
    return 0;
}

/* Task.Connect, as containerd asks a shim for its pid: the daemon
 * answers once it serves (start returns before it has exec'd). */
static pid_t connect_shim_pid(const char *address)
{
    struct event_base *base = event_base_new();
    ttrpc_client_t *cl = NULL;
    err_t err = ERR_INIT;
    ttrpc_result_t res = TTRPC_RESULT_INIT;
    uint8_t *buf = NULL;
    size_t len = 0;
    Containerd__Task__V2__ConnectRequest req = CONTAINERD__TASK__V2__CONNECT_REQUEST__INIT;
    req.id = "nosuch";
    ttrpc_call_opts_t opts = {.timeout_ns = (int64_t)DEADLINE_MS * 1000000};
    pid_t pid = -1;
    if (base && ttrpc_client_connect(base, address, &cl, &err) == 0 &&
        svc_ttrpc_pack(&req.base, &buf, &len, &err) == 0 &&
        ttrpc_client_call_sync(cl, SVC_TTRPC_TASK_SERVICE, "Connect", buf, len, &opts, &res,
                               &err) == 0 &&
        res.code == 0) {
        ProtobufCMessage *m = NULL;
        if (svc_ttrpc_unpack(&containerd__task__v2__connect_response__descriptor, res.payload,
                             res.len, &m, &err) == 0) {
            pid = (pid_t)((Containerd__Task__V2__ConnectResponse *)m)->shim_pid;
            svc_ttrpc_msg_free(&m);
        }
    }
    if (pid < 0)
        print_message("Connect %s: %s (code %d %s)\n", address, err_str(&err), res.code,
                      res.message ? res.message : "");
    ttrpc_result_clear(&res);
    free(buf);
    err_clear(&err);
    ttrpc_client_destroy(&cl);
    if (base)
        event_base_free(base);
    return pid;
}

/* Whether something accepts connections at path. */
static bool listening(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* A socket file nobody listens on (what a killed shim leaves). */
static void stale_socket(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
}

/* Waits for pid, our child by reparenting; its wait status. */
static int reap(pid_t pid)
{
    int64_t end = clock_mono_ms() + DEADLINE_MS;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0)
            fail_msg("waitpid %d: %s", (int)pid, strerror(errno));
        if (clock_mono_ms() > end)
            fail_msg("pid %d did not end within %d ms", (int)pid, DEADLINE_MS);
        usleep(20 * 1000);
    }
}

static void assert_delete_response(const uint8_t *buf, size_t len)
{
    ProtobufCMessage *m = NULL;
    err_t err = ERR_INIT;
    if (svc_ttrpc_unpack(&containerd__task__v2__delete_response__descriptor, buf, len, &m, &err) <
        0)
        fail_msg("delete's stdout is no DeleteResponse: %s", err_str(&err));
    Containerd__Task__V2__DeleteResponse *r = (void *)m;
    assert_int_equal(r->exit_status, SVC_SHIM_DELETE_STATUS);
    assert_non_null(r->exited_at);
    svc_ttrpc_msg_free(&m);
}

/* start spawns the pod's shim (over a stale socket), a second container
 * of the pod joins it, delete talks to the live shim; once the shim is
 * gone, delete cleans what it left of the sandbox. */
static void test_shim_cmd_start_join_delete(void **state)
{
    struct fx *f = *state;
    char want[256], path[256];
    err_t err = ERR_INIT;
    assert_int_equal(
        svc_shim_socket_address(f->sockdir, GRPC, f->ns, f->id1, want, sizeof want, &err), 0);
    const char *sock = svc_shim_socket_path(want);
    assert_non_null(sock);
    assert_int_equal(mkdir(f->sockdir, 0700), 0);
    stale_socket(sock);

    /* start, as containerd runs it: cwd is the bundle; stdout+stderr are
     * read together as the address */
    int rc = shim(f, f->b1, NULL, "-namespace", f->ns, "-address", GRPC, "-publish-binary",
                  "/usr/bin/containerd", "-id", f->id1, "start", NULL);
    if (rc != 0)
        fail_msg("start: exit %d, stderr: %s", rc, f->err);
    assert_string_equal(f->out, want);
    assert_string_equal(f->err, "");
    snprintf(path, sizeof path, "%s/address", f->b1);
    char *addr = test_slurp(path);
    assert_string_equal(addr, want);
    free(addr);
    pid_t daemon = connect_shim_pid(want);
    assert_true(daemon > 0);
    assert_true(daemon != getpid());
    assert_true(listening(sock));
    struct stat st;
    assert_int_equal(stat(sock, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* the pod's second container finds the live shim: same address, no
     * second daemon */
    rc = shim(f, f->b2, NULL, "-namespace", f->ns, "-address", GRPC, "-publish-binary",
              "/usr/bin/containerd", "-id", f->id2, "-debug", "start", NULL);
    if (rc != 0)
        fail_msg("start (join): exit %d, stderr: %s", rc, f->err);
    assert_string_equal(f->out, want);
    snprintf(path, sizeof path, "%s/address", f->b2);
    addr = test_slurp(path);
    assert_string_equal(addr, want);
    free(addr);
    assert_int_equal(connect_shim_pid(want), daemon);

    /* delete with the shim alive: it is asked to kill and forget the task
     * (unknown to it here: ignored); the response is containerd's */
    size_t len = 0;
    rc = shim(f, f->empty, &len, "-namespace", f->ns, "-address", GRPC, "-publish-binary",
              "/usr/bin/containerd", "-id", f->id2, "-bundle", f->b2, "delete", NULL);
    if (rc != 0)
        fail_msg("delete: exit %d, stderr: %s", rc, f->err);
    assert_delete_response((const uint8_t *)f->out, len);
    if (!listening(sock)) {
        snprintf(path, sizeof path, "%s/log", f->b1);
        char *log = test_slurp(path);
        fail_msg("after delete: socket %s, delete's stderr: %s; daemon log: %s",
                 access(sock, F_OK) ? "gone" : "there", f->err, log);
    }

    /* the daemon ends on SIGTERM, removes its socket, and said who it was */
    assert_int_equal(kill(daemon, SIGTERM), 0);
    int ws = reap(daemon);
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 0);
    assert_int_equal(access(sock, F_OK), -1);
    snprintf(path, sizeof path, "%s/log", f->b1);
    char *log = test_slurp(path);
    char line[128];
    snprintf(line, sizeof line, "shim for sandbox %s (namespace %s)", f->id1, f->ns);
    if (!strstr(log, line))
        fail_msg("the daemon's log lacks \"%s\": %s", line, log);
    free(log);

    /* the shim is gone and left state: a sandbox whose daemon died, an
     * orphaned VM process, a container record and a stale socket */
    pid_t vmm = fork();
    assert_true(vmm >= 0);
    if (vmm == 0) {
        pause();
        _exit(0);
    }
    persist_store_t *store = NULL;
    assert_int_equal(persist_store_open(f->root, &store, &err), 0);
    persist_sandbox_t sb = {.id = f->id1,
                            .state = "ready",
                            .bundle = f->b1,
                            .created = "2024-01-01T00:00:00Z",
                            .daemon_pid = daemon,
                            .daemon_start = 1,
                            .vmm_pid = vmm,
                            .hypervisor = "local"};
    assert_int_equal(persist_proc_start_time(vmm, &sb.vmm_start, &err), 0);
    if (persist_sandbox_save(store, &sb, &err) < 0)
        fail_msg("%s", err_str(&err));
    persist_container_t c = {.id = f->id1,
                             .sandbox_id = f->id1,
                             .bundle = f->b1,
                             .rootfs = f->b1,
                             .state = "running",
                             .created = "2024-01-01T00:00:00Z"};
    if (persist_container_save(store, &c, &err) < 0)
        fail_msg("%s", err_str(&err));
    stale_socket(sock);
    rc = shim(f, f->b1, &len, "-namespace", f->ns, "-address", GRPC, "-publish-binary",
              "/usr/bin/containerd", "-id", f->id1, "delete", NULL);
    if (rc != 0)
        fail_msg("delete (leftovers): exit %d, stderr: %s", rc, f->err);
    assert_delete_response((const uint8_t *)f->out, len);
    ws = reap(vmm);
    assert_true(WIFSIGNALED(ws));
    assert_int_equal(WTERMSIG(ws), SIGKILL);
    persist_sandbox_t *left = NULL;
    assert_true(persist_sandbox_load(store, f->id1, &left, &err) < 0);
    assert_int_equal(err.code, ENOENT);
    err_clear(&err);
    assert_int_equal(access(sock, F_OK), -1);

    /* a sandbox whose daemon still runs (here: this process) is left alone */
    sb.daemon_pid = getpid();
    assert_int_equal(persist_proc_start_time(getpid(), &sb.daemon_start, &err), 0);
    sb.vmm_pid = 0;
    assert_int_equal(persist_sandbox_save(store, &sb, &err), 0);
    assert_int_equal(persist_container_save(store, &c, &err), 0);
    rc = shim(f, f->b1, &len, "-namespace", f->ns, "-address", GRPC, "-id", f->id1, "delete", NULL);
    assert_int_equal(rc, 0);
    assert_delete_response((const uint8_t *)f->out, len);
    assert_non_null(strstr(f->err, "still runs"));
    assert_int_equal(persist_sandbox_load(store, f->id1, &left, &err), 0);
    persist_sandbox_free(&left);
    assert_int_equal(persist_sandbox_remove(store, f->id1, &err), 0);
    persist_store_destroy(&store);
}

/* Every misuse ends with a status and a message that says what. */
static void test_shim_cmd_refusals(void **state)
{
    struct fx *f = *state;
    /* start without -id */
    assert_int_equal(shim(f, f->b1, NULL, "-namespace", f->ns, "-address", GRPC, "start", NULL), 1);
    assert_non_null(strstr(f->err, "-namespace, -id and -address are required"));
    /* start where there is no bundle */
    assert_int_equal(shim(f, f->empty, NULL, "-namespace", f->ns, "-address", GRPC, "-id", f->id1,
                          "start", NULL),
                     1);
    assert_non_null(strstr(f->err, "config.json"));
    assert_string_equal(f->out, "");
    /* a socket directory whose paths exceed containerd's limit */
    char longdir[192];
    snprintf(longdir, sizeof longdir, "%s/%0100d", f->dir, 0);
    setenv("HUSK_SHIM_SOCKET_DIR", longdir, 1);
    assert_int_equal(
        shim(f, f->b1, NULL, "-namespace", f->ns, "-address", GRPC, "-id", f->id1, "start", NULL),
        1);
    setenv("HUSK_SHIM_SOCKET_DIR", f->sockdir, 1);
    assert_non_null(strstr(f->err, "containerd-shim-husk-v2 start:"));
    /* the socket directory cannot be created */
    char blocked[128];
    put_file(f->dir, "x", "");
    snprintf(blocked, sizeof blocked, "%s/x/s", f->dir);
    setenv("HUSK_SHIM_SOCKET_DIR", blocked, 1);
    assert_int_equal(
        shim(f, f->b1, NULL, "-namespace", f->ns, "-address", GRPC, "-id", f->id1, "start", NULL),
        1);
    setenv("HUSK_SHIM_SOCKET_DIR", f->sockdir, 1);
    if (!strstr(f->err, "create"))
        fail_msg("stderr: %s", f->err);
    assert_int_equal(access(f->sockdir, F_OK), -1);
    /* delete without -id */
    assert_int_equal(shim(f, f->b1, NULL, "-namespace", f->ns, "delete", NULL), 1);
    assert_non_null(strstr(f->err, "-id is required"));
    /* delete of a bundle without config.json still answers (warns) */
    size_t len = 0;
    assert_int_equal(shim(f, f->empty, &len, "-namespace", f->ns, "-id", f->id1, "delete", NULL),
                     0);
    assert_delete_response((const uint8_t *)f->out, len);
    assert_non_null(strstr(f->err, "config.json"));
    /* the daemon with neither fd 3 listening nor -socket */
    assert_int_equal(shim(f, f->empty, NULL, "-namespace", f->ns, "-id", f->id1, NULL), 1);
    assert_non_null(strstr(f->err, "no listening socket on fd 3"));
    /* the daemon without a namespace */
    assert_int_equal(shim(f, f->empty, NULL, "-id", f->id1, NULL), 1);
    assert_non_null(strstr(f->err, "-namespace and -id"));
    /* a broken configuration stops the daemon before it serves */
    put_file(f->dir, "husk.conf", "[runtime]\nbogus = 1\n");
    assert_int_equal(shim(f, f->empty, NULL, "-namespace", f->ns, "-id", f->id1, "-socket",
                          "unix:///nowhere", NULL),
                     1);
    assert_non_null(strstr(f->err, "unknown key `bogus`"));
    /* unknown flags: usage status 2 */
    assert_int_equal(shim(f, f->b1, NULL, "-bogus", "start", NULL), 2);
    assert_non_null(strstr(f->err, "bogus"));
    /* -v */
    assert_int_equal(shim(f, f->b1, NULL, "-v", NULL), 0);
    assert_non_null(strstr(f->out, "containerd-shim-husk-v2:\n  Version: "));
    /* no socket directory was made by any of these */
    assert_int_equal(access(f->sockdir, F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shim_cmd_start_join_delete, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_shim_cmd_refusals, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
