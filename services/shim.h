/* shim: containerd-shim-husk-v2, the containerd 1.6 shim v2 (docs/shim.md).
 *
 * Three layers:
 *   shim.c          pure pieces, unit-tested: the flags containerd passes,
 *                   the grouping id of a bundle, the socket address, exit
 *                   status and time mapping, state names, event ordering
 *   shim_cmd.c      the binary protocol: `start` (spawn or reuse the pod's
 *                   daemon), `delete` (clean up after a dead shim), and the
 *                   long-running daemon (services/daemon.c + the service)
 *   shim_service.c  the service actor: containerd.task.v2.Task over ttRPC,
 *                   mapped onto rt.* requests to the runtime actor, stdio
 *                   through the fifos containerd gives, events forwarded
 *                   to containerd */
#ifndef HUSK_SERVICES_SHIM_H
#define HUSK_SERVICES_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "oci/spec.h"
#include "services/proto/google/protobuf/timestamp.pb-c.h"

/* Where containerd 1.6 shims put their sockets: SocketAddress() hard-codes
 * defaults.DefaultStateDir + "/s" whatever containerd's --state is.
 * $HUSK_SHIM_SOCKET_DIR overrides it (tests). */
#define SVC_SHIM_SOCKET_DIR "/run/containerd/s"
/* containerd's socketPathLimit: sun_path minus the NUL and slack. */
#define SVC_SHIM_SOCKET_PATH_MAX 106
/* The annotation runc's shim groups containers by, before the CRI ones. */
#define SVC_SHIM_GROUP_ANNOTATION "io.containerd.runc.v2.group"
/* Exit status reported by `delete` for a task whose shim is gone (runc
 * and kata: 128 + SIGKILL). */
#define SVC_SHIM_DELETE_STATUS 137

/* What the command line said.  Strings are borrowed from argv. */
typedef struct svc_shim_args {
    const char *ns;             /* -namespace */
    const char *address;        /* -address: containerd's gRPC socket */
    const char *publish_binary; /* -publish-binary (unused: we Forward over ttRPC) */
    const char *id;             /* -id: the container (task) id */
    const char *bundle;         /* -bundle (delete); start and serve use the cwd */
    const char *socket;         /* -socket: serve this address instead of fd 3 */
    const char *sandbox;        /* -sandbox: the group id (our own daemon re-exec) */
    bool debug;                 /* -debug */
    bool version;               /* -v */
    const char *action;         /* "start", "delete", or NULL: run the daemon */
} svc_shim_args_t;

/* Parses argv the way Go's flag package does for the Go shim library:
 * `-name value`, `-name=value`, `--name` the same; booleans take no value
 * (or `=true|false`); flags end at the first non-flag argument or `--`, and
 * the first positional argument is the action.  Unknown flags, missing
 * values and extra arguments are errors (EINVAL). */
int svc_shim_args_parse(int argc, char *const *argv, svc_shim_args_t *out, err_t *err);

/* The id containers are grouped by (one shim, one sandbox per group): the
 * io.containerd.runc.v2.group annotation, else the CRI sandbox id (CRI-O,
 * containerd, dockershim keys through oci_spec_cri_info), else the
 * container's own id.  Borrowed from spec or id. */
const char *svc_shim_group_id(const oci_spec_t *spec, const char *id);

/* SHA-256 of len bytes. */
void svc_shim_sha256(const void *data, size_t len, uint8_t out[32]);

/* containerd's SocketAddress: "unix://<dir>/<hex sha256(grpc_address + "/"
 * + ns + "/" + group)>", dir = SVC_SHIM_SOCKET_DIR when NULL.  -ENAMETOOLONG
 * when the path exceeds SVC_SHIM_SOCKET_PATH_MAX. */
int svc_shim_socket_address(const char *dir, const char *grpc_address, const char *ns,
                            const char *group, char *out, size_t out_len, err_t *err);

/* The filesystem path of a "unix://" address, or NULL when the address is
 * abstract (no unix:// prefix).  Borrowed from address. */
const char *svc_shim_socket_path(const char *address);

/* Exit status as containerd wants it from the runtime's (128 + signal when
 * killed; a negative or impossible status becomes 255). */
uint32_t svc_shim_exit_status(int64_t status);

/* Fills ts from nanoseconds since the epoch; 0 means "not exited" and
 * gives Go's zero time. */
void svc_shim_timestamp_from_ns(Google__Protobuf__Timestamp *ts, uint64_t ns);

/* containerd.v1.types.Status of a runtime state name ("created",
 * "running", "paused", "stopped"; "creating" counts as created); UNKNOWN
 * (0) otherwise. */
int svc_shim_status_of(const char *state);

/* The raw protobuf DeleteResponse `delete` prints: pid, exit_status,
 * exited_at = now.  Caller owns *buf (free()). */
int svc_shim_delete_response(uint32_t pid, uint32_t exit_status, uint8_t **buf, size_t *len,
                             err_t *err);


/* ---- event ordering ------------------------------------------------------
 * containerd's order per process (runtime/v2/README.md): create -> start ->
 * exit -> delete for the init; exec-added -> exec-started -> exit for an
 * exec; paused, resumed and oom after create and before delete.  The service asks
 * before publishing and parks what may not go yet (an exit seen before the
 * start event was sent is published right after it). */
enum svc_shim_ev {
    SVC_SHIM_EV_CREATE = 0,
    SVC_SHIM_EV_START,
    SVC_SHIM_EV_EXEC_ADDED,
    SVC_SHIM_EV_EXEC_STARTED,
    SVC_SHIM_EV_EXIT,
    SVC_SHIM_EV_DELETE,
    SVC_SHIM_EV_PAUSED,
    SVC_SHIM_EV_RESUMED,
    SVC_SHIM_EV_OOM,
    SVC_SHIM_EV_N
};

typedef struct svc_shim_order {
    uint32_t sent;     /* bit per enum svc_shim_ev already published */
    bool exit_pending; /* the exit is known but may not be published yet */
} svc_shim_order_t;

/* True when ev may be published now for a process (is_exec: an exec, else
 * the init) given what was sent.  Each of create, start, exec-added,
 * exec-started, exit and delete is published at most once. */
bool svc_shim_order_may(const svc_shim_order_t *o, bool is_exec, enum svc_shim_ev ev);
/* Records that ev was published. */
void svc_shim_order_sent(svc_shim_order_t *o, enum svc_shim_ev ev);

#endif
