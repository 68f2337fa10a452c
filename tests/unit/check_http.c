/* The pure parts of the HTTP layer: Retry-After, URL hosts, loopback detection, escaping. */
#include "config.h"

#include <string.h>

#include "cs_test.h"
#include "http.h"

START_TEST(test_retry_after)
{
    /* Sun, 06 Nov 1994 08:49:37 GMT = 784111777 */
    ck_assert_int_eq(csi_http_retry_after_ms("3", 0), 3000);
    ck_assert_int_eq(csi_http_retry_after_ms("0", 0), 0);
    ck_assert_int_eq(csi_http_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", 784111770), 7000);
    ck_assert_int_eq(csi_http_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", 784111999), 0);
    ck_assert_int_eq(csi_http_retry_after_ms("soon", 0), -1);
    ck_assert_int_eq(csi_http_retry_after_ms("3x", 0), -1);
    ck_assert_int_eq(csi_http_retry_after_ms("", 0), -1);
    ck_assert_int_eq(csi_http_retry_after_ms(NULL, 0), -1);
    ck_assert_int_eq(csi_http_retry_after_ms("99999999", 0), 86400000);
}
END_TEST

START_TEST(test_url_host)
{
    char h[64];

    ck_assert(csi_http_url_host(h, sizeof(h), "https://example.com:5000/v2/x"));
    ck_assert_str_eq(h, "example.com:5000");
    ck_assert(csi_http_url_host(h, sizeof(h), "http://[::1]:5000?x"));
    ck_assert_str_eq(h, "[::1]:5000");
    ck_assert(csi_http_url_host(h, sizeof(h), "https://user:pw@host/x"));
    ck_assert_str_eq(h, "host");
    ck_assert(!csi_http_url_host(h, sizeof(h), "/v2/relative"));
    ck_assert(!csi_http_url_host(h, sizeof(h), "https:///nohost"));
}
END_TEST

static const struct {
    const char *host;
    bool loop;
} loop_cases[] = {
    {"127.0.0.1:5000", true},    {"127.1.2.3", true},  {"localhost", true},
    {"LOCALHOST:80", true},      {"[::1]:5000", true}, {"[::1]", true},
    {"127.0.0.1.nip.io", false}, {"128.0.0.1", false}, {"example.com", false},
    {"[::2]:5000", false},       {"127.0.0", false},   {"localhost.example.com", false},
    {"10.0.0.1:5000", false},
};

START_TEST(test_loopback)
{
    ck_assert_msg(csi_http_host_is_loopback(loop_cases[_i].host) == loop_cases[_i].loop, "%s",
                  loop_cases[_i].host);
}
END_TEST

START_TEST(test_query_escape)
{
    cs_buf b = CS_BUF_INIT;

    ck_assert_int_eq(csi_http_query_escape(&b, "repository:library/app:pull,push", NULL), 0);
    ck_assert_str_eq(b.ptr, "repository%3Alibrary%2Fapp%3Apull%2Cpush");
    cs_buf_clear(&b);
    ck_assert_int_eq(csi_http_query_escape(&b, "a b&c=d~._-", NULL), 0);
    ck_assert_str_eq(b.ptr, "a%20b%26c%3Dd~._-");
    cs_buf_dispose(&b);
}
END_TEST

START_TEST(test_header_lookup_and_join)
{
    csi_http_header hs[] = {{"www-authenticate", "Basic realm=\"a\""},
                            {"content-type", "application/json"},
                            {"www-authenticate", "Bearer realm=\"b\""}};
    csi_http_resp resp = {0};
    cs_buf b = CS_BUF_INIT;

    resp.headers = hs;
    resp.nheaders = 3;
    ck_assert_str_eq(csi_http_header_get(&resp, "Content-Type"), "application/json");
    ck_assert_ptr_null(csi_http_header_get(&resp, "location"));
    ck_assert_int_eq(csi_http_header_join(&b, &resp, "WWW-Authenticate", NULL), 0);
    ck_assert_str_eq(b.ptr, "Basic realm=\"a\", Bearer realm=\"b\"");
    cs_buf_dispose(&b);
}
END_TEST

static Suite *
http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("pure");

    tcase_add_test(tc, test_retry_after);
    tcase_add_test(tc, test_url_host);
    tcase_add_loop_test(tc, test_loopback, 0, (int)(sizeof(loop_cases) / sizeof(loop_cases[0])));
    tcase_add_test(tc, test_query_escape);
    tcase_add_test(tc, test_header_lookup_and_join);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(http_suite)
