/* Tests for the file-system action modules (guest-agent/mod-file.c), each in a fresh temporary
 * folder. */
#include "kiln-test.h"

#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "guest-agent/mod-common.h"
#include "guest-agent/module.h"

static char *tmp; /* the test's folder */

static int
setup(void **state)
{
    struct kiln_error err = {0};
    if (kiln_mkdtemp("kiln-modfile-", &tmp, &err) < 0)
        return -1;
    return 0;
}

static int
teardown(void **state)
{
    kiln_rm_rf(tmp, NULL);
    free(tmp);
    tmp = NULL;
    return 0;
}

/* Path under the test folder (static ring of buffers, for brevity in assertions). */
static const char *
P(const char *rel)
{
    static char bufs[8][4096];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, 4096, "%s/%s", tmp, rel);
    return b;
}

struct console {
    struct kiln_buf out;
};

static void
console_fn(void *userdata, const char *stream, const char *data, size_t len)
{
    struct console *c = userdata;
    kiln_buf_append(&c->out, data, len);
}

static struct console console;
static struct kiln_error err;
static json_t *outputs;

/* Run a module with inputs given as JSON text in which every "@" stands for the test folder. */
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
    const struct kiln_module *m = kiln_module_find(module);
    assert_non_null(m);
    struct kiln_module_ctx ctx = {.step_name = "Step",
                                  .work_dir = tmp,
                                  .timeout_seconds = 60,
                                  .console = console_fn,
                                  .console_userdata = &console};
    kiln_error_clear(&err);
    json_decref(outputs);
    outputs = NULL;
    kiln_buf_reset(&console.out);
    return m->run(in, &ctx, &outputs, &err);
}

static void
write_file(const char *path, const char *content)
{
    struct kiln_error e = {0};
    _cleanup_free_ char *dir = kiln_strdup(path);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(kiln_mkdir_p(dir, 0755, &e), 0);
    assert_int_equal(kiln_write_file_atomic(path, content, strlen(content), 0644, &e), 0);
}

static char *
read_all(const char *path, size_t *len)
{
    char *data = NULL;
    struct kiln_error e = {0};
    size_t l = 0;
    if (kiln_read_file(path, 1 << 20, &data, &l, &e) < 0)
        fail_msg("cannot read %s: %s", path, e.message);
    if (len)
        *len = l;
    return data;
}

static void
assert_content(const char *path, const char *expect)
{
    _cleanup_free_ char *data = read_all(path, NULL);
    assert_string_equal(data, expect);
}

static bool
exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static mode_t
mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode & 07777;
}

/* ---- AppendFile ---- */

static void
test_append_file(void **state)
{
    write_file(P("a.txt"), "one\n");
    assert_int_equal(run("AppendFile", "[{\"path\": \"@/a.txt\", \"content\": \"two\\n\"}]"), 0);
    assert_content(P("a.txt"), "one\ntwo\n");
    /* no content: nothing appended, still fine */
    assert_int_equal(run("AppendFile", "[{\"path\": \"@/a.txt\"}]"), 0);
    assert_content(P("a.txt"), "one\ntwo\n");
    /* the file must exist */
    assert_int_equal(run("AppendFile", "[{\"path\": \"@/missing.txt\", \"content\": \"x\"}]"),
                     -ENOENT);
    assert_false(exists(P("missing.txt")));
    assert_non_null(strstr(err.message, "AppendFile: "));
    /* UTF-32 is little-endian without a byte-order mark */
    write_file(P("u.txt"), "");
    assert_int_equal(run("AppendFile",
                         "[{\"path\": \"@/u.txt\", \"content\": \"A\\u00e9\", \"encoding\": "
                         "\"UTF-32\"}]"),
                     0);
    size_t len;
    _cleanup_free_ char *data = read_all(P("u.txt"), &len);
    assert_int_equal(len, 8);
    assert_memory_equal(data, "A\0\0\0\xe9\0\0\0", 8);
}

/* ---- CreateFile ---- */

static void
test_create_file(void **state)
{
    assert_int_equal(run("CreateFile", "[{\"path\": \"@/new/dir/s.txt\", \"content\": "
                                       "\"ABCD\\\\nRandom\\\\tvalues\"}, {\"path\": \"@/e.txt\"}]"),
                     0);
    /* content is written as is: a backslash-n in the document stays a backslash-n */
    assert_content(P("new/dir/s.txt"), "ABCD\\nRandom\\tvalues");
    assert_content(P("e.txt"), "");
    /* overwrite defaults to true */
    assert_int_equal(run("CreateFile", "[{\"path\": \"@/e.txt\", \"content\": \"v2\"}]"), 0);
    assert_content(P("e.txt"), "v2");
    assert_int_equal(
        run("CreateFile", "[{\"path\": \"@/e.txt\", \"content\": \"v3\", \"overwrite\": false}]"),
        -EEXIST);
    _cleanup_free_ char *expect =
        kiln_asprintf("CreateFile: %s already exists and overwrite is false", P("e.txt"));
    assert_string_equal(err.message, expect);
    assert_content(P("e.txt"), "v2");
    /* permissions are exact (no umask), numbers from YAML work too */
    assert_int_equal(run("CreateFile", "[{\"path\": \"@/p.txt\", \"permissions\": \"0640\"}, "
                                       "{\"path\": \"@/q.txt\", \"permissions\": 755}]"),
                     0);
    assert_int_equal(mode_of(P("p.txt")), 0640);
    assert_int_equal(mode_of(P("q.txt")), 0755);
    assert_int_equal(run("CreateFile", "[{\"path\": \"@/x.txt\", \"permissions\": \"0988\"}]"),
                     -KILN_E_INVALID);
    assert_false(exists(P("x.txt")));
    /* UTF-16 is little-endian, no byte-order mark */
    assert_int_equal(run("CreateFile", "[{\"path\": \"@/w.txt\", \"content\": \"hi\", "
                                       "\"encoding\": \"utf-16\"}]"),
                     0);
    size_t len;
    _cleanup_free_ char *data = read_all(P("w.txt"), &len);
    assert_int_equal(len, 4);
    assert_memory_equal(data, "h\0i\0", 4);
    /* a folder in the way */
    assert_int_equal(mkdir(P("d"), 0755), 0);
    assert_true(run("CreateFile", "[{\"path\": \"@/d\", \"content\": \"x\"}]") < 0);
}

static void
test_create_file_owner(void **state)
{
    int r = run("CreateFile", "[{\"path\": \"@/o.txt\", \"owner\": \"1234\", \"group\": "
                              "\"5678\"}]");
    if (geteuid() != 0) {
        /* without root the chown must fail loudly, not be skipped */
        assert_int_equal(r, -EPERM);
        return;
    }
    assert_int_equal(r, 0);
    struct stat st;
    assert_int_equal(stat(P("o.txt"), &st), 0);
    assert_int_equal(st.st_uid, 1234);
    assert_int_equal(st.st_gid, 5678);
    /* a user name without a group: the user's primary group */
    assert_int_equal(run("CreateFile", "[{\"path\": \"@/n.txt\", \"owner\": \"nobody\"}]"), 0);
    assert_int_equal(stat(P("n.txt"), &st), 0);
    struct passwd *pw = getpwnam("nobody");
    assert_non_null(pw);
    assert_int_equal(st.st_uid, pw->pw_uid);
    assert_int_equal(st.st_gid, pw->pw_gid);
    /* a numeric owner without a passwd entry leaves the group alone */
    assert_null(getpwuid(54321));
    assert_int_equal(run("CreateFile", "[{\"path\": \"@/o.txt\", \"owner\": \"54321\"}]"), 0);
    assert_int_equal(stat(P("o.txt"), &st), 0);
    assert_int_equal(st.st_uid, 54321);
    assert_int_equal(st.st_gid, 5678);
    assert_int_equal(run("CreateFile", "[{\"path\": \"@/z.txt\", \"owner\": \"no-such-user\"}]"),
                     -KILN_E_INVALID);
    assert_string_equal(err.message, "CreateFile: user 'no-such-user' does not exist");
}

/* ---- CreateFolder ---- */

static void
test_create_folder(void **state)
{
    assert_int_equal(run("CreateFolder", "[{\"path\": \"@/a/b/c/\"}, {\"path\": \"@/m\", "
                                         "\"permissions\": \"0700\"}]"),
                     0);
    /* modules without outputs return an empty outputs object */
    assert_true(json_is_object(outputs) && json_object_size(outputs) == 0);
    struct stat st;
    assert_int_equal(stat(P("a/b/c"), &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(mode_of(P("m")), 0700);
    /* existing folder: fine by default (contents kept), an error without overwrite */
    write_file(P("a/b/c/keep.txt"), "k");
    assert_int_equal(run("CreateFolder", "[{\"path\": \"@/a/b/c\", \"permissions\": 750}]"), 0);
    assert_int_equal(mode_of(P("a/b/c")), 0750);
    assert_content(P("a/b/c/keep.txt"), "k");
    assert_int_equal(run("CreateFolder", "[{\"path\": \"@/a/b/c\", \"overwrite\": false}]"),
                     -EEXIST);
    write_file(P("f"), "");
    assert_int_equal(run("CreateFolder", "[{\"path\": \"@/f\"}]"), -EEXIST);
    assert_non_null(strstr(err.message, "exists and is not a folder"));
}

/* ---- CreateSymlink ---- */

static void
test_create_symlink(void **state)
{
    write_file(P("t.txt"), "target");
    assert_int_equal(
        run("CreateSymlink", "[{\"path\": \"@/links/l.txt\", \"target\": \"@/t.txt\"}]"), 0);
    char buf[4096];
    ssize_t n = readlink(P("links/l.txt"), buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, P("t.txt"));
    /* an existing link needs force */
    write_file(P("t2.txt"), "other");
    assert_int_equal(
        run("CreateSymlink", "[{\"path\": \"@/links/l.txt\", \"target\": \"@/t2.txt\"}]"), -EEXIST);
    assert_content(P("links/l.txt"), "target");
    assert_int_equal(run("CreateSymlink", "[{\"path\": \"@/links/l.txt\", \"target\": "
                                          "\"@/t2.txt\", \"force\": true}]"),
                     0);
    assert_content(P("links/l.txt"), "other");
    /* a file that is not a link is never replaced, even with force */
    assert_int_equal(run("CreateSymlink", "[{\"path\": \"@/t.txt\", \"target\": \"@/t2.txt\", "
                                          "\"force\": true}]"),
                     -EEXIST);
    assert_content(P("t.txt"), "target");
    /* the target must exist */
    assert_int_equal(run("CreateSymlink", "[{\"path\": \"@/l2\", \"target\": \"@/missing\"}]"),
                     -ENOENT);
    assert_false(exists(P("l2")));
    /* relative paths are made absolute against the working folder */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(tmp), 0);
    assert_int_equal(run("CreateSymlink", "[{\"path\": \"rel\", \"target\": \"./t.txt\"}]"), 0);
    assert_int_equal(chdir(cwd), 0);
    n = readlink(P("rel"), buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    char real_tmp[4096];
    assert_non_null(realpath(tmp, real_tmp));
    assert_true(strcmp(buf, P("t.txt")) == 0 || strncmp(buf, real_tmp, strlen(real_tmp)) == 0);
    assert_int_equal(buf[0], '/');
}

/* ---- DeleteFile / DeleteFolder ---- */

static void
test_delete_file(void **state)
{
    write_file(P("d/a.log"), "");
    write_file(P("d/b.log"), "");
    write_file(P("d/keep.txt"), "");
    write_file(P("d/.hidden.log"), "");
    assert_int_equal(mkdir(P("d/sub.log"), 0755), 0);
    write_file(P("outside.log"), "o");
    assert_int_equal(symlink(P("outside.log"), P("d/link.log")), 0);
    write_file(P("dirtarget/inside.txt"), "i");
    assert_int_equal(symlink(P("dirtarget"), P("d/dirlink.log")), 0);
    assert_int_equal(run("DeleteFile", "[{\"path\": \"@/d/*log\"}]"), 0);
    assert_false(exists(P("d/dirlink.log"))); /* a link to a folder is removed as a link */
    assert_content(P("dirtarget/inside.txt"), "i");
    assert_false(exists(P("d/a.log")));
    assert_false(exists(P("d/b.log")));
    assert_false(exists(P("d/.hidden.log")));
    assert_false(exists(P("d/link.log")));
    assert_true(exists(P("d/keep.txt")));
    assert_true(exists(P("d/sub.log")));   /* folders are not files */
    assert_content(P("outside.log"), "o"); /* the link went, not its target */
    /* one file; a missing one is an error */
    assert_int_equal(run("DeleteFile", "[{\"path\": \"@/d/keep.txt\"}]"), 0);
    assert_false(exists(P("d/keep.txt")));
    assert_int_equal(run("DeleteFile", "[{\"path\": \"@/d/keep.txt\"}]"), -ENOENT);
    /* a folder needs DeleteFolder, or force (as AWS's own samples write it) */
    assert_int_equal(run("DeleteFile", "[{\"path\": \"@/d/sub.log\"}]"), -EISDIR);
    assert_int_equal(run("DeleteFile", "[{\"path\": \"@/d/sub.log/\", \"force\": true}]"), 0);
    assert_false(exists(P("d/sub.log")));
    /* wildcards only in the last component */
    assert_int_equal(run("DeleteFile", "[{\"path\": \"@/*/x\"}]"), -KILN_E_INVALID);
}

static void
test_delete_folder(void **state)
{
    assert_int_equal(mkdir(P("empty"), 0755), 0);
    assert_int_equal(run("DeleteFolder", "[{\"path\": \"@/empty/\"}]"), 0);
    assert_false(exists(P("empty")));
    write_file(P("full/x/y.txt"), "y");
    assert_int_equal(run("DeleteFolder", "[{\"path\": \"@/full\"}]"), -ENOTEMPTY);
    assert_true(exists(P("full/x/y.txt")));
    /* force removes the tree, without following links out of it */
    write_file(P("precious/p.txt"), "p");
    assert_int_equal(symlink(P("precious"), P("full/x/link")), 0);
    assert_int_equal(run("DeleteFolder", "[{\"path\": \"@/full\", \"force\": true}]"), 0);
    assert_false(exists(P("full")));
    assert_content(P("precious/p.txt"), "p");
    /* a link to a folder is not a folder */
    assert_int_equal(symlink(P("precious"), P("plink")), 0);
    assert_int_equal(run("DeleteFolder", "[{\"path\": \"@/plink\", \"force\": true}]"), -ENOTDIR);
    assert_content(P("precious/p.txt"), "p");
    assert_int_equal(run("DeleteFolder", "[{\"path\": \"@/nothing\"}]"), -ENOENT);
}

/* ---- ListFiles ---- */

static void
test_list_files(void **state)
{
    write_file(P("l/b.txt"), "");
    write_file(P("l/a.log"), "");
    write_file(P("l/sub/c.log"), "");
    write_file(P("l/sub/deeper/d.txt"), "");
    assert_int_equal(run("ListFiles", "[{\"path\": \"@/l\"}]"), 0);
    _cleanup_free_ char *flat = kiln_asprintf("%s,%s", P("l/a.log"), P("l/b.txt"));
    assert_string_equal(kiln_json_get_str(outputs, "files"), flat);
    assert_int_equal(run("ListFiles", "[{\"path\": \"@/l/\", \"fileNamePattern\": \"*log\", "
                                      "\"recursive\": true}]"),
                     0);
    _cleanup_free_ char *logs = kiln_asprintf("%s,%s", P("l/a.log"), P("l/sub/c.log"));
    assert_string_equal(kiln_json_get_str(outputs, "files"), logs);
    assert_int_equal(run("ListFiles", "[{\"path\": \"@/l\", \"recursive\": true}]"), 0);
    _cleanup_free_ char *all = kiln_asprintf("%s,%s,%s,%s", P("l/a.log"), P("l/b.txt"),
                                             P("l/sub/c.log"), P("l/sub/deeper/d.txt"));
    assert_string_equal(kiln_json_get_str(outputs, "files"), all);
    assert_int_equal(run("ListFiles", "[{\"path\": \"@/nope\"}]"), -ENOENT);
}

/* ---- CopyFile / MoveFile ---- */

static void
test_copy_file(void **state)
{
    write_file(P("src/Sample.txt"), "s1");
    write_file(P("src/Sample2.txt"), "s2");
    write_file(P("src/Other.txt"), "o");
    assert_int_equal(chmod(P("src/Sample.txt"), 0751), 0);
    assert_int_equal(run("CopyFile", "[{\"source\": \"@/src/Sample.txt\", \"destination\": "
                                     "\"@/dst/deep/renamed.txt\"}]"),
                     0);
    assert_content(P("dst/deep/renamed.txt"), "s1");
    assert_int_equal(mode_of(P("dst/deep/renamed.txt")), 0751);
    /* destination ending in '/' keeps the source name */
    assert_int_equal(
        run("CopyFile", "[{\"source\": \"@/src/Sample.txt\", \"destination\": \"@/dst2/\"}]"), 0);
    assert_content(P("dst2/Sample.txt"), "s1");
    /* wildcard */
    assert_int_equal(
        run("CopyFile", "[{\"source\": \"@/src/Sample*\", \"destination\": \"@/dst3/\"}]"), 0);
    assert_content(P("dst3/Sample.txt"), "s1");
    assert_content(P("dst3/Sample2.txt"), "s2");
    assert_false(exists(P("dst3/Other.txt")));
    assert_int_equal(
        run("CopyFile", "[{\"source\": \"@/src/Sample*\", \"destination\": \"@/dst4\"}]"),
        -KILN_E_INVALID);
    assert_int_equal(
        run("CopyFile", "[{\"source\": \"@/src/Nothing*\", \"destination\": \"@/dst4/\"}]"),
        -ENOENT);
    /* overwrite */
    write_file(P("src/Sample.txt"), "new");
    assert_int_equal(run("CopyFile", "[{\"source\": \"@/src/Sample.txt\", \"destination\": "
                                     "\"@/dst2/Sample.txt\", \"overwrite\": false}]"),
                     -EEXIST);
    assert_content(P("dst2/Sample.txt"), "s1");
    assert_int_equal(run("CopyFile", "[{\"source\": \"@/src/Sample.txt\", \"destination\": "
                                     "\"@/dst2/Sample.txt\"}]"),
                     0);
    assert_content(P("dst2/Sample.txt"), "new");
    /* no temporary files left behind */
    assert_int_equal(run("ListFiles", "[{\"path\": \"@/dst2\"}]"), 0);
    assert_string_equal(kiln_json_get_str(outputs, "files"), P("dst2/Sample.txt"));
    /* a folder is not a file; a missing source is an error */
    assert_int_equal(run("CopyFile", "[{\"source\": \"@/src\", \"destination\": \"@/x\"}]"),
                     -EISDIR);
    assert_int_equal(run("CopyFile", "[{\"source\": \"@/src/missing\", \"destination\": \"@/x\"}]"),
                     -ENOENT);
    /* replacing a link at the destination replaces the link, not what it points to */
    write_file(P("victim.txt"), "v");
    assert_int_equal(symlink(P("victim.txt"), P("dst2/ln")), 0);
    assert_int_equal(
        run("CopyFile", "[{\"source\": \"@/src/Other.txt\", \"destination\": \"@/dst2/ln\"}]"), 0);
    assert_content(P("victim.txt"), "v");
    assert_content(P("dst2/ln"), "o");
}

static void
test_move_file(void **state)
{
    write_file(P("m/a.txt"), "a");
    write_file(P("m/b.txt"), "b");
    write_file(P("m/c.dat"), "c");
    assert_int_equal(
        run("MoveFile", "[{\"source\": \"@/m/a.txt\", \"destination\": \"@/n/renamed.txt\"}]"), 0);
    assert_false(exists(P("m/a.txt")));
    assert_content(P("n/renamed.txt"), "a");
    assert_int_equal(run("MoveFile", "[{\"source\": \"@/m/*.txt\", \"destination\": \"@/n/\"}]"),
                     0);
    assert_content(P("n/b.txt"), "b");
    assert_true(exists(P("m/c.dat")));
    write_file(P("m/b.txt"), "b2");
    assert_int_equal(run("MoveFile", "[{\"source\": \"@/m/b.txt\", \"destination\": "
                                     "\"@/n/b.txt\", \"overwrite\": false}]"),
                     -EEXIST);
    assert_content(P("m/b.txt"), "b2");
    assert_content(P("n/b.txt"), "b");
    /* an existing folder as destination (no trailing '/') receives the file */
    assert_int_equal(run("MoveFile", "[{\"source\": \"@/m/b.txt\", \"destination\": \"@/n\"}]"), 0);
    assert_content(P("n/b.txt"), "b2");
}

/* ---- CopyFolder / MoveFolder ---- */

static void
test_copy_folder(void **state)
{
    write_file(P("SourceFolder/a.txt"), "a");
    write_file(P("SourceFolder/sub/b.txt"), "b");
    assert_int_equal(symlink("a.txt", P("SourceFolder/link")), 0);
    assert_int_equal(run("CopyFolder", "[{\"source\": \"@/SourceFolder\", \"destination\": "
                                       "\"@/out/destinationFolder\"}]"),
                     0);
    assert_content(P("out/destinationFolder/a.txt"), "a");
    assert_content(P("out/destinationFolder/sub/b.txt"), "b");
    char buf[64];
    ssize_t n = readlink(P("out/destinationFolder/link"), buf, sizeof(buf) - 1);
    assert_int_equal(n, 5); /* copied as a link */
    buf[n] = '\0';
    assert_string_equal(buf, "a.txt");
    /* trailing '/': the folder keeps its name */
    assert_int_equal(
        run("CopyFolder", "[{\"source\": \"@/SourceFolder\", \"destination\": \"@/out/\"}]"), 0);
    assert_content(P("out/SourceFolder/sub/b.txt"), "b");
    /* existing destination: merged, files replaced; or an error without overwrite */
    write_file(P("SourceFolder/a.txt"), "a2");
    write_file(P("out/SourceFolder/extra.txt"), "e");
    assert_int_equal(run("CopyFolder", "[{\"source\": \"@/SourceFolder\", \"destination\": "
                                       "\"@/out/\", \"overwrite\": false}]"),
                     -EEXIST);
    assert_content(P("out/SourceFolder/a.txt"), "a");
    assert_int_equal(
        run("CopyFolder", "[{\"source\": \"@/SourceFolder\", \"destination\": \"@/out/\"}]"), 0);
    assert_content(P("out/SourceFolder/a.txt"), "a2");
    assert_content(P("out/SourceFolder/extra.txt"), "e");
    /* a read-only source folder is copied, and keeps its mode */
    write_file(P("ro/r.txt"), "r");
    assert_int_equal(chmod(P("ro"), 0555), 0);
    assert_int_equal(run("CopyFolder", "[{\"source\": \"@/ro\", \"destination\": \"@/rocopy\"}]"),
                     0);
    assert_content(P("rocopy/r.txt"), "r");
    assert_int_equal(mode_of(P("rocopy")), 0555);
    assert_int_equal(chmod(P("ro"), 0755), 0);
    assert_int_equal(chmod(P("rocopy"), 0755), 0);
    /* wildcard over folders only */
    write_file(P("w/Sample1/x"), "1");
    write_file(P("w/Sample2/y"), "2");
    write_file(P("w/SampleFile"), "f");
    assert_int_equal(
        run("CopyFolder", "[{\"source\": \"@/w/Sample*\", \"destination\": \"@/wout/\"}]"), 0);
    assert_content(P("wout/Sample1/x"), "1");
    assert_content(P("wout/Sample2/y"), "2");
    assert_false(exists(P("wout/SampleFile")));
    /* never into itself */
    assert_int_equal(run("CopyFolder", "[{\"source\": \"@/SourceFolder\", \"destination\": "
                                       "\"@/SourceFolder/sub/\"}]"),
                     -KILN_E_INVALID);
    assert_false(exists(P("SourceFolder/sub/SourceFolder")));
    assert_int_equal(
        run("CopyFolder", "[{\"source\": \"@/w/SampleFile\", \"destination\": \"@/x\"}]"),
        -ENOTDIR);
}

static void
test_move_folder(void **state)
{
    write_file(P("mv/SourceFolder/a.txt"), "a");
    write_file(P("mv/SourceFolder/sub/b.txt"), "b");
    assert_int_equal(run("MoveFolder", "[{\"source\": \"@/mv/SourceFolder\", \"destination\": "
                                       "\"@/mv2/dest\"}]"),
                     0);
    assert_false(exists(P("mv/SourceFolder")));
    assert_content(P("mv2/dest/sub/b.txt"), "b");
    /* onto an existing folder: merged */
    write_file(P("mv/SourceFolder/a.txt"), "a2");
    write_file(P("mv/SourceFolder/sub/c.txt"), "c");
    assert_int_equal(run("MoveFolder", "[{\"source\": \"@/mv/SourceFolder\", \"destination\": "
                                       "\"@/mv2/dest\", \"overwrite\": false}]"),
                     -EEXIST);
    assert_true(exists(P("mv/SourceFolder/a.txt")));
    assert_int_equal(run("MoveFolder", "[{\"source\": \"@/mv/SourceFolder\", \"destination\": "
                                       "\"@/mv2/dest\"}]"),
                     0);
    assert_false(exists(P("mv/SourceFolder")));
    assert_content(P("mv2/dest/a.txt"), "a2");
    assert_content(P("mv2/dest/sub/b.txt"), "b");
    assert_content(P("mv2/dest/sub/c.txt"), "c");
    /* trailing '/' */
    write_file(P("mv/Other/o.txt"), "o");
    assert_int_equal(
        run("MoveFolder", "[{\"source\": \"@/mv/Other\", \"destination\": \"@/mv2/\"}]"), 0);
    assert_content(P("mv2/Other/o.txt"), "o");
}

/* ---- ReadFile / SetFileEncoding ---- */

static void
test_read_file(void **state)
{
    write_file(P("r.txt"), "The file content\n");
    assert_int_equal(symlink(P("r.txt"), P("r.link")), 0);
    assert_int_equal(run("ReadFile", "[{\"path\": \"@/r.link\"}]"), 0);
    assert_string_equal(kiln_json_get_str(outputs, "content"), "The file content\n");
    assert_int_equal(console.out.len, 0); /* not printed unless asked */
    assert_int_equal(run("ReadFile", "[{\"path\": \"@/r.txt\", \"printFileContent\": true}]"), 0);
    assert_string_equal(console.out.data, "The file content\n");
    /* UTF-16 with or without a byte-order mark */
    struct kiln_error e = {0};
    assert_int_equal(kiln_write_file_atomic(P("u16.txt"), "\xff\xfeh\0\xe9\0", 6, 0644, &e), 0);
    assert_int_equal(run("ReadFile", "[{\"path\": \"@/u16.txt\", \"encoding\": \"UTF-16\"}]"), 0);
    assert_string_equal(kiln_json_get_str(outputs, "content"), "h\xc3\xa9");
    /* not text */
    assert_int_equal(kiln_write_file_atomic(P("bin"), "\xff\xfe\xfd", 3, 0644, &e), 0);
    assert_int_equal(run("ReadFile", "[{\"path\": \"@/bin\"}]"), -EILSEQ);
    /* iconv passes "UTF-8" above U+10FFFF through; ReadFile does not (found by fuzzing) */
    assert_int_equal(kiln_write_file_atomic(P("big"), "\xf7\xbf\xbb\xbb", 4, 0644, &e), 0);
    assert_int_equal(run("ReadFile", "[{\"path\": \"@/big\"}]"), -EILSEQ);
    assert_int_equal(run("ReadFile", "[{\"path\": \"@/missing\"}]"), -ENOENT);
    assert_int_equal(run("ReadFile", "[{\"path\": \"@\"}]"), -EISDIR);
}

static void
test_set_file_encoding(void **state)
{
    write_file(P("e.txt"), "h\xc3\xa9");
    assert_int_equal(
        run("SetFileEncoding", "[{\"path\": \"@/e.txt\", \"encoding\": \"utf-16-BE\"}]"), 0);
    size_t len;
    _cleanup_free_ char *data = read_all(P("e.txt"), &len);
    assert_int_equal(len, 4);
    assert_memory_equal(data, "\0h\0\xe9", 4);
    /* and it reads back */
    assert_int_equal(run("ReadFile", "[{\"path\": \"@/e.txt\", \"encoding\": \"UTF16-BE\"}]"), 0);
    assert_string_equal(kiln_json_get_str(outputs, "content"), "h\xc3\xa9");
    assert_int_equal(run("SetFileEncoding", "[{\"path\": \"@/e.txt\", \"encoding\": \"latin1\"}]"),
                     -KILN_E_INVALID);
}

/* ---- owners and permissions ---- */

static void
test_set_owner(void **state)
{
    write_file(P("own/f.txt"), "");
    write_file(P("own/sub/g.txt"), "");
    write_file(P("outside.txt"), "");
    assert_int_equal(symlink(P("outside.txt"), P("own/link")), 0);
    int r = run("SetFolderOwner", "[{\"path\": \"@/own/\", \"owner\": \"2001\", \"group\": "
                                  "\"2002\"}]");
    if (geteuid() != 0) {
        assert_int_equal(r, -EPERM);
        return;
    }
    assert_int_equal(r, 0);
    struct stat st;
    assert_int_equal(stat(P("own/sub/g.txt"), &st), 0);
    assert_int_equal(st.st_uid, 2001);
    assert_int_equal(st.st_gid, 2002);
    assert_int_equal(lstat(P("own/link"), &st), 0);
    assert_int_equal(st.st_uid, 2001);
    assert_int_equal(stat(P("outside.txt"), &st), 0);
    assert_int_equal(st.st_uid, 0); /* the link's target outside the folder is untouched */
    /* not recursive: only the folder */
    assert_int_equal(run("SetFolderOwner", "[{\"path\": \"@/own\", \"owner\": \"3001\", "
                                           "\"group\": \"3002\", \"recursive\": false}]"),
                     0);
    assert_int_equal(stat(P("own"), &st), 0);
    assert_int_equal(st.st_uid, 3001);
    assert_int_equal(stat(P("own/f.txt"), &st), 0);
    assert_int_equal(st.st_uid, 2001);
    /* SetFileOwner follows a link to its target */
    assert_int_equal(
        run("SetFileOwner", "[{\"path\": \"@/own/link\", \"owner\": \"4001\", \"group\": \"0\"}]"),
        0);
    assert_int_equal(stat(P("outside.txt"), &st), 0);
    assert_int_equal(st.st_uid, 4001);
    assert_int_equal(run("SetFolderOwner", "[{\"path\": \"@/own/f.txt\", \"owner\": \"0\"}]"),
                     -ENOTDIR);
    assert_int_equal(run("SetFileOwner", "[{\"path\": \"@/own/f.txt\", \"owner\": \"root\", "
                                         "\"group\": \"no-such-group\"}]"),
                     -KILN_E_INVALID);
}

static void
test_set_permissions(void **state)
{
    write_file(P("perm/f.txt"), "");
    write_file(P("perm/sub/g.txt"), "");
    write_file(P("outside.txt"), "");
    assert_int_equal(chmod(P("outside.txt"), 0600), 0);
    assert_int_equal(symlink(P("outside.txt"), P("perm/link")), 0);
    assert_int_equal(run("SetFilePermissions", "[{\"path\": \"@/perm/f.txt\", \"permissions\": "
                                               "766}]"),
                     0);
    assert_int_equal(mode_of(P("perm/f.txt")), 0766);
    assert_int_equal(run("SetFolderPermissions", "[{\"path\": \"@/perm/\", \"permissions\": "
                                                 "\"0750\"}]"),
                     0);
    assert_int_equal(mode_of(P("perm")), 0750);
    assert_int_equal(mode_of(P("perm/sub")), 0750);
    assert_int_equal(mode_of(P("perm/sub/g.txt")), 0750);
    assert_int_equal(mode_of(P("outside.txt")), 0600); /* links are not followed */
    assert_int_equal(run("SetFolderPermissions", "[{\"path\": \"@/perm\", \"permissions\": "
                                                 "\"0700\", \"recursive\": false}]"),
                     0);
    assert_int_equal(mode_of(P("perm")), 0700);
    assert_int_equal(mode_of(P("perm/sub")), 0750);
    assert_int_equal(
        run("SetFilePermissions", "[{\"path\": \"@/perm\", \"permissions\": \"0700\"}]"), -EISDIR);
    assert_int_equal(
        run("SetFilePermissions", "[{\"path\": \"@/perm/f.txt\", \"permissions\": \"rwx\"}]"),
        -KILN_E_INVALID);
    assert_int_equal(
        run("SetFilePermissions", "[{\"path\": \"@/none\", \"permissions\": \"0700\"}]"), -ENOENT);
}

/* Long copies and walks stop on cancellation and at the step's time limit. */
static void
test_cancel_and_timeout(void **state)
{
    for (int i = 0; i < 50; i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "big/d%d/f.txt", i);
        write_file(P(rel), "x");
    }
    _cleanup_free_ char *text =
        kiln_asprintf("[{\"source\": \"%s/big\", \"destination\": \"%s/copy\"}]", tmp, tmp);
    _cleanup_json_ json_t *in = json_loads(text, 0, NULL);
    assert_non_null(in);
    const struct kiln_module *m = kiln_module_find("CopyFolder");
    volatile sig_atomic_t cancel = 1;
    struct kiln_module_ctx ctx = {.work_dir = tmp, .timeout_seconds = 60, .cancel = &cancel};
    json_t *out = NULL;
    struct kiln_error e = {0};
    assert_int_equal(m->run(in, &ctx, &out, &e), -ECANCELED);
    assert_string_equal(e.message, "CopyFolder: cancelled");
    assert_null(out);
    assert_false(exists(P("copy/d0/f.txt")));
    /* no time left: the walk stops at once */
    cancel = 0;
    ctx.timeout_seconds = 0;
    kiln_error_clear(&e);
    const struct kiln_module *lf = kiln_module_find("ListFiles");
    _cleanup_free_ char *lt = kiln_asprintf("[{\"path\": \"%s/big\", \"recursive\": true}]", tmp);
    _cleanup_json_ json_t *lin = json_loads(lt, 0, NULL);
    assert_int_equal(lf->run(lin, &ctx, &out, &e), -ETIMEDOUT);
    assert_string_equal(e.message, "ListFiles: timed out after 0 seconds");
    assert_null(out);
}

/* Items run in order; the first failure stops the step. */
static void
test_items_in_order(void **state)
{
    assert_int_equal(run("CreateFile", "[{\"path\": \"@/1.txt\"}, {\"path\": \"@/2.txt\", "
                                       "\"permissions\": \"bad\"}, {\"path\": \"@/3.txt\"}]"),
                     -KILN_E_INVALID);
    assert_true(exists(P("1.txt")));
    assert_false(exists(P("2.txt")));
    assert_false(exists(P("3.txt")));
}

KILN_TEST_MAIN(cmocka_unit_test_setup_teardown(test_cancel_and_timeout, setup, teardown),
               cmocka_unit_test_setup_teardown(test_append_file, setup, teardown),
               cmocka_unit_test_setup_teardown(test_create_file, setup, teardown),
               cmocka_unit_test_setup_teardown(test_create_file_owner, setup, teardown),
               cmocka_unit_test_setup_teardown(test_create_folder, setup, teardown),
               cmocka_unit_test_setup_teardown(test_create_symlink, setup, teardown),
               cmocka_unit_test_setup_teardown(test_delete_file, setup, teardown),
               cmocka_unit_test_setup_teardown(test_delete_folder, setup, teardown),
               cmocka_unit_test_setup_teardown(test_list_files, setup, teardown),
               cmocka_unit_test_setup_teardown(test_copy_file, setup, teardown),
               cmocka_unit_test_setup_teardown(test_move_file, setup, teardown),
               cmocka_unit_test_setup_teardown(test_copy_folder, setup, teardown),
               cmocka_unit_test_setup_teardown(test_move_folder, setup, teardown),
               cmocka_unit_test_setup_teardown(test_read_file, setup, teardown),
               cmocka_unit_test_setup_teardown(test_set_file_encoding, setup, teardown),
               cmocka_unit_test_setup_teardown(test_set_owner, setup, teardown),
               cmocka_unit_test_setup_teardown(test_set_permissions, setup, teardown),
               cmocka_unit_test_setup_teardown(test_items_in_order, setup, teardown))
