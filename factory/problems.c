/* Collected diagnostics for the factory's validators. */
#include "factory/problems.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void
kiln_problems_init(struct kiln_problems *d, const char *source)
{
    memset(d, 0, sizeof(*d));
    d->source = source;
}

void
kiln_problems_clear(struct kiln_problems *d)
{
    for (unsigned i = 0; i < d->count; i++)
        free(d->items[i].text);
    free(d->items);
    d->items = NULL;
    d->count = 0;
}

static void
push(struct kiln_problems *d, unsigned line, unsigned column, char *text)
{
    d->items = kiln_reallocarray(d->items, d->count + 1, sizeof(*d->items));
    d->items[d->count] = (struct kiln_problem){line, column, d->count, text};
    d->count++;
}

static void
addv(struct kiln_problems *d, unsigned line, unsigned column, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    push(d, line, column, kiln_asprintf("%s:%u:%u: %s", d->source, line, column, msg));
}

void
kiln_problems_add_at(struct kiln_problems *d, unsigned line, unsigned column, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    addv(d, line, column, fmt, ap);
    va_end(ap);
}

void
kiln_problems_add(struct kiln_problems *d, const struct kiln_yaml_node *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    addv(d, at ? at->line : 1, at ? at->column : 1, fmt, ap);
    va_end(ap);
}

void
kiln_problems_add_error(struct kiln_problems *d, const struct kiln_error *e)
{
    push(d, 0, 0, kiln_strdup(e->message));
}

static int
item_cmp(const void *a, const void *b)
{
    const struct kiln_problem *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->column != y->column)
        return x->column < y->column ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int
kiln_problems_finish(struct kiln_problems *d, struct kiln_error *err)
{
    if (d->count == 0)
        return 0;
    qsort(d->items, d->count, sizeof(*d->items), item_cmp);
    struct kiln_buf text;
    kiln_buf_init(&text);
    for (unsigned i = 0; i < d->count; i++) {
        if (i)
            kiln_buf_append_char(&text, '\n');
        kiln_buf_append_str(&text, d->items[i].text);
    }
    if (err && err->code == 0 && d->items[0].line)
        kiln_error_set_cause(err, "%s:%u:%u", d->source, d->items[0].line, d->items[0].column);
    int r = kiln_error_set(err, -KILN_E_INVALID, "%s", text.data);
    kiln_buf_clear(&text);
    return r;
}

/* Edit distance, case-insensitive, bounded: enough to catch a typo in a field name. */
static size_t
distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    size_t prev[65], cur[65];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t best = prev[j - 1] + cost;
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            cur[j] = best;
        }
        memcpy(prev, cur, (lb + 1) * sizeof(size_t));
    }
    return prev[lb];
}

static const char *
closest(const char *key, const struct kiln_yaml_field *fields)
{
    const char *best = NULL;
    size_t best_d = 3; /* at most two edits away, and closer than a third of the name */
    for (const struct kiln_yaml_field *f = fields; f->key; f++) {
        size_t d = distance(key, f->key);
        if (d < best_d && d * 3 <= strlen(f->key)) {
            best = f->key;
            best_d = d;
        }
    }
    return best;
}

bool
kiln_problems_check_mapping(struct kiln_problems *d, const struct kiln_yaml_node *node,
                            const char *what, const struct kiln_yaml_field *fields)
{
    if (!node || node->kind != KILN_YAML_MAPPING) {
        kiln_problems_add(d, node, "%s must be a mapping, not %s", what,
                          node ? kiln_yaml_kind_name(node->kind) : "empty");
        return false;
    }
    for (size_t i = 0; i < node->n; i++) {
        const char *key = node->keys[i]->value;
        const struct kiln_yaml_field *f = fields;
        while (f->key && strcmp(f->key, key) != 0)
            f++;
        if (!f->key) {
            const char *hint = closest(key, fields);
            if (hint)
                kiln_problems_add(d, node->keys[i], "%s: unknown field '%s' (did you mean '%s'?)",
                                  what, key, hint);
            else
                kiln_problems_add(d, node->keys[i], "%s: unknown field '%s'", what, key);
            continue;
        }
        const struct kiln_yaml_node *v = node->items[i];
        /* A null value stands for "unset" for optional fields. */
        if (v->kind == KILN_YAML_SCALAR && kiln_yaml_is_null(v) && !f->required)
            continue;
        if (v->kind != f->kind)
            kiln_problems_add(d, v, "%s: '%s' must be %s, not %s", what, key,
                              kiln_yaml_kind_name(f->kind), kiln_yaml_kind_name(v->kind));
    }
    for (const struct kiln_yaml_field *f = fields; f->key; f++) {
        if (f->required && !kiln_yaml_map_get(node, f->key))
            kiln_problems_add(d, node, "%s: missing required field '%s'", what, f->key);
    }
    return true;
}
