/* runtimes/state: the sandbox and container state machines.  See state.h. */
#include "runtimes/state.h"

#include <errno.h>
#include <string.h>

/* A cell: legal moves have ok = 1 and next; refusals a message template in
 * which "{id}" and "{state}" are replaced by the container id and the
 * current state name. */
typedef struct cell {
    int ok;
    int next;
    const char *msg;
} cell_t;

#define GO(n)                                                                                      \
    {                                                                                              \
        1, (n), NULL                                                                               \
    }
#define NO(msg)                                                                                    \
    {                                                                                              \
        0, 0, (msg)                                                                                \
    }

/* ---- sandbox ---------------------------------------------------------------- */

static const char *const sb_state_names[RT_SB_NSTATES] = {
    [RT_SB_NEW] = "new",           [RT_SB_BOOTING] = "booting", [RT_SB_READY] = "ready",
    [RT_SB_STOPPING] = "stopping", [RT_SB_STOPPED] = "stopped", [RT_SB_FAILED] = "failed",
};

static const char *const sb_event_names[RT_SB_NEVENTS] = {
    [RT_SB_EV_BOOT] = "boot",       [RT_SB_EV_BOOTED] = "booted",       [RT_SB_EV_STOP] = "stop",
    [RT_SB_EV_STOPPED] = "stopped", [RT_SB_EV_VM_EXITED] = "vm_exited", [RT_SB_EV_FAIL] = "fail",
};

static const cell_t sb_table[RT_SB_NSTATES][RT_SB_NEVENTS] = {
    [RT_SB_NEW] =
        {
            [RT_SB_EV_BOOT] = GO(RT_SB_BOOTING),
            [RT_SB_EV_BOOTED] = NO("sandbox is not booting"),
            [RT_SB_EV_STOP] = GO(RT_SB_STOPPED),
            [RT_SB_EV_STOPPED] = NO("sandbox is not stopping"),
            [RT_SB_EV_VM_EXITED] = NO("sandbox has no VM yet"),
            [RT_SB_EV_FAIL] = GO(RT_SB_FAILED),
        },
    [RT_SB_BOOTING] =
        {
            [RT_SB_EV_BOOT] = NO("sandbox is already booting"),
            [RT_SB_EV_BOOTED] = GO(RT_SB_READY),
            [RT_SB_EV_STOP] = GO(RT_SB_STOPPING),
            [RT_SB_EV_STOPPED] = NO("sandbox is not stopping"),
            [RT_SB_EV_VM_EXITED] = GO(RT_SB_FAILED),
            [RT_SB_EV_FAIL] = GO(RT_SB_FAILED),
        },
    [RT_SB_READY] =
        {
            [RT_SB_EV_BOOT] = NO("sandbox is already running"),
            [RT_SB_EV_BOOTED] = NO("sandbox is already running"),
            [RT_SB_EV_STOP] = GO(RT_SB_STOPPING),
            [RT_SB_EV_STOPPED] = NO("sandbox is not stopping"),
            [RT_SB_EV_VM_EXITED] = GO(RT_SB_STOPPED),
            [RT_SB_EV_FAIL] = GO(RT_SB_FAILED),
        },
    [RT_SB_STOPPING] =
        {
            [RT_SB_EV_BOOT] = NO("sandbox is stopping"),
            [RT_SB_EV_BOOTED] = NO("sandbox is stopping"),
            [RT_SB_EV_STOP] = GO(RT_SB_STOPPING),
            [RT_SB_EV_STOPPED] = GO(RT_SB_STOPPED),
            [RT_SB_EV_VM_EXITED] = GO(RT_SB_STOPPED),
            [RT_SB_EV_FAIL] = GO(RT_SB_FAILED),
        },
    [RT_SB_STOPPED] =
        {
            [RT_SB_EV_BOOT] = NO("sandbox has stopped"),
            [RT_SB_EV_BOOTED] = NO("sandbox has stopped"),
            [RT_SB_EV_STOP] = GO(RT_SB_STOPPED),
            [RT_SB_EV_STOPPED] = GO(RT_SB_STOPPED),
            [RT_SB_EV_VM_EXITED] = GO(RT_SB_STOPPED),
            [RT_SB_EV_FAIL] = GO(RT_SB_FAILED),
        },
    [RT_SB_FAILED] =
        {
            [RT_SB_EV_BOOT] = NO("sandbox has failed"),
            [RT_SB_EV_BOOTED] = NO("sandbox has failed"),
            [RT_SB_EV_STOP] = GO(RT_SB_STOPPING),
            [RT_SB_EV_STOPPED] = GO(RT_SB_STOPPED),
            [RT_SB_EV_VM_EXITED] = GO(RT_SB_FAILED),
            [RT_SB_EV_FAIL] = GO(RT_SB_FAILED),
        },
};

const char *rt_sandbox_state_name(rt_sandbox_state_t s)
{
    return (unsigned)s < RT_SB_NSTATES ? sb_state_names[s] : "unknown";
}

const char *rt_sandbox_event_name(rt_sandbox_event_t ev)
{
    return (unsigned)ev < RT_SB_NEVENTS ? sb_event_names[ev] : "unknown";
}

static int parse(const char *const *names, int n, const char *what, const char *name, int *out,
                 err_t *err)
{
    for (int i = 0; name && i < n; i++)
        if (strcmp(names[i], name) == 0) {
            *out = i;
            return 0;
        }
    return err_make(err, EINVAL, "unknown %s `%s`", what, name ? name : "(null)");
}

int rt_sandbox_state_parse(const char *name, rt_sandbox_state_t *out, err_t *err)
{
    int v = 0, r = parse(sb_state_names, RT_SB_NSTATES, "sandbox state", name, &v, err);
    if (r == 0)
        *out = (rt_sandbox_state_t)v;
    return r;
}

int rt_sandbox_event_parse(const char *name, rt_sandbox_event_t *out, err_t *err)
{
    int v = 0, r = parse(sb_event_names, RT_SB_NEVENTS, "sandbox event", name, &v, err);
    if (r == 0)
        *out = (rt_sandbox_event_t)v;
    return r;
}

int rt_sandbox_next(rt_sandbox_state_t s, rt_sandbox_event_t ev, rt_sandbox_state_t *next,
                    err_t *err)
{
    if ((unsigned)s >= RT_SB_NSTATES || (unsigned)ev >= RT_SB_NEVENTS)
        return err_make(err, EINVAL, "invalid sandbox state %d or event %d", (int)s, (int)ev);
    const cell_t *c = &sb_table[s][ev];
    if (!c->ok)
        return err_make(err, EINVAL, "%s", c->msg);
    *next = (rt_sandbox_state_t)c->next;
    return 0;
}

/* ---- container -------------------------------------------------------------- */

static const char *const ct_state_names[RT_CT_NSTATES] = {
    [RT_CT_CREATING] = "creating", [RT_CT_CREATED] = "created", [RT_CT_RUNNING] = "running",
    [RT_CT_PAUSED] = "paused",     [RT_CT_STOPPED] = "stopped",
};

static const char *const ct_event_names[RT_CT_NEVENTS] = {
    [RT_CT_EV_CREATE_DONE] = "create_done",
    [RT_CT_EV_START] = "start",
    [RT_CT_EV_PAUSE] = "pause",
    [RT_CT_EV_RESUME] = "resume",
    [RT_CT_EV_EXEC] = "exec",
    [RT_CT_EV_KILL] = "kill",
    [RT_CT_EV_EXITED] = "exited",
    [RT_CT_EV_DELETE] = "delete",
    [RT_CT_EV_DELETE_FORCE] = "delete_force",
};

#define NOT_RUNNING  NO("container not running")
#define NOT_PAUSED   NO("container not paused")
#define NOT_STOPPED  NO("cannot delete container {id} that is not stopped: {state}")
#define START_IN     NO("cannot start a container in the {state} state")
#define NOT_CREATING NO("container is not being created: {state}")

static const cell_t ct_table[RT_CT_NSTATES][RT_CT_NEVENTS] = {
    [RT_CT_CREATING] =
        {
            [RT_CT_EV_CREATE_DONE] = GO(RT_CT_CREATED),
            [RT_CT_EV_START] = START_IN,
            [RT_CT_EV_PAUSE] = NOT_RUNNING,
            [RT_CT_EV_RESUME] = NOT_PAUSED,
            [RT_CT_EV_EXEC] = NO("cannot exec in a container that is being created"),
            [RT_CT_EV_KILL] = NOT_RUNNING,
            [RT_CT_EV_EXITED] = GO(RT_CT_STOPPED),
            [RT_CT_EV_DELETE] = NOT_STOPPED,
            [RT_CT_EV_DELETE_FORCE] = GO(RT_CT_STOPPED),
        },
    [RT_CT_CREATED] =
        {
            [RT_CT_EV_CREATE_DONE] = NOT_CREATING,
            [RT_CT_EV_START] = GO(RT_CT_RUNNING),
            [RT_CT_EV_PAUSE] = NOT_RUNNING,
            [RT_CT_EV_RESUME] = NOT_PAUSED,
            [RT_CT_EV_EXEC] = GO(RT_CT_CREATED),
            [RT_CT_EV_KILL] = GO(RT_CT_CREATED),
            [RT_CT_EV_EXITED] = GO(RT_CT_STOPPED),
            [RT_CT_EV_DELETE] = GO(RT_CT_STOPPED),
            [RT_CT_EV_DELETE_FORCE] = GO(RT_CT_STOPPED),
        },
    [RT_CT_RUNNING] =
        {
            [RT_CT_EV_CREATE_DONE] = NOT_CREATING,
            [RT_CT_EV_START] = NO("cannot start an already running container"),
            [RT_CT_EV_PAUSE] = GO(RT_CT_PAUSED),
            [RT_CT_EV_RESUME] = NOT_PAUSED,
            [RT_CT_EV_EXEC] = GO(RT_CT_RUNNING),
            [RT_CT_EV_KILL] = GO(RT_CT_RUNNING),
            [RT_CT_EV_EXITED] = GO(RT_CT_STOPPED),
            [RT_CT_EV_DELETE] = NOT_STOPPED,
            [RT_CT_EV_DELETE_FORCE] = GO(RT_CT_STOPPED),
        },
    [RT_CT_PAUSED] =
        {
            [RT_CT_EV_CREATE_DONE] = NOT_CREATING,
            [RT_CT_EV_START] = START_IN,
            [RT_CT_EV_PAUSE] = NOT_RUNNING,
            [RT_CT_EV_RESUME] = GO(RT_CT_RUNNING),
            [RT_CT_EV_EXEC] = NO("cannot exec in a paused container"),
            [RT_CT_EV_KILL] = GO(RT_CT_PAUSED),
            [RT_CT_EV_EXITED] = GO(RT_CT_STOPPED),
            [RT_CT_EV_DELETE] = NOT_STOPPED,
            [RT_CT_EV_DELETE_FORCE] = GO(RT_CT_STOPPED),
        },
    [RT_CT_STOPPED] =
        {
            [RT_CT_EV_CREATE_DONE] = NOT_CREATING,
            [RT_CT_EV_START] = NO("cannot start a container that has stopped"),
            [RT_CT_EV_PAUSE] = NOT_RUNNING,
            [RT_CT_EV_RESUME] = NOT_PAUSED,
            [RT_CT_EV_EXEC] = NO("cannot exec in a stopped container"),
            [RT_CT_EV_KILL] = NOT_RUNNING,
            [RT_CT_EV_EXITED] = GO(RT_CT_STOPPED),
            [RT_CT_EV_DELETE] = GO(RT_CT_STOPPED),
            [RT_CT_EV_DELETE_FORCE] = GO(RT_CT_STOPPED),
        },
};

const char *rt_container_state_name(rt_container_state_t s)
{
    return (unsigned)s < RT_CT_NSTATES ? ct_state_names[s] : "unknown";
}

const char *rt_container_event_name(rt_container_event_t ev)
{
    return (unsigned)ev < RT_CT_NEVENTS ? ct_event_names[ev] : "unknown";
}

int rt_container_state_parse(const char *name, rt_container_state_t *out, err_t *err)
{
    int v = 0, r = parse(ct_state_names, RT_CT_NSTATES, "container state", name, &v, err);
    if (r == 0)
        *out = (rt_container_state_t)v;
    return r;
}

int rt_container_event_parse(const char *name, rt_container_event_t *out, err_t *err)
{
    int v = 0, r = parse(ct_event_names, RT_CT_NEVENTS, "container event", name, &v, err);
    if (r == 0)
        *out = (rt_container_event_t)v;
    return r;
}

/* Expands "{id}" and "{state}" in a refusal template. */
static int refuse(err_t *err, const char *tmpl, const char *id, const char *state)
{
    char buf[1024];
    size_t o = 0;
    for (const char *p = tmpl; *p && o < sizeof buf - 1;) {
        const char *sub = NULL;
        if (strncmp(p, "{id}", 4) == 0) {
            sub = id ? id : "";
            p += 4;
        } else if (strncmp(p, "{state}", 7) == 0) {
            sub = state;
            p += 7;
        }
        if (sub) {
            size_t n = strlen(sub);
            if (n > sizeof buf - 1 - o)
                n = sizeof buf - 1 - o;
            memcpy(buf + o, sub, n);
            o += n;
        } else {
            buf[o++] = *p++;
        }
    }
    buf[o] = '\0';
    return err_make(err, EINVAL, "%s", buf);
}

int rt_container_next(rt_container_state_t s, rt_container_event_t ev, const char *id,
                      rt_container_state_t *next, err_t *err)
{
    if ((unsigned)s >= RT_CT_NSTATES || (unsigned)ev >= RT_CT_NEVENTS)
        return err_make(err, EINVAL, "invalid container state %d or event %d", (int)s, (int)ev);
    const cell_t *c = &ct_table[s][ev];
    if (!c->ok)
        return refuse(err, c->msg, id, ct_state_names[s]);
    *next = (rt_container_state_t)c->next;
    return 0;
}
