/* Fuzz target: the YAML reader must reject or accept any input without crashing or leaking. */
#include <stdint.h>

#include "common/yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kiln_yaml_doc *doc = NULL;
    struct kiln_error err = {0};
    struct kiln_yaml_limits limits = {1 << 20, 64, 100000};
    if (kiln_yaml_parse((const char *)data, size, "fuzz", &limits, &doc, &err) == 0) {
        json_t *j = kiln_yaml_to_json(doc->root);
        json_decref(j);
        kiln_yaml_doc_free(doc);
    }
    return 0;
}
