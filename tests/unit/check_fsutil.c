/* File system helpers: atomic writes leave either the whole new file or the old one, and no
 * temp file, even when the writer is killed in the middle. */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cs_test.h"
#include "fsutil.h"

static char tmpdir[64];

static void
setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cs-fsutil-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Names in DIR other than . and .., joined by spaces. */
static void
listing(char *out, size_t size, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    out[0] = '\0';
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        n += (size_t)snprintf(out + n, n < size ? size - n : 0, "%s%s", n ? " " : "", e->d_name);
    }
    closedir(d);
}

static char *
slurp(const char *path, size_t *len)
{
    char *data = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(csi_fs_read_file(&data, len, path, 1u << 30, &err), &err);
    return data;
}

START_TEST(test_write_atomic_new_and_replace)
{
    char path[128], names[512];
    cs_error *err = NULL;
    struct stat st;
    size_t len;
    char *data;

    snprintf(path, sizeof(path), "%s/index.json", tmpdir);
    ck_assert_cs_ok(csi_fs_write_atomic(path, "{\"a\":1}", 7, &err), &err);
    data = slurp(path, &len);
    ck_assert_uint_eq(len, 7);
    ck_assert_str_eq(data, "{\"a\":1}");
    free(data);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0644);
    ck_assert_cs_ok(csi_fs_write_atomic(path, "{\"b\":22}", 8, &err), &err);
    data = slurp(path, &len);
    ck_assert_str_eq(data, "{\"b\":22}");
    free(data);
    listing(names, sizeof(names), tmpdir);
    ck_assert_str_eq(names, "index.json");
    /* empty content */
    ck_assert_cs_ok(csi_fs_write_atomic(path, NULL, 0, &err), &err);
    data = slurp(path, &len);
    ck_assert_uint_eq(len, 0);
    free(data);
}
END_TEST

START_TEST(test_write_atomic_missing_dir)
{
    char path[128], names[512];
    cs_error *err = NULL;

    snprintf(path, sizeof(path), "%s/no/such/dir/file", tmpdir);
    ck_assert_int_lt(csi_fs_write_atomic(path, "x", 1, &err), 0);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err->message, "no/such/dir"));
    cs_error_free(err);
    listing(names, sizeof(names), tmpdir);
    ck_assert_str_eq(names, "");
}
END_TEST

START_TEST(test_link_or_copy)
{
    char src[128], dst[128];
    cs_error *err = NULL;
    size_t len;
    char *data;

    snprintf(src, sizeof(src), "%s/src", tmpdir);
    snprintf(dst, sizeof(dst), "%s/dst", tmpdir);
    ck_assert_cs_ok(csi_fs_write_atomic(src, "hello", 5, &err), &err);
    ck_assert_cs_ok(csi_fs_link_or_copy(src, dst, &err), &err);
    data = slurp(dst, &len);
    ck_assert_str_eq(data, "hello");
    free(data);
    /* an existing destination is left as it is */
    ck_assert_cs_ok(csi_fs_write_atomic(src, "other", 5, &err), &err);
    ck_assert_cs_ok(csi_fs_link_or_copy(src, dst, &err), &err);
    data = slurp(dst, &len);
    ck_assert_str_eq(data, "hello");
    free(data);
}
END_TEST

START_TEST(test_tmp_commit_abort)
{
    char path[128], names[512];
    cs_error *err = NULL;
    csi_fs_tmp t;
    size_t len;
    char *data;

    snprintf(path, sizeof(path), "%s/out.tar", tmpdir);
    /* aborted: nothing at all */
    ck_assert_cs_ok(csi_fs_tmp_open(&t, path, &err), &err);
    ck_assert_cs_ok(csi_fs_write_all(t.fd, "partial", 7, csi_fs_tmp_name(&t), &err), &err);
    csi_fs_tmp_abort(&t);
    listing(names, sizeof(names), tmpdir);
    ck_assert_str_eq(names, "");
    /* not there before the commit, whole after it */
    ck_assert_cs_ok(csi_fs_tmp_open(&t, path, &err), &err);
    ck_assert_cs_ok(csi_fs_write_all(t.fd, "first", 5, csi_fs_tmp_name(&t), &err), &err);
    ck_assert_int_eq(access(path, F_OK), -1);
    ck_assert_cs_ok(csi_fs_tmp_commit(&t, &err), &err);
    data = slurp(path, &len);
    ck_assert_str_eq(data, "first");
    free(data);
    csi_fs_tmp_abort(&t); /* harmless after a commit */
    /* over an existing file */
    ck_assert_cs_ok(csi_fs_tmp_open(&t, path, &err), &err);
    ck_assert_cs_ok(csi_fs_write_all(t.fd, "second", 6, csi_fs_tmp_name(&t), &err), &err);
    ck_assert_cs_ok(csi_fs_tmp_commit(&t, &err), &err);
    data = slurp(path, &len);
    ck_assert_str_eq(data, "second");
    free(data);
    listing(names, sizeof(names), tmpdir);
    ck_assert_str_eq(names, "out.tar");
    /* a directory that does not exist: the error names it */
    snprintf(path, sizeof(path), "%s/none/out.tar", tmpdir);
    ck_assert_int_lt(csi_fs_tmp_open(&t, path, &err), 0);
    ck_assert_ptr_nonnull(strstr(err->message, "/none"));
    cs_error_free(err);
}
END_TEST

/* kill -9 of a process in the middle of a large atomic write: afterwards the directory holds
 * the whole file or nothing, never a temp file (issue #7: "no leftover tmp files"). */
START_TEST(test_write_atomic_killed)
{
    const size_t size = 256u << 20;
    char path[128], names[512];
    char *big = malloc(size);
    int round;

    /* filled before the fork, so the children start writing at once */
    ck_assert_ptr_nonnull(big);
    memset(big, 'z', size);
    snprintf(path, sizeof(path), "%s/blob", tmpdir);
    for (round = 0; round < 6; round++) {
        struct timespec ts = {0, (long)(round * 15 + 1) * 1000000L};
        int status;
        pid_t pid;

        unlink(path);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
            _exit(csi_fs_write_atomic(path, big, size, NULL) == 0 ? 0 : 1);
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        listing(names, sizeof(names), tmpdir);
        if (names[0] != '\0') {
            struct stat st;

            ck_assert_msg(strcmp(names, "blob") == 0, "round %d: left %s", round, names);
            ck_assert_int_eq(stat(path, &st), 0);
            ck_assert_int_eq(st.st_size, (off_t)size);
        }
    }
    free(big);
}
END_TEST

static Suite *
fsutil_suite(void)
{
    Suite *s = suite_create("fsutil");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_write_atomic_new_and_replace);
    tcase_add_test(tc, test_write_atomic_missing_dir);
    tcase_add_test(tc, test_link_or_copy);
    tcase_add_test(tc, test_tmp_commit_abort);
    tcase_add_test(tc, test_write_atomic_killed);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(fsutil_suite)
