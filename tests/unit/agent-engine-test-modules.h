/* A small module table for the engine tests while the real one (guest-agent/modules.c) is not
 * in this branch: the schema of a few AWSTOE modules and a plain ExecuteBash/CreateFile runner.
 * Defines kiln_module_find/kiln_module_table, so the library's table is not linked in. */
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/json.h"
#include "guest-agent/module.h"

static int
test_bash_run(const json_t *inputs, const struct kiln_module_ctx *ctx, json_t **ret_outputs,
              struct kiln_error *err)
{
    const json_t *in = json_is_array(inputs) ? json_array_get(inputs, 0) : inputs;
    const json_t *cmds = json_object_get(in, "commands");
    struct kiln_buf script;
    kiln_buf_init(&script);
    size_t i;
    json_t *c;
    json_array_foreach(cmds, i, c)
    {
        kiln_buf_append_str(&script, json_string_value(c));
        kiln_buf_append_char(&script, '\n');
    }
    char *path = kiln_path_join(ctx->work_dir, "script.sh");
    kiln_write_file_atomic(path, script.data, script.len, 0700, NULL);
    kiln_buf_clear(&script);
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return kiln_error_errno(err, -errno, "pipe");
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        dup2(pfd[1], 1);
        execl("/bin/bash", "bash", path, (char *)NULL);
        _exit(127);
    }
    free(path);
    close(pfd[1]);
    setpgid(pid, pid);
    struct kiln_buf out;
    kiln_buf_init(&out);
    time_t deadline = ctx->timeout_seconds > 0 ? time(NULL) + ctx->timeout_seconds : 0;
    bool timed_out = false;
    for (;;) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        int r = poll(&p, 1, 100);
        if (r > 0) {
            char buf[4096];
            ssize_t n = read(pfd[0], buf, sizeof(buf));
            if (n <= 0)
                break;
            kiln_buf_append(&out, buf, (size_t)n);
            if (ctx->console)
                ctx->console(ctx->console_userdata, "stdout", buf, (size_t)n);
        }
        if (deadline && time(NULL) >= deadline) {
            kill(-pid, SIGKILL);
            timed_out = true;
            break;
        }
    }
    close(pfd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    while (out.len && out.data[out.len - 1] == '\n')
        out.data[--out.len] = '\0';
    *ret_outputs = json_pack("{s:s}", "stdout", out.data ? out.data : "");
    kiln_buf_clear(&out);
    if (timed_out)
        return kiln_error_set(err, -ETIMEDOUT, "timed out after %d seconds",
                              ctx->timeout_seconds);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 194)
        return -KILN_E_REBOOT;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return kiln_error_set(err, -KILN_E_FAILED, "exit status %d",
                              WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 0;
}

static int
test_create_file_run(const json_t *inputs, const struct kiln_module_ctx *ctx,
                     json_t **ret_outputs, struct kiln_error *err)
{
    (void)ctx;
    size_t i;
    json_t *item;
    json_array_foreach(inputs, i, item)
    {
        const char *path = kiln_json_get_str(item, "path");
        const char *content = kiln_json_get_str(item, "content");
        if (!content)
            content = "";
        int r = kiln_write_file_atomic(path, content, strlen(content), 0644, err);
        if (r < 0)
            return r;
    }
    *ret_outputs = json_object();
    return 0;
}

static const struct kiln_module_field test_bash_fields[] = {
    {"commands", KILN_FIELD_LIST, true, NULL},
    {NULL},
};
static const struct kiln_module_field test_file_fields[] = {
    {"path", KILN_FIELD_STRING, true, NULL},
    {"content", KILN_FIELD_STRING, false, NULL},
    {"encoding", KILN_FIELD_STRING, false, (const char *const[]){"utf8", "ascii", NULL}},
    {"overwrite", KILN_FIELD_BOOL, false, NULL},
    {NULL},
};
static const struct kiln_module_field test_doc_fields[] = {
    {"document", KILN_FIELD_STRING, true, NULL},
    {"phases", KILN_FIELD_STRING, false, NULL},
    {"parameters", KILN_FIELD_ANY, false, NULL},
    {NULL},
};
static const struct kiln_module_field test_reboot_fields[] = {
    {"delaySeconds", KILN_FIELD_INT, false, NULL},
    {NULL},
};
static const struct kiln_module_field test_update_fields[] = {
    {"include", KILN_FIELD_LIST, false, NULL},
    {"exclude", KILN_FIELD_LIST, false, NULL},
    {NULL},
};

static const struct kiln_module test_modules[] = {
    {"ExecuteBash", 0, KILN_INPUTS_OBJECT, test_bash_fields, NULL, test_bash_run},
    {"CreateFile", 0, KILN_INPUTS_LIST, test_file_fields, NULL, test_create_file_run},
    {"ExecuteDocument", KILN_MODULE_ENGINE | KILN_MODULE_NO_TIMEOUT | KILN_MODULE_NO_ATTEMPTS,
     KILN_INPUTS_OBJECT, test_doc_fields, NULL, NULL},
    {"Assert", KILN_MODULE_ENGINE, KILN_INPUTS_OBJECT, NULL, NULL, NULL},
    {"Reboot", KILN_MODULE_ENGINE, KILN_INPUTS_OBJECT, test_reboot_fields, NULL, NULL},
    {"UpdateOS", 0, KILN_INPUTS_OBJECT, test_update_fields, NULL, NULL},
    {"ExecutePowerShell", KILN_MODULE_WINDOWS_ONLY, KILN_INPUTS_OBJECT, test_bash_fields, NULL,
     NULL},
};

const struct kiln_module *
kiln_module_find(const char *name)
{
    for (size_t i = 0; i < sizeof(test_modules) / sizeof(test_modules[0]); i++)
        if (strcmp(test_modules[i].name, name) == 0)
            return &test_modules[i];
    return NULL;
}

const struct kiln_module *
kiln_module_table(size_t *ret_count)
{
    *ret_count = sizeof(test_modules) / sizeof(test_modules[0]);
    return test_modules;
}
