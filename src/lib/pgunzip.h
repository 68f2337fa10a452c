/* Internal: reading back a blob that pgzip.c made, decompressed, as a pull-style stream.
 *
 * Such a blob is a series of gzip members of at most CSI_PGZIP_BLOCK bytes of content each,
 * then the footer member with the total (csi_pgzip_total_size). That bound lets libdeflate,
 * which only decompresses whole buffers (and 2-3x faster than zlib), take one member at a
 * time: a window of the file and one block of output are all the memory it needs. A blob
 * that breaks the bound (made elsewhere, whatever its footer says) fails with CS_EPROTO,
 * as does a corrupt one; libdeflate checks each member's CRC-32 and ISIZE. */
#ifndef CS_LIB_PGUNZIP_H
#define CS_LIB_PGUNZIP_H

#include <stdint.h>

#include <cachesync/error.h>

typedef struct csi_pgunzip csi_pgunzip;

/* A reader of the SIZE-byte blob in FD (read with pread; FD stays the caller's), whose footer
 * says it decompresses to TOTAL bytes. WHAT names it in errors. */
int csi_pgunzip_new(csi_pgunzip **out, int fd, uint64_t size, uint64_t total, const char *what,
                    cs_error **err);

/* Up to LEN next bytes of the content into BUF: the count (> 0), 0 once all TOTAL bytes came
 * and the blob held nothing more than the footer after them, or a negative CS_E* code with
 * *err set: CS_EPROTO for corrupt or foreign data, or content longer or shorter than TOTAL. */
long csi_pgunzip_read(csi_pgunzip *u, char *buf, size_t len, cs_error **err);

/* Bytes of content returned so far. */
uint64_t csi_pgunzip_pos(const csi_pgunzip *u);

void csi_pgunzip_free(csi_pgunzip *u);

#endif
