/* Codec tests: round trip of every catalog type, and hostile input. */
#include <errno.h>
#include <msgpack.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "messages/mpread.h"
#include "messages/msg.h"

static unsigned rng_state = 12345;
static unsigned rnd(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

static void rand_str(char *buf, size_t maxlen)
{
    size_t n = rnd() % (maxlen + 1);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(1 + rnd() % 254); /* any byte but NUL */
    buf[n] = 0;
}

/* Fills every field of a body with random values within its limits. */
static void fill_random(msg_type_t type, void *body)
{
    const msg_field_t *f = msg_fields(type, NULL);
    for (; f->name; f++) {
        void *p = (char *)body + f->offset;
        char buf[256];
        switch (f->kind) {
        case MSG_K_BOOL:
            *(bool *)p = rnd() & 1;
            break;
        case MSG_K_I64:
            *(int64_t *)p = (int64_t)(((uint64_t)rnd() << 40) ^ rnd()) ^ -(int64_t)(rnd() & 1);
            break;
        case MSG_K_U64:
            *(uint64_t *)p = ((uint64_t)rnd() << 40) ^ rnd();
            break;
        case MSG_K_STR:
            rand_str(buf, f->max < 200 ? f->max : 200);
            msg_set_str(p, buf);
            break;
        case MSG_K_JSON:
            msg_set_str(p, "{\"a\":[1,2,{\"b\":null}],\"c\":\"d\"}");
            break;
        case MSG_K_BIN: {
            size_t n = rnd() % (f->max < 300 ? f->max + 1 : 300);
            uint8_t data[300];
            for (size_t i = 0; i < n; i++)
                data[i] = (uint8_t)rnd();
            msg_set_bin(p, data, n);
            break;
        }
        case MSG_K_STRV: {
            size_t n = rnd() % (f->max < 8 ? f->max + 1 : 8);
            for (size_t i = 0; i < n; i++) {
                rand_str(buf, 40);
                msg_strv_push(p, buf);
            }
            break;
        }
        case MSG_K_U64V: {
            size_t n = rnd() % (f->max < 8 ? f->max + 1 : 8);
            for (size_t i = 0; i < n; i++)
                msg_u64v_push(p, ((uint64_t)rnd() << 32) | rnd());
            break;
        }
        }
    }
}

static void assert_bodies_equal(msg_type_t type, const void *a, const void *b)
{
    for (const msg_field_t *f = msg_fields(type, NULL); f->name; f++) {
        const void *pa = (const char *)a + f->offset, *pb = (const char *)b + f->offset;
        switch (f->kind) {
        case MSG_K_BOOL:
            assert_int_equal(*(const bool *)pa, *(const bool *)pb);
            break;
        case MSG_K_I64:
            assert_true(*(const int64_t *)pa == *(const int64_t *)pb);
            break;
        case MSG_K_U64:
            assert_true(*(const uint64_t *)pa == *(const uint64_t *)pb);
            break;
        case MSG_K_STR:
        case MSG_K_JSON: {
            const char *sa = *(char *const *)pa, *sb = *(char *const *)pb;
            assert_string_equal(sa ? sa : "", sb);
            break;
        }
        case MSG_K_BIN: {
            const msg_bin_t *ba = pa, *bb = pb;
            assert_int_equal(ba->len, bb->len);
            if (ba->len)
                assert_memory_equal(ba->data, bb->data, ba->len);
            break;
        }
        case MSG_K_STRV: {
            const msg_strv_t *va = pa, *vb = pb;
            assert_int_equal(va->n, vb->n);
            for (size_t i = 0; i < va->n; i++)
                assert_string_equal(va->v[i], vb->v[i]);
            break;
        }
        case MSG_K_U64V: {
            const msg_u64v_t *va = pa, *vb = pb;
            assert_int_equal(va->n, vb->n);
            if (va->n)
                assert_memory_equal(va->v, vb->v, va->n * sizeof(uint64_t));
            break;
        }
        }
    }
}

static void test_msg_roundtrip_every_type_is_identical(void **s)
{
    for (int t = MSG_NONE + 1; t < MSG_TYPE_COUNT; t++) {
        for (int rep = 0; rep < 20; rep++) {
            msg_t *m = msg_new((msg_type_t)t);
            assert_non_null(m);
            m->id = rnd();
            m->reply_to = rep & 1 ? rnd() : 0;
            strcpy(m->from, "runtime");
            strcpy(m->to, "agent");
            m->ts_ns = 1700000000000000000ull + rnd();
            if (rep % 3 == 0)
                msg_set_status(m, EINVAL, "bad thing");
            fill_random((msg_type_t)t, m->body);
            uint8_t *buf;
            size_t len;
            err_t err = ERR_INIT;
            assert_int_equal(msg_encode(m, &buf, &len, &err), 0);
            msg_t *d = NULL;
            int rc = msg_decode(buf, len, &d, &err);
            if (rc < 0)
                fail_msg("%s: %s", msg_type_name((msg_type_t)t), err_str(&err));
            assert_int_equal(d->type, t);
            assert_true(d->id == m->id && d->reply_to == m->reply_to && d->ts_ns == m->ts_ns);
            assert_string_equal(d->from, "runtime");
            assert_string_equal(d->to, "agent");
            assert_int_equal(d->status, m->status);
            if (m->status_text)
                assert_string_equal(d->status_text, m->status_text);
            assert_bodies_equal((msg_type_t)t, m->body, d->body);
            assert_int_equal(msg_peek_type(buf, len), t);
            /* the schema-less printer renders every encoded message */
            char *json = msg_to_json(buf, len, &err);
            assert_non_null(json);
            assert_non_null(strstr(json, msg_type_name((msg_type_t)t)));
            free(json);
            free(buf);
            msg_destroy(&d);
            msg_destroy(&m);
            assert_null(m);
        }
    }
}

static void test_msg_type_names_resolve_both_ways(void **s)
{
    for (int t = MSG_NONE + 1; t < MSG_TYPE_COUNT; t++) {
        const char *n = msg_type_name((msg_type_t)t);
        assert_int_equal(msg_type_by_name(n, strlen(n)), t);
    }
    assert_int_equal(msg_type_by_name("no.such", 7), MSG_NONE);
    assert_int_equal(msg_type_by_name("bus.pin", 7), MSG_NONE);
    assert_int_equal(msg_type_by_name("", 0), MSG_NONE);
    assert_string_equal(msg_type_name(MSG_TYPE_COUNT), "?");
}

/* Encodes a test.all message, for the hostile tests to damage. */
static void encode_sample(uint8_t **buf, size_t *len)
{
    msg_t *m = msg_new(MSG_TEST_ALL);
    msg_test_all_t *b = m->body;
    b->flag = true;
    b->num = -5;
    b->count = 7;
    msg_set_str(&b->name, "hello");
    msg_set_str(&b->doc, "[1,2]");
    msg_set_bin(&b->blob, "\x00\x01\x02", 3);
    msg_strv_push(&b->words, "a");
    msg_strv_push(&b->words, "b");
    msg_u64v_push(&b->nums, 1);
    m->id = 1;
    err_t err = ERR_INIT;
    assert_int_equal(msg_encode(m, buf, len, &err), 0);
    msg_destroy(&m);
}

static void test_msg_decode_truncated_at_every_length_fails(void **s)
{
    uint8_t *buf;
    size_t len;
    encode_sample(&buf, &len);
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees any over-read */
        memcpy(copy, buf, n);
        msg_t *m = NULL;
        err_t err = ERR_INIT;
        assert_true(msg_decode(copy, n, &m, &err) < 0);
        assert_null(m);
        assert_non_null(err.msg);
        err_clear(&err);
        msg_type_t pt = msg_peek_type(copy, n); /* a prefix names its real type or none */
        assert_true(pt == MSG_NONE || pt == MSG_TEST_ALL);
        free(copy);
    }
    free(buf);
}

static void test_msg_decode_random_and_flipped_bytes_never_crash(void **s)
{
    uint8_t *buf;
    size_t len;
    encode_sample(&buf, &len);
    for (int i = 0; i < 20000; i++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, buf, len);
        int flips = 1 + rnd() % 4;
        for (int k = 0; k < flips; k++)
            copy[rnd() % len] ^= (uint8_t)(1 + rnd() % 255);
        msg_t *m = NULL;
        err_t err = ERR_INIT;
        if (msg_decode(copy, len, &m, &err) == 0)
            msg_destroy(&m);
        err_clear(&err);
        char *j = msg_to_json(copy, len, &err);
        free(j);
        err_clear(&err);
        free(copy);
    }
    for (int i = 0; i < 5000; i++) {
        size_t n = rnd() % 200;
        uint8_t *junk = malloc(n ? n : 1);
        for (size_t k = 0; k < n; k++)
            junk[k] = (uint8_t)rnd();
        msg_t *m = NULL;
        err_t err = ERR_INIT;
        if (msg_decode(junk, n, &m, &err) == 0)
            msg_destroy(&m);
        err_clear(&err);
        free(junk);
    }
    free(buf);
}

/* Builds an envelope whose body is given raw. */
static size_t envelope_with_body(uint8_t *out, size_t cap, const char *type, const uint8_t *body,
                                 size_t blen)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "v", 1);
    msgpack_pack_uint32(&pk, MSG_PROTO_VERSION);
    msgpack_pack_str(&pk, 4);
    msgpack_pack_str_body(&pk, "type", 4);
    msgpack_pack_str(&pk, strlen(type));
    msgpack_pack_str_body(&pk, type, strlen(type));
    msgpack_pack_str(&pk, 4);
    msgpack_pack_str_body(&pk, "body", 4);
    assert_true(sb.size + blen <= cap);
    memcpy(out, sb.data, sb.size);
    memcpy(out + sb.size, body, blen);
    size_t n = sb.size + blen;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static void expect_error(const uint8_t *buf, size_t len, const char *needle)
{
    msg_t *m = NULL;
    err_t err = ERR_INIT;
    int rc = msg_decode(buf, len, &m, &err);
    if (rc == 0)
        fail_msg("decoded, expected error containing '%s'", needle);
    assert_null(m);
    if (!strstr(err_str(&err), needle))
        fail_msg("error '%s' does not contain '%s'", err_str(&err), needle);
    err_clear(&err);
}

static void test_msg_decode_wrong_field_types_name_the_field(void **s)
{
    uint8_t buf[512];
    struct {
        const char *field;
        uint8_t value[8];
        size_t vlen;
        const char *expect;
    } cases[] = {
        {"flag", {0x01}, 1, "body.flag: expected boolean"},
        {"num", {0xa1, 'x'}, 2, "body.num: expected integer"},
        {"count", {0xff}, 1, "body.count: expected unsigned integer"}, /* -1 */
        {"name", {0x05}, 1, "body.name: expected string"},
        {"doc", {0xa3, '{', '{', '{'}, 4, "body.doc: invalid JSON"},
        {"blob", {0xa1, 'x'}, 2, "body.blob: expected binary"},
        {"words", {0x91, 0x01}, 2, "body.words[0]: expected string"},
        {"nums", {0x91, 0xa1, 'x'}, 3, "body.nums[0]: expected unsigned integer"},
        {"name", {0xa2, 'a', 0x00}, 3, "body.name: string contains a NUL byte"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t body[64];
        size_t k = 0, fl = strlen(cases[i].field);
        body[k++] = 0x81;
        body[k++] = (uint8_t)(0xa0 | fl);
        memcpy(body + k, cases[i].field, fl);
        k += fl;
        memcpy(body + k, cases[i].value, cases[i].vlen);
        k += cases[i].vlen;
        size_t n = envelope_with_body(buf, sizeof buf, "test.all", body, k);
        expect_error(buf, n, cases[i].expect);
    }
}

static void test_msg_decode_hostile_lengths_rejected_without_allocating(void **s)
{
    uint8_t buf[512];
    /* a map claiming 2^32-1 entries with nothing after it */
    const uint8_t huge_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    size_t n = envelope_with_body(buf, sizeof buf, "test.all", huge_map, sizeof huge_map);
    expect_error(buf, n, "body");
    /* a string field claiming 4 GiB */
    const uint8_t huge_str[] = {0x81, 0xa4, 'n', 'a', 'm', 'e', 0xdb, 0xff, 0xff, 0xff, 0xf0};
    n = envelope_with_body(buf, sizeof buf, "test.all", huge_str, sizeof huge_str);
    expect_error(buf, n, "body");
    /* an array claiming 2^32-1 strings */
    const uint8_t huge_arr[] = {0x81, 0xa5, 'w', 'o', 'r', 'd', 's', 0xdd, 0xff, 0xff, 0xff, 0xff};
    n = envelope_with_body(buf, sizeof buf, "test.all", huge_arr, sizeof huge_arr);
    expect_error(buf, n, "body");
    /* an over-limit string: name max is 64 */
    uint8_t long_str[100] = {0x81, 0xa4, 'n', 'a', 'm', 'e', 0xd9, 80};
    memset(long_str + 8, 'x', 80);
    n = envelope_with_body(buf, sizeof buf, "test.all", long_str, 88);
    expect_error(buf, n, "body.name: 80 bytes exceeds the limit of 64");
    /* too many items: words max is 16 */
    uint8_t many[64] = {0x81, 0xa5, 'w', 'o', 'r', 'd', 's', 0xdc, 0x00, 20};
    for (int i = 0; i < 20; i++)
        many[10 + i] = 0xa0;
    n = envelope_with_body(buf, sizeof buf, "test.all", many, 30);
    expect_error(buf, n, "body.words: 20 items exceeds the limit of 16");
    /* whole message over the size limit */
    msg_t *m = NULL;
    err_t err = ERR_INIT;
    assert_true(msg_decode(buf, MSG_MAX_BYTES + 1, &m, &err) < 0);
    assert_non_null(strstr(err_str(&err), "exceeds"));
    err_clear(&err);
}

static void test_msg_decode_deep_nesting_is_bounded(void **s)
{
    /* 100000 nested arrays inside an unknown field: must fail, not recurse */
    size_t depth = 100000;
    uint8_t *body = malloc(depth + 16);
    size_t k = 0;
    body[k++] = 0x81;
    body[k++] = 0xa3;
    memcpy(body + k, "zzz", 3);
    k += 3;
    memset(body + k, 0x91, depth);
    k += depth;
    body[k++] = 0xc0;
    uint8_t *buf = malloc(k + 64);
    size_t n = envelope_with_body(buf, k + 64, "test.all", body, k);
    expect_error(buf, n, "body: unreadable value");
    err_t err = ERR_INIT;
    assert_null(msg_to_json(buf, n, &err));
    err_clear(&err);
    free(body);
    free(buf);
}

static void test_msg_decode_envelope_errors_are_named(void **s)
{
    uint8_t buf[256];
    /* unknown type */
    const uint8_t empty[] = {0x80};
    size_t n = envelope_with_body(buf, sizeof buf, "no.such", empty, 1);
    expect_error(buf, n, "type: unknown message type 'no.such'");
    /* not a map */
    const uint8_t arr[] = {0x90};
    expect_error(arr, 1, "envelope: expected map");
    /* wrong version */
    msg_t *m = msg_new(MSG_BUS_PING);
    uint8_t *enc;
    size_t len;
    err_t err = ERR_INIT;
    assert_int_equal(msg_encode(m, &enc, &len, &err), 0);
    assert_int_equal(enc[1], 0xa1); /* "v" is the first key */
    enc[3] = 9;
    expect_error(enc, len, "v: protocol version 9");
    free(enc);
    /* trailing garbage */
    assert_int_equal(msg_encode(m, &enc, &len, &err), 0);
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, enc, len);
    longer[len] = 0xc0;
    expect_error(longer, len + 1, "trailing bytes");
    free(longer);
    free(enc);
    msg_destroy(&m);
    /* duplicate field */
    const uint8_t dup[] = {0x82, 0xa5, 'c', 'o', 'u', 'n', 't', 0x01,
                           0xa5, 'c',  'o', 'u', 'n', 't', 0x02};
    n = envelope_with_body(buf, sizeof buf, "test.all", dup, sizeof dup);
    expect_error(buf, n, "body.count: duplicate field");
    /* missing body */
    const uint8_t nobody[] = {0x82, 0xa1, 'v', 0x01, 0xa4, 't', 'y', 'p', 'e',
                              0xa8, 'b',  'u', 's',  '.',  'p', 'i', 'n', 'g'};
    expect_error(nobody, sizeof nobody, "body: missing");
    /* a status given twice (the fuzzer's leak: the first copy was lost) */
    const uint8_t twice[] = {0x84, 0xa1, 'v',  0x01, 0xa6, 's', 't', 'a', 't', 'u', 's',
                             0xa0, 0xa6, 's',  't',  'a',  't', 'u', 's', 0xa1, 'x', 0xa4,
                             't',  'y',  'p',  'e',  0xa8, 'b', 'u', 's', '.',  'p', 'i',
                             'n',  'g'};
    expect_error(twice, sizeof twice, "status: given twice");
}

static void test_msg_unknown_fields_skipped_missing_fields_defaulted(void **s)
{
    uint8_t buf[256];
    const uint8_t body[] = {0x82, 0xa5, 'e',  'x', 't', 'r', 'a', 0x92, 0x01,
                            0xa1, 'x',  0xa5, 'c', 'o', 'u', 'n', 't',  0x2a};
    size_t n = envelope_with_body(buf, sizeof buf, "test.all", body, sizeof body);
    msg_t *m = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(msg_decode(buf, n, &m, &err), 0);
    msg_test_all_t *b = MSG_BODY(m, TEST_ALL, test_all);
    assert_non_null(b);
    assert_int_equal(b->count, 42);
    assert_string_equal(b->name, ""); /* missing strings decode to "" */
    assert_int_equal(b->words.n, 0);
    assert_null(MSG_BODY(m, BUS_PING, bus_ping));
    msg_destroy(&m);
}

static void test_msg_unset_json_field_roundtrips_as_null(void **s)
{
    /* agent.create_container with storages never set: what is encoded must decode */
    msg_t *m = msg_new(MSG_AGENT_CREATE_CONTAINER);
    msg_set_str(&((msg_agent_create_container_t *)m->body)->container_id, "c1");
    msg_set_str(&((msg_agent_create_container_t *)m->body)->spec, "{}");
    uint8_t *buf = NULL;
    size_t len;
    err_t err = ERR_INIT;
    assert_int_equal(msg_encode(m, &buf, &len, &err), 0);
    msg_t *d = NULL;
    if (msg_decode(buf, len, &d, &err) < 0)
        fail_msg("decode: %s", err_str(&err));
    assert_string_equal(((msg_agent_create_container_t *)d->body)->storages, "null");
    assert_string_equal(((msg_agent_create_container_t *)d->body)->spec, "{}");
    free(buf);
    msg_destroy(&d);
    msg_destroy(&m);
}

static void test_msg_encode_rejects_over_limit_fields(void **s)
{
    msg_t *m = msg_new(MSG_TEST_ALL);
    char big[100];
    memset(big, 'x', 99);
    big[99] = 0;
    msg_set_str(&((msg_test_all_t *)m->body)->name, big);
    uint8_t *buf = NULL;
    size_t len;
    err_t err = ERR_INIT;
    assert_int_equal(msg_encode(m, &buf, &len, &err), -EMSGSIZE);
    assert_non_null(strstr(err_str(&err), "body.name"));
    err_clear(&err);
    msg_destroy(&m);
    assert_null(msg_new(MSG_NONE));
    assert_null(msg_new(MSG_TYPE_COUNT));
}

static void test_msg_error_reply_carries_status(void **s)
{
    msg_t *req = msg_new(MSG_BUS_PING);
    req->id = 77;
    strcpy(req->from, "cli");
    msg_t *e = msg_new_error(req, ENOENT, "container %s does not exist", "c1");
    assert_int_equal(e->reply_to, 77);
    assert_string_equal(e->to, "cli");
    assert_int_equal(e->status, ENOENT);
    assert_string_equal(e->status_text, "container c1 does not exist");
    msg_destroy(&e);
    msg_destroy(&req);
}

static void test_mpread_integer_widths_and_ranges(void **s)
{
    const uint8_t data[] = {0x05, 0xcc, 0xff, 0xcd, 0x01, 0x00, 0xd0, 0x80, 0xe0,
                            0xcf, 0x80, 0,    0,    0,    0,    0,    0,    0};
    mpr_t r;
    mpr_init(&r, data, sizeof data);
    uint64_t u;
    int64_t i;
    assert_int_equal(mpr_u64(&r, &u), 0);
    assert_int_equal(u, 5);
    assert_int_equal(mpr_u64(&r, &u), 0);
    assert_int_equal(u, 255);
    assert_int_equal(mpr_u64(&r, &u), 0);
    assert_int_equal(u, 256);
    assert_int_equal(mpr_i64(&r, &i), 0);
    assert_int_equal(i, -128);
    assert_int_equal(mpr_i64(&r, &i), 0);
    assert_int_equal(i, -32);
    assert_int_equal(mpr_i64(&r, &i), -1); /* 2^63 does not fit int64 */
    assert_true(r.failed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_roundtrip_every_type_is_identical),
        cmocka_unit_test(test_msg_type_names_resolve_both_ways),
        cmocka_unit_test(test_msg_decode_truncated_at_every_length_fails),
        cmocka_unit_test(test_msg_decode_random_and_flipped_bytes_never_crash),
        cmocka_unit_test(test_msg_decode_wrong_field_types_name_the_field),
        cmocka_unit_test(test_msg_decode_hostile_lengths_rejected_without_allocating),
        cmocka_unit_test(test_msg_decode_deep_nesting_is_bounded),
        cmocka_unit_test(test_msg_decode_envelope_errors_are_named),
        cmocka_unit_test(test_msg_unknown_fields_skipped_missing_fields_defaulted),
        cmocka_unit_test(test_msg_unset_json_field_roundtrips_as_null),
        cmocka_unit_test(test_msg_encode_rejects_over_limit_fields),
        cmocka_unit_test(test_msg_error_reply_carries_status),
        cmocka_unit_test(test_mpread_integer_widths_and_ranges),
    };
    return cmocka_run_group_tests_name("messages", tests, NULL, NULL);
}
