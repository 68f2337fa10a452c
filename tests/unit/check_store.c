/* The local store: verified atomic blobs, resumable writers, locking, index.json refs. */
#include "config.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cachesync/store.h>
#include "cs_test.h"

static char tmpdir[64];
static cs_store *store;

static void
setup(void)
{
    cs_error *err = NULL;

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cs-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    ck_assert_cs_ok(cs_store_open(&store, tmpdir, &err), &err);
}

static void
teardown(void)
{
    char cmd[128];

    cs_store_free(store);
    store = NULL;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static char *
slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *d;
    long n;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    d = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(d, 1, (size_t)n, f), (size_t)n);
    d[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return d;
}

START_TEST(test_layout_created)
{
    char path[128];
    char *s;

    snprintf(path, sizeof(path), "%s/oci-layout", tmpdir);
    s = slurp(path, NULL);
    ck_assert_str_eq(s, "{\"imageLayoutVersion\":\"1.0.0\"}");
    free(s);
    snprintf(path, sizeof(path), "%s/index.json", tmpdir);
    s = slurp(path, NULL);
    ck_assert_ptr_nonnull(strstr(s, "\"manifests\":[]"));
    free(s);
    /* opening again keeps what is there */
    cs_store *again = NULL;
    ck_assert_int_eq(cs_store_open(&again, tmpdir, NULL), 0);
    cs_store_free(again);
}
END_TEST

START_TEST(test_put_and_read)
{
    char digest[CS_DIGEST_STRLEN];
    cs_buf b = CS_BUF_INIT;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_store_put_blob(store, NULL, "abc", 3, digest, &err), &err);
    ck_assert_str_eq(digest,
                     "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ck_assert(cs_store_has_blob(store, digest, 3));
    ck_assert(!cs_store_has_blob(store, digest, 4));
    ck_assert_cs_ok(cs_store_read_blob(&b, store, digest, 100, &err), &err);
    ck_assert_str_eq(b.ptr, "abc");
    cs_buf_dispose(&b);
    /* a wrong digest is refused and nothing appears */
    ck_assert_int_eq(cs_store_put_blob(store,
                                       "sha256:0000000000000000000000000000000000000000000000000"
                                       "000000000000000",
                                       "abc", 3, NULL, &err),
                     CS_EDIGEST);
    cs_error_free(err);
    err = NULL;
    ck_assert(!cs_store_has_blob(
        store, "sha256:0000000000000000000000000000000000000000000000000000000000000000", -1));
    ck_assert_int_eq(cs_store_read_blob(&b, store,
                                        "sha256:000000000000000000000000000000000000000000000000"
                                        "0000000000000000",
                                        100, &err),
                     CS_ENOTFOUND);
    cs_error_free(err);
}
END_TEST

START_TEST(test_read_detects_corruption)
{
    char digest[CS_DIGEST_STRLEN], *path = NULL;
    cs_buf b = CS_BUF_INIT;
    cs_error *err = NULL;
    FILE *f;

    ck_assert_int_eq(cs_store_put_blob(store, NULL, "hello", 5, digest, NULL), 0);
    ck_assert_int_eq(cs_store_blob_path(&path, store, digest, NULL), 0);
    f = fopen(path, "wb");
    fputs("jello", f);
    fclose(f);
    ck_assert_int_eq(cs_store_read_blob(&b, store, digest, 100, &err), CS_EDIGEST);
    ck_assert_ptr_nonnull(strstr(err->message, "corrupt"));
    cs_error_free(err);
    free(path);
}
END_TEST

START_TEST(test_bad_digest_names_no_file)
{
    char *path = NULL;
    cs_error *err = NULL;

    ck_assert_int_eq(cs_store_blob_path(&path, store, "sha256:../../etc/passwd", &err), CS_EPROTO);
    ck_assert_ptr_null(path);
    cs_error_free(err);
}
END_TEST

#define HELLO_DIGEST "sha256:936a185caaa266bb9cbe981e9e05cb78cd732b0b3280eb944412bb6f8f8f07af"

START_TEST(test_writer_resume)
{
    cs_store_writer *w = NULL;
    cs_error *err = NULL;

    /* first run writes part of "helloworld" and stops */
    ck_assert_cs_ok(cs_store_writer_open(&w, store, HELLO_DIGEST, 10, &err), &err);
    ck_assert(!cs_store_writer_present(w));
    ck_assert_uint_eq(cs_store_writer_offset(w), 0);
    ck_assert_cs_ok(cs_store_writer_write(w, "hello", 5, &err), &err);
    cs_store_writer_close(w);
    ck_assert(!cs_store_has_blob(store, HELLO_DIGEST, -1));
    /* the next one resumes at 5 and the digest covers the whole */
    ck_assert_cs_ok(cs_store_writer_open(&w, store, HELLO_DIGEST, 10, &err), &err);
    ck_assert_uint_eq(cs_store_writer_offset(w), 5);
    ck_assert_cs_ok(cs_store_writer_write(w, "world", 5, &err), &err);
    ck_assert_int_eq(cs_store_writer_write(w, "!", 1, &err), CS_EDIGEST);
    cs_error_free(err);
    err = NULL;
    ck_assert_cs_ok(cs_store_writer_commit(w, &err), &err);
    cs_store_writer_close(w);
    ck_assert(cs_store_has_blob(store, HELLO_DIGEST, 10));
    /* and a later writer finds it present */
    ck_assert_cs_ok(cs_store_writer_open(&w, store, HELLO_DIGEST, 10, &err), &err);
    ck_assert(cs_store_writer_present(w));
    cs_store_writer_close(w);
}
END_TEST

START_TEST(test_writer_mismatch_removes_partial)
{
    cs_store_writer *w = NULL;
    cs_error *err = NULL;
    char path[256];
    struct stat st;

    ck_assert_cs_ok(cs_store_writer_open(&w, store, HELLO_DIGEST, 10, &err), &err);
    ck_assert_cs_ok(cs_store_writer_write(w, "helloWorld", 10, &err), &err);
    ck_assert_int_eq(cs_store_writer_commit(w, &err), CS_EDIGEST);
    ck_assert_ptr_nonnull(strstr(err->message, HELLO_DIGEST));
    cs_error_free(err);
    cs_store_writer_close(w);
    ck_assert(!cs_store_has_blob(store, HELLO_DIGEST, -1));
    snprintf(path, sizeof(path), "%s/partial/%s", tmpdir, HELLO_DIGEST + 7);
    ck_assert_int_ne(stat(path, &st), 0);
    /* short data does not commit either */
    ck_assert_cs_ok(cs_store_writer_open(&w, store, HELLO_DIGEST, 10, &err), &err);
    ck_assert_uint_eq(cs_store_writer_offset(w), 0);
    ck_assert_cs_ok(cs_store_writer_write(w, "hell", 4, &err), &err);
    ck_assert_int_eq(cs_store_writer_commit(w, &err), CS_EDIGEST);
    cs_error_free(err);
    err = NULL;
    ck_assert_cs_ok(cs_store_writer_restart(w, &err), &err);
    ck_assert_cs_ok(cs_store_writer_write(w, "helloworld", 10, &err), &err);
    ck_assert_cs_ok(cs_store_writer_commit(w, &err), &err);
    cs_store_writer_close(w);
    ck_assert(cs_store_has_blob(store, HELLO_DIGEST, 10));
}
END_TEST

/* Two processes writing the same blob: the second waits, then finds it present. The child
 * is forked before the parent takes the lock (a forked child would inherit the lock). */
START_TEST(test_writer_lock_between_processes)
{
    cs_store_writer *w = NULL;
    int go[2], status;
    pid_t pid;
    char c;

    ck_assert_int_eq(pipe(go), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        cs_store *s2 = NULL;
        cs_store_writer *w2 = NULL;

        close(go[1]);
        if (read(go[0], &c, 1) != 1 || cs_store_open(&s2, tmpdir, NULL) != 0)
            _exit(2);
        if (cs_store_writer_open(&w2, s2, HELLO_DIGEST, 10, NULL) != 0)
            _exit(3);
        _exit(cs_store_writer_present(w2) ? 0 : 4);
    }
    close(go[0]);
    ck_assert_int_eq(cs_store_writer_open(&w, store, HELLO_DIGEST, 10, NULL), 0);
    ck_assert_int_eq(write(go[1], "x", 1), 1);
    usleep(200000); /* the child now waits on the lock */
    ck_assert_int_eq(cs_store_writer_write(w, "helloworld", 10, NULL), 0);
    ck_assert_int_eq(cs_store_writer_commit(w, NULL), 0);
    cs_store_writer_close(w);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    close(go[1]);
}
END_TEST

START_TEST(test_set_ref_replaces)
{
    static const char *const ann[] = {"io.cachesync.source", "reg/app:main", NULL};
    json_t *root, *m;
    char path[128];
    cs_error *err = NULL;

    ck_assert_cs_ok(
        cs_store_set_ref(store, "reg/app:main", "application/x", HELLO_DIGEST, 10, ann, &err),
        &err);
    ck_assert_cs_ok(
        cs_store_set_ref(store, "reg/app:dev", "application/x", HELLO_DIGEST, 10, NULL, &err),
        &err);
    ck_assert_cs_ok(
        cs_store_set_ref(store, "reg/app:main", "application/y", HELLO_DIGEST, 11, NULL, &err),
        &err);
    snprintf(path, sizeof(path), "%s/index.json", tmpdir);
    root = json_load_file(path, 0, NULL);
    ck_assert_ptr_nonnull(root);
    m = json_object_get(root, "manifests");
    ck_assert_uint_eq(json_array_size(m), 2);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(json_array_get(m, 1), "annotations"),
                                          "org.opencontainers.image.ref.name")),
        "reg/app:main");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 1), "mediaType")),
                     "application/y");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(json_array_get(m, 0), "annotations"),
                                          "io.containerd.image.name")),
        "reg/app:dev");
    json_decref(root);
}
END_TEST

static Suite *
store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("blobs");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_layout_created);
    tcase_add_test(tc, test_put_and_read);
    tcase_add_test(tc, test_read_detects_corruption);
    tcase_add_test(tc, test_bad_digest_names_no_file);
    tcase_add_test(tc, test_writer_resume);
    tcase_add_test(tc, test_writer_mismatch_removes_partial);
    tcase_add_test(tc, test_writer_lock_between_processes);
    tcase_add_test(tc, test_set_ref_replaces);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(store_suite)
