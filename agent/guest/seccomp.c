/* agent/guest/seccomp: an OCI seccomp profile to a libseccomp filter, with
 * runc's semantics: unknown syscall names are skipped (profiles list
 * syscalls of many kernels and arches), rules whose action equals the
 * default are skipped, arguments with a repeated index become separate
 * rules (OR) while distinct indexes combine in one rule (AND), and the
 * filter never sets no_new_privs by itself. */
#include <errno.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>

#include "agent/guest/container-internal.h"

static const enum scmp_compare cmp_ops[OCI_SCMP_CMP_NOPS] = {
    [OCI_SCMP_CMP_NE] = SCMP_CMP_NE,
    [OCI_SCMP_CMP_LT] = SCMP_CMP_LT,
    [OCI_SCMP_CMP_LE] = SCMP_CMP_LE,
    [OCI_SCMP_CMP_EQ] = SCMP_CMP_EQ,
    [OCI_SCMP_CMP_GE] = SCMP_CMP_GE,
    [OCI_SCMP_CMP_GT] = SCMP_CMP_GT,
    [OCI_SCMP_CMP_MASKED_EQ] = SCMP_CMP_MASKED_EQ,
};

static int scmp_action(enum oci_seccomp_action a, oci_opt_int_t errno_ret, uint32_t *out,
                       err_t *err)
{
    uint16_t ret = errno_ret.set ? (uint16_t)errno_ret.value : EPERM;
    switch (a) {
    case OCI_SCMP_ACT_KILL:
    case OCI_SCMP_ACT_KILL_THREAD:
        *out = SCMP_ACT_KILL_THREAD;
        return 0;
    case OCI_SCMP_ACT_KILL_PROCESS:
        *out = SCMP_ACT_KILL_PROCESS;
        return 0;
    case OCI_SCMP_ACT_TRAP:
        *out = SCMP_ACT_TRAP;
        return 0;
    case OCI_SCMP_ACT_ERRNO:
        *out = SCMP_ACT_ERRNO(ret);
        return 0;
    case OCI_SCMP_ACT_TRACE:
        *out = SCMP_ACT_TRACE(ret);
        return 0;
    case OCI_SCMP_ACT_ALLOW:
        *out = SCMP_ACT_ALLOW;
        return 0;
    case OCI_SCMP_ACT_LOG:
        *out = SCMP_ACT_LOG;
        return 0;
    default:
        return err_make(err, ENOTSUP, "seccomp action %s is not supported by husk",
                        oci_seccomp_action_name(a));
    }
}

static int arch_token(const char *name, uint32_t *out)
{
    char lower[64];
    if (strncmp(name, "SCMP_ARCH_", 10) != 0 || strlen(name + 10) >= sizeof(lower))
        return -1;
    size_t i = 0;
    for (const char *s = name + 10; *s; s++)
        lower[i++] = (char)(*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);
    lower[i] = '\0';
    uint32_t t = seccomp_arch_resolve_name(lower);
    if (t == 0)
        return -1;
    *out = t;
    return 0;
}

static const struct {
    const char *name;
    enum scmp_filter_attr attr;
} flag_attrs[] = {
    {"SECCOMP_FILTER_FLAG_TSYNC", SCMP_FLTATR_CTL_TSYNC},
    {"SECCOMP_FILTER_FLAG_LOG", SCMP_FLTATR_CTL_LOG},
    {"SECCOMP_FILTER_FLAG_SPEC_ALLOW", SCMP_FLTATR_CTL_SSB},
};

int container_seccomp_validate(const oci_seccomp_t *s, err_t *err)
{
    uint32_t act, arch;
    if (s->listener_path)
        return err_make(err, ENOTSUP,
                        "linux.seccomp.listenerPath: seccomp notify is not supported by husk");
    if (scmp_action(s->default_action, s->default_errno_ret, &act, err) < 0)
        return err_wrap(err, "linux.seccomp.defaultAction");
    for (size_t i = 0; i < s->n_architectures; i++)
        if (arch_token(s->architectures[i], &arch) < 0)
            return err_make(err, EINVAL, "linux.seccomp.architectures[%zu]: unknown %s", i,
                            s->architectures[i]);
    for (size_t i = 0; i < s->n_flags; i++) {
        bool known = false;
        for (size_t j = 0; j < sizeof(flag_attrs) / sizeof(*flag_attrs); j++)
            known |= strcmp(flag_attrs[j].name, s->flags[i]) == 0;
        if (!known)
            return err_make(err, ENOTSUP, "linux.seccomp.flags[%zu]: %s is not supported", i,
                            s->flags[i]);
    }
    for (size_t i = 0; i < s->n_syscalls; i++)
        if (scmp_action(s->syscalls[i].action, s->syscalls[i].errno_ret, &act, err) < 0)
            return err_wrap(err, "linux.seccomp.syscalls[%zu].action", i);
    return 0;
}

static int add_rule(scmp_filter_ctx ctx, const oci_seccomp_syscall_t *sc, const char *name,
                    uint32_t act, err_t *err)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR)
        return 0; /* not a syscall of this kernel/arch: skipped, as runc does */
    struct scmp_arg_cmp cmp[6];
    bool repeated = false;
    for (size_t i = 0; i < sc->n_args; i++)
        for (size_t j = 0; j < i; j++)
            repeated |= sc->args[i].index == sc->args[j].index;
    if (sc->n_args > 6 && !repeated)
        return err_make(err, EINVAL, "seccomp rule for %s: more than 6 arguments", name);
    int r = 0;
    if (sc->n_args == 0) {
        r = seccomp_rule_add_array(ctx, act, nr, 0, NULL);
    } else if (!repeated) {
        for (size_t i = 0; i < sc->n_args; i++)
            cmp[i] = (struct scmp_arg_cmp){sc->args[i].index, cmp_ops[sc->args[i].op],
                                           sc->args[i].value, sc->args[i].value_two};
        r = seccomp_rule_add_array(ctx, act, nr, (unsigned)sc->n_args, cmp);
    } else {
        for (size_t i = 0; r >= 0 && i < sc->n_args; i++) {
            cmp[0] = (struct scmp_arg_cmp){sc->args[i].index, cmp_ops[sc->args[i].op],
                                           sc->args[i].value, sc->args[i].value_two};
            r = seccomp_rule_add_array(ctx, act, nr, 1, cmp);
        }
    }
    if (r < 0)
        return err_make(err, -r, "seccomp rule for %s: %s", name, strerror(-r));
    return 0;
}

int container_seccomp_build(const oci_seccomp_t *s, void **ctx_out, err_t *err)
{
    uint32_t def, act;
    int r = container_seccomp_validate(s, err);
    if (r < 0)
        return r;
    scmp_action(s->default_action, s->default_errno_ret, &def, err);
    scmp_filter_ctx ctx = seccomp_init(def);
    if (!ctx)
        return err_make(err, ENOMEM, "seccomp_init failed");
    /* no_new_privs is the spec's business (process.noNewPrivileges). */
    if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0)
        goto fail_attr;
    for (size_t i = 0; i < s->n_flags; i++)
        for (size_t j = 0; j < sizeof(flag_attrs) / sizeof(*flag_attrs); j++)
            if (strcmp(flag_attrs[j].name, s->flags[i]) == 0 &&
                (r = seccomp_attr_set(ctx, flag_attrs[j].attr, 1)) < 0)
                goto fail_attr;
    for (size_t i = 0; i < s->n_architectures; i++) {
        uint32_t arch = 0;
        arch_token(s->architectures[i], &arch);
        r = seccomp_arch_add(ctx, arch);
        if (r < 0 && r != -EEXIST) {
            seccomp_release(ctx);
            return err_make(err, -r, "seccomp: add architecture %s: %s", s->architectures[i],
                            strerror(-r));
        }
    }
    for (size_t i = 0; i < s->n_syscalls; i++) {
        const oci_seccomp_syscall_t *sc = &s->syscalls[i];
        scmp_action(sc->action, sc->errno_ret, &act, err);
        if (act == def)
            continue;
        for (size_t n = 0; n < sc->n_names; n++) {
            if ((r = add_rule(ctx, sc, sc->names[n], act, err)) < 0) {
                seccomp_release(ctx);
                return err_wrap(err, "linux.seccomp.syscalls[%zu]", i);
            }
        }
    }
    *ctx_out = ctx;
    return 0;
fail_attr:
    seccomp_release(ctx);
    return err_make(err, -r, "seccomp: set filter attribute: %s", strerror(-r));
}

int container_seccomp_load(void *ctx, err_t *err)
{
    int r = seccomp_load(ctx);
    if (r < 0)
        return err_make(err, -r, "load seccomp filter: %s", strerror(-r));
    return 0;
}

void container_seccomp_release(void **ctx_p)
{
    if (ctx_p && *ctx_p) {
        seccomp_release(*ctx_p);
        *ctx_p = NULL;
    }
}
