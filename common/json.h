/* The project's JSON library is jansson; these helpers add bounded, hardened parsing. */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "common/error.h"

#define KILN_JSON_MAX_BYTES (64u << 20)

/* Parse a JSON document of at most max_bytes, rejecting duplicate keys; the error names the
 * source, line and column. */
int kiln_json_parse(const char *data, size_t len, size_t max_bytes, const char *source,
                    json_t **ret, struct kiln_error *err);
int kiln_json_load_file(const char *path, size_t max_bytes, json_t **ret, struct kiln_error *err);
/* Serialise compactly (or indented with pretty); never NULL. */
char *kiln_json_dumps(const json_t *j, bool pretty);
/* Object member as a string, or NULL when missing or not a string. */
const char *kiln_json_get_str(const json_t *obj, const char *key);
