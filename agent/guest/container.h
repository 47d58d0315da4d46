/* agent/guest/container: create containers from an OCI spec, the way runc
 * does on a host.  Used by husk-agent inside the guest VM (and by the
 * tests/helpers/oci_run helper on a host).
 *
 * Shape (runc's create/start split):
 *
 *   parent ── fork ──> stage 1: joins the namespaces given by path (user
 *                      first), unshares the new ones (user first, so that
 *                      the parent can write the id maps), then clones
 *                      stage 2 with CLONE_PARENT, reports its pid, _exits.
 *                      stage 2 = container init: mounts, /dev, pivot_root,
 *                      terminal, hostname, sysctl, read-only and masked
 *                      paths, personality, capabilities, user and groups,
 *                      umask, cwd, no_new_privs, seccomp; reports "ready"
 *                      and blocks on the start pipe; container_start()
 *                      releases it and it execs process.args.
 *
 * Stage 2 is a child of the caller (CLONE_PARENT), so the caller reaps it
 * with waitpid().  rlimits and oomScoreAdj are applied by the parent to the
 * child pid (prlimit, /proc/<pid>/oom_score_adj) like runc, so that a user
 * namespace does not stop raising them.  Errors in a child travel back as
 * text over a SOCK_SEQPACKET pair: create fails with e.g.
 * "mount proc on /proc: Operation not permitted".  Children leave with
 * _exit() only, block all signals at once and reset them to default before
 * exec, and exec with every inherited descriptor except stdio marked
 * close-on-exec: inherited zmq/libevent state is never touched.
 *
 * Refused with a clear error rather than ignored: AppArmor profiles, SELinux
 * labels, process.scheduler, linux.intelRdt, idmapped mounts, seccomp notify
 * (listenerPath / SCMP_ACT_NOTIFY), personality flags, cgroup settings that
 * cgroup v2 cannot express, linux.resources without a cgroup directory, a
 * spec without a new mount namespace.
 *
 * Not done here: hooks (the runtime runs them; startContainer in the guest is
 * the agent's job), the device cgroup (eBPF) allow list.
 *
 * The host-side caller must be root (or hold the equivalent capabilities).
 * Thread safety: the functions may be called from any thread; the forked
 * children only use async-signal-safe calls plus malloc (fork() keeps malloc
 * usable) until they exec. */
#ifndef HUSK_AGENT_GUEST_CONTAINER_H
#define HUSK_AGENT_GUEST_CONTAINER_H

#include <stdbool.h>
#include <sys/types.h>

#include "common/err.h"
#include "oci/spec.h"

typedef struct container container_t;

typedef struct container_config {
    /* Borrowed for the duration of container_create().  spec->process is
     * required. */
    const oci_spec_t *spec;
    /* Host path of the root filesystem.  NULL: spec->root_path, resolved
     * against bundle when relative. */
    const char *rootfs;
    /* Directory for relative root.path and relative bind-mount sources.
     * NULL: the current directory. */
    const char *bundle;
    /* cgroup v2 directory to create, apply linux.resources to, and put the
     * container in.  NULL: none (then linux.resources must be empty). */
    const char *cgroup_path;
    /* stdin, stdout, stderr of the process when process.terminal is false;
     * -1 means /dev/null.  Borrowed (duplicated into the child). */
    int stdio[3];
} container_config_t;

/* Creates the container and leaves its init blocked right before exec.
 * On success *out is set; caller owns it and must destroy it when done. */
int container_create(const container_config_t *cfg, container_t **out, err_t *err);

/* Host pid of the container init (valid after create; reap with waitpid). */
pid_t container_pid(const container_t *c);

/* The pty master when process.terminal was set, else -1.  Caller owns the
 * returned descriptor; a second call returns -1. */
int container_take_console(container_t *c);

/* Releases init: it execs process.args.  Returns once the exec happened, or
 * fails with the exec error ("exec /bin/x: No such file or directory").
 * A container can be started once. */
int container_start(container_t *c, err_t *err);

/* Frees the handle and sets *c_p to NULL.  A container that was created but
 * not started is aborted: its init sees the start pipe close and _exits
 * without exec (the caller still reaps the pid).  Does not kill or reap a
 * started container.  Accepts NULL and *NULL. */
void container_destroy(container_t **c_p);

typedef struct container_exec_config {
    pid_t init_pid;               /* the container's init, host pid */
    const oci_spec_t *spec;       /* the container's spec (seccomp); borrowed */
    const oci_process_t *process; /* the process to run; borrowed */
    const char *cgroup_path;      /* cgroup v2 directory to join, or NULL */
    int stdio[3];                 /* as in container_config_t */
} container_exec_config_t;

/* Runs an extra process in a running container (runc exec): joins the
 * namespaces of /proc/<init_pid>/ns/ that differ from the caller's, its
 * root, and the cgroup, then applies the process's user, groups, caps,
 * rlimits, env, cwd, no_new_privs, terminal and the container's seccomp
 * profile.  Returns once it has exec'd.  *pid_out gets its host pid (a child
 * of the caller); *console_out (may be NULL when process.terminal is false)
 * gets the pty master or -1; caller owns it. */
int container_exec(const container_exec_config_t *cfg, pid_t *pid_out, int *console_out,
                   err_t *err);

/* Checks a spec for what husk refuses (see above) and for consistency
 * (id maps need a user namespace...).  container_create calls it. */
int container_validate(const oci_spec_t *spec, err_t *err);

/* Creates the cgroup v2 directory dir (and parents), enables the needed
 * controllers in the parents when they are real cgroup directories, and
 * writes res (may be NULL) in cgroup v2 terms (runc's conversions: shares to
 * cpu.weight, memory+swap to memory.swap.max, blkio weight to io.weight). */
int container_cgroup_apply(const char *dir, const oci_resources_t *res, err_t *err);

/* Host mode (the agent runs on a host, not as a VM's init): a controller
 * the host's cgroup v2 hierarchy does not offer is skipped with a warning
 * instead of failing container_cgroup_apply. */
void container_cgroup_host_mode(bool on);

/* Moves pid into the cgroup v2 directory dir. */
int container_cgroup_join(const char *dir, pid_t pid, err_t *err);

#endif
