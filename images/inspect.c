/* Offline inspection of image files with libguestfs (images/inspect.h): the shared handle setup
 * and mounting of images/, and the package list for build manifests. */
#include <fcntl.h>
#include <limits.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "images/inspect.h"

static int
gerr(guestfs_h *g, struct kiln_error *err, const char *what)
{
    const char *m = guestfs_last_error(g);
    return kiln_error_set(err, -KILN_E_FAILED, "%s: %s", what, m ? m : "libguestfs error");
}

int
kiln_inspect_guestfs_new(guestfs_h **ret, struct kiln_error *err)
{
    guestfs_h *g = guestfs_create_flags(0);
    if (!g)
        return kiln_error_set(err, -KILN_E_FAILED, "cannot create a libguestfs handle");
    guestfs_set_error_handler(g, NULL, NULL);
    if (!getenv("LIBGUESTFS_BACKEND") && guestfs_set_backend(g, "direct") < 0) {
        int r = gerr(g, err, "libguestfs backend");
        guestfs_close(g);
        return r;
    }
    if (!getenv("KILN_GUESTFS_KVM") && !getenv("LIBGUESTFS_BACKEND_SETTINGS")) {
        /* No trust in nested KVM: libguestfs's appliance runs under TCG. */
        char *settings[] = {"force_tcg", NULL};
        if (guestfs_set_backend_settings(g, settings) < 0) {
            int r = gerr(g, err, "libguestfs backend settings");
            guestfs_close(g);
            return r;
        }
    }
    *ret = g;
    return 0;
}

int
kiln_inspect_mount_os(guestfs_h *g, bool readonly, char **root_ret, struct kiln_error *err)
{
    _cleanup_strv_free_ char **roots = guestfs_inspect_os(g);
    if (!roots)
        return gerr(g, err, "inspect");
    if (!roots[0])
        return kiln_error_set(err, -KILN_E_UNSUPPORTED, "no operating system found in the image");
    const char *root = roots[0];
    _cleanup_free_ char *type = guestfs_inspect_get_type(g, root);
    if (!kiln_streq(type, "linux"))
        return kiln_error_set(err, -KILN_E_UNSUPPORTED, "the image holds %s, not Linux",
                              type ? type : "an unknown system");
    /* Mount everything the guest's fstab names, shortest mount point first. */
    _cleanup_strv_free_ char **mps = guestfs_inspect_get_mountpoints(g, root);
    if (!mps)
        return gerr(g, err, "mount points");
    for (size_t len = 1; len < PATH_MAX; len++) {
        bool more = false;
        for (size_t i = 0; mps[i] && mps[i + 1]; i += 2) {
            size_t l = strlen(mps[i]);
            if (l > len) {
                more = true;
                continue;
            }
            if (l < len)
                continue;
            int r = readonly ? guestfs_mount_ro(g, mps[i + 1], mps[i])
                             : guestfs_mount(g, mps[i + 1], mps[i]);
            if (r < 0)
                return gerr(g, err, "mount");
        }
        if (!more)
            break;
    }
    if (root_ret)
        *root_ret = kiln_strdup(root);
    return 0;
}

static int
cmp_pkg(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int c = strcmp(kiln_json_get_str(x, "name"), kiln_json_get_str(y, "name"));
    return c ? c : strcmp(kiln_json_get_str(x, "arch"), kiln_json_get_str(y, "arch"));
}

json_t *
kiln_inspect_apps_json(const struct guestfs_application2_list *apps)
{
    size_t n = apps ? apps->len : 0;
    _cleanup_free_ json_t **items = kiln_new(json_t *, n + 1);
    for (size_t i = 0; i < n; i++) {
        const struct guestfs_application2 *a = &apps->val[i];
        _cleanup_free_ char *version = a->app2_epoch > 0
            ? kiln_asprintf("%d:%s", a->app2_epoch, a->app2_version ? a->app2_version : "")
            : kiln_strdup(a->app2_version ? a->app2_version : "");
        items[i] = json_pack("{s:s, s:s, s:s, s:s}", "name", a->app2_name ? a->app2_name : "",
                             "version", version, "release",
                             a->app2_release ? a->app2_release : "", "arch",
                             a->app2_arch ? a->app2_arch : "");
        if (!items[i])
            abort();
    }
    qsort(items, n, sizeof(json_t *), cmp_pkg);
    json_t *arr = json_array();
    if (!arr)
        abort();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, items[i]);
    return arr;
}

/* "qcow2" or "raw" from the file's first bytes. */
static int
detect_format(const char *path, const char **ret, struct kiln_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kiln_error_errno(err, -errno, "inspect: %s", path);
    unsigned char magic[4] = {0};
    ssize_t n = read(fd, magic, sizeof(magic));
    if (n < 0)
        return kiln_error_errno(err, -errno, "inspect: %s", path);
    *ret = n == 4 && memcmp(magic, "QFI\xfb", 4) == 0 ? "qcow2" : "raw";
    return 0;
}

int
kiln_inspect_packages(const char *path, const char *format, json_t **ret, struct kiln_error *err)
{
    if (!path || !*path)
        return kiln_error_set(err, -EINVAL, "inspect: no image given");
    int r = 0;
    if (!format && (r = detect_format(path, &format, err)) < 0)
        return r;
    if (!kiln_streq(format, "qcow2") && !kiln_streq(format, "raw"))
        return kiln_error_set(err, -EINVAL, "inspect: unknown image format %s", format);
    guestfs_h *g = NULL;
    if ((r = kiln_inspect_guestfs_new(&g, err)) < 0)
        return r;
    _cleanup_free_ char *root = NULL;
    struct guestfs_application2_list *apps = NULL;
    if (guestfs_add_drive_opts(g, path, GUESTFS_ADD_DRIVE_OPTS_FORMAT, format,
                               GUESTFS_ADD_DRIVE_OPTS_READONLY, 1, -1) < 0 ||
        guestfs_launch(g) < 0)
        r = gerr(g, err, "start libguestfs");
    if (r == 0)
        r = kiln_inspect_mount_os(g, true, &root, err);
    if (r == 0 && !(apps = guestfs_inspect_list_applications2(g, root)))
        r = gerr(g, err, "list applications");
    if (r == 0)
        *ret = kiln_inspect_apps_json(apps);
    if (apps)
        guestfs_free_application2_list(apps);
    guestfs_close(g);
    if (r < 0)
        return kiln_error_prefix(err, r, "inspect %s", path);
    return 0;
}
