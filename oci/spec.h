/* oci/spec: the OCI runtime configuration (config.json), runtime-spec 1.0.2
 * and the 1.1 additions, parsed into plain C data.
 *
 * oci_spec_t is a value type: a documented public struct of plain data that
 * callers read directly and may amend (e.g. replace root.path or mounts
 * before sending the spec to the guest).  Everything in it is heap memory
 * owned by the spec and released by oci_spec_destroy(); if you replace a
 * field, free the old value with free() (strings) or the matching
 * oci_*_free helpers and allocate the new one with malloc.
 *
 * Parsing validates types, ranges, required fields and sizes; every error
 * names the JSON path of the bad value ("process.user.uid: expected
 * integer", "mounts[2].destination: must be an absolute path").  Unknown
 * fields are tolerated and kept: oci_spec_to_json() writes them back
 * unchanged next to the (possibly amended) known fields.
 *
 * Limits: a document of at most OCI_SPEC_MAX_BYTES, strings of at most
 * OCI_SPEC_MAX_STRING bytes, arrays and maps of at most OCI_SPEC_MAX_ITEMS
 * entries.  Integers beyond INT64_MAX (possible in seccomp argument values)
 * are refused by the JSON parser.
 *
 * Semantic checks that need the host (is this namespace supported, does
 * this capability exist) belong to whoever applies the spec
 * (agent/guest/container.c), not to the parser.
 *
 * OOM policy: allocation failure aborts (as crun's xmalloc does). */
#ifndef HUSK_OCI_SPEC_H
#define HUSK_OCI_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define OCI_SPEC_MAX_BYTES  (16u << 20) /* whole document */
#define OCI_SPEC_MAX_STRING (1u << 20)  /* one string */
#define OCI_SPEC_MAX_ITEMS  65536u      /* one array or map */

/* An optional number: set is false when the field is absent or null. */
typedef struct oci_opt_int {
    bool set;
    int64_t value;
} oci_opt_int_t;

/* A string map entry (annotations, sysctl, unified). */
typedef struct oci_kv {
    char *key;
    char *value;
} oci_kv_t;

/* ---- process ---------------------------------------------------------- */

typedef struct oci_user {
    uint32_t uid;
    uint32_t gid;
    oci_opt_int_t umask; /* 0..0777 */
    uint32_t *additional_gids;
    size_t n_additional_gids;
    char *username; /* Windows only; kept for round trips */
} oci_user_t;

typedef struct oci_rlimit {
    char *type; /* "RLIMIT_NOFILE"...; validated against the Linux list */
    uint64_t hard;
    uint64_t soft;
} oci_rlimit_t;

enum oci_cap_set {
    OCI_CAP_BOUNDING = 0,
    OCI_CAP_EFFECTIVE,
    OCI_CAP_INHERITABLE,
    OCI_CAP_PERMITTED,
    OCI_CAP_AMBIENT,
    OCI_CAP_NSETS
};
/* JSON key of a capability set ("bounding"...). */
const char *oci_cap_set_name(enum oci_cap_set set);

typedef struct oci_process {
    bool terminal;
    bool has_console_size;
    uint32_t console_height;
    uint32_t console_width;
    oci_user_t user;
    char **args; /* NULL-terminated, n_args >= 1 */
    size_t n_args;
    char **env; /* NULL-terminated "K=V" strings, may be empty */
    size_t n_env;
    char *cwd; /* absolute */
    /* Capability names ("CAP_SYS_ADMIN") per set.  When has_capabilities
     * is false the spec said nothing and the capabilities are left as
     * they are; when true, a missing set is an empty set. */
    bool has_capabilities;
    char **caps[OCI_CAP_NSETS]; /* NULL-terminated */
    size_t n_caps[OCI_CAP_NSETS];
    oci_rlimit_t *rlimits;
    size_t n_rlimits;
    bool no_new_privileges;
    char *apparmor_profile;
    oci_opt_int_t oom_score_adj; /* -1000..1000 */
    char *selinux_label;
    /* 1.1: process.ioPriority {class, priority}. */
    bool has_io_priority;
    char *io_priority_class; /* IOPRIO_CLASS_RT|BE|IDLE */
    int io_priority;         /* 0..7 */
    /* 1.1 fields that are parsed for presence only, so that whoever
     * applies the spec can refuse them instead of ignoring them. */
    bool has_scheduler;
} oci_process_t;

/* ---- mounts and hooks ------------------------------------------------- */

typedef struct oci_mount {
    char *destination; /* absolute, no ".." component */
    char *type;        /* may be NULL (bind mounts) */
    char *source;      /* may be NULL */
    char **options;    /* NULL-terminated */
    size_t n_options;
    bool has_idmap; /* 1.1 uidMappings/gidMappings on the mount */
} oci_mount_t;

enum oci_hook_kind {
    OCI_HOOK_PRESTART = 0,
    OCI_HOOK_CREATE_RUNTIME,
    OCI_HOOK_CREATE_CONTAINER,
    OCI_HOOK_START_CONTAINER,
    OCI_HOOK_POSTSTART,
    OCI_HOOK_POSTSTOP,
    OCI_HOOK_NKINDS
};
/* JSON key of a hook kind ("prestart", "createRuntime"...). */
const char *oci_hook_kind_name(enum oci_hook_kind kind);

typedef struct oci_hook {
    char *path;  /* absolute */
    char **args; /* NULL-terminated, may be empty */
    size_t n_args;
    char **env;
    size_t n_env;
    oci_opt_int_t timeout; /* seconds, > 0 when set */
} oci_hook_t;

/* ---- linux ------------------------------------------------------------ */

enum oci_ns_type {
    OCI_NS_PID = 0,
    OCI_NS_NETWORK,
    OCI_NS_MOUNT,
    OCI_NS_IPC,
    OCI_NS_UTS,
    OCI_NS_USER,
    OCI_NS_CGROUP,
    OCI_NS_TIME,
    OCI_NS_NTYPES
};
/* JSON name ("pid", "network"...). */
const char *oci_ns_type_name(enum oci_ns_type type);

typedef struct oci_namespace {
    enum oci_ns_type type;
    char *path; /* NULL: create a new one; else join this one */
} oci_namespace_t;

typedef struct oci_idmap {
    uint32_t container_id;
    uint32_t host_id;
    uint32_t size; /* > 0 */
} oci_idmap_t;

typedef struct oci_device {
    char *path; /* absolute, inside the container */
    char type;  /* 'c', 'b', 'u' or 'p' */
    int64_t major;
    int64_t minor;
    oci_opt_int_t file_mode;
    oci_opt_int_t uid;
    oci_opt_int_t gid;
} oci_device_t;

typedef struct oci_device_rule {
    bool allow;
    char *type;          /* "a", "c", "b" or NULL (all) */
    oci_opt_int_t major; /* unset: any */
    oci_opt_int_t minor;
    char *access; /* subset of "rwm" or NULL (all) */
} oci_device_rule_t;

typedef struct oci_hugepage_limit {
    char *page_size; /* "2MB", "1GB" */
    uint64_t limit;
} oci_hugepage_limit_t;

typedef struct oci_resources {
    oci_device_rule_t *devices;
    size_t n_devices;
    struct {
        oci_opt_int_t limit; /* bytes; -1 = unlimited */
        oci_opt_int_t reservation;
        oci_opt_int_t swap; /* memory+swap, runc semantics */
        oci_opt_int_t kernel;
        oci_opt_int_t kernel_tcp;
        oci_opt_int_t swappiness;
        oci_opt_int_t disable_oom_killer; /* 0/1 */
    } memory;
    struct {
        oci_opt_int_t shares;
        oci_opt_int_t quota; /* -1 = max */
        oci_opt_int_t burst;
        oci_opt_int_t period;
        oci_opt_int_t realtime_runtime;
        oci_opt_int_t realtime_period;
        char *cpus;
        char *mems;
        oci_opt_int_t idle;
    } cpu;
    oci_opt_int_t pids_limit; /* <= 0 = max */
    struct {
        oci_opt_int_t weight;      /* 10..1000 */
        oci_opt_int_t leaf_weight; /* 10..1000 */
        /* weightDevice / throttle*: present, not parsed */
        bool has_device_rules;
    } block_io;
    oci_hugepage_limit_t *hugepage_limits;
    size_t n_hugepage_limits;
    oci_kv_t *unified; /* cgroup v2 file -> value */
    size_t n_unified;
    bool has_network;
    bool has_rdma;
} oci_resources_t;

enum oci_seccomp_action {
    OCI_SCMP_ACT_KILL = 0, /* = KILL_THREAD */
    OCI_SCMP_ACT_KILL_PROCESS,
    OCI_SCMP_ACT_KILL_THREAD,
    OCI_SCMP_ACT_TRAP,
    OCI_SCMP_ACT_ERRNO,
    OCI_SCMP_ACT_TRACE,
    OCI_SCMP_ACT_ALLOW,
    OCI_SCMP_ACT_LOG,
    OCI_SCMP_ACT_NOTIFY,
    OCI_SCMP_ACT_NACTIONS
};
const char *oci_seccomp_action_name(enum oci_seccomp_action a);

enum oci_seccomp_op {
    OCI_SCMP_CMP_NE = 0,
    OCI_SCMP_CMP_LT,
    OCI_SCMP_CMP_LE,
    OCI_SCMP_CMP_EQ,
    OCI_SCMP_CMP_GE,
    OCI_SCMP_CMP_GT,
    OCI_SCMP_CMP_MASKED_EQ,
    OCI_SCMP_CMP_NOPS
};
const char *oci_seccomp_op_name(enum oci_seccomp_op op);

typedef struct oci_seccomp_arg {
    uint32_t index; /* 0..5 */
    uint64_t value;
    uint64_t value_two;
    enum oci_seccomp_op op;
} oci_seccomp_arg_t;

typedef struct oci_seccomp_syscall {
    char **names; /* NULL-terminated, n_names >= 1 */
    size_t n_names;
    enum oci_seccomp_action action;
    oci_opt_int_t errno_ret;
    oci_seccomp_arg_t *args;
    size_t n_args;
} oci_seccomp_syscall_t;

typedef struct oci_seccomp {
    enum oci_seccomp_action default_action;
    oci_opt_int_t default_errno_ret;
    char **architectures; /* "SCMP_ARCH_X86_64"...; NULL-terminated */
    size_t n_architectures;
    char **flags; /* "SECCOMP_FILTER_FLAG_LOG"...; NULL-terminated */
    size_t n_flags;
    char *listener_path; /* 1.1; needs SCMP_ACT_NOTIFY support */
    oci_seccomp_syscall_t *syscalls;
    size_t n_syscalls;
} oci_seccomp_t;

typedef struct oci_linux {
    oci_namespace_t *namespaces;
    size_t n_namespaces;
    oci_idmap_t *uid_mappings;
    size_t n_uid_mappings;
    oci_idmap_t *gid_mappings;
    size_t n_gid_mappings;
    oci_device_t *devices;
    size_t n_devices;
    oci_resources_t *resources; /* NULL when absent */
    char *cgroups_path;
    oci_kv_t *sysctl;
    size_t n_sysctl;
    oci_seccomp_t *seccomp; /* NULL when absent */
    char *rootfs_propagation;
    char **masked_paths; /* NULL-terminated */
    size_t n_masked_paths;
    char **readonly_paths;
    size_t n_readonly_paths;
    char *mount_label;
    bool has_personality;
    char *personality_domain; /* "LINUX" or "LINUX32" */
    char **personality_flags;
    size_t n_personality_flags;
    /* Present but not applied by husk; kept for clear refusals. */
    bool has_intel_rdt;
    bool has_time_offsets;
} oci_linux_t;

/* ---- the spec --------------------------------------------------------- */

typedef struct oci_spec {
    char *oci_version;      /* required */
    oci_process_t *process; /* NULL when absent (allowed for create) */
    char *root_path;        /* required; relative to the bundle when not absolute */
    bool root_readonly;
    char *hostname;
    char *domainname;
    oci_mount_t *mounts;
    size_t n_mounts;
    oci_hook_t *hooks[OCI_HOOK_NKINDS];
    size_t n_hooks[OCI_HOOK_NKINDS];
    oci_kv_t *annotations;
    size_t n_annotations;
    oci_linux_t *lnx; /* "linux"; NULL when absent (`linux` is a predefined macro) */
    void *priv_json;  /* private: the parsed document (unknown fields) */
} oci_spec_t;

/* Parses a config.json document of len bytes (need not be NUL-terminated).
 * On success *out is set; caller owns it and must destroy it when done. */
int oci_spec_parse(const char *json, size_t len, oci_spec_t **out, err_t *err);

/* Reads and parses the file at path (at most OCI_SPEC_MAX_BYTES). */
int oci_spec_load(const char *path, oci_spec_t **out, err_t *err);

/* Frees the spec and sets *spec_p to NULL.  Accepts NULL and *NULL. */
void oci_spec_destroy(oci_spec_t **spec_p);

/* Serializes the spec (with its amendments) back to compact JSON.
 * Unknown fields of the parsed document are kept.  Caller owns *out
 * (free()); *len_out (optional) gets its length without the NUL. */
int oci_spec_to_json(const oci_spec_t *spec, char **out, size_t *len_out, err_t *err);

/* Value of annotation key, or NULL.  Borrowed; valid while spec lives. */
const char *oci_spec_annotation(const oci_spec_t *spec, const char *key);

/* How a container relates to its pod, from the CRI annotations:
 * CRI-O (io.kubernetes.cri-o.ContainerType / .SandboxID) first, then
 * containerd (io.kubernetes.cri.container-type / .sandbox-id), then
 * dockershim (io.kubernetes.docker.type / io.kubernetes.sandbox.id).
 * A container without them is its own sandbox. */
enum oci_cri_kind { OCI_CRI_SANDBOX = 0, OCI_CRI_CONTAINER };

/* Fills *kind and *sandbox_id (borrowed from the spec; NULL for a sandbox
 * whose id is its own container id).  Fails when the type value is not
 * recognised or a container names no sandbox. */
int oci_spec_cri_info(const oci_spec_t *spec, enum oci_cri_kind *kind, const char **sandbox_id,
                      err_t *err);

/* A standalone process object (runc exec --process process.json).  Error
 * paths start at the top: "user.uid: expected integer".  Caller owns *out. */
int oci_process_parse(const char *json, size_t len, oci_process_t **out, err_t *err);
int oci_process_load(const char *path, oci_process_t **out, err_t *err);
/* Serializes a process object.  Caller owns *out (free()). */
int oci_process_to_json(const oci_process_t *proc, char **out, size_t *len_out, err_t *err);
/* Frees the process and sets *proc_p to NULL.  Accepts NULL and *NULL. */
void oci_process_destroy(oci_process_t **proc_p);

/* Frees a NULL-terminated string vector (for callers replacing fields). */
void oci_strv_free(char **v);
/* Frees an array of n mounts (for callers replacing spec->mounts). */
void oci_mounts_free(oci_mount_t *mounts, size_t n);

#endif
