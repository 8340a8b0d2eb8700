/* Offline inspection of an image file with libguestfs: the installed packages of its operating
 * system (for build manifests), and the shared libguestfs setup of images/ (direct backend, TCG
 * unless told otherwise, guest file systems mounted as the guest's fstab says). */
#pragma once

#include <guestfs.h>
#include <jansson.h>

#include "common/error.h"

/* A libguestfs handle (not launched) with Kiln's settings: the direct backend unless
 * LIBGUESTFS_BACKEND is set, and TCG (backend setting force_tcg) unless KILN_GUESTFS_KVM or
 * LIBGUESTFS_BACKEND_SETTINGS is set, since nested KVM is not trusted. Errors are not printed:
 * read them with guestfs_last_error(). */
int kiln_inspect_guestfs_new(guestfs_h **ret, struct kiln_error *err);

/* On a launched handle: find the operating system (guestfs_inspect_os), refuse anything but
 * Linux, and mount its file systems (shortest mount point first), read-only when readonly.
 * *root_ret (may be NULL) gets the root device. -KILN_E_UNSUPPORTED when no Linux is found. */
int kiln_inspect_mount_os(guestfs_h *g, bool readonly, char **root_ret, struct kiln_error *err);

/* The packages installed in the image at path (qcow2 or raw; format NULL: read from the file's
 * first bytes), opened read-only: a JSON array of {"name", "version", "release", "arch"} sorted
 * by name then arch. version carries the epoch Debian-style ("1:2.3") when there is one; release
 * is "" when the package manager has none (dpkg). */
int kiln_inspect_packages(const char *path, const char *format, json_t **ret,
                          struct kiln_error *err);

/* The JSON form of a libguestfs application list (as kiln_inspect_packages returns it). */
json_t *kiln_inspect_apps_json(const struct guestfs_application2_list *apps);
