/* The AWS transport: one client per region/endpoint, SigV4-signed requests over libcurl with
 * connection reuse, parallel transfers on a multi handle, retries with exponential backoff and
 * full jitter inside a per-call time budget, and AWS error bodies turned into struct kiln_error.
 * A client is used by one thread at a time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "cloud/aws.h"
#include "common/buf.h"

struct kiln_aws_credentials_provider;

#define KILN_AWS_MAX_RESPONSE (64u << 20) /* default bound on a buffered response body */

struct kiln_aws_client_config {
    const char *region;                               /* required */
    const char *endpoint_url;                         /* e.g. http://127.0.0.1:9000; NULL: AWS */
    struct kiln_aws_credentials_provider *provider;   /* borrowed; or: */
    const struct kiln_aws_credentials *credentials;   /* static keys, copied */
    unsigned max_attempts;  /* per request, default 8 */
    double budget;          /* seconds per call (all attempts), default 120 */
    unsigned backoff_base_ms; /* default 100 */
    unsigned backoff_cap_ms;  /* default 10000 */
    unsigned max_parallel;    /* transfers at once in kiln_aws_call_many, default 8 */
    size_t max_response;      /* default KILN_AWS_MAX_RESPONSE */
    time_t (*clock)(void);    /* signing clock; default time() */
    const volatile int *cancel; /* when non-zero, calls stop with -ECANCELED */
};

struct kiln_aws_client;

int kiln_aws_client_new(const struct kiln_aws_client_config *cfg, struct kiln_aws_client **ret,
                        struct kiln_error *err);
void kiln_aws_client_free(struct kiln_aws_client *c);
const char *kiln_aws_client_region(const struct kiln_aws_client *c);
/* "https://ec2.eu-west-1.amazonaws.com" or the endpoint override (no trailing slash). */
char *kiln_aws_client_endpoint(const struct kiln_aws_client *c, const char *service);
/* Current credentials (refreshed through the provider when they expire). */
int kiln_aws_client_credentials(struct kiln_aws_client *c, struct kiln_aws_credentials *ret,
                                struct kiln_error *err);
time_t kiln_aws_client_now(const struct kiln_aws_client *c);
/* Change the per-call time budget (seconds); returns the previous one. */
double kiln_aws_client_set_budget(struct kiln_aws_client *c, double budget);
/* Statistics since creation: attempts, retries and bytes of request bodies sent. */
struct kiln_aws_stats {
    unsigned long requests;
    unsigned long attempts;
    unsigned long retries;
    unsigned long long bytes_sent;
};
void kiln_aws_client_stats(const struct kiln_aws_client *c, struct kiln_aws_stats *ret);

enum kiln_aws_body_kind { KILN_AWS_BODY_ANY, KILN_AWS_BODY_XML, KILN_AWS_BODY_JSON };

struct kiln_aws_request {
    const char *service;   /* signing name and endpoint prefix: ec2, s3, ebs, sts */
    const char *method;
    const char *path;      /* wire form, percent-encoded; "/" when NULL */
    const char *query;     /* without '?', may be NULL */
    struct kiln_aws_headers headers; /* extra headers (Content-Type, x-amz-*...) */
    const void *body;
    size_t body_len;
    bool unsigned_payload; /* S3: x-amz-content-sha256 UNSIGNED-PAYLOAD */
    bool s3;               /* S3 path rules and x-amz-content-sha256 */
    enum kiln_aws_body_kind expect; /* content type a successful response must have */
    bool to_fd;            /* a 2xx body goes to out_fd (truncated and rewound on retry) */
    int out_fd;
    bool head;             /* HEAD: no body expected */
};

struct kiln_aws_response {
    long status;
    struct kiln_aws_headers headers;
    struct kiln_buf body;
    char *request_id;
    unsigned attempts;
};

void kiln_aws_request_clear(struct kiln_aws_request *r);
void kiln_aws_response_clear(struct kiln_aws_response *r);

/* One request with retries. On an AWS error the return is -KILN_E_REMOTE and err->cause holds
 * the AWS code ("InvalidInstanceID.NotFound"), err->retryable whether it was transient. */
int kiln_aws_call(struct kiln_aws_client *c, const struct kiln_aws_request *req,
                  struct kiln_aws_response *resp, struct kiln_error *err);
/* n requests in parallel on the client's multi handle, each retried independently; rets[i] and
 * errs[i] (may be NULL) get each result; returns the first failure, or 0. Stops starting new
 * transfers once one has failed for good when stop_on_error is set. */
int kiln_aws_call_many(struct kiln_aws_client *c, const struct kiln_aws_request *reqs,
                       struct kiln_aws_response *resps, size_t n, bool stop_on_error,
                       struct kiln_error *errs, struct kiln_error *err);

/* Streaming: keep up to `slots` transfers in flight (0: max_parallel). feed(ctx, slot, &req)
 * returns 1 with a request for that slot (valid until done() for the slot), 0 when there is
 * no more, <0 to fail; done(ctx, slot, resp, result, xerr) gets each finished transfer
 * (result 0, or its error after retries, in xerr) and may take the response's contents; a
 * negative return stops everything (done explains its own failures in xerr). Returns the first failure, or 0. */
typedef int (*kiln_aws_feed_fn)(void *ctx, size_t slot, const struct kiln_aws_request **req,
                                struct kiln_error *err);
typedef int (*kiln_aws_done_fn)(void *ctx, size_t slot, struct kiln_aws_response *resp,
                                int result, struct kiln_error *xerr);
int kiln_aws_call_stream(struct kiln_aws_client *c, size_t slots, kiln_aws_feed_fn feed,
                         kiln_aws_done_fn done, void *ctx, struct kiln_error *err);

/* Error parsing (exposed for tests and fuzzers): fill err from an AWS error response. */
void kiln_aws_parse_error(long status, const struct kiln_aws_headers *headers, const char *body,
                          size_t len, struct kiln_error *err, char **ret_request_id);
bool kiln_aws_code_is_throttling(const char *code);
bool kiln_aws_status_is_retryable(long status, const char *code);
/* Full-jitter backoff: uniform in [0, min(cap, base * 2^attempt)] milliseconds. */
unsigned kiln_aws_backoff_ms(unsigned attempt, unsigned base_ms, unsigned cap_ms);

/* Redaction: a copy of text with signatures, credentials, tokens, secrets and presigned query
 * strings replaced by "REDACTED". Everything the client logs passes through it. */
char *kiln_aws_redact(const char *text);
/* A random UUID (version 4), as the AWS SDKs and CLI generate for idempotency tokens
 * (ClientToken) the caller left out. */
char *kiln_aws_idempotency_token(void);
