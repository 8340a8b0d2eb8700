/* Fuzz target: parsing and validating a component document must never crash, hang or leak,
 * whatever the bytes (malformed YAML, wrong types, deep or huge documents, junk). */
#include <stdint.h>

#include "guest-agent/document.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kiln_document *doc = NULL;
    struct kiln_diags diags = {0};
    if (size > (1u << 20))
        return 0;
    if (kiln_document_parse((const char *)data, size, "fuzz.yml", &doc, &diags) == 0) {
        kiln_document_validate(doc, 1, &diags);
        /* Conditions are evaluated by the executor: exercise the evaluator on them too,
         * without touching the file system beyond stat. */
        for (size_t i = 0; i < doc->n_phases; i++)
            for (size_t j = 0; j < doc->phases[i].n_steps; j++) {
                const struct kiln_doc_step *s = &doc->phases[i].steps[j];
                if (!s->if_node)
                    continue;
                json_t *e = kiln_yaml_to_json(s->if_node);
                bool v;
                struct kiln_error err = {0};
                kiln_expr_eval(e, &v, NULL, &err);
                json_decref(e);
            }
    }
    char *text = kiln_diags_format(&diags);
    free(text);
    kiln_diags_clear(&diags);
    kiln_document_free(doc);
    return 0;
}
