/* Internal: gzip compression on several cores, one gzip member whatever the thread count.
 *
 * The input is cut into blocks of CSI_PGZIP_BLOCK bytes at fixed offsets; each block is
 * deflated on its own (by a process-wide pool of threads), primed with the 32 KiB before it
 * as a preset dictionary and ended with a sync flush, so the raw deflate pieces concatenate
 * into one stream, as pigz does; CRC-32s are combined. Blocks whose bytes look random (a flat
 * byte histogram) or that deflate to 97% of their size or more go out as stored blocks
 * instead. Every decision depends on the block's bytes only, so equal input gives an equal
 * blob (and digest) whatever the machine's cores, the thread count or the feed sizes.
 *
 * Output reaches the sink in order, from the thread that calls feed/finish. Memory is
 * bounded: at most a few blocks per pool thread are in flight in the whole process. */
#ifndef CS_LIB_PGZIP_H
#define CS_LIB_PGZIP_H

#include <stddef.h>

#include <cachesync/error.h>
#include "compress.h"

#define CSI_PGZIP_BLOCK (128u * 1024)

typedef struct csi_pgzip csi_pgzip;

/* LEVEL 1..9. */
int csi_pgzip_new(csi_pgzip **out, int level, csi_compress_sink_fn sink, void *payload,
                  cs_error **err);

int csi_pgzip_feed(csi_pgzip *g, const void *data, size_t len, cs_error **err);

/* Flush and end the member (the gzip trailer). */
int csi_pgzip_finish(csi_pgzip *g, cs_error **err);

/* Waits for the stream's blocks still in the pool, then frees. */
void csi_pgzip_free(csi_pgzip *g);

/* Threads of the pool from the next time it starts (it stops when no stream uses it): 0 for
 * the default (online CPUs, at most 8), 1 to compress in the calling thread only. For tests
 * and the benchmark: the output is the same either way. */
void csi_pgzip_set_threads(unsigned n);

#endif
