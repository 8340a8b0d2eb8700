/* Helpers shared by the action modules. */
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
        {"utf8", KILN_ENC_UTF8},         {"utf16", KILN_ENC_UTF16LE},
        {"utf16-le", KILN_ENC_UTF16LE},  {"utf16-be", KILN_ENC_UTF16BE},
        {"utf32", KILN_ENC_UTF32LE},     {"utf32-le", KILN_ENC_UTF32LE},
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
