/* Tar stream producer: pre-built headers, contents streamed from files or memory. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cachesync/buf.h>
#include "archive.h"
#include "error_int.h"
#include "fsutil.h"
#include "tar.h"

/* write_file's buffer: large reads and writes keep syscalls off the profile */
#define COPY_BUF (256 * 1024)

struct entry {
    char *header; /* the header block(s), built when the entry is added */
    size_t header_len;
    char *path;                   /* content from this file, or */
    char *data;                   /* from this copy, or */
    csi_archive_reader_fn reader; /* from this callback */
    void *reader_payload;
    uint64_t size;
    csi_archive_size_fn size_fn; /* says SIZE when the stream reaches the entry */
    char *name;                  /* for the header built then */
    bool sized;
};

enum phase {
    P_HEADER,
    P_DATA,
    P_PAD,
    P_END, /* the two zero blocks */
    P_DONE,
    P_FAILED,
};

struct csi_archive {
    struct entry *entries;
    size_t n, cap;
    /* stream position */
    size_t cur; /* entry being streamed */
    enum phase phase;
    uint64_t off; /* bytes of the current phase already produced */
    int fd;       /* the current entry's file while its data streams */
};

int
csi_archive_new(csi_archive **out, cs_error **err)
{
    csi_archive *a = calloc(1, sizeof(*a));

    if (a == NULL)
        return csi_error_oom(err);
    a->fd = -1;
    a->phase = P_HEADER;
    *out = a;
    return 0;
}

static void
close_current(csi_archive *a)
{
    if (a->fd >= 0)
        close(a->fd);
    a->fd = -1;
}

void
csi_archive_free(csi_archive *a)
{
    size_t i;

    if (a == NULL)
        return;
    close_current(a);
    for (i = 0; i < a->n; i++) {
        free(a->entries[i].header);
        free(a->entries[i].path);
        free(a->entries[i].data);
        free(a->entries[i].name);
    }
    free(a->entries);
    free(a);
}

void
csi_archive_rewind(csi_archive *a)
{
    close_current(a);
    a->cur = 0;
    a->off = 0;
    a->phase = P_HEADER;
}

/* Append an entry with its header; takes PATH and DATA (freed on failure). */
static int
add_entry(csi_archive *a, const char *name, uint64_t size, unsigned mode, char typeflag, char *path,
          char *data, struct entry **added, cs_error **err)
{
    cs_buf hdr = CS_BUF_INIT;
    struct entry *e;
    int ret;

    if (!csi_tar_path_is_safe(name)) {
        ret = csi_error_set(err, CS_EINVAL, "unsafe archive entry name \"%.200s\"",
                            name != NULL ? name : "");
        goto out;
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;

        e = realloc(a->entries, cap * sizeof(*e));
        if (e == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
        a->entries = e;
        a->cap = cap;
    }
    ret = csi_tar_header(&hdr, name, size, mode, 0, typeflag, err);
    if (ret < 0)
        goto out;
    e = &a->entries[a->n++];
    e->header_len = hdr.len;
    e->header = cs_buf_detach(&hdr);
    e->path = path;
    e->data = data;
    e->size = size;
    e->reader = NULL;
    e->reader_payload = NULL;
    e->size_fn = NULL;
    e->name = NULL;
    e->sized = true;
    if (added != NULL)
        *added = e;
    path = NULL;
    data = NULL;

out:
    cs_buf_dispose(&hdr);
    free(path);
    free(data);
    return ret;
}

int
csi_archive_add_file(csi_archive *a, const char *name, const char *path, uint64_t size,
                     cs_error **err)
{
    char *p = strdup(path);

    if (p == NULL)
        return csi_error_oom(err);
    return add_entry(a, name, size, 0644, CSI_TAR_REG, p, NULL, NULL, err);
}

int
csi_archive_add_mem(csi_archive *a, const char *name, const void *data, size_t len, cs_error **err)
{
    /* one spare byte so an empty entry still has a non-NULL copy */
    char *copy = malloc(len + 1);

    if (copy == NULL)
        return csi_error_oom(err);
    if (len > 0)
        memcpy(copy, data, len);
    return add_entry(a, name, len, 0644, CSI_TAR_REG, NULL, copy, NULL, err);
}

int
csi_archive_add_reader(csi_archive *a, const char *name, uint64_t size, csi_archive_reader_fn fn,
                       void *payload, cs_error **err)
{
    struct entry *e = NULL;
    int ret;

    ret = add_entry(a, name, size, 0644, CSI_TAR_REG, NULL, NULL, &e, err);
    if (ret == 0) {
        e->reader = fn;
        e->reader_payload = payload;
    }
    return ret;
}

int
csi_archive_add_reader_late(csi_archive *a, const char *name, uint64_t estimate,
                            csi_archive_size_fn size_fn, csi_archive_reader_fn fn, void *payload,
                            cs_error **err)
{
    struct entry *e = NULL;
    char *copy = strdup(name != NULL ? name : "");
    int ret;

    if (copy == NULL)
        return csi_error_oom(err);
    ret = add_entry(a, name, estimate, 0644, CSI_TAR_REG, NULL, NULL, &e, err);
    if (ret < 0) {
        free(copy);
        return ret;
    }
    e->reader = fn;
    e->reader_payload = payload;
    e->size_fn = size_fn;
    e->name = copy;
    e->sized = false;
    return 0;
}

/* The stream reached an entry whose size it did not know: ask, and build its header. */
static int
size_entry(struct entry *e, cs_error **err)
{
    cs_buf hdr = CS_BUF_INIT;
    uint64_t size = 0;
    int ret;

    ret = e->size_fn(e->reader_payload, &size, err);
    if (ret == 0)
        ret = csi_tar_header(&hdr, e->name, size, 0644, 0, CSI_TAR_REG, err);
    if (ret < 0) {
        cs_buf_dispose(&hdr);
        return ret;
    }
    free(e->header);
    e->header_len = hdr.len;
    e->header = cs_buf_detach(&hdr);
    e->size = size;
    e->sized = true;
    return 0;
}

int
csi_archive_add_dir(csi_archive *a, const char *name, cs_error **err)
{
    size_t len = name != NULL ? strlen(name) : 0;
    char *dir;
    int ret;

    if (len > 0 && name[len - 1] == '/')
        return add_entry(a, name, 0, 0755, CSI_TAR_DIR, NULL, NULL, NULL, err);
    dir = malloc(len + 2);
    if (dir == NULL)
        return csi_error_oom(err);
    if (len > 0)
        memcpy(dir, name, len);
    dir[len] = '/';
    dir[len + 1] = '\0';
    ret = add_entry(a, dir, 0, 0755, CSI_TAR_DIR, NULL, NULL, NULL, err);
    free(dir);
    return ret;
}

uint64_t
csi_archive_size(const csi_archive *a)
{
    uint64_t total = 2 * CSI_TAR_BLOCK;
    size_t i;

    for (i = 0; i < a->n; i++)
        total +=
            a->entries[i].header_len + a->entries[i].size + csi_tar_padding(a->entries[i].size);
    return total;
}

static int
open_current(csi_archive *a, const struct entry *e, cs_error **err)
{
    struct stat st;

    a->fd = open(e->path, O_RDONLY | O_CLOEXEC);
    if (a->fd < 0)
        return csi_error_errno(err, errno, "open %s", e->path);
    if (fstat(a->fd, &st) < 0)
        return csi_error_errno(err, errno, "stat %s", e->path);
    if (!S_ISREG(st.st_mode))
        return csi_error_set(err, CS_EINVAL, "%s is not a regular file", e->path);
    if ((uint64_t)st.st_size != e->size)
        return csi_error_set(err, CS_EDIGEST, "%s is %lld bytes, expected %llu", e->path,
                             (long long)st.st_size, (unsigned long long)e->size);
#ifdef POSIX_FADV_SEQUENTIAL
    (void)posix_fadvise(a->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    return 0;
}

/* Read file data into BUF; > 0 bytes, or < 0 with *err set. */
static long
read_file_data(csi_archive *a, const struct entry *e, char *buf, size_t want, cs_error **err)
{
    ssize_t r;

    do {
        r = read(a->fd, buf, want);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return csi_error_errno(err, errno, "read %s", e->path);
    if (r == 0)
        return csi_error_set(err, CS_EDIGEST,
                             "%s shrank to %llu bytes while being archived "
                             "(expected %llu)",
                             e->path, (unsigned long long)a->off, (unsigned long long)e->size);
    return (long)r;
}

/* All SIZE bytes were read: the file must be at its end. */
static int
check_file_end(csi_archive *a, const struct entry *e, cs_error **err)
{
    char probe;
    ssize_t r;

    do {
        r = read(a->fd, &probe, 1);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return csi_error_errno(err, errno, "read %s", e->path);
    if (r > 0)
        return csi_error_set(err, CS_EDIGEST, "%s grew past %llu bytes while being archived",
                             e->path, (unsigned long long)e->size);
    close_current(a);
    return 0;
}

long
csi_archive_read(void *payload, char *buf, size_t len, cs_error **err)
{
    static const char zeros[CSI_TAR_BLOCK];
    csi_archive *a = payload;
    struct entry *e;
    size_t done = 0, n;
    uint64_t left;
    long r;
    int ret = 0;

    if (a->phase == P_FAILED)
        return csi_error_set(err, CS_EINVAL, "archive stream already failed");
    if (len > LONG_MAX)
        len = LONG_MAX;
    while (done < len && a->phase != P_DONE) {
        e = a->cur < a->n ? &a->entries[a->cur] : NULL;
        switch (a->phase) {
        case P_HEADER:
            if (e == NULL) {
                a->phase = P_END;
                a->off = 0;
                break;
            }
            if (!e->sized) {
                ret = size_entry(e, err);
                if (ret < 0)
                    goto out;
            }
            left = e->header_len - a->off;
            n = left < len - done ? (size_t)left : len - done;
            memcpy(buf + done, e->header + a->off, n);
            done += n;
            a->off += n;
            if (a->off == e->header_len) {
                a->phase = P_DATA;
                a->off = 0;
            }
            break;
        case P_DATA:
            if (e->path != NULL && a->fd < 0 && a->off == 0) {
                ret = open_current(a, e, err);
                if (ret < 0)
                    goto out;
            }
            if (a->off == e->size) {
                if (e->path != NULL) {
                    ret = check_file_end(a, e, err);
                    if (ret < 0)
                        goto out;
                }
                a->phase = P_PAD;
                a->off = 0;
                break;
            }
            left = e->size - a->off;
            n = left < len - done ? (size_t)left : len - done;
            if (e->path != NULL || e->reader != NULL) {
                r = e->reader != NULL ? e->reader(e->reader_payload, buf + done, n, a->off, err)
                                      : read_file_data(a, e, buf + done, n, err);
                if (r <= 0) {
                    ret = r < 0 ? (int)r
                                : csi_error_set(err, CS_EIO, "no data for archive entry %llu",
                                                (unsigned long long)a->cur);
                    goto out;
                }
                n = (size_t)r;
            } else {
                memcpy(buf + done, e->data + a->off, n);
            }
            done += n;
            a->off += n;
            break;
        case P_PAD:
            left = csi_tar_padding(e->size) - a->off;
            n = left < len - done ? (size_t)left : len - done;
            memset(buf + done, 0, n);
            done += n;
            a->off += n;
            if (a->off == csi_tar_padding(e->size)) {
                a->cur++;
                a->phase = P_HEADER;
                a->off = 0;
            }
            break;
        case P_END:
            left = 2 * CSI_TAR_BLOCK - a->off;
            n = left < len - done ? (size_t)left : len - done;
            memcpy(buf + done, zeros, n < CSI_TAR_BLOCK ? n : CSI_TAR_BLOCK);
            if (n > CSI_TAR_BLOCK)
                memcpy(buf + done + CSI_TAR_BLOCK, zeros, n - CSI_TAR_BLOCK);
            done += n;
            a->off += n;
            if (a->off == 2 * CSI_TAR_BLOCK)
                a->phase = P_DONE;
            break;
        default:
            break;
        }
    }

out:
    if (ret < 0) {
        close_current(a);
        a->phase = P_FAILED;
        return ret;
    }
    return (long)done;
}

int
csi_archive_write_file(csi_archive *a, const char *path, cs_error **err)
{
    csi_fs_tmp t = {-1, NULL, NULL};
    char *buf = NULL;
    int ret = 0;
    long n;

    buf = malloc(COPY_BUF);
    if (buf == NULL)
        return csi_error_oom(err);
    /* the archive appears whole or not at all; a killed writer leaves no temp file */
    ret = csi_fs_tmp_open(&t, path, err);
    if (ret < 0)
        goto out;
    csi_archive_rewind(a);
    for (;;) {
        n = csi_archive_read(a, buf, COPY_BUF, err);
        if (n < 0) {
            ret = (int)n;
            goto out;
        }
        if (n == 0)
            break;
        ret = csi_fs_write_all(t.fd, buf, (size_t)n, csi_fs_tmp_name(&t), err);
        if (ret < 0)
            goto out;
    }
    ret = csi_fs_tmp_commit(&t, err);
out:
    csi_fs_tmp_abort(&t);
    free(buf);
    return ret;
}
