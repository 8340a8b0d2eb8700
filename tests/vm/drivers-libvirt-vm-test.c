/* VM tests of the libvirt driver: real guests (the tiny image) under real libvirt, TCG unless
 * KILN_TEST_ACCEL says otherwise. At most two guests run at a time. Labels: vm. */
#include "kiln-test.h"

#include <dirent.h>
#include <fcntl.h>
#include <libvirt/libvirt.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/json.h"
#include "drivers/command.h"
#include "drivers/libvirt.h"
#include "images/catalog.h"

static const char *
uri(void)
{
    const char *u = getenv("KILN_TEST_URI");
    return u && *u ? u : "qemu:///system";
}

struct vm {
    char *dir;
    struct kiln_image_ref tiny;
    void *conn;
    int live;
};

static void
on_resource(void *userdata, const char *kind, const char *id, bool live)
{
    struct vm *v = userdata;
    v->live += live ? 1 : -1;
}

static struct vm *
vm_new_with(const char *build_id, const json_t *settings)
{
    struct vm *v = kiln_new(struct vm, 1);
    struct kiln_error err = {0};
    if (kiln_catalog_resolve(NULL, "tiny", &v->tiny, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(kiln_mkdtemp("kiln-vm-test", &v->dir, NULL), 0);
    const char *accel = getenv("KILN_TEST_ACCEL");
    struct kiln_driver_config cfg = {.uri = uri(), .accel = accel && *accel ? accel : "tcg",
                                     .vcpus = 1, .memory_mib = 256, .work_dir = v->dir,
                                     .build_id = build_id, .settings = settings,
                                     .on_resource = on_resource, .userdata = v};
    if (kiln_libvirt_driver.open(&cfg, 0, &v->conn, &err) < 0)
        fail_msg("%s", err.message);
    return v;
}

static struct vm *
vm_new(const char *build_id)
{
    return vm_new_with(build_id, NULL);
}

static void
vm_free(struct vm *v)
{
    kiln_libvirt_driver.reap(v->conn, "x", 0, NULL);
    kiln_libvirt_driver.close(v->conn);
    kiln_image_ref_clear(&v->tiny);
    kiln_rm_rf(v->dir, NULL);
    free(v->dir);
    free(v);
}

static bool
domain_exists(const char *name)
{
    virConnectPtr c = virConnectOpen(uri());
    assert_non_null(c);
    virDomainPtr d = virDomainLookupByName(c, name);
    if (d)
        virDomainFree(d);
    virConnectClose(c);
    return d != NULL;
}

/* Stop returns once QEMU released the disk; libvirt then ends the transient domain by itself. */
static bool
domain_gone_within(const char *name, int seconds)
{
    for (int i = 0; i < seconds * 10; i++) {
        if (!domain_exists(name))
            return true;
        usleep(100 * 1000);
    }
    return false;
}

static struct kiln_instance *
launch(struct vm *v, const struct kiln_image_ref *img, const char *name, unsigned flags)
{
    struct kiln_instance *inst = NULL;
    struct kiln_error err = {0};
    if (kiln_libvirt_driver.launch(v->conn, img, name, 120, flags, &inst, &err) < 0)
        fail_msg("launch %s: %s", name, err.message);
    return inst;
}

static char *
doc(const char *name)
{
    return kiln_asprintf("%s/tests/vm/data/%s", kiln_test_source_dir(), name);
}

struct events {
    int events;
    struct kiln_buf console;
};

static void
on_event(void *userdata, const json_t *event)
{
    struct events *e = userdata;
    e->events++;
}

static void
on_console(void *userdata, const char *stream, const char *data, size_t len)
{
    struct events *e = userdata;
    kiln_buf_append(&e->console, data, len);
}

/* Run one document; returns the run status. */
static enum kiln_run_status
run_doc(struct vm *v, struct kiln_instance *inst, const char *name, struct events *ev)
{
    _cleanup_free_ char *path = doc(name);
    char *docs[] = {path, NULL};
    struct kiln_job job = {.documents = docs, .timeout_seconds = -1};
    struct kiln_engine_events cb = {.event = on_event, .console = on_console, .userdata = ev};
    _cleanup_free_ char *logs = kiln_asprintf("%s/logs-%s", v->dir, name);
    struct kiln_job_result res = {0};
    struct kiln_error err = {0};
    if (kiln_libvirt_driver.run(inst, &job, logs, &cb, 0, &res, &err) < 0)
        fail_msg("run %s: %s", name, err.message);
    enum kiln_run_status st = res.status;
    if (st != KILN_RUN_SUCCESS)
        fprintf(stderr, "run %s: status %d: %s\n", name, st, res.failure ? res.failure : "");
    assert_non_null(res.log_dir);
    kiln_job_result_clear(&res);
    return st;
}

static void
test_boot_run_stop_snapshot(void **state)
{
    struct vm *v = vm_new("vmtest1");
    double t0 = (double)time(NULL);
    struct kiln_instance *inst = launch(v, &v->tiny, "build", 0);
    fprintf(stderr, "tiny: agent ready after ~%.0f s\n", (double)time(NULL) - t0);
    assert_true(domain_exists("kiln-vmtest1-build"));

    /* A real job over the agent channel: events and console output come back. */
    struct events ev = {0};
    kiln_buf_init(&ev.console);
    assert_int_equal(run_doc(v, inst, "hello.yml", &ev), KILN_RUN_SUCCESS);
    assert_true(ev.events > 0);
    assert_non_null(strstr(ev.console.data, "hello from kiln-tiny"));
    kiln_buf_clear(&ev.console);

    /* While the guest runs, QEMU's image locks refuse a snapshot. */
    struct kiln_error err = {0};
    _cleanup_free_ char *early = kiln_path_join(v->dir, "early.qcow2");
    struct kiln_snapshot_options eo = {.dest = early};
    struct kiln_image_ref none = {0};
    assert_int_equal(kiln_libvirt_driver.snapshot(inst, &eo, 0, &none, &err), -EBUSY);
    assert_non_null(strstr(err.message, "still running"));
    assert_int_equal(access(early, F_OK), -1);
    kiln_error_clear(&err);

    /* Orderly power-off, then the overlay becomes a standalone compressed image. */
    if (kiln_libvirt_driver.stop(inst, 60, 0, &err) < 0)
        fail_msg("%s", err.message);
    _cleanup_free_ char *out = kiln_path_join(v->dir, "layer.qcow2");
    struct kiln_snapshot_options so = {.dest = out, .compress = true};
    struct kiln_image_ref snap = {0};
    if (kiln_libvirt_driver.snapshot(inst, &so, 0, &snap, &err) < 0)
        fail_msg("%s", err.message);
    assert_true(domain_gone_within("kiln-vmtest1-build", 10));
    char *argv[] = {"qemu-img", "info", "--output=json", out, NULL};
    _cleanup_free_ char *info = NULL;
    assert_int_equal(kiln_command_run(argv, &info, NULL), 0);
    assert_null(strstr(info, "backing-filename")); /* flattened */
    assert_int_equal(kiln_libvirt_driver.terminate(inst, 0, &err), 0);

    /* What the build wrote is in the new image. */
    struct kiln_instance *check = launch(v, &snap, "check", 0);
    kiln_buf_init(&ev.console);
    assert_int_equal(run_doc(v, check, "check-marker.yml", &ev), KILN_RUN_SUCCESS);
    kiln_buf_clear(&ev.console);
    assert_int_equal(kiln_libvirt_driver.terminate(check, 0, &err), 0);
    assert_int_equal(v->live, 0);
    kiln_image_ref_clear(&snap);
    vm_free(v);
}

static void
test_bad_init_fails_with_console(void **state)
{
    struct vm *v = vm_new("vmtest2");
    struct kiln_image_ref bad = {0};
    kiln_image_ref_copy(&bad, &v->tiny);
    char *cmd = kiln_asprintf("%s kiln.init=/bin/false", bad.cmdline);
    free(bad.cmdline);
    bad.cmdline = cmd;
    struct kiln_instance *inst = NULL;
    struct kiln_error err = {0};
    time_t t0 = time(NULL);
    assert_true(kiln_libvirt_driver.launch(v->conn, &bad, "bad", 120, 0, &inst, &err) < 0);
    assert_null(inst);
    fprintf(stderr, "%s\n", err.message);
    /* It fails as soon as the kernel panics, not at the timeout, and says why. */
    assert_true(time(NULL) - t0 < 100);
    assert_non_null(strstr(err.message, "never reached the agent"));
    assert_non_null(strstr(err.message, "Kernel panic"));
    assert_false(domain_exists("kiln-vmtest2-bad"));
    _cleanup_free_ char *idir = kiln_path_join(v->dir, "bad");
    struct stat st;
    assert_int_equal(lstat(idir, &st), -1);
    assert_int_equal(v->live, 0);
    kiln_image_ref_clear(&bad);
    vm_free(v);
}

static void
test_terminate_leaves_nothing(void **state)
{
    struct vm *v = vm_new("vmtest3");
    struct kiln_instance *inst = launch(v, &v->tiny, "t", 0);
    _cleanup_free_ char *idir = kiln_path_join(v->dir, "t");
    _cleanup_free_ char *sock = kiln_path_join(idir, "agent.sock");
    struct stat st;
    assert_int_equal(stat(sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    struct kiln_error err = {0};
    assert_int_equal(kiln_libvirt_driver.terminate(inst, 0, &err), 0);
    assert_false(domain_exists("kiln-vmtest3-t"));
    assert_int_equal(lstat(idir, &st), -1);
    assert_int_equal(lstat(sock, &st), -1);
    assert_int_equal(v->live, 0);
    /* The console log stays, as the build's log. */
    _cleanup_free_ char *console = kiln_path_join(v->dir, "t.console.log");
    assert_int_equal(stat(console, &st), 0);
    vm_free(v);
}

static void
test_two_instances_at_once(void **state)
{
    struct vm *v = vm_new("vmtest4");
    struct kiln_instance *a = launch(v, &v->tiny, "a", KILN_LAUNCH_NO_WAIT);
    struct kiln_instance *b = launch(v, &v->tiny, "b", 0);
    assert_true(domain_exists("kiln-vmtest4-a"));
    assert_true(domain_exists("kiln-vmtest4-b"));
    struct events ev = {0};
    kiln_buf_init(&ev.console);
    assert_int_equal(run_doc(v, a, "hello.yml", &ev), KILN_RUN_SUCCESS);
    assert_int_equal(run_doc(v, b, "hello.yml", &ev), KILN_RUN_SUCCESS);
    kiln_buf_clear(&ev.console);
    struct kiln_error err = {0};
    assert_int_equal(kiln_libvirt_driver.terminate(a, 0, &err), 0);
    assert_int_equal(kiln_libvirt_driver.terminate(b, 0, &err), 0);
    assert_int_equal(v->live, 0);
    vm_free(v);
}

static void
test_reboot_and_resume(void **state)
{
    struct vm *v = vm_new("vmtest5");
    struct kiln_instance *inst = launch(v, &v->tiny, "r", 0);
    struct events ev = {0};
    kiln_buf_init(&ev.console);
    assert_int_equal(run_doc(v, inst, "reboot.yml", &ev), KILN_RUN_SUCCESS);
    kiln_buf_clear(&ev.console);
    struct kiln_error err = {0};
    assert_int_equal(kiln_libvirt_driver.terminate(inst, 0, &err), 0);
    vm_free(v);
}

static void
test_reap_after_crash(void **state)
{
    struct vm *crashed = vm_new("vmtest6");
    struct kiln_instance *inst = launch(crashed, &crashed->tiny, "lost", KILN_LAUNCH_NO_WAIT);
    assert_true(domain_exists("kiln-vmtest6-lost"));
    /* Another process (a new kiln run) reaps the build id. */
    struct vm *reaper = vm_new("reaper");
    free(reaper->dir);
    reaper->dir = kiln_strdup(crashed->dir);
    kiln_libvirt_driver.close(reaper->conn);
    struct kiln_driver_config cfg = {.uri = uri(), .accel = "tcg", .work_dir = crashed->dir,
                                     .build_id = "reaper"};
    struct kiln_error err = {0};
    assert_int_equal(kiln_libvirt_driver.open(&cfg, 0, &reaper->conn, &err), 0);
    if (kiln_libvirt_driver.reap(reaper->conn, "vmtest6", 0, &err) < 0)
        fail_msg("%s", err.message);
    assert_false(domain_exists("kiln-vmtest6-lost"));
    _cleanup_free_ char *idir = kiln_path_join(crashed->dir, "lost");
    struct stat st;
    assert_int_equal(lstat(idir, &st), -1);
    assert_int_equal(kiln_libvirt_driver.terminate(inst, 0, &err), 0);
    kiln_libvirt_driver.close(reaper->conn);
    kiln_image_ref_clear(&reaper->tiny);
    free(reaper->dir);
    free(reaper);
    vm_free(crashed);
}

static void
test_accel_probe(void **state)
{
    /* The probe guest really boots and prints its marker (under TCG, which always works)... */
    struct vm *v = vm_new("vmtest7");
    assert_true(kiln_libvirt_probe_boots(v->conn, "qemu", 60));
    vm_free(v);

    /* ... and accel auto decides by it, once: the result is cached in the Kiln home. */
    _cleanup_free_ char *home = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-probe-home", &home, NULL), 0);
    setenv("KILN_HOME", home, 1);
    struct kiln_driver_config cfg = {.uri = uri(), .accel = "auto", .work_dir = home,
                                     .build_id = "probe"};
    void *conn = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_libvirt_driver.open(&cfg, 0, &conn, &err), 0);
    kiln_libvirt_driver.close(conn);
    _cleanup_free_ char *cache_dir = kiln_path_join(home, "cache");
    _cleanup_free_ char *cmd = kiln_asprintf("cat %s/accel-*", cache_dir);
    char *argv[] = {"sh", "-c", cmd, NULL};
    _cleanup_free_ char *result = NULL;
    assert_int_equal(kiln_command_run(argv, &result, NULL), 0);
    fprintf(stderr, "accelerator chosen by the probe: %s\n", result);
    assert_true(kiln_streq(result, "kvm") || kiln_streq(result, "qemu"));
    time_t t0 = time(NULL);
    assert_int_equal(kiln_libvirt_driver.open(&cfg, 0, &conn, &err), 0);
    assert_true(time(NULL) - t0 < 3); /* cached: no second probe */
    kiln_libvirt_driver.close(conn);
    unsetenv("KILN_HOME");
    kiln_rm_rf(home, NULL);
}


/* ---- warm start ---- */

/* Files in dir ending in ext, each printed; *last gets the last one's name when given. */
static int
files_ending(const char *dir, const char *ext, char **last)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name), x = strlen(ext);
        if (e->d_name[0] != '.' && l > x && kiln_streq(e->d_name + l - x, ext)) {
            fprintf(stderr, "warm state: %s\n", e->d_name);
            n++;
            if (last) {
                free(*last);
                *last = kiln_strdup(e->d_name);
            }
        }
    }
    if (d)
        closedir(d);
    return n;
}

static bool
restored(struct vm *v, const char *name)
{
    _cleanup_free_ char *p = kiln_asprintf("%s/%s.console.log", v->dir, name);
    _cleanup_free_ char *text = NULL;
    assert_int_equal(kiln_read_file(p, 64u << 20, &text, NULL, NULL), 0);
    return strncmp(text, "kiln: restored from the saved state ", 36) == 0;
}

/* The value after "kiln-WHAT " in a job's console output. */
static char *
reported(const struct kiln_buf *console, const char *what)
{
    _cleanup_free_ char *tag = kiln_asprintf("kiln-%s ", what);
    const char *p = strstr(console->data, tag);
    if (!p)
        fail_msg("no '%s' in: %s", tag, console->data);
    p += strlen(tag);
    return kiln_strndup(p, strcspn(p, "\r\n"));
}

/* Launch NAME with KILN_LAUNCH_WARM, run warm-check.yml in it, terminate it. Checks that the
 * guest's clock is the host's (a restored guest wakes with the clock of its saving) and that
 * the VM generation ID device is bound; returns the guest's random UUID. */
static char *
warm_round(struct vm *v, const struct kiln_image_ref *img, const char *name, bool *was_restored)
{
    struct kiln_instance *inst = launch(v, img, name, KILN_LAUNCH_WARM);
    *was_restored = restored(v, name);
    struct events ev = {0};
    kiln_buf_init(&ev.console);
    assert_int_equal(run_doc(v, inst, "warm-check.yml", &ev), KILN_RUN_SUCCESS);
    _cleanup_free_ char *clock = reported(&ev.console, "clock");
    _cleanup_free_ char *genid = reported(&ev.console, "vmgenid");
    long long skew = strtoll(clock, NULL, 10) - (long long)time(NULL);
    fprintf(stderr, "%s: %s, guest clock - host clock = %lld s, vmgenid devices %s\n", name,
            *was_restored ? "restored" : "booted", skew, genid);
    assert_true(skew >= -3 && skew <= 3);
    assert_string_equal(genid, "1");
    char *uuid = reported(&ev.console, "uuid");
    kiln_buf_clear(&ev.console);
    struct kiln_error err = {0};
    assert_int_equal(kiln_libvirt_driver.terminate(inst, 0, &err), 0);
    return uuid;
}

static void
test_warm_start(void **state)
{
    _cleanup_free_ char *warm = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-warm-test", &warm, NULL), 0);
    _cleanup_json_ json_t *settings = json_pack("{s:s}", "warmDir", warm);
    struct vm *v = vm_new_with("vmwarm", settings);
    /* A parent of the test's own, so that it can be changed at the end. */
    struct kiln_image_ref img = {0};
    kiln_image_ref_copy(&img, &v->tiny);
    free(img.location);
    img.location = kiln_path_join(v->dir, "parent.qcow2");
    assert_int_equal(kiln_copy_file(v->tiny.location, img.location, 0644, NULL), 0);

    /* The first warm launch boots the guest, saves it once ready, and restores from that. */
    bool r1, r2, r3, r4, r5;
    _cleanup_free_ char *u1 = warm_round(v, &img, "w1", &r1);
    assert_true(r1);
    _cleanup_free_ char *key1 = NULL;
    assert_int_equal(files_ending(warm, ".qcow2", &key1), 1);
    assert_int_equal(files_ending(warm, ".json", NULL), 1);
    _cleanup_free_ char *meta_path = kiln_asprintf("%s/%.64s.json", warm, key1);
    _cleanup_json_ json_t *meta = json_load_file(meta_path, 0, NULL);
    assert_non_null(meta);
    assert_true(json_integer_value(json_object_get(meta, "state-bytes")) > (1 << 20));
    json_int_t created = json_integer_value(json_object_get(meta, "created"));
    assert_true(created > 0);

    /* Later launches restore it: with the host's clock though the saved one is older, and a
     * reseeded RNG (each restored guest draws other random numbers). */
    while (time(NULL) < created + 8)
        sleep(1);
    _cleanup_free_ char *u2 = warm_round(v, &img, "w2", &r2);
    assert_true(r2);
    assert_string_not_equal(u1, u2);

    /* A saved state that does not restore is removed, and the guest booted instead. */
    _cleanup_free_ char *state_path = kiln_path_join(warm, key1);
    char *del[] = {"qemu-img", "snapshot", "-d", "kiln-warm", state_path, NULL};
    assert_int_equal(kiln_command_run(del, NULL, NULL), 0);
    _cleanup_free_ char *u3 = warm_round(v, &img, "w3", &r3);
    assert_false(r3);
    assert_int_equal(files_ending(warm, ".qcow2", NULL), 0);

    /* ... and made again by the next launch. */
    _cleanup_free_ char *u4 = warm_round(v, &img, "w4", &r4);
    assert_true(r4);
    assert_int_equal(files_ending(warm, ".qcow2", NULL), 1);

    /* A changed parent gets a state of its own; the old one is pruned. */
    assert_int_equal(utimensat(AT_FDCWD, img.location, NULL, 0), 0);
    _cleanup_free_ char *u5 = warm_round(v, &img, "w5", &r5);
    assert_true(r5);
    _cleanup_free_ char *key5 = NULL;
    assert_int_equal(files_ending(warm, ".qcow2", &key5), 1);
    assert_int_equal(files_ending(warm, ".json", NULL), 1);
    assert_string_not_equal(key1, key5);

    assert_int_equal(v->live, 0);
    for (int i = 1; i <= 5; i++) {
        _cleanup_free_ char *dom = kiln_asprintf("kiln-vmwarm-w%d", i);
        assert_false(domain_exists(dom));
    }
    kiln_image_ref_clear(&img);
    vm_free(v);
    kiln_rm_rf(warm, NULL);
}

static void
test_warm_start_off(void **state)
{
    /* libvirt: {warmStart: false}: KILN_LAUNCH_WARM boots, and nothing is saved. */
    _cleanup_free_ char *warm = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-warm-off", &warm, NULL), 0);
    _cleanup_json_ json_t *settings =
        json_pack("{s:s, s:{s:b}}", "warmDir", warm, "libvirt", "warmStart", 0);
    struct vm *v = vm_new_with("vmwarmoff", settings);
    bool r;
    _cleanup_free_ char *u = warm_round(v, &v->tiny, "cold", &r);
    assert_false(r);
    assert_int_equal(files_ending(warm, "", NULL), 0);
    vm_free(v);
    kiln_rm_rf(warm, NULL);
}

KILN_TEST_MAIN(cmocka_unit_test(test_boot_run_stop_snapshot),
               cmocka_unit_test(test_warm_start), cmocka_unit_test(test_warm_start_off),
               cmocka_unit_test(test_bad_init_fails_with_console),
               cmocka_unit_test(test_terminate_leaves_nothing),
               cmocka_unit_test(test_two_instances_at_once),
               cmocka_unit_test(test_reboot_and_resume), cmocka_unit_test(test_reap_after_crash),
               cmocka_unit_test(test_accel_probe))
