/* Docker client config lookup (src/lib/credentials.c). */
#include "config.h"

#include <jansson.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "credentials.h"
#include "cs_test.h"

#define HUB CSI_CREDENTIAL_HUB_KEY

static const struct {
    const char *json;
    const char *domain;
    int code;
    const char *user, *pass, *idtok, *regtok, *helper;
} cases[] = {
    /* auths with auth = base64(user:pass) */
    {"{\"auths\":{\"reg.example.com\":{\"auth\":\"dXNlcjpwYXNz\"}}}", "reg.example.com", 0, "user",
     "pass", NULL, NULL, NULL},
    /* the password may hold ':' (split at the first) */
    {"{\"auths\":{\"reg.example.com\":{\"auth\":\"YWxpY2U6czNjcjpldA==\"}}}", "reg.example.com", 0,
     "alice", "s3cr:et", NULL, NULL, NULL},
    /* legacy username/password fields */
    {"{\"auths\":{\"reg:5000\":{\"username\":\"bob\",\"password\":\"pw\",\"email\":\"b@x\"}}}",
     "reg:5000", 0, "bob", "pw", NULL, NULL, NULL},
    /* a non-empty auth replaces them */
    {"{\"auths\":{\"r\":{\"auth\":\"dTpw\",\"username\":\"bob\",\"password\":\"pw\"}}}", "r", 0,
     "u", "p", NULL, NULL, NULL},
    /* identitytoken as ACR writes it: GUID user, empty password */
    {"{\"auths\":{\"x.azurecr.io\":{\"auth\":\"MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwOg"
     "==\",\"identitytoken\":\"eyJ.id.tok\"}}}",
     "x.azurecr.io", 0, "00000000-0000-0000-0000-000000000000", NULL, "eyJ.id.tok", NULL, NULL},
    /* registrytoken */
    {"{\"auths\":{\"r\":{\"registrytoken\":\"bearer-xyz\"}}}", "r", 0, NULL, NULL, NULL,
     "bearer-xyz", NULL},
    /* Docker Hub names all map to https://index.docker.io/v1/ */
    {"{\"auths\":{\"" HUB "\":{\"auth\":\"aHViOmh1YnB3\"}}}", "docker.io", 0, "hub", "hubpw", NULL,
     NULL, NULL},
    {"{\"auths\":{\"" HUB "\":{\"auth\":\"aHViOmh1YnB3\"}}}", "index.docker.io", 0, "hub", "hubpw",
     NULL, NULL, NULL},
    {"{\"auths\":{\"" HUB "\":{\"auth\":\"aHViOmh1YnB3\"}}}", "registry-1.docker.io", 0, "hub",
     "hubpw", NULL, NULL, NULL},
    /* ... and only that key, as in docker/cli */
    {"{\"auths\":{\"docker.io\":{\"auth\":\"aHViOmh1YnB3\"}}}", "docker.io", 0, NULL, NULL, NULL,
     NULL, NULL},
    /* legacy keys with scheme, user info and/or path (ConvertToHostname) */
    {"{\"auths\":{\"https://reg.example.com/v2/\":{\"auth\":\"dXNlcjpwYXNz\"}}}", "reg.example.com",
     0, "user", "pass", NULL, NULL, NULL},
    {"{\"auths\":{\"http://reg:5000\":{\"auth\":\"dXNlcjpwYXNz\"}}}", "reg:5000", 0, "user", "pass",
     NULL, NULL, NULL},
    {"{\"auths\":{\"reg.example.com/some/path\":{\"auth\":\"dXNlcjpwYXNz\"}}}", "reg.example.com",
     0, "user", "pass", NULL, NULL, NULL},
    {"{\"auths\":{\"https://me@reg.example.com:443/x\":{\"auth\":\"dXNlcjpwYXNz\"}}}",
     "reg.example.com:443", 0, "user", "pass", NULL, NULL, NULL},
    {"{\"auths\":{\"https://[::1]:5000/v2/\":{\"auth\":\"dXNlcjpwYXNz\"}}}", "[::1]:5000", 0,
     "user", "pass", NULL, NULL, NULL},
    {"{\"auths\":{\"https://reg.example.com:5000/\":{\"auth\":\"dXNlcjpwYXNz\"}}}",
     "reg.example.com", 0, NULL, NULL, NULL, NULL, NULL},
    /* the exact key wins over a legacy one, whatever the order */
    {"{\"auths\":{\"https://r\":{\"auth\":\"dTpw\"},\"r\":{\"auth\":\"dXNlcjpwYXNz\"}}}", "r", 0,
     "user", "pass", NULL, NULL, NULL},
    /* credHelpers beats credsStore and auths */
    {"{\"auths\":{\"r\":{\"auth\":\"dTpw\"}},\"credsStore\":\"desktop\","
     "\"credHelpers\":{\"r\":\"ecr-login\"}}",
     "r", 0, NULL, NULL, NULL, NULL, "ecr-login"},
    /* credsStore beats auths (the empty auths entry beside it is normal) */
    {"{\"auths\":{\"" HUB "\":{}},\"credsStore\":\"pass\"}", "docker.io", 0, NULL, NULL, NULL, NULL,
     "pass"},
    {"{\"auths\":{\"r\":{\"auth\":\"dTpw\"}},\"credsStore\":\"pass\"}", "r", 0, NULL, NULL, NULL,
     NULL, "pass"},
    /* a credHelpers entry for another registry leaves credsStore in charge */
    {"{\"credsStore\":\"osxkeychain\",\"credHelpers\":{\"gcr.io\":\"gcloud\"}}", "r", 0, NULL, NULL,
     NULL, NULL, "osxkeychain"},
    /* an empty credHelpers entry selects auths and skips credsStore */
    {"{\"auths\":{\"r\":{\"auth\":\"dTpw\"}},\"credsStore\":\"pass\",\"credHelpers\":{\"r\":\"\"}}",
     "r", 0, "u", "p", NULL, NULL, NULL},
    /* credHelpers are keyed like auths: Hub's key is the URL */
    {"{\"credHelpers\":{\"docker.io\":\"x\",\"" HUB "\":\"desktop\"}}", "docker.io", 0, NULL, NULL,
     NULL, NULL, "desktop"},
    /* no entry, empty entry, empty config, empty file: anonymous */
    {"{\"auths\":{\"other\":{\"auth\":\"dXNlcjpwYXNz\"}}}", "r", 0, NULL, NULL, NULL, NULL, NULL},
    {"{\"auths\":{\"r\":{}}}", "r", 0, NULL, NULL, NULL, NULL, NULL},
    {"{\"auths\":{\"r\":null},\"credsStore\":\"\"}", "r", 0, NULL, NULL, NULL, NULL, NULL},
    {"{}", "r", 0, NULL, NULL, NULL, NULL, NULL},
    {"", "r", 0, NULL, NULL, NULL, NULL, NULL},
    {" \n\t", "r", 0, NULL, NULL, NULL, NULL, NULL},
    /* field names match case-insensitively, as Go's encoding/json */
    {"{\"Auths\":{\"r\":{\"Auth\":\"dXNlcjpwYXNz\",\"IdentityToken\":\"it\"}}}", "r", 0, "user",
     "pass", "it", NULL, NULL},
    /* NULs trimmed from the password's ends */
    {"{\"auths\":{\"r\":{\"auth\":\"dXNlcjpwYXNzAAA=\"}}}", "r", 0, "user", "pass", NULL, NULL,
     NULL},
    /* an unrelated broken entry does not matter */
    {"{\"auths\":{\"other\":{\"auth\":\"!!!!\"},\"r\":{\"auth\":\"dTpw\"}}}", "r", 0, "u", "p",
     NULL, NULL, NULL},

    /* malformed */
    {"{\"auths\":{", "r", CS_EPROTO, NULL, NULL, NULL, NULL, NULL},
    {"[]", "r", CS_EPROTO, NULL, NULL, NULL, NULL, NULL},
    {"{\"auths\":[]}", "r", CS_EPROTO, NULL, NULL, NULL, NULL, NULL},
    {"{\"auths\":{\"r\":\"x\"}}", "r", CS_EPROTO, NULL, NULL, NULL, NULL, NULL},
    {"{\"auths\":{\"r\":{\"auth\":5}}}", "r", CS_EPROTO, NULL, NULL, NULL, NULL, NULL},
    {"{\"credsStore\":1}", "r", CS_EPROTO, NULL, NULL, NULL, NULL, NULL},
    {"{\"credHelpers\":\"x\"}", "r", CS_EPROTO, NULL, NULL, NULL, NULL, NULL},
    {"{\"credHelpers\":{\"r\":true}}", "r", CS_EPROTO, NULL, NULL, NULL, NULL, NULL},
    /* bad base64: invalid characters, missing padding, data after padding, bad padding */
    {"{\"auths\":{\"r\":{\"auth\":\"dXNl*jpwYXNz\"}}}", "r", CS_EPROTO, NULL, NULL, NULL, NULL,
     NULL},
    {"{\"auths\":{\"r\":{\"auth\":\"dXNlcjpwYXM\"}}}", "r", CS_EPROTO, NULL, NULL, NULL, NULL,
     NULL},
    {"{\"auths\":{\"r\":{\"auth\":\"dTpw\\u003d\\u003ddTpw\"}}}", "r", CS_EPROTO, NULL, NULL, NULL,
     NULL, NULL},
    {"{\"auths\":{\"r\":{\"auth\":\"dTp=dTpw\"}}}", "r", CS_EPROTO, NULL, NULL, NULL, NULL, NULL},
    {"{\"auths\":{\"r\":{\"auth\":\"d===\"}}}", "r", CS_EPROTO, NULL, NULL, NULL, NULL, NULL},
    {"{\"auths\":{\"r\":{\"auth\":\"dXNlcjpwYXNz\\u00e9\"}}}", "r", CS_EPROTO, NULL, NULL, NULL,
     NULL, NULL},
    /* no ':' after decoding, empty user, NUL in the user */
    {"{\"auths\":{\"r\":{\"auth\":\"dXNlcg==\"}}}", "r", CS_EPROTO, NULL, NULL, NULL, NULL, NULL},
    {"{\"auths\":{\"r\":{\"auth\":\"OnBhc3M=\"}}}", "r", CS_EPROTO, NULL, NULL, NULL, NULL, NULL},
    {"{\"auths\":{\"r\":{\"auth\":\"dQB4OnA=\"}}}", "r", CS_EPROTO, NULL, NULL, NULL, NULL, NULL},
    /* no registry */
    {"{}", "", CS_EINVAL, NULL, NULL, NULL, NULL, NULL},
};

static void
check_field(const char *what, int i, const char *got, const char *want)
{
    if (want == NULL)
        ck_assert_msg(got == NULL, "case %d: %s is \"%s\", want NULL", i, what, got);
    else
        ck_assert_msg(got != NULL && strcmp(got, want) == 0, "case %d: %s is \"%s\", want \"%s\"",
                      i, what, got ? got : "(null)", want);
}

START_TEST(test_credentials_table)
{
    csi_credential c = CSI_CREDENTIAL_INIT;
    cs_error *err = NULL;
    const char *json = cases[_i].json;
    int ret;

    ret = csi_credential_lookup(&c, json, strlen(json), cases[_i].domain, &err);
    ck_assert_msg(ret == cases[_i].code, "case %d (%s): got %d (%s), want %d", _i, json, ret,
                  err ? err->message : "-", cases[_i].code);
    check_field("username", _i, c.username, cases[_i].user);
    check_field("password", _i, c.password, cases[_i].pass);
    check_field("identity_token", _i, c.identity_token, cases[_i].idtok);
    check_field("registry_token", _i, c.registry_token, cases[_i].regtok);
    check_field("helper", _i, c.helper, cases[_i].helper);
    if (ret == CS_EPROTO)
        ck_assert_ptr_nonnull(strstr(err->message, "config.json"));
    if (ret != 0)
        ck_assert_int_eq(err->code, ret);
    csi_credential_dispose(&c);
    ck_assert_ptr_null(c.username);
    cs_error_free(err);
}
END_TEST

START_TEST(test_credentials_key)
{
    ck_assert_str_eq(csi_credential_key("docker.io"), HUB);
    ck_assert_str_eq(csi_credential_key("index.docker.io"), HUB);
    ck_assert_str_eq(csi_credential_key("registry-1.docker.io"), HUB);
    ck_assert_str_eq(csi_credential_key("Docker.IO"), HUB);
    ck_assert_str_eq(csi_credential_key("ghcr.io"), "ghcr.io");
    ck_assert_str_eq(csi_credential_key("localhost:5000"), "localhost:5000");
    ck_assert_str_eq(csi_credential_key("docker.io:443"), "docker.io:443");
    ck_assert_ptr_null(csi_credential_key(NULL));
}
END_TEST

START_TEST(test_credentials_messages_hide_secrets)
{
    static const char bad_json[] = "{\"auths\":{\"r\":{\"auth\":\"SECRETSECRET}}}";
    static const char bad_b64[] = "{\"auths\":{\"r\":{\"auth\":\"SECRET*SECRET\"}}}";
    csi_credential c = CSI_CREDENTIAL_INIT;
    cs_error *err = NULL;

    ck_assert_int_eq(csi_credential_lookup(&c, bad_json, strlen(bad_json), "r", &err), CS_EPROTO);
    ck_assert_ptr_null(strstr(err->message, "SECRET"));
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_credential_lookup(&c, bad_b64, strlen(bad_b64), "r", &err), CS_EPROTO);
    ck_assert_ptr_null(strstr(err->message, "SECRET"));
    ck_assert_ptr_nonnull(strstr(err->message, "base64"));
    cs_error_free(err);
    csi_credential_dispose(NULL);
}
END_TEST

START_TEST(test_credentials_size_cap)
{
    size_t len = CSI_CREDENTIAL_MAX_CONFIG + 1;
    char *json = malloc(len);
    csi_credential c = CSI_CREDENTIAL_INIT;
    cs_error *err = NULL;

    ck_assert_ptr_nonnull(json);
    memset(json, ' ', len);
    memcpy(json, "{}", 2);
    ck_assert_int_eq(csi_credential_lookup(&c, json, len, "r", &err), CS_ELIMIT);
    cs_error_free(err);
    err = NULL;
    ck_assert_cs_ok(csi_credential_lookup(&c, json, len - 1, "r", &err), &err);
    csi_credential_dispose(&c);
    free(json);
}
END_TEST

/* ---- the writer (credstore.c): pure transformations ------------------------------------ */

/* csi_credstore_set on IN, checked to succeed; a new string. */
static char *
set_ok(const char *in, const char *key, const char *user, const char *pass)
{
    cs_error *err = NULL;
    char *out = NULL;
    size_t len = 0;

    ck_assert_cs_ok(csi_credstore_set(&out, &len, in, in ? strlen(in) : 0, key, user, pass,
                                      "config.json", &err),
                    &err);
    ck_assert_ptr_nonnull(out);
    ck_assert_uint_eq(strlen(out), len);
    return out;
}

static json_t *
parse(const char *s)
{
    json_error_t jerr;
    json_t *j = json_loads(s, JSON_ALLOW_NUL, &jerr);

    ck_assert_msg(j != NULL, "not JSON (%s): %s", jerr.text, s);
    return j;
}

START_TEST(test_credstore_round_trip)
{
    static const char *const keys[] = {"reg.example.com", "127.0.0.1:5000", "[::1]:5000", HUB};
    static const char *const domains[] = {"reg.example.com", "127.0.0.1:5000", "[::1]:5000",
                                          "docker.io"};
    static const char *const passwords[] = {"pw", "p:a:s:s", "\xc3\xa9t\xc3\xa9 \"\\\t", "x"};
    csi_credential c = CSI_CREDENTIAL_INIT;
    cs_error *err = NULL;
    char *out;
    size_t i;

    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        out = set_ok(i % 2 ? "" : NULL, keys[i], "alice", passwords[i]);
        ck_assert_cs_ok(csi_credential_lookup(&c, out, strlen(out), domains[i], &err), &err);
        ck_assert_str_eq(c.username, "alice");
        ck_assert_str_eq(c.password, passwords[i]);
        ck_assert_ptr_null(c.identity_token);
        ck_assert_ptr_null(c.helper);
        csi_credential_dispose(&c);
        csi_credential_free_config(out, strlen(out));
    }
    /* exactly what docker writes: auths.KEY.auth = base64(user:password) */
    out = set_ok(NULL, "r", "user", "pass");
    {
        json_t *j = parse(out);

        ck_assert_str_eq(json_string_value(json_object_get(
                             json_object_get(json_object_get(j, "auths"), "r"), "auth")),
                         "dXNlcjpwYXNz");
        ck_assert_uint_eq(json_object_size(j), 1);
        json_decref(j);
    }
    /* a second login replaces the first */
    {
        char *again = set_ok(out, "r", "bob", "pw2");

        ck_assert_cs_ok(csi_credential_lookup(&c, again, strlen(again), "r", &err), &err);
        ck_assert_str_eq(c.username, "bob");
        ck_assert_str_eq(c.password, "pw2");
        csi_credential_dispose(&c);
        free(again);
    }
    free(out);
}
END_TEST

START_TEST(test_credstore_keeps_other_keys)
{
    static const char in[] =
        "{\"psFormat\":\"table {{.ID}}\",\"auths\":{\"other:5000\":{\"auth\":\"dTpw\","
        "\"email\":\"u@x\"},\"r\":{\"auth\":\"b2xkOm9sZA==\",\"email\":\"me@x\","
        "\"identitytoken\":\"old-id\",\"Username\":\"old\",\"password\":\"old\","
        "\"registrytoken\":\"old-rt\",\"x-extra\":[1,2]}},\"credHelpers\":{\"gcr.io\":\"gcloud\"},"
        "\"proxies\":{\"default\":{\"httpProxy\":\"http://p:3128\"}},\"n\":[1,2.5,null,true],"
        "\"nul\":\"a\\u0000b\",\"u\":\"h\\u00e9\"}";
    json_t *before = parse(in), *after, *entry;
    char *out = set_ok(in, "r", "alice", "pw");
    const char *k;
    void *it;
    size_t i = 0;

    after = parse(out);
    entry = json_object_get(json_object_get(after, "auths"), "r");
    /* the entry: auth replaced, the other secrets gone (case-insensitive names too), the rest
     * kept */
    ck_assert_str_eq(json_string_value(json_object_get(entry, "auth")), "YWxpY2U6cHc=");
    ck_assert_str_eq(json_string_value(json_object_get(entry, "email")), "me@x");
    ck_assert_ptr_nonnull(json_object_get(entry, "x-extra"));
    ck_assert_uint_eq(json_object_size(entry), 3);
    /* everything else equal, in the same order */
    json_object_del(json_object_get(before, "auths"), "r");
    json_object_del(json_object_get(after, "auths"), "r");
    ck_assert(json_equal(before, after));
    for (it = json_object_iter(after); it != NULL; it = json_object_iter_next(after, it), i++) {
        static const char *const order[] = {"psFormat", "auths", "credHelpers", "proxies", "n",
                                            "nul",      "u"};

        k = json_object_iter_key(it);
        ck_assert_str_eq(k, order[i]);
    }
    /* "\u0000" survives */
    ck_assert_uint_eq(json_string_length(json_object_get(after, "nul")), 3);
    json_decref(before);
    json_decref(after);
    free(out);
}
END_TEST

START_TEST(test_credstore_helper_entry)
{
    csi_credential c = CSI_CREDENTIAL_INIT;
    cs_error *err = NULL;
    char *out;
    json_t *j;

    /* the secret went to a helper: an empty entry, as docker's native store leaves it */
    out =
        set_ok("{\"credsStore\":\"pass\",\"auths\":{\"r\":{\"auth\":\"dTpw\"}}}", "r", NULL, NULL);
    j = parse(out);
    ck_assert_uint_eq(json_object_size(json_object_get(json_object_get(j, "auths"), "r")), 0);
    ck_assert_ptr_null(strstr(out, "dTpw"));
    ck_assert_cs_ok(csi_credential_lookup(&c, out, strlen(out), "r", &err), &err);
    ck_assert_str_eq(c.helper, "pass");
    csi_credential_dispose(&c);
    json_decref(j);
    free(out);
}
END_TEST

START_TEST(test_credstore_auths_shapes)
{
    cs_error *err = NULL;
    char *out = NULL;
    size_t len = 0;
    json_t *j;

    /* null auths: replaced */
    out = set_ok("{\"auths\":null}", "r", "u", "p");
    j = parse(out);
    ck_assert(json_is_object(json_object_get(json_object_get(j, "auths"), "r")));
    json_decref(j);
    free(out);
    /* "Auths" is the field Go would decode: written there, not beside it */
    out = set_ok("{\"Auths\":{\"x\":{}}}", "r", "u", "p");
    j = parse(out);
    ck_assert_ptr_null(json_object_get(j, "auths"));
    ck_assert_ptr_nonnull(json_object_get(json_object_get(j, "Auths"), "r"));
    json_decref(j);
    free(out);
    /* a whitespace-only file is an empty config */
    out = set_ok(" \n", "r", "u", "p");
    free(out);
    /* refusals leave nothing */
    ck_assert_int_eq(
        csi_credstore_set(&out, &len, "{\"auths\":[]}", 12, "r", "u", "p", "/x/config.json", &err),
        CS_EPROTO);
    ck_assert_ptr_null(out);
    ck_assert_ptr_nonnull(strstr(err->message, "/x/config.json"));
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(
        csi_credstore_set(&out, &len, "{\"auths\":", 9, "r", "u", "p", "config.json", &err),
        CS_EPROTO);
    ck_assert_ptr_null(out);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_credstore_set(&out, &len, "[]", 2, "r", "u", "p", "config.json", &err),
                     CS_EPROTO);
    cs_error_free(err);
    err = NULL;
    /* a user name with ':' would not read back */
    ck_assert_int_eq(csi_credstore_set(&out, &len, NULL, 0, "r", "a:b", "p", "config.json", &err),
                     CS_EINVAL);
    ck_assert_ptr_null(out);
    cs_error_free(err);
}
END_TEST

START_TEST(test_credstore_server_names)
{
    static const struct {
        const char *server, *key, *domain;
    } ok[] = {
        {NULL, HUB, "docker.io"},
        {"", HUB, "docker.io"},
        {"docker.io", HUB, "docker.io"},
        {"index.docker.io", HUB, "docker.io"},
        {"registry-1.docker.io", HUB, "docker.io"},
        {"https://index.docker.io/v1/", HUB, "docker.io"},
        {"Docker.IO", HUB, "docker.io"},
        {"reg.example.com", "reg.example.com", "reg.example.com"},
        {"https://reg.example.com:5000/v2/", "reg.example.com:5000", "reg.example.com:5000"},
        {"http://me@127.0.0.1:5000", "127.0.0.1:5000", "127.0.0.1:5000"},
        {"localhost:5000/some/path", "localhost:5000", "localhost:5000"},
        {"[::1]:5000", "[::1]:5000", "[::1]:5000"},
        {"docker.io:443", "docker.io:443", "docker.io:443"},
    };
    static const char *const bad[] = {"a b",   ":5000", "-x.example.com",
                                      "/path", "r\tx",  "https:///v2/"};
    cs_error *err = NULL;
    char *key, *domain;
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        ck_assert_cs_ok(csi_credstore_server(&key, &domain, ok[i].server, &err), &err);
        ck_assert_msg(strcmp(key, ok[i].key) == 0, "%s: key %s", ok[i].server, key);
        ck_assert_msg(strcmp(domain, ok[i].domain) == 0, "%s: domain %s", ok[i].server, domain);
        free(key);
        free(domain);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(csi_credstore_server(&key, &domain, bad[i], &err) == CS_EINVAL, "%s", bad[i]);
        ck_assert_ptr_null(key);
        ck_assert_ptr_null(domain);
        cs_error_free(err);
        err = NULL;
    }
}
END_TEST

START_TEST(test_credstore_hub_key)
{
    csi_credential c = CSI_CREDENTIAL_INIT;
    cs_error *err = NULL;
    char *key, *domain, *out;
    json_t *j;

    /* `login docker.io` lands where docker's lookup (and ours, for any Hub name) reads */
    ck_assert_cs_ok(csi_credstore_server(&key, &domain, "docker.io", &err), &err);
    out = set_ok("{}", key, "hub", "hubpw");
    j = parse(out);
    ck_assert_ptr_nonnull(json_object_get(json_object_get(j, "auths"), HUB));
    ck_assert_uint_eq(json_object_size(json_object_get(j, "auths")), 1);
    ck_assert_cs_ok(csi_credential_lookup(&c, out, strlen(out), "index.docker.io", &err), &err);
    ck_assert_str_eq(c.username, "hub");
    ck_assert_str_eq(c.password, "hubpw");
    csi_credential_dispose(&c);
    json_decref(j);
    free(out);
    free(key);
    free(domain);
}
END_TEST

START_TEST(test_credstore_erase)
{
    static const char in[] =
        "{\"auths\":{\"r:5000\":{\"auth\":\"dTpw\"},\"https://r:5000/v1/\":{\"auth\":\"dTpw\"},"
        "\"http://r:5000\":{},\"r\":{\"auth\":\"dTpw\"},\"other:5000\":{\"auth\":\"dTpw\"},"
        "\"" HUB "\":{\"auth\":\"dTpw\"}},\"credsStore\":\"x\",\"z\":1}";
    csi_credential c = CSI_CREDENTIAL_INIT;
    cs_error *err = NULL;
    char *out = NULL;
    size_t len = 0;
    bool removed = false;
    json_t *j, *auths;

    ck_assert_cs_ok(
        csi_credstore_erase(&out, &len, &removed, in, strlen(in), "r:5000", "config.json", &err),
        &err);
    ck_assert(removed);
    j = parse(out);
    auths = json_object_get(j, "auths");
    /* the key and the legacy keys naming its host, nothing else */
    ck_assert_uint_eq(json_object_size(auths), 3);
    ck_assert_ptr_nonnull(json_object_get(auths, "r"));
    ck_assert_ptr_nonnull(json_object_get(auths, "other:5000"));
    ck_assert_ptr_nonnull(json_object_get(auths, HUB));
    ck_assert_str_eq(json_string_value(json_object_get(j, "credsStore")), "x");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "z")), 1);
    /* what a lookup finds afterwards: nothing (the helper aside, which logout erases) */
    ck_assert_cs_ok(csi_credential_lookup(&c, "{}", 2, "r:5000", &err), &err);
    json_decref(j);

    /* erase after set: back to the original */
    {
        static const char orig[] = "{\"a\":1,\"auths\":{\"o\":{\"auth\":\"dTpw\"}}}";
        char *set = set_ok(orig, "r", "u", "p"), *back = NULL;
        json_t *want = parse(orig), *got;

        ck_assert_cs_ok(
            csi_credstore_erase(&back, &len, &removed, set, strlen(set), "r", "config.json", &err),
            &err);
        ck_assert(removed);
        got = parse(back);
        ck_assert(json_equal(want, got));
        json_decref(want);
        json_decref(got);
        free(set);
        free(back);
    }
    free(out);
    out = NULL;

    /* Hub: only the URL key (other Hub spellings are not where docker reads) */
    ck_assert_cs_ok(
        csi_credstore_erase(&out, &len, &removed, in, strlen(in), HUB, "config.json", &err), &err);
    ck_assert(removed);
    j = parse(out);
    ck_assert_ptr_null(json_object_get(json_object_get(j, "auths"), HUB));
    ck_assert_uint_eq(json_object_size(json_object_get(j, "auths")), 5);
    json_decref(j);
    free(out);
    out = NULL;

    /* nothing there: not removed, nothing to write */
    ck_assert_cs_ok(
        csi_credstore_erase(&out, &len, &removed, in, strlen(in), "nope:1", "config.json", &err),
        &err);
    ck_assert(!removed);
    ck_assert_ptr_null(out);
    ck_assert_cs_ok(csi_credstore_erase(&out, &len, &removed, NULL, 0, "r", "config.json", &err),
                    &err);
    ck_assert(!removed);
    ck_assert_cs_ok(
        csi_credstore_erase(&out, &len, &removed, "{\"auths\":null}", 14, "r", "config.json", &err),
        &err);
    ck_assert(!removed);
    ck_assert_int_eq(
        csi_credstore_erase(&out, &len, &removed, "{\"auths\":1}", 11, "r", "config.json", &err),
        CS_EPROTO);
    cs_error_free(err);
}
END_TEST

START_TEST(test_credentials_helper_for)
{
    cs_error *err = NULL;
    char *h = NULL;
    const char *j1 = "{\"credsStore\":\"desktop\",\"credHelpers\":{\"r\":\"ecr\",\"e\":\"\"}}";

    ck_assert_cs_ok(csi_credential_helper_for(&h, j1, strlen(j1), "r", "c", &err), &err);
    ck_assert_str_eq(h, "ecr");
    free(h);
    ck_assert_cs_ok(csi_credential_helper_for(&h, j1, strlen(j1), "x", "c", &err), &err);
    ck_assert_str_eq(h, "desktop");
    free(h);
    /* an empty credHelpers entry: the file */
    ck_assert_cs_ok(csi_credential_helper_for(&h, j1, strlen(j1), "e", "c", &err), &err);
    ck_assert_ptr_null(h);
    ck_assert_cs_ok(csi_credential_helper_for(&h, NULL, 0, "r", "c", &err), &err);
    ck_assert_ptr_null(h);
}
END_TEST

/* ---- csi_credential_load: a temporary config directory --------------------------------- */

static char tmpdir[64];
static char *saved_home;
static char *saved_docker_config;

static char *
save_env(const char *name)
{
    const char *v = getenv(name);

    return v ? strdup(v) : NULL;
}

static void
restore_env(const char *name, char *value)
{
    if (value != NULL)
        setenv(name, value, 1);
    else
        unsetenv(name);
    free(value);
}

static void
write_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void
setup(void)
{
    strcpy(tmpdir, "/tmp/cs_cred_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    saved_home = save_env("HOME");
    saved_docker_config = save_env("DOCKER_CONFIG");
}

static void
teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    restore_env("HOME", saved_home);
    restore_env("DOCKER_CONFIG", saved_docker_config);
    saved_home = NULL;
    saved_docker_config = NULL;
}

START_TEST(test_credentials_load_dir)
{
    csi_credential c = CSI_CREDENTIAL_INIT;
    cs_error *err = NULL;

    write_file(tmpdir, "config.json",
               "{\"auths\":{\"reg.example.com\":{\"auth\":\"dXNlcjpwYXNz\"}}}\n");
    ck_assert_cs_ok(csi_credential_load(&c, tmpdir, "reg.example.com", &err), &err);
    ck_assert_str_eq(c.username, "user");
    ck_assert_str_eq(c.password, "pass");
    csi_credential_dispose(&c);

    ck_assert_cs_ok(csi_credential_load(&c, tmpdir, "other.example.com", &err), &err);
    ck_assert_ptr_null(c.username);
}
END_TEST

START_TEST(test_credentials_load_missing_file)
{
    csi_credential c = CSI_CREDENTIAL_INIT;
    cs_error *err = NULL;
    char dir[128];

    ck_assert_cs_ok(csi_credential_load(&c, tmpdir, "r", &err), &err);
    ck_assert_ptr_null(c.username);
    ck_assert_ptr_null(c.helper);
    snprintf(dir, sizeof(dir), "%s/does/not/exist", tmpdir);
    ck_assert_cs_ok(csi_credential_load(&c, dir, "r", &err), &err);
    ck_assert_ptr_null(c.username);
}
END_TEST

START_TEST(test_credentials_load_env)
{
    csi_credential c = CSI_CREDENTIAL_INIT;
    cs_error *err = NULL;
    char dir[128];

    /* $DOCKER_CONFIG is a directory */
    write_file(tmpdir, "config.json", "{\"credsStore\":\"secretservice\"}");
    setenv("DOCKER_CONFIG", tmpdir, 1);
    ck_assert_cs_ok(csi_credential_load(&c, NULL, "r", &err), &err);
    ck_assert_str_eq(c.helper, "secretservice");
    csi_credential_dispose(&c);

    /* an explicit directory beats $DOCKER_CONFIG; "" means none */
    snprintf(dir, sizeof(dir), "%s/elsewhere", tmpdir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ck_assert_cs_ok(csi_credential_load(&c, dir, "r", &err), &err);
    ck_assert_ptr_null(c.helper);
    ck_assert_cs_ok(csi_credential_load(&c, "", "r", &err), &err);
    ck_assert_str_eq(c.helper, "secretservice");
    csi_credential_dispose(&c);

    /* without $DOCKER_CONFIG: $HOME/.docker */
    unsetenv("DOCKER_CONFIG");
    setenv("HOME", tmpdir, 1);
    snprintf(dir, sizeof(dir), "%s/.docker", tmpdir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    write_file(dir, "config.json", "{\"auths\":{\"" HUB "\":{\"auth\":\"aHViOmh1YnB3\"}}}");
    ck_assert_cs_ok(csi_credential_load(&c, NULL, "docker.io", &err), &err);
    ck_assert_str_eq(c.username, "hub");
    ck_assert_str_eq(c.password, "hubpw");
    csi_credential_dispose(&c);
}
END_TEST

START_TEST(test_credentials_load_errors_name_path)
{
    csi_credential c = CSI_CREDENTIAL_INIT;
    cs_error *err = NULL;
    char dir[128];

    /* malformed JSON: the message names the file */
    write_file(tmpdir, "config.json", "{\"auths\":");
    ck_assert_int_eq(csi_credential_load(&c, tmpdir, "r", &err), CS_EPROTO);
    ck_assert_ptr_nonnull(strstr(err->message, tmpdir));
    ck_assert_ptr_nonnull(strstr(err->message, "config.json"));
    cs_error_free(err);
    err = NULL;

    /* unreadable: config.json is a directory (chmod would not stop root) */
    snprintf(dir, sizeof(dir), "%s/sub", tmpdir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    snprintf(dir, sizeof(dir), "%s/sub/config.json", tmpdir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    snprintf(dir, sizeof(dir), "%s/sub", tmpdir);
    ck_assert_int_eq(csi_credential_load(&c, dir, "r", &err), CS_EIO);
    ck_assert_int_ne(err->sys_errno, 0);
    ck_assert_ptr_nonnull(strstr(err->message, "sub/config.json"));
    ck_assert_ptr_null(c.username);
    cs_error_free(err);
}
END_TEST

START_TEST(test_credstore_write_file)
{
    cs_error *err = NULL;
    char path[256], dir[192], target[256], *data = NULL;
    struct stat st;
    size_t len = 0;

    /* a missing directory is made 0700; the file is 0600 */
    snprintf(dir, sizeof(dir), "%s/new/.docker", tmpdir);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    ck_assert_cs_ok(csi_credstore_write(path, "{}\n", 3, &err), &err);
    ck_assert_int_eq(stat(dir, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0700);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0600);
    ck_assert_cs_ok(csi_credential_read_config(&data, &len, path, &err), &err);
    ck_assert_str_eq(data, "{}\n");
    csi_credential_free_config(data, len);

    /* an existing 0644 file ends 0600; nothing else is left in the directory */
    ck_assert_int_eq(chmod(path, 0644), 0);
    ck_assert_cs_ok(csi_credstore_write(path, "{\"a\":1}", 7, &err), &err);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0600);
    ck_assert_int_eq(st.st_size, 7);
    {
        char cmd[512];

        snprintf(cmd, sizeof(cmd), "test \"$(ls -A '%s')\" = config.json", dir);
        ck_assert_int_eq(system(cmd), 0);
    }

    /* a symlink stays a symlink; its target is replaced */
    snprintf(target, sizeof(target), "%s/real.json", tmpdir);
    write_file(tmpdir, "real.json", "{}");
    snprintf(path, sizeof(path), "%s/link.json", tmpdir);
    ck_assert_int_eq(symlink(target, path), 0);
    ck_assert_cs_ok(csi_credstore_write(path, "{\"b\":2}", 7, &err), &err);
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISLNK(st.st_mode));
    ck_assert_cs_ok(csi_credential_read_config(&data, &len, target, &err), &err);
    ck_assert_str_eq(data, "{\"b\":2}");
    csi_credential_free_config(data, len);

    /* a missing file reads as none */
    snprintf(path, sizeof(path), "%s/none.json", tmpdir);
    ck_assert_cs_ok(csi_credential_read_config(&data, &len, path, &err), &err);
    ck_assert_ptr_null(data);
}
END_TEST

START_TEST(test_credstore_file_round_trip)
{
    csi_credential c = CSI_CREDENTIAL_INIT;
    cs_error *err = NULL;
    char *path = NULL, *data = NULL, *out = NULL;
    size_t len = 0, olen = 0;
    bool removed = false;

    write_file(tmpdir, "config.json", "{\"psFormat\":\"x\"}");
    ck_assert_cs_ok(csi_credential_config_path(&path, tmpdir, &err), &err);
    ck_assert_cs_ok(csi_credential_read_config(&data, &len, path, &err), &err);
    ck_assert_cs_ok(csi_credstore_set(&out, &olen, data, len, "r:5000", "u", "p", path, &err),
                    &err);
    ck_assert_cs_ok(csi_credstore_write(path, out, olen, &err), &err);
    csi_credential_free_config(out, olen);
    csi_credential_free_config(data, len);
    ck_assert_cs_ok(csi_credential_load(&c, tmpdir, "r:5000", &err), &err);
    ck_assert_str_eq(c.username, "u");
    ck_assert_str_eq(c.password, "p");
    csi_credential_dispose(&c);

    ck_assert_cs_ok(csi_credential_read_config(&data, &len, path, &err), &err);
    ck_assert_cs_ok(csi_credstore_erase(&out, &olen, &removed, data, len, "r:5000", path, &err),
                    &err);
    ck_assert(removed);
    ck_assert_cs_ok(csi_credstore_write(path, out, olen, &err), &err);
    csi_credential_free_config(out, olen);
    csi_credential_free_config(data, len);
    ck_assert_cs_ok(csi_credential_load(&c, tmpdir, "r:5000", &err), &err);
    ck_assert_ptr_null(c.username);
    free(path);
}
END_TEST

static Suite *
credentials_suite(void)
{
    Suite *s = suite_create("credentials");
    TCase *tc;

    tc = tcase_create("lookup");
    tcase_add_loop_test(tc, test_credentials_table, 0, (int)(sizeof(cases) / sizeof(cases[0])));
    tcase_add_test(tc, test_credentials_key);
    tcase_add_test(tc, test_credentials_messages_hide_secrets);
    tcase_add_test(tc, test_credentials_size_cap);
    suite_add_tcase(s, tc);

    tc = tcase_create("load");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_credentials_load_dir);
    tcase_add_test(tc, test_credentials_load_missing_file);
    tcase_add_test(tc, test_credentials_load_env);
    tcase_add_test(tc, test_credentials_load_errors_name_path);
    tcase_add_test(tc, test_credstore_write_file);
    tcase_add_test(tc, test_credstore_file_round_trip);
    suite_add_tcase(s, tc);

    tc = tcase_create("writer");
    tcase_add_test(tc, test_credstore_round_trip);
    tcase_add_test(tc, test_credstore_keeps_other_keys);
    tcase_add_test(tc, test_credstore_helper_entry);
    tcase_add_test(tc, test_credstore_auths_shapes);
    tcase_add_test(tc, test_credstore_server_names);
    tcase_add_test(tc, test_credstore_hub_key);
    tcase_add_test(tc, test_credstore_erase);
    tcase_add_test(tc, test_credentials_helper_for);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(credentials_suite)
