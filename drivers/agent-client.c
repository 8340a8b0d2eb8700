/* The host side of the guest agent protocol. The agent is untrusted: every frame is bounded by
 * the decoder, every wait by a deadline, and fetched files are created only beneath the
 * destination folder, by openat() from its descriptor, never following a symbolic link. */
#include "drivers/agent-client.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/json.h"
#include "common/log.h"
#include "common/time.h"
#include "guest-agent/proto.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 300000
#define DEFAULT_REPLY_TIMEOUT_MS 15000
#define DEFAULT_PING_INTERVAL_MS 5000
/* One sync attempt waits this long before a new nonce is sent. */
#define SYNC_ATTEMPT_MS 2000
#define SLICE_MS 200
#define MAX_UPLOAD_BYTES (16u << 20)
/* Re-attachments to a running job after rejected frames, before the job is given up. */
#define MAX_REATTACH 3
/* How long the agent gets to end a job after the cancel sent when its deadline passed. */
#define DEFAULT_CANCEL_GRACE_MS 10000
#define DEFAULT_PREPARE_TIMEOUT_MS 120000

struct kiln_agent_client {
    int fd;
    struct kiln_proto_decoder dec;
    struct kiln_agent_client_options opts;
    uint32_t seq;
    json_t *hello;
    bool need_sync; /* the stream is out of step (a rejected frame, an abandoned transfer) */
    int64_t deadline_ms; /* of the jobs followed next; 0: none */
    int grace_ms;
};

void
kiln_agent_job_result_clear(struct kiln_agent_job_result *r)
{
    if (!r)
        return;
    free(r->failure);
    free(r->log_folder);
    free(r->step);
    memset(r, 0, sizeof(*r));
}

const char *
kiln_agent_job_status_name(enum kiln_agent_job_status s)
{
    switch (s) {
    case KILN_AGENT_JOB_SUCCESS:
        return "success";
    case KILN_AGENT_JOB_SUCCESS_WITH_IGNORED_FAILURE:
        return "success-with-ignored-failure";
    case KILN_AGENT_JOB_FAILED:
        return "failed";
    case KILN_AGENT_JOB_CANCELLED:
        return "cancelled";
    case KILN_AGENT_JOB_REBOOT_REQUIRED:
        return "reboot-required";
    }
    return "unknown";
}

static bool
cancelled(const struct kiln_agent_client *c)
{
    return c->opts.cancel && *c->opts.cancel;
}

static uint32_t
next_seq(struct kiln_agent_client *c)
{
    if (++c->seq == 0)
        c->seq = 1;
    return c->seq;
}

static int
send_raw(struct kiln_agent_client *c, const struct kiln_buf *b, struct kiln_error *err)
{
    int r = kiln_proto_write_all(c->fd, b->data, b->len,
                                 kiln_proto_now_ms() + c->opts.reply_timeout_ms);
    if (r == -ETIMEDOUT)
        return kiln_error_set(err, r, "agent stopped reading after %d s",
                              c->opts.reply_timeout_ms / 1000);
    if (r < 0)
        return kiln_error_errno(err, r, "cannot write to the agent");
    return 0;
}

static int
send_json(struct kiln_agent_client *c, uint8_t type, uint32_t seq, const json_t *obj,
          struct kiln_error *err)
{
    _cleanup_buf_ struct kiln_buf b = {0};
    int r = kiln_proto_encode_json(&b, type, 0, seq, obj);
    if (r < 0)
        return kiln_error_set(err, r, "%s request too large", kiln_proto_type_name(type));
    return send_raw(c, &b, err);
}

/* Read bytes until the deadline. 1: bytes arrived; 0: deadline passed; negative: EOF/error. */
static int
fill(struct kiln_agent_client *c, int64_t deadline, struct kiln_error *err)
{
    int r = kiln_proto_read_some(c->fd, &c->dec, deadline);
    if (r > 0)
        return 1;
    if (r == -ETIMEDOUT)
        return 0;
    if (r == 0 || r == -EPIPE || r == -ECONNRESET)
        return kiln_error_set(err, -ECONNRESET, "agent closed the connection");
    return kiln_error_errno(err, r, "cannot read from the agent");
}

/* The next frame before the deadline: 1 with a frame, 0 when the deadline passed. A rejected
 * frame fails the call and leaves the connection to be re-synchronised. */
static int
recv_frame(struct kiln_agent_client *c, int64_t deadline, struct kiln_proto_frame *f,
           struct kiln_error *err)
{
    for (;;) {
        struct kiln_error ferr = {0};
        int r = kiln_proto_decoder_next(&c->dec, f, &ferr);
        if (r == 1)
            return 1;
        if (r < 0) {
            c->need_sync = true;
            return kiln_error_set(err, r, "agent sent a bad frame: %s", ferr.message);
        }
        r = fill(c, deadline, err);
        if (r <= 0)
            return r;
    }
}

static int
silence_error(struct kiln_agent_client *c, int waited_ms, struct kiln_error *err)
{
    c->need_sync = true;
    int secs = (waited_ms + 500) / 1000;
    return kiln_error_set(err, -ETIMEDOUT, "agent stopped answering after %d s",
                          secs > 0 ? secs : 1);
}

static int
remote_error(const struct kiln_proto_frame *f, const char *what, struct kiln_error *err)
{
    _cleanup_json_ json_t *j = NULL;
    const char *msg = NULL;
    if (kiln_proto_frame_json(f, &j, NULL) == 0)
        msg = kiln_json_get_str(j, "message");
    char safe[512];
    size_t n = 0;
    /* The message is the guest's: keep it printable and short. */
    for (const char *p = msg ? msg : "no reason given"; *p && n + 1 < sizeof(safe); p++)
        safe[n++] = (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;
    safe[n] = '\0';
    return kiln_error_set(err, -KILN_E_REMOTE, "%s: agent error: %s", what, safe);
}

/* Wait for the reply to request seq: skips stale frames of other requests. */
static int
wait_reply(struct kiln_agent_client *c, uint32_t seq, uint8_t want, const char *what, json_t **ret,
           struct kiln_error *err)
{
    int64_t start = kiln_proto_now_ms();
    int64_t deadline = start + c->opts.reply_timeout_ms;
    for (;;) {
        _cleanup_frame_ struct kiln_proto_frame f = {0};
        int r = recv_frame(c, deadline, &f, err);
        if (r < 0)
            return kiln_error_prefix(err, r, "%s", what);
        if (r == 0)
            return kiln_error_prefix(err, silence_error(c, c->opts.reply_timeout_ms, err), "%s",
                                     what);
        if (f.seq != seq)
            continue;
        if (f.type == KILN_MSG_ERROR)
            return remote_error(&f, what, err);
        if (f.type != want)
            continue;
        if (ret) {
            r = kiln_proto_frame_json(&f, ret, err);
            if (r < 0)
                return kiln_error_prefix(err, r, "%s", what);
        }
        return 0;
    }
}

static uint64_t
random_nonce(void)
{
    uint64_t n = 0;
    if (getrandom(&n, sizeof(n), 0) != sizeof(n))
        n = (uint64_t)kiln_proto_now_ms() * 6364136223846793005ull + (uint64_t)getpid();
    return n;
}

int
kiln_agent_client_sync(struct kiln_agent_client *c, int timeout_ms, struct kiln_error *err)
{
    int64_t start = kiln_proto_now_ms(), deadline = start + timeout_ms;
    while (kiln_proto_now_ms() < deadline) {
        if (cancelled(c))
            return kiln_error_set(err, -ECANCELED, "cancelled while waiting for the agent");
        uint64_t nonce = random_nonce();
        char hex[17];
        snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)nonce);
        uint32_t seq = next_seq(c);
        _cleanup_json_ json_t *req =
            json_pack("{s:s, s:I}", "nonce", hex, "time-ms", (json_int_t)kiln_realtime_ms());
        int r = send_json(c, KILN_MSG_SYNC, seq, req, err);
        if (r < 0)
            return r;
        int64_t attempt = kiln_proto_now_ms() + SYNC_ATTEMPT_MS;
        if (attempt > deadline)
            attempt = deadline;
        /* Everything before the delimiter is junk or stale: boot noise, half frames. */
        bool found = false;
        while (!found) {
            if (kiln_proto_decoder_find_sync(&c->dec, nonce) == 1) {
                found = true;
                break;
            }
            r = fill(c, attempt, err);
            if (r < 0)
                return r;
            if (r == 0)
                break;
        }
        if (!found)
            continue;
        /* Then the hello that carries the same nonce. */
        for (;;) {
            _cleanup_frame_ struct kiln_proto_frame f = {0};
            struct kiln_error ferr = {0};
            r = recv_frame(c, deadline, &f, &ferr);
            if (r == 0)
                break;
            if (r < 0 && ferr.code == -ECONNRESET)
                return kiln_error_set(err, ferr.code, "%s", ferr.message);
            if (r < 0)
                continue; /* a rejected frame after the delimiter: keep looking */
            if (f.type != KILN_MSG_HELLO)
                continue;
            json_t *hello = NULL;
            if (kiln_proto_frame_json(&f, &hello, NULL) < 0)
                continue;
            if (!kiln_streq(kiln_json_get_str(hello, "nonce"), hex)) {
                json_decref(hello);
                continue;
            }
            json_t *proto = json_object_get(hello, "protocol");
            if (!json_is_integer(proto) || json_integer_value(proto) != KILN_PROTO_VERSION) {
                json_decref(hello);
                return kiln_error_set(err, -KILN_E_UNSUPPORTED,
                                      "agent speaks another protocol version");
            }
            json_decref(c->hello);
            c->hello = hello;
            c->need_sync = false;
            return 0;
        }
    }
    c->need_sync = true;
    return kiln_error_set(err, -ETIMEDOUT, "agent did not answer a sync within %d s",
                          (timeout_ms + 999) / 1000);
}

static void
normalise_options(struct kiln_agent_client_options *o, const struct kiln_agent_client_options *in)
{
    if (in)
        *o = *in;
    if (o->connect_timeout_ms <= 0)
        o->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    if (o->reply_timeout_ms <= 0)
        o->reply_timeout_ms = DEFAULT_REPLY_TIMEOUT_MS;
    if (o->ping_interval_ms <= 0)
        o->ping_interval_ms = DEFAULT_PING_INTERVAL_MS;
}

static struct kiln_agent_client *
client_new(int fd, const struct kiln_agent_client_options *opts)
{
    struct kiln_agent_client *c = kiln_new(struct kiln_agent_client, 1);
    c->fd = fd;
    normalise_options(&c->opts, opts);
    c->grace_ms = DEFAULT_CANCEL_GRACE_MS;
    /* Our own limit, not the agent's claim: a FILE_DATA frame holds one chunk plus its index. */
    kiln_proto_decoder_init(&c->dec, KILN_PROTO_MAX_PAYLOAD);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    return c;
}

void
kiln_agent_client_free(struct kiln_agent_client *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    kiln_proto_decoder_clear(&c->dec);
    json_decref(c->hello);
    free(c);
}

int
kiln_agent_client_open_fd(int fd, const struct kiln_agent_client_options *opts,
                          struct kiln_agent_client **ret, struct kiln_error *err)
{
    struct kiln_agent_client *c = client_new(fd, opts);
    int r = kiln_agent_client_sync(c, c->opts.connect_timeout_ms, err);
    if (r < 0) {
        kiln_agent_client_free(c);
        return r;
    }
    *ret = c;
    return 0;
}

int
kiln_agent_client_connect(const char *socket_path, const struct kiln_agent_client_options *opts,
                          struct kiln_agent_client **ret, struct kiln_error *err)
{
    struct kiln_agent_client_options o;
    normalise_options(&o, opts);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(socket_path) >= sizeof(sa.sun_path))
        return kiln_error_set(err, -ENAMETOOLONG, "%s: socket path too long", socket_path);
    memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);

    int64_t start = kiln_proto_now_ms(), deadline = start + o.connect_timeout_ms;
    struct kiln_error last = {0};
    for (;;) {
        if (o.cancel && *o.cancel)
            return kiln_error_set(err, -ECANCELED, "cancelled while connecting to the agent");
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return kiln_error_errno(err, -errno, "socket");
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            struct kiln_agent_client *c = client_new(fd, &o);
            int64_t left = deadline - kiln_proto_now_ms();
            kiln_error_clear(&last);
            int r = kiln_agent_client_sync(c, left > 0 ? (int)left : 1, &last);
            if (r == 0) {
                *ret = c;
                return 0;
            }
            kiln_agent_client_free(c);
            if (r == -ECANCELED || r == -KILN_E_UNSUPPORTED)
                return kiln_error_set(err, r, "%s", last.message);
        } else {
            int e = errno;
            close(fd);
            kiln_error_clear(&last);
            kiln_error_errno(&last, -e, "%s", socket_path);
            /* The socket appears when the guest is defined and accepts once QEMU runs. */
            if (e != ENOENT && e != ECONNREFUSED && e != EAGAIN)
                return kiln_error_set(err, -e, "%s", last.message);
        }
        if (kiln_proto_now_ms() >= deadline)
            break;
        usleep(SLICE_MS * 1000);
    }
    return kiln_error_set(err, -ETIMEDOUT, "agent not ready after %d s (%s)",
                          (o.connect_timeout_ms + 999) / 1000,
                          last.message[0] ? last.message : "no answer");
}

const json_t *
kiln_agent_client_hello(const struct kiln_agent_client *c)
{
    return c->hello;
}

uint64_t
kiln_agent_client_skipped(const struct kiln_agent_client *c)
{
    return c->dec.skipped;
}

static int
ensure_synced(struct kiln_agent_client *c, struct kiln_error *err)
{
    if (!c->need_sync)
        return 0;
    return kiln_agent_client_sync(c, c->opts.reply_timeout_ms, err);
}

void
kiln_agent_client_set_deadline(struct kiln_agent_client *c, int64_t deadline_ms, int grace_ms)
{
    c->deadline_ms = deadline_ms > 0 ? deadline_ms : 0;
    c->grace_ms = grace_ms > 0 ? grace_ms : DEFAULT_CANCEL_GRACE_MS;
}

int
kiln_agent_client_ping(struct kiln_agent_client *c, struct kiln_error *err)
{
    int r = ensure_synced(c, err);
    if (r < 0)
        return r;
    uint32_t seq = next_seq(c);
    _cleanup_json_ json_t *req = json_object();
    r = send_json(c, KILN_MSG_PING, seq, req, err);
    if (r < 0)
        return r;
    return wait_reply(c, seq, KILN_MSG_PONG, "ping", NULL, err);
}

static enum kiln_agent_job_status
parse_status(const char *s, bool *ok)
{
    *ok = true;
    if (kiln_streq(s, "success"))
        return KILN_AGENT_JOB_SUCCESS;
    if (kiln_streq(s, "success-with-ignored-failure"))
        return KILN_AGENT_JOB_SUCCESS_WITH_IGNORED_FAILURE;
    if (kiln_streq(s, "failed"))
        return KILN_AGENT_JOB_FAILED;
    if (kiln_streq(s, "cancelled"))
        return KILN_AGENT_JOB_CANCELLED;
    *ok = false;
    return KILN_AGENT_JOB_FAILED;
}

static char *
clean_string(const char *s, size_t max)
{
    if (!s)
        return NULL;
    char *out = kiln_strndup(s, max);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 && *p != '\n' && *p != '\t')
            *p = '?';
    return out;
}

bool
kiln_agent_hello_has_capability(const json_t *hello, const char *name)
{
    const json_t *caps = json_object_get(hello, "capabilities");
    for (size_t i = 0; i < json_array_size(caps); i++)
        if (kiln_streq(json_string_value(json_array_get(caps, i)), name))
            return true;
    return false;
}

int
kiln_agent_client_prepare(struct kiln_agent_client *c, int timeout_ms, int64_t *ready_ms,
                          struct kiln_error *err)
{
    if (cancelled(c))
        return kiln_error_set(err, -ECANCELED, "prepare cancelled");
    int r = ensure_synced(c, err);
    if (r < 0)
        return r;
    /* An older agent drops the unknown frame without an answer: ask only one that knows it. */
    if (!kiln_agent_hello_has_capability(c->hello, "prepare"))
        return kiln_error_set(err, -KILN_E_UNSUPPORTED, "prepare: the agent does not support it");
    if (timeout_ms <= 0)
        timeout_ms = DEFAULT_PREPARE_TIMEOUT_MS;
    uint32_t seq = next_seq(c);
    _cleanup_json_ json_t *req = json_object();
    r = send_json(c, KILN_MSG_PREPARE, seq, req, err);
    if (r < 0)
        return r;
    int64_t deadline = kiln_proto_now_ms() + timeout_ms;
    bool cancel_sent = false;
    for (;;) {
        int64_t now = kiln_proto_now_ms();
        if (cancelled(c) && !cancel_sent) {
            _cleanup_json_ json_t *creq = json_object();
            r = send_json(c, KILN_MSG_CANCEL, next_seq(c), creq, err);
            if (r < 0)
                return r;
            cancel_sent = true;
            /* The agent answers the prepare once the command is stopped. */
            if (deadline > now + c->opts.reply_timeout_ms)
                deadline = now + c->opts.reply_timeout_ms;
        }
        if (now >= deadline) {
            if (cancel_sent)
                return kiln_error_set(err, -ECANCELED, "prepare cancelled");
            return kiln_error_set(err, -ETIMEDOUT, "prepare: the agent did not answer within %d s",
                                  (timeout_ms + 999) / 1000);
        }
        _cleanup_frame_ struct kiln_proto_frame f = {0};
        r = recv_frame(c, now + SLICE_MS < deadline ? now + SLICE_MS : deadline, &f, err);
        if (r < 0)
            return kiln_error_prefix(err, r, "prepare");
        if (r == 0 || f.seq != seq)
            continue;
        if (cancel_sent && (f.type == KILN_MSG_ERROR || f.type == KILN_MSG_ACK))
            return kiln_error_set(err, -ECANCELED, "prepare cancelled");
        if (f.type == KILN_MSG_ERROR)
            return remote_error(&f, "prepare", err);
        if (f.type != KILN_MSG_ACK)
            continue;
        _cleanup_json_ json_t *ack = NULL;
        r = kiln_proto_frame_json(&f, &ack, err);
        if (r < 0)
            return kiln_error_prefix(err, r, "prepare");
        json_t *ms = json_object_get(ack, "ready-ms");
        if (ready_ms)
            *ready_ms = json_is_integer(ms) && json_integer_value(ms) > 0
                            ? (int64_t)json_integer_value(ms)
                            : 0;
        const char *failure = kiln_json_get_str(ack, "failure");
        if (failure) {
            _cleanup_free_ char *safe = clean_string(failure, 1024);
            return kiln_error_set(err, -KILN_E_FAILED, "prepare: %s", safe);
        }
        return 0;
    }
}

/* After a rejected frame: re-sync and attach to the running job again (a resume-job with
 * "attach", which never starts anything: the agent re-streams a running job, or repeats how it
 * ended). Events sent in between are lost; the job's end is not. */
static int
reattach(struct kiln_agent_client *c, const char *id, uint32_t *seq, struct kiln_error *err)
{
    int r = kiln_agent_client_sync(c, c->opts.reply_timeout_ms, err);
    if (r < 0)
        return r;
    uint32_t s = next_seq(c);
    _cleanup_json_ json_t *req = json_pack("{s:s, s:b}", "execution-id", id, "attach", 1);
    r = send_json(c, KILN_MSG_RESUME_JOB, s, req, err);
    if (r < 0)
        return r;
    *seq = s;
    return 0;
}

#define STEP_NAME_MAX 160

/* Follow step-start/step-end events: running holds "phase/step" of the step in progress (the
 * guest's text: kept printable and bounded), or "" between steps. */
static void
track_step(const json_t *ev, char running[STEP_NAME_MAX])
{
    const char *type = kiln_json_get_str(ev, "event");
    const char *phase = kiln_json_get_str(ev, "phase");
    const char *step = kiln_json_get_str(ev, "step");
    if (!type || !step)
        return;
    char name[STEP_NAME_MAX];
    snprintf(name, sizeof(name), "%s/%s", phase ? phase : "?", step);
    for (char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    if (kiln_streq(type, "step-start"))
        memcpy(running, name, strlen(name) + 1);
    else if (kiln_streq(type, "step-end") && kiln_streq(running, name))
        running[0] = '\0';
}

static void
set_timed_out(struct kiln_agent_job_result *result, bool timed_out, const char *step)
{
    result->timed_out = timed_out;
    if (timed_out && step[0])
        result->step = kiln_strdup(step);
}

/* Stream a running job's frames to cb until it ends. Pings keep the agent honest: silence longer
 * than the reply timeout is a dead agent. */
static int
follow_job(struct kiln_agent_client *c, uint32_t seq, const char *id,
           const struct kiln_agent_client_callbacks *cb, struct kiln_agent_job_result *result,
           struct kiln_error *err)
{
    int64_t last_heard = kiln_proto_now_ms(), last_ping = last_heard;
    uint32_t ping_seq = 0;
    int64_t cancel_sent = 0;
    int reattached = 0;
    /* The step running now (from step-start/step-end events), and the one running when the
     * deadline passed. */
    char running[STEP_NAME_MAX] = "", timed_out_in[STEP_NAME_MAX] = "";
    bool timed_out = false;
    for (;;) {
        int64_t now = kiln_proto_now_ms();
        bool deadline_passed = c->deadline_ms > 0 && now >= c->deadline_ms;
        if ((cancelled(c) || deadline_passed) && !cancel_sent) {
            _cleanup_json_ json_t *req = json_object();
            int r = send_json(c, KILN_MSG_CANCEL, next_seq(c), req, err);
            if (r < 0)
                return r;
            cancel_sent = now;
            if (!cancelled(c)) {
                timed_out = true;
                memcpy(timed_out_in, running, strlen(running) + 1);
                kiln_debug("agent client: job %s: deadline passed%s%s; cancelling", id,
                           running[0] ? " in " : "", running);
            }
        }
        if (timed_out && now - cancel_sent > c->grace_ms) {
            c->need_sync = true;
            return kiln_error_set(err, -ETIMEDOUT, "the job's time ran out%s%s and the agent did "
                                  "not end it within %d s of the cancel",
                                  timed_out_in[0] ? " in " : "", timed_out_in,
                                  (c->grace_ms + 999) / 1000);
        }
        if (cancel_sent && !timed_out && now - cancel_sent > c->opts.reply_timeout_ms) {
            c->need_sync = true;
            return kiln_error_set(err, -ECANCELED, "job %s cancelled; the agent did not confirm",
                                  id);
        }
        if (now - last_heard > c->opts.reply_timeout_ms)
            return silence_error(c, (int)(now - last_heard), err);
        if (now - last_ping >= c->opts.ping_interval_ms) {
            ping_seq = next_seq(c);
            _cleanup_json_ json_t *req = json_object();
            int r = send_json(c, KILN_MSG_PING, ping_seq, req, err);
            if (r < 0)
                return r;
            last_ping = now;
        }
        _cleanup_frame_ struct kiln_proto_frame f = {0};
        struct kiln_error ferr = {0};
        int r = recv_frame(c, now + SLICE_MS, &f, &ferr);
        if (r < 0 && c->need_sync && reattached < MAX_REATTACH) {
            struct kiln_error aerr = {0};
            kiln_debug("agent client: job %s: %s; re-syncing", id, ferr.message);
            reattached++;
            if (reattach(c, id, &seq, &aerr) == 0) {
                last_heard = last_ping = kiln_proto_now_ms();
                continue;
            }
            return kiln_error_set(err, aerr.code, "job %s: %s; then %s", id, ferr.message,
                                  aerr.message);
        }
        if (r < 0)
            return kiln_error_set(err, r, "job %s: %s", id, ferr.message);
        if (r == 0)
            continue;
        last_heard = kiln_proto_now_ms();
        if (f.type == KILN_MSG_PONG || f.type == KILN_MSG_ACK)
            continue;
        if (f.seq != seq)
            continue;
        switch (f.type) {
        case KILN_MSG_JOB_STARTED:
            break;
        case KILN_MSG_ERROR:
            return remote_error(&f, id, err);
        case KILN_MSG_EVENT: {
            _cleanup_json_ json_t *ev = NULL;
            if (kiln_proto_frame_json(&f, &ev, NULL) < 0)
                break;
            track_step(ev, running);
            if (cb && cb->event)
                cb->event(cb->userdata, ev);
            break;
        }
        case KILN_MSG_CONSOLE:
            if (f.len >= 1 && cb && cb->console)
                cb->console(cb->userdata, f.payload[0] == 2 ? "stderr" : "stdout",
                            (const char *)f.payload + 1, f.len - 1);
            break;
        case KILN_MSG_REBOOT_REQUIRED:
            result->status = KILN_AGENT_JOB_REBOOT_REQUIRED;
            /* Asked for just as the time ran out: the caller must not reboot and resume. */
            set_timed_out(result, timed_out, timed_out_in);
            return 0;
        case KILN_MSG_JOB_DONE: {
            _cleanup_json_ json_t *done = NULL;
            r = kiln_proto_frame_json(&f, &done, err);
            if (r < 0)
                return kiln_error_prefix(err, r, "job %s", id);
            bool ok;
            result->status = parse_status(kiln_json_get_str(done, "status"), &ok);
            if (!ok)
                return kiln_error_set(err, -KILN_E_REMOTE, "job %s: unknown status from the agent",
                                      id);
            result->failure = clean_string(kiln_json_get_str(done, "failure"), 4096);
            json_t *steps = json_object_get(done, "steps");
            result->executed = (int)json_integer_value(json_object_get(steps, "executed"));
            result->failed = (int)json_integer_value(json_object_get(steps, "failed"));
            result->ignored = (int)json_integer_value(json_object_get(steps, "ignored"));
            const char *folder = kiln_json_get_str(done, "log-folder");
            if (folder && kiln_proto_check_relpath(folder, NULL) == 0)
                result->log_folder = kiln_strdup(folder);
            /* A job that still succeeded or failed on its own ended by itself, not by the
             * cancel: its own status tells more. */
            if (result->status == KILN_AGENT_JOB_CANCELLED)
                set_timed_out(result, timed_out, timed_out_in);
            if (timed_out)
                return 0;
            if (cancel_sent)
                return kiln_error_set(err, -ECANCELED, "job %s cancelled", id);
            return 0;
        }
        default:
            break;
        }
    }
}

struct upload_doc {
    char *name;
    char *data;
    size_t len;
    char sha[KILN_HASH_MAX_HEX];
};

int
kiln_agent_client_run_job(struct kiln_agent_client *c, const struct kiln_agent_job *job,
                          const struct kiln_agent_client_callbacks *cb,
                          struct kiln_agent_job_result *result, struct kiln_error *err)
{
    memset(result, 0, sizeof(*result));
    if (!kiln_proto_valid_id(job->execution_id))
        return kiln_error_set(err, -KILN_E_INVALID, "invalid execution id");
    size_t n = 0;
    while (job->documents && job->documents[n])
        n++;
    if (n == 0)
        return kiln_error_set(err, -KILN_E_INVALID, "a job needs at least one document");
    struct upload_doc *docs = kiln_new(struct upload_doc, n);
    int r = 0;
    _cleanup_json_ json_t *list = json_array();
    for (size_t i = 0; i < n && r == 0; i++) {
        const char *slash = strrchr(job->documents[i], '/');
        docs[i].name = kiln_strdup(slash ? slash + 1 : job->documents[i]);
        r = kiln_read_file(job->documents[i], MAX_UPLOAD_BYTES, &docs[i].data, &docs[i].len, err);
        if (r < 0)
            break;
        for (size_t k = 0; k < i; k++)
            if (kiln_streq(docs[k].name, docs[i].name))
                r = kiln_error_set(err, -KILN_E_INVALID, "two documents named %s", docs[i].name);
        kiln_hash_buf_hex(KILN_HASH_SHA256, docs[i].data, docs[i].len, docs[i].sha);
        json_array_append_new(list, json_pack("{s:s, s:I, s:s}", "name", docs[i].name, "size",
                                              (json_int_t)docs[i].len, "sha256", docs[i].sha));
    }
    if (r == 0)
        r = ensure_synced(c, err);
    uint32_t seq = next_seq(c);
    if (r == 0) {
        json_t *phases = json_array();
        for (size_t i = 0; job->phases && job->phases[i]; i++)
            json_array_append_new(phases, json_string(job->phases[i]));
        _cleanup_json_ json_t *req = json_pack(
            "{s:s, s:O, s:o, s:O}", "execution-id", job->execution_id, "documents", list, "phases",
            phases, "parameters", job->parameters ? job->parameters : json_null());
        r = send_json(c, KILN_MSG_RUN_JOB, seq, req, err);
    }
    for (size_t i = 0; i < n && r == 0; i++) {
        size_t off = 0;
        do {
            size_t len = docs[i].len - off;
            if (len > KILN_PROTO_CHUNK_SIZE)
                len = KILN_PROTO_CHUNK_SIZE;
            if (len == 0)
                break;
            _cleanup_buf_ struct kiln_buf b = {0};
            kiln_proto_encode_data(&b, seq, (uint32_t)i, off, docs[i].data + off, len);
            r = send_raw(c, &b, err);
            off += len;
        } while (r == 0 && off < docs[i].len);
    }
    for (size_t i = 0; i < n; i++) {
        free(docs[i].name);
        free(docs[i].data);
    }
    free(docs);
    if (r < 0)
        return r;
    return follow_job(c, seq, job->execution_id, cb, result, err);
}

int
kiln_agent_client_resume_job(struct kiln_agent_client *c, const char *execution_id,
                             const struct kiln_agent_client_callbacks *cb,
                             struct kiln_agent_job_result *result, struct kiln_error *err)
{
    memset(result, 0, sizeof(*result));
    if (!kiln_proto_valid_id(execution_id))
        return kiln_error_set(err, -KILN_E_INVALID, "invalid execution id");
    int r = ensure_synced(c, err);
    if (r < 0)
        return r;
    uint32_t seq = next_seq(c);
    _cleanup_json_ json_t *req = json_pack("{s:s}", "execution-id", execution_id);
    r = send_json(c, KILN_MSG_RESUME_JOB, seq, req, err);
    if (r < 0)
        return r;
    return follow_job(c, seq, execution_id, cb, result, err);
}

int
kiln_agent_client_poweroff(struct kiln_agent_client *c, struct kiln_error *err)
{
    int r = ensure_synced(c, err);
    if (r < 0)
        return r;
    uint32_t seq = next_seq(c);
    _cleanup_json_ json_t *req = json_object();
    r = send_json(c, KILN_MSG_POWEROFF, seq, req, err);
    if (r < 0)
        return r;
    return wait_reply(c, seq, KILN_MSG_ACK, "poweroff", NULL, err);
}

int
kiln_agent_client_wait_closed(struct kiln_agent_client *c, int timeout_ms, struct kiln_error *err)
{
    int64_t deadline = kiln_proto_now_ms() + timeout_ms;
    for (;;) {
        if (cancelled(c))
            return kiln_error_set(err, -ECANCELED, "cancelled while waiting for the guest to stop");
        int64_t slice = kiln_proto_now_ms() + SLICE_MS;
        int r = kiln_proto_read_some(c->fd, &c->dec, slice < deadline ? slice : deadline);
        if (r == 0 || r == -EPIPE || r == -ECONNRESET)
            return 0;
        if (r < 0 && r != -ETIMEDOUT && r != -EAGAIN)
            return kiln_error_errno(err, r, "cannot read from the agent");
        kiln_proto_decoder_reset(&c->dec); /* what a stopping guest says is not needed */
        if (kiln_proto_now_ms() >= deadline)
            return kiln_error_set(err, -ETIMEDOUT, "the agent's channel stayed open");
    }
}

/* --- fetch ----------------------------------------------------------------------------------- */

static bool
is_hex64(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

/* Check the whole list before anything is created. */
static int
check_file_list(const json_t *files, const struct kiln_agent_fetch_limits *lim,
                struct kiln_error *err)
{
    if (!json_is_array(files))
        return kiln_error_set(err, -KILN_E_PARSE, "file list is not a list");
    size_t n = json_array_size(files);
    if (n > lim->max_files)
        return kiln_error_set(err, -KILN_E_LIMIT, "agent offers %zu files (limit %u)", n,
                              lim->max_files);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(files, i);
        const char *name = kiln_json_get_str(e, "name");
        const char *type = kiln_json_get_str(e, "type");
        json_t *size = json_object_get(e, "size");
        if (!name)
            return kiln_error_set(err, -KILN_E_PARSE, "file %zu has no name", i);
        int r = kiln_proto_check_relpath(name, err);
        if (r < 0)
            return kiln_error_prefix(err, r, "file %zu", i);
        if (type && !kiln_streq(type, "file"))
            return kiln_error_set(err, -KILN_E_INVALID, "file %zu: only regular files are accepted",
                                  i);
        if (!json_is_integer(size) || json_integer_value(size) < 0 ||
            (uint64_t)json_integer_value(size) > lim->max_file_bytes)
            return kiln_error_set(err, -KILN_E_LIMIT, "%s: size missing or above %llu bytes", name,
                                  (unsigned long long)lim->max_file_bytes);
        total += (uint64_t)json_integer_value(size);
        if (total > lim->max_bytes)
            return kiln_error_set(err, -KILN_E_LIMIT, "agent offers more than %llu bytes",
                                  (unsigned long long)lim->max_bytes);
        if (!is_hex64(kiln_json_get_str(e, "sha256")))
            return kiln_error_set(err, -KILN_E_PARSE, "%s: no SHA-256", name);
        for (size_t k = 0; k < i; k++)
            if (kiln_streq(name, kiln_json_get_str(json_array_get(files, k), "name")))
                return kiln_error_set(err, -KILN_E_INVALID, "%s listed twice", name);
    }
    return 0;
}

/* Open (creating as needed) the parent folder of a checked relative name, one component at a
 * time from dirfd, refusing symbolic links; returns a descriptor and the last component. */
static int
open_parent(int dirfd, const char *name, const char **ret_leaf, struct kiln_error *err)
{
    int cur = dup(dirfd);
    if (cur < 0)
        return kiln_error_errno(err, -errno, "dup");
    const char *p = name;
    for (;;) {
        const char *slash = strchr(p, '/');
        if (!slash) {
            *ret_leaf = p;
            return cur;
        }
        char comp[KILN_PROTO_MAX_NAME + 1];
        size_t n = (size_t)(slash - p);
        memcpy(comp, p, n);
        comp[n] = '\0';
        if (mkdirat(cur, comp, 0755) < 0 && errno != EEXIST) {
            int e = errno;
            close(cur);
            return kiln_error_errno(err, -e, "%s: cannot create folder", name);
        }
        int next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        close(cur);
        if (next < 0)
            return kiln_error_errno(err, -e, "%s: not a plain folder", name);
        cur = next;
        p = slash + 1;
    }
}

int
kiln_agent_client_fetch_logs(struct kiln_agent_client *c, const char *execution_id,
                             const char *dest_dir, const struct kiln_agent_fetch_limits *limits,
                             struct kiln_error *err)
{
    struct kiln_agent_fetch_limits lim = {10000, 1ull << 30, 256ull << 20};
    if (limits) {
        if (limits->max_files)
            lim.max_files = limits->max_files;
        if (limits->max_bytes)
            lim.max_bytes = limits->max_bytes;
        if (limits->max_file_bytes)
            lim.max_file_bytes = limits->max_file_bytes;
    }
    if (!kiln_proto_valid_id(execution_id))
        return kiln_error_set(err, -KILN_E_INVALID, "invalid execution id");
    _cleanup_close_ int dirfd = open(dest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return kiln_error_errno(err, -errno, "%s", dest_dir);
    int r = ensure_synced(c, err);
    if (r < 0)
        return r;
    uint32_t seq = next_seq(c);
    _cleanup_json_ json_t *req = json_pack("{s:s}", "execution-id", execution_id);
    r = send_json(c, KILN_MSG_FETCH, seq, req, err);
    if (r < 0)
        return r;
    _cleanup_json_ json_t *reply = NULL;
    r = wait_reply(c, seq, KILN_MSG_FILE_LIST, "fetch", &reply, err);
    if (r < 0)
        return r;
    json_t *files = json_object_get(reply, "files");
    r = check_file_list(files, &lim, err);
    if (r < 0) {
        /* The agent is already streaming the rejected files: re-sync before the next request. */
        c->need_sync = true;
        return kiln_error_prefix(err, r, "fetch %s", execution_id);
    }

    for (size_t i = 0; i < json_array_size(files); i++) {
        const json_t *e = json_array_get(files, i);
        const char *name = kiln_json_get_str(e, "name");
        uint64_t size = (uint64_t)json_integer_value(json_object_get(e, "size"));
        const char *leaf = name;
        int parent = open_parent(dirfd, name, &leaf, err);
        if (parent < 0) {
            c->need_sync = true;
            return parent;
        }
        int fd = openat(parent, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
            r = kiln_error_errno(err, -errno, "%s: cannot create", name);
            close(parent);
            c->need_sync = true;
            return r;
        }
        struct kiln_hash *h = kiln_hash_new(KILN_HASH_SHA256);
        uint64_t got = 0;
        int64_t deadline = kiln_proto_now_ms() + c->opts.reply_timeout_ms;
        while (r == 0 && got < size) {
            _cleanup_frame_ struct kiln_proto_frame f = {0};
            r = recv_frame(c, deadline, &f, err);
            if (r == 0)
                r = silence_error(c, c->opts.reply_timeout_ms, err);
            if (r < 0)
                break;
            r = 0;
            if (f.seq != seq)
                continue;
            if (f.type == KILN_MSG_ERROR) {
                r = remote_error(&f, name, err);
                break;
            }
            uint32_t index;
            uint64_t off;
            const uint8_t *data;
            size_t len;
            r = kiln_proto_frame_data(&f, &index, &off, &data, &len, err);
            if (r == 0 && (index != i || off != got || len > size - got))
                r = kiln_error_set(err, -KILN_E_PARSE, "%s: chunk out of order or too long", name);
            for (size_t done = 0; r == 0 && done < len;) {
                ssize_t w = write(fd, data + done, len - done);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w < 0)
                    r = kiln_error_errno(err, -errno, "%s: write failed", name);
                else
                    done += (size_t)w;
            }
            if (r == 0) {
                kiln_hash_update(h, data, len);
                got += len;
                deadline = kiln_proto_now_ms() + c->opts.reply_timeout_ms;
            }
        }
        uint8_t md[KILN_HASH_MAX_SIZE];
        char hex[KILN_HASH_MAX_HEX];
        kiln_hash_final(h, md);
        kiln_hash_free(h);
        kiln_hex_encode(md, 32, hex);
        if (r == 0 && !kiln_streq(hex, kiln_json_get_str(e, "sha256")))
            r = kiln_error_set(err, -KILN_E_PARSE, "%s: SHA-256 mismatch", name);
        if (close(fd) < 0 && r == 0)
            r = kiln_error_errno(err, -errno, "%s: write failed", name);
        if (r < 0) {
            unlinkat(parent, leaf, 0);
            close(parent);
            c->need_sync = true;
            return kiln_error_prefix(err, r, "fetch %s", execution_id);
        }
        close(parent);
    }
    return 0;
}
