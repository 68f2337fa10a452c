/* Internal: the store's memory of what became of each uncompressed layer and of where blobs
 * were seen, in <store>/layers.json:
 *
 *   {"layers": {"sha256:<diff_id>": {"gzip": {"digest": "sha256:...", "size": N},
 *                                   "zstd": {"digest": "sha256:...", "size": N}}},
 *    "blobs":  {"sha256:<blob>": {"seen": ["127.0.0.1:5000/team/app", ...]}}}
 *
 * A re-push of an unchanged layer then costs no compression (the same compressed bytes, so
 * the same digest the registry already has), and a push to a new repository can mount a blob
 * from one known to hold it. Compression is not reproducible across zlib/zstd versions and
 * levels, which is why the answer is remembered rather than recomputed.
 *
 * It is only a cache: a missing, corrupt or oversized file reads as empty, and the next update
 * rewrites it whole. Updates are read-modify-write under an flock on layers.json.lock and
 * replace the file atomically, so concurrent processes never lose or tear each other's
 * entries; reads take no lock. */
#ifndef CS_LIB_LAYERMAP_H
#define CS_LIB_LAYERMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cachesync/digest.h>
#include <cachesync/error.h>
#include <cachesync/store.h>

/* Cap on layers.json. An update that would pass it forgets the "blobs" section first (mount
 * hints are the cheaper loss), then everything but the new entry. */
#define CSI_LAYERMAP_MAX (64u * 1024 * 1024)

/* Repositories remembered per blob, most recent first. */
#define CSI_LAYERMAP_SEEN_MAX 16

/* Longest "registry/repository" accepted. */
#define CSI_LAYERMAP_REPO_MAX 512

/* The blob DIFF_ID became under COMPRESSION ("gzip" or "zstd"): 0 with DIGEST_OUT and
 * SIZE_OUT (may be NULL) set, or CS_ENOTFOUND. Whether the store still holds that blob is the
 * caller's question (cs_store_has_blob). */
int csi_layermap_get(char digest_out[CS_DIGEST_STRLEN], int64_t *size_out, cs_store *s,
                     const char *diff_id, const char *compression, cs_error **err);

/* A read-only snapshot of layers.json, read once for many lookups: a re-push asks about every
 * layer of the image, and reading and parsing the file for each made that cost grow with the
 * square of the layer count. Lookups see the file as it was when the view was opened. */
typedef struct csi_layermap_view csi_layermap_view;

/* Read layers.json (a missing or bad file gives an empty view, as for csi_layermap_get). */
int csi_layermap_view_open(csi_layermap_view **out, cs_store *s, cs_error **err);

/* csi_layermap_get against the view. */
int csi_layermap_view_get(char digest_out[CS_DIGEST_STRLEN], int64_t *size_out,
                          const csi_layermap_view *v, const char *diff_id, const char *compression,
                          cs_error **err);

void csi_layermap_view_free(csi_layermap_view *v);

/* From now until csi_layermap_flush(S), csi_layermap_put and csi_layermap_seen on S only queue
 * their edits in memory (a push makes two per layer); the flush writes them all with one
 * update and ends the deferral. Reads meanwhile see the file without them. */
int csi_layermap_defer(cs_store *s, cs_error **err);
int csi_layermap_flush(cs_store *s, cs_error **err);

/* Record that DIFF_ID compressed with COMPRESSION is blob DIGEST of SIZE bytes (replacing an
 * earlier answer). */
int csi_layermap_put(cs_store *s, const char *diff_id, const char *compression, const char *digest,
                     int64_t size, cs_error **err);

/* Record that REGISTRY_REPO ("127.0.0.1:5000/team/app", no tag) holds BLOB_DIGEST. */
int csi_layermap_seen(cs_store *s, const char *blob_digest, const char *registry_repo,
                      cs_error **err);

/* The repositories known to hold BLOB_DIGEST, most recent first, as a NULL-terminated vector
 * (empty, not an error, when none); free with csi_layermap_repos_free. */
int csi_layermap_where(char ***repos_out, size_t *n_out, cs_store *s, const char *blob_digest,
                       cs_error **err);

void csi_layermap_repos_free(char **repos);

/* Forget the layers whose blob KEEP rejects and the mount hints of such blobs (gc removed
 * them); REMOVED_OUT (may be NULL) gets how many entries went. */
int csi_layermap_prune(size_t *removed_out, cs_store *s,
                       bool (*keep)(const char *blob_digest, void *arg), void *arg, cs_error **err);

#endif
