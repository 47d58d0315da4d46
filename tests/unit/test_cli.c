/* husk CLI: argument parsing (runc 1.1 rules), signals, ids, units, and
 * the byte-exact output formats (state, list, ps, version, spec, errors). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "services/cli.h"
#include "services/proxy.h"

/* ---- parsing ---------------------------------------------------------------- */

static int parse(cli_opts_t *o, int *code, err_t *err, ...)
{
    static char *argv[64];
    int argc = 0;
    argv[argc++] = "husk";
    va_list ap;
    va_start(ap, err);
    for (char *a; (a = va_arg(ap, char *));)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    enum cli_usage usage;
    int c = 0;
    int r = cli_parse(argc, argv, o, code ? code : &c, &usage, err);
    if (r == 0)
        r = cli_check_args(o, err);
    return r;
}

static void test_cli_parse_global_flags_before_command(void **s)
{
    cli_opts_t o;
    err_t err = ERR_INIT;
    assert_int_equal(parse(&o, NULL, &err, "--root", "/r", "--log=/l", "-log-format", "json",
                           "--debug", "--systemd-cgroup", "--rootless=false", "--criu", "/c",
                           "--config", "/etc/h.conf", "state", "c1", NULL),
                     0);
    assert_string_equal(o.root, "/r");
    assert_string_equal(o.log, "/l");
    assert_string_equal(o.log_format, "json");
    assert_true(o.debug);
    assert_true(o.systemd_cgroup);
    assert_string_equal(o.rootless, "false");
    assert_string_equal(o.config, "/etc/h.conf");
    assert_int_equal(o.cmd, CLI_CMD_STATE);
    assert_int_equal(o.n_args, 1);
    assert_string_equal(o.args[0], "c1");
    cli_opts_free(&o);
}

static void test_cli_parse_defaults(void **s)
{
    cli_opts_t o;
    err_t err = ERR_INIT;
    assert_int_equal(parse(&o, NULL, &err, "list", NULL), 0);
    assert_string_equal(o.root, "/run/husk");
    assert_string_equal(o.log_format, "text");
    assert_null(o.log);
    assert_string_equal(o.format, "table");
    assert_false(o.quiet);
    cli_opts_free(&o);
}

static void test_cli_parse_create_flags(void **s)
{
    cli_opts_t o;
    err_t err = ERR_INIT;
    assert_int_equal(parse(&o, NULL, &err, "create", "--bundle", "/b", "--pid-file", "/p",
                           "--console-socket=/s", "--no-pivot", "--no-new-keyring",
                           "--preserve-fds", "2", "c1", NULL),
                     0);
    assert_int_equal(o.cmd, CLI_CMD_CREATE);
    assert_string_equal(o.bundle, "/b");
    assert_string_equal(o.pid_file, "/p");
    assert_string_equal(o.console_socket, "/s");
    assert_true(o.no_pivot && o.no_new_keyring);
    assert_int_equal(o.preserve_fds, 2);
    assert_string_equal(o.args[0], "c1");
    cli_opts_free(&o);
    /* -b short form, flags after the id (urfave reorders) */
    assert_int_equal(parse(&o, NULL, &err, "create", "c2", "-b", "/x", NULL), 0);
    assert_string_equal(o.bundle, "/x");
    assert_string_equal(o.args[0], "c2");
    cli_opts_free(&o);
}

static void test_cli_parse_run_flags(void **s)
{
    cli_opts_t o;
    err_t err = ERR_INIT;
    assert_int_equal(parse(&o, NULL, &err, "run", "-d", "--keep", "--no-subreaper", "c1", NULL), 0);
    assert_int_equal(o.cmd, CLI_CMD_RUN);
    assert_true(o.detach && o.keep && o.no_subreaper);
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "run", "--detach=false", "c1", NULL), 0);
    assert_false(o.detach);
    cli_opts_free(&o);
}

static void test_cli_parse_kill_delete_list_ps(void **s)
{
    cli_opts_t o;
    err_t err = ERR_INIT;
    assert_int_equal(parse(&o, NULL, &err, "kill", "--all", "c1", "9", NULL), 0);
    assert_true(o.all);
    assert_int_equal(o.n_args, 2);
    assert_string_equal(o.args[1], "9");
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "kill", "c1", "KILL", "-a", NULL), 0);
    assert_true(o.all);
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "delete", "c1", "--force", NULL), 0);
    assert_true(o.force);
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "delete", "-f", "c1", NULL), 0);
    assert_true(o.force);
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "list", "--format=json", "-q", NULL), 0);
    assert_string_equal(o.format, "json");
    assert_true(o.quiet);
    cli_opts_free(&o);
    /* ps keeps the ps(1) arguments after the id */
    assert_int_equal(parse(&o, NULL, &err, "ps", "-f", "json", "c1", "-ef", NULL), 0);
    assert_string_equal(o.format, "json");
    assert_int_equal(o.n_args, 2);
    assert_string_equal(o.args[1], "-ef");
    cli_opts_free(&o);
}

static void test_cli_parse_exec_flags_stop_at_command(void **s)
{
    cli_opts_t o;
    err_t err = ERR_INIT;
    assert_int_equal(parse(&o, NULL, &err, "exec", "-t", "--detach", "-e", "A=1", "--env", "B=2",
                           "--cwd", "/w", "-u", "1000:1000", "-g", "10", "--additional-gids", "20",
                           "--cap", "CAP_KILL", "-c", "CAP_CHOWN", "--no-new-privs",
                           "--ignore-paused", "--pid-file", "/p", "--console-socket", "/s",
                           "--preserve-fds", "1", "c1", "sh", "-c", "echo -d", NULL),
                     0);
    assert_int_equal(o.cmd, CLI_CMD_EXEC);
    assert_true(o.tty && o.detach && o.no_new_privs && o.ignore_paused);
    assert_int_equal(o.env.n, 2);
    assert_string_equal(o.env.v[1], "B=2");
    assert_string_equal(o.cwd, "/w");
    assert_string_equal(o.user, "1000:1000");
    assert_int_equal(o.additional_gids.n, 2);
    assert_int_equal(o.caps.n, 2);
    assert_string_equal(o.caps.v[1], "CAP_CHOWN");
    assert_int_equal(o.preserve_fds, 1);
    assert_int_equal(o.n_args, 4);
    assert_string_equal(o.args[0], "c1");
    assert_string_equal(o.args[2], "-c");
    assert_string_equal(o.args[3], "echo -d");
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "exec", "--process", "/p.json", "-d", "c1", NULL), 0);
    assert_string_equal(o.process, "/p.json");
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "exec", "c1", "--", "ls", NULL), 0);
    assert_int_equal(o.n_args, 3);
    assert_string_equal(o.args[1], "--");
    cli_opts_free(&o);
}

static void test_cli_parse_events_update_spec(void **s)
{
    cli_opts_t o;
    err_t err = ERR_INIT;
    assert_int_equal(parse(&o, NULL, &err, "events", "--stats", "--interval", "2s", "c1", NULL), 0);
    assert_true(o.stats);
    assert_string_equal(o.interval, "2s");
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "update", "--memory", "64m", "--cpu-quota", "50000",
                           "--pids-limit=10", "--cpuset-cpus", "0-1", "c1", NULL),
                     0);
    assert_string_equal(o.upd[CLI_UPD_MEMORY], "64m");
    assert_string_equal(o.upd[CLI_UPD_PIDS_LIMIT], "10");
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "update", "-r", "-", "c1", NULL), 0);
    assert_string_equal(o.resources, "-");
    assert_true(cli_update_has_resources(&o));
    assert_false(o.update_network);
    cli_opts_free(&o);
    /* husk's --network: alone it carries no resources; flags may follow the id */
    assert_int_equal(parse(&o, NULL, &err, "update", "c1", "--network", NULL), 0);
    assert_true(o.update_network);
    assert_false(cli_update_has_resources(&o));
    assert_string_equal(o.args[0], "c1");
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "update", "--network", "--memory", "64m", "c1", NULL), 0);
    assert_true(o.update_network);
    assert_true(cli_update_has_resources(&o));
    cli_opts_free(&o);
    assert_true(parse(&o, NULL, &err, "update", "--network=maybe", "c1", NULL) < 0);
    cli_opts_free(&o);
    err_clear(&err);
    assert_int_equal(parse(&o, NULL, &err, "spec", "--rootless", "-b", "/b", NULL), 0);
    assert_true(o.spec_rootless);
    assert_string_equal(o.bundle, "/b");
    cli_opts_free(&o);
}

static void test_cli_parse_simple_commands(void **s)
{
    static const struct {
        const char *name;
        cli_cmd_t cmd;
    } t[] = {{"start", CLI_CMD_START},   {"state", CLI_CMD_STATE},   {"pause", CLI_CMD_PAUSE},
             {"resume", CLI_CMD_RESUME}, {"delete", CLI_CMD_DELETE}, {"events", CLI_CMD_EVENTS}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        cli_opts_t o;
        err_t err = ERR_INIT;
        assert_int_equal(parse(&o, NULL, &err, t[i].name, "c1", NULL), 0);
        assert_int_equal(o.cmd, t[i].cmd);
        assert_string_equal(cli_cmd_name(o.cmd), t[i].name);
        cli_opts_free(&o);
    }
    cli_opts_t o;
    err_t err = ERR_INIT;
    assert_int_equal(parse(&o, NULL, &err, "features", NULL), 0);
    assert_int_equal(o.cmd, CLI_CMD_FEATURES);
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "--version", NULL), 0);
    assert_true(o.version);
    assert_int_equal(o.cmd, CLI_CMD_NONE);
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "-v", NULL), 0);
    assert_true(o.version);
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "version", NULL), 0);
    assert_int_equal(o.cmd, CLI_CMD_VERSION);
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "state", "--help", NULL), 0);
    assert_true(o.help);
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "__daemon", "sb1", NULL), 0);
    assert_int_equal(o.cmd, CLI_CMD_DAEMON);
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "checkpoint", "--image-path", "/x", "c1", NULL), 0);
    assert_int_equal(o.cmd, CLI_CMD_CHECKPOINT);
    cli_opts_free(&o);
}

static void test_cli_parse_errors_as_runc(void **s)
{
    cli_opts_t o;
    err_t err = ERR_INIT;
    int code = 0;
    assert_true(parse(&o, &code, &err, "bogus", NULL) < 0);
    assert_int_equal(code, 3);
    assert_string_equal(err_str(&err), "No help topic for 'bogus'");
    cli_opts_free(&o);
    err_clear(&err);
    assert_true(parse(&o, &code, &err, "state", NULL) < 0);
    assert_string_equal(err_str(&err), "husk: \"state\" requires exactly 1 argument(s)");
    cli_opts_free(&o);
    err_clear(&err);
    assert_true(parse(&o, &code, &err, "state", "a", "b", NULL) < 0);
    cli_opts_free(&o);
    err_clear(&err);
    assert_true(parse(&o, &code, &err, "exec", NULL) < 0);
    assert_string_equal(err_str(&err), "husk: \"exec\" requires a minimum of 1 argument(s)");
    cli_opts_free(&o);
    err_clear(&err);
    assert_true(parse(&o, &code, &err, "kill", "a", "b", "c", NULL) < 0);
    assert_string_equal(err_str(&err), "husk: \"kill\" requires a maximum of 2 argument(s)");
    cli_opts_free(&o);
    err_clear(&err);
    assert_true(parse(&o, &code, &err, "list", "x", NULL) < 0);
    cli_opts_free(&o);
    err_clear(&err);
    assert_true(parse(&o, &code, &err, "--bogus", "list", NULL) < 0);
    assert_int_equal(code, 1);
    assert_string_equal(err_str(&err), "flag provided but not defined: -bogus");
    cli_opts_free(&o);
    err_clear(&err);
    assert_true(parse(&o, &code, &err, "create", "--pid-file", NULL) < 0);
    assert_string_equal(err_str(&err), "flag needs an argument: -pid-file");
    cli_opts_free(&o);
    err_clear(&err);
    assert_true(parse(&o, &code, &err, "create", "--preserve-fds", "x", "c", NULL) < 0);
    cli_opts_free(&o);
    err_clear(&err);
}

/* ---- signals, ids, units -------------------------------------------------------- */

static void test_cli_signal_names_and_numbers(void **s)
{
    err_t err = ERR_INIT;
    assert_int_equal(cli_parse_signal("KILL", &err), SIGKILL);
    assert_int_equal(cli_parse_signal("SIGKILL", &err), SIGKILL);
    assert_int_equal(cli_parse_signal("sigterm", &err), SIGTERM);
    assert_int_equal(cli_parse_signal("term", &err), SIGTERM);
    assert_int_equal(cli_parse_signal("Hup", &err), SIGHUP);
    assert_int_equal(cli_parse_signal("9", &err), 9);
    assert_int_equal(cli_parse_signal("28", &err), SIGWINCH);
    assert_int_equal(cli_parse_signal("WINCH", &err), SIGWINCH);
    assert_int_equal(cli_parse_signal("usr1", &err), SIGUSR1);
    assert_int_equal(cli_parse_signal("RTMIN", &err), 32);
    assert_int_equal(cli_parse_signal("SIGRTMIN+3", &err), 35);
    assert_int_equal(cli_parse_signal("rtmax-1", &err), 63);
    assert_true(cli_parse_signal("BOGUS", &err) < 0);
    assert_string_equal(err_str(&err), "unknown signal \"BOGUS\"");
    assert_true(cli_parse_signal("65", &err) < 0);
    assert_true(cli_parse_signal("", &err) < 0);
    assert_true(cli_parse_signal("SIG", &err) < 0);
    err_clear(&err);
    assert_string_equal(cli_signal_name(SIGTERM), "SIGTERM");
}

static void test_cli_container_ids(void **s)
{
    err_t err = ERR_INIT;
    assert_int_equal(cli_validate_id("c1", &err), 0);
    assert_int_equal(cli_validate_id("a.b-c_D9", &err), 0);
    assert_int_equal(cli_validate_id("..x", &err), 0);
    assert_true(cli_validate_id("", &err) < 0);
    assert_string_equal(err_str(&err), "container id cannot be empty");
    assert_true(cli_validate_id("..", &err) < 0);
    assert_string_equal(err_str(&err), "invalid container ID format");
    assert_true(cli_validate_id(".", &err) < 0);
    assert_true(cli_validate_id("a/b", &err) < 0);
    assert_true(cli_validate_id("a b", &err) < 0);
    assert_true(cli_validate_id("a+b", &err) < 0); /* runc allows; the agent does not */
    char long_id[80];
    memset(long_id, 'a', 65);
    long_id[65] = 0;
    assert_true(cli_validate_id(long_id, &err) < 0);
    long_id[64] = 0;
    assert_int_equal(cli_validate_id(long_id, &err), 0);
    err_clear(&err);
}

static void test_cli_bytes_and_durations(void **s)
{
    err_t err = ERR_INIT;
    int64_t v;
    assert_int_equal(cli_parse_bytes("512", &v, &err), 0);
    assert_int_equal(v, 512);
    assert_int_equal(cli_parse_bytes("64m", &v, &err), 0);
    assert_int_equal(v, 64 << 20);
    assert_int_equal(cli_parse_bytes("1GiB", &v, &err), 0);
    assert_int_equal(v, 1 << 30);
    assert_int_equal(cli_parse_bytes("2 KB", &v, &err), 0);
    assert_int_equal(v, 2048);
    assert_true(cli_parse_bytes("12x", &v, &err) < 0);
    assert_true(cli_parse_bytes("-1", &v, &err) < 0);
    assert_int_equal(cli_parse_duration("5s", &v, &err), 0);
    assert_int_equal(v, 5000000000LL);
    assert_int_equal(cli_parse_duration("1m30s", &v, &err), 0);
    assert_int_equal(v, 90000000000LL);
    assert_int_equal(cli_parse_duration("250ms", &v, &err), 0);
    assert_int_equal(v, 250000000LL);
    assert_int_equal(cli_parse_duration("0", &v, &err), 0);
    assert_int_equal(v, 0);
    assert_true(cli_parse_duration("5", &v, &err) < 0);
    assert_true(cli_parse_duration("abc", &v, &err) < 0);
    err_clear(&err);
}

static void test_cli_update_flags_to_resources(void **s)
{
    cli_opts_t o;
    err_t err = ERR_INIT;
    assert_int_equal(parse(&o, NULL, &err, "update", "--memory", "64m", "--memory-swap", "-1",
                           "--cpu-quota", "-1", "--cpu-period", "100000", "--cpu-share", "512",
                           "--cpuset-cpus", "0-1", "--pids-limit", "100", "--blkio-weight", "300",
                           "c1", NULL),
                     0);
    char *j = NULL;
    assert_int_equal(cli_update_resources_json(&o, &j, &err), 0);
    assert_string_equal(j, "{\"memory\":{\"limit\":67108864,\"swap\":-1},\"cpu\":{\"shares\":512,"
                           "\"quota\":-1,\"period\":100000,\"cpus\":\"0-1\"},\"blockIO\":{"
                           "\"weight\":300},\"pids\":{\"limit\":100}}");
    free(j);
    cli_opts_free(&o);
    assert_int_equal(parse(&o, NULL, &err, "update", "--cpu-share", "x", "c1", NULL), 0);
    assert_true(cli_update_resources_json(&o, &j, &err) < 0);
    cli_opts_free(&o);
    err_clear(&err);
}

/* ---- formats ------------------------------------------------------------------------ */

/* runc-facts 3.3: the observed `runc state` of a created container. */
static const char runc_state_example[] = "{\n"
                                         "  \"ociVersion\": \"1.0.2-dev\",\n"
                                         "  \"id\": \"s1\",\n"
                                         "  \"pid\": 10334,\n"
                                         "  \"status\": \"created\",\n"
                                         "  \"bundle\": \"/tmp/rt/bundle\",\n"
                                         "  \"rootfs\": \"/tmp/rt/bundle/rootfs\",\n"
                                         "  \"created\": \"2026-11-22T14:08:02.311477446Z\",\n"
                                         "  \"annotations\": {\n"
                                         "    \"io.example\": \"x\"\n"
                                         "  },\n"
                                         "  \"owner\": \"\"\n"
                                         "}";

static int64_t ts(const char *s)
{
    /* 2026-11-22T14:08:02.311477446Z */
    struct tm tm = {0};
    strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    return (int64_t)timegm(&tm) * 1000000000LL + atol(s + 20);
}

static void test_cli_state_json_is_byte_exact(void **s)
{
    const char *ann[] = {"io.example", "x", NULL};
    cli_state_t st = {.id = "s1",
                      .pid = 10334,
                      .status = "created",
                      .bundle = "/tmp/rt/bundle",
                      .rootfs = "/tmp/rt/bundle/rootfs",
                      .created_ns = ts("2026-11-22T14:08:02.311477446Z"),
                      .annotations = ann,
                      .owner = ""};
    char *out = cli_format_state(&st);
    assert_string_equal(out, runc_state_example);
    free(out);
    /* no annotations: the key is left out (omitempty) */
    st.annotations = NULL;
    st.pid = 0;
    st.status = "stopped";
    out = cli_format_state(&st);
    assert_null(strstr(out, "annotations"));
    assert_non_null(strstr(out, "\"pid\": 0,\n"));
    assert_int_not_equal(out[strlen(out) - 1], '\n');
    free(out);
}

static void test_cli_state_annotations_sorted_and_escaped(void **s)
{
    const char *ann[] = {"z", "<&>", "a", "q\"\n\t\x01", NULL};
    cli_state_t st = {.id = "c", .status = "running", .annotations = ann};
    char *out = cli_format_state(&st);
    assert_non_null(strstr(out, "\"annotations\": {\n    \"a\": \"q\\\"\\n\\t\\u0001\",\n    "
                                "\"z\": \"\\u003c\\u0026\\u003e\"\n  },"));
    assert_non_null(strstr(out, "\"created\": \"1970-01-01T00:00:00Z\""));
    free(out);
}

static void test_cli_rfc3339nano_trims_zeros(void **s)
{
    char b[40];
    cli_format_rfc3339nano(ts("2026-11-22T14:06:28.669095994Z"), b);
    assert_string_equal(b, "2026-11-22T14:06:28.669095994Z");
    cli_format_rfc3339nano(ts("2026-11-22T14:06:28.000000000Z") + 500000000, b);
    assert_string_equal(b, "2026-11-22T14:06:28.5Z");
    cli_format_rfc3339nano(ts("2026-11-22T14:06:28.000000000Z"), b);
    assert_string_equal(b, "2026-11-22T14:06:28Z");
}

static void test_cli_list_table_as_tabwriter(void **s)
{
    cli_state_t st[2] = {{.id = "c1",
                          .pid = 895,
                          .status = "created",
                          .bundle = "/tmp/rt/bundle",
                          .created_ns = ts("2026-11-22T14:06:28.669095994Z"),
                          .owner = "root"},
                         {.id = "a-much-longer-id",
                          .pid = 0,
                          .status = "stopped",
                          .bundle = "/b",
                          .created_ns = ts("2026-11-22T14:06:29.100000000Z"),
                          .owner = "root"}};
    char *out = cli_format_list_table(st, 1);
    assert_string_equal(out,
                        "ID          PID         STATUS      BUNDLE           CREATED          "
                        "                OWNER\n"
                        "c1          895         created     /tmp/rt/bundle   "
                        "2026-11-22T14:06:28.669095994Z   root\n");
    free(out);
    out = cli_format_list_table(st, 2);
    assert_string_equal(out,
                        "ID                 PID         STATUS      BUNDLE           CREATED   "
                        "                       OWNER\n"
                        "c1                 895         created     /tmp/rt/bundle   "
                        "2026-11-22T14:06:28.669095994Z   root\n"
                        "a-much-longer-id   0           stopped     /b               "
                        "2026-11-22T14:06:29.1Z           root\n");
    free(out);
    out = cli_format_list_table(NULL, 0);
    assert_string_equal(out, "ID          PID         STATUS      BUNDLE      CREATED     OWNER\n");
    free(out);
}

static void test_cli_list_json_and_quiet(void **s)
{
    char *out = cli_format_list_json(NULL, 0);
    assert_string_equal(out, "null\n");
    free(out);
    cli_state_t st[2] = {{.id = "c1",
                          .pid = 1,
                          .status = "running",
                          .bundle = "/b",
                          .rootfs = "/b/rootfs",
                          .owner = "root"},
                         {.id = "c2", .status = "stopped", .owner = "root"}};
    out = cli_format_list_json(st, 2);
    assert_string_equal(out, "[{\"ociVersion\":\"1.0.2-dev\",\"id\":\"c1\",\"pid\":1,\"status\":"
                             "\"running\",\"bundle\":\"/b\",\"rootfs\":\"/b/rootfs\",\"created\":"
                             "\"1970-01-01T00:00:00Z\",\"owner\":\"root\"},{\"ociVersion\":\"1.0."
                             "2-dev\",\"id\":\"c2\",\"pid\":0,\"status\":\"stopped\",\"bundle\":"
                             "\"\",\"rootfs\":\"\",\"created\":\"1970-01-01T00:00:00Z\",\"owner\":"
                             "\"root\"}]\n");
    free(out);
    out = cli_format_list_quiet(st, 2);
    assert_string_equal(out, "c1\nc2\n");
    free(out);
}

static void test_cli_ps_formats(void **s)
{
    uint64_t pids[] = {1, 23, 456};
    char *out = cli_format_ps_json(pids, 3);
    assert_string_equal(out, "[1,23,456]\n");
    free(out);
    out = cli_format_ps_json(NULL, 0);
    assert_string_equal(out, "[]\n");
    free(out);
    out = cli_format_ps_table(pids, 2);
    assert_string_equal(out, "PID\n1\n23\n");
    free(out);
}

static void test_cli_version_lines(void **s)
{
    char *out = cli_format_version("0.1.0", "abc123", "2.5.4", "7.2.0");
    assert_string_equal(out, "husk version 0.1.0\ncommit: abc123\nspec: 1.0.2-dev\n"
                             "libseccomp: 2.5.4\nqemu: 7.2.0\n");
    free(out);
    out = cli_format_version("0.1.0", "abc123", NULL, NULL);
    assert_string_equal(out, "husk version 0.1.0\ncommit: abc123\nspec: 1.0.2-dev\n");
    free(out);
}

/* The structure of runc 1.1's `runc spec` (tab-indented, no newline). */
static void test_cli_spec_matches_runc(void **s)
{
    char *out = cli_format_spec(false, 0, 0);
    assert_int_equal(strncmp(out,
                             "{\n\t\"ociVersion\": \"1.0.2-dev\",\n\t\"process\": {\n\t\t"
                             "\"terminal\": true,",
                             strlen("{\n\t\"ociVersion\": \"1.0.2-dev\",\n\t\"process\": {\n\t\t"
                                    "\"terminal\": true,")),
                     0);
    assert_int_equal(out[strlen(out) - 1], '}');
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "hostname")), "runc");
    json_t *p = json_object_get(j, "process");
    assert_string_equal(json_string_value(json_array_get(json_object_get(p, "args"), 0)), "sh");
    json_t *caps = json_object_get(p, "capabilities");
    assert_null(json_object_get(caps, "inheritable")); /* runc >= 1.1.2 */
    assert_int_equal(json_array_size(json_object_get(caps, "ambient")), 3);
    assert_int_equal(json_array_size(json_object_get(j, "mounts")), 7);
    json_t *l = json_object_get(j, "linux");
    assert_int_equal(json_array_size(json_object_get(l, "namespaces")), 5);
    assert_int_equal(json_array_size(json_object_get(l, "maskedPaths")), 10);
    assert_int_equal(json_array_size(json_object_get(l, "readonlyPaths")), 5);
    const char *keys[] = {"ociVersion", "process", "root", "hostname", "mounts", "linux"};
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) assert_string_equal(k, keys[i++]);
    json_decref(j);
    free(out);

    out = cli_format_spec(true, 1000, 1001);
    j = json_loads(out, 0, &je);
    assert_non_null(j);
    l = json_object_get(j, "linux");
    assert_null(json_object_get(l, "resources"));
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(l, "uidMappings"), 0), "hostID")),
                     1000);
    json_t *ns = json_object_get(l, "namespaces");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ns, 4), "type")), "user");
    assert_non_null(strstr(out, "\"destination\": \"/sys\",\n\t\t\t\"type\": \"none\""));
    assert_null(strstr(out, "gid=5"));
    json_decref(j);
    free(out);
}

static void test_cli_features_and_events(void **s)
{
    char *out = cli_format_features("0.1.0", "abc", "2.5.4");
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "ociVersionMax")), "1.0.2-dev");
    assert_true(json_is_true(
        json_object_get(json_object_get(json_object_get(j, "linux"), "seccomp"), "enabled")));
    assert_non_null(strstr(out, "\n    \"ociVersionMin\": \"1.0.0\",\n"));
    assert_int_equal(out[strlen(out) - 1], '\n');
    json_decref(j);
    free(out);
    out = cli_format_event("stats", "c1", "{\"pids\":{\"current\":3}}");
    assert_string_equal(out,
                        "{\"type\":\"stats\",\"id\":\"c1\",\"data\":{\"pids\":{\"current\":3}}}\n");
    free(out);
    out = cli_format_event("oom", "c1", NULL);
    assert_string_equal(out, "{\"type\":\"oom\",\"id\":\"c1\"}\n");
    free(out);
    assert_null(cli_format_event("stats", "c1", "{bad"));
}

static void test_cli_error_lines_text_and_json(void **s)
{
    /* 2026-11-22T14:06:35Z */
    int64_t now = ts("2026-11-22T14:06:35.000000000Z") / 1000000000LL;
    char *out = cli_format_error_line(false, "error", "container does not exist", now, 0);
    assert_string_equal(
        out, "time=\"2026-11-22T14:06:35Z\" level=error msg=\"container does not exist\"\n");
    free(out);
    out = cli_format_error_line(true, "error", "container does not exist", now, 0);
    assert_string_equal(out, "{\"level\":\"error\",\"msg\":\"container does not "
                             "exist\",\"time\":\"2026-11-22T14:06:35Z\"}\n");
    free(out);
    out = cli_format_error_line(false, "error", "plain", now, 3600);
    assert_string_equal(out, "time=\"2026-11-22T15:06:35+01:00\" level=error msg=plain\n");
    free(out);
    out = cli_format_error_line(false, "error", "unknown signal \"X\"\n", now, -5400);
    assert_string_equal(out, "time=\"2026-11-22T12:36:35-01:30\" level=error "
                             "msg=\"unknown signal \\\"X\\\"\\n\"\n");
    free(out);
    out = cli_format_error_line(true, "error", "a<b", now, 0);
    assert_non_null(strstr(out, "\"msg\":\"a\\u003cb\""));
    free(out);
}

static void test_cli_proxy_argv(void **s)
{
    proxy_opts_t po = {.endpoint = "ipc:///r/s/bus.sock",
                       .id = "c1",
                       .exec_id = "e1",
                       .sync_fd = 3,
                       .terminal = true,
                       .console_socket = "/tmp/s",
                       .rows = 24,
                       .cols = 80};
    char **v = proxy_argv(&po);
    const char *want[] = {
        "--endpoint", "ipc:///r/s/bus.sock", "--id",  "c1",         "--exec-id",
        "e1",         "--sync-fd",           "3",     "--terminal", "--console-socket",
        "/tmp/s",     "--console-size",      "24x80", NULL};
    for (size_t i = 0; want[i]; i++)
        assert_string_equal(v[i], want[i]);
    assert_null(v[13]);
    for (char **x = v; *x; x++)
        free(*x);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_parse_global_flags_before_command),
        cmocka_unit_test(test_cli_parse_defaults),
        cmocka_unit_test(test_cli_parse_create_flags),
        cmocka_unit_test(test_cli_parse_run_flags),
        cmocka_unit_test(test_cli_parse_kill_delete_list_ps),
        cmocka_unit_test(test_cli_parse_exec_flags_stop_at_command),
        cmocka_unit_test(test_cli_parse_events_update_spec),
        cmocka_unit_test(test_cli_parse_simple_commands),
        cmocka_unit_test(test_cli_parse_errors_as_runc),
        cmocka_unit_test(test_cli_signal_names_and_numbers),
        cmocka_unit_test(test_cli_container_ids),
        cmocka_unit_test(test_cli_bytes_and_durations),
        cmocka_unit_test(test_cli_update_flags_to_resources),
        cmocka_unit_test(test_cli_state_json_is_byte_exact),
        cmocka_unit_test(test_cli_state_annotations_sorted_and_escaped),
        cmocka_unit_test(test_cli_rfc3339nano_trims_zeros),
        cmocka_unit_test(test_cli_list_table_as_tabwriter),
        cmocka_unit_test(test_cli_list_json_and_quiet),
        cmocka_unit_test(test_cli_ps_formats),
        cmocka_unit_test(test_cli_version_lines),
        cmocka_unit_test(test_cli_spec_matches_runc),
        cmocka_unit_test(test_cli_features_and_events),
        cmocka_unit_test(test_cli_error_lines_text_and_json),
        cmocka_unit_test(test_cli_proxy_argv),
    };
    return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
