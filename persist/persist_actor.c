/* The persist actor shell: decode persist.* requests, validate the
 * records they carry, call persist/store.c, answer.  The only state it
 * keeps besides the store is the records whose write failed, rewritten by
 * a backoff timer (persist_actor.h). */
#include "persist/persist_actor.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "persist/store.h"

/* A record not yet on disk: the newest one sent for its file. */
struct unsaved {
    char sandbox_id[RT_ID_MAX + 1];
    char id[RT_ID_MAX + 1]; /* container id; "" for sandbox.json */
    persist_sandbox_t *sb;  /* exactly one of sb and c is set */
    persist_container_t *c;
    struct unsaved *next; /* oldest first */
};

struct pst {
    actor_t *self;
    persist_store_t *store;
    struct unsaved *unsaved;
    actor_timer_t *retry; /* armed while anything is unsaved */
    int retry_ms;         /* its current backoff */
};

static void unsaved_free(struct unsaved *u)
{
    persist_sandbox_free(&u->sb);
    persist_container_free(&u->c);
    free(u);
}

static struct unsaved **unsaved_find(struct pst *p, const char *sandbox_id, const char *id)
{
    struct unsaved **pp = &p->unsaved;
    for (; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->sandbox_id, sandbox_id) && !strcmp((*pp)->id, id))
            break;
    return pp;
}

/* Forgets the unsaved record of one file (id non-NULL) or of every file of
 * the sandbox (id NULL). */
static void unsaved_drop(struct pst *p, const char *sandbox_id, const char *id)
{
    for (struct unsaved **pp = &p->unsaved; *pp;) {
        struct unsaved *u = *pp;
        if (!strcmp(u->sandbox_id, sandbox_id) && (!id || !strcmp(u->id, id))) {
            *pp = u->next;
            unsaved_free(u);
            continue;
        }
        pp = &u->next;
    }
}

static int write_record(struct pst *p, const struct unsaved *u, err_t *err)
{
    return u->sb ? persist_sandbox_save(p->store, u->sb, err)
                 : persist_container_save(p->store, u->c, err);
}

static void on_retry(actor_t *a, void *arg);

static void retry_arm(struct pst *p)
{
    if (p->retry)
        return;
    p->retry_ms = p->retry_ms ? p->retry_ms : PERSIST_RETRY_MS;
    p->retry = actor_timer(p->self, p->retry_ms, false, on_retry, p);
}

static void on_retry(actor_t *a, void *arg)
{
    struct pst *p = arg;
    p->retry = NULL; /* a one-shot timer is released once it fired */
    err_t err = ERR_INIT;
    for (struct unsaved **pp = &p->unsaved; *pp;) {
        struct unsaved *u = *pp;
        if (write_record(p, u, &err) == 0) {
            log_info("%s%s: state %s saved", u->id[0] ? "container " : "sandbox ",
                     u->id[0] ? u->id : u->sandbox_id, u->sb ? u->sb->state : u->c->state);
            *pp = u->next;
            unsaved_free(u);
        } else {
            pp = &u->next;
        }
        err_clear(&err);
    }
    if (!p->unsaved) {
        p->retry_ms = 0;
        return;
    }
    p->retry_ms = p->retry_ms * 2 > PERSIST_RETRY_MAX_MS ? PERSIST_RETRY_MAX_MS : p->retry_ms * 2;
    retry_arm(p);
}

static void reply_saved(actor_t *a, const msg_t *req, const char *sandbox_id, const char *id)
{
    msg_t *r = msg_new_reply(req, MSG_PERSIST_SAVED);
    msg_persist_saved_t *b = r->body;
    msg_set_str(&b->sandbox_id, sandbox_id);
    msg_set_str(&b->id, id);
    actor_reply(a, req, &r);
}

static void reply_failed(actor_t *a, const msg_t *req, const char *sandbox_id, const char *id,
                         bool pending, const err_t *err)
{
    msg_t *r = msg_new_reply(req, MSG_PERSIST_ERROR);
    msg_persist_error_t *b = r->body;
    msg_set_str(&b->sandbox_id, sandbox_id);
    msg_set_str(&b->id, id);
    b->pending = pending;
    msg_set_status(r, err->code > 0 ? err->code : EIO, err_str(err));
    actor_reply(a, req, &r);
}

/* Writes u now (a few attempts); when that fails keeps it for the
 * background retry, in place of an older record of the same file, and
 * answers persist.error with pending set.  Takes u. */
static void save(struct pst *p, const msg_t *req, struct unsaved *u)
{
    err_t err = ERR_INIT;
    int r = -EIO;
    for (int i = 0; i < PERSIST_SAVE_ATTEMPTS && r < 0; i++) {
        err_clear(&err);
        r = write_record(p, u, &err);
    }
    struct unsaved **old = unsaved_find(p, u->sandbox_id, u->id);
    if (r == 0) {
        if (*old) {
            struct unsaved *o = *old;
            *old = o->next;
            unsaved_free(o);
        }
        reply_saved(p->self, req, u->sandbox_id, u->id);
        unsaved_free(u);
        return;
    }
    if (!*old)
        log_error("%s (retrying in the background)", err_str(&err));
    reply_failed(p->self, req, u->sandbox_id, u->id, true, &err);
    err_clear(&err);
    if (*old) { /* the newest record replaces it, in its place */
        u->next = (*old)->next;
        unsaved_free(*old);
        *old = u;
    } else {
        *old = u;
    }
    retry_arm(p);
}

static void on_save_sandbox(actor_t *a, msg_t **m, void *state)
{
    struct pst *p = state;
    msg_persist_save_sandbox_t *b = (*m)->body;
    char origin[MSG_NAME_MAX + 64];
    snprintf(origin, sizeof origin, "persist.save_sandbox from %s", (*m)->from);
    err_t err = ERR_INIT;
    struct unsaved *u = xcalloc(1, sizeof *u);
    if (persist_sandbox_from_text(origin, b->record, strlen(b->record), b->sandbox_id, &u->sb,
                                  &err) < 0) {
        reply_failed(a, *m, b->sandbox_id, "", false, &err);
        err_clear(&err);
        free(u);
        return;
    }
    snprintf(u->sandbox_id, sizeof u->sandbox_id, "%s", b->sandbox_id);
    save(p, *m, u);
}

static void on_save_container(actor_t *a, msg_t **m, void *state)
{
    struct pst *p = state;
    msg_persist_save_container_t *b = (*m)->body;
    char origin[MSG_NAME_MAX + 64];
    snprintf(origin, sizeof origin, "persist.save_container from %s", (*m)->from);
    err_t err = ERR_INIT;
    struct unsaved *u = xcalloc(1, sizeof *u);
    if (persist_container_from_text(origin, b->record, strlen(b->record), b->sandbox_id, b->id,
                                    &u->c, &err) < 0) {
        reply_failed(a, *m, b->sandbox_id, b->id, false, &err);
        err_clear(&err);
        free(u);
        return;
    }
    snprintf(u->sandbox_id, sizeof u->sandbox_id, "%s", b->sandbox_id);
    snprintf(u->id, sizeof u->id, "%s", b->id);
    save(p, *m, u);
}

static void on_remove_container(actor_t *a, msg_t **m, void *state)
{
    struct pst *p = state;
    msg_persist_remove_container_t *b = (*m)->body;
    err_t err = ERR_INIT;
    /* an unsaved record must not bring the file back */
    unsaved_drop(p, b->sandbox_id, b->id);
    if (persist_container_remove(p->store, b->sandbox_id, b->id, &err) < 0) {
        reply_failed(a, *m, b->sandbox_id, b->id, false, &err);
        err_clear(&err);
        return;
    }
    reply_saved(a, *m, b->sandbox_id, b->id);
}

static void on_remove_sandbox(actor_t *a, msg_t **m, void *state)
{
    struct pst *p = state;
    msg_persist_remove_sandbox_t *b = (*m)->body;
    err_t err = ERR_INIT;
    unsaved_drop(p, b->sandbox_id, NULL);
    if (persist_sandbox_remove(p->store, b->sandbox_id, &err) < 0) {
        reply_failed(a, *m, b->sandbox_id, "", false, &err);
        err_clear(&err);
        return;
    }
    reply_saved(a, *m, b->sandbox_id, "");
}

/* The container ids to load: the sandbox's list (creation order), then
 * any other container.json found (a list that lagged behind). */
static int load_containers(struct pst *p, const persist_sandbox_t *sb,
                           persist_container_t ***out, size_t *n_out, err_t *err)
{
    char **found = NULL;
    size_t nfound = 0;
    int r = persist_container_list(p->store, sb->id, &found, &nfound, err);
    if (r < 0)
        return r;
    persist_container_t **cs = xcalloc(sb->n_containers + nfound + 1, sizeof *cs);
    size_t n = 0;
    for (size_t pass = 0; pass < 2 && r == 0; pass++) {
        char **ids = pass ? found : sb->containers;
        size_t nids = pass ? nfound : sb->n_containers;
        for (size_t i = 0; i < nids && r == 0; i++) {
            bool seen = false;
            for (size_t k = 0; k < n && !seen; k++)
                seen = !strcmp(cs[k]->id, ids[i]);
            if (seen)
                continue;
            r = persist_container_load(p->store, sb->id, ids[i], &cs[n], err);
            if (r == -ENOENT && !pass) { /* listed, never saved (a create cut short) */
                err_clear(err);
                r = 0;
                continue;
            }
            if (r == 0)
                n++;
        }
    }
    persist_strv_free(found);
    if (r < 0) {
        persist_containers_free(cs, n);
        return r;
    }
    *out = cs;
    *n_out = n;
    return 0;
}

static void on_load(actor_t *a, msg_t **m, void *state)
{
    struct pst *p = state;
    msg_persist_load_t *b = (*m)->body;
    err_t err = ERR_INIT;
    persist_sandbox_t *sb = NULL;
    persist_container_t **cs = NULL;
    size_t n = 0;
    char *sb_text = NULL, *cs_text = NULL;
    if (persist_sandbox_load(p->store, b->sandbox_id, &sb, &err) < 0 ||
        load_containers(p, sb, &cs, &n, &err) < 0 ||
        persist_sandbox_to_text(sb, &sb_text, &err) < 0 ||
        persist_containers_to_text(cs, n, &cs_text, &err) < 0) {
        reply_failed(a, *m, b->sandbox_id, "", false, &err);
    } else {
        msg_t *r = msg_new_reply(*m, MSG_PERSIST_LOADED);
        msg_persist_loaded_t *lb = r->body;
        msg_set_str(&lb->sandbox_id, b->sandbox_id);
        free(lb->sandbox);
        lb->sandbox = sb_text;
        free(lb->containers);
        lb->containers = cs_text;
        sb_text = cs_text = NULL;
        actor_reply(a, *m, &r);
    }
    err_clear(&err);
    free(sb_text);
    free(cs_text);
    persist_containers_free(cs, n);
    persist_sandbox_free(&sb);
}

/* Fault injection (docs/faults.md): only ever sent by the broker when an
 * effect rule fires. */
static void on_fault(actor_t *a, msg_t **m, void *state)
{
    struct pst *p = state;
    msg_fault_inject_t *b = (*m)->body;
    if (strcmp((*m)->from, "bus")) {
        actor_reply_error(a, *m, EPERM, "fault.inject is the broker's");
        return;
    }
    int errnum = !strcmp(b->action, "enospc") ? ENOSPC : !strcmp(b->action, "eio") ? EIO : 0;
    if (!errnum) {
        actor_reply_error(a, *m, EINVAL, "persist: no fault '%s'", b->action);
        return;
    }
    log_warn("fault: the next %llu state writes fail with %s", (unsigned long long)b->count,
             b->action);
    persist_store_set_fault(p->store, errnum, (unsigned)(b->count ? b->count : 1));
    msg_t *ok = msg_new_reply(*m, MSG_AGENT_OK);
    if (ok)
        actor_reply(a, *m, &ok);
}

static int init(actor_t *a, void *state, err_t *err)
{
    ((struct pst *)state)->self = a;
    return 0;
}

static void fini(actor_t *a, void *state)
{
    struct pst *p = state;
    while (p->unsaved) {
        struct unsaved *u = p->unsaved;
        p->unsaved = u->next;
        log_error("%s%s: state %s was never written", u->id[0] ? "container " : "sandbox ",
                  u->id[0] ? u->id : u->sandbox_id, u->sb ? u->sb->state : u->c->state);
        unsaved_free(u);
    }
    persist_store_destroy(&p->store);
    free(p);
}

static const actor_handler_t handlers[] = {
    {MSG_PERSIST_SAVE_SANDBOX, on_save_sandbox},
    {MSG_PERSIST_SAVE_CONTAINER, on_save_container},
    {MSG_PERSIST_REMOVE_CONTAINER, on_remove_container},
    {MSG_PERSIST_REMOVE_SANDBOX, on_remove_sandbox},
    {MSG_PERSIST_LOAD, on_load},
    {MSG_FAULT_INJECT, on_fault},
    {MSG_NONE, NULL},
};

static const actor_def_t def = {
    .name = PERSIST_ACTOR_NAME, .handlers = handlers, .init = init, .fini = fini};

int persist_actor_start(const actor_opts_t *opts, const char *root, actor_t **out, err_t *err)
{
    struct pst *p = calloc(1, sizeof *p);
    if (!p)
        return err_make(err, ENOMEM, "persist actor: out of memory");
    int r = persist_store_open(root, &p->store, err);
    if (r < 0) {
        free(p);
        return r;
    }
    return actor_start(&def, p, opts, out, err); /* fini frees p in every case */
}
