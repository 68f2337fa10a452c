/* manifests, indexes, platforms and image configs */
#include "config.h"

#include <string.h>

#include <cachesync/manifest.h>
#include "cs_test.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define D4 "sha256:4444444444444444444444444444444444444444444444444444444444444444"

static const char docker_manifest[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" CS_MEDIA_DOCKER_MANIFEST "\","
    "\"config\":{\"mediaType\":\"" CS_MEDIA_DOCKER_CONFIG "\",\"digest\":\"" D1 "\",\"size\":1469},"
    "\"layers\":[{\"mediaType\":\"" CS_MEDIA_DOCKER_LAYER_GZIP "\",\"digest\":\"" D2
    "\",\"size\":32654},"
    "{\"mediaType\":\"" CS_MEDIA_DOCKER_LAYER_GZIP "\",\"digest\":\"" D3 "\",\"size\":16724}]}";

/* BuildKit's shape with an attestation entry (moby/buildkit exporter attestations.go) */
static const char oci_index[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" CS_MEDIA_OCI_INDEX "\",\"manifests\":["
    "{\"mediaType\":\"" CS_MEDIA_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":100,"
    "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}},"
    "{\"mediaType\":\"" CS_MEDIA_OCI_MANIFEST "\",\"digest\":\"" D4 "\",\"size\":100,"
    "\"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"},"
    "\"annotations\":{\"vnd.docker.reference.type\":\"attestation-manifest\"}},"
    "{\"mediaType\":\"" CS_MEDIA_OCI_MANIFEST "\",\"digest\":\"" D2 "\",\"size\":200,"
    "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
    "{\"mediaType\":\"" CS_MEDIA_OCI_MANIFEST "\",\"digest\":\"" D3 "\",\"size\":300,"
    "\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v6\"}}]}";

START_TEST(test_parse_docker_manifest)
{
    cs_manifest *m = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_manifest_parse(&m, docker_manifest, strlen(docker_manifest),
                                      CS_MEDIA_DOCKER_MANIFEST, &err),
                    &err);
    ck_assert_int_eq(m->kind, CS_MANIFEST_IMAGE);
    ck_assert_str_eq(m->media_type, CS_MEDIA_DOCKER_MANIFEST);
    ck_assert_str_eq(m->config.digest, D1);
    ck_assert_int_eq(m->config.size, 1469);
    ck_assert_uint_eq(m->nlayers, 2);
    ck_assert_str_eq(m->layers[1].digest, D3);
    ck_assert_int_eq(m->layers[1].size, 16724);
    ck_assert_str_eq(m->layers[0].media_type, CS_MEDIA_DOCKER_LAYER_GZIP);
    cs_manifest_free(m);
}
END_TEST

START_TEST(test_parse_index_and_attestation)
{
    cs_manifest *m = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_manifest_parse(&m, oci_index, strlen(oci_index), NULL, &err), &err);
    ck_assert_int_eq(m->kind, CS_MANIFEST_INDEX);
    ck_assert_uint_eq(m->nmanifests, 4);
    ck_assert(!m->manifests[0].attestation);
    ck_assert(m->manifests[1].attestation);
    ck_assert_str_eq(m->manifests[0].platform->variant, "v8");
    cs_manifest_free(m);
}
END_TEST

START_TEST(test_parse_mediatype_from_header_or_shape)
{
    static const char no_mt[] = "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":"
                                "\"" D1 "\",\"size\":1},\"layers\":[]}";
    static const char no_mt_index[] = "{\"schemaVersion\":2,\"manifests\":[]}";
    cs_manifest *m = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_manifest_parse(&m, no_mt, strlen(no_mt), CS_MEDIA_DOCKER_MANIFEST, &err),
                    &err);
    ck_assert_str_eq(m->media_type, CS_MEDIA_DOCKER_MANIFEST);
    ck_assert_uint_eq(m->nlayers, 0);
    cs_manifest_free(m);
    ck_assert_cs_ok(cs_manifest_parse(&m, no_mt, strlen(no_mt), "application/json", &err), &err);
    ck_assert_str_eq(m->media_type, CS_MEDIA_OCI_MANIFEST);
    cs_manifest_free(m);
    ck_assert_cs_ok(cs_manifest_parse(&m, no_mt_index, strlen(no_mt_index), NULL, &err), &err);
    ck_assert_int_eq(m->kind, CS_MANIFEST_INDEX);
    cs_manifest_free(m);
}
END_TEST

/* Malformed documents: each must fail with the given code, never crash. */
static const struct {
    const char *json;
    const char *content_type;
    int code;
} bad_cases[] = {
    {"", NULL, CS_EPROTO},
    {"[]", NULL, CS_EPROTO},
    {"{\"schemaVersion\":1}", NULL, CS_EUNSUPPORTED},
    {"{\"schemaVersion\":\"2\"}", NULL, CS_EPROTO},
    {"{\"schemaVersion\":2,\"mediaType\":\"text/plain\"}", NULL, CS_EUNSUPPORTED},
    {"{\"schemaVersion\":2,\"mediaType\":\"" CS_MEDIA_DOCKER_MANIFEST "\"}", NULL, CS_EPROTO},
    {"{\"schemaVersion\":2,\"mediaType\":\"" CS_MEDIA_DOCKER_MANIFEST "\",\"config\":{}}", NULL,
     CS_EPROTO},
    {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:../x\",\"size\":1},"
     "\"layers\":[]}",
     NULL, CS_EPROTO},
    {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":-1},"
     "\"layers\":[]}",
     NULL, CS_EPROTO},
    {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":1},"
     "\"layers\":{}}",
     NULL, CS_EPROTO},
    {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":1},"
     "\"layers\":[7]}",
     NULL, CS_EPROTO},
    {"{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"x\",\"digest\":\"" D1
     "\",\"size\":1,\"platform\":{\"os\":\"linux\"}}]}",
     NULL, CS_EPROTO},
    {"{\"schemaVersion\":2,\"mediaType\":\"" CS_MEDIA_OCI_INDEX "\",\"manifests\":[]}",
     CS_MEDIA_DOCKER_MANIFEST, CS_EPROTO},
    {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"sha512:" D1
     "\",\"size\":1},\"layers\":[]}",
     NULL, CS_EUNSUPPORTED},
    {"{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"x\",\"digest\":\"" D1
     "\",\"size\":1.5}]}",
     NULL, CS_EPROTO},
};

START_TEST(test_parse_bad)
{
    cs_manifest *m = NULL;
    cs_error *err = NULL;
    int ret = cs_manifest_parse(&m, bad_cases[_i].json, strlen(bad_cases[_i].json),
                                bad_cases[_i].content_type, &err);

    ck_assert_msg(ret == bad_cases[_i].code, "case %d: got %d (%s)", _i, ret,
                  err ? err->message : "");
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_null(strchr(err->message, '\n'));
    cs_error_free(err);
}
END_TEST

START_TEST(test_parse_too_big)
{
    size_t n = CS_MANIFEST_MAX + 1;
    char *big = malloc(n);
    cs_manifest *m = NULL;
    cs_error *err = NULL;

    memset(big, ' ', n);
    ck_assert_int_eq(cs_manifest_parse(&m, big, n, NULL, &err), CS_ELIMIT);
    cs_error_free(err);
    free(big);
}
END_TEST

static const struct {
    const char *in;
    const char *normal; /* NULL: invalid */
} plat_cases[] = {
    {"linux/amd64", "linux/amd64"},
    {"linux/x86_64", "linux/amd64"},
    {"linux/amd64/v1", "linux/amd64"},
    {"linux/amd64/v3", "linux/amd64/v3"},
    {"linux/aarch64", "linux/arm64"},
    {"linux/arm64/v8", "linux/arm64"},
    {"linux/arm", "linux/arm/v7"},
    {"linux/arm/7", "linux/arm/v7"},
    {"linux/armhf", "linux/arm/v7"},
    {"linux/armel", "linux/arm/v6"},
    {"linux/i386", "linux/386"},
    {"Linux/amd64", "linux/amd64"},
    {"windows/amd64", "windows/amd64"},
    {"linux", NULL},
    {"linux/", NULL},
    {"/amd64", NULL},
    {"linux//amd64", NULL},
    {"linux/amd64/v8/x", NULL},
    {"linux/am d64", NULL},
    {"", NULL},
};

START_TEST(test_platform_parse)
{
    cs_platform p = {0};
    cs_error *err = NULL;
    int ret = cs_platform_parse(&p, plat_cases[_i].in, &err);

    if (plat_cases[_i].normal == NULL) {
        ck_assert_msg(ret == CS_EINVAL, "%s should be invalid", plat_cases[_i].in);
        cs_error_free(err);
    } else {
        char *s;

        ck_assert_cs_ok(ret, &err);
        s = cs_platform_to_string(&p);
        ck_assert_str_eq(s, plat_cases[_i].normal);
        free(s);
    }
    cs_platform_dispose(&p);
}
END_TEST

static const cs_descriptor *
select_for(const cs_manifest *m, const char *plat, int *ret_out)
{
    const cs_descriptor *d = NULL;
    cs_platform p = {0};
    cs_error *err = NULL;

    ck_assert_int_eq(cs_platform_parse(&p, plat, NULL), 0);
    *ret_out = cs_manifest_select(&d, m, &p, &err);
    if (*ret_out < 0) {
        ck_assert_ptr_nonnull(
            strstr(err->message, "(it has: linux/arm64/v8, linux/amd64, linux/arm/v6)"));
        cs_error_free(err);
    }
    cs_platform_dispose(&p);
    return d;
}

START_TEST(test_select_platform)
{
    cs_manifest *m = NULL;
    int ret;

    ck_assert_int_eq(cs_manifest_parse(&m, oci_index, strlen(oci_index), NULL, NULL), 0);
    ck_assert_str_eq(select_for(m, "linux/amd64", &ret)->digest, D2);
    ck_assert_str_eq(select_for(m, "linux/x86_64", &ret)->digest, D2);
    ck_assert_str_eq(select_for(m, "linux/aarch64", &ret)->digest, D1);
    ck_assert_str_eq(select_for(m, "linux/arm64/v8", &ret)->digest, D1);
    ck_assert_str_eq(select_for(m, "linux/armel", &ret)->digest, D3);
    ck_assert_ptr_null(select_for(m, "linux/arm/v7", &ret));
    ck_assert_int_eq(ret, CS_ENOTFOUND);
    /* the attestation entry is never chosen, even when asked for its platform */
    ck_assert_ptr_null(select_for(m, "unknown/unknown", &ret));
    cs_manifest_free(m);
}
END_TEST

static const char config_json[] =
    "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/bin\"]},"
    "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1 "\",\"" D2 "\",\"" D3 "\"]},"
    "\"history\":[{\"created\":\"2026-11-24T00:00:00Z\",\"created_by\":\"/bin/sh -c #(nop) ADD "
    "file\"},"
    "{\"created_by\":\"ARG X=1\",\"comment\":\"buildkit.dockerfile.v0\",\"empty_layer\":true},"
    "{\"created_by\":\"RUN /bin/sh -c make deps # buildkit\"},"
    "{\"created_by\":\"ENV A=b\",\"empty_layer\":true},"
    "{\"created_by\":\"COPY src /src # buildkit\"}],"
    "\"moby.buildkit.cache.v0\":\"W3siZGlnZXN0IjoiIn1d\"}";

START_TEST(test_image_config)
{
    cs_image_config *c = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_image_config_parse(&c, config_json, strlen(config_json), &err), &err);
    ck_assert_str_eq(c->platform.os, "linux");
    ck_assert_str_eq(c->platform.architecture, "amd64");
    ck_assert_ptr_null(c->platform.variant);
    ck_assert_uint_eq(c->ndiff_ids, 3);
    ck_assert_str_eq(c->diff_ids[2], D3);
    ck_assert_uint_eq(c->nhistory, 5);
    ck_assert(c->history[1].empty_layer);
    ck_assert(!c->history[2].empty_layer);
    ck_assert_str_eq(c->history[4].created_by, "COPY src /src # buildkit");
    ck_assert(c->has_inline_cache);
    ck_assert_uint_eq(c->inline_cache_bytes, 20);
    cs_image_config_free(c);
}
END_TEST

START_TEST(test_image_config_bad)
{
    static const char *const bad[] = {
        "{}",
        "{\"rootfs\":{\"diff_ids\":\"x\"}}",
        "{\"rootfs\":{\"diff_ids\":[\"sha256:zz\"]}}",
        "{\"rootfs\":{\"diff_ids\":[]},\"history\":{}}",
        "{\"rootfs\":{\"diff_ids\":[]},\"history\":[1]}",
        "{\"rootfs\":{\"diff_ids\":[7]}}",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cs_image_config *c = NULL;
        cs_error *err = NULL;

        ck_assert_msg(cs_image_config_parse(&c, bad[i], strlen(bad[i]), &err) < 0, "%s", bad[i]);
        ck_assert_ptr_null(c);
        cs_error_free(err);
    }
}
END_TEST

START_TEST(test_to_oci)
{
    cs_buf out = CS_BUF_INIT;
    cs_manifest *m = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_manifest_to_oci(&out, docker_manifest, strlen(docker_manifest), &err), &err);
    ck_assert_cs_ok(cs_manifest_parse(&m, out.ptr, out.len, NULL, &err), &err);
    ck_assert_str_eq(m->media_type, CS_MEDIA_OCI_MANIFEST);
    ck_assert_str_eq(m->config.media_type, CS_MEDIA_OCI_CONFIG);
    ck_assert_str_eq(m->config.digest, D1);
    ck_assert_int_eq(m->config.size, 1469);
    ck_assert_uint_eq(m->nlayers, 2);
    ck_assert_str_eq(m->layers[0].media_type, CS_MEDIA_OCI_LAYER_GZIP);
    ck_assert_str_eq(m->layers[1].digest, D3);
    cs_manifest_free(m);
    m = NULL;
    /* an OCI manifest stays byte for byte */
    {
        char *copy = strdup(out.ptr);
        size_t n = out.len;

        ck_assert_cs_ok(cs_manifest_to_oci(&out, copy, n, &err), &err);
        ck_assert_uint_eq(out.len, n);
        ck_assert_int_eq(memcmp(out.ptr, copy, n), 0);
        free(copy);
    }
    /* an index is not a manifest */
    ck_assert_int_eq(cs_manifest_to_oci(&out, oci_index, strlen(oci_index), &err), CS_EINVAL);
    cs_error_free(err);
    cs_buf_dispose(&out);
}
END_TEST

/* A registry's media type goes into the error as one printable line: a newline or a terminal
 * escape in it must not reach stderr (issue #7; found by tests/fuzz/fuzz_manifest_oci.c, corpus
 * regression-mediatype-newline). */
START_TEST(test_media_type_in_errors_is_printable)
{
    static const char doc[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/v\\nd\\u001b[31mx\","
        "\"config\":{},\"layers\":[]}";
    cs_manifest *m = NULL;
    cs_error *err = NULL;

    ck_assert_int_eq(cs_manifest_parse(&m, doc, sizeof(doc) - 1, NULL, &err), CS_EUNSUPPORTED);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_null(strchr(err->message, '\n'));
    ck_assert_ptr_null(strchr(err->message, '\033'));
    ck_assert_ptr_nonnull(strstr(err->message, "application/v?d?[31mx"));
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(
        cs_manifest_parse(&m, "{\"schemaVersion\":2,\"mediaType\":\"x\",\"layers\":[]}", 46,
                          "application/vnd.oci.image.manifest.v1+json\r\nX: y", &err),
        CS_EPROTO);
    ck_assert_ptr_null(strpbrk(err->message, "\r\n"));
    cs_error_free(err);
}
END_TEST

static Suite *
manifest_suite(void)
{
    Suite *s = suite_create("manifest");
    TCase *tc = tcase_create("parse");

    tcase_add_test(tc, test_parse_docker_manifest);
    tcase_add_test(tc, test_media_type_in_errors_is_printable);
    tcase_add_test(tc, test_parse_index_and_attestation);
    tcase_add_test(tc, test_parse_mediatype_from_header_or_shape);
    tcase_add_loop_test(tc, test_parse_bad, 0, (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
    tcase_add_test(tc, test_parse_too_big);
    tcase_add_test(tc, test_to_oci);
    suite_add_tcase(s, tc);
    tc = tcase_create("platform");
    tcase_add_loop_test(tc, test_platform_parse, 0,
                        (int)(sizeof(plat_cases) / sizeof(plat_cases[0])));
    tcase_add_test(tc, test_select_platform);
    suite_add_tcase(s, tc);
    tc = tcase_create("config");
    tcase_add_test(tc, test_image_config);
    tcase_add_test(tc, test_image_config_bad);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(manifest_suite)
