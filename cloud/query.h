/* The AWS Query protocol (EC2, STS): form-encoded parameters, XML responses. */
#pragma once

#include "cloud/http.h"
#include "cloud/xml.h"

struct kiln_aws_query {
    struct kiln_buf body;
};

void kiln_aws_query_init(struct kiln_aws_query *q, const char *action, const char *version);
void kiln_aws_query_add(struct kiln_aws_query *q, const char *key, const char *value);
void kiln_aws_query_addf(struct kiln_aws_query *q, const char *value, const char *keyfmt, ...)
    _printf_(3, 4);
void kiln_aws_query_clear(struct kiln_aws_query *q);

/* POST the query; on success *ret_doc is the parsed XML response. */
int kiln_aws_query_call(struct kiln_aws_client *c, const char *service, struct kiln_aws_query *q,
                        xmlDoc **ret_doc, struct kiln_error *err);
