/* oci/spec: config.json <-> oci_spec_t.  See spec.h. */
#include "oci/spec.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

/* ---- allocation (OOM aborts) ------------------------------------------ */

static char *xstrndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (!p)
        abort();
    return p;
}

/* ---- name tables ------------------------------------------------------ */

static const char *const cap_set_names[OCI_CAP_NSETS] = {
    "bounding", "effective", "inheritable", "permitted", "ambient",
};
static const char *const hook_names[OCI_HOOK_NKINDS] = {
    "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop",
};
static const char *const ns_names[OCI_NS_NTYPES] = {
    "pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time",
};
static const char *const action_names[OCI_SCMP_ACT_NACTIONS] = {
    "SCMP_ACT_KILL",  "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",  "SCMP_ACT_ERRNO",        "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",          "SCMP_ACT_NOTIFY",
};
static const char *const op_names[OCI_SCMP_CMP_NOPS] = {
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE",        "SCMP_CMP_EQ",
    "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
};
static const char *const rlimit_names[] = {
    "RLIMIT_AS",
    "RLIMIT_CORE",
    "RLIMIT_CPU",
    "RLIMIT_DATA",
    "RLIMIT_FSIZE",
    "RLIMIT_LOCKS",
    "RLIMIT_MEMLOCK",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_NOFILE",
    "RLIMIT_NPROC",
    "RLIMIT_RSS",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
    "RLIMIT_SIGPENDING",
    "RLIMIT_STACK",
    NULL,
};

const char *oci_cap_set_name(enum oci_cap_set set)
{
    return (unsigned)set < OCI_CAP_NSETS ? cap_set_names[set] : "?";
}
const char *oci_hook_kind_name(enum oci_hook_kind kind)
{
    return (unsigned)kind < OCI_HOOK_NKINDS ? hook_names[kind] : "?";
}
const char *oci_ns_type_name(enum oci_ns_type type)
{
    return (unsigned)type < OCI_NS_NTYPES ? ns_names[type] : "?";
}
const char *oci_seccomp_action_name(enum oci_seccomp_action a)
{
    return (unsigned)a < OCI_SCMP_ACT_NACTIONS ? action_names[a] : "?";
}
const char *oci_seccomp_op_name(enum oci_seccomp_op op)
{
    return (unsigned)op < OCI_SCMP_CMP_NOPS ? op_names[op] : "?";
}

static int name_index(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], s) == 0)
            return (int)i;
    return -1;
}

/* ---- parse context: the JSON path of the value being read ------------- */

struct pctx {
    err_t *err;
    char path[512];
    size_t len;
};

static size_t push(struct pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t push(struct pctx *c, const char *fmt, ...)
{
    size_t old = c->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->path + c->len, sizeof(c->path) - c->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        c->len += (size_t)n < sizeof(c->path) - c->len ? (size_t)n : sizeof(c->path) - 1 - c->len;
    return old;
}

static size_t push_key(struct pctx *c, const char *key)
{
    return push(c, "%s%s", c->len ? "." : "", key);
}

static size_t push_idx(struct pctx *c, size_t i)
{
    return push(c, "[%zu]", i);
}

static size_t push_mapkey(struct pctx *c, const char *key)
{
    return push(c, "[\"%.64s%s\"]", key, strlen(key) > 64 ? "..." : "");
}

static void pop(struct pctx *c, size_t old)
{
    c->len = old;
    c->path[old] = '\0';
}

static int fail(struct pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct pctx *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return err_make(c->err, EINVAL, "%s: %s", c->len ? c->path : "(document)", msg);
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

/* Absent and null are the same ("omitempty" writers emit either). */
static json_t *get(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

static int missing(struct pctx *c, const char *key)
{
    size_t m = push_key(c, key);
    int r = fail(c, "missing required field");
    pop(c, m);
    return r;
}

/* Value checkers: the path already points at the value. */

static int val_obj(struct pctx *c, json_t *v)
{
    if (!json_is_object(v))
        return fail(c, "expected object, got %s", type_name(v));
    if (json_object_size(v) > OCI_SPEC_MAX_ITEMS)
        return fail(c, "too many entries (%zu, limit %u)", json_object_size(v), OCI_SPEC_MAX_ITEMS);
    return 0;
}

static int val_arr(struct pctx *c, json_t *v)
{
    if (!json_is_array(v))
        return fail(c, "expected array, got %s", type_name(v));
    if (json_array_size(v) > OCI_SPEC_MAX_ITEMS)
        return fail(c, "too many entries (%zu, limit %u)", json_array_size(v), OCI_SPEC_MAX_ITEMS);
    return 0;
}

static int val_str(struct pctx *c, json_t *v, char **out)
{
    if (!json_is_string(v))
        return fail(c, "expected string, got %s", type_name(v));
    size_t n = json_string_length(v);
    if (n > OCI_SPEC_MAX_STRING)
        return fail(c, "string too long (%zu bytes, limit %u)", n, OCI_SPEC_MAX_STRING);
    const char *s = json_string_value(v);
    if (strlen(s) != n)
        return fail(c, "string contains a NUL byte");
    *out = xstrndup(s, n);
    return 0;
}

static int val_int(struct pctx *c, json_t *v, int64_t min, int64_t max, int64_t *out)
{
    if (!json_is_integer(v))
        return fail(c, "expected integer, got %s", type_name(v));
    int64_t x = json_integer_value(v);
    if (x < min || x > max)
        return fail(c, "value %" PRId64 " out of range [%" PRId64 ", %" PRId64 "]", x, min, max);
    *out = x;
    return 0;
}

static int val_bool(struct pctx *c, json_t *v, bool *out)
{
    if (!json_is_boolean(v))
        return fail(c, "expected boolean, got %s", type_name(v));
    *out = json_is_true(v);
    return 0;
}

static int val_strv(struct pctx *c, json_t *v, char ***out, size_t *n_out)
{
    int r = val_arr(c, v);
    if (r < 0)
        return r;
    size_t n = json_array_size(v);
    char **vec = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        size_t m = push_idx(c, i);
        r = val_str(c, json_array_get(v, i), &vec[i]);
        pop(c, m);
        if (r < 0) {
            oci_strv_free(vec);
            return r;
        }
    }
    *out = vec;
    *n_out = n;
    return 0;
}

static void kv_free(oci_kv_t *kv, size_t n)
{
    for (size_t i = 0; kv && i < n; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
}

static int val_strmap(struct pctx *c, json_t *v, oci_kv_t **out, size_t *n_out)
{
    int r = val_obj(c, v);
    if (r < 0)
        return r;
    size_t n = json_object_size(v), i = 0;
    oci_kv_t *kv = xcalloc(n, sizeof(*kv));
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val)
    {
        size_t m = push_mapkey(c, key);
        if (strlen(key) > OCI_SPEC_MAX_STRING)
            r = fail(c, "key too long");
        else
            r = val_str(c, val, &kv[i].value);
        pop(c, m);
        if (r < 0) {
            kv_free(kv, n);
            return r;
        }
        kv[i++].key = xstrndup(key, strlen(key));
    }
    *out = kv;
    *n_out = i;
    return 0;
}

/* Field readers: key is looked up in obj and appended to the path. */

#define FIELD(c, key, expr)                                                                        \
    ({                                                                                             \
        size_t m_ = push_key((c), (key));                                                          \
        int r_ = (expr);                                                                           \
        pop((c), m_);                                                                              \
        r_;                                                                                        \
    })

static int opt_str(struct pctx *c, json_t *obj, const char *key, char **out)
{
    json_t *v = get(obj, key);
    return v ? FIELD(c, key, val_str(c, v, out)) : 0;
}

static int req_str(struct pctx *c, json_t *obj, const char *key, char **out)
{
    json_t *v = get(obj, key);
    return v ? FIELD(c, key, val_str(c, v, out)) : missing(c, key);
}

static int opt_int(struct pctx *c, json_t *obj, const char *key, int64_t min, int64_t max,
                   oci_opt_int_t *out)
{
    json_t *v = get(obj, key);
    if (!v)
        return 0;
    out->set = true;
    return FIELD(c, key, val_int(c, v, min, max, &out->value));
}

static int req_int(struct pctx *c, json_t *obj, const char *key, int64_t min, int64_t max,
                   int64_t *out)
{
    json_t *v = get(obj, key);
    return v ? FIELD(c, key, val_int(c, v, min, max, out)) : missing(c, key);
}

static int req_u32(struct pctx *c, json_t *obj, const char *key, uint32_t *out)
{
    int64_t x = 0;
    int r = req_int(c, obj, key, 0, UINT32_MAX, &x);
    *out = (uint32_t)x;
    return r;
}

static int opt_bool(struct pctx *c, json_t *obj, const char *key, bool *out)
{
    json_t *v = get(obj, key);
    return v ? FIELD(c, key, val_bool(c, v, out)) : 0;
}

static int opt_strv(struct pctx *c, json_t *obj, const char *key, char ***out, size_t *n)
{
    json_t *v = get(obj, key);
    if (!v) {
        *out = xcalloc(1, sizeof(char *));
        *n = 0;
        return 0;
    }
    return FIELD(c, key, val_strv(c, v, out, n));
}

static int opt_strmap(struct pctx *c, json_t *obj, const char *key, oci_kv_t **out, size_t *n)
{
    json_t *v = get(obj, key);
    return v ? FIELD(c, key, val_strmap(c, v, out, n)) : 0;
}

/* An optional object: *out is NULL when absent; r < 0 on a type error. */
static int opt_obj(struct pctx *c, json_t *obj, const char *key, json_t **out)
{
    *out = get(obj, key);
    return *out ? FIELD(c, key, val_obj(c, *out)) : 0;
}

/* Arrays of objects: calls fn(c, elem, &arr[i]) with the path at [i]. */
typedef int (*elem_fn)(struct pctx *c, json_t *v, void *elem);

static int opt_objarr(struct pctx *c, json_t *obj, const char *key, size_t elem_size, elem_fn fn,
                      void **out, size_t *n_out)
{
    json_t *v = get(obj, key);
    if (!v)
        return 0;
    size_t m = push_key(c, key);
    int r = val_arr(c, v);
    if (r < 0) {
        pop(c, m);
        return r;
    }
    size_t n = json_array_size(v);
    char *arr = xcalloc(n, elem_size);
    /* Publish first so that the caller's destructor frees partial work. */
    *out = arr;
    *n_out = 0;
    for (size_t i = 0; i < n; i++) {
        size_t mi = push_idx(c, i);
        json_t *e = json_array_get(v, i);
        r = val_obj(c, e);
        if (r >= 0)
            r = fn(c, e, arr + i * elem_size);
        pop(c, mi);
        *n_out = i + 1;
        if (r < 0)
            break;
    }
    pop(c, m);
    return r < 0 ? r : 0;
}

/* Path checks. */

static bool has_dotdot(const char *p)
{
    for (const char *s = p; (s = strstr(s, "..")) != NULL; s += 2) {
        bool start = s == p || s[-1] == '/';
        bool end = s[2] == '\0' || s[2] == '/';
        if (start && end)
            return true;
    }
    return false;
}

static int check_abs_path(struct pctx *c, const char *key, const char *p, bool no_dotdot)
{
    int r = 0;
    size_t m = push_key(c, key);
    if (p[0] != '/')
        r = fail(c, "must be an absolute path, got \"%.200s\"", p);
    else if (no_dotdot && has_dotdot(p))
        r = fail(c, "must not contain \"..\" components, got \"%.200s\"", p);
    pop(c, m);
    return r;
}

/* ---- process ---------------------------------------------------------- */

static int parse_rlimit(struct pctx *c, json_t *v, void *elem)
{
    oci_rlimit_t *rl = elem;
    int64_t x;
    int r = req_str(c, v, "type", &rl->type);
    if (r < 0)
        return r;
    if (name_index(rlimit_names, sizeof(rlimit_names) / sizeof(*rlimit_names), rl->type) < 0)
        return FIELD(c, "type", fail(c, "unknown rlimit \"%.64s\"", rl->type));
    /* uint64 in the spec; jansson caps integers at INT64_MAX. */
    if ((r = req_int(c, v, "hard", 0, INT64_MAX, &x)) < 0)
        return r;
    rl->hard = (uint64_t)x;
    if ((r = req_int(c, v, "soft", 0, INT64_MAX, &x)) < 0)
        return r;
    rl->soft = (uint64_t)x;
    if (rl->soft > rl->hard)
        return FIELD(c, "soft", fail(c, "greater than hard limit"));
    return 0;
}

static void process_free(oci_process_t *p)
{
    if (!p)
        return;
    free(p->user.additional_gids);
    free(p->user.username);
    oci_strv_free(p->args);
    oci_strv_free(p->env);
    free(p->cwd);
    for (int i = 0; i < OCI_CAP_NSETS; i++)
        oci_strv_free(p->caps[i]);
    for (size_t i = 0; p->rlimits && i < p->n_rlimits; i++)
        free(p->rlimits[i].type);
    free(p->rlimits);
    free(p->apparmor_profile);
    free(p->selinux_label);
    free(p->io_priority_class);
    free(p);
}

static int parse_user(struct pctx *c, json_t *u, oci_user_t *user)
{
    int r;
    if ((r = req_u32(c, u, "uid", &user->uid)) < 0)
        return r;
    if ((r = req_u32(c, u, "gid", &user->gid)) < 0)
        return r;
    if ((r = opt_int(c, u, "umask", 0, 0777, &user->umask)) < 0)
        return r;
    if ((r = opt_str(c, u, "username", &user->username)) < 0)
        return r;
    json_t *g = get(u, "additionalGids");
    if (g) {
        size_t m = push_key(c, "additionalGids");
        r = val_arr(c, g);
        if (r >= 0) {
            user->n_additional_gids = json_array_size(g);
            user->additional_gids = xcalloc(user->n_additional_gids, sizeof(uint32_t));
            for (size_t i = 0; r >= 0 && i < user->n_additional_gids; i++) {
                int64_t x = 0;
                size_t mi = push_idx(c, i);
                r = val_int(c, json_array_get(g, i), 0, UINT32_MAX, &x);
                user->additional_gids[i] = (uint32_t)x;
                pop(c, mi);
            }
        }
        pop(c, m);
    }
    return r < 0 ? r : 0;
}

static int parse_caps(struct pctx *c, json_t *caps, oci_process_t *p)
{
    for (int i = 0; i < OCI_CAP_NSETS; i++) {
        int r = opt_strv(c, caps, cap_set_names[i], &p->caps[i], &p->n_caps[i]);
        if (r < 0)
            return r;
        for (size_t j = 0; j < p->n_caps[i]; j++) {
            if (strncmp(p->caps[i][j], "CAP_", 4) != 0) {
                size_t m = push_key(c, cap_set_names[i]);
                push_idx(c, j);
                r = fail(c, "not a capability name: \"%.64s\"", p->caps[i][j]);
                pop(c, m);
                return r;
            }
        }
    }
    return 0;
}

/* Fills an already zeroed process from object v (path at the process). */
static int parse_process_into(struct pctx *c, json_t *v, oci_process_t *p)
{
    int r;
    json_t *o;

    if ((r = opt_bool(c, v, "terminal", &p->terminal)) < 0)
        return r;
    if ((r = opt_obj(c, v, "consoleSize", &o)) < 0)
        return r;
    if (o) {
        size_t m = push_key(c, "consoleSize");
        p->has_console_size = true;
        r = req_u32(c, o, "height", &p->console_height);
        if (r >= 0)
            r = req_u32(c, o, "width", &p->console_width);
        pop(c, m);
        if (r < 0)
            return r;
    }
    if ((r = opt_obj(c, v, "user", &o)) < 0)
        return r;
    if (!o)
        return missing(c, "user");
    if ((r = FIELD(c, "user", parse_user(c, o, &p->user))) < 0)
        return r;

    json_t *a = get(v, "args");
    if (!a)
        return missing(c, "args");
    if ((r = FIELD(c, "args", val_strv(c, a, &p->args, &p->n_args))) < 0)
        return r;
    if (p->n_args == 0)
        return FIELD(c, "args", fail(c, "must not be empty"));
    if (p->args[0][0] == '\0')
        return FIELD(c, "args[0]", fail(c, "must not be empty"));

    if ((r = opt_strv(c, v, "env", &p->env, &p->n_env)) < 0)
        return r;
    for (size_t i = 0; i < p->n_env; i++) {
        if (!strchr(p->env[i], '=') || p->env[i][0] == '=') {
            size_t m = push_key(c, "env");
            push_idx(c, i);
            r = fail(c, "expected KEY=VALUE, got \"%.64s\"", p->env[i]);
            pop(c, m);
            return r;
        }
    }
    if ((r = req_str(c, v, "cwd", &p->cwd)) < 0)
        return r;
    if ((r = check_abs_path(c, "cwd", p->cwd, false)) < 0)
        return r;

    if ((r = opt_obj(c, v, "capabilities", &o)) < 0)
        return r;
    if (o) {
        p->has_capabilities = true;
        if ((r = FIELD(c, "capabilities", parse_caps(c, o, p))) < 0)
            return r;
    } else {
        for (int i = 0; i < OCI_CAP_NSETS; i++)
            p->caps[i] = xcalloc(1, sizeof(char *));
    }
    if ((r = opt_objarr(c, v, "rlimits", sizeof(oci_rlimit_t), parse_rlimit, (void **)&p->rlimits,
                        &p->n_rlimits)) < 0)
        return r;
    for (size_t i = 0; i < p->n_rlimits; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->rlimits[i].type, p->rlimits[j].type) == 0) {
                size_t m = push_key(c, "rlimits");
                push_idx(c, i);
                r = fail(c, "duplicate rlimit \"%s\"", p->rlimits[i].type);
                pop(c, m);
                return r;
            }
    if ((r = opt_bool(c, v, "noNewPrivileges", &p->no_new_privileges)) < 0)
        return r;
    if ((r = opt_str(c, v, "apparmorProfile", &p->apparmor_profile)) < 0)
        return r;
    if ((r = opt_int(c, v, "oomScoreAdj", -1000, 1000, &p->oom_score_adj)) < 0)
        return r;
    if ((r = opt_str(c, v, "selinuxLabel", &p->selinux_label)) < 0)
        return r;
    if ((r = opt_obj(c, v, "ioPriority", &o)) < 0)
        return r;
    if (o) {
        size_t m = push_key(c, "ioPriority");
        int64_t prio = 0;
        p->has_io_priority = true;
        r = req_str(c, o, "class", &p->io_priority_class);
        if (r >= 0 && strcmp(p->io_priority_class, "IOPRIO_CLASS_RT") != 0 &&
            strcmp(p->io_priority_class, "IOPRIO_CLASS_BE") != 0 &&
            strcmp(p->io_priority_class, "IOPRIO_CLASS_IDLE") != 0)
            r = FIELD(c, "class", fail(c, "unknown class \"%.64s\"", p->io_priority_class));
        if (r >= 0)
            r = req_int(c, o, "priority", 0, 7, &prio);
        p->io_priority = (int)prio;
        pop(c, m);
        if (r < 0)
            return r;
    }
    p->has_scheduler = get(v, "scheduler") != NULL;
    return 0;
}

/* ---- mounts, hooks ---------------------------------------------------- */

static void mount_clear(oci_mount_t *m)
{
    free(m->destination);
    free(m->type);
    free(m->source);
    oci_strv_free(m->options);
}

void oci_mounts_free(oci_mount_t *mounts, size_t n)
{
    for (size_t i = 0; mounts && i < n; i++)
        mount_clear(&mounts[i]);
    free(mounts);
}

static int parse_mount(struct pctx *c, json_t *v, void *elem)
{
    oci_mount_t *m = elem;
    int r;
    if ((r = req_str(c, v, "destination", &m->destination)) < 0)
        return r;
    if ((r = check_abs_path(c, "destination", m->destination, true)) < 0)
        return r;
    if ((r = opt_str(c, v, "type", &m->type)) < 0)
        return r;
    if ((r = opt_str(c, v, "source", &m->source)) < 0)
        return r;
    if ((r = opt_strv(c, v, "options", &m->options, &m->n_options)) < 0)
        return r;
    m->has_idmap = get(v, "uidMappings") || get(v, "gidMappings");
    return 0;
}

static void hook_clear(oci_hook_t *h)
{
    free(h->path);
    oci_strv_free(h->args);
    oci_strv_free(h->env);
}

static int parse_hook(struct pctx *c, json_t *v, void *elem)
{
    oci_hook_t *h = elem;
    int r;
    if ((r = req_str(c, v, "path", &h->path)) < 0)
        return r;
    if ((r = check_abs_path(c, "path", h->path, false)) < 0)
        return r;
    if ((r = opt_strv(c, v, "args", &h->args, &h->n_args)) < 0)
        return r;
    if ((r = opt_strv(c, v, "env", &h->env, &h->n_env)) < 0)
        return r;
    return opt_int(c, v, "timeout", 1, INT32_MAX, &h->timeout);
}

/* ---- linux ------------------------------------------------------------ */

static int parse_ns(struct pctx *c, json_t *v, void *elem)
{
    oci_namespace_t *ns = elem;
    _cleanup_free_ char *type = NULL;
    int r = req_str(c, v, "type", &type);
    if (r < 0)
        return r;
    int t = name_index(ns_names, OCI_NS_NTYPES, type);
    if (t < 0)
        return FIELD(c, "type", fail(c, "unknown namespace type \"%.64s\"", type));
    ns->type = (enum oci_ns_type)t;
    if ((r = opt_str(c, v, "path", &ns->path)) < 0)
        return r;
    if (ns->path && (r = check_abs_path(c, "path", ns->path, false)) < 0)
        return r;
    return 0;
}

static int parse_idmap(struct pctx *c, json_t *v, void *elem)
{
    oci_idmap_t *m = elem;
    int r;
    if ((r = req_u32(c, v, "containerID", &m->container_id)) < 0)
        return r;
    if ((r = req_u32(c, v, "hostID", &m->host_id)) < 0)
        return r;
    if ((r = req_u32(c, v, "size", &m->size)) < 0)
        return r;
    if (m->size == 0)
        return FIELD(c, "size", fail(c, "must be greater than 0"));
    return 0;
}

static int parse_device(struct pctx *c, json_t *v, void *elem)
{
    oci_device_t *d = elem;
    _cleanup_free_ char *type = NULL;
    int r;
    if ((r = req_str(c, v, "path", &d->path)) < 0)
        return r;
    if ((r = check_abs_path(c, "path", d->path, true)) < 0)
        return r;
    if ((r = req_str(c, v, "type", &type)) < 0)
        return r;
    if (strlen(type) != 1 || !strchr("cbup", type[0]))
        return FIELD(c, "type", fail(c, "expected one of c, b, u, p, got \"%.16s\"", type));
    d->type = type[0];
    if (d->type != 'p') {
        if ((r = req_int(c, v, "major", 0, UINT32_MAX, &d->major)) < 0)
            return r;
        if ((r = req_int(c, v, "minor", 0, UINT32_MAX, &d->minor)) < 0)
            return r;
    }
    if ((r = opt_int(c, v, "fileMode", 0, 07777, &d->file_mode)) < 0)
        return r;
    if ((r = opt_int(c, v, "uid", 0, UINT32_MAX, &d->uid)) < 0)
        return r;
    return opt_int(c, v, "gid", 0, UINT32_MAX, &d->gid);
}

static int parse_devrule(struct pctx *c, json_t *v, void *elem)
{
    oci_device_rule_t *d = elem;
    json_t *a = get(v, "allow");
    int r;
    if (!a)
        return missing(c, "allow");
    if ((r = FIELD(c, "allow", val_bool(c, a, &d->allow))) < 0)
        return r;
    if ((r = opt_str(c, v, "type", &d->type)) < 0)
        return r;
    if (d->type && (strlen(d->type) != 1 || !strchr("acb", d->type[0])))
        return FIELD(c, "type", fail(c, "expected one of a, c, b, got \"%.16s\"", d->type));
    if ((r = opt_int(c, v, "major", -1, UINT32_MAX, &d->major)) < 0)
        return r;
    if ((r = opt_int(c, v, "minor", -1, UINT32_MAX, &d->minor)) < 0)
        return r;
    if ((r = opt_str(c, v, "access", &d->access)) < 0)
        return r;
    if (d->access && (!d->access[0] || strspn(d->access, "rwm") != strlen(d->access)))
        return FIELD(c, "access", fail(c, "expected letters of \"rwm\", got \"%.16s\"", d->access));
    return 0;
}

static int parse_hugepage(struct pctx *c, json_t *v, void *elem)
{
    oci_hugepage_limit_t *h = elem;
    int64_t x = 0;
    int r = req_str(c, v, "pageSize", &h->page_size);
    if (r < 0)
        return r;
    if (strspn(h->page_size, "0123456789") == 0 || strchr(h->page_size, '/'))
        return FIELD(c, "pageSize", fail(c, "expected a size like \"2MB\""));
    r = req_int(c, v, "limit", 0, INT64_MAX, &x);
    h->limit = (uint64_t)x;
    return r;
}

static void resources_free(oci_resources_t *res)
{
    if (!res)
        return;
    for (size_t i = 0; res->devices && i < res->n_devices; i++) {
        free(res->devices[i].type);
        free(res->devices[i].access);
    }
    free(res->devices);
    free(res->cpu.cpus);
    free(res->cpu.mems);
    for (size_t i = 0; res->hugepage_limits && i < res->n_hugepage_limits; i++)
        free(res->hugepage_limits[i].page_size);
    free(res->hugepage_limits);
    kv_free(res->unified, res->n_unified);
    free(res);
}

static int parse_resources(struct pctx *c, json_t *v, oci_resources_t *res)
{
    json_t *o;
    int r;
    if ((r = opt_objarr(c, v, "devices", sizeof(oci_device_rule_t), parse_devrule,
                        (void **)&res->devices, &res->n_devices)) < 0)
        return r;
    if ((r = opt_obj(c, v, "memory", &o)) < 0)
        return r;
    if (o) {
        size_t m = push_key(c, "memory");
        bool disable = false;
        if ((r = opt_int(c, o, "limit", -1, INT64_MAX, &res->memory.limit)) >= 0 &&
            (r = opt_int(c, o, "reservation", -1, INT64_MAX, &res->memory.reservation)) >= 0 &&
            (r = opt_int(c, o, "swap", -1, INT64_MAX, &res->memory.swap)) >= 0 &&
            (r = opt_int(c, o, "kernel", -1, INT64_MAX, &res->memory.kernel)) >= 0 &&
            (r = opt_int(c, o, "kernelTCP", -1, INT64_MAX, &res->memory.kernel_tcp)) >= 0 &&
            (r = opt_int(c, o, "swappiness", 0, 100, &res->memory.swappiness)) >= 0 &&
            get(o, "disableOOMKiller")) {
            r = FIELD(c, "disableOOMKiller", val_bool(c, get(o, "disableOOMKiller"), &disable));
            res->memory.disable_oom_killer.set = true;
            res->memory.disable_oom_killer.value = disable;
        }
        pop(c, m);
        if (r < 0)
            return r;
    }
    if ((r = opt_obj(c, v, "cpu", &o)) < 0)
        return r;
    if (o) {
        size_t m = push_key(c, "cpu");
        if ((r = opt_int(c, o, "shares", 0, INT64_MAX, &res->cpu.shares)) >= 0 &&
            (r = opt_int(c, o, "quota", -1, INT64_MAX, &res->cpu.quota)) >= 0 &&
            (r = opt_int(c, o, "burst", 0, INT64_MAX, &res->cpu.burst)) >= 0 &&
            (r = opt_int(c, o, "period", 0, INT64_MAX, &res->cpu.period)) >= 0 &&
            (r = opt_int(c, o, "realtimeRuntime", -1, INT64_MAX, &res->cpu.realtime_runtime)) >=
                0 &&
            (r = opt_int(c, o, "realtimePeriod", 0, INT64_MAX, &res->cpu.realtime_period)) >= 0 &&
            (r = opt_str(c, o, "cpus", &res->cpu.cpus)) >= 0 &&
            (r = opt_str(c, o, "mems", &res->cpu.mems)) >= 0)
            r = opt_int(c, o, "idle", 0, 1, &res->cpu.idle);
        pop(c, m);
        if (r < 0)
            return r;
    }
    if ((r = opt_obj(c, v, "pids", &o)) < 0)
        return r;
    if (o) {
        int64_t x = 0;
        if ((r = FIELD(c, "pids", req_int(c, o, "limit", INT64_MIN, INT64_MAX, &x))) < 0)
            return r;
        res->pids_limit.set = true;
        res->pids_limit.value = x;
    }
    if ((r = opt_obj(c, v, "blockIO", &o)) < 0)
        return r;
    if (o) {
        size_t m = push_key(c, "blockIO");
        if ((r = opt_int(c, o, "weight", 10, 1000, &res->block_io.weight)) >= 0)
            r = opt_int(c, o, "leafWeight", 10, 1000, &res->block_io.leaf_weight);
        pop(c, m);
        if (r < 0)
            return r;
        res->block_io.has_device_rules =
            get(o, "weightDevice") || get(o, "throttleReadBpsDevice") ||
            get(o, "throttleWriteBpsDevice") || get(o, "throttleReadIOPSDevice") ||
            get(o, "throttleWriteIOPSDevice");
    }
    if ((r = opt_objarr(c, v, "hugepageLimits", sizeof(oci_hugepage_limit_t), parse_hugepage,
                        (void **)&res->hugepage_limits, &res->n_hugepage_limits)) < 0)
        return r;
    if ((r = opt_strmap(c, v, "unified", &res->unified, &res->n_unified)) < 0)
        return r;
    for (size_t i = 0; i < res->n_unified; i++) {
        const char *k = res->unified[i].key;
        if (!k[0] || strchr(k, '/') || strcmp(k, ".") == 0 || strcmp(k, "..") == 0) {
            size_t m = push_key(c, "unified");
            push_mapkey(c, k);
            r = fail(c, "not a cgroup file name");
            pop(c, m);
            return r;
        }
    }
    res->has_network = get(v, "network") != NULL;
    res->has_rdma = get(v, "rdma") != NULL;
    return 0;
}

static int parse_scmp_arg(struct pctx *c, json_t *v, void *elem)
{
    oci_seccomp_arg_t *a = elem;
    int64_t x = 0;
    _cleanup_free_ char *op = NULL;
    int r;
    if ((r = req_int(c, v, "index", 0, 5, &x)) < 0)
        return r;
    a->index = (uint32_t)x;
    if ((r = req_int(c, v, "value", INT64_MIN, INT64_MAX, &x)) < 0)
        return r;
    a->value = (uint64_t)x;
    json_t *two = get(v, "valueTwo");
    if (two) {
        if ((r = FIELD(c, "valueTwo", val_int(c, two, INT64_MIN, INT64_MAX, &x))) < 0)
            return r;
        a->value_two = (uint64_t)x;
    }
    if ((r = req_str(c, v, "op", &op)) < 0)
        return r;
    int i = name_index(op_names, OCI_SCMP_CMP_NOPS, op);
    if (i < 0)
        return FIELD(c, "op", fail(c, "unknown operator \"%.64s\"", op));
    a->op = (enum oci_seccomp_op)i;
    return 0;
}

static int parse_action(struct pctx *c, json_t *v, const char *key, enum oci_seccomp_action *out)
{
    _cleanup_free_ char *s = NULL;
    int r = req_str(c, v, key, &s);
    if (r < 0)
        return r;
    int i = name_index(action_names, OCI_SCMP_ACT_NACTIONS, s);
    if (i < 0)
        return FIELD(c, key, fail(c, "unknown action \"%.64s\"", s));
    *out = (enum oci_seccomp_action)i;
    return 0;
}

static int parse_scmp_syscall(struct pctx *c, json_t *v, void *elem)
{
    oci_seccomp_syscall_t *s = elem;
    json_t *names = get(v, "names");
    int r;
    if (!names)
        return missing(c, "names");
    if ((r = FIELD(c, "names", val_strv(c, names, &s->names, &s->n_names))) < 0)
        return r;
    if (s->n_names == 0)
        return FIELD(c, "names", fail(c, "must not be empty"));
    if ((r = parse_action(c, v, "action", &s->action)) < 0)
        return r;
    if ((r = opt_int(c, v, "errnoRet", 0, 4095, &s->errno_ret)) < 0)
        return r;
    return opt_objarr(c, v, "args", sizeof(oci_seccomp_arg_t), parse_scmp_arg, (void **)&s->args,
                      &s->n_args);
}

static void seccomp_free(oci_seccomp_t *s)
{
    if (!s)
        return;
    oci_strv_free(s->architectures);
    oci_strv_free(s->flags);
    free(s->listener_path);
    for (size_t i = 0; s->syscalls && i < s->n_syscalls; i++) {
        oci_strv_free(s->syscalls[i].names);
        free(s->syscalls[i].args);
    }
    free(s->syscalls);
    free(s);
}

static int parse_seccomp(struct pctx *c, json_t *v, oci_seccomp_t *s)
{
    int r;
    if ((r = parse_action(c, v, "defaultAction", &s->default_action)) < 0)
        return r;
    if ((r = opt_int(c, v, "defaultErrnoRet", 0, 4095, &s->default_errno_ret)) < 0)
        return r;
    if ((r = opt_strv(c, v, "architectures", &s->architectures, &s->n_architectures)) < 0)
        return r;
    if ((r = opt_strv(c, v, "flags", &s->flags, &s->n_flags)) < 0)
        return r;
    if ((r = opt_str(c, v, "listenerPath", &s->listener_path)) < 0)
        return r;
    return opt_objarr(c, v, "syscalls", sizeof(oci_seccomp_syscall_t), parse_scmp_syscall,
                      (void **)&s->syscalls, &s->n_syscalls);
}

static void linux_free(oci_linux_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; l->namespaces && i < l->n_namespaces; i++)
        free(l->namespaces[i].path);
    free(l->namespaces);
    free(l->uid_mappings);
    free(l->gid_mappings);
    for (size_t i = 0; l->devices && i < l->n_devices; i++)
        free(l->devices[i].path);
    free(l->devices);
    resources_free(l->resources);
    free(l->cgroups_path);
    kv_free(l->sysctl, l->n_sysctl);
    seccomp_free(l->seccomp);
    free(l->rootfs_propagation);
    oci_strv_free(l->masked_paths);
    oci_strv_free(l->readonly_paths);
    free(l->mount_label);
    free(l->personality_domain);
    oci_strv_free(l->personality_flags);
    free(l);
}

static const char *const propagations[] = {
    "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable",
};

static int parse_linux(struct pctx *c, json_t *v, oci_linux_t *l)
{
    json_t *o;
    int r;
    if ((r = opt_objarr(c, v, "namespaces", sizeof(oci_namespace_t), parse_ns,
                        (void **)&l->namespaces, &l->n_namespaces)) < 0)
        return r;
    for (size_t i = 0; i < l->n_namespaces; i++)
        for (size_t j = 0; j < i; j++)
            if (l->namespaces[i].type == l->namespaces[j].type) {
                size_t m = push_key(c, "namespaces");
                push_idx(c, i);
                r = fail(c, "duplicate namespace type \"%s\"", ns_names[l->namespaces[i].type]);
                pop(c, m);
                return r;
            }
    if ((r = opt_objarr(c, v, "uidMappings", sizeof(oci_idmap_t), parse_idmap,
                        (void **)&l->uid_mappings, &l->n_uid_mappings)) < 0)
        return r;
    if ((r = opt_objarr(c, v, "gidMappings", sizeof(oci_idmap_t), parse_idmap,
                        (void **)&l->gid_mappings, &l->n_gid_mappings)) < 0)
        return r;
    /* The kernel accepts at most 340 lines per map (since 4.15). */
    if (l->n_uid_mappings > 340 || l->n_gid_mappings > 340)
        return FIELD(c, l->n_uid_mappings > 340 ? "uidMappings" : "gidMappings",
                     fail(c, "too many entries (limit 340)"));
    if ((r = opt_objarr(c, v, "devices", sizeof(oci_device_t), parse_device, (void **)&l->devices,
                        &l->n_devices)) < 0)
        return r;
    if ((r = opt_obj(c, v, "resources", &o)) < 0)
        return r;
    if (o) {
        l->resources = xcalloc(1, sizeof(*l->resources));
        if ((r = FIELD(c, "resources", parse_resources(c, o, l->resources))) < 0)
            return r;
    }
    if ((r = opt_str(c, v, "cgroupsPath", &l->cgroups_path)) < 0)
        return r;
    if ((r = opt_strmap(c, v, "sysctl", &l->sysctl, &l->n_sysctl)) < 0)
        return r;
    for (size_t i = 0; i < l->n_sysctl; i++) {
        const char *k = l->sysctl[i].key;
        if (!k[0] || strchr(k, '/') || has_dotdot(k) || strstr(k, "..")) {
            size_t m = push_key(c, "sysctl");
            push_mapkey(c, k);
            r = fail(c, "not a sysctl name");
            pop(c, m);
            return r;
        }
    }
    if ((r = opt_obj(c, v, "seccomp", &o)) < 0)
        return r;
    if (o) {
        l->seccomp = xcalloc(1, sizeof(*l->seccomp));
        if ((r = FIELD(c, "seccomp", parse_seccomp(c, o, l->seccomp))) < 0)
            return r;
    }
    if ((r = opt_str(c, v, "rootfsPropagation", &l->rootfs_propagation)) < 0)
        return r;
    if (l->rootfs_propagation && l->rootfs_propagation[0] &&
        name_index(propagations, sizeof(propagations) / sizeof(*propagations),
                   l->rootfs_propagation) < 0)
        return FIELD(c, "rootfsPropagation",
                     fail(c, "unknown propagation \"%.32s\"", l->rootfs_propagation));
    if ((r = opt_strv(c, v, "maskedPaths", &l->masked_paths, &l->n_masked_paths)) < 0)
        return r;
    if ((r = opt_strv(c, v, "readonlyPaths", &l->readonly_paths, &l->n_readonly_paths)) < 0)
        return r;
    for (int k = 0; k < 2; k++) {
        char **paths = k ? l->readonly_paths : l->masked_paths;
        size_t n = k ? l->n_readonly_paths : l->n_masked_paths;
        for (size_t i = 0; i < n; i++) {
            size_t m = push_key(c, k ? "readonlyPaths" : "maskedPaths");
            push_idx(c, i);
            if (paths[i][0] != '/')
                r = fail(c, "must be an absolute path, got \"%.200s\"", paths[i]);
            else if (has_dotdot(paths[i]))
                r = fail(c, "must not contain \"..\" components");
            pop(c, m);
            if (r < 0)
                return r;
        }
    }
    if ((r = opt_str(c, v, "mountLabel", &l->mount_label)) < 0)
        return r;
    if ((r = opt_obj(c, v, "personality", &o)) < 0)
        return r;
    if (o) {
        size_t m = push_key(c, "personality");
        l->has_personality = true;
        r = req_str(c, o, "domain", &l->personality_domain);
        if (r >= 0 && strcmp(l->personality_domain, "LINUX") != 0 &&
            strcmp(l->personality_domain, "LINUX32") != 0)
            r = FIELD(c, "domain", fail(c, "expected LINUX or LINUX32"));
        if (r >= 0)
            r = opt_strv(c, o, "flags", &l->personality_flags, &l->n_personality_flags);
        pop(c, m);
        if (r < 0)
            return r;
    }
    l->has_intel_rdt = get(v, "intelRdt") != NULL;
    l->has_time_offsets = get(v, "timeOffsets") != NULL;
    return 0;
}

/* ---- the document ----------------------------------------------------- */

static void spec_free(oci_spec_t *s)
{
    if (!s)
        return;
    free(s->oci_version);
    process_free(s->process);
    free(s->root_path);
    free(s->hostname);
    free(s->domainname);
    oci_mounts_free(s->mounts, s->n_mounts);
    for (int k = 0; k < OCI_HOOK_NKINDS; k++) {
        for (size_t i = 0; s->hooks[k] && i < s->n_hooks[k]; i++)
            hook_clear(&s->hooks[k][i]);
        free(s->hooks[k]);
    }
    kv_free(s->annotations, s->n_annotations);
    linux_free(s->lnx);
    json_decref(s->priv_json);
    free(s);
}

void oci_spec_destroy(oci_spec_t **spec_p)
{
    if (!spec_p)
        return;
    spec_free(*spec_p);
    *spec_p = NULL;
}

void oci_process_destroy(oci_process_t **proc_p)
{
    if (!proc_p)
        return;
    process_free(*proc_p);
    *proc_p = NULL;
}

void oci_strv_free(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

static int parse_spec(struct pctx *c, json_t *doc, oci_spec_t *s)
{
    json_t *o;
    int r;
    if ((r = val_obj(c, doc)) < 0)
        return r;
    if ((r = req_str(c, doc, "ociVersion", &s->oci_version)) < 0)
        return r;
    if (strncmp(s->oci_version, "1.", 2) != 0)
        return FIELD(c, "ociVersion",
                     fail(c, "unsupported version \"%.32s\" (want 1.x)", s->oci_version));
    if ((r = opt_obj(c, doc, "root", &o)) < 0)
        return r;
    if (!o)
        return missing(c, "root");
    if ((r = FIELD(c, "root", req_str(c, o, "path", &s->root_path))) < 0)
        return r;
    if (!s->root_path[0])
        return FIELD(c, "root.path", fail(c, "must not be empty"));
    if ((r = FIELD(c, "root", opt_bool(c, o, "readonly", &s->root_readonly))) < 0)
        return r;
    if ((r = opt_obj(c, doc, "process", &o)) < 0)
        return r;
    if (o) {
        s->process = xcalloc(1, sizeof(*s->process));
        if ((r = FIELD(c, "process", parse_process_into(c, o, s->process))) < 0)
            return r;
    }
    if ((r = opt_str(c, doc, "hostname", &s->hostname)) < 0)
        return r;
    if ((r = opt_str(c, doc, "domainname", &s->domainname)) < 0)
        return r;
    if ((r = opt_objarr(c, doc, "mounts", sizeof(oci_mount_t), parse_mount, (void **)&s->mounts,
                        &s->n_mounts)) < 0)
        return r;
    if ((r = opt_obj(c, doc, "hooks", &o)) < 0)
        return r;
    if (o) {
        size_t m = push_key(c, "hooks");
        for (int k = 0; r >= 0 && k < OCI_HOOK_NKINDS; k++)
            r = opt_objarr(c, o, hook_names[k], sizeof(oci_hook_t), parse_hook,
                           (void **)&s->hooks[k], &s->n_hooks[k]);
        pop(c, m);
        if (r < 0)
            return r;
    }
    if ((r = opt_strmap(c, doc, "annotations", &s->annotations, &s->n_annotations)) < 0)
        return r;
    if ((r = opt_obj(c, doc, "linux", &o)) < 0)
        return r;
    if (o) {
        s->lnx = xcalloc(1, sizeof(*s->lnx));
        if ((r = FIELD(c, "linux", parse_linux(c, o, s->lnx))) < 0)
            return r;
    }
    return 0;
}

static int load_json(const char *json, size_t len, json_t **out, err_t *err)
{
    json_error_t jerr;
    if (len > OCI_SPEC_MAX_BYTES)
        return err_make(err, EFBIG, "document too large (%zu bytes, limit %u)", len,
                        OCI_SPEC_MAX_BYTES);
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        return err_make(err, EINVAL, "invalid JSON at line %d column %d: %s", jerr.line,
                        jerr.column, jerr.text);
    *out = doc;
    return 0;
}

int oci_spec_parse(const char *json, size_t len, oci_spec_t **out, err_t *err)
{
    json_t *doc = NULL;
    struct pctx c = {.err = err};
    int r = load_json(json, len, &doc, err);
    if (r < 0)
        return r;
    oci_spec_t *s = xcalloc(1, sizeof(*s));
    s->priv_json = doc;
    r = parse_spec(&c, doc, s);
    if (r < 0) {
        spec_free(s);
        return r;
    }
    *out = s;
    return 0;
}

static int read_file(const char *path, char **buf_out, size_t *len_out, err_t *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return err_errno(err, "open %s", path);
    if (fstat(fd, &st) < 0)
        return err_errno(err, "stat %s", path);
    if (!S_ISREG(st.st_mode))
        return err_make(err, EINVAL, "%s: not a regular file", path);
    if ((uint64_t)st.st_size > OCI_SPEC_MAX_BYTES)
        return err_make(err, EFBIG, "%s: too large (%lld bytes, limit %u)", path,
                        (long long)st.st_size, OCI_SPEC_MAX_BYTES);
    size_t cap = (size_t)st.st_size + 1, len = 0;
    _cleanup_free_ char *buf = xcalloc(1, cap);
    for (;;) {
        if (len == cap) {
            /* The file grew while reading (or /proc-like size 0). */
            if (cap > OCI_SPEC_MAX_BYTES)
                return err_make(err, EFBIG, "%s: too large", path);
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                abort();
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return err_errno(err, "read %s", path);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *buf_out = TAKE_PTR(buf);
    *len_out = len;
    return 0;
}

int oci_spec_load(const char *path, oci_spec_t **out, err_t *err)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    int r = read_file(path, &buf, &len, err);
    if (r < 0)
        return r;
    r = oci_spec_parse(buf, len, out, err);
    if (r < 0)
        return err_wrap(err, "%s", path);
    return 0;
}

int oci_process_parse(const char *json, size_t len, oci_process_t **out, err_t *err)
{
    json_t *doc = NULL;
    struct pctx c = {.err = err};
    int r = load_json(json, len, &doc, err);
    if (r < 0)
        return r;
    oci_process_t *p = xcalloc(1, sizeof(*p));
    r = val_obj(&c, doc);
    if (r >= 0)
        r = parse_process_into(&c, doc, p);
    json_decref(doc);
    if (r < 0) {
        process_free(p);
        return r;
    }
    *out = p;
    return 0;
}

int oci_process_load(const char *path, oci_process_t **out, err_t *err)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    int r = read_file(path, &buf, &len, err);
    if (r < 0)
        return r;
    r = oci_process_parse(buf, len, out, err);
    if (r < 0)
        return err_wrap(err, "%s", path);
    return 0;
}

const char *oci_spec_annotation(const oci_spec_t *spec, const char *key)
{
    for (size_t i = 0; spec && i < spec->n_annotations; i++)
        if (strcmp(spec->annotations[i].key, key) == 0)
            return spec->annotations[i].value;
    return NULL;
}

int oci_spec_cri_info(const oci_spec_t *spec, enum oci_cri_kind *kind, const char **sandbox_id,
                      err_t *err)
{
    static const struct {
        const char *type_key, *id_key, *sandbox, *container;
    } engines[] = {
        {"io.kubernetes.cri-o.ContainerType", "io.kubernetes.cri-o.SandboxID", "sandbox",
         "container"},
        {"io.kubernetes.cri.container-type", "io.kubernetes.cri.sandbox-id", "sandbox",
         "container"},
        {"io.kubernetes.docker.type", "io.kubernetes.sandbox.id", "podsandbox", "container"},
    };
    *kind = OCI_CRI_SANDBOX;
    *sandbox_id = NULL;
    for (size_t i = 0; i < sizeof(engines) / sizeof(*engines); i++) {
        const char *type = oci_spec_annotation(spec, engines[i].type_key);
        if (!type)
            continue;
        const char *id = oci_spec_annotation(spec, engines[i].id_key);
        if (strcmp(type, engines[i].sandbox) == 0) {
            *sandbox_id = id && id[0] ? id : NULL;
            return 0;
        }
        if (strcmp(type, engines[i].container) == 0) {
            if (!id || !id[0])
                return err_make(err, EINVAL,
                                "annotations[\"%s\"]: container names no sandbox (missing %s)",
                                engines[i].type_key, engines[i].id_key);
            *kind = OCI_CRI_CONTAINER;
            *sandbox_id = id;
            return 0;
        }
        return err_make(err, EINVAL, "annotations[\"%s\"]: unknown container type \"%.64s\"",
                        engines[i].type_key, type);
    }
    return 0;
}

/* ---- serialization ---------------------------------------------------- */
/* Each writer starts from a copy of the parsed object (if any) so that
 * unknown fields survive, then sets or deletes every known field. */

static json_t *base_obj(json_t *parent, const char *key)
{
    json_t *b = parent ? json_object_get(parent, key) : NULL;
    return json_is_object(b) ? json_deep_copy(b) : json_object();
}

static void put(json_t *o, const char *key, json_t *v)
{
    if (v)
        json_object_set_new(o, key, v);
    else
        json_object_del(o, key);
}

static json_t *jstr(const char *s)
{
    return s ? json_string(s) : NULL;
}

static json_t *jopt(oci_opt_int_t v)
{
    return v.set ? json_integer(v.value) : NULL;
}

static json_t *jstrv(char **v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; v && i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *jstrv_nonempty(char **v, size_t n)
{
    return n ? jstrv(v, n) : NULL;
}

static json_t *jmap(const oci_kv_t *kv, size_t n)
{
    if (!kv)
        return NULL;
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(o, kv[i].key, json_string(kv[i].value));
    return o;
}

static json_t *write_process(const oci_process_t *p, json_t *base)
{
    json_t *o = json_is_object(base) ? json_deep_copy(base) : json_object();
    put(o, "terminal", p->terminal ? json_true() : NULL);
    if (p->has_console_size) {
        json_t *cs = base_obj(base, "consoleSize");
        put(cs, "height", json_integer(p->console_height));
        put(cs, "width", json_integer(p->console_width));
        put(o, "consoleSize", cs);
    } else {
        put(o, "consoleSize", NULL);
    }
    json_t *u = base_obj(base, "user");
    put(u, "uid", json_integer(p->user.uid));
    put(u, "gid", json_integer(p->user.gid));
    put(u, "umask", jopt(p->user.umask));
    put(u, "username", jstr(p->user.username));
    json_t *g = NULL;
    if (p->user.n_additional_gids) {
        g = json_array();
        for (size_t i = 0; i < p->user.n_additional_gids; i++)
            json_array_append_new(g, json_integer(p->user.additional_gids[i]));
    }
    put(u, "additionalGids", g);
    put(o, "user", u);
    put(o, "args", jstrv(p->args, p->n_args));
    put(o, "env", jstrv_nonempty(p->env, p->n_env));
    put(o, "cwd", jstr(p->cwd));
    if (p->has_capabilities) {
        json_t *c = base_obj(base, "capabilities");
        for (int i = 0; i < OCI_CAP_NSETS; i++)
            put(c, cap_set_names[i], jstrv(p->caps[i], p->n_caps[i]));
        put(o, "capabilities", c);
    } else {
        put(o, "capabilities", NULL);
    }
    json_t *rl = NULL;
    if (p->n_rlimits) {
        rl = json_array();
        for (size_t i = 0; i < p->n_rlimits; i++)
            json_array_append_new(rl, json_pack("{s:s, s:I, s:I}", "type", p->rlimits[i].type,
                                                "hard", (json_int_t)p->rlimits[i].hard, "soft",
                                                (json_int_t)p->rlimits[i].soft));
    }
    put(o, "rlimits", rl);
    put(o, "noNewPrivileges", p->no_new_privileges ? json_true() : NULL);
    put(o, "apparmorProfile", jstr(p->apparmor_profile));
    put(o, "oomScoreAdj", jopt(p->oom_score_adj));
    put(o, "selinuxLabel", jstr(p->selinux_label));
    put(o, "ioPriority",
        p->has_io_priority
            ? json_pack("{s:s, s:i}", "class", p->io_priority_class, "priority", p->io_priority)
            : NULL);
    return o;
}

static json_t *write_idmaps(const oci_idmap_t *m, size_t n)
{
    if (!n)
        return NULL;
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            a, json_pack("{s:I, s:I, s:I}", "containerID", (json_int_t)m[i].container_id, "hostID",
                         (json_int_t)m[i].host_id, "size", (json_int_t)m[i].size));
    return a;
}

static json_t *write_resources(const oci_resources_t *r, json_t *base)
{
    json_t *o = json_is_object(base) ? json_deep_copy(base) : json_object();
    json_t *a = NULL;
    if (r->n_devices) {
        a = json_array();
        for (size_t i = 0; i < r->n_devices; i++) {
            const oci_device_rule_t *d = &r->devices[i];
            json_t *e = json_object();
            put(e, "allow", json_boolean(d->allow));
            put(e, "type", jstr(d->type));
            put(e, "major", jopt(d->major));
            put(e, "minor", jopt(d->minor));
            put(e, "access", jstr(d->access));
            json_array_append_new(a, e);
        }
    }
    put(o, "devices", a);

    json_t *mem = base_obj(base, "memory");
    put(mem, "limit", jopt(r->memory.limit));
    put(mem, "reservation", jopt(r->memory.reservation));
    put(mem, "swap", jopt(r->memory.swap));
    put(mem, "kernel", jopt(r->memory.kernel));
    put(mem, "kernelTCP", jopt(r->memory.kernel_tcp));
    put(mem, "swappiness", jopt(r->memory.swappiness));
    put(mem, "disableOOMKiller",
        r->memory.disable_oom_killer.set ? json_boolean(r->memory.disable_oom_killer.value) : NULL);
    put(o, "memory", json_object_size(mem) ? mem : (json_decref(mem), NULL));

    json_t *cpu = base_obj(base, "cpu");
    put(cpu, "shares", jopt(r->cpu.shares));
    put(cpu, "quota", jopt(r->cpu.quota));
    put(cpu, "burst", jopt(r->cpu.burst));
    put(cpu, "period", jopt(r->cpu.period));
    put(cpu, "realtimeRuntime", jopt(r->cpu.realtime_runtime));
    put(cpu, "realtimePeriod", jopt(r->cpu.realtime_period));
    put(cpu, "cpus", jstr(r->cpu.cpus));
    put(cpu, "mems", jstr(r->cpu.mems));
    put(cpu, "idle", jopt(r->cpu.idle));
    put(o, "cpu", json_object_size(cpu) ? cpu : (json_decref(cpu), NULL));

    if (r->pids_limit.set) {
        json_t *p = base_obj(base, "pids");
        put(p, "limit", json_integer(r->pids_limit.value));
        put(o, "pids", p);
    } else {
        put(o, "pids", NULL);
    }
    json_t *bio = base_obj(base, "blockIO");
    put(bio, "weight", jopt(r->block_io.weight));
    put(bio, "leafWeight", jopt(r->block_io.leaf_weight));
    put(o, "blockIO", json_object_size(bio) ? bio : (json_decref(bio), NULL));

    a = NULL;
    if (r->n_hugepage_limits) {
        a = json_array();
        for (size_t i = 0; i < r->n_hugepage_limits; i++)
            json_array_append_new(a, json_pack("{s:s, s:I}", "pageSize",
                                               r->hugepage_limits[i].page_size, "limit",
                                               (json_int_t)r->hugepage_limits[i].limit));
    }
    put(o, "hugepageLimits", a);
    put(o, "unified", jmap(r->unified, r->n_unified));
    return o;
}

static json_t *write_seccomp(const oci_seccomp_t *s, json_t *base)
{
    json_t *o = json_is_object(base) ? json_deep_copy(base) : json_object();
    put(o, "defaultAction", json_string(action_names[s->default_action]));
    put(o, "defaultErrnoRet", jopt(s->default_errno_ret));
    put(o, "architectures", jstrv_nonempty(s->architectures, s->n_architectures));
    put(o, "flags", jstrv_nonempty(s->flags, s->n_flags));
    put(o, "listenerPath", jstr(s->listener_path));
    json_t *a = NULL;
    if (s->n_syscalls) {
        a = json_array();
        for (size_t i = 0; i < s->n_syscalls; i++) {
            const oci_seccomp_syscall_t *sc = &s->syscalls[i];
            json_t *e = json_object();
            put(e, "names", jstrv(sc->names, sc->n_names));
            put(e, "action", json_string(action_names[sc->action]));
            put(e, "errnoRet", jopt(sc->errno_ret));
            if (sc->n_args) {
                json_t *args = json_array();
                for (size_t j = 0; j < sc->n_args; j++)
                    json_array_append_new(args, json_pack("{s:i, s:I, s:I, s:s}", "index",
                                                          (int)sc->args[j].index, "value",
                                                          (json_int_t)sc->args[j].value, "valueTwo",
                                                          (json_int_t)sc->args[j].value_two, "op",
                                                          op_names[sc->args[j].op]));
                put(e, "args", args);
            }
            json_array_append_new(a, e);
        }
    }
    put(o, "syscalls", a);
    return o;
}

static json_t *write_linux(const oci_linux_t *l, json_t *base)
{
    json_t *o = json_is_object(base) ? json_deep_copy(base) : json_object();
    json_t *a = NULL;
    if (l->n_namespaces) {
        a = json_array();
        for (size_t i = 0; i < l->n_namespaces; i++) {
            json_t *e = json_object();
            put(e, "type", json_string(ns_names[l->namespaces[i].type]));
            put(e, "path", jstr(l->namespaces[i].path));
            json_array_append_new(a, e);
        }
    }
    put(o, "namespaces", a);
    put(o, "uidMappings", write_idmaps(l->uid_mappings, l->n_uid_mappings));
    put(o, "gidMappings", write_idmaps(l->gid_mappings, l->n_gid_mappings));
    a = NULL;
    if (l->n_devices) {
        a = json_array();
        for (size_t i = 0; i < l->n_devices; i++) {
            const oci_device_t *d = &l->devices[i];
            char t[2] = {d->type, 0};
            json_t *e = json_object();
            put(e, "path", json_string(d->path));
            put(e, "type", json_string(t));
            if (d->type != 'p') {
                put(e, "major", json_integer(d->major));
                put(e, "minor", json_integer(d->minor));
            }
            put(e, "fileMode", jopt(d->file_mode));
            put(e, "uid", jopt(d->uid));
            put(e, "gid", jopt(d->gid));
            json_array_append_new(a, e);
        }
    }
    put(o, "devices", a);
    put(o, "resources",
        l->resources ? write_resources(l->resources, json_object_get(base, "resources")) : NULL);
    put(o, "cgroupsPath", jstr(l->cgroups_path));
    put(o, "sysctl", jmap(l->sysctl, l->n_sysctl));
    put(o, "seccomp",
        l->seccomp ? write_seccomp(l->seccomp, json_object_get(base, "seccomp")) : NULL);
    put(o, "rootfsPropagation", jstr(l->rootfs_propagation));
    put(o, "maskedPaths", jstrv_nonempty(l->masked_paths, l->n_masked_paths));
    put(o, "readonlyPaths", jstrv_nonempty(l->readonly_paths, l->n_readonly_paths));
    put(o, "mountLabel", jstr(l->mount_label));
    if (l->has_personality) {
        json_t *p = base_obj(base, "personality");
        put(p, "domain", jstr(l->personality_domain));
        put(p, "flags", jstrv_nonempty(l->personality_flags, l->n_personality_flags));
        put(o, "personality", p);
    } else {
        put(o, "personality", NULL);
    }
    return o;
}

static json_t *write_hook(const oci_hook_t *h)
{
    json_t *e = json_object();
    put(e, "path", json_string(h->path));
    put(e, "args", jstrv_nonempty(h->args, h->n_args));
    put(e, "env", jstrv_nonempty(h->env, h->n_env));
    put(e, "timeout", jopt(h->timeout));
    return e;
}

static int dump(json_t *o, char **out, size_t *len_out, err_t *err)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        return err_make(err, ENOMEM, "serialize JSON");
    if (len_out)
        *len_out = strlen(s);
    *out = s;
    return 0;
}

int oci_spec_to_json(const oci_spec_t *spec, char **out, size_t *len_out, err_t *err)
{
    json_t *base = spec->priv_json;
    json_t *o = json_is_object(base) ? json_deep_copy(base) : json_object();
    put(o, "ociVersion", json_string(spec->oci_version ? spec->oci_version : "1.0.2"));
    if (spec->process)
        put(o, "process", write_process(spec->process, json_object_get(base, "process")));
    else
        put(o, "process", NULL);
    json_t *root = base_obj(base, "root");
    put(root, "path", jstr(spec->root_path));
    put(root, "readonly", spec->root_readonly ? json_true() : NULL);
    put(o, "root", root);
    put(o, "hostname", jstr(spec->hostname));
    put(o, "domainname", jstr(spec->domainname));
    json_t *a = NULL;
    if (spec->n_mounts) {
        a = json_array();
        for (size_t i = 0; i < spec->n_mounts; i++) {
            const oci_mount_t *m = &spec->mounts[i];
            json_t *e = json_object();
            put(e, "destination", json_string(m->destination));
            put(e, "type", jstr(m->type));
            put(e, "source", jstr(m->source));
            put(e, "options", jstrv_nonempty(m->options, m->n_options));
            json_array_append_new(a, e);
        }
    }
    put(o, "mounts", a);
    json_t *hooks = base_obj(base, "hooks");
    for (int k = 0; k < OCI_HOOK_NKINDS; k++) {
        json_t *ha = NULL;
        if (spec->n_hooks[k]) {
            ha = json_array();
            for (size_t i = 0; i < spec->n_hooks[k]; i++)
                json_array_append_new(ha, write_hook(&spec->hooks[k][i]));
        }
        put(hooks, hook_names[k], ha);
    }
    put(o, "hooks", json_object_size(hooks) ? hooks : (json_decref(hooks), NULL));
    put(o, "annotations", jmap(spec->annotations, spec->n_annotations));
    put(o, "linux", spec->lnx ? write_linux(spec->lnx, json_object_get(base, "linux")) : NULL);
    return dump(o, out, len_out, err);
}

int oci_process_to_json(const oci_process_t *proc, char **out, size_t *len_out, err_t *err)
{
    return dump(write_process(proc, NULL), out, len_out, err);
}
