/* The local base-image catalog (images/catalog.h). Each built image is a folder
 * HOME/images/NAME/DIGEST/ with image.json, disk.qcow2 and, for direct kernel boot, the kernel
 * and initrd; HOME/images/NAME/current links to the newest digest. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include "common/fs.h"
#include "common/json.h"
#include "images/catalog.h"

static bool
valid_image_name(const char *s)
{
    if (!s || !*s || strlen(s) > 64 || s[0] == '.' || s[0] == '-')
        return false;
    for (; *s; s++)
        if (!(('a' <= *s && *s <= 'z') || ('0' <= *s && *s <= '9') || *s == '-' || *s == '.' ||
              *s == '_'))
            return false;
    return true;
}

/* A file name from image.json: a plain name inside the image folder. */
static int
member(const char *dir, const json_t *j, const char *key, bool required, char **ret,
       struct kiln_error *err)
{
    const char *v = kiln_json_get_str(j, key);
    *ret = NULL;
    if (!v) {
        if (required)
            return kiln_error_set(err, -KILN_E_INVALID, "%s/image.json: no \"%s\"", dir, key);
        return 0;
    }
    if (!*v || strchr(v, '/') || strcmp(v, "..") == 0 || strcmp(v, ".") == 0)
        return kiln_error_set(err, -KILN_E_INVALID, "%s/image.json: \"%s\" must be a file name "
                              "in the image folder", dir, key);
    char *p = kiln_path_join(dir, v);
    if (access(p, R_OK) < 0) {
        int r = kiln_error_errno(err, -errno, "image file %s", p);
        free(p);
        return r;
    }
    *ret = p;
    return 0;
}

static int
resolve_name(const char *home, const char *name, struct kiln_image_ref *ret,
             struct kiln_error *err)
{
    _cleanup_free_ char *link = kiln_asprintf("%s/images/%s/current", home, name);
    char dir[PATH_MAX];
    if (!realpath(link, dir))
        return kiln_error_set(err, -ENOENT, "no image named %s in %s/images (build it with "
                              "scripts/prepare-images, or give a path to a qcow2/raw file)",
                              name, home);
    _cleanup_free_ char *json_path = kiln_path_join(dir, "image.json");
    _cleanup_json_ json_t *j = NULL;
    int r = kiln_json_load_file(json_path, 1 << 20, &j, err);
    if (r < 0)
        return r;
    const char *format = kiln_json_get_str(j, "format");
    if (format && !kiln_streq(format, "qcow2") && !kiln_streq(format, "raw"))
        return kiln_error_set(err, -KILN_E_INVALID, "%s: unknown format %s", json_path, format);
    _cleanup_free_ char *disk = NULL, *kernel = NULL, *initrd = NULL;
    if ((r = member(dir, j, "disk", true, &disk, err)) < 0 ||
        (r = member(dir, j, "kernel", false, &kernel, err)) < 0 ||
        (r = member(dir, j, "initrd", false, &initrd, err)) < 0)
        return r;
    const char *cmdline = kiln_json_get_str(j, "cmdline");
    /* (Initialisers are evaluated in no fixed order: decide before kernel is taken.) */
    char *cmd = kernel && cmdline ? kiln_strdup(cmdline) : NULL;
    *ret = (struct kiln_image_ref){
        .kind = kiln_strdup(format ? format : "qcow2"),
        .location = TAKE_PTR(disk),
        .cmdline = cmd,
        .kernel = TAKE_PTR(kernel),
        .initrd = TAKE_PTR(initrd),
    };
    return 0;
}

static int
resolve_path(const char *path, struct kiln_image_ref *ret, struct kiln_error *err)
{
    char abs[PATH_MAX];
    if (!realpath(path, abs))
        return kiln_error_errno(err, -errno, "image %s", path);
    struct stat st;
    if (stat(abs, &st) < 0)
        return kiln_error_errno(err, -errno, "image %s", abs);
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return kiln_error_set(err, -KILN_E_INVALID, "image %s is not a file", abs);
    _cleanup_close_ int fd = open(abs, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kiln_error_errno(err, -errno, "image %s", abs);
    unsigned char magic[4] = {0};
    ssize_t n = read(fd, magic, sizeof(magic));
    bool qcow2 = n == 4 && memcmp(magic, "QFI\xfb", 4) == 0;
    *ret = (struct kiln_image_ref){.kind = kiln_strdup(qcow2 ? "qcow2" : "raw"),
                                   .location = kiln_strdup(abs)};
    return 0;
}

int
kiln_catalog_resolve(const char *home, const char *name_or_path, struct kiln_image_ref *ret,
                     struct kiln_error *err)
{
    if (!name_or_path || !*name_or_path)
        return kiln_error_set(err, -EINVAL, "no image given");
    if (strchr(name_or_path, '/'))
        return resolve_path(name_or_path, ret, err);
    _cleanup_free_ char *h = home ? kiln_strdup(home) : kiln_home_dir();
    if (valid_image_name(name_or_path)) {
        struct kiln_error name_err = {0};
        int r = resolve_name(h, name_or_path, ret, &name_err);
        if (r != -ENOENT || access(name_or_path, F_OK) < 0) {
            if (r < 0)
                kiln_error_set(err, r, "%s", name_err.message);
            return r;
        }
    }
    /* Not a catalog name: a file in the current folder. */
    return resolve_path(name_or_path, ret, err);
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int
kiln_catalog_list(const char *home, char ***ret, struct kiln_error *err)
{
    _cleanup_free_ char *h = home ? kiln_strdup(home) : kiln_home_dir();
    _cleanup_free_ char *images = kiln_path_join(h, "images");
    size_t n = 0;
    char **names = kiln_new(char *, 1);
    DIR *d = opendir(images);
    if (!d) {
        if (errno == ENOENT) {
            *ret = names;
            return 0;
        }
        int r = kiln_error_errno(err, -errno, "%s", images);
        free(names);
        return r;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!valid_image_name(e->d_name))
            continue;
        _cleanup_free_ char *json = kiln_asprintf("%s/%s/current/image.json", images, e->d_name);
        if (access(json, R_OK) < 0)
            continue;
        names = kiln_reallocarray(names, n + 2, sizeof(char *));
        names[n++] = kiln_strdup(e->d_name);
        names[n] = NULL;
    }
    closedir(d);
    qsort(names, n, sizeof(char *), cmp_str);
    *ret = names;
    return 0;
}
