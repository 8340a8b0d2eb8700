/* The libvirt driver (local QEMU guests) and the pieces of it that unit tests check directly:
 * the domain XML generator and the accelerator probe's boot sector. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "drivers/driver.h"

extern const struct kiln_driver_ops kiln_libvirt_driver;

/* Every Kiln domain carries this metadata element (build id, instance name, instance folder),
 * which reap uses to find what a crashed build left behind. */
#define KILN_LIBVIRT_METADATA_NS "urn:x-kiln:instance:1"
#define KILN_LIBVIRT_AGENT_PORT "org.kiln.agent.0"

/* Everything a domain's XML is made of; strings are escaped by the generator. */
struct kiln_libvirt_domain_spec {
    const char *domain_name;
    const char *domain_type; /* "kvm", "qemu" (TCG) or "test" */
    const char *machine;     /* "pc", "q35" */
    const char *firmware;    /* NULL (BIOS) or "efi" */
    const char *nvram;       /* efi: the instance's UEFI variables file (libvirt fills it) */
    unsigned vcpus;
    unsigned memory_mib;
    const char *build_id;
    const char *instance_name;
    const char *instance_dir;
    const char *disk_path;   /* the instance's qcow2 overlay (or the raw probe disk) */
    const char *disk_format; /* "qcow2", "raw" */
    const char *disk_cache;  /* "unsafe", "none", "writeback", ... */
    const char *kernel;      /* direct kernel boot, or NULL to boot the disk */
    const char *initrd;
    const char *cmdline;
    const char *agent_socket; /* NULL: no agent channel */
    const char *console_log;
    const char *seclabel;     /* "root" (qemu runs as root, no relabelling), "none", "default" */
    bool network;             /* user-mode networking */
    /* Start from this internal snapshot of the disk image (QEMU's -loadvm): a saved, running
     * guest (see "Warm start" in docs/drivers.md). NULL: boot. */
    const char *loadvm;
};

/* The fixed MAC address of every Kiln guest's user-mode interface: a restored guest keeps the
 * address it was saved with, and user-mode networks are private to each guest anyway. */
#define KILN_LIBVIRT_MAC "52:54:00:4b:4c:4e"

/* The domain XML for spec (never NULL). */
char *kiln_libvirt_domain_xml(const struct kiln_libvirt_domain_spec *spec);

/* A 512-byte boot sector that prints KILN_LIBVIRT_PROBE_MARKER on the first serial port and
 * halts: the KVM probe boots it as a real guest. */
#define KILN_LIBVIRT_PROBE_MARKER "kiln-probe-ok"
void kiln_libvirt_probe_sector(uint8_t out[512]);
/* Boot the probe guest on an open libvirt driver connection with domain type ("kvm", "qemu");
 * true when its marker reached the console within timeout_s. The accel "auto" probe is this
 * with "kvm"; tests run it with "qemu" to show the probe guest itself works. */
bool kiln_libvirt_probe_boots(void *conn, const char *domain_type, int timeout_s);
