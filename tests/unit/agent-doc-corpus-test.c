/* Real component documents (tests/data/components/, see SOURCES.md there): every Linux document
 * validates, except the ones listed below with the real mistake each one contains; documents
 * that are not YAML are rejected with a parse error; Windows actions are refused on Linux; and a
 * representative set runs for real in a throw-away folder. */
#include "kiln-test.h"

#include <dirent.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/json.h"
#include "guest-agent/document.h"
#include "guest-agent/engine.h"

/* Documents with real mistakes, and each mistake (all must be reported, nothing else). */
static const struct {
    const char *file;
    const char *errors[8];
} expected_failures[] = {
    /* Refers to steps that the document does not have (they were removed upstream). */
    {"aws__aws-parallelcluster__cli__src__pcluster__resources__imagebuilder__custom_script.yml",
     {":31:15: phases[0].steps[2].inputs: '{{ build.ScriptUrlScheme.outputs.stdout }}': no step "
      "named 'ScriptUrlScheme' in phase 'build'",
      ":31:15: phases[0].steps[2].inputs: '{{ build.ScriptUrl.outputs.stdout }}': no step named "
      "'ScriptUrl' in phase 'build'"}},
    /* The schema template from the user guide: placeholders instead of values. */
    {"awsdocs__ec2-image-builder-user-guide__doc_source__image-builder-application-documents.md__"
     "block03.yml",
     {":3:16: schemaVersion: unsupported schema version 'string': must be 1.0",
      ":10:27: phases[0].steps[0].timeoutSeconds: must be an integer",
      ":11:22: phases[0].steps[0].onFailure: must be one of Abort, Continue, Ignore (got "
      "'Abort|Continue|Ignore')",
      ":12:24: phases[0].steps[0].maxAttempts: must be an integer",
      ":6:3: phases: must contain at least one of the phases build, validate, test",
      ":9:19: phases[0].steps[0]: unknown action 'string'"}},
    /* ExecuteDocument of a document that is not part of the example. */
    {"awsdocs__ec2-image-builder-user-guide__doc_source__toe-action-modules.md__block06.yml",
     {":10:21: phases[0].steps[0].inputs: cannot read document 'Sample-1.yaml'"}},
    /* The file ends with "inputs:" and nothing after it. */
    {"fdool73__ec2-image-builder-hardening-pipeline__files__aws-cli-version-2-linux.yml",
     {":95:9: phases[0].steps[7]: ExecuteBash requires inputs"}},
    /* Test fixtures of a document library: deliberately broken documents. */
    {"toadslop__aws_imagebuilder_component__test__reboot.yml",
     {":14:13: phases[0].steps[1]: duplicate step name 'RebootStep' in phase 'build'",
      ":19:22: phases[0].steps[1].inputs.delaySeconds: must be an integer, not null"}},
    {"toadslop__aws_imagebuilder_component__test__set-file-encoding.yml",
     {":13:13: phases[0].steps[1]: duplicate step name 'SettingFileEncodingProperty' in phase "
      "'build'"}},
    {"toadslop__aws_imagebuilder_component__test__test.yml",
     {":10:5: constants[0]: duplicate variable name 'Source'",
      ":104:24: phases[0].steps[7].loop.forEach: delimiter must be one character",
      ":41:21: phases[0].steps[4].inputs: cannot read document 'Sample-1.yaml'",
      ":126:18: phases[0].steps[9].inputs: '{{ validate.ApplicationVersion.outputs.stdout }}': no "
      "phase named 'validate'"}},
};

static char *
data_dir(const char *sub)
{
    return kiln_asprintf("%s/tests/data/components/%s", kiln_test_source_dir(), sub);
}

/* Sorted file names of a folder. */
static char **
list_dir(const char *dir, size_t *ret_n)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    char **v = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        v = kiln_reallocarray(v, n + 1, sizeof(*v));
        v[n++] = kiln_strdup(e->d_name);
    }
    closedir(d);
    for (size_t i = 0; i + 1 < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(v[i], v[j]) > 0) {
                char *t = v[i];
                v[i] = v[j];
                v[j] = t;
            }
    *ret_n = n;
    return v;
}

static void
test_corpus_validates(void **state)
{
    (void)state;
    char *dir = data_dir("corpus");
    size_t n;
    char **files = list_dir(dir, &n);
    assert_true(n >= 100);
    size_t valid = 0, matched = 0;
    for (size_t i = 0; i < n; i++) {
        char *path = kiln_path_join(dir, files[i]);
        struct kiln_diags d = {0};
        char *paths[] = {path, NULL};
        int r = kiln_documents_check(paths, &d);
        int expect = -1;
        for (size_t k = 0; k < ARRAY_SIZE(expected_failures); k++)
            if (strcmp(expected_failures[k].file, files[i]) == 0)
                expect = (int)k;
        char *all = kiln_diags_format(&d);
        if (expect < 0) {
            if (r != 0)
                fail_msg("%s: expected to validate, got:\n%s", files[i], all);
            valid++;
        } else {
            if (r == 0)
                fail_msg("%s: expected to fail", files[i]);
            size_t count = 0;
            for (size_t k = 0; expected_failures[expect].errors[k]; k++, count++) {
                char *want = kiln_asprintf("%s%s", path, expected_failures[expect].errors[k]);
                if (!kiln_diags_contains(&d, want))
                    fail_msg("%s: missing \"%s\" in:\n%s", files[i], want, all);
                free(want);
            }
            if (d.n != count)
                fail_msg("%s: %zu problems, expected %zu:\n%s", files[i], d.n, count, all);
            matched++;
        }
        free(all);
        kiln_diags_clear(&d);
        free(path);
        free(files[i]);
    }
    assert_int_equal(matched, ARRAY_SIZE(expected_failures));
    printf("%zu documents valid, %zu with known mistakes\n", valid, matched);
    free(files);
    free(dir);
}

static void
test_invalid_yaml_rejected(void **state)
{
    (void)state;
    char *dir = data_dir("invalid");
    size_t n;
    char **files = list_dir(dir, &n);
    assert_true(n >= 2);
    for (size_t i = 0; i < n; i++) {
        char *path = kiln_path_join(dir, files[i]);
        struct kiln_diags d = {0};
        struct kiln_document *doc = NULL;
        assert_int_equal(kiln_document_load(path, &doc, &d), -KILN_E_PARSE);
        assert_null(doc);
        assert_int_equal(d.n, 1);
        /* The YAML error names the file and the position. */
        char *prefix = kiln_asprintf("%s:", path);
        assert_true(kiln_diags_contains(&d, prefix));
        free(prefix);
        kiln_diags_clear(&d);
        free(path);
        free(files[i]);
    }
    free(files);
    free(dir);
}

static void
test_windows_refused(void **state)
{
    (void)state;
    char *dir = data_dir("windows");
    size_t n;
    char **files = list_dir(dir, &n);
    assert_true(n >= 1);
    for (size_t i = 0; i < n; i++) {
        char *path = kiln_path_join(dir, files[i]);
        struct kiln_diags d = {0};
        char *paths[] = {path, NULL};
        assert_int_equal(kiln_documents_check(paths, &d), -KILN_E_INVALID);
        assert_true(kiln_diags_contains(&d, "is not supported on Linux"));
        kiln_diags_clear(&d);
        free(path);
        free(files[i]);
    }
    free(files);
    free(dir);
}

/* Run a corpus document for real; returns the detailed output. */
static json_t *
run_corpus(const char *name, const char *logs, const char *state_dir, json_t *params,
           enum kiln_run_status want, char **ret_console)
{
    char *dir = data_dir(strchr(name, '_') ? "corpus" : ".");
    char *path = kiln_path_join(dir, name);
    char *docs[] = {path, NULL};
    struct kiln_run_options o = {.documents = docs, .log_directory = logs,
                                 .state_directory = state_dir, .parameters = params};
    struct kiln_run_result res = {0};
    struct kiln_error err = {0};
    if (kiln_engine_run(&o, &res, &err) < 0)
        fail_msg("%s: %s", name, err.message);
    if (res.status != want)
        fail_msg("%s: status %d (%s), expected %d", name, res.status,
                 res.failure ? res.failure : "", want);
    char *dp = kiln_path_join(res.log_folder, "detailedoutput.json");
    json_t *j = NULL;
    assert_int_equal(kiln_json_load_file(dp, 1 << 24, &j, NULL), 0);
    if (ret_console) {
        char *cp = kiln_path_join(res.log_folder, "console.log");
        size_t len;
        assert_int_equal(kiln_read_file(cp, 1 << 24, ret_console, &len, NULL), 0);
        free(cp);
    }
    free(dp);
    kiln_run_result_clear(&res);
    free(path);
    free(dir);
    return j;
}

static char *
step_output(json_t *d, size_t phase, size_t step)
{
    json_t *s = json_array_get(
        json_object_get(json_array_get(json_object_get(json_array_get(json_object_get(d, "documents"), 0),
                                                       "phases"),
                                       phase),
                        "steps"),
        step);
    json_t *o = json_loads(kiln_json_get_str(s, "outputs"), 0, NULL);
    const char *v = kiln_json_get_str(json_array_get(o, 0), "stdout");
    char *r = kiln_strdup(v ? v : "");
    json_decref(o);
    return r;
}

static void
expect_output(json_t *d, size_t phase, size_t step, const char *want)
{
    char *o = step_output(d, phase, step);
    assert_string_equal(o, want);
    free(o);
}

static void
test_corpus_runs(void **state)
{
    (void)state;
    char *tmp = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-corpus-run", &tmp, NULL), 0);
    char *logs = kiln_path_join(tmp, "logs");
    char *states = kiln_path_join(tmp, "state");

    /* The hello-world component of the Image Builder samples. */
    json_t *d = run_corpus("aws-samples__amazon-ec2-image-builder-samples__CDK__Linux__hello-world__"
                           "example-component__hello-world-component.yml",
                           logs, NULL, NULL, KILN_RUN_SUCCESS, NULL);
    assert_string_equal(kiln_json_get_str(d, "status"), "success");
    json_decref(d);

    /* The local-run example of the user guide: the very document of AWSTOE's reference log. */
    char *console = NULL;
    d = run_corpus("awsdocs__ec2-image-builder-user-guide__doc_source__image-builder-component-"
                   "manager-local.md__block02.yml",
                   logs, NULL, NULL, KILN_RUN_SUCCESS, &console);
    expect_output(d, 0, 0, "Hello World from the build phase.");
    expect_output(d, 1, 0, "Hello World from the validate phase.");
    expect_output(d, 2, 0, "Hello World from the test phase.");
    assert_non_null(strstr(console, "Z Stdout: Hello World from the validate phase.\n"));
    free(console);
    json_decref(d);

    /* A parameter with its default, then given on the command line. */
    const char *params_doc = "awsdocs__ec2-image-builder-user-guide__doc_source__manage-component-"
                             "parameters.md__block01.yml";
    d = run_corpus(params_doc, logs, NULL, NULL, KILN_RUN_SUCCESS, NULL);
    expect_output(d, 0, 0, "Hello World! Build phase. My input parameter value is It's me!");
    json_decref(d);
    json_t *p = json_pack("{s:s}", "MyInputParameter", "kiln");
    d = run_corpus(params_doc, logs, NULL, p, KILN_RUN_SUCCESS, NULL);
    expect_output(d, 2, 0, "Hello World! Test phase. My input parameter value is kiln");
    json_decref(p);
    json_decref(d);

    /* A JSON document, and one with timeoutSeconds/maxAttempts/onFailure spelled out. */
    d = run_corpus("jacklin213__imagebuilder-component-builder__src__components__editor__hello_"
                   "world.json.json",
                   logs, NULL, NULL, KILN_RUN_SUCCESS, NULL);
    expect_output(d, 1, 0, "Hello World! Validate.");
    json_decref(d);
    d = run_corpus("cloudadder__cdk-ec2-imagebuilder__test__components__helloworld.yml", logs, NULL,
                   NULL, KILN_RUN_SUCCESS, NULL);
    expect_output(d, 0, 0, "Hello World");
    json_decref(d);

    /* The user guide's exit-code-194 example: reboot requested, then resumed; the step runs
     * again and finds its indicator file (it uses /var/tmp/reboot-indicator itself). */
    unlink("/var/tmp/reboot-indicator");
    const char *reboot_doc = "awsdocs__ec2-image-builder-user-guide__doc_source__toe-action-"
                             "modules.md__block01.yml";
    d = run_corpus(reboot_doc, logs, states, NULL, KILN_RUN_REBOOT, NULL);
    json_decref(d);
    assert_int_equal(access("/var/tmp/reboot-indicator", F_OK), 0);
    d = run_corpus(reboot_doc, logs, states, NULL, KILN_RUN_SUCCESS, NULL);
    expect_output(d, 0, 0, "The reboot file exists. Deleting it and exiting with success.");
    json_decref(d);
    assert_int_not_equal(access("/var/tmp/reboot-indicator", F_OK), 0);

    /* File manipulation and chaining (Kiln's own test document, in a throw-away folder). */
    p = json_pack("{s:s}", "Dir", tmp);
    d = run_corpus("file-manipulation.yml", logs, NULL, p, KILN_RUN_SUCCESS, NULL);
    json_decref(p);
    expect_output(d, 1, 0, "first line\nsecond line");
    json_decref(d);

    kiln_rm_rf(tmp, NULL);
    free(states);
    free(logs);
    free(tmp);
}

KILN_TEST_MAIN(cmocka_unit_test(test_corpus_validates), cmocka_unit_test(test_invalid_yaml_rejected),
               cmocka_unit_test(test_windows_refused), cmocka_unit_test(test_corpus_runs))
