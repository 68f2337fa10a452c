/* Fuzz target: untrusted bytes as a compressed layer through the streaming decompressor with
 * a small output cap, and the same bytes through compress -> decompress, which must give
 * them back. The first byte picks the format (bits 0-1: none, gzip, zstd, auto) and the
 * feed size (bits 2-3); the rest is the stream. Built with -fsanitize=fuzzer, and with
 * replay.c so the corpus runs in `make check`. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cachesync/buf.h>
#include "compress.h"

#define CAP (256 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct count {
    uint64_t bytes;
    cs_buf *keep; /* collect the output here, or NULL */
};

static int
sink(void *payload, const char *data, size_t len, cs_error **err)
{
    struct count *c = payload;

    if (len == 0)
        __builtin_trap();
    c->bytes += len;
    if (c->keep != NULL)
        return cs_buf_append(c->keep, data, len, err);
    /* touch both ends so ASan sees a bad pointer or length */
    if (data[0] == 0x7f && data[len - 1] == 0x7f)
        c->bytes += 0;
    return 0;
}

static int
decompress(csi_compression kind, uint64_t cap, const uint8_t *in, size_t len, size_t chunk,
           struct count *c)
{
    csi_decompressor *d = NULL;
    cs_error *err = NULL;
    size_t off, n;
    int ret = 0;

    if (csi_decompressor_new(&d, kind, cap, sink, c, &err) < 0)
        __builtin_trap();
    for (off = 0; off < len && ret == 0; off += n) {
        n = len - off < chunk ? len - off : chunk;
        ret = csi_decompressor_feed(d, in + off, n, &err);
    }
    if (ret == 0)
        ret = csi_decompressor_finish(d, &err);
    if (csi_decompressor_total_out(d) > cap || csi_decompressor_total_out(d) != c->bytes)
        __builtin_trap();
    if (ret < 0 && (err == NULL || strchr(err->message, '\n') != NULL))
        __builtin_trap();
    cs_error_free(err);
    csi_decompressor_free(d);
    return ret;
}

static void
round_trip(csi_compression kind, const uint8_t *in, size_t len)
{
    csi_compressor *c = NULL;
    cs_buf z = CS_BUF_INIT, back = CS_BUF_INIT;
    struct count zc = {0, &z}, bc = {0, &back};
    cs_error *err = NULL;

    if (csi_compressor_new(&c, kind, 1, sink, &zc, &err) < 0 ||
        csi_compressor_feed(c, in, len, &err) < 0 || csi_compressor_finish(c, &err) < 0)
        __builtin_trap();
    csi_compressor_free(c);
    if (decompress(CSI_COMP_AUTO, len, (const uint8_t *)z.ptr, z.len, 97, &bc) != 0 ||
        back.len != len || (len > 0 && memcmp(back.ptr, in, len) != 0))
        __builtin_trap();
    cs_buf_dispose(&z);
    cs_buf_dispose(&back);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t chunks[] = {(size_t)-1, 1, 7, 4096};
    static const csi_compression kinds[] = {CSI_COMP_NONE, CSI_COMP_GZIP, CSI_COMP_ZSTD,
                                            CSI_COMP_AUTO};
    struct count c = {0, NULL};
    csi_compression kind;
    size_t chunk;

    if (size < 1)
        return 0;
    kind = kinds[data[0] & 3];
    chunk = chunks[(data[0] >> 2) & 3];
    (void)decompress(kind, CAP, data + 1, size - 1, chunk, &c);
    if (size - 1 <= 4096) {
        round_trip(CSI_COMP_GZIP, data + 1, size - 1);
        round_trip(CSI_COMP_ZSTD, data + 1, size - 1);
    }
    return 0;
}
