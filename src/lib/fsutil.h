/* Internal: file system helpers shared by the store and the targets. */
#ifndef CS_LIB_FSUTIL_H
#define CS_LIB_FSUTIL_H

#include <stddef.h>
#include <cachesync/error.h>

/* mkdir -p */
int csi_fs_mkdirs(const char *path, cs_error **err);
/* Write DATA to PATH atomically: a temp file beside it (csi_fs_tmp), fsync, linked or
 * renamed into place, fsync the directory. */
int csi_fs_write_atomic(const char *path, const void *data, size_t len, cs_error **err);
/* Make DST hold the same bytes as SRC: a hard link when both are on one file system, else an
 * atomic copy. An existing DST is left as it is. */
int csi_fs_link_or_copy(const char *src, const char *dst, cs_error **err);
/* write(2) all of DATA to FD (NAME names it in errors), retrying short writes and EINTR. */
int csi_fs_write_all(int fd, const void *data, size_t len, const char *name, cs_error **err);
/* fsync a directory, so a rename in it is durable; errors are ignored (best effort). */
void csi_fs_fsync_dir(const char *dir);
/* A file being written beside PATH that appears under PATH complete, or not at all: an
 * unnamed file (O_TMPFILE) where the system has them, so a process killed while writing
 * leaves no temp file behind; else PATH.tmp-XXXXXX. */
typedef struct csi_fs_tmp {
    int fd;     /* write (and read) here */
    char *path; /* the destination */
    char *name; /* the named temp file, NULL for an unnamed one */
} csi_fs_tmp;
int csi_fs_tmp_open(csi_fs_tmp *t, const char *path, cs_error **err);
/* Make it PATH: fchmod 0644, fsync, link (a new PATH) or rename (over an existing one), fsync
 * the directory. Releases T, also on failure. */
int csi_fs_tmp_commit(csi_fs_tmp *t, cs_error **err);
/* Drop it (close, remove a named temp file) and release T; harmless after a commit. */
void csi_fs_tmp_abort(csi_fs_tmp *t);
/* How to call it in messages: the temp file's name, or PATH for an unnamed one. */
const char *csi_fs_tmp_name(const csi_fs_tmp *t);
/* The CPUs this process may run on (its affinity mask: a container limited to some CPUs
 * sees them all in sysconf), at least 1. Not the file system's, but shared as these are. */
unsigned csi_cpus(void);
/* Read a whole file of at most MAX bytes; CS_ENOTFOUND when absent. */
int csi_fs_read_file(char **out, size_t *len_out, const char *path, size_t max, cs_error **err);

#endif
