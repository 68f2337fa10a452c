/* libFuzzer target: BuildKit inline cache (base64 or decoded JSON) and cacheconfig.v0 blobs
 * over untrusted bytes. Whatever parses must keep the graph's promises: every index in range,
 * coverage as the results say, chains that end where they should. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cachesync/cachegraph.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_LAYERS 8

static void
check(const cs_cachegraph *g)
{
    size_t nl = cs_cachegraph_nlayers(g), nr = cs_cachegraph_nrecords(g), i, j, k;
    size_t *deps = calloc(nr + 1, sizeof(*deps)), *chain = calloc(nl + 1, sizeof(*chain));
    size_t first, base = cs_cachegraph_base_layers(g);

    if (deps == NULL || chain == NULL)
        abort();
    for (i = 0; i < nr; i++) {
        const cs_cache_record *r = cs_cachegraph_record(g, i);

        if (r == NULL || r->digest == NULL)
            abort();
        for (j = 0; j < r->ninputs; j++) {
            if (r->inputs[j].nlinks == 0)
                abort();
            for (k = 0; k < r->inputs[j].nlinks; k++) {
                if (r->inputs[j].links[k].record >= nr || r->inputs[j].links[k].record == i)
                    abort();
                deps[r->inputs[j].links[k].record]++;
            }
        }
        for (j = 0; j < r->nresults; j++) {
            const cs_cache_result *res = &r->results[j];

            if (res->layer >= nl || cs_cachegraph_layer_coverage(g, res->layer) <= 0)
                abort();
            if (res->chain != NULL) {
                if (res->nchain == 0 || res->chain[res->nchain - 1] != res->layer)
                    abort();
                for (k = 0; k < res->nchain; k++) {
                    if (res->chain[k] >= nl)
                        abort();
                }
            } else {
                size_t len = cs_cachegraph_chain(g, res->layer, chain, nl);

                if (len == 0 || len > nl || chain[len - 1] != res->layer)
                    abort();
            }
        }
    }
    for (i = 0; i < nr; i++) {
        const cs_cache_record *r = cs_cachegraph_record(g, i);

        if (r->ndependents != deps[i] || r->dangling != (r->nresults == 0 && deps[i] == 0))
            abort();
    }
    if (cs_cachegraph_record(g, nr) != NULL || cs_cachegraph_layer(g, nl) != NULL ||
        cs_cachegraph_layer_coverage(g, nl) != CS_EINVAL)
        abort();
    for (i = 0; i < nl; i++) {
        const cs_cache_layer *l = cs_cachegraph_layer(g, i);
        size_t len = cs_cachegraph_chain(g, i, chain, nl);

        if ((len > 0) != l->chain_ok || len > nl || (len > 0 && chain[0] >= nl))
            abort();
        if (l->chain_ok && cs_cachegraph_layer(g, chain[0])->parent != -1)
            abort();
    }
    first = cs_cachegraph_first_uncovered(g, base);
    if (first > nl || (first < nl && cs_cachegraph_layer_coverage(g, first) != 0))
        abort();
    free(deps);
    free(chain);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cs_cachegraph *g = NULL;
    cs_error *err = NULL;

    if (cs_cachegraph_parse_inline(&g, (const char *)data, size, FUZZ_LAYERS, &err) == 0) {
        char *ids[FUZZ_LAYERS] = {"sha256:0", "sha256:1", "sha256:2", "sha256:3",
                                  "sha256:4", "sha256:5", "sha256:6", "sha256:7"};
        cs_history hist[2] = {{"FROM", "2026-01-01T00:00:00Z", false}, {"ENV", NULL, true}};
        cs_image_config cfg;

        memset(&cfg, 0, sizeof(cfg));
        cfg.diff_ids = ids;
        cfg.ndiff_ids = FUZZ_LAYERS;
        cfg.history = hist;
        cfg.nhistory = 2;
        check(g);
        if (cs_cachegraph_apply_config(g, &cfg, &err) != 0 ||
            cs_cachegraph_set_layer(g, 0, "sha256:blob", NULL, &err) != 0 ||
            strcmp(cs_cachegraph_layer(g, 0)->description, "FROM") != 0)
            abort();
        cs_cachegraph_free(g);
        g = NULL;
    } else if (err == NULL) {
        abort();
    }
    cs_error_free(err);
    err = NULL;
    if (cs_cachegraph_parse_cacheconfig(&g, (const char *)data, size, &err) == 0) {
        check(g);
        cs_cachegraph_free(g);
    } else if (err == NULL || err->message == NULL) {
        abort();
    }
    cs_error_free(err);
    return 0;
}
