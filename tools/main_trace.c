/* husk-trace: attach to a sandbox's bus tap; show, record, replay-read and
 * summarize its traffic; inject faults.
 *
 *   husk-trace [--root DIR] watch ID|PATH [--json] [filters] [--count N] [--seconds S]
 *   husk-trace [--root DIR] record ID|PATH FILE [--count N] [--seconds S]
 *   husk-trace [--root DIR] stats ID|PATH [--count N] [--seconds S]
 *   husk-trace [--root DIR] inject ID|PATH RULES | --list | --clear
 *   husk-trace show FILE [--json] [filters]
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "actors/client.h"
#include "common/log.h"
#include "messages/mpread.h"
#include "messages/msg.h"

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
    uint64_t id = 0, re = 0;
    msg_peek_ids(r->env, r->len, &id, &re);
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
    } else if (strcmp(r->to, "*")) {
        struct req_slot *s = slot(r->from, id);
        snprintf(s->from, sizeof s->from, "%s", r->from);
        s->id = id;
        s->ts = r->ts;
        snprintf(s->type, sizeof s->type, "%s", r->type);
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
        json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:I,s:I}", "ts", (json_int_t)r->ts, "from", r->from,
                              "to", r->to, "type", r->type, "id", (json_int_t)id, "re",
                              (json_int_t)re);
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
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t f;
            zmq_msg_init(&f);
            if (zmq_msg_recv(&f, sub, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&f);
                break;
            }
            more = zmq_msg_more(&f);
            if (n < 5)
                parts[n++] = f;
            else
                zmq_msg_close(&f);
        }
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

static void from_file(const char *file)
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
    for (uint32_t i = 0; i < 2 * hn; i++)
        if (mpr_skip(&r, 4) < 0)
            die("%s: corrupt header", file);
    while (r.p < r.end && (g.count <= 0 || g.seen < g.count)) {
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
        handle(&rec);
    }
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

static void usage(FILE *to)
{
    fprintf(to, "usage:\n"
                "  husk-trace [--root DIR] watch ID|PATH [--json] [filters] [--count N] [--seconds S]\n"
                "  husk-trace [--root DIR] record ID|PATH FILE [--count N] [--seconds S]\n"
                "  husk-trace [--root DIR] stats ID|PATH|FILE [--count N] [--seconds S]\n"
                "  husk-trace [--root DIR] inject ID|PATH RULES|--list|--clear\n"
                "  husk-trace show FILE [--json] [filters]\n"
                "filters: --actor NAME --type GLOB --container ID\n"
                "fault rules: see docs/faults.md\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"root", required_argument, 0, 'r'},    {"json", no_argument, 0, 'j'},
        {"actor", required_argument, 0, 'a'},   {"type", required_argument, 0, 't'},
        {"container", required_argument, 0, 'c'}, {"count", required_argument, 0, 'n'},
        {"seconds", required_argument, 0, 's'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    /* options may follow the command: permute, but keep inject's rules */
    int o;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (o) {
        case 'r': g.root = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
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
        case 'r': g.root = optarg; break;
        case 'j': g.json = true; break;
        case 'a': g.actor = optarg; break;
        case 't': g.type_glob = optarg; break;
        case 'c': g.container = optarg; break;
        case 'n': g.count = atol(optarg); break;
        case 's': g.seconds = atof(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    log_setup(2, LOG_FMT_LOGFMT, LOG_ERROR);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    g.reqs = calloc(REQ_SLOTS, sizeof *g.reqs);

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
        return inject(pos[0], pos[1]);
    } else if (!strcmp(cmd, "replay")) {
        die("replay: not available yet (needs the runtime handler); record and show work");
    } else {
        usage(stderr);
        return 2;
    }
    free(g.reqs);
    free(g.stats);
    return 0;
}
