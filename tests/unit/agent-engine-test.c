/* The executor, running real documents in a throw-away folder: statuses, chaining, loops, if,
 * onFailure, retries, timeouts, reboot and resume, ExecuteDocument, and AWSTOE's log folder. */
#include "kiln-test.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/json.h"
#include "guest-agent/engine.h"

struct fixture {
    char *dir;
    char *logs;
    char *state;
};

static int
setup(void **state)
{
    struct fixture *f = kiln_new(struct fixture, 1);
    assert_int_equal(kiln_mkdtemp("kiln-engine-test", &f->dir, NULL), 0);
    f->logs = kiln_path_join(f->dir, "logs");
    f->state = kiln_path_join(f->dir, "state");
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    kiln_rm_rf(f->dir, NULL);
    free(f->dir);
    free(f->logs);
    free(f->state);
    free(f);
    return 0;
}

static char *
write_doc(struct fixture *f, const char *name, const char *text)
{
    char *path = kiln_path_join(f->dir, name);
    assert_int_equal(kiln_write_file_atomic(path, text, strlen(text), 0644, NULL), 0);
    return path;
}

/* Text with @DIR@ replaced by the fixture folder. */
static char *
with_dir(struct fixture *f, const char *text)
{
    struct kiln_buf b;
    kiln_buf_init(&b);
    const char *p;
    while ((p = strstr(text, "@DIR@"))) {
        kiln_buf_append(&b, text, (size_t)(p - text));
        kiln_buf_append_str(&b, f->dir);
        text = p + 5;
    }
    kiln_buf_append_str(&b, text);
    return kiln_buf_steal(&b);
}

static enum kiln_run_status
run_docs(struct fixture *f, char **docs, json_t *params, char **phases,
         struct kiln_run_result *res)
{
    struct kiln_run_options o = {
        .documents = docs,
        .phases = phases,
        .parameters = params,
        .execution_id = NULL,
        .log_directory = f->logs,
        .state_directory = f->state,
    };
    struct kiln_error err = {0};
    int r = kiln_engine_run(&o, res, &err);
    if (r < 0)
        fail_msg("engine: %s", err.message);
    return res->status;
}

static enum kiln_run_status
run_text(struct fixture *f, const char *text, json_t *params, struct kiln_run_result *res)
{
    char *t = with_dir(f, text);
    char *path = write_doc(f, "doc.yml", t);
    char *docs[] = {path, NULL};
    enum kiln_run_status s = run_docs(f, docs, params, NULL, res);
    free(path);
    free(t);
    return s;
}

static json_t *
detailed(const struct kiln_run_result *res)
{
    char *path = kiln_path_join(res->log_folder, "detailedoutput.json");
    json_t *j = NULL;
    struct kiln_error err = {0};
    if (kiln_json_load_file(path, 1 << 24, &j, &err) < 0)
        fail_msg("%s", err.message);
    free(path);
    return j;
}

static json_t *
step_of(json_t *d, size_t doc, size_t phase, size_t step)
{
    return json_array_get(
        json_object_get(
            json_array_get(json_object_get(json_array_get(json_object_get(d, "documents"), doc),
                                           "phases"),
                           phase),
            "steps"),
        step);
}

/* The step's outputs[i].field (outputs is a JSON-encoded string, as AWSTOE writes it). */
static char *
output_of(json_t *step, size_t i, const char *field)
{
    json_t *o = json_loads(kiln_json_get_str(step, "outputs"), 0, NULL);
    assert_non_null(o);
    const char *v = kiln_json_get_str(json_array_get(o, i), field);
    char *r = kiln_strdup(v ? v : "(none)");
    json_decref(o);
    return r;
}

static char *
read_text(const char *dir, const char *name)
{
    char *path = kiln_path_join(dir, name);
    char *data = NULL;
    size_t len;
    if (kiln_read_file(path, 1 << 24, &data, &len, NULL) < 0)
        data = NULL;
    free(path);
    return data;
}

#define HEAD "name: T\ndescription: engine test\nschemaVersion: 1.0\n"

static void
test_hello_outputs(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    assert_int_equal(run_text(f, HEAD "phases:\n  - name: build\n    steps:\n"
                                      "      - name: Hello\n        action: ExecuteBash\n"
                                      "        inputs:\n          commands:\n"
                                      "            - echo 'Hello World'\n"
                                      "            - echo x > /dev/null && true\n",
                              NULL, &res),
                     KILN_RUN_SUCCESS);
    /* TOE_<YYYY-MM-DD_HH-MM-SS>_UTC-0_<id> */
    const char *base = strrchr(res.log_folder, '/') + 1;
    assert_int_equal(strncmp(base, "TOE_", 4), 0);
    assert_int_equal(strlen(base), strlen("TOE_2022-05-25_14-01-45_UTC-0_") + 36);
    assert_int_equal(strncmp(base + 23, "_UTC-0_", 7), 0);
    json_t *d = detailed(&res);
    assert_string_equal(kiln_json_get_str(d, "status"), "success");
    assert_string_equal(kiln_json_get_str(d, "executionId"), res.execution_id);
    assert_string_equal(kiln_json_get_str(d, "failureMessage"), "");
    json_t *doc = json_array_get(json_object_get(d, "documents"), 0);
    assert_string_equal(kiln_json_get_str(doc, "name"), "T");
    assert_string_equal(kiln_json_get_str(doc, "description"), "engine test");
    json_t *s = step_of(d, 0, 0, 0);
    assert_string_equal(kiln_json_get_str(s, "name"), "Hello");
    assert_string_equal(kiln_json_get_str(s, "status"), "success");
    assert_string_equal(kiln_json_get_str(s, "action"), "ExecuteBash");
    assert_string_equal(kiln_json_get_str(s, "onFailure"), "Abort");
    assert_int_equal(json_integer_value(json_object_get(s, "timeoutSeconds")), 7200);
    assert_int_equal(json_integer_value(json_object_get(s, "maxAttempts")), 1);
    assert_string_equal(kiln_json_get_str(s, "inputs"),
                        "[{\"commands\":[\"echo 'Hello World'\",\"echo x \\u003e /dev/null \\u0026\\u0026 true\"]}]");
    assert_string_equal(kiln_json_get_str(s, "outputs"), "[{\"stdout\":\"Hello World\"}]");
    assert_true(json_is_null(json_object_get(s, "loop")));
    assert_true(json_is_null(json_object_get(s, "detailedOutput")));
    assert_non_null(kiln_json_get_str(s, "startTime"));
    /* The file itself is written as Go's encoder writes it: <, > and & escaped. */
    char *raw = read_text(res.log_folder, "detailedoutput.json");
    assert_non_null(strstr(raw, "echo x \\\\u003e /dev/null \\\\u0026\\\\u0026 true"));
    free(raw);
    /* The document copy, the logs and chaining.json. */
    char *copy = read_text(res.log_folder, "D0__doc.yml");
    assert_non_null(copy);
    assert_non_null(strstr(copy, "echo 'Hello World'"));
    char *console = read_text(res.log_folder, "console.log");
    assert_non_null(strstr(console, "Z Stdout: Hello World\n"));
    assert_non_null(strstr(console, "Z Phase build\n"));
    char *app = read_text(res.log_folder, "application.log");
    assert_non_null(strstr(app, "TOE has completed execution successfully"));
    char *chain = read_text(res.log_folder, "chaining.json");
    json_t *c = json_loads(chain, 0, NULL);
    json_t *cs = json_array_get(
        json_object_get(json_array_get(json_object_get(json_array_get(c, 0), "phases"), 0),
                        "steps"),
        0);
    assert_string_equal(kiln_json_get_str(cs, "outputs"), "[{\"stdout\":\"Hello World\"}]");
    assert_true(json_is_true(json_object_get(
        json_array_get(json_object_get(json_array_get(c, 0), "phases"), 0), "isSelected")));
    json_decref(c);
    free(chain);
    free(app);
    free(console);
    free(copy);
    json_decref(d);
    kiln_run_result_clear(&res);
}

static void
test_variables_and_chaining(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    json_t *params = json_pack("{s:s}", "Who", "kiln");
    assert_int_equal(
        run_text(f, HEAD "parameters:\n  - Who:\n      type: string\n      default: nobody\n"
                         "  - Greeting:\n      type: string\n      default: Hello\n"
                         "constants:\n  - Dir:\n      type: string\n      value: @DIR@\n"
                         "phases:\n  - name: build\n    steps:\n"
                         "      - name: A\n        action: ExecuteBash\n"
                         "        inputs:\n          commands: [\"echo {{ Greeting }} {{ Who }}\"]\n"
                         "      - name: F\n        action: CreateFile\n        inputs:\n"
                         "          - path: '{{ Dir }}/chained.txt'\n"
                         "            content: '{{ build.A.outputs.stdout }}'\n"
                         "  - name: validate\n    steps:\n"
                         "      - name: B\n        action: ExecuteBash\n"
                         "        inputs:\n          commands:\n"
                         "            - \"cat {{ build.F.inputs[0].path }}\"\n"
                         "            - \"echo {{ build.A.outputs.stdout }}!\"\n",
                 params, &res),
        KILN_RUN_SUCCESS);
    json_decref(params);
    json_t *d = detailed(&res);
    char *a = output_of(step_of(d, 0, 0, 0), 0, "stdout");
    assert_string_equal(a, "Hello kiln");
    char *b = output_of(step_of(d, 0, 1, 0), 0, "stdout");
    assert_string_equal(b, "Hello kilnHello kiln!"); /* the file has no newline */
    free(a);
    free(b);
    json_decref(d);
    kiln_run_result_clear(&res);
}

static void
test_missing_parameter(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    assert_int_equal(run_text(f, HEAD "parameters:\n  - Need:\n      type: string\n"
                                      "phases:\n  - name: build\n    steps:\n"
                                      "      - name: A\n        action: ExecuteBash\n"
                                      "        inputs:\n          commands: [\"echo {{ Need }}\"]\n",
                              NULL, &res),
                     KILN_RUN_FAILED);
    assert_non_null(strstr(res.failure, "parameter 'Need' has no value"));
    kiln_run_result_clear(&res);
    /* An undeclared parameter is refused before anything runs. */
    char *t = write_doc(f, "p.yml", HEAD "phases:\n  - name: build\n    steps:\n"
                                         "      - name: A\n        action: ExecuteBash\n"
                                         "        inputs:\n          commands: [\"true\"]\n");
    char *docs[] = {t, NULL};
    json_t *params = json_pack("{s:s}", "Nope", "x");
    struct kiln_run_options o = {.documents = docs, .parameters = params, .log_directory = f->logs};
    struct kiln_error err = {0};
    assert_int_equal(kiln_engine_run(&o, &res, &err), -KILN_E_INVALID);
    assert_non_null(strstr(err.message, "parameter 'Nope' is not declared"));
    json_decref(params);
    free(t);
    kiln_run_result_clear(&res);
}

static void
test_loops(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    assert_int_equal(
        run_text(f, HEAD "phases:\n  - name: build\n    steps:\n"
                         "      - name: For\n        action: ExecuteBash\n"
                         "        loop:\n          for:\n            start: 10\n            end: 4\n"
                         "            updateBy: -3\n"
                         "        inputs:\n          commands: [\"echo {{ loop.index }}:{{ loop.value }}\"]\n"
                         "      - name: Each\n        action: ExecuteBash\n"
                         "        loop:\n          name: L\n          forEach: [a, b, c]\n"
                         "        inputs:\n          commands: [\"echo {{ L.index }}={{ L.value }}\"]\n"
                         "      - name: Text\n        action: ExecuteBash\n"
                         "        loop:\n          forEach:\n            list: x;y\n            delimiter: ';'\n"
                         "        inputs:\n          commands: [\"echo {{ loop.value }}\"]\n",
                 NULL, &res),
        KILN_RUN_SUCCESS);
    json_t *d = detailed(&res);
    const char *want_for[] = {"0:10", "1:7", "2:4"};
    for (size_t i = 0; i < 3; i++) {
        char *o = output_of(step_of(d, 0, 0, 0), i, "stdout");
        assert_string_equal(o, want_for[i]);
        free(o);
    }
    char *o = output_of(step_of(d, 0, 0, 1), 2, "stdout");
    assert_string_equal(o, "2=c");
    free(o);
    o = output_of(step_of(d, 0, 0, 2), 1, "stdout");
    assert_string_equal(o, "y");
    free(o);
    json_t *loop = json_object_get(step_of(d, 0, 0, 1), "loop");
    assert_string_equal(kiln_json_get_str(loop, "name"), "L");
    assert_int_equal(json_array_size(json_object_get(loop, "iterations")), 3);
    json_decref(d);
    kiln_run_result_clear(&res);
}

static void
test_if_and_assert(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    assert_int_equal(
        run_text(f, HEAD "phases:\n  - name: build\n    steps:\n"
                         "      - name: Skipped\n        action: ExecuteBash\n"
                         "        if:\n          fileExists: /nonexistent\n"
                         "        inputs:\n          commands: [\"echo ran\"]\n"
                         "      - name: Ran\n        action: ExecuteBash\n"
                         "        if:\n          and:\n            - folderExists: /\n"
                         "            - not:\n                binaryExists: no-such-binary-here\n"
                         "        inputs:\n          commands: [\"echo 5\"]\n"
                         "      - name: Else\n        action: ExecuteBash\n"
                         "        if:\n          stringEquals: a\n          value: b\n"
                         "          then: Skip\n          else: Execute\n"
                         "        inputs:\n          commands: [\"echo else\"]\n"
                         "      - name: Check\n        action: Assert\n        inputs:\n"
                         "          numberGreaterThan: 4\n          value: '{{ build.Ran.outputs.stdout }}'\n",
                 NULL, &res),
        KILN_RUN_SUCCESS);
    json_t *d = detailed(&res);
    assert_string_equal(kiln_json_get_str(step_of(d, 0, 0, 0), "status"), "skipped");
    assert_string_equal(kiln_json_get_str(step_of(d, 0, 0, 1), "status"), "success");
    assert_string_equal(kiln_json_get_str(step_of(d, 0, 0, 2), "status"), "success");
    assert_string_equal(kiln_json_get_str(step_of(d, 0, 0, 3), "status"), "success");
    json_decref(d);
    kiln_run_result_clear(&res);
    /* A failing assertion fails the step; then: Abort fails a step without running it. */
    assert_int_equal(run_text(f, HEAD "phases:\n  - name: build\n    steps:\n"
                                      "      - name: Check\n        action: Assert\n"
                                      "        onFailure: Continue\n        inputs:\n"
                                      "          stringEquals: x\n          value: y\n"
                                      "      - name: Stop\n        action: ExecuteBash\n"
                                      "        if:\n          folderExists: /\n          then: Abort\n"
                                      "        inputs:\n          commands: [\"touch @DIR@/ran\"]\n",
                              NULL, &res),
                     KILN_RUN_FAILED);
    d = detailed(&res);
    assert_string_equal(kiln_json_get_str(step_of(d, 0, 0, 0), "failureMessage"),
                        "assertion failed");
    assert_string_equal(kiln_json_get_str(step_of(d, 0, 0, 1), "status"), "failed");
    char *ran = kiln_path_join(f->dir, "ran");
    assert_int_not_equal(access(ran, F_OK), 0);
    free(ran);
    json_decref(d);
    kiln_run_result_clear(&res);
}

static void
test_on_failure(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    /* Ignore: the document succeeds with an ignored failure. */
    assert_int_equal(run_text(f, HEAD "phases:\n  - name: build\n    steps:\n"
                                      "      - name: Bad\n        action: ExecuteBash\n"
                                      "        onFailure: Ignore\n"
                                      "        inputs:\n          commands: [\"exit 3\"]\n"
                                      "      - name: Good\n        action: ExecuteBash\n"
                                      "        inputs:\n          commands: [\"true\"]\n",
                              NULL, &res),
                     KILN_RUN_SUCCESS_WITH_IGNORED_FAILURE);
    json_t *d = detailed(&res);
    assert_string_equal(kiln_json_get_str(d, "status"), "SuccessWithIgnoredFailure");
    assert_string_equal(kiln_json_get_str(step_of(d, 0, 0, 0), "status"), "ignored");
    assert_string_equal(kiln_json_get_str(step_of(d, 0, 0, 1), "status"), "success");
    assert_int_equal(res.ignored, 1);
    json_decref(d);
    kiln_run_result_clear(&res);
    /* Continue: later steps and phases run, the document fails. */
    assert_int_equal(run_text(f, HEAD "phases:\n  - name: build\n    steps:\n"
                                      "      - name: Bad\n        action: ExecuteBash\n"
                                      "        onFailure: Continue\n"
                                      "        inputs:\n          commands: [\"exit 3\"]\n"
                                      "  - name: test\n    steps:\n"
                                      "      - name: Good\n        action: ExecuteBash\n"
                                      "        inputs:\n          commands: [\"true\"]\n",
                              NULL, &res),
                     KILN_RUN_FAILED);
    d = detailed(&res);
    assert_string_equal(kiln_json_get_str(d, "status"), "failed");
    assert_string_equal(kiln_json_get_str(step_of(d, 0, 0, 0), "status"), "failed");
    assert_string_equal(kiln_json_get_str(step_of(d, 0, 1, 0), "status"), "success");
    assert_non_null(strstr(kiln_json_get_str(step_of(d, 0, 0, 0), "failureMessage"), "exit status 3"));
    json_decref(d);
    kiln_run_result_clear(&res);
    /* Abort (the default): nothing after the failing step runs. */
    assert_int_equal(run_text(f, HEAD "phases:\n  - name: build\n    steps:\n"
                                      "      - name: Bad\n        action: ExecuteBash\n"
                                      "        inputs:\n          commands: [\"exit 3\"]\n"
                                      "      - name: Never\n        action: ExecuteBash\n"
                                      "        inputs:\n          commands: [\"true\"]\n"
                                      "  - name: test\n    steps:\n"
                                      "      - name: Never2\n        action: ExecuteBash\n"
                                      "        inputs:\n          commands: [\"true\"]\n",
                              NULL, &res),
                     KILN_RUN_FAILED);
    d = detailed(&res);
    json_t *phases = json_object_get(json_array_get(json_object_get(d, "documents"), 0), "phases");
    assert_int_equal(json_array_size(phases), 1);
    assert_int_equal(json_array_size(json_object_get(json_array_get(phases, 0), "steps")), 1);
    assert_int_equal(res.executed, 1);
    assert_int_equal(res.failed, 1);
    json_decref(d);
    kiln_run_result_clear(&res);
}

static void
test_retries_rerun_loop(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    /* The second iteration fails on the first two attempts; each attempt re-runs the loop. */
    assert_int_equal(
        run_text(f, HEAD "phases:\n  - name: build\n    steps:\n"
                         "      - name: Flaky\n        action: ExecuteBash\n        maxAttempts: 3\n"
                         "        loop:\n          forEach: [one, two]\n"
                         "        inputs:\n          commands:\n"
                         "            - echo {{ loop.value }} >> @DIR@/log\n"
                         "            - \"n=$(grep -c two @DIR@/log)\"\n"
                         "            - \"if [ {{ loop.value }} = two ] && [ $n -lt 3 ]; then exit 1; fi\"\n",
                 NULL, &res),
        KILN_RUN_SUCCESS);
    char *log = read_text(f->dir, "log");
    assert_string_equal(log, "one\ntwo\none\ntwo\none\ntwo\n");
    free(log);
    kiln_run_result_clear(&res);
    /* Exhausted attempts fail the step. */
    assert_int_equal(run_text(f, HEAD "phases:\n  - name: build\n    steps:\n"
                                      "      - name: Bad\n        action: ExecuteBash\n"
                                      "        maxAttempts: 2\n"
                                      "        inputs:\n          commands: [\"echo x >> @DIR@/log2; exit 1\"]\n",
                              NULL, &res),
                     KILN_RUN_FAILED);
    log = read_text(f->dir, "log2");
    assert_string_equal(log, "x\nx\n");
    free(log);
    kiln_run_result_clear(&res);
}

static void
test_timeout_kills_group(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    time_t t0 = time(NULL);
    assert_int_equal(run_text(f, HEAD "phases:\n  - name: build\n    steps:\n"
                                      "      - name: Slow\n        action: ExecuteBash\n"
                                      "        timeoutSeconds: 1\n"
                                      "        inputs:\n          commands:\n"
                                      "            - sleep 60 &\n"
                                      "            - echo $! > @DIR@/child.pid\n"
                                      "            - sleep 60\n",
                              NULL, &res),
                     KILN_RUN_FAILED);
    assert_true(time(NULL) - t0 < 10);
    char *pidtext = read_text(f->dir, "child.pid");
    assert_non_null(pidtext);
    pid_t child = (pid_t)strtol(pidtext, NULL, 10);
    assert_true(child > 1);
    /* The background child of the script was killed with its process group. */
    usleep(200000);
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/%d/stat", (int)child);
    char *st = NULL;
    size_t len;
    bool alive = kiln_read_file(proc, 4096, &st, &len, NULL) == 0 && !strstr(st, ") Z ");
    free(st);
    assert_false(alive);
    json_t *d = detailed(&res);
    assert_non_null(strstr(kiln_json_get_str(step_of(d, 0, 0, 0), "failureMessage"), "timed out"));
    json_decref(d);
    free(pidtext);
    kiln_run_result_clear(&res);
}

static void
test_reboot_and_resume(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    const char *text =
        HEAD "phases:\n  - name: build\n    steps:\n"
             "      - name: Once\n        action: ExecuteBash\n"
             "        inputs:\n          commands: [\"echo once >> @DIR@/count\"]\n"
             "      - name: Kernel\n        action: ExecuteBash\n"
             "        inputs:\n          commands:\n"
             "            - echo kernel >> @DIR@/count\n"
             "            - \"if [ ! -f @DIR@/rebooted ]; then touch @DIR@/rebooted; exit 194; fi\"\n"
             "      - name: RebootNow\n        action: Reboot\n"
             "  - name: validate\n    steps:\n"
             "      - name: After\n        action: ExecuteBash\n"
             "        inputs:\n          commands: [\"echo after >> @DIR@/count\", \"echo {{ build.Once.inputs[0].commands }}\"]\n";
    assert_int_equal(run_text(f, text, NULL, &res), KILN_RUN_REBOOT);
    char *id = kiln_strdup(res.execution_id);
    char *folder = kiln_strdup(res.log_folder);
    char *sp = kiln_path_join(f->state, "kiln-agent-state.json");
    assert_int_equal(access(sp, F_OK), 0);
    kiln_run_result_clear(&res);
    /* Resume: Kernel runs again (the step that returned 194), then the Reboot action asks
     * again. */
    assert_int_equal(run_text(f, text, NULL, &res), KILN_RUN_REBOOT);
    assert_string_equal(res.execution_id, id);
    assert_string_equal(res.log_folder, folder);
    kiln_run_result_clear(&res);
    /* Resume after the Reboot action: continues with the next step. */
    assert_int_equal(run_text(f, text, NULL, &res), KILN_RUN_SUCCESS);
    assert_string_equal(res.execution_id, id);
    char *count = read_text(f->dir, "count");
    assert_string_equal(count, "once\nkernel\nkernel\nafter\n");
    assert_int_not_equal(access(sp, F_OK), 0); /* state removed once done */
    json_t *d = detailed(&res);
    assert_string_equal(kiln_json_get_str(d, "status"), "success");
    assert_int_equal(json_array_size(json_object_get(
                         json_array_get(json_object_get(json_array_get(json_object_get(d, "documents"), 0),
                                                        "phases"),
                                        0),
                         "steps")),
                     3);
    char *o = output_of(step_of(d, 0, 1, 0), 0, "stdout");
    assert_non_null(strstr(o, "echo once >>"));
    free(o);
    json_decref(d);
    free(count);
    free(sp);
    free(id);
    free(folder);
    kiln_run_result_clear(&res);
}

static void
test_reboot_inside_execute_document(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    char *inner_text = with_dir(f, HEAD "phases:\n  - name: build\n    steps:\n"
                                         "      - name: X\n        action: ExecuteBash\n"
                                         "        inputs:\n          commands: [\"echo X >> @DIR@/count\"]\n"
                                         "      - name: R\n        action: Reboot\n"
                                         "      - name: Y\n        action: ExecuteBash\n"
                                         "        inputs:\n          commands:\n"
                                         "            - echo Y >> @DIR@/count\n"
                                         "            - \"[ -f @DIR@/y ] || { touch @DIR@/y; exit 194; }\"\n"
                                         "      - name: Z\n        action: ExecuteBash\n"
                                         "        inputs:\n          commands: [\"echo Z {{ build.X.inputs[0].commands }} >> @DIR@/count\"]\n");
    char *inner = write_doc(f, "inner.yml", inner_text);
    const char *outer = HEAD "phases:\n  - name: build\n    steps:\n"
                             "      - name: A\n        action: ExecuteBash\n"
                             "        onFailure: Continue\n"
                             "        inputs:\n          commands: [\"echo A >> @DIR@/count; exit 1\"]\n"
                             "      - name: Nest\n        action: ExecuteDocument\n"
                             "        inputs:\n          document: inner.yml\n"
                             "      - name: C\n        action: ExecuteBash\n"
                             "        inputs:\n          commands: [\"echo C >> @DIR@/count\"]\n";
    assert_int_equal(run_text(f, outer, NULL, &res), KILN_RUN_REBOOT); /* the Reboot action */
    kiln_run_result_clear(&res);
    assert_int_equal(run_text(f, outer, NULL, &res), KILN_RUN_REBOOT); /* Y exits 194 */
    kiln_run_result_clear(&res);
    /* Y runs again and succeeds, Z and C follow; A's failure (Continue) still fails the run. */
    assert_int_equal(run_text(f, outer, NULL, &res), KILN_RUN_FAILED);
    char *count = read_text(f->dir, "count");
    assert_non_null(count);
    if (strncmp(count, "A\nX\nY\nY\nZ [", 11) != 0)
        fail_msg("count: %s", count);
    assert_non_null(strstr(count, "echo X >>"));
    assert_true(strlen(count) > 2 && strcmp(count + strlen(count) - 2, "C\n") == 0);
    json_t *d = detailed(&res);
    json_t *nest = step_of(d, 0, 0, 1);
    assert_string_equal(kiln_json_get_str(nest, "status"), "success");
    json_t *nested = json_array_get(json_object_get(nest, "detailedOutput"), 0);
    /* The nested record holds every step once: X, R, Y, Z. */
    json_t *steps = json_object_get(json_array_get(json_object_get(json_array_get(
                                        json_object_get(nested, "documents"), 0), "phases"), 0),
                                    "steps");
    assert_int_equal(json_array_size(steps), 4);
    assert_string_equal(kiln_json_get_str(json_array_get(steps, 2), "name"), "Y");
    assert_string_equal(kiln_json_get_str(d, "status"), "failed");
    json_decref(d);
    free(count);
    free(inner);
    free(inner_text);
    kiln_run_result_clear(&res);
}

static void
test_if_after_reboot_action(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    /* The step after a Reboot action is a fresh step: its if is evaluated (and skips it). */
    const char *doc = HEAD "phases:\n  - name: build\n    steps:\n"
                           "      - name: R\n        action: Reboot\n"
                           "      - name: S\n        action: ExecuteBash\n"
                           "        if:\n          fileExists: /nonexistent/file\n"
                           "        inputs:\n          commands: [\"touch @DIR@/ran\"]\n";
    assert_int_equal(run_text(f, doc, NULL, &res), KILN_RUN_REBOOT);
    kiln_run_result_clear(&res);
    assert_int_equal(run_text(f, doc, NULL, &res), KILN_RUN_SUCCESS);
    char *ran = kiln_path_join(f->dir, "ran");
    assert_int_not_equal(access(ran, F_OK), 0);
    json_t *d = detailed(&res);
    assert_string_equal(kiln_json_get_str(step_of(d, 0, 0, 0), "status"), "success");
    assert_string_equal(kiln_json_get_str(step_of(d, 0, 0, 1), "status"), "skipped");
    json_decref(d);
    free(ran);
    kiln_run_result_clear(&res);
}

static void
test_execute_document(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    char *inner = write_doc(f, "inner.yml",
                            HEAD "parameters:\n  - Word:\n      type: string\n"
                                 "phases:\n  - name: build\n    steps:\n"
                                 "      - name: Say\n        action: ExecuteBash\n"
                                 "        inputs:\n          commands: [\"echo {{ Word }}\"]\n"
                                 "  - name: test\n    steps:\n"
                                 "      - name: NotRun\n        action: ExecuteBash\n"
                                 "        inputs:\n          commands: [\"exit 1\"]\n");
    assert_int_equal(run_text(f, HEAD "phases:\n  - name: build\n    steps:\n"
                                      "      - name: Nested\n        action: ExecuteDocument\n"
                                      "        inputs:\n          document: inner.yml\n"
                                      "          phases: build\n          parameters:\n"
                                      "            - name: Word\n              value: nested-hello\n",
                              NULL, &res),
                     KILN_RUN_SUCCESS);
    json_t *d = detailed(&res);
    json_t *s = step_of(d, 0, 0, 0);
    assert_int_equal(json_integer_value(json_object_get(s, "timeoutSeconds")), -1);
    json_t *nested = json_array_get(json_object_get(s, "detailedOutput"), 0);
    assert_string_equal(kiln_json_get_str(nested, "status"), "success");
    char *o = output_of(step_of(nested, 0, 0, 0), 0, "stdout");
    assert_string_equal(o, "nested-hello");
    free(o);
    o = output_of(s, 0, "status");
    assert_string_equal(o, "success");
    free(o);
    json_decref(d);
    free(inner);
    kiln_run_result_clear(&res);
}

static void
test_multi_document_phases(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    char *a = write_doc(f, "a.yml", HEAD "phases:\n  - name: build\n    steps:\n"
                                         "      - name: A\n        action: ExecuteBash\n"
                                         "        inputs:\n          commands: [\"echo a-build\"]\n"
                                         "  - name: test\n    steps:\n"
                                         "      - name: A\n        action: ExecuteBash\n"
                                         "        inputs:\n          commands: [\"echo a-test\"]\n");
    char *b = write_doc(f, "b.yml", HEAD "phases:\n  - name: test\n    steps:\n"
                                         "      - name: B\n        action: ExecuteBash\n"
                                         "        inputs:\n          commands: [\"echo b-test\"]\n");
    char *docs[] = {a, b, NULL};
    char *phases[] = {"test", NULL};
    assert_int_equal(run_docs(f, docs, NULL, phases, &res), KILN_RUN_SUCCESS);
    json_t *d = detailed(&res);
    json_t *docsj = json_object_get(d, "documents");
    assert_int_equal(json_array_size(docsj), 2);
    char *o = output_of(step_of(d, 0, 0, 0), 0, "stdout");
    assert_string_equal(o, "a-test");
    free(o);
    o = output_of(step_of(d, 1, 0, 0), 0, "stdout");
    assert_string_equal(o, "b-test");
    free(o);
    char *copy = read_text(res.log_folder, "D1__b.yml");
    assert_non_null(copy);
    free(copy);
    json_decref(d);
    free(a);
    free(b);
    kiln_run_result_clear(&res);
}

static void
test_config_file(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    char *doc = write_doc(f, "c.yml", HEAD "parameters:\n  - P:\n      type: string\n"
                                           "phases:\n  - name: build\n    steps:\n"
                                           "      - name: A\n        action: ExecuteBash\n"
                                           "        inputs:\n          commands: [\"echo {{ P }}\"]\n");
    char *cfgtext = kiln_asprintf("{\"documents\":[{\"path\":\"%s\",\"parameters\":[{\"name\":\"P\","
                                  "\"value\":\"from-config\"}]}],\"phases\":\"build\","
                                  "\"executionId\":\"cfg-id-1\",\"logDirectory\":\"%s\"}",
                                  doc, f->logs);
    char *cfg = write_doc(f, "config.json", cfgtext);
    struct kiln_run_options o = {.config_path = cfg};
    struct kiln_error err = {0};
    assert_int_equal(kiln_engine_run(&o, &res, &err), 0);
    assert_int_equal(res.status, KILN_RUN_SUCCESS);
    assert_string_equal(res.execution_id, "cfg-id-1");
    json_t *d = detailed(&res);
    char *out = output_of(step_of(d, 0, 0, 0), 0, "stdout");
    assert_string_equal(out, "from-config");
    free(out);
    json_decref(d);
    free(cfg);
    free(cfgtext);
    free(doc);
    kiln_run_result_clear(&res);
}

static void
test_invalid_documents_refused(void **state)
{
    struct fixture *f = *state;
    char *bad = write_doc(f, "bad.yml", HEAD "phases:\n  - name: build\n    steps:\n"
                                             "      - name: A\n        action: Nope\n");
    char *docs[] = {bad, NULL};
    struct kiln_run_options o = {.documents = docs, .log_directory = f->logs};
    struct kiln_run_result res = {0};
    struct kiln_error err = {0};
    assert_int_equal(kiln_engine_run(&o, &res, &err), -KILN_E_INVALID);
    assert_non_null(strstr(err.message, "bad.yml:8:17: phases[0].steps[0]: unknown action 'Nope'"));
    /* Nothing ran: no log folder. */
    assert_int_not_equal(access(f->logs, F_OK), 0);
    free(bad);
    kiln_run_result_clear(&res);
}

static void
test_stale_state_refused(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    assert_int_equal(run_text(f, HEAD "phases:\n  - name: build\n    steps:\n"
                                      "      - name: R\n        action: Reboot\n",
                              NULL, &res),
                     KILN_RUN_REBOOT);
    kiln_run_result_clear(&res);
    /* The document changed since the state was saved: refuse rather than resume elsewhere. */
    char *path = write_doc(f, "doc.yml", HEAD "phases:\n  - name: build\n    steps:\n"
                                             "      - name: Other\n        action: Reboot\n");
    char *docs[] = {path, NULL};
    struct kiln_run_options o = {.documents = docs, .log_directory = f->logs,
                                 .state_directory = f->state};
    struct kiln_error err = {0};
    assert_int_equal(kiln_engine_run(&o, &res, &err), -KILN_E_INVALID);
    assert_non_null(strstr(err.message, "saved state is for other documents"));
    free(path);
    kiln_run_result_clear(&res);
}

static void
test_allowed_values_at_run_time(void **state)
{
    struct fixture *f = *state;
    struct kiln_run_result res = {0};
    json_t *params = json_pack("{s:s}", "Mode", "medium");
    assert_int_equal(run_text(f, HEAD "parameters:\n  - Mode:\n      type: string\n"
                                      "      default: fast\n      allowedValues: [fast, slow]\n"
                                      "phases:\n  - name: build\n    steps:\n"
                                      "      - name: A\n        action: ExecuteBash\n"
                                      "        inputs:\n          commands: [\"echo {{ Mode }}\"]\n",
                              params, &res),
                     KILN_RUN_FAILED);
    assert_non_null(strstr(res.failure, "parameter 'Mode': 'medium' is not one of its allowedValues"));
    json_decref(params);
    kiln_run_result_clear(&res);
}

static void
test_cancel(void **state)
{
    struct fixture *f = *state;
    char *path = write_doc(f, "c.yml", HEAD "phases:\n  - name: build\n    steps:\n"
                                          "      - name: A\n        action: ExecuteBash\n"
                                          "        inputs:\n          commands: [\"touch x\"]\n");
    char *docs[] = {path, NULL};
    volatile sig_atomic_t cancel = 1;
    struct kiln_run_options o = {.documents = docs, .log_directory = f->logs, .cancel = &cancel};
    struct kiln_run_result res = {0};
    struct kiln_error err = {0};
    assert_int_equal(kiln_engine_run(&o, &res, &err), 0);
    assert_int_equal(res.status, KILN_RUN_CANCELLED);
    assert_int_equal(res.executed, 0);
    free(path);
    kiln_run_result_clear(&res);
}

struct recorded {
    json_t *events;
    struct kiln_buf console;
};

static void
record_event(void *userdata, const json_t *ev)
{
    struct recorded *r = userdata;
    json_array_append_new(r->events, json_deep_copy(ev));
}

static void
record_console(void *userdata, const char *stream, const char *data, size_t len)
{
    struct recorded *r = userdata;
    (void)stream;
    kiln_buf_append(&r->console, data, len);
}

static void
test_events(void **state)
{
    struct fixture *f = *state;
    char *t = with_dir(f, HEAD "phases:\n  - name: build\n    steps:\n"
                               "      - name: Flaky\n        action: ExecuteBash\n        maxAttempts: 2\n"
                               "        inputs:\n          commands:\n            - echo try\n"
                               "            - \"[ -f @DIR@/once ] || { touch @DIR@/once; exit 1; }\"\n");
    char *path = write_doc(f, "e.yml", t);
    char *docs[] = {path, NULL};
    struct recorded rec = {json_array(), {0}};
    kiln_buf_init(&rec.console);
    struct kiln_engine_events ev = {record_event, record_console, &rec};
    struct kiln_run_options o = {.documents = docs, .log_directory = f->logs, .events = &ev};
    struct kiln_run_result res = {0};
    struct kiln_error err = {0};
    assert_int_equal(kiln_engine_run(&o, &res, &err), 0);
    assert_int_equal(res.status, KILN_RUN_SUCCESS);
    static const char *const want[] = {"document-start", "phase-start", "step-start",
                                       "step-retry",     "step-end",    "phase-end",
                                       "document-end"};
    assert_int_equal(json_array_size(rec.events), ARRAY_SIZE(want));
    for (size_t i = 0; i < ARRAY_SIZE(want); i++)
        assert_string_equal(kiln_json_get_str(json_array_get(rec.events, i), "event"), want[i]);
    json_t *end = json_array_get(rec.events, 4);
    assert_string_equal(kiln_json_get_str(end, "status"), "success");
    assert_string_equal(kiln_json_get_str(end, "step"), "Flaky");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rec.events, 3), "attempt")), 2);
    assert_string_equal(rec.console.data, "try\ntry\n");
    json_decref(rec.events);
    kiln_buf_clear(&rec.console);
    kiln_run_result_clear(&res);
    free(path);
    free(t);
}

KILN_TEST_MAIN(cmocka_unit_test_setup_teardown(test_hello_outputs, setup, teardown),
               cmocka_unit_test_setup_teardown(test_variables_and_chaining, setup, teardown),
               cmocka_unit_test_setup_teardown(test_missing_parameter, setup, teardown),
               cmocka_unit_test_setup_teardown(test_loops, setup, teardown),
               cmocka_unit_test_setup_teardown(test_if_and_assert, setup, teardown),
               cmocka_unit_test_setup_teardown(test_on_failure, setup, teardown),
               cmocka_unit_test_setup_teardown(test_retries_rerun_loop, setup, teardown),
               cmocka_unit_test_setup_teardown(test_timeout_kills_group, setup, teardown),
               cmocka_unit_test_setup_teardown(test_reboot_and_resume, setup, teardown),
               cmocka_unit_test_setup_teardown(test_execute_document, setup, teardown),
               cmocka_unit_test_setup_teardown(test_if_after_reboot_action, setup, teardown),
               cmocka_unit_test_setup_teardown(test_reboot_inside_execute_document, setup, teardown),
               cmocka_unit_test_setup_teardown(test_multi_document_phases, setup, teardown),
               cmocka_unit_test_setup_teardown(test_config_file, setup, teardown),
               cmocka_unit_test_setup_teardown(test_invalid_documents_refused, setup, teardown),
               cmocka_unit_test_setup_teardown(test_stale_state_refused, setup, teardown),
               cmocka_unit_test_setup_teardown(test_allowed_values_at_run_time, setup, teardown),
               cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
               cmocka_unit_test_setup_teardown(test_events, setup, teardown))
