/* Tests for the build lifecycle, driven through the fake driver (drivers/fake.c): success,
 * failing component, launch failure, snapshot failure, test-phase failure, terminate failure,
 * cancellation, kept instances, validation before any launch; and a crashed build reaped
 * afterwards. After every path: no live resource remains in the store or in the driver, and the
 * build's work folder is gone.
 *
 * A thin wrapper around the fake records each job, counts the instances still live when the
 * build closes its connection, and turns the fake's snapshot (a JSON description) into a real
 * disk so that distribution runs the real qemu-img.
 *
 * The crash path uses a second double defined here, which keeps its "live" resources as files:
 * the fake lives in the memory of one process, and a build that crashes in a child process must
 * leave resources behind for the reaper in the parent, as a real hypervisor would. */
#include "kiln-test.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/hash.h"
#include "common/json.h"
#include "factory/build.h"
#include "factory/document.h"
#include "drivers/command.h"
#include "drivers/fake.h"
#include "guest-agent/engine.h"

static bool
system_has_dpkg(void)
{
    return access("/usr/bin/dpkg-query", X_OK) == 0 && access("/var/lib/dpkg/status", R_OK) == 0;
}

/* ---- a file-backed driver double, for the crash path only ---- */

static struct {
    char *dir; /* live resources: one file per resource, named <id> */
    int launches;
    bool crash_on_run;
} dbl;

struct dbl_conn {
    const struct kiln_driver_config *cfg;
    struct kiln_instance *kept; /* handles close() frees; the guests themselves stay */
};

struct kiln_instance {
    struct dbl_conn *conn;
    char *name;
    bool stopped;
    struct kiln_instance *next;
};

static void
dbl_reset(void)
{
    char *dir = dbl.dir;
    memset(&dbl, 0, sizeof(dbl));
    dbl.dir = dir;
}

static void
dbl_resource(struct dbl_conn *c, const char *id, bool live)
{
    char *path = kiln_path_join(dbl.dir, id);
    if (live)
        assert_int_equal(kiln_write_file_atomic(path, "x", 1, 0644, NULL), 0);
    else
        unlink(path);
    free(path);
    if (c->cfg->on_resource)
        c->cfg->on_resource(c->cfg->userdata, "domain", id, live);
}

static int
dbl_open(const struct kiln_driver_config *cfg, unsigned flags, void **ret, struct kiln_error *err)
{
    KILN_CHECK_FLAGS(flags, 0, err);
    assert_non_null(cfg->build_id);
    struct dbl_conn *c = kiln_new(struct dbl_conn, 1);
    c->cfg = cfg;
    *ret = c;
    return 0;
}

/* Like a real driver, close() frees the handles of instances still open (a guest launched
 * with KILN_LAUNCH_KEEP_ON_FAILURE keeps running); it never terminates them. */
static void
dbl_close(void *conn)
{
    struct dbl_conn *c = conn;
    while (c->kept) {
        struct kiln_instance *i = c->kept;
        c->kept = i->next;
        free(i->name);
        free(i);
    }
    free(c);
}

static int
dbl_launch(void *conn, const struct kiln_image_ref *image, const char *name, int timeout,
           unsigned flags, struct kiln_instance **ret, struct kiln_error *err)
{
    KILN_CHECK_FLAGS(flags, KILN_LAUNCH_KEEP_ON_FAILURE | KILN_LAUNCH_WARM, err);
    struct dbl_conn *c = conn;
    assert_non_null(image->location);
    assert_int_equal(access(image->location, R_OK), 0);
    dbl.launches++;
    dbl_resource(c, name, true);
    char *log_name = kiln_asprintf("%s-console.log", name);
    char *log = kiln_path_join(c->cfg->work_dir, log_name);
    const char *text = "kiln-agent: hello\n";
    kiln_write_file_atomic(log, text, strlen(text), 0644, NULL);
    free(log);
    free(log_name);
    struct kiln_instance *inst = kiln_new(struct kiln_instance, 1);
    inst->conn = c;
    inst->name = kiln_strdup(name);
    inst->next = c->kept;
    c->kept = inst;
    *ret = inst;
    return 0;
}

static int
dbl_run(struct kiln_instance *inst, const struct kiln_job *job, const char *log_dir,
        const struct kiln_engine_events *events, unsigned flags, struct kiln_job_result *ret,
        struct kiln_error *err)
{
    KILN_CHECK_FLAGS(flags, 0, err);
    assert_false(inst->stopped);
    if (dbl.crash_on_run)
        _exit(9); /* the build process dies mid-step */
    ret->status = KILN_RUN_SUCCESS;
    return 0;
}

static int
dbl_stop(struct kiln_instance *inst, int timeout, unsigned flags, struct kiln_error *err)
{
    KILN_CHECK_FLAGS(flags, 0, err);
    inst->stopped = true;
    return 0;
}

static int
dbl_snapshot(struct kiln_instance *inst, const struct kiln_snapshot_options *opts, unsigned flags,
             struct kiln_image_ref *ret, struct kiln_error *err)
{
    return kiln_error_set(err, -ENOTSUP, "not used by the crash test");
}

static int
dbl_terminate(struct kiln_instance *inst, unsigned flags, struct kiln_error *err)
{
    if (!inst)
        return 0;
    dbl_resource(inst->conn, inst->name, false);
    for (struct kiln_instance **p = &inst->conn->kept; *p; p = &(*p)->next)
        if (*p == inst) {
            *p = inst->next;
            break;
        }
    free(inst->name);
    free(inst);
    return 0;
}

static int
dbl_reap(void *conn, const char *build_id, unsigned flags, struct kiln_error *err)
{
    KILN_CHECK_FLAGS(flags, 0, err);
    DIR *d = opendir(dbl.dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)))
        if (strncmp(de->d_name, build_id, strlen(build_id)) == 0) {
            char *p = kiln_path_join(dbl.dir, de->d_name);
            unlink(p);
            free(p);
        }
    closedir(d);
    return 0;
}

static char *
dbl_describe(struct kiln_instance *inst)
{
    return kiln_asprintf("fake instance %s (console: virsh console %s)", inst->name, inst->name);
}

static const struct kiln_driver_ops dbl_ops = {
    .name = "fake",
    .open = dbl_open,
    .close = dbl_close,
    .launch = dbl_launch,
    .run = dbl_run,
    .stop = dbl_stop,
    .snapshot = dbl_snapshot,
    .terminate = dbl_terminate,
    .reap = dbl_reap,
    .describe = dbl_describe,
};

static const struct kiln_driver_ops *
dbl_find(const char *name)
{
    return strcmp(name, "fake") == 0 ? &dbl_ops : NULL;
}

static size_t
dbl_live(void)
{
    DIR *d = opendir(dbl.dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* ---- the fake driver, wrapped ---- */

static struct {
    const char *fail_op; /* inject into the build's connection: op, nth call, code, message */
    unsigned fail_nth;
    int fail_code;
    const char *fail_msg;
    bool cancel_on_run;
    const struct kiln_driver_config *cfg;
    unsigned closes;
    unsigned live_at_close; /* instances still live when the build closed its connection */
    unsigned launches;
    unsigned reaps;
    json_t *jobs;
    json_t *launched;          /* [{name, kernel}] of each launch */
    const char *kernel_report; /* the guest's ReportBootKernel output, or NULL: none */
} fk;

static struct kiln_driver_ops fk_ops;

static void
fk_reset(void)
{
    json_decref(fk.jobs);
    json_decref(fk.launched);
    memset(&fk, 0, sizeof(fk));
    fk.jobs = json_array();
    fk.launched = json_array();
}

static int
fk_launch(void *conn, const struct kiln_image_ref *image, const char *name, int timeout,
          unsigned flags, struct kiln_instance **ret, struct kiln_error *err)
{
    json_array_append_new(fk.launched,
                          json_pack("{s:s, s:s?, s:b}", "name", name, "kernel", image->kernel,
                                    "warm", (flags & KILN_LAUNCH_WARM) != 0));
    return kiln_fake_driver.launch(conn, image, name, timeout, flags, ret, err);
}

/* The kernel of the nth launch whose name ends with role ("-build", "-test", "-layer-2"). */
static const char *
launched_kernel(const char *role, bool *found)
{
    size_t i;
    json_t *l;
    *found = false;
    json_array_foreach(fk.launched, i, l)
    {
        const char *name = kiln_json_get_str(l, "name");
        size_t n = strlen(name), k = strlen(role);
        if (n >= k && strcmp(name + n - k, role) == 0) {
            *found = true;
            return kiln_json_get_str(l, "kernel");
        }
    }
    return NULL;
}

/* Write what the engine writes for a job (detailedoutput.json with each step's outputs). */
static void
fk_write_detail(const char *log_dir, const char *doc, json_t *steps)
{
    json_t *detail = json_pack("{s:[{s:s, s:[{s:s, s:o}]}]}", "documents", "name", doc, "phases",
                               "name", "build", "steps", steps);
    char *text = kiln_json_dumps(detail, true);
    char *path = kiln_path_join(log_dir, "detailedoutput.json");
    assert_int_equal(kiln_write_file_atomic(path, text, strlen(text), 0644, NULL), 0);
    free(path);
    free(text);
    json_decref(detail);
}

static json_t *
fk_step(const char *name, const char *stdout_text)
{
    json_t *outputs = json_pack("[{s:s}]", "stdout", stdout_text);
    char *outputs_text = kiln_json_dumps(outputs, false);
    json_t *step =
        json_pack("{s:s, s:s, s:s}", "name", name, "status", "success", "outputs", outputs_text);
    free(outputs_text);
    json_decref(outputs);
    return step;
}

static int
fk_open(const struct kiln_driver_config *cfg, unsigned flags, void **ret, struct kiln_error *err)
{
    int r = kiln_fake_driver.open(cfg, flags, ret, err);
    if (r < 0)
        return r;
    fk.cfg = cfg;
    if (fk.fail_op)
        kiln_fake_inject_failure(*ret, fk.fail_op, fk.fail_nth, fk.fail_code, fk.fail_msg);
    return 0;
}

static void
fk_close(void *conn)
{
    fk.closes++;
    fk.live_at_close += kiln_fake_live_instances(conn);
    fk.launches += kiln_fake_calls(conn, "launch");
    fk.reaps += kiln_fake_calls(conn, "reap");
    kiln_fake_driver.close(conn);
}

static int
fk_run(struct kiln_instance *inst, const struct kiln_job *job, const char *log_dir,
       const struct kiln_engine_events *events, unsigned flags, struct kiln_job_result *ret,
       struct kiln_error *err)
{
    json_t *docs = json_array(), *phases = json_array();
    for (size_t i = 0; job->documents[i]; i++) {
        assert_int_equal(access(job->documents[i], R_OK), 0);
        json_array_append_new(docs, json_string(job->documents[i]));
    }
    for (size_t i = 0; job->phases && job->phases[i]; i++)
        json_array_append_new(phases, json_string(job->phases[i]));
    char *desc = kiln_fake_driver.describe(inst);
    json_array_append_new(fk.jobs,
                          json_pack("{s:o, s:o, s:O?, s:s, s:i, s:s}", "documents", docs,
                                    "phases", phases, "parameters", job->parameters, "instance",
                                    desc, "timeout", job->timeout_seconds, "execution-id",
                                    job->execution_id));
    free(desc);
    if (fk.cancel_on_run)
        *fk.cfg->cancel = 1; /* Ctrl-C arrives while the step runs */
    int r = kiln_fake_driver.run(inst, job, log_dir, events, flags, ret, err);
    /* The fake's TOE folder holds its own summary; for the inventory, write what the engine
     * writes (detailedoutput.json with the step's outputs), as a dpkg system would print. */
    if (r == 0 && ret->log_dir && strstr(job->documents[0], "kiln-inventory.yml")) {
        json_t *steps = json_array();
        char *out = kiln_asprintf("kiln-inventory dpkg\nbash\t5.2.15-2+b2\tamd64\n"
                                  "libc6\t2.36-9\tamd64\n%s",
                                  fk.kernel_report ? fk.kernel_report : "");
        json_array_append_new(steps, fk_step("ListInstalledPackages", out));
        free(out);
        fk_write_detail(ret->log_dir, "kiln-inventory", steps);
    }
    if (r == 0 && ret->log_dir && strstr(job->documents[0], "kiln-boot-kernel.yml") &&
        fk.kernel_report) {
        json_t *steps = json_array();
        json_array_append_new(steps, fk_step("ReportBootKernel", fk.kernel_report));
        fk_write_detail(ret->log_dir, "kiln-boot-kernel", steps);
    }
    return r;
}

static int
fk_snapshot(struct kiln_instance *inst, const struct kiln_snapshot_options *opts, unsigned flags,
            struct kiln_image_ref *ret, struct kiln_error *err)
{
    int r = kiln_fake_driver.snapshot(inst, opts, flags, ret, err);
    if (r < 0)
        return r;
    /* A small raw disk with some content, so that qemu-img really converts something. */
    size_t n = 1 << 20;
    char *data = kiln_calloc(1, n);
    memcpy(data + 4096, "kiln image", 10);
    assert_int_equal(kiln_write_file_atomic(ret->location, data, n, 0644, NULL), 0);
    free(data);
    free(ret->kind);
    ret->kind = kiln_strdup("raw");
    return 0;
}

static const struct kiln_driver_ops *
fk_find(const char *name)
{
    fk_ops = kiln_fake_driver;
    fk_ops.open = fk_open;
    fk_ops.launch = fk_launch;
    fk_ops.close = fk_close;
    fk_ops.run = fk_run;
    fk_ops.snapshot = fk_snapshot;
    return strcmp(name, "fake") == 0 ? &fk_ops : NULL;
}

static void
fk_fail(const char *op, unsigned nth, int code, const char *msg)
{
    fk.fail_op = op;
    fk.fail_nth = nth;
    fk.fail_code = code;
    fk.fail_msg = msg;
}

/* ---- fixture: a Kiln home, a recipe folder, a parent image ---- */

struct fx {
    char *root;
    char *home;
    char *recipe;
    char *infra;
    char *dist;
    char *out;
    struct kiln_store *store;
    volatile sig_atomic_t cancel;
    struct kiln_build_options opts;
    json_t *stages;
    json_t *warnings;
};

static void
put(struct fx *f, const char *name, const char *text)
{
    char *p = kiln_path_join(f->root, name);
    char *dir = kiln_strdup(p);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(kiln_mkdir_p(dir, 0755, NULL), 0);
    assert_int_equal(kiln_write_file_atomic(p, text, strlen(text), 0644, NULL), 0);
    free(dir);
    free(p);
}

static const char *component_hello =
    "name: hello\nschemaVersion: 1.0\nparameters:\n  - greeting:\n      type: string\n"
    "      default: hi\nphases:\n  - name: build\n    steps:\n      - name: Say\n"
    "        action: ExecuteBash\n        inputs:\n          commands: [\"echo {{ greeting }}\"]\n"
    "  - name: validate\n    steps:\n      - name: Check\n        action: ExecuteBash\n"
    "        inputs:\n          commands: [\"true\"]\n"
    "  - name: test\n    steps:\n      - name: Test\n        action: ExecuteBash\n"
    "        inputs:\n          commands: [\"true\"]\n";

static const char *component_second =
    "name: second\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
    "      - name: Two\n        action: ExecuteBash\n        inputs:\n"
    "          commands: [\"echo two\"]\n";

static void
on_stage(void *userdata, const char *stage)
{
    struct fx *f = userdata;
    json_array_append_new(f->stages, json_string(stage));
}

/* Progress step lines that are warnings. */
static void
on_step(void *userdata, const char *text)
{
    struct fx *f = userdata;
    if (strncmp(text, "warning: ", 9) == 0)
        json_array_append_new(f->warnings, json_string(text));
}

static struct kiln_build_progress progress = {.stage = on_stage, .step = on_step};

static int
setup(void **state)
{
    struct fx *f = kiln_new(struct fx, 1);
    if (kiln_mkdtemp("kiln-build", &f->root, NULL) < 0)
        return -1;
    f->home = kiln_path_join(f->root, "home");
    f->out = kiln_path_join(f->root, "out");
    dbl.dir = kiln_path_join(f->root, "hypervisor");
    kiln_mkdir_p(dbl.dir, 0755, NULL);
    dbl_reset();
    fk_reset();
    put(f, "components/hello.yml", component_hello);
    put(f, "components/second.yml", component_second);
    put(f, "parent.qcow2", "not really a disk, the double only checks it exists");
    put(f, "recipe.yml",
        "name: hello-world\nsemanticVersion: 1.2.3\nparentImage: parent.qcow2\ncomponents:\n"
        "  - path: components/hello.yml\n    parameters:\n      - name: greeting\n"
        "        value: [bonjour]\n  - path: components/second.yml\n");
    put(f, "infra.yml", "driver: fake\nvcpus: 1\nmemoryMiB: 256\n");
    char *dist = kiln_asprintf("distributions:\n  - local:\n      directory: %s\n"
                               "      formats: [qcow2, raw]\n",
                               f->out);
    put(f, "dist.yml", dist);
    free(dist);
    f->recipe = kiln_path_join(f->root, "recipe.yml");
    f->infra = kiln_path_join(f->root, "infra.yml");
    f->dist = kiln_path_join(f->root, "dist.yml");
    struct kiln_error err = {0};
    if (kiln_store_open(f->home, &f->store, &err) < 0) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    f->stages = json_array();
    f->warnings = json_array();
    progress.userdata = f;
    f->opts = (struct kiln_build_options){
        .recipe_path = f->recipe,
        .infrastructure_path = f->infra,
        .distribution_path = f->dist,
        .home = f->home,
        .store = f->store,
        .find_driver = fk_find,
        .progress = &progress,
        .cancel = &f->cancel,
    };
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    kiln_store_free(f->store);
    kiln_rm_rf(f->root, NULL);
    free(f->root);
    free(f->home);
    free(f->recipe);
    free(f->infra);
    free(f->dist);
    free(f->out);
    free(dbl.dir);
    dbl.dir = NULL;
    json_decref(fk.jobs);
    fk.jobs = NULL;
    json_decref(fk.launched);
    fk.launched = NULL;
    json_decref(f->stages);
    json_decref(f->warnings);
    free(f);
    return 0;
}

/* Nothing is left: no resource record, no live resource in the driver, no work folder. */
static void
assert_released(struct fx *f, const struct kiln_build_result *res)
{
    assert_true(fk.closes > 0 || dbl.launches > 0);
    assert_int_equal(fk.live_at_close, 0);
    struct kiln_resource_record *list = NULL;
    size_t n = 0;
    assert_int_equal(kiln_store_resource_list(f->store, NULL, &list, &n, NULL), 0);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "left in the store: %s %s\n", list[i].kind, list[i].rid);
    assert_int_equal(n, 0);
    kiln_resource_record_list_free(list, n);
    assert_int_equal(dbl_live(), 0);
    char *work = kiln_asprintf("%s/builds/%s", f->home, res->build_id);
    struct stat st;
    assert_int_equal(stat(work, &st), -1);
    free(work);
}

static struct kiln_image_record *
record(struct fx *f, const struct kiln_build_result *res)
{
    struct kiln_image_record *r = NULL;
    assert_int_equal(kiln_store_image_get_by_build_id(f->store, res->build_id, &r, NULL), 0);
    return r;
}

static bool
stage_seen(struct fx *f, const char *stage)
{
    size_t i;
    json_t *v;
    json_array_foreach(f->stages, i, v) if (strcmp(json_string_value(v), stage) == 0) return true;
    return false;
}

static void
test_success(void **state)
{
    struct fx *f = *state;
    struct kiln_build_result res;
    struct kiln_error err = {0};
    int r = kiln_build_run(&f->opts, &res, &err);
    if (r < 0)
        fail_msg("%s", err.message);
    assert_int_equal(res.status, KILN_IMAGE_AVAILABLE);
    assert_string_equal(res.version, "1.2.3/1");
    assert_released(f, &res);
    assert_int_equal(json_array_size(f->warnings), 0); /* nothing EC2-only in this recipe */
    /* Only the build instance, launched from the parent that later builds start from too, may
     * start from a saved guest; the test instance boots the image just made. */
    size_t li;
    json_t *l;
    int warm = 0;
    json_array_foreach(fk.launched, li, l) {
        const char *name = kiln_json_get_str(l, "name");
        bool is_build = strlen(name) > 6 && kiln_streq(name + strlen(name) - 6, "-build");
        assert_int_equal(json_is_true(json_object_get(l, "warm")), is_build);
        warm += is_build;
    }
    assert_int_equal(warm, 1);
    assert_int_equal(json_array_size(fk.launched), 2);

    /* Jobs: each component's build+validate on the build instance, the inventory, the cleanup,
     * then the one component with a test phase on a second instance. */
    assert_int_equal(json_array_size(fk.jobs), 5);
    json_t *j0 = json_array_get(fk.jobs, 0);
    assert_non_null(strstr(json_string_value(json_array_get(json_object_get(j0, "documents"), 0)),
                           "components/hello.yml"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(j0, "phases"), 0)),
                        "build");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j0, "phases"), 1)),
                        "validate");
    assert_string_equal(kiln_json_get_str(json_object_get(j0, "parameters"), "greeting"),
                        "bonjour");
    json_t *j2 = json_array_get(fk.jobs, 2);
    assert_non_null(strstr(json_string_value(json_array_get(json_object_get(j2, "documents"), 0)),
                           "kiln-inventory.yml"));
    j2 = json_array_get(fk.jobs, 3);
    assert_non_null(strstr(json_string_value(json_array_get(json_object_get(j2, "documents"), 0)),
                           "kiln-linux-cleanup.yml"));
    assert_string_equal(kiln_json_get_str(json_object_get(j2, "parameters"), "workingDirectory"),
                        "/tmp");
    json_t *j3 = json_array_get(fk.jobs, 4);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j3, "phases"), 0)),
                        "test");
    /* The test instance boots from the snapshot, the build instance from the parent. */
    assert_non_null(strstr(kiln_json_get_str(j3, "instance"), "-test-"));
    assert_non_null(strstr(kiln_json_get_str(j3, "instance"), "/image.qcow2"));
    assert_non_null(strstr(kiln_json_get_str(j0, "instance"), "-build-"));
    assert_non_null(strstr(kiln_json_get_str(j0, "instance"), "parent.qcow2"));
    assert_int_equal(fk.launches, 2);
    const char *expected_stages[] = {"validate", "launch", "build",      "cleanup",
                                     "snapshot", "test",   "distribute", "done"};
    for (size_t i = 0; i < ARRAY_SIZE(expected_stages); i++)
        assert_string_equal(json_string_value(json_array_get(f->stages, i)), expected_stages[i]);

    /* The record, its outputs (real qemu-img conversions) and the manifest. */
    struct kiln_image_record *rec = record(f, &res);
    assert_int_equal(rec->status, KILN_IMAGE_AVAILABLE);
    assert_int_equal(rec->n_outputs, 2);
    for (size_t i = 0; i < rec->n_outputs; i++) {
        char hex[KILN_HASH_MAX_HEX];
        assert_int_equal(kiln_hash_file_hex(KILN_HASH_SHA256, rec->outputs[i].path, hex, NULL), 0);
        assert_string_equal(hex, rec->outputs[i].sha256);
        assert_non_null(strstr(rec->outputs[i].path, "/out/hello-world-1.2.3-1."));
    }
    assert_string_equal(rec->outputs[0].format, "qcow2");
    assert_string_equal(rec->outputs[1].format, "raw");
    assert_int_equal(rec->outputs[1].size, 1 << 20); /* raw keeps the disk's size */
    json_t *m = NULL;
    assert_int_equal(kiln_json_load_file(rec->manifest_path, 1 << 20, &m, NULL), 0);
    assert_string_equal(kiln_json_get_str(m, "version"), "1.2.3/1");
    json_t *comps = json_object_get(m, "components");
    assert_int_equal(json_array_size(comps), 2);
    assert_string_equal(kiln_json_get_str(json_array_get(comps, 0), "name"), "hello");
    char hex[KILN_HASH_MAX_HEX];
    kiln_hash_file_hex(KILN_HASH_SHA256, kiln_json_get_str(json_array_get(comps, 0), "path"), hex,
                       NULL);
    assert_string_equal(kiln_json_get_str(json_array_get(comps, 0), "sha256"), hex);
    assert_int_equal(json_array_size(json_object_get(m, "outputs")), 2);
    /* The package list, from the inventory step's output. */
    json_t *pkgs = json_object_get(m, "installedPackages");
    assert_int_equal(json_array_size(pkgs), 2);
    assert_string_equal(kiln_json_get_str(json_array_get(pkgs, 0), "name"), "bash");
    assert_string_equal(kiln_json_get_str(json_array_get(pkgs, 0), "version"), "5.2.15-2+b2");
    assert_string_equal(kiln_json_get_str(json_array_get(pkgs, 1), "architecture"), "amd64");
    assert_string_equal(kiln_json_get_str(m, "installedPackagesSource"), "dpkg");
    json_decref(m);

    /* Logs: the agent's TOE folders, one per job. */
    char *toe = kiln_asprintf("%s/build/01-hello/TOE_fake_%s-build-01-hello/detailedoutput.json",
                              rec->log_dir, res.build_id);
    assert_int_equal(access(toe, R_OK), 0);
    free(toe);
    toe = kiln_asprintf("%s/test/01-hello/TOE_fake_%s-test-01-hello/detailedoutput.json",
                        rec->log_dir, res.build_id);
    assert_int_equal(access(toe, R_OK), 0);
    free(toe);
    kiln_image_record_free(rec);

    /* A second build of the same version is build 2. */
    struct kiln_build_result res2;
    assert_int_equal(kiln_build_run(&f->opts, &res2, &err), 0);
    assert_string_equal(res2.version, "1.2.3/2");
    kiln_build_result_clear(&res2);
    kiln_build_result_clear(&res);
}

/* parentImage by name: the base image images/tiny/build.sh writes under the Kiln home. */
/* Image Builder allows 126-character recipe names and component names with spaces: the agent's
 * execution ids (at most 64 bytes of [A-Za-z0-9._-]) are still valid and distinct. */
static void
test_long_names(void **state)
{
    struct fx *f = *state;
    put(f, "components/spaced.yml",
        "name: a component with spaces and a rather long name indeed\nschemaVersion: 1.0\n"
        "phases:\n  - name: build\n    steps:\n      - name: One\n        action: ExecuteBash\n"
        "        inputs:\n          commands: [\"true\"]\n");
    char *recipe = kiln_asprintf(
        "name: %s\nsemanticVersion: 1.2.3\nparentImage: parent.qcow2\ncomponents:\n"
        "  - path: components/spaced.yml\n  - path: components/hello.yml\n",
        "a-recipe-name-of-one-hundred-and-twenty-characters-which-image-builder-accepts-and-"
        "which-kiln-must-accept-too-x");
    put(f, "recipe.yml", recipe);
    free(recipe);
    struct kiln_build_result res;
    struct kiln_error err = {0};
    if (kiln_build_run(&f->opts, &res, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(res.status, KILN_IMAGE_AVAILABLE);
    size_t i, j;
    json_t *a, *b;
    json_array_foreach(fk.jobs, i, a)
    {
        const char *id = kiln_json_get_str(a, "execution-id");
        assert_true(strlen(id) <= 64);
        json_array_foreach(fk.jobs, j, b)
        {
            if (j != i)
                assert_string_not_equal(id, kiln_json_get_str(b, "execution-id"));
        }
    }
    assert_true(json_array_size(fk.jobs) >= 4);
    assert_released(f, &res);
    kiln_build_result_clear(&res);
}

/* blockDeviceMappings is an EC2 setting: a local build says it does not apply it, and still
 * builds. userDataOverride runs when it is a script, and is said not to run otherwise. */
static void
test_ec2_only_fields_warned(void **state)
{
    struct fx *f = *state;
    put(f, "recipe.yml",
        "name: hello-world\nsemanticVersion: 1.2.3\nparentImage: parent.qcow2\ncomponents:\n"
        "  - path: components/second.yml\nblockDeviceMappings:\n  - deviceName: /dev/xvda\n"
        "    ebs: {volumeSize: 20, volumeType: gp3}\nadditionalInstanceConfiguration:\n"
        "  userDataOverride: IyEvYmluL2Jhc2gKZWNobyBoaQo=\n");
    struct kiln_build_result res;
    struct kiln_error err = {0};
    if (kiln_build_run(&f->opts, &res, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(res.status, KILN_IMAGE_AVAILABLE);
    assert_int_equal(json_array_size(f->warnings), 1);
    const char *bdm = json_string_value(json_array_get(f->warnings, 0));
    assert_non_null(strstr(bdm, "blockDeviceMappings (/dev/xvda: 20 GiB)"));
    assert_non_null(strstr(bdm, "fake driver keeps the parent image's disk size"));
    /* The user data (a #! script) is the build instance's first job, before the components. */
    json_t *first = json_array_get(fk.jobs, 0);
    assert_non_null(strstr(json_string_value(json_array_get(json_object_get(first, "documents"),
                                                            0)),
                           "kiln-user-data.yml"));
    assert_string_equal(kiln_json_get_str(json_object_get(first, "parameters"), "userData"),
                        "IyEvYmluL2Jhc2gKZWNobyBoaQo=");
    assert_non_null(strstr(kiln_json_get_str(first, "instance"), "-build"));
    assert_released(f, &res);
    kiln_build_result_clear(&res);

    /* cloud-init's other formats are not run; the build says so. */
    fk_reset();
    json_array_clear(f->warnings);
    put(f, "recipe.yml",
        "name: hello-world\nsemanticVersion: 1.2.3\nparentImage: parent.qcow2\ncomponents:\n"
        "  - path: components/second.yml\nadditionalInstanceConfiguration:\n"
        "  userDataOverride: I2Nsb3VkLWNvbmZpZw==\n");
    if (kiln_build_run(&f->opts, &res, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(res.status, KILN_IMAGE_AVAILABLE);
    assert_int_equal(json_array_size(f->warnings), 1);
    assert_non_null(strstr(json_string_value(json_array_get(f->warnings, 0)),
                           "userDataOverride is not a script (#!)"));
    json_t *job = json_array_get(fk.jobs, 0);
    assert_null(strstr(json_string_value(json_array_get(json_object_get(job, "documents"), 0)),
                       "kiln-user-data"));
    assert_released(f, &res);
    kiln_build_result_clear(&res);
}

static void
test_parent_from_catalog(void **state)
{
    struct fx *f = *state;
    put(f, "home/images/tiny/abc123/disk.qcow2", "disk");
    put(f, "home/images/tiny/abc123/vmlinux", "kernel");
    put(f, "home/images/tiny/abc123/initrd.img", "initrd");
    put(f, "home/images/tiny/abc123/image.json",
        "{\"name\": \"tiny\", \"format\": \"qcow2\", \"disk\": \"disk.qcow2\", "
        "\"kernel\": \"vmlinux\", \"initrd\": \"initrd.img\", \"cmdline\": \"console=ttyS0\"}");
    char *link = kiln_path_join(f->home, "images/tiny/current");
    assert_int_equal(symlink("abc123", link), 0);
    free(link);
    put(f, "recipe.yml",
        "name: hello-world\nsemanticVersion: 1.2.3\nparentImage: tiny\ncomponents:\n"
        "  - path: components/hello.yml\n");
    struct kiln_build_result res;
    struct kiln_error err = {0};
    if (kiln_build_run(&f->opts, &res, &err) < 0)
        fail_msg("%s", err.message);
    assert_non_null(strstr(kiln_json_get_str(json_array_get(fk.jobs, 0), "instance"),
                           "images/tiny/abc123/disk.qcow2"));
    json_t *m = NULL;
    assert_int_equal(kiln_json_load_file(res.manifest_path, 1 << 20, &m, NULL), 0);
    json_t *parent = json_object_get(m, "parentImage");
    assert_non_null(strstr(kiln_json_get_str(parent, "kernel"), "images/tiny/abc123/vmlinux"));
    assert_string_equal(kiln_json_get_str(parent, "kind"), "qcow2");
    json_decref(m);
    assert_released(f, &res);
    kiln_build_result_clear(&res);

    /* A catalog name that was never built says how to build it. */
    put(f, "recipe.yml",
        "name: hello-world\nsemanticVersion: 1.2.3\nparentImage: debian-12\ncomponents:\n"
        "  - path: components/hello.yml\n");
    kiln_error_clear(&err);
    assert_int_equal(kiln_build_validate(&f->opts, &err), -KILN_E_INVALID);
    assert_non_null(strstr(err.message, "recipe.yml:3:14: parentImage 'debian-12': no image named "
                                        "debian-12"));
    assert_non_null(strstr(err.message, "scripts/prepare-images"));
}

static void
test_failing_component(void **state)
{
    struct fx *f = *state;
    fk_fail("job", 2, -KILN_E_FAILED, "step Two in phase build: exit status 3");
    struct kiln_build_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_build_run(&f->opts, &res, &err), -KILN_E_FAILED);
    assert_int_equal(res.status, KILN_IMAGE_FAILED);
    assert_non_null(strstr(res.reason, "component 2 (second,"));
    assert_non_null(strstr(res.reason, "exit status 3"));
    assert_non_null(strstr(res.reason, "logs: "));
    assert_non_null(strstr(res.reason, "last output: fake run")); /* the guest's last words */
    assert_released(f, &res);
    struct kiln_image_record *rec = record(f, &res);
    assert_int_equal(rec->status, KILN_IMAGE_FAILED);
    assert_string_equal(rec->reason, res.reason);
    assert_int_equal(rec->n_outputs, 0);
    /* The manifest says FAILED and the console log is kept. */
    json_t *m = NULL;
    assert_int_equal(kiln_json_load_file(rec->manifest_path, 1 << 20, &m, NULL), 0);
    assert_string_equal(kiln_json_get_str(m, "status"), "FAILED");
    json_decref(m);
    char *toe = kiln_asprintf("%s/build/02-second/TOE_fake_%s-build-02-second/"
                              "detailedoutput.json",
                              rec->log_dir, res.build_id);
    assert_int_equal(access(toe, R_OK), 0);
    free(toe);
    kiln_image_record_free(rec);
    assert_false(stage_seen(f, "snapshot"));
    assert_int_equal(fk.launches, 1);
    kiln_build_result_clear(&res);
}

static void
test_launch_failure(void **state)
{
    struct fx *f = *state;
    fk_fail("launch", 1, -KILN_E_REMOTE,
            "the guest did not say hello within 600 s (last console line: Kernel panic)");
    struct kiln_build_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_build_run(&f->opts, &res, &err), -KILN_E_REMOTE);
    assert_int_equal(res.status, KILN_IMAGE_FAILED);
    assert_non_null(strstr(res.reason, "launching the build instance"));
    assert_non_null(strstr(res.reason, "Kernel panic"));
    assert_int_equal(json_array_size(fk.jobs), 0);
    assert_released(f, &res);
    kiln_build_result_clear(&res);
}

static void
test_snapshot_failure(void **state)
{
    struct fx *f = *state;
    fk_fail("snapshot", 1, -ENOSPC, "qemu-img convert: No space left on device");
    struct kiln_build_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_build_run(&f->opts, &res, &err), -ENOSPC);
    assert_int_equal(res.status, KILN_IMAGE_FAILED);
    assert_non_null(strstr(res.reason, "snapshot of the build instance"));
    assert_non_null(strstr(res.reason, "No space left"));
    assert_released(f, &res);
    assert_false(stage_seen(f, "test"));
    kiln_build_result_clear(&res);
}

static void
test_test_phase_failure(void **state)
{
    struct fx *f = *state;
    /* Jobs: hello build, second build, inventory, cleanup, hello test: the fifth fails. */
    fk_fail("job", 5, -KILN_E_FAILED, "step Test in phase test: exit status 1");
    struct kiln_build_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_build_run(&f->opts, &res, &err), -KILN_E_FAILED);
    assert_int_equal(res.status, KILN_IMAGE_FAILED);
    assert_non_null(strstr(res.reason, "test of component 1 (hello,"));
    assert_int_equal(fk.launches, 2);
    assert_released(f, &res);
    struct kiln_image_record *rec = record(f, &res);
    assert_int_equal(rec->n_outputs, 0);
    kiln_image_record_free(rec);
    /* No output file was left half-written. */
    DIR *d = opendir(f->out);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            assert_true(de->d_name[0] == '.');
        closedir(d);
    }
    kiln_build_result_clear(&res);
}

/* The timeout_seconds of job i (in the order run). */
static int
job_timeout(size_t i)
{
    return (int)json_integer_value(json_object_get(json_array_get(fk.jobs, i), "timeout"));
}

static void
test_test_phase_timeout(void **state)
{
    struct fx *f = *state;
    /* Jobs: hello build, second build, inventory, cleanup, hello test: the fifth hangs in its
     * step Wait until the driver's timeout ends it. */
    fk_fail("hang", 5, 0, "Wait");
    f->opts.test_timeout_minutes = 90;
    struct kiln_build_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_build_run(&f->opts, &res, &err), -ETIMEDOUT);
    fprintf(stderr, "%s\n", res.reason);
    assert_int_equal(res.status, KILN_IMAGE_FAILED);
    assert_non_null(strstr(res.reason, "test of component 1 (hello,"));
    assert_non_null(strstr(res.reason, "timed out in test/Wait after "));
    assert_non_null(strstr(res.reason, "(the test stage's limit, "
                                       "imageTestsConfiguration.timeoutMinutes: 90)"));
    assert_non_null(strstr(res.reason, "the job was cancelled"));
    assert_non_null(strstr(res.reason, "logs: "));
    /* The limits each job got: none for the components' build phases, 10 minutes for the
     * inventory and the cleanup, what was left of the 90 minutes for the test. */
    assert_int_equal(json_array_size(fk.jobs), 5);
    assert_int_equal(job_timeout(0), -1);
    assert_int_equal(job_timeout(1), -1);
    assert_int_equal(job_timeout(2), 600);
    assert_int_equal(job_timeout(3), 600);
    assert_true(job_timeout(4) > 90 * 60 - 5 && job_timeout(4) <= 90 * 60);
    assert_int_equal(fk.launches, 2);
    assert_released(f, &res);
    struct kiln_image_record *rec = record(f, &res);
    assert_int_equal(rec->status, KILN_IMAGE_FAILED);
    assert_string_equal(rec->reason, res.reason);
    assert_int_equal(rec->n_outputs, 0);
    kiln_image_record_free(rec);
    kiln_build_result_clear(&res);
}

static void
test_test_timeout_seconds(void **state)
{
    struct fx *f = *state;
    /* The finer limit for tests wins over the minutes, and the reason names it. */
    fk_fail("hang", 5, 0, NULL);
    f->opts.test_timeout_minutes = 60;
    f->opts.test_timeout_seconds = 20;
    struct kiln_build_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_build_run(&f->opts, &res, &err), -ETIMEDOUT);
    assert_int_equal(res.status, KILN_IMAGE_FAILED);
    assert_non_null(strstr(res.reason, "test of component 1 (hello,"));
    assert_non_null(strstr(res.reason, "timed out in test/Hang after "));
    assert_non_null(strstr(res.reason, "(the test stage's limit, test_timeout_seconds: 20)"));
    assert_true(job_timeout(4) > 15 && job_timeout(4) <= 20);
    assert_released(f, &res);
    kiln_build_result_clear(&res);
}

static void
test_inventory_timeout_not_fatal(void **state)
{
    struct fx *f = *state;
    /* The inventory (third job) hangs: its 600 s run out, and the build goes on without a
     * package list; the manifest says why. */
    fk_fail("hang", 3, 0, "ListInstalledPackages");
    struct kiln_build_result res;
    struct kiln_error err = {0};
    int r = kiln_build_run(&f->opts, &res, &err);
    if (r < 0)
        fail_msg("%s", err.message);
    assert_int_equal(res.status, KILN_IMAGE_AVAILABLE);
    json_t *m = NULL;
    assert_int_equal(kiln_json_load_file(res.manifest_path, 1 << 20, &m, NULL), 0);
    _cleanup_free_ char *text = kiln_json_dumps(m, false);
    json_decref(m);
    assert_non_null(strstr(text, "timed out in build/ListInstalledPackages after 10 minutes "
                                 "(Kiln's limit for this job)"));
    assert_released(f, &res);
    kiln_build_result_clear(&res);
}

static void
test_cleanup_timeout(void **state)
{
    struct fx *f = *state;
    /* The Linux cleanup (fourth job) hangs: its 600 s run out and the build fails, naming it;
     * no image is made from a half-cleaned disk. */
    fk_fail("hang", 4, 0, "LinuxCleanup");
    struct kiln_build_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_build_run(&f->opts, &res, &err), -ETIMEDOUT);
    fprintf(stderr, "%s\n", res.reason);
    assert_int_equal(res.status, KILN_IMAGE_FAILED);
    assert_non_null(strstr(res.reason, "the Linux cleanup (kiln-linux-cleanup)"));
    assert_non_null(strstr(res.reason, "timed out in build/LinuxCleanup after 10 minutes"));
    assert_int_equal(fk.launches, 1);
    assert_released(f, &res);
    kiln_build_result_clear(&res);
}

static void
test_terminate_failure(void **state)
{
    struct fx *f = *state;
    /* Terminating the build instance fails after the snapshot: the image is good, so the build
     * goes on; the driver still released the instance (terminate never leaks). */
    fk_fail("terminate", 1, -KILN_E_REMOTE, "virDomainDestroy: timed out");
    struct kiln_build_result res;
    struct kiln_error err = {0};
    int r = kiln_build_run(&f->opts, &res, &err);
    if (r < 0)
        fail_msg("%s", err.message);
    assert_int_equal(res.status, KILN_IMAGE_AVAILABLE);
    assert_int_equal(fk.launches, 2);
    assert_released(f, &res);
    kiln_build_result_clear(&res);
}

static void
test_distribution_failure(void **state)
{
    struct fx *f = *state;
    /* qemu-img fails: FAILED, no output recorded, no partial file left. */
    f->opts.qemu_img = "false";
    struct kiln_build_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_build_run(&f->opts, &res, &err), -KILN_E_FAILED);
    assert_int_equal(res.status, KILN_IMAGE_FAILED);
    assert_non_null(strstr(res.reason, "qemu-img convert to qcow2 failed"));
    assert_released(f, &res);
    struct kiln_image_record *rec = record(f, &res);
    assert_int_equal(rec->n_outputs, 0);
    kiln_image_record_free(rec);
    DIR *d = opendir(f->out);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)))
        assert_true(de->d_name[0] == '.');
    closedir(d);
    kiln_build_result_clear(&res);

    /* The target folder cannot be made: the reason names the distribution. */
    fk_reset();
    f->opts.qemu_img = NULL;
    char *dist =
        kiln_asprintf("distributions:\n  - local:\n      directory: %s/parent.qcow2/x\n", f->root);
    put(f, "dist.yml", dist);
    free(dist);
    kiln_error_clear(&err);
    assert_true(kiln_build_run(&f->opts, &res, &err) < 0);
    assert_int_equal(res.status, KILN_IMAGE_FAILED);
    assert_non_null(strstr(res.reason, "distribution 1: "));
    assert_released(f, &res);
    kiln_build_result_clear(&res);
}

static size_t
count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The layer cache: a first build keeps each component's result; the same recipe again boots
 * from the last layer and runs no component; a changed parameter of the second component
 * resumes after the first. */
static void
test_layer_cache(void **state)
{
    struct fx *f = *state;
    f->opts.layer_cache = true;
    char *layers = kiln_path_join(f->home, "cache/layers");
    struct kiln_build_result res;
    struct kiln_error err = {0};
    if (kiln_build_run(&f->opts, &res, &err) < 0)
        fail_msg("%s", err.message);
    /* build instance, a fresh one after each of the 2 components, the test instance */
    assert_int_equal(fk.launches, 4);
    assert_int_equal(count_files(layers), 2);
    assert_released(f, &res);
    json_t *m = NULL;
    assert_int_equal(kiln_json_load_file(res.manifest_path, 1 << 20, &m, NULL), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(m, "layerCache"), "reused")), 0);
    json_decref(m);
    kiln_build_result_clear(&res);

    fk_reset();
    if (kiln_build_run(&f->opts, &res, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(fk.launches, 2);              /* from the last layer, then the test instance */
    assert_int_equal(json_array_size(fk.jobs), 3); /* inventory, cleanup, test */
    json_t *j0 = json_array_get(fk.jobs, 0);
    assert_non_null(strstr(json_string_value(json_array_get(json_object_get(j0, "documents"), 0)),
                           "kiln-inventory.yml"));
    assert_non_null(strstr(kiln_json_get_str(j0, "instance"), "/cache/layers/"));
    assert_int_equal(kiln_json_load_file(res.manifest_path, 1 << 20, &m, NULL), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(m, "layerCache"), "reused")), 2);
    json_decref(m);
    assert_released(f, &res);
    kiln_build_result_clear(&res);

    /* The second component gets a parameter: its layer (and only its) is rebuilt. */
    put(f, "recipe.yml",
        "name: hello-world\nsemanticVersion: 1.2.3\nparentImage: parent.qcow2\ncomponents:\n"
        "  - path: components/hello.yml\n    parameters:\n      - name: greeting\n"
        "        value: [bonjour]\n  - path: components/second.yml\n    parameters:\n"
        "      - name: extra\n        value: [x]\n");
    put(f, "components/second.yml",
        "name: second\nschemaVersion: 1.0\nparameters:\n  - extra:\n      type: string\n"
        "      default: none\nphases:\n  - name: build\n    steps:\n      - name: Two\n"
        "        action: ExecuteBash\n        inputs:\n          commands: [\"echo two\"]\n");
    fk_reset();
    if (kiln_build_run(&f->opts, &res, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(fk.launches, 3); /* layer 1, a fresh one after component 2, test */
    assert_int_equal(json_array_size(fk.jobs), 4);
    j0 = json_array_get(fk.jobs, 0);
    assert_non_null(strstr(json_string_value(json_array_get(json_object_get(j0, "documents"), 0)),
                           "second.yml"));
    assert_int_equal(count_files(layers), 3);
    assert_released(f, &res);
    kiln_build_result_clear(&res);
    free(layers);
}

/* A compressed qcow2 output has zstd clusters (qcow2 v3 header: the compression type
 * incompatible feature, bit 3 at offset 72, and the compression type byte at offset 104, 1 for
 * zstd), not qemu-img's default zlib. */
static void
test_compressed_output(void **state)
{
    struct fx *f = *state;
    char *dist = kiln_asprintf("distributions:\n  - local:\n      directory: %s\n"
                               "      formats: [qcow2]\n      compress: true\n",
                               f->out);
    put(f, "dist.yml", dist);
    free(dist);
    f->opts.skip_tests = true;
    struct kiln_build_result res;
    struct kiln_error err = {0};
    if (kiln_build_run(&f->opts, &res, &err) < 0)
        fail_msg("%s", err.message);
    struct kiln_image_record *rec = record(f, &res);
    assert_int_equal(rec->n_outputs, 1);
    unsigned char h[112];
    int fd = open(rec->outputs[0].path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, h, sizeof(h)), sizeof(h));
    close(fd);
    assert_memory_equal(h, "QFI\xfb", 4);
    assert_int_equal(h[7], 3); /* version 3 */
    assert_true(h[79] & 0x08); /* incompatible features (big endian): compression type */
    unsigned hlen = (unsigned)h[100] << 24 | (unsigned)h[101] << 16 | (unsigned)h[102] << 8 |
                    h[103];
    assert_true(hlen > 104);
    assert_int_equal(h[104], 1);
    kiln_image_record_free(rec);
    assert_released(f, &res);
    kiln_build_result_clear(&res);
}

static void
test_tests_disabled(void **state)
{
    struct fx *f = *state;
    f->opts.skip_tests = true;
    fk_fail("job", 5, -KILN_E_FAILED, "would fail, but the test stage does not run");
    struct kiln_build_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_build_run(&f->opts, &res, &err), 0);
    assert_int_equal(fk.launches, 1);
    assert_int_equal(json_array_size(fk.jobs), 4);
    assert_false(stage_seen(f, "test"));
    assert_released(f, &res);
    kiln_build_result_clear(&res);
}

static void
test_cancel(void **state)
{
    struct fx *f = *state;
    fk.cancel_on_run = true;
    struct kiln_build_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_build_run(&f->opts, &res, &err), -ECANCELED);
    assert_int_equal(res.status, KILN_IMAGE_CANCELLED);
    assert_non_null(strstr(res.reason, "cancelled"));
    assert_released(f, &res);
    struct kiln_image_record *rec = record(f, &res);
    assert_int_equal(rec->status, KILN_IMAGE_CANCELLED);
    kiln_image_record_free(rec);
    kiln_build_result_clear(&res);

    /* A cancel request before the build starts its first instance launches nothing. */
    fk_reset();
    f->cancel = 1;
    assert_int_equal(kiln_build_run(&f->opts, &res, &err), -ECANCELED);
    assert_int_equal(res.status, KILN_IMAGE_CANCELLED);
    assert_int_equal(fk.launches, 0);
    assert_released(f, &res);
    kiln_build_result_clear(&res);
}

static void
test_keep_instance_on_failure(void **state)
{
    struct fx *f = *state;
    put(f, "infra.yml", "driver: fake\nterminateInstanceOnFailure: false\n");
    fk_fail("job", 1, -KILN_E_FAILED, "step Say in phase build: exit status 3");
    struct kiln_build_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_build_run(&f->opts, &res, &err), -KILN_E_FAILED);
    assert_int_equal(res.status, KILN_IMAGE_FAILED);
    assert_non_null(res.kept_instance);
    assert_non_null(strstr(res.kept_instance, "fake instance"));
    /* The guest stays (still live when the build let go of the driver), recorded as kept, and
     * its work folder stays for it; a plain reap leaves it, reap --kept removes it. */
    assert_int_equal(fk.live_at_close, 1);
    struct kiln_resource_record *list = NULL;
    size_t n = 0;
    assert_int_equal(kiln_store_resource_list(f->store, NULL, &list, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_true(list[0].kept);
    kiln_resource_record_list_free(list, n);
    char *work = kiln_asprintf("%s/builds/%s", f->home, res.build_id);
    assert_int_equal(access(work, F_OK), 0);
    free(work);
    assert_int_equal(kiln_build_reap(f->store, fk_find, false, NULL, NULL, &err), 0);
    assert_int_equal(kiln_store_resource_list(f->store, NULL, &list, &n, NULL), 0);
    assert_int_equal(n, 1);
    kiln_resource_record_list_free(list, n);
    assert_int_equal(kiln_build_reap(f->store, fk_find, true, NULL, NULL, &err), 1);
    assert_int_equal(fk.reaps, 1);
    fk.live_at_close = 0; /* the kept guest was reaped */
    assert_released(f, &res);
    kiln_build_result_clear(&res);
}

static void
test_invalid_documents_start_nothing(void **state)
{
    struct fx *f = *state;
    put(f, "components/second.yml",
        "name: second\nschemaVersion: 2.0\nphases:\n  - name: deploy\n    steps:\n"
        "      - name: A\n        onFailure: Explode\n");
    put(f, "recipe.yml",
        "name: hello-world\nsemanticVersion: 1.2.3\nparentImage: missing.qcow2\ncomponents:\n"
        "  - path: components/hello.yml\n  - path: components/second.yml\n"
        "  - path: components/gone.yml\n");
    struct kiln_build_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_build_run(&f->opts, &res, &err), -KILN_E_INVALID);
    assert_int_equal(res.status, KILN_IMAGE_PENDING);
    assert_int_equal(fk.closes, 0); /* the driver was never even opened */
    /* Every problem, each at its place. */
    const char *expected[] = {"recipe.yml:7:5: component 3: path 'components/gone.yml'",
                              "second.yml:2:16: schemaVersion: unsupported schema version '2.0'",
                              "second.yml:4:3: phases: must contain at least one of the phases",
                              "second.yml:6:9: phases[0].steps[0]: missing required key 'action'",
                              "second.yml:7:20: phases[0].steps[0].onFailure: must be one of",
                              "recipe.yml:3:14: parentImage 'missing.qcow2': ",
                              NULL};
    for (size_t i = 0; expected[i]; i++)
        if (!strstr(err.message, expected[i]))
            fail_msg("missing \"%s\" in:\n%s", expected[i], err.message);
    struct kiln_image_record **list = NULL;
    size_t n = 0;
    assert_int_equal(kiln_store_image_list(f->store, &list, &n, NULL), 0);
    assert_int_equal(n, 0); /* no image record for a build that never started */
    kiln_image_record_list_free(list, n);
    /* kiln_build_validate reports the same. */
    kiln_error_clear(&err);
    assert_int_equal(kiln_build_validate(&f->opts, &err), -KILN_E_INVALID);
    assert_non_null(strstr(err.message, "(got 'Explode')"));
    kiln_build_result_clear(&res);
}

static void
test_unknown_driver(void **state)
{
    struct fx *f = *state;
    put(f, "infra.yml", "driver: ec2\n");
    struct kiln_build_result res;
    struct kiln_error err = {0};
    /* Found by validation, with everything else, before any record or launch. */
    assert_int_equal(kiln_build_run(&f->opts, &res, &err), -KILN_E_INVALID);
    assert_non_null(strstr(err.message, "infra.yml: driver 'ec2' is not available"));
    assert_int_equal(fk.closes, 0);
    assert_int_equal(res.status, KILN_IMAGE_PENDING);
    kiln_build_result_clear(&res);
    kiln_error_clear(&err);
    assert_int_equal(kiln_build_validate(&f->opts, &err), -KILN_E_INVALID);
    assert_non_null(strstr(err.message, "driver 'ec2' is not available"));
}

static void
test_crash_and_reap(void **state)
{
    struct fx *f = *state;
    f->opts.find_driver = dbl_find; /* resources that outlive the crashed process */
    dbl.crash_on_run = true;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The child opens its own store connection, as a separate kiln would. */
        struct kiln_store *s = NULL;
        if (kiln_store_open(f->home, &s, NULL) < 0)
            _exit(2);
        f->opts.store = s;
        struct kiln_build_result res;
        kiln_build_run(&f->opts, &res, NULL);
        _exit(0); /* not reached: the double exits mid-step */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 9);
    dbl.crash_on_run = false;

    /* The crash left a BUILDING record, a recorded resource and a live instance. */
    struct kiln_image_record **list = NULL;
    size_t n = 0;
    assert_int_equal(kiln_store_image_list(f->store, &list, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(list[0]->status, KILN_IMAGE_BUILDING);
    char *build_id = kiln_strdup(list[0]->build_id);
    char *work = kiln_strdup(list[0]->work_dir);
    kiln_image_record_list_free(list, n);
    assert_int_equal(dbl_live(), 1);
    struct kiln_resource_record *res = NULL;
    assert_int_equal(kiln_store_resource_list(f->store, NULL, &res, &n, NULL), 0);
    assert_int_equal(n, 1);
    kiln_resource_record_list_free(res, n);
    assert_false(kiln_store_build_is_running(f->store, build_id));

    /* A running build is never reaped: hold its lock and try. */
    int fd = -1;
    struct kiln_error err = {0};
    assert_int_equal(kiln_store_build_lock(f->store, build_id, &fd, &err), 0);
    assert_int_equal(kiln_build_reap(f->store, dbl_find, false, NULL, NULL, &err), 0);
    assert_int_equal(dbl_live(), 1);
    kiln_store_build_unlock(f->store, build_id, fd);

    assert_int_equal(kiln_build_reap(f->store, dbl_find, false, NULL, NULL, &err), 1);
    assert_int_equal(dbl_live(), 0);
    assert_int_equal(kiln_store_resource_list(f->store, NULL, &res, &n, NULL), 0);
    assert_int_equal(n, 0);
    kiln_resource_record_list_free(res, n);
    struct kiln_image_record *rec = NULL;
    assert_int_equal(kiln_store_image_get_by_build_id(f->store, build_id, &rec, NULL), 0);
    assert_int_equal(rec->status, KILN_IMAGE_FAILED);
    assert_non_null(strstr(rec->reason, "crashed or was killed"));
    kiln_image_record_free(rec);
    struct stat st;
    assert_int_equal(stat(work, &st), -1);
    /* Reaping again finds nothing. */
    assert_int_equal(kiln_build_reap(f->store, dbl_find, false, NULL, NULL, &err), 0);
    free(build_id);
    free(work);
}

static void
test_cleanup_document(void **state)
{
    /* The cleanup document is itself a valid component with Image Builder's skip flags. */
    const char *doc = kiln_build_cleanup_document();
    const char *flags[] = {"skip_cleanup_cloudinit_files", "skip_cleanup_ssm_log_files",
                           "skip_cleanup_ssh_files",       "skip_cleanup_instance_log_files",
                           "skip_cleanup_toe_files",       NULL};
    for (size_t i = 0; flags[i]; i++)
        assert_non_null(strstr(doc, flags[i]));
    assert_non_null(strstr(doc, "/etc/ssh/ssh_host_ed25519_key"));
    char *dir = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-cleanup", &dir, NULL), 0);
    char *path = kiln_path_join(dir, "cleanup.yml");
    assert_int_equal(kiln_write_file_atomic(path, doc, strlen(doc), 0644, NULL), 0);
    char *inv = kiln_path_join(dir, "inventory.yml");
    const char *inventory = kiln_build_inventory_document();
    assert_int_equal(kiln_write_file_atomic(inv, inventory, strlen(inventory), 0644, NULL), 0);
    char *bk = kiln_path_join(dir, "boot-kernel.yml");
    const char *boot_kernel = kiln_build_boot_kernel_document();
    assert_int_equal(kiln_write_file_atomic(bk, boot_kernel, strlen(boot_kernel), 0644, NULL), 0);
    char *paths[] = {path, inv, bk, NULL};
    struct kiln_error err = {0};
    if (kiln_documents_validate(paths, NULL, &err) < 0)
        fail_msg("%s", err.message);
    free(bk);
    free(inv);
    free(path);
    kiln_rm_rf(dir, NULL);
    free(dir);
}

/* The example recipes in examples/recipes/ validate: recipe, infrastructure, distribution,
 * pipeline and component documents. Parent images come from the image catalog; here a resolver
 * that knows the catalog's two names stands in for it. */
static int
catalog_names(void *userdata, const struct kiln_recipe *recipe, struct kiln_image_ref *ret,
              struct kiln_error *err)
{
    if (strcmp(recipe->parent_image, "tiny") != 0 && strcmp(recipe->parent_image, "debian-12"))
        return kiln_error_set(err, -ENOENT, "unknown parent %s", recipe->parent_image);
    ret->kind = kiln_strdup("qcow2");
    ret->location = kiln_asprintf("/catalog/%s.qcow2", recipe->parent_image);
    return 0;
}

static void
test_examples_validate(void **state)
{
    const char *recipes[] = {"hello-world-tiny.yml", "hello-world-debian-12.yml", NULL};
    for (size_t i = 0; recipes[i]; i++) {
        char *recipe = kiln_asprintf("%s/examples/recipes/%s", kiln_test_source_dir(), recipes[i]);
        char *infra =
            kiln_asprintf("%s/examples/recipes/local-infrastructure.yml", kiln_test_source_dir());
        char *dist =
            kiln_asprintf("%s/examples/recipes/local-distribution.yml", kiln_test_source_dir());
        struct kiln_build_options opts = {
            .recipe_path = recipe,
            .infrastructure_path = infra,
            .distribution_path = dist,
            .home = "/nonexistent-kiln-home",
            .resolve_parent = catalog_names,
        };
        struct kiln_error err = {0};
        if (kiln_build_validate(&opts, &err) < 0)
            fail_msg("%s: %s", recipes[i], err.message);
        free(recipe);
        free(infra);
        free(dist);
    }
    char *pipeline = kiln_asprintf("%s/examples/recipes/pipeline.yml", kiln_test_source_dir());
    struct kiln_pipeline *p = NULL;
    struct kiln_error err = {0};
    if (kiln_pipeline_load(pipeline, &p, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(access(p->recipe_path, R_OK), 0);
    assert_int_equal(access(p->infrastructure_path, R_OK), 0);
    kiln_pipeline_free(p);
    free(pipeline);
}

/* Run one of Kiln's own documents (text, with parameters) with the real component engine on
 * this host, in a fresh folder (*ret_dir, removed by the caller); *ret_logs is its log
 * directory, as the manifest reads it. Returns the run's status. */
static enum kiln_run_status
run_doc_on_host(const char *text, json_t *parameters, char **ret_dir, char **ret_logs)
{
    char *dir = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-doc", &dir, NULL), 0);
    _cleanup_free_ char *doc = kiln_path_join(dir, "document.yml");
    assert_int_equal(kiln_write_file_atomic(doc, text, strlen(text), 0644, NULL), 0);
    char *logs = kiln_path_join(dir, "logs");
    _cleanup_free_ char *state_dir = kiln_path_join(dir, "state");
    assert_int_equal(kiln_mkdir_p(logs, 0755, NULL), 0);
    char *docs[] = {doc, NULL};
    struct kiln_run_options ro = {.documents = docs, .parameters = parameters,
                                  .log_directory = logs, .state_directory = state_dir};
    struct kiln_run_result rr = {0};
    struct kiln_error err = {0};
    if (kiln_engine_run(&ro, &rr, &err) < 0)
        fail_msg("%s", err.message);
    enum kiln_run_status st = rr.status;
    kiln_run_result_clear(&rr);
    *ret_dir = dir;
    *ret_logs = logs;
    return st;
}

static void
run_inventory_on_host(char **ret_dir, char **ret_logs)
{
    assert_int_equal(run_doc_on_host(kiln_build_inventory_document(), NULL, ret_dir, ret_logs),
                     KILN_RUN_SUCCESS);
}

/* Kiln's user-data document on this host: the script runs with its own interpreter line, and
 * its failure is the job's. */
static void
test_user_data_on_host(void **state)
{
    _cleanup_free_ char *out = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-user-data-out", &out, NULL), 0);
    char *scripts[] = {
        kiln_asprintf("#!/bin/sh\necho \"shell as $(id -u)\" >\"%s/sh\"\n", out),
        kiln_asprintf("#!/usr/bin/python3\nopen('%s/py', 'w').write('python')\n", out),
        kiln_strdup("#!/bin/sh\nexit 3\n"),
    };
    for (size_t i = 0; i < ARRAY_SIZE(scripts); i++) {
        _cleanup_free_ char *script = scripts[i];
        /* The recipe holds it base64-encoded, as EC2 takes it. */
        _cleanup_free_ char *file = kiln_asprintf("%s/script-%zu", out, i);
        assert_int_equal(kiln_write_file_atomic(file, script, strlen(script), 0644, NULL), 0);
        _cleanup_free_ char *cmd = kiln_asprintf("base64 -w0 %s", file);
        char *sh[] = {"sh", "-c", cmd, NULL};
        _cleanup_free_ char *b64 = NULL;
        assert_int_equal(kiln_command_run(sh, &b64, NULL), 0);
        _cleanup_json_ json_t *params = json_pack("{s:s}", "userData", b64);
        char *dir = NULL, *logs = NULL;
        enum kiln_run_status st =
            run_doc_on_host(kiln_build_user_data_document(), params, &dir, &logs);
        assert_int_equal(st, i < 2 ? KILN_RUN_SUCCESS : KILN_RUN_FAILED);
        kiln_rm_rf(dir, NULL);
        free(dir);
        free(logs);
    }
    _cleanup_free_ char *sh_out = NULL, *py_out = NULL;
    _cleanup_free_ char *sh_path = kiln_path_join(out, "sh"), *py_path = kiln_path_join(out, "py");
    assert_int_equal(kiln_read_file(sh_path, 4096, &sh_out, NULL, NULL), 0);
    assert_string_equal(sh_out, "shell as 0\n");
    assert_int_equal(kiln_read_file(py_path, 4096, &py_out, NULL, NULL), 0);
    assert_string_equal(py_out, "python");
    /* The script itself does not stay behind. */
    char *ls[] = {"sh", "-c", "ls /run | grep -c kiln-user-data || true", NULL};
    _cleanup_free_ char *left = NULL;
    assert_int_equal(kiln_command_run(ls, &left, NULL), 0);
    assert_string_equal(left, "0\n");
    kiln_rm_rf(out, NULL);
}

/* The inventory document run by the real component engine on this host, and its output read
 * back as the manifest reads it: the host's own package manager, or none. */
static void
test_inventory_on_host(void **state)
{
    char *dir = NULL, *logs = NULL;
    run_inventory_on_host(&dir, &logs);
    json_t *pkgs = NULL;
    char *source = NULL, *note = NULL;
    assert_int_equal(kiln_inventory_read(logs, &pkgs, &source, &note), 0);
    if (system_has_dpkg()) {
        assert_string_equal(source, "dpkg");
        bool bash = false;
        size_t i;
        json_t *p;
        json_array_foreach(pkgs, i, p)
        {
            bash |= kiln_streq(kiln_json_get_str(p, "name"), "bash");
            assert_non_null(kiln_json_get_str(p, "version"));
        }
        assert_true(bash);
        /* Exactly the installed packages: not those removed with their configuration kept. */
        char *argv[] = {"sh", "-c",
                        "dpkg-query -W -f='${db:Status-Status}\\n' | grep -cx installed", NULL};
        char *count = NULL;
        assert_int_equal(kiln_command_run(argv, &count, NULL), 0);
        assert_int_equal(json_array_size(pkgs), strtoul(count, NULL, 10));
        free(count);
    } else {
        assert_non_null(source);
    }
    json_decref(pkgs);
    free(source);
    free(note);
    free(logs);
    kiln_rm_rf(dir, NULL);
    free(dir);
}

/* ---- the kernel the image boots ---- */

static const char *report_same = "kiln-boot-kernel 1\nrunning 6.1.0-56-cloud-amd64\nmodules yes\n"
                                 "loader grub\npath /boot/vmlinuz-6.1.0-56-cloud-amd64\n"
                                 "version 6.1.0-56-cloud-amd64\n";
static const char *report_new = "kiln-boot-kernel 1\nrunning 6.1.0-56-cloud-amd64\nmodules no\n"
                                "loader grub\npath /boot/vmlinuz-6.1.0-57-amd64\n"
                                "version 6.1.0-57-amd64\n";

/* The report's parser and the decision, on the cases a guest can produce. */
static void
test_boot_kernel_decision(void **state)
{
    (void)state;
    struct kiln_boot_kernel k;
    char *note = NULL;
    assert_int_equal(kiln_boot_kernel_parse(report_same, &k), 0);
    assert_string_equal(k.running, "6.1.0-56-cloud-amd64");
    assert_true(k.running_modules);
    assert_string_equal(k.loader, "grub");
    assert_string_equal(k.path, "/boot/vmlinuz-6.1.0-56-cloud-amd64");
    assert_true(kiln_boot_kernel_keeps_direct(&k, &note));
    assert_null(note);
    kiln_boot_kernel_clear(&k);

    /* Another kernel behind GRUB, the old one's modules removed: boot through the firmware. */
    assert_int_equal(kiln_boot_kernel_parse(report_new, &k), 0);
    assert_false(k.running_modules);
    assert_false(kiln_boot_kernel_keeps_direct(&k, &note));
    assert_non_null(strstr(note, "starts kernel 6.1.0-57-amd64 (/boot/vmlinuz-6.1.0-57-amd64)"));
    assert_non_null(strstr(note, "6.1.0-56-cloud-amd64, whose modules are gone"));
    free(note);
    kiln_boot_kernel_clear(&k);

    /* Another kernel but no boot loader to start it: direct boot is all there is. */
    assert_int_equal(kiln_boot_kernel_parse("kiln-boot-kernel 1\nrunning 6.1.0-1\nmodules yes\n"
                                            "path /boot/vmlinuz-6.1.0-2\nversion 6.1.0-2\n",
                                            &k),
                     0);
    assert_null(k.loader);
    assert_true(kiln_boot_kernel_keeps_direct(&k, &note));
    assert_non_null(strstr(note, "no boot loader"));
    free(note);
    kiln_boot_kernel_clear(&k);

    /* No kernel in the image (the tiny image): the parent's kernel it is. */
    assert_int_equal(
        kiln_boot_kernel_parse("kiln-boot-kernel 1\nrunning 6.1.0-1\nmodules no\n", &k), 0);
    assert_null(k.version);
    assert_true(kiln_boot_kernel_keeps_direct(&k, NULL));
    kiln_boot_kernel_clear(&k);

    /* No report: today's behaviour, said in the note. */
    assert_true(kiln_boot_kernel_keeps_direct(NULL, &note));
    assert_non_null(strstr(note, "no kernel report"));
    free(note);

    assert_int_equal(kiln_boot_kernel_parse("kiln-inventory dpkg\nbash\t5\tamd64\n", &k),
                     -KILN_E_PARSE);
    assert_int_equal(kiln_boot_kernel_parse("kiln-boot-kernel 1\nmodules yes\n", &k),
                     -KILN_E_PARSE);
    assert_int_equal(kiln_boot_kernel_parse("", &k), -KILN_E_PARSE);
}

/* A parent image from the catalog that boots its kernel directly, as debian-12 does. */
static void
direct_kernel_parent(struct fx *f)
{
    put(f, "home/images/debian-12/d1/disk.qcow2", "disk");
    put(f, "home/images/debian-12/d1/vmlinux", "kernel");
    put(f, "home/images/debian-12/d1/initrd.img", "initrd");
    put(f, "home/images/debian-12/d1/image.json",
        "{\"name\": \"debian-12\", \"format\": \"qcow2\", \"disk\": \"disk.qcow2\", "
        "\"kernel\": \"vmlinux\", \"initrd\": \"initrd.img\", \"cmdline\": \"root=LABEL=r\", "
        "\"kernelVersion\": \"6.1.0-56-cloud-amd64\"}");
    char *link = kiln_path_join(f->home, "images/debian-12/current");
    assert_int_equal(symlink("d1", link), 0);
    free(link);
    put(f, "recipe.yml",
        "name: hello-world\nsemanticVersion: 1.2.3\nparentImage: debian-12\ncomponents:\n"
        "  - path: components/hello.yml\n  - path: components/second.yml\n");
}

static json_t *
build_manifest_boot(struct fx *f, struct kiln_build_result *res)
{
    struct kiln_error err = {0};
    if (kiln_build_run(&f->opts, res, &err) < 0)
        fail_msg("%s", err.message);
    json_t *m = NULL;
    assert_int_equal(kiln_json_load_file(res->manifest_path, 1 << 20, &m, NULL), 0);
    json_t *boot = json_incref(json_object_get(m, "boot"));
    assert_non_null(boot);
    /* The kernel report after the package list is not taken for packages. */
    assert_int_equal(json_array_size(json_object_get(m, "installedPackages")), 2);
    json_decref(m);
    assert_released(f, res);
    return boot;
}

/* The kernel did not change: the test instance boots the parent's kernel directly, as today, and
 * the check costs no job of its own (the inventory prints it). */
static void
test_boot_kernel_unchanged(void **state)
{
    struct fx *f = *state;
    direct_kernel_parent(f);
    fk.kernel_report = report_same;
    struct kiln_build_result res;
    json_t *boot = build_manifest_boot(f, &res);
    bool found;
    const char *kernel = launched_kernel("-test", &found);
    assert_true(found);
    assert_non_null(kernel);
    assert_non_null(strstr(kernel, "images/debian-12/d1/vmlinux"));
    assert_string_equal(kiln_json_get_str(boot, "mode"), "direct");
    assert_string_equal(kiln_json_get_str(boot, "kernelVersion"), "6.1.0-56-cloud-amd64");
    assert_null(kiln_json_get_str(boot, "note"));
    assert_int_equal(json_array_size(fk.jobs), 5); /* 2 components, inventory, cleanup, test */
    json_decref(boot);
    kiln_build_result_clear(&res);
}

/* A component gave the image another kernel: the test instance boots the image's own boot
 * loader (no kernel in its reference), and the manifest says so and why. */
static void
test_boot_kernel_changed(void **state)
{
    struct fx *f = *state;
    direct_kernel_parent(f);
    fk.kernel_report = report_new;
    struct kiln_build_result res;
    json_t *boot = build_manifest_boot(f, &res);
    bool found;
    assert_non_null(launched_kernel("-build", &found));
    assert_null(launched_kernel("-test", &found));
    assert_true(found);
    assert_string_equal(kiln_json_get_str(boot, "mode"), "firmware");
    assert_null(kiln_json_get_str(boot, "kernel"));
    assert_string_equal(kiln_json_get_str(boot, "kernelVersion"), "6.1.0-57-amd64");
    assert_string_equal(kiln_json_get_str(boot, "parentKernelVersion"), "6.1.0-56-cloud-amd64");
    assert_string_equal(kiln_json_get_str(boot, "bootLoaderKernel"),
                        "/boot/vmlinuz-6.1.0-57-amd64");
    assert_non_null(strstr(kiln_json_get_str(boot, "note"), "whose modules are gone"));
    json_decref(boot);
    kiln_build_result_clear(&res);
}

/* With the layer cache, the layer after the component that changed the kernel boots through
 * the firmware too, in this build and in the next one that reuses it. */
static void
test_boot_kernel_layer_cache(void **state)
{
    struct fx *f = *state;
    direct_kernel_parent(f);
    f->opts.layer_cache = true;
    fk.kernel_report = report_new;
    struct kiln_build_result res;
    json_t *boot = build_manifest_boot(f, &res);
    bool found;
    assert_non_null(launched_kernel("-build", &found));
    assert_null(launched_kernel("-layer-1", &found));
    assert_true(found);
    assert_null(launched_kernel("-layer-2", &found));
    assert_true(found);
    assert_null(launched_kernel("-test", &found));
    assert_true(found);
    assert_string_equal(kiln_json_get_str(boot, "mode"), "firmware");
    /* One kernel report, on the build instance (layer 2 already boots through its firmware). */
    size_t reports = 0, i;
    json_t *j;
    json_array_foreach(fk.jobs, i, j) reports +=
        strstr(json_string_value(json_array_get(json_object_get(j, "documents"), 0)),
               "kiln-boot-kernel.yml") != NULL;
    assert_int_equal(reports, 1);
    json_decref(boot);
    kiln_build_result_clear(&res);

    /* The rebuild starts from layer 2, through its firmware. */
    fk_reset();
    fk.kernel_report = report_new;
    boot = build_manifest_boot(f, &res);
    assert_int_equal(fk.launches, 2);
    assert_null(launched_kernel("-build", &found));
    assert_true(found);
    assert_null(launched_kernel("-test", &found));
    assert_true(found);
    assert_string_equal(kiln_json_get_str(boot, "mode"), "firmware");
    assert_non_null(strstr(kiln_json_get_str(boot, "note"), "cached layer"));
    json_decref(boot);
    kiln_build_result_clear(&res);

    /* Unchanged kernel: the layers boot the parent's kernel directly. */
    char *layers = kiln_path_join(f->home, "cache/layers");
    kiln_rm_rf(layers, NULL);
    free(layers);
    fk_reset();
    fk.kernel_report = report_same;
    boot = build_manifest_boot(f, &res);
    assert_non_null(launched_kernel("-layer-1", &found));
    assert_non_null(launched_kernel("-layer-2", &found));
    assert_non_null(launched_kernel("-test", &found));
    assert_string_equal(kiln_json_get_str(boot, "mode"), "direct");
    json_decref(boot);
    kiln_build_result_clear(&res);
}

/* The report run by the real component engine on this host (at the end of the inventory's
 * ListInstalledPackages step): the running kernel is uname's, and a kernel found in /boot has the
 * version its bzImage header gives, which Debian also writes in the file name. */
static void
test_boot_kernel_on_host(void **state)
{
    (void)state;
    char *dir = NULL, *logs = NULL;
    run_inventory_on_host(&dir, &logs);
    struct kiln_boot_kernel k;
    assert_int_equal(kiln_boot_kernel_read(logs, &k), 0);
    struct utsname u;
    assert_int_equal(uname(&u), 0);
    assert_string_equal(k.running, u.release);
    char *mods = kiln_asprintf("/lib/modules/%s", u.release);
    assert_int_equal(k.running_modules, access(mods, F_OK) == 0);
    free(mods);
    if (k.path && strstr(k.path, "/vmlinuz-") && access("/boot/grub/grub.cfg", F_OK) != 0) {
        assert_non_null(k.version);
        assert_string_equal(k.version, strstr(k.path, "/vmlinuz-") + 9);
    }
    kiln_boot_kernel_clear(&k);
    /* ... and the package list before it ends where the report begins. */
    json_t *pkgs = NULL;
    char *source = NULL, *note = NULL;
    assert_int_equal(kiln_inventory_read(logs, &pkgs, &source, &note), 0);
    size_t i;
    json_t *p;
    json_array_foreach(pkgs, i, p)
    {
        const char *name = kiln_json_get_str(p, "name");
        assert_true(strncmp(name, "kiln-boot-kernel", 16) != 0 && strncmp(name, "running ", 8));
    }
    json_decref(pkgs);
    free(source);
    free(note);
    free(logs);
    kiln_rm_rf(dir, NULL);
    free(dir);
}

KILN_TEST_MAIN(cmocka_unit_test(test_examples_validate),
               cmocka_unit_test(test_boot_kernel_decision),
               cmocka_unit_test(test_boot_kernel_on_host),
               cmocka_unit_test_setup_teardown(test_boot_kernel_unchanged, setup, teardown),
               cmocka_unit_test_setup_teardown(test_boot_kernel_changed, setup, teardown),
               cmocka_unit_test_setup_teardown(test_boot_kernel_layer_cache, setup, teardown),
               cmocka_unit_test_setup_teardown(test_success, setup, teardown),
               cmocka_unit_test_setup_teardown(test_compressed_output, setup, teardown),
               cmocka_unit_test_setup_teardown(test_long_names, setup, teardown),
               cmocka_unit_test_setup_teardown(test_ec2_only_fields_warned, setup, teardown),
               cmocka_unit_test(test_user_data_on_host),
               cmocka_unit_test_setup_teardown(test_parent_from_catalog, setup, teardown),
               cmocka_unit_test_setup_teardown(test_failing_component, setup, teardown),
               cmocka_unit_test_setup_teardown(test_launch_failure, setup, teardown),
               cmocka_unit_test_setup_teardown(test_snapshot_failure, setup, teardown),
               cmocka_unit_test_setup_teardown(test_test_phase_failure, setup, teardown),
               cmocka_unit_test_setup_teardown(test_test_phase_timeout, setup, teardown),
               cmocka_unit_test_setup_teardown(test_test_timeout_seconds, setup, teardown),
               cmocka_unit_test_setup_teardown(test_inventory_timeout_not_fatal, setup, teardown),
               cmocka_unit_test_setup_teardown(test_cleanup_timeout, setup, teardown),
               cmocka_unit_test_setup_teardown(test_terminate_failure, setup, teardown),
               cmocka_unit_test_setup_teardown(test_distribution_failure, setup, teardown),
               cmocka_unit_test_setup_teardown(test_tests_disabled, setup, teardown),
               cmocka_unit_test_setup_teardown(test_layer_cache, setup, teardown),
               cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
               cmocka_unit_test_setup_teardown(test_keep_instance_on_failure, setup, teardown),
               cmocka_unit_test_setup_teardown(test_invalid_documents_start_nothing, setup,
                                               teardown),
               cmocka_unit_test_setup_teardown(test_unknown_driver, setup, teardown),
               cmocka_unit_test_setup_teardown(test_crash_and_reap, setup, teardown),
               cmocka_unit_test(test_cleanup_document), cmocka_unit_test(test_inventory_on_host))
