/* The S3 transfers behind S3Download and S3Upload (and nothing else).
 *
 * guest-agent/ links only common/, so it carries no AWS client: the program that has one (the
 * agent's main, linking cloud/) installs these hooks at start-up. Without them the S3 modules
 * fail with "<module>: no AWS client in this build". Everything else the modules do (parsing
 * s3:// URIs, destinations, overwrite, key prefixes and wildcards, temporary files) happens in
 * guest-agent/mod-s3.c, so a hook only moves bytes. */
#pragma once

#include <signal.h>
#include <stdint.h>

#include "common/error.h"

struct kiln_s3_location {
    const char *bucket;
    const char *key;                   /* for list: the prefix ("" for the whole bucket) */
    const char *expected_bucket_owner; /* account id the bucket must belong to, or NULL */
};

/* Time limits for a hook call: stop when *cancel becomes non-zero or when the monotonic clock
 * (CLOCK_MONOTONIC, milliseconds) passes deadline_ms (-1: none); return -ECANCELED / -ETIMEDOUT. */
struct kiln_s3_limits {
    volatile sig_atomic_t *cancel; /* may be NULL */
    long long deadline_ms;
};

struct kiln_s3_hooks {
    /* Write the object's bytes to local_path (an existing empty file the hook opens with
     * O_WRONLY|O_TRUNC|O_CLOEXEC). Returns 0, -ENOENT when there is no such object, or another
     * negative code with err set. */
    int (*download)(void *userdata, const struct kiln_s3_location *src, const char *local_path,
                    const struct kiln_s3_limits *limits, struct kiln_error *err);
    /* Upload the local file at local_path as the object dst. */
    int (*upload)(void *userdata, const struct kiln_s3_location *dst, const char *local_path,
                  const struct kiln_s3_limits *limits, struct kiln_error *err);
    /* Every key that starts with prefix->key (at most max_keys of them), as a NULL-terminated
     * vector the caller frees with kiln_strv_free. */
    int (*list)(void *userdata, const struct kiln_s3_location *prefix, size_t max_keys,
                char ***ret_keys, const struct kiln_s3_limits *limits, struct kiln_error *err);
    void *userdata;
};

/* Install (copied) or remove (NULL) the hooks; not thread-safe against a running step. */
void kiln_s3_set_hooks(const struct kiln_s3_hooks *hooks);
/* The installed hooks, or NULL. */
const struct kiln_s3_hooks *kiln_s3_get_hooks(void);
