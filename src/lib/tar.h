/* Internal tar support: POSIX ustar headers with PAX extended headers (pax format,
 * IEEE 1003.1-2001), writer and reader. Pure: no I/O; the reader is fed untrusted bytes
 * (the daemon's `docker save` stream, archive files) and bounds everything it keeps. */
#ifndef CS_LIB_TAR_H
#define CS_LIB_TAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cachesync/buf.h>
#include <cachesync/error.h>

#define CSI_TAR_BLOCK 512

/* Cap on the data of one PAX 'x' header or GNU 'L'/'K' long name, kept in memory. */
#define CSI_TAR_META_MAX (1024 * 1024)

/* Longest name the writer accepts (PAX allows more; nothing we write comes close). */
#define CSI_TAR_NAME_MAX 65536

/* Returned (> 0) by csi_tar_parse_header for an all-zero block: the end-of-archive marker. */
#define CSI_TAR_ZERO_BLOCK 1

/* Type flags (ustar). A header's '\0' (old regular file) is reported as '0'. */
#define CSI_TAR_REG '0'
#define CSI_TAR_LINK '1'
#define CSI_TAR_SYMLINK '2'
#define CSI_TAR_DIR '5'
#define CSI_TAR_PAX 'x'
#define CSI_TAR_PAX_GLOBAL 'g'
#define CSI_TAR_GNU_LONGNAME 'L'
#define CSI_TAR_GNU_LONGLINK 'K'

typedef struct csi_tar_entry {
    char *name;     /* full path: prefix joined, PAX or GNU long name applied; never NULL
                     * after a successful parse */
    char *linkname; /* link target, "" when none */
    uint64_t size;  /* bytes of data following the header (0 for header-only types) */
    unsigned mode;  /* permission bits, at most 07777 */
    int64_t mtime;  /* seconds since the epoch, may be negative */
    char typeflag;
} csi_tar_entry;

/* Release what an entry owns and zero it. */
void csi_tar_entry_dispose(csi_tar_entry *e);

/* ---- writer ---------------------------------------------------------------------------- */

/* Zero bytes to append after SIZE bytes of data to reach the next block boundary. */
size_t csi_tar_padding(uint64_t size);

/* Append the header block(s) for one entry to OUT: a PAX 'x' header with its records when
 * NAME does not fit the ustar name/prefix split or SIZE >= 8 GiB (such a size is also
 * written in base-256, the GNU extension every current reader knows), then the ustar header.
 * MODE is at most 07777. The data and csi_tar_padding(SIZE) zeros follow, written by the
 * caller; an archive ends with two zero blocks. */
int csi_tar_header(cs_buf *out, const char *name, uint64_t size, unsigned mode, int64_t mtime,
                   char typeflag, cs_error **err);

/* ---- reader ---------------------------------------------------------------------------- */

/* Parse one header block: 0 and *OUT filled (the caller disposes it), CSI_TAR_ZERO_BLOCK
 * for an all-zero block (OUT untouched), or CS_EPROTO for a bad checksum (both the unsigned
 * and the signed byte sums are accepted, as GNU tar does), a malformed number, a negative or
 * overflowing size, a non-ustar/GNU magic. */
int csi_tar_parse_header(csi_tar_entry *out, const unsigned char block[CSI_TAR_BLOCK],
                         cs_error **err);

/* Apply the records of a PAX 'x' header's data ("%d key=value\n" each, the length counting
 * the whole record) to E: path, linkpath, size and mtime; other keys are ignored. Over
 * CSI_TAR_META_MAX is CS_ELIMIT; malformed records, NUL in a path, bad numbers CS_EPROTO. */
int csi_tar_parse_pax(csi_tar_entry *e, const char *data, size_t len, cs_error **err);

/* True when NAME is safe to create under a directory: relative, no ".." component, no empty
 * component ("a//b"), with "." components ("./a/./b") ignored and one trailing '/' allowed,
 * and at least one real component. Symlink targets and hard links are the caller's concern. */
bool csi_tar_path_is_safe(const char *name);

/* A streaming reader: fed arbitrary chunks, it calls ON_ENTRY once per entry (PAX and GNU
 * long-name headers already applied and consumed) and ON_DATA with that entry's data, in
 * as many chunks as it arrives. A callback returning < 0 (and setting *err) stops the
 * reader with that code. */
typedef int (*csi_tar_entry_fn)(void *payload, const csi_tar_entry *e, cs_error **err);
typedef int (*csi_tar_data_fn)(void *payload, const csi_tar_entry *e, const char *data, size_t len,
                               cs_error **err);

typedef struct csi_tar_reader csi_tar_reader;

int csi_tar_reader_new(csi_tar_reader **out, csi_tar_entry_fn on_entry, csi_tar_data_fn on_data,
                       void *payload, cs_error **err);

/* Feed the next LEN bytes. Bytes after the end-of-archive marker are ignored. After an
 * error the reader is spent: every later call fails. */
int csi_tar_reader_feed(csi_tar_reader *r, const void *data, size_t len, cs_error **err);

/* The input ended: CS_EPROTO unless the end-of-archive marker was seen (one zero block
 * then EOF is accepted, as GNU tar does). */
int csi_tar_reader_finish(csi_tar_reader *r, cs_error **err);

/* True once the end-of-archive marker has been read. */
bool csi_tar_reader_done(const csi_tar_reader *r);

void csi_tar_reader_free(csi_tar_reader *r);

#endif
