/* File helpers. */
#define _XOPEN_SOURCE 700
#include "common/fs.h"

#include <fcntl.h>
#include <ftw.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

int
kiln_read_file(const char *path, size_t max, char **ret_data, size_t *ret_len,
               struct kiln_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kiln_error_errno(err, -errno, "%s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return kiln_error_errno(err, -errno, "%s", path);
    if (S_ISDIR(st.st_mode))
        return kiln_error_set(err, -EISDIR, "%s: is a directory", path);
    size_t cap = S_ISREG(st.st_mode) && (size_t)st.st_size < max ? (size_t)st.st_size + 1 : 4096;
    _cleanup_free_ char *data = kiln_malloc(cap);
    size_t len = 0;
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > max)
                return kiln_error_set(err, -KILN_E_LIMIT, "%s: larger than %zu bytes", path,
                                      max);
            cap *= 2;
            data = kiln_realloc(data, cap);
        }
        ssize_t n = read(fd, data + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return kiln_error_errno(err, -errno, "%s: read failed", path);
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max)
            return kiln_error_set(err, -KILN_E_LIMIT, "%s: larger than %zu bytes", path, max);
    }
    data[len] = '\0';
    *ret_data = TAKE_PTR(data);
    if (ret_len)
        *ret_len = len;
    return 0;
}

static int
copy_fd(int in, int out, off_t size)
{
    if (ioctl(out, FICLONE, in) == 0)
        return 0;
    off_t left = size;
    while (left > 0) {
        ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO; /* the source shrank under us */
        left -= n;
    }
    return 0;
}

int
kiln_copy_file(const char *src, const char *dst, mode_t mode, struct kiln_error *err)
{
    _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return kiln_error_errno(err, -errno, "%s", src);
    struct stat st;
    if (fstat(in, &st) < 0)
        return kiln_error_errno(err, -errno, "%s", src);
    if (!S_ISREG(st.st_mode))
        return kiln_error_set(err, -EINVAL, "%s: not a regular file", src);
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (out < 0)
        return kiln_error_errno(err, -errno, "%s", dst);
    int r = copy_fd(in, out, st.st_size);
    if (r == 0 && fsync(out) < 0)
        r = -errno;
    if (close(out) < 0 && r == 0)
        r = -errno;
    if (r < 0) {
        unlink(dst);
        return kiln_error_errno(err, r, "copy %s to %s", src, dst);
    }
    return 0;
}

int
kiln_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                       struct kiln_error *err)
{
    _cleanup_free_ char *tmp = kiln_asprintf("%s.tmp.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return kiln_error_errno(err, -errno, "%s: cannot create temporary file", path);
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int r = -errno;
            close(fd);
            unlink(tmp);
            return kiln_error_errno(err, r, "%s: write failed", path);
        }
        p += n;
        left -= (size_t)n;
    }
    if (fchmod(fd, mode) < 0 || fsync(fd) < 0 || close(fd) < 0) {
        int r = -errno;
        unlink(tmp);
        return kiln_error_errno(err, r, "%s: write failed", path);
    }
    if (rename(tmp, path) < 0) {
        int r = -errno;
        unlink(tmp);
        return kiln_error_errno(err, r, "%s: rename failed", path);
    }
    return 0;
}

int
kiln_mkdir_p(const char *path, mode_t mode, struct kiln_error *err)
{
    _cleanup_free_ char *p = kiln_strdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return kiln_error_errno(err, -errno, "%s: cannot create directory", p);
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return kiln_error_errno(err, -errno, "%s: cannot create directory", p);
    struct stat st;
    if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode))
        return kiln_error_set(err, -ENOTDIR, "%s: not a directory", p);
    return 0;
}

static int
rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int r = type == FTW_DP ? rmdir(path) : unlink(path);
    return r < 0 && errno != ENOENT ? -1 : 0;
}

int
kiln_rm_rf(const char *path, struct kiln_error *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : kiln_error_errno(err, -errno, "%s", path);
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) < 0 && errno != ENOENT)
            return kiln_error_errno(err, -errno, "%s: cannot remove", path);
        return 0;
    }
    if (nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS) < 0)
        return kiln_error_errno(err, -errno, "%s: cannot remove", path);
    return 0;
}

char *
kiln_path_join(const char *a, const char *b)
{
    size_t la = strlen(a);
    if (la > 0 && a[la - 1] == '/')
        la--;
    while (*b == '/')
        b++;
    return kiln_asprintf("%.*s/%s", (int)la, a, b);
}

int
kiln_mkdtemp(const char *prefix, char **ret_path, struct kiln_error *err)
{
    const char *tmp = getenv("TMPDIR");
    char *path = kiln_asprintf("%s/%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
    if (!mkdtemp(path)) {
        int r = -errno;
        free(path);
        return kiln_error_errno(err, r, "cannot create a temporary directory");
    }
    *ret_path = path;
    return 0;
}

char *
kiln_home_dir(void)
{
    const char *h = getenv("KILN_HOME");
    if (h && *h)
        return kiln_strdup(h);
    if (geteuid() == 0)
        return kiln_strdup("/var/lib/kiln");
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg && *xdg)
        return kiln_path_join(xdg, "kiln");
    const char *home = getenv("HOME");
    return kiln_asprintf("%s/.local/share/kiln", home && *home ? home : "/tmp");
}
