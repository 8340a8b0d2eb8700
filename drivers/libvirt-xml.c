/* The libvirt driver's domain XML (every value escaped) and the KVM probe's boot sector. */
#include "common/buf.h"
#include "drivers/libvirt.h"

/* Append s with the five XML special characters escaped; control characters other than tab
 * and newline cannot appear in XML 1.0 at all and are dropped. */
static void
append_escaped(struct kiln_buf *b, const char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '&': kiln_buf_append_str(b, "&amp;"); break;
        case '<': kiln_buf_append_str(b, "&lt;"); break;
        case '>': kiln_buf_append_str(b, "&gt;"); break;
        case '\'': kiln_buf_append_str(b, "&apos;"); break;
        case '"': kiln_buf_append_str(b, "&quot;"); break;
        default:
            if (c >= 0x20 || c == '\t' || c == '\n')
                kiln_buf_append_char(b, (char)c);
        }
    }
}

/* Append fmt where every %s argument is escaped: only %s, %u and %% are understood. */
static void
append_xml(struct kiln_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            kiln_buf_append_char(b, *p);
            continue;
        }
        p++;
        if (*p == 's')
            append_escaped(b, va_arg(ap, const char *));
        else if (*p == 'u')
            kiln_buf_appendf(b, "%u", va_arg(ap, unsigned));
        else
            kiln_buf_append_char(b, *p);
    }
    va_end(ap);
}

char *
kiln_libvirt_domain_xml(const struct kiln_libvirt_domain_spec *s)
{
    struct kiln_buf b;
    kiln_buf_init(&b);

    append_xml(&b, "<domain type='%s'", s->domain_type ? s->domain_type : "qemu");
    if (s->loadvm)
        append_xml(&b, " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'");
    append_xml(&b, ">\n");
    append_xml(&b, "  <name>%s</name>\n", s->domain_name);
    /* A VM generation ID: a new one on every start, so that a guest restored from a saved
     * state reseeds its random number generator (Linux's vmgenid driver) instead of
     * continuing the saved one's sequence. */
    append_xml(&b, "  <genid/>\n");
    append_xml(&b, "  <metadata>\n"
                   "    <kiln:instance xmlns:kiln='%s'>\n"
                   "      <kiln:build-id>%s</kiln:build-id>\n"
                   "      <kiln:name>%s</kiln:name>\n"
                   "      <kiln:dir>%s</kiln:dir>\n"
                   "    </kiln:instance>\n"
                   "  </metadata>\n",
               KILN_LIBVIRT_METADATA_NS, s->build_id, s->instance_name,
               s->instance_dir ? s->instance_dir : "");
    append_xml(&b, "  <memory unit='MiB'>%u</memory>\n", s->memory_mib ? s->memory_mib : 1024);
    append_xml(&b, "  <vcpu>%u</vcpu>\n", s->vcpus ? s->vcpus : 1);
    if (kiln_streq(s->firmware, "efi"))
        append_xml(&b, "  <os firmware='efi'>\n");
    else
        append_xml(&b, "  <os>\n");
    append_xml(&b, "    <type arch='x86_64' machine='%s'>hvm</type>\n",
               s->machine ? s->machine : "pc");
    if (kiln_streq(s->firmware, "efi") && s->nvram)
        /* In the instance folder, so terminate and reap remove it with the rest. */
        append_xml(&b, "    <nvram>%s</nvram>\n", s->nvram);
    if (s->kernel) {
        append_xml(&b, "    <kernel>%s</kernel>\n", s->kernel);
        if (s->initrd)
            append_xml(&b, "    <initrd>%s</initrd>\n", s->initrd);
        if (s->cmdline)
            append_xml(&b, "    <cmdline>%s</cmdline>\n", s->cmdline);
    } else {
        append_xml(&b, "    <boot dev='hd'/>\n");
    }
    append_xml(&b, "  </os>\n"
                   "  <features>\n"
                   "    <acpi/>\n"
                   "    <apic/>\n"
                   "  </features>\n"
                   "  <clock offset='utc'/>\n"
                   "  <on_poweroff>destroy</on_poweroff>\n"
                   /* Reboots are part of builds (reboot-and-resume): the guest comes back. */
                   "  <on_reboot>restart</on_reboot>\n"
                   "  <on_crash>destroy</on_crash>\n"
                   "  <devices>\n");
    append_xml(&b, "    <disk type='file' device='disk'>\n"
                   "      <driver name='qemu' type='%s' cache='%s' discard='unmap'/>\n"
                   "      <source file='%s'/>\n"
                   "      <target dev='vda' bus='virtio'/>\n"
                   "    </disk>\n",
               s->disk_format ? s->disk_format : "qcow2", s->disk_cache ? s->disk_cache : "unsafe",
               s->disk_path);
    if (s->network)
        /* QEMU's user-mode network: no host bridge, no shared host ports, so any number of
         * builds can run side by side. */
        append_xml(&b, "    <interface type='user'>\n"
                       "      <mac address='%s'/>\n"
                       "      <model type='virtio'/>\n"
                       "    </interface>\n",
                   KILN_LIBVIRT_MAC);
    if (s->agent_socket)
        append_xml(&b, "    <channel type='unix'>\n"
                       "      <source mode='bind' path='%s'/>\n"
                       "      <target type='virtio' name='%s'/>\n"
                       "    </channel>\n",
                   s->agent_socket, KILN_LIBVIRT_AGENT_PORT);
    append_xml(&b, "    <serial type='file'>\n"
                   "      <source path='%s' append='on'/>\n"
                   "      <target port='0'/>\n"
                   "    </serial>\n",
               s->console_log);
    append_xml(&b, "    <rng model='virtio'>\n"
                   "      <backend model='random'>/dev/urandom</backend>\n"
                   "    </rng>\n"
                   "    <memballoon model='none'/>\n"
                   "  </devices>\n");
    if (kiln_streq(s->seclabel, "root"))
        /* qemu runs as root and libvirt relabels nothing: shared base images are never chowned
         * back and forth under parallel builds, and the work folder needs no special access. */
        append_xml(&b, "  <seclabel type='static' model='dac' relabel='no'>\n"
                       "    <label>+0:+0</label>\n"
                       "  </seclabel>\n");
    else if (kiln_streq(s->seclabel, "none"))
        append_xml(&b, "  <seclabel type='none'/>\n");
    if (s->loadvm)
        append_xml(&b, "  <qemu:commandline>\n"
                       "    <qemu:arg value='-loadvm'/>\n"
                       "    <qemu:arg value='%s'/>\n"
                       "  </qemu:commandline>\n",
                   s->loadvm);
    append_xml(&b, "</domain>\n");
    return kiln_buf_steal(&b);
}

void
kiln_libvirt_probe_sector(uint8_t out[512])
{
    /* Real-mode code at 0x7c00: ds=0, then write the message to COM1 (0x3f8) byte by byte and
     * halt. QEMU's UART sends without being configured. */
    static const uint8_t code[] = {
        0xfa,             /* 0: cli */
        0x31, 0xc0,       /* 1: xor ax, ax */
        0x8e, 0xd8,       /* 3: mov ds, ax */
        0xfc,             /* 5: cld */
        0xbe, 0x17, 0x7c, /* 6: mov si, 0x7c17 (the message) */
        0xba, 0xf8, 0x03, /* 9: mov dx, 0x3f8 */
        0xac,             /* 12: lodsb */
        0x84, 0xc0,       /* 13: test al, al */
        0x74, 0x03,       /* 15: jz 20 */
        0xee,             /* 17: out dx, al */
        0xeb, 0xf8,       /* 18: jmp 12 */
        0xf4,             /* 20: hlt */
        0xeb, 0xfd,       /* 21: jmp 20 */
    };
    static const char msg[] = "\r\n" KILN_LIBVIRT_PROBE_MARKER "\r\n";
    memset(out, 0, 512);
    memcpy(out, code, sizeof(code));
    memcpy(out + sizeof(code), msg, sizeof(msg)); /* with its NUL */
    out[510] = 0x55;
    out[511] = 0xaa;
}
