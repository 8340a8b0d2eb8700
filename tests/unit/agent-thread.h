/* What the driver tests that talk to the real agent share: the agent's serve loop (engine
 * included, unless cfg.run replaces it) in a thread, serving one end of a socketpair or
 * listening on a unix socket, a client connected to it, and throw-away folders and documents.
 * Header-only: each test file is its own program. */
#pragma once

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fs.h"
#include "drivers/agent-client.h"
#include "guest-agent/serve.h"
#include "kiln-test.h"

struct agent_thread {
    pthread_t thread;
    int fd;                  /* serve this stream, or */
    const char *socket_path; /* listen here */
    struct kiln_agent_serve_config cfg; /* set cfg.run, cfg.ready_argv... before starting */
    int result;
    volatile sig_atomic_t stop;    /* ends a listening agent once its connection closed */
    volatile sig_atomic_t *cancel; /* the client's cancel flag, or NULL */
    int ping_interval_ms;          /* the client's (0: 1000) */
};

static inline void *
agent_main(void *arg)
{
    struct agent_thread *t = arg;
    struct kiln_error err = {0};
    t->result = t->socket_path ? kiln_agent_serve_socket(t->socket_path, &t->cfg, &err)
                               : kiln_agent_serve_fd(t->fd, &t->cfg, &err);
    if (t->result < 0)
        fprintf(stderr, "agent: %s\n", err.message);
    if (!t->socket_path)
        close(t->fd);
    return NULL;
}

/* Start the agent's thread (on t->fd, or listening on t->socket_path). */
static inline void
agent_start(struct agent_thread *t, const char *state_dir, const char *boot_id)
{
    t->cfg.state_directory = state_dir;
    t->cfg.boot_id = boot_id;
    t->cfg.stop = &t->stop;
    assert_int_equal(pthread_create(&t->thread, NULL, agent_main, t), 0);
}

/* The agent serving one end of a socketpair, and a client on the other. */
static inline struct kiln_agent_client *
start_agent(struct agent_thread *t, const char *state_dir, const char *boot_id)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    t->fd = sv[1];
    agent_start(t, state_dir, boot_id);
    struct kiln_agent_client_options o = {
        .connect_timeout_ms = 10000,
        .reply_timeout_ms = 10000,
        .ping_interval_ms = t->ping_interval_ms ? t->ping_interval_ms : 1000,
        .cancel = t->cancel};
    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    if (kiln_agent_client_open_fd(sv[0], &o, &c, &err) < 0)
        fail_msg("open: %s", err.message);
    return c;
}

/* Close the client: the agent's serve loop sees the channel close and ends. */
static inline void
stop_agent(struct agent_thread *t, struct kiln_agent_client *c)
{
    kiln_agent_client_free(c);
    pthread_join(t->thread, NULL);
}

static inline char *
tmpdir(void)
{
    char *d = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-agent-test", &d, NULL), 0);
    return d;
}

/* DIR/NAME holding text; its path. */
static inline char *
write_doc(const char *dir, const char *name, const char *text)
{
    char *p = kiln_path_join(dir, name);
    assert_int_equal(kiln_write_file_atomic(p, text, strlen(text), 0644, NULL), 0);
    return p;
}
