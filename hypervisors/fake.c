/* fake: scriptable backend (see fake.h). */
#include "hypervisors/fake.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisors/hv-internal.h"

enum {
    OP_PREPARE = 0,
    OP_START,
    OP_STOP,
    OP_PAUSE,
    OP_RESUME,
    OP_ADD,
    OP_REMOVE,
    OP_VCPUS,
    OP_MEMORY,
    OP_SAVE,
    OP_RESTORE,
    OP_ATTACH,
    N_OPS
};

static const char *const op_names[N_OPS] = {
    "prepare",       "start",        "stop",          "pause", "resume",  "add_device",
    "remove_device", "resize_vcpus", "resize_memory", "save",  "restore", "attach"};

struct completion {
    struct completion *next;
    struct fake *f;
    struct event *ev;
    int op;
    int status;
    hv_done_fn done;
    void *arg;
};

struct fake {
    hv_t *hv;
    int status[N_OPS];
    int delay_ms[N_OPS];
    int fail_now[N_OPS];
    unsigned calls[N_OPS];
    bool running;
    struct completion *pending;
};

static int op_index(const char *op)
{
    for (int i = 0; op && i < N_OPS; i++)
        if (!strcmp(op_names[i], op))
            return i;
    return -1;
}

static struct fake *F(hv_t *hv)
{
    return hv->ops == &hv_fake_ops ? hv->priv : NULL;
}

int hv_fake_script(hv_t *hv, const char *op, int status, int delay_ms)
{
    int i = op_index(op);
    struct fake *f = F(hv);
    if (i < 0 || !f)
        return -EINVAL;
    f->status[i] = status;
    f->delay_ms[i] = delay_ms;
    return 0;
}

int hv_fake_fail_now(hv_t *hv, const char *op, int status)
{
    int i = op_index(op);
    struct fake *f = F(hv);
    if (i < 0 || !f || status >= 0)
        return -EINVAL;
    f->fail_now[i] = status;
    return 0;
}

unsigned hv_fake_calls(hv_t *hv, const char *op)
{
    int i = op_index(op);
    struct fake *f = F(hv);
    return i < 0 || !f ? 0 : f->calls[i];
}

void hv_fake_emit(hv_t *hv, const struct hv_event *ev)
{
    struct fake *f = F(hv);
    if (!f)
        return;
    if (ev->kind == HV_EV_EXITED)
        f->running = false;
    hv_enter(hv);
    hv_emit(hv, ev);
    hv_leave(hv);
}

static void unlink_completion(struct fake *f, struct completion *c)
{
    for (struct completion **pp = &f->pending; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            return;
        }
}

static void on_complete(evutil_socket_t fd, short what, void *arg)
{
    struct completion *c = arg;
    struct fake *f = c->f;
    hv_t *hv = f->hv;
    unlink_completion(f, c);
    hv_enter(hv);
    err_t e = ERR_INIT;
    if (c->status < 0)
        err_make(&e, -c->status, "fake: %s scripted failure", op_names[c->op]);
    else if (c->op == OP_START)
        f->running = true;
    else if (c->op == OP_STOP)
        f->running = false;
    hv_done(hv, c->done, c->arg, c->status, c->status < 0 ? &e : NULL);
    if (!hv->doomed && c->status == 0 && (c->op == OP_START || c->op == OP_STOP)) {
        struct hv_event ev = {.kind = c->op == OP_START ? HV_EV_READY : HV_EV_EXITED,
                              .name = c->op == OP_START ? "READY" : "EXITED",
                              .expected = true};
        hv_emit(hv, &ev);
    }
    err_clear(&e);
    event_free(c->ev);
    free(c);
    hv_leave(hv);
}

static int begin(hv_t *hv, int op, hv_done_fn done, void *arg, err_t *err)
{
    struct fake *f = F(hv);
    f->calls[op]++;
    if (f->fail_now[op] < 0) {
        int s = f->fail_now[op];
        f->fail_now[op] = 0;
        return err_make(err, -s, "fake: %s scripted immediate failure", op_names[op]);
    }
    struct completion *c = calloc(1, sizeof(*c));
    if (!c)
        return err_make(err, ENOMEM, "fake: out of memory");
    *c = (struct completion){.f = f, .op = op, .status = f->status[op], .done = done, .arg = arg};
    c->ev = evtimer_new(hv->base, on_complete, c);
    if (!c->ev) {
        free(c);
        return err_make(err, ENOMEM, "fake: out of memory");
    }
    struct timeval tv = {f->delay_ms[op] / 1000, (f->delay_ms[op] % 1000) * 1000};
    evtimer_add(c->ev, &tv);
    c->next = f->pending;
    f->pending = c;
    return 0;
}

static int fk_create(hv_t *hv, const struct hv_config *cfg, err_t *err)
{
    struct fake *f = calloc(1, sizeof(*f));
    if (!f)
        return err_make(err, ENOMEM, "fake: out of memory");
    f->hv = hv;
    hv->priv = f;
    return 0;
}

static void fk_destroy(hv_t *hv)
{
    struct fake *f = hv->priv;
    if (!f)
        return;
    while (f->pending) {
        struct completion *c = f->pending;
        f->pending = c->next;
        event_free(c->ev);
        free(c);
    }
    free(f);
    hv->priv = NULL;
}

static int fk_prepare(hv_t *hv, err_t *err)
{
    struct fake *f = F(hv);
    f->calls[OP_PREPARE]++;
    if (f->fail_now[OP_PREPARE] < 0 || f->status[OP_PREPARE] < 0) {
        int s = f->fail_now[OP_PREPARE] < 0 ? f->fail_now[OP_PREPARE] : f->status[OP_PREPARE];
        f->fail_now[OP_PREPARE] = 0;
        return err_make(err, -s, "fake: prepare scripted failure");
    }
    return 0;
}

#define FK_OP(fn, idx)                                                                             \
    static int fn(hv_t *hv, hv_done_fn done, void *arg, err_t *err)                                \
    {                                                                                              \
        return begin(hv, idx, done, arg, err);                                                     \
    }
FK_OP(fk_start, OP_START)
FK_OP(fk_stop, OP_STOP)
FK_OP(fk_pause, OP_PAUSE)
FK_OP(fk_resume, OP_RESUME)

static int fk_add(hv_t *hv, const struct hv_device *d, hv_done_fn done, void *arg, err_t *err)
{
    int r = hv_check_id("device", d->id, err);
    return r < 0 ? r : begin(hv, OP_ADD, done, arg, err);
}

static int fk_remove(hv_t *hv, const struct hv_device *d, hv_done_fn done, void *arg, err_t *err)
{
    return begin(hv, OP_REMOVE, done, arg, err);
}

static int fk_vcpus(hv_t *hv, unsigned n, hv_done_fn done, void *arg, err_t *err)
{
    return begin(hv, OP_VCPUS, done, arg, err);
}

static int fk_memory(hv_t *hv, unsigned n, hv_done_fn done, void *arg, err_t *err)
{
    return begin(hv, OP_MEMORY, done, arg, err);
}

static int fk_save(hv_t *hv, const char *p, hv_done_fn done, void *arg, err_t *err)
{
    return begin(hv, OP_SAVE, done, arg, err);
}

static int fk_restore(hv_t *hv, const char *p, hv_done_fn done, void *arg, err_t *err)
{
    return begin(hv, OP_RESTORE, done, arg, err);
}

/* attach checks the pid as the real backends do, then completes as scripted */
static int fk_attach(hv_t *hv, pid_t pid, uint64_t start, hv_done_fn done, void *arg, err_t *err)
{
    int r = hv_pid_check(pid, start, err);
    return r < 0 ? r : begin(hv, OP_ATTACH, done, arg, err);
}

static int fk_pids(hv_t *hv, pid_t *pids, size_t max, size_t *n, err_t *err)
{
    *n = 0;
    return 0;
}

const struct hv_ops hv_fake_ops = {
    .name = "fake",
    .caps = HV_CAP_PAUSE | HV_CAP_SHARE_FS_9P | HV_CAP_HOTPLUG_FS | HV_CAP_HOTPLUG_BLOCK |
            HV_CAP_HOTPLUG_NET | HV_CAP_HOTPLUG_VCPU | HV_CAP_HOTPLUG_MEMORY | HV_CAP_SAVE_RESTORE,
    .create = fk_create,
    .destroy = fk_destroy,
    .prepare = fk_prepare,
    .start = fk_start,
    .stop = fk_stop,
    .pause = fk_pause,
    .resume = fk_resume,
    .add_device = fk_add,
    .remove_device = fk_remove,
    .attach = fk_attach,
    .resize_vcpus = fk_vcpus,
    .resize_memory = fk_memory,
    .save = fk_save,
    .restore = fk_restore,
    .pids = fk_pids,
};
