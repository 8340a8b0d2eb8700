/* Client behaviour found by the parity tests (tests/parity/, Kiln's client vs the AWS CLI):
 * RunInstances and StartSnapshot carry a ClientToken even when the caller gave none (as the
 * CLI does), the same one on every retry of a call and a new one for the next call, a caller's
 * token as given; a multipart upload gets the same Content-Type as a single PutObject. */
#include "kiln-test.h"

#include "cloud-http-server.h"
#include "cloud/ebs.h"
#include "cloud/ec2.h"
#include "cloud/s3.h"

struct token_script {
    atomic_int calls;
    char tokens[4][64];
    bool reset_first;
    char content_types[2][128];
};

/* The ClientToken of a form body (EC2) or a JSON body (EBS), into out. */
static void
find_token(const struct ts_request *req, char *out, size_t cap)
{
    _cleanup_free_ char *body = strndup(req->body ? req->body : "", req->body_len);
    const char *p = strstr(body, "ClientToken=");
    size_t n = 0;
    if (p) {
        p += strlen("ClientToken=");
        n = strcspn(p, "&");
    } else if ((p = strstr(body, "\"ClientToken\": \"")) ||
               (p = strstr(body, "\"ClientToken\":\""))) {
        p = strchr(p + strlen("\"ClientToken\":"), '"') + 1;
        n = strcspn(p, "\"");
    }
    snprintf(out, cap, "%.*s", (int)n, p ? p : "");
}

static void
handler(const struct ts_request *req, struct ts_response *resp, void *data)
{
    struct token_script *sc = data;
    int i = atomic_fetch_add(&sc->calls, 1);
    if (i < 4)
        find_token(req, sc->tokens[i], sizeof(sc->tokens[i]));
    if (i == 0 && sc->reset_first) {
        resp->close = true; /* the response is lost: the client must retry */
        return;
    }
    if (strstr(req->target, "uploads")) {
        char ct[128] = "";
        ts_header(req, "Content-Type", ct, sizeof(ct));
        snprintf(sc->content_types[0], sizeof(sc->content_types[0]), "%s", ct);
        ts_reply(resp, 200, "application/xml",
                 "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>"
                 "<UploadId>u1</UploadId></InitiateMultipartUploadResult>");
    } else if (strcmp(req->method, "PUT") == 0) {
        char ct[128] = "";
        ts_header(req, "Content-Type", ct, sizeof(ct));
        snprintf(sc->content_types[1], sizeof(sc->content_types[1]), "%s", ct);
        ts_reply(resp, 200, NULL, "");
        snprintf(resp->headers, sizeof(resp->headers), "ETag: \"abc\"\r\n");
    } else if (strstr(req->target, "/snapshots"))
        ts_reply(resp, 201, "application/json",
                 "{\"SnapshotId\": \"snap-0123456789abcdef0\", \"Status\": \"pending\", "
                 "\"VolumeSize\": 1, \"BlockSize\": 524288}");
    else
        ts_reply(resp, 200, "text/xml",
                 "<RunInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
                 "<reservationId>r-1</reservationId><instancesSet><item>"
                 "<instanceId>i-0123456789abcdef0</instanceId></item></instancesSet>"
                 "</RunInstancesResponse>");
}

static struct kiln_aws_credentials creds = {"AKIDKILNTEST", "kiln-test-secret", NULL, 0};

static struct kiln_aws_client *
client_for(struct test_server *srv)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", srv->port);
    struct kiln_aws_client_config cfg = {.region = "us-east-1", .endpoint_url = url,
                                         .credentials = &creds, .backoff_base_ms = 5,
                                         .max_attempts = 3, .budget = 10};
    struct kiln_aws_client *c = NULL;
    assert_int_equal(kiln_aws_client_new(&cfg, &c, NULL), 0);
    return c;
}

static void
assert_uuid4(const char *s)
{
    assert_int_equal(strlen(s), 36);
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(s[i], '-');
        else
            assert_non_null(strchr("0123456789abcdef", s[i]));
    }
    assert_int_equal(s[14], '4');
    assert_non_null(strchr("89ab", s[19]));
}

static void
token_is_a_uuid4_and_new_each_time(void **state)
{
    _cleanup_free_ char *a = kiln_aws_idempotency_token();
    _cleanup_free_ char *b = kiln_aws_idempotency_token();
    assert_uuid4(a);
    assert_uuid4(b);
    assert_string_not_equal(a, b);
}

static void
run_instances_token_kept_across_retries(void **state)
{
    struct token_script sc = {.reset_first = true};
    struct test_server srv;
    ts_start(&srv, handler, &sc);
    struct kiln_aws_client *c = client_for(&srv);
    struct kiln_ec2_run_instances_request req = {.image_id = "ami-1", .instance_type = "t3.micro"};
    struct kiln_ec2_instances l;
    struct kiln_error err = {0};
    assert_int_equal(kiln_ec2_run_instances(c, &req, &l, &err), 0);
    kiln_ec2_instances_clear(&l);
    assert_int_equal(sc.calls, 2);
    assert_uuid4(sc.tokens[0]);
    assert_string_equal(sc.tokens[0], sc.tokens[1]);
    /* The next call is another launch: another token. */
    assert_int_equal(kiln_ec2_run_instances(c, &req, &l, &err), 0);
    kiln_ec2_instances_clear(&l);
    assert_uuid4(sc.tokens[2]);
    assert_string_not_equal(sc.tokens[0], sc.tokens[2]);
    /* A caller's token goes as given. */
    req.client_token = "mine-1";
    assert_int_equal(kiln_ec2_run_instances(c, &req, &l, &err), 0);
    kiln_ec2_instances_clear(&l);
    assert_string_equal(sc.tokens[3], "mine-1");
    kiln_aws_client_free(c);
    ts_stop(&srv);
}

static void
start_snapshot_token_kept_across_retries(void **state)
{
    struct token_script sc = {.reset_first = true};
    struct test_server srv;
    ts_start(&srv, handler, &sc);
    struct kiln_aws_client *c = client_for(&srv);
    struct kiln_ebs_start_request req = {.volume_size = 1};
    struct kiln_ebs_snapshot snap;
    struct kiln_error err = {0};
    assert_int_equal(kiln_ebs_start_snapshot(c, &req, &snap, &err), 0);
    kiln_ebs_snapshot_clear(&snap);
    assert_int_equal(sc.calls, 2);
    assert_uuid4(sc.tokens[0]);
    assert_string_equal(sc.tokens[0], sc.tokens[1]);
    req.client_token = "mine-2";
    assert_int_equal(kiln_ebs_start_snapshot(c, &req, &snap, &err), 0);
    kiln_ebs_snapshot_clear(&snap);
    assert_string_equal(sc.tokens[2], "mine-2");
    kiln_aws_client_free(c);
    ts_stop(&srv);
}

static void
multipart_and_single_put_same_content_type(void **state)
{
    struct token_script sc = {0};
    struct test_server srv;
    ts_start(&srv, handler, &sc);
    struct kiln_aws_client *c = client_for(&srv);
    struct kiln_error err = {0};
    _cleanup_free_ char *upload = NULL, *etag = NULL;
    assert_int_equal(kiln_s3_create_multipart_upload(c, "bucket", "k", &upload, &err), 0);
    assert_string_equal(upload, "u1");
    assert_int_equal(kiln_s3_put_object(c, "bucket", "k", "x", 1, NULL, &etag, &err), 0);
    assert_string_equal(sc.content_types[0], "application/octet-stream");
    assert_string_equal(sc.content_types[0], sc.content_types[1]);
    kiln_aws_client_free(c);
    ts_stop(&srv);
}

KILN_TEST_MAIN(cmocka_unit_test(token_is_a_uuid4_and_new_each_time),
               cmocka_unit_test(run_instances_token_kept_across_retries),
               cmocka_unit_test(start_snapshot_token_kept_across_retries),
               cmocka_unit_test(multipart_and_single_put_same_content_type))
