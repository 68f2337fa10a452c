/* Internal: produces a tar stream from files and memory, for `docker load` bodies and
 * archive files. Memory stays bounded whatever the file sizes: contents are read from
 * their files only while streaming, straight into the caller's buffer. */
#ifndef CS_LIB_ARCHIVE_H
#define CS_LIB_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include <cachesync/error.h>

typedef struct csi_archive csi_archive;

int csi_archive_new(csi_archive **out, cs_error **err);

/* Entries stream in the order they are added; add them all before reading. NAME must pass
 * csi_tar_path_is_safe (CS_EINVAL otherwise). Files and memory get mode 0644, directories
 * 0755, all with mtime 0 so equal inputs give byte-identical archives. */

/* A regular file whose content is read from PATH while streaming. Should the file then not
 * be exactly SIZE bytes, the stream fails with CS_EDIGEST naming it. */
int csi_archive_add_file(csi_archive *a, const char *name, const char *path, uint64_t size,
                         cs_error **err);

/* A regular file with LEN bytes from DATA (copied). */
int csi_archive_add_mem(csi_archive *a, const char *name, const void *data, size_t len,
                        cs_error **err);

/* A regular file of SIZE bytes whose content FN supplies while streaming: up to LEN bytes
 * at offset OFF of the content into BUF; it returns the count (> 0) or a negative CS_E* code
 * with *err set. FN may block (e.g. until the bytes exist). OFF restarts at 0 after a rewind. */
typedef long (*csi_archive_reader_fn)(void *payload, char *buf, size_t len, uint64_t off,
                                      cs_error **err);
int csi_archive_add_reader(csi_archive *a, const char *name, uint64_t size,
                           csi_archive_reader_fn fn, void *payload, cs_error **err);

/* The same, for content whose size is known only once the stream reaches the entry: then
 * SIZE_FN(PAYLOAD, &size, err) says it (it may block; 0 or a negative CS_E* code), and the
 * entry's header is built. ESTIMATE stands for the size in csi_archive_size until then. */
typedef int (*csi_archive_size_fn)(void *payload, uint64_t *size, cs_error **err);
int csi_archive_add_reader_late(csi_archive *a, const char *name, uint64_t estimate,
                                csi_archive_size_fn size_fn, csi_archive_reader_fn fn,
                                void *payload, cs_error **err);

/* A directory entry (NAME gets a trailing '/' if it lacks one). */
int csi_archive_add_dir(csi_archive *a, const char *name, cs_error **err);

/* Total bytes of the stream: headers, contents, padding and the two end blocks (with the
 * estimates of entries not sized yet). */
uint64_t csi_archive_size(const csi_archive *a);

/* Up to LEN next bytes of the stream into BUF: the count, 0 at the end, or a negative
 * CS_E* code with *err set (later calls fail too, until csi_archive_rewind). A=the archive;
 * the signature is csi_http_source_fn so the archive can be an upload body as is. */
long csi_archive_read(void *a, char *buf, size_t len, cs_error **err);

/* Start the stream again from its first byte. */
void csi_archive_rewind(csi_archive *a);

/* Write the whole stream (from its start) to PATH: through PATH.tmp-XXXXXX in the same
 * directory, fsync, rename. On failure nothing new is at PATH and the temp file is gone. */
int csi_archive_write_file(csi_archive *a, const char *path, cs_error **err);

void csi_archive_free(csi_archive *a);

#endif
