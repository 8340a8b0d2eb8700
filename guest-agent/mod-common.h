/* Private to the action modules: their run functions (listed in modules.c) and the helpers they
 * share for reading resolved inputs, emitting console output, and file-system work. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "common/buf.h"
#include "common/error.h"
#include "guest-agent/module.h"

/* Run functions, one per Linux module (module.h describes the contract). */
#define KILN_MOD_RUN(fn)                                                                           \
    int fn(const json_t *inputs, const struct kiln_module_ctx *ctx, json_t **ret_outputs,          \
           struct kiln_error *err)

KILN_MOD_RUN(kiln_mod_execute_bash);
KILN_MOD_RUN(kiln_mod_execute_binary);
KILN_MOD_RUN(kiln_mod_web_download);
KILN_MOD_RUN(kiln_mod_s3_download);
KILN_MOD_RUN(kiln_mod_s3_upload);
KILN_MOD_RUN(kiln_mod_append_file);
KILN_MOD_RUN(kiln_mod_copy_file);
KILN_MOD_RUN(kiln_mod_copy_folder);
KILN_MOD_RUN(kiln_mod_create_file);
KILN_MOD_RUN(kiln_mod_create_folder);
KILN_MOD_RUN(kiln_mod_create_symlink);
KILN_MOD_RUN(kiln_mod_delete_file);
KILN_MOD_RUN(kiln_mod_delete_folder);
KILN_MOD_RUN(kiln_mod_list_files);
KILN_MOD_RUN(kiln_mod_move_file);
KILN_MOD_RUN(kiln_mod_move_folder);
KILN_MOD_RUN(kiln_mod_read_file);
KILN_MOD_RUN(kiln_mod_set_file_encoding);
KILN_MOD_RUN(kiln_mod_set_file_owner);
KILN_MOD_RUN(kiln_mod_set_folder_owner);
KILN_MOD_RUN(kiln_mod_set_file_permissions);
KILN_MOD_RUN(kiln_mod_set_folder_permissions);
KILN_MOD_RUN(kiln_mod_update_os);

/* Encodings AWSTOE's file modules accept (case-insensitive): utf8, utf-16 (LE by default),
 * utf-16-LE/BE, utf-32 (LE by default), utf-32-LE/BE, with or without the dash after "utf". */
enum kiln_mod_encoding {
    KILN_ENC_UTF8,
    KILN_ENC_UTF16LE,
    KILN_ENC_UTF16BE,
    KILN_ENC_UTF32LE,
    KILN_ENC_UTF32BE,
};
int kiln_mod_encoding_parse(const char *name, enum kiln_mod_encoding *ret);

/* ---- reading resolved inputs ----
 * Values arrive as the YAML became JSON: a scalar may be a string, a number or a boolean, and
 * after {{ variable }} substitution booleans and numbers may be strings. These accept all of
 * them. Errors name the module and the field. */

/* The items of a list-shaped input (an array), or the single object of an object-shaped one. */
size_t kiln_mod_item_count(const json_t *inputs);
const json_t *kiln_mod_item(const json_t *inputs, size_t i);

/* String form of a scalar field; NULL (and 0) when absent or null and not required. */
int kiln_mod_get_str(const json_t *obj, const char *module, const char *key, bool required,
                     char **ret, struct kiln_error *err);
int kiln_mod_get_bool(const json_t *obj, const char *module, const char *key, bool def, bool *ret,
                      struct kiln_error *err);
int kiln_mod_get_int(const json_t *obj, const char *module, const char *key, long long def,
                     long long *ret, struct kiln_error *err);
/* A list of scalars as a NULL-terminated vector (empty vector when absent). */
int kiln_mod_get_strv(const json_t *obj, const char *module, const char *key, char ***ret,
                      struct kiln_error *err);

/* A line of the module's own progress on the step console ("stdout"). */
void kiln_mod_console(const struct kiln_module_ctx *ctx, const char *fmt, ...) _printf_(2, 3);

/* Text conversion for the file modules (iconv). Encoding writes no byte-order mark; decoding
 * drops one that matches the encoding. Invalid input is an error naming the encoding. */
int kiln_mod_encode(enum kiln_mod_encoding enc, const char *utf8, size_t len, struct kiln_buf *out,
                    struct kiln_error *err);
int kiln_mod_decode(enum kiln_mod_encoding enc, const char *data, size_t len, struct kiln_buf *utf8,
                    struct kiln_error *err);
const char *kiln_mod_encoding_name(enum kiln_mod_encoding enc);

/* UpdateOS internals, for tests: the package manager found in PATH ("apt-get", "dnf", "yum",
 * or NULL), and the upgrade command it runs (apt-get ignores exclude here: it holds them). */
const char *kiln_mod_update_os_manager(void);
char **kiln_mod_update_os_upgrade_argv(const char *manager, char *const *include,
                                       char *const *exclude);

/* The wildcard of the file and S3 modules: '*' matches any run of characters, dot files
 * included (no other character is special). */
bool kiln_mod_star_match(const char *pattern, const char *name);

/* Output text as a JSON string: invalid UTF-8 (binary output, a cut character, odd file
 * names) becomes U+FFFD, as AWSTOE's JSON does, so the outputs always serialise. */
json_t *kiln_mod_json_text(const char *s, size_t len);
/* The same repair into a new NUL-terminated string. */
char *kiln_mod_utf8_repair(const char *s, size_t len, size_t *ret_len);
