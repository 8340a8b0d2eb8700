/* What the factory's VM tests share: a throw-away Kiln home with the libvirt infrastructure and a
 * local distribution, and the checks that a build left nothing behind (libvirt domains, folders
 * of the home, agent sockets in /tmp). Header-only: each test file is its own program. */
#pragma once

#include <dirent.h>
#include <libvirt/libvirt.h>
#include <string.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/hash.h"
#include "factory/store.h"
#include "images/catalog.h"
#include "kiln-test.h"

static inline const char *
vm_uri(void)
{
    const char *u = getenv("KILN_TEST_URI");
    return u && *u ? u : "qemu:///system";
}

/* Write DIR/NAME (its folder made first). */
static inline void
vm_put(const char *dir, const char *name, const char *text)
{
    char *p = kiln_path_join(dir, name);
    char *d = kiln_strdup(p);
    *strrchr(d, '/') = '\0';
    assert_int_equal(kiln_mkdir_p(d, 0755, NULL), 0);
    assert_int_equal(kiln_write_file_atomic(p, text, strlen(text), 0644, NULL), 0);
    free(d);
    free(p);
}

/* A test's Kiln home, which is also where the test's files go. */
struct vm_home {
    char *dir;
    struct kiln_store *store;
    char *infra, *dist, *recipe; /* DIR/infra.yml, DIR/dist.yml, DIR/recipe.yml */
};

/* A fresh Kiln home under $TMPDIR named from prefix, with its store open, infra.yml (libvirt,
 * TCG unless KILN_TEST_ACCEL says otherwise, 1 vCPU, 256 MiB) and dist.yml (a local folder
 * out/ with formats, e.g. "[qcow2]"); recipe.yml is the test's to write. With catalog, the
 * home's images/ is the prepared catalog (so that the CLI finds tiny there without rebuilding
 * it). Returns 0, or -1 with the reason printed. */
static inline int
vm_home_open(struct vm_home *h, const char *prefix, const char *formats, bool catalog)
{
    struct kiln_error err = {0};
    if (kiln_mkdtemp(prefix, &h->dir, &err) < 0 || kiln_store_open(h->dir, &h->store, &err) < 0) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    h->infra = kiln_path_join(h->dir, "infra.yml");
    h->dist = kiln_path_join(h->dir, "dist.yml");
    h->recipe = kiln_path_join(h->dir, "recipe.yml");
    const char *accel = getenv("KILN_TEST_ACCEL");
    char *infra = kiln_asprintf("driver: libvirt\nlibvirt:\n  uri: %s\n  accel: %s\nvcpus: 1\n"
                                "memoryMiB: 256\n",
                                vm_uri(), accel && *accel ? accel : "tcg");
    vm_put(h->dir, "infra.yml", infra);
    free(infra);
    char *dist = kiln_asprintf("distributions:\n  - local:\n      directory: %s/out\n"
                               "      formats: %s\n",
                               h->dir, formats);
    vm_put(h->dir, "dist.yml", dist);
    free(dist);
    if (catalog) {
        char *home = kiln_home_dir();
        char *images = kiln_path_join(home, "images");
        char *link = kiln_path_join(h->dir, "images");
        assert_int_equal(symlink(images, link), 0);
        free(link);
        free(images);
        free(home);
    }
    return 0;
}

/* Close the store and remove the home with everything in it. */
static inline void
vm_home_close(struct vm_home *h)
{
    kiln_store_free(h->store);
    kiln_rm_rf(h->dir, NULL);
    free(h->dir);
    free(h->infra);
    free(h->dist);
    free(h->recipe);
}

/* Domains whose name carries the build id (every domain of a build does), each printed. */
static inline int
vm_domains_of(const char *build_id)
{
    virConnectPtr c = virConnectOpen(vm_uri());
    assert_non_null(c);
    virDomainPtr *doms = NULL;
    int n = virConnectListAllDomains(c, &doms, 0);
    assert_true(n >= 0);
    int found = 0;
    for (int i = 0; i < n; i++) {
        const char *name = virDomainGetName(doms[i]);
        if (name && strstr(name, build_id)) {
            fprintf(stderr, "domain of %s: %s\n", build_id, name);
            found++;
        }
        virDomainFree(doms[i]);
    }
    free(doms);
    virConnectClose(c);
    return found;
}

/* Entries of DIR/SUB, each printed; a missing folder has none. */
static inline int
vm_entries_in(const char *dir, const char *sub)
{
    char *p = kiln_path_join(dir, sub);
    DIR *d = opendir(p);
    int n = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                fprintf(stderr, "left in %s: %s\n", p, e->d_name);
                n++;
            }
        closedir(d);
    }
    free(p);
    return n;
}

/* The agent socket of the build's instance WHICH ("build", "test") when its path in the work
 * folder is too long for a unix socket (drivers/libvirt.c):
 * /tmp/kiln-<first 24 hex of SHA-256(HOME/builds/ID/ID-WHICH)>.sock. */
static inline char *
vm_fallback_socket(const char *home, const char *build_id, const char *which)
{
    char *dir = kiln_asprintf("%s/builds/%s/%s-%s", home, build_id, build_id, which);
    char h[KILN_HASH_MAX_HEX];
    kiln_hash_buf_hex(KILN_HASH_SHA256, dir, strlen(dir), h);
    h[24] = '\0';
    free(dir);
    return kiln_asprintf("/tmp/kiln-%s.sock", h);
}

/* No resource record of any build is left in the home's store, and no libvirt domain of this
 * build; what is left is printed first. */
static inline void
vm_assert_no_resources(const struct vm_home *h, const char *build_id)
{
    struct kiln_resource_record *list = NULL;
    size_t n = 0;
    assert_int_equal(kiln_store_resource_list(h->store, NULL, &list, &n, NULL), 0);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "left in the store: %s %s\n", list[i].kind, list[i].rid);
    assert_int_equal(n, 0);
    kiln_resource_record_list_free(list, n);
    assert_int_equal(vm_domains_of(build_id), 0);
}

/* Nor any work folder, overlay or lock in the home, nor the build's instances' sockets in /tmp. */
static inline void
vm_assert_no_leftovers(const struct vm_home *h, const char *build_id)
{
    vm_assert_no_resources(h, build_id);
    assert_int_equal(vm_entries_in(h->dir, "builds"), 0);
    assert_int_equal(vm_entries_in(h->dir, "run"), 0);
    for (int i = 0; i < 2; i++) {
        char *sock = vm_fallback_socket(h->dir, build_id, i ? "test" : "build");
        if (access(sock, F_OK) == 0)
            fprintf(stderr, "socket left: %s\n", sock);
        assert_int_equal(access(sock, F_OK), -1);
        free(sock);
    }
}
