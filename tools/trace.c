/* tools/trace: the husk-trace program (tools/main_trace.c is its entry):
 * attach to a sandbox's bus tap; show, record, replay and summarize its
 * traffic; inject faults.
 *
 *   husk-trace [--root DIR] watch ID|PATH [--json] [filters] [--count N] [--seconds S]
 *   husk-trace [--root DIR] record ID|PATH FILE [--count N] [--seconds S]
 *   husk-trace [--root DIR] stats ID|PATH [--count N] [--seconds S]
 *   husk-trace [--root DIR] inject ID|PATH RULES | --list | --clear
 *   husk-trace show FILE [--json] [filters]
 *   husk-trace replay FILE
 *   husk-trace stats FILE
 *   filters: --actor NAME  --type GLOB  --container ID
 *
 * ID is a sandbox (or container) id under the runtime root (default
 * /run/husk), PATH a sandbox directory or its tap.sock.  A recording is a
 * msgpack stream: a header map, then one array per message
 * [ts_ns, type, from, to, note, envelope]. */
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <glob.h>
#include <jansson.h>
#include <msgpack.h>
#include <msgpack/fbuffer.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "actors/client.h"
#include "runtimes/runtime_actor.h"
#include "bus/bus.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "messages/mpread.h"
#include "messages/msg.h"
#include "persist/persist_actor.h"
#include "tools/trace.h"

#define DEFAULT_ROOT "/run/husk"
#define REQ_SLOTS    65536

struct rec {
    uint64_t ts;
    char type[MSG_SMALL], from[MSG_NAME_MAX], to[MSG_NAME_MAX], note[64];
    const uint8_t *env;
    size_t len;
};

struct req_slot {
    char from[MSG_NAME_MAX];
    uint64_t id;
    uint64_t ts;
    char type[MSG_SMALL];
};

struct type_stat {
    char type[MSG_SMALL];
    uint64_t count, replies, errors;
    double *lat;
    size_t nlat, cap;
};

static struct {
    const char *root;
    bool json;
    const char *actor, *type_glob, *container;
    long count;
    double seconds;
    FILE *out_file;
    msgpack_packer pk;
    struct req_slot *reqs;
    struct type_stat *stats;
    size_t nstats;
    bool want_stats;
    long seen;
} g = {.root = DEFAULT_ROOT};

static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
    stop = 1;
}

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "husk-trace: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* ---- finding the sandbox ------------------------------------------------ */

static bool is_socket(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* Resolves ID|PATH to the sandbox directory holding bus.sock and tap.sock. */
static char *sandbox_dir(const char *id)
{
    char buf[4096];
    if (strchr(id, '/')) {
        if (is_socket(id)) {
            snprintf(buf, sizeof buf, "%s", id);
            char *slash = strrchr(buf, '/');
            *slash = 0;
            return strdup(buf);
        }
        return strdup(id);
    }
    snprintf(buf, sizeof buf, "%s/%s/tap.sock", g.root, id);
    if (is_socket(buf)) {
        snprintf(buf, sizeof buf, "%s/%s", g.root, id);
        return strdup(buf);
    }
    /* a container id: its directory sits inside its sandbox's */
    snprintf(buf, sizeof buf, "%s/*/%s", g.root, id);
    glob_t gl;
    if (glob(buf, GLOB_ONLYDIR, NULL, &gl) == 0 && gl.gl_pathc > 0) {
        snprintf(buf, sizeof buf, "%s", gl.gl_pathv[0]);
        globfree(&gl);
        *strrchr(buf, '/') = 0;
        return strdup(buf);
    }
    die("no sandbox or container '%s' under %s (no %s/%s/tap.sock)", id, g.root, g.root, id);
    return NULL;
}

/* ---- printing ------------------------------------------------------------ */

static struct req_slot *slot(const char *from, uint64_t id)
{
    uint64_t h = id * 0x9e3779b97f4a7c15ull;
    for (const char *c = from; *c; c++)
        h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
    return &g.reqs[h % REQ_SLOTS];
}

static struct type_stat *stat_of(const char *type)
{
    for (size_t i = 0; i < g.nstats; i++)
        if (!strcmp(g.stats[i].type, type))
            return &g.stats[i];
    g.stats = realloc(g.stats, (g.nstats + 1) * sizeof *g.stats);
    struct type_stat *s = &g.stats[g.nstats++];
    memset(s, 0, sizeof *s);
    snprintf(s->type, sizeof s->type, "%s", type);
    return s;
}

static bool matches_container(json_t *env)
{
    json_t *body = json_object_get(env, "body");
    const char *keys[] = {"container_id", "container", "cid", "id"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *v = json_object_get(body, keys[i]);
        if (json_is_string(v) && !strcmp(json_string_value(v), g.container))
            return true;
    }
    return false;
}

static void handle(const struct rec *r)
{
    uint64_t id = 0, re = 0;
    msg_peek_ids(r->env, r->len, &id, &re);
    /* a request is remembered before the filters: a reply shown without
     * it still gets its latency and, in stats, its request's type */
    if (!g.out_file && !re && strcmp(r->to, "*")) {
        struct req_slot *s = slot(r->from, id);
        snprintf(s->from, sizeof s->from, "%s", r->from);
        s->id = id;
        s->ts = r->ts;
        snprintf(s->type, sizeof s->type, "%s", r->type);
    }
    if (g.actor && strcmp(r->from, g.actor) && strcmp(r->to, g.actor))
        return;
    if (g.type_glob && fnmatch(g.type_glob, r->type, 0))
        return;
    err_t err = ERR_INIT;
    char *text = NULL;
    json_t *env = NULL;
    if (g.container || !g.out_file) {
        text = msg_to_json(r->env, r->len, &err);
        env = text ? json_loads(text, 0, NULL) : NULL;
        if (g.container && (!env || !matches_container(env)))
            goto out;
    }
    g.seen++;

    if (g.out_file) {
        msgpack_pack_array(&g.pk, 6);
        msgpack_pack_uint64(&g.pk, r->ts);
        const char *strs[4] = {r->type, r->from, r->to, r->note};
        for (int i = 0; i < 4; i++) {
            msgpack_pack_str(&g.pk, strlen(strs[i]));
            msgpack_pack_str_body(&g.pk, strs[i], strlen(strs[i]));
        }
        msgpack_pack_bin(&g.pk, r->len);
        msgpack_pack_bin_body(&g.pk, r->env, r->len);
        fflush(g.out_file);
        goto out;
    }

    /* latency: a reply is matched with its request by (requester, id) */
    double lat_us = -1;
    char req_type[MSG_SMALL] = "";
    if (re) {
        struct req_slot *s = slot(r->to, re);
        if (s->id == re && !strcmp(s->from, r->to)) {
            lat_us = (double)(r->ts - s->ts) / 1000.0;
            snprintf(req_type, sizeof req_type, "%s", s->type);
        }
    }
    json_t *code = env ? json_object_get(env, "code") : NULL;
    long status = json_is_integer(code) ? (long)json_integer_value(code) : 0;

    if (g.want_stats) {
        struct type_stat *s = stat_of(re ? (req_type[0] ? req_type : r->type) : r->type);
        if (!re)
            s->count++;
        else {
            s->replies++;
            if (status)
                s->errors++;
            if (lat_us >= 0) {
                if (s->nlat == s->cap) {
                    s->cap = s->cap ? s->cap * 2 : 64;
                    s->lat = realloc(s->lat, s->cap * sizeof *s->lat);
                }
                s->lat[s->nlat++] = lat_us;
            }
        }
        goto out;
    }

    time_t secs = (time_t)(r->ts / 1000000000ull);
    struct tm tm;
    localtime_r(&secs, &tm);
    char when[32];
    strftime(when, sizeof when, "%H:%M:%S", &tm);
    if (g.json) {
        json_t *o =
            json_pack("{s:I,s:s,s:s,s:s,s:I,s:I}", "ts", (json_int_t)r->ts, "from", r->from, "to",
                      r->to, "type", r->type, "id", (json_int_t)id, "re", (json_int_t)re);
        if (lat_us >= 0)
            json_object_set_new(o, "latency_us", json_real(lat_us));
        if (r->note[0])
            json_object_set_new(o, "note", json_string(r->note));
        json_object_set_new(o, "status", json_integer(status));
        if (env)
            json_object_set(o, "msg", env);
        char *line = json_dumps(o, JSON_COMPACT);
        printf("%s\n", line);
        free(line);
        json_decref(o);
    } else {
        char body[160] = "";
        json_t *b = env ? json_object_get(env, "body") : NULL;
        if (b) {
            char *bs = json_dumps(b, JSON_COMPACT);
            if (bs) {
                snprintf(body, sizeof body, "%s%s", bs, strlen(bs) > 120 ? "" : "");
                if (strlen(bs) > 120)
                    strcpy(body + 117, "...");
                free(bs);
            }
        }
        printf("%s.%06u %s -> %s %s id=%llu", when, (unsigned)(r->ts % 1000000000ull / 1000),
               r->from, r->to, r->type, (unsigned long long)id);
        if (re)
            printf(" re=%llu", (unsigned long long)re);
        if (lat_us >= 0)
            printf(" +%.1fus", lat_us);
        if (status) {
            json_t *st = json_object_get(env, "status");
            printf(" status=%ld \"%s\"", status, json_is_string(st) ? json_string_value(st) : "");
        }
        printf(" %s", body);
        if (r->note[0])
            printf(" [%s]", r->note);
        if (!env)
            printf(" [undecodable: %s]", err_str(&err));
        printf("\n");
    }
    fflush(stdout);
out:
    json_decref(env);
    free(text);
    err_clear(&err);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_stats(void)
{
    printf("%-28s %8s %8s %7s %10s %10s %10s %10s\n", "TYPE", "COUNT", "REPLIES", "ERRORS",
           "P50(us)", "P90(us)", "P99(us)", "MAX(us)");
    for (size_t i = 0; i < g.nstats; i++) {
        struct type_stat *s = &g.stats[i];
        printf("%-28s %8llu %8llu %7llu", s->type, (unsigned long long)s->count,
               (unsigned long long)s->replies, (unsigned long long)s->errors);
        if (s->nlat) {
            qsort(s->lat, s->nlat, sizeof(double), cmp_double);
            printf(" %10.1f %10.1f %10.1f %10.1f", s->lat[(s->nlat - 1) / 2],
                   s->lat[(size_t)((s->nlat - 1) * 0.9)], s->lat[(size_t)((s->nlat - 1) * 0.99)],
                   s->lat[s->nlat - 1]);
        } else {
            printf(" %10s %10s %10s %10s", "-", "-", "-", "-");
        }
        printf("\n");
        free(s->lat);
    }
}

/* ---- sources ------------------------------------------------------------ */

static void copy_frame(zmq_msg_t *f, char *dst, size_t cap)
{
    size_t n = zmq_msg_size(f);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, zmq_msg_data(f), n);
    dst[n] = 0;
}

/* One tap message, [type][from][to][envelope][note]: its first five
 * parts into parts (the caller closes them), extra parts dropped; returns
 * how many were kept. */
static int recv_tap_parts(void *sock, zmq_msg_t parts[5])
{
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f);
            break;
        }
        more = zmq_msg_more(&f);
        if (n < 5)
            parts[n++] = f;
        else
            zmq_msg_close(&f);
    }
    return n;
}

static void live(const char *id)
{
    char *dir = sandbox_dir(id);
    char ep[4200];
    snprintf(ep, sizeof ep, "ipc://%s/tap.sock", dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/tap.sock", dir);
    if (!is_socket(path))
        die("%s: no tap socket (is the sandbox running?)", path);
    free(dir);
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    if (zmq_connect(sub, ep) < 0)
        die("connect %s: %s", ep, zmq_strerror(errno));
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!stop && (g.count <= 0 || g.seen < g.count)) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        double el = (double)(now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
        if (g.seconds > 0 && el >= g.seconds)
            break;
        zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0)
            continue;
        zmq_msg_t parts[5];
        int n = recv_tap_parts(sub, parts);
        if (n == 5) {
            struct rec r;
            struct timespec rt;
            clock_gettime(CLOCK_REALTIME, &rt);
            copy_frame(&parts[0], r.type, sizeof r.type);
            copy_frame(&parts[1], r.from, sizeof r.from);
            copy_frame(&parts[2], r.to, sizeof r.to);
            copy_frame(&parts[4], r.note, sizeof r.note);
            r.env = zmq_msg_data(&parts[3]);
            r.len = zmq_msg_size(&parts[3]);
            /* the sender's timestamp when readable, else arrival time */
            r.ts = (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec;
            msg_t *m = NULL;
            err_t err = ERR_INIT;
            if (msg_decode(r.env, r.len, &m, &err) == 0 && m->ts_ns)
                r.ts = m->ts_ns;
            msg_destroy(&m);
            err_clear(&err);
            handle(&r);
        }
        for (int i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
    }
    zmq_close(sub);
    zmq_ctx_term(ctx);
}

static void copy_str(mpr_t *r, char *dst, size_t cap, const char *file)
{
    const char *s;
    uint32_t n;
    if (mpr_str(r, &s, &n) < 0)
        die("%s: corrupt record", file);
    if (n >= cap)
        n = (uint32_t)cap - 1;
    memcpy(dst, s, n);
    dst[n] = 0;
}

/* The records of a recording; rec.env points into *bufp (caller frees). */
static struct rec *load_recording(const char *file, uint8_t **bufp, size_t *nrec, char *sandbox,
                                  size_t sandbox_cap)
{
    FILE *f = fopen(file, "rb");
    if (!f)
        die("open %s: %s", file, strerror(errno));
    size_t cap = 1 << 20, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    mpr_t r;
    mpr_init(&r, buf, len);
    uint32_t hn;
    if (mpr_map(&r, &hn) < 0)
        die("%s: not a husk-trace recording", file);
    for (uint32_t i = 0; i < hn; i++) {
        char key[32];
        copy_str(&r, key, sizeof key, file);
        if (!strcmp(key, "sandbox") && sandbox)
            copy_str(&r, sandbox, sandbox_cap, file);
        else if (mpr_skip(&r, 4) < 0)
            die("%s: corrupt header", file);
    }
    struct rec *recs = NULL;
    size_t nr = 0, rcap = 0;
    while (r.p < r.end) {
        uint32_t an;
        struct rec rec;
        const uint8_t *b;
        uint32_t bl;
        if (mpr_array(&r, &an) < 0 || an != 6 || mpr_u64(&r, &rec.ts) < 0)
            die("%s: corrupt record at byte %zu", file, (size_t)(r.p - buf));
        copy_str(&r, rec.type, sizeof rec.type, file);
        copy_str(&r, rec.from, sizeof rec.from, file);
        copy_str(&r, rec.to, sizeof rec.to, file);
        copy_str(&r, rec.note, sizeof rec.note, file);
        if (mpr_bin(&r, &b, &bl) < 0)
            die("%s: corrupt record", file);
        rec.env = b;
        rec.len = bl;
        if (nr == rcap)
            recs = realloc(recs, (rcap = rcap ? rcap * 2 : 256) * sizeof *recs);
        recs[nr++] = rec;
    }
    *bufp = buf;
    *nrec = nr;
    return recs;
}

static void from_file(const char *file)
{
    uint8_t *buf;
    size_t n;
    struct rec *recs = load_recording(file, &buf, &n, NULL, 0);
    for (size_t i = 0; i < n && (g.count <= 0 || g.seen < g.count); i++)
        handle(&recs[i]);
    free(recs);
    free(buf);
}

/* ---- inject ---------------------------------------------------------------- */

static int inject(const char *id, const char *what)
{
    char *dir = sandbox_dir(id);
    char ep[4200];
    snprintf(ep, sizeof ep, "ipc://%s/bus.sock", dir);
    free(dir);
    bus_client_t *c = NULL;
    err_t err = ERR_INIT;
    char name[64];
    snprintf(name, sizeof name, "trace-%d", (int)getpid());
    if (bus_client_new(ep, name, &c, &err) < 0)
        die("%s", err_str(&err));
    msg_t *m;
    if (!strcmp(what, "--list"))
        m = msg_new(MSG_BUS_FAULT_LIST);
    else if (!strcmp(what, "--clear"))
        m = msg_new(MSG_BUS_FAULT_CLEAR);
    else {
        m = msg_new(MSG_BUS_FAULT_SET);
        msg_set_str(&((msg_bus_fault_set_t *)m->body)->rules, what);
    }
    msg_t *reply = NULL;
    if (bus_client_call(c, "bus", &m, 3000, &reply, &err) < 0) {
        bus_client_destroy(&c);
        die("inject: %s", err_str(&err));
    }
    msg_bus_fault_state_t *st = MSG_BODY(reply, BUS_FAULT_STATE, bus_fault_state);
    for (size_t i = 0; st && i < st->rules.n; i++)
        printf("%s\thits=%llu\n", st->rules.v[i],
               (unsigned long long)(i < st->hits.n ? st->hits.v[i] : 0));
    msg_destroy(&reply);
    bus_client_destroy(&c);
    return 0;
}

/* ---- replay ------------------------------------------------------------------
 * Re-drives the runtime handler with a recording: a private bus, the real
 * runtime actor (temp runtime root), one stub client per other actor of
 * the recording.  Inputs to the runtime are sent by the stub named as
 * their sender (recorded request ids mapped to the live ones), and every
 * message the runtime sends is read off the tap and compared with the
 * recorded one by type, destination, status and body, modulo ids, times,
 * pids and the sandbox directory.  The broker's own messages (bus.*,
 * actor.*) are left out: the live broker makes its own. */

#define REPLAY_WAIT_MS 5000
/* Outputs of concurrent flows (an exit's state change while a delete
 * releases resources) may come in another order than recorded: the
 * persist actor is real and answers at its own pace.  An output that is
 * not the one expected waits, up to REPLAY_REORDER_MAX of them and
 * REPLAY_REORDER_MS, for a later record to claim it; a message never
 * claimed is still a divergence. */
#define REPLAY_REORDER_MAX 16
#define REPLAY_REORDER_MS  1500

struct pending_out {
    char *canon;
    uint64_t id, re;
};

static const char *const rt_events[] = {"agent.exited", "agent.oom", "agent.lost", "hv.exited",
                                        NULL};

static bool replay_skip(const struct rec *r)
{
    if (!strcmp(r->type, "bus.error")) /* a failure reply is the runtime's own */
        return !strcmp(r->from, "bus") || !strcmp(r->to, "bus");
    /* the persist actor is real in a replay (its records carry pids and
     * times of the recorded run): its traffic is neither input nor output */
    return !strncmp(r->type, "bus.", 4) || !strncmp(r->type, "actor.", 6) ||
           !strncmp(r->type, "persist.", 8) || !strcmp(r->from, "bus") ||
           !strcmp(r->to, "bus");
}

static bool is_input(const struct rec *r)
{
    if (!strcmp(r->to, RT_ACTOR_NAME))
        return true;
    if (strcmp(r->to, "*") || !strcmp(r->from, RT_ACTOR_NAME))
        return false;
    for (const char *const *e = rt_events; *e; e++)
        if (!strcmp(r->type, *e))
            return true;
    return false;
}

struct idmap {
    uint64_t rec, live;
};

static struct {
    struct idmap *v;
    size_t n, cap;
} ids;

static void map_id(uint64_t rec, uint64_t live)
{
    if (ids.n == ids.cap)
        ids.v = realloc(ids.v, (ids.cap = ids.cap ? ids.cap * 2 : 256) * sizeof *ids.v);
    ids.v[ids.n++] = (struct idmap){rec, live};
}

static uint64_t live_id(uint64_t rec)
{
    for (size_t i = ids.n; i-- > 0;)
        if (ids.v[i].rec == rec)
            return ids.v[i].live;
    return 0;
}

static char rec_dir[4096], live_dir[4400];
static char rec_root[4096], live_root[4400]; /* the runtime roots holding them */

/* Drops what legitimately differs between two runs. */
static void normalize(json_t *v)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        void *tmp;
        json_object_foreach_safe(v, tmp, k, x)
        {
            size_t kl = strlen(k);
            if (strstr(k, "pid") || (kl > 3 && !strcmp(k + kl - 3, "_ns")) ||
                (kl > 3 && !strcmp(k + kl - 3, "_at")) || !strcmp(k, "created") ||
                !strcmp(k, "ts") || !strcmp(k, "started"))
                json_object_del(v, k);
            else
                normalize(x);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) normalize(x);
    } else if (json_is_string(v)) {
        /* the sandbox dir first: it lies under the root */
        const char *str = json_string_value(v);
        const char *dirs[4] = {rec_dir, live_dir, rec_root, live_root};
        const char *names[4] = {"<sandbox>", "<sandbox>", "<root>", "<root>"};
        for (int d = 0; d < 4; d++) {
            size_t dl = strlen(dirs[d]);
            if (dl && !strncmp(str, dirs[d], dl) && (str[dl] == 0 || str[dl] == '/')) {
                char *ns = NULL;
                if (asprintf(&ns, "%s%s", names[d], str + dl) > 0) {
                    json_string_set(v, ns);
                    free(ns);
                }
                break;
            }
        }
    }
}

/* "type to status body" of an envelope, normalized; caller frees. */
static char *canon(const char *type, const char *to, const void *env, size_t len)
{
    err_t err = ERR_INIT;
    char *text = msg_to_json(env, len, &err);
    err_clear(&err);
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    json_t *body = j ? json_object_get(j, "body") : NULL;
    json_t *code = j ? json_object_get(j, "code") : NULL;
    if (body)
        normalize(body);
    char *bs = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_t *st = j ? json_object_get(j, "status") : NULL;
    if (st)
        normalize(st);
    char *out = NULL;
    if (asprintf(&out, "%s -> %s status=%lld%s%s%s %s", type, to,
                 json_is_integer(code) ? (long long)json_integer_value(code) : 0LL,
                 json_is_string(st) ? " \"" : "", json_is_string(st) ? json_string_value(st) : "",
                 json_is_string(st) ? "\"" : "", bs ? bs : "{}") < 0)
        out = NULL;
    free(bs);
    json_decref(j);
    return out;
}

struct stub {
    char name[MSG_NAME_MAX];
    bus_client_t *c;
};

static bus_client_t *stub_for(struct stub **stubs, size_t *n, const char *name, const char *ep)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*stubs)[i].name, name))
            return (*stubs)[i].c;
    *stubs = realloc(*stubs, (*n + 1) * sizeof **stubs);
    struct stub *s = &(*stubs)[(*n)++];
    snprintf(s->name, sizeof s->name, "%s", name);
    err_t err = ERR_INIT;
    if (bus_client_new(ep, name, &s->c, &err) < 0)
        die("replay: stub %s: %s", name, err_str(&err));
    return s->c;
}

/* The next message the runtime sends (not to the broker), off the tap. */
static int next_output(void *tap, int wait_ms, struct rec *out, zmq_msg_t *env)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left =
            wait_ms - ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0)
            return -1;
        zmq_pollitem_t it = {tap, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, left) <= 0)
            continue;
        zmq_msg_t parts[5];
        int n = recv_tap_parts(tap, parts);
        bool got = false;
        if (n == 5) {
            copy_frame(&parts[0], out->type, sizeof out->type);
            copy_frame(&parts[1], out->from, sizeof out->from);
            copy_frame(&parts[2], out->to, sizeof out->to);
            out->note[0] = 0;
            if (!strcmp(out->from, RT_ACTOR_NAME) && !replay_skip(out)) {
                zmq_msg_init(env);
                zmq_msg_move(env, &parts[3]);
                out->env = zmq_msg_data(env);
                out->len = zmq_msg_size(env);
                got = true;
            }
        }
        for (int i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
        if (got)
            return 0;
    }
}

static void print_rec(const char *what, const char *canon_text, uint64_t id, uint64_t re)
{
    printf("  %s: %s", what, canon_text);
    if (id || re)
        printf(" (id=%llu re=%llu)", (unsigned long long)id, (unsigned long long)re);
    printf("\n");
}

static int replay(const char *file)
{
    uint8_t *buf;
    size_t n;
    char header_sb[RT_ID_MAX + 1] = "";
    struct rec *recs = load_recording(file, &buf, &n, header_sb, sizeof header_sb);

    /* the sandbox and backend the recording ran with */
    char sbid[RT_ID_MAX + 1];
    snprintf(sbid, sizeof sbid, "%s", header_sb);
    for (size_t i = 0; i < n; i++) {
        msg_t *m = NULL;
        err_t err = ERR_INIT;
        if (!strcmp(recs[i].type, "hv.start") &&
            msg_decode(recs[i].env, recs[i].len, &m, &err) == 0) {
            msg_hv_start_t *b = m->body;
            snprintf(sbid, sizeof sbid, "%s", b->sandbox_id);
            snprintf(rec_dir, sizeof rec_dir, "%s", b->dir);
            snprintf(rec_root, sizeof rec_root, "%s", b->dir);
            char *slash = strrchr(rec_root, '/');
            if (slash && slash != rec_root)
                *slash = 0;
        } else if (!strcmp(recs[i].type, "hv.started") &&
                   msg_decode(recs[i].env, recs[i].len, &m, &err) == 0 && m->body) {
            setenv("HUSK_HYPERVISOR", ((msg_hv_started_t *)m->body)->backend, 1);
        }
        msg_destroy(&m);
        err_clear(&err);
    }
    if (!sbid[0])
        die("replay: %s names no sandbox", file);

    char tmpl[] = "/tmp/husk-replay.XXXXXX";
    if (!mkdtemp(tmpl))
        die("replay: mkdtemp: %s", strerror(errno));
    char root[4200], busdir[4200];
    snprintf(root, sizeof root, "%s/root", tmpl);
    snprintf(busdir, sizeof busdir, "%s/bus", tmpl);
    snprintf(live_dir, sizeof live_dir, "%s/%s", root, sbid);
    snprintf(live_root, sizeof live_root, "%s", root);
    mkdir(root, 0700);

    err_t err = ERR_INIT;
    cfg_t *cfg = NULL;
    bus_t *bus = NULL;
    actor_t *rt = NULL;
    if (cfg_load(NULL, &cfg, &err) < 0)
        die("replay: configuration: %s", err_str(&err));
    bus_opts_t bo = {.dir = busdir, .name = "replay", .supervise_ms = -1};
    if (bus_new(&bo, &bus, &err) < 0)
        die("replay: bus: %s", err_str(&err));
    void *tap = zmq_socket(bus_context(bus), ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(tap, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(tap, ZMQ_SUBSCRIBE, "", 0);
    zmq_connect(tap, bus_tap_endpoint(bus));
    usleep(100 * 1000); /* the broker counts the subscription before it copies */

    /* every peer of the runtime is there before it starts (a request to a
     * missing actor fails at once) */
    struct stub *stubs = NULL;
    size_t nstubs = 0;
    for (size_t i = 0; i < n; i++) {
        const char *names[2] = {recs[i].from, recs[i].to};
        if (replay_skip(&recs[i]) || (strcmp(recs[i].from, RT_ACTOR_NAME) && !is_input(&recs[i])))
            continue;
        for (int k = 0; k < 2; k++)
            if (strcmp(names[k], RT_ACTOR_NAME) && strcmp(names[k], "*"))
                stub_for(&stubs, &nstubs, names[k], bus_ipc_endpoint(bus));
    }
    usleep(100 * 1000); /* their connections are made in the background */

    int done_fd = eventfd(0, EFD_CLOEXEC);
    actor_opts_t ao = {.zctx = bus_context(bus), .endpoint = bus_endpoint(bus), .sandbox = sbid};
    actor_t *pst = NULL;
    if (persist_actor_start(&ao, root, &pst, &err) < 0)
        die("replay: persist: %s", err_str(&err));
    rt_actor_opts_t ro = {.cfg = cfg, .root = root, .sandbox_id = sbid, .done_fd = done_fd};
    if (rt_actor_start(&ao, &ro, &rt, &err) < 0)
        die("replay: runtime: %s", err_str(&err));

    size_t inputs = 0, outputs = 0, npend = 0;
    struct pending_out pend[REPLAY_REORDER_MAX];
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct rec *r = &recs[i];
        if (replay_skip(r))
            continue;
        uint64_t id = 0, re = 0;
        msg_peek_ids(r->env, r->len, &id, &re);
        if (is_input(r)) {
            msg_t *m = NULL;
            if (msg_decode(r->env, r->len, &m, &err) < 0) {
                printf("replay: record %zu (%s from %s) is undecodable: %s; sent as recorded\n", i,
                       r->type, r->from, err_str(&err));
                err_clear(&err);
                continue;
            }
            if (m->reply_to) {
                uint64_t l = live_id(m->reply_to);
                if (!l) {
                    printf("replay: record %zu: %s from %s answers a request the runtime did "
                           "not make (re=%llu)\n",
                           i, r->type, r->from, (unsigned long long)m->reply_to);
                    msg_destroy(&m);
                    rc = 1;
                    break;
                }
                m->reply_to = l;
            }
            /* the host processes of the recording (the CLI's proxies) are
             * gone, or are others by now: the replay watches none */
            if (m->type == MSG_RT_CREATE)
                ((msg_rt_create_t *)m->body)->proxy_pid = 0;
            else if (m->type == MSG_RT_EXEC)
                ((msg_rt_exec_t *)m->body)->proxy_pid = 0;
            /* requests get the stub's own ids: the runtime's answers are
             * compared without ids, by destination */
            bus_client_t *c = stub_for(&stubs, &nstubs, r->from, bus_ipc_endpoint(bus));
            if (bus_client_send(c, r->to, &m, &err) < 0)
                die("replay: send %s from %s: %s", r->type, r->from, err_str(&err));
            inputs++;
            continue;
        }
        if (strcmp(r->from, RT_ACTOR_NAME))
            continue; /* traffic between other actors */
        /* an output of the runtime: the expected one, maybe after others
         * that later records claim (REPLAY_REORDER_*) */
        char *want = canon(r->type, r->to, r->env, r->len);
        long matched = -1;
        for (size_t k = 0; k < npend && matched < 0; k++)
            if (!strcmp(pend[k].canon, want))
                matched = (long)k;
        int64_t since = clock_mono_ms();
        while (matched < 0 && npend < REPLAY_REORDER_MAX) {
            int64_t left = (npend ? REPLAY_REORDER_MS : REPLAY_WAIT_MS) - (clock_mono_ms() - since);
            struct rec live;
            zmq_msg_t env;
            if (left <= 0 || next_output(tap, (int)left, &live, &env) < 0)
                break;
            struct pending_out *po = &pend[npend++];
            msg_peek_ids(live.env, live.len, &po->id, &po->re);
            po->canon = canon(live.type, live.to, live.env, live.len);
            zmq_msg_close(&env);
            if (!strcmp(po->canon, want))
                matched = (long)npend - 1;
            else if (npend == 1)
                since = clock_mono_ms(); /* the reorder window starts */
        }
        if (matched < 0) {
            if (npend) {
                printf("DIVERGENCE at record %zu (output %zu of the runtime):\n", i, outputs + 1);
                print_rec("recorded", want, id, re);
                print_rec("replayed", pend[0].canon, pend[0].id, pend[0].re);
            } else {
                printf("DIVERGENCE at record %zu: the runtime sent nothing within %d ms\n", i,
                       REPLAY_WAIT_MS);
                print_rec("recorded", want, id, re);
            }
            free(want);
            rc = 1;
            break;
        }
        if (!re)
            map_id(id, pend[matched].id); /* its answer will come back with the live id */
        free(pend[matched].canon);
        memmove(&pend[matched], &pend[matched + 1], (npend - (size_t)matched - 1) * sizeof *pend);
        npend--;
        free(want);
        outputs++;
    }
    if (rc == 0) {
        struct rec live;
        zmq_msg_t env;
        char *more = NULL;
        if (npend) {
            more = strdup(pend[0].canon);
        } else if (next_output(tap, 300, &live, &env) == 0) {
            more = canon(live.type, live.to, live.env, live.len);
            zmq_msg_close(&env);
        }
        if (more) {
            printf("DIVERGENCE after the recording's end: the runtime sent more\n");
            print_rec("replayed", more, 0, 0);
            free(more);
            rc = 1;
        }
    }
    for (size_t k = 0; k < npend; k++)
        free(pend[k].canon);
    if (rc == 0)
        printf("replay: %zu inputs, %zu outputs of the runtime: the same sequence\n", inputs,
               outputs);
    actor_stop(&rt, 5000);
    actor_stop(&pst, 5000);
    for (size_t i = 0; i < nstubs; i++)
        bus_client_destroy(&stubs[i].c);
    free(stubs);
    zmq_close(tap);
    bus_destroy(&bus);
    cfg_destroy(&cfg);
    close(done_fd);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    if (system(cmd) != 0)
        fprintf(stderr, "husk-trace: could not remove %s\n", tmpl);
    free(ids.v);
    free(recs);
    free(buf);
    return rc;
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage:\n"
            "  husk-trace [--root DIR] watch ID|PATH [--json] [filters] [--count N] [--seconds S]\n"
            "  husk-trace [--root DIR] record ID|PATH FILE [--count N] [--seconds S]\n"
            "  husk-trace [--root DIR] stats ID|PATH|FILE [--count N] [--seconds S]\n"
            "  husk-trace [--root DIR] inject ID|PATH RULES|--list|--clear\n"
            "  husk-trace show FILE [--json] [filters]\n"
            "  husk-trace replay FILE   re-drive the runtime handler, report divergence\n"
            "filters: --actor NAME --type GLOB --container ID\n"
            "fault rules: see docs/faults.md\n");
}

int trace_main(int argc, char **argv)
{
    static const struct option opts[] = {{"root", required_argument, 0, 'r'},
                                         {"json", no_argument, 0, 'j'},
                                         {"actor", required_argument, 0, 'a'},
                                         {"type", required_argument, 0, 't'},
                                         {"container", required_argument, 0, 'c'},
                                         {"count", required_argument, 0, 'n'},
                                         {"seconds", required_argument, 0, 's'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    /* a fresh start for every call (the tests call it more than once) */
    memset(&g, 0, sizeof g);
    g.root = DEFAULT_ROOT;
    stop = 0;
    memset(&ids, 0, sizeof ids);
    rec_dir[0] = live_dir[0] = rec_root[0] = live_root[0] = 0;
    /* options may follow the command: permute, but keep inject's rules */
    int o;
    opterr = 0;
    optind = 0;
    while ((o = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (o) {
        case 'r':
            g.root = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind++];
    char *pos[3] = {0};
    int npos = 0;
    while (optind < argc) {
        if (!strcmp(cmd, "inject") && npos == 1) {
            pos[npos++] = argv[optind++]; /* rules may start with -- */
            continue;
        }
        o = getopt_long(argc, argv, "+", opts, NULL);
        if (o == -1) {
            if (npos < 3)
                pos[npos++] = argv[optind];
            optind++;
            continue;
        }
        switch (o) {
        case 'r':
            g.root = optarg;
            break;
        case 'j':
            g.json = true;
            break;
        case 'a':
            g.actor = optarg;
            break;
        case 't':
            g.type_glob = optarg;
            break;
        case 'c':
            g.container = optarg;
            break;
        case 'n':
            g.count = atol(optarg);
            break;
        case 's':
            g.seconds = atof(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    log_setup(2, LOG_FMT_LOGFMT, getenv("HUSK_TRACE_DEBUG") ? LOG_DEBUG : LOG_ERROR);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    g.reqs = calloc(REQ_SLOTS, sizeof *g.reqs);
    int rc = 0;

    if (!strcmp(cmd, "watch") && npos == 1) {
        live(pos[0]);
    } else if (!strcmp(cmd, "record") && npos == 2) {
        g.out_file = fopen(pos[1], "wb");
        if (!g.out_file)
            die("create %s: %s", pos[1], strerror(errno));
        msgpack_packer_init(&g.pk, g.out_file, msgpack_fbuffer_write);
        msgpack_pack_map(&g.pk, 2);
        msgpack_pack_str(&g.pk, 10);
        msgpack_pack_str_body(&g.pk, "husk-trace", 10);
        msgpack_pack_uint32(&g.pk, 1);
        msgpack_pack_str(&g.pk, 7);
        msgpack_pack_str_body(&g.pk, "sandbox", 7);
        msgpack_pack_str(&g.pk, strlen(pos[0]));
        msgpack_pack_str_body(&g.pk, pos[0], strlen(pos[0]));
        live(pos[0]);
        fclose(g.out_file);
        fprintf(stderr, "husk-trace: recorded %ld messages to %s\n", g.seen, pos[1]);
    } else if (!strcmp(cmd, "show") && npos == 1) {
        from_file(pos[0]);
    } else if (!strcmp(cmd, "stats") && npos == 1) {
        g.want_stats = true;
        struct stat st;
        if (stat(pos[0], &st) == 0 && S_ISREG(st.st_mode))
            from_file(pos[0]);
        else
            live(pos[0]);
        print_stats();
    } else if (!strcmp(cmd, "inject") && npos == 2) {
        rc = inject(pos[0], pos[1]);
    } else if (!strcmp(cmd, "replay") && npos == 1) {
        rc = replay(pos[0]);
    } else {
        usage(stderr);
        rc = 2;
    }
    free(g.reqs);
    free(g.stats);
    return rc;
}
