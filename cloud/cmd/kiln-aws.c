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
          "  describe-regions\n"
          "  whoami                       STS GetCallerIdentity\n",
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
        struct kiln_ebs_upload_options uo = {.description = "kiln-aws ebs-upload",
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
        r = kiln_s3_upload_file(cl, args[1], args[2], args[0], 0, &err);
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
