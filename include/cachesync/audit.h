/* cachesync: what an image's BuildKit cache covers, and why a build would miss. */
#ifndef CACHESYNC_AUDIT_H
#define CACHESYNC_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cachesync/cachegraph.h>
#include <cachesync/error.h>
#include <cachesync/image.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cs_audit_layer {
    size_t index;
    const char *digest;     /* borrowed from the image */
    int64_t size;           /* compressed */
    const char *media_type;
    const char *diff_id;    /* NULL when the config lacks it */
    const char *step;       /* the history entry that made it, NULL when unknown */
    bool covered;           /* a cache record restores the chain ending here */
} cs_audit_layer;

typedef struct cs_audit {
    cs_audit_layer *layers;
    size_t nlayers;
    bool has_cache;
    size_t records;
    size_t metadata_bytes;
    size_t layers_covered;
    uint64_t bytes_covered;
    size_t base_layers;     /* layers that came with FROM (no record is expected there) */
    bool first_uncovered_set;
    size_t first_uncovered; /* first layer past the base that no record covers */
    char **warnings;        /* one line each */
    size_t nwarnings;
    char *fix;              /* what to do about the first warning that has a fix, or NULL */
    cs_cachegraph *graph;   /* NULL without inline cache */
} cs_audit;

/** Analyse IMG (its manifest and parsed config must be present). REF names it in fixes.
 * Malformed cache metadata is a warning, not a failure (BuildKit would ignore it). */
int cs_audit_image(cs_audit **out, const cs_image *img, const char *ref, cs_error **err);
void cs_audit_free(cs_audit *a);

/** Warn when the image's platform is not WANT (the platform a build here would use): its
 * layers cannot serve as cache for that build. */
int cs_audit_check_platform(cs_audit *a, const cs_image *img, const cs_platform *want,
                            cs_error **err);

/* What a build of OTHER could reuse on a machine seeded with BASE. */
typedef struct cs_audit_compare {
    size_t shared_by_digest;  /* layers of OTHER whose blob BASE also has */
    size_t shared_by_diff_id; /* layers of OTHER whose content BASE also has */
    size_t common_prefix;     /* leading layers with the same diff_id chain */
    bool diverges;            /* OTHER has layers past the common prefix */
    size_t first_divergence;  /* OTHER's layer index where they part */
    const char *divergence_step; /* OTHER's step there (borrowed), or NULL */
    size_t reusable;          /* leading layers of OTHER that BASE's cache restores */
} cs_audit_compare;

/** Compare two audited images: BASE (e.g. main) and OTHER (e.g. a branch). */
void cs_audit_against(cs_audit_compare *out, const cs_audit *base, const cs_audit *other);

#ifdef __cplusplus
}
#endif
#endif
