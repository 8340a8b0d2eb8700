/* kiln-agent serve: the agent side of the host protocol (virtio-serial port or a socket). */
#pragma once

/* Entry point of "kiln-agent serve ..."; returns the process exit code. */
int kiln_agent_serve_main(int argc, char **argv);

#include <signal.h>
#include <stdbool.h>
#include <time.h>

#include "common/error.h"
#include "guest-agent/engine.h"

/* The serve loop behind "kiln-agent serve", callable directly (tests drive it over a socket). */
struct kiln_agent_serve_config {
    const char *state_directory; /* job folders and persisted state; NULL: /var/lib/kiln-agent */
    const char *boot_id;         /* NULL: /proc/sys/kernel/random/boot_id */
    /* Called after the poweroff request was acknowledged and disks were synced. NULL: power the
     * machine off when serving a virtio port, just stop serving otherwise. */
    void (*poweroff)(void *userdata);
    void *poweroff_userdata;
    /* The job runner; NULL: kiln_engine_run. */
    int (*run)(const struct kiln_run_options *opts, struct kiln_run_result *result,
               struct kiln_error *err);
    volatile sig_atomic_t *stop; /* set (e.g. from a signal handler) to stop serving */
    /* A command run once, before the first job this agent runs (e.g. wait for the guest's
     * network and file systems): its output goes to the job's console, and a failure or a run
     * past ready_timeout_seconds is reported there and does not stop the job. NULL: none. */
    char *const *ready_argv;
    int ready_timeout_seconds; /* 0: 120 */
    /* Set the guest's clock to the host's when a sync carries "time-ms" more than 1 s away from
     * it (a guest restored from a snapshot wakes with the clock of the moment it was saved). */
    bool sync_clock;
    /* Steps the clock: 0 or -errno. NULL: clock_settime(CLOCK_REALTIME) (tests pass a hook so
     * that they never change the machine's clock). */
    int (*set_clock)(const struct timespec *ts, void *userdata);
    void *set_clock_userdata;
};

/* Serve one connected stream until end of file (0) or poweroff (1); a running job is cancelled
 * at end of file. */
int kiln_agent_serve_fd(int fd, const struct kiln_agent_serve_config *cfg, struct kiln_error *err);
/* Listen on a unix socket and serve one connection after the other until poweroff or stop; a job
 * keeps running between connections. */
int kiln_agent_serve_socket(const char *path, const struct kiln_agent_serve_config *cfg,
                            struct kiln_error *err);
/* Serve a virtio-serial port (e.g. /dev/virtio-ports/org.kiln.agent.0), waiting while the host
 * side is closed, until poweroff or stop. */
int kiln_agent_serve_port(const char *path, const struct kiln_agent_serve_config *cfg,
                          struct kiln_error *err);
