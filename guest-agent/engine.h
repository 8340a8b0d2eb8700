/* The component engine: runs AWSTOE documents (kiln-agent run, and jobs from the host). */
#pragma once

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>

#include "common/error.h"

/* Live progress for a caller (the terminal, or the agent protocol streaming to the host). */
struct kiln_engine_events {
    /* A step/phase/document event as a JSON object, e.g.
     * {"event":"step-start","document":..,"phase":..,"step":..,"action":..,"attempt":1}
     * {"event":"step-end", ..., "status":"success"|"failed"|"ignored"|"skipped", "reason":..}
     * {"event":"step-retry", ..., "attempt":2,"maxAttempts":3}
     * {"event":"phase-start"|"phase-end"|"document-start"|"document-end", ...}
     * {"event":"reboot-requested","stateDirectory":..}. Borrowed: copy what you keep. */
    void (*event)(void *userdata, const json_t *event);
    /* Console output of the running step. */
    void (*console)(void *userdata, const char *stream, const char *data, size_t len);
    void *userdata;
};

struct kiln_run_options {
    char **documents;          /* NULL-terminated paths */
    char **phases;             /* NULL-terminated names, NULL = every phase in document order */
    json_t *parameters;        /* object name -> string, may be NULL */
    const char *execution_id;  /* NULL: generate one */
    const char *log_directory; /* parent of the TOE_<date>_<id> folder */
    const char *state_directory; /* persisted execution state (reboot and resume) */
    const char *config_path;   /* AWSTOE JSON config, may be NULL */
    bool trace;
    const struct kiln_engine_events *events; /* may be NULL */
    volatile sig_atomic_t *cancel;           /* may be NULL */
};

enum kiln_run_status {
    KILN_RUN_SUCCESS,
    KILN_RUN_SUCCESS_WITH_IGNORED_FAILURE,
    KILN_RUN_FAILED,
    KILN_RUN_REBOOT,    /* state saved; run again with the same state directory to resume */
    KILN_RUN_CANCELLED,
};

struct kiln_run_result {
    enum kiln_run_status status;
    char *log_folder; /* the TOE_<date>_<id> folder */
    char *failure;    /* a person-readable reason, or NULL */
    char *execution_id;
    int executed, failed, ignored; /* step counts (AWSTOE's executed/failed/ignored) */
};

void kiln_run_result_clear(struct kiln_run_result *r);

/* Validate every document first (all errors at once, each with file:line:column, collected in
 * err's message), then run. Returns 0 when the run happened (see result->status), or a negative
 * error when it could not start (invalid documents, unreadable files). */
int kiln_engine_run(const struct kiln_run_options *opts, struct kiln_run_result *result,
                    struct kiln_error *err);
