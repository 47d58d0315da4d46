#include "bus/zev.h"

#include <stdlib.h>
#include <zmq.h>

struct zev {
    struct event *ev;
    void *sock;
    zev_read_fn on_read;
    void *arg;
    int budget;
};

static int events_of(void *sock)
{
    int events = 0;
    size_t len = sizeof events;
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &events, &len) < 0)
        return 0;
    return events;
}

static void on_fd(evutil_socket_t fd, short what, void *arg)
{
    zev_t *z = arg;
    for (int n = 0; n < z->budget; n++) {
        if (!(events_of(z->sock) & ZMQ_POLLIN))
            return; /* spurious or drained: the documented case */
        if (z->on_read(z->arg) < 0)
            return;
    }
    /* budget spent with messages still waiting: come back after others ran */
    if (events_of(z->sock) & ZMQ_POLLIN)
        event_active(z->ev, EV_READ, 0);
}

zev_t *zev_new(struct event_base *base, void *sock, zev_read_fn on_read, void *arg, int budget)
{
    int fd;
    size_t len = sizeof fd;
    if (zmq_getsockopt(sock, ZMQ_FD, &fd, &len) < 0)
        return NULL;
    zev_t *z = calloc(1, sizeof *z);
    if (!z)
        return NULL;
    z->sock = sock;
    z->on_read = on_read;
    z->arg = arg;
    z->budget = budget > 0 ? budget : 64;
    z->ev = event_new(base, fd, EV_READ | EV_PERSIST, on_fd, z);
    if (!z->ev || event_add(z->ev, NULL) < 0) {
        if (z->ev)
            event_free(z->ev);
        free(z);
        return NULL;
    }
    /* messages may already be queued: the edge happened before we looked */
    event_active(z->ev, EV_READ, 0);
    return z;
}

void zev_after_send(zev_t *z)
{
    if (z && (events_of(z->sock) & ZMQ_POLLIN))
        event_active(z->ev, EV_READ, 0);
}

int zev_writable(zev_t *z)
{
    return (events_of(z->sock) & ZMQ_POLLOUT) != 0;
}

void zev_destroy(zev_t **zp)
{
    if (!zp || !*zp)
        return;
    zev_t *z = *zp;
    if (z->ev) {
        event_del(z->ev);
        event_free(z->ev);
    }
    free(z);
    *zp = NULL;
}
