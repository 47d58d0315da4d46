/* persist/store: sandbox and container state on disk (docs/state.md).
 *
 * Layout under the runtime root (runc's --root, default /run/husk; 0700):
 *
 *   <root>/<sandbox-id>/                 0700, one per sandbox
 *   <root>/<sandbox-id>/sandbox.json     persist_sandbox_t
 *   <root>/<sandbox-id>/lock             flock(2) target (persist_lock_*)
 *   <root>/<sandbox-id>/<container-id>/container.json
 *
 * Every write is atomic: a temp file ".<name>.tmp.<pid>.XXXXXX" in the same
 * directory, write, fsync, rename over the old file, fsync of the
 * directory.  A crash leaves the old file intact and at worst a stray temp
 * file, which readers ignore and the next save of the same file removes
 * (only temps whose writer pid is gone or is the caller).
 *
 * Every file carries "schema": N.  Files of a newer schema than
 * PERSIST_SCHEMA are refused (a newer husk wrote them); older known schemas
 * are read.  Reads never trust the file: types, required fields, sizes
 * and the id/directory match are checked, and an error names the file and
 * the field ("/run/husk/p1/sandbox.json: field `daemon_pid`: expected
 * integer").
 *
 * Concurrency: writers of a sandbox (its sandbox.json and its containers)
 * hold its lock (persist_lock_sandbox).  Readers need not: they see either
 * the old or the new file.
 *
 * Fault injection (tests): persist_store_set_fault(), or the environment
 * at persist_store_open(): HUSK_PERSIST_FAIL=enospc|eio|crash[:count]
 * (count defaults to 1).  enospc/eio make the next count writes fail with
 * that errno after the temp file was created (the temp is removed, the old
 * file stays); crash writes the temp file and returns -EIO without
 * renaming or cleaning, as if the process died between write and rename.
 *
 * OOM policy: allocation failure aborts. */
#ifndef HUSK_PERSIST_STORE_H
#define HUSK_PERSIST_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

#define PERSIST_SCHEMA       1
#define PERSIST_DEFAULT_ROOT "/run/husk"
#define PERSIST_MAX_FILE     (4u << 20) /* larger state files are corrupt */
#define PERSIST_MAX_ID       1024       /* longest sandbox/container id */

typedef struct persist_store persist_store_t;
typedef struct persist_lock persist_lock_t;

/* A string map entry (annotations). */
typedef struct persist_kv {
    char *key;
    char *value;
} persist_kv_t;

/* One sandbox.  Every string is heap memory owned by the struct (NULL when
 * unset, except id and state which save requires). */
typedef struct persist_sandbox {
    char *id;              /* sandbox id (= its directory name) */
    char *state;           /* rt_sandbox_state_name(): "new", "booting", "ready"... */
    char *bundle;          /* bundle of the sandbox (first) container */
    char *created;         /* RFC3339Nano UTC (persist_time_now) */
    pid_t daemon_pid;      /* the sandbox daemon (shim or husk daemon); 0 = none */
    uint64_t daemon_start; /* its /proc/<pid>/stat field 22 (starttime) */
    pid_t vmm_pid;         /* the VMM (qemu); 0 = none */
    uint64_t vmm_start;    /* its starttime */
    char *hypervisor;      /* backend name: "qemu", "local"... */
    char *agent_socket;    /* host end of the agent channel */
    char *netns;           /* network namespace path */
    persist_kv_t *net_taps; /* the VM's taps in netns: tap name -> MAC of its interface */
    size_t n_net_taps;
    persist_kv_t *net_tap_states; /* tap name -> its attach state (resources/net.h) */
    size_t n_net_tap_states;
    persist_kv_t *annotations;
    size_t n_annotations;
    char **containers; /* container ids, in creation order */
    size_t n_containers;
} persist_sandbox_t;

/* One container. */
typedef struct persist_container {
    char *id;            /* container id (= its directory name) */
    char *sandbox_id;    /* owning sandbox (= the parent directory name) */
    char *bundle;        /* absolute bundle path */
    char *rootfs;        /* absolute host rootfs path */
    char *state;         /* rt_container_state_name(): "creating", "created"... */
    char *created;       /* RFC3339Nano UTC */
    pid_t init_pid;      /* host pid of the container's init: the proxy process */
    uint64_t init_start; /* its starttime (0 = unknown) */
    bool exited;         /* exit_status and exited_at are meaningful */
    int exit_status;     /* wait status as a shell reports it (128+sig) */
    char *exited_at;     /* RFC3339Nano UTC, NULL until exited */
    persist_kv_t *annotations;
    size_t n_annotations;
    uint32_t owner_uid; /* uid of the caller that created it */
    char *pid_file;     /* --pid-file path, NULL when none */
    bool console;       /* a terminal (--console-socket) was requested */
} persist_container_t;

/* ---- store -------------------------------------------------------------- */

/* Opens the runtime root (NULL = PERSIST_DEFAULT_ROOT), creating it 0700
 * when missing.  Reads HUSK_PERSIST_FAIL (see above).  Caller owns *out
 * and must destroy it when done. */
int persist_store_open(const char *root, persist_store_t **out, err_t *err);

/* Frees the store; accepts NULL and *NULL; sets *store_p to NULL. */
void persist_store_destroy(persist_store_t **store_p);

/* The root directory.  Borrowed; valid while the store lives. */
const char *persist_store_root(const persist_store_t *store);

/* Makes the next count writes (saves) fail: errnum ENOSPC or EIO, or
 * PERSIST_FAULT_CRASH.  count 0 clears. */
#define PERSIST_FAULT_CRASH (-1)
void persist_store_set_fault(persist_store_t *store, int errnum, unsigned count);

/* "<root>/<sandbox-id>"; caller owns the string (free()).  Fails with
 * EINVAL for an invalid id (empty, too long, "/", ".", ".." or a leading
 * dot; runc's ^[\w+-.]+$). */
int persist_sandbox_dir(const persist_store_t *store, const char *sandbox_id, char **out,
                        err_t *err);

/* Whether id is acceptable as a sandbox or container id (see above). */
bool persist_id_valid(const char *id);

/* ---- sandboxes ---------------------------------------------------------- */

/* Writes sandbox.json atomically, creating the sandbox directory (0700)
 * when missing.  sb->id and sb->state are required. */
int persist_sandbox_save(persist_store_t *store, const persist_sandbox_t *sb, err_t *err);

/* Reads and validates sandbox.json.  -ENOENT when the sandbox does not
 * exist (the message says so).  Caller owns *out (persist_sandbox_free). */
int persist_sandbox_load(const persist_store_t *store, const char *sandbox_id,
                         persist_sandbox_t **out, err_t *err);

/* Removes the sandbox directory and everything in it: state files,
 * container directories, and what others left there (sockets, logs).
 * Refuses with -EBUSY, naming it, when anything below is a mount point
 * (unmount the share first): it never descends into another file system.
 * A missing sandbox is not an error. */
int persist_sandbox_remove(persist_store_t *store, const char *sandbox_id, err_t *err);

/* The ids of the sandboxes that have a sandbox.json (directories without
 * one, e.g. half-created, are skipped), sorted.  Caller owns *ids_out
 * (persist_strv_free); *n_out gets the count. */
int persist_sandbox_list(const persist_store_t *store, char ***ids_out, size_t *n_out, err_t *err);

/* Frees a sandbox record; accepts NULL and *NULL. */
void persist_sandbox_free(persist_sandbox_t **sb_p);

/* ---- containers --------------------------------------------------------- */

/* Writes <sandbox>/<id>/container.json atomically (creating the container
 * directory).  The sandbox directory must exist (-ENOENT otherwise).
 * c->id, c->sandbox_id and c->state are required. */
int persist_container_save(persist_store_t *store, const persist_container_t *c, err_t *err);

/* Reads and validates a container.json.  -ENOENT when missing. */
int persist_container_load(const persist_store_t *store, const char *sandbox_id,
                           const char *container_id, persist_container_t **out, err_t *err);

/* Removes the container's directory (its state file and the directory).
 * A missing container is not an error.  Other entries in the directory
 * make it fail with -ENOTEMPTY naming them. */
int persist_container_remove(persist_store_t *store, const char *sandbox_id,
                             const char *container_id, err_t *err);

/* The ids of a sandbox's containers that have a container.json, sorted. */
int persist_container_list(const persist_store_t *store, const char *sandbox_id, char ***ids_out,
                           size_t *n_out, err_t *err);

/* Finds the sandbox holding container_id (container ids are unique on the
 * host, as with runc).  A sandbox whose id is container_id is found too
 * (a container that is its own sandbox).  -ENOENT ("container does not
 * exist") when none.  Caller owns *sandbox_id_out (free()). */
int persist_find_sandbox(const persist_store_t *store, const char *container_id,
                         char **sandbox_id_out, err_t *err);

/* Frees a container record; accepts NULL and *NULL. */
void persist_container_free(persist_container_t **c_p);

/* ---- records as text ------------------------------------------------------
 * The persist actor's messages (messages/catalog.h, persist.*) carry
 * records as the text of their file (compact JSON, "schema" included).
 * Pure functions: no store, no I/O. */

/* The record's text; checked as a save checks it.  Caller owns *out
 * (free()). */
int persist_sandbox_to_text(const persist_sandbox_t *sb, char **out, err_t *err);
int persist_container_to_text(const persist_container_t *c, char **out, err_t *err);

/* Parses and validates a record received as text, as a file is on load;
 * its ids must be the ones given.  origin names it in errors
 * ("persist.save_container from runtime: field `state`: missing").  Caller
 * owns *out (persist_sandbox_free / persist_container_free). */
int persist_sandbox_from_text(const char *origin, const char *text, size_t len,
                              const char *sandbox_id, persist_sandbox_t **out, err_t *err);
int persist_container_from_text(const char *origin, const char *text, size_t len,
                                const char *sandbox_id, const char *container_id,
                                persist_container_t **out, err_t *err);

/* A JSON array of container records (persist.loaded), and back.  The
 * vector is owned by the caller (persist_containers_free). */
int persist_containers_to_text(persist_container_t *const *cs, size_t n, char **out, err_t *err);
int persist_containers_from_text(const char *origin, const char *text, size_t len,
                                 const char *sandbox_id, persist_container_t ***out,
                                 size_t *n_out, err_t *err);
void persist_containers_free(persist_container_t **cs, size_t n);

/* ---- locking ------------------------------------------------------------ */

enum {
    PERSIST_LOCK_SHARED = 1 << 0, /* shared (read) lock instead of exclusive */
    PERSIST_LOCK_CREATE = 1 << 1, /* create the sandbox directory if missing */
};

/* Takes the sandbox's lock (flock on <sandbox dir>/lock), waiting at most
 * timeout_ms (0 = try once, < 0 = forever).  -ETIMEDOUT when another
 * holder kept it; -ENOENT when the sandbox does not exist and
 * PERSIST_LOCK_CREATE is not given.  A lock taken on a directory that was
 * removed meanwhile is retried on the new one.  Released by
 * persist_unlock() (or by process exit).  Caller owns *out. */
int persist_lock_sandbox(const persist_store_t *store, const char *sandbox_id, int flags,
                         int timeout_ms, persist_lock_t **out, err_t *err);

/* Releases and frees the lock; accepts NULL and *NULL. */
void persist_unlock(persist_lock_t **lock_p);

/* ---- processes and time -------------------------------------------------- */

/* Reads field 22 (starttime, clock ticks after boot) of /proc/<pid>/stat.
 * -ESRCH when the process does not exist. */
int persist_proc_start_time(pid_t pid, uint64_t *start_out, err_t *err);

/* True when pid exists, is not a zombie, and (when start != 0) its start
 * time is start: the same process, not a reused pid. */
bool persist_pid_alive(pid_t pid, uint64_t start);

/* persist_pid_alive(sb->daemon_pid, sb->daemon_start); false for pid 0. */
bool persist_daemon_alive(const persist_sandbox_t *sb);

/* The current time as RFC3339Nano UTC ("2024-05-01T10:11:12.123456789Z").
 * Caller owns the string (free()). */
char *persist_time_now(void);

/* Frees a NULL-terminated string vector; accepts NULL. */
void persist_strv_free(char **v);

#endif
