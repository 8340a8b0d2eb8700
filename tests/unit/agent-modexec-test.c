/* Tests for guest-agent/proc.c and the ExecuteBash / ExecuteBinary modules: real processes,
 * real timeouts and cancellation. */
#include "kiln-test.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "guest-agent/mod-common.h"
#include "guest-agent/module.h"
#include "guest-agent/proc.h"

struct console {
    struct kiln_buf out, err;
    int calls;
};

static void
console_fn(void *userdata, const char *stream, const char *data, size_t len)
{
    struct console *c = userdata;
    kiln_buf_append(strcmp(stream, "stdout") == 0 ? &c->out : &c->err, data, len);
    c->calls++;
}

static void
console_clear(struct console *c)
{
    kiln_buf_clear(&c->out);
    kiln_buf_clear(&c->err);
}

static long long
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A process is gone when /proc has no entry, or only a zombie waiting for init. */
static bool
process_gone(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

static pid_t
read_pid(const char *path)
{
    _cleanup_free_ char *data = NULL;
    size_t len;
    for (int i = 0; i < 50; i++) {
        if (kiln_read_file(path, 64, &data, &len, NULL) == 0 && len > 0)
            return (pid_t)strtol(data, NULL, 10);
        usleep(20000);
    }
    fail_msg("no pid in %s", path);
    return -1;
}

static void
test_proc_capture_and_stream(void **state)
{
    struct console c = {0};
    struct kiln_module_ctx ctx = {
        .timeout_seconds = 30, .console = console_fn, .console_userdata = &c};
    char *argv[] = {"sh", "-c", "echo out1; echo err1 >&2; echo out2", NULL};
    struct kiln_proc_opts opts = {.argv = argv};
    struct kiln_proc_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_proc_run(&opts, &ctx, &res, &err), 0);
    assert_int_equal(res.exit_code, 0);
    assert_string_equal(res.out, "out1\nout2\n");
    assert_string_equal(res.err, "err1\n");
    assert_string_equal(c.out.data, "out1\nout2\n");
    assert_string_equal(c.err.data, "err1\n");
    kiln_proc_result_clear(&res);
    console_clear(&c);
}

static void
test_proc_exit_codes(void **state)
{
    struct kiln_proc_result res;
    struct kiln_error err = {0};
    char *fail[] = {"sh", "-c", "echo something broke >&2; exit 3", NULL};
    struct kiln_proc_opts opts = {.argv = fail};
    assert_int_equal(kiln_proc_run(&opts, NULL, &res, &err), -KILN_E_FAILED);
    assert_int_equal(res.exit_code, 3);
    assert_string_equal(err.message, "exit status 3: something broke");
    kiln_proc_result_clear(&res);

    char *reboot[] = {"sh", "-c", "exit 194", NULL};
    opts.argv = reboot;
    kiln_error_clear(&err);
    assert_int_equal(kiln_proc_run(&opts, NULL, &res, &err), -KILN_E_REBOOT);
    assert_int_equal(res.exit_code, 194);
    kiln_proc_result_clear(&res);

    char *signalled[] = {"sh", "-c", "kill -KILL $$", NULL};
    opts.argv = signalled;
    kiln_error_clear(&err);
    assert_int_equal(kiln_proc_run(&opts, NULL, &res, &err), -KILN_E_FAILED);
    assert_int_equal(res.term_signal, SIGKILL);
    assert_non_null(strstr(err.message, "killed by signal KILL"));
    kiln_proc_result_clear(&res);

    char *missing[] = {"/nonexistent/kiln-no-such-binary", NULL};
    opts.argv = missing;
    kiln_error_clear(&err);
    assert_int_equal(kiln_proc_run(&opts, NULL, &res, &err), -ENOENT);
    assert_non_null(strstr(err.message, "cannot run /nonexistent/kiln-no-such-binary"));
}

/* The timeout takes down the whole process group, background children included. */
static void
test_proc_timeout_kills_group(void **state)
{
    _cleanup_free_ char *dir = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-proc-", &dir, NULL), 0);
    _cleanup_free_ char *pidfile = kiln_path_join(dir, "bg.pid");
    _cleanup_free_ char *script =
        kiln_asprintf("sleep 300 & echo $! > %s; echo started; sleep 300", pidfile);
    char *argv[] = {"sh", "-c", script, NULL};
    struct kiln_proc_opts opts = {.argv = argv, .kill_grace_seconds = 2};
    struct kiln_module_ctx ctx = {.timeout_seconds = 1};
    struct kiln_proc_result res;
    struct kiln_error err = {0};
    long long t0 = now_ms();
    assert_int_equal(kiln_proc_run(&opts, &ctx, &res, &err), -ETIMEDOUT);
    long long took = now_ms() - t0;
    assert_true(res.timed_out);
    assert_string_equal(err.message, "timed out after 1 seconds");
    assert_string_equal(res.out, "started\n");
    assert_true(took >= 1000 && took < 5000);
    pid_t bg = read_pid(pidfile);
    for (int i = 0; i < 50 && !process_gone(bg); i++)
        usleep(20000);
    assert_true(process_gone(bg));
    kiln_proc_result_clear(&res);
    kiln_rm_rf(dir, NULL);
}

/* A command that ignores SIGTERM gets SIGKILL after the grace period. */
static void
test_proc_timeout_sigkill_after_grace(void **state)
{
    char *argv[] = {"sh", "-c", "trap '' TERM; while :; do sleep 0.1; done", NULL};
    struct kiln_proc_opts opts = {.argv = argv, .kill_grace_seconds = 1};
    struct kiln_module_ctx ctx = {.timeout_seconds = 1};
    struct kiln_proc_result res;
    struct kiln_error err = {0};
    long long t0 = now_ms();
    assert_int_equal(kiln_proc_run(&opts, &ctx, &res, &err), -ETIMEDOUT);
    long long took = now_ms() - t0;
    assert_int_equal(res.term_signal, SIGKILL);
    assert_true(took >= 2000 && took < 6000);
    kiln_proc_result_clear(&res);
}

static void *
cancel_later(void *arg)
{
    usleep(300000);
    *(volatile sig_atomic_t *)arg = 1;
    return NULL;
}

static void
test_proc_cancel(void **state)
{
    volatile sig_atomic_t cancel = 0;
    char *argv[] = {"sleep", "300", NULL};
    struct kiln_proc_opts opts = {.argv = argv};
    struct kiln_module_ctx ctx = {.timeout_seconds = -1, .cancel = &cancel};
    struct kiln_proc_result res;
    struct kiln_error err = {0};
    pthread_t t;
    pthread_create(&t, NULL, cancel_later, (void *)&cancel);
    long long t0 = now_ms();
    assert_int_equal(kiln_proc_run(&opts, &ctx, &res, &err), -ECANCELED);
    pthread_join(t, NULL);
    assert_true(res.cancelled);
    assert_int_equal(res.term_signal, SIGTERM);
    assert_true(now_ms() - t0 < 3000);
    kiln_proc_result_clear(&res);
}

static void
test_proc_capture_bounded(void **state)
{
    struct console c = {0};
    struct kiln_module_ctx ctx = {
        .timeout_seconds = 30, .console = console_fn, .console_userdata = &c};
    char *argv[] = {"sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x", NULL};
    struct kiln_proc_opts opts = {.argv = argv, .capture_max = 1000};
    struct kiln_proc_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_proc_run(&opts, &ctx, &res, &err), 0);
    assert_int_equal(res.out_len, 1000);
    assert_int_equal(strlen(res.out), 1000);
    assert_true(res.out_truncated);
    /* the console still saw everything */
    assert_int_equal(c.out.len, 200000);
    kiln_proc_result_clear(&res);
    console_clear(&c);
}

/* A background child that keeps stdout open does not hold the step forever. */
static void
test_proc_background_holder(void **state)
{
    char *argv[] = {"sh", "-c", "sleep 30 & echo done", NULL};
    struct kiln_proc_opts opts = {.argv = argv};
    struct kiln_module_ctx ctx = {.timeout_seconds = 60};
    struct kiln_proc_result res;
    struct kiln_error err = {0};
    long long t0 = now_ms();
    assert_int_equal(kiln_proc_run(&opts, &ctx, &res, &err), 0);
    assert_true(now_ms() - t0 < 5000);
    assert_string_equal(res.out, "done\n");
    kiln_proc_result_clear(&res);
}

/* No descriptor of the agent leaks into the step, and the step gets its own process group. */
static void
test_proc_fds_and_group(void **state)
{
    int leak = open("/dev/null", O_RDONLY); /* deliberately without O_CLOEXEC */
    assert_true(leak > 2);
    _cleanup_free_ char *script =
        kiln_asprintf("if [ -e /proc/$$/fd/%d ]; then echo leaked; else echo clean; fi; "
                      "ps -o pgid= -p $$ | tr -d ' '; echo $$",
                      leak);
    char *argv[] = {"sh", "-c", script, NULL};
    struct kiln_proc_opts opts = {.argv = argv};
    struct kiln_proc_result res;
    struct kiln_error err = {0};
    assert_int_equal(kiln_proc_run(&opts, NULL, &res, &err), 0);
    close(leak);
    char fds[64], pgid[32], pid[32];
    assert_int_equal(sscanf(res.out, "%63s\n%31s\n%31s", fds, pgid, pid), 3);
    assert_string_equal(fds, "clean");
    assert_string_equal(pgid, pid);
    kiln_proc_result_clear(&res);
}

/* ---- ExecuteBash / ExecuteBinary ---- */

static json_t *
parse(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j)
        fail_msg("bad test JSON: %s", je.text);
    return j;
}

static int
run_module(const char *name, const char *inputs, int timeout, json_t **out, struct kiln_error *err,
           char **ret_workdir)
{
    const struct kiln_module *m = kiln_module_find(name);
    assert_non_null(m);
    assert_non_null(m->run);
    _cleanup_free_ char *dir = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-step-", &dir, NULL), 0);
    struct kiln_module_ctx ctx = {.step_name = "Step", .work_dir = dir, .timeout_seconds = timeout};
    _cleanup_json_ json_t *in = parse(inputs);
    *out = NULL;
    int r = m->run(in, &ctx, out, err);
    if (ret_workdir)
        *ret_workdir = TAKE_PTR(dir);
    else
        kiln_rm_rf(dir, NULL);
    return r;
}

static void
test_bash_outputs_stdout(void **state)
{
    _cleanup_json_ json_t *out = NULL;
    struct kiln_error err = {0};
    assert_int_equal(run_module("ExecuteBash",
                                "{\"commands\": [\"echo 'Hello World!'\", "
                                "\"X=two\\necho \\\"line $X\\\"\"]}",
                                30, &out, &err, NULL),
                     0);
    assert_string_equal(kiln_json_get_str(out, "stdout"), "Hello World!\nline two");
}

/* No implicit set -e: the script's exit status decides, as in AWSTOE. */
static void
test_bash_no_implicit_errexit(void **state)
{
    _cleanup_json_ json_t *out = NULL, *out2 = NULL, *out3 = NULL;
    struct kiln_error err = {0};
    assert_int_equal(run_module("ExecuteBash", "{\"commands\": [\"false\", \"echo after\"]}", 30,
                                &out, &err, NULL),
                     0);
    assert_string_equal(kiln_json_get_str(out, "stdout"), "after");

    assert_int_equal(run_module("ExecuteBash",
                                "{\"commands\": [\"set -e\", \"false\", \"echo never\"]}", 30,
                                &out2, &err, NULL),
                     -KILN_E_FAILED);
    assert_null(out2);
    assert_string_equal(err.message, "ExecuteBash: exit status 1");

    kiln_error_clear(&err);
    assert_int_equal(run_module("ExecuteBash", "{\"commands\": [\"echo x\", \"exit 7\"]}", 30,
                                &out3, &err, NULL),
                     -KILN_E_FAILED);
    assert_string_equal(err.message, "ExecuteBash: exit status 7");
}

static void
test_bash_reboot_and_timeout(void **state)
{
    _cleanup_json_ json_t *out = NULL, *out2 = NULL;
    struct kiln_error err = {0};
    assert_int_equal(run_module("ExecuteBash",
                                "{\"commands\": [\"echo 'The reboot file does not exist.'\", "
                                "\"exit 194\"]}",
                                30, &out, &err, NULL),
                     -KILN_E_REBOOT);
    assert_string_equal(kiln_json_get_str(out, "stdout"), "The reboot file does not exist.");

    kiln_error_clear(&err);
    assert_int_equal(
        run_module("ExecuteBash", "{\"commands\": [\"sleep 30\"]}", 1, &out2, &err, NULL),
        -ETIMEDOUT);
    assert_string_equal(err.message, "ExecuteBash: timed out after 1 seconds");
}

/* Binary output still makes outputs that serialise: invalid UTF-8 becomes U+FFFD. */
static void
test_bash_binary_output(void **state)
{
    _cleanup_json_ json_t *out = NULL;
    struct kiln_error err = {0};
    assert_int_equal(run_module("ExecuteBash",
                                "{\"commands\": [\"printf 'a\\\\377b\\\\303\\\\251'\"]}", 30, &out,
                                &err, NULL),
                     0);
    assert_string_equal(kiln_json_get_str(out, "stdout"), "a\xef\xbf\xbd"
                                                          "b\xc3\xa9");
    _cleanup_free_ char *dumped = json_dumps(out, 0);
    assert_non_null(dumped);
}

static void
test_bash_script_in_work_dir(void **state)
{
    _cleanup_json_ json_t *out = NULL;
    _cleanup_free_ char *dir = NULL;
    struct kiln_error err = {0};
    assert_int_equal(
        run_module("ExecuteBash", "{\"commands\": [\"echo $0\"]}", 30, &out, &err, &dir), 0);
    _cleanup_free_ char *expect = kiln_path_join(dir, "script.sh");
    assert_string_equal(kiln_json_get_str(out, "stdout"), expect);
    /* the script is removed after the run */
    assert_int_equal(access(expect, F_OK), -1);
    kiln_rm_rf(dir, NULL);
}

static void
test_bash_bad_inputs(void **state)
{
    _cleanup_json_ json_t *out = NULL, *out2 = NULL;
    struct kiln_error err = {0};
    assert_int_equal(run_module("ExecuteBash", "{\"commands\": []}", 30, &out, &err, NULL),
                     -KILN_E_INVALID);
    assert_string_equal(err.message, "ExecuteBash: 'commands' is empty");
    kiln_error_clear(&err);
    assert_int_equal(run_module("ExecuteBash", "{}", 30, &out2, &err, NULL), -KILN_E_INVALID);
    assert_string_equal(err.message, "ExecuteBash: input 'commands' is required");
}

static void
test_binary(void **state)
{
    _cleanup_json_ json_t *out = NULL, *out2 = NULL, *out3 = NULL;
    struct kiln_error err = {0};
    assert_int_equal(run_module("ExecuteBinary",
                                "{\"path\": \"printf\", \"arguments\": [\"%s|%s\", "
                                "\"a b\", \"$HOME\"]}",
                                30, &out, &err, NULL),
                     0);
    /* arguments reach the binary untouched: no shell splitting or expansion */
    assert_string_equal(kiln_json_get_str(out, "stdout"), "a b|$HOME");

    assert_int_equal(run_module("ExecuteBinary",
                                "{\"path\": \"/bin/sh\", \"arguments\": "
                                "[\"-c\", \"exit 194\"]}",
                                30, &out2, &err, NULL),
                     -KILN_E_REBOOT);
    kiln_error_clear(&err);
    assert_int_equal(
        run_module("ExecuteBinary", "{\"path\": \"/nonexistent/tool\"}", 30, &out3, &err, NULL),
        -ENOENT);
    assert_non_null(strstr(err.message, "ExecuteBinary: cannot run /nonexistent/tool"));
}

KILN_TEST_MAIN(
    cmocka_unit_test(test_proc_capture_and_stream), cmocka_unit_test(test_proc_exit_codes),
    cmocka_unit_test(test_proc_timeout_kills_group),
    cmocka_unit_test(test_proc_timeout_sigkill_after_grace), cmocka_unit_test(test_proc_cancel),
    cmocka_unit_test(test_proc_capture_bounded), cmocka_unit_test(test_proc_background_holder),
    cmocka_unit_test(test_proc_fds_and_group), cmocka_unit_test(test_bash_outputs_stdout),
    cmocka_unit_test(test_bash_no_implicit_errexit), cmocka_unit_test(test_bash_reboot_and_timeout),
    cmocka_unit_test(test_bash_binary_output), cmocka_unit_test(test_bash_script_in_work_dir),
    cmocka_unit_test(test_bash_bad_inputs), cmocka_unit_test(test_binary))
