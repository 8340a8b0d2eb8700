/* The executor: runs validated AWSTOE documents as AWSTOE does (phases in document order, step
 * defaults, onFailure, maxAttempts, timeouts, variables, chaining, loops, if, Assert,
 * ExecuteDocument, Reboot and exit code 194 with resume), and writes AWSTOE's log folder
 * (TOE_<date>_<id>: the documents, detailedoutput.json, console.log, application.log,
 * chaining.json). */
#include "guest-agent/engine.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/json.h"
#include "common/log.h"
#include "guest-agent/document.h"
#include "guest-agent/engine-internal.h"

#define STATE_FILE "kiln-agent-state.json"
#define STATE_VERSION 1

void
kiln_run_result_clear(struct kiln_run_result *r)
{
    if (!r)
        return;
    free(r->log_folder);
    free(r->failure);
    free(r->execution_id);
    r->log_folder = NULL;
    r->failure = NULL;
    r->execution_id = NULL;
}

/* ---- time and logs ---- */

static void
now_rfc3339(char *buf, size_t n, bool nanos)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    if (nanos)
        snprintf(buf, n, "%s.%09ldZ", base, ts.tv_nsec);
    else
        snprintf(buf, n, "%sZ", base);
}

static json_t *
json_now(void)
{
    char t[64];
    now_rfc3339(t, sizeof(t), false);
    return json_string(t);
}

/* application.log gets every line; console.log the ones a person follows (console = true). */
static void _printf_(3, 4)
logline(struct run *run, bool console, const char *fmt, ...)
{
    char t[64];
    now_rfc3339(t, sizeof(t), true);
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        abort();
    va_end(ap);
    if (run->app_log)
        fprintf(run->app_log, "%s %s\n", t, msg);
    if (console && run->console_log)
        fprintf(run->console_log, "%s %s\n", t, msg);
}

static void
emit(struct run *run, json_t *ev)
{
    if (run->opts->events && run->opts->events->event)
        run->opts->events->event(run->opts->events->userdata, ev);
    json_decref(ev);
}

/* Step output arrives in chunks: log it line by line as AWSTOE does ("Stdout: ..."). */
static void
console_flush(struct run *run, struct kiln_buf *b, const char *label, bool all)
{
    char *start = b->data;
    char *nl;
    while (start && (nl = memchr(start, '\n', b->len - (size_t)(start - b->data)))) {
        *nl = '\0';
        logline(run, true, "%s: %s", label, start);
        start = nl + 1;
    }
    size_t rest = start ? b->len - (size_t)(start - b->data) : 0;
    if (all && rest) {
        logline(run, true, "%s: %.*s", label, (int)rest, start);
        rest = 0;
    }
    if (start && start != b->data)
        memmove(b->data, start, rest);
    b->len = rest;
    if (b->data)
        b->data[rest] = '\0';
}

static void
on_console(void *userdata, const char *stream, const char *data, size_t len)
{
    struct run *run = userdata;
    bool err = kiln_streq(stream, "stderr");
    struct kiln_buf *b = err ? &run->line_err : &run->line_out;
    kiln_buf_append(b, data, len);
    console_flush(run, b, err ? "Stderr" : "Stdout", false);
    if (run->opts->events && run->opts->events->console)
        run->opts->events->console(run->opts->events->userdata, stream, data, len);
}

/* ---- variables and chaining ---- */

static const json_t *
json_path(const json_t *j, const struct kiln_ref *ref, size_t from)
{
    for (size_t i = from; j && i < ref->n; i++) {
        j = json_object_get(j, ref->part[i]);
        if (j && ref->index[i] >= 0)
            j = json_array_get(j, (size_t)ref->index[i]);
    }
    return j;
}

static const json_t *
find_named(const json_t *list, const char *name)
{
    /* Records are appended in document order; the most recent match is the one that counts. */
    for (size_t i = json_array_size(list); i > 0; i--)
        if (kiln_streq(kiln_json_get_str(json_array_get(list, i - 1), "name"), name))
            return json_array_get(list, i - 1);
    return NULL;
}

static const json_t *
find_step_record(const json_t *doc_rec, const char *phase, const char *step)
{
    const json_t *p = find_named(json_object_get(doc_rec, "phases"), phase);
    return find_named(json_object_get(p, "steps"), step);
}

/* The value of one reference, or NULL when it cannot be resolved (then left as written). */
static char *
ref_value(struct docexec *dx, const struct kiln_ref *ref, const struct iter *it)
{
    if (ref->n == 1) {
        const char *v = kiln_json_get_str(dx->vars, ref->part[0]);
        return v ? kiln_strdup(v) : NULL;
    }
    if (ref->n == 2 && it &&
        (strcmp(ref->part[0], "loop") == 0 || kiln_streq(ref->part[0], it->name))) {
        if (strcmp(ref->part[1], "index") == 0)
            return kiln_asprintf("%ld", it->index);
        if (strcmp(ref->part[1], "value") == 0)
            return kiln_strdup(it->value);
        return NULL;
    }
    if (ref->n >= 4) {
        /* Chaining reads the step's record in the detailed output (inputs and outputs are kept
         * there as JSON text): one copy of every value, parsed only when referenced. */
        const json_t *step = find_step_record(dx->doc_rec, ref->part[0], ref->part[1]);
        const char *text = kiln_json_get_str(step, ref->part[2]);
        if (!text)
            return NULL;
        _cleanup_json_ json_t *list = json_loads(text, 0, NULL);
        /* inputs[i] / outputs[i]: one entry per inputs item or loop iteration; default 0. */
        size_t idx = ref->index[2] >= 0 ? (size_t)ref->index[2] : 0;
        const json_t *j = json_path(json_array_get(list, idx), ref, 3);
        if (!j || json_is_null(j))
            return NULL;
        if (json_is_string(j))
            return kiln_strdup(json_string_value(j));
        return kiln_json_dumps(j, false);
    }
    return NULL;
}

char *
kiln_engine_substitute(struct docexec *dx, const char *text, const struct iter *it)
{
    _cleanup_buf_ struct kiln_buf b;
    kiln_buf_init(&b);
    const char *p = text, *a, *e;
    while (kiln_ref_next(p, &a, &e)) {
        kiln_buf_append(&b, p, (size_t)(a - p));
        struct kiln_ref ref;
        _cleanup_free_ char *v = NULL;
        if (kiln_ref_parse(a + 2, (size_t)(e - a - 4), &ref))
            v = ref_value(dx, &ref, it);
        if (v)
            kiln_buf_append_str(&b, v);
        else
            kiln_buf_append(&b, a, (size_t)(e - a));
        p = e;
    }
    kiln_buf_append_str(&b, p);
    return kiln_buf_steal(&b);
}

static const struct kiln_module_field *
field_of(const struct kiln_module *m, const char *name)
{
    for (const struct kiln_module_field *f = m ? m->fields : NULL; f && f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

/* A resolved scalar typed as the module wants it: integers and booleans for INT/BOOL fields,
 * text otherwise (a plain 1.10 stays "1.10"); untyped places use YAML's core schema. */
static json_t *
typed_scalar(const struct kiln_yaml_node *n, const char *text, const struct kiln_module_field *f)
{
    if (f && f->type == KILN_FIELD_INT) {
        char *end;
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (*text && !*end && errno == 0)
            return json_integer(v);
    }
    if (f && f->type == KILN_FIELD_BOOL) {
        if (strcasecmp(text, "true") == 0)
            return json_true();
        if (strcasecmp(text, "false") == 0)
            return json_false();
    }
    if (f && (f->type == KILN_FIELD_STRING || f->type == KILN_FIELD_LIST))
        return json_string(text);
    if (!strstr(n->value, "{{")) {
        if (!f && n->plain && (kiln_yaml_is_null(n)))
            return json_null();
        if (!f || f->type == KILN_FIELD_ANY || f->type == KILN_FIELD_MAP || f->type == KILN_FIELD_INT ||
            f->type == KILN_FIELD_BOOL)
            return kiln_yaml_to_json(n);
    }
    return json_string(text);
}

static json_t *
resolve_node(struct docexec *dx, const struct kiln_yaml_node *n, const struct iter *it,
             const struct kiln_module *m, const struct kiln_module_field *f, int depth)
{
    switch (n->kind) {
    case KILN_YAML_SCALAR: {
        _cleanup_free_ char *t = kiln_engine_substitute(dx, n->value, it);
        return typed_scalar(n, t, f);
    }
    case KILN_YAML_SEQUENCE: {
        json_t *a = json_array();
        for (size_t i = 0; i < n->n; i++)
            json_array_append_new(a, resolve_node(dx, n->items[i], it, m,
                                                  depth == 0 ? NULL : f, depth + 1));
        return a;
    }
    case KILN_YAML_MAPPING: {
        json_t *o = json_object();
        for (size_t i = 0; i < n->n; i++) {
            const struct kiln_module_field *ff = depth <= 1 ? field_of(m, n->keys[i]->value)
                                                            : NULL;
            _cleanup_free_ char *k = kiln_engine_substitute(dx, n->keys[i]->value, it);
            json_object_set_new(o, k, resolve_node(dx, n->items[i], it, m, ff, depth + 2));
        }
        return o;
    }
    }
    return json_null();
}

/* Inputs with variables substituted: an object for object-shaped inputs, a list otherwise.
 * depth: 0 at the inputs node; fields sit at depth 0 (object) or 1 (list items). */
json_t *
kiln_engine_resolve_inputs(struct docexec *dx, const struct kiln_doc_step *s, const struct iter *it)
{
    if (!s->inputs || kiln_yaml_is_null(s->inputs))
        return json_object();
    if (s->inputs->kind == KILN_YAML_MAPPING) {
        json_t *o = json_object();
        for (size_t i = 0; i < s->inputs->n; i++) {
            const struct kiln_yaml_node *k = s->inputs->keys[i];
            const struct kiln_module_field *f =
                strcmp(s->action, "Assert") == 0 ? NULL : field_of(s->module, k->value);
            json_object_set_new(o, k->value,
                                resolve_node(dx, s->inputs->items[i], it, s->module, f, 1));
        }
        return o;
    }
    if (s->inputs->kind == KILN_YAML_SEQUENCE) {
        json_t *a = json_array();
        for (size_t i = 0; i < s->inputs->n; i++)
            json_array_append_new(a, resolve_node(dx, s->inputs->items[i], it, s->module, NULL,
                                                  1));
        return a;
    }
    return resolve_node(dx, s->inputs, it, s->module, NULL, 2);
}

static json_t *
as_list(const json_t *j)
{
    if (json_is_array(j))
        return json_deep_copy(j);
    json_t *a = json_array();
    json_array_append_new(a, json_deep_copy(j));
    return a;
}

/* ---- loops ---- */

static void
iters_free(struct iter *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].value);
    free(v);
}

static int
loop_iterations(struct docexec *dx, const struct kiln_doc_step *s, struct iter **ret,
                size_t *ret_n, struct kiln_error *err)
{
    const struct kiln_doc_loop *l = &s->loop;
    struct iter *v = NULL;
    size_t n = 0;
    if (l->kind == KILN_LOOP_FOR) {
        long long x[3];
        const struct kiln_yaml_node *nodes[3] = {l->start, l->end, l->update_by};
        for (int i = 0; i < 3; i++) {
            _cleanup_free_ char *t = kiln_engine_substitute(dx, nodes[i]->value, NULL);
            char *end;
            errno = 0;
            x[i] = strtoll(t, &end, 10);
            if (!*t || *end || errno)
                return kiln_error_set(err, -KILN_E_INVALID, "loop: '%s' is not an integer", t);
        }
        if (x[2] == 0 || (x[1] > x[0] && x[2] < 0) || (x[1] < x[0] && x[2] > 0))
            return kiln_error_set(err, -KILN_E_INVALID,
                                  "loop: start %lld, end %lld, updateBy %lld never ends", x[0],
                                  x[1], x[2]);
        if ((x[1] - x[0]) / x[2] >= KILN_DOC_MAX_ITERATIONS)
            return kiln_error_set(err, -KILN_E_LIMIT, "loop: more than %d iterations",
                                  KILN_DOC_MAX_ITERATIONS);
        for (long long i = x[0]; x[2] > 0 ? i <= x[1] : i >= x[1]; i += x[2]) {
            v = kiln_reallocarray(v, n + 1, sizeof(*v));
            v[n] = (struct iter){l->name, (long)n, kiln_asprintf("%lld", i)};
            n++;
        }
    } else if (l->kind == KILN_LOOP_FOREACH_LIST) {
        v = kiln_new(struct iter, l->list->n ? l->list->n : 1);
        for (size_t i = 0; i < l->list->n; i++) {
            v[n] = (struct iter){l->name, (long)n,
                                 kiln_engine_substitute(dx, l->list->items[i]->value, NULL)};
            n++;
        }
    } else {
        _cleanup_free_ char *t = kiln_engine_substitute(dx, l->list->value, NULL);
        char d = l->delimiter[0];
        const char *p = t;
        for (;;) {
            const char *q = strchr(p, d);
            size_t len = q ? (size_t)(q - p) : strlen(p);
            if (n == KILN_DOC_MAX_ITERATIONS) {
                iters_free(v, n);
                return kiln_error_set(err, -KILN_E_LIMIT, "loop: more than %d iterations",
                                      KILN_DOC_MAX_ITERATIONS);
            }
            v = kiln_reallocarray(v, n + 1, sizeof(*v));
            v[n] = (struct iter){l->name, (long)n, kiln_strndup(p, len)};
            n++;
            if (!q)
                break;
            p = q + 1;
        }
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

/* ---- state (reboot and resume) ---- */

static char *
state_path(const struct run *run)
{
    return kiln_path_join(run->state_dir, STATE_FILE);
}

static int
save_state(struct run *run, size_t d, struct kiln_error *err)
{
    _cleanup_json_ json_t *st = json_object();
    json_object_set_new(st, "version", json_integer(STATE_VERSION));
    json_object_set_new(st, "executionId", json_string(run->execution_id));
    json_object_set_new(st, "logFolder", json_string(run->log_folder));
    json_object_set_new(st, "startTime", json_string(run->start_time));
    json_t *docs = json_array();
    for (size_t i = 0; i < run->n_docs; i++)
        json_array_append_new(docs, json_string(run->doc_hashes[i]));
    json_object_set_new(st, "documents", docs);
    json_object_set_new(st, "document", json_integer((json_int_t)d));
    /* Positions per ExecuteDocument depth (index 0 unused), and the interrupted ExecuteDocument
     * step records that carry the nested progress. */
    json_t *pos = json_array(), *pending = json_array();
    for (size_t i = 0; i <= KILN_DOC_MAX_NESTING; i++) {
        json_array_append_new(pos, json_pack("{s:I,s:I,s:b}", "phase",
                                             (json_int_t)run->pos[i].phase, "step",
                                             (json_int_t)run->pos[i].step, "rerun",
                                             run->pos[i].rerun));
        json_array_append(pending, run->pending[i] ? run->pending[i] : json_null());
    }
    json_object_set_new(st, "positions", pos);
    json_object_set_new(st, "pending", pending);
    json_object_set(st, "detailedOutput", run->detailed);
    json_object_set_new(st, "counts",
                        json_pack("{s:i,s:i,s:i}", "executed", run->executed, "failed",
                                  run->failed, "ignored", run->ignored));
    _cleanup_free_ char *text = kiln_json_dumps(st, true);
    int r = kiln_mkdir_p(run->state_dir, 0700, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *path = state_path(run);
    return kiln_write_file_atomic(path, text, strlen(text), 0600, err);
}

/* ---- output files ---- */

/* AWSTOE writes its JSON with Go's encoder, which escapes <, > and & as \u003c, \u003e and
 * \u0026. In JSON text these characters only occur inside strings, so escaping them in the
 * serialised text, chunk by chunk, is exact. */
static void
go_escape(const char *data, size_t len, void (*put)(void *ud, const char *s, size_t n), void *ud)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        const char *esc = data[i] == '<' ? "\\u003c" : data[i] == '>' ? "\\u003e"
                          : data[i] == '&' ? "\\u0026" : NULL;
        if (!esc)
            continue;
        put(ud, data + start, i - start);
        put(ud, esc, 6);
        start = i + 1;
    }
    put(ud, data + start, len - start);
}

static void
put_buf(void *ud, const char *s, size_t n)
{
    kiln_buf_append(ud, s, n);
}

static void
put_file(void *ud, const char *s, size_t n)
{
    fwrite(s, 1, n, ud);
}

static int
go_escape_to_buf(const char *data, size_t len, void *ud)
{
    go_escape(data, len, put_buf, ud);
    return 0;
}

static int
go_escape_to_file(const char *data, size_t len, void *ud)
{
    go_escape(data, len, put_file, ud);
    return ferror((FILE *)ud) ? -1 : 0;
}

/* Streamed to a temporary file and renamed into place: no copy of a large tree in memory. */
static void
write_json_file(struct run *run, const char *name, const json_t *j)
{
    if (!run->log_folder)
        return;
    _cleanup_free_ char *path = kiln_path_join(run->log_folder, name);
    _cleanup_free_ char *tmp = kiln_asprintf("%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return;
    }
    bool ok = json_dump_callback(j, go_escape_to_file, f, JSON_INDENT(4) | JSON_ENCODE_ANY) == 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) < 0) {
        kiln_debug("cannot write %s", path);
        unlink(tmp);
    }
}

static json_t *chaining_json(const struct run *run);

static void
write_outputs(struct run *run)
{
    write_json_file(run, "detailedoutput.json", run->detailed);
    _cleanup_json_ json_t *chaining = chaining_json(run);
    write_json_file(run, "chaining.json", chaining);
    if (run->app_log)
        fflush(run->app_log);
    if (run->console_log)
        fflush(run->console_log);
}

/* ---- steps ---- */

static json_t *
step_record(const struct kiln_doc_step *s)
{
    static const char *const on_failure[] = {"Abort", "Continue", "Ignore"};
    json_t *j = json_object();
    json_object_set_new(j, "name", json_string(s->name));
    json_object_set_new(j, "status", json_string("pending"));
    json_object_set_new(j, "failureMessage", json_string(""));
    int timeout = s->module && (s->module->flags & KILN_MODULE_NO_TIMEOUT) ? -1 : s->timeout_seconds;
    json_object_set_new(j, "timeoutSeconds", json_integer(timeout));
    json_object_set_new(j, "onFailure", json_string(on_failure[s->on_failure]));
    json_object_set_new(j, "maxAttempts", json_integer(s->max_attempts));
    json_object_set_new(j, "action", json_string(s->action));
    json_object_set_new(j, "startTime", json_now());
    json_object_set_new(j, "endTime", json_now());
    json_object_set_new(j, "inputs", json_string("[]"));
    json_object_set_new(j, "outputs", json_string("[]"));
    json_object_set_new(j, "loop", json_null());
    json_object_set_new(j, "detailedOutput", json_null());
    return j;
}

static void
set_json_string_field(json_t *rec, const char *key, const json_t *value)
{
    _cleanup_buf_ struct kiln_buf b;
    kiln_buf_init(&b);
    json_dump_callback(value, go_escape_to_buf, &b, JSON_COMPACT | JSON_ENCODE_ANY);
    json_object_set_new(rec, key, json_stringn(b.data ? b.data : "", b.len));
}

static void
scratch_empty(struct run *run)
{
    DIR *d = opendir(run->scratch);
    if (!d)
        return;
    bool empty = true;
    struct dirent *e;
    while (empty && (e = readdir(d)))
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    if (!empty) {
        kiln_rm_rf(run->scratch, NULL);
        mkdir(run->scratch, 0700);
    }
}

/* One module call: a scratch folder, the timeout, console streaming. */
static int
call_module(struct run *run, struct docexec *dx, const struct kiln_doc_step *s, const char *phase,
            const json_t *inputs, int timeout, json_t **ret_outputs, struct kiln_error *err)
{
    /* One scratch folder per run, emptied after a step that left something in it (cheaper
     * than a folder per step on a 1,000-step document). */
    int r;
    if (!run->scratch && (r = kiln_mkdtemp("kiln-agent", &run->scratch, err)) < 0)
        return r;
    const char *work = run->scratch;
    struct kiln_module_ctx ctx = {
        .phase_name = phase,
        .step_name = s->name,
        .document_path = dx->doc->path,
        .work_dir = work,
        .timeout_seconds = timeout,
        .cancel = run->opts->cancel,
        .console = on_console,
        .console_userdata = run,
    };
    logline(run, true, "%s: STARTED EXECUTION", s->action);
    r = s->module->run(inputs, &ctx, ret_outputs, err);
    console_flush(run, &run->line_out, "Stdout", true);
    console_flush(run, &run->line_err, "Stderr", true);
    logline(run, true, "%s: FINISHED EXECUTION", s->action);
    scratch_empty(run);
    return r;
}

static int exec_document(struct run *run, struct kiln_document *doc, const json_t *params,
                         char **phases, unsigned depth, json_t *doc_rec, struct counts *counts,
                         bool resuming);

static int finish_execute_document(struct run *run, struct docexec *dx,
                                   struct kiln_document *nested, const json_t *params,
                                   char **phases, json_t *top, json_t *doc_rec, bool resuming,
                                   const char *full, json_t **ret_outputs,
                                   struct kiln_error *err);

/* ExecuteDocument: runs the nested document with its parameters; the outputs carry AWSTOE's
 * summary and detailedOutput the nested tree. */
static int
run_execute_document(struct run *run, struct docexec *dx, const json_t *inputs, json_t *rec,
                     bool resumed, json_t **ret_outputs, struct kiln_error *err)
{
    const json_t *in = json_is_array(inputs) ? json_array_get(inputs, 0) : inputs;
    const char *path = kiln_json_get_str(in, "document");
    if (!path)
        return kiln_error_set(err, -KILN_E_INVALID, "ExecuteDocument: no document");
    if (dx->depth + 1 > KILN_DOC_MAX_NESTING)
        return kiln_error_set(err, -KILN_E_INVALID,
                              "ExecuteDocument nesting is limited to %d levels",
                              KILN_DOC_MAX_NESTING);
    _cleanup_free_ char *full = kiln_document_resolve_path(dx->doc, path);
    struct kiln_diags diags = {0};
    _cleanup_(kiln_document_freep) struct kiln_document *nested = NULL;
    int r = kiln_document_load(full, &nested, &diags);
    if (r == 0) {
        kiln_document_validate(nested, dx->depth + 1, &diags);
        if (diags.n)
            r = -KILN_E_INVALID;
    }
    if (r < 0) {
        _cleanup_free_ char *msg = kiln_diags_format(&diags);
        kiln_diags_clear(&diags);
        return kiln_error_set(err, r, "ExecuteDocument %s: %s", full, msg);
    }
    kiln_diags_clear(&diags);
    _cleanup_json_ json_t *params = json_object();
    const json_t *plist = json_object_get(in, "parameters");
    size_t i;
    json_t *p;
    json_array_foreach(plist, i, p)
    {
        const char *name = kiln_json_get_str(p, "name");
        json_t *value = json_object_get(p, "value");
        if (name && value) {
            _cleanup_free_ char *text = json_is_string(value) ? kiln_strdup(json_string_value(value))
                                                              : kiln_json_dumps(value, false);
            json_object_set_new(params, name, json_string(text));
        }
    }
    _cleanup_strv_free_ char **phases = NULL;
    const char *ph = kiln_json_get_str(in, "phases");
    if (ph && *ph)
        phases = kiln_engine_split(ph, ',');
    /* Resumed after a reboot inside the nested document: continue its records. */
    json_t *pending = resumed ? run->pending[dx->depth] : NULL;
    const json_t *pend_top = json_array_get(json_object_get(pending, "detailedOutput"), 0);
    bool resuming = pend_top && json_array_size(json_object_get(pend_top, "documents")) == 1;
    if (resuming) {
        json_t *detailed = json_deep_copy(json_object_get(pending, "detailedOutput"));
        json_object_set_new(rec, "detailedOutput", detailed);
        json_t *top = json_array_get(detailed, 0);
        json_t *doc_rec = json_array_get(json_object_get(top, "documents"), 0);
        json_decref(run->pending[dx->depth]);
        run->pending[dx->depth] = NULL;
        return finish_execute_document(run, dx, nested, params, phases, top, doc_rec, true,
                                       full, ret_outputs, err);
    }
    json_decref(run->pending[dx->depth]);
    run->pending[dx->depth] = NULL;
    _cleanup_free_ char *nested_id = kiln_engine_uuid();
    json_t *top = json_object();
    json_object_set_new(top, "executionId", json_string(nested_id));
    json_object_set_new(top, "status", json_string("success"));
    json_object_set_new(top, "startTime", json_now());
    json_object_set_new(top, "endTime", json_now());
    json_object_set_new(top, "failureMessage", json_string(""));
    json_t *docs = json_array();
    json_object_set_new(top, "documents", docs);
    json_t *doc_rec = json_object();
    json_array_append_new(docs, doc_rec);
    json_t *detailed = json_array();
    json_array_append_new(detailed, top);
    json_object_set_new(rec, "detailedOutput", detailed);
    return finish_execute_document(run, dx, nested, params, phases, top, doc_rec, false, full,
                                   ret_outputs, err);
}

static int
finish_execute_document(struct run *run, struct docexec *dx, struct kiln_document *nested,
                        const json_t *params, char **phases, json_t *top, json_t *doc_rec,
                        bool resuming, const char *full, json_t **ret_outputs,
                        struct kiln_error *err)
{
    struct counts c = {0};
    const char *nested_id = kiln_json_get_str(top, "executionId");
    int r = exec_document(run, nested, params, phases, dx->depth + 1, doc_rec, &c, resuming);
    if (r < 0)
        return r;
    const char *status = kiln_json_get_str(doc_rec, "status");
    json_object_set_new(top, "status", json_string(status));
    json_object_set_new(top, "endTime", json_now());
    json_object_set(top, "failureMessage", json_object_get(doc_rec, "failureMessage"));
    json_t *out = json_object();
    json_object_set_new(out, "executedStepCount", json_integer(c.executed));
    json_object_set_new(out, "executionId", json_string(nested_id));
    json_object_set_new(out, "failedStepCount", json_integer(c.failed));
    json_object_set(out, "failureMessage", json_object_get(doc_rec, "failureMessage"));
    json_object_set_new(out, "ignoredFailedStepCount", json_integer(c.ignored));
    json_object_set_new(out, "logUrl", json_string(run->log_folder ? run->log_folder : ""));
    json_object_set_new(out, "status", json_string(status));
    *ret_outputs = out;
    if (c.reboot)
        return -KILN_E_REBOOT;
    if (strcmp(status, "failed") == 0)
        return kiln_error_set(err, -KILN_E_FAILED, "nested document %s failed", full);
    return 0;
}

enum step_outcome { STEP_OK, STEP_FAILED, STEP_SKIPPED, STEP_REBOOT, STEP_CANCELLED };

/* One attempt of a step: every loop iteration in order (a retry re-runs the loop whole). */
static enum step_outcome
attempt_step(struct run *run, struct docexec *dx, const struct kiln_doc_step *s, const char *phase,
             const struct iter *iters, size_t n_iters, json_t *rec, json_t *all_inputs,
             json_t *all_outputs, json_t *loop_rec, bool resumed, struct kiln_error *err)
{
    time_t deadline = s->timeout_seconds > 0 ? time(NULL) + s->timeout_seconds : 0;
    bool reboot_action = false;
    for (size_t i = 0; i < (n_iters ? n_iters : 1); i++) {
        const struct iter *it = n_iters ? &iters[i] : NULL;
        if (run->opts->cancel && *run->opts->cancel)
            return STEP_CANCELLED;
        _cleanup_json_ json_t *inputs = kiln_engine_resolve_inputs(dx, s, it);
        json_t *in_list = as_list(inputs);
        size_t k;
        json_t *x;
        json_array_foreach(in_list, k, x) json_array_append(all_inputs, x);
        json_decref(in_list);
        int timeout = -1;
        if (deadline) {
            timeout = (int)(deadline - time(NULL));
            if (timeout < 1) {
                kiln_error_set(err, -ETIMEDOUT, "step timed out after %d seconds",
                               s->timeout_seconds);
                return STEP_FAILED;
            }
        }
        json_t *outputs = NULL;
        int r;
        const char *m = s->module->name;
        if (strcmp(m, "Assert") == 0) {
            bool ok;
            r = kiln_expr_eval(inputs, &ok, NULL, err);
            if (r == 0 && !ok)
                r = kiln_error_set(err, -KILN_E_FAILED, "assertion failed");
            outputs = json_object();
        } else if (strcmp(m, "Reboot") == 0) {
            outputs = json_object();
            r = 0;
            reboot_action = true;
        } else if (strcmp(m, "ExecuteDocument") == 0) {
            r = run_execute_document(run, dx, inputs, rec, resumed && i == 0, &outputs, err);
        } else if (!s->module->run) {
            r = kiln_error_set(err, -KILN_E_UNSUPPORTED, "%s is not supported on Linux", m);
        } else {
            r = call_module(run, dx, s, phase, inputs, timeout, &outputs, err);
        }
        if (!outputs)
            outputs = json_object();
        json_array_append_new(all_outputs, outputs);
        if (loop_rec && it) {
            json_t *li = json_pack("{s:I,s:s}", "index", (json_int_t)it->index, "value",
                                   it->value);
            json_array_append_new(json_object_get(loop_rec, "iterations"), li);
        }
        if (r == -KILN_E_REBOOT)
            return STEP_REBOOT;
        if (r < 0) {
            if (!err->message[0])
                kiln_error_set(err, r, "%s failed: %s", m, kiln_strerror(r));
            if (run->opts->cancel && *run->opts->cancel)
                return STEP_CANCELLED;
            return STEP_FAILED;
        }
        if (reboot_action)
            return STEP_REBOOT;
    }
    return STEP_OK;
}

static enum step_outcome
run_step(struct run *run, struct docexec *dx, size_t pi, size_t si, json_t *rec, bool resumed)
{
    const struct kiln_doc_step *s = &dx->doc->phases[pi].steps[si];
    const char *phase = dx->doc->phases[pi].name;
    struct kiln_error err = {0};
    logline(run, true, "Step %s", s->name);
    emit(run, json_pack("{s:s,s:s,s:s,s:s,s:s,s:i}", "event", "step-start", "document",
                        dx->doc->path, "phase", phase, "step", s->name, "action", s->action,
                        "attempt", 1));
    /* if: evaluated once; a step resumed after a reboot does not evaluate it again. */
    if (s->if_node && !resumed) {
        _cleanup_json_ json_t *e = kiln_yaml_to_json(s->if_node);
        struct kiln_yaml_node *copy = kiln_yaml_node_copy(s->if_node);
        json_decref(e);
        struct kiln_doc_step tmp = {.inputs = copy, .action = "Assert"};
        e = kiln_engine_resolve_inputs(dx, &tmp, NULL);
        kiln_yaml_node_free(copy);
        bool value;
        const char *action = "Execute";
        if (kiln_expr_eval(e, &value, &action, &err) < 0) {
            json_object_set_new(rec, "failureMessage", json_string(err.message));
            return STEP_FAILED;
        }
        if (strcmp(action, "Skip") == 0) {
            logline(run, true, "Step %s skipped: its if condition chose Skip", s->name);
            return STEP_SKIPPED;
        }
        if (strcmp(action, "Abort") == 0) {
            json_object_set_new(rec, "failureMessage",
                                json_string("the step's if condition chose Abort"));
            return STEP_FAILED;
        }
    }
    struct iter *iters = NULL;
    size_t n_iters = 0;
    json_t *loop_rec = NULL;
    if (s->loop.kind != KILN_LOOP_NONE) {
        if (loop_iterations(dx, s, &iters, &n_iters, &err) < 0) {
            json_object_set_new(rec, "failureMessage", json_string(err.message));
            return STEP_FAILED;
        }
        loop_rec = json_object();
        json_object_set_new(loop_rec, "name", s->loop.name ? json_string(s->loop.name)
                                                          : json_string(""));
        json_object_set_new(loop_rec, "iterations", json_array());
    }
    enum step_outcome out = STEP_FAILED;
    json_t *all_inputs = NULL, *all_outputs = NULL;
    int attempts = s->module && (s->module->flags & KILN_MODULE_NO_ATTEMPTS) ? 1 : s->max_attempts;
    for (int attempt = 1; attempt <= attempts; attempt++) {
        json_decref(all_inputs);
        json_decref(all_outputs);
        all_inputs = json_array();
        all_outputs = json_array();
        if (loop_rec)
            json_object_set_new(loop_rec, "iterations", json_array());
        kiln_error_clear(&err);
        logline(run, false, "Executor: Attempt %d/%d", attempt, attempts);
        if (attempt > 1)
            emit(run, json_pack("{s:s,s:s,s:s,s:s,s:i,s:i}", "event", "step-retry", "document",
                                dx->doc->path, "phase", phase, "step", s->name, "attempt",
                                attempt, "maxAttempts", attempts));
        out = attempt_step(run, dx, s, phase, iters, n_iters, rec, all_inputs, all_outputs,
                           loop_rec, resumed && attempt == 1, &err);
        if (out != STEP_FAILED)
            break;
        logline(run, true, "Step %s attempt %d/%d failed: %s", s->name, attempt, attempts,
                err.message);
    }
    iters_free(iters, n_iters);
    set_json_string_field(rec, "inputs", all_inputs);
    set_json_string_field(rec, "outputs", all_outputs);
    if (loop_rec)
        json_object_set_new(rec, "loop", loop_rec);
    json_decref(all_inputs);
    json_decref(all_outputs);
    if (out == STEP_FAILED)
        json_object_set_new(rec, "failureMessage", json_string(err.message));
    return out;
}

static const char *
status_name(bool failed, bool ignored)
{
    return failed ? "failed" : ignored ? "SuccessWithIgnoredFailure" : "success";
}

static bool
phase_selected(char **phases, const char *name)
{
    if (!phases)
        return true;
    for (size_t i = 0; phases[i]; i++)
        if (kiln_streq(phases[i], name))
            return true;
    return false;
}

/* chaining.json: every phase and step of each document, with the values of the steps that ran
 * (taken from the detailed output). */
static json_t *
chaining_json(const struct run *run)
{
    json_t *all = json_array();
    const json_t *docs = json_object_get(run->detailed, "documents");
    for (size_t d = 0; d < run->n_docs && d < json_array_size(docs); d++) {
        const struct kiln_document *doc = run->docs[d];
        const json_t *drec = json_array_get(docs, d);
        json_t *phases = json_array();
        for (size_t i = 0; i < doc->n_phases; i++) {
            const struct kiln_doc_phase *ph = &doc->phases[i];
            const json_t *prec = find_named(json_object_get(drec, "phases"), ph->name);
            const json_t *srecs = json_object_get(prec, "steps");
            size_t cursor = 0;
            json_t *steps = json_array();
            for (size_t j = 0; j < ph->n_steps; j++) {
                const json_t *srec = json_array_get(srecs, cursor);
                if (srec && kiln_streq(kiln_json_get_str(srec, "name"), ph->steps[j].name))
                    cursor++;
                else
                    srec = NULL;
                const json_t *nested = json_object_get(srec, "detailedOutput");
                json_array_append_new(
                    steps, json_pack("{s:s,s:s,s:s,s:O,s:O}", "name", ph->steps[j].name, "inputs",
                                     srec ? kiln_json_get_str(srec, "inputs") : "", "outputs",
                                     srec ? kiln_json_get_str(srec, "outputs") : "", "loop",
                                     srec ? json_object_get(srec, "loop") : json_null(),
                                     "documents",
                                     nested && !json_is_null(nested) ? json_object_get(srec, "outputs")
                                                                     : json_null()));
            }
            json_array_append_new(phases,
                                  json_pack("{s:s,s:b,s:o}", "name", ph->name, "isSelected",
                                            phase_selected(run->phases, ph->name), "steps", steps));
        }
        json_array_append_new(all, json_pack("{s:o}", "phases", phases));
    }
    return all;
}

static int
exec_document(struct run *run, struct kiln_document *doc, const json_t *params, char **phases,
              unsigned depth, json_t *doc_rec, struct counts *counts, bool resuming)
{
    struct docexec dx = {.doc = doc, .depth = depth, .doc_rec = doc_rec};
    _cleanup_json_ json_t *vars = json_object();
    dx.vars = vars;
    for (size_t i = 0; i < doc->n_constants; i++)
        json_object_set_new(vars, doc->constants[i].name, json_string(doc->constants[i].value));
    if (!resuming) {
        json_object_set_new(doc_rec, "name", json_string(doc->name ? doc->name : ""));
        json_object_set_new(doc_rec, "filePath", json_string(doc->path));
        json_object_set_new(doc_rec, "status", json_string("running"));
        json_object_set_new(doc_rec, "description",
                            json_string(doc->description ? doc->description : ""));
        json_object_set_new(doc_rec, "startTime", json_now());
        json_object_set_new(doc_rec, "endTime", json_now());
        json_object_set_new(doc_rec, "failureMessage", json_string(""));
        json_object_set_new(doc_rec, "phases", json_array());
    }
    for (size_t i = 0; i < doc->n_parameters; i++) {
        const struct kiln_doc_var *p = &doc->parameters[i];
        const char *v = kiln_json_get_str(params, p->name);
        if (!v)
            v = p->value;
        if (!v) {
            json_object_set_new(doc_rec, "status", json_string("failed"));
            _cleanup_free_ char *msg = kiln_asprintf("parameter '%s' has no value: pass it with "
                                                     "--parameters %s=...",
                                                     p->name, p->name);
            json_object_set_new(doc_rec, "failureMessage", json_string(msg));
            json_object_set_new(doc_rec, "endTime", json_now());
            counts->failed_doc = true;
            return 0;
        }
        if (!kiln_doc_var_allows(p, v)) {
            json_object_set_new(doc_rec, "status", json_string("failed"));
            _cleanup_free_ char *msg = kiln_asprintf("parameter '%s': '%s' is not one of its "
                                                     "allowedValues",
                                                     p->name, v);
            json_object_set_new(doc_rec, "failureMessage", json_string(msg));
            json_object_set_new(doc_rec, "endTime", json_now());
            counts->failed_doc = true;
            return 0;
        }
        json_object_set_new(vars, p->name, json_string(v));
    }
    logline(run, true, "Document %s", doc->path);
    emit(run, json_pack("{s:s,s:s}", "event", "document-start", "document", doc->path));
    json_t *phase_recs = json_object_get(doc_rec, "phases");
    bool doc_failed = false, doc_ignored = false, abort_all = false;
    const char *doc_failure = NULL;
    size_t p0 = 0, s0 = 0;
    if (resuming) {
        p0 = run->pos[depth].phase;
        s0 = run->pos[depth].step;
        /* Failures of the phases before the reboot still count. */
        const json_t *prs = json_object_get(doc_rec, "phases");
        for (size_t k = 0; k < json_array_size(prs); k++) {
            const json_t *pr = json_array_get(prs, k);
            const char *st = kiln_json_get_str(pr, "status");
            doc_failed |= kiln_streq(st, "failed");
            doc_ignored |= kiln_streq(st, "SuccessWithIgnoredFailure");
            if (kiln_streq(st, "failed") && !doc_failure)
                doc_failure = kiln_json_get_str(pr, "failureMessage");
        }
    }
    for (size_t pi = p0; pi < doc->n_phases && !abort_all; pi++) {
        const struct kiln_doc_phase *ph = &doc->phases[pi];
        if (!phase_selected(phases, ph->name))
            continue;
        json_t *prec;
        bool resumed_phase = resuming && pi == p0 &&
                             json_array_size(phase_recs) > 0 &&
                             kiln_streq(kiln_json_get_str(json_array_get(phase_recs,
                                                                         json_array_size(
                                                                             phase_recs) -
                                                                             1),
                                                          "name"),
                                        ph->name);
        if (resumed_phase) {
            prec = json_array_get(phase_recs, json_array_size(phase_recs) - 1);
        } else {
            prec = json_object();
            json_object_set_new(prec, "name", json_string(ph->name));
            json_object_set_new(prec, "status", json_string("running"));
            json_object_set_new(prec, "startTime", json_now());
            json_object_set_new(prec, "endTime", json_now());
            json_object_set_new(prec, "failureMessage", json_string(""));
            json_object_set_new(prec, "steps", json_array());
            json_array_append_new(phase_recs, prec);
        }
        logline(run, true, "Phase %s", ph->name);
        emit(run, json_pack("{s:s,s:s,s:s}", "event", "phase-start", "document", doc->path,
                            "phase", ph->name));
        bool ph_failed = false, ph_ignored = false;
        const char *ph_failure = NULL;
        json_t *step_recs = json_object_get(prec, "steps");
        for (size_t j = 0; j < json_array_size(step_recs); j++) {
            const char *st = kiln_json_get_str(json_array_get(step_recs, j), "status");
            ph_failed |= kiln_streq(st, "failed");
            ph_ignored |= kiln_streq(st, "ignored");
        }
        for (size_t si = (resumed_phase ? s0 : 0); si < ph->n_steps; si++) {
            const struct kiln_doc_step *s = &ph->steps[si];
            if (run->opts->cancel && *run->opts->cancel) {
                counts->cancelled = true;
                abort_all = true;
                break;
            }
            json_t *rec = step_record(s);
            bool resumed_step = resumed_phase && si == s0 && run->pos[depth].rerun;
            enum step_outcome o = run_step(run, &dx, pi, si, rec, resumed_step);
            json_object_set_new(rec, "endTime", json_now());
            const char *status = "success";
            switch (o) {
            case STEP_OK:
                counts->executed++;
                break;
            case STEP_SKIPPED:
                status = "skipped";
                break;
            case STEP_CANCELLED:
                status = "cancelled";
                counts->cancelled = true;
                abort_all = true;
                break;
            case STEP_REBOOT:
                counts->reboot = true;
                abort_all = true;
                break;
            case STEP_FAILED:
                counts->executed++;
                if (s->on_failure == KILN_ON_FAILURE_IGNORE) {
                    status = "ignored";
                    counts->ignored++;
                    ph_ignored = true;
                } else {
                    status = "failed";
                    counts->failed++;
                    ph_failed = true;
                    if (!ph_failure)
                        ph_failure = kiln_json_get_str(rec, "failureMessage");
                    if (s->on_failure == KILN_ON_FAILURE_ABORT)
                        abort_all = true;
                }
                break;
            }
            json_object_set_new(rec, "status", json_string(status));
            logline(run, true, "Step %s: %s%s%s", s->name, status,
                    o == STEP_FAILED ? ": " : "",
                    o == STEP_FAILED ? kiln_json_get_str(rec, "failureMessage") : "");
            emit(run, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "event", "step-end", "document",
                                doc->path, "phase", ph->name, "step", s->name, "action",
                                s->action, "status", o == STEP_REBOOT ? "reboot" : status,
                                "reason", kiln_json_get_str(rec, "failureMessage")));
            if (o == STEP_REBOOT) {
                /* The step that returned 194 runs again on resume; the Reboot action is done;
                 * an ExecuteDocument step resumes inside its nested document. */
                run->pos[depth].phase = pi;
                if (strcmp(s->module->name, "Reboot") == 0) {
                    json_object_set_new(rec, "status", json_string("success"));
                    json_array_append_new(step_recs, rec);
                    run->pos[depth].step = si + 1;
                    run->pos[depth].rerun = false;
                } else {
                    if (strcmp(s->module->name, "ExecuteDocument") == 0 && depth < KILN_DOC_MAX_NESTING) {
                        json_decref(run->pending[depth]);
                        run->pending[depth] = rec;
                    } else {
                        json_decref(rec);
                    }
                    run->pos[depth].step = si;
                    run->pos[depth].rerun = true;
                }
                break;
            }
            json_array_append_new(step_recs, rec);
            if (abort_all)
                break;
        }
        if (counts->reboot) {
            json_object_set_new(prec, "status", json_string("running"));
            break;
        }
        json_object_set_new(prec, "status", json_string(counts->cancelled && !ph_failed
                                                            ? "cancelled"
                                                            : status_name(ph_failed, ph_ignored)));
        json_object_set_new(prec, "endTime", json_now());
        if (ph_failure)
            json_object_set_new(prec, "failureMessage", json_string(ph_failure));
        emit(run, json_pack("{s:s,s:s,s:s,s:s}", "event", "phase-end", "document", doc->path,
                            "phase", ph->name, "status", kiln_json_get_str(prec, "status")));
        doc_failed |= ph_failed;
        doc_ignored |= ph_ignored;
        if (ph_failure && !doc_failure)
            doc_failure = kiln_json_get_str(prec, "failureMessage");
        if (depth == 1)
            write_outputs(run);
    }
    if (counts->reboot)
        return 0;
    json_object_set_new(doc_rec, "status", json_string(counts->cancelled && !doc_failed
                                                           ? "cancelled"
                                                           : status_name(doc_failed,
                                                                         doc_ignored)));
    json_object_set_new(doc_rec, "endTime", json_now());
    if (doc_failure)
        json_object_set_new(doc_rec, "failureMessage", json_string(doc_failure));
    if (doc_failed)
        counts->failed_doc = true;
    if (doc_ignored)
        counts->ignored_doc = true;
    if (abort_all && doc_failed)
        counts->aborted = true;
    emit(run, json_pack("{s:s,s:s,s:s}", "event", "document-end", "document", doc->path,
                        "status", kiln_json_get_str(doc_rec, "status")));
    return 0;
}

/* ---- setup ---- */

char *
kiln_engine_uuid(void)
{
    uint8_t b[16] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, b, sizeof(b)) != (ssize_t)sizeof(b))
            memset(b, 0, sizeof(b));
        close(fd);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    b[0] ^= (uint8_t)ts.tv_nsec;
    b[1] ^= (uint8_t)(ts.tv_nsec >> 8);
    b[2] ^= (uint8_t)getpid();
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    return kiln_asprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
                         b[12], b[13], b[14], b[15]);
}

char **
kiln_engine_split(const char *s, char sep)
{
    char **v = kiln_new(char *, 1);
    size_t n = 0;
    const char *p = s;
    for (;;) {
        const char *q = strchr(p, sep);
        size_t len = q ? (size_t)(q - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len) {
            v = kiln_reallocarray(v, n + 2, sizeof(*v));
            v[n++] = kiln_strndup(p, len);
            v[n] = NULL;
        }
        if (!q)
            break;
        p = q + 1;
    }
    return v;
}

static void
run_clear(struct run *run)
{
    if (run->scratch)
        kiln_rm_rf(run->scratch, NULL);
    for (size_t i = 0; i <= KILN_DOC_MAX_NESTING; i++)
        json_decref(run->pending[i]);
    free(run->scratch);
    if (run->app_log)
        fclose(run->app_log);
    if (run->console_log)
        fclose(run->console_log);
    for (size_t i = 0; i < run->n_docs; i++) {
        kiln_document_free(run->docs[i]);
        free(run->doc_hashes[i]);
        json_decref(run->doc_params[i]);
    }
    free(run->docs);
    free(run->doc_hashes);
    free(run->doc_params);
    json_decref(run->detailed);
    json_decref(run->resume);
    free(run->execution_id);
    free(run->log_folder);
    free(run->state_dir);
    free(run->start_time);
    kiln_buf_clear(&run->line_out);
    kiln_buf_clear(&run->line_err);
    kiln_strv_free(run->phases);
    kiln_strv_free(run->doc_paths);
}

/* The AWSTOE configuration file (--config): documents with their own parameters, phases,
 * parameters, executionId, logDirectory, stateDirectory, trace. S3 and CloudWatch settings are
 * read and ignored (no AWS endpoint from a standalone agent). */
static int
apply_config(struct run *run, struct kiln_error *err)
{
    _cleanup_json_ json_t *cfg = NULL;
    int r = kiln_json_load_file(run->opts->config_path, 1u << 20, &cfg, err);
    if (r < 0)
        return r;
    if (!json_is_object(cfg))
        return kiln_error_set(err, -KILN_E_INVALID, "%s: must be a JSON object",
                              run->opts->config_path);
    if (run->opts->documents && run->opts->documents[0])
        return kiln_error_set(err, -KILN_E_INVALID,
                              "give documents either with --documents or in --config, not both");
    const json_t *docs = json_object_get(cfg, "documents");
    if (!json_is_array(docs) || json_array_size(docs) == 0)
        return kiln_error_set(err, -KILN_E_INVALID, "%s: 'documents' (a list) is required",
                              run->opts->config_path);
    run->doc_paths = kiln_new(char *, json_array_size(docs) + 1);
    run->cfg_doc_params = json_array();
    size_t i;
    json_t *d;
    json_array_foreach(docs, i, d)
    {
        const char *path = kiln_json_get_str(d, "path");
        if (!path)
            return kiln_error_set(err, -KILN_E_INVALID, "%s: documents[%zu].path is required",
                                  run->opts->config_path, i);
        run->doc_paths[i] = kiln_strdup(path);
        json_t *params = json_object();
        size_t k;
        json_t *p;
        json_array_foreach(json_object_get(d, "parameters"), k, p)
        {
            const char *n = kiln_json_get_str(p, "name"), *v = kiln_json_get_str(p, "value");
            if (n && v)
                json_object_set_new(params, n, json_string(v));
        }
        json_array_append_new(run->cfg_doc_params, params);
    }
    run->cfg = json_incref(cfg);
    return 0;
}

static const char *
cfg_str(const struct run *run, const char *key)
{
    return run->cfg ? kiln_json_get_str(run->cfg, key) : NULL;
}

static int
setup_log_folder(struct run *run, struct kiln_error *err)
{
    const char *dir = run->opts->log_directory ? run->opts->log_directory
                                               : cfg_str(run, "logDirectory");
    if (!dir || !*dir)
        dir = ".";
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y-%m-%d_%H-%M-%S", &tm);
    _cleanup_free_ char *name = kiln_asprintf("TOE_%s_UTC-0_%s", stamp, run->execution_id);
    run->log_folder = kiln_path_join(dir, name);
    int r = kiln_mkdir_p(run->log_folder, 0755, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < run->n_docs; i++) {
        const char *base = strrchr(run->docs[i]->path, '/');
        base = base ? base + 1 : run->docs[i]->path;
        _cleanup_free_ char *copy = kiln_asprintf("%s/D%zu__%s", run->log_folder, i, base);
        r = kiln_write_file_atomic(copy, run->docs[i]->data, run->docs[i]->len, 0644, err);
        if (r < 0)
            return r;
    }
    return 0;
}

static FILE *
open_log(struct run *run, const char *name)
{
    _cleanup_free_ char *path = kiln_path_join(run->log_folder, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "a");
    if (!f)
        close(fd);
    return f;
}

static int
load_resume(struct run *run, struct kiln_error *err)
{
    _cleanup_free_ char *path = state_path(run);
    if (access(path, F_OK) != 0)
        return 0;
    json_t *st = NULL;
    int r = kiln_json_load_file(path, 256u << 20, &st, err);
    if (r < 0)
        return r;
    run->resume = st;
    const json_t *hashes = json_object_get(st, "documents");
    bool same = json_integer_value(json_object_get(st, "version")) == STATE_VERSION &&
                json_array_size(hashes) == run->n_docs;
    for (size_t i = 0; same && i < run->n_docs; i++)
        same = kiln_streq(json_string_value(json_array_get(hashes, i)), run->doc_hashes[i]);
    if (!same)
        return kiln_error_set(err, -KILN_E_INVALID,
                              "%s: saved state is for other documents; remove it to start over",
                              path);
    return 1;
}

int
kiln_engine_run(const struct kiln_run_options *opts, struct kiln_run_result *result,
                struct kiln_error *err)
{
    struct run run = {.opts = opts};
    kiln_buf_init(&run.line_out);
    kiln_buf_init(&run.line_err);
    int r = 0;
    *result = (struct kiln_run_result){0};
    if (opts->config_path && (r = apply_config(&run, err)) < 0)
        goto out;
    if (!run.doc_paths) {
        size_t n = 0;
        while (opts->documents && opts->documents[n])
            n++;
        if (n == 0) {
            r = kiln_error_set(err, -KILN_E_INVALID, "no documents to run (--documents)");
            goto out;
        }
        run.doc_paths = kiln_new(char *, n + 1);
        for (size_t i = 0; i < n; i++)
            run.doc_paths[i] = kiln_strdup(opts->documents[i]);
    }
    /* Validate everything first: all problems at once. */
    struct kiln_diags diags = {0};
    size_t n = 0;
    while (run.doc_paths[n])
        n++;
    run.docs = kiln_new(struct kiln_document *, n);
    run.doc_hashes = kiln_new(char *, n);
    run.doc_params = kiln_new(json_t *, n);
    for (size_t i = 0; i < n; i++) {
        if (kiln_document_load(run.doc_paths[i], &run.docs[i], &diags) == 0)
            kiln_document_validate(run.docs[i], 1, &diags);
        run.n_docs = i + 1;
        char hex[KILN_HASH_MAX_HEX] = "";
        if (run.docs[i])
            kiln_hash_buf_hex(KILN_HASH_SHA256, run.docs[i]->data, run.docs[i]->len, hex);
        run.doc_hashes[i] = kiln_strdup(hex);
        run.doc_params[i] = json_object();
        if (run.cfg_doc_params)
            json_object_update(run.doc_params[i], json_array_get(run.cfg_doc_params, i));
    }
    json_decref(run.cfg_doc_params);
    run.cfg_doc_params = NULL;
    if (diags.n) {
        char *msg = kiln_diags_format(&diags);
        kiln_diags_clear(&diags);
        r = kiln_error_set(err, -KILN_E_INVALID, "%s", msg);
        free(msg);
        goto out;
    }
    /* Parameters: the command line wins over the config file; each must be declared. */
    json_t *global = json_object();
    size_t k;
    json_t *p;
    json_array_foreach(run.cfg ? json_object_get(run.cfg, "parameters") : NULL, k, p)
    {
        const char *pn = kiln_json_get_str(p, "name"), *pv = kiln_json_get_str(p, "value");
        if (pn && pv)
            json_object_set_new(global, pn, json_string(pv));
    }
    if (opts->parameters)
        json_object_update(global, opts->parameters);
    const char *key;
    json_t *val;
    json_object_foreach(global, key, val)
    {
        bool declared = false;
        for (size_t i = 0; i < run.n_docs && !declared; i++)
            for (size_t j = 0; j < run.docs[i]->n_parameters && !declared; j++)
                declared = kiln_streq(run.docs[i]->parameters[j].name, key);
        if (!declared) {
            r = kiln_error_set(err, -KILN_E_INVALID, "parameter '%s' is not declared by any "
                                                     "document", key);
            json_decref(global);
            goto out;
        }
    }
    for (size_t i = 0; i < run.n_docs; i++) {
        json_t *merged = json_deep_copy(global);
        json_object_update(merged, run.doc_params[i]);
        json_decref(run.doc_params[i]);
        run.doc_params[i] = merged;
    }
    json_decref(global);
    if (opts->phases)
        for (size_t i = 0; opts->phases[i]; i++) {
            char **v = run.phases;
            size_t m = 0;
            while (v && v[m])
                m++;
            run.phases = kiln_reallocarray(v, m + 2, sizeof(char *));
            run.phases[m] = kiln_strdup(opts->phases[i]);
            run.phases[m + 1] = NULL;
        }
    else if (cfg_str(&run, "phases"))
        run.phases = kiln_engine_split(cfg_str(&run, "phases"), ',');

    /* State: resume when a previous run saved one in this state directory. */
    const char *sd = opts->state_directory ? opts->state_directory : cfg_str(&run, "stateDirectory");
    if (sd && *sd) {
        run.state_dir = kiln_strdup(sd);
    } else {
        /* A stable default, so that the same command run again after a reboot resumes. */
        const char *ld = opts->log_directory ? opts->log_directory : cfg_str(&run, "logDirectory");
        run.state_dir = kiln_path_join(ld && *ld ? ld : ".", ".kiln-agent-state");
    }
    int resuming = 0;
    if (run.state_dir && (resuming = load_resume(&run, err)) < 0) {
        r = resuming;
        goto out;
    }
    if (resuming) {
        run.execution_id = kiln_strdup(kiln_json_get_str(run.resume, "executionId"));
        run.log_folder = kiln_strdup(kiln_json_get_str(run.resume, "logFolder"));
        run.start_time = kiln_strdup(kiln_json_get_str(run.resume, "startTime"));
        run.detailed = json_incref(json_object_get(run.resume, "detailedOutput"));
        json_t *c = json_object_get(run.resume, "counts");
        run.executed = (int)json_integer_value(json_object_get(c, "executed"));
        run.failed = (int)json_integer_value(json_object_get(c, "failed"));
        run.ignored = (int)json_integer_value(json_object_get(c, "ignored"));
        r = kiln_mkdir_p(run.log_folder, 0755, err);
        if (r < 0)
            goto out;
    } else {
        const char *id = opts->execution_id ? opts->execution_id : cfg_str(&run, "executionId");
        run.execution_id = id && *id ? kiln_strdup(id) : kiln_engine_uuid();
        if (!kiln_name_valid(run.execution_id)) {
            r = kiln_error_set(err, -KILN_E_INVALID,
                               "execution id '%s': use letters, digits, '_' and '-'",
                               run.execution_id);
            goto out;
        }
        r = setup_log_folder(&run, err);
        if (r < 0)
            goto out;
        char t[64];
        now_rfc3339(t, sizeof(t), false);
        run.start_time = kiln_strdup(t);
        run.detailed = json_object();
        json_object_set_new(run.detailed, "executionId", json_string(run.execution_id));
        json_object_set_new(run.detailed, "status", json_string("running"));
        json_object_set_new(run.detailed, "startTime", json_string(run.start_time));
        json_object_set_new(run.detailed, "endTime", json_string(run.start_time));
        json_object_set_new(run.detailed, "failureMessage", json_string(""));
        json_object_set_new(run.detailed, "documents", json_array());
    }
    run.app_log = open_log(&run, "application.log");
    run.console_log = open_log(&run, "console.log");
    result->log_folder = kiln_strdup(run.log_folder);
    if (resuming)
        logline(&run, true, "Resuming execution %s after a reboot", run.execution_id);
    else
        logline(&run, true, "Setup: STARTED SETUP");
    for (size_t i = 0; i < run.n_docs; i++)
        logline(&run, false, "Setup: Document %s is a local path", run.docs[i]->path);

    size_t d0 = 0;
    if (resuming) {
        d0 = (size_t)json_integer_value(json_object_get(run.resume, "document"));
        const json_t *pos = json_object_get(run.resume, "positions");
        const json_t *pending = json_object_get(run.resume, "pending");
        for (size_t i = 0; i <= KILN_DOC_MAX_NESTING; i++) {
            const json_t *pi = json_array_get(pos, i), *pe = json_array_get(pending, i);
            run.pos[i].phase = (size_t)json_integer_value(json_object_get(pi, "phase"));
            run.pos[i].step = (size_t)json_integer_value(json_object_get(pi, "step"));
            run.pos[i].rerun = json_is_true(json_object_get(pi, "rerun"));
            run.pending[i] = json_is_object(pe) ? json_incref((json_t *)pe) : NULL;
        }
    }
    bool failed = false, ignored = false, cancelled = false, reboot = false;
    const char *failure = NULL;
    json_t *doc_recs = json_object_get(run.detailed, "documents");
    for (size_t i = 0; i < json_array_size(doc_recs); i++) {
        const char *st = kiln_json_get_str(json_array_get(doc_recs, i), "status");
        failed |= kiln_streq(st, "failed");
        ignored |= kiln_streq(st, "SuccessWithIgnoredFailure");
    }
    for (size_t i = d0; i < run.n_docs; i++) {
        bool resume_here = resuming && i == d0 && json_array_size(doc_recs) == i + 1;
        json_t *doc_rec;
        if (resume_here) {
            doc_rec = json_array_get(doc_recs, i);
        } else {
            doc_rec = json_object();
            json_array_append_new(doc_recs, doc_rec);
        }
        struct counts c = {0};
        r = exec_document(&run, run.docs[i], run.doc_params[i], run.phases, 1, doc_rec, &c,
                          resume_here);
        if (r < 0)
            goto out;
        run.executed += c.executed;
        run.failed += c.failed;
        run.ignored += c.ignored;
        failed |= c.failed_doc;
        ignored |= c.ignored_doc;
        if (c.failed_doc && !failure)
            failure = kiln_json_get_str(doc_rec, "failureMessage");
        if (c.reboot) {
            reboot = true;
            r = save_state(&run, i, err);
            if (r < 0)
                goto out;
            break;
        }
        if (c.cancelled) {
            cancelled = true;
            break;
        }
        if (c.aborted)
            break;
    }
    if (reboot) {
        result->status = KILN_RUN_REBOOT;
        json_object_set_new(run.detailed, "status", json_string("pending reboot"));
        logline(&run, true, "Reboot requested: state saved in %s; run the same command again "
                            "with --state-directory %s to resume",
                run.state_dir, run.state_dir);
        emit(&run, json_pack("{s:s,s:s}", "event", "reboot-requested", "stateDirectory",
                             run.state_dir));
        write_outputs(&run);
        result->failure = kiln_asprintf("reboot requested; resume with --state-directory %s",
                                        run.state_dir);
        r = 0;
        goto out;
    }
    if (run.resume) {
        char *sp = state_path(&run);
        unlink(sp);
        free(sp);
    }
    const char *status = cancelled && !failed ? "cancelled" : status_name(failed, ignored);
    json_object_set_new(run.detailed, "status", json_string(status));
    json_object_set_new(run.detailed, "endTime", json_now());
    if (failure)
        json_object_set_new(run.detailed, "failureMessage", json_string(failure));
    result->status = cancelled && !failed ? KILN_RUN_CANCELLED
                     : failed             ? KILN_RUN_FAILED
                     : ignored            ? KILN_RUN_SUCCESS_WITH_IGNORED_FAILURE
                                          : KILN_RUN_SUCCESS;
    if (failure)
        result->failure = kiln_strdup(failure);
    logline(&run, true, "%s", failed ? "TOE has completed execution with failures"
                                     : "TOE has completed execution successfully");
    result->executed = run.executed;
    result->failed = run.failed;
    result->ignored = run.ignored;
    result->execution_id = kiln_strdup(run.execution_id);
    write_outputs(&run);
    r = 0;
out:
    if (result->status == KILN_RUN_REBOOT) {
        result->executed = run.executed;
        result->failed = run.failed;
        result->ignored = run.ignored;
        result->execution_id = run.execution_id ? kiln_strdup(run.execution_id) : NULL;
    }
    json_decref(run.cfg);
    run_clear(&run);
    return r;
}
