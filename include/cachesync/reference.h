/* cachesync: image references, parsed and normalised exactly as Docker does
 * (github.com/distribution/reference: ParseNormalizedNamed + TagNameOnly).
 *
 *   "app"                      -> docker.io / library/app : latest
 *   "127.0.0.1:5000/app:main"  -> 127.0.0.1:5000 / app : main
 *   "ghcr.io/o/r@sha256:..."   -> ghcr.io / o/r @ sha256:...
 */
#ifndef CACHESYNC_REFERENCE_H
#define CACHESYNC_REFERENCE_H

#include <cachesync/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cs_reference {
    char *domain; /* "docker.io", "localhost:5000", "[::1]:5000"; never NULL */
    char *path;   /* repository path inside the registry: "library/app"; never NULL */
    char *tag;    /* "latest" when neither tag nor digest was given; NULL when only a digest */
    char *digest; /* "sha256:<64 lowercase hex>" or NULL */
} cs_reference;

/** Parse and normalise STR. Errors (CS_EINVAL) say what is wrong with the reference.
 * @param[out] out new reference, free with cs_reference_free() */
int cs_reference_parse(cs_reference **out, const char *str, cs_error **err);

void cs_reference_free(cs_reference *ref);

enum {
    CS_REF_FAMILIAR = 1 << 0, /* shorten docker.io/library/ as Docker shows names ("app:latest") */
    CS_REF_NAME_ONLY = 1 << 1 /* domain/path without tag and digest */
};

/** The reference as a string: "docker.io/library/app:latest", with both tag and digest when
 * both are set. Returns a malloc'd string, or NULL when out of memory. */
char *cs_reference_to_string(const cs_reference *ref, unsigned flags);

/** The host to talk to for the distribution API: "registry-1.docker.io" for docker.io,
 * otherwise the domain. Borrowed; lives as long as REF. */
const char *cs_reference_api_host(const cs_reference *ref);

/** What goes after /manifests/ in the API: the digest when set, otherwise the tag. Borrowed. */
const char *cs_reference_target(const cs_reference *ref);

/** Copy with the tag/digest replaced by TARGET (a tag, or a digest "alg:hex"). */
int cs_reference_with_target(cs_reference **out, const cs_reference *ref, const char *target,
                             cs_error **err);

#ifdef __cplusplus
}
#endif
#endif
