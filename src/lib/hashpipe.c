/* Hashing a file being written, in a thread of its own: see hashpipe.h.
 *
 * The writer only moves END forward under the lock, and wakes the thread when it sleeps and
 * STEP bytes are waiting: a wakeup per write (a libcurl write is ~16 KiB) would cost more
 * than it saves. The thread hashes what is there in reads of BUF_SIZE, then looks again. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "error_int.h"
#include "fsutil.h"
#include "hashpipe.h"

#define BUF_SIZE (256u * 1024)
#define STEP (1u << 20)
#define BATCH_MAX (8u << 20) /* hashed between two looks at CANCELED */

struct csi_hashpipe {
    int fd;
    const char *path;
    cs_hasher *h;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t more; /* END moved, or the pipe is ending */
    /* under the lock */
    uint64_t end;    /* bytes written */
    uint64_t done;   /* bytes hashed */
    bool sleeping;   /* the thread waits on MORE */
    bool finishing;  /* hash up to END, then stop */
    bool canceled;   /* stop now */
    int read_errno;  /* a pread failed (0: none); the thread then stops */
    bool read_short; /* a pread found the file shorter than END */
};

static atomic_uint running; /* slots taken */

bool
csi_hashpipe_reserve(void)
{
    unsigned cpus = csi_cpus(), n = atomic_load(&running);

    /* the writer's thread is one CPU's worth already */
    while (n + 1 < cpus) {
        if (atomic_compare_exchange_weak(&running, &n, n + 1))
            return true;
    }
    return false;
}

void
csi_hashpipe_unreserve(void)
{
    atomic_fetch_sub(&running, 1);
}

static void *
run(void *arg)
{
    csi_hashpipe *p = arg;
    char *buf = malloc(BUF_SIZE);
    uint64_t at, to;
    int e = 0;

    pthread_mutex_lock(&p->lock);
    if (buf == NULL) {
        p->read_errno = ENOMEM;
        goto out;
    }
    for (;;) {
        while (!p->canceled && !p->finishing && p->end - p->done < STEP) {
            p->sleeping = true;
            pthread_cond_wait(&p->more, &p->lock);
            p->sleeping = false;
        }
        if (p->canceled || (p->finishing && p->done == p->end))
            break;
        at = p->done;
        to = p->end - at > BATCH_MAX ? at + BATCH_MAX : p->end;
        pthread_mutex_unlock(&p->lock);
        while (at < to) {
            size_t want = to - at < BUF_SIZE ? (size_t)(to - at) : BUF_SIZE;
            ssize_t r = pread(p->fd, buf, want, (off_t)at);

            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                e = r < 0 ? errno : -1;
                break;
            }
            cs_hasher_update(p->h, buf, (size_t)r);
            at += (uint64_t)r;
        }
        pthread_mutex_lock(&p->lock);
        p->done = at;
        if (e != 0) {
            if (e > 0)
                p->read_errno = e;
            else
                p->read_short = true;
            break;
        }
    }
out:
    pthread_mutex_unlock(&p->lock);
    free(buf);
    return NULL;
}

int
csi_hashpipe_start(csi_hashpipe **out, int fd, const char *path, cs_hasher *h, uint64_t from,
                   cs_error **err)
{
    csi_hashpipe *p = calloc(1, sizeof(*p));
    sigset_t all, old;
    int e;

    if (p == NULL)
        return csi_error_oom(err);
    p->fd = fd;
    p->path = path;
    p->h = h;
    p->end = p->done = from;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->more, NULL);
    /* signals are the calling thread's business */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    e = pthread_create(&p->thread, NULL, run, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        pthread_cond_destroy(&p->more);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return csi_error_errno(err, e, "start a hashing thread");
    }
    *out = p;
    return 0;
}

void
csi_hashpipe_advance(csi_hashpipe *p, uint64_t end)
{
    pthread_mutex_lock(&p->lock);
    p->end = end;
    if (p->sleeping && end - p->done >= STEP)
        pthread_cond_signal(&p->more);
    pthread_mutex_unlock(&p->lock);
}

/* Tell the thread to finish (or, with CANCEL, to stop now) and wait for it. */
static void
stop(csi_hashpipe *p, bool cancel)
{
    pthread_mutex_lock(&p->lock);
    if (cancel)
        p->canceled = true;
    else
        p->finishing = true;
    pthread_cond_signal(&p->more);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
}

static void
release(csi_hashpipe *p)
{
    pthread_cond_destroy(&p->more);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int
csi_hashpipe_finish(csi_hashpipe *p, cs_error **err)
{
    int ret = 0;

    stop(p, false);
    /* the thread is gone: its fields are ours */
    if (p->read_errno != 0)
        ret = csi_error_errno(err, p->read_errno, "read %s", p->path);
    else if (p->read_short || p->done != p->end)
        ret = csi_error_set(err, CS_EIO, "read %s: the file is shorter than what was written",
                            p->path);
    release(p);
    return ret;
}

void
csi_hashpipe_cancel(csi_hashpipe *p)
{
    if (p == NULL)
        return;
    stop(p, true);
    release(p);
}
