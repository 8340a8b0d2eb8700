/* Parser and validator of AWSTOE documents: every schema rule, with the exact message and
 * file:line:column of each problem. */
#include "kiln-test.h"

#include "common/buf.h"
#include "common/fs.h"
#include "guest-agent/document.h"

/* Parse and validate text as t.yml; returns the number of problems. */
static size_t
check(const char *text, struct kiln_diags *d)
{
    struct kiln_document *doc = NULL;
    *d = (struct kiln_diags){0};
    if (kiln_document_parse(text, strlen(text), "t.yml", &doc, d) == 0)
        kiln_document_validate(doc, 1, d);
    kiln_document_free(doc);
    return d->n;
}

static void
expect(const char *text, const char *message)
{
    struct kiln_diags d;
    check(text, &d);
    if (!kiln_diags_contains(&d, message)) {
        char *all = kiln_diags_format(&d);
        fail_msg("expected \"%s\" in:\n%s", message, all);
    }
    kiln_diags_clear(&d);
}

static void
expect_valid(const char *text)
{
    struct kiln_diags d;
    if (check(text, &d)) {
        char *all = kiln_diags_format(&d);
        fail_msg("unexpected problems:\n%s", all);
    }
    kiln_diags_clear(&d);
}

#define HEAD "name: t\nschemaVersion: 1.0\n"
#define BASH(name) "      - name: " name "\n        action: ExecuteBash\n        inputs:\n          commands: [\"true\"]\n"

static void
test_valid_minimal(void **state)
{
    (void)state;
    expect_valid(HEAD "phases:\n  - name: build\n    steps:\n" BASH("A"));
    /* schemaVersion as a string too */
    expect_valid("name: t\nschemaVersion: \"1.0\"\nphases:\n  - name: build\n    steps:\n" BASH("A"));
}

static void
test_defaults(void **state)
{
    (void)state;
    const char *t = HEAD "phases:\n  - name: build\n    steps:\n" BASH("A");
    struct kiln_diags d = {0};
    struct kiln_document *doc = NULL;
    assert_int_equal(kiln_document_parse(t, strlen(t), "t.yml", &doc, &d), 0);
    const struct kiln_doc_step *s = &doc->phases[0].steps[0];
    assert_int_equal(s->timeout_seconds, 7200);
    assert_int_equal(s->on_failure, KILN_ON_FAILURE_ABORT);
    assert_int_equal(s->max_attempts, 1);
    assert_int_equal(s->loop.kind, KILN_LOOP_NONE);
    kiln_document_free(doc);
    kiln_diags_clear(&d);
}

static void
test_malformed_yaml(void **state)
{
    (void)state;
    struct kiln_diags d = {0};
    struct kiln_document *doc = NULL;
    const char *t = "name: [unclosed\nphases: x\n";
    assert_int_equal(kiln_document_parse(t, strlen(t), "t.yml", &doc, &d), -KILN_E_PARSE);
    assert_null(doc);
    assert_true(kiln_diags_contains(&d, "t.yml:"));
    kiln_diags_clear(&d);
    t = "- just\n- a list\n";
    assert_int_equal(kiln_document_parse(t, strlen(t), "t.yml", &doc, &d), -KILN_E_PARSE);
    assert_true(kiln_diags_contains(&d, "t.yml:1:1: a component document must be a mapping"));
    kiln_diags_clear(&d);
}

static void
test_schema_version(void **state)
{
    (void)state;
    expect("name: t\nschemaVersion: 2.0\nphases:\n  - name: build\n    steps:\n" BASH("A"),
           "t.yml:2:16: schemaVersion: unsupported schema version '2.0': must be 1.0");
    expect("name: t\nphases:\n  - name: build\n    steps:\n" BASH("A"),
           "t.yml:1:1: missing required key 'schemaVersion'");
}

static void
test_unknown_keys(void **state)
{
    (void)state;
    expect(HEAD "foo: 1\nphases:\n  - name: build\n    steps:\n" BASH("A"),
           "t.yml:3:1: unknown key 'foo'");
    expect(HEAD "phases:\n  - name: build\n    steps:\n" BASH("A") "        retries: 3\n",
           "t.yml:10:9: phases[0].steps[0]: unknown key 'retries'");
}

static void
test_names(void **state)
{
    (void)state;
    expect(HEAD "phases:\n  - name: build\n    steps:\n" BASH("bad name"),
           "t.yml:6:15: phases[0].steps[0]: invalid step name 'bad name'");
    expect(HEAD "phases:\n  - name: build!\n    steps:\n" BASH("A"),
           "t.yml:4:11: phases[0]: invalid phase name 'build!'");
    expect(HEAD "parameters:\n  - my.param:\n      type: string\nphases:\n  - name: build\n    steps:\n" BASH("A"),
           "t.yml:4:5: parameters[0]: invalid name 'my.param'");
}

static void
test_duplicates(void **state)
{
    (void)state;
    expect(HEAD "phases:\n  - name: build\n    steps:\n" BASH("A") BASH("A"),
           "t.yml:10:15: phases[0].steps[1]: duplicate step name 'A' in phase 'build'");
    expect(HEAD "phases:\n  - name: build\n    steps:\n" BASH("A") "  - name: build\n    steps:\n" BASH("B"),
           "t.yml:10:11: phases[1]: duplicate phase name 'build'");
    expect(HEAD "parameters:\n  - x:\n      type: string\nconstants:\n  - x:\n      type: string\n"
                "      value: v\nphases:\n  - name: build\n    steps:\n" BASH("A"),
           "t.yml:7:5: constants[0]: duplicate variable name 'x'");
}

static void
test_phases_rules(void **state)
{
    (void)state;
    expect(HEAD "phases: []\n", "t.yml:3:9: phases: must contain at least one phase");
    expect(HEAD "phases:\n  - name: other\n    steps:\n" BASH("A"),
           "phases: must contain at least one of the phases build, validate, test");
    expect(HEAD "phases:\n  - name: build\n    steps: []\n",
           "t.yml:5:12: phases[0].steps: must be a non-empty list of steps");
    expect(HEAD "name2: x\n", "missing required key 'phases'");
}

static void
test_step_fields(void **state)
{
    (void)state;
    expect(HEAD "phases:\n  - name: build\n    steps:\n" BASH("A") "        onFailure: Stop\n",
           "t.yml:10:20: phases[0].steps[0].onFailure: must be one of Abort, Continue, Ignore "
           "(got 'Stop')");
    expect(HEAD "phases:\n  - name: build\n    steps:\n" BASH("A") "        timeoutSeconds: 0\n",
           "t.yml:10:25: phases[0].steps[0].timeoutSeconds: must be -1 (no timeout) or a "
           "positive number of seconds");
    expect(HEAD "phases:\n  - name: build\n    steps:\n" BASH("A") "        maxAttempts: many\n",
           "t.yml:10:22: phases[0].steps[0].maxAttempts: must be an integer");
    expect(HEAD "phases:\n  - name: build\n    steps:\n      - name: A\n        inputs: {}\n",
           "t.yml:6:9: phases[0].steps[0]: missing required key 'action'");
    expect_valid(HEAD "phases:\n  - name: build\n    steps:\n" BASH("A")
                      "        timeoutSeconds: -1\n        onFailure: Ignore\n"
                      "        maxAttempts: 3\n");
}

static void
test_parameters(void **state)
{
    (void)state;
    expect(HEAD "parameters:\n  - p:\n      type: number\nphases:\n  - name: build\n    steps:\n" BASH("A"),
           "t.yml:5:13: parameters.p: unsupported type 'number'");
    expect(HEAD "parameters:\n  - p:\n      default: x\nphases:\n  - name: build\n    steps:\n" BASH("A"),
           "t.yml:5:7: parameters.p: missing required key 'type'");
    expect(HEAD "constants:\n  - c:\n      type: string\nphases:\n  - name: build\n    steps:\n" BASH("A"),
           "t.yml:5:7: constants.c: missing required key 'value'");
    expect(HEAD "parameters:\n  - a: 1\n    b: 2\nphases:\n  - name: build\n    steps:\n" BASH("A"),
           "t.yml:4:5: parameters[0]: must be a mapping with exactly one key");
}

static void
test_allowed_values(void **state)
{
    (void)state;
    expect_valid(HEAD "parameters:\n  - Mode:\n      type: string\n      default: fast\n"
                      "      allowedValues: [fast, slow]\nphases:\n  - name: build\n    steps:\n" BASH("A"));
    expect(HEAD "parameters:\n  - Mode:\n      type: string\n      default: medium\n"
                "      allowedValues: [fast, slow]\nphases:\n  - name: build\n    steps:\n" BASH("A"),
           "t.yml:6:16: parameters.Mode: default 'medium' is not one of the allowedValues");
    expect(HEAD "parameters:\n  - Mode:\n      type: string\n      allowedValues: fast\n"
                "phases:\n  - name: build\n    steps:\n" BASH("A"),
           "t.yml:6:22: parameters.Mode.allowedValues: must be a non-empty list of strings");
}

static void
test_unknown_action(void **state)
{
    (void)state;
    expect(HEAD "phases:\n  - name: build\n    steps:\n      - name: A\n        action: Nope\n",
           "t.yml:7:17: phases[0].steps[0]: unknown action 'Nope'");
    expect(HEAD "phases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecutePowerShell\n"
                "        inputs:\n          commands: [x]\n",
           "t.yml:7:17: phases[0].steps[0]: ExecutePowerShell is not supported on Linux");
}

static void
test_module_inputs(void **state)
{
    (void)state;
    const char *pre = HEAD "phases:\n  - name: build\n    steps:\n      - name: A\n";
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s        action: ExecuteBash\n        inputs:\n          cmd: [x]\n", pre);
    expect(buf, "t.yml:9:11: phases[0].steps[0].inputs: ExecuteBash has no input named 'cmd'");
    expect(buf, "t.yml:9:11: phases[0].steps[0].inputs: ExecuteBash requires the input 'commands'");
    snprintf(buf, sizeof(buf), "%s        action: ExecuteBash\n        inputs:\n          commands: echo\n", pre);
    expect(buf, "t.yml:9:21: phases[0].steps[0].inputs.commands: must be a list, not 'echo'");
    snprintf(buf, sizeof(buf), "%s        action: ExecuteBash\n        inputs:\n          - commands: [x]\n", pre);
    expect(buf, "t.yml:9:11: phases[0].steps[0].inputs: ExecuteBash inputs must be a mapping, not a list");
    snprintf(buf, sizeof(buf), "%s        action: CreateFile\n        inputs:\n          path: /x\n", pre);
    expect(buf, "t.yml:9:11: phases[0].steps[0].inputs: CreateFile inputs must be a list, not a mapping");
    snprintf(buf, sizeof(buf), "%s        action: CreateFile\n        inputs:\n          - path: /x\n            encoding: latin9\n            overwrite: maybe\n", pre);
    /* the module's own rules (its check function) are reported at the value */
    expect(buf, "t.yml:10:23: phases[0].steps[0].inputs: encoding 'latin9' is not supported");
    expect(buf, "t.yml:11:24: phases[0].steps[0].inputs[0].overwrite: must be true or false, not 'maybe'");
    snprintf(buf, sizeof(buf), "%s        action: WebDownload\n        inputs:\n          - source: https://x/y\n            destination: /tmp/y\n            algorithm: CRC32\n            checksum: abc\n", pre);
    expect(buf, "t.yml:11:24: phases[0].steps[0].inputs[0].algorithm: 'CRC32' is not one of MD5, SHA1, SHA256, SHA512");
    snprintf(buf, sizeof(buf), "%s        action: Reboot\n        inputs:\n          delaySeconds: soon\n", pre);
    expect(buf, "t.yml:9:25: phases[0].steps[0].inputs.delaySeconds: must be an integer, not 'soon'");
    snprintf(buf, sizeof(buf), "%s        action: Reboot\n        inputs:\n          delaySeconds: \"{{ d }}\"\n", pre);
    expect(buf, "no parameter or constant named 'd'");
}

static void
test_all_errors_at_once(void **state)
{
    (void)state;
    struct kiln_diags d;
    size_t n = check(HEAD "bogus: 1\nphases:\n  - name: build\n    steps:\n"
                          "      - name: A\n        action: Nope\n"
                          "      - name: B\n        action: ExecuteBash\n        onFailure: x\n",
                     &d);
    /* bogus, unknown action, onFailure, missing commands */
    assert_int_equal(n, 4);
    kiln_diags_clear(&d);
}

#define LOOPSTEP(loop) HEAD "phases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecuteBash\n" \
    "        loop:\n" loop "        inputs:\n          commands: [\"echo {{ loop.value }}\"]\n"

static void
test_loops(void **state)
{
    (void)state;
    expect_valid(LOOPSTEP("          for:\n            start: 1\n            end: 3\n            updateBy: 1\n"));
    expect_valid(LOOPSTEP("          name: L\n          forEach: [a, b]\n"));
    expect_valid(LOOPSTEP("          forEach:\n            list: a,b\n            delimiter: ','\n"));
    expect(LOOPSTEP("          for:\n            start: 1\n            end: 3\n            updateBy: 0\n"),
           "t.yml:12:23: phases[0].steps[0].loop.for.updateBy: must not be 0");
    expect(LOOPSTEP("          for:\n            start: 1\n            end: 3\n            updateBy: -1\n"),
           "t.yml:12:23: phases[0].steps[0].loop.for.updateBy: moves away from end 3 (start 1)");
    expect(LOOPSTEP("          for:\n            start: 1\n            end: 3\n"),
           "t.yml:10:13: phases[0].steps[0].loop.for: missing required key 'updateBy'");
    expect(LOOPSTEP("          forEach: [a]\n          for:\n            start: 1\n            end: 1\n            updateBy: 1\n"),
           "t.yml:9:11: phases[0].steps[0].loop: exactly one of 'for' and 'forEach' is required");
    expect(LOOPSTEP("          forEach:\n            list: a,b\n            delimiter: '|'\n"),
           "t.yml:11:24: phases[0].steps[0].loop.forEach: delimiter must be one character");
    expect(LOOPSTEP("          forEach: a-string\n"),
           "t.yml:9:20: phases[0].steps[0].loop.forEach: must be a list, or a mapping");
    expect(LOOPSTEP("          name: bad.name\n          forEach: [a]\n"),
           "t.yml:9:17: phases[0].steps[0].loop: invalid loop name 'bad.name'");
}

static void
test_loop_references(void **state)
{
    (void)state;
    expect(HEAD "phases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecuteBash\n"
                "        inputs:\n          commands: [\"echo {{ loop.index }}\"]\n",
           "t.yml:9:22: phases[0].steps[0].inputs: '{{ loop.index }}' can only be used in the "
           "inputs of a step with a loop");
    expect(HEAD "phases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecuteBash\n"
                "        loop:\n          name: L\n          forEach: [a]\n"
                "        inputs:\n          commands: [\"echo {{ M.value }}\"]\n",
           "'{{ M.value }}': 'M' is not the name of this step's loop");
    expect_valid(HEAD "phases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecuteBash\n"
                      "        loop:\n          name: L\n          forEach: [a]\n"
                      "        inputs:\n          commands: [\"echo {{ L.value }} {{ L.index }}\"]\n");
}

static void
test_variable_references(void **state)
{
    (void)state;
    expect_valid(HEAD "parameters:\n  - p:\n      type: string\n      default: x\nconstants:\n"
                      "  - c:\n      type: string\n      value: y\nphases:\n  - name: build\n    steps:\n"
                      "      - name: A\n        action: ExecuteBash\n        inputs:\n"
                      "          commands: [\"echo {{ p }} {{c}}\"]\n");
    expect(HEAD "phases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecuteBash\n"
                "        inputs:\n          commands: [\"echo {{ nope }}\"]\n",
           "t.yml:9:22: phases[0].steps[0].inputs: '{{ nope }}': no parameter or constant named 'nope'");
    /* Not a reference (a Go template in a script): left alone. */
    expect_valid(HEAD "phases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecuteBash\n"
                      "        inputs:\n          commands: [\"docker inspect -f '{{.State.Running}}' x\"]\n");
}

static void
test_chaining_references(void **state)
{
    (void)state;
#define TWO(ref) HEAD "phases:\n  - name: build\n    steps:\n" BASH("A") \
        "      - name: B\n        action: ExecuteBash\n        inputs:\n          commands:\n" \
        "            - \"echo " ref "\"\n"
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", TWO("{{ build.A.outputs.stdout }}"));
    expect_valid(buf);
    snprintf(buf, sizeof(buf), "%s", TWO("{{ build.A.inputs[0].commands }}"));
    expect_valid(buf);
    snprintf(buf, sizeof(buf), "%s", TWO("{{ build.B.outputs.stdout }}"));
    expect(buf, "t.yml:14:15: phases[0].steps[1].inputs: '{{ build.B.outputs.stdout }}': step "
                "'build.B' does not run before this step");
    snprintf(buf, sizeof(buf), "%s", TWO("{{ build.Z.outputs.stdout }}"));
    expect(buf, "no step named 'Z' in phase 'build'");
    snprintf(buf, sizeof(buf), "%s", TWO("{{ test.A.outputs.stdout }}"));
    expect(buf, "no phase named 'test'");
    snprintf(buf, sizeof(buf), "%s", TWO("{{ build.A.result.stdout }}"));
    expect(buf, "not a reference");
}

#define IFSTEP(cond) HEAD "phases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecuteBash\n" \
    "        if:\n" cond "        inputs:\n          commands: [\"true\"]\n"

static void
test_if_conditions(void **state)
{
    (void)state;
    expect_valid(IFSTEP("          and:\n            - fileExists: /etc/passwd\n            - not:\n"
                        "                binaryExists: nothing-such\n"));
    expect_valid(IFSTEP("          stringEquals: a\n          value: A\n          then: Execute\n          else: Skip\n"));
    expect(IFSTEP("          stringEquals: a\n"),
           "t.yml:9:11: phases[0].steps[0].if: stringEquals needs a 'value' to compare with");
    expect(IFSTEP("          numberEquals: abc\n          value: 1\n"),
           "t.yml:9:25: phases[0].steps[0].if.numberEquals: 'abc' is not a number");
    expect(IFSTEP("          sizeEquals: 1\n"),
           "t.yml:9:11: phases[0].steps[0].if: unknown operator 'sizeEquals'");
    expect(IFSTEP("          fileExists: /a\n          folderExists: /b\n"),
           "only one operator per condition");
    expect(IFSTEP("          fileExists: /a\n          then: Maybe\n"),
           "t.yml:10:17: phases[0].steps[0].if: 'then' must be one of Abort, Execute, Skip");
    expect(IFSTEP("          and: []\n"),
           "t.yml:9:16: phases[0].steps[0].if.and: must be a non-empty list of conditions");
    expect(IFSTEP("          fileSHA256Equals: abc\n"), "fileSHA256Equals needs a 'path'");
    expect(IFSTEP("          patternMatches: '(['\n          value: x\n"), "invalid regular expression");
}

static void
test_assert_inputs(void **state)
{
    (void)state;
    expect_valid(HEAD "phases:\n  - name: build\n    steps:\n" BASH("A")
                      "      - name: Check\n        action: Assert\n        inputs:\n"
                      "          stringEquals: '{{ build.A.outputs.stdout }}'\n          value: ''\n");
    expect(HEAD "phases:\n  - name: build\n    steps:\n      - name: Check\n        action: Assert\n"
                "        inputs:\n          stringEquals: x\n          then: Skip\n",
           "unknown operator 'then'");
}

static void
test_execute_document_rules(void **state)
{
    (void)state;
    char *dir = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-doc-test", &dir, NULL), 0);
    char *a = kiln_path_join(dir, "a.yml"), *b = kiln_path_join(dir, "b.yml");
    const char *doc_a = HEAD "phases:\n  - name: build\n    steps:\n      - name: Nest\n"
                             "        action: ExecuteDocument\n        timeoutSeconds: 60\n"
                             "        inputs:\n          document: b.yml\n";
    const char *doc_b = HEAD "phases:\n  - name: build\n    steps:\n      - name: Back\n"
                             "        action: ExecuteDocument\n        inputs:\n          document: a.yml\n";
    assert_int_equal(kiln_write_file_atomic(a, doc_a, strlen(doc_a), 0644, NULL), 0);
    assert_int_equal(kiln_write_file_atomic(b, doc_b, strlen(doc_b), 0644, NULL), 0);
    struct kiln_diags d = {0};
    char *paths[] = {a, NULL};
    assert_int_equal(kiln_documents_check(paths, &d), -KILN_E_INVALID);
    char *all = kiln_diags_format(&d);
    char want[512];
    snprintf(want, sizeof(want), "%s:8:25: phases[0].steps[0]: ExecuteDocument does not take "
                                 "timeoutSeconds", a);
    if (!strstr(all, want))
        fail_msg("missing \"%s\" in\n%s", want, all);
    snprintf(want, sizeof(want), "%s:9:21: phases[0].steps[0].inputs: ExecuteDocument cycle: "
                                 "'a.yml' is already being executed", b);
    if (!strstr(all, want))
        fail_msg("missing \"%s\" in\n%s", want, all);
    free(all);
    kiln_diags_clear(&d);

    /* Depth: a -> b -> c -> d is one level too deep. */
    char *c = kiln_path_join(dir, "c.yml"), *dd = kiln_path_join(dir, "d.yml");
#define NEST HEAD "phases:\n  - name: build\n    steps:\n      - name: Nest\n" \
                            "        action: ExecuteDocument\n        inputs:\n          document: %s\n"
    char text[512];
    snprintf(text, sizeof(text), NEST, "b.yml");
    kiln_write_file_atomic(a, text, strlen(text), 0644, NULL);
    snprintf(text, sizeof(text), NEST, "c.yml");
    kiln_write_file_atomic(b, text, strlen(text), 0644, NULL);
    snprintf(text, sizeof(text), NEST, "d.yml");
    kiln_write_file_atomic(c, text, strlen(text), 0644, NULL);
    const char *leaf = HEAD "phases:\n  - name: build\n    steps:\n" BASH("A");
    kiln_write_file_atomic(dd, leaf, strlen(leaf), 0644, NULL);
    assert_int_equal(kiln_documents_check(paths, &d), -KILN_E_INVALID);
    snprintf(want, sizeof(want), "%s:9:21: phases[0].steps[0].inputs: ExecuteDocument nesting is "
                                 "limited to 3 levels", c);
    assert_true(kiln_diags_contains(&d, want));
    kiln_diags_clear(&d);
    char *pb[] = {b, NULL}; /* b -> c -> d: three levels, fine */
    assert_int_equal(kiln_documents_check(pb, &d), 0);
    kiln_diags_clear(&d);
    kiln_rm_rf(dir, NULL);
    free(a);
    free(b);
    free(c);
    free(dd);
    free(dir);
}

static void
test_junk_never_crashes(void **state)
{
    (void)state;
    static const char *const junk[] = {
        "", "~", "42", "phases: 7", "phases: [[[]]]", "phases:\n  - steps: {a: b}\n",
        "phases:\n  - name: build\n    steps:\n      - 1\n      - [x]\n",
        "phases:\n  - name: build\n    steps:\n      - name: A\n        action: [x]\n        loop: 3\n        if: []\n",
        "parameters: {a: b}\nconstants: [1, [2]]\n", "\x01\x02\xff\xfe",
        "a: &x [*x]\n", "phases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecuteBash\n        inputs: {commands: [{{ x }}]}\n",
    };
    for (size_t i = 0; i < ARRAY_SIZE(junk); i++) {
        struct kiln_diags d;
        struct kiln_document *doc = NULL;
        d = (struct kiln_diags){0};
        int r = kiln_document_parse(junk[i], strlen(junk[i]), "j.yml", &doc, &d);
        if (r == 0)
            kiln_document_validate(doc, 1, &d);
        assert_true(r < 0 || d.n > 0);
        kiln_document_free(doc);
        kiln_diags_clear(&d);
    }
    /* Deep nesting and a huge document fail cleanly. */
    struct kiln_buf b;
    kiln_buf_init(&b);
    for (int i = 0; i < 10000; i++)
        kiln_buf_append_char(&b, '[');
    struct kiln_diags d = {0};
    struct kiln_document *doc = NULL;
    assert_true(kiln_document_parse(b.data, b.len, "deep.yml", &doc, &d) < 0);
    kiln_diags_clear(&d);
    kiln_buf_reset(&b);
    kiln_buf_append_str(&b, HEAD "phases:\n  - name: build\n    steps:\n");
    for (int i = 0; i < 5000; i++)
        kiln_buf_appendf(&b, "      - name: S%d\n        action: Nope\n", i);
    assert_int_equal(kiln_document_parse(b.data, b.len, "big.yml", &doc, &d), 0);
    kiln_document_validate(doc, 1, &d);
    assert_int_equal(d.n, KILN_DOC_MAX_DIAGS);
    assert_true(d.dropped > 0);
    kiln_document_free(doc);
    kiln_diags_clear(&d);
    kiln_buf_clear(&b);
}

static void
test_expression_eval(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        bool want;
    } cases[] = {
        {"{\"stringEquals\":\"Testing\",\"value\":\"Testing\"}", true},
        {"{\"stringEquals\":\"Testing\",\"value\":\"testing \"}", false},
        {"{\"stringLessThan\":\"b\",\"value\":\"a\"}", true},
        {"{\"stringlessThan\":\"A\",\"value\":\"a\"}", false},
        {"{\"stringLessThanEquals\":\"A\",\"value\":\"a\"}", true},
        {"{\"stringGreaterThan\":\"a\",\"value\":\"b\"}", true},
        {"{\"stringIsEmpty\":\"\"}", true},
        {"{\"stringIsWhitespace\":\"   \"}", true},
        {"{\"stringIsWhitespace\":\"\"}", false},
        {"{\"patternMatches\":\"^[a-z]+$\",\"value\":\"ThisIsValue\"}", true},
        {"{\"numberEquals\":\"1\",\"value\":1}", true},
        {"{\"numberEquals\":5.0,\"value\":5}", true},
        {"{\"numberLessThan\":2,\"value\":1.9}", true},
        {"{\"numberLessThan\":2,\"value\":\"2\"}", false},
        {"{\"numberGreaterThanEquals\":1,\"value\":\"1\"}", true},
        {"{\"numberEquals\":1,\"value\":\"a10\"}", false},
        {"{\"fileExists\":\"/etc/passwd\"}", true},
        {"{\"folderExists\":\"/etc/passwd\"}", false},
        {"{\"binaryExists\":\"sh\"}", true},
        {"{\"and\":[{\"fileExists\":\"/etc/passwd\"},{\"not\":{\"folderExists\":\"/nonexistent\"}}]}", true},
        {"{\"or\":[{\"stringEquals\":\"a\",\"value\":\"b\"},{\"numberEquals\":1,\"value\":3}]}", false},
        {"{\"not\":[{\"stringEquals\":\"x\",\"value\":\"x\"}]}", false},
        {"{\"fileSHA256Equals\":\"x\",\"path\":\"/dev/zero\"}", false},
        {"{\"fileMD5Equals\":\"d41d8cd98f00b204e9800998ecf8427e\",\"path\":\"/dev/null\"}", false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        json_t *j = json_loads(cases[i].json, 0, NULL);
        assert_non_null(j);
        bool v;
        struct kiln_error err = {0};
        assert_int_equal(kiln_expr_eval(j, &v, NULL, &err), 0);
        if (v != cases[i].want)
            fail_msg("%s: got %d", cases[i].json, v);
        json_decref(j);
    }
    /* Hashes of a real file, compared without regard to case. */
    char *dir = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-expr-test", &dir, NULL), 0);
    char *file = kiln_path_join(dir, "abc");
    assert_int_equal(kiln_write_file_atomic(file, "abc", 3, 0644, NULL), 0);
    char *q = kiln_asprintf("{\"fileSHA256Equals\":\"BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD\",\"path\":\"%s\"}", file);
    json_t *h = json_loads(q, 0, NULL);
    bool hv = false;
    assert_int_equal(kiln_expr_eval(h, &hv, NULL, NULL), 0);
    assert_true(hv);
    json_decref(h);
    free(q);
    kiln_rm_rf(dir, NULL);
    free(file);
    free(dir);
    json_t *j = json_loads("{\"fileExists\":\"/nonexistent\",\"then\":\"Abort\",\"else\":\"Execute\"}",
                           0, NULL);
    bool v;
    const char *action;
    assert_int_equal(kiln_expr_eval(j, &v, &action, NULL), 0);
    assert_false(v);
    assert_string_equal(action, "Execute");
    json_decref(j);
}

KILN_TEST_MAIN(cmocka_unit_test(test_valid_minimal), cmocka_unit_test(test_defaults),
               cmocka_unit_test(test_malformed_yaml), cmocka_unit_test(test_schema_version),
               cmocka_unit_test(test_unknown_keys), cmocka_unit_test(test_names),
               cmocka_unit_test(test_duplicates), cmocka_unit_test(test_phases_rules),
               cmocka_unit_test(test_step_fields), cmocka_unit_test(test_parameters), cmocka_unit_test(test_allowed_values),
               cmocka_unit_test(test_unknown_action), cmocka_unit_test(test_module_inputs),
               cmocka_unit_test(test_all_errors_at_once), cmocka_unit_test(test_loops),
               cmocka_unit_test(test_loop_references), cmocka_unit_test(test_variable_references),
               cmocka_unit_test(test_chaining_references), cmocka_unit_test(test_if_conditions),
               cmocka_unit_test(test_assert_inputs),
               cmocka_unit_test(test_execute_document_rules),
               cmocka_unit_test(test_junk_never_crashes), cmocka_unit_test(test_expression_eval))
