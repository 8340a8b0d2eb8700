/* EC2 operations over the Query protocol: request building, response parsing, pagination and
 * waiters. */
#include "cloud/ec2.h"

#include <openssl/evp.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cloud/query.h"

#define GROW(arr, n)                                                                               \
    ((arr) = kiln_reallocarray((arr), (n) + 1, sizeof(*(arr))),                                   \
     memset(&(arr)[(n)], 0, sizeof(*(arr))), &(arr)[(n)++])

/* --- request helpers --------------------------------------------------------------------- */

static void
add_list(struct kiln_aws_query *q, const char *prefix, const char *const *v)
{
    for (size_t i = 0; v && v[i]; i++)
        kiln_aws_query_addf(q, v[i], "%s.%zu", prefix, i + 1);
}

static void
add_filters(struct kiln_aws_query *q, const struct kiln_ec2_filter *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        kiln_aws_query_addf(q, f[i].name, "Filter.%zu.Name", i + 1);
        for (size_t k = 0; f[i].values && f[i].values[k]; k++)
            kiln_aws_query_addf(q, f[i].values[k], "Filter.%zu.Value.%zu", i + 1, k + 1);
    }
}

static void
add_tag_specs(struct kiln_aws_query *q, const char *const *types,
              const struct kiln_ec2_tag_spec *tags, size_t n)
{
    if (n == 0)
        return;
    for (size_t t = 0; types[t]; t++) {
        kiln_aws_query_addf(q, types[t], "TagSpecification.%zu.ResourceType", t + 1);
        for (size_t i = 0; i < n; i++) {
            kiln_aws_query_addf(q, tags[i].key, "TagSpecification.%zu.Tag.%zu.Key", t + 1, i + 1);
            kiln_aws_query_addf(q, tags[i].value ? tags[i].value : "",
                                "TagSpecification.%zu.Tag.%zu.Value", t + 1, i + 1);
        }
    }
}

static void
add_uint(struct kiln_aws_query *q, const char *key, unsigned long long v)
{
    char b[32];
    snprintf(b, sizeof(b), "%llu", v);
    kiln_aws_query_add(q, key, b);
}

static void
add_describe(struct kiln_aws_query *q, const char *id_prefix,
             const struct kiln_ec2_describe_request *req)
{
    if (!req)
        return;
    add_list(q, id_prefix, req->ids);
    add_list(q, "Owner", req->owners);
    add_filters(q, req->filters, req->n_filters);
    kiln_aws_query_add(q, "NextToken", req->next_token);
    if (req->max_results)
        add_uint(q, "MaxResults", req->max_results);
}

static int
call(struct kiln_aws_client *c, struct kiln_aws_query *q, const char *action, xmlDoc **doc,
     struct kiln_error *err)
{
    int r = kiln_aws_query_call(c, "ec2", q, doc, err);
    kiln_aws_query_clear(q);
    if (r < 0)
        return kiln_error_prefix(err, r, "%s", action);
    return 0;
}

static int
need(const char *v, const char *what, const char *action, struct kiln_error *err)
{
    if (v && *v)
        return 0;
    return kiln_error_set(err, -KILN_E_INVALID, "%s: %s is required", action, what);
}

/* --- parsing helpers --------------------------------------------------------------------- */

static void
parse_tags(const xmlNode *n, struct kiln_ec2_tag **tags, size_t *n_tags)
{
    for (xmlNode *it = kiln_aws_xml_path(n, "tagSet/item"); it; it = kiln_aws_xml_next(it)) {
        struct kiln_ec2_tag *t = GROW(*tags, *n_tags);
        t->key = kiln_aws_xml_text(it, "key");
        t->value = kiln_aws_xml_text(it, "value");
    }
}

static void
free_tags(struct kiln_ec2_tag *tags, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(tags[i].key);
        free(tags[i].value);
    }
    free(tags);
}

static char *
next_token(xmlNode *root)
{
    char *t = kiln_aws_xml_text(root, "nextToken");
    if (t && !*t) {
        free(t);
        return NULL;
    }
    return t;
}

static void
parse_instance(const xmlNode *it, const xmlNode *resv, struct kiln_ec2_instance *in)
{
    in->instance_id = kiln_aws_xml_text(it, "instanceId");
    in->reservation_id = kiln_aws_xml_text(resv, "reservationId");
    in->owner_id = kiln_aws_xml_text(resv, "ownerId");
    in->image_id = kiln_aws_xml_text(it, "imageId");
    in->instance_type = kiln_aws_xml_text(it, "instanceType");
    in->state_code = (int)kiln_aws_xml_ll(it, "instanceState/code", -1);
    in->state_name = kiln_aws_xml_text(it, "instanceState/name");
    in->private_ip = kiln_aws_xml_text(it, "privateIpAddress");
    in->public_ip = kiln_aws_xml_text(it, "ipAddress");
    in->private_dns_name = kiln_aws_xml_text(it, "privateDnsName");
    in->public_dns_name = kiln_aws_xml_text(it, "dnsName");
    in->subnet_id = kiln_aws_xml_text(it, "subnetId");
    in->vpc_id = kiln_aws_xml_text(it, "vpcId");
    in->availability_zone = kiln_aws_xml_text(it, "placement/availabilityZone");
    in->launch_time = kiln_aws_xml_text(it, "launchTime");
    in->architecture = kiln_aws_xml_text(it, "architecture");
    in->root_device_name = kiln_aws_xml_text(it, "rootDeviceName");
    in->root_device_type = kiln_aws_xml_text(it, "rootDeviceType");
    in->key_name = kiln_aws_xml_text(it, "keyName");
    in->state_reason_code = kiln_aws_xml_text(it, "stateReason/code");
    in->state_reason_message = kiln_aws_xml_text(it, "stateReason/message");
    in->ami_launch_index = (int)kiln_aws_xml_ll(it, "amiLaunchIndex", 0);
    parse_tags(it, &in->tags, &in->n_tags);
}

static void
instance_clear(struct kiln_ec2_instance *in)
{
    char **fields[] = {&in->instance_id, &in->reservation_id, &in->owner_id, &in->image_id,
                       &in->instance_type, &in->state_name, &in->private_ip, &in->public_ip,
                       &in->private_dns_name, &in->public_dns_name, &in->subnet_id, &in->vpc_id,
                       &in->availability_zone, &in->launch_time, &in->architecture,
                       &in->root_device_name, &in->root_device_type, &in->key_name,
                       &in->state_reason_code, &in->state_reason_message};
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
        free(*fields[i]);
    free_tags(in->tags, in->n_tags);
}

void
kiln_ec2_instances_clear(struct kiln_ec2_instances *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        instance_clear(&l->v[i]);
    free(l->v);
    free(l->next_token);
    memset(l, 0, sizeof(*l));
}

int
kiln_ec2_parse_instances(xmlDoc *doc, struct kiln_ec2_instances *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    xmlNode *root = kiln_aws_xml_root(doc);
    xmlNode *set = kiln_aws_xml_child(root, "reservationSet");
    if (set) {
        for (xmlNode *r = kiln_aws_xml_child(set, "item"); r; r = kiln_aws_xml_next(r))
            for (xmlNode *it = kiln_aws_xml_path(r, "instancesSet/item"); it;
                 it = kiln_aws_xml_next(it))
                parse_instance(it, r, GROW(ret->v, ret->n));
    } else if (kiln_aws_xml_child(root, "instancesSet")) {
        /* RunInstances: the root is the reservation. */
        for (xmlNode *it = kiln_aws_xml_path(root, "instancesSet/item"); it;
             it = kiln_aws_xml_next(it))
            parse_instance(it, root, GROW(ret->v, ret->n));
    } else {
        return kiln_error_set(err, -KILN_E_PARSE, "%s response has no reservationSet or "
                                                  "instancesSet", (const char *)root->name);
    }
    for (size_t i = 0; i < ret->n; i++)
        if (!ret->v[i].instance_id) {
            kiln_ec2_instances_clear(ret);
            return kiln_error_set(err, -KILN_E_PARSE, "instance without instanceId");
        }
    ret->next_token = next_token(root);
    return 0;
}

static void
image_clear(struct kiln_ec2_image *im)
{
    char **fields[] = {&im->image_id, &im->name, &im->description, &im->state, &im->owner_id,
                       &im->architecture, &im->creation_date, &im->root_device_name,
                       &im->root_device_type, &im->virtualization_type, &im->state_reason_message};
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
        free(*fields[i]);
    for (size_t i = 0; i < im->n_devices; i++) {
        free(im->devices[i].device_name);
        free(im->devices[i].snapshot_id);
        free(im->devices[i].volume_type);
    }
    free(im->devices);
    free_tags(im->tags, im->n_tags);
}

void
kiln_ec2_images_clear(struct kiln_ec2_images *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        image_clear(&l->v[i]);
    free(l->v);
    free(l->next_token);
    memset(l, 0, sizeof(*l));
}

int
kiln_ec2_parse_images(xmlDoc *doc, struct kiln_ec2_images *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    xmlNode *root = kiln_aws_xml_root(doc);
    xmlNode *set = kiln_aws_xml_child(root, "imagesSet");
    if (!set)
        return kiln_error_set(err, -KILN_E_PARSE, "DescribeImages response without imagesSet");
    for (xmlNode *it = kiln_aws_xml_child(set, "item"); it; it = kiln_aws_xml_next(it)) {
        struct kiln_ec2_image *im = GROW(ret->v, ret->n);
        im->image_id = kiln_aws_xml_text(it, "imageId");
        im->name = kiln_aws_xml_text(it, "name");
        im->description = kiln_aws_xml_text(it, "description");
        im->state = kiln_aws_xml_text(it, "imageState");
        im->owner_id = kiln_aws_xml_text(it, "imageOwnerId");
        im->architecture = kiln_aws_xml_text(it, "architecture");
        im->creation_date = kiln_aws_xml_text(it, "creationDate");
        im->root_device_name = kiln_aws_xml_text(it, "rootDeviceName");
        im->root_device_type = kiln_aws_xml_text(it, "rootDeviceType");
        im->virtualization_type = kiln_aws_xml_text(it, "virtualizationType");
        im->state_reason_message = kiln_aws_xml_text(it, "stateReason/message");
        im->is_public = kiln_aws_xml_bool(it, "isPublic");
        for (xmlNode *d = kiln_aws_xml_path(it, "blockDeviceMapping/item"); d;
             d = kiln_aws_xml_next(d)) {
            struct kiln_ec2_block_device *bd = GROW(im->devices, im->n_devices);
            bd->device_name = kiln_aws_xml_text(d, "deviceName");
            bd->snapshot_id = kiln_aws_xml_text(d, "ebs/snapshotId");
            bd->volume_size = kiln_aws_xml_ll(d, "ebs/volumeSize", 0);
            bd->volume_type = kiln_aws_xml_text(d, "ebs/volumeType");
            bd->delete_on_termination = kiln_aws_xml_bool(d, "ebs/deleteOnTermination");
        }
        parse_tags(it, &im->tags, &im->n_tags);
        if (!im->image_id) {
            kiln_ec2_images_clear(ret);
            return kiln_error_set(err, -KILN_E_PARSE, "image without imageId");
        }
    }
    ret->next_token = next_token(root);
    return 0;
}

void
kiln_ec2_snapshots_clear(struct kiln_ec2_snapshots *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        struct kiln_ec2_snapshot *s = &l->v[i];
        char **fields[] = {&s->snapshot_id, &s->volume_id, &s->state, &s->progress,
                           &s->start_time, &s->owner_id, &s->description, &s->state_message};
        for (size_t k = 0; k < ARRAY_SIZE(fields); k++)
            free(*fields[k]);
        free_tags(s->tags, s->n_tags);
    }
    free(l->v);
    free(l->next_token);
    memset(l, 0, sizeof(*l));
}

int
kiln_ec2_parse_snapshots(xmlDoc *doc, struct kiln_ec2_snapshots *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    xmlNode *root = kiln_aws_xml_root(doc);
    xmlNode *set = kiln_aws_xml_child(root, "snapshotSet");
    if (!set)
        return kiln_error_set(err, -KILN_E_PARSE, "DescribeSnapshots response without "
                                                  "snapshotSet");
    for (xmlNode *it = kiln_aws_xml_child(set, "item"); it; it = kiln_aws_xml_next(it)) {
        struct kiln_ec2_snapshot *s = GROW(ret->v, ret->n);
        s->snapshot_id = kiln_aws_xml_text(it, "snapshotId");
        s->volume_id = kiln_aws_xml_text(it, "volumeId");
        s->state = kiln_aws_xml_text(it, "status");
        s->progress = kiln_aws_xml_text(it, "progress");
        s->start_time = kiln_aws_xml_text(it, "startTime");
        s->owner_id = kiln_aws_xml_text(it, "ownerId");
        s->volume_size = kiln_aws_xml_ll(it, "volumeSize", 0);
        s->description = kiln_aws_xml_text(it, "description");
        s->state_message = kiln_aws_xml_text(it, "statusMessage");
        parse_tags(it, &s->tags, &s->n_tags);
        if (!s->snapshot_id) {
            kiln_ec2_snapshots_clear(ret);
            return kiln_error_set(err, -KILN_E_PARSE, "snapshot without snapshotId");
        }
    }
    ret->next_token = next_token(root);
    return 0;
}

void
kiln_ec2_state_changes_clear(struct kiln_ec2_state_changes *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].instance_id);
        free(l->v[i].current_name);
        free(l->v[i].previous_name);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

int
kiln_ec2_parse_state_changes(xmlDoc *doc, struct kiln_ec2_state_changes *ret,
                             struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    xmlNode *set = kiln_aws_xml_child(kiln_aws_xml_root(doc), "instancesSet");
    if (!set)
        return kiln_error_set(err, -KILN_E_PARSE, "response without instancesSet");
    for (xmlNode *it = kiln_aws_xml_child(set, "item"); it; it = kiln_aws_xml_next(it)) {
        struct kiln_ec2_state_change *s = GROW(ret->v, ret->n);
        s->instance_id = kiln_aws_xml_text(it, "instanceId");
        s->current_code = (int)kiln_aws_xml_ll(it, "currentState/code", -1);
        s->current_name = kiln_aws_xml_text(it, "currentState/name");
        s->previous_code = (int)kiln_aws_xml_ll(it, "previousState/code", -1);
        s->previous_name = kiln_aws_xml_text(it, "previousState/name");
        if (!s->instance_id) {
            kiln_ec2_state_changes_clear(ret);
            return kiln_error_set(err, -KILN_E_PARSE, "state change without instanceId");
        }
    }
    return 0;
}

void
kiln_ec2_import_tasks_clear(struct kiln_ec2_import_tasks *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        struct kiln_ec2_import_task *t = &l->v[i];
        char **fields[] = {&t->import_task_id, &t->snapshot_id, &t->status, &t->status_message,
                           &t->progress, &t->format, &t->description};
        for (size_t k = 0; k < ARRAY_SIZE(fields); k++)
            free(*fields[k]);
    }
    free(l->v);
    free(l->next_token);
    memset(l, 0, sizeof(*l));
}

static void
parse_import_task(const xmlNode *it, struct kiln_ec2_import_task *t)
{
    t->import_task_id = kiln_aws_xml_text(it, "importTaskId");
    t->description = kiln_aws_xml_text(it, "description");
    xmlNode *d = kiln_aws_xml_child(it, "snapshotTaskDetail");
    t->snapshot_id = kiln_aws_xml_text(d, "snapshotId");
    t->status = kiln_aws_xml_text(d, "status");
    t->status_message = kiln_aws_xml_text(d, "statusMessage");
    t->progress = kiln_aws_xml_text(d, "progress");
    t->format = kiln_aws_xml_text(d, "format");
}

int
kiln_ec2_parse_import_tasks(xmlDoc *doc, struct kiln_ec2_import_tasks *ret,
                            struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    xmlNode *root = kiln_aws_xml_root(doc);
    xmlNode *set = kiln_aws_xml_child(root, "importSnapshotTaskSet");
    if (set) {
        for (xmlNode *it = kiln_aws_xml_child(set, "item"); it; it = kiln_aws_xml_next(it))
            parse_import_task(it, GROW(ret->v, ret->n));
    } else if (kiln_aws_xml_child(root, "importTaskId")) {
        parse_import_task(root, GROW(ret->v, ret->n));
    } else {
        return kiln_error_set(err, -KILN_E_PARSE, "%s response without import tasks",
                              (const char *)root->name);
    }
    for (size_t i = 0; i < ret->n; i++)
        if (!ret->v[i].import_task_id) {
            kiln_ec2_import_tasks_clear(ret);
            return kiln_error_set(err, -KILN_E_PARSE, "import task without importTaskId");
        }
    ret->next_token = next_token(root);
    return 0;
}

void
kiln_ec2_regions_clear(struct kiln_ec2_regions *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].endpoint);
        free(l->v[i].opt_in_status);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

int
kiln_ec2_parse_regions(xmlDoc *doc, struct kiln_ec2_regions *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    xmlNode *set = kiln_aws_xml_child(kiln_aws_xml_root(doc), "regionInfo");
    if (!set)
        return kiln_error_set(err, -KILN_E_PARSE, "DescribeRegions response without regionInfo");
    for (xmlNode *it = kiln_aws_xml_child(set, "item"); it; it = kiln_aws_xml_next(it)) {
        struct kiln_ec2_region *r = GROW(ret->v, ret->n);
        r->name = kiln_aws_xml_text(it, "regionName");
        r->endpoint = kiln_aws_xml_text(it, "regionEndpoint");
        r->opt_in_status = kiln_aws_xml_text(it, "optInStatus");
        if (!r->name) {
            kiln_ec2_regions_clear(ret);
            return kiln_error_set(err, -KILN_E_PARSE, "region without regionName");
        }
    }
    return 0;
}

int
kiln_ec2_parse_image_id(xmlDoc *doc, char **ret, struct kiln_error *err)
{
    *ret = kiln_aws_xml_text(kiln_aws_xml_root(doc), "imageId");
    if (!*ret || !**ret) {
        free(*ret);
        *ret = NULL;
        return kiln_error_set(err, -KILN_E_PARSE, "response without imageId");
    }
    return 0;
}

/* --- operations --------------------------------------------------------------------------- */

int
kiln_ec2_run_instances(struct kiln_aws_client *c, const struct kiln_ec2_run_instances_request *req,
                       struct kiln_ec2_instances *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    int r = need(req->image_id, "image id", "RunInstances", err);
    if (r < 0)
        return r;
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "RunInstances", KILN_EC2_VERSION);
    kiln_aws_query_add(&q, "ImageId", req->image_id);
    kiln_aws_query_add(&q, "InstanceType", req->instance_type);
    unsigned min = req->min_count ? req->min_count : 1;
    add_uint(&q, "MinCount", min);
    add_uint(&q, "MaxCount", req->max_count >= min ? req->max_count : min);
    kiln_aws_query_add(&q, "KeyName", req->key_name);
    kiln_aws_query_add(&q, "SubnetId", req->subnet_id);
    add_list(&q, "SecurityGroupId", req->security_group_ids);
    if (req->user_data) {
        size_t l = strlen(req->user_data);
        _cleanup_free_ char *b64 = kiln_malloc(4 * ((l + 2) / 3) + 1);
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)req->user_data, (int)l);
        kiln_aws_query_add(&q, "UserData", b64);
    }
    kiln_aws_query_add(&q, "IamInstanceProfile.Name", req->iam_instance_profile_name);
    /* RunInstances is idempotent by ClientToken; like the SDKs and the CLI, make one up when
     * the caller has none, so that a retry after a lost response does not launch twice. */
    _cleanup_free_ char *token = req->client_token ? NULL : kiln_aws_idempotency_token();
    kiln_aws_query_add(&q, "ClientToken", req->client_token ? req->client_token : token);
    if (req->terminate_on_shutdown)
        kiln_aws_query_add(&q, "InstanceInitiatedShutdownBehavior", "terminate");
    static const char *const types[] = {"instance", "volume", NULL};
    add_tag_specs(&q, types, req->tags, req->n_tags);
    _cleanup_xml_ xmlDoc *doc = NULL;
    r = call(c, &q, "RunInstances", &doc, err);
    if (r < 0)
        return r;
    return kiln_ec2_parse_instances(doc, ret, err);
}

int
kiln_ec2_describe_instances(struct kiln_aws_client *c, const struct kiln_ec2_describe_request *req,
                            struct kiln_ec2_instances *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "DescribeInstances", KILN_EC2_VERSION);
    add_describe(&q, "InstanceId", req);
    _cleanup_xml_ xmlDoc *doc = NULL;
    int r = call(c, &q, "DescribeInstances", &doc, err);
    if (r < 0)
        return r;
    return kiln_ec2_parse_instances(doc, ret, err);
}

/* Pagination guard: a service that keeps returning the same token would loop forever. */
#define MAX_PAGES 10000

/* kiln_ec2_describe_<kind>_all: every page of a Describe call, concatenated. The list types
 * share one shape (v, n, next_token), so one definition serves them all. */
#define DEFINE_DESCRIBE_ALL(kind, list_type, action)                                               \
    int kiln_ec2_describe_##kind##_all(struct kiln_aws_client *c,                                  \
                                       const struct kiln_ec2_describe_request *req,                \
                                       struct list_type *ret, struct kiln_error *err)              \
    {                                                                                              \
        memset(ret, 0, sizeof(*ret));                                                              \
        struct kiln_ec2_describe_request page =                                                    \
            req ? *req : (struct kiln_ec2_describe_request){0};                                    \
        _cleanup_free_ char *token = NULL;                                                         \
        for (unsigned n = 0; n < MAX_PAGES; n++) {                                                 \
            page.next_token = token;                                                               \
            struct list_type part;                                                                 \
            int r = kiln_ec2_describe_##kind(c, &page, &part, err);                                \
            if (r < 0) {                                                                           \
                list_type##_clear(ret);                                                            \
                return r;                                                                          \
            }                                                                                      \
            ret->v = kiln_reallocarray(ret->v, ret->n + part.n + 1, sizeof(*ret->v));              \
            if (part.n)                                                                            \
                memcpy(ret->v + ret->n, part.v, part.n * sizeof(*part.v));                         \
            ret->n += part.n;                                                                      \
            free(part.v);                                                                          \
            bool same = token && part.next_token && strcmp(token, part.next_token) == 0;           \
            free(token);                                                                           \
            token = part.next_token;                                                               \
            if (!token)                                                                            \
                return 0;                                                                          \
            if (same)                                                                              \
                break;                                                                             \
        }                                                                                          \
        list_type##_clear(ret);                                                                    \
        return kiln_error_set(err, -KILN_E_LIMIT, action ": pagination does not end");            \
    }

DEFINE_DESCRIBE_ALL(instances, kiln_ec2_instances, "DescribeInstances")

static int
state_change_call(struct kiln_aws_client *c, const char *action, const char *const *ids,
                  bool force, struct kiln_ec2_state_changes *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    if (!ids || !ids[0])
        return kiln_error_set(err, -KILN_E_INVALID, "%s: no instance ids", action);
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, action, KILN_EC2_VERSION);
    add_list(&q, "InstanceId", ids);
    if (force)
        kiln_aws_query_add(&q, "Force", "true");
    _cleanup_xml_ xmlDoc *doc = NULL;
    int r = call(c, &q, action, &doc, err);
    if (r < 0)
        return r;
    return kiln_ec2_parse_state_changes(doc, ret, err);
}

int
kiln_ec2_stop_instances(struct kiln_aws_client *c, const char *const *ids, bool force,
                        struct kiln_ec2_state_changes *ret, struct kiln_error *err)
{
    return state_change_call(c, "StopInstances", ids, force, ret, err);
}

int
kiln_ec2_terminate_instances(struct kiln_aws_client *c, const char *const *ids,
                             struct kiln_ec2_state_changes *ret, struct kiln_error *err)
{
    return state_change_call(c, "TerminateInstances", ids, false, ret, err);
}

static int
image_id_call(struct kiln_aws_client *c, struct kiln_aws_query *q, const char *action,
              char **ret, struct kiln_error *err)
{
    _cleanup_xml_ xmlDoc *doc = NULL;
    int r = call(c, q, action, &doc, err);
    if (r < 0)
        return r;
    r = kiln_ec2_parse_image_id(doc, ret, err);
    return r < 0 ? kiln_error_prefix(err, r, "%s", action) : 0;
}

int
kiln_ec2_create_image(struct kiln_aws_client *c, const struct kiln_ec2_create_image_request *req,
                      char **ret_image_id, struct kiln_error *err)
{
    *ret_image_id = NULL;
    int r = need(req->instance_id, "instance id", "CreateImage", err);
    if (r == 0)
        r = need(req->name, "name", "CreateImage", err);
    if (r < 0)
        return r;
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "CreateImage", KILN_EC2_VERSION);
    kiln_aws_query_add(&q, "InstanceId", req->instance_id);
    kiln_aws_query_add(&q, "Name", req->name);
    kiln_aws_query_add(&q, "Description", req->description);
    if (req->no_reboot)
        kiln_aws_query_add(&q, "NoReboot", "true");
    static const char *const types[] = {"image", "snapshot", NULL};
    add_tag_specs(&q, types, req->tags, req->n_tags);
    return image_id_call(c, &q, "CreateImage", ret_image_id, err);
}

int
kiln_ec2_describe_images(struct kiln_aws_client *c, const struct kiln_ec2_describe_request *req,
                         struct kiln_ec2_images *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "DescribeImages", KILN_EC2_VERSION);
    add_describe(&q, "ImageId", req);
    _cleanup_xml_ xmlDoc *doc = NULL;
    int r = call(c, &q, "DescribeImages", &doc, err);
    if (r < 0)
        return r;
    return kiln_ec2_parse_images(doc, ret, err);
}

int
kiln_ec2_register_image(struct kiln_aws_client *c, const struct kiln_ec2_register_image_request *req,
                        char **ret_image_id, struct kiln_error *err)
{
    *ret_image_id = NULL;
    int r = need(req->name, "name", "RegisterImage", err);
    if (r < 0)
        return r;
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "RegisterImage", KILN_EC2_VERSION);
    kiln_aws_query_add(&q, "Name", req->name);
    kiln_aws_query_add(&q, "Description", req->description);
    kiln_aws_query_add(&q, "Architecture", req->architecture);
    kiln_aws_query_add(&q, "RootDeviceName", req->root_device_name);
    kiln_aws_query_add(&q, "VirtualizationType", req->virtualization_type);
    kiln_aws_query_add(&q, "BootMode", req->boot_mode);
    if (req->ena_support)
        kiln_aws_query_add(&q, "EnaSupport", "true");
    for (size_t i = 0; i < req->n_devices; i++) {
        const struct kiln_ec2_block_device_spec *d = &req->devices[i];
        kiln_aws_query_addf(&q, d->device_name, "BlockDeviceMapping.%zu.DeviceName", i + 1);
        kiln_aws_query_addf(&q, d->snapshot_id, "BlockDeviceMapping.%zu.Ebs.SnapshotId", i + 1);
        if (d->volume_size > 0) {
            char b[32];
            snprintf(b, sizeof(b), "%lld", d->volume_size);
            kiln_aws_query_addf(&q, b, "BlockDeviceMapping.%zu.Ebs.VolumeSize", i + 1);
        }
        kiln_aws_query_addf(&q, d->volume_type, "BlockDeviceMapping.%zu.Ebs.VolumeType", i + 1);
        kiln_aws_query_addf(&q, d->delete_on_termination ? "true" : "false",
                            "BlockDeviceMapping.%zu.Ebs.DeleteOnTermination", i + 1);
    }
    return image_id_call(c, &q, "RegisterImage", ret_image_id, err);
}

static int
no_result_call(struct kiln_aws_client *c, struct kiln_aws_query *q, const char *action,
               struct kiln_error *err)
{
    _cleanup_xml_ xmlDoc *doc = NULL;
    int r = call(c, q, action, &doc, err);
    if (r < 0)
        return r;
    /* Operations without a result answer <return>true</return>. */
    xmlNode *ret = kiln_aws_xml_child(kiln_aws_xml_root(doc), "return");
    if (ret && !kiln_aws_xml_bool(ret, NULL))
        return kiln_error_set(err, -KILN_E_REMOTE, "%s: the service returned false", action);
    return 0;
}

int
kiln_ec2_deregister_image(struct kiln_aws_client *c, const char *image_id, struct kiln_error *err)
{
    int r = need(image_id, "image id", "DeregisterImage", err);
    if (r < 0)
        return r;
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "DeregisterImage", KILN_EC2_VERSION);
    kiln_aws_query_add(&q, "ImageId", image_id);
    return no_result_call(c, &q, "DeregisterImage", err);
}

int
kiln_ec2_copy_image(struct kiln_aws_client *c, const struct kiln_ec2_copy_image_request *req,
                    char **ret_image_id, struct kiln_error *err)
{
    *ret_image_id = NULL;
    int r = need(req->source_region, "source region", "CopyImage", err);
    if (r == 0)
        r = need(req->source_image_id, "source image id", "CopyImage", err);
    if (r == 0)
        r = need(req->name, "name", "CopyImage", err);
    if (r < 0)
        return r;
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "CopyImage", KILN_EC2_VERSION);
    kiln_aws_query_add(&q, "SourceRegion", req->source_region);
    kiln_aws_query_add(&q, "SourceImageId", req->source_image_id);
    kiln_aws_query_add(&q, "Name", req->name);
    kiln_aws_query_add(&q, "Description", req->description);
    kiln_aws_query_add(&q, "ClientToken", req->client_token);
    if (req->encrypted)
        kiln_aws_query_add(&q, "Encrypted", "true");
    return image_id_call(c, &q, "CopyImage", ret_image_id, err);
}

static void
add_permissions(struct kiln_aws_query *q, const char *prefix,
                const struct kiln_ec2_permission_change *ch)
{
    char key[64];
    snprintf(key, sizeof(key), "%s.Add", prefix);
    size_t n = 0;
    for (size_t i = 0; ch->add_user_ids && ch->add_user_ids[i]; i++)
        kiln_aws_query_addf(q, ch->add_user_ids[i], "%s.%zu.UserId", key, ++n);
    for (size_t i = 0; ch->add_groups && ch->add_groups[i]; i++)
        kiln_aws_query_addf(q, ch->add_groups[i], "%s.%zu.Group", key, ++n);
    snprintf(key, sizeof(key), "%s.Remove", prefix);
    n = 0;
    for (size_t i = 0; ch->remove_user_ids && ch->remove_user_ids[i]; i++)
        kiln_aws_query_addf(q, ch->remove_user_ids[i], "%s.%zu.UserId", key, ++n);
    for (size_t i = 0; ch->remove_groups && ch->remove_groups[i]; i++)
        kiln_aws_query_addf(q, ch->remove_groups[i], "%s.%zu.Group", key, ++n);
}

int
kiln_ec2_modify_image_launch_permission(struct kiln_aws_client *c, const char *image_id,
                                        const struct kiln_ec2_permission_change *ch,
                                        struct kiln_error *err)
{
    int r = need(image_id, "image id", "ModifyImageAttribute", err);
    if (r < 0)
        return r;
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "ModifyImageAttribute", KILN_EC2_VERSION);
    kiln_aws_query_add(&q, "ImageId", image_id);
    add_permissions(&q, "LaunchPermission", ch);
    return no_result_call(c, &q, "ModifyImageAttribute", err);
}

int
kiln_ec2_modify_image_description(struct kiln_aws_client *c, const char *image_id,
                                  const char *description, struct kiln_error *err)
{
    int r = need(image_id, "image id", "ModifyImageAttribute", err);
    if (r < 0)
        return r;
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "ModifyImageAttribute", KILN_EC2_VERSION);
    kiln_aws_query_add(&q, "ImageId", image_id);
    kiln_aws_query_add(&q, "Description.Value", description ? description : "");
    return no_result_call(c, &q, "ModifyImageAttribute", err);
}

int
kiln_ec2_modify_snapshot_create_volume_permission(struct kiln_aws_client *c,
                                                  const char *snapshot_id,
                                                  const struct kiln_ec2_permission_change *ch,
                                                  struct kiln_error *err)
{
    int r = need(snapshot_id, "snapshot id", "ModifySnapshotAttribute", err);
    if (r < 0)
        return r;
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "ModifySnapshotAttribute", KILN_EC2_VERSION);
    kiln_aws_query_add(&q, "SnapshotId", snapshot_id);
    kiln_aws_query_add(&q, "Attribute", "createVolumePermission");
    add_permissions(&q, "CreateVolumePermission", ch);
    return no_result_call(c, &q, "ModifySnapshotAttribute", err);
}

int
kiln_ec2_create_tags(struct kiln_aws_client *c, const char *const *resource_ids,
                     const struct kiln_ec2_tag_spec *tags, size_t n_tags, struct kiln_error *err)
{
    if (!resource_ids || !resource_ids[0] || n_tags == 0)
        return kiln_error_set(err, -KILN_E_INVALID, "CreateTags: resources and tags are required");
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "CreateTags", KILN_EC2_VERSION);
    add_list(&q, "ResourceId", resource_ids);
    for (size_t i = 0; i < n_tags; i++) {
        kiln_aws_query_addf(&q, tags[i].key, "Tag.%zu.Key", i + 1);
        kiln_aws_query_addf(&q, tags[i].value ? tags[i].value : "", "Tag.%zu.Value", i + 1);
    }
    return no_result_call(c, &q, "CreateTags", err);
}

int
kiln_ec2_describe_snapshots(struct kiln_aws_client *c, const struct kiln_ec2_describe_request *req,
                            struct kiln_ec2_snapshots *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "DescribeSnapshots", KILN_EC2_VERSION);
    add_describe(&q, "SnapshotId", req);
    _cleanup_xml_ xmlDoc *doc = NULL;
    int r = call(c, &q, "DescribeSnapshots", &doc, err);
    if (r < 0)
        return r;
    return kiln_ec2_parse_snapshots(doc, ret, err);
}

DEFINE_DESCRIBE_ALL(snapshots, kiln_ec2_snapshots, "DescribeSnapshots")

int
kiln_ec2_delete_snapshot(struct kiln_aws_client *c, const char *snapshot_id, struct kiln_error *err)
{
    int r = need(snapshot_id, "snapshot id", "DeleteSnapshot", err);
    if (r < 0)
        return r;
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "DeleteSnapshot", KILN_EC2_VERSION);
    kiln_aws_query_add(&q, "SnapshotId", snapshot_id);
    return no_result_call(c, &q, "DeleteSnapshot", err);
}

int
kiln_ec2_import_snapshot(struct kiln_aws_client *c, const struct kiln_ec2_import_snapshot_request *req,
                         struct kiln_ec2_import_tasks *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    int r = need(req->s3_bucket, "S3 bucket", "ImportSnapshot", err);
    if (r == 0)
        r = need(req->s3_key, "S3 key", "ImportSnapshot", err);
    if (r < 0)
        return r;
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "ImportSnapshot", KILN_EC2_VERSION);
    kiln_aws_query_add(&q, "Description", req->description);
    kiln_aws_query_add(&q, "DiskContainer.Format", req->format ? req->format : "RAW");
    kiln_aws_query_add(&q, "DiskContainer.UserBucket.S3Bucket", req->s3_bucket);
    kiln_aws_query_add(&q, "DiskContainer.UserBucket.S3Key", req->s3_key);
    kiln_aws_query_add(&q, "RoleName", req->role_name);
    kiln_aws_query_add(&q, "ClientToken", req->client_token);
    _cleanup_xml_ xmlDoc *doc = NULL;
    r = call(c, &q, "ImportSnapshot", &doc, err);
    if (r < 0)
        return r;
    return kiln_ec2_parse_import_tasks(doc, ret, err);
}

int
kiln_ec2_describe_import_snapshot_tasks(struct kiln_aws_client *c,
                                        const struct kiln_ec2_describe_request *req,
                                        struct kiln_ec2_import_tasks *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "DescribeImportSnapshotTasks", KILN_EC2_VERSION);
    if (req) {
        add_list(&q, "ImportTaskId", req->ids);
        add_filters(&q, req->filters, req->n_filters);
        kiln_aws_query_add(&q, "NextToken", req->next_token);
        if (req->max_results)
            add_uint(&q, "MaxResults", req->max_results);
    }
    _cleanup_xml_ xmlDoc *doc = NULL;
    int r = call(c, &q, "DescribeImportSnapshotTasks", &doc, err);
    if (r < 0)
        return r;
    return kiln_ec2_parse_import_tasks(doc, ret, err);
}

int
kiln_ec2_describe_regions(struct kiln_aws_client *c, bool all_regions,
                          struct kiln_ec2_regions *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    struct kiln_aws_query q;
    kiln_aws_query_init(&q, "DescribeRegions", KILN_EC2_VERSION);
    if (all_regions)
        kiln_aws_query_add(&q, "AllRegions", "true");
    _cleanup_xml_ xmlDoc *doc = NULL;
    int r = call(c, &q, "DescribeRegions", &doc, err);
    if (r < 0)
        return r;
    return kiln_ec2_parse_regions(doc, ret, err);
}

/* --- waiters ------------------------------------------------------------------------------ */

static double
mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* check: <0 failed, 0 not yet, 1 reached. */
typedef int (*wait_check_fn)(struct kiln_aws_client *c, const void *ctx, struct kiln_error *err);

static int
wait_loop(struct kiln_aws_client *c, const struct kiln_ec2_wait *w, wait_check_fn check,
          const void *ctx, const char *what, struct kiln_error *err)
{
    double budget = w && w->budget > 0 ? w->budget : 600;
    double interval = w && w->interval > 0 ? w->interval : 15;
    const volatile int *cancel = w ? w->cancel : NULL;
    double deadline = mono() + budget;
    for (;;) {
        if (cancel && *cancel)
            return kiln_error_set(err, -ECANCELED, "waiting for %s: cancelled", what);
        int r = check(c, ctx, err);
        if (r != 0)
            return r < 0 ? r : 0;
        double next = mono() + interval;
        if (next > deadline)
            return kiln_error_set(err, -ETIMEDOUT, "waiting for %s: not reached within %.0f s",
                                  what, budget);
        while (mono() < next) {
            if (cancel && *cancel)
                return kiln_error_set(err, -ECANCELED, "waiting for %s: cancelled", what);
            usleep(20000);
        }
    }
}

struct instances_wait {
    const char *const *ids;
    const char *state;
};

static int
check_instances(struct kiln_aws_client *c, const void *ctx, struct kiln_error *err)
{
    const struct instances_wait *w = ctx;
    struct kiln_ec2_describe_request req = {.ids = w->ids};
    struct kiln_ec2_instances l;
    struct kiln_error derr = {0};
    int r = kiln_ec2_describe_instances_all(c, &req, &l, &derr);
    if (r < 0) {
        /* Eventual consistency: a just-launched instance may not be visible yet. */
        if (strcmp(derr.cause, "InvalidInstanceID.NotFound") == 0 &&
            strcmp(w->state, "terminated") != 0)
            return 0;
        if (strcmp(derr.cause, "InvalidInstanceID.NotFound") == 0)
            return 1;
        if (err && !err->code)
            *err = derr;
        return r;
    }
    size_t at = 0;
    for (size_t i = 0; i < l.n; i++) {
        const char *s = l.v[i].state_name ? l.v[i].state_name : "";
        if (strcmp(s, w->state) == 0) {
            at++;
            continue;
        }
        bool dead = strcmp(s, "terminated") == 0 || strcmp(s, "shutting-down") == 0;
        if ((dead && strcmp(w->state, "terminated") != 0) ||
            (strcmp(w->state, "running") == 0 && strcmp(s, "stopped") == 0)) {
            r = kiln_error_set(err, -KILN_E_FAILED, "instance %s is %s while waiting for %s%s%s",
                               l.v[i].instance_id, s, w->state,
                               l.v[i].state_reason_message ? ": " : "",
                               l.v[i].state_reason_message ? l.v[i].state_reason_message : "");
            kiln_ec2_instances_clear(&l);
            return r;
        }
    }
    size_t want = 0;
    while (w->ids[want])
        want++;
    kiln_ec2_instances_clear(&l);
    return at == want ? 1 : 0;
}

int
kiln_ec2_wait_instances(struct kiln_aws_client *c, const char *const *ids, const char *state,
                        const struct kiln_ec2_wait *w, struct kiln_error *err)
{
    if (!ids || !ids[0] || !state)
        return kiln_error_set(err, -KILN_E_INVALID, "wait: instance ids and a state are needed");
    struct instances_wait ctx = {ids, state};
    char what[160];
    snprintf(what, sizeof(what), "instance %s%s to be %s", ids[0], ids[1] ? " and others" : "",
             state);
    return wait_loop(c, w, check_instances, &ctx, what, err);
}

static int
check_image(struct kiln_aws_client *c, const void *ctx, struct kiln_error *err)
{
    const char *id = ctx;
    const char *ids[] = {id, NULL};
    struct kiln_ec2_describe_request req = {.ids = ids};
    struct kiln_ec2_images l;
    struct kiln_error derr = {0};
    int r = kiln_ec2_describe_images(c, &req, &l, &derr);
    if (r < 0) {
        if (strcmp(derr.cause, "InvalidAMIID.NotFound") == 0)
            return 0;
        if (err && !err->code)
            *err = derr;
        return r;
    }
    r = 0;
    if (l.n > 0) {
        const char *s = l.v[0].state ? l.v[0].state : "";
        if (strcmp(s, "available") == 0)
            r = 1;
        else if (strcmp(s, "failed") == 0 || strcmp(s, "invalid") == 0 ||
                 strcmp(s, "deregistered") == 0 || strcmp(s, "error") == 0)
            r = kiln_error_set(err, -KILN_E_FAILED, "image %s is %s%s%s", id, s,
                               l.v[0].state_reason_message ? ": " : "",
                               l.v[0].state_reason_message ? l.v[0].state_reason_message : "");
    }
    kiln_ec2_images_clear(&l);
    return r;
}

int
kiln_ec2_wait_image_available(struct kiln_aws_client *c, const char *image_id,
                              const struct kiln_ec2_wait *w, struct kiln_error *err)
{
    char what[128];
    snprintf(what, sizeof(what), "image %s to be available", image_id);
    return wait_loop(c, w, check_image, image_id, what, err);
}

static int
check_snapshot(struct kiln_aws_client *c, const void *ctx, struct kiln_error *err)
{
    const char *id = ctx;
    const char *ids[] = {id, NULL};
    struct kiln_ec2_describe_request req = {.ids = ids};
    struct kiln_ec2_snapshots l;
    struct kiln_error derr = {0};
    int r = kiln_ec2_describe_snapshots(c, &req, &l, &derr);
    if (r < 0) {
        if (strcmp(derr.cause, "InvalidSnapshot.NotFound") == 0)
            return 0;
        if (err && !err->code)
            *err = derr;
        return r;
    }
    r = 0;
    if (l.n > 0) {
        const char *s = l.v[0].state ? l.v[0].state : "";
        if (strcmp(s, "completed") == 0)
            r = 1;
        else if (strcmp(s, "error") == 0)
            r = kiln_error_set(err, -KILN_E_FAILED, "snapshot %s failed%s%s", id,
                               l.v[0].state_message ? ": " : "",
                               l.v[0].state_message ? l.v[0].state_message : "");
    }
    kiln_ec2_snapshots_clear(&l);
    return r;
}

int
kiln_ec2_wait_snapshot_completed(struct kiln_aws_client *c, const char *snapshot_id,
                                 const struct kiln_ec2_wait *w, struct kiln_error *err)
{
    char what[128];
    snprintf(what, sizeof(what), "snapshot %s to complete", snapshot_id);
    return wait_loop(c, w, check_snapshot, snapshot_id, what, err);
}

struct import_wait {
    const char *task_id;
    char *snapshot_id;
};

static int
check_import(struct kiln_aws_client *c, const void *ctx, struct kiln_error *err)
{
    struct import_wait *w = (struct import_wait *)ctx;
    const char *ids[] = {w->task_id, NULL};
    struct kiln_ec2_describe_request req = {.ids = ids};
    struct kiln_ec2_import_tasks l;
    int r = kiln_ec2_describe_import_snapshot_tasks(c, &req, &l, err);
    if (r < 0)
        return r;
    r = 0;
    if (l.n > 0) {
        const char *s = l.v[0].status ? l.v[0].status : "";
        if (strcmp(s, "completed") == 0) {
            if (!l.v[0].snapshot_id)
                r = kiln_error_set(err, -KILN_E_PARSE, "import task %s completed without a "
                                                       "snapshot id", w->task_id);
            else {
                w->snapshot_id = TAKE_PTR(l.v[0].snapshot_id);
                r = 1;
            }
        } else if (strcmp(s, "deleted") == 0 || strcmp(s, "deleting") == 0 ||
                   strcmp(s, "error") == 0) {
            r = kiln_error_set(err, -KILN_E_FAILED, "import task %s is %s%s%s", w->task_id, s,
                               l.v[0].status_message ? ": " : "",
                               l.v[0].status_message ? l.v[0].status_message : "");
        }
    }
    kiln_ec2_import_tasks_clear(&l);
    return r;
}

int
kiln_ec2_wait_import_snapshot(struct kiln_aws_client *c, const char *task_id,
                              const struct kiln_ec2_wait *w, char **ret_snapshot_id,
                              struct kiln_error *err)
{
    *ret_snapshot_id = NULL;
    struct import_wait ctx = {task_id, NULL};
    char what[128];
    snprintf(what, sizeof(what), "import task %s to complete", task_id);
    int r = wait_loop(c, w, check_import, &ctx, what, err);
    if (r < 0) {
        free(ctx.snapshot_id);
        return r;
    }
    *ret_snapshot_id = ctx.snapshot_id;
    return 0;
}
