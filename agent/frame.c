#include "agent/frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK     (64 * 1024)
#define DEFAULT_BUDGET (256 * 1024)

struct agent_frame_reader {
    size_t max;                   /* payload bound */
    uint8_t hdr[AGENT_FRAME_HDR]; /* length bytes received so far */
    size_t hdr_got;
    uint8_t *buf; /* payload being assembled, or NULL */
    size_t want;  /* its length */
    size_t got;   /* bytes of it received */
};

agent_frame_reader_t *agent_frame_reader_new(size_t max)
{
    agent_frame_reader_t *r = calloc(1, sizeof *r);
    if (r)
        r->max = max ? max : AGENT_FRAME_MAX;
    return r;
}

void agent_frame_reader_reset(agent_frame_reader_t *r)
{
    free(r->buf);
    r->buf = NULL;
    r->hdr_got = r->want = r->got = 0;
}

void agent_frame_reader_destroy(agent_frame_reader_t **rp)
{
    if (!rp || !*rp)
        return;
    agent_frame_reader_reset(*rp);
    free(*rp);
    *rp = NULL;
}

int agent_frame_reader_partial(const agent_frame_reader_t *r)
{
    return r->hdr_got > 0 || r->buf != NULL;
}

int agent_frame_feed(agent_frame_reader_t *r, const void *data, size_t len, agent_frame_fn cb,
                     void *arg, err_t *err)
{
    const uint8_t *p = data;
    while (len > 0) {
        if (!r->buf) {
            size_t n = AGENT_FRAME_HDR - r->hdr_got;
            if (n > len)
                n = len;
            memcpy(r->hdr + r->hdr_got, p, n);
            r->hdr_got += n;
            p += n;
            len -= n;
            if (r->hdr_got < AGENT_FRAME_HDR)
                break;
            uint32_t want = (uint32_t)r->hdr[0] << 24 | (uint32_t)r->hdr[1] << 16 |
                            (uint32_t)r->hdr[2] << 8 | (uint32_t)r->hdr[3];
            if (want == 0 || want > r->max)
                return err_make(err, EMSGSIZE, "agent frame: length %u %s", want,
                                want ? "exceeds the limit" : "is empty");
            r->buf = malloc(want);
            if (!r->buf)
                return err_make(err, ENOMEM, "agent frame: out of memory for %u bytes", want);
            r->want = want;
            r->got = 0;
        }
        size_t n = r->want - r->got;
        if (n > len)
            n = len;
        memcpy(r->buf + r->got, p, n);
        r->got += n;
        p += n;
        len -= n;
        if (r->got < r->want)
            break;
        uint8_t *frame = r->buf;
        size_t flen = r->want;
        r->buf = NULL;
        r->hdr_got = r->want = r->got = 0;
        int rc = cb(arg, frame, flen);
        free(frame);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int agent_frame_read(agent_frame_reader_t *r, int fd, size_t budget, agent_frame_fn cb, void *arg,
                     err_t *err)
{
    uint8_t chunk[READ_CHUNK];
    size_t total = 0;
    if (!budget)
        budget = DEFAULT_BUDGET;
    while (total < budget) {
        size_t n = budget - total < sizeof chunk ? budget - total : sizeof chunk;
        ssize_t got = read(fd, chunk, n);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == ECONNRESET || errno == EIO)
                return err_make(err, EPIPE, "agent channel: %s", strerror(errno));
            return err_errno(err, "agent channel: read");
        }
        if (got == 0)
            return err_make(err, EPIPE, "agent channel: end of stream%s",
                            agent_frame_reader_partial(r) ? " inside a frame" : "");
        total += (size_t)got;
        int rc = agent_frame_feed(r, chunk, (size_t)got, cb, arg, err);
        if (rc < 0)
            return rc;
    }
    return 1;
}

/* ---- writer ------------------------------------------------------------- */

struct wframe {
    struct wframe *next;
    size_t len; /* header + payload */
    size_t off; /* bytes already written */
    uint8_t data[];
};

struct agent_frame_writer {
    size_t max, frame_max;
    size_t pending;
    struct wframe *head, *tail;
};

agent_frame_writer_t *agent_frame_writer_new(size_t max, size_t frame_max)
{
    agent_frame_writer_t *w = calloc(1, sizeof *w);
    if (w) {
        w->max = max ? max : AGENT_FRAME_QUEUE_MAX;
        w->frame_max = frame_max ? frame_max : AGENT_FRAME_MAX;
    }
    return w;
}

void agent_frame_writer_reset(agent_frame_writer_t *w)
{
    while (w->head) {
        struct wframe *f = w->head;
        w->head = f->next;
        free(f);
    }
    w->tail = NULL;
    w->pending = 0;
}

void agent_frame_writer_destroy(agent_frame_writer_t **wp)
{
    if (!wp || !*wp)
        return;
    agent_frame_writer_reset(*wp);
    free(*wp);
    *wp = NULL;
}

size_t agent_frame_writer_pending(const agent_frame_writer_t *w)
{
    return w->pending;
}

size_t agent_frame_writer_max(const agent_frame_writer_t *w)
{
    return w->max;
}

int agent_frame_writer_push(agent_frame_writer_t *w, const void *payload, size_t len, err_t *err)
{
    if (len == 0 || len > w->frame_max)
        return err_make(err, EMSGSIZE, "agent frame: payload of %zu bytes (limit %zu)", len,
                        w->frame_max);
    size_t total = AGENT_FRAME_HDR + len;
    if (w->pending + total > w->max)
        return err_make(err, ENOBUFS, "agent channel: send queue full (%zu of %zu bytes)",
                        w->pending, w->max);
    struct wframe *f = malloc(sizeof *f + total);
    if (!f)
        return err_make(err, ENOMEM, "agent frame: out of memory");
    f->next = NULL;
    f->len = total;
    f->off = 0;
    f->data[0] = (uint8_t)(len >> 24);
    f->data[1] = (uint8_t)(len >> 16);
    f->data[2] = (uint8_t)(len >> 8);
    f->data[3] = (uint8_t)len;
    memcpy(f->data + AGENT_FRAME_HDR, payload, len);
    if (w->tail)
        w->tail->next = f;
    else
        w->head = f;
    w->tail = f;
    w->pending += total;
    return 0;
}

int agent_frame_writer_push_msg(agent_frame_writer_t *w, const msg_t *m, err_t *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = msg_encode(m, &buf, &len, err);
    if (rc < 0)
        return rc;
    rc = agent_frame_writer_push(w, buf, len, err);
    free(buf);
    return rc;
}

int agent_frame_writer_flush(agent_frame_writer_t *w, int fd, err_t *err)
{
    while (w->head) {
        struct wframe *f = w->head;
        /* send() with MSG_NOSIGNAL: a vanished peer is an error, not a
         * SIGPIPE; the guest's virtio port is no socket, so write() there */
        ssize_t n = send(fd, f->data + f->off, f->len - f->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, f->data + f->off, f->len - f->off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 1;
            if (errno == EPIPE || errno == ECONNRESET)
                return err_make(err, EPIPE, "agent channel: peer gone (%s)", strerror(errno));
            return err_errno(err, "agent channel: write");
        }
        f->off += (size_t)n;
        w->pending -= (size_t)n;
        if (f->off == f->len) {
            w->head = f->next;
            if (!w->head)
                w->tail = NULL;
            free(f);
        }
    }
    return 0;
}
