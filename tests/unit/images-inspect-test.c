/* Tests for images/inspect.c that need no guest: the JSON form of a package list (order, epoch,
 * missing fields) and the refusals before libguestfs starts. The inspection of a real image is
 * tests/vm/images-debian-vm-test.c (label vm). */
#include "kiln-test.h"

#include "common/fs.h"
#include "common/json.h"
#include "images/inspect.h"

static struct guestfs_application2
app(const char *name, int epoch, const char *version, const char *release, const char *arch)
{
    return (struct guestfs_application2){.app2_name = (char *)name, .app2_epoch = epoch,
                                         .app2_version = (char *)version,
                                         .app2_release = (char *)release,
                                         .app2_arch = (char *)arch};
}

static void
test_inspect_json_sorted(void **state)
{
    struct guestfs_application2 v[] = {
        app("zlib1g", 1, "1.2.13.dfsg-1", "", "amd64"),
        app("bash", 0, "5.2.15-2+b7", "", "amd64"),
        app("libc6", 0, "2.36-9+deb12u9", "", "i386"),
        app("libc6", 0, "2.36-9+deb12u9", "", "amd64"),
        app("kernel", 0, "6.1.0", "1.el9", "x86_64"),
    };
    struct guestfs_application2_list list = {.len = 5, .val = v};
    _cleanup_json_ json_t *j = kiln_inspect_apps_json(&list);
    assert_true(json_is_array(j));
    assert_int_equal(json_array_size(j), 5);
    const char *names[] = {"bash", "kernel", "libc6", "libc6", "zlib1g"};
    const char *arches[] = {"amd64", "x86_64", "amd64", "i386", "amd64"};
    for (size_t i = 0; i < 5; i++) {
        json_t *p = json_array_get(j, i);
        assert_int_equal(json_object_size(p), 4);
        assert_string_equal(kiln_json_get_str(p, "name"), names[i]);
        assert_string_equal(kiln_json_get_str(p, "arch"), arches[i]);
    }
    /* The epoch goes into the version, Debian-style; RPM's release stays apart. */
    assert_string_equal(kiln_json_get_str(json_array_get(j, 4), "version"), "1:1.2.13.dfsg-1");
    assert_string_equal(kiln_json_get_str(json_array_get(j, 0), "version"), "5.2.15-2+b7");
    assert_string_equal(kiln_json_get_str(json_array_get(j, 1), "release"), "1.el9");
    assert_string_equal(kiln_json_get_str(json_array_get(j, 0), "release"), "");
}

static void
test_inspect_json_missing_fields(void **state)
{
    struct guestfs_application2 v[] = {app("x", 0, NULL, NULL, NULL)};
    struct guestfs_application2_list list = {.len = 1, .val = v};
    _cleanup_json_ json_t *j = kiln_inspect_apps_json(&list);
    json_t *p = json_array_get(j, 0);
    assert_string_equal(kiln_json_get_str(p, "version"), "");
    assert_string_equal(kiln_json_get_str(p, "arch"), "");
    _cleanup_json_ json_t *none = kiln_inspect_apps_json(NULL);
    assert_int_equal(json_array_size(none), 0);
}

static void
test_inspect_refusals(void **state)
{
    struct kiln_error err = {0};
    json_t *j = NULL;
    assert_int_equal(kiln_inspect_packages("/nonexistent/kiln/disk.qcow2", NULL, &j, &err),
                     -ENOENT);
    assert_non_null(strstr(err.message, "/nonexistent/kiln/disk.qcow2"));
    kiln_error_clear(&err);
    assert_int_equal(kiln_inspect_packages("/dev/null", "vmdk", &j, &err), -EINVAL);
    assert_non_null(strstr(err.message, "vmdk"));
    kiln_error_clear(&err);
    assert_int_equal(kiln_inspect_packages(NULL, NULL, &j, &err), -EINVAL);
    assert_null(j);
    kiln_error_clear(&err);
}

static void
test_inspect_guestfs_settings(void **state)
{
    /* Kiln's defaults: direct backend, TCG; the environment overrides them. */
    unsetenv("LIBGUESTFS_BACKEND");
    unsetenv("LIBGUESTFS_BACKEND_SETTINGS");
    unsetenv("KILN_GUESTFS_KVM");
    guestfs_h *g = NULL;
    assert_int_equal(kiln_inspect_guestfs_new(&g, NULL), 0);
    _cleanup_free_ char *backend = guestfs_get_backend(g);
    assert_string_equal(backend, "direct");
    _cleanup_strv_free_ char **settings = guestfs_get_backend_settings(g);
    assert_non_null(settings);
    assert_string_equal(settings[0], "force_tcg");
    assert_null(settings[1]);
    guestfs_close(g);

    setenv("KILN_GUESTFS_KVM", "1", 1);
    assert_int_equal(kiln_inspect_guestfs_new(&g, NULL), 0);
    _cleanup_strv_free_ char **none = guestfs_get_backend_settings(g);
    assert_non_null(none);
    assert_null(none[0]);
    guestfs_close(g);
    unsetenv("KILN_GUESTFS_KVM");
}

KILN_TEST_MAIN(cmocka_unit_test(test_inspect_json_sorted),
               cmocka_unit_test(test_inspect_json_missing_fields),
               cmocka_unit_test(test_inspect_refusals),
               cmocka_unit_test(test_inspect_guestfs_settings))
