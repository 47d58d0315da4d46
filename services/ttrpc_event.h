/* ttrpc_event: publishing task events to containerd 1.6.
 *
 * How a 1.6 shim publishes (reference §4.3): a ttRPC call
 * containerd.services.events.ttrpc.v1.Events/Forward on the unix socket named
 * by $TTRPC_ADDRESS (plain path, optional unix://), with a ForwardRequest
 * { Envelope { timestamp (non-zero), namespace, topic, event: Any } }, where
 * Any.type_url is the bare message name ("containerd.events.TaskExit", no
 * type.googleapis.com/ prefix).  The runc v2 shim and kata do exactly this.
 * The older `containerd --address A publish --topic T --namespace N` with the
 * Any on stdin (v1 shims) still works in 1.6; svc_ttrpc_any_pack() builds
 * that stdin should a fallback ever be wanted. */
#ifndef HUSK_SERVICES_TTRPC_EVENT_H
#define HUSK_SERVICES_TTRPC_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <protobuf-c/protobuf-c.h>

#include "common/err.h"
#include "services/proto/containerd/events/task.pb-c.h"
#include "services/proto/containerd/services/events/ttrpc/v1/events.pb-c.h"
#include "services/ttrpc.h"

#define SVC_TTRPC_EVENTS_SERVICE "containerd.services.events.ttrpc.v1.Events"
#define SVC_TTRPC_EVENTS_FORWARD "Forward"
/* The metadata key carrying the namespace (containerd namespaces/ttrpc.go). */
#define SVC_TTRPC_NAMESPACE_KEY "containerd-namespace-ttrpc"

/* The topic of a containerd.events.Task* message ("/tasks/exit"...), or NULL
 * when d is not a task event.  Static string. */
const char *svc_ttrpc_event_topic(const ProtobufCMessageDescriptor *d);

/* True when s is a valid containerd identifier (namespaces, topic parts):
 * [A-Za-z0-9]+ joined by single '.', '_' or '-', at most 76 bytes. */
bool svc_ttrpc_identifier_valid(const char *s);

/* google.protobuf.Any{type_url = full message name, value = m encoded},
 * encoded.  This is also the stdin of `containerd publish`.  Caller owns
 * *buf (free()). */
int svc_ttrpc_any_pack(const ProtobufCMessage *m, uint8_t **buf, size_t *len, err_t *err);

/* The payload of an Events/Forward request: ForwardRequest{Envelope{when
 * (NULL = now, CLOCK_REALTIME), ns, topic of event, Any(event)}}, encoded.
 * -EINVAL for an invalid namespace or a message that is not a task event.
 * Caller owns *buf (free()). */
int svc_ttrpc_event_pack(const char *ns, const ProtobufCMessage *event, const struct timespec *when,
                         uint8_t **buf, size_t *len, err_t *err);

/* ---- publisher ------------------------------------------------------- */

/* Forwards events to containerd in order, one in flight, like the Go shim:
 * a bounded queue (SVC_TTRPC_PUBLISH_QUEUE_MAX), a 5 s timeout per Forward,
 * up to SVC_TTRPC_PUBLISH_TRIES attempts per event with a delay of
 * <attempt> x retry_delay (1 s by default) between them, reconnecting when
 * the connection is gone.  An event that fails every attempt is dropped
 * with a warning in the log (nobody is left to return an error to). */
typedef struct svc_ttrpc_publisher svc_ttrpc_publisher_t;

#define SVC_TTRPC_PUBLISH_QUEUE_MAX 2048
#define SVC_TTRPC_PUBLISH_TRIES     5

/* address: $TTRPC_ADDRESS (copied); ns: the shim's -namespace (copied,
 * validated).  Connects lazily.  Caller owns return value and must destroy
 * it when done. */
int svc_ttrpc_publisher_new(struct event_base *base, const char *address, const char *ns,
                            svc_ttrpc_publisher_t **out, err_t *err);
/* Drops what is still queued.  Idempotent, accepts NULL, nullifies. */
void svc_ttrpc_publisher_destroy(svc_ttrpc_publisher_t **self_p);
/* Stamps event with the current time and queues it.  event Borrowed
 * (encoded at once).  -ENOSPC when the queue is full, -EINVAL when event is
 * not a task event. */
int svc_ttrpc_publish(svc_ttrpc_publisher_t *self, const ProtobufCMessage *event, err_t *err);
/* Events queued or in flight. */
size_t svc_ttrpc_publisher_queued(const svc_ttrpc_publisher_t *self);
/* Events dropped after exhausting their attempts. */
size_t svc_ttrpc_publisher_dropped(const svc_ttrpc_publisher_t *self);
/* Unit of the retry back-off (tests shorten it). */
void svc_ttrpc_publisher_set_retry_delay(svc_ttrpc_publisher_t *self, int64_t ns);

#endif
