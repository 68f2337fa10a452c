/* Growing blobs (growing.c): a reader waits for the bytes a writer says it wrote, learns the
 * digest and size once the blob is committed, or that it never will be; whoever meets the
 * digest later waits for the reader's upload to end. The writer and reader run in threads of
 * their own here, as in a push (the export's thread and an uploader). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cs_test.h"
#include "growing.h"

#define DIGEST_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static char dir[64], path[128];
static int wfd = -1;

static void
setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/cs-growing-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/blob", dir);
    wfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_int_ge(wfd, 0);
}

static void
teardown(void)
{
    char cmd[128];

    if (wfd >= 0)
        close(wfd);
    wfd = -1;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* The writer's thread: CHUNKS writes of 4 KiB of byte i, each announced; then done or fail. */
typedef struct writer {
    cs_growing_blob *g;
    int chunks;
    bool fail;
} writer;

static void *
write_thread(void *arg)
{
    writer *w = arg;
    char buf[4096];
    int i;

    for (i = 0; i < w->chunks; i++) {
        memset(buf, 'a' + i % 26, sizeof(buf));
        ck_assert_int_eq(write(wfd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
        csi_growing_wrote(w->g, (uint64_t)(i + 1) * sizeof(buf));
        usleep(1000);
    }
    if (w->fail)
        csi_growing_fail(w->g);
    else
        csi_growing_done(w->g, DIGEST_A, (uint64_t)w->chunks * sizeof(buf));
    return NULL;
}

/* The reader follows the file through its own descriptor while the writer appends: it sees
 * every byte the writer announced, in order, and the digest at the end. The writer's offset
 * is its own (a reader's lseek must not move it: the file would be garbled). */
START_TEST(test_follow_to_done)
{
    cs_growing_blob *g = NULL;
    cs_error *err = NULL;
    writer w = {NULL, 40, false};
    pthread_t t;
    uint64_t avail = 0, off = 0;
    enum csi_growing_state st;
    char buf[4096];

    ck_assert_cs_ok(csi_growing_new(&g, path, &err), &err);
    w.g = g;
    ck_assert_int_eq(pthread_create(&t, NULL, write_thread, &w), 0);
    for (;;) {
        st = csi_growing_wait(g, off + sizeof(buf), &avail);
        if (st != CSI_GROWING_OPEN && off == avail)
            break;
        ck_assert_uint_ge(avail, off + (st == CSI_GROWING_OPEN ? sizeof(buf) : 1));
        /* as registry_push.c reads: lseek + read on the reader's descriptor */
        ck_assert_int_eq(lseek(csi_growing_fd(g), (off_t)off, SEEK_SET), (off_t)off);
        ck_assert_int_eq(read(csi_growing_fd(g), buf, sizeof(buf)), (ssize_t)sizeof(buf));
        ck_assert_int_eq(buf[0], 'a' + (int)(off / sizeof(buf)) % 26);
        ck_assert_int_eq(buf[sizeof(buf) - 1], 'a' + (int)(off / sizeof(buf)) % 26);
        off += sizeof(buf);
    }
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(st, CSI_GROWING_DONE);
    ck_assert_uint_eq(avail, 40 * sizeof(buf));
    ck_assert_uint_eq(off, 40 * sizeof(buf));
    ck_assert_str_eq(csi_growing_digest(g), DIGEST_A);
    ck_assert(csi_growing_is(g, DIGEST_A));
    ck_assert(!csi_growing_is(g, "sha256:bb"));
    /* the writer's own offset was not moved by the reader: the file is whole and in order */
    ck_assert_int_eq(lseek(wfd, 0, SEEK_END), (off_t)(40 * sizeof(buf)));
    /* once done, more writes or a failure change nothing */
    csi_growing_wrote(g, 1);
    csi_growing_fail(g);
    ck_assert_int_eq(csi_growing_wait(g, 1u << 30, &avail), CSI_GROWING_DONE);
    ck_assert_uint_eq(avail, 40 * sizeof(buf));
    csi_growing_unref(g);
}
END_TEST

/* A blob abandoned midway wakes the reader, which is waiting for more, with FAILED; it never
 * matches a digest. */
START_TEST(test_fail_wakes_reader)
{
    cs_growing_blob *g = NULL;
    cs_error *err = NULL;
    writer w = {NULL, 5, true};
    pthread_t t;
    uint64_t avail = 0;

    ck_assert_cs_ok(csi_growing_new(&g, path, &err), &err);
    w.g = g;
    ck_assert_int_eq(pthread_create(&t, NULL, write_thread, &w), 0);
    /* more than the writer will ever write */
    ck_assert_int_eq(csi_growing_wait(g, 1u << 20, &avail), CSI_GROWING_FAILED);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_uint_le(avail, 5 * 4096);
    ck_assert(!csi_growing_is(g, DIGEST_A));
    ck_assert_str_eq(csi_growing_digest(g), "");
    csi_growing_done(g, DIGEST_A, 5 * 4096); /* too late: stays failed */
    ck_assert_int_eq(csi_growing_wait(g, 0, &avail), CSI_GROWING_FAILED);
    csi_growing_unref(g);
}
END_TEST

typedef struct outcome {
    cs_growing_blob *g;
    enum csi_growing_upload how;
    uint64_t sent;
} outcome;

static void *
upload_waiter(void *arg)
{
    outcome *o = arg;

    o->how = csi_growing_upload_wait(o->g, &o->sent);
    csi_growing_unref(o->g);
    return NULL;
}

/* Someone who meets the blob's digest waits for the uploader's outcome, with the bytes it
 * sent; each holds a reference, and the last one frees it (valgrind checks that). */
START_TEST(test_upload_outcome)
{
    static const enum csi_growing_upload hows[] = {CSI_GROWING_UPLOADED, CSI_GROWING_PRESENT,
                                                   CSI_GROWING_NOT_SENT};
    cs_growing_blob *g = NULL;
    cs_error *err = NULL;
    outcome o[2];
    pthread_t t[2];
    size_t i, k;

    for (k = 0; k < sizeof(hows) / sizeof(hows[0]); k++) {
        ck_assert_cs_ok(csi_growing_new(&g, path, &err), &err);
        csi_growing_done(g, DIGEST_A, 10);
        for (i = 0; i < 2; i++) {
            o[i].g = csi_growing_ref(g);
            o[i].how = CSI_GROWING_UPLOADING;
            ck_assert_int_eq(pthread_create(&t[i], NULL, upload_waiter, &o[i]), 0);
        }
        usleep(20000);
        /* the waiters are still waiting: nothing told them */
        ck_assert_int_eq(o[0].how, CSI_GROWING_UPLOADING);
        csi_growing_uploaded(g, hows[k], 1234);
        csi_growing_unref(g); /* the uploader's: the waiters' keep it */
        for (i = 0; i < 2; i++) {
            ck_assert_int_eq(pthread_join(t[i], NULL), 0);
            ck_assert_int_eq(o[i].how, hows[k]);
            ck_assert_uint_eq(o[i].sent, 1234);
        }
    }
}
END_TEST

START_TEST(test_missing_file)
{
    cs_growing_blob *g = NULL;
    cs_error *err = NULL;
    char missing[160];

    snprintf(missing, sizeof(missing), "%s/no-such-blob", dir);
    ck_assert_int_eq(csi_growing_new(&g, missing, &err), CS_EIO);
    ck_assert_ptr_null(g);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err->message, missing));
    ck_assert_int_eq(err->sys_errno, ENOENT);
    cs_error_free(err);
}
END_TEST

static Suite *
growing_suite(void)
{
    Suite *s = suite_create("growing");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_follow_to_done);
    tcase_add_test(tc, test_fail_wakes_reader);
    tcase_add_test(tc, test_upload_outcome);
    tcase_add_test(tc, test_missing_file);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(growing_suite)
