/* A job's whole-time limit (struct kiln_job.timeout_seconds), without a VM: the agent client's
 * deadline against the real agent serve loop and engine over a socketpair (a step that sleeps
 * for ever is cancelled and reported with its name; a job that ends in time is untouched; an
 * agent that ignores the cancel still lets the call return after the grace), and the libvirt
 * driver's run op on libvirt's in-memory test driver (test:///default), its agent socket served
 * by the real agent in a thread, as a guest's would be. */
#include "kiln-test.h"

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/json.h"
#include "common/time.h"
#include "drivers/agent-client.h"
#include "drivers/command.h"
#include "drivers/libvirt.h"
#include "guest-agent/serve.h"

#include "agent-thread.h"

static const char *hung_doc =
    "name: hung\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
    "      - name: Start\n        action: ExecuteBash\n        inputs:\n"
    "          commands: [\"echo starting\"]\n"
    "      - name: Hang\n        action: ExecuteBash\n        inputs:\n"
    "          commands:\n            - echo hanging\n            - sleep 1000\n";

static const char *quick_doc =
    "name: quick\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
    "      - name: Say\n        action: ExecuteBash\n        inputs:\n"
    "          commands: [\"echo quick\"]\n";

/* A client connected to the agent over a socketpair, the client pinging often. */
static struct kiln_agent_client *
agent_pair(struct agent_thread *t, const char *state_dir,
           int (*run)(const struct kiln_run_options *, struct kiln_run_result *,
                      struct kiln_error *))
{
    t->cfg.run = run;
    t->ping_interval_ms = 300;
    return start_agent(t, state_dir, "boot-1");
}

/* A job runner that starts a step and then ignores the cancel until the test lets it go, as an
 * agent stuck in uninterruptible I/O would. */
static volatile sig_atomic_t release_stuck;

static int
stuck_run(const struct kiln_run_options *o, struct kiln_run_result *res, struct kiln_error *err)
{
    _cleanup_json_ json_t *start =
        json_pack("{s:s, s:s, s:s}", "event", "step-start", "phase", "build", "step", "Stuck");
    o->events->event(o->events->userdata, start);
    while (!release_stuck)
        usleep(20 * 1000);
    res->status = KILN_RUN_CANCELLED;
    return 0;
}

struct seen {
    int step_starts;
    char last_end_status[32];
};

static void
on_event(void *userdata, const json_t *ev)
{
    struct seen *s = userdata;
    const char *type = kiln_json_get_str(ev, "event");
    if (kiln_streq(type, "step-start"))
        s->step_starts++;
    if (kiln_streq(type, "step-end"))
        snprintf(s->last_end_status, sizeof(s->last_end_status), "%s",
                 kiln_json_get_str(ev, "status") ? kiln_json_get_str(ev, "status") : "");
}

/* --- the agent client's deadline ------------------------------------------------------------- */

static void
test_client_deadline_cancels_hung_step(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *st = kiln_path_join(dir, "state");
    _cleanup_free_ char *logs = kiln_path_join(dir, "logs");
    assert_int_equal(kiln_mkdir_p(logs, 0755, NULL), 0);
    _cleanup_free_ char *doc = write_doc(dir, "hung.yml", hung_doc);
    struct agent_thread t = {0};
    struct kiln_agent_client *c = agent_pair(&t, st, NULL);
    const char *docs[] = {doc, NULL};
    struct kiln_agent_job job = {.execution_id = "jt-client", .documents = docs};
    struct seen s = {0};
    struct kiln_agent_client_callbacks cb = {on_event, NULL, &s};
    struct kiln_agent_job_result res = {0};
    struct kiln_error err = {0};
    long long t0 = kiln_now_ms();
    kiln_agent_client_set_deadline(c, t0 + 1500, 5000);
    if (kiln_agent_client_run_job(c, &job, &cb, &res, &err) < 0)
        fail_msg("run_job: %s", err.message);
    long long took = kiln_now_ms() - t0;
    fprintf(stderr, "ended after %lld ms\n", took);
    /* Not before the deadline; well within the grace after it. */
    assert_true(took >= 1500);
    assert_true(took < 1500 + 5000);
    assert_true(res.timed_out);
    assert_int_equal(res.status, KILN_AGENT_JOB_CANCELLED);
    assert_non_null(res.step);
    assert_string_equal(res.step, "build/Hang");
    assert_int_equal(s.step_starts, 2);
    assert_string_equal(s.last_end_status, "cancelled");
    /* The agent is still in step: the job's logs come over. */
    assert_non_null(res.log_folder);
    if (kiln_agent_client_fetch_logs(c, "jt-client", logs, NULL, &err) < 0)
        fail_msg("fetch: %s", err.message);
    _cleanup_free_ char *detailed =
        kiln_asprintf("%s/%s/detailedoutput.json", logs, res.log_folder);
    assert_int_equal(access(detailed, R_OK), 0);
    kiln_agent_job_result_clear(&res);
    stop_agent(&t, c);
    kiln_rm_rf(dir, NULL);
}

static void
test_client_deadline_not_reached(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *doc = write_doc(dir, "quick.yml", quick_doc);
    struct agent_thread t = {0};
    struct kiln_agent_client *c = agent_pair(&t, dir, NULL);
    const char *docs[] = {doc, NULL};
    struct kiln_agent_job job = {.execution_id = "jt-quick", .documents = docs};
    struct kiln_agent_job_result res = {0};
    struct kiln_error err = {0};
    kiln_agent_client_set_deadline(c, kiln_now_ms() + 30000, 0);
    if (kiln_agent_client_run_job(c, &job, NULL, &res, &err) < 0)
        fail_msg("run_job: %s", err.message);
    assert_int_equal(res.status, KILN_AGENT_JOB_SUCCESS);
    assert_false(res.timed_out);
    assert_null(res.step);
    kiln_agent_job_result_clear(&res);
    stop_agent(&t, c);
    kiln_rm_rf(dir, NULL);
}

static void
test_client_deadline_agent_ignores_cancel(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *doc = write_doc(dir, "any.yml", quick_doc);
    release_stuck = 0;
    struct agent_thread t = {0};
    struct kiln_agent_client *c = agent_pair(&t, dir, stuck_run);
    const char *docs[] = {doc, NULL};
    struct kiln_agent_job job = {.execution_id = "jt-stuck", .documents = docs};
    struct kiln_agent_job_result res = {0};
    struct kiln_error err = {0};
    long long t0 = kiln_now_ms();
    kiln_agent_client_set_deadline(c, t0 + 500, 700);
    int r = kiln_agent_client_run_job(c, &job, NULL, &res, &err);
    long long took = kiln_now_ms() - t0;
    fprintf(stderr, "returned after %lld ms: %s\n", took, err.message);
    assert_int_equal(r, -ETIMEDOUT);
    assert_true(took >= 1200);
    assert_true(took < 4000);
    assert_non_null(strstr(err.message, "the job's time ran out in build/Stuck"));
    assert_non_null(strstr(err.message, "did not end it within 1 s of the cancel"));
    release_stuck = 1;
    stop_agent(&t, c);
    kiln_rm_rf(dir, NULL);
}

/* --- the libvirt driver's run op ------------------------------------------------------------ */

struct lv {
    char *dir;
    char *base;
    char *state;
    void *conn;
    struct kiln_instance *inst;
    struct agent_thread agent;
    char *socket;
};

/* An instance on test:///default whose agent socket is served by the real agent. */
static void
lv_start(struct lv *f, const char *build_id,
         int (*run)(const struct kiln_run_options *, struct kiln_run_result *, struct kiln_error *))
{
    f->dir = tmpdir();
    f->base = kiln_path_join(f->dir, "base.qcow2");
    f->state = kiln_path_join(f->dir, "state");
    char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", f->base, "16M", NULL};
    struct kiln_error err = {0};
    if (kiln_command_run(argv, NULL, &err) < 0)
        fail_msg("%s", err.message);
    struct kiln_driver_config cfg = {
        .uri = "test:///default", .accel = "tcg", .work_dir = f->dir, .build_id = build_id};
    if (kiln_libvirt_driver.open(&cfg, 0, &f->conn, &err) < 0)
        fail_msg("%s", err.message);
    struct kiln_image_ref img = {.kind = "qcow2", .location = f->base};
    if (kiln_libvirt_driver.launch(f->conn, &img, "guest", 5, KILN_LAUNCH_NO_WAIT, &f->inst, &err) <
        0)
        fail_msg("%s", err.message);
    f->socket = kiln_asprintf("%s/guest/agent.sock", f->dir);
    f->agent.socket_path = f->socket;
    f->agent.cfg.run = run;
    agent_start(&f->agent, f->state, "boot-1");
}

static void
lv_stop(struct lv *f)
{
    struct kiln_error err = {0};
    /* Terminate first: it closes the connection, so the agent's serve loop returns to accept
     * and sees the stop flag. */
    assert_int_equal(kiln_libvirt_driver.terminate(f->inst, 0, &err), 0);
    f->agent.stop = 1;
    pthread_join(f->agent.thread, NULL);
    kiln_libvirt_driver.close(f->conn);
    kiln_rm_rf(f->dir, NULL);
    free(f->dir);
    free(f->base);
    free(f->state);
    free(f->socket);
}

static void
test_libvirt_run_times_out(void **state)
{
    struct lv f = {0};
    lv_start(&f, "jt1", NULL);
    _cleanup_free_ char *hung = write_doc(f.dir, "hung.yml", hung_doc);
    _cleanup_free_ char *quick = write_doc(f.dir, "quick.yml", quick_doc);
    _cleanup_free_ char *logs = kiln_path_join(f.dir, "logs");
    struct seen s = {0};
    struct kiln_engine_events ev = {.event = on_event, .userdata = &s};
    struct kiln_error err = {0};

    /* A zero timeout (a job left zero-initialised) means none, like -1. */
    char *quick_docs[] = {quick, NULL};
    struct kiln_job job = {.documents = quick_docs, .execution_id = "jt-first"};
    struct kiln_job_result res = {0};
    if (kiln_libvirt_driver.run(f.inst, &job, NULL, &ev, 0, &res, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(res.status, KILN_RUN_SUCCESS);
    assert_false(res.timed_out);
    kiln_job_result_clear(&res);

    char *hung_docs[] = {hung, NULL};
    job =
        (struct kiln_job){.documents = hung_docs, .execution_id = "jt-hung", .timeout_seconds = 2};
    long long t0 = kiln_now_ms();
    if (kiln_libvirt_driver.run(f.inst, &job, logs, &ev, 0, &res, &err) < 0)
        fail_msg("%s", err.message);
    long long took = kiln_now_ms() - t0;
    fprintf(stderr, "ended after %lld ms: %s\n", took, res.failure);
    assert_true(took >= 2000);
    assert_true(took < 2000 + 10000);
    assert_int_equal(res.status, KILN_RUN_FAILED);
    assert_true(res.timed_out);
    assert_string_equal(res.failure,
                        "job jt-hung timed out after 2 seconds in build/Hang; the agent "
                        "cancelled it");
    assert_string_equal(s.last_end_status, "cancelled");
    /* The logs were fetched as after any job. */
    assert_non_null(res.log_dir);
    _cleanup_free_ char *toe = NULL;
    assert_int_equal(
        kiln_command_run((char *[]){"find", logs, "-name", "detailedoutput.json", NULL}, &toe,
                         NULL),
        0);
    assert_non_null(strstr(toe, "detailedoutput.json"));
    kiln_job_result_clear(&res);

    /* The instance is still usable: the next job runs. */
    job = (struct kiln_job){
        .documents = quick_docs, .execution_id = "jt-after", .timeout_seconds = 30};
    if (kiln_libvirt_driver.run(f.inst, &job, NULL, NULL, 0, &res, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(res.status, KILN_RUN_SUCCESS);
    kiln_job_result_clear(&res);
    lv_stop(&f);
}

static void
test_libvirt_run_agent_ignores_cancel(void **state)
{
    struct lv f = {0};
    release_stuck = 0;
    lv_start(&f, "jt2", stuck_run);
    _cleanup_free_ char *doc = write_doc(f.dir, "any.yml", quick_doc);
    char *docs[] = {doc, NULL};
    struct kiln_job job = {.documents = docs, .execution_id = "jt-stuck", .timeout_seconds = 1};
    struct kiln_job_result res = {0};
    struct kiln_error err = {0};
    long long t0 = kiln_now_ms();
    int r = kiln_libvirt_driver.run(f.inst, &job, NULL, NULL, 0, &res, &err);
    long long took = kiln_now_ms() - t0;
    fprintf(stderr, "returned after %lld ms: %s\n", took, err.message);
    /* The run returns after the job's time and the grace (10 s); the caller then terminates
     * the instance as after any failure. */
    assert_int_equal(r, -ETIMEDOUT);
    assert_true(took >= 1000 + 10000);
    assert_true(took < 1000 + 10000 + 3000);
    assert_non_null(strstr(err.message, "instance guest: job jt-stuck timed out after 1 second: "));
    assert_non_null(strstr(err.message, "in build/Stuck and the agent did not end it within 10 s"));
    release_stuck = 1;
    lv_stop(&f);
}

KILN_TEST_MAIN(cmocka_unit_test(test_client_deadline_cancels_hung_step),
               cmocka_unit_test(test_client_deadline_not_reached),
               cmocka_unit_test(test_client_deadline_agent_ignores_cancel),
               cmocka_unit_test(test_libvirt_run_times_out),
               cmocka_unit_test(test_libvirt_run_agent_ignores_cancel))
