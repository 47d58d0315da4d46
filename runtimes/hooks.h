/* runtimes/hooks: OCI hooks run on the host (docs/hooks.md).
 *
 * A hook list (one kind: prestart, createRuntime, createContainer,
 * startContainer, poststart, poststop) runs in order.  Each hook is
 * spawned with posix_spawn: its path (no PATH search), its args (args[0]
 * as given; the path when args is empty), exactly its env (nothing
 * inherited), the OCI state JSON on stdin (a sealed memfd), stdout and
 * stderr captured (first RT_HOOK_OUTPUT_MAX bytes each), cwd = the bundle
 * (as runc, which chdirs into it; "/" when it is gone), in a new process
 * group, default signal dispositions and an empty signal mask, and no
 * other inherited fd (closefrom 3).  With a timeout the hook's whole
 * process group is SIGKILLed when it expires.
 *
 * Waiting needs no SIGCHLD: the child's pidfd is watched on the caller's
 * libevent base and reaped with waitid(P_PIDFD).  The process must not
 * reap children it did not start (no waitpid(-1) / SIGCHLD auto-reap).
 *
 * Failure semantics (runtime-spec, "Lifecycle"):
 *  - prestart, createRuntime, createContainer, startContainer are fatal:
 *    the list stops at the first failing hook, and the result is negative;
 *    the caller must fail the operation, then stop and delete the
 *    container (running the poststop hooks).
 *  - poststart and poststop are not: a failing hook is recorded, the
 *    following hooks still run, and the result is RT_HOOKS_WARNED (> 0)
 *    with the failures in err; the caller logs them as a warning and goes
 *    on.
 * Failure messages follow runc's: "error running prestart hook #1
 * (/usr/bin/h): exit status 3, stdout: ..., stderr: ...". */
#ifndef HUSK_RT_HOOKS_H
#define HUSK_RT_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/err.h"
#include "oci/spec.h"

struct event_base;

#define RT_HOOK_OUTPUT_MAX 4096 /* captured bytes of stdout and of stderr */
#define RT_HOOKS_WARNED    1    /* result: non-fatal hooks failed (see err) */

/* The OCI state handed to hooks on stdin.  All borrowed. */
typedef struct rt_hook_state {
    const char *oci_version; /* NULL = "1.0.2" */
    const char *id;          /* container id */
    const char *status;      /* "creating", "created", "running", "stopped" */
    pid_t pid;               /* <= 0: omitted (poststop, as runc) */
    const char *bundle;      /* absolute bundle path */
    const oci_kv_t *annotations;
    size_t n_annotations;
} rt_hook_state_t;

/* The state JSON: {"ociVersion","id","status","pid","bundle","annotations"}.
 * Caller owns the string (free()); NULL when a string is not UTF-8. */
char *rt_hook_state_json(const rt_hook_state_t *st);

/* Whether a failure of this kind fails the operation (see above). */
bool rt_hook_kind_fatal(enum oci_hook_kind kind);

/* ---- asynchronous ----------------------------------------------------------- */

typedef struct rt_hooks_run rt_hooks_run_t;

/* Called once on the base's thread when the list is done: result 0 (all
 * hooks succeeded or none), RT_HOOKS_WARNED, or a negative errno for a
 * fatal failure.  err is set unless result is 0; borrowed for the call
 * (use err_move to keep it).  The run frees itself after the callback:
 * the handle is invalid from then on. */
typedef void (*rt_hooks_done_fn)(int result, err_t *err, void *arg);

/* Starts running hooks[0..n) of kind on base.  The hooks and the state
 * are copied: the caller may free them at once.  done is never called
 * from within this function (not even for n == 0).  *out (optional) is a
 * handle for rt_hooks_cancel, valid until done runs.  Fails only for bad
 * arguments or when the state cannot be serialized. */
int rt_hooks_start(struct event_base *base, enum oci_hook_kind kind, const oci_hook_t *hooks,
                   size_t n, const rt_hook_state_t *st, rt_hooks_done_fn done, void *arg,
                   rt_hooks_run_t **out, err_t *err);

/* Stops a run: SIGKILLs the running hook's process group, reaps it, frees
 * everything; done is not called.  Accepts NULL and *NULL; nulls *run_p. */
void rt_hooks_cancel(rt_hooks_run_t **run_p);

/* ---- synchronous ------------------------------------------------------------- */

/* Runs the list to the end on a private event base.  Returns 0,
 * RT_HOOKS_WARNED (err holds the failures) or a negative errno. */
int rt_hooks_run(enum oci_hook_kind kind, const oci_hook_t *hooks, size_t n,
                 const rt_hook_state_t *st, err_t *err);

#endif
