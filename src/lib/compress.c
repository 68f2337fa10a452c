/* gzip and zstd streams over zlib and libzstd, with fixed-size buffers. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "compress.h"
#include "error_int.h"
#include "fsutil.h"
#include "pgzip.h"

/* Output buffer of a (de)compressor, and the read buffer of csi_decompress_file. */
#define OUT_BUF (128 * 1024)
#define READ_BUF (256 * 1024)

csi_compression
csi_compress_sniff(const unsigned char *head, size_t len)
{
    if (len >= 2 && head[0] == 0x1f && head[1] == 0x8b)
        return CSI_COMP_GZIP;
    if (len >= 4 && head[0] == 0x28 && head[1] == 0xb5 && head[2] == 0x2f && head[3] == 0xfd)
        return CSI_COMP_ZSTD;
    return CSI_COMP_NONE;
}

const char *
csi_compression_name(csi_compression c)
{
    switch (c) {
    case CSI_COMP_GZIP:
        return "gzip";
    case CSI_COMP_ZSTD:
        return "zstd";
    case CSI_COMP_AUTO:
        return "auto";
    default:
        return "none";
    }
}

/* ---- decompression --------------------------------------------------------------------- */

struct csi_decompressor {
    csi_compression kind;
    uint64_t max_out;
    uint64_t total_out;
    csi_compress_sink_fn sink;
    void *payload;
    unsigned char head[CSI_COMPRESS_SNIFF_LEN]; /* AUTO: bytes held until the format is known */
    size_t head_len;
    bool any_in;    /* some input reached the decoder */
    bool in_member; /* gzip: inside a member */
    size_t zret;    /* zstd: last ZSTD_decompressStream hint, 0 at a frame boundary */
    bool failed;
    z_stream z;
    bool z_init;
    ZSTD_DStream *zs;
    unsigned char *obuf;
};

static int
emit(csi_decompressor *d, const unsigned char *p, size_t n, cs_error **err)
{
    if (n == 0)
        return 0;
    if (n > d->max_out - d->total_out)
        return csi_error_set(err, CS_ELIMIT, "decompressed size exceeds %llu bytes",
                             (unsigned long long)d->max_out);
    d->total_out += n;
    if (d->sink == NULL)
        return 0;
    return d->sink(d->payload, (const char *)p, n, err);
}

static int
start_decoder(csi_decompressor *d, cs_error **err)
{
    size_t r;

    switch (d->kind) {
    case CSI_COMP_GZIP:
        /* 15 + 32: a 32 KiB window, gzip or zlib header detected */
        if (inflateInit2(&d->z, 15 + 32) != Z_OK)
            return csi_error_oom(err);
        d->z_init = true;
        break;
    case CSI_COMP_ZSTD:
        d->zs = ZSTD_createDStream();
        if (d->zs == NULL)
            return csi_error_oom(err);
        r = ZSTD_initDStream(d->zs);
        if (ZSTD_isError(r))
            return csi_error_set(err, CS_ERROR, "zstd: %s", ZSTD_getErrorName(r));
        break;
    default:
        break;
    }
    return 0;
}

int
csi_decompressor_new(csi_decompressor **out, csi_compression kind, uint64_t max_out,
                     csi_compress_sink_fn sink, void *payload, cs_error **err)
{
    csi_decompressor *d;
    int ret;

    if (kind != CSI_COMP_NONE && kind != CSI_COMP_GZIP && kind != CSI_COMP_ZSTD &&
        kind != CSI_COMP_AUTO)
        return csi_error_set(err, CS_EINVAL, "unknown compression %d", (int)kind);
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return csi_error_oom(err);
    d->kind = kind;
    d->max_out = max_out;
    d->sink = sink;
    d->payload = payload;
    d->obuf = malloc(OUT_BUF);
    if (d->obuf == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = start_decoder(d, err);

out:
    if (ret < 0) {
        csi_decompressor_free(d);
        return ret;
    }
    *out = d;
    return 0;
}

void
csi_decompressor_free(csi_decompressor *d)
{
    if (d == NULL)
        return;
    if (d->z_init)
        inflateEnd(&d->z);
    ZSTD_freeDStream(d->zs);
    free(d->obuf);
    free(d);
}

csi_compression
csi_decompressor_kind(const csi_decompressor *d)
{
    return d->kind;
}

uint64_t
csi_decompressor_total_out(const csi_decompressor *d)
{
    return d->total_out;
}

static int
feed_gzip(csi_decompressor *d, const unsigned char *p, size_t len, cs_error **err)
{
    z_stream *z = &d->z;
    int zr, ret;

    while (len > 0) {
        /* zlib counts in uInt; feed at most 1 GiB at a time */
        uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;

        z->next_in = (Bytef *)p;
        z->avail_in = n;
        do {
            if (z->avail_in > 0)
                d->in_member = true;
            z->next_out = d->obuf;
            z->avail_out = OUT_BUF;
            zr = inflate(z, Z_NO_FLUSH);
            if (zr == Z_NEED_DICT || zr == Z_DATA_ERROR || zr == Z_STREAM_ERROR)
                return csi_error_set(err, CS_EPROTO, "gzip data is corrupt: %s",
                                     z->msg != NULL ? z->msg : "inflate failed");
            if (zr == Z_MEM_ERROR)
                return csi_error_oom(err);
            ret = emit(d, d->obuf, OUT_BUF - z->avail_out, err);
            if (ret < 0)
                return ret;
            if (zr == Z_STREAM_END) {
                /* a member ended; another may follow (gzip -c a b, pigz) */
                d->in_member = false;
                inflateReset(z);
            } else if (zr == Z_BUF_ERROR) {
                break; /* no progress possible: everything fed is consumed */
            }
        } while (z->avail_in > 0 || z->avail_out == 0);
        p += n;
        len -= n;
    }
    return 0;
}

static int
feed_zstd(csi_decompressor *d, const unsigned char *p, size_t len, cs_error **err)
{
    ZSTD_inBuffer in = {p, len, 0};
    ZSTD_outBuffer o;
    size_t r;
    int ret;

    do {
        o.dst = d->obuf;
        o.size = OUT_BUF;
        o.pos = 0;
        r = ZSTD_decompressStream(d->zs, &o, &in);
        if (ZSTD_isError(r)) {
            if (ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge)
                return csi_error_set(err, CS_ELIMIT, "zstd frame needs a window over 128 MiB");
            return csi_error_set(err, CS_EPROTO, "zstd data is corrupt: %s", ZSTD_getErrorName(r));
        }
        d->zret = r;
        ret = emit(d, d->obuf, o.pos, err);
        if (ret < 0)
            return ret;
        /* A full output buffer may leave decoded bytes inside the stream: go again, unless
         * the frame just ended (r == 0: all flushed). Calling then would start the next
         * frame and turn the hint nonzero, and a complete stream would look truncated. */
    } while (in.pos < in.size || (o.pos == o.size && r != 0));
    return 0;
}

static int
feed_decoder(csi_decompressor *d, const unsigned char *p, size_t len, cs_error **err)
{
    if (len == 0)
        return 0;
    d->any_in = true;
    switch (d->kind) {
    case CSI_COMP_GZIP:
        return feed_gzip(d, p, len, err);
    case CSI_COMP_ZSTD:
        return feed_zstd(d, p, len, err);
    default:
        return emit(d, p, len, err);
    }
}

/* AUTO: the format is known now; start it and pass the held bytes. */
static int
decide(csi_decompressor *d, cs_error **err)
{
    int ret;

    d->kind = csi_compress_sniff(d->head, d->head_len);
    ret = start_decoder(d, err);
    if (ret == 0)
        ret = feed_decoder(d, d->head, d->head_len, err);
    return ret;
}

int
csi_decompressor_feed(csi_decompressor *d, const void *data, size_t len, cs_error **err)
{
    const unsigned char *p = data;
    int ret = 0;

    if (d->failed)
        return csi_error_set(err, CS_EINVAL, "decompressor used after an error");
    if (d->kind == CSI_COMP_AUTO) {
        size_t n = CSI_COMPRESS_SNIFF_LEN - d->head_len;

        n = n < len ? n : len;
        memcpy(d->head + d->head_len, p, n);
        d->head_len += n;
        p += n;
        len -= n;
        if (d->head_len < CSI_COMPRESS_SNIFF_LEN)
            return 0;
        ret = decide(d, err);
        if (ret < 0)
            goto out;
    }
    ret = feed_decoder(d, p, len, err);

out:
    if (ret < 0)
        d->failed = true;
    return ret;
}

int
csi_decompressor_finish(csi_decompressor *d, cs_error **err)
{
    int ret = 0;

    if (d->failed)
        return csi_error_set(err, CS_EINVAL, "decompressor used after an error");
    if (d->kind == CSI_COMP_AUTO) {
        ret = decide(d, err);
        if (ret < 0)
            goto out;
    }
    if (d->kind == CSI_COMP_GZIP && (d->in_member || !d->any_in))
        ret = csi_error_set(err, CS_EPROTO, "gzip data is truncated");
    else if (d->kind == CSI_COMP_ZSTD && (d->zret != 0 || !d->any_in))
        ret = csi_error_set(err, CS_EPROTO, "zstd data is truncated");

out:
    if (ret < 0)
        d->failed = true;
    return ret;
}

/* ---- decompress a file ----------------------------------------------------------------- */

struct file_sink {
    int fd;
    const char *path;
    cs_hasher *hasher;
};

static int
file_sink_write(void *payload, const char *data, size_t len, cs_error **err)
{
    struct file_sink *fs = payload;

    cs_hasher_update(fs->hasher, data, len);
    return csi_fs_write_all(fs->fd, data, len, fs->path, err);
}

/* The digest a content-addressed PATH (.../blobs/sha256/<64 hex>) promises, or false. */
static bool
addressed_digest(char out[CS_DIGEST_STRLEN], const char *path)
{
    const char *base = strrchr(path, '/');
    size_t n;

    base = base ? base + 1 : path;
    n = strlen(base);
    if (n != 64 || strspn(base, "0123456789abcdef") != 64 || (size_t)(base - path) < 13 ||
        strncmp(base - 13, "blobs/sha256/", 13) != 0)
        return false;
    snprintf(out, CS_DIGEST_STRLEN, "sha256:%s", base);
    return true;
}

int
csi_decompress_file(const char *src, const char *dst, uint64_t max_out,
                    char digest_out[CS_DIGEST_STRLEN], uint64_t *size_out, cs_error **err)
{
    struct file_sink fs = {-1, NULL, NULL};
    char got[CS_DIGEST_STRLEN], want[CS_DIGEST_STRLEN], from[CS_DIGEST_STRLEN];
    csi_decompressor *d = NULL;
    csi_fs_tmp t = {-1, NULL, NULL};
    char *buf = NULL;
    int in = -1, ret;
    ssize_t n;

    ret = cs_hasher_new(&fs.hasher, err);
    if (ret < 0)
        goto out;
    buf = malloc(READ_BUF);
    if (buf == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        ret = csi_error_errno(err, errno, "open %s", src);
        goto out;
    }
    ret = csi_fs_tmp_open(&t, dst, err);
    if (ret < 0)
        goto out;
    fs.fd = t.fd;
    fs.path = csi_fs_tmp_name(&t);
    ret = csi_decompressor_new(&d, CSI_COMP_AUTO, max_out, file_sink_write, &fs, err);
    if (ret < 0)
        goto out;
    for (;;) {
        n = read(in, buf, READ_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = csi_error_errno(err, errno, "read %s", src);
            goto out;
        }
        if (n == 0)
            break;
        ret = csi_decompressor_feed(d, buf, (size_t)n, err);
        if (ret < 0)
            goto out;
    }
    ret = csi_decompressor_finish(d, err);
    if (ret < 0)
        goto out;
    cs_hasher_final(fs.hasher, got);
    /* a store path names its content: what does not hash to it never appears there, not
     * even for the moment between a rename and the caller's check */
    if (addressed_digest(want, dst) && strcmp(got, want) != 0) {
        if (!addressed_digest(from, src))
            snprintf(from, sizeof(from), "%s", src);
        ret = csi_error_set(err, CS_EDIGEST, "%s uncompresses to %s, not %s", from, got, want);
        goto out;
    }
    ret = csi_fs_tmp_commit(&t, err);
    if (ret < 0)
        goto out;
    if (digest_out != NULL)
        memcpy(digest_out, got, CS_DIGEST_STRLEN);
    if (size_out != NULL)
        *size_out = csi_decompressor_total_out(d);

out:
    if (in >= 0)
        close(in);
    csi_fs_tmp_abort(&t);
    csi_decompressor_free(d);
    cs_hasher_free(fs.hasher);
    free(buf);
    return ret;
}

/* ---- compression ----------------------------------------------------------------------- */

/* gzip goes to pgzip.c (blocks deflated on several cores, one member); zstd and "none" are
 * handled here. */
struct csi_compressor {
    csi_compression kind;
    csi_compress_sink_fn sink;
    void *payload;
    bool failed;
    bool finished;
    csi_pgzip *pg;
    ZSTD_CCtx *zc;
    unsigned char *obuf;
};

void
csi_compressor_free(csi_compressor *c)
{
    if (c == NULL)
        return;
    csi_pgzip_free(c->pg);
    ZSTD_freeCCtx(c->zc);
    free(c->obuf);
    free(c);
}

static int
start_encoder(csi_compressor *c, int level, cs_error **err)
{
    size_t r;

    switch (c->kind) {
    case CSI_COMP_GZIP:
        /* the gzip header has mtime 0 and no name, so equal input gives an equal digest */
        return csi_pgzip_new(&c->pg, level == 0 ? CSI_GZIP_LEVEL_DEFAULT : level, c->sink,
                             c->payload, err);
    case CSI_COMP_ZSTD:
        if (level == 0)
            level = CSI_ZSTD_LEVEL_DEFAULT;
        if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
            return csi_error_set(err, CS_EINVAL, "zstd level %d is not within %d..%d", level,
                                 ZSTD_minCLevel(), ZSTD_maxCLevel());
        c->zc = ZSTD_createCCtx();
        if (c->zc == NULL)
            return csi_error_oom(err);
        r = ZSTD_CCtx_setParameter(c->zc, ZSTD_c_compressionLevel, level);
        if (!ZSTD_isError(r))
            r = ZSTD_CCtx_setParameter(c->zc, ZSTD_c_checksumFlag, 1);
        if (ZSTD_isError(r))
            return csi_error_set(err, CS_ERROR, "zstd: %s", ZSTD_getErrorName(r));
        c->obuf = malloc(OUT_BUF);
        if (c->obuf == NULL)
            return csi_error_oom(err);
        break;
    case CSI_COMP_NONE:
        break;
    default:
        return csi_error_set(err, CS_EINVAL, "cannot compress to %s",
                             csi_compression_name(c->kind));
    }
    return 0;
}

int
csi_compressor_new(csi_compressor **out, csi_compression kind, int level, csi_compress_sink_fn sink,
                   void *payload, cs_error **err)
{
    csi_compressor *c = calloc(1, sizeof(*c));
    int ret;

    if (c == NULL)
        return csi_error_oom(err);
    c->kind = kind;
    c->sink = sink;
    c->payload = payload;
    ret = start_encoder(c, level, err);
    if (ret < 0) {
        csi_compressor_free(c);
        return ret;
    }
    *out = c;
    return 0;
}

static int
put(csi_compressor *c, const unsigned char *p, size_t n, cs_error **err)
{
    if (n == 0 || c->sink == NULL)
        return 0;
    return c->sink(c->payload, (const char *)p, n, err);
}

/* Run ZSTD_compressStream2 over IN with MODE until the input is consumed (and, for
 * ZSTD_e_end, the frame is complete). */
static int
zstd_run(csi_compressor *c, ZSTD_inBuffer *in, ZSTD_EndDirective mode, cs_error **err)
{
    ZSTD_outBuffer o;
    size_t r;
    int ret;

    do {
        o.dst = c->obuf;
        o.size = OUT_BUF;
        o.pos = 0;
        r = ZSTD_compressStream2(c->zc, &o, in, mode);
        if (ZSTD_isError(r))
            return csi_error_set(err, CS_ERROR, "zstd compression failed: %s",
                                 ZSTD_getErrorName(r));
        ret = put(c, c->obuf, o.pos, err);
        if (ret < 0)
            return ret;
    } while (mode == ZSTD_e_end ? r != 0 : in->pos < in->size);
    return 0;
}

int
csi_compressor_feed(csi_compressor *c, const void *data, size_t len, cs_error **err)
{
    int ret = 0;

    if (c->failed || c->finished)
        return csi_error_set(err, CS_EINVAL, "compressor used after an error or its end");
    if (len == 0)
        return 0;
    switch (c->kind) {
    case CSI_COMP_GZIP:
        ret = csi_pgzip_feed(c->pg, data, len, err);
        break;
    case CSI_COMP_ZSTD: {
        ZSTD_inBuffer in = {data, len, 0};

        ret = zstd_run(c, &in, ZSTD_e_continue, err);
        break;
    }
    default:
        ret = put(c, data, len, err);
        break;
    }
    if (ret < 0)
        c->failed = true;
    return ret;
}

int
csi_compressor_finish(csi_compressor *c, cs_error **err)
{
    int ret = 0;

    if (c->failed || c->finished)
        return csi_error_set(err, CS_EINVAL, "compressor used after an error or its end");
    switch (c->kind) {
    case CSI_COMP_GZIP:
        ret = csi_pgzip_finish(c->pg, err);
        break;
    case CSI_COMP_ZSTD: {
        ZSTD_inBuffer in = {NULL, 0, 0};

        ret = zstd_run(c, &in, ZSTD_e_end, err);
        break;
    }
    default:
        break;
    }
    if (ret < 0)
        c->failed = true;
    else
        c->finished = true;
    return ret;
}
