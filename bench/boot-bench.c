/* kiln-bench-boot: one boot of a catalog image through the libvirt driver, timed.
 *   kiln-bench-boot IMAGE agent   seconds until the agent's hello (what a build waits for)
 *   kiln-bench-boot IMAGE bare    seconds until the login prompt on the serial console, with the
 *                                 agent kept from starting (kiln.agent=0 for tiny,
 *                                 systemd.mask=kiln-agent.service for systemd images)
 *   kiln-bench-boot IMAGE marker  seconds until "kiln: agent ready" on the console (the agent's
 *                                 service starting; for diagnosis)
 * Both start the clock before the overlay and the domain are created. Prints the seconds.
 * Environment: KILN_BENCH_URI (default qemu:///system), KILN_BENCH_ACCEL (default tcg). */
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "common/fs.h"
#include "drivers/libvirt.h"
#include "images/catalog.h"

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool
console_has(const char *path, const char *needle)
{
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    if (kiln_read_file(path, 64u << 20, &data, &len, NULL) < 0)
        return false;
    return memmem(data, len, needle, strlen(needle)) != NULL;
}

int
main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[2], "agent") != 0 && strcmp(argv[2], "bare") != 0 &&
                      strcmp(argv[2], "marker") != 0)) {
        fprintf(stderr, "usage: kiln-bench-boot IMAGE agent|bare|marker\n");
        return 2;
    }
    bool bare = strcmp(argv[2], "bare") == 0;
    bool marker = strcmp(argv[2], "marker") == 0;
    const char *needle = bare ? "login:" : "kiln: agent ready";
    struct kiln_error err = {0};
    struct kiln_image_ref img = {0};
    if (kiln_catalog_resolve(NULL, argv[1], &img, &err) < 0) {
        fprintf(stderr, "kiln-bench-boot: %s\n", err.message);
        return 1;
    }
    if (bare) {
        char *cmd = kiln_asprintf("%s kiln.agent=0 systemd.mask=kiln-agent.service",
                                  img.cmdline ? img.cmdline : "");
        free(img.cmdline);
        img.cmdline = cmd;
    }
    _cleanup_free_ char *dir = NULL;
    if (kiln_mkdtemp("kiln-bench-boot", &dir, &err) < 0) {
        fprintf(stderr, "kiln-bench-boot: %s\n", err.message);
        return 1;
    }
    const char *uri = getenv("KILN_BENCH_URI");
    const char *accel = getenv("KILN_BENCH_ACCEL");
    _cleanup_free_ char *build_id = kiln_asprintf("bench%ld", (long)getpid());
    struct kiln_driver_config cfg = {.uri = uri, .accel = accel ? accel : "tcg", .vcpus = 1,
                                     .memory_mib = 1024, .work_dir = dir, .build_id = build_id};
    void *conn = NULL;
    const struct kiln_driver_ops *d = &kiln_libvirt_driver;
    int status = 1;
    if (d->open(&cfg, 0, &conn, &err) < 0) {
        fprintf(stderr, "kiln-bench-boot: %s\n", err.message);
        goto out;
    }
    struct kiln_instance *inst = NULL;
    double t0 = now();
    if (d->launch(conn, &img, "boot", 300, bare || marker ? KILN_LAUNCH_NO_WAIT : 0, &inst,
                  &err) < 0) {
        fprintf(stderr, "kiln-bench-boot: %s\n", err.message);
        goto out;
    }
    if (bare || marker) {
        _cleanup_free_ char *console = kiln_path_join(dir, "boot.console.log");
        while (!console_has(console, needle)) {
            if (now() - t0 > 300) {
                fprintf(stderr, "kiln-bench-boot: no \"%s\" after 300 s\n", needle);
                d->terminate(inst, 0, NULL);
                goto out;
            }
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    double t = now() - t0;
    printf("%.2f\n", t);
    status = 0;
    d->terminate(inst, 0, NULL);
out:
    d->close(conn);
    kiln_rm_rf(dir, NULL);
    kiln_image_ref_clear(&img);
    return status;
}
