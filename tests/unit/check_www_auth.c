/* WWW-Authenticate challenges and token endpoint answers (src/lib/www_auth.c). */
#include "config.h"

#include "cs_test.h"
#include "www_auth.h"

/* ---- challenges ------------------------------------------------------------------------ */

/* EXPECT renders the parse result as `scheme(name=value;...) scheme(...)`, token68 as a
 * parameter with an empty name. */
static const struct {
    const char *in;
    int code;
    const char *expect;
} wa_cases[] = {
    /* Docker Hub, from distribution's token.md */
    {"Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
     "scope=\"repository:samalba/my-app:pull,push\"",
     0,
     "bearer(realm=https://auth.docker.io/token;service=registry.docker.io;"
     "scope=repository:samalba/my-app:pull,push)"},
    /* ghcr.io */
    {"Bearer realm=\"https://ghcr.io/token\",service=\"ghcr.io\",scope=\"repository:o/i:pull\"", 0,
     "bearer(realm=https://ghcr.io/token;service=ghcr.io;scope=repository:o/i:pull)"},
    /* GitHub Packages basic */
    {"Basic realm=\"GitHub Package Registry\"", 0, "basic(realm=GitHub Package Registry)"},
    /* several challenges in one value */
    {"Basic realm=\"x\", Bearer realm=\"y\",service=\"z\"", 0,
     "basic(realm=x) bearer(realm=y;service=z)"},
    /* backslash escapes */
    {"Bearer realm=\"a\\\"b\\\\c\\d\"", 0, "bearer(realm=a\"b\\cd)"},
    /* commas and '=' inside quotes */
    {"Bearer realm=\"x,y\", scope=\"a=b,c\"", 0, "bearer(realm=x,y;scope=a=b,c)"},
    /* case-insensitive scheme and parameter names */
    {"BEARER Realm=\"x\",SERVICE=\"y\"", 0, "bearer(realm=x;service=y)"},
    /* whitespace everywhere, BWS around '=' */
    {"  Bearer \t realm = \"x\" ,  service=y  ", 0, "bearer(realm=x;service=y)"},
    /* token68 */
    {"Negotiate abc+/def==", 0, "negotiate(=abc+/def==)"},
    {"Negotiate YWJj, Basic realm=\"r\"", 0, "negotiate(=YWJj) basic(realm=r)"},
    /* scheme alone, and schemes alone in a list */
    {"Bearer", 0, "bearer()"},
    {"Basic, Bearer", 0, "basic() bearer()"},
    /* empty list elements are ignored (RFC 7230 section 7) */
    {", Basic realm=\"a\",, , Bearer realm=\"b\",,service=\"c\",", 0,
     "basic(realm=a) bearer(realm=b;service=c)"},
    /* a repeated parameter keeps its first value */
    {"Bearer realm=\"first\", REALM=\"second\",service=s", 0, "bearer(realm=first;service=s)"},
    /* unquoted URL values (seen in the wild, not RFC 7235 tokens) */
    {"Bearer realm=https://auth.example.com/token,service=reg.example.com:5000", 0,
     "bearer(realm=https://auth.example.com/token;service=reg.example.com:5000)"},
    /* insufficient_scope (RFC 6750 section 3.1) */
    {"Bearer realm=\"r\",error=\"insufficient_scope\",scope=\"repository:a/b:pull\"", 0,
     "bearer(realm=r;error=insufficient_scope;scope=repository:a/b:pull)"},
    /* empty quoted value */
    {"Basic realm=\"\"", 0, "basic(realm=)"},
    /* the header line's CRLF left on */
    {"Basic realm=\"x\"\r\n", 0, "basic(realm=x)"},
    /* obs-text in a quoted string is kept as bytes */
    {"Basic realm=\"caf\xc3\xa9\"", 0, "basic(realm=caf\xc3\xa9)"},

    /* malformed */
    {"", CS_EPROTO, NULL},
    {"   \t ", CS_EPROTO, NULL},
    {" , ,, ", CS_EPROTO, NULL},
    {"\"quoted\"", CS_EPROTO, NULL},
    {"=realm", CS_EPROTO, NULL},
    {"realm=\"x\"", CS_EPROTO, NULL},
    {"Bearer realm=\"abc", CS_EPROTO, NULL},
    {"Bearer realm=\"abc\\", CS_EPROTO, NULL},
    {"Bearer realm=\"x\" service=\"y\"", CS_EPROTO, NULL},
    {"Bearer realm=,service=x", CS_EPROTO, NULL},
    {"Bearer realm=\"a\nb\"", CS_EPROTO, NULL},
    {"Bearer realm=\"a\\\x01\"", CS_EPROTO, NULL},
    {"Negotiate abc==, realm=\"x\"", CS_EPROTO, NULL},
    {"Basic\"x\"", CS_EPROTO, NULL},
    {"Bearer realm=\"x\";service=\"y\"", CS_EPROTO, NULL},
    {"Bearer @@@", CS_EPROTO, NULL},
    {"Bearer realm=\"x\", \x7f", CS_EPROTO, NULL},
};

static char *
render(const csi_challenge *c, size_t n)
{
    static char buf[4096];
    size_t i, j;

    buf[0] = '\0';
    for (i = 0; i < n; i++) {
        if (i > 0)
            strcat(buf, " ");
        strcat(buf, c[i].scheme);
        strcat(buf, "(");
        for (j = 0; j < c[i].nparams; j++) {
            if (j > 0)
                strcat(buf, ";");
            strcat(buf, c[i].params[j].name);
            strcat(buf, "=");
            strcat(buf, c[i].params[j].value);
        }
        strcat(buf, ")");
    }
    return buf;
}

START_TEST(test_www_auth_table)
{
    csi_challenge *c = NULL;
    size_t n = 0;
    cs_error *err = NULL;
    const char *in = wa_cases[_i].in;
    int ret;

    ret = csi_www_auth_parse(&c, &n, in, strlen(in), &err);
    ck_assert_msg(ret == wa_cases[_i].code, "case %d (%s): got %d (%s), want %d", _i, in, ret,
                  err ? err->message : "-", wa_cases[_i].code);
    if (ret == 0) {
        ck_assert_ptr_null(err);
        ck_assert_str_eq(render(c, n), wa_cases[_i].expect);
    } else {
        ck_assert_ptr_nonnull(err);
        ck_assert_int_eq(err->code, ret);
        ck_assert_ptr_null(strchr(err->message, '\n'));
        ck_assert_ptr_null(c);
    }
    csi_challenges_free(c, n);
    cs_error_free(err);
}
END_TEST

START_TEST(test_www_auth_nul_byte_rejected)
{
    static const char in[] = "Basic realm=\"a\0b\"";
    csi_challenge *c = NULL;
    size_t n = 0;
    cs_error *err = NULL;

    ck_assert_int_eq(csi_www_auth_parse(&c, &n, in, sizeof(in) - 1, &err), CS_EPROTO);
    cs_error_free(err);
    err = NULL;
    /* Bytes after LEN are not read: the value ends before the NUL. */
    ck_assert_cs_ok(csi_www_auth_parse(&c, &n, "Basic realm=\"a\"XYZ", 15, &err), &err);
    ck_assert_str_eq(render(c, n), "basic(realm=a)");
    csi_challenges_free(c, n);
}
END_TEST

START_TEST(test_www_auth_lookup_helpers)
{
    static const char in[] = "Basic realm=\"b\", Bearer Realm=\"https://r/t\",Service=\"svc\"";
    csi_challenge *c = NULL;
    const csi_challenge *bearer;
    size_t n = 0;
    cs_error *err = NULL;

    ck_assert_cs_ok(csi_www_auth_parse(&c, &n, in, strlen(in), &err), &err);
    ck_assert_uint_eq(n, 2);
    bearer = csi_challenge_find(c, n, "BEARER");
    ck_assert_ptr_eq(bearer, &c[1]);
    ck_assert_str_eq(csi_challenge_param(bearer, "REALM"), "https://r/t");
    ck_assert_str_eq(csi_challenge_param(bearer, "service"), "svc");
    ck_assert_ptr_null(csi_challenge_param(bearer, "scope"));
    ck_assert_ptr_null(csi_challenge_param(bearer, NULL));
    ck_assert_ptr_null(csi_challenge_param(NULL, "realm"));
    ck_assert_ptr_eq(csi_challenge_find(c, n, "basic"), &c[0]);
    ck_assert_ptr_null(csi_challenge_find(c, n, "digest"));
    ck_assert_ptr_null(csi_challenge_find(c, n, "bear"));
    csi_challenges_free(c, n);
    csi_challenges_free(NULL, 0);
}
END_TEST

/* A value of exactly LEN bytes: `Basic realm="xxxx..."`. */
static char *
long_value(size_t len)
{
    char *s = malloc(len + 1);

    ck_assert_ptr_nonnull(s);
    memset(s, 'x', len);
    memcpy(s, "Basic realm=\"", 13);
    s[len - 1] = '"';
    s[len] = '\0';
    return s;
}

START_TEST(test_www_auth_length_cap)
{
    csi_challenge *c = NULL;
    size_t n = 0;
    cs_error *err = NULL;
    char *s = long_value(CSI_WWW_AUTH_MAX_LEN);

    ck_assert_cs_ok(csi_www_auth_parse(&c, &n, s, strlen(s), &err), &err);
    ck_assert_uint_eq(strlen(csi_challenge_param(c, "realm")), CSI_WWW_AUTH_MAX_LEN - 14);
    csi_challenges_free(c, n);
    free(s);

    c = NULL;
    s = long_value(CSI_WWW_AUTH_MAX_LEN + 1);
    ck_assert_int_eq(csi_www_auth_parse(&c, &n, s, strlen(s), &err), CS_ELIMIT);
    ck_assert_int_eq(err->code, CS_ELIMIT);
    ck_assert_ptr_null(c);
    cs_error_free(err);
    free(s);
}
END_TEST

START_TEST(test_www_auth_challenge_cap)
{
    char buf[1024] = "";
    csi_challenge *c = NULL;
    size_t n = 0;
    cs_error *err = NULL;
    int i;

    for (i = 0; i < CSI_WWW_AUTH_MAX_CHALLENGES; i++)
        strcat(buf, i ? ", S realm=r" : "S realm=r");
    ck_assert_cs_ok(csi_www_auth_parse(&c, &n, buf, strlen(buf), &err), &err);
    ck_assert_uint_eq(n, CSI_WWW_AUTH_MAX_CHALLENGES);
    csi_challenges_free(c, n);

    c = NULL;
    strcat(buf, ", S");
    ck_assert_int_eq(csi_www_auth_parse(&c, &n, buf, strlen(buf), &err), CS_ELIMIT);
    ck_assert_ptr_null(c);
    cs_error_free(err);
}
END_TEST

START_TEST(test_www_auth_param_cap)
{
    char buf[2048] = "Bearer ";
    csi_challenge *c = NULL;
    size_t n = 0;
    cs_error *err = NULL;
    int i;

    for (i = 0; i < CSI_WWW_AUTH_MAX_PARAMS; i++)
        sprintf(buf + strlen(buf), "%sp%d=v", i ? "," : "", i);
    ck_assert_cs_ok(csi_www_auth_parse(&c, &n, buf, strlen(buf), &err), &err);
    ck_assert_uint_eq(c[0].nparams, CSI_WWW_AUTH_MAX_PARAMS);
    csi_challenges_free(c, n);

    /* Duplicates count: repeating one name cannot get past the cap either. */
    c = NULL;
    strcat(buf, ",p0=again");
    ck_assert_int_eq(csi_www_auth_parse(&c, &n, buf, strlen(buf), &err), CS_ELIMIT);
    ck_assert_ptr_null(c);
    cs_error_free(err);
    err = NULL;

    /* The cap is per challenge. */
    strcpy(buf, "Basic a=1,b=2,c=3, ");
    for (i = 0; i < CSI_WWW_AUTH_MAX_PARAMS; i++)
        sprintf(buf + strlen(buf), "%sp%d=v", i ? "," : "Bearer ", i);
    ck_assert_cs_ok(csi_www_auth_parse(&c, &n, buf, strlen(buf), &err), &err);
    ck_assert_uint_eq(n, 2);
    csi_challenges_free(c, n);
}
END_TEST

START_TEST(test_www_auth_message_is_short)
{
    char in[4000];
    csi_challenge *c = NULL;
    size_t n = 0;
    cs_error *err = NULL;

    memset(in, 'A', sizeof(in));
    memcpy(in, "Bearer realm=\"x\" ", 17);
    in[sizeof(in) - 1] = '\0';
    ck_assert_int_eq(csi_www_auth_parse(&c, &n, in, strlen(in), &err), CS_EPROTO);
    /* The message points at the fault without copying the header into logs. */
    ck_assert_uint_lt(strlen(err->message), 140);
    ck_assert_ptr_null(strstr(err->message, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    ck_assert_ptr_nonnull(strstr(err->message, "byte 17"));
    cs_error_free(err);
}
END_TEST

/* ---- token endpoint answers ------------------------------------------------------------ */

static const struct {
    const char *body;
    int code;
    const char *token;
    long expires_in;
    const char *refresh;
} tok_cases[] = {
    {"{\"token\":\"abc\"}", 0, "abc", 60, NULL},
    {"{\"access_token\":\"xyz\",\"expires_in\":300}", 0, "xyz", 300, NULL},
    {"{\"token\":\"same\",\"access_token\":\"same\",\"expires_in\":3600}", 0, "same", 3600, NULL},
    /* both, different: access_token, as distribution/ggcr/regclient */
    {"{\"token\":\"t1\",\"access_token\":\"a1\"}", 0, "a1", 60, NULL},
    {"{\"token\":\"t1\",\"access_token\":\"\"}", 0, "t1", 60, NULL},
    {"{\"token\":\"t1\",\"access_token\":null}", 0, "t1", 60, NULL},
    {"{\"token\":\"\",\"access_token\":\"a1\"}", 0, "a1", 60, NULL},
    {"{\"expires_in\":300}", CS_EPROTO, NULL, 0, NULL},
    {"{\"token\":\"\"}", CS_EPROTO, NULL, 0, NULL},
    {"{}", CS_EPROTO, NULL, 0, NULL},
    /* expires_in: missing, small, zero, negative, huge, fractional, null */
    {"{\"token\":\"t\",\"issued_at\":\"2016-01-01T00:00:00Z\"}", 0, "t", 60, NULL},
    {"{\"token\":\"t\",\"expires_in\":10}", 0, "t", 60, NULL},
    {"{\"token\":\"t\",\"expires_in\":0}", 0, "t", 60, NULL},
    {"{\"token\":\"t\",\"expires_in\":-5}", 0, "t", 60, NULL},
    {"{\"token\":\"t\",\"expires_in\":1e30}", 0, "t", CSI_TOKEN_MAX_EXPIRES, NULL},
    {"{\"token\":\"t\",\"expires_in\":99999999999999999999999}", 0, "t", CSI_TOKEN_MAX_EXPIRES,
     NULL},
    {"{\"token\":\"t\",\"expires_in\":86400}", 0, "t", 86400, NULL},
    {"{\"token\":\"t\",\"expires_in\":300.9}", 0, "t", 300, NULL},
    {"{\"token\":\"t\",\"expires_in\":null}", 0, "t", 60, NULL},
    /* expires_in not a number */
    {"{\"token\":\"t\",\"expires_in\":\"300\"}", CS_EPROTO, NULL, 0, NULL},
    {"{\"token\":\"t\",\"expires_in\":true}", CS_EPROTO, NULL, 0, NULL},
    /* refresh_token (offline_token=true) */
    {"{\"access_token\":\"a\",\"refresh_token\":\"r\",\"expires_in\":900}", 0, "a", 900, "r"},
    {"{\"access_token\":\"a\",\"refresh_token\":\"\"}", 0, "a", 60, NULL},
    /* wrong types and bad JSON */
    {"{\"token\":5}", CS_EPROTO, NULL, 0, NULL},
    {"{\"token\":\"t\",\"refresh_token\":[]}", CS_EPROTO, NULL, 0, NULL},
    {"[\"token\"]", CS_EPROTO, NULL, 0, NULL},
    {"", CS_EPROTO, NULL, 0, NULL},
    {"{\"token\":\"t\"", CS_EPROTO, NULL, 0, NULL},
    {"{\"token\":\"t\"} x", CS_EPROTO, NULL, 0, NULL},
    {"<html>502 Bad Gateway</html>", CS_EPROTO, NULL, 0, NULL},
    /* a token that would split the Authorization header */
    {"{\"token\":\"a\\r\\nX-Evil: 1\"}", CS_EPROTO, NULL, 0, NULL},
    {"{\"token\":\"a b\"}", CS_EPROTO, NULL, 0, NULL},
    {"{\"token\":\"a\\u0000b\"}", CS_EPROTO, NULL, 0, NULL},
    /* a JWT-shaped token is fine */
    {"{\"token\":\"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_~+/=\"}", 0,
     "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_~+/=", 60, NULL},
};

START_TEST(test_token_table)
{
    csi_token t = CSI_TOKEN_INIT;
    cs_error *err = NULL;
    const char *body = tok_cases[_i].body;
    int ret;

    ret = csi_token_parse(&t, body, strlen(body), &err);
    ck_assert_msg(ret == tok_cases[_i].code, "case %d (%s): got %d (%s), want %d", _i, body, ret,
                  err ? err->message : "-", tok_cases[_i].code);
    if (ret == 0) {
        ck_assert_str_eq(t.token, tok_cases[_i].token);
        ck_assert_int_eq(t.expires_in, tok_cases[_i].expires_in);
        if (tok_cases[_i].refresh != NULL)
            ck_assert_str_eq(t.refresh_token, tok_cases[_i].refresh);
        else
            ck_assert_ptr_null(t.refresh_token);
    } else {
        ck_assert_ptr_nonnull(err);
        ck_assert_int_eq(err->code, ret);
        ck_assert_ptr_null(t.token);
        ck_assert_ptr_null(t.refresh_token);
    }
    csi_token_dispose(&t);
    ck_assert_ptr_null(t.token);
    cs_error_free(err);
}
END_TEST

START_TEST(test_token_body_cap)
{
    size_t len = CSI_TOKEN_MAX_BODY + 1;
    char *body = malloc(len + 1);
    csi_token t = CSI_TOKEN_INIT;
    cs_error *err = NULL;

    ck_assert_ptr_nonnull(body);
    memset(body, ' ', len);
    memcpy(body, "{\"token\":\"t\"}", 13);
    body[len] = '\0';
    ck_assert_int_eq(csi_token_parse(&t, body, len, &err), CS_ELIMIT);
    cs_error_free(err);
    err = NULL;
    /* At the cap exactly it parses (trailing whitespace is valid JSON). */
    ck_assert_cs_ok(csi_token_parse(&t, body, len - 1, &err), &err);
    ck_assert_str_eq(t.token, "t");
    csi_token_dispose(&t);
    free(body);
}
END_TEST

START_TEST(test_token_message_hides_body)
{
    static const char body[] = "{\"token\":\"SECRETSECRET\" \"access_token\":1}";
    csi_token t = CSI_TOKEN_INIT;
    cs_error *err = NULL;

    ck_assert_int_eq(csi_token_parse(&t, body, strlen(body), &err), CS_EPROTO);
    ck_assert_ptr_null(strstr(err->message, "SECRET"));
    ck_assert_ptr_nonnull(strstr(err->message, "line 1"));
    cs_error_free(err);
    csi_token_dispose(NULL);
}
END_TEST

static Suite *
www_auth_suite(void)
{
    Suite *s = suite_create("www_auth");
    TCase *tc;

    tc = tcase_create("challenge");
    tcase_add_loop_test(tc, test_www_auth_table, 0, (int)(sizeof(wa_cases) / sizeof(wa_cases[0])));
    tcase_add_test(tc, test_www_auth_nul_byte_rejected);
    tcase_add_test(tc, test_www_auth_lookup_helpers);
    tcase_add_test(tc, test_www_auth_message_is_short);
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_add_test(tc, test_www_auth_length_cap);
    tcase_add_test(tc, test_www_auth_challenge_cap);
    tcase_add_test(tc, test_www_auth_param_cap);
    tcase_add_test(tc, test_token_body_cap);
    suite_add_tcase(s, tc);

    tc = tcase_create("token");
    tcase_add_loop_test(tc, test_token_table, 0, (int)(sizeof(tok_cases) / sizeof(tok_cases[0])));
    tcase_add_test(tc, test_token_message_hides_body);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(www_auth_suite)
