/* Base64 (RFC 4648, the standard alphabet with padding), as AWS takes user data. */
#pragma once

#include <stddef.h>

#include "common/buf.h"
#include "common/error.h"

/* Decode len characters of in, appending the bytes to out. ASCII whitespace between the
 * characters is skipped (wrapped input). Returns 0, or -EINVAL naming the offending offset. */
int kiln_base64_decode(const char *in, size_t len, struct kiln_buf *out, struct kiln_error *err);
