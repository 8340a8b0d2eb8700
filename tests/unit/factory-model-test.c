/* Tests for the factory model: recipes, infrastructure, distribution, pipelines (good files
 * and files with several mistakes, each reported at file:line:column), semantic versions and
 * wildcard filters, name templates, the Kiln home. */
#include "kiln-test.h"

#include "common/fs.h"
#include "factory/model.h"

static char *
data(const char *name)
{
    return kiln_asprintf("%s/tests/data/recipes/%s", kiln_test_source_dir(), name);
}

/* Every expected "line:column: text" must appear in the message, at the file's name. */
static void
expect_messages(const struct kiln_error *err, const char *file, const char *const *expected)
{
    for (size_t i = 0; expected[i]; i++) {
        char *want = kiln_asprintf("%s:%s", file, expected[i]);
        if (!strstr(err->message, want))
            fail_msg("missing \"%s\" in:\n%s", want, err->message);
        free(want);
    }
}

static void
test_semver_parse(void **state)
{
    struct kiln_semver v;
    assert_int_equal(kiln_semver_parse("1.2.3", &v), 0);
    assert_int_equal(v.major, 1);
    assert_int_equal(v.minor, 2);
    assert_int_equal(v.patch, 3);
    assert_int_equal(kiln_semver_parse("0.0.0", &v), 0);
    assert_int_equal(kiln_semver_parse("1073741823.0.0", &v), 0);
    assert_int_equal(kiln_semver_parse("1073741824.0.0", &v), -ERANGE);
    const char *bad[] = {"1",    "1.2", "1.2.3.4", "01.2.3", "1.x.0", "a.b.c",
                         "1..3", "",    "1.2.3 ",  "-1.2.3", NULL};
    for (size_t i = 0; bad[i]; i++)
        if (kiln_semver_parse(bad[i], &v) == 0)
            fail_msg("'%s' accepted", bad[i]);
    struct kiln_semver a = {1, 2, 3}, b = {1, 10, 0};
    assert_true(kiln_semver_compare(&a, &b) < 0);
    assert_true(kiln_semver_compare(&b, &a) > 0);
    assert_int_equal(kiln_semver_compare(&a, &a), 0);
}

static void
test_semver_filters(void **state)
{
    struct kiln_semver_filter f;
    struct kiln_semver v = {1, 4, 2};
    assert_int_equal(kiln_semver_filter_parse("1.x.x", &f), 0);
    assert_true(kiln_semver_filter_match(&f, &v));
    assert_int_equal(kiln_semver_filter_parse("x.x.x", &f), 0);
    assert_true(kiln_semver_filter_match(&f, &v));
    assert_int_equal(kiln_semver_filter_parse("1.4.x", &f), 0);
    assert_true(kiln_semver_filter_match(&f, &v));
    assert_int_equal(kiln_semver_filter_parse("1.3.x", &f), 0);
    assert_false(kiln_semver_filter_match(&f, &v));
    assert_int_equal(kiln_semver_filter_parse("2.x.x", &f), 0);
    assert_false(kiln_semver_filter_match(&f, &v));
    assert_int_equal(kiln_semver_filter_parse("1.4.2", &f), 0);
    assert_true(kiln_semver_filter_match(&f, &v));
    /* Image Builder: nodes right of a wildcard must be wildcards. */
    assert_int_equal(kiln_semver_filter_parse("1.x.2", &f), -EINVAL);
    assert_int_equal(kiln_semver_filter_parse("x.1.x", &f), -EINVAL);
    assert_int_equal(kiln_semver_filter_parse("x.x", &f), -EINVAL);
    long build;
    assert_int_equal(kiln_image_version_parse("1.0.0/3", &v, &build), 0);
    assert_int_equal(build, 3);
    assert_int_equal(kiln_image_version_parse("1.0.0/0", &v, &build), -EINVAL);
    assert_int_equal(kiln_image_version_parse("1.0.0", &v, &build), -EINVAL);
    assert_int_equal(kiln_image_version_parse("1.0/2", &v, &build), -EINVAL);
}

static void
test_name_templates(void **state)
{
    char *out = NULL;
    struct kiln_error err = {0};
    /* 2024-02-29 13:14:15 UTC */
    assert_int_equal(kiln_name_template_expand("web-{{imagebuilder:buildDate}}-"
                                               "{{ imagebuilder:buildVersion }}",
                                               4, 1709212455, &out, &err),
                     0);
    assert_string_equal(out, "web-2024-02-29T13-14-15Z-4");
    free(out);
    assert_int_equal(kiln_name_template_expand("plain {{other}}", 1, 0, &out, &err), 0);
    assert_string_equal(out, "plain {{other}}");
    free(out);
    assert_int_equal(kiln_name_template_expand("x-{{imagebuilder:nope}}", 1, 0, &out, &err),
                     -KILN_E_INVALID);
    assert_non_null(strstr(err.message, "imagebuilder:nope"));
}

static void
test_recipe_good(void **state)
{
    char *path = data("good-recipe.yml");
    struct kiln_recipe *r = NULL;
    struct kiln_error err = {0};
    if (kiln_recipe_load(path, &r, &err) < 0)
        fail_msg("%s", err.message);
    assert_string_equal(r->name, "hello-world");
    assert_string_equal(r->semantic_version, "1.0.0");
    assert_string_equal(r->parent_image, "tiny");
    assert_string_equal(r->working_directory, "/var/tmp");
    assert_int_equal(r->n_components, 3);
    assert_string_equal(r->components[0].path, "components/hello.yml");
    assert_int_equal(r->components[0].n_parameters, 1);
    assert_string_equal(r->components[0].parameters[0].name, "greeting");
    assert_string_equal(r->components[0].parameters[0].values[0], "bonjour");
    assert_string_equal(r->components[1].name, "hello-world/1.x.x");
    assert_non_null(r->components[2].arn);
    assert_int_equal(r->n_block_devices, 1);
    assert_int_equal(r->block_devices[0].volume_size_gib, 8);
    assert_string_equal(r->block_devices[0].volume_type, "gp3");
    assert_true(r->ssm_uninstall_after_build);
    assert_string_equal(r->user_data_override, "IyEvYmluL2Jhc2gK");
    assert_string_equal(json_string_value(json_object_get(r->tags, "team")), "platform");

    /* Resolution: the path relative to the recipe, the newest 1.x.x, the ARN's 2.0.0. */
    char *catalog = data("catalog");
    char *dirs[] = {catalog, NULL};
    if (kiln_recipe_resolve(r, dirs, &err) < 0)
        fail_msg("%s", err.message);
    assert_non_null(strstr(r->components[0].resolved, "/components/hello.yml"));
    assert_non_null(strstr(r->components[1].resolved, "hello-world/1.2.0.yml"));
    assert_non_null(strstr(r->components[2].resolved, "hello-world/2.0.0.yml"));
    free(catalog);
    kiln_recipe_free(r);
    free(path);
}

static void
test_recipe_bad_all_errors(void **state)
{
    char *path = data("bad-recipe.yml");
    struct kiln_recipe *r = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_recipe_load(path, &r, &err), -KILN_E_INVALID);
    assert_null(r);
    const char *expected[] = {
        "1:7: recipe name 'bad/name' is not valid",
        "2:18: semanticVersion '1.x.0' must be <major>.<minor>.<patch>",
        "4:19: workingDirectory 'relative/dir' must be an absolute path",
        "5:1: recipe: unknown field 'colour'",
        "7:5: component: give exactly one of",
        "9:5: component: give exactly one of",
        "11:16: component parameter: 'value' must be a list, not a string",
        "16:19: 'volumeSize' must be between 1 and 16384, not 0",
        "17:19: volumeType 'gp9' is not one of",
        "19:21: userDataOverride must be base64-encoded, as EC2 user data is (base64: '#' at "
        "offset 0 is not in the alphabet)",
        NULL,
    };
    expect_messages(&err, path, expected);
    /* The first problem is the cause, for tools that jump to it. */
    char *cause = kiln_asprintf("%s:1:7", path);
    assert_string_equal(err.cause, cause);
    free(cause);
    free(path);
}

static void
test_recipe_resolve_errors(void **state)
{
    char *dir = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_mkdtemp("kiln-model", &dir, &err), 0);
    char *path = kiln_path_join(dir, "r.yml");
    const char *text = "name: r\nsemanticVersion: 1.0.0\nparentImage: tiny\ncomponents:\n"
                       "  - path: nowhere.yml\n"
                       "  - name: hello-world/3.x.x\n"
                       "  - componentArn: arn:aws:imagebuilder:us-east-1:aws:component/"
                       "update-linux/x.x.x\n";
    assert_int_equal(kiln_write_file_atomic(path, text, strlen(text), 0644, &err), 0);
    struct kiln_recipe *r = NULL;
    assert_int_equal(kiln_recipe_load(path, &r, &err), 0);
    char *catalog = data("catalog");
    char *dirs[] = {catalog, NULL};
    assert_int_equal(kiln_recipe_resolve(r, dirs, &err), -KILN_E_INVALID);
    const char *expected[] = {
        "5:5: component 1: path 'nowhere.yml'",
        "6:5: component 2: 'hello-world/3.x.x': no matching version found",
        "7:5: component 3: 'update-linux/x.x.x': no matching version found; an AWS-managed",
        NULL,
    };
    expect_messages(&err, path, expected);
    kiln_recipe_free(r);
    free(catalog);
    free(path);
    kiln_rm_rf(dir, NULL);
    free(dir);
}

static void
test_infrastructure(void **state)
{
    char *path = data("good-infrastructure.yml");
    struct kiln_infrastructure *i = NULL;
    struct kiln_error err = {0};
    if (kiln_infrastructure_load(path, &i, &err) < 0)
        fail_msg("%s", err.message);
    assert_string_equal(i->driver, "libvirt");
    assert_string_equal(i->uri, "qemu+ssh://builder.example/system");
    assert_string_equal(i->accel, "tcg");
    assert_int_equal(i->vcpus, 4);
    assert_int_equal(i->memory_mib, 4096);
    assert_string_equal(i->instance_types[1], "m5.xlarge");
    assert_string_equal(i->subnet_id, "subnet-0123456789abcdef0");
    assert_string_equal(i->security_group_ids[0], "sg-0123456789abcdef0");
    assert_string_equal(i->s3_bucket_name, "my-logs");
    assert_false(i->terminate_on_failure);
    assert_string_equal(json_string_value(json_object_get(i->resource_tags, "owner")), "platform");
    assert_non_null(json_object_get(i->settings, "instanceTypes"));
    kiln_infrastructure_free(i);
    free(path);

    struct kiln_infrastructure *def = kiln_infrastructure_default();
    assert_string_equal(def->driver, "libvirt");
    assert_string_equal(def->uri, "qemu:///system");
    assert_string_equal(def->accel, "auto");
    assert_int_equal(def->vcpus, 2);
    assert_int_equal(def->memory_mib, 2048);
    assert_true(def->terminate_on_failure);
    kiln_infrastructure_free(def);

    path = data("bad-infrastructure.yml");
    kiln_error_clear(&err);
    assert_int_equal(kiln_infrastructure_load(path, &i, &err), -KILN_E_INVALID);
    const char *expected[] = {
        "1:9: driver 'vmware' is not one of libvirt, ec2, fake",
        "3:8: libvirt uri 'not-a-uri' is not a URI",
        "4:10: accel 'hvf' is not one of auto, kvm, tcg",
        "5:14: 'warmStart' must be true or false",
        "6:8: 'vcpus' must be a whole number",
        "7:12: 'memoryMiB' must be between 128",
        "8:11: subnetId 'net-1' must start with subnet-",
        "9:29: 'terminateInstanceOnFailure' must be true or false",
        NULL,
    };
    expect_messages(&err, path, expected);
    free(path);
}

static void
test_distribution(void **state)
{
    char *path = data("good-distribution.yml");
    struct kiln_distribution_config *d = NULL;
    struct kiln_error err = {0};
    if (kiln_distribution_load(path, &d, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(d->n_items, 2);
    assert_true(d->items[0].is_local);
    assert_true(d->items[0].local.directory[0] == '/');
    assert_non_null(strstr(d->items[0].local.directory, "tests/data/recipes/out"));
    assert_string_equal(d->items[0].local.formats[3], "vhdx");
    assert_true(d->items[0].local.compress);
    assert_string_equal(d->items[1].region, "eu-west-1");
    assert_string_equal(d->items[1].ami_name, "hello-{{imagebuilder:buildDate}}");
    kiln_distribution_free(d);
    free(path);

    d = kiln_distribution_default("/h");
    assert_string_equal(d->items[0].local.directory, "/h/outputs");
    assert_string_equal(d->items[0].local.formats[0], "qcow2");
    assert_null(d->items[0].local.formats[1]);
    kiln_distribution_free(d);

    path = data("bad-distribution.yml");
    assert_int_equal(kiln_distribution_load(path, &d, &err), -KILN_E_INVALID);
    const char *expected[] = {
        "3:7: local: missing required field 'directory'",
        "3:24: format 'iso' is not one of qcow2, raw, vmdk, vhdx",
        "4:5: distribution 2: give either 'region'",
        "9:13: AMI name: unknown template variable {{imagebuilder:buildNumber}}",
        "10:26: targetAccountIds: '1234' is not a 12-digit AWS account id",
        NULL,
    };
    expect_messages(&err, path, expected);
    free(path);
}

static void
test_pipeline(void **state)
{
    char *path = data("good-pipeline.yml");
    struct kiln_pipeline *p = NULL;
    struct kiln_error err = {0};
    if (kiln_pipeline_load(path, &p, &err) < 0)
        fail_msg("%s", err.message);
    assert_string_equal(p->name, "nightly-hello");
    assert_non_null(strstr(p->recipe_path, "tests/data/recipes/good-recipe.yml"));
    assert_false(p->tests_enabled);
    assert_int_equal(p->timeout_minutes, 90);
    assert_string_equal(p->schedule_expression, "cron(0 3 * * ? *)");
    assert_string_equal(p->start_condition, "EXPRESSION_MATCH_ONLY");
    assert_true(p->enabled);
    kiln_pipeline_free(p);
    free(path);

    path = data("bad-pipeline.yml");
    assert_int_equal(kiln_pipeline_load(path, &p, &err), -KILN_E_INVALID);
    const char *expected[] = {
        "1:1: image pipeline: missing required field 'imageRecipe'",
        "3:19: 'timeoutMinutes' must be between 60 and 1440, not 5",
        "5:23: scheduleExpression 'every day' is not cron(",
        NULL,
    };
    expect_messages(&err, path, expected);
    free(path);
}

static void
test_unknown_field_hints(void **state)
{
    char *dir = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_mkdtemp("kiln-model", &dir, &err), 0);
    char *path = kiln_path_join(dir, "r.yml");
    const char *text = "name: r\nsemanticversion: 1.0.0\nparentImage: tiny\ncomponents:\n"
                       "  - path: a.yml\n    paramters: []\nzebra: 1\n";
    assert_int_equal(kiln_write_file_atomic(path, text, strlen(text), 0644, &err), 0);
    struct kiln_recipe *r = NULL;
    assert_int_equal(kiln_recipe_load(path, &r, &err), -KILN_E_INVALID);
    const char *expected[] = {
        "2:1: recipe: unknown field 'semanticversion' (did you mean 'semanticVersion'?)",
        "1:1: recipe: missing required field 'semanticVersion'",
        "6:5: component: unknown field 'paramters' (did you mean 'parameters'?)",
        "7:1: recipe: unknown field 'zebra'",
        NULL,
    };
    expect_messages(&err, path, expected);
    assert_null(strstr(err.message, "'zebra' (did you mean")); /* nothing close: no guess */
    free(path);
    kiln_rm_rf(dir, NULL);
    free(dir);
}

static void
test_yaml_errors_have_positions(void **state)
{
    char *dir = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_mkdtemp("kiln-model", &dir, &err), 0);
    char *path = kiln_path_join(dir, "r.yml");
    const char *text = "name: r\nname: again\n";
    assert_int_equal(kiln_write_file_atomic(path, text, strlen(text), 0644, &err), 0);
    struct kiln_recipe *r = NULL;
    assert_true(kiln_recipe_load(path, &r, &err) < 0);
    char *want = kiln_asprintf("%s:2:", path);
    assert_non_null(strstr(err.message, want));
    free(want);
    /* A list at the top is named, not crashed on. */
    text = "- a\n- b\n";
    assert_int_equal(kiln_write_file_atomic(path, text, strlen(text), 0644, &err), 0);
    kiln_error_clear(&err);
    assert_int_equal(kiln_recipe_load(path, &r, &err), -KILN_E_INVALID);
    assert_non_null(strstr(err.message, "recipe must be a mapping, not a list"));
    /* An empty file. */
    assert_int_equal(kiln_write_file_atomic(path, "", 0, 0644, &err), 0);
    kiln_error_clear(&err);
    assert_int_equal(kiln_recipe_load(path, &r, &err), -KILN_E_INVALID);
    assert_non_null(strstr(err.message, "empty"));
    free(path);
    kiln_rm_rf(dir, NULL);
    free(dir);
}

static void
test_home_dir(void **state)
{
    setenv("KILN_HOME", "/srv/kiln", 1);
    char *h = kiln_home_dir();
    assert_string_equal(h, "/srv/kiln");
    free(h);
    unsetenv("KILN_HOME");
    setenv("XDG_DATA_HOME", "/x/data", 1);
    h = kiln_home_dir();
    if (geteuid() == 0)
        assert_string_equal(h, "/var/lib/kiln");
    else
        assert_string_equal(h, "/x/data/kiln");
    free(h);
}

KILN_TEST_MAIN(cmocka_unit_test(test_semver_parse), cmocka_unit_test(test_semver_filters),
               cmocka_unit_test(test_name_templates), cmocka_unit_test(test_recipe_good),
               cmocka_unit_test(test_recipe_bad_all_errors),
               cmocka_unit_test(test_recipe_resolve_errors), cmocka_unit_test(test_infrastructure),
               cmocka_unit_test(test_distribution), cmocka_unit_test(test_pipeline),
               cmocka_unit_test(test_unknown_field_hints),
               cmocka_unit_test(test_yaml_errors_have_positions), cmocka_unit_test(test_home_dir))
