/* Internal: hashing a file that is being written, in a thread of its own.
 *
 * A blob of a pull is written and hashed by the one thread that drives all transfers; for a
 * large blob SHA-256 (~2 GB/s with the CPU's SHA extensions) is then a third of that thread's
 * work, on a path the registry could feed faster. A hashpipe moves the hashing to another
 * thread, which reads back (pread, from the page cache) what the writer says it wrote: the
 * writer goes on receiving while the bytes before are hashed. No extra copy of the data is
 * kept: a fixed read buffer is all the memory it takes. */
#ifndef CS_LIB_HASHPIPE_H
#define CS_LIB_HASHPIPE_H

#include <stdbool.h>
#include <stdint.h>

#include <cachesync/digest.h>
#include <cachesync/error.h>

typedef struct csi_hashpipe csi_hashpipe;

/* May one more hashpipe run? At most one per CPU but one (the writer's own) at once; none on
 * a single CPU. True takes a slot: give it back with csi_hashpipe_unreserve once the pipe
 * ended (or did not start). */
bool csi_hashpipe_reserve(void);
void csi_hashpipe_unreserve(void);

/* Hash FD (read with pread; the caller's, open until the pipe ends), from byte FROM on, into
 * H (the caller's, untouched by the caller until the pipe ends), as csi_hashpipe_advance
 * says bytes are there. PATH names the file in errors. */
int csi_hashpipe_start(csi_hashpipe **out, int fd, const char *path, cs_hasher *h, uint64_t from,
                       cs_error **err);

/* The file's first END bytes are written. */
void csi_hashpipe_advance(csi_hashpipe *p, uint64_t end);

/* Wait until every byte up to the last END is in H, then end the pipe (freed). A read error
 * of the thread's comes back here; H is then partial. */
int csi_hashpipe_finish(csi_hashpipe *p, cs_error **err);

/* End the pipe as soon as possible (freed); H holds some prefix of the file. NULL: nothing. */
void csi_hashpipe_cancel(csi_hashpipe *p);

#endif
