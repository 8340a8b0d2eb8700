/* Executor internals shared by engine.c and its tests: one run, one document being executed,
 * loop iterations. */
#pragma once

#include <jansson.h>
#include <stdio.h>

#include "common/buf.h"
#include "guest-agent/document.h"
#include "guest-agent/engine.h"

struct iter {
    const char *name; /* loop name, or NULL */
    long index;
    char *value;
};

struct counts {
    int executed, failed, ignored;
    bool failed_doc, ignored_doc, aborted, cancelled, reboot;
};

struct docexec {
    const struct kiln_document *doc;
    unsigned depth;
    json_t *vars;  /* name -> value (parameters and constants) */
    json_t *doc_rec; /* its detailed output record: chaining reads earlier steps there */
};

struct run {
    const struct kiln_run_options *opts;
    json_t *cfg;
    json_t *cfg_doc_params;
    char **doc_paths;
    struct kiln_document **docs;
    char **doc_hashes;
    json_t **doc_params;
    size_t n_docs;
    char **phases;
    char *execution_id;
    char *log_folder;
    char *state_dir;
    char *start_time;
    char *scratch; /* the steps' work_dir */
    FILE *app_log, *console_log;
    json_t *detailed;
    json_t *resume;
    /* Reboot and resume, per ExecuteDocument depth (1 = a document given to run): where to
     * resume, whether that step runs again, and the record of an ExecuteDocument step whose
     * nested document was interrupted (it carries the nested progress). */
    struct {
        size_t phase, step;
        bool rerun;
    } pos[KILN_DOC_MAX_NESTING + 1];
    json_t *pending[KILN_DOC_MAX_NESTING + 1];
    int executed, failed, ignored;
    struct kiln_buf line_out, line_err;
};

char *kiln_engine_substitute(struct docexec *dx, const char *text, const struct iter *it);
json_t *kiln_engine_resolve_inputs(struct docexec *dx, const struct kiln_doc_step *s,
                                   const struct iter *it);
char *kiln_engine_uuid(void);
/* Split at sep, trimming spaces, dropping empty items; NULL-terminated. */
char **kiln_engine_split(const char *s, char sep);
