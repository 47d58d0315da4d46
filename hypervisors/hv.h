/* hv: the hypervisor interface.
 *
 * A backend (qemu, local, fake, later clh/fc) is a `const struct hv_ops`
 * table; a VM is an opaque hv_t created on the owner's libevent loop.
 * A new VMM is one new file plus one line in the registry in hv.c.
 *
 * Nothing here blocks the loop.  Synchronous calls (new, prepare, pids,
 * capabilities) return at once.  Asynchronous operations (start, stop,
 * pause, resume, add/remove device, resize, save, restore) return < 0 with
 * err filled when they cannot even begin (then `done` is never called), or
 * 0 when the work has begun: `done` is then called exactly once, later, from
 * the event_base, never from inside the call that started the operation.
 * Life-cycle events (VM ready, VM exited, QMP events) reach the callback set
 * with hv_set_event_cb().
 *
 * Callbacks may call any hv_* function, including hv_destroy() on the
 * instance that is calling them.
 *
 * This layer knows nothing about the bus: the hypervisor actor turns these
 * callbacks into messages.  It logs only at debug level, except for the
 * acceleration choice (logged once at info by prepare). */
#ifndef HUSK_HV_H
#define HUSK_HV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

struct event_base;
struct cfg;

typedef struct hv hv_t;

/* Capabilities: test before calling the matching operation. */
#define HV_CAP_PAUSE          (1u << 0)  /* pause / resume */
#define HV_CAP_SHARE_FS_9P    (1u << 1)  /* cold-plugged virtio-9p shares */
#define HV_CAP_HOTPLUG_FS     (1u << 2)  /* add_device(HV_DEV_SHARE_FS) at run time */
#define HV_CAP_HOTPLUG_BLOCK  (1u << 3)  /* add_device(HV_DEV_BLOCK) */
#define HV_CAP_HOTPLUG_NET    (1u << 4)  /* add_device(HV_DEV_NET) */
#define HV_CAP_HOTPLUG_VFIO   (1u << 5)  /* add_device(HV_DEV_VFIO) */
#define HV_CAP_VHOST_USER     (1u << 6)  /* add_device(HV_DEV_VHOST_USER) */
#define HV_CAP_HOTPLUG_VCPU   (1u << 7)  /* resize_vcpus */
#define HV_CAP_HOTPLUG_MEMORY (1u << 8)  /* resize_memory */
#define HV_CAP_SAVE_RESTORE   (1u << 9)  /* save / restore */
#define HV_CAP_VM_ISOLATION   (1u << 10) /* a real VM boundary (not set by `local`) */
#define HV_CAP_VMM_IN_CGROUP  (1u << 11) /* the VMM process started in cfg.cgroup_dirs */

enum hv_arch { HV_ARCH_X86_64 = 0, HV_ARCH_AARCH64 };
enum hv_accel { HV_ACCEL_AUTO = 0, HV_ACCEL_KVM, HV_ACCEL_TCG };

/* "auto" / "kvm" / "tcg" and back; parse returns -1 when unknown. */
const char *hv_accel_name(enum hv_accel a);
int hv_accel_parse(const char *s);
/* "x86_64" / "aarch64"; parse returns -1 when unknown. */
const char *hv_arch_name(enum hv_arch a);
int hv_arch_parse(const char *s);
/* The architecture this binary was built for. */
enum hv_arch hv_arch_host(void);

/* A 9p share given at start (cold-plugged). */
struct hv_share {
    const char *host_path; /* directory on the host */
    const char *mount_tag; /* tag the guest mounts (also the device id) */
    bool readonly;
};

/* A NIC present from boot: virtio-net over an existing tap of cfg->netns
 * (resources/net.h), removable like a hot-plugged one where the machine
 * has hotplug.  id: the device id ([A-Za-z0-9_.-], <= 31). */
struct hv_net {
    const char *id;
    const char *tap;
    const char *mac; /* "aa:bb:cc:dd:ee:ff" or NULL */
};

/* What a VM is made of.  All strings are borrowed for the duration of
 * hv_new() only: the instance copies what it keeps. */
struct hv_config {
    const char *id;            /* sandbox id, for names and logs */
    const char *sandbox_dir;   /* existing dir: sockets, console log, pid file */
    const char *binary;        /* VMM binary (path, or name looked up in PATH) */
    const char *kernel;        /* guest kernel; NULL: no kernel (firmware only) */
    const char *initrd;        /* guest initramfs or NULL */
    const char *kernel_params; /* appended after husk's own parameters */
    const char *machine;       /* q35 | pc | microvm (x86_64), virt (aarch64) */
    enum hv_arch arch;
    enum hv_accel accel;           /* AUTO: hv_accel_detect() decides */
    unsigned vcpus;                /* boot vCPUs (>= 1) */
    unsigned max_vcpus;            /* 0: same as vcpus */
    unsigned memory_mib;           /* boot memory */
    bool debug_console;            /* verbose kernel console (else `quiet`) */
    bool start_paused;             /* leave the vCPUs stopped (qemu -S) */
    const struct hv_share *shares; /* cold-plugged 9p shares */
    size_t n_shares;
    unsigned fs_slots;             /* pre-declared 9p slots for hot-plugged shares */
    unsigned pci_slots;            /* pcie-root-ports for hotplug (q35) */
    int stop_timeout_ms;           /* QMP quit -> SIGKILL deadline; 0: 3000 */
    int qmp_timeout_ms;            /* per QMP command deadline; 0: 5000 */
    const char *const *extra_args; /* NULL-terminated, appended verbatim */
    /* Network namespace the VMM runs in (qemu: its taps live there, as
     * Kata runs its VMM in the pod's netns; local: the agent joins it).
     * NULL: the caller's. */
    const char *netns;
    const struct hv_net *nets; /* NICs at boot (qemu) */
    size_t n_nets;
    /* Host cgroup directories (v1 or v2) the VMM process should start in,
     * NULL-terminated, or NULL.  A backend that places its process there
     * at spawn reports HV_CAP_VMM_IN_CGROUP; otherwise the caller moves it
     * (a move by pid waits for an RCU grace period: docs/performance.md). */
    const char *const *cgroup_dirs;
    /* Acceleration probe paths (tests); NULL: the real ones. */
    const struct hv_accel_probe *accel_probe;
};

/* Sets defaults: x86_64, q35, accel auto, 1 vCPU, 512 MiB, 4 fs slots,
 * 4 PCI slots; strings NULL. */
void hv_config_init(struct hv_config *c);
/* Fills the fields the configuration file sets (borrowing its strings). */
void hv_config_from_cfg(struct hv_config *c, const struct cfg *cfg);

enum hv_dev_kind {
    HV_DEV_SHARE_FS = 0, /* virtio-9p share */
    HV_DEV_BLOCK,        /* virtio-blk over a file or block device */
    HV_DEV_NET,          /* virtio-net over an existing tap */
    HV_DEV_VFIO,         /* host PCI device passthrough */
    HV_DEV_VHOST_USER,   /* vhost-user backend on a unix socket */
};

/* A device to add or remove: a tagged union.  `id` names it in the VMM
 * (unique per VM, [A-Za-z0-9_.-], at most 31 chars); remove uses only
 * kind and id.  Strings are borrowed for the duration of the call. */
struct hv_device {
    enum hv_dev_kind kind;
    const char *id;
    union {
        struct {
            const char *host_path;
            const char *mount_tag;
            bool readonly;
        } share_fs;
        struct {
            const char *path;
            const char *format; /* "raw" (default) or "qcow2" */
            bool readonly;
        } block;
        struct {
            const char *tap; /* host tap interface name */
            const char *mac; /* "52:54:00:..." or NULL */
        } net;
        struct {
            const char *host_bdf; /* "0000:01:00.0" */
        } vfio;
        struct {
            const char *socket_path;
            const char *type; /* "fs", "net", "blk" */
            const char *tag;  /* fs: mount tag */
        } vhost_user;
    } u;
};

const char *hv_dev_kind_name(enum hv_dev_kind k);

enum hv_event_kind {
    HV_EV_READY = 0,      /* VMM up and its control channel negotiated */
    HV_EV_EXITED,         /* VMM process gone (any reason); instance is dead */
    HV_EV_SHUTDOWN,       /* QMP SHUTDOWN (guest poweroff, quit, signal) */
    HV_EV_PAUSED,         /* QMP STOP */
    HV_EV_RESUMED,        /* QMP RESUME */
    HV_EV_DEVICE_DELETED, /* QMP DEVICE_DELETED (device_id set when known) */
    HV_EV_OTHER,          /* any other QMP event (name set) */
};

/* One event; everything in it is borrowed until the callback returns. */
struct hv_event {
    enum hv_event_kind kind;
    const char *name;      /* QMP event name, or "READY" / "EXITED" */
    int wait_status;       /* EXITED: waitid-style status (see below) */
    bool exited_by_signal; /* EXITED: status is a signal number */
    bool expected;         /* EXITED: after hv_stop (else: VM death) */
    const char *device_id; /* DEVICE_DELETED */
    const char *reason;    /* SHUTDOWN: QMP "reason"; EXITED: why */
};

/* Completion of an asynchronous operation: status 0 or negative, err
 * borrowed (NULL on success). */
typedef void (*hv_done_fn)(hv_t *hv, void *arg, int status, const err_t *err);
typedef void (*hv_event_fn)(hv_t *hv, void *arg, const struct hv_event *ev);

/* Probe paths for acceleration detection; NULL members: the real path. */
struct hv_accel_probe {
    const char *dev_kvm;      /* /dev/kvm */
    const char *cpuinfo;      /* /proc/cpuinfo */
    const char *sys_module;   /* /sys/module */
    const char *proc_modules; /* /proc/modules */
};

/* Chooses KVM only when /dev/kvm opens read-write, the CPU has vmx or svm
 * (x86), and kvm is not the PVM flavour (no /sys/module/kvm_pvm, no
 * kvm_pvm in /proc/modules); else TCG.  `requested` KVM or TCG forces it.
 * reason (may be NULL) receives a one-line explanation. */
enum hv_accel hv_accel_detect(enum hv_accel requested, const struct hv_accel_probe *probe,
                              char *reason, size_t reason_len);

/* The backend table.  Slots may be NULL: the wrapper then fails with
 * EOPNOTSUPP.  Backends see the instance through hv-internal.h. */
struct hv_ops {
    const char *name; /* "qemu", "local", "fake" */
    uint32_t caps;    /* static capabilities (HV_CAP_*) */
    int (*create)(hv_t *hv, const struct hv_config *cfg, err_t *err);
    void (*destroy)(hv_t *hv);
    int (*prepare)(hv_t *hv, err_t *err);
    int (*start)(hv_t *hv, hv_done_fn done, void *arg, err_t *err);
    int (*stop)(hv_t *hv, hv_done_fn done, void *arg, err_t *err);
    int (*pause)(hv_t *hv, hv_done_fn done, void *arg, err_t *err);
    int (*resume)(hv_t *hv, hv_done_fn done, void *arg, err_t *err);
    int (*add_device)(hv_t *hv, const struct hv_device *dev, hv_done_fn done, void *arg,
                      err_t *err);
    int (*remove_device)(hv_t *hv, const struct hv_device *dev, hv_done_fn done, void *arg,
                         err_t *err);
    int (*resize_vcpus)(hv_t *hv, unsigned vcpus, hv_done_fn done, void *arg, err_t *err);
    int (*resize_memory)(hv_t *hv, unsigned memory_mib, hv_done_fn done, void *arg, err_t *err);
    int (*save)(hv_t *hv, const char *path, hv_done_fn done, void *arg, err_t *err);
    int (*restore)(hv_t *hv, const char *path, hv_done_fn done, void *arg, err_t *err);
    int (*pids)(hv_t *hv, pid_t *pids, size_t max, size_t *n, err_t *err);
    uint32_t (*capabilities)(hv_t *hv); /* NULL: the static caps */
    const char *(*agent_socket)(hv_t *hv);
    /* Takes over a VMM that a previous owner started and that outlived it
     * (see hv_attach). */
    int (*attach)(hv_t *hv, pid_t pid, uint64_t pid_start, hv_done_fn done, void *arg, err_t *err);
};

/* Registry. */
extern const struct hv_ops hv_qemu_ops;
extern const struct hv_ops hv_local_ops;
/* Removes what a local-backend sandbox leaves on the host when its daemon
 * died before cleaning up (the agent's cgroup tree).  Idempotent. */
void hv_local_cleanup(const char *sandbox_id);
extern const struct hv_ops hv_fake_ops;
/* The backend called `name`, or NULL. */
const struct hv_ops *hv_ops_by_name(const char *name);
/* NULL-terminated list of registered backends (read-only). */
const struct hv_ops *const *hv_ops_list(void);

/* Creates an instance of `ops` on `base` (borrowed; must outlive it).
 * Caller owns *out and must hv_destroy() it. */
int hv_new(const struct hv_ops *ops, struct event_base *base, const struct hv_config *cfg,
           hv_t **out, err_t *err);
/* Kills whatever still runs (SIGKILL + reap), removes sockets and files,
 * frees, sets *hv_p to NULL.  Pending `done` callbacks are not called.
 * Accepts NULL and *hv_p == NULL. */
void hv_destroy(hv_t **hv_p);

/* Events go to fn (replaces the previous one; NULL: dropped). */
void hv_set_event_cb(hv_t *hv, hv_event_fn fn, void *arg);

const char *hv_name(const hv_t *hv);
const struct hv_config *hv_config(const hv_t *hv); /* borrowed; strings owned by hv */
struct event_base *hv_base(const hv_t *hv);

int hv_prepare(hv_t *hv, err_t *err);
int hv_start(hv_t *hv, hv_done_fn done, void *arg, err_t *err);
int hv_stop(hv_t *hv, hv_done_fn done, void *arg, err_t *err);
int hv_pause(hv_t *hv, hv_done_fn done, void *arg, err_t *err);
int hv_resume(hv_t *hv, hv_done_fn done, void *arg, err_t *err);
int hv_add_device(hv_t *hv, const struct hv_device *dev, hv_done_fn done, void *arg, err_t *err);
int hv_remove_device(hv_t *hv, const struct hv_device *dev, hv_done_fn done, void *arg, err_t *err);
int hv_resize_vcpus(hv_t *hv, unsigned vcpus, hv_done_fn done, void *arg, err_t *err);
int hv_resize_memory(hv_t *hv, unsigned memory_mib, hv_done_fn done, void *arg, err_t *err);
int hv_save(hv_t *hv, const char *path, hv_done_fn done, void *arg, err_t *err);
int hv_restore(hv_t *hv, const char *path, hv_done_fn done, void *arg, err_t *err);
/* Restore: takes over the running VMM of this sandbox (same config as the
 * instance that started it: sandbox_dir, id) whose pid and /proc starttime
 * (field 22) were persisted.  Fails with ESRCH when that process is gone
 * or the pid now names another process.  qemu reconnects QMP at
 * <sandbox_dir>/qmp.sock (done once negotiated); local re-finds its agent.
 * The VMM is not our child: its exit is still seen (pidfd), but not its
 * status.  Asynchronous like start. */
int hv_attach(hv_t *hv, pid_t pid, uint64_t pid_start, hv_done_fn done, void *arg, err_t *err);
/* Host pids of the VMM (qemu: one).  *n receives the count. */
int hv_pids(hv_t *hv, pid_t *pids, size_t max, size_t *n, err_t *err);
uint32_t hv_capabilities(hv_t *hv);
/* Path of the agent channel's unix socket (borrowed), or NULL. */
const char *hv_agent_socket(hv_t *hv);

#endif
