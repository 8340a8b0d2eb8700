/* Tests for WebDownload (guest-agent/mod-web.c) against a real local HTTP(S) server that each
 * test starts (tests/data/modules/httpd.py on 127.0.0.1, a free port), with a self-signed
 * certificate made by openssl for the HTTPS cases. */
#include "kiln-test.h"

#include <dirent.h>
#include <ctype.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/json.h"
#include "common/yaml.h"
#include "guest-agent/mod-common.h"
#include "guest-agent/module.h"
#include "guest-agent/proc.h"

extern char **environ;

static char *tmp;     /* the test's folder */
static char *root;    /* what the server serves */
static char *logfile; /* request paths, one per line */
static pid_t server = -1;
static int port;
static const char *payload = "the payload of a.bin\n";

static json_t *outputs;
static struct kiln_error err;

static long long
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
start_server(bool tls)
{
    _cleanup_free_ char *script =
        kiln_path_join(kiln_test_source_dir(), "tests/data/modules/httpd.py");
    _cleanup_free_ char *cert = kiln_path_join(tmp, "cert.pem");
    _cleanup_free_ char *key = kiln_path_join(tmp, "key.pem");
    if (tls) {
        _cleanup_free_ char *cn = kiln_strdup("/CN=127.0.0.1");
        char *argv[] = {"openssl",
                        "req",
                        "-x509",
                        "-newkey",
                        "ec",
                        "-pkeyopt",
                        "ec_paramgen_curve:prime256v1",
                        "-nodes",
                        "-keyout",
                        key,
                        "-out",
                        cert,
                        "-days",
                        "1",
                        "-subj",
                        cn,
                        "-addext",
                        "subjectAltName=IP:127.0.0.1",
                        NULL};
        struct kiln_proc_opts opts = {.argv = argv};
        struct kiln_proc_result res;
        struct kiln_error e = {0};
        if (kiln_proc_run(&opts, NULL, &res, &e) < 0)
            fail_msg("openssl: %s", e.message);
        kiln_proc_result_clear(&res);
    }
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    char *argv[] = {"python3", script,  "--root", root, "--log", logfile, tls ? "--cert" : NULL,
                    cert,      "--key", key,      NULL};
    assert_int_equal(posix_spawnp(&server, "python3", &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    char line[32] = "";
    size_t n = 0;
    while (n < sizeof(line) - 1) {
        ssize_t r = read(p[0], line + n, 1);
        if (r <= 0 || line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    close(p[0]);
    port = (int)strtol(line, NULL, 10);
    if (port <= 0)
        fail_msg("the test server did not start (read '%s')", line);
}

static int
setup(void **state)
{
    if (kiln_mkdtemp("kiln-modweb-", &tmp, NULL) < 0)
        return -1;
    root = kiln_path_join(tmp, "www");
    logfile = kiln_path_join(tmp, "requests.log");
    if (kiln_mkdir_p(root, 0755, NULL) < 0)
        return -1;
    _cleanup_free_ char *a = kiln_path_join(root, "a.bin");
    if (kiln_write_file_atomic(a, payload, strlen(payload), 0644, NULL) < 0)
        return -1;
    return kiln_write_file_atomic(logfile, "", 0, 0644, NULL);
}

static int
teardown(void **state)
{
    if (server > 0) {
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
        server = -1;
    }
    json_decref(outputs);
    outputs = NULL;
    kiln_rm_rf(tmp, NULL);
    free(tmp);
    free(root);
    free(logfile);
    tmp = root = logfile = NULL;
    return 0;
}

/* Inputs as JSON text: "@" is the test folder, "%%PORT%%"-style is done with the port arg. */
static int run_with(int timeout, const char *fmt, ...) _printf_(2, 3);

static int
run_with(int timeout, const char *fmt, ...)
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
        else if (*p == '^')
            kiln_buf_appendf(&expanded, "%d", port);
        else
            kiln_buf_append_char(&expanded, *p);
    }
    json_error_t je;
    _cleanup_json_ json_t *in = json_loads(expanded.data, 0, &je);
    if (!in)
        fail_msg("bad JSON in test: %s: %s", je.text, expanded.data);
    const struct kiln_module *m = kiln_module_find("WebDownload");
    struct kiln_module_ctx ctx = {
        .step_name = "Download", .work_dir = tmp, .timeout_seconds = timeout};
    kiln_error_clear(&err);
    json_decref(outputs);
    outputs = NULL;
    return m->run(in, &ctx, &outputs, &err);
}

#define run(...) run_with(60, __VA_ARGS__)

static char *
P(const char *rel)
{
    return kiln_path_join(tmp, rel);
}

static void
assert_content(const char *rel, const char *expect)
{
    _cleanup_free_ char *path = P(rel);
    _cleanup_free_ char *data = NULL;
    size_t len;
    if (kiln_read_file(path, 1 << 20, &data, &len, NULL) < 0)
        fail_msg("cannot read %s", path);
    assert_string_equal(data, expect);
}

static int
requests(const char *path)
{
    _cleanup_free_ char *data = NULL;
    size_t len;
    assert_int_equal(kiln_read_file(logfile, 1 << 20, &data, &len, NULL), 0);
    int n = 0;
    for (char *line = data; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        n += strcmp(line, path) == 0;
        line = nl ? nl + 1 : NULL;
    }
    return n;
}

/* Files in a folder (hidden ones included), for "nothing left behind". */
static int
count_entries(const char *rel)
{
    _cleanup_free_ char *path = P(rel);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void
test_file_and_folder_destinations(void **state)
{
    start_server(false);
    assert_int_equal(run("[{\"source\": \"http://127.0.0.1:^/a.bin\", \"destination\": "
                         "\"@/out/renamed.zip\"},"
                         " {\"source\": \"http://127.0.0.1:^/a.bin?x=1\", \"destination\": "
                         "\"@/new/folder/\"},"
                         " {\"source\": \"http://127.0.0.1:^/redirect/a.bin\", \"destination\": "
                         "\"@/out\"}]"),
                     0);
    assert_content("out/renamed.zip", payload);
    assert_content("new/folder/a.bin", payload);
    assert_content("out/a.bin", payload); /* existing folder: the URL's name; redirect followed */
    _cleanup_free_ char *expect =
        kiln_asprintf("%s/out/renamed.zip\n%s/new/folder/a.bin\n%s/out/a.bin", tmp, tmp, tmp);
    assert_string_equal(kiln_json_get_str(outputs, "destination"), expect);
    assert_int_equal(requests("/redirect/a.bin"), 1);
    struct stat st;
    _cleanup_free_ char *f = P("out/renamed.zip");
    assert_int_equal(stat(f, &st), 0);
    mode_t u = umask(0);
    umask(u);
    assert_int_equal(st.st_mode & 0777, 0666 & ~u); /* an ordinary file, not the 0600 temp */
}

static void
test_checksum_good(void **state)
{
    start_server(false);
    char sha256[KILN_HASH_MAX_HEX], md5[KILN_HASH_MAX_HEX];
    kiln_hash_buf_hex(KILN_HASH_SHA256, payload, strlen(payload), sha256);
    kiln_hash_buf_hex(KILN_HASH_MD5, payload, strlen(payload), md5);
    for (char *p = md5; *p; p++)
        *p = (char)toupper((unsigned char)*p); /* hex case does not matter */
    assert_int_equal(run("[{\"source\": \"http://127.0.0.1:^/a.bin\", \"destination\": "
                         "\"@/d/1.bin\", \"checksum\": \"%s\", \"algorithm\": \"SHA256\"},"
                         " {\"source\": \"http://127.0.0.1:^/a.bin\", \"destination\": "
                         "\"@/d/2.bin\", \"checksum\": \"%s\", \"algorithm\": \"MD5\"}]",
                         sha256, md5),
                     0);
    assert_content("d/1.bin", payload);
    assert_content("d/2.bin", payload);
}

static void
test_checksum_bad_leaves_nothing(void **state)
{
    start_server(false);
    assert_int_equal(run("[{\"source\": \"http://127.0.0.1:^/a.bin\", \"destination\": "
                         "\"@/d/1.bin\", \"checksum\": \"%064d\", \"algorithm\": \"SHA256\"}]",
                         0),
                     -KILN_E_FAILED);
    assert_non_null(strstr(err.message, "SHA256 checksum mismatch: expected 0000"));
    assert_int_equal(count_entries("d"), 0);
    /* and an existing file is not replaced by a download that fails its check */
    _cleanup_free_ char *old = P("d/1.bin");
    assert_int_equal(kiln_write_file_atomic(old, "old", 3, 0644, NULL), 0);
    assert_int_equal(run("[{\"source\": \"http://127.0.0.1:^/a.bin\", \"destination\": "
                         "\"@/d/1.bin\", \"checksum\": \"%064d\", \"algorithm\": \"SHA256\"}]",
                         0),
                     -KILN_E_FAILED);
    assert_content("d/1.bin", "old");
    assert_int_equal(count_entries("d"), 1);
}

/* 503 twice, then 200: three requests, with the backoff between them (1 s, then 2 s). */
static void
test_retries_then_succeeds(void **state)
{
    start_server(false);
    long long t0 = now_ms();
    assert_int_equal(run("[{\"source\": \"http://127.0.0.1:^/flaky/2/a.bin\", \"destination\": "
                         "\"@/f.bin\"}]"),
                     0);
    long long took = now_ms() - t0;
    assert_content("f.bin", payload);
    assert_int_equal(requests("/flaky/2/a.bin"), 3);
    assert_true(took >= 3000);
    assert_true(took < 10000);
}

/* A 404 is final: one request, an error, nothing written. */
static void
test_not_found_not_retried(void **state)
{
    start_server(false);
    assert_int_equal(run("[{\"source\": \"http://127.0.0.1:^/status/404\", \"destination\": "
                         "\"@/dl/\"}]"),
                     -KILN_E_REMOTE);
    assert_non_null(strstr(err.message, "HTTP status 404"));
    assert_int_equal(requests("/status/404"), 1);
    assert_int_equal(count_entries("dl"), 0);
}

static void
test_overwrite(void **state)
{
    start_server(false);
    _cleanup_free_ char *existing = P("e.bin");
    assert_int_equal(kiln_write_file_atomic(existing, "mine", 4, 0644, NULL), 0);
    assert_int_equal(run("[{\"source\": \"http://127.0.0.1:^/a.bin\", \"destination\": "
                         "\"@/e.bin\", \"overwrite\": false}]"),
                     -EEXIST);
    assert_content("e.bin", "mine");
    assert_int_equal(requests("/a.bin"), 0); /* not even downloaded */
    /* overwrite (the default) replaces it */
    assert_int_equal(
        run("[{\"source\": \"http://127.0.0.1:^/a.bin\", \"destination\": \"@/e.bin\"}]"), 0);
    assert_content("e.bin", payload);
    assert_int_equal(requests("/a.bin"), 1);
    /* with overwrite and a checksum the existing file already matches: no download */
    char sha1[KILN_HASH_MAX_HEX];
    kiln_hash_buf_hex(KILN_HASH_SHA1, payload, strlen(payload), sha1);
    assert_int_equal(run("[{\"source\": \"http://127.0.0.1:^/a.bin\", \"destination\": "
                         "\"@/e.bin\", \"checksum\": \"%s\", \"algorithm\": \"SHA1\"}]",
                         sha1),
                     0);
    assert_int_equal(requests("/a.bin"), 1);
}

static void
test_https_self_signed(void **state)
{
    start_server(true);
    assert_int_equal(run("[{\"source\": \"https://127.0.0.1:^/a.bin\", \"destination\": "
                         "\"@/s/\"}]"),
                     -KILN_E_REMOTE);
    assert_true(strstr(err.message, "certificate") || strstr(err.message, "SSL"));
    assert_int_equal(count_entries("s"), 0);
    assert_int_equal(run("[{\"source\": \"https://127.0.0.1:^/a.bin\", \"destination\": "
                         "\"@/s/\", \"ignoreCertificateErrors\": true}]"),
                     0);
    assert_content("s/a.bin", payload);
}

static void
test_timeout(void **state)
{
    start_server(false);
    long long t0 = now_ms();
    assert_int_equal(run_with(1, "[{\"source\": \"http://127.0.0.1:^/slow/20/a.bin\", "
                                 "\"destination\": \"@/t/\"}]"),
                     -ETIMEDOUT);
    assert_true(now_ms() - t0 < 5000);
    assert_string_equal(err.message, "WebDownload: timed out after 1 seconds");
    assert_int_equal(count_entries("t"), 0);
}

static void
test_bad_inputs(void **state)
{
    start_server(false);
    assert_int_equal(run("[{\"source\": \"http://127.0.0.1:^/\", \"destination\": \"@/x/\"}]"),
                     -KILN_E_INVALID);
    assert_non_null(strstr(err.message, "has no file name"));
    assert_int_equal(run("[{\"source\": \"file:///etc/passwd\", \"destination\": \"@/x/\"}]"),
                     -KILN_E_INVALID);
    assert_int_equal(run("[{\"source\": \"http://127.0.0.1:^/a.bin\", \"destination\": "
                         "\"@/x/\", \"checksum\": \"abc\"}]"),
                     -KILN_E_INVALID);
    assert_int_equal(run("[{\"source\": \"http://127.0.0.1:^/a.bin\", \"destination\": "
                         "\"@/x/\", \"checksum\": \"abc\", \"algorithm\": \"CRC32\"}]"),
                     -KILN_E_INVALID);
    assert_int_equal(requests("/a.bin"), 0);
}

/* Replace every occurrence of from with to. */
static char *
replace_all(const char *s, const char *from, const char *to)
{
    struct kiln_buf b = {0};
    size_t lf = strlen(from);
    for (const char *p = s;;) {
        const char *q = strstr(p, from);
        if (!q) {
            kiln_buf_append_str(&b, p);
            break;
        }
        kiln_buf_append(&b, p, (size_t)(q - p));
        kiln_buf_append_str(&b, to);
        p = q + lf;
    }
    return kiln_buf_steal(&b);
}

/* The user guide's WebDownload example with its documented output, run against the local
 * HTTPS server: its host and /tmp are rewritten, nothing else. */
static void
run_doc_snippet(const char *file, const char *host, json_t **ret_expected)
{
    _cleanup_free_ char *path =
        kiln_asprintf("%s/tests/data/modules/doc-snippets/%s", kiln_test_source_dir(), file);
    _cleanup_free_ char *data = NULL;
    size_t len;
    assert_int_equal(kiln_read_file(path, 1 << 20, &data, &len, NULL), 0);
    char *out = strstr(data, "\nOutput:\n");
    assert_non_null(out);
    *out = '\0';
    struct kiln_yaml_doc *doc = NULL;
    struct kiln_error e = {0};
    assert_int_equal(kiln_yaml_parse(data, strlen(data), file, NULL, &doc, &e), 0);
    _cleanup_json_ json_t *inputs = kiln_yaml_to_json(kiln_yaml_map_get(doc->root, "inputs"));
    kiln_yaml_doc_free(doc);
    _cleanup_free_ char *text = json_dumps(inputs, 0);
    _cleanup_free_ char *local = kiln_asprintf("https://127.0.0.1:%d", port);
    _cleanup_free_ char *t1 = replace_all(text, host, local);
    _cleanup_free_ char *tmpdir = kiln_asprintf("%s/", tmp);
    _cleanup_free_ char *t2 = replace_all(t1, "/tmp/", tmpdir);
    _cleanup_free_ char *expect_text = replace_all(out + strlen("\nOutput:\n"), "/tmp/", tmpdir);
    *ret_expected = json_loads(expect_text, 0, NULL);
    assert_non_null(*ret_expected);
    /* the snippets download over HTTPS from a host whose certificate is not trusted here */
    _cleanup_free_ char *t3 =
        replace_all(t2, "\"source\"", "\"ignoreCertificateErrors\": true, \"source\"");
    int r = run("%s", t3);
    if (r < 0)
        fail_msg("%s: %s (inputs %s)", file, err.message, t3);
}

static void
test_doc_snippet_outputs(void **state)
{
    start_server(true);
    _cleanup_free_ char *resource = kiln_path_join(root, "resource");
    assert_int_equal(kiln_write_file_atomic(resource, "r", 1, 0644, NULL), 0);
    _cleanup_free_ char *dir = kiln_path_join(root, "path/to");
    _cleanup_free_ char *zip = kiln_path_join(root, "java14.zip");
    assert_int_equal(kiln_write_file_atomic(zip, "z", 1, 0644, NULL), 0);

    /* DownloadRemoteIgnoreValidation: a folder destination takes the URL's last name */
    _cleanup_json_ json_t *expect = NULL;
    run_doc_snippet("awsdocs__ec2-image-builder-user-guide__doc_source__image-builder-action-"
                    "modules.md__block15.yml",
                    "https://www.bad-ssl.com", &expect);
    assert_true(json_equal(outputs, expect));
    assert_content("downloads/resource", "r");

    /* DownloadRemoteFiles: one destination per line. The guide's output has a typo in its
     * first line ("/tmp/create_new_folder/java14_renamed.zip" for "/tmp/java14_renamed.zip"),
     * so only the second line is compared as published. */
    _cleanup_json_ json_t *expect2 = NULL;
    assert_int_equal(kiln_mkdir_p(dir, 0755, NULL), 0);
    _cleanup_free_ char *zip2 = kiln_path_join(dir, "java14.zip");
    assert_int_equal(kiln_write_file_atomic(zip2, "z", 1, 0644, NULL), 0);
    run_doc_snippet("awsdocs__ec2-image-builder-user-guide__doc_source__image-builder-action-"
                    "modules.md__block13.yml",
                    "https://testdomain", &expect2);
    const char *got = kiln_json_get_str(outputs, "destination");
    const char *want = kiln_json_get_str(expect2, "destination");
    assert_non_null(got);
    assert_non_null(want);
    _cleanup_free_ char *first = kiln_asprintf("%s/java14_renamed.zip\n", tmp);
    assert_int_equal(strncmp(got, first, strlen(first)), 0);
    assert_string_equal(strchr(got, '\n'), strchr(want, '\n'));
    assert_content("java14_renamed.zip", "z");
    assert_content("create_new_folder_and_add_java14_as_zip/java14.zip", "z");
}

KILN_TEST_MAIN(cmocka_unit_test_setup_teardown(test_file_and_folder_destinations, setup, teardown),
               cmocka_unit_test_setup_teardown(test_checksum_good, setup, teardown),
               cmocka_unit_test_setup_teardown(test_checksum_bad_leaves_nothing, setup, teardown),
               cmocka_unit_test_setup_teardown(test_retries_then_succeeds, setup, teardown),
               cmocka_unit_test_setup_teardown(test_not_found_not_retried, setup, teardown),
               cmocka_unit_test_setup_teardown(test_overwrite, setup, teardown),
               cmocka_unit_test_setup_teardown(test_https_self_signed, setup, teardown),
               cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
               cmocka_unit_test_setup_teardown(test_bad_inputs, setup, teardown),
               cmocka_unit_test_setup_teardown(test_doc_snippet_outputs, setup, teardown))
