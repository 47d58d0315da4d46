/* cli_parse: argv -> cli_opts_t with runc 1.1's rules (urfave/cli v1 on
 * Go's flag package): one or two dashes, `--flag value` or `--flag=value`,
 * bool flags take no value (or `=true|false`), `--` ends the flags, and
 * except for exec and ps the flags may follow the positional arguments
 * (urfave's argument reordering). */
#include "services/cli.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/xalloc.h"

enum ftype { F_BOOL, F_STR, F_STRV, F_LONG };

typedef struct flag {
    const char *name;  /* long name */
    const char *alias; /* short name or NULL */
    enum ftype type;
    size_t off; /* into cli_opts_t */
} flag_t;

#define O(f) offsetof(cli_opts_t, f)

static const flag_t global_flags[] = {
    {"debug", NULL, F_BOOL, O(debug)},
    {"log", NULL, F_STR, O(log)},
    {"log-format", NULL, F_STR, O(log_format)},
    {"root", NULL, F_STR, O(root)},
    {"criu", NULL, F_STR, O(criu)},
    {"systemd-cgroup", NULL, F_BOOL, O(systemd_cgroup)},
    {"rootless", NULL, F_STR, O(rootless)},
    {"config", NULL, F_STR, O(config)},
    {"help", "h", F_BOOL, O(help)},
    {"version", "v", F_BOOL, O(version)},
    {NULL, NULL, 0, 0},
};

#define HELP_FLAG {"help", "h", F_BOOL, O(help)}
#define END_FLAGS {NULL, NULL, 0, 0}
#define CREATE_FLAGS                                                                               \
    {"bundle", "b", F_STR, O(bundle)}, {"console-socket", NULL, F_STR, O(console_socket)},         \
        {"pid-file", NULL, F_STR, O(pid_file)}, {"no-pivot", NULL, F_BOOL, O(no_pivot)},           \
        {"no-new-keyring", NULL, F_BOOL, O(no_new_keyring)},                                       \
        {"preserve-fds", NULL, F_LONG, O(preserve_fds)}, HELP_FLAG

static const flag_t create_flags[] = {CREATE_FLAGS, END_FLAGS};
static const flag_t run_flags[] = {CREATE_FLAGS,
                                   {"detach", "d", F_BOOL, O(detach)},
                                   {"keep", NULL, F_BOOL, O(keep)},
                                   {"no-subreaper", NULL, F_BOOL, O(no_subreaper)},
                                   END_FLAGS};
static const flag_t none_flags[] = {HELP_FLAG, END_FLAGS};
static const flag_t kill_flags[] = {{"all", "a", F_BOOL, O(all)}, HELP_FLAG, END_FLAGS};
static const flag_t delete_flags[] = {{"force", "f", F_BOOL, O(force)}, HELP_FLAG, END_FLAGS};
static const flag_t exec_flags[] = {
    {"console-socket", NULL, F_STR, O(console_socket)},
    {"cwd", NULL, F_STR, O(cwd)},
    {"env", "e", F_STRV, O(env)},
    {"tty", "t", F_BOOL, O(tty)},
    {"user", "u", F_STR, O(user)},
    {"additional-gids", "g", F_STRV, O(additional_gids)},
    {"process", "p", F_STR, O(process)},
    {"detach", "d", F_BOOL, O(detach)},
    {"pid-file", NULL, F_STR, O(pid_file)},
    {"process-label", NULL, F_STR, O(process_label)},
    {"apparmor", NULL, F_STR, O(apparmor)},
    {"no-new-privs", NULL, F_BOOL, O(no_new_privs)},
    {"cap", "c", F_STRV, O(caps)},
    {"preserve-fds", NULL, F_LONG, O(preserve_fds)},
    {"cgroup", NULL, F_STRV, O(cgroup)}, /* kept as the last value only */
    {"ignore-paused", NULL, F_BOOL, O(ignore_paused)},
    HELP_FLAG,
    END_FLAGS,
};
static const flag_t list_flags[] = {
    {"format", "f", F_STR, O(format)}, {"quiet", "q", F_BOOL, O(quiet)}, HELP_FLAG, END_FLAGS};
static const flag_t ps_flags[] = {{"format", "f", F_STR, O(format)}, HELP_FLAG, END_FLAGS};
static const flag_t events_flags[] = {
    {"interval", NULL, F_STR, O(interval)}, {"stats", NULL, F_BOOL, O(stats)}, HELP_FLAG, END_FLAGS};
static const flag_t spec_flags[] = {
    {"bundle", "b", F_STR, O(bundle)}, {"rootless", NULL, F_BOOL, O(spec_rootless)}, HELP_FLAG,
    END_FLAGS};
#define U(f, e) {f, NULL, F_STR, O(upd) + (e) * sizeof(const char *)}
static const flag_t update_flags[] = {
    {"resources", "r", F_STR, O(resources)},
    U("blkio-weight", CLI_UPD_BLKIO_WEIGHT),
    U("cpu-period", CLI_UPD_CPU_PERIOD),
    U("cpu-quota", CLI_UPD_CPU_QUOTA),
    U("cpu-share", CLI_UPD_CPU_SHARE),
    U("cpu-rt-period", CLI_UPD_CPU_RT_PERIOD),
    U("cpu-rt-runtime", CLI_UPD_CPU_RT_RUNTIME),
    U("cpuset-cpus", CLI_UPD_CPUSET_CPUS),
    U("cpuset-mems", CLI_UPD_CPUSET_MEMS),
    U("kernel-memory", CLI_UPD_KERNEL_MEMORY),
    U("kernel-memory-tcp", CLI_UPD_KERNEL_MEMORY_TCP),
    U("memory", CLI_UPD_MEMORY),
    U("memory-reservation", CLI_UPD_MEMORY_RESERVATION),
    U("memory-swap", CLI_UPD_MEMORY_SWAP),
    U("pids-limit", CLI_UPD_PIDS_LIMIT),
    U("l3-cache-schema", CLI_UPD_L3_CACHE_SCHEMA),
    U("mem-bw-schema", CLI_UPD_MEM_BW_SCHEMA),
    {"network", NULL, F_BOOL, O(update_network)}, /* husk: rescan the network namespace */
    HELP_FLAG,
    END_FLAGS,
};
/* checkpoint/restore: refused anyway; accept any flag shape quietly. */

enum argc_rule { ARGS_ANY, ARGS_EXACT, ARGS_MIN, ARGS_RANGE };

typedef struct command {
    const char *name;
    cli_cmd_t cmd;
    const flag_t *flags; /* NULL: take every argument raw */
    bool skip_reorder;
    enum argc_rule rule;
    int n, max;
} command_t;

static const command_t commands[] = {
    {"checkpoint", CLI_CMD_CHECKPOINT, NULL, true, ARGS_ANY, 0, 0},
    {"create", CLI_CMD_CREATE, create_flags, false, ARGS_EXACT, 1, 1},
    {"delete", CLI_CMD_DELETE, delete_flags, false, ARGS_EXACT, 1, 1},
    {"events", CLI_CMD_EVENTS, events_flags, false, ARGS_EXACT, 1, 1},
    {"exec", CLI_CMD_EXEC, exec_flags, true, ARGS_MIN, 1, 0},
    {"features", CLI_CMD_FEATURES, none_flags, false, ARGS_EXACT, 0, 0},
    {"help", CLI_CMD_HELP, NULL, true, ARGS_ANY, 0, 0},
    {"h", CLI_CMD_HELP, NULL, true, ARGS_ANY, 0, 0},
    {"kill", CLI_CMD_KILL, kill_flags, false, ARGS_RANGE, 1, 2},
    {"list", CLI_CMD_LIST, list_flags, false, ARGS_EXACT, 0, 0},
    {"pause", CLI_CMD_PAUSE, none_flags, false, ARGS_EXACT, 1, 1},
    {"ps", CLI_CMD_PS, ps_flags, true, ARGS_MIN, 1, 0},
    {"restore", CLI_CMD_RESTORE, NULL, true, ARGS_ANY, 0, 0},
    {"resume", CLI_CMD_RESUME, none_flags, false, ARGS_EXACT, 1, 1},
    {"run", CLI_CMD_RUN, run_flags, false, ARGS_EXACT, 1, 1},
    {"spec", CLI_CMD_SPEC, spec_flags, false, ARGS_EXACT, 0, 0},
    {"start", CLI_CMD_START, none_flags, false, ARGS_EXACT, 1, 1},
    {"state", CLI_CMD_STATE, none_flags, false, ARGS_EXACT, 1, 1},
    {"update", CLI_CMD_UPDATE, update_flags, false, ARGS_EXACT, 1, 1},
    {"version", CLI_CMD_VERSION, none_flags, false, ARGS_EXACT, 0, 0},
    {"__daemon", CLI_CMD_DAEMON, NULL, true, ARGS_EXACT, 1, 1},
    {"__proxy", CLI_CMD_PROXY, NULL, true, ARGS_ANY, 0, 0},
    {NULL, 0, NULL, false, 0, 0, 0},
};

const char *cli_cmd_name(cli_cmd_t cmd)
{
    for (const command_t *c = commands; c->name; c++)
        if (c->cmd == cmd)
            return c->name;
    return "";
}

static const command_t *find_command(cli_cmd_t cmd)
{
    for (const command_t *c = commands; c->name; c++)
        if (c->cmd == cmd)
            return c;
    return NULL;
}

static const flag_t *find_flag(const flag_t *flags, const char *name, size_t len)
{
    for (const flag_t *f = flags; f->name; f++) {
        if ((strlen(f->name) == len && !strncmp(f->name, name, len)) ||
            (f->alias && strlen(f->alias) == len && !strncmp(f->alias, name, len)))
            return f;
    }
    return NULL;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const t[] = {"1", "t", "T", "true", "TRUE", "True", NULL};
    static const char *const f[] = {"0", "f", "F", "false", "FALSE", "False", NULL};
    for (int i = 0; t[i]; i++)
        if (!strcmp(v, t[i]))
            return *out = true, 0;
    for (int i = 0; f[i]; i++)
        if (!strcmp(v, f[i]))
            return *out = false, 0;
    return -1;
}

static void strv_push(cli_strv_t *v, const char *s)
{
    const char **n = realloc(v->v, (v->n + 2) * sizeof *n);
    if (!n)
        abort();
    v->v = n;
    v->v[v->n++] = s;
    v->v[v->n] = NULL;
}

/* Is argv[i] a flag (Go flag rules)? */
static bool is_flag(const char *a)
{
    return a[0] == '-' && a[1] != 0 && strcmp(a, "--") != 0;
}

/* Parses flags from args[*i]; stops at the first non-flag or "--" (which
 * it consumes).  Returns 0 or < 0 with urfave's message. */
static int parse_flags(const flag_t *flags, char **args, int n, int *i, cli_opts_t *o, err_t *err)
{
    while (*i < n) {
        char *a = args[*i];
        if (!strcmp(a, "--")) {
            (*i)++;
            return 0;
        }
        if (!is_flag(a))
            return 0;
        const char *name = a + 1 + (a[1] == '-');
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (len == 0 || name[0] == '-' || name[0] == '=')
            return err_make(err, EINVAL, "bad flag syntax: %s", a);
        const flag_t *f = find_flag(flags, name, len);
        if (!f)
            return err_make(err, EINVAL, "flag provided but not defined: -%.*s", (int)len, name);
        (*i)++;
        char *base = (char *)o + f->off;
        const char *val = eq ? eq + 1 : NULL;
        if (f->type == F_BOOL) {
            bool b = true;
            if (val && parse_bool(val, &b) < 0)
                return err_make(err, EINVAL,
                                "invalid boolean value \"%s\" for -%s: parse error", val, f->name);
            *(bool *)base = b;
            continue;
        }
        if (!val) {
            if (*i >= n)
                return err_make(err, EINVAL, "flag needs an argument: -%.*s", (int)len, name);
            val = args[(*i)++];
        }
        switch (f->type) {
        case F_STR: *(const char **)base = val; break;
        case F_STRV:
            if (f->off == O(cgroup)) /* repeatable in runc; husk keeps the last */
                o->cgroup = val;
            else
                strv_push((cli_strv_t *)base, val);
            break;
        case F_LONG: {
            char *end;
            errno = 0;
            long l = strtol(val, &end, 0);
            if (errno || end == val || *end)
                return err_make(err, EINVAL, "invalid value \"%s\" for flag -%s: parse error",
                                val, f->name);
            *(long *)base = l;
            break;
        }
        default: break;
        }
    }
    return 0;
}

/* urfave/cli v1 reorderArgs: flags (with their values) first, then the
 * positional arguments; "--" and what follows stay at the end. */
static char **reorder(const flag_t *flags, char **args, int n, int *nout)
{
    char **out = calloc((size_t)n + 2, sizeof *out);
    char **pos = calloc((size_t)n + 2, sizeof *pos);
    if (!out || !pos)
        abort();
    int no = 0, np = 0, i = 0;
    bool dashdash = false;
    for (; i < n; i++) {
        char *a = args[i];
        if (!strcmp(a, "--")) {
            dashdash = true;
            i++;
            break;
        }
        if (is_flag(a)) {
            out[no++] = a;
            const char *name = a + 1 + (a[1] == '-');
            size_t len = strcspn(name, "=");
            const flag_t *f = find_flag(flags, name, len);
            if (f && f->type != F_BOOL && !strchr(name, '=') && i + 1 < n)
                out[no++] = args[++i];
        } else {
            pos[np++] = a;
        }
    }
    if (dashdash || np) {
        out[no++] = (char *)"--";
        for (int k = 0; k < np; k++)
            out[no++] = pos[k];
        for (; i < n; i++)
            out[no++] = args[i];
    }
    out[no] = NULL;
    *nout = no;
    free(pos);
    return out;
}

int cli_parse(int argc, char **argv, cli_opts_t *o, int *exit_code, enum cli_usage *usage,
              err_t *err)
{
    memset(o, 0, sizeof *o);
    o->argv0 = argc > 0 ? argv[0] : "husk";
    o->root = CLI_DEFAULT_ROOT;
    o->log_format = "text";
    o->rootless = "auto";
    o->criu = "criu";
    o->bundle = NULL;
    o->format = "table";
    o->interval = "5s";
    *exit_code = 1;
    *usage = CLI_USAGE_NONE;

    int i = 1;
    if (parse_flags(global_flags, argv, argc, &i, o, err) < 0) {
        *usage = CLI_USAGE_INCORRECT;
        return -EINVAL;
    }
    if (i >= argc)
        return 0; /* no command: version, help, or the app help */
    const char *name = argv[i++];
    const command_t *c = commands;
    for (; c->name; c++)
        if (!strcmp(c->name, name))
            break;
    if (!c->name) {
        *exit_code = 3;
        return err_make(err, EINVAL, "No help topic for '%s'", name);
    }
    o->cmd = c->cmd;
    o->cmd_name = c->name;
    char **rest = argv + i;
    int n = argc - i;
    if (!c->flags) { /* raw */
        o->args = rest;
        o->n_args = (size_t)n;
        return 0;
    }
    int nuse = n;
    char **args = c->skip_reorder ? NULL : reorder(c->flags, rest, n, &nuse);
    char **use = args ? args : rest;
    int j = 0;
    int r = parse_flags(c->flags, use, nuse, &j, o, err);
    if (r == 0) {
        /* positional arguments point back into argv (args is temporary) */
        size_t np = (size_t)(nuse - j);
        o->n_args = np;
        o->args = xcalloc(np + 1, sizeof *o->args);
        for (size_t k = 0; k < np; k++)
            o->args[k] = use[j + (int)k];
        o->args_owned_ = true;
    } else {
        *usage = CLI_USAGE_INCORRECT;
    }
    free(args);
    return r;
}

void cli_opts_free(cli_opts_t *o)
{
    free(o->env.v);
    free(o->additional_gids.v);
    free(o->caps.v);
    if (o->args_owned_)
        free(o->args);
    o->env.v = o->additional_gids.v = o->caps.v = NULL;
    o->args = NULL;
    o->args_owned_ = false;
}

int cli_check_args(const cli_opts_t *o, err_t *err)
{
    const command_t *c = find_command(o->cmd);
    if (!c || o->help)
        return 0;
    int n = (int)o->n_args;
    switch (c->rule) {
    case ARGS_EXACT:
        if (n != c->n)
            return err_make(err, EINVAL, "%s: \"%s\" requires exactly %d argument(s)", o->argv0,
                            c->name, c->n);
        break;
    case ARGS_MIN:
        if (n < c->n)
            return err_make(err, EINVAL, "%s: \"%s\" requires a minimum of %d argument(s)",
                            o->argv0, c->name, c->n);
        break;
    case ARGS_RANGE:
        if (n < c->n)
            return err_make(err, EINVAL, "%s: \"%s\" requires a minimum of %d argument(s)",
                            o->argv0, c->name, c->n);
        if (n > c->max)
            return err_make(err, EINVAL, "%s: \"%s\" requires a maximum of %d argument(s)",
                            o->argv0, c->name, c->max);
        break;
    default: break;
    }
    return 0;
}

/* ---- signals ------------------------------------------------------------ */

static const struct {
    const char *name;
    int num;
} signals[] = {
    {"SIGABRT", SIGABRT}, {"SIGALRM", SIGALRM},     {"SIGBUS", SIGBUS},     {"SIGCHLD", SIGCHLD},
    {"SIGCLD", SIGCHLD},  {"SIGCONT", SIGCONT},     {"SIGFPE", SIGFPE},     {"SIGHUP", SIGHUP},
    {"SIGILL", SIGILL},   {"SIGINT", SIGINT},       {"SIGIO", SIGIO},       {"SIGIOT", SIGIOT},
    {"SIGKILL", SIGKILL}, {"SIGPIPE", SIGPIPE},     {"SIGPOLL", SIGPOLL},   {"SIGPROF", SIGPROF},
    {"SIGPWR", SIGPWR},   {"SIGQUIT", SIGQUIT},     {"SIGSEGV", SIGSEGV},   {"SIGSTKFLT", SIGSTKFLT},
    {"SIGSTOP", SIGSTOP}, {"SIGSYS", SIGSYS},       {"SIGTERM", SIGTERM},   {"SIGTRAP", SIGTRAP},
    {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN},     {"SIGTTOU", SIGTTOU},   {"SIGURG", SIGURG},
    {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2},     {"SIGVTALRM", SIGVTALRM},
    {"SIGWINCH", SIGWINCH}, {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},
    {NULL, 0},
};

/* Linux's real-time range as the kernel sees it (glibc reserves two). */
#define KERNEL_SIGRTMIN 32
#define KERNEL_SIGRTMAX 64

const char *cli_signal_name(int sig)
{
    for (int i = 0; signals[i].name; i++)
        if (signals[i].num == sig)
            return signals[i].name;
    return NULL;
}

int cli_parse_signal(const char *s, err_t *err)
{
    if (!s || !*s)
        return err_make(err, EINVAL, "unknown signal \"%s\"", s ? s : "");
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (end != s && !*end) {
        if (errno || n < 0 || n > KERNEL_SIGRTMAX)
            return err_make(err, EINVAL, "unknown signal \"%s\"", s);
        return (int)n;
    }
    char up[32];
    size_t len = strlen(s);
    if (len + 4 > sizeof up)
        return err_make(err, EINVAL, "unknown signal \"%s\"", s);
    size_t k = 0;
    if (strncasecmp(s, "SIG", 3) != 0) {
        memcpy(up, "SIG", 3);
        k = 3;
    }
    for (size_t j = 0; j <= len; j++)
        up[k + j] = (char)toupper((unsigned char)s[j]);
    for (int i = 0; signals[i].name; i++)
        if (!strcmp(up, signals[i].name))
            return signals[i].num;
    /* SIGRTMIN, SIGRTMIN+n, SIGRTMAX, SIGRTMAX-n */
    int base = 0, sign = 0;
    const char *p = NULL;
    if (!strncmp(up, "SIGRTMIN", 8))
        base = KERNEL_SIGRTMIN, sign = 1, p = up + 8;
    else if (!strncmp(up, "SIGRTMAX", 8))
        base = KERNEL_SIGRTMAX, sign = -1, p = up + 8;
    if (p) {
        if (!*p)
            return base;
        if ((sign > 0 && *p == '+') || (sign < 0 && *p == '-')) {
            long off = strtol(p + 1, &end, 10);
            if (end != p + 1 && !*end && off >= 0 && off <= KERNEL_SIGRTMAX - KERNEL_SIGRTMIN)
                return base + sign * (int)off;
        }
    }
    return err_make(err, EINVAL, "unknown signal \"%s\"", s);
}

/* ---- ids ---------------------------------------------------------------- */

int cli_validate_id(const char *id, err_t *err)
{
    if (!id || !*id)
        return err_make(err, EINVAL, "container id cannot be empty");
    size_t n = strlen(id);
    if (n > CLI_ID_MAX || !strcmp(id, ".") || !strcmp(id, ".."))
        return err_make(err, EINVAL, "invalid container ID format");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        /* runc: [\w+-.] = [A-Za-z0-9_] and '+' ',' '-' '.'; the agent's
         * ids exclude '+' and ',', so husk refuses them here */
        if (!(isalnum(c) || c == '_' || c == '-' || c == '.'))
            return err_make(err, EINVAL, "invalid container ID format");
    }
    return 0;
}

/* ---- units -------------------------------------------------------------- */

int cli_parse_bytes(const char *s, int64_t *out, err_t *err)
{
    /* go-units RAMInBytes: ^(\d+(\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$ */
    if (!s || !*s)
        return err_make(err, EINVAL, "invalid size: '%s'", s ? s : "");
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0 || !isdigit((unsigned char)s[0]))
        return err_make(err, EINVAL, "invalid size: '%s'", s);
    const char *p = end;
    if (*p == ' ')
        p++;
    double mul = 1;
    switch (tolower((unsigned char)*p)) {
    case 'k': mul = 1024.0; p++; break;
    case 'm': mul = 1024.0 * 1024; p++; break;
    case 'g': mul = 1024.0 * 1024 * 1024; p++; break;
    case 't': mul = 1024.0 * 1024 * 1024 * 1024; p++; break;
    case 'p': mul = 1024.0 * 1024 * 1024 * 1024 * 1024; p++; break;
    default: break;
    }
    if (mul > 1 && tolower((unsigned char)*p) == 'i')
        p++;
    if (tolower((unsigned char)*p) == 'b')
        p++;
    if (*p)
        return err_make(err, EINVAL, "invalid size: '%s'", s);
    double r = v * mul;
    if (r > (double)INT64_MAX)
        return err_make(err, ERANGE, "invalid size: '%s'", s);
    *out = (int64_t)r;
    return 0;
}

int cli_parse_duration(const char *s, int64_t *ns, err_t *err)
{
    static const struct {
        const char *unit;
        double ns;
    } units[] = {{"ns", 1},         {"us", 1e3},  {"µs", 1e3}, {"ms", 1e6},
                 {"s", 1e9},        {"m", 60e9},  {"h", 3600e9}, {NULL, 0}};
    const char *p = s;
    double total = 0;
    int neg = 0;
    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    if (!strcmp(p, "0")) {
        *ns = 0;
        return 0;
    }
    if (!*p)
        return err_make(err, EINVAL, "time: invalid duration \"%s\"", s);
    while (*p) {
        char *end;
        if (!isdigit((unsigned char)*p) && *p != '.')
            return err_make(err, EINVAL, "time: invalid duration \"%s\"", s);
        double v = strtod(p, &end);
        if (end == p)
            return err_make(err, EINVAL, "time: invalid duration \"%s\"", s);
        p = end;
        int u = -1;
        size_t best = 0;
        for (int k = 0; units[k].unit; k++) {
            size_t l = strlen(units[k].unit);
            if (!strncmp(p, units[k].unit, l) && l > best)
                u = k, best = l;
        }
        if (u < 0)
            return err_make(err, EINVAL, "time: missing unit in duration \"%s\"", s);
        total += v * units[u].ns;
        p += best;
    }
    *ns = (int64_t)(neg ? -total : total);
    return 0;
}

/* ---- update -> linux.resources ------------------------------------------ */

static int upd_int(const cli_opts_t *o, enum cli_upd k, bool bytes, bool allow_neg, json_t *obj,
                   const char *key, err_t *err)
{
    const char *v = o->upd[k];
    if (!v)
        return 0;
    int64_t n;
    if (bytes && strcmp(v, "-1") != 0) {
        if (cli_parse_bytes(v, &n, err) < 0)
            return err_wrap(err, "invalid value for %s", key);
    } else {
        char *end;
        errno = 0;
        long long l = strtoll(v, &end, 10);
        if (errno || end == v || *end || (!allow_neg && l < 0))
            return err_make(err, EINVAL, "invalid value for %s: %s", key, v);
        n = l;
    }
    json_object_set_new(obj, key, json_integer(n));
    return 0;
}

bool cli_update_has_resources(const cli_opts_t *o)
{
    if (o->resources)
        return true;
    for (int k = 0; k < CLI_UPD_N; k++)
        if (o->upd[k])
            return true;
    return false;
}

int cli_update_resources_json(const cli_opts_t *o, char **out, err_t *err)
{
    json_t *r = json_object();
    json_t *mem = json_object(), *cpu = json_object(), *blk = json_object(), *pids = json_object();
    int rc = 0;
    if (rc == 0)
        rc = upd_int(o, CLI_UPD_MEMORY, true, true, mem, "limit", err);
    if (rc == 0)
        rc = upd_int(o, CLI_UPD_MEMORY_RESERVATION, true, true, mem, "reservation", err);
    if (rc == 0)
        rc = upd_int(o, CLI_UPD_MEMORY_SWAP, true, true, mem, "swap", err);
    if (rc == 0)
        rc = upd_int(o, CLI_UPD_KERNEL_MEMORY, true, true, mem, "kernel", err);
    if (rc == 0)
        rc = upd_int(o, CLI_UPD_KERNEL_MEMORY_TCP, true, true, mem, "kernelTCP", err);
    if (rc == 0)
        rc = upd_int(o, CLI_UPD_CPU_SHARE, false, false, cpu, "shares", err);
    if (rc == 0)
        rc = upd_int(o, CLI_UPD_CPU_QUOTA, false, true, cpu, "quota", err);
    if (rc == 0)
        rc = upd_int(o, CLI_UPD_CPU_PERIOD, false, false, cpu, "period", err);
    if (rc == 0)
        rc = upd_int(o, CLI_UPD_CPU_RT_RUNTIME, false, true, cpu, "realtimeRuntime", err);
    if (rc == 0)
        rc = upd_int(o, CLI_UPD_CPU_RT_PERIOD, false, false, cpu, "realtimePeriod", err);
    if (rc == 0 && o->upd[CLI_UPD_CPUSET_CPUS])
        json_object_set_new(cpu, "cpus", json_string(o->upd[CLI_UPD_CPUSET_CPUS]));
    if (rc == 0 && o->upd[CLI_UPD_CPUSET_MEMS])
        json_object_set_new(cpu, "mems", json_string(o->upd[CLI_UPD_CPUSET_MEMS]));
    if (rc == 0)
        rc = upd_int(o, CLI_UPD_BLKIO_WEIGHT, false, false, blk, "weight", err);
    if (rc == 0)
        rc = upd_int(o, CLI_UPD_PIDS_LIMIT, false, true, pids, "limit", err);
    if (rc == 0 && (o->upd[CLI_UPD_L3_CACHE_SCHEMA] || o->upd[CLI_UPD_MEM_BW_SCHEMA]))
        rc = err_make(err, ENOTSUP, "Intel RDT is not supported in a VM sandbox");
    if (rc == 0) {
        if (json_object_size(mem))
            json_object_set(r, "memory", mem);
        if (json_object_size(cpu))
            json_object_set(r, "cpu", cpu);
        if (json_object_size(blk))
            json_object_set(r, "blockIO", blk);
        if (json_object_size(pids))
            json_object_set(r, "pids", pids);
        *out = json_dumps(r, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!*out)
            abort();
    }
    json_decref(mem);
    json_decref(cpu);
    json_decref(blk);
    json_decref(pids);
    json_decref(r);
    return rc;
}
