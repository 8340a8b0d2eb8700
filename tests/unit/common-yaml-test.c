/* Tests for the hardened YAML reader: positions, limits, duplicate keys, aliases, merges. */
#include "kiln-test.h"

#include "common/yaml.h"

static struct kiln_yaml_doc *
parse_ok(const char *text)
{
    struct kiln_yaml_doc *doc = NULL;
    struct kiln_error err = {0};
    int r = kiln_yaml_parse(text, strlen(text), "t.yml", NULL, &doc, &err);
    if (r < 0)
        fail_msg("unexpected error: %s", err.message);
    return doc;
}

static int
parse_err(const char *text, const struct kiln_yaml_limits *limits, struct kiln_error *err)
{
    struct kiln_yaml_doc *doc = NULL;
    int r = kiln_yaml_parse(text, strlen(text), "t.yml", limits, &doc, err);
    assert_null(doc);
    return r;
}

static void
test_positions(void **state)
{
    struct kiln_yaml_doc *doc = parse_ok("name: x\nphases:\n  - name: build\n    steps: []\n");
    struct kiln_yaml_node *phases = kiln_yaml_map_get(doc->root, "phases");
    assert_non_null(phases);
    assert_int_equal(phases->kind, KILN_YAML_SEQUENCE);
    struct kiln_yaml_node *name = kiln_yaml_map_get(phases->items[0], "name");
    assert_string_equal(kiln_yaml_scalar(name), "build");
    assert_int_equal(name->line, 3);
    assert_int_equal(name->column, 11);
    kiln_yaml_doc_free(doc);
}

static void
test_scalar_styles(void **state)
{
    struct kiln_yaml_doc *doc = parse_ok("a: true\nb: 'true'\nc: ~\nd: 12\ne: |\n  x\n  y\n");
    bool b;
    assert_int_equal(kiln_yaml_bool(kiln_yaml_map_get(doc->root, "a"), &b), 0);
    assert_true(b);
    assert_int_equal(kiln_yaml_bool(kiln_yaml_map_get(doc->root, "b"), &b), -EINVAL);
    assert_true(kiln_yaml_is_null(kiln_yaml_map_get(doc->root, "c")));
    long long i;
    assert_int_equal(kiln_yaml_int(kiln_yaml_map_get(doc->root, "d"), &i), 0);
    assert_int_equal(i, 12);
    assert_string_equal(kiln_yaml_scalar(kiln_yaml_map_get(doc->root, "e")), "x\ny\n");
    json_t *j = kiln_yaml_to_json(doc->root);
    assert_true(json_is_true(json_object_get(j, "a")));
    assert_true(json_is_string(json_object_get(j, "b")));
    assert_true(json_is_null(json_object_get(j, "c")));
    assert_int_equal(json_integer_value(json_object_get(j, "d")), 12);
    json_decref(j);
    kiln_yaml_doc_free(doc);
}

static void
test_duplicate_key(void **state)
{
    struct kiln_error err = {0};
    assert_int_equal(parse_err("a: 1\nb: 2\na: 3\n", NULL, &err), -KILN_E_PARSE);
    assert_non_null(strstr(err.message, "t.yml:3:1"));
    assert_non_null(strstr(err.message, "duplicate key \"a\""));
}

static void
test_syntax_error_position(void **state)
{
    struct kiln_error err = {0};
    assert_int_equal(parse_err("a: 1\n b: [1, 2\n", NULL, &err), -KILN_E_PARSE);
    assert_non_null(strstr(err.message, "t.yml:"));
    assert_string_not_equal(err.cause, "");
}

static void
test_alias_and_merge(void **state)
{
    struct kiln_yaml_doc *doc =
        parse_ok("base: &b {x: 1, y: 2}\nuse: *b\nmerged:\n  <<: *b\n  y: 3\n");
    struct kiln_yaml_node *use = kiln_yaml_map_get(doc->root, "use");
    assert_string_equal(kiln_yaml_scalar(kiln_yaml_map_get(use, "x")), "1");
    struct kiln_yaml_node *m = kiln_yaml_map_get(doc->root, "merged");
    assert_int_equal(m->n, 2);
    assert_string_equal(kiln_yaml_scalar(kiln_yaml_map_get(m, "y")), "3");
    assert_string_equal(kiln_yaml_scalar(kiln_yaml_map_get(m, "x")), "1");
    assert_null(kiln_yaml_map_get(m, "<<"));
    kiln_yaml_doc_free(doc);
}

static void
test_billion_laughs(void **state)
{
    const char *text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                       "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                       "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                       "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    struct kiln_error err = {0};
    struct kiln_yaml_limits limits = {1 << 20, 64, 100000};
    assert_int_equal(parse_err(text, &limits, &err), -KILN_E_LIMIT);
    assert_non_null(strstr(err.message, "too many nodes"));
}

static void
test_depth_limit(void **state)
{
    char text[400];
    memset(text, '[', 300);
    text[300] = '\0';
    struct kiln_error err = {0};
    assert_int_equal(parse_err(text, NULL, &err), -KILN_E_LIMIT);
    assert_non_null(strstr(err.message, "nested too deeply"));
}

static void
test_multiple_documents(void **state)
{
    struct kiln_error err = {0};
    assert_int_equal(parse_err("a: 1\n---\nb: 2\n", NULL, &err), -KILN_E_PARSE);
    assert_non_null(strstr(err.message, "more than one YAML document"));
}

static void
test_binary_junk(void **state)
{
    const char junk[] = "a: \x01\x02\xff\xfe\n";
    struct kiln_error err = {0};
    struct kiln_yaml_doc *doc = NULL;
    assert_true(kiln_yaml_parse(junk, sizeof(junk) - 1, "t.yml", NULL, &doc, &err) < 0);
    assert_null(doc);
    assert_non_null(strstr(err.message, "t.yml:"));
}

static void
test_empty(void **state)
{
    struct kiln_yaml_doc *doc = parse_ok("");
    assert_null(doc->root);
    kiln_yaml_doc_free(doc);
}

KILN_TEST_MAIN(cmocka_unit_test(test_positions), cmocka_unit_test(test_scalar_styles),
               cmocka_unit_test(test_duplicate_key), cmocka_unit_test(test_syntax_error_position),
               cmocka_unit_test(test_alias_and_merge), cmocka_unit_test(test_billion_laughs),
               cmocka_unit_test(test_depth_limit), cmocka_unit_test(test_multiple_documents),
               cmocka_unit_test(test_binary_junk), cmocka_unit_test(test_empty))
