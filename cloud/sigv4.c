/* AWS Signature Version 4 signing (header and query-string forms). The rules follow the AWS
 * General Reference "Create a canonical request" and are checked case by case against AWS's
 * published test suites (tests/data/sigv4/). */
#include "cloud/sigv4.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/hash.h"

void
kiln_sigv4_result_clear(struct kiln_sigv4_result *r)
{
    if (!r)
        return;
    free(r->canonical_request);
    free(r->string_to_sign);
    free(r->authorization);
    free(r->query);
    memset(r, 0, sizeof(*r));
}

void
kiln_sigv4_format_time(time_t t, char buf[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* Remove "." and ".." segments and empty segments; keep a trailing slash. */
static char *
normalize_path(const char *path)
{
    size_t len = strlen(path);
    const char **segs = kiln_new(const char *, len + 1);
    size_t *lens = kiln_new(size_t, len + 1);
    size_t n = 0;
    const char *p = path;
    bool trailing = len > 0 && path[len - 1] == '/';
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *s = p;
        while (*p && *p != '/')
            p++;
        size_t l = (size_t)(p - s);
        if (l == 1 && s[0] == '.') {
            trailing = trailing || !*p;
            continue;
        }
        if (l == 2 && s[0] == '.' && s[1] == '.') {
            if (n > 0)
                n--;
            trailing = trailing || !*p;
            continue;
        }
        segs[n] = s;
        lens[n] = l;
        n++;
    }
    struct kiln_buf b;
    kiln_buf_init(&b);
    for (size_t i = 0; i < n; i++) {
        kiln_buf_append_char(&b, '/');
        kiln_buf_append(&b, segs[i], lens[i]);
    }
    if (n == 0 || trailing)
        kiln_buf_append_char(&b, '/');
    free(segs);
    free(lens);
    return kiln_buf_steal(&b);
}

char *
kiln_sigv4_canonical_path(const char *path, bool normalize, bool encode)
{
    if (!path || !*path)
        return kiln_strdup("/");
    _cleanup_free_ char *norm = normalize ? normalize_path(path) : kiln_strdup(path);
    if (!encode)
        return TAKE_PTR(norm);
    struct kiln_buf b;
    kiln_buf_init(&b);
    /* Every service but S3 encodes the (already encoded) path once more. */
    kiln_aws_uri_encode(&b, norm, strlen(norm), true);
    return kiln_buf_steal(&b);
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode (valid %XX only; '+' stays a plus, as AWS treats it), then encode strictly, so
 * that an already encoded query is not encoded twice. */
static char *
reencode(const char *s, size_t len)
{
    struct kiln_buf raw, out;
    kiln_buf_init(&raw);
    kiln_buf_init(&out);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            kiln_buf_append_char(&raw, (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
            i += 2;
        } else {
            kiln_buf_append_char(&raw, s[i]);
        }
    }
    kiln_aws_uri_encode(&out, raw.data, raw.len, false);
    kiln_buf_clear(&raw);
    return kiln_buf_steal(&out);
}

struct qparam {
    char *key;
    char *value;
};

static int
qparam_cmp(const void *a, const void *b)
{
    const struct qparam *x = a, *y = b;
    int r = strcmp(x->key, y->key);
    return r ? r : strcmp(x->value, y->value);
}

char *
kiln_sigv4_canonical_query(const char *query)
{
    if (!query || !*query)
        return kiln_strdup("");
    size_t cap = 1;
    for (const char *c = query; *c; c++)
        cap += *c == '&';
    struct qparam *ps = kiln_new(struct qparam, cap);
    size_t n = 0;
    const char *p = query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t l = amp ? (size_t)(amp - p) : strlen(p);
        if (l > 0) {
            const char *eq = memchr(p, '=', l);
            size_t kl = eq ? (size_t)(eq - p) : l;
            ps[n].key = reencode(p, kl);
            ps[n].value = eq ? reencode(eq + 1, l - kl - 1) : kiln_strdup("");
            n++;
        }
        p += l;
        if (*p == '&')
            p++;
    }
    qsort(ps, n, sizeof(*ps), qparam_cmp);
    struct kiln_buf b;
    kiln_buf_init(&b);
    for (size_t i = 0; i < n; i++) {
        if (i)
            kiln_buf_append_char(&b, '&');
        kiln_buf_appendf(&b, "%s=%s", ps[i].key, ps[i].value);
        free(ps[i].key);
        free(ps[i].value);
    }
    free(ps);
    return kiln_buf_steal(&b);
}

/* Headers never signed: they change in transit or are added by the transport. */
static bool
skip_header(const char *name)
{
    static const char *const skip[] = {"authorization", "user-agent", "x-amzn-trace-id", "expect",
                                       "connection", "transfer-encoding"};
    for (size_t i = 0; i < ARRAY_SIZE(skip); i++)
        if (strcasecmp(name, skip[i]) == 0)
            return true;
    return false;
}

/* Trim and collapse runs of whitespace (including folded line breaks) to one space. */
static void
append_trimmed(struct kiln_buf *b, const char *v)
{
    bool space = false, any = false;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n') {
            space = any;
            continue;
        }
        if (space)
            kiln_buf_append_char(b, ' ');
        space = false;
        any = true;
        kiln_buf_append_char(b, *v);
    }
}

struct chdr {
    char *name;
    size_t order;
    const char *value;
};

static int
chdr_cmp(const void *a, const void *b)
{
    const struct chdr *x = a, *y = b;
    int r = strcmp(x->name, y->name);
    if (r)
        return r;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Canonical headers block and the signed-headers list, from the request's headers. */
static void
canonical_headers(const struct kiln_aws_headers *h, struct kiln_buf *block,
                  struct kiln_buf *signed_list)
{
    struct chdr *v = kiln_new(struct chdr, h->n + 1);
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (skip_header(h->v[i].name))
            continue;
        v[n].name = kiln_strdup(h->v[i].name);
        for (char *c = v[n].name; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        v[n].order = i;
        v[n].value = h->v[i].value;
        n++;
    }
    qsort(v, n, sizeof(*v), chdr_cmp);
    for (size_t i = 0; i < n; i++) {
        bool same = i > 0 && strcmp(v[i].name, v[i - 1].name) == 0;
        if (same) {
            /* Repeated headers: values joined with commas, in request order. */
            kiln_buf_append_char(block, ',');
        } else {
            if (i > 0)
                kiln_buf_append_char(block, '\n');
            kiln_buf_appendf(block, "%s:", v[i].name);
            if (signed_list->len)
                kiln_buf_append_char(signed_list, ';');
            kiln_buf_append_str(signed_list, v[i].name);
        }
        append_trimmed(block, v[i].value);
    }
    if (n)
        kiln_buf_append_char(block, '\n');
    for (size_t i = 0; i < n; i++)
        free(v[i].name);
    free(v);
}

static void
derive_signature(const struct kiln_sigv4_params *p, const char *date, const char *sts,
                 char sig[65])
{
    uint8_t k[32];
    _cleanup_free_ char *secret = kiln_asprintf("AWS4%s", p->creds->secret_access_key);
    kiln_hmac_sha256(secret, strlen(secret), date, 8, k);
    explicit_bzero(secret, strlen(secret));
    kiln_hmac_sha256(k, 32, p->region, strlen(p->region), k);
    kiln_hmac_sha256(k, 32, p->service, strlen(p->service), k);
    kiln_hmac_sha256(k, 32, "aws4_request", 12, k);
    uint8_t s[32];
    kiln_hmac_sha256(k, 32, sts, strlen(sts), s);
    explicit_bzero(k, sizeof(k));
    kiln_hex_encode(s, 32, sig);
}

static int
check_params(const struct kiln_sigv4_request *req, const struct kiln_sigv4_params *p,
             struct kiln_error *err)
{
    if (!p->creds || !p->creds->access_key_id || !p->creds->secret_access_key ||
        !*p->creds->access_key_id || !*p->creds->secret_access_key)
        return kiln_error_set(err, -KILN_E_INVALID, "sigv4: no credentials");
    if (!p->region || !*p->region || !p->service || !*p->service)
        return kiln_error_set(err, -KILN_E_INVALID, "sigv4: region and service are required");
    if (!req->method || !*req->method)
        return kiln_error_set(err, -KILN_E_INVALID, "sigv4: no method");
    return 0;
}

static void
payload_hash(const struct kiln_sigv4_request *req, char hex[KILN_HASH_MAX_HEX])
{
    if (req->payload_hash) {
        snprintf(hex, KILN_HASH_MAX_HEX, "%s", req->payload_hash);
        return;
    }
    kiln_hash_buf_hex(KILN_HASH_SHA256, req->body ? req->body : "", req->body_len, hex);
}

/* Canonical request + string to sign + signature, from a prepared query and header list. */
static void
sign_core(const struct kiln_sigv4_request *req, const struct kiln_sigv4_params *p,
          const char *query, const struct kiln_aws_headers *headers, const char *hash,
          const char *amz_date, struct kiln_sigv4_result *ret, char **ret_signed_headers)
{
    _cleanup_free_ char *cpath = kiln_sigv4_canonical_path(req->path, !p->no_path_normalize, !p->no_path_encode);
    _cleanup_free_ char *cquery = kiln_sigv4_canonical_query(query);
    struct kiln_buf block, signed_list, creq;
    kiln_buf_init(&block);
    kiln_buf_init(&signed_list);
    kiln_buf_init(&creq);
    canonical_headers(headers, &block, &signed_list);
    kiln_buf_appendf(&creq, "%s\n%s\n%s\n%s\n%s\n%s", req->method, cpath, cquery,
                     block.data ? block.data : "", signed_list.data ? signed_list.data : "", hash);
    char creq_hash[KILN_HASH_MAX_HEX];
    kiln_hash_buf_hex(KILN_HASH_SHA256, creq.data, creq.len, creq_hash);
    ret->string_to_sign = kiln_asprintf("AWS4-HMAC-SHA256\n%s\n%.8s/%s/%s/aws4_request\n%s",
                                        amz_date, amz_date, p->region, p->service, creq_hash);
    derive_signature(p, amz_date, ret->string_to_sign, ret->signature);
    ret->canonical_request = kiln_buf_steal(&creq);
    kiln_buf_clear(&block);
    *ret_signed_headers = kiln_buf_steal(&signed_list);
}

int
kiln_sigv4_sign_headers(const struct kiln_sigv4_request *req, const struct kiln_sigv4_params *p,
                        struct kiln_sigv4_result *ret, struct kiln_error *err)
{
    int r = check_params(req, p, err);
    if (r < 0)
        return r;
    memset(ret, 0, sizeof(*ret));
    char amz_date[17];
    kiln_sigv4_format_time(p->now, amz_date);
    char hash[KILN_HASH_MAX_HEX];
    payload_hash(req, hash);

    struct kiln_aws_headers *h = req->headers;
    kiln_aws_headers_remove(h, "Authorization");
    kiln_aws_headers_set(h, "X-Amz-Date", amz_date);
    kiln_aws_headers_remove(h, "X-Amz-Security-Token");
    if (p->creds->session_token && !p->omit_session_token)
        kiln_aws_headers_add(h, "X-Amz-Security-Token", p->creds->session_token);
    if (p->content_sha256_header)
        kiln_aws_headers_set(h, "x-amz-content-sha256", hash);

    _cleanup_free_ char *signed_headers = NULL;
    sign_core(req, p, req->query, h, hash, amz_date, ret, &signed_headers);
    ret->authorization = kiln_asprintf(
        "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
        p->creds->access_key_id, amz_date, p->region, p->service, signed_headers, ret->signature);
    if (p->creds->session_token && p->omit_session_token)
        kiln_aws_headers_add(h, "X-Amz-Security-Token", p->creds->session_token);
    kiln_aws_headers_add(h, "Authorization", ret->authorization);
    return 0;
}

static void
append_param(struct kiln_buf *q, const char *key, const char *value)
{
    if (q->len)
        kiln_buf_append_char(q, '&');
    kiln_aws_uri_encode(q, key, strlen(key), false);
    kiln_buf_append_char(q, '=');
    kiln_aws_uri_encode(q, value, strlen(value), false);
}

int
kiln_sigv4_presign(const struct kiln_sigv4_request *req, const struct kiln_sigv4_params *p,
                   struct kiln_sigv4_result *ret, struct kiln_error *err)
{
    int r = check_params(req, p, err);
    if (r < 0)
        return r;
    if (p->expires < 1 || p->expires > KILN_SIGV4_MAX_EXPIRES)
        return kiln_error_set(err, -KILN_E_INVALID,
                              "sigv4: presigned URL lifetime %u s is outside 1..%u", p->expires,
                              KILN_SIGV4_MAX_EXPIRES);
    memset(ret, 0, sizeof(*ret));
    char amz_date[17];
    kiln_sigv4_format_time(p->now, amz_date);
    char hash[KILN_HASH_MAX_HEX];
    payload_hash(req, hash);

    /* Signed headers are known before the query is complete: compute them first. */
    struct kiln_aws_headers hdrs = {0};
    for (size_t i = 0; i < req->headers->n; i++)
        kiln_aws_headers_add(&hdrs, req->headers->v[i].name, req->headers->v[i].value);
    kiln_aws_headers_remove(&hdrs, "X-Amz-Date");
    kiln_aws_headers_remove(&hdrs, "X-Amz-Security-Token");
    struct kiln_buf block, signed_list, q;
    kiln_buf_init(&block);
    kiln_buf_init(&signed_list);
    kiln_buf_init(&q);
    canonical_headers(&hdrs, &block, &signed_list);
    kiln_buf_clear(&block);

    if (req->query && *req->query)
        kiln_buf_append_str(&q, req->query);
    _cleanup_free_ char *cred = kiln_asprintf("%s/%.8s/%s/%s/aws4_request",
                                              p->creds->access_key_id, amz_date, p->region,
                                              p->service);
    char expires[16];
    snprintf(expires, sizeof(expires), "%u", p->expires);
    append_param(&q, "X-Amz-Algorithm", "AWS4-HMAC-SHA256");
    append_param(&q, "X-Amz-Credential", cred);
    append_param(&q, "X-Amz-Date", amz_date);
    append_param(&q, "X-Amz-Expires", expires);
    if (p->creds->session_token && !p->omit_session_token)
        append_param(&q, "X-Amz-Security-Token", p->creds->session_token);
    append_param(&q, "X-Amz-SignedHeaders", signed_list.data ? signed_list.data : "");
    kiln_buf_clear(&signed_list);

    _cleanup_free_ char *signed_headers = NULL;
    sign_core(req, p, q.data, &hdrs, hash, amz_date, ret, &signed_headers);
    kiln_aws_headers_clear(&hdrs);
    /* The URL carries the canonical (sorted, encoded) query, so what is sent is what was signed. */
    _cleanup_free_ char *cquery = kiln_sigv4_canonical_query(q.data ? q.data : "");
    kiln_buf_clear(&q);
    kiln_buf_append_str(&q, cquery);
    if (p->creds->session_token && p->omit_session_token)
        append_param(&q, "X-Amz-Security-Token", p->creds->session_token);
    append_param(&q, "X-Amz-Signature", ret->signature);
    ret->query = kiln_buf_steal(&q);
    return 0;
}
