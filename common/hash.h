/* Hashing with OpenSSL: digests, HMAC, hex. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

enum kiln_hash_alg { KILN_HASH_MD5, KILN_HASH_SHA1, KILN_HASH_SHA256, KILN_HASH_SHA512 };

#define KILN_HASH_MAX_SIZE 64
#define KILN_HASH_MAX_HEX (KILN_HASH_MAX_SIZE * 2 + 1)

/* "MD5", "SHA1", "SHA256", "SHA512" (case-insensitive); returns 0 or -EINVAL. */
int kiln_hash_alg_from_name(const char *name, enum kiln_hash_alg *ret);
size_t kiln_hash_size(enum kiln_hash_alg alg);

struct kiln_hash;
struct kiln_hash *kiln_hash_new(enum kiln_hash_alg alg);
void kiln_hash_update(struct kiln_hash *h, const void *data, size_t len);
/* Writes kiln_hash_size() bytes to out; the context may not be updated afterwards. */
void kiln_hash_final(struct kiln_hash *h, uint8_t *out);
void kiln_hash_free(struct kiln_hash *h);

void kiln_hash_buf(enum kiln_hash_alg alg, const void *data, size_t len, uint8_t *out);
/* Lower-case hex digest of a buffer / file into hex (KILN_HASH_MAX_HEX bytes). */
void kiln_hash_buf_hex(enum kiln_hash_alg alg, const void *data, size_t len, char *hex);
int kiln_hash_file_hex(enum kiln_hash_alg alg, const char *path, char *hex, struct kiln_error *err);

void kiln_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                      uint8_t out[32]);
void kiln_hex_encode(const uint8_t *data, size_t len, char *hex);
