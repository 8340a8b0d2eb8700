/* Tests for the libvirt driver against libvirt's in-memory test driver (test:///default): the
 * domain XML (golden files), flag and argument rejection, launch/terminate/reap bookkeeping.
 * Booting real guests is the job of the vm-labelled tests (tests/vm/). Regenerate the golden
 * files with KILN_TEST_REGENERATE=1. */
#include "kiln-test.h"

#include <libvirt/libvirt.h>
#include <sys/stat.h>

#include "common/fs.h"
#include "drivers/command.h"
#include "drivers/libvirt.h"

static void
check_golden(const char *name, const char *actual)
{
    _cleanup_free_ char *path =
        kiln_asprintf("%s/tests/data/drivers-libvirt/%s", kiln_test_source_dir(), name);
    if (getenv("KILN_TEST_REGENERATE")) {
        assert_int_equal(kiln_write_file_atomic(path, actual, strlen(actual), 0644, NULL), 0);
        return;
    }
    _cleanup_free_ char *expected = NULL;
    struct kiln_error err = {0};
    if (kiln_read_file(path, 1 << 20, &expected, NULL, &err) < 0)
        fail_msg("%s", err.message);
    if (strcmp(expected, actual) != 0)
        fail_msg("%s differs from the generated XML:\n%s", path, actual);
}

static struct kiln_libvirt_domain_spec
direct_boot_spec(void)
{
    return (struct kiln_libvirt_domain_spec){
        .domain_name = "kiln-b1-build",
        .domain_type = "qemu",
        .machine = "pc",
        .vcpus = 2,
        .memory_mib = 512,
        .build_id = "b1",
        .instance_name = "build",
        .instance_dir = "/var/lib/kiln/builds/b1/build",
        .disk_path = "/var/lib/kiln/builds/b1/build/overlay.qcow2",
        .disk_format = "qcow2",
        .disk_cache = "unsafe",
        .kernel = "/var/lib/kiln/images/tiny/current/vmlinux",
        .initrd = "/var/lib/kiln/images/tiny/current/initrd.img",
        .cmdline = "console=ttyS0,115200 quiet panic=-1",
        .agent_socket = "/var/lib/kiln/builds/b1/build/agent.sock",
        .console_log = "/var/lib/kiln/builds/b1/build.console.log",
        .seclabel = "root",
        .network = true,
    };
}

static void
test_xml_golden_direct_boot(void **state)
{
    struct kiln_libvirt_domain_spec spec = direct_boot_spec();
    _cleanup_free_ char *xml = kiln_libvirt_domain_xml(&spec);
    assert_null(strstr(xml, "loadvm"));
    check_golden("direct-boot.xml", xml);
}

static void
test_xml_golden_restore(void **state)
{
    /* A warm start: the same domain, which QEMU starts from the saved snapshot. */
    struct kiln_libvirt_domain_spec spec = direct_boot_spec();
    spec.loadvm = "kiln-warm";
    _cleanup_free_ char *xml = kiln_libvirt_domain_xml(&spec);
    struct kiln_libvirt_domain_spec cold = spec;
    cold.loadvm = NULL;
    _cleanup_free_ char *boot = kiln_libvirt_domain_xml(&cold);
    /* Devices and their order must not differ from the saved guest's domain. */
    const char *devs = strstr(xml, "<devices>"), *bdevs = strstr(boot, "<devices>");
    assert_non_null(devs);
    assert_non_null(bdevs);
    assert_int_equal(strstr(xml, "</devices>") - devs, strstr(boot, "</devices>") - bdevs);
    assert_int_equal(memcmp(devs, bdevs, (size_t)(strstr(boot, "</devices>") - bdevs)), 0);
    check_golden("restore.xml", xml);
}

static void
test_xml_golden_escaping(void **state)
{
    /* Everything that reaches the XML is escaped, whatever it holds. */
    struct kiln_libvirt_domain_spec spec = {
        .domain_name = "kiln-b1-x",
        .domain_type = "kvm",
        .firmware = "efi",
        .nvram = "/tmp/a'b\"c/uefi-vars.fd",
        .build_id = "b1",
        .instance_name = "x",
        .instance_dir = "/tmp/a'b\"c",
        .disk_path = "/tmp/<disk>&'\".qcow2",
        .disk_format = "qcow2",
        .kernel = NULL,
        .cmdline = "ignored without a kernel",
        .console_log = "/tmp/con</source><evil/>.log\x01\x1b",
        .seclabel = "none",
    };
    _cleanup_free_ char *xml = kiln_libvirt_domain_xml(&spec);
    assert_null(strstr(xml, "<evil/>"));
    assert_null(strstr(xml, "\x1b"));
    assert_null(strstr(xml, "ignored without a kernel"));
    check_golden("escaping.xml", xml);
}

static void
test_probe_sector(void **state)
{
    uint8_t s[512];
    kiln_libvirt_probe_sector(s);
    assert_int_equal(s[510], 0x55);
    assert_int_equal(s[511], 0xaa);
    assert_non_null(memmem(s, 512, KILN_LIBVIRT_PROBE_MARKER, strlen(KILN_LIBVIRT_PROBE_MARKER)));
    /* mov si, imm16 points at the message. */
    assert_int_equal(s[6], 0xbe);
    unsigned msg = (unsigned)s[7] | (unsigned)s[8] << 8;
    assert_int_equal(memcmp(s + (msg - 0x7c00), "\r\n" KILN_LIBVIRT_PROBE_MARKER, 15), 0);
}

/* A work folder with a 16 MiB qcow2 base image in it. */
struct fixture {
    char *dir;
    char *base;
    int live;
};

static struct fixture *
fixture_new(void)
{
    struct fixture *f = kiln_new(struct fixture, 1);
    assert_int_equal(kiln_mkdtemp("kiln-libvirt-test", &f->dir, NULL), 0);
    f->base = kiln_path_join(f->dir, "base.qcow2");
    char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", f->base, "16M", NULL};
    struct kiln_error err = {0};
    if (kiln_command_run(argv, NULL, &err) < 0)
        fail_msg("%s", err.message);
    return f;
}

static void
fixture_free(struct fixture *f)
{
    kiln_rm_rf(f->dir, NULL);
    free(f->dir);
    free(f->base);
    free(f);
}

static void
on_resource(void *userdata, const char *kind, const char *id, bool live)
{
    struct fixture *f = userdata;
    f->live += live ? 1 : -1;
}

static void *
open_test(struct fixture *f, const char *build_id)
{
    struct kiln_driver_config cfg = {.uri = "test:///default", .accel = "tcg", .work_dir = f->dir,
                                     .build_id = build_id, .on_resource = on_resource,
                                     .userdata = f};
    void *conn = NULL;
    struct kiln_error err = {0};
    if (kiln_libvirt_driver.open(&cfg, 0, &conn, &err) < 0)
        fail_msg("%s", err.message);
    return conn;
}

static bool
domain_exists(const char *name)
{
    virConnectPtr c = virConnectOpen("test:///default");
    assert_non_null(c);
    virDomainPtr d = virDomainLookupByName(c, name);
    if (d)
        virDomainFree(d);
    virConnectClose(c);
    return d != NULL;
}

static void
test_flags_and_arguments_rejected(void **state)
{
    struct fixture *f = fixture_new();
    const struct kiln_driver_ops *d = &kiln_libvirt_driver;
    struct kiln_error err = {0};
    void *conn = NULL;
    struct kiln_driver_config cfg = {.uri = "test:///default", .work_dir = f->dir, .build_id = "b"};
    assert_int_equal(d->open(&cfg, 1, &conn, &err), -EINVAL);
    assert_non_null(strstr(err.message, "unsupported flags"));
    cfg.accel = "fast";
    assert_int_equal(d->open(&cfg, 0, &conn, NULL), -EINVAL);
    cfg.accel = NULL;
    cfg.build_id = "../etc";
    assert_int_equal(d->open(&cfg, 0, &conn, NULL), -EINVAL);
    cfg.build_id = "b";
    cfg.uri = "nosuchdriver:///x";
    assert_true(d->open(&cfg, 0, &conn, NULL) < 0);

    conn = open_test(f, "b");
    struct kiln_image_ref img = {.kind = "qcow2", .location = f->base};
    struct kiln_instance *inst = NULL;
    assert_int_equal(d->launch(conn, &img, "x", 5, 1u << 20, &inst, NULL), -EINVAL);
    assert_int_equal(d->launch(conn, &img, "a/b", 5, KILN_LAUNCH_NO_WAIT, &inst, NULL), -EINVAL);
    assert_int_equal(d->launch(conn, &img, "", 5, KILN_LAUNCH_NO_WAIT, &inst, NULL), -EINVAL);
    struct kiln_image_ref ami = {.kind = "ami", .location = "ami-123"};
    assert_int_equal(d->launch(conn, &ami, "x", 5, KILN_LAUNCH_NO_WAIT, &inst, NULL), -EINVAL);
    struct kiln_image_ref missing = {.kind = "qcow2", .location = "/nonexistent/x.qcow2"};
    assert_int_equal(d->launch(conn, &missing, "x", 5, KILN_LAUNCH_NO_WAIT, &inst, NULL), -ENOENT);
    assert_null(inst);
    assert_int_equal(d->reap(conn, "b", 4, NULL), -EINVAL);
    assert_int_equal(d->terminate(NULL, 0, NULL), 0);
    d->close(conn);
    fixture_free(f);
}

static void
test_launch_terminate_idempotent(void **state)
{
    struct fixture *f = fixture_new();
    const struct kiln_driver_ops *d = &kiln_libvirt_driver;
    void *conn = open_test(f, "t1");
    struct kiln_image_ref img = {.kind = "qcow2", .location = f->base};
    struct kiln_instance *inst = NULL;
    struct kiln_error err = {0};
    if (d->launch(conn, &img, "build", 5, KILN_LAUNCH_NO_WAIT, &inst, &err) < 0)
        fail_msg("%s", err.message);
    assert_true(domain_exists("kiln-t1-build"));
    assert_int_equal(f->live, 2); /* the folder and the domain */

    /* The overlay is backed by the base image, not a copy of it. */
    _cleanup_free_ char *overlay = kiln_asprintf("%s/build/overlay.qcow2", f->dir);
    char *argv[] = {"qemu-img", "info", "--output=json", overlay, NULL};
    _cleanup_free_ char *info = NULL;
    assert_int_equal(kiln_command_run(argv, &info, NULL), 0);
    assert_non_null(strstr(info, f->base));

    /* A second instance of the same name is refused and leaves the first alone. */
    struct kiln_instance *dup = NULL;
    assert_int_equal(d->launch(conn, &img, "build", 5, KILN_LAUNCH_NO_WAIT, &dup, NULL), -EEXIST);
    assert_true(domain_exists("kiln-t1-build"));

    char *desc = d->describe(inst);
    assert_non_null(strstr(desc, "kiln-t1-build"));
    free(desc);

    assert_int_equal(d->terminate(inst, 0, &err), 0);
    assert_false(domain_exists("kiln-t1-build"));
    assert_int_equal(f->live, 0);
    _cleanup_free_ char *idir = kiln_path_join(f->dir, "build");
    struct stat st;
    assert_int_equal(lstat(idir, &st), -1);

    /* Terminating an instance whose domain is already gone is fine too. */
    assert_int_equal(d->launch(conn, &img, "again", 5, KILN_LAUNCH_NO_WAIT, &inst, &err), 0);
    virConnectPtr c = virConnectOpen("test:///default");
    virDomainPtr dom = virDomainLookupByName(c, "kiln-t1-again");
    assert_non_null(dom);
    assert_int_equal(virDomainDestroy(dom), 0);
    virDomainFree(dom);
    virConnectClose(c);
    assert_int_equal(d->terminate(inst, 0, &err), 0);
    assert_int_equal(f->live, 0);
    /* And reap afterwards finds nothing. */
    assert_int_equal(d->reap(conn, "t1", 0, &err), 0);
    assert_int_equal(f->live, 0);
    d->close(conn);
    fixture_free(f);
}

static void
test_reap_by_build_id(void **state)
{
    struct fixture *f = fixture_new();
    const struct kiln_driver_ops *d = &kiln_libvirt_driver;
    void *crashed = open_test(f, "crashed");
    void *other = open_test(f, "other");
    struct kiln_image_ref img = {.kind = "qcow2", .location = f->base};
    struct kiln_instance *a = NULL, *b = NULL, *o = NULL;
    assert_int_equal(d->launch(crashed, &img, "a", 5, KILN_LAUNCH_NO_WAIT, &a, NULL), 0);
    assert_int_equal(d->launch(crashed, &img, "b", 5, KILN_LAUNCH_NO_WAIT, &b, NULL), 0);
    assert_int_equal(d->launch(other, &img, "o", 5, KILN_LAUNCH_NO_WAIT, &o, NULL), 0);
    /* The "crashed" build never terminates its instances: another process reaps them. */
    void *reaper = open_test(f, "reaper");
    struct kiln_error err = {0};
    if (d->reap(reaper, "crashed", 0, &err) < 0)
        fail_msg("%s", err.message);
    assert_false(domain_exists("kiln-crashed-a"));
    assert_false(domain_exists("kiln-crashed-b"));
    assert_true(domain_exists("kiln-other-o"));
    _cleanup_free_ char *adir = kiln_path_join(f->dir, "a");
    _cleanup_free_ char *odir = kiln_path_join(f->dir, "o");
    struct stat st;
    assert_int_equal(lstat(adir, &st), -1);
    assert_int_equal(lstat(odir, &st), 0);

    /* A folder whose domain is already gone is reaped as well. */
    virConnectPtr c = virConnectOpen("test:///default");
    virDomainPtr dom = virDomainLookupByName(c, "kiln-other-o");
    virDomainDestroy(dom);
    virDomainFree(dom);
    virConnectClose(c);
    assert_int_equal(d->reap(reaper, "other", 0, &err), 0);
    assert_int_equal(lstat(odir, &st), -1);

    /* Terminating after a reap finds nothing left and succeeds. */
    assert_int_equal(d->terminate(a, 0, &err), 0);
    assert_int_equal(d->terminate(b, 0, &err), 0);
    assert_int_equal(d->terminate(o, 0, &err), 0);
    d->close(crashed);
    d->close(reaper);
    d->close(other);
    fixture_free(f);
}

KILN_TEST_MAIN(cmocka_unit_test(test_xml_golden_direct_boot),
               cmocka_unit_test(test_xml_golden_restore),
               cmocka_unit_test(test_xml_golden_escaping), cmocka_unit_test(test_probe_sector),
               cmocka_unit_test(test_flags_and_arguments_rejected),
               cmocka_unit_test(test_launch_terminate_idempotent),
               cmocka_unit_test(test_reap_by_build_id))
