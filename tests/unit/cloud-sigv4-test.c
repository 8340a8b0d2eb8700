/* SigV4 against AWS's published test suites (tests/data/sigv4/), plus presigning and S3 rules.
 * tests/cmake/cloud.cmake registers one ctest entry per suite case: it runs the case
 * "sigv4_suite_one" with KILN_SIGV4_CASE=<folder>. The case "sigv4_suite_all" runs them all. */
#include "kiln-test.h"

#include <dirent.h>
#include <sys/stat.h>

#include "cloud/sigv4.h"
#include "common/fs.h"
#include "common/json.h"

struct parsed_req {
    char *method;
    char *path;
    char *query;
    struct kiln_aws_headers headers;
    char *body;
    size_t body_len;
};

static void
parsed_req_clear(struct parsed_req *r)
{
    free(r->method);
    free(r->path);
    free(r->query);
    kiln_aws_headers_clear(&r->headers);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static char *
read_text(const char *dir, const char *name)
{
    _cleanup_free_ char *path = kiln_asprintf("%s/%s", dir, name);
    char *data = NULL;
    size_t len = 0;
    struct kiln_error err = {0};
    if (kiln_read_file(path, 1 << 20, &data, &len, &err) < 0)
        fail_msg("%s: %s", path, err.message);
    return data;
}

/* The suites' request files: "METHOD PATH HTTP/1.1", header lines (continuation lines start
 * with whitespace), a blank line, the body. The path may hold raw spaces. */
static void
parse_request(const char *text, struct parsed_req *r)
{
    memset(r, 0, sizeof(*r));
    const char *eol = strchr(text, '\n');
    size_t l = eol ? (size_t)(eol - text) : strlen(text);
    _cleanup_free_ char *line = kiln_strndup(text, l);
    char *sp = strchr(line, ' ');
    char *http = strstr(line, " HTTP/");
    assert_non_null(sp);
    assert_non_null(http);
    r->method = kiln_strndup(line, (size_t)(sp - line));
    _cleanup_free_ char *target = kiln_strndup(sp + 1, (size_t)(http - sp - 1));
    char *q = strchr(target, '?');
    r->query = kiln_strdup(q ? q + 1 : "");
    if (q)
        *q = 0;
    r->path = kiln_strdup(target);
    const char *p = eol ? eol + 1 : text + l;
    while (*p) {
        eol = strchr(p, '\n');
        l = eol ? (size_t)(eol - p) : strlen(p);
        if (l == 0) {
            p++;
            break;
        }
        _cleanup_free_ char *h = kiln_strndup(p, l);
        if ((h[0] == ' ' || h[0] == '\t') && r->headers.n > 0) {
            struct kiln_aws_header *last = &r->headers.v[r->headers.n - 1];
            char *joined = kiln_asprintf("%s %s", last->value, h);
            free(last->value);
            last->value = joined;
        } else {
            char *colon = strchr(h, ':');
            assert_non_null(colon);
            *colon = 0;
            kiln_aws_headers_add(&r->headers, h, colon + 1);
        }
        p += l + (eol ? 1 : 0);
    }
    r->body_len = strlen(p);
    r->body = kiln_strdup(p);
}

static time_t
parse_iso8601(const char *s)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    assert_non_null(end);
    return timegm(&tm);
}

/* Parameters of a query string as a canonical (sorted) string, to compare URLs whatever the
 * order their parameters were written in. */
static char *
query_of_signed_request(const char *text)
{
    const char *q = strchr(text, '?');
    const char *end = strstr(text, " HTTP/");
    assert_non_null(q);
    assert_non_null(end);
    _cleanup_free_ char *raw = kiln_strndup(q + 1, (size_t)(end - q - 1));
    return kiln_sigv4_canonical_query(raw);
}

static void
run_aws_c_auth_case(const char *dir)
{
    _cleanup_free_ char *ctx_text = read_text(dir, "context.json");
    _cleanup_json_ json_t *ctx = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_json_parse(ctx_text, strlen(ctx_text), 1 << 20, "context.json", &ctx,
                                     &err),
                     0);
    json_t *c = json_object_get(ctx, "credentials");
    struct kiln_aws_credentials creds = {
        .access_key_id = (char *)kiln_json_get_str(c, "access_key_id"),
        .secret_access_key = (char *)kiln_json_get_str(c, "secret_access_key"),
        .session_token = (char *)kiln_json_get_str(c, "token"),
    };
    struct kiln_sigv4_params p = {
        .creds = &creds,
        .region = kiln_json_get_str(ctx, "region"),
        .service = kiln_json_get_str(ctx, "service"),
        .now = parse_iso8601(kiln_json_get_str(ctx, "timestamp")),
        .no_path_normalize = !json_is_true(json_object_get(ctx, "normalize")),
        .content_sha256_header = json_is_true(json_object_get(ctx, "sign_body")),
        .omit_session_token = json_is_true(json_object_get(ctx, "omit_session_token")),
        .expires = (unsigned)json_integer_value(json_object_get(ctx, "expiration_in_seconds")),
    };
    _cleanup_free_ char *text = read_text(dir, "request.txt");

    /* Header signing. */
    struct parsed_req r;
    parse_request(text, &r);
    struct kiln_sigv4_request req = {r.method, r.path, r.query, &r.headers, r.body, r.body_len,
                                     NULL};
    struct kiln_sigv4_result res;
    assert_int_equal(kiln_sigv4_sign_headers(&req, &p, &res, &err), 0);
    _cleanup_free_ char *creq = read_text(dir, "header-canonical-request.txt");
    _cleanup_free_ char *sts = read_text(dir, "header-string-to-sign.txt");
    _cleanup_free_ char *sig = read_text(dir, "header-signature.txt");
    _cleanup_free_ char *sreq = read_text(dir, "header-signed-request.txt");
    assert_string_equal(res.canonical_request, creq);
    assert_string_equal(res.string_to_sign, sts);
    assert_string_equal(res.signature, sig);
    _cleanup_free_ char *authz_line = kiln_asprintf("\nAuthorization:%s\n", res.authorization);
    assert_non_null(strstr(sreq, authz_line));
    /* Every header of the signed request is present with the expected value. */
    struct parsed_req signed_req;
    parse_request(sreq, &signed_req);
    for (size_t i = 0; i < signed_req.headers.n; i++) {
        const char *v = kiln_aws_headers_get(&r.headers, signed_req.headers.v[i].name);
        assert_non_null(v);
    }
    assert_int_equal(signed_req.headers.n, r.headers.n);
    parsed_req_clear(&signed_req);
    kiln_sigv4_result_clear(&res);
    parsed_req_clear(&r);

    /* Query-string (presigned) signing. */
    parse_request(text, &r);
    struct kiln_sigv4_request qreq = {r.method, r.path, r.query, &r.headers, r.body, r.body_len,
                                      NULL};
    p.content_sha256_header = false;
    assert_int_equal(kiln_sigv4_presign(&qreq, &p, &res, &err), 0);
    _cleanup_free_ char *qcreq = read_text(dir, "query-canonical-request.txt");
    _cleanup_free_ char *qsts = read_text(dir, "query-string-to-sign.txt");
    _cleanup_free_ char *qsig = read_text(dir, "query-signature.txt");
    _cleanup_free_ char *qsreq = read_text(dir, "query-signed-request.txt");
    assert_string_equal(res.canonical_request, qcreq);
    assert_string_equal(res.string_to_sign, qsts);
    assert_string_equal(res.signature, qsig);
    _cleanup_free_ char *want_q = query_of_signed_request(qsreq);
    _cleanup_free_ char *got_q = kiln_sigv4_canonical_query(res.query);
    assert_string_equal(got_q, want_q);
    kiln_sigv4_result_clear(&res);
    parsed_req_clear(&r);
}

static char *
find_with_ext(const char *dir, const char *ext)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    char *found = NULL;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name), m = strlen(ext);
        if (n > m && strcmp(e->d_name + n - m, ext) == 0) {
            found = kiln_strdup(e->d_name);
            break;
        }
    }
    closedir(d);
    assert_non_null(found);
    return found;
}

static void
run_botocore_case(const char *dir)
{
    _cleanup_free_ char *reqf = find_with_ext(dir, ".req");
    _cleanup_free_ char *base = kiln_strndup(reqf, strlen(reqf) - 4);
    _cleanup_free_ char *text = read_text(dir, reqf);
    _cleanup_free_ char *creqf = kiln_asprintf("%s.creq", base);
    _cleanup_free_ char *stsf = kiln_asprintf("%s.sts", base);
    _cleanup_free_ char *authzf = kiln_asprintf("%s.authz", base);
    _cleanup_free_ char *creq = read_text(dir, creqf);
    _cleanup_free_ char *sts = read_text(dir, stsf);
    _cleanup_free_ char *authz = read_text(dir, authzf);

    struct parsed_req r;
    parse_request(text, &r);
    /* The suite's fixed context (botocore test_sigv4.py). The session token is the one its
     * signed request (.sreq) carries; post-sts-header-after adds it after signing (readme). */
    _cleanup_free_ char *sreqf = kiln_asprintf("%s.sreq", base);
    _cleanup_free_ char *sreq = read_text(dir, sreqf);
    struct parsed_req signed_req;
    parse_request(sreq, &signed_req);
    const char *token = kiln_aws_headers_get(&signed_req.headers, "X-Amz-Security-Token");
    _cleanup_free_ char *token_copy = token ? kiln_strdup(token) : NULL;
    parsed_req_clear(&signed_req);
    struct kiln_aws_credentials creds = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                         token_copy, 0};
    struct kiln_sigv4_params p = {.creds = &creds, .region = "us-east-1", .service = "service",
                                  .now = 1440938160,
                                  .omit_session_token = strcmp(base, "post-sts-header-after") == 0};
    struct kiln_sigv4_request req = {r.method, r.path, r.query, &r.headers, r.body, r.body_len,
                                     NULL};
    struct kiln_sigv4_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_sigv4_sign_headers(&req, &p, &res, &err), 0);
    assert_string_equal(res.canonical_request, creq);
    assert_string_equal(res.string_to_sign, sts);
    assert_string_equal(res.authorization, authz);
    kiln_sigv4_result_clear(&res);
    parsed_req_clear(&r);
}

static void
run_case(const char *dir)
{
    _cleanup_free_ char *ctx = kiln_asprintf("%s/context.json", dir);
    struct stat st;
    if (stat(ctx, &st) == 0)
        run_aws_c_auth_case(dir);
    else
        run_botocore_case(dir);
}

static void
sigv4_suite_one(void **state)
{
    const char *dir = getenv("KILN_SIGV4_CASE");
    if (!dir)
        fail_msg("KILN_SIGV4_CASE is not set (tests/cmake/cloud.cmake sets it per case)");
    run_case(dir);
}

static unsigned
run_tree(const char *dir)
{
    unsigned n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    bool is_case = false;
    char **subs = NULL;
    size_t nsubs = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        size_t l = strlen(e->d_name);
        if (strcmp(e->d_name, "context.json") == 0 || (l > 4 && !strcmp(e->d_name + l - 4, ".req")))
            is_case = true;
        _cleanup_free_ char *sub = kiln_asprintf("%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode)) {
            subs = kiln_reallocarray(subs, nsubs + 1, sizeof(*subs));
            subs[nsubs++] = TAKE_PTR(sub);
        }
    }
    closedir(d);
    if (is_case) {
        run_case(dir);
        n++;
    }
    for (size_t i = 0; i < nsubs; i++) {
        n += run_tree(subs[i]);
        free(subs[i]);
    }
    free(subs);
    return n;
}

static void
sigv4_suite_all(void **state)
{
    _cleanup_free_ char *dir = kiln_asprintf("%s/tests/data/sigv4", kiln_test_source_dir());
    /* 34 botocore + 38 aws-c-auth v4 cases. */
    assert_int_equal(run_tree(dir), 72);
}

static void
sigv4_canonical_path_rules(void **state)
{
    struct { const char *in; bool norm, enc; const char *want; } cases[] = {
        {"", true, true, "/"},
        {"/a/./b/../c/", true, true, "/a/c/"},
        {"/a//b", true, true, "/a/b"},
        {"/a//b", false, false, "/a//b"},
        {"/key%20with%20space", false, false, "/key%20with%20space"},
        {"/key%20with%20space", true, true, "/key%2520with%2520space"},
        {"/..", true, true, "/"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        _cleanup_free_ char *got = kiln_sigv4_canonical_path(cases[i].in, cases[i].norm,
                                                             cases[i].enc);
        assert_string_equal(got, cases[i].want);
    }
}

static void
sigv4_canonical_query_rules(void **state)
{
    struct { const char *in, *want; } cases[] = {
        {"b=2&a=1", "a=1&b=2"},
        {"a=2&a=1", "a=1&a=2"},
        {"flag", "flag="},
        {"k=a+b", "k=a%2Bb"},
        {"k=%7e%41", "k=~A"},
        {"k=%zz", "k=%25zz"},
        {"&&a=1&", "a=1"},
        {"Prefix=a/b c", "Prefix=a%2Fb%20c"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        _cleanup_free_ char *got = kiln_sigv4_canonical_query(cases[i].in);
        assert_string_equal(got, cases[i].want);
    }
}

/* The S3 presigned GET example of the S3 API reference ("Authenticating Requests: Using Query
 * Parameters"): bucket examplebucket, key test.txt, 2013-05-24, 86400 s. */
static void
sigv4_s3_presign_example(void **state)
{
    struct kiln_aws_credentials creds = {"AKIAIOSFODNN7EXAMPLE",
                                         "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", NULL, 0};
    struct kiln_aws_headers h = {0};
    kiln_aws_headers_add(&h, "Host", "examplebucket.s3.amazonaws.com");
    struct kiln_sigv4_request req = {"GET", "/test.txt", NULL, &h, NULL, 0,
                                     KILN_SIGV4_UNSIGNED_PAYLOAD};
    struct kiln_sigv4_params p = {.creds = &creds, .region = "us-east-1", .service = "s3",
                                  .now = 1369353600, .no_path_normalize = true,
                                  .no_path_encode = true, .expires = 86400};
    struct kiln_sigv4_result res;
    assert_int_equal(kiln_sigv4_presign(&req, &p, &res, NULL), 0);
    assert_string_equal(res.signature,
                        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    assert_non_null(strstr(res.query, "X-Amz-Expires=86400"));
    kiln_sigv4_result_clear(&res);
    kiln_aws_headers_clear(&h);
}

/* The S3 header-signing GET example of the same reference (range GET, UNSIGNED hash absent:
 * the empty payload's hash in x-amz-content-sha256). */
static void
sigv4_s3_get_object_example(void **state)
{
    struct kiln_aws_credentials creds = {"AKIAIOSFODNN7EXAMPLE",
                                         "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", NULL, 0};
    struct kiln_aws_headers h = {0};
    kiln_aws_headers_add(&h, "Host", "examplebucket.s3.amazonaws.com");
    kiln_aws_headers_add(&h, "Range", "bytes=0-9");
    struct kiln_sigv4_request req = {"GET", "/test.txt", NULL, &h, NULL, 0, NULL};
    struct kiln_sigv4_params p = {.creds = &creds, .region = "us-east-1", .service = "s3",
                                  .now = 1369353600, .no_path_normalize = true,
                                  .no_path_encode = true, .content_sha256_header = true};
    struct kiln_sigv4_result res;
    assert_int_equal(kiln_sigv4_sign_headers(&req, &p, &res, NULL), 0);
    assert_string_equal(res.signature,
                        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    kiln_sigv4_result_clear(&res);
    kiln_aws_headers_clear(&h);
}

static void
sigv4_rejects_bad_params(void **state)
{
    struct kiln_aws_credentials creds = {"AK", "SK", NULL, 0};
    struct kiln_aws_headers h = {0};
    kiln_aws_headers_add(&h, "Host", "h");
    struct kiln_sigv4_request req = {"GET", "/", NULL, &h, NULL, 0, NULL};
    struct kiln_sigv4_params p = {.creds = &creds, .region = "r", .service = "s", .expires = 0};
    struct kiln_sigv4_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_sigv4_presign(&req, &p, &res, &err), -KILN_E_INVALID);
    p.expires = KILN_SIGV4_MAX_EXPIRES + 1;
    assert_int_equal(kiln_sigv4_presign(&req, &p, &res, NULL), -KILN_E_INVALID);
    struct kiln_aws_credentials none = {0};
    p.creds = &none;
    assert_int_equal(kiln_sigv4_sign_headers(&req, &p, &res, NULL), -KILN_E_INVALID);
    kiln_aws_headers_clear(&h);
}

KILN_TEST_MAIN(cmocka_unit_test(sigv4_suite_all), cmocka_unit_test(sigv4_canonical_path_rules),
               cmocka_unit_test(sigv4_canonical_query_rules),
               cmocka_unit_test(sigv4_s3_presign_example),
               cmocka_unit_test(sigv4_s3_get_object_example),
               cmocka_unit_test(sigv4_rejects_bad_params),
               /* Registered per case by tests/cmake/cloud.cmake, not by the generic scan. */
               {"sigv4_suite_one", sigv4_suite_one, NULL, NULL, NULL})
