/* gzip on several cores: see pgzip.h.
 *
 * The format facts this rests on (RFC 1951, RFC 1952, and pigz's use of them):
 * - a deflate stream is a sequence of blocks; only the last has BFINAL set. A sync flush ends
 *   the current block and adds an empty stored block, which leaves the stream on a byte
 *   boundary, so the next piece can start with a new block header at the next byte;
 * - back-references reach 32 KiB into the output already produced, whichever block made it:
 *   deflating a block with the 32 KiB before it as a preset dictionary (deflateSetDictionary
 *   on a raw stream) lets it refer to them, and the decoder has them in its window;
 * - a stored block is one byte of header (BFINAL, BTYPE 00, padding), LEN and ~LEN in two
 *   bytes each (little endian), then LEN <= 65535 bytes;
 * - the gzip trailer's CRC-32 of the whole input is crc32_combine() of the blocks' CRCs.
 *
 * Threads: one pool for the process, started when the first stream opens and joined when the
 * last one is freed. Streams queue their full blocks; the pool's threads deflate them in any
 * order; each stream takes its own finished blocks back in order and writes them to its sink
 * from its own thread. A task (block buffer + output buffer) comes from a free list shared
 * by all streams, and at most `budget` exist at once (a stream without any task may always
 * make one, so every stream progresses); that bounds memory whatever the number of streams. */
#include "config.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "error_int.h"
#include "pgzip.h"

#define DICT (32u * 1024)
#define MAX_THREADS 8
#define STORED_MAX 65535u
/* room for a block deflated (worst case a little above its size) or stored */
#define OUT_CAP (CSI_PGZIP_BLOCK + CSI_PGZIP_BLOCK / 8 + 1024)

enum task_state { T_FILLING, T_QUEUED, T_DONE, T_FAILED };

typedef struct task {
    csi_pgzip *owner;
    struct task *next;  /* in the pool's queue or on the free list */
    struct task *onext; /* in the owner's list of submitted blocks */
    unsigned char *buf; /* DICT bytes of room for the dictionary, then the block */
    size_t dict_len, len;
    bool last;
    int level;
    enum task_state state; /* under the pool lock once queued */
    unsigned char *out;
    size_t out_len;
    uLong crc;
} task;

struct csi_pgzip {
    int level;
    csi_compress_sink_fn sink;
    void *payload;
    bool header_done, failed, finished;
    task *cur;                /* the block being filled */
    task *head, *tail;        /* submitted blocks, in input order, not yet written out */
    size_t inflight;          /* blocks on that list */
    unsigned char dict[DICT]; /* the last DICT bytes of the input so far */
    size_t dict_len;
    uLong crc;
    uint64_t total;
    /* the stream's own deflate state, when the pool has no threads */
    z_stream z;
    bool z_init;
    int z_level;
};

/* ---- the pool -------------------------------------------------------------------------- */

static pthread_mutex_t life_mu = PTHREAD_MUTEX_INITIALIZER; /* starting and stopping */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;      /* everything below */
static pthread_cond_t work_cv = PTHREAD_COND_INITIALIZER;   /* queued, or stopping */
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;   /* a task done, or one freed */
static unsigned want_threads;
static unsigned users;
static pthread_t threads[MAX_THREADS];
static unsigned nthreads; /* 0: every stream deflates in its own thread */
static bool stopping;
static task *q_head, *q_tail;
static task *free_tasks;
static unsigned allocated, budget;

void
csi_pgzip_set_threads(unsigned n)
{
    pthread_mutex_lock(&mu);
    want_threads = n;
    pthread_mutex_unlock(&mu);
}

static unsigned
cpus(void)
{
    long n;
#ifdef CPU_COUNT
    cpu_set_t set;

    /* a container limited to some CPUs sees them all in sysconf, not here */
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
#endif
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

/* true when the bytes are spread about evenly over all 256 values: random data, or data
 * compressed already. Then deflate would find nearly nothing, at its full cost (zlib spends
 * as long on such input as on text). Integer arithmetic only, so that the decision, and so
 * the blob's digest, is the same on every machine: with c[v] the count of value v among N
 * bytes, sum(c[v]^2) * 256 / N^2 is 1 for a perfectly flat histogram, about 1 + 256/N for
 * random bytes, and 10 or more for text. */
static bool
looks_random(const unsigned char *p, size_t n)
{
    uint32_t c[4][256];
    uint64_t sq = 0, v;
    size_t i;

    if (n < 4096)
        return false;
    memset(c, 0, sizeof(c));
    for (i = 0; i + 4 <= n; i += 4) {
        c[0][p[i]]++;
        c[1][p[i + 1]]++;
        c[2][p[i + 2]]++;
        c[3][p[i + 3]]++;
    }
    for (; i < n; i++)
        c[0][p[i]]++;
    for (i = 0; i < 256; i++) {
        v = (uint64_t)c[0][i] + c[1][i] + c[2][i] + c[3][i];
        sq += v * v;
    }
    /* flat within 3% */
    return sq * 256 * 100 <= (uint64_t)n * n * 103;
}

/* BLK as stored blocks into OUT; returns the bytes written. */
static size_t
store(unsigned char *out, const unsigned char *blk, size_t len, bool last)
{
    size_t o = 0, off = 0, n;

    do {
        n = len - off > STORED_MAX ? STORED_MAX : len - off;
        out[o++] = (last && off + n == len) ? 1 : 0;
        out[o++] = (unsigned char)(n & 0xff);
        out[o++] = (unsigned char)(n >> 8);
        out[o++] = (unsigned char)(~n & 0xff);
        out[o++] = (unsigned char)((~n >> 8) & 0xff);
        memcpy(out + o, blk + off, n);
        o += n;
        off += n;
    } while (off < len);
    return o;
}

/* Deflate T's block with the deflate state Z (initialised at level *ZLEVEL when *ZINIT):
 * false only when zlib cannot allocate its state. */
static bool
deflate_block(task *t, z_stream *z, bool *zinit, int *zlevel)
{
    const unsigned char *blk = t->buf + DICT;
    int zr;

    t->crc = crc32(0L, blk, (uInt)t->len);
    if (t->len > 0 && !looks_random(blk, t->len)) {
        if (*zinit && *zlevel != t->level) {
            deflateEnd(z);
            *zinit = false;
        }
        if (!*zinit) {
            memset(z, 0, sizeof(*z));
            /* -15: raw deflate, the gzip wrapper is ours */
            if (deflateInit2(z, t->level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                return false;
            *zinit = true;
            *zlevel = t->level;
        } else if (deflateReset(z) != Z_OK) {
            return false;
        }
        if (t->dict_len > 0 &&
            deflateSetDictionary(z, blk - t->dict_len, (uInt)t->dict_len) != Z_OK)
            return false;
        z->next_in = (unsigned char *)blk;
        z->avail_in = (uInt)t->len;
        z->next_out = t->out;
        z->avail_out = OUT_CAP;
        zr = deflate(z, t->last ? Z_FINISH : Z_SYNC_FLUSH);
        /* done in one call, with room to spare (else: stored) */
        if ((t->last ? zr == Z_STREAM_END : zr == Z_OK) && z->avail_in == 0 && z->avail_out > 0) {
            t->out_len = OUT_CAP - z->avail_out;
            if (t->out_len * 100 < t->len * 97)
                return true;
        }
    }
    t->out_len = store(t->out, blk, t->len, t->last);
    return true;
}

static void *
worker(void *arg)
{
    z_stream z;
    bool zinit = false;
    int zlevel = 0;
    task *t;
    bool ok;

    (void)arg;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (!stopping && q_head == NULL)
            pthread_cond_wait(&work_cv, &mu);
        if (q_head == NULL)
            break; /* stopping, and nothing is left */
        t = q_head;
        q_head = t->next;
        if (q_head == NULL)
            q_tail = NULL;
        pthread_mutex_unlock(&mu);
        ok = deflate_block(t, &z, &zinit, &zlevel);
        pthread_mutex_lock(&mu);
        t->state = ok ? T_DONE : T_FAILED;
        pthread_cond_broadcast(&done_cv);
    }
    pthread_mutex_unlock(&mu);
    if (zinit)
        deflateEnd(&z);
    return NULL;
}

/* One more user; the first starts the threads (life_mu held). */
static void
pool_join_users(void)
{
    unsigned want, i;
    sigset_t all, old;

    pthread_mutex_lock(&mu);
    if (users++ > 0) {
        pthread_mutex_unlock(&mu);
        return;
    }
    want = want_threads ? want_threads : cpus();
    if (want > MAX_THREADS)
        want = MAX_THREADS;
    stopping = false;
    nthreads = 0;
    pthread_mutex_unlock(&mu);
    if (want > 1) {
        /* signals are the calling thread's business */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        for (i = 0; i < want; i++)
            if (pthread_create(&threads[i], NULL, worker, NULL) != 0)
                break;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_mutex_lock(&mu);
        nthreads = i; /* fewer threads only go slower; none: every stream on its own */
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_lock(&mu);
    budget = nthreads ? 2 * nthreads + 2 : 1;
    pthread_mutex_unlock(&mu);
}

/* One user less; the last stops the threads and frees the tasks (life_mu held). */
static void
pool_leave(void)
{
    unsigned i, n;
    task *t;

    pthread_mutex_lock(&mu);
    if (--users > 0) {
        pthread_mutex_unlock(&mu);
        return;
    }
    stopping = true;
    n = nthreads;
    pthread_cond_broadcast(&work_cv);
    pthread_mutex_unlock(&mu);
    for (i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_lock(&mu);
    nthreads = 0;
    while ((t = free_tasks) != NULL) {
        free_tasks = t->next;
        free(t->buf);
        free(t->out);
        free(t);
        allocated--;
    }
    pthread_mutex_unlock(&mu);
}

static void
task_release(task *t)
{
    pthread_mutex_lock(&mu);
    t->next = free_tasks;
    free_tasks = t;
    pthread_cond_broadcast(&done_cv);
    pthread_mutex_unlock(&mu);
}

/* ---- a stream -------------------------------------------------------------------------- */

int
csi_pgzip_new(csi_pgzip **out, int level, csi_compress_sink_fn sink, void *payload, cs_error **err)
{
    csi_pgzip *g;

    if (level < 1 || level > 9)
        return csi_error_set(err, CS_EINVAL, "gzip level %d is not within 1..9", level);
    g = calloc(1, sizeof(*g));
    if (g == NULL)
        return csi_error_oom(err);
    g->level = level;
    g->sink = sink;
    g->payload = payload;
    g->crc = crc32(0L, Z_NULL, 0);
    pthread_mutex_lock(&life_mu);
    pool_join_users();
    pthread_mutex_unlock(&life_mu);
    *out = g;
    return 0;
}

static int
put(csi_pgzip *g, const unsigned char *p, size_t n, cs_error **err)
{
    if (n == 0 || g->sink == NULL)
        return 0;
    return g->sink(g->payload, (const char *)p, n, err);
}

/* T's output to the sink, after the gzip header the first time. */
static int
emit(csi_pgzip *g, const task *t, cs_error **err)
{
    int ret;

    if (!g->header_done) {
        /* RFC 1952: magic, CM 8, no flags, MTIME 0 (reproducible), XFL as zlib sets it, OS 3 */
        const unsigned char h[10] = {
            0x1f, 0x8b, 8,
            0,    0,    0,
            0,    0,    (unsigned char)(g->level == 9 ? 2 : g->level == 1 ? 4 : 0),
            3};

        ret = put(g, h, sizeof(h), err);
        if (ret < 0)
            return ret;
        g->header_done = true;
    }
    ret = put(g, t->out, t->out_len, err);
    if (ret < 0)
        return ret;
    g->crc = crc32_combine(g->crc, t->crc, (z_off_t)t->len);
    g->total += t->len;
    return 0;
}

/* Write out the stream's finished blocks from the head of its list, in order; with ALL, wait
 * for every submitted block. */
static int
drain(csi_pgzip *g, bool all, cs_error **err)
{
    enum task_state st;
    task *t;
    int ret = 0;

    for (;;) {
        pthread_mutex_lock(&mu);
        t = g->head;
        while (all && t != NULL && t->state == T_QUEUED)
            pthread_cond_wait(&done_cv, &mu);
        if (t == NULL || t->state == T_QUEUED) {
            pthread_mutex_unlock(&mu);
            return 0;
        }
        st = t->state;
        g->head = t->onext;
        if (g->head == NULL)
            g->tail = NULL;
        g->inflight--;
        pthread_mutex_unlock(&mu);
        if (st == T_FAILED)
            ret = csi_error_oom(err); /* zlib could not allocate its state */
        else
            ret = emit(g, t, err);
        task_release(t);
        if (ret < 0)
            return ret;
    }
}

/* A task to fill, primed with the dictionary: from the free list, or a new one while the
 * budget allows (or the stream has none in flight), else once one of the stream's own blocks
 * is written out or another stream frees one. */
static int
take_task(csi_pgzip *g, cs_error **err)
{
    task *t = NULL;
    bool make = false;
    int ret;

    for (;;) {
        pthread_mutex_lock(&mu);
        if (free_tasks != NULL) {
            t = free_tasks;
            free_tasks = t->next;
        } else if (allocated < budget || g->inflight == 0) {
            allocated++;
            make = true;
        } else if (g->head != NULL && g->head->state != T_QUEUED) {
            pthread_mutex_unlock(&mu);
            ret = drain(g, false, err);
            if (ret < 0)
                return ret;
            continue;
        } else {
            pthread_cond_wait(&done_cv, &mu);
            pthread_mutex_unlock(&mu);
            continue;
        }
        pthread_mutex_unlock(&mu);
        break;
    }
    if (make) {
        t = calloc(1, sizeof(*t));
        if (t != NULL) {
            t->buf = malloc(DICT + CSI_PGZIP_BLOCK);
            t->out = malloc(OUT_CAP);
        }
        if (t == NULL || t->buf == NULL || t->out == NULL) {
            if (t != NULL) {
                free(t->buf);
                free(t->out);
                free(t);
            }
            pthread_mutex_lock(&mu);
            allocated--;
            pthread_mutex_unlock(&mu);
            return csi_error_oom(err);
        }
    }
    t->owner = g;
    t->next = t->onext = NULL;
    t->state = T_FILLING;
    t->len = 0;
    t->last = false;
    t->level = g->level;
    t->dict_len = g->dict_len;
    memcpy(t->buf + DICT - g->dict_len, g->dict, g->dict_len);
    g->cur = t;
    return 0;
}

/* Hand the block being filled to the pool (or deflate it here when the pool has no threads),
 * then write out whatever is finished. */
static int
submit(csi_pgzip *g, bool last, cs_error **err)
{
    task *t = g->cur;
    const unsigned char *blk = t->buf + DICT;
    bool inline_;

    t->last = last;
    /* the dictionary of the next block: the last DICT bytes of the input */
    if (t->len >= DICT) {
        memcpy(g->dict, blk + t->len - DICT, DICT);
        g->dict_len = DICT;
    } else if (t->len > 0) {
        size_t keep = g->dict_len + t->len > DICT ? DICT - t->len : g->dict_len;

        memmove(g->dict, g->dict + g->dict_len - keep, keep);
        memcpy(g->dict + keep, blk, t->len);
        g->dict_len = keep + t->len;
    }
    g->cur = NULL;
    pthread_mutex_lock(&mu);
    inline_ = nthreads == 0;
    if (g->tail != NULL)
        g->tail->onext = t;
    else
        g->head = t;
    g->tail = t;
    g->inflight++;
    t->state = T_QUEUED;
    if (!inline_) {
        if (q_tail != NULL)
            q_tail->next = t;
        else
            q_head = t;
        q_tail = t;
        pthread_cond_signal(&work_cv);
    }
    pthread_mutex_unlock(&mu);
    if (inline_) {
        bool ok = deflate_block(t, &g->z, &g->z_init, &g->z_level);

        pthread_mutex_lock(&mu);
        t->state = ok ? T_DONE : T_FAILED;
        pthread_mutex_unlock(&mu);
    }
    return drain(g, false, err);
}

int
csi_pgzip_feed(csi_pgzip *g, const void *data, size_t len, cs_error **err)
{
    const unsigned char *p = data;
    size_t n;
    int ret = 0;

    if (g->failed || g->finished)
        return csi_error_set(err, CS_EINVAL, "compressor used after an error or its end");
    while (len > 0 && ret == 0) {
        if (g->cur == NULL) {
            ret = take_task(g, err);
            if (ret < 0)
                break;
        }
        n = CSI_PGZIP_BLOCK - g->cur->len;
        if (n > len)
            n = len;
        memcpy(g->cur->buf + DICT + g->cur->len, p, n);
        g->cur->len += n;
        p += n;
        len -= n;
        if (g->cur->len == CSI_PGZIP_BLOCK)
            ret = submit(g, false, err);
    }
    if (ret < 0)
        g->failed = true;
    return ret;
}

int
csi_pgzip_finish(csi_pgzip *g, cs_error **err)
{
    unsigned char tr[8];
    uint64_t n;
    int ret = 0;

    if (g->failed || g->finished)
        return csi_error_set(err, CS_EINVAL, "compressor used after an error or its end");
    if (g->cur == NULL)
        ret = take_task(g, err);
    if (ret == 0)
        ret = submit(g, true, err);
    if (ret == 0)
        ret = drain(g, true, err);
    if (ret == 0) {
        /* RFC 1952 trailer: CRC-32, then the input size mod 2^32, little endian */
        n = g->total;
        tr[0] = (unsigned char)(g->crc & 0xff);
        tr[1] = (unsigned char)((g->crc >> 8) & 0xff);
        tr[2] = (unsigned char)((g->crc >> 16) & 0xff);
        tr[3] = (unsigned char)((g->crc >> 24) & 0xff);
        tr[4] = (unsigned char)(n & 0xff);
        tr[5] = (unsigned char)((n >> 8) & 0xff);
        tr[6] = (unsigned char)((n >> 16) & 0xff);
        tr[7] = (unsigned char)((n >> 24) & 0xff);
        ret = put(g, tr, sizeof(tr), err);
    }
    if (ret < 0)
        g->failed = true;
    else
        g->finished = true;
    return ret;
}

void
csi_pgzip_free(csi_pgzip *g)
{
    task *t;

    if (g == NULL)
        return;
    /* the pool may still be deflating blocks of a stream abandoned after an error */
    pthread_mutex_lock(&mu);
    for (t = g->head; t != NULL; t = t->onext)
        while (t->state == T_QUEUED)
            pthread_cond_wait(&done_cv, &mu);
    pthread_mutex_unlock(&mu);
    while ((t = g->head) != NULL) {
        g->head = t->onext;
        task_release(t);
    }
    if (g->cur != NULL)
        task_release(g->cur);
    if (g->z_init)
        deflateEnd(&g->z);
    free(g);
    pthread_mutex_lock(&life_mu);
    pool_leave();
    pthread_mutex_unlock(&life_mu);
}
