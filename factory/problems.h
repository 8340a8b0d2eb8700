/* Collected diagnostics: validators report every problem, then fail once with all of them. */
#pragma once

#include <stdbool.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/yaml.h"

struct kiln_problem {
    unsigned line, column; /* 0: no position of its own (sorted first) */
    size_t seq;
    char *text; /* "file:line:column: message" */
};

struct kiln_problems {
    const char *source;
    struct kiln_problem *items;
    unsigned count;
};

void kiln_problems_init(struct kiln_problems *d, const char *source);
void kiln_problems_clear(struct kiln_problems *d);
/* Report at a node (NULL: the top of the file). */
void kiln_problems_add(struct kiln_problems *d, const struct kiln_yaml_node *at, const char *fmt,
                       ...) _printf_(3, 4);
void kiln_problems_add_at(struct kiln_problems *d, unsigned line, unsigned column, const char *fmt,
                          ...) _printf_(4, 5);
/* Add a whole error (already carrying its own position) as one or more lines. */
void kiln_problems_add_error(struct kiln_problems *d, const struct kiln_error *e);
/* 0 when nothing was reported, else sets err: all lines in file order, cause = the first. */
int kiln_problems_finish(struct kiln_problems *d, struct kiln_error *err);

/* Field checks on a YAML mapping, each reporting into d. */
struct kiln_yaml_field {
    const char *key;
    enum kiln_yaml_kind kind;
    bool required;
};

/* Reports unknown keys, missing required keys and wrong kinds; false when node is not a
 * mapping (reported as well). */
bool kiln_problems_check_mapping(struct kiln_problems *d, const struct kiln_yaml_node *node,
                                 const char *what, const struct kiln_yaml_field *fields);
