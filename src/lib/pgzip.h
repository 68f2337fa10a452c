/* Internal: gzip compression on several cores.
 *
 * The input is cut into blocks of CSI_PGZIP_BLOCK bytes at fixed offsets; each block becomes
 * one gzip member, compressed with libdeflate by a process-wide pool of threads; a footer
 * member records the total size (see pgzip.c). Blocks whose bytes look random (a flat byte
 * histogram) or that deflate to 97% of their size or more are stored instead. Every decision
 * depends on the block's bytes only, so equal input gives an equal blob (and digest) whatever
 * the machine's cores, the thread count or the feed sizes.
 *
 * Output reaches the sink in order, from the thread that calls feed/finish. Memory is
 * bounded: at most a few blocks per pool thread are in flight in the whole process. */
#ifndef CS_LIB_PGZIP_H
#define CS_LIB_PGZIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cachesync/error.h>
#include "compress.h"

#define CSI_PGZIP_BLOCK (512u * 1024)

/* Bytes of the footer member that ends every stream. */
#define CSI_PGZIP_FOOTER 37

typedef struct csi_pgzip csi_pgzip;

/* LEVEL 1..9. */
int csi_pgzip_new(csi_pgzip **out, int level, csi_compress_sink_fn sink, void *payload,
                  cs_error **err);

int csi_pgzip_feed(csi_pgzip *g, const void *data, size_t len, cs_error **err);

/* Flush, and end with the footer member. */
int csi_pgzip_finish(csi_pgzip *g, cs_error **err);

/* Waits for the stream's blocks still in the pool, then frees. */
void csi_pgzip_free(csi_pgzip *g);

/* The total size a blob made here decompresses to, from its last CSI_PGZIP_FOOTER bytes:
 * false when they are not such a footer (a blob made elsewhere). */
bool csi_pgzip_total_size(uint64_t *total, const unsigned char tail[CSI_PGZIP_FOOTER]);

/* Keep the pool (its threads, their compressors, its free blocks) alive between streams until
 * the matching release: for a caller about to compress many small streams, each of which
 * would otherwise start and stop it. */
void csi_pgzip_hold(void);
void csi_pgzip_release(void);

/* Threads of the pool from the next time it starts (it stops when no stream uses it): 0 for
 * the default (online CPUs, at most 8), 1 to compress in the calling thread only. For tests
 * and the benchmark: the output is the same either way. */
void csi_pgzip_set_threads(unsigned n);

#endif
