/* Fuzz target: the action modules' text handling. Whatever bytes a command prints or a file
 * holds, the UTF-8 repair gives valid UTF-8 that jansson accepts and that repairs to itself,
 * and decoding in every supported encoding either fails cleanly or gives valid UTF-8. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "guest-agent/mod-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n1, n2;
    char *once = kiln_mod_utf8_repair((const char *)data, size, &n1);
    char *twice = kiln_mod_utf8_repair(once, n1, &n2);
    if (n1 != n2 || memcmp(once, twice, n1) != 0)
        abort();
    json_t *j = json_stringn(once, n1); /* checks the UTF-8 */
    if (!j)
        abort();
    json_decref(j);
    free(once);
    free(twice);

    for (int e = KILN_ENC_UTF8; e <= KILN_ENC_UTF32BE; e++) {
        struct kiln_buf out = {0};
        struct kiln_error err = {0};
        if (kiln_mod_decode((enum kiln_mod_encoding)e, (const char *)data, size, &out, &err) ==
            0) {
            json_t *k = json_stringn(out.data ? out.data : "", out.len);
            if (!k)
                abort();
            json_decref(k);
        }
        kiln_buf_clear(&out);
    }
    return 0;
}
