/* VM test of image import (images/import.c): a "user's cloud image" without Kiln's agent (the
 * debian-12 disk with the agent, its unit and udev rule removed) is imported, then booted through
 * its own boot loader (GRUB, BIOS) under real libvirt until the injected agent says hello and
 * runs a job. Labels: vm, slow (libguestfs and a firmware boot under TCG take minutes). */
#include "kiln-test.h"

#include <guestfs.h>
#include <sys/stat.h>

#include "common/fs.h"
#include "drivers/command.h"
#include "drivers/libvirt.h"
#include "images/catalog.h"
#include "images/import.h"

/* Remove every trace of the agent from the image at path (as a plain cloud image would be). */
static void
strip_agent(const char *path)
{
    guestfs_h *g = guestfs_create();
    assert_non_null(g);
    char *settings[] = {"force_tcg", NULL};
    guestfs_set_backend(g, "direct");
    guestfs_set_backend_settings(g, settings);
    assert_int_equal(guestfs_add_drive_opts(g, path, GUESTFS_ADD_DRIVE_OPTS_FORMAT, "qcow2", -1), 0);
    assert_int_equal(guestfs_launch(g), 0);
    char **roots = guestfs_inspect_os(g);
    assert_non_null(roots);
    assert_non_null(roots[0]);
    assert_int_equal(guestfs_mount(g, roots[0], "/"), 0);
    kiln_strv_free(roots);
    assert_int_equal(guestfs_rm_f(g, "/usr/bin/kiln-agent"), 0);
    assert_int_equal(guestfs_rm_f(g, "/etc/systemd/system/kiln-agent.service"), 0);
    assert_int_equal(guestfs_rm_f(g, "/etc/udev/rules.d/60-kiln-agent.rules"), 0);
    assert_int_equal(guestfs_rm_f(g, "/etc/systemd/system/sysinit.target.wants/kiln-agent.service"),
                     0);
    assert_int_equal(guestfs_rm_f(g, "/usr/local/bin/kiln-agent"), 0);
    assert_int_equal(guestfs_rm_f(g, "/usr/lib/kiln/agent-run"), 0);
    assert_int_equal(guestfs_exists(g, "/usr/bin/kiln-agent"), 0);
    assert_int_equal(guestfs_shutdown(g), 0);
    guestfs_close(g);
}

static void
test_import_and_boot(void **state)
{
    struct kiln_image_ref deb = {0};
    struct kiln_error err = {0};
    if (kiln_catalog_resolve(NULL, "debian-12", &deb, &err) < 0)
        fail_msg("%s", err.message);
    _cleanup_free_ char *dir = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-import-test", &dir, NULL), 0);
    _cleanup_free_ char *user = kiln_path_join(dir, "user.qcow2");
    char *cp[] = {"qemu-img", "convert", "-q", "-O", "qcow2", deb.location, user, NULL};
    assert_int_equal(kiln_command_run(cp, NULL, NULL), 0);
    strip_agent(user);
    struct stat before, after;
    assert_int_equal(stat(user, &before), 0);

    _cleanup_free_ char *agent = kiln_asprintf("%s/guest-agent/kiln-agent", getenv("KILN_BUILD_DIR"));
    _cleanup_free_ char *home = kiln_path_join(dir, "home");
    struct kiln_import_options io = {.source = user, .name = "mine", .home = home,
                                     .agent = agent};
    struct kiln_image_ref imported = {0};
    if (kiln_import_image(&io, &imported, &err) < 0)
        fail_msg("%s", err.message);
    /* The user's file is untouched; the catalog knows the new image by name. */
    assert_int_equal(stat(user, &after), 0);
    assert_int_equal(before.st_mtime, after.st_mtime);
    assert_int_equal(before.st_size, after.st_size);
    assert_null(imported.kernel);
    struct kiln_image_ref byname = {0};
    assert_int_equal(kiln_catalog_resolve(home, "mine", &byname, &err), 0);
    assert_string_equal(byname.location, imported.location);
    kiln_image_ref_clear(&byname);

    /* Boot it through its own boot loader: the injected agent must answer. */
    struct kiln_driver_config cfg = {.uri = "qemu:///system", .accel = "tcg", .vcpus = 1,
                                     .memory_mib = 1024, .work_dir = dir, .build_id = "importtest"};
    void *conn = NULL;
    assert_int_equal(kiln_libvirt_driver.open(&cfg, 0, &conn, &err), 0);
    struct kiln_instance *inst = NULL;
    if (kiln_libvirt_driver.launch(conn, &imported, "boot", 600, 0, &inst, &err) < 0)
        fail_msg("%s", err.message);
    _cleanup_free_ char *doc = kiln_asprintf("%s/tests/vm/data/hello.yml", kiln_test_source_dir());
    char *docs[] = {doc, NULL};
    struct kiln_job job = {.documents = docs, .timeout_seconds = -1};
    struct kiln_job_result res = {0};
    _cleanup_free_ char *logs = kiln_path_join(dir, "logs");
    if (kiln_libvirt_driver.run(inst, &job, logs, NULL, 0, &res, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(res.status, KILN_RUN_SUCCESS);
    kiln_job_result_clear(&res);
    assert_int_equal(kiln_libvirt_driver.terminate(inst, 0, &err), 0);
    kiln_libvirt_driver.close(conn);

    /* A file that is not a Linux image is refused, and nothing is left behind. */
    _cleanup_free_ char *junk = kiln_path_join(dir, "junk.qcow2");
    char *mk[] = {"qemu-img", "create", "-q", "-f", "qcow2", junk, "64M", NULL};
    assert_int_equal(kiln_command_run(mk, NULL, NULL), 0);
    _cleanup_free_ char *dest = kiln_path_join(dir, "junk-imported.qcow2");
    struct kiln_import_options bad = {.source = junk, .dest = dest, .agent = agent};
    kiln_error_clear(&err);
    assert_int_equal(kiln_import_image(&bad, &imported, &err), -KILN_E_UNSUPPORTED);
    assert_non_null(strstr(err.message, "no operating system"));
    struct stat st;
    assert_int_equal(stat(dest, &st), -1);

    kiln_image_ref_clear(&imported);
    kiln_image_ref_clear(&deb);
    kiln_rm_rf(dir, NULL);
}

KILN_TEST_MAIN(cmocka_unit_test(test_import_and_boot))
