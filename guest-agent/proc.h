/* Running a command for an action module: its own process group, live console output, bounded
 * capture, timeout and cancellation that take down the whole group. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "guest-agent/module.h"

/* Exit code with which a step asks for a reboot (AWSTOE's convention on Linux). */
#define KILN_PROC_EXIT_REBOOT 194

struct kiln_proc_opts {
    char *const *argv;      /* argv[0] is looked up in PATH when it has no '/' */
    char *const *envp;      /* NULL: the agent's environment */
    const char *cwd;        /* NULL: the agent's working directory */
    size_t capture_max;     /* bytes of stdout (and of stderr) kept; 0: KILN_PROC_CAPTURE_MAX */
    int kill_grace_seconds; /* between SIGTERM and SIGKILL on timeout/cancel; 0: 5 */
};

#define KILN_PROC_CAPTURE_MAX (8u << 20)

struct kiln_proc_result {
    int exit_code;   /* 0..255, or -1 when killed by a signal */
    int term_signal; /* the signal that killed it, or 0 */
    bool timed_out;
    bool cancelled;
    char *out; /* captured stdout (NUL-terminated, never NULL after a run) */
    size_t out_len;
    bool out_truncated;
    char *err; /* captured stderr */
    size_t err_len;
    bool err_truncated;
};

void kiln_proc_result_clear(struct kiln_proc_result *r);

/* Run opts->argv to completion, streaming stdout/stderr to ctx->console as they arrive and
 * capturing them into result. ctx may be NULL (no console, no timeout, no cancellation).
 *
 * Returns 0 when the command exited 0; -KILN_E_REBOOT when it exited 194; -KILN_E_FAILED when
 * it exited with another code or was killed by a signal ("exit status N", with the end of its
 * stderr); -ETIMEDOUT on timeout ("timed out after N seconds") and -ECANCELED on cancellation (the
 * whole process group got SIGTERM, then SIGKILL); another negative errno when it could not be
 * started. result is filled in every case where the command started. */
int kiln_proc_run(const struct kiln_proc_opts *opts, const struct kiln_module_ctx *ctx,
                  struct kiln_proc_result *result, struct kiln_error *err);
