/* The host agent client against the real agent serve loop (over a socketpair or a unix socket,
 * no VM), and against a hostile agent that sends junk, oversized frames, bad checksums and
 * malicious file lists. The job runner here is a scripted stand-in for the engine that exercises
 * the protocol (events, console, reboot, cancel, logs); drivers-agent-client-job-test.c runs
 * real documents through the engine. The clock tests talk raw frames to the real agent, whose
 * clock hook records instead of setting the machine's clock. */
#include "kiln-test.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/json.h"
#include "common/time.h"
#include "drivers/agent-client.h"
#include "guest-agent/proto.h"
#include "guest-agent/serve.h"

/* --- the real agent in a thread --------------------------------------------------------------- */

struct agent_thread {
    pthread_t thread;
    int fd;
    const char *socket_path;
    struct kiln_agent_serve_config cfg;
    int result;
    int poweroffs;
    volatile sig_atomic_t stop;
};

static void
count_poweroff(void *userdata)
{
    struct agent_thread *t = userdata;
    t->poweroffs++;
}

static void *
agent_main(void *arg)
{
    struct agent_thread *t = arg;
    struct kiln_error err = {0};
    if (t->socket_path) {
        usleep(300 * 1000); /* the host starts first and must wait for the socket */
        t->result = kiln_agent_serve_socket(t->socket_path, &t->cfg, &err);
    } else {
        t->result = kiln_agent_serve_fd(t->fd, &t->cfg, &err);
        close(t->fd);
    }
    if (t->result < 0)
        fprintf(stderr, "agent: %s\n", err.message);
    return NULL;
}

static void
agent_start(struct agent_thread *t, const char *state_dir, const char *boot_id,
            int (*run)(const struct kiln_run_options *, struct kiln_run_result *,
                       struct kiln_error *))
{
    t->cfg.state_directory = state_dir;
    t->cfg.boot_id = boot_id;
    t->cfg.poweroff = count_poweroff;
    t->cfg.poweroff_userdata = t;
    t->cfg.run = run;
    t->cfg.stop = &t->stop;
    assert_int_equal(pthread_create(&t->thread, NULL, agent_main, t), 0);
}

/* A connected pair: the agent serves one end in a thread, the client gets the other. */
static int
agent_pair(struct agent_thread *t, const char *state_dir, const char *boot_id,
           int (*run)(const struct kiln_run_options *, struct kiln_run_result *,
                      struct kiln_error *))
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    t->fd = sv[1];
    agent_start(t, state_dir, boot_id, run);
    return sv[0];
}

static const struct kiln_agent_client_options fast = {
    .connect_timeout_ms = 10000, .reply_timeout_ms = 3000, .ping_interval_ms = 300};

static char *
tmpdir(void)
{
    char *d = NULL;
    assert_int_equal(kiln_mkdtemp("kiln-agent-test", &d, NULL), 0);
    return d;
}

static void
write_text(const char *dir, const char *name, const char *text)
{
    _cleanup_free_ char *p = kiln_path_join(dir, name);
    assert_int_equal(kiln_write_file_atomic(p, text, strlen(text), 0644, NULL), 0);
}

static char *
read_text(const char *dir, const char *name)
{
    _cleanup_free_ char *p = kiln_path_join(dir, name);
    char *s = NULL;
    if (kiln_read_file(p, 1 << 20, &s, NULL, NULL) < 0)
        return NULL;
    return s;
}

static int
count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* --- a scripted job runner (stands in for the engine; the serve loop around it is real) --------
 */

static volatile int runner_sleep_ms;
static volatile int runner_started;

static int
scripted_run(const struct kiln_run_options *o, struct kiln_run_result *res, struct kiln_error *err)
{
    runner_started = 1;
    /* Prove the documents arrived intact: their digests go into the log. */
    _cleanup_buf_ struct kiln_buf digests = {0};
    for (char **d = o->documents; *d; d++) {
        char hex[KILN_HASH_MAX_HEX];
        if (kiln_hash_file_hex(KILN_HASH_SHA256, *d, hex, err) < 0)
            return err->code;
        const char *base = strrchr(*d, '/');
        kiln_buf_appendf(&digests, "%s %s\n", hex, base + 1);
    }
    _cleanup_free_ char *folder = kiln_path_join(o->log_directory, "TOE_test_1");
    _cleanup_free_ char *sub = kiln_path_join(folder, "sub");
    kiln_mkdir_p(sub, 0700, NULL);
    write_text(folder, "documents.sha256", digests.data);
    const char *p = json_string_value(json_object_get(o->parameters, "greeting"));
    write_text(sub, "parameter.txt", p ? p : "(none)");

    _cleanup_json_ json_t *start =
        json_pack("{s:s, s:s, s:s}", "event", "step-start", "phase",
                  o->phases && o->phases[0] ? o->phases[0] : "build", "step", "Hello");
    o->events->event(o->events->userdata, start);
    o->events->console(o->events->userdata, "stdout", "hello\n", 6);
    o->events->console(o->events->userdata, "stderr", "warn\0ing\n", 9);

    /* Reboot once: a marker in the persisted state directory says the reboot happened. */
    if (json_object_get(o->parameters, "reboot")) {
        _cleanup_free_ char *marker = kiln_path_join(o->state_directory, "rebooted");
        if (access(marker, F_OK) != 0) {
            write_text(o->state_directory, "rebooted", "1");
            res->status = KILN_RUN_REBOOT;
            return 0;
        }
    }
    for (int waited = 0; waited < runner_sleep_ms; waited += 20) {
        if (o->cancel && *o->cancel) {
            res->status = KILN_RUN_CANCELLED;
            res->log_folder = kiln_strdup(folder);
            return 0;
        }
        usleep(20 * 1000);
    }
    _cleanup_json_ json_t *end =
        json_pack("{s:s, s:s, s:s}", "event", "step-end", "step", "Hello", "status", "success");
    o->events->event(o->events->userdata, end);
    res->status = KILN_RUN_SUCCESS;
    res->log_folder = kiln_strdup(folder);
    return 0;
}

struct seen {
    int events;
    char last_event[64];
    struct kiln_buf out, errout;
    volatile sig_atomic_t *cancel;
};

static void
on_event(void *userdata, const json_t *ev)
{
    struct seen *s = userdata;
    s->events++;
    snprintf(s->last_event, sizeof(s->last_event), "%s",
             kiln_json_get_str(ev, "event") ? kiln_json_get_str(ev, "event") : "?");
}

static void
on_console(void *userdata, const char *stream, const char *data, size_t len)
{
    struct seen *s = userdata;
    kiln_buf_append(strcmp(stream, "stderr") == 0 ? &s->errout : &s->out, data, len);
    if (s->cancel)
        *s->cancel = 1;
}

static char *
make_document(const char *dir, const char *name)
{
    write_text(dir, name,
               "name: hello\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
               "      - name: Hello\n        action: ExecuteBash\n        inputs:\n"
               "          commands:\n            - echo hello\n");
    return kiln_path_join(dir, name);
}

/* --- tests against the real agent ------------------------------------------------------------ */

static void
test_hello_over_unix_socket_waits_for_agent(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *sock = kiln_path_join(dir, "agent.sock");
    _cleanup_free_ char *st = kiln_path_join(dir, "state");
    struct agent_thread t = {.socket_path = sock};
    agent_start(&t, st, "boot-1", scripted_run);

    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    int64_t t0 = kiln_proto_now_ms();
    assert_int_equal(kiln_agent_client_connect(sock, &fast, &c, &err), 0);
    assert_true(kiln_proto_now_ms() - t0 >= 250); /* it had to retry until the socket existed */
    const json_t *hello = kiln_agent_client_hello(c);
    assert_string_equal(kiln_json_get_str(hello, "agent"), "kiln-agent");
    assert_string_equal(kiln_json_get_str(hello, "boot-id"), "boot-1");
    assert_int_equal(json_integer_value(json_object_get(hello, "protocol")), KILN_PROTO_VERSION);
    assert_true(json_is_null(json_object_get(hello, "job")));
    assert_int_equal(kiln_agent_client_ping(c, &err), 0);

    /* Reconnect: the agent serves the next connection and syncs again. */
    kiln_agent_client_free(c);
    assert_int_equal(kiln_agent_client_connect(sock, &fast, &c, &err), 0);
    assert_int_equal(kiln_agent_client_ping(c, &err), 0);
    assert_int_equal(kiln_agent_client_poweroff(c, &err), 0);
    kiln_agent_client_free(c);
    pthread_join(t.thread, NULL);
    assert_int_equal(t.result, 1);
    assert_int_equal(t.poweroffs, 1);
    kiln_rm_rf(dir, NULL);
}

static volatile int poweroffs_seen;

static void
note_poweroff(void *userdata)
{
    poweroffs_seen++;
}

struct port_thread {
    const char *path;
    const char *state;
    int result;
};

static void *
port_main(void *arg)
{
    struct port_thread *p = arg;
    struct kiln_agent_serve_config cfg = {
        .state_directory = p->state, .poweroff = note_poweroff, .run = scripted_run};
    struct kiln_error err = {0};
    p->result = kiln_agent_serve_port(p->path, &cfg, &err);
    if (p->result < 0)
        fprintf(stderr, "agent: %s\n", err.message);
    return NULL;
}

static void
test_serve_port_over_a_serial_line(void **state)
{
    /* A pty stands in for the guest's port: the agent opens the device path like the virtio
     * port, and must switch a tty to raw mode or the frames would be mangled. */
    _cleanup_free_ char *dir = tmpdir();
    int master, slave;
    char name[256];
    assert_int_equal(openpty(&master, &slave, name, NULL, NULL), 0);
    /* The line starts cooked (echo, CR/LF translation, ^D, ^C): the agent must make it raw. */
    _cleanup_free_ char *st = kiln_path_join(dir, "state");
    struct port_thread p = {.path = name, .state = st};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, port_main, &p), 0);

    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    if (kiln_agent_client_open_fd(master, &fast, &c, &err) < 0)
        fail_msg("open: %s", err.message);
    assert_int_equal(kiln_agent_client_ping(c, &err), 0);
    /* A document holding every byte value, which a cooked tty would translate (CR), eat (^D,
     * DEL, ^U) or echo back: the agent checks the upload's SHA-256 before the job runs. */
    uint8_t bytes[512];
    for (size_t i = 0; i < sizeof(bytes); i++)
        bytes[i] = (uint8_t)i;
    _cleanup_free_ char *doc = kiln_path_join(dir, "binary.yml");
    assert_int_equal(kiln_write_file_atomic(doc, bytes, sizeof(bytes), 0644, NULL), 0);
    const char *docs[] = {doc, NULL};
    struct kiln_agent_job job = {.execution_id = "tty", .documents = docs};
    struct kiln_agent_job_result res = {0};
    runner_sleep_ms = 0;
    if (kiln_agent_client_run_job(c, &job, NULL, &res, &err) < 0)
        fail_msg("run_job: %s", err.message);
    assert_int_equal(res.status, KILN_AGENT_JOB_SUCCESS);
    kiln_agent_job_result_clear(&res);
    assert_int_equal(kiln_agent_client_poweroff(c, &err), 0);
    pthread_join(th, NULL);
    assert_int_equal(p.result, 1);
    assert_int_equal(poweroffs_seen, 1);
    kiln_agent_client_free(c);
    close(slave);
    kiln_rm_rf(dir, NULL);
}

static void
test_agent_answers_pings_during_a_long_job(void **state)
{
    /* The job outlasts the reply timeout several times over: it only completes if the agent
     * answers the client's pings while the engine runs. */
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *doc = make_document(dir, "slow.yml");
    runner_sleep_ms = 3000;
    struct agent_thread t = {0};
    int fd = agent_pair(&t, dir, "b", scripted_run);
    struct kiln_agent_client_options o = {
        .connect_timeout_ms = 5000, .reply_timeout_ms = 800, .ping_interval_ms = 200};
    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_agent_client_open_fd(fd, &o, &c, &err), 0);
    const char *docs[] = {doc, NULL};
    struct kiln_agent_job job = {.execution_id = "slow", .documents = docs};
    struct kiln_agent_job_result res = {0};
    int64_t t0 = kiln_proto_now_ms();
    if (kiln_agent_client_run_job(c, &job, NULL, &res, &err) < 0)
        fail_msg("run_job: %s", err.message);
    assert_true(kiln_proto_now_ms() - t0 >= 3000);
    assert_int_equal(res.status, KILN_AGENT_JOB_SUCCESS);
    kiln_agent_job_result_clear(&res);
    kiln_agent_client_free(c);
    pthread_join(t.thread, NULL);
    kiln_rm_rf(dir, NULL);
}

static void
test_connect_gives_up_at_deadline(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *sock = kiln_path_join(dir, "nobody.sock");
    struct kiln_agent_client_options o = {.connect_timeout_ms = 700};
    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    int64_t t0 = kiln_proto_now_ms();
    assert_int_equal(kiln_agent_client_connect(sock, &o, &c, &err), -ETIMEDOUT);
    int64_t took = kiln_proto_now_ms() - t0;
    assert_true(took >= 600 && took < 3000);
    assert_non_null(strstr(err.message, "agent not ready after 1 s"));
    assert_null(c);
    kiln_rm_rf(dir, NULL);
}

static void
test_agent_skips_junk_before_sync(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    struct agent_thread t = {0};
    int fd = agent_pair(&t, dir, "b", scripted_run);
    /* Junk, a magic, and a header cut short, as a host that died mid-write leaves behind. */
    _cleanup_buf_ struct kiln_buf junk = {0};
    kiln_buf_append_str(&junk, "garbage\xff\xfe KILN");
    _cleanup_json_ json_t *j = json_object();
    kiln_proto_encode_json(&junk, KILN_MSG_PING, 0, 99, j);
    junk.len -= 3;
    assert_int_equal(kiln_proto_write_all(fd, junk.data, junk.len, kiln_proto_now_ms() + 1000), 0);

    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_agent_client_open_fd(fd, &fast, &c, &err), 0);
    assert_int_equal(kiln_agent_client_ping(c, &err), 0);
    kiln_agent_client_free(c);
    pthread_join(t.thread, NULL);
    assert_int_equal(t.result, 0); /* end of file, no poweroff */
    kiln_rm_rf(dir, NULL);
}

static void
test_job_streams_events_console_and_logs(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *st = kiln_path_join(dir, "state");
    _cleanup_free_ char *logs = kiln_path_join(dir, "logs");
    kiln_mkdir_p(logs, 0755, NULL);
    _cleanup_free_ char *doc1 = make_document(dir, "hello.yml");
    /* A document larger than a chunk crosses several FILE_DATA frames. */
    _cleanup_buf_ struct kiln_buf big = {0};
    for (int i = 0; i < 20000; i++)
        kiln_buf_appendf(&big, "# line %d\n", i);
    write_text(dir, "big.yml", big.data);
    _cleanup_free_ char *doc2 = kiln_path_join(dir, "big.yml");

    struct agent_thread t = {0};
    runner_sleep_ms = 0;
    int fd = agent_pair(&t, st, "b", scripted_run);
    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_agent_client_open_fd(fd, &fast, &c, &err), 0);

    const char *docs[] = {doc1, doc2, NULL};
    const char *phases[] = {"build", NULL};
    _cleanup_json_ json_t *params = json_pack("{s:s}", "greeting", "hi there");
    struct kiln_agent_job job = {
        .execution_id = "exec-1", .documents = docs, .phases = phases, .parameters = params};
    struct seen s = {0};
    struct kiln_agent_client_callbacks cb = {on_event, on_console, &s};
    struct kiln_agent_job_result res = {0};
    if (kiln_agent_client_run_job(c, &job, &cb, &res, &err) < 0)
        fail_msg("run_job: %s", err.message);
    if (res.status != KILN_AGENT_JOB_SUCCESS)
        fail_msg("job %s: %s", kiln_agent_job_status_name(res.status), res.failure);
    assert_string_equal(res.log_folder, "TOE_test_1");
    assert_int_equal(s.events, 2);
    assert_string_equal(s.last_event, "step-end");
    assert_string_equal(s.out.data, "hello\n");
    assert_int_equal(s.errout.len, 9);
    assert_memory_equal(s.errout.data, "warn\0ing\n", 9);

    /* The hello after a sync reports the finished job. */
    assert_int_equal(kiln_agent_client_sync(c, 3000, &err), 0);
    json_t *jobinfo = json_object_get(kiln_agent_client_hello(c), "job");
    assert_string_equal(kiln_json_get_str(jobinfo, "execution-id"), "exec-1");
    assert_string_equal(kiln_json_get_str(jobinfo, "status"), "done");

    assert_int_equal(kiln_agent_client_fetch_logs(c, "exec-1", logs, NULL, &err), 0);
    _cleanup_free_ char *digests = read_text(logs, "TOE_test_1/documents.sha256");
    assert_non_null(digests);
    char h1[KILN_HASH_MAX_HEX], h2[KILN_HASH_MAX_HEX];
    kiln_hash_file_hex(KILN_HASH_SHA256, doc1, h1, NULL);
    kiln_hash_file_hex(KILN_HASH_SHA256, doc2, h2, NULL);
    _cleanup_free_ char *want = kiln_asprintf("%s hello.yml\n%s big.yml\n", h1, h2);
    assert_string_equal(digests, want);
    _cleanup_free_ char *param = read_text(logs, "TOE_test_1/sub/parameter.txt");
    assert_string_equal(param, "hi there");

    /* A second fetch into the same folder refuses to replace what is there. */
    assert_true(kiln_agent_client_fetch_logs(c, "exec-1", logs, NULL, &err) < 0);
    assert_non_null(strstr(err.message, "cannot create"));
    /* ... and the connection recovers by re-syncing. */
    assert_int_equal(kiln_agent_client_ping(c, &err), 0);

    kiln_agent_job_result_clear(&res);
    kiln_buf_clear(&s.out);
    kiln_buf_clear(&s.errout);
    kiln_agent_client_free(c);
    pthread_join(t.thread, NULL);
    kiln_rm_rf(dir, NULL);
}

static void
test_reboot_cycle(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *st = kiln_path_join(dir, "state");
    _cleanup_free_ char *doc = make_document(dir, "reboot.yml");
    runner_sleep_ms = 0;
    struct agent_thread t1 = {0};
    int fd = agent_pair(&t1, st, "boot-before", scripted_run);
    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_agent_client_open_fd(fd, &fast, &c, &err), 0);
    const char *docs[] = {doc, NULL};
    _cleanup_json_ json_t *params = json_pack("{s:s}", "reboot", "yes");
    struct kiln_agent_job job = {.execution_id = "exec-r", .documents = docs, .parameters = params};
    struct seen s = {0};
    struct kiln_agent_client_callbacks cb = {on_event, on_console, &s};
    struct kiln_agent_job_result res = {0};
    if (kiln_agent_client_run_job(c, &job, &cb, &res, &err) < 0)
        fail_msg("run_job: %s", err.message);
    assert_int_equal(res.status, KILN_AGENT_JOB_REBOOT_REQUIRED);

    /* "Reboot": the agent goes away and a new one starts on the same state directory. */
    kiln_agent_client_free(c);
    pthread_join(t1.thread, NULL);
    struct agent_thread t2 = {0};
    fd = agent_pair(&t2, st, "boot-after", scripted_run);
    assert_int_equal(kiln_agent_client_open_fd(fd, &fast, &c, &err), 0);
    const json_t *hello = kiln_agent_client_hello(c);
    assert_string_equal(kiln_json_get_str(hello, "boot-id"), "boot-after");
    json_t *jobinfo = json_object_get(hello, "job");
    assert_string_equal(kiln_json_get_str(jobinfo, "status"), "reboot-pending");
    assert_string_equal(kiln_json_get_str(jobinfo, "execution-id"), "exec-r");

    kiln_agent_job_result_clear(&res);
    if (kiln_agent_client_resume_job(c, "exec-r", &cb, &res, &err) < 0)
        fail_msg("resume: %s", err.message);
    assert_int_equal(res.status, KILN_AGENT_JOB_SUCCESS);
    assert_string_equal(s.last_event, "step-end");
    /* Resuming a finished job answers with its result again. */
    kiln_agent_job_result_clear(&res);
    assert_int_equal(kiln_agent_client_resume_job(c, "exec-r", &cb, &res, &err), 0);
    assert_int_equal(res.status, KILN_AGENT_JOB_SUCCESS);
    kiln_agent_job_result_clear(&res);
    kiln_buf_clear(&s.out);
    kiln_buf_clear(&s.errout);
    kiln_agent_client_free(c);
    pthread_join(t2.thread, NULL);
    kiln_rm_rf(dir, NULL);
}

static void
test_cancel_flag_cancels_the_job(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *doc = make_document(dir, "long.yml");
    runner_sleep_ms = 20000;
    struct agent_thread t = {0};
    int fd = agent_pair(&t, dir, "b", scripted_run);
    volatile sig_atomic_t cancel = 0;
    struct kiln_agent_client_options o = fast;
    o.cancel = &cancel;
    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_agent_client_open_fd(fd, &o, &c, &err), 0);
    const char *docs[] = {doc, NULL};
    struct kiln_agent_job job = {.execution_id = "exec-c", .documents = docs};
    struct seen s = {.cancel = &cancel}; /* the first console output pulls the flag */
    struct kiln_agent_client_callbacks cb = {on_event, on_console, &s};
    struct kiln_agent_job_result res = {0};
    int64_t t0 = kiln_proto_now_ms();
    assert_int_equal(kiln_agent_client_run_job(c, &job, &cb, &res, &err), -ECANCELED);
    assert_true(kiln_proto_now_ms() - t0 < 5000);
    assert_int_equal(res.status, KILN_AGENT_JOB_CANCELLED);
    kiln_agent_job_result_clear(&res);
    kiln_buf_clear(&s.out);
    kiln_buf_clear(&s.errout);
    kiln_agent_client_free(c);
    pthread_join(t.thread, NULL);
    kiln_rm_rf(dir, NULL);
}

/* A man in the middle that corrupts one byte of the first agent frame holding a needle. */
struct proxy {
    pthread_t thread;
    int host_fd, agent_fd;
    const char *needle;
    int corrupted;
};

static void *
proxy_main(void *arg)
{
    struct proxy *p = arg;
    for (;;) {
        struct pollfd pf[2] = {{.fd = p->host_fd, .events = POLLIN},
                               {.fd = p->agent_fd, .events = POLLIN}};
        if (poll(pf, 2, 10000) <= 0)
            break;
        for (int i = 0; i < 2; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP)))
                continue;
            char buf[65536];
            ssize_t n = read(pf[i].fd, buf, sizeof(buf));
            if (n <= 0)
                goto out;
            if (i == 1 && !p->corrupted) {
                char *hit = memmem(buf, (size_t)n, p->needle, strlen(p->needle));
                if (hit) {
                    hit[0] ^= 0x20;
                    p->corrupted = 1;
                }
            }
            int to = i == 0 ? p->agent_fd : p->host_fd;
            if (kiln_proto_write_all(to, buf, (size_t)n, kiln_proto_now_ms() + 5000) < 0)
                goto out;
        }
    }
out:
    close(p->host_fd);
    close(p->agent_fd);
    return NULL;
}

static void
corrupted_job(const char *needle, bool reboot)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *doc = make_document(dir, "hello.yml");
    runner_sleep_ms = 600;
    struct agent_thread t = {0};
    int to_agent[2], to_host[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, to_agent), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, to_host), 0);
    t.fd = to_agent[1];
    agent_start(&t, dir, "b", scripted_run);
    struct proxy p = {.host_fd = to_host[1], .agent_fd = to_agent[0], .needle = needle};
    assert_int_equal(pthread_create(&p.thread, NULL, proxy_main, &p), 0);

    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_agent_client_open_fd(to_host[0], &fast, &c, &err), 0);
    const char *docs[] = {doc, NULL};
    _cleanup_json_ json_t *params = reboot ? json_pack("{s:s}", "reboot", "yes") : NULL;
    struct kiln_agent_job job = {.execution_id = "exec-x", .documents = docs, .parameters = params};
    struct seen s = {0};
    struct kiln_agent_client_callbacks cb = {on_event, on_console, &s};
    struct kiln_agent_job_result res = {0};
    if (kiln_agent_client_run_job(c, &job, &cb, &res, &err) < 0)
        fail_msg("run_job: %s", err.message);
    assert_int_equal(p.corrupted, 1);
    if (reboot) {
        /* The lost reboot-required is repeated on attach; the job is not run again (a second
         * run would find the reboot marker and succeed). */
        assert_int_equal(res.status, KILN_AGENT_JOB_REBOOT_REQUIRED);
    } else {
        /* The corrupted step-start is lost; the client re-synced, re-attached, saw the rest. */
        assert_int_equal(res.status, KILN_AGENT_JOB_SUCCESS);
        assert_int_equal(s.events, 1);
        assert_string_equal(s.last_event, "step-end");
    }
    kiln_agent_job_result_clear(&res);
    kiln_buf_clear(&s.out);
    kiln_buf_clear(&s.errout);
    kiln_agent_client_free(c);
    pthread_join(p.thread, NULL);
    pthread_join(t.thread, NULL);
    kiln_rm_rf(dir, NULL);
}

static void
test_job_survives_a_corrupted_frame(void **state)
{
    corrupted_job("step-start", false);
}

static void
test_lost_reboot_required_is_repeated(void **state)
{
    corrupted_job("reboot-required", true);
}

/* The agent in a child process, so that the test can stop or kill it mid-job. */
static pid_t
agent_child(const char *state_dir, int *ret_fd)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        runner_sleep_ms = 60000;
        struct kiln_agent_serve_config cfg = {.state_directory = state_dir, .run = scripted_run};
        _exit(kiln_agent_serve_fd(sv[1], &cfg, NULL) < 0 ? 1 : 0);
    }
    close(sv[1]);
    *ret_fd = sv[0];
    return pid;
}

static pid_t victim;
static int victim_signal;

static void
hurt_agent(void *userdata, const char *stream, const char *data, size_t len)
{
    if (victim > 0 && victim_signal) {
        kill(victim, victim_signal);
        victim_signal = 0;
    }
}

static void
dead_agent(int sig, int want, const char *message)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *doc = make_document(dir, "long.yml");
    int fd;
    victim = agent_child(dir, &fd);
    victim_signal = sig;
    struct kiln_agent_client_options o = {
        .connect_timeout_ms = 5000, .reply_timeout_ms = 2000, .ping_interval_ms = 500};
    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_agent_client_open_fd(fd, &o, &c, &err), 0);
    const char *docs[] = {doc, NULL};
    struct kiln_agent_job job = {.execution_id = "exec-d", .documents = docs};
    struct kiln_agent_client_callbacks cb = {NULL, hurt_agent, NULL};
    struct kiln_agent_job_result res = {0};
    int64_t t0 = kiln_proto_now_ms();
    int r = kiln_agent_client_run_job(c, &job, &cb, &res, &err);
    int64_t took = kiln_proto_now_ms() - t0;
    /* The child goes first, so that a failed assertion does not leave it behind. */
    kiln_agent_client_free(c);
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);
    assert_int_equal(r, want);
    assert_true(took < 4000);
    if (!strstr(err.message, message))
        fail_msg("unexpected error: %s", err.message);
    kiln_rm_rf(dir, NULL);
}

static void
test_dead_agent_killed_mid_job(void **state)
{
    dead_agent(SIGKILL, -ECONNRESET, "agent closed the connection");
}

static void
test_dead_agent_frozen_mid_job(void **state)
{
    dead_agent(SIGSTOP, -ETIMEDOUT, "agent stopped answering after 2 s");
}

/* --- a hostile agent ------------------------------------------------------------------------- */

struct hostile {
    pthread_t thread;
    int fd;
    /* Answer a request other than sync; return false to stop. */
    bool (*answer)(struct hostile *h, const struct kiln_proto_frame *f);
    const char *junk;
    size_t junk_len;
    int pings;
    const char *capability;  /* the one capability its hello claims, or NULL for none */
    int prepares;            /* prepare requests seen */
    json_int_t sync_time_ms; /* the time-ms of the last sync, -1 when absent or no integer */
};

static void
hostile_send(struct hostile *h, const struct kiln_buf *b)
{
    kiln_proto_write_all(h->fd, b->data, b->len, kiln_proto_now_ms() + 5000);
}

static void
hostile_json(struct hostile *h, uint8_t type, uint32_t seq, json_t *j)
{
    _cleanup_buf_ struct kiln_buf b = {0};
    kiln_proto_encode_json(&b, type, KILN_PROTO_FLAG_REPLY, seq, j);
    json_decref(j);
    hostile_send(h, &b);
}

static void *
hostile_main(void *arg)
{
    struct hostile *h = arg;
    struct kiln_proto_decoder d;
    kiln_proto_decoder_init(&d, 0);
    for (;;) {
        _cleanup_frame_ struct kiln_proto_frame f = {0};
        int r = kiln_proto_decoder_next(&d, &f, NULL);
        if (r == 0) {
            if (kiln_proto_read_some(h->fd, &d, kiln_proto_now_ms() + 10000) <= 0)
                break;
            continue;
        }
        if (r < 0)
            continue;
        if (f.type == KILN_MSG_SYNC) {
            _cleanup_json_ json_t *req = NULL;
            assert_int_equal(kiln_proto_frame_json(&f, &req, NULL), 0);
            const char *nonce = kiln_json_get_str(req, "nonce");
            _cleanup_buf_ struct kiln_buf b = {0};
            if (h->junk)
                kiln_buf_append(&b, h->junk, h->junk_len);
            kiln_proto_encode_sync_reply(&b, strtoull(nonce, NULL, 16));
            json_t *t = json_object_get(req, "time-ms");
            h->sync_time_ms = json_is_integer(t) ? json_integer_value(t) : -1;
            _cleanup_json_ json_t *hello =
                json_pack("{s:s, s:i, s:s, s:s}", "agent", "evil", "protocol", KILN_PROTO_VERSION,
                          "nonce", nonce, "boot-id", "x");
            if (h->capability)
                json_object_set_new(hello, "capabilities", json_pack("[s]", h->capability));
            kiln_proto_encode_json(&b, KILN_MSG_HELLO, KILN_PROTO_FLAG_REPLY, f.seq, hello);
            hostile_send(h, &b);
            continue;
        }
        if (!h->answer(h, &f))
            break;
    }
    kiln_proto_decoder_clear(&d);
    return NULL;
}

static struct kiln_agent_client *
hostile_start(struct hostile *h)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    h->fd = sv[1];
    assert_int_equal(pthread_create(&h->thread, NULL, hostile_main, h), 0);
    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    struct kiln_agent_client_options o = {.connect_timeout_ms = 5000, .reply_timeout_ms = 1500};
    if (kiln_agent_client_open_fd(sv[0], &o, &c, &err) < 0)
        fail_msg("open: %s", err.message);
    return c;
}

static void
hostile_stop(struct hostile *h, struct kiln_agent_client *c)
{
    kiln_agent_client_free(c);
    pthread_join(h->thread, NULL);
    close(h->fd);
}

static bool
answer_pong(struct hostile *h, const struct kiln_proto_frame *f)
{
    if (f->type == KILN_MSG_PING)
        hostile_json(h, KILN_MSG_PONG, f->seq, json_object());
    return true;
}

static void
test_client_skips_junk_before_sync(void **state)
{
    /* Boot noise, stale frames, fake magics, an older sync answer and 0xff bytes. */
    _cleanup_buf_ struct kiln_buf junk = {0};
    for (int i = 0; i < 200; i++)
        kiln_buf_appendf(&junk, "[    %d.000] KILN console noise \xff\n", i);
    kiln_proto_encode_sync_reply(&junk, 1234);
    _cleanup_json_ json_t *stale = json_object();
    kiln_proto_encode_json(&junk, KILN_MSG_HELLO, 0, 1, stale);
    struct hostile h = {.answer = answer_pong, .junk = junk.data, .junk_len = junk.len};
    struct kiln_agent_client *c = hostile_start(&h);
    assert_true(kiln_agent_client_skipped(c) >= junk.len);
    assert_string_equal(kiln_json_get_str(kiln_agent_client_hello(c), "agent"), "evil");
    struct kiln_error err = {0};
    assert_int_equal(kiln_agent_client_ping(c, &err), 0);
    hostile_stop(&h, c);
}

static bool
answer_oversized_once(struct hostile *h, const struct kiln_proto_frame *f)
{
    if (f->type != KILN_MSG_PING)
        return true;
    if (h->pings++ > 0)
        return answer_pong(h, f);
    /* A pong whose header, checksum included, claims 64 MiB. */
    uint8_t hd[KILN_PROTO_HEADER_SIZE] = {'K',           'I', 'L', 'N', KILN_PROTO_VERSION,
                                          KILN_MSG_PONG, 0,   1};
    hd[8] = (uint8_t)(f->seq >> 24), hd[9] = (uint8_t)(f->seq >> 16);
    hd[10] = (uint8_t)(f->seq >> 8), hd[11] = (uint8_t)f->seq;
    hd[12] = 4; /* 0x04000000 */
    uint32_t crc = kiln_proto_crc32(0, hd, 20);
    hd[20] = (uint8_t)(crc >> 24), hd[21] = (uint8_t)(crc >> 16);
    hd[22] = (uint8_t)(crc >> 8), hd[23] = (uint8_t)crc;
    _cleanup_buf_ struct kiln_buf b = {0};
    kiln_buf_append(&b, hd, sizeof(hd));
    kiln_buf_append_str(&b, "and then some bytes that are not 64 MiB");
    hostile_send(h, &b);
    return true;
}

static void
test_oversized_frame_rejected(void **state)
{
    struct hostile h = {.answer = answer_oversized_once};
    struct kiln_agent_client *c = hostile_start(&h);
    struct kiln_error err = {0};
    int64_t t0 = kiln_proto_now_ms();
    assert_int_equal(kiln_agent_client_ping(c, &err), -KILN_E_LIMIT);
    assert_true(kiln_proto_now_ms() - t0 < 1000); /* rejected from the header, not waited for */
    assert_non_null(strstr(err.message, "exceeds the limit"));
    /* The next request re-syncs first and works. */
    kiln_error_clear(&err);
    assert_int_equal(kiln_agent_client_ping(c, &err), 0);
    hostile_stop(&h, c);
}

static bool
answer_bad_checksum(struct hostile *h, const struct kiln_proto_frame *f)
{
    if (f->type != KILN_MSG_PING)
        return true;
    if (h->pings++ > 0)
        return answer_pong(h, f);
    _cleanup_buf_ struct kiln_buf b = {0};
    _cleanup_json_ json_t *j = json_pack("{s:s}", "x", "y");
    kiln_proto_encode_json(&b, KILN_MSG_PONG, KILN_PROTO_FLAG_REPLY, f->seq, j);
    b.data[b.len - 2] ^= 1;
    hostile_send(h, &b);
    return true;
}

static void
test_bad_checksum_rejected(void **state)
{
    struct hostile h = {.answer = answer_bad_checksum};
    struct kiln_agent_client *c = hostile_start(&h);
    struct kiln_error err = {0};
    assert_int_equal(kiln_agent_client_ping(c, &err), -KILN_E_PARSE);
    assert_non_null(strstr(err.message, "checksum mismatch"));
    kiln_error_clear(&err);
    assert_int_equal(kiln_agent_client_ping(c, &err), 0);
    hostile_stop(&h, c);
}

/* Serves one malicious file list, then the files' bytes as the list announces them. */
static json_t *evil_list;
static const char *evil_data = "pwned\n";

static bool
answer_evil_fetch(struct hostile *h, const struct kiln_proto_frame *f)
{
    if (f->type == KILN_MSG_PING)
        return answer_pong(h, f);
    if (f->type != KILN_MSG_FETCH)
        return true;
    hostile_json(h, KILN_MSG_FILE_LIST, f->seq, json_pack("{s:O}", "files", evil_list));
    for (size_t i = 0; i < json_array_size(evil_list); i++) {
        _cleanup_buf_ struct kiln_buf b = {0};
        kiln_proto_encode_data(&b, f->seq, (uint32_t)i, 0, evil_data, strlen(evil_data));
        hostile_send(h, &b);
    }
    return true;
}

static json_t *
evil_entry(const char *name, const char *type)
{
    char hex[KILN_HASH_MAX_HEX];
    kiln_hash_buf_hex(KILN_HASH_SHA256, evil_data, strlen(evil_data), hex);
    return json_pack("{s:s, s:I, s:s, s:s?}", "name", name, "size", (json_int_t)strlen(evil_data),
                     "sha256", hex, "type", type);
}

static void
test_malicious_fetch_rejected(void **state)
{
    _cleanup_free_ char *dir = tmpdir();
    _cleanup_free_ char *dest = kiln_path_join(dir, "build/logs");
    _cleanup_free_ char *outside = kiln_path_join(dir, "outside");
    kiln_mkdir_p(dest, 0755, NULL);
    kiln_mkdir_p(outside, 0755, NULL);
    /* A symlink already in the destination, pointing outside (as a racing writer would plant). */
    _cleanup_free_ char *link = kiln_path_join(dest, "link");
    assert_int_equal(symlink(outside, link), 0);
    _cleanup_free_ char *abs_target = kiln_path_join(outside, "abs");

    struct hostile h = {.answer = answer_evil_fetch};
    struct kiln_agent_client *c = hostile_start(&h);
    struct {
        json_t *list;
        const char *expect;
        struct kiln_agent_fetch_limits lim;
    } cases[] = {
        {json_pack("[o]", evil_entry("../../outside/x", NULL)), "'.' or '..'", {0}},
        {json_pack("[o]", evil_entry("ok/../../../outside/y", NULL)), "'.' or '..'", {0}},
        {json_pack("[o]", evil_entry(abs_target, NULL)), "absolute path", {0}},
        {json_pack("[o]", evil_entry("a-link", "symlink")), "only regular files", {0}},
        {json_pack("[o]", evil_entry("dev", "char-device")), "only regular files", {0}},
        {json_pack("[o]", evil_entry("link/z", NULL)), "not a plain folder", {0}},
        {json_pack("[o]", evil_entry("link", NULL)), "cannot create", {0}},
        {json_pack("[o]", evil_entry("NUL", NULL)), "device name", {0}},
        {json_pack("[o,o,o]", evil_entry("1", NULL), evil_entry("2", NULL), evil_entry("3", NULL)),
         "offers 3 files",
         {.max_files = 2}},
        {json_pack("[o,o]", evil_entry("4", NULL), evil_entry("5", NULL)),
         "more than 10 bytes",
         {.max_bytes = 10}},
        {json_pack("[o,o]", evil_entry("6", NULL), evil_entry("6", NULL)), "listed twice", {0}},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        evil_list = cases[i].list;
        struct kiln_error err = {0};
        int r = kiln_agent_client_fetch_logs(c, "exec-1", dest, &cases[i].lim, &err);
        if (r >= 0 || !strstr(err.message, cases[i].expect))
            fail_msg("case %zu: r=%d: %s", i, r, err.message);
        json_decref(cases[i].list);
    }
    /* Overlong names. */
    char longname[400];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    evil_list = json_pack("[o]", evil_entry(longname, NULL));
    struct kiln_error err = {0};
    assert_int_equal(kiln_agent_client_fetch_logs(c, "exec-1", dest, NULL, &err), -KILN_E_LIMIT);
    json_decref(evil_list);

    /* Nothing was written outside, nothing but the planted link inside. */
    assert_int_equal(count_entries(outside), 0);
    assert_int_equal(count_entries(dest), 1);
    _cleanup_free_ char *up = kiln_path_join(dir, "x");
    assert_int_not_equal(access(up, F_OK), 0);

    /* After all that the same connection still fetches an honest list. */
    evil_list = json_pack("[o]", evil_entry("TOE_x/ok.log", NULL));
    kiln_error_clear(&err);
    if (kiln_agent_client_fetch_logs(c, "exec-1", dest, NULL, &err) < 0)
        fail_msg("honest fetch: %s", err.message);
    json_decref(evil_list);
    _cleanup_free_ char *got = read_text(dest, "TOE_x/ok.log");
    assert_string_equal(got, evil_data);
    hostile_stop(&h, c);
    kiln_rm_rf(dir, NULL);
}

/* Every sync tells the agent the host's wall-clock time. */
static void
test_sync_sends_host_time(void **state)
{
    struct hostile h = {.answer = answer_pong};
    struct kiln_agent_client *c = hostile_start(&h);
    int64_t now = kiln_realtime_ms();
    assert_true(h.sync_time_ms > now - 5000 && h.sync_time_ms <= now);
    h.sync_time_ms = 0;
    struct kiln_error err = {0};
    assert_int_equal(kiln_agent_client_sync(c, 3000, &err), 0);
    now = kiln_realtime_ms();
    assert_true(h.sync_time_ms > now - 5000 && h.sync_time_ms <= now);
    hostile_stop(&h, c);
}

static bool
answer_prepare(struct hostile *h, const struct kiln_proto_frame *f)
{
    if (f->type != KILN_MSG_PREPARE)
        return answer_pong(h, f);
    /* The first is refused, the second never answered. */
    if (h->prepares++ == 0)
        hostile_json(h, KILN_MSG_ERROR, f->seq, json_pack("{s:s}", "message", "not\x01 now"));
    return true;
}

/* An older agent (no "prepare" among its capabilities) is not sent a prepare it would drop. */
static void
test_prepare_refused_without_capability(void **state)
{
    struct hostile h = {.answer = answer_prepare};
    struct kiln_agent_client *c = hostile_start(&h);
    struct kiln_error err = {0};
    int64_t ms = 42;
    assert_int_equal(kiln_agent_client_prepare(c, 1000, &ms, &err), -KILN_E_UNSUPPORTED);
    assert_int_equal(ms, 42);
    /* The ping's answer comes after anything sent before it was read. */
    assert_int_equal(kiln_agent_client_ping(c, &err), 0);
    assert_int_equal(h.prepares, 0);
    hostile_stop(&h, c);
}

/* An error answer becomes the call's error; no answer at all, a timeout. */
static void
test_prepare_error_and_timeout(void **state)
{
    struct hostile h = {.answer = answer_prepare, .capability = "prepare"};
    struct kiln_agent_client *c = hostile_start(&h);
    struct kiln_error err = {0};
    assert_int_equal(kiln_agent_client_prepare(c, 1000, NULL, &err), -KILN_E_REMOTE);
    assert_string_equal(err.message, "prepare: agent error: not? now");
    kiln_error_clear(&err);
    int64_t t0 = kiln_proto_now_ms();
    assert_int_equal(kiln_agent_client_prepare(c, 400, NULL, &err), -ETIMEDOUT);
    int64_t took = kiln_proto_now_ms() - t0;
    assert_true(took >= 400 && took < 2000);
    assert_int_equal(h.prepares, 2);
    /* The connection stays usable. */
    kiln_error_clear(&err);
    assert_int_equal(kiln_agent_client_ping(c, &err), 0);
    hostile_stop(&h, c);
}

/* --- the agent's clock, over raw frames ------------------------------------------------------ */

struct clock_hook {
    int calls;
    int64_t set_ms; /* the time of the last call */
};

static int
record_clock(const struct timespec *ts, void *userdata)
{
    struct clock_hook *h = userdata;
    h->calls++;
    h->set_ms = (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
    return 0;
}

/* Send a sync whose "time-ms" is time_ms (taken; NULL: none) and return the hello answering it. */
static json_t *
raw_sync(int fd, struct kiln_proto_decoder *d, uint32_t seq, json_t *time_ms)
{
    uint64_t nonce = 0x6b696c6e00000000ull + seq;
    char hex[17];
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)nonce);
    _cleanup_json_ json_t *req = json_pack("{s:s}", "nonce", hex);
    if (time_ms)
        json_object_set_new(req, "time-ms", time_ms);
    _cleanup_buf_ struct kiln_buf b = {0};
    assert_int_equal(kiln_proto_encode_json(&b, KILN_MSG_SYNC, 0, seq, req), 0);
    int64_t deadline = kiln_proto_now_ms() + 5000;
    assert_int_equal(kiln_proto_write_all(fd, b.data, b.len, deadline), 0);
    while (kiln_proto_decoder_find_sync(d, nonce) != 1)
        assert_true(kiln_proto_read_some(fd, d, deadline) > 0);
    for (;;) {
        _cleanup_frame_ struct kiln_proto_frame f = {0};
        int r = kiln_proto_decoder_next(d, &f, NULL);
        if (r == 0) {
            assert_true(kiln_proto_read_some(fd, d, deadline) > 0);
            continue;
        }
        assert_int_equal(r, 1);
        if (f.type != KILN_MSG_HELLO)
            continue;
        json_t *hello = NULL;
        assert_int_equal(kiln_proto_frame_json(&f, &hello, NULL), 0);
        assert_string_equal(kiln_json_get_str(hello, "nonce"), hex);
        return hello;
    }
}

struct clock_agent {
    struct agent_thread t;
    struct clock_hook hook;
    struct kiln_proto_decoder dec;
    char *dir;
    int fd;
};

static void
clock_agent_start(struct clock_agent *ca, bool sync_clock)
{
    ca->dir = tmpdir();
    ca->t.cfg.sync_clock = sync_clock;
    ca->t.cfg.set_clock = record_clock;
    ca->t.cfg.set_clock_userdata = &ca->hook;
    ca->fd = agent_pair(&ca->t, ca->dir, "b", scripted_run);
    kiln_proto_decoder_init(&ca->dec, 0);
}

static void
clock_agent_stop(struct clock_agent *ca)
{
    if (ca->fd >= 0)
        close(ca->fd);
    pthread_join(ca->t.thread, NULL);
    kiln_proto_decoder_clear(&ca->dec);
    kiln_rm_rf(ca->dir, NULL);
    free(ca->dir);
}

/* A host time an hour ahead, then a day behind: the clock is stepped to it, and the hello says
 * by how much. */
static void
test_clock_stepped_to_host_time(void **state)
{
    struct clock_agent ca = {0};
    clock_agent_start(&ca, true);
    int64_t host = kiln_realtime_ms() + 3600 * 1000;
    _cleanup_json_ json_t *h1 = raw_sync(ca.fd, &ca.dec, 1, json_integer(host));
    assert_int_equal(ca.hook.calls, 1);
    assert_int_equal(ca.hook.set_ms, host);
    json_int_t step = json_integer_value(json_object_get(h1, "clock-stepped-ms"));
    assert_true(step > 3600 * 1000 - 2000 && step <= 3600 * 1000);
    host = kiln_realtime_ms() - 86400 * 1000;
    _cleanup_json_ json_t *h2 = raw_sync(ca.fd, &ca.dec, 2, json_integer(host));
    assert_int_equal(ca.hook.calls, 2);
    assert_int_equal(ca.hook.set_ms, host);
    step = json_integer_value(json_object_get(h2, "clock-stepped-ms"));
    /* The agent reads its clock after the test did: the step is a little larger, never
     * smaller. */
    assert_true(step <= -86400 * 1000 && step > -86400 * 1000 - 2000);
    clock_agent_stop(&ca);
}

/* Within a second of the guest's clock nothing is stepped: a raw sync 0.9 s ahead (by the time
 * the agent compares, a little less), then the real client's syncs (the same clock on both ends
 * here). */
static void
test_clock_not_stepped_within_a_second(void **state)
{
    struct clock_agent ca = {0};
    clock_agent_start(&ca, true);
    _cleanup_json_ json_t *h1 = raw_sync(ca.fd, &ca.dec, 1, json_integer(kiln_realtime_ms() + 900));
    assert_null(json_object_get(h1, "clock-stepped-ms"));
    assert_int_equal(ca.hook.calls, 0);
    struct kiln_agent_client *c = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_agent_client_open_fd(TAKE_FD(ca.fd), &fast, &c, &err), 0);
    assert_int_equal(kiln_agent_client_sync(c, 3000, &err), 0);
    assert_int_equal(kiln_agent_client_ping(c, &err), 0);
    assert_int_equal(ca.hook.calls, 0);
    assert_null(json_object_get(kiln_agent_client_hello(c), "clock-stepped-ms"));
    kiln_agent_client_free(c);
    clock_agent_stop(&ca);
}

/* Without --sync-clock the host's time is never adopted. */
static void
test_clock_not_stepped_without_option(void **state)
{
    struct clock_agent ca = {0};
    clock_agent_start(&ca, false);
    _cleanup_json_ json_t *h =
        raw_sync(ca.fd, &ca.dec, 1, json_integer(kiln_realtime_ms() + 3600 * 1000));
    assert_int_equal(ca.hook.calls, 0);
    assert_null(json_object_get(h, "clock-stepped-ms"));
    clock_agent_stop(&ca);
}

/* A time-ms that is no integer or no plausible date is ignored (the sync is answered all the
 * same); a good one afterwards still steps the clock. */
static void
test_clock_bad_time_ignored(void **state)
{
    struct clock_agent ca = {0};
    clock_agent_start(&ca, true);
    int64_t ahead = kiln_realtime_ms() + 3600 * 1000;
    json_t *bad[] = {
        json_string("1900000000000"),
        json_real((double)ahead),
        json_true(),
        json_null(),
        json_object(),
        json_integer(-ahead),
        json_integer(0),
        json_integer(1000),                /* 1970 */
        json_integer(1577836800000LL - 1), /* just before 2020 */
        json_integer(7258118400000LL),     /* 2200 */
        json_integer(INT64_MAX),
        json_integer(INT64_MIN),
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        _cleanup_json_ json_t *h = raw_sync(ca.fd, &ca.dec, (uint32_t)i + 1, bad[i]);
        if (ca.hook.calls != 0)
            fail_msg("case %zu stepped the clock to %lld", i, (long long)ca.hook.set_ms);
        assert_null(json_object_get(h, "clock-stepped-ms"));
    }
    _cleanup_json_ json_t *h = raw_sync(ca.fd, &ca.dec, 100, json_integer(ahead));
    assert_int_equal(ca.hook.calls, 1);
    assert_int_equal(ca.hook.set_ms, ahead);
    clock_agent_stop(&ca);
}

KILN_TEST_MAIN(cmocka_unit_test(test_hello_over_unix_socket_waits_for_agent),
               cmocka_unit_test(test_connect_gives_up_at_deadline),
               cmocka_unit_test(test_serve_port_over_a_serial_line),
               cmocka_unit_test(test_agent_answers_pings_during_a_long_job),
               cmocka_unit_test(test_agent_skips_junk_before_sync),
               cmocka_unit_test(test_job_streams_events_console_and_logs),
               cmocka_unit_test(test_reboot_cycle),
               cmocka_unit_test(test_cancel_flag_cancels_the_job),
               cmocka_unit_test(test_job_survives_a_corrupted_frame),
               cmocka_unit_test(test_lost_reboot_required_is_repeated),
               cmocka_unit_test(test_dead_agent_killed_mid_job),
               cmocka_unit_test(test_dead_agent_frozen_mid_job),
               cmocka_unit_test(test_client_skips_junk_before_sync),
               cmocka_unit_test(test_oversized_frame_rejected),
               cmocka_unit_test(test_bad_checksum_rejected),
               cmocka_unit_test(test_malicious_fetch_rejected),
               cmocka_unit_test(test_sync_sends_host_time),
               cmocka_unit_test(test_prepare_refused_without_capability),
               cmocka_unit_test(test_prepare_error_and_timeout),
               cmocka_unit_test(test_clock_stepped_to_host_time),
               cmocka_unit_test(test_clock_not_stepped_within_a_second),
               cmocka_unit_test(test_clock_not_stepped_without_option),
               cmocka_unit_test(test_clock_bad_time_ignored))
