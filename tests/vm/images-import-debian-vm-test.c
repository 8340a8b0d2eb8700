/* VM test of kiln_image_import() (images/import.c), the entry point of `kiln image import`, on a
 * raw copy of the debian-12 disk: the imported image, read back offline with libguestfs under
 * TCG, holds the agent with its own loader and libraries, a wrapper at /usr/local/bin (replacing
 * the image's symbolic link, not written through it), the unit, the udev rule and the device
 * wants link; and the agent runs inside it. Labels: vm, slow. The boot of an imported image is
 * tests/vm/images-import-vm-test.c. */
#include "kiln-test.h"

#include <sys/stat.h>

#include "common/fs.h"
#include "drivers/command.h"
#include "images/catalog.h"
#include "images/import.h"
#include "images/inspect.h"

static void
test_import_raw_into_catalog(void **state)
{
    struct kiln_image_ref deb = {0};
    struct kiln_error err = {0};
    if (kiln_catalog_resolve(NULL, "debian-12", &deb, &err) < 0)
        fail_msg("%s", err.message);
    _cleanup_free_ char *dir = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-import-debian-test", &dir, NULL), 0);
    _cleanup_free_ char *raw = kiln_path_join(dir, "user.raw");
    char *cp[] = {"qemu-img", "convert", "-q", "-O", "raw", deb.location, raw, NULL};
    assert_int_equal(kiln_command_run(cp, NULL, NULL), 0);

    _cleanup_free_ char *agent = kiln_asprintf("%s/guest-agent/kiln-agent",
                                               getenv("KILN_BUILD_DIR"));
    _cleanup_free_ char *home = kiln_path_join(dir, "home");
    struct kiln_image_ref imported = {0};
    if (kiln_image_import("from-raw", raw, agent, home, &imported, &err) < 0)
        fail_msg("%s", err.message);
    assert_string_equal(imported.kind, "qcow2");
    _cleanup_free_ char *prefix = kiln_asprintf("%s/images/from-raw/", home);
    assert_true(strncmp(imported.location, prefix, strlen(prefix)) == 0);
    char **names = NULL;
    assert_int_equal(kiln_catalog_list(home, &names, NULL), 0);
    assert_string_equal(names[0], "from-raw");
    assert_null(names[1]);
    kiln_strv_free(names);

    guestfs_h *g = NULL;
    assert_int_equal(kiln_inspect_guestfs_new(&g, NULL), 0);
    assert_int_equal(guestfs_add_drive_opts(g, imported.location, GUESTFS_ADD_DRIVE_OPTS_FORMAT,
                                            "qcow2", GUESTFS_ADD_DRIVE_OPTS_READONLY, 1, -1), 0);
    assert_int_equal(guestfs_launch(g), 0);
    assert_int_equal(kiln_inspect_mount_os(g, true, NULL, &err), 0);
    /* The wrapper replaced the image's link; the link's old target was not overwritten. */
    assert_int_equal(guestfs_is_symlink(g, "/usr/local/bin/kiln-agent"), 0);
    _cleanup_free_ char *wrapper = guestfs_cat(g, "/usr/local/bin/kiln-agent");
    assert_non_null(strstr(wrapper, "/usr/lib/kiln-agent/ld-linux-x86-64.so.2"));
    assert_int_equal(guestfs_is_file(g, "/usr/lib/kiln-agent/kiln-agent"), 1);
    assert_int_equal(guestfs_is_file(g, "/usr/lib/kiln-agent/libjansson.so.4"), 1);
    _cleanup_free_ char *unit = guestfs_cat(g, "/etc/systemd/system/kiln-agent.service");
    assert_non_null(strstr(unit, "ExecStart=/usr/local/bin/kiln-agent serve --port "
                                 "/dev/virtio-ports/org.kiln.agent.0"));
    assert_int_equal(guestfs_is_file(g, "/etc/udev/rules.d/60-kiln-agent.rules"), 1);
    _cleanup_free_ char *link = guestfs_readlink(
        g, "/etc/systemd/system/dev-virtio\\x2dports-org.kiln.agent.0.device.wants/"
           "kiln-agent.service");
    assert_non_null(link);
    assert_string_equal(link, "/etc/systemd/system/kiln-agent.service");
    /* The injected agent runs inside the guest's own root file system. */
    _cleanup_free_ char *version = guestfs_sh(g, "/usr/local/bin/kiln-agent --version");
    if (!version)
        fail_msg("kiln-agent in the image: %s", guestfs_last_error(g));
    assert_non_null(strstr(version, "kiln-agent"));
    guestfs_close(g);

    kiln_image_ref_clear(&imported);
    kiln_image_ref_clear(&deb);
    kiln_rm_rf(dir, NULL);
}

KILN_TEST_MAIN(cmocka_unit_test(test_import_raw_into_catalog))
