/* Base64 decoding (RFC 4648 section 4: standard alphabet, '=' padding required). */
#include "common/base64.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

static int
value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static bool
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int
kiln_base64_decode(const char *in, size_t len, struct kiln_buf *out, struct kiln_error *err)
{
    unsigned quad[4];
    size_t n = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (is_space(c))
            continue;
        if (pad > 0 && c != '=')
            return kiln_error_set(err, -EINVAL, "base64: data after the padding at offset %zu", i);
        int v;
        if (c == '=') {
            /* Padding only ends a group, and at most two of them. */
            if (n < 2 || ++pad > 2)
                return kiln_error_set(err, -EINVAL, "base64: misplaced '=' at offset %zu", i);
            v = 0;
        } else if ((v = value(c)) < 0) {
            return kiln_error_set(err, -EINVAL, "base64: '%c' at offset %zu is not in the "
                                  "alphabet", c >= 0x20 && c < 0x7f ? c : '?', i);
        }
        quad[n++] = (unsigned)v;
        if (n == 4) {
            uint8_t bytes[3] = {(uint8_t)(quad[0] << 2 | quad[1] >> 4),
                                (uint8_t)(quad[1] << 4 | quad[2] >> 2),
                                (uint8_t)(quad[2] << 6 | quad[3])};
            kiln_buf_append(out, bytes, 3 - pad);
            n = 0;
            if (pad)
                pad = 3; /* the group with padding was the last one */
        }
    }
    if (n != 0)
        return kiln_error_set(err, -EINVAL, "base64: the input ends inside a group of four "
                              "characters (missing padding?)");
    return 0;
}
