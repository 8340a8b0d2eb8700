/* Tests for S3Download and S3Upload (guest-agent/mod-s3.c).
 *
 * The AWS client lives in another layer; here a TEST HOOK stands in for it: each "bucket" is a
 * local folder (tmp/buckets/<bucket>/<key>), and the hook copies files in and out of it and
 * lists keys by walking it. What is tested is everything the modules do themselves: s3://
 * parsing, destinations, overwrite, key prefixes with '*', wildcards and recurse on upload,
 * temporary files, and the error without an AWS client. */
#include "kiln-test.h"

#include <dirent.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "guest-agent/mod-common.h"
#include "guest-agent/module.h"
#include "guest-agent/s3hook.h"

static char *tmp;
static json_t *outputs;
static struct kiln_error err;
static struct kiln_buf calls; /* "download b/k owner\n" ... */

static char *
bucket_path(const char *bucket, const char *key)
{
    return kiln_asprintf("%s/buckets/%s/%s", tmp, bucket, key);
}

static int
copy(const char *from, const char *to, struct kiln_error *e)
{
    _cleanup_free_ char *data = NULL;
    size_t len;
    int r = kiln_read_file(from, 1 << 20, &data, &len, e);
    if (r < 0)
        return r;
    return kiln_write_file_atomic(to, data, len, 0644, e);
}

static void
record(const char *op, const struct kiln_s3_location *loc)
{
    kiln_buf_appendf(&calls, "%s %s/%s %s\n", op, loc->bucket, loc->key,
                     loc->expected_bucket_owner ? loc->expected_bucket_owner : "-");
}

static int
hook_download(void *ud, const struct kiln_s3_location *src, const char *local_path,
              const struct kiln_s3_limits *limits, struct kiln_error *e)
{
    record("download", src);
    _cleanup_free_ char *p = bucket_path(src->bucket, src->key);
    struct stat st;
    if (stat(p, &st) < 0 || !S_ISREG(st.st_mode))
        return -ENOENT;
    /* the module hands over an existing, empty file */
    assert_int_equal(stat(local_path, &st), 0);
    assert_int_equal(st.st_size, 0);
    return copy(p, local_path, e);
}

static int
hook_upload(void *ud, const struct kiln_s3_location *dst, const char *local_path,
            const struct kiln_s3_limits *limits, struct kiln_error *e)
{
    record("upload", dst);
    _cleanup_free_ char *p = bucket_path(dst->bucket, dst->key);
    _cleanup_free_ char *dir = kiln_strdup(p);
    *strrchr(dir, '/') = '\0';
    int r = kiln_mkdir_p(dir, 0755, e);
    return r < 0 ? r : copy(local_path, p, e);
}

static void
walk(const char *root, const char *rel, const char *prefix, char ***keys, size_t *n)
{
    _cleanup_free_ char *dir = *rel ? kiln_path_join(root, rel) : kiln_strdup(root);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *key =
            *rel ? kiln_asprintf("%s/%s", rel, de->d_name) : kiln_strdup(de->d_name);
        _cleanup_free_ char *p = kiln_path_join(root, key);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            walk(root, key, prefix, keys, n);
        } else if (strncmp(key, prefix, strlen(prefix)) == 0) {
            *keys = kiln_reallocarray(*keys, *n + 2, sizeof(**keys));
            (*keys)[(*n)++] = TAKE_PTR(key);
            (*keys)[*n] = NULL;
        }
    }
    closedir(d);
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
hook_list(void *ud, const struct kiln_s3_location *prefix, size_t max_keys, char ***ret_keys,
          const struct kiln_s3_limits *limits, struct kiln_error *e)
{
    record("list", prefix);
    if (strcmp(prefix->bucket, "evil") == 0) {
        /* a hostile listing: a key that climbs out of the destination */
        char **keys = kiln_new(char *, 3);
        keys[0] = kiln_strdup("p/ok.txt");
        keys[1] = kiln_strdup("p/../../escape.txt");
        *ret_keys = keys;
        return 0;
    }
    if (strcmp(prefix->bucket, "liar") == 0) {
        /* a listing with a key outside the prefix asked for */
        char **keys = kiln_new(char *, 2);
        keys[0] = kiln_strdup("elsewhere/x.txt");
        *ret_keys = keys;
        return 0;
    }
    _cleanup_free_ char *root = bucket_path(prefix->bucket, "");
    char **keys = kiln_new(char *, 1);
    size_t n = 0;
    walk(root, "", prefix->key, &keys, &n);
    qsort(keys, n, sizeof(*keys), cmp_str);
    *ret_keys = keys;
    return 0;
}

static const struct kiln_s3_hooks test_hooks = {hook_download, hook_upload, hook_list, NULL};

static int
setup(void **state)
{
    if (kiln_mkdtemp("kiln-mods3-", &tmp, NULL) < 0)
        return -1;
    kiln_buf_reset(&calls);
    kiln_s3_set_hooks(&test_hooks);
    return 0;
}

static int
teardown(void **state)
{
    kiln_s3_set_hooks(NULL);
    json_decref(outputs);
    outputs = NULL;
    kiln_rm_rf(tmp, NULL);
    free(tmp);
    tmp = NULL;
    kiln_buf_clear(&calls);
    return 0;
}

static void
mkdir_in_tmp(const char *name)
{
    _cleanup_free_ char *p = kiln_path_join(tmp, name);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void
put_object(const char *bucket, const char *key, const char *content)
{
    _cleanup_free_ char *p = bucket_path(bucket, key);
    _cleanup_free_ char *dir = kiln_strdup(p);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(kiln_mkdir_p(dir, 0755, NULL), 0);
    assert_int_equal(kiln_write_file_atomic(p, content, strlen(content), 0644, NULL), 0);
}

static void
write_local(const char *rel, const char *content)
{
    _cleanup_free_ char *p = kiln_path_join(tmp, rel);
    _cleanup_free_ char *dir = kiln_strdup(p);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(kiln_mkdir_p(dir, 0755, NULL), 0);
    assert_int_equal(kiln_write_file_atomic(p, content, strlen(content), 0644, NULL), 0);
}

static void
assert_local(const char *rel, const char *expect)
{
    _cleanup_free_ char *p = kiln_path_join(tmp, rel);
    _cleanup_free_ char *data = NULL;
    size_t len;
    if (kiln_read_file(p, 1 << 20, &data, &len, NULL) < 0)
        fail_msg("missing %s", p);
    assert_string_equal(data, expect);
}

static void
assert_object(const char *bucket, const char *key, const char *expect)
{
    _cleanup_free_ char *p = bucket_path(bucket, key);
    _cleanup_free_ char *data = NULL;
    size_t len;
    if (kiln_read_file(p, 1 << 20, &data, &len, NULL) < 0)
        fail_msg("missing object %s/%s", bucket, key);
    assert_string_equal(data, expect);
}

static bool
local_exists(const char *rel)
{
    _cleanup_free_ char *p = kiln_path_join(tmp, rel);
    struct stat st;
    return lstat(p, &st) == 0;
}

static int run(const char *module, const char *fmt, ...) _printf_(2, 3);

static int
run(const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *text = NULL;
    assert_true(vasprintf(&text, fmt, ap) >= 0);
    va_end(ap);
    _cleanup_buf_ struct kiln_buf expanded = {0};
    for (const char *p = text; *p; p++) {
        if (*p == '@')
            kiln_buf_append_str(&expanded, tmp);
        else
            kiln_buf_append_char(&expanded, *p);
    }
    json_error_t je;
    _cleanup_json_ json_t *in = json_loads(expanded.data, 0, &je);
    if (!in)
        fail_msg("bad JSON in test: %s: %s", je.text, expanded.data);
    struct kiln_module_ctx ctx = {.step_name = "S3", .work_dir = tmp, .timeout_seconds = 60};
    kiln_error_clear(&err);
    json_decref(outputs);
    outputs = NULL;
    return kiln_module_find(module)->run(in, &ctx, &outputs, &err);
}

static void
test_no_client(void **state)
{
    kiln_s3_set_hooks(NULL);
    assert_int_equal(run("S3Download", "[{\"source\": \"s3://b/k\", \"destination\": \"@/k\"}]"),
                     -KILN_E_UNSUPPORTED);
    assert_string_equal(err.message, "S3Download: no AWS client in this build");
    assert_int_equal(run("S3Upload", "[{\"source\": \"@/x\", \"destination\": \"s3://b/k\"}]"),
                     -KILN_E_UNSUPPORTED);
    assert_string_equal(err.message, "S3Upload: no AWS client in this build");
}

static void
test_download_object(void **state)
{
    put_object("mybucket", "path/to/package.zip", "zip");
    mkdir_in_tmp("myfolder");
    assert_int_equal(run("S3Download", "[{\"source\": \"s3://mybucket/path/to/package.zip\", "
                                       "\"destination\": \"@/myfolder/package.zip\", "
                                       "\"expectedBucketOwner\": 123456789022},"
                                       " {\"source\": \"s3://mybucket/path/to/package.zip\", "
                                       "\"destination\": \"@/myfolder/\"}]"),
                     0);
    assert_true(json_is_object(outputs) && json_object_size(outputs) == 0);
    assert_local("myfolder/package.zip", "zip");
    /* the expected owner reaches the client, as text */
    assert_string_equal(calls.data, "download mybucket/path/to/package.zip 123456789022\n"
                                    "download mybucket/path/to/package.zip -\n");
    /* overwrite false: AWSTOE's own message, and the file is untouched */
    put_object("mybucket", "path/to/package.zip", "zip2");
    assert_int_equal(run("S3Download", "[{\"source\": \"s3://mybucket/path/to/package.zip\", "
                                       "\"destination\": \"@/myfolder/package.zip\", "
                                       "\"overwrite\": false}]"),
                     -EEXIST);
    assert_string_equal(err.message, "S3Download: File already exists and \"overwrite\" property "
                                     "for \"destination\" file is set to false. Cannot download.");
    assert_local("myfolder/package.zip", "zip");
    assert_int_equal(run("S3Download", "[{\"source\": \"s3://mybucket/path/to/package.zip\", "
                                       "\"destination\": \"@/myfolder/package.zip\"}]"),
                     0);
    assert_local("myfolder/package.zip", "zip2");
}

static void
test_download_errors(void **state)
{
    /* the destination's folder must exist (as in AWSTOE) */
    put_object("b", "k.txt", "k");
    assert_int_equal(
        run("S3Download", "[{\"source\": \"s3://b/k.txt\", \"destination\": \"@/nope/k.txt\"}]"),
        -ENOENT);
    assert_non_null(strstr(err.message, "does not exist"));
    assert_false(local_exists("nope"));
    /* a missing object leaves no temporary file */
    assert_int_equal(
        run("S3Download", "[{\"source\": \"s3://b/missing\", \"destination\": \"@/m\"}]"), -ENOENT);
    assert_string_equal(err.message, "S3Download: s3://b/missing: no such object");
    DIR *d = opendir(tmp);
    struct dirent *de;
    while ((de = readdir(d)))
        assert_null(strstr(de->d_name, ".kiln-"));
    closedir(d);
    assert_int_equal(run("S3Download", "[{\"source\": \"/local/k\", \"destination\": \"@/m\"}]"),
                     -KILN_E_INVALID);
    assert_int_equal(run("S3Download", "[{\"source\": \"s3://b/dir/\", \"destination\": \"@/\"}]"),
                     -KILN_E_INVALID);
    assert_int_equal(run("S3Download", "[{\"source\": \"s3:///k\", \"destination\": \"@/\"}]"),
                     -KILN_E_INVALID);
}

static void
test_download_prefix(void **state)
{
    put_object("mybucket", "path/to/a.txt", "a");
    put_object("mybucket", "path/to/sub/b.txt", "b");
    put_object("mybucket", "path/other.txt", "o");
    put_object("mybucket", "path/tomato.txt", "t");
    mkdir_in_tmp("dl");
    assert_int_equal(run("S3Download", "[{\"source\": \"s3://mybucket/path/to/*\", "
                                       "\"destination\": \"@/dl/\", \"expectedBucketOwner\": "
                                       "\"111122223333\"}]"),
                     0);
    assert_local("dl/a.txt", "a");
    assert_local("dl/sub/b.txt", "b");
    assert_false(local_exists("dl/other.txt"));
    assert_false(local_exists("dl/tomato.txt")); /* "path/to/" is not "path/to" */
    assert_non_null(strstr(calls.data, "list mybucket/path/to/ 111122223333\n"));
    /* overwrite false stops at an existing file */
    assert_int_equal(run("S3Download", "[{\"source\": \"s3://mybucket/path/to/*\", "
                                       "\"destination\": \"@/dl\", \"overwrite\": false}]"),
                     -EEXIST);
    /* a prefix without a trailing '/' keeps the names relative to its folder */
    assert_int_equal(run("S3Download", "[{\"source\": \"s3://mybucket/path/to*\", "
                                       "\"destination\": \"@/dl\"}]"),
                     0);
    assert_local("dl/to/a.txt", "a");
    assert_local("dl/tomato.txt", "t");
    /* the folder must exist */
    assert_int_equal(run("S3Download", "[{\"source\": \"s3://mybucket/path/to/*\", "
                                       "\"destination\": \"@/new/\"}]"),
                     -ENOENT);
}

/* A listed key that would escape the destination folder is refused. */
static void
test_download_prefix_escape(void **state)
{
    put_object("evil", "p/ok.txt", "ok");
    mkdir_in_tmp("dl");
    assert_int_equal(
        run("S3Download", "[{\"source\": \"s3://evil/p/*\", \"destination\": \"@/dl\"}]"),
        -KILN_E_INVALID);
    assert_non_null(strstr(err.message, "p/../../escape.txt does not map to a path inside"));
    assert_false(local_exists("escape.txt"));
    assert_false(local_exists("../escape.txt"));
    assert_int_equal(
        run("S3Download", "[{\"source\": \"s3://liar/p/*\", \"destination\": \"@/dl\"}]"),
        -KILN_E_REMOTE);
}

static void
test_upload(void **state)
{
    write_local("myfolder/package.zip", "zip");
    write_local("myfolder/b.txt", "b");
    write_local("myfolder/sub/c.txt", "c");
    write_local("myfolder/sub/deep/d.txt", "d");
    /* one file, to a key and under a prefix */
    assert_int_equal(run("S3Upload", "[{\"source\": \"@/myfolder/package.zip\", \"destination\": "
                                     "\"s3://mybucket/path/to/package.zip\", "
                                     "\"expectedBucketOwner\": 123456789022},"
                                     " {\"source\": \"@/myfolder/b.txt\", \"destination\": "
                                     "\"s3://mybucket/pre/\"}]"),
                     0);
    assert_object("mybucket", "path/to/package.zip", "zip");
    assert_object("mybucket", "pre/b.txt", "b");
    assert_non_null(strstr(calls.data, "upload mybucket/path/to/package.zip 123456789022\n"));
    /* wildcard: files only, unless recurse */
    assert_int_equal(run("S3Upload", "[{\"source\": \"@/myfolder/*\", \"destination\": "
                                     "\"s3://mybucket/flat/\"}]"),
                     0);
    assert_object("mybucket", "flat/package.zip", "zip");
    assert_object("mybucket", "flat/b.txt", "b");
    _cleanup_free_ char *no_sub = bucket_path("mybucket", "flat/sub");
    assert_int_equal(access(no_sub, F_OK), -1);
    assert_int_equal(run("S3Upload", "[{\"source\": \"@/myfolder/*\", \"destination\": "
                                     "\"s3://mybucket/tree/\", \"recurse\": true}]"),
                     0);
    assert_object("mybucket", "tree/sub/c.txt", "c");
    assert_object("mybucket", "tree/sub/deep/d.txt", "d");
    assert_object("mybucket", "tree/b.txt", "b");
    /* a folder needs recurse; then its contents go under the prefix */
    assert_int_equal(run("S3Upload", "[{\"source\": \"@/myfolder/sub\", \"destination\": "
                                     "\"s3://mybucket/s/\"}]"),
                     -EISDIR);
    assert_int_equal(run("S3Upload", "[{\"source\": \"@/myfolder/sub\", \"destination\": "
                                     "\"s3://mybucket/s\", \"recurse\": \"true\"}]"),
                     0);
    assert_object("mybucket", "s/c.txt", "c");
    assert_object("mybucket", "s/deep/d.txt", "d");
    /* errors */
    assert_int_equal(run("S3Upload", "[{\"source\": \"@/myfolder/*\", \"destination\": "
                                     "\"s3://mybucket/noslash\"}]"),
                     -KILN_E_INVALID);
    assert_int_equal(run("S3Upload", "[{\"source\": \"@/missing\", \"destination\": "
                                     "\"s3://mybucket/x\"}]"),
                     -ENOENT);
    assert_int_equal(run("S3Upload", "[{\"source\": \"@/myfolder/b.txt\", \"destination\": "
                                     "\"https://mybucket/x\"}]"),
                     -KILN_E_INVALID);
}

KILN_TEST_MAIN(cmocka_unit_test_setup_teardown(test_no_client, setup, teardown),
               cmocka_unit_test_setup_teardown(test_download_object, setup, teardown),
               cmocka_unit_test_setup_teardown(test_download_errors, setup, teardown),
               cmocka_unit_test_setup_teardown(test_download_prefix, setup, teardown),
               cmocka_unit_test_setup_teardown(test_download_prefix_escape, setup, teardown),
               cmocka_unit_test_setup_teardown(test_upload, setup, teardown))
