/* Response parsing against real AWS examples (tests/data/aws-responses/): botocore's captured
 * responses compared field by field with botocore's own expected parse, the SDK protocol
 * error vectors, libcloud fixtures, AWS API reference examples, EBS direct examples; and bad
 * input (truncated, DTD, oversized, wrong shapes) that must fail cleanly. */
#include "kiln-test.h"

#include "cloud/ebs.h"
#include "cloud/ec2.h"
#include "cloud/http.h"
#include "cloud/s3.h"
#include "cloud/sts.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/json.h"

static char *
data_file(const char *rel, size_t *ret_len)
{
    _cleanup_free_ char *path = kiln_asprintf("%s/tests/data/aws-responses/%s",
                                              kiln_test_source_dir(), rel);
    char *data = NULL;
    size_t len = 0;
    struct kiln_error err = {0};
    if (kiln_read_file(path, 8 << 20, &data, &len, &err) < 0)
        fail_msg("%s: %s", path, err.message);
    if (ret_len)
        *ret_len = len;
    return data;
}

static xmlDoc *
xml_file(const char *rel)
{
    size_t len;
    _cleanup_free_ char *data = data_file(rel, &len);
    xmlDoc *doc = NULL;
    struct kiln_error err = {0};
    if (kiln_aws_xml_parse(data, len, &doc, &err) < 0)
        fail_msg("%s: %s", rel, err.message);
    return doc;
}

static json_t *
json_file(const char *rel)
{
    size_t len;
    _cleanup_free_ char *data = data_file(rel, &len);
    json_t *j = NULL;
    struct kiln_error err = {0};
    if (kiln_json_parse(data, len, 8 << 20, rel, &j, &err) < 0)
        fail_msg("%s: %s", rel, err.message);
    return j;
}

/* A string field: equal when botocore has it; absent in ours when botocore has none. */
static void
same_str(const char *what, json_t *obj, const char *key, const char *mine)
{
    const char *want = kiln_json_get_str(obj, key);
    if (!want && json_object_get(obj, key))
        fail_msg("%s.%s: botocore value is not a string", what, key);
    if (!want) {
        if (mine && *mine)
            fail_msg("%s.%s: botocore has none, Kiln has \"%s\"", what, key, mine);
        return;
    }
    if (!mine || strcmp(want, mine) != 0)
        fail_msg("%s.%s: botocore \"%s\", Kiln \"%s\"", what, key, want, mine ? mine : "(null)");
}

static void
same_int(const char *what, json_t *obj, const char *key, long long mine)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return;
    if (!json_is_integer(v) || json_integer_value(v) != mine)
        fail_msg("%s.%s: botocore %lld, Kiln %lld", what, key,
                 (long long)json_integer_value(v), mine);
}

static void
same_tags(const char *what, json_t *obj, const struct kiln_ec2_tag *tags, size_t n)
{
    json_t *t = json_object_get(obj, "Tags");
    size_t want = t ? json_array_size(t) : 0;
    if (want != n)
        fail_msg("%s: %zu tags in botocore, %zu in Kiln", what, want, n);
    for (size_t i = 0; i < n; i++) {
        same_str(what, json_array_get(t, i), "Key", tags[i].key);
        same_str(what, json_array_get(t, i), "Value", tags[i].value);
    }
}

static void
compare_instance(json_t *r, json_t *in, const struct kiln_ec2_instance *k)
{
    const char *w = k->instance_id;
    if (r) {
        same_str(w, r, "ReservationId", k->reservation_id);
        same_str(w, r, "OwnerId", k->owner_id);
    }
    same_str(w, in, "InstanceId", k->instance_id);
    same_str(w, in, "ImageId", k->image_id);
    same_str(w, in, "InstanceType", k->instance_type);
    same_str(w, json_object_get(in, "State"), "Name", k->state_name);
    same_int(w, json_object_get(in, "State"), "Code", k->state_code);
    same_str(w, in, "PrivateIpAddress", k->private_ip);
    same_str(w, in, "PublicIpAddress", k->public_ip);
    same_str(w, in, "PrivateDnsName", k->private_dns_name);
    same_str(w, in, "PublicDnsName", k->public_dns_name);
    same_str(w, in, "SubnetId", k->subnet_id);
    same_str(w, in, "VpcId", k->vpc_id);
    same_str(w, json_object_get(in, "Placement"), "AvailabilityZone", k->availability_zone);
    same_str(w, in, "LaunchTime", k->launch_time);
    same_str(w, in, "Architecture", k->architecture);
    same_str(w, in, "RootDeviceName", k->root_device_name);
    same_str(w, in, "RootDeviceType", k->root_device_type);
    same_str(w, in, "KeyName", k->key_name);
    json_t *sr = json_object_get(in, "StateReason");
    if (sr) {
        same_str(w, sr, "Code", k->state_reason_code);
        same_str(w, sr, "Message", k->state_reason_message);
    } else {
        assert_null(k->state_reason_code);
    }
    same_int(w, in, "AmiLaunchIndex", k->ami_launch_index);
    same_tags(w, in, k->tags, k->n_tags);
}

static void
botocore_describe_instances(void **state)
{
    _cleanup_xml_ xmlDoc *doc = xml_file("botocore/responses/ec2-describe-instances.xml");
    _cleanup_json_ json_t *want = json_file("botocore/responses/ec2-describe-instances.json");
    struct kiln_ec2_instances l;
    assert_int_equal(kiln_ec2_parse_instances(doc, &l, NULL), 0);
    size_t k = 0, i, j;
    json_t *r, *in;
    json_array_foreach(json_object_get(want, "Reservations"), i, r) {
        json_array_foreach(json_object_get(r, "Instances"), j, in) {
            assert_true(k < l.n);
            compare_instance(r, in, &l.v[k++]);
        }
    }
    assert_int_equal(k, l.n);
    assert_true(l.n >= 2);
    kiln_ec2_instances_clear(&l);
}

static void
botocore_run_instances(void **state)
{
    _cleanup_xml_ xmlDoc *doc = xml_file("botocore/responses/ec2-run-instances.xml");
    _cleanup_json_ json_t *want = json_file("botocore/responses/ec2-run-instances.json");
    struct kiln_ec2_instances l;
    assert_int_equal(kiln_ec2_parse_instances(doc, &l, NULL), 0);
    json_t *ins = json_object_get(want, "Instances");
    assert_int_equal(l.n, json_array_size(ins));
    for (size_t i = 0; i < l.n; i++)
        compare_instance(want, json_array_get(ins, i), &l.v[i]);
    kiln_ec2_instances_clear(&l);
}

static void
botocore_stop_instances(void **state)
{
    _cleanup_xml_ xmlDoc *doc = xml_file("botocore/responses/ec2-stop-instances.xml");
    _cleanup_json_ json_t *want = json_file("botocore/responses/ec2-stop-instances.json");
    struct kiln_ec2_state_changes l;
    assert_int_equal(kiln_ec2_parse_state_changes(doc, &l, NULL), 0);
    json_t *v = json_object_get(want, "StoppingInstances");
    assert_int_equal(l.n, json_array_size(v));
    for (size_t i = 0; i < l.n; i++) {
        json_t *s = json_array_get(v, i);
        same_str("stop", s, "InstanceId", l.v[i].instance_id);
        same_str("stop", json_object_get(s, "CurrentState"), "Name", l.v[i].current_name);
        same_int("stop", json_object_get(s, "CurrentState"), "Code", l.v[i].current_code);
        same_str("stop", json_object_get(s, "PreviousState"), "Name", l.v[i].previous_name);
        same_int("stop", json_object_get(s, "PreviousState"), "Code", l.v[i].previous_code);
    }
    kiln_ec2_state_changes_clear(&l);
}

static void
botocore_register_image(void **state)
{
    _cleanup_xml_ xmlDoc *doc = xml_file("botocore/responses/ec2-register-image.xml");
    _cleanup_json_ json_t *want = json_file("botocore/responses/ec2-register-image.json");
    _cleanup_free_ char *id = NULL;
    assert_int_equal(kiln_ec2_parse_image_id(doc, &id, NULL), 0);
    same_str("register", want, "ImageId", id);
}

static void
botocore_describe_regions(void **state)
{
    _cleanup_xml_ xmlDoc *doc = xml_file("botocore/responses/ec2-describe-regions.xml");
    _cleanup_json_ json_t *want = json_file("botocore/responses/ec2-describe-regions.json");
    struct kiln_ec2_regions l;
    assert_int_equal(kiln_ec2_parse_regions(doc, &l, NULL), 0);
    json_t *v = json_object_get(want, "Regions");
    assert_int_equal(l.n, json_array_size(v));
    assert_true(l.n > 3);
    for (size_t i = 0; i < l.n; i++) {
        same_str("region", json_array_get(v, i), "RegionName", l.v[i].name);
        same_str("region", json_array_get(v, i), "Endpoint", l.v[i].endpoint);
    }
    kiln_ec2_regions_clear(&l);
}

static void
botocore_describe_snapshots(void **state)
{
    _cleanup_xml_ xmlDoc *doc = xml_file("botocore/responses/ec2-describe-snapshots.xml");
    _cleanup_json_ json_t *want = json_file("botocore/responses/ec2-describe-snapshots.json");
    struct kiln_ec2_snapshots l;
    assert_int_equal(kiln_ec2_parse_snapshots(doc, &l, NULL), 0);
    json_t *v = json_object_get(want, "Snapshots");
    assert_int_equal(l.n, json_array_size(v));
    for (size_t i = 0; i < l.n; i++) {
        json_t *s = json_array_get(v, i);
        const struct kiln_ec2_snapshot *k = &l.v[i];
        same_str("snap", s, "SnapshotId", k->snapshot_id);
        same_str("snap", s, "VolumeId", k->volume_id);
        same_str("snap", s, "State", k->state);
        same_str("snap", s, "Progress", k->progress);
        same_str("snap", s, "StartTime", k->start_time);
        same_str("snap", s, "OwnerId", k->owner_id);
        same_str("snap", s, "Description", k->description);
        same_int("snap", s, "VolumeSize", k->volume_size);
        same_tags("snap", s, k->tags, k->n_tags);
    }
    assert_null(l.next_token);
    kiln_ec2_snapshots_clear(&l);
}

static void
botocore_s3_list_objects(void **state)
{
    _cleanup_xml_ xmlDoc *doc = xml_file("botocore/responses/s3-list-objects.xml");
    _cleanup_json_ json_t *want = json_file("botocore/responses/s3-list-objects.json");
    struct kiln_s3_list l;
    assert_int_equal(kiln_s3_parse_list(doc, &l, NULL), 0);
    json_t *v = json_object_get(want, "Contents");
    assert_int_equal(l.n, json_array_size(v));
    for (size_t i = 0; i < l.n; i++) {
        json_t *o = json_array_get(v, i);
        same_str("s3", o, "Key", l.v[i].key);
        same_str("s3", o, "ETag", l.v[i].etag);
        same_str("s3", o, "LastModified", l.v[i].last_modified);
        same_int("s3", o, "Size", (long long)l.v[i].size);
    }
    assert_int_equal(l.truncated, json_is_true(json_object_get(want, "IsTruncated")));
    kiln_s3_list_clear(&l);
}

/* botocore's error fixtures: XML body -> Error.Code/Message (and RequestId when given). */
static void
botocore_errors(void **state)
{
    const char *names[] = {"ec2-describe-instances", "s3-create-bucket", "s3-list-objects"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        _cleanup_free_ char *x = kiln_asprintf("botocore/errors/%s.xml", names[i]);
        _cleanup_free_ char *j = kiln_asprintf("botocore/errors/%s.json", names[i]);
        size_t len;
        _cleanup_free_ char *body = data_file(x, &len);
        _cleanup_json_ json_t *want = json_file(j);
        struct kiln_error err = {0};
        char *rid = NULL;
        kiln_aws_parse_error(400, NULL, body, len, &err, &rid);
        json_t *e = json_object_get(want, "Error");
        assert_string_equal(err.cause, kiln_json_get_str(e, "Code"));
        assert_non_null(strstr(err.message, kiln_json_get_str(e, "Message")));
        const char *wrid = kiln_json_get_str(json_object_get(want, "ResponseMetadata"),
                                             "RequestId");
        if (wrid)
            assert_string_equal(rid, wrid);
        free(rid);
    }
}

/* The SDK protocol vectors (ec2, rest-xml, rest-json): every case with an errorCode. */
static void
protocol_error_vectors(void **state)
{
    const char *files[] = {"botocore/protocols/output__ec2.json",
                           "botocore/protocols/output__rest-xml.json",
                           "botocore/protocols/output__rest-json.json"};
    unsigned checked = 0;
    for (size_t f = 0; f < ARRAY_SIZE(files); f++) {
        _cleanup_json_ json_t *suites = json_file(files[f]);
        size_t i, k;
        json_t *suite, *c;
        json_array_foreach(suites, i, suite) {
            json_array_foreach(json_object_get(suite, "cases"), k, c) {
                const char *code = kiln_json_get_str(c, "errorCode");
                if (!code)
                    continue;
                json_t *resp = json_object_get(c, "response");
                struct kiln_aws_headers h = {0};
                const char *name;
                json_t *v;
                json_object_foreach(json_object_get(resp, "headers"), name, v)
                    kiln_aws_headers_add(&h, name, json_string_value(v));
                const char *body = kiln_json_get_str(resp, "body");
                if (!body)
                    body = "";
                struct kiln_error err = {0};
                kiln_aws_parse_error(
                    (long)json_integer_value(json_object_get(resp, "status_code")), &h, body,
                    strlen(body), &err, NULL);
                if (strcmp(err.cause, code) != 0)
                    fail_msg("%s %s: code %s, wanted %s", files[f],
                             kiln_json_get_str(c, "id"), err.cause, code);
                const char *msg = kiln_json_get_str(c, "errorMessage");
                if (msg && *msg)
                    assert_non_null(strstr(err.message, msg));
                kiln_aws_headers_clear(&h);
                checked++;
            }
        }
    }
    assert_true(checked >= 5);
}

static void
libcloud_fixtures(void **state)
{
    _cleanup_xml_ xmlDoc *images = xml_file("libcloud/describe_images.xml");
    struct kiln_ec2_images il;
    assert_int_equal(kiln_ec2_parse_images(images, &il, NULL), 0);
    assert_true(il.n >= 2);
    assert_string_equal(il.v[0].image_id, "ami-57ba933a");
    assert_string_equal(il.v[0].state, "available");
    assert_string_equal(il.v[0].name, "Test Image");
    assert_false(il.v[0].is_public);
    for (size_t i = 0; i < il.n; i++)
        assert_non_null(il.v[i].image_id);
    kiln_ec2_images_clear(&il);

    _cleanup_xml_ xmlDoc *tasks = xml_file("libcloud/describe_import_snapshot_tasks.xml");
    struct kiln_ec2_import_tasks tl;
    assert_int_equal(kiln_ec2_parse_import_tasks(tasks, &tl, NULL), 0);
    assert_int_equal(tl.n, 1);
    assert_string_equal(tl.v[0].import_task_id, "import-snap-fh7y6i6w");
    assert_string_equal(tl.v[0].snapshot_id, "snap-0ea83e8a87e138f39");
    assert_string_equal(tl.v[0].status, "completed");
    kiln_ec2_import_tasks_clear(&tl);

    _cleanup_xml_ xmlDoc *imp = xml_file("libcloud/import_snapshot.xml");
    assert_int_equal(kiln_ec2_parse_import_tasks(imp, &tl, NULL), 0);
    assert_int_equal(tl.n, 1);
    assert_string_equal(tl.v[0].import_task_id, "import-snap-fgsddbhv");
    assert_string_equal(tl.v[0].status, "active");
    assert_string_equal(tl.v[0].progress, "3");
    assert_null(tl.v[0].snapshot_id);
    kiln_ec2_import_tasks_clear(&tl);

    const char *id_files[] = {"libcloud/create_image.xml", "libcloud/copy_image.xml",
                              "libcloud/register_image.xml", "aws-docs-ec2/CopyImage.example1.response.xml",
                              "aws-docs-ec2/CreateImage.example1.response.xml",
                              "aws-docs-ec2/RegisterImage.example1.response.xml"};
    for (size_t i = 0; i < ARRAY_SIZE(id_files); i++) {
        _cleanup_xml_ xmlDoc *d = xml_file(id_files[i]);
        _cleanup_free_ char *id = NULL;
        assert_int_equal(kiln_ec2_parse_image_id(d, &id, NULL), 0);
        assert_memory_equal(id, "ami-", 4);
    }

    _cleanup_xml_ xmlDoc *term = xml_file("aws-docs-ec2/TerminateInstances.example1.response.xml");
    struct kiln_ec2_state_changes sc;
    assert_int_equal(kiln_ec2_parse_state_changes(term, &sc, NULL), 0);
    assert_int_equal(sc.n, 1);
    assert_string_equal(sc.v[0].current_name, "shutting-down");
    assert_int_equal(sc.v[0].current_code, 32);
    kiln_ec2_state_changes_clear(&sc);

    _cleanup_xml_ xmlDoc *di = xml_file("aws-docs-ec2/DescribeInstances.example2.response.xml");
    struct kiln_ec2_instances inl;
    assert_int_equal(kiln_ec2_parse_instances(di, &inl, NULL), 0);
    assert_int_equal(inl.n, 1);
    assert_string_equal(inl.v[0].instance_id, "i-1234567890abcdef0");
    assert_string_equal(inl.v[0].state_name, "running");
    assert_string_equal(inl.v[0].public_ip, "54.194.252.215");
    assert_string_equal(inl.v[0].availability_zone, "eu-west-1c");
    assert_string_equal(inl.v[0].reservation_id, "r-1234567890abcdef0");
    kiln_ec2_instances_clear(&inl);

    _cleanup_xml_ xmlDoc *ds = xml_file("aws-docs-ec2/DescribeSnapshots.example1.response.xml");
    struct kiln_ec2_snapshots sl;
    assert_int_equal(kiln_ec2_parse_snapshots(ds, &sl, NULL), 0);
    assert_true(sl.n >= 1);
    assert_memory_equal(sl.v[0].snapshot_id, "snap-", 5);
    kiln_ec2_snapshots_clear(&sl);

    /* Errors in the shapes AWS documents, and libcloud's captured ones. */
    const struct {
        const char *file, *code;
    } errs[] = {{"aws-docs-ec2/Error.example.InvalidInstanceID.NotFound.xml",
                 "InvalidInstanceID.NotFound"},
                {"libcloud/run_instances_idem_mismatch.xml", "IdempotentParameterMismatch"},
                {"libcloud/describe_key_pairs_doesnt_exist.xml", "InvalidKeyPair.NotFound"},
                {"aws-docs-s3/CompleteMultipartUpload.example4.error-in-body-200.body.derived.xml",
                 "InternalError"}};
    for (size_t i = 0; i < ARRAY_SIZE(errs); i++) {
        size_t len;
        _cleanup_free_ char *body = data_file(errs[i].file, &len);
        struct kiln_error err = {0};
        kiln_aws_parse_error(400, NULL, body, len, &err, NULL);
        assert_string_equal(err.cause, errs[i].code);
    }
}

/* EBS direct examples: "HTTP/1.1 ..." status, headers, blank line, JSON body. */
static void
http_example(const char *rel, struct kiln_aws_headers *h, char **body)
{
    _cleanup_free_ char *text = data_file(rel, NULL);
    char *sep = strstr(text, "\n\n");
    char *sep2 = NULL;
    /* The docs indent some examples: a line of spaces ends the headers too. */
    for (char *p = strchr(text, '\n'); p && !sep2; p = strchr(p + 1, '\n')) {
        char *q = p + 1;
        while (*q == ' ')
            q++;
        if (*q == '\n')
            sep2 = p;
    }
    if (!sep || (sep2 && sep2 < sep))
        sep = sep2;
    assert_non_null(sep);
    *sep = 0;
    char *save = NULL;
    strtok_r(text, "\n", &save);
    for (char *l = strtok_r(NULL, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        while (*l == ' ')
            l++;
        char *c = strchr(l, ':');
        if (!c)
            continue;
        *c = 0;
        kiln_aws_headers_add(h, l, c + 1 + (c[1] == ' '));
    }
    char *b = sep + 1;
    while (*b == ' ' || *b == '\n')
        b++;
    *body = kiln_strdup(b);
}

static void
ebs_direct_examples(void **state)
{
    struct kiln_aws_headers h = {0};
    _cleanup_free_ char *body = NULL;
    http_example("ebs-direct/StartSnapshot.writesnapshots-block04.http-response.txt", &h, &body);
    struct kiln_ebs_snapshot s;
    struct kiln_error err = {0};
    assert_int_equal(kiln_ebs_parse_snapshot(body, strlen(body), &s, &err), 0);
    assert_string_equal(s.snapshot_id, "snap-052EXAMPLEc85d8dd");
    assert_string_equal(s.status, "pending");
    assert_int_equal(s.volume_size, 8);
    assert_int_equal(s.block_size, KILN_EBS_BLOCK_SIZE);
    assert_null(s.description); /* JSON null */
    assert_string_equal(kiln_aws_headers_get(&h, "x-amzn-RequestId"),
                        "929e6eb9-7183-405a-9502-5b7da37c1b18");
    kiln_ebs_snapshot_clear(&s);
    kiln_aws_headers_clear(&h);
    free(TAKE_PTR(body));

    /* The documentation elides blocks with "...": not JSON, and must say so. */
    http_example("ebs-direct/ListSnapshotBlocks.readsnapshots-block04.http-response.txt", &h,
                 &body);
    struct kiln_ebs_block_list bl;
    kiln_error_clear(&err);
    assert_int_equal(kiln_ebs_parse_block_list(body, strlen(body), &bl, &err), -KILN_E_PARSE);
    assert_non_null(strstr(err.message, "ListSnapshotBlocks"));
    /* Without the elision it is the documented shape. */
    char *dots = strstr(body, "...");
    assert_non_null(dots);
    char *line = dots;
    while (line > body && line[-1] != '\n')
        line--;
    char *prev_comma = line - 1;
    while (prev_comma > body && *prev_comma != ',')
        prev_comma--;
    *prev_comma = ' ';
    memset(line, ' ', (size_t)(dots + 3 - line));
    assert_int_equal(kiln_ebs_parse_block_list(body, strlen(body), &bl, NULL), 0);
    assert_int_equal(bl.n, 4);
    assert_int_equal(bl.v[1].index, 1536);
    assert_int_equal(bl.volume_size, 3);
    assert_int_equal(bl.block_size, KILN_EBS_BLOCK_SIZE);
    assert_null(bl.next_token);
    kiln_ebs_block_list_clear(&bl);
    kiln_aws_headers_clear(&h);
    free(TAKE_PTR(body));

    /* PutSnapshotBlock's example echoes the checksum the request example sent. */
    http_example("ebs-direct/PutSnapshotBlock.writesnapshots-block08.http-response.txt", &h,
                 &body);
    assert_string_equal(kiln_aws_headers_get(&h, "x-amz-Checksum"),
                        "QOD3gmEQOXATfJx2Aa34W4FU2nZGyXfqtsUuktOw8DM=");
    kiln_aws_headers_clear(&h);
}

static void
ebs_checksums(void **state)
{
    /* SHA-256 of 512 KiB of zeros, base64 (computed independently: python hashlib). */
    uint8_t *zero = calloc(1, KILN_EBS_BLOCK_SIZE);
    char sum[45];
    kiln_ebs_checksum(zero, KILN_EBS_BLOCK_SIZE, sum);
    assert_string_equal(sum, "B4VNL+8pega6gWheZgwzLeNtXRjVRpJ9MNqtbX/aFUE=");
    /* Linear aggregate of two blocks = SHA-256(d1 || d2). */
    uint8_t d[2][32];
    kiln_hash_buf(KILN_HASH_SHA256, zero, KILN_EBS_BLOCK_SIZE, d[0]);
    zero[0] = 1;
    kiln_hash_buf(KILN_HASH_SHA256, zero, KILN_EBS_BLOCK_SIZE, d[1]);
    char agg[45], direct[45];
    kiln_ebs_aggregate_checksum((const uint8_t(*)[32])d, 2, agg);
    uint8_t both[64], h[32];
    memcpy(both, d[0], 32);
    memcpy(both + 32, d[1], 32);
    kiln_hash_buf(KILN_HASH_SHA256, both, 64, h);
    kiln_ebs_checksum(both, 64, direct);
    assert_string_equal(agg, direct);
    free(zero);
}

static void
bad_xml_is_clean_error(void **state)
{
    const char *bad[] = {
        "",
        "<DescribeInstancesResponse><reservationSet><item>",
        "not xml at all",
        "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;\">]>"
        "<r>&b;</r>",
        "<!DOCTYPE r SYSTEM \"http://127.0.0.1:1/evil.dtd\"><r/>",
        "<a><b></a>",
        "\xff\xfe<\x00r\x00",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        xmlDoc *doc = NULL;
        struct kiln_error err = {0};
        assert_int_equal(kiln_aws_xml_parse(bad[i], strlen(bad[i]), &doc, &err), -KILN_E_PARSE);
        assert_null(doc);
        assert_true(strlen(err.message) > 0);
    }
    /* Oversized bodies are refused before parsing. */
    size_t big = KILN_AWS_XML_MAX + 1;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    huge[0] = '<';
    xmlDoc *doc = NULL;
    assert_int_equal(kiln_aws_xml_parse(huge, big, &doc, NULL), -KILN_E_LIMIT);
    free(huge);
    /* Well-formed but the wrong shape: a clear error from each parser. */
    const char *wrong = "<SomethingElse><x/></SomethingElse>";
    assert_int_equal(kiln_aws_xml_parse(wrong, strlen(wrong), &doc, NULL), 0);
    struct kiln_ec2_instances il;
    struct kiln_ec2_images iml;
    struct kiln_ec2_snapshots sl;
    struct kiln_ec2_import_tasks tl;
    struct kiln_ec2_regions rl;
    struct kiln_s3_list s3l;
    struct kiln_aws_credentials cr;
    assert_int_equal(kiln_ec2_parse_instances(doc, &il, NULL), -KILN_E_PARSE);
    assert_int_equal(kiln_ec2_parse_images(doc, &iml, NULL), -KILN_E_PARSE);
    assert_int_equal(kiln_ec2_parse_snapshots(doc, &sl, NULL), -KILN_E_PARSE);
    assert_int_equal(kiln_ec2_parse_import_tasks(doc, &tl, NULL), -KILN_E_PARSE);
    assert_int_equal(kiln_ec2_parse_regions(doc, &rl, NULL), -KILN_E_PARSE);
    assert_int_equal(kiln_s3_parse_list(doc, &s3l, NULL), -KILN_E_PARSE);
    assert_int_equal(kiln_sts_parse_assume_role(doc, &cr, NULL), -KILN_E_PARSE);
    xmlFreeDoc(doc);
    /* Predefined entities and character references are plain text, not DTD entities. */
    const char *refs = "<r><Key>a&amp;b&#x41;&lt;</Key></r>";
    assert_int_equal(kiln_aws_xml_parse(refs, strlen(refs), &doc, NULL), 0);
    _cleanup_free_ char *key = kiln_aws_xml_text(kiln_aws_xml_root(doc), "Key");
    assert_string_equal(key, "a&bA<");
    xmlFreeDoc(doc);
    /* Items without their ids are refused, not half-filled. */
    const char *noid = "<DescribeImagesResponse><imagesSet><item><name>x</name></item>"
                       "</imagesSet></DescribeImagesResponse>";
    assert_int_equal(kiln_aws_xml_parse(noid, strlen(noid), &doc, NULL), 0);
    assert_int_equal(kiln_ec2_parse_images(doc, &iml, NULL), -KILN_E_PARSE);
    xmlFreeDoc(doc);
}

static void
bad_json_is_clean_error(void **state)
{
    const char *bad[] = {"", "{", "[]", "{\"SnapshotId\": 5}", "{\"Blocks\": {}}",
                         "{\"Blocks\": [{\"BlockIndex\": -1, \"BlockToken\": \"x\"}]}",
                         "{\"Blocks\": [{\"BlockIndex\": 1}]}", "{\"a\":1,\"a\":2}",
                         "{\"SnapshotId\":\"snap-1\",\"BlockSize\":4096}"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct kiln_ebs_block_list bl;
        struct kiln_ebs_snapshot s;
        struct kiln_error e1 = {0}, e2 = {0};
        int r1 = kiln_ebs_parse_block_list(bad[i], strlen(bad[i]), &bl, &e1);
        int r2 = kiln_ebs_parse_snapshot(bad[i], strlen(bad[i]), &s, &e2);
        if (r1 == 0)
            kiln_ebs_block_list_clear(&bl);
        else
            assert_true(strlen(e1.message) > 0);
        assert_true(r2 < 0);
        assert_true(strlen(e2.message) > 0);
        /* Only "{}"-like lists without blocks may parse: none of these has valid blocks. */
        if (i >= 4 && i <= 6)
            assert_true(r1 < 0);
    }
}

KILN_TEST_MAIN(cmocka_unit_test(botocore_describe_instances),
               cmocka_unit_test(botocore_run_instances), cmocka_unit_test(botocore_stop_instances),
               cmocka_unit_test(botocore_register_image),
               cmocka_unit_test(botocore_describe_regions),
               cmocka_unit_test(botocore_describe_snapshots),
               cmocka_unit_test(botocore_s3_list_objects), cmocka_unit_test(botocore_errors),
               cmocka_unit_test(protocol_error_vectors), cmocka_unit_test(libcloud_fixtures),
               cmocka_unit_test(ebs_direct_examples), cmocka_unit_test(ebs_checksums),
               cmocka_unit_test(bad_xml_is_clean_error), cmocka_unit_test(bad_json_is_clean_error))
