/* AWSTOE component documents: the model, the parser and the validator.
 *
 * A document is loaded from a YAML tree (common/yaml.h) and keeps that tree alive: every field of
 * the model points at its node, so that each problem is named as file:line:column. Loading checks
 * the whole schema and collects every problem at once (struct kiln_diags) instead of stopping at
 * the first one. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "common/yaml.h"
#include "guest-agent/module.h"

#define KILN_DOC_DEFAULT_TIMEOUT 7200
#define KILN_DOC_MAX_NESTING 3 /* ExecuteDocument depth */
#define KILN_DOC_MAX_DIAGS 200
#define KILN_DOC_MAX_ITERATIONS 100000 /* a loop's iterations */

/* One problem: "file:line:column: field: message". */
struct kiln_diag {
    char *file;
    unsigned line, column;
    char *field;
    char *message;
};

struct kiln_diags {
    struct kiln_diag *v;
    size_t n, cap;
    size_t dropped; /* problems past KILN_DOC_MAX_DIAGS */
};

void kiln_diags_clear(struct kiln_diags *d);
void kiln_diags_add(struct kiln_diags *d, const char *file, const struct kiln_yaml_node *at,
                    const char *field, const char *fmt, ...) _printf_(5, 6);
/* Every problem, one per line. */
char *kiln_diags_format(const struct kiln_diags *d);
/* True when some problem's formatted text contains needle (tests). */
bool kiln_diags_contains(const struct kiln_diags *d, const char *needle);

enum kiln_on_failure { KILN_ON_FAILURE_ABORT, KILN_ON_FAILURE_CONTINUE, KILN_ON_FAILURE_IGNORE };

enum kiln_loop_kind { KILN_LOOP_NONE, KILN_LOOP_FOR, KILN_LOOP_FOREACH_LIST, KILN_LOOP_FOREACH_TEXT };

struct kiln_doc_loop {
    enum kiln_loop_kind kind;
    const char *name;                     /* NULL when unnamed */
    const struct kiln_yaml_node *start;   /* for: scalars (may hold {{ variables }}) */
    const struct kiln_yaml_node *end;
    const struct kiln_yaml_node *update_by;
    const struct kiln_yaml_node *list;    /* forEach: sequence, or the text to split */
    const char *delimiter;                /* forEach text: one character, default "," */
};

struct kiln_doc_step {
    const char *name;
    const char *action;
    const struct kiln_module *module; /* NULL when the action is unknown */
    const struct kiln_yaml_node *node;
    const struct kiln_yaml_node *inputs; /* may be NULL */
    int timeout_seconds;                 /* -1: none */
    bool timeout_set;
    enum kiln_on_failure on_failure;
    int max_attempts;
    bool max_attempts_set;
    struct kiln_doc_loop loop;
    const struct kiln_yaml_node *if_node; /* may be NULL */
};

struct kiln_doc_phase {
    const char *name;
    const struct kiln_yaml_node *node;
    struct kiln_doc_step *steps;
    size_t n_steps;
};

struct kiln_doc_var {
    const char *name;
    const char *type;
    const char *value; /* parameter default or constant value; NULL: none */
    const char *description;
    const struct kiln_yaml_node *allowed; /* parameters: allowedValues list, or NULL */
    const struct kiln_yaml_node *node;
};

/* Whether value is one of a parameter's allowedValues (true when it has none). */
bool kiln_doc_var_allows(const struct kiln_doc_var *v, const char *value);

struct kiln_document {
    char *path;
    char *data; /* the file as read (copied to the log folder) */
    size_t len;
    struct kiln_yaml_doc *yaml;
    const char *name;
    const char *description;
    const char *schema_version;
    struct kiln_doc_var *parameters;
    size_t n_parameters;
    struct kiln_doc_var *constants;
    size_t n_constants;
    struct kiln_doc_phase *phases;
    size_t n_phases;
};

void kiln_document_free(struct kiln_document *doc);
static inline void
kiln_document_freep(struct kiln_document **d)
{
    kiln_document_free(*d);
}

/* Parse data (source names it in messages) into a document. Schema problems are added to diags
 * and the document is still returned when the YAML itself was readable (so that a caller can
 * report everything); malformed YAML returns -KILN_E_PARSE with one diagnostic. */
int kiln_document_parse(const char *data, size_t len, const char *source,
                        struct kiln_document **ret, struct kiln_diags *diags);
int kiln_document_load(const char *path, struct kiln_document **ret, struct kiln_diags *diags);

/* The whole validation of a loaded document, ExecuteDocument nesting included (nested documents
 * are loaded relative to the document's folder; depth counts from 1 for a top-level document). */
void kiln_document_validate(const struct kiln_document *doc, unsigned depth,
                            struct kiln_diags *diags);

/* Load and validate several documents; 0 when every one is valid, -KILN_E_INVALID or
 * -KILN_E_PARSE otherwise (diags says why). */
int kiln_documents_check(char **paths, struct kiln_diags *diags);

/* Helpers shared with the executor. */
const struct kiln_doc_var *kiln_document_find_var(const struct kiln_document *doc, const char *name);
const struct kiln_doc_phase *kiln_document_find_phase(const struct kiln_document *doc,
                                                      const char *name);
bool kiln_name_valid(const char *s);
/* Resolve an ExecuteDocument path against the including document's folder. */
char *kiln_document_resolve_path(const struct kiln_document *parent, const char *path);

/* Conditional expressions (if, Assert). */
void kiln_expr_validate(const char *file, const struct kiln_yaml_node *expr, const char *field,
                        bool allow_then_else, struct kiln_diags *diags);
/* Evaluate a resolved expression (JSON of the YAML); *ret_action is "Execute", "Skip" or "Abort"
 * for if (then/else), and *ret_value the truth of the expression. */
int kiln_expr_eval(const json_t *expr, bool *ret_value, const char **ret_action,
                   struct kiln_error *err);

/* A {{ reference }}: parts split at '.', each with an optional [index]. */
#define KILN_REF_MAX_PARTS 8
#define KILN_REF_MAX_PART 128
struct kiln_ref {
    size_t n;
    char part[KILN_REF_MAX_PARTS][KILN_REF_MAX_PART + 1];
    long index[KILN_REF_MAX_PARTS]; /* -1: none */
};

/* Parse the text between "{{" and "}}" (spaces around allowed); false when it is not a
 * reference, which is then left as written (a Go template in a script, say). */
bool kiln_ref_parse(const char *s, size_t len, struct kiln_ref *ret);
/* Find the next "{{ ... }}" in s: *ret_start and *ret_end (past "}}"); false when none. */
bool kiln_ref_next(const char *s, const char **ret_start, const char **ret_end);
