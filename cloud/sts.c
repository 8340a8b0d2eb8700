/* STS AssumeRole and GetCallerIdentity. */
#include "cloud/sts.h"

#include <string.h>

#include "cloud/credentials.h"
#include "cloud/query.h"

#define STS_VERSION "2011-06-15"

int
kiln_sts_parse_assume_role(xmlDoc *doc, struct kiln_aws_credentials *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    xmlNode *cr = kiln_aws_xml_path(kiln_aws_xml_root(doc), "AssumeRoleResult/Credentials");
    if (!cr)
        return kiln_error_set(err, -KILN_E_PARSE, "AssumeRole response without Credentials");
    ret->access_key_id = kiln_aws_xml_text(cr, "AccessKeyId");
    ret->secret_access_key = kiln_aws_xml_text(cr, "SecretAccessKey");
    ret->session_token = kiln_aws_xml_text(cr, "SessionToken");
    _cleanup_free_ char *exp = kiln_aws_xml_text(cr, "Expiration");
    ret->expiration = exp ? kiln_aws_parse_time(exp) : -1;
    if (!ret->access_key_id || !ret->secret_access_key || !ret->session_token ||
        ret->expiration < 0) {
        kiln_aws_credentials_clear(ret);
        return kiln_error_set(err, -KILN_E_PARSE, "AssumeRole response with incomplete "
                                                  "credentials");
    }
    return 0;
}

int
kiln_sts_assume_role(struct kiln_aws_client *c, const struct kiln_sts_assume_role_request *req,
                     struct kiln_aws_credentials *ret, struct kiln_error *err)
{
    if (!req->role_arn || !req->session_name)
        return kiln_error_set(err, -KILN_E_INVALID, "AssumeRole: role ARN and session name "
                                                    "are required");
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "AssumeRole", STS_VERSION);
    kiln_aws_query_add(&q, "RoleArn", req->role_arn);
    kiln_aws_query_add(&q, "RoleSessionName", req->session_name);
    if (req->duration_seconds) {
        char d[16];
        snprintf(d, sizeof(d), "%u", req->duration_seconds);
        kiln_aws_query_add(&q, "DurationSeconds", d);
    }
    kiln_aws_query_add(&q, "ExternalId", req->external_id);
    _cleanup_xml_ xmlDoc *doc = NULL;
    int r = kiln_aws_query_call(c, "sts", &q, &doc, err);
    kiln_aws_query_clear(&q);
    if (r < 0)
        return kiln_error_prefix(err, r, "AssumeRole %s", req->role_arn);
    return kiln_sts_parse_assume_role(doc, ret, err);
}

void
kiln_sts_identity_clear(struct kiln_sts_identity *id)
{
    if (!id)
        return;
    free(id->account);
    free(id->arn);
    free(id->user_id);
    memset(id, 0, sizeof(*id));
}

int
kiln_sts_get_caller_identity(struct kiln_aws_client *c, struct kiln_sts_identity *ret,
                             struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "GetCallerIdentity", STS_VERSION);
    _cleanup_xml_ xmlDoc *doc = NULL;
    int r = kiln_aws_query_call(c, "sts", &q, &doc, err);
    kiln_aws_query_clear(&q);
    if (r < 0)
        return kiln_error_prefix(err, r, "GetCallerIdentity");
    xmlNode *res = kiln_aws_xml_child(kiln_aws_xml_root(doc), "GetCallerIdentityResult");
    if (!res)
        return kiln_error_set(err, -KILN_E_PARSE, "GetCallerIdentity response without a result");
    ret->account = kiln_aws_xml_text(res, "Account");
    ret->arn = kiln_aws_xml_text(res, "Arn");
    ret->user_id = kiln_aws_xml_text(res, "UserId");
    if (!ret->account || !ret->arn) {
        kiln_sts_identity_clear(ret);
        return kiln_error_set(err, -KILN_E_PARSE, "GetCallerIdentity response without Account "
                                                  "or Arn");
    }
    return 0;
}
