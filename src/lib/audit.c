/* cs_audit_image: coverage of an image's layers by its inline cache, and the warnings that
 * explain a miss (buildkit-cache-formats.md: import rules, the 1 MiB limit, issue 1981). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cachesync/audit.h>
#include "error_int.h"

/* BuildKit refuses inline cache metadata larger than this on import. */
#define INLINE_CACHE_MAX (1024 * 1024)

static int warn(cs_audit *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
warn(cs_audit *a, const char *fmt, ...)
{
    char **w, *s = NULL;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    w = n < 0 ? NULL : realloc(a->warnings, (a->nwarnings + 1) * sizeof(*w));
    if (w == NULL) {
        free(n < 0 ? NULL : s);
        return CS_ENOMEM;
    }
    a->warnings = w;
    w[a->nwarnings++] = s;
    return 0;
}

int
cs_audit_check_platform(cs_audit *a, const cs_image *img, const cs_platform *want,
                        cs_error **err)
{
    const cs_image_config *c = img->config_parsed;
    char *have, *w;
    int ret = 0;

    if (c == NULL || c->platform.os == NULL || c->platform.architecture == NULL ||
        cs_platform_matches(want, &c->platform))
        return 0;
    have = cs_platform_to_string(&c->platform);
    w = cs_platform_to_string(want);
    if (have == NULL || w == NULL ||
        warn(a, "the image is %s but a build here is %s: its layers are of another platform "
                "and cannot serve as its cache",
             have, w) < 0)
        ret = csi_error_oom(err);
    free(have);
    free(w);
    return ret;
}

void
cs_audit_against(cs_audit_compare *out, const cs_audit *base, const cs_audit *other)
{
    size_t i, j;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < other->nlayers; i++) {
        const cs_audit_layer *o = &other->layers[i];
        bool by_digest = false, by_diff = false;

        for (j = 0; j < base->nlayers; j++) {
            by_digest = by_digest || strcmp(o->digest, base->layers[j].digest) == 0;
            by_diff = by_diff || (o->diff_id != NULL && base->layers[j].diff_id != NULL &&
                                  strcmp(o->diff_id, base->layers[j].diff_id) == 0);
        }
        out->shared_by_digest += by_digest;
        out->shared_by_diff_id += by_diff;
    }
    /* a layer is the same layer only with the same chain below it (ChainID, config.md) */
    while (out->common_prefix < other->nlayers && out->common_prefix < base->nlayers) {
        const char *a = base->layers[out->common_prefix].diff_id;
        const char *b = other->layers[out->common_prefix].diff_id;

        if (a == NULL || b == NULL || strcmp(a, b) != 0)
            break;
        out->common_prefix++;
    }
    if (out->common_prefix < other->nlayers) {
        out->diverges = true;
        out->first_divergence = out->common_prefix;
        out->divergence_step = other->layers[out->common_prefix].step;
    }
    /* BuildKit restores a shared layer from BASE's cache when BASE has a record for it (or
     * it came with FROM) */
    for (i = 0; i < out->common_prefix; i++) {
        if (!base->layers[i].covered && i >= base->base_layers)
            break;
        out->reusable = i + 1;
    }
}

void
cs_audit_free(cs_audit *a)
{
    size_t i;

    if (a == NULL)
        return;
    for (i = 0; i < a->nwarnings; i++)
        free(a->warnings[i]);
    free(a->warnings);
    free(a->layers);
    free(a->fix);
    cs_cachegraph_free(a->graph);
    free(a);
}

/* A registry cache export: the manifest's layers are the cache's blobs, and the
 * cacheconfig's records say which of them restore what (buildkit-cache-formats.md 2.3). */
static int
audit_cache_export(cs_audit *a, const cs_image *img, const char *ref)
{
    const cs_manifest *m = img->parsed;
    cs_error *e = NULL;
    size_t i, j;

    a->has_cache = true;
    a->metadata_bytes = img->config.len;
    if (cs_cachegraph_parse_cacheconfig(&a->graph, img->config.ptr, img->config.len, &e) < 0) {
        int ret = warn(a, "the cache config is unusable (BuildKit would ignore it): %s",
                       e ? e->message : "malformed");

        cs_error_free(e);
        return ret;
    }
    a->records = cs_cachegraph_nrecords(a->graph);
    for (i = 0; i < m->nlayers; i++) {
        for (j = 0; j < cs_cachegraph_nlayers(a->graph); j++) {
            const cs_cache_layer *l = cs_cachegraph_layer(a->graph, j);

            if (l->blob == NULL || strcmp(l->blob, m->layers[i].digest) != 0)
                continue;
            a->layers[i].step = l->description;
            a->layers[i].covered = l->coverage > 0;
        }
        if (a->layers[i].covered) {
            a->layers_covered++;
            a->bytes_covered += (uint64_t)m->layers[i].size;
        } else if (!a->first_uncovered_set) {
            a->first_uncovered_set = true;
            a->first_uncovered = i;
        }
    }
    if (a->first_uncovered_set)
        return warn(a, "layer %zu of the cache export %s is restored by no record", a->first_uncovered,
                    ref);
    return 0;
}

int
cs_audit_image(cs_audit **out, const cs_image *img, const char *ref, cs_error **err)
{
    const cs_manifest *m = img->parsed;
    const cs_image_config *c = img->config_parsed;
    cs_error *e = NULL;
    cs_audit *a;
    size_t i, k = 0;
    int ret = 0;

    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return csi_error_oom(err);
    a->layers = calloc(m->nlayers ? m->nlayers : 1, sizeof(*a->layers));
    if (a->layers == NULL) {
        free(a);
        return csi_error_oom(err);
    }
    a->nlayers = m->nlayers;
    for (i = 0; i < m->nlayers; i++) {
        a->layers[i].index = i;
        a->layers[i].digest = m->layers[i].digest;
        a->layers[i].size = m->layers[i].size;
        a->layers[i].media_type = m->layers[i].media_type;
        a->layers[i].diff_id = c != NULL && i < c->ndiff_ids ? c->diff_ids[i] : NULL;
    }
    if (img->cache_export) {
        ret = audit_cache_export(a, img, ref);
        goto done;
    }
    /* history entries that made a layer pair with the layers in order (config.md) */
    for (i = 0; i < c->nhistory && k < m->nlayers; i++) {
        if (!c->history[i].empty_layer)
            a->layers[k++].step = c->history[i].created_by;
    }
    if (c->ndiff_ids != m->nlayers)
        ret = warn(a, "the manifest has %zu layers but the config lists %zu diff_ids: BuildKit "
                      "ignores this image's cache",
                   m->nlayers, c->ndiff_ids);
    if (ret == 0 && !c->has_inline_cache) {
        ret = warn(a, "no inline cache: the image was built without --build-arg "
                      "BUILDKIT_INLINE_CACHE=1, so --cache-from finds nothing in it");
        if (ret == 0 && asprintf(&a->fix, "rebuild with --build-arg BUILDKIT_INLINE_CACHE=1") < 0)
            a->fix = NULL;
        goto done;
    }
    if (ret < 0)
        goto done;
    a->has_cache = true;
    a->metadata_bytes = c->inline_cache_bytes;
    if (a->metadata_bytes > INLINE_CACHE_MAX)
        ret = warn(a, "cache metadata is %zu bytes, over BuildKit's %d-byte import limit: it "
                      "will be ignored",
                   a->metadata_bytes, INLINE_CACHE_MAX);
    if (ret < 0)
        goto done;
    if (cs_cachegraph_parse_inline(&a->graph, c->inline_cache, c->inline_cache_bytes,
                                   m->nlayers, &e) < 0) {
        ret = warn(a, "the cache metadata is unusable (BuildKit would ignore it): %s",
                   e ? e->message : "malformed");
        cs_error_free(e);
        goto done;
    }
    a->records = cs_cachegraph_nrecords(a->graph);
    for (i = 0; i < m->nlayers; i++) {
        a->layers[i].covered = cs_cachegraph_layer_coverage(a->graph, i) > 0;
        if (a->layers[i].covered) {
            a->layers_covered++;
            a->bytes_covered += (uint64_t)m->layers[i].size;
        }
    }
    for (i = 0; ret == 0 && i < a->records; i++) {
        const cs_cache_record *r = cs_cachegraph_record(a->graph, i);

        if (r != NULL && r->dangling)
            ret = warn(a, "cache record %zu (%.19s) restores nothing and nothing depends on it",
                       i, r->digest);
    }
    if (ret < 0)
        goto done;
    a->base_layers = cs_cachegraph_base_layers(a->graph);
    i = cs_cachegraph_first_uncovered(a->graph, a->base_layers);
    if (i < m->nlayers) {
        size_t uncovered = 0;

        a->first_uncovered_set = true;
        a->first_uncovered = i;
        for (k = a->base_layers; k < m->nlayers; k++)
            uncovered += a->layers[k].covered ? 0 : 1;
        /* the costly case: a build that took its cache from the registry without a pull
         * keeps results only for the steps it ran (BuildKit issue 1981) */
        ret = warn(a, "%zu of %zu layers past the base image have no cache record, first layer "
                      "%zu (%s): the next build on a fresh machine misses from that step on. "
                      "This happens when the image was built with --cache-from straight from "
                      "the registry; run `cachesync pull REF` before such builds",
                   uncovered, m->nlayers - a->base_layers, i,
                   a->layers[i].step ? a->layers[i].step : "unknown step");
        if (ret == 0 && a->fix == NULL &&
            asprintf(&a->fix, "cachesync pull %s before docker build --cache-from %s", ref,
                     ref) < 0)
            a->fix = NULL;
    }
done:
    if (ret < 0) {
        cs_audit_free(a);
        return csi_error_oom(err);
    }
    *out = a;
    return 0;
}
