/* Integration tests: Kiln's AWS client against the project's AWS simulator (tests/awssim/),
 * which verifies SigV4 and keeps EC2, S3, EBS-direct and STS state. Each case starts its own
 * simulator (python3 tests/awssim/awssim.py) and stops it afterwards. Registered per case by
 * tests/cmake/cloud.cmake with the label "cloud". */
#include "kiln-test.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cloud/ebs.h"
#include "cloud/ec2.h"
#include "cloud/http.h"
#include "cloud/s3.h"
#include "cloud/sts.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/json.h"

extern char **environ;

struct sim {
    pid_t pid;
    char *dir;
    char endpoint[64];
};

static struct sim S;
static struct kiln_aws_credentials test_creds = {"AKIDKILNTEST", "kiln-test-secret", NULL, 0};

static int
sim_start_with(const char *faults)
{
    memset(&S, 0, sizeof(S));
    if (kiln_mkdtemp("kiln-sim-itest", &S.dir, NULL) < 0)
        return -1;
    _cleanup_free_ char *script = kiln_asprintf("%s/tests/awssim/awssim.py",
                                                kiln_test_source_dir());
    _cleanup_free_ char *ready = kiln_asprintf("%s/port", S.dir);
    _cleanup_free_ char *state = kiln_asprintf("%s/state", S.dir);
    _cleanup_free_ char *log = kiln_asprintf("%s/sim.log", S.dir);
    char *argv[24] = {"python3", script, "--host", "127.0.0.1", "--port", "0", "--ready-file",
                      ready, "--state-dir", state, "--delay-scale", "0.01", "--seed", "7"};
    int n = 14;
    if (faults) {
        argv[n++] = "--faults";
        argv[n++] = (char *)faults;
    }
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int r = posix_spawnp(&S.pid, "python3", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0)
        return -1;
    for (int i = 0; i < 300; i++) {
        char *port = NULL;
        size_t len = 0;
        if (kiln_read_file(ready, 64, &port, &len, NULL) == 0 && len > 0 &&
            port[len - 1] == '\n') {
            snprintf(S.endpoint, sizeof(S.endpoint), "http://127.0.0.1:%ld",
                     strtol(port, NULL, 10));
            free(port);
            return 0;
        }
        free(port);
        usleep(50000);
    }
    return -1;
}

static int
sim_setup(void **state)
{
    return sim_start_with(NULL);
}

static int
sim_teardown(void **state)
{
    if (S.pid > 0) {
        kill(S.pid, SIGTERM);
        waitpid(S.pid, NULL, 0);
    }
    if (S.dir) {
        if (getenv("KILN_KEEP_SIM"))
            fprintf(stderr, "simulator state kept in %s\n", S.dir);
        else
            kiln_rm_rf(S.dir, NULL);
        free(S.dir);
    }
    memset(&S, 0, sizeof(S));
    return 0;
}

static struct kiln_aws_client *
client_in(const char *region, double budget)
{
    struct kiln_aws_client_config cfg = {.region = region, .endpoint_url = S.endpoint,
                                         .credentials = &test_creds, .budget = budget,
                                         .backoff_base_ms = 20, .backoff_cap_ms = 500,
                                         .max_attempts = 30, .max_parallel = 8};
    struct kiln_aws_client *c = NULL;
    struct kiln_error err = {0};
    if (kiln_aws_client_new(&cfg, &c, &err) < 0)
        fail_msg("client: %s", err.message);
    return c;
}

#define OK(call)                                                                                   \
    do {                                                                                           \
        struct kiln_error e_ = {0};                                                                \
        struct kiln_error *err = &e_;                                                              \
        int r_ = (call);                                                                           \
        if (r_ < 0)                                                                                \
            fail_msg("%s: %s (%s)", #call, e_.message, e_.cause);                                  \
    } while (0)

/* --- the simulator's control API ------------------------------------------------------- */

static size_t
collect(char *d, size_t s, size_t n, void *u)
{
    kiln_buf_append(u, d, s * n);
    return s * n;
}

static long
http_plain(const char *method, const char *url, const char *body, struct kiln_buf *out)
{
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
    long status = 0;
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    return status;
}

static json_t *
sim_state(void)
{
    _cleanup_free_ char *url = kiln_asprintf("%s/_kiln/state", S.endpoint);
    _cleanup_buf_ struct kiln_buf b;
    kiln_buf_init(&b);
    assert_int_equal(http_plain("GET", url, NULL, &b), 200);
    json_t *j = NULL;
    assert_int_equal(kiln_json_parse(b.data, b.len, 64 << 20, "state", &j, NULL), 0);
    return j;
}

static long long
sim_count(const char *op)
{
    _cleanup_json_ json_t *j = sim_state();
    return json_integer_value(json_object_get(json_object_get(j, "requests"), op));
}

static long long
sim_faults_injected(void)
{
    _cleanup_json_ json_t *j = sim_state();
    json_t *inj = json_object_get(json_object_get(j, "faults"), "injected");
    long long n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(inj, k, v)
        n += json_integer_value(v);
    return n;
}

static void
sim_set_faults(double rate, const char *kinds_json)
{
    _cleanup_free_ char *url = kiln_asprintf("%s/_kiln/faults", S.endpoint);
    _cleanup_free_ char *body = kiln_asprintf("{\"rate\": %g, \"kinds\": %s}", rate, kinds_json);
    _cleanup_buf_ struct kiln_buf b;
    kiln_buf_init(&b);
    assert_int_equal(http_plain("POST", url, body, &b), 200);
}

static double
mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --- helpers ------------------------------------------------------------------------------ */

static const struct kiln_ec2_wait fast_wait = {.budget = 60, .interval = 0.1};

static void
fill_random(uint8_t *p, size_t n, unsigned seed)
{
    uint64_t x = 0x9e3779b97f4a7c15ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static void
write_at(int fd, off_t off, size_t len, unsigned seed, int fill)
{
    uint8_t *buf = malloc(len);
    if (fill < 0)
        fill_random(buf, len, seed);
    else
        memset(buf, fill, len);
    assert_int_equal(pwrite(fd, buf, len, off), (ssize_t)len);
    free(buf);
}

static void
files_equal(const char *a, const char *b)
{
    char ha[KILN_HASH_MAX_HEX], hb[KILN_HASH_MAX_HEX];
    assert_int_equal(kiln_hash_file_hex(KILN_HASH_SHA256, a, ha, NULL), 0);
    assert_int_equal(kiln_hash_file_hex(KILN_HASH_SHA256, b, hb, NULL), 0);
    assert_string_equal(ha, hb);
}

static char *
tmp_path(const char *name)
{
    return kiln_asprintf("%s/%s", S.dir, name);
}

/* A raw image (1 GiB sparse by default) with data at chosen places, and the number of 512 KiB
 * blocks that hold non-zero data, counted independently of the uploader. */
static char *
make_sparse_image(uint64_t size, unsigned *ret_nonzero_blocks)
{
    char *path = tmp_path("disk.raw");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    const uint64_t B = KILN_EBS_BLOCK_SIZE;
    /* An MBR-ish first sector, a 3 MiB run, a run that straddles block edges, an allocated
     * but all-zero run (not sent), a single byte near the end, the last block partly. */
    write_at(fd, 0, 512, 1, -1);
    write_at(fd, (off_t)(10 * B), 3u << 20, 2, -1);
    write_at(fd, (off_t)(100 * B + 1000), (size_t)(2 * B), 3, -1);
    write_at(fd, (off_t)(300 * B), (size_t)(4 * B), 0, 0);
    write_at(fd, (off_t)(size / 2 + 7), 1, 4, 0x5a);
    write_at(fd, (off_t)(size - 4096), 4096, 5, -1);
    close(fd);
    *ret_nonzero_blocks = 1 + 6 + 3 + 0 + 1 + 1;
    return path;
}

/* --- cases ------------------------------------------------------------------------------- */

static void
sim_sts(void **state)
{
    struct kiln_aws_client *c = client_in("us-east-1", 30);
    struct kiln_sts_identity id;
    OK(kiln_sts_get_caller_identity(c, &id, err));
    assert_string_equal(id.account, "123456789012");
    kiln_sts_identity_clear(&id);
    struct kiln_aws_credentials tmp;
    struct kiln_sts_assume_role_request ar = {.role_arn = "arn:aws:iam::123456789012:role/kiln",
                                              .session_name = "itest", .duration_seconds = 900};
    OK(kiln_sts_assume_role(c, &ar, &tmp, err));
    assert_non_null(tmp.session_token);
    assert_true(tmp.expiration > time(NULL));
    /* The temporary keys sign requests (with X-Amz-Security-Token). */
    struct kiln_aws_client_config cfg = {.region = "eu-west-1", .endpoint_url = S.endpoint,
                                         .credentials = &tmp};
    struct kiln_aws_client *c2 = NULL;
    assert_int_equal(kiln_aws_client_new(&cfg, &c2, NULL), 0);
    OK(kiln_sts_get_caller_identity(c2, &id, err));
    assert_non_null(strstr(id.arn, "assumed-role"));
    kiln_sts_identity_clear(&id);
    kiln_aws_client_free(c2);
    kiln_aws_credentials_clear(&tmp);
    kiln_aws_client_free(c);
}

static void
sim_bad_secret_is_clear_error(void **state)
{
    struct kiln_aws_credentials bad = {"AKIDKILNTEST", "wrong-secret", NULL, 0};
    struct kiln_aws_client_config cfg = {.region = "us-east-1", .endpoint_url = S.endpoint,
                                         .credentials = &bad};
    struct kiln_aws_client *c = NULL;
    assert_int_equal(kiln_aws_client_new(&cfg, &c, NULL), 0);
    struct kiln_ec2_regions l;
    struct kiln_error err = {0};
    assert_int_equal(kiln_ec2_describe_regions(c, false, &l, &err), -KILN_E_REMOTE);
    assert_string_equal(err.cause, "SignatureDoesNotMatch");
    assert_false(err.retryable);
    assert_null(strstr(err.message, "wrong-secret"));
    /* Not retried: a signature mismatch does not heal. */
    struct kiln_aws_stats st;
    kiln_aws_client_stats(c, &st);
    assert_int_equal(st.attempts, 1);
    kiln_aws_client_free(c);
}

/* Upload a small image, register it, and run the EC2 life cycle on it. */
static void
sim_ec2_lifecycle(void **state)
{
    struct kiln_aws_client *c = client_in("us-east-1", 60);
    struct kiln_ec2_regions regions;
    OK(kiln_ec2_describe_regions(c, false, &regions, err));
    assert_true(regions.n > 3);
    bool has_west = false;
    for (size_t i = 0; i < regions.n; i++)
        has_west = has_west || kiln_streq(regions.v[i].name, "eu-west-1");
    assert_true(has_west);
    kiln_ec2_regions_clear(&regions);

    unsigned nz;
    _cleanup_free_ char *img = make_sparse_image(1ull << 30, &nz);
    struct kiln_ebs_upload_result up;
    OK(kiln_ebs_upload_image(c, img, NULL, &up, err));
    OK(kiln_ec2_wait_snapshot_completed(c, up.snapshot_id, &fast_wait, err));

    struct kiln_ec2_block_device_spec dev = {"/dev/xvda", up.snapshot_id, 0, "gp3", true};
    struct kiln_ec2_register_image_request rr = {.name = "kiln-itest", .architecture = "x86_64",
                                                 .root_device_name = "/dev/xvda",
                                                 .virtualization_type = "hvm",
                                                 .ena_support = true, .boot_mode = "uefi",
                                                 .devices = &dev, .n_devices = 1};
    _cleanup_free_ char *ami = NULL;
    OK(kiln_ec2_register_image(c, &rr, &ami, err));
    OK(kiln_ec2_wait_image_available(c, ami, &fast_wait, err));

    struct kiln_ec2_tag_spec tags[] = {{"kiln:build", "itest"}, {"Name", "builder"}};
    struct kiln_ec2_run_instances_request run = {.image_id = ami, .instance_type = "t3.micro",
                                                 .user_data = "#!/bin/sh\necho kiln\n",
                                                 .tags = tags,
                                                 .n_tags = 2, .client_token = "itest-1"};
    struct kiln_ec2_instances inst;
    OK(kiln_ec2_run_instances(c, &run, &inst, err));
    assert_int_equal(inst.n, 1);
    _cleanup_free_ char *iid = kiln_strdup(inst.v[0].instance_id);
    kiln_ec2_instances_clear(&inst);
    const char *ids[] = {iid, NULL};
    OK(kiln_ec2_wait_instances(c, ids, "running", &fast_wait, err));

    struct kiln_ec2_describe_request dr = {.ids = ids};
    OK(kiln_ec2_describe_instances(c, &dr, &inst, err));
    assert_int_equal(inst.n, 1);
    assert_string_equal(inst.v[0].state_name, "running");
    assert_string_equal(inst.v[0].image_id, ami);
    bool tagged = false;
    for (size_t i = 0; i < inst.v[0].n_tags; i++)
        tagged = tagged || (kiln_streq(inst.v[0].tags[i].key, "kiln:build") &&
                            kiln_streq(inst.v[0].tags[i].value, "itest"));
    assert_true(tagged);
    kiln_ec2_instances_clear(&inst);

    struct kiln_ec2_tag_spec more[] = {{"stage", "stopping"}};
    OK(kiln_ec2_create_tags(c, ids, more, 1, err));
    struct kiln_ec2_state_changes sc;
    OK(kiln_ec2_stop_instances(c, ids, false, &sc, err));
    assert_int_equal(sc.n, 1);
    assert_string_equal(sc.v[0].previous_name, "running");
    kiln_ec2_state_changes_clear(&sc);
    OK(kiln_ec2_wait_instances(c, ids, "stopped", &fast_wait, err));

    struct kiln_ec2_create_image_request ci = {.instance_id = iid, .name = "kiln-itest-built",
                                               .description = "built", .tags = tags,
                                               .n_tags = 1};
    _cleanup_free_ char *built = NULL;
    OK(kiln_ec2_create_image(c, &ci, &built, err));
    OK(kiln_ec2_wait_image_available(c, built, &fast_wait, err));
    const char *bids[] = {built, NULL};
    struct kiln_ec2_describe_request bq = {.ids = bids};
    struct kiln_ec2_images il;
    OK(kiln_ec2_describe_images(c, &bq, &il, err));
    assert_int_equal(il.n, 1);
    assert_string_equal(il.v[0].state, "available");
    assert_string_equal(il.v[0].name, "kiln-itest-built");
    assert_true(il.v[0].n_devices >= 1);
    assert_non_null(il.v[0].devices[0].snapshot_id);
    _cleanup_free_ char *built_snap = kiln_strdup(il.v[0].devices[0].snapshot_id);
    kiln_ec2_images_clear(&il);

    const char *accounts[] = {"210987654321", NULL};
    struct kiln_ec2_permission_change pc = {.add_user_ids = accounts};
    OK(kiln_ec2_modify_image_launch_permission(c, built, &pc, err));
    OK(kiln_ec2_modify_image_description(c, built, "shared", err));
    OK(kiln_ec2_modify_snapshot_create_volume_permission(c, built_snap, &pc, err));

    /* Distribution: CopyImage into another region, waited there. */
    struct kiln_aws_client *west = client_in("eu-west-1", 60);
    struct kiln_ec2_copy_image_request cp = {.source_region = "us-east-1",
                                             .source_image_id = built, .name = "kiln-copy"};
    _cleanup_free_ char *copy = NULL;
    OK(kiln_ec2_copy_image(west, &cp, &copy, err));
    OK(kiln_ec2_wait_image_available(west, copy, &fast_wait, err));
    kiln_aws_client_free(west);

    struct kiln_ec2_snapshots sl;
    const char *owners[] = {"self", NULL};
    struct kiln_ec2_describe_request sq = {.owners = owners};
    OK(kiln_ec2_describe_snapshots_all(c, &sq, &sl, err));
    assert_true(sl.n >= 2);
    kiln_ec2_snapshots_clear(&sl);

    OK(kiln_ec2_terminate_instances(c, ids, &sc, err));
    kiln_ec2_state_changes_clear(&sc);
    OK(kiln_ec2_wait_instances(c, ids, "terminated", &fast_wait, err));
    OK(kiln_ec2_deregister_image(c, built, err));
    OK(kiln_ec2_deregister_image(c, ami, err));
    OK(kiln_ec2_delete_snapshot(c, built_snap, err));
    /* Deleted means gone. */
    const char *gone[] = {built_snap, NULL};
    struct kiln_ec2_describe_request gq = {.ids = gone};
    struct kiln_error e2 = {0};
    assert_int_equal(kiln_ec2_describe_snapshots(c, &gq, &sl, &e2), -KILN_E_REMOTE);
    assert_string_equal(e2.cause, "InvalidSnapshot.NotFound");
    kiln_ebs_upload_result_clear(&up);
    kiln_aws_client_free(c);
}

static void
sim_ec2_pagination_and_waiter_budget(void **state)
{
    struct kiln_aws_client *c = client_in("us-east-1", 60);
    unsigned nz;
    _cleanup_free_ char *img = make_sparse_image(1ull << 30, &nz);
    struct kiln_ebs_upload_result up;
    OK(kiln_ebs_upload_image(c, img, NULL, &up, err));
    OK(kiln_ec2_wait_snapshot_completed(c, up.snapshot_id, &fast_wait, err));
    struct kiln_ec2_block_device_spec dev = {"/dev/xvda", up.snapshot_id, 0, NULL, true};
    struct kiln_ec2_register_image_request rr = {.name = "page", .root_device_name = "/dev/xvda",
                                                 .devices = &dev, .n_devices = 1};
    _cleanup_free_ char *ami = NULL;
    OK(kiln_ec2_register_image(c, &rr, &ami, err));
    OK(kiln_ec2_wait_image_available(c, ami, &fast_wait, err));
    struct kiln_ec2_run_instances_request run = {.image_id = ami, .min_count = 12,
                                                 .max_count = 12};
    struct kiln_ec2_instances inst;
    OK(kiln_ec2_run_instances(c, &run, &inst, err));
    assert_int_equal(inst.n, 12);
    kiln_ec2_instances_clear(&inst);
    long long before = sim_count("ec2:DescribeInstances");
    struct kiln_ec2_describe_request dr = {.max_results = 5};
    OK(kiln_ec2_describe_instances_all(c, &dr, &inst, err));
    assert_int_equal(inst.n, 12);
    /* 12 instances at 5 a page: three pages. */
    assert_int_equal(sim_count("ec2:DescribeInstances") - before, 3);
    kiln_ec2_instances_clear(&inst);

    /* A waiter that cannot succeed stops at its budget with a clear error. */
    const char *ghost_ids[] = {"i-0000000000000dead", NULL};
    struct kiln_ec2_wait w = {.budget = 1.0, .interval = 0.2};
    struct kiln_error err = {0};
    time_t t0 = time(NULL);
    assert_int_equal(kiln_ec2_wait_instances(c, ghost_ids, "running", &w, &err), -ETIMEDOUT);
    assert_true(time(NULL) - t0 <= 3);
    assert_non_null(strstr(err.message, "i-0000000000000dead"));
    /* And a cancelled one stops at once. */
    volatile int cancel = 1;
    w.cancel = &cancel;
    kiln_error_clear(&err);
    assert_int_equal(kiln_ec2_wait_image_available(c, ami, &w, &err), -ECANCELED);
    kiln_ebs_upload_result_clear(&up);
    kiln_aws_client_free(c);
}

static void
sim_s3_objects(void **state)
{
    struct kiln_aws_client *c = client_in("eu-west-1", 30);
    OK(kiln_s3_create_bucket(c, "kiln-itest", err));
    OK(kiln_s3_create_bucket(c, "kiln-itest", err)); /* already ours: fine */
    const char *text = "hello from kiln\n";
    _cleanup_free_ char *etag = NULL;
    OK(kiln_s3_put_object(c, "kiln-itest", "dir/with space/héllo.txt", text, strlen(text),
                          "text/plain", &etag, err));
    assert_non_null(etag);
    struct kiln_s3_object_info info;
    OK(kiln_s3_head_object(c, "kiln-itest", "dir/with space/héllo.txt", &info, err));
    assert_int_equal(info.size, strlen(text));
    assert_string_equal(info.etag, etag);
    kiln_s3_object_info_clear(&info);
    _cleanup_free_ char *out = tmp_path("got.txt");
    OK(kiln_s3_get_object(c, "kiln-itest", "dir/with space/héllo.txt", out, err));
    _cleanup_free_ char *got = NULL;
    size_t len;
    assert_int_equal(kiln_read_file(out, 1024, &got, &len, NULL), 0);
    assert_string_equal(got, text);

    for (int i = 0; i < 5; i++) {
        char key[32];
        snprintf(key, sizeof(key), "list/k%d", i);
        OK(kiln_s3_put_object(c, "kiln-itest", key, key, strlen(key), NULL, NULL, err));
    }
    long long before = sim_count("s3:ListObjectsV2");
    struct kiln_s3_list_request lr = {.prefix = "list/", .max_keys = 2};
    struct kiln_s3_list l;
    OK(kiln_s3_list_objects_all(c, "kiln-itest", &lr, &l, err));
    assert_int_equal(l.n, 5);
    assert_string_equal(l.v[0].key, "list/k0");
    assert_string_equal(l.v[4].key, "list/k4");
    kiln_s3_list_clear(&l);
    long long pages = sim_count("s3:ListObjectsV2") - before;
    assert_int_equal(pages, 3);

    /* Presigned URLs work with a plain HTTP client. */
    _cleanup_free_ char *put_url = NULL, *get_url = NULL;
    OK(kiln_s3_presign(c, "PUT", "kiln-itest", "presigned/obj", 300, &put_url, err));
    assert_non_null(strstr(put_url, "X-Amz-Signature="));
    _cleanup_buf_ struct kiln_buf b;
    kiln_buf_init(&b);
    assert_int_equal(http_plain("PUT", put_url, "uploaded via presigned PUT", &b), 200);
    OK(kiln_s3_presign(c, "GET", "kiln-itest", "presigned/obj", 300, &get_url, err));
    kiln_buf_reset(&b);
    assert_int_equal(http_plain("GET", get_url, NULL, &b), 200);
    assert_string_equal(b.data, "uploaded via presigned PUT");
    /* Tampering with the signed URL is refused. */
    char *q = strstr(get_url, "presigned/obj");
    q[0] = 'P';
    kiln_buf_reset(&b);
    assert_int_equal(http_plain("GET", get_url, NULL, &b), 403);

    OK(kiln_s3_delete_object(c, "kiln-itest", "dir/with space/héllo.txt", err));
    struct kiln_error err = {0};
    assert_int_equal(kiln_s3_head_object(c, "kiln-itest", "dir/with space/héllo.txt", &info,
                                         &err),
                     -ENOENT);
    kiln_error_clear(&err);
    _cleanup_free_ char *out2 = tmp_path("missing.txt");
    assert_int_equal(kiln_s3_get_object(c, "kiln-itest", "nope", out2, &err), -KILN_E_REMOTE);
    assert_string_equal(err.cause, "NoSuchKey");
    kiln_aws_client_free(c);
}

static void
multipart_roundtrip(struct kiln_aws_client *c, size_t size, unsigned seed)
{
    _cleanup_free_ char *src = tmp_path("mp.bin");
    int fd = open(src, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    write_at(fd, 0, size, seed, -1);
    close(fd);
    OK(kiln_s3_create_bucket(c, "kiln-mp", err));
    OK(kiln_s3_upload_file(c, "kiln-mp", "big/object.bin", src, 5u << 20, err));
    _cleanup_free_ char *back = tmp_path("mp.back");
    OK(kiln_s3_get_object(c, "kiln-mp", "big/object.bin", back, err));
    files_equal(src, back);
}

static void
sim_s3_multipart(void **state)
{
    struct kiln_aws_client *c = client_in("us-east-1", 120);
    multipart_roundtrip(c, (33u << 20) + 12345, 11);
    /* 7 parts of 5 MiB, sent in parallel, and one completion. */
    assert_int_equal(sim_count("s3:UploadPart"), 7);
    assert_int_equal(sim_count("s3:CompleteMultipartUpload"), 1);
    kiln_aws_client_free(c);
}

static void
sim_s3_multipart_fails_within_budget(void **state)
{
    struct kiln_aws_client *c = client_in("us-east-1", 3);
    _cleanup_free_ char *src = tmp_path("mp.bin");
    int fd = open(src, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    write_at(fd, 0, 12u << 20, 3, -1);
    close(fd);
    OK(kiln_s3_create_bucket(c, "kiln-mp", err));
    /* Throttled for longer than the 3 s budget: the upload gives up in time and says why.
     * (Aborting after a failed part is covered by cloud-s3-test.) */
    sim_set_faults(1.0, "[\"throttle\"]");
    struct kiln_error err = {0};
    double t0 = mono();
    assert_true(kiln_s3_upload_file(c, "kiln-mp", "x", src, 5u << 20, &err) < 0);
    assert_true(mono() - t0 < 5.0);
    sim_set_faults(0, "[]");
    assert_true(err.retryable);
    assert_non_null(strstr(err.message, "time budget"));
    kiln_aws_client_free(c);
}

static void
sim_ebs_sparse_1g_roundtrip(void **state)
{
    struct kiln_aws_client *c = client_in("us-east-1", 120);
    unsigned nonzero;
    _cleanup_free_ char *img = make_sparse_image(1ull << 30, &nonzero);
    struct kiln_ebs_upload_options o = {.description = "itest", .client_token = "tok-1",
                                        .parallel = 8};
    struct kiln_ebs_upload_result up;
    OK(kiln_ebs_upload_image(c, img, &o, &up, err));
    assert_int_equal(up.blocks_total, 2048);
    assert_int_equal(up.blocks_sent, nonzero);
    assert_int_equal(up.blocks_zero, 4);
    /* Only allocated data was read: far less than the 1 GiB volume. */
    assert_true(up.bytes_read < (20u << 20));
    assert_int_equal(sim_count("ebs:PutSnapshotBlock"), nonzero);
    assert_int_equal(sim_count("ebs:StartSnapshot"), 1);
    assert_int_equal(sim_count("ebs:CompleteSnapshot"), 1);
    OK(kiln_ec2_wait_snapshot_completed(c, up.snapshot_id, &fast_wait, err));

    struct kiln_ebs_block_list bl;
    OK(kiln_ebs_list_snapshot_blocks_all(c, up.snapshot_id, &bl, err));
    assert_int_equal(bl.n, nonzero);
    assert_int_equal(bl.volume_size, 1);
    /* Block by block through GetSnapshotBlock, each against the image. */
    int fd = open(img, O_RDONLY | O_CLOEXEC);
    uint8_t *want = malloc(KILN_EBS_BLOCK_SIZE);
    for (size_t i = 0; i < bl.n; i++) {
        struct kiln_buf blk;
        OK(kiln_ebs_get_snapshot_block(c, up.snapshot_id, bl.v[i].index, bl.v[i].token, &blk,
                                       err));
        assert_int_equal(pread(fd, want, KILN_EBS_BLOCK_SIZE,
                               (off_t)(bl.v[i].index * KILN_EBS_BLOCK_SIZE)),
                         KILN_EBS_BLOCK_SIZE);
        assert_memory_equal(blk.data, want, KILN_EBS_BLOCK_SIZE);
        kiln_buf_clear(&blk);
    }
    free(want);
    close(fd);
    kiln_ebs_block_list_clear(&bl);

    /* And the whole snapshot back into a file: byte for byte the image. */
    _cleanup_free_ char *back = tmp_path("back.raw");
    uint64_t got = 0;
    OK(kiln_ebs_download_snapshot(c, up.snapshot_id, back, 8, &got, err));
    assert_int_equal(got, nonzero);
    files_equal(img, back);
    kiln_ebs_upload_result_clear(&up);
    kiln_aws_client_free(c);
}

struct canceller {
    volatile int cancel;
    long long after;
    volatile int stop;
};

static void *
cancel_after_blocks(void *arg)
{
    struct canceller *k = arg;
    while (!k->stop && !k->cancel) {
        if (sim_count("ebs:PutSnapshotBlock") >= k->after)
            k->cancel = 1;
        usleep(2000);
    }
    return NULL;
}

/* An upload cancelled midway resumes from its journal: same snapshot (client token), the
 * blocks already written are not sent again, and the result is byte-identical. */
static void
sim_ebs_resume_after_interruption(void **state)
{
    _cleanup_free_ char *img = tmp_path("resume.raw");
    int fd = open(img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_int_equal(ftruncate(fd, 1 << 30), 0);
    write_at(fd, 5u << 20, 48u << 20, 99, -1);
    close(fd);
    const unsigned nz = 96;
    _cleanup_free_ char *journal = tmp_path("resume.journal");

    struct canceller k = {.after = 10};
    struct kiln_aws_client_config cfg = {.region = "us-east-1", .endpoint_url = S.endpoint,
                                         .credentials = &test_creds, .budget = 60,
                                         .cancel = &k.cancel};
    struct kiln_aws_client *c1 = NULL;
    assert_int_equal(kiln_aws_client_new(&cfg, &c1, NULL), 0);
    pthread_t t;
    pthread_create(&t, NULL, cancel_after_blocks, &k);
    struct kiln_ebs_upload_options o = {.client_token = "resume-1", .journal = journal,
                                        .parallel = 2};
    struct kiln_ebs_upload_result up1;
    struct kiln_error e1 = {0};
    int r = kiln_ebs_upload_image(c1, img, &o, &up1, &e1);
    k.stop = 1;
    pthread_join(t, NULL);
    assert_int_equal(r, -ECANCELED);
    assert_true(up1.blocks_sent >= 5 && up1.blocks_sent < nz);
    kiln_aws_client_free(c1);
    struct stat st;
    assert_int_equal(stat(journal, &st), 0);

    struct kiln_aws_client *c2 = client_in("us-east-1", 60);
    struct kiln_ebs_upload_result up2;
    OK(kiln_ebs_upload_image(c2, img, &o, &up2, err));
    assert_string_equal(up2.snapshot_id, up1.snapshot_id);
    assert_int_equal(up2.blocks_resumed, up1.blocks_sent);
    assert_int_equal(up2.blocks_sent + up2.blocks_resumed, nz);
    /* Over both runs, at most the two blocks in flight at the cancel went out twice. */
    assert_true(sim_count("ebs:PutSnapshotBlock") <= nz + 2);
    assert_int_equal(stat(journal, &st), -1);
    OK(kiln_ec2_wait_snapshot_completed(c2, up2.snapshot_id, &fast_wait, err));
    _cleanup_free_ char *back = tmp_path("resume.back");
    OK(kiln_ebs_download_snapshot(c2, up2.snapshot_id, back, 8, NULL, err));
    files_equal(img, back);
    kiln_ebs_upload_result_clear(&up1);
    kiln_ebs_upload_result_clear(&up2);
    kiln_aws_client_free(c2);
}

static void
sim_import_snapshot(void **state)
{
    struct kiln_aws_client *c = client_in("us-east-1", 60);
    OK(kiln_s3_create_bucket(c, "kiln-import", err));
    unsigned nz;
    _cleanup_free_ char *img = make_sparse_image(8u << 20, &nz);
    OK(kiln_s3_upload_file(c, "kiln-import", "disk.raw", img, 0, err));
    struct kiln_ec2_import_snapshot_request ir = {.description = "kiln import", .format = "RAW",
                                                  .s3_bucket = "kiln-import",
                                                  .s3_key = "disk.raw"};
    struct kiln_ec2_import_tasks tl;
    OK(kiln_ec2_import_snapshot(c, &ir, &tl, err));
    assert_int_equal(tl.n, 1);
    _cleanup_free_ char *task = kiln_strdup(tl.v[0].import_task_id);
    kiln_ec2_import_tasks_clear(&tl);
    _cleanup_free_ char *snap = NULL;
    OK(kiln_ec2_wait_import_snapshot(c, task, &fast_wait, &snap, err));
    assert_memory_equal(snap, "snap-", 5);
    const char *ids[] = {task, NULL};
    struct kiln_ec2_describe_request dr = {.ids = ids};
    OK(kiln_ec2_describe_import_snapshot_tasks(c, &dr, &tl, err));
    assert_string_equal(tl.v[0].status, "completed");
    kiln_ec2_import_tasks_clear(&tl);
    /* A missing object fails the task, and the waiter says why. */
    ir.s3_key = "missing.raw";
    OK(kiln_ec2_import_snapshot(c, &ir, &tl, err));
    _cleanup_free_ char *bad = kiln_strdup(tl.v[0].import_task_id);
    kiln_ec2_import_tasks_clear(&tl);
    struct kiln_error err = {0};
    char *none = NULL;
    assert_true(kiln_ec2_wait_import_snapshot(c, bad, &fast_wait, &none, &err) < 0);
    assert_null(none);
    assert_non_null(strstr(err.message, bad));
    kiln_aws_client_free(c);
}

static int
faults_setup(void **state)
{
    return sim_start_with("rate=0.1,kinds=throttle+500+reset");
}

static void
sim_faults_10pct_transfers_complete(void **state)
{
    struct kiln_aws_client *c = client_in("us-east-1", 300);
    multipart_roundtrip(c, (26u << 20) + 777, 21);
    unsigned nz;
    _cleanup_free_ char *img = make_sparse_image(1ull << 30, &nz);
    struct kiln_ebs_upload_result up;
    OK(kiln_ebs_upload_image(c, img, NULL, &up, err));
    assert_int_equal(up.blocks_sent, nz);
    OK(kiln_ec2_wait_snapshot_completed(c, up.snapshot_id, &fast_wait, err));
    _cleanup_free_ char *back = tmp_path("back.raw");
    OK(kiln_ebs_download_snapshot(c, up.snapshot_id, back, 8, NULL, err));
    files_equal(img, back);
    struct kiln_aws_stats st;
    kiln_aws_client_stats(c, &st);
    /* Faults really happened and were retried through. */
    assert_true(sim_faults_injected() > 0);
    assert_true(st.retries > 0);
    kiln_ebs_upload_result_clear(&up);
    kiln_aws_client_free(c);
}

static int
faults100_setup(void **state)
{
    return sim_start_with("rate=1.0,kinds=throttle+500+reset");
}

static void
sim_faults_100pct_gives_up_in_budget(void **state)
{
    struct kiln_aws_client *c = client_in("us-east-1", 2.0);
    struct kiln_error err = {0};
    struct kiln_ec2_regions rl;
    double t0 = mono();
    assert_true(kiln_ec2_describe_regions(c, false, &rl, &err) < 0);
    double took = mono() - t0;
    assert_true(took < 3.5);
    assert_true(err.retryable);
    assert_non_null(strstr(err.message, "DescribeRegions"));
    assert_true(strstr(err.message, "time budget") || strstr(err.message, "attempts"));
    kiln_error_clear(&err);

    unsigned nz;
    _cleanup_free_ char *img = make_sparse_image(64u << 20, &nz);
    struct kiln_ebs_upload_options o = {.budget = 3.0};
    struct kiln_ebs_upload_result up;
    t0 = mono();
    assert_true(kiln_ebs_upload_image(c, img, &o, &up, &err) < 0);
    assert_true(mono() - t0 < 5.0);
    assert_non_null(strstr(err.message, "StartSnapshot"));
    kiln_ebs_upload_result_clear(&up);
    kiln_aws_client_free(c);
}

KILN_TEST_MAIN(cmocka_unit_test_setup_teardown(sim_sts, sim_setup, sim_teardown),
               cmocka_unit_test_setup_teardown(sim_bad_secret_is_clear_error, sim_setup,
                                               sim_teardown),
               cmocka_unit_test_setup_teardown(sim_ec2_lifecycle, sim_setup, sim_teardown),
               cmocka_unit_test_setup_teardown(sim_ec2_pagination_and_waiter_budget, sim_setup,
                                               sim_teardown),
               cmocka_unit_test_setup_teardown(sim_s3_objects, sim_setup, sim_teardown),
               cmocka_unit_test_setup_teardown(sim_s3_multipart, sim_setup, sim_teardown),
               cmocka_unit_test_setup_teardown(sim_s3_multipart_fails_within_budget, sim_setup,
                                               sim_teardown),
               cmocka_unit_test_setup_teardown(sim_ebs_sparse_1g_roundtrip, sim_setup,
                                               sim_teardown),
               cmocka_unit_test_setup_teardown(sim_import_snapshot, sim_setup, sim_teardown),
               cmocka_unit_test_setup_teardown(sim_ebs_resume_after_interruption, sim_setup,
                                               sim_teardown),
               cmocka_unit_test_setup_teardown(sim_faults_10pct_transfers_complete,
                                               faults_setup, sim_teardown),
               cmocka_unit_test_setup_teardown(sim_faults_100pct_gives_up_in_budget,
                                               faults100_setup, sim_teardown))
