/* The host <-> guest agent wire protocol: framing, decoding, re-sync, and shared input checks. */
#include "guest-agent/proto.h"

#include <ctype.h>
#include <poll.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"

static const char *const type_names[] = {
    [KILN_MSG_SYNC] = "sync",
    [KILN_MSG_HELLO] = "hello",
    [KILN_MSG_PING] = "ping",
    [KILN_MSG_PONG] = "pong",
    [KILN_MSG_RUN_JOB] = "run-job",
    [KILN_MSG_RESUME_JOB] = "resume-job",
    [KILN_MSG_JOB_STARTED] = "job-started",
    [KILN_MSG_EVENT] = "event",
    [KILN_MSG_CONSOLE] = "console",
    [KILN_MSG_JOB_DONE] = "job-done",
    [KILN_MSG_REBOOT_REQUIRED] = "reboot-required",
    [KILN_MSG_FETCH] = "fetch",
    [KILN_MSG_FILE_LIST] = "file-list",
    [KILN_MSG_FILE_DATA] = "file-data",
    [KILN_MSG_POWEROFF] = "poweroff",
    [KILN_MSG_CANCEL] = "cancel",
    [KILN_MSG_ACK] = "ack",
    [KILN_MSG_ERROR] = "error",
    [KILN_MSG_PREPARE] = "prepare",
};

const char *
kiln_proto_type_name(int type)
{
    if (type <= 0 || type > KILN_MSG_TYPE_MAX)
        return "unknown";
    return type_names[type];
}

void
kiln_proto_frame_clear(struct kiln_proto_frame *f)
{
    if (!f)
        return;
    free(f->payload);
    memset(f, 0, sizeof(*f));
}

/* CRC-32 (IEEE 802.3, reflected), the same as zlib's crc32(). */
uint32_t
kiln_proto_crc32(uint32_t crc, const void *data, size_t len)
{
    static uint32_t table[256];
    static bool ready;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        /* Computing the table twice in a race writes the same values: harmless. */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        __atomic_store_n(&ready, true, __ATOMIC_RELEASE);
    }
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < len; i++)
        crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void
put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void
put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void
put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

static uint16_t
get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t
get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t
get_be64(const uint8_t *p)
{
    return ((uint64_t)get_be32(p) << 32) | get_be32(p + 4);
}

static void
encode_header(uint8_t *h, uint8_t type, uint16_t flags, uint32_t seq, const void *payload,
              size_t len)
{
    memcpy(h, KILN_PROTO_MAGIC, 4);
    h[4] = KILN_PROTO_VERSION;
    h[5] = type;
    put_be16(h + 6, flags);
    put_be32(h + 8, seq);
    put_be32(h + 12, (uint32_t)len);
    put_be32(h + 16, kiln_proto_crc32(0, payload, len));
    put_be32(h + 20, kiln_proto_crc32(0, h, 20));
}

int
kiln_proto_encode(struct kiln_buf *out, uint8_t type, uint16_t flags, uint32_t seq,
                  const void *payload, size_t len)
{
    if (len > KILN_PROTO_MAX_PAYLOAD)
        return -KILN_E_LIMIT;
    uint8_t h[KILN_PROTO_HEADER_SIZE];
    encode_header(h, type, flags, seq, payload, len);
    kiln_buf_reserve(out, sizeof(h) + len);
    kiln_buf_append(out, h, sizeof(h));
    if (len)
        kiln_buf_append(out, payload, len);
    return 0;
}

int
kiln_proto_encode_json(struct kiln_buf *out, uint8_t type, uint16_t flags, uint32_t seq,
                       const json_t *obj)
{
    _cleanup_free_ char *s = kiln_json_dumps(obj, false);
    return kiln_proto_encode(out, type, flags, seq, s, strlen(s));
}

int
kiln_proto_encode_data(struct kiln_buf *out, uint32_t seq, uint32_t index, uint64_t offset,
                       const void *data, size_t len)
{
    if (len > KILN_PROTO_CHUNK_SIZE)
        return -KILN_E_LIMIT;
    uint8_t tmp[KILN_PROTO_DATA_HEADER + KILN_PROTO_CHUNK_SIZE];
    put_be32(tmp, index);
    put_be64(tmp + 4, offset);
    if (len)
        memcpy(tmp + KILN_PROTO_DATA_HEADER, data, len);
    return kiln_proto_encode(out, KILN_MSG_FILE_DATA, 0, seq, tmp, KILN_PROTO_DATA_HEADER + len);
}

void
kiln_proto_encode_sync_reply(struct kiln_buf *out, uint64_t nonce)
{
    uint8_t n[8];
    put_be64(n, nonce);
    kiln_buf_append(out, KILN_PROTO_SYNC_DELIM, KILN_PROTO_SYNC_DELIM_LEN);
    kiln_buf_append(out, n, sizeof(n));
}

void
kiln_proto_decoder_init(struct kiln_proto_decoder *d, size_t max_payload)
{
    memset(d, 0, sizeof(*d));
    kiln_buf_init(&d->buf);
    d->max_payload =
        max_payload && max_payload < KILN_PROTO_MAX_PAYLOAD ? max_payload : KILN_PROTO_MAX_PAYLOAD;
}

void
kiln_proto_decoder_clear(struct kiln_proto_decoder *d)
{
    kiln_buf_clear(&d->buf);
}

void
kiln_proto_decoder_reset(struct kiln_proto_decoder *d)
{
    kiln_buf_reset(&d->buf);
}

void
kiln_proto_decoder_feed(struct kiln_proto_decoder *d, const void *data, size_t len)
{
    kiln_buf_append(&d->buf, data, len);
}

static void
consume(struct kiln_proto_decoder *d, size_t n)
{
    if (n >= d->buf.len) {
        kiln_buf_reset(&d->buf);
        return;
    }
    memmove(d->buf.data, d->buf.data + n, d->buf.len - n);
    d->buf.len -= n;
    d->buf.data[d->buf.len] = '\0';
}

/* Drop junk up to the next possible magic; a magic split at the end of the buffer is kept. */
static void
skip_to_magic(struct kiln_proto_decoder *d, size_t from)
{
    const uint8_t *p = (const uint8_t *)d->buf.data;
    size_t n = d->buf.len, i = from;
    for (; i < n; i++) {
        size_t left = n - i < 4 ? n - i : 4;
        if (memcmp(p + i, KILN_PROTO_MAGIC, left) == 0)
            break;
    }
    d->skipped += i;
    consume(d, i);
}

int
kiln_proto_decoder_next(struct kiln_proto_decoder *d, struct kiln_proto_frame *ret,
                        struct kiln_error *err)
{
    for (;;) {
        skip_to_magic(d, 0);
        if (d->buf.len < KILN_PROTO_HEADER_SIZE)
            return 0;
        const uint8_t *h = (const uint8_t *)d->buf.data;
        if (get_be32(h + 20) != kiln_proto_crc32(0, h, 20)) {
            /* Not a header after all: the magic was part of the junk. */
            skip_to_magic(d, 1);
            continue;
        }
        uint8_t version = h[4], type = h[5];
        uint16_t flags = get_be16(h + 6);
        uint32_t seq = get_be32(h + 8), len = get_be32(h + 12);
        if (version != KILN_PROTO_VERSION) {
            d->rejected++;
            skip_to_magic(d, KILN_PROTO_HEADER_SIZE);
            return kiln_error_set(err, -KILN_E_UNSUPPORTED,
                                  "frame of protocol version %u (expected %u)", version,
                                  KILN_PROTO_VERSION);
        }
        if (len > d->max_payload) {
            d->rejected++;
            skip_to_magic(d, KILN_PROTO_HEADER_SIZE);
            return kiln_error_set(err, -KILN_E_LIMIT,
                                  "%s frame of %u bytes exceeds the limit of %zu bytes",
                                  kiln_proto_type_name(type), len, d->max_payload);
        }
        if (d->buf.len < KILN_PROTO_HEADER_SIZE + (size_t)len)
            return 0;
        const uint8_t *payload = h + KILN_PROTO_HEADER_SIZE;
        if (get_be32(h + 16) != kiln_proto_crc32(0, payload, len)) {
            d->rejected++;
            skip_to_magic(d, 1);
            return kiln_error_set(err, -KILN_E_PARSE,
                                  "%s frame %u: payload checksum mismatch (%u bytes)",
                                  kiln_proto_type_name(type), seq, len);
        }
        if (type == 0 || type > KILN_MSG_TYPE_MAX || (flags & ~KILN_PROTO_FLAGS_KNOWN)) {
            d->rejected++;
            skip_to_magic(d, KILN_PROTO_HEADER_SIZE + len);
            return kiln_error_set(err, -KILN_E_UNSUPPORTED, "frame of unknown type %u flags 0x%x",
                                  type, flags);
        }
        ret->type = type;
        ret->flags = flags;
        ret->seq = seq;
        ret->len = len;
        ret->payload = kiln_malloc((size_t)len + 1);
        memcpy(ret->payload, payload, len);
        ret->payload[len] = '\0';
        consume(d, KILN_PROTO_HEADER_SIZE + (size_t)len);
        return 1;
    }
}

bool
kiln_proto_decoder_partial(const struct kiln_proto_decoder *d)
{
    return d->buf.len > 0;
}

void
kiln_proto_decoder_drop_partial(struct kiln_proto_decoder *d)
{
    if (d->buf.len == 0)
        return;
    skip_to_magic(d, 1);
}

int
kiln_proto_decoder_find_sync(struct kiln_proto_decoder *d, uint64_t nonce)
{
    uint8_t want[KILN_PROTO_SYNC_REPLY_LEN];
    memcpy(want, KILN_PROTO_SYNC_DELIM, KILN_PROTO_SYNC_DELIM_LEN);
    put_be64(want + KILN_PROTO_SYNC_DELIM_LEN, nonce);
    const uint8_t *p = (const uint8_t *)d->buf.data;
    size_t n = d->buf.len;
    if (n >= sizeof(want)) {
        void *hit = memmem(p, n, want, sizeof(want));
        if (hit) {
            size_t at = (size_t)((const uint8_t *)hit - p);
            d->skipped += at;
            consume(d, at + sizeof(want));
            return 1;
        }
    }
    /* Keep a tail that may be the start of the reply; everything before it is junk. */
    size_t keep = n < sizeof(want) - 1 ? n : sizeof(want) - 1;
    d->skipped += n - keep;
    consume(d, n - keep);
    return 0;
}

int
kiln_proto_frame_json(const struct kiln_proto_frame *f, json_t **ret, struct kiln_error *err)
{
    json_t *j = NULL;
    int r = kiln_json_parse((const char *)f->payload, f->len, KILN_PROTO_MAX_PAYLOAD,
                            kiln_proto_type_name(f->type), &j, err);
    if (r < 0)
        return r;
    if (!json_is_object(j)) {
        json_decref(j);
        return kiln_error_set(err, -KILN_E_PARSE, "%s frame: payload is not a JSON object",
                              kiln_proto_type_name(f->type));
    }
    *ret = j;
    return 0;
}

int
kiln_proto_frame_data(const struct kiln_proto_frame *f, uint32_t *ret_index, uint64_t *ret_offset,
                      const uint8_t **ret_data, size_t *ret_len, struct kiln_error *err)
{
    if (f->type != KILN_MSG_FILE_DATA || f->len < KILN_PROTO_DATA_HEADER ||
        f->len > KILN_PROTO_DATA_HEADER + KILN_PROTO_CHUNK_SIZE)
        return kiln_error_set(err, -KILN_E_PARSE, "malformed file-data frame (%u bytes)", f->len);
    *ret_index = get_be32(f->payload);
    *ret_offset = get_be64(f->payload + 4);
    *ret_data = f->payload + KILN_PROTO_DATA_HEADER;
    *ret_len = f->len - KILN_PROTO_DATA_HEADER;
    return 0;
}

static bool
device_name(const char *c, size_t n)
{
    /* Names Windows treats as devices whatever the extension: a log copied to a share must not
     * turn into a write to a device. */
    static const char *const names[] = {"CON", "PRN", "AUX", "NUL"};
    size_t stem = 0;
    while (stem < n && c[stem] != '.')
        stem++;
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (stem == 3 && strncasecmp(c, names[i], 3) == 0)
            return true;
    if (stem == 4 && (strncasecmp(c, "COM", 3) == 0 || strncasecmp(c, "LPT", 3) == 0) &&
        c[3] >= '0' && c[3] <= '9')
        return true;
    return false;
}

int
kiln_proto_check_relpath(const char *path, struct kiln_error *err)
{
    if (!path || !*path)
        return kiln_error_set(err, -KILN_E_INVALID, "empty path");
    size_t total = strnlen(path, KILN_PROTO_MAX_PATH + 1);
    if (total > KILN_PROTO_MAX_PATH)
        return kiln_error_set(err, -KILN_E_LIMIT, "path longer than %d bytes", KILN_PROTO_MAX_PATH);
    if (path[0] == '/')
        return kiln_error_set(err, -KILN_E_INVALID, "%s: absolute path", path);
    int depth = 0;
    const char *c = path;
    for (;;) {
        const char *end = strchr(c, '/');
        size_t n = end ? (size_t)(end - c) : strlen(c);
        if (n == 0)
            return kiln_error_set(err, -KILN_E_INVALID, "%s: empty path component", path);
        if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return kiln_error_set(err, -KILN_E_INVALID, "%s: '.' or '..' component", path);
        if (n > KILN_PROTO_MAX_NAME)
            return kiln_error_set(err, -KILN_E_LIMIT, "%s: component longer than %d bytes", path,
                                  KILN_PROTO_MAX_NAME);
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)c[i];
            if (ch < 0x20 || ch == 0x7f || ch == '\\')
                return kiln_error_set(err, -KILN_E_INVALID,
                                      "path has a control character or backslash");
        }
        if (device_name(c, n))
            return kiln_error_set(err, -KILN_E_INVALID, "%s: device name", path);
        if (++depth > KILN_PROTO_MAX_DEPTH)
            return kiln_error_set(err, -KILN_E_LIMIT, "%s: deeper than %d levels", path,
                                  KILN_PROTO_MAX_DEPTH);
        if (!end)
            return 0;
        c = end + 1;
    }
}

bool
kiln_proto_valid_id(const char *id)
{
    if (!id || !*id || id[0] == '.')
        return false;
    size_t n = 0;
    for (const char *p = id; *p; p++, n++) {
        if (n >= 64 || !(isalnum((unsigned char)*p) || *p == '.' || *p == '_' || *p == '-'))
            return false;
    }
    return true;
}

int64_t
kiln_proto_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
wait_fd(int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - kiln_proto_now_ms();
        if (left < 0)
            left = 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0) {
            if (kiln_proto_now_ms() >= deadline_ms)
                return -ETIMEDOUT;
            continue;
        }
        if (p.revents & events)
            return 0;
        if (p.revents & POLLNVAL)
            return -EBADF;
        if (p.revents & (POLLHUP | POLLERR))
            return -EPIPE;
        return 0;
    }
}

int
kiln_proto_write_all(int fd, const void *data, size_t len, int64_t deadline_ms)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(fd, POLLOUT, deadline_ms);
            if (r < 0)
                return r;
            continue;
        }
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int
kiln_proto_read_some(int fd, struct kiln_proto_decoder *d, int64_t deadline_ms)
{
    for (;;) {
        int r = wait_fd(fd, POLLIN, deadline_ms);
        /* A hang-up may still leave bytes to read: read them first, then report EOF. */
        if (r < 0 && r != -EPIPE)
            return r;
        uint8_t tmp[KILN_PROTO_CHUNK_SIZE];
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (r == -EPIPE)
                return -EPIPE;
            continue;
        }
        if (n < 0)
            return -errno;
        if (n == 0)
            return r == -EPIPE ? -EPIPE : 0;
        kiln_proto_decoder_feed(d, tmp, (size_t)n);
        return (int)n;
    }
}
