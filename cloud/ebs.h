/* EBS direct APIs (REST-JSON, 2019-11-02): write a snapshot block by block and read it back;
 * and the uploader that turns a local raw image into a snapshot (ebs-upload.c). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cloud/http.h"

#define KILN_EBS_BLOCK_SIZE (512u * 1024u)

struct kiln_ebs_snapshot {
    char *snapshot_id;
    char *owner_id;
    char *status;
    long long volume_size; /* GiB */
    long long block_size;
    char *description;
};
void kiln_ebs_snapshot_clear(struct kiln_ebs_snapshot *s);

struct kiln_ebs_start_request {
    long long volume_size;         /* GiB, required */
    const char *parent_snapshot_id;
    const char *description;
    const char *client_token;      /* idempotency */
    unsigned timeout_minutes;      /* 0: service default */
    bool encrypted;
    const char *const *tag_keys;   /* parallel NULL-terminated arrays */
    const char *const *tag_values;
};
int kiln_ebs_start_snapshot(struct kiln_aws_client *c, const struct kiln_ebs_start_request *req,
                            struct kiln_ebs_snapshot *ret, struct kiln_error *err);

/* Base64 SHA-256 of a block, as x-amz-Checksum carries it (45 bytes with the NUL). */
void kiln_ebs_checksum(const void *data, size_t len, char out[45]);
/* Linear aggregate: SHA-256 over the concatenated raw per-block digests in block order. */
void kiln_ebs_aggregate_checksum(const uint8_t (*digests)[32], size_t n, char out[45]);

/* Fill a PutSnapshotBlock request (path/headers/body borrowed from the caller's buffers);
 * digest is the block's SHA-256 when the caller has it (NULL: computed here). Release with
 * kiln_aws_request_clear and free(*path). */
void kiln_ebs_put_block_request(const char *snapshot_id, uint64_t index, const void *data,
                                size_t len, const uint8_t *digest, unsigned progress,
                                struct kiln_aws_request *req, char **path);
int kiln_ebs_put_snapshot_block(struct kiln_aws_client *c, const char *snapshot_id, uint64_t index,
                                const void *data, size_t len, unsigned progress,
                                struct kiln_error *err);
int kiln_ebs_complete_snapshot(struct kiln_aws_client *c, const char *snapshot_id,
                               uint64_t changed_blocks, const char *aggregate_checksum,
                               char **ret_status, struct kiln_error *err);

struct kiln_ebs_block {
    uint64_t index;
    char *token;
};
struct kiln_ebs_block_list {
    struct kiln_ebs_block *v;
    size_t n;
    char *next_token;
    long long volume_size;
    long long block_size;
};
void kiln_ebs_block_list_clear(struct kiln_ebs_block_list *l);
int kiln_ebs_list_snapshot_blocks(struct kiln_aws_client *c, const char *snapshot_id,
                                  const char *next_token, unsigned max_results,
                                  struct kiln_ebs_block_list *ret, struct kiln_error *err);
int kiln_ebs_list_snapshot_blocks_all(struct kiln_aws_client *c, const char *snapshot_id,
                                      struct kiln_ebs_block_list *ret, struct kiln_error *err);
int kiln_ebs_parse_block_list(const char *body, size_t len, struct kiln_ebs_block_list *ret,
                              struct kiln_error *err);
int kiln_ebs_parse_snapshot(const char *body, size_t len, struct kiln_ebs_snapshot *ret,
                            struct kiln_error *err);
/* One block into ret (KILN_EBS_BLOCK_SIZE bytes); the checksum header is verified. */
int kiln_ebs_get_snapshot_block(struct kiln_aws_client *c, const char *snapshot_id,
                                uint64_t index, const char *token, struct kiln_buf *ret,
                                struct kiln_error *err);

/* The uploader: a raw image file becomes a snapshot. */
struct kiln_ebs_upload_options {
    const char *description;
    const char *client_token;
    double budget;        /* seconds for the whole upload, default 3600 */
    unsigned parallel;    /* blocks in flight, default 16 */
    const char *const *tag_keys;
    const char *const *tag_values;
    /* Resuming: with a journal file (and a client_token, which makes StartSnapshot return the
     * same snapshot again), blocks already written in an earlier, interrupted run are not
     * sent again when their content is unchanged. The journal is removed on success. */
    const char *journal;
};
struct kiln_ebs_upload_result {
    char *snapshot_id;
    uint64_t blocks_total;     /* volume size in blocks */
    uint64_t blocks_sent;      /* allocated, non-zero blocks sent */
    uint64_t blocks_zero;      /* allocated but all-zero: skipped */
    uint64_t blocks_resumed;   /* written by an earlier run (journal): not sent again */
    uint64_t bytes_read;       /* bytes read from the image */
    uint64_t bytes_sent;       /* request body bytes sent, retries included */
    unsigned long retries;
};
void kiln_ebs_upload_result_clear(struct kiln_ebs_upload_result *r);
int kiln_ebs_upload_image(struct kiln_aws_client *c, const char *path,
                          const struct kiln_ebs_upload_options *opts,
                          struct kiln_ebs_upload_result *ret, struct kiln_error *err);
/* The reader: a snapshot back into a (sparse) file of volume size. */
int kiln_ebs_download_snapshot(struct kiln_aws_client *c, const char *snapshot_id,
                               const char *path, unsigned parallel, uint64_t *ret_blocks,
                               struct kiln_error *err);
