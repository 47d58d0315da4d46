/* libFuzzer target: the agent channel as the host reads it from an
 * untrusted guest.  The input is split into reads of varying size (taken
 * from the input itself), fed to the frame reader with a small bound, and
 * every frame is decoded as an envelope; a decoded message is re-encoded
 * and decoded again (the codec must accept its own output).
 *
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *       tests/fuzz/fuzz_agent_frame.c agent/frame.c messages/msg.c \
 *       messages/mpread.c common/err.c $(pkg-config --cflags --libs msgpack jansson)
 * (tests/e2e/fuzz_agent_frame.sh does this and runs it for ~20 s.) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/frame.h"

static int on_frame(void *arg, const uint8_t *p, size_t len)
{
    msg_t *m = NULL;
    err_t err = ERR_INIT;
    if (msg_decode(p, len, &m, &err) == 0) {
        uint8_t *buf = NULL;
        size_t n = 0;
        if (msg_encode(m, &buf, &n, &err) == 0) {
            msg_t *again = NULL;
            if (msg_decode(buf, n, &again, &err) < 0)
                abort(); /* our own encoding must decode */
            msg_destroy(&again);
            free(buf);
        }
        msg_destroy(&m);
    }
    err_clear(&err);
    (*(size_t *)arg)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* byte 0 picks the read size pattern */
    size_t step = 1 + data[0] % 64;
    data++;
    size--;
    agent_frame_reader_t *r = agent_frame_reader_new(64 * 1024);
    size_t frames = 0;
    err_t err = ERR_INIT;
    size_t off = 0;
    while (off < size) {
        size_t n = step < size - off ? step : size - off;
        if (agent_frame_feed(r, data + off, n, on_frame, &frames, &err) < 0)
            break; /* the stream is unusable: the host disconnects */
        off += n;
        step = step * 7 % 61 + 1;
    }
    err_clear(&err);
    agent_frame_reader_destroy(&r);
    return 0;
}
