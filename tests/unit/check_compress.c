/* gzip and zstd streams: sniffing, round trips in odd chunks, multi-member and multi-frame
 * input, truncation, corruption, decompression bombs, and csi_decompress_file. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#include <zstd.h>

#include <cachesync/buf.h>
#include <cachesync/digest.h>
#include "compress.h"
#include "cs_test.h"
#include "error_int.h"

/* `printf 'hello\n' | gzip -n` and `printf 'world\n' | zstd`: real tools' output */
static const unsigned char gz_hello[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                         0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0xe7, 0x02, 0x00,
                                         0x20, 0x30, 0x3a, 0x36, 0x06, 0x00, 0x00, 0x00};
static const unsigned char zst_world[] = {0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x31,
                                          0x00, 0x00, 0x77, 0x6f, 0x72, 0x6c, 0x64,
                                          0x0a, 0xaa, 0x6e, 0x56, 0x9f};

/* ---- helpers --------------------------------------------------------------------------- */

struct sink {
    cs_buf out;
    int fail_after; /* calls before the sink fails, or -1 */
};

static int
sink_append(void *payload, const char *data, size_t len, cs_error **err)
{
    struct sink *s = payload;

    /* no ck_assert per call: each is a write to Check's pipe in fork mode */
    if (len == 0)
        return csi_error_set(err, CS_ERROR, "empty output chunk");
    if (s->fail_after == 0)
        return csi_error_set(err, CS_ECANCELED, "sink stopped");
    if (s->fail_after > 0)
        s->fail_after--;
    return cs_buf_append(&s->out, data, len, err);
}

static void
sink_init(struct sink *s)
{
    cs_buf_init(&s->out, 0);
    s->fail_after = -1;
}

/* Compress IN with KIND/LEVEL, feeding CHUNK bytes at a time. */
static char *
compress(csi_compression kind, int level, const void *in, size_t len, size_t chunk, size_t *out_len)
{
    csi_compressor *c = NULL;
    cs_error *err = NULL;
    struct sink s;
    size_t off, n;

    sink_init(&s);
    ck_assert_cs_ok(csi_compressor_new(&c, kind, level, sink_append, &s, &err), &err);
    for (off = 0; off < len; off += n) {
        n = len - off < chunk ? len - off : chunk;
        ck_assert_cs_ok(csi_compressor_feed(c, (const char *)in + off, n, &err), &err);
    }
    ck_assert_cs_ok(csi_compressor_finish(c, &err), &err);
    csi_compressor_free(c);
    *out_len = s.out.len;
    return cs_buf_detach(&s.out);
}

/* Decompress IN (KIND, cap MAX) in CHUNK-byte feeds into S; feed's or finish's result. */
static int
decompress(struct sink *s, csi_compression kind, uint64_t max, const void *in, size_t len,
           size_t chunk, cs_error **err)
{
    csi_decompressor *d = NULL;
    size_t off, n, start = s->out.len;
    int ret = 0;

    ck_assert_cs_ok(csi_decompressor_new(&d, kind, max, sink_append, s, err), err);
    for (off = 0; off < len && ret == 0; off += n) {
        n = len - off < chunk ? len - off : chunk;
        ret = csi_decompressor_feed(d, (const char *)in + off, n, err);
    }
    if (ret == 0)
        ret = csi_decompressor_finish(d, err);
    if (ret == 0)
        ck_assert_uint_eq(csi_decompressor_total_out(d), s->out.len - start);
    csi_decompressor_free(d);
    return ret;
}

/* Data that compresses some but not trivially. */
static char *
sample(size_t len)
{
    char *p = malloc(len + 1);
    uint32_t x = 12345;
    size_t i;

    ck_assert_ptr_nonnull(p);
    for (i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (char)((i % 64 < 40) ? 'a' + (x >> 16) % 4 : (x >> 16) & 0xff);
    }
    return p;
}

/* ---- sniffing -------------------------------------------------------------------------- */

START_TEST(test_sniff)
{
    static const unsigned char zstd_magic[] = {0x28, 0xb5, 0x2f, 0xfd, 0x00};
    static const unsigned char tar_start[] = "blobs/";

    ck_assert_int_eq(csi_compress_sniff(gz_hello, sizeof(gz_hello)), CSI_COMP_GZIP);
    ck_assert_int_eq(csi_compress_sniff(gz_hello, 2), CSI_COMP_GZIP);
    ck_assert_int_eq(csi_compress_sniff(gz_hello, 1), CSI_COMP_NONE);
    ck_assert_int_eq(csi_compress_sniff(zstd_magic, 4), CSI_COMP_ZSTD);
    ck_assert_int_eq(csi_compress_sniff(zstd_magic, 3), CSI_COMP_NONE);
    ck_assert_int_eq(csi_compress_sniff(tar_start, 6), CSI_COMP_NONE);
    ck_assert_int_eq(csi_compress_sniff(NULL, 0), CSI_COMP_NONE);
    ck_assert_str_eq(csi_compression_name(CSI_COMP_GZIP), "gzip");
    ck_assert_str_eq(csi_compression_name(CSI_COMP_ZSTD), "zstd");
    ck_assert_str_eq(csi_compression_name(CSI_COMP_NONE), "none");
}
END_TEST

START_TEST(test_real_tools_output)
{
    struct sink s;
    cs_error *err = NULL;
    size_t c;

    for (c = 1; c <= 32; c *= 2) {
        sink_init(&s);
        ck_assert_cs_ok(decompress(&s, CSI_COMP_AUTO, 100, gz_hello, sizeof(gz_hello), c, &err),
                        &err);
        ck_assert_str_eq(s.out.ptr, "hello\n");
        cs_buf_dispose(&s.out);
        sink_init(&s);
        ck_assert_cs_ok(decompress(&s, CSI_COMP_ZSTD, 100, zst_world, sizeof(zst_world), c, &err),
                        &err);
        ck_assert_str_eq(s.out.ptr, "world\n");
        cs_buf_dispose(&s.out);
    }
}
END_TEST

/* ---- round trips ----------------------------------------------------------------------- */

static const struct {
    csi_compression kind;
    int level;
    size_t len;
    size_t chunk_in;  /* compressor feed size */
    size_t chunk_out; /* decompressor feed size */
} rt[] = {
    {CSI_COMP_GZIP, 0, 0, 1, 1},
    {CSI_COMP_GZIP, 1, 1, 1, 1},
    {CSI_COMP_GZIP, 9, 100000, 7, 13},
    {CSI_COMP_GZIP, 0, 3 << 20, 65536, 4097},
    {CSI_COMP_ZSTD, 0, 0, 1, 1},
    {CSI_COMP_ZSTD, 1, 1, 1, 1},
    {CSI_COMP_ZSTD, 19, 100000, 7, 13},
    {CSI_COMP_ZSTD, -5, 3 << 20, 65536, 4097},
    {CSI_COMP_ZSTD, 0, 3 << 20, 1 << 20, 1},
    {CSI_COMP_NONE, 0, 1000, 3, 5},
    /* output ending exactly at the end of the decoder's 128 KiB buffer */
    {CSI_COMP_ZSTD, 1, 1 << 20, 1 << 20, 1 << 20},
    {CSI_COMP_GZIP, 1, 1 << 20, 1 << 20, 1 << 20},
};

START_TEST(test_round_trip)
{
    char *in = sample(rt[_i].len), *z;
    struct sink s;
    cs_error *err = NULL;
    size_t zlen;

    z = compress(rt[_i].kind, rt[_i].level, in, rt[_i].len, rt[_i].chunk_in, &zlen);
    /* even an empty input gives a header with the magic */
    if (rt[_i].kind != CSI_COMP_NONE)
        ck_assert_int_eq(csi_compress_sniff((unsigned char *)z, zlen), rt[_i].kind);
    if (rt[_i].kind != CSI_COMP_NONE && rt[_i].len > 1000)
        ck_assert_uint_lt(zlen, rt[_i].len);
    /* the explicit kind and AUTO both decode it */
    sink_init(&s);
    ck_assert_cs_ok(decompress(&s, rt[_i].kind, UINT64_MAX, z, zlen, rt[_i].chunk_out, &err), &err);
    ck_assert_uint_eq(s.out.len, rt[_i].len);
    ck_assert_int_eq(memcmp(s.out.ptr ? s.out.ptr : "", in, rt[_i].len), 0);
    cs_buf_dispose(&s.out);
    sink_init(&s);
    ck_assert_cs_ok(decompress(&s, CSI_COMP_AUTO, rt[_i].len, z, zlen, 3, &err), &err);
    ck_assert_uint_eq(s.out.len, rt[_i].len);
    cs_buf_dispose(&s.out);
    free(z);
    free(in);
}
END_TEST

START_TEST(test_gzip_reproducible)
{
    char *in = sample(5000), *a, *b;
    size_t alen, blen;

    a = compress(CSI_COMP_GZIP, 0, in, 5000, 100, &alen);
    b = compress(CSI_COMP_GZIP, 0, in, 5000, 333, &blen);
    ck_assert_uint_eq(alen, blen);
    ck_assert_int_eq(memcmp(a, b, alen), 0);
    /* mtime 0, no FNAME flag */
    ck_assert_int_eq(a[3], 0);
    ck_assert_int_eq(a[4] | a[5] | a[6] | a[7], 0);
    free(a);
    free(b);
    free(in);
}
END_TEST

/* Incompressible input goes through as stored blocks, compressible input after it is
 * compressed, the result decodes to the input, and feeding in other pieces gives the
 * same bytes. */
START_TEST(test_gzip_adapts_to_incompressible)
{
    size_t rnd = 6u << 20, txt = 40u << 20, len = rnd + txt, alen, blen, i;
    char *in = malloc(len), *a, *b;
    uint64_t x = 88172645463325252ull;
    struct sink s;
    cs_error *err = NULL;

    ck_assert_ptr_nonnull(in);
    for (i = 0; i < rnd; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        in[i] = (char)(x >> 32);
    }
    for (i = rnd; i < len; i++)
        in[i] = "the quick brown fox jumps over the lazy dog "[i % 44];
    a = compress(CSI_COMP_GZIP, 0, in, len, 1 << 16, &alen);
    b = compress(CSI_COMP_GZIP, 0, in, len, 777777, &blen);
    ck_assert_uint_eq(alen, blen);
    ck_assert_int_eq(memcmp(a, b, alen), 0);
    /* the random part costs its size plus stored block headers (pgzip.c sees its flat byte
     * histogram); the text after it shrinks to almost nothing (stored all the way would be
     * > len) */
    ck_assert_uint_gt(alen, rnd);
    ck_assert_uint_lt(alen, rnd + rnd / 100 + (10u << 20));
    sink_init(&s);
    ck_assert_cs_ok(decompress(&s, CSI_COMP_GZIP, UINT64_MAX, a, alen, 1 << 20, &err), &err);
    ck_assert_uint_eq(s.out.len, len);
    ck_assert_int_eq(memcmp(s.out.ptr, in, len), 0);
    cs_buf_dispose(&s.out);
    free(a);
    free(b);
    free(in);
}
END_TEST

START_TEST(test_gzip_multi_member)
{
    char *a, *b, *cat;
    struct sink s;
    cs_error *err = NULL;
    size_t alen, blen;

    a = compress(CSI_COMP_GZIP, 1, "first,", 6, 6, &alen);
    b = compress(CSI_COMP_GZIP, 9, "second", 6, 6, &blen);
    cat = malloc(alen + blen + sizeof(gz_hello));
    memcpy(cat, a, alen);
    memcpy(cat + alen, b, blen);
    memcpy(cat + alen + blen, gz_hello, sizeof(gz_hello));
    for (size_t c = 1; c < 64; c += 5) {
        sink_init(&s);
        ck_assert_cs_ok(
            decompress(&s, CSI_COMP_GZIP, 100, cat, alen + blen + sizeof(gz_hello), c, &err), &err);
        ck_assert_str_eq(s.out.ptr, "first,secondhello\n");
        cs_buf_dispose(&s.out);
    }
    /* trailing garbage after a member is corruption, not silently ignored */
    sink_init(&s);
    cat[alen] = 'x';
    ck_assert_int_eq(decompress(&s, CSI_COMP_GZIP, 100, cat, alen + blen, 4096, &err), CS_EPROTO);
    cs_error_free(err);
    cs_buf_dispose(&s.out);
    free(cat);
    free(a);
    free(b);
}
END_TEST

START_TEST(test_zstd_multi_frame)
{
    /* a skippable frame: magic 0x184D2A50, length 3, payload */
    static const unsigned char skippable[] = {0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'a', 'b', 'c'};
    char f1[256], f2[256], cat[1024];
    size_t n1, n2, len = 0;
    struct sink s;
    cs_error *err = NULL;

    n1 = ZSTD_compress(f1, sizeof(f1), "frame one;", 10, 1);
    n2 = ZSTD_compress(f2, sizeof(f2), "frame two", 9, 5);
    ck_assert(!ZSTD_isError(n1) && !ZSTD_isError(n2));
    memcpy(cat + len, f1, n1);
    len += n1;
    memcpy(cat + len, skippable, sizeof(skippable));
    len += sizeof(skippable);
    memcpy(cat + len, f2, n2);
    len += n2;
    memcpy(cat + len, zst_world, sizeof(zst_world));
    len += sizeof(zst_world);
    for (size_t c = 1; c < 64; c += 3) {
        sink_init(&s);
        ck_assert_cs_ok(decompress(&s, CSI_COMP_AUTO, 100, cat, len, c, &err), &err);
        ck_assert_str_eq(s.out.ptr, "frame one;frame twoworld\n");
        cs_buf_dispose(&s.out);
    }
}
END_TEST

/* ---- broken input ---------------------------------------------------------------------- */

START_TEST(test_truncated)
{
    static const csi_compression kinds[] = {CSI_COMP_GZIP, CSI_COMP_ZSTD};
    char *in = sample(200000), *z;
    struct sink s;
    cs_error *err = NULL;
    size_t zlen, k, cut;

    for (k = 0; k < 2; k++) {
        z = compress(kinds[k], 0, in, 200000, 65536, &zlen);
        /* every cut, including "header only" and "all but the last byte" */
        static const size_t cuts[] = {1, 2, 3, 4, 5, 10, 100, 1000};
        for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]) + 1; i++) {
            cut = i < sizeof(cuts) / sizeof(cuts[0]) ? cuts[i] : zlen - 1;
            sink_init(&s);
            ck_assert_msg(decompress(&s, kinds[k], UINT64_MAX, z, cut, 512, &err) == CS_EPROTO,
                          "%s cut at %zu", csi_compression_name(kinds[k]), cut);
            cs_error_free(err);
            err = NULL;
            cs_buf_dispose(&s.out);
        }
        /* AUTO decides on 4 bytes; cut after that, truncation is still caught */
        sink_init(&s);
        ck_assert_int_eq(decompress(&s, CSI_COMP_AUTO, UINT64_MAX, z, zlen / 2, 512, &err),
                         CS_EPROTO);
        ck_assert_ptr_nonnull(strstr(err->message, "truncated"));
        cs_error_free(err);
        err = NULL;
        cs_buf_dispose(&s.out);
        free(z);
    }
    /* explicit gzip/zstd with no input at all */
    sink_init(&s);
    ck_assert_int_eq(decompress(&s, CSI_COMP_GZIP, 10, "", 0, 1, &err), CS_EPROTO);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(decompress(&s, CSI_COMP_ZSTD, 10, "", 0, 1, &err), CS_EPROTO);
    cs_error_free(err);
    err = NULL;
    /* AUTO with fewer bytes than a magic: plain data */
    ck_assert_cs_ok(decompress(&s, CSI_COMP_AUTO, 10, "\x1f", 1, 1, &err), &err);
    ck_assert_cs_ok(decompress(&s, CSI_COMP_AUTO, 10, "\x28\xb5\x2f", 3, 1, &err), &err);
    ck_assert_cs_ok(decompress(&s, CSI_COMP_AUTO, 10, "", 0, 1, &err), &err);
    ck_assert_uint_eq(s.out.len, 4);
    cs_buf_dispose(&s.out);
    free(in);
}
END_TEST

START_TEST(test_corrupt)
{
    static const csi_compression kinds[] = {CSI_COMP_GZIP, CSI_COMP_ZSTD};
    char *in = sample(50000), *z;
    struct sink s;
    cs_error *err = NULL;
    size_t zlen, k, pos;
    int ret;

    for (k = 0; k < 2; k++) {
        z = compress(kinds[k], 0, in, 50000, 50000, &zlen);
        /* a flipped bit in the header, the middle, the checksum trailer */
        size_t positions[] = {3, zlen / 2, zlen - 2};
        for (size_t i = 0; i < 3; i++) {
            pos = positions[i];
            z[pos] ^= 0x10;
            sink_init(&s);
            ret = decompress(&s, kinds[k], UINT64_MAX, z, zlen, 1000, &err);
            ck_assert_msg(ret == CS_EPROTO, "%s flip at %zu: %d", csi_compression_name(kinds[k]),
                          pos, ret);
            ck_assert_ptr_null(strchr(err->message, '\n'));
            cs_error_free(err);
            err = NULL;
            cs_buf_dispose(&s.out);
            z[pos] ^= 0x10;
        }
        free(z);
    }
    /* wrong explicit kind */
    sink_init(&s);
    ck_assert_int_eq(decompress(&s, CSI_COMP_ZSTD, 100, gz_hello, sizeof(gz_hello), 5, &err),
                     CS_EPROTO);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(decompress(&s, CSI_COMP_GZIP, 100, zst_world, sizeof(zst_world), 5, &err),
                     CS_EPROTO);
    cs_error_free(err);
    cs_buf_dispose(&s.out);
    free(in);
}
END_TEST

START_TEST(test_bomb)
{
    static const csi_compression kinds[] = {CSI_COMP_GZIP, CSI_COMP_ZSTD};
    size_t big = 16 << 20, zlen, k;
    char *zeros = calloc(1, big), *z;
    struct sink s;
    cs_error *err = NULL;

    ck_assert_ptr_nonnull(zeros);
    for (k = 0; k < 2; k++) {
        z = compress(kinds[k], 9, zeros, big, 1 << 20, &zlen);
        /* 16 MiB from a small input (deflate's ratio tops out near 1000:1; our gzip ends
         * each 128 KiB block with a sync flush, which leaves it near 890:1) */
        ck_assert_uint_lt(zlen, big / 800);
        sink_init(&s);
        ck_assert_int_eq(decompress(&s, CSI_COMP_AUTO, 1 << 20, z, zlen, 4096, &err), CS_ELIMIT);
        ck_assert_str_eq(err->message, "decompressed size exceeds 1048576 bytes");
        /* nothing past the cap reached the sink */
        ck_assert_uint_le(s.out.len, 1 << 20);
        cs_error_free(err);
        err = NULL;
        cs_buf_dispose(&s.out);
        free(z);
    }
    free(zeros);

    /* the cap is inclusive */
    sink_init(&s);
    ck_assert_cs_ok(decompress(&s, CSI_COMP_AUTO, 6, gz_hello, sizeof(gz_hello), 7, &err), &err);
    cs_buf_dispose(&s.out);
    sink_init(&s);
    ck_assert_int_eq(decompress(&s, CSI_COMP_AUTO, 5, gz_hello, sizeof(gz_hello), 7, &err),
                     CS_ELIMIT);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(decompress(&s, CSI_COMP_NONE, 5, "123456", 6, 7, &err), CS_ELIMIT);
    cs_error_free(err);
    cs_buf_dispose(&s.out);
}
END_TEST

START_TEST(test_zstd_window_limit)
{
    /* a frame header declaring a 2 GiB window (Window_Descriptor exponent 21): refused before
     * any allocation */
    static const unsigned char hdr[] = {0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8, 0x00, 0x00, 0x00};
    struct sink s;
    cs_error *err = NULL;

    sink_init(&s);
    ck_assert_int_eq(decompress(&s, CSI_COMP_ZSTD, UINT64_MAX, hdr, sizeof(hdr), 9, &err),
                     CS_ELIMIT);
    cs_error_free(err);
    cs_buf_dispose(&s.out);
}
END_TEST

START_TEST(test_sink_failure_and_misuse)
{
    csi_decompressor *d = NULL;
    csi_compressor *c = NULL;
    struct sink s;
    cs_error *err = NULL;
    char *in = sample(300000);

    sink_init(&s);
    s.fail_after = 0;
    ck_assert_cs_ok(csi_decompressor_new(&d, CSI_COMP_AUTO, 100, sink_append, &s, &err), &err);
    ck_assert_int_eq(csi_decompressor_kind(d), CSI_COMP_AUTO);
    ck_assert_int_eq(csi_decompressor_feed(d, gz_hello, sizeof(gz_hello), &err), CS_ECANCELED);
    ck_assert_int_eq(csi_decompressor_kind(d), CSI_COMP_GZIP);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_decompressor_feed(d, gz_hello, 1, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_decompressor_finish(d, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    csi_decompressor_free(d);
    csi_decompressor_free(NULL);
    ck_assert_int_eq(csi_decompressor_new(&d, (csi_compression)42, 1, NULL, NULL, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;

    /* compressor: bad levels and kinds, a failing sink, use after finish */
    ck_assert_int_eq(csi_compressor_new(&c, CSI_COMP_GZIP, 10, NULL, NULL, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_compressor_new(&c, CSI_COMP_ZSTD, 99, NULL, NULL, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_compressor_new(&c, CSI_COMP_AUTO, 0, NULL, NULL, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_ptr_null(c);
    s.fail_after = 1;
    ck_assert_cs_ok(csi_compressor_new(&c, CSI_COMP_ZSTD, 1, sink_append, &s, &err), &err);
    ck_assert_int_eq(csi_compressor_feed(c, in, 300000, &err), CS_ECANCELED);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_compressor_finish(c, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    csi_compressor_free(c);
    ck_assert_cs_ok(csi_compressor_new(&c, CSI_COMP_GZIP, 0, NULL, NULL, &err), &err);
    ck_assert_cs_ok(csi_compressor_feed(c, in, 1000, &err), &err);
    ck_assert_cs_ok(csi_compressor_finish(c, &err), &err);
    ck_assert_int_eq(csi_compressor_feed(c, in, 1, &err), CS_EINVAL);
    cs_error_free(err);
    csi_compressor_free(c);
    csi_compressor_free(NULL);
    cs_buf_dispose(&s.out);
    free(in);
}
END_TEST

/* ---- csi_decompress_file --------------------------------------------------------------- */

static char tmpdir[64];

static void
setup(void)
{
    strcpy(tmpdir, "/tmp/cs_comp_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static void
write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static int
count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    for (de = readdir(d); de != NULL; de = readdir(d)) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n;
}

static void
check_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "rb");
    char *got = malloc(len + 1);

    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fread(got, 1, len + 1, f), len);
    ck_assert_int_eq(memcmp(got, data, len), 0);
    fclose(f);
    free(got);
}

START_TEST(test_decompress_file)
{
    static const csi_compression kinds[] = {CSI_COMP_GZIP, CSI_COMP_ZSTD, CSI_COMP_NONE};
    size_t len = 700001, zlen, k;
    char *in = sample(len), *z;
    char src[128], dst[128], want[CS_DIGEST_STRLEN], got[CS_DIGEST_STRLEN];
    cs_error *err = NULL;
    uint64_t size = 0;

    ck_assert_cs_ok(cs_digest_buffer(want, in, len, &err), &err);
    snprintf(src, sizeof(src), "%s/blob", tmpdir);
    snprintf(dst, sizeof(dst), "%s/layer.tar", tmpdir);
    for (k = 0; k < 3; k++) {
        z = compress(kinds[k], 0, in, len, 65536, &zlen);
        write_bytes(src, z, zlen);
        memset(got, 0, sizeof(got));
        ck_assert_cs_ok(csi_decompress_file(src, dst, len, got, &size, &err), &err);
        ck_assert_str_eq(got, want);
        ck_assert_uint_eq(size, len);
        check_file(dst, in, len);
        ck_assert_int_eq(count_files(tmpdir), 2);
        free(z);
    }
    /* optional outputs; an empty file */
    write_bytes(src, "", 0);
    ck_assert_cs_ok(csi_decompress_file(src, dst, 0, NULL, NULL, &err), &err);
    check_file(dst, "", 0);
    free(in);
}
END_TEST

START_TEST(test_decompress_file_failures)
{
    char *in = sample(100000), *z;
    char src[128], dst[128], digest[CS_DIGEST_STRLEN] = "untouched";
    cs_error *err = NULL;
    uint64_t size = 77;
    size_t zlen;

    snprintf(src, sizeof(src), "%s/blob", tmpdir);
    snprintf(dst, sizeof(dst), "%s/layer.tar", tmpdir);
    z = compress(CSI_COMP_ZSTD, 0, in, 100000, 65536, &zlen);

    /* truncated */
    write_bytes(src, z, zlen - 10);
    ck_assert_int_eq(csi_decompress_file(src, dst, UINT64_MAX, digest, &size, &err), CS_EPROTO);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(access(dst, F_OK), -1);
    ck_assert_int_eq(count_files(tmpdir), 1);
    ck_assert_str_eq(digest, "untouched");
    ck_assert_uint_eq(size, 77);

    /* over the cap */
    write_bytes(src, z, zlen);
    ck_assert_int_eq(csi_decompress_file(src, dst, 99999, digest, &size, &err), CS_ELIMIT);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(count_files(tmpdir), 1);

    /* a missing source, a missing destination directory */
    ck_assert_int_eq(csi_decompress_file("/nonexistent/blob", dst, 10, NULL, NULL, &err), CS_EIO);
    ck_assert_int_eq(err->sys_errno, ENOENT);
    ck_assert_ptr_nonnull(strstr(err->message, "/nonexistent/blob"));
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_decompress_file(src, "/nonexistent/dir/x", UINT64_MAX, NULL, NULL, &err),
                     CS_EIO);
    cs_error_free(err);
    err = NULL;
    /* a directory as source reads as an error */
    ck_assert_int_eq(csi_decompress_file(tmpdir, dst, UINT64_MAX, NULL, NULL, &err), CS_EIO);
    cs_error_free(err);
    ck_assert_int_eq(count_files(tmpdir), 1);
    free(z);
    free(in);
}
END_TEST

/* A store path (blobs/sha256/<hex>) names its content: output of another digest never
 * appears there, not even until the caller checks (issue #7: a zstd layer whose diff_id
 * lies, transcoded for Docker < 23, sat in blobs/sha256/<diff_id> until pull unlinked it). */
START_TEST(test_decompress_file_addressed)
{
    char *in = sample(50000), *z;
    char src[256], dst[256], dir[96], want[CS_DIGEST_STRLEN], got[CS_DIGEST_STRLEN];
    cs_error *err = NULL;
    size_t zlen;

    snprintf(dir, sizeof(dir), "%s/blobs/sha256", tmpdir);
    {
        char cmd[256];

        snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
    ck_assert_cs_ok(cs_digest_buffer(want, in, 50000, &err), &err);
    z = compress(CSI_COMP_ZSTD, 0, in, 50000, 65536, &zlen);
    snprintf(src, sizeof(src), "%s/blobs/sha256/%064d", tmpdir, 1);
    write_bytes(src, z, zlen);
    /* the right name: written */
    snprintf(dst, sizeof(dst), "%s/%s", dir, want + 7);
    ck_assert_cs_ok(csi_decompress_file(src, dst, UINT64_MAX, got, NULL, &err), &err);
    ck_assert_str_eq(got, want);
    check_file(dst, in, 50000);
    unlink(dst);
    /* a name it does not hash to: CS_EDIGEST naming both, nothing written */
    snprintf(dst, sizeof(dst), "%s/%064d", dir, 2);
    ck_assert_int_eq(csi_decompress_file(src, dst, UINT64_MAX, got, NULL, &err), CS_EDIGEST);
    ck_assert_ptr_nonnull(strstr(err->message, want));
    ck_assert_ptr_nonnull(strstr(err->message, "uncompresses to"));
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(access(dst, F_OK), -1);
    ck_assert_int_eq(count_files(dir), 1); /* the source only: no temp file */
    free(z);
    free(in);
}
END_TEST

static Suite *
compress_suite(void)
{
    Suite *s = suite_create("compress");
    TCase *tc = tcase_create("stream");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_sniff);
    tcase_add_test(tc, test_real_tools_output);
    tcase_add_loop_test(tc, test_round_trip, 0, (int)(sizeof(rt) / sizeof(rt[0])));
    tcase_add_test(tc, test_gzip_reproducible);
    tcase_add_test(tc, test_gzip_adapts_to_incompressible);
    tcase_add_test(tc, test_gzip_multi_member);
    tcase_add_test(tc, test_zstd_multi_frame);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_corrupt);
    tcase_add_test(tc, test_bomb);
    tcase_add_test(tc, test_zstd_window_limit);
    tcase_add_test(tc, test_sink_failure_and_misuse);
    suite_add_tcase(s, tc);
    tc = tcase_create("file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_decompress_file);
    tcase_add_test(tc, test_decompress_file_failures);
    tcase_add_test(tc, test_decompress_file_addressed);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(compress_suite)
