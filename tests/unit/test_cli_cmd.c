/* services/cli_cmd: the husk commands as a caller sees them (exit code,
 * stdout, stderr), each run by cli_main() in a forked child against a
 * runtime root of its own: the commands that need no daemon, the state of
 * containers whose daemon is gone, and every "does not exist" path. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_files.h"
#include <jansson.h>

#include "persist/store.h"
#include "services/cli.h"

struct fx {
    char dir[64];    /* everything of the test */
    char root[96];   /* --root */
    char *out, *err; /* of the last run */
};

/* Runs `husk --root <root> args...` (NULL-terminated); returns its exit code. */
static int husk(struct fx *f, ...)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "husk";
    argv[argc++] = "--root";
    argv[argc++] = f->root;
    va_list ap;
    va_start(ap, f);
    for (char *a; (a = va_arg(ap, char *));)
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
        static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            signal(sigs[i], SIG_DFL);
        int o = open(op, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(ep, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int n = open("/dev/null", O_RDONLY);
        if (o < 0 || e < 0 || n < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0 || dup2(n, 0) < 0)
            _exit(120);
        if (chdir(f->dir) < 0)
            _exit(121);
        exit(cli_main(argc, argv)); /* exit: the coverage data is written */
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st))
        fail_msg("husk %s: killed by signal %d", argv[3], WTERMSIG(st));
    free(f->out);
    free(f->err);
    f->out = test_slurp(op);
    f->err = test_slurp(ep);
    return WEXITSTATUS(st);
}

#define HUSK(f, ...) husk(f, __VA_ARGS__, (char *)NULL)

static void expect_err(struct fx *f, const char *text)
{
    if (!strstr(f->err, text))
        fail_msg("stderr '%s' does not say '%s'", f->err, text);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/husk-test-clicmd-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->root, sizeof f->root, "%s/root", f->dir);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f->out);
    free(f->err);
    free(f);
    return 0;
}

/* A sandbox "sb" whose daemon is gone, with container id in state st. */
static void persist_dead(struct fx *f, const char *id, const char *st, bool exited)
{
    persist_store_t *store = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(persist_store_open(f->root, &store, &err), 0);
    persist_sandbox_t sb = {.id = "sb",
                            .state = "ready",
                            .bundle = f->dir,
                            .created = "2024-01-02T03:04:05.000000006Z",
                            .hypervisor = "local"};
    char *ids[] = {(char *)id};
    sb.containers = ids;
    sb.n_containers = 1;
    persist_sandbox_t *old = NULL;
    if (persist_sandbox_load(store, "sb", &old, NULL) == 0) {
        sb.containers = realloc(NULL, (old->n_containers + 1) * sizeof *sb.containers);
        memcpy(sb.containers, old->containers, old->n_containers * sizeof *sb.containers);
        sb.containers[old->n_containers] = (char *)id;
        sb.n_containers = old->n_containers + 1;
    }
    if (persist_sandbox_save(store, &sb, &err) < 0)
        fail_msg("save sandbox: %s", err_str(&err));
    if (old) {
        free(sb.containers);
        persist_sandbox_free(&old);
    }
    char rootfs[160];
    snprintf(rootfs, sizeof rootfs, "%s/rootfs", f->dir);
    persist_container_t c = {.id = (char *)id,
                             .sandbox_id = "sb",
                             .bundle = f->dir,
                             .rootfs = rootfs,
                             .state = (char *)st,
                             .created = "2024-01-02T03:04:05.000000006Z",
                             .exited = exited,
                             .exit_status = exited ? 3 : 0,
                             .exited_at = exited ? "2024-01-02T03:04:06Z" : NULL};
    if (persist_container_save(store, &c, &err) < 0)
        fail_msg("save container: %s", err_str(&err));
    persist_store_destroy(&store);
}

/* ---- commands without a container --------------------------------------------------- */

static void test_cli_cmd_version_help_features(void **state)
{
    struct fx *f = *state;
    assert_int_equal(HUSK(f, "--version"), 0);
    assert_non_null(strstr(f->out, "husk version " HUSK_VERSION));
    assert_non_null(strstr(f->out, "spec: " CLI_OCI_VERSION));
    assert_int_equal(HUSK(f, "version"), 0);
    assert_non_null(strstr(f->out, "commit: "));
    assert_int_equal(HUSK(f, "--help"), 0);
    assert_non_null(strstr(f->out, "USAGE"));
    assert_int_equal(HUSK(f, "help"), 0);
    assert_non_null(strstr(f->out, "COMMANDS"));
    assert_int_equal(husk(f, (char *)NULL), 0);
    assert_non_null(strstr(f->out, "COMMANDS"));
    assert_int_equal(HUSK(f, "features"), 0);
    json_error_t je;
    json_t *j = json_loads(f->out, 0, &je);
    if (!j)
        fail_msg("features is not JSON: %s", je.text);
    assert_non_null(json_object_get(j, "ociVersionMax"));
    json_decref(j);
}

static void test_cli_cmd_spec_writes_config_once(void **state)
{
    struct fx *f = *state;
    assert_int_equal(HUSK(f, "spec"), 0);
    char p[160];
    snprintf(p, sizeof p, "%s/config.json", f->dir);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    if (!j)
        fail_msg("config.json: %s", je.text);
    assert_string_equal(json_string_value(json_object_get(j, "ociVersion")), CLI_OCI_VERSION);
    json_decref(j);
    /* runc refuses to overwrite it */
    assert_int_equal(HUSK(f, "spec"), 1);
    expect_err(f, "config.json");
    expect_err(f, "exists");
    /* --bundle puts it elsewhere; --rootless changes it */
    snprintf(p, sizeof p, "%s/b", f->dir);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(HUSK(f, "spec", "--rootless", "--bundle", p), 0);
    snprintf(p, sizeof p, "%s/b/config.json", f->dir);
    j = json_load_file(p, 0, &je);
    assert_non_null(j);
    assert_non_null(json_object_get(json_object_get(j, "linux"), "uidMappings"));
    json_decref(j);
}

static void test_cli_cmd_usage_errors(void **state)
{
    struct fx *f = *state;
    assert_int_equal(HUSK(f, "state"), 1);
    expect_err(f, "state");
    assert_non_null(strstr(f->out, "Incorrect Usage"));
    assert_int_equal(HUSK(f, "no-such-command"), 3); /* urfave-cli's code, as runc */
    assert_int_equal(HUSK(f, "--log-format", "xml", "list"), 1);
    expect_err(f, "invalid log-format: xml");
    assert_int_equal(HUSK(f, "list", "--format", "yaml"), 1);
    expect_err(f, "invalid format option");
    assert_int_equal(HUSK(f, "checkpoint", "c1"), 1);
    expect_err(f, "not supported");
    assert_int_equal(HUSK(f, "state", "bad/id"), 1);
    expect_err(f, "invalid container ID format");
    /* --log: errors go to the file as logrus lines, and to stderr */
    char log[160];
    snprintf(log, sizeof log, "%s/husk.log", f->dir);
    assert_int_equal(HUSK(f, "--log", log, "--log-format", "json", "state", "ghost"), 1);
    char *text = test_slurp(log);
    assert_non_null(strstr(text, "\"level\":\"error\""));
    assert_non_null(strstr(text, "container does not exist"));
    free(text);
    snprintf(log, sizeof log, "%s/no/such/dir/husk.log", f->dir);
    assert_int_equal(HUSK(f, "--log", log, "list"), 1);
    expect_err(f, "husk.log");
}

static void test_cli_cmd_missing_container_everywhere(void **state)
{
    struct fx *f = *state;
    static const char *const cmds[][4] = {
        {"state", "ghost"},
        {"start", "ghost"},
        {"kill", "ghost", "KILL"},
        {"pause", "ghost"},
        {"resume", "ghost"},
        {"delete", "ghost"},
        {"ps", "ghost"},
        {"events", "--stats", "ghost"},
        {"update", "--pids-limit", "5", "ghost"},
        {"exec", "ghost", "true"},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int rc = husk(f, cmds[i][0], cmds[i][1], cmds[i][2], cmds[i][3], (char *)NULL);
        if (rc == 0 || !strstr(f->err, "does not exist"))
            fail_msg("%s: exit %d, stderr '%s'", cmds[i][0], rc, f->err);
    }
    /* delete --force of nothing is fine, as with runc */
    assert_int_equal(HUSK(f, "delete", "--force", "ghost"), 0);
}

static void test_cli_cmd_list_empty_and_json(void **state)
{
    struct fx *f = *state;
    assert_int_equal(HUSK(f, "list"), 0);
    assert_non_null(strstr(f->out, "ID"));
    assert_non_null(strstr(f->out, "STATUS"));
    assert_int_equal(HUSK(f, "list", "-q"), 0);
    assert_string_equal(f->out, "");
    assert_int_equal(HUSK(f, "list", "--format", "json"), 0);
    assert_string_equal(f->out, "null\n");
}

/* ---- containers whose daemon is gone -------------------------------------------------- */

static void test_cli_cmd_dead_daemon_reports_stopped(void **state)
{
    struct fx *f = *state;
    persist_dead(f, "c1", "running", false);
    persist_dead(f, "c0", "stopped", true);
    assert_int_equal(HUSK(f, "state", "c1"), 0);
    json_error_t je;
    json_t *j = json_loads(f->out, 0, &je);
    if (!j)
        fail_msg("state is not JSON: %s (%s)", je.text, f->out);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "c1");
    assert_string_equal(json_string_value(json_object_get(j, "status")), "stopped");
    assert_int_equal(json_integer_value(json_object_get(j, "pid")), 0);
    assert_string_equal(json_string_value(json_object_get(j, "bundle")), f->dir);
    json_decref(j);
    /* list: sorted by id, both stopped */
    assert_int_equal(HUSK(f, "list", "-q"), 0);
    assert_string_equal(f->out, "c0\nc1\n");
    int rc = HUSK(f, "list", "--format", "json");
    if (rc)
        fail_msg("list --format json: %d: %s", rc, f->err);
    j = json_loads(f->out, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_array_size(j), 2);
    for (size_t i = 0; i < 2; i++) /* the persisted owner_uid is 0 */
        assert_string_equal(json_string_value(json_object_get(json_array_get(j, i), "owner")),
                            "root");
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 1), "status")),
                        "stopped");
    json_decref(j);
    assert_int_equal(HUSK(f, "list"), 0);
    assert_non_null(strstr(f->out, "c1 "));
    assert_non_null(strstr(f->out, "stopped"));
    /* what needs the daemon says it is not running */
    assert_int_not_equal(HUSK(f, "start", "c1"), 0);
    assert_int_not_equal(HUSK(f, "pause", "c1"), 0);
    assert_int_not_equal(HUSK(f, "exec", "c1", "true"), 0);
    assert_int_equal(HUSK(f, "kill", "c1"), 1);
    expect_err(f, "container not running");
    assert_int_equal(HUSK(f, "kill", "--all", "c1", "KILL"), 0);
    assert_int_equal(HUSK(f, "kill", "c1", "NOSUCHSIG"), 1);
    expect_err(f, "NOSUCHSIG");
    /* ps of a stopped container: no process, exit 0 (runc) */
    assert_int_equal(HUSK(f, "ps", "c1"), 0);
    assert_non_null(strstr(f->out, "PID"));
    assert_null(strchr(strchr(f->out, '\n') + 1, '\n'));
    assert_int_equal(HUSK(f, "ps", "--format", "json", "c1"), 0);
    assert_string_equal(f->out, "[]\n");
    assert_int_equal(HUSK(f, "ps", "--format", "xml", "c1"), 1);
    /* delete cleans up what the dead daemon left */
    assert_int_equal(HUSK(f, "delete", "c1"), 0);
    assert_int_equal(HUSK(f, "state", "c1"), 1);
    expect_err(f, "does not exist");
    assert_int_equal(HUSK(f, "delete", "--force", "c0"), 0);
    assert_int_equal(HUSK(f, "list", "-q"), 0);
    assert_string_equal(f->out, "");
}

static void write_config(const char *bundle, const char *terminal, const char *extra)
{
    char p[200];
    snprintf(p, sizeof p, "%s/config.json", bundle);
    FILE *cf = fopen(p, "w");
    assert_non_null(cf);
    fprintf(cf,
            "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"},\"process\":{"
            "\"terminal\":%s,\"args\":[\"sh\"],\"cwd\":\"/\",\"user\":{\"uid\":0,"
            "\"gid\":0}}%s}",
            terminal, extra);
    assert_int_equal(fclose(cf), 0);
}

static void test_cli_cmd_create_refuses_bad_bundles(void **state)
{
    struct fx *f = *state;
    char b[160];
    snprintf(b, sizeof b, "%s/nobundle", f->dir);
    assert_int_equal(HUSK(f, "create", "--bundle", b, "c9"), 1);
    expect_err(f, "nobundle");
    /* a bundle whose config.json is not JSON */
    snprintf(b, sizeof b, "%s/bad", f->dir);
    assert_int_equal(mkdir(b, 0755), 0);
    char p[200];
    snprintf(p, sizeof p, "%s/config.json", b);
    FILE *cf = fopen(p, "w");
    fputs("{not json", cf);
    fclose(cf);
    assert_int_equal(HUSK(f, "create", "--bundle", b, "c9"), 1);
    assert_int_equal(HUSK(f, "run", "--bundle", b, "c9"), 1);
    /* refusals that come before any daemon is started */
    snprintf(b, sizeof b, "%s/good", f->dir);
    assert_int_equal(mkdir(b, 0755), 0);
    write_config(b, "false", "");
    persist_dead(f, "c1", "stopped", true);
    assert_int_equal(HUSK(f, "create", "--bundle", b, "c1"), 1);
    expect_err(f, "container with given ID already exists");
    assert_int_equal(HUSK(f, "create", "--bundle", b, "--console-socket", "/tmp/x.sock", "c2"), 1);
    expect_err(f, "cannot use console socket");
    write_config(b, "true", "");
    assert_int_equal(HUSK(f, "create", "--bundle", b, "c2"), 1);
    expect_err(f, "cannot allocate tty");
    write_config(b, "false",
                 ",\"annotations\":{\"io.kubernetes.cri.container-type\":"
                 "\"container\",\"io.kubernetes.cri.sandbox-id\":\"nosb\"}");
    assert_int_equal(HUSK(f, "create", "--bundle", b, "c2"), 1);
    expect_err(f, "sandbox nosb is not running");
    assert_int_equal(HUSK(f, "create", "--bundle", b, "bad/id"), 1);
    expect_err(f, "invalid container ID format");
    assert_int_equal(HUSK(f, "list", "-q"), 0);
    assert_string_equal(f->out, "c1\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cli_cmd_version_help_features, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cli_cmd_spec_writes_config_once, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_cli_cmd_usage_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cli_cmd_missing_container_everywhere, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_cli_cmd_list_empty_and_json, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cli_cmd_dead_daemon_reports_stopped, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_cli_cmd_create_refuses_bad_bundles, fx_setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests_name("cli_cmd", tests, NULL, NULL);
}
