/* Tests for the state store: build numbers, status transitions, outputs, resource records,
 * schema versions, build locks, and concurrent builds from several processes. */
#include "kiln-test.h"

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fs.h"
#include "factory/store.h"

struct fixture {
    char *home;
    struct kiln_store *store;
};

static int
setup(void **state)
{
    struct fixture *f = kiln_new(struct fixture, 1);
    struct kiln_error err = {0};
    if (kiln_mkdtemp("kiln-store", &f->home, &err) < 0 ||
        kiln_store_open(f->home, &f->store, &err) < 0) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    kiln_store_free(f->store);
    kiln_rm_rf(f->home, NULL);
    free(f->home);
    free(f);
    return 0;
}

static void
test_build_numbers(void **state)
{
    struct fixture *f = *state;
    struct kiln_error err = {0};
    struct kiln_image_record *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    assert_int_equal(
        kiln_store_image_create(f->store, "web", "1.0.0", "fake", NULL, "/r.yml", &a, &err), 0);
    assert_int_equal(
        kiln_store_image_create(f->store, "web", "1.0.0", "fake", NULL, "/r.yml", &b, &err), 0);
    assert_int_equal(
        kiln_store_image_create(f->store, "web", "1.1.0", "fake", NULL, "/r.yml", &c, &err), 0);
    assert_int_equal(
        kiln_store_image_create(f->store, "db", "1.0.0", "fake", NULL, "/r.yml", &d, &err), 0);
    assert_int_equal(a->build, 1);
    assert_int_equal(b->build, 2);
    assert_int_equal(c->build, 1);
    assert_int_equal(d->build, 1);
    assert_int_equal(a->status, KILN_IMAGE_PENDING);
    assert_int_equal(a->pid, getpid());
    assert_string_not_equal(a->build_id, b->build_id);
    assert_non_null(strstr(a->build_id, "web-1-0-0-1-"));

    struct kiln_image_record *got = NULL;
    assert_int_equal(kiln_store_image_get(f->store, "web", "1.0.0", 0, &got, &err), 0);
    assert_int_equal(got->build, 2); /* build 0: the newest */
    kiln_image_record_free(got);
    assert_int_equal(kiln_store_image_get(f->store, "web", "1.0.0", 1, &got, &err), 0);
    assert_string_equal(got->build_id, a->build_id);
    kiln_image_record_free(got);
    kiln_error_clear(&err);
    assert_int_equal(kiln_store_image_get(f->store, "web", "9.0.0", 1, &got, &err), -ENOENT);
    assert_non_null(strstr(err.message, "web/9.0.0/1"));

    struct kiln_image_record **list = NULL;
    size_t n = 0;
    assert_int_equal(kiln_store_image_list(f->store, &list, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_string_equal(list[3]->name, "db");
    kiln_image_record_list_free(list, n);
    kiln_image_record_free(a);
    kiln_image_record_free(b);
    kiln_image_record_free(c);
    kiln_image_record_free(d);
}

static void
test_status_transitions(void **state)
{
    struct fixture *f = *state;
    struct kiln_error err = {0};
    struct kiln_image_record *a = NULL;
    assert_int_equal(
        kiln_store_image_create(f->store, "web", "1.0.0", "fake", NULL, NULL, &a, &err), 0);
    /* Not allowed: skipping BUILDING, or leaving a final state. */
    assert_int_equal(kiln_store_image_set_status(f->store, a->id, KILN_IMAGE_TESTING, NULL, &err),
                     -EINVAL);
    assert_non_null(strstr(err.message, "cannot move from PENDING to TESTING"));
    kiln_error_clear(&err);
    enum kiln_image_status path[] = {KILN_IMAGE_BUILDING, KILN_IMAGE_TESTING,
                                     KILN_IMAGE_DISTRIBUTING, KILN_IMAGE_AVAILABLE};
    for (size_t i = 0; i < ARRAY_SIZE(path); i++)
        assert_int_equal(kiln_store_image_set_status(f->store, a->id, path[i], NULL, &err), 0);
    assert_int_equal(kiln_store_image_set_status(f->store, a->id, KILN_IMAGE_FAILED, "late", &err),
                     -EINVAL);
    struct kiln_image_record *got = NULL;
    assert_int_equal(kiln_store_image_get(f->store, "web", "1.0.0", 1, &got, &err), 0);
    assert_int_equal(got->status, KILN_IMAGE_AVAILABLE);
    assert_true(got->finished > 0);
    assert_null(got->reason);
    kiln_image_record_free(got);

    /* A failure keeps its reason; tests may be skipped (BUILDING -> DISTRIBUTING). */
    struct kiln_image_record *b = NULL;
    kiln_error_clear(&err);
    assert_int_equal(
        kiln_store_image_create(f->store, "web", "1.0.0", "fake", NULL, NULL, &b, &err), 0);
    assert_int_equal(kiln_store_image_set_status(f->store, b->id, KILN_IMAGE_BUILDING, NULL, &err),
                     0);
    assert_true(kiln_image_status_can_move(KILN_IMAGE_BUILDING, KILN_IMAGE_DISTRIBUTING));
    assert_int_equal(
        kiln_store_image_set_status(f->store, b->id, KILN_IMAGE_FAILED, "component x failed", &err),
        0);
    assert_int_equal(kiln_store_image_get(f->store, "web", "1.0.0", 2, &got, &err), 0);
    assert_int_equal(got->status, KILN_IMAGE_FAILED);
    assert_string_equal(got->reason, "component x failed");
    kiln_image_record_free(got);

    enum kiln_image_status s;
    assert_int_equal(kiln_image_status_from_name("CANCELLED", &s), 0);
    assert_int_equal(s, KILN_IMAGE_CANCELLED);
    assert_int_equal(kiln_image_status_from_name("DONE", &s), -EINVAL);
    kiln_image_record_free(a);
    kiln_image_record_free(b);
}

static void
test_outputs_and_paths(void **state)
{
    struct fixture *f = *state;
    struct kiln_error err = {0};
    struct kiln_image_record *a = NULL;
    assert_int_equal(
        kiln_store_image_create(f->store, "web", "2.0.0", "fake", "test:///", "/r.yml", &a, &err),
        0);
    assert_int_equal(kiln_store_image_set_paths(f->store, a->id, "/w", "/l", NULL, &err), 0);
    assert_int_equal(kiln_store_image_set_paths(f->store, a->id, NULL, NULL, "/m.json", &err), 0);
    struct kiln_image_output o1 = {"local:/out", "qcow2", "/out/a.qcow2", 1234, "ab"};
    struct kiln_image_output o2 = {"local:/out", "raw", "/out/a.raw", 99, NULL};
    assert_int_equal(kiln_store_image_add_output(f->store, a->id, &o1, &err), 0);
    assert_int_equal(kiln_store_image_add_output(f->store, a->id, &o2, &err), 0);
    struct kiln_image_record *got = NULL;
    assert_int_equal(kiln_store_image_get_by_build_id(f->store, a->build_id, &got, &err), 0);
    assert_string_equal(got->work_dir, "/w");
    assert_string_equal(got->log_dir, "/l");
    assert_string_equal(got->manifest_path, "/m.json");
    assert_string_equal(got->uri, "test:///");
    assert_string_equal(got->recipe_path, "/r.yml");
    assert_int_equal(got->n_outputs, 2);
    assert_string_equal(got->outputs[0].path, "/out/a.qcow2");
    assert_int_equal(got->outputs[0].size, 1234);
    assert_string_equal(got->outputs[0].sha256, "ab");
    assert_string_equal(got->outputs[1].format, "raw");
    assert_null(got->outputs[1].sha256);
    kiln_image_record_free(got);
    kiln_image_record_free(a);
}

static void
test_resources(void **state)
{
    struct fixture *f = *state;
    struct kiln_error err = {0};
    assert_int_equal(kiln_store_resource_add(f->store, "b1", "domain", "d1", "fake", &err), 0);
    assert_int_equal(kiln_store_resource_add(f->store, "b1", "overlay", "/o1", "fake", &err), 0);
    assert_int_equal(kiln_store_resource_add(f->store, "b2", "domain", "d2", "fake", &err), 0);
    /* Recording the same resource twice keeps one record. */
    assert_int_equal(kiln_store_resource_add(f->store, "b1", "domain", "d1", "fake", &err), 0);
    struct kiln_resource_record *list = NULL;
    size_t n = 0;
    assert_int_equal(kiln_store_resource_list(f->store, "b1", &list, &n, &err), 0);
    assert_int_equal(n, 2);
    kiln_resource_record_list_free(list, n);
    assert_int_equal(kiln_store_resource_remove(f->store, "b1", "domain", "d1", &err), 0);
    assert_int_equal(kiln_store_resource_list(f->store, "b1", &list, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].kind, "overlay");
    assert_string_equal(list[0].rid, "/o1");
    assert_false(list[0].kept);
    kiln_resource_record_list_free(list, n);
    assert_int_equal(kiln_store_resource_keep(f->store, "b1", &err), 0);
    assert_int_equal(kiln_store_resource_list(f->store, NULL, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_true(list[0].kept);
    assert_false(list[1].kept);
    kiln_resource_record_list_free(list, n);
    assert_int_equal(kiln_store_resource_clear(f->store, "b1", &err), 0);
    assert_int_equal(kiln_store_resource_list(f->store, NULL, &list, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].build_id, "b2");
    kiln_resource_record_list_free(list, n);
}

static void
test_schema_version(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(kiln_store_schema_version(f->store), KILN_STORE_SCHEMA_VERSION);
    /* Reopening migrates nothing and keeps the data. */
    struct kiln_error err = {0};
    assert_int_equal(
        kiln_store_image_create(f->store, "web", "1.0.0", "fake", NULL, NULL, NULL, &err), 0);
    kiln_store_free(f->store);
    assert_int_equal(kiln_store_open(f->home, &f->store, &err), 0);
    struct kiln_image_record *got = NULL;
    assert_int_equal(kiln_store_image_get(f->store, "web", "1.0.0", 1, &got, &err), 0);
    kiln_image_record_free(got);
    kiln_store_free(f->store);
    f->store = NULL;

    /* A database from a newer kiln is refused with a message that says so. */
    char *path = kiln_path_join(f->home, "kiln.db");
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    free(path);
    assert_int_equal(kiln_store_open(f->home, &f->store, &err), -KILN_E_UNSUPPORTED);
    assert_non_null(strstr(err.message, "schema version 99"));
    assert_null(f->store);
}

static void
test_build_lock(void **state)
{
    struct fixture *f = *state;
    struct kiln_error err = {0};
    assert_false(kiln_store_build_is_running(f->store, "b1"));
    int fd = -1;
    assert_int_equal(kiln_store_build_lock(f->store, "b1", &fd, &err), 0);
    assert_true(kiln_store_build_is_running(f->store, "b1"));
    int fd2 = -1;
    assert_true(kiln_store_build_lock(f->store, "b1", &fd2, &err) < 0);
    kiln_store_build_unlock(f->store, "b1", fd);
    assert_false(kiln_store_build_is_running(f->store, "b1"));

    /* A build created locked is "running" from the moment its record can be read. */
    struct kiln_image_record *r = NULL;
    assert_int_equal(
        kiln_store_image_create_locked(f->store, "web", "1.0.0", "fake", NULL, NULL, &r, &fd, &err),
        0);
    assert_true(fd >= 0);
    assert_true(kiln_store_build_is_running(f->store, r->build_id));
    kiln_store_build_unlock(f->store, r->build_id, fd);
    assert_false(kiln_store_build_is_running(f->store, r->build_id));
    kiln_image_record_free(r);

    /* A process that dies holding the lock leaves a lock that can be taken: a crash. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int cfd;
        if (kiln_store_build_lock(f->store, "b2", &cfd, NULL) < 0)
            _exit(1);
        _exit(0); /* no unlock: the lock file stays, the lock dies with us */
    }
    int status;
    waitpid(pid, &status, 0);
    assert_int_equal(WEXITSTATUS(status), 0);
    char *lock = kiln_path_join(f->home, "run/b2.lock");
    assert_int_equal(access(lock, F_OK), 0);
    free(lock);
    assert_false(kiln_store_build_is_running(f->store, "b2"));
}

/* Several processes create builds of the same name and version at once: every build number is
 * taken exactly once. */
static void
test_concurrent_builds(void **state)
{
    struct fixture *f = *state;
    enum { PROCS = 4, EACH = 25 };
    for (int p = 0; p < PROCS; p++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            struct kiln_store *s = NULL;
            struct kiln_error err = {0};
            if (kiln_store_open(f->home, &s, &err) < 0)
                _exit(2);
            for (int i = 0; i < EACH; i++) {
                struct kiln_image_record *r = NULL;
                if (kiln_store_image_create(s, "web", "1.0.0", "fake", NULL, NULL, &r, &err) < 0) {
                    fprintf(stderr, "child: %s\n", err.message);
                    _exit(3);
                }
                if (kiln_store_image_set_status(s, r->id, KILN_IMAGE_BUILDING, NULL, &err) < 0 ||
                    kiln_store_resource_add(s, r->build_id, "domain", "x", "fake", &err) < 0)
                    _exit(4);
                kiln_image_record_free(r);
            }
            kiln_store_free(s);
            _exit(0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int status;
        assert_true(wait(&status) > 0);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    struct kiln_image_record **list = NULL;
    size_t n = 0;
    struct kiln_error err = {0};
    assert_int_equal(kiln_store_image_list(f->store, &list, &n, &err), 0);
    assert_int_equal(n, PROCS * EACH);
    bool seen[PROCS * EACH + 1] = {false};
    for (size_t i = 0; i < n; i++) {
        assert_true(list[i]->build >= 1 && list[i]->build <= PROCS * EACH);
        assert_false(seen[list[i]->build]);
        seen[list[i]->build] = true;
        assert_int_equal(list[i]->status, KILN_IMAGE_BUILDING);
    }
    kiln_image_record_list_free(list, n);
    struct kiln_resource_record *res = NULL;
    assert_int_equal(kiln_store_resource_list(f->store, NULL, &res, &n, &err), 0);
    assert_int_equal(n, PROCS * EACH);
    kiln_resource_record_list_free(res, n);
}

KILN_TEST_MAIN(cmocka_unit_test_setup_teardown(test_build_numbers, setup, teardown),
               cmocka_unit_test_setup_teardown(test_status_transitions, setup, teardown),
               cmocka_unit_test_setup_teardown(test_outputs_and_paths, setup, teardown),
               cmocka_unit_test_setup_teardown(test_resources, setup, teardown),
               cmocka_unit_test_setup_teardown(test_schema_version, setup, teardown),
               cmocka_unit_test_setup_teardown(test_build_lock, setup, teardown),
               cmocka_unit_test_setup_teardown(test_concurrent_builds, setup, teardown))
