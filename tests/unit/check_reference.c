/* Reference parsing and normalisation, checked against the cases Docker's own tests use
 * (distribution/reference normalize_test.go, reference_test.go) and cachesync's choices. */
#include <stdint.h>

#include <cachesync/reference.h>

#include "cs_test.h"

#define HEX64 "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"
#define HEX64_UPPER "7CC4B5AEFD1D0CADF8D97D4350462BA51C694EBCA145B08D7D41B41ACC8DB5AA"
#define DG "sha256:" HEX64
#define F16 "ffffffffffffffff"
#define F128 F16 F16 F16 F16 F16 F16 F16 F16
#define DG512 "sha512:" F128

/* Long names are built from literals so the tables stay static. */
#define A1 "a"
#define A2 A1 A1
#define A4 A2 A2
#define A8 A4 A4
#define A16 A8 A8
#define A32 A16 A16
#define A64 A32 A32
#define A128 A64 A64
#define A247 A128 A64 A32 A16 A4 A2 A1
#define A248 A128 A64 A32 A16 A8
#define A255 A128 A64 A32 A16 A8 A4 A2 A1
#define A256 A128 A128

struct parse_case {
    const char *input;
    int code; /* 0 or the expected error */
    const char *domain, *path, *tag, *digest;
    const char *full, *familiar;
    const char *msg_has; /* for errors: a part of the expected message, or NULL */
};

/* One line per case reads better than clang-format's brace layout for these macros. */
/* clang-format off */
#define OK(in, d, p, t, g, full, fam) {in, 0, d, p, t, g, full, fam, NULL}
#define BAD(in, has) {in, CS_EINVAL, NULL, NULL, NULL, NULL, NULL, NULL, has}
/* clang-format on */

static const struct parse_case parse_cases[] = {
    /* Docker Hub normalisation */
    OK("app", "docker.io", "library/app", "latest", NULL, "docker.io/library/app:latest",
       "app:latest"),
    OK("app:1", "docker.io", "library/app", "1", NULL, "docker.io/library/app:1", "app:1"),
    OK("library/app", "docker.io", "library/app", "latest", NULL, "docker.io/library/app:latest",
       "app:latest"),
    OK("docker.io/app", "docker.io", "library/app", "latest", NULL, "docker.io/library/app:latest",
       "app:latest"),
    OK("index.docker.io/app", "docker.io", "library/app", "latest", NULL,
       "docker.io/library/app:latest", "app:latest"),
    OK("docker.io/library/app:latest", "docker.io", "library/app", "latest", NULL,
       "docker.io/library/app:latest", "app:latest"),
    OK("index.docker.io/library/app:v2", "docker.io", "library/app", "v2", NULL,
       "docker.io/library/app:v2", "app:v2"),
    OK("foo/bar", "docker.io", "foo/bar", "latest", NULL, "docker.io/foo/bar:latest",
       "foo/bar:latest"),
    OK("docker.io/foo/bar:1.0", "docker.io", "foo/bar", "1.0", NULL, "docker.io/foo/bar:1.0",
       "foo/bar:1.0"),
    OK("library/foo/bar", "docker.io", "library/foo/bar", "latest", NULL,
       "docker.io/library/foo/bar:latest", "library/foo/bar:latest"),
    OK("store/foo/bar", "docker.io", "store/foo/bar", "latest", NULL,
       "docker.io/store/foo/bar:latest", "store/foo/bar:latest"),
    OK("test_com/foo", "docker.io", "test_com/foo", "latest", NULL, "docker.io/test_com/foo:latest",
       "test_com/foo:latest"),
    OK("ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base", "latest", NULL,
       "docker.io/library/ubuntu-12.04-base:latest", "ubuntu-12.04-base:latest"),
    /* A single component is never a host, even "localhost"; ":5000" is then a tag. */
    OK("localhost", "docker.io", "library/localhost", "latest", NULL,
       "docker.io/library/localhost:latest", "localhost:latest"),
    OK("localhost:5000", "docker.io", "library/localhost", "5000", NULL,
       "docker.io/library/localhost:5000", "localhost:5000"),
    OK("example.com:5000", "docker.io", "library/example.com", "5000", NULL,
       "docker.io/library/example.com:5000", "example.com:5000"),
    /* Only the exact lowercase "docker.io" is Docker Hub. */
    OK("DOCKER.IO/app", "DOCKER.IO", "app", "latest", NULL, "DOCKER.IO/app:latest",
       "DOCKER.IO/app:latest"),

    /* Other registries */
    OK("localhost/app", "localhost", "app", "latest", NULL, "localhost/app:latest",
       "localhost/app:latest"),
    OK("localhost:5000/app:tag", "localhost:5000", "app", "tag", NULL, "localhost:5000/app:tag",
       "localhost:5000/app:tag"),
    OK("127.0.0.1:5000/app:main", "127.0.0.1:5000", "app", "main", NULL, "127.0.0.1:5000/app:main",
       "127.0.0.1:5000/app:main"),
    OK("192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo", "5050", NULL,
       "192.168.1.1:5000/repo:5050", "192.168.1.1:5000/repo:5050"),
    OK("[::1]:5000/app", "[::1]:5000", "app", "latest", NULL, "[::1]:5000/app:latest",
       "[::1]:5000/app:latest"),
    OK("[2001:db8::1]/repo:tag", "[2001:db8::1]", "repo", "tag", NULL, "[2001:db8::1]/repo:tag",
       "[2001:db8::1]/repo:tag"),
    OK("[fc00:1:2:3:4:5:6:7]:5000/library/debian", "[fc00:1:2:3:4:5:6:7]:5000", "library/debian",
       "latest", NULL, "[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest",
       "[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest"),
    OK("example.com/a/b/c", "example.com", "a/b/c", "latest", NULL, "example.com/a/b/c:latest",
       "example.com/a/b/c:latest"),
    OK("example.com/app", "example.com", "app", "latest", NULL, "example.com/app:latest",
       "example.com/app:latest"),
    OK("test-com:8080/foo", "test-com:8080", "foo", "latest", NULL, "test-com:8080/foo:latest",
       "test-com:8080/foo:latest"),
    OK("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", NULL,
       "xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage:xn--n3h.com"),
    OK("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io", "test.example.com/my-app",
       "test.example.com", NULL, "b.gcr.io/test.example.com/my-app:test.example.com",
       "b.gcr.io/test.example.com/my-app:test.example.com"),
    /* An uppercase first component can only be a host (normalize_test.go "Foo/bar"). */
    OK("Example.com/app", "Example.com", "app", "latest", NULL, "Example.com/app:latest",
       "Example.com/app:latest"),
    OK("Foo/bar", "Foo", "bar", "latest", NULL, "Foo/bar:latest", "Foo/bar:latest"),
    OK("FOO/bar", "FOO", "bar", "latest", NULL, "FOO/bar:latest", "FOO/bar:latest"),

    /* Path separators */
    OK("dock__er/docker", "docker.io", "dock__er/docker", "latest", NULL,
       "docker.io/dock__er/docker:latest", "dock__er/docker:latest"),
    OK("docker---rules/docker", "docker.io", "docker---rules/docker", "latest", NULL,
       "docker.io/docker---rules/docker:latest", "docker---rules/docker:latest"),
    OK("x/a.b_c-d__e---f", "docker.io", "x/a.b_c-d__e---f", "latest", NULL,
       "docker.io/x/a.b_c-d__e---f:latest", "x/a.b_c-d__e---f:latest"),
    OK("d/t", "docker.io", "d/t", "latest", NULL, "docker.io/d/t:latest", "d/t:latest"),

    /* Tags */
    OK("lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", NULL,
       "docker.io/library/lowercase:Uppercase", "lowercase:Uppercase"),
    OK("app:_x.1-rc__2", "docker.io", "library/app", "_x.1-rc__2", NULL,
       "docker.io/library/app:_x.1-rc__2", "app:_x.1-rc__2"),
    OK("app:" A128, "docker.io", "library/app", A128, NULL, "docker.io/library/app:" A128,
       "app:" A128),

    /* Digests */
    OK("app@" DG, "docker.io", "library/app", NULL, DG, "docker.io/library/app@" DG, "app@" DG),
    OK("app:v1@" DG, "docker.io", "library/app", "v1", DG, "docker.io/library/app:v1@" DG,
       "app:v1@" DG),
    OK("docker.io/library/app:latest@" DG, "docker.io", "library/app", "latest", DG,
       "docker.io/library/app:latest@" DG, "app:latest@" DG),
    OK("ghcr.io/o/r@" DG, "ghcr.io", "o/r", NULL, DG, "ghcr.io/o/r@" DG, "ghcr.io/o/r@" DG),
    OK("[::1]:5000/repo:tag@" DG, "[::1]:5000", "repo", "tag", DG, "[::1]:5000/repo:tag@" DG,
       "[::1]:5000/repo:tag@" DG),
    OK("xn--7o8h.com/myimage:xn--7o8h.com@" DG512, "xn--7o8h.com", "myimage", "xn--7o8h.com", DG512,
       "xn--7o8h.com/myimage:xn--7o8h.com@" DG512, "xn--7o8h.com/myimage:xn--7o8h.com@" DG512),
    /* Unknown algorithms: general grammar, at least 32 hex digits (cachesync's choice). */
    OK("app@blake3:" HEX64, "docker.io", "library/app", NULL, "blake3:" HEX64,
       "docker.io/library/app@blake3:" HEX64, "app@blake3:" HEX64),
    OK("app@sha256+b64.x-y_z:" A32, "docker.io", "library/app", NULL, "sha256+b64.x-y_z:" A32,
       "docker.io/library/app@sha256+b64.x-y_z:" A32, "app@sha256+b64.x-y_z:" A32),

    /* 64-hex names: only the bare identifier is refused */
    OK("docker.io/" HEX64, "docker.io", "library/" HEX64, "latest", NULL,
       "docker.io/library/" HEX64 ":latest", HEX64 ":latest"),
    OK(HEX64 ":tag", "docker.io", "library/" HEX64, "tag", NULL, "docker.io/library/" HEX64 ":tag",
       HEX64 ":tag"),
    OK("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "docker.io",
       "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "latest", NULL,
       "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev"
       ":latest",
       "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest"),

    /* Length: the path (not the domain) is at most 255 characters, "library/" included */
    OK("example.com/" A255 ":tag", "example.com", A255, "tag", NULL, "example.com/" A255 ":tag",
       "example.com/" A255 ":tag"),
    OK(A247, "docker.io", "library/" A247, "latest", NULL, "docker.io/library/" A247 ":latest",
       A247 ":latest"),

    /* Errors */
    BAD("", "reference is empty"),
    BAD(HEX64, "64-byte hexadecimal"),
    BAD("Uppercase:tag", "must be lowercase"),
    BAD("Foo", "must be lowercase"),
    BAD("foo/Bar", "must be lowercase"),
    BAD("docker/Docker", "must be lowercase"),
    BAD("docker.io/docker/Docker", "must be lowercase"),
    BAD("test:5000/Uppercase/lowercase:tag", "must be lowercase"),
    BAD("app@SHA256:" HEX64, "must be lowercase"),
    BAD("app:", "tag is empty"),
    BAD("app:tag:x", "invalid tag"),
    BAD("app:-x", "must start with"),
    BAD("app:.x", "must start with"),
    BAD("app:" A128 "b", "longer than 128"),
    BAD("app@", "digest is empty"),
    BAD("app:v1@", "digest is empty"),
    BAD("app@sha256", "<algorithm>:<hex>"),
    BAD("app@sha256:", "64 hex digits"),
    BAD("app@sha256:ffffffffffffffffffffffffffffffffff", "64 hex digits"),
    BAD("app@sha256:" HEX64 "a", "64 hex digits"),
    BAD("app:v1@sha256:" HEX64_UPPER, "lowercase hex"),
    BAD("app@sha512:" HEX64, "128 hex digits"),
    BAD("app@:" HEX64, "algorithm is empty"),
    BAD("app@md5:0123456789abcdef", "at least 32"),
    BAD("app@blake3:" HEX64 "g", "hex digits"),
    BAD("app@1sha:" HEX64, "digest algorithm"),
    BAD("app@sha256-:" HEX64, "separator"),
    BAD("app@sha256:" HEX64 "@" DG, "invalid digest"),
    BAD("docker///docker", "empty component"),
    BAD("docker.io/docker///docker", "empty component"),
    BAD("a//b", "empty component"),
    BAD("/app", "empty component"),
    BAD("app/", "empty component"),
    BAD("docker/", "empty component"),
    BAD(":justtag", "empty component"),
    BAD("@" DG, "empty component"),
    BAD("-docker", "path component"),
    BAD("-docker/docker", "path component"),
    BAD("docker-/docker", "path component"),
    /* With a '.' the first component is taken as a domain, and fails as one. */
    BAD("dock..er/docker", "registry domain"),
    BAD("dock_.er/docker", "registry domain"),
    BAD("docker/dock..er", "path component"),
    BAD("docker/dock_.er", "path component"),
    BAD("docker/dock-.er", "path component"),
    BAD("docker/dock.-er", "path component"),
    BAD("docker/dock._er", "path component"),
    BAD("dock___er/docker", "path component"),
    BAD("____/____", "path component"),
    BAD("_docker/_docker", "path component"),
    BAD("aa/asdf$$^/aa", "path component"),
    BAD("app name", "path component"),
    BAD("app\nname", "path component"),
    BAD("example.com/a b", "path component"),
    BAD("example.com/" A256, "longer than 255"),
    BAD(A248, "longer than 255"),
    BAD("localhost:50a0/app", "port"),
    BAD("localhost:/app", "port"),
    BAD("a:b/c", "port"),
    BAD("https://github.com/docker/docker", "port"),
    BAD("fc00::1:5000/debian", "registry domain"),
    BAD("[fe80::1%eth0]:5000/debian", "IPv6"),
    BAD("[2001:db8:3:4::192.0.2.33]:5000/debian", "IPv6"),
    BAD("[]:5000/app", "IPv6"),
    BAD("[::1/app", "IPv6"),
    BAD("[::1]x/app", "port"),
    BAD("[::1]", "path component"),
    BAD("[2001:db8::1]:5000", "path component"),
    BAD("-docker.io/docker/docker", "registry domain"),
    BAD("a.-b.com/c", "registry domain"),
    BAD("a..com/c", "registry domain"),
    /* Docker falls back to an empty domain here; cachesync refuses (see reference.c). */
    BAD("foo_bar.com/app", "registry domain"),
    BAD("exa$mple.com/app", "registry domain"),
};

static void
check_error(cs_error *err, int ret, int code, const char *msg_has)
{
    ck_assert_int_eq(ret, code);
    ck_assert_ptr_nonnull(err);
    ck_assert_int_eq(err->code, code);
    ck_assert_ptr_nonnull(err->message);
    ck_assert_ptr_null(strchr(err->message, '\n'));
    ck_assert_ptr_null(strchr(err->message, '\r'));
    if (msg_has != NULL)
        ck_assert_msg(strstr(err->message, msg_has) != NULL, "message \"%s\" lacks \"%s\"",
                      err->message, msg_has);
}

START_TEST(test_parse_table)
{
    const struct parse_case *tc = &parse_cases[_i];
    cs_reference sentinel, *ref = &sentinel;
    cs_error *err = NULL;
    char *s;
    int ret;

    ret = cs_reference_parse(&ref, tc->input, &err);
    if (tc->code != 0) {
        check_error(err, ret, tc->code, tc->msg_has);
        ck_assert_msg(strncmp(err->message, "invalid reference \"", 19) == 0,
                      "unexpected message shape: %s", err->message);
        ck_assert_ptr_eq(ref, &sentinel); /* out untouched on failure */
        cs_error_free(err);
        return;
    }
    ck_assert_msg(ret == 0, "%s: %s", tc->input, err ? err->message : "?");
    ck_assert_ptr_null(err);
    ck_assert_str_eq(ref->domain, tc->domain);
    ck_assert_str_eq(ref->path, tc->path);
    ck_assert_pstr_eq(ref->tag, tc->tag);
    ck_assert_pstr_eq(ref->digest, tc->digest);

    s = cs_reference_to_string(ref, 0);
    ck_assert_str_eq(s, tc->full);
    free(s);
    s = cs_reference_to_string(ref, CS_REF_FAMILIAR);
    ck_assert_str_eq(s, tc->familiar);
    free(s);
    cs_reference_free(ref);
}
END_TEST

/* The full string is canonical: parsing it again gives the same reference. */
START_TEST(test_parse_table_roundtrip)
{
    const struct parse_case *tc = &parse_cases[_i];
    cs_reference *ref = NULL, *again = NULL;
    cs_error *err = NULL;
    char *s;

    if (tc->code != 0)
        return;
    ck_assert_cs_ok(cs_reference_parse(&ref, tc->input, &err), &err);
    s = cs_reference_to_string(ref, 0);
    ck_assert_ptr_nonnull(s);
    ck_assert_cs_ok(cs_reference_parse(&again, s, &err), &err);
    ck_assert_str_eq(again->domain, ref->domain);
    ck_assert_str_eq(again->path, ref->path);
    ck_assert_pstr_eq(again->tag, ref->tag);
    ck_assert_pstr_eq(again->digest, ref->digest);
    free(s);
    cs_reference_free(again);
    cs_reference_free(ref);
}
END_TEST

struct format_case {
    const char *input;
    unsigned flags;
    const char *expected;
};

static const struct format_case format_cases[] = {
    {"app", 0, "docker.io/library/app:latest"},
    {"app", CS_REF_FAMILIAR, "app:latest"},
    {"app", CS_REF_NAME_ONLY, "docker.io/library/app"},
    {"app", CS_REF_FAMILIAR | CS_REF_NAME_ONLY, "app"},
    {"foo/bar:1", CS_REF_FAMILIAR | CS_REF_NAME_ONLY, "foo/bar"},
    {"library/foo/bar:1", CS_REF_FAMILIAR, "library/foo/bar:1"},
    {"host:5000/a/b:tag", 0, "host:5000/a/b:tag"},
    {"host:5000/a/b:tag", CS_REF_FAMILIAR, "host:5000/a/b:tag"},
    {"host:5000/a/b:tag", CS_REF_NAME_ONLY, "host:5000/a/b"},
    {"x@" DG, 0, "docker.io/library/x@" DG},
    {"x@" DG, CS_REF_FAMILIAR, "x@" DG},
    {"x@" DG, CS_REF_NAME_ONLY, "docker.io/library/x"},
    {"x:tag@" DG, 0, "docker.io/library/x:tag@" DG},
    {"x:tag@" DG, CS_REF_FAMILIAR, "x:tag@" DG},
    {"x:tag@" DG, CS_REF_FAMILIAR | CS_REF_NAME_ONLY, "x"},
    {"localhost/x:tag@" DG, CS_REF_NAME_ONLY, "localhost/x"},
};

START_TEST(test_to_string_flags)
{
    const struct format_case *tc = &format_cases[_i];
    cs_reference *ref = NULL;
    cs_error *err = NULL;
    char *s;

    ck_assert_cs_ok(cs_reference_parse(&ref, tc->input, &err), &err);
    s = cs_reference_to_string(ref, tc->flags);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, tc->expected);
    free(s);
    cs_reference_free(ref);
}
END_TEST

struct host_case {
    const char *input;
    const char *api_host;
    const char *target;
};

static const struct host_case host_cases[] = {
    {"app", "registry-1.docker.io", "latest"},
    {"index.docker.io/foo/bar:1", "registry-1.docker.io", "1"},
    {"docker.io/library/app@" DG, "registry-1.docker.io", DG},
    {"app:v1@" DG, "registry-1.docker.io", DG},
    {"localhost:5000/app:tag", "localhost:5000", "tag"},
    {"[::1]:5000/app", "[::1]:5000", "latest"},
    {"ghcr.io/o/r:main", "ghcr.io", "main"},
    {"DOCKER.IO/app", "DOCKER.IO", "latest"},
};

START_TEST(test_api_host_and_target)
{
    const struct host_case *tc = &host_cases[_i];
    cs_reference *ref = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_reference_parse(&ref, tc->input, &err), &err);
    ck_assert_str_eq(cs_reference_api_host(ref), tc->api_host);
    ck_assert_str_eq(cs_reference_target(ref), tc->target);
    cs_reference_free(ref);
}
END_TEST

struct target_case {
    const char *input;
    const char *target;
    int code;
    const char *tag, *digest, *full;
    const char *msg_has;
};

static const struct target_case target_cases[] = {
    {"app", "v2", 0, "v2", NULL, "docker.io/library/app:v2", NULL},
    {"app@" DG, "v2", 0, "v2", NULL, "docker.io/library/app:v2", NULL},
    {"app:v1@" DG, "v2", 0, "v2", NULL, "docker.io/library/app:v2", NULL},
    {"app:v1", DG, 0, NULL, DG, "docker.io/library/app@" DG, NULL},
    {"localhost:5000/a/b:x", DG512, 0, NULL, DG512, "localhost:5000/a/b@" DG512, NULL},
    {"app", "Mixed_Case.1-2", 0, "Mixed_Case.1-2", NULL, "docker.io/library/app:Mixed_Case.1-2",
     NULL},
    {"app", "", CS_EINVAL, NULL, NULL, NULL, "invalid tag \"\""},
    {"app", "-bad", CS_EINVAL, NULL, NULL, NULL, "invalid tag"},
    {"app", "a/b", CS_EINVAL, NULL, NULL, NULL, "invalid tag"},
    {"app", A128 "b", CS_EINVAL, NULL, NULL, NULL, "longer than 128"},
    {"app", "sha256:abc", CS_EINVAL, NULL, NULL, NULL, "invalid digest"},
    {"app", "tag:x", CS_EINVAL, NULL, NULL, NULL, "invalid digest"},
    {"app", "sha256:" HEX64_UPPER, CS_EINVAL, NULL, NULL, NULL, "lowercase hex"},
    {"app", "@" DG, CS_EINVAL, NULL, NULL, NULL, "invalid digest"},
};

START_TEST(test_with_target)
{
    const struct target_case *tc = &target_cases[_i];
    cs_reference *ref = NULL, sentinel, *out = &sentinel;
    cs_error *err = NULL;
    char *s;
    int ret;

    ck_assert_cs_ok(cs_reference_parse(&ref, tc->input, &err), &err);
    ret = cs_reference_with_target(&out, ref, tc->target, &err);
    if (tc->code != 0) {
        check_error(err, ret, tc->code, tc->msg_has);
        ck_assert_ptr_eq(out, &sentinel);
        cs_error_free(err);
        cs_reference_free(ref);
        return;
    }
    ck_assert_msg(ret == 0, "%s: %s", tc->target, err ? err->message : "?");
    ck_assert_ptr_ne(out, ref);
    ck_assert_str_eq(out->domain, ref->domain);
    ck_assert_str_eq(out->path, ref->path);
    ck_assert_pstr_eq(out->tag, tc->tag);
    ck_assert_pstr_eq(out->digest, tc->digest);
    ck_assert_str_eq(cs_reference_target(out), tc->target);
    s = cs_reference_to_string(out, 0);
    ck_assert_str_eq(s, tc->full);
    free(s);
    cs_reference_free(out);
    cs_reference_free(ref);
}
END_TEST

/* Hostile input still yields one bounded, printable line that quotes the input. */
START_TEST(test_error_message_shape)
{
    char long_input[4096];
    cs_reference *ref = NULL;
    cs_error *err = NULL;
    size_t i;
    int ret;

    ret = cs_reference_parse(&ref, "a\"b\\c\x01\xff\r\n", &err);
    check_error(err, ret, CS_EINVAL, "invalid reference \"a\\\"b\\\\c\\x01\\xff\\x0d\\x0a\"");
    for (i = 0; err->message[i] != '\0'; i++)
        ck_assert((unsigned char)err->message[i] >= 0x20 && (unsigned char)err->message[i] < 0x7f);
    cs_error_free(err);
    err = NULL;

    memset(long_input, 'A', sizeof(long_input) - 1);
    long_input[sizeof(long_input) - 1] = '\0';
    ret = cs_reference_parse(&ref, long_input, &err);
    check_error(err, ret, CS_EINVAL, "...\"");
    ck_assert_uint_lt(strlen(err->message), 512);
    cs_error_free(err);
    ck_assert_ptr_null(ref);
}
END_TEST

START_TEST(test_null_arguments)
{
    cs_reference *ref = NULL, *out = NULL;
    cs_error *err = NULL;

    ck_assert_int_eq(cs_reference_parse(&ref, NULL, &err), CS_EINVAL);
    ck_assert_ptr_nonnull(err);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(cs_reference_parse(NULL, "app", &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    /* err == NULL is allowed: the caller only wants the code. */
    ck_assert_int_eq(cs_reference_parse(&ref, "Foo", NULL), CS_EINVAL);
    ck_assert_ptr_null(ref);

    ck_assert_cs_ok(cs_reference_parse(&ref, "app", &err), &err);
    ck_assert_int_eq(cs_reference_with_target(&out, ref, NULL, &err), CS_EINVAL);
    cs_error_free(err);
    ck_assert_ptr_null(out);
    cs_reference_free(ref);

    cs_reference_free(NULL);
    ck_assert_ptr_null(cs_reference_to_string(NULL, 0));
    ck_assert_ptr_null(cs_reference_api_host(NULL));
    ck_assert_ptr_null(cs_reference_target(NULL));
}
END_TEST

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *
reference_suite(void)
{
    Suite *s = suite_create("reference");
    TCase *tc;

    tc = tcase_create("parse");
    tcase_add_loop_test(tc, test_parse_table, 0, N_OF(parse_cases));
    tcase_add_loop_test(tc, test_parse_table_roundtrip, 0, N_OF(parse_cases));
    suite_add_tcase(s, tc);

    tc = tcase_create("format");
    tcase_add_loop_test(tc, test_to_string_flags, 0, N_OF(format_cases));
    tcase_add_loop_test(tc, test_api_host_and_target, 0, N_OF(host_cases));
    suite_add_tcase(s, tc);

    tc = tcase_create("with_target");
    tcase_add_loop_test(tc, test_with_target, 0, N_OF(target_cases));
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_error_message_shape);
    tcase_add_test(tc, test_null_arguments);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(reference_suite)
