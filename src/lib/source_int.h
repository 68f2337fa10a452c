/* Internal: what the image sources' files share.
 *   source.c          parse, options, image assembly, helpers for writing blobs into the store
 *   source_stream.c   the docker-archive tar stream loader: entries become records, layers
 *                     temp files that go to the compression pool
 *   source_archive.c  docker:IMAGE and archive:FILE: the daemon's export or the file through
 *                     the loader, then manifest.json ties the records together
 *   source_pool.c     the threads that compress layers into the store
 *   source_spec.c     compressing a layer while it streams, when it is almost surely new
 *   source_oci.c      oci:DIR[:TAG] */
#ifndef CS_LIB_SOURCE_INT_H
#define CS_LIB_SOURCE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cachesync/buf.h>
#include <cachesync/digest.h>
#include <cachesync/source.h>
#include <cachesync/store.h>
#include "compress.h"
#include "layermap.h"
#include "tar.h"

#define CSI_SOURCE_IO_BUF (1u << 20)
#define CSI_SOURCE_PROGRESS_STEP (4u << 20)
/* The end of the stream kept to find the JSON error the daemon appends when an export fails
 * after it started. */
#define CSI_SOURCE_TAIL_MAX 8192

/* ---- source.c --------------------------------------------------------------------------- */

/* The options in force, with defaults filled in. */
typedef struct csi_source_settings {
    const cs_source_options *opts; /* never NULL */
    csi_compression comp;
    const char *comp_name;
    int jobs; /* compression threads, >= 1 */
} csi_source_settings;

/* The caller's progress callback, if any. Only ever called from the thread that called
 * cs_source_load. */
void csi_source_progress(const csi_source_settings *st, const char *what, uint64_t done,
                         uint64_t total);

bool csi_source_strv_has(char *const *v, size_t n, const char *s);
int csi_source_write_all(int fd, const char *p, size_t n, const char *path, cs_error **err);

/* The layer the store already compressed DIFF_ID into, if it still holds it. */
bool csi_source_layer_known(char blob[CS_DIGEST_STRLEN], int64_t *size, cs_store *store,
                            const char *diff_id, const char *comp_name);

/* The same against MAP, a layer map read once for many layers. */
bool csi_source_layer_known_in(char blob[CS_DIGEST_STRLEN], int64_t *size, cs_store *store,
                               const csi_layermap_view *map, const char *diff_id,
                               const char *comp_name);

/* The store now holds BLOB (SIZE bytes), DIFF_ID compressed as ST says (HOW: "compressed
 * now", "exported so"): log it, and remember it in the layer map. */
void csi_source_layer_stored(cs_store *store, const csi_source_settings *st, const char *diff_id,
                             const char *blob, int64_t size, const char *how);

/* Tell the caller (opts->blob_ready) that BLOB (SIZE bytes) made now is in STORE. */
void csi_source_blob_ready(cs_store *store, const csi_source_settings *st, const char *blob,
                           int64_t size);

typedef struct csi_source_layer {
    char digest[CS_DIGEST_STRLEN];
    int64_t size;
} csi_source_layer;

/* The image push sends for a config and N compressed layers, all in STORE. */
int csi_source_make_image(cs_source_image **out, cs_store *store, const csi_source_settings *st,
                          const char *config_digest, int64_t config_size,
                          const csi_source_layer *layers, size_t n, cs_error **err);

/* <store>/tmp, created; *OUT malloc'd. This process is marked as the owner of the work
 * files it makes there (an flock held until it ends), and the work files of pushes whose
 * process is gone (killed, crashed) are removed. */
int csi_source_tmp_dir(char **out, cs_store *store, cs_error **err);
/* Only the second half of csi_source_tmp_dir: remove the work files of pushes whose process
 * is gone, when <store>/tmp exists. */
void csi_source_sweep_tmp(cs_store *store);
/* A new empty file PREFIX-PID-XXXXXX in DIR; *PATH_OUT malloc'd. */
int csi_source_tmp_file(int *fd_out, char **path_out, const char *dir, const char *prefix,
                        cs_error **err);
/* TMP (a file in the store's tmp/) holds exactly the bytes of DIGEST, hashed as they were
 * written: make it that blob. */
int csi_source_commit_blob(cs_store *store, const char *tmp, const char *digest, cs_error **err);

/* ---- source_pool.c ---------------------------------------------------------------------- */

/* Threads (ST->jobs at most, started as work comes) compressing layer files into store blobs
 * while the stream goes on. Every callback (progress, log) and every layer map update happens
 * in the calling thread, from csi_source_pool_submit, _poll and _wait: the workers only read
 * their layer file and write their blob, with a fixed buffer each. */
typedef struct csi_source_pool csi_source_pool;
/* A layer compressed as it streams, into a temp blob file in the store's tmp/ (source_spec.c). */
typedef struct csi_source_spec csi_source_spec;

int csi_source_pool_new(csi_source_pool **out, cs_store *store, const csi_source_settings *st,
                        const char *tmpdir, cs_error **err);

/* Queue compressing the layer file TMP (SIZE bytes, in the store's tmp/, uncompressed or
 * compressed some other way; taken: the pool removes it, also on failure), whose diff_id is
 * DIFF_ID, into a new store blob; *ID_OUT names the job. Waits, reporting progress, while as
 * many jobs as there are threads are queued: that bounds the layer files waiting in tmp/.
 * Fails with the first error of any job (then nothing more runs). */
int csi_source_pool_submit(size_t *id_out, csi_source_pool *p, char *tmp, uint64_t size,
                           const char *diff_id, cs_error **err);

/* Queue committing the blob BLOB (BLOB_SIZE bytes) of SPEC, a layer's compression as it
 * streamed, finished (taken: freed by the pool, also on failure); as csi_source_pool_submit
 * otherwise. The export's next entry is read meanwhile. */
int csi_source_pool_submit_spec(size_t *id_out, csi_source_pool *p, csi_source_spec *spec,
                                const char *diff_id, const char *blob, int64_t blob_size,
                                cs_error **err);

/* The job compressing DIFF_ID, if one was submitted. */
bool csi_source_pool_find(size_t *id_out, const csi_source_pool *p, const char *diff_id);

/* Report the jobs' progress and record the finished ones in the layer map; the first error
 * of any job. Cheap when nothing happened: call it between chunks of the stream. */
int csi_source_pool_poll(csi_source_pool *p, cs_error **err);

/* Wait for every job, reporting progress; the first error of any job. */
int csi_source_pool_wait(csi_source_pool *p, cs_error **err);

/* The blob job ID made; only after csi_source_pool_wait succeeded. */
void csi_source_pool_result(const csi_source_pool *p, size_t id, char blob[CS_DIGEST_STRLEN],
                            int64_t *size);

/* Cancel whatever still runs or waits, join the threads, remove every temp file. Layers
 * already compressed stay recorded in the layer map. */
void csi_source_pool_free(csi_source_pool *p);

/* ---- source_spec.c ---------------------------------------------------------------------- */

/* (csi_source_spec: above, with the pool that finishes it) */

/* ---- source_stream.c -------------------------------------------------------------------- */

enum csi_source_rec_kind {
    CSI_REC_DOC,    /* a small file kept in tmp/ until manifest.json says what it is */
    CSI_REC_BIG,    /* neither a layer nor small: only its digest was kept */
    CSI_REC_LAYER,  /* a layer whose blob is in the store (or being made by the pool) */
    CSI_REC_UNUSED, /* a layer the image does not have (another platform's): dropped */
    CSI_REC_LINK,   /* a symlink or hard link to another entry of the archive */
};

enum csi_source_rec_how { CSI_HOW_NONE, CSI_HOW_REUSED, CSI_HOW_COMPRESSED, CSI_HOW_AS_IS };

/* One file of the archive. */
typedef struct csi_source_rec {
    char *name; /* cleaned: no "./", no trailing '/' */
    enum csi_source_rec_kind kind;
    char *link; /* CSI_REC_LINK: the cleaned target, NULL when it leaves the archive */
    char *tmp;  /* CSI_REC_DOC: its bytes */
    char digest[CS_DIGEST_STRLEN]; /* of its bytes */
    uint64_t size;
    char diff_id[CS_DIGEST_STRLEN]; /* CSI_REC_LAYER, CSI_REC_UNUSED */
    char blob[CS_DIGEST_STRLEN];    /* CSI_REC_LAYER: the compressed blob, once known */
    int64_t blob_size;
    size_t job; /* 1 + the pool job making the blob; 0: the blob is known */
    enum csi_source_rec_how how;
} csi_source_rec;

enum csi_source_cur_mode { CSI_CUR_SKIP, CSI_CUR_MANIFEST, CSI_CUR_FILE };

/* The entry whose data is streaming. */
typedef struct csi_source_cur {
    enum csi_source_cur_mode mode;
    size_t rec; /* CSI_CUR_FILE: index in recs */
    uint64_t size, got;
    unsigned char head[CSI_TAR_BLOCK]; /* collected before deciding what the file is */
    size_t head_len;
    bool started;
    bool layer;       /* a tar or compressed data */
    bool verify_only; /* a layer named by its digest whose blob the store holds: hash only */
    bool name_digest_set;
    char name_digest[CS_DIGEST_STRLEN]; /* blobs/sha256/<hex> names its content */
    csi_compression sniffed;
    int fd;
    char *tmp;
    csi_decompressor *dec; /* compressed layers: for the diff_id */
    csi_source_spec *spec; /* an uncompressed layer compressed as it streams (no tmp file) */
} csi_source_cur;

typedef struct csi_source_loader {
    cs_store *store;
    const csi_source_settings *st;
    char *tmpdir;
    const char *origin; /* "Docker daemon at unix://...: export of IMAGE", "archive FILE" */
    const char *name;   /* the image or file */
    bool from_daemon;
    /* what the daemon promised, for docker sources */
    const char *want_config; /* the image ID when it is the config's digest */
    char *const *want_diff_ids;
    size_t nwant;
    const char *progress_what; /* "export": report stream bytes */

    /* what the stream gave (the rest is source_stream.c's own) */
    csi_source_rec *recs;
    size_t nrecs, caprecs;
    cs_buf manifest_json;
    bool have_manifest;
    uint64_t total_in;
    csi_source_pool *pool;

    csi_tar_reader *tar;
    csi_source_cur cur;
    cs_hasher *raw, *diff;
    bool failed;    /* the stream stopped: FAIL_ERR says why */
    bool cb_failed; /* ... because of us (a callback, a compression), not the tar's structure */
    cs_error *fail_err;
    int fail_code;
    uint64_t drained;
    bool trailing; /* non-zero bytes after the end-of-archive marker */
    char tail[CSI_SOURCE_TAIL_MAX];
    uint64_t progress_last;
    /* source_spec.c's: what the image's layers known to the store decompress to, mod 2^32 */
    bool pgzip_held; /* csi_pgzip_hold() until dispose */
    bool spec_ready, spec_off;
    uint32_t *spec_sizes;
    size_t nspec_sizes;
} csi_source_loader;

int csi_source_loader_init(csi_source_loader *L, cs_store *store, const csi_source_settings *st,
                           const char *origin, const char *name, cs_error **err);
void csi_source_loader_dispose(csi_source_loader *L);

/* Bytes of the stream, in order (the tar, after the archive's decompression if any); a
 * csi_compress_sink_fn over the loader. Fails only to stop reading after a failure. */
int csi_source_loader_feed(void *payload, const char *data, size_t len, cs_error **err);

/* The stream is over (TRANSFER_RET: how its transport ended; TERR its error, taken). */
int csi_source_loader_end(csi_source_loader *L, int transfer_ret, cs_error *terr, cs_error **err);

/* The file NAME (a path from manifest.json) stands for, links followed; NULL when none. */
csi_source_rec *csi_source_loader_resolve(csi_source_loader *L, const char *name);

/* A layer file is complete (R's tmp, digest and diff_id set; SNIFFED its compression; or *SPEC,
 * when SPEC is not NULL, holds its compression as it streamed, finished into R's blob and
 * blob_size, and R has no tmp): find its blob, or queue making it (then *SPEC may be taken and
 * set to NULL). */
int csi_source_loader_layer(csi_source_loader *L, csi_source_rec *r, csi_compression sniffed,
                            csi_source_spec **spec, cs_error **err);

/* Should the uncompressed layer of SIZE bytes that starts streaming be compressed as it
 * streams? Yes unless the loader names no layers up front or SIZE is what one of the image's
 * layers that the store knows decompresses to (mod 2^32). */
bool csi_source_spec_wanted(csi_source_loader *L, uint64_t size);

int csi_source_spec_start(csi_source_spec **out, csi_source_loader *L, cs_error **err);
int csi_source_spec_feed(csi_source_spec *s, const void *data, size_t len, cs_error **err);
/* The input ended: BLOB and SIZE of the compressed bytes. */
int csi_source_spec_finish(csi_source_spec *s, char blob[CS_DIGEST_STRLEN], int64_t *size,
                           cs_error **err);
/* Make the finished temp blob the store's BLOB. */
int csi_source_spec_commit(csi_source_spec *s, cs_store *store, const char *blob, cs_error **err);
/* Uncompressed bytes fed. */
uint64_t csi_source_spec_in(const csi_source_spec *s);
/* Removes the temp blob unless committed. */
void csi_source_spec_free(csi_source_spec *s);

/* ---- the sources ------------------------------------------------------------------------ */

int csi_source_load_docker(cs_source_image **out, const cs_source *src, cs_store *store,
                           const csi_source_settings *st, cs_error **err);
int csi_source_load_archive(cs_source_image **out, const cs_source *src, cs_store *store,
                            const csi_source_settings *st, cs_error **err);
int csi_source_load_oci(cs_source_image **out, const cs_source *src, const csi_source_settings *st,
                        cs_error **err);

#endif
