/* S3 operations (REST-XML, path-style). */
#include "cloud/s3.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloud/sigv4.h"

static int
check_names(const char *bucket, const char *key, const char *op, struct kiln_error *err)
{
    if (!bucket || !*bucket || strchr(bucket, '/'))
        return kiln_error_set(err, -KILN_E_INVALID, "%s: invalid bucket name", op);
    if (key && !*key)
        return kiln_error_set(err, -KILN_E_INVALID, "%s: empty key", op);
    if (key && strlen(key) > 1024)
        return kiln_error_set(err, -KILN_E_INVALID, "%s: key longer than 1024 bytes", op);
    return 0;
}

/* "/bucket/key" with the key encoded once, '/' kept: what S3 signs as is. */
static char *
object_path(const char *bucket, const char *key)
{
    struct kiln_buf b;
    kiln_buf_init(&b);
    kiln_buf_append_char(&b, '/');
    kiln_aws_uri_encode(&b, bucket, strlen(bucket), false);
    if (key) {
        kiln_buf_append_char(&b, '/');
        kiln_aws_uri_encode(&b, key, strlen(key), true);
    }
    return kiln_buf_steal(&b);
}

static void
s3_request(struct kiln_aws_request *r, const char *method, const char *path, const char *query)
{
    memset(r, 0, sizeof(*r));
    r->service = "s3";
    r->method = method;
    r->path = path;
    r->query = query;
    r->s3 = true;
}

/* x-amz-expected-bucket-owner, when the caller names one. */
static void
add_owner(struct kiln_aws_request *r, const char *owner)
{
    if (owner && *owner)
        kiln_aws_headers_add(&r->headers, "x-amz-expected-bucket-owner", owner);
}

int
kiln_s3_create_bucket(struct kiln_aws_client *c, const char *bucket, struct kiln_error *err)
{
    int r = check_names(bucket, NULL, "CreateBucket", err);
    if (r < 0)
        return r;
    const char *region = kiln_aws_client_region(c);
    _cleanup_free_ char *path = object_path(bucket, NULL);
    /* us-east-1 takes no location constraint; every other region needs one. */
    _cleanup_free_ char *body =
        strcmp(region, "us-east-1") == 0
            ? NULL
            : kiln_asprintf("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/"
                            "2006-03-01/\"><LocationConstraint>%s</LocationConstraint>"
                            "</CreateBucketConfiguration>", region);
    struct kiln_aws_request req;
    s3_request(&req, "PUT", path, NULL);
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    if (body)
        kiln_aws_headers_add(&req.headers, "Content-Type", "application/xml");
    struct kiln_aws_response resp = {0};
    struct kiln_error cerr = {0};
    r = kiln_aws_call(c, &req, &resp, &cerr);
    kiln_aws_request_clear(&req);
    kiln_aws_response_clear(&resp);
    if (r < 0 && strcmp(cerr.cause, "BucketAlreadyOwnedByYou") == 0)
        r = 0;
    if (r < 0) {
        if (err && !err->code)
            *err = cerr;
        return kiln_error_prefix(err, r, "CreateBucket %s", bucket);
    }
    return 0;
}

static int
put_object(struct kiln_aws_client *c, const char *bucket, const char *key, const void *data,
           size_t len, const char *content_type, const char *owner, char **ret_etag,
           struct kiln_error *err)
{
    if (ret_etag)
        *ret_etag = NULL;
    int r = check_names(bucket, key, "PutObject", err);
    if (r < 0)
        return r;
    _cleanup_free_ char *path = object_path(bucket, key);
    struct kiln_aws_request req;
    s3_request(&req, "PUT", path, NULL);
    req.body = data ? data : "";
    req.body_len = len;
    kiln_aws_headers_add(&req.headers, "Content-Type",
                         content_type ? content_type : "application/octet-stream");
    add_owner(&req, owner);
    struct kiln_aws_response resp = {0};
    r = kiln_aws_call(c, &req, &resp, err);
    kiln_aws_request_clear(&req);
    if (r == 0 && ret_etag) {
        const char *e = kiln_aws_headers_get(&resp.headers, "ETag");
        *ret_etag = e ? kiln_strdup(e) : NULL;
    }
    kiln_aws_response_clear(&resp);
    return r < 0 ? kiln_error_prefix(err, r, "PutObject s3://%s/%s", bucket, key) : 0;
}

int
kiln_s3_put_object(struct kiln_aws_client *c, const char *bucket, const char *key,
                   const void *data, size_t len, const char *content_type, char **ret_etag,
                   struct kiln_error *err)
{
    return put_object(c, bucket, key, data, len, content_type, NULL, ret_etag, err);
}

int
kiln_s3_get_object(struct kiln_aws_client *c, const char *bucket, const char *key,
                   const char *path, struct kiln_error *err)
{
    return kiln_s3_get_object_opts(c, bucket, key, path, NULL, err);
}

int
kiln_s3_get_object_opts(struct kiln_aws_client *c, const char *bucket, const char *key,
                        const char *path, const struct kiln_s3_options *opts,
                        struct kiln_error *err)
{
    int r = check_names(bucket, key, "GetObject", err);
    if (r < 0)
        return r;
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return kiln_error_errno(err, -errno, "GetObject: creating %s", path);
    _cleanup_free_ char *opath = object_path(bucket, key);
    struct kiln_aws_request req;
    s3_request(&req, "GET", opath, NULL);
    req.to_fd = true;
    req.out_fd = fd;
    add_owner(&req, opts ? opts->expected_bucket_owner : NULL);
    struct kiln_aws_response resp = {0};
    r = kiln_aws_call(c, &req, &resp, err);
    kiln_aws_request_clear(&req);
    if (r == 0) {
        /* A short body (connection cut after the headers) must not pass as the object. */
        const char *cl = kiln_aws_headers_get(&resp.headers, "Content-Length");
        struct stat st;
        if (cl && fstat(fd, &st) == 0 && strtoull(cl, NULL, 10) != (unsigned long long)st.st_size)
            r = kiln_error_set(err, -EIO, "GetObject: got %lld of %s bytes", (long long)st.st_size,
                               cl);
        else if (fsync(fd) < 0)
            r = kiln_error_errno(err, -errno, "GetObject: writing %s", path);
    }
    kiln_aws_response_clear(&resp);
    return r < 0 ? kiln_error_prefix(err, r, "GetObject s3://%s/%s", bucket, key) : 0;
}

int
kiln_s3_get_object_buf(struct kiln_aws_client *c, const char *bucket, const char *key,
                       size_t max, struct kiln_buf *ret, struct kiln_error *err)
{
    kiln_buf_init(ret);
    int r = check_names(bucket, key, "GetObject", err);
    if (r < 0)
        return r;
    _cleanup_free_ char *opath = object_path(bucket, key);
    struct kiln_aws_request req;
    s3_request(&req, "GET", opath, NULL);
    struct kiln_aws_response resp = {0};
    r = kiln_aws_call(c, &req, &resp, err);
    if (r == 0 && resp.body.len > max)
        r = kiln_error_set(err, -KILN_E_LIMIT, "object larger than %zu bytes", max);
    if (r == 0) {
        *ret = resp.body;
        kiln_buf_init(&resp.body);
    }
    kiln_aws_response_clear(&resp);
    return r < 0 ? kiln_error_prefix(err, r, "GetObject s3://%s/%s", bucket, key) : 0;
}

void
kiln_s3_object_info_clear(struct kiln_s3_object_info *i)
{
    if (!i)
        return;
    free(i->etag);
    free(i->content_type);
    free(i->last_modified);
    memset(i, 0, sizeof(*i));
}

int
kiln_s3_head_object(struct kiln_aws_client *c, const char *bucket, const char *key,
                    struct kiln_s3_object_info *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    int r = check_names(bucket, key, "HeadObject", err);
    if (r < 0)
        return r;
    _cleanup_free_ char *opath = object_path(bucket, key);
    struct kiln_aws_request req;
    s3_request(&req, "HEAD", opath, NULL);
    req.head = true;
    struct kiln_aws_response resp = {0};
    struct kiln_error herr = {0};
    r = kiln_aws_call(c, &req, &resp, &herr);
    if (r < 0) {
        if (resp.status == 404)
            r = -ENOENT;
        if (err && !err->code) {
            *err = herr;
            err->code = r;
        }
        kiln_aws_response_clear(&resp);
        return kiln_error_prefix(err, r, "HeadObject s3://%s/%s", bucket, key);
    }
    const char *v = kiln_aws_headers_get(&resp.headers, "Content-Length");
    ret->size = v ? strtoull(v, NULL, 10) : 0;
    if ((v = kiln_aws_headers_get(&resp.headers, "ETag")))
        ret->etag = kiln_strdup(v);
    if ((v = kiln_aws_headers_get(&resp.headers, "Content-Type")))
        ret->content_type = kiln_strdup(v);
    if ((v = kiln_aws_headers_get(&resp.headers, "Last-Modified")))
        ret->last_modified = kiln_strdup(v);
    kiln_aws_response_clear(&resp);
    return 0;
}

int
kiln_s3_delete_object(struct kiln_aws_client *c, const char *bucket, const char *key,
                      struct kiln_error *err)
{
    int r = check_names(bucket, key, "DeleteObject", err);
    if (r < 0)
        return r;
    _cleanup_free_ char *opath = object_path(bucket, key);
    struct kiln_aws_request req;
    s3_request(&req, "DELETE", opath, NULL);
    struct kiln_aws_response resp = {0};
    r = kiln_aws_call(c, &req, &resp, err);
    kiln_aws_response_clear(&resp);
    return r < 0 ? kiln_error_prefix(err, r, "DeleteObject s3://%s/%s", bucket, key) : 0;
}

void
kiln_s3_list_clear(struct kiln_s3_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].key);
        free(l->v[i].etag);
        free(l->v[i].last_modified);
    }
    free(l->v);
    for (size_t i = 0; i < l->n_prefixes; i++)
        free(l->common_prefixes[i]);
    free(l->common_prefixes);
    free(l->next_token);
    memset(l, 0, sizeof(*l));
}

int
kiln_s3_parse_list(xmlDoc *doc, struct kiln_s3_list *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    xmlNode *root = kiln_aws_xml_root(doc);
    if (strcmp((const char *)root->name, "ListBucketResult") != 0)
        return kiln_error_set(err, -KILN_E_PARSE, "ListObjectsV2: unexpected <%s> response",
                              (const char *)root->name);
    for (xmlNode *o = kiln_aws_xml_child(root, "Contents"); o; o = kiln_aws_xml_next(o)) {
        ret->v = kiln_reallocarray(ret->v, ret->n + 1, sizeof(*ret->v));
        struct kiln_s3_object *ob = &ret->v[ret->n++];
        ob->key = kiln_aws_xml_text(o, "Key");
        ob->size = (unsigned long long)kiln_aws_xml_ll(o, "Size", 0);
        ob->etag = kiln_aws_xml_text(o, "ETag");
        ob->last_modified = kiln_aws_xml_text(o, "LastModified");
        if (!ob->key) {
            kiln_s3_list_clear(ret);
            return kiln_error_set(err, -KILN_E_PARSE, "ListObjectsV2: object without a key");
        }
    }
    for (xmlNode *p = kiln_aws_xml_child(root, "CommonPrefixes"); p; p = kiln_aws_xml_next(p)) {
        char *prefix = kiln_aws_xml_text(p, "Prefix");
        if (!prefix)
            continue;
        ret->common_prefixes = kiln_reallocarray(ret->common_prefixes, ret->n_prefixes + 1,
                                                 sizeof(char *));
        ret->common_prefixes[ret->n_prefixes++] = prefix;
    }
    ret->truncated = kiln_aws_xml_bool(root, "IsTruncated");
    ret->next_token = kiln_aws_xml_text(root, "NextContinuationToken");
    if (!ret->next_token && ret->truncated)
        ret->next_token = kiln_aws_xml_text(root, "NextMarker");
    if (ret->truncated && !ret->next_token) {
        kiln_s3_list_clear(ret);
        return kiln_error_set(err, -KILN_E_PARSE, "ListObjectsV2: truncated without a token");
    }
    return 0;
}

static void
add_q(struct kiln_buf *q, const char *k, const char *v)
{
    if (!v)
        return;
    if (q->len)
        kiln_buf_append_char(q, '&');
    kiln_aws_uri_encode(q, k, strlen(k), false);
    kiln_buf_append_char(q, '=');
    kiln_aws_uri_encode(q, v, strlen(v), false);
}

int
kiln_s3_list_objects(struct kiln_aws_client *c, const char *bucket,
                     const struct kiln_s3_list_request *req, struct kiln_s3_list *ret,
                     struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    int r = check_names(bucket, NULL, "ListObjectsV2", err);
    if (r < 0)
        return r;
    _cleanup_buf_ struct kiln_buf q;
    kiln_buf_init(&q);
    add_q(&q, "list-type", "2");
    if (req) {
        add_q(&q, "prefix", req->prefix);
        add_q(&q, "delimiter", req->delimiter);
        add_q(&q, "continuation-token", req->continuation_token);
        if (req->max_keys) {
            char b[16];
            snprintf(b, sizeof(b), "%u", req->max_keys);
            add_q(&q, "max-keys", b);
        }
    }
    _cleanup_free_ char *path = object_path(bucket, NULL);
    struct kiln_aws_request rq;
    s3_request(&rq, "GET", path, q.data);
    rq.expect = KILN_AWS_BODY_XML;
    add_owner(&rq, req ? req->expected_bucket_owner : NULL);
    struct kiln_aws_response resp = {0};
    r = kiln_aws_call(c, &rq, &resp, err);
    kiln_aws_request_clear(&rq);
    if (r == 0) {
        _cleanup_xml_ xmlDoc *doc = NULL;
        r = kiln_aws_xml_parse(resp.body.data, resp.body.len, &doc, err);
        if (r == 0)
            r = kiln_s3_parse_list(doc, ret, err);
    }
    kiln_aws_response_clear(&resp);
    return r < 0 ? kiln_error_prefix(err, r, "ListObjectsV2 s3://%s", bucket) : 0;
}

int
kiln_s3_list_objects_all(struct kiln_aws_client *c, const char *bucket,
                         const struct kiln_s3_list_request *req, struct kiln_s3_list *ret,
                         struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    struct kiln_s3_list_request page = req ? *req : (struct kiln_s3_list_request){0};
    _cleanup_free_ char *token = NULL;
    for (unsigned n = 0; n < 100000; n++) {
        page.continuation_token = token;
        struct kiln_s3_list part;
        int r = kiln_s3_list_objects(c, bucket, &page, &part, err);
        if (r < 0) {
            kiln_s3_list_clear(ret);
            return r;
        }
        ret->v = kiln_reallocarray(ret->v, ret->n + part.n + 1, sizeof(*ret->v));
        if (part.n)
            memcpy(ret->v + ret->n, part.v, part.n * sizeof(*part.v));
        ret->n += part.n;
        ret->common_prefixes = kiln_reallocarray(ret->common_prefixes,
                                                 ret->n_prefixes + part.n_prefixes + 1,
                                                 sizeof(char *));
        if (part.n_prefixes)
            memcpy(ret->common_prefixes + ret->n_prefixes, part.common_prefixes,
                   part.n_prefixes * sizeof(char *));
        ret->n_prefixes += part.n_prefixes;
        free(part.v);
        free(part.common_prefixes);
        bool same = token && part.next_token && strcmp(token, part.next_token) == 0;
        free(token);
        token = part.truncated ? part.next_token : (free(part.next_token), NULL);
        if (!token)
            return 0;
        if (same)
            break;
    }
    kiln_s3_list_clear(ret);
    return kiln_error_set(err, -KILN_E_LIMIT, "ListObjectsV2: pagination does not end");
}

/* --- multipart --------------------------------------------------------------------------- */

/* CompleteMultipartUpload (and others) may answer 200 with an <Error> body. */
static int
xml_result(struct kiln_aws_response *resp, const char *want_root, xmlDoc **ret,
           struct kiln_error *err)
{
    int r = kiln_aws_xml_parse(resp->body.data, resp->body.len, ret, err);
    if (r < 0)
        return r;
    xmlNode *root = kiln_aws_xml_root(*ret);
    if (strcmp((const char *)root->name, "Error") == 0) {
        kiln_aws_parse_error(resp->status, &resp->headers, resp->body.data, resp->body.len, err,
                             NULL);
        return -KILN_E_REMOTE;
    }
    if (strcmp((const char *)root->name, want_root) != 0)
        return kiln_error_set(err, -KILN_E_PARSE, "unexpected <%s> response (wanted <%s>)",
                              (const char *)root->name, want_root);
    return 0;
}

static int
create_multipart(struct kiln_aws_client *c, const char *bucket, const char *key,
                 const char *owner, char **ret_upload_id, struct kiln_error *err)
{
    *ret_upload_id = NULL;
    int r = check_names(bucket, key, "CreateMultipartUpload", err);
    if (r < 0)
        return r;
    _cleanup_free_ char *path = object_path(bucket, key);
    struct kiln_aws_request req;
    s3_request(&req, "POST", path, "uploads=");
    /* The object's type is set here; the same default as kiln_s3_put_object, so an object
     * does not change type with its size (S3 would store binary/octet-stream). */
    kiln_aws_headers_add(&req.headers, "Content-Type", "application/octet-stream");
    req.expect = KILN_AWS_BODY_XML;
    add_owner(&req, owner);
    struct kiln_aws_response resp = {0};
    r = kiln_aws_call(c, &req, &resp, err);
    kiln_aws_request_clear(&req);
    if (r == 0) {
        _cleanup_xml_ xmlDoc *doc = NULL;
        r = xml_result(&resp, "InitiateMultipartUploadResult", &doc, err);
        if (r == 0) {
            *ret_upload_id = kiln_aws_xml_text(kiln_aws_xml_root(doc), "UploadId");
            if (!*ret_upload_id || !**ret_upload_id) {
                free(*ret_upload_id);
                *ret_upload_id = NULL;
                r = kiln_error_set(err, -KILN_E_PARSE, "no UploadId in the response");
            }
        }
    }
    kiln_aws_response_clear(&resp);
    return r < 0 ? kiln_error_prefix(err, r, "CreateMultipartUpload s3://%s/%s", bucket, key) : 0;
}

int
kiln_s3_create_multipart_upload(struct kiln_aws_client *c, const char *bucket, const char *key,
                                char **ret_upload_id, struct kiln_error *err)
{
    return create_multipart(c, bucket, key, NULL, ret_upload_id, err);
}

static char *
upload_query(const char *upload_id, unsigned part)
{
    struct kiln_buf q;
    kiln_buf_init(&q);
    if (part) {
        char b[16];
        snprintf(b, sizeof(b), "%u", part);
        add_q(&q, "partNumber", b);
    }
    add_q(&q, "uploadId", upload_id);
    return kiln_buf_steal(&q);
}

static int
abort_multipart(struct kiln_aws_client *c, const char *bucket, const char *key,
                const char *upload_id, const char *owner, struct kiln_error *err)
{
    _cleanup_free_ char *path = object_path(bucket, key);
    _cleanup_free_ char *q = upload_query(upload_id, 0);
    struct kiln_aws_request req;
    s3_request(&req, "DELETE", path, q);
    add_owner(&req, owner);
    struct kiln_aws_response resp = {0};
    int r = kiln_aws_call(c, &req, &resp, err);
    kiln_aws_request_clear(&req);
    kiln_aws_response_clear(&resp);
    return r < 0 ? kiln_error_prefix(err, r, "AbortMultipartUpload s3://%s/%s", bucket, key) : 0;
}

int
kiln_s3_abort_multipart_upload(struct kiln_aws_client *c, const char *bucket, const char *key,
                               const char *upload_id, struct kiln_error *err)
{
    return abort_multipart(c, bucket, key, upload_id, NULL, err);
}

static int
complete_multipart(struct kiln_aws_client *c, const char *bucket, const char *key,
                   const char *upload_id, char *const *etags, size_t n_parts, const char *owner,
                   struct kiln_error *err)
{
    _cleanup_buf_ struct kiln_buf body;
    kiln_buf_init(&body);
    kiln_buf_append_str(&body, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/"
                               "2006-03-01/\">");
    for (size_t i = 0; i < n_parts; i++) {
        /* ETags are quoted hex from S3; escape anyway, they come from the network. */
        kiln_buf_appendf(&body, "<Part><PartNumber>%zu</PartNumber><ETag>", i + 1);
        for (const char *p = etags[i]; *p; p++) {
            if (*p == '&')
                kiln_buf_append_str(&body, "&amp;");
            else if (*p == '<')
                kiln_buf_append_str(&body, "&lt;");
            else if (*p == '"')
                kiln_buf_append_str(&body, "&quot;");
            else
                kiln_buf_append_char(&body, *p);
        }
        kiln_buf_append_str(&body, "</ETag></Part>");
    }
    kiln_buf_append_str(&body, "</CompleteMultipartUpload>");
    _cleanup_free_ char *path = object_path(bucket, key);
    _cleanup_free_ char *q = upload_query(upload_id, 0);
    struct kiln_aws_request req;
    s3_request(&req, "POST", path, q);
    req.body = body.data;
    req.body_len = body.len;
    req.expect = KILN_AWS_BODY_XML;
    kiln_aws_headers_add(&req.headers, "Content-Type", "application/xml");
    add_owner(&req, owner);
    struct kiln_aws_response resp = {0};
    int r = kiln_aws_call(c, &req, &resp, err);
    kiln_aws_request_clear(&req);
    if (r == 0) {
        _cleanup_xml_ xmlDoc *doc = NULL;
        r = xml_result(&resp, "CompleteMultipartUploadResult", &doc, err);
    }
    kiln_aws_response_clear(&resp);
    return r < 0 ? kiln_error_prefix(err, r, "CompleteMultipartUpload s3://%s/%s", bucket, key)
                 : 0;
}

int
kiln_s3_complete_multipart_upload(struct kiln_aws_client *c, const char *bucket, const char *key,
                                  const char *upload_id, char *const *etags, size_t n_parts,
                                  struct kiln_error *err)
{
    return complete_multipart(c, bucket, key, upload_id, etags, n_parts, NULL, err);
}

static int
read_full(int fd, void *buf, size_t len, off_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, off + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        got += (size_t)n;
    }
    return 0;
}

struct part_ctx {
    int fd;
    const char *path;
    unsigned long long size;
    unsigned long long part_size;
    size_t n_parts;
    size_t next;
    const char *upload_id;
    const char *owner;
    char *opath;
    char **etags;
    char **bufs;      /* one part buffer per slot: memory stays slots x part size */
    char **queries;
    struct kiln_aws_request *reqs;
    size_t *slot_part;
};

static int
part_feed(void *ctx, size_t slot, const struct kiln_aws_request **req, struct kiln_error *err)
{
    struct part_ctx *pc = ctx;
    if (pc->next >= pc->n_parts)
        return 0;
    size_t part = pc->next++;
    unsigned long long off = part * pc->part_size;
    size_t len = (size_t)(pc->size - off < pc->part_size ? pc->size - off : pc->part_size);
    if (!pc->bufs[slot])
        pc->bufs[slot] = kiln_malloc((size_t)pc->part_size);
    int r = read_full(pc->fd, pc->bufs[slot], len, (off_t)off);
    if (r < 0)
        return kiln_error_errno(err, r, "reading %s", pc->path);
    free(pc->queries[slot]);
    pc->queries[slot] = upload_query(pc->upload_id, (unsigned)part + 1);
    kiln_aws_request_clear(&pc->reqs[slot]);
    s3_request(&pc->reqs[slot], "PUT", pc->opath, pc->queries[slot]);
    add_owner(&pc->reqs[slot], pc->owner);
    pc->reqs[slot].body = pc->bufs[slot];
    pc->reqs[slot].body_len = len;
    pc->slot_part[slot] = part;
    *req = &pc->reqs[slot];
    return 1;
}

static int
part_done(void *ctx, size_t slot, struct kiln_aws_response *resp, int result,
          struct kiln_error *xerr)
{
    struct part_ctx *pc = ctx;
    if (result < 0)
        return kiln_error_prefix(xerr, result, "UploadPart %zu", pc->slot_part[slot] + 1);
    const char *e = kiln_aws_headers_get(&resp->headers, "ETag");
    if (!e || !*e)
        return kiln_error_set(xerr, -KILN_E_PARSE, "UploadPart %zu: no ETag",
                              pc->slot_part[slot] + 1);
    pc->etags[pc->slot_part[slot]] = kiln_strdup(e);
    return 0;
}

int
kiln_s3_upload_file(struct kiln_aws_client *c, const char *bucket, const char *key,
                    const char *path, unsigned long long part_size, struct kiln_error *err)
{
    return kiln_s3_upload_file_opts(c, bucket, key, path, part_size, NULL, err);
}

int
kiln_s3_upload_file_opts(struct kiln_aws_client *c, const char *bucket, const char *key,
                         const char *path, unsigned long long part_size,
                         const struct kiln_s3_options *opts, struct kiln_error *err)
{
    const char *owner = opts ? opts->expected_bucket_owner : NULL;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kiln_error_errno(err, -errno, "upload: opening %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return kiln_error_errno(err, -errno, "upload: %s", path);
    unsigned long long size = (unsigned long long)st.st_size;
    if (part_size == 0)
        part_size = KILN_S3_DEFAULT_PART;
    if (part_size < KILN_S3_MIN_PART)
        part_size = KILN_S3_MIN_PART;
    while (size / part_size >= KILN_S3_MAX_PARTS)
        part_size *= 2;
    if (size <= part_size) {
        _cleanup_free_ char *data = kiln_malloc(size ? size : 1);
        int r = read_full(fd, data, size, 0);
        if (r < 0)
            return kiln_error_errno(err, r, "upload: reading %s", path);
        return put_object(c, bucket, key, data, size, NULL, owner, NULL, err);
    }
    size_t n_parts = (size_t)((size + part_size - 1) / part_size);
    _cleanup_free_ char *upload_id = NULL;
    int r = create_multipart(c, bucket, key, owner, &upload_id, err);
    if (r < 0)
        return r;
    struct part_ctx pc = {.fd = fd, .path = path, .size = size, .part_size = part_size,
                          .n_parts = n_parts, .upload_id = upload_id, .owner = owner};
    pc.etags = kiln_new(char *, n_parts + 1);
    pc.opath = object_path(bucket, key);
    size_t slots = 8;
    pc.bufs = kiln_new(char *, slots);
    pc.queries = kiln_new(char *, slots);
    pc.reqs = kiln_new(struct kiln_aws_request, slots);
    pc.slot_part = kiln_new(size_t, slots);
    r = kiln_aws_call_stream(c, slots, part_feed, part_done, &pc, err);
    for (size_t i = 0; i < slots; i++) {
        free(pc.bufs[i]);
        free(pc.queries[i]);
        kiln_aws_request_clear(&pc.reqs[i]);
    }
    free(pc.bufs);
    free(pc.queries);
    free(pc.reqs);
    free(pc.slot_part);
    free(pc.opath);
    char **etags = pc.etags;
    if (r == 0)
        r = complete_multipart(c, bucket, key, upload_id, etags, n_parts, owner, err);
    if (r < 0) {
        /* Leave no billed parts behind. */
        struct kiln_error aerr = {0};
        abort_multipart(c, bucket, key, upload_id, owner, &aerr);
    }
    for (size_t i = 0; i < n_parts; i++)
        free(etags[i]);
    free(etags);
    return r < 0 ? kiln_error_prefix(err, r, "multipart upload of %s", path) : 0;
}

int
kiln_s3_presign(struct kiln_aws_client *c, const char *method, const char *bucket,
                const char *key, unsigned expires, char **ret_url, struct kiln_error *err)
{
    *ret_url = NULL;
    int r = check_names(bucket, key, "presign", err);
    if (r < 0)
        return r;
    if (strcmp(method, "GET") != 0 && strcmp(method, "PUT") != 0 && strcmp(method, "HEAD") != 0)
        return kiln_error_set(err, -KILN_E_INVALID, "presign: method %s is not GET/PUT/HEAD",
                              method);
    _cleanup_free_ char *endpoint = kiln_aws_client_endpoint(c, "s3");
    _cleanup_free_ char *path = object_path(bucket, key);
    struct kiln_aws_credentials creds = {0};
    r = kiln_aws_client_credentials(c, &creds, err);
    if (r < 0)
        return r;
    struct kiln_aws_headers h = {0};
    kiln_aws_headers_add(&h, "Host", strstr(endpoint, "://") + 3);
    struct kiln_sigv4_request sreq = {method, path, NULL, &h, NULL, 0,
                                      KILN_SIGV4_UNSIGNED_PAYLOAD};
    struct kiln_sigv4_params p = {.creds = &creds, .region = kiln_aws_client_region(c),
                                  .service = "s3", .now = kiln_aws_client_now(c),
                                  .no_path_normalize = true, .no_path_encode = true,
                                  .expires = expires};
    struct kiln_sigv4_result res;
    r = kiln_sigv4_presign(&sreq, &p, &res, err);
    kiln_aws_credentials_clear(&creds);
    kiln_aws_headers_clear(&h);
    if (r < 0)
        return r;
    *ret_url = kiln_asprintf("%s%s?%s", endpoint, path, res.query);
    kiln_sigv4_result_clear(&res);
    return 0;
}
