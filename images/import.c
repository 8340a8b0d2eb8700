/* Import of a user's cloud image (images/import.h): qemu-img makes the copy, libguestfs (C API,
 * direct backend; TCG unless KILN_GUESTFS_KVM is set) inspects it and injects the agent. */
#include <limits.h>
#include <sys/stat.h>

#include "common/fs.h"
#include "common/hash.h"
#include "common/json.h"
#include "drivers/command.h"
#include "images/catalog.h"
#include "images/import.h"
#include "images/inspect.h"

#define AGENT_DIR "/usr/lib/kiln-agent"
#define DEVICE_WANTS "/etc/systemd/system/dev-virtio\\x2dports-org.kiln.agent.0.device.wants"

/* The same unit and rule as the debian-12 image (images/debian-12/files/). */
static const char agent_unit[] =
    "# Kiln's guest agent on its virtio-serial port, started by udev (60-kiln-agent.rules).\n"
    "[Unit]\n"
    "Description=Kiln guest agent\n"
    "DefaultDependencies=no\n"
    "BindsTo=dev-virtio\\x2dports-org.kiln.agent.0.device\n"
    "After=dev-virtio\\x2dports-org.kiln.agent.0.device local-fs.target\n"
    "Before=shutdown.target\n"
    "Conflicts=shutdown.target\n"
    "\n"
    "[Service]\n"
    "ExecStartPre=-/bin/sh -c 'echo \"kiln: agent ready\" >/dev/console'\n"
    "ExecStart=/usr/local/bin/kiln-agent serve --port /dev/virtio-ports/org.kiln.agent.0 "
    "--sync-clock --ready-command 'systemctl stop \"*.timer\"; systemctl start "
    "network-online.target local-fs.target systemd-tmpfiles-setup.service'\n"
    "Restart=always\n"
    "RestartSec=1\n";

static const char udev_rule[] =
    "# Start kiln-agent as soon as its virtio-serial port appears.\n"
    "SUBSYSTEM==\"virtio-ports\", ATTR{name}==\"org.kiln.agent.0\", TAG+=\"systemd\", "
    "ENV{SYSTEMD_WANTS}+=\"kiln-agent.service\"\n";

/* Runs the agent with its own loader and libraries: independent of the guest's libc. */
static const char agent_wrapper[] =
    "#!/bin/sh\n"
    "exec " AGENT_DIR "/ld-linux-x86-64.so.2 --library-path " AGENT_DIR " " AGENT_DIR
    "/kiln-agent \"$@\"\n";

static int
gerr(guestfs_h *g, struct kiln_error *err, const char *what)
{
    const char *m = guestfs_last_error(g);
    return kiln_error_set(err, -KILN_E_FAILED, "import: %s: %s", what, m ? m : "libguestfs error");
}

/* The agent's shared libraries and dynamic loader, from ldd (NULL-terminated host paths). */
static int
agent_closure(const char *agent, char ***ret, struct kiln_error *err)
{
    char *argv[] = {"ldd", (char *)agent, NULL};
    _cleanup_free_ char *out = NULL;
    int r = kiln_command_run(argv, &out, err);
    if (r < 0)
        return kiln_error_prefix(err, r, "import: libraries of %s", agent);
    size_t n = 0;
    char **libs = kiln_new(char *, 1);
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        /* "\tlibx.so.1 => /lib/.../libx.so.1 (0x...)" or "\t/lib64/ld-linux-x86-64.so.2 (0x...)" */
        char *path = strstr(line, "=> /");
        path = path ? path + 3 : line + strspn(line, " \t");
        if (path[0] != '/')
            continue;
        size_t len = strcspn(path, " (");
        libs = kiln_reallocarray(libs, n + 2, sizeof(char *));
        libs[n++] = kiln_strndup(path, len);
        libs[n] = NULL;
    }
    *ret = libs;
    return 0;
}

static const char *
base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int
inject(guestfs_h *g, const char *agent, struct kiln_error *err)
{
    int r = kiln_inspect_mount_os(g, false, NULL, err);
    if (r < 0)
        return kiln_error_prefix(err, r, "import");

    if (guestfs_is_dir(g, "/etc/systemd/system") <= 0)
        return kiln_error_set(err, -KILN_E_UNSUPPORTED, "import: the guest does not use systemd "
                              "(no /etc/systemd/system); only systemd guests can be imported");

    _cleanup_strv_free_ char **libs = NULL;
    r = agent_closure(agent, &libs, err);
    if (r < 0)
        return r;
    if (guestfs_mkdir_p(g, AGENT_DIR) < 0)
        return gerr(g, err, "mkdir " AGENT_DIR);
    if (guestfs_upload(g, agent, AGENT_DIR "/kiln-agent") < 0 ||
        guestfs_chmod(g, 0755, AGENT_DIR "/kiln-agent") < 0)
        return gerr(g, err, "upload the agent");
    for (char **l = libs; *l; l++) {
        char real[PATH_MAX];
        if (!realpath(*l, real))
            return kiln_error_errno(err, -errno, "import: %s", *l);
        _cleanup_free_ char *dst = kiln_asprintf(AGENT_DIR "/%s", base_name(*l));
        if (guestfs_upload(g, real, dst) < 0 || guestfs_chmod(g, 0755, dst) < 0)
            return gerr(g, err, "upload a library");
    }
    if (guestfs_mkdir_p(g, "/usr/local/bin") < 0 ||
        /* Replace, never write through, whatever is there (a link would be followed). */
        guestfs_rm_f(g, "/usr/local/bin/kiln-agent") < 0 ||
        guestfs_write(g, "/usr/local/bin/kiln-agent", agent_wrapper, strlen(agent_wrapper)) < 0 ||
        guestfs_chmod(g, 0755, "/usr/local/bin/kiln-agent") < 0 ||
        guestfs_rm_f(g, "/etc/systemd/system/kiln-agent.service") < 0 ||
        guestfs_write(g, "/etc/systemd/system/kiln-agent.service", agent_unit,
                      strlen(agent_unit)) < 0 ||
        guestfs_mkdir_p(g, "/etc/udev/rules.d") < 0 ||
        guestfs_rm_f(g, "/etc/udev/rules.d/60-kiln-agent.rules") < 0 ||
        guestfs_write(g, "/etc/udev/rules.d/60-kiln-agent.rules", udev_rule,
                      strlen(udev_rule)) < 0)
        return gerr(g, err, "install the agent service");
    /* Also wanted by the port's device unit: started when the port appears even where the
     * udev rule is not read (the same dependency, kept by systemd itself). */
    if (guestfs_mkdir_p(g, DEVICE_WANTS) < 0 ||
        guestfs_ln_sf(g, "/etc/systemd/system/kiln-agent.service",
                      DEVICE_WANTS "/kiln-agent.service") < 0)
        return gerr(g, err, "enable the agent service");
    return 0;
}

/* Inject into the qcow2 at path. */
static int
inject_image(const char *path, const char *agent, struct kiln_error *err)
{
    guestfs_h *g = NULL;
    int r = kiln_inspect_guestfs_new(&g, err);
    if (r < 0)
        return kiln_error_prefix(err, r, "import");
    if (guestfs_add_drive_opts(g, path, GUESTFS_ADD_DRIVE_OPTS_FORMAT, "qcow2", -1) < 0 ||
        guestfs_launch(g) < 0)
        r = gerr(g, err, "start libguestfs");
    if (r == 0)
        r = inject(g, agent, err);
    if (r == 0 && (guestfs_umount_all(g) < 0 || guestfs_shutdown(g) < 0))
        r = gerr(g, err, "write back");
    guestfs_close(g);
    return r;
}

static bool
valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 64 || s[0] == '.' || s[0] == '-')
        return false;
    for (; *s; s++)
        if (!(('a' <= *s && *s <= 'z') || ('0' <= *s && *s <= '9') || *s == '-' || *s == '.' ||
              *s == '_'))
            return false;
    return true;
}

int
kiln_import_image(const struct kiln_import_options *opts, struct kiln_image_ref *ret,
                  struct kiln_error *err)
{
    if (!opts || !opts->source || !opts->agent)
        return kiln_error_set(err, -EINVAL, "import: source image and agent are required");
    if (!opts->dest && !valid_name(opts->name))
        return kiln_error_set(err, -EINVAL, "import: a catalog name (a-z, 0-9, '.', '_', '-') "
                              "is required without a destination");
    struct kiln_image_ref src = {0};
    int r = kiln_catalog_resolve(opts->home, opts->source, &src, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *src_path = TAKE_PTR(src.location);
    _cleanup_free_ char *src_format = TAKE_PTR(src.kind);
    kiln_image_ref_clear(&src);

    _cleanup_free_ char *home = opts->home ? kiln_strdup(opts->home) : kiln_home_dir();
    _cleanup_free_ char *dir = NULL, *dest = NULL, *digest_name = NULL;
    if (opts->dest) {
        dest = kiln_strdup(opts->dest);
    } else {
        /* The catalog folder is named by a digest of the source and the agent. */
        char h1[KILN_HASH_MAX_HEX], h2[KILN_HASH_MAX_HEX], d[KILN_HASH_MAX_HEX];
        if ((r = kiln_hash_file_hex(KILN_HASH_SHA256, src_path, h1, err)) < 0 ||
            (r = kiln_hash_file_hex(KILN_HASH_SHA256, opts->agent, h2, err)) < 0)
            return r;
        _cleanup_free_ char *both = kiln_asprintf("kiln-import-1 %s %s", h1, h2);
        kiln_hash_buf_hex(KILN_HASH_SHA256, both, strlen(both), d);
        d[16] = '\0';
        digest_name = kiln_strdup(d);
        dir = kiln_asprintf("%s/images/%s/%s", home, opts->name, d);
        if ((r = kiln_mkdir_p(dir, 0755, err)) < 0)
            return r;
        dest = kiln_path_join(dir, "disk.qcow2");
    }
    _cleanup_free_ char *tmp = kiln_asprintf("%s.tmp", dest);
    char *argv[] = {"qemu-img", "convert", "-q", "-f", src_format, "-O", "qcow2",
                    src_path, tmp, NULL};
    r = kiln_command_run(argv, NULL, err);
    if (r == 0)
        r = inject_image(tmp, opts->agent, err);
    if (r == 0 && chmod(tmp, 0644) < 0)
        r = kiln_error_errno(err, -errno, "import: chmod %s", tmp);
    if (r == 0 && rename(tmp, dest) < 0)
        r = kiln_error_errno(err, -errno, "import: rename to %s", dest);
    if (r < 0) {
        unlink(tmp);
        if (dir)
            rmdir(dir);
        return kiln_error_prefix(err, r, "import of %s", opts->source);
    }
    if (dir) {
        _cleanup_json_ json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", opts->name,
                                             "digest", digest_name, "format", "qcow2", "disk",
                                             "disk.qcow2", "importedFrom", src_path);
        _cleanup_free_ char *text = kiln_json_dumps(j, true);
        _cleanup_free_ char *json_path = kiln_path_join(dir, "image.json");
        _cleanup_free_ char *link = kiln_asprintf("%s/images/%s/current", home, opts->name);
        _cleanup_free_ char *link_tmp = kiln_asprintf("%s.tmp", link);
        if ((r = kiln_write_file_atomic(json_path, text, strlen(text), 0644, err)) < 0)
            return r;
        unlink(link_tmp);
        if (symlink(digest_name, link_tmp) < 0 || rename(link_tmp, link) < 0)
            return kiln_error_errno(err, -errno, "import: link %s", link);
        return kiln_catalog_resolve(home, opts->name, ret, err);
    }
    *ret = (struct kiln_image_ref){.kind = kiln_strdup("qcow2"), .location = realpath(dest, NULL)};
    if (!ret->location)
        ret->location = kiln_strdup(dest);
    return 0;
}

/* The agent binary for kiln_image_import(): $KILN_AGENT, else the one built beside the running
 * program (BUILD/factory/cmd/kiln -> BUILD/guest-agent/kiln-agent), else an installed one. */
static char *
find_agent(void)
{
    const char *env = getenv("KILN_AGENT");
    if (env && *env)
        return kiln_strdup(env);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 0; up < 4; up++) {
            char *slash = strrchr(exe, '/');
            if (!slash || slash == exe)
                break;
            *slash = '\0';
            char *p = kiln_asprintf("%s/guest-agent/kiln-agent", exe);
            if (access(p, X_OK) == 0)
                return p;
            free(p);
            p = kiln_asprintf("%s/kiln-agent", exe);
            if (access(p, X_OK) == 0)
                return p;
            free(p);
        }
    }
    const char *installed[] = {"/usr/local/lib/kiln/kiln-agent", "/usr/lib/kiln/kiln-agent"};
    for (size_t i = 0; i < sizeof(installed) / sizeof(installed[0]); i++)
        if (access(installed[i], X_OK) == 0)
            return kiln_strdup(installed[i]);
    return NULL;
}

int
kiln_image_import(const char *name, const char *file, const char *agent, const char *home,
                  struct kiln_image_ref *ret, struct kiln_error *err)
{
    if (!name || !file)
        return kiln_error_set(err, -EINVAL, "image import: --name and --file are required");
    _cleanup_free_ char *found = agent ? kiln_strdup(agent) : find_agent();
    if (!found)
        return kiln_error_set(err, -ENOENT, "image import: no kiln-agent binary found (set "
                              "KILN_AGENT to its path)");
    if (access(found, X_OK) < 0)
        return kiln_error_errno(err, -errno, "image import: agent %s", found);
    /* A path, not a catalog name: the file is what the user gave. */
    _cleanup_free_ char *path = strchr(file, '/') ? kiln_strdup(file)
                                                  : kiln_asprintf("./%s", file);
    struct kiln_import_options opts = {.source = path, .name = name, .home = home,
                                       .agent = found};
    return kiln_import_image(&opts, ret, err);
}
