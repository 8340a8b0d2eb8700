/* VM tests of the debian-12 base image (images/debian-12/build.sh) and of package inspection
 * (images/inspect.c), read offline with libguestfs under TCG: the disk layout the image promises
 * (GPT with BIOS boot, EFI system and ext4 root partitions, fstab by the file systems' real UUIDs,
 * GRUB for BIOS and UEFI on the serial console, the agent and its service, openssh-server without
 * host keys) and its package list. Labels: vm, slow (needs the image: minutes to build). Its
 * boots through GRUB and direct kernel boot are images/debian-12/boot-test (tests/cmake/debian.cmake). */
#include "kiln-test.h"

#include "common/fs.h"
#include "common/json.h"
#include "images/catalog.h"
#include "images/inspect.h"

static struct kiln_image_ref image;
static guestfs_h *g;

static void
open_image(void)
{
    struct kiln_error err = {0};
    if (kiln_catalog_resolve(NULL, "debian-12", &image, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(kiln_inspect_guestfs_new(&g, &err), 0);
    assert_int_equal(guestfs_add_drive_opts(g, image.location, GUESTFS_ADD_DRIVE_OPTS_FORMAT,
                                            image.kind, GUESTFS_ADD_DRIVE_OPTS_READONLY, 1, -1),
                     0);
    if (guestfs_launch(g) < 0)
        fail_msg("launch: %s", guestfs_last_error(g));
}

static void
close_image(void)
{
    guestfs_close(g);
    g = NULL;
    kiln_image_ref_clear(&image);
}

static char *
cat(const char *path)
{
    char *s = guestfs_cat(g, path);
    if (!s)
        fail_msg("%s: %s", path, guestfs_last_error(g));
    return s;
}

static void
assert_exists(const char *path)
{
    if (guestfs_exists(g, path) != 1)
        fail_msg("%s is missing from the image", path);
}

static void
test_debian_disk_layout(void **state)
{
    open_image();
    /* GPT: BIOS boot, EFI system partition (FAT), root (ext4). */
    _cleanup_free_ char *ptype = guestfs_part_get_parttype(g, "/dev/sda");
    assert_string_equal(ptype, "gpt");
    struct guestfs_partition_list *parts = guestfs_part_list(g, "/dev/sda");
    assert_non_null(parts);
    assert_int_equal(parts->len, 3);
    guestfs_free_partition_list(parts);
    _cleanup_free_ char *t1 = guestfs_part_get_gpt_type(g, "/dev/sda", 1);
    _cleanup_free_ char *t2 = guestfs_part_get_gpt_type(g, "/dev/sda", 2);
    assert_string_equal(t1, "21686148-6449-6E6F-744E-656564454649");
    assert_string_equal(t2, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    _cleanup_free_ char *fs2 = guestfs_vfs_type(g, "/dev/sda2");
    _cleanup_free_ char *fs3 = guestfs_vfs_type(g, "/dev/sda3");
    assert_string_equal(fs2, "vfat");
    assert_string_equal(fs3, "ext4");
    _cleanup_free_ char *esp_uuid = guestfs_vfs_uuid(g, "/dev/sda2");
    _cleanup_free_ char *root_uuid = guestfs_vfs_uuid(g, "/dev/sda3");
    assert_non_null(esp_uuid);
    assert_non_null(root_uuid);

    /* The command line of direct kernel boot names the root by its real UUID. */
    _cleanup_free_ char *root_arg = kiln_asprintf("root=UUID=%s ", root_uuid);
    assert_non_null(image.kernel);
    assert_non_null(image.initrd);
    assert_non_null(strstr(image.cmdline, root_arg));
    assert_non_null(strstr(image.cmdline, "console=ttyS0"));

    assert_int_equal(kiln_inspect_mount_os(g, true, NULL, NULL), 0);
    /* fstab by UUID, matching the file systems. */
    _cleanup_free_ char *fstab = cat("/etc/fstab");
    _cleanup_free_ char *root_line = kiln_asprintf("UUID=%s ", root_uuid);
    _cleanup_free_ char *esp_line = kiln_asprintf("UUID=%s ", esp_uuid);
    assert_non_null(strstr(fstab, root_line));
    assert_non_null(strstr(fstab, esp_line));
    assert_null(strstr(fstab, "LABEL="));
    /* Mounting by the guest's fstab put the ESP at /boot/efi: GRUB for UEFI (removable path)
     * and for BIOS, both on the serial console. */
    assert_exists("/boot/efi/EFI/BOOT/BOOTX64.EFI");
    assert_exists("/boot/grub/i386-pc/normal.mod");
    assert_exists("/boot/grub/x86_64-efi/normal.mod");
    _cleanup_free_ char *grubcfg = cat("/boot/grub/grub.cfg");
    assert_non_null(strstr(grubcfg, "console=ttyS0"));
    assert_non_null(strstr(grubcfg, root_uuid));
    /* The stock Debian cloud kernel. */
    _cleanup_strv_free_ char **kernels = guestfs_glob_expand(g, "/boot/vmlinuz-*-cloud-amd64");
    assert_non_null(kernels);
    assert_non_null(kernels[0]);

    /* The agent: its documented path, its service, and every shared library it needs. */
    _cleanup_free_ char *agent = guestfs_realpath(g, "/usr/local/bin/kiln-agent");
    assert_non_null(agent);
    assert_int_equal(guestfs_is_file(g, agent), 1);
    _cleanup_free_ char *unit = cat("/etc/systemd/system/kiln-agent.service");
    assert_non_null(strstr(unit, "DefaultDependencies=no"));
    assert_non_null(strstr(unit, "Restart="));
    /* It serves the org.kiln.agent.0 port: on its ExecStart line, or in the program it runs. */
    const char *exec = strstr(unit, "\nExecStart=");
    assert_non_null(exec);
    exec += strlen("\nExecStart=");
    _cleanup_free_ char *prog = kiln_strndup(exec, strcspn(exec, " \n"));
    if (!strstr(exec, "org.kiln.agent.0")) {
        _cleanup_free_ char *script = cat(prog);
        assert_non_null(strstr(script, "org.kiln.agent.0"));
        assert_non_null(strstr(script, "kiln-agent serve"));
    }
    _cleanup_free_ char *ldd = guestfs_sh(g, "ldd /usr/local/bin/kiln-agent");
    if (!ldd)
        fail_msg("ldd in the image: %s", guestfs_last_error(g));
    assert_null(strstr(ldd, "not found"));
    assert_non_null(strstr(ldd, "libjansson"));

    /* SSH: enabled, without host keys (made at first boot); a getty on the serial console. */
    assert_exists("/etc/systemd/system/multi-user.target.wants/ssh.service");
    assert_exists("/etc/systemd/system/ssh.service.wants/kiln-ssh-keygen.service");
    _cleanup_strv_free_ char **keys = guestfs_glob_expand(g, "/etc/ssh/ssh_host_*");
    assert_non_null(keys);
    assert_null(keys[0]);
    assert_exists("/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service");
    close_image();
}

static const json_t *
find_pkg(const json_t *pkgs, const char *name)
{
    size_t i;
    json_t *p;
    json_array_foreach(pkgs, i, p)
        if (kiln_streq(kiln_json_get_str(p, "name"), name))
            return p;
    return NULL;
}

static void
test_debian_packages(void **state)
{
    struct kiln_error err = {0};
    struct kiln_image_ref ref = {0};
    if (kiln_catalog_resolve(NULL, "debian-12", &ref, &err) < 0)
        fail_msg("%s", err.message);
    _cleanup_json_ json_t *pkgs = NULL;
    if (kiln_inspect_packages(ref.location, NULL, &pkgs, &err) < 0)
        fail_msg("%s", err.message);
    assert_true(json_is_array(pkgs));
    assert_true(json_array_size(pkgs) > 100);
    const char *want[] = {"linux-image-cloud-amd64", "systemd-sysv", "udev", "openssh-server",
                          "ca-certificates", "bash", "sudo", "grub-pc-bin",
                          "grub-efi-amd64-bin", "libjansson4", "libyaml-0-2", "libcurl4",
                          "libssl3"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const json_t *p = find_pkg(pkgs, want[i]);
        if (!p)
            fail_msg("package %s is not listed", want[i]);
        const char *version = kiln_json_get_str(p, "version");
        const char *arch = kiln_json_get_str(p, "arch");
        assert_non_null(version);
        assert_true(strlen(version) > 0);
        assert_true(kiln_streq(arch, "amd64") || kiln_streq(arch, "all"));
        assert_non_null(kiln_json_get_str(p, "release"));
    }
    /* Sorted by name; not a package that is absent. */
    for (size_t i = 1; i < json_array_size(pkgs); i++)
        assert_true(strcmp(kiln_json_get_str(json_array_get(pkgs, i - 1), "name"),
                           kiln_json_get_str(json_array_get(pkgs, i), "name")) <= 0);
    assert_null(find_pkg(pkgs, "linux-image-amd64"));
    kiln_image_ref_clear(&ref);
}

KILN_TEST_MAIN(cmocka_unit_test(test_debian_disk_layout), cmocka_unit_test(test_debian_packages))
