/* VM test of a job's whole-time limit: a build on the tiny image (libvirt, TCG unless
 * KILN_TEST_ACCEL says otherwise) whose test phase sleeps for ever, with no step timeout. Only
 * the test stage's limit (test_timeout_seconds, the finer form of imageTestsConfiguration's
 * timeoutMinutes) can end it: the libvirt driver has the guest agent cancel the job, and the
 * build ends FAILED with a reason naming the component, the step and the limit. Afterwards
 * nothing of the build remains: no domain, no resource in the store, nothing in the home's
 * builds/ and run/ folders, no agent socket in /tmp. A second case reboots the guest (exit 194)
 * before hanging: the limit holds across the reboot. Each case runs in its own Kiln home.
 * Components: tests/data/recipes/job-timeout/. Label: vm. */
#include "kiln-test.h"

#include "factory-vm-common.h"

#include <dirent.h>
#include <libvirt/libvirt.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/hash.h"
#include "drivers/command.h"
#include "factory/build.h"
#include "images/catalog.h"

struct fx {
    struct vm_home h;
    struct kiln_buf steps;
    struct kiln_build_progress progress;
    time_t test_started; /* when the test stage began */
};

static void
on_step(void *userdata, const char *text)
{
    struct fx *f = userdata;
    kiln_buf_appendf(&f->steps, "%s\n", text);
}

static void
on_stage(void *userdata, const char *stage)
{
    struct fx *f = userdata;
    if (kiln_streq(stage, "test"))
        f->test_started = time(NULL);
}

static void
write_recipe(struct fx *f, const char *name, const char *component)
{
    char *comp =
        kiln_asprintf("%s/tests/data/recipes/job-timeout/%s", kiln_test_source_dir(), component);
    char *recipe = kiln_asprintf("name: %s\nsemanticVersion: 1.0.0\nparentImage: tiny\n"
                                 "components:\n  - path: %s\n",
                                 name, comp);
    vm_put(f->h.dir, "recipe.yml", recipe);
    free(recipe);
    free(comp);
}

static int
setup(void **state)
{
    struct fx *f = kiln_new(struct fx, 1);
    if (vm_home_open(&f->h, "kiln-jt-vm", "[qcow2]", true) < 0)
        return -1;
    kiln_buf_init(&f->steps);
    f->progress = (struct kiln_build_progress){.stage = on_stage, .step = on_step, .userdata = f};
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    vm_home_close(&f->h);
    kiln_buf_clear(&f->steps);
    free(f);
    return 0;
}

/* Run the build with a test stage limit of seconds; it must fail. Returns its result after
 * checking the reason names the component, the step Hang and the limit, that the cancelled step
 * is in the fetched logs, and that nothing of the build remains. */
static void
build_times_out(struct fx *f, int seconds, const char *component_name,
                struct kiln_build_result *res)
{
    struct kiln_build_options opts = {
        .recipe_path = f->h.recipe,
        .infrastructure_path = f->h.infra,
        .distribution_path = f->h.dist,
        .home = f->h.dir,
        .store = f->h.store,
        .ready_timeout_seconds = 300,
        .progress = &f->progress,
        .test_timeout_seconds = seconds,
    };
    struct kiln_error err = {0};
    time_t t0 = time(NULL);
    assert_true(kiln_build_run(&opts, res, &err) < 0);
    time_t end = time(NULL);
    fprintf(stderr, "failed after %lld s (test stage %lld s): %s\nsteps:\n%s",
            (long long)(end - t0), (long long)(end - f->test_started), res->reason, f->steps.data);
    assert_int_equal(res->status, KILN_IMAGE_FAILED);
    /* Ended by the limit, not much later: the grace is 10 s, releasing the instance a few. */
    assert_true(f->test_started > 0);
    assert_true(end - f->test_started >= seconds);
    assert_true(end - f->test_started < seconds + 30);
    char *what = kiln_asprintf("test of component 1 (%s,", component_name);
    assert_non_null(strstr(res->reason, what));
    free(what);
    assert_non_null(strstr(res->reason, "timed out in test/Hang after "));
    char *limit = kiln_asprintf("(the test stage's limit, test_timeout_seconds: %d)", seconds);
    assert_non_null(strstr(res->reason, limit));
    free(limit);
    assert_non_null(strstr(res->reason, "the job was cancelled"));
    assert_non_null(strstr(res->reason, "last output: "));
    assert_non_null(strstr(res->reason, "hanging (logs: "));
    assert_non_null(strstr(res->reason, "(logs: "));

    /* The agent ended the job: its logs were fetched, with the cancelled step recorded. */
    const char *logs = strstr(res->reason, "(logs: ") + 7;
    char *log_dir = kiln_strndup(logs, strcspn(logs, ")"));
    char *argv[] = {"grep", "-rl", "--include=detailedoutput.json", "cancelled", log_dir, NULL};
    char *found = NULL;
    assert_int_equal(kiln_command_run(argv, &found, NULL), 0);
    assert_non_null(strstr(found, "detailedoutput.json"));
    free(found);
    free(log_dir);

    /* Nothing of the build remains. */
    vm_assert_no_leftovers(&f->h, res->build_id);
    struct kiln_image_record *rec = NULL;
    assert_int_equal(kiln_store_image_get_by_build_id(f->h.store, res->build_id, &rec, NULL), 0);
    assert_int_equal(rec->status, KILN_IMAGE_FAILED);
    assert_string_equal(rec->reason, res->reason);
    assert_int_equal(rec->n_outputs, 0);
    kiln_image_record_free(rec);
}

static void
test_test_phase_times_out(void **state)
{
    struct fx *f = *state;
    write_recipe(f, "jt-hang-test", "hang-test.yml");
    struct kiln_build_result res;
    build_times_out(f, 12, "hang-test", &res);
    /* The test phase started, its first step passed on the new image, the second hung. */
    assert_non_null(strstr(f->steps.data, "test 1/1 hang-test: test/Check"));
    assert_non_null(strstr(f->steps.data, "test 1/1 hang-test: test/Hang cancelled"));
    /* The first component's test job got the whole stage. */
    assert_non_null(strstr(res.reason, "timed out in test/Hang after 12 s"));
    kiln_build_result_clear(&res);
}

static void
test_limit_holds_across_a_reboot(void **state)
{
    struct fx *f = *state;
    write_recipe(f, "jt-reboot", "reboot-hang.yml");
    struct kiln_build_result res;
    /* Enough for the reboot under TCG; the hang after it must still end at the same limit. */
    build_times_out(f, 40, "reboot-hang", &res);
    assert_non_null(strstr(f->steps.data, "rebooting the guest"));
    assert_non_null(strstr(f->steps.data, "test 1/1 reboot-hang: test/Hang cancelled"));
    kiln_build_result_clear(&res);
}

KILN_TEST_MAIN(cmocka_unit_test_setup_teardown(test_test_phase_times_out, setup, teardown),
               cmocka_unit_test_setup_teardown(test_limit_holds_across_a_reboot, setup, teardown))
