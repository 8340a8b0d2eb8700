/* Tests for common/: errors, buffers, base64, hashing, files, JSON. */
#include "kiln-test.h"

#include <sys/stat.h>

#include "common/base64.h"
#include "common/buf.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/json.h"

static void
test_error_first_wins_and_prefix(void **state)
{
    struct kiln_error err = {0};
    assert_int_equal(kiln_error_set(&err, -ENOENT, "first %d", 1), -ENOENT);
    kiln_error_set(&err, -EINVAL, "second");
    assert_string_equal(err.message, "first 1");
    kiln_error_prefix(&err, -ENOENT, "recipe %s", "r");
    assert_string_equal(err.message, "recipe r: first 1");
    assert_int_equal(err.code, -ENOENT);
    assert_int_equal(kiln_error_set(NULL, -EIO, "ignored"), -EIO);
}

static char *
b64(const char *in, int *code)
{
    struct kiln_buf out = {0};
    struct kiln_error err = {0};
    *code = kiln_base64_decode(in, strlen(in), &out, &err);
    char *r = kiln_strndup(out.data ? out.data : "", out.len);
    kiln_buf_clear(&out);
    return r;
}

static void
test_base64(void **state)
{
    /* RFC 4648 section 10's vectors, then wrapped input and what must be refused. */
    static const char *const vec[][2] = {{"", ""},         {"Zg==", "f"},         {"Zm8=", "fo"},
                                         {"Zm9v", "foo"},  {"Zm9vYg==", "foob"},  {"Zm9vYmE=", "fooba"},
                                         {"Zm9vYmFy", "foobar"}, {"Zm9v\nYmFy\n", "foobar"},
                                         {"IyEvYmluL3NoCg==", "#!/bin/sh\n"}};
    int code;
    for (size_t i = 0; i < ARRAY_SIZE(vec); i++) {
        _cleanup_free_ char *got = b64(vec[i][0], &code);
        assert_int_equal(code, 0);
        assert_string_equal(got, vec[i][1]);
    }
    static const char *const bad[] = {"Zg", "Zg=", "Z===", "Zg==Zg==", "Zm9v!mFy", "Zg=a",
                                      "Zm9vY"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        _cleanup_free_ char *got = b64(bad[i], &code);
        if (code != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
    }
}

static void
test_buf(void **state)
{
    _cleanup_buf_ struct kiln_buf b = {0};
    for (int i = 0; i < 1000; i++)
        kiln_buf_appendf(&b, "%d,", i);
    assert_int_equal(strncmp(b.data, "0,1,2,", 6), 0);
    assert_int_equal(b.data[b.len], '\0');
    char *s = kiln_buf_steal(&b);
    assert_int_equal(b.len, 0);
    free(s);
}

static void
test_hash_known_values(void **state)
{
    char hex[KILN_HASH_MAX_HEX];
    kiln_hash_buf_hex(KILN_HASH_SHA256, "abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    kiln_hash_buf_hex(KILN_HASH_MD5, "abc", 3, hex);
    assert_string_equal(hex, "900150983cd24fb0d6963f7d28e17f72");
    kiln_hash_buf_hex(KILN_HASH_SHA1, "abc", 3, hex);
    assert_string_equal(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    enum kiln_hash_alg alg;
    assert_int_equal(kiln_hash_alg_from_name("sha512", &alg), 0);
    assert_int_equal(alg, KILN_HASH_SHA512);
    assert_int_equal(kiln_hash_alg_from_name("crc32", &alg), -EINVAL);
    /* RFC 4231 test case 2 */
    uint8_t mac[32];
    kiln_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
    kiln_hex_encode(mac, 32, hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void
test_files(void **state)
{
    _cleanup_free_ char *dir = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_mkdtemp("kiln-test", &dir, &err), 0);
    _cleanup_free_ char *sub = kiln_path_join(dir, "a/b/c");
    assert_int_equal(kiln_mkdir_p(sub, 0755, &err), 0);
    _cleanup_free_ char *f = kiln_path_join(sub, "f.txt");
    assert_int_equal(kiln_write_file_atomic(f, "hello", 5, 0644, &err), 0);
    _cleanup_free_ char *data = NULL;
    size_t len;
    assert_int_equal(kiln_read_file(f, 100, &data, &len, &err), 0);
    assert_int_equal(len, 5);
    assert_string_equal(data, "hello");
    char hex[KILN_HASH_MAX_HEX];
    assert_int_equal(kiln_hash_file_hex(KILN_HASH_MD5, f, hex, &err), 0);
    assert_string_equal(hex, "5d41402abc4b2a76b9719d911017c592");
    char *small = NULL;
    assert_int_equal(kiln_read_file(f, 3, &small, &len, &err), -KILN_E_LIMIT);
    assert_null(small);
    assert_int_equal(kiln_rm_rf(dir, &err), 0);
    assert_int_equal(access(dir, F_OK), -1);
}

/* kiln_copy_file: a byte-identical copy (4 MiB + a tail, so more than one copy_file_range
 * chunk may be needed), never over an existing file, and nothing left behind on failure. */
static void
test_copy_file(void **state)
{
    _cleanup_free_ char *dir = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_mkdtemp("kiln-test", &dir, &err), 0);
    size_t n = (4u << 20) + 12345;
    _cleanup_free_ char *data = kiln_malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 2654435761u >> 13);
    _cleanup_free_ char *src = kiln_path_join(dir, "src.img");
    _cleanup_free_ char *dst = kiln_path_join(dir, "dst.img");
    assert_int_equal(kiln_write_file_atomic(src, data, n, 0600, &err), 0);
    assert_int_equal(kiln_copy_file(src, dst, 0644, &err), 0);
    _cleanup_free_ char *back = NULL;
    size_t len = 0;
    assert_int_equal(kiln_read_file(dst, n + 1, &back, &len, &err), 0);
    assert_int_equal(len, n);
    assert_memory_equal(back, data, n);
    struct stat a, b;
    assert_int_equal(stat(src, &a), 0);
    assert_int_equal(stat(dst, &b), 0);
    assert_true(a.st_ino != b.st_ino); /* a copy, not a link: changing one leaves the other */
    mode_t mask = umask(0);
    umask(mask);
    assert_int_equal(b.st_mode & 0777, 0644 & ~mask);
    /* dst exists: refused, and the existing file is untouched. */
    assert_int_equal(kiln_copy_file(src, dst, 0644, &err), -EEXIST);
    assert_non_null(strstr(err.message, "dst.img"));
    kiln_error_clear(&err);
    /* A folder is not copied; a missing source names itself. */
    _cleanup_free_ char *dst2 = kiln_path_join(dir, "dst2.img");
    assert_int_equal(kiln_copy_file(dir, dst2, 0644, &err), -EINVAL);
    kiln_error_clear(&err);
    _cleanup_free_ char *missing = kiln_path_join(dir, "missing.img");
    assert_int_equal(kiln_copy_file(missing, dst2, 0644, &err), -ENOENT);
    assert_non_null(strstr(err.message, "missing.img"));
    assert_int_equal(access(dst2, F_OK), -1);
    assert_int_equal(kiln_rm_rf(dir, NULL), 0);
}

static void
test_json(void **state)
{
    json_t *j = NULL;
    struct kiln_error err = {0};
    const char *dup = "{\"a\": 1, \"a\": 2}";
    assert_int_equal(kiln_json_parse(dup, strlen(dup), 100, "x.json", &j, &err), -KILN_E_PARSE);
    assert_non_null(strstr(err.message, "x.json:1:"));
    kiln_error_clear(&err);
    assert_int_equal(kiln_json_parse(dup, strlen(dup), 4, "x.json", &j, &err), -KILN_E_LIMIT);
    const char *ok = "{\"k\": \"v\"}";
    assert_int_equal(kiln_json_parse(ok, strlen(ok), 100, "x.json", &j, NULL), 0);
    assert_string_equal(kiln_json_get_str(j, "k"), "v");
    json_decref(j);
}

KILN_TEST_MAIN(cmocka_unit_test(test_error_first_wins_and_prefix), cmocka_unit_test(test_base64), cmocka_unit_test(test_buf),
               cmocka_unit_test(test_hash_known_values), cmocka_unit_test(test_files),
               cmocka_unit_test(test_copy_file), cmocka_unit_test(test_json))
