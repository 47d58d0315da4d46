/* The runtime handler actor: sandbox and container lifecycles, driven by
 * messages.  Every step that involves another actor is a request with a
 * deadline whose reply continues the operation (struct op carries it). */
#include "common/clock.h"
#include "runtimes/runtime_actor.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hypervisors/hypervisor_actor.h"
#include "hypervisors/hv.h"
#include "common/log.h"
#include "oci/spec.h"
#include "persist/persist_actor.h"
#include "persist/store.h"
#include "common/xalloc.h"
#include "resources/cgroup_host.h"
#include "resources/devices.h"
#include "resources/net.h"
#include "resources/resource_actor.h"
#include "resources/share.h"
#include "resources/sizing.h"
#include "runtimes/hooks.h"
#include "runtimes/state.h"

/* Deadlines, suited to each request: they bound a lost message (the peer
 * never saw it, or its answer vanished).  A guest that stops answering is
 * found sooner by the agent actor's health probe (agent/agent_actor.h).
 * hv.start answers once QMP is up (~0.1 s); the boot itself, seconds under
 * TCG, is agent.connect's.  Creating the sandbox or a container mounts
 * and forks in the guest (~1 s under TCG); the rest is quicker. */
#define HV_TIMEOUT_MS      20000
#define AGENT_TIMEOUT_MS   30000 /* create_sandbox, create_container, network */
#define AGENT_QUICK_MS     10000 /* start, exec, signal, pause, stats... */
#define CONNECT_TIMEOUT_MS 60000
#define REMOVE_TIMEOUT_MS  10000
/* resources: mounts, netlink and cgroupfs writes on the host, ms each; a
 * release waits up to 2 s for the cgroup to empty */
#define RES_TIMEOUT_MS 10000

/* short names for the state machine (runtimes/state.h) */
#define SB_NEW      RT_SB_NEW
#define SB_BOOTING  RT_SB_BOOTING
#define SB_READY    RT_SB_READY
#define SB_STOPPING RT_SB_STOPPING
#define SB_STOPPED  RT_SB_STOPPED
#define SB_FAILED   RT_SB_FAILED
#define C_CREATING  RT_CT_CREATING
#define C_CREATED   RT_CT_CREATED
#define C_RUNNING   RT_CT_RUNNING
#define C_PAUSED    RT_CT_PAUSED
#define C_STOPPED   RT_CT_STOPPED
#define sb_name(s)  rt_sandbox_state_name(s)
#define c_name(s)   rt_container_state_name(s)

struct waiter {
    char cid[RT_ID_MAX + 1], exec_id[RT_ID_MAX + 1];
    msg_t *req;
    struct waiter *next;
};

/* The host process standing for a container's process (the CLI's proxy,
 * handed to conmon or containerd-shim-runc-v2 as "the container"): when it
 * dies, the process it stands for is killed, as with runc. */
struct pwatch {
    struct rt *rt;
    char cid[RT_ID_MAX + 1], eid[RT_ID_MAX + 1];
    int fd;
    actor_watch_t *w;
    struct pwatch *next;
};

struct exited_exec {
    char exec_id[RT_ID_MAX + 1];
    int64_t status;
    uint64_t at_ns;
    struct exited_exec *next;
};

struct ctr {
    char id[RT_ID_MAX + 1];
    rt_container_state_t state;
    char *bundle, *rootfs, *pid_file, *created, *exited_at;
    oci_spec_t *spec;
    pid_t proxy_pid;
    bool console;
    uint32_t owner;
    bool exited;
    int64_t exit_status;
    uint64_t exited_at_ns;
    struct exited_exec *execs;
    bool stop_unsaved; /* `stopped` is being written: waits are answered after */
    uint64_t proxy_start; /* restore: the persisted starttime of proxy_pid */
    struct ctr *next;
};

struct rt {
    const cfg_t *cfg;
    char root[PATH_MAX], dir[PATH_MAX];
    char sandbox_id[RT_ID_MAX + 1];
    int done_fd;
    bool done_signalled;
    rt_sandbox_state_t sb;
    char backend[32], agent_socket[PATH_MAX];
    bool vm;              /* a real VM: the rootfs travels over the 9p share */
    bool res_held;        /* the resources actor holds things of ours: release at the end */
    bool res_releasing;   /* res.release_sandbox under way (finish_shutdown) */
    pid_t vmm_pid;
    char *created;
    struct ctr *ctrs;
    struct waiter *waiters;
    msg_t *queued[64]; /* creates waiting for the sandbox to boot */
    int nqueued;
    msg_t *shutdown_req; /* rt.shutdown or the last delete, answered at the end */
    struct pwatch *pwatches;
    actor_t *self;
    char netns[PATH_MAX]; /* the spec's network namespace path, "" if none */
    char *net_ifaces, *net_routes, *net_neighs; /* guest network (JSON, from res.sandbox_ready) */
    /* the VM's taps (from res.sandbox_ready and updates), persisted so that
     * a restoring daemon has the resources actor adopt them */
    struct tap_rec {
        char *tap, *mac, *state; /* state: res.sandbox_ready's, opaque here */
    } taps[RES_NET_MAX_IFS * 2];
    size_t n_taps;
    uint32_t boot_vcpus;                        /* the VM's size, decided at boot */
    uint64_t boot_memory_mib;
    bool restore;          /* take over a running sandbox (rt_actor_opts_t) */
    int restored_fd;       /* written once when the restore ended, -1 none */
    bool restore_attached; /* the hypervisor actor holds the VMM */
};

struct op {
    struct rt *rt;
    msg_t *req; /* the front end's request, answered when the op ends */
    struct ctr *c;
    int step;
    char *errtext; /* a failure to report once cleanup is done */
    /* a state write under way: what follows its answer */
    void (*saved)(struct op *op, const err_t *why);
    void (*then)(struct op *op, const err_t *why);
    int before;    /* the container's state before the operation */
    msg_t *next;   /* the request to send once the write is done */
    char cid[RT_ID_MAX + 1]; /* an exit being written: whose, status, when */
    int64_t status;
    uint64_t at;
};

static struct op *op_new(struct rt *rt, msg_t **req, struct ctr *c)
{
    struct op *op = xcalloc(1, sizeof *op);
    op->rt = rt;
    op->req = req ? *req : NULL;
    if (req)
        *req = NULL;
    op->c = c;
    return op;
}

static void op_free(struct op *op)
{
    free(op->errtext);
    msg_destroy(&op->req);
    msg_destroy(&op->next);
    free(op);
}

static int request(struct rt *rt, const char *to, msg_t **m, int timeout_ms, actor_reply_fn cb,
                   void *arg);

/* ---- state on disk: the persist actor's (persist/persist_actor.h) -------------
 * Every record goes to the persist actor, which writes in the order sent.
 * Where an operation depends on a write (a container's transition), it
 * goes on when the write is answered, so that what the front end is told
 * is on disk; other writes are sent and forgotten.  A write that fails is
 * retried by the persist actor, then rewritten in the background; an
 * operation whose own transition could not be written undoes it and fails
 * (see undo_transition). */
#define PERSIST_TIMEOUT_MS 10000

typedef void (*saved_fn)(struct op *op, const err_t *why); /* why NULL: on disk */

static msg_t *sandbox_record(struct rt *rt, err_t *err)
{
    persist_sandbox_t sb = {0};
    sb.id = rt->sandbox_id;
    sb.state = (char *)sb_name(rt->sb);
    sb.created = rt->created;
    sb.daemon_pid = getpid();
    err_t e2 = ERR_INIT;
    persist_proc_start_time(getpid(), &sb.daemon_start, &e2);
    err_clear(&e2);
    sb.vmm_pid = rt->vmm_pid;
    if (rt->vmm_pid)
        persist_proc_start_time(rt->vmm_pid, &sb.vmm_start, &e2);
    err_clear(&e2);
    sb.hypervisor = rt->backend[0] ? rt->backend : NULL;
    sb.agent_socket = rt->agent_socket[0] ? rt->agent_socket : NULL;
    sb.netns = rt->netns[0] ? rt->netns : NULL;
    persist_kv_t taps[sizeof rt->taps / sizeof rt->taps[0]];
    persist_kv_t states[sizeof rt->taps / sizeof rt->taps[0]];
    for (size_t i = 0; i < rt->n_taps; i++) {
        taps[sb.n_net_taps++] = (persist_kv_t){rt->taps[i].tap, rt->taps[i].mac};
        if (rt->taps[i].state)
            states[sb.n_net_tap_states++] = (persist_kv_t){rt->taps[i].tap, rt->taps[i].state};
    }
    sb.net_taps = taps;
    sb.net_tap_states = states;
    char *ids[256];
    size_t n = 0;
    for (struct ctr *c = rt->ctrs; c && n < 256; c = c->next)
        ids[n++] = c->id;
    /* creation order: the list is newest first */
    for (size_t i = 0; i < n / 2; i++) {
        char *t = ids[i];
        ids[i] = ids[n - 1 - i];
        ids[n - 1 - i] = t;
    }
    sb.containers = ids;
    sb.n_containers = n;
    char *text = NULL;
    if (persist_sandbox_to_text(&sb, &text, err) < 0)
        return NULL;
    msg_t *m = msg_new(MSG_PERSIST_SAVE_SANDBOX);
    msg_persist_save_sandbox_t *b = m->body;
    msg_set_str(&b->sandbox_id, rt->sandbox_id);
    free(b->record);
    b->record = text;
    return m;
}

static msg_t *container_record(struct rt *rt, struct ctr *c, err_t *err)
{
    persist_container_t pc = {0};
    pc.id = c->id;
    pc.sandbox_id = rt->sandbox_id;
    pc.bundle = c->bundle;
    pc.rootfs = c->rootfs;
    pc.state = (char *)c_name(c->state);
    pc.created = c->created;
    pc.init_pid = c->proxy_pid;
    err_t e2 = ERR_INIT;
    if (c->proxy_pid)
        persist_proc_start_time(c->proxy_pid, &pc.init_start, &e2);
    err_clear(&e2);
    pc.exited = c->exited;
    pc.exit_status = (int)c->exit_status;
    pc.exited_at = c->exited_at;
    pc.owner_uid = c->owner;
    pc.pid_file = c->pid_file;
    pc.console = c->console;
    persist_kv_t kv[128];
    size_t n = 0;
    for (size_t i = 0; c->spec && i < c->spec->n_annotations && n < 128; i++) {
        kv[n].key = c->spec->annotations[i].key;
        kv[n].value = c->spec->annotations[i].value;
        n++;
    }
    pc.annotations = kv;
    pc.n_annotations = n;
    char *text = NULL;
    if (persist_container_to_text(&pc, &text, err) < 0)
        return NULL;
    msg_t *m = msg_new(MSG_PERSIST_SAVE_CONTAINER);
    msg_persist_save_container_t *b = m->body;
    msg_set_str(&b->sandbox_id, rt->sandbox_id);
    msg_set_str(&b->id, c->id);
    free(b->record);
    b->record = text;
    return m;
}

static void on_persisted(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    const msg_t *r = *reply;
    err_t why = ERR_INIT;
    if (r->status) {
        err_make(&why, r->status, "%s", r->status_text ? r->status_text : "state write failed");
        const msg_persist_error_t *pe = MSG_BODY(r, PERSIST_ERROR, persist_error);
        if (!pe || !pe->pending) /* a pending write is the persist actor's to log */
            log_warn("state: %s%s", err_str(&why), op && op->saved ? "" : ", ignoring");
    }
    if (op && op->saved) {
        saved_fn fn = op->saved;
        op->saved = NULL;
        fn(op, r->status ? &why : NULL);
    }
    err_clear(&why);
}

/* Sends a persist.* request; takes *m (NULL: building it failed, err
 * says why).  With op, fn(op, why) runs once with its answer. */
static void persist_send(struct rt *rt, msg_t *m, const err_t *built, struct op *op, saved_fn fn)
{
    err_t why = ERR_INIT;
    if (!m)
        err_make(&why, built && built->code ? built->code : EINVAL, "state record: %s",
                 err_str(built));
    else if (request(rt, PERSIST_ACTOR_NAME, &m, PERSIST_TIMEOUT_MS, on_persisted,
                     fn ? op : NULL) == 0)
        return;
    else
        err_make(&why, EIO, "cannot reach the persist actor");
    if (fn)
        fn(op, &why);
    else
        log_error("state: %s", err_str(&why));
    err_clear(&why);
}

static void persist_then(struct rt *rt, msg_t *m, const err_t *built, struct op *op, saved_fn fn)
{
    if (op)
        op->saved = fn;
    persist_send(rt, m, built, op, fn);
}

/* sandbox.json; fn (may be NULL) runs with the answer. */
static void save_sandbox_then(struct rt *rt, struct op *op, saved_fn fn)
{
    err_t err = ERR_INIT;
    msg_t *m = sandbox_record(rt, &err);
    persist_then(rt, m, &err, op, fn);
    err_clear(&err);
}

static void save_sandbox(struct rt *rt)
{
    save_sandbox_then(rt, NULL, NULL);
}

static void save_container_then(struct rt *rt, struct ctr *c, struct op *op, saved_fn fn)
{
    err_t err = ERR_INIT;
    msg_t *m = container_record(rt, c, &err);
    persist_then(rt, m, &err, op, fn);
    err_clear(&err);
}

static void remove_container_state(struct rt *rt, const char *id, struct op *op, saved_fn fn)
{
    msg_t *m = msg_new(MSG_PERSIST_REMOVE_CONTAINER);
    msg_set_str(&((msg_persist_remove_container_t *)m->body)->sandbox_id, rt->sandbox_id);
    msg_set_str(&((msg_persist_remove_container_t *)m->body)->id, id);
    persist_then(rt, m, NULL, op, fn);
}

/* ---- helpers --------------------------------------------------------------- */

/* Moves the sandbox through its state machine; an illegal move is a bug
 * worth a log line, and the state stays. */
static bool sb_move(struct rt *rt, rt_sandbox_event_t ev)
{
    rt_sandbox_state_t next;
    err_t err = ERR_INIT;
    if (rt_sandbox_next(rt->sb, ev, &next, &err) < 0) {
        log_warn("sandbox %s: %s", rt->sandbox_id, err_str(&err));
        err_clear(&err);
        return false;
    }
    rt->sb = next;
    return true;
}

/* Checks a container event against the state machine; on refusal answers
 * req with runc's words and returns false. */
static bool ct_allowed(actor_t *a, const msg_t *req, const struct ctr *c, rt_container_event_t ev,
                       rt_container_state_t *next)
{
    rt_container_state_t n;
    err_t err = ERR_INIT;
    if (rt_container_next(c->state, ev, c->id, &n, &err) < 0) {
        actor_reply_error(a, req, err.code ? err.code : EINVAL, "%s", err_str(&err));
        err_clear(&err);
        return false;
    }
    if (next)
        *next = n;
    return true;
}

static struct ctr *find(struct rt *rt, const char *id)
{
    for (struct ctr *c = rt->ctrs; c; c = c->next)
        if (!strcmp(c->id, id))
            return c;
    return NULL;
}

static void ctr_free(struct ctr *c)
{
    free(c->bundle);
    free(c->rootfs);
    free(c->pid_file);
    free(c->created);
    free(c->exited_at);
    oci_spec_destroy(&c->spec);
    while (c->execs) {
        struct exited_exec *e = c->execs;
        c->execs = e->next;
        free(e);
    }
    free(c);
}

static void unlink_ctr(struct rt *rt, struct ctr *c)
{
    for (struct ctr **pp = &rt->ctrs; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            return;
        }
}

static void reply_ok(actor_t *a, const msg_t *req, const char *id)
{
    msg_t *r = msg_new_reply(req, MSG_RT_OK);
    msg_set_str(&((msg_rt_ok_t *)r->body)->id, id);
    actor_reply(a, req, &r);
}

static void reply_from(actor_t *a, const msg_t *req, const msg_t *failed, const char *what)
{
    actor_reply_error(a, req, failed->status ? failed->status : EIO, "%s: %s", what,
                      failed->status_text ? failed->status_text : "failed");
}

static void publish_state(struct rt *rt, struct ctr *c)
{
    msg_t *m = msg_new(MSG_RT_STATE_CHANGED);
    msg_set_str(&((msg_rt_state_changed_t *)m->body)->id, c->id);
    msg_set_str(&((msg_rt_state_changed_t *)m->body)->state, c_name(c->state));
    err_t err = ERR_INIT;
    actor_publish(rt->self, &m, &err);
    err_clear(&err);
}

/* Moves c to s in memory and on disk (the write is not waited for: a
 * failed one is the persist actor's to repeat). */
static void set_state(struct rt *rt, struct ctr *c, rt_container_state_t s)
{
    c->state = s;
    save_container_then(rt, c, NULL, NULL);
    publish_state(rt, c);
}

static void on_state_saved(struct op *op, const err_t *why)
{
    publish_state(op->rt, op->c);
    saved_fn then = op->then;
    op->then = NULL;
    then(op, why);
}

/* Moves op->c to s in memory, then on disk; then(op, why) runs once the
 * write is answered (why NULL: on disk).  A failed write makes the caller
 * undo its operation; the persist actor rewrites the record meanwhile. */
static void set_state_then(struct op *op, rt_container_state_t s, saved_fn then)
{
    op->c->state = s;
    op->then = then;
    save_container_then(op->rt, op->c, op, on_state_saved);
}

static int request(struct rt *rt, const char *to, msg_t **m, int timeout_ms, actor_reply_fn cb,
                   void *arg)
{
    err_t err = ERR_INIT;
    int r = actor_request(rt->self, to, m, timeout_ms, cb, arg, &err);
    if (r < 0) {
        log_error("request to %s: %s", to, err_str(&err));
        err_clear(&err);
    }
    return r;
}

static void signal_done(struct rt *rt)
{
    if (rt->done_signalled)
        return;
    rt->done_signalled = true;
    uint64_t one = 1;
    if (write(rt->done_fd, &one, sizeof one) < 0)
        log_error("signal daemon exit: %m");
}

/* Absolute host path of the container's root filesystem. */
static char *host_rootfs(const char *bundle, const char *root_path, err_t *err)
{
    char joined[PATH_MAX * 2], real[PATH_MAX];
    if (root_path[0] == '/')
        snprintf(joined, sizeof joined, "%s", root_path);
    else
        snprintf(joined, sizeof joined, "%s/%s", bundle, root_path);
    if (!realpath(joined, real)) {
        err_errno(err, "rootfs %s", joined);
        return NULL;
    }
    struct stat st;
    if (stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
        err_make(err, ENOTDIR, "rootfs %s is not a directory", real);
        return NULL;
    }
    return strdup(real);
}

/* The spec as the agent gets it: hooks run on the host, root is the path
 * the agent sees. */
static char *amend_spec(const char *spec_json, const char *rootfs, bool vm, err_t *err)
{
    json_error_t je;
    json_t *j = json_loads(spec_json, 0, &je);
    if (!j) {
        err_make(err, EINVAL, "config.json: %s", je.text);
        return NULL;
    }
    json_object_del(j, "hooks");
    /* in a VM the pod's network namespace is the guest's own (its NICs
     * stand for the namespace's interfaces): join no path */
    json_t *nss = json_object_get(json_object_get(j, "linux"), "namespaces");
    for (size_t k = json_array_size(nss); vm && k-- > 0;) {
        json_t *ns = json_array_get(nss, k);
        if (json_is_string(json_object_get(ns, "path")) &&
            !strcmp(json_string_value(json_object_get(ns, "type")) ?: "", "network"))
            json_array_remove(nss, k);
    }
    /* as runtime-rs: block-IO and network cgroup rules stay on the host
     * side; the guest's cgroup gets CPU, memory, pids, hugepages and the
     * device rules (checked by res_devices_check, applied by the agent) */
    json_t *res = json_object_get(json_object_get(j, "linux"), "resources");
    if (json_is_object(res)) {
        json_object_del(res, "blockIO");
        json_object_del(res, "network");
    }
    json_t *caps = json_object_get(json_object_get(j, "process"), "capabilities");
    json_t *amb = json_object_get(caps, "ambient"), *inh = json_object_get(caps, "inheritable");
    size_t i;
    json_t *v;
    json_array_foreach(amb, i, v)
    {
        bool found = false;
        size_t k;
        json_t *w;
        json_array_foreach(inh, k, w) found = found || json_equal(v, w);
        if (!found)
            log_warn("ambient capability %s is not inheritable: it will not be raised (as runc)",
                     json_string_value(v) ? json_string_value(v) : "?");
    }
    json_t *root = json_object_get(j, "root");
    if (json_is_object(root))
        json_object_set_new(root, "path", json_string(rootfs));
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s)
        err_make(err, ENOMEM, "config.json: out of memory");
    return s;
}

/* ---- sandbox shutdown ------------------------------------------------------- */

static void finish_shutdown2(struct rt *rt);

static void on_sandbox_state_removed(struct op *op, const err_t *why)
{
    struct rt *rt = op->rt;
    op_free(op);
    if (why)
        log_error("remove sandbox state: %s", err_str(why));
    if (rt->shutdown_req) {
        reply_ok(rt->self, rt->shutdown_req, rt->sandbox_id);
        msg_destroy(&rt->shutdown_req);
    }
    log_info("sandbox %s shut down", rt->sandbox_id);
    signal_done(rt);
}

static void on_res_released(actor_t *a, msg_t **reply, void *arg)
{
    struct rt *rt = arg;
    if ((*reply)->status)
        log_error("release the sandbox's resources: %s",
                  (*reply)->status_text ? (*reply)->status_text : "failed");
    rt->res_releasing = false;
    finish_shutdown2(rt);
}

/* The VM is gone: the resources actor releases the share, the taps and
 * the cgroup (it may hold some after a failed or unanswered prepare too),
 * then the state goes. */
static void finish_shutdown(struct rt *rt)
{
    sb_move(rt, RT_SB_EV_STOPPED);
    if (rt->res_releasing)
        return; /* the release under way ends the shutdown */
    if (rt->res_held) {
        rt->res_held = false;
        msg_t *m = msg_new(MSG_RES_RELEASE_SANDBOX);
        ((msg_res_release_sandbox_t *)m->body)->timeout_ms = 2000;
        rt->res_releasing = true;
        if (request(rt, RES_ACTOR_NAME, &m, RES_TIMEOUT_MS, on_res_released, rt) == 0)
            return;
        rt->res_releasing = false;
    }
    finish_shutdown2(rt);
}

static void finish_shutdown2(struct rt *rt)
{
    /* the state goes last; the answer waits for it (the persist actor
     * forgets the sandbox's unwritten records with it) */
    msg_t *m = msg_new(MSG_PERSIST_REMOVE_SANDBOX);
    msg_set_str(&((msg_persist_remove_sandbox_t *)m->body)->sandbox_id, rt->sandbox_id);
    persist_then(rt, m, NULL, op_new(rt, NULL, NULL), on_sandbox_state_removed);
}

static void on_hv_stopped(actor_t *a, msg_t **reply, void *arg)
{
    struct rt *rt = arg;
    if ((*reply)->status)
        log_warn("stop VM: %s, ignoring", (*reply)->status_text ? (*reply)->status_text : "");
    rt->vmm_pid = 0;
    finish_shutdown(rt);
}

static void stop_vm(struct rt *rt)
{
    if (!rt->backend[0]) {
        finish_shutdown(rt);
        return;
    }
    msg_t *m = msg_new(MSG_HV_STOP);
    ((msg_hv_stop_t *)m->body)->timeout_ms = 5000;
    if (request(rt, HV_ACTOR_NAME, &m, 15000, on_hv_stopped, rt) < 0)
        finish_shutdown(rt);
}

static void on_sandbox_destroyed(actor_t *a, msg_t **reply, void *arg)
{
    struct rt *rt = arg;
    if ((*reply)->status)
        log_debug("destroy sandbox in the guest: %s, ignoring",
                  (*reply)->status_text ? (*reply)->status_text : "");
    stop_vm(rt);
}

/* Tears the sandbox down: agent, VM, state.  `req` (may be NULL) is
 * answered at the end. */
static void shutdown_sandbox(struct rt *rt, msg_t **req)
{
    if (req && *req) {
        if (rt->shutdown_req) {
            actor_reply_error(rt->self, *req, EALREADY, "sandbox %s is already shutting down",
                              rt->sandbox_id);
            return;
        }
        rt->shutdown_req = *req;
        *req = NULL;
    }
    if (rt->sb == SB_STOPPING)
        return; /* the stop under way answers at its end */
    if (rt->sb == SB_STOPPED) {
        /* the VM died on its own (hv.exited, agent.lost): release what is
         * left of it and answer; or it is all done already */
        if (!rt->done_signalled)
            stop_vm(rt);
        else if (rt->shutdown_req) {
            reply_ok(rt->self, rt->shutdown_req, rt->sandbox_id);
            msg_destroy(&rt->shutdown_req);
        }
        return;
    }
    bool agent_up = rt->sb == SB_READY;
    sb_move(rt, RT_SB_EV_STOP);
    save_sandbox(rt);
    if (agent_up) {
        msg_t *m = msg_new(MSG_AGENT_DESTROY_SANDBOX);
        if (request(rt, "agent", &m, 5000, on_sandbox_destroyed, rt) == 0)
            return;
    }
    stop_vm(rt);
}

/* ---- proxies ------------------------------------------------------------------- */

static void pwatch_free(struct rt *rt, struct pwatch *p)
{
    for (struct pwatch **pp = &rt->pwatches; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    actor_unwatch(rt->self, &p->w);
    if (p->fd >= 0)
        close(p->fd);
    free(p);
}

static void pwatch_drop(struct rt *rt, const char *cid)
{
    for (struct pwatch *p = rt->pwatches, *n; p; p = n) {
        n = p->next;
        if (!cid || !strcmp(p->cid, cid))
            pwatch_free(rt, p);
    }
}

static void on_kill_done(actor_t *a, msg_t **reply, void *arg)
{
    if ((*reply)->status)
        log_debug("kill after proxy exit: %s", (*reply)->status_text ? (*reply)->status_text : "");
}

static struct ctr *find(struct rt *rt, const char *id);

static void on_proxy_exit(actor_t *a, int fd, short what, void *arg)
{
    struct pwatch *p = arg;
    struct rt *rt = p->rt;
    char cid[RT_ID_MAX + 1], eid[RT_ID_MAX + 1];
    snprintf(cid, sizeof cid, "%s", p->cid);
    snprintf(eid, sizeof eid, "%s", p->eid);
    pwatch_free(rt, p);
    struct ctr *c = find(rt, cid);
    if (!c || rt->sb != SB_READY)
        return;
    bool alive = !eid[0] ? (c->state != C_STOPPED && c->state != C_CREATING) : true;
    for (struct exited_exec *e = c->execs; e && eid[0]; e = e->next)
        if (!strcmp(e->exec_id, eid))
            alive = false;
    if (!alive)
        return;
    log_info("the host process of %s%s%s is gone: killing it", cid, eid[0] ? " exec " : "", eid);
    msg_t *m = msg_new(MSG_AGENT_SIGNAL_PROCESS);
    msg_agent_signal_process_t *b = m->body;
    msg_set_str(&b->container_id, cid);
    msg_set_str(&b->exec_id, eid);
    b->signal = SIGKILL;
    b->all = !eid[0];
    request(rt, "agent", &m, 10000, on_kill_done, NULL);
}

static void pwatch_add(struct rt *rt, const char *cid, const char *eid, pid_t pid)
{
    if (pid <= 0 || pid == getpid())
        return;
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) {
        log_debug("pidfd_open %d: %m (no proxy watch)", (int)pid);
        return;
    }
    struct pwatch *p = calloc(1, sizeof *p);
    if (!p) {
        close(fd);
        return;
    }
    p->rt = rt;
    p->fd = fd;
    snprintf(p->cid, sizeof p->cid, "%s", cid);
    snprintf(p->eid, sizeof p->eid, "%s", eid);
    p->w = actor_watch(rt->self, fd, EV_READ, on_proxy_exit, p);
    if (!p->w) {
        close(fd);
        free(p);
        return;
    }
    p->next = rt->pwatches;
    rt->pwatches = p;
}

/* ---- boot ---------------------------------------------------------------------- */

static void create_container(struct rt *rt, msg_t **req);

static void boot_failed(struct rt *rt, const char *why)
{
    log_error("sandbox %s failed to boot: %s", rt->sandbox_id, why);
    sb_move(rt, RT_SB_EV_FAIL);
    for (int i = 0; i < rt->nqueued; i++) {
        actor_reply_error(rt->self, rt->queued[i], EIO, "sandbox %s: %s", rt->sandbox_id, why);
        msg_destroy(&rt->queued[i]);
    }
    rt->nqueued = 0;
    if (!rt->ctrs)
        shutdown_sandbox(rt, NULL);
}

static void boot_done(struct rt *rt)
{
    sb_move(rt, RT_SB_EV_BOOTED);
    save_sandbox(rt);
    log_info("sandbox %s ready (%s)", rt->sandbox_id, rt->backend);
    int n = rt->nqueued;
    rt->nqueued = 0;
    for (int i = 0; i < n; i++)
        create_container(rt, &rt->queued[i]);
}

/* ---- network (the resources actor's taps, docs/networking.md) ------------------- */

/* The record of the VM's taps (rt->taps). */
static void taps_add(struct rt *rt, const char *tap, const char *mac, const char *state)
{
    if (rt->n_taps >= sizeof rt->taps / sizeof rt->taps[0]) {
        log_warn("network: tap %s not recorded (too many): a restore would not adopt it", tap);
        return;
    }
    rt->taps[rt->n_taps++] = (struct tap_rec){xstrdup(tap), xstrdup(mac), xstrdup(state)};
}

static void taps_remove(struct rt *rt, const char *tap)
{
    for (size_t i = 0; i < rt->n_taps; i++) {
        if (strcmp(rt->taps[i].tap, tap))
            continue;
        free(rt->taps[i].tap);
        free(rt->taps[i].mac);
        free(rt->taps[i].state);
        rt->taps[i] = rt->taps[--rt->n_taps];
        return;
    }
}

static void taps_clear(struct rt *rt)
{
    while (rt->n_taps)
        taps_remove(rt, rt->taps[0].tap);
}

/* Configures the guest: agent.update_interface for each element of the
 * JSON array ifaces, then the routes and (when any) the neighbours; then
 * calls done. */
typedef void (*netcfg_done_fn)(struct rt *rt, const char *why, void *arg);

struct netcfg {
    struct rt *rt;
    json_t *ifaces;
    size_t i;
    int step; /* 0 interfaces, 1 routes, 2 neighbours */
    char *routes, *neighs;
    netcfg_done_fn done;
    void *arg;
};

static void netcfg_step(struct netcfg *nc);

static void netcfg_finish(struct netcfg *nc, const char *why)
{
    netcfg_done_fn done = nc->done;
    struct rt *rt = nc->rt;
    void *arg = nc->arg;
    json_decref(nc->ifaces);
    free(nc->routes);
    free(nc->neighs);
    free(nc);
    done(rt, why, arg);
}

static void on_netcfg_reply(actor_t *a, msg_t **reply, void *arg)
{
    struct netcfg *nc = arg;
    if ((*reply)->status) {
        char why[MSG_ITEM_MAX + 64];
        snprintf(why, sizeof why, "configure the guest network: %s",
                 (*reply)->status_text ? (*reply)->status_text : "failed");
        netcfg_finish(nc, why);
        return;
    }
    netcfg_step(nc);
}

static void netcfg_step(struct netcfg *nc)
{
    msg_t *m = NULL;
    char *json = NULL;
    json_t *neighs = nc->step == 2 ? json_loads(nc->neighs, 0, NULL) : NULL;
    size_t n_neighs = json_array_size(neighs);
    json_decref(neighs);
    if (nc->step == 0 && nc->i < json_array_size(nc->ifaces)) {
        json = json_dumps(json_array_get(nc->ifaces, nc->i++), JSON_COMPACT);
        m = msg_new(MSG_AGENT_UPDATE_INTERFACE);
        if (m && json)
            msg_set_str(&((msg_agent_update_interface_t *)m->body)->interface, json);
    } else if (nc->step <= 1) {
        nc->step = 2;
        json = strdup(nc->routes);
        m = msg_new(MSG_AGENT_UPDATE_ROUTES);
        if (m && json)
            msg_set_str(&((msg_agent_update_routes_t *)m->body)->routes, json);
    } else if (nc->step == 2 && n_neighs) {
        nc->step = 3;
        json = strdup(nc->neighs);
        m = msg_new(MSG_AGENT_ADD_ARP_NEIGHBORS);
        if (m && json)
            msg_set_str(&((msg_agent_add_arp_neighbors_t *)m->body)->neighbors, json);
    } else {
        netcfg_finish(nc, NULL);
        return;
    }
    bool ok = m && json;
    free(json);
    if (!ok) {
        msg_destroy(&m);
        netcfg_finish(nc, "configure the guest network: out of memory");
        return;
    }
    if (request(nc->rt, "agent", &m, AGENT_TIMEOUT_MS, on_netcfg_reply, nc) < 0)
        netcfg_finish(nc, "configure the guest network: cannot reach the agent actor");
}

/* ifaces: a JSON array of interface objects (taken: json_decref'd). */
static void netcfg_start(struct rt *rt, json_t *ifaces, const char *routes, const char *neighs,
                         netcfg_done_fn done, void *arg)
{
    struct netcfg *nc = calloc(1, sizeof *nc);
    if (nc) {
        nc->routes = strdup(routes && routes[0] ? routes : "[]");
        nc->neighs = strdup(neighs && neighs[0] ? neighs : "[]");
    }
    if (!nc || !nc->routes || !nc->neighs || !json_is_array(ifaces)) {
        if (nc) {
            free(nc->routes);
            free(nc->neighs);
        }
        free(nc);
        json_decref(ifaces);
        done(rt, ifaces ? "out of memory" : "the interfaces are not a JSON array", arg);
        return;
    }
    nc->rt = rt;
    nc->ifaces = ifaces;
    nc->done = done;
    nc->arg = arg;
    netcfg_step(nc);
}

/* rt.update_network: the resources actor rescans (and attaches the new
 * interfaces); the runtime unplugs the taps that went (then has them
 * released), plugs the new ones and configures the guest. */
struct netupd {
    struct rt *rt;
    msg_t *req;
    msg_t *changes;  /* res.network_changes */
    json_t *plugged; /* interface objects of the taps plugged so far */
    size_t k;
    int phase; /* 0 unplug removed_taps, 1 plug taps */
};

static void netupd_end(struct netupd *u, int code, const char *why)
{
    if (code)
        actor_reply_error(u->rt->self, u->req, code, "update network: %s", why);
    else
        reply_ok(u->rt->self, u->req, u->rt->sandbox_id);
    msg_destroy(&u->req);
    msg_destroy(&u->changes);
    json_decref(u->plugged);
    free(u);
}

static void netupd_configured(struct rt *rt, const char *why, void *arg)
{
    netupd_end(arg, why ? EIO : 0, why);
}

static void netupd_next(struct netupd *u);

static void on_endpoint_released(actor_t *a, msg_t **reply, void *arg)
{
    if ((*reply)->status)
        log_error("network: release a tap: %s",
                  (*reply)->status_text ? (*reply)->status_text : "failed");
}

/* Asks the resources actor to remove tap (its answer is only logged: the
 * tap goes with the sandbox's release at the latest). */
static void release_endpoint(struct rt *rt, const char *tap)
{
    msg_t *m = msg_new(MSG_RES_RELEASE_ENDPOINT);
    msg_set_str(&((msg_res_release_endpoint_t *)m->body)->tap, tap);
    request(rt, RES_ACTOR_NAME, &m, RES_TIMEOUT_MS, on_endpoint_released, NULL);
}

static void on_netupd_released(actor_t *a, msg_t **reply, void *arg)
{
    struct netupd *u = arg;
    on_endpoint_released(a, reply, NULL);
    u->k++;
    netupd_next(u);
}

static void on_netupd_device(actor_t *a, msg_t **reply, void *arg)
{
    struct netupd *u = arg;
    msg_res_network_changes_t *ch = u->changes->body;
    const char *tap = u->phase == 0 ? ch->removed_taps.v[u->k] : ch->taps.v[u->k];
    if ((*reply)->status) {
        char why[MSG_ITEM_MAX + 64];
        snprintf(why, sizeof why, "%s %s: %s", u->phase == 0 ? "unplug" : "hot-plug", tap,
                 (*reply)->status_text ? (*reply)->status_text : "failed");
        if (u->phase == 1)
            release_endpoint(u->rt, tap); /* not in the VM: give the namespace back */
        netupd_end(u, (*reply)->status, why);
        return;
    }
    log_info("network: %s %s", tap, u->phase == 0 ? "unplugged" : "hot-plugged");
    if (u->phase == 0)
        taps_remove(u->rt, tap);
    else
        taps_add(u->rt, tap, u->k < ch->macs.n ? ch->macs.v[u->k] : "",
                 u->k < ch->states.n ? ch->states.v[u->k] : NULL);
    save_sandbox(u->rt);
    if (u->phase == 0) {
        /* out of the VM: the tap goes before the update is answered */
        msg_t *m = msg_new(MSG_RES_RELEASE_ENDPOINT);
        msg_set_str(&((msg_res_release_endpoint_t *)m->body)->tap, tap);
        if (request(u->rt, RES_ACTOR_NAME, &m, RES_TIMEOUT_MS, on_netupd_released, u) < 0)
            netupd_end(u, EIO, "cannot reach the resources actor");
        return;
    }
    json_t *all = json_loads(ch->interfaces, 0, NULL);
    json_t *one = json_array_get(all, u->k);
    if (one)
        json_array_append(u->plugged, one);
    json_decref(all);
    u->k++;
    netupd_next(u);
}

static void netupd_next(struct netupd *u)
{
    msg_res_network_changes_t *ch = u->changes->body;
    if (u->phase == 0 && u->k >= ch->removed_taps.n) {
        u->phase = 1;
        u->k = 0;
    }
    if (u->phase == 1 && u->k >= ch->taps.n) {
        json_t *ifaces = u->plugged;
        u->plugged = NULL;
        netcfg_start(u->rt, ifaces, ch->routes, ch->neighbors, netupd_configured, u);
        return;
    }
    msg_t *m;
    if (u->phase == 0) {
        m = msg_new(MSG_HV_REMOVE_DEVICE);
        msg_set_str(&((msg_hv_remove_device_t *)m->body)->kind, "network");
        msg_set_str(&((msg_hv_remove_device_t *)m->body)->id, ch->removed_taps.v[u->k]);
    } else {
        m = msg_new(MSG_HV_ADD_DEVICE);
        msg_hv_add_device_t *b = m->body;
        msg_set_str(&b->kind, "network");
        msg_set_str(&b->id, ch->taps.v[u->k]);
        msg_set_str(&b->path, ch->taps.v[u->k]);
        msg_set_str(&b->mac, u->k < ch->macs.n ? ch->macs.v[u->k] : "");
    }
    if (request(u->rt, HV_ACTOR_NAME, &m, HV_TIMEOUT_MS, on_netupd_device, u) < 0)
        netupd_end(u, EIO, "cannot reach the hypervisor actor");
}

static void on_res_rescanned(actor_t *a, msg_t **reply, void *arg)
{
    struct netupd *u = arg;
    msg_res_network_changes_t *ch = MSG_BODY(*reply, RES_NETWORK_CHANGES, res_network_changes);
    if ((*reply)->status || !ch) {
        netupd_end(u, (*reply)->status ? (*reply)->status : EPROTO,
                   (*reply)->status_text ? (*reply)->status_text : "unexpected answer");
        return;
    }
    u->changes = *reply;
    *reply = NULL;
    netupd_next(u);
}

static void on_update_network(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    msg_rt_update_network_t *b = (*m)->body;
    if (strcmp(b->id, rt->sandbox_id) && !find(rt, b->id)) {
        actor_reply_error(a, *m, ENOENT, "container does not exist");
        return;
    }
    if (rt->sb != SB_READY) {
        actor_reply_error(a, *m, EAGAIN, "update network: sandbox %s is %s", rt->sandbox_id,
                          sb_name(rt->sb));
        return;
    }
    if (!rt->netns[0]) {
        actor_reply_error(a, *m, EINVAL,
                          "update network: sandbox %s has no network namespace path in its spec",
                          rt->sandbox_id);
        return;
    }
    if (!rt->vm) { /* the local agent lives in the namespace: it sees all */
        reply_ok(a, *m, rt->sandbox_id);
        return;
    }
    struct netupd *u = calloc(1, sizeof *u);
    if (!u || !(u->plugged = json_array())) {
        free(u);
        actor_reply_error(a, *m, ENOMEM, "update network: out of memory");
        return;
    }
    u->rt = rt;
    u->req = *m;
    *m = NULL;
    msg_t *q = msg_new(MSG_RES_RESCAN_NETWORK);
    if (request(rt, RES_ACTOR_NAME, &q, RES_TIMEOUT_MS, on_res_rescanned, u) < 0)
        netupd_end(u, EIO, "cannot reach the resources actor");
}

static void on_guest_net(struct rt *rt, const char *why, void *arg)
{
    if (why)
        boot_failed(rt, why);
    else
        boot_done(rt);
}

static void on_agent_sandbox(actor_t *a, msg_t **reply, void *arg)
{
    struct rt *rt = arg;
    if ((*reply)->status) {
        char why[MSG_ITEM_MAX + 64];
        snprintf(why, sizeof why, "agent create_sandbox: %s", (*reply)->status_text);
        boot_failed(rt, why);
        return;
    }
    json_t *ifaces = rt->net_ifaces ? json_loads(rt->net_ifaces, 0, NULL) : NULL;
    if (json_array_size(ifaces)) {
        netcfg_start(rt, ifaces, rt->net_routes, rt->net_neighs, on_guest_net, NULL);
        return;
    }
    json_decref(ifaces);
    boot_done(rt);
}

static void on_agent_connected(actor_t *a, msg_t **reply, void *arg)
{
    struct rt *rt = arg;
    if ((*reply)->status) {
        char why[PATH_MAX + 1024];
        snprintf(why, sizeof why, "connect to the agent at %s: %s", rt->agent_socket,
                 (*reply)->status_text ? (*reply)->status_text : "failed");
        boot_failed(rt, why);
        return;
    }
    msg_t *m = msg_new(MSG_AGENT_CREATE_SANDBOX);
    msg_agent_create_sandbox_t *b = m->body;
    msg_set_str(&b->sandbox_id, rt->sandbox_id);
    if (rt->vm)
        msg_set_str(&b->storages,
                    "[{\"driver\":\"9p\",\"source\":\"" RES_SHARE_TAG
                    "\",\"mount_point\":\"" RES_SHARE_GUEST_ROOT
                    "\",\"options\":[\"trans=virtio\",\"version=9p2000.L\",\"msize=262144\"]}]");
    else
        msg_set_str(&b->storages, "[]");
    if (request(rt, "agent", &m, AGENT_TIMEOUT_MS, on_agent_sandbox, rt) < 0)
        boot_failed(rt, "cannot reach the agent actor");
}

static void on_res_pid_added(actor_t *a, msg_t **reply, void *arg)
{
    struct rt *rt = arg;
    if ((*reply)->status)
        log_warn("move VMM pid %d into the sandbox cgroup: %s, ignoring", (int)rt->vmm_pid,
                 (*reply)->status_text ? (*reply)->status_text : "failed");
}

static void on_hv_started(actor_t *a, msg_t **reply, void *arg)
{
    struct rt *rt = arg;
    msg_hv_started_t *b = MSG_BODY(*reply, HV_STARTED, hv_started);
    if ((*reply)->status || !b) {
        char why[MSG_ITEM_MAX + 64];
        snprintf(why, sizeof why, "%s", (*reply)->status_text ? (*reply)->status_text : "failed");
        /* a failed start leaves nothing to stop; an unanswered one may
         * have left a VMM running: the stop asks the hypervisor */
        if ((*reply)->status != ETIMEDOUT)
            rt->backend[0] = 0;
        boot_failed(rt, why);
        return;
    }
    rt->vmm_pid = (pid_t)b->pid;
    /* a backend that spawned the VMM in the cgroup saves the move by pid
     * (an RCU grace period, docs/performance.md) */
    if (rt->vmm_pid > 0 && !b->in_cgroup) {
        msg_t *p = msg_new(MSG_RES_ADD_PID);
        ((msg_res_add_pid_t *)p->body)->pid = (uint64_t)rt->vmm_pid;
        request(rt, RES_ACTOR_NAME, &p, RES_TIMEOUT_MS, on_res_pid_added, rt);
    }
    snprintf(rt->backend, sizeof rt->backend, "%s", b->backend);
    snprintf(rt->agent_socket, sizeof rt->agent_socket, "%s", b->agent_socket);
    save_sandbox(rt);
    msg_t *m = msg_new(MSG_AGENT_CONNECT);
    msg_set_str(&((msg_agent_connect_t *)m->body)->socket, b->agent_socket);
    ((msg_agent_connect_t *)m->body)->timeout_ms = CONNECT_TIMEOUT_MS;
    if (request(rt, "agent", &m, CONNECT_TIMEOUT_MS + 5000, on_agent_connected, rt) < 0)
        boot_failed(rt, "cannot reach the agent actor");
}

/* The resources actor answered res.prepare_sandbox: boot the VM with the
 * share and the taps it prepared. */
static void on_res_ready(actor_t *a, msg_t **reply, void *arg)
{
    struct rt *rt = arg;
    msg_res_sandbox_ready_t *r = MSG_BODY(*reply, RES_SANDBOX_READY, res_sandbox_ready);
    if ((*reply)->status || !r) {
        char why[MSG_ITEM_MAX + 64];
        snprintf(why, sizeof why, "%s",
                 (*reply)->status_text ? (*reply)->status_text : "unexpected answer");
        rt->backend[0] = 0; /* no VM was started */
        boot_failed(rt, why);
        return;
    }
    for (size_t i = 0; i < r->warnings.n; i++)
        log_warn("resources: %s", r->warnings.v[i]);
    free(rt->net_ifaces);
    free(rt->net_routes);
    free(rt->net_neighs);
    rt->net_ifaces = strdup(r->interfaces[0] ? r->interfaces : "[]");
    rt->net_routes = strdup(r->routes[0] ? r->routes : "[]");
    rt->net_neighs = strdup(r->neighbors[0] ? r->neighbors : "[]");
    msg_t *m = msg_new(MSG_HV_START);
    msg_hv_start_t *b = m->body;
    msg_set_str(&b->sandbox_id, rt->sandbox_id);
    msg_set_str(&b->netns, rt->netns);
    taps_clear(rt);
    for (size_t i = 0; i < r->taps.n && i < r->macs.n; i++) {
        msg_strv_push(&b->net_taps, r->taps.v[i]);
        msg_strv_push(&b->net_macs, r->macs.v[i]);
        taps_add(rt, r->taps.v[i], r->macs.v[i], i < r->states.n ? r->states.v[i] : NULL);
    }
    msg_set_str(&b->dir, rt->dir);
    for (size_t i = 0; i < r->cgroup_dirs.n; i++)
        msg_strv_push(&b->cgroup_dirs, r->cgroup_dirs.v[i]);
    b->vcpus = rt->boot_vcpus;
    b->memory_mib = rt->boot_memory_mib;
    if (r->share_dir[0]) {
        msg_set_str(&b->share_dir, r->share_dir);
        msg_set_str(&b->share_tag, r->share_tag);
    }
    if (request(rt, HV_ACTOR_NAME, &m, HV_TIMEOUT_MS, on_hv_started, rt) < 0)
        boot_failed(rt, "cannot reach the hypervisor actor");
}

/* Boots the sandbox sized for its first container: the resources actor
 * prepares the cgroup, share and taps, then the hypervisor starts. */
static void boot(struct rt *rt, const oci_spec_t *first)
{
    sb_move(rt, RT_SB_EV_BOOT);
    snprintf(rt->backend, sizeof rt->backend, "%s", rt->cfg->backend ? rt->cfg->backend : "qemu");
    rt->vm = strcmp(rt->backend, "local") != 0;
    save_sandbox(rt);
    err_t err = ERR_INIT;
    res_sizing_defaults_t defs = {.vcpus = rt->cfg->vcpus ? rt->cfg->vcpus : 1,
                                  .memory_mib = rt->cfg->memory_mib ? rt->cfg->memory_mib : 512,
                                  .overhead_mib = 128,
                                  .min_memory_mib = 128};
    res_sizing_t size = {.vcpus = defs.vcpus, .memory_mib = defs.memory_mib};
    if (first && res_sizing_from_spec(first, &defs, &size, &err) < 0) {
        log_warn("sizing: %s; using the defaults", err_str(&err));
        err_clear(&err);
    }
    rt->boot_vcpus = size.vcpus;
    rt->boot_memory_mib = size.memory_mib;
    res_cgroup_limits_t lim = {0};
    if (first)
        res_cgroup_limits_from_spec(first, (uint64_t)256 << 20, &lim);
    const char *nsp = NULL;
    if (first && res_net_netns_of_spec(first, &nsp))
        snprintf(rt->netns, sizeof rt->netns, "%s", nsp);
    msg_t *m = msg_new(MSG_RES_PREPARE_SANDBOX);
    msg_res_prepare_sandbox_t *b = m->body;
    msg_set_str(&b->sandbox_id, rt->sandbox_id);
    msg_set_str(&b->root, rt->root);
    msg_set_str(&b->dir, rt->dir);
    b->vm = rt->vm;
    msg_set_str(&b->netns, rt->netns);
    b->memory_bytes = lim.memory_bytes;
    b->cpu_quota_us = lim.cpu_quota_us;
    b->cpu_period_us = lim.cpu_period_us;
    log_info("booting %s sandbox: %u vCPUs (%s), %llu MiB (%s)", rt->backend, size.vcpus,
             size.vcpus_from ? size.vcpus_from : "default", (unsigned long long)size.memory_mib,
             size.memory_from ? size.memory_from : "default");
    /* from now on the resources actor may hold something of ours (even
     * when its answer is lost): the shutdown releases it */
    rt->res_held = true;
    if (request(rt, RES_ACTOR_NAME, &m, RES_TIMEOUT_MS, on_res_ready, rt) < 0) {
        rt->backend[0] = 0;
        boot_failed(rt, "cannot reach the resources actor");
    }
}

/* ---- OCI hooks (on the host, at the points the spec names) ------------------------ */

typedef void (*hooks_next_fn)(struct op *op, int result, err_t *err);

struct hookchain {
    struct op *op;
    enum oci_hook_kind kinds[3];
    int n, i;
    const char *status;
    hooks_next_fn next;
    int worst; /* RT_HOOKS_WARNED seen */
    err_t warn;
};

static void hook_step(struct hookchain *h);

static void on_hooks_done(int result, err_t *err, void *arg)
{
    struct hookchain *h = arg;
    if (result < 0) {
        err_t e = ERR_INIT;
        err_move(&e, err);
        hooks_next_fn next = h->next;
        struct op *op = h->op;
        err_clear(&h->warn);
        free(h);
        next(op, result, &e);
        err_clear(&e);
        return;
    }
    if (result == RT_HOOKS_WARNED) {
        log_warn("container %s: %s hooks: %s, continuing", h->op->c->id,
                 oci_hook_kind_name(h->kinds[h->i]), err_str(err));
        h->worst = RT_HOOKS_WARNED;
    }
    h->i++;
    hook_step(h);
}

static void hook_step(struct hookchain *h)
{
    struct ctr *c = h->op->c;
    while (h->i < h->n && c->spec->n_hooks[h->kinds[h->i]] == 0)
        h->i++;
    if (h->i == h->n) {
        hooks_next_fn next = h->next;
        struct op *op = h->op;
        int worst = h->worst;
        free(h);
        next(op, worst, NULL);
        return;
    }
    enum oci_hook_kind k = h->kinds[h->i];
    rt_hook_state_t st = {.id = c->id,
                          .status = h->status,
                          .pid = k == OCI_HOOK_POSTSTOP ? 0 : c->proxy_pid,
                          .bundle = c->bundle,
                          .annotations = c->spec->annotations,
                          .n_annotations = c->spec->n_annotations};
    err_t err = ERR_INIT;
    if (rt_hooks_start(actor_base(h->op->rt->self), k, c->spec->hooks[k], c->spec->n_hooks[k], &st,
                       on_hooks_done, h, NULL, &err) < 0) {
        hooks_next_fn next = h->next;
        struct op *op = h->op;
        free(h);
        next(op, -err.code, &err);
        err_clear(&err);
    }
}

/* Runs the hooks of the given kinds in order, then next(op, result, err):
 * result < 0 when a fatal hook failed (err says which), else 0 or
 * RT_HOOKS_WARNED. */
static void run_hooks(struct op *op, const enum oci_hook_kind *kinds, int n, const char *status,
                      hooks_next_fn next)
{
    struct hookchain *h = xcalloc(1, sizeof *h);
    h->op = op;
    memcpy(h->kinds, kinds, (size_t)n * sizeof *kinds);
    h->n = n;
    h->status = status;
    h->next = next;
    hook_step(h);
}

/* ---- create ----------------------------------------------------------------------- */

static void create_hooks_done(struct op *op, int result, err_t *err);

/* The create failed (op->step: errno, op->errtext: why) and nothing of the
 * container is left, on disk either: the caller learns of it now. */
static void on_create_undone(struct op *op, const err_t *why)
{
    struct rt *rt = op->rt;
    actor_reply_error(rt->self, op->req, op->step ? op->step : EIO, "%s",
                      op->errtext ? op->errtext : "create failed");
    op_free(op);
    if (!rt->ctrs)
        shutdown_sandbox(rt, NULL);
}

/* Asks the resources actor to drop the container's share (op->c), then
 * calls next(op); at once when there is none (the local backend). */
struct share_release {
    struct op *op;
    void (*next)(struct op *op);
};

static void on_share_released(actor_t *a, msg_t **reply, void *arg)
{
    struct share_release *sr = arg;
    if ((*reply)->status)
        log_warn("remove the share of %s: %s, ignoring", sr->op->c->id,
                 (*reply)->status_text ? (*reply)->status_text : "failed");
    struct op *op = sr->op;
    void (*next)(struct op *) = sr->next;
    free(sr);
    next(op);
}

static void release_share_then(struct op *op, void (*next)(struct op *op))
{
    struct rt *rt = op->rt;
    struct share_release *sr = rt->vm ? calloc(1, sizeof *sr) : NULL;
    if (!sr) {
        next(op);
        return;
    }
    sr->op = op;
    sr->next = next;
    msg_t *m = msg_new(MSG_RES_RELEASE_CONTAINER);
    msg_set_str(&((msg_res_release_container_t *)m->body)->container_id, op->c->id);
    if (request(rt, RES_ACTOR_NAME, &m, RES_TIMEOUT_MS, on_share_released, sr) < 0) {
        free(sr);
        next(op);
    }
}

static void create_undo2(struct op *op);

/* Forgets a container whose create failed: share, memory, state. */
static void create_undo(struct op *op, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void create_undo(struct op *op, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    free(op->errtext);
    if (vasprintf(&op->errtext, fmt, ap) < 0)
        abort();
    va_end(ap);
    op->step = code;
    release_share_then(op, create_undo2);
}

static void create_undo2(struct op *op)
{
    struct rt *rt = op->rt;
    struct ctr *c = op->c;
    unlink_ctr(rt, c);
    remove_container_state(rt, c->id, NULL, NULL);
    ctr_free(c);
    op->c = NULL;
    /* answered after the sandbox's list without it is written (and so
     * after the removal, written before it) */
    save_sandbox_then(rt, op, on_create_undone);
}

static void on_agent_created(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    if ((*reply)->status) {
        create_undo(op, (*reply)->status, "create container: %s",
                    (*reply)->status_text ? (*reply)->status_text : "failed");
        return;
    }
    static const enum oci_hook_kind create_hooks[] = {OCI_HOOK_PRESTART, OCI_HOOK_CREATE_RUNTIME,
                                                      OCI_HOOK_CREATE_CONTAINER};
    run_hooks(op, create_hooks, 3, "creating", create_hooks_done);
}

static void on_removed_after_hook(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    char *why = op->errtext;
    op->errtext = NULL;
    create_undo(op, EIO, "%s", why ? why : "create hook failed");
    free(why);
}

static void on_created_saved(struct op *op, const err_t *why)
{
    struct rt *rt = op->rt;
    struct ctr *c = op->c;
    if (why) {
        /* the file would say `creating` of a container the caller does not
         * know: undo the create */
        err_t serr = ERR_INIT;
        err_make(&serr, why->code, "save state: %s", err_str(why));
        create_hooks_done(op, -1, &serr);
        err_clear(&serr);
        return;
    }
    pwatch_add(rt, c->id, "", c->proxy_pid);
    msg_t *r = msg_new_reply(op->req, MSG_RT_CREATED);
    msg_rt_created_t *b = r->body;
    msg_set_str(&b->id, c->id);
    msg_set_str(&b->sandbox_id, rt->sandbox_id);
    b->pid = (uint64_t)c->proxy_pid;
    log_info("container %s created", c->id);
    actor_reply(rt->self, op->req, &r);
    op_free(op);
}

static void create_hooks_done(struct op *op, int result, err_t *err)
{
    struct rt *rt = op->rt;
    struct ctr *c = op->c;
    actor_t *a = rt->self;
    if (result < 0) {
        /* as the spec says: a failed create hook fails the create, and the
         * container is destroyed */
        op->errtext = strdup(err_str(err));
        msg_t *m = msg_new(MSG_AGENT_REMOVE_CONTAINER);
        msg_set_str(&((msg_agent_remove_container_t *)m->body)->container_id, c->id);
        ((msg_agent_remove_container_t *)m->body)->timeout_ms = REMOVE_TIMEOUT_MS;
        if (request(rt, "agent", &m, REMOVE_TIMEOUT_MS + 5000, on_removed_after_hook, op) < 0) {
            msg_t *fake = msg_new(MSG_AGENT_OK);
            on_removed_after_hook(a, &fake, op);
            msg_destroy(&fake);
        }
        return;
    }
    set_state_then(op, C_CREATED, on_created_saved);
}

/* `creating` could not be written: the share goes, then the container;
 * the caller is told (op->step, op->errtext). */
static void creating_unsaved_end(struct op *op)
{
    struct rt *rt = op->rt;
    struct ctr *c = op->c;
    actor_reply_error(rt->self, op->req, op->step ? op->step : EIO, "%s",
                      op->errtext ? op->errtext : "save state failed");
    unlink_ctr(rt, c);
    remove_container_state(rt, c->id, NULL, NULL); /* and its unwritten record */
    ctr_free(c);
    op_free(op);
}

static void on_creating_saved(struct op *op, const err_t *why)
{
    struct rt *rt = op->rt;
    if (why) {
        op->step = why->code ? why->code : EIO;
        if (asprintf(&op->errtext, "save state: %s", err_str(why)) < 0)
            abort();
        release_share_then(op, creating_unsaved_end);
        return;
    }
    save_sandbox(rt);
    msg_t *m = op->next;
    op->next = NULL;
    if (request(rt, "agent", &m, AGENT_TIMEOUT_MS, on_agent_created, op) < 0)
        create_undo(op, EIO, "cannot reach the agent actor");
}

/* A create refused before the container was known (op->c not linked):
 * answered once its share (if any) is gone. */
static void create_refused_end(struct op *op)
{
    actor_reply_error(op->rt->self, op->req, op->step ? op->step : EINVAL, "%s",
                      op->errtext ? op->errtext : "create refused");
    ctr_free(op->c);
    op->c = NULL;
    op_free(op);
}

static void create_refused(struct op *op, err_t *err, bool shared)
{
    op->step = err->code;
    free(op->errtext);
    op->errtext = strdup(err_str(err));
    err_clear(err);
    if (shared)
        release_share_then(op, create_refused_end);
    else
        create_refused_end(op);
}

/* The container's files are where the guest will see them (guest_json:
 * its spec for the guest, NULL = the bundle's): the agent creates it once
 * the file says `creating`. */
static void create_in_guest(struct op *op, const char *guest_json, const char *guest_rootfs)
{
    struct rt *rt = op->rt;
    struct ctr *c = op->c;
    msg_rt_create_t *b = op->req->body;
    err_t err = ERR_INIT;
    char *amended = amend_spec(guest_json ? guest_json : b->spec, guest_rootfs, rt->vm, &err);
    if (!amended) {
        create_refused(op, &err, rt->vm);
        return;
    }
    c->state = C_CREATING;
    c->next = rt->ctrs;
    rt->ctrs = c;
    msg_t *m = msg_new(MSG_AGENT_CREATE_CONTAINER);
    msg_agent_create_container_t *ab = m->body;
    msg_set_str(&ab->container_id, c->id);
    free(ab->spec);
    ab->spec = amended;
    msg_set_str(&ab->rootfs, guest_rootfs);
    msg_set_str(&ab->storages, "[]");
    ab->stdin = true;
    op->next = m;
    save_container_then(rt, c, op, on_creating_saved);
}

static void on_res_container(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    struct rt *rt = op->rt;
    msg_res_container_ready_t *r = MSG_BODY(*reply, RES_CONTAINER_READY, res_container_ready);
    err_t err = ERR_INIT;
    if ((*reply)->status || !r) {
        err_make(&err, (*reply)->status ? (*reply)->status : EPROTO, "share the container: %s",
                 (*reply)->status_text ? (*reply)->status_text : "unexpected answer");
        /* a lost answer may have left the share: a release is harmless */
        create_refused(op, &err, (*reply)->status == ETIMEDOUT);
        return;
    }
    if (rt->sb != SB_READY || find(rt, op->c->id)) {
        err_make(&err, rt->sb != SB_READY ? EIO : EEXIST, "%s",
                 rt->sb != SB_READY ? "sandbox is no longer ready"
                                    : "container with given ID already exists");
        create_refused(op, &err, true);
        return;
    }
    create_in_guest(op, r->spec, r->rootfs);
}

static void create_container(struct rt *rt, msg_t **req)
{
    actor_t *a = rt->self;
    msg_rt_create_t *b = (*req)->body;
    err_t err = ERR_INIT;
    if (rt->sb == SB_FAILED || rt->sb == SB_STOPPING || rt->sb == SB_STOPPED) {
        actor_reply_error(a, *req, EIO, "sandbox %s is %s", rt->sandbox_id, sb_name(rt->sb));
        return;
    }
    if (rt->sb == SB_NEW || rt->sb == SB_BOOTING) {
        /* a bad spec is refused now, not after a boot */
        oci_spec_t *first = NULL;
        if (oci_spec_parse(b->spec, strlen(b->spec), &first, &err) < 0 ||
            res_devices_check(first, &err) < 0) {
            oci_spec_destroy(&first);
            actor_reply_error(a, *req, err.code ? err.code : EINVAL, "%s", err_str(&err));
            err_clear(&err);
            return;
        }
        if (rt->nqueued == 64) {
            oci_spec_destroy(&first);
            actor_reply_error(a, *req, EBUSY, "sandbox %s: too many creates waiting",
                              rt->sandbox_id);
            return;
        }
        rt->queued[rt->nqueued++] = *req;
        *req = NULL;
        if (rt->sb == SB_NEW)
            boot(rt, first);
        oci_spec_destroy(&first);
        return;
    }
    /* ready: the container itself */
    if (find(rt, b->id)) {
        actor_reply_error(a, *req, EEXIST, "container with given ID already exists");
        return;
    }
    struct ctr *c = xcalloc(1, sizeof *c);
    snprintf(c->id, sizeof c->id, "%s", b->id);
    c->bundle = strdup(b->bundle);
    c->pid_file = b->pid_file[0] ? strdup(b->pid_file) : NULL;
    c->proxy_pid = (pid_t)b->proxy_pid;
    c->console = b->console;
    c->owner = (uint32_t)b->owner_uid;
    c->created = persist_time_now();
    struct op *op = op_new(rt, req, c);
    if (oci_spec_parse(b->spec, strlen(b->spec), &c->spec, &err) < 0 ||
        res_devices_check(c->spec, &err) < 0 ||
        !(c->rootfs = host_rootfs(b->bundle, c->spec->root_path, &err))) {
        create_refused(op, &err, false);
        return;
    }
    if (!rt->vm) {
        create_in_guest(op, NULL, c->rootfs);
        return;
    }
    /* the rootfs and bind mounts reach the guest through the share */
    msg_t *m = msg_new(MSG_RES_PREPARE_CONTAINER);
    msg_res_prepare_container_t *q = m->body;
    msg_set_str(&q->container_id, c->id);
    msg_set_str(&q->bundle, b->bundle);
    msg_set_str(&q->spec, b->spec);
    if (request(rt, RES_ACTOR_NAME, &m, RES_TIMEOUT_MS, on_res_container, op) < 0) {
        err_make(&err, EIO, "cannot reach the resources actor");
        create_refused(op, &err, false);
    }
}

static void on_create(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    msg_rt_create_t *b = (*m)->body;
    if (!persist_id_valid(b->id)) {
        actor_reply_error(a, *m, EINVAL, "invalid container ID format");
        return;
    }
    if (find(rt, b->id)) {
        actor_reply_error(a, *m, EEXIST, "container with given ID already exists");
        return;
    }
    create_container(rt, m);
}

/* ---- simple agent-backed operations ------------------------------------------------ */

static struct ctr *need(struct rt *rt, actor_t *a, const msg_t *req, const char *id)
{
    struct ctr *c = find(rt, id);
    if (!c)
        actor_reply_error(a, req, ENOENT, "container does not exist");
    return c;
}

/* ---- a transition whose state could not be written ---------------------------------
 * The file still holds the state before the operation: make the container
 * match it again, then fail the operation.  start is undone by killing the
 * container (its exit makes it `stopped`, and `husk state` says so once the
 * proxy is gone); pause by resuming, resume by pausing.  When the undo fails
 * too, the state in memory stays the truth and the background retry writes
 * it as soon as the disk takes it. */

static void on_undone(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    struct ctr *c = op->c;
    rt_container_state_t before = (rt_container_state_t)op->step;
    const char *how = before == C_CREATED ? "killed" : before == C_RUNNING ? "resumed" : "paused";
    if ((*reply)->status) {
        actor_reply_error(a, op->req, EIO, "%s; undoing it failed too: %s",
                          op->errtext ? op->errtext : "save state",
                          (*reply)->status_text ? (*reply)->status_text : "failed");
        op_free(op);
        return;
    }
    if (before != C_CREATED) {
        /* paused or running again: the file already says so (or will,
         * once the persist actor's retry of this record goes through) */
        set_state(op->rt, c, before);
    }
    actor_reply_error(a, op->req, EIO, "%s: the container was %s", op->errtext, how);
    op_free(op);
}

static void undo_transition(struct op *op, rt_container_state_t before, const err_t *why)
{
    struct rt *rt = op->rt;
    struct ctr *c = op->c;
    free(op->errtext);
    if (asprintf(&op->errtext, "container %s is %s but its state could not be saved (%s)", c->id,
                 c_name(c->state), err_str(why)) < 0)
        abort();
    log_error("%s: undoing the %s", op->errtext, msg_type_name(op->req->type));
    op->step = (int)before;
    msg_t *m;
    if (before == C_CREATED) {
        m = msg_new(MSG_AGENT_SIGNAL_PROCESS);
        msg_agent_signal_process_t *s = m->body;
        msg_set_str(&s->container_id, c->id);
        msg_set_str(&s->exec_id, "");
        s->signal = SIGKILL;
        s->all = true;
    } else if (before == C_RUNNING) {
        m = msg_new(MSG_AGENT_RESUME_CONTAINER);
        msg_set_str(&((msg_agent_resume_container_t *)m->body)->container_id, c->id);
    } else {
        m = msg_new(MSG_AGENT_PAUSE_CONTAINER);
        msg_set_str(&((msg_agent_pause_container_t *)m->body)->container_id, c->id);
    }
    if (request(rt, "agent", &m, AGENT_TIMEOUT_MS, on_undone, op) < 0) {
        actor_reply_error(rt->self, op->req, EIO, "%s; undoing it failed too: cannot reach the agent",
                          op->errtext);
        op_free(op);
    }
}

static void poststart_done(struct op *op, int result, err_t *err)
{
    reply_ok(op->rt->self, op->req, op->c->id);
    op_free(op);
}

static void on_running_saved(struct op *op, const err_t *why)
{
    if (why) {
        undo_transition(op, (rt_container_state_t)op->before, why);
        return;
    }
    static const enum oci_hook_kind post[] = {OCI_HOOK_POSTSTART};
    run_hooks(op, post, 1, "running", poststart_done);
}

static void on_started(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    if ((*reply)->status) {
        reply_from(a, op->req, *reply, "start container");
        op_free(op);
        return;
    }
    rt_container_state_t next;
    op->before = (int)op->c->state;
    if (rt_container_next(op->c->state, RT_CT_EV_START, op->c->id, &next, NULL) == 0)
        set_state_then(op, next, on_running_saved);
    else
        on_running_saved(op, NULL);
}

static void start_hooks_done(struct op *op, int result, err_t *err)
{
    if (result < 0) {
        actor_reply_error(op->rt->self, op->req, EIO, "%s", err_str(err));
        op_free(op);
        return;
    }
    msg_t *r = msg_new(MSG_AGENT_START_CONTAINER);
    msg_set_str(&((msg_agent_start_container_t *)r->body)->container_id, op->c->id);
    if (request(op->rt, "agent", &r, AGENT_QUICK_MS, on_started, op) < 0) {
        actor_reply_error(op->rt->self, op->req, EIO, "cannot reach the agent actor");
        op_free(op);
    }
}

static void on_start(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    struct ctr *c = need(rt, a, *m, ((msg_rt_start_t *)(*m)->body)->id);
    if (!c)
        return;
    if (!ct_allowed(a, *m, c, RT_CT_EV_START, NULL))
        return;
    struct op *op = op_new(rt, m, c);
    static const enum oci_hook_kind pre[] = {OCI_HOOK_START_CONTAINER};
    run_hooks(op, pre, 1, "created", start_hooks_done);
}

static void on_simple_saved(struct op *op, const err_t *why)
{
    if (why) {
        undo_transition(op, (rt_container_state_t)op->before, why);
        return;
    }
    reply_ok(op->rt->self, op->req, op->c->id);
    op_free(op);
}

/* Moves to op->step's state (on disk too), then replies ok (or the
 * failure) to op->req. */
static void on_simple(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    if ((*reply)->status) {
        reply_from(a, op->req, *reply, msg_type_name(op->req->type));
    } else {
        if (op->step >= 0 && op->c) {
            op->before = (int)op->c->state;
            set_state_then(op, (rt_container_state_t)op->step, on_simple_saved);
            return;
        }
        reply_ok(a, op->req, op->c ? op->c->id : "");
    }
    op_free(op);
}

static void forward(struct rt *rt, msg_t **req, struct ctr *c, msg_t **agent_msg, int next_state)
{
    struct op *op = op_new(rt, req, c);
    op->step = next_state;
    if (request(rt, "agent", agent_msg, AGENT_QUICK_MS, on_simple, op) < 0) {
        actor_reply_error(rt->self, op->req, EIO, "cannot reach the agent actor");
        op_free(op);
    }
}

static void on_kill(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    msg_rt_kill_t *b = (*m)->body;
    struct ctr *c = need(rt, a, *m, b->id);
    if (!c)
        return;
    if (!ct_allowed(a, *m, c, RT_CT_EV_KILL, NULL))
        return;
    if (rt->sb != SB_READY) {
        actor_reply_error(a, *m, ESRCH, "container not running");
        return;
    }
    if (b->signal == 0 || b->signal >= 65) {
        actor_reply_error(a, *m, EINVAL, "invalid signal %llu", (unsigned long long)b->signal);
        return;
    }
    msg_t *r = msg_new(MSG_AGENT_SIGNAL_PROCESS);
    msg_agent_signal_process_t *s = r->body;
    msg_set_str(&s->container_id, c->id);
    msg_set_str(&s->exec_id, b->exec_id);
    s->signal = b->signal;
    s->all = b->all;
    forward(rt, m, c, &r, -1);
}

/* rt.pause / rt.resume: the state machine's event, then the agent's
 * request (both bodies are just the container id). */
static void pause_or_resume(struct rt *rt, actor_t *a, msg_t **m, const char *id, bool pause)
{
    struct ctr *c = need(rt, a, *m, id);
    if (!c)
        return;
    rt_container_state_t next;
    if (!ct_allowed(a, *m, c, pause ? RT_CT_EV_PAUSE : RT_CT_EV_RESUME, &next))
        return;
    msg_t *r = msg_new(pause ? MSG_AGENT_PAUSE_CONTAINER : MSG_AGENT_RESUME_CONTAINER);
    if (pause)
        msg_set_str(&((msg_agent_pause_container_t *)r->body)->container_id, c->id);
    else
        msg_set_str(&((msg_agent_resume_container_t *)r->body)->container_id, c->id);
    forward(rt, m, c, &r, (int)next);
}

static void on_pause(actor_t *a, msg_t **m, void *state)
{
    pause_or_resume(state, a, m, ((msg_rt_pause_t *)(*m)->body)->id, true);
}

static void on_resume(actor_t *a, msg_t **m, void *state)
{
    pause_or_resume(state, a, m, ((msg_rt_resume_t *)(*m)->body)->id, false);
}

static void on_update(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    msg_rt_update_t *b = (*m)->body;
    struct ctr *c = need(rt, a, *m, b->id);
    if (!c)
        return;
    if (c->state != C_RUNNING && c->state != C_PAUSED && c->state != C_CREATED) {
        actor_reply_error(a, *m, ESRCH, "container not running");
        return;
    }
    msg_t *r = msg_new(MSG_AGENT_UPDATE_CONTAINER);
    msg_set_str(&((msg_agent_update_container_t *)r->body)->container_id, c->id);
    msg_set_str(&((msg_agent_update_container_t *)r->body)->resources, b->resources);
    forward(rt, m, c, &r, -1);
}

static void on_exec_started(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    msg_rt_exec_t *b = op->req->body;
    if ((*reply)->status) {
        reply_from(a, op->req, *reply, "exec failed");
    } else {
        pwatch_add(op->rt, op->c->id, b->exec_id, (pid_t)b->proxy_pid);
        reply_ok(a, op->req, op->c->id);
    }
    op_free(op);
}

static void on_exec(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    msg_rt_exec_t *b = (*m)->body;
    struct ctr *c = need(rt, a, *m, b->id);
    if (!c)
        return;
    if (!ct_allowed(a, *m, c, RT_CT_EV_EXEC, NULL))
        return;
    if (!persist_id_valid(b->exec_id)) {
        actor_reply_error(a, *m, EINVAL, "invalid exec id `%s`", b->exec_id);
        return;
    }
    msg_t *r = msg_new(MSG_AGENT_EXEC_PROCESS);
    msg_agent_exec_process_t *e = r->body;
    msg_set_str(&e->container_id, c->id);
    msg_set_str(&e->exec_id, b->exec_id);
    msg_set_str(&e->process, b->process);
    e->stdin = true;
    struct op *op = op_new(rt, m, c);
    if (request(rt, "agent", &r, AGENT_QUICK_MS, on_exec_started, op) < 0) {
        actor_reply_error(a, op->req, EIO, "cannot reach the agent actor");
        op_free(op);
    }
}

static void on_processes(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    msg_agent_processes_t *p = MSG_BODY(*reply, AGENT_PROCESSES, agent_processes);
    if ((*reply)->status || !p) {
        reply_from(a, op->req, *reply, "ps");
    } else {
        msg_t *r = msg_new_reply(op->req, MSG_RT_PROCESSES);
        msg_rt_processes_t *b = r->body;
        msg_set_str(&b->id, op->c->id);
        b->pids = p->pids;
        p->pids.v = NULL;
        p->pids.n = 0;
        actor_reply(a, op->req, &r);
    }
    op_free(op);
}

static void on_ps(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    struct ctr *c = need(rt, a, *m, ((msg_rt_ps_t *)(*m)->body)->id);
    if (!c)
        return;
    if (c->state == C_STOPPED || rt->sb != SB_READY) {
        msg_t *r = msg_new_reply(*m, MSG_RT_PROCESSES);
        msg_set_str(&((msg_rt_processes_t *)r->body)->id, c->id);
        actor_reply(a, *m, &r);
        return;
    }
    msg_t *r = msg_new(MSG_AGENT_LIST_PROCESSES);
    msg_set_str(&((msg_agent_list_processes_t *)r->body)->container_id, c->id);
    struct op *op = op_new(rt, m, c);
    if (request(rt, "agent", &r, AGENT_QUICK_MS, on_processes, op) < 0) {
        actor_reply_error(a, op->req, EIO, "cannot reach the agent actor");
        op_free(op);
    }
}

static void on_stats_reply(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    msg_agent_stats_t *s = MSG_BODY(*reply, AGENT_STATS, agent_stats);
    if ((*reply)->status || !s) {
        reply_from(a, op->req, *reply, "stats");
        op_free(op);
        return;
    }
    /* runc's `events --stats` data object, filled from cgroup v2 numbers */
    json_t *d = json_pack(
        "{s:{s:{s:I,s:I,s:I}},s:{s:{s:I,s:I},s:I},s:{s:I},s:{s:[{s:s,s:I},{s:s,s:I}]}}", "cpu",
        "usage", "total", (json_int_t)(s->cpu_usage_usec * 1000), "user",
        (json_int_t)(s->cpu_user_usec * 1000), "kernel", (json_int_t)(s->cpu_system_usec * 1000),
        "memory", "usage", "usage", (json_int_t)s->memory_current, "limit",
        (json_int_t)s->memory_max, "cache", (json_int_t)0, "pids", "current",
        (json_int_t)s->pids_current, "blkio", "ioServiceBytesRecursive", "op", "Read", "value",
        (json_int_t)s->io_read_bytes, "op", "Write", "value", (json_int_t)s->io_write_bytes);
    char *text = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    msg_t *r = msg_new_reply(op->req, MSG_RT_STATS);
    msg_set_str(&((msg_rt_stats_t *)r->body)->id, op->c->id);
    msg_set_str(&((msg_rt_stats_t *)r->body)->data, text ? text : "{}");
    free(text);
    actor_reply(a, op->req, &r);
    op_free(op);
}

static void on_stats(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    struct ctr *c = need(rt, a, *m, ((msg_rt_stats_get_t *)(*m)->body)->id);
    if (!c)
        return;
    if (c->state == C_STOPPED || rt->sb != SB_READY) {
        actor_reply_error(a, *m, ESRCH, "container with id %s is not running", c->id);
        return;
    }
    msg_t *r = msg_new(MSG_AGENT_STATS_CONTAINER);
    msg_set_str(&((msg_agent_stats_container_t *)r->body)->container_id, c->id);
    struct op *op = op_new(rt, m, c);
    if (request(rt, "agent", &r, AGENT_QUICK_MS, on_stats_reply, op) < 0) {
        actor_reply_error(a, op->req, EIO, "cannot reach the agent actor");
        op_free(op);
    }
}

/* ---- exits and waits ------------------------------------------------------------------- */

static void answer_wait(actor_t *a, const msg_t *req, const char *cid, const char *exec_id,
                        int64_t status, uint64_t at)
{
    msg_t *r = msg_new_reply(req, MSG_RT_EXITED);
    msg_rt_exited_t *b = r->body;
    msg_set_str(&b->id, cid);
    msg_set_str(&b->exec_id, exec_id);
    b->status = status;
    b->exited_at_ns = at;
    actor_reply(a, req, &r);
}

static void on_wait(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    msg_rt_wait_t *b = (*m)->body;
    struct ctr *c = need(rt, a, *m, b->id);
    if (!c)
        return;
    if (!b->exec_id[0] && c->exited && !c->stop_unsaved) {
        answer_wait(a, *m, c->id, "", c->exit_status, c->exited_at_ns);
        return;
    }
    for (struct exited_exec *e = c->execs; e; e = e->next)
        if (!strcmp(e->exec_id, b->exec_id)) {
            answer_wait(a, *m, c->id, e->exec_id, e->status, e->at_ns);
            return;
        }
    struct waiter *w = calloc(1, sizeof *w);
    snprintf(w->cid, sizeof w->cid, "%s", c->id);
    snprintf(w->exec_id, sizeof w->exec_id, "%s", b->exec_id);
    w->req = *m;
    *m = NULL;
    w->next = rt->waiters;
    rt->waiters = w;
}

static void announce_exit(struct rt *rt, const char *cid, const char *exec_id, int64_t status,
                          uint64_t at);

/* The container's stop is written (or failed, and the persist actor
 * retries it): now its waiters and subscribers learn of the exit. */
static void on_stopped_saved(struct op *op, const err_t *why)
{
    struct rt *rt = op->rt;
    struct ctr *c = find(rt, op->cid);
    if (c)
        c->stop_unsaved = false;
    msg_t *m = msg_new(MSG_RT_STATE_CHANGED);
    msg_set_str(&((msg_rt_state_changed_t *)m->body)->id, op->cid);
    msg_set_str(&((msg_rt_state_changed_t *)m->body)->state, c_name(C_STOPPED));
    err_t err = ERR_INIT;
    actor_publish(rt->self, &m, &err);
    err_clear(&err);
    announce_exit(rt, op->cid, "", op->status, op->at);
    op_free(op);
}

static void process_exited(struct rt *rt, const char *cid, const char *exec_id, int64_t status)
{
    struct ctr *c = find(rt, cid);
    if (!c)
        return;
    uint64_t at = clock_real_ns();
    if (!exec_id[0]) {
        if (c->exited)
            return;
        c->exited = true;
        c->exit_status = status;
        c->exited_at_ns = at;
        free(c->exited_at);
        c->exited_at = persist_time_now();
        log_info("container %s exited with status %lld", cid, (long long)status);
        /* whoever learns of the exit finds `stopped` on disk */
        c->state = C_STOPPED;
        c->stop_unsaved = true;
        struct op *op = op_new(rt, NULL, NULL);
        snprintf(op->cid, sizeof op->cid, "%s", cid);
        op->status = status;
        op->at = at;
        save_container_then(rt, c, op, on_stopped_saved);
        return;
    }
    struct exited_exec *e = calloc(1, sizeof *e);
    snprintf(e->exec_id, sizeof e->exec_id, "%s", exec_id);
    e->status = status;
    e->at_ns = at;
    e->next = c->execs;
    c->execs = e;
    announce_exit(rt, cid, exec_id, status, at);
}

/* Answers the waiters of the process and publishes rt.exited. */
static void announce_exit(struct rt *rt, const char *cid, const char *exec_id, int64_t status,
                          uint64_t at)
{
    for (struct waiter **pp = &rt->waiters; *pp;) {
        struct waiter *w = *pp;
        if (!strcmp(w->cid, cid) && !strcmp(w->exec_id, exec_id)) {
            answer_wait(rt->self, w->req, cid, exec_id, status, at);
            *pp = w->next;
            msg_destroy(&w->req);
            free(w);
            continue;
        }
        pp = &w->next;
    }
    msg_t *ev = msg_new(MSG_RT_EXITED);
    msg_rt_exited_t *b = ev->body;
    msg_set_str(&b->id, cid);
    msg_set_str(&b->exec_id, exec_id);
    b->status = status;
    b->exited_at_ns = at;
    err_t err = ERR_INIT;
    actor_publish(rt->self, &ev, &err);
    err_clear(&err);
}

static void on_agent_exited(actor_t *a, msg_t **m, void *state)
{
    msg_agent_exited_t *b = (*m)->body;
    process_exited(state, b->container_id, b->exec_id, b->status);
}

static void on_agent_oom(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    msg_agent_oom_t *b = (*m)->body;
    if (!find(rt, b->container_id))
        return;
    msg_t *ev = msg_new(MSG_RT_OOM);
    msg_set_str(&((msg_rt_oom_t *)ev->body)->id, b->container_id);
    err_t err = ERR_INIT;
    actor_publish(a, &ev, &err);
    err_clear(&err);
}

/* The VM or the agent is gone: every process is gone with it. */
static void sandbox_lost(struct rt *rt, const char *why)
{
    if (rt->sb == SB_STOPPING || rt->sb == SB_STOPPED)
        return;
    log_error("sandbox %s lost: %s", rt->sandbox_id, why);
    bool booting = rt->sb == SB_BOOTING;
    if (!booting)
        sb_move(rt, rt->sb == SB_READY ? RT_SB_EV_VM_EXITED : RT_SB_EV_FAIL);
    save_sandbox(rt);
    if (booting)
        boot_failed(rt, why);
    for (struct ctr *c = rt->ctrs; c; c = c->next) {
        if (c->state != C_STOPPED)
            process_exited(rt, c->id, "", 255);
    }
    /* pending exec waits: nobody will report them any more (the waits
     * of the containers themselves are answered once `stopped` is
     * written) */
    for (struct waiter **pp = &rt->waiters; *pp;) {
        struct waiter *w = *pp;
        struct ctr *c = w->exec_id[0] ? NULL : find(rt, w->cid);
        if (c && c->exited) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        answer_wait(rt->self, w->req, w->cid, w->exec_id, 255, clock_real_ns());
        msg_destroy(&w->req);
        free(w);
    }
}

static void on_agent_lost(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    char why[300];
    snprintf(why, sizeof why, "agent channel lost: %s", ((msg_agent_lost_t *)(*m)->body)->reason);
    sandbox_lost(rt, why);
}

static void on_hv_exited(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    msg_hv_exited_t *b = (*m)->body;
    rt->vmm_pid = 0;
    if (rt->sb == SB_STOPPING || rt->sb == SB_STOPPED)
        return;
    char why[300];
    snprintf(why, sizeof why, "VM exited: %s", b->reason);
    sandbox_lost(rt, why);
}

static void on_vm_stopped_after_res_loss(actor_t *a, msg_t **reply, void *arg)
{
    struct rt *rt = arg;
    if ((*reply)->status) {
        log_warn("stop VM: %s", (*reply)->status_text ? (*reply)->status_text : "");
        sandbox_lost(rt, "actor resources down, and the VM does not stop");
    }
}

/* The resources actor is gone, and with it (its fini) the share, taps and
 * cgroup the VM uses: the VM stops now rather than run on without them
 * (its hv.exited then loses the sandbox, as for any VM exit, and tells the
 * proxies first).  False when there is no VM to stop. */
static bool stop_vm_after_res_loss(struct rt *rt, const char *why)
{
    if (!rt->backend[0] || (rt->sb != SB_READY && rt->sb != SB_BOOTING))
        return false;
    log_error("sandbox %s: %s: stopping the VM", rt->sandbox_id, why);
    msg_t *m = msg_new(MSG_HV_STOP);
    ((msg_hv_stop_t *)m->body)->timeout_ms = 5000;
    return request(rt, HV_ACTOR_NAME, &m, 15000, on_vm_stopped_after_res_loss, rt) == 0;
}

/* A peer actor died (supervisor's actor.down): its requests already failed
 * (actors/actor.c); without the hypervisor or the agent actor nothing in
 * the sandbox can be reached, so it is lost as if the VM had exited. */
static void on_actor_down(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    msg_actor_down_t *b = (*m)->body;
    if (strcmp(b->name, HV_ACTOR_NAME) && strcmp(b->name, "agent") &&
        strcmp(b->name, RES_ACTOR_NAME))
        return;
    char why[MSG_SMALL * 2 + 32];
    snprintf(why, sizeof why, "actor %s down: %s", b->name, b->reason);
    if (!strcmp(b->name, RES_ACTOR_NAME) && stop_vm_after_res_loss(rt, why))
        return; /* its hv.exited loses the sandbox */
    sandbox_lost(rt, why);
}

/* Fault injection (docs/faults.md): only ever sent by the broker when an
 * effect rule fires. */
static void on_fault(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    msg_fault_inject_t *b = (*m)->body;
    if (strcmp((*m)->from, "bus")) {
        actor_reply_error(a, *m, EPERM, "fault.inject is the broker's");
        return;
    }
    if (!strcmp(b->action, "kill-vmm")) {
        log_warn("fault: SIGKILL of the VMM (pid %d)", (int)rt->vmm_pid);
        if (rt->vmm_pid > 0)
            kill(rt->vmm_pid, SIGKILL);
    } else { /* enospc and eio are the persist actor's */
        actor_reply_error(a, *m, EINVAL, "runtime: no fault '%s'", b->action);
        return;
    }
    msg_t *ok = msg_new_reply(*m, MSG_AGENT_OK);
    if (ok)
        actor_reply(a, *m, &ok);
}

/* ---- delete ---------------------------------------------------------------------------- */

static void delete_finish2(struct op *op, int result, err_t *e);
static void delete_finish3(struct op *op);

static void on_deleted_saved(struct op *op, const err_t *why)
{
    reply_ok(op->rt->self, op->req, ((msg_rt_delete_t *)op->req->body)->id);
    op_free(op);
}

/* poststop hooks run once the container is gone, before its state goes */
static void delete_finish(struct op *op)
{
    static const enum oci_hook_kind post[] = {OCI_HOOK_POSTSTOP};
    run_hooks(op, post, 1, "stopped", delete_finish2);
}

static void delete_finish2(struct op *op, int result, err_t *e)
{
    struct rt *rt = op->rt;
    struct ctr *c = op->c;
    remove_container_state(rt, c->id, NULL, NULL); /* a failure is logged, and ignored */
    for (struct waiter **pp = &rt->waiters; *pp;) {
        struct waiter *w = *pp;
        if (!strcmp(w->cid, c->id)) {
            answer_wait(rt->self, w->req, w->cid, w->exec_id, 255, clock_real_ns());
            *pp = w->next;
            msg_destroy(&w->req);
            free(w);
            continue;
        }
        pp = &w->next;
    }
    pwatch_drop(rt, c->id);
    release_share_then(op, delete_finish3);
}

/* the share is gone: the container goes from memory, and the sandbox with
 * the last one */
static void delete_finish3(struct op *op)
{
    struct rt *rt = op->rt;
    struct ctr *c = op->c;
    err_t err = ERR_INIT;
    log_info("container %s deleted", c->id);
    {
        /* proxies of containers that never ran wait for this */
        msg_t *ev = msg_new(MSG_RT_STATE_CHANGED);
        msg_set_str(&((msg_rt_state_changed_t *)ev->body)->id, c->id);
        msg_set_str(&((msg_rt_state_changed_t *)ev->body)->state, "deleted");
        actor_publish(rt->self, &ev, &err);
        err_clear(&err);
    }
    unlink_ctr(rt, c);
    ctr_free(c);
    if (!rt->ctrs) {
        /* the last one: the sandbox goes too, and answers the delete */
        shutdown_sandbox(rt, &op->req);
        op_free(op);
        return;
    }
    /* answered once the sandbox's list without it is written (and so
     * after the removal, sent before it) */
    op->c = NULL;
    save_sandbox_then(rt, op, on_deleted_saved);
}

static void on_removed(actor_t *a, msg_t **reply, void *arg)
{
    struct op *op = arg;
    if ((*reply)->status)
        log_warn("remove %s in the guest: %s, ignoring", op->c->id,
                 (*reply)->status_text ? (*reply)->status_text : "");
    delete_finish(op);
}

static void on_delete(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    msg_rt_delete_t *b = (*m)->body;
    struct ctr *c = need(rt, a, *m, b->id);
    if (!c)
        return;
    if (!ct_allowed(a, *m, c, b->force ? RT_CT_EV_DELETE_FORCE : RT_CT_EV_DELETE, NULL))
        return;
    struct op *op = op_new(rt, m, c);
    if (rt->sb != SB_READY) {
        delete_finish(op);
        return;
    }
    /* remove_container kills what still runs and waits for it */
    msg_t *r = msg_new(MSG_AGENT_REMOVE_CONTAINER);
    msg_set_str(&((msg_agent_remove_container_t *)r->body)->container_id, c->id);
    ((msg_agent_remove_container_t *)r->body)->timeout_ms = REMOVE_TIMEOUT_MS;
    if (request(rt, "agent", &r, REMOVE_TIMEOUT_MS + 5000, on_removed, op) < 0)
        delete_finish(op);
}

static void on_shutdown(actor_t *a, msg_t **m, void *state)
{
    struct rt *rt = state;
    for (struct ctr *c = rt->ctrs; c; c = c->next)
        remove_container_state(rt, c->id, NULL, NULL);
    shutdown_sandbox(rt, m);
}

/* ---- restore (docs/state.md "Restore") -------------------------------------------------
 *
 * A daemon started on an existing state directory (its previous daemon died,
 * its VMM did not) takes the sandbox over: the state on disk (persist.load,
 * load_state), the host resources (restore_resources: res.prepare_sandbox
 * with adopt), the VMM (hv.attach), the agent channel (agent.connect), then
 * the guest's truth (agent.list_containers), reconciled with what was
 * persisted.  Any failure gives up: the VMM is killed, the host resources
 * released, every container written stopped, and the daemon leaves (the
 * next command finds a dead daemon and a dead VMM: stopped, cleanup). */

#define RESTORE_CONNECT_MS 10000

struct restore {
    struct rt *rt;
    pid_t vmm_pid;
    uint64_t vmm_start;
};

static void restore_end(struct rt *rt, bool ok)
{
    if (rt->restored_fd < 0)
        return;
    uint64_t v = ok ? 1 : 2;
    ssize_t w = write(rt->restored_fd, &v, sizeof v);
    (void)w;
    rt->restored_fd = -1;
}

/* Takes the persisted records (persist.loaded) into rt: the one place that
 * reads the state of a restore; rs gets the VMM to attach to. */
static int load_state(struct rt *rt, const msg_persist_loaded_t *b, struct restore *rs, err_t *err)
{
    persist_sandbox_t *sb = NULL;
    persist_container_t **pcs = NULL;
    size_t n = 0;
    int r = persist_sandbox_from_text("persist.loaded", b->sandbox, strlen(b->sandbox),
                                      rt->sandbox_id, &sb, err);
    if (r < 0)
        return r;
    /* known from here: a give-up kills it whatever else is wrong */
    rs->vmm_pid = sb->vmm_pid;
    rs->vmm_start = sb->vmm_start;
    if ((r = persist_containers_from_text("persist.loaded", b->containers, strlen(b->containers),
                                          rt->sandbox_id, &pcs, &n, err)) < 0)
        goto out;
    if (!sb->state || strcmp(sb->state, sb_name(SB_READY))) {
        r = err_make(err, EINVAL, "sandbox %s is %s, only a ready sandbox can be restored",
                     rt->sandbox_id, sb->state ? sb->state : "(no state)");
        goto out;
    }
    if (!sb->hypervisor || !sb->vmm_pid || !sb->agent_socket) {
        r = err_make(err, EINVAL, "sandbox %s: no hypervisor, VMM pid or agent socket recorded",
                     rt->sandbox_id);
        goto out;
    }
    snprintf(rt->backend, sizeof rt->backend, "%s", sb->hypervisor);
    snprintf(rt->agent_socket, sizeof rt->agent_socket, "%s", sb->agent_socket);
    snprintf(rt->netns, sizeof rt->netns, "%s", sb->netns ? sb->netns : "");
    rt->vm = strcmp(rt->backend, "local") != 0;
    taps_clear(rt);
    for (size_t i = 0; i < sb->n_net_taps; i++) { /* the resources actor checks them */
        const char *state = NULL;
        for (size_t k = 0; k < sb->n_net_tap_states && !state; k++)
            if (!strcmp(sb->net_tap_states[k].key, sb->net_taps[i].key))
                state = sb->net_tap_states[k].value;
        taps_add(rt, sb->net_taps[i].key, sb->net_taps[i].value, state);
    }
    free(rt->created);
    rt->created = strdup(sb->created ? sb->created : "");
    for (size_t i = 0; i < n; i++) {
        persist_container_t *pc = pcs[i];
        struct ctr *c = xcalloc(1, sizeof *c);
        snprintf(c->id, sizeof c->id, "%s", pc->id);
        if (rt_container_state_parse(pc->state, &c->state, err) < 0) {
            free(c);
            r = err_wrap(err, "container %s", pc->id);
            goto out;
        }
        c->bundle = pc->bundle ? strdup(pc->bundle) : NULL;
        c->rootfs = pc->rootfs ? strdup(pc->rootfs) : NULL;
        c->pid_file = pc->pid_file ? strdup(pc->pid_file) : NULL;
        c->created = pc->created ? strdup(pc->created) : NULL;
        c->exited_at = pc->exited_at ? strdup(pc->exited_at) : NULL;
        c->proxy_pid = pc->init_pid;
        c->proxy_start = pc->init_start;
        c->console = pc->console;
        c->owner = pc->owner_uid;
        c->exited = pc->exited;
        c->exit_status = pc->exit_status;
        /* the spec (hooks at delete, annotations): the bundle's, if still there */
        char path[PATH_MAX], *text = NULL;
        size_t len = 0;
        snprintf(path, sizeof path, "%s/config.json", c->bundle ? c->bundle : "");
        FILE *f = c->bundle ? fopen(path, "re") : NULL;
        if (f) {
            text = malloc(AGENT_SPEC_MAX + 1);
            len = text ? fread(text, 1, AGENT_SPEC_MAX, f) : 0;
            fclose(f);
        }
        err_t e2 = ERR_INIT;
        if (!text || oci_spec_parse(text, len, &c->spec, &e2) < 0) {
            log_warn("container %s: bundle spec %s unreadable (%s): no hooks at delete", c->id,
                     path, text ? err_str(&e2) : "missing");
            if (!(c->spec = calloc(1, sizeof *c->spec)))
                abort();
        }
        err_clear(&e2);
        free(text);
        c->next = rt->ctrs; /* newest first, as create links them */
        rt->ctrs = c;
    }
    r = 0;
out:
    persist_containers_free(pcs, n);
    persist_sandbox_free(&sb);
    return r;
}

static void restore_give_up(struct restore *rs, const char *why);

static void on_restore_abandoned(struct op *op, const err_t *why)
{
    struct rt *rt = op->rt;
    op_free(op);
    if (why)
        log_error("restore: write the stopped state: %s", err_str(why));
    restore_end(rt, false);
    signal_done(rt);
}

/* The VMM is gone: containers stopped (255) on disk, then the daemon
 * leaves; the state stays for the next command. */
static void restore_abandon2(struct rt *rt)
{
    rt->vmm_pid = 0;
    rt->sb = SB_FAILED;
    for (struct ctr *c = rt->ctrs; c; c = c->next)
        if (c->state != C_STOPPED) {
            c->exited = true;
            c->exit_status = 255;
            c->state = C_STOPPED;
            save_container_then(rt, c, NULL, NULL);
        }
    /* the persist actor writes in order: this answer means all is on disk */
    save_sandbox_then(rt, op_new(rt, NULL, NULL), on_restore_abandoned);
}

static void on_restore_res_released(actor_t *a, msg_t **reply, void *arg)
{
    if ((*reply)->status)
        log_error("restore: release the sandbox's resources: %s",
                  (*reply)->status_text ? (*reply)->status_text : "failed");
    restore_abandon2(arg);
}

/* Host resources released (share, taps, cgroups), then abandon2. */
static void restore_abandon(struct rt *rt)
{
    hv_local_cleanup(rt->sandbox_id); /* a local agent killed without us */
    if (rt->res_held) {
        rt->res_held = false;
        msg_t *m = msg_new(MSG_RES_RELEASE_SANDBOX);
        ((msg_res_release_sandbox_t *)m->body)->timeout_ms = 2000;
        if (request(rt, RES_ACTOR_NAME, &m, RES_TIMEOUT_MS, on_restore_res_released, rt) == 0)
            return;
    }
    restore_abandon2(rt);
}

static void on_restore_vm_stopped(actor_t *a, msg_t **reply, void *arg)
{
    restore_abandon(arg);
}

static void restore_give_up(struct restore *rs, const char *why)
{
    struct rt *rt = rs->rt;
    pid_t vmm_pid = rs->vmm_pid;
    uint64_t vmm_start = rs->vmm_start;
    free(rs);
    log_error("sandbox %s: restore failed: %s; stopping it", rt->sandbox_id, why);
    rt->sb = SB_STOPPING; /* hv.exited / agent.lost of the kill change nothing */
    if (rt->restore_attached) {
        msg_t *m = msg_new(MSG_HV_STOP);
        ((msg_hv_stop_t *)m->body)->timeout_ms = 2000;
        if (request(rt, HV_ACTOR_NAME, &m, 10000, on_restore_vm_stopped, rt) == 0)
            return;
    } else if (vmm_pid > 0 && persist_pid_alive(vmm_pid, vmm_start)) {
        /* not attached: killed here, through a pidfd (no pid reuse race) */
        int fd = (int)syscall(SYS_pidfd_open, vmm_pid, 0);
        if (fd >= 0 && persist_pid_alive(vmm_pid, vmm_start)) {
            syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
            struct pollfd p = {fd, POLLIN, 0};
            while (poll(&p, 1, 5000) < 0 && errno == EINTR)
                ;
        }
        if (fd >= 0)
            close(fd);
    }
    restore_abandon(rt);
}

/* Checks the guest's list (untrusted: every vector the same length, known
 * state names, bounded numbers, valid ids) and applies it: the guest's
 * state wins for what it knows; a container it does not know, or whose
 * init exited, is stopped (with its status); exited execs answer their
 * waits.  Entries for ids the host does not know are refused (ignored,
 * with a warning).  Returns < 0 with err when the list is malformed. */
static int restore_reconcile(struct rt *rt, const msg_agent_containers_t *b, err_t *err)
{
    size_t n = b->container_ids.n;
    if (b->exec_ids.n != n || b->states.n != n || b->pids.n != n || b->exited.n != n ||
        b->statuses.n != n)
        return err_make(err, EBADMSG, "agent.containers: vectors of different lengths");
    for (size_t i = 0; i < n; i++) {
        rt_container_state_t st;
        err_t e2 = ERR_INIT;
        if (!persist_id_valid(b->container_ids.v[i]) ||
            (b->exec_ids.v[i][0] && !persist_id_valid(b->exec_ids.v[i])))
            return err_make(err, EBADMSG, "agent.containers: entry %zu: invalid id", i);
        if (rt_container_state_parse(b->states.v[i], &st, &e2) < 0 || st == C_CREATING) {
            err_clear(&e2);
            return err_make(err, EBADMSG, "agent.containers: entry %zu: bad state `%.32s`", i,
                            b->states.v[i]);
        }
        if (b->exited.v[i] > 1 || b->statuses.v[i] > 255 || b->pids.v[i] > 4194304)
            return err_make(err, EBADMSG, "agent.containers: entry %zu: value out of range", i);
    }
    for (size_t i = 0; i < n; i++)
        if (!find(rt, b->container_ids.v[i]))
            log_warn("restore: the guest reports container %.64s, unknown here: refused",
                     b->container_ids.v[i]);
    for (struct ctr *c = rt->ctrs; c; c = c->next) {
        bool known = false;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(b->container_ids.v[i], c->id))
                continue;
            const char *eid = b->exec_ids.v[i];
            if (eid[0]) {
                bool seen = false;
                for (struct exited_exec *e = c->execs; e; e = e->next)
                    seen |= !strcmp(e->exec_id, eid);
                if (b->exited.v[i] && !seen)
                    process_exited(rt, c->id, eid, (int64_t)b->statuses.v[i]);
                continue;
            }
            known = true;
            if (c->state == C_STOPPED)
                continue;
            rt_container_state_t gs;
            rt_container_state_parse(b->states.v[i], &gs, NULL);
            if (b->exited.v[i] || gs == C_STOPPED)
                process_exited(rt, c->id, "", b->exited.v[i] ? (int64_t)b->statuses.v[i] : 255);
            else if (gs != c->state)
                set_state(rt, c, gs);
        }
        if (!known && c->state != C_STOPPED) {
            log_warn("restore: container %s is unknown to the guest: stopped", c->id);
            process_exited(rt, c->id, "", 255);
        }
    }
    return 0;
}

static void on_restore_saved(struct op *op, const err_t *why)
{
    struct rt *rt = op->rt;
    op_free(op);
    if (why)
        log_warn("restore: save the sandbox state: %s (the persist actor retries)", err_str(why));
    restore_end(rt, true);
}

static void on_restore_listed(actor_t *a, msg_t **reply, void *arg)
{
    struct restore *rs = arg;
    struct rt *rt = rs->rt;
    msg_agent_containers_t *b = MSG_BODY(*reply, AGENT_CONTAINERS, agent_containers);
    err_t err = ERR_INIT;
    if ((*reply)->status || !b) {
        char why[MSG_ITEM_MAX + 64];
        snprintf(why, sizeof why, "agent.list_containers: %s",
                 (*reply)->status_text ? (*reply)->status_text : "no answer");
        restore_give_up(rs, why);
        return;
    }
    rt->sb = SB_READY; /* the persisted state, resumed */
    if (restore_reconcile(rt, b, &err) < 0) {
        rt->sb = SB_NEW;
        restore_give_up(rs, err_str(&err));
        err_clear(&err);
        return;
    }
    free(rs);
    for (struct ctr *c = rt->ctrs; c; c = c->next) {
        if (c->state == C_STOPPED || c->state == C_CREATING)
            continue;
        if (c->proxy_pid > 0 && persist_pid_alive(c->proxy_pid, c->proxy_start)) {
            pwatch_add(rt, c->id, "", c->proxy_pid);
        } else if (c->proxy_pid > 0) {
            /* its host process went while no daemon watched: as runc's
             * container whose init is gone, it is killed */
            log_info("restore: the host process of %s is gone: killing it", c->id);
            msg_t *m = msg_new(MSG_AGENT_SIGNAL_PROCESS);
            msg_agent_signal_process_t *sp = m->body;
            msg_set_str(&sp->container_id, c->id);
            sp->signal = SIGKILL;
            sp->all = true;
            request(rt, "agent", &m, AGENT_QUICK_MS, on_kill_done, NULL);
        }
    }
    log_info("sandbox %s restored (%s, VMM pid %d)", rt->sandbox_id, rt->backend, (int)rt->vmm_pid);
    /* this daemon's pid: readers find it alive; serve once it is on disk */
    save_sandbox_then(rt, op_new(rt, NULL, NULL), on_restore_saved);
}

static void on_restore_connected(actor_t *a, msg_t **reply, void *arg)
{
    struct restore *rs = arg;
    struct rt *rt = rs->rt;
    if ((*reply)->status) {
        char why[PATH_MAX + 1024];
        snprintf(why, sizeof why, "connect to the agent at %s: %s", rt->agent_socket,
                 (*reply)->status_text ? (*reply)->status_text : "failed");
        restore_give_up(rs, why);
        return;
    }
    msg_t *m = msg_new(MSG_AGENT_LIST_CONTAINERS);
    if (request(rt, "agent", &m, AGENT_QUICK_MS, on_restore_listed, rs) < 0)
        restore_give_up(rs, "cannot reach the agent actor");
}

static void on_restore_attached(actor_t *a, msg_t **reply, void *arg)
{
    struct restore *rs = arg;
    struct rt *rt = rs->rt;
    msg_hv_started_t *b = MSG_BODY(*reply, HV_STARTED, hv_started);
    if ((*reply)->status || !b) {
        char why[MSG_ITEM_MAX + 64];
        snprintf(why, sizeof why, "%s", (*reply)->status_text ? (*reply)->status_text : "failed");
        restore_give_up(rs, why);
        return;
    }
    rt->restore_attached = true;
    rt->vmm_pid = rs->vmm_pid;
    msg_t *m = msg_new(MSG_AGENT_CONNECT);
    msg_set_str(&((msg_agent_connect_t *)m->body)->socket, rt->agent_socket);
    ((msg_agent_connect_t *)m->body)->timeout_ms = RESTORE_CONNECT_MS;
    if (request(rt, "agent", &m, RESTORE_CONNECT_MS + 5000, on_restore_connected, rs) < 0)
        restore_give_up(rs, "cannot reach the agent actor");
}

static void restore_attach(struct restore *rs)
{
    struct rt *rt = rs->rt;
    msg_t *m = msg_new(MSG_HV_ATTACH);
    msg_hv_attach_t *b = m->body;
    msg_set_str(&b->sandbox_id, rt->sandbox_id);
    msg_set_str(&b->dir, rt->dir);
    msg_set_str(&b->backend, rt->backend);
    msg_set_str(&b->netns, rt->netns);
    b->pid = (uint64_t)rs->vmm_pid;
    b->pid_start = rs->vmm_start;
    if (request(rt, HV_ACTOR_NAME, &m, HV_TIMEOUT_MS, on_restore_attached, rs) < 0)
        restore_give_up(rs, "cannot reach the hypervisor actor");
}

static void on_restore_res(actor_t *a, msg_t **reply, void *arg)
{
    struct restore *rs = arg;
    msg_res_sandbox_ready_t *r = MSG_BODY(*reply, RES_SANDBOX_READY, res_sandbox_ready);
    if ((*reply)->status || !r) {
        char why[MSG_ITEM_MAX + 64];
        snprintf(why, sizeof why, "adopt the host resources: %s",
                 (*reply)->status_text ? (*reply)->status_text : "unexpected answer");
        restore_give_up(rs, why);
        return;
    }
    for (size_t i = 0; i < r->warnings.n; i++)
        log_warn("resources: %s", r->warnings.v[i]);
    restore_attach(rs);
}

/* Has the resources actor adopt what the boot set up (cgroup by name, the
 * share under the sandbox dir, the taps recorded in sandbox.json), so that
 * a later teardown releases it. */
static void restore_resources(struct restore *rs)
{
    struct rt *rt = rs->rt;
    msg_t *m = msg_new(MSG_RES_PREPARE_SANDBOX);
    msg_res_prepare_sandbox_t *b = m->body;
    msg_set_str(&b->sandbox_id, rt->sandbox_id);
    msg_set_str(&b->root, rt->root);
    msg_set_str(&b->dir, rt->dir);
    b->vm = rt->vm;
    b->adopt = true;
    if (rt->vm && rt->netns[0]) {
        msg_set_str(&b->netns, rt->netns);
        bool states = true; /* all or none: the actor pairs them by position */
        for (size_t i = 0; i < rt->n_taps; i++)
            states = states && rt->taps[i].state;
        for (size_t i = 0; i < rt->n_taps; i++) {
            msg_strv_push(&b->taps, rt->taps[i].tap);
            msg_strv_push(&b->macs, rt->taps[i].mac);
            if (states)
                msg_strv_push(&b->states, rt->taps[i].state);
        }
    }
    rt->res_held = true;
    if (request(rt, RES_ACTOR_NAME, &m, RES_TIMEOUT_MS, on_restore_res, rs) < 0)
        restore_give_up(rs, "cannot reach the resources actor");
}

static void on_restore_loaded(actor_t *a, msg_t **reply, void *arg)
{
    struct restore *rs = arg;
    struct rt *rt = rs->rt;
    msg_persist_loaded_t *b = MSG_BODY(*reply, PERSIST_LOADED, persist_loaded);
    err_t err = ERR_INIT;
    if ((*reply)->status || !b) {
        err_make(&err, EIO, "%s", (*reply)->status_text ? (*reply)->status_text : "no state");
    } else if (load_state(rt, b, rs, &err) == 0) {
        log_info("restoring sandbox %s: %s VMM pid %d", rt->sandbox_id, rt->backend,
                 (int)rs->vmm_pid);
        restore_resources(rs);
        return;
    }
    char why[1024];
    snprintf(why, sizeof why, "state: %s", err_str(&err));
    err_clear(&err);
    restore_give_up(rs, why);
}

static void restore_begin(struct rt *rt)
{
    struct restore *rs = xcalloc(1, sizeof *rs);
    rs->rt = rt;
    msg_t *m = msg_new(MSG_PERSIST_LOAD);
    msg_set_str(&((msg_persist_load_t *)m->body)->sandbox_id, rt->sandbox_id);
    if (request(rt, PERSIST_ACTOR_NAME, &m, PERSIST_TIMEOUT_MS, on_restore_loaded, rs) < 0)
        restore_give_up(rs, "cannot reach the persist actor");
}

/* ---- lifecycle ----------------------------------------------------------------------- */

static int init(actor_t *a, void *state, err_t *err)
{
    struct rt *rt = state;
    rt->self = a;
    log_set_sandbox(rt->sandbox_id);
    if (rt->restore) {
        restore_begin(rt);
        return 0;
    }
    rt->created = persist_time_now();
    save_sandbox(rt);
    return 0;
}

static void fini(actor_t *a, void *state)
{
    struct rt *rt = state;
    /* a runtime that ends before the sandbox did (it died) lets the daemon
     * go: its exit stops the VM; state on disk then reads "stopped" */
    if (rt->done_fd >= 0)
        signal_done(rt);
    for (int i = 0; i < rt->nqueued; i++)
        msg_destroy(&rt->queued[i]);
    while (rt->waiters) {
        struct waiter *w = rt->waiters;
        rt->waiters = w->next;
        msg_destroy(&w->req);
        free(w);
    }
    while (rt->ctrs) {
        struct ctr *c = rt->ctrs;
        rt->ctrs = c->next;
        ctr_free(c);
    }
    msg_destroy(&rt->shutdown_req);
    pwatch_drop(rt, NULL);
    free(rt->net_ifaces);
    free(rt->net_routes);
    free(rt->net_neighs);
    taps_clear(rt);
    free(rt->created);
    free(rt);
}

static const actor_handler_t handlers[] = {
    {MSG_RT_CREATE, on_create},
    {MSG_RT_START, on_start},
    {MSG_RT_KILL, on_kill},
    {MSG_RT_DELETE, on_delete},
    {MSG_RT_EXEC, on_exec},
    {MSG_RT_PAUSE, on_pause},
    {MSG_RT_RESUME, on_resume},
    {MSG_RT_PS, on_ps},
    {MSG_RT_UPDATE, on_update},
    {MSG_RT_STATS_GET, on_stats},
    {MSG_RT_WAIT, on_wait},
    {MSG_RT_SHUTDOWN, on_shutdown},
    {MSG_RT_UPDATE_NETWORK, on_update_network},
    {MSG_AGENT_EXITED, on_agent_exited},
    {MSG_AGENT_OOM, on_agent_oom},
    {MSG_AGENT_LOST, on_agent_lost},
    {MSG_HV_EXITED, on_hv_exited},
    {MSG_ACTOR_DOWN, on_actor_down},
    {MSG_FAULT_INJECT, on_fault},
    {MSG_NONE, NULL},
};

static const char *const subscriptions[] = {"agent.exited", "agent.oom",  "agent.lost",
                                            "hv.exited",    "actor.down", NULL};

static const actor_def_t def = {.name = RT_ACTOR_NAME,
                                .handlers = handlers,
                                .subscribe = subscriptions,
                                .init = init,
                                .fini = fini};

int rt_actor_start(const actor_opts_t *opts, const rt_actor_opts_t *ro, actor_t **out, err_t *err)
{
    struct rt *rt = calloc(1, sizeof *rt);
    if (!rt)
        return err_make(err, ENOMEM, "runtime: out of memory");
    rt->cfg = ro->cfg;
    rt->done_fd = ro->done_fd;
    rt->restore = ro->restore;
    rt->restored_fd = ro->restore ? ro->restored_fd : -1;
    snprintf(rt->root, sizeof rt->root, "%s", ro->root);
    snprintf(rt->sandbox_id, sizeof rt->sandbox_id, "%s", ro->sandbox_id);
    snprintf(rt->dir, sizeof rt->dir, "%s/%s", ro->root, ro->sandbox_id);
    return actor_start(&def, rt, opts, out, err);
}
