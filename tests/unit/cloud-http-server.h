/* A tiny HTTP/1.1 server on 127.0.0.1 for the cloud unit tests: a thread accepts connections
 * (keep-alive honoured) and answers each request through a handler. Counts connections, so
 * tests can prove connection reuse. */
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct ts_request {
    char method[16];
    char target[4096];
    char headers[16384];
    char *body;
    size_t body_len;
};

struct ts_response {
    int status;
    char headers[2048]; /* extra header lines, each ending in \r\n */
    char *body;         /* malloc'ed or NULL */
    size_t body_len;
    bool close;         /* close the connection without answering (a reset) */
    size_t claim_len;   /* non-zero: announce this Content-Length, send the body, close */
};

typedef void (*ts_handler_fn)(const struct ts_request *req, struct ts_response *resp, void *data);

struct test_server {
    int fd;
    int port;
    pthread_t thread;
    ts_handler_fn handler;
    void *data;
    atomic_int connections;
    atomic_int requests;
    atomic_bool stop;
};

static inline const char *
ts_header(const struct ts_request *req, const char *name, char *buf, size_t cap)
{
    const char *p = req->headers;
    size_t nl = strlen(name);
    while (*p) {
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t l = strcspn(v, "\r\n");
            snprintf(buf, cap, "%.*s", (int)l, v);
            return buf;
        }
        p = strchr(p, '\n');
        if (!p)
            break;
        p++;
    }
    return NULL;
}

static inline void *
ts_conn(void *arg)
{
    void **a = arg;
    struct test_server *s = a[0];
    int fd = (int)(intptr_t)a[1];
    free(a);
    char *buf = malloc(1 << 16);
    size_t have = 0;
    for (;;) {
        char *end = NULL;
        while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
            if (have >= (1 << 16) - 1)
                goto out;
            ssize_t n = read(fd, buf + have, (1 << 16) - 1 - have);
            if (n <= 0)
                goto out;
            have += (size_t)n;
        }
        struct ts_request req = {0};
        size_t hlen = (size_t)(end - buf) + 4;
        char *line_end = memmem(buf, hlen, "\r\n", 2);
        sscanf(buf, "%15s %4095s", req.method, req.target);
        snprintf(req.headers, sizeof(req.headers), "%.*s", (int)(hlen - (line_end + 2 - buf)),
                 line_end + 2);
        char cl[32];
        size_t blen = ts_header(&req, "Content-Length", cl, sizeof(cl)) ? strtoul(cl, NULL, 10)
                                                                         : 0;
        req.body = malloc(blen + 1);
        size_t got = have - hlen < blen ? have - hlen : blen;
        memcpy(req.body, buf + hlen, got);
        while (got < blen) {
            ssize_t n = read(fd, req.body + got, blen - got);
            if (n <= 0) {
                free(req.body);
                goto out;
            }
            got += (size_t)n;
        }
        req.body[blen] = 0;
        req.body_len = blen;
        size_t used = hlen + (have - hlen < blen ? have - hlen : blen);
        memmove(buf, buf + used, have - used);
        have -= used;
        s->requests++;
        struct ts_response resp = {.status = 200};
        s->handler(&req, &resp, s->data);
        free(req.body);
        if (resp.close) {
            free(resp.body);
            goto out;
        }
        char head[4096];
        int hl = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n",
                          resp.status, resp.claim_len ? resp.claim_len : resp.body_len,
                          resp.headers);
        if (write(fd, head, (size_t)hl) != hl) {
            free(resp.body);
            goto out;
        }
        if (resp.body_len && strcmp(req.method, "HEAD") != 0 &&
            write(fd, resp.body, resp.body_len) != (ssize_t)resp.body_len) {
            free(resp.body);
            goto out;
        }
        free(resp.body);
        if (resp.claim_len)
            goto out;
    }
out:
    free(buf);
    close(fd);
    return NULL;
}

static inline void *
ts_accept(void *arg)
{
    struct test_server *s = arg;
    while (!s->stop) {
        struct pollfd p = {s->fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        s->connections++;
        void **a = malloc(2 * sizeof(void *));
        a[0] = s;
        a[1] = (void *)(intptr_t)c;
        pthread_t t;
        pthread_create(&t, NULL, ts_conn, a);
        pthread_detach(t);
    }
    return NULL;
}

static inline void
ts_start(struct test_server *s, ts_handler_fn handler, void *data)
{
    memset(s, 0, sizeof(*s));
    s->handler = handler;
    s->data = data;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(s->fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s->fd, 64) < 0)
        abort();
    socklen_t l = sizeof(a);
    getsockname(s->fd, (struct sockaddr *)&a, &l);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->thread, NULL, ts_accept, s);
}

static inline void
ts_stop(struct test_server *s)
{
    s->stop = true;
    pthread_join(s->thread, NULL);
    close(s->fd);
    /* Connection threads end when the client closes; give them a moment. */
    usleep(20000);
}

static inline void
ts_reply(struct ts_response *resp, int status, const char *ctype, const char *body)
{
    resp->status = status;
    if (ctype)
        snprintf(resp->headers, sizeof(resp->headers), "Content-Type: %s\r\n", ctype);
    resp->body = strdup(body ? body : "");
    resp->body_len = strlen(resp->body);
}
