/* Import of a user's own Linux cloud image (qcow2 or raw): a copy of it gets kiln-agent and its
 * systemd service injected offline with libguestfs, so that Kiln can build on it. The user's file
 * is never modified. */
#pragma once

#include "common/error.h"
#include "drivers/driver.h"

struct kiln_import_options {
    const char *source; /* the user's image: qcow2 or raw */
    /* Where the imported qcow2 goes. NULL: into the catalog, HOME/images/NAME/DIGEST/disk.qcow2
     * (with image.json, and HOME/images/NAME/current), so that NAME works as a parent image. */
    const char *dest;
    const char *name;    /* catalog name (required when dest is NULL) */
    const char *home;    /* Kiln home, NULL: kiln_home_dir() */
    const char *agent;   /* the kiln-agent binary to inject */
};

/* Copy source to a qcow2, inject the agent (with its shared libraries and dynamic loader, in
 * /usr/lib/kiln-agent/, so it runs whatever the guest's libc) and a systemd unit started by udev
 * when the agent's virtio-serial port appears. Fails, leaving nothing behind, when the image
 * holds no Linux with systemd. On success *ret describes the imported image (it boots through
 * its own boot loader). */
int kiln_import_image(const struct kiln_import_options *opts, struct kiln_image_ref *ret,
                      struct kiln_error *err);

/* The entry point of `kiln image import --name NAME --file FILE`: import FILE (qcow2 or raw, a
 * path) into the catalog of home (NULL: kiln_home_dir()) as NAME. agent NULL: $KILN_AGENT,
 * else the kiln-agent built beside the running program (BUILD/guest-agent/kiln-agent), else
 * /usr/local/lib/kiln/kiln-agent or /usr/lib/kiln/kiln-agent. */
int kiln_image_import(const char *name, const char *file, const char *agent, const char *home,
                      struct kiln_image_ref *ret, struct kiln_error *err);
