/* faults: fault rules applied by the broker (docs/faults.md).
 *
 * Grammar (HUSK_FAULTS and bus.fault_set):
 *   rules  = rule { ";" rule }
 *   rule   = action [ ":" N ] { (" " | ",") key "=" value }
 *   action = drop | delay | duplicate | corrupt
 *            delay:N     hold the message N ms (N required)
 *            duplicate:N deliver N extra copies (default 1)
 *            corrupt:N   flip N bytes of the body (default 1)
 *   key    = type | from | to     glob on the wire type / actor names (default *)
 *          | count                apply at most N times (default: always)
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

enum fault_action { FAULT_NONE = 0, FAULT_DROP, FAULT_DELAY, FAULT_DUPLICATE, FAULT_CORRUPT };

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

/* Flips n bytes of the body part of an encoded envelope in place, using
 * rule `rule`'s random state. */
void faults_corrupt(faults_t *f, int rule, uint8_t *env, size_t len, unsigned n);

const char *fault_action_name(enum fault_action a);

#endif
