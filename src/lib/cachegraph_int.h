/* Internal: what the cache graph's model (cachegraph.c) and its JSON decoding
 * (cachegraph_parse.c) share. */
#ifndef CS_LIB_CACHEGRAPH_INT_H
#define CS_LIB_CACHEGRAPH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cachesync/cachegraph.h>
#include <cachesync/error.h>

struct csi_cachegraph_chunk;

struct cs_cachegraph {
    cs_cachegraph_kind kind;
    cs_cache_record *records;
    size_t nrecords;
    cs_cache_layer *layers;
    size_t nlayers;
    size_t *chain_len; /* per layer: length of its parent chain, 0 when broken */
    size_t base_layers;
    struct csi_cachegraph_chunk *arena;
};

/* A decoding in progress: the graph it fills, and where its errors go. */
typedef struct csi_cachegraph_ctx {
    cs_cachegraph *g;
    const char *holder; /* whose layers results index: "the image", "the cache config" */
    bool oom;
    cs_error **err;
} csi_cachegraph_ctx;

/* Zeroed memory owned by G (freed with it) for COUNT elements of SIZE bytes; NULL when that
 * is 0 bytes or out of memory (*oom set). */
void *csi_cachegraph_calloc(cs_cachegraph *g, size_t count, size_t size, bool *oom);
/* The N bytes at S and a NUL, owned by G; NULL when out of memory (*oom set). */
char *csi_cachegraph_strndup(cs_cachegraph *g, const char *s, size_t n, bool *oom);

/* A graph of KIND with NRECORDS zeroed records and NLAYERS layers (size -1, each the parent
 * of the next) into *OUT and PC->g. On failure *OUT may already hold it: the caller frees. */
int csi_cachegraph_new(csi_cachegraph_ctx *pc, cs_cachegraph **out, cs_cachegraph_kind kind,
                       size_t nrecords, size_t nlayers);

/* Once the layers are known: each layer's chain length and chain_ok. */
int csi_cachegraph_chains(csi_cachegraph_ctx *pc);

/* Check layer index IDX of a result of record REC against the layers and their chains
 * (csi_cachegraph_chains done); WHAT prefixes "layer index" in the error. */
int csi_cachegraph_check_layer(csi_cachegraph_ctx *pc, size_t rec, int64_t idx, const char *what);

/* Once every record is decoded: reject looping records, then count dependents and coverage,
 * mark dangling records and estimate the base layers. */
int csi_cachegraph_finish(csi_cachegraph_ctx *pc);

#endif
