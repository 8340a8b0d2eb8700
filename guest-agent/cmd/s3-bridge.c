/* S3Download/S3Upload transfers through cloud/'s S3 client, configured as the AWS CLI would be:
 *
 * - region: AWS_REGION, AWS_DEFAULT_REGION, the profile's `region` in the config file
 *   (AWS_CONFIG_FILE, profile AWS_PROFILE or default), then the instance's region from IMDSv2
 *   (what an agent in an EC2 guest has); us-east-1 as the last resort, as S3's global endpoint.
 * - endpoint: AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, then the profile's `endpoint_url`
 *   (none of them when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true); AWSTOE's --config has no
 *   endpoint setting, so there is none there either.
 * - credentials: the chain of cloud/credentials.h (environment, shared files with AssumeRole,
 *   IMDSv2 instance credentials).
 *
 * One client is kept for the process (connections are reused across objects); it is rebuilt
 * when a step hands a different cancel flag. Each call's time budget is the step's remaining
 * time, so a step's timeoutSeconds bounds every attempt and retry. */
#include "common/time.h"
#include "guest-agent/cmd/s3-bridge.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cloud/credentials.h"
#include "cloud/http.h"
#include "cloud/s3.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "guest-agent/s3hook.h"

/* Without a deadline a transfer may take as long as it needs (large objects, slow links). */
#define NO_DEADLINE_BUDGET (24.0 * 3600)
#define IMDS_TIMEOUT_MS 1000L

_Static_assert(sizeof(sig_atomic_t) == sizeof(int), "the client's cancel flag is an int");

struct bridge {
    bool resolved;
    char *region;
    char *endpoint; /* NULL: AWS */
    struct kiln_aws_credentials_provider *provider;
    struct kiln_aws_client *client;
    volatile sig_atomic_t *client_cancel; /* the flag the client was made with */
};

static struct bridge bridge;

static const char *
env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* A value of the active profile in the AWS config file, or NULL. */
static char *
profile_value(const char *key)
{
    const char *profile = env("AWS_PROFILE");
    if (!profile)
        profile = "default";
    _cleanup_free_ char *path = NULL;
    if (env("AWS_CONFIG_FILE"))
        path = kiln_strdup(env("AWS_CONFIG_FILE"));
    else if (env("HOME"))
        path = kiln_asprintf("%s/.aws/config", env("HOME"));
    else
        return NULL;
    _cleanup_free_ char *section = strcmp(profile, "default") == 0
                                       ? kiln_strdup("default")
                                       : kiln_asprintf("profile %s", profile);
    char *v = NULL;
    if (kiln_aws_ini_get(path, section, key, &v, NULL) < 0 || (v && !*v)) {
        free(v);
        return NULL;
    }
    return v;
}

/* The instance's region from IMDSv2 (token, then placement/region), or NULL. */
static char *
imds_region(void)
{
    _cleanup_free_ char *base = kiln_aws_imds_endpoint();
    if (!base)
        return NULL;
    _cleanup_buf_ struct kiln_buf b;
    kiln_buf_init(&b);
    if (kiln_aws_imds_request(base, "PUT", "/latest/api/token", NULL, IMDS_TIMEOUT_MS, &b, NULL) <
            0 ||
        b.len == 0)
        return NULL;
    _cleanup_free_ char *token = kiln_strndup(b.data, b.len);
    if (kiln_aws_imds_request(base, "GET", "/latest/meta-data/placement/region", token,
                              IMDS_TIMEOUT_MS, &b, NULL) < 0 ||
        b.len == 0 || b.len > 64)
        return NULL;
    return kiln_strndup(b.data, b.len);
}

static char *
resolve_region(void)
{
    if (env("AWS_REGION"))
        return kiln_strdup(env("AWS_REGION"));
    if (env("AWS_DEFAULT_REGION"))
        return kiln_strdup(env("AWS_DEFAULT_REGION"));
    char *r = profile_value("region");
    if (r)
        return r;
    if ((r = imds_region()))
        return r;
    kiln_debug("s3: no region configured; using us-east-1");
    return kiln_strdup("us-east-1");
}

static char *
resolve_endpoint(const char *service_var)
{
    const char *ignore = env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
    if (ignore && strcasecmp(ignore, "true") == 0)
        return NULL;
    if (env(service_var))
        return kiln_strdup(env(service_var));
    if (env("AWS_ENDPOINT_URL"))
        return kiln_strdup(env("AWS_ENDPOINT_URL"));
    return profile_value("endpoint_url");
}

static int
resolve(struct kiln_error *err)
{
    if (bridge.resolved)
        return 0;
    bridge.region = resolve_region();
    bridge.endpoint = resolve_endpoint("AWS_ENDPOINT_URL_S3");
    _cleanup_free_ char *sts = resolve_endpoint("AWS_ENDPOINT_URL_STS");
    struct kiln_aws_credentials_options co = {.region = bridge.region, .endpoint_url = sts};
    int r = kiln_aws_credentials_provider_new(&co, &bridge.provider, err);
    if (r < 0) {
        free(TAKE_PTR(bridge.region));
        free(TAKE_PTR(bridge.endpoint));
        return kiln_error_prefix(err, r, "AWS credentials");
    }
    kiln_debug("s3: region %s, endpoint %s", bridge.region,
               bridge.endpoint ? bridge.endpoint : "(AWS)");
    bridge.resolved = true;
    return 0;
}

static bool
cancelled(const struct kiln_s3_limits *l)
{
    return l && l->cancel && *l->cancel;
}

static bool
expired(const struct kiln_s3_limits *l)
{
    return l && l->deadline_ms >= 0 && kiln_now_ms() >= l->deadline_ms;
}

/* The client for this call, with its budget set to the time the step has left. */
static int
client_for(const struct kiln_s3_limits *l, struct kiln_aws_client **ret, struct kiln_error *err)
{
    if (cancelled(l))
        return kiln_error_set(err, -ECANCELED, "cancelled");
    if (expired(l))
        return kiln_error_set(err, -ETIMEDOUT,
                              "timed out (the step's timeoutSeconds has passed)");
    int r = resolve(err);
    if (r < 0)
        return r;
    volatile sig_atomic_t *cancel = l ? l->cancel : NULL;
    if (bridge.client && bridge.client_cancel != cancel) {
        kiln_aws_client_free(bridge.client);
        bridge.client = NULL;
    }
    if (!bridge.client) {
        struct kiln_aws_client_config cfg = {
            .region = bridge.region,
            .endpoint_url = bridge.endpoint,
            .provider = bridge.provider,
            .budget = NO_DEADLINE_BUDGET,
            .cancel = (const volatile int *)cancel,
        };
        r = kiln_aws_client_new(&cfg, &bridge.client, err);
        if (r < 0)
            return kiln_error_prefix(err, r, "AWS client");
        bridge.client_cancel = cancel;
    }
    double budget = NO_DEADLINE_BUDGET;
    if (l && l->deadline_ms >= 0)
        budget = (double)(l->deadline_ms - kiln_now_ms()) / 1000.0;
    kiln_aws_client_set_budget(bridge.client, budget > 0.001 ? budget : 0.001);
    *ret = bridge.client;
    return 0;
}

/* A failed call: cancellation and the step's deadline explain it better than the transport's
 * last error; otherwise pass the client's error (AWS code in cause, AWS message) on. */
static int
failed(int r, const struct kiln_error *cerr, const struct kiln_s3_limits *l,
       struct kiln_error *err)
{
    if (cancelled(l))
        return kiln_error_set(err, -ECANCELED, "cancelled");
    if (expired(l))
        return kiln_error_set(err, -ETIMEDOUT,
                              "timed out (the step's timeoutSeconds has passed): %s",
                              cerr->message);
    if (err && !err->code)
        *err = *cerr;
    return r;
}

static int
hook_download(void *userdata, const struct kiln_s3_location *src, const char *local_path,
              const struct kiln_s3_limits *limits, struct kiln_error *err)
{
    (void)userdata;
    struct kiln_aws_client *c = NULL;
    int r = client_for(limits, &c, err);
    if (r < 0)
        return r;
    struct kiln_s3_options o = {.expected_bucket_owner = src->expected_bucket_owner};
    struct kiln_error cerr = {0};
    r = kiln_s3_get_object_opts(c, src->bucket, src->key, local_path, &o, &cerr);
    if (r < 0 && strcmp(cerr.cause, "NoSuchKey") == 0)
        return -ENOENT; /* the module says which object */
    return r < 0 ? failed(r, &cerr, limits, err) : 0;
}

static int
hook_upload(void *userdata, const struct kiln_s3_location *dst, const char *local_path,
            const struct kiln_s3_limits *limits, struct kiln_error *err)
{
    (void)userdata;
    struct kiln_aws_client *c = NULL;
    int r = client_for(limits, &c, err);
    if (r < 0)
        return r;
    struct kiln_s3_options o = {.expected_bucket_owner = dst->expected_bucket_owner};
    struct kiln_error cerr = {0};
    /* Files above one part (16 MiB) go up as a parallel multipart upload, aborted on failure. */
    r = kiln_s3_upload_file_opts(c, dst->bucket, dst->key, local_path, 0, &o, &cerr);
    return r < 0 ? failed(r, &cerr, limits, err) : 0;
}

static int
hook_list(void *userdata, const struct kiln_s3_location *prefix, size_t max_keys,
          char ***ret_keys, const struct kiln_s3_limits *limits, struct kiln_error *err)
{
    (void)userdata;
    *ret_keys = NULL;
    struct kiln_aws_client *c = NULL;
    int r = client_for(limits, &c, err);
    if (r < 0)
        return r;
    char **keys = kiln_new(char *, 1);
    size_t n = 0;
    _cleanup_free_ char *token = NULL;
    /* Page by page, never more than max_keys in all. */
    while (n < max_keys) {
        size_t want = max_keys - n;
        struct kiln_s3_list_request req = {
            .prefix = prefix->key,
            .continuation_token = token,
            .max_keys = want < 1000 ? (unsigned)want : 1000,
            .expected_bucket_owner = prefix->expected_bucket_owner,
        };
        struct kiln_s3_list page;
        struct kiln_error cerr = {0};
        r = kiln_s3_list_objects(c, prefix->bucket, &req, &page, &cerr);
        if (r < 0) {
            kiln_strv_free(keys);
            return failed(r, &cerr, limits, err);
        }
        for (size_t i = 0; i < page.n && n < max_keys; i++) {
            keys = kiln_reallocarray(keys, n + 2, sizeof(*keys));
            keys[n++] = TAKE_PTR(page.v[i].key);
            keys[n] = NULL;
        }
        bool more = page.truncated && page.next_token &&
                    !(token && strcmp(token, page.next_token) == 0);
        free(token);
        token = more ? TAKE_PTR(page.next_token) : NULL;
        kiln_s3_list_clear(&page);
        if (!more)
            break;
        if (cancelled(limits) || expired(limits)) {
            kiln_strv_free(keys);
            struct kiln_error none = {0};
            return failed(-ECANCELED, &none, limits, err);
        }
    }
    *ret_keys = keys;
    return 0;
}

void
kiln_s3bridge_install(void)
{
    struct kiln_s3_hooks h = {
        .download = hook_download,
        .upload = hook_upload,
        .list = hook_list,
    };
    kiln_s3_set_hooks(&h);
}

void
kiln_s3bridge_uninstall(void)
{
    kiln_s3_set_hooks(NULL);
    kiln_aws_client_free(bridge.client);
    kiln_aws_credentials_provider_free(bridge.provider);
    free(bridge.region);
    free(bridge.endpoint);
    memset(&bridge, 0, sizeof(bridge));
}
