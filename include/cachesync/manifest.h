/* cachesync: OCI and Docker manifests, indexes and image configs, parsed from exact bytes.
 * Pure functions: no I/O. Parsing never rewrites the bytes; digests are always over what
 * the registry sent. */
#ifndef CACHESYNC_MANIFEST_H
#define CACHESYNC_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cachesync/buf.h>
#include <cachesync/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CS_MEDIA_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define CS_MEDIA_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define CS_MEDIA_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define CS_MEDIA_DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define CS_MEDIA_DOCKER_LAYER_ZSTD "application/vnd.docker.image.rootfs.diff.tar.zstd"
#define CS_MEDIA_DOCKER_LAYER_TAR "application/vnd.docker.image.rootfs.diff.tar"
#define CS_MEDIA_DOCKER_SCHEMA1 "application/vnd.docker.distribution.manifest.v1+prettyjws"
#define CS_MEDIA_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define CS_MEDIA_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define CS_MEDIA_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define CS_MEDIA_OCI_LAYER_TAR "application/vnd.oci.image.layer.v1.tar"
#define CS_MEDIA_OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define CS_MEDIA_OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
/* the config of a BuildKit registry cache export (--cache-to type=registry) */
#define CS_MEDIA_BUILDKIT_CACHECONFIG "application/vnd.buildkit.cacheconfig.v0"

/* Every manifest type we read, for the Accept header of GET and HEAD. */
#define CS_MANIFEST_ACCEPT                                                                         \
    CS_MEDIA_OCI_INDEX ", " CS_MEDIA_DOCKER_LIST ", " CS_MEDIA_OCI_MANIFEST                        \
                       ", " CS_MEDIA_DOCKER_MANIFEST

/* Registries serve manifests of at most 4 MiB (distribution's maxManifestBodySize); a
 * little headroom for others. */
#define CS_MANIFEST_MAX (8u * 1024 * 1024)
/* Image configs: containers/image caps at 4 MiB; inline cache metadata makes them large. */
#define CS_CONFIG_MAX (16u * 1024 * 1024)

typedef struct cs_platform {
    char *os;           /* "linux" */
    char *architecture; /* "amd64" */
    char *variant;      /* "v8" or NULL */
    char *os_version;   /* NULL unless given */
} cs_platform;

typedef struct cs_descriptor {
    char *media_type;
    char *digest; /* validated: "sha256:<64 hex>" */
    int64_t size;
    cs_platform *platform; /* index entries only; NULL when absent */
    bool attestation;      /* a BuildKit attestation entry (unknown/unknown) */
} cs_descriptor;

typedef enum { CS_MANIFEST_IMAGE = 1, CS_MANIFEST_INDEX = 2 } cs_manifest_kind;

typedef struct cs_manifest {
    cs_manifest_kind kind;
    char *media_type;      /* the effective media type */
    cs_descriptor config;  /* images */
    cs_descriptor *layers; /* images, base first */
    size_t nlayers;
    cs_descriptor *manifests; /* indexes */
    size_t nmanifests;
} cs_manifest;

/** Parse a manifest or index. CONTENT_TYPE (the HTTP header, may be NULL) is used when the
 * document has no mediaType; a mediaType that contradicts the header is an error.
 * Malformed documents are CS_EPROTO; schema 1 and unknown types are CS_EUNSUPPORTED. */
int cs_manifest_parse(cs_manifest **out, const char *data, size_t len, const char *content_type,
                      cs_error **err);
void cs_manifest_free(cs_manifest *m);

/** Rewrite a Docker schema2 manifest as an OCI image manifest, as `skopeo copy` does for an
 * OCI destination: the media types of the manifest, config and layers become their OCI
 * equivalents (image-spec media-types.md: "interchangeable and fully compatible"); digests and
 * sizes stay, so the config (the image ID, the inline cache) and the layers are the same
 * blobs. An OCI manifest is copied unchanged. OUT gets the new bytes. Pure. */
int cs_manifest_to_oci(cs_buf *out, const char *data, size_t len, cs_error **err);

/** True for the media types of manifests and indexes we read. */
bool cs_media_type_is_manifest(const char *media_type);
bool cs_media_type_is_index(const char *media_type);

/* ---- platforms ------------------------------------------------------------------------- */

/** Parse "os/arch[/variant]" and normalise it as containerd does (x86_64 -> amd64,
 * aarch64 -> arm64, arm -> arm/v7 ...). */
int cs_platform_parse(cs_platform *out, const char *str, cs_error **err);
/** The platform this program runs on (linux/<normalised uname arch>). */
int cs_platform_host(cs_platform *out, cs_error **err);
/** "linux/arm64/v8"; malloc'd, NULL when out of memory. */
char *cs_platform_to_string(const cs_platform *p);
void cs_platform_dispose(cs_platform *p);
/** Does CANDIDATE (from an index, normalised on the fly) satisfy WANT? */
bool cs_platform_matches(const cs_platform *want, const cs_platform *candidate);

/** Pick the first index entry for WANT, skipping attestations and entries that are not
 * image manifests or indexes. CS_ENOTFOUND lists the platforms the index offers.
 * @param[out] out borrowed from INDEX */
int cs_manifest_select(const cs_descriptor **out, const cs_manifest *index, const cs_platform *want,
                       cs_error **err);

/* ---- image config --------------------------------------------------------------------- */

typedef struct cs_history {
    char *created_by; /* NULL when absent */
    char *created;
    bool empty_layer;
} cs_history;

typedef struct cs_image_config {
    cs_platform platform; /* os/architecture/variant of the image */
    char **diff_ids;      /* rootfs.diff_ids, validated digests */
    size_t ndiff_ids;
    cs_history *history;
    size_t nhistory;
    bool has_inline_cache;     /* "moby.buildkit.cache.v0" present */
    size_t inline_cache_bytes; /* length of its (base64) value */
    char *inline_cache;        /* that value, NUL-terminated, or NULL */
} cs_image_config;

/** Parse an image config (OCI or Docker). */
int cs_image_config_parse(cs_image_config **out, const char *data, size_t len, cs_error **err);
void cs_image_config_free(cs_image_config *c);

#ifdef __cplusplus
}
#endif
#endif
