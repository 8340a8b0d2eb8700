/* Conditional expressions of AWSTOE documents (the if construct and the Assert action): the
 * comparison operators (strings, numbers, files) and the logical operators and/or/not. */
#include <regex.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/hash.h"
#include "common/json.h"
#include "guest-agent/document.h"

enum op_kind {
    OP_STR_UNARY,  /* stringIsEmpty, stringIsWhitespace */
    OP_STR_BINARY, /* stringEquals ... patternMatches: needs value */
    OP_NUM_BINARY, /* numberEquals ...: needs value */
    OP_FILE_UNARY, /* binaryExists, fileExists, folderExists */
    OP_FILE_HASH,  /* file*Equals: needs path */
    OP_AND,
    OP_OR,
    OP_NOT,
};

struct op {
    const char *name;
    enum op_kind kind;
};

static const struct op ops[] = {
    {"stringIsEmpty", OP_STR_UNARY},
    {"stringIsWhitespace", OP_STR_UNARY},
    {"stringEquals", OP_STR_BINARY},
    {"stringLessThan", OP_STR_BINARY},
    {"stringLessThanEquals", OP_STR_BINARY},
    {"stringGreaterThan", OP_STR_BINARY},
    {"stringGreaterThanEquals", OP_STR_BINARY},
    {"patternMatches", OP_STR_BINARY},
    {"numberEquals", OP_NUM_BINARY},
    {"numberLessThan", OP_NUM_BINARY},
    {"numberLessThanEquals", OP_NUM_BINARY},
    {"numberGreaterThan", OP_NUM_BINARY},
    {"numberGreaterThanEquals", OP_NUM_BINARY},
    {"binaryExists", OP_FILE_UNARY},
    {"fileExists", OP_FILE_UNARY},
    {"folderExists", OP_FILE_UNARY},
    {"fileMD5Equals", OP_FILE_HASH},
    {"fileSHA1Equals", OP_FILE_HASH},
    {"fileSHA256Equals", OP_FILE_HASH},
    {"fileSHA512Equals", OP_FILE_HASH},
    {"and", OP_AND},
    {"or", OP_OR},
    {"not", OP_NOT},
};

/* Operator names are matched without regard to case: the AWS examples themselves write
 * "stringlessThan". */
static const struct op *
op_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
        if (strcasecmp(ops[i].name, name) == 0)
            return &ops[i];
    return NULL;
}

static bool
is_operand_key(const char *k, bool allow_then_else)
{
    return strcmp(k, "value") == 0 || strcmp(k, "path") == 0 ||
           (allow_then_else && (strcmp(k, "then") == 0 || strcmp(k, "else") == 0));
}

/* The number syntax AWSTOE accepts in strings: ^[-+]?([0-9]+[.])?[0-9]+$ */
static bool
parse_number(const char *s, double *ret)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    size_t digits = strspn(p, "0123456789");
    if (digits == 0)
        return false;
    p += digits;
    if (*p == '.') {
        p++;
        size_t frac = strspn(p, "0123456789");
        if (frac == 0)
            return false;
        p += frac;
    }
    if (*p)
        return false;
    char *end;
    *ret = strtod(s, &end);
    return true;
}

void
kiln_expr_validate(const char *file, const struct kiln_yaml_node *e, const char *field,
                   bool allow_then_else, struct kiln_diags *diags)
{
    if (!e || e->kind != KILN_YAML_MAPPING) {
        kiln_diags_add(diags, file, e, field, "a condition must be a mapping with one operator");
        return;
    }
    const struct op *op = NULL;
    const struct kiln_yaml_node *operand = NULL, *op_key = NULL;
    for (size_t i = 0; i < e->n; i++) {
        const char *k = e->keys[i]->value;
        if (is_operand_key(k, allow_then_else))
            continue;
        const struct op *o = op_find(k);
        if (!o) {
            kiln_diags_add(diags, file, e->keys[i], field, "unknown operator '%s'", k);
            continue;
        }
        if (op) {
            kiln_diags_add(diags, file, e->keys[i], field,
                           "only one operator per condition (found '%s' and '%s'): use 'and' "
                           "or 'or' to combine",
                           op->name, o->name);
            continue;
        }
        op = o;
        operand = e->items[i];
        op_key = e->keys[i];
    }
    if (!op) {
        kiln_diags_add(diags, file, e, field, "a condition needs an operator");
        return;
    }
    _cleanup_free_ char *f = kiln_asprintf("%s.%s", field, op_key->value);
    const struct kiln_yaml_node *value = kiln_yaml_map_get(e, "value");
    const struct kiln_yaml_node *path = kiln_yaml_map_get(e, "path");
    if (value && op->kind != OP_STR_BINARY && op->kind != OP_NUM_BINARY)
        kiln_diags_add(diags, file, value, field, "'value' is not used by %s", op->name);
    if (path && op->kind != OP_FILE_HASH)
        kiln_diags_add(diags, file, path, field, "'path' is not used by %s", op->name);
    for (const char *te = "then"; te; te = strcmp(te, "then") == 0 ? "else" : NULL) {
        const struct kiln_yaml_node *a = allow_then_else ? kiln_yaml_map_get(e, te) : NULL;
        const char *s = kiln_yaml_scalar(a);
        if (a && !kiln_streq(s, "Abort") && !kiln_streq(s, "Execute") && !kiln_streq(s, "Skip"))
            kiln_diags_add(diags, file, a, field, "'%s' must be one of Abort, Execute, Skip", te);
    }
    switch (op->kind) {
    case OP_AND:
    case OP_OR:
        if (operand->kind != KILN_YAML_SEQUENCE || operand->n == 0) {
            kiln_diags_add(diags, file, operand, f, "must be a non-empty list of conditions");
            return;
        }
        for (size_t i = 0; i < operand->n; i++) {
            _cleanup_free_ char *fi = kiln_asprintf("%s[%zu]", f, i);
            kiln_expr_validate(file, operand->items[i], fi, false, diags);
        }
        return;
    case OP_NOT:
        if (operand->kind == KILN_YAML_SEQUENCE) {
            if (operand->n != 1) {
                kiln_diags_add(diags, file, operand, f, "negates exactly one condition");
                return;
            }
            operand = operand->items[0];
        }
        kiln_expr_validate(file, operand, f, false, diags);
        return;
    default:
        break;
    }
    if (operand->kind != KILN_YAML_SCALAR) {
        kiln_diags_add(diags, file, operand, f, "must be a string or a number, not %s",
                       kiln_yaml_kind_name(operand->kind));
        return;
    }
    double d;
    if (op->kind == OP_STR_BINARY || op->kind == OP_NUM_BINARY) {
        if (!value)
            kiln_diags_add(diags, file, e, field, "%s needs a 'value' to compare with",
                           op->name);
        else if (value->kind != KILN_YAML_SCALAR)
            kiln_diags_add(diags, file, value, field, "'value' must be a string or a number");
    }
    if (op->kind == OP_NUM_BINARY && !strstr(operand->value, "{{") &&
        !parse_number(operand->value, &d))
        kiln_diags_add(diags, file, operand, f, "'%s' is not a number", operand->value);
    if (op->kind == OP_FILE_HASH && (!path || path->kind != KILN_YAML_SCALAR))
        kiln_diags_add(diags, file, path ? path : e, field, "%s needs a 'path' (a string)",
                       op->name);
    if (strcasecmp(op->name, "patternMatches") == 0 && !strstr(operand->value, "{{")) {
        regex_t re;
        if (regcomp(&re, operand->value, REG_EXTENDED | REG_NOSUB) != 0)
            kiln_diags_add(diags, file, operand, f, "invalid regular expression '%s'",
                           operand->value);
        else
            regfree(&re);
    }
}

/* A JSON scalar as text (strings as they are, numbers and booleans as written). */
static char *
scalar_text(const json_t *j)
{
    if (json_is_string(j))
        return kiln_strdup(json_string_value(j));
    if (json_is_integer(j))
        return kiln_asprintf("%lld", (long long)json_integer_value(j));
    if (json_is_real(j))
        return kiln_asprintf("%.17g", json_real_value(j));
    if (json_is_true(j))
        return kiln_strdup("true");
    if (json_is_false(j))
        return kiln_strdup("false");
    return kiln_strdup("");
}

static bool
json_number(const json_t *j, double *ret)
{
    if (json_is_number(j)) {
        *ret = json_number_value(j);
        return true;
    }
    return json_is_string(j) && parse_number(json_string_value(j), ret);
}

static bool
binary_exists(const char *name)
{
    if (!*name)
        return false;
    if (strchr(name, '/'))
        return access(name, X_OK) == 0;
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";
    while (*path) {
        size_t n = strcspn(path, ":");
        _cleanup_free_ char *full = kiln_asprintf("%.*s/%s", (int)n, n ? path : ".", name);
        struct stat st;
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && access(full, X_OK) == 0)
            return true;
        path += n;
        if (*path == ':')
            path++;
    }
    return false;
}

static int
eval(const json_t *e, bool *ret, struct kiln_error *err)
{
    if (!json_is_object(e))
        return kiln_error_set(err, -KILN_E_INVALID, "a condition must be a mapping");
    const struct op *op = NULL;
    const json_t *operand = NULL;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)e, key, v)
    {
        if (is_operand_key(key, true))
            continue;
        op = op_find(key);
        operand = v;
        if (!op)
            return kiln_error_set(err, -KILN_E_INVALID, "unknown operator '%s'", key);
        break;
    }
    if (!op)
        return kiln_error_set(err, -KILN_E_INVALID, "a condition needs an operator");
    if (op->kind == OP_AND || op->kind == OP_OR) {
        if (!json_is_array(operand))
            return kiln_error_set(err, -KILN_E_INVALID, "%s needs a list", op->name);
        size_t i;
        json_t *item;
        /* Evaluation stops at the first condition that decides the result. */
        json_array_foreach(operand, i, item)
        {
            bool b;
            int r = eval(item, &b, err);
            if (r < 0)
                return r;
            if (op->kind == OP_AND && !b) {
                *ret = false;
                return 0;
            }
            if (op->kind == OP_OR && b) {
                *ret = true;
                return 0;
            }
        }
        *ret = op->kind == OP_AND;
        return 0;
    }
    if (op->kind == OP_NOT) {
        if (json_is_array(operand)) {
            if (json_array_size(operand) != 1)
                return kiln_error_set(err, -KILN_E_INVALID, "not negates one condition");
            operand = json_array_get(operand, 0);
        }
        bool b;
        int r = eval(operand, &b, err);
        if (r < 0)
            return r;
        *ret = !b;
        return 0;
    }
    _cleanup_free_ char *a = scalar_text(operand);
    const json_t *value = json_object_get(e, "value");
    _cleanup_free_ char *b = scalar_text(value);
    const char *n = op->name;
    struct stat st;
    switch (op->kind) {
    case OP_STR_UNARY:
        if (strcmp(n, "stringIsEmpty") == 0)
            *ret = a[0] == '\0';
        else
            *ret = a[0] != '\0' && strspn(a, " ") == strlen(a);
        return 0;
    case OP_STR_BINARY: {
        if (strcmp(n, "patternMatches") == 0) {
            regex_t re;
            if (regcomp(&re, a, REG_EXTENDED | REG_NOSUB | REG_ICASE) != 0)
                return kiln_error_set(err, -KILN_E_INVALID, "invalid regular expression '%s'", a);
            *ret = regexec(&re, b, 0, NULL, 0) == 0;
            regfree(&re);
            return 0;
        }
        /* AWSTOE compares "value" against the operand, without regard to case. */
        int c = strcasecmp(b, a);
        if (strcmp(n, "stringEquals") == 0)
            *ret = c == 0;
        else if (strcmp(n, "stringLessThan") == 0)
            *ret = c < 0;
        else if (strcmp(n, "stringLessThanEquals") == 0)
            *ret = c <= 0;
        else if (strcmp(n, "stringGreaterThan") == 0)
            *ret = c > 0;
        else
            *ret = c >= 0;
        return 0;
    }
    case OP_NUM_BINARY: {
        double x, y;
        if (!json_number(value, &x) || !json_number(operand, &y)) {
            *ret = false; /* an unconvertible number makes the comparison false */
            return 0;
        }
        if (strcmp(n, "numberEquals") == 0)
            *ret = x == y;
        else if (strcmp(n, "numberLessThan") == 0)
            *ret = x < y;
        else if (strcmp(n, "numberLessThanEquals") == 0)
            *ret = x <= y;
        else if (strcmp(n, "numberGreaterThan") == 0)
            *ret = x > y;
        else
            *ret = x >= y;
        return 0;
    }
    case OP_FILE_UNARY:
        if (strcmp(n, "binaryExists") == 0)
            *ret = binary_exists(a);
        else if (strcmp(n, "fileExists") == 0)
            *ret = stat(a, &st) == 0 && S_ISREG(st.st_mode);
        else
            *ret = stat(a, &st) == 0 && S_ISDIR(st.st_mode);
        return 0;
    case OP_FILE_HASH: {
        enum kiln_hash_alg alg = strstr(n, "MD5")      ? KILN_HASH_MD5
                                 : strstr(n, "SHA1")   ? KILN_HASH_SHA1
                                 : strstr(n, "SHA256") ? KILN_HASH_SHA256
                                                       : KILN_HASH_SHA512;
        _cleanup_free_ char *path = scalar_text(json_object_get(e, "path"));
        char hex[KILN_HASH_MAX_HEX];
        struct kiln_error herr = {0};
        /* Only regular files: a device such as /dev/zero would never end. */
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) ||
            kiln_hash_file_hex(alg, path, hex, &herr) < 0) {
            *ret = false;
            return 0;
        }
        *ret = strcasecmp(hex, a) == 0;
        return 0;
    }
    default:
        break;
    }
    return kiln_error_set(err, -KILN_E_INVALID, "unsupported operator %s", n);
}

int
kiln_expr_eval(const json_t *expr, bool *ret_value, const char **ret_action,
               struct kiln_error *err)
{
    bool b = false;
    int r = eval(expr, &b, err);
    if (r < 0)
        return r;
    const char *then = kiln_json_get_str(expr, "then");
    const char *els = kiln_json_get_str(expr, "else");
    if (ret_action)
        *ret_action = b ? (then ? then : "Execute") : (els ? els : "Skip");
    *ret_value = b;
    return 0;
}
