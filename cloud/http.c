/* The AWS transport over libcurl: signing, a multi handle for parallel transfers (and its
 * connection cache for reuse across calls), retries with full-jitter backoff inside a time
 * budget, bounded responses and AWS error parsing. */
#include "cloud/http.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cloud/credentials.h"
#include "cloud/sigv4.h"
#include "cloud/xml.h"
#include "common/hash.h"
#include "common/json.h"
#include "common/log.h"

struct kiln_aws_client {
    char *region;
    char *endpoint_url;
    struct kiln_aws_credentials_provider *provider;
    struct kiln_aws_credentials creds;
    unsigned max_attempts;
    double budget;
    unsigned backoff_base_ms;
    unsigned backoff_cap_ms;
    unsigned max_parallel;
    size_t max_response;
    time_t (*clock)(void);
    const volatile int *cancel;
    CURLM *multi;
    struct kiln_aws_stats stats;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static double
mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
kiln_aws_client_new(const struct kiln_aws_client_config *cfg, struct kiln_aws_client **ret,
                    struct kiln_error *err)
{
    *ret = NULL;
    if (!cfg->region || !*cfg->region)
        return kiln_error_set(err, -KILN_E_INVALID, "AWS client: no region");
    if (!cfg->provider && (!cfg->credentials || !cfg->credentials->access_key_id))
        return kiln_error_set(err, -KILN_E_INVALID, "AWS client: no credentials");
    if (cfg->endpoint_url && strncmp(cfg->endpoint_url, "http://", 7) != 0 &&
        strncmp(cfg->endpoint_url, "https://", 8) != 0)
        return kiln_error_set(err, -KILN_E_INVALID,
                              "AWS client: endpoint URL %s is not http:// or https://",
                              cfg->endpoint_url);
    pthread_once(&curl_once, curl_init_once);
    struct kiln_aws_client *c = kiln_new(struct kiln_aws_client, 1);
    c->region = kiln_strdup(cfg->region);
    if (cfg->endpoint_url) {
        c->endpoint_url = kiln_strdup(cfg->endpoint_url);
        size_t l = strlen(c->endpoint_url);
        while (l > 0 && c->endpoint_url[l - 1] == '/')
            c->endpoint_url[--l] = 0;
    }
    c->provider = cfg->provider;
    if (!c->provider)
        kiln_aws_credentials_copy(&c->creds, cfg->credentials);
    c->max_attempts = cfg->max_attempts ? cfg->max_attempts : 8;
    c->budget = cfg->budget > 0 ? cfg->budget : 120;
    c->backoff_base_ms = cfg->backoff_base_ms ? cfg->backoff_base_ms : 100;
    c->backoff_cap_ms = cfg->backoff_cap_ms ? cfg->backoff_cap_ms : 10000;
    c->max_parallel = cfg->max_parallel ? cfg->max_parallel : 8;
    c->max_response = cfg->max_response ? cfg->max_response : KILN_AWS_MAX_RESPONSE;
    c->clock = cfg->clock;
    c->cancel = cfg->cancel;
    c->multi = curl_multi_init();
    if (!c->multi)
        abort();
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c->max_parallel);
    *ret = c;
    return 0;
}

void
kiln_aws_client_free(struct kiln_aws_client *c)
{
    if (!c)
        return;
    curl_multi_cleanup(c->multi);
    kiln_aws_credentials_clear(&c->creds);
    free(c->region);
    free(c->endpoint_url);
    free(c);
}

const char *
kiln_aws_client_region(const struct kiln_aws_client *c)
{
    return c->region;
}

time_t
kiln_aws_client_now(const struct kiln_aws_client *c)
{
    return c->clock ? c->clock() : time(NULL);
}

double
kiln_aws_client_set_budget(struct kiln_aws_client *c, double budget)
{
    double old = c->budget;
    if (budget > 0)
        c->budget = budget;
    return old;
}

void
kiln_aws_client_stats(const struct kiln_aws_client *c, struct kiln_aws_stats *ret)
{
    *ret = c->stats;
}

char *
kiln_aws_client_endpoint(const struct kiln_aws_client *c, const char *service)
{
    if (c->endpoint_url)
        return kiln_strdup(c->endpoint_url);
    /* STS has regional endpoints; the global one is kept for us-east-1 as the CLI does. */
    if (strcmp(service, "sts") == 0 && strcmp(c->region, "us-east-1") == 0)
        return kiln_strdup("https://sts.amazonaws.com");
    if (strcmp(service, "s3") == 0 && strcmp(c->region, "us-east-1") == 0)
        return kiln_strdup("https://s3.amazonaws.com");
    const char *suffix = strncmp(c->region, "cn-", 3) == 0 ? "amazonaws.com.cn" : "amazonaws.com";
    return kiln_asprintf("https://%s.%s.%s", service, c->region, suffix);
}

int
kiln_aws_client_credentials(struct kiln_aws_client *c, struct kiln_aws_credentials *ret,
                            struct kiln_error *err)
{
    if (c->provider)
        return kiln_aws_credentials_provider_get(c->provider, ret, err);
    kiln_aws_credentials_copy(ret, &c->creds);
    return 0;
}

void
kiln_aws_request_clear(struct kiln_aws_request *r)
{
    if (r)
        kiln_aws_headers_clear(&r->headers);
}

void
kiln_aws_response_clear(struct kiln_aws_response *r)
{
    if (!r)
        return;
    kiln_aws_headers_clear(&r->headers);
    kiln_buf_clear(&r->body);
    free(r->request_id);
    memset(r, 0, sizeof(*r));
}

/* --- errors ------------------------------------------------------------------------------ */

bool
kiln_aws_code_is_throttling(const char *code)
{
    static const char *const codes[] = {
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
        "TooManyRequestsException", "ProvisionedThroughputExceededException",
        "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
        "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
        "EC2ThrottledException"};
    if (!code)
        return false;
    for (size_t i = 0; i < ARRAY_SIZE(codes); i++)
        if (strcmp(code, codes[i]) == 0)
            return true;
    return false;
}

bool
kiln_aws_status_is_retryable(long status, const char *code)
{
    static const char *const transient[] = {"RequestTimeout", "RequestTimeoutException",
                                            "InternalError", "InternalFailure",
                                            "ServiceUnavailable", "IDPCommunicationError",
                                            "InternalServerException"};
    if (kiln_aws_code_is_throttling(code))
        return true;
    if (code)
        for (size_t i = 0; i < ARRAY_SIZE(transient); i++)
            if (strcmp(code, transient[i]) == 0)
                return true;
    return status == 429 || status >= 500;
}

static void
copy_trunc(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

void
kiln_aws_parse_error(long status, const struct kiln_aws_headers *headers, const char *body,
                     size_t len, struct kiln_error *err, char **ret_request_id)
{
    _cleanup_free_ char *code = NULL, *message = NULL, *request_id = NULL;
    const char *hid = headers ? kiln_aws_headers_get(headers, "x-amzn-RequestId") : NULL;
    if (!hid && headers)
        hid = kiln_aws_headers_get(headers, "x-amz-request-id");
    if (hid)
        request_id = kiln_strdup(hid);

    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
        i++;
    if (i < len && body[i] == '<') {
        _cleanup_xml_ xmlDoc *doc = NULL;
        if (kiln_aws_xml_parse(body, len, &doc, NULL) == 0) {
            xmlNode *root = kiln_aws_xml_root(doc);
            /* EC2: <Response><Errors><Error>; STS/IAM: <ErrorResponse><Error>; S3: <Error>. */
            xmlNode *e = kiln_aws_xml_path(root, "Errors/Error");
            if (!e)
                e = kiln_aws_xml_child(root, "Error");
            if (!e && strcmp((const char *)root->name, "Error") == 0)
                e = root;
            if (e) {
                code = kiln_aws_xml_text(e, "Code");
                message = kiln_aws_xml_text(e, "Message");
            }
            if (!request_id) {
                request_id = kiln_aws_xml_text(root, "RequestID");
                if (!request_id)
                    request_id = kiln_aws_xml_text(root, "RequestId");
                if (!request_id && e)
                    request_id = kiln_aws_xml_text(e, "RequestId");
            }
        }
    } else if (i < len && body[i] == '{') {
        _cleanup_json_ json_t *j = NULL;
        if (kiln_json_parse(body, len, 1 << 20, "error response", &j, NULL) == 0 &&
            json_is_object(j)) {
            const char *t = kiln_json_get_str(j, "__type");
            if (!t)
                t = kiln_json_get_str(j, "code");
            if (!t)
                t = kiln_json_get_str(j, "Code");
            if (t) {
                /* "aws.protocoltests#ValidationException" or "Name:http://..." */
                const char *hash = strrchr(t, '#');
                if (hash)
                    t = hash + 1;
                code = kiln_strndup(t, strcspn(t, ":"));
            }
            const char *m = kiln_json_get_str(j, "message");
            if (!m)
                m = kiln_json_get_str(j, "Message");
            if (m)
                message = kiln_strdup(m);
        }
    }
    /* REST-JSON: the x-amzn-ErrorType header wins over the body. Both may carry a namespace
     * ("aws.protocoltests.restjson#FooError") and a URI suffix (":http://..."). */
    const char *htype = headers ? kiln_aws_headers_get(headers, "x-amzn-ErrorType") : NULL;
    if (htype && *htype) {
        const char *t = htype;
        const char *hash = strchr(t, '#'), *colon = strchr(t, ':');
        if (hash && (!colon || hash < colon))
            t = hash + 1;
        free(code);
        code = kiln_strndup(t, strcspn(t, ":"));
    }
    if (!code) {
        /* Bodiless errors (HEAD, some 5xx): name the status. */
        static const struct {
            long status;
            const char *code;
        } by_status[] = {{400, "BadRequest"},   {403, "Forbidden"},
                         {404, "NotFound"},     {409, "Conflict"},
                         {429, "TooManyRequestsException"},
                         {500, "InternalError"}, {503, "ServiceUnavailable"}};
        for (size_t k = 0; k < ARRAY_SIZE(by_status); k++)
            if (by_status[k].status == status)
                code = kiln_strdup(by_status[k].code);
        if (!code)
            code = kiln_asprintf("HTTP%ld", status);
    }
    if (err && err->code == 0) {
        kiln_error_set(err, -KILN_E_REMOTE, "%s (HTTP %ld): %s%s%s", code, status,
                       message ? message : "no message",
                       request_id ? ", request id " : "", request_id ? request_id : "");
        copy_trunc(err->cause, sizeof(err->cause), code);
        err->retryable = kiln_aws_status_is_retryable(status, code);
    }
    if (ret_request_id)
        *ret_request_id = TAKE_PTR(request_id);
}

unsigned
kiln_aws_backoff_ms(unsigned attempt, unsigned base_ms, unsigned cap_ms)
{
    unsigned long long ceil = base_ms;
    for (unsigned i = 0; i < attempt && ceil < cap_ms; i++)
        ceil *= 2;
    if (ceil > cap_ms)
        ceil = cap_ms;
    unsigned r = 0;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r))
        r = (unsigned)rand();
    return (unsigned)(r % (ceil + 1));
}

char *
kiln_aws_idempotency_token(void)
{
    uint8_t b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        /* Only uniqueness matters here; fall back on the clock and the PRNG. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        srand((unsigned)(ts.tv_nsec ^ ts.tv_sec ^ getpid()));
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (uint8_t)rand();
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    return kiln_asprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
                         b[11], b[12], b[13], b[14], b[15]);
}

/* --- redaction --------------------------------------------------------------------------- */

static const char *const secret_keys[] = {
    "Signature=", "X-Amz-Signature=", "X-Amz-Security-Token=", "X-Amz-Credential=",
    "Credential=", "x-amz-security-token:", "x-amz-security-token: ", "aws_secret_access_key",
    "aws_session_token", "\"SecretAccessKey\"", "\"SessionToken\"", "\"Token\"",
    "<SecretAccessKey>", "<SessionToken>", "\"secretAccessKey\"", "\"sessionToken\"",
    "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "Authorization:", "Authorization: "};

char *
kiln_aws_redact(const char *text)
{
    if (!text)
        return kiln_strdup("");
    struct kiln_buf b;
    kiln_buf_init(&b);
    const char *p = text;
    while (*p) {
        size_t best = 0;
        for (size_t i = 0; i < ARRAY_SIZE(secret_keys); i++) {
            size_t l = strlen(secret_keys[i]);
            if (strncasecmp(p, secret_keys[i], l) == 0 && l > best)
                best = l;
        }
        if (!best) {
            kiln_buf_append_char(&b, *p++);
            continue;
        }
        kiln_buf_append(&b, p, best);
        p += best;
        /* Skip separators between the key and its value (" = ", ": ", "\"...\":"). */
        while (*p == ' ' || *p == '=' || *p == ':' || *p == '"' || *p == '\t')
            kiln_buf_append_char(&b, *p++);
        bool authz = strncasecmp(p - best, "Authorization", 13) == 0;
        /* The value runs to a delimiter; an Authorization header to the end of the line. */
        const char *stop = authz ? "\r\n" : "&,\" \t\r\n<;";
        size_t vl = strcspn(p, stop);
        if (vl > 0) {
            kiln_buf_append_str(&b, "REDACTED");
            p += vl;
        }
    }
    return kiln_buf_steal(&b);
}

/* --- transfers --------------------------------------------------------------------------- */

struct xfer {
    const struct kiln_aws_request *req;
    struct kiln_aws_response *resp;
    struct kiln_aws_client *c;
    CURL *easy;
    struct curl_slist *hdrs;
    char *url;
    char errbuf[CURL_ERROR_SIZE];
    unsigned attempt;
    double deadline;
    double next_try;
    bool active;
    bool too_big;
    bool to_file;
    int write_errno;
    size_t written;
    /* The last error AWS itself returned for this request: when the time budget then cuts an
     * attempt short, that (e.g. SlowDown) is what a person needs to see, not the timeout. */
    struct kiln_error last_aws;
};

static size_t
on_header(char *data, size_t size, size_t n, void *userdata)
{
    struct xfer *x = userdata;
    size_t len = size * n;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new response (after 100-continue or a redirect): forget earlier headers. */
        kiln_aws_headers_clear(&x->resp->headers);
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return len;
    _cleanup_free_ char *name = kiln_strndup(data, (size_t)(colon - data));
    const char *v = colon + 1;
    const char *end = data + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    _cleanup_free_ char *value = kiln_strndup(v, (size_t)(end - v));
    if (x->resp->headers.n < 256)
        kiln_aws_headers_add(&x->resp->headers, name, value);
    return len;
}

static size_t
on_body(char *data, size_t size, size_t n, void *userdata)
{
    struct xfer *x = userdata;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (x->req->to_fd && status >= 200 && status < 300) {
        x->to_file = true;
        size_t off = 0;
        while (off < len) {
            ssize_t w = write(x->req->out_fd, data + off, len - off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                x->write_errno = errno;
                return 0;
            }
            off += (size_t)w;
        }
        x->written += len;
        return len;
    }
    if (x->resp->body.len + len > x->c->max_response) {
        x->too_big = true;
        return 0;
    }
    kiln_buf_append(&x->resp->body, data, len);
    return len;
}

static int
xfer_prepare(struct xfer *x, struct kiln_error *err)
{
    struct kiln_aws_client *c = x->c;
    const struct kiln_aws_request *req = x->req;
    _cleanup_free_ char *endpoint = kiln_aws_client_endpoint(c, req->service);
    const char *host = strstr(endpoint, "://") + 3;
    const char *path = req->path && *req->path ? req->path : "/";

    struct kiln_aws_credentials creds = {0};
    int r = kiln_aws_client_credentials(c, &creds, err);
    if (r < 0)
        return r;
    struct kiln_aws_headers h = {0};
    kiln_aws_headers_add(&h, "Host", host);
    for (size_t i = 0; i < req->headers.n; i++)
        kiln_aws_headers_add(&h, req->headers.v[i].name, req->headers.v[i].value);
    struct kiln_sigv4_request sreq = {req->method, path, req->query, &h, req->body,
                                      req->body_len,
                                      req->unsigned_payload ? KILN_SIGV4_UNSIGNED_PAYLOAD : NULL};
    struct kiln_sigv4_params p = {.creds = &creds, .region = c->region, .service = req->service,
                                  .now = kiln_aws_client_now(c), .no_path_normalize = req->s3,
                                  .no_path_encode = req->s3,
                                  .content_sha256_header = req->s3 || req->unsigned_payload};
    struct kiln_sigv4_result res;
    r = kiln_sigv4_sign_headers(&sreq, &p, &res, err);
    kiln_aws_credentials_clear(&creds);
    if (r < 0) {
        kiln_aws_headers_clear(&h);
        return r;
    }
    kiln_sigv4_result_clear(&res);

    free(x->url);
    x->url = kiln_asprintf("%s%s%s%s", endpoint, path, req->query && *req->query ? "?" : "",
                           req->query ? req->query : "");
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    for (size_t i = 0; i < h.n; i++) {
        if (strcasecmp(h.v[i].name, "Host") == 0)
            continue;
        _cleanup_free_ char *line = kiln_asprintf("%s: %s", h.v[i].name, h.v[i].value);
        x->hdrs = curl_slist_append(x->hdrs, line);
    }
    /* libcurl would add these; AWS does not want them unsigned. */
    x->hdrs = curl_slist_append(x->hdrs, "Expect:");
    if (!kiln_aws_headers_get(&h, "Content-Type"))
        x->hdrs = curl_slist_append(x->hdrs, "Content-Type:");
    kiln_aws_headers_clear(&h);

    if (!x->easy) {
        x->easy = curl_easy_init();
        if (!x->easy)
            abort();
    } else {
        curl_easy_reset(x->easy);
    }
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    double left = x->deadline - mono_now();
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(left > 0.001 ? left * 1000 : 1));
    curl_easy_setopt(e, CURLOPT_USERAGENT, "kiln/" KILN_VERSION);
    if (req->head) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (req->body || strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body ? req->body : "");
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "POST") != 0 && !req->head)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);

    kiln_aws_headers_clear(&x->resp->headers);
    kiln_buf_reset(&x->resp->body);
    x->too_big = false;
    x->to_file = false;
    x->write_errno = 0;
    x->written = 0;
    x->errbuf[0] = 0;
    if (req->to_fd) {
        if (ftruncate(req->out_fd, 0) < 0 || lseek(req->out_fd, 0, SEEK_SET) < 0)
            return kiln_error_errno(err, -errno, "rewinding the output file");
    }
    return 0;
}

static bool
content_type_ok(const struct kiln_aws_response *resp, enum kiln_aws_body_kind kind)
{
    if (kind == KILN_AWS_BODY_ANY)
        return true;
    const char *ct = kiln_aws_headers_get(&resp->headers, "Content-Type");
    if (!ct) /* S3 omits it on some bodies: accept, the parser judges. */
        return true;
    if (kind == KILN_AWS_BODY_XML)
        return strstr(ct, "xml") != NULL;
    return strstr(ct, "json") != NULL;
}

/* Decide what a finished attempt means: 0 done, 1 retry, <0 failed. */
static int
xfer_finish(struct xfer *x, CURLcode cc, struct kiln_error *aerr)
{
    struct kiln_aws_response *resp = x->resp;
    const struct kiln_aws_request *req = x->req;
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    resp->status = status;
    resp->attempts = x->attempt;
    if (x->too_big)
        return kiln_error_set(aerr, -KILN_E_LIMIT,
                              "%s %s: response larger than %zu bytes", req->method, req->service,
                              x->c->max_response);
    if (x->write_errno)
        return kiln_error_errno(aerr, -x->write_errno, "writing the response body");
    if (cc != CURLE_OK) {
        int code = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -ECONNRESET;
        if (cc == CURLE_COULDNT_CONNECT)
            code = -ECONNREFUSED;
        kiln_error_set(aerr, code, "%s %s: %s", req->method, req->service,
                       x->errbuf[0] ? x->errbuf : curl_easy_strerror(cc));
        kiln_error_set_cause(aerr, "%s", curl_easy_strerror(cc));
        aerr->retryable = cc == CURLE_COULDNT_CONNECT || cc == CURLE_SEND_ERROR ||
                          cc == CURLE_RECV_ERROR || cc == CURLE_GOT_NOTHING ||
                          cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_PARTIAL_FILE ||
                          cc == CURLE_COULDNT_RESOLVE_HOST || cc == CURLE_HTTP2 ||
                          cc == CURLE_HTTP2_STREAM;
        return aerr->retryable ? 1 : code;
    }
    const char *rid = kiln_aws_headers_get(&resp->headers, "x-amzn-RequestId");
    if (!rid)
        rid = kiln_aws_headers_get(&resp->headers, "x-amz-request-id");
    free(resp->request_id);
    resp->request_id = rid ? kiln_strdup(rid) : NULL;
    if (status >= 200 && status < 300) {
        if (!x->to_file && !req->head && !content_type_ok(resp, req->expect)) {
            const char *ct = kiln_aws_headers_get(&resp->headers, "Content-Type");
            return kiln_error_set(aerr, -KILN_E_PARSE,
                                  "%s %s: unexpected content type \"%s\" (wanted %s)",
                                  req->method, req->service, ct ? ct : "",
                                  req->expect == KILN_AWS_BODY_XML ? "XML" : "JSON");
        }
        return 0;
    }
    char *id = NULL;
    kiln_aws_parse_error(status, &resp->headers, resp->body.data, resp->body.len, aerr, &id);
    if (id) {
        free(resp->request_id);
        resp->request_id = id;
    }
    return aerr->retryable ? 1 : aerr->code;
}

static void
xfer_free(struct xfer *x)
{
    if (x->easy)
        curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->hdrs);
    free(x->url);
}

/* The transfer engine: up to `slots` requests in flight, new ones taken from feed as slots
 * free up (so reading the next block overlaps sending the others), each retried on its own
 * schedule inside its own time budget, finished ones handed to done. */
int
kiln_aws_call_stream(struct kiln_aws_client *c, size_t slots, kiln_aws_feed_fn feed,
                     kiln_aws_done_fn done, void *ctx, struct kiln_error *err)
{
    if (slots == 0)
        slots = c->max_parallel;
    struct xfer *xs = kiln_new(struct xfer, slots);
    struct kiln_aws_response *resps = kiln_new(struct kiln_aws_response, slots);
    bool *used = kiln_new(bool, slots);
    size_t in_use = 0, active = 0;
    bool exhausted = false, stopping = false, cancelled = false;
    int first_fail = 0;

    for (;;) {
        double now = mono_now();
        if (c->cancel && *c->cancel && !cancelled) {
            stopping = cancelled = true;
            if (!first_fail)
                first_fail = kiln_error_set(err, -ECANCELED, "AWS calls cancelled");
            /* Transfers in flight stop now: a hung peer must not hold a cancelled call for
             * the rest of its time budget. */
            for (size_t i = 0; i < slots; i++) {
                if (!used[i] || !xs[i].active)
                    continue;
                curl_multi_remove_handle(c->multi, xs[i].easy);
                xs[i].active = false;
                active--;
                struct kiln_error cerr = {0};
                kiln_error_set(&cerr, -ECANCELED, "%s %s: cancelled", xs[i].req->method,
                               xs[i].req->service);
                resps[i].attempts = xs[i].attempt;
                done(ctx, i, &resps[i], -ECANCELED, &cerr);
                kiln_aws_response_clear(&resps[i]);
                used[i] = false;
                in_use--;
            }
        }
        /* Fill free slots from the feed. */
        for (size_t i = 0; i < slots && !exhausted && !stopping; i++) {
            if (used[i])
                continue;
            const struct kiln_aws_request *req = NULL;
            struct kiln_error ferr = {0};
            int r = feed(ctx, i, &req, &ferr);
            if (r < 0) {
                if (!first_fail) {
                    first_fail = r;
                    if (err && !err->code)
                        *err = ferr;
                }
                stopping = true;
                break;
            }
            if (r == 0 || !req) {
                exhausted = true;
                break;
            }
            struct xfer *x = &xs[i];
            x->req = req;
            x->resp = &resps[i];
            x->c = c;
            x->attempt = 0;
            kiln_error_clear(&x->last_aws);
            x->deadline = now + c->budget;
            x->next_try = now;
            x->active = false;
            kiln_buf_init(&resps[i].body);
            used[i] = true;
            in_use++;
            c->stats.requests++;
        }
        /* Start (or restart) what is due. */
        for (size_t i = 0; i < slots; i++) {
            struct xfer *x = &xs[i];
            if (!used[i] || x->active || x->next_try > now)
                continue;
            struct kiln_error perr = {0};
            int r = stopping ? kiln_error_set(&perr, -ECANCELED, "cancelled") : 0;
            if (r == 0)
                r = xfer_prepare(x, &perr);
            if (r < 0) {
                resps[i].attempts = x->attempt;
                int dr = done(ctx, i, &resps[i], r, &perr);
                kiln_aws_response_clear(&resps[i]);
                used[i] = false;
                in_use--;
                if (!first_fail && dr < 0) {
                    first_fail = dr;
                    if (err && !err->code)
                        *err = perr;
                }
                stopping = stopping || dr < 0;
                continue;
            }
            x->attempt++;
            c->stats.attempts++;
            if (x->attempt > 1)
                c->stats.retries++;
            c->stats.bytes_sent += x->req->body_len;
            curl_multi_add_handle(c->multi, x->easy);
            x->active = true;
            active++;
        }
        if (in_use == 0 && (exhausted || stopping))
            break;

        int running = 0;
        curl_multi_perform(c->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(c->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            size_t i = slots;
            for (size_t k = 0; k < slots; k++)
                if (used[k] && xs[k].active && xs[k].easy == m->easy_handle)
                    i = k;
            if (i == slots)
                continue;
            struct xfer *x = &xs[i];
            CURLcode cc = m->data.result;
            curl_multi_remove_handle(c->multi, x->easy);
            x->active = false;
            active--;
            struct kiln_error aerr = {0};
            int r = xfer_finish(x, cc, &aerr);
            double t = mono_now();
            if (r == 1 && cc == CURLE_OK)
                x->last_aws = aerr;
            else if (r == 1 && cc == CURLE_OPERATION_TIMEDOUT && t >= x->deadline - 0.05 &&
                     x->last_aws.code)
                aerr = x->last_aws;
            if (r == 1 && x->attempt < c->max_attempts && !stopping) {
                unsigned ms = kiln_aws_backoff_ms(x->attempt - 1, c->backoff_base_ms,
                                                  c->backoff_cap_ms);
                if (t + ms / 1000.0 < x->deadline) {
                    kiln_debug("aws: %s %s attempt %u: %s; retrying in %u ms", x->req->method,
                               x->req->service, x->attempt, aerr.cause, ms);
                    x->next_try = t + ms / 1000.0;
                    continue;
                }
                kiln_error_prefix(&aerr, aerr.code, "gave up within the %.0f s time budget "
                                                    "after %u attempts", c->budget, x->attempt);
            } else if (r == 1) {
                kiln_error_prefix(&aerr, aerr.code, "gave up after %u attempts", x->attempt);
            }
            int result = r == 1 ? (aerr.code ? aerr.code : -KILN_E_REMOTE) : r;
            int dr = done(ctx, i, &resps[i], result, &aerr);
            kiln_aws_response_clear(&resps[i]);
            used[i] = false;
            in_use--;
            if (dr < 0) {
                if (!first_fail) {
                    first_fail = dr;
                    if (!aerr.code)
                        kiln_error_set(&aerr, dr, "%s %s: handling the response failed",
                                       x->req->method, x->req->service);
                    if (err && !err->code)
                        *err = aerr;
                }
                stopping = true;
            }
        }
        /* Sleep until network activity or the next due retry, at most 100 ms; no sleep when
         * a slot is free and the feed has more. */
        double wait = (!exhausted && !stopping && in_use < slots) ? 0 : 0.1;
        now = mono_now();
        for (size_t i = 0; i < slots; i++)
            if (used[i] && !xs[i].active && xs[i].next_try - now < wait)
                wait = xs[i].next_try - now;
        if (wait < 0)
            wait = 0;
        if (active > 0)
            curl_multi_poll(c->multi, NULL, 0, (int)(wait * 1000), NULL);
        else if (wait > 0)
            usleep((useconds_t)(wait * 1e6));
    }
    for (size_t i = 0; i < slots; i++) {
        if (xs[i].active)
            curl_multi_remove_handle(c->multi, xs[i].easy);
        xfer_free(&xs[i]);
        if (used[i])
            kiln_aws_response_clear(&resps[i]);
    }
    free(xs);
    free(resps);
    free(used);
    return first_fail;
}

struct many_ctx {
    const struct kiln_aws_request *reqs;
    struct kiln_aws_response *resps;
    struct kiln_error *errs;
    size_t n;
    size_t next;
    size_t *slot_index;
    bool stop_on_error;
};

static int
many_feed(void *ctx, size_t slot, const struct kiln_aws_request **req, struct kiln_error *err)
{
    struct many_ctx *m = ctx;
    if (m->next >= m->n)
        return 0;
    m->slot_index[slot] = m->next;
    *req = &m->reqs[m->next++];
    return 1;
}

static int
many_done(void *ctx, size_t slot, struct kiln_aws_response *resp, int result,
          struct kiln_error *xerr)
{
    struct many_ctx *m = ctx;
    size_t i = m->slot_index[slot];
    /* Move the response out: the engine clears its copy. */
    m->resps[i] = *resp;
    memset(resp, 0, sizeof(*resp));
    if (result < 0 && m->errs)
        m->errs[i] = *xerr;
    return result < 0 && m->stop_on_error ? result : 0;
}

int
kiln_aws_call_many(struct kiln_aws_client *c, const struct kiln_aws_request *reqs,
                   struct kiln_aws_response *resps, size_t n, bool stop_on_error,
                   struct kiln_error *errs, struct kiln_error *err)
{
    for (size_t i = 0; i < n; i++) {
        memset(&resps[i], 0, sizeof(resps[i]));
        kiln_buf_init(&resps[i].body);
    }
    size_t slots = n < c->max_parallel ? n : c->max_parallel;
    if (slots == 0)
        return 0;
    struct many_ctx m = {reqs, resps, errs, n, 0, kiln_new(size_t, slots), stop_on_error};
    struct kiln_error first = {0};
    int r = kiln_aws_call_stream(c, slots, many_feed, many_done, &m, &first);
    free(m.slot_index);
    /* Without stop_on_error failures do not stop the stream: report the first one. */
    if (r == 0 && errs)
        for (size_t i = 0; i < n && r == 0; i++)
            if (errs[i].code) {
                r = errs[i].code;
                first = errs[i];
            }
    if (r < 0) {
        if (err && !err->code)
            *err = first;
        /* Transfers never started count as cancelled. */
        for (size_t i = m.next; errs && i < n; i++)
            kiln_error_set(&errs[i], -ECANCELED, "not started: an earlier transfer failed");
    }
    return r;
}

int
kiln_aws_call(struct kiln_aws_client *c, const struct kiln_aws_request *req,
              struct kiln_aws_response *resp, struct kiln_error *err)
{
    return kiln_aws_call_many(c, req, resp, 1, true, NULL, err);
}
