/* The file-system action modules: AppendFile, CopyFile, CopyFolder, CreateFile, CreateFolder,
 * CreateSymlink, DeleteFile, DeleteFolder, ListFiles, MoveFile, MoveFolder, ReadFile,
 * SetFileEncoding, SetFileOwner, SetFolderOwner, SetFilePermissions, SetFolderPermissions.
 *
 * Every list-shaped input is handled item by item, in order; the first failing item fails the
 * step (items already done stay done, as in AWSTOE). Path rules, shared by the copy and move
 * modules: a '*' wildcard may appear in the last component of a source only; a destination
 * that ends with '/' is a folder that receives the source under its own name. Recursive walks
 * never follow symbolic links; single-file operations follow them the way cp, chmod and
 * shell redirections do. docs/modules.md lists the choices where the reference is silent. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/time.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "guest-agent/mod-common.h"

#define READ_FILE_MAX (64u << 20)

/* Modules without outputs still return an (empty) outputs object. */
static int
no_outputs(int r, json_t **ret_outputs)
{
    if (r >= 0)
        *ret_outputs = json_object();
    return r;
}

/* What a module is doing, for messages, cancellation and the step's time limit: long copies
 * and tree walks check it between files and between 64 KiB chunks. */
struct op {
    const char *module;
    const struct kiln_module_ctx *ctx;
    long long deadline; /* CLOCK_MONOTONIC milliseconds, -1: none */
};

static struct op
op_start(const char *module, const struct kiln_module_ctx *ctx)
{
    struct op op = {module, ctx, -1};
    if (ctx && ctx->timeout_seconds >= 0)
        op.deadline = kiln_now_ms() + (long long)ctx->timeout_seconds * 1000;
    return op;
}

static int
op_check(const struct op *op, struct kiln_error *err)
{
    if (op->ctx && op->ctx->cancel && *op->ctx->cancel)
        return kiln_error_set(err, -ECANCELED, "%s: cancelled", op->module);
    if (op->deadline >= 0 && kiln_now_ms() >= op->deadline)
        return kiln_error_set(err, -ETIMEDOUT, "%s: timed out after %d seconds", op->module,
                              op->ctx->timeout_seconds);
    return 0;
}

/* ---- paths ---- */

static bool
ends_with_slash(const char *p)
{
    size_t n = strlen(p);
    return n > 0 && p[n - 1] == '/';
}

/* Last component, ignoring trailing slashes; never empty for a non-empty path. */
static char *
base_name(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t s = n;
    while (s > 0 && path[s - 1] != '/')
        s--;
    return kiln_strndup(path + s, n - s);
}

static char *
dir_name(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    while (n > 0 && path[n - 1] != '/')
        n--;
    if (n == 0)
        return kiln_strdup(".");
    while (n > 1 && path[n - 1] == '/')
        n--;
    return kiln_strndup(path, n);
}

static char *
strip_slashes(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    return kiln_strndup(path, n);
}

static int
mkdir_parent(const char *module, const char *path, struct kiln_error *err)
{
    _cleanup_free_ char *parent = dir_name(path);
    int r = kiln_mkdir_p(parent, 0777, err);
    return r < 0 ? kiln_error_prefix(err, r, "%s", module) : 0;
}

/* WANT_FILES: not folders (a link to a folder counts as a folder: it is not copied or moved as
 * a file); WANT_ENTRIES: anything but a real folder (DeleteFile removes a link to a folder). */
enum want { WANT_FILES, WANT_DIRS, WANT_ENTRIES };

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Expand a source with a '*' in its last component into the matching files or folders
 * (sorted). Without a wildcard, returns the source itself. *ret_wild tells which. */
static int
expand_source(const char *module, const char *source, enum want want, char ***ret, bool *ret_wild,
              struct kiln_error *err)
{
    _cleanup_free_ char *base = base_name(source);
    _cleanup_free_ char *dir = dir_name(source);
    *ret_wild = strchr(base, '*') != NULL;
    if (strchr(dir, '*'))
        return kiln_error_set(err, -KILN_E_INVALID,
                              "%s: %s: wildcards are accepted only after the last '/'", module,
                              source);
    if (!*ret_wild) {
        char **v = kiln_new(char *, 2);
        v[0] = strip_slashes(source);
        *ret = v;
        return 0;
    }
    DIR *d = opendir(dir);
    if (!d)
        return kiln_error_errno(err, -errno, "%s: %s", module, dir);
    char **v = kiln_new(char *, 1);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (!kiln_mod_star_match(base, de->d_name))
            continue;
        _cleanup_free_ char *p = kiln_path_join(dir, de->d_name);
        struct stat st;
        /* files: anything that is not a folder (a link to a file counts); folders: real
         * folders only, not links to them */
        bool is_dir = want == WANT_FILES ? stat(p, &st) == 0 && S_ISDIR(st.st_mode)
                                         : lstat(p, &st) == 0 && S_ISDIR(st.st_mode);
        if ((want == WANT_DIRS) != is_dir)
            continue;
        if (lstat(p, &st) < 0)
            continue;
        v = kiln_reallocarray(v, n + 2, sizeof(*v));
        v[n++] = TAKE_PTR(p);
        v[n] = NULL;
    }
    closedir(d);
    qsort(v, n, sizeof(*v), cmp_str);
    *ret = v;
    return 0;
}

/* ---- users and groups ---- */

static bool
all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* Look a user or group up; the buffer grows while the database says it is too small (a group
 * with many members needs more than the usual 4 KiB). Returns 0, -ENOENT, or -errno. */
static int
lookup_user(const char *name, uid_t uid, bool by_id, uid_t *ret_uid, gid_t *ret_gid)
{
    for (size_t size = 4096; size <= (16u << 20); size *= 4) {
        _cleanup_free_ char *buf = kiln_malloc(size);
        struct passwd pw, *res = NULL;
        int r =
            by_id ? getpwuid_r(uid, &pw, buf, size, &res) : getpwnam_r(name, &pw, buf, size, &res);
        if (r == ERANGE)
            continue;
        if (r != 0)
            return -r;
        if (!res)
            return -ENOENT;
        *ret_uid = res->pw_uid;
        *ret_gid = res->pw_gid;
        return 0;
    }
    return -ERANGE;
}

static int
lookup_group(const char *name, gid_t *ret_gid)
{
    for (size_t size = 4096; size <= (16u << 20); size *= 4) {
        _cleanup_free_ char *buf = kiln_malloc(size);
        struct group gr, *res = NULL;
        int r = getgrnam_r(name, &gr, buf, size, &res);
        if (r == ERANGE)
            continue;
        if (r != 0)
            return -r;
        if (!res)
            return -ENOENT;
        *ret_gid = res->gr_gid;
        return 0;
    }
    return -ERANGE;
}

/* owner/group by name or number; without a group, the owner's primary group (when known). */
static int
resolve_owner(const char *module, const char *owner, const char *group, uid_t *ret_uid,
              gid_t *ret_gid, struct kiln_error *err)
{
    *ret_uid = (uid_t)-1;
    *ret_gid = (gid_t)-1;
    if (owner && *owner) {
        uid_t uid = (uid_t)-1;
        gid_t primary = (gid_t)-1;
        int r = lookup_user(owner, 0, false, &uid, &primary);
        if (r == -ENOENT && all_digits(owner)) {
            uid = (uid_t)strtoul(owner, NULL, 10);
            /* a numeric id need not have a passwd entry; then the group stays as it is */
            if (lookup_user(NULL, uid, true, &uid, &primary) < 0)
                primary = (gid_t)-1;
            r = 0;
        }
        if (r == -ENOENT)
            return kiln_error_set(err, -KILN_E_INVALID, "%s: user '%s' does not exist", module,
                                  owner);
        if (r < 0)
            return kiln_error_errno(err, r, "%s: looking up user '%s'", module, owner);
        *ret_uid = uid;
        if (!group || !*group)
            *ret_gid = primary;
    }
    if (group && *group) {
        gid_t gid = (gid_t)-1;
        int r = lookup_group(group, &gid);
        if (r == -ENOENT && all_digits(group)) {
            gid = (gid_t)strtoul(group, NULL, 10);
            r = 0;
        }
        if (r == -ENOENT)
            return kiln_error_set(err, -KILN_E_INVALID, "%s: group '%s' does not exist", module,
                                  group);
        if (r < 0)
            return kiln_error_errno(err, r, "%s: looking up group '%s'", module, group);
        *ret_gid = gid;
    }
    return 0;
}

static int
parse_mode(const char *module, const char *s, mode_t *ret, struct kiln_error *err)
{
    size_t n = strlen(s);
    mode_t m = 0;
    if (n == 0 || n > 4)
        goto bad;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '7')
            goto bad;
        m = m * 8 + (mode_t)(s[i] - '0');
    }
    *ret = m;
    return 0;
bad:
    return kiln_error_set(err, -KILN_E_INVALID,
                          "%s: permissions '%s' is not an octal mode such as 0755 or 644", module,
                          s);
}

/* ---- copying and moving ---- */

static int
write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int
copy_fd(const struct op *op, int in, int out, struct kiln_error *err)
{
    char buf[65536];
    for (;;) {
        int r = op_check(op, err);
        if (r < 0)
            return r;
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        r = write_all(out, buf, (size_t)n);
        if (r < 0)
            return r;
    }
}

/* Put tmp in place of dst: replace it, or fail with -EEXIST when overwrite is false. */
static int
rename_into_place(const char *tmp, const char *dst, bool overwrite)
{
    if (!overwrite) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE) == 0)
            return 0;
        if (errno != EINVAL && errno != ENOSYS)
            return -errno;
        struct stat st;
        if (lstat(dst, &st) == 0)
            return -EEXIST;
    }
    return rename(tmp, dst) < 0 ? -errno : 0;
}

/* Copy one file (following a source link, like cp) through a temporary file beside dst. */
static int
copy_file(const struct op *op, const char *src, const char *dst, bool overwrite,
          struct kiln_error *err)
{
    _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (in < 0)
        return kiln_error_errno(err, -errno, "%s: %s", op->module, src);
    struct stat st;
    if (fstat(in, &st) < 0)
        return kiln_error_errno(err, -errno, "%s: %s", op->module, src);
    if (S_ISDIR(st.st_mode))
        return kiln_error_set(err, -EISDIR, "%s: %s is a folder", op->module, src);
    struct stat dst_st;
    if (lstat(dst, &dst_st) == 0) {
        if (S_ISDIR(dst_st.st_mode))
            return kiln_error_set(err, -EISDIR, "%s: destination %s is a folder", op->module, dst);
        if (!overwrite)
            return kiln_error_set(err, -EEXIST, "%s: %s already exists and overwrite is false",
                                  op->module, dst);
    }
    _cleanup_free_ char *tmp = kiln_asprintf("%s.kiln-XXXXXX", dst);
    _cleanup_close_ int out = mkostemp(tmp, O_CLOEXEC);
    if (out < 0)
        return kiln_error_errno(err, -errno, "%s: cannot create %s", op->module, dst);
    int r = copy_fd(op, in, out, err);
    if (r == 0 && fchmod(out, st.st_mode & 07777) < 0)
        r = -errno;
    if (r == 0 && close(TAKE_FD(out)) < 0)
        r = -errno;
    if (r == 0)
        r = rename_into_place(tmp, dst, overwrite);
    if (r < 0) {
        unlink(tmp);
        if (r == -EEXIST)
            return kiln_error_set(err, r, "%s: %s already exists and overwrite is false",
                                  op->module, dst);
        return kiln_error_errno(err, r, "%s: cannot copy %s to %s", op->module, src, dst);
    }
    return 0;
}

static int
copy_symlink(const struct op *op, const char *src, const char *dst, struct kiln_error *err)
{
    char target[PATH_MAX];
    ssize_t n = readlink(src, target, sizeof(target) - 1);
    if (n < 0)
        return kiln_error_errno(err, -errno, "%s: %s", op->module, src);
    target[n] = '\0';
    _cleanup_free_ char *tmp = kiln_asprintf("%s.kiln-link-%d", dst, (int)getpid());
    unlink(tmp);
    if (symlink(target, tmp) < 0)
        return kiln_error_errno(err, -errno, "%s: cannot create link %s", op->module, dst);
    if (rename(tmp, dst) < 0) {
        int r = -errno;
        unlink(tmp);
        return kiln_error_errno(err, r, "%s: cannot create link %s", op->module, dst);
    }
    return 0;
}

/* Is b the same as a, or inside it? (Both must exist; compares real paths.) */
static bool
path_within(const char *a, const char *b)
{
    char ra[PATH_MAX], rb[PATH_MAX];
    if (!realpath(a, ra) || !realpath(b, rb))
        return false;
    size_t n = strlen(ra);
    return strncmp(ra, rb, n) == 0 && (rb[n] == '\0' || rb[n] == '/' || n == 1);
}

/* Copy a folder's contents into dst (created if missing), merging with what is there:
 * files are replaced, links are copied as links, other special files are skipped. */
static int
copy_tree(const struct op *op, const char *src, const char *dst, struct kiln_error *err)
{
    struct stat st;
    if (lstat(src, &st) < 0)
        return kiln_error_errno(err, -errno, "%s: %s", op->module, src);
    /* a new folder is writable while it fills, and gets the source's mode at the end (a
     * read-only source folder would otherwise stop the copy) */
    bool created = mkdir(dst, 0700) == 0;
    if (!created) {
        struct stat dst_st;
        if (errno != EEXIST)
            return kiln_error_errno(err, -errno, "%s: cannot create %s", op->module, dst);
        if (lstat(dst, &dst_st) < 0 || !S_ISDIR(dst_st.st_mode))
            return kiln_error_set(err, -ENOTDIR, "%s: %s exists and is not a folder", op->module,
                                  dst);
    }
    DIR *d = opendir(src);
    if (!d)
        return kiln_error_errno(err, -errno, "%s: %s", op->module, src);
    struct dirent *de;
    int r = 0;
    while (r == 0 && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        _cleanup_free_ char *s = kiln_path_join(src, de->d_name);
        _cleanup_free_ char *t = kiln_path_join(dst, de->d_name);
        struct stat es;
        if ((r = op_check(op, err)) < 0) {
            break;
        } else if (lstat(s, &es) < 0) {
            r = kiln_error_errno(err, -errno, "%s: %s", op->module, s);
        } else if (S_ISDIR(es.st_mode)) {
            r = copy_tree(op, s, t, err);
        } else if (S_ISLNK(es.st_mode)) {
            struct stat ts;
            if (lstat(t, &ts) == 0 && S_ISDIR(ts.st_mode))
                r = kiln_error_set(err, -EISDIR, "%s: %s is a folder", op->module, t);
            else
                r = copy_symlink(op, s, t, err);
        } else if (S_ISREG(es.st_mode)) {
            r = copy_file(op, s, t, true, err);
        }
    }
    closedir(d);
    if (r == 0 && created && chmod(dst, st.st_mode & 07777) < 0)
        r = kiln_error_errno(err, -errno, "%s: %s", op->module, dst);
    return r;
}

/* rename(), or copy and remove when source and destination are on different file systems. */
static int
move_path(const struct op *op, const char *src, const char *dst, bool overwrite,
          struct kiln_error *err)
{
    struct stat st;
    if (lstat(src, &st) < 0)
        return kiln_error_errno(err, -errno, "%s: %s", op->module, src);
    int r = rename_into_place(src, dst, overwrite);
    if (r == 0)
        return 0;
    if (r == -EEXIST)
        return kiln_error_set(err, r, "%s: %s already exists and overwrite is false", op->module,
                              dst);
    if (r != -EXDEV)
        return kiln_error_errno(err, r, "%s: cannot move %s to %s", op->module, src, dst);
    if (S_ISDIR(st.st_mode))
        r = copy_tree(op, src, dst, err);
    else if (S_ISLNK(st.st_mode))
        r = copy_symlink(op, src, dst, err);
    else
        r = copy_file(op, src, dst, overwrite, err);
    if (r < 0)
        return r;
    r = kiln_rm_rf(src, err);
    return r < 0 ? kiln_error_prefix(err, r, "%s", op->module) : 0;
}

/* Move a folder onto an existing one: entries that are new are renamed over, folders on
 * both sides are merged, files replace files; then the emptied source is removed. */
static int
merge_move(const struct op *op, const char *src, const char *dst, struct kiln_error *err)
{
    DIR *d = opendir(src);
    if (!d)
        return kiln_error_errno(err, -errno, "%s: %s", op->module, src);
    struct dirent *de;
    int r = 0;
    while (r == 0 && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        _cleanup_free_ char *s = kiln_path_join(src, de->d_name);
        _cleanup_free_ char *t = kiln_path_join(dst, de->d_name);
        struct stat ss, ts;
        if ((r = op_check(op, err)) < 0)
            break;
        if (lstat(s, &ss) < 0) {
            r = kiln_error_errno(err, -errno, "%s: %s", op->module, s);
            continue;
        }
        bool exists = lstat(t, &ts) == 0;
        if (exists && S_ISDIR(ss.st_mode) && S_ISDIR(ts.st_mode))
            r = merge_move(op, s, t, err);
        else if (exists && (S_ISDIR(ss.st_mode) != S_ISDIR(ts.st_mode)))
            r = kiln_error_set(err, -EEXIST, "%s: cannot replace %s with %s", op->module, t, s);
        else
            r = move_path(op, s, t, true, err);
    }
    closedir(d);
    if (r == 0) {
        r = kiln_rm_rf(src, err);
        if (r < 0)
            r = kiln_error_prefix(err, r, "%s", op->module);
    }
    return r;
}

/* ---- shared item readers ---- */

struct src_dst {
    char *source, *destination;
    bool overwrite;
};

static void
src_dst_clear(struct src_dst *sd)
{
    free(sd->source);
    free(sd->destination);
}

static int
read_src_dst(const json_t *item, const char *module, struct src_dst *sd, struct kiln_error *err)
{
    memset(sd, 0, sizeof(*sd));
    int r = kiln_mod_get_str(item, module, "source", true, &sd->source, err);
    if (r >= 0)
        r = kiln_mod_get_str(item, module, "destination", true, &sd->destination, err);
    if (r >= 0)
        r = kiln_mod_get_bool(item, module, "overwrite", true, &sd->overwrite, err);
    if (r >= 0 && (!*sd->source || !*sd->destination))
        r = kiln_error_set(err, -KILN_E_INVALID, "%s: source and destination must not be empty",
                           module);
    return r;
}

/* Where a file or folder lands: into a folder for "dir/" (or, for files, an existing folder),
 * otherwise at the destination itself. */
static char *
landing_path(const char *src, const char *dst, bool into)
{
    if (into) {
        _cleanup_free_ char *b = base_name(src);
        return kiln_path_join(dst, b);
    }
    return strip_slashes(dst);
}

static bool
is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- CopyFile / MoveFile ---- */

static int
file_transfer(const json_t *inputs, const struct kiln_module_ctx *ctx, const char *module,
              bool move, struct kiln_error *err)
{
    struct op op = op_start(module, ctx);
    for (size_t i = 0; i < kiln_mod_item_count(inputs); i++) {
        struct src_dst sd;
        int r = op_check(&op, err);
        if (r >= 0)
            r = read_src_dst(kiln_mod_item(inputs, i), module, &sd, err);
        _cleanup_strv_free_ char **sources = NULL;
        bool wild = false;
        if (r >= 0)
            r = expand_source(module, sd.source, WANT_FILES, &sources, &wild, err);
        if (r >= 0 && wild && !ends_with_slash(sd.destination) && !is_dir(sd.destination))
            r = kiln_error_set(err, -KILN_E_INVALID,
                               "%s: destination %s must end with '/' when the source has a "
                               "wildcard",
                               module, sd.destination);
        if (r >= 0 && wild && !sources[0])
            r = kiln_error_set(err, -ENOENT, "%s: no file matches %s", module, sd.source);
        bool into = r >= 0 && (ends_with_slash(sd.destination) || is_dir(sd.destination));
        for (size_t k = 0; r >= 0 && sources[k]; k++) {
            struct stat st;
            if (stat(sources[k], &st) < 0 && lstat(sources[k], &st) < 0) {
                r = kiln_error_errno(err, -errno, "%s: %s", module, sources[k]);
                break;
            }
            if (S_ISDIR(st.st_mode)) {
                r = kiln_error_set(err, -EISDIR, "%s: %s is a folder (use %s)", module, sources[k],
                                   move ? "MoveFolder" : "CopyFolder");
                break;
            }
            _cleanup_free_ char *dst = landing_path(sources[k], sd.destination, into);
            r = mkdir_parent(module, dst, err);
            if (r < 0)
                break;
            if (!move) {
                r = copy_file(&op, sources[k], dst, sd.overwrite, err);
            } else {
                struct stat dst_st;
                if (lstat(dst, &dst_st) == 0 && S_ISDIR(dst_st.st_mode))
                    r = kiln_error_set(err, -EISDIR, "%s: destination %s is a folder", module, dst);
                else
                    r = move_path(&op, sources[k], dst, sd.overwrite, err);
            }
        }
        src_dst_clear(&sd);
        if (r < 0)
            return r;
    }
    return 0;
}

KILN_MOD_RUN(kiln_mod_copy_file)
{
    return no_outputs(file_transfer(inputs, ctx, "CopyFile", false, err), ret_outputs);
}

KILN_MOD_RUN(kiln_mod_move_file)
{
    return no_outputs(file_transfer(inputs, ctx, "MoveFile", true, err), ret_outputs);
}

/* ---- CopyFolder / MoveFolder ---- */

static int
folder_transfer(const json_t *inputs, const struct kiln_module_ctx *ctx, const char *module,
                bool move, struct kiln_error *err)
{
    struct op op = op_start(module, ctx);
    for (size_t i = 0; i < kiln_mod_item_count(inputs); i++) {
        struct src_dst sd;
        int r = op_check(&op, err);
        if (r >= 0)
            r = read_src_dst(kiln_mod_item(inputs, i), module, &sd, err);
        _cleanup_strv_free_ char **sources = NULL;
        bool wild = false;
        if (r >= 0)
            r = expand_source(module, sd.source, WANT_DIRS, &sources, &wild, err);
        if (r >= 0 && wild && !ends_with_slash(sd.destination))
            r = kiln_error_set(err, -KILN_E_INVALID,
                               "%s: destination %s must end with '/' when the source has a "
                               "wildcard",
                               module, sd.destination);
        if (r >= 0 && wild && !sources[0])
            r = kiln_error_set(err, -ENOENT, "%s: no folder matches %s", module, sd.source);
        for (size_t k = 0; r >= 0 && sources[k]; k++) {
            struct stat st;
            if (lstat(sources[k], &st) < 0) {
                r = kiln_error_errno(err, -errno, "%s: %s", module, sources[k]);
                break;
            }
            if (!S_ISDIR(st.st_mode)) {
                r = kiln_error_set(err, -ENOTDIR, "%s: %s is not a folder", module, sources[k]);
                break;
            }
            _cleanup_free_ char *dst =
                landing_path(sources[k], sd.destination, ends_with_slash(sd.destination));
            struct stat dst_st;
            bool exists = lstat(dst, &dst_st) == 0;
            if (exists && !S_ISDIR(dst_st.st_mode)) {
                r = kiln_error_set(err, -ENOTDIR, "%s: destination %s exists and is not a folder",
                                   module, dst);
                break;
            }
            if (exists && !sd.overwrite) {
                r = kiln_error_set(err, -EEXIST,
                                   "%s: folder %s already exists and overwrite is false", module,
                                   dst);
                break;
            }
            if (exists && path_within(sources[k], dst) && !path_within(dst, sources[k])) {
                r = kiln_error_set(err, -KILN_E_INVALID, "%s: %s is inside %s", module, dst,
                                   sources[k]);
                break;
            }
            if (exists && path_within(dst, sources[k]) && path_within(sources[k], dst))
                continue; /* onto itself: nothing to do */
            r = mkdir_parent(module, dst, err);
            if (r < 0)
                break;
            _cleanup_free_ char *parent = dir_name(dst);
            if (!exists && path_within(sources[k], parent)) {
                r = kiln_error_set(err, -KILN_E_INVALID, "%s: %s is inside %s", module, dst,
                                   sources[k]);
                break;
            }
            if (!move)
                r = copy_tree(&op, sources[k], dst, err);
            else if (exists)
                r = merge_move(&op, sources[k], dst, err);
            else
                r = move_path(&op, sources[k], dst, false, err);
        }
        src_dst_clear(&sd);
        if (r < 0)
            return r;
    }
    return 0;
}

KILN_MOD_RUN(kiln_mod_copy_folder)
{
    return no_outputs(folder_transfer(inputs, ctx, "CopyFolder", false, err), ret_outputs);
}

KILN_MOD_RUN(kiln_mod_move_folder)
{
    return no_outputs(folder_transfer(inputs, ctx, "MoveFolder", true, err), ret_outputs);
}

/* ---- AppendFile / CreateFile / ReadFile / SetFileEncoding ---- */

static int
get_encoding(const json_t *item, const char *module, enum kiln_mod_encoding *ret,
             struct kiln_error *err)
{
    _cleanup_free_ char *name = NULL;
    int r = kiln_mod_get_str(item, module, "encoding", false, &name, err);
    *ret = KILN_ENC_UTF8;
    if (r < 0 || !name)
        return r;
    if (kiln_mod_encoding_parse(name, ret) < 0)
        return kiln_error_set(err, -KILN_E_INVALID, "%s: encoding '%s' is not supported", module,
                              name);
    return 0;
}

static int
encode_content(const char *module, const char *path, enum kiln_mod_encoding enc,
               const char *content, struct kiln_buf *out, struct kiln_error *err)
{
    int r = kiln_mod_encode(enc, content ? content : "", content ? strlen(content) : 0, out, err);
    return r < 0 ? kiln_error_prefix(err, r, "%s: %s", module, path) : 0;
}

static int
apply_owner_mode(const char *module, const char *path, int fd, const char *owner, const char *group,
                 const char *perms, struct kiln_error *err)
{
    if (perms) {
        mode_t m = 0;
        int r = parse_mode(module, perms, &m, err);
        if (r < 0)
            return r;
        if ((fd >= 0 ? fchmod(fd, m) : chmod(path, m)) < 0)
            return kiln_error_errno(err, -errno, "%s: cannot set permissions of %s", module, path);
    }
    if ((owner && *owner) || (group && *group)) {
        uid_t uid;
        gid_t gid = (gid_t)-1;
        int r = resolve_owner(module, owner, group, &uid, &gid, err);
        if (r < 0)
            return r;
        if ((fd >= 0 ? fchown(fd, uid, gid) : chown(path, uid, gid)) < 0)
            return kiln_error_errno(err, -errno, "%s: cannot set owner of %s", module, path);
    }
    return 0;
}

KILN_MOD_RUN(kiln_mod_append_file)
{
    for (size_t i = 0; i < kiln_mod_item_count(inputs); i++) {
        const json_t *item = kiln_mod_item(inputs, i);
        _cleanup_free_ char *path = NULL, *content = NULL;
        _cleanup_buf_ struct kiln_buf data = {0};
        enum kiln_mod_encoding enc;
        int r = kiln_mod_get_str(item, "AppendFile", "path", true, &path, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, "AppendFile", "content", false, &content, err);
        if (r >= 0)
            r = get_encoding(item, "AppendFile", &enc, err);
        if (r >= 0)
            r = encode_content("AppendFile", path, enc, content, &data, err);
        if (r < 0)
            return r;
        /* The file must exist: no O_CREAT. */
        _cleanup_close_ int fd =
            open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
            return kiln_error_errno(err, -errno, "AppendFile: %s", path);
        r = write_all(fd, data.data, data.len);
        if (r < 0)
            return kiln_error_errno(err, r, "AppendFile: %s", path);
    }
    *ret_outputs = json_object();
    return 0;
}

KILN_MOD_RUN(kiln_mod_create_file)
{
    for (size_t i = 0; i < kiln_mod_item_count(inputs); i++) {
        const json_t *item = kiln_mod_item(inputs, i);
        _cleanup_free_ char *path = NULL, *content = NULL, *owner = NULL, *group = NULL,
                            *perms = NULL;
        _cleanup_buf_ struct kiln_buf data = {0};
        enum kiln_mod_encoding enc;
        bool overwrite;
        mode_t m = 0;
        int r = kiln_mod_get_str(item, "CreateFile", "path", true, &path, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, "CreateFile", "content", false, &content, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, "CreateFile", "owner", false, &owner, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, "CreateFile", "group", false, &group, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, "CreateFile", "permissions", false, &perms, err);
        if (r >= 0 && perms)
            r = parse_mode("CreateFile", perms, &m, err);
        if (r >= 0)
            r = kiln_mod_get_bool(item, "CreateFile", "overwrite", true, &overwrite, err);
        if (r >= 0)
            r = get_encoding(item, "CreateFile", &enc, err);
        if (r >= 0)
            r = encode_content("CreateFile", path, enc, content, &data, err);
        if (r >= 0 && ends_with_slash(path))
            r = kiln_error_set(err, -EISDIR, "CreateFile: %s names a folder", path);
        if (r >= 0)
            r = mkdir_parent("CreateFile", path, err);
        if (r < 0)
            return r;
        /* O_NONBLOCK: a FIFO without a reader fails instead of hanging the step */
        int how = overwrite ? O_TRUNC : O_EXCL;
        _cleanup_close_ int fd =
            open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | how, 0666);
        if (fd < 0 && errno == EEXIST)
            return kiln_error_set(err, -EEXIST,
                                  "CreateFile: %s already exists and overwrite is false", path);
        if (fd < 0)
            return kiln_error_errno(err, -errno, "CreateFile: %s", path);
        struct stat st;
        if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode))
            return kiln_error_set(err, -EINVAL, "CreateFile: %s is not a regular file", path);
        r = write_all(fd, data.data, data.len);
        if (r < 0)
            return kiln_error_errno(err, r, "CreateFile: %s", path);
        r = apply_owner_mode("CreateFile", path, fd, owner, group, perms, err);
        if (r < 0)
            return r;
    }
    *ret_outputs = json_object();
    return 0;
}

static int
read_text(const char *module, const char *path, enum kiln_mod_encoding enc, struct kiln_buf *out,
          struct kiln_error *err)
{
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    struct stat st;
    if (stat(path, &st) < 0)
        return kiln_error_errno(err, -errno, "%s: %s", module, path);
    if (S_ISDIR(st.st_mode))
        return kiln_error_set(err, -EISDIR, "%s: %s is a folder", module, path);
    if (!S_ISREG(st.st_mode))
        return kiln_error_set(err, -EINVAL, "%s: %s is not a regular file", module, path);
    int r = kiln_read_file(path, READ_FILE_MAX, &data, &len, err);
    if (r < 0)
        return kiln_error_prefix(err, r, "%s", module);
    r = kiln_mod_decode(enc, data, len, out, err);
    if (r < 0)
        return kiln_error_prefix(err, r, "%s: %s", module, path);
    if (strlen(out->data ? out->data : "") != out->len)
        return kiln_error_set(err, -EILSEQ, "%s: %s holds NUL characters: not a text file", module,
                              path);
    return 0;
}

KILN_MOD_RUN(kiln_mod_read_file)
{
    _cleanup_buf_ struct kiln_buf text = {0};
    size_t n = kiln_mod_item_count(inputs);
    for (size_t i = 0; i < n; i++) {
        const json_t *item = kiln_mod_item(inputs, i);
        _cleanup_free_ char *path = NULL;
        enum kiln_mod_encoding enc;
        bool print;
        int r = kiln_mod_get_str(item, "ReadFile", "path", true, &path, err);
        if (r >= 0)
            r = get_encoding(item, "ReadFile", &enc, err);
        if (r >= 0)
            r = kiln_mod_get_bool(item, "ReadFile", "printFileContent", false, &print, err);
        if (r < 0)
            return r;
        kiln_buf_reset(&text);
        r = read_text("ReadFile", path, enc, &text, err);
        if (r < 0)
            return r;
        if (print && ctx && ctx->console && text.len)
            ctx->console(ctx->console_userdata, "stdout", text.data, text.len);
    }
    /* The output is the content of the (last) file read. */
    json_t *o = json_object();
    json_object_set_new(o, "content", kiln_mod_json_text(text.data, text.len));
    *ret_outputs = o;
    return 0;
}

KILN_MOD_RUN(kiln_mod_set_file_encoding)
{
    for (size_t i = 0; i < kiln_mod_item_count(inputs); i++) {
        const json_t *item = kiln_mod_item(inputs, i);
        _cleanup_free_ char *path = NULL;
        _cleanup_buf_ struct kiln_buf text = {0}, data = {0};
        enum kiln_mod_encoding enc;
        int r = kiln_mod_get_str(item, "SetFileEncoding", "path", true, &path, err);
        if (r >= 0)
            r = get_encoding(item, "SetFileEncoding", &enc, err);
        /* The file is read as UTF-8 (the reference converts "from utf-8"). */
        if (r >= 0)
            r = read_text("SetFileEncoding", path, KILN_ENC_UTF8, &text, err);
        if (r >= 0)
            r = encode_content("SetFileEncoding", path, enc, text.data, &data, err);
        if (r < 0)
            return r;
        _cleanup_close_ int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
            return kiln_error_errno(err, -errno, "SetFileEncoding: %s", path);
        r = write_all(fd, data.data, data.len);
        if (r < 0)
            return kiln_error_errno(err, r, "SetFileEncoding: %s", path);
    }
    *ret_outputs = json_object();
    return 0;
}

/* ---- CreateFolder / CreateSymlink ---- */

KILN_MOD_RUN(kiln_mod_create_folder)
{
    for (size_t i = 0; i < kiln_mod_item_count(inputs); i++) {
        const json_t *item = kiln_mod_item(inputs, i);
        _cleanup_free_ char *path = NULL, *owner = NULL, *group = NULL, *perms = NULL;
        bool overwrite;
        mode_t m = 0;
        int r = kiln_mod_get_str(item, "CreateFolder", "path", true, &path, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, "CreateFolder", "owner", false, &owner, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, "CreateFolder", "group", false, &group, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, "CreateFolder", "permissions", false, &perms, err);
        if (r >= 0 && perms)
            r = parse_mode("CreateFolder", perms, &m, err);
        if (r >= 0)
            r = kiln_mod_get_bool(item, "CreateFolder", "overwrite", true, &overwrite, err);
        if (r < 0)
            return r;
        _cleanup_free_ char *dir = strip_slashes(path);
        struct stat st;
        if (lstat(dir, &st) == 0) {
            if (!S_ISDIR(st.st_mode) && !(S_ISLNK(st.st_mode) && is_dir(dir)))
                return kiln_error_set(err, -EEXIST, "CreateFolder: %s exists and is not a folder",
                                      dir);
            if (!overwrite)
                return kiln_error_set(
                    err, -EEXIST, "CreateFolder: %s already exists and overwrite is false", dir);
        } else {
            r = kiln_mkdir_p(dir, 0777, err);
            if (r < 0)
                return kiln_error_prefix(err, r, "CreateFolder");
        }
        r = apply_owner_mode("CreateFolder", dir, -1, owner, group, perms, err);
        if (r < 0)
            return r;
    }
    *ret_outputs = json_object();
    return 0;
}

static char *
absolute(const char *path)
{
    if (path[0] == '/')
        return kiln_strdup(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
        return kiln_strdup(path);
    const char *p = path;
    while (p[0] == '.' && p[1] == '/')
        p += 2;
    return kiln_path_join(cwd, p);
}

KILN_MOD_RUN(kiln_mod_create_symlink)
{
    for (size_t i = 0; i < kiln_mod_item_count(inputs); i++) {
        const json_t *item = kiln_mod_item(inputs, i);
        _cleanup_free_ char *path_in = NULL, *target_in = NULL;
        bool force;
        int r = kiln_mod_get_str(item, "CreateSymlink", "path", true, &path_in, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, "CreateSymlink", "target", true, &target_in, err);
        if (r >= 0)
            r = kiln_mod_get_bool(item, "CreateSymlink", "force", false, &force, err);
        if (r < 0)
            return r;
        /* Relative paths are made absolute against the working folder, so the link points
         * where the document author saw the target. */
        _cleanup_free_ char *stripped = strip_slashes(path_in);
        _cleanup_free_ char *path = absolute(stripped);
        _cleanup_free_ char *target = absolute(target_in);
        struct stat st;
        if (stat(target, &st) < 0)
            return kiln_error_errno(err, -errno, "CreateSymlink: target %s", target);
        bool exists = lstat(path, &st) == 0;
        if (exists && !S_ISLNK(st.st_mode))
            return kiln_error_set(err, -EEXIST,
                                  "CreateSymlink: %s exists and is not a symbolic link", path);
        if (exists && !force)
            return kiln_error_set(err, -EEXIST,
                                  "CreateSymlink: link %s already exists and force is false", path);
        r = mkdir_parent("CreateSymlink", path, err);
        if (r < 0)
            return r;
        _cleanup_free_ char *tmp = kiln_asprintf("%s.kiln-link-%d", path, (int)getpid());
        unlink(tmp);
        if (symlink(target, tmp) < 0)
            return kiln_error_errno(err, -errno, "CreateSymlink: %s", path);
        if (rename(tmp, path) < 0) {
            r = -errno;
            unlink(tmp);
            return kiln_error_errno(err, r, "CreateSymlink: %s", path);
        }
    }
    *ret_outputs = json_object();
    return 0;
}

/* ---- DeleteFile / DeleteFolder ---- */

KILN_MOD_RUN(kiln_mod_delete_file)
{
    for (size_t i = 0; i < kiln_mod_item_count(inputs); i++) {
        const json_t *item = kiln_mod_item(inputs, i);
        _cleanup_free_ char *path = NULL;
        _cleanup_strv_free_ char **files = NULL;
        bool force, wild;
        int r = kiln_mod_get_str(item, "DeleteFile", "path", true, &path, err);
        if (r >= 0)
            r = kiln_mod_get_bool(item, "DeleteFile", "force", false, &force, err);
        if (r >= 0)
            r = expand_source("DeleteFile", path, WANT_ENTRIES, &files, &wild, err);
        if (r < 0)
            return r;
        for (size_t k = 0; files[k]; k++) {
            struct stat st;
            if (lstat(files[k], &st) < 0)
                return kiln_error_errno(err, -errno, "DeleteFile: %s", files[k]);
            if (S_ISDIR(st.st_mode)) {
                /* Not in the reference; AWS's own samples delete a folder this way. */
                if (!force)
                    return kiln_error_set(
                        err, -EISDIR, "DeleteFile: %s is a folder (use DeleteFolder)", files[k]);
                r = kiln_rm_rf(files[k], err);
                if (r < 0)
                    return kiln_error_prefix(err, r, "DeleteFile");
                continue;
            }
            if (unlink(files[k]) < 0)
                return kiln_error_errno(err, -errno, "DeleteFile: %s", files[k]);
        }
    }
    *ret_outputs = json_object();
    return 0;
}

static bool
dir_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return false;
    struct dirent *de;
    bool empty = true;
    while (empty && (de = readdir(d)))
        empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
    closedir(d);
    return empty;
}

KILN_MOD_RUN(kiln_mod_delete_folder)
{
    for (size_t i = 0; i < kiln_mod_item_count(inputs); i++) {
        const json_t *item = kiln_mod_item(inputs, i);
        _cleanup_free_ char *path_in = NULL;
        bool force;
        int r = kiln_mod_get_str(item, "DeleteFolder", "path", true, &path_in, err);
        if (r >= 0)
            r = kiln_mod_get_bool(item, "DeleteFolder", "force", false, &force, err);
        if (r < 0)
            return r;
        _cleanup_free_ char *path = strip_slashes(path_in);
        struct stat st;
        if (lstat(path, &st) < 0)
            return kiln_error_errno(err, -errno, "DeleteFolder: %s", path);
        if (!S_ISDIR(st.st_mode))
            return kiln_error_set(err, -ENOTDIR, "DeleteFolder: %s is not a folder%s", path,
                                  S_ISLNK(st.st_mode) ? " (a symbolic link)" : "");
        if (!force && !dir_empty(path))
            return kiln_error_set(err, -ENOTEMPTY,
                                  "DeleteFolder: %s is not empty and force is false", path);
        r = kiln_rm_rf(path, err);
        if (r < 0)
            return kiln_error_prefix(err, r, "DeleteFolder");
    }
    *ret_outputs = json_object();
    return 0;
}

/* ---- ListFiles ---- */

static int
list_dir(const struct op *op, const char *dir, const char *pattern, bool recursive, char ***files,
         size_t *n, struct kiln_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return kiln_error_errno(err, -errno, "ListFiles: %s", dir);
    struct dirent *de;
    int r = 0;
    while (r == 0 && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        _cleanup_free_ char *p = kiln_path_join(dir, de->d_name);
        struct stat st;
        if ((r = op_check(op, err)) < 0)
            break;
        if (lstat(p, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (recursive)
                r = list_dir(op, p, pattern, recursive, files, n, err);
            continue;
        }
        if (pattern && !kiln_mod_star_match(pattern, de->d_name))
            continue;
        *files = kiln_reallocarray(*files, *n + 2, sizeof(**files));
        (*files)[(*n)++] = TAKE_PTR(p);
        (*files)[*n] = NULL;
    }
    closedir(d);
    return r;
}

KILN_MOD_RUN(kiln_mod_list_files)
{
    struct op op = op_start("ListFiles", ctx);
    _cleanup_strv_free_ char **files = kiln_new(char *, 1);
    size_t n = 0;
    for (size_t i = 0; i < kiln_mod_item_count(inputs); i++) {
        const json_t *item = kiln_mod_item(inputs, i);
        _cleanup_free_ char *path = NULL, *pattern = NULL;
        bool recursive;
        int r = kiln_mod_get_str(item, "ListFiles", "path", true, &path, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, "ListFiles", "fileNamePattern", false, &pattern, err);
        if (r >= 0)
            r = kiln_mod_get_bool(item, "ListFiles", "recursive", false, &recursive, err);
        if (r < 0)
            return r;
        if (!is_dir(path))
            return kiln_error_set(err, -ENOENT, "ListFiles: %s is not an existing folder", path);
        size_t first = n;
        r = list_dir(&op, path, pattern && *pattern ? pattern : NULL, recursive, &files, &n, err);
        if (r < 0)
            return r;
        qsort(files + first, n - first, sizeof(*files), cmp_str);
    }
    _cleanup_buf_ struct kiln_buf out = {0};
    for (size_t i = 0; i < n; i++) {
        if (i)
            kiln_buf_append_char(&out, ',');
        kiln_buf_append_str(&out, files[i]);
    }
    json_t *o = json_object();
    json_object_set_new(o, "files", kiln_mod_json_text(out.data, out.len));
    *ret_outputs = o;
    return 0;
}

/* ---- SetFileOwner / SetFolderOwner / SetFilePermissions / SetFolderPermissions ---- */

struct walk {
    bool chmod;
    mode_t mode;
    uid_t uid;
    gid_t gid;
};

/* Apply the owner or mode to path and everything below it, never following links: a link
 * gets lchown, and no chmod (its own mode means nothing). */
static int
walk_tree(const struct op *op, const char *path, const struct walk *w, struct kiln_error *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return kiln_error_errno(err, -errno, "%s: %s", op->module, path);
    int r = 0;
    if (w->chmod && !S_ISLNK(st.st_mode))
        r = chmod(path, w->mode);
    else if (!w->chmod)
        r = lchown(path, w->uid, w->gid);
    if (r < 0)
        return kiln_error_errno(err, -errno, "%s: %s", op->module, path);
    if (!S_ISDIR(st.st_mode))
        return 0;
    DIR *d = opendir(path);
    if (!d)
        return kiln_error_errno(err, -errno, "%s: %s", op->module, path);
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        _cleanup_free_ char *p = kiln_path_join(path, de->d_name);
        r = op_check(op, err);
        if (r == 0)
            r = walk_tree(op, p, w, err);
    }
    closedir(d);
    return r;
}

static int
set_owner(const json_t *inputs, const struct kiln_module_ctx *ctx, const char *module, bool folder,
          struct kiln_error *err)
{
    struct op op = op_start(module, ctx);
    for (size_t i = 0; i < kiln_mod_item_count(inputs); i++) {
        const json_t *item = kiln_mod_item(inputs, i);
        _cleanup_free_ char *path_in = NULL, *owner = NULL, *group = NULL;
        bool recursive = true;
        int r = kiln_mod_get_str(item, module, "path", true, &path_in, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, module, "owner", true, &owner, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, module, "group", false, &group, err);
        if (r >= 0 && folder)
            r = kiln_mod_get_bool(item, module, "recursive", true, &recursive, err);
        if (r < 0)
            return r;
        _cleanup_free_ char *path = strip_slashes(path_in);
        uid_t uid;
        gid_t gid = (gid_t)-1;
        r = resolve_owner(module, owner, group, &uid, &gid, err);
        if (r < 0)
            return r;
        struct stat st;
        if (stat(path, &st) < 0)
            return kiln_error_errno(err, -errno, "%s: %s", module, path);
        if (folder && !S_ISDIR(st.st_mode))
            return kiln_error_set(err, -ENOTDIR, "%s: %s is not a folder", module, path);
        if (!folder || !recursive) {
            /* follows a link to change its target, as the reference says */
            if (chown(path, uid, gid) < 0)
                return kiln_error_errno(err, -errno, "%s: %s", module, path);
            continue;
        }
        struct walk w = {.chmod = false, .uid = uid, .gid = gid};
        r = walk_tree(&op, path, &w, err);
        if (r < 0)
            return r;
    }
    return 0;
}

KILN_MOD_RUN(kiln_mod_set_file_owner)
{
    return no_outputs(set_owner(inputs, ctx, "SetFileOwner", false, err), ret_outputs);
}

KILN_MOD_RUN(kiln_mod_set_folder_owner)
{
    return no_outputs(set_owner(inputs, ctx, "SetFolderOwner", true, err), ret_outputs);
}

static int
set_permissions(const json_t *inputs, const struct kiln_module_ctx *ctx, const char *module,
                bool folder, struct kiln_error *err)
{
    struct op op = op_start(module, ctx);
    for (size_t i = 0; i < kiln_mod_item_count(inputs); i++) {
        const json_t *item = kiln_mod_item(inputs, i);
        _cleanup_free_ char *path_in = NULL, *perms = NULL;
        bool recursive = true;
        mode_t mode = 0;
        int r = kiln_mod_get_str(item, module, "path", true, &path_in, err);
        if (r >= 0)
            r = kiln_mod_get_str(item, module, "permissions", true, &perms, err);
        if (r >= 0)
            r = parse_mode(module, perms, &mode, err);
        if (r >= 0 && folder)
            r = kiln_mod_get_bool(item, module, "recursive", true, &recursive, err);
        if (r < 0)
            return r;
        _cleanup_free_ char *path = strip_slashes(path_in);
        struct stat st;
        if (stat(path, &st) < 0)
            return kiln_error_errno(err, -errno, "%s: %s", module, path);
        if (folder && !S_ISDIR(st.st_mode))
            return kiln_error_set(err, -ENOTDIR, "%s: %s is not a folder", module, path);
        if (!folder && S_ISDIR(st.st_mode))
            return kiln_error_set(err, -EISDIR, "%s: %s is a folder (use SetFolderPermissions)",
                                  module, path);
        if (!folder || !recursive) {
            if (chmod(path, mode) < 0)
                return kiln_error_errno(err, -errno, "%s: %s", module, path);
            continue;
        }
        struct walk w = {.chmod = true, .mode = mode};
        r = walk_tree(&op, path, &w, err);
        if (r < 0)
            return r;
    }
    return 0;
}

KILN_MOD_RUN(kiln_mod_set_file_permissions)
{
    return no_outputs(set_permissions(inputs, ctx, "SetFilePermissions", false, err), ret_outputs);
}

KILN_MOD_RUN(kiln_mod_set_folder_permissions)
{
    return no_outputs(set_permissions(inputs, ctx, "SetFolderPermissions", true, err), ret_outputs);
}
