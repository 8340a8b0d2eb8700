/* The state store: one SQLite database (WAL) under the Kiln home holding every image build, its
 * status and outputs, and every live resource of every build (so that a crashed build's
 * resources can be found and reaped). Safe for concurrent builds: writers wait on a busy
 * timeout, build numbers are taken inside an immediate transaction. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

enum kiln_image_status {
    KILN_IMAGE_PENDING,
    KILN_IMAGE_BUILDING,
    KILN_IMAGE_TESTING,
    KILN_IMAGE_DISTRIBUTING,
    KILN_IMAGE_AVAILABLE,
    KILN_IMAGE_FAILED,
    KILN_IMAGE_CANCELLED,
};

const char *kiln_image_status_name(enum kiln_image_status s);
int kiln_image_status_from_name(const char *name, enum kiln_image_status *ret);
bool kiln_image_status_is_final(enum kiln_image_status s);
/* PENDING -> BUILDING -> TESTING -> DISTRIBUTING -> AVAILABLE (TESTING may be skipped);
 * any unfinished state -> FAILED or CANCELLED. */
bool kiln_image_status_can_move(enum kiln_image_status from, enum kiln_image_status to);

struct kiln_image_output {
    char *target; /* "local:<directory>", or a region */
    char *format; /* qcow2, raw, vmdk, vhdx, ami */
    char *path;   /* file path or AMI id */
    long long size;
    char *sha256;
};

struct kiln_image_record {
    long long id;
    char *name;
    char *version; /* semantic version x.y.z */
    long build;    /* 1, 2, ... per name+version */
    enum kiln_image_status status;
    char *reason;
    long long created, updated, finished; /* unix seconds; finished 0 while running */
    char *build_id;                       /* unique, names and tags every resource of the build */
    long pid;                             /* the building process */
    char *driver;
    char *uri;
    char *recipe_path;
    char *work_dir;
    char *log_dir;
    char *manifest_path;
    struct kiln_image_output *outputs;
    size_t n_outputs;
};

void kiln_image_record_free(struct kiln_image_record *r);
static inline void
kiln_image_record_freep(struct kiln_image_record **r)
{
    kiln_image_record_free(*r);
}
void kiln_image_record_list_free(struct kiln_image_record **list, size_t n);

struct kiln_resource_record {
    long long id;
    char *build_id;
    char *kind; /* "domain", "overlay", "instance", ... as the driver names it */
    char *rid;
    char *driver;
    long long created;
    bool kept; /* kept on purpose (terminateInstanceOnFailure: false) */
};

void kiln_resource_record_list_free(struct kiln_resource_record *list, size_t n);

struct kiln_store;

/* Open (creating and migrating) <home>/kiln.db. */
int kiln_store_open(const char *home, struct kiln_store **ret, struct kiln_error *err);
void kiln_store_free(struct kiln_store *s);
static inline void
kiln_store_freep(struct kiln_store **s)
{
    kiln_store_free(*s);
}
const char *kiln_store_home(const struct kiln_store *s);
/* The schema version the database is at (PRAGMA user_version). */
int kiln_store_schema_version(struct kiln_store *s);
#define KILN_STORE_SCHEMA_VERSION 1

/* A new PENDING image: takes the next build number of name+version. */
int kiln_store_image_create(struct kiln_store *s, const char *name, const char *version,
                            const char *driver, const char *uri, const char *recipe_path,
                            struct kiln_image_record **ret, struct kiln_error *err);
/* The same, holding the new build's lock (see kiln_store_build_lock) before the record is
 * visible to anyone else; *ret_lock_fd is released with kiln_store_build_unlock. */
int kiln_store_image_create_locked(struct kiln_store *s, const char *name, const char *version,
                                   const char *driver, const char *uri, const char *recipe_path,
                                   struct kiln_image_record **ret, int *ret_lock_fd,
                                   struct kiln_error *err);
/* Move to status (checked with kiln_image_status_can_move); reason may be NULL. */
int kiln_store_image_set_status(struct kiln_store *s, long long id, enum kiln_image_status status,
                                const char *reason, struct kiln_error *err);
/* Set any of the paths that are non-NULL. */
int kiln_store_image_set_paths(struct kiln_store *s, long long id, const char *work_dir,
                               const char *log_dir, const char *manifest_path,
                               struct kiln_error *err);
int kiln_store_image_add_output(struct kiln_store *s, long long id,
                                const struct kiln_image_output *out, struct kiln_error *err);
/* By name, version and build; build 0: the newest build of that version. -ENOENT if none. */
int kiln_store_image_get(struct kiln_store *s, const char *name, const char *version, long build,
                         struct kiln_image_record **ret, struct kiln_error *err);
int kiln_store_image_get_by_build_id(struct kiln_store *s, const char *build_id,
                                     struct kiln_image_record **ret, struct kiln_error *err);
/* Every image, oldest first. */
int kiln_store_image_list(struct kiln_store *s, struct kiln_image_record ***ret, size_t *ret_n,
                          struct kiln_error *err);

int kiln_store_resource_add(struct kiln_store *s, const char *build_id, const char *kind,
                            const char *rid, const char *driver, struct kiln_error *err);
int kiln_store_resource_remove(struct kiln_store *s, const char *build_id, const char *kind,
                               const char *rid, struct kiln_error *err);
/* Mark every live resource of a build as kept on purpose. */
int kiln_store_resource_keep(struct kiln_store *s, const char *build_id, struct kiln_error *err);
/* Forget every resource record of a build. */
int kiln_store_resource_clear(struct kiln_store *s, const char *build_id, struct kiln_error *err);
/* Live resources of one build (build_id) or of all builds (NULL). */
int kiln_store_resource_list(struct kiln_store *s, const char *build_id,
                             struct kiln_resource_record **ret, size_t *ret_n,
                             struct kiln_error *err);

/* Build locks: a running build holds an exclusive flock on <home>/run/<build_id>.lock for its
 * whole life; a build whose lock can be taken is not running (it finished or crashed). */
int kiln_store_build_lock(struct kiln_store *s, const char *build_id, int *ret_fd,
                          struct kiln_error *err);
void kiln_store_build_unlock(struct kiln_store *s, const char *build_id, int fd);
bool kiln_store_build_is_running(struct kiln_store *s, const char *build_id);
