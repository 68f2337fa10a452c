/* Decompressing pgzip blobs member by member: see pgunzip.h. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libdeflate.h>

#include "error_int.h"
#include "pgunzip.h"
#include "pgzip.h"

/* A member's compressed bytes: at most the block stored (5 bytes per stored block of 65535)
 * plus header and trailer; the window holds two, so a refill always brings a whole one. */
#define IN_CAP (2 * CSI_PGZIP_BLOCK + 4096)

struct csi_pgunzip {
    struct libdeflate_decompressor *d;
    int fd;
    uint64_t size, total;
    char *what;
    unsigned char *in; /* window: bytes [in_off, in_off + in_len) of the blob */
    size_t in_pos, in_len;
    uint64_t in_off;
    unsigned char *out; /* the current member's content */
    size_t out_pos, out_len;
    uint64_t pos; /* content returned */
};

int
csi_pgunzip_new(csi_pgunzip **out, int fd, uint64_t size, uint64_t total, const char *what,
                cs_error **err)
{
    csi_pgunzip *u = calloc(1, sizeof(*u));

    if (u == NULL)
        return csi_error_oom(err);
    u->fd = fd;
    u->size = size;
    u->total = total;
    u->what = strdup(what != NULL ? what : "gzip blob");
    u->in = malloc(IN_CAP);
    u->out = malloc(CSI_PGZIP_BLOCK);
    u->d = libdeflate_alloc_decompressor();
    if (u->what == NULL || u->in == NULL || u->out == NULL || u->d == NULL) {
        csi_pgunzip_free(u);
        return csi_error_oom(err);
    }
    *out = u;
    return 0;
}

void
csi_pgunzip_free(csi_pgunzip *u)
{
    if (u == NULL)
        return;
    if (u->d != NULL)
        libdeflate_free_decompressor(u->d);
    free(u->in);
    free(u->out);
    free(u->what);
    free(u);
}

uint64_t
csi_pgunzip_pos(const csi_pgunzip *u)
{
    return u->pos;
}

/* Slide the unread part of the window to its start and fill the rest from the file. */
static int
refill(csi_pgunzip *u, cs_error **err)
{
    size_t keep = u->in_len - u->in_pos, want;
    uint64_t at;
    ssize_t r;

    if (keep > 0 && u->in_pos > 0)
        memmove(u->in, u->in + u->in_pos, keep);
    u->in_off += u->in_pos;
    u->in_pos = 0;
    u->in_len = keep;
    while (u->in_len < IN_CAP) {
        at = u->in_off + u->in_len;
        if (at >= u->size)
            break;
        want = IN_CAP - u->in_len;
        if (u->size - at < want)
            want = (size_t)(u->size - at);
        do {
            r = pread(u->fd, u->in + u->in_len, want, (off_t)at);
        } while (r < 0 && errno == EINTR);
        if (r < 0)
            return csi_error_errno(err, errno, "read %s", u->what);
        if (r == 0)
            return csi_error_set(err, CS_EIO, "%s is shorter than %llu bytes", u->what,
                                 (unsigned long long)u->size);
        u->in_len += (size_t)r;
    }
    return 0;
}

/* Decompress the next member with content into the output buffer: 0, or 1 at the footer. */
static int
next_member(csi_pgunzip *u, cs_error **err)
{
    enum libdeflate_result r;
    size_t used_in, used_out;
    int ret;

    for (;;) {
        if (u->in_off + u->in_pos + CSI_PGZIP_FOOTER >= u->size)
            return 1;
        if (u->in_len - u->in_pos < IN_CAP / 2) {
            ret = refill(u, err);
            if (ret < 0)
                return ret;
        }
        r = libdeflate_gzip_decompress_ex(u->d, u->in + u->in_pos, u->in_len - u->in_pos, u->out,
                                          CSI_PGZIP_BLOCK, &used_in, &used_out);
        if (r != LIBDEFLATE_SUCCESS) {
            return csi_error_set(err, CS_EPROTO, "%s: %s gzip member at byte %llu", u->what,
                                 r == LIBDEFLATE_INSUFFICIENT_SPACE ? "oversized" : "corrupt",
                                 (unsigned long long)(u->in_off + u->in_pos));
        }
        u->in_pos += used_in;
        if (used_out > 0) {
            u->out_pos = 0;
            u->out_len = used_out;
            return 0;
        }
    }
}

/* All TOTAL bytes are out: the blob must hold nothing more than the footer. */
static int
check_end(csi_pgunzip *u, cs_error **err)
{
    int ret = u->out_pos == u->out_len ? next_member(u, err) : 0;

    if (ret < 0)
        return ret;
    if (ret == 0)
        return csi_error_set(err, CS_EPROTO, "%s decompresses to more than its footer's %llu bytes",
                             u->what, (unsigned long long)u->total);
    if (u->in_off + u->in_pos + CSI_PGZIP_FOOTER != u->size)
        return csi_error_set(err, CS_EPROTO, "%s has %llu bytes after its content, not a footer",
                             u->what, (unsigned long long)(u->size - u->in_off - u->in_pos));
    return 0;
}

long
csi_pgunzip_read(csi_pgunzip *u, char *buf, size_t len, cs_error **err)
{
    size_t n;
    int ret;

    if (u->pos == u->total) {
        ret = check_end(u, err);
        return ret < 0 ? ret : 0;
    }
    if (u->out_pos == u->out_len) {
        ret = next_member(u, err);
        if (ret < 0)
            return ret;
        if (ret == 1)
            return csi_error_set(err, CS_EPROTO,
                                 "%s decompresses to %llu bytes, its footer says %llu", u->what,
                                 (unsigned long long)u->pos, (unsigned long long)u->total);
    }
    n = u->out_len - u->out_pos;
    if (n > len)
        n = len;
    if (n > u->total - u->pos)
        return csi_error_set(err, CS_EPROTO, "%s decompresses to more than its footer's %llu bytes",
                             u->what, (unsigned long long)u->total);
    memcpy(buf, u->out + u->out_pos, n);
    u->out_pos += n;
    u->pos += n;
    /* the caller may stop reading at TOTAL: check the rest now */
    if (u->pos == u->total) {
        ret = check_end(u, err);
        if (ret < 0)
            return ret;
    }
    return (long)n;
}
