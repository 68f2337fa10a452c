/* cachesync: image sources for push. A SOURCE (an image in the local Docker daemon, an OCI
 * image layout, a `docker save` archive) becomes a manifest and the blobs it names, each in a
 * file that holds exactly its bytes, ready to upload.
 *
 * The config is kept byte for byte (it is the image ID and carries BuildKit's inline cache).
 * Uncompressed layers (docker save exports them so) are compressed into the store, and the
 * store remembers which blob each layer became (<store>/layers.json): a re-push compresses
 * nothing and yields the very digests the registry already holds. */
#ifndef CACHESYNC_SOURCE_H
#define CACHESYNC_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cachesync/digest.h>
#include <cachesync/error.h>
#include <cachesync/manifest.h>
#include <cachesync/store.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CS_SOURCE_DOCKER = 1, /* an image the Docker daemon holds */
    CS_SOURCE_OCI,        /* an OCI image layout directory */
    CS_SOURCE_ARCHIVE,    /* a docker-archive tar (`docker save`), maybe gzip/zstd'd; a file
                           * or a pipe */
} cs_source_kind;

typedef struct cs_source {
    cs_source_kind kind;
    char *name; /* docker: the image reference or ID, as the daemon knows it */
    char *path; /* oci: DIR, archive: FILE */
    char *tag;  /* oci: the ref name in index.json, or NULL when the layout holds one image */
} cs_source;

/** Parse "docker:IMAGE", "oci:DIR[:TAG]" (the last ':' splits off a tag when what follows
 * has no '/'), "archive:FILE", or a bare IMAGE, which means docker:IMAGE. */
int cs_source_parse(cs_source *out, const char *spec, cs_error **err);
void cs_source_dispose(cs_source *s);

typedef struct cs_source_blob {
    char *digest; /* "sha256:<hex>" */
    int64_t size;
    char *media_type;
    char *path; /* a file holding exactly these bytes: in the store, or in the OCI layout.
                 * NULL for a non-distributable layer an OCI layout does not hold: never
                 * upload it (the registry is expected to know it). */
} cs_source_blob;

typedef struct cs_source_image {
    char *manifest; /* the exact bytes to PUT (NUL-terminated for convenience) */
    size_t manifest_len;
    char *manifest_media_type;
    char manifest_digest[CS_DIGEST_STRLEN];
    cs_source_blob config;
    cs_source_blob *layers; /* base first */
    size_t nlayers;
    size_t layers_compressed; /* layers this run compressed (or recompressed) */
    size_t layers_reused;     /* layers whose blob layers.json named and the store held;
                               * a layer the source already held in the wanted compression
                               * counts in neither */
    bool exported; /* a docker-archive stream was read (the daemon's export, or the archive);
                    * false when nothing had to be: the docker fast path, or an OCI layout */
} cs_source_image;

/* A blob still being written (library-internal: src/lib/growing.h). */
typedef struct cs_growing_blob cs_growing_blob;

typedef struct cs_source_options {
    const char *docker_host;     /* NULL: $DOCKER_HOST, else the default socket */
    const char *compression;     /* "gzip" (NULL: the default) or "zstd": docker and archive
                                  * sources produce a Docker schema2 manifest with gzip layers, or
                                  * an OCI manifest with zstd layers; OCI layouts push as they are */
    int level;                   /* compression level; 0: the format's default */
    const cs_platform *platform; /* which image of an OCI index; NULL: the host's */
    /* Layers compressed at once, by threads, while the export goes on; <= 0: the number of
     * online CPUs, at most 4. */
    int jobs;
    /* WHAT is "export" (DONE bytes of the daemon's stream, TOTAL 0: unknown), "read" (bytes
     * of an archive file; TOTAL 0 for a pipe) or "compress sha256:<12 hex>" (bytes of one layer;
     * several layers' reports interleave). Called at most every few MiB, and once at each end;
     * always from the thread that called cs_source_load, never from a compression thread. */
    void (*progress)(void *payload, const char *what, uint64_t done, uint64_t total);
    void *progress_payload;
    /* A layer blob made by this load (compressed here, or exported compressed) is in the
     * store: DIGEST of SIZE bytes at PATH. From the thread that called cs_source_load, as soon
     * as each is ready, so that a push can upload it while the rest of the export goes on. */
    void (*blob_ready)(void *payload, const char *digest, int64_t size, const char *path);
    void *blob_ready_payload;
    /* A layer compressed as the export streams it (one that looks new) has grown past an
     * upload chunk: G follows its blob as it is written, so that a push can upload it before
     * its compression ends; blob_ready still comes for it once it is complete. The callee
     * takes a reference of its own (library-internal: src/lib/growing.h). From the thread
     * that called cs_source_load. NULL: not wanted. */
    void (*blob_growing)(void *payload, cs_growing_blob *g);
    void *blob_growing_payload;
} cs_source_options;

/** Turn SRC into an image ready to push. Blobs that need writing (the config and compressed
 * layers of docker and archive sources) go into STORE. OPTS may be NULL.
 *
 * docker: inspects the image; when the store already holds its config and layers.json names
 * a stored blob for every layer, nothing is exported (exported false). Otherwise the daemon's
 * export (GET /images/{name}/get) streams through a tar reader that writes each layer to a
 * temp file, which OPTS->jobs threads compress meanwhile (at most twice that many layers wait
 * on disk besides the one being written; the export pauses until one is taken).
 * archive: the same over the file's bytes. Either way the layers found must be the config's
 * rootfs.diff_ids, in order (CS_EDIGEST otherwise); an export that fails midway (a truncated
 * tar, the daemon's JSON error appended to it) is CS_EPROTO naming the daemon.
 * oci: reads DIR/index.json, picks TAG's manifest (through an index, the platform's), checks
 * digests and sizes; the blobs stay in DIR and the manifest's bytes are pushed as they are. */
int cs_source_load(cs_source_image **out, const cs_source *src, cs_store *store,
                   const cs_source_options *opts, cs_error **err);
void cs_source_image_free(cs_source_image *img);

#ifdef __cplusplus
}
#endif
#endif
