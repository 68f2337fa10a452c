/* The compression pool (see source_int.h): a few threads turn the layer files the stream loader
 * wrote into compressed store blobs while the export goes on, so that a push waits for the
 * slowest of gzip and the export rather than for their sum.
 *
 * The threads share nothing with the rest of the library but their jobs, under one mutex: each
 * reads its layer file and writes its own temp file with its own fds, compressor and hasher
 * (zlib and zstd streams and OpenSSL 3's EVP contexts are independent objects, safe in parallel),
 * then renames it into the store (the cs_store is read-only after opening, and a rename is
 * atomic whoever else makes the same blob). Everything else, from progress callbacks and log
 * lines to layers.json updates, happens in the thread that loads the image when it looks at the
 * jobs (submit, poll, wait); so the layer map's read-modify-write never runs in two threads. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress.h"
#include "error_int.h"
#include "source_int.h"

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED };

typedef struct job {
    /* set before the job is queued, then read-only */
    char *tmp; /* the layer file: the worker removes it, or csi_source_pool_free when queued */
    /* or, for a layer compressed as it streamed, its finished compression: the job commits its
     * blob, whose digest and size BLOB and BLOB_SIZE hold from the start (the worker frees it,
     * or csi_source_pool_free when queued) */
    csi_source_spec *spec;
    bool streamed; /* a spec job's: its layer was compressed as it streamed */
    uint64_t size;
    char diff_id[CS_DIGEST_STRLEN];
    char what[40]; /* "compress sha256:<12 hex>" */
    /* the worker's: STATE and DONE under the lock, BLOB and BLOB_SIZE set before STATE
     * becomes JOB_DONE */
    enum job_state state;
    uint64_t done; /* bytes of TMP read */
    char blob[CS_DIGEST_STRLEN];
    int64_t blob_size;
    /* the loading thread's own */
    bool announced, collected;
    uint64_t reported;
} job;

struct csi_source_pool {
    cs_store *store;
    const csi_source_settings *st;
    const char *tmpdir;

    pthread_mutex_t lock;
    pthread_cond_t work;    /* a job was queued, or the pool is closing */
    pthread_cond_t changed; /* a job started, progressed or ended */
    /* under the lock */
    job **jobs; /* in submission order; only the loading thread adds */
    size_t njobs, capjobs;
    size_t next;  /* the first queued job */
    size_t nover; /* jobs done or failed */
    bool closing; /* no more jobs: threads exit once the queue is empty */
    bool failed;  /* a job failed: FAIL_CODE, FAIL_ERR say how (the first failure) */
    int fail_code;
    cs_error *fail_err; /* NULL once handed to the caller */
    uint64_t events;    /* bumped whenever a job starts, progresses or ends */
    /* read by the workers between reads, without the lock */
    atomic_bool canceled;
    /* the loading thread's own */
    pthread_t *threads;
    size_t nthreads;
    uint64_t events_seen;
    size_t first_open; /* jobs before it are over and reported */
};

/* ---- the workers ------------------------------------------------------------------------- */

typedef struct hash_file {
    int fd;
    const char *path;
    cs_hasher *h;
    uint64_t n;
} hash_file;

static int
hash_file_write(void *payload, const char *data, size_t len, cs_error **err)
{
    hash_file *hf = payload;
    int ret = csi_source_write_all(hf->fd, data, len, hf->path, err);

    if (ret == 0) {
        cs_hasher_update(hf->h, data, len);
        hf->n += len;
    }
    return ret;
}

static int
to_compressor(void *payload, const char *data, size_t len, cs_error **err)
{
    return csi_compressor_feed(payload, data, len, err);
}

static void
job_progress(csi_source_pool *p, job *j, uint64_t done)
{
    pthread_mutex_lock(&p->lock);
    j->done = done;
    p->events++;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
}

/* Compress J's layer file (uncompressed, or compressed some other way) into a new store blob
 * with BUF (CSI_SOURCE_IO_BUF bytes); J->blob and J->blob_size are set on success, *DONE_OUT
 * to the bytes read. */
static int
compress_job(csi_source_pool *p, job *j, char *buf, uint64_t *done_out, cs_error **err)
{
    const csi_source_settings *st = p->st;
    hash_file hf = {-1, NULL, NULL, 0};
    csi_decompressor *dec = NULL;
    csi_compressor *comp = NULL;
    char *tmp = NULL;
    uint64_t done = 0, reported = 0;
    int in = -1, ret;

    ret = cs_hasher_new(&hf.h, err);
    if (ret == 0)
        ret = csi_source_tmp_file(&hf.fd, &tmp, p->tmpdir, "blob", err);
    if (ret < 0)
        goto out;
    hf.path = tmp;
    in = open(j->tmp, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        ret = csi_error_errno(err, errno, "open %s", j->tmp);
        goto out;
    }
    ret = csi_compressor_new(&comp, st->comp, st->opts->level, hash_file_write, &hf, err);
    if (ret == 0)
        ret = csi_decompressor_new(&dec, CSI_COMP_AUTO, UINT64_MAX, to_compressor, comp, err);
    if (ret < 0)
        goto out;
    for (;;) {
        ssize_t r;

        if (atomic_load_explicit(&p->canceled, memory_order_relaxed)) {
            ret = csi_error_set(err, CS_ECANCELED, "compressing layer %s: canceled", j->diff_id);
            goto out;
        }
        r = read(in, buf, CSI_SOURCE_IO_BUF);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ret = csi_error_errno(err, errno, "read %s", j->tmp);
            goto out;
        }
        if (r == 0)
            break;
        ret = csi_decompressor_feed(dec, buf, (size_t)r, err);
        if (ret < 0)
            goto out;
        done += (uint64_t)r;
        if (done - reported >= CSI_SOURCE_PROGRESS_STEP) {
            job_progress(p, j, done);
            reported = done;
        }
    }
    ret = csi_decompressor_finish(dec, err);
    if (ret == 0)
        ret = csi_compressor_finish(comp, err);
    if (ret < 0)
        goto out;
    *done_out = done;
    ret = close(hf.fd);
    hf.fd = -1;
    if (ret != 0) {
        ret = csi_error_errno(err, errno, "close %s", tmp);
        goto out;
    }
    cs_hasher_final(hf.h, j->blob);
    ret = csi_source_commit_blob(p->store, tmp, j->blob, err);
    if (ret < 0)
        goto out;
    j->blob_size = (int64_t)hf.n;
out:
    if (in >= 0)
        close(in);
    if (hf.fd >= 0)
        close(hf.fd);
    if (ret < 0 && tmp != NULL)
        unlink(tmp);
    unlink(j->tmp);
    csi_decompressor_free(dec);
    csi_compressor_free(comp);
    cs_hasher_free(hf.h);
    free(tmp);
    return ret;
}

/* Make J's blob, compressed as its layer streamed (the compression finished), a store blob:
 * its fsync, rename and the directory's fsync, off the thread that reads the export. */
static int
commit_spec_job(csi_source_pool *p, job *j, uint64_t *done_out, cs_error **err)
{
    int ret = csi_source_spec_commit(j->spec, p->store, j->blob, err);

    if (ret == 0)
        *done_out = j->size;
    csi_source_spec_free(j->spec); /* removes the temp blob unless committed */
    j->spec = NULL;
    return ret;
}

static void *
worker(void *arg)
{
    csi_source_pool *p = arg;
    char *buf = malloc(CSI_SOURCE_IO_BUF);
    uint64_t done;
    cs_error *e;
    job *j;
    int ret;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->closing && !p->failed && p->next == p->njobs)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->failed || atomic_load(&p->canceled) || p->next == p->njobs)
            break;
        j = p->jobs[p->next++];
        j->state = JOB_RUNNING;
        p->events++;
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->lock);

        e = NULL;
        done = 0;
        if (j->spec != NULL) {
            ret = commit_spec_job(p, j, &done, &e);
        } else if (buf != NULL) {
            ret = compress_job(p, j, buf, &done, &e);
        } else {
            ret = csi_error_oom(&e);
            unlink(j->tmp);
        }

        pthread_mutex_lock(&p->lock);
        j->state = ret == 0 ? JOB_DONE : JOB_FAILED;
        j->done = done;
        p->nover++;
        if (ret < 0 && !p->failed) {
            /* the first failure wins; the other jobs stop */
            p->failed = true;
            p->fail_code = ret;
            p->fail_err = e;
            e = NULL;
            atomic_store(&p->canceled, true);
            pthread_cond_broadcast(&p->work);
        }
        cs_error_free(e);
        p->events++;
        pthread_cond_broadcast(&p->changed);
    }
    pthread_mutex_unlock(&p->lock);
    free(buf);
    return NULL;
}

/* ---- the loading thread ------------------------------------------------------------------ */

int
csi_source_pool_new(csi_source_pool **out, cs_store *store, const csi_source_settings *st,
                    const char *tmpdir, cs_error **err)
{
    csi_source_pool *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return csi_error_oom(err);
    p->threads = calloc((size_t)st->jobs, sizeof(*p->threads));
    if (p->threads == NULL) {
        free(p);
        return csi_error_oom(err);
    }
    p->store = store;
    p->st = st;
    p->tmpdir = tmpdir;
    atomic_init(&p->canceled, false);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->changed, NULL);
    *out = p;
    return 0;
}

/* Progress reports for what changed since the last call, and the layer map for finished jobs.
 * Called without the lock: the callbacks may take their time. */
static void
report(csi_source_pool *p)
{
    enum job_state state;
    uint64_t done;
    size_t i, n;
    job *j;

    pthread_mutex_lock(&p->lock);
    p->events_seen = p->events;
    n = p->njobs;
    pthread_mutex_unlock(&p->lock);
    for (i = p->first_open; i < n; i++) {
        j = p->jobs[i];
        pthread_mutex_lock(&p->lock);
        state = j->state;
        done = j->done;
        pthread_mutex_unlock(&p->lock);
        if (state == JOB_QUEUED)
            break; /* jobs start in order: so are all later ones */
        if (state != JOB_FAILED && !j->collected) {
            if (!j->announced) {
                csi_source_progress(p->st, j->what, 0, j->size);
                j->announced = true;
            }
            if (state == JOB_RUNNING && done - j->reported >= CSI_SOURCE_PROGRESS_STEP &&
                done < j->size) {
                csi_source_progress(p->st, j->what, done, j->size);
                j->reported = done;
            } else if (state == JOB_DONE) {
                csi_source_progress(p->st, j->what, done, j->size);
                csi_source_layer_stored(p->store, p->st, j->diff_id, j->blob, j->blob_size,
                                        j->streamed ? "compressed as it streamed"
                                                    : "compressed now");
                csi_source_blob_ready(p->store, p->st, j->blob, j->blob_size);
                j->collected = true;
            }
        }
        if (i == p->first_open && (state == JOB_FAILED || j->collected))
            p->first_open++;
    }
}

/* The first failure, for the caller (the lock held). */
static int
take_failure(csi_source_pool *p, cs_error **err)
{
    if (p->fail_err == NULL)
        return csi_error_set(err, p->fail_code, "a layer's compression failed");
    if (err != NULL)
        *err = p->fail_err;
    else
        cs_error_free(p->fail_err);
    p->fail_err = NULL;
    return p->fail_code;
}

/* Wait until READY(P) holds or a job failed, reporting progress meanwhile. */
static int
wait_for(csi_source_pool *p, bool (*ready)(const csi_source_pool *p), cs_error **err)
{
    int ret = 0;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (p->failed) {
            ret = take_failure(p, err);
            break;
        }
        if (p->events != p->events_seen) {
            pthread_mutex_unlock(&p->lock);
            report(p);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        if (ready(p))
            break;
        pthread_cond_wait(&p->changed, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return ret;
}

static bool
has_room(const csi_source_pool *p)
{
    return p->njobs - p->next < (size_t)p->st->jobs;
}

static bool
all_over(const csi_source_pool *p)
{
    return p->nover == p->njobs;
}

/* One more thread when every thread has a job and fewer than ST->jobs run (the lock held).
 * Workers block every signal: signals are the loading thread's business. */
static int
add_thread(csi_source_pool *p, cs_error **err)
{
    size_t busy = p->next - p->nover;
    sigset_t all, old;
    int e;

    if (p->nthreads >= (size_t)p->st->jobs || p->nthreads - busy >= p->njobs - p->next)
        return 0;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    e = pthread_create(&p->threads[p->nthreads], NULL, worker, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e == 0) {
        p->nthreads++;
        return 0;
    }
    /* fewer threads do the same work, only slower; none cannot */
    if (p->nthreads > 0)
        return 0;
    return csi_error_errno(err, e, "start a compression thread");
}

static int
submit(size_t *id_out, csi_source_pool *p, char *tmp, csi_source_spec *spec, uint64_t size,
       const char *diff_id, const char *blob, int64_t blob_size, cs_error **err)
{
    job *j = NULL, **nj;
    int ret;

    ret = wait_for(p, has_room, err);
    if (ret < 0)
        goto fail;
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        ret = csi_error_oom(err);
        goto fail;
    }
    j->tmp = tmp;
    j->spec = spec;
    j->streamed = spec != NULL;
    j->size = size;
    if (blob != NULL) {
        snprintf(j->blob, sizeof(j->blob), "%s", blob);
        j->blob_size = blob_size;
    }
    snprintf(j->diff_id, sizeof(j->diff_id), "%s", diff_id);
    snprintf(j->what, sizeof(j->what), "compress %.19s", diff_id);
    pthread_mutex_lock(&p->lock);
    if (p->njobs == p->capjobs) {
        size_t cap = p->capjobs ? p->capjobs * 2 : 16;

        nj = realloc(p->jobs, cap * sizeof(*nj));
        if (nj == NULL) {
            pthread_mutex_unlock(&p->lock);
            ret = csi_error_oom(err);
            goto fail;
        }
        p->jobs = nj;
        p->capjobs = cap;
    }
    p->jobs[p->njobs++] = j;
    *id_out = p->njobs - 1;
    ret = add_thread(p, err);
    if (ret < 0) {
        p->njobs--; /* no thread will ever take it */
    } else {
        pthread_cond_signal(&p->work);
    }
    pthread_mutex_unlock(&p->lock);
    if (ret < 0)
        goto fail;
    return 0;
fail:
    if (tmp != NULL)
        unlink(tmp);
    free(tmp);
    csi_source_spec_free(spec);
    free(j);
    return ret;
}

int
csi_source_pool_submit(size_t *id_out, csi_source_pool *p, char *tmp, uint64_t size,
                       const char *diff_id, cs_error **err)
{
    return submit(id_out, p, tmp, NULL, size, diff_id, NULL, 0, err);
}

int
csi_source_pool_submit_spec(size_t *id_out, csi_source_pool *p, csi_source_spec *spec,
                            const char *diff_id, const char *blob, int64_t blob_size,
                            cs_error **err)
{
    return submit(id_out, p, NULL, spec, csi_source_spec_in(spec), diff_id, blob, blob_size, err);
}

bool
csi_source_pool_find(size_t *id_out, const csi_source_pool *p, const char *diff_id)
{
    size_t i;

    /* only the loading thread adds jobs, and diff_ids never change */
    for (i = 0; i < p->njobs; i++) {
        if (strcmp(p->jobs[i]->diff_id, diff_id) == 0) {
            *id_out = i;
            return true;
        }
    }
    return false;
}

int
csi_source_pool_poll(csi_source_pool *p, cs_error **err)
{
    bool changed;
    int ret = 0;

    if (p == NULL)
        return 0;
    pthread_mutex_lock(&p->lock);
    if (p->failed)
        ret = take_failure(p, err);
    changed = p->events != p->events_seen;
    pthread_mutex_unlock(&p->lock);
    if (ret == 0 && changed)
        report(p);
    return ret;
}

int
csi_source_pool_wait(csi_source_pool *p, cs_error **err)
{
    return wait_for(p, all_over, err);
}

void
csi_source_pool_result(const csi_source_pool *p, size_t id, char blob[CS_DIGEST_STRLEN],
                       int64_t *size)
{
    memcpy(blob, p->jobs[id]->blob, CS_DIGEST_STRLEN);
    *size = p->jobs[id]->blob_size;
}

void
csi_source_pool_free(csi_source_pool *p)
{
    size_t i;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->closing = true;
    if (p->nover < p->njobs)
        atomic_store(&p->canceled, true); /* nobody will wait for what is left */
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    for (i = 0; i < p->njobs; i++) {
        job *j = p->jobs[i];

        /* a blob made before a failure elsewhere is as good as any: remember it */
        if (j->state == JOB_DONE && !j->collected)
            csi_source_layer_stored(p->store, p->st, j->diff_id, j->blob, j->blob_size,
                                    j->streamed ? "compressed as it streamed" : "compressed now");
        if (j->state == JOB_QUEUED && j->tmp != NULL)
            unlink(j->tmp);
        free(j->tmp);
        csi_source_spec_free(j->spec);
        free(j);
    }
    free(p->jobs);
    free(p->threads);
    cs_error_free(p->fail_err);
    pthread_cond_destroy(&p->changed);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
