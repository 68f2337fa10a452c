/* A load into the daemon that runs while the layers download.
 *
 * `docker load` unpacks the whole request body into a temporary directory before it reads
 * manifest.json and registers any layer (moby image/tarexport/load.go: Untar, then
 * manifest.json), so the daemon can receive a layer's bytes while they arrive from the
 * registry, and the download and the daemon's copy overlap instead of adding up.
 *
 * What keeps this safe: the last byte of a layer is handed over only once the store has
 * verified and committed the blob, and manifest.json comes last in the archive, after every
 * layer. A failed or corrupt download makes the reader fail, which aborts the upload: the
 * daemon then sees a truncated body without manifest.json and loads nothing. A download that
 * has to restart a layer after some of it was sent fails the streamed load too; the caller
 * then loads from the store as before.
 *
 * A layer whose blob cachesync itself compressed (pgzip.c, which ends it with a footer giving
 * the total size) goes to the daemon decompressed: `docker load` then skips its own gunzip
 * (Go's compress/gzip, one core, after the whole body arrived; moby's DecompressStream takes
 * plain tar as is), which measured 0.6-0.9 s of a 2.9-3.1 s load of a 70 MB layer
 * (scripts/bench's rust-app), while our libdeflate decompression runs on another core as the
 * body streams. A tar entry's size precedes its bytes, so such a layer is sent only once its
 * blob is verified; any other blob streams on while it downloads, as before. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive.h"
#include "error_int.h"
#include "log_int.h"
#include "pgunzip.h"
#include "pgzip.h"
#include "pull_int.h"

static bool
is_zstd(const char *media_type)
{
    return media_type != NULL && strstr(media_type, "zstd") != NULL;
}

bool
csi_pull_stream_possible(const csi_pull *p)
{
    const cs_manifest *m = p->img->parsed;
    size_t i;

    if (p->daemon == NULL || p->daemon_has_ref || p->daemon_has_image)
        return false;
    /* zstd layers for a daemon that reads only gzip are transcoded from the whole blob */
    if (p->dinfo->containerd_store || p->dinfo->major >= 23)
        return true;
    for (i = p->daemon_prefix; i < m->nlayers; i++) {
        if (is_zstd(m->layers[i].media_type))
            return false;
    }
    return true;
}

/* Archive reader of a layer: bytes up to what the store holds, the last one only once the
 * blob is verified. */
long
csi_pull_slot_read(void *payload, char *buf, size_t len, uint64_t off, cs_error **err)
{
    csi_pull_slot *s = payload;
    csi_pull_stream *st = s->st;
    uint64_t limit = 0;
    ssize_t r;
    size_t n;
    int fd;

    pthread_mutex_lock(&st->mu);
    while (s->alias != NULL)
        s = s->alias;
    for (;;) {
        if (s->state == CSI_SLOT_FAILED) {
            pthread_mutex_unlock(&st->mu);
            return csi_error_set(err, CS_EIO, "the layer's download restarted or failed");
        }
        if (s->state == CSI_SLOT_DONE)
            limit = s->size;
        else if (s->state == CSI_SLOT_WRITING)
            limit = s->avail < s->size ? s->avail : s->size - 1;
        if (off < limit)
            break;
        if (st->fetch_over) {
            pthread_mutex_unlock(&st->mu);
            return csi_error_set(err, CS_EIO, "the download stopped");
        }
        pthread_cond_wait(&st->cv, &st->mu);
    }
    s->read_any = true;
    fd = s->fd;
    pthread_mutex_unlock(&st->mu);

    n = limit - off < len ? (size_t)(limit - off) : len;
    do {
        r = pread(fd, buf, n, (off_t)off);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return csi_error_errno(err, errno, "read a layer from the store");
    if (r == 0)
        return csi_error_set(err, CS_EIO, "a layer in the store is shorter than expected");
    return (long)r;
}

/* How every member pgzip.c writes begins (deflate, no flags, mtime 0, XFL 0, OS 3). Go's
 * compress/gzip, with which dockerd, containerd and BuildKit compress, writes OS 255: their
 * layers stream on without waiting for a footer. (zlib's gzip writes this header too: such a
 * blob waits for its end, then goes as it is.) */
static const unsigned char pgzip_head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};

static csi_pull_slot *
resolve(csi_pull_slot *s)
{
    while (s->alias != NULL)
        s = s->alias;
    return s;
}

static bool
read_exact(int fd, void *buf, size_t len, uint64_t off)
{
    ssize_t r;

    do {
        r = pread(fd, buf, len, (off_t)off);
    } while (r < 0 && errno == EINTR);
    return r == (ssize_t)len;
}

int
csi_pull_slot_size(void *payload, uint64_t *size, cs_error **err)
{
    csi_pull_slot *s = payload, *b;
    csi_pull_stream *st = s->st;
    unsigned char head[sizeof(pgzip_head)], tail[CSI_PGZIP_FOOTER];
    bool head_checked = false;
    uint64_t bsize, total = 0;
    int fd;

    s->raw = false;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        b = resolve(s);
        if (b->state == CSI_SLOT_FAILED) {
            pthread_mutex_unlock(&st->mu);
            return csi_error_set(err, CS_EIO, "the layer's download restarted or failed");
        }
        if (b->state == CSI_SLOT_DONE)
            break;
        if (b->state == CSI_SLOT_WRITING && !head_checked && b->avail >= sizeof(head)) {
            bool ours;

            fd = b->fd;
            pthread_mutex_unlock(&st->mu);
            ours = read_exact(fd, head, sizeof(head), 0) &&
                   memcmp(head, pgzip_head, sizeof(head)) == 0;
            pthread_mutex_lock(&st->mu);
            head_checked = true;
            if (!ours) {
                /* not ours: its bytes go on as they arrive */
                *size = resolve(s)->size;
                pthread_mutex_unlock(&st->mu);
                return 0;
            }
            continue;
        }
        if (st->fetch_over) {
            pthread_mutex_unlock(&st->mu);
            return csi_error_set(err, CS_EIO, "the download stopped");
        }
        pthread_cond_wait(&st->cv, &st->mu);
    }
    fd = b->fd;
    bsize = b->size;
    pthread_mutex_unlock(&st->mu);
    *size = bsize;
    if (bsize > CSI_PGZIP_FOOTER && read_exact(fd, tail, sizeof(tail), bsize - sizeof(tail)) &&
        csi_pgzip_total_size(&total, tail)) {
        s->raw = true;
        s->raw_size = total;
        *size = total;
        csi_log(CS_LOG_DEBUG, "layer %zu goes to the daemon decompressed (%llu bytes, blob %llu)",
                st->slots != NULL ? (size_t)(s - st->slots) : 0, (unsigned long long)total,
                (unsigned long long)bsize);
    }
    return 0;
}

long
csi_pull_slot_read_layer(void *payload, char *buf, size_t len, uint64_t off, cs_error **err)
{
    csi_pull_slot *s = payload, *b;
    uint64_t bsize;
    long r;
    int fd, ret;

    if (!s->raw)
        return csi_pull_slot_read(payload, buf, len, off, err);
    if (s->unz != NULL && off != csi_pgunzip_pos(s->unz)) {
        csi_pgunzip_free(s->unz);
        s->unz = NULL;
    }
    if (s->unz == NULL) {
        if (off != 0)
            return csi_error_set(err, CS_EINVAL, "a decompressed layer read out of order");
        pthread_mutex_lock(&s->st->mu);
        b = resolve(s);
        fd = b->fd;
        bsize = b->size;
        s->read_any = true;
        pthread_mutex_unlock(&s->st->mu);
        ret = csi_pgunzip_new(&s->unz, fd, bsize, s->raw_size, "a layer blob", err);
        if (ret < 0)
            return ret;
    }
    r = csi_pgunzip_read(s->unz, buf, len, err);
    if (r == 0)
        r = csi_error_set(err, CS_EIO, "a decompressed layer ended early");
    if (r < 0 || off + (uint64_t)r == s->raw_size) {
        /* done with it: its buffers go before the next layer's come */
        csi_pgunzip_free(s->unz);
        s->unz = NULL;
    }
    return r;
}

void
csi_pull_slot_dispose(csi_pull_slot *s)
{
    if (s == NULL)
        return;
    csi_pgunzip_free(s->unz);
    s->unz = NULL;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

static void *
loader(void *arg)
{
    csi_pull *p = arg;
    csi_pull_stream *st = p->stream;
    struct csi_archive *a = NULL;
    char *familiar = NULL;

    if (p->ref->tag != NULL) {
        familiar = cs_reference_to_string(p->ref, CS_REF_FAMILIAR);
        if (familiar == NULL) {
            st->load_ret = csi_error_oom(&st->load_err);
            return NULL;
        }
    }
    st->load_ret =
        csi_pull_build_archive(&a, p, p->daemon_prefix, familiar, false, true, &st->load_err);
    if (st->load_ret == 0)
        st->load_ret = csi_pull_daemon_load(p, a, &st->load_err);
    csi_archive_free(a);
    free(familiar);
    return NULL;
}

void
csi_pull_stream_free(csi_pull_stream *st)
{
    size_t i;

    if (st == NULL)
        return;
    for (i = 0; i < st->nslots; i++)
        csi_pull_slot_dispose(&st->slots[i]);
    free(st->slots);
    cs_error_free(st->load_err);
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

int
csi_pull_stream_start(csi_pull *p, cs_error **err)
{
    csi_pull_stream *st = calloc(1, sizeof(*st));
    size_t i, n = p->img->parsed->nlayers;
    int rc;

    if (st == NULL)
        return csi_error_oom(err);
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    st->slots = calloc(n ? n : 1, sizeof(*st->slots));
    if (st->slots == NULL) {
        csi_pull_stream_free(st);
        return csi_error_oom(err);
    }
    st->nslots = n;
    for (i = 0; i < n; i++) {
        st->slots[i].st = st;
        st->slots[i].fd = -1;
        st->slots[i].size = (uint64_t)p->img->parsed->layers[i].size;
    }
    p->stream = st;
    rc = pthread_create(&st->thread, NULL, loader, p);
    if (rc != 0) {
        p->stream = NULL;
        csi_pull_stream_free(st);
        return csi_error_errno(err, rc, "start the daemon load");
    }
    st->started = true;
    return 0;
}

int
csi_pull_stream_end(csi_pull *p, bool failed, cs_error **err)
{
    csi_pull_stream *st = p->stream;
    size_t i;
    int ret;

    pthread_mutex_lock(&st->mu);
    st->fetch_over = true;
    if (failed) {
        for (i = 0; i < st->nslots; i++) {
            if (st->slots[i].state != CSI_SLOT_DONE)
                st->slots[i].state = CSI_SLOT_FAILED;
        }
    }
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    if (st->started)
        pthread_join(st->thread, NULL);
    st->started = false;
    ret = st->load_ret;
    if (ret < 0 && err != NULL) {
        *err = st->load_err;
        st->load_err = NULL;
    }
    return ret;
}

void
csi_pull_slot_ready(csi_pull *p, size_t layer, int fd, uint64_t size, uint64_t avail, bool done)
{
    csi_pull_stream *st = p->stream;
    csi_pull_slot *s;

    if (st == NULL || layer >= st->nslots) {
        if (fd >= 0)
            close(fd);
        return;
    }
    s = &st->slots[layer];
    pthread_mutex_lock(&st->mu);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = fd;
    s->size = size;
    s->avail = avail;
    s->state = fd < 0 ? CSI_SLOT_FAILED : done ? CSI_SLOT_DONE : CSI_SLOT_WRITING;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

void
csi_pull_slot_alias(csi_pull *p, size_t layer, size_t earlier)
{
    csi_pull_stream *st = p->stream;

    if (st == NULL || layer >= st->nslots || earlier >= layer)
        return;
    pthread_mutex_lock(&st->mu);
    st->slots[layer].alias = &st->slots[earlier];
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

void
csi_pull_slot_wrote(csi_pull_slot *s, size_t len)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->st->mu);
    s->avail += len;
    pthread_cond_broadcast(&s->st->cv);
    pthread_mutex_unlock(&s->st->mu);
}

void
csi_pull_slot_restarted(csi_pull_slot *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->st->mu);
    /* bytes the daemon already has would not match the new ones */
    if (s->read_any)
        s->state = CSI_SLOT_FAILED;
    s->avail = 0;
    pthread_cond_broadcast(&s->st->cv);
    pthread_mutex_unlock(&s->st->mu);
}

void
csi_pull_slot_finished(csi_pull_slot *s, bool ok)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->st->mu);
    if (s->state != CSI_SLOT_FAILED)
        s->state = ok ? CSI_SLOT_DONE : CSI_SLOT_FAILED;
    pthread_cond_broadcast(&s->st->cv);
    pthread_mutex_unlock(&s->st->mu);
}
