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
PENDING(kiln_mod_update_os, "UpdateOS")
