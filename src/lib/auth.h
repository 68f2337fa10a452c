/* Internal: registry authentication. Learns the challenge of a registry from its 401s
 * (distribution auth/token.md), answers Basic challenges with the docker config's
 * credentials, runs the Bearer token flow per scope and caches tokens until shortly before
 * they expire. Secrets never reach logs or error messages. */
#ifndef CS_LIB_AUTH_H
#define CS_LIB_AUTH_H

#include <cachesync/error.h>
#include "credentials.h"
#include "http.h"

typedef struct csi_auth csi_auth;

/* DOMAIN is the reference's domain ("docker.io", "127.0.0.1:5000"): it picks credentials.
 * CONFIG_DIR is the docker config directory or NULL for $DOCKER_CONFIG / ~/.docker. */
int csi_auth_new(csi_auth **out, const char *domain, const char *config_dir, cs_error **err);
void csi_auth_free(csi_auth *a);

/* The "Authorization: ..." header line for a request that needs SCOPE ("repository:x:pull";
 * NULL for none), or *out = NULL when no challenge is known yet (anonymous first try).
 * May fetch a token over HTTP. */
int csi_auth_header(char **out, csi_auth *a, csi_http *http, const char *scope, cs_error **err);

/* A request for SCOPE got 401 with RESP: remember the challenge and drop the cached token.
 * Returns 0 when a retry with fresh credentials can succeed, otherwise CS_EAUTH with a
 * message naming the registry. HTTPS tells whether the registry is spoken to over TLS
 * (a Bearer realm must then be https too). */
int csi_auth_challenge(csi_auth *a, const csi_http_resp *resp, const char *scope, bool https,
                       cs_error **err);

/* A request succeeded: the next 401 is a fresh story, not a repeated failure. */
void csi_auth_ok(csi_auth *a);

/* Use a copy of C instead of the docker config's credentials (cs_login checks what it is
 * about to store); cached tokens are dropped. */
int csi_auth_set_credential(csi_auth *a, const csi_credential *c, cs_error **err);

/* True once credentials were found for the domain (for messages). */
bool csi_auth_has_credentials(csi_auth *a);

/* Free a string that held a secret, wiping it first. */
void csi_auth_free_secret(char *s);

#endif
