/* The EBS-direct uploader (a raw image becomes a snapshot, reading only allocated extents and
 * skipping all-zero blocks) and the reader (a snapshot back into a sparse file). */
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cloud/ebs.h"
#include "common/hash.h"
#include "common/log.h"

#define GIB (1ull << 30)

void
kiln_ebs_upload_result_clear(struct kiln_ebs_upload_result *r)
{
    if (!r)
        return;
    free(r->snapshot_id);
    memset(r, 0, sizeof(*r));
}

static double
mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Block indices touched by allocated extents, ascending. Without SEEK_DATA support every
 * block is a candidate (the zero check still skips the empty ones). */
static int
allocated_blocks(int fd, uint64_t size, uint64_t **ret, size_t *ret_n, struct kiln_error *err)
{
    uint64_t *v = NULL;
    size_t n = 0, cap = 0;
    off_t pos = 0;
    while ((uint64_t)pos < size) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO)
                break; /* only a hole remains */
            if (errno == EINVAL || errno == EOPNOTSUPP) {
                data = pos; /* no hole support: everything from here is data */
            } else {
                free(v);
                return kiln_error_errno(err, -errno, "SEEK_DATA");
            }
        }
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0)
            hole = (off_t)size;
        uint64_t first = (uint64_t)data / KILN_EBS_BLOCK_SIZE;
        uint64_t last = ((uint64_t)hole + KILN_EBS_BLOCK_SIZE - 1) / KILN_EBS_BLOCK_SIZE;
        for (uint64_t b = first; b < last; b++) {
            if (n > 0 && v[n - 1] >= b)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 1024;
                v = kiln_reallocarray(v, cap, sizeof(*v));
            }
            v[n++] = b;
        }
        pos = hole;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static bool
all_zero(const uint8_t *p, size_t len)
{
    static const uint8_t zero[4096];
    for (size_t off = 0; off < len; off += sizeof(zero))
        if (memcmp(p + off, zero, len - off < sizeof(zero) ? len - off : sizeof(zero)) != 0)
            return false;
    return true;
}

static int
pread_block(int fd, uint64_t index, uint64_t size, uint8_t *buf, size_t *ret_read)
{
    uint64_t off = index * KILN_EBS_BLOCK_SIZE;
    size_t want = KILN_EBS_BLOCK_SIZE;
    if (off + want > size)
        want = (size_t)(size - off);
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(fd, buf + got, want - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    /* The image's tail (or a short read at EOF) is zero in the volume. */
    memset(buf + got, 0, KILN_EBS_BLOCK_SIZE - got);
    *ret_read = got;
    return 0;
}

struct journal_entry {
    uint64_t index;
    uint8_t digest[32];
};

static int
journal_cmp(const void *a, const void *b)
{
    const struct journal_entry *x = a, *y = b;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* The journal: a header line "kiln-ebs-journal 1 <snapshot> <image bytes>", then one line
 * "<block index> <hex sha256>" per block the service acknowledged. A line lost in a crash only
 * means that block is sent again. */
static int
journal_load(const char *path, const char *snapshot_id, uint64_t size,
             struct journal_entry **ret, size_t *ret_n, struct kiln_error *err)
{
    *ret = NULL;
    *ret_n = 0;
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? 0 : kiln_error_errno(err, -errno, "journal %s", path);
    char line[256], snap[128];
    unsigned long long jsize = 0;
    int version = 0;
    if (!fgets(line, sizeof(line), f) ||
        sscanf(line, "kiln-ebs-journal %d %127s %llu", &version, snap, &jsize) != 3 ||
        version != 1)
        return kiln_error_set(err, -KILN_E_PARSE, "journal %s: not a Kiln EBS upload journal",
                              path);
    /* Another snapshot or another image: nothing carries over. */
    if (strcmp(snap, snapshot_id) != 0 || jsize != size)
        return 0;
    struct journal_entry *v = NULL;
    size_t n = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long idx;
        char hex[65];
        if (sscanf(line, "%llu %64s", &idx, hex) != 2 || strlen(hex) != 64)
            continue; /* a torn last line */
        v = kiln_reallocarray(v, n + 1, sizeof(*v));
        v[n].index = idx;
        bool ok = true;
        for (size_t i = 0; i < 32 && ok; i++) {
            unsigned b;
            ok = sscanf(hex + 2 * i, "%2x", &b) == 1;
            v[n].digest[i] = (uint8_t)b;
        }
        if (ok)
            n++;
    }
    qsort(v, n, sizeof(*v), journal_cmp);
    *ret = v;
    *ret_n = n;
    return 0;
}

static const struct journal_entry *
journal_find(const struct journal_entry *v, size_t n, uint64_t index)
{
    struct journal_entry key = {.index = index};
    return n ? bsearch(&key, v, n, sizeof(*v), journal_cmp) : NULL;
}

struct upload_ctx {
    struct kiln_aws_client *c;
    int fd;
    const char *path;
    uint64_t size;
    const uint64_t *blocks;
    size_t n_blocks;
    size_t next;
    double deadline;
    double budget;
    double client_budget;
    uint8_t (*digests)[32];
    size_t n_digests;
    uint8_t *bufs;
    struct kiln_aws_request *reqs;
    char **paths;
    struct kiln_ebs_upload_result *ret;
    /* Resume journal: blocks already in the snapshot, and the file new ones are noted in. */
    struct journal_entry *done_blocks;
    size_t n_done_blocks;
    FILE *journal;
    uint64_t *slot_index;
    uint8_t **slot_digest;
};

/* Next non-zero allocated block into the slot's buffer, as a PutSnapshotBlock request. */
static int
upload_feed(void *ctx, size_t slot, const struct kiln_aws_request **req, struct kiln_error *err)
{
    struct upload_ctx *u = ctx;
    double left = u->deadline - mono();
    if (u->next < u->n_blocks && left <= 0)
        return kiln_error_set(err, -ETIMEDOUT, "time budget of %.0f s used up after %" PRIu64
                                               " blocks", u->budget, u->ret->blocks_sent);
    /* No call may outlive the overall budget. */
    kiln_aws_client_set_budget(u->c, left < u->client_budget ? left : u->client_budget);
    uint8_t *buf = u->bufs + slot * (size_t)KILN_EBS_BLOCK_SIZE;
    while (u->next < u->n_blocks) {
        uint64_t index = u->blocks[u->next++];
        size_t got = 0;
        int r = pread_block(u->fd, index, u->size, buf, &got);
        if (r < 0)
            return kiln_error_errno(err, r, "reading %s", u->path);
        u->ret->bytes_read += got;
        if (all_zero(buf, KILN_EBS_BLOCK_SIZE)) {
            u->ret->blocks_zero++;
            continue;
        }
        /* Blocks are fed in index order: the digests line up for the linear aggregate. One
         * SHA-256 per block serves both its header and the aggregate. */
        uint8_t *digest = u->digests[u->n_digests++];
        kiln_hash_buf(KILN_HASH_SHA256, buf, KILN_EBS_BLOCK_SIZE, digest);
        const struct journal_entry *j = journal_find(u->done_blocks, u->n_done_blocks, index);
        if (j && memcmp(j->digest, digest, 32) == 0) {
            u->ret->blocks_resumed++;
            continue;
        }
        u->slot_index[slot] = index;
        u->slot_digest[slot] = digest;
        unsigned progress = (unsigned)(u->next * 100 / u->n_blocks);
        kiln_aws_request_clear(&u->reqs[slot]);
        free(u->paths[slot]);
        kiln_ebs_put_block_request(u->ret->snapshot_id, index, buf, KILN_EBS_BLOCK_SIZE, digest,
                                   progress, &u->reqs[slot], &u->paths[slot]);
        *req = &u->reqs[slot];
        return 1;
    }
    return 0;
}

static int
upload_done(void *ctx, size_t slot, struct kiln_aws_response *resp, int result,
            struct kiln_error *xerr)
{
    struct upload_ctx *u = ctx;
    if (result < 0)
        return result;
    u->ret->blocks_sent++;
    if (u->journal) {
        char hex[65];
        kiln_hex_encode(u->slot_digest[slot], 32, hex);
        fprintf(u->journal, "%" PRIu64 " %s\n", u->slot_index[slot], hex);
        fflush(u->journal);
    }
    return 0;
}

int
kiln_ebs_upload_image(struct kiln_aws_client *c, const char *path,
                      const struct kiln_ebs_upload_options *opts,
                      struct kiln_ebs_upload_result *ret, struct kiln_error *err)
{
    memset(ret, 0, sizeof(*ret));
    struct kiln_ebs_upload_options none = {0};
    if (!opts)
        opts = &none;
    double budget = opts->budget > 0 ? opts->budget : 3600;
    double deadline = mono() + budget;
    unsigned parallel = opts->parallel ? opts->parallel : 16;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kiln_error_errno(err, -errno, "upload: opening %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return kiln_error_errno(err, -errno, "upload: %s", path);
    if (!S_ISREG(st.st_mode) || st.st_size <= 0)
        return kiln_error_set(err, -KILN_E_INVALID, "upload: %s is not a non-empty raw image",
                              path);
    uint64_t size = (uint64_t)st.st_size;
    uint64_t gib = (size + GIB - 1) / GIB;
    ret->blocks_total = gib * (GIB / KILN_EBS_BLOCK_SIZE);

    _cleanup_free_ uint64_t *blocks = NULL;
    size_t n_blocks = 0;
    int r = allocated_blocks(fd, size, &blocks, &n_blocks, err);
    if (r < 0)
        return r;

    struct kiln_ebs_start_request sreq = {.volume_size = (long long)gib,
                                          .description = opts->description,
                                          .client_token = opts->client_token,
                                          .tag_keys = opts->tag_keys,
                                          .tag_values = opts->tag_values};
    struct kiln_ebs_snapshot snap;
    /* Each call gets the client's own budget, never more than what is left overall. */
    double old_budget = kiln_aws_client_set_budget(c, budget);
    kiln_aws_client_set_budget(c, budget < old_budget ? budget : old_budget);
    r = kiln_ebs_start_snapshot(c, &sreq, &snap, err);
    if (r < 0) {
        kiln_aws_client_set_budget(c, old_budget);
        return r;
    }
    ret->snapshot_id = TAKE_PTR(snap.snapshot_id);
    kiln_ebs_snapshot_clear(&snap);

    struct kiln_aws_stats st0;
    kiln_aws_client_stats(c, &st0);
    struct upload_ctx u = {.c = c, .fd = fd, .path = path, .size = size, .blocks = blocks,
                           .n_blocks = n_blocks, .deadline = deadline, .budget = budget,
                           .client_budget = old_budget, .ret = ret};
    if (opts->journal) {
        r = journal_load(opts->journal, ret->snapshot_id, size, &u.done_blocks, &u.n_done_blocks,
                         err);
        if (r == 0) {
            bool resume = u.n_done_blocks > 0;
            int jfd = open(opts->journal,
                           O_WRONLY | O_CREAT | O_CLOEXEC | (resume ? O_APPEND : O_TRUNC), 0600);
            u.journal = jfd >= 0 ? fdopen(jfd, resume ? "a" : "w") : NULL;
            if (!u.journal) {
                r = kiln_error_errno(err, -errno, "journal %s", opts->journal);
                if (jfd >= 0)
                    close(jfd);
            } else if (!resume) {
                fprintf(u.journal, "kiln-ebs-journal 1 %s %" PRIu64 "\n", ret->snapshot_id,
                        size);
                fflush(u.journal);
            }
        }
        if (r < 0) {
            free(u.done_blocks);
            kiln_aws_client_set_budget(c, old_budget);
            return r;
        }
    }
    u.digests = kiln_calloc(n_blocks + 1, 32);
    u.bufs = kiln_malloc((size_t)parallel * KILN_EBS_BLOCK_SIZE);
    u.reqs = kiln_new(struct kiln_aws_request, parallel);
    u.paths = kiln_new(char *, parallel);
    u.slot_index = kiln_new(uint64_t, parallel);
    u.slot_digest = kiln_new(uint8_t *, parallel);
    r = kiln_aws_call_stream(c, parallel, upload_feed, upload_done, &u, err);
    if (u.journal && fclose(u.journal) != 0 && r == 0)
        r = kiln_error_errno(err, -errno, "journal %s", opts->journal);
    free(u.done_blocks);
    free(u.slot_index);
    free(u.slot_digest);
    for (size_t i = 0; i < parallel; i++) {
        kiln_aws_request_clear(&u.reqs[i]);
        free(u.paths[i]);
    }
    free(u.bufs);
    free(u.reqs);
    free(u.paths);
    uint8_t (*digests)[32] = u.digests;
    size_t n_digests = u.n_digests;
    if (r == 0 && mono() >= deadline)
        r = kiln_error_set(err, -ETIMEDOUT, "time budget of %.0f s used up before "
                                            "CompleteSnapshot", budget);
    if (r == 0) {
        double left = deadline - mono();
        kiln_aws_client_set_budget(c, left < old_budget ? left : old_budget);
        char agg[45];
        kiln_ebs_aggregate_checksum((const uint8_t(*)[32])digests, n_digests, agg);
        _cleanup_free_ char *status = NULL;
        r = kiln_ebs_complete_snapshot(c, ret->snapshot_id,
                                       ret->blocks_sent + ret->blocks_resumed, agg, &status, err);
        if (r == 0 && opts->journal)
            unlink(opts->journal);
    }
    free(digests);
    struct kiln_aws_stats st1;
    kiln_aws_client_stats(c, &st1);
    ret->bytes_sent = st1.bytes_sent - st0.bytes_sent;
    ret->retries = st1.retries - st0.retries;
    kiln_aws_client_set_budget(c, old_budget);
    if (r < 0)
        return kiln_error_prefix(err, r, "upload of %s to snapshot %s", path, ret->snapshot_id);
    kiln_debug("ebs upload: %s -> %s, %" PRIu64 " blocks sent, %" PRIu64 " zero blocks skipped",
               path, ret->snapshot_id, ret->blocks_sent, ret->blocks_zero);
    return 0;
}

struct download_ctx {
    const struct kiln_ebs_block_list *l;
    const char *snapshot_id;
    const char *path;
    int fd;
    size_t next;
    size_t *slot_block;
    char **strs;
    struct kiln_aws_request *reqs;
    uint64_t written;
};

static int
download_feed(void *ctx, size_t slot, const struct kiln_aws_request **req, struct kiln_error *err)
{
    struct download_ctx *d = ctx;
    if (d->next >= d->l->n)
        return 0;
    const struct kiln_ebs_block *b = &d->l->v[d->next];
    if (b->index >= (uint64_t)d->l->volume_size * (GIB / KILN_EBS_BLOCK_SIZE))
        return kiln_error_set(err, -KILN_E_PARSE, "block %" PRIu64 " lies beyond the %lld GiB "
                                                  "volume", b->index, d->l->volume_size);
    d->slot_block[slot] = d->next++;
    free(d->strs[2 * slot]);
    free(d->strs[2 * slot + 1]);
    d->strs[2 * slot] = kiln_asprintf("/snapshots/%s/blocks/%" PRIu64, d->snapshot_id, b->index);
    struct kiln_buf q;
    kiln_buf_init(&q);
    kiln_buf_append_str(&q, "blockToken=");
    kiln_aws_uri_encode(&q, b->token, strlen(b->token), false);
    d->strs[2 * slot + 1] = kiln_buf_steal(&q);
    d->reqs[slot] = (struct kiln_aws_request){.service = "ebs", .method = "GET",
                                              .path = d->strs[2 * slot],
                                              .query = d->strs[2 * slot + 1]};
    *req = &d->reqs[slot];
    return 1;
}

static int
download_done(void *ctx, size_t slot, struct kiln_aws_response *resp, int result,
              struct kiln_error *xerr)
{
    struct download_ctx *d = ctx;
    if (result < 0)
        return result;
    const struct kiln_ebs_block *b = &d->l->v[d->slot_block[slot]];
    const char *sum = kiln_aws_headers_get(&resp->headers, "x-amz-Checksum");
    char mine[45];
    kiln_ebs_checksum(resp->body.data, resp->body.len, mine);
    if (resp->body.len != KILN_EBS_BLOCK_SIZE || !sum || strcmp(sum, mine) != 0)
        return kiln_error_set(xerr, -EIO, "block %" PRIu64 ": %zu bytes, checksum %s, "
                                          "computed %s", b->index, resp->body.len,
                              sum ? sum : "missing", mine);
    if (pwrite(d->fd, resp->body.data, KILN_EBS_BLOCK_SIZE,
               (off_t)(b->index * KILN_EBS_BLOCK_SIZE)) != KILN_EBS_BLOCK_SIZE)
        return kiln_error_errno(xerr, errno ? -errno : -EIO, "writing %s", d->path);
    d->written++;
    return 0;
}

int
kiln_ebs_download_snapshot(struct kiln_aws_client *c, const char *snapshot_id, const char *path,
                           unsigned parallel, uint64_t *ret_blocks, struct kiln_error *err)
{
    if (ret_blocks)
        *ret_blocks = 0;
    if (!parallel)
        parallel = 16;
    struct kiln_ebs_block_list l;
    int r = kiln_ebs_list_snapshot_blocks_all(c, snapshot_id, &l, err);
    if (r < 0)
        return r;
    if (l.block_size && l.block_size != KILN_EBS_BLOCK_SIZE) {
        kiln_ebs_block_list_clear(&l);
        return kiln_error_set(err, -KILN_E_UNSUPPORTED, "snapshot %s: block size %lld",
                              snapshot_id, l.block_size);
    }
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        kiln_ebs_block_list_clear(&l);
        return kiln_error_errno(err, -errno, "download: creating %s", path);
    }
    if (ftruncate(fd, (off_t)((uint64_t)l.volume_size * GIB)) < 0) {
        kiln_ebs_block_list_clear(&l);
        return kiln_error_errno(err, -errno, "download: sizing %s", path);
    }
    struct download_ctx d = {.l = &l, .snapshot_id = snapshot_id, .path = path, .fd = fd};
    d.slot_block = kiln_new(size_t, parallel);
    d.strs = kiln_new(char *, 2 * (size_t)parallel);
    d.reqs = kiln_new(struct kiln_aws_request, parallel);
    r = kiln_aws_call_stream(c, parallel, download_feed, download_done, &d, err);
    for (size_t i = 0; i < 2 * (size_t)parallel; i++)
        free(d.strs[i]);
    free(d.strs);
    free(d.reqs);
    free(d.slot_block);
    kiln_ebs_block_list_clear(&l);
    if (r == 0 && fsync(fd) < 0)
        r = kiln_error_errno(err, -errno, "download: writing %s", path);
    if (r == 0 && ret_blocks)
        *ret_blocks = d.written;
    return r < 0 ? kiln_error_prefix(err, r, "download of snapshot %s", snapshot_id) : 0;
}
