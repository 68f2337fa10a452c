/* cs_audit_image over the configs of real BuildKit builds (tests/fixtures/cache/<name>/
 * config.json, exact bytes from docker save on Docker 20.10) against their expected.txt,
 * which a separate script derived from BuildKit's rules. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cachesync/audit.h>
#include "cs_test.h"

static const char *const inline_fixtures[] = {
    "inline-run",       "inline-copy",     "inline-argenv",      "inline-multistage",
    "inline-run-true",  "cache-from-base", "cache-from-rebuilt", "no-inline",
};

/* An image whose manifest has the config's layer count, with made-up layer digests. */
static cs_image *
image_of(const char *fixture)
{
    char path[256], digest[CS_DIGEST_STRLEN], *cfg, *man;
    cs_image *img = calloc(1, sizeof(*img));
    cs_error *err = NULL;
    size_t len, i, n;
    cs_buf m = CS_BUF_INIT;

    snprintf(path, sizeof(path), "cache/%s/config.json", fixture);
    cfg = cs_test_read_fixture(path, &len);
    ck_assert_cs_ok(cs_image_config_parse(&img->config_parsed, cfg, len, &err), &err);
    ck_assert_cs_ok(cs_digest_buffer(digest, cfg, len, &err), &err);
    n = img->config_parsed->ndiff_ids;
    cs_buf_printf(&m, NULL,
                  "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
                  "\"digest\":\"%s\",\"size\":%zu},\"layers\":[",
                  CS_MEDIA_DOCKER_MANIFEST, CS_MEDIA_DOCKER_CONFIG, digest, len);
    for (i = 0; i < n; i++)
        cs_buf_printf(&m, NULL,
                      "%s{\"mediaType\":\"%s\",\"digest\":\"sha256:%064zx\",\"size\":%zu}",
                      i ? "," : "", CS_MEDIA_DOCKER_LAYER_GZIP, i + 1, 1000 * (i + 1));
    cs_buf_puts(&m, "]}", NULL);
    man = cs_buf_detach(&m);
    ck_assert_cs_ok(cs_manifest_parse(&img->parsed, man, strlen(man), NULL, &err), &err);
    free(man);
    free(cfg);
    return img;
}

static long
expect_num(const char *exp, const char *key)
{
    char pat[64];
    const char *p;

    snprintf(pat, sizeof(pat), "\n%s ", key);
    p = strstr(exp, pat);
    ck_assert_msg(p != NULL, "expected.txt lacks %s", key);
    return strtol(p + strlen(pat), NULL, 10);
}

START_TEST(test_audit_fixture)
{
    const char *name = inline_fixtures[_i];
    char path[256], line[64], *exp;
    cs_image *img = image_of(name);
    cs_audit *au = NULL;
    cs_error *err = NULL;
    size_t i;

    snprintf(path, sizeof(path), "cache/%s/expected.txt", name);
    exp = cs_test_read_fixture(path, NULL);
    ck_assert_cs_ok(cs_audit_image(&au, img, "reg/app:v1", &err), &err);
    ck_assert_uint_eq(au->nlayers, (size_t)expect_num(exp, "layers"));
    if (strcmp(name, "no-inline") == 0) {
        ck_assert(!au->has_cache);
        ck_assert_uint_ge(au->nwarnings, 1);
        ck_assert_ptr_nonnull(strstr(au->warnings[0], "no inline cache"));
        ck_assert_ptr_nonnull(strstr(au->fix, "BUILDKIT_INLINE_CACHE=1"));
        goto done;
    }
    ck_assert(au->has_cache);
    ck_assert_uint_eq(au->records, (size_t)expect_num(exp, "records"));
    ck_assert_uint_eq(au->base_layers, (size_t)expect_num(exp, "base"));
    if ((size_t)expect_num(exp, "first_uncovered") < au->nlayers) {
        ck_assert(au->first_uncovered_set);
        ck_assert_uint_eq(au->first_uncovered, (size_t)expect_num(exp, "first_uncovered"));
        ck_assert_ptr_nonnull(au->fix);
        ck_assert_ptr_nonnull(strstr(au->fix, "cachesync pull reg/app:v1"));
    } else {
        ck_assert(!au->first_uncovered_set);
        ck_assert_uint_eq(au->nwarnings, 0);
    }
    for (i = 0; i < au->nlayers; i++) {
        const char *p, *step;
        size_t n;

        snprintf(line, sizeof(line), "\nlayer %zu ", i);
        p = strstr(exp, line);
        ck_assert_msg(p != NULL, "%s: no expectation for layer %zu", name, i);
        p += strlen(line);
        ck_assert_msg(au->layers[i].covered == (strncmp(p, "yes", 3) == 0),
                      "%s: layer %zu covered is %d", name, i, au->layers[i].covered);
        /* "yes|no COUNT STEP" */
        p = strchr(strchr(p, ' ') + 1, ' ') + 1;
        n = strcspn(p, "\n");
        step = au->layers[i].step ? au->layers[i].step : "-";
        ck_assert_msg(strlen(step) == n && strncmp(step, p, n) == 0, "%s: layer %zu step %s vs %.*s",
                      name, i, step, (int)n, p);
    }
done:
    free(exp);
    cs_audit_free(au);
    cs_image_free(img);
}
END_TEST

/* The rebuilt-from-the-registry image: the warning names the first uncovered step. */
START_TEST(test_audit_issue_1981)
{
    cs_image *img = image_of("cache-from-rebuilt");
    cs_audit *au = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_audit_image(&au, img, "reg/app:v2", &err), &err);
    ck_assert_uint_eq(au->layers_covered, 1);
    ck_assert_uint_eq(au->bytes_covered, 5000); /* only layer 4 */
    ck_assert_uint_eq(au->nwarnings, 1);
    ck_assert_ptr_nonnull(strstr(au->warnings[0], "3 of 4 layers past the base image have no "
                                                  "cache record, first layer 1 (RUN /bin/sh -c "
                                                  "echo deps"));
    ck_assert_str_eq(au->fix, "cachesync pull reg/app:v2 before docker build --cache-from "
                              "reg/app:v2");
    cs_audit_free(au);
    cs_image_free(img);
}
END_TEST

START_TEST(test_audit_against)
{
    cs_image *a = image_of("cache-from-base"), *b = image_of("cache-from-rebuilt");
    cs_audit *aa = NULL, *ab = NULL;
    cs_audit_compare c;

    ck_assert_int_eq(cs_audit_image(&aa, a, "x", NULL), 0);
    ck_assert_int_eq(cs_audit_image(&ab, b, "y", NULL), 0);
    cs_audit_against(&c, aa, ab);
    /* v2 changed only its last COPY: 4 layers of the same chain, divergence at layer 4 */
    ck_assert_uint_eq(c.common_prefix, 4);
    ck_assert(c.diverges);
    ck_assert_uint_eq(c.first_divergence, 4);
    ck_assert_str_eq(c.divergence_step, "COPY app.txt /app.txt # buildkit");
    ck_assert_uint_eq(c.reusable, 4);
    cs_audit_against(&c, aa, aa);
    ck_assert(!c.diverges);
    ck_assert_uint_eq(c.reusable, aa->nlayers);
    cs_audit_free(aa);
    cs_audit_free(ab);
    cs_image_free(a);
    cs_image_free(b);
}
END_TEST

START_TEST(test_audit_platform)
{
    cs_image *img = image_of("inline-run");
    cs_platform arm = {0}, amd = {0};
    cs_audit *au = NULL;

    ck_assert_int_eq(cs_platform_parse(&arm, "linux/arm64", NULL), 0);
    ck_assert_int_eq(cs_platform_parse(&amd, "linux/amd64", NULL), 0);
    ck_assert_int_eq(cs_audit_image(&au, img, "x", NULL), 0);
    ck_assert_int_eq(cs_audit_check_platform(au, img, &amd, NULL), 0);
    ck_assert_uint_eq(au->nwarnings, 0);
    ck_assert_int_eq(cs_audit_check_platform(au, img, &arm, NULL), 0);
    ck_assert_uint_eq(au->nwarnings, 1);
    ck_assert_ptr_nonnull(strstr(au->warnings[0], "the image is linux/amd64 but a build here is "
                                                  "linux/arm64"));
    cs_platform_dispose(&arm);
    cs_platform_dispose(&amd);
    cs_audit_free(au);
    cs_image_free(img);
}
END_TEST

static Suite *
audit_suite(void)
{
    Suite *s = suite_create("audit");
    TCase *tc = tcase_create("fixtures");

    tcase_add_loop_test(tc, test_audit_fixture, 0,
                        (int)(sizeof(inline_fixtures) / sizeof(inline_fixtures[0])));
    tcase_add_test(tc, test_audit_issue_1981);
    tcase_add_test(tc, test_audit_against);
    tcase_add_test(tc, test_audit_platform);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(audit_suite)
