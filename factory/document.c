/* Validation of component documents on the host, before any VM starts.
 *
 * This checks the AWSTOE document's shape (schemaVersion, parameters, constants, phases, steps,
 * step fields, and action names against the module table from guest-agent/module.h). The
 * component engine's own validator checks everything else (inputs of each action, variables,
 * loops, conditions); when it is available it is called here as well. */
#include "factory/document.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/hash.h"
#include "common/yaml.h"
#include "factory/diag.h"
#include "guest-agent/module.h"

#pragma weak kiln_module_find

#define S KILN_YAML_SCALAR
#define L KILN_YAML_SEQUENCE
#define M KILN_YAML_MAPPING

static const struct kiln_yaml_field doc_fields[] = {
    {"name", S, false},
    {"description", S, false},
    {"schemaVersion", S, true},
    {"parameters", L, false},
    {"constants", L, false},
    {"phases", L, true},
    {NULL, S, false},
};

static const struct kiln_yaml_field phase_fields[] = {
    {"name", S, true},
    {"steps", L, true},
    {NULL, S, false},
};

static const struct kiln_yaml_field step_fields[] = {
    {"name", S, true},
    {"action", S, true},
    {"inputs", M, false},
    {"onFailure", S, false},
    {"timeoutSeconds", S, false},
    {"maxAttempts", S, false},
    {"if", M, false},
    {"loop", M, false},
    {NULL, S, false},
};

static const char *const phase_names[] = {"build", "validate", "test"};

static void
check_step(struct kiln_diag *d, const struct kiln_yaml_node *step)
{
    /* inputs may be a list for some modules: check kinds loosely for that one key. */
    if (step->kind != M) {
        kiln_diag_add(d, step, "step must be a mapping, not %s", kiln_yaml_kind_name(step->kind));
        return;
    }
    for (size_t i = 0; i < step->n; i++) {
        const char *key = step->keys[i]->value;
        const struct kiln_yaml_field *f = step_fields;
        while (f->key && strcmp(f->key, key) != 0)
            f++;
        if (!f->key)
            kiln_diag_add(d, step->keys[i], "step: unknown field '%s'", key);
    }
    const struct kiln_yaml_node *name = kiln_yaml_map_get(step, "name");
    const struct kiln_yaml_node *action = kiln_yaml_map_get(step, "action");
    if (!name)
        kiln_diag_add(d, step, "step: missing required field 'name'");
    if (!action) {
        kiln_diag_add(d, step, "step: missing required field 'action'");
    } else if (kiln_module_find && kiln_yaml_scalar(action)) {
        const struct kiln_module *m = kiln_module_find(action->value);
        if (!m)
            kiln_diag_add(d, action, "step '%s': unknown action '%s'",
                          name ? kiln_yaml_scalar(name) : "?", action->value);
        else if (m->flags & KILN_MODULE_WINDOWS_ONLY)
            kiln_diag_add(d, action, "step '%s': action '%s' is not supported on Linux",
                          name ? kiln_yaml_scalar(name) : "?", action->value);
    }
    const struct kiln_yaml_node *on = kiln_yaml_map_get(step, "onFailure");
    const char *ov = kiln_yaml_scalar(on);
    if (ov && !kiln_streq(ov, "Abort") && !kiln_streq(ov, "Continue") &&
        !kiln_streq(ov, "Ignore") && !strstr(ov, "{{"))
        kiln_diag_add(d, on, "onFailure '%s' is not one of Abort, Continue, Ignore", ov);
    long long v;
    const struct kiln_yaml_node *t = kiln_yaml_map_get(step, "timeoutSeconds");
    if (t && kiln_yaml_scalar(t) && !strstr(t->value, "{{") &&
        (kiln_yaml_int(t, &v) < 0 || v < -1 || v == 0 || v > 43200))
        kiln_diag_add(d, t, "timeoutSeconds '%s' must be -1 or 1..43200", t->value);
    const struct kiln_yaml_node *a = kiln_yaml_map_get(step, "maxAttempts");
    if (a && kiln_yaml_scalar(a) && !strstr(a->value, "{{") &&
        (kiln_yaml_int(a, &v) < 0 || v < 1 || v > 1000))
        kiln_diag_add(d, a, "maxAttempts '%s' must be 1..1000", a->value);
}

static void
check_document(struct kiln_diag *d, const struct kiln_yaml_node *root,
               struct kiln_document_info *info)
{
    if (!kiln_diag_check_mapping(d, root, "component document", doc_fields))
        return;
    const char *sv = kiln_yaml_scalar(kiln_yaml_map_get(root, "schemaVersion"));
    if (sv && !kiln_streq(sv, "1.0"))
        kiln_diag_add(d, kiln_yaml_map_get(root, "schemaVersion"),
                      "schemaVersion '%s' is not supported (use 1.0)", sv);
    if (info && kiln_yaml_scalar(kiln_yaml_map_get(root, "name"))) {
        free(info->name);
        info->name = kiln_strdup(kiln_yaml_scalar(kiln_yaml_map_get(root, "name")));
    }
    const struct kiln_yaml_node *phases = kiln_yaml_map_get(root, "phases");
    if (!phases || phases->kind != L)
        return;
    if (phases->n == 0)
        kiln_diag_add(d, phases, "phases: a document needs at least one phase");
    for (size_t i = 0; i < phases->n; i++) {
        const struct kiln_yaml_node *ph = phases->items[i];
        if (!kiln_diag_check_mapping(d, ph, "phase", phase_fields))
            continue;
        const char *pname = kiln_yaml_scalar(kiln_yaml_map_get(ph, "name"));
        if (pname) {
            size_t k = 0;
            while (k < 3 && strcmp(phase_names[k], pname) != 0)
                k++;
            if (k == 3)
                kiln_diag_add(d, kiln_yaml_map_get(ph, "name"),
                              "phase '%s' is not one of build, validate, test", pname);
            else if (info)
                info->has_phase[k] = true;
            for (size_t j = 0; j < i; j++)
                if (kiln_streq(pname, kiln_yaml_scalar(kiln_yaml_map_get(phases->items[j],
                                                                         "name"))))
                    kiln_diag_add(d, kiln_yaml_map_get(ph, "name"), "phase '%s' appears twice",
                                  pname);
        }
        const struct kiln_yaml_node *steps = kiln_yaml_map_get(ph, "steps");
        if (!steps || steps->kind != L)
            continue;
        if (steps->n == 0)
            kiln_diag_add(d, steps, "phase '%s': needs at least one step", pname ? pname : "?");
        for (size_t s = 0; s < steps->n; s++) {
            check_step(d, steps->items[s]);
            const char *sn = kiln_yaml_scalar(kiln_yaml_map_get(steps->items[s], "name"));
            for (size_t j = 0; sn && j < s; j++)
                if (kiln_streq(sn, kiln_yaml_scalar(kiln_yaml_map_get(steps->items[j], "name"))))
                    kiln_diag_add(d, kiln_yaml_map_get(steps->items[s], "name"),
                                  "step name '%s' is used twice in phase '%s'", sn,
                                  pname ? pname : "?");
        }
    }
}

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

int
kiln_documents_validate(char *const *paths, struct kiln_document_info *infos,
                        struct kiln_error *err)
{
    struct kiln_buf all;
    kiln_buf_init(&all);
    unsigned bad = 0;
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
        struct kiln_error e = {0};
        struct kiln_yaml_doc *doc = NULL;
        struct kiln_diag d;
        kiln_diag_init(&d, paths[i]);
        if (kiln_yaml_load_file(paths[i], NULL, &doc, &e) < 0)
            kiln_diag_add_error(&d, &e);
        else if (!doc->root)
            kiln_diag_add_at(&d, 1, 1, "the document is empty");
        else
            check_document(&d, doc->root, info);
        kiln_yaml_doc_free(doc);
        kiln_error_clear(&e);
        if (kiln_diag_finish(&d, &e) < 0) {
            if (bad++ == 0 && err && err->code == 0)
                kiln_error_set_cause(err, "%s", e.cause);
            if (all.len)
                kiln_buf_append_char(&all, '\n');
            kiln_buf_append_str(&all, e.message);
        }
        kiln_diag_clear(&d);
    }
    int r = 0;
    if (bad)
        r = kiln_error_set(err, -KILN_E_INVALID, "%s", all.data);
    kiln_buf_clear(&all);
    return r;
}
