/* The build lifecycle and the reaper of crashed builds. */
#include "factory/build.h"

#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/base64.h"
#include "common/buf.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/json.h"
#include "common/log.h"
#include "factory/document.h"
#include "images/catalog.h"

extern char **environ;

void
kiln_build_result_clear(struct kiln_build_result *r)
{
    if (!r)
        return;
    free(r->name);
    free(r->version);
    free(r->build_id);
    free(r->reason);
    free(r->kept_instance);
    free(r->manifest_path);
    free(r->log_dir);
    memset(r, 0, sizeof(*r));
}

static void
ref_clear(struct kiln_image_ref *ref)
{
    free(ref->kind);
    free(ref->location);
    free(ref->kernel);
    free(ref->initrd);
    free(ref->cmdline);
    memset(ref, 0, sizeof(*ref));
}

static char *
strdup_or_null(const char *s)
{
    return s ? kiln_strdup(s) : NULL;
}

/* Default parentImage resolution through the image catalog (images/catalog.h): a base image by
 * name (tiny, debian-12), or a qcow2/raw file, relative to the recipe's folder. */
static int
resolve_parent_default(const char *home, const struct kiln_recipe *recipe,
                       struct kiln_image_ref *ret, struct kiln_error *err)
{
    _cleanup_free_ char *rel = recipe->parent_image[0] == '/'
                                   ? kiln_strdup(recipe->parent_image)
                                   : kiln_path_join(recipe->dir, recipe->parent_image);
    bool looks_like_path = strchr(recipe->parent_image, '/') || access(rel, F_OK) == 0;
    int r = kiln_catalog_resolve(home, looks_like_path ? rel : recipe->parent_image, ret, err);
    if (r < 0)
        return kiln_error_prefix(err, r, "%s:%u:%u: parentImage '%s'", recipe->source,
                                 recipe->parent_line, recipe->parent_column, recipe->parent_image);
    return 0;
}

static void
ref_copy(struct kiln_image_ref *dst, const struct kiln_image_ref *src)
{
    dst->kind = strdup_or_null(src->kind);
    dst->location = strdup_or_null(src->location);
    dst->kernel = strdup_or_null(src->kernel);
    dst->initrd = strdup_or_null(src->initrd);
    dst->cmdline = strdup_or_null(src->cmdline);
}

/* ---- loading and validation ---- */

struct plan {
    char *home;
    struct kiln_image_ref parent;
    struct kiln_recipe *recipe;
    struct kiln_infrastructure *infra;
    struct kiln_distribution_config *dist;
    struct kiln_document_info *docs; /* one per component */
    char **doc_paths;
};

static void
plan_clear(struct plan *p)
{
    for (size_t i = 0; p->recipe && p->docs && i < p->recipe->n_components; i++)
        kiln_document_info_clear(&p->docs[i]);
    free(p->docs);
    free(p->home);
    ref_clear(&p->parent);
    kiln_recipe_free(p->recipe);
    kiln_infrastructure_free(p->infra);
    kiln_distribution_free(p->dist);
    kiln_strv_free(p->doc_paths);
    memset(p, 0, sizeof(*p));
}

static void
append_error(struct kiln_buf *all, struct kiln_error *e)
{
    if (!e->code)
        return;
    if (all->len)
        kiln_buf_append_char(all, '\n');
    kiln_buf_append_str(all, e->message);
    kiln_error_clear(e);
}

/* Load everything and validate everything, collecting every problem before failing. */
static int
plan_load(const struct kiln_build_options *opts, struct plan *p, struct kiln_error *err)
{
    p->home = opts->home ? kiln_strdup(opts->home) : kiln_home_dir();
    struct kiln_buf all;
    kiln_buf_init(&all);
    struct kiln_error e = {0};
    char cause[KILN_ERROR_CAUSE_MAX] = "";
    int r;

    if (kiln_recipe_load_partial(opts->recipe_path, &p->recipe, &e) < 0) {
        snprintf(cause, sizeof(cause), "%s", e.cause);
        append_error(&all, &e);
    }
    if (opts->infrastructure_path) {
        if (kiln_infrastructure_load(opts->infrastructure_path, &p->infra, &e) < 0)
            append_error(&all, &e);
    } else {
        p->infra = kiln_infrastructure_default();
    }
    kiln_driver_find_fn find = opts->find_driver ? opts->find_driver : kiln_driver_find;
    if (p->infra && !find(p->infra->driver))
        kiln_buf_appendf(&all, "%s%s: driver '%s' is not available in this build of kiln",
                         all.len ? "\n" : "",
                         p->infra->source ? p->infra->source : "infrastructure", p->infra->driver);
    if (opts->distribution_path) {
        if (kiln_distribution_load(opts->distribution_path, &p->dist, &e) < 0)
            append_error(&all, &e);
    } else {
        p->dist = kiln_distribution_default(p->home);
    }
    if (p->dist) {
        for (size_t i = 0; i < p->dist->n_items; i++)
            if (p->dist->items[i].region && p->dist->source) {
                kiln_buf_appendf(&all,
                                 "%s%s:%u:%u: distribution %zu: region '%s': AMI distribution "
                                 "is not available in this build of kiln; use a 'local' target",
                                 all.len ? "\n" : "", p->dist->source, p->dist->items[i].line,
                                 p->dist->items[i].column, i + 1, p->dist->items[i].region);
            }
    }
    if (p->recipe) {
        _cleanup_strv_free_ char **dirs = NULL;
        char *const *search = opts->component_dirs;
        if (!search) {
            dirs = kiln_new(char *, 2);
            dirs[0] = kiln_path_join(p->home, "components");
            search = dirs;
        }
        if (kiln_recipe_resolve(p->recipe, search, &e) < 0)
            append_error(&all, &e);
        r = 0;
        if (p->recipe->parent_image)
            r = opts->resolve_parent
                    ? opts->resolve_parent(opts->resolve_userdata, p->recipe, &p->parent, &e)
                    : resolve_parent_default(p->home, p->recipe, &p->parent, &e);
        if (r < 0)
            append_error(&all, &e);
        /* Validate every document that could be found, even when others could not. */
        size_t n = p->recipe->n_components;
        p->docs = kiln_new(struct kiln_document_info, n ? n : 1);
        p->doc_paths = kiln_new(char *, n + 1);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (p->recipe->components[i].resolved)
                p->doc_paths[k++] = kiln_strdup(p->recipe->components[i].resolved);
        _cleanup_free_ struct kiln_document_info *infos =
            kiln_new(struct kiln_document_info, k ? k : 1);
        if (kiln_documents_validate(p->doc_paths, infos, &e) < 0)
            append_error(&all, &e);
        k = 0;
        for (size_t i = 0; i < n; i++)
            if (p->recipe->components[i].resolved)
                p->docs[i] = infos[k++];
    }
    r = 0;
    if (all.len) {
        r = kiln_error_set(err, -KILN_E_INVALID, "%s", all.data);
        if (cause[0])
            kiln_error_set_cause(err, "%s", cause);
    }
    kiln_buf_clear(&all);
    return r;
}

int
kiln_build_validate(const struct kiln_build_options *opts, struct kiln_error *err)
{
    struct plan p = {0};
    int r = plan_load(opts, &p, err);
    plan_clear(&p);
    return r;
}

/* ---- the running build ---- */

struct build {
    const struct kiln_build_options *opts;
    struct plan plan;
    struct kiln_store *store;
    struct kiln_image_record *image;
    const struct kiln_driver_ops *ops;
    void *conn;
    struct kiln_driver_config cfg;
    char *work_dir;
    char *log_dir;
    int lock_fd;
    struct kiln_instance *inst;
    char inst_role[32];          /* "build", "test", "layer-2", ... */
    /* A stopped instance whose disk is captured: terminated at the end (or when another one is
     * retired), so that the driver's teardown of it overlaps the build's next stages. */
    struct kiln_instance *retired;
    char retired_role[32];
    struct kiln_image_ref layer; /* the cached layer the build resumed from, or the last one made */
    size_t layers_reused;        /* components whose result came from the layer cache */
    json_t *layer_keys;          /* the cache key of each component's result */
    json_t *packages;            /* [{name, version, architecture}] from the inventory, or NULL */
    char *packages_source;       /* "dpkg", "rpm", "apk", "none" */
    char *packages_note;         /* why there is no package list */
    struct kiln_boot_kernel kernel; /* the inventory's kernel report */
    bool have_kernel;               /* kernel holds a report */
    bool booted_direct;             /* the build instance booted the parent's kernel directly */
    char *boot_note;                /* why the image boots the way it does, for the manifest */
    struct kiln_image_ref parent;
    struct kiln_image_ref snapshot;
    char **partial_outputs; /* files being written, removed on failure */
    size_t n_partial;
    json_t *outputs;
    time_t started;
    unsigned component_index; /* for progress lines */
    const char *phase_label;
    bool store_failed;      /* a resource could not be recorded */
    char failed_step[256];  /* "phase/step" of the last step that failed in the current job */
    char started_step[256]; /* "phase/step" of the last step that started in the current job */
    char last_output[1024]; /* the tail of the current job's console output */
};

static bool
cancelled(struct build *b)
{
    return b->opts->cancel && *b->opts->cancel;
}

static void
progress_stage(struct build *b, const char *stage)
{
    kiln_debug("build %s: stage %s", b->image ? b->image->build_id : "-", stage);
    if (b->opts->progress && b->opts->progress->stage)
        b->opts->progress->stage(b->opts->progress->userdata, stage);
}

static void _printf_(2, 3) progress_step(struct build *b, const char *fmt, ...)
{
    if (!b->opts->progress || !b->opts->progress->step)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    b->opts->progress->step(b->opts->progress->userdata, line);
}

static void
on_resource(void *userdata, const char *kind, const char *id, bool live)
{
    struct build *b = userdata;
    struct kiln_error e = {0};
    int r = live ? kiln_store_resource_add(b->store, b->image->build_id, kind, id, b->ops->name, &e)
                 : kiln_store_resource_remove(b->store, b->image->build_id, kind, id, &e);
    if (r < 0) {
        b->store_failed = true;
        kiln_warn("%s", e.message);
    }
}

static void
engine_event(void *userdata, const json_t *ev)
{
    struct build *b = userdata;
    const char *type = kiln_json_get_str(ev, "event");
    const char *phase = kiln_json_get_str(ev, "phase");
    const char *step = kiln_json_get_str(ev, "step");
    const char *status = kiln_json_get_str(ev, "status");
    size_t n = b->plan.recipe ? b->plan.recipe->n_components : 0;
    /* "component 2/3 hello", or "kiln-linux-cleanup" for the cleanup job */
    char who[256];
    if (b->component_index < n)
        snprintf(who, sizeof(who), "%s %u/%zu %s", b->phase_label, b->component_index + 1, n,
                 b->plan.docs[b->component_index].name);
    else
        snprintf(who, sizeof(who), "%s", b->phase_label);
    if (kiln_streq(type, "document-start"))
        progress_step(b, "%s", who);
    else if (kiln_streq(type, "step-start")) {
        progress_step(b, "%s: %s/%s", who, phase ? phase : "?", step ? step : "?");
        snprintf(b->started_step, sizeof(b->started_step), "%s/%s", phase ? phase : "?",
                 step ? step : "?");
    }
    else if (kiln_streq(type, "step-end") && status && !kiln_streq(status, "success")) {
        progress_step(b, "%s: %s/%s %s", who, phase ? phase : "?", step ? step : "?", status);
        if (kiln_streq(status, "failed"))
            snprintf(b->failed_step, sizeof(b->failed_step), "%s/%s", phase ? phase : "?",
                     step ? step : "?");
    } else if (kiln_streq(type, "reboot-requested"))
        progress_step(b, "%s: rebooting the guest", who);
}

/* Keep the tail of the job's output: the last lines are what a failure reason quotes. */
static void
keep_tail(struct build *b, const char *data, size_t len)
{
    size_t cap = sizeof(b->last_output) - 1;
    size_t have = strlen(b->last_output);
    if (len >= cap) {
        data += len - cap;
        len = cap;
    }
    if (have + len > cap) {
        size_t drop = have + len - cap;
        memmove(b->last_output, b->last_output + drop, have - drop + 1);
        have -= drop;
    }
    memcpy(b->last_output + have, data, len);
    b->last_output[have + len] = '\0';
}

/* The last few non-empty lines of the kept output, joined with " | ". */
static char *
output_tail(const struct build *b, int lines)
{
    _cleanup_free_ char *copy = kiln_strdup(b->last_output);
    char *parts[8];
    int n = 0;
    char *save = NULL;
    for (char *l = strtok_r(copy, "\r\n", &save); l; l = strtok_r(NULL, "\r\n", &save)) {
        if (!*l)
            continue;
        if (n == lines) {
            memmove(parts, parts + 1, sizeof(parts[0]) * (size_t)(lines - 1));
            n--;
        }
        parts[n++] = l;
    }
    if (n == 0)
        return NULL;
    struct kiln_buf out;
    kiln_buf_init(&out);
    for (int i = 0; i < n; i++)
        kiln_buf_appendf(&out, "%s%s", i ? " | " : "", parts[i]);
    return kiln_buf_steal(&out);
}

static void
engine_console(void *userdata, const char *stream, const char *data, size_t len)
{
    struct build *b = userdata;
    keep_tail(b, data, len);
    if (b->opts->progress && b->opts->progress->console)
        b->opts->progress->console(b->opts->progress->userdata, stream, data, len);
}

static json_t *
component_parameters(const struct kiln_component_ref *c)
{
    json_t *o = json_object();
    for (size_t i = 0; i < c->n_parameters; i++) {
        struct kiln_buf v;
        kiln_buf_init(&v);
        /* AWSTOE parameters are strings; a list value is joined with commas. */
        for (size_t j = 0; c->parameters[i].values[j]; j++)
            kiln_buf_appendf(&v, "%s%s", j ? "," : "", c->parameters[i].values[j]);
        json_object_set_new(o, c->parameters[i].name, json_string(v.data));
        kiln_buf_clear(&v);
    }
    return o;
}

/* "90 minutes" or "75 s". */
static void
duration_text(char *buf, size_t size, int seconds)
{
    if (seconds >= 60 && seconds % 60 == 0)
        snprintf(buf, size, "%d minute%s", seconds / 60, seconds == 60 ? "" : "s");
    else
        snprintf(buf, size, "%d s", seconds);
}

/* The agent's execution id for a job: the build id and the job's log folder, in the characters
 * and the 64 bytes the agent accepts (component names may hold spaces, recipe names run to 126
 * characters). A longer one keeps its start and ends with a hash of the whole. */
static char *
job_execution_id(const char *build_id, const char *log_sub)
{
    char *id = kiln_asprintf("%s-%s", build_id, log_sub);
    for (char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            *p = '-';
    if (strlen(id) <= 63)
        return id;
    char hex[KILN_HASH_MAX_HEX];
    kiln_hash_buf_hex(KILN_HASH_SHA256, id, strlen(id), hex);
    char *bounded = kiln_asprintf("%.46s-%.16s", id, hex);
    free(id);
    return bounded;
}

/* Run one job on the current instance. what names it for messages ("component 2 (hello)");
 * limit names where timeout_seconds comes from, for the message when it runs out (NULL: Kiln's
 * own limit for that job). */
static int
run_job(struct build *b, const char *document, const char *const *phases, json_t *parameters,
        const char *what, const char *log_sub, int timeout_seconds, const char *limit,
        struct kiln_error *err)
{
    _cleanup_free_ char *log_dir = kiln_path_join(b->log_dir, log_sub);
    int r = kiln_mkdir_p(log_dir, 0755, err);
    if (r < 0)
        return r;
    char *docs[] = {(char *)document, NULL};
    _cleanup_free_ char *exec_id = job_execution_id(b->image->build_id, log_sub);
    struct kiln_job job = {
        .documents = docs,
        .phases = (char **)phases,
        .parameters = parameters,
        .execution_id = exec_id,
        .timeout_seconds = timeout_seconds,
    };
    struct kiln_engine_events events = {engine_event, engine_console, b};
    struct kiln_job_result res = {0};
    b->failed_step[0] = '\0';
    b->started_step[0] = '\0';
    b->last_output[0] = '\0';
    r = b->ops->run(b->inst, &job, log_dir, &events, 0, &res, err);
    if (r < 0) {
        free(res.failure);
        free(res.log_dir);
        return kiln_error_prefix(err, r, "%s", what);
    }
    if (res.timed_out) {
        /* The driver cancelled the job when its time ran out: say which limit, and where. */
        _cleanup_free_ char *tail = output_tail(b, 3);
        char after[64];
        duration_text(after, sizeof(after), timeout_seconds);
        r = kiln_error_set(err, -ETIMEDOUT, "%s timed out%s%s after %s (%s); the job was "
                           "cancelled%s%s (logs: %s)", what, b->started_step[0] ? " in " : "",
                           b->started_step, after, limit ? limit : "Kiln's limit for this job",
                           tail ? "; last output: " : "", tail ? tail : "",
                           res.log_dir ? res.log_dir : log_dir);
        free(res.failure);
        free(res.log_dir);
        return r;
    }
    switch (res.status) {
    case KILN_RUN_SUCCESS:
    case KILN_RUN_SUCCESS_WITH_IGNORED_FAILURE:
        r = 0;
        break;
    case KILN_RUN_CANCELLED:
        r = kiln_error_set(err, -ECANCELED, "%s: cancelled", what);
        break;
    default: {
        _cleanup_free_ char *tail = output_tail(b, 3);
        r = kiln_error_set(err, -KILN_E_FAILED, "%s failed%s%s: %s%s%s (logs: %s)", what,
                           b->failed_step[0] ? " in " : "", b->failed_step,
                           res.failure ? res.failure : "the agent reported a failure",
                           tail ? "; last output: " : "", tail ? tail : "",
                           res.log_dir ? res.log_dir : log_dir);
        break;
    }
    }
    free(res.failure);
    free(res.log_dir);
    return r;
}

/* Run one of Kiln's own documents (text, written to the work folder as NAME.yml): its build
 * phase, on the current instance, as run_job does. */
static int
run_kiln_document(struct build *b, const char *name, const char *text, json_t *parameters,
                  const char *what, const char *log_sub, int timeout_seconds,
                  struct kiln_error *err)
{
    _cleanup_free_ char *file = kiln_asprintf("%s.yml", name);
    _cleanup_free_ char *path = kiln_path_join(b->work_dir, file);
    int r = kiln_write_file_atomic(path, text, strlen(text), 0644, err);
    if (r < 0)
        return r;
    static const char *const phases[] = {"build", NULL};
    return run_job(b, path, phases, parameters, what, log_sub, timeout_seconds, NULL, err);
}

static int
launch(struct build *b, const struct kiln_image_ref *image, const char *role,
       struct kiln_error *err)
{
    _cleanup_free_ char *name = kiln_asprintf("%s-%s", b->image->build_id, role);
    unsigned flags = b->plan.infra->terminate_on_failure ? 0 : KILN_LAUNCH_KEEP_ON_FAILURE;
    /* The build instance starts from the parent (or a cached layer), which later builds start
     * from too; the test and layer instances boot images made just now. */
    if (kiln_streq(role, "build"))
        flags |= KILN_LAUNCH_WARM;
    int timeout = b->opts->ready_timeout_seconds > 0 ? b->opts->ready_timeout_seconds : 600;
    progress_step(b, "starting the %s instance %s from %s", role, name, image->location);
    int r = b->ops->launch(b->conn, image, name, timeout, flags, &b->inst, err);
    if (r < 0)
        return kiln_error_prefix(err, r, "launching the %s instance from %s", role,
                                 image->location);
    snprintf(b->inst_role, sizeof(b->inst_role), "%s", role);
    return 0;
}

static int
terminate(struct build *b, struct kiln_error *err)
{
    if (!b->inst)
        return 0;
    struct kiln_instance *inst = TAKE_PTR(b->inst);
    int r = b->ops->terminate(inst, 0, err);
    if (r < 0)
        return kiln_error_prefix(err, r, "terminating the %s instance", b->inst_role);
    return 0;
}

/* Terminate an instance that is done with. A failure here does not fail the build (the image
 * is already captured); the resource record stays until the driver reports it gone, so that
 * `kiln reap` can retry. */
static void
drop_instance(struct build *b)
{
    struct kiln_error e = {0};
    if (terminate(b, &e) < 0) {
        kiln_warn("build %s: %s (run `kiln reap` to retry)", b->image->build_id, e.message);
        progress_step(b, "warning: %s", e.message);
    }
}

static void
drop_retired(struct build *b)
{
    if (!b->retired)
        return;
    struct kiln_error e = {0};
    if (b->ops->terminate(TAKE_PTR(b->retired), 0, &e) < 0) {
        kiln_warn("build %s: terminating the %s instance: %s (run `kiln reap` to retry)",
                  b->image->build_id, b->retired_role, e.message);
        progress_step(b, "warning: terminating the %s instance: %s", b->retired_role, e.message);
    }
}

/* Set the current instance aside once it is stopped and its disk captured: libvirt takes a
 * second or two to tear a domain down, which need not hold up the next stage. */
static void
retire_instance(struct build *b)
{
    drop_retired(b);
    b->retired = TAKE_PTR(b->inst);
    snprintf(b->retired_role, sizeof(b->retired_role), "%s", b->inst_role);
}

/* qemu-img convert through posix_spawn (no shell); stderr goes to the build log. */
static int
qemu_img_convert(struct build *b, const char *src_fmt, const char *src, const char *fmt,
                 bool compress, const char *dst, struct kiln_error *err)
{
    const char *qemu_img = b->opts->qemu_img ? b->opts->qemu_img : "qemu-img";
    const char *argv[16];
    size_t n = 0;
    argv[n++] = qemu_img;
    argv[n++] = "convert";
    argv[n++] = "-q";
    argv[n++] = "-f";
    argv[n++] = src_fmt;
    argv[n++] = "-O";
    argv[n++] = fmt;
    if (compress && kiln_streq(fmt, "qcow2")) {
        /* zstd clusters: about 5x faster to write than qemu-img's default zlib, and smaller
         * (docs/benchmarks.md). */
        argv[n++] = "-c";
        argv[n++] = "-o";
        argv[n++] = "compression_type=zstd";
    }
    argv[n++] = src;
    argv[n++] = dst;
    argv[n] = NULL;
    _cleanup_free_ char *log = kiln_path_join(b->log_dir, "qemu-img.log");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int r = posix_spawnp(&pid, qemu_img, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0)
        return kiln_error_errno(err, -r, "cannot run %s (install qemu-utils)", qemu_img);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return kiln_error_errno(err, -errno, "waiting for %s", qemu_img);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        const char *tail = "";
        if (kiln_read_file(log, 1 << 20, &text, &len, NULL) == 0) {
            while (len > 0 && (text[len - 1] == '\n'))
                text[--len] = '\0';
            const char *nl = strrchr(text, '\n');
            tail = nl ? nl + 1 : text;
        }
        return kiln_error_set(err, -KILN_E_FAILED, "qemu-img convert to %s failed: %s", fmt,
                              *tail ? tail : "see qemu-img.log in the build's log folder");
    }
    return 0;
}

static const char *
format_ext(const char *fmt)
{
    return kiln_streq(fmt, "raw") ? "raw" : fmt;
}

static int
distribute(struct build *b, struct kiln_error *err)
{
    const struct kiln_recipe *rec = b->plan.recipe;
    for (size_t i = 0; i < b->plan.dist->n_items; i++) {
        const struct kiln_distribution *d = &b->plan.dist->items[i];
        if (!d->is_local)
            continue;
        int r = kiln_mkdir_p(d->local.directory, 0755, err);
        if (r < 0)
            return kiln_error_prefix(err, r, "distribution %zu", i + 1);
        for (size_t f = 0; d->local.formats[f]; f++) {
            if (cancelled(b))
                return kiln_error_set(err, -ECANCELED, "cancelled");
            const char *fmt = d->local.formats[f];
            _cleanup_free_ char *base = kiln_asprintf("%s-%s-%ld.%s", rec->name, b->image->version,
                                                      b->image->build, format_ext(fmt));
            _cleanup_free_ char *dst = kiln_path_join(d->local.directory, base);
            _cleanup_free_ char *tmp = kiln_asprintf("%s.partial", dst);
            b->partial_outputs =
                kiln_reallocarray(b->partial_outputs, b->n_partial + 1, sizeof(char *));
            b->partial_outputs[b->n_partial++] = kiln_strdup(tmp);
            progress_step(b, "writing %s", dst);
            /* The snapshot is already a standalone, flattened image: in its own format and
             * uncompressed, the output is a copy of it (a reflink where the file system allows). */
            const char *snap_fmt = b->snapshot.kind ? b->snapshot.kind : "qcow2";
            if (kiln_streq(fmt, snap_fmt) && !d->local.compress)
                r = kiln_copy_file(b->snapshot.location, tmp, 0644, err);
            else
                r = qemu_img_convert(b, snap_fmt, b->snapshot.location, fmt, d->local.compress,
                                     tmp, err);
            if (r < 0)
                return kiln_error_prefix(err, r, "distribution %zu (%s)", i + 1,
                                         d->local.directory);
            if (rename(tmp, dst) < 0)
                return kiln_error_errno(err, -errno, "%s", dst);
            free(b->partial_outputs[--b->n_partial]);
            char hex[KILN_HASH_MAX_HEX];
            r = kiln_hash_file_hex(KILN_HASH_SHA256, dst, hex, err);
            if (r < 0)
                return r;
            struct stat st;
            if (stat(dst, &st) < 0)
                return kiln_error_errno(err, -errno, "%s", dst);
            _cleanup_free_ char *target = kiln_asprintf("local:%s", d->local.directory);
            struct kiln_image_output out = {target, (char *)fmt, dst, (long long)st.st_size, hex};
            r = kiln_store_image_add_output(b->store, b->image->id, &out, err);
            if (r < 0)
                return r;
            json_array_append_new(b->outputs, json_pack("{s:s, s:s, s:s, s:I, s:s}", "target",
                                                        target, "format", fmt, "path", dst, "size",
                                                        (json_int_t)st.st_size, "sha256", hex));
        }
    }
    return 0;
}

static json_t *
manifest_new(struct build *b, const char *status)
{
    const struct kiln_recipe *rec = b->plan.recipe;
    json_t *comps = json_array();
    for (size_t i = 0; i < rec->n_components; i++) {
        const struct kiln_component_ref *c = &rec->components[i];
        const struct kiln_document_info *d = &b->plan.docs[i];
        json_t *params = component_parameters(c);
        /* A catalog document's version is its file name (<name>/<version>.yml). */
        const char *version = NULL;
        _cleanup_free_ char *ver = NULL;
        if (!c->path && c->resolved) {
            const char *base = strrchr(c->resolved, '/');
            const char *dot = base ? strrchr(base, '.') : NULL;
            if (base && dot)
                version = ver = kiln_strndup(base + 1, (size_t)(dot - base - 1));
        }
        json_array_append_new(comps, json_pack("{s:s, s:s?, s:s, s:s?, s:s?, s:o}", "name", d->name,
                                               "version", version, "path", c->resolved, "reference",
                                               c->path   ? c->path
                                               : c->name ? c->name
                                                         : c->arn,
                                               "sha256", d->sha256, "parameters", params));
    }
    char recipe_hex[KILN_HASH_MAX_HEX] = "";
    kiln_hash_file_hex(KILN_HASH_SHA256, rec->source, recipe_hex, NULL);
    _cleanup_free_ char *recipe_abs = realpath(rec->source, NULL);
    char date[64];
    struct tm tm;
    gmtime_r(&b->started, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
    _cleanup_free_ char *version = kiln_asprintf("%s/%ld", b->image->version, b->image->build);
    return json_pack(
        "{s:i, s:s, s:s, s:s, s:s, s:s, s:I,"
        " s:{s:s, s:s, s:s, s:s, s:s?, s:s},"
        " s:{s:s?, s:s?, s:s?},"
        " s:{s:s, s:s?, s:s?, s:i, s:i},"
        " s:o, s:O, s:O, s:s?, s:s?, s:s}",
        "manifestVersion", 1, "name", rec->name, "version", version, "buildId", b->image->build_id,
        "status", status, "buildDate", date, "durationSeconds",
        (json_int_t)(time(NULL) - b->started), "recipe", "path",
        recipe_abs ? recipe_abs : rec->source, "sha256", recipe_hex, "name", rec->name,
        "semanticVersion", rec->semantic_version, "description", rec->description, "parentImage",
        rec->parent_image, "parentImage", "kind", b->parent.kind, "location", b->parent.location,
        "kernel", b->parent.kernel, "infrastructure", "driver", b->ops->name, "uri",
        b->plan.infra->uri, "accel", b->plan.infra->accel, "vcpus", (int)b->plan.infra->vcpus,
        "memoryMiB", (int)b->plan.infra->memory_mib, "components", comps, "outputs", b->outputs,
        "installedPackages", b->packages ? b->packages : json_null(), "installedPackagesSource",
        b->packages_source, "installedPackagesNote", b->packages_note, "logs", b->log_dir);
}

static int
write_manifest(struct build *b, const char *status, struct kiln_error *err)
{
    _cleanup_json_ json_t *m = manifest_new(b, status);
    if (!m)
        return kiln_error_set(err, -EINVAL, "cannot build the manifest");
    if (b->snapshot.location) {
        /* How the image's instances (the test stage's) boot, and which kernel. */
        const struct kiln_boot_kernel *k = b->have_kernel ? &b->kernel : NULL;
        const char *version = !k                   ? NULL
                              : b->snapshot.kernel ? k->running
                              : k->version         ? k->version
                                                   : NULL;
        json_object_set_new(m, "boot",
                            json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:s?}", "mode",
                                      b->snapshot.kernel ? "direct" : "firmware", "kernel",
                                      b->snapshot.kernel, "kernelVersion", version,
                                      "parentKernelVersion",
                                      k && b->booted_direct ? k->running : NULL, "bootLoaderKernel",
                                      k ? k->path : NULL, "note", b->boot_note));
    }
    if (b->layer_keys)
        json_object_set_new(
            m, "layerCache",
            json_pack("{s:I, s:O}", "reused", (json_int_t)b->layers_reused, "keys", b->layer_keys));
    _cleanup_free_ char *text = kiln_json_dumps(m, true);
    /* Beside the log folder: logs/<name>/<version>/<build>/manifest.json */
    _cleanup_free_ char *dir = kiln_strdup(b->log_dir);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    _cleanup_free_ char *path = kiln_path_join(dir, "manifest.json");
    size_t len = strlen(text);
    text = kiln_realloc(text, len + 2);
    text[len] = '\n';
    text[len + 1] = '\0';
    int r = kiln_write_file_atomic(path, text, len + 1, 0644, err);
    if (r < 0)
        return r;
    return kiln_store_image_set_paths(b->store, b->image->id, NULL, NULL, path, err);
}

static int
set_status(struct build *b, enum kiln_image_status s, struct kiln_error *err)
{
    int r = kiln_store_image_set_status(b->store, b->image->id, s, NULL, err);
    if (r >= 0)
        b->image->status = s;
    return r;
}

/* Copy the driver's console logs (*.log in the work folder) into the log folder. */
static void
keep_console_logs(struct build *b)
{
    DIR *dh = opendir(b->work_dir);
    if (!dh)
        return;
    struct dirent *de;
    while ((de = readdir(dh))) {
        size_t n = strlen(de->d_name);
        if (n < 5 || strcmp(de->d_name + n - 4, ".log") != 0)
            continue;
        _cleanup_free_ char *src = kiln_path_join(b->work_dir, de->d_name);
        _cleanup_free_ char *dst = kiln_path_join(b->log_dir, de->d_name);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        if (kiln_read_file(src, 64u << 20, &data, &len, NULL) == 0)
            kiln_write_file_atomic(dst, data, len, 0644, NULL);
    }
    closedir(dh);
}

/* ---- the package inventory ---- */

/* The stdout of step in the detailedoutput.json of the TOE folder under dir, or NULL. */
static char *
step_stdout(const char *dir, const char *step)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return NULL;
    char *out = NULL;
    struct dirent *de;
    while (!out && (de = readdir(dh))) {
        if (strncmp(de->d_name, "TOE_", 4) != 0)
            continue;
        _cleanup_free_ char *rel = kiln_asprintf("%s/detailedoutput.json", de->d_name);
        _cleanup_free_ char *path = kiln_path_join(dir, rel);
        _cleanup_json_ json_t *j = NULL;
        /* The guest wrote this file: parse it bounded, trust nothing in it. */
        if (kiln_json_load_file(path, 16u << 20, &j, NULL) < 0)
            continue;
        size_t i, k, m;
        json_t *doc, *phase, *st;
        json_array_foreach(json_object_get(j, "documents"), i, doc)
        {
            json_array_foreach(json_object_get(doc, "phases"), k, phase)
            {
                json_array_foreach(json_object_get(phase, "steps"), m, st)
                {
                    const char *outputs = kiln_json_get_str(st, "outputs");
                    if (out || !kiln_streq(kiln_json_get_str(st, "name"), step) || !outputs)
                        continue;
                    _cleanup_json_ json_t *o = NULL;
                    if (kiln_json_parse(outputs, strlen(outputs), 16u << 20, "outputs", &o, NULL) <
                        0)
                        continue;
                    const char *text = kiln_json_get_str(json_array_get(o, 0), "stdout");
                    if (text)
                        out = kiln_strdup(text);
                }
            }
        }
    }
    closedir(dh);
    return out;
}

int
kiln_inventory_read(const char *dir, json_t **ret_packages, char **ret_source, char **ret_note)
{
    *ret_packages = NULL;
    *ret_source = *ret_note = NULL;
    _cleanup_free_ char *text = step_stdout(dir, "ListInstalledPackages");
    if (!text) {
        *ret_note = kiln_strdup("no package list: the driver returned no agent output");
        return -ENOENT;
    }
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    if (!line || strncmp(line, "kiln-inventory ", 15) != 0) {
        *ret_note = kiln_strdup("no package list: unexpected inventory output");
        return -KILN_E_PARSE;
    }
    *ret_source = kiln_strdup(line + 15);
    json_t *packages = json_array();
    while ((line = strtok_r(NULL, "\n", &save))) {
        if (kiln_streq(line, "kiln-boot-kernel 1"))
            break; /* the kernel report follows the packages */
        char *f[3] = {line, NULL, NULL};
        for (int k = 1; k < 3 && f[k - 1]; k++) {
            char *tab = strchr(f[k - 1], '\t');
            if (tab) {
                *tab = '\0';
                f[k] = tab + 1;
            }
        }
        if (!*f[0])
            continue;
        json_array_append_new(packages, json_pack("{s:s, s:s?, s:s?}", "name", f[0], "version",
                                                  f[1] && *f[1] ? f[1] : NULL, "architecture",
                                                  f[2] && *f[2] ? f[2] : NULL));
    }
    *ret_packages = packages;
    return 0;
}

/* ---- the kernel the image boots ---- */

void
kiln_boot_kernel_clear(struct kiln_boot_kernel *k)
{
    if (!k)
        return;
    free(k->running);
    free(k->loader);
    free(k->path);
    free(k->version);
    memset(k, 0, sizeof(*k));
}

int
kiln_boot_kernel_parse(const char *text, struct kiln_boot_kernel *ret)
{
    memset(ret, 0, sizeof(*ret));
    _cleanup_free_ char *copy = kiln_strdup(text ? text : "");
    char *save = NULL;
    char *line = strtok_r(copy, "\n", &save);
    if (!line || strcmp(line, "kiln-boot-kernel 1") != 0)
        return -KILN_E_PARSE;
    while ((line = strtok_r(NULL, "\n", &save))) {
        char *value = strchr(line, ' ');
        if (!value || value[1] == '\0')
            continue;
        *value++ = '\0';
        char **field = kiln_streq(line, "running")   ? &ret->running
                       : kiln_streq(line, "loader")  ? &ret->loader
                       : kiln_streq(line, "path")    ? &ret->path
                       : kiln_streq(line, "version") ? &ret->version
                                                     : NULL;
        if (field) {
            free(*field);
            *field = kiln_strdup(value);
        } else if (kiln_streq(line, "modules")) {
            ret->running_modules = kiln_streq(value, "yes");
        }
    }
    if (!ret->running) {
        kiln_boot_kernel_clear(ret);
        return -KILN_E_PARSE;
    }
    return 0;
}

int
kiln_boot_kernel_read(const char *dir, struct kiln_boot_kernel *ret)
{
    memset(ret, 0, sizeof(*ret));
    /* A step of its own (kiln_build_boot_kernel_document), or after the inventory's packages. */
    _cleanup_free_ char *text = step_stdout(dir, "ReportBootKernel");
    if (text)
        return kiln_boot_kernel_parse(text, ret);
    text = step_stdout(dir, "ListInstalledPackages");
    const char *report = text;
    while (report && strncmp(report, "kiln-boot-kernel 1\n", 19) != 0) {
        report = strchr(report, '\n');
        if (report)
            report++;
    }
    if (!report)
        return -ENOENT;
    return kiln_boot_kernel_parse(report, ret);
}

bool
kiln_boot_kernel_keeps_direct(const struct kiln_boot_kernel *k, char **ret_note)
{
    char *note = NULL;
    bool keep = true;
    if (!k)
        note = kiln_strdup("no kernel report from the guest: the image keeps the parent's "
                           "direct-boot kernel");
    else if (!k->version || kiln_streq(k->version, k->running))
        note = NULL; /* no kernel of its own (the tiny image), or the same one */
    else if (!k->loader)
        note = kiln_asprintf("the image's kernel %s is not the parent's direct-boot kernel %s, "
                             "but the image has no boot loader: its instances boot %s",
                             k->version, k->running, k->running);
    else {
        keep = false;
        note = kiln_asprintf("the image's boot loader starts kernel %s (%s), not the parent's "
                             "direct-boot kernel %s%s: instances boot through the firmware and "
                             "the boot loader",
                             k->version, k->path ? k->path : "?", k->running,
                             k->running_modules ? "" : ", whose modules are gone");
    }
    if (ret_note)
        *ret_note = note;
    else
        free(note);
    return keep;
}

/* List the installed packages for the manifest. Not fatal: a build does not fail because its
 * inventory could not be taken (the manifest says why), only because it was cancelled. */
static int
inventory(struct build *b, struct kiln_error *err)
{
    struct kiln_error e = {0};
    int r = run_kiln_document(b, "kiln-inventory", kiln_build_inventory_document(), NULL,
                              "the package inventory (kiln-inventory)", "inventory", 600, &e);
    if (r == -ECANCELED || cancelled(b))
        return kiln_error_set(err, -ECANCELED, "cancelled");
    if (r < 0) {
        b->packages_note = kiln_asprintf("no package list: %s", e.message);
        return 0;
    }
    _cleanup_free_ char *dir = kiln_path_join(b->log_dir, "inventory");
    kiln_inventory_read(dir, &b->packages, &b->packages_source, &b->packages_note);
    b->have_kernel = kiln_boot_kernel_read(dir, &b->kernel) == 0;
    return 0;
}

/* Whether the image on the build instance (about to be captured as a layer) may keep booting
 * the parent's kernel directly: the kernel report, run alone. */
static int
layer_keeps_direct(struct build *b, size_t i, bool *ret, struct kiln_error *err)
{
    *ret = false;
    if (!b->booted_direct)
        return 0;
    _cleanup_free_ char *sub = kiln_asprintf("layer/%02zu-boot-kernel", i + 1);
    struct kiln_error e = {0};
    int r = run_kiln_document(b, "kiln-boot-kernel", kiln_build_boot_kernel_document(), NULL,
                              "the kernel report (kiln-boot-kernel)", sub, 300, &e);
    if (r == -ECANCELED || cancelled(b))
        return kiln_error_set(err, -ECANCELED, "cancelled");
    struct kiln_boot_kernel k = {0};
    _cleanup_free_ char *dir = kiln_path_join(b->log_dir, sub);
    bool have = r == 0 && kiln_boot_kernel_read(dir, &k) == 0;
    *ret = kiln_boot_kernel_keeps_direct(have ? &k : NULL, NULL);
    kiln_boot_kernel_clear(&k);
    return 0;
}

/* ---- the layer cache ----
 *
 * Each component's result is kept as a standalone qcow2 in <home>/cache/layers/<key>.qcow2,
 * where key = sha256(previous key, the document's sha256, its resolved parameters) and the
 * first key covers the parent image (its location, size and modification time). A rebuild
 * boots from the longest prefix already built and runs only the components after it. */

static int
layer_keys(struct build *b, struct kiln_error *err)
{
    const struct kiln_recipe *rec = b->plan.recipe;
    struct stat st;
    if (stat(b->parent.location, &st) < 0)
        return kiln_error_errno(err, -errno, "parent image %s", b->parent.location);
    _cleanup_free_ char *seed = kiln_asprintf(
        "kiln-layer-1\nparent %s %s %lld %lld.%09ld\n", b->parent.kind, b->parent.location,
        (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    char key[KILN_HASH_MAX_HEX];
    kiln_hash_buf_hex(KILN_HASH_SHA256, seed, strlen(seed), key);
    b->layer_keys = json_array();
    for (size_t i = 0; i < rec->n_components; i++) {
        _cleanup_json_ json_t *params = component_parameters(&rec->components[i]);
        _cleanup_free_ char *p = json_dumps(params, JSON_SORT_KEYS | JSON_COMPACT);
        _cleanup_free_ char *text =
            kiln_asprintf("%s\n%s\n%s\n", key,
                          b->plan.docs[i].sha256 ? b->plan.docs[i].sha256 : "-", p ? p : "{}");
        kiln_hash_buf_hex(KILN_HASH_SHA256, text, strlen(text), key);
        json_array_append_new(b->layer_keys, json_string(key));
    }
    return 0;
}

static char *
layer_path(struct build *b, size_t i)
{
    _cleanup_free_ char *rel =
        kiln_asprintf("cache/layers/%s.qcow2", json_string_value(json_array_get(b->layer_keys, i)));
    return kiln_path_join(b->plan.home, rel);
}

/* A layer that must boot through its firmware although its parent boots a kernel directly has
 * a file <key>.boot saying "firmware" beside it; a layer without one boots like its parent. */
static char *
layer_boot_path(const char *layer)
{
    _cleanup_free_ char *base = kiln_strndup(layer, strlen(layer) - strlen(".qcow2"));
    return kiln_asprintf("%s.boot", base);
}

static void
layer_ref(struct build *b, const char *path, bool direct)
{
    ref_clear(&b->layer);
    b->layer.kind = kiln_strdup("qcow2");
    b->layer.location = kiln_strdup(path);
    /* A direct-kernel parent boots its layers the same way, unless a component gave the image
     * another kernel (layer_keeps_direct). */
    if (!direct)
        return;
    b->layer.kernel = strdup_or_null(b->parent.kernel);
    b->layer.initrd = strdup_or_null(b->parent.initrd);
    b->layer.cmdline = strdup_or_null(b->parent.cmdline);
}

/* The number of leading components whose result is cached (b->layer points at the last). */
static size_t
layer_lookup(struct build *b)
{
    for (size_t n = json_array_size(b->layer_keys); n > 0; n--) {
        _cleanup_free_ char *path = layer_path(b, n - 1);
        if (access(path, R_OK) == 0) {
            _cleanup_free_ char *boot = layer_boot_path(path);
            _cleanup_free_ char *mode = NULL;
            size_t len = 0;
            bool direct = kiln_read_file(boot, 64, &mode, &len, NULL) < 0 ||
                          strncmp(mode, "firmware", 8) != 0;
            layer_ref(b, path, direct);
            b->layers_reused = n;
            return n;
        }
    }
    return 0;
}

/* Keep component i's result as a layer, then go on from it on a fresh instance. */
static int
layer_save(struct build *b, size_t i, struct kiln_error *err)
{
    _cleanup_free_ char *path = layer_path(b, i);
    _cleanup_free_ char *dir = kiln_strdup(path);
    *strrchr(dir, '/') = '\0';
    int r = kiln_mkdir_p(dir, 0755, err);
    if (r < 0)
        return r;
    bool direct = false;
    r = layer_keeps_direct(b, i, &direct, err);
    if (r < 0)
        return r;
    progress_step(b, "layer cache: saving the result of component %zu", i + 1);
    r = b->ops->stop(b->inst, 300, 0, err);
    if (r < 0)
        return kiln_error_prefix(err, r, "stopping the build instance for the layer cache");
    /* Written in the build's own folder, then renamed into the cache: builds that make the same
     * layer at once never write one file together, and a layer is whole or absent. */
    _cleanup_free_ char *name = kiln_asprintf("layer-%zu.qcow2", i + 1);
    _cleanup_free_ char *tmp = kiln_path_join(b->work_dir, name);
    struct kiln_snapshot_options so = {.dest = tmp, .format = "qcow2"};
    struct kiln_image_ref saved = {0};
    r = b->ops->snapshot(b->inst, &so, 0, &saved, err);
    ref_clear(&saved);
    if (r < 0)
        return kiln_error_prefix(err, r, "saving the layer of component %zu", i + 1);
    /* The boot mode before the layer, so that a layer is never seen without it. */
    _cleanup_free_ char *boot = layer_boot_path(path);
    if (b->parent.kernel && !direct)
        r = kiln_write_file_atomic(boot, "firmware\n", 9, 0644, err);
    else if (unlink(boot) < 0 && errno != ENOENT)
        r = kiln_error_errno(err, -errno, "%s", boot);
    if (r < 0)
        return kiln_error_prefix(err, r, "layer cache");
    if (rename(tmp, path) < 0)
        return kiln_error_errno(err, -errno, "layer cache: %s", path);
    retire_instance(b);
    layer_ref(b, path, direct);
    _cleanup_free_ char *role = kiln_asprintf("layer-%zu", i + 1);
    r = launch(b, &b->layer, role, err);
    b->booted_direct = r == 0 && b->layer.kernel;
    return r;
}

/* Recipe fields that only mean something on EC2: said once, so that nobody expects a bigger
 * disk or their user data to have run from a local build. */
static void
warn_ec2_only_fields(struct build *b)
{
    const struct kiln_recipe *rec = b->plan.recipe;
    if (kiln_streq(b->ops->name, "ec2"))
        return;
    for (size_t i = 0; i < rec->n_block_devices; i++) {
        const struct kiln_block_device *d = &rec->block_devices[i];
        if (d->volume_size_gib > 0) {
            progress_step(b, "warning: blockDeviceMappings (%s: %lld GiB) is an EC2 setting: the "
                             "%s driver keeps the parent image's disk size",
                          d->device_name ? d->device_name : "?", d->volume_size_gib,
                          b->ops->name);
            break;
        }
    }
}

/* The recipe's userDataOverride on a local build instance: a script (#!) runs before the
 * components, as EC2 runs it at the instance's first boot; cloud-init's other formats
 * (#cloud-config, MIME parts) need cloud-init, so the build says it does not run them. */
static int
user_data(struct build *b, struct kiln_error *err)
{
    const struct kiln_recipe *rec = b->plan.recipe;
    if (!rec->user_data_override || kiln_streq(b->ops->name, "ec2"))
        return 0;
    _cleanup_buf_ struct kiln_buf script = {0};
    int r = kiln_base64_decode(rec->user_data_override, strlen(rec->user_data_override), &script,
                               err);
    if (r < 0)
        return kiln_error_prefix(err, r, "userDataOverride");
    if (script.len < 2 || memcmp(script.data, "#!", 2) != 0) {
        progress_step(b, "warning: additionalInstanceConfiguration.userDataOverride is not a "
                         "script (#!): the %s driver runs only scripts, not cloud-init's other "
                         "formats",
                      b->ops->name);
        return 0;
    }
    _cleanup_json_ json_t *params = json_pack("{s:s}", "userData", rec->user_data_override);
    b->component_index = (unsigned)rec->n_components;
    b->phase_label = "kiln-user-data";
    return run_kiln_document(b, "kiln-user-data", kiln_build_user_data_document(), params,
                             "the user data (additionalInstanceConfiguration.userDataOverride)",
                             "user-data", -1, err);
}

static int
stages(struct build *b, struct kiln_error *err)
{
    const struct kiln_recipe *rec = b->plan.recipe;
    int r;

    /* launch */
    progress_stage(b, "launch");
    warn_ec2_only_fields(b);
    r = set_status(b, KILN_IMAGE_BUILDING, err);
    if (r < 0)
        return r;
    ref_copy(&b->parent, &b->plan.parent);
    if (cancelled(b))
        return kiln_error_set(err, -ECANCELED, "cancelled");
    /* With the layer cache, resume after the longest prefix of components already built. */
    size_t first = 0;
    if (b->opts->layer_cache) {
        r = layer_keys(b, err);
        if (r < 0)
            return r;
        first = layer_lookup(b);
        if (first > 0)
            progress_step(b, "layer cache: components 1-%zu reused", first);
    }
    r = launch(b, first > 0 ? &b->layer : &b->parent, "build", err);
    if (r < 0)
        return r;
    b->booted_direct = (first > 0 ? b->layer.kernel : b->parent.kernel) != NULL;

    /* build and validate phases, one component at a time (each has its own parameters) */
    progress_stage(b, "build");
    r = user_data(b, err);
    if (r < 0)
        return r;
    b->phase_label = "component";
    static const char *const build_phases[] = {"build", "validate", NULL};
    for (size_t i = first; i < rec->n_components; i++) {
        if (cancelled(b))
            return kiln_error_set(err, -ECANCELED, "cancelled");
        b->component_index = (unsigned)i;
        const struct kiln_document_info *d = &b->plan.docs[i];
        if (d->has_phase[KILN_PHASE_BUILD] || d->has_phase[KILN_PHASE_VALIDATE]) {
            _cleanup_json_ json_t *params = component_parameters(&rec->components[i]);
            _cleanup_free_ char *what = kiln_asprintf("component %zu (%s, %s)", i + 1, d->name,
                                                      rec->components[i].resolved);
            _cleanup_free_ char *sub = kiln_asprintf("build/%02zu-%s", i + 1, d->name);
            r = run_job(b, rec->components[i].resolved, build_phases, params, what, sub, -1,
                        NULL, err);
            if (r < 0)
                return r;
        }
        if (b->opts->layer_cache) {
            r = layer_save(b, i, err);
            if (r < 0)
                return r;
        }
    }

    /* the installed packages, for the manifest */
    if (cancelled(b))
        return kiln_error_set(err, -ECANCELED, "cancelled");
    b->component_index = (unsigned)rec->n_components;
    b->phase_label = "kiln-inventory";
    r = inventory(b, err);
    if (r < 0)
        return r;

    /* Image Builder's Linux cleanup, as a document run by the agent */
    if (cancelled(b))
        return kiln_error_set(err, -ECANCELED, "cancelled");
    progress_stage(b, "cleanup");
    b->component_index = (unsigned)rec->n_components;
    b->phase_label = "kiln-linux-cleanup";
    {
        _cleanup_free_ char *keep = kiln_asprintf("%s-cleanup", b->image->build_id);
        _cleanup_json_ json_t *params = json_pack("{s:s, s:s}", "workingDirectory",
                                                  rec->working_directory, "keepToeFolder", keep);
        /* It only removes files: ten minutes are plenty, and a hung cleanup must not hold
         * the build for ever. */
        r = run_kiln_document(b, "kiln-linux-cleanup", kiln_build_cleanup_document(), params,
                              "the Linux cleanup (kiln-linux-cleanup)", "cleanup", 600, err);
        if (r < 0)
            return r;
    }

    /* stop and snapshot */
    if (cancelled(b))
        return kiln_error_set(err, -ECANCELED, "cancelled");
    progress_stage(b, "snapshot");
    progress_step(b, "stopping the build instance");
    r = b->ops->stop(b->inst, 300, 0, err);
    if (r < 0)
        return kiln_error_prefix(err, r, "stopping the build instance");
    _cleanup_free_ char *snap = kiln_path_join(b->work_dir, "image.qcow2");
    struct kiln_snapshot_options so = {.dest = snap, .format = "qcow2", .compress = false};
    progress_step(b, "capturing the disk");
    r = b->ops->snapshot(b->inst, &so, 0, &b->snapshot, err);
    if (r < 0)
        return kiln_error_prefix(err, r, "snapshot of the build instance");
    /* A direct-kernel parent (the tiny image, debian-12) boots its snapshot the same way (the
     * driver's reference boots like the instance did), unless the image's boot loader now
     * starts another kernel: then the snapshot boots through its firmware and boot loader, as
     * the output will, so that the test stage tests what ships. */
    bool direct = false;
    if (b->booted_direct)
        direct = kiln_boot_kernel_keeps_direct(b->have_kernel ? &b->kernel : NULL, &b->boot_note);
    else if (b->parent.kernel)
        b->boot_note = kiln_strdup("the build resumed from a cached layer that boots through its "
                                   "firmware and boot loader");
    if (direct && !b->snapshot.kernel) {
        b->snapshot.kernel = kiln_strdup(b->parent.kernel);
        b->snapshot.initrd = strdup_or_null(b->parent.initrd);
        b->snapshot.cmdline = strdup_or_null(b->parent.cmdline);
    } else if (!direct && b->parent.kernel) {
        free(b->snapshot.kernel);
        free(b->snapshot.initrd);
        free(b->snapshot.cmdline);
        b->snapshot.kernel = b->snapshot.initrd = b->snapshot.cmdline = NULL;
        progress_step(b, "the image boots through its firmware and boot loader: %s", b->boot_note);
    }
    retire_instance(b);

    /* test phases on a fresh instance from the new image */
    bool any_test = false;
    for (size_t i = 0; i < rec->n_components; i++)
        any_test |= b->plan.docs[i].has_phase[KILN_PHASE_TEST];
    if (!b->opts->skip_tests && any_test) {
        if (cancelled(b))
            return kiln_error_set(err, -ECANCELED, "cancelled");
        progress_stage(b, "test");
        r = set_status(b, KILN_IMAGE_TESTING, err);
        if (r < 0)
            return r;
        r = launch(b, &b->snapshot, "test", err);
        if (r < 0)
            return r;
        b->phase_label = "test";
        int minutes = b->opts->test_timeout_minutes > 0 ? b->opts->test_timeout_minutes : 720;
        int stage_seconds = minutes * 60;
        _cleanup_free_ char *limit = kiln_asprintf(
            "the test stage's limit, imageTestsConfiguration.timeoutMinutes: %d", minutes);
        if (b->opts->test_timeout_seconds > 0) {
            stage_seconds = b->opts->test_timeout_seconds;
            free(limit);
            limit = kiln_asprintf("the test stage's limit, test_timeout_seconds: %d",
                                  stage_seconds);
        }
        time_t deadline = time(NULL) + (time_t)stage_seconds;
        static const char *const test_phases[] = {"test", NULL};
        for (size_t i = 0; i < rec->n_components; i++) {
            if (cancelled(b))
                return kiln_error_set(err, -ECANCELED, "cancelled");
            b->component_index = (unsigned)i;
            const struct kiln_document_info *d = &b->plan.docs[i];
            if (!d->has_phase[KILN_PHASE_TEST])
                continue;
            int left = (int)(deadline - time(NULL));
            if (left <= 0)
                return kiln_error_set(err, -ETIMEDOUT, "the test stage ran out of time before "
                                      "component %zu (%s)", i + 1, limit);
            _cleanup_json_ json_t *params = component_parameters(&rec->components[i]);
            _cleanup_free_ char *what = kiln_asprintf("test of component %zu (%s, %s)", i + 1,
                                                      d->name, rec->components[i].resolved);
            _cleanup_free_ char *sub = kiln_asprintf("test/%02zu-%s", i + 1, d->name);
            r = run_job(b, rec->components[i].resolved, test_phases, params, what, sub, left,
                        limit, err);
            if (r < 0)
                return r;
        }
        drop_instance(b);
    }

    /* distribute */
    if (cancelled(b))
        return kiln_error_set(err, -ECANCELED, "cancelled");
    progress_stage(b, "distribute");
    r = set_status(b, KILN_IMAGE_DISTRIBUTING, err);
    if (r < 0)
        return r;
    r = distribute(b, err);
    if (r < 0)
        return r;
    r = write_manifest(b, "AVAILABLE", err);
    if (r < 0)
        return r;
    if (cancelled(b))
        return kiln_error_set(err, -ECANCELED, "cancelled");
    r = set_status(b, KILN_IMAGE_AVAILABLE, err);
    if (r < 0)
        return r;
    progress_stage(b, "done");
    return 0;
}

/* Release everything the build holds; on failure with terminateInstanceOnFailure: false, keep
 * the instance that failed and say how to reach it. */
static void
release(struct build *b, bool keep, struct kiln_build_result *result)
{
    struct kiln_error e = {0};
    if (b->inst && keep && b->ops->describe) {
        result->kept_instance = b->ops->describe(b->inst);
        if (!result->kept_instance)
            result->kept_instance =
                kiln_asprintf("the %s instance of build %s", b->inst_role, b->image->build_id);
        kiln_store_resource_keep(b->store, b->image->build_id, NULL);
        b->inst = NULL; /* kept: the driver's record stays until `kiln reap --kept` */
    }
    if (terminate(b, &e) < 0)
        kiln_warn("build %s: %s (run `kiln reap` to retry)", b->image->build_id, e.message);
    drop_retired(b);
    for (size_t i = 0; i < b->n_partial; i++) {
        unlink(b->partial_outputs[i]);
        free(b->partial_outputs[i]);
    }
    free(b->partial_outputs);
    b->partial_outputs = NULL;
    b->n_partial = 0;
    if (b->work_dir) {
        kiln_mkdir_p(b->log_dir, 0755, NULL);
        keep_console_logs(b);
        /* A kept instance still boots from its overlay in the work folder. */
        if (!result->kept_instance)
            kiln_rm_rf(b->work_dir, NULL);
    }
    if (b->conn)
        b->ops->close(b->conn);
    b->conn = NULL;
}

/* Everything after the image record exists: folders, the driver, the stages. */
static int
run_started(struct build *b, struct kiln_error *err)
{
    int r;
    if ((r = kiln_mkdir_p(b->work_dir, 0700, err)) < 0 ||
        (r = kiln_mkdir_p(b->log_dir, 0755, err)) < 0 ||
        (r = kiln_store_image_set_paths(b->store, b->image->id, b->work_dir, b->log_dir, NULL,
                                        err)) < 0)
        return r;
    b->cfg = (struct kiln_driver_config){
        .uri = b->plan.infra->uri,
        .accel = b->plan.infra->accel,
        .vcpus = b->plan.infra->vcpus,
        .memory_mib = b->plan.infra->memory_mib,
        .work_dir = b->work_dir,
        .build_id = b->image->build_id,
        .home = b->plan.home,
        .settings = b->plan.infra->settings,
        .on_resource = on_resource,
        .userdata = b,
        .cancel = b->opts->cancel,
    };
    r = b->ops->open(&b->cfg, 0, &b->conn, err);
    if (r < 0)
        return kiln_error_prefix(err, r, "driver %s (%s)", b->ops->name,
                                 b->plan.infra->uri ? b->plan.infra->uri : "default");
    return stages(b, err);
}

int
kiln_build_run(const struct kiln_build_options *opts, struct kiln_build_result *result,
               struct kiln_error *err)
{
    memset(result, 0, sizeof(*result));
    result->status = KILN_IMAGE_PENDING;
    /* The reason recorded for a failed build comes from err: keep one even when the caller
     * does not want it. */
    struct kiln_error local = {0};
    if (!err)
        err = &local;
    struct build b = {.opts = opts, .store = opts->store, .lock_fd = -1};
    b.started = time(NULL);
    if (!opts->store)
        return kiln_error_set(err, -EINVAL, "kiln_build_run: no state store");

    progress_stage(&b, "validate");
    int r = plan_load(opts, &b.plan, err);
    if (r < 0) {
        plan_clear(&b.plan);
        return r;
    }
    kiln_driver_find_fn find = opts->find_driver ? opts->find_driver : kiln_driver_find;
    b.ops = find(b.plan.infra->driver);
    if (!b.ops) {
        r = kiln_error_set(err, -KILN_E_UNSUPPORTED,
                           "%s: driver '%s' is not available in this "
                           "build of kiln",
                           b.plan.infra->source ? b.plan.infra->source : "infrastructure",
                           b.plan.infra->driver);
        plan_clear(&b.plan);
        return r;
    }
    const struct kiln_recipe *rec = b.plan.recipe;
    result->name = kiln_strdup(rec->name);
    _cleanup_free_ char *recipe_abs = realpath(rec->source, NULL);

    r = kiln_store_image_create_locked(b.store, rec->name, rec->semantic_version, b.ops->name,
                                       b.plan.infra->uri, recipe_abs ? recipe_abs : rec->source,
                                       &b.image, &b.lock_fd, err);
    if (r < 0) {
        plan_clear(&b.plan);
        return r;
    }
    result->version = kiln_asprintf("%s/%ld", b.image->version, b.image->build);
    result->build_id = kiln_strdup(b.image->build_id);
    _cleanup_free_ char *logs_rel =
        kiln_asprintf("logs/%s/%s/%ld/log", rec->name, b.image->version, b.image->build);
    b.log_dir = kiln_path_join(b.plan.home, logs_rel);
    _cleanup_free_ char *work_rel = kiln_asprintf("builds/%s", b.image->build_id);
    b.work_dir = kiln_path_join(b.plan.home, work_rel);
    b.outputs = json_array();

    r = run_started(&b, err);

    bool is_cancel = r < 0 && (cancelled(&b) || r == -ECANCELED);
    bool keep = r < 0 && !is_cancel && !b.plan.infra->terminate_on_failure;
    if (is_cancel) {
        r = -ECANCELED; /* whatever the interrupted wait returned */
        kiln_error_clear(err);
        kiln_error_set(err, -ECANCELED, "the build was cancelled (stage %s)",
                       kiln_image_status_name(b.image->status));
    }
    release(&b, keep, result);
    if (r < 0) {
        enum kiln_image_status final = is_cancel ? KILN_IMAGE_CANCELLED : KILN_IMAGE_FAILED;
        const char *reason = err->code ? err->message : kiln_strerror(r);
        struct kiln_error e2 = {0};
        if (kiln_store_image_set_status(b.store, b.image->id, final, reason, &e2) < 0)
            kiln_warn("%s", e2.message);
        result->status = final;
        result->reason = kiln_strdup(reason);
        write_manifest(&b, kiln_image_status_name(final), NULL);
    } else {
        result->status = KILN_IMAGE_AVAILABLE;
    }
    _cleanup_(kiln_image_record_freep) struct kiln_image_record *now = NULL;
    if (kiln_store_image_get_by_build_id(b.store, b.image->build_id, &now, NULL) == 0)
        result->manifest_path = strdup_or_null(now->manifest_path);
    result->log_dir = kiln_strdup(b.log_dir);
    kiln_store_build_unlock(b.store, b.image->build_id, b.lock_fd);
    kiln_image_record_free(b.image);
    ref_clear(&b.parent);
    ref_clear(&b.snapshot);
    ref_clear(&b.layer);
    json_decref(b.layer_keys);
    json_decref(b.packages);
    free(b.packages_source);
    free(b.packages_note);
    kiln_boot_kernel_clear(&b.kernel);
    free(b.boot_note);
    json_decref(b.outputs);
    free(b.work_dir);
    free(b.log_dir);
    plan_clear(&b.plan);
    return r;
}

/* ---- reaping ---- */

static int
reap_build(struct kiln_store *store, kiln_driver_find_fn find, const char *build_id,
           const char *driver, const char *uri, const char *work_dir, struct kiln_error *err)
{
    const struct kiln_driver_ops *ops = find && driver ? find(driver) : NULL;
    if (!ops)
        return kiln_error_set(err, -KILN_E_UNSUPPORTED,
                              "build %s: driver '%s' is not available to reap its resources",
                              build_id, driver ? driver : "?");
    struct kiln_driver_config cfg = {.uri = uri, .work_dir = work_dir, .build_id = build_id};
    void *conn = NULL;
    int r = ops->open(&cfg, 0, &conn, err);
    if (r < 0)
        return kiln_error_prefix(err, r, "build %s: driver %s", build_id, driver);
    r = ops->reap(conn, build_id, 0, err);
    ops->close(conn);
    if (r < 0)
        return kiln_error_prefix(err, r, "build %s: reaping", build_id);
    r = kiln_store_resource_clear(store, build_id, err);
    if (r < 0)
        return r;
    if (work_dir)
        kiln_rm_rf(work_dir, NULL);
    return 0;
}

int
kiln_build_reap(struct kiln_store *store, kiln_driver_find_fn find_driver, bool include_kept,
                void (*report)(void *userdata, const char *build_id, const char *what),
                void *userdata, struct kiln_error *err)
{
    kiln_driver_find_fn find = find_driver ? find_driver : kiln_driver_find;
    struct kiln_image_record **list = NULL;
    size_t n = 0;
    int r = kiln_store_image_list(store, &list, &n, err);
    if (r < 0)
        return r;
    struct kiln_resource_record *res = NULL;
    size_t n_res = 0;
    r = kiln_store_resource_list(store, NULL, &res, &n_res, err);
    if (r < 0) {
        kiln_image_record_list_free(list, n);
        return r;
    }
    int reaped = 0;
    int first_error = 0;
    for (size_t i = 0; i < n; i++) {
        struct kiln_image_record *img = list[i];
        if (kiln_store_build_is_running(store, img->build_id))
            continue;
        bool crashed = !kiln_image_status_is_final(img->status);
        bool has_live = false, has_kept = false;
        for (size_t k = 0; k < n_res; k++)
            if (kiln_streq(res[k].build_id, img->build_id)) {
                if (res[k].kept)
                    has_kept = true;
                else
                    has_live = true;
            }
        if (!crashed && !has_live && !(include_kept && has_kept))
            continue;
        if (has_kept && !include_kept && !crashed)
            continue; /* a kept instance next to leftovers: leave it all to --kept */
        struct kiln_error e = {0};
        r = reap_build(store, find, img->build_id, img->driver, img->uri,
                       crashed || !has_kept || include_kept ? img->work_dir : NULL, &e);
        if (r < 0) {
            if (!first_error)
                first_error = kiln_error_set(err, r, "%s", e.message);
            if (report)
                report(userdata, img->build_id, e.message);
            continue;
        }
        if (crashed) {
            _cleanup_free_ char *reason = kiln_asprintf(
                "the build process (pid %ld) stopped while %s, without finishing (it crashed or "
                "was killed); its resources were reaped",
                img->pid, kiln_image_status_name(img->status));
            kiln_store_image_set_status(store, img->id, KILN_IMAGE_FAILED, reason, NULL);
            if (report)
                report(userdata, img->build_id, reason);
        } else if (report) {
            report(userdata, img->build_id, "released leftover resources");
        }
        reaped++;
    }
    kiln_resource_record_list_free(res, n_res);
    kiln_image_record_list_free(list, n);
    return first_error < 0 ? first_error : reaped;
}
