/* Tests for the action module table (guest-agent/modules.c): its shape, and that real AWSTOE
 * documents (tests/data/modules/, see SOURCES.md there) name known actions and fit the schemas. */
#include "kiln-test.h"

#include <dirent.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/yaml.h"
#include "guest-agent/mod-common.h"
#include "guest-agent/module.h"

static void
test_table_sorted_and_found(void **state)
{
    size_t n = 0;
    const struct kiln_module *t = kiln_module_table(&n);
    assert_true(n >= 30);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            assert_true(strcmp(t[i - 1].name, t[i].name) < 0);
        assert_ptr_equal(kiln_module_find(t[i].name), &t[i]);
        assert_non_null(t[i].fields);
        /* run is NULL exactly for the modules nobody runs here or the engine runs itself */
        bool no_run = t[i].flags & (KILN_MODULE_WINDOWS_ONLY | KILN_MODULE_ENGINE);
        assert_int_equal(t[i].run == NULL, no_run);
    }
    assert_null(kiln_module_find("executebash"));
    assert_null(kiln_module_find("NoSuchAction"));
    assert_null(kiln_module_find(NULL));
}

static void
test_table_flags(void **state)
{
    static const char *const linux_modules[] = {
        "Assert",        "ExecuteBash",    "ExecuteBinary",      "ExecuteDocument",
        "WebDownload",   "S3Download",     "S3Upload",           "AppendFile",
        "CopyFile",      "CopyFolder",     "CreateFile",         "CreateFolder",
        "CreateSymlink", "DeleteFile",     "DeleteFolder",       "ListFiles",
        "MoveFile",      "MoveFolder",     "ReadFile",           "SetFileEncoding",
        "SetFileOwner",  "SetFolderOwner", "SetFilePermissions", "SetFolderPermissions",
        "Reboot",        "UpdateOS",
    };
    static const char *const windows_modules[] = {
        "ExecutePowerShell",
        "InstallMSI",
        "UninstallMSI",
        "SetRegistry",
    };
    for (size_t i = 0; i < ARRAY_SIZE(linux_modules); i++) {
        const struct kiln_module *m = kiln_module_find(linux_modules[i]);
        assert_non_null(m);
        assert_false(m->flags & KILN_MODULE_WINDOWS_ONLY);
    }
    for (size_t i = 0; i < ARRAY_SIZE(windows_modules); i++) {
        const struct kiln_module *m = kiln_module_find(windows_modules[i]);
        assert_non_null(m);
        assert_true(m->flags & KILN_MODULE_WINDOWS_ONLY);
        assert_null(m->run);
    }
    const struct kiln_module *doc = kiln_module_find("ExecuteDocument");
    assert_int_equal(doc->flags,
                     KILN_MODULE_ENGINE | KILN_MODULE_NO_TIMEOUT | KILN_MODULE_NO_ATTEMPTS);
    assert_int_equal(kiln_module_find("Assert")->flags, KILN_MODULE_ENGINE);
    assert_int_equal(kiln_module_find("Reboot")->flags, KILN_MODULE_ENGINE);
    assert_int_equal(kiln_module_find("ExecuteBash")->shape, KILN_INPUTS_OBJECT);
    assert_int_equal(kiln_module_find("CopyFile")->shape, KILN_INPUTS_LIST);
    assert_int_equal(kiln_module_find("WebDownload")->shape, KILN_INPUTS_LIST);
}

static void
test_encoding_names(void **state)
{
    enum kiln_mod_encoding e;
    static const struct {
        const char *name;
        enum kiln_mod_encoding enc;
    } ok[] = {
        {"utf8", KILN_ENC_UTF8},         {"UTF-8", KILN_ENC_UTF8},
        {"utf16", KILN_ENC_UTF16LE},     {"UTF-16", KILN_ENC_UTF16LE},
        {"utf16-LE", KILN_ENC_UTF16LE},  {"utf-16-le", KILN_ENC_UTF16LE},
        {"utf16-BE", KILN_ENC_UTF16BE},  {"Utf-16-Be", KILN_ENC_UTF16BE},
        {"utf32", KILN_ENC_UTF32LE},     {"UTF-32", KILN_ENC_UTF32LE},
        {"utf-32-LE", KILN_ENC_UTF32LE}, {"utf32-BE", KILN_ENC_UTF32BE},
    };
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
        assert_int_equal(kiln_mod_encoding_parse(ok[i].name, &e), 0);
        assert_int_equal(e, ok[i].enc);
    }
    assert_int_equal(kiln_mod_encoding_parse("latin1", &e), -EINVAL);
    assert_int_equal(kiln_mod_encoding_parse("utf--8", &e), -EINVAL);
    assert_int_equal(kiln_mod_encoding_parse("utf-16-XX", &e), -EINVAL);
    assert_int_equal(kiln_mod_encoding_parse("", &e), -EINVAL);
}

static void
test_utf8_repair(void **state)
{
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"plain", 5, "plain"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
         "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"a\xff" "b", 3,
         "a\xef\xbf\xbd"
         "b"},
        {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong '/' */
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
        {"x\xe2\x82", 3, "x\xef\xbf\xbd\xef\xbf\xbd"},               /* cut character */
        {"\xf4\x90\x80\x80", 4,
         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* above U+10FFFF */
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        size_t n;
        _cleanup_free_ char *s = kiln_mod_utf8_repair(cases[i].in, cases[i].len, &n);
        assert_string_equal(s, cases[i].out);
        assert_int_equal(n, strlen(cases[i].out));
        _cleanup_json_ json_t *j = kiln_mod_json_text(cases[i].in, cases[i].len);
        assert_non_null(j);
        assert_string_equal(json_string_value(j), cases[i].out);
    }
}

/* ---- a small schema checker over the table, standing in for the engine's validator ---- */

struct report_ctx {
    const char *file;
    int problems;
};

static void report_fn(void *userdata, const struct kiln_yaml_node *at, const char *fmt, ...)
    _printf_(3, 4);

static void
report_fn(void *userdata, const struct kiln_yaml_node *at, const char *fmt, ...)
{
    struct report_ctx *rc = userdata;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s:%u:%u: ", rc->file, at ? at->line : 0, at ? at->column : 0);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    rc->problems++;
}

static bool
is_variable(const struct kiln_yaml_node *n)
{
    return n->kind == KILN_YAML_SCALAR && strstr(n->value, "{{");
}

static void
check_item(const struct kiln_module *m, const struct kiln_yaml_node *item, struct report_ctx *rc)
{
    if (item->kind != KILN_YAML_MAPPING) {
        report_fn(rc, item, "%s: inputs item is %s", m->name, kiln_yaml_kind_name(item->kind));
        return;
    }
    for (size_t k = 0; k < item->n; k++) {
        const char *key = item->keys[k]->value;
        const struct kiln_yaml_node *v = item->items[k];
        const struct kiln_module_field *f = m->fields;
        while (f->name && strcmp(f->name, key) != 0)
            f++;
        if (!f->name) {
            report_fn(rc, item->keys[k], "%s: unknown input '%s'", m->name, key);
            continue;
        }
        long long i;
        bool b;
        switch (f->type) {
        case KILN_FIELD_STRING:
            if (v->kind != KILN_YAML_SCALAR)
                report_fn(rc, v, "%s.%s: not a string", m->name, key);
            break;
        case KILN_FIELD_INT:
            if (!kiln_yaml_is_null(v) && !is_variable(v) && kiln_yaml_int(v, &i) < 0)
                report_fn(rc, v, "%s.%s: not an integer", m->name, key);
            break;
        case KILN_FIELD_BOOL:
            if (!is_variable(v) && kiln_yaml_bool(v, &b) < 0)
                report_fn(rc, v, "%s.%s: not a boolean", m->name, key);
            break;
        case KILN_FIELD_LIST:
            if (v->kind != KILN_YAML_SEQUENCE && !is_variable(v))
                report_fn(rc, v, "%s.%s: not a list", m->name, key);
            break;
        case KILN_FIELD_MAP:
            if (v->kind != KILN_YAML_MAPPING)
                report_fn(rc, v, "%s.%s: not a mapping", m->name, key);
            break;
        case KILN_FIELD_ANY:
            break;
        }
        if (f->allowed && v->kind == KILN_YAML_SCALAR && !is_variable(v)) {
            const char *const *a = f->allowed;
            while (*a && strcmp(*a, v->value) != 0)
                a++;
            if (!*a)
                report_fn(rc, v, "%s.%s: '%s' is not allowed", m->name, key, v->value);
        }
    }
    for (const struct kiln_module_field *f = m->fields; f->name; f++)
        if (f->required && !kiln_yaml_map_get(item, f->name))
            report_fn(rc, item, "%s: missing required input '%s'", m->name, f->name);
}

static void
check_inputs(const struct kiln_module *m, const struct kiln_yaml_node *inputs,
             struct report_ctx *rc)
{
    bool any_required = false;
    for (const struct kiln_module_field *f = m->fields; f->name; f++)
        any_required |= f->required;
    if (!inputs || kiln_yaml_is_null(inputs)) {
        if (any_required)
            report_fn(rc, inputs, "%s: inputs missing", m->name);
        return;
    }
    switch (m->shape) {
    case KILN_INPUTS_LIST:
        if (inputs->kind != KILN_YAML_SEQUENCE) {
            report_fn(rc, inputs, "%s: inputs must be a list", m->name);
            return;
        }
        for (size_t i = 0; i < inputs->n; i++)
            check_item(m, inputs->items[i], rc);
        break;
    case KILN_INPUTS_OBJECT:
        check_item(m, inputs, rc);
        break;
    case KILN_INPUTS_OBJECT_OR_LIST:
        if (inputs->kind == KILN_YAML_SEQUENCE)
            for (size_t i = 0; i < inputs->n; i++)
                check_item(m, inputs->items[i], rc);
        else
            check_item(m, inputs, rc);
        break;
    case KILN_INPUTS_NONE:
        if (inputs->kind != KILN_YAML_MAPPING || inputs->n)
            report_fn(rc, inputs, "%s: takes no inputs", m->name);
        break;
    }
    if (m->check)
        m->check(inputs, report_fn, rc);
}

/* Returns the number of steps checked. */
static size_t
check_step(const struct kiln_yaml_node *step, bool linux_only, struct report_ctx *rc)
{
    const char *action = kiln_yaml_scalar(kiln_yaml_map_get(step, "action"));
    const struct kiln_module *m = kiln_module_find(action);
    if (!m) {
        report_fn(rc, step, "unknown action '%s'", action ? action : "(none)");
        return 1;
    }
    if (linux_only && (m->flags & KILN_MODULE_WINDOWS_ONLY))
        report_fn(rc, step, "Windows-only action %s in a Linux document", action);
    check_inputs(m, kiln_yaml_map_get(step, "inputs"), rc);
    return 1;
}

static size_t
check_phases(const struct kiln_yaml_node *phases, bool linux_only, struct report_ctx *rc)
{
    size_t steps = 0;
    for (size_t p = 0; phases && p < phases->n; p++) {
        struct kiln_yaml_node *list = kiln_yaml_map_get(phases->items[p], "steps");
        for (size_t s = 0; list && list->kind == KILN_YAML_SEQUENCE && s < list->n; s++)
            steps += check_step(list->items[s], linux_only, rc);
    }
    return steps;
}

static size_t
check_node(const struct kiln_yaml_node *root, bool linux_only, struct report_ctx *rc)
{
    if (!root)
        return 0;
    if (root->kind == KILN_YAML_MAPPING && kiln_yaml_map_get(root, "action"))
        return check_step(root, linux_only, rc);
    if (root->kind == KILN_YAML_MAPPING) {
        struct kiln_yaml_node *phases = kiln_yaml_map_get(root, "phases");
        return phases && phases->kind == KILN_YAML_SEQUENCE ? check_phases(phases, linux_only, rc)
                                                            : 0;
    }
    if (root->kind == KILN_YAML_SEQUENCE)
        return check_phases(root, linux_only, rc);
    return 0;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char **
list_dir(const char *dir, size_t *ret_n)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    char **v = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        v = kiln_reallocarray(v, n + 2, sizeof(*v));
        v[n++] = kiln_path_join(dir, de->d_name);
        v[n] = NULL;
    }
    closedir(d);
    qsort(v, n, sizeof(*v), cmp_str);
    *ret_n = n;
    return v;
}

static void
test_corpus_linux_documents(void **state)
{
    _cleanup_free_ char *dir =
        kiln_path_join(kiln_test_source_dir(), "tests/data/modules/awstoe-linux");
    size_t n = 0, total_steps = 0;
    _cleanup_strv_free_ char **files = list_dir(dir, &n);
    int problems = 0;
    assert_true(n >= 100);
    for (size_t i = 0; i < n; i++) {
        struct kiln_error err = {0};
        _cleanup_(kiln_yaml_doc_freep) struct kiln_yaml_doc *doc = NULL;
        int r = kiln_yaml_load_file(files[i], NULL, &doc, &err);
        if (r < 0) {
            fprintf(stderr, "%s: %s\n", files[i], err.message);
            problems++;
            continue;
        }
        struct report_ctx rc = {files[i], 0};
        size_t steps = check_node(doc->root, true, &rc);
        if (steps == 0)
            report_fn(&rc, doc->root, "no steps found");
        total_steps += steps;
        problems += rc.problems;
    }
    fprintf(stderr, "%zu documents, %zu steps\n", n, total_steps);
    assert_int_equal(problems, 0);
    assert_true(total_steps >= 300);
}

/* Real files that AWSTOE would reject: each must give at least one problem. */
static void
test_corpus_invalid_documents(void **state)
{
    _cleanup_free_ char *dir =
        kiln_path_join(kiln_test_source_dir(), "tests/data/modules/awstoe-invalid");
    size_t n = 0;
    _cleanup_strv_free_ char **files = list_dir(dir, &n);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        struct kiln_error err = {0};
        _cleanup_(kiln_yaml_doc_freep) struct kiln_yaml_doc *doc = NULL;
        assert_int_equal(kiln_yaml_load_file(files[i], NULL, &doc, &err), 0);
        struct report_ctx rc = {files[i], 0};
        assert_true(check_node(doc->root, true, &rc) > 0);
        assert_true(rc.problems > 0);
    }
}

/* Snippets from the user guide that are not valid YAML as published (duplicate keys, bad
 * indentation, an unquoted "*log" read as an alias). Listed so that any change is noticed. */
static const char *const broken_snippets[] = {
    "image-builder-action-modules.md__block05.yml", /* two steps in one mapping */
    "image-builder-action-modules.md__block40.yml", /* mis-indented second item */
    "image-builder-action-modules.md__block60.yml", /* fileNamePattern: *log */
    "image-builder-action-modules.md__block61.yml", /* fileNamePattern: *log */
};

static bool
is_broken_snippet(const char *path)
{
    for (size_t i = 0; i < ARRAY_SIZE(broken_snippets); i++) {
        size_t lp = strlen(path), ls = strlen(broken_snippets[i]);
        if (lp >= ls && strcmp(path + lp - ls, broken_snippets[i]) == 0)
            return true;
    }
    return false;
}

static void
test_corpus_doc_snippets(void **state)
{
    _cleanup_free_ char *dir =
        kiln_path_join(kiln_test_source_dir(), "tests/data/modules/doc-snippets");
    size_t n = 0, total_steps = 0, broken = 0;
    _cleanup_strv_free_ char **files = list_dir(dir, &n);
    int problems = 0;
    assert_true(n >= 90);
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        struct kiln_error err = {0};
        assert_int_equal(kiln_read_file(files[i], 1 << 20, &data, &len, &err), 0);
        /* Some snippets end with the documented output: "\n\nOutput:\n{...}". */
        char *out = strstr(data, "\nOutput:\n");
        if (out)
            len = out - data;
        _cleanup_(kiln_yaml_doc_freep) struct kiln_yaml_doc *doc = NULL;
        int r = kiln_yaml_parse(data, len, files[i], NULL, &doc, &err);
        if (is_broken_snippet(files[i])) {
            if (r >= 0)
                fprintf(stderr, "%s: listed as broken but parses\n", files[i]);
            problems += r >= 0;
            broken++;
            continue;
        }
        if (r < 0) {
            fprintf(stderr, "%s: %s\n", files[i], err.message);
            problems++;
            continue;
        }
        struct report_ctx rc = {files[i], 0};
        total_steps += check_node(doc->root, false, &rc);
        problems += rc.problems;
    }
    fprintf(stderr, "%zu snippets, %zu steps\n", n, total_steps);
    assert_int_equal(problems, 0);
    assert_int_equal(broken, ARRAY_SIZE(broken_snippets));
    assert_true(total_steps >= 90);
}

/* The checks reject what the reference rejects. */
static int
problems_for(const char *yaml)
{
    struct kiln_error err = {0};
    _cleanup_(kiln_yaml_doc_freep) struct kiln_yaml_doc *doc = NULL;
    assert_int_equal(kiln_yaml_parse(yaml, strlen(yaml), "inline", NULL, &doc, &err), 0);
    struct report_ctx rc = {"inline", 0};
    check_node(doc->root, true, &rc);
    return rc.problems;
}

static void
test_schema_rejects(void **state)
{
    assert_int_equal(problems_for("action: ExecuteBash\ninputs:\n  commands: [echo hi]\n"), 0);
    assert_int_equal(problems_for("action: ExecuteBash\ninputs:\n  command: [echo hi]\n"), 2);
    assert_int_equal(problems_for("action: CopyFile\ninputs:\n  source: a\n  destination: b\n"), 1);
    assert_int_equal(problems_for("action: CreateFile\ninputs:\n  - path: a\n"
                                  "    encoding: latin1\n    permissions: 0999\n"),
                     2);
    assert_int_equal(problems_for("action: CreateFile\ninputs:\n  - path: a\n"
                                  "    encoding: UTF-16-be\n    permissions: '0644'\n"),
                     0);
    assert_int_equal(problems_for("action: WebDownload\ninputs:\n  - source: ftp://x/y\n"
                                  "    destination: /tmp/\n    checksum: abc\n"),
                     2);
    assert_int_equal(problems_for("action: WebDownload\ninputs:\n  - source: https://x/y\n"
                                  "    destination: /tmp/\n    checksum: abc\n"
                                  "    algorithm: CRC32\n"),
                     1);
    /* the documented spelling only (the validator's allowed list is exact) */
    assert_int_equal(problems_for("action: WebDownload\ninputs:\n  - source: https://x/y\n"
                                  "    destination: /tmp/\n    checksum: abc\n"
                                  "    algorithm: sha256\n"),
                     1);
    assert_int_equal(problems_for("action: S3Download\ninputs:\n  - source: /local\n"
                                  "    destination: /tmp/\n"),
                     1);
    assert_int_equal(problems_for("action: ExecuteDocument\ninputs:\n  document: a.yaml\n"
                                  "  parameters:\n    - name: p\n      valu: v\n"),
                     2);
    assert_int_equal(problems_for("action: Reboot\ninputs:\n  delaySeconds: -5\n"), 1);
    assert_int_equal(problems_for("action: ExecutePowerShell\ninputs:\n  commands: [a]\n"), 1);
    assert_int_equal(problems_for("action: SetRegistry\ninputs:\n  - path: HKLM:\\X\n"
                                  "    name: n\n    value: 1\n    type: WORD\n"),
                     2); /* Windows-only in a Linux document, and a bad type */
}

/* Every extra check copes with inputs of any shape (the validator reports the shape itself). */
static void
test_checks_any_shape(void **state)
{
    static const char *const shapes[] = {
        "x",
        "'{{ a.b.outputs.c }}'",
        "[1, [2], {a: b}]",
        "{}",
        "[{}, {encoding: 3}]",
        "{parameters: x, delaySeconds: [1]}",
        "[{checksum: [a], algorithm: {b: c}, source: [d]}]",
    };
    size_t n = 0;
    const struct kiln_module *t = kiln_module_table(&n);
    for (size_t s = 0; s < ARRAY_SIZE(shapes); s++) {
        struct kiln_error err = {0};
        _cleanup_(kiln_yaml_doc_freep) struct kiln_yaml_doc *doc = NULL;
        assert_int_equal(kiln_yaml_parse(shapes[s], strlen(shapes[s]), "shape", NULL, &doc, &err),
                         0);
        for (size_t i = 0; i < n; i++) {
            struct report_ctx rc = {"shape", 0};
            if (!t[i].check)
                continue;
            t[i].check(NULL, report_fn, &rc);
            assert_int_equal(rc.problems, 0);
            t[i].check(doc->root, report_fn, &rc);
        }
    }
}

KILN_TEST_MAIN(cmocka_unit_test(test_table_sorted_and_found), cmocka_unit_test(test_table_flags),
               cmocka_unit_test(test_encoding_names), cmocka_unit_test(test_utf8_repair),
               cmocka_unit_test(test_corpus_linux_documents),
               cmocka_unit_test(test_corpus_invalid_documents),
               cmocka_unit_test(test_corpus_doc_snippets), cmocka_unit_test(test_schema_rejects),
               cmocka_unit_test(test_checks_any_shape))
