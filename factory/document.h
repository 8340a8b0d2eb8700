/* Component documents as the factory sees them before any VM starts: validated (every problem
 * of every document at once, at file:line:column) and summarised for the manifest. */
#pragma once

#include <stdbool.h>

#include "common/error.h"

struct kiln_document_info {
    char *path;
    char *name;        /* the document's name, or its file name */
    char *sha256;      /* of the file as read */
    bool has_phase[3]; /* build, validate, test */
};

enum { KILN_PHASE_BUILD, KILN_PHASE_VALIDATE, KILN_PHASE_TEST };

/* Validate every document; fills infos[i] for each path (infos may be NULL). Returns 0, or
 * -KILN_E_INVALID with every problem in err (one "file:line:column: message" per line). */
int kiln_documents_validate(char *const *paths, struct kiln_document_info *infos,
                            struct kiln_error *err);
void kiln_document_info_clear(struct kiln_document_info *info);
