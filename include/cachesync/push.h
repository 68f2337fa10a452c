/* cachesync: push a local image (with its inline cache) to a registry, uploading only what
 * the registry lacks: each blob is checked with HEAD first, mounted from another repository
 * of the same registry when the store remembers one that has it, and uploaded otherwise.
 * The config goes up byte for byte, so moby.buildkit.cache.v0 survives; the manifest goes
 * last, under REF's tag and every extra tag. */
#ifndef CACHESYNC_PUSH_H
#define CACHESYNC_PUSH_H

#include <stddef.h>
#include <stdint.h>
#include <cachesync/digest.h>
#include <cachesync/error.h>
#include <cachesync/manifest.h>
#include <cachesync/registry.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CS_PUSH_SOURCE,   /* message: the image read from the source */
    CS_PUSH_BLOB,     /* digest, total; message: "uploaded", "mounted from X", "exists" */
    CS_PUSH_MANIFEST, /* message: the tag pushed */
    CS_PUSH_NOTE,
    CS_PUSH_STEP,     /* message: "export", "read", "compress sha256:<12 hex>" or
                       * "upload sha256:<64 hex>"; done, total bytes (total 0: unknown) */
} cs_push_event;

typedef struct cs_push_progress {
    cs_push_event event;
    const char *digest;
    uint64_t total;
    const char *message;
    uint64_t done; /* CS_PUSH_STEP */
} cs_push_progress;

typedef void (*cs_push_progress_fn)(const cs_push_progress *p, void *payload);

typedef struct cs_push_options {
    const char *source; /* docker:IMAGE (default without a prefix), oci:DIR[:TAG], archive:FILE */
    const char *ref;
    const char *const *tags; /* more tags for the same manifest */
    size_t ntags;
    const char *compression; /* "gzip" (default) or "zstd" */
    const char *store_dir;
    const cs_platform *platform;
    int jobs;
    cs_registry_options registry;
    const char *docker_host;
    cs_push_progress_fn progress;
    void *progress_payload;
} cs_push_options;

typedef struct cs_push_result {
    char *ref;
    char manifest_digest[CS_DIGEST_STRLEN];
    char *media_type;
    size_t blobs_total;
    size_t blobs_uploaded;
    size_t blobs_mounted;
    size_t blobs_present; /* the registry had them */
    uint64_t bytes_total;
    uint64_t bytes_uploaded; /* body bytes sent over the network, resends included */
    size_t layers_compressed; /* compressed in this run */
    size_t layers_reused;     /* compressed blobs remembered from an earlier push */
    char **tags;              /* the references the manifest was pushed as */
    size_t ntags;
    double seconds;
} cs_push_result;

int cs_push(cs_push_result **out, const cs_push_options *opts, cs_error **err);
void cs_push_result_free(cs_push_result *r);

#ifdef __cplusplus
}
#endif
#endif
