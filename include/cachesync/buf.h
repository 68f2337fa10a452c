/* cachesync: growable byte buffer, always NUL-terminated, with an optional size cap. */
#ifndef CACHESYNC_BUF_H
#define CACHESYNC_BUF_H

#include <stddef.h>
#include <cachesync/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cs_buf {
    char *ptr;  /* the bytes, NUL-terminated after len; NULL while empty */
    size_t len; /* bytes stored, without the terminating NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* 0 = no cap; otherwise appending past max fails with CS_ELIMIT */
} cs_buf;

#define CS_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

/** Initialise with a cap (0 = unlimited). */
void cs_buf_init(cs_buf *buf, size_t max);

/** Append bytes. Fails with CS_ELIMIT past buf->max, CS_ENOMEM on allocation failure. */
int cs_buf_append(cs_buf *buf, const void *data, size_t len, cs_error **err);

/** Append a NUL-terminated string. */
int cs_buf_puts(cs_buf *buf, const char *s, cs_error **err);

/** Append formatted text. */
int cs_buf_printf(cs_buf *buf, cs_error **err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Drop the contents but keep the allocation. */
void cs_buf_clear(cs_buf *buf);

/** Hand the storage to the caller (free with free()); the buffer becomes empty. Never NULL
 * unless out of memory. */
char *cs_buf_detach(cs_buf *buf);

/** Release the storage. */
void cs_buf_dispose(cs_buf *buf);

#ifdef __cplusplus
}
#endif
#endif
