/* kiln: the command line of the image factory (build, validate, image list/show/logs, reap).
 *
 * Exit codes: 0 success; 1 the build or operation failed; 2 usage error; 3 invalid recipe,
 * configuration or component document; 4 image not found; 130 cancelled (SIGINT/SIGTERM). */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "factory/build.h"
#include "factory/model.h"
#include "factory/store.h"
#include "images/import.h"


enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_INVALID = 3,
    EXIT_NOT_FOUND = 4,
    EXIT_CANCELLED = 130,
};

static volatile sig_atomic_t cancel_requested;
static const char *opt_home;

static void
usage(FILE *f)
{
    fprintf(f, "Usage: kiln [--home DIR] COMMAND [OPTIONS]\n"
               "\n"
               "Commands:\n"
               "  build --recipe FILE [--infrastructure FILE] [--distribution FILE]\n"
               "        [--no-tests] [--cache] [--verbose] [--json]\n"
            "                                              build an image\n"
               "  build --pipeline FILE [...]                 the same, from an image pipeline\n"
               "  validate --recipe FILE | --pipeline FILE [--infrastructure FILE]\n"
               "           [--distribution FILE] [--json]     validate everything, start nothing\n"
               "  image list [--json]                         every image build\n"
               "  image show NAME/VERSION[/BUILD] [--json]    one build, with its output files\n"
               "  image logs NAME/VERSION[/BUILD]             the build's log folder and files\n"
               "  image import --name NAME --file FILE [--agent PATH]\n"
               "                                              make a qcow2/raw Linux cloud image a\n"
               "                                              parent image (agent injected offline)\n"
               "  reap [--kept] [--json]                      release what crashed builds left\n"
               "  version                                     print the version\n"
               "\n"
               "The Kiln home is $KILN_HOME, else /var/lib/kiln for root, else\n"
               "$XDG_DATA_HOME/kiln. Exit codes: 0 ok, 1 failed, 2 usage, 3 invalid input,\n"
               "4 not found, 130 cancelled.\n");
}

static int
open_store(struct kiln_store **ret)
{
    _cleanup_free_ char *home = opt_home ? kiln_strdup(opt_home) : kiln_home_dir();
    struct kiln_error err = {0};
    if (kiln_store_open(home, ret, &err) < 0) {
        fprintf(stderr, "kiln: %s\n", err.message);
        return -1;
    }
    return 0;
}

static int
exit_for(int r)
{
    if (r == -KILN_E_INVALID || r == -KILN_E_PARSE)
        return EXIT_INVALID;
    if (r == -ECANCELED)
        return EXIT_CANCELLED;
    if (r == -ENOENT)
        return EXIT_NOT_FOUND;
    return EXIT_FAILED;
}

static void
on_signal(int sig)
{
    (void)sig;
    cancel_requested = 1;
}

static void
install_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static const char *
fmt_time(long long t, char *buf, size_t n)
{
    if (t <= 0) {
        snprintf(buf, n, "-");
        return buf;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

static const char *
fmt_duration(long long secs, char *buf, size_t n)
{
    if (secs < 0)
        secs = 0;
    if (secs >= 3600)
        snprintf(buf, n, "%lldh%02lldm%02llds", secs / 3600, secs / 60 % 60, secs % 60);
    else
        snprintf(buf, n, "%02lld:%02lld", secs / 60, secs % 60);
    return buf;
}

/* ---- live progress ---- */

struct progress {
    pthread_mutex_t lock;
    bool tty;
    bool verbose;
    bool line_shown; /* a status line is on the terminal and must be erased before output */
    bool stop;
    time_t start;
    char stage[32];
    char step[256];
    pthread_t ticker;
};

/* The status line, cut to the terminal's width: a wrapped line could not be redrawn. */
static void
draw(struct progress *p)
{
    char el[32];
    fmt_duration((long long)(time(NULL) - p->start), el, sizeof(el));
    if (p->tty) {
        struct winsize ws;
        int cols = ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
        char line[512];
        snprintf(line, sizeof(line), "[%s] %-10s %s", el, p->stage, p->step);
        if (cols > 1 && strlen(line) >= (size_t)cols)
            line[cols - 1] = '\0';
        fprintf(stderr, "\r\033[K%s", line);
        p->line_shown = true;
    }
    fflush(stderr);
}

static void
erase(struct progress *p)
{
    if (p->tty && p->line_shown) {
        fprintf(stderr, "\r\033[K");
        p->line_shown = false;
    }
}

static void
prog_stage(void *userdata, const char *stage)
{
    struct progress *p = userdata;
    pthread_mutex_lock(&p->lock);
    snprintf(p->stage, sizeof(p->stage), "%s", stage);
    p->step[0] = '\0';
    if (!p->tty) {
        char el[32];
        fprintf(stderr, "[%s] %s\n",
                fmt_duration((long long)(time(NULL) - p->start), el, sizeof(el)), stage);
    } else {
        draw(p);
    }
    pthread_mutex_unlock(&p->lock);
}

static void
prog_step(void *userdata, const char *text)
{
    struct progress *p = userdata;
    pthread_mutex_lock(&p->lock);
    snprintf(p->step, sizeof(p->step), "%s", text);
    if (p->verbose || !p->tty) {
        erase(p);
        char el[32];
        fprintf(stderr, "[%s] %-10s %s\n",
                fmt_duration((long long)(time(NULL) - p->start), el, sizeof(el)), p->stage, text);
    }
    draw(p);
    pthread_mutex_unlock(&p->lock);
}

static void
prog_console(void *userdata, const char *stream, const char *data, size_t len)
{
    struct progress *p = userdata;
    if (!p->verbose)
        return;
    pthread_mutex_lock(&p->lock);
    erase(p);
    fwrite(data, 1, len, stderr);
    if (len && data[len - 1] != '\n')
        fputc('\n', stderr);
    draw(p);
    pthread_mutex_unlock(&p->lock);
}

static void *
ticker(void *arg)
{
    struct progress *p = arg;
    for (;;) {
        sleep(1);
        pthread_mutex_lock(&p->lock);
        bool stop = p->stop;
        if (!stop && p->tty)
            draw(p);
        pthread_mutex_unlock(&p->lock);
        if (stop)
            return NULL;
    }
}

/* ---- commands ---- */

static void
reap_report(void *userdata, const char *build_id, const char *what)
{
    (void)userdata;
    fprintf(stderr, "kiln: reaped %s: %s\n", build_id, what);
}

static json_t *
result_json(const struct kiln_build_result *res, int r, const struct kiln_error *err)
{
    return json_pack("{s:s?, s:s?, s:s?, s:s, s:s?, s:s?, s:s?, s:s?, s:i}", "name", res->name,
                     "version", res->version, "buildId", res->build_id, "status",
                     r == 0          ? "AVAILABLE"
                     : res->build_id ? kiln_image_status_name(res->status)
                                     : "INVALID",
                     "reason", r < 0 ? err->message : NULL, "keptInstance", res->kept_instance,
                     "manifest", res->manifest_path, "logs", res->log_dir, "exitCode",
                     r == 0 ? 0 : exit_for(r));
}

struct files_opts {
    const char *recipe, *infra, *dist, *pipeline;
    bool json, verbose, no_tests, kept, cache;
};

static int
parse_opts(int argc, char **argv, struct files_opts *o)
{
    static const struct option longopts[] = {
        {"recipe", required_argument, NULL, 'r'},
        {"infrastructure", required_argument, NULL, 'i'},
        {"distribution", required_argument, NULL, 'd'},
        {"pipeline", required_argument, NULL, 'p'},
        {"json", no_argument, NULL, 'j'},
        {"verbose", no_argument, NULL, 'v'},
        {"no-tests", no_argument, NULL, 'T'},
        {"kept", no_argument, NULL, 'k'},
        {"cache", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "r:i:d:p:jvh", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            o->pipeline = optarg;
            break;
        case 'r':
            o->recipe = optarg;
            break;
        case 'i':
            o->infra = optarg;
            break;
        case 'd':
            o->dist = optarg;
            break;
        case 'j':
            o->json = true;
            break;
        case 'v':
            o->verbose = true;
            break;
        case 'T':
            o->no_tests = true;
            break;
        case 'k':
            o->kept = true;
            break;
        case 'C':
            o->cache = true;
            break;
        case 'h':
            usage(stdout);
            exit(EXIT_OK);
        default:
            usage(stderr);
            return -1;
        }
    }
    return 0;
}

/* --pipeline: the recipe, infrastructure, distribution and test settings come from an image
 * pipeline file (options given on the command line win). */
static int
apply_pipeline(struct files_opts *o, struct kiln_pipeline **ret, struct kiln_build_options *opts)
{
    if (!o->pipeline)
        return 0;
    struct kiln_error err = {0};
    int r = kiln_pipeline_load(o->pipeline, ret, &err);
    if (r < 0) {
        fprintf(stderr, "%s\n", err.message);
        return exit_for(r);
    }
    if (!o->recipe)
        o->recipe = (*ret)->recipe_path;
    if (!o->infra)
        o->infra = (*ret)->infrastructure_path;
    if (!o->dist)
        o->dist = (*ret)->distribution_path;
    if (!(*ret)->tests_enabled)
        o->no_tests = true;
    opts->test_timeout_minutes = (*ret)->timeout_minutes;
    return 0;
}

static int
cmd_validate(int argc, char **argv)
{
    struct files_opts o = {0};
    if (parse_opts(argc, argv, &o) < 0 || optind != argc)
        return EXIT_USAGE;
    struct kiln_build_options opts = {.home = opt_home};
    _cleanup_(kiln_pipeline_freep) struct kiln_pipeline *pipeline = NULL;
    int rc = apply_pipeline(&o, &pipeline, &opts);
    if (rc != 0)
        return rc;
    if (!o.recipe) {
        fprintf(stderr, "kiln validate: --recipe or --pipeline is required\n");
        return EXIT_USAGE;
    }
    opts.recipe_path = o.recipe;
    opts.infrastructure_path = o.infra;
    opts.distribution_path = o.dist;
    struct kiln_error err = {0};
    int r = kiln_build_validate(&opts, &err);
    if (o.json) {
        json_t *problems = json_array();
        if (r < 0) {
            _cleanup_free_ char *copy = kiln_strdup(err.message);
            char *save = NULL;
            for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                json_array_append_new(problems, json_string(line));
        }
        _cleanup_json_ json_t *j = json_pack("{s:b, s:o}", "valid", r == 0, "problems", problems);
        _cleanup_free_ char *s = kiln_json_dumps(j, true);
        printf("%s\n", s);
    } else if (r < 0) {
        fprintf(stderr, "%s\n", err.message);
    } else {
        printf("%s: valid\n", o.recipe);
    }
    return r < 0 ? exit_for(r) : EXIT_OK;
}

static int
cmd_build(int argc, char **argv)
{
    struct files_opts o = {0};
    if (parse_opts(argc, argv, &o) < 0 || optind != argc)
        return EXIT_USAGE;
    struct kiln_build_options opts = {0};
    _cleanup_(kiln_pipeline_freep) struct kiln_pipeline *pipeline = NULL;
    int rc = apply_pipeline(&o, &pipeline, &opts);
    if (rc != 0)
        return rc;
    if (!o.recipe) {
        fprintf(stderr, "kiln build: --recipe or --pipeline is required\n");
        return EXIT_USAGE;
    }
    _cleanup_(kiln_store_freep) struct kiln_store *store = NULL;
    if (open_store(&store) < 0)
        return EXIT_FAILED;
    install_signals();
    struct kiln_error err = {0};
    /* Builds that crashed before leave resources behind: release them first. */
    if (kiln_build_reap(store, NULL, false, reap_report, NULL, &err) < 0) {
        fprintf(stderr, "kiln: warning: %s\n", err.message);
        kiln_error_clear(&err);
    }

    struct progress p = {.tty = isatty(2), .verbose = o.verbose, .start = time(NULL)};
    pthread_mutex_init(&p.lock, NULL);
    struct kiln_build_progress cb = {prog_stage, prog_step, prog_console, &p};
    bool ticking = p.tty && pthread_create(&p.ticker, NULL, ticker, &p) == 0;
    opts.recipe_path = o.recipe;
    opts.infrastructure_path = o.infra;
    opts.distribution_path = o.dist;
    opts.home = kiln_store_home(store);
    opts.store = store;
    opts.skip_tests = o.no_tests;
    opts.layer_cache = o.cache;
    opts.progress = &cb;
    opts.cancel = &cancel_requested;
    struct kiln_build_result res;
    int r = kiln_build_run(&opts, &res, &err);
    pthread_mutex_lock(&p.lock);
    p.stop = true;
    erase(&p);
    pthread_mutex_unlock(&p.lock);
    if (ticking)
        pthread_join(p.ticker, NULL);
    pthread_mutex_destroy(&p.lock);

    char el[32];
    fmt_duration((long long)(time(NULL) - p.start), el, sizeof(el));
    if (o.json) {
        _cleanup_json_ json_t *j = result_json(&res, r, &err);
        _cleanup_free_ char *s = kiln_json_dumps(j, true);
        printf("%s\n", s);
    }
    if (r == 0) {
        if (!o.json) {
            printf("%s/%s AVAILABLE in %s\n", res.name, res.version, el);
            _cleanup_(kiln_image_record_freep) struct kiln_image_record *rec = NULL;
            if (kiln_store_image_get_by_build_id(store, res.build_id, &rec, NULL) == 0)
                for (size_t i = 0; i < rec->n_outputs; i++)
                    printf("  %-6s %s\n", rec->outputs[i].format, rec->outputs[i].path);
            printf("  manifest %s\n", res.manifest_path ? res.manifest_path : "-");
        }
    } else {
        if (res.build_id)
            fprintf(stderr, "kiln: %s/%s %s after %s: %s\n", res.name, res.version,
                    kiln_image_status_name(res.status), el, err.message);
        else
            fprintf(stderr, "kiln: %s\n", err.message);
        if (res.log_dir)
            fprintf(stderr, "kiln: logs: %s\n", res.log_dir);
        if (res.kept_instance)
            fprintf(stderr,
                    "kiln: the instance was kept (terminateInstanceOnFailure: false): %s\n"
                    "kiln: remove it with `kiln reap --kept` when done\n",
                    res.kept_instance);
    }
    kiln_build_result_clear(&res);
    return r < 0 ? exit_for(r) : EXIT_OK;
}

/* NAME/VERSION[/BUILD] */
static int
parse_image_ref(const char *arg, char **name, char **version, long *build)
{
    const char *slash = strchr(arg, '/');
    if (!slash)
        return -EINVAL;
    *name = kiln_strndup(arg, (size_t)(slash - arg));
    const char *rest = slash + 1;
    struct kiln_semver v;
    if (strchr(rest, '/')) {
        if (kiln_image_version_parse(rest, &v, build) < 0)
            goto bad;
        *version = kiln_strndup(rest, (size_t)(strchr(rest, '/') - rest));
    } else {
        if (kiln_semver_parse(rest, &v) < 0)
            goto bad;
        *version = kiln_strdup(rest);
        *build = 0;
    }
    return 0;
bad:
    free(*name);
    *name = NULL;
    return -EINVAL;
}

static json_t *
image_json(const struct kiln_image_record *r)
{
    json_t *outs = json_array();
    for (size_t i = 0; i < r->n_outputs; i++)
        json_array_append_new(
            outs, json_pack("{s:s, s:s, s:s, s:I, s:s?}", "target", r->outputs[i].target, "format",
                            r->outputs[i].format, "path", r->outputs[i].path, "size",
                            (json_int_t)r->outputs[i].size, "sha256", r->outputs[i].sha256));
    _cleanup_free_ char *version = kiln_asprintf("%s/%ld", r->version, r->build);
    return json_pack("{s:s, s:s, s:s, s:s?, s:I, s:I, s:I, s:s, s:s?, s:s?, s:s?, s:s?, s:s?, "
                     "s:o}",
                     "name", r->name, "version", version, "status",
                     kiln_image_status_name(r->status), "reason", r->reason, "created",
                     (json_int_t)r->created, "updated", (json_int_t)r->updated, "finished",
                     (json_int_t)r->finished, "buildId", r->build_id, "driver", r->driver, "recipe",
                     r->recipe_path, "manifest", r->manifest_path, "logs", r->log_dir, "workDir",
                     r->work_dir, "outputs", outs);
}

static int
cmd_image_list(int argc, char **argv)
{
    struct files_opts o = {0};
    if (parse_opts(argc, argv, &o) < 0 || optind != argc)
        return EXIT_USAGE;
    _cleanup_(kiln_store_freep) struct kiln_store *store = NULL;
    if (open_store(&store) < 0)
        return EXIT_FAILED;
    struct kiln_image_record **list = NULL;
    size_t n = 0;
    struct kiln_error err = {0};
    if (kiln_store_image_list(store, &list, &n, &err) < 0) {
        fprintf(stderr, "kiln: %s\n", err.message);
        return EXIT_FAILED;
    }
    if (o.json) {
        _cleanup_json_ json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, image_json(list[i]));
        _cleanup_free_ char *s = kiln_json_dumps(arr, true);
        printf("%s\n", s);
    } else {
        printf("%-28s %-14s %-13s %-19s %s\n", "NAME", "VERSION", "STATUS", "CREATED", "DURATION");
        for (size_t i = 0; i < n; i++) {
            char ver[64], created[32], dur[32];
            snprintf(ver, sizeof(ver), "%s/%ld", list[i]->version, list[i]->build);
            long long end = list[i]->finished ? list[i]->finished : (long long)time(NULL);
            printf("%-28s %-14s %-13s %-19s %s\n", list[i]->name, ver,
                   kiln_image_status_name(list[i]->status),
                   fmt_time(list[i]->created, created, sizeof(created)),
                   fmt_duration(end - list[i]->created, dur, sizeof(dur)));
        }
    }
    kiln_image_record_list_free(list, n);
    return EXIT_OK;
}

static int
get_image(struct kiln_store *store, const char *arg, struct kiln_image_record **ret)
{
    _cleanup_free_ char *name = NULL, *version = NULL;
    long build = 0;
    if (parse_image_ref(arg, &name, &version, &build) < 0) {
        fprintf(stderr, "kiln: '%s' is not NAME/VERSION[/BUILD] (e.g. hello-world/1.0.0/2)\n", arg);
        return EXIT_USAGE;
    }
    struct kiln_error err = {0};
    int r = kiln_store_image_get(store, name, version, build, ret, &err);
    if (r < 0) {
        fprintf(stderr, "kiln: %s\n", err.message);
        return exit_for(r);
    }
    return EXIT_OK;
}

static int
cmd_image_show(int argc, char **argv)
{
    struct files_opts o = {0};
    if (parse_opts(argc, argv, &o) < 0 || optind != argc - 1) {
        if (optind >= argc)
            fprintf(stderr, "kiln image show: give NAME/VERSION[/BUILD]\n");
        return EXIT_USAGE;
    }
    _cleanup_(kiln_store_freep) struct kiln_store *store = NULL;
    if (open_store(&store) < 0)
        return EXIT_FAILED;
    _cleanup_(kiln_image_record_freep) struct kiln_image_record *r = NULL;
    int rc = get_image(store, argv[optind], &r);
    if (rc != EXIT_OK)
        return rc;
    if (o.json) {
        _cleanup_json_ json_t *j = image_json(r);
        _cleanup_free_ char *s = kiln_json_dumps(j, true);
        printf("%s\n", s);
        return EXIT_OK;
    }
    char t1[32], t2[32], dur[32];
    long long end = r->finished ? r->finished : (long long)time(NULL);
    printf("Name:      %s\n", r->name);
    printf("Version:   %s/%ld\n", r->version, r->build);
    printf("Status:    %s\n", kiln_image_status_name(r->status));
    if (r->reason)
        printf("Reason:    %s\n", r->reason);
    printf("Created:   %s\n", fmt_time(r->created, t1, sizeof(t1)));
    printf("Finished:  %s\n", fmt_time(r->finished, t2, sizeof(t2)));
    printf("Duration:  %s\n", fmt_duration(end - r->created, dur, sizeof(dur)));
    printf("Build id:  %s\n", r->build_id);
    printf("Driver:    %s%s%s\n", r->driver ? r->driver : "-", r->uri ? " " : "",
           r->uri ? r->uri : "");
    printf("Recipe:    %s\n", r->recipe_path ? r->recipe_path : "-");
    printf("Manifest:  %s\n", r->manifest_path ? r->manifest_path : "-");
    printf("Logs:      %s\n", r->log_dir ? r->log_dir : "-");
    printf("Outputs:%s\n", r->n_outputs ? "" : "   none");
    for (size_t i = 0; i < r->n_outputs; i++)
        printf("  %-6s %12lld bytes  %s\n         sha256 %s\n", r->outputs[i].format,
               r->outputs[i].size, r->outputs[i].path,
               r->outputs[i].sha256 ? r->outputs[i].sha256 : "-");
    return EXIT_OK;
}

static void
list_tree(const char *root, const char *rel, int depth)
{
    if (depth > 6)
        return;
    _cleanup_free_ char *dir = rel[0] ? kiln_path_join(root, rel) : kiln_strdup(root);
    DIR *dh = opendir(dir);
    if (!dh)
        return;
    struct dirent *de;
    char **names = NULL;
    size_t n = 0;
    while ((de = readdir(dh))) {
        if (de->d_name[0] == '.')
            continue;
        names = kiln_reallocarray(names, n + 1, sizeof(char *));
        names[n++] = kiln_strdup(de->d_name);
    }
    closedir(dh);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *sub =
            rel[0] ? kiln_asprintf("%s/%s", rel, names[i]) : kiln_strdup(names[i]);
        _cleanup_free_ char *full = kiln_path_join(root, sub);
        struct stat st;
        if (lstat(full, &st) == 0 && S_ISDIR(st.st_mode))
            list_tree(root, sub, depth + 1);
        else if (lstat(full, &st) == 0)
            printf("  %10lld  %s\n", (long long)st.st_size, sub);
        free(names[i]);
    }
    free(names);
}

static int
cmd_image_logs(int argc, char **argv)
{
    struct files_opts o = {0};
    if (parse_opts(argc, argv, &o) < 0 || optind != argc - 1) {
        if (optind >= argc)
            fprintf(stderr, "kiln image logs: give NAME/VERSION[/BUILD]\n");
        return EXIT_USAGE;
    }
    _cleanup_(kiln_store_freep) struct kiln_store *store = NULL;
    if (open_store(&store) < 0)
        return EXIT_FAILED;
    _cleanup_(kiln_image_record_freep) struct kiln_image_record *r = NULL;
    int rc = get_image(store, argv[optind], &r);
    if (rc != EXIT_OK)
        return rc;
    if (!r->log_dir) {
        fprintf(stderr, "kiln: %s/%s/%ld has no log folder\n", r->name, r->version, r->build);
        return EXIT_NOT_FOUND;
    }
    printf("%s\n", r->log_dir);
    list_tree(r->log_dir, "", 0);
    return EXIT_OK;
}

static int
cmd_image_import(int argc, char **argv)
{
    static const struct option longopts[] = {{"name", required_argument, NULL, 'n'},
                                             {"file", required_argument, NULL, 'f'},
                                             {"agent", required_argument, NULL, 'a'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *name = NULL, *file = NULL, *agent = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:f:a:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            name = optarg;
            break;
        case 'f':
            file = optarg;
            break;
        case 'a':
            agent = optarg;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            return EXIT_USAGE;
        }
    }
    if (!name || !file || optind != argc) {
        fprintf(stderr, "kiln image import: give --name NAME --file FILE\n");
        return EXIT_USAGE;
    }
    struct kiln_image_ref ref = {0};
    struct kiln_error err = {0};
    printf("importing %s as %s (the agent is injected offline; this boots a libguestfs "
           "appliance)\n",
           file, name);
    if (kiln_image_import(name, file, agent, opt_home, &ref, &err) < 0) {
        fprintf(stderr, "kiln: image import: %s\n", err.message);
        return err.code == -ENOENT ? EXIT_NOT_FOUND : EXIT_FAILED;
    }
    printf("%s: %s (use parentImage: %s)\n", name, ref.location, name);
    kiln_image_ref_clear(&ref);
    return EXIT_OK;
}

static int
cmd_image(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "list") == 0)
        return cmd_image_list(argc - 1, argv + 1);
    if (strcmp(argv[1], "show") == 0)
        return cmd_image_show(argc - 1, argv + 1);
    if (strcmp(argv[1], "logs") == 0)
        return cmd_image_logs(argc - 1, argv + 1);
    if (strcmp(argv[1], "import") == 0)
        return cmd_image_import(argc - 1, argv + 1);
    fprintf(stderr, "kiln image: unknown command '%s'\n", argv[1]);
    return EXIT_USAGE;
}

struct reap_json {
    json_t *items;
    bool json;
};

static void
reap_collect(void *userdata, const char *build_id, const char *what)
{
    struct reap_json *rj = userdata;
    if (rj->json)
        json_array_append_new(rj->items,
                              json_pack("{s:s, s:s}", "buildId", build_id, "result", what));
    else
        printf("%s: %s\n", build_id, what);
}

static int
cmd_reap(int argc, char **argv)
{
    struct files_opts o = {0};
    if (parse_opts(argc, argv, &o) < 0 || optind != argc)
        return EXIT_USAGE;
    _cleanup_(kiln_store_freep) struct kiln_store *store = NULL;
    if (open_store(&store) < 0)
        return EXIT_FAILED;
    struct reap_json rj = {json_array(), o.json};
    struct kiln_error err = {0};
    int r = kiln_build_reap(store, NULL, o.kept, reap_collect, &rj, &err);
    if (o.json) {
        _cleanup_json_ json_t *j =
            json_pack("{s:o, s:s?}", "reaped", rj.items, "error", r < 0 ? err.message : NULL);
        _cleanup_free_ char *s = kiln_json_dumps(j, true);
        printf("%s\n", s);
    } else {
        json_decref(rj.items);
        if (r == 0)
            printf("nothing to reap\n");
    }
    if (r < 0) {
        if (!o.json)
            fprintf(stderr, "kiln: %s\n", err.message);
        return EXIT_FAILED;
    }
    return EXIT_OK;
}

int
main(int argc, char **argv)
{
    kiln_log_init_from_env();
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "--home") == 0 && i + 1 < argc) {
            opt_home = argv[i + 1];
            i += 2;
        } else if (strncmp(argv[i], "--home=", 7) == 0) {
            opt_home = argv[i] + 7;
            i++;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("kiln %s\n", KILN_VERSION);
            return EXIT_OK;
        } else {
            fprintf(stderr, "kiln: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (strcmp(cmd, "build") == 0)
        return cmd_build(sub_argc, sub_argv);
    if (strcmp(cmd, "validate") == 0)
        return cmd_validate(sub_argc, sub_argv);
    if (strcmp(cmd, "image") == 0)
        return cmd_image(sub_argc, sub_argv);
    if (strcmp(cmd, "reap") == 0)
        return cmd_reap(sub_argc, sub_argv);
    if (strcmp(cmd, "version") == 0) {
        printf("kiln %s\n", KILN_VERSION);
        return EXIT_OK;
    }
    if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    fprintf(stderr, "kiln: unknown command '%s'\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
