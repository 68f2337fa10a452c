/* cachesync: resolve a reference in a registry to one image: the document REF names (a
 * manifest or an index), the platform's image manifest, and its config; all bytes verified. */
#ifndef CACHESYNC_IMAGE_H
#define CACHESYNC_IMAGE_H

#include <cachesync/buf.h>
#include <cachesync/digest.h>
#include <cachesync/manifest.h>
#include <cachesync/reference.h>
#include <cachesync/registry.h>
#include <cachesync/source.h>
#include <cachesync/store.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cs_image {
    /* what the reference names, byte-exact */
    cs_buf top;
    char *top_media_type;
    char top_digest[CS_DIGEST_STRLEN];
    /* the image manifest for the platform (equal to top when REF names a manifest) */
    cs_buf manifest;
    char manifest_digest[CS_DIGEST_STRLEN];
    cs_manifest *parsed;
    bool from_index; /* top was an index and a platform was selected */
    /* the image config, byte-exact (empty when not fetched) */
    cs_buf config;
    cs_image_config *config_parsed; /* NULL for a cache export */
    bool cache_export; /* a BuildKit registry cache: the config is a cacheconfig.v0 blob */
} cs_image;

enum { CS_IMAGE_NO_CONFIG = 1 << 0 };

/** Resolve REF on R for platform WANT (NULL: the host's). With STORE (may be NULL), documents
 * addressed by digest (child manifests, the config) are read from it when present there
 * (re-verified), so a repeated resolve asks the registry only for what a tag names. */
int cs_image_resolve(cs_image **out, cs_registry *r, const cs_reference *ref,
                     const cs_platform *want, cs_store *store, unsigned flags, cs_error **err);
void cs_image_free(cs_image *img);

/** The image a local source holds (after cs_source_load), in the same shape as a resolved
 * registry image: its manifest and its config, read from the source's file and re-verified. */
int cs_image_from_source(cs_image **out, const cs_source_image *src, cs_error **err);

#ifdef __cplusplus
}
#endif
#endif
