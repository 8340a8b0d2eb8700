/* Action modules: the declarative input schema used by the validator, and the run function used
 * by the engine. One table (modules.c) lists every AWSTOE action module, Windows-only ones
 * included, so that an unknown action and a Windows-only action get different errors. */
#pragma once

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "common/yaml.h"

enum kiln_field_type {
    KILN_FIELD_STRING, /* a scalar (numbers and booleans written plainly are accepted as text) */
    KILN_FIELD_INT,    /* an integer, or a string holding {{ variables }} */
    KILN_FIELD_BOOL,   /* true/false, or a string holding {{ variables }} */
    KILN_FIELD_LIST,   /* a sequence of scalars */
    KILN_FIELD_MAP,    /* a mapping */
    KILN_FIELD_ANY,
};

struct kiln_module_field {
    const char *name;
    enum kiln_field_type type;
    bool required;
    const char *const *allowed; /* NULL-terminated allowed values (strings), or NULL */
};

enum kiln_inputs_shape {
    KILN_INPUTS_OBJECT,         /* inputs: {field: ...} */
    KILN_INPUTS_LIST,           /* inputs: [{field: ...}, ...] */
    KILN_INPUTS_OBJECT_OR_LIST, /* either */
    KILN_INPUTS_NONE,           /* no inputs (or an empty mapping) */
};

enum {
    KILN_MODULE_WINDOWS_ONLY = 1 << 0, /* recognised, rejected with "not supported on Linux" */
    KILN_MODULE_ENGINE = 1 << 1,       /* run by the engine itself (ExecuteDocument, Assert, Reboot) */
    KILN_MODULE_NO_TIMEOUT = 1 << 2,   /* step may not set timeoutSeconds (ExecuteDocument) */
    KILN_MODULE_NO_ATTEMPTS = 1 << 3,  /* step may not set maxAttempts (ExecuteDocument) */
};

/* Report a validation problem at a node (file:line:column is added by the validator). */
typedef void kiln_report_fn(void *userdata, const struct kiln_yaml_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Streams a step's console output: stream is "stdout" or "stderr". */
typedef void kiln_console_fn(void *userdata, const char *stream, const char *data, size_t len);

struct kiln_module_ctx {
    const char *phase_name;
    const char *step_name;
    const char *document_path;
    const char *work_dir;          /* scratch folder for this step (exists, removed later) */
    int timeout_seconds;           /* -1: none */
    volatile sig_atomic_t *cancel; /* set to non-zero to cancel; may be NULL */
    kiln_console_fn *console;      /* may be NULL */
    void *console_userdata;
};

struct kiln_module {
    const char *name;
    unsigned flags;
    enum kiln_inputs_shape shape;
    const struct kiln_module_field *fields; /* terminated by a {NULL} entry */
    /* Extra rules beyond the field table (mutually exclusive keys, value ranges). May be NULL. */
    void (*check)(const struct kiln_yaml_node *inputs, kiln_report_fn *report, void *userdata);
    /* inputs are fully resolved (variables substituted) JSON of the YAML inputs. On success
     * *ret_outputs holds the step's outputs object (AWSTOE's output names). Returns 0,
     * -KILN_E_REBOOT when the step asked for a reboot (exit code 194), or a negative error.
     * NULL for KILN_MODULE_WINDOWS_ONLY and KILN_MODULE_ENGINE modules. */
    int (*run)(const json_t *inputs, const struct kiln_module_ctx *ctx, json_t **ret_outputs,
               struct kiln_error *err);
};

const struct kiln_module *kiln_module_find(const char *name);
/* The whole table, for listings and tests. */
const struct kiln_module *kiln_module_table(size_t *ret_count);
