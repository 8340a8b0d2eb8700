/* The AWS credentials chain: environment, shared files (with AssumeRole), IMDSv2. */
#include "cloud/credentials.h"

#include <ctype.h>
#include <curl/curl.h>
#include <string.h>
#include <strings.h>

#include "cloud/http.h"
#include "cloud/sts.h"
#include "common/buf.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"

#define REFRESH_MARGIN 300 /* refresh five minutes before expiry, as the SDKs do */
#define MAX_ROLE_CHAIN 5

struct kiln_aws_credentials_provider {
    char *profile;
    bool profile_explicit;
    char *region;
    char *endpoint_url;
    time_t (*clock)(void);
    unsigned imds_timeout_ms;
    struct kiln_aws_credentials cached;
    const char *source;
};

time_t
kiln_aws_parse_time(const char *s)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return -1;
    if (*end == '.') /* fractional seconds */
        while (*++end && isdigit((unsigned char)*end))
            ;
    if (*end != 'Z' && !(*end == '+' && strcmp(end, "+00:00") == 0))
        return -1;
    return timegm(&tm);
}

static time_t
now_of(const struct kiln_aws_credentials_provider *p)
{
    return p->clock ? p->clock() : time(NULL);
}

int
kiln_aws_credentials_provider_new(const struct kiln_aws_credentials_options *opts,
                                  struct kiln_aws_credentials_provider **ret,
                                  struct kiln_error *err)
{
    struct kiln_aws_credentials_options none = {0};
    if (!opts)
        opts = &none;
    struct kiln_aws_credentials_provider *p = kiln_new(struct kiln_aws_credentials_provider, 1);
    const char *env_profile = getenv("AWS_PROFILE");
    p->profile_explicit = opts->profile != NULL;
    p->profile = kiln_strdup(opts->profile ? opts->profile
                             : env_profile && *env_profile ? env_profile : "default");
    p->region = opts->region ? kiln_strdup(opts->region) : NULL;
    p->endpoint_url = opts->endpoint_url ? kiln_strdup(opts->endpoint_url) : NULL;
    p->clock = opts->clock;
    p->imds_timeout_ms = opts->imds_timeout_ms ? opts->imds_timeout_ms : 1000;
    *ret = p;
    return 0;
}

void
kiln_aws_credentials_provider_free(struct kiln_aws_credentials_provider *p)
{
    if (!p)
        return;
    kiln_aws_credentials_clear(&p->cached);
    free(p->profile);
    free(p->region);
    free(p->endpoint_url);
    free(p);
}

const char *
kiln_aws_credentials_provider_source(const struct kiln_aws_credentials_provider *p)
{
    return p->source;
}

/* --- INI files ---------------------------------------------------------------------------- */

static char *
trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t l = strlen(s);
    while (l > 0 && (s[l - 1] == ' ' || s[l - 1] == '\t' || s[l - 1] == '\r'))
        s[--l] = 0;
    return s;
}

int
kiln_aws_ini_get(const char *path, const char *section, const char *key, char **ret,
                 struct kiln_error *err)
{
    *ret = NULL;
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    int r = kiln_read_file(path, 1 << 20, &data, &len, NULL);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return kiln_error_errno(err, r, "reading %s", path);
    bool in = false;
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        /* Indented lines continue a nested value (s3 = ...): not a top-level key. */
        bool indented = line[0] == ' ' || line[0] == '\t';
        char *t = trim(line);
        if (!*t || *t == '#' || *t == ';')
            continue;
        if (*t == '[') {
            char *end = strchr(t, ']');
            if (!end)
                continue;
            *end = 0;
            char *name = trim(t + 1);
            /* "[profile  x]" may carry extra spaces. */
            if (strncmp(name, "profile", 7) == 0 && (name[7] == ' ' || name[7] == '\t')) {
                char *n2 = trim(name + 7);
                in = strcmp(section, name) == 0 ||
                     (strncmp(section, "profile ", 8) == 0 && strcmp(section + 8, n2) == 0);
            } else {
                in = strcmp(section, name) == 0;
            }
            continue;
        }
        if (!in || indented)
            continue;
        char *eq = strchr(t, '=');
        if (!eq)
            continue;
        *eq = 0;
        char *k = trim(t);
        char *v = trim(eq + 1);
        if (strcasecmp(k, key) == 0) {
            free(*ret);
            *ret = kiln_strdup(v);
        }
    }
    return 0;
}

static char *
home_path(const char *env, const char *rel)
{
    const char *v = getenv(env);
    if (v && *v) {
        if (v[0] == '~' && v[1] == '/' && getenv("HOME"))
            return kiln_asprintf("%s%s", getenv("HOME"), v + 1);
        return kiln_strdup(v);
    }
    const char *home = getenv("HOME");
    return kiln_asprintf("%s/%s", home ? home : "/", rel);
}

/* A key from the credentials file [name], else from the config file ([profile name], or
 * [default] for the default profile). */
static int
profile_get(const char *profile, const char *key, bool credentials_file, char **ret,
            struct kiln_error *err)
{
    *ret = NULL;
    if (credentials_file) {
        _cleanup_free_ char *cpath = home_path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
        return kiln_aws_ini_get(cpath, profile, key, ret, err);
    }
    _cleanup_free_ char *path = home_path("AWS_CONFIG_FILE", ".aws/config");
    _cleanup_free_ char *section = strcmp(profile, "default") == 0
                                       ? kiln_strdup("default")
                                       : kiln_asprintf("profile %s", profile);
    int r = kiln_aws_ini_get(path, section, key, ret, err);
    if (r == 0 && !*ret && strcmp(profile, "default") == 0)
        r = kiln_aws_ini_get(path, "profile default", key, ret, err);
    return r;
}

static int
static_keys(const char *profile, bool credentials_file, struct kiln_aws_credentials *ret,
            struct kiln_error *err)
{
    _cleanup_free_ char *ak = NULL, *sk = NULL, *tok = NULL;
    int r = profile_get(profile, "aws_access_key_id", credentials_file, &ak, err);
    if (r == 0)
        r = profile_get(profile, "aws_secret_access_key", credentials_file, &sk, err);
    if (r == 0)
        r = profile_get(profile, "aws_session_token", credentials_file, &tok, err);
    if (r < 0)
        return r;
    if (!ak || !sk || !*ak || !*sk)
        return 0;
    ret->access_key_id = TAKE_PTR(ak);
    ret->secret_access_key = TAKE_PTR(sk);
    ret->session_token = tok && *tok ? TAKE_PTR(tok) : NULL;
    ret->expiration = 0;
    return 1;
}

static int imds_fetch(struct kiln_aws_credentials_provider *p, struct kiln_aws_credentials *ret,
                      struct kiln_error *err);

static int
env_keys(struct kiln_aws_credentials *ret)
{
    const char *ak = getenv("AWS_ACCESS_KEY_ID");
    const char *sk = getenv("AWS_SECRET_ACCESS_KEY");
    if (!ak || !sk || !*ak || !*sk)
        return 0;
    const char *tok = getenv("AWS_SESSION_TOKEN");
    if (!tok || !*tok)
        tok = getenv("AWS_SECURITY_TOKEN");
    ret->access_key_id = kiln_strdup(ak);
    ret->secret_access_key = kiln_strdup(sk);
    ret->session_token = tok && *tok ? kiln_strdup(tok) : NULL;
    ret->expiration = 0;
    return 1;
}

static char *
sts_region(struct kiln_aws_credentials_provider *p, const char *profile)
{
    if (p->region)
        return kiln_strdup(p->region);
    const char *r = getenv("AWS_REGION");
    if (!r || !*r)
        r = getenv("AWS_DEFAULT_REGION");
    if (r && *r)
        return kiln_strdup(r);
    char *v = NULL;
    profile_get(profile, "region", false, &v, NULL);
    return v ? v : kiln_strdup("us-east-1");
}

static int resolve_profile(struct kiln_aws_credentials_provider *p, const char *profile,
                           unsigned depth, struct kiln_aws_credentials *ret,
                           struct kiln_error *err);

static int
assume_role(struct kiln_aws_credentials_provider *p, const char *profile, const char *role_arn,
            unsigned depth, struct kiln_aws_credentials *ret, struct kiln_error *err)
{
    if (depth >= MAX_ROLE_CHAIN)
        return kiln_error_set(err, -KILN_E_LIMIT, "profile %s: role chain deeper than %d "
                                                  "(source_profile loop?)", profile,
                              MAX_ROLE_CHAIN);
    _cleanup_free_ char *source = NULL, *cred_source = NULL, *session = NULL, *ext = NULL,
                        *dur = NULL;
    profile_get(profile, "source_profile", false, &source, NULL);
    profile_get(profile, "credential_source", false, &cred_source, NULL);
    profile_get(profile, "role_session_name", false, &session, NULL);
    profile_get(profile, "external_id", false, &ext, NULL);
    profile_get(profile, "duration_seconds", false, &dur, NULL);
    struct kiln_aws_credentials src = {0};
    int r;
    if (source) {
        /* A source profile's own keys, not its role, when it names itself (CLI rule). */
        if (strcmp(source, profile) == 0) {
            r = static_keys(source, true, &src, err);
            if (r == 0)
                r = static_keys(source, false, &src, err);
            if (r == 0)
                r = kiln_error_set(err, -ENOENT, "profile %s: no keys", source);
        } else {
            r = resolve_profile(p, source, depth + 1, &src, err);
        }
    } else if (cred_source && strcmp(cred_source, "Environment") == 0) {
        r = env_keys(&src) ? 0 : kiln_error_set(err, -ENOENT, "profile %s: credential_source "
                                                              "Environment, but no keys in the "
                                                              "environment", profile);
    } else if (cred_source && strcmp(cred_source, "Ec2InstanceMetadata") == 0) {
        r = imds_fetch(p, &src, err);
    } else {
        return kiln_error_set(err, -KILN_E_INVALID, "profile %s: role_arn without "
                                                    "source_profile or credential_source",
                              profile);
    }
    if (r < 0)
        return kiln_error_prefix(err, r, "profile %s: source credentials", profile);

    _cleanup_free_ char *region = sts_region(p, profile);
    struct kiln_aws_client_config cfg = {.region = region, .endpoint_url = p->endpoint_url,
                                         .credentials = &src, .clock = p->clock, .budget = 30};
    struct kiln_aws_client *c = NULL;
    r = kiln_aws_client_new(&cfg, &c, err);
    if (r == 0) {
        _cleanup_free_ char *default_session = kiln_asprintf("kiln-%lld",
                                                             (long long)now_of(p));
        struct kiln_sts_assume_role_request req = {
            .role_arn = role_arn, .session_name = session ? session : default_session,
            .external_id = ext};
        if (dur) {
            char *end;
            unsigned long d = strtoul(dur, &end, 10);
            if (*end == 0 && d >= 900 && d <= 43200)
                req.duration_seconds = (unsigned)d;
        }
        r = kiln_sts_assume_role(c, &req, ret, err);
    }
    kiln_aws_client_free(c);
    kiln_aws_credentials_clear(&src);
    return r;
}

static int
resolve_profile(struct kiln_aws_credentials_provider *p, const char *profile, unsigned depth,
                struct kiln_aws_credentials *ret, struct kiln_error *err)
{
    _cleanup_free_ char *role_arn = NULL;
    int r = profile_get(profile, "role_arn", false, &role_arn, err);
    if (r < 0)
        return r;
    if (role_arn) {
        r = assume_role(p, profile, role_arn, depth, ret, err);
        p->source = "assume-role";
        return r;
    }
    r = static_keys(profile, true, ret, err);
    if (r > 0) {
        p->source = "shared-credentials-file";
        return 0;
    }
    if (r == 0)
        r = static_keys(profile, false, ret, err);
    if (r > 0) {
        p->source = "config-file";
        return 0;
    }
    return r < 0 ? r : -ENOENT;
}

/* --- IMDSv2 ------------------------------------------------------------------------------ */

static size_t
imds_body(char *data, size_t size, size_t n, void *userdata)
{
    struct kiln_buf *b = userdata;
    if (b->len + size * n > 64 * 1024)
        return 0;
    kiln_buf_append(b, data, size * n);
    return size * n;
}

char *
kiln_aws_imds_endpoint(void)
{
    const char *dis = getenv("AWS_EC2_METADATA_DISABLED");
    if (dis && strcasecmp(dis, "true") == 0)
        return NULL;
    const char *ep = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    char *base = kiln_strdup(ep && *ep ? ep : "http://169.254.169.254");
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        base[--bl] = 0;
    return base;
}

int
kiln_aws_imds_request(const char *base, const char *method, const char *path, const char *token,
                      long timeout_ms, struct kiln_buf *out, struct kiln_error *err)
{
    CURL *e = curl_easy_init();
    if (!e)
        abort();
    _cleanup_free_ char *url = kiln_asprintf("%s%s", base, path);
    struct curl_slist *h = NULL;
    _cleanup_free_ char *tok = token ? kiln_asprintf("X-aws-ec2-metadata-token: %s", token) : NULL;
    if (tok)
        h = curl_slist_append(h, tok);
    if (strcmp(method, "PUT") == 0) {
        h = curl_slist_append(h, "X-aws-ec2-metadata-token-ttl-seconds: 21600");
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
    }
    kiln_buf_reset(out);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, imds_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
    /* No proxy for the link-local metadata service. */
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    CURLcode cc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    if (cc != CURLE_OK)
        return kiln_error_set(err, -EHOSTUNREACH, "instance metadata %s %s: %s", method, path,
                              curl_easy_strerror(cc));
    if (status != 200)
        return kiln_error_set(err, status == 404 ? -ENOENT : -KILN_E_REMOTE,
                              "instance metadata %s %s: HTTP %ld", method, path, status);
    return 0;
}

static int
imds_fetch(struct kiln_aws_credentials_provider *p, struct kiln_aws_credentials *ret,
           struct kiln_error *err)
{
    _cleanup_free_ char *base = kiln_aws_imds_endpoint();
    if (!base)
        return kiln_error_set(err, -ENOENT,
                              "instance metadata is disabled "
                              "(AWS_EC2_METADATA_DISABLED)");
    _cleanup_buf_ struct kiln_buf b;
    kiln_buf_init(&b);
    int r =
        kiln_aws_imds_request(base, "PUT", "/latest/api/token", NULL, p->imds_timeout_ms, &b, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *token = kiln_strndup(b.data, strcspn(b.data, "\r\n"));
    r = kiln_aws_imds_request(base, "GET", "/latest/meta-data/iam/security-credentials/", token,
                              p->imds_timeout_ms, &b, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *role = kiln_strndup(b.data, strcspn(b.data, "\r\n"));
    if (!*role || strchr(role, '/') || strchr(role, '?'))
        return kiln_error_set(err, -KILN_E_PARSE, "instance metadata: bad role name");
    _cleanup_free_ char *path =
        kiln_asprintf("/latest/meta-data/iam/security-credentials/%s", role);
    r = kiln_aws_imds_request(base, "GET", path, token, p->imds_timeout_ms, &b, err);
    if (r < 0)
        return r;
    _cleanup_json_ json_t *j = NULL;
    r = kiln_json_parse(b.data, b.len, 64 * 1024, "instance metadata credentials", &j, err);
    if (r < 0)
        return r;
    const char *code = kiln_json_get_str(j, "Code");
    const char *ak = kiln_json_get_str(j, "AccessKeyId");
    const char *sk = kiln_json_get_str(j, "SecretAccessKey");
    const char *tok = kiln_json_get_str(j, "Token");
    const char *exp = kiln_json_get_str(j, "Expiration");
    if (code && strcmp(code, "Success") != 0)
        return kiln_error_set(err, -KILN_E_REMOTE, "instance metadata credentials: %s", code);
    if (!ak || !sk || !tok || !exp || kiln_aws_parse_time(exp) < 0)
        return kiln_error_set(err, -KILN_E_PARSE, "instance metadata credentials are "
                                                  "incomplete");
    ret->access_key_id = kiln_strdup(ak);
    ret->secret_access_key = kiln_strdup(sk);
    ret->session_token = kiln_strdup(tok);
    ret->expiration = kiln_aws_parse_time(exp);
    return 0;
}

/* --- the chain ----------------------------------------------------------------------------- */

static int
resolve(struct kiln_aws_credentials_provider *p, struct kiln_aws_credentials *ret,
        struct kiln_error *err)
{
    if (!p->profile_explicit && env_keys(ret)) {
        p->source = "environment";
        return 0;
    }
    struct kiln_error perr = {0};
    int r = resolve_profile(p, p->profile, 0, ret, &perr);
    if (r == 0)
        return 0;
    if (r != -ENOENT) {
        if (err)
            *err = perr;
        return r;
    }
    if (p->profile_explicit || getenv("AWS_PROFILE"))
        return kiln_error_set(err, -ENOENT, "profile %s has no credentials", p->profile);
    struct kiln_error ierr = {0};
    r = imds_fetch(p, ret, &ierr);
    if (r == 0) {
        p->source = "imds";
        return 0;
    }
    return kiln_error_set(err, -ENOENT,
                          "no AWS credentials: none in the environment, none for profile %s in "
                          "the shared files, and instance metadata failed (%s)",
                          p->profile, ierr.message);
}

int
kiln_aws_credentials_provider_get(struct kiln_aws_credentials_provider *p,
                                  struct kiln_aws_credentials *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    time_t now = now_of(p);
    bool valid = p->cached.access_key_id &&
                 (p->cached.expiration == 0 || p->cached.expiration - REFRESH_MARGIN > now);
    if (!valid) {
        struct kiln_aws_credentials fresh = {0};
        struct kiln_error rerr = {0};
        int r = resolve(p, &fresh, &rerr);
        if (r < 0) {
            /* Still-valid old credentials beat none while the source is briefly down. */
            if (p->cached.access_key_id && p->cached.expiration > now) {
                kiln_debug("aws credentials: refresh failed, using cached ones until expiry");
            } else {
                if (err && err->code == 0)
                    *err = rerr;
                return r;
            }
        } else {
            kiln_aws_credentials_clear(&p->cached);
            p->cached = fresh;
            kiln_debug("aws credentials from %s", p->source);
        }
    }
    kiln_aws_credentials_copy(ret, &p->cached);
    return 0;
}
