/* WWW-Authenticate challenges (RFC 7235, RFC 6750) and the token endpoint's JSON answer
 * (distribution docs/content/spec/auth/token.md). Pure parsers over caller-owned bytes: no
 * I/O, explicit caps, nothing printed. */
#ifndef CS_LIB_WWW_AUTH_H
#define CS_LIB_WWW_AUTH_H

#include <stddef.h>

#include <cachesync/error.h>

/* Caps on untrusted input; going over one is CS_ELIMIT. */
#define CSI_WWW_AUTH_MAX_LEN 8192      /* bytes in one header value */
#define CSI_WWW_AUTH_MAX_CHALLENGES 16 /* challenges in one value */
#define CSI_WWW_AUTH_MAX_PARAMS 32     /* auth-params per challenge, duplicates included */
#define CSI_TOKEN_MAX_BODY 65536       /* bytes in a token endpoint answer */
#define CSI_TOKEN_MIN_EXPIRES 60       /* seconds; token.md's default and floor */
#define CSI_TOKEN_MAX_EXPIRES 86400    /* seconds; clamping down only means refreshing early */

typedef struct csi_auth_param {
    char *name;  /* lowercased; "" for a challenge's token68 (e.g. `Negotiate abc==`) */
    char *value; /* quoted-string unescaped, or the token as sent */
} csi_auth_param;

typedef struct csi_challenge {
    char *scheme; /* lowercased: "bearer", "basic" */
    size_t nparams;
    csi_auth_param *params; /* in order of appearance; a repeated name keeps the first */
} csi_challenge;

/* Parse a WWW-Authenticate header value of LEN bytes (no NUL needed) into *OUT, an array of
 * *N_OUT (>= 1) challenges owned by the caller (csi_challenges_free). Several header lines
 * may be joined with ", " first. Empty list elements are skipped (RFC 7230 section 7).
 * Returns 0, CS_EPROTO for a malformed or empty value, CS_ELIMIT over a cap, CS_ENOMEM.
 * On failure *OUT and *N_OUT are left untouched. */
int csi_www_auth_parse(csi_challenge **out, size_t *n_out, const char *value, size_t len,
                       cs_error **err);

/* The value of parameter NAME (ASCII case-insensitive) of C, or NULL if absent. Borrowed:
 * valid while C lives. */
const char *csi_challenge_param(const csi_challenge *c, const char *name);

/* The first of the N challenges in C whose scheme is SCHEME (case-insensitive), or NULL.
 * Borrowed. */
const csi_challenge *csi_challenge_find(const csi_challenge *c, size_t n, const char *scheme);

/* Free an array from csi_www_auth_parse; NULL is accepted. */
void csi_challenges_free(csi_challenge *c, size_t n);

typedef struct csi_token {
    char *token;         /* the Bearer token; never NULL after a successful parse */
    long expires_in;     /* seconds, clamped to [CSI_TOKEN_MIN_EXPIRES, CSI_TOKEN_MAX_EXPIRES] */
    char *refresh_token; /* or NULL; only sent for offline_token=true / access_type=offline */
} csi_token;

#define CSI_TOKEN_INIT {NULL, 0, NULL}

/* Parse a token endpoint answer of LEN bytes (GET token flow or OAuth2 POST flow) into *OUT,
 * which the caller releases with csi_token_dispose. `access_token` wins over `token` when
 * both are non-empty, as in distribution, ggcr, regclient and dockerd. Returns 0, CS_EPROTO
 * (bad JSON, wrong field types, no token), CS_ELIMIT (body over CSI_TOKEN_MAX_BODY),
 * CS_ENOMEM. On failure *OUT holds no allocations. Error messages never quote the body. */
int csi_token_parse(csi_token *out, const char *body, size_t len, cs_error **err);

/* Wipe and free the strings of T and reset it; NULL is accepted. */
void csi_token_dispose(csi_token *t);

#endif
