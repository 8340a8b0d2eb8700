/* VM tests of the whole build lifecycle: the factory with the libvirt driver and the tiny image,
 * real guests under TCG (KILN_TEST_ACCEL to change it). Success (the greeting written in the
 * build survives the snapshot and is checked on a fresh test instance), a failing component,
 * and a kept instance reaped afterwards. After each: no domain of the build is left in libvirt
 * and no resource in the store. Labels: vm. */
#include "kiln-test.h"

#include "factory-vm-common.h"

#include <fcntl.h>
#include <libvirt/libvirt.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/json.h"
#include "factory/build.h"
#include "images/catalog.h"

struct fx {
    struct vm_home h;
};

/* The tiny image as tests/vm/setup built it in the default Kiln home. */
static int
resolve_tiny(void *userdata, const struct kiln_recipe *recipe, struct kiln_image_ref *ret,
             struct kiln_error *err)
{
    return kiln_catalog_resolve(NULL, recipe->parent_image, ret, err);
}

static int
setup(void **state)
{
    struct fx *f = kiln_new(struct fx, 1);
    if (vm_home_open(&f->h, "kiln-build-vm", "[qcow2, raw]", false) < 0)
        return -1;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    vm_home_close(&f->h);
    free(f);
    return 0;
}

static struct kiln_build_options
options(struct fx *f)
{
    return (struct kiln_build_options){
        .recipe_path = f->h.recipe,
        .infrastructure_path = f->h.infra,
        .distribution_path = f->h.dist,
        .home = f->h.dir,
        .store = f->h.store,
        .resolve_parent = resolve_tiny,
        .ready_timeout_seconds = 300,
    };
}

static void
test_build_tiny(void **state)
{
    struct fx *f = *state;
    char *comp =
        kiln_asprintf("%s/examples/recipes/components/hello-world.yml", kiln_test_source_dir());
    /* The first step of the build finds the network configured (the agent's ready command). */
    vm_put(f->h.dir, "network.yml",
           "name: network-first\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
           "      - name: DefaultRoute\n        action: ExecuteBash\n        inputs:\n"
           "          commands: [\"ip route | grep -q 'default via 10.0.2.2'\"]\n");
    char *recipe = kiln_asprintf("name: vm-hello\nsemanticVersion: 1.0.0\nparentImage: tiny\n"
                                 "components:\n  - path: network.yml\n  - path: %s\n"
                                 "    parameters:\n"
                                 "      - name: greeting\n        value: [hello from a vm test]\n",
                                 comp);
    vm_put(f->h.dir, "recipe.yml", recipe);
    struct kiln_build_options opts = options(f);
    struct kiln_build_result res;
    struct kiln_error err = {0};
    if (kiln_build_run(&opts, &res, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(res.status, KILN_IMAGE_AVAILABLE);
    vm_assert_no_resources(&f->h, res.build_id);

    struct kiln_image_record *rec = NULL;
    assert_int_equal(kiln_store_image_get_by_build_id(f->h.store, res.build_id, &rec, NULL), 0);
    assert_int_equal(rec->n_outputs, 2);
    for (size_t i = 0; i < rec->n_outputs; i++) {
        struct stat st;
        assert_int_equal(stat(rec->outputs[i].path, &st), 0);
        assert_true(st.st_size > 1 << 20);
    }
    /* Both instances' console logs and the agent's TOE folders are kept. */
    char *console = kiln_asprintf("%s/%s-build.console.log", rec->log_dir, res.build_id);
    assert_int_equal(access(console, R_OK), 0);
    free(console);
    console = kiln_asprintf("%s/%s-test.console.log", rec->log_dir, res.build_id);
    assert_int_equal(access(console, R_OK), 0);
    free(console);
    char *work = kiln_asprintf("%s/builds/%s", f->h.dir, res.build_id);
    assert_int_equal(access(work, F_OK), -1);
    free(work);
    /* The inventory ran in the guest: the tiny image has no package manager. */
    json_t *m = NULL;
    assert_int_equal(kiln_json_load_file(rec->manifest_path, 1 << 20, &m, NULL), 0);
    assert_string_equal(kiln_json_get_str(m, "installedPackagesSource"), "none");
    assert_true(json_is_array(json_object_get(m, "installedPackages")));
    assert_int_equal(json_array_size(json_object_get(m, "installedPackages")), 0);
    json_decref(m);
    kiln_image_record_free(rec);
    kiln_build_result_clear(&res);
    free(recipe);
    free(comp);
}

static void
test_failing_component(void **state)
{
    struct fx *f = *state;
    vm_put(f->h.dir, "fails.yml",
           "name: fails\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
           "      - name: Fail\n        action: ExecuteBash\n        inputs:\n"
           "          commands: [\"echo about to fail\", \"exit 7\"]\n");
    vm_put(f->h.dir, "recipe.yml",
           "name: vm-fails\nsemanticVersion: 1.0.0\nparentImage: tiny\ncomponents:\n"
           "  - path: fails.yml\n");
    struct kiln_build_options opts = options(f);
    opts.skip_tests = true;
    struct kiln_build_result res;
    struct kiln_error err = {0};
    assert_true(kiln_build_run(&opts, &res, &err) < 0);
    assert_int_equal(res.status, KILN_IMAGE_FAILED);
    assert_non_null(strstr(res.reason, "component 1 (fails,"));
    /* The reason names the step and quotes the guest's last output. */
    assert_non_null(strstr(res.reason, "failed in build/Fail"));
    assert_non_null(strstr(res.reason, "exit status 7"));
    assert_non_null(strstr(res.reason, "last output: about to fail"));
    vm_assert_no_resources(&f->h, res.build_id);
    kiln_build_result_clear(&res);
}

static void
test_keep_and_reap(void **state)
{
    struct fx *f = *state;
    char *infra = kiln_asprintf("driver: libvirt\nlibvirt:\n  uri: %s\n  accel: tcg\nvcpus: 1\n"
                                "memoryMiB: 256\nterminateInstanceOnFailure: false\n",
                                vm_uri());
    vm_put(f->h.dir, "infra.yml", infra);
    free(infra);
    vm_put(f->h.dir, "fails.yml",
           "name: fails\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
           "      - name: Fail\n        action: ExecuteBash\n        inputs:\n"
           "          commands: [\"exit 7\"]\n");
    vm_put(f->h.dir, "recipe.yml",
           "name: vm-keep\nsemanticVersion: 1.0.0\nparentImage: tiny\ncomponents:\n"
           "  - path: fails.yml\n");
    struct kiln_build_options opts = options(f);
    struct kiln_build_result res;
    struct kiln_error err = {0};
    assert_true(kiln_build_run(&opts, &res, &err) < 0);
    assert_int_equal(res.status, KILN_IMAGE_FAILED);
    assert_non_null(res.kept_instance);
    /* The failed guest is still there, and a plain reap leaves it alone. */
    assert_int_equal(vm_domains_of(res.build_id), 1);
    assert_int_equal(kiln_build_reap(f->h.store, NULL, false, NULL, NULL, &err), 0);
    assert_int_equal(vm_domains_of(res.build_id), 1);
    assert_int_equal(kiln_build_reap(f->h.store, NULL, true, NULL, NULL, &err), 1);
    vm_assert_no_resources(&f->h, res.build_id);
    kiln_build_result_clear(&res);
}

extern char **environ;

/* Ctrl-C in the middle of a step: `kiln build` ends CANCELLED with exit code 130 within
 * seconds, and the guest is gone. */
static void
test_cli_cancel(void **state)
{
    struct fx *f = *state;
    vm_put(f->h.dir, "slow.yml",
           "name: slow\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
           "      - name: Sleep\n        action: ExecuteBash\n        inputs:\n"
           "          commands: [\"echo sleeping\", \"sleep 300\"]\n");
    vm_put(f->h.dir, "recipe.yml",
           "name: vm-cancel\nsemanticVersion: 1.0.0\nparentImage: tiny\ncomponents:\n"
           "  - path: slow.yml\n");
    /* The CLI resolves tiny in its own home: give it the catalog's images folder. */
    char *catalog = kiln_home_dir();
    char *images = kiln_path_join(catalog, "images");
    char *link = kiln_path_join(f->h.dir, "images");
    assert_int_equal(symlink(images, link), 0);
    const char *bdir = getenv("KILN_BUILD_DIR");
    char *bin = kiln_asprintf("%s/factory/kiln", bdir ? bdir : "build");
    char *errpath = kiln_path_join(f->h.dir, "stderr");
    const char *argv[] = {bin,       "--home",           f->h.dir,   "build",          "--recipe",
                          f->h.recipe, "--infrastructure", f->h.infra, "--distribution", f->h.dist,
                          NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    bool running = false;
    for (int i = 0; i < 600 && !running; i++) {
        char *text = NULL;
        if (kiln_read_file(errpath, 1 << 20, &text, NULL, NULL) == 0)
            running = strstr(text, "build/Sleep") != NULL;
        free(text);
        if (!running)
            usleep(200 * 1000);
    }
    assert_true(running);
    sleep(1);
    time_t t0 = time(NULL);
    assert_int_equal(kill(pid, SIGINT), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 130);
    assert_true(time(NULL) - t0 < 60);
    struct kiln_image_record *rec = NULL;
    assert_int_equal(kiln_store_image_get(f->h.store, "vm-cancel", "1.0.0", 1, &rec, NULL), 0);
    assert_int_equal(rec->status, KILN_IMAGE_CANCELLED);
    vm_assert_no_resources(&f->h, rec->build_id);
    kiln_image_record_free(rec);
    free(errpath);
    free(bin);
    free(link);
    free(images);
    free(catalog);
}

KILN_TEST_MAIN(cmocka_unit_test_setup_teardown(test_build_tiny, setup, teardown),
               cmocka_unit_test_setup_teardown(test_failing_component, setup, teardown),
               cmocka_unit_test_setup_teardown(test_keep_and_reap, setup, teardown),
               cmocka_unit_test_setup_teardown(test_cli_cancel, setup, teardown))
