/* Tests for the base-image catalog (images/catalog.c) on a Kiln home made up by the test. */
#include "kiln-test.h"

#include <sys/stat.h>

#include "common/fs.h"
#include "images/catalog.h"

static void
put(const char *dir, const char *name, const char *text)
{
    _cleanup_free_ char *p = kiln_path_join(dir, name);
    assert_int_equal(kiln_write_file_atomic(p, text, strlen(text), 0644, NULL), 0);
}

/* HOME/images/NAME/DIGEST with the given image.json, "current" linking to it. */
static char *
make_image(const char *home, const char *name, const char *digest, const char *json)
{
    char *dir = kiln_asprintf("%s/images/%s/%s", home, name, digest);
    assert_int_equal(kiln_mkdir_p(dir, 0755, NULL), 0);
    put(dir, "image.json", json);
    put(dir, "disk.qcow2", "QFI\xfb");
    put(dir, "vmlinux", "kernel");
    put(dir, "initrd.img", "initrd");
    _cleanup_free_ char *link = kiln_asprintf("%s/images/%s/current", home, name);
    unlink(link);
    assert_int_equal(symlink(digest, link), 0);
    return dir;
}

static const char tiny_json[] =
    "{\"name\":\"tiny\",\"format\":\"qcow2\",\"disk\":\"disk.qcow2\",\"kernel\":\"vmlinux\","
    "\"initrd\":\"initrd.img\",\"cmdline\":\"console=ttyS0 quiet\"}";

static void
test_catalog_resolve_name(void **state)
{
    _cleanup_free_ char *home = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-catalog-test", &home, NULL), 0);
    _cleanup_free_ char *dir = make_image(home, "tiny", "0123abcd", tiny_json);

    struct kiln_image_ref ref = {0};
    struct kiln_error err = {0};
    if (kiln_catalog_resolve(home, "tiny", &ref, &err) < 0)
        fail_msg("%s", err.message);
    /* The digest folder, not "current": overlays must survive a rebuild. */
    _cleanup_free_ char *disk = kiln_path_join(dir, "disk.qcow2");
    char real[4096];
    assert_non_null(realpath(disk, real));
    assert_string_equal(ref.location, real);
    assert_null(strstr(ref.location, "current"));
    assert_string_equal(ref.kind, "qcow2");
    assert_non_null(strstr(ref.kernel, "/0123abcd/vmlinux"));
    assert_non_null(strstr(ref.initrd, "/0123abcd/initrd.img"));
    assert_string_equal(ref.cmdline, "console=ttyS0 quiet");
    kiln_image_ref_clear(&ref);

    /* A rebuild moves "current"; the name follows. */
    _cleanup_free_ char *dir2 = make_image(home, "tiny", "4567ef01", tiny_json);
    assert_int_equal(kiln_catalog_resolve(home, "tiny", &ref, &err), 0);
    assert_non_null(strstr(ref.location, "/4567ef01/disk.qcow2"));
    kiln_image_ref_clear(&ref);

    _cleanup_strv_free_ char **names = NULL;
    free(make_image(home, "debian-12", "aa", "{\"disk\":\"disk.qcow2\"}"));
    assert_int_equal(kiln_catalog_list(home, &names, &err), 0);
    assert_string_equal(names[0], "debian-12");
    assert_string_equal(names[1], "tiny");
    assert_null(names[2]);
    kiln_rm_rf(home, NULL);
}

static void
test_catalog_errors(void **state)
{
    _cleanup_free_ char *home = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-catalog-test", &home, NULL), 0);
    struct kiln_image_ref ref = {0};
    struct kiln_error err = {0};
    assert_int_equal(kiln_catalog_resolve(home, "debian-12", &ref, &err), -ENOENT);
    assert_non_null(strstr(err.message, "scripts/prepare-images"));
    assert_null(ref.location);

    /* image.json may only name files inside the image folder. */
    free(make_image(home, "evil", "d1", "{\"disk\":\"../../../../etc/passwd\"}"));
    kiln_error_clear(&err);
    assert_int_equal(kiln_catalog_resolve(home, "evil", &ref, &err), -KILN_E_INVALID);
    free(make_image(home, "nodisk", "d2", "{\"kernel\":\"vmlinux\"}"));
    assert_int_equal(kiln_catalog_resolve(home, "nodisk", &ref, NULL), -KILN_E_INVALID);
    free(make_image(home, "gone", "d3", "{\"disk\":\"missing.qcow2\"}"));
    assert_int_equal(kiln_catalog_resolve(home, "gone", &ref, NULL), -ENOENT);
    free(make_image(home, "vmdk", "d4", "{\"disk\":\"disk.qcow2\",\"format\":\"vmdk\"}"));
    assert_int_equal(kiln_catalog_resolve(home, "vmdk", &ref, NULL), -KILN_E_INVALID);
    free(make_image(home, "bad", "d5", "{not json"));
    assert_true(kiln_catalog_resolve(home, "bad", &ref, NULL) < 0);
    assert_int_equal(kiln_catalog_resolve(home, "", &ref, NULL), -EINVAL);
    assert_null(ref.location);
    kiln_rm_rf(home, NULL);
}

static void
test_catalog_paths(void **state)
{
    _cleanup_free_ char *home = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-catalog-test", &home, NULL), 0);
    put(home, "mine.qcow2", "QFI\xfb\0\0\0\3");
    put(home, "mine.img", "\xeb\x63\x90 raw boot sector");
    _cleanup_free_ char *q = kiln_path_join(home, "mine.qcow2");
    _cleanup_free_ char *raw = kiln_path_join(home, "mine.img");
    struct kiln_image_ref ref = {0};
    struct kiln_error err = {0};
    assert_int_equal(kiln_catalog_resolve(home, q, &ref, &err), 0);
    assert_string_equal(ref.kind, "qcow2");
    assert_null(ref.kernel);
    assert_int_equal(ref.location[0], '/');
    kiln_image_ref_clear(&ref);
    assert_int_equal(kiln_catalog_resolve(home, raw, &ref, &err), 0);
    assert_string_equal(ref.kind, "raw");
    kiln_image_ref_clear(&ref);
    _cleanup_free_ char *missing = kiln_path_join(home, "nope.qcow2");
    assert_int_equal(kiln_catalog_resolve(home, missing, &ref, NULL), -ENOENT);
    assert_int_equal(kiln_catalog_resolve(home, home, &ref, NULL), -KILN_E_INVALID);
    kiln_rm_rf(home, NULL);
}

KILN_TEST_MAIN(cmocka_unit_test(test_catalog_resolve_name), cmocka_unit_test(test_catalog_errors),
               cmocka_unit_test(test_catalog_paths))
