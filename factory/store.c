/* The SQLite state store: images, outputs, live resources, schema migrations, build locks. */
#include "factory/store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/fs.h"

/* Long enough for a parallel build to finish its short write transactions. */
#define BUSY_TIMEOUT_MS 30000

struct kiln_store {
    sqlite3 *db;
    char *home;
};

static const char *const status_names[] = {
    [KILN_IMAGE_PENDING] = "PENDING",     [KILN_IMAGE_BUILDING] = "BUILDING",
    [KILN_IMAGE_TESTING] = "TESTING",     [KILN_IMAGE_DISTRIBUTING] = "DISTRIBUTING",
    [KILN_IMAGE_AVAILABLE] = "AVAILABLE", [KILN_IMAGE_FAILED] = "FAILED",
    [KILN_IMAGE_CANCELLED] = "CANCELLED",
};

const char *
kiln_image_status_name(enum kiln_image_status s)
{
    return (size_t)s < ARRAY_SIZE(status_names) ? status_names[s] : "UNKNOWN";
}

int
kiln_image_status_from_name(const char *name, enum kiln_image_status *ret)
{
    for (size_t i = 0; i < ARRAY_SIZE(status_names); i++)
        if (kiln_streq(status_names[i], name)) {
            *ret = (enum kiln_image_status)i;
            return 0;
        }
    return -EINVAL;
}

bool
kiln_image_status_is_final(enum kiln_image_status s)
{
    return s == KILN_IMAGE_AVAILABLE || s == KILN_IMAGE_FAILED || s == KILN_IMAGE_CANCELLED;
}

bool
kiln_image_status_can_move(enum kiln_image_status from, enum kiln_image_status to)
{
    if (kiln_image_status_is_final(from))
        return false;
    if (to == KILN_IMAGE_FAILED || to == KILN_IMAGE_CANCELLED)
        return true;
    switch (from) {
    case KILN_IMAGE_PENDING:
        return to == KILN_IMAGE_BUILDING;
    case KILN_IMAGE_BUILDING:
        return to == KILN_IMAGE_TESTING || to == KILN_IMAGE_DISTRIBUTING;
    case KILN_IMAGE_TESTING:
        return to == KILN_IMAGE_DISTRIBUTING;
    case KILN_IMAGE_DISTRIBUTING:
        return to == KILN_IMAGE_AVAILABLE;
    default:
        return false;
    }
}

/* ---- schema ---- */

/* migrations[i] takes the schema from version i to i + 1. Never edit one that shipped: add. */
static const char *const migrations[] = {
    "CREATE TABLE images ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  version TEXT NOT NULL,"
    "  build INTEGER NOT NULL,"
    "  status TEXT NOT NULL,"
    "  reason TEXT,"
    "  created INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL,"
    "  finished INTEGER NOT NULL DEFAULT 0,"
    "  build_id TEXT NOT NULL UNIQUE,"
    "  pid INTEGER NOT NULL,"
    "  driver TEXT,"
    "  uri TEXT,"
    "  recipe_path TEXT,"
    "  work_dir TEXT,"
    "  log_dir TEXT,"
    "  manifest_path TEXT,"
    "  UNIQUE (name, version, build));"
    "CREATE TABLE outputs ("
    "  id INTEGER PRIMARY KEY,"
    "  image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,"
    "  target TEXT NOT NULL,"
    "  format TEXT NOT NULL,"
    "  path TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  sha256 TEXT);"
    "CREATE TABLE resources ("
    "  id INTEGER PRIMARY KEY,"
    "  build_id TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  rid TEXT NOT NULL,"
    "  driver TEXT,"
    "  created INTEGER NOT NULL,"
    "  kept INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE (build_id, kind, rid));"
    "CREATE INDEX resources_build ON resources(build_id);",
};

static int
sql_error(struct kiln_store *s, struct kiln_error *err, const char *what)
{
    int code = sqlite3_errcode(s->db);
    int r = code == SQLITE_BUSY || code == SQLITE_LOCKED ? -EBUSY : -KILN_E_FAILED;
    kiln_error_set(err, r, "state store (%s/kiln.db): %s: %s", s->home, what,
                   sqlite3_errmsg(s->db));
    if (err && r == -EBUSY)
        err->retryable = true;
    return r;
}

static int
exec(struct kiln_store *s, const char *sql, struct kiln_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        kiln_error_set(err, -KILN_E_FAILED, "state store (%s/kiln.db): %s", s->home,
                       msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return -KILN_E_FAILED;
    }
    return 0;
}

int
kiln_store_schema_version(struct kiln_store *s)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int
migrate(struct kiln_store *s, struct kiln_error *err)
{
    int r = exec(s, "BEGIN IMMEDIATE", err);
    if (r < 0)
        return r;
    int v = kiln_store_schema_version(s);
    if (v < 0 || v > (int)ARRAY_SIZE(migrations)) {
        exec(s, "ROLLBACK", NULL);
        return kiln_error_set(err, -KILN_E_UNSUPPORTED,
                              "state store %s/kiln.db has schema version %d; this kiln knows up "
                              "to %zu: use a newer kiln",
                              s->home, v, ARRAY_SIZE(migrations));
    }
    for (size_t i = (size_t)v; i < ARRAY_SIZE(migrations); i++) {
        r = exec(s, migrations[i], err);
        if (r < 0) {
            exec(s, "ROLLBACK", NULL);
            return kiln_error_prefix(err, r, "schema migration %zu -> %zu", i, i + 1);
        }
    }
    _cleanup_free_ char *set = kiln_asprintf("PRAGMA user_version = %zu", ARRAY_SIZE(migrations));
    r = exec(s, set, err);
    if (r < 0) {
        exec(s, "ROLLBACK", NULL);
        return r;
    }
    return exec(s, "COMMIT", err);
}

int
kiln_store_open(const char *home, struct kiln_store **ret, struct kiln_error *err)
{
    int r = kiln_mkdir_p(home, 0755, err);
    if (r < 0)
        return kiln_error_prefix(err, r, "Kiln home");
    struct kiln_store *s = kiln_new(struct kiln_store, 1);
    s->home = kiln_strdup(home);
    _cleanup_free_ char *path = kiln_path_join(home, "kiln.db");
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        r = kiln_error_set(err, -KILN_E_FAILED, "cannot open the state store %s: %s", path,
                           s->db ? sqlite3_errmsg(s->db) : "out of memory");
        kiln_store_free(s);
        return r;
    }
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    if ((r = exec(s, "PRAGMA journal_mode = WAL", err)) < 0 ||
        (r = exec(s, "PRAGMA foreign_keys = ON", err)) < 0 ||
        (r = exec(s, "PRAGMA synchronous = NORMAL", err)) < 0 || (r = migrate(s, err)) < 0) {
        kiln_store_free(s);
        return r;
    }
    *ret = s;
    return 0;
}

void
kiln_store_free(struct kiln_store *s)
{
    if (!s)
        return;
    sqlite3_close(s->db);
    free(s->home);
    free(s);
}

const char *
kiln_store_home(const struct kiln_store *s)
{
    return s->home;
}

/* ---- statements ---- */

static void
stmt_freep(sqlite3_stmt **st)
{
    sqlite3_finalize(*st);
}
#define _cleanup_stmt_ _cleanup_(stmt_freep)

static int
prepare(struct kiln_store *s, const char *sql, sqlite3_stmt **ret, struct kiln_error *err)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, ret, NULL) != SQLITE_OK)
        return sql_error(s, err, "prepare");
    return 0;
}

static void
bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static char *
col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? kiln_strdup((const char *)t) : NULL;
}

static long long
now(void)
{
    return (long long)time(NULL);
}

/* ---- images ---- */

void
kiln_image_record_free(struct kiln_image_record *r)
{
    if (!r)
        return;
    free(r->name);
    free(r->version);
    free(r->reason);
    free(r->build_id);
    free(r->driver);
    free(r->uri);
    free(r->recipe_path);
    free(r->work_dir);
    free(r->log_dir);
    free(r->manifest_path);
    for (size_t i = 0; i < r->n_outputs; i++) {
        free(r->outputs[i].target);
        free(r->outputs[i].format);
        free(r->outputs[i].path);
        free(r->outputs[i].sha256);
    }
    free(r->outputs);
    free(r);
}

void
kiln_image_record_list_free(struct kiln_image_record **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kiln_image_record_free(list[i]);
    free(list);
}

#define IMAGE_COLUMNS                                                                              \
    "id, name, version, build, status, reason, created, updated, finished, build_id, pid, "        \
    "driver, uri, recipe_path, work_dir, log_dir, manifest_path"

static struct kiln_image_record *
row_to_image(sqlite3_stmt *st)
{
    struct kiln_image_record *r = kiln_new(struct kiln_image_record, 1);
    r->id = sqlite3_column_int64(st, 0);
    r->name = col_text(st, 1);
    r->version = col_text(st, 2);
    r->build = (long)sqlite3_column_int64(st, 3);
    const char *status = (const char *)sqlite3_column_text(st, 4);
    if (kiln_image_status_from_name(status, &r->status) < 0)
        r->status = KILN_IMAGE_FAILED;
    r->reason = col_text(st, 5);
    r->created = sqlite3_column_int64(st, 6);
    r->updated = sqlite3_column_int64(st, 7);
    r->finished = sqlite3_column_int64(st, 8);
    r->build_id = col_text(st, 9);
    r->pid = (long)sqlite3_column_int64(st, 10);
    r->driver = col_text(st, 11);
    r->uri = col_text(st, 12);
    r->recipe_path = col_text(st, 13);
    r->work_dir = col_text(st, 14);
    r->log_dir = col_text(st, 15);
    r->manifest_path = col_text(st, 16);
    return r;
}

static int
load_outputs(struct kiln_store *s, struct kiln_image_record *r, struct kiln_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int ret = prepare(s,
                      "SELECT target, format, path, size, sha256 FROM outputs WHERE image_id = ? "
                      "ORDER BY id",
                      &st, err);
    if (ret < 0)
        return ret;
    sqlite3_bind_int64(st, 1, r->id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        r->outputs = kiln_reallocarray(r->outputs, r->n_outputs + 1, sizeof(*r->outputs));
        struct kiln_image_output *o = &r->outputs[r->n_outputs++];
        o->target = col_text(st, 0);
        o->format = col_text(st, 1);
        o->path = col_text(st, 2);
        o->size = sqlite3_column_int64(st, 3);
        o->sha256 = col_text(st, 4);
    }
    return rc == SQLITE_DONE ? 0 : sql_error(s, err, "read outputs");
}

/* A build id that is unique, short and safe in domain names, file names and tags. */
static char *
make_build_id(const char *name, const char *version, long build)
{
    uint8_t rnd[4] = {0};
    if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
        unsigned long long t = (unsigned long long)time(NULL) ^ (unsigned long long)getpid();
        memcpy(rnd, &t, sizeof(rnd));
    }
    _cleanup_free_ char *safe = kiln_strndup(name, 40);
    for (char *p = safe; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-'))
            *p = '-';
    _cleanup_free_ char *v = kiln_strdup(version);
    for (char *p = v; *p; p++)
        if (*p == '.')
            *p = '-';
    return kiln_asprintf("kiln-%s-%s-%ld-%02x%02x%02x%02x", safe, v, build, rnd[0], rnd[1], rnd[2],
                         rnd[3]);
}

static int
insert_image(struct kiln_store *s, const char *name, const char *version, const char *driver,
             const char *uri, const char *recipe_path, char **ret_build_id, struct kiln_error *err)
{
    long build;
    {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = prepare(s,
                        "SELECT COALESCE(MAX(build), 0) + 1 FROM images WHERE name = ? AND "
                        "version = ?",
                        &st, err);
        if (r < 0)
            return r;
        bind_text(st, 1, name);
        bind_text(st, 2, version);
        if (sqlite3_step(st) != SQLITE_ROW)
            return sql_error(s, err, "next build number");
        build = (long)sqlite3_column_int64(st, 0);
    }
    _cleanup_free_ char *build_id = make_build_id(name, version, build);
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prepare(s,
                    "INSERT INTO images (name, version, build, status, created, updated, "
                    "build_id, pid, driver, uri, recipe_path) VALUES (?, ?, ?, 'PENDING', ?, ?, "
                    "?, ?, ?, ?, ?)",
                    &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, name);
    bind_text(st, 2, version);
    sqlite3_bind_int64(st, 3, build);
    sqlite3_bind_int64(st, 4, now());
    sqlite3_bind_int64(st, 5, now());
    bind_text(st, 6, build_id);
    sqlite3_bind_int64(st, 7, getpid());
    bind_text(st, 8, driver);
    bind_text(st, 9, uri);
    bind_text(st, 10, recipe_path);
    if (sqlite3_step(st) != SQLITE_DONE)
        return sql_error(s, err, "create image");
    *ret_build_id = TAKE_PTR(build_id);
    return 0;
}

static int
create(struct kiln_store *s, const char *name, const char *version, const char *driver,
       const char *uri, const char *recipe_path, struct kiln_image_record **ret, int *ret_lock_fd,
       struct kiln_error *err)
{
    /* IMMEDIATE takes the write lock first, so two builds cannot read the same max(build). */
    int r = exec(s, "BEGIN IMMEDIATE", err);
    if (r < 0)
        return r;
    _cleanup_free_ char *build_id = NULL;
    int fd = -1;
    r = insert_image(s, name, version, driver, uri, recipe_path, &build_id, err);
    /* The build lock is taken before the record becomes visible: a reaper never sees a build
     * that is starting as one that crashed. */
    if (r >= 0 && ret_lock_fd)
        r = kiln_store_build_lock(s, build_id, &fd, err);
    if (r >= 0)
        r = exec(s, "COMMIT", err);
    if (r < 0) {
        exec(s, "ROLLBACK", NULL);
        if (fd >= 0)
            kiln_store_build_unlock(s, build_id, fd);
        return r;
    }
    if (ret) {
        r = kiln_store_image_get_by_build_id(s, build_id, ret, err);
        if (r < 0) {
            if (fd >= 0)
                kiln_store_build_unlock(s, build_id, fd);
            return r;
        }
    }
    if (ret_lock_fd)
        *ret_lock_fd = fd;
    return 0;
}

int
kiln_store_image_create(struct kiln_store *s, const char *name, const char *version,
                        const char *driver, const char *uri, const char *recipe_path,
                        struct kiln_image_record **ret, struct kiln_error *err)
{
    return create(s, name, version, driver, uri, recipe_path, ret, NULL, err);
}

int
kiln_store_image_create_locked(struct kiln_store *s, const char *name, const char *version,
                               const char *driver, const char *uri, const char *recipe_path,
                               struct kiln_image_record **ret, int *ret_lock_fd,
                               struct kiln_error *err)
{
    return create(s, name, version, driver, uri, recipe_path, ret, ret_lock_fd, err);
}

static int
get_status(struct kiln_store *s, long long id, enum kiln_image_status *ret, struct kiln_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prepare(s, "SELECT status FROM images WHERE id = ?", &st, err);
    if (r < 0)
        return r;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return kiln_error_set(err, -ENOENT, "image %lld: not in the state store", id);
    if (rc != SQLITE_ROW)
        return sql_error(s, err, "read status");
    return kiln_image_status_from_name((const char *)sqlite3_column_text(st, 0), ret);
}

static int
update_status(struct kiln_store *s, long long id, enum kiln_image_status status, const char *reason,
              struct kiln_error *err)
{
    enum kiln_image_status cur;
    int r = get_status(s, id, &cur, err);
    if (r < 0)
        return r;
    if (!kiln_image_status_can_move(cur, status))
        return kiln_error_set(err, -EINVAL, "image %lld: cannot move from %s to %s", id,
                              kiln_image_status_name(cur), kiln_image_status_name(status));
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    r = prepare(s,
                "UPDATE images SET status = ?, reason = COALESCE(?, reason), updated = ?, "
                "finished = ? WHERE id = ?",
                &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, kiln_image_status_name(status));
    bind_text(st, 2, reason);
    sqlite3_bind_int64(st, 3, now());
    sqlite3_bind_int64(st, 4, kiln_image_status_is_final(status) ? now() : 0);
    sqlite3_bind_int64(st, 5, id);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : sql_error(s, err, "set status");
}

int
kiln_store_image_set_status(struct kiln_store *s, long long id, enum kiln_image_status status,
                            const char *reason, struct kiln_error *err)
{
    int r = exec(s, "BEGIN IMMEDIATE", err);
    if (r < 0)
        return r;
    r = update_status(s, id, status, reason, err);
    if (r >= 0)
        r = exec(s, "COMMIT", err);
    if (r < 0)
        exec(s, "ROLLBACK", NULL);
    return r;
}

int
kiln_store_image_set_paths(struct kiln_store *s, long long id, const char *work_dir,
                           const char *log_dir, const char *manifest_path, struct kiln_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prepare(s,
                    "UPDATE images SET work_dir = COALESCE(?, work_dir), log_dir = COALESCE(?, "
                    "log_dir), manifest_path = COALESCE(?, manifest_path), updated = ? WHERE id "
                    "= ?",
                    &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, work_dir);
    bind_text(st, 2, log_dir);
    bind_text(st, 3, manifest_path);
    sqlite3_bind_int64(st, 4, now());
    sqlite3_bind_int64(st, 5, id);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : sql_error(s, err, "set paths");
}

int
kiln_store_image_add_output(struct kiln_store *s, long long id, const struct kiln_image_output *out,
                            struct kiln_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prepare(s,
                    "INSERT INTO outputs (image_id, target, format, path, size, sha256) VALUES "
                    "(?, ?, ?, ?, ?, ?)",
                    &st, err);
    if (r < 0)
        return r;
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, out->target);
    bind_text(st, 3, out->format);
    bind_text(st, 4, out->path);
    sqlite3_bind_int64(st, 5, out->size);
    bind_text(st, 6, out->sha256);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : sql_error(s, err, "add output");
}

static int
get_one(struct kiln_store *s, sqlite3_stmt *st, const char *what, struct kiln_image_record **ret,
        struct kiln_error *err)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return kiln_error_set(err, -ENOENT, "image %s: not found", what);
    if (rc != SQLITE_ROW)
        return sql_error(s, err, "read image");
    _cleanup_(kiln_image_record_freep) struct kiln_image_record *r = row_to_image(st);
    int ret2 = load_outputs(s, r, err);
    if (ret2 < 0)
        return ret2;
    *ret = TAKE_PTR(r);
    return 0;
}

int
kiln_store_image_get(struct kiln_store *s, const char *name, const char *version, long build,
                     struct kiln_image_record **ret, struct kiln_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prepare(s,
                    build > 0 ? "SELECT " IMAGE_COLUMNS " FROM images WHERE name = ? AND "
                                "version = ? AND build = ?"
                              : "SELECT " IMAGE_COLUMNS " FROM images WHERE name = ? AND "
                                "version = ? ORDER BY build DESC LIMIT 1",
                    &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, name);
    bind_text(st, 2, version);
    if (build > 0)
        sqlite3_bind_int64(st, 3, build);
    _cleanup_free_ char *what = build > 0 ? kiln_asprintf("%s/%s/%ld", name, version, build)
                                          : kiln_asprintf("%s/%s", name, version);
    return get_one(s, st, what, ret, err);
}

int
kiln_store_image_get_by_build_id(struct kiln_store *s, const char *build_id,
                                 struct kiln_image_record **ret, struct kiln_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prepare(s, "SELECT " IMAGE_COLUMNS " FROM images WHERE build_id = ?", &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, build_id);
    return get_one(s, st, build_id, ret, err);
}

int
kiln_store_image_list(struct kiln_store *s, struct kiln_image_record ***ret, size_t *ret_n,
                      struct kiln_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prepare(s, "SELECT " IMAGE_COLUMNS " FROM images ORDER BY id", &st, err);
    if (r < 0)
        return r;
    struct kiln_image_record **list = NULL;
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        list = kiln_reallocarray(list, n + 1, sizeof(*list));
        list[n++] = row_to_image(st);
    }
    if (rc != SQLITE_DONE) {
        kiln_image_record_list_free(list, n);
        return sql_error(s, err, "list images");
    }
    for (size_t i = 0; i < n; i++) {
        r = load_outputs(s, list[i], err);
        if (r < 0) {
            kiln_image_record_list_free(list, n);
            return r;
        }
    }
    *ret = list;
    *ret_n = n;
    return 0;
}

/* ---- resources ---- */

int
kiln_store_resource_add(struct kiln_store *s, const char *build_id, const char *kind,
                        const char *rid, const char *driver, struct kiln_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prepare(s,
                    "INSERT OR REPLACE INTO resources (build_id, kind, rid, driver, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, build_id);
    bind_text(st, 2, kind);
    bind_text(st, 3, rid);
    bind_text(st, 4, driver);
    sqlite3_bind_int64(st, 5, now());
    return sqlite3_step(st) == SQLITE_DONE ? 0 : sql_error(s, err, "record resource");
}

int
kiln_store_resource_remove(struct kiln_store *s, const char *build_id, const char *kind,
                           const char *rid, struct kiln_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r =
        prepare(s, "DELETE FROM resources WHERE build_id = ? AND kind = ? AND rid = ?", &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, build_id);
    bind_text(st, 2, kind);
    bind_text(st, 3, rid);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : sql_error(s, err, "remove resource");
}

static int
build_update(struct kiln_store *s, const char *sql, const char *build_id, struct kiln_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prepare(s, sql, &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, build_id);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : sql_error(s, err, "update resources");
}

int
kiln_store_resource_keep(struct kiln_store *s, const char *build_id, struct kiln_error *err)
{
    return build_update(s, "UPDATE resources SET kept = 1 WHERE build_id = ?", build_id, err);
}

int
kiln_store_resource_clear(struct kiln_store *s, const char *build_id, struct kiln_error *err)
{
    return build_update(s, "DELETE FROM resources WHERE build_id = ?", build_id, err);
}

void
kiln_resource_record_list_free(struct kiln_resource_record *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(list[i].build_id);
        free(list[i].kind);
        free(list[i].rid);
        free(list[i].driver);
    }
    free(list);
}

int
kiln_store_resource_list(struct kiln_store *s, const char *build_id,
                         struct kiln_resource_record **ret, size_t *ret_n, struct kiln_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prepare(s,
                    build_id ? "SELECT id, build_id, kind, rid, driver, created, kept FROM "
                               "resources WHERE build_id = ? ORDER BY id"
                             : "SELECT id, build_id, kind, rid, driver, created, kept FROM "
                               "resources ORDER BY id",
                    &st, err);
    if (r < 0)
        return r;
    if (build_id)
        bind_text(st, 1, build_id);
    struct kiln_resource_record *list = NULL;
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        list = kiln_reallocarray(list, n + 1, sizeof(*list));
        struct kiln_resource_record *x = &list[n++];
        x->id = sqlite3_column_int64(st, 0);
        x->build_id = col_text(st, 1);
        x->kind = col_text(st, 2);
        x->rid = col_text(st, 3);
        x->driver = col_text(st, 4);
        x->created = sqlite3_column_int64(st, 5);
        x->kept = sqlite3_column_int(st, 6) != 0;
    }
    if (rc != SQLITE_DONE) {
        kiln_resource_record_list_free(list, n);
        return sql_error(s, err, "list resources");
    }
    *ret = list;
    *ret_n = n;
    return 0;
}

/* ---- build locks ---- */

static char *
lock_path(struct kiln_store *s, const char *build_id)
{
    _cleanup_free_ char *name = kiln_asprintf("run/%s.lock", build_id);
    return kiln_path_join(s->home, name);
}

int
kiln_store_build_lock(struct kiln_store *s, const char *build_id, int *ret_fd,
                      struct kiln_error *err)
{
    _cleanup_free_ char *run = kiln_path_join(s->home, "run");
    int r = kiln_mkdir_p(run, 0755, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *path = lock_path(s, build_id);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return kiln_error_errno(err, -errno, "%s", path);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        r = -errno;
        close(fd);
        return kiln_error_errno(err, r, "%s: build already running", path);
    }
    *ret_fd = fd;
    return 0;
}

void
kiln_store_build_unlock(struct kiln_store *s, const char *build_id, int fd)
{
    if (fd < 0)
        return;
    _cleanup_free_ char *path = lock_path(s, build_id);
    unlink(path);
    close(fd);
}

bool
kiln_store_build_is_running(struct kiln_store *s, const char *build_id)
{
    _cleanup_free_ char *path = lock_path(s, build_id);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false; /* no lock file: it finished (or never started) */
    if (flock(fd, LOCK_SH | LOCK_NB) < 0)
        return errno == EWOULDBLOCK;
    flock(fd, LOCK_UN);
    return false;
}
