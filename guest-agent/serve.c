/* kiln-agent serve: the agent side of the host protocol. One poll loop owns the channel's input
 * (sync, ping, uploads, fetch, cancel, poweroff); the job runs in a worker thread whose events and
 * console output are written to the channel as they happen, under a lock. A prepare request runs
 * the ready command in a thread of its own. */
#include "guest-agent/serve.h"

#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/time.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/json.h"
#include "common/log.h"
#include "guest-agent/proc.h"
#include "guest-agent/proto.h"
#include "guest-agent/version.h"

#define DEFAULT_STATE_DIR "/var/lib/kiln-agent"
#define MAX_DOCUMENTS 64
#define MAX_DOCUMENT_BYTES (16u << 20)
#define MAX_FETCH_FILES 10000
#define WRITE_TIMEOUT_MS 10000
/* A partial frame that gets no new byte for this long is given up (the host re-syncs). */
#define STALE_PARTIAL_MS 1500
/* A sync's "time-ms" is believed between 2020-01-01 and 2200-01-01, and steps the clock when it
 * is further than this from the guest's. */
#define CLOCK_MIN_MS 1577836800000LL
#define CLOCK_MAX_MS 7258118400000LL
#define CLOCK_STEP_MIN_MS 1000

struct upload {
    bool active;
    uint32_t seq;
    json_t *record;
    size_t count, index;
    uint64_t received;
    int fd;
    struct kiln_hash *hash;
};

struct agent {
    const struct kiln_agent_serve_config *cfg;
    const char *state_dir;
    char boot_id[64];
    bool port; /* serving a virtio port: poweroff really powers off */

    pthread_mutex_t lock; /* guards fd writes and the job fields below */
    int fd;               /* the current connection, -1 between connections */
    bool write_broken;    /* a write failed on this connection: drop until the next */

    struct kiln_proto_decoder dec;
    struct upload up;

    bool running; /* the worker thread runs a job */
    bool joinable;
    pthread_t thread;
    volatile sig_atomic_t cancel;
    char *job_id;
    uint32_t job_seq;
    bool resume;
    int wake[2]; /* the workers signal the loop when the job or the prepare ends */

    /* The ready command runs once, under ready_lock, from the job thread or the prepare thread,
     * whichever asks first. ready is written under ready_lock and read atomically. */
    pthread_mutex_t ready_lock;
    bool ready;     /* the ready command ran (or there is none) */
    bool preparing; /* the prepare thread runs (under lock, as prepare_seq) */
    bool prepare_joinable;
    pthread_t prepare_thread;
    uint32_t prepare_seq; /* the prepare request the thread answers */
    volatile sig_atomic_t prepare_cancel;

    bool clock_stepped;
    int64_t clock_stepped_ms; /* the last step (host time minus guest time) */
};

static char *
job_dir(const struct agent *a, const char *id)
{
    _cleanup_free_ char *jobs = kiln_path_join(a->state_dir, "jobs");
    return kiln_path_join(jobs, id);
}

static int
save_record(const struct agent *a, const json_t *record, struct kiln_error *err)
{
    const char *id = kiln_json_get_str(record, "execution-id");
    _cleanup_free_ char *dir = job_dir(a, id);
    _cleanup_free_ char *path = kiln_path_join(dir, "job.json");
    _cleanup_free_ char *text = kiln_json_dumps(record, true);
    int r = kiln_write_file_atomic(path, text, strlen(text), 0600, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *cur = kiln_path_join(a->state_dir, "current-job");
    return kiln_write_file_atomic(cur, id, strlen(id), 0600, err);
}

static json_t *
load_record(const struct agent *a, const char *id)
{
    if (!kiln_proto_valid_id(id))
        return NULL;
    _cleanup_free_ char *dir = job_dir(a, id);
    _cleanup_free_ char *path = kiln_path_join(dir, "job.json");
    json_t *j = NULL;
    if (kiln_json_load_file(path, 1u << 20, &j, NULL) < 0)
        return NULL;
    return j;
}

static json_t *
load_current_record(const struct agent *a)
{
    _cleanup_free_ char *cur = kiln_path_join(a->state_dir, "current-job");
    _cleanup_free_ char *id = NULL;
    if (kiln_read_file(cur, 256, &id, NULL, NULL) < 0)
        return NULL;
    return load_record(a, id);
}

/* Write one frame to the current connection; failures only mark the connection broken (the
 * host re-syncs and asks again). Call with the lock held. */
static void
send_locked(struct agent *a, const struct kiln_buf *b)
{
    if (a->fd < 0 || a->write_broken)
        return;
    int r = kiln_proto_write_all(a->fd, b->data, b->len, kiln_proto_now_ms() + WRITE_TIMEOUT_MS);
    if (r < 0) {
        kiln_debug("kiln-agent: write failed: %s", kiln_strerror(r));
        a->write_broken = true;
    }
}

static void
send_json(struct agent *a, uint8_t type, uint16_t flags, uint32_t seq, const json_t *obj)
{
    _cleanup_buf_ struct kiln_buf b = {0};
    if (kiln_proto_encode_json(&b, type, flags, seq, obj) < 0) {
        _cleanup_json_ json_t *small =
            json_pack("{s:s, s:b}", "message", "message too large for one frame", "truncated", 1);
        kiln_buf_reset(&b);
        if (kiln_proto_encode_json(&b, type, flags, seq, small) < 0)
            return;
    }
    pthread_mutex_lock(&a->lock);
    send_locked(a, &b);
    pthread_mutex_unlock(&a->lock);
}

static void
reply_error(struct agent *a, uint32_t seq, const char *message)
{
    _cleanup_json_ json_t *j = json_pack("{s:s}", "message", message);
    send_json(a, KILN_MSG_ERROR, KILN_PROTO_FLAG_REPLY, seq, j);
}

static void
reply_ack(struct agent *a, uint32_t seq)
{
    _cleanup_json_ json_t *j = json_object();
    send_json(a, KILN_MSG_ACK, KILN_PROTO_FLAG_REPLY, seq, j);
}

static void
send_hello(struct agent *a, uint32_t seq, const char *nonce)
{
    _cleanup_json_ json_t *job = load_current_record(a);
    json_t *jobinfo = json_null();
    if (job) {
        const char *status = kiln_json_get_str(job, "status");
        pthread_mutex_lock(&a->lock);
        bool running = a->running && kiln_streq(a->job_id, kiln_json_get_str(job, "execution-id"));
        pthread_mutex_unlock(&a->lock);
        jobinfo = json_pack("{s:s?, s:s?}", "execution-id", kiln_json_get_str(job, "execution-id"),
                            "status", running ? "running" : status);
    }
    _cleanup_json_ json_t *j = json_pack(
        "{s:s, s:s, s:i, s:[s,s,s,s,s,s,s,s], s:s, s:I, s:I, s:o}", "agent", "kiln-agent",
        "version", kiln_agent_version(), "protocol", KILN_PROTO_VERSION, "capabilities", "run-job",
        "resume-job", "events", "console", "fetch", "cancel", "poweroff", "prepare", "boot-id",
        a->boot_id, "max-payload", (json_int_t)KILN_PROTO_MAX_PAYLOAD, "chunk-size",
        (json_int_t)KILN_PROTO_CHUNK_SIZE, "job", jobinfo);
    if (a->clock_stepped)
        json_object_set_new(j, "clock-stepped-ms", json_integer((json_int_t)a->clock_stepped_ms));
    if (nonce)
        json_object_set_new(j, "nonce", json_string(nonce));
    send_json(a, KILN_MSG_HELLO, seq ? KILN_PROTO_FLAG_REPLY : 0, seq, j);
}

/* Engine callbacks, on the worker thread. */
static void
on_event(void *userdata, const json_t *event)
{
    struct agent *a = userdata;
    send_json(a, KILN_MSG_EVENT, 0, __atomic_load_n(&a->job_seq, __ATOMIC_RELAXED), event);
}

static void
on_console(void *userdata, const char *stream, const char *data, size_t len)
{
    struct agent *a = userdata;
    uint8_t id = kiln_streq(stream, "stderr") ? 2 : 1;
    uint8_t tmp[1 + KILN_PROTO_CHUNK_SIZE];
    do {
        size_t n = len < KILN_PROTO_CHUNK_SIZE ? len : KILN_PROTO_CHUNK_SIZE;
        tmp[0] = id;
        memcpy(tmp + 1, data, n);
        _cleanup_buf_ struct kiln_buf b = {0};
        kiln_proto_encode(&b, KILN_MSG_CONSOLE, 0, __atomic_load_n(&a->job_seq, __ATOMIC_RELAXED),
                          tmp, n + 1);
        pthread_mutex_lock(&a->lock);
        send_locked(a, &b);
        pthread_mutex_unlock(&a->lock);
        data += n;
        len -= n;
    } while (len > 0);
}

/* Once, before the first job or on a prepare request, whichever comes first: the configured ready
 * command (on systemd guests, the wait for the network and the local file systems, as the jobs of
 * an Image Builder instance start after network-online.target). A second caller waits for the
 * first. Its trouble does not stop anything and it is not run again: with console set it goes to
 * the job's console, otherwise to *ret_failure. A cancelled run leaves it to the next caller:
 * -ECANCELED; 0 otherwise. */
static int
wait_ready(struct agent *a, volatile sig_atomic_t *cancel, bool console, char **ret_failure)
{
    pthread_mutex_lock(&a->ready_lock);
    if (a->ready) {
        pthread_mutex_unlock(&a->ready_lock);
        return 0;
    }
    int timeout = a->cfg->ready_timeout_seconds > 0 ? a->cfg->ready_timeout_seconds : 120;
    struct kiln_module_ctx ctx = {
        .phase_name = "ready",
        .step_name = "ready",
        .timeout_seconds = timeout,
        .cancel = cancel,
        .console = console ? on_console : NULL,
        .console_userdata = a,
    };
    struct kiln_proc_opts opts = {.argv = a->cfg->ready_argv, .capture_max = 4096};
    struct kiln_proc_result res = {0};
    struct kiln_error err = {0};
    int64_t start = kiln_proto_now_ms();
    int r = kiln_proc_run(&opts, &ctx, &res, &err);
    kiln_proc_result_clear(&res);
    if (r < 0 && r != -ECANCELED) {
        kiln_debug("kiln-agent: the ready command %s failed: %s", a->cfg->ready_argv[0],
                   err.message);
        if (console) {
            _cleanup_free_ char *msg = kiln_asprintf(
                "kiln-agent: the ready command %s failed, running the job anyway: %s\n",
                a->cfg->ready_argv[0], err.message);
            on_console(a, "stderr", msg, strlen(msg));
        }
        if (ret_failure)
            *ret_failure = kiln_asprintf("the ready command %s failed: %s", a->cfg->ready_argv[0],
                                         err.message);
    }
    kiln_debug("kiln-agent: ready command took %lld ms", (long long)(kiln_proto_now_ms() - start));
    __atomic_store_n(&a->ready, r != -ECANCELED, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&a->ready_lock);
    return r == -ECANCELED ? r : 0;
}

static const char *
status_name(enum kiln_run_status s)
{
    switch (s) {
    case KILN_RUN_SUCCESS:
        return "success";
    case KILN_RUN_SUCCESS_WITH_IGNORED_FAILURE:
        return "success-with-ignored-failure";
    case KILN_RUN_FAILED:
        return "failed";
    case KILN_RUN_REBOOT:
        return "reboot-required";
    case KILN_RUN_CANCELLED:
        return "cancelled";
    }
    return "failed";
}

static char **
strv_from_json(const json_t *arr, const char *prefix)
{
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    char **v = kiln_new(char *, n + 1);
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        v[i] = prefix ? kiln_path_join(prefix, s ? s : "") : kiln_strdup(s ? s : "");
    }
    return v;
}

static void *
job_thread(void *arg)
{
    struct agent *a = arg;
    _cleanup_json_ json_t *record = load_record(a, a->job_id);
    struct kiln_run_result res = {0};
    struct kiln_error err = {0};
    int r;

    _cleanup_free_ char *dir = job_dir(a, a->job_id);
    _cleanup_free_ char *docdir = kiln_path_join(dir, "documents");
    _cleanup_free_ char *logdir = kiln_path_join(dir, "logs");
    _cleanup_free_ char *enginedir = kiln_path_join(dir, "engine-state");
    _cleanup_strv_free_ char **docs = NULL;
    _cleanup_strv_free_ char **phases = NULL;
    if (!record) {
        r = kiln_error_set(&err, -ENOENT, "job %s: its record is gone", a->job_id);
    } else if (kiln_mkdir_p(logdir, 0700, &err) < 0 || kiln_mkdir_p(enginedir, 0700, &err) < 0) {
        r = err.code;
    } else {
        docs = strv_from_json(json_object_get(record, "documents"), docdir);
        json_t *ph = json_object_get(record, "phases");
        phases = json_array_size(ph) ? strv_from_json(ph, NULL) : NULL;
        struct kiln_engine_events events = {
            .event = on_event, .console = on_console, .userdata = a};
        struct kiln_run_options opts = {
            .documents = docs,
            .phases = phases,
            .parameters = json_object_get(record, "parameters"),
            .execution_id = a->job_id,
            .log_directory = logdir,
            .state_directory = enginedir,
            .events = &events,
            .cancel = &a->cancel,
        };
        int (*run)(const struct kiln_run_options *, struct kiln_run_result *, struct kiln_error *) =
            a->cfg->run ? a->cfg->run : kiln_engine_run;
        wait_ready(a, &a->cancel, true, NULL);
        r = run(&opts, &res, &err);
    }

    _cleanup_json_ json_t *msg = NULL;
    uint8_t type;
    const char *status;
    if (r < 0) {
        status = "failed";
        type = KILN_MSG_JOB_DONE;
    } else {
        status = status_name(res.status);
        type = res.status == KILN_RUN_REBOOT ? KILN_MSG_REBOOT_REQUIRED : KILN_MSG_JOB_DONE;
    }
    const char *failure = r < 0 ? err.message : res.failure;
    /* The log folder travels relative to the job's log directory, as fetch names it. */
    const char *folder = res.log_folder ? strrchr(res.log_folder, '/') : NULL;
    folder = folder ? folder + 1 : res.log_folder;
    msg = json_pack("{s:s, s:s, s:s?, s:s?}", "execution-id", a->job_id, "status", status,
                    "failure", failure, "log-folder", folder);
    if (r == 0)
        json_object_set_new(msg, "steps",
                            json_pack("{s:i, s:i, s:i}", "executed", res.executed, "failed",
                                      res.failed, "ignored", res.ignored));
    if (record) {
        json_object_set_new(
            record, "status",
            json_string(type == KILN_MSG_REBOOT_REQUIRED ? "reboot-pending" : "done"));
        json_object_set(record, "result", msg);
        struct kiln_error serr = {0};
        if (save_record(a, record, &serr) < 0)
            kiln_debug("kiln-agent: %s", serr.message);
    }
    kiln_run_result_clear(&res);

    /* The host may reset the guest as soon as it reads reboot-required: the job's state must be
     * on disk first. */
    if (type == KILN_MSG_REBOOT_REQUIRED)
        sync();
    pthread_mutex_lock(&a->lock);
    a->running = false;
    pthread_mutex_unlock(&a->lock);
    send_json(a, type, KILN_PROTO_FLAG_REPLY, __atomic_load_n(&a->job_seq, __ATOMIC_RELAXED), msg);
    ssize_t w = write(a->wake[1], "x", 1);
    (void)w;
    return NULL;
}

static void
join_job(struct agent *a)
{
    if (a->joinable) {
        pthread_join(a->thread, NULL);
        a->joinable = false;
    }
}

static void *
prepare_thread(void *arg)
{
    struct agent *a = arg;
    int64_t start = kiln_proto_now_ms();
    _cleanup_free_ char *failure = NULL;
    int r = wait_ready(a, &a->prepare_cancel, false, &failure);
    /* From here on a new prepare request starts a thread of its own (which finds the agent
     * ready): this one answers the last request that came while it ran. */
    pthread_mutex_lock(&a->lock);
    a->preparing = false;
    uint32_t seq = a->prepare_seq;
    pthread_mutex_unlock(&a->lock);
    if (r == -ECANCELED) {
        reply_error(a, seq, "prepare: cancelled");
    } else {
        _cleanup_json_ json_t *j =
            json_pack("{s:I, s:s?}", "ready-ms", (json_int_t)(kiln_proto_now_ms() - start),
                      "failure", failure);
        send_json(a, KILN_MSG_ACK, KILN_PROTO_FLAG_REPLY, seq, j);
    }
    ssize_t w = write(a->wake[1], "x", 1);
    (void)w;
    return NULL;
}

static void
join_prepare(struct agent *a)
{
    if (a->prepare_joinable) {
        pthread_join(a->prepare_thread, NULL);
        a->prepare_joinable = false;
    }
}

/* Run the ready command now (e.g. in a guest just restored from a snapshot) rather than before
 * the first job; it can take seconds, so a thread runs it and answers. */
static int
handle_prepare(struct agent *a, const struct kiln_proto_frame *f, struct kiln_error *err)
{
    if (__atomic_load_n(&a->ready, __ATOMIC_ACQUIRE)) {
        _cleanup_json_ json_t *j = json_pack("{s:i}", "ready-ms", 0);
        send_json(a, KILN_MSG_ACK, KILN_PROTO_FLAG_REPLY, f->seq, j);
        return 0;
    }
    pthread_mutex_lock(&a->lock);
    bool busy = a->preparing;
    a->prepare_seq = f->seq;
    pthread_mutex_unlock(&a->lock);
    /* Asked again (the host timed out or re-synced): the running thread answers this request. */
    if (busy)
        return 0;
    join_prepare(a);
    a->prepare_cancel = 0;
    pthread_mutex_lock(&a->lock);
    a->preparing = true;
    pthread_mutex_unlock(&a->lock);
    int r = pthread_create(&a->prepare_thread, NULL, prepare_thread, a);
    if (r != 0) {
        pthread_mutex_lock(&a->lock);
        a->preparing = false;
        pthread_mutex_unlock(&a->lock);
        return kiln_error_errno(err, -r, "cannot start the prepare thread");
    }
    a->prepare_joinable = true;
    return 0;
}

/* Cancel and wait for the job and the prepare (before a poweroff or when the agent stops). */
static void
stop_workers(struct agent *a)
{
    a->cancel = 1;
    a->prepare_cancel = 1;
    join_prepare(a);
    join_job(a);
}

/* With --sync-clock: step the clock to the host's "time-ms" when the two differ by more than a
 * second (a guest restored from a snapshot wakes with the time it was saved at). */
static void
sync_clock(struct agent *a, const json_t *req)
{
    json_t *t = json_object_get(req, "time-ms");
    if (!a->cfg->sync_clock || !t)
        return;
    if (!json_is_integer(t) || json_integer_value(t) < CLOCK_MIN_MS ||
        json_integer_value(t) >= CLOCK_MAX_MS) {
        kiln_debug("kiln-agent: sync: implausible time-ms ignored");
        return;
    }
    int64_t host = json_integer_value(t);
    int64_t diff = host - kiln_realtime_ms();
    if (diff >= -CLOCK_STEP_MIN_MS && diff <= CLOCK_STEP_MIN_MS)
        return;
    struct timespec ts = {.tv_sec = host / 1000, .tv_nsec = (host % 1000) * 1000000};
    int r;
    if (a->cfg->set_clock)
        r = a->cfg->set_clock(&ts, a->cfg->set_clock_userdata);
    else
        r = clock_settime(CLOCK_REALTIME, &ts) < 0 ? -errno : 0;
    if (r < 0) {
        kiln_debug("kiln-agent: cannot step the clock by %+lld ms: %s", (long long)diff,
                   kiln_strerror(r));
        return;
    }
    a->clock_stepped = true;
    a->clock_stepped_ms = diff;
    kiln_debug("kiln-agent: clock stepped by %+lld ms to the host's time", (long long)diff);
}

static int
start_job(struct agent *a, const char *id, uint32_t seq, struct kiln_error *err)
{
    join_job(a);
    free(a->job_id);
    a->job_id = kiln_strdup(id);
    a->job_seq = seq;
    a->cancel = 0;
    a->running = true;
    int r = pthread_create(&a->thread, NULL, job_thread, a);
    if (r != 0) {
        a->running = false;
        return kiln_error_errno(err, -r, "cannot start the job thread");
    }
    a->joinable = true;
    return 0;
}

static void
upload_clear(struct upload *u)
{
    json_decref(u->record);
    if (u->fd >= 0)
        close(u->fd);
    kiln_hash_free(u->hash);
    memset(u, 0, sizeof(*u));
    u->fd = -1;
}

static const json_t *
upload_doc(const struct upload *u, size_t i)
{
    return json_array_get(json_object_get(u->record, "document-files"), i);
}

/* Open the next non-empty document, or start the job once every document arrived. */
static int
upload_advance(struct agent *a, struct kiln_error *err)
{
    struct upload *u = &a->up;
    /* A copy: the record goes away with the upload, before the job starts. */
    _cleanup_free_ char *id = kiln_strdup(kiln_json_get_str(u->record, "execution-id"));
    _cleanup_free_ char *dir = job_dir(a, id);
    _cleanup_free_ char *docdir = kiln_path_join(dir, "documents");
    for (;;) {
        if (u->fd >= 0) {
            if (u->received <
                (uint64_t)json_integer_value(json_object_get(upload_doc(u, u->index), "size")))
                return 0;
            uint8_t md[KILN_HASH_MAX_SIZE];
            char hex[KILN_HASH_MAX_HEX];
            kiln_hash_final(u->hash, md);
            kiln_hex_encode(md, 32, hex);
            kiln_hash_free(u->hash);
            u->hash = NULL;
            int fd = TAKE_FD(u->fd);
            if (fsync(fd) < 0 || close(fd) < 0)
                return kiln_error_errno(err, -errno, "document %zu: write failed", u->index);
            const char *want = kiln_json_get_str(upload_doc(u, u->index), "sha256");
            if (!kiln_streq(hex, want))
                return kiln_error_set(err, -KILN_E_PARSE, "document %s: SHA-256 mismatch",
                                      kiln_json_get_str(upload_doc(u, u->index), "name"));
            u->index++;
        }
        if (u->index >= u->count)
            break;
        const json_t *d = upload_doc(u, u->index);
        _cleanup_free_ char *path = kiln_path_join(docdir, kiln_json_get_str(d, "name"));
        u->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (u->fd < 0)
            return kiln_error_errno(err, -errno, "%s", path);
        u->hash = kiln_hash_new(KILN_HASH_SHA256);
        u->received = 0;
    }
    /* Every document is in place: persist the job, then run it. */
    json_t *names = json_array();
    for (size_t i = 0; i < u->count; i++)
        json_array_append_new(names, json_string(kiln_json_get_str(upload_doc(u, i), "name")));
    json_object_set_new(u->record, "documents", names);
    json_object_del(u->record, "document-files");
    json_object_set_new(u->record, "status", json_string("running"));
    int r = save_record(a, u->record, err);
    if (r < 0)
        return r;
    uint32_t seq = u->seq;
    upload_clear(u);
    r = start_job(a, id, seq, err);
    if (r < 0)
        return r;
    _cleanup_json_ json_t *j = json_pack("{s:s}", "execution-id", id);
    send_json(a, KILN_MSG_JOB_STARTED, KILN_PROTO_FLAG_REPLY, seq, j);
    return 0;
}

static int
handle_run_job(struct agent *a, const struct kiln_proto_frame *f, struct kiln_error *err)
{
    _cleanup_json_ json_t *req = NULL;
    int r = kiln_proto_frame_json(f, &req, err);
    if (r < 0)
        return r;
    if (a->running || a->up.active)
        return kiln_error_set(err, -EBUSY, "a job is already running");
    const char *id = kiln_json_get_str(req, "execution-id");
    if (!kiln_proto_valid_id(id))
        return kiln_error_set(err, -KILN_E_INVALID, "run-job: invalid execution-id");
    json_t *docs = json_object_get(req, "documents");
    json_t *phases = json_object_get(req, "phases");
    json_t *params = json_object_get(req, "parameters");
    if (!json_is_array(docs) || json_array_size(docs) == 0 || json_array_size(docs) > MAX_DOCUMENTS)
        return kiln_error_set(err, -KILN_E_INVALID, "run-job: 1 to %d documents expected",
                              MAX_DOCUMENTS);
    if (phases && !json_is_null(phases) && !json_is_array(phases))
        return kiln_error_set(err, -KILN_E_INVALID, "run-job: phases must be a list");
    for (size_t i = 0; i < json_array_size(phases); i++)
        if (!json_is_string(json_array_get(phases, i)))
            return kiln_error_set(err, -KILN_E_INVALID, "run-job: phases must be strings");
    if (params && !json_is_null(params) && !json_is_object(params))
        return kiln_error_set(err, -KILN_E_INVALID, "run-job: parameters must be an object");
    for (size_t i = 0; i < json_array_size(docs); i++) {
        json_t *d = json_array_get(docs, i);
        const char *name = kiln_json_get_str(d, "name");
        json_t *size = json_object_get(d, "size");
        if (!name || kiln_proto_check_relpath(name, err) < 0 || strchr(name, '/'))
            return kiln_error_set(err, -KILN_E_INVALID, "run-job: document %zu: bad name", i);
        for (size_t k = 0; k < i; k++)
            if (kiln_streq(name, kiln_json_get_str(json_array_get(docs, k), "name")))
                return kiln_error_set(err, -KILN_E_INVALID, "run-job: document %s twice", name);
        if (!json_is_integer(size) || json_integer_value(size) < 0 ||
            json_integer_value(size) > MAX_DOCUMENT_BYTES)
            return kiln_error_set(err, -KILN_E_LIMIT, "run-job: document %s: bad size", name);
        const char *sha = kiln_json_get_str(d, "sha256");
        if (!sha || strlen(sha) != 64)
            return kiln_error_set(err, -KILN_E_INVALID, "run-job: document %s: no sha256", name);
    }

    /* A new run of an execution id replaces what an earlier run left. */
    _cleanup_free_ char *dir = job_dir(a, id);
    _cleanup_free_ char *docdir = kiln_path_join(dir, "documents");
    r = kiln_rm_rf(dir, err);
    if (r < 0)
        return r;
    r = kiln_mkdir_p(docdir, 0700, err);
    if (r < 0)
        return r;

    upload_clear(&a->up);
    a->up.active = true;
    a->up.seq = f->seq;
    a->up.count = json_array_size(docs);
    a->up.record = json_pack("{s:s, s:O, s:O, s:O, s:s}", "execution-id", id, "document-files",
                             docs, "phases", phases ? phases : json_null(), "parameters",
                             params ? params : json_null(), "status", "uploading");
    r = upload_advance(a, err);
    if (r < 0)
        upload_clear(&a->up);
    return r;
}

static int
handle_file_data(struct agent *a, const struct kiln_proto_frame *f, struct kiln_error *err)
{
    struct upload *u = &a->up;
    if (!u->active || u->fd < 0)
        return kiln_error_set(err, -KILN_E_INVALID, "file-data without an upload");
    uint32_t index;
    uint64_t offset;
    const uint8_t *data;
    size_t len;
    int r = kiln_proto_frame_data(f, &index, &offset, &data, &len, err);
    if (r < 0)
        return r;
    uint64_t size = (uint64_t)json_integer_value(json_object_get(upload_doc(u, u->index), "size"));
    if (index != u->index || offset != u->received || len > size - u->received)
        return kiln_error_set(err, -KILN_E_INVALID, "file-data out of order or beyond the size");
    for (size_t done = 0; done < len;) {
        ssize_t n = write(u->fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return kiln_error_errno(err, -errno, "document write failed");
        done += (size_t)n;
    }
    kiln_hash_update(u->hash, data, len);
    u->received += len;
    return upload_advance(a, err);
}

static int
handle_resume(struct agent *a, const struct kiln_proto_frame *f, struct kiln_error *err)
{
    _cleanup_json_ json_t *req = NULL;
    int r = kiln_proto_frame_json(f, &req, err);
    if (r < 0)
        return r;
    const char *id = kiln_json_get_str(req, "execution-id");
    if (!kiln_proto_valid_id(id))
        return kiln_error_set(err, -KILN_E_INVALID, "resume-job: invalid execution-id");
    if (a->running) {
        if (!kiln_streq(a->job_id, id))
            return kiln_error_set(err, -EBUSY, "another job is running");
        /* Already running (the host reconnected): stream to the new request. */
        __atomic_store_n(&a->job_seq, f->seq, __ATOMIC_RELAXED);
        _cleanup_json_ json_t *j = json_pack("{s:s}", "execution-id", id);
        send_json(a, KILN_MSG_JOB_STARTED, KILN_PROTO_FLAG_REPLY, f->seq, j);
        return 0;
    }
    _cleanup_json_ json_t *record = load_record(a, id);
    if (!record)
        return kiln_error_set(err, -ENOENT, "resume-job: no job %s", id);
    const char *status = kiln_json_get_str(record, "status");
    /* attach: the host lost track of the stream and only wants to hear how the job stands. */
    if (json_is_true(json_object_get(req, "attach")) && kiln_streq(status, "reboot-pending")) {
        send_json(a, KILN_MSG_REBOOT_REQUIRED, KILN_PROTO_FLAG_REPLY, f->seq,
                  json_object_get(record, "result"));
        return 0;
    }
    if (json_is_true(json_object_get(req, "attach")) && !kiln_streq(status, "done"))
        return kiln_error_set(err, -KILN_E_INVALID,
                              "resume-job: job %s is not running (did the guest restart?)", id);
    if (kiln_streq(status, "done")) {
        /* The host missed the end: tell it again. */
        send_json(a, KILN_MSG_JOB_DONE, KILN_PROTO_FLAG_REPLY, f->seq,
                  json_object_get(record, "result"));
        return 0;
    }
    if (!kiln_streq(status, "reboot-pending") && !kiln_streq(status, "running"))
        return kiln_error_set(err, -KILN_E_INVALID, "resume-job: job %s is %s", id,
                              status ? status : "unknown");
    /* "running" with no thread: the guest restarted under a running job; the engine resumes from
     * its persisted state. */
    json_object_set_new(record, "status", json_string("running"));
    r = save_record(a, record, err);
    if (r < 0)
        return r;
    r = start_job(a, id, f->seq, err);
    if (r < 0)
        return r;
    _cleanup_json_ json_t *j = json_pack("{s:s}", "execution-id", id);
    send_json(a, KILN_MSG_JOB_STARTED, KILN_PROTO_FLAG_REPLY, f->seq, j);
    return 0;
}

/* Collect the regular files of a tree (relative names); symlinks and special files stay out. */
static int
list_tree(const char *root, const char *rel, int depth, json_t *files, struct kiln_error *err)
{
    _cleanup_free_ char *dir = rel ? kiln_path_join(root, rel) : kiln_strdup(root);
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT && !rel ? 0 : kiln_error_errno(err, -errno, "%s", dir);
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        if (kiln_streq(de->d_name, ".") || kiln_streq(de->d_name, ".."))
            continue;
        _cleanup_free_ char *name = rel ? kiln_path_join(rel, de->d_name) : kiln_strdup(de->d_name);
        _cleanup_free_ char *full = kiln_path_join(root, name);
        struct stat st;
        if (lstat(full, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth + 1 < KILN_PROTO_MAX_DEPTH) {
            r = list_tree(root, name, depth + 1, files, err);
        } else if (S_ISREG(st.st_mode)) {
            if (json_array_size(files) >= MAX_FETCH_FILES) {
                r = kiln_error_set(err, -KILN_E_LIMIT, "more than %d files", MAX_FETCH_FILES);
                break;
            }
            char hex[KILN_HASH_MAX_HEX];
            r = kiln_hash_file_hex(KILN_HASH_SHA256, full, hex, err);
            if (r == 0)
                json_array_append_new(files, json_pack("{s:s, s:I, s:s}", "name", name, "size",
                                                       (json_int_t)st.st_size, "sha256", hex));
        }
    }
    closedir(d);
    return r;
}

static int
send_file(struct agent *a, uint32_t seq, uint32_t index, const char *path, uint64_t size,
          struct kiln_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return kiln_error_errno(err, -errno, "%s", path);
    uint64_t off = 0;
    uint8_t chunk[KILN_PROTO_CHUNK_SIZE];
    while (off < size) {
        size_t want = size - off < sizeof(chunk) ? (size_t)(size - off) : sizeof(chunk);
        ssize_t n = read(fd, chunk, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return kiln_error_errno(err, -errno, "%s", path);
        if (n == 0)
            return kiln_error_set(err, -EIO, "%s: shrank while being sent", path);
        _cleanup_buf_ struct kiln_buf b = {0};
        kiln_proto_encode_data(&b, seq, index, off, chunk, (size_t)n);
        pthread_mutex_lock(&a->lock);
        send_locked(a, &b);
        bool broken = a->write_broken;
        pthread_mutex_unlock(&a->lock);
        if (broken)
            return kiln_error_set(err, -EPIPE, "the host went away");
        off += (uint64_t)n;
    }
    return 0;
}

static int
handle_fetch(struct agent *a, const struct kiln_proto_frame *f, struct kiln_error *err)
{
    _cleanup_json_ json_t *req = NULL;
    int r = kiln_proto_frame_json(f, &req, err);
    if (r < 0)
        return r;
    const char *id = kiln_json_get_str(req, "execution-id");
    if (!kiln_proto_valid_id(id))
        return kiln_error_set(err, -KILN_E_INVALID, "fetch: invalid execution-id");
    if (a->running && kiln_streq(a->job_id, id))
        return kiln_error_set(err, -EBUSY, "fetch: job %s is still running", id);
    _cleanup_free_ char *dir = job_dir(a, id);
    _cleanup_free_ char *logdir = kiln_path_join(dir, "logs");
    struct stat st;
    if (stat(dir, &st) < 0)
        return kiln_error_set(err, -ENOENT, "fetch: no job %s", id);
    _cleanup_json_ json_t *files = json_array();
    r = list_tree(logdir, NULL, 0, files, err);
    if (r < 0)
        return r;
    _cleanup_json_ json_t *list = json_pack("{s:O}", "files", files);
    send_json(a, KILN_MSG_FILE_LIST, KILN_PROTO_FLAG_REPLY, f->seq, list);
    for (size_t i = 0; i < json_array_size(files); i++) {
        json_t *e = json_array_get(files, i);
        _cleanup_free_ char *path = kiln_path_join(logdir, kiln_json_get_str(e, "name"));
        r = send_file(a, f->seq, (uint32_t)i, path,
                      (uint64_t)json_integer_value(json_object_get(e, "size")), err);
        if (r < 0)
            return r;
    }
    return 0;
}

static void
do_poweroff(struct agent *a)
{
    sync();
    if (a->cfg->poweroff) {
        a->cfg->poweroff(a->cfg->poweroff_userdata);
        return;
    }
    if (a->port) {
        reboot(RB_POWER_OFF);
        kiln_warn("kiln-agent: power off failed: %s", strerror(errno));
    }
}

/* Returns 1 when the loop should end (poweroff), 0 otherwise. */
static int
handle_frame(struct agent *a, const struct kiln_proto_frame *f)
{
    struct kiln_error err = {0};
    int r = 0;
    kiln_debug("kiln-agent: %s seq %u (%u bytes)", kiln_proto_type_name(f->type), f->seq, f->len);
    if (a->up.active && f->type != KILN_MSG_FILE_DATA && f->type != KILN_MSG_SYNC &&
        f->type != KILN_MSG_PING) {
        /* The host gave up on the upload. */
        reply_error(a, a->up.seq, "upload interrupted");
        upload_clear(&a->up);
    }
    switch (f->type) {
    case KILN_MSG_SYNC: {
        _cleanup_json_ json_t *req = NULL;
        const char *nonce = NULL;
        if (kiln_proto_frame_json(f, &req, NULL) == 0)
            nonce = kiln_json_get_str(req, "nonce");
        char *end = NULL;
        uint64_t n = nonce ? strtoull(nonce, &end, 16) : 0;
        if (!nonce || !end || *end || strlen(nonce) != 16)
            break;
        sync_clock(a, req);
        _cleanup_buf_ struct kiln_buf b = {0};
        kiln_proto_encode_sync_reply(&b, n);
        pthread_mutex_lock(&a->lock);
        a->write_broken = false;
        send_locked(a, &b);
        pthread_mutex_unlock(&a->lock);
        send_hello(a, f->seq, nonce);
        break;
    }
    case KILN_MSG_PING: {
        _cleanup_json_ json_t *j = json_object();
        send_json(a, KILN_MSG_PONG, KILN_PROTO_FLAG_REPLY, f->seq, j);
        break;
    }
    case KILN_MSG_RUN_JOB:
        r = handle_run_job(a, f, &err);
        if (r < 0)
            reply_error(a, f->seq, err.message);
        break;
    case KILN_MSG_FILE_DATA:
        /* Chunks of an upload that already failed: the error was sent once, drop the rest
         * (answering each would fill the channel while the host is still writing). */
        if (!a->up.active)
            break;
        r = handle_file_data(a, f, &err);
        if (r < 0) {
            reply_error(a, a->up.active ? a->up.seq : f->seq, err.message);
            upload_clear(&a->up);
        }
        break;
    case KILN_MSG_RESUME_JOB:
        r = handle_resume(a, f, &err);
        if (r < 0)
            reply_error(a, f->seq, err.message);
        break;
    case KILN_MSG_FETCH:
        r = handle_fetch(a, f, &err);
        if (r < 0)
            reply_error(a, f->seq, err.message);
        break;
    case KILN_MSG_PREPARE:
        r = handle_prepare(a, f, &err);
        if (r < 0)
            reply_error(a, f->seq, err.message);
        break;
    case KILN_MSG_CANCEL:
        a->cancel = 1;
        a->prepare_cancel = 1;
        reply_ack(a, f->seq);
        break;
    case KILN_MSG_POWEROFF:
        reply_ack(a, f->seq);
        stop_workers(a);
        do_poweroff(a);
        return 1;
    default:
        reply_error(a, f->seq, "unexpected message");
        break;
    }
    return 0;
}

static bool
stopping(const struct agent *a)
{
    return a->cfg->stop && *a->cfg->stop;
}

/* Serve one connection: 0 at end of file or hang-up, 1 after poweroff, 2 when stopped. */
static int
serve_conn(struct agent *a, int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    pthread_mutex_lock(&a->lock);
    a->fd = fd;
    a->write_broken = false;
    pthread_mutex_unlock(&a->lock);
    kiln_proto_decoder_reset(&a->dec);
    upload_clear(&a->up);
    send_hello(a, 0, NULL);

    int result = 0;
    int64_t last_byte = kiln_proto_now_ms();
    for (;;) {
        if (stopping(a)) {
            result = 2;
            break;
        }
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = a->wake[0], .events = POLLIN}};
        int n = poll(p, 2, 500);
        if (n < 0 && errno != EINTR)
            break;
        if (n <= 0) {
            if (kiln_proto_decoder_partial(&a->dec) &&
                kiln_proto_now_ms() - last_byte > STALE_PARTIAL_MS)
                kiln_proto_decoder_drop_partial(&a->dec);
            continue;
        }
        if (p[1].revents & POLLIN) {
            char tmp[16];
            ssize_t r = read(a->wake[0], tmp, sizeof(tmp));
            (void)r;
            pthread_mutex_lock(&a->lock);
            bool done = !a->running, prepared = !a->preparing;
            pthread_mutex_unlock(&a->lock);
            if (done)
                join_job(a);
            if (prepared)
                join_prepare(a);
        }
        if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        int r = kiln_proto_read_some(fd, &a->dec, kiln_proto_now_ms());
        if (r == -ETIMEDOUT || r == -EAGAIN)
            continue;
        if (r <= 0)
            break;
        last_byte = kiln_proto_now_ms();
        for (;;) {
            _cleanup_frame_ struct kiln_proto_frame f = {0};
            struct kiln_error err = {0};
            int k = kiln_proto_decoder_next(&a->dec, &f, &err);
            if (k == 0)
                break;
            if (k < 0) {
                kiln_debug("kiln-agent: dropped a frame: %s", err.message);
                continue;
            }
            if (handle_frame(a, &f) == 1) {
                result = 1;
                goto out;
            }
        }
    }
out:
    pthread_mutex_lock(&a->lock);
    a->fd = -1;
    pthread_mutex_unlock(&a->lock);
    upload_clear(&a->up);
    return result;
}

static void
read_boot_id(struct agent *a)
{
    if (a->cfg->boot_id) {
        snprintf(a->boot_id, sizeof(a->boot_id), "%s", a->cfg->boot_id);
        return;
    }
    _cleanup_free_ char *s = NULL;
    if (kiln_read_file("/proc/sys/kernel/random/boot_id", 128, &s, NULL, NULL) == 0) {
        s[strcspn(s, "\n")] = '\0';
        snprintf(a->boot_id, sizeof(a->boot_id), "%s", s);
    } else {
        snprintf(a->boot_id, sizeof(a->boot_id), "unknown");
    }
}

static int
agent_init(struct agent *a, const struct kiln_agent_serve_config *cfg, struct kiln_error *err)
{
    memset(a, 0, sizeof(*a));
    a->cfg = cfg;
    a->fd = -1;
    a->up.fd = -1;
    a->state_dir = cfg->state_directory ? cfg->state_directory : DEFAULT_STATE_DIR;
    pthread_mutex_init(&a->lock, NULL);
    pthread_mutex_init(&a->ready_lock, NULL);
    a->ready = !cfg->ready_argv;
    kiln_proto_decoder_init(&a->dec, KILN_PROTO_MAX_PAYLOAD);
    read_boot_id(a);
    if (pipe2(a->wake, O_CLOEXEC | O_NONBLOCK) < 0)
        return kiln_error_errno(err, -errno, "pipe");
    _cleanup_free_ char *jobs = kiln_path_join(a->state_dir, "jobs");
    return kiln_mkdir_p(jobs, 0700, err);
}

static void
agent_clear(struct agent *a)
{
    stop_workers(a);
    upload_clear(&a->up);
    kiln_proto_decoder_clear(&a->dec);
    free(a->job_id);
    if (a->wake[0] > 0) {
        close(a->wake[0]);
        close(a->wake[1]);
    }
    pthread_mutex_destroy(&a->lock);
    pthread_mutex_destroy(&a->ready_lock);
}

int
kiln_agent_serve_fd(int fd, const struct kiln_agent_serve_config *cfg, struct kiln_error *err)
{
    /* A descriptor that is not open would poll as POLLNVAL for ever. */
    if (fcntl(fd, F_GETFD) < 0)
        return kiln_error_errno(err, -errno, "file descriptor %d", fd);
    struct agent a;
    int r = agent_init(&a, cfg, err);
    if (r == 0)
        r = serve_conn(&a, fd) == 1 ? 1 : 0;
    agent_clear(&a);
    return r;
}

int
kiln_agent_serve_socket(const char *path, const struct kiln_agent_serve_config *cfg,
                        struct kiln_error *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return kiln_error_set(err, -ENAMETOOLONG, "%s: socket path too long", path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    _cleanup_close_ int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0)
        return kiln_error_errno(err, -errno, "socket");
    unlink(path);
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 1) < 0)
        return kiln_error_errno(err, -errno, "%s", path);

    struct agent a;
    int r = agent_init(&a, cfg, err);
    while (r == 0) {
        struct pollfd p = {.fd = ls, .events = POLLIN};
        if (stopping(&a))
            break;
        if (poll(&p, 1, 500) <= 0)
            continue;
        int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        int k = serve_conn(&a, c);
        close(c);
        if (k == 1)
            r = 1;
        else if (k == 2)
            break;
    }
    agent_clear(&a);
    unlink(path);
    return r;
}

int
kiln_agent_serve_port(const char *path, const struct kiln_agent_serve_config *cfg,
                      struct kiln_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return kiln_error_errno(err, -errno, "%s", path);
    /* A serial line (hvc/ttyS, or a pty in tests) must pass bytes untouched: no echo, no line
     * editing, no CR/LF translation. A virtio port is not a tty and is left alone. */
    if (isatty(fd)) {
        struct termios tio;
        if (tcgetattr(fd, &tio) == 0) {
            cfmakeraw(&tio);
            tcsetattr(fd, TCSANOW, &tio);
        }
    }
    struct agent a;
    int r = agent_init(&a, cfg, err);
    a.port = true;
    while (r == 0 && !stopping(&a)) {
        /* While the host side is closed the port reports POLLHUP: wait, as qemu-ga does. */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 0) >= 0 && (p.revents & POLLHUP) && !(p.revents & POLLIN)) {
            usleep(500 * 1000);
            continue;
        }
        int k = serve_conn(&a, fd);
        if (k == 1)
            r = 1;
        else if (k == 2)
            break;
        else
            usleep(200 * 1000);
    }
    agent_clear(&a);
    return r;
}

static volatile sig_atomic_t stop_flag;

static void
on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void
usage(FILE *out)
{
    fprintf(out,
            "Usage: kiln-agent serve (--port DEVICE | --socket PATH | --fd N) [--state-dir DIR]\n"
            "                        [--ready-command 'SHELL COMMAND'] [--sync-clock]\n"
            "Serve the host protocol on a virtio-serial port (e.g.\n"
            "/dev/virtio-ports/org.kiln.agent.0), a listening unix socket, or an inherited fd.\n"
            "--ready-command runs once, on the host's prepare request or else before the first\n"
            "job (e.g. 'systemctl start network-online.target'); its output goes to that job's\n"
            "console.\n"
            "--sync-clock sets the system clock to the host's time when a sync carries one that\n"
            "differs by more than 1 s (a guest restored from a snapshot).\n");
}

int
kiln_agent_serve_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'}, {"socket", required_argument, NULL, 's'},
        {"fd", required_argument, NULL, 'f'},   {"state-dir", required_argument, NULL, 'd'},
        {"ready-command", required_argument, NULL, 'r'},
        {"sync-clock", no_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    const char *port = NULL, *sock = NULL, *state = NULL, *ready = NULL;
    bool sync_clock = false;
    long fdnum = -1;
    int c;
    kiln_log_init_from_env();
    optind = 1;
    while ((c = getopt_long(argc, argv, "p:s:f:d:r:ch", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            port = optarg;
            break;
        case 's':
            sock = optarg;
            break;
        case 'f': {
            char *end = NULL;
            errno = 0;
            fdnum = strtol(optarg, &end, 10);
            if (errno || !end || *end || fdnum < 0 || fdnum > 65535) {
                fprintf(stderr, "kiln-agent serve: bad --fd %s\n", optarg);
                return 2;
            }
            break;
        }
        case 'd':
            state = optarg;
            break;
        case 'r':
            ready = optarg;
            break;
        case 'c':
            sync_clock = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if ((port != NULL) + (sock != NULL) + (fdnum >= 0) != 1 || optind != argc) {
        usage(stderr);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    char *ready_argv[] = {"/bin/sh", "-c", (char *)ready, NULL};
    struct kiln_agent_serve_config cfg = {.state_directory = state,
                                          .stop = &stop_flag,
                                          .ready_argv = ready ? ready_argv : NULL,
                                          .sync_clock = sync_clock};
    struct kiln_error err = {0};
    int r;
    if (port)
        r = kiln_agent_serve_port(port, &cfg, &err);
    else if (sock)
        r = kiln_agent_serve_socket(sock, &cfg, &err);
    else
        r = kiln_agent_serve_fd((int)fdnum, &cfg, &err);
    if (r < 0) {
        fprintf(stderr, "kiln-agent serve: %s\n", err.message);
        return 1;
    }
    return 0;
}
