/* Tests for the agent wire protocol: framing, the streaming decoder, re-sync, path checks. */
#include "kiln-test.h"

#include "common/buf.h"
#include "common/json.h"
#include "guest-agent/proto.h"

static void
test_crc32_known_value(void **state)
{
    /* The standard check value of CRC-32/ISO-HDLC. */
    assert_int_equal(kiln_proto_crc32(0, "123456789", 9), 0xcbf43926u);
    assert_int_equal(kiln_proto_crc32(kiln_proto_crc32(0, "1234", 4), "56789", 5), 0xcbf43926u);
}

static void
test_roundtrip_byte_by_byte(void **state)
{
    _cleanup_buf_ struct kiln_buf b = {0};
    _cleanup_json_ json_t *j = json_pack("{s:s, s:i}", "hello", "world", "n", 42);
    assert_int_equal(kiln_proto_encode_json(&b, KILN_MSG_PING, 0, 7, j), 0);
    uint8_t bin[300];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (uint8_t)i;
    assert_int_equal(kiln_proto_encode_data(&b, 9, 3, 1ull << 33, bin, sizeof(bin)), 0);

    struct kiln_proto_decoder d;
    kiln_proto_decoder_init(&d, 0);
    int frames = 0;
    for (size_t i = 0; i < b.len; i++) {
        kiln_proto_decoder_feed(&d, b.data + i, 1);
        _cleanup_frame_ struct kiln_proto_frame f = {0};
        int r = kiln_proto_decoder_next(&d, &f, NULL);
        assert_true(r >= 0);
        if (r == 0)
            continue;
        frames++;
        if (frames == 1) {
            assert_int_equal(f.type, KILN_MSG_PING);
            assert_int_equal(f.seq, 7);
            _cleanup_json_ json_t *back = NULL;
            assert_int_equal(kiln_proto_frame_json(&f, &back, NULL), 0);
            assert_true(json_equal(back, j));
        } else {
            uint32_t index;
            uint64_t off;
            const uint8_t *data;
            size_t len;
            assert_int_equal(kiln_proto_frame_data(&f, &index, &off, &data, &len, NULL), 0);
            assert_int_equal(index, 3);
            assert_true(off == 1ull << 33);
            assert_int_equal(len, sizeof(bin));
            assert_memory_equal(data, bin, sizeof(bin));
        }
    }
    assert_int_equal(frames, 2);
    assert_int_equal(d.skipped, 0);
    assert_false(kiln_proto_decoder_partial(&d));
    kiln_proto_decoder_clear(&d);
}

static void
test_junk_is_skipped(void **state)
{
    _cleanup_buf_ struct kiln_buf b = {0};
    /* Junk that contains the magic and even a header-sized run after it. */
    kiln_buf_append_str(&b, "boot noise KILN KILNxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n\xff");
    size_t junk = b.len;
    _cleanup_json_ json_t *j = json_object();
    assert_int_equal(kiln_proto_encode_json(&b, KILN_MSG_PONG, KILN_PROTO_FLAG_REPLY, 1, j), 0);
    struct kiln_proto_decoder d;
    kiln_proto_decoder_init(&d, 0);
    kiln_proto_decoder_feed(&d, b.data, b.len);
    _cleanup_frame_ struct kiln_proto_frame f = {0};
    assert_int_equal(kiln_proto_decoder_next(&d, &f, NULL), 1);
    assert_int_equal(f.type, KILN_MSG_PONG);
    assert_int_equal(f.flags, KILN_PROTO_FLAG_REPLY);
    assert_int_equal(d.skipped, junk);
    assert_int_equal(d.rejected, 0);
    kiln_proto_decoder_clear(&d);
}

/* A header with a valid checksum that claims a payload over the limit. */
static void
append_oversized_header(struct kiln_buf *b, uint32_t len)
{
    uint8_t h[KILN_PROTO_HEADER_SIZE] = {'K', 'I', 'L', 'N', KILN_PROTO_VERSION, KILN_MSG_PONG};
    h[12] = (uint8_t)(len >> 24);
    h[13] = (uint8_t)(len >> 16);
    h[14] = (uint8_t)(len >> 8);
    h[15] = (uint8_t)len;
    uint32_t crc = kiln_proto_crc32(0, h, 20);
    h[20] = (uint8_t)(crc >> 24);
    h[21] = (uint8_t)(crc >> 16);
    h[22] = (uint8_t)(crc >> 8);
    h[23] = (uint8_t)crc;
    kiln_buf_append(b, h, sizeof(h));
}

static void
test_oversized_frame_rejected_then_recovers(void **state)
{
    _cleanup_buf_ struct kiln_buf b = {0};
    append_oversized_header(&b, KILN_PROTO_MAX_PAYLOAD + 1);
    _cleanup_json_ json_t *j = json_object();
    assert_int_equal(kiln_proto_encode_json(&b, KILN_MSG_ACK, 0, 5, j), 0);
    struct kiln_proto_decoder d;
    kiln_proto_decoder_init(&d, 0);
    kiln_proto_decoder_feed(&d, b.data, b.len);
    struct kiln_error err = {0};
    _cleanup_frame_ struct kiln_proto_frame f = {0};
    assert_int_equal(kiln_proto_decoder_next(&d, &f, &err), -KILN_E_LIMIT);
    assert_non_null(strstr(err.message, "exceeds the limit"));
    assert_int_equal(kiln_proto_decoder_next(&d, &f, NULL), 1);
    assert_int_equal(f.type, KILN_MSG_ACK);
    assert_int_equal(f.seq, 5);
    assert_int_equal(d.rejected, 1);
    kiln_proto_decoder_clear(&d);

    /* The encoder refuses to build one. */
    _cleanup_buf_ struct kiln_buf big = {0};
    char *payload = calloc(1, KILN_PROTO_MAX_PAYLOAD + 1);
    assert_int_equal(
        kiln_proto_encode(&big, KILN_MSG_EVENT, 0, 1, payload, KILN_PROTO_MAX_PAYLOAD + 1),
        -KILN_E_LIMIT);
    free(payload);
}

static void
test_bad_checksums(void **state)
{
    _cleanup_buf_ struct kiln_buf b = {0};
    _cleanup_json_ json_t *j = json_pack("{s:s}", "k", "value");
    assert_int_equal(kiln_proto_encode_json(&b, KILN_MSG_EVENT, 0, 1, j), 0);
    b.data[b.len - 2] ^= 0x20; /* payload byte */
    size_t second = b.len;
    assert_int_equal(kiln_proto_encode_json(&b, KILN_MSG_EVENT, 0, 2, j), 0);
    b.data[second + 9] ^= 0x01; /* header byte: the header checksum fails, silently skipped */
    assert_int_equal(kiln_proto_encode_json(&b, KILN_MSG_EVENT, 0, 3, j), 0);

    struct kiln_proto_decoder d;
    kiln_proto_decoder_init(&d, 0);
    kiln_proto_decoder_feed(&d, b.data, b.len);
    struct kiln_error err = {0};
    _cleanup_frame_ struct kiln_proto_frame f = {0};
    assert_int_equal(kiln_proto_decoder_next(&d, &f, &err), -KILN_E_PARSE);
    assert_non_null(strstr(err.message, "checksum"));
    assert_int_equal(kiln_proto_decoder_next(&d, &f, NULL), 1);
    assert_int_equal(f.seq, 3);
    assert_int_equal(d.rejected, 1);
    assert_true(d.skipped > 0);
    kiln_proto_decoder_clear(&d);
}

static void
test_unknown_type_flags_version(void **state)
{
    _cleanup_buf_ struct kiln_buf b = {0};
    assert_int_equal(kiln_proto_encode(&b, 200, 0, 1, "{}", 2), 0);
    assert_int_equal(kiln_proto_encode(&b, KILN_MSG_PING, 0x8000, 2, "{}", 2), 0);
    assert_int_equal(kiln_proto_encode(&b, KILN_MSG_PING, 0, 3, "{}", 2), 0);
    struct kiln_proto_decoder d;
    kiln_proto_decoder_init(&d, 0);
    kiln_proto_decoder_feed(&d, b.data, b.len);
    _cleanup_frame_ struct kiln_proto_frame f = {0};
    assert_int_equal(kiln_proto_decoder_next(&d, &f, NULL), -KILN_E_UNSUPPORTED);
    assert_int_equal(kiln_proto_decoder_next(&d, &f, NULL), -KILN_E_UNSUPPORTED);
    assert_int_equal(kiln_proto_decoder_next(&d, &f, NULL), 1);
    assert_int_equal(f.seq, 3);
    kiln_proto_decoder_clear(&d);
}

static void
test_stale_partial_frame_dropped(void **state)
{
    /* A frame cut short (its sender died), then a whole one: the decoder waits for the missing
     * bytes until told the partial frame is stale. */
    _cleanup_buf_ struct kiln_buf b = {0};
    _cleanup_json_ json_t *j =
        json_pack("{s:s}", "pad", "0123456789012345678901234567890123456789");
    assert_int_equal(kiln_proto_encode_json(&b, KILN_MSG_EVENT, 0, 1, j), 0);
    b.len -= 20;
    assert_int_equal(kiln_proto_encode_json(&b, KILN_MSG_SYNC, 0, 2, j), 0);
    struct kiln_proto_decoder d;
    kiln_proto_decoder_init(&d, 0);
    kiln_proto_decoder_feed(&d, b.data, b.len);
    _cleanup_frame_ struct kiln_proto_frame f = {0};
    int r = kiln_proto_decoder_next(&d, &f, NULL);
    /* The cut frame swallowed the start of the next one: a checksum error or a wait. */
    while (r < 0)
        r = kiln_proto_decoder_next(&d, &f, NULL);
    if (r == 0) {
        assert_true(kiln_proto_decoder_partial(&d));
        kiln_proto_decoder_drop_partial(&d);
        r = kiln_proto_decoder_next(&d, &f, NULL);
    }
    assert_int_equal(r, 1);
    assert_int_equal(f.type, KILN_MSG_SYNC);
    assert_int_equal(f.seq, 2);
    kiln_proto_decoder_clear(&d);
}

static void
test_find_sync(void **state)
{
    _cleanup_buf_ struct kiln_buf b = {0};
    kiln_buf_append_str(&b, "junk junk");
    kiln_proto_encode_sync_reply(&b, 0x1111111111111111ull); /* an older sync's answer */
    kiln_buf_append_str(&b, "more junk");
    kiln_proto_encode_sync_reply(&b, 0x0123456789abcdefull);
    _cleanup_json_ json_t *j = json_object();
    assert_int_equal(kiln_proto_encode_json(&b, KILN_MSG_HELLO, 0, 1, j), 0);

    struct kiln_proto_decoder d;
    kiln_proto_decoder_init(&d, 0);
    /* Fed in small pieces so the delimiter is split across reads. */
    int found = 0;
    size_t i = 0;
    for (; i < b.len && !found; i += 5) {
        size_t n = b.len - i < 5 ? b.len - i : 5;
        kiln_proto_decoder_feed(&d, b.data + i, n);
        found = kiln_proto_decoder_find_sync(&d, 0x0123456789abcdefull);
    }
    assert_int_equal(found, 1);
    if (i < b.len)
        kiln_proto_decoder_feed(&d, b.data + i, b.len - i);
    _cleanup_frame_ struct kiln_proto_frame f = {0};
    assert_int_equal(kiln_proto_decoder_next(&d, &f, NULL), 1);
    assert_int_equal(f.type, KILN_MSG_HELLO);
    kiln_proto_decoder_clear(&d);

    kiln_proto_decoder_init(&d, 0);
    kiln_proto_decoder_feed(&d, b.data, b.len);
    assert_int_equal(kiln_proto_decoder_find_sync(&d, 42), 0);
    /* Only a tail shorter than the reply is kept. */
    assert_true(d.buf.len < KILN_PROTO_SYNC_REPLY_LEN);
    kiln_proto_decoder_clear(&d);
}

static void
test_relpath_checks(void **state)
{
    static const char *const good[] = {"a",       "TOE_2026-01-01_00-00-00_x/console.log",
                                       "a/b/c.d", "cone.d",
                                       "COM",     "COMX",
                                       "..a",     "a..",
                                       ".hidden"};
    static const char *const bad[] = {"",    "/etc/passwd", "../x", "a/../../x", "a//b",
                                      "a/",  "./a",         "a/.",  "a\\b",      "a\nb",
                                      "CON", "nul.txt",     "com1", "LPT9.log",  ".."};
    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        struct kiln_error err = {0};
        if (kiln_proto_check_relpath(good[i], &err) != 0)
            fail_msg("%s rejected: %s", good[i], err.message);
    }
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        if (kiln_proto_check_relpath(bad[i], NULL) == 0)
            fail_msg("%s accepted", bad[i]);
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(kiln_proto_check_relpath(longname, NULL), -KILN_E_LIMIT);
    _cleanup_buf_ struct kiln_buf deep = {0};
    for (int i = 0; i < KILN_PROTO_MAX_DEPTH + 1; i++)
        kiln_buf_append_str(&deep, i ? "/d" : "d");
    assert_int_equal(kiln_proto_check_relpath(deep.data, NULL), -KILN_E_LIMIT);

    assert_true(kiln_proto_valid_id("exec-1.2_3"));
    assert_false(kiln_proto_valid_id("../x"));
    assert_false(kiln_proto_valid_id(".x"));
    assert_false(kiln_proto_valid_id("a/b"));
    assert_false(kiln_proto_valid_id(""));
}

KILN_TEST_MAIN(cmocka_unit_test(test_crc32_known_value),
               cmocka_unit_test(test_roundtrip_byte_by_byte),
               cmocka_unit_test(test_junk_is_skipped),
               cmocka_unit_test(test_oversized_frame_rejected_then_recovers),
               cmocka_unit_test(test_bad_checksums),
               cmocka_unit_test(test_unknown_type_flags_version),
               cmocka_unit_test(test_stale_partial_frame_dropped), cmocka_unit_test(test_find_sync),
               cmocka_unit_test(test_relpath_checks))
