/* kiln-aws: drive Kiln's AWS client from the command line (benchmarks, integration tests,
 * manual checks). Credentials come from the standard chain; results print as JSON. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cloud/credentials.h"
#include "cloud/ebs.h"
#include "cloud/ec2.h"
#include "cloud/http.h"
#include "cloud/s3.h"
#include "cloud/sts.h"
#include "common/fs.h"
#include "common/log.h"

static void
usage(FILE *f)
{
    fputs("usage: kiln-aws [--endpoint-url URL] [--region R] [--profile P] [--budget S]\n"
          "                [--parallel N] [--client-token T --journal FILE] COMMAND ARGS...\n"
          "commands:\n"
          "  ebs-upload IMAGE             raw image -> EBS snapshot (EBS direct APIs)\n"
          "  ebs-download SNAPSHOT FILE   snapshot -> sparse file\n"
          "  s3-mb BUCKET                 create a bucket\n"
          "  s3-upload FILE BUCKET KEY    multipart upload\n"
          "  s3-get BUCKET KEY FILE       download an object\n"
          "  s3-presign METHOD BUCKET KEY SECONDS\n"
          "  s3-put FILE BUCKET KEY       single PutObject\n"
          "  s3-rm BUCKET KEY             delete an object\n"
          "  s3-ls BUCKET [PREFIX]        list objects (key, size, ETag)\n"
          "  describe-regions\n"
          "  whoami                       STS GetCallerIdentity\n"
          "EC2 (ids printed one per line; waits where 'aws ec2 wait' would):\n"
          "  ec2-run-instances IMAGE TYPE COUNT [K=V...]   waits running\n"
          "  ec2-create-tags ID K=V...\n"
          "  ec2-stop-instances ID...                      waits stopped\n"
          "  ec2-terminate-instances ID...                 waits terminated\n"
          "  ec2-create-image INSTANCE NAME [K=V...]       waits available\n"
          "  ec2-register-image NAME SNAPSHOT [ARCH]       waits available\n"
          "  ec2-copy-image SOURCE-REGION IMAGE NAME       (--region: destination) waits\n"
          "  ec2-add-launch-permission IMAGE ACCOUNT...\n"
          "  ec2-deregister-image IMAGE\n"
          "  ec2-delete-snapshot SNAPSHOT\n"
          "  ec2-import-snapshot BUCKET KEY [DESCRIPTION]  waits; prints task and snapshot\n"
          "options for these: --part-size BYTES (s3-upload), --wait-interval S,\n"
          "  --description D (ebs-upload)\n",
          f);
}

static double
mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* KEY=VALUE arguments -> tag specs (borrowing the argument strings, which are cut at '='). */
static int
parse_tags(char **args, int n, struct kiln_ec2_tag_spec *tags, struct kiln_error *err)
{
    for (int i = 0; i < n; i++) {
        char *eq = strchr(args[i], '=');
        if (!eq)
            return kiln_error_set(err, -EINVAL, "tag %s: expected KEY=VALUE", args[i]);
        *eq = '\0';
        tags[i].key = args[i];
        tags[i].value = eq + 1;
    }
    return 0;
}

static void
print_changes(struct kiln_ec2_state_changes *ch)
{
    for (size_t i = 0; i < ch->n; i++)
        printf("%s\n", ch->v[i].instance_id);
    kiln_ec2_state_changes_clear(ch);
}

/* The EC2 lifecycle commands and the smaller S3 ones; -EINVAL without a message: bad usage. */
static int
run_more(struct kiln_aws_client *cl, const char *cmd, char **args, int nargs,
         const struct kiln_ec2_wait *wait, struct kiln_error *err)
{
    int r;
    if (strcmp(cmd, "ec2-run-instances") == 0 && nargs >= 3) {
        _cleanup_free_ struct kiln_ec2_tag_spec *tags =
            kiln_new(struct kiln_ec2_tag_spec, (size_t)nargs);
        r = parse_tags(args + 3, nargs - 3, tags, err);
        if (r < 0)
            return r;
        unsigned count = (unsigned)strtoul(args[2], NULL, 10);
        struct kiln_ec2_run_instances_request req = {
            .image_id = args[0], .instance_type = args[1], .min_count = count,
            .max_count = count, .tags = tags, .n_tags = (size_t)nargs - 3};
        struct kiln_ec2_instances l;
        r = kiln_ec2_run_instances(cl, &req, &l, err);
        if (r < 0)
            return r;
        _cleanup_free_ const char **ids = kiln_new(const char *, l.n + 1);
        for (size_t i = 0; i < l.n; i++)
            ids[i] = l.v[i].instance_id;
        r = kiln_ec2_wait_instances(cl, ids, "running", wait, err);
        for (size_t i = 0; r == 0 && i < l.n; i++)
            printf("%s\n", ids[i]);
        kiln_ec2_instances_clear(&l);
        return r;
    }
    if (strcmp(cmd, "ec2-create-tags") == 0 && nargs >= 2) {
        _cleanup_free_ struct kiln_ec2_tag_spec *tags =
            kiln_new(struct kiln_ec2_tag_spec, (size_t)nargs);
        r = parse_tags(args + 1, nargs - 1, tags, err);
        if (r < 0)
            return r;
        const char *ids[] = {args[0], NULL};
        return kiln_ec2_create_tags(cl, ids, tags, (size_t)nargs - 1, err);
    }
    if ((strcmp(cmd, "ec2-stop-instances") == 0 || strcmp(cmd, "ec2-terminate-instances") == 0) &&
        nargs >= 1) {
        bool stop = strcmp(cmd, "ec2-stop-instances") == 0;
        _cleanup_free_ const char **ids = kiln_new(const char *, (size_t)nargs + 1);
        for (int i = 0; i < nargs; i++)
            ids[i] = args[i];
        struct kiln_ec2_state_changes ch;
        r = stop ? kiln_ec2_stop_instances(cl, ids, false, &ch, err)
                 : kiln_ec2_terminate_instances(cl, ids, &ch, err);
        if (r < 0)
            return r;
        r = kiln_ec2_wait_instances(cl, ids, stop ? "stopped" : "terminated", wait, err);
        if (r == 0)
            print_changes(&ch);
        else
            kiln_ec2_state_changes_clear(&ch);
        return r;
    }
    if ((strcmp(cmd, "ec2-create-image") == 0 && nargs >= 2) ||
        (strcmp(cmd, "ec2-register-image") == 0 && (nargs == 2 || nargs == 3)) ||
        (strcmp(cmd, "ec2-copy-image") == 0 && nargs == 3)) {
        _cleanup_free_ char *image_id = NULL;
        if (strcmp(cmd, "ec2-create-image") == 0) {
            _cleanup_free_ struct kiln_ec2_tag_spec *tags =
                kiln_new(struct kiln_ec2_tag_spec, (size_t)nargs);
            r = parse_tags(args + 2, nargs - 2, tags, err);
            if (r < 0)
                return r;
            struct kiln_ec2_create_image_request req = {
                .instance_id = args[0], .name = args[1], .tags = tags,
                .n_tags = (size_t)nargs - 2};
            r = kiln_ec2_create_image(cl, &req, &image_id, err);
        } else if (strcmp(cmd, "ec2-register-image") == 0) {
            struct kiln_ec2_block_device_spec dev = {.device_name = "/dev/xvda",
                                                     .snapshot_id = args[1],
                                                     .volume_type = "gp3",
                                                     .delete_on_termination = true};
            struct kiln_ec2_register_image_request req = {
                .name = args[0], .architecture = nargs == 3 ? args[2] : "x86_64",
                .root_device_name = "/dev/xvda", .virtualization_type = "hvm",
                .ena_support = true, .devices = &dev, .n_devices = 1};
            /* A snapshot just completed through EBS direct is still pending for a moment, and
             * RegisterImage refuses it until then (IncorrectState): wait, as a script waits
             * with "aws ec2 wait snapshot-completed". */
            r = kiln_ec2_wait_snapshot_completed(cl, args[1], wait, err);
            if (r == 0)
                r = kiln_ec2_register_image(cl, &req, &image_id, err);
        } else {
            struct kiln_ec2_copy_image_request req = {
                .source_region = args[0], .source_image_id = args[1], .name = args[2]};
            r = kiln_ec2_copy_image(cl, &req, &image_id, err);
        }
        if (r < 0)
            return r;
        r = kiln_ec2_wait_image_available(cl, image_id, wait, err);
        if (r == 0)
            printf("%s\n", image_id);
        return r;
    }
    if (strcmp(cmd, "ec2-add-launch-permission") == 0 && nargs >= 2) {
        _cleanup_free_ const char **users = kiln_new(const char *, (size_t)nargs);
        for (int i = 1; i < nargs; i++)
            users[i - 1] = args[i];
        struct kiln_ec2_permission_change ch = {.add_user_ids = users};
        return kiln_ec2_modify_image_launch_permission(cl, args[0], &ch, err);
    }
    if (strcmp(cmd, "ec2-deregister-image") == 0 && nargs == 1)
        return kiln_ec2_deregister_image(cl, args[0], err);
    if (strcmp(cmd, "ec2-delete-snapshot") == 0 && nargs == 1)
        return kiln_ec2_delete_snapshot(cl, args[0], err);
    if (strcmp(cmd, "ec2-import-snapshot") == 0 && (nargs == 2 || nargs == 3)) {
        struct kiln_ec2_import_snapshot_request req = {
            .description = nargs == 3 ? args[2] : NULL, .format = "RAW", .s3_bucket = args[0],
            .s3_key = args[1]};
        struct kiln_ec2_import_tasks l;
        r = kiln_ec2_import_snapshot(cl, &req, &l, err);
        if (r < 0)
            return r;
        if (l.n != 1) {
            kiln_ec2_import_tasks_clear(&l);
            return kiln_error_set(err, -EPROTO, "ImportSnapshot: no task in the response");
        }
        _cleanup_free_ char *snap = NULL;
        r = kiln_ec2_wait_import_snapshot(cl, l.v[0].import_task_id, wait, &snap, err);
        if (r == 0)
            printf("%s\n%s\n", l.v[0].import_task_id, snap);
        kiln_ec2_import_tasks_clear(&l);
        return r;
    }
    if (strcmp(cmd, "s3-put") == 0 && nargs == 3) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        r = kiln_read_file(args[0], (size_t)1 << 30, &data, &len, err);
        if (r < 0)
            return r;
        _cleanup_free_ char *etag = NULL;
        r = kiln_s3_put_object(cl, args[1], args[2], data, len, NULL, &etag, err);
        if (r == 0)
            printf("%s\n", etag ? etag : "");
        return r;
    }
    if (strcmp(cmd, "s3-rm") == 0 && nargs == 2)
        return kiln_s3_delete_object(cl, args[0], args[1], err);
    if (strcmp(cmd, "s3-ls") == 0 && (nargs == 1 || nargs == 2)) {
        struct kiln_s3_list_request req = {.prefix = nargs == 2 ? args[1] : NULL};
        struct kiln_s3_list l;
        r = kiln_s3_list_objects_all(cl, args[0], &req, &l, err);
        if (r < 0)
            return r;
        for (size_t i = 0; i < l.n; i++)
            printf("%s\t%llu\t%s\n", l.v[i].key, l.v[i].size, l.v[i].etag ? l.v[i].etag : "");
        kiln_s3_list_clear(&l);
        return 0;
    }
    return -EINVAL;
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {{"endpoint-url", required_argument, NULL, 'e'},
                                         {"region", required_argument, NULL, 'r'},
                                         {"profile", required_argument, NULL, 'p'},
                                         {"budget", required_argument, NULL, 'b'},
                                         {"parallel", required_argument, NULL, 'j'},
                                         {"client-token", required_argument, NULL, 't'},
                                         {"journal", required_argument, NULL, 'J'},
                                         {"part-size", required_argument, NULL, 'P'},
                                         {"wait-interval", required_argument, NULL, 'w'},
                                         {"description", required_argument, NULL, 'd'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *endpoint = getenv("AWS_ENDPOINT_URL");
    const char *region = getenv("AWS_REGION");
    if (!region)
        region = getenv("AWS_DEFAULT_REGION");
    const char *profile = NULL;
    double budget = 0;
    unsigned parallel = 16;
    const char *client_token = NULL, *journal = NULL;
    const char *description = "kiln-aws ebs-upload";
    unsigned long long part_size = 0;
    struct kiln_ec2_wait wait = {.budget = 600, .interval = 15};
    int c;
    kiln_log_init_from_env();
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            endpoint = optarg;
            break;
        case 'r':
            region = optarg;
            break;
        case 'p':
            profile = optarg;
            break;
        case 'b':
            budget = strtod(optarg, NULL);
            break;
        case 'j':
            parallel = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 't':
            client_token = optarg;
            break;
        case 'J':
            journal = optarg;
            break;
        case 'P':
            part_size = strtoull(optarg, NULL, 10);
            break;
        case 'w':
            wait.interval = strtod(optarg, NULL);
            break;
        case 'd':
            description = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    char **args = argv + optind + 1;
    int nargs = argc - optind - 1;
    struct kiln_error err = {0};
    struct kiln_aws_credentials_options co = {.profile = profile, .region = region,
                                              .endpoint_url = endpoint};
    struct kiln_aws_credentials_provider *prov = NULL;
    kiln_aws_credentials_provider_new(&co, &prov, &err);
    struct kiln_aws_client_config cfg = {.region = region ? region : "us-east-1",
                                         .endpoint_url = endpoint, .provider = prov,
                                         .budget = budget, .max_parallel = parallel};
    struct kiln_aws_client *cl = NULL;
    int r = kiln_aws_client_new(&cfg, &cl, &err);
    double t0 = mono(), c0 = cpu_seconds();
    if (r < 0) {
        /* reported below */
    } else if (strcmp(cmd, "ebs-upload") == 0 && nargs == 1) {
        struct kiln_ebs_upload_options uo = {.description = description,
                                             .budget = budget, .parallel = parallel,
                                             .client_token = client_token, .journal = journal};
        struct kiln_ebs_upload_result res;
        r = kiln_ebs_upload_image(cl, args[0], &uo, &res, &err);
        if (r == 0)
            printf("{\"snapshot_id\": \"%s\", \"blocks_total\": %" PRIu64 ", \"blocks_sent\": "
                   "%" PRIu64 ", \"blocks_zero\": %" PRIu64 ", \"blocks_resumed\": %" PRIu64 ", "
                   "\"bytes_read\": %" PRIu64 ", "
                   "\"bytes_sent\": %" PRIu64 ", \"retries\": %lu, \"seconds\": %.3f, "
                   "\"cpu_seconds\": %.3f}\n",
                   res.snapshot_id, res.blocks_total, res.blocks_sent, res.blocks_zero,
                   res.blocks_resumed, res.bytes_read, res.bytes_sent, res.retries, mono() - t0,
                   cpu_seconds() - c0);
        kiln_ebs_upload_result_clear(&res);
    } else if (strcmp(cmd, "ebs-download") == 0 && nargs == 2) {
        uint64_t blocks = 0;
        r = kiln_ebs_download_snapshot(cl, args[0], args[1], parallel, &blocks, &err);
        if (r == 0)
            printf("{\"blocks\": %" PRIu64 ", \"seconds\": %.3f}\n", blocks, mono() - t0);
    } else if (strcmp(cmd, "s3-mb") == 0 && nargs == 1) {
        r = kiln_s3_create_bucket(cl, args[0], &err);
    } else if (strcmp(cmd, "s3-upload") == 0 && nargs == 3) {
        r = kiln_s3_upload_file(cl, args[1], args[2], args[0], part_size, &err);
        struct kiln_aws_stats st;
        kiln_aws_client_stats(cl, &st);
        if (r == 0)
            printf("{\"bytes_sent\": %llu, \"retries\": %lu, \"seconds\": %.3f, \"cpu_seconds\": "
                   "%.3f}\n",
                   st.bytes_sent, st.retries, mono() - t0, cpu_seconds() - c0);
    } else if (strcmp(cmd, "s3-get") == 0 && nargs == 3) {
        r = kiln_s3_get_object(cl, args[0], args[1], args[2], &err);
    } else if (strcmp(cmd, "s3-presign") == 0 && nargs == 4) {
        char *url = NULL;
        r = kiln_s3_presign(cl, args[0], args[1], args[2], (unsigned)strtoul(args[3], NULL, 10),
                            &url, &err);
        if (r == 0)
            printf("%s\n", url);
        free(url);
    } else if (strncmp(cmd, "ec2-", 4) == 0 || strcmp(cmd, "s3-put") == 0 ||
               strcmp(cmd, "s3-rm") == 0 || strcmp(cmd, "s3-ls") == 0) {
        r = run_more(cl, cmd, args, nargs, &wait, &err);
        if (r == -EINVAL && !err.message[0]) {
            usage(stderr);
            kiln_aws_client_free(cl);
            kiln_aws_credentials_provider_free(prov);
            return 2;
        }
    } else if (strcmp(cmd, "describe-regions") == 0 && nargs == 0) {
        struct kiln_ec2_regions l;
        r = kiln_ec2_describe_regions(cl, true, &l, &err);
        for (size_t i = 0; r == 0 && i < l.n; i++)
            printf("%s\t%s\n", l.v[i].name, l.v[i].endpoint ? l.v[i].endpoint : "");
        if (r == 0)
            kiln_ec2_regions_clear(&l);
    } else if (strcmp(cmd, "whoami") == 0 && nargs == 0) {
        struct kiln_sts_identity id;
        r = kiln_sts_get_caller_identity(cl, &id, &err);
        if (r == 0)
            printf("{\"Account\": \"%s\", \"Arn\": \"%s\"}\n", id.account, id.arn);
        kiln_sts_identity_clear(&id);
    } else {
        usage(stderr);
        r = -EINVAL;
        kiln_aws_client_free(cl);
        kiln_aws_credentials_provider_free(prov);
        return 2;
    }
    if (r < 0) {
        /* Messages never hold secrets, but pass them through the redactor all the same. */
        char *msg = kiln_aws_redact(err.message[0] ? err.message : kiln_strerror(r));
        fprintf(stderr, "kiln-aws %s: %s\n", cmd, msg);
        free(msg);
    }
    kiln_aws_client_free(cl);
    kiln_aws_credentials_provider_free(prov);
    return r < 0 ? 1 : 0;
}
