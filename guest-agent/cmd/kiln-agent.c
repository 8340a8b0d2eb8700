/* kiln-agent: runs AWSTOE component documents with AWSTOE's command line (run, validate), and
 * serves the host protocol (serve). S3Download/S3Upload reach S3 through Kiln's AWS client
 * (s3-bridge.c), installed for run and serve. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "guest-agent/cmd/s3-bridge.h"
#include "guest-agent/document.h"
#include "guest-agent/engine-internal.h"
#include "guest-agent/engine.h"
#include "guest-agent/serve.h"
#include "guest-agent/version.h"

#define EXIT_REBOOT 194

static volatile sig_atomic_t cancelled;

static void
on_signal(int sig)
{
    (void)sig;
    cancelled = 1;
}

static void
usage(FILE *f)
{
    fputs("Usage:\n"
          "  kiln-agent run --documents a.yml[,b.yml] [--phases build,validate]\n"
          "                 [--parameters k=v,k2=v2] [--execution-id ID] [--log-directory DIR]\n"
          "                 [--state-directory DIR] [--config config.json] [--trace]\n"
          "  kiln-agent validate --documents a.yml[,b.yml]\n"
          "  kiln-agent serve ...\n"
          "  kiln-agent version\n"
          "\n"
          "Exit status of run: 0 success, 1 failed or invalid, 2 usage, 194 reboot requested\n"
          "(run the same command again with the same --state-directory to resume).\n",
          f);
}

/* Terminal progress, as awstoe prints it: phases, steps and their results on stderr. */
static void
on_event(void *userdata, const json_t *ev)
{
    (void)userdata;
    const char *e = kiln_json_get_str(ev, "event");
    if (kiln_streq(e, "document-start"))
        fprintf(stderr, "Document %s\n", kiln_json_get_str(ev, "document"));
    else if (kiln_streq(e, "phase-start"))
        fprintf(stderr, "Phase %s\n", kiln_json_get_str(ev, "phase"));
    else if (kiln_streq(e, "step-start"))
        fprintf(stderr, "Step %s (%s)\n", kiln_json_get_str(ev, "step"),
                kiln_json_get_str(ev, "action"));
    else if (kiln_streq(e, "step-end")) {
        const char *reason = kiln_json_get_str(ev, "reason");
        fprintf(stderr, "Step %s: %s%s%s\n", kiln_json_get_str(ev, "step"),
                kiln_json_get_str(ev, "status"), reason && *reason ? ": " : "",
                reason ? reason : "");
    } else if (kiln_streq(e, "step-retry")) {
        fprintf(stderr, "Step %s: attempt %lld/%lld\n", kiln_json_get_str(ev, "step"),
                (long long)json_integer_value(json_object_get(ev, "attempt")),
                (long long)json_integer_value(json_object_get(ev, "maxAttempts")));
    } else if (kiln_streq(e, "phase-end"))
        fprintf(stderr, "Phase %s: %s\n", kiln_json_get_str(ev, "phase"),
                kiln_json_get_str(ev, "status"));
}

static void
on_output(void *userdata, const char *stream, const char *data, size_t len)
{
    (void)userdata;
    (void)stream;
    fwrite(data, 1, len, stderr);
}

struct cli {
    char **documents;
    char **phases;
    json_t *parameters;
    const char *execution_id, *log_directory, *state_directory, *config;
    bool trace;
};

static int
parse_args(int argc, char **argv, struct cli *c)
{
    static const struct option opts[] = {
        {"documents", required_argument, NULL, 'd'},
        {"phases", required_argument, NULL, 'p'},
        {"parameters", required_argument, NULL, 'P'},
        {"execution-id", required_argument, NULL, 'e'},
        {"log-directory", required_argument, NULL, 'l'},
        {"state-directory", required_argument, NULL, 's'},
        {"config", required_argument, NULL, 'c'},
        {"trace", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        /* Accepted for AWSTOE compatibility; S3 and CloudWatch are not reached from here. */
        {"log-s3-bucket-name", required_argument, NULL, 'x'},
        {"log-s3-key-prefix", required_argument, NULL, 'x'},
        {"log-s3-bucket-owner", required_argument, NULL, 'x'},
        {"document-s3-bucket-owner", required_argument, NULL, 'x'},
        {"cw-ignore-failures", no_argument, NULL, 'x'},
        {"cw-log-group", required_argument, NULL, 'x'},
        {"cw-log-region", required_argument, NULL, 'x'},
        {"cw-log-stream", required_argument, NULL, 'x'},
        {NULL, 0, NULL, 0},
    };
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "d:p:P:e:l:s:c:th", opts, NULL)) != -1) {
        switch (o) {
        case 'd':
            kiln_strv_free(c->documents);
            c->documents = kiln_engine_split(optarg, ',');
            break;
        case 'p':
            kiln_strv_free(c->phases);
            c->phases = kiln_engine_split(optarg, ',');
            break;
        case 'P': {
            _cleanup_strv_free_ char **kv = kiln_engine_split(optarg, ',');
            if (!c->parameters)
                c->parameters = json_object();
            for (size_t i = 0; kv[i]; i++) {
                char *eq = strchr(kv[i], '=');
                if (!eq || eq == kv[i]) {
                    fprintf(stderr, "kiln-agent: --parameters: '%s' is not name=value\n", kv[i]);
                    return -1;
                }
                *eq = '\0';
                json_object_set_new(c->parameters, kv[i], json_string(eq + 1));
            }
            break;
        }
        case 'e':
            c->execution_id = optarg;
            break;
        case 'l':
            c->log_directory = optarg;
            break;
        case 's':
            c->state_directory = optarg;
            break;
        case 'c':
            c->config = optarg;
            break;
        case 't':
            c->trace = true;
            break;
        case 'x':
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kiln-agent: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

static void
cli_clear(struct cli *c)
{
    kiln_strv_free(c->documents);
    kiln_strv_free(c->phases);
    json_decref(c->parameters);
}

static int
cmd_validate(int argc, char **argv)
{
    struct cli c = {0};
    if (parse_args(argc, argv, &c) < 0 || !c.documents || !c.documents[0]) {
        if (!c.documents)
            fprintf(stderr, "kiln-agent validate: --documents is required\n");
        usage(stderr);
        cli_clear(&c);
        return 2;
    }
    struct kiln_diags diags = {0};
    int r = kiln_documents_check(c.documents, &diags);
    _cleanup_free_ char *msg = kiln_diags_format(&diags);
    fputs(msg, stderr);
    if (r == 0)
        printf("{\n    \"status\": \"success\",\n    \"documents\": %zu\n}\n",
               (size_t)({
                   size_t n = 0;
                   while (c.documents[n])
                       n++;
                   n;
               }));
    else
        fprintf(stderr, "kiln-agent validate: %zu problem%s\n", diags.n + diags.dropped,
                diags.n + diags.dropped == 1 ? "" : "s");
    kiln_diags_clear(&diags);
    cli_clear(&c);
    return r == 0 ? 0 : 1;
}

static int
cmd_run(int argc, char **argv)
{
    struct cli c = {0};
    if (parse_args(argc, argv, &c) < 0 || (!c.documents && !c.config)) {
        if (!c.documents && !c.config)
            fprintf(stderr, "kiln-agent run: --documents or --config is required\n");
        usage(stderr);
        cli_clear(&c);
        return 2;
    }
    if (c.trace)
        kiln_log_set_level(KILN_LOG_TRACE);
    if (c.documents) {
        /* Every problem, unabridged (the engine's error message has a bounded size). */
        struct kiln_diags diags = {0};
        int v = kiln_documents_check(c.documents, &diags);
        if (v < 0) {
            _cleanup_free_ char *msg = kiln_diags_format(&diags);
            fputs(msg, stderr);
            fprintf(stderr, "kiln-agent run: invalid documents (%zu problem%s)\n",
                    diags.n + diags.dropped, diags.n + diags.dropped == 1 ? "" : "s");
            kiln_diags_clear(&diags);
            cli_clear(&c);
            return 1;
        }
        kiln_diags_clear(&diags);
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct kiln_engine_events ev = {.event = on_event, .console = on_output};
    struct kiln_run_options o = {
        .documents = c.documents,
        .phases = c.phases,
        .parameters = c.parameters,
        .execution_id = c.execution_id,
        .log_directory = c.log_directory,
        .state_directory = c.state_directory,
        .config_path = c.config,
        .trace = c.trace,
        .events = &ev,
        .cancel = &cancelled,
    };
    struct kiln_run_result res = {0};
    struct kiln_error err = {0};
    int r = kiln_engine_run(&o, &res, &err);
    cli_clear(&c);
    if (r < 0) {
        fprintf(stderr, "%s%s", err.message,
                err.message[0] && err.message[strlen(err.message) - 1] == '\n' ? "" : "\n");
        fprintf(stderr, "kiln-agent run: %s\n",
                r == -KILN_E_INVALID || r == -KILN_E_PARSE ? "invalid documents" : "failed");
        kiln_run_result_clear(&res);
        return 1;
    }
    static const char *const names[] = {"success", "SuccessWithIgnoredFailure", "failed",
                                        "pending reboot", "cancelled"};
    json_t *summary = json_pack(
        "{s:s,s:s,s:i,s:i,s:i,s:s,s:s}", "executionId", res.execution_id ? res.execution_id : "",
        "status", names[res.status], "failedStepCount", res.failed, "executedStepCount",
        res.executed, "ignoredFailedStepCount", res.ignored, "failureMessage",
        res.failure ? res.failure : "", "logUrl", res.log_folder ? res.log_folder : "");
    char *text = json_dumps(summary, JSON_INDENT(4));
    printf("%s\n", text);
    free(text);
    json_decref(summary);
    int code = 0;
    switch (res.status) {
    case KILN_RUN_SUCCESS:
    case KILN_RUN_SUCCESS_WITH_IGNORED_FAILURE:
        code = 0;
        break;
    case KILN_RUN_FAILED:
        code = 1;
        break;
    case KILN_RUN_REBOOT:
        fprintf(stderr,
                "kiln-agent: a step asked for a reboot. Reboot the machine (or not), then run the "
                "same command again to resume:\n  %s\n",
                res.failure ? res.failure : "");
        code = EXIT_REBOOT;
        break;
    case KILN_RUN_CANCELLED:
        code = 130;
        break;
    }
    kiln_run_result_clear(&res);
    return code;
}

int
main(int argc, char **argv)
{
    kiln_log_init_from_env();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0 || strcmp(cmd, "serve") == 0) {
        kiln_s3bridge_install();
        int r = cmd[0] == 'r' ? cmd_run(argc - 1, argv + 1)
                              : kiln_agent_serve_main(argc - 1, argv + 1);
        kiln_s3bridge_uninstall();
        return r;
    }
    if (strcmp(cmd, "validate") == 0)
        return cmd_validate(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("kiln-agent %s\n", kiln_agent_version());
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "kiln-agent: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
