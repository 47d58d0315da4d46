/* hv-internal: what backends see of an instance.  Not for callers. */
#ifndef HUSK_HV_INTERNAL_H
#define HUSK_HV_INTERNAL_H

#include "hypervisors/hv.h"

struct hv {
    const struct hv_ops *ops;
    struct event_base *base; /* borrowed */
    struct hv_config cfg;    /* deep copy; strings owned */
    void *priv;              /* backend state */
    hv_event_fn event_fn;
    void *event_arg;
    int busy;    /* > 0 while a backend callback runs */
    bool doomed; /* hv_destroy() was called while busy */
};

/* Backends bracket every libevent callback with hv_enter()/hv_leave();
 * after calling out (hv_emit, hv_done) they check hv->doomed and return at
 * once if set.  hv_leave() performs a deferred destroy.  Returns true when
 * the instance is gone. */
static inline void hv_enter(hv_t *hv)
{
    hv->busy++;
}
bool hv_leave(hv_t *hv);

/* Delivers an event to the owner. */
void hv_emit(hv_t *hv, const struct hv_event *ev);
/* Calls a completion (when done != NULL). */
void hv_done(hv_t *hv, hv_done_fn done, void *arg, int status, const err_t *err);

/* Shared by backends: a device id is [A-Za-z0-9_.-]{1,31}. */
int hv_check_id(const char *what, const char *id, err_t *err);

/* Shared by backends' attach: 0 when pid is alive (not a zombie) with
 * /proc starttime `start`; ESRCH otherwise. */
int hv_pid_check(pid_t pid, uint64_t start, err_t *err);
/* Kills a process that is not our child through its pidfd and waits (at
 * most timeout_ms) until it is gone; closes the pidfd. */
void hv_pidfd_kill_wait(int pidfd, int timeout_ms);

#endif
