/* Internal: gzip (zlib) and zstd streams, both directions, fed chunks and emitting through
 * a callback with fixed buffers. Decompression caps its total output: layer blobs are
 * untrusted, and a few KiB of zstd can expand to gigabytes. */
#ifndef CS_LIB_COMPRESS_H
#define CS_LIB_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include <cachesync/digest.h>
#include <cachesync/error.h>

typedef enum {
    CSI_COMP_NONE = 0,
    CSI_COMP_GZIP,
    CSI_COMP_ZSTD,
    CSI_COMP_AUTO, /* decompressor only: decide from the first bytes (csi_compress_sniff) */
} csi_compression;

/* Bytes csi_compress_sniff needs to tell every format apart. */
#define CSI_COMPRESS_SNIFF_LEN 4

/* Default levels, used for level 0. gzip is libdeflate's (pgzip.c): its level 5 came out
 * smaller than zlib's default 6 on every sample measured (seq text 4.52 vs 7.33 MB of 32 MiB,
 * shared libraries 45.59 vs 45.80 MB of 128 MiB) and 3-5x faster; its 6 gains under 0.5% for
 * 1.3-2.7x the time. */
#define CSI_GZIP_LEVEL_DEFAULT 5
#define CSI_ZSTD_LEVEL_DEFAULT 3

/* The format of a stream from its first bytes: gzip (1f 8b), zstd frame (28 b5 2f fd), else
 * none. */
csi_compression csi_compress_sniff(const unsigned char *head, size_t len);

/* "none", "gzip", "zstd", "auto". */
const char *csi_compression_name(csi_compression c);

/* Receives output; return < 0 (and set *err) to stop with that code. */
typedef int (*csi_compress_sink_fn)(void *payload, const char *data, size_t len, cs_error **err);

/* ---- decompression --------------------------------------------------------------------- */

typedef struct csi_decompressor csi_decompressor;

/* A decompressor for KIND (CSI_COMP_AUTO to sniff; CSI_COMP_NONE passes bytes through).
 * Gzip may hold several members, zstd several frames (skippable frames included). More than
 * MAX_OUT bytes of output is CS_ELIMIT "decompressed size exceeds N bytes" (UINT64_MAX for
 * no cap); corrupt input is CS_EPROTO. zstd windows above 128 MiB (zstd's default limit)
 * are refused with CS_ELIMIT, which bounds memory. */
int csi_decompressor_new(csi_decompressor **out, csi_compression kind, uint64_t max_out,
                         csi_compress_sink_fn sink, void *payload, cs_error **err);

/* Feed LEN more compressed bytes. After an error every later call fails. */
int csi_decompressor_feed(csi_decompressor *d, const void *data, size_t len, cs_error **err);

/* The input ended: CS_EPROTO when it stopped inside a gzip member or zstd frame, or held no
 * gzip/zstd data at all for an explicit CSI_COMP_GZIP/ZSTD. */
int csi_decompressor_finish(csi_decompressor *d, cs_error **err);

/* The format in use; CSI_COMP_AUTO while fewer than CSI_COMPRESS_SNIFF_LEN bytes came. */
csi_compression csi_decompressor_kind(const csi_decompressor *d);

/* Bytes emitted so far. */
uint64_t csi_decompressor_total_out(const csi_decompressor *d);

void csi_decompressor_free(csi_decompressor *d);

/* Decompress the file SRC (gzip, zstd or uncompressed, sniffed; uncompressed is copied) into
 * DST through a temp file (csi_fs_tmp) + fsync + link/rename, hashing the output: DIGEST_OUT
 * gets its sha256 (for a layer: the diff_id) and SIZE_OUT its size; either may be NULL. A DST
 * named .../blobs/sha256/<hex> (a store path) must get content of that digest: else
 * CS_EDIGEST ("SRC uncompresses to X, not Y") and DST is never created. Past MAX_OUT bytes of
 * output: CS_ELIMIT. On failure nothing new is at DST and no temp file is left. */
int csi_decompress_file(const char *src, const char *dst, uint64_t max_out,
                        char digest_out[CS_DIGEST_STRLEN], uint64_t *size_out, cs_error **err);

/* ---- compression ----------------------------------------------------------------------- */

typedef struct csi_compressor csi_compressor;

/* A compressor for KIND (CSI_COMP_NONE passes bytes through). LEVEL 0 is the default for the
 * format; gzip takes 1..9, zstd ZSTD_minCLevel()..ZSTD_maxCLevel(). Output is reproducible:
 * gzip headers carry no name and mtime 0; zstd frames carry a checksum. */
int csi_compressor_new(csi_compressor **out, csi_compression kind, int level,
                       csi_compress_sink_fn sink, void *payload, cs_error **err);

int csi_compressor_feed(csi_compressor *c, const void *data, size_t len, cs_error **err);

/* Flush and end the stream (gzip trailer, zstd frame end). */
int csi_compressor_finish(csi_compressor *c, cs_error **err);

void csi_compressor_free(csi_compressor *c);

#endif
