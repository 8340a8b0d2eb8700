/* STS: AssumeRole and GetCallerIdentity (Query protocol, version 2011-06-15). */
#pragma once

#include "cloud/http.h"
#include "cloud/xml.h"

struct kiln_sts_assume_role_request {
    const char *role_arn;
    const char *session_name;
    unsigned duration_seconds; /* 0: the service default (3600) */
    const char *external_id;
};

int kiln_sts_assume_role(struct kiln_aws_client *c, const struct kiln_sts_assume_role_request *req,
                         struct kiln_aws_credentials *ret, struct kiln_error *err);

struct kiln_sts_identity {
    char *account;
    char *arn;
    char *user_id;
};
void kiln_sts_identity_clear(struct kiln_sts_identity *id);
int kiln_sts_get_caller_identity(struct kiln_aws_client *c, struct kiln_sts_identity *ret,
                                 struct kiln_error *err);

/* Parsers, exposed for tests. */
int kiln_sts_parse_assume_role(xmlDoc *doc, struct kiln_aws_credentials *ret,
                               struct kiln_error *err);
