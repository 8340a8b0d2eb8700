/* The factory's model: image recipes, infrastructure and distribution configurations, image
 * pipelines, semantic versions and name templates, with Image Builder's field names.
 *
 * Loaders validate everything they read and report every problem at once: each line of the
 * error message is "file:line:column: message". */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "common/error.h"

/* ---- semantic versions (Image Builder: major.minor.patch, each 0..2^30-1) ---- */

#define KILN_SEMVER_MAX 1073741823L

struct kiln_semver {
    long major, minor, patch;
};

/* Strict "x.y.z": digits only, no leading zeros, each node <= KILN_SEMVER_MAX. */
int kiln_semver_parse(const char *s, struct kiln_semver *ret);
int kiln_semver_compare(const struct kiln_semver *a, const struct kiln_semver *b);

/* A version filter as Image Builder writes it: "1.2.3", "1.2.x", "1.x.x", "x.x.x". A node is a
 * number or "x"; every node right of the first "x" must be "x" too. -1 marks a wildcard. */
struct kiln_semver_filter {
    long major, minor, patch;
};

int kiln_semver_filter_parse(const char *s, struct kiln_semver_filter *ret);
bool kiln_semver_filter_match(const struct kiln_semver_filter *f, const struct kiln_semver *v);

/* An image version "x.y.z/build" (build >= 1). */
int kiln_image_version_parse(const char *s, struct kiln_semver *ret_version, long *ret_build);

/* ---- name templates ---- */

/* Expand {{imagebuilder:buildDate}} (UTC, 2024-02-29T13-14-15Z: AMI names allow no ':') and
 * {{imagebuilder:buildVersion}} (the build number: the last node of x.y.z/build). Other
 * {{...}} text is kept; an unknown {{imagebuilder:...}} variable is an error. */
int kiln_name_template_expand(const char *tmpl, long build_number, time_t build_date, char **ret,
                              struct kiln_error *err);
/* Only checks that every {{imagebuilder:...}} variable is known; ret_bad gets the first unknown. */
bool kiln_name_template_check(const char *tmpl, char **ret_bad);

/* ---- image recipe ---- */

struct kiln_component_parameter {
    char *name;
    char **values; /* NULL-terminated */
};

struct kiln_component_ref {
    char *arn;      /* componentArn as written, or NULL */
    char *path;     /* path as written (relative to the recipe), or NULL */
    char *name;     /* "name" or "name/1.x.x", or NULL */
    char *resolved; /* absolute document path, after kiln_recipe_resolve() */
    struct kiln_component_parameter *parameters;
    size_t n_parameters;
    unsigned line, column; /* position of the list item, for messages */
};

struct kiln_block_device {
    char *device_name;
    char *virtual_name;
    bool no_device;
    long long volume_size_gib; /* ebs.volumeSize, 0 when unset */
    char *volume_type;
    bool delete_on_termination;
    bool encrypted;
};

struct kiln_recipe {
    char *source; /* file the recipe came from */
    char *dir;    /* its folder: component paths are relative to it */
    char *name;
    char *semantic_version;
    struct kiln_semver version;
    char *description;
    char *parent_image;
    unsigned parent_line, parent_column; /* where parentImage is written */
    char *working_directory;             /* default /tmp, as Image Builder */
    struct kiln_component_ref *components;
    size_t n_components;
    struct kiln_block_device *block_devices;
    size_t n_block_devices;
    bool ssm_uninstall_after_build;
    char *user_data_override; /* base64 as Image Builder takes it, or NULL */
    json_t *tags;             /* object, may be NULL */
};

int kiln_recipe_load(const char *path, struct kiln_recipe **ret, struct kiln_error *err);
/* Like kiln_recipe_load, but an invalid recipe (-KILN_E_INVALID) is still returned in *ret with
 * what could be read, so that its components can be checked too (NULL when unreadable). */
int kiln_recipe_load_partial(const char *path, struct kiln_recipe **ret, struct kiln_error *err);
void kiln_recipe_free(struct kiln_recipe *r);
static inline void
kiln_recipe_freep(struct kiln_recipe **r)
{
    kiln_recipe_free(*r);
}

/* Turn each component reference into a document path: path (relative to the recipe), or a
 * name/ARN looked up in search_dirs (NULL-terminated; files <name>/<version>.yml). All problems
 * at once, at the reference's file:line:column. */
int kiln_recipe_resolve(struct kiln_recipe *r, char *const *search_dirs, struct kiln_error *err);

/* ---- infrastructure configuration ---- */

struct kiln_infrastructure {
    char *source; /* NULL for the built-in default */
    char *name;
    char *description;
    char *driver; /* "libvirt" (default), "ec2", "fake" */
    char *uri;    /* libvirt.uri, default qemu:///system */
    char *accel;  /* libvirt.accel: auto|kvm|tcg */
    unsigned vcpus;
    unsigned memory_mib;
    /* EC2 fields as Image Builder names them */
    char **instance_types;
    char *subnet_id;
    char **security_group_ids;
    char *instance_profile_name;
    char *key_pair;
    char *s3_bucket_name;
    char *s3_key_prefix;
    char *sns_topic_arn;
    bool terminate_on_failure; /* default true */
    json_t *resource_tags;
    json_t *settings; /* the whole document as JSON, handed to drivers as settings */
};

int kiln_infrastructure_load(const char *path, struct kiln_infrastructure **ret,
                             struct kiln_error *err);
/* libvirt, qemu:///system, accel auto, 2 vCPUs, 2048 MiB. */
struct kiln_infrastructure *kiln_infrastructure_default(void);
void kiln_infrastructure_free(struct kiln_infrastructure *i);
static inline void
kiln_infrastructure_freep(struct kiln_infrastructure **i)
{
    kiln_infrastructure_free(*i);
}

/* ---- distribution configuration ---- */

struct kiln_local_target {
    char *directory; /* absolute (relative paths resolve against the file's folder) */
    char **formats;  /* qcow2|raw|vmdk|vhdx, NULL-terminated, default {qcow2} */
    bool compress;
};

struct kiln_distribution {
    char *region;   /* EC2 target, or NULL */
    json_t *ami;    /* amiDistributionConfiguration as written, or NULL */
    char *ami_name; /* amiDistributionConfiguration.name (a template), or NULL */
    bool is_local;
    struct kiln_local_target local;
    unsigned line, column;
};

struct kiln_distribution_config {
    char *source;
    char *name;
    char *description;
    struct kiln_distribution *items;
    size_t n_items;
};

int kiln_distribution_load(const char *path, struct kiln_distribution_config **ret,
                           struct kiln_error *err);
/* One local target: <home>/outputs/, qcow2 (<home>/images/ holds the base images). */
struct kiln_distribution_config *kiln_distribution_default(const char *home);
void kiln_distribution_free(struct kiln_distribution_config *d);
static inline void
kiln_distribution_freep(struct kiln_distribution_config **d)
{
    kiln_distribution_free(*d);
}

/* ---- image pipeline ---- */

struct kiln_pipeline {
    char *source;
    char *name;
    char *description;
    char *recipe_path;         /* imageRecipe: path relative to the pipeline file */
    char *infrastructure_path; /* infrastructureConfiguration, or NULL */
    char *distribution_path;   /* distributionConfiguration, or NULL */
    bool tests_enabled;        /* imageTestsConfiguration.imageTestsEnabled, default true */
    int timeout_minutes;       /* imageTestsConfiguration.timeoutMinutes, 60..1440, default 720 */
    char *schedule_expression; /* schedule.scheduleExpression, or NULL */
    char *timezone;
    char *start_condition; /* EXPRESSION_MATCH_ONLY |
                              EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE */
    bool enabled;          /* status ENABLED (default) | DISABLED */
};

int kiln_pipeline_load(const char *path, struct kiln_pipeline **ret, struct kiln_error *err);
void kiln_pipeline_free(struct kiln_pipeline *p);
static inline void
kiln_pipeline_freep(struct kiln_pipeline **p)
{
    kiln_pipeline_free(*p);
}

