/* S3 (REST-XML, path-style addressing): objects, ListObjectsV2 with pagination, multipart
 * upload with parallel parts, presigned URLs. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cloud/http.h"
#include "cloud/xml.h"

#define KILN_S3_MIN_PART (5ull << 20)
#define KILN_S3_DEFAULT_PART (16ull << 20)
#define KILN_S3_MAX_PARTS 10000

/* CreateBucket in the client's region (BucketAlreadyOwnedByYou counts as success). */
int kiln_s3_create_bucket(struct kiln_aws_client *c, const char *bucket, struct kiln_error *err);

int kiln_s3_put_object(struct kiln_aws_client *c, const char *bucket, const char *key,
                       const void *data, size_t len, const char *content_type, char **ret_etag,
                       struct kiln_error *err);
/* Streams the object into path (created or truncated, mode 0600). */
int kiln_s3_get_object(struct kiln_aws_client *c, const char *bucket, const char *key,
                       const char *path, struct kiln_error *err);
/* Into memory, at most max bytes. */
int kiln_s3_get_object_buf(struct kiln_aws_client *c, const char *bucket, const char *key,
                           size_t max, struct kiln_buf *ret, struct kiln_error *err);

struct kiln_s3_object_info {
    unsigned long long size;
    char *etag;
    char *content_type;
    char *last_modified;
};
void kiln_s3_object_info_clear(struct kiln_s3_object_info *i);
/* -ENOENT when the object does not exist. */
int kiln_s3_head_object(struct kiln_aws_client *c, const char *bucket, const char *key,
                        struct kiln_s3_object_info *ret, struct kiln_error *err);
int kiln_s3_delete_object(struct kiln_aws_client *c, const char *bucket, const char *key,
                          struct kiln_error *err);

struct kiln_s3_object {
    char *key;
    unsigned long long size;
    char *etag;
    char *last_modified;
};
struct kiln_s3_list {
    struct kiln_s3_object *v;
    size_t n;
    char **common_prefixes;
    size_t n_prefixes;
    bool truncated;
    char *next_token;
};
void kiln_s3_list_clear(struct kiln_s3_list *l);
struct kiln_s3_list_request {
    const char *prefix;
    const char *delimiter;
    const char *continuation_token;
    unsigned max_keys;
    const char *expected_bucket_owner; /* x-amz-expected-bucket-owner, or NULL */
};
int kiln_s3_list_objects(struct kiln_aws_client *c, const char *bucket,
                         const struct kiln_s3_list_request *req, struct kiln_s3_list *ret,
                         struct kiln_error *err);
int kiln_s3_list_objects_all(struct kiln_aws_client *c, const char *bucket,
                             const struct kiln_s3_list_request *req, struct kiln_s3_list *ret,
                             struct kiln_error *err);
int kiln_s3_parse_list(xmlDoc *doc, struct kiln_s3_list *ret, struct kiln_error *err);

/* Multipart upload of a file: parts of part_size bytes (0: 16 MiB, grown to stay within
 * 10000 parts) sent in parallel; the upload is aborted on failure. */
int kiln_s3_upload_file(struct kiln_aws_client *c, const char *bucket, const char *key,
                        const char *path, unsigned long long part_size, struct kiln_error *err);
/* The pieces, for callers that stream. */
int kiln_s3_create_multipart_upload(struct kiln_aws_client *c, const char *bucket,
                                    const char *key, char **ret_upload_id,
                                    struct kiln_error *err);
int kiln_s3_abort_multipart_upload(struct kiln_aws_client *c, const char *bucket, const char *key,
                                   const char *upload_id, struct kiln_error *err);
int kiln_s3_complete_multipart_upload(struct kiln_aws_client *c, const char *bucket,
                                      const char *key, const char *upload_id,
                                      char *const *etags, size_t n_parts, struct kiln_error *err);

/* Per-call options for the *_opts variants. */
struct kiln_s3_options {
    /* Account id sent as x-amz-expected-bucket-owner on every request of the call: S3 refuses
     * it (403 AccessDenied) when another account owns the bucket. NULL: not sent. */
    const char *expected_bucket_owner;
};
/* kiln_s3_get_object and kiln_s3_upload_file with options (opts may be NULL). */
int kiln_s3_get_object_opts(struct kiln_aws_client *c, const char *bucket, const char *key,
                            const char *path, const struct kiln_s3_options *opts,
                            struct kiln_error *err);
int kiln_s3_upload_file_opts(struct kiln_aws_client *c, const char *bucket, const char *key,
                             const char *path, unsigned long long part_size,
                             const struct kiln_s3_options *opts, struct kiln_error *err);

/* Presigned GET or PUT URL valid for expires seconds. */
int kiln_s3_presign(struct kiln_aws_client *c, const char *method, const char *bucket,
                    const char *key, unsigned expires, char **ret_url, struct kiln_error *err);
