/* persist/store: sandbox and container state on disk.  See store.h and
 * docs/state.md. */
#include "common/clock.h"
#include "common/xalloc.h"
#include "persist/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"

#define SANDBOX_FILE   "sandbox.json"
#define CONTAINER_FILE "container.json"
#define LOCK_FILE      ".lock"
#define MAX_STRING     (64u * 1024)
#define MAX_ITEMS      65536u

struct persist_store {
    char *root;
    int fault;            /* 0, ENOSPC, EIO or PERSIST_FAULT_CRASH */
    unsigned fault_count; /* writes left to fail */
};

struct persist_lock {
    int fd;
    char *path;
};

/* ---- allocation (OOM aborts) -------------------------------------------- */

static void cleanup_json(json_t **j)
{
    if (*j)
        json_decref(*j);
}
#define _cleanup_json_ __attribute__((cleanup(cleanup_json)))

static void cleanup_closedir(DIR **d)
{
    if (*d)
        closedir(*d);
}
#define _cleanup_dir_ __attribute__((cleanup(cleanup_closedir)))

void persist_strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

static void kv_free(persist_kv_t *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
}

/* ---- ids and paths ------------------------------------------------------ */

bool persist_id_valid(const char *id)
{
    if (!id || !*id || id[0] == '.' || strlen(id) > PERSIST_MAX_ID)
        return false;
    for (const char *p = id; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '+' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

static int check_id(const char *what, const char *id, err_t *err)
{
    if (!id || !*id)
        return err_make(err, EINVAL, "%s id cannot be empty", what);
    if (!persist_id_valid(id))
        return err_make(err, EINVAL, "invalid %s id format: `%s`", what, id);
    return 0;
}

/* Names in a sandbox directory that a container id may not take. */
static bool reserved_name(const char *id)
{
    static const char *const names[] = {SANDBOX_FILE, "shared",     "bus.sock",    "tap.sock",
                                        "qmp.sock",   "agent.sock", "console.log", NULL};
    for (size_t i = 0; names[i]; i++)
        if (strcmp(id, names[i]) == 0)
            return true;
    return false;
}

int persist_sandbox_dir(const persist_store_t *store, const char *sandbox_id, char **out,
                        err_t *err)
{
    int r = check_id("sandbox", sandbox_id, err);
    if (r < 0)
        return r;
    *out = xasprintf("%s/%s", store->root, sandbox_id);
    return 0;
}

static int mkdir_p(const char *path, mode_t mode, err_t *err)
{
    _cleanup_free_ char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return err_errno(err, "mkdir `%s`", p);
        *s = '/';
    }
    if (mkdir(p, mode) < 0) {
        if (errno != EEXIST)
            return err_errno(err, "mkdir `%s`", p);
        struct stat st;
        if (stat(p, &st) < 0)
            return err_errno(err, "stat `%s`", p);
        if (!S_ISDIR(st.st_mode))
            return err_make(err, ENOTDIR, "`%s` exists and is not a directory", p);
    }
    return 0;
}

/* ---- store -------------------------------------------------------------- */

static int parse_fault(const char *s, int *fault, unsigned *count)
{
    const char *colon = strchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : strlen(s);
    if (n == 6 && strncmp(s, "enospc", n) == 0)
        *fault = ENOSPC;
    else if (n == 3 && strncmp(s, "eio", n) == 0)
        *fault = EIO;
    else if (n == 5 && strncmp(s, "crash", n) == 0)
        *fault = PERSIST_FAULT_CRASH;
    else
        return -1;
    *count = 1;
    if (colon) {
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(colon + 1, &end, 10);
        if (errno || end == colon + 1 || *end || v > UINT_MAX)
            return -1;
        *count = (unsigned)v;
    }
    return 0;
}

int persist_store_open(const char *root, persist_store_t **out, err_t *err)
{
    if (!root || !*root)
        root = PERSIST_DEFAULT_ROOT;
    if (root[0] != '/')
        return err_make(err, EINVAL, "runtime root `%s` is not an absolute path", root);
    persist_store_t *s = xcalloc(1, sizeof *s);
    s->root = xstrdup(root);
    size_t len = strlen(s->root);
    while (len > 1 && s->root[len - 1] == '/')
        s->root[--len] = '\0';
    const char *f = getenv("HUSK_PERSIST_FAIL");
    if (f && *f && parse_fault(f, &s->fault, &s->fault_count) < 0) {
        persist_store_destroy(&s);
        return err_make(err, EINVAL, "HUSK_PERSIST_FAIL=`%s`: expected enospc|eio|crash[:count]",
                        f);
    }
    int r = mkdir_p(s->root, 0700, err);
    if (r < 0) {
        persist_store_destroy(&s);
        return err_wrap(err, "runtime root");
    }
    *out = s;
    return 0;
}

void persist_store_destroy(persist_store_t **store_p)
{
    if (!store_p || !*store_p)
        return;
    free((*store_p)->root);
    free(*store_p);
    *store_p = NULL;
}

const char *persist_store_root(const persist_store_t *store)
{
    return store->root;
}

void persist_store_set_fault(persist_store_t *store, int errnum, unsigned count)
{
    store->fault = count ? errnum : 0;
    store->fault_count = count;
}

/* ---- processes and time -------------------------------------------------- */

/* Reads /proc/<pid>/stat: state letter and starttime. */
static int proc_stat(pid_t pid, char *state, uint64_t *start, err_t *err)
{
    if (pid <= 0)
        return err_make(err, ESRCH, "no such process: %d", (int)pid);
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return err_make(err, ESRCH, "no such process: %d", (int)pid);
        return err_errno(err, "open `%s`", path);
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) {
        if (errno == ESRCH)
            return err_make(err, ESRCH, "no such process: %d", (int)pid);
        return err_errno(err, "read `%s`", path);
    }
    buf[n] = '\0';
    /* comm (field 2) may hold spaces and parentheses: fields resume after
     * the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return err_make(err, EBADMSG, "`%s`: unexpected format", path);
    p += 2;
    /* p is field 3 (state); starttime is field 22, 19 fields further. */
    *state = *p;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p)
            return err_make(err, EBADMSG, "`%s`: too few fields", path);
        p++;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno || end == p)
        return err_make(err, EBADMSG, "`%s`: bad starttime", path);
    *start = v;
    return 0;
}

int persist_proc_start_time(pid_t pid, uint64_t *start_out, err_t *err)
{
    char state;
    return proc_stat(pid, &state, start_out, err);
}

bool persist_pid_alive(pid_t pid, uint64_t start)
{
    char state = 0;
    uint64_t st = 0;
    if (proc_stat(pid, &state, &st, NULL) < 0)
        return false;
    if (state == 'Z' || state == 'X' || state == 'x')
        return false;
    return start == 0 || st == start;
}

bool persist_daemon_alive(const persist_sandbox_t *sb)
{
    return sb && sb->daemon_pid > 0 && persist_pid_alive(sb->daemon_pid, sb->daemon_start);
}

char *persist_time_now(void)
{
    struct timespec ts;
    struct tm tm;
    char buf[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%09ldZ", ts.tv_nsec);
    return xstrdup(buf);
}

/* RFC 3339: date "T" time, optional fraction, "Z" or a numeric offset. */
static bool time_valid(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p || strlen(s) < 19 || s[4] != '-' || s[10] != 'T')
        return false;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'Z')
        return p[1] == '\0';
    if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':')
        return true;
    return false;
}

/* ---- atomic writes ------------------------------------------------------ */

/* Removes ".<name>.tmp.<pid>.*" left by a writer that died (or by us). */
static void clean_stale_temps(const char *dir, const char *name)
{
    _cleanup_dir_ DIR *d = opendir(dir);
    if (!d)
        return;
    _cleanup_free_ char *prefix = xasprintf(".%s.tmp.", name);
    size_t plen = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, plen) != 0)
            continue;
        char *end = NULL;
        long pid = strtol(e->d_name + plen, &end, 10);
        if (!end || *end != '.' || pid <= 0)
            continue;
        if (pid == getpid() || !persist_pid_alive((pid_t)pid, 0))
            unlinkat(dirfd(d), e->d_name, 0);
    }
}

static int fsync_dir(const char *dir, err_t *err)
{
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return err_errno(err, "open `%s`", dir);
    if (fsync(fd) < 0 && errno != EINVAL)
        return err_errno(err, "fsync `%s`", dir);
    return 0;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_atomic(persist_store_t *store, const char *dir, const char *name, const char *data,
                        size_t len, err_t *err)
{
    clean_stale_temps(dir, name);
    _cleanup_free_ char *tmp = xasprintf("%s/.%s.tmp.%d.XXXXXX", dir, name, (int)getpid());
    _cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
    _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return err_errno(err, "create temp file in `%s`", dir);

    if (store->fault && store->fault_count > 0) {
        int fault = store->fault;
        if (--store->fault_count == 0)
            store->fault = 0;
        if (fault == PERSIST_FAULT_CRASH) {
            /* Half a file, no rename, no cleanup: what a crash leaves. */
            (void)write_all(fd, data, len / 2);
            return err_make(err, EIO, "write `%s`: injected crash before rename", path);
        }
        unlink(tmp);
        return err_make(err, fault, "write `%s`: %s (injected fault)", tmp, strerror(fault));
    }

    if (write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        return err_errno(err, "write `%s`", tmp);
    }
    int fdc = TAKE_FD(fd);
    if (close(fdc) < 0) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        return err_errno(err, "close `%s`", tmp);
    }
    if (rename(tmp, path) < 0) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        return err_errno(err, "rename `%s` to `%s`", tmp, path);
    }
    return fsync_dir(dir, err);
}

static int write_json(persist_store_t *store, const char *dir, const char *name, json_t *obj,
                      err_t *err)
{
    _cleanup_free_ char *text = json_dumps(obj, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!text)
        abort();
    size_t len = strlen(text);
    _cleanup_free_ char *withnl = xcalloc(1, len + 2);
    memcpy(withnl, text, len);
    withnl[len] = '\n';
    return write_atomic(store, dir, name, withnl, len + 1, err);
}

/* ---- JSON out ----------------------------------------------------------- */

/* Building a document; bad names the first field that is not valid UTF-8
 * (jansson refuses it) so that save fails instead of dropping it. */
typedef struct wr {
    json_t *o;
    const char *bad;
} wr_t;

static void put_str(wr_t *w, const char *key, const char *v)
{
    if (!v)
        return;
    json_t *s = json_string(v);
    if (!s) {
        if (!w->bad)
            w->bad = key;
        return;
    }
    json_object_set_new(w->o, key, s);
}

static void put_int(wr_t *w, const char *key, json_int_t v)
{
    json_object_set_new(w->o, key, json_integer(v));
}

static void put_bool(wr_t *w, const char *key, bool v)
{
    json_object_set_new(w->o, key, json_boolean(v));
}

static void put_kv(wr_t *w, const char *key, const persist_kv_t *kv, size_t n)
{
    json_t *m = json_object();
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_string(kv[i].value ? kv[i].value : "");
        if (!kv[i].key || !s || json_object_set_new(m, kv[i].key, s) < 0) {
            if (!w->bad)
                w->bad = key;
        }
    }
    json_object_set_new(w->o, key, m);
}

static void put_ids(wr_t *w, const char *key, char *const *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *s = ids[i] ? json_string(ids[i]) : NULL;
        if (!s) {
            if (!w->bad)
                w->bad = key;
            continue;
        }
        json_array_append_new(a, s);
    }
    json_object_set_new(w->o, key, a);
}

/* ---- JSON in: every read checks type and size ---------------------------- */

typedef struct rd {
    const char *file;
    err_t *err;
} rd_t;

static int bad(rd_t *c, const char *key, const char *what)
{
    return err_make(c->err, EBADMSG, "%s: field `%s`: %s", c->file, key, what);
}

static int rd_str(rd_t *c, json_t *o, const char *key, bool required, char **out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return required ? bad(c, key, "missing") : 0;
    if (!json_is_string(v))
        return bad(c, key, "expected string");
    size_t len = json_string_length(v);
    if (len > MAX_STRING)
        return bad(c, key, "string too long");
    if (strlen(json_string_value(v)) != len)
        return bad(c, key, "string holds a NUL byte");
    if (required && len == 0)
        return bad(c, key, "empty");
    *out = xstrdup(json_string_value(v));
    return 0;
}

static int rd_int(rd_t *c, json_t *o, const char *key, bool required, int64_t min, int64_t max,
                  int64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return required ? bad(c, key, "missing") : 0;
    if (!json_is_integer(v))
        return bad(c, key, "expected integer");
    json_int_t i = json_integer_value(v);
    if (i < min || i > max)
        return bad(c, key, "out of range");
    *out = i;
    return 0;
}

static int rd_bool(rd_t *c, json_t *o, const char *key, bool *out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return bad(c, key, "expected boolean");
    *out = json_is_true(v);
    return 0;
}

static int rd_kv(rd_t *c, json_t *o, const char *key, persist_kv_t **out, size_t *n_out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return bad(c, key, "expected object");
    size_t n = json_object_size(v);
    if (n > MAX_ITEMS)
        return bad(c, key, "too many entries");
    persist_kv_t *kv = xcalloc(n, sizeof *kv);
    size_t i = 0;
    const char *k;
    json_t *val;
    json_object_foreach(v, k, val)
    {
        if (!json_is_string(val) || json_string_length(val) > MAX_STRING ||
            strlen(json_string_value(val)) != json_string_length(val)) {
            kv_free(kv, i);
            _cleanup_free_ char *what = xasprintf("value of `%s`: expected string", k);
            return bad(c, key, what);
        }
        kv[i].key = xstrdup(k);
        kv[i].value = xstrdup(json_string_value(val));
        i++;
    }
    *out = kv;
    *n_out = i;
    return 0;
}

static int rd_ids(rd_t *c, json_t *o, const char *key, char ***out, size_t *n_out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return bad(c, key, "expected array");
    size_t n = json_array_size(v);
    if (n > MAX_ITEMS)
        return bad(c, key, "too many entries");
    char **ids = xcalloc(n + 1, sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s) || !persist_id_valid(json_string_value(s)) ||
            strlen(json_string_value(s)) != json_string_length(s)) {
            persist_strv_free(ids);
            _cleanup_free_ char *what = xasprintf("item %zu: expected a container id", i);
            return bad(c, key, what);
        }
        ids[i] = xstrdup(json_string_value(s));
    }
    *out = ids;
    *n_out = n;
    return 0;
}

static int rd_time(rd_t *c, json_t *o, const char *key, bool required, char **out)
{
    int r = rd_str(c, o, key, required, out);
    if (r < 0 || !*out)
        return r;
    if (!time_valid(*out)) {
        free(*out);
        *out = NULL;
        return bad(c, key, "expected an RFC 3339 time");
    }
    return 0;
}

/* The schema of a state document: present, an integer, known. */
static int check_schema(const char *origin, json_t *doc, err_t *err)
{
    if (!json_is_object(doc))
        return err_make(err, EBADMSG, "%s: expected a JSON object", origin);
    json_t *schema = json_object_get(doc, "schema");
    if (!schema)
        return err_make(err, EBADMSG, "%s: field `schema`: missing", origin);
    if (!json_is_integer(schema))
        return err_make(err, EBADMSG, "%s: field `schema`: expected integer", origin);
    if (json_integer_value(schema) > PERSIST_SCHEMA)
        return err_make(err, EPROTONOSUPPORT,
                        "%s: schema %lld is newer than this husk supports (%d): written by a "
                        "newer husk",
                        origin, (long long)json_integer_value(schema), PERSIST_SCHEMA);
    if (json_integer_value(schema) < 1)
        return err_make(err, EBADMSG, "%s: field `schema`: out of range", origin);
    return 0;
}

/* Parses a state document (a file's content or a record received as
 * text); origin names it in errors. */
static int parse_doc(const char *origin, const char *buf, size_t len, json_t **out, err_t *err)
{
    if (len == 0)
        return err_make(err, EBADMSG, "%s: empty file", origin);
    if (len > PERSIST_MAX_FILE)
        return err_make(err, EBADMSG, "%s: too large (%zu bytes)", origin, len);
    json_error_t je;
    json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc)
        return err_make(err, EBADMSG, "%s: invalid JSON at line %d column %d: %s", origin, je.line,
                        je.column, je.text);
    int r = check_schema(origin, doc, err);
    if (r < 0) {
        json_decref(doc);
        return r;
    }
    *out = doc;
    return 0;
}

/* Reads a state file: size-capped, regular, parsed, an object, schema ok.
 * -ENOENT when missing. */
static int load_doc(const char *path, json_t **out, err_t *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return err_make(err, ENOENT, "%s: does not exist", path);
        return err_errno(err, "open `%s`", path);
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        return err_errno(err, "stat `%s`", path);
    if (!S_ISREG(st.st_mode))
        return err_make(err, EBADMSG, "%s: not a regular file", path);
    if ((uint64_t)st.st_size > PERSIST_MAX_FILE)
        return err_make(err, EBADMSG, "%s: too large (%lld bytes)", path, (long long)st.st_size);
    _cleanup_free_ char *buf = xcalloc(1, (size_t)st.st_size + 1);
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, (size_t)st.st_size + 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return err_errno(err, "read `%s`", path);
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > (size_t)st.st_size)
            return err_make(err, EBADMSG, "%s: grew while being read", path);
    }
    return parse_doc(path, buf, len, out, err);
}

/* ---- sandboxes ---------------------------------------------------------- */

static json_t *sandbox_to_json(const persist_sandbox_t *sb, const char **bad_field)
{
    wr_t w = {json_object(), NULL};
    put_int(&w, "schema", PERSIST_SCHEMA);
    put_str(&w, "id", sb->id);
    put_str(&w, "state", sb->state);
    put_str(&w, "bundle", sb->bundle);
    put_str(&w, "created", sb->created);
    put_int(&w, "daemon_pid", sb->daemon_pid);
    put_int(&w, "daemon_start", (json_int_t)sb->daemon_start);
    put_int(&w, "vmm_pid", sb->vmm_pid);
    put_int(&w, "vmm_start", (json_int_t)sb->vmm_start);
    put_str(&w, "hypervisor", sb->hypervisor);
    put_str(&w, "agent_socket", sb->agent_socket);
    put_str(&w, "netns", sb->netns);
    if (sb->n_net_taps)
        put_kv(&w, "net_taps", sb->net_taps, sb->n_net_taps);
    if (sb->n_net_tap_states)
        put_kv(&w, "net_tap_states", sb->net_tap_states, sb->n_net_tap_states);
    put_kv(&w, "annotations", sb->annotations, sb->n_annotations);
    put_ids(&w, "containers", sb->containers, sb->n_containers);
    *bad_field = w.bad;
    return w.o;
}

static int check_sandbox(const persist_sandbox_t *sb, err_t *err)
{
    int r = check_id("sandbox", sb->id, err);
    if (r < 0)
        return r;
    if (!sb->state || !*sb->state)
        return err_make(err, EINVAL, "sandbox `%s`: state is required", sb->id);
    if (sb->created && !time_valid(sb->created))
        return err_make(err, EINVAL, "sandbox `%s`: created `%s` is not an RFC 3339 time", sb->id,
                        sb->created);
    for (size_t i = 0; i < sb->n_containers; i++)
        if (!persist_id_valid(sb->containers[i]))
            return err_make(err, EINVAL, "sandbox `%s`: invalid container id in the list", sb->id);
    if (sb->daemon_pid < 0 || sb->vmm_pid < 0)
        return err_make(err, EINVAL, "sandbox `%s`: negative pid", sb->id);
    return 0;
}

int persist_sandbox_save(persist_store_t *store, const persist_sandbox_t *sb, err_t *err)
{
    int r = check_sandbox(sb, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *dir = NULL;
    if ((r = persist_sandbox_dir(store, sb->id, &dir, err)) < 0)
        return r;
    if ((r = mkdir_p(dir, 0700, err)) < 0)
        return err_wrap(err, "save sandbox `%s`", sb->id);
    const char *bad_field = NULL;
    _cleanup_json_ json_t *o = sandbox_to_json(sb, &bad_field);
    if (bad_field)
        return err_make(err, EINVAL, "save sandbox `%s`: field `%s`: not valid UTF-8", sb->id,
                        bad_field);
    if ((r = write_json(store, dir, SANDBOX_FILE, o, err)) < 0)
        return err_wrap(err, "save sandbox `%s`", sb->id);
    return 0;
}

void persist_sandbox_free(persist_sandbox_t **sb_p)
{
    if (!sb_p || !*sb_p)
        return;
    persist_sandbox_t *sb = *sb_p;
    free(sb->id);
    free(sb->state);
    free(sb->bundle);
    free(sb->created);
    free(sb->hypervisor);
    free(sb->agent_socket);
    free(sb->netns);
    kv_free(sb->annotations, sb->n_annotations);
    kv_free(sb->net_taps, sb->n_net_taps);
    kv_free(sb->net_tap_states, sb->n_net_tap_states);
    persist_strv_free(sb->containers);
    free(sb);
    *sb_p = NULL;
}

static int sandbox_from_json(rd_t *c, json_t *o, const char *dir_id, persist_sandbox_t *sb)
{
    int64_t i = 0;
    int r;
    if ((r = rd_str(c, o, "id", true, &sb->id)) < 0)
        return r;
    if (strcmp(sb->id, dir_id) != 0) {
        _cleanup_free_ char *what =
            xasprintf("`%s` does not match its directory `%s`", sb->id, dir_id);
        return bad(c, "id", what);
    }
    if ((r = rd_str(c, o, "state", true, &sb->state)) < 0 ||
        (r = rd_str(c, o, "bundle", false, &sb->bundle)) < 0 ||
        (r = rd_time(c, o, "created", false, &sb->created)) < 0)
        return r;
    if ((r = rd_int(c, o, "daemon_pid", false, 0, INT_MAX, &i)) < 0)
        return r;
    sb->daemon_pid = (pid_t)i;
    i = 0;
    if ((r = rd_int(c, o, "daemon_start", false, 0, INT64_MAX, &i)) < 0)
        return r;
    sb->daemon_start = (uint64_t)i;
    i = 0;
    if ((r = rd_int(c, o, "vmm_pid", false, 0, INT_MAX, &i)) < 0)
        return r;
    sb->vmm_pid = (pid_t)i;
    i = 0;
    if ((r = rd_int(c, o, "vmm_start", false, 0, INT64_MAX, &i)) < 0)
        return r;
    sb->vmm_start = (uint64_t)i;
    if ((r = rd_str(c, o, "hypervisor", false, &sb->hypervisor)) < 0 ||
        (r = rd_str(c, o, "agent_socket", false, &sb->agent_socket)) < 0 ||
        (r = rd_str(c, o, "netns", false, &sb->netns)) < 0 ||
        (r = rd_kv(c, o, "annotations", &sb->annotations, &sb->n_annotations)) < 0 ||
        (r = rd_kv(c, o, "net_taps", &sb->net_taps, &sb->n_net_taps)) < 0 ||
        (r = rd_kv(c, o, "net_tap_states", &sb->net_tap_states, &sb->n_net_tap_states)) < 0 ||
        (r = rd_ids(c, o, "containers", &sb->containers, &sb->n_containers)) < 0)
        return r;
    if (!sb->containers)
        sb->containers = xcalloc(1, sizeof(char *));
    return 0;
}

int persist_sandbox_load(const persist_store_t *store, const char *sandbox_id,
                         persist_sandbox_t **out, err_t *err)
{
    _cleanup_free_ char *dir = NULL;
    int r = persist_sandbox_dir(store, sandbox_id, &dir, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *path = xasprintf("%s/%s", dir, SANDBOX_FILE);
    _cleanup_json_ json_t *doc = NULL;
    if ((r = load_doc(path, &doc, err)) < 0) {
        if (r == -ENOENT)
            return err_make(err, ENOENT, "sandbox `%s` does not exist", sandbox_id);
        return r;
    }
    rd_t c = {path, err};
    persist_sandbox_t *sb = xcalloc(1, sizeof *sb);
    if ((r = sandbox_from_json(&c, doc, sandbox_id, sb)) < 0) {
        persist_sandbox_free(&sb);
        return r;
    }
    *out = sb;
    return 0;
}

/* ---- removal ------------------------------------------------------------- */

/* Unescapes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape_mnt(char *s)
{
    char *d = s;
    while (*s) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 4;
        } else {
            *d++ = *s++;
        }
    }
    *d = '\0';
}

/* The first mount point at or below dir, or NULL.  Caller frees. */
static char *mount_below(const char *dir)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return NULL;
    size_t dlen = strlen(dir);
    char *line = NULL, *found = NULL;
    size_t cap = 0;
    while (!found && getline(&line, &cap, f) > 0) {
        /* id parent major:minor root mountpoint ... */
        char *save = NULL, *tok = strtok_r(line, " ", &save);
        for (int i = 0; tok && i < 4; i++)
            tok = strtok_r(NULL, " ", &save);
        if (!tok)
            continue;
        unescape_mnt(tok);
        if (strncmp(tok, dir, dlen) == 0 && (tok[dlen] == '\0' || tok[dlen] == '/'))
            found = xstrdup(tok);
    }
    free(line);
    fclose(f);
    return found;
}

/* Removes name (in dirfd) and what is below, staying on device dev. */
static int rm_tree_at(int dfd, const char *name, const char *path, dev_t dev, err_t *err)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 0;
        return err_errno(err, "stat `%s`", path);
    }
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
            return err_errno(err, "unlink `%s`", path);
        return 0;
    }
    if (st.st_dev != dev)
        return err_make(err, EBUSY, "`%s` is on another file system; not removing it", path);
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return err_errno(err, "open `%s`", path);
    _cleanup_dir_ DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return err_errno(err, "open `%s`", path);
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        _cleanup_free_ char *sub = xasprintf("%s/%s", path, e->d_name);
        int r = rm_tree_at(dirfd(d), e->d_name, sub, dev, err);
        if (r < 0)
            return r;
    }
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return err_errno(err, "remove `%s`", path);
    return 0;
}

int persist_sandbox_remove(persist_store_t *store, const char *sandbox_id, err_t *err)
{
    _cleanup_free_ char *dir = NULL;
    int r = persist_sandbox_dir(store, sandbox_id, &dir, err);
    if (r < 0)
        return r;
    struct stat st;
    if (lstat(dir, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        return err_errno(err, "remove sandbox `%s`: stat `%s`", sandbox_id, dir);
    }
    if (!S_ISDIR(st.st_mode))
        return err_make(err, ENOTDIR, "remove sandbox `%s`: `%s` is not a directory", sandbox_id,
                        dir);
    _cleanup_free_ char *real = realpath(dir, NULL);
    _cleanup_free_ char *m = mount_below(real ? real : dir);
    if (m)
        return err_make(err, EBUSY, "remove sandbox `%s`: `%s` is still mounted", sandbox_id, m);
    _cleanup_close_ int rootfd = open(store->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return err_errno(err, "open `%s`", store->root);
    if ((r = rm_tree_at(rootfd, sandbox_id, dir, st.st_dev, err)) < 0)
        return err_wrap(err, "remove sandbox `%s`", sandbox_id);
    return fsync_dir(store->root, err);
}

/* ---- listing ------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Ids of subdirectories of dir holding file `file`. */
static int list_with(const char *dir, const char *file, char ***ids_out, size_t *n_out, err_t *err)
{
    _cleanup_dir_ DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return err_make(err, ENOENT, "`%s` does not exist", dir);
        return err_errno(err, "open `%s`", dir);
    }
    size_t n = 0, cap = 8;
    char **ids = xcalloc(cap + 1, sizeof *ids);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!persist_id_valid(e->d_name))
            continue;
        _cleanup_free_ char *rel = xasprintf("%s/%s", e->d_name, file);
        struct stat st;
        if (fstatat(dirfd(d), rel, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            cap *= 2;
            char **bigger = realloc(ids, (cap + 1) * sizeof *ids);
            if (!bigger)
                abort();
            ids = bigger;
        }
        ids[n++] = xstrdup(e->d_name);
        ids[n] = NULL;
    }
    qsort(ids, n, sizeof *ids, cmp_str);
    *ids_out = ids;
    *n_out = n;
    return 0;
}

int persist_sandbox_list(const persist_store_t *store, char ***ids_out, size_t *n_out, err_t *err)
{
    return list_with(store->root, SANDBOX_FILE, ids_out, n_out, err);
}

/* ---- containers ---------------------------------------------------------- */

static json_t *container_to_json(const persist_container_t *c, const char **bad_field)
{
    wr_t w = {json_object(), NULL};
    put_int(&w, "schema", PERSIST_SCHEMA);
    put_str(&w, "id", c->id);
    put_str(&w, "sandbox_id", c->sandbox_id);
    put_str(&w, "bundle", c->bundle);
    put_str(&w, "rootfs", c->rootfs);
    put_str(&w, "state", c->state);
    put_str(&w, "created", c->created);
    put_int(&w, "init_pid", c->init_pid);
    put_int(&w, "init_start", (json_int_t)c->init_start);
    put_bool(&w, "exited", c->exited);
    if (c->exited) {
        put_int(&w, "exit_status", c->exit_status);
        put_str(&w, "exited_at", c->exited_at);
    }
    put_kv(&w, "annotations", c->annotations, c->n_annotations);
    put_int(&w, "owner_uid", c->owner_uid);
    put_str(&w, "pid_file", c->pid_file);
    put_bool(&w, "console", c->console);
    *bad_field = w.bad;
    return w.o;
}

static int check_container(const persist_container_t *c, err_t *err)
{
    int r = check_id("container", c->id, err);
    if (r < 0 || (r = check_id("sandbox", c->sandbox_id, err)) < 0)
        return r;
    if (reserved_name(c->id))
        return err_make(err, EINVAL, "container id `%s` is reserved in a sandbox directory", c->id);
    if (!c->state || !*c->state)
        return err_make(err, EINVAL, "container `%s`: state is required", c->id);
    if (c->init_pid < 0)
        return err_make(err, EINVAL, "container `%s`: negative pid", c->id);
    if (c->created && !time_valid(c->created))
        return err_make(err, EINVAL, "container `%s`: created `%s` is not an RFC 3339 time", c->id,
                        c->created);
    if (c->exited_at && !time_valid(c->exited_at))
        return err_make(err, EINVAL, "container `%s`: exited_at `%s` is not an RFC 3339 time",
                        c->id, c->exited_at);
    if (c->exited && (c->exit_status < 0 || c->exit_status > 255 + 128))
        return err_make(err, EINVAL, "container `%s`: exit status %d out of range", c->id,
                        c->exit_status);
    return 0;
}

int persist_container_save(persist_store_t *store, const persist_container_t *c, err_t *err)
{
    int r = check_container(c, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *sdir = NULL;
    if ((r = persist_sandbox_dir(store, c->sandbox_id, &sdir, err)) < 0)
        return r;
    struct stat st;
    if (stat(sdir, &st) < 0 || !S_ISDIR(st.st_mode))
        return err_make(err, ENOENT, "save container `%s`: sandbox `%s` does not exist", c->id,
                        c->sandbox_id);
    _cleanup_free_ char *dir = xasprintf("%s/%s", sdir, c->id);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return err_errno(err, "save container `%s`: mkdir `%s`", c->id, dir);
    if (lstat(dir, &st) < 0)
        return err_errno(err, "save container `%s`: stat `%s`", c->id, dir);
    if (!S_ISDIR(st.st_mode))
        return err_make(err, EEXIST,
                        "save container `%s`: `%s` exists and is not a container directory", c->id,
                        dir);
    const char *bad_field = NULL;
    _cleanup_json_ json_t *o = container_to_json(c, &bad_field);
    if (bad_field)
        return err_make(err, EINVAL, "save container `%s`: field `%s`: not valid UTF-8", c->id,
                        bad_field);
    if ((r = write_json(store, dir, CONTAINER_FILE, o, err)) < 0)
        return err_wrap(err, "save container `%s`", c->id);
    return 0;
}

void persist_container_free(persist_container_t **c_p)
{
    if (!c_p || !*c_p)
        return;
    persist_container_t *c = *c_p;
    free(c->id);
    free(c->sandbox_id);
    free(c->bundle);
    free(c->rootfs);
    free(c->state);
    free(c->created);
    free(c->exited_at);
    kv_free(c->annotations, c->n_annotations);
    free(c->pid_file);
    free(c);
    *c_p = NULL;
}

static int container_from_json(rd_t *rc, json_t *o, const char *sid, const char *cid,
                               persist_container_t *c)
{
    int64_t i = 0;
    int r;
    if ((r = rd_str(rc, o, "id", true, &c->id)) < 0)
        return r;
    if (strcmp(c->id, cid) != 0) {
        _cleanup_free_ char *what = xasprintf("`%s` does not match its directory `%s`", c->id, cid);
        return bad(rc, "id", what);
    }
    if ((r = rd_str(rc, o, "sandbox_id", true, &c->sandbox_id)) < 0)
        return r;
    if (strcmp(c->sandbox_id, sid) != 0) {
        _cleanup_free_ char *what =
            xasprintf("`%s` does not match the sandbox directory `%s`", c->sandbox_id, sid);
        return bad(rc, "sandbox_id", what);
    }
    if ((r = rd_str(rc, o, "bundle", false, &c->bundle)) < 0 ||
        (r = rd_str(rc, o, "rootfs", false, &c->rootfs)) < 0 ||
        (r = rd_str(rc, o, "state", true, &c->state)) < 0 ||
        (r = rd_time(rc, o, "created", false, &c->created)) < 0)
        return r;
    if ((r = rd_int(rc, o, "init_pid", false, 0, INT_MAX, &i)) < 0)
        return r;
    c->init_pid = (pid_t)i;
    i = 0;
    if ((r = rd_int(rc, o, "init_start", false, 0, INT64_MAX, &i)) < 0)
        return r;
    c->init_start = (uint64_t)i;
    if ((r = rd_bool(rc, o, "exited", &c->exited)) < 0)
        return r;
    if (c->exited) {
        i = 0;
        if ((r = rd_int(rc, o, "exit_status", true, 0, 255 + 128, &i)) < 0)
            return r;
        c->exit_status = (int)i;
        if ((r = rd_time(rc, o, "exited_at", false, &c->exited_at)) < 0)
            return r;
    }
    if ((r = rd_kv(rc, o, "annotations", &c->annotations, &c->n_annotations)) < 0)
        return r;
    i = 0;
    if ((r = rd_int(rc, o, "owner_uid", false, 0, UINT32_MAX, &i)) < 0)
        return r;
    c->owner_uid = (uint32_t)i;
    if ((r = rd_str(rc, o, "pid_file", false, &c->pid_file)) < 0 ||
        (r = rd_bool(rc, o, "console", &c->console)) < 0)
        return r;
    return 0;
}

int persist_container_load(const persist_store_t *store, const char *sandbox_id,
                           const char *container_id, persist_container_t **out, err_t *err)
{
    _cleanup_free_ char *sdir = NULL;
    int r = persist_sandbox_dir(store, sandbox_id, &sdir, err);
    if (r < 0 || (r = check_id("container", container_id, err)) < 0)
        return r;
    _cleanup_free_ char *path = xasprintf("%s/%s/%s", sdir, container_id, CONTAINER_FILE);
    _cleanup_json_ json_t *doc = NULL;
    if ((r = load_doc(path, &doc, err)) < 0) {
        if (r == -ENOENT)
            return err_make(err, ENOENT, "container `%s` does not exist in sandbox `%s`",
                            container_id, sandbox_id);
        return r;
    }
    rd_t c = {path, err};
    persist_container_t *ct = xcalloc(1, sizeof *ct);
    if ((r = container_from_json(&c, doc, sandbox_id, container_id, ct)) < 0) {
        persist_container_free(&ct);
        return r;
    }
    *out = ct;
    return 0;
}

int persist_container_remove(persist_store_t *store, const char *sandbox_id,
                             const char *container_id, err_t *err)
{
    _cleanup_free_ char *sdir = NULL;
    int r = persist_sandbox_dir(store, sandbox_id, &sdir, err);
    if (r < 0 || (r = check_id("container", container_id, err)) < 0)
        return r;
    _cleanup_free_ char *dir = xasprintf("%s/%s", sdir, container_id);
    _cleanup_free_ char *file = xasprintf("%s/%s", dir, CONTAINER_FILE);
    if (unlink(file) < 0 && errno != ENOENT)
        return err_errno(err, "remove container `%s`: unlink `%s`", container_id, file);
    clean_stale_temps(dir, CONTAINER_FILE);
    if (rmdir(dir) < 0) {
        if (errno == ENOENT)
            return 0;
        if (errno == ENOTEMPTY || errno == EEXIST) {
            _cleanup_dir_ DIR *d = opendir(dir);
            struct dirent *e;
            while (d && (e = readdir(d)))
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                    return err_make(err, ENOTEMPTY,
                                    "remove container `%s`: `%s` holds `%s`, not ours",
                                    container_id, dir, e->d_name);
        }
        return err_errno(err, "remove container `%s`: rmdir `%s`", container_id, dir);
    }
    return fsync_dir(sdir, err);
}

int persist_container_list(const persist_store_t *store, const char *sandbox_id, char ***ids_out,
                           size_t *n_out, err_t *err)
{
    _cleanup_free_ char *sdir = NULL;
    int r = persist_sandbox_dir(store, sandbox_id, &sdir, err);
    if (r < 0)
        return r;
    if ((r = list_with(sdir, CONTAINER_FILE, ids_out, n_out, err)) == -ENOENT)
        return err_make(err, ENOENT, "sandbox `%s` does not exist", sandbox_id);
    return r;
}

int persist_find_sandbox(const persist_store_t *store, const char *container_id,
                         char **sandbox_id_out, err_t *err)
{
    int r = check_id("container", container_id, err);
    if (r < 0)
        return r;
    _cleanup_dir_ DIR *d = opendir(store->root);
    if (!d)
        return err_errno(err, "open `%s`", store->root);
    char *own = NULL;
    struct dirent *e;
    struct stat st;
    while ((e = readdir(d))) {
        if (!persist_id_valid(e->d_name))
            continue;
        _cleanup_free_ char *rel = xasprintf("%s/%s/%s", e->d_name, container_id, CONTAINER_FILE);
        if (fstatat(dirfd(d), rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
            free(own);
            *sandbox_id_out = xstrdup(e->d_name);
            return 0;
        }
        if (!own && strcmp(e->d_name, container_id) == 0) {
            _cleanup_free_ char *sbf = xasprintf("%s/%s", e->d_name, SANDBOX_FILE);
            if (fstatat(dirfd(d), sbf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
                own = xstrdup(e->d_name);
        }
    }
    if (own) {
        *sandbox_id_out = own;
        return 0;
    }
    return err_make(err, ENOENT, "container does not exist: `%s`", container_id);
}

/* ---- locking ------------------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int persist_lock_sandbox(const persist_store_t *store, const char *sandbox_id, int flags,
                         int timeout_ms, persist_lock_t **out, err_t *err)
{
    _cleanup_free_ char *dir = NULL;
    int r = persist_sandbox_dir(store, sandbox_id, &dir, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *path = xasprintf("%s/%s", dir, LOCK_FILE);
    int op = (flags & PERSIST_LOCK_SHARED) ? LOCK_SH : LOCK_EX;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : clock_mono_ms() + timeout_ms;
    long backoff = 1;
    for (;;) {
        if (flags & PERSIST_LOCK_CREATE) {
            if ((r = mkdir_p(dir, 0700, err)) < 0)
                return err_wrap(err, "lock sandbox `%s`", sandbox_id);
        }
        _cleanup_close_ int fd =
            open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (fd < 0) {
            if (errno == ENOENT && !(flags & PERSIST_LOCK_CREATE))
                return err_make(err, ENOENT, "sandbox `%s` does not exist", sandbox_id);
            if (errno != ENOENT)
                return err_errno(err, "lock sandbox `%s`: open `%s`", sandbox_id, path);
            continue; /* removed between mkdir and open: again */
        }
        for (;;) {
            if (flock(fd, op | LOCK_NB) == 0)
                break;
            if (errno == EINTR)
                continue;
            if (errno != EWOULDBLOCK)
                return err_errno(err, "lock sandbox `%s`: flock `%s`", sandbox_id, path);
            int64_t left = deadline - clock_mono_ms();
            if (left <= 0)
                return err_make(err, ETIMEDOUT,
                                "lock sandbox `%s`: still held by another husk after %d ms",
                                sandbox_id, timeout_ms);
            sleep_ms(backoff < left ? backoff : (long)left);
            if (backoff < 50)
                backoff *= 2;
        }
        /* The file we locked must still be the one at the path: the holder
         * may have removed the sandbox (and someone recreated it). */
        struct stat a, b;
        if (fstat(fd, &a) < 0)
            return err_errno(err, "lock sandbox `%s`: fstat", sandbox_id);
        if (stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
            persist_lock_t *l = xcalloc(1, sizeof *l);
            l->fd = TAKE_FD(fd);
            l->path = TAKE_PTR(path);
            *out = l;
            return 0;
        }
    }
}

void persist_unlock(persist_lock_t **lock_p)
{
    if (!lock_p || !*lock_p)
        return;
    persist_lock_t *l = *lock_p;
    if (l->fd >= 0) {
        flock(l->fd, LOCK_UN);
        close(l->fd);
    }
    free(l->path);
    free(l);
    *lock_p = NULL;
}

/* ---- records as text (the persist actor's messages) ---------------------- */

static int to_text(json_t *o, const char *what, const char *id, const char *bad_field, char **out,
                   err_t *err)
{
    if (bad_field)
        return err_make(err, EINVAL, "%s `%s`: field `%s`: not valid UTF-8", what, id, bad_field);
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        abort();
    *out = text;
    return 0;
}

int persist_sandbox_to_text(const persist_sandbox_t *sb, char **out, err_t *err)
{
    int r = check_sandbox(sb, err);
    if (r < 0)
        return r;
    const char *bad_field = NULL;
    _cleanup_json_ json_t *o = sandbox_to_json(sb, &bad_field);
    return to_text(o, "sandbox", sb->id, bad_field, out, err);
}

int persist_container_to_text(const persist_container_t *c, char **out, err_t *err)
{
    int r = check_container(c, err);
    if (r < 0)
        return r;
    const char *bad_field = NULL;
    _cleanup_json_ json_t *o = container_to_json(c, &bad_field);
    return to_text(o, "container", c->id, bad_field, out, err);
}

int persist_sandbox_from_text(const char *origin, const char *text, size_t len,
                              const char *sandbox_id, persist_sandbox_t **out, err_t *err)
{
    int r = check_id("sandbox", sandbox_id, err);
    if (r < 0)
        return r;
    _cleanup_json_ json_t *doc = NULL;
    if ((r = parse_doc(origin, text, len, &doc, err)) < 0)
        return r;
    rd_t c = {origin, err};
    persist_sandbox_t *sb = xcalloc(1, sizeof *sb);
    if ((r = sandbox_from_json(&c, doc, sandbox_id, sb)) < 0 || (r = check_sandbox(sb, err)) < 0) {
        persist_sandbox_free(&sb);
        return r;
    }
    *out = sb;
    return 0;
}

static int container_from_doc(const char *origin, json_t *doc, const char *sandbox_id,
                              const char *container_id, persist_container_t **out, err_t *err)
{
    rd_t c = {origin, err};
    persist_container_t *ct = xcalloc(1, sizeof *ct);
    int r = container_from_json(&c, doc, sandbox_id, container_id, ct);
    if (r < 0 || (r = check_container(ct, err)) < 0) {
        persist_container_free(&ct);
        return r;
    }
    *out = ct;
    return 0;
}

int persist_container_from_text(const char *origin, const char *text, size_t len,
                                const char *sandbox_id, const char *container_id,
                                persist_container_t **out, err_t *err)
{
    int r = check_id("sandbox", sandbox_id, err);
    if (r < 0 || (r = check_id("container", container_id, err)) < 0)
        return r;
    _cleanup_json_ json_t *doc = NULL;
    if ((r = parse_doc(origin, text, len, &doc, err)) < 0)
        return r;
    return container_from_doc(origin, doc, sandbox_id, container_id, out, err);
}

int persist_containers_to_text(persist_container_t *const *cs, size_t n, char **out, err_t *err)
{
    _cleanup_json_ json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        const char *bad_field = NULL;
        json_t *o = container_to_json(cs[i], &bad_field);
        if (bad_field) {
            json_decref(o);
            return err_make(err, EINVAL, "container `%s`: field `%s`: not valid UTF-8", cs[i]->id,
                            bad_field);
        }
        json_array_append_new(a, o);
    }
    char *text = json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        abort();
    *out = text;
    return 0;
}

void persist_containers_free(persist_container_t **cs, size_t n)
{
    for (size_t i = 0; cs && i < n; i++)
        persist_container_free(&cs[i]);
    free(cs);
}

int persist_containers_from_text(const char *origin, const char *text, size_t len,
                                 const char *sandbox_id, persist_container_t ***out,
                                 size_t *n_out, err_t *err)
{
    json_error_t je;
    _cleanup_json_ json_t *a =
        len > PERSIST_MAX_FILE ? NULL : json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!a)
        return err_make(err, EBADMSG, "%s: %s", origin,
                        len > PERSIST_MAX_FILE ? "too large" : je.text);
    if (!json_is_array(a))
        return err_make(err, EBADMSG, "%s: expected a JSON array of container records", origin);
    size_t n = json_array_size(a);
    if (n > MAX_ITEMS)
        return err_make(err, EBADMSG, "%s: %zu records, at most %u", origin, n, MAX_ITEMS);
    persist_container_t **cs = xcalloc(n + 1, sizeof *cs);
    for (size_t i = 0; i < n; i++) {
        json_t *doc = json_array_get(a, i);
        _cleanup_free_ char *where = xasprintf("%s: record %zu", origin, i);
        const char *id = json_string_value(json_object_get(doc, "id"));
        int r = check_schema(where, doc, err);
        if (r == 0 && !id)
            r = err_make(err, EBADMSG, "%s: field `id`: missing or not a string", where);
        if (r == 0 && (r = check_id("container", id, err)) == 0)
            r = container_from_doc(where, doc, sandbox_id, id, &cs[i], err);
        if (r < 0) {
            persist_containers_free(cs, n);
            return r;
        }
    }
    *out = cs;
    *n_out = n;
    return 0;
}
