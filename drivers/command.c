/* Running helper programs without a shell: posix_spawn with pipes for stdout and stderr. */
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "drivers/command.h"

extern char **environ;

#define STDOUT_MAX (1u << 20)
#define STDERR_KEEP 2048

/* Read what is available from fd into b (up to max bytes kept); returns 0 at EOF. */
static int
drain(int fd, struct kiln_buf *b, size_t max, bool keep_tail)
{
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : 0;
    if (n == 0)
        return 0;
    if (b->len + (size_t)n <= max) {
        kiln_buf_append(b, chunk, (size_t)n);
    } else if (keep_tail) {
        /* Keep the last max bytes: the end of stderr says what went wrong. */
        kiln_buf_append(b, chunk, (size_t)n);
        size_t drop = b->len - max;
        memmove(b->data, b->data + drop, b->len - drop + 1);
        b->len -= drop;
    }
    return 1;
}

int
kiln_command_run(char *const argv[], char **ret_stdout, struct kiln_error *err)
{
    int out[2] = {-1, -1}, errp[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    struct kiln_buf obuf, ebuf;
    pid_t pid;
    int r, status;

    kiln_buf_init(&obuf);
    kiln_buf_init(&ebuf);
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
        r = kiln_error_errno(err, -errno, "%s: pipe", argv[0]);
        goto fail;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
    r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    close(errp[1]);
    out[1] = errp[1] = -1;
    if (r != 0) {
        r = kiln_error_errno(err, -r, "cannot run %s", argv[0]);
        goto fail;
    }

    struct pollfd pfd[2] = {{.fd = out[0], .events = POLLIN}, {.fd = errp[0], .events = POLLIN}};
    while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[0].fd >= 0 && pfd[0].revents && !drain(out[0], &obuf, STDOUT_MAX, false))
            pfd[0].fd = -1;
        if (pfd[1].fd >= 0 && pfd[1].revents && !drain(errp[0], &ebuf, STDERR_KEEP, true))
            pfd[1].fd = -1;
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            r = kiln_error_errno(err, -errno, "%s: waitpid", argv[0]);
            goto fail;
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        while (ebuf.len > 0 && (ebuf.data[ebuf.len - 1] == '\n' || ebuf.data[ebuf.len - 1] == ' '))
            ebuf.data[--ebuf.len] = '\0';
        if (WIFEXITED(status))
            r = kiln_error_set(err, -KILN_E_FAILED, "%s exited with status %d: %s", argv[0],
                               WEXITSTATUS(status), ebuf.len ? ebuf.data : "(no message)");
        else
            r = kiln_error_set(err, -KILN_E_FAILED, "%s killed by signal %d", argv[0],
                               WTERMSIG(status));
        goto fail;
    }
    close(out[0]);
    close(errp[0]);
    if (ret_stdout)
        *ret_stdout = kiln_buf_steal(&obuf);
    kiln_buf_clear(&obuf);
    kiln_buf_clear(&ebuf);
    return 0;

fail:
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (errp[i] >= 0)
            close(errp[i]);
    }
    kiln_buf_clear(&obuf);
    kiln_buf_clear(&ebuf);
    return r;
}
