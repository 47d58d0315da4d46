/* faults: fault rules applied by the broker (docs/faults.md).
 *
 * Grammar (HUSK_FAULTS and bus.fault_set):
 *   rules  = rule { ";" rule }
 *   rule   = action [ ":" N ] { (" " | ",") key "=" value }
 *   action = drop | delay | duplicate | corrupt
 *          | kill | kill-vmm | enospc | eio | agent-exit | agent-hang
 *            delay:N     hold the message N ms (N required)
 *            duplicate:N deliver N extra copies (default 1)
 *            corrupt:N   flip N bytes of the body (default 1)
 *            enospc:N    fail the runtime's next N state writes (default 1)
 *            kill...     effects outside the bus, fired by the matching
 *                        message (see fault_is_effect below)
 *   key    = type | from | to     glob on the wire type / actor names (default *)
 *          | count                apply at most N times (default: always)
 *          | skip                 let the first N matching messages pass
 *          | prob                 apply with probability P in [0,1] (default 1)
 *          | seed                 seed of this rule's random choices
 * Example: "delay:200 type=agent.* count=3; drop to=hypervisor prob=0.5".
 * bus.* messages are only affected by rules whose type starts with "bus.". */
#ifndef HUSK_FAULTS_H
#define HUSK_FAULTS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct faults faults_t;

enum fault_action {
    FAULT_NONE = 0,
    FAULT_DROP,
    FAULT_DELAY,
    FAULT_DUPLICATE,
    FAULT_CORRUPT,
    /* effects: the broker sends a fault.inject to the actor that carries
     * them out, then delivers the triggering message FAULT_EFFECT_HOLD_MS
     * later; count defaults to 1 */
    FAULT_KILL,       /* the trigger's receiver dies */
    FAULT_KILL_VMM,   /* SIGKILL of the VMM (runtime) */
    FAULT_ENOSPC,     /* next N state writes fail (runtime) */
    FAULT_EIO,        /* same with EIO */
    FAULT_AGENT_EXIT, /* husk-agent exits (agent) */
    FAULT_AGENT_HANG, /* husk-agent stops answering (agent) */
};
#define FAULT_LAST_ACTION    FAULT_AGENT_HANG
#define FAULT_EFFECT_HOLD_MS 200

static inline int fault_is_effect(enum fault_action a)
{
    return a >= FAULT_KILL;
}

typedef struct fault_hit {
    enum fault_action action;
    unsigned param; /* delay ms, copies, or bytes to flip */
    int rule;       /* index of the rule that fired */
} fault_hit_t;

/* Caller owns return value and must destroy it when done. */
faults_t *faults_new(void);
void faults_destroy(faults_t **f);

/* Parses rules and appends them; on error nothing is added. */
int faults_add(faults_t *f, const char *rules, err_t *err);
void faults_clear(faults_t *f);
size_t faults_count(const faults_t *f);
/* Canonical text of rule i (borrowed) and how often it fired. */
const char *faults_rule_text(const faults_t *f, size_t i);
uint64_t faults_rule_hits(const faults_t *f, size_t i);

/* The first rule that matches and fires for this message, or FAULT_NONE. */
fault_hit_t faults_match(faults_t *f, const char *type, const char *from, const char *to);

/* The actor that carries out an effect fired by a message to `to`. */
const char *fault_effect_target(enum fault_action a, const char *to);

/* Flips n bytes of the body part of an encoded envelope in place, using
 * rule `rule`'s random state. */
void faults_corrupt(faults_t *f, int rule, uint8_t *env, size_t len, unsigned n);

const char *fault_action_name(enum fault_action a);

#endif
