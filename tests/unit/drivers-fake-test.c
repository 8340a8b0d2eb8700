/* Tests for the fake driver (drivers/fake.c): the lifecycle, injected failures, reap. */
#include "kiln-test.h"

#include <sys/stat.h>

#include "common/fs.h"
#include "common/json.h"
#include "drivers/fake.h"

struct seen {
    int live;
    int events;
};

static void
on_resource(void *userdata, const char *kind, const char *id, bool live)
{
    struct seen *s = userdata;
    s->live += live ? 1 : -1;
}

static void
on_event(void *userdata, const json_t *event)
{
    struct seen *s = userdata;
    s->events++;
}

static const struct kiln_image_ref base = {.kind = "qcow2", .location = "/images/base.qcow2"};

static void
test_fake_find_and_lifecycle(void **state)
{
    const struct kiln_driver_ops *d = kiln_driver_find("fake");
    assert_non_null(d);
    assert_ptr_equal(kiln_driver_find("libvirt"), kiln_driver_find("libvirt"));
    assert_null(kiln_driver_find("nope"));
    assert_null(kiln_driver_find(NULL));

    _cleanup_free_ char *dir = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-fake-test", &dir, NULL), 0);
    struct seen seen = {0};
    struct kiln_driver_config cfg = {.build_id = "b1", .work_dir = dir,
                                     .on_resource = on_resource, .userdata = &seen};
    void *conn = NULL;
    struct kiln_error err = {0};
    assert_int_equal(d->open(&cfg, 0, &conn, &err), 0);

    struct kiln_instance *inst = NULL;
    assert_int_equal(d->launch(conn, &base, "build", 60, 0, &inst, &err), 0);
    assert_int_equal(seen.live, 1);
    assert_int_equal(kiln_fake_live_instances(conn), 1);

    char *docs[] = {"/docs/a.yml", "/docs/b.yml", NULL};
    struct kiln_job job = {.documents = docs, .execution_id = "e1", .timeout_seconds = -1};
    struct kiln_engine_events ev = {.event = on_event, .userdata = &seen};
    struct kiln_job_result res = {0};
    assert_int_equal(d->run(inst, &job, dir, &ev, 0, &res, &err), 0);
    assert_int_equal(res.status, KILN_RUN_SUCCESS);
    assert_int_equal(seen.events, 4);
    _cleanup_free_ char *out = kiln_path_join(res.log_dir, "detailedoutput.json");
    struct stat st;
    assert_int_equal(stat(out, &st), 0);
    kiln_job_result_clear(&res);

    /* A snapshot needs a stopped instance. */
    _cleanup_free_ char *dest = kiln_path_join(dir, "out.qcow2");
    struct kiln_snapshot_options so = {.dest = dest};
    struct kiln_image_ref snap = {0};
    assert_int_equal(d->snapshot(inst, &so, 0, &snap, &err), -EBUSY);
    kiln_error_clear(&err);
    assert_int_equal(d->stop(inst, 10, 0, &err), 0);
    assert_int_equal(d->snapshot(inst, &so, 0, &snap, &err), 0);
    assert_string_equal(snap.location, dest);
    assert_string_equal(snap.kind, "qcow2");
    _cleanup_json_ json_t *lineage = NULL;
    assert_int_equal(kiln_json_load_file(dest, 65536, &lineage, NULL), 0);
    assert_string_equal(kiln_json_get_str(lineage, "parent"), "/images/base.qcow2");
    assert_int_equal(json_array_size(json_object_get(lineage, "documents")), 2);
    kiln_image_ref_clear(&snap);

    char *desc = d->describe(inst);
    assert_non_null(strstr(desc, "fake-b1-build"));
    free(desc);
    assert_int_equal(d->terminate(inst, 0, &err), 0);
    assert_int_equal(seen.live, 0);
    assert_int_equal(kiln_fake_live_instances(conn), 0);
    assert_int_equal(d->terminate(NULL, 0, &err), 0);
    d->close(conn);
    kiln_rm_rf(dir, NULL);
}

static void
test_fake_injected_failures(void **state)
{
    const struct kiln_driver_ops *d = &kiln_fake_driver;
    struct kiln_driver_config cfg = {.build_id = "b2", .work_dir = "/nonexistent"};
    void *conn = NULL;
    struct kiln_error err = {0};
    assert_int_equal(d->open(&cfg, 0, &conn, &err), 0);

    /* The second launch fails; the first succeeds. */
    kiln_fake_inject_failure(conn, "launch", 2, -ENOSPC, "disk full");
    struct kiln_instance *a = NULL, *b = NULL;
    assert_int_equal(d->launch(conn, &base, "a", 60, 0, &a, &err), 0);
    assert_int_equal(d->launch(conn, &base, "b", 60, 0, &b, &err), -ENOSPC);
    assert_null(b);
    assert_non_null(strstr(err.message, "disk full"));
    assert_int_equal(kiln_fake_calls(conn, "launch"), 2);
    kiln_error_clear(&err);

    /* A failed job is a result, not an error. */
    kiln_fake_inject_failure(conn, "job", 1, 0, "step Fail exited 1");
    char *docs[] = {"/docs/a.yml", NULL};
    struct kiln_job job = {.documents = docs};
    struct kiln_job_result res = {0};
    assert_int_equal(d->run(a, &job, NULL, NULL, 0, &res, &err), 0);
    assert_int_equal(res.status, KILN_RUN_FAILED);
    assert_non_null(strstr(res.failure, "step Fail exited 1"));
    kiln_job_result_clear(&res);

    /* A terminate failure is reported, yet the instance is released. */
    kiln_fake_inject_failure(conn, "terminate", 1, -EIO, NULL);
    assert_int_equal(d->terminate(a, 0, &err), -EIO);
    assert_int_equal(kiln_fake_live_instances(conn), 0);
    d->close(conn);
    kiln_error_clear(&err);

    /* Failures from the settings, as an infrastructure configuration would give them. */
    _cleanup_json_ json_t *settings = json_pack("{s:{s:s}}", "fail", "run", "agent lost");
    cfg.settings = settings;
    assert_int_equal(d->open(&cfg, 0, &conn, &err), 0);
    assert_int_equal(d->launch(conn, &base, "c", 60, 0, &a, &err), 0);
    assert_int_equal(d->run(a, &job, NULL, NULL, 0, &res, &err), -KILN_E_FAILED);
    assert_non_null(strstr(err.message, "agent lost"));
    d->terminate(a, 0, NULL);
    d->close(conn);

    _cleanup_json_ json_t *bad = json_pack("{s:{s:s}}", "fail", "explode", "x");
    cfg.settings = bad;
    kiln_error_clear(&err);
    assert_int_equal(d->open(&cfg, 0, &conn, &err), -KILN_E_INVALID);
}

static void
on_step_event(void *userdata, const json_t *event)
{
    json_t *steps = userdata;
    const char *type = kiln_json_get_str(event, "event");
    if (kiln_streq(type, "step-start") || kiln_streq(type, "step-end"))
        json_array_append_new(steps, json_pack("{s:s, s:s?, s:s?}", "event", type, "step",
                                               kiln_json_get_str(event, "step"), "status",
                                               kiln_json_get_str(event, "status")));
}

static void
test_fake_hang(void **state)
{
    const struct kiln_driver_ops *d = &kiln_fake_driver;
    struct kiln_driver_config cfg = {.build_id = "b4"};
    void *conn = NULL;
    struct kiln_error err = {0};
    assert_int_equal(d->open(&cfg, 0, &conn, &err), 0);
    struct kiln_instance *a = NULL;
    assert_int_equal(d->launch(conn, &base, "a", 60, 0, &a, &err), 0);
    char *docs[] = {"/docs/a.yml", "/docs/t.yml", NULL};
    char *phases[] = {"test", NULL};
    _cleanup_json_ json_t *steps = json_array();
    struct kiln_engine_events ev = {.event = on_step_event, .userdata = steps};
    struct kiln_job job = {.documents = docs, .phases = phases, .execution_id = "e4",
                           .timeout_seconds = 1800};
    struct kiln_job_result res = {0};

    /* With a timeout: ended as the libvirt driver ends a job whose time ran out. */
    kiln_fake_inject_failure(conn, "hang", 1, 0, "Wait");
    assert_int_equal(d->run(a, &job, NULL, &ev, 0, &res, &err), 0);
    assert_int_equal(res.status, KILN_RUN_FAILED);
    assert_true(res.timed_out);
    assert_string_equal(res.failure,
                        "job e4 timed out after 1800 seconds in test/Wait; the agent cancelled it");
    assert_int_equal(json_array_size(steps), 2);
    assert_string_equal(kiln_json_get_str(json_array_get(steps, 0), "step"), "Wait");
    assert_string_equal(kiln_json_get_str(json_array_get(steps, 1), "status"), "cancelled");
    kiln_job_result_clear(&res);

    /* The next job does not hang. */
    assert_int_equal(d->run(a, &job, NULL, NULL, 0, &res, &err), 0);
    assert_int_equal(res.status, KILN_RUN_SUCCESS);
    assert_false(res.timed_out);
    kiln_job_result_clear(&res);

    /* Without a timeout (0 or -1) a hang has no end: the fake says so instead of waiting. */
    kiln_fake_inject_failure(conn, "hang", 1, 0, NULL);
    job.timeout_seconds = -1;
    assert_int_equal(d->run(a, &job, NULL, NULL, 0, &res, &err), -ETIMEDOUT);
    assert_non_null(strstr(err.message, "job e4 hangs in test/Hang and has no timeout"));
    d->terminate(a, 0, NULL);
    d->close(conn);
}

static void
test_fake_reap_and_flags(void **state)
{
    const struct kiln_driver_ops *d = &kiln_fake_driver;
    struct kiln_driver_config cfg = {.build_id = "b3"};
    void *conn = NULL;
    struct kiln_error err = {0};
    assert_int_equal(d->open(&cfg, 1u << 7, &conn, &err), -EINVAL);
    assert_int_equal(d->open(&cfg, 0, &conn, &err), 0);
    struct kiln_instance *a = NULL;
    assert_int_equal(d->launch(conn, &base, "a", 60, 1u << 9, &a, &err), -EINVAL);
    assert_int_equal(d->launch(conn, &base, "a", 60, 0, &a, &err), 0);
    kiln_fake_crash(a);
    assert_int_equal(d->reap(conn, "other", 0, &err), 0);
    assert_int_equal(kiln_fake_live_instances(conn), 1);
    assert_int_equal(d->reap(conn, "b3", 0, &err), 0);
    assert_int_equal(kiln_fake_live_instances(conn), 0);
    d->close(conn);
}

KILN_TEST_MAIN(cmocka_unit_test(test_fake_find_and_lifecycle),
               cmocka_unit_test(test_fake_injected_failures),
               cmocka_unit_test(test_fake_hang),
               cmocka_unit_test(test_fake_reap_and_flags))
