/* S3Download and S3Upload: everything but the transfers, which go through the hooks of
 * guest-agent/s3hook.h (installed by a program that has an AWS client).
 *
 * S3Download: one object to a file (or into a folder, under the key's last name), or every
 * object under a key prefix written as "prefix/" followed by "*" (at most 1000, as AWSTOE) into a
 * folder, keeping the key's sub-folders. The destination's folder must exist, as in AWSTOE. Each
 * object goes to a temporary file first, then is renamed into place.
 * S3Upload: one file to an object (or under a prefix ending in '/'), the files matching a '*'
 * in the source's last component, or with recurse: true whole folders, keys keeping the
 * relative paths. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/time.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "guest-agent/mod-common.h"
#include "guest-agent/s3hook.h"

#define MAX_KEYS 1000

static struct kiln_s3_hooks hooks;
static bool hooks_set;

void
kiln_s3_set_hooks(const struct kiln_s3_hooks *h)
{
    if (h) {
        hooks = *h;
        hooks_set = true;
    } else {
        memset(&hooks, 0, sizeof(hooks));
        hooks_set = false;
    }
}

const struct kiln_s3_hooks *
kiln_s3_get_hooks(void)
{
    return hooks_set ? &hooks : NULL;
}

static struct kiln_s3_limits
limits_for(const struct kiln_module_ctx *ctx)
{
    struct kiln_s3_limits l = {.cancel = ctx ? ctx->cancel : NULL, .deadline_ms = -1};
    if (ctx && ctx->timeout_seconds >= 0)
        l.deadline_ms = kiln_now_ms() + (long long)ctx->timeout_seconds * 1000;
    return l;
}

struct s3uri {
    char *bucket;
    char *key;
};

static void
s3uri_clear(struct s3uri *u)
{
    free(u->bucket);
    free(u->key);
}

static int
parse_s3uri(const char *module, const char *field, const char *uri, struct s3uri *ret,
            struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    if (strncmp(uri, "s3://", 5) != 0)
        return kiln_error_set(err, -KILN_E_INVALID, "%s: %s '%s' is not an s3://bucket/key URI",
                              module, field, uri);
    const char *b = uri + 5;
    const char *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    if (blen == 0)
        return kiln_error_set(err, -KILN_E_INVALID, "%s: %s '%s' has no bucket", module, field,
                              uri);
    ret->bucket = kiln_strndup(b, blen);
    ret->key = kiln_strdup(slash ? slash + 1 : "");
    return 0;
}

static const struct kiln_s3_hooks *
need_hooks(const char *module, struct kiln_error *err)
{
    const struct kiln_s3_hooks *h = kiln_s3_get_hooks();
    if (!h)
        kiln_error_set(err, -KILN_E_UNSUPPORTED, "%s: no AWS client in this build", module);
    return h;
}

static bool
is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool
ends_with_slash(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && s[n - 1] == '/';
}

/* A key's relative part must stay inside the destination folder. */
static bool
safe_relative(const char *rel)
{
    if (!*rel || rel[0] == '/')
        return false;
    const char *p = rel;
    while (*p) {
        size_t n = strcspn(p, "/");
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        if (n == 0 && p[n] == '/' && p[n + 1] != '\0')
            return false; /* "a//b" */
        p += n;
        if (*p == '/')
            p++;
    }
    return true;
}

/* ---- S3Download ---- */

static int
fetch(const struct kiln_s3_hooks *h, const struct s3uri *src, const char *owner, const char *path,
      bool overwrite, const struct kiln_s3_limits *limits, struct kiln_error *err)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return kiln_error_set(err, -EISDIR, "S3Download: destination %s is a folder", path);
        if (!overwrite)
            return kiln_error_set(err, -EEXIST,
                                  "S3Download: File already exists and \"overwrite\" property "
                                  "for \"destination\" file is set to false. Cannot download.");
    }
    _cleanup_free_ char *tmp = kiln_asprintf("%s.kiln-XXXXXX", path);
    _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return kiln_error_errno(err, -errno, "S3Download: cannot create %s", path);
    struct kiln_s3_location loc = {src->bucket, src->key, owner};
    int r = h->download(h->userdata, &loc, tmp, limits, err);
    /* by path: a client may replace the file rather than write into the one handed over */
    if (r == 0 && chmod(tmp, 0644) < 0)
        r = kiln_error_errno(err, -errno, "S3Download: %s", tmp);
    if (r < 0) {
        unlink(tmp);
        if (r == -ENOENT)
            return kiln_error_set(err, r, "S3Download: s3://%s/%s: no such object", src->bucket,
                                  src->key);
        return kiln_error_prefix(err, r, "S3Download: s3://%s/%s", src->bucket, src->key);
    }
    if (!overwrite) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
            return 0;
        if (errno == EEXIST) {
            unlink(tmp);
            return kiln_error_set(err, -EEXIST,
                                  "S3Download: File already exists and \"overwrite\" property "
                                  "for \"destination\" file is set to false. Cannot download.");
        }
    }
    if (rename(tmp, path) < 0) {
        r = -errno;
        unlink(tmp);
        return kiln_error_errno(err, r, "S3Download: cannot move the download to %s", path);
    }
    return 0;
}

static int
download_prefix(const struct kiln_s3_hooks *h, const struct s3uri *src, const char *owner,
                const char *dest, bool overwrite, const struct kiln_s3_limits *limits,
                struct kiln_error *err)
{
    size_t klen = strlen(src->key);
    _cleanup_free_ char *prefix = kiln_strndup(src->key, klen - 1); /* without the '*' */
    if (strchr(prefix, '*'))
        return kiln_error_set(err, -KILN_E_INVALID,
                              "S3Download: only one '*', at the end of the key, is supported");
    if (!is_dir(dest))
        return kiln_error_set(err, -ENOENT, "S3Download: destination folder %s does not exist",
                              dest);
    if (!h->list)
        return kiln_error_set(err, -KILN_E_UNSUPPORTED,
                              "S3Download: the AWS client cannot list objects");
    /* Keys are written relative to the prefix's folder part. */
    const char *slash = strrchr(prefix, '/');
    size_t base = slash ? (size_t)(slash - prefix) + 1 : 0;
    struct kiln_s3_location loc = {src->bucket, prefix, owner};
    _cleanup_strv_free_ char **keys = NULL;
    int r = h->list(h->userdata, &loc, MAX_KEYS, &keys, limits, err);
    if (r < 0)
        return kiln_error_prefix(err, r, "S3Download: listing s3://%s/%s", src->bucket, prefix);
    for (size_t i = 0; keys && keys[i]; i++) {
        if (i >= MAX_KEYS)
            return kiln_error_set(err, -KILN_E_LIMIT,
                                  "S3Download: more than %d objects under s3://%s/%s", MAX_KEYS,
                                  src->bucket, prefix);
        if (strncmp(keys[i], prefix, strlen(prefix)) != 0)
            return kiln_error_set(err, -KILN_E_REMOTE,
                                  "S3Download: the listing returned %s, outside the prefix %s",
                                  keys[i], prefix);
        const char *rel = keys[i] + base;
        if (!safe_relative(rel))
            return kiln_error_set(err, -KILN_E_INVALID,
                                  "S3Download: key %s does not map to a path inside %s", keys[i],
                                  dest);
        _cleanup_free_ char *path = kiln_path_join(dest, rel);
        if (ends_with_slash(rel)) { /* a "folder" object */
            r = kiln_mkdir_p(path, 0755, err);
            if (r < 0)
                return kiln_error_prefix(err, r, "S3Download");
            continue;
        }
        _cleanup_free_ char *parent = kiln_strdup(path);
        *strrchr(parent, '/') = '\0';
        r = kiln_mkdir_p(parent, 0755, err);
        if (r < 0)
            return kiln_error_prefix(err, r, "S3Download");
        struct s3uri obj = {src->bucket, keys[i]};
        r = fetch(h, &obj, owner, path, overwrite, limits, err);
        if (r < 0)
            return r;
    }
    return 0;
}

KILN_MOD_RUN(kiln_mod_s3_download)
{
    for (size_t i = 0; i < kiln_mod_item_count(inputs); i++) {
        const json_t *item = kiln_mod_item(inputs, i);
        _cleanup_free_ char *source = NULL, *dest = NULL, *owner = NULL;
        bool overwrite;
        int r = kiln_mod_get_str(item, "S3Download", "source", true, &source, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, "S3Download", "destination", true, &dest, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, "S3Download", "expectedBucketOwner", false, &owner, err);
        if (r >= 0)
            r = kiln_mod_get_bool(item, "S3Download", "overwrite", true, &overwrite, err);
        if (r < 0)
            return r;
        struct s3uri src;
        r = parse_s3uri("S3Download", "source", source, &src, err);
        if (r < 0)
            return r;
        const struct kiln_s3_hooks *h = need_hooks("S3Download", err);
        struct kiln_s3_limits limits = limits_for(ctx);
        size_t klen = strlen(src.key);
        if (!h) {
            r = -KILN_E_UNSUPPORTED;
        } else if (!*dest) {
            r = kiln_error_set(err, -KILN_E_INVALID, "S3Download: destination is empty");
        } else if (klen == 0 || src.key[klen - 1] == '/') {
            r = kiln_error_set(err, -KILN_E_INVALID,
                               "S3Download: source %s names no object (for a key prefix, end "
                               "it with /*)",
                               source);
        } else if (src.key[klen - 1] == '*') {
            kiln_mod_console(ctx, "S3Download: %s to %s", source, dest);
            r = download_prefix(h, &src, owner, dest, overwrite, &limits, err);
        } else {
            _cleanup_free_ char *path = NULL;
            if (ends_with_slash(dest) || is_dir(dest)) {
                const char *name = strrchr(src.key, '/');
                path = kiln_path_join(dest, name ? name + 1 : src.key);
            } else {
                path = kiln_strdup(dest);
            }
            _cleanup_free_ char *parent = kiln_strdup(path);
            char *slash = strrchr(parent, '/');
            if (slash)
                *(slash == parent ? slash + 1 : slash) = '\0';
            if (slash && !is_dir(parent)) {
                r = kiln_error_set(err, -ENOENT, "S3Download: destination folder %s does not exist",
                                   parent);
            } else {
                kiln_mod_console(ctx, "S3Download: %s to %s", source, path);
                r = fetch(h, &src, owner, path, overwrite, &limits, err);
            }
        }
        s3uri_clear(&src);
        if (r < 0)
            return r;
    }
    *ret_outputs = json_object();
    return 0;
}

/* ---- S3Upload ---- */

struct upload {
    const struct kiln_s3_hooks *h;
    const char *bucket;
    const char *owner;
    const struct kiln_s3_limits *limits;
    const struct kiln_module_ctx *ctx;
};

static int
put(const struct upload *u, const char *key, const char *path, struct kiln_error *err)
{
    struct kiln_s3_location loc = {u->bucket, key, u->owner};
    kiln_mod_console(u->ctx, "S3Upload: %s to s3://%s/%s", path, u->bucket, key);
    int r = u->h->upload(u->h->userdata, &loc, path, u->limits, err);
    return r < 0 ? kiln_error_prefix(err, r, "S3Upload: %s to s3://%s/%s", path, u->bucket, key)
                 : 0;
}

/* Upload a folder's files under prefix (which ends with '/' or is empty), recursively. Links
 * to files are followed; links to folders are not (no loops). */
static int
put_tree(const struct upload *u, const char *dir, const char *prefix, struct kiln_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return kiln_error_errno(err, -errno, "S3Upload: %s", dir);
    _cleanup_strv_free_ char **names = kiln_new(char *, 1);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        names = kiln_reallocarray(names, n + 2, sizeof(*names));
        names[n++] = kiln_strdup(de->d_name);
        names[n] = NULL;
    }
    closedir(d);
    int r = 0;
    for (size_t i = 0; r == 0 && i < n; i++) {
        _cleanup_free_ char *path = kiln_path_join(dir, names[i]);
        struct stat st;
        if (lstat(path, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            _cleanup_free_ char *sub = kiln_asprintf("%s%s/", prefix, names[i]);
            r = put_tree(u, path, sub, err);
        } else if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            _cleanup_free_ char *key = kiln_asprintf("%s%s", prefix, names[i]);
            r = put(u, key, path, err);
        }
    }
    return r;
}

static int
upload_item(const struct upload *u, const char *source, const char *key, bool recurse,
            struct kiln_error *err)
{
    const char *slash = strrchr(source, '/');
    const char *base = slash ? slash + 1 : source;
    bool prefix_dest = key[0] == '\0' || ends_with_slash(key);
    if (strchr(base, '*')) {
        _cleanup_free_ char *dir =
            slash ? kiln_strndup(source, slash == source ? 1 : (size_t)(slash - source))
                  : kiln_strdup(".");
        if (strchr(dir, '*'))
            return kiln_error_set(err, -KILN_E_INVALID,
                                  "S3Upload: %s: wildcards are accepted only after the last '/'",
                                  source);
        if (!prefix_dest)
            return kiln_error_set(err, -KILN_E_INVALID,
                                  "S3Upload: destination must end with '/' when the source has "
                                  "a wildcard");
        DIR *d = opendir(dir);
        if (!d)
            return kiln_error_errno(err, -errno, "S3Upload: %s", dir);
        _cleanup_strv_free_ char **names = kiln_new(char *, 1);
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            if (!kiln_mod_star_match(base, de->d_name))
                continue;
            names = kiln_reallocarray(names, n + 2, sizeof(*names));
            names[n++] = kiln_strdup(de->d_name);
            names[n] = NULL;
        }
        closedir(d);
        int r = 0;
        for (size_t i = 0; r == 0 && i < n; i++) {
            _cleanup_free_ char *path = kiln_path_join(dir, names[i]);
            struct stat st;
            if (lstat(path, &st) < 0)
                continue;
            if (S_ISDIR(st.st_mode)) {
                if (!recurse)
                    continue; /* sub-folders only with recurse */
                _cleanup_free_ char *sub = kiln_asprintf("%s%s/", key, names[i]);
                r = put_tree(u, path, sub, err);
            } else if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                _cleanup_free_ char *k = kiln_asprintf("%s%s", key, names[i]);
                r = put(u, k, path, err);
            }
        }
        return r;
    }

    struct stat st;
    if (stat(source, &st) < 0)
        return kiln_error_errno(err, -errno, "S3Upload: %s", source);
    if (S_ISDIR(st.st_mode)) {
        if (!recurse)
            return kiln_error_set(
                err, -EISDIR, "S3Upload: %s is a folder; set recurse: true to upload it", source);
        _cleanup_free_ char *prefix = prefix_dest ? kiln_strdup(key) : kiln_asprintf("%s/", key);
        return put_tree(u, source, prefix, err);
    }
    if (prefix_dest) {
        _cleanup_free_ char *k = kiln_asprintf("%s%s", key, base);
        return put(u, k, source, err);
    }
    return put(u, key, source, err);
}

KILN_MOD_RUN(kiln_mod_s3_upload)
{
    for (size_t i = 0; i < kiln_mod_item_count(inputs); i++) {
        const json_t *item = kiln_mod_item(inputs, i);
        _cleanup_free_ char *source = NULL, *dest = NULL, *owner = NULL;
        bool recurse;
        int r = kiln_mod_get_str(item, "S3Upload", "source", true, &source, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, "S3Upload", "destination", true, &dest, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, "S3Upload", "expectedBucketOwner", false, &owner, err);
        if (r >= 0)
            r = kiln_mod_get_bool(item, "S3Upload", "recurse", false, &recurse, err);
        if (r < 0)
            return r;
        struct s3uri dst;
        r = parse_s3uri("S3Upload", "destination", dest, &dst, err);
        if (r < 0)
            return r;
        const struct kiln_s3_hooks *h = need_hooks("S3Upload", err);
        struct kiln_s3_limits limits = limits_for(ctx);
        if (!h) {
            r = -KILN_E_UNSUPPORTED;
        } else if (!*source) {
            r = kiln_error_set(err, -KILN_E_INVALID, "S3Upload: source is empty");
        } else {
            struct upload u = {h, dst.bucket, owner, &limits, ctx};
            r = upload_item(&u, source, dst.key, recurse, err);
        }
        s3uri_clear(&dst);
        if (r < 0)
            return r;
    }
    *ret_outputs = json_object();
    return 0;
}
