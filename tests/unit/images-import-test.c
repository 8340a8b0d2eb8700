/* Tests for images/import.c that need no guest: the refusals of kiln_image_import() and
 * kiln_import_image() before any copy is made. The import of a real image and its boot is
 * tests/vm/images-import-vm-test.c (labels vm, slow). */
#include "kiln-test.h"

#include <sys/stat.h>

#include "common/fs.h"
#include "images/import.h"

static void
test_import_arguments(void **state)
{
    struct kiln_error err = {0};
    struct kiln_image_ref ref = {0};
    assert_int_equal(kiln_image_import(NULL, "x.qcow2", "/bin/true", "/tmp", &ref, &err),
                     -EINVAL);
    assert_non_null(strstr(err.message, "--name"));
    kiln_error_clear(&err);
    assert_int_equal(kiln_image_import("mine", NULL, "/bin/true", "/tmp", &ref, &err), -EINVAL);
    kiln_error_clear(&err);
    /* An agent that is not there. */
    assert_int_equal(kiln_image_import("mine", "x.qcow2", "/nonexistent/kiln-agent", "/tmp", &ref,
                                       &err), -ENOENT);
    assert_non_null(strstr(err.message, "/nonexistent/kiln-agent"));
    kiln_error_clear(&err);
    assert_null(ref.location);
}

static void
test_import_bad_name_and_source(void **state)
{
    _cleanup_free_ char *home = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-import-test", &home, NULL), 0);
    struct kiln_error err = {0};
    struct kiln_image_ref ref = {0};
    /* A name that is no catalog name. */
    assert_int_equal(kiln_image_import("../evil", "/dev/null", "/bin/true", home, &ref, &err),
                     -EINVAL);
    kiln_error_clear(&err);
    /* A source that does not exist: nothing is created in the home. */
    _cleanup_free_ char *missing = kiln_path_join(home, "missing.qcow2");
    assert_int_equal(kiln_image_import("mine", missing, "/bin/true", home, &ref, &err), -ENOENT);
    kiln_error_clear(&err);
    _cleanup_free_ char *images = kiln_path_join(home, "images");
    struct stat st;
    assert_int_equal(stat(images, &st), -1);
    /* A bare file name is a file in the current folder, never a catalog name. */
    assert_int_equal(kiln_image_import("mine", "kiln-no-such-image.qcow2", "/bin/true", home, &ref,
                                       &err), -ENOENT);
    assert_non_null(strstr(err.message, "kiln-no-such-image.qcow2"));
    kiln_error_clear(&err);
    assert_int_equal(kiln_rm_rf(home, NULL), 0);
}

static void
test_import_finds_agent(void **state)
{
    /* KILN_AGENT names the agent when the caller does not. */
    setenv("KILN_AGENT", "/nonexistent/from-env/kiln-agent", 1);
    struct kiln_error err = {0};
    struct kiln_image_ref ref = {0};
    assert_int_equal(kiln_image_import("mine", "x.qcow2", NULL, "/tmp", &ref, &err), -ENOENT);
    assert_non_null(strstr(err.message, "/nonexistent/from-env/kiln-agent"));
    kiln_error_clear(&err);
    unsetenv("KILN_AGENT");
}

KILN_TEST_MAIN(cmocka_unit_test(test_import_arguments),
               cmocka_unit_test(test_import_bad_name_and_source),
               cmocka_unit_test(test_import_finds_agent))
