/* Fuzz target: the agent frame decoder (and the payload parsers behind it) must take any byte
 * stream, in any split, without crashing, leaking or holding more than one frame's worth. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/json.h"
#include "guest-agent/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Not CHECK(): release builds define NDEBUG and the replay must still check. */
#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

static void
drain(struct kiln_proto_decoder *d, size_t fed_max)
{
    for (;;) {
        struct kiln_proto_frame f = {0};
        struct kiln_error err = {0};
        int r = kiln_proto_decoder_next(d, &f, &err);
        if (r == 0)
            break;
        if (r < 0) {
            CHECK(err.code == r);
            continue;
        }
        CHECK(f.len <= d->max_payload && f.payload[f.len] == '\0');
        json_t *j = NULL;
        if (kiln_proto_frame_json(&f, &j, NULL) == 0) {
            const char *name = kiln_json_get_str(j, "name");
            if (name)
                kiln_proto_check_relpath(name, NULL);
            kiln_proto_valid_id(kiln_json_get_str(j, "execution-id"));
            json_decref(j);
        }
        uint32_t index;
        uint64_t off;
        const uint8_t *bytes;
        size_t len;
        if (kiln_proto_frame_data(&f, &index, &off, &bytes, &len, NULL) == 0)
            CHECK(len <= KILN_PROTO_CHUNK_SIZE);
        /* Whatever decoded must encode back to a frame that decodes the same. */
        struct kiln_buf b = {0};
        CHECK(kiln_proto_encode(&b, f.type, f.flags, f.seq, f.payload, f.len) == 0);
        struct kiln_proto_decoder d2;
        kiln_proto_decoder_init(&d2, 0);
        kiln_proto_decoder_feed(&d2, b.data, b.len);
        struct kiln_proto_frame g = {0};
        CHECK(kiln_proto_decoder_next(&d2, &g, NULL) == 1);
        CHECK(g.type == f.type && g.seq == f.seq && g.len == f.len);
        CHECK(memcmp(g.payload, f.payload, f.len) == 0);
        kiln_proto_frame_clear(&g);
        kiln_proto_decoder_clear(&d2);
        kiln_buf_clear(&b);
        kiln_proto_frame_clear(&f);
    }
    /* Bounded: at most one partial frame (header + max payload) plus one feed. */
    CHECK(d->buf.len <= KILN_PROTO_HEADER_SIZE + d->max_payload + fed_max);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* The first byte picks the read size, the rest is the stream. */
    size_t step = (size_t)data[0] + 1;
    data++;
    size--;

    struct kiln_proto_decoder d, small;
    kiln_proto_decoder_init(&d, 0);
    kiln_proto_decoder_init(&small, 64); /* exercises the oversized path */
    for (size_t i = 0; i < size; i += step) {
        size_t n = size - i < step ? size - i : step;
        kiln_proto_decoder_feed(&d, data + i, n);
        kiln_proto_decoder_feed(&small, data + i, n);
        drain(&d, n);
        drain(&small, n);
        if (data[i] == 0xff)
            kiln_proto_decoder_drop_partial(&small);
    }
    kiln_proto_decoder_clear(&d);
    kiln_proto_decoder_clear(&small);

    /* The same bytes as a sync answer stream. */
    kiln_proto_decoder_init(&d, 0);
    for (size_t i = 0; i < size; i += step) {
        size_t n = size - i < step ? size - i : step;
        kiln_proto_decoder_feed(&d, data + i, n);
        if (kiln_proto_decoder_find_sync(&d, 0x0102030405060708ull) == 1)
            drain(&d, n);
        CHECK(d.buf.len < KILN_PROTO_HEADER_SIZE + d.max_payload + n + KILN_PROTO_SYNC_REPLY_LEN);
    }
    kiln_proto_decoder_clear(&d);
    return 0;
}
