/* Helpers shared by the Check suites. */
#ifndef CS_TEST_H
#define CS_TEST_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cachesync/error.h>

/* Assert a library call succeeded; on failure show the library's message. */
#define ck_assert_cs_ok(expr, errp)                                                                \
    do {                                                                                           \
        int ck_ret_ = (expr);                                                                      \
        ck_assert_msg(ck_ret_ == 0, "%s returned %d: %s", #expr, ck_ret_,                          \
                      (*(errp)) ? (*(errp))->message : "(no message)");                            \
    } while (0)

/* Run one suite with Check's normal output, so its summary line stays visible. */
#define CS_TEST_MAIN(suite_fn)                                                                     \
    int main(void)                                                                                 \
    {                                                                                              \
        SRunner *sr = srunner_create(suite_fn());                                                  \
        int failed;                                                                                \
        srunner_run_all(sr, CK_NORMAL);                                                            \
        failed = srunner_ntests_failed(sr);                                                        \
        srunner_free(sr);                                                                          \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;                                          \
    }

/* Read a fixture file (under $FIXTURES or tests/fixtures) into a malloc'd buffer. */
static inline char *
cs_test_read_fixture(const char *name, size_t *len_out)
{
    const char *dir = getenv("FIXTURES");
    char path[4096];
    FILE *f;
    char *data;
    long n;

    snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/fixtures", name);
    f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open fixture %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    data = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(data);
    ck_assert_uint_eq(fread(data, 1, (size_t)n, f), (size_t)n);
    data[n] = '\0';
    fclose(f);
    if (len_out)
        *len_out = (size_t)n;
    return data;
}

#endif
