/* ExecuteBash and ExecuteBinary.
 *
 * ExecuteBash writes the commands, one after the other, into one script and runs it with bash,
 * as AWSTOE does: the step's result is the script's exit status, with no implicit `set -e`
 * (documents that want it write it themselves, and many real ones do). Exit code 194 asks for
 * a reboot. Both modules return {"stdout": ...} with the trailing newline removed. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "guest-agent/mod-common.h"
#include "guest-agent/proc.h"

static json_t *
stdout_output(const struct kiln_proc_result *res)
{
    size_t n = res->out_len;
    while (n > 0 && (res->out[n - 1] == '\n' || res->out[n - 1] == '\r'))
        n--;
    json_t *o = json_object();
    json_object_set_new(o, "stdout", kiln_mod_json_text(res->out, n));
    return o;
}

/* Run argv and turn the result into the module's outputs; 194 still yields outputs. */
static int
run_command(const char *module, char *const *argv, const struct kiln_module_ctx *ctx,
            json_t **ret_outputs, struct kiln_error *err)
{
    struct kiln_proc_opts opts = {.argv = argv};
    struct kiln_proc_result res;
    int r = kiln_proc_run(&opts, ctx, &res, err);
    if (r == 0 || r == -KILN_E_REBOOT)
        *ret_outputs = stdout_output(&res);
    kiln_proc_result_clear(&res);
    if (r < 0 && r != -KILN_E_REBOOT)
        return kiln_error_prefix(err, r, "%s", module);
    return r;
}

KILN_MOD_RUN(kiln_mod_execute_bash)
{
    _cleanup_strv_free_ char **commands = NULL;
    _cleanup_free_ char *tmpdir = NULL, *script = NULL;
    _cleanup_buf_ struct kiln_buf text = {0};
    int r;

    if (!json_object_get(inputs, "commands"))
        return kiln_error_set(err, -KILN_E_INVALID, "ExecuteBash: input 'commands' is required");
    r = kiln_mod_get_strv(inputs, "ExecuteBash", "commands", &commands, err);
    if (r < 0)
        return r;
    if (!commands[0])
        return kiln_error_set(err, -KILN_E_INVALID, "ExecuteBash: 'commands' is empty");
    for (size_t i = 0; commands[i]; i++) {
        kiln_buf_append_str(&text, commands[i]);
        kiln_buf_append_char(&text, '\n');
    }

    const char *dir = ctx ? ctx->work_dir : NULL;
    if (!dir) {
        r = kiln_mkdtemp("kiln-bash-", &tmpdir, err);
        if (r < 0)
            return kiln_error_prefix(err, r, "ExecuteBash");
        dir = tmpdir;
    }
    script = kiln_path_join(dir, "script.sh");
    _cleanup_close_ int fd =
        open(script, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0700);
    if (fd < 0)
        return kiln_error_errno(err, -errno, "ExecuteBash: cannot write %s", script);
    for (size_t off = 0; off < text.len;) {
        ssize_t n = write(fd, text.data + off, text.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return kiln_error_errno(err, -errno, "ExecuteBash: cannot write %s", script);
        off += (size_t)n;
    }
    close(TAKE_FD(fd));

    char *argv[] = {(char *)"bash", script, NULL};
    r = run_command("ExecuteBash", argv, ctx, ret_outputs, err);
    unlink(script);
    if (tmpdir)
        kiln_rm_rf(tmpdir, NULL);
    return r;
}

KILN_MOD_RUN(kiln_mod_execute_binary)
{
    _cleanup_free_ char *path = NULL;
    _cleanup_strv_free_ char **args = NULL;
    int r;

    r = kiln_mod_get_str(inputs, "ExecuteBinary", "path", true, &path, err);
    if (r < 0)
        return r;
    r = kiln_mod_get_strv(inputs, "ExecuteBinary", "arguments", &args, err);
    if (r < 0)
        return r;
    size_t n = 0;
    while (args[n])
        n++;
    _cleanup_free_ char **argv = kiln_new(char *, n + 2);
    argv[0] = path;
    for (size_t i = 0; i < n; i++)
        argv[i + 1] = args[i];
    return run_command("ExecuteBinary", argv, ctx, ret_outputs, err);
}
