/* The streamed load's layer readers (src/lib/pull_stream.c) behind an archive entry
 * (csi_archive_add_reader): bytes are handed over as the download writes them, the last one
 * only once the blob is verified, and a failed or restarted download fails the stream; as a
 * late-sized entry (csi_pull_slot_size), a blob of ours goes decompressed and any other as it
 * downloads. */
#include "config.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cachesync/buf.h>
#include "archive.h"
#include "cs_test.h"
#include "error_int.h"
#include "pgzip.h"
#include "pull_int.h"
#include "tar.h"

#define LAYER 300000

static char path[64];
static unsigned char data[LAYER];
static csi_pull_stream st;
static csi_pull_slot slot;
static int wfd = -1;
static bool late; /* the layer as a csi_archive_add_reader_late entry, as pull_deliver.c has it */

static void
setup(void)
{
    size_t i;

    late = false;
    for (i = 0; i < LAYER; i++)
        data[i] = (unsigned char)(i * 7 + i / 251);
    snprintf(path, sizeof(path), "/tmp/cs-pstream-XXXXXX");
    wfd = mkstemp(path);
    ck_assert_int_ge(wfd, 0);
    memset(&st, 0, sizeof(st));
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    memset(&slot, 0, sizeof(slot));
    slot.st = &st;
    slot.size = LAYER;
    slot.fd = open(path, O_RDONLY);
    slot.state = CSI_SLOT_WRITING;
    ck_assert_int_ge(slot.fd, 0);
}

static void
teardown(void)
{
    close(wfd);
    unlink(path);
    csi_pull_slot_dispose(&slot);
    pthread_cond_destroy(&st.cv);
    pthread_mutex_destroy(&st.mu);
}

/* the download: writes the layer in pieces, then verifies it (or fails) */
typedef struct writer_args {
    size_t fail_at; /* 0: never */
    bool restart_at_half;
} writer_args;

static void *
writer(void *arg)
{
    writer_args *w = arg;
    size_t off = 0, n;

    while (off < LAYER) {
        n = LAYER - off < 7001 ? LAYER - off : 7001;
        if (w->fail_at && off >= w->fail_at) {
            csi_pull_slot_finished(&slot, false);
            return NULL;
        }
        if (w->restart_at_half && off >= LAYER / 2) {
            bool read_any = false;

            /* the reader has sent some of the layer on */
            while (!read_any) {
                pthread_mutex_lock(&st.mu);
                read_any = slot.read_any;
                pthread_mutex_unlock(&st.mu);
                usleep(1000);
            }
            w->restart_at_half = false;
            csi_pull_slot_restarted(&slot);
            ck_assert_int_eq(ftruncate(wfd, 0), 0);
            ck_assert_int_eq(lseek(wfd, 0, SEEK_SET), 0);
            off = 0;
            continue;
        }
        ck_assert_int_eq(write(wfd, data + off, n), (ssize_t)n);
        csi_pull_slot_wrote(&slot, n);
        off += n;
        usleep(200);
    }
    /* all bytes are there but not yet verified: the reader must still hold the last one */
    usleep(20000);
    pthread_mutex_lock(&st.mu);
    ck_assert_int_eq(slot.avail, LAYER);
    pthread_mutex_unlock(&st.mu);
    csi_pull_slot_finished(&slot, true);
    return NULL;
}

/* Stream the archive (a memory entry, the layer, a trailing manifest) to the end; returns
 * the read result and the bytes. */
static long
stream_all(cs_buf *out, cs_error **err)
{
    csi_archive *a = NULL;
    char buf[65536];
    long n;

    ck_assert_cs_ok(csi_archive_new(&a, err), err);
    ck_assert_cs_ok(csi_archive_add_mem(a, "config.json", "{}", 2, err), err);
    if (late)
        ck_assert_cs_ok(csi_archive_add_reader_late(a, "layer.tar", slot.size, csi_pull_slot_size,
                                                    csi_pull_slot_read_layer, &slot, err),
                        err);
    else
        ck_assert_cs_ok(
            csi_archive_add_reader(a, "layer.tar", LAYER, csi_pull_slot_read, &slot, err), err);
    ck_assert_cs_ok(csi_archive_add_mem(a, "manifest.json", "[]", 2, err), err);
    for (;;) {
        n = csi_archive_read(a, buf, sizeof(buf), err);
        if (n <= 0)
            break;
        ck_assert_int_eq(cs_buf_append(out, buf, (size_t)n, NULL), 0);
    }
    csi_archive_free(a);
    return n;
}

START_TEST(test_stream_follows_the_download)
{
    late = _i == 1;
    writer_args w = {0};
    cs_buf out = CS_BUF_INIT;
    cs_error *err = NULL;
    pthread_t t;
    size_t off;

    ck_assert_int_eq(pthread_create(&t, NULL, writer, &w), 0);
    ck_assert_cs_ok((int)stream_all(&out, &err), &err);
    /* the archive could not end before the blob was verified */
    pthread_mutex_lock(&st.mu);
    ck_assert_int_eq(slot.state, CSI_SLOT_DONE);
    pthread_mutex_unlock(&st.mu);
    pthread_join(t, NULL);
    /* config entry: header + 1 block; then the layer's header and its bytes, exactly */
    off = 2 * CSI_TAR_BLOCK;
    ck_assert_uint_ge(out.len, off + CSI_TAR_BLOCK + LAYER);
    ck_assert_int_eq(memcmp(out.ptr + off, "layer.tar", 9), 0);
    ck_assert_int_eq(memcmp(out.ptr + off + CSI_TAR_BLOCK, data, LAYER), 0);
    ck_assert_int_eq(slot.state, CSI_SLOT_DONE);
    cs_buf_dispose(&out);
}
END_TEST

START_TEST(test_failed_download_fails_the_stream)
{
    writer_args w = {.fail_at = LAYER / 3};
    cs_buf out = CS_BUF_INIT;
    cs_error *err = NULL;
    pthread_t t;

    ck_assert_int_eq(pthread_create(&t, NULL, writer, &w), 0);
    ck_assert_int_eq(stream_all(&out, &err), CS_EIO);
    pthread_join(t, NULL);
    /* the stream stopped inside the layer: manifest.json never went out */
    ck_assert_uint_lt(out.len, 3 * CSI_TAR_BLOCK + LAYER);
    ck_assert_ptr_null(memmem(out.ptr, out.len, "manifest.json", 13));
    cs_error_free(err);
    cs_buf_dispose(&out);
}
END_TEST

START_TEST(test_restart_after_bytes_went_out_fails)
{
    writer_args w = {.restart_at_half = true};
    cs_buf out = CS_BUF_INIT;
    cs_error *err = NULL;
    pthread_t t;

    ck_assert_int_eq(pthread_create(&t, NULL, writer, &w), 0);
    ck_assert_int_eq(stream_all(&out, &err), CS_EIO);
    pthread_join(t, NULL);
    ck_assert_ptr_null(memmem(out.ptr, out.len, "manifest.json", 13));
    cs_error_free(err);
    cs_buf_dispose(&out);
}
END_TEST

START_TEST(test_fetch_over_unblocks_readers)
{
    cs_buf out = CS_BUF_INIT;
    cs_error *err = NULL;

    /* nothing was written and the fetch ended (it failed elsewhere): no hang */
    pthread_mutex_lock(&st.mu);
    st.fetch_over = true;
    pthread_mutex_unlock(&st.mu);
    ck_assert_int_eq(stream_all(&out, &err), CS_EIO);
    cs_error_free(err);
    cs_buf_dispose(&out);
}
END_TEST

static int
sink_buf(void *payload, const char *d, size_t len, cs_error **err)
{
    return cs_buf_append(payload, d, len, err);
}

/* A blob pgzip.c made, verified: its entry is the decompressed layer, sized from the footer. */
START_TEST(test_ours_goes_decompressed)
{
    cs_buf z = CS_BUF_INIT, out = CS_BUF_INIT;
    csi_pgzip *g = NULL;
    cs_error *err = NULL;
    char size_field[13];
    size_t off;

    ck_assert_cs_ok(csi_pgzip_new(&g, 5, sink_buf, &z, &err), &err);
    ck_assert_cs_ok(csi_pgzip_feed(g, data, LAYER, &err), &err);
    ck_assert_cs_ok(csi_pgzip_finish(g, &err), &err);
    csi_pgzip_free(g);
    ck_assert_int_eq(write(wfd, z.ptr, z.len), (ssize_t)z.len);
    slot.size = slot.avail = z.len;
    slot.state = CSI_SLOT_DONE;
    late = true;
    ck_assert_cs_ok((int)stream_all(&out, &err), &err);
    ck_assert(slot.raw);
    ck_assert_uint_eq(slot.raw_size, LAYER);
    off = 2 * CSI_TAR_BLOCK;
    ck_assert_uint_ge(out.len, off + CSI_TAR_BLOCK + LAYER);
    ck_assert_int_eq(memcmp(out.ptr + off, "layer.tar", 9), 0);
    snprintf(size_field, sizeof(size_field), "%011o", LAYER);
    ck_assert_int_eq(memcmp(out.ptr + off + 124, size_field, 11), 0);
    ck_assert_int_eq(memcmp(out.ptr + off + CSI_TAR_BLOCK, data, LAYER), 0);
    ck_assert_ptr_nonnull(memmem(out.ptr, out.len, "manifest.json", 13));

    /* the same blob with one content byte flipped (its digest would still have been checked
     * by the store; this is the blob lying about its content): the stream fails */
    cs_buf_dispose(&out);
    z.ptr[z.len / 2] ^= 0x10;
    ck_assert_int_eq(pwrite(wfd, z.ptr, z.len, 0), (ssize_t)z.len);
    ck_assert_int_eq(stream_all(&out, &err), CS_EPROTO);
    /* (the read that failed returned nothing of what it had produced) */
    ck_assert(out.len == 0 || memmem(out.ptr, out.len, "manifest.json", 13) == NULL);
    cs_error_free(err);
    cs_buf_dispose(&out);
    cs_buf_dispose(&z);
}
END_TEST

static Suite *
pull_stream_suite(void)
{
    Suite *s = suite_create("pull_stream");
    TCase *tc = tcase_create("slots");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_stream_follows_the_download, 0, 2);
    tcase_add_test(tc, test_ours_goes_decompressed);
    tcase_add_test(tc, test_failed_download_fails_the_stream);
    tcase_add_test(tc, test_restart_after_bytes_went_out_fails);
    tcase_add_test(tc, test_fetch_over_unblocks_readers);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(pull_stream_suite)
