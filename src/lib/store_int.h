/* Internal: the store handle that store.c opens and store_writer.c writes blobs with, and
 * one scan of the store that store ls, verify and gc (store_admin.c) share: the
 * blobs on disk, the leftovers of interrupted writes, the refs of index.json and the blobs each
 * needs (see "administration" in include/cachesync/store.h for what a ref needs). */
#ifndef CS_LIB_STORE_INT_H
#define CS_LIB_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cachesync/store.h>

/* The handle (store.c), shared with the writers (store_writer.c). */
struct cs_store {
    char *dir;
    int use_fd;  /* store.lock: shared for the handle's life, exclusive while gc runs */
    int gate_fd; /* gc.lock, held exclusively between cs_store_lock_exclusive and unlock */
};

typedef struct csi_store_blob {
    char hex[65];
    uint64_t size;
    int64_t mtime;
    int64_t want;   /* the size a descriptor gives it, -1 when none does */
    unsigned users; /* refs still kept that need it */
    bool removed;
} csi_store_blob;

typedef struct csi_store_ref {
    char *name; /* NULL: an entry without a ref name */
    char *media_type;
    char digest[CS_DIGEST_STRLEN];
    int64_t last_used;
    bool recorded;
    size_t *blobs; /* indexes into csi_store_scan.blobs, distinct */
    size_t nblobs;
    char (*missing)[CS_DIGEST_STRLEN];
    size_t nmissing;
    char *broken;        /* why a manifest it needs could not be read */
    const char *dropped; /* gc's reason, or NULL */
} csi_store_ref;

typedef struct csi_store_leftover {
    char *path;
    char *lock; /* a partial download's lock file, NULL for a temp file */
    uint64_t size;
    int64_t mtime;
} csi_store_leftover;

typedef struct csi_store_scan {
    cs_store *s;
    csi_store_blob *blobs; /* sorted by hex */
    size_t nblobs, capblobs;
    csi_store_ref *refs;
    size_t nrefs;
    csi_store_leftover *left;
    size_t nleft, capleft;
    char **locks; /* partial/<hex>.lock */
    size_t nlocks, caplocks;
} csi_store_scan;

/* Scan the store S into SC (which need not be initialised; dispose of it even on failure). A
 * manifest that cannot be read is no failure: its ref's broken says why. */
int csi_store_scan_load(csi_store_scan *sc, cs_store *s, cs_error **err);
void csi_store_scan_dispose(csi_store_scan *sc);

/* The blob DIGEST names, or NULL when it is not in the store. */
csi_store_blob *csi_store_find_blob(const csi_store_scan *sc, const char *digest);

/* Set each blob's users: how many refs not dropped need it. */
void csi_store_count_users(csi_store_scan *sc);

/* Bytes of the blobs R needs that are in the store. */
uint64_t csi_store_ref_bytes(const csi_store_scan *sc, const csi_store_ref *r);

#endif
