/* Run functions not written yet: each fails with a clear error. Removed module by module as the
 * real implementations land in mod-*.c. */
#include "guest-agent/mod-common.h"

#define PENDING(fn, name)                                                                          \
    KILN_MOD_RUN(fn)                                                                               \
    {                                                                                              \
        (void)inputs;                                                                              \
        (void)ctx;                                                                                 \
        (void)ret_outputs;                                                                         \
        return kiln_error_set(err, -KILN_E_UNSUPPORTED, "%s: not implemented yet", name);        \
    }

PENDING(kiln_mod_web_download, "WebDownload")
PENDING(kiln_mod_s3_download, "S3Download")
PENDING(kiln_mod_s3_upload, "S3Upload")
PENDING(kiln_mod_append_file, "AppendFile")
PENDING(kiln_mod_copy_file, "CopyFile")
PENDING(kiln_mod_copy_folder, "CopyFolder")
PENDING(kiln_mod_create_file, "CreateFile")
PENDING(kiln_mod_create_folder, "CreateFolder")
PENDING(kiln_mod_create_symlink, "CreateSymlink")
PENDING(kiln_mod_delete_file, "DeleteFile")
PENDING(kiln_mod_delete_folder, "DeleteFolder")
PENDING(kiln_mod_list_files, "ListFiles")
PENDING(kiln_mod_move_file, "MoveFile")
PENDING(kiln_mod_move_folder, "MoveFolder")
PENDING(kiln_mod_read_file, "ReadFile")
PENDING(kiln_mod_set_file_encoding, "SetFileEncoding")
PENDING(kiln_mod_set_file_owner, "SetFileOwner")
PENDING(kiln_mod_set_folder_owner, "SetFolderOwner")
PENDING(kiln_mod_set_file_permissions, "SetFilePermissions")
PENDING(kiln_mod_set_folder_permissions, "SetFolderPermissions")
PENDING(kiln_mod_update_os, "UpdateOS")
