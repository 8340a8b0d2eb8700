/* The host agent client and the real agent serve loop running real AWSTOE documents through
 * the component engine (kiln_engine_run), over a socketpair, without a VM; and the ready command
 * those jobs wait for, run before the first job or on a prepare request. */
#include "kiln-test.h"

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/json.h"
#include "drivers/agent-client.h"
#include "guest-agent/proto.h"
#include "guest-agent/serve.h"

#include "agent-thread.h"

struct seen {
    int starts, ends;
    char first_step[64];
    struct kiln_buf out;
};

static void
on_event(void *userdata, const json_t *ev)
{
    struct seen *s = userdata;
    const char *e = kiln_json_get_str(ev, "event");
    if (kiln_streq(e, "step-start") && s->starts++ == 0)
        snprintf(s->first_step, sizeof(s->first_step), "%s",
                 kiln_json_get_str(ev, "step") ? kiln_json_get_str(ev, "step") : "");
    if (kiln_streq(e, "step-end"))
        s->ends++;
}

static void
on_console(void *userdata, const char *stream, const char *data, size_t len)
{
    struct seen *s = userdata;
    kiln_buf_append(&s->out, data, len);
}

static void
test_real_document_execute_bash(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *st = kiln_path_join(dir, "state");
    _cleanup_free_ char *logs = kiln_path_join(dir, "logs");
    kiln_mkdir_p(logs, 0755, NULL);
    _cleanup_free_ char *doc = write_doc(
        dir, "hello.yml",
        "name: hello\nschemaVersion: 1.0\nparameters:\n  - greeting:\n      type: string\n"
        "      default: nobody\nphases:\n  - name: build\n    steps:\n"
        "      - name: SayHello\n        action: ExecuteBash\n        inputs:\n"
        "          commands:\n            - echo \"hello {{ greeting }}\"\n");
    struct agent_thread t = {0};
    struct kiln_agent_client *c = start_agent(&t, st, "b1");
    const char *docs[] = {doc, NULL};
    const char *phases[] = {"build", NULL};
    _cleanup_json_ json_t *params = json_pack("{s:s}", "greeting", "kiln");
    struct kiln_agent_job job = {
        .execution_id = "real-1", .documents = docs, .phases = phases, .parameters = params};
    struct seen s = {0};
    struct kiln_agent_client_callbacks cb = {on_event, on_console, &s};
    struct kiln_agent_job_result res = {0};
    struct kiln_error err = {0};
    if (kiln_agent_client_run_job(c, &job, &cb, &res, &err) < 0)
        fail_msg("run_job: %s", err.message);
    if (res.status != KILN_AGENT_JOB_SUCCESS)
        fail_msg("job %s: %s", kiln_agent_job_status_name(res.status), res.failure);
    assert_true(s.starts >= 1);
    assert_true(s.ends >= 1);
    assert_string_equal(s.first_step, "SayHello");
    assert_int_equal(res.executed, 1);
    assert_int_equal(res.failed, 0);
    assert_non_null(strstr(s.out.data, "hello kiln"));
    assert_non_null(res.log_folder);
    assert_int_equal(strncmp(res.log_folder, "TOE_", 4), 0);

    if (kiln_agent_client_fetch_logs(c, "real-1", logs, NULL, &err) < 0)
        fail_msg("fetch: %s", err.message);
    _cleanup_free_ char *folder = kiln_path_join(logs, res.log_folder);
    _cleanup_free_ char *detailed = kiln_path_join(folder, "detailedoutput.json");
    assert_int_equal(access(detailed, F_OK), 0);
    kiln_agent_job_result_clear(&res);
    kiln_buf_clear(&s.out);
    stop_agent(&t, c);
    kiln_rm_rf(dir, NULL);
}

static void
test_real_reboot_cycle(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *st = kiln_path_join(dir, "state");
    _cleanup_free_ char *marker = kiln_path_join(dir, "rebooted");
    _cleanup_free_ char *text =
        kiln_asprintf("name: reboot\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
                      "      - name: RebootOnce\n        action: ExecuteBash\n        inputs:\n"
                      "          commands:\n"
                      "            - if [ ! -e %s ]; then touch %s; exit 194; fi\n"
                      "            - echo after-reboot\n",
                      marker, marker);
    _cleanup_free_ char *doc = write_doc(dir, "reboot.yml", text);
    struct agent_thread t1 = {0};
    struct kiln_agent_client *c = start_agent(&t1, st, "boot-1");
    const char *docs[] = {doc, NULL};
    struct kiln_agent_job job = {.execution_id = "real-r", .documents = docs};
    struct seen s = {0};
    struct kiln_agent_client_callbacks cb = {on_event, on_console, &s};
    struct kiln_agent_job_result res = {0};
    struct kiln_error err = {0};
    if (kiln_agent_client_run_job(c, &job, &cb, &res, &err) < 0)
        fail_msg("run_job: %s", err.message);
    assert_int_equal(res.status, KILN_AGENT_JOB_REBOOT_REQUIRED);
    assert_int_equal(access(marker, F_OK), 0);
    stop_agent(&t1, c);

    struct agent_thread t2 = {0};
    c = start_agent(&t2, st, "boot-2");
    json_t *jobinfo = json_object_get(kiln_agent_client_hello(c), "job");
    assert_string_equal(kiln_json_get_str(jobinfo, "status"), "reboot-pending");
    kiln_agent_job_result_clear(&res);
    if (kiln_agent_client_resume_job(c, "real-r", &cb, &res, &err) < 0)
        fail_msg("resume: %s", err.message);
    if (res.status != KILN_AGENT_JOB_SUCCESS)
        fail_msg("job %s: %s", kiln_agent_job_status_name(res.status), res.failure);
    assert_non_null(strstr(s.out.data, "after-reboot"));
    kiln_agent_job_result_clear(&res);
    kiln_buf_clear(&s.out);
    stop_agent(&t2, c);
    kiln_rm_rf(dir, NULL);
}

static void
test_real_failing_step_reports_failure(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *doc = write_doc(
        dir, "fail.yml",
        "name: fail\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
        "      - name: Boom\n        action: ExecuteBash\n        inputs:\n"
        "          commands:\n            - echo about to fail >&2\n            - exit 3\n");
    struct agent_thread t = {0};
    struct kiln_agent_client *c = start_agent(&t, dir, "b");
    const char *docs[] = {doc, NULL};
    struct kiln_agent_job job = {.execution_id = "real-f", .documents = docs};
    struct seen s = {0};
    struct kiln_agent_client_callbacks cb = {on_event, on_console, &s};
    struct kiln_agent_job_result res = {0};
    struct kiln_error err = {0};
    if (kiln_agent_client_run_job(c, &job, &cb, &res, &err) < 0)
        fail_msg("run_job: %s", err.message);
    assert_int_equal(res.status, KILN_AGENT_JOB_FAILED);
    assert_non_null(res.failure);
    assert_int_equal(res.failed, 1);
    assert_non_null(strstr(s.out.data, "about to fail"));
    kiln_agent_job_result_clear(&res);
    kiln_buf_clear(&s.out);
    stop_agent(&t, c);
    kiln_rm_rf(dir, NULL);
}

static volatile sig_atomic_t cancel_flag;

static void
cancel_on_output(void *userdata, const char *stream, const char *data, size_t len)
{
    cancel_flag = 1;
}

static void
test_real_cancel_mid_step(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *doc =
        write_doc(dir, "long.yml",
                  "name: long\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
                  "      - name: Sleep\n        action: ExecuteBash\n        inputs:\n"
                  "          commands:\n            - echo started\n            - sleep 60\n");
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct agent_thread t = {.fd = sv[1], .cfg = {.state_directory = dir}};
    assert_int_equal(pthread_create(&t.thread, NULL, agent_main, &t), 0);
    struct kiln_agent_client_options o = {.connect_timeout_ms = 5000,
                                          .reply_timeout_ms = 10000,
                                          .ping_interval_ms = 500,
                                          .cancel = &cancel_flag};
    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_agent_client_open_fd(sv[0], &o, &c, &err), 0);
    const char *docs[] = {doc, NULL};
    struct kiln_agent_job job = {.execution_id = "real-c", .documents = docs};
    struct kiln_agent_client_callbacks cb = {NULL, cancel_on_output, NULL};
    struct kiln_agent_job_result res = {0};
    int64_t t0 = kiln_proto_now_ms();
    int r = kiln_agent_client_run_job(c, &job, &cb, &res, &err);
    int64_t took = kiln_proto_now_ms() - t0;
    assert_int_equal(r, -ECANCELED);
    assert_int_equal(res.status, KILN_AGENT_JOB_CANCELLED);
    assert_true(took < 10000);
    kiln_agent_job_result_clear(&res);
    stop_agent(&t, c);
    kiln_rm_rf(dir, NULL);
}

static void
test_real_dead_agent_mid_job(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *doc =
        write_doc(dir, "long.yml",
                  "name: long\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
                  "      - name: Sleep\n        action: ExecuteBash\n        inputs:\n"
                  "          commands:\n            - echo started\n            - sleep 30\n");
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        setpgid(0, 0); /* the engine's children die with the agent's group */
        setenv("TMPDIR", dir, 1); /* what the killed step leaves goes with the test's folder */
        struct kiln_agent_serve_config cfg = {.state_directory = dir};
        _exit(kiln_agent_serve_fd(sv[1], &cfg, NULL) < 0 ? 1 : 0);
    }
    close(sv[1]);
    struct kiln_agent_client_options o = {
        .connect_timeout_ms = 5000, .reply_timeout_ms = 2000, .ping_interval_ms = 500};
    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_agent_client_open_fd(sv[0], &o, &c, &err), 0);
    const char *docs[] = {doc, NULL};
    struct kiln_agent_job job = {.execution_id = "real-d", .documents = docs};
    struct seen s = {0};
    struct kiln_agent_client_callbacks cb = {on_event, on_console, &s};
    struct kiln_agent_job_result res = {0};
    /* run_job blocks: a helper process kills the agent while the step sleeps. */
    pid_t killer = fork();
    assert_true(killer >= 0);
    if (killer == 0) {
        usleep(1500 * 1000);
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        _exit(0);
    }
    int64_t t0 = kiln_proto_now_ms();
    int r = kiln_agent_client_run_job(c, &job, &cb, &res, &err);
    waitpid(killer, NULL, 0);
    int64_t took = kiln_proto_now_ms() - t0;
    kiln_agent_client_free(c);
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_int_equal(r, -ECONNRESET);
    assert_non_null(strstr(err.message, "agent closed the connection"));
    assert_true(took < 5000);
    kiln_buf_clear(&s.out);
    kiln_rm_rf(dir, NULL);
}

/* Run one ExecuteBash job whose command is cmd; returns its status, console output in s. */
static enum kiln_agent_job_status
run_bash(struct kiln_agent_client *c, const char *dir, const char *id, const char *cmd,
         struct seen *s)
{
    _cleanup_free_ char *text = kiln_asprintf(
        "name: %s\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
        "      - name: Check\n        action: ExecuteBash\n        inputs:\n"
        "          commands:\n            - %s\n",
        id, cmd);
    _cleanup_free_ char *name = kiln_asprintf("%s.yml", id);
    _cleanup_free_ char *doc = write_doc(dir, name, text);
    const char *docs[] = {doc, NULL};
    const char *phases[] = {"build", NULL};
    struct kiln_agent_job job = {.execution_id = id, .documents = docs, .phases = phases};
    struct kiln_agent_client_callbacks cb = {on_event, on_console, s};
    struct kiln_agent_job_result res = {0};
    struct kiln_error err = {0};
    if (kiln_agent_client_run_job(c, &job, &cb, &res, &err) < 0)
        fail_msg("run_job: %s", err.message);
    enum kiln_agent_job_status st = res.status;
    kiln_agent_job_result_clear(&res);
    return st;
}

/* The ready command runs once, before the first job's first step, and its output reaches that
 * job's console; a second job does not run it again. */
/* An agent whose ready command prints waiting-for-ready, takes 0.3 s and appends a line to
 * DIR/ready-count, so that tests can tell when and how often it ran. */
struct counted_agent {
    char *dir, *state, *count, *cmd;
    char *argv[4];
    struct agent_thread t;
    struct kiln_agent_client *c;
};

static void
counted_start(struct counted_agent *k)
{
    k->dir = tmpdir();
    k->state = kiln_path_join(k->dir, "state");
    k->count = kiln_path_join(k->dir, "ready-count");
    k->cmd = kiln_asprintf("echo waiting-for-ready; sleep 0.3; echo x >> %s", k->count);
    k->argv[0] = "/bin/sh";
    k->argv[1] = "-c";
    k->argv[2] = k->cmd;
    k->t.cfg.ready_argv = k->argv;
    k->c = start_agent(&k->t, k->state, "b1");
}

static void
counted_stop(struct counted_agent *k)
{
    stop_agent(&k->t, k->c);
    kiln_rm_rf(k->dir, NULL);
    free(k->dir);
    free(k->state);
    free(k->count);
    free(k->cmd);
}

static void
test_ready_command_runs_once_before_first_job(void **state)
{
    struct counted_agent k = {0};
    counted_start(&k);
    struct kiln_agent_client *c = k.c;
    const char *dir = k.dir, *count = k.count;
    struct seen s1 = {0}, s2 = {0};
    /* The step sees the ready command's effect: it ran to its end before the job. */
    _cleanup_free_ char *check = kiln_asprintf("test \"$(wc -l < %s)\" -eq 1", count);
    assert_int_equal(run_bash(c, dir, "ready-1", check, &s1), KILN_AGENT_JOB_SUCCESS);
    assert_non_null(s1.out.data);
    assert_non_null(strstr(s1.out.data, "waiting-for-ready"));
    assert_int_equal(run_bash(c, dir, "ready-2", check, &s2), KILN_AGENT_JOB_SUCCESS);
    assert_true(!s2.out.data || !strstr(s2.out.data, "waiting-for-ready"));
    kiln_buf_clear(&s1.out);
    kiln_buf_clear(&s2.out);
    counted_stop(&k);
}

/* A failing ready command is reported on the console and the job still runs. */
static void
test_ready_command_failure_is_reported(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *st = kiln_path_join(dir, "state");
    char *argv[] = {"/bin/sh", "-c", "echo no network >&2; exit 3", NULL};
    struct agent_thread t = {.cfg.ready_argv = argv};
    struct kiln_agent_client *c = start_agent(&t, st, "b1");
    struct seen s = {0};
    assert_int_equal(run_bash(c, dir, "ready-3", "echo job-ran", &s), KILN_AGENT_JOB_SUCCESS);
    assert_non_null(s.out.data);
    assert_non_null(strstr(s.out.data, "the ready command /bin/sh failed"));
    assert_non_null(strstr(s.out.data, "job-ran"));
    kiln_buf_clear(&s.out);
    stop_agent(&t, c);
    kiln_rm_rf(dir, NULL);
}

/* Lines in a file (the ready commands below append one per run); 0 when it does not exist. */
static int
count_lines(const char *path)
{
    _cleanup_free_ char *text = NULL;
    if (kiln_read_file(path, 1 << 16, &text, NULL, NULL) < 0)
        return 0;
    int n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    return n;
}

/* prepare runs the ready command at once and says how long it took; neither a second prepare nor
 * a job runs it again. */
static void
test_prepare_runs_ready_command_once(void **state)
{
    struct counted_agent k = {0};
    counted_start(&k);
    struct kiln_agent_client *c = k.c;
    const char *dir = k.dir, *count = k.count;
    assert_true(kiln_agent_hello_has_capability(kiln_agent_client_hello(c), "prepare"));
    assert_int_equal(count_lines(count), 0); /* the hello does not wait for it */
    struct kiln_error err = {0};
    int64_t ms = -1;
    if (kiln_agent_client_prepare(c, 10000, &ms, &err) < 0)
        fail_msg("prepare: %s", err.message);
    assert_int_equal(count_lines(count), 1);
    assert_true(ms >= 300 && ms < 5000);
    ms = -1;
    assert_int_equal(kiln_agent_client_prepare(c, 10000, &ms, &err), 0);
    assert_int_equal(ms, 0);
    struct seen s = {0};
    _cleanup_free_ char *check = kiln_asprintf("test \"$(wc -l < %s)\" -eq 1", count);
    assert_int_equal(run_bash(c, dir, "prep-1", check, &s), KILN_AGENT_JOB_SUCCESS);
    assert_true(!s.out.data || !strstr(s.out.data, "waiting-for-ready"));
    assert_int_equal(count_lines(count), 1);
    kiln_buf_clear(&s.out);
    counted_stop(&k);
}

static void
test_prepare_without_ready_command(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *st = kiln_path_join(dir, "state");
    struct agent_thread t = {0};
    struct kiln_agent_client *c = start_agent(&t, st, "b1");
    struct kiln_error err = {0};
    int64_t ms = -1;
    if (kiln_agent_client_prepare(c, 5000, &ms, &err) < 0)
        fail_msg("prepare: %s", err.message);
    assert_int_equal(ms, 0);
    /* ready_ms may be NULL */
    assert_int_equal(kiln_agent_client_prepare(c, 5000, NULL, &err), 0);
    stop_agent(&t, c);
    kiln_rm_rf(dir, NULL);
}

/* A failing ready command: prepare says why; the job that follows does not run it again. */
static void
test_prepare_reports_ready_command_failure(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *st = kiln_path_join(dir, "state");
    char *argv[] = {"/bin/sh", "-c", "echo no network >&2; exit 3", NULL};
    struct agent_thread t = {.cfg.ready_argv = argv};
    struct kiln_agent_client *c = start_agent(&t, st, "b1");
    struct kiln_error err = {0};
    int64_t ms = -1;
    assert_int_equal(kiln_agent_client_prepare(c, 10000, &ms, &err), -KILN_E_FAILED);
    if (!strstr(err.message, "the ready command /bin/sh failed") ||
        !strstr(err.message, "no network"))
        fail_msg("unexpected error: %s", err.message);
    assert_true(ms >= 0 && ms < 5000);
    struct seen s = {0};
    assert_int_equal(run_bash(c, dir, "prep-f", "echo job-ran", &s), KILN_AGENT_JOB_SUCCESS);
    assert_non_null(s.out.data);
    assert_non_null(strstr(s.out.data, "job-ran"));
    assert_null(strstr(s.out.data, "ready command"));
    kiln_buf_clear(&s.out);
    stop_agent(&t, c);
    kiln_rm_rf(dir, NULL);
}

struct delayed_flag {
    volatile sig_atomic_t *flag;
    int delay_ms;
};

static void *
set_flag_later(void *arg)
{
    struct delayed_flag *d = arg;
    usleep((useconds_t)d->delay_ms * 1000);
    *d->flag = 1;
    return NULL;
}

/* The client's cancel flag stops a running prepare in the guest; the ready command then counts
 * as not run, and the next prepare runs it. */
static void
test_prepare_cancelled(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *st = kiln_path_join(dir, "state");
    _cleanup_free_ char *count = kiln_path_join(dir, "ready-count");
    _cleanup_free_ char *fast = kiln_path_join(dir, "fast");
    _cleanup_free_ char *cmd = kiln_asprintf("echo x >> %s; [ -e %s ] || sleep 30", count, fast);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    volatile sig_atomic_t cancel = 0;
    struct agent_thread t = {.cfg.ready_argv = argv, .cancel = &cancel};
    struct kiln_agent_client *c = start_agent(&t, st, "b1");
    struct delayed_flag d = {&cancel, 300};
    pthread_t setter;
    assert_int_equal(pthread_create(&setter, NULL, set_flag_later, &d), 0);
    struct kiln_error err = {0};
    int64_t t0 = kiln_proto_now_ms();
    int r = kiln_agent_client_prepare(c, 20000, NULL, &err);
    int64_t took = kiln_proto_now_ms() - t0;
    pthread_join(setter, NULL);
    assert_int_equal(r, -ECANCELED);
    assert_true(took >= 300 && took < 8000);
    assert_int_equal(count_lines(count), 1);

    cancel = 0;
    free(write_doc(dir, "fast", ""));
    struct kiln_error err2 = {0};
    if (kiln_agent_client_prepare(c, 10000, NULL, &err2) < 0)
        fail_msg("prepare: %s", err2.message);
    assert_int_equal(count_lines(count), 2);
    stop_agent(&t, c);
    kiln_rm_rf(dir, NULL);
}

/* A job that starts while a prepare still runs the ready command waits for it and does not run
 * it a second time (the host gave up waiting for the prepare's answer). */
static void
test_job_during_prepare_waits_for_it(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *st = kiln_path_join(dir, "state");
    _cleanup_free_ char *count = kiln_path_join(dir, "ready-count");
    _cleanup_free_ char *cmd =
        kiln_asprintf("echo waiting-for-ready; sleep 2; echo x >> %s", count);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    struct agent_thread t = {.cfg.ready_argv = argv};
    struct kiln_agent_client *c = start_agent(&t, st, "b1");
    struct kiln_error err = {0};
    int64_t t0 = kiln_proto_now_ms();
    assert_int_equal(kiln_agent_client_prepare(c, 200, NULL, &err), -ETIMEDOUT);
    assert_true(kiln_proto_now_ms() - t0 < 1500);
    assert_int_equal(count_lines(count), 0);
    struct seen s = {0};
    _cleanup_free_ char *check = kiln_asprintf("test \"$(wc -l < %s)\" -eq 1", count);
    assert_int_equal(run_bash(c, dir, "prep-j", check, &s), KILN_AGENT_JOB_SUCCESS);
    assert_true(!s.out.data || !strstr(s.out.data, "waiting-for-ready"));
    assert_int_equal(count_lines(count), 1);
    int64_t ms = -1;
    assert_int_equal(kiln_agent_client_prepare(c, 5000, &ms, &err), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(count_lines(count), 1);
    kiln_buf_clear(&s.out);
    stop_agent(&t, c);
    kiln_rm_rf(dir, NULL);
}

KILN_TEST_MAIN(cmocka_unit_test(test_real_document_execute_bash),
               cmocka_unit_test(test_real_reboot_cycle),
               cmocka_unit_test(test_real_failing_step_reports_failure),
               cmocka_unit_test(test_real_cancel_mid_step),
               cmocka_unit_test(test_real_dead_agent_mid_job),
               cmocka_unit_test(test_ready_command_runs_once_before_first_job),
               cmocka_unit_test(test_ready_command_failure_is_reported),
               cmocka_unit_test(test_prepare_runs_ready_command_once),
               cmocka_unit_test(test_prepare_without_ready_command),
               cmocka_unit_test(test_prepare_reports_ready_command_failure),
               cmocka_unit_test(test_prepare_cancelled),
               cmocka_unit_test(test_job_during_prepare_waits_for_it))
