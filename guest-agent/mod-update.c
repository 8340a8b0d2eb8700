/* UpdateOS on Linux: apt-get (Debian, Ubuntu), dnf or yum (Fedora, RHEL, Amazon Linux),
 * whichever is found in PATH, in that order.
 *
 * apt-get: `apt-get update`, then either every available update
 * (`upgrade --with-new-pkgs`) or only the packages in include (`install --only-upgrade`);
 * excluded packages are held with apt-mark for the duration and released afterwards, even when
 * the upgrade fails (an excluded package that is not installed is reported and skipped).
 * dnf/yum: `upgrade [include...]` with one --exclude per excluded package.
 * With both lists, only packages in include and not in exclude are updated. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/time.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "guest-agent/mod-common.h"
#include "guest-agent/proc.h"

#define MODULE "UpdateOS"

extern char **environ;

static char **
strv_new(void)
{
    return kiln_new(char *, 1);
}

static void
strv_push(char ***v, const char *s)
{
    size_t n = 0;
    while ((*v)[n])
        n++;
    *v = kiln_reallocarray(*v, n + 2, sizeof(**v));
    (*v)[n] = kiln_strdup(s);
    (*v)[n + 1] = NULL;
}

static bool
strv_contains(char *const *v, const char *s)
{
    for (; v && *v; v++)
        if (strcmp(*v, s) == 0)
            return true;
    return false;
}

/* First executable named name in $PATH, or NULL. */
static char *
find_in_path(const char *name)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    _cleanup_free_ char *copy = kiln_strdup(path);
    char *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        char *p = kiln_asprintf("%s/%s", *dir ? dir : ".", name);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0)
            return p;
        free(p);
    }
    return NULL;
}

const char *
kiln_mod_update_os_manager(void)
{
    static const char *const managers[] = {"apt-get", "dnf", "yum"};
    for (size_t i = 0; i < ARRAY_SIZE(managers); i++) {
        _cleanup_free_ char *p = find_in_path(managers[i]);
        if (p)
            return managers[i];
    }
    return NULL;
}

char **
kiln_mod_update_os_upgrade_argv(const char *manager, char *const *include, char *const *exclude)
{
    char **v = strv_new();
    strv_push(&v, manager);
    strv_push(&v, "-y");
    if (strcmp(manager, "apt-get") == 0) {
        /* keep local changes to configuration files, never ask */
        strv_push(&v, "-o");
        strv_push(&v, "Dpkg::Options::=--force-confdef");
        strv_push(&v, "-o");
        strv_push(&v, "Dpkg::Options::=--force-confold");
        if (include && include[0]) {
            strv_push(&v, "install");
            strv_push(&v, "--only-upgrade");
            for (; *include; include++)
                strv_push(&v, *include);
        } else {
            strv_push(&v, "upgrade");
            strv_push(&v, "--with-new-pkgs");
        }
        return v;
    }
    for (; exclude && *exclude; exclude++) {
        _cleanup_free_ char *opt = kiln_asprintf("--exclude=%s", *exclude);
        strv_push(&v, opt);
    }
    strv_push(&v, "upgrade");
    for (; include && *include; include++)
        strv_push(&v, *include);
    return v;
}

struct runner {
    const struct kiln_module_ctx *ctx;
    long long deadline;
    char **envp;
};

/* Run one command within what is left of the step's time; optionally keep its stdout. */
static int
run(struct runner *rn, char *const *argv, char **ret_stdout, struct kiln_error *err)
{
    struct kiln_module_ctx sub = {0};
    if (rn->ctx)
        sub = *rn->ctx;
    else
        sub.timeout_seconds = -1;
    if (rn->deadline >= 0) {
        long long left = rn->deadline - kiln_now_ms();
        if (left <= 0)
            return kiln_error_set(err, -ETIMEDOUT, MODULE ": timed out after %d seconds",
                                  rn->ctx->timeout_seconds);
        sub.timeout_seconds = (int)((left + 999) / 1000);
    }
    _cleanup_buf_ struct kiln_buf line = {0};
    for (char *const *a = argv; *a; a++)
        kiln_buf_appendf(&line, "%s%s", a == argv ? "" : " ", *a);
    kiln_mod_console(rn->ctx, "%s: running %s", MODULE, line.data);
    struct kiln_proc_opts opts = {.argv = argv, .envp = rn->envp};
    struct kiln_proc_result res;
    int r = kiln_proc_run(&opts, &sub, &res, err);
    if (r == 0 && ret_stdout)
        *ret_stdout = TAKE_PTR(res.out);
    kiln_proc_result_clear(&res);
    if (r == -ETIMEDOUT && rn->ctx)
        return kiln_error_set(err, -ETIMEDOUT, MODULE ": timed out after %d seconds",
                              rn->ctx->timeout_seconds);
    if (r < 0)
        return kiln_error_prefix(err, r, MODULE ": %s", line.data);
    return 0;
}

static int
apt_mark(struct runner *rn, const char *verb, const char *pkg, struct kiln_error *err)
{
    char *argv[] = {(char *)"apt-mark", (char *)verb, (char *)pkg, NULL};
    return run(rn, argv, NULL, err);
}

static int
update_apt(struct runner *rn, char *const *include, char *const *exclude, struct kiln_error *err)
{
    char *update[] = {(char *)"apt-get", (char *)"update", NULL};
    int r = run(rn, update, NULL, err);
    if (r < 0)
        return r;

    /* Hold what is excluded (and not held already), for the upgrade only. */
    _cleanup_strv_free_ char **held = strv_new();
    if (exclude && exclude[0] && (!include || !include[0])) {
        _cleanup_free_ char *already = NULL;
        char *show[] = {(char *)"apt-mark", (char *)"showhold", NULL};
        r = run(rn, show, &already, err);
        if (r < 0)
            return r;
        _cleanup_strv_free_ char **already_v = strv_new();
        char *save = NULL;
        for (char *t = strtok_r(already, "\n", &save); t; t = strtok_r(NULL, "\n", &save))
            strv_push(&already_v, t);
        for (char *const *e = exclude; *e; e++) {
            if (strv_contains(already_v, *e))
                continue;
            struct kiln_error hold_err = {0};
            if (apt_mark(rn, "hold", *e, &hold_err) < 0) {
                kiln_mod_console(rn->ctx, "%s: %s is not installed; nothing to exclude", MODULE,
                                 *e);
                continue;
            }
            strv_push(&held, *e);
        }
    }

    _cleanup_strv_free_ char **argv = kiln_mod_update_os_upgrade_argv("apt-get", include, NULL);
    r = run(rn, argv, NULL, err);

    /* Release the holds even after a failed upgrade (and after a timeout: give it 60 s). */
    if (held[0]) {
        struct runner cleanup = *rn;
        cleanup.deadline = kiln_now_ms() + 60000;
        for (char **h = held; *h; h++) {
            int q = apt_mark(&cleanup, "unhold", *h, r < 0 ? NULL : err);
            if (q < 0 && r == 0)
                r = q;
        }
    }
    return r;
}

KILN_MOD_RUN(kiln_mod_update_os)
{
    _cleanup_strv_free_ char **include_in = NULL, **exclude = NULL;
    int r = kiln_mod_get_strv(inputs, MODULE, "include", &include_in, err);
    if (r >= 0)
        r = kiln_mod_get_strv(inputs, MODULE, "exclude", &exclude, err);
    if (r < 0)
        return r;
    /* include minus exclude */
    _cleanup_strv_free_ char **include = strv_new();
    for (char **p = include_in; *p; p++)
        if (!strv_contains(exclude, *p))
            strv_push(&include, *p);
    if (include_in[0] && !include[0]) {
        kiln_mod_console(ctx, "%s: every included package is excluded; nothing to update", MODULE);
        *ret_outputs = json_object();
        return 0;
    }
    if (geteuid() != 0)
        return kiln_error_set(err, -EPERM, MODULE ": must run as root to install updates");

    const char *manager = kiln_mod_update_os_manager();
    if (!manager)
        return kiln_error_set(err, -KILN_E_UNSUPPORTED,
                              MODULE ": no supported package manager (apt-get, dnf, yum) found");

    /* The environment, with apt told never to ask. */
    _cleanup_strv_free_ char **envp = strv_new();
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "DEBIAN_FRONTEND=", 16) != 0)
            strv_push(&envp, *e);
    strv_push(&envp, "DEBIAN_FRONTEND=noninteractive");
    struct runner rn = {
        .ctx = ctx,
        .deadline = ctx && ctx->timeout_seconds >= 0
                        ? kiln_now_ms() + (long long)ctx->timeout_seconds * 1000
                        : -1,
        .envp = envp,
    };

    if (strcmp(manager, "apt-get") == 0) {
        r = update_apt(&rn, include, exclude, err);
    } else {
        _cleanup_strv_free_ char **argv =
            kiln_mod_update_os_upgrade_argv(manager, include, exclude);
        r = run(&rn, argv, NULL, err);
    }
    if (r < 0)
        return r;
    *ret_outputs = json_object();
    return 0;
}
