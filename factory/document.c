/* Validation of component documents on the host, before any VM starts: the component engine's
 * own loader and validator (guest-agent/document.h), every document and every problem at once,
 * plus what the factory needs to know of each document (name, phases, digest). */
#include "factory/document.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/hash.h"
#include "guest-agent/document.h"

void
kiln_document_info_clear(struct kiln_document_info *info)
{
    if (!info)
        return;
    free(info->path);
    free(info->name);
    free(info->sha256);
    memset(info, 0, sizeof(*info));
}

static const char *const phase_names[] = {"build", "validate", "test"};

int
kiln_documents_validate(char *const *paths, struct kiln_document_info *infos,
                        struct kiln_error *err)
{
    struct kiln_diags diags = {0};
    for (size_t i = 0; paths[i]; i++) {
        struct kiln_document_info *info = infos ? &infos[i] : NULL;
        if (info) {
            info->path = kiln_strdup(paths[i]);
            const char *base = strrchr(paths[i], '/');
            info->name = kiln_strdup(base ? base + 1 : paths[i]);
            char hex[KILN_HASH_MAX_HEX];
            if (kiln_hash_file_hex(KILN_HASH_SHA256, paths[i], hex, NULL) == 0)
                info->sha256 = kiln_strdup(hex);
        }
        struct kiln_document *doc = NULL;
        kiln_document_load(paths[i], &doc, &diags);
        if (!doc)
            continue;
        kiln_document_validate(doc, 1, &diags);
        if (info) {
            if (doc->name) {
                free(info->name);
                info->name = kiln_strdup(doc->name);
            }
            for (size_t p = 0; p < doc->n_phases; p++)
                for (size_t k = 0; k < 3; k++)
                    if (kiln_streq(doc->phases[p].name, phase_names[k]))
                        info->has_phase[k] = true;
        }
        kiln_document_free(doc);
    }
    int r = 0;
    if (diags.n > 0) {
        _cleanup_free_ char *text = kiln_diags_format(&diags);
        size_t len = strlen(text);
        while (len > 0 && text[len - 1] == '\n')
            text[--len] = '\0';
        kiln_error_set_cause(err, "%s:%u:%u", diags.v[0].file, diags.v[0].line, diags.v[0].column);
        r = kiln_error_set(err, -KILN_E_INVALID, "%s", text);
    }
    kiln_diags_clear(&diags);
    return r;
}
