/* cachesync: the local store, a content-addressed OCI image layout
 * (oci-layout, index.json, blobs/sha256/<hex>) that every pull and push passes through.
 *
 * A blob is visible under blobs/ only once its size and sha256 were verified: it is written
 * to partial/<hex>, checked, fsync'd and renamed. An interrupted download stays in partial/
 * and is resumed by the next writer. Several processes may share a store: a per-blob lock
 * file serialises writers of the same blob, and index.json is rewritten under a lock. */
#ifndef CACHESYNC_STORE_H
#define CACHESYNC_STORE_H

#include <stdbool.h>
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
/** Verify size and digest, then make the blob visible. On a mismatch the partial data is
 * removed and CS_EDIGEST returned. */
int cs_store_writer_commit(cs_store_writer *w, cs_error **err);
/** Release the writer; uncommitted data stays for a later resume. */
void cs_store_writer_close(cs_store_writer *w);

/* ---- refs -------------------------------------------------------------------------------- */

/** Name REF in index.json: a descriptor (MEDIA_TYPE, DIGEST, SIZE) annotated with
 * org.opencontainers.image.ref.name = REF and io.containerd.image.name = REF, plus the
 * key/value pairs in ANNOTATIONS (NULL-terminated list "k1", "v1", ..., NULL). An entry with
 * the same ref name is replaced. */
int cs_store_set_ref(cs_store *s, const char *ref, const char *media_type, const char *digest,
                     int64_t size, const char *const *annotations, cs_error **err);

#ifdef __cplusplus
}
#endif
#endif
