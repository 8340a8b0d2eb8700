/* Tests for UpdateOS (guest-agent/mod-update.c).
 *
 * The package managers here are RECORDING SHIMS: small shell scripts named apt-get, apt-mark,
 * dnf and yum, first in PATH, that append their argv (and DEBIAN_FRONTEND) to a log and exit
 * the way a real one would. They show which commands the module runs, in which order, and
 * that holds are released after a failed upgrade. One more test hands the module's real
 * upgrade command line to the real apt-get with --simulate (offline, from the local cache). */
#include "kiln-test.h"

#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "guest-agent/mod-common.h"
#include "guest-agent/module.h"
#include "guest-agent/proc.h"

static char *tmp, *logpath, *saved_path;
static json_t *outputs;
static struct kiln_error err;

/* apt-mark: "showhold" lists already-held; holding not-installed fails like apt-mark does. */
static const char *const shim_apt_mark =
    "#!/bin/sh\n"
    "echo \"apt-mark $*\" >> \"$KILN_SHIM_LOG\"\n"
    "case \"$1 $2\" in\n"
    "  'showhold ') echo already-held ;;\n"
    "  'hold not-installed') echo \"E: Unable to locate package $2\" >&2; exit 100 ;;\n"
    "esac\n"
    "exit 0\n";

/* apt-get: fails the upgrade when KILN_SHIM_FAIL is set. */
static const char *const shim_apt_get =
    "#!/bin/sh\n"
    "echo \"apt-get $* [DEBIAN_FRONTEND=$DEBIAN_FRONTEND]\" >> \"$KILN_SHIM_LOG\"\n"
    "for a in \"$@\"; do\n"
    "  if [ \"$a\" = upgrade ] && [ -n \"$KILN_SHIM_FAIL\" ]; then\n"
    "    echo 'E: dpkg was interrupted' >&2; exit 100\n"
    "  fi\n"
    "done\n"
    "exit 0\n";

static const char *const shim_rpm = "#!/bin/sh\n"
                                    "echo \"${0##*/} $*\" >> \"$KILN_SHIM_LOG\"\n"
                                    "exit 0\n";

static void
shim(const char *dir, const char *name, const char *script)
{
    _cleanup_free_ char *d = kiln_path_join(tmp, dir);
    _cleanup_free_ char *p = kiln_path_join(d, name);
    assert_int_equal(kiln_mkdir_p(d, 0755, NULL), 0);
    assert_int_equal(kiln_write_file_atomic(p, script, strlen(script), 0755, NULL), 0);
}

static void
mkdir_in_tmp(const char *name)
{
    _cleanup_free_ char *p = kiln_path_join(tmp, name);
    assert_int_equal(mkdir(p, 0755), 0);
}

static int
setup(void **state)
{
    if (kiln_mkdtemp("kiln-modupdate-", &tmp, NULL) < 0)
        return -1;
    logpath = kiln_path_join(tmp, "calls.log");
    if (kiln_write_file_atomic(logpath, "", 0, 0644, NULL) < 0)
        return -1;
    shim("apt", "apt-get", shim_apt_get);
    shim("apt", "apt-mark", shim_apt_mark);
    shim("dnf", "dnf", shim_rpm);
    shim("yum", "yum", shim_rpm);
    mkdir_in_tmp("empty");
    saved_path = kiln_strdup(getenv("PATH") ? getenv("PATH") : "");
    setenv("KILN_SHIM_LOG", logpath, 1);
    unsetenv("KILN_SHIM_FAIL");
    return 0;
}

static int
teardown(void **state)
{
    setenv("PATH", saved_path, 1);
    unsetenv("KILN_SHIM_LOG");
    unsetenv("KILN_SHIM_FAIL");
    json_decref(outputs);
    outputs = NULL;
    kiln_rm_rf(tmp, NULL);
    free(tmp);
    free(logpath);
    free(saved_path);
    tmp = logpath = saved_path = NULL;
    return 0;
}

/* Only the shims of one manager in PATH (the shims need nothing else: /bin/sh is absolute). */
static void
use_path(const char *dir)
{
    _cleanup_free_ char *d = kiln_path_join(tmp, dir);
    setenv("PATH", d, 1);
}

static int
run(const char *inputs)
{
    json_error_t je;
    _cleanup_json_ json_t *in = json_loads(inputs, JSON_DECODE_ANY, &je);
    if (!in)
        fail_msg("bad JSON in test: %s", je.text);
    struct kiln_module_ctx ctx = {.step_name = "Update", .work_dir = tmp, .timeout_seconds = 60};
    kiln_error_clear(&err);
    json_decref(outputs);
    outputs = NULL;
    return kiln_module_find("UpdateOS")->run(in, &ctx, &outputs, &err);
}

static char *
calls(void)
{
    char *data = NULL;
    size_t len;
    assert_int_equal(kiln_read_file(logpath, 1 << 20, &data, &len, NULL), 0);
    return data;
}

static bool
not_root(int r)
{
    if (geteuid() == 0)
        return false;
    assert_int_equal(r, -EPERM); /* the module refuses, loudly */
    return true;
}

#define APT_OPTS "-y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
#define NI " [DEBIAN_FRONTEND=noninteractive]"

static void
test_apt_all_with_exclude(void **state)
{
    use_path("apt");
    int r = run("{\"exclude\": [\"pkg-x\", \"already-held\", \"not-installed\"]}");
    if (not_root(r))
        return;
    assert_int_equal(r, 0);
    _cleanup_free_ char *log = calls();
    assert_string_equal(log, "apt-get update" NI "\n"
                             "apt-mark showhold\n"
                             "apt-mark hold pkg-x\n"
                             "apt-mark hold not-installed\n"
                             "apt-get " APT_OPTS " upgrade --with-new-pkgs" NI "\n"
                             "apt-mark unhold pkg-x\n");
    assert_true(json_is_object(outputs));
}

static void
test_apt_include_minus_exclude(void **state)
{
    use_path("apt");
    int r = run("{\"include\": [\"a\", \"b\", \"c\"], \"exclude\": [\"b\"]}");
    if (not_root(r))
        return;
    assert_int_equal(r, 0);
    _cleanup_free_ char *log = calls();
    assert_string_equal(log, "apt-get update" NI "\n"
                             "apt-get " APT_OPTS " install --only-upgrade a c" NI "\n");
}

/* The hold is released even when the upgrade fails, and the failure is reported. */
static void
test_apt_failure_releases_holds(void **state)
{
    use_path("apt");
    setenv("KILN_SHIM_FAIL", "1", 1);
    int r = run("{\"exclude\": [\"pkg-x\"]}");
    if (not_root(r))
        return;
    assert_int_equal(r, -KILN_E_FAILED);
    assert_non_null(strstr(err.message, "UpdateOS: apt-get " APT_OPTS " upgrade --with-new-pkgs: "
                                        "exit status 100: E: dpkg was interrupted"));
    _cleanup_free_ char *log = calls();
    assert_non_null(strstr(log, "apt-mark unhold pkg-x\n"));
}

static void
test_dnf_and_yum(void **state)
{
    use_path("dnf");
    int r = run("{\"include\": [\"kernel*\", \"openssl\"], \"exclude\": [\"openssl\", \"x\"]}");
    if (not_root(r))
        return;
    assert_int_equal(r, 0);
    assert_int_equal(run("null"), 0); /* no inputs at all: every update */
    _cleanup_free_ char *log = calls();
    assert_string_equal(log, "dnf -y --exclude=openssl --exclude=x upgrade kernel*\n"
                             "dnf -y upgrade\n");
    use_path("yum");
    assert_int_equal(run("{\"exclude\": [\"ec2-hibinit-agent\"]}"), 0);
    _cleanup_free_ char *log2 = calls();
    assert_non_null(strstr(log2, "yum -y --exclude=ec2-hibinit-agent upgrade\n"));
}

static void
test_no_package_manager(void **state)
{
    use_path("empty");
    int r = run("{}");
    if (not_root(r))
        return;
    assert_int_equal(r, -KILN_E_UNSUPPORTED);
    assert_string_equal(err.message,
                        "UpdateOS: no supported package manager (apt-get, dnf, yum) found");
    /* everything included is excluded: nothing to do, nothing run */
    use_path("apt");
    assert_int_equal(run("{\"include\": [\"a\"], \"exclude\": [\"a\"]}"), 0);
    _cleanup_free_ char *log = calls();
    assert_string_equal(log, "");
}

/* The real apt-get accepts the command line the module builds (simulated, offline). */
static void
test_real_apt_get_simulate(void **state)
{
    setenv("PATH", saved_path, 1);
    const char *manager = kiln_mod_update_os_manager();
    if (!manager || strcmp(manager, "apt-get") != 0)
        fail_msg("this test needs apt-get (a Debian or Ubuntu host); found %s",
                 manager ? manager : "none");
    char *include[] = {"bash", NULL};
    for (int variant = 0; variant < 2; variant++) {
        _cleanup_strv_free_ char **argv =
            kiln_mod_update_os_upgrade_argv("apt-get", variant ? include : NULL, NULL);
        /* insert --simulate after "apt-get" */
        size_t n = 0;
        while (argv[n])
            n++;
        argv = kiln_reallocarray(argv, n + 2, sizeof(*argv));
        memmove(argv + 2, argv + 1, n * sizeof(*argv));
        argv[1] = kiln_strdup("--simulate");
        struct kiln_proc_opts opts = {.argv = argv};
        struct kiln_proc_result res;
        struct kiln_error e = {0};
        int r = kiln_proc_run(&opts, NULL, &res, &e);
        if (r < 0)
            fail_msg("apt-get --simulate failed: %s", e.message);
        assert_null(strstr(res.err, "E: "));
        if (variant)
            assert_true(strstr(res.out, "bash") != NULL);
        kiln_proc_result_clear(&res);
    }
}

KILN_TEST_MAIN(cmocka_unit_test_setup_teardown(test_apt_all_with_exclude, setup, teardown),
               cmocka_unit_test_setup_teardown(test_apt_include_minus_exclude, setup, teardown),
               cmocka_unit_test_setup_teardown(test_apt_failure_releases_holds, setup, teardown),
               cmocka_unit_test_setup_teardown(test_dnf_and_yum, setup, teardown),
               cmocka_unit_test_setup_teardown(test_no_package_manager, setup, teardown),
               cmocka_unit_test_setup_teardown(test_real_apt_get_simulate, setup, teardown))
