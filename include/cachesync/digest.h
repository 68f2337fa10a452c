/* cachesync: content digests ("sha256:<64 lowercase hex>"), streaming and one-shot. */
#ifndef CACHESYNC_DIGEST_H
#define CACHESYNC_DIGEST_H

#include <stddef.h>
#include <cachesync/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* "sha256:" + 64 hex + NUL */
#define CS_DIGEST_STRLEN 72

typedef struct cs_hasher cs_hasher;

/** A streaming sha256 hasher. */
int cs_hasher_new(cs_hasher **out, cs_error **err);
void cs_hasher_update(cs_hasher *h, const void *data, size_t len);
/** Finish into OUT ("sha256:<hex>"); the hasher is reset and may be reused. */
void cs_hasher_final(cs_hasher *h, char out[CS_DIGEST_STRLEN]);
void cs_hasher_free(cs_hasher *h);

/** sha256 of a buffer, as "sha256:<hex>". */
int cs_digest_buffer(char out[CS_DIGEST_STRLEN], const void *data, size_t len, cs_error **err);

/** Check that DIGEST is a well-formed digest we can verify (sha256 with 64 lowercase hex).
 * Anything else is CS_EUNSUPPORTED (another algorithm) or CS_EPROTO (malformed), so a
 * digest from the network can safely name a file. */
int cs_digest_validate(const char *digest, cs_error **err);

#ifdef __cplusplus
}
#endif
#endif
