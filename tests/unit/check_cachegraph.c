/* BuildKit cache metadata: inline cache and cacheconfig.v0 decoded into one graph */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include <cachesync/cachegraph.h>
#include "cs_test.h"

/* ---- fixtures: real builds (tests/fixtures/cache/README.md) ------------------------------ */

static const char *const fixtures[] = {
    "inline-run",      "inline-copy",     "inline-argenv",   "inline-multistage",
    "no-inline",       "inline-run-true", "cache-from-base", "cache-from-rebuilt",
    "cacheconfig-min", "cacheconfig-max",
};

/* An image config as cs_image_config_parse would give it (that parser is manifest.c's; the
 * suite reads the few fields itself so that it needs no other module), plus the inline cache
 * value and its raw bytes between the config's quotes. */
typedef struct test_config {
    cs_image_config cfg;
    const char *value; /* decoded JSON string: borrowed from root */
    size_t value_len;
    json_t *root;
} test_config;

static bool
load_config(test_config *tc, const char *data, size_t len)
{
    const json_t *ids, *hist;
    size_t i;

    memset(tc, 0, sizeof(*tc));
    tc->root = json_loadb(data, len, 0, NULL);
    ck_assert_ptr_nonnull(tc->root);
    ids = json_object_get(json_object_get(tc->root, "rootfs"), "diff_ids");
    if (ids == NULL)
        return false;
    tc->cfg.ndiff_ids = json_array_size(ids);
    tc->cfg.diff_ids = calloc(tc->cfg.ndiff_ids + 1, sizeof(char *));
    for (i = 0; i < tc->cfg.ndiff_ids; i++)
        tc->cfg.diff_ids[i] = (char *)json_string_value(json_array_get(ids, i));
    hist = json_object_get(tc->root, "history");
    tc->cfg.nhistory = json_array_size(hist);
    tc->cfg.history = calloc(tc->cfg.nhistory + 1, sizeof(cs_history));
    for (i = 0; i < tc->cfg.nhistory; i++) {
        const json_t *h = json_array_get(hist, i);

        tc->cfg.history[i].created_by = (char *)json_string_value(json_object_get(h, "created_by"));
        tc->cfg.history[i].created = (char *)json_string_value(json_object_get(h, "created"));
        tc->cfg.history[i].empty_layer = json_is_true(json_object_get(h, "empty_layer"));
    }
    tc->value = json_string_value(json_object_get(tc->root, CS_INLINE_CACHE_KEY));
    tc->value_len = json_string_length(json_object_get(tc->root, CS_INLINE_CACHE_KEY));
    return true;
}

static void
dispose_config(test_config *tc)
{
    free(tc->cfg.diff_ids);
    free(tc->cfg.history);
    json_decref(tc->root);
}

/* Check G against the lines of expected.txt (format in each file's header). */
static void
check_expected(const cs_cachegraph *g, const char *name, const char *expected)
{
    const char *line = expected;
    char label[64];
    size_t nlines = 0, ndangling = 0, i;

    for (i = 0; i < cs_cachegraph_nrecords(g); i++) {
        if (cs_cachegraph_record(g, i)->dangling)
            ndangling++;
    }
    while (*line != '\0') {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char buf[512], word[32], kind[32], text[400];
        unsigned long a, b;
        int off = 0;

        ck_assert_uint_lt(n, sizeof(buf));
        memcpy(buf, line, n);
        buf[n] = '\0';
        line += n + (end ? 1 : 0);
        if (buf[0] == '#' || buf[0] == '\0')
            continue;
        nlines++;
        snprintf(label, sizeof(label), "%s: %.40s", name, buf);
        if (sscanf(buf, "kind %31s", kind) == 1) {
            if (strcmp(kind, "cacheconfig") == 0)
                ck_assert_int_eq(cs_cachegraph_kind_of(g), CS_CACHEGRAPH_CACHECONFIG);
            else
                ck_assert_int_eq(cs_cachegraph_kind_of(g), CS_CACHEGRAPH_INLINE);
        } else if (sscanf(buf, "layers %lu", &a) == 1) {
            ck_assert_msg(cs_cachegraph_nlayers(g) == a, "%s", label);
        } else if (sscanf(buf, "records %lu", &a) == 1) {
            ck_assert_msg(cs_cachegraph_nrecords(g) == a, "%s", label);
        } else if (sscanf(buf, "base %lu", &a) == 1) {
            ck_assert_msg(cs_cachegraph_base_layers(g) == a, "%s: got %zu", label,
                          cs_cachegraph_base_layers(g));
        } else if (sscanf(buf, "first_uncovered %lu", &a) == 1) {
            size_t from =
                cs_cachegraph_kind_of(g) == CS_CACHEGRAPH_INLINE ? cs_cachegraph_base_layers(g) : 0;

            ck_assert_msg(cs_cachegraph_first_uncovered(g, from) == a, "%s", label);
        } else if (sscanf(buf, "dangling %lu", &a) == 1) {
            ck_assert_msg(ndangling == a, "%s", label);
        } else if (sscanf(buf, "layer %lu %31s %lu %n", &a, word, &b, &off) == 3 && off > 0) {
            const cs_cache_layer *l = cs_cachegraph_layer(g, a);

            ck_assert_ptr_nonnull(l);
            ck_assert_msg(cs_cachegraph_layer_coverage(g, a) == (int)b, "%s: coverage %d", label,
                          cs_cachegraph_layer_coverage(g, a));
            ck_assert_uint_eq(l->coverage, b);
            ck_assert_msg((strcmp(word, "yes") == 0) == (b > 0), "%s", label);
            snprintf(text, sizeof(text), "%s", buf + off);
            if (strcmp(text, "-") == 0)
                ck_assert_msg(l->description == NULL, "%s: %s", label, l->description);
            else
                ck_assert_msg(l->description && strcmp(l->description, text) == 0, "%s: got %s",
                              label, l->description ? l->description : "(null)");
            ck_assert(l->chain_ok);
        } else if (sscanf(buf, "chain %lu %n", &a, &off) == 1 && off > 0) {
            size_t got[16], len = cs_cachegraph_chain(g, a, got, 16), k = 0;
            char *p = buf + off;

            while (*p != '\0') {
                ck_assert_uint_lt(k, len);
                ck_assert_msg(got[k] == strtoul(p, &p, 10), "%s: index %zu", label, k);
                k++;
                if (*p == ',')
                    p++;
            }
            ck_assert_msg(k == len, "%s: chain length %zu", label, len);
        } else {
            ck_abort_msg("%s: unknown line", label);
        }
    }
    ck_assert_uint_gt(nlines, 6);
}

START_TEST(test_fixture)
{
    const char *name = fixtures[_i];
    char path[256], *data, *expected;
    cs_cachegraph *g = NULL;
    cs_error *err = NULL;
    size_t len;

    snprintf(path, sizeof(path), "cache/%s/config.json", name);
    data = cs_test_read_fixture(path, &len);
    snprintf(path, sizeof(path), "cache/%s/expected.txt", name);
    expected = cs_test_read_fixture(path, NULL);
    if (strncmp(name, "cacheconfig", 11) == 0) {
        ck_assert_cs_ok(cs_cachegraph_parse_cacheconfig(&g, data, len, &err), &err);
        check_expected(g, name, expected);
        cs_cachegraph_free(g);
    } else {
        test_config tc;

        ck_assert(load_config(&tc, data, len));
        if (strstr(expected, "\nkind none\n") != NULL) {
            /* no key: the audit's view is an empty graph over the image's layers */
            ck_assert_ptr_null(tc.value);
            ck_assert_ptr_null(strstr(data, CS_INLINE_CACHE_KEY));
            ck_assert_cs_ok(cs_cachegraph_parse_inline(&g, "[]", 2, tc.cfg.ndiff_ids, &err), &err);
        } else {
            ck_assert_ptr_nonnull(tc.value);
            ck_assert_cs_ok(
                cs_cachegraph_parse_inline(&g, tc.value, tc.value_len, tc.cfg.ndiff_ids, &err),
                &err);
        }
        ck_assert_cs_ok(cs_cachegraph_apply_config(g, &tc.cfg, &err), &err);
        check_expected(g, name, expected);
        ck_assert_str_eq(cs_cachegraph_layer(g, 0)->diff_id, tc.cfg.diff_ids[0]);
        cs_cachegraph_free(g);
        dispose_config(&tc);
    }
    free(data);
    free(expected);
}
END_TEST

/* The three spellings of one inline cache decode alike: the JSON string's value, the bytes
 * between the config's quotes, and the decoded JSON. */
START_TEST(test_fixture_forms)
{
    static const char *const names[] = {"inline-run", "inline-multistage", "cache-from-rebuilt"};
    const char *name = names[_i];
    char path[256], *data, *quoted, *end;
    unsigned char *json;
    cs_cachegraph *a = NULL, *b = NULL, *c = NULL;
    cs_error *err = NULL;
    test_config tc;
    size_t len, i, j, nl;
    int n;

    snprintf(path, sizeof(path), "cache/%s/config.json", name);
    data = cs_test_read_fixture(path, &len);
    ck_assert(load_config(&tc, data, len));
    quoted = strstr(data, "\"" CS_INLINE_CACHE_KEY "\":\"");
    ck_assert_ptr_nonnull(quoted);
    quoted += strlen(CS_INLINE_CACHE_KEY) + 4;
    end = strchr(quoted + 1, '"');
    json = malloc(tc.value_len);
    n = EVP_DecodeBlock(json, (const unsigned char *)tc.value, (int)tc.value_len);
    ck_assert_int_gt(n, 0);
    /* EVP_DecodeBlock counts the padding as zero bytes */
    while (n > 0 && json[n - 1] == '\0')
        n--;
    nl = tc.cfg.ndiff_ids;
    ck_assert_cs_ok(cs_cachegraph_parse_inline(&a, tc.value, tc.value_len, nl, &err), &err);
    ck_assert_cs_ok(
        cs_cachegraph_parse_inline(&b, quoted - 1, (size_t)(end - quoted) + 2, nl, &err), &err);
    ck_assert_cs_ok(cs_cachegraph_parse_inline(&c, (const char *)json, (size_t)n, nl, &err), &err);
    ck_assert_uint_eq(cs_cachegraph_nrecords(a), cs_cachegraph_nrecords(b));
    ck_assert_uint_eq(cs_cachegraph_nrecords(a), cs_cachegraph_nrecords(c));
    for (i = 0; i < cs_cachegraph_nrecords(a); i++) {
        const cs_cache_record *ra = cs_cachegraph_record(a, i);
        const cs_cache_record *rb = cs_cachegraph_record(b, i);
        const cs_cache_record *rc = cs_cachegraph_record(c, i);

        ck_assert_str_eq(ra->digest, rb->digest);
        ck_assert_str_eq(ra->digest, rc->digest);
        ck_assert_uint_eq(ra->nresults, rc->nresults);
        ck_assert_uint_eq(ra->ninputs, rc->ninputs);
        for (j = 0; j < ra->nresults; j++)
            ck_assert_uint_eq(ra->results[j].layer, rc->results[j].layer);
    }
    for (i = 0; i < nl; i++) {
        ck_assert_int_eq(cs_cachegraph_layer_coverage(a, i), cs_cachegraph_layer_coverage(b, i));
        ck_assert_int_eq(cs_cachegraph_layer_coverage(a, i), cs_cachegraph_layer_coverage(c, i));
    }
    cs_cachegraph_free(a);
    cs_cachegraph_free(b);
    cs_cachegraph_free(c);
    free(json);
    dispose_config(&tc);
    free(data);
}
END_TEST

static cs_cachegraph *
fixture_graph(const char *name, size_t nlayers)
{
    char path[256], *data;
    cs_cachegraph *g = NULL;
    cs_error *err = NULL;
    test_config tc;
    size_t len;

    snprintf(path, sizeof(path), "cache/%s/config.json", name);
    data = cs_test_read_fixture(path, &len);
    if (strncmp(name, "cacheconfig", 11) == 0) {
        ck_assert_cs_ok(cs_cachegraph_parse_cacheconfig(&g, data, len, &err), &err);
    } else {
        ck_assert(load_config(&tc, data, len));
        ck_assert_cs_ok(cs_cachegraph_parse_inline(&g, tc.value, tc.value_len, nlayers, &err),
                        &err);
        dispose_config(&tc);
    }
    free(data);
    return g;
}

/* Fixture 6: the records of the steps that were CACHED on the second daemon are there, with
 * their links, but without results. */
START_TEST(test_rebuilt_keeps_keys_not_results)
{
    cs_cachegraph *g = fixture_graph("cache-from-rebuilt", 5);
    size_t keyonly_with_inputs = 0, i, chain[5];
    const cs_cache_record *top = NULL;

    for (i = 0; i < cs_cachegraph_nrecords(g); i++) {
        const cs_cache_record *r = cs_cachegraph_record(g, i);

        if (r->nresults == 0 && r->ninputs > 0)
            keyonly_with_inputs++;
        if (r->nresults > 0) {
            ck_assert_ptr_null(top);
            top = r;
        }
    }
    ck_assert_uint_eq(keyonly_with_inputs, 3);
    ck_assert_ptr_nonnull(top);
    ck_assert_str_eq(top->digest,
                     "sha256:e85ba5c718ef6e67a84c7950c18c4371dcb4df35735fb2bddd8c90b19c6a5d9f");
    ck_assert_uint_eq(top->results[0].layer, 4);
    ck_assert_ptr_null(top->results[0].chain);
    ck_assert_str_eq(top->results[0].created_at, "2026-11-24T06:05:06.709120739Z");
    ck_assert_uint_eq(top->ninputs, 2);
    ck_assert_uint_eq(top->ndependents, 0);
    ck_assert(!top->dangling);
    /* its first input is the RUN before it, a key-only record */
    ck_assert_uint_eq(cs_cachegraph_record(g, top->inputs[0].links[0].record)->nresults, 0);
    ck_assert_uint_eq(cs_cachegraph_chain(g, 4, chain, 5), 5);
    for (i = 0; i < 5; i++)
        ck_assert_uint_eq(chain[i], i);
    /* the audit's warning: the first step layer no record restores */
    ck_assert_uint_eq(cs_cachegraph_first_uncovered(g, cs_cachegraph_base_layers(g)), 1);
    cs_cachegraph_free(g);
}
END_TEST

START_TEST(test_multistage_selector)
{
    cs_cachegraph *g = fixture_graph("inline-multistage", 4);
    const cs_cache_record *copy = cs_cachegraph_record(g, 2);

    ck_assert_str_eq(copy->digest,
                     "sha256:42da89843b242629214c12e0b2042f7b96ea59e6ab988d2ffc58795387b37a05");
    ck_assert_uint_eq(copy->ninputs, 2);
    ck_assert_uint_eq(copy->inputs[0].nlinks, 1);
    ck_assert_uint_eq(copy->inputs[0].links[0].record, 6);
    ck_assert_uint_eq(copy->inputs[1].nlinks, 2);
    ck_assert_uint_eq(copy->inputs[1].links[0].record, 3);
    ck_assert_ptr_null(copy->inputs[1].links[0].selector);
    ck_assert_uint_eq(copy->inputs[1].links[1].record, 5);
    ck_assert_str_eq(copy->inputs[1].links[1].selector,
                     "sha256:ea4b38725b39450d0b48c9470a4e963ba3340a7e082bb31fa8678b8fa64d3ae4");
    /* the FROM record feeds both stages */
    ck_assert_uint_eq(cs_cachegraph_record(g, 4)->ndependents, 2);
    ck_assert_uint_eq(cs_cachegraph_record(g, 4)->ninputs, 0);
    ck_assert_str_eq(cs_cachegraph_record(g, 4)->digest,
                     "sha256:5d9dfa729c8b9d4ea9b4f09b8aaf3dd97de30f351aa0e47fdc79ab74c3382c12");
    cs_cachegraph_free(g);
}
END_TEST

START_TEST(test_cacheconfig_annotations)
{
    cs_cachegraph *g = fixture_graph("cacheconfig-max", 0);
    const cs_cache_layer *base = cs_cachegraph_layer(g, 1);
    const cs_cache_layer *top = cs_cachegraph_layer(g, 0);

    ck_assert_str_eq(base->blob,
                     "sha256:28ed0c76f3033193fd58c608dbb25652468ec5ef051c7d8f92fd8cc8f0ab00e0");
    ck_assert_int_eq(base->parent, -1);
    ck_assert_int_eq(base->size, 1031882);
    ck_assert_str_eq(base->media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
    ck_assert_str_eq(base->diff_id,
                     "sha256:97c105c8d0477469000e1af8125ad45318b27eafb772348017dfc216beac386a");
    ck_assert_str_eq(base->created_at, "2026-11-24T06:04:31.184735689Z");
    ck_assert_ptr_null(base->description);
    ck_assert_int_eq(top->parent, 3);
    cs_cachegraph_free(g);
    /* the registry exporter writes no annotations, and leaves parent 0 out */
    g = fixture_graph("cacheconfig-min", 0);
    ck_assert_ptr_null(cs_cachegraph_layer(g, 4)->diff_id);
    ck_assert_int_eq(cs_cachegraph_layer(g, 4)->size, -1);
    ck_assert_int_eq(cs_cachegraph_layer(g, 4)->parent, 0);
    cs_cachegraph_free(g);
}
END_TEST

/* ---- inline: accepted shapes -------------------------------------------------------------- */

#define DA "sha256:aaaa"
#define T1 "2026-11-24T04:20:36.60860616Z"

static cs_cachegraph *
inline_ok(const char *json, size_t nlayers)
{
    cs_cachegraph *g = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_cachegraph_parse_inline(&g, json, strlen(json), nlayers, &err), &err);
    return g;
}

/* Go's encoding/json matches keys case-insensitively, folding U+017F to s and U+212A to k;
 * this is what BuildKit accepts, so it is what the audit must read. */
START_TEST(test_keys_case_insensitive)
{
    cs_cachegraph *g =
        inline_ok("[{\"LAYERS\":[{\"Layer\":1,\"CREATEDAT\":\"" T1 "\"}],\"Digest\":\"" DA "\","
                  "\"INPUTS\":[[{\"Link\":1,\"SeLeCtOr\":\"sel\"}]]},"
                  "{\"digest\":\"b\",\"chain\xc5\xbf\":[{\"layers\":[0,2]}],"
                  "\"inputs\":[[{\"lin\xe2\x84\xaa\":2}]]},"
                  "{\"Digest\":\"c\"}]",
                  3);
    const cs_cache_record *r = cs_cachegraph_record(g, 0);

    ck_assert_str_eq(r->digest, DA);
    ck_assert_uint_eq(r->nresults, 1);
    ck_assert_uint_eq(r->results[0].layer, 1);
    ck_assert_str_eq(r->results[0].created_at, T1);
    ck_assert_uint_eq(r->inputs[0].links[0].record, 1);
    ck_assert_str_eq(r->inputs[0].links[0].selector, "sel");
    r = cs_cachegraph_record(g, 1);
    ck_assert_uint_eq(r->nresults, 1);
    ck_assert_uint_eq(r->results[0].nchain, 2);
    ck_assert_uint_eq(r->results[0].layer, 2);
    ck_assert_uint_eq(r->inputs[0].links[0].record, 2);
    ck_assert_int_eq(cs_cachegraph_layer_coverage(g, 2), 1);
    ck_assert_int_eq(cs_cachegraph_layer_coverage(g, 1), 1);
    ck_assert_int_eq(cs_cachegraph_layer_coverage(g, 0), 0);
    cs_cachegraph_free(g);
    /* a near miss is an unknown key, ignored: "layerz" is not "layers" */
    g = inline_ok("[{\"layerz\":[{\"layer\":9}],\"l\xc4\xb1nk\":1}]", 1);
    ck_assert_uint_eq(cs_cachegraph_record(g, 0)->nresults, 0);
    cs_cachegraph_free(g);
}
END_TEST

/* Go semantics for repeated keys and nulls: the last member wins; null changes nothing. */
START_TEST(test_go_null_and_repeats)
{
    cs_cachegraph *g = inline_ok("[null,{\"layers\":[null,{\"layer\":1,\"Layer\":2},"
                                 "{\"layer\":3,\"LAYER\":null}],\"digest\":null,\"inputs\":null,"
                                 "\"chains\":[null,{\"layers\":[]},{\"layers\":[null,1]}]}]",
                                 4);
    const cs_cache_record *r = cs_cachegraph_record(g, 1);

    ck_assert_str_eq(cs_cachegraph_record(g, 0)->digest, "");
    ck_assert_uint_eq(cs_cachegraph_record(g, 0)->nresults, 0);
    ck_assert(cs_cachegraph_record(g, 0)->dangling);
    ck_assert_str_eq(r->digest, "");
    ck_assert_uint_eq(r->ninputs, 0);
    /* null result = layer 0; two empty chains leave nothing; [null,1] = [0,1] */
    ck_assert_uint_eq(r->nresults, 4);
    ck_assert_uint_eq(r->results[0].layer, 0);
    ck_assert_ptr_null(r->results[0].created_at);
    ck_assert_uint_eq(r->results[1].layer, 2);
    ck_assert_uint_eq(r->results[2].layer, 3);
    ck_assert_uint_eq(r->results[3].layer, 1);
    ck_assert_uint_eq(r->results[3].chain[0], 0);
    ck_assert(!r->dangling);
    cs_cachegraph_free(g);
}
END_TEST

START_TEST(test_inline_forms)
{
    cs_cachegraph *g;

    /* base64("null"): a JSON null is no records */
    g = inline_ok("bnVsbA==", 2);
    ck_assert_uint_eq(cs_cachegraph_nrecords(g), 0);
    ck_assert_uint_eq(cs_cachegraph_nlayers(g), 2);
    ck_assert_uint_eq(cs_cachegraph_first_uncovered(g, 0), 0);
    ck_assert_uint_eq(cs_cachegraph_base_layers(g), 0);
    cs_cachegraph_free(g);
    /* base64 of [{"digest":"x"}], wrapped at any point as Go's decoder allows */
    g = inline_ok("W3siZGln\r\nZXN0Ijoi\neCJ9XQ==\n", 0);
    ck_assert_str_eq(cs_cachegraph_record(g, 0)->digest, "x");
    cs_cachegraph_free(g);
    /* with the quotes of the config around it */
    g = inline_ok("\"W3siZGlnZXN0IjoieCJ9XQ==\"", 0);
    ck_assert_str_eq(cs_cachegraph_record(g, 0)->digest, "x");
    cs_cachegraph_free(g);
    /* decoded, with leading white space; one padding character */
    g = inline_ok(" \n[]", 0);
    ck_assert_uint_eq(cs_cachegraph_nrecords(g), 0);
    cs_cachegraph_free(g);
    g = inline_ok("W3t9XQ==", 0); /* [{}] */
    ck_assert_uint_eq(cs_cachegraph_nrecords(g), 1);
    cs_cachegraph_free(g);
    g = inline_ok("W3t9LHt9XQ==", 0); /* [{},{}] */
    ck_assert_uint_eq(cs_cachegraph_nrecords(g), 2);
    cs_cachegraph_free(g);
    g = inline_ok("W3t9LCB7fV0=", 0); /* [{}, {}] */
    ck_assert_uint_eq(cs_cachegraph_nrecords(g), 2);
    cs_cachegraph_free(g);
}
END_TEST

START_TEST(test_times)
{
    static const char *const good[] = {
        "2026-11-24T04:20:36Z",      "2026-11-24T04:20:36.1Z", "2026-11-24T04:20:36.123456789123Z",
        "2024-02-29T23:59:59+02:00", "0001-01-01T00:00:00Z",   "2026-01-31T00:00:00-23:59",
    };
    static const char *const bad[] = {
        "2026-11-24 04:20:36Z",
        "2026-11-24T04:20:36z",
        "2026-11-24t04:20:36Z",
        "2026-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-11-24T24:00:00Z",
        "2026-11-24T04:60:00Z",
        "2026-11-24T04:20:60Z",
        "2026-11-24T04:20:36",
        "2026-11-24T04:20:36.Z",
        "2026-11-24T04:20:36,5Z",
        "2026-11-24T04:20:36+2:00",
        "2026-11-24T04:20:36+24:00",
        "",
        "yesterday",
    };
    char json[256];
    size_t i;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        cs_cachegraph *g;

        snprintf(json, sizeof(json), "[{\"layers\":[{\"layer\":0,\"createdAt\":\"%s\"}]}]",
                 good[i]);
        g = inline_ok(json, 1);
        ck_assert_str_eq(cs_cachegraph_record(g, 0)->results[0].created_at, good[i]);
        cs_cachegraph_free(g);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cs_cachegraph *g = NULL;
        cs_error *err = NULL;

        snprintf(json, sizeof(json), "[{\"layers\":[{\"layer\":0,\"createdAt\":\"%s\"}]}]", bad[i]);
        ck_assert_msg(cs_cachegraph_parse_inline(&g, json, strlen(json), 1, &err) == CS_EPROTO,
                      "%s", bad[i]);
        ck_assert_str_eq(err->message, "record 0: \"createdAt\" is not an RFC 3339 time");
        ck_assert_ptr_null(g);
        cs_error_free(err);
    }
}
END_TEST

START_TEST(test_coverage_and_dangling)
{
    /* record 0: key only, nobody links to it; record 1 has two results at layer 2 (counted
     * once) and one at layer 1; record 2 a chain ending at 1; record 3 the FROM */
    cs_cachegraph *g = inline_ok("[{\"digest\":\"a\"},"
                                 "{\"layers\":[{\"layer\":2},{\"layer\":2},{\"layer\":1}],"
                                 "\"inputs\":[[{\"link\":3}]]},"
                                 "{\"chains\":[{\"layers\":[0,3,1]}],\"inputs\":[[{\"link\":1}]]},"
                                 "{\"digest\":\"from\"}]",
                                 5);
    size_t chain[8];

    ck_assert(cs_cachegraph_record(g, 0)->dangling);
    ck_assert(!cs_cachegraph_record(g, 1)->dangling);
    ck_assert(!cs_cachegraph_record(g, 3)->dangling);
    ck_assert_uint_eq(cs_cachegraph_record(g, 3)->ndependents, 1);
    ck_assert_int_eq(cs_cachegraph_layer_coverage(g, 0), 0);
    ck_assert_int_eq(cs_cachegraph_layer_coverage(g, 1), 2);
    ck_assert_int_eq(cs_cachegraph_layer_coverage(g, 2), 1);
    ck_assert_int_eq(cs_cachegraph_layer_coverage(g, 3), 0);
    ck_assert_int_eq(cs_cachegraph_layer_coverage(g, 4), 0);
    ck_assert_int_eq(cs_cachegraph_layer_coverage(g, 5), CS_EINVAL);
    ck_assert_uint_eq(cs_cachegraph_first_uncovered(g, 0), 0);
    ck_assert_uint_eq(cs_cachegraph_first_uncovered(g, 1), 3);
    ck_assert_uint_eq(cs_cachegraph_first_uncovered(g, 9), 5);
    ck_assert_ptr_null(cs_cachegraph_record(g, 4));
    ck_assert_ptr_null(cs_cachegraph_layer(g, 5));
    /* record 1: layer 1 = chain of 2, one step above the FROM: one base layer */
    ck_assert_uint_eq(cs_cachegraph_base_layers(g), 1);
    ck_assert_uint_eq(cs_cachegraph_chain(g, 3, chain, 8), 4);
    ck_assert_uint_eq(chain[3], 3);
    /* a short buffer gets the base of the chain; the length is still the whole */
    ck_assert_uint_eq(cs_cachegraph_chain(g, 4, chain, 2), 5);
    ck_assert_uint_eq(chain[0], 0);
    ck_assert_uint_eq(chain[1], 1);
    ck_assert_uint_eq(cs_cachegraph_chain(g, 4, NULL, 0), 5);
    ck_assert_uint_eq(cs_cachegraph_chain(g, 5, chain, 8), 0);
    cs_cachegraph_free(g);
}
END_TEST

START_TEST(test_set_layer_and_config)
{
    cs_cachegraph *g =
        inline_ok("[{\"layers\":[{\"layer\":1}],\"inputs\":[[{\"link\":1}]]},{}]", 2);
    char *ids[] = {"sha256:11", "sha256:22"};
    cs_history hist[] = {{NULL, "t0", false},
                         {"ARG X", "t1", true},
                         {"RUN make", "t2", false},
                         {"RUN extra", "t3", false}};
    cs_image_config cfg = {.diff_ids = ids, .ndiff_ids = 2, .history = hist, .nhistory = 4};
    cs_cachegraph *cc = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_cachegraph_set_layer(g, 1, "sha256:b1", NULL, &err), &err);
    ck_assert_str_eq(cs_cachegraph_layer(g, 1)->blob, "sha256:b1");
    ck_assert_ptr_null(cs_cachegraph_layer(g, 1)->diff_id);
    ck_assert_cs_ok(cs_cachegraph_apply_config(g, &cfg, &err), &err);
    ck_assert_str_eq(cs_cachegraph_layer(g, 1)->blob, "sha256:b1");
    ck_assert_str_eq(cs_cachegraph_layer(g, 1)->diff_id, "sha256:22");
    ck_assert_str_eq(cs_cachegraph_layer(g, 1)->description, "RUN make");
    ck_assert_str_eq(cs_cachegraph_layer(g, 1)->created_at, "t2");
    ck_assert_ptr_null(cs_cachegraph_layer(g, 0)->description);
    ck_assert_str_eq(cs_cachegraph_layer(g, 0)->created_at, "t0");
    ck_assert_int_eq(cs_cachegraph_layer(g, 1)->parent, 0);
    ck_assert_int_eq(cs_cachegraph_layer(g, 0)->parent, -1);
    ck_assert_int_eq(cs_cachegraph_set_layer(g, 2, "x", NULL, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    /* BuildKit skips an image whose config and manifest disagree on the layer count */
    cfg.ndiff_ids = 1;
    ck_assert_int_eq(cs_cachegraph_apply_config(g, &cfg, &err), CS_EPROTO);
    ck_assert_ptr_nonnull(strstr(err->message, "mismatching manifest and config"));
    cs_error_free(err);
    err = NULL;
    ck_assert_cs_ok(cs_cachegraph_parse_cacheconfig(&cc, "null", 4, &err), &err);
    ck_assert_int_eq(cs_cachegraph_apply_config(cc, &cfg, &err), CS_EINVAL);
    cs_error_free(err);
    cs_cachegraph_free(cc);
    cs_cachegraph_free(g);
}
END_TEST

/* ---- cacheconfig: accepted shapes ---------------------------------------------------- */

START_TEST(test_cacheconfig_shapes)
{
    /* the shape of a real export (GitLab container-registry's api_test.go): parent -1, then
     * parent 0 left out; layer 2's parent is out of range and layer 3 is its own parent,
     * but no record uses them, so BuildKit never looks (getRemoteChain runs per result) */
    static const char json[] =
        "{\"layers\":[{\"blob\":\"sha256:1364\",\"parent\":-1},{\"blob\":\"sha256:cc28\"},"
        "{\"blob\":\"sha256:dead\",\"parent\":7},{\"blob\":\"sha256:beef\",\"parent\":3}],"
        "\"records\":[{\"digest\":\"sha256:r0\"},"
        "{\"layers\":[{\"layer\":1,\"createdAt\":\"" T1 "\"}],\"digest\":\"sha256:r1\","
        "\"inputs\":[[{\"link\":0}]]}],\"unknown\":{\"x\":[1]}}";
    cs_cachegraph *g = NULL;
    cs_error *err = NULL;
    size_t chain[4];

    ck_assert_cs_ok(cs_cachegraph_parse_cacheconfig(&g, json, strlen(json), &err), &err);
    ck_assert_uint_eq(cs_cachegraph_nlayers(g), 4);
    ck_assert_uint_eq(cs_cachegraph_nrecords(g), 2);
    ck_assert_int_eq(cs_cachegraph_layer(g, 1)->parent, 0);
    ck_assert(cs_cachegraph_layer(g, 1)->chain_ok);
    ck_assert(!cs_cachegraph_layer(g, 2)->chain_ok);
    ck_assert(!cs_cachegraph_layer(g, 3)->chain_ok);
    ck_assert_uint_eq(cs_cachegraph_chain(g, 1, chain, 4), 2);
    ck_assert_uint_eq(chain[0], 0);
    ck_assert_uint_eq(chain[1], 1);
    ck_assert_uint_eq(cs_cachegraph_chain(g, 2, chain, 4), 0);
    ck_assert_uint_eq(cs_cachegraph_chain(g, 3, chain, 4), 0);
    ck_assert_int_eq(cs_cachegraph_layer_coverage(g, 1), 1);
    ck_assert_uint_eq(cs_cachegraph_base_layers(g), 1);
    cs_cachegraph_free(g);
    /* a null config is an empty one, as json.Unmarshal leaves it */
    ck_assert_cs_ok(cs_cachegraph_parse_cacheconfig(&g, " null ", 6, &err), &err);
    ck_assert_uint_eq(cs_cachegraph_nlayers(g), 0);
    ck_assert_uint_eq(cs_cachegraph_first_uncovered(g, 0), 0);
    cs_cachegraph_free(g);
    ck_assert_cs_ok(cs_cachegraph_parse_cacheconfig(&g, "{}", 2, &err), &err);
    ck_assert_uint_eq(cs_cachegraph_nrecords(g), 0);
    cs_cachegraph_free(g);
}
END_TEST

/* ---- malformed ------------------------------------------------------------------------- */

typedef struct bad_case {
    bool cacheconfig;
    size_t nlayers;
    const char *input;
    int code;
    const char *message; /* exact, or a part when it starts with '~' */
} bad_case;

#define TWO_RECORDS "{\"digest\":\"a\"},{\"digest\":\"b\"}"

static const bad_case bad_cases[] = {
    /* base64 and JSON */
    {false, 1, "", CS_EPROTO, "inline cache is empty"},
    {false, 1, "W3siZGlnZXN0IjoiIn1d!", CS_EPROTO,
     "inline cache is not valid base64: bad character at byte 20"},
    {false, 1, "W3siZGlnZXN0IjoiIn1", CS_EPROTO, "inline cache is not valid base64: truncated"},
    {false, 1, "W3t9XQ=", CS_EPROTO, "inline cache is not valid base64: truncated"},
    {false, 1, "W=t9XQ==", CS_EPROTO,
     "inline cache is not valid base64: misplaced padding at byte 1"},
    {false, 1, "W3=9XQ==", CS_EPROTO,
     "inline cache is not valid base64: data after padding at byte 3"},
    {false, 1, "W10=W10=", CS_EPROTO,
     "inline cache is not valid base64: data after padding at byte 4"},
    {false, 1, "W10=\n=", CS_EPROTO,
     "inline cache is not valid base64: misplaced padding at byte 5"},
    {false, 1, "W3s=", CS_EPROTO, "inline cache is not valid JSON: truncated at byte 2"},
    {false, 1, "e30=", CS_EPROTO, "inline cache is not a JSON array of records"},
    {false, 1, "[{}] x", CS_EPROTO, "~inline cache is not valid JSON: "},
    {false, 1, "[{\"digest\":\"a\\u0000b\"}]", CS_EPROTO, "~inline cache is not valid JSON: "},
    /* BuildKit's parseRecord / getRemoteChain rules */
    {false, 5, "[" TWO_RECORDS "," TWO_RECORDS ",{\"layers\":[{\"layer\":9}]}]", CS_EPROTO,
     "record 4: layer index 9 but the image has 5 layers (BuildKit: invalid layer index 9)"},
    {false, 5, "[" TWO_RECORDS ",{\"digest\":\"c\"},{\"layers\":[{\"layer\":9}]}]", CS_EPROTO,
     "record 3: layer index 9 but the image has 5 layers (BuildKit: invalid layer index 9)"},
    {false, 5, "[{\"layers\":[{\"layer\":-1}]}]", CS_EPROTO,
     "record 0: layer index -1 but the image has 5 layers (BuildKit: invalid layer index -1)"},
    {false, 0, "[{\"layers\":[{}]}]", CS_EPROTO,
     "record 0: layer index 0 but the image has 0 layers (BuildKit: invalid layer index 0)"},
    {false, 2, "[{},{\"chains\":[{\"layers\":[0]},{\"layers\":[0,7]}]}]", CS_EPROTO,
     "record 1: chain 1 has layer index 7 but the image has 2 layers "
     "(BuildKit: invalid layer index 7)"},
    {false, 2, "[{},{\"inputs\":[[{\"link\":0}],[{\"link\":0},{\"link\":5}]]}]", CS_EPROTO,
     "record 1: input 1 links to record 5 but there are 2 records "
     "(BuildKit: invalid record ID: 5)"},
    {false, 2, "[{\"inputs\":[[{\"link\":-1}]]}]", CS_EPROTO,
     "record 0: input 0 links to record -1 but there are 1 records "
     "(BuildKit: invalid record ID: -1)"},
    {false, 2, "[{\"inputs\":[[{\"link\":0}]]}]", CS_EPROTO,
     "record 0: its inputs lead back to it: 0 -> 0 (BuildKit: invalid looping record)"},
    {false, 2, "[{\"inputs\":[[{}]]}]", CS_EPROTO,
     "record 0: its inputs lead back to it: 0 -> 0 (BuildKit: invalid looping record)"},
    {false, 2,
     "[{},{\"inputs\":[[{\"link\":0}],[{\"link\":3}]]},{\"inputs\":[[{\"link\":1}]]},"
     "{\"inputs\":[[{\"link\":2}]]}]",
     CS_EPROTO,
     "record 1: its inputs lead back to it: 1 -> 3 -> 2 -> 1 (BuildKit: invalid looping record)"},
    {false, 2, "[{},{\"inputs\":[[{\"link\":0}],[]]}]", CS_EPROTO,
     "record 1: input 1 has no links (BuildKit: invalid empty input for record 1)"},
    {false, 2, "[{\"inputs\":[null]}]", CS_EPROTO,
     "record 0: input 0 has no links (BuildKit: invalid empty input for record 0)"},
    /* types Go's decoder refuses */
    {false, 2, "[1]", CS_EPROTO, "record 0 is not a JSON object"},
    {false, 2, "[{},{\"layers\":[{\"layer\":\"1\"}]}]", CS_EPROTO,
     "record 1: \"layer\" is not an integer"},
    {false, 2, "[{\"layers\":[{\"layer\":1.0}]}]", CS_EPROTO,
     "record 0: \"layer\" is not an integer"},
    {false, 2, "[{\"layers\":[{\"layer\":1e0}]}]", CS_EPROTO,
     "record 0: \"layer\" is not an integer"},
    {false, 2, "[{\"layers\":[{\"layer\":99999999999999999999}]}]", CS_EPROTO,
     "~inline cache is not valid JSON: number out of range"},
    {false, 2, "[{\"layers\":{}}]", CS_EPROTO, "record 0: \"layers\" is not an array"},
    {false, 2, "[{\"layers\":[7]}]", CS_EPROTO, "record 0: result 0 is not a JSON object"},
    {false, 2, "[{\"chains\":[[0]]}]", CS_EPROTO, "record 0: chain 0 is not a JSON object"},
    {false, 2, "[{\"chains\":[{\"layers\":[\"0\"]}]}]", CS_EPROTO,
     "record 0: chain 0 holds a non-integer"},
    {false, 2, "[{\"digest\":5}]", CS_EPROTO, "record 0: \"digest\" is not a string"},
    {false, 2, "[{\"inputs\":{}}]", CS_EPROTO, "record 0: \"inputs\" is not an array"},
    {false, 2, "[{\"inputs\":[{}]}]", CS_EPROTO, "record 0: input 0 is not an array"},
    {false, 2, "[{},{\"inputs\":[[5]]}]", CS_EPROTO,
     "record 1: input 0 link 0 is not a JSON object"},
    {false, 2, "[{},{\"inputs\":[[{\"link\":0,\"selector\":[]}]]}]", CS_EPROTO,
     "record 1: \"selector\" is not a string"},
    /* cacheconfig */
    {true, 0, "[]", CS_EPROTO, "cache config is not a JSON object"},
    {true, 0, "", CS_EPROTO, "cache config is empty"},
    {true, 0, "{\"layers\":[}", CS_EPROTO, "~cache config is not valid JSON: "},
    {true, 0, "{\"layers\":{}}", CS_EPROTO, "cache config: \"layers\" is not an array"},
    {true, 0, "{\"layers\":[1]}", CS_EPROTO, "layer 0 is not a JSON object"},
    {true, 0, "{\"layers\":[{\"parent\":\"-1\"}]}", CS_EPROTO,
     "layer 0: \"parent\" is not an integer"},
    {true, 0, "{\"layers\":[{\"parent\":-1,\"annotations\":[]}]}", CS_EPROTO,
     "layer 0: annotations is not a JSON object"},
    {true, 0, "{\"layers\":[{\"parent\":-1,\"annotations\":{\"size\":\"1\"}}]}", CS_EPROTO,
     "layer 0: \"size\" is not an integer"},
    {true, 0, "{\"layers\":[{\"parent\":-1,\"annotations\":{\"createdAt\":\"now\"}}]}", CS_EPROTO,
     "layer 0: \"createdAt\" is not an RFC 3339 time"},
    {true, 0, "{\"layers\":[{\"parent\":-1}],\"records\":[{\"layers\":[{\"layer\":3}]}]}",
     CS_EPROTO,
     "record 0: layer index 3 but the cache config has 1 layers "
     "(BuildKit: invalid layer index 3)"},
    {true, 0,
     "{\"layers\":[{\"parent\":-1},{\"parent\":5}],\"records\":[{},{\"layers\":[{\"layer\":1}]}]}",
     CS_EPROTO,
     "record 1: layer 1 has parent 5 but the cache config has 2 layers "
     "(BuildKit: invalid layer index 5)"},
    {true, 0,
     "{\"layers\":[{\"parent\":-1},{\"parent\":2},{\"parent\":-2}],"
     "\"records\":[{\"layers\":[{\"layer\":1}]}]}",
     CS_EPROTO,
     "record 0: layer 2 has parent -2 but the cache config has 3 layers "
     "(BuildKit: invalid layer index -2)"},
    /* a missing parent is 0: a first layer written without "parent" is its own parent */
    {true, 0, "{\"layers\":[{\"blob\":\"a\"}],\"records\":[{\"layers\":[{\"layer\":0}]}]}",
     CS_EPROTO,
     "record 0: the parents of layer 0 loop back to layer 0 (BuildKit: invalid looping layer)"},
    {true, 0,
     "{\"layers\":[{\"parent\":2},{\"parent\":0},{\"parent\":1}],"
     "\"records\":[{\"layers\":[{\"layer\":2}]}]}",
     CS_EPROTO,
     "record 0: the parents of layer 2 loop back to layer 2 (BuildKit: invalid looping layer)"},
    {true, 0, "{\"records\":[{\"inputs\":[[{\"link\":1}]]}]}", CS_EPROTO,
     "record 0: input 0 links to record 1 but there are 1 records "
     "(BuildKit: invalid record ID: 1)"},
    /* caps */
    {false, CS_CACHEGRAPH_MAX_LAYERS + 1, "[]", CS_ELIMIT,
     "100001 layers, over the limit of 100000"},
};

START_TEST(test_bad)
{
    const bad_case *c = &bad_cases[_i];
    cs_cachegraph *g = (cs_cachegraph *)&g;
    cs_error *err = NULL;
    int ret;

    if (c->cacheconfig)
        ret = cs_cachegraph_parse_cacheconfig(&g, c->input, strlen(c->input), &err);
    else
        ret = cs_cachegraph_parse_inline(&g, c->input, strlen(c->input), c->nlayers, &err);
    ck_assert_msg(ret == c->code, "case %d: got %d (%s)", _i, ret, err ? err->message : "");
    ck_assert_ptr_null(g);
    ck_assert_ptr_nonnull(err);
    if (c->message[0] == '~')
        ck_assert_msg(strstr(err->message, c->message + 1) != NULL, "case %d: %s", _i,
                      err->message);
    else
        ck_assert_str_eq(err->message, c->message);
    ck_assert_ptr_null(strchr(err->message, '\n'));
    cs_error_free(err);
}
END_TEST

/* A JSON text of N copies of ITEM between PREFIX and SUFFIX. */
static char *
repeat(const char *prefix, const char *item, size_t n, const char *suffix, size_t *len)
{
    size_t pl = strlen(prefix), il = strlen(item), sl = strlen(suffix), i;
    char *s = malloc(pl + n * (il + 1) + sl + 1), *p = s;

    ck_assert_ptr_nonnull(s);
    memcpy(p, prefix, pl);
    p += pl;
    for (i = 0; i < n; i++) {
        if (i > 0)
            *p++ = ',';
        memcpy(p, item, il);
        p += il;
    }
    memcpy(p, suffix, sl);
    p += sl;
    *p = '\0';
    *len = (size_t)(p - s);
    return s;
}

static const struct {
    bool cacheconfig;
    const char *prefix, *item, *suffix;
    size_t n;
    const char *message;
} huge_cases[] = {
    {false, "[", "{}", "]", CS_CACHEGRAPH_MAX_RECORDS + 1,
     "inline cache has 100001 records, over the limit of 100000"},
    {false, "[{},{\"inputs\":[", "[{}]", "]}]", CS_CACHEGRAPH_MAX_INPUTS + 1,
     "record 1: 257 entries in \"inputs\", over the limit of 256"},
    {false, "[{},{\"inputs\":[[", "{}", "]]}]", CS_CACHEGRAPH_MAX_LINKS + 1,
     "record 1: input 0 has 1025 links, over the limit of 1024"},
    {false, "[{\"layers\":[", "{}", "]}]", CS_CACHEGRAPH_MAX_RESULTS + 1,
     "record 0: 257 entries in \"layers\", over the limit of 256"},
    {false, "[{\"chains\":[{\"layers\":[0]}],\"layers\":[", "{}", "]}]", CS_CACHEGRAPH_MAX_RESULTS,
     "record 0: 257 results, over the limit of 256"},
    {false, "[{\"chains\":[{\"layers\":[", "0", "]}]}]", CS_CACHEGRAPH_MAX_CHAIN + 1,
     "record 0: 4097 entries in \"layers\", over the limit of 4096"},
    {false, "[{\"digest\":\"", "a", "\"}]", CS_CACHEGRAPH_MAX_STRING / 2 + 1,
     "record 0: \"digest\" is 4097 bytes, over the limit of 4096"},
    {true, "{\"layers\":[", "{}", "]}", CS_CACHEGRAPH_MAX_LAYERS + 1,
     "cache config: 100001 entries in \"layers\", over the limit of 100000"},
    {true, "{\"records\":[", "{}", "]}", CS_CACHEGRAPH_MAX_RECORDS + 1,
     "cache config: 100001 entries in \"records\", over the limit of 100000"},
};

START_TEST(test_huge_counts)
{
    cs_cachegraph *g = NULL;
    cs_error *err = NULL;
    size_t len;
    char *s = repeat(huge_cases[_i].prefix, huge_cases[_i].item, huge_cases[_i].n,
                     huge_cases[_i].suffix, &len);
    int ret;

    if (huge_cases[_i].cacheconfig)
        ret = cs_cachegraph_parse_cacheconfig(&g, s, len, &err);
    else
        ret = cs_cachegraph_parse_inline(&g, s, len, 1, &err);
    ck_assert_msg(ret == CS_ELIMIT, "case %d: %d %s", _i, ret, err ? err->message : "");
    ck_assert_str_eq(err->message, huge_cases[_i].message);
    ck_assert_ptr_null(g);
    cs_error_free(err);
    free(s);
}
END_TEST

START_TEST(test_huge_sizes)
{
    size_t n = CS_CACHEGRAPH_MAX_BYTES + 1;
    char *big = malloc(n + n / 2);
    cs_cachegraph *g = NULL;
    cs_error *err = NULL;

    /* decoded JSON over 16 MiB */
    memset(big, ' ', n);
    big[0] = '[';
    ck_assert_int_eq(cs_cachegraph_parse_inline(&g, big, n, 0, &err), CS_ELIMIT);
    ck_assert_str_eq(err->message, "inline cache is 16777217 bytes, over the 16777216-byte limit");
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(cs_cachegraph_parse_cacheconfig(&g, big, n, &err), CS_ELIMIT);
    cs_error_free(err);
    err = NULL;
    /* base64 that would decode past it (no need to decode to know) */
    memset(big, 'A', n + n / 2);
    ck_assert_int_eq(cs_cachegraph_parse_inline(&g, big, n + n / 2, 0, &err), CS_ELIMIT);
    ck_assert_ptr_nonnull(strstr(err->message, "over the limit"));
    cs_error_free(err);
    ck_assert_ptr_null(g);
    free(big);
}
END_TEST

/* Many records in one long chain: the loop check and depths must not recurse. */
START_TEST(test_deep_chain)
{
    size_t n = CS_CACHEGRAPH_MAX_RECORDS, i, len = 0;
    char *s = malloc(n * 32 + 16);
    cs_cachegraph *g = NULL;
    cs_error *err = NULL;

    len += (size_t)sprintf(s + len, "[{\"layers\":[{\"layer\":1}],\"inputs\":[[{\"link\":1}]]}");
    for (i = 1; i + 1 < n; i++)
        len += (size_t)sprintf(s + len, ",{\"inputs\":[[{\"link\":%zu}]]}", i + 1);
    len += (size_t)sprintf(s + len, ",{}]");
    ck_assert_cs_ok(cs_cachegraph_parse_inline(&g, s, len, 2, &err), &err);
    ck_assert_uint_eq(cs_cachegraph_nrecords(g), n);
    /* 99999 steps above the FROM for a chain of 2 layers: no base layer left */
    ck_assert_uint_eq(cs_cachegraph_base_layers(g), 0);
    cs_cachegraph_free(g);
    /* the same chain closed into a loop */
    s[len - 3] = '\0';
    len = strlen(s);
    len += (size_t)sprintf(s + len, "{\"inputs\":[[{\"link\":0}]]}]");
    ck_assert_int_eq(cs_cachegraph_parse_inline(&g, s, len, 2, &err), CS_EPROTO);
    ck_assert_ptr_nonnull(strstr(err->message, "record 0: its inputs lead back to it: 0 -> 1 -> "));
    ck_assert_ptr_nonnull(strstr(err->message, " -> ... -> 0 (BuildKit: invalid looping record)"));
    cs_error_free(err);
    free(s);
}
END_TEST

static Suite *
cachegraph_suite(void)
{
    Suite *s = suite_create("cachegraph");
    TCase *tc = tcase_create("fixtures");

    tcase_add_loop_test(tc, test_fixture, 0, (int)(sizeof(fixtures) / sizeof(fixtures[0])));
    tcase_add_loop_test(tc, test_fixture_forms, 0, 3);
    tcase_add_test(tc, test_rebuilt_keeps_keys_not_results);
    tcase_add_test(tc, test_multistage_selector);
    tcase_add_test(tc, test_cacheconfig_annotations);
    suite_add_tcase(s, tc);
    tc = tcase_create("inline");
    tcase_add_test(tc, test_keys_case_insensitive);
    tcase_add_test(tc, test_go_null_and_repeats);
    tcase_add_test(tc, test_inline_forms);
    tcase_add_test(tc, test_times);
    tcase_add_test(tc, test_coverage_and_dangling);
    tcase_add_test(tc, test_set_layer_and_config);
    suite_add_tcase(s, tc);
    tc = tcase_create("cacheconfig");
    tcase_add_test(tc, test_cacheconfig_shapes);
    suite_add_tcase(s, tc);
    tc = tcase_create("malformed");
    /* the huge inputs take a few seconds under valgrind */
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_bad, 0, (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
    tcase_add_loop_test(tc, test_huge_counts, 0, (int)(sizeof(huge_cases) / sizeof(huge_cases[0])));
    tcase_add_test(tc, test_huge_sizes);
    tcase_add_test(tc, test_deep_chain);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(cachegraph_suite)
