/* File helpers: bounded reads, atomic writes, recursive mkdir and removal. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#include "common/error.h"

/* Read a whole file of at most max bytes; the result is NUL-terminated. */
int kiln_read_file(const char *path, size_t max, char **ret_data, size_t *ret_len,
                   struct kiln_error *err);
/* Write through a temporary file in the same folder and rename it into place. */
int kiln_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                           struct kiln_error *err);
/* Copy a regular file to a new file dst (which must not exist): a reflink where the file system
 * shares extents, else an in-kernel copy (copy_file_range). On failure dst is removed. */
int kiln_copy_file(const char *src, const char *dst, mode_t mode, struct kiln_error *err);
int kiln_mkdir_p(const char *path, mode_t mode, struct kiln_error *err);
/* Remove a file or a whole tree; never follows symbolic links; missing is not an error. */
int kiln_rm_rf(const char *path, struct kiln_error *err);
char *kiln_path_join(const char *a, const char *b);
/* The Kiln home: $KILN_HOME, else /var/lib/kiln for root, else $XDG_DATA_HOME/kiln
 * (~/.local/share/kiln). */
char *kiln_home_dir(void);
/* Create a fresh private directory under $TMPDIR (or /tmp) from a prefix. */
int kiln_mkdtemp(const char *prefix, char **ret_path, struct kiln_error *err);
