/* cachesync: BuildKit cache metadata as one graph, for `cachesync audit`.
 *
 * Two sources decode into the same model:
 *  - inline cache: the image config's "moby.buildkit.cache.v0", base64 of a JSON array of
 *    cache records whose results name the image's own layers ("layer": k = manifest layers
 *    0..k);
 *  - registry/local cache: the "application/vnd.buildkit.cacheconfig.v0" blob, a JSON object
 *    {layers:[{blob,parent,annotations}], records:[...]} whose results name its layer list.
 *
 * A record is one cache key (an op output). Its inputs are the op's inputs; each input is a
 * group of links, each link naming another record (and a selector when BuildKit used a
 * content checksum). Its results name the layer chain the op produced. Everything a parse
 * returns was validated as BuildKit's importer would (cache/remotecache/v1/parse.go
 * parseRecord, getRemoteChain): any index in a view is in range, and the links form no loop.
 *
 * Pure functions: no I/O. Strings in views are as written in the metadata (digests and
 * selectors are opaque solver keys): escape them before printing or rendering. */
#ifndef CACHESYNC_CACHEGRAPH_H
#define CACHESYNC_CACHEGRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cachesync/error.h>
#include <cachesync/manifest.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CS_MEDIA_BUILDKIT_CACHECONFIG "application/vnd.buildkit.cacheconfig.v0"
/* The image config key of the inline cache. */
#define CS_INLINE_CACHE_KEY "moby.buildkit.cache.v0"

/* Caps on untrusted metadata. Real caches are far below them: BuildKit refuses cache
 * configs over 1 MiB on import, and Docker images hold at most 127 layers. */
#define CS_CACHEGRAPH_MAX_BYTES (16u * 1024 * 1024) /* decoded JSON */
#define CS_CACHEGRAPH_MAX_RECORDS 100000u
#define CS_CACHEGRAPH_MAX_LAYERS 100000u
#define CS_CACHEGRAPH_MAX_INPUTS 256u  /* input groups of one record */
#define CS_CACHEGRAPH_MAX_LINKS 1024u  /* links in one input group */
#define CS_CACHEGRAPH_MAX_RESULTS 256u /* "layers" plus "chains" results of one record */
#define CS_CACHEGRAPH_MAX_CHAIN 4096u  /* layer indexes in one "chains" result */
#define CS_CACHEGRAPH_MAX_STRING 4096u /* bytes of one digest, selector, time, blob */

typedef enum {
    CS_CACHEGRAPH_INLINE = 1,     /* from moby.buildkit.cache.v0; layers = the manifest's */
    CS_CACHEGRAPH_CACHECONFIG = 2 /* from a cacheconfig.v0 blob; layers = its own list */
} cs_cachegraph_kind;

typedef struct cs_cachegraph cs_cachegraph;

typedef struct cs_cache_link {
    size_t record;        /* the record this input came from; < nrecords */
    const char *selector; /* NULL when absent */
} cs_cache_link;

typedef struct cs_cache_input {
    size_t nlinks; /* >= 1: BuildKit rejects empty input groups */
    const cs_cache_link *links;
} cs_cache_input;

typedef struct cs_cache_result {
    /* The layer the result's chain ends at; < nlayers. */
    size_t layer;
    /* NULL for a "layers" result, whose chain is LAYER and its parents (inline: layers
     * 0..LAYER; see cs_cachegraph_chain). For a "chains" result (BuildKit v0.10+, COPY
     * --link, merge): its NCHAIN layer indexes, base first, LAYER being the last. */
    const size_t *chain;
    size_t nchain;
    const char *created_at; /* RFC 3339 as written; NULL when absent */
} cs_cache_result;

typedef struct cs_cache_record {
    const char *digest; /* the cache key as written; "" when absent */
    size_t nresults;
    const cs_cache_result *results;
    size_t ninputs; /* one per op input, in order */
    const cs_cache_input *inputs;
    size_t ndependents; /* links from other records to this one */
    bool dangling;      /* no result and no dependent: it restores nothing */
} cs_cache_record;

typedef struct cs_cache_layer {
    /* cacheconfig: "blob" as written. Inline: NULL until the caller says
     * (cs_cachegraph_set_layer). */
    const char *blob;
    /* cacheconfig: annotations.diffID (only gha/s3/azblob write annotations). Inline: the
     * config's rootfs.diff_ids[i] (cs_cachegraph_apply_config, cs_cachegraph_set_layer). */
    const char *diff_id;
    const char *media_type; /* annotations.mediaType; NULL when absent */
    int64_t size;           /* annotations.size; -1 when absent */
    /* annotations.createdAt, or for inline the config history's "created" */
    const char *created_at;
    /* Inline only: the config history's "created_by" for this layer: the Dockerfile step
     * (BuildKit's "buildkit/description" annotation). NULL when unknown. */
    const char *description;
    int64_t parent; /* -1: none; inline: i - 1; cacheconfig: as written (missing = 0) */
    /* The parents end at a layer with parent -1 with no loop and no index out of range.
     * Always true for a layer some result ends at (the parse checked); for other layers of
     * a cacheconfig it may be false, as BuildKit only checks chains that results use. */
    bool chain_ok;
    size_t coverage; /* records with a result whose chain ends at this layer */
} cs_cache_layer;

/** Decode an inline cache. DATA is the value of "moby.buildkit.cache.v0" as the config
 * holds it: base64 (standard alphabet, padded; CR and LF ignored, as Go's decoder does),
 * optionally with its JSON quotes, or already decoded (JSON text starting with '[').
 * NLAYERS is the number of layers of the image manifest (= rootfs.diff_ids). JSON keys match
 * case-insensitively as Go's encoding/json does. A record that breaks a rule of BuildKit's
 * importer (which then drops the whole cache) is CS_EPROTO with a message naming the record;
 * over a cap is CS_ELIMIT. */
int cs_cachegraph_parse_inline(cs_cachegraph **out, const char *data, size_t len, size_t nlayers,
                               cs_error **err);

/** Decode a registry or local cache config blob (media type
 * application/vnd.buildkit.cacheconfig.v0). Errors as for cs_cachegraph_parse_inline. */
int cs_cachegraph_parse_cacheconfig(cs_cachegraph **out, const char *json, size_t len,
                                    cs_error **err);

void cs_cachegraph_free(cs_cachegraph *g);

cs_cachegraph_kind cs_cachegraph_kind_of(const cs_cachegraph *g);
size_t cs_cachegraph_nrecords(const cs_cachegraph *g);
size_t cs_cachegraph_nlayers(const cs_cachegraph *g);

/** Record I, valid until the graph is freed; NULL when I is out of range. */
const cs_cache_record *cs_cachegraph_record(const cs_cachegraph *g, size_t i);

/** Layer I, valid until the graph is freed or the layer is set again; NULL when out of
 * range. */
const cs_cache_layer *cs_cachegraph_layer(const cs_cachegraph *g, size_t i);

/** How many records have a result whose chain ends at layer I (0: uncovered: no cached step
 * restores it by itself); CS_EINVAL when I is out of range. */
int cs_cachegraph_layer_coverage(const cs_cachegraph *g, size_t i);

/** The first layer at or above FROM that no result ends at; nlayers when there is none. */
size_t cs_cachegraph_first_uncovered(const cs_cachegraph *g, size_t from);

/** An estimate of how many layers lie beneath the build's first step (those of its FROM
 * image, which no record is expected to cover): over every result, the length of its chain
 * less the number of steps under its record (following each record's first input down to a
 * record without inputs, the FROM). Inline: layers 0..base-1 are the base image's.
 * 0 when no record has a result. The records of a build whose cached steps lost their
 * results (moby/buildkit#1981) still count their steps, so the estimate holds there. */
size_t cs_cachegraph_base_layers(const cs_cachegraph *g);

/** The chain of layer indexes ending at LAYER, base first: inline 0..LAYER, cacheconfig
 * LAYER's parents. Writes at most MAX indexes to OUT (which may be NULL when MAX is 0) and
 * returns the chain's full length; 0 when LAYER is out of range or its chain is broken. */
size_t cs_cachegraph_chain(const cs_cachegraph *g, size_t layer, size_t *out, size_t max);

/** Inline graphs: give layer I its blob digest (the manifest's layers[I].digest) and diff_id.
 * A NULL argument leaves that field as it is. CS_EINVAL when I is out of range. */
int cs_cachegraph_set_layer(cs_cachegraph *g, size_t i, const char *blob, const char *diff_id,
                            cs_error **err);

/** Inline graphs: pair the image config with the layers as BuildKit's importer does
 * (cache/remotecache/import.go importInlineCache, parseCreatedLayerInfo): diff_id from
 * rootfs.diff_ids[i]; created_at and description from the i-th history entry that is not
 * an empty_layer. A config whose diff_ids do not number the manifest's layers is CS_EPROTO:
 * BuildKit then ignores the image's inline cache entirely. */
int cs_cachegraph_apply_config(cs_cachegraph *g, const cs_image_config *cfg, cs_error **err);

#ifdef __cplusplus
}
#endif
#endif
