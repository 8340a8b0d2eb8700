/* AWS Signature Version 4: canonical request, string to sign, signature, Authorization header,
 * and presigned (query-string) URLs. The clock is a parameter, never read here. */
#pragma once

#include <stdbool.h>
#include <time.h>

#include "cloud/aws.h"

#define KILN_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define KILN_SIGV4_MAX_EXPIRES 604800 /* seven days, the SigV4 limit for presigned URLs */

struct kiln_sigv4_request {
    const char *method;
    const char *path;   /* as on the request line (already percent-encoded for the wire) */
    const char *query;  /* raw query string without '?', or NULL */
    struct kiln_aws_headers *headers; /* signing adds X-Amz-Date, tokens, Authorization here */
    const void *body;
    size_t body_len;
    const char *payload_hash; /* hex SHA-256 or UNSIGNED-PAYLOAD; NULL: hash body here */
};

struct kiln_sigv4_params {
    const struct kiln_aws_credentials *creds;
    const char *region;
    const char *service;
    time_t now;
    /* S3 signs the path as sent: set both (no dot-segment/slash normalisation, no second
     * encoding of the already encoded path). Other services leave both false. */
    bool no_path_normalize;
    bool no_path_encode;
    /* Add x-amz-content-sha256 (S3, and the test suite's sign_body). */
    bool content_sha256_header;
    /* Add the session token after signing instead of signing it (some services want that). */
    bool omit_session_token;
    /* Presigned URLs: lifetime in seconds (1..KILN_SIGV4_MAX_EXPIRES). */
    unsigned expires;
};

struct kiln_sigv4_result {
    char *canonical_request;
    char *string_to_sign;
    char signature[65];
    char *authorization; /* header mode */
    char *query;         /* presign mode: the complete signed query string */
};

void kiln_sigv4_result_clear(struct kiln_sigv4_result *r);

/* Sign into headers: sets X-Amz-Date, X-Amz-Security-Token, x-amz-content-sha256 as asked,
 * and Authorization. */
int kiln_sigv4_sign_headers(const struct kiln_sigv4_request *req,
                            const struct kiln_sigv4_params *p, struct kiln_sigv4_result *ret,
                            struct kiln_error *err);
/* Sign into the query string (presigned URL); headers are signed but not modified. */
int kiln_sigv4_presign(const struct kiln_sigv4_request *req, const struct kiln_sigv4_params *p,
                       struct kiln_sigv4_result *ret, struct kiln_error *err);

/* Pieces, exposed for tests and the fuzzer. */
char *kiln_sigv4_canonical_path(const char *path, bool normalize, bool encode);
char *kiln_sigv4_canonical_query(const char *query);
/* "20150830T123600Z" into buf (17 bytes). */
void kiln_sigv4_format_time(time_t t, char buf[17]);
