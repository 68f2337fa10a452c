/* Compressing a layer while the daemon's export streams it, before its diff_id is known.
 *
 * The pool (source_pool.c) compresses a layer once its file is complete, because only then is
 * its diff_id known, and with it whether the store already holds its blob (a layer compressed
 * before is never compressed again: the same bytes keep the digest the registry has). For an
 * image whose weight is one large new layer that puts the whole compression after the whole
 * export. Here the layer goes into the compressor as it arrives instead, when it is almost
 * certainly new: its size is compared with what the known layers of the image decompress to,
 * and only a layer whose size matches none of them is compressed early. A wrong guess costs
 * time only: a layer found known at its end has its early blob thrown away.
 *
 * What a known layer decompresses to, without decompressing it: for gzip blobs made here the
 * footer member's total (pgzip.c), for other gzip blobs the trailer's ISIZE (the size mod
 * 2^32, RFC 1952 2.3.1: right for the single member that docker and BuildKit write), for zstd
 * blobs the frame header's content size. When that cannot be read for some known layer of
 * the image (a zstd frame without the size; a multi-member gzip from elsewhere gives a wrong
 * one, which is harmless: it just never matches), nothing is compressed early. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "error_int.h"
#include "growing.h"
#include "log_int.h"
#include "pgzip.h"
#include "source_int.h"

struct csi_source_spec {
    int fd;
    char *tmp;
    cs_hasher *h;
    csi_compressor *comp;
    uint64_t in, out;
    bool committed;
    const cs_source_options *opts;
    cs_growing_blob *g; /* followed by an upload, once past CSI_GROWING_MIN */
    bool g_tried;
};

/* What the known blob BLOB (SIZE bytes) decompresses to, mod 2^32: false when unknown. */
static bool
known_isize(uint32_t *isize, cs_store *store, const char *blob, int64_t size, csi_compression comp)
{
    unsigned char b[18]; /* a zstd frame header is at most 18 bytes (RFC 8878 3.1.1) */
    unsigned char f[CSI_PGZIP_FOOTER];
    uint64_t total;
    char *path = NULL;
    bool ok = false;
    ssize_t r;
    int fd;

    if (cs_store_blob_path(&path, store, blob, NULL) < 0)
        return false;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (fd < 0)
        return false;
    if (comp == CSI_COMP_GZIP && size >= CSI_PGZIP_FOOTER &&
        pread(fd, f, CSI_PGZIP_FOOTER, (off_t)size - CSI_PGZIP_FOOTER) == CSI_PGZIP_FOOTER &&
        csi_pgzip_total_size(&total, f)) {
        /* made here: the footer member says */
        *isize = (uint32_t)total;
        ok = true;
    } else if (comp == CSI_COMP_GZIP && size >= 18) {
        r = pread(fd, b, 2, 0);
        if (r == 2 && b[0] == 0x1f && b[1] == 0x8b && pread(fd, b, 4, (off_t)size - 4) == 4) {
            *isize =
                (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            ok = true;
        }
    } else if (comp == CSI_COMP_ZSTD) {
        r = pread(fd, b, sizeof(b), 0);
        if (r > 0) {
            unsigned long long n = ZSTD_getFrameContentSize(b, (size_t)r);

            if (n != ZSTD_CONTENTSIZE_UNKNOWN && n != ZSTD_CONTENTSIZE_ERROR) {
                *isize = (uint32_t)n;
                ok = true;
            }
        }
    }
    close(fd);
    return ok;
}

/* The sizes of the image's known layers, once per loader. */
static void
learn_sizes(csi_source_loader *L)
{
    char blob[CS_DIGEST_STRLEN];
    csi_layermap_view *map = NULL;
    int64_t bsize;
    size_t i;

    L->spec_ready = true;
    /* an archive file names no layers up front: nothing to compare with, so no guessing */
    L->spec_off = L->want_diff_ids == NULL || L->st->comp == CSI_COMP_NONE;
    if (L->spec_off)
        return;
    L->spec_sizes = calloc(L->nwant ? L->nwant : 1, sizeof(*L->spec_sizes));
    if (L->spec_sizes == NULL || csi_layermap_view_open(&map, L->store, NULL) < 0) {
        L->spec_off = true;
        return;
    }
    for (i = 0; i < L->nwant; i++) {
        if (!csi_source_layer_known_in(blob, &bsize, L->store, map, L->want_diff_ids[i],
                                       L->st->comp_name))
            continue;
        if (!known_isize(&L->spec_sizes[L->nspec_sizes], L->store, blob, bsize, L->st->comp)) {
            csi_log(CS_LOG_DEBUG, "layer %s: size of blob %s unknown, no layer compressed early",
                    L->want_diff_ids[i], blob);
            L->spec_off = true;
            break;
        }
        L->nspec_sizes++;
    }
    csi_layermap_view_free(map);
}

bool
csi_source_spec_wanted(csi_source_loader *L, uint64_t size)
{
    size_t i;

    if (!L->spec_ready)
        learn_sizes(L);
    if (L->spec_off)
        return false;
    for (i = 0; i < L->nspec_sizes; i++) {
        if (L->spec_sizes[i] == (uint32_t)size)
            return false; /* may be that known layer */
    }
    return true;
}

static int
spec_write(void *payload, const char *data, size_t len, cs_error **err)
{
    csi_source_spec *s = payload;
    int ret = csi_source_write_all(s->fd, data, len, s->tmp, err);

    if (ret < 0)
        return ret;
    cs_hasher_update(s->h, data, len);
    s->out += len;
    if (s->g != NULL) {
        csi_growing_wrote(s->g, s->out);
    } else if (!s->g_tried && s->out >= CSI_GROWING_MIN && s->opts->blob_growing != NULL) {
        /* large enough that its upload had better not wait for the end; when this fails
         * the blob just goes up once complete */
        s->g_tried = true;
        if (csi_growing_new(&s->g, s->tmp, NULL) == 0) {
            csi_growing_wrote(s->g, s->out);
            s->opts->blob_growing(s->opts->blob_growing_payload, s->g);
        }
    }
    return 0;
}

int
csi_source_spec_start(csi_source_spec **out, csi_source_loader *L, cs_error **err)
{
    csi_source_spec *s = calloc(1, sizeof(*s));
    int ret;

    if (s == NULL)
        return csi_error_oom(err);
    s->fd = -1;
    s->opts = L->st->opts;
    ret = cs_hasher_new(&s->h, err);
    if (ret == 0)
        ret = csi_source_tmp_file(&s->fd, &s->tmp, L->tmpdir, "blob", err);
    if (ret == 0)
        ret = csi_compressor_new(&s->comp, L->st->comp, L->st->opts->level, spec_write, s, err);
    if (ret < 0) {
        csi_source_spec_free(s);
        return ret;
    }
    *out = s;
    return 0;
}

int
csi_source_spec_feed(csi_source_spec *s, const void *data, size_t len, cs_error **err)
{
    s->in += len;
    return csi_compressor_feed(s->comp, data, len, err);
}

int
csi_source_spec_finish(csi_source_spec *s, char blob[CS_DIGEST_STRLEN], int64_t *size,
                       cs_error **err)
{
    int ret = csi_compressor_finish(s->comp, err);

    if (ret < 0)
        return ret;
    if (close(s->fd) != 0) {
        s->fd = -1;
        return csi_error_errno(err, errno, "close %s", s->tmp);
    }
    s->fd = -1;
    cs_hasher_final(s->h, blob);
    *size = (int64_t)s->out;
    return 0;
}

int
csi_source_spec_commit(csi_source_spec *s, cs_store *store, const char *blob, cs_error **err)
{
    int ret = csi_source_commit_blob(store, s->tmp, blob, err);

    if (ret == 0) {
        s->committed = true;
        if (s->g != NULL)
            csi_growing_done(s->g, blob, s->out);
    }
    return ret;
}

uint64_t
csi_source_spec_in(const csi_source_spec *s)
{
    return s->in;
}

void
csi_source_spec_free(csi_source_spec *s)
{
    if (s == NULL)
        return;
    if (s->fd >= 0)
        close(s->fd);
    if (s->tmp != NULL && !s->committed)
        unlink(s->tmp);
    if (s->g != NULL) {
        /* not committed (a layer known after all, or a failure): its upload is cancelled */
        csi_growing_fail(s->g);
        csi_growing_unref(s->g);
    }
    free(s->tmp);
    csi_compressor_free(s->comp);
    cs_hasher_free(s->h);
    free(s);
}
