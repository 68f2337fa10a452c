/* The store's blob writers (see cs_store_writer_open in include/cachesync/store.h): partial
 * files under partial/, each under a lock file of its own, resumed where a download stopped,
 * verified, made durable and renamed into blobs/sha256. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cachesync/store.h>
#include "error_int.h"
#include "fsutil.h"
#include "hashpipe.h"
#include "store_int.h"

struct cs_store_writer {
    cs_store *store;
    char digest[CS_DIGEST_STRLEN];
    uint64_t size;
    uint64_t offset;
    int fd;      /* partial file */
    int lock_fd; /* held for the writer's life */
    char *partial;
    cs_hasher *hasher;
    csi_hashpipe *pipe; /* hashing in a thread of its own (a large blob), else NULL */
    bool present;
    bool failed;     /* a write failed: the partial may be short; do not commit */
    bool verified;   /* size and digest checked: the bytes are final */
    uint64_t synced; /* bytes handed to the disk's writeback so far */
};

/* Writeback is started every this many bytes of a blob (sync_file_range). */
#define WRITEBACK_STEP (8u << 20)
/* A blob at least this large is hashed by a thread of its own, when a CPU is free for it
 * (hashpipe.h). Smaller ones are many, and already in parallel with each other's transfers. */
#define HASHPIPE_MIN (32u << 20)

/* Feed the bytes already in the partial file to the hasher, so a resumed download ends with
 * the digest of the whole blob without reading it twice over the network. */
static int
rehash_partial(cs_store_writer *w, cs_error **err)
{
    char *buf;
    uint64_t left = w->offset;
    int ret = 0;

    buf = malloc(1 << 20);
    if (buf == NULL)
        return csi_error_oom(err);
    if (lseek(w->fd, 0, SEEK_SET) < 0) {
        ret = csi_error_errno(err, errno, "seek %s", w->partial);
        goto out;
    }
    while (left > 0) {
        ssize_t r = read(w->fd, buf, left < (1 << 20) ? (size_t)left : (1 << 20));

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ret = csi_error_errno(err, r < 0 ? errno : EIO, "read %s", w->partial);
            goto out;
        }
        cs_hasher_update(w->hasher, buf, (size_t)r);
        left -= (uint64_t)r;
    }
out:
    free(buf);
    return ret;
}

/* Hash from W's offset on in a thread of its own, when W is large and a CPU is free. */
static int
maybe_pipe(cs_store_writer *w, cs_error **err)
{
    int ret;

    if (w->size < HASHPIPE_MIN || w->size - w->offset < HASHPIPE_MIN || !csi_hashpipe_reserve())
        return 0;
    ret = csi_hashpipe_start(&w->pipe, w->fd, w->partial, w->hasher, w->offset, err);
    if (ret < 0)
        csi_hashpipe_unreserve();
    return ret;
}

/* Stop W's pipe, if any, whatever it hashed (before the file it reads is closed or cut). */
static void
drop_pipe(cs_store_writer *w)
{
    if (w->pipe == NULL)
        return;
    csi_hashpipe_cancel(w->pipe);
    csi_hashpipe_unreserve();
    w->pipe = NULL;
}

/* Every byte written so far is in W's hasher: the pipe, if any, is finished. */
static int
end_pipe(cs_store_writer *w, cs_error **err)
{
    int ret;

    if (w->pipe == NULL)
        return 0;
    ret = csi_hashpipe_finish(w->pipe, err);
    csi_hashpipe_unreserve();
    w->pipe = NULL;
    return ret;
}

int
cs_store_writer_open(cs_store_writer **out, cs_store *s, const char *digest, int64_t size,
                     cs_error **err)
{
    cs_store_writer *w;
    char *lock = NULL;
    struct stat st;
    int ret;

    ret = cs_digest_validate(digest, err);
    if (ret < 0)
        return ret;
    if (size < 0)
        return csi_error_set(err, CS_EINVAL, "blob %s: negative size", digest);
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return csi_error_oom(err);
    w->store = s;
    w->fd = -1;
    w->lock_fd = -1;
    w->size = (uint64_t)size;
    snprintf(w->digest, sizeof(w->digest), "%s", digest);
    if (asprintf(&w->partial, "%s/partial/%s", s->dir, digest + 7) < 0 ||
        asprintf(&lock, "%s/partial/%s.lock", s->dir, digest + 7) < 0) {
        w->partial = NULL;
        lock = NULL;
        ret = csi_error_oom(err);
        goto fail;
    }
    /* A lock file of its own, never renamed or removed: locking the partial itself would
     * let a waiter hold the inode that just became the committed blob. */
    w->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (w->lock_fd < 0) {
        ret = csi_error_errno(err, errno, "open %s", lock);
        goto fail;
    }
    while (flock(w->lock_fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            ret = csi_error_errno(err, errno, "lock %s", lock);
            goto fail;
        }
    }
    if (cs_store_has_blob(s, digest, size)) {
        w->present = true;
        goto done;
    }
    w->fd = open(w->partial, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (w->fd < 0 || fstat(w->fd, &st) != 0) {
        ret = csi_error_errno(err, errno, "open %s", w->partial);
        goto fail;
    }
    ret = cs_hasher_new(&w->hasher, err);
    if (ret < 0)
        goto fail;
    w->offset = (uint64_t)st.st_size;
    if (w->offset > w->size) {
        /* longer than the blob can be: garbage, start over */
        if (ftruncate(w->fd, 0) != 0) {
            ret = csi_error_errno(err, errno, "truncate %s", w->partial);
            goto fail;
        }
        w->offset = 0;
    }
    ret = rehash_partial(w, err);
    if (ret < 0)
        goto fail;
    if (lseek(w->fd, (off_t)w->offset, SEEK_SET) < 0) {
        ret = csi_error_errno(err, errno, "seek %s", w->partial);
        goto fail;
    }
    ret = maybe_pipe(w, err);
    if (ret < 0)
        goto fail;
done:
    free(lock);
    *out = w;
    return 0;
fail:
    free(lock);
    cs_store_writer_close(w);
    return ret;
}

bool
cs_store_writer_present(const cs_store_writer *w)
{
    return w->present;
}

uint64_t
cs_store_writer_offset(const cs_store_writer *w)
{
    return w->offset;
}

const char *
cs_store_writer_partial_path(const cs_store_writer *w)
{
    return w->present ? NULL : w->partial;
}

int
cs_store_writer_write(cs_store_writer *w, const void *data, size_t len, cs_error **err)
{
    size_t done = 0;

    if (w->present || w->fd < 0 || w->verified)
        return csi_error_set(err, CS_EINVAL, "blob %s: writer is not open", w->digest);
    if (len > w->size - w->offset)
        return csi_error_set(err, CS_EDIGEST, "blob %s: more data than its %llu bytes", w->digest,
                             (unsigned long long)w->size);
    while (done < len) {
        ssize_t r = write(w->fd, (const char *)data + done, len - done);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;

            /* keep the partial consistent with offset: cut back what a short write left */
            if (ftruncate(w->fd, (off_t)w->offset) != 0 ||
                lseek(w->fd, (off_t)w->offset, SEEK_SET) < 0)
                w->failed = true;
            return csi_error_errno(err, e, "write %s", w->partial);
        }
        done += (size_t)r;
    }
    w->offset += len;
    if (w->pipe != NULL)
        csi_hashpipe_advance(w->pipe, w->offset);
    else
        cs_hasher_update(w->hasher, data, len);
#ifdef SYNC_FILE_RANGE_WRITE
    /* start the disk writing what has come so far (without waiting for it), so that the
     * commit's fsync waits only for the last few MiB, not for the whole blob */
    if (w->offset - w->synced >= WRITEBACK_STEP) {
        (void)sync_file_range(w->fd, (off_t)w->synced, (off_t)(w->offset - w->synced),
                              SYNC_FILE_RANGE_WRITE);
        w->synced = w->offset;
    }
#endif
    return 0;
}

int
cs_store_writer_restart(cs_store_writer *w, cs_error **err)
{
    int ret;

    if (w->fd < 0)
        return csi_error_set(err, CS_EINVAL, "blob %s: writer is not open", w->digest);
    drop_pipe(w); /* first: it reads the file */
    if (ftruncate(w->fd, 0) != 0 || lseek(w->fd, 0, SEEK_SET) < 0)
        return csi_error_errno(err, errno, "truncate %s", w->partial);
    cs_hasher_free(w->hasher);
    w->hasher = NULL;
    w->offset = 0;
    w->failed = false;
    w->verified = false;
    w->synced = 0;
    ret = cs_hasher_new(&w->hasher, err);
    if (ret == 0)
        ret = maybe_pipe(w, err);
    return ret;
}

int
cs_store_writer_verify(cs_store_writer *w, cs_error **err)
{
    char got[CS_DIGEST_STRLEN];
    int ret;

    if (w->present || w->verified)
        return 0;
    if (w->fd < 0 || w->failed)
        return csi_error_set(err, CS_EIO, "blob %s: incomplete write", w->digest);
    if (w->offset != w->size)
        return csi_error_set(err, CS_EDIGEST, "blob %s: got %llu bytes, expected %llu", w->digest,
                             (unsigned long long)w->offset, (unsigned long long)w->size);
    ret = end_pipe(w, err);
    if (ret < 0) {
        /* what was written could not be read back: trust none of it */
        if (cs_store_writer_restart(w, NULL) < 0)
            w->failed = true;
        return ret;
    }
    cs_hasher_final(w->hasher, got);
    if (strcmp(got, w->digest) != 0) {
        /* the data is wrong, not just short: never resume from it; the writer stays usable
         * from byte 0 */
        int r = csi_error_set(err, CS_EDIGEST, "blob %s: content has digest %s", w->digest, got);

        if (cs_store_writer_restart(w, NULL) < 0)
            w->failed = true;
        return r;
    }
    w->verified = true;
    return 0;
}

int
cs_store_writer_commit(cs_store_writer *w, cs_error **err)
{
    char *path = NULL, *dir = NULL;
    int ret;

    if (w->present)
        return 0;
    ret = cs_store_writer_verify(w, err);
    if (ret < 0)
        return ret;
    if (fsync(w->fd) != 0)
        return csi_error_errno(err, errno, "fsync %s", w->partial);
    ret = cs_store_blob_path(&path, w->store, w->digest, err);
    if (ret < 0)
        return ret;
    if (rename(w->partial, path) != 0) {
        ret = csi_error_errno(err, errno, "rename %s to %s", w->partial, path);
        free(path);
        return ret;
    }
    if (asprintf(&dir, "%s/blobs/sha256", w->store->dir) >= 0) {
        csi_fs_fsync_dir(dir);
        free(dir);
    }
    free(path);
    close(w->fd);
    w->fd = -1;
    w->present = true;
    return 0;
}

void
cs_store_writer_close(cs_store_writer *w)
{
    if (w == NULL)
        return;
    /* an empty partial helps nobody: remove it while we still hold the lock */
    drop_pipe(w);
    if (w->fd >= 0 && !w->present && w->offset == 0)
        unlink(w->partial);
    if (w->fd >= 0)
        close(w->fd);
    if (w->lock_fd >= 0)
        close(w->lock_fd); /* releases the flock */
    cs_hasher_free(w->hasher);
    free(w->partial);
    free(w);
}
