/* S3 client behaviour that needs a misbehaving server: multipart aborts on a failed part,
 * 200-with-<Error> completions, short GetObject bodies, key encoding on the wire, and
 * x-amz-expected-bucket-owner on every request of a call that names an owner. */
#include "kiln-test.h"

#include <fcntl.h>
#include <unistd.h>

#include "cloud-http-server.h"
#include "cloud/s3.h"
#include "common/fs.h"

struct s3_script {
    atomic_int parts;
    atomic_int aborts;
    atomic_int completes;
    bool fail_part_3;
    bool complete_error_in_200;
    bool whole_get; /* GET answers a complete body (and ListObjectsV2 a listing) */
    char last_target[4096];
    atomic_int requests;
    atomic_int with_owner; /* requests carrying x-amz-expected-bucket-owner: 111122223333 */
};

static void
s3_handler(const struct ts_request *req, struct ts_response *resp, void *data)
{
    struct s3_script *s = data;
    snprintf(s->last_target, sizeof(s->last_target), "%s", req->target);
    char owner[64];
    s->requests++;
    if (ts_header(req, "x-amz-expected-bucket-owner", owner, sizeof(owner)) &&
        strcmp(owner, "111122223333") == 0)
        s->with_owner++;
    if (s->whole_get && strcmp(req->method, "GET") == 0 && strstr(req->target, "list-type=2")) {
        ts_reply(resp, 200, "application/xml",
                 "<ListBucketResult><Contents><Key>p/a</Key><Size>1</Size></Contents>"
                 "<IsTruncated>false</IsTruncated></ListBucketResult>");
        return;
    }
    if (s->whole_get && strcmp(req->method, "GET") == 0) {
        ts_reply(resp, 200, "text/plain", "0123456789");
        return;
    }
    if (strcmp(req->method, "POST") == 0 && strstr(req->target, "?uploads")) {
        ts_reply(resp, 200, "application/xml",
                 "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>"
                 "<UploadId>UPLOAD-1</UploadId></InitiateMultipartUploadResult>");
        return;
    }
    if (strcmp(req->method, "PUT") == 0 && strstr(req->target, "partNumber=")) {
        s->parts++;
        if (s->fail_part_3 && strstr(req->target, "partNumber=3&")) {
            ts_reply(resp, 400, "application/xml",
                     "<Error><Code>InvalidArgument</Code><Message>bad part</Message></Error>");
            return;
        }
        ts_reply(resp, 200, NULL, "");
        snprintf(resp->headers, sizeof(resp->headers), "ETag: \"etag-%d\"\r\n", (int)s->parts);
        return;
    }
    if (strcmp(req->method, "DELETE") == 0 && strstr(req->target, "uploadId=UPLOAD-1")) {
        s->aborts++;
        ts_reply(resp, 204, NULL, "");
        return;
    }
    if (strcmp(req->method, "POST") == 0 && strstr(req->target, "uploadId=UPLOAD-1")) {
        s->completes++;
        if (s->complete_error_in_200)
            ts_reply(resp, 200, "application/xml",
                     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError"
                     "</Code><Message>We encountered an internal error.</Message></Error>");
        else
            ts_reply(resp, 200, "application/xml",
                     "<CompleteMultipartUploadResult><ETag>\"x-3\"</ETag>"
                     "</CompleteMultipartUploadResult>");
        return;
    }
    if (strcmp(req->method, "GET") == 0) {
        /* Claims 100 bytes, sends 10, then closes: a cut connection. */
        resp->status = 200;
        snprintf(resp->headers, sizeof(resp->headers), "Content-Type: text/plain\r\n");
        resp->body = strdup("0123456789");
        resp->body_len = 10;
        resp->claim_len = 100;
        return;
    }
    ts_reply(resp, 200, NULL, "");
}

static struct kiln_aws_credentials creds = {"AKIDKILNTEST", "kiln-test-secret", NULL, 0};

static struct kiln_aws_client *
client_for(struct test_server *srv, unsigned max_attempts)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", srv->port);
    struct kiln_aws_client_config cfg = {.region = "us-east-1", .endpoint_url = url,
                                         .credentials = &creds, .backoff_base_ms = 5,
                                         .max_attempts = max_attempts, .budget = 10};
    struct kiln_aws_client *c = NULL;
    assert_int_equal(kiln_aws_client_new(&cfg, &c, NULL), 0);
    return c;
}

static char *
make_file(size_t size)
{
    char *dir = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-s3-test", &dir, NULL), 0);
    char *path = kiln_asprintf("%s/f", dir);
    free(dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    close(fd);
    return path;
}

static void
s3_multipart_aborts_when_a_part_fails(void **state)
{
    struct s3_script sc = {.fail_part_3 = true};
    struct test_server srv;
    ts_start(&srv, s3_handler, &sc);
    struct kiln_aws_client *c = client_for(&srv, 3);
    _cleanup_free_ char *f = make_file(6 * KILN_S3_MIN_PART);
    struct kiln_error err = {0};
    assert_int_equal(kiln_s3_upload_file(c, "b", "k", f, KILN_S3_MIN_PART, &err),
                     -KILN_E_REMOTE);
    assert_string_equal(err.cause, "InvalidArgument");
    assert_int_equal(sc.aborts, 1);
    assert_int_equal(sc.completes, 0);
    kiln_aws_client_free(c);
    ts_stop(&srv);
    unlink(f);
}

static void
s3_complete_error_in_200_is_an_error(void **state)
{
    struct s3_script sc = {.complete_error_in_200 = true};
    struct test_server srv;
    ts_start(&srv, s3_handler, &sc);
    struct kiln_aws_client *c = client_for(&srv, 1);
    _cleanup_free_ char *f = make_file(2 * KILN_S3_MIN_PART + 1);
    struct kiln_error err = {0};
    assert_int_equal(kiln_s3_upload_file(c, "b", "k", f, KILN_S3_MIN_PART, &err),
                     -KILN_E_REMOTE);
    assert_string_equal(err.cause, "InternalError");
    assert_int_equal(sc.parts, 3);
    assert_int_equal(sc.aborts, 1);
    kiln_aws_client_free(c);
    ts_stop(&srv);
    unlink(f);
}

static void
s3_short_body_is_an_error(void **state)
{
    struct s3_script sc = {0};
    struct test_server srv;
    ts_start(&srv, s3_handler, &sc);
    struct kiln_aws_client *c = client_for(&srv, 1);
    _cleanup_free_ char *f = make_file(0);
    struct kiln_error err = {0};
    /* 10 of 100 announced bytes, then the connection closes: an error (retryable), never a
     * short object passed off as complete. */
    assert_true(kiln_s3_get_object(c, "b", "k", f, &err) < 0);
    assert_true(err.retryable);
    assert_non_null(strstr(err.message, "GetObject"));
    kiln_aws_client_free(c);
    ts_stop(&srv);
    unlink(f);
}

static void
s3_keys_are_encoded_once(void **state)
{
    struct s3_script sc = {0};
    struct test_server srv;
    ts_start(&srv, s3_handler, &sc);
    struct kiln_aws_client *c = client_for(&srv, 1);
    assert_int_equal(kiln_s3_put_object(c, "b", "a b/ü+%.txt", "x", 1, NULL, NULL, NULL), 0);
    assert_string_equal(sc.last_target, "/b/a%20b/%C3%BC%2B%25.txt");
    _cleanup_free_ char *url = NULL;
    assert_int_equal(kiln_s3_presign(c, "GET", "b", "a b", 60, &url, NULL), 0);
    assert_non_null(strstr(url, "/b/a%20b?"));
    assert_non_null(strstr(url, "X-Amz-Expires=60"));
    struct kiln_error err = {0};
    free(TAKE_PTR(url));
    assert_int_equal(kiln_s3_presign(c, "DELETE", "b", "a", 60, &url, &err), -KILN_E_INVALID);
    assert_null(url);
    assert_int_equal(kiln_s3_put_object(c, "bad/bucket", "k", "x", 1, NULL, NULL, NULL),
                     -KILN_E_INVALID);
    kiln_aws_client_free(c);
    ts_stop(&srv);
}

static void
s3_expected_bucket_owner_is_sent(void **state)
{
    struct s3_script sc = {.whole_get = true};
    struct test_server srv;
    ts_start(&srv, s3_handler, &sc);
    struct kiln_aws_client *c = client_for(&srv, 1);
    struct kiln_s3_options o = {.expected_bucket_owner = "111122223333"};
    /* Multipart: create, 3 parts, complete - all five carry the header. */
    _cleanup_free_ char *f = make_file(2 * KILN_S3_MIN_PART + 1);
    assert_int_equal(kiln_s3_upload_file_opts(c, "b", "k", f, KILN_S3_MIN_PART, &o, NULL), 0);
    assert_int_equal(sc.requests, 5);
    assert_int_equal(sc.with_owner, 5);
    /* A single PutObject. */
    _cleanup_free_ char *small = make_file(10);
    assert_int_equal(kiln_s3_upload_file_opts(c, "b", "k", small, 0, &o, NULL), 0);
    assert_int_equal(sc.with_owner, 6);
    assert_int_equal(kiln_s3_get_object_opts(c, "b", "k", small, &o, NULL), 0);
    assert_int_equal(sc.with_owner, 7);
    struct kiln_s3_list_request lr = {.prefix = "p/", .expected_bucket_owner = "111122223333"};
    struct kiln_s3_list l;
    assert_int_equal(kiln_s3_list_objects_all(c, "b", &lr, &l, NULL), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].key, "p/a");
    kiln_s3_list_clear(&l);
    assert_int_equal(sc.with_owner, 8);
    /* Without options, no header. */
    assert_int_equal(kiln_s3_get_object(c, "b", "k", small, NULL), 0);
    assert_int_equal(sc.requests, 9);
    assert_int_equal(sc.with_owner, 8);
    kiln_aws_client_free(c);
    ts_stop(&srv);
    unlink(f);
    unlink(small);
}

KILN_TEST_MAIN(cmocka_unit_test(s3_multipart_aborts_when_a_part_fails),
               cmocka_unit_test(s3_complete_error_in_200_is_an_error),
               cmocka_unit_test(s3_short_body_is_an_error),
               cmocka_unit_test(s3_keys_are_encoded_once),
               cmocka_unit_test(s3_expected_bucket_owner_is_sent))
