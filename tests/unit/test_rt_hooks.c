/* Unit tests for runtimes/hooks with real sh scripts in a temp dir: order,
 * stdin (the OCI state), env, args, cwd, fd hygiene, timeouts (the whole
 * process group), failure messages, fatal vs warning semantics, the async
 * form on a libevent base, cancellation. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtimes/hooks.h"

static char dir[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/husk-test-hooks.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes an executable script dir/name; returns its path (static slot). */
static const char *script(const char *name, const char *body)
{
    static char paths[8][256];
    static int slot;
    char *p = paths[slot++ % 8];
    snprintf(p, 256, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    chmod(p, 0755);
    return p;
}

static char *slurp(const char *name)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static bool exists(const char *name)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static oci_hook_t hook(const char *path)
{
    oci_hook_t h;
    memset(&h, 0, sizeof h);
    h.path = (char *)path;
    return h;
}

static rt_hook_state_t state_of(const char *status, pid_t pid)
{
    static oci_kv_t ann[] = {{"io.kubernetes.cri.container-type", "container"}, {"k", "v"}};
    rt_hook_state_t st = {.oci_version = "1.1.0",
                          .id = "c1",
                          .status = status,
                          .pid = pid,
                          .bundle = dir,
                          .annotations = ann,
                          .n_annotations = 2};
    return st;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- tests --------------------------------------------------------------------- */

static void test_rt_hooks_run_in_order_with_state_on_stdin(void **state)
{
    (void)state;
    char body[512];
    oci_hook_t hs[3];
    const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        snprintf(body, sizeof body, "echo %s >> '%s/order'; cat > '%s/stdin.%s'", names[i], dir,
                 dir, names[i]);
        hs[i] = hook(script(names[i], body));
    }
    rt_hook_state_t st = state_of("creating", 4242);
    err_t err = ERR_INIT;
    assert_int_equal(rt_hooks_run(OCI_HOOK_CREATE_RUNTIME, hs, 3, &st, &err), 0);
    char *order = slurp("order");
    assert_string_equal(order, "a\nb\nc\n");
    free(order);
    char want[512];
    snprintf(want, sizeof want,
             "{\"ociVersion\":\"1.1.0\",\"id\":\"c1\",\"status\":\"creating\",\"pid\":4242,"
             "\"bundle\":\"%s\",\"annotations\":{\"io.kubernetes.cri.container-type\":"
             "\"container\",\"k\":\"v\"}}",
             dir);
    for (int i = 0; i < 3; i++) {
        char n[32];
        snprintf(n, sizeof n, "stdin.%s", names[i]);
        char *in = slurp(n);
        assert_non_null(in);
        assert_string_equal(in, want); /* every hook gets the whole state */
        free(in);
    }
}

static void test_rt_hooks_state_json_poststop_has_no_pid(void **state)
{
    (void)state;
    rt_hook_state_t st = {.id = "x", .status = "stopped", .bundle = "/b"};
    char *j = rt_hook_state_json(&st);
    assert_string_equal(j, "{\"ociVersion\":\"1.0.2\",\"id\":\"x\",\"status\":\"stopped\","
                           "\"bundle\":\"/b\"}");
    free(j);
    rt_hook_state_t bad = {.id = "\xff", .status = "stopped", .bundle = "/b"};
    assert_null(rt_hook_state_json(&bad));
    err_t err = ERR_INIT;
    oci_hook_t h = hook("/bin/true");
    assert_int_equal(rt_hooks_run(OCI_HOOK_POSTSTOP, &h, 1, &bad, &err), -EINVAL);
    err_clear(&err);
}

static void test_rt_hooks_env_is_exactly_the_specs(void **state)
{
    (void)state;
    char body[256];
    snprintf(body, sizeof body, "tr '\\0' '\\n' < /proc/$$/environ > '%s/env'", dir);
    oci_hook_t h = hook(script("env.sh", body));
    char *env[] = {"FOO=bar", "X=1 2", NULL};
    h.env = env;
    h.n_env = 2;
    setenv("HUSK_LEAK_CHECK", "leaked", 1);
    rt_hook_state_t st = state_of("creating", 1);
    err_t err = ERR_INIT;
    assert_int_equal(rt_hooks_run(OCI_HOOK_PRESTART, &h, 1, &st, &err), 0);
    char *got = slurp("env");
    assert_string_equal(got, "FOO=bar\nX=1 2\n");
    free(got);

    /* No env at all: an empty environment. */
    h.env = NULL;
    h.n_env = 0;
    assert_int_equal(rt_hooks_run(OCI_HOOK_PRESTART, &h, 1, &st, &err), 0);
    got = slurp("env");
    assert_string_equal(got, "");
    free(got);
    unsetenv("HUSK_LEAK_CHECK");
}

static void test_rt_hooks_args_cwd_and_fds(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "echo \"$0|$1|$2\" > '%s/args'; pwd > '%s/cwd'; ls /proc/self/fd > '%s/fds'", dir, dir,
             dir);
    char *args[] = {"sh", "-c", cmd, "zero", "one two", "three", NULL};
    oci_hook_t h = hook("/bin/sh");
    h.args = args;
    h.n_args = 6;
    /* A descriptor without O_CLOEXEC must not reach the hook. */
    int leak = open("/dev/null", O_RDONLY);
    int high = dup2(leak, 77);
    assert_int_equal(high, 77);
    rt_hook_state_t st = state_of("created", 1);
    err_t err = ERR_INIT;
    assert_int_equal(rt_hooks_run(OCI_HOOK_POSTSTART, &h, 1, &st, &err), 0);
    close(leak);
    close(high);
    char *a = slurp("args");
    assert_string_equal(a, "zero|one two|three\n");
    free(a);
    char *c = slurp("cwd");
    char want[256];
    snprintf(want, sizeof want, "%s\n", dir);
    assert_string_equal(c, want); /* cwd = bundle, as runc */
    free(c);
    char *fds = slurp("fds");
    /* ls itself opens one directory fd (3). */
    assert_string_equal(fds, "0\n1\n2\n3\n");
    free(fds);
}

static void test_rt_hooks_fatal_failure_stops_list_with_output(void **state)
{
    (void)state;
    char body[256];
    oci_hook_t hs[3];
    snprintf(body, sizeof body, "touch '%s/first'", dir);
    hs[0] = hook(script("ok.sh", body));
    hs[1] = hook(script("bad.sh", "cat >/dev/null; echo to-out; echo to-err >&2; exit 3"));
    snprintf(body, sizeof body, "touch '%s/third'", dir);
    hs[2] = hook(script("third.sh", body));
    rt_hook_state_t st = state_of("creating", 1);
    err_t err = ERR_INIT;
    int r = rt_hooks_run(OCI_HOOK_PRESTART, hs, 3, &st, &err);
    assert_true(r < 0);
    assert_true(rt_hook_kind_fatal(OCI_HOOK_PRESTART));
    char want[512];
    snprintf(want, sizeof want,
             "error running prestart hook #1 (%s): exit status 3, stdout: to-out, stderr: to-err",
             hs[1].path);
    assert_string_equal(err_str(&err), want);
    err_clear(&err);
    assert_true(exists("first"));
    assert_false(exists("third")); /* the list stopped */
}

static void test_rt_hooks_poststop_failure_warns_and_continues(void **state)
{
    (void)state;
    char body[256];
    oci_hook_t hs[3];
    hs[0] = hook(script("f1.sh", "echo first failure >&2; exit 1"));
    snprintf(body, sizeof body, "touch '%s/after'", dir);
    hs[1] = hook(script("after.sh", body));
    hs[2] = hook(script("f2.sh", "kill -9 $$"));
    rt_hook_state_t st = state_of("stopped", 0);
    err_t err = ERR_INIT;
    assert_false(rt_hook_kind_fatal(OCI_HOOK_POSTSTOP));
    assert_false(rt_hook_kind_fatal(OCI_HOOK_POSTSTART));
    assert_int_equal(rt_hooks_run(OCI_HOOK_POSTSTOP, hs, 3, &st, &err), RT_HOOKS_WARNED);
    assert_true(exists("after"));
    assert_non_null(strstr(err_str(&err), "error running poststop hook #0"));
    assert_non_null(strstr(err_str(&err), "exit status 1, stdout: , stderr: first failure"));
    assert_non_null(strstr(err_str(&err), "; error running poststop hook #2"));
    assert_non_null(strstr(err_str(&err), "killed by signal 9 (KILL)"));
    err_clear(&err);
}

static void test_rt_hooks_spawn_failures(void **state)
{
    (void)state;
    char p[256];
    snprintf(p, sizeof p, "%s/missing", dir);
    oci_hook_t h = hook(p);
    rt_hook_state_t st = state_of("creating", 1);
    err_t err = ERR_INIT;
    assert_int_equal(rt_hooks_run(OCI_HOOK_CREATE_CONTAINER, &h, 1, &st, &err), -ENOENT);
    assert_non_null(strstr(err_str(&err), "createContainer hook #0"));
    assert_non_null(strstr(err_str(&err), "No such file or directory"));
    err_clear(&err);

    snprintf(p, sizeof p, "%s/noexec", dir);
    FILE *f = fopen(p, "w");
    fputs("#!/bin/sh\n", f);
    fclose(f);
    chmod(p, 0644);
    assert_int_equal(rt_hooks_run(OCI_HOOK_START_CONTAINER, &h, 1, &st, &err), -EACCES);
    err_clear(&err);

    oci_hook_t rel = hook("bin/true");
    assert_int_equal(rt_hooks_run(OCI_HOOK_PRESTART, &rel, 1, &st, &err), -EINVAL);
    assert_non_null(strstr(err_str(&err), "path must be absolute"));
    err_clear(&err);

    /* A poststart spawn failure is only a warning. */
    snprintf(p, sizeof p, "%s/missing", dir);
    assert_int_equal(rt_hooks_run(OCI_HOOK_POSTSTART, &h, 1, &st, &err), RT_HOOKS_WARNED);
    err_clear(&err);
}

static void test_rt_hooks_timeout_kills_process_group(void **state)
{
    (void)state;
    char body[256];
    snprintf(body, sizeof body, "sleep 30 & echo $! > '%s/bg'; echo started; sleep 30", dir);
    oci_hook_t h = hook(script("slow.sh", body));
    h.timeout.set = true;
    h.timeout.value = 1;
    rt_hook_state_t st = state_of("creating", 1);
    err_t err = ERR_INIT;
    double t0 = now_s();
    assert_int_equal(rt_hooks_run(OCI_HOOK_PRESTART, &h, 1, &st, &err), -ETIMEDOUT);
    double dt = now_s() - t0;
    assert_true(dt >= 0.9 && dt < 5);
    assert_non_null(strstr(err_str(&err), "timed out after 1s (killed), stdout: started"));
    err_clear(&err);
    char *bg = slurp("bg");
    assert_non_null(bg);
    pid_t bgpid = atoi(bg);
    free(bg);
    /* The background child was in the hook's group: it is gone (it was
     * reparented, so poll rather than wait). */
    bool dead = false;
    for (int i = 0; i < 500 && !dead; i++) {
        char p[64], buf[512] = "";
        snprintf(p, sizeof p, "/proc/%d/stat", bgpid);
        FILE *f = fopen(p, "r");
        if (!f) {
            dead = true;
            break;
        }
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        char *rp = strrchr(buf, ')');
        if (rp && (rp[2] == 'Z' || rp[2] == 'X'))
            dead = true;
        else
            usleep(10000);
    }
    assert_true(dead);
}

static void test_rt_hooks_output_is_capped(void **state)
{
    (void)state;
    oci_hook_t h = hook(script("loud.sh", "i=0; while [ $i -lt 2000 ]; do echo "
                                          "0123456789; i=$((i+1)); done; exit 2"));
    rt_hook_state_t st = state_of("creating", 1);
    err_t err = ERR_INIT;
    assert_true(rt_hooks_run(OCI_HOOK_PRESTART, &h, 1, &st, &err) < 0);
    assert_non_null(strstr(err_str(&err), "exit status 2"));
    assert_non_null(strstr(err_str(&err), "0123..., stderr: "));
    assert_true(strlen(err_str(&err)) < RT_HOOK_OUTPUT_MAX * 2 + 512);
    err_clear(&err);
}

/* ---- async ------------------------------------------------------------------ */

struct done_rec {
    int calls;
    int result;
    char msg[1024];
};

static void rec_done(int result, err_t *err, void *arg)
{
    struct done_rec *d = arg;
    d->calls++;
    d->result = result;
    snprintf(d->msg, sizeof d->msg, "%s", err ? err_str(err) : "");
}

static void test_rt_hooks_async_on_event_base(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    char body[256];
    snprintf(body, sizeof body, "touch '%s/async'", dir);
    oci_hook_t h = hook(script("async.sh", body));
    rt_hook_state_t st = state_of("running", 9);
    struct done_rec d = {0};
    rt_hooks_run_t *run = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(rt_hooks_start(base, OCI_HOOK_POSTSTART, &h, 1, &st, rec_done, &d, &run, &err),
                     0);
    assert_non_null(run);
    assert_int_equal(d.calls, 0); /* never from within start */
    /* A timer runs meanwhile: the loop is not blocked by the hook. */
    for (int i = 0; i < 1000 && d.calls == 0; i++)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.result, 0);
    assert_true(exists("async"));
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);

    /* Zero hooks: done comes from the loop too. */
    d.calls = 0;
    assert_int_equal(
        rt_hooks_start(base, OCI_HOOK_POSTSTOP, NULL, 0, &st, rec_done, &d, NULL, &err), 0);
    assert_int_equal(d.calls, 0);
    event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.result, 0);
    event_base_free(base);
}

static void test_rt_hooks_cancel_kills_and_skips_callback(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    char body[256];
    snprintf(body, sizeof body, "echo $$ > '%s/pid'; exec sleep 30", dir);
    oci_hook_t h = hook(script("long.sh", body));
    rt_hook_state_t st = state_of("creating", 1);
    struct done_rec d = {0};
    rt_hooks_run_t *run = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(rt_hooks_start(base, OCI_HOOK_PRESTART, &h, 1, &st, rec_done, &d, &run, &err),
                     0);
    /* Let it spawn and write its pid. */
    for (int i = 0; i < 500 && !exists("pid"); i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        usleep(2000);
    }
    char *p = NULL;
    for (int i = 0; i < 500; i++) {
        free(p);
        p = slurp("pid");
        if (p && *p)
            break;
        usleep(2000);
    }
    assert_non_null(p);
    pid_t pid = atoi(p);
    free(p);
    assert_true(pid > 0);
    rt_hooks_cancel(&run);
    assert_null(run);
    rt_hooks_cancel(&run);
    assert_int_equal(kill(pid, 0), -1); /* reaped: no such process */
    assert_int_equal(errno, ESRCH);
    event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(d.calls, 0);
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
    event_base_free(base);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* dispositions must not leak into hooks */
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_rt_hooks_run_in_order_with_state_on_stdin),
        T(test_rt_hooks_state_json_poststop_has_no_pid),
        T(test_rt_hooks_env_is_exactly_the_specs),
        T(test_rt_hooks_args_cwd_and_fds),
        T(test_rt_hooks_fatal_failure_stops_list_with_output),
        T(test_rt_hooks_poststop_failure_warns_and_continues),
        T(test_rt_hooks_spawn_failures),
        T(test_rt_hooks_timeout_kills_process_group),
        T(test_rt_hooks_output_is_capped),
        T(test_rt_hooks_async_on_event_base),
        T(test_rt_hooks_cancel_kills_and_skips_callback),
#undef T
    };
    return cmocka_run_group_tests_name("rt_hooks", tests, NULL, NULL);
}
