/* cli: the runc-compatible command line (`husk`).
 *
 * Three layers, each in its own file:
 *   cli_parse.c   argv -> cli_opts_t (runc 1.1 / urfave-cli v1 rules), signal
 *                 names, container ids, `update` flags -> linux.resources
 *   cli_format.c  every byte husk prints the way runc prints it: state and
 *                 list JSON (Go encoding/json escaping and indentation),
 *                 the list table (Go tabwriter), ps, version, spec,
 *                 features, events lines and the logrus error lines
 *   cli_cmd.c     the commands: persisted state, the sandbox daemon, the
 *                 per-container proxy (services/proxy.h) and the bus calls
 * Parsing and formatting have no side effects and are unit-tested
 * (tests/unit/test_cli.c).  See docs/cli.md for what differs from runc. */
#ifndef HUSK_CLI_H
#define HUSK_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

#define CLI_DEFAULT_ROOT  "/run/husk"
#define CLI_OCI_VERSION   "1.0.2-dev" /* what runc 1.1 reports */
#define CLI_ID_MAX        64          /* RT_ID_MAX: ids travel on the bus */

typedef enum cli_cmd {
    CLI_CMD_NONE = 0, /* no command: --version / --help / bare `husk` */
    CLI_CMD_CHECKPOINT,
    CLI_CMD_CREATE,
    CLI_CMD_DELETE,
    CLI_CMD_EVENTS,
    CLI_CMD_EXEC,
    CLI_CMD_FEATURES,
    CLI_CMD_HELP,
    CLI_CMD_KILL,
    CLI_CMD_LIST,
    CLI_CMD_PAUSE,
    CLI_CMD_PS,
    CLI_CMD_RESTORE,
    CLI_CMD_RESUME,
    CLI_CMD_RUN,
    CLI_CMD_SPEC,
    CLI_CMD_START,
    CLI_CMD_STATE,
    CLI_CMD_UPDATE,
    CLI_CMD_VERSION,
    CLI_CMD_DAEMON, /* internal: __daemon <sandbox-id> */
    CLI_CMD_PROXY,  /* internal: __proxy <proxy args> */
} cli_cmd_t;

/* A list of borrowed strings (repeatable flags). */
typedef struct cli_strv {
    const char **v; /* owned array, borrowed items */
    size_t n;
} cli_strv_t;

/* The `update` flags that take a value, in runc's order. */
enum cli_upd {
    CLI_UPD_BLKIO_WEIGHT = 0,
    CLI_UPD_CPU_PERIOD,
    CLI_UPD_CPU_QUOTA,
    CLI_UPD_CPU_SHARE,
    CLI_UPD_CPU_RT_PERIOD,
    CLI_UPD_CPU_RT_RUNTIME,
    CLI_UPD_CPUSET_CPUS,
    CLI_UPD_CPUSET_MEMS,
    CLI_UPD_KERNEL_MEMORY,
    CLI_UPD_KERNEL_MEMORY_TCP,
    CLI_UPD_MEMORY,
    CLI_UPD_MEMORY_RESERVATION,
    CLI_UPD_MEMORY_SWAP,
    CLI_UPD_PIDS_LIMIT,
    CLI_UPD_L3_CACHE_SCHEMA,
    CLI_UPD_MEM_BW_SCHEMA,
    CLI_UPD_N
};

/* Everything the command line said.  Strings are borrowed from argv. */
typedef struct cli_opts {
    const char *argv0;
    /* global flags */
    const char *root;       /* --root (CLI_DEFAULT_ROOT) */
    const char *log;        /* --log, NULL = stderr */
    const char *log_format; /* --log-format text|json */
    bool debug;
    bool systemd_cgroup;
    const char *rootless; /* --rootless true|false|auto */
    const char *criu;
    const char *config; /* --config (husk) */
    bool version;       /* --version / -v */
    bool help;          /* --help / -h (global or after the command) */
    /* the command */
    cli_cmd_t cmd;
    const char *cmd_name;
    char **args; /* positional arguments after the command (items borrowed) */
    size_t n_args;
    bool args_owned_; /* private: args is a separate array */
    /* create / run / exec */
    const char *bundle;
    const char *console_socket;
    const char *pid_file;
    bool no_pivot, no_new_keyring, detach, keep, no_subreaper;
    long preserve_fds;
    /* kill */
    bool all;
    /* delete */
    bool force;
    /* exec */
    const char *process;
    bool tty;
    cli_strv_t env;
    const char *cwd;
    const char *user;
    cli_strv_t additional_gids;
    cli_strv_t caps;
    bool no_new_privs, ignore_paused;
    const char *process_label, *apparmor;
    const char *cgroup; /* --cgroup (last one) */
    /* list, ps */
    const char *format;
    bool quiet;
    /* events */
    const char *interval;
    bool stats;
    /* update */
    const char *resources;
    const char *upd[CLI_UPD_N];
    bool update_network; /* --network (husk): follow the namespace's interfaces */
    /* spec */
    bool spec_rootless;
} cli_opts_t;

/* What a parse failure asks of main(). */
enum cli_usage {
    CLI_USAGE_NONE = 0,  /* plain error */
    CLI_USAGE_INCORRECT, /* print "Incorrect Usage." (and help) on stdout */
};

/* Parses argv.  On failure returns < 0, fills err with runc's message and
 * sets *exit_code (1, or 3 for an unknown command) and *usage.  Frees
 * nothing of argv; call cli_opts_free() in every case. */
int cli_parse(int argc, char **argv, cli_opts_t *o, int *exit_code, enum cli_usage *usage,
              err_t *err);
void cli_opts_free(cli_opts_t *o);

/* Name of a command ("create"); "" for none. */
const char *cli_cmd_name(cli_cmd_t cmd);

/* runc's checkArgs after parsing (count rules per command). */
int cli_check_args(const cli_opts_t *o, err_t *err);

/* Signal by number or name, with or without SIG, any case ("KILL",
 * "sigterm", "9", "RTMIN+3").  Returns the number or < 0 with runc's
 * `unknown signal "X"`. */
int cli_parse_signal(const char *s, err_t *err);
/* "SIGTERM" for 15, NULL when unknown. */
const char *cli_signal_name(int sig);

/* runc's id rules (`^[\w+-\.]+$`, not "." or "..") plus husk's bus limits
 * (at most CLI_ID_MAX bytes; no '+' or ','): "container id cannot be
 * empty" / "invalid container ID format". */
int cli_validate_id(const char *id, err_t *err);

/* docker/go-units RAMInBytes: "64m", "1GiB", "512". */
int cli_parse_bytes(const char *s, int64_t *out, err_t *err);

/* Whether `update` was given a resource (--resources or a resource flag). */
bool cli_update_has_resources(const cli_opts_t *o);

/* The `update` flags as an OCI linux.resources JSON document (compact).
 * Caller frees *out. */
int cli_update_resources_json(const cli_opts_t *o, char **out, err_t *err);

/* "3s", "500ms", "1m30s", "2h" (Go time.ParseDuration) -> ns. */
int cli_parse_duration(const char *s, int64_t *ns, err_t *err);

/* ---- formatting (cli_format.c) ---------------------------------------- */

/* A growable text buffer (malloc'd; abort on OOM). */
typedef struct cli_buf {
    char *s;
    size_t len, cap;
} cli_buf_t;
void cli_buf_add(cli_buf_t *b, const char *s, size_t n);
void cli_buf_puts(cli_buf_t *b, const char *s);
void cli_buf_printf(cli_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands out the string (NUL-terminated; "" when empty); resets b. */
char *cli_buf_take(cli_buf_t *b);

/* A string as Go's encoding/json writes it (HTML-safe: <>& escaped). */
void cli_json_quote(cli_buf_t *b, const char *s);

/* The state of one container as runc's `state` and `list` print it. */
typedef struct cli_state {
    const char *oci_version; /* NULL = CLI_OCI_VERSION */
    const char *id;
    long pid; /* 0 when stopped */
    const char *status;
    const char *bundle;
    const char *rootfs;
    int64_t created_ns; /* UTC, since the epoch */
    const char *const *annotations; /* key, value, key, value..., NULL */
    const char *owner;
} cli_state_t;

/* RFC 3339 with nanoseconds, trailing zeros trimmed (Go RFC3339Nano). */
void cli_format_rfc3339nano(int64_t ns, char out[40]);

/* `state`: MarshalIndent(.., "", "  "), no trailing newline. */
char *cli_format_state(const cli_state_t *st);
/* `list --format json`: one line and "\n"; "null\n" when n == 0. */
char *cli_format_list_json(const cli_state_t *sts, size_t n);
/* `list`: tabwriter(minwidth 12, tabwidth 1, padding 3). */
char *cli_format_list_table(const cli_state_t *sts, size_t n);
/* `list -q`: one id per line. */
char *cli_format_list_quiet(const cli_state_t *sts, size_t n);
/* `ps --format json`: "[1,2]\n"; table: "PID\n1\n2\n". */
char *cli_format_ps_json(const uint64_t *pids, size_t n);
char *cli_format_ps_table(const uint64_t *pids, size_t n);
/* `--version`: "husk version V\ncommit: C\nspec: 1.0.2-dev\n" then
 * "libseccomp: X\n" and "qemu: Y\n" when known (NULL: line left out). */
char *cli_format_version(const char *version, const char *commit, const char *libseccomp,
                         const char *qemu);
/* `spec`: runc 1.1's default config.json (tab-indented, no newline).
 * rootless: specconv.ToRootless with the given ids. */
char *cli_format_spec(bool rootless, unsigned uid, unsigned gid);
/* `features`: 4-space indented JSON and "\n". */
char *cli_format_features(const char *version, const char *commit, const char *libseccomp);
/* `events`: {"type":"stats","id":..,"data":<data_json>}\n, or with
 * data_json NULL {"type":<type>,"id":..}\n.  NULL when data_json is not
 * valid JSON. */
char *cli_format_event(const char *type, const char *id, const char *data_json);

/* logrus error lines: text `time="T" level=error msg="M"\n`, json
 * `{"level":"error","msg":"M","time":"T"}\n`.  now: seconds since the
 * epoch; utc_offset: seconds east of UTC (0 writes Z). */
char *cli_format_error_line(bool json, const char *level, const char *msg, int64_t now,
                            long utc_offset);

/* ---- commands (cli_cmd.c) ---------------------------------------------- */

/* Runs a parsed command; returns the process exit status.  Errors are
 * reported with cli_fatal's rules before returning. */
int cli_run(cli_opts_t *o);

/* Reports msg as runc's fatal() does: logrus line on the --log file (or
 * stderr), plus the plain message on stderr when --log is a file. */
void cli_report_error(const cli_opts_t *o, const char *msg);

/* The husk entry point (main_husk.c calls it). */
int cli_main(int argc, char **argv);

#endif
