/* cli_format: the bytes runc prints, reproduced.
 *
 * runc is a Go program: its JSON is encoding/json (struct fields in
 * declaration order, map keys sorted, <>& escaped as \u003c..., indent by
 * MarshalIndent or Encoder.SetIndent), its table is text/tabwriter, its
 * times are RFC3339Nano with trailing zeros trimmed, and its error lines
 * are logrus's text or JSON formatter.  Documents are built as jansson
 * values (insertion order kept) and written by a Go-compatible dumper. */
#include "services/cli.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/xalloc.h"

/* ---- buffer --------------------------------------------------------------- */

void cli_buf_add(cli_buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p)
            abort();
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void cli_buf_puts(cli_buf_t *b, const char *s)
{
    cli_buf_add(b, s, strlen(s));
}

void cli_buf_printf(cli_buf_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < (int)sizeof tmp) {
        cli_buf_add(b, tmp, (size_t)n);
        return;
    }
    char *big = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    cli_buf_add(b, big, (size_t)n);
    free(big);
}

char *cli_buf_take(cli_buf_t *b)
{
    if (!b->s)
        cli_buf_add(b, "", 0);
    char *s = b->s;
    b->s = NULL;
    b->len = b->cap = 0;
    return s;
}

/* ---- Go encoding/json ------------------------------------------------------ */

void cli_json_quote(cli_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    cli_buf_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        char esc[8];
        switch (c) {
        case '"': cli_buf_add(b, "\\\"", 2); continue;
        case '\\': cli_buf_add(b, "\\\\", 2); continue;
        case '\n': cli_buf_add(b, "\\n", 2); continue;
        case '\r': cli_buf_add(b, "\\r", 2); continue;
        case '\t': cli_buf_add(b, "\\t", 2); continue;
        default: break;
        }
        if (c < 0x20 || c == '<' || c == '>' || c == '&') {
            esc[0] = '\\', esc[1] = 'u', esc[2] = '0', esc[3] = '0';
            esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
            cli_buf_add(b, esc, 6);
            continue;
        }
        /* U+2028 and U+2029 (E2 80 A8/A9) are escaped too */
        if (c == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
            cli_buf_add(b, p[2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
            p += 2;
            continue;
        }
        cli_buf_add(b, (const char *)p, 1);
    }
    cli_buf_add(b, "\"", 1);
}

static void newline_indent(cli_buf_t *b, const char *indent, int depth)
{
    cli_buf_add(b, "\n", 1);
    for (int i = 0; i < depth; i++)
        cli_buf_puts(b, indent);
}

static void format_real(cli_buf_t *b, double d)
{
    /* Go: shortest representation; 'e' form only for very small/large */
    char tmp[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    double a = fabs(d);
    if (a != 0 && (a < 1e-6 || a >= 1e21)) {
        cli_buf_puts(b, tmp);
        return;
    }
    snprintf(tmp, sizeof tmp, "%.17f", d);
    /* trim to the shortest exact form */
    char best[64];
    for (int prec = 0; prec <= 17; prec++) {
        snprintf(best, sizeof best, "%.*f", prec, d);
        if (strtod(best, NULL) == d)
            break;
    }
    cli_buf_puts(b, best);
}

/* MarshalIndent(v, "", indent) when indent != NULL, else Marshal. */
static void go_dump(cli_buf_t *b, json_t *v, const char *indent, int depth)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (!json_object_size(v)) {
            cli_buf_puts(b, "{}");
            return;
        }
        cli_buf_puts(b, "{");
        const char *k;
        json_t *x;
        int first = 1;
        json_object_foreach(v, k, x)
        {
            if (!first)
                cli_buf_puts(b, ",");
            first = 0;
            if (indent)
                newline_indent(b, indent, depth + 1);
            cli_json_quote(b, k);
            cli_buf_puts(b, indent ? ": " : ":");
            go_dump(b, x, indent, depth + 1);
        }
        if (indent)
            newline_indent(b, indent, depth);
        cli_buf_puts(b, "}");
        return;
    }
    case JSON_ARRAY: {
        if (!json_array_size(v)) {
            cli_buf_puts(b, "[]");
            return;
        }
        cli_buf_puts(b, "[");
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            if (i)
                cli_buf_puts(b, ",");
            if (indent)
                newline_indent(b, indent, depth + 1);
            go_dump(b, x, indent, depth + 1);
        }
        if (indent)
            newline_indent(b, indent, depth);
        cli_buf_puts(b, "]");
        return;
    }
    case JSON_STRING: cli_json_quote(b, json_string_value(v)); return;
    case JSON_INTEGER: cli_buf_printf(b, "%lld", (long long)json_integer_value(v)); return;
    case JSON_REAL: format_real(b, json_real_value(v)); return;
    case JSON_TRUE: cli_buf_puts(b, "true"); return;
    case JSON_FALSE: cli_buf_puts(b, "false"); return;
    case JSON_NULL: cli_buf_puts(b, "null"); return;
    }
}

static json_t *strv_json(const char *const *v)
{
    json_t *a = json_array();
    for (; v && *v; v++)
        json_array_append_new(a, json_string(*v));
    return a;
}

/* ---- times ------------------------------------------------------------------ */

void cli_format_rfc3339nano(int64_t ns, char out[40])
{
    time_t sec = (time_t)(ns / 1000000000);
    long frac = (long)(ns % 1000000000);
    if (frac < 0) {
        frac += 1000000000;
        sec -= 1;
    }
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac) {
        char f[16];
        snprintf(f, sizeof f, ".%09ld", frac);
        size_t l = strlen(f);
        while (f[l - 1] == '0')
            f[--l] = 0;
        memcpy(out + n, f, l);
        n += l;
    }
    out[n++] = 'Z';
    out[n] = 0;
}

/* ---- state and list ------------------------------------------------------------ */

static int kv_cmp(const void *a, const void *b)
{
    const char *const *x = a, *const *y = b;
    return strcmp(x[0], y[0]);
}

static json_t *state_json(const cli_state_t *st)
{
    json_t *o = json_object();
    char created[40];
    cli_format_rfc3339nano(st->created_ns, created);
    json_object_set_new(o, "ociVersion", json_string(st->oci_version ? st->oci_version
                                                                     : CLI_OCI_VERSION));
    json_object_set_new(o, "id", json_string(st->id ? st->id : ""));
    json_object_set_new(o, "pid", json_integer(st->pid));
    json_object_set_new(o, "status", json_string(st->status ? st->status : ""));
    json_object_set_new(o, "bundle", json_string(st->bundle ? st->bundle : ""));
    json_object_set_new(o, "rootfs", json_string(st->rootfs ? st->rootfs : ""));
    json_object_set_new(o, "created", json_string(created));
    size_t n = 0;
    while (st->annotations && st->annotations[2 * n])
        n++;
    if (n) { /* omitempty; Go sorts map keys */
        const char **kv = xmalloc(2 * n * sizeof *kv);
        memcpy(kv, st->annotations, 2 * n * sizeof *kv);
        qsort(kv, n, 2 * sizeof *kv, kv_cmp);
        json_t *a = json_object();
        for (size_t i = 0; i < n; i++)
            json_object_set_new(a, kv[2 * i], json_string(kv[2 * i + 1] ? kv[2 * i + 1] : ""));
        json_object_set_new(o, "annotations", a);
        free(kv);
    }
    json_object_set_new(o, "owner", json_string(st->owner ? st->owner : ""));
    return o;
}

char *cli_format_state(const cli_state_t *st)
{
    cli_buf_t b = {0};
    json_t *o = state_json(st);
    go_dump(&b, o, "  ", 0);
    json_decref(o);
    return cli_buf_take(&b);
}

char *cli_format_list_json(const cli_state_t *sts, size_t n)
{
    cli_buf_t b = {0};
    if (!n) {
        cli_buf_puts(&b, "null\n");
        return cli_buf_take(&b);
    }
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, state_json(&sts[i]));
    go_dump(&b, a, NULL, 0);
    json_decref(a);
    cli_buf_puts(&b, "\n");
    return cli_buf_take(&b);
}

/* text/tabwriter(minwidth, tabwidth 1, padding, ' ', 0) for rows of
 * cells where the last cell of each row is not tab-terminated. */
static char *tabwrite(char ***rows, size_t nrows, size_t ncols, size_t minwidth, size_t padding)
{
    size_t *w = xcalloc(ncols, sizeof *w);
    for (size_t r = 0; r < nrows; r++)
        for (size_t c = 0; c + 1 < ncols; c++) {
            size_t l = strlen(rows[r][c]) + padding;
            if (l < minwidth)
                l = minwidth;
            if (l > w[c])
                w[c] = l;
        }
    cli_buf_t b = {0};
    for (size_t r = 0; r < nrows; r++) {
        for (size_t c = 0; c < ncols; c++) {
            cli_buf_puts(&b, rows[r][c]);
            if (c + 1 < ncols)
                for (size_t k = strlen(rows[r][c]); k < w[c]; k++)
                    cli_buf_add(&b, " ", 1);
        }
        cli_buf_add(&b, "\n", 1);
    }
    free(w);
    return cli_buf_take(&b);
}

char *cli_format_list_table(const cli_state_t *sts, size_t n)
{
    enum { NC = 6 };
    char ***rows = calloc(n + 1, sizeof *rows);
    char (*pids)[24] = calloc(n + 1, sizeof *pids);
    char (*created)[40] = calloc(n + 1, sizeof *created);
    if (!rows || !pids || !created)
        abort();
    static char *header[NC] = {"ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"};
    rows[0] = header;
    for (size_t i = 0; i < n; i++) {
        rows[i + 1] = xcalloc(NC, sizeof(char *));
        snprintf(pids[i], sizeof pids[i], "%ld", sts[i].pid);
        cli_format_rfc3339nano(sts[i].created_ns, created[i]);
        rows[i + 1][0] = (char *)(sts[i].id ? sts[i].id : "");
        rows[i + 1][1] = pids[i];
        rows[i + 1][2] = (char *)(sts[i].status ? sts[i].status : "");
        rows[i + 1][3] = (char *)(sts[i].bundle ? sts[i].bundle : "");
        rows[i + 1][4] = created[i];
        rows[i + 1][5] = (char *)(sts[i].owner ? sts[i].owner : "");
    }
    char *s = tabwrite(rows, n + 1, NC, 12, 3);
    for (size_t i = 1; i <= n; i++)
        free(rows[i]);
    free(rows);
    free(pids);
    free(created);
    return s;
}

char *cli_format_list_quiet(const cli_state_t *sts, size_t n)
{
    cli_buf_t b = {0};
    for (size_t i = 0; i < n; i++) {
        cli_buf_puts(&b, sts[i].id ? sts[i].id : "");
        cli_buf_puts(&b, "\n");
    }
    return cli_buf_take(&b);
}

/* ---- ps ------------------------------------------------------------------------- */

char *cli_format_ps_json(const uint64_t *pids, size_t n)
{
    cli_buf_t b = {0};
    cli_buf_puts(&b, "[");
    for (size_t i = 0; i < n; i++)
        cli_buf_printf(&b, "%s%llu", i ? "," : "", (unsigned long long)pids[i]);
    cli_buf_puts(&b, "]\n");
    return cli_buf_take(&b);
}

char *cli_format_ps_table(const uint64_t *pids, size_t n)
{
    cli_buf_t b = {0};
    cli_buf_puts(&b, "PID\n");
    for (size_t i = 0; i < n; i++)
        cli_buf_printf(&b, "%llu\n", (unsigned long long)pids[i]);
    return cli_buf_take(&b);
}

/* ---- version ---------------------------------------------------------------------- */

char *cli_format_version(const char *version, const char *commit, const char *libseccomp,
                         const char *qemu)
{
    cli_buf_t b = {0};
    cli_buf_printf(&b, "husk version %s\ncommit: %s\nspec: %s\n", version, commit,
                   CLI_OCI_VERSION);
    if (libseccomp)
        cli_buf_printf(&b, "libseccomp: %s\n", libseccomp);
    if (qemu)
        cli_buf_printf(&b, "qemu: %s\n", qemu);
    return cli_buf_take(&b);
}

/* ---- spec ---------------------------------------------------------------------------- */

static json_t *mount_json(const char *dst, const char *type, const char *src,
                          const char *const *opts)
{
    json_t *m = json_object();
    json_object_set_new(m, "destination", json_string(dst));
    json_object_set_new(m, "type", json_string(type));
    json_object_set_new(m, "source", json_string(src));
    if (opts)
        json_object_set_new(m, "options", strv_json(opts));
    return m;
}

static json_t *idmap_json(unsigned host)
{
    json_t *a = json_array(), *m = json_object();
    json_object_set_new(m, "containerID", json_integer(0));
    json_object_set_new(m, "hostID", json_integer(host));
    json_object_set_new(m, "size", json_integer(1));
    json_array_append_new(a, m);
    return a;
}

char *cli_format_spec(bool rootless, unsigned uid, unsigned gid)
{
    static const char *const caps[] = {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE",
                                       NULL};
    static const char *const env[] = {
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm", NULL};
    static const char *const args[] = {"sh", NULL};
    json_t *s = json_object();
    json_object_set_new(s, "ociVersion", json_string(CLI_OCI_VERSION));

    json_t *p = json_object();
    json_object_set_new(p, "terminal", json_true());
    json_t *user = json_object();
    json_object_set_new(user, "uid", json_integer(0));
    json_object_set_new(user, "gid", json_integer(0));
    json_object_set_new(p, "user", user);
    json_object_set_new(p, "args", strv_json(args));
    json_object_set_new(p, "env", strv_json(env));
    json_object_set_new(p, "cwd", json_string("/"));
    json_t *c = json_object();
    json_object_set_new(c, "bounding", strv_json(caps));
    json_object_set_new(c, "effective", strv_json(caps));
    json_object_set_new(c, "permitted", strv_json(caps));
    json_object_set_new(c, "ambient", strv_json(caps));
    json_object_set_new(p, "capabilities", c);
    json_t *rl = json_object();
    json_object_set_new(rl, "type", json_string("RLIMIT_NOFILE"));
    json_object_set_new(rl, "hard", json_integer(1024));
    json_object_set_new(rl, "soft", json_integer(1024));
    json_t *rls = json_array();
    json_array_append_new(rls, rl);
    json_object_set_new(p, "rlimits", rls);
    json_object_set_new(p, "noNewPrivileges", json_true());
    json_object_set_new(s, "process", p);

    json_t *root = json_object();
    json_object_set_new(root, "path", json_string("rootfs"));
    json_object_set_new(root, "readonly", json_true());
    json_object_set_new(s, "root", root);
    json_object_set_new(s, "hostname", json_string("runc"));

    static const char *const dev_o[] = {"nosuid", "strictatime", "mode=755", "size=65536k", NULL};
    static const char *const pts_o[] = {"nosuid", "noexec",    "newinstance", "ptmxmode=0666",
                                        "mode=0620", "gid=5", NULL};
    static const char *const pts_o_rootless[] = {"nosuid",        "noexec",    "newinstance",
                                                 "ptmxmode=0666", "mode=0620", NULL};
    static const char *const shm_o[] = {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k",
                                        NULL};
    static const char *const mq_o[] = {"nosuid", "noexec", "nodev", NULL};
    static const char *const sys_o[] = {"nosuid", "noexec", "nodev", "ro", NULL};
    static const char *const sys_o_rootless[] = {"rbind", "nosuid", "noexec", "nodev", "ro", NULL};
    static const char *const cg_o[] = {"nosuid", "noexec", "nodev", "relatime", "ro", NULL};
    json_t *m = json_array();
    json_array_append_new(m, mount_json("/proc", "proc", "proc", NULL));
    json_array_append_new(m, mount_json("/dev", "tmpfs", "tmpfs", dev_o));
    json_array_append_new(m,
                          mount_json("/dev/pts", "devpts", "devpts", rootless ? pts_o_rootless : pts_o));
    json_array_append_new(m, mount_json("/dev/shm", "tmpfs", "shm", shm_o));
    json_array_append_new(m, mount_json("/dev/mqueue", "mqueue", "mqueue", mq_o));
    if (rootless)
        json_array_append_new(m, mount_json("/sys", "none", "/sys", sys_o_rootless));
    else
        json_array_append_new(m, mount_json("/sys", "sysfs", "sysfs", sys_o));
    json_array_append_new(m, mount_json("/sys/fs/cgroup", "cgroup", "cgroup", cg_o));
    json_object_set_new(s, "mounts", m);

    json_t *l = json_object();
    if (rootless) {
        json_object_set_new(l, "uidMappings", idmap_json(uid));
        json_object_set_new(l, "gidMappings", idmap_json(gid));
    } else {
        json_t *res = json_object(), *devs = json_array(), *d = json_object();
        json_object_set_new(d, "allow", json_false());
        json_object_set_new(d, "access", json_string("rwm"));
        json_array_append_new(devs, d);
        json_object_set_new(res, "devices", devs);
        json_object_set_new(l, "resources", res);
    }
    static const char *const ns[] = {"pid", "network", "ipc", "uts", "mount", NULL};
    static const char *const ns_rootless[] = {"pid", "ipc", "uts", "mount", "user", NULL};
    json_t *nss = json_array();
    for (const char *const *n = rootless ? ns_rootless : ns; *n; n++) {
        json_t *o = json_object();
        json_object_set_new(o, "type", json_string(*n));
        json_array_append_new(nss, o);
    }
    json_object_set_new(l, "namespaces", nss);
    static const char *const masked[] = {
        "/proc/acpi",      "/proc/asound",      "/proc/kcore",       "/proc/keys",
        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
        "/sys/firmware",   "/proc/scsi",        NULL};
    static const char *const ro[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                     "/proc/sysrq-trigger", NULL};
    json_object_set_new(l, "maskedPaths", strv_json(masked));
    json_object_set_new(l, "readonlyPaths", strv_json(ro));
    json_object_set_new(s, "linux", l);

    cli_buf_t b = {0};
    go_dump(&b, s, "\t", 0);
    json_decref(s);
    return cli_buf_take(&b);
}

/* ---- features ------------------------------------------------------------------------ */

char *cli_format_features(const char *version, const char *commit, const char *libseccomp)
{
    static const char *const hooks[] = {"prestart",         "createRuntime", "createContainer",
                                        "startContainer",   "poststart",     "poststop",
                                        NULL};
    /* what agent/guest/mounts.c applies (sorted) */
    static const char *const mount_opts[] = {
        "async",      "atime",     "bind",       "defaults",    "dev",         "diratime",
        "dirsync",    "exec",      "iversion",   "lazytime",    "loud",        "mand",
        "noatime",    "nodev",     "nodiratime", "noexec",      "noiversion",  "nolazytime",
        "nomand",     "norelatime", "nostrictatime", "nosuid",  "private",     "rbind",
        "relatime",   "remount",   "ro",         "rprivate",    "rshared",     "rslave",
        "runbindable", "rw",       "shared",     "silent",      "slave",       "strictatime",
        "suid",       "sync",      "unbindable", NULL};
    static const char *const nss[] = {"cgroup", "ipc", "mount", "network", "pid", "user", "uts",
                                      NULL};
    static const char *const actions[] = {
        "SCMP_ACT_ALLOW",     "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP", NULL};
    static const char *const ops[] = {"SCMP_CMP_EQ", "SCMP_CMP_GE",        "SCMP_CMP_GT",
                                      "SCMP_CMP_LE", "SCMP_CMP_LT",        "SCMP_CMP_MASKED_EQ",
                                      "SCMP_CMP_NE", NULL};
    static const char *const archs[] = {"SCMP_ARCH_AARCH64", "SCMP_ARCH_X32", "SCMP_ARCH_X86",
                                        "SCMP_ARCH_X86_64", NULL};
    static const char *const capnames[] = {
        "CAP_CHOWN",          "CAP_DAC_OVERRIDE",   "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
        "CAP_FSETID",         "CAP_KILL",           "CAP_SETGID",          "CAP_SETUID",
        "CAP_SETPCAP",        "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",      "CAP_NET_RAW",        "CAP_IPC_LOCK",        "CAP_IPC_OWNER",
        "CAP_SYS_MODULE",     "CAP_SYS_RAWIO",      "CAP_SYS_CHROOT",      "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT",      "CAP_SYS_ADMIN",      "CAP_SYS_BOOT",        "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE",   "CAP_SYS_TIME",       "CAP_SYS_TTY_CONFIG",  "CAP_MKNOD",
        "CAP_LEASE",          "CAP_AUDIT_WRITE",    "CAP_AUDIT_CONTROL",   "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE",   "CAP_MAC_ADMIN",      "CAP_SYSLOG",          "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND",  "CAP_AUDIT_READ",     "CAP_PERFMON",         "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE", NULL};
    json_t *f = json_object();
    json_object_set_new(f, "ociVersionMin", json_string("1.0.0"));
    json_object_set_new(f, "ociVersionMax", json_string(CLI_OCI_VERSION));
    json_object_set_new(f, "hooks", strv_json(hooks));
    json_object_set_new(f, "mountOptions", strv_json(mount_opts));
    json_t *l = json_object();
    json_object_set_new(l, "namespaces", strv_json(nss));
    json_object_set_new(l, "capabilities", strv_json(capnames));
    json_t *cg = json_object();
    json_object_set_new(cg, "v1", json_false());
    json_object_set_new(cg, "v2", json_true());
    json_object_set_new(cg, "systemd", json_false());
    json_object_set_new(cg, "systemdUser", json_false());
    json_object_set_new(l, "cgroup", cg);
    json_t *sc = json_object();
    json_object_set_new(sc, "enabled", json_true());
    json_object_set_new(sc, "actions", strv_json(actions));
    json_object_set_new(sc, "operators", strv_json(ops));
    json_object_set_new(sc, "archs", strv_json(archs));
    json_object_set_new(l, "seccomp", sc);
    json_t *aa = json_object(), *se = json_object();
    json_object_set_new(aa, "enabled", json_false());
    json_object_set_new(se, "enabled", json_false());
    json_object_set_new(l, "apparmor", aa);
    json_object_set_new(l, "selinux", se);
    json_object_set_new(f, "linux", l);
    json_t *an = json_object(); /* sorted, as a Go map */
    if (libseccomp)
        json_object_set_new(an, "io.github.seccomp.libseccomp.version", json_string(libseccomp));
    json_object_set_new(an, "org.husk.checkpoint.enabled", json_string("false"));
    json_object_set_new(an, "org.husk.commit", json_string(commit));
    json_object_set_new(an, "org.husk.version", json_string(version));
    json_object_set_new(f, "annotations", an);
    cli_buf_t b = {0};
    go_dump(&b, f, "    ", 0);
    json_decref(f);
    cli_buf_puts(&b, "\n");
    return cli_buf_take(&b);
}

/* ---- events ----------------------------------------------------------------------- */

char *cli_format_event(const char *type, const char *id, const char *data_json)
{
    json_t *data = NULL;
    if (data_json) {
        data = json_loads(data_json, JSON_DECODE_ANY, NULL);
        if (!data)
            return NULL;
    }
    json_t *e = json_object();
    json_object_set_new(e, "type", json_string(type));
    json_object_set_new(e, "id", json_string(id));
    if (data)
        json_object_set_new(e, "data", data);
    cli_buf_t b = {0};
    go_dump(&b, e, NULL, 0);
    json_decref(e);
    cli_buf_puts(&b, "\n");
    return cli_buf_take(&b);
}

/* ---- logrus ----------------------------------------------------------------------- */

static bool logrus_needs_quoting(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '/' || c == '@' || c == '^' || c == '+'))
            return true;
    }
    return false;
}

/* Go's strconv.Quote for ASCII control bytes; UTF-8 passes through. */
static void go_quote(cli_buf_t *b, const char *s)
{
    cli_buf_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': cli_buf_puts(b, "\\\""); break;
        case '\\': cli_buf_puts(b, "\\\\"); break;
        case '\a': cli_buf_puts(b, "\\a"); break;
        case '\b': cli_buf_puts(b, "\\b"); break;
        case '\f': cli_buf_puts(b, "\\f"); break;
        case '\n': cli_buf_puts(b, "\\n"); break;
        case '\r': cli_buf_puts(b, "\\r"); break;
        case '\t': cli_buf_puts(b, "\\t"); break;
        case '\v': cli_buf_puts(b, "\\v"); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                cli_buf_printf(b, "\\x%02x", *p);
            else
                cli_buf_add(b, (const char *)p, 1);
        }
    }
    cli_buf_add(b, "\"", 1);
}

char *cli_format_error_line(bool json, const char *level, const char *msg, int64_t now,
                            long utc_offset)
{
    /* Go RFC3339 in the local zone: 2006-01-02T15:04:05Z07:00 */
    time_t t = (time_t)(now + utc_offset);
    struct tm tm;
    gmtime_r(&t, &tm);
    char ts[48];
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    if (utc_offset == 0) {
        snprintf(ts + n, sizeof ts - n, "Z");
    } else {
        long a = utc_offset < 0 ? -utc_offset : utc_offset;
        snprintf(ts + n, sizeof ts - n, "%c%02ld:%02ld", utc_offset < 0 ? '-' : '+', a / 3600,
                 (a % 3600) / 60);
    }
    cli_buf_t b = {0};
    if (json) {
        cli_buf_puts(&b, "{\"level\":");
        cli_json_quote(&b, level);
        cli_buf_puts(&b, ",\"msg\":");
        cli_json_quote(&b, msg);
        cli_buf_puts(&b, ",\"time\":");
        cli_json_quote(&b, ts);
        cli_buf_puts(&b, "}\n");
    } else {
        cli_buf_puts(&b, "time=");
        go_quote(&b, ts);
        cli_buf_printf(&b, " level=%s msg=", level);
        if (logrus_needs_quoting(msg))
            go_quote(&b, msg);
        else
            cli_buf_puts(&b, msg);
        cli_buf_puts(&b, "\n");
    }
    return cli_buf_take(&b);
}
