#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
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

/* ---- temp files that appear complete or not at all ------------------------------------- */

const char *
csi_fs_tmp_name(const csi_fs_tmp *t)
{
    return t->name != NULL ? t->name : t->path;
}

int
csi_fs_tmp_open(csi_fs_tmp *t, const char *path, cs_error **err)
{
    int ret;

    memset(t, 0, sizeof(*t));
    t->fd = -1;
    t->path = strdup(path);
    if (t->path == NULL)
        return csi_error_oom(err);
#ifdef O_TMPFILE
    {
        char *dir = strdup(path), *slash;

        if (dir == NULL) {
            csi_fs_tmp_abort(t);
            return csi_error_oom(err);
        }
        slash = strrchr(dir, '/');
        if (slash == NULL)
            snprintf(dir, strlen(dir) + 1, "%s", ".");
        else if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
        /* an unnamed file: a process killed before the commit leaves nothing behind (the
         * kernel frees the inode); linked in with linkat(2) through /proc */
        t->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
        if (t->fd >= 0 && access("/proc/self/fd", X_OK) == 0) {
            free(dir);
            return 0;
        }
        if (t->fd >= 0) {
            close(t->fd);
            t->fd = -1;
        } else if (errno == ENOENT || errno == ENOTDIR || errno == EACCES || errno == EROFS ||
                   errno == ENOSPC || errno == EDQUOT || errno == EMFILE || errno == ENFILE) {
            ret = csi_error_errno(err, errno, "create a file in %s", dir);
            free(dir);
            csi_fs_tmp_abort(t);
            return ret;
        }
        /* EISDIR, EOPNOTSUPP, EINVAL: no O_TMPFILE here; a named temp file then */
        free(dir);
    }
#endif
    if (asprintf(&t->name, "%s.tmp-XXXXXX", path) < 0) {
        t->name = NULL;
        csi_fs_tmp_abort(t);
        return csi_error_oom(err);
    }
    t->fd = mkostemp(t->name, O_CLOEXEC);
    if (t->fd < 0) {
        ret = csi_error_errno(err, errno, "create %s", t->name);
        free(t->name);
        t->name = NULL;
        csi_fs_tmp_abort(t);
        return ret;
    }
    return 0;
}

int
csi_fs_tmp_commit(csi_fs_tmp *t, cs_error **err)
{
    char proc[64], *tmp = NULL;
    int ret = 0;

    if (t->fd < 0)
        return csi_error_set(err, CS_EINVAL, "%s: not open", t->path);
    if (fchmod(t->fd, 0644) != 0 || fsync(t->fd) != 0) {
        ret = csi_error_errno(err, errno, "write %s", csi_fs_tmp_name(t));
        goto out;
    }
    if (t->name != NULL) {
        if (close(t->fd) != 0) {
            t->fd = -1;
            ret = csi_error_errno(err, errno, "close %s", t->name);
            goto out;
        }
        t->fd = -1;
        if (rename(t->name, t->path) != 0) {
            ret = csi_error_errno(err, errno, "rename %s to %s", t->name, t->path);
            goto out;
        }
        free(t->name);
        t->name = NULL;
        goto done;
    }
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", t->fd);
    /* a new name appears with the whole content at once */
    if (linkat(AT_FDCWD, proc, AT_FDCWD, t->path, AT_SYMLINK_FOLLOW) == 0)
        goto done;
    if (errno != EEXIST) {
        ret = csi_error_errno(err, errno, "link %s", t->path);
        goto out;
    }
    /* replacing a file: link under a temp name, then rename it over (that name lives for
     * two system calls) */
    for (int i = 0;; i++) {
        free(tmp);
        if (asprintf(&tmp, "%s.tmp-%08lx", t->path,
                     ((unsigned long)getpid() << 20) ^ (unsigned long)random()) < 0) {
            tmp = NULL;
            ret = csi_error_oom(err);
            goto out;
        }
        if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) == 0)
            break;
        if (errno != EEXIST || i == 15) {
            ret = csi_error_errno(err, errno, "link %s", tmp);
            goto out;
        }
    }
    if (rename(tmp, t->path) != 0) {
        ret = csi_error_errno(err, errno, "rename %s to %s", tmp, t->path);
        unlink(tmp);
        goto out;
    }
done:
    fsync_parent(t->path);
out:
    free(tmp);
    csi_fs_tmp_abort(t);
    return ret;
}

void
csi_fs_tmp_abort(csi_fs_tmp *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    if (t->name != NULL)
        unlink(t->name);
    free(t->name);
    free(t->path);
    t->name = NULL;
    t->path = NULL;
}

/* Fill FD from DATA (or from SRC_FD when DATA is NULL). NAME names it in errors. */
static int
fill(int fd, const char *name, const char *path, const void *data, size_t len, int src_fd,
     cs_error **err)
{
    char *buf = NULL;
    int ret = 0;

    if (data != NULL || src_fd < 0)
        return csi_fs_write_all(fd, data, len, name, err);
    buf = malloc(1 << 20);
    if (buf == NULL)
        return csi_error_oom(err);
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
        ret = csi_fs_write_all(fd, buf, (size_t)r, name, err);
    }
    free(buf);
    return ret;
}

/* PATH gets DATA (or what SRC_FD holds when DATA is NULL) through a temp file. */
static int
atomic_from(const char *path, const void *data, size_t len, int src_fd, cs_error **err)
{
    csi_fs_tmp t;
    int ret;

    ret = csi_fs_tmp_open(&t, path, err);
    if (ret < 0)
        return ret;
    ret = fill(t.fd, csi_fs_tmp_name(&t), path, data, len, src_fd, err);
    if (ret == 0)
        ret = csi_fs_tmp_commit(&t, err);
    csi_fs_tmp_abort(&t);
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

unsigned
csi_cpus(void)
{
    long n;
#ifdef CPU_COUNT
    cpu_set_t set;

    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
#endif
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}
