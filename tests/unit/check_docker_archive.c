/* docker-archive manifest.json: writing what `docker load` reads, parsing what
 * `docker save` writes (legacy and Docker 25+ layouts). */
#include "config.h"

#include <stdint.h>

#include <cachesync/buf.h>
#include "cs_test.h"
#include "docker_archive.h"

#define HEX1 "1111111111111111111111111111111111111111111111111111111111111111"
#define HEX2 "2222222222222222222222222222222222222222222222222222222222222222"
#define HEX3 "3333333333333333333333333333333333333333333333333333333333333333"

START_TEST(test_manifest_write)
{
    static const char *const tags[] = {"registry.example.com/app:cache", "app:latest"};
    static const char *const layers[] = {"blobs/sha256/" HEX2, "blobs/sha256/" HEX3};
    cs_buf out = CS_BUF_INIT;
    cs_error *err = NULL;

    ck_assert_cs_ok(
        csi_docker_archive_manifest(&out, "blobs/sha256/" HEX1, tags, 2, layers, 2, &err), &err);
    ck_assert_str_eq(out.ptr, "[{\"Config\":\"blobs/sha256/" HEX1 "\","
                              "\"RepoTags\":[\"registry.example.com/app:cache\",\"app:latest\"],"
                              "\"Layers\":[\"blobs/sha256/" HEX2 "\",\"blobs/sha256/" HEX3 "\"]}]");
    cs_buf_dispose(&out);
}
END_TEST

START_TEST(test_manifest_write_empty_lists)
{
    cs_buf out = CS_BUF_INIT;
    cs_error *err = NULL;

    /* appends: what was in the buffer stays */
    ck_assert_cs_ok(cs_buf_puts(&out, "x", &err), &err);
    ck_assert_cs_ok(csi_docker_archive_manifest(&out, HEX1 ".json", NULL, 0, NULL, 0, &err), &err);
    ck_assert_str_eq(out.ptr, "x[{\"Config\":\"" HEX1 ".json\",\"RepoTags\":[],\"Layers\":[]}]");
    cs_buf_dispose(&out);
}
END_TEST

START_TEST(test_manifest_write_round_trip)
{
    static const char *const tags[] = {"a:b", "quote\"and\\backslash:t"};
    static const char *const layers[] = {"x/layer.tar", "y/layer.tar", "z/layer.tar"};
    csi_docker_archive_item *items = NULL;
    cs_buf out = CS_BUF_INIT;
    cs_error *err = NULL;
    size_t n = 0, i;

    ck_assert_cs_ok(csi_docker_archive_manifest(&out, "c.json", tags, 2, layers, 3, &err), &err);
    ck_assert_cs_ok(csi_docker_archive_parse(&items, &n, out.ptr, out.len, &err), &err);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(items[0].config, "c.json");
    ck_assert_uint_eq(items[0].nrepo_tags, 2);
    for (i = 0; i < 2; i++)
        ck_assert_str_eq(items[0].repo_tags[i], tags[i]);
    ck_assert_uint_eq(items[0].nlayers, 3);
    for (i = 0; i < 3; i++)
        ck_assert_str_eq(items[0].layers[i], layers[i]);
    csi_docker_archive_items_free(items, n);
    cs_buf_dispose(&out);
}
END_TEST

START_TEST(test_manifest_write_bad)
{
    static const char *const bad_layers[] = {"ok.tar", "../escape.tar"};
    static const char *const null_tag[] = {NULL};
    static const char *const bad_utf8[] = {"a:\xff"};
    cs_buf out = CS_BUF_INIT;
    cs_error *err = NULL;

    ck_assert_int_eq(csi_docker_archive_manifest(&out, "/abs.json", NULL, 0, NULL, 0, &err),
                     CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_docker_archive_manifest(&out, NULL, NULL, 0, NULL, 0, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_docker_archive_manifest(&out, "c.json", NULL, 0, bad_layers, 2, &err),
                     CS_EINVAL);
    ck_assert_ptr_nonnull(strstr(err->message, "Layers[1]"));
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_docker_archive_manifest(&out, "c.json", null_tag, 1, NULL, 0, &err),
                     CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_docker_archive_manifest(&out, "c.json", bad_utf8, 1, NULL, 0, &err),
                     CS_EINVAL);
    cs_error_free(err);
    /* nothing appended on failure */
    ck_assert_uint_eq(out.len, 0);
    /* with a NULL err too */
    ck_assert_int_eq(csi_docker_archive_manifest(&out, "c.json", NULL, 0, bad_layers, 2, NULL),
                     CS_EINVAL);
    cs_buf_dispose(&out);
}
END_TEST

/* `docker save busybox` from Docker 24 (graphdriver, legacy layout) */
static const char legacy[] = "[{\"Config\":\"" HEX1 ".json\",\"RepoTags\":[\"busybox:latest\"],"
                             "\"Layers\":[\"" HEX2 "/layer.tar\"]}]";

/* Docker 25+ (blobs layout), two images, one untagged with RepoTags null, LayerSources for a
 * foreign layer, Parent */
static const char modern[] =
    "[{\"Config\":\"blobs/sha256/" HEX1 "\",\"RepoTags\":[\"app:1\",\"app:latest\"],"
    "\"Layers\":[\"blobs/sha256/" HEX2 "\",\"blobs/sha256/" HEX3 "\"],"
    "\"LayerSources\":{\"sha256:" HEX3 "\":{\"mediaType\":"
    "\"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip\",\"size\":1,"
    "\"digest\":\"sha256:" HEX3 "\",\"urls\":[\"https://example.com/x\"]}}},"
    "{\"Config\":\"blobs/sha256/" HEX3 "\",\"RepoTags\":null,\"Layers\":[],"
    "\"Parent\":\"sha256:" HEX1 "\"}]\n";

START_TEST(test_parse_legacy)
{
    csi_docker_archive_item *items = NULL;
    cs_error *err = NULL;
    size_t n = 0;

    ck_assert_cs_ok(csi_docker_archive_parse(&items, &n, legacy, strlen(legacy), &err), &err);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(items[0].config, HEX1 ".json");
    ck_assert_uint_eq(items[0].nrepo_tags, 1);
    ck_assert_str_eq(items[0].repo_tags[0], "busybox:latest");
    ck_assert_uint_eq(items[0].nlayers, 1);
    ck_assert_str_eq(items[0].layers[0], HEX2 "/layer.tar");
    csi_docker_archive_items_free(items, n);
}
END_TEST

START_TEST(test_parse_modern)
{
    csi_docker_archive_item *items = NULL;
    cs_error *err = NULL;
    size_t n = 0;

    ck_assert_cs_ok(csi_docker_archive_parse(&items, &n, modern, strlen(modern), &err), &err);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(items[0].config, "blobs/sha256/" HEX1);
    ck_assert_uint_eq(items[0].nrepo_tags, 2);
    ck_assert_str_eq(items[0].repo_tags[1], "app:latest");
    ck_assert_uint_eq(items[0].nlayers, 2);
    ck_assert_str_eq(items[0].layers[1], "blobs/sha256/" HEX3);
    ck_assert_str_eq(items[1].config, "blobs/sha256/" HEX3);
    ck_assert_uint_eq(items[1].nrepo_tags, 0);
    ck_assert_ptr_null(items[1].repo_tags);
    ck_assert_uint_eq(items[1].nlayers, 0);
    csi_docker_archive_items_free(items, n);
    csi_docker_archive_items_free(NULL, 0);
}
END_TEST

static const struct {
    const char *json;
    int code;
} bad_cases[] = {
    {"", CS_EPROTO},
    {"{}", CS_EPROTO},
    {"[]", CS_EPROTO},
    {"[1]", CS_EPROTO},
    {"[{}]", CS_EPROTO},
    {"[{\"Config\":7,\"Layers\":[]}]", CS_EPROTO},
    {"[{\"Config\":\"c.json\"}]", CS_EPROTO},
    {"[{\"Config\":\"c.json\",\"Layers\":{}}]", CS_EPROTO},
    {"[{\"Config\":\"c.json\",\"Layers\":[1]}]", CS_EPROTO},
    {"[{\"Config\":\"c.json\",\"Layers\":[\"\"]}]", CS_EPROTO},
    {"[{\"Config\":\"c.json\",\"Layers\":[],\"RepoTags\":\"a:b\"}]", CS_EPROTO},
    {"[{\"Config\":\"c.json\",\"Layers\":[],\"RepoTags\":[null]}]", CS_EPROTO},
    {"[{\"Config\":\"../c.json\",\"Layers\":[]}]", CS_EPROTO},
    {"[{\"Config\":\"/c.json\",\"Layers\":[]}]", CS_EPROTO},
    {"[{\"Config\":\"c.json\",\"Layers\":[\"a/../../x\"]}]", CS_EPROTO},
    {"[{\"Config\":\"c.json\",\"Layers\":[\"ok\",\"a//b\"]}]", CS_EPROTO},
    {"[{\"Config\":\"c\\u0000.json\",\"Layers\":[]}]", CS_EPROTO},
    {"[{\"Config\":\"c.json\",\"Layers\":[]},{\"Config\":\".\",\"Layers\":[]}]", CS_EPROTO},
    {"[{\"Config\":\"c.json\",\"Layers\":[]}] x", CS_EPROTO},
};

START_TEST(test_parse_bad)
{
    csi_docker_archive_item *items = NULL;
    cs_error *err = NULL;
    size_t n = 0;
    int ret =
        csi_docker_archive_parse(&items, &n, bad_cases[_i].json, strlen(bad_cases[_i].json), &err);

    ck_assert_msg(ret == bad_cases[_i].code, "case %d: got %d (%s)", _i, ret,
                  err ? err->message : "");
    ck_assert_ptr_null(items);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_null(strchr(err->message, '\n'));
    cs_error_free(err);
}
END_TEST

/* A manifest.json with N items of L layers each. */
static char *
generate(size_t nitems, size_t nlayers)
{
    cs_buf b = CS_BUF_INIT;
    cs_error *err = NULL;
    size_t i, j;

    cs_buf_puts(&b, "[", &err);
    for (i = 0; i < nitems; i++) {
        cs_buf_printf(&b, &err, "%s{\"Config\":\"c%zu.json\",\"Layers\":[", i ? "," : "", i);
        for (j = 0; j < nlayers; j++)
            cs_buf_printf(&b, &err, "%s\"%zu\"", j ? "," : "", j);
        cs_buf_puts(&b, "]}", &err);
    }
    ck_assert_cs_ok(cs_buf_puts(&b, "]", &err), &err);
    return cs_buf_detach(&b);
}

START_TEST(test_parse_limits)
{
    csi_docker_archive_item *items = NULL;
    cs_error *err = NULL;
    size_t n = 0;
    char *doc, *big;

    doc = generate(CSI_DOCKER_ARCHIVE_MAX_ITEMS, 1);
    ck_assert_cs_ok(csi_docker_archive_parse(&items, &n, doc, strlen(doc), &err), &err);
    ck_assert_uint_eq(n, CSI_DOCKER_ARCHIVE_MAX_ITEMS);
    csi_docker_archive_items_free(items, n);
    items = NULL;
    n = 0;
    free(doc);

    doc = generate(CSI_DOCKER_ARCHIVE_MAX_ITEMS + 1, 0);
    ck_assert_int_eq(csi_docker_archive_parse(&items, &n, doc, strlen(doc), &err), CS_ELIMIT);
    cs_error_free(err);
    err = NULL;
    free(doc);

    doc = generate(1, CSI_DOCKER_ARCHIVE_MAX_LAYERS);
    ck_assert_cs_ok(csi_docker_archive_parse(&items, &n, doc, strlen(doc), &err), &err);
    ck_assert_uint_eq(items[0].nlayers, CSI_DOCKER_ARCHIVE_MAX_LAYERS);
    ck_assert_str_eq(items[0].layers[4095], "4095");
    csi_docker_archive_items_free(items, n);
    items = NULL;
    n = 0;
    free(doc);

    /* the cap on layers holds in the second item too, and frees the first */
    doc = generate(2, CSI_DOCKER_ARCHIVE_MAX_LAYERS + 1);
    ck_assert_int_eq(csi_docker_archive_parse(&items, &n, doc, strlen(doc), &err), CS_ELIMIT);
    cs_error_free(err);
    err = NULL;
    free(doc);

    /* over 1 MiB is refused before parsing */
    big = malloc(CSI_DOCKER_ARCHIVE_MAX + 1);
    ck_assert_ptr_nonnull(big);
    memset(big, ' ', CSI_DOCKER_ARCHIVE_MAX + 1);
    memcpy(big, legacy, strlen(legacy));
    ck_assert_int_eq(csi_docker_archive_parse(&items, &n, big, CSI_DOCKER_ARCHIVE_MAX + 1, &err),
                     CS_ELIMIT);
    cs_error_free(err);
    err = NULL;
    ck_assert_cs_ok(csi_docker_archive_parse(&items, &n, big, CSI_DOCKER_ARCHIVE_MAX, &err), &err);
    csi_docker_archive_items_free(items, n);
    free(big);
}
END_TEST

static Suite *
docker_archive_suite(void)
{
    Suite *s = suite_create("docker_archive");
    TCase *tc = tcase_create("write");

    tcase_add_test(tc, test_manifest_write);
    tcase_add_test(tc, test_manifest_write_empty_lists);
    tcase_add_test(tc, test_manifest_write_round_trip);
    tcase_add_test(tc, test_manifest_write_bad);
    suite_add_tcase(s, tc);
    tc = tcase_create("parse");
    tcase_add_test(tc, test_parse_legacy);
    tcase_add_test(tc, test_parse_modern);
    tcase_add_loop_test(tc, test_parse_bad, 0, (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
    tcase_add_test(tc, test_parse_limits);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(docker_archive_suite)
