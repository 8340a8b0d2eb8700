/* The host side of the guest agent protocol: connect, sync, run a job with live events, handle
 * reboot-and-resume, fetch logs safely, power off. Nothing the guest sends is trusted. */
#pragma once

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

struct kiln_agent_client;

struct kiln_agent_client_options {
    int connect_timeout_ms;        /* retry connecting/syncing until then; default 300000 */
    int reply_timeout_ms;          /* the agent must answer a request within this; default 15000 */
    int ping_interval_ms;          /* liveness pings while a job runs; default 5000 */
    volatile sig_atomic_t *cancel; /* set to cancel: the running job is cancelled in the guest */
};

struct kiln_agent_client_callbacks {
    void (*event)(void *userdata, const json_t *event);
    void (*console)(void *userdata, const char *stream, const char *data, size_t len);
    void *userdata;
};

struct kiln_agent_job {
    const char *execution_id;     /* 1-64 of [A-Za-z0-9._-] */
    const char *const *documents; /* NULL-terminated host paths, uploaded by base name */
    const char *const *phases;    /* NULL-terminated, or NULL for every phase */
    const json_t *parameters;     /* object name -> string, or NULL */
};

enum kiln_agent_job_status {
    KILN_AGENT_JOB_SUCCESS,
    KILN_AGENT_JOB_SUCCESS_WITH_IGNORED_FAILURE,
    KILN_AGENT_JOB_FAILED,
    KILN_AGENT_JOB_CANCELLED,
    /* The guest must be rebooted; reconnect and call kiln_agent_client_resume_job. */
    KILN_AGENT_JOB_REBOOT_REQUIRED,
};

struct kiln_agent_job_result {
    enum kiln_agent_job_status status;
    char *failure;    /* the engine's reason, or NULL */
    char *log_folder; /* the TOE_<date>_<id> folder name inside the fetched logs, or NULL */
    int executed, failed, ignored; /* step counts, as the engine reports them */
    /* The job deadline passed (kiln_agent_client_set_deadline): the client asked the agent to
     * cancel and the agent ended the job (status: as it reports it, normally cancelled). */
    bool timed_out;
    char *step; /* timed out: "phase/step" that was running then, or NULL */
};

void kiln_agent_job_result_clear(struct kiln_agent_job_result *r);
const char *kiln_agent_job_status_name(enum kiln_agent_job_status s);

/* Bounds on a log fetch; zero fields take the defaults. */
struct kiln_agent_fetch_limits {
    uint32_t max_files;      /* default 10000 */
    uint64_t max_bytes;      /* total, default 1 GiB */
    uint64_t max_file_bytes; /* default 256 MiB */
};

/* Connect to the agent's unix socket (retrying while it does not exist yet or refuses, as when
 * the guest is still booting), then sync and wait for hello, all before the connect timeout. */
int kiln_agent_client_connect(const char *socket_path, const struct kiln_agent_client_options *opts,
                              struct kiln_agent_client **ret, struct kiln_error *err);
/* Use an already connected stream (taken over, closed by _free); syncs before returning. */
int kiln_agent_client_open_fd(int fd, const struct kiln_agent_client_options *opts,
                              struct kiln_agent_client **ret, struct kiln_error *err);
void kiln_agent_client_free(struct kiln_agent_client *c);

/* Re-synchronise: send a sync with a fresh nonce (and the host's clock, which an agent started
 * with --sync-clock adopts), discard everything up to the agent's answer, read its hello. Retries
 * until timeout_ms. */
int kiln_agent_client_sync(struct kiln_agent_client *c, int timeout_ms, struct kiln_error *err);
/* The last hello (borrowed; valid until the next sync). */
const json_t *kiln_agent_client_hello(const struct kiln_agent_client *c);
/* Whether a hello lists capability name (e.g. "prepare": older agents lack it). */
bool kiln_agent_hello_has_capability(const json_t *hello, const char *name);
/* Junk bytes skipped so far (before syncs and between frames). */
uint64_t kiln_agent_client_skipped(const struct kiln_agent_client *c);

int kiln_agent_client_ping(struct kiln_agent_client *c, struct kiln_error *err);
/* Have the agent run its ready command (kiln-agent serve --ready-command) now, e.g. in a guest
 * just restored from a snapshot, instead of before the first job; jobs do not run it again. Waits
 * up to timeout_ms (<= 0: 120000) for the answer. *ready_ms (may be NULL) gets how long the agent
 * took (0: already ready, or no ready command). Returns 0; -KILN_E_FAILED when the command failed
 * or timed out in the guest (the agent counts as prepared all the same: a job would run anyway);
 * -KILN_E_UNSUPPORTED when the agent's hello lacks the "prepare" capability (an older agent: its
 * jobs still run the ready command first); -ETIMEDOUT when no answer came in time (the guest goes
 * on, and a job waits for it); -ECANCELED when the options' cancel flag was set (the agent is
 * told to stop the command); -KILN_E_REMOTE when the agent refused. */
int kiln_agent_client_prepare(struct kiln_agent_client *c, int timeout_ms, int64_t *ready_ms,
                              struct kiln_error *err);
/* Bound the jobs this client follows next (run_job, resume_job) by deadline_ms, on the clock of
 * kiln_now_ms() (common/time.h; 0: no deadline). When it passes, the client sends cancel and
 * gives the agent grace_ms (<= 0: 10000) to end the job: then the call returns 0 with
 * result->timed_out set and result->step naming the step that was running; if the agent does
 * not end the job in time it returns -ETIMEDOUT (the connection is then out of step and re-syncs
 * on next use). */
void kiln_agent_client_set_deadline(struct kiln_agent_client *c, int64_t deadline_ms,
                                    int grace_ms);
/* Upload the documents and run the job, streaming events and console output to cb until the job
 * ends (0 with result->status) or the connection fails (negative, with a clear message). */
int kiln_agent_client_run_job(struct kiln_agent_client *c, const struct kiln_agent_job *job,
                              const struct kiln_agent_client_callbacks *cb,
                              struct kiln_agent_job_result *result, struct kiln_error *err);
/* After a reboot: continue the job from the agent's persisted state. */
int kiln_agent_client_resume_job(struct kiln_agent_client *c, const char *execution_id,
                                 const struct kiln_agent_client_callbacks *cb,
                                 struct kiln_agent_job_result *result, struct kiln_error *err);
/* Copy the job's log tree into dest_dir (which must exist). Only regular files are created, only
 * beneath dest_dir, never replacing anything; names, counts and sizes are checked first. */
int kiln_agent_client_fetch_logs(struct kiln_agent_client *c, const char *execution_id,
                                 const char *dest_dir, const struct kiln_agent_fetch_limits *limits,
                                 struct kiln_error *err);
/* Ask the guest to sync its disks and power off; returns once the agent acknowledged. */
int kiln_agent_client_poweroff(struct kiln_agent_client *c, struct kiln_error *err);
/* Read and drop whatever arrives until the other end closes the connection (0), or until
 * timeout_ms passed (-ETIMEDOUT). After a poweroff: the channel closes when QEMU exits. */
int kiln_agent_client_wait_closed(struct kiln_agent_client *c, int timeout_ms,
                                  struct kiln_error *err);
