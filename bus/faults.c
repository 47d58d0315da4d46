#include "bus/faults.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_RULES 256
#define PAT_MAX   128

struct rule {
    enum fault_action action;
    unsigned param;
    char type[PAT_MAX], from[PAT_MAX], to[PAT_MAX];
    uint64_t count; /* 0 = unlimited */
    uint64_t skip;  /* matches let through before the rule acts */
    uint64_t seen;  /* matches so far, for skip */
    double prob;
    uint64_t rng;
    uint64_t hits;
    char text[512];
};

struct faults {
    struct rule *rules;
    size_t n;
};

static const char *const action_names[] = {"none",    "drop",       "delay",     "duplicate",
                                           "corrupt", "kill",       "kill-vmm",  "enospc",
                                           "eio",     "agent-exit", "agent-hang"};

const char *fault_action_name(enum fault_action a)
{
    return a <= FAULT_LAST_ACTION ? action_names[a] : "?";
}

const char *fault_effect_target(enum fault_action a, const char *to)
{
    switch (a) {
    case FAULT_KILL:
        return to;
    case FAULT_KILL_VMM:
        return "runtime";
    case FAULT_ENOSPC: /* the state writes are the persist actor's */
    case FAULT_EIO:
        return "persist";
    case FAULT_AGENT_EXIT:
    case FAULT_AGENT_HANG:
        return "agent";
    default:
        return NULL;
    }
}

faults_t *faults_new(void)
{
    return calloc(1, sizeof(faults_t));
}

void faults_destroy(faults_t **fp)
{
    if (!fp || !*fp)
        return;
    free((*fp)->rules);
    free(*fp);
    *fp = NULL;
}

void faults_clear(faults_t *f)
{
    free(f->rules);
    f->rules = NULL;
    f->n = 0;
}

size_t faults_count(const faults_t *f)
{
    return f->n;
}

const char *faults_rule_text(const faults_t *f, size_t i)
{
    return i < f->n ? f->rules[i].text : NULL;
}

uint64_t faults_rule_hits(const faults_t *f, size_t i)
{
    return i < f->n ? f->rules[i].hits : 0;
}

static uint64_t next_rand(uint64_t *s)
{
    /* xorshift64*: cheap, good enough for fault decisions */
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static int parse_uint(const char *v, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (!*v || *v == '-')
        return -1;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end || x > max)
        return -1;
    *out = x;
    return 0;
}

static int parse_rule(char *s, struct rule *r, err_t *err)
{
    memset(r, 0, sizeof *r);
    strcpy(r->type, "*");
    strcpy(r->from, "*");
    strcpy(r->to, "*");
    r->prob = 1.0;
    r->rng = (uint64_t)time(NULL) ^ (uintptr_t)r;

    char *save = NULL;
    char *tok = strtok_r(s, " \t,", &save);
    if (!tok)
        return err_make(err, EINVAL, "empty rule");
    char *colon = strchr(tok, ':');
    if (colon)
        *colon++ = 0;
    for (int a = FAULT_DROP; a <= FAULT_LAST_ACTION; a++)
        if (!strcmp(tok, action_names[a]))
            r->action = a;
    if (!r->action)
        return err_make(err, EINVAL,
                        "unknown action '%s' (drop, delay, duplicate, corrupt, kill, kill-vmm, "
                        "enospc, eio, agent-exit, agent-hang)",
                        tok);
    bool takes_arg = r->action == FAULT_DELAY || r->action == FAULT_DUPLICATE ||
                     r->action == FAULT_CORRUPT || r->action == FAULT_ENOSPC ||
                     r->action == FAULT_EIO;
    if (fault_is_effect(r->action))
        r->count = 1; /* an effect fires once unless told otherwise */
    unsigned long long x;
    if (colon) {
        if (!takes_arg)
            return err_make(err, EINVAL, "%s takes no argument", tok);
        if (parse_uint(colon, 3600000, &x) < 0 || x == 0)
            return err_make(err, EINVAL, "%s: argument '%s' must be an integer 1..3600000", tok,
                            colon);
        r->param = (unsigned)x;
    } else if (r->action == FAULT_DELAY) {
        return err_make(err, EINVAL, "delay needs a duration in ms, e.g. delay:100");
    } else {
        r->param = 1;
    }
    if (r->action == FAULT_DUPLICATE && r->param > 100)
        return err_make(err, EINVAL, "duplicate: at most 100 copies");

    while ((tok = strtok_r(NULL, " \t,", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return err_make(err, EINVAL, "'%s': expected key=value", tok);
        *eq++ = 0;
        if (!strcmp(tok, "type") || !strcmp(tok, "from") || !strcmp(tok, "to")) {
            char *dst = tok[0] == 'f' ? r->from : tok[0] == 't' && tok[1] == 'o' ? r->to : r->type;
            if (!*eq || strlen(eq) >= PAT_MAX)
                return err_make(err, EINVAL, "%s: pattern must be 1..%d characters", tok,
                                PAT_MAX - 1);
            strcpy(dst, eq);
        } else if (!strcmp(tok, "count")) {
            if (parse_uint(eq, UINT64_MAX, &x) < 0 || x == 0)
                return err_make(err, EINVAL, "count: '%s' is not a positive integer", eq);
            r->count = x;
        } else if (!strcmp(tok, "skip")) {
            if (parse_uint(eq, UINT64_MAX, &x) < 0)
                return err_make(err, EINVAL, "skip: '%s' is not an integer", eq);
            r->skip = x;
        } else if (!strcmp(tok, "prob")) {
            char *end;
            errno = 0;
            double p = strtod(eq, &end);
            if (errno || *end || !(p >= 0.0 && p <= 1.0))
                return err_make(err, EINVAL, "prob: '%s' is not a number in [0,1]", eq);
            r->prob = p;
        } else if (!strcmp(tok, "seed")) {
            if (parse_uint(eq, UINT64_MAX, &x) < 0)
                return err_make(err, EINVAL, "seed: '%s' is not an integer", eq);
            r->rng = x ? x : 1;
        } else {
            return err_make(err, EINVAL, "unknown key '%s' (type, from, to, count, skip, prob, seed)",
                            tok);
        }
    }
    char text[sizeof r->text];
    int n = snprintf(text, sizeof text, "%s", action_names[r->action]);
    if (takes_arg)
        n += snprintf(text + n, sizeof text - n, ":%u", r->param);
    n += snprintf(text + n, sizeof text - n, " type=%s from=%s to=%s", r->type, r->from, r->to);
    if (r->count)
        n += snprintf(text + n, sizeof text - n, " count=%llu", (unsigned long long)r->count);
    if (r->skip)
        n += snprintf(text + n, sizeof text - n, " skip=%llu", (unsigned long long)r->skip);
    if (r->prob < 1.0)
        snprintf(text + n, sizeof text - n, " prob=%g", r->prob);
    memcpy(r->text, text, sizeof text);
    return 0;
}

int faults_add(faults_t *f, const char *rules, err_t *err)
{
    if (!rules)
        return 0;
    char *copy = strdup(rules);
    if (!copy)
        return err_make(err, ENOMEM, "faults: out of memory");
    struct rule parsed[32];
    size_t np = 0;
    char *save = NULL;
    int rc = 0;
    int idx = 0;
    for (char *s = strtok_r(copy, ";", &save); s; s = strtok_r(NULL, ";", &save), idx++) {
        if (strspn(s, " \t\n") == strlen(s))
            continue;
        if (np == sizeof parsed / sizeof parsed[0]) {
            rc = err_make(err, E2BIG, "faults: more than 32 rules in one set");
            break;
        }
        if ((rc = parse_rule(s, &parsed[np], err)) < 0) {
            err_wrap(err, "fault rule %d", idx + 1);
            break;
        }
        np++;
    }
    free(copy);
    if (rc < 0)
        return rc;
    if (f->n + np > MAX_RULES)
        return err_make(err, E2BIG, "faults: at most %d rules", MAX_RULES);
    if (!np)
        return 0;
    struct rule *nr = realloc(f->rules, (f->n + np) * sizeof *nr);
    if (!nr)
        return err_make(err, ENOMEM, "faults: out of memory");
    memcpy(nr + f->n, parsed, np * sizeof *nr);
    f->rules = nr;
    f->n += np;
    return 0;
}

fault_hit_t faults_match(faults_t *f, const char *type, const char *from, const char *to)
{
    fault_hit_t hit = {FAULT_NONE, 0, -1};
    if (!f || !f->n)
        return hit;
    int is_bus = !strncmp(type, "bus.", 4);
    for (size_t i = 0; i < f->n; i++) {
        struct rule *r = &f->rules[i];
        if (r->count && r->hits >= r->count)
            continue;
        if (is_bus && strncmp(r->type, "bus.", 4))
            continue;
        if (fnmatch(r->type, type, 0) || fnmatch(r->from, from, 0) || fnmatch(r->to, to, 0))
            continue;
        if (r->seen++ < r->skip)
            continue;
        if (r->prob < 1.0 && (double)(next_rand(&r->rng) >> 11) / 9007199254740992.0 >= r->prob)
            continue;
        r->hits++;
        hit.action = r->action;
        hit.param = r->param;
        hit.rule = (int)i;
        return hit;
    }
    return hit;
}

void faults_corrupt(faults_t *f, int rule, uint8_t *env, size_t len, unsigned n)
{
    uint64_t tmp = 0x1234567;
    uint64_t *rng = (rule >= 0 && (size_t)rule < f->n) ? &f->rules[rule].rng : &tmp;
    /* the body is encoded last, after the key "body" (fixstr a4) */
    static const uint8_t key[] = {0xa4, 'b', 'o', 'd', 'y'};
    size_t start = 0;
    uint8_t *at = memmem(env, len, key, sizeof key);
    if (at)
        start = (size_t)(at - env) + sizeof key;
    if (start >= len)
        start = 0;
    for (unsigned k = 0; k < n && len > start; k++) {
        size_t pos = start + next_rand(rng) % (len - start);
        env[pos] ^= (uint8_t)(1 + next_rand(rng) % 255);
    }
}
