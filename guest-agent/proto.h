/* The host <-> guest agent wire protocol: frames, the streaming decoder, re-sync, and the checks
 * both sides apply to what they receive. docs/protocol.md describes the format. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/error.h"

/* Header, all integers big-endian:
 *   0  magic "KILN"      4  version (1)     5  type     6  flags (u16)
 *   8  sequence (u32)   12  payload length (u32)
 *  16  CRC-32 of the payload (u32)         20  CRC-32 of bytes 0..19 (u32)
 * The header checksum is checked before the length is believed, so junk never makes a reader
 * wait for a payload that is not coming. */
#define KILN_PROTO_MAGIC "KILN"
#define KILN_PROTO_VERSION 1
#define KILN_PROTO_HEADER_SIZE 24
#define KILN_PROTO_MAX_PAYLOAD (1u << 20)
/* File contents move in chunks of at most this many bytes. */
#define KILN_PROTO_CHUNK_SIZE (64u << 10)
/* FILE_DATA payload: u32 file index, u64 offset, then the bytes. */
#define KILN_PROTO_DATA_HEADER 12

/* The answer to a sync is this delimiter followed by the 8-byte nonce, as raw bytes outside any
 * frame; 0xff and 0xfe never occur in UTF-8 JSON. */
#define KILN_PROTO_SYNC_DELIM "\xff\xfeKSYNC\n"
#define KILN_PROTO_SYNC_DELIM_LEN 8
#define KILN_PROTO_SYNC_REPLY_LEN (KILN_PROTO_SYNC_DELIM_LEN + 8)

/* Bounds on names and trees that cross the channel (documents up, logs down). */
#define KILN_PROTO_MAX_NAME 255
#define KILN_PROTO_MAX_PATH 1024
#define KILN_PROTO_MAX_DEPTH 16

enum kiln_proto_type {
    KILN_MSG_SYNC = 1, /* host: {"nonce","time-ms"?} -> raw delimiter + nonce, then hello */
    KILN_MSG_HELLO,    /* agent: readiness, on start and after every sync */
    KILN_MSG_PING,     /* host: {} -> pong */
    KILN_MSG_PONG,
    KILN_MSG_RUN_JOB,         /* host: job description, then FILE_DATA for each document */
    KILN_MSG_RESUME_JOB,      /* host: {"execution-id"} after a reboot */
    KILN_MSG_JOB_STARTED,     /* agent: the documents arrived and the engine runs */
    KILN_MSG_EVENT,           /* agent: an engine event (JSON) */
    KILN_MSG_CONSOLE,         /* agent: binary, 1 byte stream (1 stdout, 2 stderr) + bytes */
    KILN_MSG_JOB_DONE,        /* agent: {"execution-id","status","failure","log-folder"} */
    KILN_MSG_REBOOT_REQUIRED, /* agent: {"execution-id"}: reboot the guest, then resume-job */
    KILN_MSG_FETCH,           /* host: {"execution-id"} -> file-list, then FILE_DATA */
    KILN_MSG_FILE_LIST,       /* agent: {"files":[{"name","size","sha256"}]} */
    KILN_MSG_FILE_DATA,       /* both: binary chunk (see KILN_PROTO_DATA_HEADER) */
    KILN_MSG_POWEROFF,        /* host: {} -> ack, then the guest syncs and powers off */
    KILN_MSG_CANCEL,          /* host: {} -> ack; the running job ends as cancelled */
    KILN_MSG_ACK,             /* agent: {} */
    KILN_MSG_ERROR,           /* agent: {"message"} the request failed */
    KILN_MSG_PREPARE,         /* host: {} -> ack {"ready-ms","failure"?} once the guest is ready */
    KILN_MSG_TYPE_MAX = KILN_MSG_PREPARE,
};

/* The frame answers the request with the same sequence number. */
#define KILN_PROTO_FLAG_REPLY 0x0001u
#define KILN_PROTO_FLAGS_KNOWN KILN_PROTO_FLAG_REPLY

struct kiln_proto_frame {
    uint8_t type;
    uint16_t flags;
    uint32_t seq;
    uint32_t len;
    uint8_t *payload; /* owned, NUL-terminated (len + 1 bytes), never NULL after decoding */
};

void kiln_proto_frame_clear(struct kiln_proto_frame *f);
static inline void
kiln_proto_frame_clearp(struct kiln_proto_frame *f)
{
    kiln_proto_frame_clear(f);
}
#define _cleanup_frame_ _cleanup_(kiln_proto_frame_clearp)

const char *kiln_proto_type_name(int type);
uint32_t kiln_proto_crc32(uint32_t crc, const void *data, size_t len);

/* Append one encoded frame to out. -KILN_E_LIMIT when the payload is too large. */
int kiln_proto_encode(struct kiln_buf *out, uint8_t type, uint16_t flags, uint32_t seq,
                      const void *payload, size_t len);
int kiln_proto_encode_json(struct kiln_buf *out, uint8_t type, uint16_t flags, uint32_t seq,
                           const json_t *obj);
/* A FILE_DATA frame. */
int kiln_proto_encode_data(struct kiln_buf *out, uint32_t seq, uint32_t index, uint64_t offset,
                           const void *data, size_t len);
/* The raw sync answer (delimiter + nonce). */
void kiln_proto_encode_sync_reply(struct kiln_buf *out, uint64_t nonce);

/* Streaming decoder: bytes in, frames out; junk before a magic is skipped and counted. The
 * buffer never holds more than one maximal frame plus one read. */
struct kiln_proto_decoder {
    struct kiln_buf buf;
    size_t max_payload;
    uint64_t skipped;  /* junk bytes discarded so far */
    uint64_t rejected; /* frames rejected (oversized, bad checksum, bad version or flags) */
};

void kiln_proto_decoder_init(struct kiln_proto_decoder *d, size_t max_payload);
void kiln_proto_decoder_clear(struct kiln_proto_decoder *d);
void kiln_proto_decoder_reset(struct kiln_proto_decoder *d);
void kiln_proto_decoder_feed(struct kiln_proto_decoder *d, const void *data, size_t len);
/* 1 with a frame in ret, 0 when more bytes are needed, or a negative error for a rejected frame
 * (-KILN_E_LIMIT oversized, -KILN_E_PARSE bad payload checksum, -KILN_E_UNSUPPORTED version,
 * type or flags); decoding may go on after an error, the rejected bytes are skipped. */
int kiln_proto_decoder_next(struct kiln_proto_decoder *d, struct kiln_proto_frame *ret,
                            struct kiln_error *err);
/* True when a partial frame waits for more bytes. */
bool kiln_proto_decoder_partial(const struct kiln_proto_decoder *d);
/* Give up on a partial frame that stopped arriving: skip its magic and rescan. */
void kiln_proto_decoder_drop_partial(struct kiln_proto_decoder *d);
/* Look for delimiter + nonce; everything before it and the reply itself are discarded.
 * Returns 1 when found, 0 when more bytes are needed. */
int kiln_proto_decoder_find_sync(struct kiln_proto_decoder *d, uint64_t nonce);

/* Parse a frame's payload as a JSON object (bounded, no duplicate keys). */
int kiln_proto_frame_json(const struct kiln_proto_frame *f, json_t **ret, struct kiln_error *err);
/* Split a FILE_DATA payload. */
int kiln_proto_frame_data(const struct kiln_proto_frame *f, uint32_t *ret_index,
                          uint64_t *ret_offset, const uint8_t **ret_data, size_t *ret_len,
                          struct kiln_error *err);

/* A relative path one side names for the other to create: '/'-separated components, none empty,
 * "." or "..", no leading '/', no control characters or backslashes, no device names (CON, NUL,
 * COM1, ...), each component at most KILN_PROTO_MAX_NAME bytes, at most KILN_PROTO_MAX_DEPTH
 * deep and KILN_PROTO_MAX_PATH long. */
int kiln_proto_check_relpath(const char *path, struct kiln_error *err);
/* Execution ids: 1-64 of [A-Za-z0-9._-], not starting with '.'. */
bool kiln_proto_valid_id(const char *id);

/* Monotonic milliseconds. */
int64_t kiln_proto_now_ms(void);
/* Write every byte before the deadline (monotonic ms; fd may be non-blocking). */
int kiln_proto_write_all(int fd, const void *data, size_t len, int64_t deadline_ms);
/* Wait for input until the deadline and feed what arrives to the decoder. Returns the number of
 * bytes read (> 0), 0 at end of file, -ETIMEDOUT, -EPIPE on hang-up, or another -errno. */
int kiln_proto_read_some(int fd, struct kiln_proto_decoder *d, int64_t deadline_ms);
