/* The validator: action inputs against the module table, conditions, {{ references }} (variables,
 * loops, chaining) and ExecuteDocument nesting. Parsing (document.c) has already checked the
 * document's own schema; this adds what needs the whole document or the module table. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "guest-agent/document.h"

struct vctx {
    const struct kiln_document *doc;
    struct kiln_diags *diags;
    const char *file;
    size_t phase, step; /* position of the step being checked */
    const struct kiln_doc_step *s;
    char **stack; /* real paths of the documents being validated (cycle detection) */
    size_t depth;
};

#define VDIAG(v, at, field, ...) kiln_diags_add((v)->diags, (v)->file, (at), (field), __VA_ARGS__)

static void
check_reference(struct vctx *v, const struct kiln_yaml_node *at, const char *field,
                const char *text, size_t len, bool in_inputs)
{
    struct kiln_ref ref;
    if (!kiln_ref_parse(text, len, &ref))
        return;
    while (len && (*text == ' ' || *text == '\t')) {
        text++;
        len--;
    }
    while (len && (text[len - 1] == ' ' || text[len - 1] == '\t'))
        len--;
    const struct kiln_doc_step *s = v->s;
    if (ref.n == 1) {
        if (!kiln_document_find_var(v->doc, ref.part[0]))
            VDIAG(v, at, field, "'{{ %.*s }}': no parameter or constant named '%s'", (int)len,
                  text, ref.part[0]);
        return;
    }
    if (ref.n == 2 && (strcmp(ref.part[1], "index") == 0 || strcmp(ref.part[1], "value") == 0)) {
        bool is_loop = strcmp(ref.part[0], "loop") == 0;
        bool named = s->loop.name && strcmp(ref.part[0], s->loop.name) == 0;
        if (!is_loop && !named) {
            VDIAG(v, at, field, "'{{ %s.%s }}': '%s' is not the name of this step's loop",
                  ref.part[0], ref.part[1], ref.part[0]);
            return;
        }
        if (s->loop.kind == KILN_LOOP_NONE || !in_inputs)
            VDIAG(v, at, field, "'{{ %s.%s }}' can only be used in the inputs of a step with a loop",
                  ref.part[0], ref.part[1]);
        return;
    }
    if (ref.n < 4 || (strcmp(ref.part[2], "inputs") != 0 && strcmp(ref.part[2], "outputs") != 0)) {
        VDIAG(v, at, field,
              "'{{ %.*s }}': not a reference (use {{ name }}, {{ loop.index }} or "
              "{{ phase.step.outputs.name }})",
              (int)len, text);
        return;
    }
    size_t pi;
    for (pi = 0; pi < v->doc->n_phases; pi++)
        if (kiln_streq(v->doc->phases[pi].name, ref.part[0]))
            break;
    if (pi == v->doc->n_phases) {
        VDIAG(v, at, field, "'{{ %.*s }}': no phase named '%s'", (int)len, text, ref.part[0]);
        return;
    }
    const struct kiln_doc_phase *ph = &v->doc->phases[pi];
    size_t si;
    for (si = 0; si < ph->n_steps; si++)
        if (kiln_streq(ph->steps[si].name, ref.part[1]))
            break;
    if (si == ph->n_steps) {
        VDIAG(v, at, field, "'{{ %.*s }}': no step named '%s' in phase '%s'", (int)len, text,
              ref.part[1], ref.part[0]);
        return;
    }
    if (pi > v->phase || (pi == v->phase && si >= v->step))
        VDIAG(v, at, field, "'{{ %.*s }}': step '%s.%s' does not run before this step", (int)len,
              text, ref.part[0], ref.part[1]);
}

static void
check_refs(struct vctx *v, const struct kiln_yaml_node *n, const char *field, bool in_inputs)
{
    if (!n)
        return;
    if (n->kind == KILN_YAML_SCALAR) {
        const char *p = n->value, *a, *b;
        while (kiln_ref_next(p, &a, &b)) {
            check_reference(v, n, field, a + 2, (size_t)(b - a - 4), in_inputs);
            p = b;
        }
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys)
            check_refs(v, n->keys[i], field, in_inputs);
        check_refs(v, n->items[i], field, in_inputs);
    }
}

static bool
scalar_is_int(const struct kiln_yaml_node *n)
{
    long long x;
    return n->kind == KILN_YAML_SCALAR && (kiln_yaml_int(n, &x) == 0 || strstr(n->value, "{{"));
}

static bool
scalar_is_bool(const struct kiln_yaml_node *n)
{
    bool b;
    return n->kind == KILN_YAML_SCALAR &&
           (kiln_yaml_bool(n, &b) == 0 || strstr(n->value, "{{") ||
            strcasecmp(n->value, "true") == 0 || strcasecmp(n->value, "false") == 0);
}

static void
check_fields(struct vctx *v, const struct kiln_module *m, const struct kiln_yaml_node *map,
             const char *field)
{
    if (map->kind != KILN_YAML_MAPPING) {
        VDIAG(v, map, field, "%s inputs must be a mapping, not %s", m->name,
              kiln_yaml_kind_name(map->kind));
        return;
    }
    for (size_t i = 0; i < map->n; i++) {
        const char *k = map->keys[i]->value;
        const struct kiln_module_field *f = NULL;
        for (const struct kiln_module_field *x = m->fields; x && x->name; x++)
            if (strcmp(x->name, k) == 0)
                f = x;
        if (!f)
            VDIAG(v, map->keys[i], field, "%s has no input named '%s'", m->name, k);
    }
    for (const struct kiln_module_field *f = m->fields; f && f->name; f++) {
        const struct kiln_yaml_node *n = kiln_yaml_map_get(map, f->name);
        _cleanup_free_ char *ff = kiln_asprintf("%s.%s", field, f->name);
        if (!n) {
            if (f->required)
                VDIAG(v, map, field, "%s requires the input '%s'", m->name, f->name);
            continue;
        }
        const char *want = NULL;
        switch (f->type) {
        case KILN_FIELD_STRING:
            if (n->kind != KILN_YAML_SCALAR || (n->plain && kiln_yaml_is_null(n)))
                want = "a string";
            break;
        case KILN_FIELD_INT:
            if (!scalar_is_int(n))
                want = "an integer";
            break;
        case KILN_FIELD_BOOL:
            if (!scalar_is_bool(n))
                want = "true or false";
            break;
        case KILN_FIELD_LIST:
            if (n->kind != KILN_YAML_SEQUENCE) {
                want = "a list";
                break;
            }
            for (size_t i = 0; i < n->n; i++)
                if (n->items[i]->kind != KILN_YAML_SCALAR)
                    VDIAG(v, n->items[i], ff, "items must be strings, not %s",
                          kiln_yaml_kind_name(n->items[i]->kind));
            break;
        case KILN_FIELD_MAP:
            if (n->kind != KILN_YAML_MAPPING)
                want = "a mapping";
            break;
        case KILN_FIELD_ANY:
            break;
        }
        if (want) {
            const char *got = n->kind != KILN_YAML_SCALAR ? kiln_yaml_kind_name(n->kind)
                              : (n->plain && kiln_yaml_is_null(n))  ? "null"
                                                                    : n->value;
            VDIAG(v, n, ff, "must be %s, not %s%s%s", want,
                  n->kind == KILN_YAML_SCALAR && !kiln_yaml_is_null(n) ? "'" : "", got,
                  n->kind == KILN_YAML_SCALAR && !kiln_yaml_is_null(n) ? "'" : "");
            continue;
        }
        if (f->allowed && n->kind == KILN_YAML_SCALAR && !strstr(n->value, "{{")) {
            bool ok = false;
            for (size_t i = 0; f->allowed[i] && !ok; i++)
                ok = strcmp(f->allowed[i], n->value) == 0;
            if (!ok) {
                _cleanup_free_ char *list = kiln_strdup("");
                for (size_t i = 0; f->allowed[i]; i++) {
                    char *l = kiln_asprintf("%s%s%s", list, i ? ", " : "", f->allowed[i]);
                    free(list);
                    list = l;
                }
                VDIAG(v, n, ff, "'%s' is not one of %s", n->value, list);
            }
        }
    }
}

struct check_ud {
    struct vctx *v;
    const char *field;
};

static void _printf_(3, 4)
module_report(void *userdata, const struct kiln_yaml_node *at, const char *fmt, ...)
{
    struct check_ud *ud = userdata;
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        abort();
    va_end(ap);
    VDIAG(ud->v, at, ud->field, "%s", msg);
}

static void validate_doc(struct vctx *parent, const struct kiln_document *doc, size_t depth,
                         struct kiln_diags *diags, char **stack);

static void
check_execute_document(struct vctx *v, const struct kiln_yaml_node *inputs, const char *field)
{
    const struct kiln_yaml_node *items[1] = {inputs};
    const struct kiln_yaml_node *const *list = items;
    size_t n = 1;
    if (inputs->kind == KILN_YAML_SEQUENCE) {
        list = (const struct kiln_yaml_node *const *)inputs->items;
        n = inputs->n;
    }
    for (size_t i = 0; i < n; i++) {
        const char *path = kiln_yaml_scalar(kiln_yaml_map_get(list[i], "document"));
        if (!path || strstr(path, "{{") || strncmp(path, "s3://", 5) == 0 ||
            strncmp(path, "arn:", 4) == 0)
            continue; /* resolved at run time */
        const struct kiln_yaml_node *at = kiln_yaml_map_get(list[i], "document");
        if (v->depth + 1 > KILN_DOC_MAX_NESTING) {
            VDIAG(v, at, field, "ExecuteDocument nesting is limited to %d levels",
                  KILN_DOC_MAX_NESTING);
            continue;
        }
        _cleanup_free_ char *full = kiln_document_resolve_path(v->doc, path);
        _cleanup_free_ char *real = realpath(full, NULL);
        if (!real) {
            VDIAG(v, at, field, "cannot read document '%s' (%s: %s)", path, full, strerror(errno));
            continue;
        }
        bool cycle = false;
        for (size_t j = 0; j < v->depth && !cycle; j++)
            cycle = kiln_streq(v->stack[j], real);
        if (cycle) {
            VDIAG(v, at, field, "ExecuteDocument cycle: '%s' is already being executed", path);
            continue;
        }
        _cleanup_(kiln_document_freep) struct kiln_document *nested = NULL;
        if (kiln_document_load(full, &nested, v->diags) < 0)
            continue;
        v->stack[v->depth] = real;
        validate_doc(v, nested, v->depth + 1, v->diags, v->stack);
        v->stack[v->depth] = NULL;
    }
}

static void
check_step(struct vctx *v, const struct kiln_doc_step *s, const char *field)
{
    const struct kiln_module *m = s->module;
    const struct kiln_yaml_node *action = kiln_yaml_map_get(s->node, "action");
    _cleanup_free_ char *fi = kiln_asprintf("%s.inputs", field);
    if (s->if_node) {
        _cleanup_free_ char *f = kiln_asprintf("%s.if", field);
        kiln_expr_validate(v->file, s->if_node, f, true, v->diags);
        check_refs(v, s->if_node, f, false);
    }
    if (s->loop.kind != KILN_LOOP_NONE) {
        _cleanup_free_ char *f = kiln_asprintf("%s.loop", field);
        check_refs(v, kiln_yaml_map_get(s->node, "loop"), f, false);
    }
    check_refs(v, s->inputs, fi, true);
    if (!s->action)
        return;
    if (!m) {
        VDIAG(v, action, field, "unknown action '%s'", s->action);
        return;
    }
    if (m->flags & KILN_MODULE_WINDOWS_ONLY) {
        VDIAG(v, action, field, "%s is not supported on Linux", m->name);
        return;
    }
    if ((m->flags & KILN_MODULE_NO_TIMEOUT) && s->timeout_set)
        VDIAG(v, kiln_yaml_map_get(s->node, "timeoutSeconds"), field,
              "%s does not take timeoutSeconds", m->name);
    if ((m->flags & KILN_MODULE_NO_ATTEMPTS) && s->max_attempts_set)
        VDIAG(v, kiln_yaml_map_get(s->node, "maxAttempts"), field,
              "%s does not take maxAttempts", m->name);
    const struct kiln_yaml_node *in = s->inputs;
    if (in && kiln_yaml_is_null(in))
        in = NULL; /* "inputs:" with nothing after it */
    if (strcmp(m->name, "Assert") == 0) {
        if (!in)
            VDIAG(v, s->node, field, "Assert requires inputs (a condition)");
        else
            kiln_expr_validate(v->file, in, fi, false, v->diags);
        return;
    }
    bool empty = !in || kiln_yaml_is_null(in) ||
                 (in->kind == KILN_YAML_MAPPING && in->n == 0);
    switch (m->shape) {
    case KILN_INPUTS_NONE:
        if (!empty)
            VDIAG(v, in, fi, "%s takes no inputs", m->name);
        return;
    case KILN_INPUTS_OBJECT:
        if (!in) {
            bool any_required = false;
            for (const struct kiln_module_field *f = m->fields; f && f->name; f++)
                any_required |= f->required;
            if (any_required)
                VDIAG(v, s->node, field, "%s requires inputs", m->name);
            return;
        }
        if (in->kind != KILN_YAML_MAPPING) {
            VDIAG(v, in, fi, "%s inputs must be a mapping, not %s", m->name,
                  kiln_yaml_kind_name(in->kind));
            return;
        }
        check_fields(v, m, in, fi);
        break;
    case KILN_INPUTS_LIST:
    case KILN_INPUTS_OBJECT_OR_LIST:
        if (!in) {
            VDIAG(v, s->node, field, "%s requires inputs", m->name);
            return;
        }
        if (in->kind == KILN_YAML_MAPPING && m->shape == KILN_INPUTS_OBJECT_OR_LIST) {
            check_fields(v, m, in, fi);
            break;
        }
        if (in->kind != KILN_YAML_SEQUENCE) {
            VDIAG(v, in, fi, "%s inputs must be a list, not %s", m->name,
                  kiln_yaml_kind_name(in->kind));
            return;
        }
        if (in->n == 0)
            VDIAG(v, in, fi, "%s inputs must not be empty", m->name);
        for (size_t i = 0; i < in->n; i++) {
            _cleanup_free_ char *fx = kiln_asprintf("%s[%zu]", fi, i);
            check_fields(v, m, in->items[i], fx);
        }
        break;
    }
    if (m->check) {
        struct check_ud ud = {v, fi};
        m->check(in, module_report, &ud);
    }
    if (strcmp(m->name, "ExecuteDocument") == 0)
        check_execute_document(v, in, fi);
}

static void
validate_doc(struct vctx *parent, const struct kiln_document *doc, size_t depth,
             struct kiln_diags *diags, char **stack)
{
    (void)parent;
    struct vctx v = {.doc = doc, .diags = diags, .file = doc->path, .stack = stack,
                     .depth = depth};
    for (size_t i = 0; i < doc->n_phases; i++) {
        const struct kiln_doc_phase *ph = &doc->phases[i];
        for (size_t j = 0; j < ph->n_steps; j++) {
            _cleanup_free_ char *f = kiln_asprintf("phases[%zu].steps[%zu]", i, j);
            v.phase = i;
            v.step = j;
            v.s = &ph->steps[j];
            check_step(&v, &ph->steps[j], f);
        }
    }
}

void
kiln_document_validate(const struct kiln_document *doc, unsigned depth, struct kiln_diags *diags)
{
    char *stack[KILN_DOC_MAX_NESTING + 2] = {0};
    _cleanup_free_ char *real = realpath(doc->path, NULL);
    if (depth < 1)
        depth = 1;
    if (depth > KILN_DOC_MAX_NESTING)
        depth = KILN_DOC_MAX_NESTING;
    stack[depth - 1] = real ? real : doc->path;
    validate_doc(NULL, doc, depth, diags, stack);
}
