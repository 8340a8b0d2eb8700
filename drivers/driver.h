/* The driver interface: one small ops table per back end (libvirt, ec2, fake). The factory only
 * ever talks to struct kiln_driver; it never knows which back end it drives. */
#pragma once

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>

#include "common/error.h"
#include "guest-agent/engine.h"

/* Where and how instances run: built by the factory from an infrastructure configuration. */
struct kiln_driver_config {
    const char *uri;        /* libvirt URI (NULL: qemu:///system) */
    const char *accel;      /* "auto" (probe), "kvm" or "tcg" */
    unsigned vcpus;         /* 0: driver default */
    unsigned memory_mib;    /* 0: driver default */
    const char *work_dir;   /* the build's own folder: overlays, sockets, console logs */
    const char *build_id;   /* every resource is tagged/named with it, for reaping */
    const char *home;       /* the Kiln home, for what outlives a build (NULL: the default) */
    const json_t *settings; /* driver-specific settings (ec2: region, instanceTypes, ...) */
    /* Called whenever a resource comes to life (live=true) or is gone (live=false), so that the
     * factory can record it and remove what a crashed build left. May be NULL. */
    void (*on_resource)(void *userdata, const char *kind, const char *id, bool live);
    void *userdata;
    volatile sig_atomic_t *cancel; /* non-zero: abort waits as soon as possible; may be NULL */
};

/* An image an instance boots from: a qcow2/raw file (local) or an AMI (cloud). */
struct kiln_image_ref {
    char *kind;     /* "qcow2", "raw", "ami" */
    char *location; /* file path, or AMI id */
    char *kernel;   /* direct kernel boot (local): kernel path, or NULL to boot the disk */
    char *initrd;   /* may be NULL */
    char *cmdline;  /* kernel command line, may be NULL */
};

void kiln_image_ref_clear(struct kiln_image_ref *ref);
void kiln_image_ref_copy(struct kiln_image_ref *dst, const struct kiln_image_ref *src);

/* A job for the guest agent. */
struct kiln_job {
    char **documents;   /* NULL-terminated host paths of component documents */
    char **phases;      /* NULL-terminated, NULL = all */
    json_t *parameters; /* object name -> string, may be NULL */
    const char *execution_id;
    /* The whole job, reboots included; <= 0 (-1): none. When it runs out, the driver has the
     * agent cancel the job and returns a KILN_RUN_FAILED result with timed_out set, or an error
     * when the agent does not end the job within a short grace. */
    int timeout_seconds;
};

struct kiln_job_result {
    enum kiln_run_status status;
    char *failure;  /* person-readable reason, or NULL */
    char *log_dir;  /* host folder holding the fetched TOE_<date>_<id> folder(s) */
    bool timed_out; /* the job's timeout_seconds ran out and it was cancelled (status FAILED) */
};

void kiln_job_result_clear(struct kiln_job_result *r);

struct kiln_snapshot_options {
    const char *dest;   /* output path (local), or image name (cloud) */
    const char *format; /* "qcow2" (default), "raw" */
    bool compress;      /* qcow2: compressed clusters (zstd where supported) */
};

struct kiln_instance; /* driver-private */

enum {
    KILN_LAUNCH_KEEP_ON_FAILURE = 1 << 0, /* terminateInstanceOnFailure: false */
    /* Return as soon as the instance runs, without waiting for the agent (tests, debugging). */
    KILN_LAUNCH_NO_WAIT = 1 << 1,
    /* The image will be launched again and again (a build's parent): the driver may start the
     * instance from a saved, already booted guest of it, made on first use (libvirt: "Warm
     * start" in docs/drivers.md). Drivers without such a thing boot as usual. */
    KILN_LAUNCH_WARM = 1 << 2,
};

struct kiln_driver_ops {
    const char *name; /* "libvirt", "ec2", "fake" */
    int (*open)(const struct kiln_driver_config *cfg, unsigned flags, void **ret_conn,
                struct kiln_error *err);
    void (*close)(void *conn);
    /* Boot an instance from image and wait for the agent's hello (or fail with the reason,
     * e.g. the last console lines). */
    int (*launch)(void *conn, const struct kiln_image_ref *image, const char *name,
                  int ready_timeout_seconds, unsigned flags, struct kiln_instance **ret,
                  struct kiln_error *err);
    /* Hand a job to the agent, stream its events, handle reboots (reboot the guest,
     * reconnect, resume), fetch the logs into log_dir. */
    int (*run)(struct kiln_instance *inst, const struct kiln_job *job, const char *log_dir,
               const struct kiln_engine_events *events, unsigned flags,
               struct kiln_job_result *ret, struct kiln_error *err);
    /* Orderly power-off of the guest. */
    int (*stop)(struct kiln_instance *inst, int timeout_seconds, unsigned flags,
                struct kiln_error *err);
    /* Capture the stopped instance's disk as a new image. */
    int (*snapshot)(struct kiln_instance *inst, const struct kiln_snapshot_options *opts,
                    unsigned flags, struct kiln_image_ref *ret, struct kiln_error *err);
    /* Always safe, idempotent, also for half-created instances; frees inst. */
    int (*terminate)(struct kiln_instance *inst, unsigned flags, struct kiln_error *err);
    /* Find and remove what a crashed build left behind. */
    int (*reap)(void *conn, const char *build_id, unsigned flags, struct kiln_error *err);
    /* How to reach a kept instance (for terminateInstanceOnFailure: false), or NULL. */
    char *(*describe)(struct kiln_instance *inst);
};

/* Find a driver by name ("libvirt", "fake", ...). */
const struct kiln_driver_ops *kiln_driver_find(const char *name);

/* Reject flags an op does not know (libvirt's virCheckFlags). */
#define KILN_CHECK_FLAGS(flags, known, err)                                                        \
    do {                                                                                           \
        if ((flags) & ~(unsigned)(known))                                                          \
            return kiln_error_set((err), -EINVAL, "%s: unsupported flags 0x%x", __func__,          \
                                  (unsigned)((flags) & ~(unsigned)(known)));                       \
    } while (0)
