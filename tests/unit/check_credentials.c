/* Docker client config lookup (src/lib/credentials.c). */
#include "config.h"

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
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(credentials_suite)
