/* ttrpc_event: see ttrpc_event.h. */
#include "services/ttrpc_event.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "services/proto/google/protobuf/any.pb-c.h"
#include "services/ttrpc_task.h"

static const struct {
    const ProtobufCMessageDescriptor *d;
    const char *topic;
} topics[] = {
    {&containerd__events__task_create__descriptor, "/tasks/create"},
    {&containerd__events__task_start__descriptor, "/tasks/start"},
    {&containerd__events__task_exit__descriptor, "/tasks/exit"},
    {&containerd__events__task_delete__descriptor, "/tasks/delete"},
    {&containerd__events__task_oom__descriptor, "/tasks/oom"},
    {&containerd__events__task_exec_added__descriptor, "/tasks/exec-added"},
    {&containerd__events__task_exec_started__descriptor, "/tasks/exec-started"},
    {&containerd__events__task_paused__descriptor, "/tasks/paused"},
    {&containerd__events__task_resumed__descriptor, "/tasks/resumed"},
    {&containerd__events__task_checkpointed__descriptor, "/tasks/checkpointed"},
};

const char *svc_ttrpc_event_topic(const ProtobufCMessageDescriptor *d)
{
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
        if (topics[i].d == d)
            return topics[i].topic;
    return NULL;
}

bool svc_ttrpc_identifier_valid(const char *s)
{
    /* containerd identifiers.Validate: ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$, <= 76. */
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 76)
        return false;
    bool prev_alnum = false;
    for (size_t i = 0; i < n; i++) {
        if (isalnum((unsigned char)s[i]) && (unsigned char)s[i] < 0x80) {
            prev_alnum = true;
        } else if (s[i] == '.' || s[i] == '_' || s[i] == '-') {
            if (!prev_alnum)
                return false;
            prev_alnum = false;
        } else {
            return false;
        }
    }
    return prev_alnum;
}

int svc_ttrpc_any_pack(const ProtobufCMessage *m, uint8_t **buf, size_t *len, err_t *err)
{
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    uint8_t *value = NULL;
    size_t vlen = 0;
    int r = svc_ttrpc_pack(m, &value, &vlen, err);
    if (r < 0)
        return r;
    any.type_url = (char *)m->descriptor->name; /* bare full name, as containerd's typeurl */
    any.value.data = value;
    any.value.len = vlen;
    r = svc_ttrpc_pack(&any.base, buf, len, err);
    free(value);
    return r;
}

int svc_ttrpc_event_pack(const char *ns, const ProtobufCMessage *event, const struct timespec *when,
                         uint8_t **buf, size_t *len, err_t *err)
{
    assert(event && buf && len);
    const char *topic = svc_ttrpc_event_topic(event->descriptor);
    if (!topic)
        return err_make(err, EINVAL, "%s is not a task event", event->descriptor->name);
    if (!svc_ttrpc_identifier_valid(ns))
        return err_make(err, EINVAL, "event namespace `%s` is not a valid identifier",
                        ns ? ns : "");
    struct timespec now;
    if (!when) {
        clock_gettime(CLOCK_REALTIME, &now);
        when = &now;
    }
    Google__Protobuf__Timestamp ts;
    svc_ttrpc_timestamp_set(&ts, when);
    if (ts.seconds == 0 && ts.nanos == 0)
        ts.nanos = 1; /* containerd rejects a zero timestamp */
    uint8_t *value = NULL;
    size_t vlen = 0;
    int r = svc_ttrpc_pack(event, &value, &vlen, err);
    if (r < 0)
        return r;
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = (char *)event->descriptor->name;
    any.value.data = value;
    any.value.len = vlen;
    Containerd__Services__Events__Ttrpc__V1__Envelope env =
        CONTAINERD__SERVICES__EVENTS__TTRPC__V1__ENVELOPE__INIT;
    env.timestamp = &ts;
    env.namespace_ = (char *)ns;
    env.topic = (char *)topic;
    env.event = &any;
    Containerd__Services__Events__Ttrpc__V1__ForwardRequest fwd =
        CONTAINERD__SERVICES__EVENTS__TTRPC__V1__FORWARD_REQUEST__INIT;
    fwd.envelope = &env;
    r = svc_ttrpc_pack(&fwd.base, buf, len, err);
    free(value);
    return r;
}

/* ---- publisher ------------------------------------------------------- */

struct item {
    struct item *next;
    uint8_t *buf; /* ForwardRequest */
    size_t len;
    int tries;
    const char *topic; /* static */
};

struct svc_ttrpc_publisher {
    struct event_base *base;
    char *address;
    char *ns;
    ttrpc_client_t *client;
    struct item *head, *tail;
    size_t n;
    size_t dropped;
    bool in_flight;
    bool dying;
    int64_t retry_ns;
    struct event *timer;
};

static void pump(svc_ttrpc_publisher_t *p);

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    pump(arg);
}

static void item_pop(svc_ttrpc_publisher_t *p)
{
    struct item *it = p->head;
    p->head = it->next;
    if (!p->head)
        p->tail = NULL;
    p->n--;
    free(it->buf);
    free(it);
}

/* The head failed once: retry later, or drop it after the last attempt. */
static void head_failed(svc_ttrpc_publisher_t *p, const char *why)
{
    struct item *it = p->head;
    it->tries++;
    if (it->tries >= SVC_TTRPC_PUBLISH_TRIES) {
        log_warn("ttrpc: dropped event %s after %d attempts: %s", it->topic, it->tries, why);
        p->dropped++;
        item_pop(p);
        it = p->head;
        if (!it)
            return;
    }
    int64_t d = p->retry_ns * (it->tries ? it->tries : 1);
    struct timeval tv = {.tv_sec = d / 1000000000, .tv_usec = (d % 1000000000) / 1000};
    evtimer_add(p->timer, &tv);
}

static void forward_cb(const ttrpc_status_t *st, const uint8_t *payload, size_t len, void *arg)
{
    svc_ttrpc_publisher_t *p = arg;
    if (p->dying)
        return;
    p->in_flight = false;
    if (st->code == TTRPC_OK) {
        item_pop(p);
        pump(p);
        return;
    }
    head_failed(p, st->message);
}

static void pump(svc_ttrpc_publisher_t *p)
{
    if (p->dying || p->in_flight || !p->head || evtimer_pending(p->timer, NULL))
        return;
    err_t err = ERR_INIT;
    if (p->client && ttrpc_client_closed(p->client))
        ttrpc_client_destroy(&p->client);
    if (!p->client && ttrpc_client_connect(p->base, p->address, &p->client, &err) < 0) {
        head_failed(p, err_str(&err));
        err_clear(&err);
        return;
    }
    ttrpc_kv_t md[] = {{SVC_TTRPC_NAMESPACE_KEY, p->ns}};
    ttrpc_call_opts_t o = {.timeout_ns = 5000000000LL, .metadata = md, .n_metadata = 1};
    if (ttrpc_client_call(p->client, SVC_TTRPC_EVENTS_SERVICE, SVC_TTRPC_EVENTS_FORWARD,
                          p->head->buf, p->head->len, &o, forward_cb, p, &err) < 0) {
        head_failed(p, err_str(&err));
        err_clear(&err);
        return;
    }
    p->in_flight = true;
}

int svc_ttrpc_publisher_new(struct event_base *base, const char *address, const char *ns,
                            svc_ttrpc_publisher_t **out, err_t *err)
{
    assert(base && out);
    if (!address || !*address)
        return err_make(err, EINVAL, "event publisher: no ttrpc address (TTRPC_ADDRESS unset?)");
    if (!svc_ttrpc_identifier_valid(ns))
        return err_make(err, EINVAL, "event publisher: namespace `%s` is not a valid identifier",
                        ns ? ns : "");
    svc_ttrpc_publisher_t *p = xcalloc(1, sizeof(*p));
    p->base = base;
    p->address = strdup(address);
    p->ns = strdup(ns);
    p->timer = evtimer_new(base, timer_cb, p);
    if (!p->address || !p->ns || !p->timer)
        abort();
    p->retry_ns = 1000000000LL;
    *out = p;
    return 0;
}

void svc_ttrpc_publisher_destroy(svc_ttrpc_publisher_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    svc_ttrpc_publisher_t *p = *self_p;
    *self_p = NULL;
    p->dying = true;
    ttrpc_client_destroy(&p->client); /* forward_cb sees dying */
    event_free(p->timer);
    while (p->head)
        item_pop(p);
    free(p->address);
    free(p->ns);
    free(p);
}

int svc_ttrpc_publish(svc_ttrpc_publisher_t *self, const ProtobufCMessage *event, err_t *err)
{
    if (self->n >= SVC_TTRPC_PUBLISH_QUEUE_MAX)
        return err_make(err, ENOSPC, "event queue full (%d events)", SVC_TTRPC_PUBLISH_QUEUE_MAX);
    struct item *it = xcalloc(1, sizeof(*it));
    int r = svc_ttrpc_event_pack(self->ns, event, NULL, &it->buf, &it->len, err);
    if (r < 0) {
        free(it);
        return r;
    }
    it->topic = svc_ttrpc_event_topic(event->descriptor);
    if (self->tail)
        self->tail->next = it;
    else
        self->head = it;
    self->tail = it;
    self->n++;
    /* Send from the loop, never from inside the caller's call. */
    if (!self->in_flight && !evtimer_pending(self->timer, NULL)) {
        struct timeval zero = {0, 0};
        evtimer_add(self->timer, &zero);
    }
    return 0;
}

size_t svc_ttrpc_publisher_queued(const svc_ttrpc_publisher_t *self)
{
    return self->n;
}

size_t svc_ttrpc_publisher_dropped(const svc_ttrpc_publisher_t *self)
{
    return self->dropped;
}

void svc_ttrpc_publisher_set_retry_delay(svc_ttrpc_publisher_t *self, int64_t ns)
{
    self->retry_ns = ns > 0 ? ns : 1;
}
