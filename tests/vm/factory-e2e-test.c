/* End-to-end VM tests of `kiln build` beyond the plain path: reboot-and-resume (AWSTOE exit code
 * 194 and the Reboot action), a boot that never reaches the agent (no agent, a kernel panic, no
 * root disk), two `kiln build` processes at once, and a hung step ended by its timeoutSeconds.
 * Real guests:
 * libvirt + the tiny image under TCG (KILN_TEST_ACCEL to change it), each test in its own Kiln
 * home. After each build: the store has the right status and reason, no libvirt domain of the
 * build is left, no resource in the store, and nothing in the home's builds/ and run/ folders
 * (overlays, sockets, locks, temporary files). Recipes: tests/data/recipes/e2e/. Labels: vm. */
#include "kiln-test.h"

#include "factory-vm-common.h"

#include <dirent.h>
#include <fcntl.h>
#include <libvirt/libvirt.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/json.h"
#include "factory/build.h"
#include "images/catalog.h"

extern char **environ;

struct fx {
    struct vm_home h;
    struct kiln_buf steps;   /* every progress step line */
    struct kiln_buf console; /* every console output of the guest's steps */
    struct kiln_build_progress progress;
};

static char *
data_path(const char *name)
{
    return kiln_asprintf("%s/tests/data/recipes/e2e/%s", kiln_test_source_dir(), name);
}

static void
on_step(void *userdata, const char *text)
{
    struct fx *f = userdata;
    kiln_buf_appendf(&f->steps, "%s\n", text);
}

static void
on_console(void *userdata, const char *stream, const char *data, size_t len)
{
    struct fx *f = userdata;
    kiln_buf_append(&f->console, data, len);
}

static int
setup(void **state)
{
    struct fx *f = kiln_new(struct fx, 1);
    if (vm_home_open(&f->h, "kiln-e2e-vm", "[qcow2]", true) < 0)
        return -1;
    kiln_buf_init(&f->steps);
    kiln_buf_init(&f->console);
    f->progress =
        (struct kiln_build_progress){.step = on_step, .console = on_console, .userdata = f};
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    vm_home_close(&f->h);
    kiln_buf_clear(&f->steps);
    kiln_buf_clear(&f->console);
    free(f);
    return 0;
}

/* Nothing of the build remains: no domain, no resource record (of this build or any), no work
 * folder, overlay, socket or lock in the home, no socket in /tmp. And the store has STATUS. */
static struct kiln_image_record *
assert_clean(struct fx *f, const char *build_id, enum kiln_image_status status)
{
    vm_assert_no_leftovers(&f->h, build_id);
    struct kiln_image_record *rec = NULL;
    assert_int_equal(kiln_store_image_get_by_build_id(f->h.store, build_id, &rec, NULL), 0);
    assert_int_equal(rec->status, status);
    if (status == KILN_IMAGE_AVAILABLE)
        assert_null(rec->reason);
    else
        assert_non_null(rec->reason);
    return rec;
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
        .ready_timeout_seconds = 300,
        .progress = &f->progress,
    };
}

static void
write_recipe(struct fx *f, const char *name, const char *component)
{
    char *comp = data_path(component);
    char *recipe = kiln_asprintf("name: %s\nsemanticVersion: 1.0.0\nparentImage: tiny\n"
                                 "components:\n  - path: %s\n",
                                 name, comp);
    vm_put(f->h.dir, "recipe.yml", recipe);
    free(recipe);
    free(comp);
}

/* The guest printed "boot id before A after B" with A != B (the step checked it too). */
static void
assert_rebooted(struct fx *f)
{
    const char *line = strstr(f->console.data ? f->console.data : "", "boot id before ");
    assert_non_null(line);
    char before[64] = "", after[64] = "";
    assert_int_equal(sscanf(line, "boot id before %63s after %63s", before, after), 2);
    assert_int_equal(strlen(before), 36);
    assert_string_not_equal(before, after);
}

static void
build_with_reboot(struct fx *f, const char *name, const char *component)
{
    write_recipe(f, name, component);
    struct kiln_build_options opts = options(f);
    struct kiln_build_result res;
    struct kiln_error err = {0};
    if (kiln_build_run(&opts, &res, &err) < 0)
        fail_msg("%s\nsteps:\n%s", err.message, f->steps.data);
    assert_int_equal(res.status, KILN_IMAGE_AVAILABLE);
    /* The host rebooted the guest, the agent resumed with the step after the reboot, and the
     * test phase on a fresh instance of the image found the marker. */
    assert_non_null(strstr(f->steps.data, "rebooting the guest"));
    assert_non_null(strstr(f->steps.data, "build/AfterReboot"));
    assert_non_null(strstr(f->steps.data, "test/MarkerSurvived"));
    assert_rebooted(f);
    struct kiln_image_record *rec = assert_clean(f, res.build_id, KILN_IMAGE_AVAILABLE);
    assert_int_equal(rec->n_outputs, 1);
    char *test_console = kiln_asprintf("%s/%s-test.console.log", rec->log_dir, res.build_id);
    assert_int_equal(access(test_console, R_OK), 0);
    free(test_console);
    kiln_image_record_free(rec);
    kiln_build_result_clear(&res);
}

static void
test_reboot_exit_194(void **state)
{
    struct fx *f = *state;
    build_with_reboot(f, "e2e-reboot-194", "reboot-194.yml");
    /* AWSTOE runs the step that exited 194 again after the reboot. */
    assert_non_null(strstr(f->console.data, "resumed after the reboot"));
}

static void
test_reboot_action(void **state)
{
    struct fx *f = *state;
    build_with_reboot(f, "e2e-reboot-action", "reboot-action.yml");
}

/* The tiny image from the catalog with words appended to its kernel command line. */
static int
resolve_tiny_with(void *userdata, const struct kiln_recipe *recipe, struct kiln_image_ref *ret,
                  struct kiln_error *err)
{
    int r = kiln_catalog_resolve(NULL, "tiny", ret, err);
    if (r < 0)
        return r;
    char *cmdline = kiln_asprintf("%s %s", ret->cmdline ? ret->cmdline : "", (char *)userdata);
    free(ret->cmdline);
    ret->cmdline = cmdline;
    return 0;
}

/* Build recipe NAME on the tiny image booted with extra kernel arguments args, a ready timeout
 * of ready_s: the build must fail. Returns how long it took, with the result in res (its reason
 * printed), after checking that the store says FAILED with that reason and nothing is left. */
static time_t
build_fails_to_boot(struct fx *f, const char *name, const char *args, int ready_s,
                    struct kiln_build_result *res)
{
    write_recipe(f, name, "write-file.yml");
    struct kiln_build_options opts = options(f);
    opts.resolve_parent = resolve_tiny_with;
    opts.resolve_userdata = (void *)args;
    opts.ready_timeout_seconds = ready_s;
    struct kiln_error err = {0};
    time_t t0 = time(NULL);
    assert_true(kiln_build_run(&opts, res, &err) < 0);
    time_t took = time(NULL) - t0;
    fprintf(stderr, "failed after %lld s: %s\n", (long long)took, res->reason);
    assert_int_equal(res->status, KILN_IMAGE_FAILED);
    struct kiln_image_record *rec = assert_clean(f, res->build_id, KILN_IMAGE_FAILED);
    assert_string_equal(rec->reason, res->reason);
    kiln_image_record_free(rec);
    return took;
}

static void
test_no_agent(void **state)
{
    struct fx *f = *state;
    /* The guest boots to its login prompt but never starts the agent. */
    struct kiln_build_result res;
    time_t took = build_fails_to_boot(f, "e2e-no-agent", "kiln.agent=0", 40, &res);
    /* Within the ready timeout (plus teardown), not before it. */
    assert_true(took >= 40);
    assert_true(took < 40 + 60);
    assert_non_null(strstr(res.reason, "never reached the agent"));
    assert_non_null(strstr(res.reason, "last console lines"));
    /* The guest's own last words: its login prompt. */
    assert_non_null(strstr(res.reason, "login:"));
    kiln_build_result_clear(&res);
}

static void
test_kernel_panic(void **state)
{
    struct fx *f = *state;
    /* The initrd hands over to an init that exits at once: the kernel panics. */
    struct kiln_build_result res;
    time_t took = build_fails_to_boot(f, "e2e-panic", "kiln.init=/bin/false", 120, &res);
    /* Seen at once, not after the ready timeout. */
    assert_true(took < 120);
    assert_non_null(strstr(res.reason, "never reached the agent"));
    assert_non_null(strstr(res.reason, "Kernel panic - not syncing"));
    assert_non_null(strstr(res.reason, "last console lines"));
    kiln_build_result_clear(&res);
}

static void
test_root_missing(void **state)
{
    struct fx *f = *state;
    /* A root disk that does not exist: the tiny image's initrd says so and powers off. */
    struct kiln_build_result res;
    time_t took = build_fails_to_boot(f, "e2e-no-root", "kiln.root=/dev/vdz", 120, &res);
    assert_true(took < 120);
    assert_non_null(strstr(res.reason, "never reached the agent (the guest stopped"));
    assert_non_null(strstr(res.reason, "cannot mount root disk /dev/vdz"));
    kiln_build_result_clear(&res);
}

static void
test_hung_step(void **state)
{
    struct fx *f = *state;
    write_recipe(f, "e2e-hung", "hung.yml");
    struct kiln_build_options opts = options(f);
    struct kiln_build_result res;
    struct kiln_error err = {0};
    time_t t0 = time(NULL);
    assert_true(kiln_build_run(&opts, &res, &err) < 0);
    time_t took = time(NULL) - t0;
    fprintf(stderr, "failed after %lld s: %s\n", (long long)took, res.reason);
    assert_int_equal(res.status, KILN_IMAGE_FAILED);
    /* Ended by the step's 10 s timeout, long before `sleep 1000`. */
    assert_true(took < 300);
    assert_non_null(strstr(res.reason, "component 1 (hung,"));
    assert_non_null(strstr(res.reason, "failed in build/Hang"));
    assert_non_null(strstr(res.reason, "timed out after 10 seconds"));
    assert_non_null(strstr(res.reason, "last output: hanging"));
    struct kiln_image_record *rec = assert_clean(f, res.build_id, KILN_IMAGE_FAILED);
    assert_string_equal(rec->reason, res.reason);
    kiln_image_record_free(rec);
    kiln_build_result_clear(&res);
}

static pid_t
spawn_kiln(struct fx *f, const char *const *args, const char *out, const char *errfile)
{
    const char *bdir = getenv("KILN_BUILD_DIR");
    char *bin = kiln_asprintf("%s/factory/kiln", bdir ? bdir : "build");
    const char *argv[16] = {bin, "--home", f->h.dir};
    size_t n = 3;
    for (size_t i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    free(bin);
    return pid;
}

static int
wait_exit(pid_t pid)
{
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void
show_file(const char *path)
{
    char *text = NULL;
    if (kiln_read_file(path, 1 << 20, &text, NULL, NULL) == 0)
        fprintf(stderr, "%s:\n%s\n", path, text);
    free(text);
}

/* `kiln image show NAME/1.0.0 --json`, parsed. */
static json_t *
image_show(struct fx *f, const char *name)
{
    char *out = kiln_path_join(f->h.dir, "show.json");
    char *errfile = kiln_path_join(f->h.dir, "show.err");
    char *ref = kiln_asprintf("%s/1.0.0", name);
    const char *args[] = {"image", "show", ref, "--json", NULL};
    int rc = wait_exit(spawn_kiln(f, args, out, errfile));
    if (rc != 0)
        show_file(errfile);
    assert_int_equal(rc, 0);
    json_t *j = NULL;
    assert_int_equal(kiln_json_load_file(out, 1 << 20, &j, NULL), 0);
    free(ref);
    free(errfile);
    free(out);
    return j;
}

/* Two `kiln build` processes at once in one home (one store), different recipes: both
 * AVAILABLE, each with its own build id, work folder and output, nothing left after. */
static void
test_two_builds_at_once(void **state)
{
    struct fx *f = *state;
    const char *names[2] = {"e2e-par-a", "e2e-par-b"};
    char *comp = data_path("write-file.yml");
    pid_t pids[2];
    char *outs[2], *errs[2];
    for (int i = 0; i < 2; i++) {
        char *recipe = kiln_asprintf("name: %s\nsemanticVersion: 1.0.0\nparentImage: tiny\n"
                                     "components:\n  - path: %s\n    parameters:\n"
                                     "      - name: text\n        value: [built by %s]\n",
                                     names[i], comp, names[i]);
        char *file = kiln_asprintf("%s.yml", names[i]);
        vm_put(f->h.dir, file, recipe);
        char *path = kiln_path_join(f->h.dir, file);
        outs[i] = kiln_asprintf("%s/%s.out", f->h.dir, names[i]);
        errs[i] = kiln_asprintf("%s/%s.err", f->h.dir, names[i]);
        const char *args[] = {"build",  "--recipe",       path,    "--infrastructure",
                              f->h.infra, "--distribution", f->h.dist, NULL};
        pids[i] = spawn_kiln(f, args, outs[i], errs[i]);
        free(path);
        free(file);
        free(recipe);
    }
    int rcs[2];
    for (int i = 0; i < 2; i++) {
        rcs[i] = wait_exit(pids[i]);
        if (rcs[i] != 0)
            show_file(errs[i]);
    }
    assert_int_equal(rcs[0], 0);
    assert_int_equal(rcs[1], 0);

    json_t *shown[2];
    for (int i = 0; i < 2; i++) {
        shown[i] = image_show(f, names[i]);
        assert_string_equal(kiln_json_get_str(shown[i], "status"), "AVAILABLE");
        assert_true(json_is_null(json_object_get(shown[i], "reason")));
        const char *id = kiln_json_get_str(shown[i], "buildId");
        assert_non_null(id);
        struct kiln_image_record *rec = assert_clean(f, id, KILN_IMAGE_AVAILABLE);
        assert_int_equal(rec->n_outputs, 1);
        struct stat st;
        assert_int_equal(stat(rec->outputs[0].path, &st), 0);
        assert_true(st.st_size > 1 << 20);
        kiln_image_record_free(rec);
        /* The summary on stdout: "NAME/1.0.0/1 AVAILABLE in MM:SS". */
        char *text = NULL;
        assert_int_equal(kiln_read_file(outs[i], 1 << 20, &text, NULL, NULL), 0);
        char *want = kiln_asprintf("%s/1.0.0/1 AVAILABLE", names[i]);
        assert_non_null(strstr(text, want));
        free(want);
        free(text);
    }
    /* Distinct builds: ids, work folders and outputs all differ. */
    assert_string_not_equal(kiln_json_get_str(shown[0], "buildId"),
                            kiln_json_get_str(shown[1], "buildId"));
    assert_string_not_equal(kiln_json_get_str(shown[0], "workDir"),
                            kiln_json_get_str(shown[1], "workDir"));
    const char *o0 =
        kiln_json_get_str(json_array_get(json_object_get(shown[0], "outputs"), 0), "path");
    const char *o1 =
        kiln_json_get_str(json_array_get(json_object_get(shown[1], "outputs"), 0), "path");
    assert_non_null(o0);
    assert_non_null(o1);
    assert_string_not_equal(o0, o1);
    for (int i = 0; i < 2; i++) {
        json_decref(shown[i]);
        free(outs[i]);
        free(errs[i]);
    }
    free(comp);
}

KILN_TEST_MAIN(cmocka_unit_test_setup_teardown(test_reboot_exit_194, setup, teardown),
               cmocka_unit_test_setup_teardown(test_reboot_action, setup, teardown),
               cmocka_unit_test_setup_teardown(test_no_agent, setup, teardown),
               cmocka_unit_test_setup_teardown(test_kernel_panic, setup, teardown),
               cmocka_unit_test_setup_teardown(test_root_missing, setup, teardown),
               cmocka_unit_test_setup_teardown(test_hung_step, setup, teardown),
               cmocka_unit_test_setup_teardown(test_two_builds_at_once, setup, teardown))
