/* The libvirt driver: transient QEMU domains from generated XML, each on a qcow2 overlay of its
 * parent image, with the agent's virtio-serial channel as a unix socket and the serial console
 * in a file, all in the build's work folder:
 *
 *   WORK/NAME/overlay.qcow2   the instance's disk (backing file: the parent image, no copy)
 *   WORK/NAME/agent.sock      the agent channel (org.kiln.agent.0)
 *   WORK/NAME/instance.json   build id, domain name, URI: what reap needs after a crash
 *   WORK/NAME.console.log     the serial console, kept after terminate as the build's log
 *
 * Domains are named kiln-BUILD-NAME and carry the build id in their <metadata>. */
#include <dirent.h>
#include <fcntl.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "common/fs.h"
#include "common/hash.h"
#include "common/json.h"
#include "common/log.h"
#include "common/time.h"
#include "drivers/agent-client.h"
#include "drivers/command.h"
#include "drivers/libvirt.h"

#define DEFAULT_URI "qemu:///system"
#define CONSOLE_TAIL_LINES 20
#define CONSOLE_SCAN_MAX (256u << 10)
#define SUN_PATH_MAX 107
/* How long the agent gets to end a job whose time ran out, once asked to cancel it. */
#define CANCEL_GRACE_MS 10000
/* The internal snapshot of a saved guest in its overlay (see "warm start" below). */
#define WARM_SNAPSHOT "kiln-warm"

struct libvirt_conn {
    virConnectPtr conn;
    char *uri;
    char *domain_type; /* "kvm", "qemu" or "test" */
    char *work_dir;
    char *build_id;
    char *seclabel;
    char *machine;
    char *firmware;
    char *disk_cache;
    char *probe_kernel;
    unsigned vcpus;
    unsigned memory_mib;
    bool network;
    char *warm_dir; /* saved guests (warm start), NULL: warm start off */
    void (*on_resource)(void *userdata, const char *kind, const char *id, bool live);
    void *userdata;
    volatile sig_atomic_t *cancel;
};

struct kiln_instance {
    struct libvirt_conn *c;
    char *name;
    char *domain_name;
    char *dir;
    char *overlay;
    char *socket;
    char *console;
    struct kiln_image_ref image;
    struct kiln_agent_client *agent; /* connected once the agent said hello */
    bool domain_created; /* this instance started the domain: release may destroy it */
    bool domain_live;    /* reported live through on_resource */
};

/* ---- small helpers ------------------------------------------------------------------------ */

static void
silence_libvirt(void *userdata, virErrorPtr error)
{
    /* Library code does not print: libvirt's errors reach the caller through struct kiln_error. */
}

/* Set err from libvirt's last error. */
static int _printf_(3, 4)
libvirt_error(struct kiln_error *err, int code, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    virErrorPtr e = virGetLastError();
    int r = kiln_error_set(err, code, "%s: %s", what, e && e->message ? e->message : "libvirt error");
    if (e)
        kiln_error_set_cause(err, "libvirt error %d", e->code);
    return r;
}

static double
now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static bool
cancelled(const struct libvirt_conn *c)
{
    return c->cancel && *c->cancel;
}

/* Names end up in domain names and paths: keep them to a safe alphabet. */
static bool
valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 64 || s[0] == '.' || s[0] == '-')
        return false;
    for (; *s; s++)
        if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') || ('0' <= *s && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

static void
notify(const struct libvirt_conn *c, const char *kind, const char *id, bool live)
{
    if (c->on_resource)
        c->on_resource(c->userdata, kind, id, live);
}

/* The last n lines of a console log, sanitised for an error message (or "" when empty). */
static char *
console_tail(const char *path, unsigned n)
{
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return kiln_strdup("");
    off_t from = st.st_size > 16384 ? st.st_size - 16384 : 0;
    data = kiln_malloc(16385);
    ssize_t got = pread(fd, data, 16384, from);
    if (got <= 0)
        return kiln_strdup("");
    len = (size_t)got;
    data[len] = '\0';
    /* Keep printable text; drop escape sequences' bytes and carriage returns. */
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)data[i];
        if (ch == '\n' || ch == '\t' || (ch >= 0x20 && ch != 0x7f))
            data[w++] = (char)ch;
    }
    data[w] = '\0';
    while (w > 0 && (data[w - 1] == '\n' || data[w - 1] == ' '))
        data[--w] = '\0';
    size_t start = w;
    for (unsigned lines = 0; start > 0; start--) {
        if (data[start - 1] == '\n' && ++lines == n)
            break;
    }
    return kiln_strdup(data + start);
}

/* Whether the console log contains needle (in its first CONSOLE_SCAN_MAX bytes after *offset;
 * *offset advances so each byte is read about once). */
static bool
console_contains(const char *path, const char *needle, off_t *offset)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char buf[8192 + 64];
    size_t keep = strlen(needle) - 1;
    for (;;) {
        ssize_t got = pread(fd, buf, sizeof(buf) - 1, *offset);
        if (got <= 0)
            return false;
        buf[got] = '\0';
        if (memmem(buf, (size_t)got, needle, strlen(needle)))
            return true;
        /* Step back by the needle's length so a match across reads is found next time. */
        *offset += got > (ssize_t)keep ? got - (ssize_t)keep : got;
        if ((size_t)got < sizeof(buf) - 1)
            return false;
    }
}

/* ---- open / close, accelerator probe ------------------------------------------------------- */

static void libvirt_close(void *conn);

static int
wait_domain_gone(virConnectPtr conn, const char *name, int timeout_ms)
{
    for (int waited = 0;; waited += 100) {
        virDomainPtr d = virDomainLookupByName(conn, name);
        if (!d)
            return 0;
        int active = virDomainIsActive(d);
        virDomainFree(d);
        if (active == 0)
            return 0;
        if (waited >= timeout_ms)
            return -ETIMEDOUT;
        sleep_ms(100);
    }
}

/* Boot a guest of type kvm whose boot sector prints a marker on the serial port: KVM works when
 * the marker arrives within timeout_s. Any failure to start means no. */
/* The kernel the probe boots: settings.probeKernel, else the newest /boot/vmlinuz-* (the host's
 * Debian kernel), else NULL (the boot sector alone). */
static char *
probe_kernel(const struct libvirt_conn *c)
{
    if (c->probe_kernel)
        return kiln_strdup(c->probe_kernel);
    DIR *d = opendir("/boot");
    struct dirent *e;
    char *best = NULL;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, "vmlinuz-", 8) != 0)
            continue;
        if (!best || strverscmp(e->d_name + 8, best + 14) > 0) {
            free(best);
            best = kiln_asprintf("/boot/%s", e->d_name);
        }
    }
    if (d)
        closedir(d);
    return best;
}

/* The probe guest: a Linux kernel booted directly, without root file system, must get through
 * its whole initialisation to the panic about the missing root ("guests hang at kernel entry"
 * is the failure seen with broken nested KVM, so firmware alone proves little). Without a kernel,
 * the boot sector's marker is the sign. */
static bool
probe_boots(struct libvirt_conn *c, const char *domain_type, int timeout_s)
{
    _cleanup_free_ char *dir = NULL;
    if (kiln_mkdtemp("kiln-kvm-probe", &dir, NULL) < 0)
        return false;
    _cleanup_free_ char *disk = kiln_path_join(dir, "probe.raw");
    _cleanup_free_ char *console = kiln_path_join(dir, "console.log");
    /* One boot sector, padded to 1 MiB: firmware may ignore a disk of a single sector. */
    const size_t disk_size = 1u << 20;
    _cleanup_free_ uint8_t *image = kiln_calloc(1, disk_size);
    kiln_libvirt_probe_sector(image);
    bool ok = false;
    if (kiln_write_file_atomic(disk, image, disk_size, 0644, NULL) == 0) {
        _cleanup_free_ char *name = kiln_asprintf("kiln-kvm-probe-%ld", (long)getpid());
        _cleanup_free_ char *kernel = probe_kernel(c);
        const char *marker = kernel ? "Kernel panic - not syncing" : KILN_LIBVIRT_PROBE_MARKER;
        struct kiln_libvirt_domain_spec spec = {
            .domain_name = name,
            .domain_type = domain_type,
            .machine = c->machine,
            .vcpus = 1,
            .memory_mib = 256,
            .build_id = "kvm-probe",
            .instance_name = "probe",
            .instance_dir = dir,
            .disk_path = disk,
            .disk_format = "raw",
            .disk_cache = "unsafe",
            .kernel = kernel,
            .cmdline = "console=ttyS0 panic=0 loglevel=4",
            .console_log = console,
            .seclabel = c->seclabel,
        };
        _cleanup_free_ char *xml = kiln_libvirt_domain_xml(&spec);
        virDomainPtr dom = virDomainCreateXML(c->conn, xml, 0);
        if (dom) {
            off_t off = 0;
            double deadline = now_seconds() + timeout_s;
            while (now_seconds() < deadline && !cancelled(c)) {
                if (console_contains(console, marker, &off)) {
                    ok = true;
                    break;
                }
                sleep_ms(100);
            }
            virDomainDestroy(dom);
            virDomainFree(dom);
            wait_domain_gone(c->conn, name, 5000);
        }
        kiln_debug("libvirt: %s probe (%s) on %s: %s", domain_type,
                   kernel ? kernel : "boot sector", c->uri, ok ? "boots" : "does not");
    }
    kiln_rm_rf(dir, NULL);
    return ok;
}

/* "kvm" or "qemu" for auto: the probe's result is cached per hypervisor host and version in the
 * Kiln home, so only the first build on a host pays for it. */
static char *
resolve_accel(struct libvirt_conn *c, int probe_seconds)
{
    unsigned long libver = 0, hvver = 0;
    virConnectGetLibVersion(c->conn, &libver);
    virConnectGetVersion(c->conn, &hvver);
    _cleanup_free_ char *host = virConnectGetHostname(c->conn);
    _cleanup_free_ char *key_src =
        kiln_asprintf("%s|%s|%lu|%lu", c->uri, host ? host : "", libver, hvver);
    char key[KILN_HASH_MAX_HEX];
    kiln_hash_buf_hex(KILN_HASH_SHA256, key_src, strlen(key_src), key);
    key[16] = '\0';
    _cleanup_free_ char *home = kiln_home_dir();
    _cleanup_free_ char *cache_dir = kiln_path_join(home, "cache");
    _cleanup_free_ char *cache = kiln_asprintf("%s/accel-%s", cache_dir, key);

    _cleanup_free_ char *cached = NULL;
    if (kiln_read_file(cache, 64, &cached, NULL, NULL) == 0 &&
        (kiln_streq(cached, "kvm") || kiln_streq(cached, "qemu")))
        return TAKE_PTR(cached);

    /* The hypervisor must claim KVM before a guest is worth booting. */
    bool kvm = false;
    char *caps = virConnectGetDomainCapabilities(c->conn, NULL, "x86_64", NULL, "kvm", 0);
    if (caps) {
        free(caps);
        kvm = probe_boots(c, "kvm", probe_seconds);
    }
    const char *result = kvm ? "kvm" : "qemu";
    if (kiln_mkdir_p(cache_dir, 0755, NULL) == 0)
        kiln_write_file_atomic(cache, result, strlen(result), 0644, NULL);
    return kiln_strdup(result);
}

bool
kiln_libvirt_probe_boots(void *conn, const char *domain_type, int timeout_s)
{
    return probe_boots(conn, domain_type, timeout_s);
}

static const char *
setting_str(const json_t *settings, const char *key, const char *def)
{
    const char *v = settings ? kiln_json_get_str(settings, key) : NULL;
    return v ? v : def;
}

/* A boolean of the infrastructure's libvirt section (validated by the factory). */
static bool
libvirt_setting_bool(const json_t *settings, const char *key, bool def)
{
    const json_t *v = json_object_get(json_object_get(settings, "libvirt"), key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static int
libvirt_open(const struct kiln_driver_config *cfg, unsigned flags, void **ret_conn,
             struct kiln_error *err)
{
    KILN_CHECK_FLAGS(flags, 0, err);
    if (!cfg || !cfg->work_dir || !cfg->build_id)
        return kiln_error_set(err, -EINVAL, "libvirt driver: work_dir and build_id are required");
    if (!valid_name(cfg->build_id))
        return kiln_error_set(err, -EINVAL, "libvirt driver: invalid build id '%s' (letters, "
                              "digits, '.', '_', '-')", cfg->build_id);
    const char *accel = cfg->accel ? cfg->accel : "auto";
    if (!kiln_streq(accel, "auto") && !kiln_streq(accel, "kvm") && !kiln_streq(accel, "tcg"))
        return kiln_error_set(err, -EINVAL, "libvirt driver: accel must be auto, kvm or tcg, not "
                              "'%s'", accel);
    const json_t *s = cfg->settings;
    const char *seclabel = setting_str(s, "seclabel", "root");
    if (!kiln_streq(seclabel, "root") && !kiln_streq(seclabel, "none") &&
        !kiln_streq(seclabel, "default"))
        return kiln_error_set(err, -EINVAL, "libvirt driver: seclabel must be root, none or "
                              "default, not '%s'", seclabel);
    const char *firmware = setting_str(s, "firmware", "bios");
    if (!kiln_streq(firmware, "bios") && !kiln_streq(firmware, "efi"))
        return kiln_error_set(err, -EINVAL, "libvirt driver: firmware must be bios or efi");

    virSetErrorFunc(NULL, silence_libvirt);
    struct libvirt_conn *c = kiln_new(struct libvirt_conn, 1);
    c->uri = kiln_strdup(cfg->uri ? cfg->uri : DEFAULT_URI);
    c->work_dir = kiln_strdup(cfg->work_dir);
    c->build_id = kiln_strdup(cfg->build_id);
    c->seclabel = kiln_strdup(seclabel);
    c->machine = kiln_strdup(setting_str(s, "machine", "pc"));
    c->firmware = kiln_strdup(firmware);
    c->disk_cache = kiln_strdup(setting_str(s, "diskCache", "unsafe"));
    const char *pk = setting_str(s, "probeKernel", NULL);
    c->probe_kernel = pk ? kiln_strdup(pk) : NULL;
    c->vcpus = cfg->vcpus ? cfg->vcpus : 2;
    c->memory_mib = cfg->memory_mib ? cfg->memory_mib : 1024;
    json_t *net = s ? json_object_get(s, "network") : NULL;
    c->network = !(net && json_is_false(net));
    /* Warm start (infrastructure `libvirt: {warmStart: false}` turns it off): only on this
     * host, whose Kiln home keeps the saved guests. */
    if (libvirt_setting_bool(s, "warmStart", true) && strstr(c->uri, ":///")) {
        const char *wd = setting_str(s, "warmDir", NULL);
        _cleanup_free_ char *home = cfg->home ? kiln_strdup(cfg->home) : kiln_home_dir();
        c->warm_dir = wd ? kiln_strdup(wd) : kiln_path_join(home, "warm");
    }
    c->on_resource = cfg->on_resource;
    c->userdata = cfg->userdata;
    c->cancel = cfg->cancel;

    int r;
    c->conn = virConnectOpen(c->uri);
    if (!c->conn) {
        r = libvirt_error(err, -KILN_E_REMOTE, "cannot connect to %s", c->uri);
        r = r < 0 ? r : -KILN_E_REMOTE;
        goto fail;
    }
    const char *type = virConnectGetType(c->conn);
    if (type && strcasecmp(type, "TEST") == 0) {
        c->domain_type = kiln_strdup("test"); /* libvirt's in-memory test driver */
    } else if (kiln_streq(accel, "kvm")) {
        c->domain_type = kiln_strdup("kvm");
    } else if (kiln_streq(accel, "tcg")) {
        c->domain_type = kiln_strdup("qemu");
    } else {
        json_t *p = s ? json_object_get(s, "kvmProbeSeconds") : NULL;
        int probe_s = json_is_integer(p) ? (int)json_integer_value(p) : 20;
        c->domain_type = resolve_accel(c, probe_s);
    }
    *ret_conn = c;
    return 0;

fail:
    libvirt_close(c);
    return r;
}

static void
libvirt_close(void *conn)
{
    struct libvirt_conn *c = conn;
    if (!c)
        return;
    if (c->conn)
        virConnectClose(c->conn);
    free(c->uri);
    free(c->domain_type);
    free(c->work_dir);
    free(c->build_id);
    free(c->seclabel);
    free(c->machine);
    free(c->firmware);
    free(c->disk_cache);
    free(c->probe_kernel);
    free(c->warm_dir);
    free(c);
}

/* ---- instances ----------------------------------------------------------------------------- */

static void
instance_free(struct kiln_instance *inst)
{
    if (!inst)
        return;
    free(inst->name);
    free(inst->domain_name);
    free(inst->dir);
    free(inst->overlay);
    free(inst->socket);
    free(inst->console);
    kiln_image_ref_clear(&inst->image);
    kiln_agent_client_free(inst->agent);
    free(inst);
}

/* Destroy the domain (if any), remove the instance folder and its socket. Never fails half-way:
 * every step runs; the first error is reported. */
static int
instance_release(struct kiln_instance *inst, struct kiln_error *err)
{
    struct libvirt_conn *c = inst->c;
    int r = 0;
    kiln_agent_client_free(inst->agent);
    inst->agent = NULL;
    virDomainPtr dom = inst->domain_created ? virDomainLookupByName(c->conn, inst->domain_name)
                                            : NULL;
    if (dom) {
        /* Destroy may fail because the domain is already going: gone meanwhile, or still torn
         * down by libvirt after QEMU exited (stop returns as soon as the disk is released).
         * Its error counts only if the domain then stays. */
        struct kiln_error derr = {0};
        if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0)
            libvirt_error(&derr, -KILN_E_REMOTE, "destroy domain %s", inst->domain_name);
        virDomainFree(dom);
        if (wait_domain_gone(c->conn, inst->domain_name, 10000) < 0)
            r = derr.code ? kiln_error_set(err, derr.code, "%s", derr.message)
                          : kiln_error_set(err, -ETIMEDOUT, "domain %s did not go away",
                                           inst->domain_name);
    }
    if (inst->domain_live) {
        notify(c, "libvirt-domain", inst->domain_name, false);
        inst->domain_live = false;
    }
    if (inst->socket && !kiln_streq(inst->socket, "") && unlink(inst->socket) < 0 &&
        errno != ENOENT && r == 0)
        r = kiln_error_errno(err, -errno, "remove %s", inst->socket);
    if (inst->dir) {
        struct stat st;
        bool existed = lstat(inst->dir, &st) == 0;
        int q = kiln_rm_rf(inst->dir, err);
        if (q < 0 && r == 0)
            r = q;
        if (existed && q == 0)
            notify(c, "file", inst->dir, false);
    }
    return r;
}

static int
write_instance_json(struct kiln_instance *inst, struct kiln_error *err)
{
    _cleanup_json_ json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "buildId", inst->c->build_id,
                                         "name", inst->name, "domain", inst->domain_name, "uri",
                                         inst->c->uri, "socket", inst->socket);
    _cleanup_free_ char *text = kiln_json_dumps(j, true);
    _cleanup_free_ char *path = kiln_path_join(inst->dir, "instance.json");
    return kiln_write_file_atomic(path, text, strlen(text), 0644, err);
}

/* The first console line containing needle (sanitised, at most 200 bytes), or NULL. */
static char *
console_line(const char *path, const char *needle)
{
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    if (kiln_read_file(path, 64u << 20, &data, &len, NULL) < 0)
        return NULL;
    char *hit = memmem(data, len, needle, strlen(needle));
    if (!hit)
        return NULL;
    char *end = hit;
    while (end < data + len && *end != '\n' && *end != '\r' && end - hit < 200)
        end++;
    char *line = kiln_strndup(hit, (size_t)(end - hit));
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    return line;
}

/* Why the guest cannot become ready any more (NULL while it still may): it stopped, its kernel
 * panicked, or the build was cancelled. */
static const char *
guest_dead(struct kiln_instance *inst, off_t *panic_off, char **detail)
{
    struct libvirt_conn *c = inst->c;
    if (console_contains(inst->console, "Kernel panic - not syncing", panic_off)) {
        *detail = console_line(inst->console, "Kernel panic - not syncing");
        return "the guest kernel panicked";
    }
    virDomainPtr dom = virDomainLookupByName(c->conn, inst->domain_name);
    int active = dom ? virDomainIsActive(dom) : 0;
    if (dom)
        virDomainFree(dom);
    if (active != 1)
        return "the guest stopped";
    if (cancelled(c))
        return "cancelled";
    return NULL;
}

/* Connect to the agent and wait for its hello (with a boot id other than not_boot_id, when
 * given: after a reboot the old agent may still answer). Connection attempts are short, so that
 * a guest that stopped or panicked fails at once, with the console's last lines. */
static int
connect_agent(struct kiln_instance *inst, int timeout_s, const char *not_boot_id,
              struct kiln_error *err)
{
    struct libvirt_conn *c = inst->c;
    double start = now_seconds(), deadline = start + (timeout_s > 0 ? timeout_s : 300);
    off_t panic_off = 0;
    const char *why = NULL;
    _cleanup_free_ char *detail = NULL;
    struct kiln_error last = {0};
    for (;;) {
        why = guest_dead(inst, &panic_off, &detail);
        if (why)
            break;
        if (now_seconds() >= deadline) {
            why = "timed out";
            break;
        }
        struct kiln_agent_client_options o = {.connect_timeout_ms = 2000,
                                               .cancel = c->cancel};
        struct kiln_agent_client *agent = NULL;
        kiln_error_clear(&last);
        if (kiln_agent_client_connect(inst->socket, &o, &agent, &last) == 0) {
            const char *boot = kiln_json_get_str(kiln_agent_client_hello(agent), "boot-id");
            if (!not_boot_id || !kiln_streq(boot, not_boot_id)) {
                kiln_debug("libvirt: %s: agent ready after %.1f s", inst->name,
                           now_seconds() - start);
                kiln_agent_client_free(inst->agent);
                inst->agent = agent;
                return 0;
            }
            kiln_agent_client_free(agent);
            sleep_ms(500);
        } else if (last.code == -KILN_E_UNSUPPORTED) {
            why = last.message;
            break;
        }
    }
    _cleanup_free_ char *tail = console_tail(inst->console, CONSOLE_TAIL_LINES);
    return kiln_error_set(err, kiln_streq(why, "cancelled") ? -ECANCELED : -ETIMEDOUT,
                          "instance %s never reached the agent (%s after %.0f s%s%s)%s%s; last "
                          "console lines (%s):\n%s",
                          inst->name, why, now_seconds() - start, last.message[0] ? "; " : "",
                          last.message, detail ? ": " : "", detail ? detail : "", inst->console,
                          *tail ? tail : "(none)");
}

static const char *
image_format(const struct kiln_image_ref *image)
{
    return kiln_streq(image->kind, "raw") ? "raw" : "qcow2";
}

/* Start an instance: booted, or restored from saved_state (a copy of it becomes the overlay,
 * and QEMU loads its internal snapshot WARM_SNAPSHOT instead of booting). */
static int
launch_instance(struct libvirt_conn *c, const struct kiln_image_ref *image, const char *name,
                int ready_timeout_seconds, unsigned flags, const char *saved_state,
                struct kiln_instance **ret, struct kiln_error *err)
{
    struct kiln_instance *inst = kiln_new(struct kiln_instance, 1);
    inst->c = c;
    inst->name = kiln_strdup(name);
    inst->domain_name = kiln_asprintf("kiln-%s-%s", c->build_id, name);
    inst->dir = kiln_path_join(c->work_dir, name);
    inst->overlay = kiln_path_join(inst->dir, "overlay.qcow2");
    inst->console = kiln_asprintf("%s/%s.console.log", c->work_dir, name);
    kiln_image_ref_copy(&inst->image, image);
    inst->socket = kiln_path_join(inst->dir, "agent.sock");
    if (strlen(inst->socket) > SUN_PATH_MAX) {
        /* A unix socket path is limited to 108 bytes: fall back to a short private one. */
        char h[KILN_HASH_MAX_HEX];
        kiln_hash_buf_hex(KILN_HASH_SHA256, inst->dir, strlen(inst->dir), h);
        h[24] = '\0';
        free(inst->socket);
        inst->socket = kiln_asprintf("/tmp/kiln-%s.sock", h);
    }

    int r;
    char *xml = NULL, *nvram = NULL;
    struct stat st;
    if (lstat(inst->dir, &st) == 0) {
        r = kiln_error_set(err, -EEXIST, "libvirt launch: %s exists (an instance named %s is "
                           "already there; terminate or reap it first)", inst->dir, name);
        free(inst->dir);
        inst->dir = NULL; /* not ours: never removed by the release below */
        free(inst->socket);
        inst->socket = NULL;
        goto fail;
    }
    r = kiln_mkdir_p(inst->dir, 0700, err);
    if (r < 0)
        goto fail;
    notify(c, "file", inst->dir, true);
    r = write_instance_json(inst, err);
    if (r < 0)
        goto fail;

    if (saved_state) {
        /* The saved overlay (its backing file is the same parent) with the saved guest in it. */
        r = kiln_copy_file(saved_state, inst->overlay, 0600, err);
        if (r < 0) {
            kiln_error_prefix(err, r, "instance %s: copy of the saved state", name);
            goto fail;
        }
    } else {
        /* The overlay: copy-on-write on the parent, which is never written to. */
        char *qargv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-b", image->location, "-F",
                         (char *)image_format(image), inst->overlay, NULL};
        r = kiln_command_run(qargv, NULL, err);
        if (r < 0) {
            kiln_error_prefix(err, r, "instance %s: overlay on %s", name, image->location);
            goto fail;
        }
    }
    /* A fresh console log per launch: the readiness check reads it from the start. */
    if (unlink(inst->console) < 0 && errno != ENOENT) {
        r = kiln_error_errno(err, -errno, "remove old %s", inst->console);
        goto fail;
    }
    if (saved_state) {
        /* A restored guest prints no boot messages: the log says where it came from. */
        _cleanup_free_ char *line = kiln_asprintf("kiln: restored from the saved state %s\n",
                                                  saved_state);
        r = kiln_write_file_atomic(inst->console, line, strlen(line), 0644, err);
        if (r < 0)
            goto fail;
    }

    struct kiln_libvirt_domain_spec spec = {
        .domain_name = inst->domain_name,
        .domain_type = c->domain_type,
        .machine = c->machine,
        .firmware = kiln_streq(c->firmware, "efi") ? "efi" : NULL,
        .vcpus = c->vcpus,
        .memory_mib = c->memory_mib,
        .build_id = c->build_id,
        .instance_name = name,
        .instance_dir = inst->dir,
        .disk_path = inst->overlay,
        .disk_format = "qcow2",
        .disk_cache = c->disk_cache,
        .kernel = image->kernel,
        .initrd = image->kernel ? image->initrd : NULL,
        .cmdline = image->kernel ? image->cmdline : NULL,
        .agent_socket = inst->socket,
        .console_log = inst->console,
        .seclabel = c->seclabel,
        .network = c->network,
        .loadvm = saved_state ? WARM_SNAPSHOT : NULL,
    };
    nvram = kiln_path_join(inst->dir, "uefi-vars.fd");
    spec.nvram = nvram;
    xml = kiln_libvirt_domain_xml(&spec);
    kiln_debug("libvirt: creating %s on %s", inst->domain_name, c->uri);
    virDomainPtr dom = virDomainCreateXML(c->conn, xml, 0);
    if (!dom) {
        r = libvirt_error(err, -KILN_E_REMOTE, "instance %s: start domain %s", name,
                          inst->domain_name);
        goto fail;
    }
    virDomainFree(dom);
    inst->domain_created = inst->domain_live = true;
    notify(c, "libvirt-domain", inst->domain_name, true);

    if (!(flags & KILN_LAUNCH_NO_WAIT)) {
        r = connect_agent(inst, ready_timeout_seconds, NULL, err);
        if (r < 0)
            goto fail;
    }
    free(xml);
    free(nvram);
    *ret = inst;
    return 0;

fail:
    free(xml);
    free(nvram);
    if (flags & KILN_LAUNCH_KEEP_ON_FAILURE && inst->domain_live) {
        /* terminateInstanceOnFailure: false: leave it for a person to look at; reap (or
         * virsh destroy) removes it later. */
        kiln_error_prefix(err, r, "kept for inspection: domain %s on %s, console %s", inst->domain_name,
                          c->uri, inst->console);
        inst->domain_live = false;
    } else {
        instance_release(inst, NULL);
    }
    instance_free(inst);
    return r;
}

/* ---- warm start ----------------------------------------------------------------------------
 *
 * Booting a guest to the point where jobs may run (its network online) is most of a short
 * build. An instance launched with KILN_LAUNCH_WARM starts instead from a saved state of its
 * image's guest, booted once and saved just after its agent ran the ready command:
 *
 *   WARM/KEY.qcow2   an overlay on the parent holding the internal snapshot WARM_SNAPSHOT
 *                    (disk and memory of the running guest, QEMU's savevm)
 *   WARM/KEY.json    what KEY was made from (files with their identity, the domain's shape)
 *   WARM/KEY.lock    held while the state is made, so that concurrent builds make it once
 *
 * KEY is a digest of everything the saved guest depends on: the parent disk, kernel and
 * initrd (path, inode, size, mtime), the command line, the domain's shape (accelerator,
 * machine, vCPUs, memory, devices) and the QEMU and libvirt versions. A new instance copies
 * KEY.qcow2 as its overlay and starts with -loadvm. The restored agent sets the guest's clock
 * from the host's (its --sync-clock) and <genid/> makes the guest kernel reseed its RNG. The
 * first launch of an image makes the state (a cold boot, the ready command, savevm); when it
 * cannot (an agent without the prepare request, another build holding the lock), the instance
 * is simply booted. A state that fails to restore is removed and the instance booted. */

#define WARM_FORMAT "kiln-warm-1" /* bump when the domain XML or the saving changes */
#define WARM_RESTORE_SECONDS 60
#define WARM_PREPARE_MS (300 * 1000)

static bool
warm_wanted(const struct libvirt_conn *c, const struct kiln_image_ref *image, unsigned flags)
{
    return (flags & KILN_LAUNCH_WARM) && !(flags & KILN_LAUNCH_NO_WAIT) && c->warm_dir &&
           image->kernel && !kiln_streq(c->firmware, "efi") &&
           (kiln_streq(c->domain_type, "kvm") || kiln_streq(c->domain_type, "qemu"));
}

/* A file's identity as {"path", "inode", "size", "mtime-ns"}, or NULL when it cannot be read. */
static json_t *
file_identity(const char *path)
{
    struct stat st;
    if (!path || stat(path, &st) < 0)
        return NULL;
    return json_pack("{s:s, s:I, s:I, s:I}", "path", path, "inode", (json_int_t)st.st_ino, "size",
                     (json_int_t)st.st_size, "mtime-ns",
                     (json_int_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec);
}

/* What a saved state depends on (its KEY.json without the bookkeeping), or NULL when a file
 * is missing. */
static json_t *
warm_ingredients(const struct libvirt_conn *c, const struct kiln_image_ref *image)
{
    unsigned long hv = 0, lib = 0;
    virConnectGetVersion(c->conn, &hv);
    virConnectGetLibVersion(c->conn, &lib);
    json_t *files = json_array();
    const char *paths[] = {image->location, image->kernel, image->initrd};
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        if (!paths[i])
            continue;
        json_t *id = file_identity(paths[i]);
        if (!id) {
            json_decref(files);
            return NULL;
        }
        json_array_append_new(files, id);
    }
    return json_pack("{s:s, s:o, s:s?, s:s, s:s, s:s, s:i, s:i, s:b, s:I, s:I}", "format",
                     WARM_FORMAT, "files", files, "cmdline", image->cmdline, "domain-type",
                     c->domain_type, "machine", c->machine, "disk-cache", c->disk_cache, "vcpus",
                     (int)c->vcpus, "memory-mib", (int)c->memory_mib, "network", c->network,
                     "hypervisor-version", (json_int_t)hv, "libvirt-version", (json_int_t)lib);
}

static char *
warm_path(const struct libvirt_conn *c, const char *key, const char *ext)
{
    return kiln_asprintf("%s/%s.%s", c->warm_dir, key, ext);
}

static void
warm_remove(const struct libvirt_conn *c, const char *key)
{
    static const char *const exts[] = {"qcow2", "json", "qcow2.part"};
    for (size_t i = 0; i < ARRAY_SIZE(exts); i++) {
        _cleanup_free_ char *p = warm_path(c, key, exts[i]);
        if (unlink(p) < 0 && errno != ENOENT)
            kiln_debug("libvirt: warm start: remove %s: %s", p, strerror(errno));
    }
}

/* Take KEY.lock without waiting: the open descriptor, -EBUSY while another build holds it. */
static int
warm_lock(const struct libvirt_conn *c, const char *key)
{
    _cleanup_free_ char *p = warm_path(c, key, "lock");
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno == EWOULDBLOCK ? -EBUSY : -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* Remove the saved states whose files changed or went (an image rebuilt or deleted). */
static void
warm_prune(const struct libvirt_conn *c)
{
    DIR *d = opendir(c->warm_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n != 64 + 5 || !kiln_streq(e->d_name + 64, ".json"))
            continue;
        _cleanup_free_ char *key = kiln_strndup(e->d_name, 64);
        _cleanup_free_ char *p = warm_path(c, key, "json");
        _cleanup_json_ json_t *j = json_load_file(p, 0, NULL);
        json_t *files = j ? json_object_get(j, "files") : NULL;
        bool stale = !json_is_array(files);
        size_t i;
        json_t *f;
        json_array_foreach(files, i, f) {
            _cleanup_json_ json_t *now = file_identity(kiln_json_get_str(f, "path"));
            if (!now || !json_equal(now, f))
                stale = true;
        }
        if (!stale)
            continue;
        int fd = warm_lock(c, key);
        if (fd < 0)
            continue; /* in use */
        kiln_debug("libvirt: warm start: removing the stale saved state %s", key);
        warm_remove(c, key);
        _cleanup_free_ char *lock = warm_path(c, key, "lock");
        unlink(lock);
        close(fd);
    }
    closedir(d);
}

/* Save the running, prepared instance p into KEY.qcow2: savevm into its overlay, then the
 * domain is destroyed (QEMU closes and completes the file) and the overlay moved into the
 * store. On failure p is left running and connected. */
static int
warm_save(struct kiln_instance *p, const char *key, json_t *meta, struct kiln_error *err)
{
    struct libvirt_conn *c = p->c;
    virDomainPtr dom = virDomainLookupByName(c->conn, p->domain_name);
    if (!dom)
        return libvirt_error(err, -KILN_E_REMOTE, "look up %s", p->domain_name);
    /* The host side of the channel is closed while saving: a restored agent starts out waiting
     * for a host, as after any disconnect. */
    kiln_agent_client_free(p->agent);
    p->agent = NULL;
    double t0 = now_seconds();
    char *out = NULL;
    int r = 0;
    if (virDomainQemuMonitorCommand(dom, "savevm " WARM_SNAPSHOT, &out,
                                    VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP) < 0)
        r = libvirt_error(err, -KILN_E_REMOTE, "savevm on %s", p->domain_name);
    else if (out && *out) /* HMP reports errors as text */
        r = kiln_error_set(err, -KILN_E_REMOTE, "savevm on %s: %s", p->domain_name, out);
    free(out);
    double saved = now_seconds() - t0;
    if (r == 0 && virDomainDestroy(dom) < 0)
        r = libvirt_error(err, -KILN_E_REMOTE, "destroy %s after savevm", p->domain_name);
    virDomainFree(dom);
    if (r < 0) {
        struct kiln_error cerr = {0};
        if (connect_agent(p, 60, NULL, &cerr) < 0)
            kiln_error_set(err, cerr.code, "%s (and the agent did not come back: %s)",
                           err->message, cerr.message);
        return r;
    }
    _cleanup_free_ char *part = warm_path(c, key, "qcow2.part");
    _cleanup_free_ char *state = warm_path(c, key, "qcow2");
    _cleanup_free_ char *metap = warm_path(c, key, "json");
    if (rename(p->overlay, part) < 0) {
        if (errno != EXDEV)
            return kiln_error_errno(err, -errno, "move %s to %s", p->overlay, part);
        r = kiln_copy_file(p->overlay, part, 0600, err);
        if (r < 0)
            return r;
    }
    struct stat st;
    json_object_set_new(meta, "state-bytes",
                        json_integer(stat(part, &st) == 0 ? (json_int_t)st.st_size : 0));
    json_object_set_new(meta, "savevm-seconds", json_real(saved));
    _cleanup_free_ char *text = kiln_json_dumps(meta, true);
    if ((r = kiln_write_file_atomic(metap, text, strlen(text), 0644, err)) < 0)
        return r;
    if (rename(part, state) < 0)
        return kiln_error_errno(err, -errno, "move %s to %s", part, state);
    return 0;
}

/* Make the saved state KEY for image by booting instance NAME. Returns 0 with *booted NULL
 * when the state is there; 0 with *booted set when it could not be made but the booted
 * instance is ready for use; 1 when nothing was booted and nothing made (the build boots
 * normally); or an error from booting the instance (the same as a cold launch would give). */
static int
warm_prepare(struct libvirt_conn *c, const struct kiln_image_ref *image, const char *name,
             const char *key, json_t *meta, int ready_timeout_seconds, unsigned flags,
             struct kiln_instance **booted, struct kiln_error *err)
{
    *booted = NULL;
    struct kiln_error werr = {0};
    int r = kiln_mkdir_p(c->warm_dir, 0700, &werr);
    int lock = r < 0 ? r : warm_lock(c, key);
    if (lock < 0) {
        kiln_debug("libvirt: warm start: %s", lock == -EBUSY ? "another build is saving this "
                   "guest; booting" : werr.message[0] ? werr.message : strerror(-lock));
        return 1;
    }
    _cleanup_free_ char *state = warm_path(c, key, "qcow2");
    _cleanup_free_ char *metap = warm_path(c, key, "json");
    _cleanup_json_ json_t *old = json_load_file(metap, 0, NULL);
    if (access(state, R_OK) == 0 || kiln_json_get_str(old, "unsupported")) {
        close(lock);
        return access(state, R_OK) == 0 ? 0 : 1; /* made meanwhile, or never possible */
    }
    struct kiln_instance *p = NULL;
    double t0 = now_seconds();
    r = launch_instance(c, image, name, ready_timeout_seconds, flags, NULL, &p, err);
    if (r < 0) {
        close(lock);
        return r;
    }
    int64_t ready_ms = 0;
    r = kiln_agent_client_prepare(p->agent, WARM_PREPARE_MS, &ready_ms, &werr);
    if (r == -KILN_E_UNSUPPORTED) {
        /* An older agent (an imported image): remember, so that later builds just boot. */
        json_object_set_new(meta, "unsupported", json_string(werr.message));
        _cleanup_free_ char *text = kiln_json_dumps(meta, true);
        kiln_write_file_atomic(metap, text, strlen(text), 0644, NULL);
        kiln_debug("libvirt: %s: %s; the booted guest is used", name, werr.message);
        r = 0;
    } else if (r == 0) {
        json_object_set_new(meta, "boot-seconds", json_real(now_seconds() - t0));
        json_object_set_new(meta, "ready-ms", json_integer(ready_ms));
        json_object_set_new(meta, "created", json_integer((json_int_t)time(NULL)));
        r = warm_save(p, key, meta, &werr);
        if (r == 0) {
            kiln_debug("libvirt: warm start: saved %s (%.1f s after the boot began)", state,
                       now_seconds() - t0);
            instance_release(p, NULL);
            instance_free(p);
            p = NULL;
            /* Its boot messages stay in the build's log; the restored instance's console
             * starts anew. */
            _cleanup_free_ char *boot_log =
                kiln_asprintf("%s/%s.boot.console.log", c->work_dir, name);
            _cleanup_free_ char *console = kiln_asprintf("%s/%s.console.log", c->work_dir, name);
            if (rename(console, boot_log) < 0)
                kiln_debug("libvirt: keep %s: %s", console, strerror(errno));
            warm_prune(c);
        }
    }
    close(lock);
    if (r < 0 && p) {
        if (cancelled(c) || !p->agent) {
            instance_release(p, NULL);
            instance_free(p);
            return kiln_error_set(err, cancelled(c) ? -ECANCELED : werr.code,
                                  "instance %s: %s", name, werr.message);
        }
        kiln_warn("libvirt: %s: no saved state made (%s); the booted guest is used", name,
                  werr.message);
        warm_remove(c, key);
    }
    *booted = p;
    return 0;
}

/* Launch NAME from image's saved state, making it first when there is none. Returns 0 with
 * *ret set, 1 when the instance should be booted normally, or an error. */
static int
warm_launch(struct libvirt_conn *c, const struct kiln_image_ref *image, const char *name,
            int ready_timeout_seconds, unsigned flags, struct kiln_instance **ret,
            struct kiln_error *err)
{
    _cleanup_json_ json_t *meta = warm_ingredients(c, image);
    if (!meta)
        return 1;
    _cleanup_free_ char *canon = kiln_json_dumps(meta, false);
    char key[KILN_HASH_MAX_HEX];
    kiln_hash_buf_hex(KILN_HASH_SHA256, canon, strlen(canon), key);
    _cleanup_free_ char *state = warm_path(c, key, "qcow2");
    if (access(state, R_OK) < 0) {
        struct kiln_instance *booted = NULL;
        int r = warm_prepare(c, image, name, key, meta, ready_timeout_seconds,
                             flags & KILN_LAUNCH_KEEP_ON_FAILURE, &booted, err);
        if (r != 0 || booted) {
            *ret = booted;
            return r;
        }
    }
    double t0 = now_seconds();
    struct kiln_error rerr = {0};
    int timeout = ready_timeout_seconds > 0 && ready_timeout_seconds < WARM_RESTORE_SECONDS
                      ? ready_timeout_seconds
                      : WARM_RESTORE_SECONDS;
    int r = launch_instance(c, image, name, timeout, 0, state, ret, &rerr);
    if (r == 0) {
        kiln_debug("libvirt: %s: restored from %s in %.2f s", name, state, now_seconds() - t0);
        return 0;
    }
    if (r == -ECANCELED || cancelled(c))
        return kiln_error_set(err, -ECANCELED, "%s", rerr.message);
    kiln_warn("libvirt: %s: the saved state %s did not restore (%s); it is removed and the "
              "guest booted", name, state, rerr.message);
    warm_remove(c, key);
    return 1;
}

static int
libvirt_launch(void *conn, const struct kiln_image_ref *image, const char *name,
               int ready_timeout_seconds, unsigned flags, struct kiln_instance **ret,
               struct kiln_error *err)
{
    struct libvirt_conn *c = conn;
    KILN_CHECK_FLAGS(flags, KILN_LAUNCH_KEEP_ON_FAILURE | KILN_LAUNCH_NO_WAIT | KILN_LAUNCH_WARM,
                     err);
    if (!valid_name(name))
        return kiln_error_set(err, -EINVAL, "libvirt launch: invalid instance name '%s'",
                              name ? name : "(null)");
    if (!image || !image->location)
        return kiln_error_set(err, -EINVAL, "libvirt launch: no image");
    if (image->kind && !kiln_streq(image->kind, "qcow2") && !kiln_streq(image->kind, "raw"))
        return kiln_error_set(err, -EINVAL, "libvirt launch: cannot boot a %s image", image->kind);
    if (image->location[0] != '/')
        return kiln_error_set(err, -EINVAL, "libvirt launch: image path must be absolute: %s",
                              image->location);
    if (access(image->location, R_OK) < 0)
        return kiln_error_errno(err, -errno, "libvirt launch: image %s", image->location);
    if (warm_wanted(c, image, flags)) {
        int r = warm_launch(c, image, name, ready_timeout_seconds, flags, ret, err);
        if (r <= 0)
            return r;
    }
    return launch_instance(c, image, name, ready_timeout_seconds, flags & ~KILN_LAUNCH_WARM, NULL,
                           ret, err);
}

static enum kiln_run_status
run_status(enum kiln_agent_job_status s)
{
    switch (s) {
    case KILN_AGENT_JOB_SUCCESS:
        return KILN_RUN_SUCCESS;
    case KILN_AGENT_JOB_SUCCESS_WITH_IGNORED_FAILURE:
        return KILN_RUN_SUCCESS_WITH_IGNORED_FAILURE;
    case KILN_AGENT_JOB_CANCELLED:
        return KILN_RUN_CANCELLED;
    case KILN_AGENT_JOB_REBOOT_REQUIRED:
        return KILN_RUN_REBOOT;
    case KILN_AGENT_JOB_FAILED:
    default:
        return KILN_RUN_FAILED;
    }
}

/* Reboot the guest through its own shutdown path (libvirt's ACPI "fake reboot": the guest
 * powers off cleanly, syncing its disks, and libvirt resets and resumes it instead of ending
 * the domain), then wait for the new boot's agent. */
static int
reboot_guest(struct kiln_instance *inst, int timeout_s, struct kiln_error *err)
{
    struct libvirt_conn *c = inst->c;
    _cleanup_free_ char *old_boot = NULL;
    if (inst->agent) {
        const char *b = kiln_json_get_str(kiln_agent_client_hello(inst->agent), "boot-id");
        old_boot = b ? kiln_strdup(b) : NULL;
    }
    kiln_agent_client_free(inst->agent);
    inst->agent = NULL;
    virDomainPtr dom = virDomainLookupByName(c->conn, inst->domain_name);
    if (!dom)
        return libvirt_error(err, -KILN_E_REMOTE, "reboot %s", inst->name);
    int r = virDomainReboot(dom, VIR_DOMAIN_REBOOT_ACPI_POWER_BTN);
    virDomainFree(dom);
    if (r < 0)
        return libvirt_error(err, -KILN_E_REMOTE, "reboot %s", inst->name);
    return connect_agent(inst, timeout_s, old_boot, err);
}

/* Seconds left before deadline (ms, 0: none), capped at cap; 0 when it has passed. */
static int
seconds_left(int64_t deadline, int cap)
{
    if (!deadline)
        return cap;
    int64_t left = (deadline - (int64_t)kiln_now_ms() + 999) / 1000;
    if (left <= 0)
        return 0;
    return left < cap ? (int)left : cap;
}

static int
libvirt_run(struct kiln_instance *inst, const struct kiln_job *job, const char *log_dir,
            const struct kiln_engine_events *events, unsigned flags, struct kiln_job_result *ret,
            struct kiln_error *err)
{
    KILN_CHECK_FLAGS(flags, 0, err);
    if (!job || !job->documents || !job->documents[0])
        return kiln_error_set(err, -EINVAL, "run: no documents");
    /* The job's whole time, reboots included (Image Builder's timeouts are wall-clock). */
    int64_t deadline = job->timeout_seconds > 0
                           ? (int64_t)kiln_now_ms() + (int64_t)job->timeout_seconds * 1000
                           : 0;
    int r;
    if (!inst->agent) {
        r = connect_agent(inst, seconds_left(deadline, 300), NULL, err);
        if (r < 0)
            return r;
    }
    static unsigned counter;
    _cleanup_free_ char *exec_id = job->execution_id
                                       ? kiln_strdup(job->execution_id)
                                       : kiln_asprintf("%s-%s-%ld-%u", inst->c->build_id,
                                                       inst->name, (long)getpid(), ++counter);
    struct kiln_agent_job aj = {
        .execution_id = exec_id,
        .documents = (const char *const *)job->documents,
        .phases = (const char *const *)job->phases,
        .parameters = job->parameters,
    };
    struct kiln_agent_client_callbacks cb = {0};
    if (events) {
        cb.event = events->event;
        cb.console = events->console;
        cb.userdata = events->userdata;
    }
    struct kiln_agent_job_result ar = {0};
    const char *while_doing = "";
    kiln_agent_client_set_deadline(inst->agent, deadline, CANCEL_GRACE_MS);
    r = kiln_agent_client_run_job(inst->agent, &aj, &cb, &ar, err);
    for (int reboots = 0; r == 0 && ar.status == KILN_AGENT_JOB_REBOOT_REQUIRED && !ar.timed_out;
         reboots++) {
        if (reboots >= 16) {
            r = kiln_error_set(err, -KILN_E_LIMIT, "run %s: more than 16 reboots", exec_id);
            break;
        }
        kiln_agent_job_result_clear(&ar);
        /* The reboot counts against the job's time: wait for the new boot only while some is
         * left. */
        int wait_s = seconds_left(deadline, 600);
        if (wait_s == 0) {
            r = kiln_error_set(err, -ETIMEDOUT, "no time left to reboot the guest");
            break;
        }
        while_doing = " while the guest rebooted";
        r = reboot_guest(inst, wait_s, err);
        if (r < 0)
            break;
        while_doing = "";
        kiln_agent_client_set_deadline(inst->agent, deadline, CANCEL_GRACE_MS);
        r = kiln_agent_client_resume_job(inst->agent, exec_id, &cb, &ar, err);
    }
    if (r < 0) {
        kiln_agent_job_result_clear(&ar);
        _cleanup_free_ char *tail = console_tail(inst->console, CONSOLE_TAIL_LINES);
        if (deadline && (int64_t)kiln_now_ms() >= deadline)
            return kiln_error_prefix(err, r,
                                     "instance %s: job %s timed out after %d second%s%s%s%s%s",
                                     inst->name, exec_id, job->timeout_seconds,
                                     job->timeout_seconds == 1 ? "" : "s", while_doing,
                                     *tail ? " (last console lines:\n" : "", tail,
                                     *tail ? "\n)" : "");
        return kiln_error_prefix(err, r, "instance %s, job %s (last console lines:\n%s\n)",
                                 inst->name, exec_id, tail);
    }

    struct kiln_job_result res = {.status = run_status(ar.status)};
    if (ar.timed_out) {
        /* Ended by the cancel Kiln sent: a failure of the job, not a cancelled build. */
        res.status = KILN_RUN_FAILED;
        res.timed_out = true;
        res.failure = kiln_asprintf("job %s timed out after %d second%s%s%s; the agent "
                                    "cancelled it", exec_id, job->timeout_seconds,
                                    job->timeout_seconds == 1 ? "" : "s", ar.step ? " in " : "",
                                    ar.step ? ar.step : "");
    } else if (ar.failure) {
        res.failure = kiln_strdup(ar.failure);
    }
    kiln_agent_job_result_clear(&ar);
    if (log_dir) {
        r = kiln_mkdir_p(log_dir, 0755, err);
        if (r == 0)
            r = kiln_agent_client_fetch_logs(inst->agent, exec_id, log_dir, NULL, err);
        if (r < 0) {
            kiln_job_result_clear(&res);
            return kiln_error_prefix(err, r, "instance %s: fetch logs of %s", inst->name, exec_id);
        }
        res.log_dir = kiln_strdup(log_dir);
    }
    *ret = res;
    return 0;
}

/* Whether a process holds a lock on the disk image: QEMU keeps OFD locks on every image it has
 * open (its image locking) and drops them only once its block layer closed the file. */
static bool
disk_locked(const char *path)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return true; /* cannot tell: treat as in use */
    return fl.l_type != F_UNLCK;
}

/* After the agent acknowledged a poweroff: QEMU closes the agent's channel when it exits, and
 * its image locks go with its block layer. Both seen, the disk is complete and closed, without
 * waiting for libvirt's own teardown of the domain (about a second here), which terminate waits
 * for later. Returns true when the disk was released before the deadline. */
static bool
wait_disk_released(struct kiln_instance *inst, double deadline)
{
    int left = (int)((deadline - now_seconds()) * 1000);
    if (left <= 0 || kiln_agent_client_wait_closed(inst->agent, left, NULL) < 0)
        return false;
    while (disk_locked(inst->overlay)) {
        if (now_seconds() >= deadline || cancelled(inst->c))
            return false;
        sleep_ms(20);
    }
    return true;
}

static int
libvirt_stop(struct kiln_instance *inst, int timeout_seconds, unsigned flags,
             struct kiln_error *err)
{
    struct libvirt_conn *c = inst->c;
    KILN_CHECK_FLAGS(flags, 0, err);
    double deadline = now_seconds() + (timeout_seconds > 0 ? timeout_seconds : 120);
    double next_press = 0;
    if (inst->agent) {
        /* The agent syncs the guest's disks and powers it off; the ACPI button below is the
         * fallback when it cannot. */
        bool released = false;
        double asked = now_seconds();
        if (kiln_agent_client_poweroff(inst->agent, NULL) == 0) {
            next_press = now_seconds() + 10;
            released = wait_disk_released(inst, now_seconds() + 10 < deadline
                                                    ? now_seconds() + 10
                                                    : deadline);
        }
        kiln_agent_client_free(inst->agent);
        inst->agent = NULL;
        kiln_debug("libvirt: %s: %s %.2f s after the poweroff request", inst->name,
                   released ? "disk released" : "disk not released", now_seconds() - asked);
        if (released)
            return 0; /* the domain record goes with terminate */
    }
    for (;;) {
        virDomainPtr dom = virDomainLookupByName(c->conn, inst->domain_name);
        if (!dom || virDomainIsActive(dom) != 1) {
            if (dom)
                virDomainFree(dom);
            break;
        }
        /* The ACPI power button; pressed again every few seconds in case the guest was not
         * listening yet (early boot). */
        if (now_seconds() >= next_press) {
            virDomainShutdownFlags(dom, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN);
            next_press = now_seconds() + 5;
        }
        virDomainFree(dom);
        if (cancelled(c))
            return kiln_error_set(err, -ECANCELED, "stop %s: cancelled", inst->name);
        if (now_seconds() >= deadline) {
            _cleanup_free_ char *tail = console_tail(inst->console, CONSOLE_TAIL_LINES);
            return kiln_error_set(err, -ETIMEDOUT, "instance %s did not power off within %d s; "
                                  "last console lines:\n%s", inst->name, timeout_seconds, tail);
        }
        sleep_ms(200);
    }
    if (inst->domain_live) {
        notify(c, "libvirt-domain", inst->domain_name, false);
        inst->domain_live = false;
    }
    return 0;
}

static int
libvirt_snapshot(struct kiln_instance *inst, const struct kiln_snapshot_options *opts,
                 unsigned flags, struct kiln_image_ref *ret, struct kiln_error *err)
{
    KILN_CHECK_FLAGS(flags, 0, err);
    if (!opts || !opts->dest)
        return kiln_error_set(err, -EINVAL, "snapshot: no destination");
    const char *format = opts->format ? opts->format : "qcow2";
    if (!kiln_streq(format, "qcow2") && !kiln_streq(format, "raw"))
        return kiln_error_set(err, -EINVAL, "snapshot: unknown format %s", format);
    if (opts->compress && !kiln_streq(format, "qcow2"))
        return kiln_error_set(err, -EINVAL, "snapshot: only qcow2 can be compressed");
    /* QEMU holds image locks on the overlay for as long as it has it open (libvirt leaves
     * QEMU's image locking on). Not asking libvirt: while it tears a stopped domain down (a
     * second or two after QEMU exited), its calls on that domain wait for the teardown. */
    if (disk_locked(inst->overlay))
        return kiln_error_set(err, -EBUSY, "snapshot: instance %s is still running (stop it "
                              "first)", inst->name);
    /* Flatten the overlay and its backing chain into one standalone image through QEMU's block
     * layer; written beside the destination, then renamed into place. */
    _cleanup_free_ char *tmp = kiln_asprintf("%s.tmp", opts->dest);
    char *argv[16];
    int n = 0;
    argv[n++] = "qemu-img";
    argv[n++] = "convert";
    argv[n++] = "-q";
    argv[n++] = "-f";
    argv[n++] = "qcow2";
    argv[n++] = "-O";
    argv[n++] = (char *)format;
    if (opts->compress) {
        argv[n++] = "-c";
        argv[n++] = "-o";
        argv[n++] = "compression_type=zstd";
    }
    argv[n++] = inst->overlay;
    argv[n++] = tmp;
    argv[n] = NULL;
    int r = kiln_command_run(argv, NULL, err);
    if (r < 0) {
        unlink(tmp);
        return kiln_error_prefix(err, r, "snapshot of %s", inst->name);
    }
    if (rename(tmp, opts->dest) < 0) {
        r = kiln_error_errno(err, -errno, "snapshot: rename to %s", opts->dest);
        unlink(tmp);
        return r;
    }
    struct kiln_image_ref out = inst->image;
    out.kind = (char *)format;
    out.location = (char *)opts->dest;
    kiln_image_ref_copy(ret, &out);
    return 0;
}

static int
libvirt_terminate(struct kiln_instance *inst, unsigned flags, struct kiln_error *err)
{
    KILN_CHECK_FLAGS(flags, 0, err);
    if (!inst)
        return 0;
    int r = instance_release(inst, err);
    instance_free(inst);
    return r;
}

/* The text content of the metadata's child element named name (or NULL). */
static char *
metadata_field(xmlNodePtr root, const char *name)
{
    for (xmlNodePtr n = root ? root->children : NULL; n; n = n->next) {
        if (n->type == XML_ELEMENT_NODE && xmlStrcmp(n->name, BAD_CAST name) == 0) {
            xmlChar *v = xmlNodeGetContent(n);
            char *s = kiln_strdup(v ? (const char *)v : "");
            xmlFree(v);
            return s;
        }
    }
    return NULL;
}

/* Remove an instance folder that a build left: only the files Kiln puts there. */
static int
remove_instance_dir(struct libvirt_conn *c, const char *dir, struct kiln_error *err)
{
    _cleanup_free_ char *json_path = kiln_path_join(dir, "instance.json");
    _cleanup_json_ json_t *j = NULL;
    if (kiln_json_load_file(json_path, 65536, &j, NULL) == 0) {
        const char *sock = kiln_json_get_str(j, "socket");
        if (sock && strncmp(sock, "/tmp/kiln-", 10) == 0)
            unlink(sock);
    }
    static const char *const files[] = {"overlay.qcow2", "agent.sock", "uefi-vars.fd",
                                        "instance.json"};
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        _cleanup_free_ char *p = kiln_path_join(dir, files[i]);
        if (unlink(p) < 0 && errno != ENOENT)
            return kiln_error_errno(err, -errno, "reap: remove %s", p);
    }
    if (rmdir(dir) < 0 && errno != ENOENT)
        return kiln_error_errno(err, -errno, "reap: remove %s", dir);
    notify(c, "file", dir, false);
    return 0;
}

static int
libvirt_reap(void *conn, const char *build_id, unsigned flags, struct kiln_error *err)
{
    struct libvirt_conn *c = conn;
    KILN_CHECK_FLAGS(flags, 0, err);
    if (!valid_name(build_id))
        return kiln_error_set(err, -EINVAL, "reap: invalid build id");
    int r = 0;

    virDomainPtr *doms = NULL;
    int n = virConnectListAllDomains(c->conn, &doms, 0);
    if (n < 0)
        return libvirt_error(err, -KILN_E_REMOTE, "reap: list domains on %s", c->uri);
    for (int i = 0; i < n; i++) {
        char *md = virDomainGetMetadata(doms[i], VIR_DOMAIN_METADATA_ELEMENT,
                                        KILN_LIBVIRT_METADATA_NS, 0);
        char *bid = NULL, *dir = NULL, *iname = NULL;
        if (md) {
            xmlDocPtr doc = xmlReadMemory(md, (int)strlen(md), "metadata.xml", NULL,
                                          XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
            if (doc) {
                xmlNodePtr root = xmlDocGetRootElement(doc);
                bid = metadata_field(root, "build-id");
                dir = metadata_field(root, "dir");
                iname = metadata_field(root, "name");
                xmlFreeDoc(doc);
            }
            free(md);
        }
        if (kiln_streq(bid, build_id)) {
            const char *dname = virDomainGetName(doms[i]);
            kiln_debug("reap: destroying %s", dname);
            if (virDomainIsActive(doms[i]) == 1 && virDomainDestroy(doms[i]) < 0 && r == 0)
                r = libvirt_error(err, -KILN_E_REMOTE, "reap: destroy %s", dname);
            if (virDomainIsPersistent(doms[i]) == 1)
                virDomainUndefine(doms[i]);
            notify(c, "libvirt-domain", dname, false);
            /* The folder is removed only where the metadata and the name agree with Kiln's
             * layout (DIR ends in /NAME). */
            if (dir && iname && valid_name(iname) && dir[0] == '/') {
                size_t dl = strlen(dir), nl = strlen(iname);
                if (dl > nl && dir[dl - nl - 1] == '/' && strcmp(dir + dl - nl, iname) == 0) {
                    int q = remove_instance_dir(c, dir, err);
                    if (q < 0 && r == 0)
                        r = q;
                }
            }
        }
        free(bid);
        free(dir);
        free(iname);
        virDomainFree(doms[i]);
    }
    free(doms);

    /* Folders whose domain is already gone (the guest stopped, or the host rebooted). */
    DIR *d = opendir(c->work_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!valid_name(e->d_name))
            continue;
        _cleanup_free_ char *dir = kiln_path_join(c->work_dir, e->d_name);
        _cleanup_free_ char *json_path = kiln_path_join(dir, "instance.json");
        _cleanup_json_ json_t *j = NULL;
        if (kiln_json_load_file(json_path, 65536, &j, NULL) < 0)
            continue;
        if (!kiln_streq(kiln_json_get_str(j, "buildId"), build_id))
            continue;
        const char *dname = kiln_json_get_str(j, "domain");
        if (dname) {
            virDomainPtr dom = virDomainLookupByName(c->conn, dname);
            if (dom) {
                if (virDomainIsActive(dom) == 1)
                    virDomainDestroy(dom);
                virDomainFree(dom);
            }
        }
        int q = remove_instance_dir(c, dir, err);
        if (q < 0 && r == 0)
            r = q;
    }
    if (d)
        closedir(d);
    return r;
}

static char *
libvirt_describe(struct kiln_instance *inst)
{
    return kiln_asprintf("libvirt domain %s on %s (console log %s, agent socket %s; remove with "
                         "virsh -c %s destroy %s)",
                         inst->domain_name, inst->c->uri, inst->console, inst->socket,
                         inst->c->uri, inst->domain_name);
}

const struct kiln_driver_ops kiln_libvirt_driver = {
    .name = "libvirt",
    .open = libvirt_open,
    .close = libvirt_close,
    .launch = libvirt_launch,
    .run = libvirt_run,
    .stop = libvirt_stop,
    .snapshot = libvirt_snapshot,
    .terminate = libvirt_terminate,
    .reap = libvirt_reap,
    .describe = libvirt_describe,
};
