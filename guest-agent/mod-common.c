/* Helpers shared by the action modules. */
#include <errno.h>
#include <iconv.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "guest-agent/mod-common.h"

int
kiln_mod_encoding_parse(const char *name, enum kiln_mod_encoding *ret)
{
    static const struct {
        const char *name;
        enum kiln_mod_encoding enc;
    } names[] = {
        {"utf8", KILN_ENC_UTF8},        {"utf16", KILN_ENC_UTF16LE}, {"utf16-le", KILN_ENC_UTF16LE},
        {"utf16-be", KILN_ENC_UTF16BE}, {"utf32", KILN_ENC_UTF32LE}, {"utf32-le", KILN_ENC_UTF32LE},
        {"utf32-be", KILN_ENC_UTF32BE},
    };
    char norm[16];
    size_t n = 0;
    if (!name)
        return -EINVAL;
    /* "utf-16-LE" and "utf16-LE" are both documented: drop the dash right after "utf". */
    for (size_t i = 0; name[i]; i++) {
        if (i == 3 && name[i] == '-' && strncasecmp(name, "utf", 3) == 0)
            continue;
        if (n + 1 >= sizeof(norm))
            return -EINVAL;
        norm[n++] = name[i];
    }
    norm[n] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if (strcasecmp(norm, names[i].name) == 0) {
            *ret = names[i].enc;
            return 0;
        }
    }
    return -EINVAL;
}

size_t
kiln_mod_item_count(const json_t *inputs)
{
    if (json_is_array(inputs))
        return json_array_size(inputs);
    return json_is_object(inputs) ? 1 : 0;
}

const json_t *
kiln_mod_item(const json_t *inputs, size_t i)
{
    if (json_is_array(inputs))
        return json_array_get(inputs, i);
    return i == 0 ? inputs : NULL;
}

/* Text of a JSON scalar: strings as they are, numbers and booleans written plainly. */
static char *
scalar_text(const json_t *v)
{
    if (json_is_string(v))
        return kiln_strndup(json_string_value(v), json_string_length(v));
    if (json_is_integer(v))
        return kiln_asprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
    if (json_is_real(v))
        return kiln_asprintf("%.17g", json_real_value(v));
    if (json_is_boolean(v))
        return kiln_strdup(json_is_true(v) ? "true" : "false");
    return NULL;
}

int
kiln_mod_get_str(const json_t *obj, const char *module, const char *key, bool required, char **ret,
                 struct kiln_error *err)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    *ret = NULL;
    if (!v || json_is_null(v)) {
        if (required)
            return kiln_error_set(err, -KILN_E_INVALID, "%s: input '%s' is required", module, key);
        return 0;
    }
    char *s = scalar_text(v);
    if (!s)
        return kiln_error_set(err, -KILN_E_INVALID, "%s: input '%s' must be a string", module, key);
    if (strlen(s) != (json_is_string(v) ? json_string_length(v) : strlen(s))) {
        free(s);
        return kiln_error_set(err, -KILN_E_INVALID, "%s: input '%s' holds a NUL byte", module, key);
    }
    *ret = s;
    return 0;
}

int
kiln_mod_get_bool(const json_t *obj, const char *module, const char *key, bool def, bool *ret,
                  struct kiln_error *err)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    *ret = def;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_boolean(v)) {
        *ret = json_is_true(v);
        return 0;
    }
    if (json_is_string(v)) {
        if (strcasecmp(json_string_value(v), "true") == 0) {
            *ret = true;
            return 0;
        }
        if (strcasecmp(json_string_value(v), "false") == 0) {
            *ret = false;
            return 0;
        }
    }
    return kiln_error_set(err, -KILN_E_INVALID, "%s: input '%s' must be true or false", module,
                          key);
}

int
kiln_mod_get_int(const json_t *obj, const char *module, const char *key, long long def,
                 long long *ret, struct kiln_error *err)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    *ret = def;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        *ret = json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (!errno && end != s && *end == '\0') {
            *ret = n;
            return 0;
        }
    }
    return kiln_error_set(err, -KILN_E_INVALID, "%s: input '%s' must be an integer", module, key);
}

int
kiln_mod_get_strv(const json_t *obj, const char *module, const char *key, char ***ret,
                  struct kiln_error *err)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    size_t n = json_is_array(v) ? json_array_size(v) : 0;
    *ret = NULL;
    if (v && !json_is_null(v) && !json_is_array(v))
        return kiln_error_set(err, -KILN_E_INVALID, "%s: input '%s' must be a list", module, key);
    char **list = kiln_new(char *, n + 1);
    for (size_t i = 0; i < n; i++) {
        list[i] = scalar_text(json_array_get(v, i));
        if (!list[i]) {
            kiln_strv_free(list);
            return kiln_error_set(err, -KILN_E_INVALID, "%s: %s[%zu] must be a string", module, key,
                                  i);
        }
    }
    *ret = list;
    return 0;
}

void
kiln_mod_console(const struct kiln_module_ctx *ctx, const char *fmt, ...)
{
    if (!ctx || !ctx->console)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    va_end(ap);
    size_t n = strlen(s);
    ctx->console(ctx->console_userdata, "stdout", s, n);
    if (n == 0 || s[n - 1] != '\n')
        ctx->console(ctx->console_userdata, "stdout", "\n", 1);
    free(s);
}

const char *
kiln_mod_encoding_name(enum kiln_mod_encoding enc)
{
    switch (enc) {
    case KILN_ENC_UTF8:
        return "UTF-8";
    case KILN_ENC_UTF16LE:
        return "UTF-16LE";
    case KILN_ENC_UTF16BE:
        return "UTF-16BE";
    case KILN_ENC_UTF32LE:
        return "UTF-32LE";
    case KILN_ENC_UTF32BE:
        return "UTF-32BE";
    }
    return "UTF-8";
}

static size_t utf8_seq(const unsigned char *s, size_t n);

static int
convert(const char *to, const char *from, const char *data, size_t len, struct kiln_buf *out,
        struct kiln_error *err)
{
    iconv_t cd = iconv_open(to, from);
    if (cd == (iconv_t)-1)
        return kiln_error_errno(err, -errno, "cannot convert %s to %s", from, to);
    char *in = (char *)data;
    size_t left = len;
    while (left > 0) {
        char chunk[4096];
        char *o = chunk;
        size_t room = sizeof(chunk);
        size_t r = iconv(cd, &in, &left, &o, &room);
        kiln_buf_append(out, chunk, sizeof(chunk) - room);
        if (r == (size_t)-1 && errno != E2BIG) {
            int e = errno;
            iconv_close(cd);
            return kiln_error_set(err, -EILSEQ, "text is not valid %s at byte %zu%s", from,
                                  len - left, e == EINVAL ? " (truncated character)" : "");
        }
    }
    iconv_close(cd);
    return 0;
}

int
kiln_mod_encode(enum kiln_mod_encoding enc, const char *utf8, size_t len, struct kiln_buf *out,
                struct kiln_error *err)
{
    return convert(kiln_mod_encoding_name(enc), "UTF-8", utf8, len, out, err);
}

int
kiln_mod_decode(enum kiln_mod_encoding enc, const char *data, size_t len, struct kiln_buf *utf8,
                struct kiln_error *err)
{
    static const struct {
        enum kiln_mod_encoding enc;
        const char *bom;
        size_t n;
    } boms[] = {
        {KILN_ENC_UTF8, "\xEF\xBB\xBF", 3},    {KILN_ENC_UTF16LE, "\xFF\xFE", 2},
        {KILN_ENC_UTF16BE, "\xFE\xFF", 2},     {KILN_ENC_UTF32LE, "\xFF\xFE\0\0", 4},
        {KILN_ENC_UTF32BE, "\0\0\xFE\xFF", 4},
    };
    for (size_t i = 0; i < ARRAY_SIZE(boms); i++)
        if (boms[i].enc == enc && len >= boms[i].n && memcmp(data, boms[i].bom, boms[i].n) == 0) {
            data += boms[i].n;
            len -= boms[i].n;
        }
    size_t start = utf8->len;
    int r = convert("UTF-8", kiln_mod_encoding_name(enc), data, len, utf8, err);
    if (r < 0)
        return r;
    /* iconv lets through what UTF-8 forbids (code points above U+10FFFF from "UTF-8",
     * surrogates): check the result strictly */
    const unsigned char *p = (const unsigned char *)utf8->data + start;
    size_t n = utf8->len - start;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0)
            return kiln_error_set(err, -EILSEQ, "text is not valid %s",
                                  kiln_mod_encoding_name(enc));
        i += k;
    }
    return 0;
}

bool
kiln_mod_star_match(const char *pat, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*pat == '*') {
            star = pat++;
            resume = s;
        } else if (*pat == *s) {
            pat++;
            s++;
        } else if (star) {
            pat = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

/* Length of the well-formed UTF-8 sequence at s (at most n bytes), or 0 when it is not one. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned min;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, min = 0x80, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, min = 0x800, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

char *
kiln_mod_utf8_repair(const char *s, size_t len, size_t *ret_len)
{
    struct kiln_buf b = {0};
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_seq(p + i, len - i);
        if (n == 0) {
            kiln_buf_append(&b, "\xEF\xBF\xBD", 3);
            i++;
            continue;
        }
        kiln_buf_append(&b, p + i, n);
        i += n;
    }
    if (ret_len)
        *ret_len = b.len;
    return kiln_buf_steal(&b);
}

json_t *
kiln_mod_json_text(const char *s, size_t len)
{
    size_t n;
    char *fixed = kiln_mod_utf8_repair(s ? s : "", s ? len : 0, &n);
    json_t *j = json_stringn_nocheck(fixed, n);
    free(fixed);
    return j;
}
