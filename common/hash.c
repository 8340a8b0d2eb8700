/* Hashing with OpenSSL's EVP interface. */
#include "common/hash.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <strings.h>
#include <unistd.h>

struct kiln_hash {
    EVP_MD_CTX *ctx;
};

static const EVP_MD *
md_of(enum kiln_hash_alg alg)
{
    switch (alg) {
    case KILN_HASH_MD5:
        return EVP_md5();
    case KILN_HASH_SHA1:
        return EVP_sha1();
    case KILN_HASH_SHA256:
        return EVP_sha256();
    case KILN_HASH_SHA512:
        return EVP_sha512();
    }
    abort();
}

int
kiln_hash_alg_from_name(const char *name, enum kiln_hash_alg *ret)
{
    static const struct {
        const char *name;
        enum kiln_hash_alg alg;
    } names[] = {{"MD5", KILN_HASH_MD5},
                 {"SHA1", KILN_HASH_SHA1},
                 {"SHA256", KILN_HASH_SHA256},
                 {"SHA512", KILN_HASH_SHA512}};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (name && strcasecmp(name, names[i].name) == 0) {
            *ret = names[i].alg;
            return 0;
        }
    return -EINVAL;
}

size_t
kiln_hash_size(enum kiln_hash_alg alg)
{
    return (size_t)EVP_MD_get_size(md_of(alg));
}

struct kiln_hash *
kiln_hash_new(enum kiln_hash_alg alg)
{
    struct kiln_hash *h = kiln_new(struct kiln_hash, 1);
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, md_of(alg), NULL) != 1)
        abort();
    return h;
}

void
kiln_hash_update(struct kiln_hash *h, const void *data, size_t len)
{
    if (EVP_DigestUpdate(h->ctx, data, len) != 1)
        abort();
}

void
kiln_hash_final(struct kiln_hash *h, uint8_t *out)
{
    unsigned n = 0;
    if (EVP_DigestFinal_ex(h->ctx, out, &n) != 1)
        abort();
}

void
kiln_hash_free(struct kiln_hash *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void
kiln_hash_buf(enum kiln_hash_alg alg, const void *data, size_t len, uint8_t *out)
{
    unsigned n = 0;
    if (EVP_Digest(data, len, out, &n, md_of(alg), NULL) != 1)
        abort();
}

void
kiln_hex_encode(const uint8_t *data, size_t len, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        hex[2 * i] = digits[data[i] >> 4];
        hex[2 * i + 1] = digits[data[i] & 15];
    }
    hex[2 * len] = '\0';
}

void
kiln_hash_buf_hex(enum kiln_hash_alg alg, const void *data, size_t len, char *hex)
{
    uint8_t md[KILN_HASH_MAX_SIZE];
    kiln_hash_buf(alg, data, len, md);
    kiln_hex_encode(md, kiln_hash_size(alg), hex);
}

int
kiln_hash_file_hex(enum kiln_hash_alg alg, const char *path, char *hex, struct kiln_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kiln_error_errno(err, -errno, "%s: cannot open", path);
    struct kiln_hash *h = kiln_hash_new(alg);
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int r = -errno;
            kiln_hash_free(h);
            return kiln_error_errno(err, r, "%s: read failed", path);
        }
        if (n == 0)
            break;
        kiln_hash_update(h, chunk, (size_t)n);
    }
    uint8_t md[KILN_HASH_MAX_SIZE];
    kiln_hash_final(h, md);
    kiln_hash_free(h);
    kiln_hex_encode(md, kiln_hash_size(alg), hex);
    return 0;
}

void
kiln_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, uint8_t out[32])
{
    unsigned n = 32;
    if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n))
        abort();
}
