/* The hypervisor actor shell: decode hv.* messages, call hypervisors/,
 * encode replies and events.  No VM logic lives here. */
#include "hypervisors/hypervisor_actor.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "hypervisors/hv.h"

struct hv_actor {
    const cfg_t *cfg;
    char *agent_binary;
    hv_t *hv;
    char sandbox_id[RT_ID_MAX + 1];
    char console_log[4096];
    struct hv_share share;
    char *share_dir, *share_tag;
    msg_t *pending_stop; /* the hv.stop being served */
};

struct op {
    actor_t *a;
    struct hv_actor *s;
    msg_t *req;
};

static struct op *op_new(actor_t *a, struct hv_actor *s, msg_t **req)
{
    struct op *op = calloc(1, sizeof *op);
    if (op) {
        op->a = a;
        op->s = s;
        op->req = *req;
        *req = NULL;
    }
    return op;
}

static void op_free(struct op *op)
{
    msg_destroy(&op->req);
    free(op);
}

static void reply_err(actor_t *a, const msg_t *req, const err_t *err)
{
    actor_reply_error(a, req, err && err->code ? err->code : EIO, "%s", err_str(err));
}

static void on_event(hv_t *hv, void *arg, const struct hv_event *ev)
{
    actor_t *a = arg;
    struct hv_actor *s = NULL;
    (void)s;
    if (ev->kind != HV_EV_EXITED) {
        log_debug("hypervisor event %s", ev->name ? ev->name : "?");
        return;
    }
    if (ev->expected)
        log_info("VM stopped: %s", ev->reason ? ev->reason : "");
    else
        log_warn("VM died: %s", ev->reason ? ev->reason : "");
    msg_t *m = msg_new(MSG_HV_EXITED);
    if (!m)
        return;
    msg_hv_exited_t *b = m->body;
    const struct hv_config *c = hv_config(hv);
    msg_set_str(&b->sandbox_id, c->id);
    b->status = ev->exited_by_signal ? 128 + ev->wait_status : ev->wait_status;
    msg_set_str(&b->reason, ev->expected ? "stopped" : (ev->reason ? ev->reason : "died"));
    err_t err = ERR_INIT;
    if (actor_publish(a, &m, &err) < 0)
        log_warn("publish hv.exited: %s, ignoring", err_str(&err));
    err_clear(&err);
}

static void on_started(hv_t *hv, void *arg, int status, const err_t *err)
{
    struct op *op = arg;
    if (status < 0) {
        reply_err(op->a, op->req, err);
        hv_destroy(&op->s->hv);
        op_free(op);
        return;
    }
    msg_t *r = msg_new_reply(op->req, MSG_HV_STARTED);
    msg_hv_started_t *b = r->body;
    pid_t pids[4];
    size_t n = 0;
    err_t e2 = ERR_INIT;
    if (hv_pids(hv, pids, 4, &n, &e2) == 0 && n > 0)
        b->pid = (uint64_t)pids[0];
    err_clear(&e2);
    b->in_cgroup = (hv_capabilities(hv) & HV_CAP_VMM_IN_CGROUP) != 0;
    msg_set_str(&b->agent_socket, hv_agent_socket(hv));
    msg_set_str(&b->backend, hv_name(hv));
    msg_set_str(&b->accel, hv_accel_name(hv_config(hv)->accel));
    msg_set_str(&b->console_log, op->s->console_log);
    log_info("%s sandbox %s started, pid %llu", hv_name(hv), op->s->sandbox_id,
             (unsigned long long)b->pid);
    actor_reply(op->a, op->req, &r);
    op_free(op);
}

/* The backend's VM object for sandbox c->id (hv.start and hv.attach), and
 * the op that answers *m once it is started or attached; NULL and err on
 * failure. */
static struct op *new_vm(actor_t *a, struct hv_actor *s, const struct hv_ops *ops,
                         const struct hv_config *c, msg_t **m, err_t *err)
{
    snprintf(s->sandbox_id, sizeof s->sandbox_id, "%s", c->id);
    snprintf(s->console_log, sizeof s->console_log, "%s/console.log", c->sandbox_dir);
    log_set_sandbox(c->id);
    if (hv_new(ops, actor_base(a), c, &s->hv, err) < 0)
        return NULL;
    hv_set_event_cb(s->hv, on_event, a);
    struct op *op = op_new(a, s, m);
    if (!op)
        err_make(err, ENOMEM, "hypervisor: out of memory");
    return op;
}

static void on_start(actor_t *a, msg_t **m, void *state)
{
    struct hv_actor *s = state;
    msg_hv_start_t *b = (*m)->body;
    err_t err = ERR_INIT;
    if (s->hv) {
        actor_reply_error(a, *m, EALREADY, "hypervisor: sandbox %s already has a VM",
                          s->sandbox_id);
        return;
    }
    const char *backend = s->cfg->backend ? s->cfg->backend : "qemu";
    const struct hv_ops *ops = hv_ops_by_name(backend);
    if (!ops) {
        actor_reply_error(a, *m, EINVAL, "hypervisor: unknown backend `%s`", backend);
        return;
    }
    if (!strcmp(ops->name, "qemu") && (!s->cfg->kernel || !s->cfg->initrd)) {
        actor_reply_error(a, *m, ENOENT,
                          "hypervisor: no guest %s: set `%s` in the configuration or build the "
                          "guest image (make guest) next to the husk binary",
                          !s->cfg->kernel ? "kernel" : "initrd",
                          !s->cfg->kernel ? "kernel" : "initrd");
        return;
    }
    struct hv_config c;
    hv_config_init(&c);
    hv_config_from_cfg(&c, s->cfg);
    c.id = b->sandbox_id;
    c.sandbox_dir = b->dir;
    if (b->vcpus)
        c.vcpus = (unsigned)b->vcpus;
    if (b->memory_mib)
        c.memory_mib = (unsigned)b->memory_mib;
    char params[4096];
    snprintf(params, sizeof params, "%s%s%s", s->cfg->kernel_params ? s->cfg->kernel_params : "",
             b->kernel_params[0] ? " " : "", b->kernel_params);
    c.kernel_params = params;
    if (!strcmp(ops->name, "local"))
        c.binary = s->agent_binary;
    /* network: the VMM (or the local agent) runs in the namespace; NICs
     * over its taps (resources/net.h) */
    struct hv_net nets[16];
    c.netns = b->netns[0] ? b->netns : NULL;
    if (b->net_taps.n != b->net_macs.n || b->net_taps.n > 16) {
        actor_reply_error(a, *m, EINVAL, "hypervisor: net_taps and net_macs differ");
        return;
    }
    for (size_t i = 0; i < b->net_taps.n; i++)
        nets[i] = (struct hv_net){.id = b->net_taps.v[i],
                                  .tap = b->net_taps.v[i],
                                  .mac = b->net_macs.v[i][0] ? b->net_macs.v[i] : NULL};
    c.nets = nets;
    c.n_nets = b->net_taps.n;
    const char *cgdirs[9] = {0}; /* the catalog bounds cgroup_dirs to 8 */
    for (size_t i = 0; i < b->cgroup_dirs.n && i < 8; i++)
        cgdirs[i] = b->cgroup_dirs.v[i];
    c.cgroup_dirs = b->cgroup_dirs.n ? cgdirs : NULL;
    if (b->share_dir[0]) {
        s->share.host_path = b->share_dir;
        s->share.mount_tag = b->share_tag[0] ? b->share_tag : "husk";
        s->share.readonly = false;
        c.shares = &s->share;
        c.n_shares = 1;
    }
    struct op *op = new_vm(a, s, ops, &c, m, &err);
    if (!op)
        goto fail;
    if (hv_start(s->hv, on_started, op, &err) < 0) {
        *m = op->req;
        op->req = NULL;
        op_free(op);
        goto fail;
    }
    return;
fail:
    err_wrap(&err, "start %s sandbox %s", backend, b->sandbox_id);
    reply_err(a, *m, &err);
    hv_destroy(&s->hv);
    err_clear(&err);
}

/* hv.attach (restore): the VMM a previous daemon started, taken over;
 * answered like hv.start.  The backend must be the persisted one: a daemon
 * restarted with another configuration still drives what runs. */
static void on_attach(actor_t *a, msg_t **m, void *state)
{
    struct hv_actor *s = state;
    msg_hv_attach_t *b = (*m)->body;
    err_t err = ERR_INIT;
    if (s->hv) {
        actor_reply_error(a, *m, EALREADY, "hypervisor: sandbox %s already has a VM",
                          s->sandbox_id);
        return;
    }
    const struct hv_ops *ops = hv_ops_by_name(b->backend);
    if (!ops) {
        actor_reply_error(a, *m, EINVAL, "hypervisor: attach: unknown backend `%s`", b->backend);
        return;
    }
    if (!b->dir[0] || !b->sandbox_id[0] || b->pid == 0 || b->pid > INT32_MAX) {
        actor_reply_error(a, *m, EINVAL, "hypervisor: attach: needs a sandbox id, dir and pid");
        return;
    }
    struct hv_config c;
    hv_config_init(&c);
    hv_config_from_cfg(&c, s->cfg);
    c.id = b->sandbox_id;
    c.sandbox_dir = b->dir;
    c.netns = b->netns[0] ? b->netns : NULL;
    if (!strcmp(ops->name, "local"))
        c.binary = s->agent_binary;
    struct op *op = new_vm(a, s, ops, &c, m, &err);
    if (!op)
        goto fail;
    pid_t pid = (pid_t)b->pid;
    uint64_t start = b->pid_start;
    if (hv_attach(s->hv, pid, start, on_started, op, &err) < 0) {
        *m = op->req;
        op->req = NULL;
        op_free(op);
        goto fail;
    }
    return;
fail:
    err_wrap(&err, "attach to the %s VMM of sandbox %s", ops->name, b->sandbox_id);
    reply_err(a, *m, &err);
    hv_destroy(&s->hv); /* holds no pidfd yet: kills nothing */
    err_clear(&err);
}

static void on_stopped(hv_t *hv, void *arg, int status, const err_t *err)
{
    struct op *op = arg;
    msg_t *r = msg_new_reply(op->req, MSG_HV_STOPPED);
    ((msg_hv_stopped_t *)r->body)->status = status;
    actor_reply(op->a, op->req, &r);
    op_free(op);
}

static void on_stop(actor_t *a, msg_t **m, void *state)
{
    struct hv_actor *s = state;
    err_t err = ERR_INIT;
    if (!s->hv) {
        msg_t *r = msg_new_reply(*m, MSG_HV_STOPPED);
        actor_reply(a, *m, &r);
        return;
    }
    struct op *op = op_new(a, s, m);
    if (hv_stop(s->hv, on_stopped, op, &err) < 0) {
        if (err.code == ESRCH) { /* already gone: that is what was asked */
            msg_t *r = msg_new_reply(op->req, MSG_HV_STOPPED);
            actor_reply(a, op->req, &r);
        } else {
            reply_err(a, op->req, &err);
        }
        op_free(op);
        err_clear(&err);
    }
}

static void on_simple_done(hv_t *hv, void *arg, int status, const err_t *err)
{
    struct op *op = arg;
    if (status < 0) {
        reply_err(op->a, op->req, err);
    } else {
        msg_t *r = msg_new_reply(op->req, MSG_HV_OK);
        actor_reply(op->a, op->req, &r);
    }
    op_free(op);
}

static void simple(actor_t *a, msg_t **m, struct hv_actor *s,
                   int (*fn)(hv_t *, hv_done_fn, void *, err_t *), const char *what)
{
    err_t err = ERR_INIT;
    if (!s->hv) {
        actor_reply_error(a, *m, ESRCH, "hypervisor: %s: no VM running", what);
        return;
    }
    struct op *op = op_new(a, s, m);
    if (fn(s->hv, on_simple_done, op, &err) < 0) {
        reply_err(a, op->req, &err);
        op_free(op);
        err_clear(&err);
    }
}

static void on_pause(actor_t *a, msg_t **m, void *state)
{
    simple(a, m, state, hv_pause, "pause");
}

static void on_resume(actor_t *a, msg_t **m, void *state)
{
    simple(a, m, state, hv_resume, "resume");
}

static int device_of(const msg_hv_add_device_t *b, struct hv_device *d, err_t *err)
{
    memset(d, 0, sizeof *d);
    d->id = b->id;
    if (!strcmp(b->kind, "share-fs")) {
        d->kind = HV_DEV_SHARE_FS;
        d->u.share_fs.host_path = b->path;
        d->u.share_fs.mount_tag = b->tag[0] ? b->tag : b->id;
        d->u.share_fs.readonly = b->readonly;
    } else if (!strcmp(b->kind, "block")) {
        d->kind = HV_DEV_BLOCK;
        d->u.block.path = b->path;
        d->u.block.readonly = b->readonly;
    } else if (!strcmp(b->kind, "network")) {
        d->kind = HV_DEV_NET;
        d->u.net.tap = b->path;
        d->u.net.mac = b->mac[0] ? b->mac : NULL;
    } else if (!strcmp(b->kind, "vfio")) {
        d->kind = HV_DEV_VFIO;
        d->u.vfio.host_bdf = b->path;
    } else if (!strcmp(b->kind, "vhost-user")) {
        d->kind = HV_DEV_VHOST_USER;
        d->u.vhost_user.socket_path = b->path;
        d->u.vhost_user.tag = b->tag;
    } else {
        return err_make(err, EINVAL,
                        "hypervisor: unknown device kind `%s` (share-fs, block, network, vfio, "
                        "vhost-user)",
                        b->kind);
    }
    return 0;
}

static void on_add_device(actor_t *a, msg_t **m, void *state)
{
    struct hv_actor *s = state;
    err_t err = ERR_INIT;
    struct hv_device d;
    if (!s->hv) {
        actor_reply_error(a, *m, ESRCH, "hypervisor: add device: no VM running");
        return;
    }
    if (device_of((*m)->body, &d, &err) < 0) {
        reply_err(a, *m, &err);
        err_clear(&err);
        return;
    }
    struct op *op = op_new(a, s, m);
    if (hv_add_device(s->hv, &d, on_simple_done, op, &err) < 0) {
        reply_err(a, op->req, &err);
        op_free(op);
        err_clear(&err);
    }
}

static void on_remove_device(actor_t *a, msg_t **m, void *state)
{
    struct hv_actor *s = state;
    err_t err = ERR_INIT;
    msg_hv_remove_device_t *b = (*m)->body;
    msg_hv_add_device_t as = {.kind = b->kind, .id = b->id, .path = "", .tag = "", .mac = ""};
    struct hv_device d;
    if (!s->hv) {
        actor_reply_error(a, *m, ESRCH, "hypervisor: remove device: no VM running");
        return;
    }
    if (device_of(&as, &d, &err) < 0) {
        reply_err(a, *m, &err);
        err_clear(&err);
        return;
    }
    struct op *op = op_new(a, s, m);
    if (hv_remove_device(s->hv, &d, on_simple_done, op, &err) < 0) {
        reply_err(a, op->req, &err);
        op_free(op);
        err_clear(&err);
    }
}

static void fini(actor_t *a, void *state)
{
    struct hv_actor *s = state;
    hv_destroy(&s->hv); /* kills and reaps whatever still runs */
    free(s->agent_binary);
    free(s);
}

static const actor_handler_t handlers[] = {
    {MSG_HV_START, on_start},
    {MSG_HV_STOP, on_stop},
    {MSG_HV_PAUSE, on_pause},
    {MSG_HV_RESUME, on_resume},
    {MSG_HV_ADD_DEVICE, on_add_device},
    {MSG_HV_REMOVE_DEVICE, on_remove_device},
    {MSG_HV_ATTACH, on_attach},
    {MSG_NONE, NULL},
};

static const actor_def_t def = {.name = HV_ACTOR_NAME, .handlers = handlers, .fini = fini};

int hv_actor_start(const actor_opts_t *opts, const cfg_t *cfg, const char *agent_binary,
                   actor_t **out, err_t *err)
{
    struct hv_actor *s = calloc(1, sizeof *s);
    if (!s)
        return err_make(err, ENOMEM, "hypervisor actor: out of memory");
    s->cfg = cfg;
    if (agent_binary && !(s->agent_binary = strdup(agent_binary))) {
        free(s);
        return err_make(err, ENOMEM, "hypervisor actor: out of memory");
    }
    return actor_start(&def, s, opts, out, err); /* fini frees s in every case */
}
