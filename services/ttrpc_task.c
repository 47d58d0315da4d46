/* ttrpc_task: see ttrpc_task.h. */
#include "services/ttrpc_task.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const struct svc_ttrpc_task_rpc_desc rpcs[SVC_TTRPC_TASK_N_RPCS] = {
#define X(ID, f, m, RQ, rqd, RS, rsd)                                                              \
    [SVC_TTRPC_TASK_##ID] = {                                                                      \
        .method = m,                                                                               \
        .name = SVC_TTRPC_TASK_SERVICE "/" m,                                                      \
        .request = &rqd,                                                                           \
        .response = &rsd,                                                                          \
    },
    SVC_TTRPC_TASK_RPCS(X)
#undef X
};

const struct svc_ttrpc_task_rpc_desc *svc_ttrpc_task_rpc(int rpc)
{
    assert(rpc >= 0 && rpc < SVC_TTRPC_TASK_N_RPCS);
    return &rpcs[rpc];
}

int svc_ttrpc_task_rpc_lookup(const char *method)
{
    if (!method)
        return -1;
    for (int i = 0; i < SVC_TTRPC_TASK_N_RPCS; i++)
        if (strcmp(rpcs[i].method, method) == 0)
            return i;
    return -1;
}

int svc_ttrpc_pack(const ProtobufCMessage *m, uint8_t **buf, size_t *len, err_t *err)
{
    assert(m && buf && len);
    size_t n = protobuf_c_message_get_packed_size(m);
    *buf = NULL;
    *len = 0;
    if (n == 0)
        return 0;
    uint8_t *b = malloc(n);
    if (!b)
        abort(); /* OOM policy: abort */
    size_t w = protobuf_c_message_pack(m, b);
    if (w != n) {
        free(b);
        return err_make(err, EINVAL, "encode %s: packed %zu of %zu bytes", m->descriptor->name, w,
                        n);
    }
    *buf = b;
    *len = n;
    return 0;
}

/* protobuf-c accepts field number 0 when its tag is a non-minimal varint
 * (`85 00`), keeps it as an unknown field and re-emits it minimal (`05`),
 * which protobuf-c and Go then reject: a decoded Mount copied into an event
 * would get the event refused by containerd.  Field 0 is invalid protobuf;
 * refuse it anywhere in the tree, as Go does.  Depth is bounded by the
 * schema (no recursive types). */
static bool has_field_zero(const ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return true;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *member = (const char *)m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)member;
            for (size_t j = 0; j < n; j++)
                if (arr[j] && has_field_zero(arr[j]))
                    return true;
        } else {
            const ProtobufCMessage *sub = *(ProtobufCMessage *const *)member;
            if (sub && has_field_zero(sub))
                return true;
        }
    }
    return false;
}

int svc_ttrpc_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                     ProtobufCMessage **out, err_t *err)
{
    assert(d && out);
    static const uint8_t none[1];
    /* protobuf-c bounds every read by len, rejects truncated and malformed
     * fields, and allocates in proportion to len; our schemas have no
     * recursive types, so the nesting depth is bounded too. */
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, buf ? buf : none);
    if (!m)
        return err_make(err, EBADMSG, "decode %s: malformed message (%zu bytes)", d->name, len);
    if (has_field_zero(m)) {
        protobuf_c_message_free_unpacked(m, NULL);
        return err_make(err, EBADMSG, "decode %s: invalid field number 0", d->name);
    }
    *out = m;
    return 0;
}

void svc_ttrpc_msg_free(ProtobufCMessage **m_p)
{
    if (!m_p || !*m_p)
        return;
    protobuf_c_message_free_unpacked(*m_p, NULL);
    *m_p = NULL;
}

void svc_ttrpc_timestamp_set(Google__Protobuf__Timestamp *ts, const struct timespec *t)
{
    google__protobuf__timestamp__init(ts);
    if (!t) {
        ts->seconds = SVC_TTRPC_GO_ZERO_TIME_SECONDS;
        return;
    }
    ts->seconds = t->tv_sec;
    ts->nanos = (int32_t)t->tv_nsec;
}

static void task_dispatch(ttrpc_call_t *call, const uint8_t *payload, size_t len, void *arg)
{
    const svc_ttrpc_task_service_t *svc = arg;
    int rpc = svc_ttrpc_task_rpc_lookup(ttrpc_call_method(call));
    assert(rpc >= 0); /* only our names are registered with this handler */
    err_t err = ERR_INIT;
    ProtobufCMessage *m = NULL;
    if (svc_ttrpc_unpack(rpcs[rpc].request, payload, len, &m, &err) < 0) {
        ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "unmarshal request error: %s", err_str(&err));
        err_clear(&err);
        return;
    }
    switch (rpc) {
#define X(ID, f, mth, RQ, rqd, RS, rsd)                                                            \
    case SVC_TTRPC_TASK_##ID:                                                                      \
        if (svc->ops->f) {                                                                         \
            RQ *req = (RQ *)m;                                                                     \
            svc->ops->f(svc->arg, call, &req);                                                     \
            m = (ProtobufCMessage *)req;                                                           \
        } else {                                                                                   \
            ttrpc_call_fail(call, TTRPC_UNIMPLEMENTED, "%s: not implemented", mth);                \
        }                                                                                          \
        break;
        SVC_TTRPC_TASK_RPCS(X)
#undef X
    default:
        abort();
    }
    svc_ttrpc_msg_free(&m);
}

int svc_ttrpc_task_register(ttrpc_server_t *server, const svc_ttrpc_task_service_t *svc, err_t *err)
{
    assert(server && svc && svc->ops);
    for (int i = 0; i < SVC_TTRPC_TASK_N_RPCS; i++) {
        int r = ttrpc_server_register(server, rpcs[i].name, task_dispatch, (void *)svc, err);
        if (r < 0)
            return r;
    }
    return 0;
}

void svc_ttrpc_task_reply(ttrpc_call_t *call, const ProtobufCMessage *resp)
{
    int rpc = svc_ttrpc_task_rpc_lookup(ttrpc_call_method(call));
    assert(rpc >= 0);
    const ProtobufCMessageDescriptor *want = rpcs[rpc].response;
    if (!resp) {
        assert(want == &google__protobuf__empty__descriptor);
        ttrpc_call_reply(call, NULL, 0);
        return;
    }
    assert(resp->descriptor == want);
    uint8_t *buf = NULL;
    size_t len = 0;
    err_t err = ERR_INIT;
    if (svc_ttrpc_pack(resp, &buf, &len, &err) < 0) {
        ttrpc_call_fail(call, TTRPC_INTERNAL, "%s", err_str(&err));
        err_clear(&err);
        return;
    }
    ttrpc_call_reply(call, buf, len);
    free(buf);
}

int svc_ttrpc_task_call(ttrpc_client_t *client, int rpc, const ProtobufCMessage *req,
                        const ttrpc_call_opts_t *opts, ttrpc_reply_fn fn, void *arg, err_t *err)
{
    assert(rpc >= 0 && rpc < SVC_TTRPC_TASK_N_RPCS && req);
    assert(req->descriptor == rpcs[rpc].request);
    uint8_t *buf = NULL;
    size_t len = 0;
    int r = svc_ttrpc_pack(req, &buf, &len, err);
    if (r < 0)
        return r;
    r = ttrpc_client_call(client, SVC_TTRPC_TASK_SERVICE, rpcs[rpc].method, buf, len, opts, fn, arg,
                          err);
    free(buf);
    return r;
}
