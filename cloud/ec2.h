/* EC2 API (Query protocol, version 2016-11-15) with typed requests and results, pagination and
 * waiters. String arrays in requests are NULL-terminated; results own their strings and are
 * released with the matching _clear/_free functions. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "cloud/http.h"
#include "cloud/xml.h"

#define KILN_EC2_VERSION "2016-11-15"

struct kiln_ec2_tag {
    char *key;
    char *value;
};

/* Tags in requests: borrowed strings. */
struct kiln_ec2_tag_spec {
    const char *key;
    const char *value;
};

struct kiln_ec2_filter {
    const char *name;
    const char *const *values; /* NULL-terminated */
};

struct kiln_ec2_instance {
    char *instance_id;
    char *reservation_id;
    char *owner_id;
    char *image_id;
    char *instance_type;
    int state_code;
    char *state_name;
    char *private_ip;
    char *public_ip;
    char *private_dns_name;
    char *public_dns_name;
    char *subnet_id;
    char *vpc_id;
    char *availability_zone;
    char *launch_time;
    char *architecture;
    char *root_device_name;
    char *root_device_type;
    char *key_name;
    char *state_reason_code;
    char *state_reason_message;
    int ami_launch_index;
    struct kiln_ec2_tag *tags;
    size_t n_tags;
};

struct kiln_ec2_instances {
    struct kiln_ec2_instance *v;
    size_t n;
    char *next_token;
};
void kiln_ec2_instances_clear(struct kiln_ec2_instances *l);

struct kiln_ec2_run_instances_request {
    const char *image_id;
    const char *instance_type;
    unsigned min_count;  /* default 1 */
    unsigned max_count;  /* default min_count */
    const char *key_name;
    const char *subnet_id;
    const char *const *security_group_ids;
    const char *user_data; /* raw; base64-encoded here */
    const char *iam_instance_profile_name;
    const char *client_token;
    const struct kiln_ec2_tag_spec *tags; /* applied to the instance and its volumes */
    size_t n_tags;
    bool terminate_on_shutdown;
};
int kiln_ec2_run_instances(struct kiln_aws_client *c,
                           const struct kiln_ec2_run_instances_request *req,
                           struct kiln_ec2_instances *ret, struct kiln_error *err);

struct kiln_ec2_describe_request {
    const char *const *ids;        /* instance/image/snapshot/task ids */
    const char *const *owners;     /* images: Owner.N; snapshots: Owner.N */
    const struct kiln_ec2_filter *filters;
    size_t n_filters;
    const char *next_token;
    unsigned max_results;          /* 0: service default */
};
/* One page. */
int kiln_ec2_describe_instances(struct kiln_aws_client *c,
                                const struct kiln_ec2_describe_request *req,
                                struct kiln_ec2_instances *ret, struct kiln_error *err);
/* Every page. */
int kiln_ec2_describe_instances_all(struct kiln_aws_client *c,
                                    const struct kiln_ec2_describe_request *req,
                                    struct kiln_ec2_instances *ret, struct kiln_error *err);

struct kiln_ec2_state_change {
    char *instance_id;
    int current_code;
    char *current_name;
    int previous_code;
    char *previous_name;
};
struct kiln_ec2_state_changes {
    struct kiln_ec2_state_change *v;
    size_t n;
};
void kiln_ec2_state_changes_clear(struct kiln_ec2_state_changes *l);
int kiln_ec2_stop_instances(struct kiln_aws_client *c, const char *const *ids, bool force,
                            struct kiln_ec2_state_changes *ret, struct kiln_error *err);
int kiln_ec2_terminate_instances(struct kiln_aws_client *c, const char *const *ids,
                                 struct kiln_ec2_state_changes *ret, struct kiln_error *err);

struct kiln_ec2_create_image_request {
    const char *instance_id;
    const char *name;
    const char *description;
    bool no_reboot;
    const struct kiln_ec2_tag_spec *tags; /* applied to the image and its snapshots */
    size_t n_tags;
};
int kiln_ec2_create_image(struct kiln_aws_client *c, const struct kiln_ec2_create_image_request *req,
                          char **ret_image_id, struct kiln_error *err);

struct kiln_ec2_block_device {
    char *device_name;
    char *snapshot_id;
    long long volume_size; /* GiB, 0 when absent */
    char *volume_type;
    bool delete_on_termination;
};

struct kiln_ec2_image {
    char *image_id;
    char *name;
    char *description;
    char *state;
    char *owner_id;
    char *architecture;
    char *creation_date;
    char *root_device_name;
    char *root_device_type;
    char *virtualization_type;
    char *state_reason_message;
    bool is_public;
    struct kiln_ec2_block_device *devices;
    size_t n_devices;
    struct kiln_ec2_tag *tags;
    size_t n_tags;
};
struct kiln_ec2_images {
    struct kiln_ec2_image *v;
    size_t n;
    char *next_token;
};
void kiln_ec2_images_clear(struct kiln_ec2_images *l);
int kiln_ec2_describe_images(struct kiln_aws_client *c, const struct kiln_ec2_describe_request *req,
                             struct kiln_ec2_images *ret, struct kiln_error *err);

struct kiln_ec2_block_device_spec {
    const char *device_name;
    const char *snapshot_id;
    long long volume_size;
    const char *volume_type;
    bool delete_on_termination;
};
struct kiln_ec2_register_image_request {
    const char *name;
    const char *description;
    const char *architecture;        /* x86_64, arm64 */
    const char *root_device_name;    /* /dev/xvda */
    const char *virtualization_type; /* hvm */
    const char *boot_mode;           /* uefi, legacy-bios, uefi-preferred; NULL: default */
    bool ena_support;
    const struct kiln_ec2_block_device_spec *devices;
    size_t n_devices;
};
int kiln_ec2_register_image(struct kiln_aws_client *c,
                            const struct kiln_ec2_register_image_request *req,
                            char **ret_image_id, struct kiln_error *err);
int kiln_ec2_deregister_image(struct kiln_aws_client *c, const char *image_id,
                              struct kiln_error *err);

struct kiln_ec2_copy_image_request {
    const char *source_region;
    const char *source_image_id;
    const char *name;
    const char *description;
    const char *client_token;
    bool encrypted;
};
/* c is a client of the destination region. */
int kiln_ec2_copy_image(struct kiln_aws_client *c, const struct kiln_ec2_copy_image_request *req,
                        char **ret_image_id, struct kiln_error *err);

struct kiln_ec2_permission_change {
    const char *const *add_user_ids;
    const char *const *remove_user_ids;
    const char *const *add_groups;    /* "all" makes it public */
    const char *const *remove_groups;
};
int kiln_ec2_modify_image_launch_permission(struct kiln_aws_client *c, const char *image_id,
                                            const struct kiln_ec2_permission_change *ch,
                                            struct kiln_error *err);
int kiln_ec2_modify_image_description(struct kiln_aws_client *c, const char *image_id,
                                      const char *description, struct kiln_error *err);
int kiln_ec2_modify_snapshot_create_volume_permission(struct kiln_aws_client *c,
                                                      const char *snapshot_id,
                                                      const struct kiln_ec2_permission_change *ch,
                                                      struct kiln_error *err);

int kiln_ec2_create_tags(struct kiln_aws_client *c, const char *const *resource_ids,
                         const struct kiln_ec2_tag_spec *tags, size_t n_tags,
                         struct kiln_error *err);

struct kiln_ec2_snapshot {
    char *snapshot_id;
    char *volume_id;
    char *state;
    char *progress;
    char *start_time;
    char *owner_id;
    long long volume_size;
    char *description;
    char *state_message;
    struct kiln_ec2_tag *tags;
    size_t n_tags;
};
struct kiln_ec2_snapshots {
    struct kiln_ec2_snapshot *v;
    size_t n;
    char *next_token;
};
void kiln_ec2_snapshots_clear(struct kiln_ec2_snapshots *l);
int kiln_ec2_describe_snapshots(struct kiln_aws_client *c,
                                const struct kiln_ec2_describe_request *req,
                                struct kiln_ec2_snapshots *ret, struct kiln_error *err);
int kiln_ec2_describe_snapshots_all(struct kiln_aws_client *c,
                                    const struct kiln_ec2_describe_request *req,
                                    struct kiln_ec2_snapshots *ret, struct kiln_error *err);
int kiln_ec2_delete_snapshot(struct kiln_aws_client *c, const char *snapshot_id,
                             struct kiln_error *err);

struct kiln_ec2_import_snapshot_request {
    const char *description;
    const char *format;      /* RAW, VHD, VMDK */
    const char *s3_bucket;
    const char *s3_key;
    const char *role_name;   /* NULL: vmimport */
    const char *client_token;
};
struct kiln_ec2_import_task {
    char *import_task_id;
    char *snapshot_id;
    char *status;            /* active, completed, deleting, deleted */
    char *status_message;
    char *progress;
    char *format;
    char *description;
};
struct kiln_ec2_import_tasks {
    struct kiln_ec2_import_task *v;
    size_t n;
    char *next_token;
};
void kiln_ec2_import_tasks_clear(struct kiln_ec2_import_tasks *l);
int kiln_ec2_import_snapshot(struct kiln_aws_client *c,
                             const struct kiln_ec2_import_snapshot_request *req,
                             struct kiln_ec2_import_tasks *ret, struct kiln_error *err);
int kiln_ec2_describe_import_snapshot_tasks(struct kiln_aws_client *c,
                                            const struct kiln_ec2_describe_request *req,
                                            struct kiln_ec2_import_tasks *ret,
                                            struct kiln_error *err);

struct kiln_ec2_region {
    char *name;
    char *endpoint;
    char *opt_in_status;
};
struct kiln_ec2_regions {
    struct kiln_ec2_region *v;
    size_t n;
};
void kiln_ec2_regions_clear(struct kiln_ec2_regions *l);
int kiln_ec2_describe_regions(struct kiln_aws_client *c, bool all_regions,
                              struct kiln_ec2_regions *ret, struct kiln_error *err);

/* Waiters: poll every interval seconds until the target state, a failure state (an error
 * naming it), the time budget (-ETIMEDOUT) or *cancel (-ECANCELED). */
struct kiln_ec2_wait {
    double budget;    /* seconds, default 600 */
    double interval;  /* seconds, default 15 */
    const volatile int *cancel;
};
int kiln_ec2_wait_instances(struct kiln_aws_client *c, const char *const *ids,
                            const char *state, const struct kiln_ec2_wait *w,
                            struct kiln_error *err);
int kiln_ec2_wait_image_available(struct kiln_aws_client *c, const char *image_id,
                                  const struct kiln_ec2_wait *w, struct kiln_error *err);
int kiln_ec2_wait_snapshot_completed(struct kiln_aws_client *c, const char *snapshot_id,
                                     const struct kiln_ec2_wait *w, struct kiln_error *err);
int kiln_ec2_wait_import_snapshot(struct kiln_aws_client *c, const char *task_id,
                                  const struct kiln_ec2_wait *w, char **ret_snapshot_id,
                                  struct kiln_error *err);

/* Response parsers (exposed for the corpus tests and fuzzers); doc is a whole response. */
int kiln_ec2_parse_instances(xmlDoc *doc, struct kiln_ec2_instances *ret, struct kiln_error *err);
int kiln_ec2_parse_images(xmlDoc *doc, struct kiln_ec2_images *ret, struct kiln_error *err);
int kiln_ec2_parse_snapshots(xmlDoc *doc, struct kiln_ec2_snapshots *ret, struct kiln_error *err);
int kiln_ec2_parse_state_changes(xmlDoc *doc, struct kiln_ec2_state_changes *ret,
                                 struct kiln_error *err);
int kiln_ec2_parse_import_tasks(xmlDoc *doc, struct kiln_ec2_import_tasks *ret,
                                struct kiln_error *err);
int kiln_ec2_parse_regions(xmlDoc *doc, struct kiln_ec2_regions *ret, struct kiln_error *err);
/* The first <imageId> of CreateImage/RegisterImage/CopyImage. */
int kiln_ec2_parse_image_id(xmlDoc *doc, char **ret, struct kiln_error *err);
