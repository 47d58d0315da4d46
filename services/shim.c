/* shim: the pure parts of containerd-shim-husk-v2 (see shim.h). */
#include "services/shim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#include "services/proto/containerd/task/v2/shim.pb-c.h"
#include "services/proto/containerd/types/task/task.pb-c.h"
#include "services/ttrpc_task.h"

/* ---- flags ------------------------------------------------------------------ */

struct flag {
    const char *name;
    bool boolean;
    size_t off_str;  /* offset of the const char * (string flags) */
    size_t off_bool; /* offset of the bool (boolean flags) */
};

#define SFLAG(n, f)                                                                                \
    {                                                                                              \
        n, false, offsetof(svc_shim_args_t, f), 0                                                  \
    }
#define BFLAG(n, f)                                                                                \
    {                                                                                              \
        n, true, 0, offsetof(svc_shim_args_t, f)                                                   \
    }
static const struct flag flags[] = {
    SFLAG("namespace", ns),    SFLAG("address", address), SFLAG("publish-binary", publish_binary),
    SFLAG("id", id),           SFLAG("bundle", bundle),   SFLAG("socket", socket),
    SFLAG("sandbox", sandbox), BFLAG("debug", debug),     BFLAG("v", version),
};

int svc_shim_args_parse(int argc, char *const *argv, svc_shim_args_t *out, err_t *err)
{
    memset(out, 0, sizeof *out);
    out->publish_binary = "containerd";
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == 0)
            break; /* first positional argument */
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        const char *name = a + 1;
        if (*name == '-')
            name++;
        if (!*name || *name == '-' || *name == '=')
            return err_make(err, EINVAL, "bad flag syntax: %s", a);
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const struct flag *f = NULL;
        for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++)
            if (strlen(flags[k].name) == nlen && !strncmp(flags[k].name, name, nlen))
                f = &flags[k];
        if (!f)
            return err_make(err, EINVAL, "flag provided but not defined: -%.*s", (int)nlen, name);
        if (f->boolean) {
            bool v = true;
            if (eq) {
                const char *s = eq + 1;
                if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "t") || !strcmp(s, "T") ||
                    !strcmp(s, "TRUE") || !strcmp(s, "True"))
                    v = true;
                else if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "f") ||
                         !strcmp(s, "F") || !strcmp(s, "FALSE") || !strcmp(s, "False"))
                    v = false;
                else
                    return err_make(err, EINVAL, "invalid boolean value \"%s\" for -%s", s,
                                    f->name);
            }
            *(bool *)((char *)out + f->off_bool) = v;
            continue;
        }
        const char *v;
        if (eq) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc)
                return err_make(err, EINVAL, "flag needs an argument: -%s", f->name);
            v = argv[++i];
        }
        *(const char **)((char *)out + f->off_str) = v;
    }
    if (i < argc)
        out->action = argv[i++];
    if (i < argc)
        return err_make(err, EINVAL, "unexpected argument `%s` after `%s`", argv[i], out->action);
    if (out->action && strcmp(out->action, "start") && strcmp(out->action, "delete"))
        return err_make(err, EINVAL, "unknown action `%s` (start, delete)", out->action);
    return 0;
}

/* ---- grouping and addresses ------------------------------------------------------- */

const char *svc_shim_group_id(const oci_spec_t *spec, const char *id)
{
    if (!spec)
        return id;
    const char *g = oci_spec_annotation(spec, SVC_SHIM_GROUP_ANNOTATION);
    if (g && *g)
        return g;
    enum oci_cri_kind kind;
    const char *sb = NULL;
    err_t err = ERR_INIT;
    if (oci_spec_cri_info(spec, &kind, &sb, &err) < 0)
        err_clear(&err);
    if (sb && *sb)
        return sb;
    /* a sandbox names itself; a sandbox id without a container type (ctr
     * --annotation) groups as runc's shim does */
    static const char *const keys[] = {"io.kubernetes.cri.sandbox-id",
                                       "io.kubernetes.cri-o.SandboxID", "io.kubernetes.sandbox.id"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = oci_spec_annotation(spec, keys[i]);
        if (v && *v)
            return v;
    }
    return id;
}

/* FIPS 180-4 SHA-256, small and unrolled nowhere: it hashes one short
 * string per `start`. */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 =
            hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

void svc_shim_sha256(const void *data, size_t len, uint8_t out[32])
{
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const uint8_t *p = data;
    size_t left = len;
    while (left >= 64) {
        sha256_block(h, p);
        p += 64;
        left -= 64;
    }
    uint8_t tail[128] = {0};
    memcpy(tail, p, left);
    tail[left] = 0x80;
    size_t tl = left + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[tl - 1 - i] = (uint8_t)(bits >> (8 * i));
    sha256_block(h, tail);
    if (tl == 128)
        sha256_block(h, tail + 64);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

int svc_shim_socket_address(const char *dir, const char *grpc_address, const char *ns,
                            const char *group, char *out, size_t out_len, err_t *err)
{
    if (!dir || !*dir)
        dir = SVC_SHIM_SOCKET_DIR;
    char *key = NULL;
    if (asprintf(&key, "%s/%s/%s", grpc_address ? grpc_address : "", ns ? ns : "",
                 group ? group : "") < 0)
        abort();
    uint8_t d[32];
    svc_shim_sha256(key, strlen(key), d);
    free(key);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    size_t plen = strlen(dir) + 1 + 64;
    if (plen > SVC_SHIM_SOCKET_PATH_MAX)
        return err_make(err, ENAMETOOLONG, "shim socket path %s/%s exceeds %d bytes", dir, hex,
                        SVC_SHIM_SOCKET_PATH_MAX);
    if ((size_t)snprintf(out, out_len, "unix://%s/%s", dir, hex) >= out_len)
        return err_make(err, ENAMETOOLONG, "shim socket address too long");
    return 0;
}

const char *svc_shim_socket_path(const char *address)
{
    if (address && !strncmp(address, "unix://", 7))
        return address + 7;
    return NULL;
}

/* ---- statuses ---------------------------------------------------------------------- */

uint32_t svc_shim_exit_status(int64_t status)
{
    if (status < 0 || status > 255)
        return 255;
    return (uint32_t)status;
}

void svc_shim_timestamp_from_ns(Google__Protobuf__Timestamp *ts, uint64_t ns)
{
    if (!ns) {
        svc_ttrpc_timestamp_set(ts, NULL);
        return;
    }
    struct timespec t = {.tv_sec = (time_t)(ns / 1000000000ull),
                         .tv_nsec = (long)(ns % 1000000000ull)};
    svc_ttrpc_timestamp_set(ts, &t);
}

int svc_shim_status_of(const char *state)
{
    if (!state)
        return CONTAINERD__V1__TYPES__STATUS__UNKNOWN;
    if (!strcmp(state, "created") || !strcmp(state, "creating"))
        return CONTAINERD__V1__TYPES__STATUS__CREATED;
    if (!strcmp(state, "running"))
        return CONTAINERD__V1__TYPES__STATUS__RUNNING;
    if (!strcmp(state, "stopped"))
        return CONTAINERD__V1__TYPES__STATUS__STOPPED;
    if (!strcmp(state, "paused"))
        return CONTAINERD__V1__TYPES__STATUS__PAUSED;
    if (!strcmp(state, "pausing"))
        return CONTAINERD__V1__TYPES__STATUS__PAUSING;
    return CONTAINERD__V1__TYPES__STATUS__UNKNOWN;
}

int svc_shim_delete_response(uint32_t pid, uint32_t exit_status, uint8_t **buf, size_t *len,
                             err_t *err)
{
    Containerd__Task__V2__DeleteResponse r = CONTAINERD__TASK__V2__DELETE_RESPONSE__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    svc_ttrpc_timestamp_set(&ts, &now);
    r.pid = pid;
    r.exit_status = exit_status;
    r.exited_at = &ts;
    return svc_ttrpc_pack(&r.base, buf, len, err);
}

/* ---- event ordering ---------------------------------------------------------------- */

#define BIT(e) (1u << (e))

bool svc_shim_order_may(const svc_shim_order_t *o, bool is_exec, enum svc_shim_ev ev)
{
    uint32_t s = o->sent;
    const enum svc_shim_ev started = is_exec ? SVC_SHIM_EV_EXEC_STARTED : SVC_SHIM_EV_START;
    switch (ev) {
    case SVC_SHIM_EV_CREATE:
        return !is_exec && !(s & BIT(ev));
    case SVC_SHIM_EV_START:
        return !is_exec && (s & BIT(SVC_SHIM_EV_CREATE)) && !(s & BIT(ev));
    case SVC_SHIM_EV_EXEC_ADDED:
        return is_exec && !(s & BIT(ev));
    case SVC_SHIM_EV_EXEC_STARTED:
        return is_exec && (s & BIT(SVC_SHIM_EV_EXEC_ADDED)) && !(s & BIT(ev));
    case SVC_SHIM_EV_EXIT:
        return (s & BIT(started)) && !(s & BIT(ev));
    case SVC_SHIM_EV_DELETE:
        if (s & BIT(ev))
            return false;
        /* after the exit, or after create when it never started */
        return (s & BIT(SVC_SHIM_EV_EXIT)) ||
               (!(s & BIT(started)) &&
                (s & BIT(is_exec ? SVC_SHIM_EV_EXEC_ADDED : SVC_SHIM_EV_CREATE)));
    case SVC_SHIM_EV_PAUSED:
    case SVC_SHIM_EV_RESUMED:
    case SVC_SHIM_EV_OOM:
        return !is_exec && (s & BIT(SVC_SHIM_EV_CREATE)) && !(s & BIT(SVC_SHIM_EV_DELETE));
    default:
        return false;
    }
}

void svc_shim_order_sent(svc_shim_order_t *o, enum svc_shim_ev ev)
{
    if (ev < SVC_SHIM_EV_N)
        o->sent |= BIT(ev);
    if (ev == SVC_SHIM_EV_EXIT)
        o->exit_pending = false;
}
