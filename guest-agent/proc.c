/* Process spawning for the action modules (see proc.h).
 *
 * The command runs in a process group of its own so that a timeout or a cancellation reaches
 * everything it started (SIGTERM to the group, then SIGKILL after a grace period). The leader is
 * watched with waitid(WNOWAIT) and reaped only at the very end: while it is a zombie its pid,
 * and so the group id, cannot be reused, so the final kill(-pgid) never hits a stranger. */
#include "common/time.h"
#include "guest-agent/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "guest-agent/mod-common.h"

extern char **environ;

/* After the leader exits, how long to keep reading pipes that a background child still holds. */
#define DRAIN_AFTER_EXIT_MS 1000
#define POLL_MS 100
#define ERR_TAIL 1024

struct stream {
    int fd;
    const char *name;
    struct kiln_buf buf;
    size_t max;
    bool truncated;
};

struct tail {
    char data[ERR_TAIL];
    size_t len;
};

void
kiln_proc_result_clear(struct kiln_proc_result *r)
{
    if (!r)
        return;
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

static void
tail_append(struct tail *t, const char *data, size_t len)
{
    if (len >= sizeof(t->data)) {
        memcpy(t->data, data + len - sizeof(t->data), sizeof(t->data));
        t->len = sizeof(t->data);
        return;
    }
    if (t->len + len > sizeof(t->data)) {
        size_t drop = t->len + len - sizeof(t->data);
        memmove(t->data, t->data + drop, t->len - drop);
        t->len -= drop;
    }
    memcpy(t->data + t->len, data, len);
    t->len += len;
}

/* Read what is there; returns false at EOF or on a hard error (the fd is then closed). */
static bool
stream_read(struct stream *s, const struct kiln_module_ctx *ctx, struct tail *tail)
{
    char chunk[16384];
    for (;;) {
        ssize_t n = read(s->fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n <= 0) {
            close(s->fd);
            s->fd = -1;
            return false;
        }
        if (ctx && ctx->console)
            ctx->console(ctx->console_userdata, s->name, chunk, (size_t)n);
        if (tail)
            tail_append(tail, chunk, (size_t)n);
        size_t room = s->buf.len < s->max ? s->max - s->buf.len : 0;
        size_t keep = (size_t)n < room ? (size_t)n : room;
        if (keep)
            kiln_buf_append(&s->buf, chunk, keep);
        if (keep < (size_t)n)
            s->truncated = true;
    }
}

/* Has the leader exited? Leaves it a zombie (WNOWAIT) so that its pid stays reserved. */
static bool
leader_exited(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    int r;
    do
        r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
    while (r < 0 && errno == EINTR);
    return r == 0 && si.si_pid == pid;
}

/* Wait up to timeout ms for output (read it) or for the leader to exit (pidfd, when the kernel
 * has them: then the step ends the moment the command does, not at the next poll tick). */
static void
pump(struct stream *streams, int pidfd, const struct kiln_module_ctx *ctx, struct tail *tail,
     int timeout)
{
    struct pollfd pfd[3];
    nfds_t n = 0;
    int idx[3];
    for (int i = 0; i < 2; i++) {
        if (streams[i].fd < 0)
            continue;
        pfd[n].fd = streams[i].fd;
        pfd[n].events = POLLIN;
        pfd[n].revents = 0;
        idx[n++] = i;
    }
    if (pidfd >= 0) {
        pfd[n].fd = pidfd;
        pfd[n].events = POLLIN;
        pfd[n].revents = 0;
        idx[n++] = -1;
    }
    if (n == 0) {
        /* no pidfd and nothing to read: wait a little for the leader */
        poll(NULL, 0, timeout < 10 ? timeout : 10);
        return;
    }
    int r = poll(pfd, n, timeout);
    if (r <= 0)
        return;
    for (nfds_t i = 0; i < n; i++)
        if (idx[i] >= 0 && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
            stream_read(&streams[idx[i]], ctx, idx[i] == 1 ? tail : NULL);
}

static bool
cancelled(const struct kiln_module_ctx *ctx)
{
    return ctx && ctx->cancel && *ctx->cancel;
}

/* SIGTERM the group, give it grace_ms to go (leader exited and pipes closed), then SIGKILL. */
static void
terminate_group(pid_t pid, int pidfd, struct stream *streams, const struct kiln_module_ctx *ctx,
                struct tail *tail, int grace_ms)
{
    kill(-pid, SIGTERM);
    long long until = kiln_now_ms() + grace_ms;
    while (kiln_now_ms() < until) {
        if (leader_exited(pid) && streams[0].fd < 0 && streams[1].fd < 0)
            break;
        /* once the leader is gone its pidfd stays readable: only wait on the pipes */
        pump(streams, leader_exited(pid) ? -1 : pidfd, ctx, tail, 50);
    }
    kill(-pid, SIGKILL);
}

/* The last non-empty line(s) of stderr for an error message, at most ~300 bytes. */
static char *
stderr_summary(const struct tail *t)
{
    size_t end = t->len;
    while (end > 0 &&
           (t->data[end - 1] == '\n' || t->data[end - 1] == '\r' || t->data[end - 1] == ' '))
        end--;
    size_t start = end > 300 ? end - 300 : 0;
    if (end == 0)
        return NULL;
    /* whole characters only, and valid UTF-8 (the message ends up in JSON) */
    while (start > 0 && start < end && (t->data[start] & 0xC0) == 0x80)
        start++;
    char *s = kiln_mod_utf8_repair(t->data + start, end - start, NULL);
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return s;
}

int
kiln_proc_run(const struct kiln_proc_opts *opts, const struct kiln_module_ctx *ctx,
              struct kiln_proc_result *result, struct kiln_error *err)
{
    int outp[2] = {-1, -1}, errp[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    pid_t pid = -1;
    int r;

    memset(result, 0, sizeof(*result));
    result->exit_code = -1;
    if (!opts->argv || !opts->argv[0])
        return kiln_error_set(err, -EINVAL, "no command to run");

    if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
        r = -errno;
        if (outp[0] >= 0) {
            close(outp[0]);
            close(outp[1]);
        }
        return kiln_error_errno(err, r, "pipe");
    }

    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 34)
    /* Whatever the agent has open without O_CLOEXEC stays out of the step. */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
    if (opts->cwd)
        posix_spawn_file_actions_addchdir_np(&fa, opts->cwd);
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);

    r = posix_spawnp(&pid, opts->argv[0], &fa, &attr, opts->argv,
                     opts->envp ? opts->envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(outp[1]);
    close(errp[1]);
    if (r != 0) {
        close(outp[0]);
        close(errp[0]);
        return kiln_error_errno(err, -r, "cannot run %s", opts->argv[0]);
    }
    kiln_debug("proc: started %s as pid %d", opts->argv[0], (int)pid);

    /* pidfds are always close-on-exec; without them (kernels before 5.3) pump polls */
#ifdef SYS_pidfd_open
    _cleanup_close_ int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
#else
    int pidfd = -1;
#endif
    fcntl(outp[0], F_SETFL, O_NONBLOCK);
    fcntl(errp[0], F_SETFL, O_NONBLOCK);
    size_t max = opts->capture_max ? opts->capture_max : KILN_PROC_CAPTURE_MAX;
    struct stream streams[2] = {
        {outp[0], "stdout", {0}, max, false},
        {errp[0], "stderr", {0}, max, false},
    };
    struct tail tail = {.len = 0};
    int timeout_s = ctx ? ctx->timeout_seconds : -1;
    long long deadline = timeout_s >= 0 ? kiln_now_ms() + (long long)timeout_s * 1000 : -1;
    int grace_ms = (opts->kill_grace_seconds > 0 ? opts->kill_grace_seconds : 5) * 1000;
    long long exited_at = -1;

    for (;;) {
        if (cancelled(ctx)) {
            result->cancelled = true;
            terminate_group(pid, pidfd, streams, ctx, &tail, grace_ms);
            break;
        }
        if (deadline >= 0 && kiln_now_ms() >= deadline) {
            result->timed_out = true;
            terminate_group(pid, pidfd, streams, ctx, &tail, grace_ms);
            break;
        }
        if (exited_at < 0 && leader_exited(pid))
            exited_at = kiln_now_ms();
        if (exited_at >= 0) {
            if (streams[0].fd < 0 && streams[1].fd < 0)
                break;
            /* A background child still holds the pipes: stop waiting for it. */
            if (kiln_now_ms() - exited_at > DRAIN_AFTER_EXIT_MS)
                break;
        }
        long long wait = POLL_MS;
        if (deadline >= 0 && deadline - kiln_now_ms() < wait)
            wait = deadline - kiln_now_ms() > 0 ? deadline - kiln_now_ms() : 0;
        pump(streams, exited_at < 0 ? pidfd : -1, ctx, &tail, (int)wait);
    }

    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    for (int i = 0; i < 2; i++)
        if (streams[i].fd >= 0) {
            /* pick up what was already written before closing */
            stream_read(&streams[i], ctx, i == 1 ? &tail : NULL);
            if (streams[i].fd >= 0)
                close(streams[i].fd);
        }

    if (WIFEXITED(status))
        result->exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        result->term_signal = WTERMSIG(status);
    result->out_truncated = streams[0].truncated;
    result->err_truncated = streams[1].truncated;
    result->out_len = streams[0].buf.len;
    result->out = kiln_buf_steal(&streams[0].buf);
    result->err_len = streams[1].buf.len;
    result->err = kiln_buf_steal(&streams[1].buf);

    if (result->timed_out)
        return kiln_error_set(err, -ETIMEDOUT, "timed out after %d seconds", timeout_s);
    if (result->cancelled)
        return kiln_error_set(err, -ECANCELED, "cancelled");
    if (result->exit_code == 0)
        return 0;
    if (result->exit_code == KILN_PROC_EXIT_REBOOT)
        return kiln_error_set(err, -KILN_E_REBOOT, "exit status %d: reboot requested",
                              KILN_PROC_EXIT_REBOOT);
    _cleanup_free_ char *summary = stderr_summary(&tail);
    if (result->term_signal)
        return kiln_error_set(err, -KILN_E_FAILED, "killed by signal %s%s%s",
                              sigabbrev_np(result->term_signal) ?: "?", summary ? ": " : "",
                              summary ? summary : "");
    return kiln_error_set(err, -KILN_E_FAILED, "exit status %d%s%s", result->exit_code,
                          summary ? ": " : "", summary ? summary : "");
}
