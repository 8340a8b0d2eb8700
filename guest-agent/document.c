/* AWSTOE component documents: diagnostics, the parser (YAML tree into struct kiln_document with
 * every schema rule checked) and the loading of several documents for validation. */
#include "guest-agent/document.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "common/fs.h"

#define KILN_DOC_MAX_BYTES (4u << 20)

void
kiln_diags_clear(struct kiln_diags *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].file);
        free(d->v[i].field);
        free(d->v[i].message);
    }
    free(d->v);
    *d = (struct kiln_diags){0};
}

void
kiln_diags_add(struct kiln_diags *d, const char *file, const struct kiln_yaml_node *at,
               const char *field, const char *fmt, ...)
{
    if (!d)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *message = NULL;
    if (vasprintf(&message, fmt, ap) < 0)
        abort();
    va_end(ap);
    /* The same problem at the same place is reported once (a reference used twice in a line). */
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].line == (at ? at->line : 0) && d->v[i].column == (at ? at->column : 0) &&
            strcmp(d->v[i].message, message) == 0 && kiln_streq(d->v[i].file, file)) {
            free(message);
            return;
        }
    if (d->n >= KILN_DOC_MAX_DIAGS) {
        free(message);
        d->dropped++;
        return;
    }
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->v = kiln_reallocarray(d->v, d->cap, sizeof(*d->v));
    }
    struct kiln_diag *g = &d->v[d->n++];
    *g = (struct kiln_diag){0};
    g->file = file ? kiln_strdup(file) : NULL;
    g->line = at ? at->line : 0;
    g->column = at ? at->column : 0;
    g->field = field ? kiln_strdup(field) : NULL;
    g->message = message;
}

static void
format_one(struct kiln_buf *b, const struct kiln_diag *g)
{
    if (g->file) {
        kiln_buf_append_str(b, g->file);
        if (g->line)
            kiln_buf_appendf(b, ":%u:%u", g->line, g->column);
        kiln_buf_append_str(b, ": ");
    }
    if (g->field && *g->field)
        kiln_buf_appendf(b, "%s: ", g->field);
    kiln_buf_append_str(b, g->message);
}

char *
kiln_diags_format(const struct kiln_diags *d)
{
    _cleanup_buf_ struct kiln_buf b;
    kiln_buf_init(&b);
    for (size_t i = 0; d && i < d->n; i++) {
        format_one(&b, &d->v[i]);
        kiln_buf_append_char(&b, '\n');
    }
    if (d && d->dropped)
        kiln_buf_appendf(&b, "(%zu more problems not shown)\n", d->dropped);
    return kiln_buf_steal(&b);
}

bool
kiln_diags_contains(const struct kiln_diags *d, const char *needle)
{
    for (size_t i = 0; d && i < d->n; i++) {
        _cleanup_buf_ struct kiln_buf b;
        kiln_buf_init(&b);
        format_one(&b, &d->v[i]);
        if (strstr(b.data, needle))
            return true;
    }
    return false;
}

bool
kiln_name_valid(const char *s)
{
    if (!s || !*s || strlen(s) > 128)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return false;
    return true;
}

void
kiln_document_free(struct kiln_document *doc)
{
    if (!doc)
        return;
    for (size_t i = 0; i < doc->n_phases; i++)
        free(doc->phases[i].steps);
    free(doc->phases);
    free(doc->parameters);
    free(doc->constants);
    kiln_yaml_doc_free(doc->yaml);
    free(doc->data);
    free(doc->path);
    free(doc);
}

const struct kiln_doc_var *
kiln_document_find_var(const struct kiln_document *doc, const char *name)
{
    for (size_t i = 0; i < doc->n_parameters; i++)
        if (kiln_streq(doc->parameters[i].name, name))
            return &doc->parameters[i];
    for (size_t i = 0; i < doc->n_constants; i++)
        if (kiln_streq(doc->constants[i].name, name))
            return &doc->constants[i];
    return NULL;
}

bool
kiln_doc_var_allows(const struct kiln_doc_var *v, const char *value)
{
    if (!v->allowed)
        return true;
    for (size_t i = 0; i < v->allowed->n; i++)
        if (kiln_streq(v->allowed->items[i]->value, value))
            return true;
    return false;
}

const struct kiln_doc_phase *
kiln_document_find_phase(const struct kiln_document *doc, const char *name)
{
    for (size_t i = 0; i < doc->n_phases; i++)
        if (kiln_streq(doc->phases[i].name, name))
            return &doc->phases[i];
    return NULL;
}

/* Parsing context: the document and where problems go. */
struct parser {
    struct kiln_document *doc;
    struct kiln_diags *diags;
    const char *file;
};

#define DIAG(p, at, field, ...) kiln_diags_add((p)->diags, (p)->file, (at), (field), __VA_ARGS__)

static void
check_keys(struct parser *p, const struct kiln_yaml_node *map, const char *field,
           const char *const *known)
{
    for (size_t i = 0; i < map->n; i++) {
        const char *k = map->keys[i]->value;
        bool ok = false;
        for (size_t j = 0; known[j] && !ok; j++)
            ok = strcmp(k, known[j]) == 0;
        if (!ok)
            DIAG(p, map->keys[i], field, "unknown key '%s'", k);
    }
}

/* A scalar string field; NULL (with a diagnostic when required or of the wrong kind). */
static const char *
get_text(struct parser *p, const struct kiln_yaml_node *map, const char *key, const char *field,
         bool required)
{
    struct kiln_yaml_node *n = kiln_yaml_map_get(map, key);
    _cleanup_free_ char *f = kiln_asprintf("%s%s%s", field, *field ? "." : "", key);
    if (!n) {
        if (required)
            DIAG(p, map, field, "missing required key '%s'", key);
        return NULL;
    }
    if (n->kind != KILN_YAML_SCALAR || (n->plain && kiln_yaml_is_null(n))) {
        DIAG(p, n, f, "must be a string, not %s",
             n->kind == KILN_YAML_SCALAR ? "null" : kiln_yaml_kind_name(n->kind));
        return NULL;
    }
    return n->value;
}

static void
parse_vars(struct parser *p, const struct kiln_yaml_node *list, const char *what, bool constant,
           struct kiln_doc_var **ret, size_t *ret_n)
{
    if (list->kind != KILN_YAML_SEQUENCE) {
        DIAG(p, list, what, "must be a list, not %s", kiln_yaml_kind_name(list->kind));
        return;
    }
    struct kiln_doc_var *v = kiln_new(struct kiln_doc_var, list->n ? list->n : 1);
    size_t n = 0;
    static const char *const param_keys[] = {"type", "default", "description", "allowedValues",
                                             NULL};
    static const char *const const_keys[] = {"type", "value", "description", NULL};
    for (size_t i = 0; i < list->n; i++) {
        const struct kiln_yaml_node *item = list->items[i];
        _cleanup_free_ char *f = kiln_asprintf("%s[%zu]", what, i);
        if (item->kind != KILN_YAML_MAPPING || item->n != 1) {
            DIAG(p, item, f, "must be a mapping with exactly one key, the %s name",
                 constant ? "constant" : "parameter");
            continue;
        }
        const struct kiln_yaml_node *key = item->keys[0], *body = item->items[0];
        const char *name = key->value;
        _cleanup_free_ char *fn = kiln_asprintf("%s.%s", what, name);
        if (!kiln_name_valid(name))
            DIAG(p, key, f, "invalid name '%s': use letters, digits, '_' and '-'", name);
        if (body->kind != KILN_YAML_MAPPING) {
            DIAG(p, body, fn, "must be a mapping (type, %s, description)",
                 constant ? "value" : "default");
            continue;
        }
        check_keys(p, body, fn, constant ? const_keys : param_keys);
        const char *type = get_text(p, body, "type", fn, true);
        if (type && strcmp(type, "string") != 0)
            DIAG(p, kiln_yaml_map_get(body, "type"), fn,
                 "unsupported type '%s': only 'string' is supported", type);
        const char *value = get_text(p, body, constant ? "value" : "default", fn, constant);
        bool dup = false;
        for (size_t j = 0; j < p->doc->n_parameters && !dup; j++)
            dup = kiln_streq(p->doc->parameters[j].name, name);
        for (size_t j = 0; j < p->doc->n_constants && !dup; j++)
            dup = kiln_streq(p->doc->constants[j].name, name);
        for (size_t j = 0; j < n && !dup; j++)
            dup = kiln_streq(v[j].name, name);
        if (dup) {
            DIAG(p, key, f, "duplicate variable name '%s'", name);
            continue;
        }
        const struct kiln_yaml_node *allowed = constant ? NULL
                                                        : kiln_yaml_map_get(body, "allowedValues");
        if (allowed) {
            _cleanup_free_ char *fa = kiln_asprintf("%s.allowedValues", fn);
            bool ok = allowed->kind == KILN_YAML_SEQUENCE && allowed->n > 0;
            for (size_t j = 0; ok && j < allowed->n; j++)
                ok = allowed->items[j]->kind == KILN_YAML_SCALAR;
            if (!ok) {
                DIAG(p, allowed, fa, "must be a non-empty list of strings");
                allowed = NULL;
            }
        }
        v[n++] = (struct kiln_doc_var){
            .name = name,
            .type = type,
            .value = value,
            .description = get_text(p, body, "description", fn, false),
            .allowed = allowed,
            .node = key,
        };
        if (value && !kiln_doc_var_allows(&v[n - 1], value))
            DIAG(p, kiln_yaml_map_get(body, "default"), fn,
                 "default '%s' is not one of the allowedValues", value);
    }
    *ret = v;
    *ret_n = n;
}

static int
get_int(struct parser *p, const struct kiln_yaml_node *n, const char *field, long long *ret)
{
    if (n->kind != KILN_YAML_SCALAR || kiln_yaml_int(n, ret) < 0) {
        DIAG(p, n, field, "must be an integer");
        return -EINVAL;
    }
    return 0;
}

static bool
has_var(const struct kiln_yaml_node *n)
{
    return n && n->kind == KILN_YAML_SCALAR && strstr(n->value, "{{");
}

static void
parse_loop(struct parser *p, const struct kiln_yaml_node *n, const char *field,
           struct kiln_doc_loop *loop)
{
    static const char *const loop_keys[] = {"name", "for", "forEach", NULL};
    static const char *const for_keys[] = {"start", "end", "updateBy", NULL};
    static const char *const each_keys[] = {"list", "delimiter", NULL};
    if (n->kind != KILN_YAML_MAPPING) {
        DIAG(p, n, field, "must be a mapping (name, for or forEach)");
        return;
    }
    check_keys(p, n, field, loop_keys);
    const char *name = get_text(p, n, "name", field, false);
    if (name && !kiln_name_valid(name))
        DIAG(p, kiln_yaml_map_get(n, "name"), field,
             "invalid loop name '%s': use letters, digits, '_' and '-'", name);
    else if (name && strcmp(name, "loop") == 0)
        DIAG(p, kiln_yaml_map_get(n, "name"), field, "a loop may not be named 'loop'");
    loop->name = name;
    struct kiln_yaml_node *f = kiln_yaml_map_get(n, "for");
    struct kiln_yaml_node *e = kiln_yaml_map_get(n, "forEach");
    if ((f != NULL) == (e != NULL)) {
        DIAG(p, n, field, "exactly one of 'for' and 'forEach' is required");
        return;
    }
    if (f) {
        _cleanup_free_ char *ff = kiln_asprintf("%s.for", field);
        if (f->kind != KILN_YAML_MAPPING) {
            DIAG(p, f, ff, "must be a mapping (start, end, updateBy)");
            return;
        }
        check_keys(p, f, ff, for_keys);
        loop->kind = KILN_LOOP_FOR;
        loop->start = kiln_yaml_map_get(f, "start");
        loop->end = kiln_yaml_map_get(f, "end");
        loop->update_by = kiln_yaml_map_get(f, "updateBy");
        const struct kiln_yaml_node *parts[] = {loop->start, loop->end, loop->update_by};
        static const char *const names[] = {"start", "end", "updateBy"};
        long long v[3];
        bool literal = true;
        for (int i = 0; i < 3; i++) {
            _cleanup_free_ char *fi = kiln_asprintf("%s.%s", ff, names[i]);
            if (!parts[i]) {
                DIAG(p, f, ff, "missing required key '%s'", names[i]);
                literal = false;
            } else if (has_var(parts[i])) {
                literal = false;
            } else if (get_int(p, parts[i], fi, &v[i]) < 0) {
                literal = false;
            }
        }
        if (literal) {
            _cleanup_free_ char *fu = kiln_asprintf("%s.updateBy", ff);
            if (v[2] == 0)
                DIAG(p, loop->update_by, fu, "must not be 0 (the loop would never end)");
            else if ((v[1] > v[0] && v[2] < 0) || (v[1] < v[0] && v[2] > 0))
                DIAG(p, loop->update_by, fu,
                     "moves away from end %lld (start %lld): the loop would never end", v[1],
                     v[0]);
            else if ((v[1] - v[0]) / v[2] >= KILN_DOC_MAX_ITERATIONS)
                DIAG(p, loop->update_by, fu, "more than %d iterations", KILN_DOC_MAX_ITERATIONS);
        }
        return;
    }
    _cleanup_free_ char *fe = kiln_asprintf("%s.forEach", field);
    if (e->kind == KILN_YAML_SEQUENCE) {
        loop->kind = KILN_LOOP_FOREACH_LIST;
        loop->list = e;
        for (size_t i = 0; i < e->n; i++)
            if (e->items[i]->kind != KILN_YAML_SCALAR)
                DIAG(p, e->items[i], fe, "items must be strings, not %s",
                     kiln_yaml_kind_name(e->items[i]->kind));
        if (e->n == 0)
            DIAG(p, e, fe, "must not be empty");
        return;
    }
    if (e->kind != KILN_YAML_MAPPING) {
        DIAG(p, e, fe, "must be a list, or a mapping with 'list' and 'delimiter'");
        return;
    }
    check_keys(p, e, fe, each_keys);
    loop->kind = KILN_LOOP_FOREACH_TEXT;
    loop->list = kiln_yaml_map_get(e, "list");
    if (!get_text(p, e, "list", fe, true))
        loop->list = NULL;
    loop->delimiter = ",";
    const char *delim = get_text(p, e, "delimiter", fe, false);
    if (delim) {
        if (strlen(delim) != 1 || !strchr(".,;:\n\t -_", delim[0]))
            DIAG(p, kiln_yaml_map_get(e, "delimiter"), fe,
                 "delimiter must be one character of . , ; : newline tab space - _");
        else
            loop->delimiter = delim;
    }
}

static void
parse_step(struct parser *p, const struct kiln_yaml_node *n, const char *field,
           struct kiln_doc_step *s)
{
    static const char *const step_keys[] = {"name",      "action",  "inputs", "timeoutSeconds",
                                            "onFailure", "maxAttempts", "loop", "if",
                                            NULL};
    s->node = n;
    s->timeout_seconds = KILN_DOC_DEFAULT_TIMEOUT;
    s->on_failure = KILN_ON_FAILURE_ABORT;
    s->max_attempts = 1;
    check_keys(p, n, field, step_keys);
    s->name = get_text(p, n, "name", field, true);
    if (s->name && !kiln_name_valid(s->name))
        DIAG(p, kiln_yaml_map_get(n, "name"), field,
             "invalid step name '%s': use letters, digits, '_' and '-'", s->name);
    s->action = get_text(p, n, "action", field, true);
    if (s->action)
        s->module = kiln_module_find(s->action);
    s->inputs = kiln_yaml_map_get(n, "inputs");
    struct kiln_yaml_node *t = kiln_yaml_map_get(n, "timeoutSeconds");
    if (t) {
        _cleanup_free_ char *f = kiln_asprintf("%s.timeoutSeconds", field);
        long long v;
        s->timeout_set = true;
        if (get_int(p, t, f, &v) == 0) {
            if (v != -1 && (v < 1 || v > INT_MAX))
                DIAG(p, t, f, "must be -1 (no timeout) or a positive number of seconds");
            else
                s->timeout_seconds = (int)v;
        }
    }
    struct kiln_yaml_node *o = kiln_yaml_map_get(n, "onFailure");
    if (o) {
        _cleanup_free_ char *f = kiln_asprintf("%s.onFailure", field);
        const char *v = kiln_yaml_scalar(o);
        if (kiln_streq(v, "Abort"))
            s->on_failure = KILN_ON_FAILURE_ABORT;
        else if (kiln_streq(v, "Continue"))
            s->on_failure = KILN_ON_FAILURE_CONTINUE;
        else if (kiln_streq(v, "Ignore"))
            s->on_failure = KILN_ON_FAILURE_IGNORE;
        else
            DIAG(p, o, f, "must be one of Abort, Continue, Ignore (got '%s')",
                 v ? v : kiln_yaml_kind_name(o->kind));
    }
    struct kiln_yaml_node *m = kiln_yaml_map_get(n, "maxAttempts");
    if (m) {
        _cleanup_free_ char *f = kiln_asprintf("%s.maxAttempts", field);
        long long v;
        s->max_attempts_set = true;
        if (get_int(p, m, f, &v) == 0) {
            if (v < 1 || v > 1000)
                DIAG(p, m, f, "must be between 1 and 1000");
            else
                s->max_attempts = (int)v;
        }
    }
    struct kiln_yaml_node *l = kiln_yaml_map_get(n, "loop");
    if (l) {
        _cleanup_free_ char *f = kiln_asprintf("%s.loop", field);
        parse_loop(p, l, f, &s->loop);
    }
    s->if_node = kiln_yaml_map_get(n, "if");
}

static void
parse_phases(struct parser *p, const struct kiln_yaml_node *list)
{
    static const char *const phase_keys[] = {"name", "steps", NULL};
    if (list->kind != KILN_YAML_SEQUENCE) {
        DIAG(p, list, "phases", "must be a list, not %s", kiln_yaml_kind_name(list->kind));
        return;
    }
    if (list->n == 0)
        DIAG(p, list, "phases", "must contain at least one phase");
    struct kiln_document *doc = p->doc;
    doc->phases = kiln_new(struct kiln_doc_phase, list->n ? list->n : 1);
    bool standard = false;
    for (size_t i = 0; i < list->n; i++) {
        const struct kiln_yaml_node *pn = list->items[i];
        _cleanup_free_ char *f = kiln_asprintf("phases[%zu]", i);
        if (pn->kind != KILN_YAML_MAPPING) {
            DIAG(p, pn, f, "must be a mapping (name, steps)");
            continue;
        }
        check_keys(p, pn, f, phase_keys);
        struct kiln_doc_phase *ph = &doc->phases[doc->n_phases];
        ph->node = pn;
        ph->name = get_text(p, pn, "name", f, true);
        if (ph->name && !kiln_name_valid(ph->name))
            DIAG(p, kiln_yaml_map_get(pn, "name"), f,
                 "invalid phase name '%s': use letters, digits, '_' and '-'", ph->name);
        if (ph->name && kiln_document_find_phase(doc, ph->name))
            DIAG(p, kiln_yaml_map_get(pn, "name"), f, "duplicate phase name '%s'", ph->name);
        if (ph->name && (strcmp(ph->name, "build") == 0 || strcmp(ph->name, "validate") == 0 ||
                         strcmp(ph->name, "test") == 0))
            standard = true;
        doc->n_phases++;
        const struct kiln_yaml_node *steps = kiln_yaml_map_get(pn, "steps");
        _cleanup_free_ char *fs = kiln_asprintf("%s.steps", f);
        if (!steps) {
            DIAG(p, pn, f, "missing required key 'steps'");
            continue;
        }
        if (steps->kind != KILN_YAML_SEQUENCE || steps->n == 0) {
            DIAG(p, steps, fs, "must be a non-empty list of steps");
            continue;
        }
        ph->steps = kiln_new(struct kiln_doc_step, steps->n);
        for (size_t j = 0; j < steps->n; j++) {
            _cleanup_free_ char *fj = kiln_asprintf("%s[%zu]", fs, j);
            if (steps->items[j]->kind != KILN_YAML_MAPPING) {
                DIAG(p, steps->items[j], fj, "must be a mapping (name, action, inputs, ...)");
                continue;
            }
            struct kiln_doc_step *s = &ph->steps[ph->n_steps];
            parse_step(p, steps->items[j], fj, s);
            for (size_t k = 0; s->name && k < ph->n_steps; k++)
                if (kiln_streq(ph->steps[k].name, s->name))
                    DIAG(p, kiln_yaml_map_get(steps->items[j], "name"), fj,
                         "duplicate step name '%s' in phase '%s'", s->name,
                         ph->name ? ph->name : "?");
            ph->n_steps++;
        }
    }
    if (list->n && !standard)
        DIAG(p, list, "phases", "must contain at least one of the phases build, validate, test");
}

int
kiln_document_parse(const char *data, size_t len, const char *source,
                    struct kiln_document **ret, struct kiln_diags *diags)
{
    static const char *const doc_keys[] = {"name",       "description", "schemaVersion",
                                           "parameters", "constants",   "phases",
                                           NULL};
    _cleanup_(kiln_document_freep) struct kiln_document *doc = kiln_new(struct kiln_document, 1);
    struct kiln_error err = {0};
    struct kiln_yaml_limits limits = {KILN_DOC_MAX_BYTES, 64, 200000};
    doc->path = kiln_strdup(source);
    doc->data = kiln_strndup(data, len);
    doc->len = len;
    int r = kiln_yaml_parse(data, len, source, &limits, &doc->yaml, &err);
    if (r < 0) {
        kiln_diags_add(diags, NULL, NULL, NULL, "%s", err.message);
        return r == -KILN_E_LIMIT ? r : -KILN_E_PARSE;
    }
    struct parser p = {doc, diags, source};
    const struct kiln_yaml_node *root = doc->yaml->root;
    if (!root || root->kind != KILN_YAML_MAPPING) {
        DIAG(&p, root, NULL, "a component document must be a mapping (name, schemaVersion, "
                             "phases, ...)");
        return -KILN_E_PARSE;
    }
    check_keys(&p, root, "", doc_keys);
    doc->name = get_text(&p, root, "name", "", false);
    doc->description = get_text(&p, root, "description", "", false);
    doc->schema_version = get_text(&p, root, "schemaVersion", "", true);
    /* 1.0 as a number or a string; a plain 1 is the same number (an AWS example writes it). */
    if (doc->schema_version && strcmp(doc->schema_version, "1.0") != 0 &&
        !(strcmp(doc->schema_version, "1") == 0 &&
          kiln_yaml_map_get(root, "schemaVersion")->plain))
        DIAG(&p, kiln_yaml_map_get(root, "schemaVersion"), "schemaVersion",
             "unsupported schema version '%s': must be 1.0", doc->schema_version);
    const struct kiln_yaml_node *n;
    if ((n = kiln_yaml_map_get(root, "parameters")) && !kiln_yaml_is_null(n))
        parse_vars(&p, n, "parameters", false, &doc->parameters, &doc->n_parameters);
    if ((n = kiln_yaml_map_get(root, "constants")) && !kiln_yaml_is_null(n))
        parse_vars(&p, n, "constants", true, &doc->constants, &doc->n_constants);
    if ((n = kiln_yaml_map_get(root, "phases")))
        parse_phases(&p, n);
    else
        DIAG(&p, root, NULL, "missing required key 'phases'");
    *ret = TAKE_PTR(doc);
    return 0;
}

int
kiln_document_load(const char *path, struct kiln_document **ret, struct kiln_diags *diags)
{
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    struct kiln_error err = {0};
    int r = kiln_read_file(path, KILN_DOC_MAX_BYTES, &data, &len, &err);
    if (r < 0) {
        kiln_diags_add(diags, path, NULL, NULL, "cannot read: %s", kiln_strerror(r));
        return r;
    }
    return kiln_document_parse(data, len, path, ret, diags);
}

char *
kiln_document_resolve_path(const struct kiln_document *parent, const char *path)
{
    if (path[0] == '/' || !parent || !strchr(parent->path, '/'))
        return kiln_strdup(path);
    const char *slash = strrchr(parent->path, '/');
    return kiln_asprintf("%.*s/%s", (int)(slash - parent->path), parent->path, path);
}

int
kiln_documents_check(char **paths, struct kiln_diags *diags)
{
    int ret = 0;
    for (size_t i = 0; paths && paths[i]; i++) {
        _cleanup_(kiln_document_freep) struct kiln_document *doc = NULL;
        size_t before = diags->n;
        int r = kiln_document_load(paths[i], &doc, diags);
        if (r < 0) {
            if (ret == 0)
                ret = r == -KILN_E_PARSE ? r : -KILN_E_INVALID;
            continue;
        }
        kiln_document_validate(doc, 1, diags);
        if (diags->n > before && ret == 0)
            ret = -KILN_E_INVALID;
    }
    return ret;
}

bool
kiln_ref_next(const char *s, const char **ret_start, const char **ret_end)
{
    const char *a = strstr(s, "{{");
    if (!a)
        return false;
    const char *b = strstr(a + 2, "}}");
    if (!b)
        return false;
    *ret_start = a;
    *ret_end = b + 2;
    return true;
}

bool
kiln_ref_parse(const char *s, size_t len, struct kiln_ref *ret)
{
    const char *p = s, *end = s + len;
    *ret = (struct kiln_ref){0};
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (p == end)
        return false;
    for (;;) {
        if (ret->n == KILN_REF_MAX_PARTS)
            return false;
        size_t n = 0;
        while (p + n < end && (isalnum((unsigned char)p[n]) || p[n] == '_' || p[n] == '-'))
            n++;
        if (n == 0 || n > KILN_REF_MAX_PART)
            return false;
        memcpy(ret->part[ret->n], p, n);
        ret->part[ret->n][n] = '\0';
        ret->index[ret->n] = -1;
        p += n;
        if (p < end && *p == '[') {
            p++;
            long v = 0;
            size_t digits = 0;
            while (p < end && isdigit((unsigned char)*p) && digits < 9) {
                v = v * 10 + (*p - '0');
                p++;
                digits++;
            }
            if (digits == 0 || p >= end || *p != ']')
                return false;
            p++;
            ret->index[ret->n] = v;
        }
        ret->n++;
        if (p == end)
            return true;
        if (*p != '.')
            return false;
        p++;
    }
}
