/* ttrpc_task: the containerd.task.v2.Task codec over services/ttrpc.
 *
 * For each of the 17 RPCs: the method name, the request and response
 * protobuf-c descriptors, a typed handler slot, and the glue that decodes a
 * request and encodes a response.  Handlers (the future shim service) see
 * only decoded messages and answer through svc_ttrpc_task_reply(), now or
 * later (Wait answers when the process exits).  See docs/ttrpc.md. */
#ifndef HUSK_SERVICES_TTRPC_TASK_H
#define HUSK_SERVICES_TTRPC_TASK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <protobuf-c/protobuf-c.h>

#include "common/err.h"
#include "services/proto/containerd/task/v2/shim.pb-c.h"
#include "services/ttrpc.h"

#define SVC_TTRPC_TASK_SERVICE "containerd.task.v2.Task"

/* X(ID, ops field, method, request type, request descriptor, response type,
 *   response descriptor); order = shim.proto. */
#define SVC_TTRPC_TASK_RPCS(X)                                                                     \
    X(STATE, state, "State", Containerd__Task__V2__StateRequest,                                   \
      containerd__task__v2__state_request__descriptor, Containerd__Task__V2__StateResponse,        \
      containerd__task__v2__state_response__descriptor)                                            \
    X(CREATE, create, "Create", Containerd__Task__V2__CreateTaskRequest,                           \
      containerd__task__v2__create_task_request__descriptor,                                       \
      Containerd__Task__V2__CreateTaskResponse,                                                    \
      containerd__task__v2__create_task_response__descriptor)                                      \
    X(START, start, "Start", Containerd__Task__V2__StartRequest,                                   \
      containerd__task__v2__start_request__descriptor, Containerd__Task__V2__StartResponse,        \
      containerd__task__v2__start_response__descriptor)                                            \
    X(DELETE, delete, "Delete", Containerd__Task__V2__DeleteRequest,                               \
      containerd__task__v2__delete_request__descriptor, Containerd__Task__V2__DeleteResponse,      \
      containerd__task__v2__delete_response__descriptor)                                           \
    X(PIDS, pids, "Pids", Containerd__Task__V2__PidsRequest,                                       \
      containerd__task__v2__pids_request__descriptor, Containerd__Task__V2__PidsResponse,          \
      containerd__task__v2__pids_response__descriptor)                                             \
    X(PAUSE, pause, "Pause", Containerd__Task__V2__PauseRequest,                                   \
      containerd__task__v2__pause_request__descriptor, Google__Protobuf__Empty,                    \
      google__protobuf__empty__descriptor)                                                         \
    X(RESUME, resume, "Resume", Containerd__Task__V2__ResumeRequest,                               \
      containerd__task__v2__resume_request__descriptor, Google__Protobuf__Empty,                   \
      google__protobuf__empty__descriptor)                                                         \
    X(CHECKPOINT, checkpoint, "Checkpoint", Containerd__Task__V2__CheckpointTaskRequest,           \
      containerd__task__v2__checkpoint_task_request__descriptor, Google__Protobuf__Empty,          \
      google__protobuf__empty__descriptor)                                                         \
    X(KILL, kill, "Kill", Containerd__Task__V2__KillRequest,                                       \
      containerd__task__v2__kill_request__descriptor, Google__Protobuf__Empty,                     \
      google__protobuf__empty__descriptor)                                                         \
    X(EXEC, exec, "Exec", Containerd__Task__V2__ExecProcessRequest,                                \
      containerd__task__v2__exec_process_request__descriptor, Google__Protobuf__Empty,             \
      google__protobuf__empty__descriptor)                                                         \
    X(RESIZE_PTY, resize_pty, "ResizePty", Containerd__Task__V2__ResizePtyRequest,                 \
      containerd__task__v2__resize_pty_request__descriptor, Google__Protobuf__Empty,               \
      google__protobuf__empty__descriptor)                                                         \
    X(CLOSE_IO, close_io, "CloseIO", Containerd__Task__V2__CloseIORequest,                         \
      containerd__task__v2__close_iorequest__descriptor, Google__Protobuf__Empty,                  \
      google__protobuf__empty__descriptor)                                                         \
    X(UPDATE, update, "Update", Containerd__Task__V2__UpdateTaskRequest,                           \
      containerd__task__v2__update_task_request__descriptor, Google__Protobuf__Empty,              \
      google__protobuf__empty__descriptor)                                                         \
    X(WAIT, wait, "Wait", Containerd__Task__V2__WaitRequest,                                       \
      containerd__task__v2__wait_request__descriptor, Containerd__Task__V2__WaitResponse,          \
      containerd__task__v2__wait_response__descriptor)                                             \
    X(STATS, stats, "Stats", Containerd__Task__V2__StatsRequest,                                   \
      containerd__task__v2__stats_request__descriptor, Containerd__Task__V2__StatsResponse,        \
      containerd__task__v2__stats_response__descriptor)                                            \
    X(CONNECT, connect, "Connect", Containerd__Task__V2__ConnectRequest,                           \
      containerd__task__v2__connect_request__descriptor, Containerd__Task__V2__ConnectResponse,    \
      containerd__task__v2__connect_response__descriptor)                                          \
    X(SHUTDOWN, shutdown, "Shutdown", Containerd__Task__V2__ShutdownRequest,                       \
      containerd__task__v2__shutdown_request__descriptor, Google__Protobuf__Empty,                 \
      google__protobuf__empty__descriptor)

enum svc_ttrpc_task_rpc {
#define SVC_TTRPC_X_ENUM(ID, f, m, RQ, rqd, RS, rsd) SVC_TTRPC_TASK_##ID,
    SVC_TTRPC_TASK_RPCS(SVC_TTRPC_X_ENUM)
#undef SVC_TTRPC_X_ENUM
        SVC_TTRPC_TASK_N_RPCS
};

struct svc_ttrpc_task_rpc_desc {
    const char *method; /* "Create" */
    const char *name;   /* "containerd.task.v2.Task/Create" */
    const ProtobufCMessageDescriptor *request;
    const ProtobufCMessageDescriptor *response;
};

/* rpc in [0, SVC_TTRPC_TASK_N_RPCS).  Static table. */
const struct svc_ttrpc_task_rpc_desc *svc_ttrpc_task_rpc(int rpc);
/* "Create" -> SVC_TTRPC_TASK_CREATE; -1 when unknown. */
int svc_ttrpc_task_rpc_lookup(const char *method);

/* Typed handlers.  *req_p: the decoded request; the dispatcher frees it when
 * the handler returns unless the handler took it (TAKE_PTR(*req_p)), in
 * which case free it with svc_ttrpc_msg_free().  A NULL slot answers
 * Unimplemented.  call: answer it exactly once with svc_ttrpc_task_reply()
 * or ttrpc_call_fail*(), now or later. */
struct svc_ttrpc_task_ops {
#define SVC_TTRPC_X_OP(ID, f, m, RQ, rqd, RS, rsd)                                                 \
    void (*f)(void *arg, ttrpc_call_t *call, RQ **req_p);
    SVC_TTRPC_TASK_RPCS(SVC_TTRPC_X_OP)
#undef SVC_TTRPC_X_OP
};

typedef struct svc_ttrpc_task_service {
    const struct svc_ttrpc_task_ops *ops; /* Borrowed */
    void *arg;                            /* passed to every op */
} svc_ttrpc_task_service_t;

/* Registers the 17 methods of containerd.task.v2.Task on server.  svc:
 * Borrowed; must outlive the server. */
int svc_ttrpc_task_register(ttrpc_server_t *server, const svc_ttrpc_task_service_t *svc,
                            err_t *err);

/* Encodes resp and answers call with it.  resp must be of the response type
 * of the call's method (assert); NULL stands for google.protobuf.Empty and is
 * allowed only for Empty-returning methods.  Frees call. */
void svc_ttrpc_task_reply(ttrpc_call_t *call, const ProtobufCMessage *resp);

/* Client side: encodes req (must be the request type of rpc) and calls
 * containerd.task.v2.Task/<method>.  See ttrpc_client_call(). */
int svc_ttrpc_task_call(ttrpc_client_t *client, int rpc, const ProtobufCMessage *req,
                        const ttrpc_call_opts_t *opts, ttrpc_reply_fn fn, void *arg, err_t *err);

/* ---- generic protobuf-c helpers -------------------------------------- */

/* Encodes m.  Caller owns *buf (free()); *buf is NULL when *len is 0. */
int svc_ttrpc_pack(const ProtobufCMessage *m, uint8_t **buf, size_t *len, err_t *err);
/* Decodes untrusted bytes as a message of type d: -EBADMSG naming the type
 * when malformed.  Caller owns *out: free with svc_ttrpc_msg_free(). */
int svc_ttrpc_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                     ProtobufCMessage **out, err_t *err);
/* Frees a message from svc_ttrpc_unpack(); accepts NULL, nullifies. */
void svc_ttrpc_msg_free(ProtobufCMessage **m_p);
#define svc_ttrpc_msg_freep(pp) svc_ttrpc_msg_free((ProtobufCMessage **)(pp))

/* Go's zero time.Time, which the Go shim sends as exited_at for a process
 * that has not exited (reference §3.5).  Never send {0,0} (1970) for it. */
#define SVC_TTRPC_GO_ZERO_TIME_SECONDS (-62135596800LL)

/* Fills ts from t, or with Go's zero time when t is NULL (not exited). */
void svc_ttrpc_timestamp_set(Google__Protobuf__Timestamp *ts, const struct timespec *t);

#endif
