/* hypervisor_actor: the "hypervisor" actor.  Serves hv.* messages on top
 * of hypervisors/hv.h and publishes hv.exited when the VM (or the local
 * agent process) dies.  One VM per actor (one sandbox per daemon). */
#ifndef HUSK_HYPERVISOR_ACTOR_H
#define HUSK_HYPERVISOR_ACTOR_H

#include "actors/actor.h"
#include "common/config.h"

#define HV_ACTOR_NAME "hypervisor"

/* cfg is borrowed and must outlive the actor.  agent_binary: husk-agent
 * for the local backend (may be NULL for qemu).  Caller owns *out. */
int hv_actor_start(const actor_opts_t *opts, const cfg_t *cfg, const char *agent_binary,
                   actor_t **out, err_t *err);

#endif
