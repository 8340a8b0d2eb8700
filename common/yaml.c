/* YAML reader: libyaml's event parser into struct kiln_yaml_node trees with bounds. */
#include "common/yaml.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <strings.h>
#include <yaml.h>

#include "common/fs.h"

struct anchor {
    char *name;
    struct kiln_yaml_node *node;
    bool complete;
};

struct frame {
    struct kiln_yaml_node *node;
    struct kiln_yaml_node *pending_key; /* mapping: key waiting for its value */
    size_t cap;
    int anchor; /* index into anchors, or -1 */
};

struct loader {
    const char *source;
    const struct kiln_yaml_limits *limits;
    struct kiln_error *err;
    size_t nodes;
    struct frame *stack;
    size_t depth, stack_cap;
    struct anchor *anchors;
    size_t n_anchors;
    struct kiln_yaml_node *root;
    /* Merged-away "<<" entries stay alive until the end: anchors may still point into them. */
    struct kiln_yaml_node **graveyard;
    size_t n_graveyard;
};

static void
bury(struct loader *l, struct kiln_yaml_node *n)
{
    l->graveyard = kiln_reallocarray(l->graveyard, l->n_graveyard + 1, sizeof(*l->graveyard));
    l->graveyard[l->n_graveyard++] = n;
}

void
kiln_yaml_node_free(struct kiln_yaml_node *node)
{
    if (!node)
        return;
    for (size_t i = 0; i < node->n; i++) {
        kiln_yaml_node_free(node->items[i]);
        if (node->keys)
            kiln_yaml_node_free(node->keys[i]);
    }
    free(node->items);
    free(node->keys);
    free(node->value);
    free(node->tag);
    free(node);
}

void
kiln_yaml_doc_free(struct kiln_yaml_doc *doc)
{
    if (!doc)
        return;
    kiln_yaml_node_free(doc->root);
    free(doc->source);
    free(doc);
}

static struct kiln_yaml_node *
node_new(enum kiln_yaml_kind kind, const yaml_mark_t *mark, const yaml_char_t *tag)
{
    struct kiln_yaml_node *n = kiln_new(struct kiln_yaml_node, 1);
    n->kind = kind;
    n->line = (unsigned)mark->line + 1;
    n->column = (unsigned)mark->column + 1;
    if (tag)
        n->tag = kiln_strdup((const char *)tag);
    return n;
}

static size_t
count_nodes(const struct kiln_yaml_node *n)
{
    size_t c = 1;
    for (size_t i = 0; i < n->n; i++)
        c += count_nodes(n->items[i]) + (n->keys ? count_nodes(n->keys[i]) : 0);
    return c;
}

struct kiln_yaml_node *
kiln_yaml_node_copy(const struct kiln_yaml_node *src)
{
    struct kiln_yaml_node *n = kiln_new(struct kiln_yaml_node, 1);
    *n = *src;
    n->tag = src->tag ? kiln_strdup(src->tag) : NULL;
    n->value = src->value ? kiln_strndup(src->value, src->len) : NULL;
    n->items = n->keys = NULL;
    if (src->n) {
        n->items = kiln_new(struct kiln_yaml_node *, src->n);
        if (src->keys)
            n->keys = kiln_new(struct kiln_yaml_node *, src->n);
        for (size_t i = 0; i < src->n; i++) {
            n->items[i] = kiln_yaml_node_copy(src->items[i]);
            if (src->keys)
                n->keys[i] = kiln_yaml_node_copy(src->keys[i]);
        }
    }
    return n;
}

static int
fail_at(struct loader *l, const yaml_mark_t *mark, int code, const char *what)
{
    kiln_error_set_cause(l->err, "%s:%zu:%zu", l->source, mark->line + 1, mark->column + 1);
    return kiln_error_set(l->err, code, "%s:%zu:%zu: %s", l->source, mark->line + 1,
                          mark->column + 1, what);
}

static int
fail_node(struct loader *l, const struct kiln_yaml_node *n, int code, const char *what)
{
    yaml_mark_t m = {.line = n->line - 1, .column = n->column - 1};
    return fail_at(l, &m, code, what);
}

static void
append_child(struct frame *f, struct kiln_yaml_node *key, struct kiln_yaml_node *value)
{
    struct kiln_yaml_node *p = f->node;
    if (p->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 8;
        p->items = kiln_reallocarray(p->items, f->cap, sizeof(*p->items));
        if (p->kind == KILN_YAML_MAPPING)
            p->keys = kiln_reallocarray(p->keys, f->cap, sizeof(*p->keys));
    }
    p->items[p->n] = value;
    if (p->kind == KILN_YAML_MAPPING)
        p->keys[p->n] = key;
    p->n++;
}

/* Attach a finished (or just opened) node to its parent, or make it the root. */
static int
attach(struct loader *l, struct kiln_yaml_node *node)
{
    if (l->depth == 0) {
        l->root = node;
        return 0;
    }
    struct frame *f = &l->stack[l->depth - 1];
    if (f->node->kind == KILN_YAML_SEQUENCE) {
        append_child(f, NULL, node);
        return 0;
    }
    if (!f->pending_key) {
        if (node->kind != KILN_YAML_SCALAR) {
            int r = fail_node(l, node, -KILN_E_PARSE, "a mapping key must be a plain value");
            kiln_yaml_node_free(node);
            return r;
        }
        f->pending_key = node;
        return 0;
    }
    append_child(f, TAKE_PTR(f->pending_key), node);
    return 0;
}

static int
budget(struct loader *l, size_t extra, const yaml_mark_t *mark)
{
    l->nodes += extra;
    if (l->nodes > l->limits->max_nodes)
        return fail_at(l, mark, -KILN_E_LIMIT, "document has too many nodes (aliases included)");
    return 0;
}

static int
key_cmp(const void *a, const void *b)
{
    const struct kiln_yaml_node *const *x = a, *const *y = b;
    return strcmp((*x)->value, (*y)->value);
}

/* Apply "<<" merge keys, then reject duplicate keys. */
static int
finish_mapping(struct loader *l, struct frame *f)
{
    struct kiln_yaml_node *m = f->node;
    for (size_t i = 0; i < m->n; i++) {
        struct kiln_yaml_node *k = m->keys[i];
        if (!(k->plain && strcmp(k->value, "<<") == 0))
            continue;
        struct kiln_yaml_node *v = m->items[i];
        struct kiln_yaml_node **srcs = &v;
        size_t n_srcs = 1;
        if (v->kind == KILN_YAML_SEQUENCE) {
            srcs = v->items;
            n_srcs = v->n;
        }
        for (size_t s = 0; s < n_srcs; s++)
            if (srcs[s]->kind != KILN_YAML_MAPPING)
                return fail_node(l, srcs[s], -KILN_E_PARSE, "a merge key (<<) needs a mapping");
        /* Remove the "<<" entry, then add the source pairs whose keys are absent. */
        m->keys[i] = NULL;
        m->items[i] = NULL;
        memmove(m->keys + i, m->keys + i + 1, (m->n - i - 1) * sizeof(*m->keys));
        memmove(m->items + i, m->items + i + 1, (m->n - i - 1) * sizeof(*m->items));
        m->n--;
        for (size_t s = 0; s < n_srcs; s++)
            for (size_t j = 0; j < srcs[s]->n; j++) {
                if (kiln_yaml_map_get(m, srcs[s]->keys[j]->value))
                    continue;
                int r = budget(l, count_nodes(srcs[s]->items[j]) + 1,
                               &(yaml_mark_t){.line = k->line - 1, .column = k->column - 1});
                if (r < 0) {
                    bury(l, k);
                    bury(l, v);
                    return r;
                }
                append_child(f, kiln_yaml_node_copy(srcs[s]->keys[j]),
                             kiln_yaml_node_copy(srcs[s]->items[j]));
            }
        bury(l, k);
        bury(l, v);
        i--;
    }
    if (m->n < 2)
        return 0;
    _cleanup_free_ struct kiln_yaml_node **sorted = kiln_new(struct kiln_yaml_node *, m->n);
    memcpy(sorted, m->keys, m->n * sizeof(*sorted));
    qsort(sorted, m->n, sizeof(*sorted), key_cmp);
    for (size_t i = 1; i < m->n; i++)
        if (strcmp(sorted[i - 1]->value, sorted[i]->value) == 0) {
            const struct kiln_yaml_node *later =
                sorted[i]->line > sorted[i - 1]->line ? sorted[i] : sorted[i - 1];
            char what[300];
            snprintf(what, sizeof(what), "duplicate key \"%.200s\"", sorted[i]->value);
            return fail_node(l, later, -KILN_E_PARSE, what);
        }
    return 0;
}

static int
register_anchor(struct loader *l, const yaml_char_t *anchor, struct kiln_yaml_node *node,
                bool complete)
{
    if (!anchor)
        return -1;
    l->anchors = kiln_reallocarray(l->anchors, l->n_anchors + 1, sizeof(*l->anchors));
    l->anchors[l->n_anchors] = (struct anchor){kiln_strdup((const char *)anchor), node, complete};
    return (int)l->n_anchors++;
}

static int
handle_event(struct loader *l, yaml_event_t *ev, bool *done)
{
    int r;
    switch (ev->type) {
    case YAML_STREAM_START_EVENT:
    case YAML_DOCUMENT_START_EVENT:
        return 0;
    case YAML_DOCUMENT_END_EVENT:
        *done = true;
        return 0;
    case YAML_STREAM_END_EVENT:
        *done = true;
        return 0;
    case YAML_SCALAR_EVENT: {
        if ((r = budget(l, 1, &ev->start_mark)) < 0)
            return r;
        struct kiln_yaml_node *n = node_new(KILN_YAML_SCALAR, &ev->start_mark, ev->data.scalar.tag);
        n->value = kiln_strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        n->len = ev->data.scalar.length;
        if (strlen(n->value) != n->len) {
            kiln_yaml_node_free(n);
            return fail_at(l, &ev->start_mark, -KILN_E_PARSE, "NUL character in a value");
        }
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        register_anchor(l, ev->data.scalar.anchor, n, true);
        return attach(l, n);
    }
    case YAML_ALIAS_EVENT: {
        for (size_t i = l->n_anchors; i-- > 0;) {
            if (strcmp(l->anchors[i].name, (const char *)ev->data.alias.anchor) != 0)
                continue;
            if (!l->anchors[i].complete)
                return fail_at(l, &ev->start_mark, -KILN_E_PARSE,
                               "alias refers to a node that contains it");
            if ((r = budget(l, count_nodes(l->anchors[i].node), &ev->start_mark)) < 0)
                return r;
            struct kiln_yaml_node *copy = kiln_yaml_node_copy(l->anchors[i].node);
            copy->line = (unsigned)ev->start_mark.line + 1;
            copy->column = (unsigned)ev->start_mark.column + 1;
            return attach(l, copy);
        }
        return fail_at(l, &ev->start_mark, -KILN_E_PARSE, "alias to an unknown anchor");
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        if ((r = budget(l, 1, &ev->start_mark)) < 0)
            return r;
        if (l->depth >= l->limits->max_depth)
            return fail_at(l, &ev->start_mark, -KILN_E_LIMIT, "document is nested too deeply");
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        struct kiln_yaml_node *n =
            node_new(seq ? KILN_YAML_SEQUENCE : KILN_YAML_MAPPING, &ev->start_mark,
                     seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag);
        const yaml_char_t *anchor =
            seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
        if ((r = attach(l, n)) < 0)
            return r;
        if (l->depth == l->stack_cap) {
            l->stack_cap = l->stack_cap ? l->stack_cap * 2 : 16;
            l->stack = kiln_reallocarray(l->stack, l->stack_cap, sizeof(*l->stack));
        }
        l->stack[l->depth++] =
            (struct frame){.node = n, .anchor = register_anchor(l, anchor, n, false)};
        return 0;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: {
        struct frame *f = &l->stack[l->depth - 1];
        if (f->node->kind == KILN_YAML_MAPPING && (r = finish_mapping(l, f)) < 0)
            return r;
        if (f->anchor >= 0)
            l->anchors[f->anchor].complete = true;
        l->depth--;
        return 0;
    }
    case YAML_NO_EVENT:
        return 0;
    }
    return 0;
}

int
kiln_yaml_parse(const char *data, size_t len, const char *source,
                const struct kiln_yaml_limits *limits, struct kiln_yaml_doc **ret,
                struct kiln_error *err)
{
    struct kiln_yaml_limits defaults = KILN_YAML_DEFAULT_LIMITS;
    if (!limits)
        limits = &defaults;
    if (!source)
        source = "<input>";
    if (len > limits->max_bytes)
        return kiln_error_set(err, -KILN_E_LIMIT, "%s: larger than %zu bytes", source,
                              limits->max_bytes);

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        abort();
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);

    struct loader l = {.source = source, .limits = limits, .err = err};
    int r = 0;
    bool done = false;
    while (!done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            char what[512];
            snprintf(what, sizeof(what), "%s%s%s", parser.problem ? parser.problem : "YAML error",
                     parser.context ? " " : "", parser.context ? parser.context : "");
            r = fail_at(&l, &parser.problem_mark, -KILN_E_PARSE, what);
            break;
        }
        r = handle_event(&l, &ev, &done);
        yaml_event_delete(&ev);
        if (r < 0)
            break;
    }
    if (r >= 0) {
        /* Exactly one document: anything but the stream end after it is an error. */
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            r = fail_at(&l, &parser.problem_mark, -KILN_E_PARSE,
                        parser.problem ? parser.problem : "YAML error");
        } else {
            if (ev.type == YAML_DOCUMENT_START_EVENT)
                r = fail_at(&l, &ev.start_mark, -KILN_E_PARSE,
                            "more than one YAML document in the file");
            yaml_event_delete(&ev);
        }
    }
    yaml_parser_delete(&parser);

    /* Anything still on the stack is owned by the root already. */
    for (size_t i = 0; i < l.depth; i++)
        kiln_yaml_node_free(l.stack[i].pending_key);
    free(l.stack);
    for (size_t i = 0; i < l.n_anchors; i++)
        free(l.anchors[i].name);
    free(l.anchors);
    for (size_t i = 0; i < l.n_graveyard; i++)
        kiln_yaml_node_free(l.graveyard[i]);
    free(l.graveyard);
    if (r < 0) {
        kiln_yaml_node_free(l.root);
        return r;
    }
    struct kiln_yaml_doc *doc = kiln_new(struct kiln_yaml_doc, 1);
    doc->source = kiln_strdup(source);
    doc->root = l.root;
    doc->nodes = l.nodes;
    *ret = doc;
    return 0;
}

int
kiln_yaml_load_file(const char *path, const struct kiln_yaml_limits *limits,
                    struct kiln_yaml_doc **ret, struct kiln_error *err)
{
    struct kiln_yaml_limits defaults = KILN_YAML_DEFAULT_LIMITS;
    if (!limits)
        limits = &defaults;
    _cleanup_free_ char *data = NULL;
    size_t len;
    int r = kiln_read_file(path, limits->max_bytes, &data, &len, err);
    if (r < 0)
        return r;
    return kiln_yaml_parse(data, len, path, limits, ret, err);
}

struct kiln_yaml_node *
kiln_yaml_map_get(const struct kiln_yaml_node *map, const char *key)
{
    if (!map || map->kind != KILN_YAML_MAPPING)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i]->value, key) == 0)
            return map->items[i];
    return NULL;
}

const char *
kiln_yaml_scalar(const struct kiln_yaml_node *node)
{
    return node && node->kind == KILN_YAML_SCALAR ? node->value : NULL;
}

bool
kiln_yaml_is_null(const struct kiln_yaml_node *node)
{
    if (!node)
        return true;
    if (node->kind != KILN_YAML_SCALAR || !node->plain)
        return false;
    return node->len == 0 || strcmp(node->value, "~") == 0 || strcmp(node->value, "null") == 0 ||
           strcmp(node->value, "Null") == 0 || strcmp(node->value, "NULL") == 0;
}

int
kiln_yaml_bool(const struct kiln_yaml_node *node, bool *ret)
{
    if (!node || node->kind != KILN_YAML_SCALAR || !node->plain)
        return -EINVAL;
    if (strcasecmp(node->value, "true") == 0) {
        *ret = true;
        return 0;
    }
    if (strcasecmp(node->value, "false") == 0) {
        *ret = false;
        return 0;
    }
    return -EINVAL;
}

int
kiln_yaml_int(const struct kiln_yaml_node *node, long long *ret)
{
    if (!node || node->kind != KILN_YAML_SCALAR || node->len == 0)
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(node->value, &end, 10);
    if (errno || *end || end == node->value)
        return -EINVAL;
    *ret = v;
    return 0;
}

const char *
kiln_yaml_kind_name(enum kiln_yaml_kind kind)
{
    switch (kind) {
    case KILN_YAML_SCALAR:
        return "a string";
    case KILN_YAML_SEQUENCE:
        return "a list";
    case KILN_YAML_MAPPING:
        return "a mapping";
    }
    return "?";
}

static json_t *
scalar_to_json(const struct kiln_yaml_node *n)
{
    if (!n->plain)
        return json_stringn(n->value, n->len);
    if (kiln_yaml_is_null(n))
        return json_null();
    bool b;
    if (kiln_yaml_bool(n, &b) == 0)
        return json_boolean(b);
    long long i;
    if (kiln_yaml_int(n, &i) == 0)
        return json_integer(i);
    char *end;
    double d = strtod(n->value, &end);
    if (*end == '\0' && end != n->value && isfinite(d) && strpbrk(n->value, "0123456789"))
        return json_real(d);
    return json_stringn(n->value, n->len);
}

json_t *
kiln_yaml_to_json(const struct kiln_yaml_node *node)
{
    if (!node)
        return json_null();
    switch (node->kind) {
    case KILN_YAML_SCALAR:
        return scalar_to_json(node);
    case KILN_YAML_SEQUENCE: {
        json_t *a = json_array();
        for (size_t i = 0; i < node->n; i++)
            json_array_append_new(a, kiln_yaml_to_json(node->items[i]));
        return a;
    }
    case KILN_YAML_MAPPING: {
        json_t *o = json_object();
        for (size_t i = 0; i < node->n; i++)
            json_object_setn_new(o, node->keys[i]->value, node->keys[i]->len,
                                 kiln_yaml_to_json(node->items[i]));
        return o;
    }
    }
    return json_null();
}
