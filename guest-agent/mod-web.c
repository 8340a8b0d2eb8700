/* WebDownload: HTTP/HTTPS downloads with libcurl.
 *
 * Each download goes to a temporary file in the destination folder, is checked against the
 * checksum (when one is given) and only then renamed into place, so a failed or wrong download
 * never leaves a file behind. Redirects are followed (http and https only); any final status
 * other than 200 is an error. Each download gets up to 5 attempts with exponential backoff
 * (1, 2, 4, 8 s) for network errors, 408, 429 and 5xx; other failures are final. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/time.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/log.h"
#include "guest-agent/mod-common.h"

#define MODULE "WebDownload"
#define ATTEMPTS 5
#define BACKOFF_FIRST_MS 1000

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct step_clock {
    const struct kiln_module_ctx *ctx;
    long long deadline; /* -1: none */
};

static bool
stop_requested(const struct step_clock *c)
{
    if (c->ctx && c->ctx->cancel && *c->ctx->cancel)
        return true;
    return c->deadline >= 0 && kiln_now_ms() >= c->deadline;
}

static int
stop_error(const struct step_clock *c, struct kiln_error *err)
{
    if (c->ctx && c->ctx->cancel && *c->ctx->cancel)
        return kiln_error_set(err, -ECANCELED, MODULE ": cancelled");
    return kiln_error_set(err, -ETIMEDOUT, MODULE ": timed out after %d seconds",
                          c->ctx->timeout_seconds);
}

static int
progress_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
            curl_off_t ulnow)
{
    return stop_requested(userdata) ? 1 : 0;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
    int fd = *(int *)userdata;
    size_t len = size * nmemb, off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return 0; /* curl reports CURLE_WRITE_ERROR */
        off += (size_t)n;
    }
    return len;
}

/* The last path segment of the URL, without query or fragment; NULL when there is none. */
static char *
file_name_from_url(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *path = strchr(p, '/');
    if (!path)
        return NULL;
    size_t end = strcspn(path, "?#");
    const char *s = path + end;
    while (s > path && s[-1] != '/')
        s--;
    if (s == path + end)
        return NULL;
    _cleanup_free_ char *raw = kiln_strndup(s, (size_t)(path + end - s));
    int n = 0;
    char *dec = curl_easy_unescape(NULL, raw, 0, &n);
    if (!dec)
        return NULL;
    char *name = kiln_strndup(dec, (size_t)n);
    curl_free(dec);
    /* a decoded name must still be a single, ordinary path component */
    if (!*name || strchr(name, '/') || strlen(name) != (size_t)n || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0) {
        free(name);
        return NULL;
    }
    return name;
}

static mode_t
current_umask(void)
{
    _cleanup_free_ char *status = NULL;
    size_t len;
    if (kiln_read_file("/proc/self/status", 1 << 16, &status, &len, NULL) == 0) {
        const char *u = strstr(status, "\nUmask:");
        if (u)
            return (mode_t)strtoul(u + 7, NULL, 8) & 0777;
    }
    return 022;
}

enum attempt_result { ATTEMPT_OK, ATTEMPT_RETRY, ATTEMPT_FAIL };

/* One transfer into fd. Sets err on failure and says whether another attempt may help. */
static enum attempt_result
attempt(CURL *curl, const char *url, int fd, bool insecure, struct step_clock *clock,
        struct kiln_error *err)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
        kiln_error_errno(err, -errno, MODULE ": temporary file");
        return ATTEMPT_FAIL;
    }
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &fd);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, progress_cb);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, clock);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "kiln-agent/" KILN_VERSION);
    if (insecure) {
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        stop_error(clock, err);
        return ATTEMPT_FAIL;
    }
    if (rc != CURLE_OK) {
        kiln_error_set(err, -KILN_E_REMOTE, MODULE ": %s: %s", url,
                       *errbuf ? errbuf : curl_easy_strerror(rc));
        switch (rc) {
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_PARTIAL_FILE:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_SSL_CONNECT_ERROR:
            err->retryable = true;
            return ATTEMPT_RETRY;
        default:
            return ATTEMPT_FAIL;
        }
    }
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (status == 200)
        return ATTEMPT_OK;
    kiln_error_set(err, -KILN_E_REMOTE, MODULE ": %s: HTTP status %ld", url, status);
    if (status == 408 || status == 429 || status >= 500) {
        err->retryable = true;
        return ATTEMPT_RETRY;
    }
    return ATTEMPT_FAIL;
}

/* Sleep for ms, waking early when the step is cancelled or out of time. */
static bool
backoff(long long ms, struct step_clock *clock)
{
    long long until = kiln_now_ms() + ms;
    while (kiln_now_ms() < until) {
        if (stop_requested(clock))
            return false;
        usleep(50000);
    }
    return !stop_requested(clock);
}

struct download {
    char *source, *destination, *checksum, *algorithm;
    bool overwrite, insecure;
};

static void
download_clear(struct download *d)
{
    free(d->source);
    free(d->destination);
    free(d->checksum);
    free(d->algorithm);
}

static int
read_download(const json_t *item, struct download *d, struct kiln_error *err)
{
    memset(d, 0, sizeof(*d));
    int r = kiln_mod_get_str(item, MODULE, "source", true, &d->source, err);
    if (r >= 0)
        r = kiln_mod_get_str(item, MODULE, "destination", true, &d->destination, err);
    if (r >= 0)
        r = kiln_mod_get_bool(item, MODULE, "overwrite", true, &d->overwrite, err);
    if (r >= 0)
        r = kiln_mod_get_str(item, MODULE, "checksum", false, &d->checksum, err);
    if (r >= 0)
        r = kiln_mod_get_str(item, MODULE, "algorithm", false, &d->algorithm, err);
    if (r >= 0)
        r = kiln_mod_get_bool(item, MODULE, "ignoreCertificateErrors", false, &d->insecure, err);
    if (r < 0)
        return r;
    if (strncasecmp(d->source, "http://", 7) != 0 && strncasecmp(d->source, "https://", 8) != 0)
        return kiln_error_set(err, -KILN_E_INVALID,
                              MODULE ": source '%s' is not an http:// or "
                                     "https:// URL",
                              d->source);
    if (!*d->destination)
        return kiln_error_set(err, -KILN_E_INVALID, MODULE ": destination is empty");
    if ((d->checksum && *d->checksum) != (d->algorithm && *d->algorithm))
        return kiln_error_set(err, -KILN_E_INVALID,
                              MODULE ": checksum and algorithm must be given together");
    return 0;
}

static int
download_one(CURL *curl, const struct download *d, struct step_clock *clock, char **ret_path,
             struct kiln_error *err)
{
    enum kiln_hash_alg alg = KILN_HASH_SHA256;
    bool verify = d->checksum && *d->checksum;
    if (verify && kiln_hash_alg_from_name(d->algorithm, &alg) < 0)
        return kiln_error_set(err, -KILN_E_INVALID,
                              MODULE ": algorithm '%s' is not one of MD5, SHA1, SHA256, SHA512",
                              d->algorithm);

    /* Where the file goes: a folder (trailing '/', or an existing folder) gets the URL's name. */
    _cleanup_free_ char *path = NULL;
    size_t dl = strlen(d->destination);
    struct stat st;
    if (d->destination[dl - 1] == '/' || (stat(d->destination, &st) == 0 && S_ISDIR(st.st_mode))) {
        _cleanup_free_ char *name = file_name_from_url(d->source);
        if (!name)
            return kiln_error_set(err, -KILN_E_INVALID,
                                  MODULE ": %s has no file name; give a file path as destination",
                                  d->source);
        path = kiln_path_join(d->destination, name);
    } else {
        path = kiln_strdup(d->destination);
    }
    _cleanup_free_ char *dir = kiln_strdup(path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir)
        *slash = '\0';
    else if (slash)
        dir[1] = '\0';
    else {
        free(dir);
        dir = kiln_strdup(".");
    }
    int r = kiln_mkdir_p(dir, 0777, err);
    if (r < 0)
        return kiln_error_prefix(err, r, MODULE);

    if (lstat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return kiln_error_set(err, -EISDIR, MODULE ": destination %s is a folder", path);
        if (!d->overwrite)
            return kiln_error_set(err, -EEXIST, MODULE ": %s already exists and overwrite is false",
                                  path);
        if (verify) {
            char hex[KILN_HASH_MAX_HEX];
            if (kiln_hash_file_hex(alg, path, hex, NULL) == 0 &&
                strcasecmp(hex, d->checksum) == 0) {
                kiln_mod_console(clock->ctx, "%s already matches the checksum; not downloaded",
                                 path);
                *ret_path = TAKE_PTR(path);
                return 0;
            }
        }
    }

    _cleanup_free_ char *tmp = kiln_path_join(dir, ".kiln-download-XXXXXX");
    _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return kiln_error_errno(err, -errno, MODULE ": cannot create a file in %s", dir);

    kiln_mod_console(clock->ctx, "Downloading %s to %s", d->source, path);
    long long delay = BACKOFF_FIRST_MS;
    enum attempt_result res = ATTEMPT_FAIL;
    for (int i = 1; i <= ATTEMPTS; i++) {
        struct kiln_error attempt_err = {0};
        res = attempt(curl, d->source, fd, d->insecure, clock, &attempt_err);
        if (res == ATTEMPT_OK)
            break;
        if (res == ATTEMPT_FAIL || i == ATTEMPTS) {
            kiln_error_set(err, attempt_err.code, "%s", attempt_err.message);
            if (err)
                err->retryable = attempt_err.retryable;
            r = attempt_err.code;
            break;
        }
        kiln_mod_console(clock->ctx, "%s (attempt %d of %d); retrying in %lld ms",
                         attempt_err.message, i, ATTEMPTS, delay);
        if (!backoff(delay, clock)) {
            r = stop_error(clock, err);
            res = ATTEMPT_FAIL;
            break;
        }
        delay *= 2;
    }
    if (res != ATTEMPT_OK) {
        unlink(tmp);
        return r < 0 ? r : -KILN_E_REMOTE;
    }
    if (fsync(fd) < 0 || fchmod(fd, 0666 & ~current_umask()) < 0) {
        r = -errno;
        unlink(tmp);
        return kiln_error_errno(err, r, MODULE ": %s", tmp);
    }
    if (verify) {
        char hex[KILN_HASH_MAX_HEX];
        r = kiln_hash_file_hex(alg, tmp, hex, err);
        if (r < 0) {
            unlink(tmp);
            return kiln_error_prefix(err, r, MODULE);
        }
        if (strcasecmp(hex, d->checksum) != 0) {
            unlink(tmp);
            return kiln_error_set(err, -KILN_E_FAILED,
                                  MODULE ": %s: %s checksum mismatch: expected %s, got %s",
                                  d->source, d->algorithm, d->checksum, hex);
        }
    }
    if (rename(tmp, path) < 0) {
        r = -errno;
        unlink(tmp);
        return kiln_error_errno(err, r, MODULE ": cannot move the download to %s", path);
    }
    *ret_path = TAKE_PTR(path);
    return 0;
}

KILN_MOD_RUN(kiln_mod_web_download)
{
    pthread_once(&curl_once, curl_init_once);
    struct step_clock clock = {
        .ctx = ctx,
        .deadline = ctx && ctx->timeout_seconds >= 0
                        ? kiln_now_ms() + (long long)ctx->timeout_seconds * 1000
                        : -1,
    };
    CURL *curl = curl_easy_init();
    if (!curl)
        return kiln_error_set(err, -ENOMEM, MODULE ": cannot initialise libcurl");
    _cleanup_buf_ struct kiln_buf dests = {0};
    int r = 0;
    for (size_t i = 0; r >= 0 && i < kiln_mod_item_count(inputs); i++) {
        struct download d;
        _cleanup_free_ char *path = NULL;
        r = read_download(kiln_mod_item(inputs, i), &d, err);
        if (r >= 0)
            r = download_one(curl, &d, &clock, &path, err);
        if (r >= 0) {
            if (dests.len)
                kiln_buf_append_char(&dests, '\n');
            kiln_buf_append_str(&dests, path);
        }
        download_clear(&d);
    }
    curl_easy_cleanup(curl);
    if (r < 0)
        return r;
    json_t *o = json_object();
    json_object_set_new(o, "destination", kiln_mod_json_text(dests.data, dests.len));
    *ret_outputs = o;
    return 0;
}
