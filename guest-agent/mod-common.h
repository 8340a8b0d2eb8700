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
