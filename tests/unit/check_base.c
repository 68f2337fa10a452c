/* error, buf and digest */
#include "config.h"

#include <string.h>

#include <cachesync/buf.h>
#include <cachesync/digest.h>
#include "cs_test.h"
#include "error_int.h"

START_TEST(test_error_set_and_wrap)
{
    cs_error *err = NULL;
    int ret = csi_error_set(&err, CS_ENOTFOUND, "tag %s missing", "main");

    ck_assert_int_eq(ret, CS_ENOTFOUND);
    ck_assert_str_eq(err->message, "tag main missing");
    ck_assert_int_eq(csi_error_wrap(&err, "pull %s", "app"), CS_ENOTFOUND);
    ck_assert_str_eq(err->message, "pull app: tag main missing");
    cs_error_free(err);
}
END_TEST

START_TEST(test_error_null_err_keeps_code)
{
    ck_assert_int_eq(csi_error_set(NULL, CS_EAUTH, "x"), CS_EAUTH);
    ck_assert_int_eq(csi_error_errno(NULL, 2, "open"), CS_EIO);
}
END_TEST

START_TEST(test_error_errno_message)
{
    cs_error *err = NULL;

    ck_assert_int_eq(csi_error_errno(&err, 2, "open %s", "/x"), CS_EIO);
    ck_assert_int_eq(err->sys_errno, 2);
    ck_assert_str_eq(err->message, "open /x: No such file or directory");
    cs_error_free(err);
}
END_TEST

START_TEST(test_error_oom_is_static)
{
    cs_error *err = NULL;

    ck_assert_int_eq(csi_error_oom(&err), CS_ENOMEM);
    ck_assert_str_eq(err->message, "out of memory");
    cs_error_free(err); /* must be a no-op */
    cs_error_free(err);
}
END_TEST

START_TEST(test_buf_append_and_cap)
{
    cs_buf b;
    cs_error *err = NULL;
    char *s;

    cs_buf_init(&b, 8);
    ck_assert_cs_ok(cs_buf_puts(&b, "abcd", &err), &err);
    ck_assert_cs_ok(cs_buf_printf(&b, &err, "%d", 1234), &err);
    ck_assert_str_eq(b.ptr, "abcd1234");
    ck_assert_int_eq(cs_buf_append(&b, "x", 1, &err), CS_ELIMIT);
    ck_assert_ptr_nonnull(err);
    cs_error_free(err);
    ck_assert_uint_eq(b.len, 8); /* unchanged by the failed append */
    s = cs_buf_detach(&b);
    ck_assert_str_eq(s, "abcd1234");
    ck_assert_ptr_null(b.ptr);
    free(s);
    s = cs_buf_detach(&b);
    ck_assert_str_eq(s, "");
    free(s);
    cs_buf_dispose(&b);
}
END_TEST

START_TEST(test_buf_binary_and_growth)
{
    cs_buf b = CS_BUF_INIT;
    char chunk[1000];
    int i;

    memset(chunk, 0, sizeof(chunk));
    for (i = 0; i < 100; i++)
        ck_assert_int_eq(cs_buf_append(&b, chunk, sizeof(chunk), NULL), 0);
    ck_assert_uint_eq(b.len, 100000);
    ck_assert_int_eq(b.ptr[b.len], '\0');
    cs_buf_clear(&b);
    ck_assert_uint_eq(b.len, 0);
    cs_buf_dispose(&b);
}
END_TEST

/* FIPS 180-2 test vectors */
START_TEST(test_digest_vectors)
{
    char out[CS_DIGEST_STRLEN];
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_digest_buffer(out, "abc", 3, &err), &err);
    ck_assert_str_eq(out,
                     "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ck_assert_cs_ok(cs_digest_buffer(out, "", 0, &err), &err);
    ck_assert_str_eq(out,
                     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
END_TEST

START_TEST(test_digest_streaming_equals_oneshot)
{
    static const char msg[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    char a[CS_DIGEST_STRLEN], b[CS_DIGEST_STRLEN];
    cs_hasher *h = NULL;
    cs_error *err = NULL;
    size_t i;

    ck_assert_cs_ok(cs_hasher_new(&h, &err), &err);
    for (i = 0; i < sizeof(msg) - 1; i++)
        cs_hasher_update(h, msg + i, 1);
    cs_hasher_final(h, a);
    ck_assert_cs_ok(cs_digest_buffer(b, msg, sizeof(msg) - 1, &err), &err);
    ck_assert_str_eq(a, b);
    ck_assert_str_eq(a, "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* reusable after final */
    cs_hasher_update(h, "abc", 3);
    cs_hasher_final(h, a);
    ck_assert_str_eq(a, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    cs_hasher_free(h);
}
END_TEST

static const struct {
    const char *in;
    int code;
} digest_cases[] = {
    {"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 0},
    {"sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", CS_EPROTO},
    {"sha256:ba7816bf", CS_EPROTO},
    {"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad00", CS_EPROTO},
    {"sha256:../../../../etc/passwd00000000000000000000000000000000000000000000", CS_EPROTO},
    {"sha512:ab", CS_EUNSUPPORTED},
    {"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", CS_EPROTO},
    {":abc", CS_EPROTO},
    {"", CS_EPROTO},
};

START_TEST(test_digest_validate)
{
    cs_error *err = NULL;
    int ret = cs_digest_validate(digest_cases[_i].in, &err);

    ck_assert_msg(ret == digest_cases[_i].code, "%s: got %d", digest_cases[_i].in, ret);
    ck_assert(ret == 0 ? err == NULL : err != NULL);
    cs_error_free(err);
}
END_TEST

static Suite *
base_suite(void)
{
    Suite *s = suite_create("base");
    TCase *tc = tcase_create("error");

    tcase_add_test(tc, test_error_set_and_wrap);
    tcase_add_test(tc, test_error_null_err_keeps_code);
    tcase_add_test(tc, test_error_errno_message);
    tcase_add_test(tc, test_error_oom_is_static);
    suite_add_tcase(s, tc);
    tc = tcase_create("buf");
    tcase_add_test(tc, test_buf_append_and_cap);
    tcase_add_test(tc, test_buf_binary_and_growth);
    suite_add_tcase(s, tc);
    tc = tcase_create("digest");
    tcase_add_test(tc, test_digest_vectors);
    tcase_add_test(tc, test_digest_streaming_equals_oneshot);
    tcase_add_loop_test(tc, test_digest_validate, 0,
                        (int)(sizeof(digest_cases) / sizeof(digest_cases[0])));
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(base_suite)
