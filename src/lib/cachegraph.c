/* BuildKit cache metadata (inline cache and cacheconfig.v0) decoded into one graph.
 *
 * The schema is moby/buildkit cache/remotecache/v1/types/spec.go; the rules are those of
 * its importer, cache/remotecache/v1/parse.go (parseRecord, getRemoteChain): any violation
 * there aborts the whole import, so here it is an error that names the record. The Go
 * decoder's leniencies that real exports rely on are kept: keys match case-insensitively,
 * null means "absent", "parent" defaults to 0.
 *
 * This file holds the model: the graph and its arena, the checks that need the whole graph
 * (layer chains, record loops), what is derived from them, and the queries. The JSON
 * decoding is in cachegraph_parse.c. */
#include "config.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cachesync/cachegraph.h>
#include "cachegraph_int.h"
#include "error_int.h"

#define ARENA_CHUNK (64u * 1024)

/* ---- arena: every string and array of a graph, freed at once ----------------------- */

/* The list head is struct cs_cachegraph's arena (cachegraph_int.h). */
typedef struct csi_cachegraph_chunk {
    struct csi_cachegraph_chunk *next;
    size_t used;
    size_t size;
    max_align_t data[];
} arena_chunk;

/* Zeroed memory owned by G; NULL for N == 0 or out of memory (*oom set). */
static void *
arena_alloc(cs_cachegraph *g, size_t n, bool *oom)
{
    const size_t align = alignof(max_align_t);
    arena_chunk *c = g->arena;
    void *p;

    if (n == 0)
        return NULL;
    if (n > SIZE_MAX - align) {
        *oom = true;
        return NULL;
    }
    n = (n + align - 1) / align * align;
    if (c == NULL || c->size - c->used < n) {
        size_t size = n > ARENA_CHUNK ? n : ARENA_CHUNK;

        c = malloc(sizeof(*c) + size);
        if (c == NULL) {
            *oom = true;
            return NULL;
        }
        c->size = size;
        c->used = 0;
        /* A chunk made for one big array goes behind the current one, which keeps its
         * free space for the small allocations that follow. */
        if (g->arena != NULL && n > ARENA_CHUNK) {
            c->next = g->arena->next;
            g->arena->next = c;
        } else {
            c->next = g->arena;
            g->arena = c;
        }
    }
    p = (char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

void *
csi_cachegraph_calloc(cs_cachegraph *g, size_t count, size_t size, bool *oom)
{
    if (size != 0 && count > SIZE_MAX / size) {
        *oom = true;
        return NULL;
    }
    return arena_alloc(g, count * size, oom);
}

char *
csi_cachegraph_strndup(cs_cachegraph *g, const char *s, size_t n, bool *oom)
{
    char *p = arena_alloc(g, n + 1, oom);

    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

void
cs_cachegraph_free(cs_cachegraph *g)
{
    arena_chunk *c, *next;

    if (g == NULL)
        return;
    for (c = g->arena; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    free(g);
}

/* ---- the graph and the checks over all of it ------------------------------------------- */

static int
oom(csi_cachegraph_ctx *pc)
{
    return csi_error_oom(pc->err);
}

/* Why the parents of layer START do not form a chain, for record REC that uses it
 * (getRemoteChain: "invalid looping layer", "invalid layer index N"). */
static int
broken_chain(csi_cachegraph_ctx *pc, size_t rec, size_t start)
{
    const cs_cachegraph *g = pc->g;
    bool *seen = calloc(g->nlayers, sizeof(*seen));
    size_t l = start;
    int64_t p;
    int ret;

    if (seen == NULL)
        return oom(pc);
    for (;;) {
        seen[l] = true;
        p = g->layers[l].parent;
        if (p < 0 || (uint64_t)p >= g->nlayers) {
            ret = csi_error_set(pc->err, CS_EPROTO,
                                "record %zu: layer %zu has parent %lld but %s has %zu layers "
                                "(BuildKit: invalid layer index %lld)",
                                rec, l, (long long)p, pc->holder, g->nlayers, (long long)p);
            break;
        }
        if (seen[p]) {
            ret = csi_error_set(pc->err, CS_EPROTO,
                                "record %zu: the parents of layer %zu loop back to layer %lld "
                                "(BuildKit: invalid looping layer)",
                                rec, start, (long long)p);
            break;
        }
        l = (size_t)p;
    }
    free(seen);
    return ret;
}

/* A result index into the layers: in range, and (cacheconfig) its parents form a chain. */
int
csi_cachegraph_check_layer(csi_cachegraph_ctx *pc, size_t rec, int64_t idx, const char *what)
{
    const cs_cachegraph *g = pc->g;

    if (idx < 0 || (uint64_t)idx >= g->nlayers)
        return csi_error_set(pc->err, CS_EPROTO,
                             "record %zu: %slayer index %lld but %s has %zu layers "
                             "(BuildKit: invalid layer index %lld)",
                             rec, what, (long long)idx, pc->holder, g->nlayers, (long long)idx);
    if (g->chain_len[idx] == 0)
        return broken_chain(pc, rec, (size_t)idx);
    return 0;
}

/* Walk the parents of every layer once: chain_len[i] = length of i's chain, 0 when it hits a
 * loop or an index out of range; chain_ok likewise. */
int
csi_cachegraph_chains(csi_cachegraph_ctx *pc)
{
    cs_cachegraph *g = pc->g;
    unsigned char *state; /* 0 unknown, 1 on the current walk, 2 done */
    size_t *path, i;

    g->chain_len = csi_cachegraph_calloc(g, g->nlayers, sizeof(*g->chain_len), &pc->oom);
    if (pc->oom)
        return oom(pc);
    if (g->kind == CS_CACHEGRAPH_INLINE) {
        for (i = 0; i < g->nlayers; i++) {
            g->chain_len[i] = i + 1;
            g->layers[i].chain_ok = true;
        }
        return 0;
    }
    state = calloc(g->nlayers ? g->nlayers : 1, 1);
    path = malloc((g->nlayers ? g->nlayers : 1) * sizeof(*path));
    if (state == NULL || path == NULL) {
        free(state);
        free(path);
        return oom(pc);
    }
    for (i = 0; i < g->nlayers; i++) {
        size_t np = 0, len = 0, j = i;
        bool ok;

        for (;;) {
            int64_t p;

            if (state[j] == 2) {
                len = g->chain_len[j];
                ok = len > 0;
                break;
            }
            if (state[j] == 1) {
                ok = false;
                break;
            }
            state[j] = 1;
            path[np++] = j;
            p = g->layers[j].parent;
            /* getRemoteChain follows any parent but -1 */
            if (p == -1) {
                ok = true;
                break;
            }
            if (p < 0 || (uint64_t)p >= g->nlayers) {
                ok = false;
                break;
            }
            j = (size_t)p;
        }
        while (np > 0) {
            size_t k = path[--np];

            len = ok ? len + 1 : 0;
            g->chain_len[k] = len;
            g->layers[k].chain_ok = ok;
            state[k] = 2;
        }
    }
    free(state);
    free(path);
    return 0;
}

/* BuildKit walks the records depth-first and rejects a link back into the walk ("invalid
 * looping record"). The same walk, without recursion (100k records), also gives each
 * record's step depth: 0 for a record without inputs, else one more than the shallowest
 * record of its first input. */
typedef struct frame {
    size_t rec, in, ln;
} frame;

static int
check_loops(csi_cachegraph_ctx *pc, size_t *depth)
{
    cs_cachegraph *g = pc->g;
    unsigned char *state = calloc(g->nrecords ? g->nrecords : 1, 1);
    frame *stack = malloc((g->nrecords ? g->nrecords : 1) * sizeof(*stack));
    size_t s, sp = 0;
    int ret = 0;

    if (state == NULL || stack == NULL) {
        ret = oom(pc);
        goto out;
    }
    for (s = 0; s < g->nrecords; s++) {
        if (state[s] != 0)
            continue;
        stack[sp++] = (frame){s, 0, 0};
        state[s] = 1;
        while (sp > 0) {
            frame *f = &stack[sp - 1];
            const cs_cache_record *r = &g->records[f->rec];

            if (f->in < r->ninputs) {
                const cs_cache_input *in = &r->inputs[f->in];
                size_t t;

                if (f->ln >= in->nlinks) {
                    f->in++;
                    f->ln = 0;
                    continue;
                }
                t = in->links[f->ln++].record;
                if (state[t] == 1) {
                    char path[160];
                    size_t p = sp, k, used = 0;

                    while (p > 0 && stack[p - 1].rec != t)
                        p--;
                    for (k = p - 1; k < sp && used < sizeof(path) - 24; k++)
                        used += (size_t)snprintf(path + used, sizeof(path) - used, "%zu -> ",
                                                 stack[k].rec);
                    snprintf(path + used, sizeof(path) - used, "%s%zu", k < sp ? "... -> " : "", t);
                    ret = csi_error_set(pc->err, CS_EPROTO,
                                        "record %zu: its inputs lead back to it: %s "
                                        "(BuildKit: invalid looping record)",
                                        t, path);
                    goto out;
                }
                if (state[t] == 0) {
                    state[t] = 1;
                    stack[sp++] = (frame){t, 0, 0};
                }
                continue;
            }
            if (r->ninputs > 0) {
                size_t k, d = SIZE_MAX;

                for (k = 0; k < r->inputs[0].nlinks; k++) {
                    if (depth[r->inputs[0].links[k].record] < d)
                        d = depth[r->inputs[0].links[k].record];
                }
                depth[f->rec] = d + 1;
            }
            state[f->rec] = 2;
            sp--;
        }
    }
out:
    free(state);
    free(stack);
    return ret;
}

/* Dependents, dangling records, per-layer coverage and the base estimate. */
int
csi_cachegraph_finish(csi_cachegraph_ctx *pc)
{
    cs_cachegraph *g = pc->g;
    size_t *depth = calloc(g->nrecords ? g->nrecords : 1, sizeof(*depth));
    size_t *last = calloc(g->nlayers ? g->nlayers : 1, sizeof(*last));
    size_t i, j, k;
    bool any = false;
    int ret;

    if (depth == NULL || last == NULL) {
        ret = oom(pc);
        goto out;
    }
    ret = check_loops(pc, depth);
    if (ret < 0)
        goto out;
    for (i = 0; i < g->nrecords; i++) {
        const cs_cache_record *r = &g->records[i];

        for (j = 0; j < r->ninputs; j++) {
            for (k = 0; k < r->inputs[j].nlinks; k++)
                g->records[r->inputs[j].links[k].record].ndependents++;
        }
    }
    g->base_layers = SIZE_MAX;
    for (i = 0; i < g->nrecords; i++) {
        cs_cache_record *r = &g->records[i];

        r->dangling = r->nresults == 0 && r->ndependents == 0;
        for (j = 0; j < r->nresults; j++) {
            const cs_cache_result *res = &r->results[j];
            size_t len = res->chain ? res->nchain : g->chain_len[res->layer];
            size_t base = len > depth[i] ? len - depth[i] : 0;

            /* count records, not results: two results of one record at one layer are one */
            if (last[res->layer] != i + 1) {
                last[res->layer] = i + 1;
                g->layers[res->layer].coverage++;
            }
            if (base < g->base_layers)
                g->base_layers = base;
            any = true;
        }
    }
    if (!any)
        g->base_layers = 0;
out:
    free(depth);
    free(last);
    return ret;
}

int
csi_cachegraph_new(csi_cachegraph_ctx *pc, cs_cachegraph **out, cs_cachegraph_kind kind,
                   size_t nrecords, size_t nlayers)
{
    cs_cachegraph *g = calloc(1, sizeof(*g));
    size_t i;

    if (g == NULL)
        return csi_error_oom(pc->err);
    g->kind = kind;
    pc->g = g;
    *out = g;
    g->records = csi_cachegraph_calloc(g, nrecords, sizeof(*g->records), &pc->oom);
    g->layers = csi_cachegraph_calloc(g, nlayers, sizeof(*g->layers), &pc->oom);
    if (pc->oom)
        return oom(pc);
    g->nrecords = nrecords;
    g->nlayers = nlayers;
    for (i = 0; i < nlayers; i++) {
        g->layers[i].size = -1;
        g->layers[i].parent = (int64_t)i - 1;
    }
    return 0;
}

/* ---- public --------------------------------------------------------------------------------- */

cs_cachegraph_kind
cs_cachegraph_kind_of(const cs_cachegraph *g)
{
    return g->kind;
}

size_t
cs_cachegraph_nrecords(const cs_cachegraph *g)
{
    return g->nrecords;
}

size_t
cs_cachegraph_nlayers(const cs_cachegraph *g)
{
    return g->nlayers;
}

const cs_cache_record *
cs_cachegraph_record(const cs_cachegraph *g, size_t i)
{
    return i < g->nrecords ? &g->records[i] : NULL;
}

const cs_cache_layer *
cs_cachegraph_layer(const cs_cachegraph *g, size_t i)
{
    return i < g->nlayers ? &g->layers[i] : NULL;
}

int
cs_cachegraph_layer_coverage(const cs_cachegraph *g, size_t i)
{
    if (i >= g->nlayers)
        return CS_EINVAL;
    /* at most CS_CACHEGRAPH_MAX_RECORDS, so it fits */
    return (int)g->layers[i].coverage;
}

size_t
cs_cachegraph_first_uncovered(const cs_cachegraph *g, size_t from)
{
    size_t i;

    for (i = from; i < g->nlayers; i++) {
        if (g->layers[i].coverage == 0)
            return i;
    }
    return g->nlayers;
}

size_t
cs_cachegraph_base_layers(const cs_cachegraph *g)
{
    return g->base_layers;
}

size_t
cs_cachegraph_chain(const cs_cachegraph *g, size_t layer, size_t *out, size_t max)
{
    size_t len, pos, l;

    if (layer >= g->nlayers || g->chain_len[layer] == 0)
        return 0;
    len = g->chain_len[layer];
    /* chain_len says the parents are in range and end at -1 after len - 1 steps */
    for (pos = len, l = layer; pos > 0; pos--) {
        if (pos - 1 < max)
            out[pos - 1] = l;
        l = (size_t)g->layers[l].parent;
    }
    return len;
}

static int
set_string(cs_cachegraph *g, const char **field, const char *value, const char *what,
           cs_error **err)
{
    size_t len;
    bool oom = false;

    if (value == NULL)
        return 0;
    len = strlen(value);
    if (len > CS_CACHEGRAPH_MAX_STRING)
        return csi_error_set(err, CS_ELIMIT, "%s is %zu bytes, over the limit of %u", what, len,
                             CS_CACHEGRAPH_MAX_STRING);
    /* the old copy stays in the arena until the graph is freed */
    *field = csi_cachegraph_strndup(g, value, len, &oom);
    return oom ? csi_error_oom(err) : 0;
}

int
cs_cachegraph_set_layer(cs_cachegraph *g, size_t i, const char *blob, const char *diff_id,
                        cs_error **err)
{
    int ret;

    if (i >= g->nlayers)
        return csi_error_set(err, CS_EINVAL, "layer %zu out of range (the graph has %zu layers)", i,
                             g->nlayers);
    ret = set_string(g, &g->layers[i].blob, blob, "blob digest", err);
    if (ret == 0)
        ret = set_string(g, &g->layers[i].diff_id, diff_id, "diff_id", err);
    return ret;
}

int
cs_cachegraph_apply_config(cs_cachegraph *g, const cs_image_config *cfg, cs_error **err)
{
    size_t i, l = 0;
    int ret = 0;

    if (g->kind != CS_CACHEGRAPH_INLINE)
        return csi_error_set(err, CS_EINVAL, "only an inline cache has the image's layers");
    if (cfg->ndiff_ids != g->nlayers)
        return csi_error_set(err, CS_EPROTO,
                             "the image config lists %zu diff_ids for %zu manifest layers: "
                             "BuildKit ignores this image's inline cache (invalid image with "
                             "mismatching manifest and config)",
                             cfg->ndiff_ids, g->nlayers);
    for (i = 0; ret == 0 && i < g->nlayers; i++)
        ret = set_string(g, &g->layers[i].diff_id, cfg->diff_ids[i], "diff_id", err);
    /* parseCreatedLayerInfo: the n-th history entry that made a layer describes layer n */
    for (i = 0; ret == 0 && i < cfg->nhistory && l < g->nlayers; i++) {
        const cs_history *h = &cfg->history[i];

        if (h->empty_layer)
            continue;
        ret = set_string(g, &g->layers[l].created_at, h->created, "history created", err);
        if (ret == 0)
            ret =
                set_string(g, &g->layers[l].description, h->created_by, "history created_by", err);
        l++;
    }
    return ret;
}
