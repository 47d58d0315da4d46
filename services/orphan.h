/* orphan: what a dead sandbox daemon would have released, for a front end
 * that finds the daemon gone and no restore coming (`husk delete` of a
 * dead sandbox's last container, the shim's `delete` after its shim
 * died).  There is no actor left to ask, so this is the one place outside
 * the actors that touches their resources: the VMM that outlived its
 * daemon (killed and waited for), the share's mounts under the sandbox
 * dir, the host cgroup (by the resources actor's name for it), the VM's
 * taps recorded in sandbox.json (adopted and detached, so the pod's
 * namespace is left as it was) and the local agent's cgroup.  Best
 * effort: each failure is logged and the rest still done.  The caller
 * removes the state afterwards (persist_sandbox_remove refuses while a
 * mount is left). */
#ifndef HUSK_SERVICES_ORPHAN_H
#define HUSK_SERVICES_ORPHAN_H

#include "persist/store.h"

void svc_release_orphaned_sandbox(persist_store_t *store, const char *root, const char *sandbox_id);

#endif
