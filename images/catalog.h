/* The local base-image catalog: names ("tiny", "debian-12") built by scripts/prepare-images into
 * the Kiln home, or a path to the user's own qcow2/raw file, resolved into an image reference. */
#pragma once

#include "common/error.h"
#include "common/fs.h"
#include "drivers/driver.h"

/* Resolve name_or_path (home NULL: kiln_home_dir()):
 * - a catalog name: HOME/images/NAME/current/image.json; the reference points at the image's
 *   digest folder (never at "current"), so overlays keep working after a rebuild;
 * - a path (anything with a '/', or an existing file): absolute, with its format ("qcow2" or
 *   "raw") read from the file's first bytes; no kernel (the disk boots through its firmware).
 * Fails with -ENOENT and a message naming scripts/prepare-images when a name is not built. */
int kiln_catalog_resolve(const char *home, const char *name_or_path, struct kiln_image_ref *ret,
                         struct kiln_error *err);

/* The names built in HOME (NULL-terminated, sorted; free with kiln_strv_free). */
int kiln_catalog_list(const char *home, char ***ret, struct kiln_error *err);
