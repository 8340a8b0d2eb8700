/* VM tests of the debian-12 base image: it boots to its agent's hello three ways — Kiln's
 * direct kernel boot, GRUB from BIOS, GRUB from UEFI (OVMF) — and runs a job each time.
 * Labels: vm, slow. */
#include "kiln-test.h"

#include "common/fs.h"
#include "common/json.h"
#include "drivers/libvirt.h"
#include "images/catalog.h"

static void
boot_and_run(const char *build_id, const char *firmware, bool direct)
{
    struct kiln_image_ref img = {0};
    struct kiln_error err = {0};
    if (kiln_catalog_resolve(NULL, "debian-12", &img, &err) < 0)
        fail_msg("%s", err.message);
    assert_non_null(img.kernel);
    if (!direct) {
        /* Boot the disk itself: firmware, then GRUB from the disk. */
        free(img.kernel);
        free(img.initrd);
        free(img.cmdline);
        img.kernel = img.initrd = img.cmdline = NULL;
    }
    _cleanup_free_ char *dir = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-boot-test", &dir, NULL), 0);
    _cleanup_json_ json_t *settings = json_pack("{s:s}", "firmware", firmware);
    struct kiln_driver_config cfg = {.uri = "qemu:///system", .accel = "tcg", .vcpus = 1,
                                     .memory_mib = 1024, .work_dir = dir, .build_id = build_id,
                                     .settings = settings};
    void *conn = NULL;
    if (kiln_libvirt_driver.open(&cfg, 0, &conn, &err) < 0)
        fail_msg("%s", err.message);
    /* A failed earlier run of this test may have left its guest (a failing assertion ends the
     * test before terminate): remove it first, as kiln build's reaper would. */
    if (kiln_libvirt_driver.reap(conn, build_id, 0, &err) < 0)
        fail_msg("%s", err.message);
    struct kiln_instance *inst = NULL;
    if (kiln_libvirt_driver.launch(conn, &img, "boot", 900, 0, &inst, &err) < 0)
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
    /* The serial console shows the boot path taken. */
    _cleanup_free_ char *console = kiln_path_join(dir, "boot.console.log");
    _cleanup_free_ char *text = NULL;
    assert_int_equal(kiln_read_file(console, 64u << 20, &text, NULL, NULL), 0);
    assert_non_null(strstr(text, "kiln: agent ready"));
    if (!direct)
        assert_non_null(strstr(text, "Loading Linux")); /* GRUB's grub.cfg echo */
    if (kiln_libvirt_driver.stop(inst, 120, 0, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(kiln_libvirt_driver.terminate(inst, 0, &err), 0);
    /* UEFI variables lived in the instance folder: nothing is left in libvirt's own. */
    _cleanup_free_ char *vars = kiln_asprintf("/var/lib/libvirt/qemu/nvram/kiln-%s-boot_VARS.fd",
                                              build_id);
    assert_int_equal(access(vars, F_OK), -1);
    _cleanup_free_ char *idir = kiln_path_join(dir, "boot");
    assert_int_equal(access(idir, F_OK), -1);
    kiln_libvirt_driver.close(conn);
    kiln_image_ref_clear(&img);
    kiln_rm_rf(dir, NULL);
}

static void
test_debian_direct_kernel(void **state)
{
    boot_and_run("bootdirect", "bios", true);
}

static void
test_debian_grub_bios(void **state)
{
    boot_and_run("bootbios", "bios", false);
}

static void
test_debian_grub_uefi(void **state)
{
    boot_and_run("bootuefi", "efi", false);
}

KILN_TEST_MAIN(cmocka_unit_test(test_debian_direct_kernel), cmocka_unit_test(test_debian_grub_bios),
               cmocka_unit_test(test_debian_grub_uefi))
