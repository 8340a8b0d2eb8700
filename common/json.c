/* Bounded JSON parsing on top of jansson. */
#include "common/json.h"

#include "common/fs.h"

int
kiln_json_parse(const char *data, size_t len, size_t max_bytes, const char *source, json_t **ret,
                struct kiln_error *err)
{
    if (len > max_bytes)
        return kiln_error_set(err, -KILN_E_LIMIT, "%s: JSON document larger than %zu bytes",
                              source, max_bytes);
    json_error_t je;
    json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!j) {
        kiln_error_set_cause(err, "%s:%d:%d", source, je.line, je.column);
        return kiln_error_set(err, -KILN_E_PARSE, "%s:%d:%d: %s", source, je.line, je.column,
                              je.text);
    }
    *ret = j;
    return 0;
}

int
kiln_json_load_file(const char *path, size_t max_bytes, json_t **ret, struct kiln_error *err)
{
    _cleanup_free_ char *data = NULL;
    size_t len;
    int r = kiln_read_file(path, max_bytes, &data, &len, err);
    if (r < 0)
        return r;
    return kiln_json_parse(data, len, max_bytes, path, ret, err);
}

char *
kiln_json_dumps(const json_t *j, bool pretty)
{
    char *s = json_dumps(j, (pretty ? JSON_INDENT(2) : JSON_COMPACT) | JSON_ENCODE_ANY);
    if (!s)
        s = kiln_strdup("null");
    return s;
}

const char *
kiln_json_get_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}
