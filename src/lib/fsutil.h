/* Internal: file system helpers shared by the store and the targets. */
#ifndef CS_LIB_FSUTIL_H
#define CS_LIB_FSUTIL_H

#include <stddef.h>
#include <cachesync/error.h>

/* mkdir -p */
int csi_fs_mkdirs(const char *path, cs_error **err);
/* Write DATA to PATH atomically: a temp file beside it, fsync, rename, fsync the directory. */
int csi_fs_write_atomic(const char *path, const void *data, size_t len, cs_error **err);
/* Make DST hold the same bytes as SRC: a hard link when both are on one file system, else an
 * atomic copy. An existing DST is left as it is. */
int csi_fs_link_or_copy(const char *src, const char *dst, cs_error **err);
/* write(2) all of DATA to FD (NAME names it in errors), retrying short writes and EINTR. */
int csi_fs_write_all(int fd, const void *data, size_t len, const char *name, cs_error **err);
/* fsync a directory, so a rename in it is durable; errors are ignored (best effort). */
void csi_fs_fsync_dir(const char *dir);
/* Read a whole file of at most MAX bytes; CS_ENOTFOUND when absent. */
int csi_fs_read_file(char **out, size_t *len_out, const char *path, size_t max, cs_error **err);

#endif
