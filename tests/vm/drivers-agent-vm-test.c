/* The agent protocol over a real virtio-serial port: QEMU (TCG) boots the host kernel into a tiny
 * initramfs running "kiln-agent serve --port /dev/virtio-ports/org.kiln.agent.0"; the host client
 * connects to the port's unix socket, runs a real document, fetches its logs, closes and reopens
 * the channel (the agent sees POLLHUP and must wait for the host), then powers the guest off. */
#include "kiln-test.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/json.h"
#include "drivers/agent-client.h"
#include "guest-agent/proto.h"

extern char **environ;

static pid_t
spawn(char *const argv[], const char *out_path)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (out_path) {
        posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
    }
    pid_t pid = -1;
    int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return r == 0 ? pid : -1;
}

/* Wait for a child up to timeout_ms; returns its exit status, or -1 on timeout. */
static int
wait_child(pid_t pid, int timeout_ms)
{
    int64_t end = kiln_proto_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (kiln_proto_now_ms() > end)
            return -1;
        usleep(100 * 1000);
    }
}

static char *
kernel_version(void)
{
    DIR *d = opendir("/lib/modules");
    assert_non_null(d);
    struct dirent *de;
    char *v = NULL;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') {
            free(v);
            v = kiln_strdup(de->d_name);
        }
    closedir(d);
    assert_non_null(v);
    return v;
}

static struct kiln_buf console_out;

static void
on_console(void *userdata, const char *stream, const char *data, size_t len)
{
    kiln_buf_append(&console_out, data, len);
}

struct vm {
    char *dir, *sock, *monitor, *serial;
    pid_t pid;
};

/* The guest of the running case, killed by the teardown even when an assertion fails. */
static struct vm *current_vm;

static void
vm_kill(struct vm *vm)
{
    if (vm->pid > 0) {
        kill(vm->pid, SIGKILL);
        waitpid(vm->pid, NULL, 0);
        vm->pid = -1;
    }
}

/* Build the initramfs and boot it; with_disk adds an ext4 disk for the agent's state and lets
 * the guest reboot (no -no-reboot). */
static void
vm_boot(struct vm *vm, bool with_disk)
{
    const char *agent = getenv("KILN_AGENT_BIN");
    assert_non_null(agent);
    assert_int_equal(kiln_mkdtemp("kiln-agent-vm", &vm->dir, NULL), 0);
    _cleanup_free_ char *kver = kernel_version();
    _cleanup_free_ char *kernel = kiln_asprintf("/boot/vmlinuz-%s", kver);
    _cleanup_free_ char *initrd = kiln_path_join(vm->dir, "initrd.gz");
    _cleanup_free_ char *script =
        kiln_path_join(kiln_test_source_dir(), "tests/vm/agent-initramfs.sh");
    char *mk[] = {script, (char *)agent, kver, initrd, NULL};
    pid_t pid = spawn(mk, NULL);
    assert_true(pid > 0);
    assert_int_equal(wait_child(pid, 120000), 0);
    _cleanup_free_ char *disk = kiln_path_join(vm->dir, "state.img");
    _cleanup_free_ char *drive = kiln_asprintf("file=%s,if=virtio,format=raw", disk);
    if (with_disk) {
        char *mkfs[] = {"mkfs.ext4", "-q", "-F", disk, "64M", NULL};
        pid = spawn(mkfs, NULL);
        assert_true(pid > 0);
        assert_int_equal(wait_child(pid, 60000), 0);
    }

    vm->sock = kiln_path_join(vm->dir, "agent.sock");
    vm->monitor = kiln_path_join(vm->dir, "monitor.sock");
    vm->serial = kiln_path_join(vm->dir, "serial.log");
    _cleanup_free_ char *chardev =
        kiln_asprintf("socket,id=agent,path=%s,server=on,wait=off", vm->sock);
    _cleanup_free_ char *mon = kiln_asprintf("unix:%s,server=on,wait=off", vm->monitor);
    char *argv[40] = {"qemu-system-x86_64",
                      "-machine",
                      "q35,accel=tcg",
                      "-m",
                      "512",
                      "-nographic",
                      "-kernel",
                      kernel,
                      "-initrd",
                      initrd,
                      "-append",
                      "console=ttyS0 panic=-1 quiet",
                      "-device",
                      "virtio-serial-pci",
                      "-chardev",
                      chardev,
                      "-device",
                      "virtserialport,chardev=agent,name=org.kiln.agent.0",
                      "-monitor",
                      mon};
    size_t n = 20;
    if (with_disk) {
        argv[n++] = "-drive";
        argv[n++] = drive;
    } else {
        argv[n++] = "-no-reboot";
    }
    argv[n] = NULL;
    vm->pid = spawn(argv, vm->serial);
    assert_true(vm->pid > 0);
    current_vm = vm;
}

static void
vm_free(struct vm *vm)
{
    current_vm = NULL;
    vm_kill(vm);
    if (vm->dir)
        kiln_rm_rf(vm->dir, NULL);
    free(vm->dir);
    free(vm->sock);
    free(vm->monitor);
    free(vm->serial);
}
static int
teardown(void **state)
{
    if (current_vm)
        vm_free(current_vm);
    return 0;
}

static struct kiln_agent_client *
vm_connect(struct vm *vm, int timeout_ms)
{
    struct kiln_agent_client_options o = {
        .connect_timeout_ms = timeout_ms, .reply_timeout_ms = 60000, .ping_interval_ms = 5000};
    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    int64_t t0 = kiln_proto_now_ms();
    if (kiln_agent_client_connect(vm->sock, &o, &c, &err) < 0) {
        vm_kill(vm);
        fail_msg("connect: %s (serial log %s)", err.message, vm->serial);
    }
    fprintf(stderr, "agent ready after %lld ms\n", (long long)(kiln_proto_now_ms() - t0));
    return c;
}

/* A hard reset through the QEMU monitor, as a driver would do it. */
static void
vm_reset(struct vm *vm)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", vm->monitor);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const char *cmd = "system_reset\n";
    assert_int_equal(kiln_proto_write_all(fd, cmd, strlen(cmd), kiln_proto_now_ms() + 5000), 0);
    usleep(500 * 1000);
    close(fd);
}

static void
test_agent_over_virtio_serial(void **state)
{
    /* Static: the teardown reaches it after a failed assertion left this frame. */
    static struct vm vm;
    memset(&vm, 0, sizeof(vm));
    vm_boot(&vm, false);
    const char *dir = vm.dir;

    struct kiln_agent_client *c = vm_connect(&vm, 240000);
    struct kiln_error err = {0};
    int r;
    const json_t *hello = kiln_agent_client_hello(c);
    _cleanup_free_ char *boot_id = kiln_strdup(kiln_json_get_str(hello, "boot-id") ?: "");
    assert_int_equal(strlen(boot_id), 36); /* the guest kernel's boot id, a UUID */

    _cleanup_free_ char *doc = kiln_path_join(dir, "hello.yml");
    const char *text = "name: hello\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
                       "      - name: Uname\n        action: ExecuteBash\n        inputs:\n"
                       "          commands:\n            - echo \"in guest $(cat "
                       "/proc/sys/kernel/random/boot_id)\"\n";
    assert_int_equal(kiln_write_file_atomic(doc, text, strlen(text), 0644, NULL), 0);
    const char *docs[] = {doc, NULL};
    struct kiln_agent_job job = {.execution_id = "vm-1", .documents = docs};
    struct kiln_agent_client_callbacks cb = {NULL, on_console, NULL};
    struct kiln_agent_job_result res = {0};
    r = kiln_agent_client_run_job(c, &job, &cb, &res, &err);
    if (r < 0 || res.status != KILN_AGENT_JOB_SUCCESS) {
        vm_kill(&vm);
        fail_msg("job: %d %s %s", r, err.message, res.failure ? res.failure : "");
    }
    _cleanup_free_ char *want = kiln_asprintf("in guest %s", boot_id);
    assert_non_null(strstr(console_out.data, want));

    _cleanup_free_ char *logs = kiln_path_join(dir, "logs");
    kiln_mkdir_p(logs, 0755, NULL);
    assert_int_equal(kiln_agent_client_fetch_logs(c, "vm-1", logs, NULL, &err), 0);
    _cleanup_free_ char *folder = kiln_path_join(logs, res.log_folder);
    _cleanup_free_ char *detailed = kiln_path_join(folder, "detailedoutput.json");
    assert_int_equal(access(detailed, F_OK), 0);
    kiln_agent_job_result_clear(&res);

    /* Close the host side: the guest's port reports POLLHUP until a host connects again. */
    kiln_agent_client_free(c);
    sleep(2);
    c = vm_connect(&vm, 60000);
    assert_string_equal(kiln_json_get_str(kiln_agent_client_hello(c), "boot-id"), boot_id);
    json_t *jobinfo = json_object_get(kiln_agent_client_hello(c), "job");
    assert_string_equal(kiln_json_get_str(jobinfo, "status"), "done");
    assert_int_equal(kiln_agent_client_ping(c, &err), 0);

    assert_int_equal(kiln_agent_client_poweroff(c, &err), 0);
    int st = wait_child(vm.pid, 60000);
    if (st >= 0)
        vm.pid = -1;
    kiln_agent_client_free(c);
    kiln_buf_clear(&console_out);
    vm_free(&vm);
    assert_int_equal(st, 0); /* QEMU exits by itself when the guest powers off */
}

static void
test_reboot_and_resume_in_a_real_guest(void **state)
{
    /* Static: the teardown reaches it after a failed assertion left this frame. */
    static struct vm vm;
    memset(&vm, 0, sizeof(vm));
    vm_boot(&vm, true);
    struct kiln_agent_client *c = vm_connect(&vm, 240000);
    _cleanup_free_ char *boot1 =
        kiln_strdup(kiln_json_get_str(kiln_agent_client_hello(c), "boot-id") ?: "");
    assert_int_equal(strlen(boot1), 36);

    /* Exit code 194 asks for a reboot; the marker lives on the state disk. */
    _cleanup_free_ char *doc = kiln_path_join(vm.dir, "reboot.yml");
    const char *text = "name: reboot\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
                       "      - name: RebootOnce\n        action: ExecuteBash\n        inputs:\n"
                       "          commands:\n"
                       "            - if [ ! -e /var/lib/kiln-agent/marker ]; then touch "
                       "/var/lib/kiln-agent/marker; exit 194; fi\n"
                       "            - echo \"resumed in $(cat /proc/sys/kernel/random/boot_id)\"\n";
    assert_int_equal(kiln_write_file_atomic(doc, text, strlen(text), 0644, NULL), 0);
    const char *docs[] = {doc, NULL};
    struct kiln_agent_job job = {.execution_id = "vm-r", .documents = docs};
    struct kiln_agent_client_callbacks cb = {NULL, on_console, NULL};
    struct kiln_agent_job_result res = {0};
    struct kiln_error err = {0};
    int r = kiln_agent_client_run_job(c, &job, &cb, &res, &err);
    if (r < 0 || res.status != KILN_AGENT_JOB_REBOOT_REQUIRED) {
        vm_kill(&vm);
        fail_msg("job: %d %s status %s", r, err.message, kiln_agent_job_status_name(res.status));
    }
    kiln_agent_client_free(c);

    /* The driver's part: reset the guest, reconnect, wait for hello from the new boot. */
    vm_reset(&vm);
    c = vm_connect(&vm, 240000);
    const json_t *hello = kiln_agent_client_hello(c);
    const char *boot2 = kiln_json_get_str(hello, "boot-id");
    assert_non_null(boot2);
    assert_string_not_equal(boot2, boot1);
    json_t *jobinfo = json_object_get(hello, "job");
    assert_string_equal(kiln_json_get_str(jobinfo, "execution-id"), "vm-r");
    assert_string_equal(kiln_json_get_str(jobinfo, "status"), "reboot-pending");
    _cleanup_free_ char *want = kiln_asprintf("resumed in %s", boot2);

    kiln_agent_job_result_clear(&res);
    r = kiln_agent_client_resume_job(c, "vm-r", &cb, &res, &err);
    if (r < 0 || res.status != KILN_AGENT_JOB_SUCCESS) {
        vm_kill(&vm);
        fail_msg("resume: %d %s %s", r, err.message, res.failure ? res.failure : "");
    }
    assert_non_null(strstr(console_out.data, want));
    kiln_agent_job_result_clear(&res);
    assert_int_equal(kiln_agent_client_poweroff(c, &err), 0);
    int st = wait_child(vm.pid, 60000);
    if (st >= 0)
        vm.pid = -1;
    kiln_agent_client_free(c);
    kiln_buf_clear(&console_out);
    vm_free(&vm);
    assert_int_equal(st, 0);
}

KILN_TEST_MAIN(cmocka_unit_test_teardown(test_agent_over_virtio_serial, teardown),
               cmocka_unit_test_teardown(test_reboot_and_resume_in_a_real_guest, teardown))
