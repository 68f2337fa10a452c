/* cachesync: the local store, a content-addressed OCI image layout
 * (oci-layout, index.json, blobs/sha256/<hex>) that every pull and push passes through.
 *
 * A blob is visible under blobs/ only once its size and sha256 were verified: it is written
 * to partial/<hex>, checked, fsync'd and renamed. An interrupted download stays in partial/
 * and is resumed by the next writer. Several processes may share a store: a per-blob lock
 * file serialises writers of the same blob, and index.json is rewritten under a lock.
 *
 * Every handle holds a shared lock on <store>/store.lock from cs_store_open to cs_store_free;
 * cs_store_gc takes it exclusively, so it never runs while a pull or push holds blobs that no
 * ref names yet. A process must not open a second handle on a store while it holds one and a
 * gc may be waiting (the open would wait behind that gc, which waits for the first handle). */
#ifndef CACHESYNC_STORE_H
#define CACHESYNC_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cachesync/buf.h>
#include <cachesync/digest.h>
#include <cachesync/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cs_store cs_store;

/** The store directory to use when none is given: $CACHESYNC_STORE, else
 * $XDG_CACHE_HOME/cachesync, else $HOME/.cache/cachesync. Malloc'd. */
int cs_store_default_dir(char **out, cs_error **err);

/** Open (creating the layout when missing) the store at DIR, or the default when NULL. */
int cs_store_open(cs_store **out, const char *dir, cs_error **err);
void cs_store_free(cs_store *s);
const char *cs_store_dir(const cs_store *s);

/** Path of a blob's file (whether or not it exists). Malloc'd. */
int cs_store_blob_path(char **out, const cs_store *s, const char *digest, cs_error **err);

/** Is the blob present with SIZE bytes (SIZE < 0: any size)? Content was verified when it
 * was committed. */
bool cs_store_has_blob(const cs_store *s, const char *digest, int64_t size);

/** Store DATA as a verified blob. DIGEST may be NULL (computed); when given, DATA must hash
 * to it (CS_EDIGEST). DIGEST_OUT (may be NULL) receives the digest. */
int cs_store_put_blob(cs_store *s, const char *digest, const void *data, size_t len,
                      char digest_out[CS_DIGEST_STRLEN], cs_error **err);

/** Read a blob (at most MAX bytes), re-checking its digest. */
int cs_store_read_blob(cs_buf *out, const cs_store *s, const char *digest, size_t max,
                       cs_error **err);

/* ---- streaming writes, resumable --------------------------------------------------------- */

typedef struct cs_store_writer cs_store_writer;

/** Start or resume writing blob DIGEST of SIZE bytes. Waits while another process writes the
 * same blob. When the blob is already present, cs_store_writer_present() is true and nothing
 * needs writing. Otherwise writing continues at cs_store_writer_offset(). */
int cs_store_writer_open(cs_store_writer **out, cs_store *s, const char *digest, int64_t size,
                         cs_error **err);
bool cs_store_writer_present(const cs_store_writer *w);
uint64_t cs_store_writer_offset(const cs_store_writer *w);
/** The partial file being written (NULL when the blob is present). A descriptor opened on it
 * reads the blob's bytes as they are written, and keeps reading them after the commit renames
 * the file into blobs/. */
const char *cs_store_writer_partial_path(const cs_store_writer *w);
/** Append bytes; more than the blob's size is CS_EDIGEST. */
int cs_store_writer_write(cs_store_writer *w, const void *data, size_t len, cs_error **err);
/** Throw away what was written and start at offset 0. */
int cs_store_writer_restart(cs_store_writer *w, cs_error **err);
/** Verify size and digest: on a mismatch the partial data is removed and CS_EDIGEST
 * returned. No write may follow a successful verify but the commit. */
int cs_store_writer_verify(cs_store_writer *w, cs_error **err);
/** Verify (unless done), make the bytes durable (fsync), then make the blob visible. On a
 * mismatch the partial data is removed and CS_EDIGEST returned. */
int cs_store_writer_commit(cs_store_writer *w, cs_error **err);
/** Release the writer; uncommitted data stays for a later resume. */
void cs_store_writer_close(cs_store_writer *w);

/* ---- refs -------------------------------------------------------------------------------- */

/* When a ref was last pulled or pushed: RFC 3339 UTC ("2024-05-01T12:00:00Z"). */
#define CS_STORE_ANN_LAST_USED "io.cachesync.last-used"

/** Name REF in index.json: a descriptor (MEDIA_TYPE, DIGEST, SIZE) annotated with
 * org.opencontainers.image.ref.name = REF, io.containerd.image.name = REF and
 * CS_STORE_ANN_LAST_USED = now, plus the key/value pairs in ANNOTATIONS (NULL-terminated list
 * "k1", "v1", ..., NULL; they win over those three). An entry with the same ref name is
 * replaced. Every pull and push calls it, a pull that fetched nothing too, so the last-used
 * time is that of the last pull or push. */
int cs_store_set_ref(cs_store *s, const char *ref, const char *media_type, const char *digest,
                     int64_t size, const char *const *annotations, cs_error **err);

/** Forget REF in index.json (REF NULL: the entries without a ref name), only the entries
 * naming DIGEST when DIGEST is not NULL. No entry matching is CS_ENOTFOUND. Blobs stay until
 * cs_store_gc. */
int cs_store_remove_ref(cs_store *s, const char *ref, const char *digest, cs_error **err);

/* ---- exclusive use ----------------------------------------------------------------------- */

/** Wait until this handle is the only one open on the store, and keep others from opening
 * until cs_store_unlock_exclusive. New opens queue behind a waiting call, so a stream of
 * pulls cannot starve it. TIMEOUT_MS < 0 waits as long as it takes; when it passes, the
 * store is still in use: CS_ERROR, and the handle is back to shared use. */
int cs_store_lock_exclusive(cs_store *s, int timeout_ms, cs_error **err);
void cs_store_unlock_exclusive(cs_store *s);

/* ---- administration: store ls, verify, gc (store_admin.c) ---------------------------------
 *
 * What a ref needs: the manifest index.json names and, when it is an image manifest, its
 * config and layers; when it is an index (or manifest list), each child manifest present
 * (pull keeps one platform), followed to its own config and layers. The uncompressed copy of
 * a zstd layer that a pull made for an older Docker (stored under its diff_id) is kept with
 * its image too. Layers with foreign "urls" are never in the store and never missing. */

typedef struct cs_store_ref_info {
    char *ref;        /* org.opencontainers.image.ref.name, NULL for an entry without one */
    char *media_type; /* of the descriptor in index.json */
    char digest[CS_DIGEST_STRLEN];
    uint64_t size;           /* bytes of the distinct blobs it needs that are in the store */
    size_t nblobs;           /* those blobs */
    size_t nmissing;         /* blobs it needs that are not in the store (a pull into docker fetches
                              * only the layers the daemon lacks, so this is no error) */
    int64_t last_used;       /* Unix time of the last pull or push; without the annotation (a ref
                              * another tool wrote), when its manifest was stored; -1 unknown */
    bool last_used_recorded; /* last_used comes from CS_STORE_ANN_LAST_USED */
} cs_store_ref_info;

typedef struct cs_store_listing {
    cs_store_ref_info *refs; /* in index.json order */
    size_t nrefs;
    size_t blobs; /* files under blobs/sha256 */
    uint64_t bytes;
    size_t unreferenced_blobs; /* needed by no ref: what gc removes */
    uint64_t unreferenced_bytes;
    size_t partial; /* interrupted downloads (partial/) and leftover temp files */
    uint64_t partial_bytes;
} cs_store_listing;

/** The refs of the store with their sizes and last use, and the totals. */
int cs_store_list(cs_store_listing **out, cs_store *s, cs_error **err);
void cs_store_listing_free(cs_store_listing *l);

/** Parse an RFC 3339 time ("2024-05-01T12:00:00Z", "...T14:00:00.5+02:00") into Unix time. */
int cs_store_parse_time(int64_t *out, const char *text, cs_error **err);

typedef struct cs_store_corrupt {
    char digest[CS_DIGEST_STRLEN]; /* the blob's name */
    char *path;
    const char *reason; /* "size mismatch" (a descriptor gives another size) or "digest
                         * mismatch" */
    char *detail;       /* "12 bytes, its descriptor says 13", "content hashes to sha256:..." */
    bool removed;
} cs_store_corrupt;

typedef struct cs_store_missing {
    char *ref; /* NULL for an entry without a ref name */
    char digest[CS_DIGEST_STRLEN];
} cs_store_missing;

typedef struct cs_store_partial {
    char *path;
    uint64_t size;
    int64_t mtime;
} cs_store_partial;

typedef struct cs_store_verify_result {
    size_t checked; /* blobs re-hashed */
    uint64_t bytes;
    cs_store_corrupt *corrupt; /* removed unless removing failed (then removed is false) */
    size_t ncorrupt;
    size_t removed;
    cs_store_missing *missing; /* blobs refs need that are not in the store (after removal) */
    size_t nmissing;
    cs_store_partial *partial; /* listed, not errors: the next writer resumes them */
    size_t npartial;
} cs_store_verify_result;

/* Called before each blob is hashed. */
typedef void (*cs_store_verify_progress)(const char *digest, uint64_t size, void *payload);

/** Re-hash every blob (streaming) and remove those whose content does not match their name,
 * then list the blobs refs need that are not in the store and the partial files. Corrupt
 * blobs are a result, not an error: 0 is returned with *OUT describing them. PROGRESS may be
 * NULL. */
int cs_store_verify(cs_store_verify_result **out, cs_store *s, cs_store_verify_progress progress,
                    void *payload, cs_error **err);
void cs_store_verify_result_free(cs_store_verify_result *r);

typedef struct cs_store_gc_options {
    int64_t older_than;  /* seconds: first forget refs not used for longer; < 0 off */
    int64_t max_size;    /* bytes: then forget refs, least recently used first, until the
                          * blobs the others need fit; < 0 off */
    int64_t partial_age; /* seconds a partial or temp file must be untouched to go; 0: a day */
    int timeout_ms;      /* cs_store_lock_exclusive's */
    bool dry_run;        /* decide and report, remove nothing */
} cs_store_gc_options;

typedef struct cs_store_gc_ref {
    char *ref;
    char digest[CS_DIGEST_STRLEN];
    int64_t last_used;
    const char *reason; /* "older-than" or "max-size" */
} cs_store_gc_ref;

typedef struct cs_store_gc_result {
    cs_store_gc_ref *removed_refs;
    size_t nremoved_refs;
    size_t removed_blobs;
    size_t removed_partial; /* partial downloads and temp files */
    uint64_t freed_bytes;   /* of both */
    size_t layermap_pruned; /* layers.json entries whose blob went */
    size_t refs, blobs;     /* what the store holds afterwards */
    uint64_t bytes;
    bool dry_run;
} cs_store_gc_result;

/** Collect garbage under cs_store_lock_exclusive: refs as OPTS says (NULL: none), then every
 * blob no remaining ref needs, partial downloads and temp files older than OPTS->partial_age
 * that no writer holds, lock files of blobs no longer being written, and the layers.json
 * entries of the blobs removed. A ref whose manifest is in the store but unreadable stops it
 * before anything is removed (its layers cannot be told apart): run cs_store_verify first. */
int cs_store_gc(cs_store_gc_result **out, cs_store *s, const cs_store_gc_options *opts,
                cs_error **err);
void cs_store_gc_result_free(cs_store_gc_result *r);

#ifdef __cplusplus
}
#endif
#endif
