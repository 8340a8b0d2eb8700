/* Types shared by every part of the AWS client: credentials and HTTP header lists. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/buf.h"
#include "common/error.h"

struct kiln_aws_credentials {
    char *access_key_id;
    char *secret_access_key;
    char *session_token;  /* NULL for long-term keys */
    time_t expiration;    /* 0 when the keys do not expire */
};

void kiln_aws_credentials_clear(struct kiln_aws_credentials *c);
void kiln_aws_credentials_copy(struct kiln_aws_credentials *dst,
                               const struct kiln_aws_credentials *src);

struct kiln_aws_header {
    char *name;
    char *value;
};

/* An ordered list of headers; names keep their case, lookups ignore it. */
struct kiln_aws_headers {
    struct kiln_aws_header *v;
    size_t n;
    size_t cap;
};

void kiln_aws_headers_add(struct kiln_aws_headers *h, const char *name, const char *value);
/* Replace every header of that name by one (or add it). */
void kiln_aws_headers_set(struct kiln_aws_headers *h, const char *name, const char *value);
void kiln_aws_headers_remove(struct kiln_aws_headers *h, const char *name);
/* First value of that name, or NULL. */
const char *kiln_aws_headers_get(const struct kiln_aws_headers *h, const char *name);
void kiln_aws_headers_clear(struct kiln_aws_headers *h);

/* RFC 3986 encoding as SigV4 wants it: everything but A-Z a-z 0-9 - . _ ~ is %XX (upper-case
 * hex); with keep_slash, '/' stays literal (object keys in S3 paths). */
void kiln_aws_uri_encode(struct kiln_buf *out, const char *s, size_t len, bool keep_slash);
