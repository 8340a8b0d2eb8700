/* The table of every AWSTOE action module: input schemas for the validator, flags, and the run
 * functions (mod-*.c). Field names, types, required-ness and allowed values follow the AWSTOE
 * action module reference; docs/modules.md lists them with the places where Kiln differs. */
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "guest-agent/mod-common.h"
#include "guest-agent/module.h"

#define F_STR(n, req)                                                                              \
    {                                                                                              \
        (n), KILN_FIELD_STRING, (req), NULL                                                        \
    }
#define F_INT(n, req)                                                                              \
    {                                                                                              \
        (n), KILN_FIELD_INT, (req), NULL                                                           \
    }
#define F_BOOL(n, req)                                                                             \
    {                                                                                              \
        (n), KILN_FIELD_BOOL, (req), NULL                                                          \
    }
#define F_LIST(n, req)                                                                             \
    {                                                                                              \
        (n), KILN_FIELD_LIST, (req), NULL                                                          \
    }
#define F_MAP(n, req)                                                                              \
    {                                                                                              \
        (n), KILN_FIELD_MAP, (req), NULL                                                           \
    }
#define F_ANY(n, req)                                                                              \
    {                                                                                              \
        (n), KILN_FIELD_ANY, (req), NULL                                                           \
    }
#define F_ENUM(n, req, values)                                                                     \
    {                                                                                              \
        (n), KILN_FIELD_STRING, (req), (values)                                                    \
    }
#define F_END                                                                                      \
    {                                                                                              \
        NULL, 0, false, NULL                                                                       \
    }

/* ---- extra checks beyond the field table ---- */

/* A value that still holds {{ variables }} is checked at run time, after substitution. */
static bool
has_variable(const char *s)
{
    return s && strstr(s, "{{");
}

static void
for_each_item(const struct kiln_yaml_node *inputs,
              void (*fn)(const struct kiln_yaml_node *item, kiln_report_fn *report, void *ud),
              kiln_report_fn *report, void *userdata)
{
    if (!inputs)
        return;
    if (inputs->kind == KILN_YAML_MAPPING) {
        fn(inputs, report, userdata);
    } else if (inputs->kind == KILN_YAML_SEQUENCE) {
        for (size_t i = 0; i < inputs->n; i++)
            if (inputs->items[i]->kind == KILN_YAML_MAPPING)
                fn(inputs->items[i], report, userdata);
    }
}

static void
check_encoding_item(const struct kiln_yaml_node *item, kiln_report_fn *report, void *userdata)
{
    struct kiln_yaml_node *n = kiln_yaml_map_get(item, "encoding");
    const char *v = kiln_yaml_scalar(n);
    enum kiln_mod_encoding enc;
    if (!v || has_variable(v))
        return;
    if (kiln_mod_encoding_parse(v, &enc) < 0)
        report(userdata, n,
               "encoding '%s' is not supported (utf8, utf-8, utf16, utf-16, utf16-LE, "
               "utf-16-LE, utf16-BE, utf-16-BE, utf32, utf-32, utf32-LE, utf-32-LE, utf32-BE, "
               "utf-32-BE; any case)",
               v);
}

/* "0755", "755", "644": up to four octal digits (AWSTOE passes them to chmod). */
static bool
permissions_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 4)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '7')
            return false;
    return true;
}

static void
check_permissions_item(const struct kiln_yaml_node *item, kiln_report_fn *report, void *userdata)
{
    struct kiln_yaml_node *n = kiln_yaml_map_get(item, "permissions");
    const char *v = kiln_yaml_scalar(n);
    if (!v || has_variable(v))
        return;
    if (!permissions_valid(v))
        report(userdata, n, "permissions '%s' is not an octal mode such as 0755 or 644", v);
}

static void
check_file_props_item(const struct kiln_yaml_node *item, kiln_report_fn *report, void *userdata)
{
    check_encoding_item(item, report, userdata);
    check_permissions_item(item, report, userdata);
}

static void
check_encoding(const struct kiln_yaml_node *inputs, kiln_report_fn *report, void *userdata)
{
    for_each_item(inputs, check_encoding_item, report, userdata);
}

static void
check_permissions(const struct kiln_yaml_node *inputs, kiln_report_fn *report, void *userdata)
{
    for_each_item(inputs, check_permissions_item, report, userdata);
}

static void
check_file_props(const struct kiln_yaml_node *inputs, kiln_report_fn *report, void *userdata)
{
    for_each_item(inputs, check_file_props_item, report, userdata);
}

static void
check_web_item(const struct kiln_yaml_node *item, kiln_report_fn *report, void *userdata)
{
    struct kiln_yaml_node *sum = kiln_yaml_map_get(item, "checksum");
    struct kiln_yaml_node *alg = kiln_yaml_map_get(item, "algorithm");
    const char *src = kiln_yaml_scalar(kiln_yaml_map_get(item, "source"));
    /* AWSTOE verifies only when both are given; a lone one is almost surely a mistake. */
    if (sum && !alg)
        report(userdata, sum, "checksum needs algorithm (MD5, SHA1, SHA256 or SHA512)");
    if (alg && !sum)
        report(userdata, alg, "algorithm needs checksum");

    if (src && !has_variable(src) && strncasecmp(src, "http://", 7) != 0 &&
        strncasecmp(src, "https://", 8) != 0)
        report(userdata, kiln_yaml_map_get(item, "source"),
               "source '%s' is not an http:// or https:// URL", src);
}

static void
check_web(const struct kiln_yaml_node *inputs, kiln_report_fn *report, void *userdata)
{
    for_each_item(inputs, check_web_item, report, userdata);
}

static void
check_s3_field(const struct kiln_yaml_node *item, const char *field, kiln_report_fn *report,
               void *userdata)
{
    struct kiln_yaml_node *n = kiln_yaml_map_get(item, field);
    const char *v = kiln_yaml_scalar(n);
    if (v && !has_variable(v) && strncmp(v, "s3://", 5) != 0)
        report(userdata, n, "%s '%s' is not an s3://bucket/key URI", field, v);
}

static void
check_s3_download_item(const struct kiln_yaml_node *item, kiln_report_fn *report, void *userdata)
{
    check_s3_field(item, "source", report, userdata);
}

static void
check_s3_upload_item(const struct kiln_yaml_node *item, kiln_report_fn *report, void *userdata)
{
    check_s3_field(item, "destination", report, userdata);
}

static void
check_s3_download(const struct kiln_yaml_node *inputs, kiln_report_fn *report, void *userdata)
{
    for_each_item(inputs, check_s3_download_item, report, userdata);
}

static void
check_s3_upload(const struct kiln_yaml_node *inputs, kiln_report_fn *report, void *userdata)
{
    for_each_item(inputs, check_s3_upload_item, report, userdata);
}

/* ExecuteDocument parameters: a list of {name, value} mappings. */
static void
check_execute_document(const struct kiln_yaml_node *inputs, kiln_report_fn *report, void *userdata)
{
    struct kiln_yaml_node *params = kiln_yaml_map_get(inputs, "parameters");
    if (!params || kiln_yaml_is_null(params))
        return;
    if (params->kind != KILN_YAML_SEQUENCE) {
        report(userdata, params, "parameters must be a list of {name, value} mappings");
        return;
    }
    for (size_t i = 0; i < params->n; i++) {
        struct kiln_yaml_node *p = params->items[i];
        if (p->kind != KILN_YAML_MAPPING) {
            report(userdata, p, "parameters[%zu] must be a mapping with name and value", i);
            continue;
        }
        for (size_t k = 0; k < p->n; k++) {
            const char *key = p->keys[k]->value;
            if (strcmp(key, "name") != 0 && strcmp(key, "value") != 0)
                report(userdata, p->keys[k], "parameters[%zu]: unknown key '%s'", i, key);
            else if (p->items[k]->kind != KILN_YAML_SCALAR)
                report(userdata, p->items[k], "parameters[%zu].%s must be a string", i, key);
        }
        if (!kiln_yaml_map_get(p, "name"))
            report(userdata, p, "parameters[%zu] has no name", i);
        if (!kiln_yaml_map_get(p, "value"))
            report(userdata, p, "parameters[%zu] has no value", i);
    }
}

static void
check_reboot(const struct kiln_yaml_node *inputs, kiln_report_fn *report, void *userdata)
{
    struct kiln_yaml_node *n = kiln_yaml_map_get(inputs, "delaySeconds");
    long long v;
    if (n && n->kind == KILN_YAML_SCALAR && !has_variable(n->value) && !kiln_yaml_is_null(n) &&
        kiln_yaml_int(n, &v) == 0 && v < 0)
        report(userdata, n, "delaySeconds must not be negative");
}

/* ---- schemas ---- */

static const char *const hash_algorithms[] = {"MD5", "SHA1", "SHA256", "SHA512", NULL};
static const char *const msi_reboot[] = {"Allow", "Force", "Skip", NULL};
static const char *const registry_types[] = {"BINARY",    "DWORD",    "QWORD", "SZ",
                                             "EXPAND_SZ", "MULTI_SZ", NULL};

/* Assert takes exactly one comparison or logical operator; the engine evaluates it. */
static const struct kiln_module_field assert_fields[] = {
    F_ANY("stringIsEmpty", false),
    F_ANY("stringIsWhitespace", false),
    F_ANY("stringEquals", false),
    F_ANY("stringLessThan", false),
    F_ANY("stringLessThanEquals", false),
    F_ANY("stringGreaterThan", false),
    F_ANY("stringGreaterThanEquals", false),
    F_ANY("patternMatches", false),
    F_ANY("numberEquals", false),
    F_ANY("numberLessThan", false),
    F_ANY("numberLessThanEquals", false),
    F_ANY("numberGreaterThan", false),
    F_ANY("numberGreaterThanEquals", false),
    F_ANY("binaryExists", false),
    F_ANY("fileExists", false),
    F_ANY("folderExists", false),
    F_ANY("fileMD5Equals", false),
    F_ANY("fileSHA1Equals", false),
    F_ANY("fileSHA256Equals", false),
    F_ANY("fileSHA512Equals", false),
    F_ANY("and", false),
    F_ANY("or", false),
    F_ANY("not", false),
    F_ANY("value", false),
    F_ANY("path", false),
    F_END,
};

static const struct kiln_module_field execute_bash_fields[] = {
    F_LIST("commands", true),
    F_END,
};

static const struct kiln_module_field execute_binary_fields[] = {
    F_STR("path", true),
    F_LIST("arguments", false),
    F_END,
};

static const struct kiln_module_field execute_document_fields[] = {
    F_STR("document", true),
    F_STR("document-s3-bucket-owner", false),
    F_STR("phases", false),
    F_ANY("parameters", false),
    F_END,
};

static const struct kiln_module_field execute_powershell_fields[] = {
    F_LIST("commands", false),
    F_STR("file", false),
    F_END,
};

static const struct kiln_module_field web_download_fields[] = {
    F_STR("source", true),
    F_STR("destination", true),
    F_BOOL("overwrite", false),
    F_STR("checksum", false),
    F_ENUM("algorithm", false, hash_algorithms),
    F_BOOL("ignoreCertificateErrors", false),
    F_END,
};

static const struct kiln_module_field s3_download_fields[] = {
    F_STR("source", true),
    F_STR("destination", true),
    F_STR("expectedBucketOwner", false),
    F_BOOL("overwrite", false),
    F_END,
};

static const struct kiln_module_field s3_upload_fields[] = {
    F_STR("source", true),
    F_STR("destination", true),
    F_BOOL("recurse", false),
    F_STR("expectedBucketOwner", false),
    F_END,
};

static const struct kiln_module_field append_file_fields[] = {
    F_STR("path", true),
    F_STR("content", false),
    F_STR("encoding", false),
    F_END,
};

static const struct kiln_module_field copy_move_fields[] = {
    F_STR("source", true),
    F_STR("destination", true),
    F_BOOL("overwrite", false),
    F_END,
};

static const struct kiln_module_field create_file_fields[] = {
    F_STR("path", true),        F_STR("content", false),
    F_STR("encoding", false),   F_STR("owner", false),
    F_STR("group", false),      F_STR("permissions", false),
    F_BOOL("overwrite", false), F_END,
};

static const struct kiln_module_field create_folder_fields[] = {
    F_STR("path", true),         F_STR("owner", false),      F_STR("group", false),
    F_STR("permissions", false), F_BOOL("overwrite", false), F_END,
};

static const struct kiln_module_field create_symlink_fields[] = {
    F_STR("path", true),
    F_STR("target", true),
    F_BOOL("force", false),
    F_END,
};

/* "force" is not in the reference for DeleteFile, but AWS's own samples pass it to delete a
 * folder; with force, DeleteFile removes a folder tree (docs/modules.md). */
static const struct kiln_module_field delete_file_fields[] = {
    F_STR("path", true),
    F_BOOL("force", false),
    F_END,
};

static const struct kiln_module_field delete_folder_fields[] = {
    F_STR("path", true),
    F_BOOL("force", false),
    F_END,
};

static const struct kiln_module_field list_files_fields[] = {
    F_STR("path", true),
    F_STR("fileNamePattern", false),
    F_BOOL("recursive", false),
    F_END,
};

static const struct kiln_module_field read_file_fields[] = {
    F_STR("path", true),
    F_STR("encoding", false),
    F_BOOL("printFileContent", false),
    F_END,
};

static const struct kiln_module_field set_file_encoding_fields[] = {
    F_STR("path", true),
    F_STR("encoding", false),
    F_END,
};

static const struct kiln_module_field set_file_owner_fields[] = {
    F_STR("path", true),
    F_STR("owner", true),
    F_STR("group", false),
    F_END,
};

static const struct kiln_module_field set_folder_owner_fields[] = {
    F_STR("path", true),
    F_STR("owner", true),
    F_STR("group", false),
    F_BOOL("recursive", false),
    F_END,
};

static const struct kiln_module_field set_file_permissions_fields[] = {
    F_STR("path", true),
    F_STR("permissions", true),
    F_END,
};

static const struct kiln_module_field set_folder_permissions_fields[] = {
    F_STR("path", true),
    F_STR("permissions", true),
    F_BOOL("recursive", false),
    F_END,
};

static const struct kiln_module_field reboot_fields[] = {
    F_INT("delaySeconds", false),
    F_END,
};

static const struct kiln_module_field update_os_fields[] = {
    F_LIST("include", false),
    F_LIST("exclude", false),
    F_END,
};

static const struct kiln_module_field msi_fields[] = {
    F_STR("path", true),
    F_ENUM("reboot", false, msi_reboot),
    F_STR("logOptions", false),
    F_STR("logFile", false),
    F_MAP("properties", false),
    F_BOOL("ignoreAuthenticodeSignatureErrors", false),
    F_BOOL("allowUnsignedInstaller", false),
    F_END,
};

static const struct kiln_module_field set_registry_fields[] = {
    F_STR("path", true),
    F_STR("name", true),
    F_ANY("value", true),
    F_ENUM("type", true, registry_types),
    F_END,
};

#define WINDOWS KILN_MODULE_WINDOWS_ONLY
#define ENGINE KILN_MODULE_ENGINE

/* Sorted by name (kiln_module_find bisects). */
static const struct kiln_module modules[] = {
    {"AppendFile", 0, KILN_INPUTS_LIST, append_file_fields, check_encoding, kiln_mod_append_file},
    {"Assert", ENGINE, KILN_INPUTS_OBJECT, assert_fields, NULL, NULL},
    {"CopyFile", 0, KILN_INPUTS_LIST, copy_move_fields, NULL, kiln_mod_copy_file},
    {"CopyFolder", 0, KILN_INPUTS_LIST, copy_move_fields, NULL, kiln_mod_copy_folder},
    {"CreateFile", 0, KILN_INPUTS_LIST, create_file_fields, check_file_props, kiln_mod_create_file},
    {"CreateFolder", 0, KILN_INPUTS_LIST, create_folder_fields, check_permissions,
     kiln_mod_create_folder},
    {"CreateSymlink", 0, KILN_INPUTS_LIST, create_symlink_fields, NULL, kiln_mod_create_symlink},
    {"DeleteFile", 0, KILN_INPUTS_LIST, delete_file_fields, NULL, kiln_mod_delete_file},
    {"DeleteFolder", 0, KILN_INPUTS_LIST, delete_folder_fields, NULL, kiln_mod_delete_folder},
    {"ExecuteBash", 0, KILN_INPUTS_OBJECT, execute_bash_fields, NULL, kiln_mod_execute_bash},
    {"ExecuteBinary", 0, KILN_INPUTS_OBJECT, execute_binary_fields, NULL, kiln_mod_execute_binary},
    {"ExecuteDocument", ENGINE | KILN_MODULE_NO_TIMEOUT | KILN_MODULE_NO_ATTEMPTS,
     KILN_INPUTS_OBJECT, execute_document_fields, check_execute_document, NULL},
    {"ExecutePowerShell", WINDOWS, KILN_INPUTS_OBJECT, execute_powershell_fields, NULL, NULL},
    {"InstallMSI", WINDOWS, KILN_INPUTS_OBJECT, msi_fields, NULL, NULL},
    {"ListFiles", 0, KILN_INPUTS_LIST, list_files_fields, NULL, kiln_mod_list_files},
    {"MoveFile", 0, KILN_INPUTS_LIST, copy_move_fields, NULL, kiln_mod_move_file},
    {"MoveFolder", 0, KILN_INPUTS_LIST, copy_move_fields, NULL, kiln_mod_move_folder},
    {"ReadFile", 0, KILN_INPUTS_LIST, read_file_fields, check_encoding, kiln_mod_read_file},
    {"Reboot", ENGINE, KILN_INPUTS_OBJECT, reboot_fields, check_reboot, NULL},
    {"S3Download", 0, KILN_INPUTS_LIST, s3_download_fields, check_s3_download,
     kiln_mod_s3_download},
    {"S3Upload", 0, KILN_INPUTS_LIST, s3_upload_fields, check_s3_upload, kiln_mod_s3_upload},
    {"SetFileEncoding", 0, KILN_INPUTS_LIST, set_file_encoding_fields, check_encoding,
     kiln_mod_set_file_encoding},
    {"SetFileOwner", 0, KILN_INPUTS_LIST, set_file_owner_fields, NULL, kiln_mod_set_file_owner},
    {"SetFilePermissions", 0, KILN_INPUTS_LIST, set_file_permissions_fields, check_permissions,
     kiln_mod_set_file_permissions},
    {"SetFolderOwner", 0, KILN_INPUTS_LIST, set_folder_owner_fields, NULL,
     kiln_mod_set_folder_owner},
    {"SetFolderPermissions", 0, KILN_INPUTS_LIST, set_folder_permissions_fields, check_permissions,
     kiln_mod_set_folder_permissions},
    {"SetRegistry", WINDOWS, KILN_INPUTS_LIST, set_registry_fields, NULL, NULL},
    {"UninstallMSI", WINDOWS, KILN_INPUTS_OBJECT, msi_fields, NULL, NULL},
    {"UpdateOS", 0, KILN_INPUTS_OBJECT, update_os_fields, NULL, kiln_mod_update_os},
    {"WebDownload", 0, KILN_INPUTS_LIST, web_download_fields, check_web, kiln_mod_web_download},
};

const struct kiln_module *
kiln_module_find(const char *name)
{
    size_t lo = 0, hi = ARRAY_SIZE(modules);
    if (!name)
        return NULL;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, modules[mid].name);
        if (c == 0)
            return &modules[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const struct kiln_module *
kiln_module_table(size_t *ret_count)
{
    if (ret_count)
        *ret_count = ARRAY_SIZE(modules);
    return modules;
}
