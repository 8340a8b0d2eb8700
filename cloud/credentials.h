/* The AWS credentials chain, resolved as the AWS CLI does: environment variables, then the
 * shared credentials/config files for AWS_PROFILE (with role_arn/source_profile through STS
 * AssumeRole), then the EC2 instance metadata service (IMDSv2). Results are cached until five
 * minutes before they expire. */
#pragma once

#include <time.h>

#include "cloud/aws.h"

struct kiln_aws_credentials_options {
    const char *profile;        /* NULL: $AWS_PROFILE, then "default" */
    const char *region;         /* for STS AssumeRole; NULL: $AWS_REGION/profile/us-east-1 */
    const char *endpoint_url;   /* STS endpoint override (tests, simulators) */
    time_t (*clock)(void);      /* default time() */
    unsigned imds_timeout_ms;   /* default 1000 */
};

struct kiln_aws_credentials_provider;

int kiln_aws_credentials_provider_new(const struct kiln_aws_credentials_options *opts,
                                      struct kiln_aws_credentials_provider **ret,
                                      struct kiln_error *err);
void kiln_aws_credentials_provider_free(struct kiln_aws_credentials_provider *p);
/* A copy of valid credentials (resolving or refreshing as needed). */
int kiln_aws_credentials_provider_get(struct kiln_aws_credentials_provider *p,
                                      struct kiln_aws_credentials *ret, struct kiln_error *err);
/* Where the cached credentials came from: "environment", "shared-credentials-file",
 * "config-file", "assume-role", "imds", or NULL before the first get. */
const char *kiln_aws_credentials_provider_source(const struct kiln_aws_credentials_provider *p);

/* Helpers used by the chain and its tests. */
/* Value of key in [section] of an INI file (AWS shared file syntax); NULL when absent. */
int kiln_aws_ini_get(const char *path, const char *section, const char *key, char **ret,
                     struct kiln_error *err);
/* The instance metadata service's base URL as the AWS CLI finds it
 * (AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254; no trailing slash), or NULL
 * when AWS_EC2_METADATA_DISABLED is true. */
char *kiln_aws_imds_endpoint(void);
/* One IMDSv2 request: PUT /latest/api/token (token NULL; asks for a 6-hour token) or a GET with
 * the token. out gets the body (at most 64 KiB). -EHOSTUNREACH when unreachable, -ENOENT on 404,
 * -KILN_E_REMOTE on another status. Never through a proxy. */
int kiln_aws_imds_request(const char *base, const char *method, const char *path, const char *token,
                          long timeout_ms, struct kiln_buf *out, struct kiln_error *err);
/* ISO 8601 "2026-11-28T21:00:00Z" to time_t; -1 when malformed. */
time_t kiln_aws_parse_time(const char *s);
