/* resource_actor: the "resources" actor, the sandbox's resource manager.
 *
 * It owns what a sandbox holds on the host, and nobody else touches it:
 *  - the host cgroup of the VMM (resources/cgroup_host.h), named
 *    <parent>/<sandbox-id>-<12 hex digits of a hash of the runtime root>
 *    (res_actor_cgroup_name): two runtime roots (runc --root) may run a
 *    sandbox of the same id, and a restarted daemon finds its cgroup again;
 *  - the 9p share under the sandbox directory and the per-container shares
 *    below it (resources/share.h);
 *  - the taps in the pod's network namespace (resources/net.h).
 * One sandbox per actor (one per daemon).  The runtime asks with res.*
 * messages (messages/catalog.h): prepare_sandbox -> sandbox_ready,
 * add_pid, prepare_container -> container_ready, release_container,
 * rescan_network -> network_changes, release_endpoint, release_sandbox.
 *
 * Every request is all or nothing: a prepare that fails half-way undoes
 * what it did before it answers the error.  release_sandbox tears down
 * everything still held and may come twice; the actor's fini (stop, death
 * by fault injection) does the same for whatever is still held, so nothing
 * outlives the actor by accident.  prepare_sandbox with adopt takes over
 * what an earlier daemon of the same sandbox set up (the cgroup by its
 * name, the share and the container shares under the sandbox directory,
 * the taps named in the request), creating nothing, so that a later
 * release tears it down.
 *
 * Requests come from other actors of the daemon, never from the guest;
 * they are still validated (ids, absolute paths, counts) and a bad one gets
 * an EINVAL naming the field. */
#ifndef HUSK_RESOURCE_ACTOR_H
#define HUSK_RESOURCE_ACTOR_H

#include <stddef.h>

#include "actors/actor.h"

#define RES_ACTOR_NAME "resources"

typedef struct res_actor_opts {
    const char *cgroup_fs_root; /* NULL: /sys/fs/cgroup (tests: a plain directory) */
    const char *cgroup_parent;  /* NULL: "husk" */
} res_actor_opts_t;

/* Starts the actor; ro may be NULL (defaults).  Caller owns *out and stops
 * it with actor_stop() (after the hypervisor: the cgroup empties when the
 * VMM is gone). */
int res_actor_start(const actor_opts_t *opts, const res_actor_opts_t *ro, actor_t **out,
                    err_t *err);

/* The cgroup name of sandbox_id under runtime root: "<id>-<hash>", the hash
 * (FNV-1a 64, 48 bits in hex) of root's canonical path (the path as given,
 * trailing slashes dropped, when it does not exist).  Pure. */
int res_actor_cgroup_name(const char *root, const char *sandbox_id, char *out, size_t cap,
                          err_t *err);

#endif
