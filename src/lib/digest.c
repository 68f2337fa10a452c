/* sha256 digests over OpenSSL EVP. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <cachesync/digest.h>
#include "error_int.h"

struct cs_hasher {
    EVP_MD_CTX *ctx;
};

int
cs_hasher_new(cs_hasher **out, cs_error **err)
{
    cs_hasher *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return csi_error_oom(err);
    h->ctx = EVP_MD_CTX_new();
    if (h->ctx == NULL || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        cs_hasher_free(h);
        return csi_error_set(err, CS_ERROR, "cannot initialise sha256");
    }
    *out = h;
    return 0;
}

void
cs_hasher_update(cs_hasher *h, const void *data, size_t len)
{
    if (len > 0)
        EVP_DigestUpdate(h->ctx, data, len);
}

static void
to_hex(char *out, const unsigned char *md, unsigned int n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned int i;

    for (i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * n] = '\0';
}

void
cs_hasher_final(cs_hasher *h, char out[CS_DIGEST_STRLEN])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    EVP_DigestFinal_ex(h->ctx, md, &n);
    memcpy(out, "sha256:", 7);
    to_hex(out + 7, md, n);
    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
}

void
cs_hasher_free(cs_hasher *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

int
cs_digest_buffer(char out[CS_DIGEST_STRLEN], const void *data, size_t len, cs_error **err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1)
        return csi_error_set(err, CS_ERROR, "sha256 failed");
    memcpy(out, "sha256:", 7);
    to_hex(out + 7, md, n);
    return 0;
}

int
cs_digest_validate(const char *digest, cs_error **err)
{
    const char *colon, *p;

    if (digest == NULL)
        return csi_error_set(err, CS_EPROTO, "missing digest");
    colon = strchr(digest, ':');
    if (colon == NULL || colon == digest)
        return csi_error_set(err, CS_EPROTO, "malformed digest \"%.80s\"", digest);
    if ((size_t)(colon - digest) != 6 || strncmp(digest, "sha256", 6) != 0)
        return csi_error_set(err, CS_EUNSUPPORTED, "unsupported digest algorithm in \"%.80s\"",
                             digest);
    for (p = colon + 1; *p; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return csi_error_set(err, CS_EPROTO, "malformed digest \"%.80s\"", digest);
    }
    if (p - (colon + 1) != 64)
        return csi_error_set(err, CS_EPROTO, "malformed digest \"%.80s\"", digest);
    return 0;
}
