/* The one hardened YAML reader (libyaml events into a tree with positions).
 *
 * Every node keeps its 1-based line and column so that validators can name file:line:column.
 * Bounded: input size, nesting depth and node count (aliases are expanded against the node
 * budget, so "billion laughs" documents fail cleanly). Duplicate keys and non-scalar keys are
 * errors; YAML 1.1 merge keys ("<<") are applied. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

enum kiln_yaml_kind { KILN_YAML_SCALAR, KILN_YAML_SEQUENCE, KILN_YAML_MAPPING };

struct kiln_yaml_node {
    enum kiln_yaml_kind kind;
    unsigned line, column;
    bool plain;                    /* scalar written without quotes or block style */
    char *tag;                     /* explicit tag, or NULL */
    char *value;                   /* scalar text (NUL-terminated) */
    size_t len;                    /* scalar length */
    size_t n;                      /* number of items / pairs */
    struct kiln_yaml_node **items; /* sequence items, or mapping values */
    struct kiln_yaml_node **keys;  /* mapping keys (scalars) */
};

struct kiln_yaml_doc {
    char *source; /* file name used in messages */
    struct kiln_yaml_node *root;
    size_t nodes;
};

struct kiln_yaml_limits {
    size_t max_bytes;
    unsigned max_depth;
    size_t max_nodes;
};

#define KILN_YAML_DEFAULT_LIMITS ((struct kiln_yaml_limits){16u << 20, 64, 1000000})

/* Parse exactly one YAML document (an empty stream gives a NULL root). */
int kiln_yaml_parse(const char *data, size_t len, const char *source,
                    const struct kiln_yaml_limits *limits, struct kiln_yaml_doc **ret,
                    struct kiln_error *err);
int kiln_yaml_load_file(const char *path, const struct kiln_yaml_limits *limits,
                        struct kiln_yaml_doc **ret, struct kiln_error *err);
void kiln_yaml_doc_free(struct kiln_yaml_doc *doc);
static inline void
kiln_yaml_doc_freep(struct kiln_yaml_doc **d)
{
    kiln_yaml_doc_free(*d);
}

/* Value of key in a mapping, or NULL (also when node is not a mapping). */
struct kiln_yaml_node *kiln_yaml_map_get(const struct kiln_yaml_node *map, const char *key);
/* Scalar text, or NULL when node is missing or not a scalar. */
const char *kiln_yaml_scalar(const struct kiln_yaml_node *node);
bool kiln_yaml_is_null(const struct kiln_yaml_node *node);
/* Plain scalar true/false (any case); returns -EINVAL when it is neither. */
int kiln_yaml_bool(const struct kiln_yaml_node *node, bool *ret);
/* Plain or quoted decimal integer; returns -EINVAL otherwise. */
int kiln_yaml_int(const struct kiln_yaml_node *node, long long *ret);
/* "a string", "a list", "a mapping" for messages. */
const char *kiln_yaml_kind_name(enum kiln_yaml_kind kind);
/* Convert to JSON with the YAML core schema for plain scalars (null, bool, int, float). */
json_t *kiln_yaml_to_json(const struct kiln_yaml_node *node);
/* Deep copy. */
struct kiln_yaml_node *kiln_yaml_node_copy(const struct kiln_yaml_node *node);
void kiln_yaml_node_free(struct kiln_yaml_node *node);
