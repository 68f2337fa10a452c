#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error_int.h"
#include "fsutil.h"

int
csi_fs_mkdirs(const char *path, cs_error **err)
{
    char buf[PATH_MAX];
    size_t i, n = strlen(path);

    if (n == 0 || n >= sizeof(buf))
        return csi_error_set(err, CS_EINVAL, "bad path \"%.100s\"", path);
    memcpy(buf, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return csi_error_errno(err, errno, "create directory %s", buf);
        buf[i] = path[i];
    }
    return 0;
}

void
csi_fs_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        return;
    fsync(fd);
    close(fd);
}

static void
fsync_parent(const char *path)
{
    char *dir = strdup(path), *slash;

    if (dir == NULL)
        return;
    slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        csi_fs_fsync_dir(dir);
    } else if (slash == NULL) {
        csi_fs_fsync_dir(".");
    }
    free(dir);
}

int
csi_fs_write_all(int fd, const void *vdata, size_t len, const char *name, cs_error **err)
{
    const char *data = vdata;
    size_t done = 0;

    while (done < len) {
        ssize_t w = write(fd, data + done, len - done);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return csi_error_errno(err, errno, "write %s", name);
        done += (size_t)w;
    }
    return 0;
}

/* Fill a temp file beside PATH from DATA (or from SRC_FD when DATA is NULL), then rename. */
static int
atomic_from(const char *path, const void *data, size_t len, int src_fd, cs_error **err)
{
    char *tmp = NULL, *buf = NULL;
    int fd = -1, ret = 0;

    if (asprintf(&tmp, "%s.tmp-XXXXXX", path) < 0)
        return csi_error_oom(err);
    fd = mkstemp(tmp);
    if (fd < 0) {
        ret = csi_error_errno(err, errno, "create %s", tmp);
        free(tmp);
        return ret;
    }
    if (data != NULL || src_fd < 0) {
        ret = csi_fs_write_all(fd, data, len, tmp, err);
    } else {
        buf = malloc(1 << 20);
        if (buf == NULL)
            ret = csi_error_oom(err);
        while (ret == 0) {
            ssize_t r = read(src_fd, buf, 1 << 20);

            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                ret = csi_error_errno(err, errno, "read for %s", path);
                break;
            }
            if (r == 0)
                break;
            ret = csi_fs_write_all(fd, buf, (size_t)r, tmp, err);
        }
    }
    if (ret == 0 && (fchmod(fd, 0644) != 0 || fsync(fd) != 0))
        ret = csi_error_errno(err, errno, "write %s", tmp);
    if (close(fd) != 0 && ret == 0)
        ret = csi_error_errno(err, errno, "close %s", tmp);
    if (ret == 0 && rename(tmp, path) != 0)
        ret = csi_error_errno(err, errno, "rename %s to %s", tmp, path);
    if (ret < 0)
        unlink(tmp);
    else
        fsync_parent(path);
    free(buf);
    free(tmp);
    return ret;
}

int
csi_fs_write_atomic(const char *path, const void *data, size_t len, cs_error **err)
{
    return atomic_from(path, data ? data : "", len, -1, err);
}

int
csi_fs_link_or_copy(const char *src, const char *dst, cs_error **err)
{
    struct stat st;
    int fd, ret;

    if (lstat(dst, &st) == 0)
        return 0;
    if (link(src, dst) == 0)
        return 0;
    if (errno != EXDEV && errno != EPERM && errno != EMLINK && errno != ENOTSUP)
        return csi_error_errno(err, errno, "link %s to %s", src, dst);
    fd = open(src, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return csi_error_errno(err, errno, "open %s", src);
    ret = atomic_from(dst, NULL, 0, fd, err);
    close(fd);
    return ret;
}

int
csi_fs_read_file(char **out, size_t *len_out, const char *path, size_t max, cs_error **err)
{
    struct stat st;
    char *data = NULL;
    size_t done = 0;
    int fd, ret = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? csi_error_set(err, CS_ENOTFOUND, "%s does not exist", path)
                               : csi_error_errno(err, errno, "open %s", path);
    if (fstat(fd, &st) != 0) {
        ret = csi_error_errno(err, errno, "stat %s", path);
        goto out;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        ret = csi_error_set(err, CS_ELIMIT, "%s is not a regular file of at most %zu bytes", path,
                            max);
        goto out;
    }
    data = malloc((size_t)st.st_size + 1);
    if (data == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    while (done < (size_t)st.st_size) {
        ssize_t r = read(fd, data + done, (size_t)st.st_size - done);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ret = csi_error_errno(err, r < 0 ? errno : EIO, "read %s", path);
            goto out;
        }
        done += (size_t)r;
    }
    data[done] = '\0';
    *out = data;
    *len_out = done;
    data = NULL;
out:
    free(data);
    close(fd);
    return ret;
}
