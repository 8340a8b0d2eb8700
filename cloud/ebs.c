/* EBS direct API calls (REST-JSON). */
#include "cloud/ebs.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <string.h>

#include "common/hash.h"
#include "common/json.h"

#define EBS_JSON_MAX (16u << 20)

void
kiln_ebs_checksum(const void *data, size_t len, char out[45])
{
    uint8_t d[32];
    kiln_hash_buf(KILN_HASH_SHA256, data, len, d);
    EVP_EncodeBlock((unsigned char *)out, d, 32);
}

void
kiln_ebs_aggregate_checksum(const uint8_t (*digests)[32], size_t n, char out[45])
{
    struct kiln_hash *h = kiln_hash_new(KILN_HASH_SHA256);
    for (size_t i = 0; i < n; i++)
        kiln_hash_update(h, digests[i], 32);
    uint8_t d[32];
    kiln_hash_final(h, d);
    kiln_hash_free(h);
    EVP_EncodeBlock((unsigned char *)out, d, 32);
}

void
kiln_ebs_snapshot_clear(struct kiln_ebs_snapshot *s)
{
    if (!s)
        return;
    free(s->snapshot_id);
    free(s->owner_id);
    free(s->status);
    free(s->description);
    memset(s, 0, sizeof(*s));
}

static int
parse_json(const char *body, size_t len, const char *what, json_t **ret, struct kiln_error *err)
{
    int r = kiln_json_parse(body ? body : "", len, EBS_JSON_MAX, what, ret, err);
    if (r < 0)
        return r;
    if (!json_is_object(*ret)) {
        json_decref(*ret);
        *ret = NULL;
        return kiln_error_set(err, -KILN_E_PARSE, "%s: not a JSON object", what);
    }
    return 0;
}

static char *
jstr(json_t *o, const char *k)
{
    const char *v = kiln_json_get_str(o, k);
    return v ? kiln_strdup(v) : NULL;
}

int
kiln_ebs_parse_snapshot(const char *body, size_t len, struct kiln_ebs_snapshot *ret,
                        struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    _cleanup_json_ json_t *j = NULL;
    int r = parse_json(body, len, "StartSnapshot response", &j, err);
    if (r < 0)
        return r;
    ret->snapshot_id = jstr(j, "SnapshotId");
    ret->owner_id = jstr(j, "OwnerId");
    ret->status = jstr(j, "Status");
    ret->description = jstr(j, "Description");
    ret->volume_size = json_integer_value(json_object_get(j, "VolumeSize"));
    ret->block_size = json_integer_value(json_object_get(j, "BlockSize"));
    if (!ret->snapshot_id) {
        kiln_ebs_snapshot_clear(ret);
        return kiln_error_set(err, -KILN_E_PARSE, "StartSnapshot response without SnapshotId");
    }
    if (ret->block_size && ret->block_size != KILN_EBS_BLOCK_SIZE) {
        long long bs = ret->block_size;
        kiln_ebs_snapshot_clear(ret);
        return kiln_error_set(err, -KILN_E_UNSUPPORTED, "snapshot block size %lld (Kiln "
                                                        "writes %u)", bs, KILN_EBS_BLOCK_SIZE);
    }
    return 0;
}

int
kiln_ebs_start_snapshot(struct kiln_aws_client *c, const struct kiln_ebs_start_request *req,
                        struct kiln_ebs_snapshot *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    if (req->volume_size <= 0)
        return kiln_error_set(err, -KILN_E_INVALID, "StartSnapshot: volume size is required");
    _cleanup_json_ json_t *body = json_object();
    json_object_set_new(body, "VolumeSize", json_integer(req->volume_size));
    if (req->parent_snapshot_id)
        json_object_set_new(body, "ParentSnapshotId", json_string(req->parent_snapshot_id));
    if (req->description)
        json_object_set_new(body, "Description", json_string(req->description));
    /* StartSnapshot is idempotent by ClientToken; like the SDKs and the CLI, make one up when
     * the caller has none, so that a retry does not start a second snapshot. */
    _cleanup_free_ char *token = req->client_token ? NULL : kiln_aws_idempotency_token();
    json_object_set_new(body, "ClientToken",
                        json_string(req->client_token ? req->client_token : token));
    if (req->timeout_minutes)
        json_object_set_new(body, "Timeout", json_integer(req->timeout_minutes));
    if (req->encrypted)
        json_object_set_new(body, "Encrypted", json_true());
    if (req->tag_keys && req->tag_keys[0]) {
        json_t *tags = json_array();
        for (size_t i = 0; req->tag_keys[i]; i++) {
            json_t *t = json_object();
            json_object_set_new(t, "Key", json_string(req->tag_keys[i]));
            json_object_set_new(t, "Value", json_string(req->tag_values && req->tag_values[i]
                                                            ? req->tag_values[i] : ""));
            json_array_append_new(tags, t);
        }
        json_object_set_new(body, "Tags", tags);
    }
    _cleanup_free_ char *text = kiln_json_dumps(body, false);
    struct kiln_aws_request rq = {.service = "ebs", .method = "POST", .path = "/snapshots",
                                  .body = text, .body_len = strlen(text),
                                  .expect = KILN_AWS_BODY_JSON};
    kiln_aws_headers_add(&rq.headers, "Content-Type", "application/json");
    struct kiln_aws_response resp = {0};
    int r = kiln_aws_call(c, &rq, &resp, err);
    kiln_aws_request_clear(&rq);
    if (r == 0)
        r = kiln_ebs_parse_snapshot(resp.body.data, resp.body.len, ret, err);
    kiln_aws_response_clear(&resp);
    return r < 0 ? kiln_error_prefix(err, r, "StartSnapshot") : 0;
}

void
kiln_ebs_put_block_request(const char *snapshot_id, uint64_t index, const void *data, size_t len,
                           const uint8_t *digest, unsigned progress, struct kiln_aws_request *req,
                           char **path)
{
    memset(req, 0, sizeof(*req));
    *path = kiln_asprintf("/snapshots/%s/blocks/%" PRIu64, snapshot_id, index);
    req->service = "ebs";
    req->method = "PUT";
    req->path = *path;
    req->body = data;
    req->body_len = len;
    /* The block is covered by its own checksum header; the SigV4 payload is unsigned. */
    req->unsigned_payload = true;
    char sum[45], num[32];
    if (digest)
        EVP_EncodeBlock((unsigned char *)sum, digest, 32);
    else
        kiln_ebs_checksum(data, len, sum);
    snprintf(num, sizeof(num), "%zu", len);
    kiln_aws_headers_add(&req->headers, "Content-Type", "application/octet-stream");
    kiln_aws_headers_add(&req->headers, "x-amz-Data-Length", num);
    kiln_aws_headers_add(&req->headers, "x-amz-Checksum", sum);
    kiln_aws_headers_add(&req->headers, "x-amz-Checksum-Algorithm", "SHA256");
    snprintf(num, sizeof(num), "%u", progress > 100 ? 100 : progress);
    kiln_aws_headers_add(&req->headers, "x-amz-Progress", num);
}

int
kiln_ebs_put_snapshot_block(struct kiln_aws_client *c, const char *snapshot_id, uint64_t index,
                            const void *data, size_t len, unsigned progress,
                            struct kiln_error *err)
{
    if (len != KILN_EBS_BLOCK_SIZE)
        return kiln_error_set(err, -KILN_E_INVALID, "PutSnapshotBlock: blocks are %u bytes",
                              KILN_EBS_BLOCK_SIZE);
    struct kiln_aws_request req;
    _cleanup_free_ char *path = NULL;
    kiln_ebs_put_block_request(snapshot_id, index, data, len, NULL, progress, &req, &path);
    struct kiln_aws_response resp = {0};
    int r = kiln_aws_call(c, &req, &resp, err);
    kiln_aws_request_clear(&req);
    kiln_aws_response_clear(&resp);
    return r < 0 ? kiln_error_prefix(err, r, "PutSnapshotBlock %s/%" PRIu64, snapshot_id, index)
                 : 0;
}

int
kiln_ebs_complete_snapshot(struct kiln_aws_client *c, const char *snapshot_id,
                           uint64_t changed_blocks, const char *aggregate_checksum,
                           char **ret_status, struct kiln_error *err)
{
    if (ret_status)
        *ret_status = NULL;
    _cleanup_free_ char *path = kiln_asprintf("/snapshots/completion/%s", snapshot_id);
    struct kiln_aws_request req = {.service = "ebs", .method = "POST", .path = path,
                                   .expect = KILN_AWS_BODY_JSON};
    char num[32];
    snprintf(num, sizeof(num), "%" PRIu64, changed_blocks);
    kiln_aws_headers_add(&req.headers, "x-amz-ChangedBlocksCount", num);
    if (aggregate_checksum) {
        kiln_aws_headers_add(&req.headers, "x-amz-Checksum", aggregate_checksum);
        kiln_aws_headers_add(&req.headers, "x-amz-Checksum-Algorithm", "SHA256");
        kiln_aws_headers_add(&req.headers, "x-amz-Checksum-Aggregation-Method", "LINEAR");
    }
    struct kiln_aws_response resp = {0};
    int r = kiln_aws_call(c, &req, &resp, err);
    kiln_aws_request_clear(&req);
    if (r == 0) {
        _cleanup_json_ json_t *j = NULL;
        r = parse_json(resp.body.data, resp.body.len, "CompleteSnapshot response", &j, err);
        const char *st = r == 0 ? kiln_json_get_str(j, "Status") : NULL;
        if (r == 0 && !st)
            r = kiln_error_set(err, -KILN_E_PARSE, "CompleteSnapshot response without Status");
        else if (r == 0 && strcmp(st, "error") == 0)
            r = kiln_error_set(err, -KILN_E_REMOTE, "snapshot %s: completion failed",
                               snapshot_id);
        if (r == 0 && ret_status)
            *ret_status = kiln_strdup(st);
    }
    kiln_aws_response_clear(&resp);
    return r < 0 ? kiln_error_prefix(err, r, "CompleteSnapshot %s", snapshot_id) : 0;
}

void
kiln_ebs_block_list_clear(struct kiln_ebs_block_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].token);
    free(l->v);
    free(l->next_token);
    memset(l, 0, sizeof(*l));
}

int
kiln_ebs_parse_block_list(const char *body, size_t len, struct kiln_ebs_block_list *ret,
                          struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    _cleanup_json_ json_t *j = NULL;
    int r = parse_json(body, len, "ListSnapshotBlocks response", &j, err);
    if (r < 0)
        return r;
    json_t *blocks = json_object_get(j, "Blocks");
    if (blocks && !json_is_array(blocks))
        return kiln_error_set(err, -KILN_E_PARSE, "ListSnapshotBlocks: Blocks is not a list");
    size_t i;
    json_t *b;
    json_array_foreach(blocks, i, b) {
        json_t *idx = json_object_get(b, "BlockIndex");
        const char *tok = kiln_json_get_str(b, "BlockToken");
        if (!json_is_integer(idx) || json_integer_value(idx) < 0 || !tok) {
            kiln_ebs_block_list_clear(ret);
            return kiln_error_set(err, -KILN_E_PARSE, "ListSnapshotBlocks: block %zu lacks an "
                                                      "index or token", i);
        }
        ret->v = kiln_reallocarray(ret->v, ret->n + 1, sizeof(*ret->v));
        ret->v[ret->n].index = (uint64_t)json_integer_value(idx);
        ret->v[ret->n].token = kiln_strdup(tok);
        ret->n++;
    }
    ret->next_token = jstr(j, "NextToken");
    ret->volume_size = json_integer_value(json_object_get(j, "VolumeSize"));
    ret->block_size = json_integer_value(json_object_get(j, "BlockSize"));
    return 0;
}

int
kiln_ebs_list_snapshot_blocks(struct kiln_aws_client *c, const char *snapshot_id,
                              const char *next_token, unsigned max_results,
                              struct kiln_ebs_block_list *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    _cleanup_free_ char *path = kiln_asprintf("/snapshots/%s/blocks", snapshot_id);
    _cleanup_buf_ struct kiln_buf q;
    kiln_buf_init(&q);
    if (max_results)
        kiln_buf_appendf(&q, "maxResults=%u", max_results);
    if (next_token) {
        kiln_buf_append_str(&q, q.len ? "&pageToken=" : "pageToken=");
        kiln_aws_uri_encode(&q, next_token, strlen(next_token), false);
    }
    struct kiln_aws_request req = {.service = "ebs", .method = "GET", .path = path,
                                   .query = q.data, .expect = KILN_AWS_BODY_JSON};
    struct kiln_aws_response resp = {0};
    int r = kiln_aws_call(c, &req, &resp, err);
    if (r == 0)
        r = kiln_ebs_parse_block_list(resp.body.data, resp.body.len, ret, err);
    kiln_aws_response_clear(&resp);
    return r < 0 ? kiln_error_prefix(err, r, "ListSnapshotBlocks %s", snapshot_id) : 0;
}

int
kiln_ebs_list_snapshot_blocks_all(struct kiln_aws_client *c, const char *snapshot_id,
                                  struct kiln_ebs_block_list *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    _cleanup_free_ char *token = NULL;
    for (unsigned n = 0; n < 1000000; n++) {
        struct kiln_ebs_block_list part;
        int r = kiln_ebs_list_snapshot_blocks(c, snapshot_id, token, 10000, &part, err);
        if (r < 0) {
            kiln_ebs_block_list_clear(ret);
            return r;
        }
        ret->v = kiln_reallocarray(ret->v, ret->n + part.n + 1, sizeof(*ret->v));
        if (part.n)
            memcpy(ret->v + ret->n, part.v, part.n * sizeof(*part.v));
        ret->n += part.n;
        ret->volume_size = part.volume_size;
        ret->block_size = part.block_size;
        free(part.v);
        bool same = token && part.next_token && strcmp(token, part.next_token) == 0;
        free(token);
        token = part.next_token && *part.next_token ? part.next_token
                                                    : (free(part.next_token), NULL);
        if (!token)
            return 0;
        if (same)
            break;
    }
    kiln_ebs_block_list_clear(ret);
    return kiln_error_set(err, -KILN_E_LIMIT, "ListSnapshotBlocks: pagination does not end");
}

int
kiln_ebs_get_snapshot_block(struct kiln_aws_client *c, const char *snapshot_id, uint64_t index,
                            const char *token, struct kiln_buf *ret, struct kiln_error *err)
{
    kiln_buf_init(ret);
    _cleanup_free_ char *path = kiln_asprintf("/snapshots/%s/blocks/%" PRIu64, snapshot_id,
                                              index);
    _cleanup_buf_ struct kiln_buf q;
    kiln_buf_init(&q);
    kiln_buf_append_str(&q, "blockToken=");
    kiln_aws_uri_encode(&q, token, strlen(token), false);
    struct kiln_aws_request req = {.service = "ebs", .method = "GET", .path = path,
                                   .query = q.data};
    struct kiln_aws_response resp = {0};
    int r = kiln_aws_call(c, &req, &resp, err);
    if (r == 0) {
        const char *sum = kiln_aws_headers_get(&resp.headers, "x-amz-Checksum");
        const char *dl = kiln_aws_headers_get(&resp.headers, "x-amz-Data-Length");
        char mine[45];
        kiln_ebs_checksum(resp.body.data, resp.body.len, mine);
        if (resp.body.len != KILN_EBS_BLOCK_SIZE)
            r = kiln_error_set(err, -EIO, "block of %zu bytes", resp.body.len);
        else if (dl && strtoull(dl, NULL, 10) != resp.body.len)
            r = kiln_error_set(err, -EIO, "x-amz-Data-Length %s but %zu bytes received", dl,
                               resp.body.len);
        else if (!sum || strcmp(sum, mine) != 0)
            r = kiln_error_set(err, -EIO, "checksum mismatch (%s, computed %s)",
                               sum ? sum : "none", mine);
        if (r == 0) {
            *ret = resp.body;
            kiln_buf_init(&resp.body);
        }
    }
    kiln_aws_response_clear(&resp);
    return r < 0 ? kiln_error_prefix(err, r, "GetSnapshotBlock %s/%" PRIu64, snapshot_id, index)
                 : 0;
}
