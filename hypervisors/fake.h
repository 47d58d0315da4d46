/* fake: a scriptable hypervisor backend for actor and runtime tests.
 *
 * hv_fake_ops behaves like a VMM that starts, stops, pauses and hotplugs
 * instantly.  Each operation's result can be scripted; completions are
 * delivered from the event_base on the next loop iteration, like a real
 * backend's.  Tests inject events (e.g. the VM's death) directly. */
#ifndef HUSK_HV_FAKE_H
#define HUSK_HV_FAKE_H

#include "hypervisors/hv.h"

/* Operation names: "prepare", "start", "stop", "pause", "resume",
 * "add_device", "remove_device", "resize_vcpus", "resize_memory", "save",
 * "restore", "attach" (attach first checks that the pid lives with its start
 * time, as the real backends do). */

/* The next calls of `op` complete with status (0 or -errno) after delay_ms.
 * A negative status makes the completion fail with that code and message
 * "fake: <op> scripted failure". */
int hv_fake_script(hv_t *hv, const char *op, int status, int delay_ms);
/* The next call of `op` fails synchronously (returns status, done not
 * called). */
int hv_fake_fail_now(hv_t *hv, const char *op, int status);
/* How many times `op` was called. */
unsigned hv_fake_calls(hv_t *hv, const char *op);
/* Delivers ev to the owner now (synchronously).  EXITED marks the fake VM
 * as stopped. */
void hv_fake_emit(hv_t *hv, const struct hv_event *ev);

#endif
