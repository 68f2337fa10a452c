/* cachesync: a client of one registry host speaking the OCI distribution API.
 * Scheme: https with verification; plain http only for loopback hosts and hosts named as
 * insecure (as dockerd does), decided once by probing GET /v2/. Authentication follows the
 * registry's challenge with the Docker client's credentials. Every manifest and blob read
 * is hashed and checked; the registry's digest header is never trusted. */
#ifndef CACHESYNC_REGISTRY_H
#define CACHESYNC_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cachesync/buf.h>
#include <cachesync/digest.h>
#include <cachesync/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cs_registry_options {
    const char *docker_config_dir;          /* NULL: $DOCKER_CONFIG, else ~/.docker */
    const char *ca_file;                    /* extra CA bundle (--ca-cert), or NULL */
    /* Docker's per-registry TLS directory (dockerd's certs.d rule): NULL means
     * $CACHESYNC_CERTS_D when set and non-empty (so tests never touch the machine's /etc),
     * else /etc/docker/certs.d. In CERTS_DIR/DOMAIN/ (DOMAIN as in the reference,
     * "host[:port]"), every *.crt is an extra CA and a *.cert with its *.key (same base name)
     * is the client certificate; a .cert without its .key, or a .key without its .cert, is
     * an error. Extra CAs (these and ca_file) are added to the system's CAs, never replace
     * them. */
    const char *certs_dir;
    const char *const *insecure_registries; /* NULL-terminated host[:port] list, or NULL */
} cs_registry_options;

typedef struct cs_registry cs_registry;

/** A client for DOMAIN, a reference's domain ("docker.io", "127.0.0.1:5000"). No I/O yet. */
int cs_registry_new(cs_registry **out, const char *domain, const cs_registry_options *opts,
                    cs_error **err);
void cs_registry_free(cs_registry *r);

/** The base URL in use once a request was made ("https://host:port"), else NULL. */
const char *cs_registry_base_url(const cs_registry *r);

/** GET /v2/: reachable, speaks the API, and which scheme. */
int cs_registry_ping(cs_registry *r, cs_error **err);

/** GET a manifest or index by tag or digest. OUT receives the exact bytes (capped at
 * CS_MANIFEST_MAX), MEDIA_TYPE_OUT the Content-Type (malloc'd), DIGEST_OUT the sha256 of the
 * bytes. When TARGET is a digest the bytes must hash to it (CS_EDIGEST otherwise). */
int cs_registry_get_manifest(cs_buf *out, char **media_type_out, char digest_out[CS_DIGEST_STRLEN],
                             cs_registry *r, const char *repo, const char *target, cs_error **err);

/** HEAD a manifest: its digest (from Docker-Content-Digest), media type and size.
 * CS_ENOTFOUND when absent. */
int cs_registry_head_manifest(char **media_type_out, char digest_out[CS_DIGEST_STRLEN],
                              int64_t *size_out, cs_registry *r, const char *repo,
                              const char *target, cs_error **err);

/** GET a small blob (a config) into memory, checking SIZE (when >= 0) and DIGEST; MAX caps
 * it. */
int cs_registry_get_blob(cs_buf *out, cs_registry *r, const char *repo, const char *digest,
                         int64_t size, size_t max, cs_error **err);

/* ---- blobs, many at once ----------------------------------------------------------------- */

/** Where a fetched blob's bytes go. The fetcher resumes at OFFSET with an HTTP Range request
 * and keeps OFFSET current as bytes arrive. */
typedef struct cs_blob_sink {
    uint64_t offset; /* bytes already held (the resume point) */
    int (*write)(void *payload, const void *data, size_t len, cs_error **err);
    int (*restart)(void *payload, cs_error **err); /* the server ignored Range: start at 0 */
    int (*finish)(void *payload, cs_error **err);  /* all bytes are in: verify and keep */
    void *payload;
} cs_blob_sink;

typedef struct cs_blob_fetch {
    const char *digest;
    int64_t size;
    cs_blob_sink sink;
    /* results */
    uint64_t bytes_received; /* body bytes that came over the network */
    int tries;
} cs_blob_fetch;

/** Progress of one blob: DELTA new bytes arrived (blob->sink.offset now held); FINISHED once
 * it is verified. */
typedef void (*cs_fetch_progress_fn)(void *payload, const cs_blob_fetch *blob, size_t delta,
                                     bool finished);

/** Fetch N blobs of REPO, PARALLEL at a time, over one connection pool. Dropped connections,
 * 408/429/5xx and expired tokens are retried (resuming, not restarting); a digest or size
 * mismatch is CS_EDIGEST naming the blob; on the first failure the others stop, and what they
 * received stays with their sinks for a later resume. */
int cs_registry_fetch_blobs(cs_registry *r, const char *repo, cs_blob_fetch *blobs, size_t n,
                            int parallel, cs_fetch_progress_fn progress, void *payload,
                            cs_error **err);

/* ---- pushing (registry_push.c) ------------------------------------------------------------ */

/** HEAD a blob: *EXISTS tells whether REPO has it (with SIZE bytes when SIZE >= 0). */
int cs_registry_blob_exists(bool *exists, cs_registry *r, const char *repo, const char *digest,
                            int64_t size, cs_error **err);

/** Ask the registry to mount DIGEST from FROM_REPO (same registry) into REPO. *MOUNTED is
 * false when it would not (any failure included: the caller then uploads). */
int cs_registry_mount_blob(bool *mounted, cs_registry *r, const char *repo, const char *digest,
                           const char *from_repo, cs_error **err);

/** Upload the blob in file PATH (SIZE bytes, DIGEST) to REPO: one PUT for small blobs,
 * PATCH chunks with Content-Range for large ones (a fresh token for each), then the closing
 * PUT ?digest=. On failure the upload session is cancelled. *SENT_OUT (may be NULL) gets
 * the body bytes sent. */
int cs_registry_upload_blob(cs_registry *r, const char *repo, const char *digest, int64_t size,
                            const char *path, uint64_t *sent_out, cs_error **err);

/** PUT a manifest under TARGET (a tag or its digest) with its exact bytes and MEDIA_TYPE as
 * Content-Type; the registry's answer digest must be the bytes' sha256. */
int cs_registry_put_manifest(cs_registry *r, const char *repo, const char *target,
                             const char *media_type, const char *data, size_t len,
                             cs_error **err);

#ifdef __cplusplus
}
#endif
#endif
