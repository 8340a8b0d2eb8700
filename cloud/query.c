/* AWS Query protocol requests (EC2 and STS). */
#include "cloud/query.h"

#include <stdarg.h>
#include <string.h>

void
kiln_aws_query_init(struct kiln_aws_query *q, const char *action, const char *version)
{
    kiln_buf_init(&q->body);
    kiln_aws_query_add(q, "Action", action);
    kiln_aws_query_add(q, "Version", version);
}

void
kiln_aws_query_add(struct kiln_aws_query *q, const char *key, const char *value)
{
    if (!value)
        return;
    if (q->body.len)
        kiln_buf_append_char(&q->body, '&');
    kiln_aws_uri_encode(&q->body, key, strlen(key), false);
    kiln_buf_append_char(&q->body, '=');
    kiln_aws_uri_encode(&q->body, value, strlen(value), false);
}

void
kiln_aws_query_addf(struct kiln_aws_query *q, const char *value, const char *keyfmt, ...)
{
    if (!value)
        return;
    char key[256];
    va_list ap;
    va_start(ap, keyfmt);
    vsnprintf(key, sizeof(key), keyfmt, ap);
    va_end(ap);
    kiln_aws_query_add(q, key, value);
}

void
kiln_aws_query_clear(struct kiln_aws_query *q)
{
    kiln_buf_clear(&q->body);
}

int
kiln_aws_query_call(struct kiln_aws_client *c, const char *service, struct kiln_aws_query *q,
                    xmlDoc **ret_doc, struct kiln_error *err)
{
    *ret_doc = NULL;
    struct kiln_aws_request req = {.service = service, .method = "POST", .path = "/",
                                   .body = q->body.data, .body_len = q->body.len,
                                   .expect = KILN_AWS_BODY_XML};
    kiln_aws_headers_add(&req.headers, "Content-Type",
                         "application/x-www-form-urlencoded; charset=utf-8");
    struct kiln_aws_response resp = {0};
    int r = kiln_aws_call(c, &req, &resp, err);
    kiln_aws_request_clear(&req);
    if (r == 0)
        r = kiln_aws_xml_parse(resp.body.data, resp.body.len, ret_doc, err);
    kiln_aws_response_clear(&resp);
    return r;
}
