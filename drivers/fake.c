/* The fake driver: instances are records in memory; run "executes" each document by emitting
 * the events the real agent would; snapshot writes a small JSON file describing the image's
 * lineage (parent and documents run), so that layer-cache tests can tell images apart. Failures
 * are injected per operation; a job can be made to hang, and then ends as a real driver ends it
 * when the job's timeout_seconds runs out. Deterministic: no clocks, no randomness. */
#include <sys/stat.h>

#include "common/fs.h"
#include "common/json.h"
#include "drivers/fake.h"
#include "guest-agent/proto.h"

#define FAKE_OPS 8
static const char *const fake_ops[FAKE_OPS] = {"launch",    "run",  "stop", "snapshot",
                                               "terminate", "reap", "job",  "hang"};

struct fake_failure {
    unsigned countdown; /* fail when it reaches 1; 0 = none */
    int code;
    char *message;
};

struct fake_conn {
    char *build_id;
    const struct kiln_driver_config *cfg;
    void (*on_resource)(void *userdata, const char *kind, const char *id, bool live);
    void *userdata;
    struct kiln_instance *instances; /* live ones, including crashed ones */
    unsigned serial;
    unsigned calls[FAKE_OPS];
    struct fake_failure failures[FAKE_OPS];
};

struct kiln_instance {
    struct fake_conn *conn;
    struct kiln_instance *next;
    char *id;
    char *name;
    char *build_id;
    struct kiln_image_ref image;
    json_t *history; /* documents run so far, in order */
    bool running;
    bool crashed; /* forgotten by its build; only reap removes it */
};

static int
op_index(const char *op)
{
    for (int i = 0; i < FAKE_OPS; i++)
        if (kiln_streq(fake_ops[i], op))
            return i;
    return -1;
}

/* Count the call; returns the injected failure's code (negative) when this call must fail. */
static int
fake_call(struct fake_conn *c, const char *op, struct kiln_error *err)
{
    int i = op_index(op);
    c->calls[i]++;
    struct fake_failure *f = &c->failures[i];
    if (f->countdown == 0)
        return 0;
    if (--f->countdown > 0)
        return 0;
    return kiln_error_set(err, f->code, "fake %s: %s", op, f->message ? f->message : "injected");
}

void
kiln_fake_inject_failure(void *conn, const char *op, unsigned nth, int code, const char *message)
{
    struct fake_conn *c = conn;
    int i = op_index(op);
    if (!c || i < 0)
        return;
    free(c->failures[i].message);
    c->failures[i] = (struct fake_failure){
        .countdown = nth ? nth : 1,
        .code = code < 0 ? code : -KILN_E_FAILED,
        .message = message ? kiln_strdup(message) : NULL,
    };
}

unsigned
kiln_fake_live_instances(void *conn)
{
    struct fake_conn *c = conn;
    unsigned n = 0;
    for (struct kiln_instance *i = c ? c->instances : NULL; i; i = i->next)
        n++;
    return n;
}

unsigned
kiln_fake_calls(void *conn, const char *op)
{
    struct fake_conn *c = conn;
    int i = op_index(op);
    return c && i >= 0 ? c->calls[i] : 0;
}

static void
notify(struct fake_conn *c, const char *kind, const char *id, bool live)
{
    if (c->on_resource)
        c->on_resource(c->userdata, kind, id, live);
}

static void
instance_free(struct kiln_instance *inst)
{
    if (!inst)
        return;
    free(inst->id);
    free(inst->name);
    free(inst->build_id);
    kiln_image_ref_clear(&inst->image);
    json_decref(inst->history);
    free(inst);
}

/* Unlink from the connection's list and free. */
static void
instance_remove(struct kiln_instance *inst)
{
    struct fake_conn *c = inst->conn;
    for (struct kiln_instance **p = &c->instances; *p; p = &(*p)->next) {
        if (*p == inst) {
            *p = inst->next;
            break;
        }
    }
    notify(c, "fake-instance", inst->id, false);
    instance_free(inst);
}

static int
fake_open(const struct kiln_driver_config *cfg, unsigned flags, void **ret_conn,
          struct kiln_error *err)
{
    KILN_CHECK_FLAGS(flags, 0, err);
    struct fake_conn *c = kiln_new(struct fake_conn, 1);
    c->build_id = kiln_strdup(cfg && cfg->build_id ? cfg->build_id : "build");
    c->cfg = cfg;
    if (cfg) {
        c->on_resource = cfg->on_resource;
        c->userdata = cfg->userdata;
    }
    /* settings: {"fail": {"<op>": "message", ...}} fails the first call of each op named. */
    const json_t *fail = cfg && cfg->settings ? json_object_get(cfg->settings, "fail") : NULL;
    const char *op;
    json_t *msg;
    json_object_foreach((json_t *)fail, op, msg) {
        if (op_index(op) < 0) {
            int r = kiln_error_set(err, -KILN_E_INVALID, "fake driver: unknown operation %s in "
                                   "settings.fail", op);
            kiln_fake_driver.close(c);
            return r;
        }
        kiln_fake_inject_failure(c, op, 1, -KILN_E_FAILED, json_string_value(msg));
    }
    *ret_conn = c;
    return 0;
}

static void
fake_close(void *conn)
{
    struct fake_conn *c = conn;
    if (!c)
        return;
    while (c->instances) {
        struct kiln_instance *i = c->instances;
        c->instances = i->next;
        instance_free(i);
    }
    for (int i = 0; i < FAKE_OPS; i++)
        free(c->failures[i].message);
    free(c->build_id);
    free(c);
}

static int
fake_launch(void *conn, const struct kiln_image_ref *image, const char *name,
            int ready_timeout_seconds, unsigned flags, struct kiln_instance **ret,
            struct kiln_error *err)
{
    struct fake_conn *c = conn;
    KILN_CHECK_FLAGS(flags, KILN_LAUNCH_KEEP_ON_FAILURE | KILN_LAUNCH_WARM, err);
    if (!image || !image->location || !name || !*name)
        return kiln_error_set(err, -EINVAL, "fake launch: image and name are required");
    int r = fake_call(c, "launch", err);
    if (r < 0)
        return r;
    struct kiln_instance *inst = kiln_new(struct kiln_instance, 1);
    inst->conn = c;
    inst->id = kiln_asprintf("fake-%s-%s-%u", c->build_id, name, ++c->serial);
    inst->name = kiln_strdup(name);
    inst->build_id = kiln_strdup(c->build_id);
    kiln_image_ref_copy(&inst->image, image);
    inst->history = json_array();
    inst->running = true;
    inst->next = c->instances;
    c->instances = inst;
    notify(c, "fake-instance", inst->id, true);
    *ret = inst;
    return 0;
}

static void
emit(const struct kiln_engine_events *events, json_t *ev)
{
    if (events && events->event)
        events->event(events->userdata, ev);
    json_decref(ev);
}

static int
fake_run(struct kiln_instance *inst, const struct kiln_job *job, const char *log_dir,
         const struct kiln_engine_events *events, unsigned flags, struct kiln_job_result *ret,
         struct kiln_error *err)
{
    KILN_CHECK_FLAGS(flags, 0, err);
    if (!inst->running)
        return kiln_error_set(err, -EINVAL, "fake run: instance %s is not running", inst->id);
    int r = fake_call(inst->conn, "run", err);
    if (r < 0)
        return r;
    struct kiln_error job_err = {0};
    bool job_fails = fake_call(inst->conn, "job", &job_err) < 0;
    /* A hanging job: its last document's first phase never ends a step named by the injected
     * message. */
    const char *exec_id = job->execution_id ? job->execution_id : "fake";
    if (!kiln_proto_valid_id(exec_id)) /* as the real agent */
        return kiln_error_set(err, -KILN_E_INVALID, "fake run: invalid execution id %s", exec_id);
    int hang_i = op_index("hang");
    _cleanup_free_ char *hang_step = kiln_strdup(inst->conn->failures[hang_i].message
                                                     ? inst->conn->failures[hang_i].message
                                                     : "Hang");
    bool hangs = fake_call(inst->conn, "hang", NULL) < 0;
    const char *hang_phase = job->phases && job->phases[0] ? job->phases[0] : "build";
    if (hangs && job->timeout_seconds <= 0)
        return kiln_error_set(err, -ETIMEDOUT, "fake run: job %s hangs in %s/%s and has no "
                              "timeout (a real instance would wait for ever)", exec_id,
                              hang_phase, hang_step);
    const char *last_status = job_fails ? "failed" : hangs ? "cancelled" : "success";

    for (char **d = job->documents; d && *d; d++) {
        json_t *phases = json_array();
        for (char **p = job->phases; p && *p; p++)
            json_array_append_new(phases, json_string(*p));
        emit(events, json_pack("{s:s, s:s, s:o}", "event", "document-start", "document", *d,
                               "phases", json_copy(phases)));
        bool last = d[1] == NULL;
        if (last && hangs) {
            emit(events, json_pack("{s:s, s:s, s:s, s:s}", "event", "step-start", "document", *d,
                                   "phase", hang_phase, "step", hang_step));
            emit(events, json_pack("{s:s, s:s, s:s, s:s, s:s}", "event", "step-end", "document",
                                   *d, "phase", hang_phase, "step", hang_step, "status",
                                   "cancelled"));
        }
        emit(events, json_pack("{s:s, s:s, s:s}", "event", "document-end", "document", *d,
                               "status", last ? last_status : "success"));
        json_array_append_new(inst->history,
                              json_pack("{s:s, s:o}", "document", *d, "phases", phases));
    }
    if (events && events->console)
        events->console(events->userdata, "stdout", "fake run\n", 9);

    *ret = (struct kiln_job_result){0};
    ret->status = job_fails || hangs ? KILN_RUN_FAILED : KILN_RUN_SUCCESS;
    if (job_fails) {
        ret->failure = kiln_strdup(job_err.message);
    } else if (hangs) {
        /* As the libvirt driver reports a job whose time ran out. */
        ret->timed_out = true;
        ret->failure = kiln_asprintf("job %s timed out after %d second%s in %s/%s; the agent "
                                     "cancelled it", exec_id, job->timeout_seconds,
                                     job->timeout_seconds == 1 ? "" : "s", hang_phase, hang_step);
    }
    if (log_dir) {
        char *folder = kiln_asprintf("%s/TOE_fake_%s", log_dir, exec_id);
        r = kiln_mkdir_p(folder, 0755, err);
        if (r == 0) {
            char *path = kiln_path_join(folder, "detailedoutput.json");
            _cleanup_json_ json_t *out = json_pack(
                "{s:s, s:s, s:O}", "executionId", exec_id, "status", last_status, "documents",
                inst->history);
            char *text = kiln_json_dumps(out, true);
            r = kiln_write_file_atomic(path, text, strlen(text), 0644, err);
            free(text);
            free(path);
        }
        if (r < 0) {
            free(folder);
            kiln_job_result_clear(ret);
            return r;
        }
        ret->log_dir = folder;
    }
    return 0;
}

static int
fake_stop(struct kiln_instance *inst, int timeout_seconds, unsigned flags, struct kiln_error *err)
{
    KILN_CHECK_FLAGS(flags, 0, err);
    int r = fake_call(inst->conn, "stop", err);
    if (r < 0)
        return r;
    inst->running = false;
    return 0;
}

static int
fake_snapshot(struct kiln_instance *inst, const struct kiln_snapshot_options *opts, unsigned flags,
              struct kiln_image_ref *ret, struct kiln_error *err)
{
    KILN_CHECK_FLAGS(flags, 0, err);
    if (inst->running)
        return kiln_error_set(err, -EBUSY, "fake snapshot: instance %s is still running",
                              inst->id);
    if (!opts || !opts->dest)
        return kiln_error_set(err, -EINVAL, "fake snapshot: no destination");
    int r = fake_call(inst->conn, "snapshot", err);
    if (r < 0)
        return r;
    const char *format = opts->format ? opts->format : "qcow2";
    if (!kiln_streq(format, "qcow2") && !kiln_streq(format, "raw"))
        return kiln_error_set(err, -EINVAL, "fake snapshot: unknown format %s", format);
    _cleanup_json_ json_t *desc = json_pack("{s:s, s:s, s:O, s:b}", "parent",
                                            inst->image.location, "format", format, "documents",
                                            inst->history, "compressed", opts->compress);
    char *text = kiln_json_dumps(desc, true);
    r = kiln_write_file_atomic(opts->dest, text, strlen(text), 0644, err);
    free(text);
    if (r < 0)
        return r;
    struct kiln_image_ref out = inst->image;
    out.kind = (char *)format;
    out.location = (char *)opts->dest;
    kiln_image_ref_copy(ret, &out);
    return 0;
}

static int
fake_terminate(struct kiln_instance *inst, unsigned flags, struct kiln_error *err)
{
    KILN_CHECK_FLAGS(flags, 0, err);
    if (!inst)
        return 0;
    /* An injected terminate failure is reported, but the instance is still released: terminate
     * must never leak. */
    int r = fake_call(inst->conn, "terminate", err);
    instance_remove(inst);
    return r;
}

static int
fake_reap(void *conn, const char *build_id, unsigned flags, struct kiln_error *err)
{
    struct fake_conn *c = conn;
    KILN_CHECK_FLAGS(flags, 0, err);
    int r = fake_call(c, "reap", err);
    if (r < 0)
        return r;
    for (struct kiln_instance *i = c->instances, *next; i; i = next) {
        next = i->next;
        if (kiln_streq(i->build_id, build_id))
            instance_remove(i);
    }
    return 0;
}

static char *
fake_describe(struct kiln_instance *inst)
{
    return kiln_asprintf("fake instance %s (image %s)", inst->id, inst->image.location);
}

void
kiln_fake_crash(struct kiln_instance *inst)
{
    if (inst)
        inst->crashed = true;
}

const struct kiln_driver_ops kiln_fake_driver = {
    .name = "fake",
    .open = fake_open,
    .close = fake_close,
    .launch = fake_launch,
    .run = fake_run,
    .stop = fake_stop,
    .snapshot = fake_snapshot,
    .terminate = fake_terminate,
    .reap = fake_reap,
    .describe = fake_describe,
};
