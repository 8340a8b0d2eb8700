/* The build lifecycle: resolve -> validate every document -> launch -> build and validate phases
 * of each component -> Linux cleanup -> stop -> snapshot -> test instance from the new image ->
 * test phases -> local distribution -> AVAILABLE. Any failure ends FAILED with a reason a person
 * can act on, a cancel request ends CANCELLED, and every resource is released either way. */
#pragma once

#include <signal.h>
#include <stdbool.h>

#include "common/error.h"
#include "drivers/driver.h"
#include "factory/model.h"
#include "factory/store.h"

/* Live progress for the terminal. Every member may be NULL. */
struct kiln_build_progress {
    /* A stage begins: "validate", "launch", "build", "cleanup", "snapshot", "test",
     * "distribute", "done". */
    void (*stage)(void *userdata, const char *stage);
    /* The current step, as a short line ("component 1/2 hello: build/Say"). */
    void (*step)(void *userdata, const char *text);
    /* Guest console output of the running step. */
    void (*console)(void *userdata, const char *stream, const char *data, size_t len);
    void *userdata;
};

/* Turn a recipe's parentImage into an image to boot. */
typedef int (*kiln_parent_resolve_fn)(void *userdata, const struct kiln_recipe *recipe,
                                      struct kiln_image_ref *ret, struct kiln_error *err);
typedef const struct kiln_driver_ops *(*kiln_driver_find_fn)(const char *name);

struct kiln_build_options {
    const char *recipe_path;
    const char *infrastructure_path; /* NULL: local defaults */
    const char *distribution_path;   /* NULL: <home>/outputs, qcow2 */
    const char *home;                /* NULL: kiln_home_dir() */
    struct kiln_store *store;        /* required by kiln_build_run */
    kiln_driver_find_fn find_driver; /* NULL: kiln_driver_find */
    /* NULL: parentImage names a base image in <home>/images/<name>/current/image.json (as
     * images/<name>/build.sh writes it), or is a qcow2/raw file (relative to the recipe). */
    kiln_parent_resolve_fn resolve_parent;
    void *resolve_userdata;
    char **component_dirs; /* catalogs for name/ARN references; NULL: <home>/components */
    bool skip_tests;       /* imageTestsEnabled: false */
    /* Keep each component's result as a layer in <home>/cache/layers and resume a rebuild
     * from the longest prefix already built (one more boot per component when building). */
    bool layer_cache;
    int test_timeout_minutes;  /* 0: 720 */
    /* > 0: the test stage's limit in seconds instead of test_timeout_minutes (Image Builder's
     * minimum is 60 minutes; this finer limit is for tests). */
    int test_timeout_seconds;
    int ready_timeout_seconds; /* 0: 600 */
    const char *qemu_img;      /* NULL: "qemu-img" from PATH */
    const struct kiln_build_progress *progress;
    volatile sig_atomic_t *cancel; /* non-zero: cancel as soon as possible */
};

struct kiln_build_result {
    char *name;
    char *version; /* x.y.z/build */
    char *build_id;
    enum kiln_image_status status;
    char *reason;        /* FAILED/CANCELLED */
    char *kept_instance; /* terminateInstanceOnFailure: false: how to reach the guest */
    char *manifest_path;
    char *log_dir;
};

void kiln_build_result_clear(struct kiln_build_result *r);

/* Load and validate the recipe, infrastructure, distribution and every component document;
 * start nothing. Returns 0 or -KILN_E_INVALID with every problem in err. */
int kiln_build_validate(const struct kiln_build_options *opts, struct kiln_error *err);

/* Run a whole build. Returns 0 when the image is AVAILABLE; otherwise a negative code with the
 * reason in err, and result->status FAILED or CANCELLED (or PENDING when validation failed and
 * no image record was made). */
int kiln_build_run(const struct kiln_build_options *opts, struct kiln_build_result *result,
                   struct kiln_error *err);

/* Reap what crashed builds left: every unfinished build whose process is gone is marked FAILED
 * and its resources are removed through its driver; also live (not kept) resources of finished
 * builds. include_kept: also instances kept on purpose. report (may be NULL) is told of each
 * build reaped. Returns the number of builds reaped, or a negative error. */
int kiln_build_reap(struct kiln_store *store, kiln_driver_find_fn find_driver, bool include_kept,
                    void (*report)(void *userdata, const char *build_id, const char *what),
                    void *userdata, struct kiln_error *err);

/* The Linux cleanup Kiln runs in the guest before the snapshot (Image Builder's housekeeping),
 * as an AWSTOE document; skip flags are files named skip_cleanup_* in workingDirectory. */
const char *kiln_build_cleanup_document(void);
/* The document that runs a recipe's userDataOverride (a #! script) on the build instance. */
const char *kiln_build_user_data_document(void);
/* The inventory document run before the cleanup: its output is the manifest's package list. */
const char *kiln_build_inventory_document(void);
/* Read the inventory's output from the TOE folder(s) under dir (the detailedoutput.json the
 * engine wrote): *ret_packages [{name, version, architecture}] and *ret_source ("dpkg", "rpm",
 * "apk", "none"); or a negative code and *ret_note saying why there is no list. */
int kiln_inventory_read(const char *dir, json_t **ret_packages, char **ret_source, char **ret_note);

/* The kernel report (printed by the inventory after the packages, and run alone as
 * kiln_build_boot_kernel_document() before a layer is saved): what the guest runs and what its
 * boot loader will start. */
struct kiln_boot_kernel {
    char *running;        /* uname -r: the kernel this instance booted */
    bool running_modules; /* /lib/modules/<running> exists */
    char *loader;         /* "grub", or NULL: no boot loader configuration in the image */
    char *path;           /* the kernel file the boot loader (or /vmlinuz) starts, or NULL */
    char *version;        /* that kernel's version (uname -r once booted), or NULL */
};

void kiln_boot_kernel_clear(struct kiln_boot_kernel *k);
const char *kiln_build_boot_kernel_document(void);
/* Parse the report's text ("kiln-boot-kernel 1" then "key value" lines). -KILN_E_PARSE when the
 * text is not a report. */
int kiln_boot_kernel_parse(const char *text, struct kiln_boot_kernel *ret);
/* Read the report from the TOE folder(s) under dir (the ReportBootKernel step's output, or the
 * end of ListInstalledPackages'); -ENOENT when there is none. */
int kiln_boot_kernel_read(const char *dir, struct kiln_boot_kernel *ret);
/* Whether an image made on an instance that booted the parent's kernel directly may keep booting
 * that kernel directly (k NULL: no report). False when the image's boot loader will start
 * another kernel: the image must then boot through its firmware and boot loader. *ret_note
 * (may be NULL) says why, for the manifest. */
bool kiln_boot_kernel_keeps_direct(const struct kiln_boot_kernel *k, char **ret_note);
