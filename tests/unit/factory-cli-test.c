/* Tests of the `kiln` command itself (the built binary, run as a user would): exit codes,
 * validate with file:line:column messages and --json, image list/show/logs on a store written
 * by the factory, reap, and usage errors. */
#include "kiln-test.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/json.h"
#include "factory/store.h"

extern char **environ;

static char *home;

/* Run kiln with up to 6 arguments (NULL-terminated); returns the exit code, stdout in *out and
 * stderr in *errout. */
static int
kiln_argv(char **out, char **errout, const char *const *args)
{
    const char *bdir = getenv("KILN_BUILD_DIR");
    char *bin = kiln_asprintf("%s/factory/kiln", bdir ? bdir : "build");
    const char *argv[10] = {bin, "--home", home};
    for (size_t i = 0; i < 6 && args[i]; i++)
        argv[3 + i] = args[i];
    char *o = kiln_path_join(home, "stdout"), *e = kiln_path_join(home, "stderr");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, o, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, e, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    size_t n;
    char *text = NULL;
    assert_int_equal(kiln_read_file(o, 1 << 20, &text, &n, NULL), 0);
    if (out)
        *out = text;
    else
        free(text);
    assert_int_equal(kiln_read_file(e, 1 << 20, &text, &n, NULL), 0);
    if (errout)
        *errout = text;
    else
        free(text);
    free(o);
    free(e);
    free(bin);
    return WEXITSTATUS(status);
}

#define kiln(out, errout, ...) kiln_argv(out, errout, (const char *const[]){__VA_ARGS__, NULL})

static int
setup(void **state)
{
    return kiln_mkdtemp("kiln-cli", &home, NULL);
}

static int
teardown(void **state)
{
    kiln_rm_rf(home, NULL);
    free(home);
    return 0;
}

static char *
data(const char *name)
{
    return kiln_asprintf("%s/tests/data/recipes/%s", kiln_test_source_dir(), name);
}

static void
test_validate(void **state)
{
    char *bad = data("bad-recipe.yml");
    char *out = NULL, *err = NULL;
    assert_int_equal(kiln(&out, &err, "validate", "--recipe", bad), 3);
    char *want = kiln_asprintf("%s:2:18: semanticVersion '1.x.0'", bad);
    assert_non_null(strstr(err, want));
    free(want);
    free(out);
    free(err);

    assert_int_equal(kiln(&out, NULL, "validate", "--recipe", bad, "--json"), 3);
    json_t *j = NULL;
    assert_int_equal(kiln_json_parse(out, strlen(out), 1 << 20, "out", &j, NULL), 0);
    assert_true(json_is_false(json_object_get(j, "valid")));
    /* The recipe's own problems, a missing component and the parent image: all at once. */
    assert_int_equal(json_array_size(json_object_get(j, "problems")), 12);
    json_t *last = json_array_get(json_object_get(j, "problems"), 10);
    assert_non_null(strstr(json_string_value(last), "bad-recipe.yml:12:5: component 3: path "
                                                    "'components/missing.yml'"));
    json_decref(j);
    free(out);
    free(bad);

    /* A valid recipe with a parent image file and an example component. */
    char *recipe = kiln_path_join(home, "r.yml");
    char *comp = data("components/hello.yml");
    char *text = kiln_asprintf("name: r\nsemanticVersion: 1.0.0\nparentImage: %s\n"
                               "components:\n  - path: %s\n",
                               comp, comp);
    assert_int_equal(kiln_write_file_atomic(recipe, text, strlen(text), 0644, NULL), 0);
    assert_int_equal(kiln(&out, NULL, "validate", "--recipe", recipe), 0);
    assert_non_null(strstr(out, "valid"));
    free(out);
    /* From an image pipeline. */
    char *pipeline = kiln_path_join(home, "p.yml");
    const char *ptext = "name: p\nimageRecipe: r.yml\nimageTestsConfiguration:\n"
                        "  imageTestsEnabled: false\n";
    assert_int_equal(kiln_write_file_atomic(pipeline, ptext, strlen(ptext), 0644, NULL), 0);
    assert_int_equal(kiln(&out, NULL, "validate", "--pipeline", pipeline), 0);
    free(out);
    ptext = "name: p\nimageRecipe: r.yml\nschedule:\n  scheduleExpression: daily\n";
    assert_int_equal(kiln_write_file_atomic(pipeline, ptext, strlen(ptext), 0644, NULL), 0);
    assert_int_equal(kiln(NULL, &err, "validate", "--pipeline", pipeline), 3);
    assert_non_null(strstr(err, "p.yml:4:23: scheduleExpression 'daily'"));
    free(err);
    free(pipeline);
    /* The infrastructure is validated too. */
    char *infra = data("bad-infrastructure.yml");
    assert_int_equal(kiln(NULL, &err, "validate", "--recipe", recipe, "--infrastructure", infra),
                     3);
    assert_non_null(strstr(err, "driver 'vmware'"));
    free(err);
    free(infra);
    free(text);
    free(comp);
    free(recipe);
}

static void
test_usage(void **state)
{
    assert_int_equal(kiln(NULL, NULL, "frobnicate"), 2);
    assert_int_equal(kiln(NULL, NULL, "build"), 2);
    assert_int_equal(kiln(NULL, NULL, "image", "show", "not-a-ref"), 2);
    char *out = NULL;
    assert_int_equal(kiln(&out, NULL, "version"), 0);
    assert_non_null(strstr(out, "kiln "));
    free(out);
}

static void
test_image_commands(void **state)
{
    /* Records written through the store, as a build writes them. */
    struct kiln_store *s = NULL;
    struct kiln_error e = {0};
    assert_int_equal(kiln_store_open(home, &s, &e), 0);
    struct kiln_image_record *r = NULL;
    assert_int_equal(kiln_store_image_create(s, "web", "1.0.0", "fake", NULL, "/r.yml", &r, &e), 0);
    char *logs = kiln_path_join(home, "logs/web/1.0.0/1/log");
    assert_int_equal(kiln_mkdir_p(logs, 0755, NULL), 0);
    char *console = kiln_path_join(logs, "console.log");
    kiln_write_file_atomic(console, "boot\n", 5, 0644, NULL);
    assert_int_equal(kiln_store_image_set_paths(s, r->id, NULL, logs, NULL, &e), 0);
    struct kiln_image_output o = {"local:/out", "qcow2", "/out/web-1.0.0-1.qcow2", 4096, "abcd"};
    assert_int_equal(kiln_store_image_add_output(s, r->id, &o, &e), 0);
    assert_int_equal(kiln_store_image_set_status(s, r->id, KILN_IMAGE_BUILDING, NULL, &e), 0);
    assert_int_equal(
        kiln_store_image_set_status(s, r->id, KILN_IMAGE_FAILED, "component 1 failed", &e), 0);
    kiln_image_record_free(r);
    kiln_store_free(s);

    char *out = NULL;
    assert_int_equal(kiln(&out, NULL, "image", "list"), 0);
    assert_non_null(strstr(out, "NAME"));
    assert_non_null(strstr(out, "web"));
    assert_non_null(strstr(out, "1.0.0/1"));
    assert_non_null(strstr(out, "FAILED"));
    free(out);
    assert_int_equal(kiln(&out, NULL, "image", "list", "--json"), 0);
    json_t *j = NULL;
    assert_int_equal(kiln_json_parse(out, strlen(out), 1 << 20, "out", &j, NULL), 0);
    assert_int_equal(json_array_size(j), 1);
    assert_string_equal(kiln_json_get_str(json_array_get(j, 0), "version"), "1.0.0/1");
    json_decref(j);
    free(out);

    assert_int_equal(kiln(&out, NULL, "image", "show", "web/1.0.0/1"), 0);
    assert_non_null(strstr(out, "Reason:    component 1 failed"));
    assert_non_null(strstr(out, "/out/web-1.0.0-1.qcow2"));
    free(out);
    assert_int_equal(kiln(&out, NULL, "image", "show", "web/1.0.0", "--json"), 0);
    assert_int_equal(kiln_json_parse(out, strlen(out), 1 << 20, "out", &j, NULL), 0);
    assert_string_equal(kiln_json_get_str(j, "status"), "FAILED");
    assert_string_equal(kiln_json_get_str(json_array_get(json_object_get(j, "outputs"), 0), "path"),
                        "/out/web-1.0.0-1.qcow2");
    json_decref(j);
    free(out);
    assert_int_equal(kiln(NULL, NULL, "image", "show", "web/2.0.0/1"), 4);

    assert_int_equal(kiln(&out, NULL, "image", "logs", "web/1.0.0/1"), 0);
    assert_non_null(strstr(out, logs));
    assert_non_null(strstr(out, "console.log"));
    free(out);
    free(console);
    free(logs);

    assert_int_equal(kiln(&out, NULL, "reap", "--json"), 0);
    assert_int_equal(kiln_json_parse(out, strlen(out), 1 << 20, "out", &j, NULL), 0);
    assert_int_equal(json_array_size(json_object_get(j, "reaped")), 0);
    json_decref(j);
    free(out);
}

/* `kiln build` with the fake driver, a component failing in the guest: exit 1, the reason, the
 * log folder, and the FAILED record afterwards. */
static void
test_build_fails(void **state)
{
    char *comp = data("components/hello.yml");
    char *recipe = kiln_path_join(home, "r.yml");
    char *text = kiln_asprintf("name: r\nsemanticVersion: 1.0.0\nparentImage: %s\n"
                               "components:\n  - path: %s\n",
                               comp, comp);
    assert_int_equal(kiln_write_file_atomic(recipe, text, strlen(text), 0644, NULL), 0);
    char *infra = kiln_path_join(home, "i.yml");
    const char *itext = "driver: fake\nfail:\n  job: \"step Say in phase build: exit status 3\"\n";
    assert_int_equal(kiln_write_file_atomic(infra, itext, strlen(itext), 0644, NULL), 0);
    char *out = NULL, *err = NULL;
    assert_int_equal(kiln(&out, &err, "build", "--recipe", recipe, "--infrastructure", infra), 1);
    assert_non_null(strstr(err, "r/1.0.0/1 FAILED after"));
    assert_non_null(strstr(err, "component 1 (hello,"));
    assert_non_null(strstr(err, "exit status 3"));
    assert_non_null(strstr(err, "kiln: logs: "));
    /* Progress went to stderr, stage by stage (not a terminal: plain lines). */
    assert_non_null(strstr(err, "] launch"));
    assert_non_null(strstr(err, "] build"));
    free(out);
    free(err);
    json_t *j = NULL;
    assert_int_equal(kiln(&out, NULL, "image", "show", "r/1.0.0/1", "--json"), 0);
    assert_int_equal(kiln_json_parse(out, strlen(out), 1 << 20, "out", &j, NULL), 0);
    assert_string_equal(kiln_json_get_str(j, "status"), "FAILED");
    assert_non_null(strstr(kiln_json_get_str(j, "reason"), "exit status 3"));
    json_decref(j);
    free(out);

    /* --json: one object on stdout with the status and the exit code; build 2. */
    assert_int_equal(
        kiln(&out, NULL, "build", "--json", "--recipe", recipe, "--infrastructure", infra), 1);
    assert_int_equal(kiln_json_parse(out, strlen(out), 1 << 20, "out", &j, NULL), 0);
    assert_string_equal(kiln_json_get_str(j, "status"), "FAILED");
    assert_string_equal(kiln_json_get_str(j, "version"), "1.0.0/2");
    assert_int_equal(json_integer_value(json_object_get(j, "exitCode")), 1);
    json_decref(j);
    free(out);
    free(infra);
    free(text);
    free(recipe);
    free(comp);
}

/* A build that died while BUILDING (no lock held) is reaped by `kiln reap` through its driver. */
static void
test_reap_crashed(void **state)
{
    struct kiln_store *s = NULL;
    struct kiln_error e = {0};
    assert_int_equal(kiln_store_open(home, &s, &e), 0);
    struct kiln_image_record *r = NULL;
    assert_int_equal(kiln_store_image_create(s, "web", "1.0.0", "fake", NULL, NULL, &r, &e), 0);
    assert_int_equal(kiln_store_image_set_status(s, r->id, KILN_IMAGE_BUILDING, NULL, &e), 0);
    assert_int_equal(kiln_store_resource_add(s, r->build_id, "fake-instance", "i-1", "fake", &e),
                     0);
    char *out = NULL;
    assert_int_equal(kiln(&out, NULL, "reap"), 0);
    assert_non_null(strstr(out, r->build_id));
    assert_non_null(strstr(out, "crashed or was killed"));
    free(out);
    struct kiln_image_record *got = NULL;
    assert_int_equal(kiln_store_image_get_by_build_id(s, r->build_id, &got, &e), 0);
    assert_int_equal(got->status, KILN_IMAGE_FAILED);
    kiln_image_record_free(got);
    struct kiln_resource_record *list = NULL;
    size_t n = 0;
    assert_int_equal(kiln_store_resource_list(s, NULL, &list, &n, &e), 0);
    assert_int_equal(n, 0);
    kiln_resource_record_list_free(list, n);
    /* Nothing left: a second reap says so. */
    assert_int_equal(kiln(&out, NULL, "reap"), 0);
    assert_non_null(strstr(out, "nothing to reap"));
    free(out);
    kiln_image_record_free(r);
    kiln_store_free(s);
}

KILN_TEST_MAIN(cmocka_unit_test_setup_teardown(test_validate, setup, teardown),
               cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
               cmocka_unit_test_setup_teardown(test_image_commands, setup, teardown),
               cmocka_unit_test_setup_teardown(test_build_fails, setup, teardown),
               cmocka_unit_test_setup_teardown(test_reap_crashed, setup, teardown))
