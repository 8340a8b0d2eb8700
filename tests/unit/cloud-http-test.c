/* The AWS transport against a local HTTP server: retries and budgets, error parsing, bounds,
 * content types, connection reuse, parallel calls, redaction, cancellation in flight. */
#include "kiln-test.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "cloud-http-server.h"
#include "cloud/http.h"
#include "cloud/sigv4.h"
#include "common/fs.h"
#include "common/log.h"

static struct kiln_aws_credentials test_creds = {"AKIDKILNTEST", "kiln-test-secret", NULL, 0};

static struct kiln_aws_client *
client_for(struct test_server *s, double budget, size_t max_response)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", s->port);
    struct kiln_aws_client_config cfg = {.region = "us-east-1", .endpoint_url = url,
                                         .credentials = &test_creds, .budget = budget,
                                         .backoff_base_ms = 10, .backoff_cap_ms = 200,
                                         .max_response = max_response, .max_attempts = 50};
    struct kiln_aws_client *c = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_aws_client_new(&cfg, &c, &err), 0);
    return c;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct script {
    atomic_int calls;
    int fail_first;   /* this many requests get the failure below */
    int fail_status;
    const char *fail_body;
    const char *ctype;
    const char *ok_body;
    size_t ok_len;    /* when non-zero, a body of this many 'x' */
    char last_authz[1024];
};

static void
scripted(const struct ts_request *req, struct ts_response *resp, void *data)
{
    struct script *s = data;
    int n = s->calls++;
    ts_header(req, "Authorization", s->last_authz, sizeof(s->last_authz));
    if (n < s->fail_first) {
        if (s->fail_status == 0) {
            resp->close = true;
            return;
        }
        ts_reply(resp, s->fail_status, "text/xml", s->fail_body);
        return;
    }
    if (s->ok_len) {
        resp->body = malloc(s->ok_len);
        memset(resp->body, 'x', s->ok_len);
        resp->body_len = s->ok_len;
        snprintf(resp->headers, sizeof(resp->headers), "Content-Type: %s\r\n", s->ctype);
        return;
    }
    ts_reply(resp, 200, s->ctype ? s->ctype : "text/xml",
             s->ok_body ? s->ok_body : "<ok/>");
    size_t l = strlen(resp->headers);
    snprintf(resp->headers + l, sizeof(resp->headers) - l, "x-amzn-RequestId: rid-%d\r\n", n);
}

static int
simple_call(struct kiln_aws_client *c, struct kiln_aws_response *resp, struct kiln_error *err)
{
    struct kiln_aws_request req = {.service = "ec2", .method = "POST", .path = "/",
                                   .body = "Action=DescribeRegions", .body_len = 22,
                                   .expect = KILN_AWS_BODY_XML};
    return kiln_aws_call(c, &req, resp, err);
}

static const char *slowdown =
    "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    "<RequestId>REQ1</RequestId></Error>";

static void
http_retries_throttling_then_succeeds(void **state)
{
    struct script sc = {.fail_first = 3, .fail_status = 503, .fail_body = slowdown};
    struct test_server s;
    ts_start(&s, scripted, &sc);
    struct kiln_aws_client *c = client_for(&s, 30, 0);
    struct kiln_aws_response resp = {0};
    struct kiln_error err = {0};
    assert_int_equal(simple_call(c, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.attempts, 4);
    assert_string_equal(resp.request_id, "rid-3");
    assert_non_null(strstr(sc.last_authz, "Credential=AKIDKILNTEST/"));
    struct kiln_aws_stats st;
    kiln_aws_client_stats(c, &st);
    assert_int_equal(st.retries, 3);
    kiln_aws_response_clear(&resp);
    kiln_aws_client_free(c);
    ts_stop(&s);
}

static void
http_retries_connection_resets(void **state)
{
    struct script sc = {.fail_first = 2, .fail_status = 0};
    struct test_server s;
    ts_start(&s, scripted, &sc);
    struct kiln_aws_client *c = client_for(&s, 30, 0);
    struct kiln_aws_response resp = {0};
    struct kiln_error err = {0};
    assert_int_equal(simple_call(c, &resp, &err), 0);
    assert_int_equal(resp.attempts, 3);
    kiln_aws_response_clear(&resp);
    kiln_aws_client_free(c);
    ts_stop(&s);
}

static void
http_gives_up_within_budget(void **state)
{
    struct script sc = {.fail_first = 1 << 30, .fail_status = 503, .fail_body = slowdown};
    struct test_server s;
    ts_start(&s, scripted, &sc);
    struct kiln_aws_client *c = client_for(&s, 1.0, 0);
    struct kiln_aws_response resp = {0};
    struct kiln_error err = {0};
    double t0 = now_s();
    int r = simple_call(c, &resp, &err);
    double took = now_s() - t0;
    assert_int_equal(r, -KILN_E_REMOTE);
    /* Inside the budget, give or take scheduling on a loaded machine. */
    assert_true(took < 2.0);
    assert_true(sc.calls > 2);
    assert_string_equal(err.cause, "SlowDown");
    assert_true(err.retryable);
    assert_non_null(strstr(err.message, "time budget"));
    assert_non_null(strstr(err.message, "Please reduce your request rate."));
    assert_non_null(strstr(err.message, "REQ1"));
    kiln_aws_response_clear(&resp);
    kiln_aws_client_free(c);
    ts_stop(&s);
}

static void
hung(const struct ts_request *req, struct ts_response *resp, void *data)
{
    (void)req;
    (void)data;
    usleep(3 * 1000 * 1000); /* a peer that does not answer (for a while) */
    ts_reply(resp, 200, "application/xml", "<ok/>");
}

static volatile int hung_cancel;

static void *
cancel_later(void *arg)
{
    (void)arg;
    usleep(300 * 1000);
    hung_cancel = 1;
    return NULL;
}

static void
http_cancel_stops_a_transfer_in_flight(void **state)
{
    struct test_server s;
    ts_start(&s, hung, NULL);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.port);
    hung_cancel = 0;
    struct kiln_aws_client_config cfg = {.region = "us-east-1", .endpoint_url = url,
                                         .credentials = &test_creds, .budget = 60,
                                         .cancel = &hung_cancel};
    struct kiln_aws_client *c = NULL;
    assert_int_equal(kiln_aws_client_new(&cfg, &c, NULL), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_later, NULL), 0);
    struct kiln_aws_response resp = {0};
    struct kiln_error err = {0};
    double t0 = now_s();
    int r = simple_call(c, &resp, &err);
    double took = now_s() - t0;
    pthread_join(t, NULL);
    /* Stopped when the flag was raised, not when the peer answered 3 s later. */
    assert_int_equal(r, -ECANCELED);
    assert_true(took < 2.0);
    kiln_aws_response_clear(&resp);
    kiln_aws_client_free(c);
    ts_stop(&s);
}

static void
http_no_retry_on_client_error(void **state)
{
    struct script sc = {.fail_first = 1 << 30, .fail_status = 400,
                        .fail_body = "<Response><Errors><Error><Code>InvalidAMIID.Malformed</Code>"
                                     "<Message>Invalid id: \"ami-1\"</Message></Error></Errors>"
                                     "<RequestID>EC2REQ</RequestID></Response>"};
    struct test_server s;
    ts_start(&s, scripted, &sc);
    struct kiln_aws_client *c = client_for(&s, 30, 0);
    struct kiln_aws_response resp = {0};
    struct kiln_error err = {0};
    assert_int_equal(simple_call(c, &resp, &err), -KILN_E_REMOTE);
    assert_int_equal(sc.calls, 1);
    assert_string_equal(err.cause, "InvalidAMIID.Malformed");
    assert_false(err.retryable);
    assert_string_equal(resp.request_id, "EC2REQ");
    kiln_aws_response_clear(&resp);
    kiln_aws_client_free(c);
    ts_stop(&s);
}

static void
http_bounds_response_size(void **state)
{
    struct script sc = {.ok_len = 100000, .ctype = "text/xml"};
    struct test_server s;
    ts_start(&s, scripted, &sc);
    struct kiln_aws_client *c = client_for(&s, 30, 4096);
    struct kiln_aws_response resp = {0};
    struct kiln_error err = {0};
    assert_int_equal(simple_call(c, &resp, &err), -KILN_E_LIMIT);
    assert_non_null(strstr(err.message, "larger than 4096"));
    kiln_aws_response_clear(&resp);
    kiln_aws_client_free(c);
    ts_stop(&s);
}

static void
http_rejects_wrong_content_type(void **state)
{
    struct script sc = {.ctype = "text/html", .ok_body = "<html>captive portal</html>"};
    struct test_server s;
    ts_start(&s, scripted, &sc);
    struct kiln_aws_client *c = client_for(&s, 30, 0);
    struct kiln_aws_response resp = {0};
    struct kiln_error err = {0};
    assert_int_equal(simple_call(c, &resp, &err), -KILN_E_PARSE);
    assert_non_null(strstr(err.message, "text/html"));
    kiln_aws_response_clear(&resp);
    kiln_aws_client_free(c);
    ts_stop(&s);
}

static void
http_reuses_connections(void **state)
{
    struct script sc = {0};
    struct test_server s;
    ts_start(&s, scripted, &sc);
    struct kiln_aws_client *c = client_for(&s, 30, 0);
    for (int i = 0; i < 10; i++) {
        struct kiln_aws_response resp = {0};
        assert_int_equal(simple_call(c, &resp, NULL), 0);
        kiln_aws_response_clear(&resp);
    }
    assert_int_equal(s.requests, 10);
    assert_int_equal(s.connections, 1);
    kiln_aws_client_free(c);
    ts_stop(&s);
}

static void
http_parallel_calls(void **state)
{
    struct script sc = {.fail_first = 5, .fail_status = 500,
                        .fail_body = "<Error><Code>InternalError</Code></Error>"};
    struct test_server s;
    ts_start(&s, scripted, &sc);
    struct kiln_aws_client *c = client_for(&s, 30, 0);
    enum { N = 24 };
    struct kiln_aws_request reqs[N] = {0};
    struct kiln_aws_response resps[N];
    struct kiln_error errs[N] = {0};
    for (int i = 0; i < N; i++) {
        reqs[i] = (struct kiln_aws_request){.service = "ebs", .method = "PUT", .path = "/x",
                                            .body = "data", .body_len = 4};
    }
    assert_int_equal(kiln_aws_call_many(c, reqs, resps, N, true, errs, NULL), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(resps[i].status, 200);
        kiln_aws_response_clear(&resps[i]);
    }
    assert_int_equal(sc.calls, N + 5);
    assert_true(s.connections <= 8 + 5);
    kiln_aws_client_free(c);
    ts_stop(&s);
}

static void
http_parse_error_formats(void **state)
{
    struct {
        long status;
        const char *hname, *hvalue, *body;
        const char *code, *msg_part, *rid;
        bool retryable;
    } cases[] = {
        {400, NULL, NULL,
         "<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance "
         "ID 'i-1a2b3c4d' does not exist</Message></Error></Errors><RequestID>ea966190-f9aa-478e-"
         "9ede-example</RequestID></Response>",
         "InvalidInstanceID.NotFound", "does not exist", "ea966190-f9aa-478e-9ede-example", false},
        {503, NULL, NULL,
         "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit "
         "exceeded.</Message></Error></Errors><RequestID>r2</RequestID></Response>",
         "RequestLimitExceeded", "limit", "r2", true},
        {404, "x-amz-request-id", "S3RID",
         "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code><Message>The "
         "specified key does not exist.</Message><Key>k</Key><RequestId>BODYRID</RequestId>"
         "</Error>",
         "NoSuchKey", "specified key", "S3RID", false},
        {400, "x-amzn-RequestId", "JRID",
         "{\"__type\":\"com.amazon.coral.validate#ValidationException\",\"message\":\"bad "
         "block\"}",
         "ValidationException", "bad block", "JRID", false},
        {429, "x-amzn-RequestId", "JRID2", "{\"Message\":\"slow\",\"code\":\"ThrottlingException\"}",
         "ThrottlingException", "slow", "JRID2", true},
        {403, NULL, NULL,
         "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not "
         "authorized</Message></Error><RequestId>STSRID</RequestId></ErrorResponse>",
         "AccessDenied", "not authorized", "STSRID", false},
        {404, NULL, NULL, "", "NotFound", "no message", NULL, false},
        {502, NULL, NULL, "<html>bad gateway", "HTTP502", "no message", NULL, true},
        {400, "x-amzn-ErrorType", "ResourceNotFoundException:http://internal", "{}",
         "ResourceNotFoundException", "no message", NULL, false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct kiln_aws_headers h = {0};
        if (cases[i].hname)
            kiln_aws_headers_add(&h, cases[i].hname, cases[i].hvalue);
        struct kiln_error err = {0};
        char *rid = NULL;
        kiln_aws_parse_error(cases[i].status, &h, cases[i].body, strlen(cases[i].body), &err,
                             &rid);
        assert_int_equal(err.code, -KILN_E_REMOTE);
        assert_string_equal(err.cause, cases[i].code);
        assert_non_null(strstr(err.message, cases[i].msg_part));
        if (cases[i].rid)
            assert_string_equal(rid, cases[i].rid);
        else
            assert_null(rid);
        assert_int_equal(err.retryable, cases[i].retryable);
        free(rid);
        kiln_aws_headers_clear(&h);
    }
}

static void
http_backoff_is_full_jitter(void **state)
{
    unsigned max_seen = 0, zeros_or_small = 0;
    for (int i = 0; i < 2000; i++) {
        unsigned v = kiln_aws_backoff_ms(3, 100, 10000);
        assert_true(v <= 800);
        if (v > max_seen)
            max_seen = v;
        if (v < 200)
            zeros_or_small++;
    }
    /* Uniform on [0, 800]: both ends are reached. */
    assert_true(max_seen > 600);
    assert_true(zeros_or_small > 100);
    for (int i = 0; i < 100; i++)
        assert_true(kiln_aws_backoff_ms(30, 100, 5000) <= 5000);
}

static void
http_redacts_secrets(void **state)
{
    const char *in[] = {
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIDKILNTEST/20260101/us-east-1/ec2/"
        "aws4_request, SignedHeaders=host;x-amz-date, Signature=abcdef0123456789\nnext",
        "GET https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
        "AKIDKILNTEST%2F2026&X-Amz-Security-Token=SESSIONTOKENVALUE&X-Amz-Signature=deadbeef",
        "{\"AccessKeyId\": \"ASIAX\", \"SecretAccessKey\": \"kiln-test-secret\", \"Token\": "
        "\"SESSIONTOKENVALUE\"}",
        "<Credentials><SecretAccessKey>kiln-test-secret</SecretAccessKey><SessionToken>"
        "SESSIONTOKENVALUE</SessionToken></Credentials>",
        "aws_secret_access_key = kiln-test-secret\naws_session_token=SESSIONTOKENVALUE\n",
        "x-amz-security-token: SESSIONTOKENVALUE\r\n",
    };
    const char *secrets[] = {"abcdef0123456789", "deadbeef", "kiln-test-secret",
                             "SESSIONTOKENVALUE", "AKIDKILNTEST"};
    for (size_t i = 0; i < ARRAY_SIZE(in); i++) {
        _cleanup_free_ char *out = kiln_aws_redact(in[i]);
        for (size_t k = 0; k < ARRAY_SIZE(secrets); k++)
            if (strstr(out, secrets[k]))
                fail_msg("case %zu leaks %s: %s", i, secrets[k], out);
        assert_non_null(strstr(out, "REDACTED"));
    }
    _cleanup_free_ char *plain = kiln_aws_redact("DescribeInstances i-123 ok");
    assert_string_equal(plain, "DescribeInstances i-123 ok");
    _cleanup_free_ char *next = kiln_aws_redact(in[0]);
    assert_non_null(strstr(next, "\nnext"));
}

static void
http_endpoints(void **state)
{
    struct kiln_aws_client_config cfg = {.region = "eu-west-1", .credentials = &test_creds};
    struct kiln_aws_client *c = NULL;
    assert_int_equal(kiln_aws_client_new(&cfg, &c, NULL), 0);
    const char *svc[] = {"ec2", "s3", "ebs", "sts"};
    const char *want[] = {"https://ec2.eu-west-1.amazonaws.com", "https://s3.eu-west-1.amazonaws.com",
                          "https://ebs.eu-west-1.amazonaws.com", "https://sts.eu-west-1.amazonaws.com"};
    for (size_t i = 0; i < 4; i++) {
        _cleanup_free_ char *e = kiln_aws_client_endpoint(c, svc[i]);
        assert_string_equal(e, want[i]);
    }
    kiln_aws_client_free(c);
    cfg.endpoint_url = "ftp://x";
    struct kiln_error err = {0};
    assert_int_equal(kiln_aws_client_new(&cfg, &c, &err), -KILN_E_INVALID);
    cfg.endpoint_url = "http://127.0.0.1:1/";
    assert_int_equal(kiln_aws_client_new(&cfg, &c, NULL), 0);
    _cleanup_free_ char *e = kiln_aws_client_endpoint(c, "ec2");
    assert_string_equal(e, "http://127.0.0.1:1");
    kiln_aws_client_free(c);
}

struct concurrency {
    atomic_int now;
    atomic_int max;
    atomic_int total;
};

static void
slow_handler(const struct ts_request *req, struct ts_response *resp, void *data)
{
    struct concurrency *cc = data;
    int n = ++cc->now;
    int m = cc->max;
    while (n > m && !atomic_compare_exchange_weak(&cc->max, &m, n))
        ;
    usleep(30000);
    cc->now--;
    cc->total++;
    ts_reply(resp, 200, "application/json", req->target);
}

struct feed_state {
    struct kiln_aws_request reqs[4];
    char paths[4][32];
    int fed;
    int done;
    int bad;
};

static int
feed_n(void *ctx, size_t slot, const struct kiln_aws_request **req, struct kiln_error *err)
{
    struct feed_state *f = ctx;
    if (f->fed == 40)
        return 0;
    snprintf(f->paths[slot], sizeof(f->paths[slot]), "/item/%d", f->fed++);
    f->reqs[slot] = (struct kiln_aws_request){.service = "ebs", .method = "GET",
                                              .path = f->paths[slot]};
    *req = &f->reqs[slot];
    return 1;
}

static int
done_n(void *ctx, size_t slot, struct kiln_aws_response *resp, int result, struct kiln_error *xerr)
{
    struct feed_state *f = ctx;
    /* The response belongs to the request of this slot. */
    if (result < 0 || !resp->body.data || strcmp(resp->body.data, f->paths[slot]) != 0)
        f->bad++;
    f->done++;
    return 0;
}

/* The streaming engine keeps exactly `slots` requests in flight and matches each response to
 * its slot's request. */
static void
http_stream_keeps_slots_busy(void **state)
{
    struct concurrency cc = {0};
    struct test_server s;
    ts_start(&s, slow_handler, &cc);
    struct kiln_aws_client *c = client_for(&s, 30, 0);
    struct feed_state f = {0};
    double t0 = now_s();
    assert_int_equal(kiln_aws_call_stream(c, 4, feed_n, done_n, &f, NULL), 0);
    double took = now_s() - t0;
    assert_int_equal(f.done, 40);
    assert_int_equal(f.bad, 0);
    assert_int_equal(cc.total, 40);
    assert_true(cc.max <= 4);
    assert_true(cc.max >= 3);
    /* 40 requests of 30 ms, 4 at a time: about 0.3 s, far from the serial 1.2 s. */
    assert_true(took < 1.0);
    assert_true(s.connections <= 4);
    kiln_aws_client_free(c);
    ts_stop(&s);
}

/* With trace logging on, a throttled call signed with a session token leaves no secret,
 * token or signature in what the client logs. */
static void
http_debug_log_holds_no_secrets(void **state)
{
    struct script sc = {.fail_first = 2, .fail_status = 503, .fail_body = slowdown};
    struct test_server s;
    ts_start(&s, scripted, &sc);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.port);
    struct kiln_aws_credentials creds = {"ASIAKILNSESSION", "very-secret-key-123",
                                         "SESSION-TOKEN-XYZ", 0};
    struct kiln_aws_client_config cfg = {.region = "us-east-1", .endpoint_url = url,
                                         .credentials = &creds, .backoff_base_ms = 5};
    struct kiln_aws_client *c = NULL;
    assert_int_equal(kiln_aws_client_new(&cfg, &c, NULL), 0);
    char *dir = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-log", &dir, NULL), 0);
    _cleanup_free_ char *path = kiln_asprintf("%s/log", dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    dup2(fd, 2);
    close(fd);
    kiln_log_set_level(KILN_LOG_TRACE);
    struct kiln_aws_response resp = {0};
    int r = simple_call(c, &resp, NULL);
    kiln_log_set_level(KILN_LOG_WARN);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    assert_int_equal(r, 0);
    char *log = NULL;
    size_t len = 0;
    assert_int_equal(kiln_read_file(path, 1 << 20, &log, &len, NULL), 0);
    /* Something was logged (the retries), and none of it is secret. */
    assert_non_null(strstr(log, "SlowDown"));
    assert_null(strstr(log, "very-secret-key-123"));
    assert_null(strstr(log, "SESSION-TOKEN-XYZ"));
    assert_null(strstr(log, "Signature="));
    assert_null(strstr(log, sc.last_authz + strlen(sc.last_authz) - 64));
    free(log);
    kiln_rm_rf(dir, NULL);
    free(dir);
    kiln_aws_response_clear(&resp);
    kiln_aws_client_free(c);
    ts_stop(&s);
}

KILN_TEST_MAIN(cmocka_unit_test(http_retries_throttling_then_succeeds),
               cmocka_unit_test(http_retries_connection_resets),
               cmocka_unit_test(http_gives_up_within_budget),
               cmocka_unit_test(http_no_retry_on_client_error),
               cmocka_unit_test(http_bounds_response_size),
               cmocka_unit_test(http_rejects_wrong_content_type),
               cmocka_unit_test(http_reuses_connections), cmocka_unit_test(http_parallel_calls),
               cmocka_unit_test(http_parse_error_formats),
               cmocka_unit_test(http_backoff_is_full_jitter),
               cmocka_unit_test(http_redacts_secrets), cmocka_unit_test(http_endpoints),
               cmocka_unit_test(http_debug_log_holds_no_secrets),
               cmocka_unit_test(http_stream_keeps_slots_busy),
               cmocka_unit_test(http_cancel_stops_a_transfer_in_flight))
