/* <store>/layers.json (src/lib/layermap.c): diff_id -> compressed blob, blob -> repositories,
 * a corrupt or oversized file read as empty, concurrent updates under the lock. */
#include "config.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cachesync/buf.h>
#include <cachesync/store.h>
#include "cs_test.h"
#include "layermap.h"

static char tmpdir[64];
static cs_store *store;

static void
setup(void)
{
    cs_error *err = NULL;

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cs-lmap-XXXXXX");
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

/* "sha256:" + 64 hex digits of C. */
static void
fake_digest(char out[CS_DIGEST_STRLEN], char c)
{
    memcpy(out, "sha256:", 7);
    memset(out + 7, c, 64);
    out[71] = '\0';
}

static void
numbered_digest(char out[CS_DIGEST_STRLEN], unsigned n)
{
    snprintf(out, CS_DIGEST_STRLEN, "sha256:%064x", n);
}

static void
write_map(const char *text)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/layers.json", tmpdir);
    f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    fclose(f);
}

static json_t *
read_map(void)
{
    char path[128];
    json_error_t jerr;
    json_t *root;

    snprintf(path, sizeof(path), "%s/layers.json", tmpdir);
    root = json_load_file(path, 0, &jerr);
    ck_assert_msg(json_is_object(root), "layers.json is not a JSON object: %s", jerr.text);
    return root;
}

START_TEST(test_put_get)
{
    char diff[CS_DIGEST_STRLEN], gz[CS_DIGEST_STRLEN], zs[CS_DIGEST_STRLEN], gz2[CS_DIGEST_STRLEN];
    char got[CS_DIGEST_STRLEN];
    cs_error *err = NULL;
    int64_t size = -1;
    json_t *root;

    fake_digest(diff, 'd');
    fake_digest(gz, 'a');
    fake_digest(zs, 'b');
    fake_digest(gz2, 'c');
    /* nothing yet: the file does not even exist */
    ck_assert_int_eq(csi_layermap_get(got, &size, store, diff, "gzip", &err), CS_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err->message, diff));
    cs_error_free(err);
    err = NULL;
    ck_assert_cs_ok(csi_layermap_put(store, diff, "gzip", gz, 1234, &err), &err);
    ck_assert_cs_ok(csi_layermap_put(store, diff, "zstd", zs, 999, &err), &err);
    ck_assert_cs_ok(csi_layermap_get(got, &size, store, diff, "gzip", &err), &err);
    ck_assert_str_eq(got, gz);
    ck_assert_int_eq(size, 1234);
    ck_assert_cs_ok(csi_layermap_get(got, NULL, store, diff, "zstd", &err), &err);
    ck_assert_str_eq(got, zs);
    /* a second answer for the same compression replaces the first, the other stays */
    ck_assert_cs_ok(csi_layermap_put(store, diff, "gzip", gz2, 77, &err), &err);
    ck_assert_cs_ok(csi_layermap_get(got, &size, store, diff, "gzip", &err), &err);
    ck_assert_str_eq(got, gz2);
    ck_assert_int_eq(size, 77);
    ck_assert_cs_ok(csi_layermap_get(got, &size, store, diff, "zstd", &err), &err);
    ck_assert_str_eq(got, zs);
    ck_assert_int_eq(size, 999);
    /* the documented shape */
    root = read_map();
    ck_assert_str_eq(
        json_string_value(json_object_get(
            json_object_get(json_object_get(json_object_get(root, "layers"), diff), "gzip"),
            "digest")),
        gz2);
    json_decref(root);
}
END_TEST

/* Deferred: puts and seens wait in memory (the file does not change), in order; the flush
 * writes them all at once and ends the deferral; a flush without a deferral does nothing. */
START_TEST(test_defer_flush)
{
    char diff[CS_DIGEST_STRLEN], gz[CS_DIGEST_STRLEN], gz2[CS_DIGEST_STRLEN];
    char got[CS_DIGEST_STRLEN], path[128];
    cs_error *err = NULL;
    char **repos = NULL;
    int64_t size = -1;
    size_t n = 0;
    struct stat st;

    fake_digest(diff, 'd');
    fake_digest(gz, 'a');
    fake_digest(gz2, 'c');
    snprintf(path, sizeof(path), "%s/layers.json", tmpdir);
    ck_assert_cs_ok(csi_layermap_flush(store, &err), &err);
    ck_assert_cs_ok(csi_layermap_defer(store, &err), &err);
    ck_assert_cs_ok(csi_layermap_defer(store, &err), &err); /* twice: still one deferral */
    ck_assert_cs_ok(csi_layermap_put(store, diff, "gzip", gz, 10, &err), &err);
    ck_assert_cs_ok(csi_layermap_seen(store, gz, "reg.example/a", &err), &err);
    ck_assert_cs_ok(csi_layermap_put(store, diff, "gzip", gz2, 20, &err), &err);
    ck_assert_cs_ok(csi_layermap_seen(store, gz, "reg.example/b", &err), &err);
    /* bad arguments are still refused at once */
    ck_assert_int_lt(csi_layermap_put(store, "sha256:x", "gzip", gz, 1, &err), 0);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_ne(stat(path, &st), 0);
    ck_assert_int_eq(csi_layermap_get(got, &size, store, diff, "gzip", &err), CS_ENOTFOUND);
    cs_error_free(err);
    err = NULL;
    ck_assert_cs_ok(csi_layermap_flush(store, &err), &err);
    ck_assert_cs_ok(csi_layermap_get(got, &size, store, diff, "gzip", &err), &err);
    ck_assert_str_eq(got, gz2); /* the later put wins, as written one by one */
    ck_assert_int_eq(size, 20);
    ck_assert_cs_ok(csi_layermap_where(&repos, &n, store, gz, &err), &err);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(repos[0], "reg.example/b");
    ck_assert_str_eq(repos[1], "reg.example/a");
    csi_layermap_repos_free(repos);
    /* the deferral ended: the next put goes to the file */
    ck_assert_cs_ok(csi_layermap_put(store, diff, "gzip", gz, 30, &err), &err);
    ck_assert_cs_ok(csi_layermap_get(got, &size, store, diff, "gzip", &err), &err);
    ck_assert_int_eq(size, 30);
}
END_TEST

START_TEST(test_bad_arguments)
{
    char d[CS_DIGEST_STRLEN], got[CS_DIGEST_STRLEN];
    cs_error *err = NULL;

    fake_digest(d, 'e');
    ck_assert_int_eq(csi_layermap_put(store, d, "xz", d, 1, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_layermap_get(got, NULL, store, d, "bzip2", &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_lt(csi_layermap_put(store, "sha256:short", "gzip", d, 1, &err), 0);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_lt(csi_layermap_put(store, d, "gzip", "md5:abc", 1, &err), 0);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_layermap_put(store, d, "gzip", d, -1, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_layermap_seen(store, d, "", &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_layermap_seen(store, d, "host/repo name", &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_lt(csi_layermap_seen(store, "sha256:../../x", "h/r", &err), 0);
    cs_error_free(err);
    err = NULL;
    /* nothing was written by any of them */
    ck_assert_int_eq(csi_layermap_get(got, NULL, store, d, "gzip", NULL), CS_ENOTFOUND);
}
END_TEST

START_TEST(test_seen_where)
{
    char blob[CS_DIGEST_STRLEN], other[CS_DIGEST_STRLEN], repo[64];
    cs_error *err = NULL;
    char **repos = NULL;
    size_t n = 99;
    unsigned i;

    fake_digest(blob, '1');
    fake_digest(other, '2');
    ck_assert_cs_ok(csi_layermap_where(&repos, &n, store, blob, &err), &err);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(repos[0]);
    csi_layermap_repos_free(repos);

    ck_assert_cs_ok(csi_layermap_seen(store, blob, "127.0.0.1:5000/team/app", &err), &err);
    ck_assert_cs_ok(csi_layermap_seen(store, blob, "127.0.0.1:5000/team/base", &err), &err);
    ck_assert_cs_ok(csi_layermap_seen(store, other, "127.0.0.1:5000/other", &err), &err);
    /* seen again: moves to the front, not listed twice */
    ck_assert_cs_ok(csi_layermap_seen(store, blob, "127.0.0.1:5000/team/app", &err), &err);
    ck_assert_cs_ok(csi_layermap_where(&repos, &n, store, blob, &err), &err);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(repos[0], "127.0.0.1:5000/team/app");
    ck_assert_str_eq(repos[1], "127.0.0.1:5000/team/base");
    ck_assert_ptr_null(repos[2]);
    csi_layermap_repos_free(repos);

    /* the list keeps the most recent CSI_LAYERMAP_SEEN_MAX */
    for (i = 0; i < CSI_LAYERMAP_SEEN_MAX + 5; i++) {
        snprintf(repo, sizeof(repo), "reg.example/r%u", i);
        ck_assert_cs_ok(csi_layermap_seen(store, other, repo, &err), &err);
    }
    ck_assert_cs_ok(csi_layermap_where(&repos, &n, store, other, &err), &err);
    ck_assert_uint_eq(n, CSI_LAYERMAP_SEEN_MAX);
    snprintf(repo, sizeof(repo), "reg.example/r%u", CSI_LAYERMAP_SEEN_MAX + 4);
    ck_assert_str_eq(repos[0], repo);
    csi_layermap_repos_free(repos);
    csi_layermap_repos_free(NULL);
}
END_TEST

START_TEST(test_corrupt_file)
{
    static const char *const bad[] = {
        "",
        "{\"layers\":",
        "[1,2,3]",
        "\"text\"",
        "null",
        "\xff\xfe garbage \x01",
        "{\"layers\":[],\"blobs\":7}",
        "{\"layers\":{\"sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\":"
        "{\"gzip\":{\"digest\":5,\"size\":\"x\"}}},\"blobs\":{\"sha256:"
        "11111111111111111111111111111"
        "11111111111111111111111111111111111\":{\"seen\":[1,null,\"ok.example/r\",\"bad repo\"]}}}",
        "{\"layers\":{\"sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\":"
        "{\"gzip\":{\"digest\":\"sha256:../../../etc/passwd\",\"size\":1}}}}",
        "{\"layers\":{\"sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\":"
        "{\"gzip\":{\"digest\":\"sha256:"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaa\",\"size\":-5}}}}",
    };
    char diff[CS_DIGEST_STRLEN], blob[CS_DIGEST_STRLEN], got[CS_DIGEST_STRLEN];
    cs_error *err = NULL;
    char **repos = NULL;
    size_t i, n;

    fake_digest(diff, 'd');
    fake_digest(blob, '1');
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_map(bad[i]);
        ck_assert_msg(csi_layermap_get(got, NULL, store, diff, "gzip", NULL) == CS_ENOTFOUND,
                      "case %zu", i);
        ck_assert_cs_ok(csi_layermap_where(&repos, &n, store, blob, &err), &err);
        /* only the well-formed repository of case 7 survives */
        ck_assert_uint_eq(n, i == 7 ? 1 : 0);
        csi_layermap_repos_free(repos);
        /* an update starts afresh (or repairs) and leaves a valid file */
        ck_assert_cs_ok(csi_layermap_put(store, diff, "gzip", blob, 10, &err), &err);
        ck_assert_cs_ok(csi_layermap_get(got, NULL, store, diff, "gzip", &err), &err);
        ck_assert_str_eq(got, blob);
        ck_assert_cs_ok(csi_layermap_seen(store, blob, "h.example/r", &err), &err);
        json_decref(read_map());
    }
}
END_TEST

START_TEST(test_oversized_file)
{
    char diff[CS_DIGEST_STRLEN], blob[CS_DIGEST_STRLEN], got[CS_DIGEST_STRLEN], path[128];
    cs_error *err = NULL;
    struct stat st;
    int fd;

    fake_digest(diff, 'd');
    fake_digest(blob, '1');
    ck_assert_cs_ok(csi_layermap_put(store, diff, "gzip", blob, 10, &err), &err);
    /* grown past the cap (sparse, so cheap): read as empty, then replaced */
    snprintf(path, sizeof(path), "%s/layers.json", tmpdir);
    fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)CSI_LAYERMAP_MAX + 1), 0);
    close(fd);
    ck_assert_int_eq(csi_layermap_get(got, NULL, store, diff, "gzip", NULL), CS_ENOTFOUND);
    ck_assert_cs_ok(csi_layermap_put(store, diff, "zstd", blob, 10, &err), &err);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_lt(st.st_size, 4096);
    ck_assert_cs_ok(csi_layermap_get(got, NULL, store, diff, "zstd", &err), &err);
}
END_TEST

/* Several processes updating at once: every update survives (read-modify-write under the
 * lock, atomic replace). */
START_TEST(test_concurrent_updates)
{
    enum { PROCS = 6, EACH = 15 };
    char diff[CS_DIGEST_STRLEN], blob[CS_DIGEST_STRLEN], got[CS_DIGEST_STRLEN];
    cs_error *err = NULL;
    pid_t pids[PROCS];
    int64_t size;
    unsigned p, k;
    int status;

    for (p = 0; p < PROCS; p++) {
        pids[p] = fork();
        ck_assert_int_ge(pids[p], 0);
        if (pids[p] == 0) {
            int bad = 0;

            for (k = 0; k < EACH; k++) {
                numbered_digest(diff, p * 1000 + k);
                numbered_digest(blob, 500000 + p * 1000 + k);
                bad |= csi_layermap_put(store, diff, k % 2 ? "zstd" : "gzip", blob, k, NULL);
                bad |= csi_layermap_seen(store, blob, "127.0.0.1:5000/x", NULL);
            }
            _exit(bad ? 1 : 0);
        }
    }
    for (p = 0; p < PROCS; p++) {
        ck_assert_int_eq(waitpid(pids[p], &status, 0), pids[p]);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    for (p = 0; p < PROCS; p++) {
        for (k = 0; k < EACH; k++) {
            char **repos = NULL;
            size_t n = 0;

            numbered_digest(diff, p * 1000 + k);
            numbered_digest(blob, 500000 + p * 1000 + k);
            ck_assert_cs_ok(
                csi_layermap_get(got, &size, store, diff, k % 2 ? "zstd" : "gzip", &err), &err);
            ck_assert_str_eq(got, blob);
            ck_assert_int_eq(size, k);
            ck_assert_cs_ok(csi_layermap_where(&repos, &n, store, blob, &err), &err);
            ck_assert_uint_eq(n, 1);
            csi_layermap_repos_free(repos);
        }
    }
}
END_TEST

/* A hand-made file naming a blob's repositories by the hundred: where() answers no more than
 * an update would ever have kept (each name costs a push one mount request). Found by
 * tests/fuzz/fuzz_layermap.c (corpus: entry-for-the-target). */
START_TEST(test_where_capped)
{
    char blob[CS_DIGEST_STRLEN], **repos = NULL;
    cs_error *err = NULL;
    cs_buf text = CS_BUF_INIT;
    size_t n = 0;
    unsigned i;

    fake_digest(blob, 'e');
    cs_buf_printf(&text, NULL, "{\"blobs\":{\"%s\":{\"seen\":[\"\",5,\"a b\"", blob);
    for (i = 0; i < 200; i++)
        cs_buf_printf(&text, NULL, ",\"reg.example/r%u\"", i);
    cs_buf_puts(&text, "]}}}", NULL);
    write_map(text.ptr);
    ck_assert_cs_ok(csi_layermap_where(&repos, &n, store, blob, &err), &err);
    ck_assert_uint_eq(n, CSI_LAYERMAP_SEEN_MAX);
    ck_assert_str_eq(repos[0], "reg.example/r0");
    ck_assert_ptr_null(repos[n]);
    csi_layermap_repos_free(repos);
    cs_buf_dispose(&text);
}
END_TEST

static Suite *
layermap_suite(void)
{
    Suite *s = suite_create("layermap");
    TCase *tc = tcase_create("layermap");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_put_get);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_defer_flush);
    tcase_add_test(tc, test_seen_where);
    tcase_add_test(tc, test_where_capped);
    tcase_add_test(tc, test_corrupt_file);
    tcase_add_test(tc, test_oversized_file);
    tcase_add_test(tc, test_concurrent_updates);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(layermap_suite)
