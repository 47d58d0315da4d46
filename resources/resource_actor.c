/* The resources actor shell: decodes res.* requests, calls cgroup_host,
 * share and net, keeps what is held, and answers.  See resource_actor.h. */
#include "resources/resource_actor.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "oci/spec.h"
#include "resources/cgroup_host.h"
#include "resources/net.h"
#include "resources/netlink.h"
#include "resources/share.h"

#define RELEASE_TIMEOUT_MS 2000

struct held_ctr {
    char id[RES_ID_MAX + 1];
    struct held_ctr *next;
};

struct res {
    char fs_root[PATH_MAX], parent[PATH_MAX]; /* "" = defaults */
    bool prepared;
    char sandbox_id[RES_ID_MAX + 1];
    char dir[PATH_MAX];
    char cgroup_name[RES_ID_MAX + 32];
    res_cgroup_t *cg;
    bool share;            /* <dir>/shared is set up (or adopted) */
    struct held_ctr *ctrs; /* containers shared below it */
    res_net_t *net;        /* taps in the pod's namespace; NULL: none */
};

/* ---- naming ------------------------------------------------------------------ */

static bool id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > RES_ID_MAX || id[0] == '.')
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.' || *p == '-'))
            return false;
    return true;
}

int res_actor_cgroup_name(const char *root, const char *sandbox_id, char *out, size_t cap,
                          err_t *err)
{
    if (!root || root[0] != '/')
        return err_make(err, EINVAL, "cgroup name: runtime root `%s` is not an absolute path",
                        root ? root : "");
    if (!sandbox_id || !id_valid(sandbox_id))
        return err_make(err, EINVAL, "cgroup name: invalid sandbox id `%s`",
                        sandbox_id ? sandbox_id : "");
    char canon[PATH_MAX];
    if (!realpath(root, canon)) {
        snprintf(canon, sizeof canon, "%s", root);
        for (size_t n = strlen(canon); n > 1 && canon[n - 1] == '/'; n--)
            canon[n - 1] = 0;
    }
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64 */
    for (const unsigned char *p = (const unsigned char *)canon; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    int n = snprintf(out, cap, "%s-%012" PRIx64, sandbox_id, h >> 16);
    if (n < 0 || (size_t)n >= cap)
        return err_make(err, ENAMETOOLONG, "cgroup name of `%s`: buffer too small", sandbox_id);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static res_cgroup_opts_t cg_opts(const struct res *s)
{
    return (res_cgroup_opts_t){.fs_root = s->fs_root[0] ? s->fs_root : NULL,
                               .parent = s->parent[0] ? s->parent : NULL};
}

static struct held_ctr **find_ctr(struct res *s, const char *id)
{
    struct held_ctr **pp = &s->ctrs;
    while (*pp && strcmp((*pp)->id, id))
        pp = &(*pp)->next;
    return pp;
}

static int hold_ctr(struct res *s, const char *id)
{
    struct held_ctr *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    size_t n = strlen(id);
    memcpy(c->id, id, n < RES_ID_MAX ? n : RES_ID_MAX); /* ids are checked: <= RES_ID_MAX */
    c->next = s->ctrs;
    s->ctrs = c;
    return 0;
}

static void forget_ctrs(struct res *s)
{
    while (s->ctrs) {
        struct held_ctr *c = s->ctrs;
        s->ctrs = c->next;
        free(c);
    }
}

/* Appends "what: err" to *first when it is the first failure. */
static void note_failure(char *first, size_t cap, const char *what, err_t *err)
{
    log_warn("%s: %s", what, err_str(err));
    if (!first[0])
        snprintf(first, cap, "%s: %s", what, err_str(err));
    err_clear(err);
}

/* Tears down everything held, in the reverse order of prepare; goes on
 * after a failure; returns 0 or -EIO with the first failure in first. */
static int release_all(struct res *s, int timeout_ms, char *first, size_t cap)
{
    err_t err = ERR_INIT;
    first[0] = 0;
    if (s->share && res_share_teardown(s->dir, &err) < 0)
        note_failure(first, cap, "tear down the share", &err);
    s->share = false;
    forget_ctrs(s);
    if (s->net) {
        if (res_net_detach(s->net, &err) < 0)
            note_failure(first, cap, "network", &err);
        free(s->net);
        s->net = NULL;
    }
    if (s->cg) {
        if (res_cgroup_remove(s->cg, timeout_ms, &err) < 0)
            note_failure(first, cap, "remove the sandbox cgroup", &err);
        res_cgroup_destroy(&s->cg);
    }
    if (s->prepared)
        log_info("sandbox %s: resources released%s%s", s->sandbox_id, first[0] ? " but " : "",
                 first);
    s->prepared = false;
    return first[0] ? -EIO : 0;
}

/* JSON array text of the agent.update_interface bodies of n's interfaces
 * marked in want (NULL: every one with a live interface). */
static char *ifaces_json(const res_net_t *n, const bool *want)
{
    json_t *arr = json_array();
    for (unsigned i = 0; n && i < n->n_ifs && arr; i++) {
        if (n->ifs[i].index <= 0 || (want && !want[i]))
            continue;
        char *one = res_net_iface_json(&n->ifs[i]);
        json_t *j = one ? json_loads(one, 0, NULL) : NULL;
        free(one);
        if (!j || json_array_append_new(arr, j) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    char *s = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return s;
}

/* Fills taps, macs, interfaces, routes, neighbors of a reply from n. */
static int net_reply(const res_net_t *n, const bool *want, msg_strv_t *taps, msg_strv_t *macs,
                     msg_strv_t *states, char **ifaces, char **routes, char **neighs)
{
    char *i = ifaces_json(n, want);
    char *r = n ? res_net_routes_json(n) : strdup("[]");
    char *nb = n ? res_net_neighs_json(n) : strdup("[]");
    int rc = i && r && nb ? 0 : -ENOMEM;
    if (rc == 0) {
        free(*ifaces), *ifaces = i, i = NULL;
        free(*routes), *routes = r, r = NULL;
        free(*neighs), *neighs = nb, nb = NULL;
    }
    for (unsigned k = 0; rc == 0 && n && k < n->n_ifs; k++) {
        if (n->ifs[k].index <= 0 || (want && !want[k]))
            continue;
        char mac[18], st[RES_NET_STATE_MAX];
        res_nl_mac_format(n->ifs[k].mac, mac);
        res_net_attach_state(&n->ifs[k], st);
        if (msg_strv_push(taps, n->ifs[k].tap) < 0 || msg_strv_push(macs, mac) < 0 ||
            msg_strv_push(states, st) < 0)
            rc = -ENOMEM;
    }
    free(i);
    free(r);
    free(nb);
    return rc;
}

/* ---- res.prepare_sandbox ------------------------------------------------------- */

static void add_warning(msg_res_sandbox_ready_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_warning(msg_res_sandbox_ready_t *b, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_warn("%s", line);
    if (b->warnings.n < 64)
        msg_strv_push(&b->warnings, line);
}

static int make_cgroup(struct res *s, const msg_res_prepare_sandbox_t *q,
                       msg_res_sandbox_ready_t *b)
{
    err_t err = ERR_INIT;
    res_cgroup_opts_t o = cg_opts(s);
    res_cgroup_limits_t lim = {.memory_bytes = q->memory_bytes,
                               .cpu_quota_us = q->cpu_quota_us,
                               .cpu_period_us = q->cpu_period_us};
    int r = q->adopt ? res_cgroup_open(&o, s->cgroup_name, &s->cg, &err)
                     : res_cgroup_create(&o, s->cgroup_name, &lim, &s->cg, &err);
    if (r == -EEXIST) {
        /* same root, same id: only one daemon can hold the sandbox, so
         * this is what a dead one left; ours now (released at the end) */
        err_clear(&err);
        r = res_cgroup_open(&o, s->cgroup_name, &s->cg, &err);
        if (r == 0)
            add_warning(b, "host cgroup %s was left by an earlier daemon: reused", s->cgroup_name);
    }
    if (r < 0) {
        add_warning(b, "host cgroup: %s; the VMM runs without one", err_str(&err));
        err_clear(&err);
        return 0;
    }
    size_t nw = 0, np = 0;
    const char *const *w = res_cgroup_warnings(s->cg, &nw);
    for (size_t i = 0; i < nw; i++)
        add_warning(b, "host cgroup: %s", w[i]);
    const char *const *p = res_cgroup_paths(s->cg, &np);
    msg_set_str(&b->cgroup, np ? p[0] : "");
    for (size_t i = 0; i < np && i < 8; i++) /* the catalog bounds cgroup_dirs to 8 */
        msg_strv_push(&b->cgroup_dirs, p[i]);
    return 0;
}

/* Adoption: the container shares an earlier daemon left under shared/. */
static void adopt_ctrs(struct res *s, msg_res_sandbox_ready_t *b)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/" RES_SHARE_DIR, s->dir);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (id_valid(e->d_name) && *find_ctr(s, e->d_name) == NULL && hold_ctr(s, e->d_name) < 0)
            add_warning(b, "adopt the share of %s: out of memory", e->d_name);
    closedir(d);
}

static int prepare_net(struct res *s, const msg_res_prepare_sandbox_t *q, err_t *err)
{
    if (!(s->net = calloc(1, sizeof *s->net)))
        return err_make(err, ENOMEM, "network: out of memory");
    int r = res_net_scan(q->netns, s->net, err);
    if (r == 0 && !q->adopt)
        r = res_net_attach(s->net, err);
    if (r == 0 && q->adopt && q->taps.n) {
        uint8_t macs[16][6];
        for (size_t k = 0; k < q->taps.n; k++)
            res_nl_mac_parse(q->macs.v[k], macs[k]); /* checked by the caller */
        r = res_net_adopt(s->net, (const char *const *)q->taps.v, (const uint8_t(*)[6])macs,
                          q->states.n ? (const char *const *)q->states.v : NULL, q->taps.n, err);
        if (r > 0)
            r = 0;
    }
    if (r < 0) {
        free(s->net);
        s->net = NULL;
        return err_wrap(err, "network");
    }
    return 0;
}

static int check_prepare(const msg_res_prepare_sandbox_t *q, err_t *err)
{
    if (!id_valid(q->sandbox_id))
        return err_make(err, EINVAL, "res.prepare_sandbox: sandbox_id `%s` is not a valid id",
                        q->sandbox_id);
    if (q->root[0] != '/' || q->dir[0] != '/')
        return err_make(err, EINVAL, "res.prepare_sandbox: %s `%s` is not an absolute path",
                        q->root[0] != '/' ? "root" : "dir", q->root[0] != '/' ? q->root : q->dir);
    if (q->netns[0] && q->netns[0] != '/')
        return err_make(err, EINVAL, "res.prepare_sandbox: netns `%s` is not an absolute path",
                        q->netns);
    if (q->taps.n != q->macs.n)
        return err_make(err, EINVAL, "res.prepare_sandbox: %zu taps but %zu macs", q->taps.n,
                        q->macs.n);
    if (q->taps.n && !q->adopt)
        return err_make(err, EINVAL, "res.prepare_sandbox: taps are named only to adopt them");
    if (q->states.n && q->states.n != q->taps.n)
        return err_make(err, EINVAL, "res.prepare_sandbox: %zu taps but %zu states", q->taps.n,
                        q->states.n);
    for (size_t k = 0; k < q->macs.n; k++) {
        uint8_t mac[6];
        if (res_nl_mac_parse(q->macs.v[k], mac) < 0)
            return err_make(err, EINVAL, "res.prepare_sandbox: macs[%zu] `%s` is not a MAC", k,
                            q->macs.v[k]);
    }
    if (q->cpu_quota_us > 0 && q->cpu_period_us > 1000000)
        return err_make(err, EINVAL, "res.prepare_sandbox: cpu_period_us %" PRIu64 " is above 1 s",
                        q->cpu_period_us);
    return 0;
}

static void on_prepare_sandbox(actor_t *a, msg_t **m, void *state)
{
    struct res *s = state;
    const msg_res_prepare_sandbox_t *q = (*m)->body;
    err_t err = ERR_INIT;
    if (s->prepared) {
        actor_reply_error(a, *m, EALREADY, "res.prepare_sandbox: sandbox %s is prepared already",
                          s->sandbox_id);
        return;
    }
    if (check_prepare(q, &err) < 0 || res_actor_cgroup_name(q->root, q->sandbox_id, s->cgroup_name,
                                                            sizeof s->cgroup_name, &err) < 0) {
        actor_reply_error(a, *m, EINVAL, "%s", err_str(&err));
        err_clear(&err);
        return;
    }
    snprintf(s->sandbox_id, sizeof s->sandbox_id, "%s", q->sandbox_id);
    snprintf(s->dir, sizeof s->dir, "%s", q->dir);
    s->prepared = true;
    msg_t *r = msg_new_reply(*m, MSG_RES_SANDBOX_READY);
    msg_res_sandbox_ready_t *b = r->body;
    make_cgroup(s, q, b);
    char *share = NULL;
    const char *what = NULL;
    if (q->vm && q->adopt) {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/" RES_SHARE_DIR, s->dir);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            s->share = true;
            share = strdup(path);
            adopt_ctrs(s, b);
        } else {
            add_warning(b, "adopt: no share at %s", path);
        }
    } else if (q->vm) {
        if (res_share_setup(s->dir, &share, &err) < 0)
            what = "set up the share";
        else
            s->share = true;
    }
    if (!what && q->vm && q->netns[0] && q->adopt && access(q->netns, F_OK) < 0) {
        /* the pod's namespace went while no daemon watched: its taps and
         * our filters went with it */
        add_warning(b, "adopt: network namespace %s is gone, and its taps with it", q->netns);
    } else if (!what && q->vm && q->netns[0] && prepare_net(s, q, &err) < 0) {
        what = "";
    }
    if (!what &&
        net_reply(s->net, NULL, &b->taps, &b->macs, &b->states, &b->interfaces, &b->routes,
                  &b->neighbors) < 0)
        what = "", err_make(&err, ENOMEM, "out of memory");
    if (what) {
        /* all or nothing: undo what this prepare did, then answer */
        char first[1024];
        int code = err.code ? err.code : EIO;
        char why[2048];
        snprintf(why, sizeof why, "%s%s%s", what, what[0] ? ": " : "", err_str(&err));
        err_clear(&err);
        release_all(s, RELEASE_TIMEOUT_MS, first, sizeof first);
        free(share);
        msg_destroy(&r);
        actor_reply_error(a, *m, code, "prepare sandbox %s: %s%s%s", q->sandbox_id, why,
                          first[0] ? "; undo: " : "", first);
        return;
    }
    if (share) {
        msg_set_str(&b->share_dir, share);
        msg_set_str(&b->share_tag, RES_SHARE_TAG);
    }
    free(share);
    log_info("sandbox %s: resources %s (cgroup %s, %s share, %zu taps)", s->sandbox_id,
             q->adopt ? "adopted" : "prepared", s->cg ? s->cgroup_name : "none",
             s->share ? "9p" : "no", b->taps.n);
    actor_reply(a, *m, &r);
}

/* ---- the other requests ---------------------------------------------------------- */

static void reply_ok(actor_t *a, const msg_t *req)
{
    msg_t *r = msg_new_reply(req, MSG_RES_OK);
    actor_reply(a, req, &r);
}

static void on_add_pid(actor_t *a, msg_t **m, void *state)
{
    struct res *s = state;
    uint64_t pid = ((msg_res_add_pid_t *)(*m)->body)->pid;
    if (!s->prepared) {
        actor_reply_error(a, *m, ENOENT, "res.add_pid: no sandbox is prepared");
        return;
    }
    if (pid == 0 || pid > INT32_MAX) {
        actor_reply_error(a, *m, EINVAL, "res.add_pid: pid %" PRIu64 " is not a process id", pid);
        return;
    }
    err_t err = ERR_INIT;
    if (s->cg && res_cgroup_add_pid(s->cg, (pid_t)pid, &err) < 0) {
        actor_reply_error(a, *m, err.code ? err.code : EIO, "%s", err_str(&err));
        err_clear(&err);
        return;
    }
    reply_ok(a, *m); /* no cgroup: the prepare said so already */
}

static void on_prepare_container(actor_t *a, msg_t **m, void *state)
{
    struct res *s = state;
    const msg_res_prepare_container_t *q = (*m)->body;
    err_t err = ERR_INIT;
    if (!id_valid(q->container_id)) {
        actor_reply_error(a, *m, EINVAL, "res.prepare_container: container_id `%s` is not valid",
                          q->container_id);
        return;
    }
    if (!s->share) {
        actor_reply_error(a, *m, ENOENT, "res.prepare_container %s: the sandbox has no share",
                          q->container_id);
        return;
    }
    if (*find_ctr(s, q->container_id)) {
        actor_reply_error(a, *m, EEXIST, "res.prepare_container: %s is shared already",
                          q->container_id);
        return;
    }
    oci_spec_t *spec = NULL;
    res_container_share_t *sh = NULL;
    char *json = NULL;
    if (oci_spec_parse(q->spec, strlen(q->spec), &spec, &err) < 0)
        goto fail;
    if (res_share_add_container(s->dir, q->container_id, spec, q->bundle, &sh, &err) < 0)
        goto fail;
    free(spec->root_path);
    spec->root_path = strdup(sh->rootfs);
    oci_mounts_free(spec->mounts, spec->n_mounts);
    spec->mounts = sh->mounts;
    spec->n_mounts = sh->n_mounts;
    sh->mounts = NULL;
    sh->n_mounts = 0;
    if (!spec->root_path || oci_spec_to_json(spec, &json, NULL, &err) < 0 ||
        hold_ctr(s, q->container_id) < 0) {
        if (!err.code)
            err_make(&err, ENOMEM, "out of memory");
        res_share_remove_container(s->dir, q->container_id, NULL);
        goto fail;
    }
    msg_t *r = msg_new_reply(*m, MSG_RES_CONTAINER_READY);
    msg_res_container_ready_t *b = r->body;
    msg_set_str(&b->container_id, q->container_id);
    msg_set_str(&b->rootfs, sh->rootfs);
    free(b->spec);
    b->spec = json;
    json = NULL;
    actor_reply(a, *m, &r);
    oci_spec_destroy(&spec);
    res_container_share_free(&sh);
    return;
fail:
    actor_reply_error(a, *m, err.code ? err.code : EIO, "%s", err_str(&err));
    err_clear(&err);
    free(json);
    oci_spec_destroy(&spec);
    res_container_share_free(&sh);
}

static void on_release_container(actor_t *a, msg_t **m, void *state)
{
    struct res *s = state;
    const char *id = ((msg_res_release_container_t *)(*m)->body)->container_id;
    struct held_ctr **pp = find_ctr(s, id);
    if (!*pp) {
        actor_reply_error(a, *m, ENOENT, "res.release_container: `%s` has no share", id);
        return;
    }
    err_t err = ERR_INIT;
    int r = res_share_remove_container(s->dir, id, &err);
    struct held_ctr *c = *pp;
    *pp = c->next;
    free(c);
    if (r < 0) {
        actor_reply_error(a, *m, err.code ? err.code : EIO, "%s", err_str(&err));
        err_clear(&err);
        return;
    }
    reply_ok(a, *m);
}

static bool same_if(const res_net_if_t *x, const res_net_if_t *y)
{
    return !strcmp(x->name, y->name) && !memcmp(x->mac, y->mac, 6);
}

static void on_rescan_network(actor_t *a, msg_t **m, void *state)
{
    struct res *s = state;
    if (!s->net) {
        actor_reply_error(a, *m, ENOENT,
                          "res.rescan_network: the sandbox has no network "
                          "namespace of its own");
        return;
    }
    res_net_t *n = s->net, *now = calloc(1, sizeof *now);
    err_t err = ERR_INIT;
    if (!now) {
        actor_reply_error(a, *m, ENOMEM, "res.rescan_network: out of memory");
        return;
    }
    if (res_net_scan(n->netns, now, &err) < 0) {
        actor_reply_error(a, *m, err.code ? err.code : EIO, "%s", err_str(&err));
        err_clear(&err);
        free(now);
        return;
    }
    msg_t *r = msg_new_reply(*m, MSG_RES_NETWORK_CHANGES);
    msg_res_network_changes_t *b = r->body;
    for (unsigned j = 0; j < n->n_ifs; j++) {
        bool still = false;
        for (unsigned i = 0; i < now->n_ifs && !still; i++)
            still = same_if(&n->ifs[j], &now->ifs[i]);
        if (!still && n->ifs[j].tap_made)
            msg_strv_push(&b->removed_taps, n->ifs[j].tap);
    }
    bool added[RES_NET_MAX_IFS] = {false};
    unsigned before = n->n_ifs;
    int rc = 0;
    for (unsigned i = 0; i < now->n_ifs && rc == 0; i++) {
        bool known = false;
        for (unsigned j = 0; j < before && !known; j++)
            known = same_if(&n->ifs[j], &now->ifs[i]);
        if (known)
            continue;
        if (n->n_ifs >= RES_NET_MAX_IFS) {
            rc = err_make(&err, ENOSPC, "network: too many interfaces (at most %d)",
                          RES_NET_MAX_IFS);
            break;
        }
        n->ifs[n->n_ifs] = now->ifs[i];
        added[n->n_ifs++] = true;
    }
    if (rc == 0) {
        memcpy(n->routes, now->routes, sizeof n->routes);
        n->n_routes = now->n_routes;
        memcpy(n->neighs, now->neighs, sizeof n->neighs);
        n->n_neighs = now->n_neighs;
        rc = res_net_attach(n, &err); /* all or nothing */
    }
    if (rc < 0)
        n->n_ifs = before; /* the added entries were never attached (or undone) */
    free(now);
    if (rc == 0 &&
        net_reply(n, added, &b->taps, &b->macs, &b->states, &b->interfaces, &b->routes, &b->neighbors) < 0)
        rc = err_make(&err, ENOMEM, "out of memory");
    if (rc < 0) {
        msg_destroy(&r);
        actor_reply_error(a, *m, err.code ? err.code : EIO, "rescan network: %s", err_str(&err));
        err_clear(&err);
        return;
    }
    actor_reply(a, *m, &r);
}

static void on_release_endpoint(actor_t *a, msg_t **m, void *state)
{
    struct res *s = state;
    const char *tap = ((msg_res_release_endpoint_t *)(*m)->body)->tap;
    for (unsigned i = 0; s->net && i < s->net->n_ifs; i++) {
        if (!s->net->ifs[i].tap_made || strcmp(s->net->ifs[i].tap, tap))
            continue;
        err_t err = ERR_INIT;
        if (res_net_detach_one(s->net, i, &err) < 0) {
            actor_reply_error(a, *m, err.code ? err.code : EIO, "%s", err_str(&err));
            err_clear(&err);
            return;
        }
        reply_ok(a, *m);
        return;
    }
    actor_reply_error(a, *m, ENOENT, "res.release_endpoint: no tap `%s`", tap);
}

static void on_release_sandbox(actor_t *a, msg_t **m, void *state)
{
    struct res *s = state;
    uint64_t t = ((msg_res_release_sandbox_t *)(*m)->body)->timeout_ms;
    char first[1024];
    if (release_all(s, t ? (int)(t > 60000 ? 60000 : t) : RELEASE_TIMEOUT_MS, first, sizeof first) <
        0) {
        actor_reply_error(a, *m, EIO, "release sandbox: %s", first);
        return;
    }
    reply_ok(a, *m);
}

/* ---- lifecycle ----------------------------------------------------------------------- */

static void fini(actor_t *a, void *state)
{
    struct res *s = state;
    char first[1024];
    if (s->prepared || s->share || s->net || s->cg)
        release_all(s, RELEASE_TIMEOUT_MS, first, sizeof first);
    free(s);
}

static const actor_handler_t handlers[] = {
    {MSG_RES_PREPARE_SANDBOX, on_prepare_sandbox},
    {MSG_RES_ADD_PID, on_add_pid},
    {MSG_RES_PREPARE_CONTAINER, on_prepare_container},
    {MSG_RES_RELEASE_CONTAINER, on_release_container},
    {MSG_RES_RESCAN_NETWORK, on_rescan_network},
    {MSG_RES_RELEASE_ENDPOINT, on_release_endpoint},
    {MSG_RES_RELEASE_SANDBOX, on_release_sandbox},
    {MSG_NONE, NULL},
};

static const actor_def_t def = {.name = RES_ACTOR_NAME, .handlers = handlers, .fini = fini};

int res_actor_start(const actor_opts_t *opts, const res_actor_opts_t *ro, actor_t **out, err_t *err)
{
    struct res *s = calloc(1, sizeof *s);
    if (!s)
        return err_make(err, ENOMEM, "resources: out of memory");
    if (ro && ro->cgroup_fs_root)
        snprintf(s->fs_root, sizeof s->fs_root, "%s", ro->cgroup_fs_root);
    if (ro && ro->cgroup_parent)
        snprintf(s->parent, sizeof s->parent, "%s", ro->cgroup_parent);
    return actor_start(&def, s, opts, out, err);
}
