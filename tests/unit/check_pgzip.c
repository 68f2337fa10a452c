/* gzip on several cores (src/lib/pgzip.c): gzip members that zlib's own inflate reads back,
 * one per block and a footer with the total, the same bytes whatever the thread count and
 * feed sizes, no larger than one zlib stream at the same level, stored blocks for random
 * data, several streams at once under the shared memory budget, and a failing sink with
 * blocks still in the pool. Then reading such blobs back with pgunzip.c: the same bytes
 * whatever the read sizes, and corrupt, foreign or mislabelled blobs refused. */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <zlib.h>

#include <cachesync/buf.h>
#include "cs_test.h"
#include "error_int.h"
#include "pgunzip.h"
#include "pgzip.h"

#define B CSI_PGZIP_BLOCK

struct sink {
    cs_buf out;
    int fail_after; /* calls before the sink fails, or -1 */
};

static int
sink_append(void *payload, const char *data, size_t len, cs_error **err)
{
    struct sink *s = payload;

    if (len == 0)
        return csi_error_set(err, CS_ERROR, "empty output chunk");
    if (s->fail_after == 0)
        return csi_error_set(err, CS_ECANCELED, "sink stopped");
    if (s->fail_after > 0)
        s->fail_after--;
    return cs_buf_append(&s->out, data, len, err);
}

/* gzip IN (LEN bytes) at LEVEL with the pool at THREADS, fed CHUNK bytes at a time. */
static unsigned char *
pgz(const unsigned char *in, size_t len, int level, unsigned threads, size_t chunk, size_t *out_len)
{
    csi_pgzip *g = NULL;
    cs_error *err = NULL;
    struct sink s = {.fail_after = -1};
    size_t off, n;

    cs_buf_init(&s.out, 0);
    csi_pgzip_set_threads(threads);
    ck_assert_cs_ok(csi_pgzip_new(&g, level, sink_append, &s, &err), &err);
    for (off = 0; off < len; off += n) {
        n = len - off < chunk ? len - off : chunk;
        ck_assert_cs_ok(csi_pgzip_feed(g, in + off, n, &err), &err);
    }
    ck_assert_cs_ok(csi_pgzip_finish(g, &err), &err);
    csi_pgzip_free(g);
    *out_len = s.out.len;
    return (unsigned char *)cs_buf_detach(&s.out);
}

/* zlib's inflate, member after member (windowBits 31 stops at each member's end), reads Z
 * back as IN: members of CSI_PGZIP_BLOCK input bytes each (the last may be shorter), then the
 * footer, an empty member whose extra field holds LEN. */
static void
assert_members_of(const unsigned char *z, size_t zlen, const unsigned char *in, size_t len)
{
    unsigned char *out = malloc(len + 1);
    size_t members = 0, pos = 0, expect;
    uint64_t total = 0;
    z_stream st;
    int zr;

    ck_assert_ptr_nonnull(out);
    memset(&st, 0, sizeof(st));
    ck_assert_int_eq(inflateInit2(&st, 31), Z_OK);
    st.next_in = (unsigned char *)z;
    st.avail_in = (uInt)zlen;
    while (st.avail_in > 0) {
        /* every data member starts with the same header (pull_stream.c tells ours by it) */
        static const unsigned char head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};

        if (st.avail_in > CSI_PGZIP_FOOTER)
            ck_assert_int_eq(memcmp(st.next_in, head, sizeof(head)), 0);
        st.next_out = out + pos;
        st.avail_out = (uInt)(len + 1 - pos);
        zr = inflate(&st, Z_FINISH);
        ck_assert_int_eq(zr, Z_STREAM_END);
        /* every data member but the last holds a whole block; the footer holds nothing */
        expect = pos < len ? (len - pos < B ? len - pos : B) : 0;
        ck_assert_uint_eq(st.total_out, expect); /* this member's (inflateReset zeroes it) */
        pos += (size_t)st.total_out;
        members++;
        ck_assert_int_eq(inflateReset(&st), Z_OK);
    }
    ck_assert_uint_eq(pos, len);
    ck_assert_int_eq(memcmp(out, in, len), 0);
    ck_assert_uint_eq(members, (len + B - 1) / B + 1);
    ck_assert_uint_ge(zlen, CSI_PGZIP_FOOTER);
    ck_assert(csi_pgzip_total_size(&total, z + zlen - CSI_PGZIP_FOOTER));
    ck_assert_uint_eq(total, len);
    inflateEnd(&st);
    free(out);
}

/* Text-like, random and zero runs in pieces that straddle block edges. */
static unsigned char *
mixed(size_t len)
{
    unsigned char *p = malloc(len ? len : 1);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    static const char words[] = "layer config manifest digest blob cache build step ";
    size_t i;

    ck_assert_ptr_nonnull(p);
    for (i = 0; i < len; i++) {
        size_t region = (i / 50000) % 3;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = region == 0   ? (unsigned char)words[(i + (x >> 60)) % (sizeof(words) - 1)]
               : region == 1 ? (unsigned char)(x >> 24)
                             : 0;
    }
    return p;
}

static const size_t sizes[] = {0, 1, 100, B - 1, B, B + 1, 2 * B, 3 * B + 12345, 9 * B + 7};

/* Every size, thread count and feed size gives the same bytes, members that inflate to the
 * input. */
START_TEST(test_same_bytes_any_threads)
{
    size_t len = sizes[_i], zlen0, zlen;
    unsigned char *in = mixed(len), *z0, *z;
    static const unsigned threads[] = {2, 3, 8};
    static const size_t chunks[] = {1 << 20, 4093, B};
    size_t k;

    z0 = pgz(in, len, 6, 1, 65536, &zlen0);
    assert_members_of(z0, zlen0, in, len);
    for (k = 0; k < 3; k++) {
        z = pgz(in, len, 6, threads[k], len < 100000 ? 7 : chunks[k], &zlen);
        ck_assert_uint_eq(zlen, zlen0);
        ck_assert_int_eq(memcmp(z, z0, zlen), 0);
        free(z);
    }
    /* the first header: magic, deflate, no flags but the footer's FEXTRA, mtime 0 */
    ck_assert_int_eq(z0[0], 0x1f);
    ck_assert_int_eq(z0[1], 0x8b);
    ck_assert_int_eq(z0[3], len == 0 ? 4 : 0);
    ck_assert_int_eq(z0[4] | z0[5] | z0[6] | z0[7], 0);
    free(z0);
    free(in);
}
END_TEST

/* Text comes out no larger than one zlib stream at the same level; random data is stored (its
 * size plus 5 bytes per 64 KiB and a member header and trailer per block) and still
 * decodes. */
START_TEST(test_ratio_and_stored)
{
    size_t len = 8u << 20, zlen, ref_len, i;
    unsigned char *in = malloc(len), *z, *ref;
    uint64_t x = 88172645463325252ull;
    uLongf rl;

    ck_assert_ptr_nonnull(in);
    for (i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        in[i] = (unsigned char)"the quick brown fox jumps over the lazy dog, "
                               "then naps; 0123456789\n"[(x >> 40) % 68];
    }
    rl = compressBound((uLong)len);
    ref = malloc(rl);
    ck_assert_ptr_nonnull(ref);
    ck_assert_int_eq(compress2(ref, &rl, in, (uLong)len, 6), Z_OK);
    ref_len = rl;
    z = pgz(in, len, 6, 2, 1 << 20, &zlen);
    assert_members_of(z, zlen, in, len);
    ck_assert_uint_le(zlen, ref_len);
    free(z);

    for (i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        in[i] = (unsigned char)(x >> 32);
    }
    z = pgz(in, len, 6, 2, 1 << 20, &zlen);
    assert_members_of(z, zlen, in, len);
    ck_assert_uint_le(zlen, len + (len / B + 1) * (18 + 5 * (B / 65535 + 1)) + CSI_PGZIP_FOOTER);
    ck_assert_uint_ge(zlen, len);
    free(z);
    free(ref);
    free(in);
}
END_TEST

struct par {
    const unsigned char *in;
    size_t len;
    unsigned char *z;
    size_t zlen;
};

static void *
par_run(void *arg)
{
    struct par *p = arg;
    csi_pgzip *g = NULL;
    cs_error *err = NULL;
    struct sink s = {.fail_after = -1};
    size_t off, n;
    int ret;

    cs_buf_init(&s.out, 0);
    ret = csi_pgzip_new(&g, 6, sink_append, &s, &err);
    for (off = 0; ret == 0 && off < p->len; off += n) {
        n = p->len - off < 50000 ? p->len - off : 50000;
        ret = csi_pgzip_feed(g, p->in + off, n, &err);
    }
    if (ret == 0)
        ret = csi_pgzip_finish(g, &err);
    csi_pgzip_free(g);
    cs_error_free(err);
    p->zlen = ret == 0 ? s.out.len : 0;
    p->z = (unsigned char *)cs_buf_detach(&s.out);
    return NULL;
}

/* Six streams at once share the pool (3 threads, a budget of 8 blocks): each gets its own
 * bytes back, in order, equal to what one stream alone makes. */
START_TEST(test_streams_at_once)
{
    size_t len = 3u << 20, zlen, i;
    unsigned char *in[6], *z;
    struct par p[6];
    pthread_t t[6];

    csi_pgzip_set_threads(3);
    for (i = 0; i < 6; i++) {
        in[i] = mixed(len + i * 1000);
        p[i] = (struct par){in[i] + i, len - i, NULL, 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, par_run, &p[i]), 0);
    }
    for (i = 0; i < 6; i++) {
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
        ck_assert_uint_gt(p[i].zlen, 0);
        assert_members_of(p[i].z, p[i].zlen, in[i] + i, len - i);
        z = pgz(in[i] + i, len - i, 6, 1, 1 << 20, &zlen);
        ck_assert_uint_eq(zlen, p[i].zlen);
        ck_assert_int_eq(memcmp(z, p[i].z, zlen), 0);
        free(z);
        free(p[i].z);
        free(in[i]);
    }
}
END_TEST

/* A sink that fails while blocks are still in the pool: the error comes back from feed, later
 * calls are refused, and free waits for the pool's blocks (ASan/valgrind see no leak or use
 * after free). */
START_TEST(test_sink_fails_midway)
{
    size_t len = 16u << 20; /* more blocks than the budget: feed must write some out */
    unsigned char *in = mixed(len);
    csi_pgzip *g = NULL;
    cs_error *err = NULL;
    struct sink s = {.fail_after = 3};
    int ret = 0;
    size_t off;

    cs_buf_init(&s.out, 0);
    csi_pgzip_set_threads(4);
    ck_assert_cs_ok(csi_pgzip_new(&g, 6, sink_append, &s, &err), &err);
    for (off = 0; off < len && ret == 0; off += 65536)
        ret = csi_pgzip_feed(g, in + off, 65536, &err);
    ck_assert_int_eq(ret, CS_ECANCELED);
    ck_assert_str_eq(err->message, "sink stopped");
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_pgzip_feed(g, in, 10, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_pgzip_finish(g, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    csi_pgzip_free(g);
    csi_pgzip_free(NULL);
    ck_assert_int_eq(csi_pgzip_new(&g, 0, sink_append, &s, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    /* a tail that is not a footer: a blob made elsewhere */
    {
        uint64_t total = 0;
        unsigned char tail[CSI_PGZIP_FOOTER] = {0x1f, 0x8b, 8, 0};

        ck_assert(!csi_pgzip_total_size(&total, tail));
    }
    cs_error_free(err);
    cs_buf_dispose(&s.out);
    free(in);
}
END_TEST

/* Z (ZLEN bytes) in an unlinked temp file. */
static int
tmp_blob(const unsigned char *z, size_t zlen)
{
    char path[] = "/tmp/check_pgunzip-XXXXXX";
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    unlink(path);
    ck_assert_int_eq(write(fd, z, zlen), (ssize_t)zlen);
    return fd;
}

/* Read the blob in FD back through pgunzip, READ bytes at a time; the code of the first
 * failing read, or the count of bytes. */
static long
unzip_all(int fd, size_t zlen, uint64_t total, size_t read, unsigned char *out, size_t cap,
          cs_error **err)
{
    csi_pgunzip *u = NULL;
    size_t pos = 0;
    long r;

    ck_assert_cs_ok(csi_pgunzip_new(&u, fd, zlen, total, "test blob", err), err);
    for (;;) {
        char buf[1 << 16];
        size_t want = read < sizeof(buf) ? read : sizeof(buf);

        r = csi_pgunzip_read(u, buf, want, err);
        if (r <= 0)
            break;
        ck_assert_uint_le(pos + (size_t)r, cap);
        memcpy(out + pos, buf, (size_t)r);
        pos += (size_t)r;
        ck_assert_uint_eq(csi_pgunzip_pos(u), pos);
    }
    csi_pgunzip_free(u);
    return r < 0 ? r : (long)pos;
}

START_TEST(test_unzip_round_trip)
{
    size_t len = sizes[_i], zlen;
    unsigned char *in = mixed(len), *z, *out = malloc(len + 1);
    static const size_t reads[] = {1, 4093, 1 << 16};
    uint64_t total = 0;
    cs_error *err = NULL;
    size_t k;
    int fd;

    z = pgz(in, len, 5, 2, 65536, &zlen);
    ck_assert(csi_pgzip_total_size(&total, z + zlen - CSI_PGZIP_FOOTER));
    fd = tmp_blob(z, zlen);
    for (k = 0; k < 3; k++) {
        if (reads[k] == 1 && len > 3 * B)
            continue; /* byte by byte only where it stays quick */
        memset(out, 0xa5, len + 1);
        ck_assert_int_eq(unzip_all(fd, zlen, total, reads[k], out, len + 1, &err), (long)len);
        ck_assert_int_eq(memcmp(out, in, len), 0);
    }
    close(fd);
    free(z);
    free(out);
    free(in);
}
END_TEST

/* Each way a blob can lie: a flipped byte, a footer that claims one byte more or less, a
 * member longer than a block (a gzip made elsewhere with our footer), a truncated file. */
START_TEST(test_unzip_rejects)
{
    size_t len = 3 * B + 999, zlen, zl;
    unsigned char *in = mixed(len), *z, *out = malloc(len + 2), *big;
    uint64_t total = 0;
    cs_error *err = NULL;
    z_stream st;
    int fd;

    z = pgz(in, len, 5, 2, 65536, &zlen);
    ck_assert(csi_pgzip_total_size(&total, z + zlen - CSI_PGZIP_FOOTER));
    fd = tmp_blob(z, zlen);
    ck_assert_int_eq(unzip_all(fd, zlen, total + 1, 65536, out, len + 2, &err), CS_EPROTO);
    ck_assert_ptr_nonnull(strstr(err->message, "its footer says"));
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(unzip_all(fd, zlen, total - 1, 65536, out, len + 2, &err), CS_EPROTO);
    ck_assert_ptr_nonnull(strstr(err->message, "more than its footer"));
    cs_error_free(err);
    err = NULL;
    ck_assert_int_lt(unzip_all(fd, zlen - 100, total, 65536, out, len + 2, &err), 0);
    cs_error_free(err);
    err = NULL;
    close(fd);

    z[zlen / 2] ^= 0x40;
    fd = tmp_blob(z, zlen);
    ck_assert_int_eq(unzip_all(fd, zlen, total, 65536, out, len + 2, &err), CS_EPROTO);
    ck_assert_ptr_nonnull(strstr(err->message, "test blob"));
    cs_error_free(err);
    err = NULL;
    close(fd);

    /* one zlib member of the whole input, then the footer copied from the pgzip blob */
    big = malloc(len + len / 8 + 1024 + CSI_PGZIP_FOOTER);
    ck_assert_ptr_nonnull(big);
    memset(&st, 0, sizeof(st));
    ck_assert_int_eq(deflateInit2(&st, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
    st.next_in = in;
    st.avail_in = (uInt)len;
    st.next_out = big;
    st.avail_out = (uInt)(len + len / 8 + 1024);
    ck_assert_int_eq(deflate(&st, Z_FINISH), Z_STREAM_END);
    zl = (size_t)st.total_out;
    deflateEnd(&st);
    memcpy(big + zl, z + zlen - CSI_PGZIP_FOOTER, CSI_PGZIP_FOOTER);
    zl += CSI_PGZIP_FOOTER;
    fd = tmp_blob(big, zl);
    ck_assert_int_eq(unzip_all(fd, zl, total, 65536, out, len + 2, &err), CS_EPROTO);
    ck_assert_ptr_nonnull(strstr(err->message, "oversized gzip member at byte 0"));
    cs_error_free(err);
    close(fd);
    free(big);
    free(z);
    free(out);
    free(in);
}
END_TEST

static Suite *
pgzip_suite(void)
{
    Suite *s = suite_create("pgzip");
    TCase *tc = tcase_create("pgzip");

    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_same_bytes_any_threads, 0,
                        (int)(sizeof(sizes) / sizeof(sizes[0])));
    tcase_add_test(tc, test_ratio_and_stored);
    tcase_add_test(tc, test_streams_at_once);
    tcase_add_test(tc, test_sink_fails_midway);
    tcase_add_loop_test(tc, test_unzip_round_trip, 0, (int)(sizeof(sizes) / sizeof(sizes[0])));
    tcase_add_test(tc, test_unzip_rejects);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(pgzip_suite)
