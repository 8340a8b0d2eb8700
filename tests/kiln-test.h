/* Test support: cmocka includes and a main that runs exactly one case per ctest entry. */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ctest passes KILN_TEST_CASE=<name>: run that case only, and fail when no case has that name
 * (a renamed case must not turn into a silent pass). Without it, run every case. */
static inline int
kiln_test_run(const char *group, const struct CMUnitTest *tests, size_t n)
{
    const char *only = getenv("KILN_TEST_CASE");
    if (only && *only) {
        size_t found = 0;
        for (size_t i = 0; i < n; i++)
            found += strcmp(tests[i].name, only) == 0;
        if (found == 0) {
            fprintf(stderr, "%s: no test case named %s\n", group, only);
            return 1;
        }
        cmocka_set_test_filter(only);
    }
    return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
}

#define KILN_TEST_MAIN(...)                                                                        \
    int main(void)                                                                                 \
    {                                                                                              \
        static const struct CMUnitTest tests_[] = {__VA_ARGS__};                                   \
        return kiln_test_run(__FILE__, tests_, sizeof(tests_) / sizeof(tests_[0]));                \
    }

/* Source and build trees, as ctest sets them (fall back to the working directory). */
static inline const char *
kiln_test_source_dir(void)
{
    const char *d = getenv("KILN_SOURCE_DIR");
    return d ? d : ".";
}
