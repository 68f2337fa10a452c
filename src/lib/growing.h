/* Internal: a blob that is still being written, followed by a reader in another thread.
 *
 * A push compresses a new layer while the daemon's export streams it (source_spec.c). For a
 * large layer that compression takes seconds, and an upload that waited for its end would
 * add the whole transfer after it. A growing blob lets the upload start while the blob is
 * written: the writer says how many bytes the file holds (csi_growing_wrote), then either
 * that the blob is complete, verified and committed under its digest (csi_growing_done) or
 * that it never will be (csi_growing_fail); the reader (registry_push.c) waits for bytes
 * with csi_growing_wait and reads them from its own descriptor of the file, which stays
 * valid across the commit's rename. Docker's own push streams a layer as it compresses it
 * (moby distribution/push_v2.go, pushLayer); its digest is known only at the end, so the
 * upload is told it last (the closing PUT ?digest=).
 *
 * The reader reports how its upload ended (csi_growing_uploaded), and whoever meets the same
 * digest later in the push waits for that (csi_growing_upload_wait) instead of uploading the
 * blob a second time. Reference counted: writer and reader each hold one. */
#ifndef CS_LIB_GROWING_H
#define CS_LIB_GROWING_H

#include <stdbool.h>
#include <stdint.h>

#include <cachesync/digest.h>
#include <cachesync/error.h>
#include <cachesync/registry.h>
#include <cachesync/source.h>

/* The size of each PATCH of a large upload (registry_push.c); a blob whose compressed bytes
 * pass one chunk is followed by an upload while it is written. docker-registry takes such a
 * PATCH in ~220 ms here (64 MiB); smaller ones would each cost it a hash-state file more. */
#define CSI_UPLOAD_CHUNK (64u * 1024 * 1024)
#define CSI_GROWING_MIN CSI_UPLOAD_CHUNK

enum csi_growing_state {
    CSI_GROWING_OPEN,   /* bytes may still come */
    CSI_GROWING_DONE,   /* complete and committed: digest and size are set */
    CSI_GROWING_FAILED, /* abandoned: the layer was known after all, or its writing failed */
};

/* How the reader's upload ended. */
enum csi_growing_upload {
    CSI_GROWING_UPLOADING, /* not over yet (or never started) */
    CSI_GROWING_UPLOADED,  /* the registry committed it */
    CSI_GROWING_PRESENT,   /* the registry had it already: the session was cancelled */
    CSI_GROWING_NOT_SENT,  /* failed or abandoned: it goes up the usual way */
};

/* A new growing blob over the file PATH, which the caller writes (through a descriptor of
 * its own; the reader opens PATH anew). Holds one reference, the caller's. */
int csi_growing_new(cs_growing_blob **out, const char *path, cs_error **err);
cs_growing_blob *csi_growing_ref(cs_growing_blob *g);
void csi_growing_unref(cs_growing_blob *g);

/* Writer's side. The file holds AVAIL bytes now. */
void csi_growing_wrote(cs_growing_blob *g, uint64_t avail);
/* The blob is complete: DIGEST, SIZE bytes, committed to the store. */
void csi_growing_done(cs_growing_blob *g, const char *digest, uint64_t size);
/* It will never be complete (no-op once done). */
void csi_growing_fail(cs_growing_blob *g);

/* Reader's side. Wait until the file holds at least WANT bytes or the blob is no longer
 * open; returns the state and sets *AVAIL (the size, once done). */
enum csi_growing_state csi_growing_wait(cs_growing_blob *g, uint64_t want, uint64_t *avail);
/* The reader's descriptor (read it with pread or lseek + read) and the file's name. */
int csi_growing_fd(const cs_growing_blob *g);
const char *csi_growing_path(const cs_growing_blob *g);
/* The digest once done (empty before): valid for the reader after csi_growing_wait said
 * done. Anyone else asks csi_growing_is. */
const char *csi_growing_digest(const cs_growing_blob *g);
/* Is G done, as DIGEST? */
bool csi_growing_is(cs_growing_blob *g, const char *digest);

/* The upload's outcome, from the reader; and the wait for it, from anyone else. */
void csi_growing_uploaded(cs_growing_blob *g, enum csi_growing_upload how, uint64_t sent);
enum csi_growing_upload csi_growing_upload_wait(cs_growing_blob *g, uint64_t *sent);

/* Upload G to REPO as it is written: POST, a PATCH per chunk as each is there, the rest
 * once it is done, then (unless the registry turns out to hold the digest already: the
 * session is cancelled, *HOW CSI_GROWING_PRESENT) the closing PUT ?digest=. No retries: a
 * failure leaves the blob to the usual upload once complete. *SENT: bytes sent. A blob that
 * fails (CSI_GROWING_FAILED) cancels the session and returns 0 with *HOW
 * CSI_GROWING_NOT_SENT. */
int csi_registry_upload_growing(cs_registry *r, const char *repo, cs_growing_blob *g,
                                uint64_t *sent, enum csi_growing_upload *how, cs_error **err);

#endif
