/* agent/guest/devfilter: the device cgroup rules as an eBPF program.  See
 * devfilter.h for the semantics.
 *
 * The program, for the context { access_type = access << 16 | type,
 * major, minor }:
 *
 *     r2 = type; r4 = access; r5 = major; r6 = minor
 *     for each access bit b in m, r, w:
 *         if (r4 & b):
 *             for each rule naming b, last first:
 *                 if the rule matches (r2, r5, r6): allow -> next bit,
 *                                                    deny  -> return 0
 *     return 1
 *
 * A rule that matches every device ends its bit's list: the rules before
 * it can never decide that bit. */
#include "agent/guest/devfilter.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"

struct rule {
    char type;      /* 'a', 'c', 'b' */
    int64_t major;  /* -1: any */
    int64_t minor;  /* -1: any */
    unsigned access; /* DEVFILTER_* bits */
    bool allow;
};

/* runc's default allowed devices (libcontainer/specconv), plus the
 * console, as its older releases and kata's agent allow. */
static const struct rule defaults[] = {
    {'c', -1, -1, DEVFILTER_MKNOD, true}, {'b', -1, -1, DEVFILTER_MKNOD, true},
    {'c', 1, 3, 7, true},   /* null */
    {'c', 1, 8, 7, true},   /* random */
    {'c', 1, 7, 7, true},   /* full */
    {'c', 5, 0, 7, true},   /* tty */
    {'c', 1, 5, 7, true},   /* zero */
    {'c', 1, 9, 7, true},   /* urandom */
    {'c', 5, 1, 7, true},   /* console */
    {'c', 136, -1, 7, true}, /* pts */
    {'c', 5, 2, 7, true},   /* ptmx */
    {'c', 10, 200, 7, true}, /* tun */
};
#define N_DEFAULTS (sizeof defaults / sizeof *defaults)

static int to_rule(const oci_device_rule_t *d, size_t i, struct rule *out, err_t *err)
{
    out->type = d->type ? d->type[0] : 'a';
    if (!strchr("acb", out->type) || (d->type && d->type[1]))
        return err_make(err, EINVAL, "linux.resources.devices[%zu].type: `%s` is not a, c or b", i,
                        d->type);
    out->major = d->major.set ? d->major.value : -1;
    out->minor = d->minor.set ? d->minor.value : -1;
    if (out->major < -1 || out->major > UINT32_MAX || out->minor < -1 || out->minor > UINT32_MAX)
        return err_make(err, EINVAL, "linux.resources.devices[%zu]: major/minor out of range", i);
    out->access = 0;
    for (const char *a = d->access ? d->access : "rwm"; *a; a++) {
        if (*a == 'm')
            out->access |= DEVFILTER_MKNOD;
        else if (*a == 'r')
            out->access |= DEVFILTER_READ;
        else if (*a == 'w')
            out->access |= DEVFILTER_WRITE;
        else
            return err_make(err, EINVAL,
                            "linux.resources.devices[%zu].access: `%s` is not letters of \"rwm\"",
                            i, d->access);
    }
    out->allow = d->allow;
    return 0;
}

/* ---- code emission ---------------------------------------------------- */

struct prog {
    struct bpf_insn *insns;
    size_t n, cap;
};

static void emit(struct prog *p, uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->insns = realloc(p->insns, p->cap * sizeof *p->insns);
        if (!p->insns)
            abort();
    }
    p->insns[p->n++] = (struct bpf_insn){
        .code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm};
}

#define LDX_W(dst, src, off)  emit(p, BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
#define MOV_REG(dst, src)     emit(p, BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
#define MOV_IMM(dst, imm)     emit(p, BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
#define AND_IMM(dst, imm)     emit(p, BPF_ALU64 | BPF_AND | BPF_K, dst, 0, 0, imm)
#define RSH_IMM(dst, imm)     emit(p, BPF_ALU64 | BPF_RSH | BPF_K, dst, 0, 0, imm)
#define JNE_IMM(dst, imm, off) emit(p, BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm)
#define JEQ_IMM(dst, imm, off) emit(p, BPF_JMP | BPF_JEQ | BPF_K, dst, 0, off, imm)
#define JA(off)               emit(p, BPF_JMP | BPF_JA, 0, 0, off, 0)
#define EXIT()                emit(p, BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

/* Registers: r1 context, r2 type, r4 access, r5 major, r6 minor, r7 scratch. */
enum { R0, R1, R2, R3, R4, R5, R6, R7 };

static void emit_bit(struct prog *p, const struct rule *rules, size_t n, unsigned bit)
{
    size_t *to_next = calloc(n + 1, sizeof *to_next), nj = 0;
    if (!to_next)
        abort();
    MOV_REG(R7, R4);
    AND_IMM(R7, (int32_t)bit);
    to_next[nj++] = p->n;
    JEQ_IMM(R7, 0, 0);
    for (size_t k = n; k-- > 0;) {
        const struct rule *r = &rules[k];
        if (!(r->access & bit))
            continue;
        int conds = (r->type != 'a') + (r->major >= 0) + (r->minor >= 0);
        int len = conds + (r->allow ? 1 : 2);
        int left = len; /* instructions of this block not yet emitted */
        if (r->type != 'a')
            JNE_IMM(R2, r->type == 'c' ? BPF_DEVCG_DEV_CHAR : BPF_DEVCG_DEV_BLOCK, --left);
        if (r->major >= 0)
            JNE_IMM(R5, (int32_t)r->major, --left);
        if (r->minor >= 0)
            JNE_IMM(R6, (int32_t)r->minor, --left);
        if (r->allow) {
            to_next[nj++] = p->n;
            JA(0);
        } else {
            MOV_IMM(R0, 0);
            EXIT();
        }
        if (conds == 0)
            break; /* matches every device: earlier rules never decide this bit */
    }
    /* no rule decided: allowed; patch the jumps to here */
    for (size_t j = 0; j < nj; j++)
        p->insns[to_next[j]].off = (int16_t)(p->n - to_next[j] - 1);
    free(to_next);
}

int devfilter_build(const oci_device_rule_t *rules, size_t n, struct bpf_insn **insns,
                    size_t *n_insns, err_t *err)
{
    _cleanup_free_ struct rule *all = calloc(n + N_DEFAULTS, sizeof *all);
    if (!all)
        return err_make(err, ENOMEM, "device filter: out of memory");
    for (size_t i = 0; i < n; i++) {
        int r = to_rule(&rules[i], i, &all[i], err);
        if (r < 0)
            return r;
    }
    memcpy(all + n, defaults, sizeof defaults);
    struct prog prog = {0}, *p = &prog;
    LDX_W(R7, R1, 0); /* access_type */
    MOV_REG(R2, R7);
    AND_IMM(R2, 0xffff);
    MOV_REG(R4, R7);
    RSH_IMM(R4, 16);
    LDX_W(R5, R1, 4); /* major */
    LDX_W(R6, R1, 8); /* minor */
    static const unsigned bits[] = {DEVFILTER_MKNOD, DEVFILTER_READ, DEVFILTER_WRITE};
    for (size_t b = 0; b < 3; b++)
        emit_bit(p, all, n + N_DEFAULTS, bits[b]);
    MOV_IMM(R0, 1);
    EXIT();
    *insns = prog.insns;
    *n_insns = prog.n;
    return 0;
}

/* ---- load and attach ---------------------------------------------------- */

static int sys_bpf(int cmd, union bpf_attr *attr)
{
    return (int)syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

int devfilter_apply(const char *dir, const oci_device_rule_t *rules, size_t n,
                    bool skip_unsupported, err_t *err)
{
    if (n == 0)
        return 0;
    _cleanup_free_ struct bpf_insn *insns = NULL;
    size_t n_insns = 0;
    int r = devfilter_build(rules, n, &insns, &n_insns, err);
    if (r < 0)
        return r;
    static char log[16384];
    union bpf_attr load = {0};
    load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    load.insns = (uint64_t)(uintptr_t)insns;
    load.insn_cnt = (uint32_t)n_insns;
    load.license = (uint64_t)(uintptr_t) "GPL";
    _cleanup_close_ int prog = sys_bpf(BPF_PROG_LOAD, &load);
    if (prog < 0 && (errno == ENOSYS || errno == EPERM) && skip_unsupported)
        return 1;
    if (prog < 0 && errno == EINVAL) {
        /* again, with the verifier's reasons */
        log[0] = '\0';
        load.log_buf = (uint64_t)(uintptr_t)log;
        load.log_size = sizeof log;
        load.log_level = 1;
        prog = sys_bpf(BPF_PROG_LOAD, &load);
        if (prog < 0) {
            size_t len = strlen(log);
            while (len && log[len - 1] == '\n')
                log[--len] = '\0';
            const char *last = strrchr(log, '\n');
            return err_make(err, EINVAL, "load the device filter (%zu instructions): %s", n_insns,
                            last ? last + 1 : log[0] ? log : strerror(EINVAL));
        }
    }
    if (prog < 0)
        return err_errno(err, "load the device filter (%zu instructions)", n_insns);
    _cleanup_close_ int cg = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg < 0)
        return err_errno(err, "open cgroup %s", dir);
    union bpf_attr at = {0};
    at.target_fd = (uint32_t)cg;
    at.attach_bpf_fd = (uint32_t)prog;
    at.attach_type = BPF_CGROUP_DEVICE;
    at.attach_flags = 0;
    if (sys_bpf(BPF_PROG_ATTACH, &at) < 0) {
        if ((errno == EPERM || errno == EINVAL) && skip_unsupported)
            return 1;
        return err_errno(err, "attach the device filter to cgroup %s", dir);
    }
    return 0;
}
