/* runtimes/state: the sandbox and container state machines, as tables.
 *
 * Each machine is a table state x event -> next state or refusal.  The
 * runtime handler asks before acting (rt_*_next) and moves its record to
 * the returned state once the action is done.  Refusals carry runc's words
 * ("cannot start an already running container") so that the CLI prints
 * what runc users and tools (conmon, containerd-shim-runc-v2) expect.
 * Every refusal is -EINVAL.
 *
 * Sandbox (the VM):
 *
 *   new --boot--> booting --booted--> ready --stop--> stopping --stopped--> stopped
 *   new --stop--> stopped             (nothing was started)
 *   booting --stop--> stopping        (abort a boot)
 *   booting --vm_exited--> failed     (the VM died while booting)
 *   ready|stopping --vm_exited--> stopped
 *   any --fail--> failed              (an unrecoverable error; cleanup follows)
 *   failed --stop--> stopping, failed --stopped--> stopped (cleanup of a failure)
 *   stop in stopping or stopped, vm_exited in stopped or failed: no-ops
 *
 * Container (OCI states, plus paused):
 *
 *   creating --create_done--> created --start--> running
 *   running --pause--> paused --resume--> running
 *   creating|created|running|paused --exited--> stopped (init exited; stopped: no-op)
 *   created|running|paused --kill--> same state (the exit comes as exited)
 *   created|running --exec--> same state
 *   created|stopped --delete--> stopped (runc deletes created containers,
 *                                        killing the init)
 *   any --delete_force--> stopped (delete -f: the runtime kills first)
 *
 * Deviations from runc, on purpose: pause is refused in `created` (runc
 * freezes a created container; kata and husk only pause running ones).
 * Kill of a stopped container is refused ("container not running") as
 * runc does; callers wanting kata's silent success for SIGKILL/SIGTERM
 * check the state first. */
#ifndef HUSK_RT_STATE_H
#define HUSK_RT_STATE_H

#include "common/err.h"

/* ---- sandbox ------------------------------------------------------------- */

typedef enum rt_sandbox_state {
    RT_SB_NEW = 0,  /* record exists, nothing started */
    RT_SB_BOOTING,  /* resources prepared, VM starting, agent connecting */
    RT_SB_READY,    /* VM up, agent answering: containers may be created */
    RT_SB_STOPPING, /* stop requested: containers and VM going down */
    RT_SB_STOPPED,  /* VM gone, resources released */
    RT_SB_FAILED,   /* an unrecoverable error happened; must be stopped */
    RT_SB_NSTATES
} rt_sandbox_state_t;

typedef enum rt_sandbox_event {
    RT_SB_EV_BOOT = 0,  /* start the VM */
    RT_SB_EV_BOOTED,    /* VM started and agent connected */
    RT_SB_EV_STOP,      /* stop requested */
    RT_SB_EV_STOPPED,   /* stop completed (VM gone, cleanup done) */
    RT_SB_EV_VM_EXITED, /* the VMM process exited on its own */
    RT_SB_EV_FAIL,      /* an unrecoverable error */
    RT_SB_NEVENTS
} rt_sandbox_event_t;

/* The next state of a sandbox in state s on event ev.  On success *next is
 * set and 0 returned; an illegal move returns -EINVAL with a message. */
int rt_sandbox_next(rt_sandbox_state_t s, rt_sandbox_event_t ev, rt_sandbox_state_t *next,
                    err_t *err);

/* Names: "new", "booting", "ready", "stopping", "stopped", "failed";
 * events "boot", "booted", "stop", "stopped", "vm_exited", "fail".  Static
 * strings; "unknown" for out-of-range values. */
const char *rt_sandbox_state_name(rt_sandbox_state_t s);
const char *rt_sandbox_event_name(rt_sandbox_event_t ev);
/* Parses a name; -EINVAL (with a message) when unknown. */
int rt_sandbox_state_parse(const char *name, rt_sandbox_state_t *out, err_t *err);
int rt_sandbox_event_parse(const char *name, rt_sandbox_event_t *out, err_t *err);

/* ---- container ------------------------------------------------------------- */

typedef enum rt_container_state {
    RT_CT_CREATING = 0, /* create in progress */
    RT_CT_CREATED,      /* environment ready, user process not started */
    RT_CT_RUNNING,      /* user process started */
    RT_CT_PAUSED,       /* frozen */
    RT_CT_STOPPED,      /* the init process exited (or create failed) */
    RT_CT_NSTATES
} rt_container_state_t;

typedef enum rt_container_event {
    RT_CT_EV_CREATE_DONE = 0, /* create finished */
    RT_CT_EV_START,           /* start the user process */
    RT_CT_EV_PAUSE,
    RT_CT_EV_RESUME,
    RT_CT_EV_EXEC,         /* run an extra process (no state change) */
    RT_CT_EV_KILL,         /* send a signal (no state change) */
    RT_CT_EV_EXITED,       /* the init process exited */
    RT_CT_EV_DELETE,       /* delete without force */
    RT_CT_EV_DELETE_FORCE, /* delete -f */
    RT_CT_NEVENTS
} rt_container_event_t;

/* The next state of container id (used in messages; may be NULL) in state
 * s on event ev.  -EINVAL with runc's message for illegal moves. */
int rt_container_next(rt_container_state_t s, rt_container_event_t ev, const char *id,
                      rt_container_state_t *next, err_t *err);

/* Names: the OCI status strings "creating", "created", "running",
 * "paused", "stopped"; events "create_done", "start", "pause", "resume",
 * "exec", "kill", "exited", "delete", "delete_force". */
const char *rt_container_state_name(rt_container_state_t s);
const char *rt_container_event_name(rt_container_event_t ev);
int rt_container_state_parse(const char *name, rt_container_state_t *out, err_t *err);
int rt_container_event_parse(const char *name, rt_container_event_t *out, err_t *err);

#endif
