/* gzip on several cores: see pgzip.h.
 *
 * Each block of the input becomes one gzip member (RFC 1952 2.2: a gzip file is a series of
 * members, and every reader of image layers, Go's compress/gzip in dockerd, containerd and
 * BuildKit included, reads them all; eStargz layers are built the same way). A member is
 * deflated by libdeflate, which on this project's machines compresses 2-4x faster than zlib
 * at the same level and smaller (see the commit that brought it), but only whole buffers,
 * with no preset dictionary: hence independent members rather than one deflate stream
 * (which zlib could chain with deflateSetDictionary, as pigz does, at zlib's speed).
 *
 * Every member starts with the same 10 bytes, {1f 8b 08 00 00 00 00 00 00 03}: no flags, mtime 0,
 * XFL 0, OS 3.
 *
 * A block whose bytes look random is stored instead (RFC 1951 3.2.4: a header byte, LEN and
 * ~LEN, then at most 65535 bytes), as is one that libdeflate cannot shrink below 97%.
 *
 * After the last block comes a footer member: empty, with an extra field (RFC 1952 2.3.1.1,
 * subfield "cs", 8 bytes) holding the input's total size, little endian. A member's own
 * ISIZE only counts that member; the footer lets csi_pgzip_total_size() tell what a blob
 * decompresses to from its last 37 bytes (eStargz ends its layers with such an empty member
 * too). An empty input is the footer alone: still a valid gzip file of nothing.
 *
 * Threads: one pool for the process, started when the first stream opens and joined when the
 * last one is freed. Streams queue their full blocks; the pool's threads compress them in any
 * order; each stream takes its own finished blocks back in order and writes them to its sink
 * from its own thread. A task (block buffer + output buffer) comes from a free list shared
 * by all streams, and at most `budget` exist at once (a stream without any task may always
 * make one, so every stream progresses); that bounds memory whatever the number of streams. */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libdeflate.h>

#include "error_int.h"
#include "fsutil.h"
#include "pgzip.h"

#define MAX_THREADS 8
#define STORED_MAX 65535u
/* a member deflated: header and trailer, then the block deflated (when that does not fit,
 * the block goes out stored) */
#define OUT_CAP (CSI_PGZIP_BLOCK + CSI_PGZIP_BLOCK / 16 + 1024)

enum task_state { T_FILLING, T_QUEUED, T_DONE, T_FAILED };

typedef struct task {
    csi_pgzip *owner;
    struct task *next;  /* in the pool's queue or on the free list */
    struct task *onext; /* in the owner's list of submitted blocks */
    unsigned char *buf; /* the block */
    size_t len;
    int level;
    enum task_state state; /* under the pool lock once queued */
    unsigned char *out;    /* the member, unless stored */
    size_t out_len;
    bool stored; /* the member is the block in stored blocks: CRC is its CRC-32 */
    uint32_t crc;
} task;

struct csi_pgzip {
    int level;
    csi_compress_sink_fn sink;
    void *payload;
    bool failed, finished;
    task *cur;         /* the block being filled */
    task *head, *tail; /* submitted blocks, in input order, not yet written out */
    size_t inflight;   /* blocks on that list */
    uint64_t total;
    /* the stream's own compressor, when the pool has no threads */
    struct libdeflate_compressor *ld;
    int ld_level;
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

/* true when the bytes are spread about evenly over all 256 values: random data, or data
 * compressed already. Then deflate would find nearly nothing, at its full cost. Integer
 * arithmetic only, so that the decision, and so the blob's digest, is the same on every
 * machine: with c[v] the count of value v among N bytes, sum(c[v]^2) * 256 / N^2 is 1 for a
 * perfectly flat histogram, about 1 + 256/N for random bytes, and 10 or more for text. */
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

static void
le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)((v >> 8) & 0xff);
    p[2] = (unsigned char)((v >> 16) & 0xff);
    p[3] = (unsigned char)((v >> 24) & 0xff);
}

/* T's block as a member in T->out (or marked stored), with the compressor *LD (made or remade for
 * T's level): false only when libdeflate cannot allocate one. */
static bool
compress_block(task *t, struct libdeflate_compressor **ld, int *ld_level)
{
    size_t n = 0;

    if (!looks_random(t->buf, t->len)) {
        if (*ld != NULL && *ld_level != t->level) {
            libdeflate_free_compressor(*ld);
            *ld = NULL;
        }
        if (*ld == NULL) {
            *ld = libdeflate_alloc_compressor(t->level);
            if (*ld == NULL)
                return false;
            *ld_level = t->level;
        }
        /* 0 when it does not fit: then stored */
        n = libdeflate_gzip_compress(*ld, t->buf, t->len, t->out, OUT_CAP);
    }
    if (n > 0 && n * 100 < t->len * 97 + 18 * 100) {
        /* every member gets the stored members' header: XFL 0 and OS 3 (Unix) where libdeflate
         * writes its level hint and OS 255, which Go's compress/gzip writes too; so a reader
         * can tell a blob of ours from its first 10 bytes (pull_stream.c); neither byte
         * changes what the member decompresses to (RFC 1952 2.3.1) */
        t->out[8] = 0;
        t->out[9] = 3;
        t->out_len = n;
        t->stored = false;
    } else {
        /* written out from the block itself (emit_stored): the output buffer's pages stay
         * untouched, which keeps the resident size down on incompressible data */
        t->crc = libdeflate_crc32(0, t->buf, t->len);
        t->stored = true;
    }
    return true;
}

static void *
worker(void *arg)
{
    struct libdeflate_compressor *ld = NULL;
    int ld_level = 0;
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
        ok = compress_block(t, &ld, &ld_level);
        pthread_mutex_lock(&mu);
        t->state = ok ? T_DONE : T_FAILED;
        pthread_cond_broadcast(&done_cv);
    }
    pthread_mutex_unlock(&mu);
    libdeflate_free_compressor(ld);
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
    want = want_threads ? want_threads : csi_cpus();
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
    budget = nthreads ? nthreads + 1 : 1;
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

void
csi_pgzip_hold(void)
{
    pthread_mutex_lock(&life_mu);
    pool_join_users();
    pthread_mutex_unlock(&life_mu);
}

void
csi_pgzip_release(void)
{
    pthread_mutex_lock(&life_mu);
    pool_leave();
    pthread_mutex_unlock(&life_mu);
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

/* T's block as one member of stored blocks (RFC 1951 3.2.4: BFINAL on the last, LEN, ~LEN). */
static int
emit_stored(csi_pgzip *g, const task *t, cs_error **err)
{
    static const unsigned char hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    unsigned char b[8];
    size_t off = 0, n;
    int ret = put(g, hdr, sizeof(hdr), err);

    do {
        n = t->len - off > STORED_MAX ? STORED_MAX : t->len - off;
        b[0] = off + n == t->len ? 1 : 0;
        b[1] = (unsigned char)(n & 0xff);
        b[2] = (unsigned char)(n >> 8);
        b[3] = (unsigned char)(~n & 0xff);
        b[4] = (unsigned char)((~n >> 8) & 0xff);
        if (ret == 0)
            ret = put(g, b, 5, err);
        if (ret == 0)
            ret = put(g, t->buf + off, n, err);
        off += n;
    } while (ret == 0 && off < t->len);
    le32(b, t->crc);
    le32(b + 4, (uint32_t)t->len);
    return ret == 0 ? put(g, b, 8, err) : ret;
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
        if (st == T_FAILED) {
            ret = csi_error_oom(err); /* libdeflate could not allocate a compressor */
        } else {
            ret = t->stored ? emit_stored(g, t, err) : put(g, t->out, t->out_len, err);
            g->total += t->len;
        }
        task_release(t);
        if (ret < 0)
            return ret;
    }
}

/* A task to fill: from the free list, or a new one while the budget allows (or the stream
 * has none in flight), else once one of the stream's own blocks is written out or another
 * stream frees one. */
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
            t->buf = malloc(CSI_PGZIP_BLOCK);
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
    t->level = g->level;
    g->cur = t;
    return 0;
}

/* Hand the block being filled to the pool (or compress it here when the pool has no
 * threads), then write out whatever is finished. */
static int
submit(csi_pgzip *g, cs_error **err)
{
    task *t = g->cur;
    bool here;

    g->cur = NULL;
    pthread_mutex_lock(&mu);
    here = nthreads == 0;
    if (g->tail != NULL)
        g->tail->onext = t;
    else
        g->head = t;
    g->tail = t;
    g->inflight++;
    t->state = T_QUEUED;
    if (!here) {
        if (q_tail != NULL)
            q_tail->next = t;
        else
            q_head = t;
        q_tail = t;
        pthread_cond_signal(&work_cv);
    }
    pthread_mutex_unlock(&mu);
    if (here) {
        bool ok = compress_block(t, &g->ld, &g->ld_level);

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
        memcpy(g->cur->buf + g->cur->len, p, n);
        g->cur->len += n;
        p += n;
        len -= n;
        if (g->cur->len == CSI_PGZIP_BLOCK)
            ret = submit(g, err);
    }
    if (ret < 0)
        g->failed = true;
    return ret;
}

/* The footer member: FLG.FEXTRA, XLEN 12, subfield "cs" of 8 bytes (the total), an empty final
 * stored block, CRC-32 0 and ISIZE 0 of the empty content. */
static void
footer(unsigned char f[CSI_PGZIP_FOOTER], uint64_t total)
{
    static const unsigned char head[16] = {0x1f, 0x8b, 8,  4, 0,   0,   0, 0,
                                           0,    3,    12, 0, 'c', 's', 8, 0};
    static const unsigned char end[13] = {1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0};
    int i;

    memcpy(f, head, sizeof(head));
    for (i = 0; i < 8; i++)
        f[16 + i] = (unsigned char)((total >> (8 * i)) & 0xff);
    memcpy(f + 24, end, sizeof(end));
}

bool
csi_pgzip_total_size(uint64_t *total, const unsigned char tail[CSI_PGZIP_FOOTER])
{
    unsigned char f[CSI_PGZIP_FOOTER];
    uint64_t n = 0;
    int i;

    for (i = 7; i >= 0; i--)
        n = n << 8 | tail[16 + i];
    footer(f, n);
    if (memcmp(f, tail, CSI_PGZIP_FOOTER) != 0)
        return false;
    *total = n;
    return true;
}

int
csi_pgzip_finish(csi_pgzip *g, cs_error **err)
{
    unsigned char f[CSI_PGZIP_FOOTER];
    int ret = 0;

    if (g->failed || g->finished)
        return csi_error_set(err, CS_EINVAL, "compressor used after an error or its end");
    if (g->cur != NULL && g->cur->len > 0)
        ret = submit(g, err);
    if (ret == 0)
        ret = drain(g, true, err);
    if (ret == 0) {
        footer(f, g->total);
        ret = put(g, f, sizeof(f), err);
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
    /* the pool may still be compressing blocks of a stream abandoned after an error */
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
    libdeflate_free_compressor(g->ld);
    free(g);
    pthread_mutex_lock(&life_mu);
    pool_leave();
    pthread_mutex_unlock(&life_mu);
}
