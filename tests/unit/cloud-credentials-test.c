/* The credentials chain with temporary config files, a local STS (AssumeRole) and a local
 * IMDSv2 server started by the test. */
#include "kiln-test.h"

#include "cloud-http-server.h"
#include "cloud/credentials.h"
#include "common/fs.h"

static char *tmpdir;

static void
clean_env(void)
{
    const char *vars[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                          "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE",
                          "AWS_CONFIG_FILE", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                          "AWS_EC2_METADATA_DISABLED", "AWS_REGION", "AWS_DEFAULT_REGION"};
    for (size_t i = 0; i < ARRAY_SIZE(vars); i++)
        unsetenv(vars[i]);
}

static int
setup(void **state)
{
    clean_env();
    assert_int_equal(kiln_mkdtemp("kiln-creds", &tmpdir, NULL), 0);
    setenv("HOME", tmpdir, 1);
    /* Nothing listens here: the IMDS fallback fails fast instead of reaching a real one. */
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9", 1);
    return 0;
}

static int
teardown(void **state)
{
    kiln_rm_rf(tmpdir, NULL);
    free(tmpdir);
    clean_env();
    return 0;
}

static void
write_file(const char *name, const char *text)
{
    _cleanup_free_ char *path = kiln_asprintf("%s/%s", tmpdir, name);
    _cleanup_free_ char *dir = kiln_asprintf("%s/.aws", tmpdir);
    kiln_mkdir_p(dir, 0700, NULL);
    assert_int_equal(kiln_write_file_atomic(path, text, strlen(text), 0600, NULL), 0);
}

static time_t fake_now = 1800000000;
static time_t
fake_clock(void)
{
    return fake_now;
}

static void
get_ok(struct kiln_aws_credentials_provider *p, struct kiln_aws_credentials *c)
{
    struct kiln_error err = {0};
    int r = kiln_aws_credentials_provider_get(p, c, &err);
    if (r < 0)
        fail_msg("credentials: %s", err.message);
}

static void
creds_from_environment(void **state)
{
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    setenv("AWS_SESSION_TOKEN", "envtoken", 1);
    write_file(".aws/credentials", "[default]\naws_access_key_id=AKIDFILE\n"
                                   "aws_secret_access_key=filesecret\n");
    struct kiln_aws_credentials_provider *p = NULL;
    assert_int_equal(kiln_aws_credentials_provider_new(NULL, &p, NULL), 0);
    struct kiln_aws_credentials c;
    get_ok(p, &c);
    assert_string_equal(c.access_key_id, "AKIDENV");
    assert_string_equal(c.secret_access_key, "envsecret");
    assert_string_equal(c.session_token, "envtoken");
    assert_string_equal(kiln_aws_credentials_provider_source(p), "environment");
    kiln_aws_credentials_clear(&c);
    kiln_aws_credentials_provider_free(p);
}

static void
creds_from_shared_files(void **state)
{
    write_file(".aws/credentials",
               "# comment\n[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = "
               "defsecret\n\n[dev]\naws_access_key_id=AKIDDEV\naws_secret_access_key=devsecret\n"
               "aws_session_token = devtoken\n");
    write_file(".aws/config", "[profile cfgonly]\nregion = eu-west-1\naws_access_key_id = AKIDCFG\n"
                              "aws_secret_access_key = cfgsecret\ns3 =\n  max_concurrent_requests "
                              "= 20\n");
    struct kiln_aws_credentials_provider *p = NULL;
    struct kiln_aws_credentials c;
    assert_int_equal(kiln_aws_credentials_provider_new(NULL, &p, NULL), 0);
    get_ok(p, &c);
    assert_string_equal(c.access_key_id, "AKIDDEFAULT");
    assert_null(c.session_token);
    kiln_aws_credentials_clear(&c);
    kiln_aws_credentials_provider_free(p);

    setenv("AWS_PROFILE", "dev", 1);
    assert_int_equal(kiln_aws_credentials_provider_new(NULL, &p, NULL), 0);
    get_ok(p, &c);
    assert_string_equal(c.access_key_id, "AKIDDEV");
    assert_string_equal(c.session_token, "devtoken");
    assert_string_equal(kiln_aws_credentials_provider_source(p), "shared-credentials-file");
    kiln_aws_credentials_clear(&c);
    kiln_aws_credentials_provider_free(p);

    struct kiln_aws_credentials_options o = {.profile = "cfgonly"};
    assert_int_equal(kiln_aws_credentials_provider_new(&o, &p, NULL), 0);
    get_ok(p, &c);
    assert_string_equal(c.access_key_id, "AKIDCFG");
    assert_string_equal(kiln_aws_credentials_provider_source(p), "config-file");
    kiln_aws_credentials_clear(&c);
    kiln_aws_credentials_provider_free(p);

    /* File locations from the environment. */
    write_file("other-creds", "[default]\naws_access_key_id=AKIDOTHER\naws_secret_access_key=o\n");
    _cleanup_free_ char *other = kiln_asprintf("%s/other-creds", tmpdir);
    setenv("AWS_SHARED_CREDENTIALS_FILE", other, 1);
    unsetenv("AWS_PROFILE");
    assert_int_equal(kiln_aws_credentials_provider_new(NULL, &p, NULL), 0);
    get_ok(p, &c);
    assert_string_equal(c.access_key_id, "AKIDOTHER");
    kiln_aws_credentials_clear(&c);
    kiln_aws_credentials_provider_free(p);

    /* A named profile that does not exist is an error, not a fallback. */
    o.profile = "missing";
    assert_int_equal(kiln_aws_credentials_provider_new(&o, &p, NULL), 0);
    struct kiln_error err = {0};
    assert_int_equal(kiln_aws_credentials_provider_get(p, &c, &err), -ENOENT);
    assert_non_null(strstr(err.message, "missing"));
    kiln_aws_credentials_provider_free(p);
}

struct sts_state {
    atomic_int calls;
    char authz[1024];
    char body[1024];
};

static void
sts_handler(const struct ts_request *req, struct ts_response *resp, void *data)
{
    struct sts_state *s = data;
    s->calls++;
    ts_header(req, "Authorization", s->authz, sizeof(s->authz));
    snprintf(s->body, sizeof(s->body), "%s", req->body);
    ts_reply(resp, 200, "text/xml",
             "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
             "<AssumeRoleResult><Credentials><AccessKeyId>ASIAROLE</AccessKeyId>"
             "<SecretAccessKey>rolesecret</SecretAccessKey><SessionToken>roletoken</SessionToken>"
             "<Expiration>2027-01-15T08:00:00Z</Expiration></Credentials>"
             "<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/builder/s</Arn>"
             "</AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>");
}

static void
creds_assume_role(void **state)
{
    struct sts_state st = {0};
    struct test_server s;
    ts_start(&s, sts_handler, &st);
    write_file(".aws/credentials", "[base]\naws_access_key_id=AKIDBASE\n"
                                   "aws_secret_access_key=basesecret\n");
    write_file(".aws/config", "[profile builder]\nrole_arn = arn:aws:iam::123456789012:role/b\n"
                              "source_profile = base\nrole_session_name = kiln-test\n"
                              "region = eu-central-1\n[profile loop]\nrole_arn = arn:x\n"
                              "source_profile = loop2\n[profile loop2]\nrole_arn = arn:y\n"
                              "source_profile = loop\n");
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.port);
    fake_now = kiln_aws_parse_time("2027-01-15T06:00:00Z");
    struct kiln_aws_credentials_options o = {.profile = "builder", .endpoint_url = url,
                                             .clock = fake_clock};
    struct kiln_aws_credentials_provider *p = NULL;
    assert_int_equal(kiln_aws_credentials_provider_new(&o, &p, NULL), 0);
    struct kiln_aws_credentials c;
    get_ok(p, &c);
    assert_string_equal(c.access_key_id, "ASIAROLE");
    assert_string_equal(c.session_token, "roletoken");
    assert_int_equal(c.expiration, kiln_aws_parse_time("2027-01-15T08:00:00Z"));
    assert_string_equal(kiln_aws_credentials_provider_source(p), "assume-role");
    /* Signed with the source profile's keys, in the profile's region, for sts. */
    assert_non_null(strstr(st.authz, "Credential=AKIDBASE/"));
    assert_non_null(strstr(st.authz, "/eu-central-1/sts/aws4_request"));
    assert_non_null(strstr(st.body, "Action=AssumeRole"));
    assert_non_null(strstr(st.body, "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fb"));
    assert_non_null(strstr(st.body, "RoleSessionName=kiln-test"));
    kiln_aws_credentials_clear(&c);
    /* Cached: no second STS call until close to expiry. */
    get_ok(p, &c);
    assert_int_equal(st.calls, 1);
    kiln_aws_credentials_clear(&c);
    fake_now = kiln_aws_parse_time("2027-01-15T07:58:00Z");
    get_ok(p, &c);
    assert_int_equal(st.calls, 2);
    kiln_aws_credentials_clear(&c);
    kiln_aws_credentials_provider_free(p);

    o.profile = "loop";
    assert_int_equal(kiln_aws_credentials_provider_new(&o, &p, NULL), 0);
    struct kiln_error err = {0};
    assert_int_equal(kiln_aws_credentials_provider_get(p, &c, &err), -KILN_E_LIMIT);
    assert_non_null(strstr(err.message, "role chain"));
    kiln_aws_credentials_provider_free(p);
    ts_stop(&s);
}

struct imds_state {
    atomic_int token_puts;
    atomic_int gets;
    atomic_int unauthorized;
    int expiry_index;
};

static const char *imds_expiry[] = {"2027-03-01T10:00:00Z", "2027-03-01T16:00:00Z"};

static void
imds_handler(const struct ts_request *req, struct ts_response *resp, void *data)
{
    struct imds_state *s = data;
    char ttl[32], tok[128];
    if (strcmp(req->method, "PUT") == 0 && strcmp(req->target, "/latest/api/token") == 0) {
        if (!ts_header(req, "X-aws-ec2-metadata-token-ttl-seconds", ttl, sizeof(ttl))) {
            ts_reply(resp, 400, "text/plain", "missing ttl");
            return;
        }
        s->token_puts++;
        ts_reply(resp, 200, "text/plain", "IMDSTOKEN123");
        return;
    }
    /* IMDSv2 only: every GET needs the session token. */
    if (!ts_header(req, "X-aws-ec2-metadata-token", tok, sizeof(tok)) ||
        strcmp(tok, "IMDSTOKEN123") != 0) {
        s->unauthorized++;
        ts_reply(resp, 401, "text/plain", "");
        return;
    }
    s->gets++;
    if (strcmp(req->target, "/latest/meta-data/iam/security-credentials/") == 0) {
        ts_reply(resp, 200, "text/plain", "kiln-builder-role");
    } else if (strcmp(req->target, "/latest/meta-data/iam/security-credentials/kiln-builder-role")
               == 0) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"Code\":\"Success\",\"LastUpdated\":\"2027-03-01T04:00:00Z\",\"Type\":"
                 "\"AWS-HMAC\",\"AccessKeyId\":\"ASIAIMDS%d\",\"SecretAccessKey\":\"imdssecret\","
                 "\"Token\":\"imdstoken\",\"Expiration\":\"%s\"}",
                 s->expiry_index, imds_expiry[s->expiry_index]);
        ts_reply(resp, 200, "text/plain", body);
    } else {
        ts_reply(resp, 404, "text/plain", "");
    }
}

static void
creds_from_imdsv2(void **state)
{
    struct imds_state st = {0};
    struct test_server s;
    ts_start(&s, imds_handler, &st);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.port);
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", url, 1);
    fake_now = kiln_aws_parse_time("2027-03-01T05:00:00Z");
    struct kiln_aws_credentials_options o = {.clock = fake_clock};
    struct kiln_aws_credentials_provider *p = NULL;
    assert_int_equal(kiln_aws_credentials_provider_new(&o, &p, NULL), 0);
    struct kiln_aws_credentials c;
    get_ok(p, &c);
    assert_string_equal(c.access_key_id, "ASIAIMDS0");
    assert_string_equal(c.session_token, "imdstoken");
    assert_string_equal(kiln_aws_credentials_provider_source(p), "imds");
    assert_int_equal(st.token_puts, 1);
    assert_int_equal(st.gets, 2);
    assert_int_equal(st.unauthorized, 0);
    kiln_aws_credentials_clear(&c);
    /* Cached until five minutes before expiry. */
    fake_now = kiln_aws_parse_time("2027-03-01T09:50:00Z");
    get_ok(p, &c);
    assert_int_equal(st.gets, 2);
    kiln_aws_credentials_clear(&c);
    st.expiry_index = 1;
    fake_now = kiln_aws_parse_time("2027-03-01T09:56:00Z");
    get_ok(p, &c);
    assert_string_equal(c.access_key_id, "ASIAIMDS1");
    assert_int_equal(st.token_puts, 2);
    kiln_aws_credentials_clear(&c);
    kiln_aws_credentials_provider_free(p);
    ts_stop(&s);
}

static void
creds_none_is_clear_error(void **state)
{
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    struct kiln_aws_credentials_provider *p = NULL;
    assert_int_equal(kiln_aws_credentials_provider_new(NULL, &p, NULL), 0);
    struct kiln_aws_credentials c;
    struct kiln_error err = {0};
    assert_int_equal(kiln_aws_credentials_provider_get(p, &c, &err), -ENOENT);
    assert_non_null(strstr(err.message, "no AWS credentials"));
    assert_non_null(strstr(err.message, "disabled"));
    kiln_aws_credentials_provider_free(p);
}

static void
creds_parse_time(void **state)
{
    assert_int_equal(kiln_aws_parse_time("2015-08-30T12:36:00Z"), 1440938160);
    assert_int_equal(kiln_aws_parse_time("2015-08-30T12:36:00.123Z"), 1440938160);
    assert_int_equal(kiln_aws_parse_time("2015-08-30T12:36:00+00:00"), 1440938160);
    assert_int_equal(kiln_aws_parse_time("yesterday"), -1);
    assert_int_equal(kiln_aws_parse_time("2015-08-30T12:36:00+02:00"), -1);
}

KILN_TEST_MAIN(cmocka_unit_test_setup_teardown(creds_from_environment, setup, teardown),
               cmocka_unit_test_setup_teardown(creds_from_shared_files, setup, teardown),
               cmocka_unit_test_setup_teardown(creds_assume_role, setup, teardown),
               cmocka_unit_test_setup_teardown(creds_from_imdsv2, setup, teardown),
               cmocka_unit_test_setup_teardown(creds_none_is_clear_error, setup, teardown),
               cmocka_unit_test(creds_parse_time))
