/* runtime_actor: the "runtime" actor, the virt-container runtime handler.
 *
 * One sandbox per daemon.  It serves rt.* from the front ends and
 * orchestrates the other actors by message: hypervisor (hv.*), agent
 * (agent.*), and persists every state change under the runtime root.
 * The sandbox boots with its first container; the daemon ends (done_fd
 * becomes readable) after the last container is deleted, the sandbox
 * failed with no containers left, or rt.shutdown. */
#ifndef HUSK_RUNTIME_ACTOR_H
#define HUSK_RUNTIME_ACTOR_H

#include "actors/actor.h"
#include "common/config.h"

#define RT_ACTOR_NAME "runtime"

typedef struct rt_actor_opts {
    const cfg_t *cfg;       /* borrowed; outlives the actor */
    const char *root;       /* runtime root (/run/husk) */
    const char *sandbox_id; /* this daemon's sandbox */
    int done_fd;            /* eventfd written once when the daemon may exit */
    /* Restore (docs/state.md): take over the sandbox of an existing state
     * directory whose VMM outlived its daemon, instead of a new one.
     * restored_fd: eventfd written once when that ended, with 1 (restored:
     * serve) or 2 (given up: the VMM is killed, done_fd follows). */
    bool restore;
    int restored_fd;
} rt_actor_opts_t;

int rt_actor_start(const actor_opts_t *opts, const rt_actor_opts_t *ro, actor_t **out, err_t *err);

#endif
