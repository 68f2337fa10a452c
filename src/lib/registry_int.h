/* Internal: what the registry's other source files share. */
#ifndef CS_LIB_REGISTRY_INT_H
#define CS_LIB_REGISTRY_INT_H

#include <cachesync/registry.h>
#include "auth.h"
#include "http.h"

struct cs_registry {
    char *domain;   /* as in the reference: picks credentials and names errors */
    char *api_host; /* what we connect to: registry-1.docker.io for docker.io */
    char *base;     /* "https://host" once decided */
    bool insecure;  /* named by --insecure-registry */
    bool loopback;
    csi_http *http;
    csi_auth *auth;
    char *ca_bundle;   /* temporary CA bundle we wrote (removed on free), or NULL */
    char *certs_dir;   /* the certs.d directory consulted */
    char *client_cert; /* the client certificate in use, or NULL */
};

/* An error for a non-2xx answer RESP to WHAT ("manifest app:tag"): 404 -> CS_ENOTFOUND,
 * 401/403 -> CS_EAUTH, 5xx/429 -> CS_ENET, else CS_EPROTO; with the registry's own message. */
int csi_registry_status_error(cs_registry *r, const csi_http_resp *resp, const char *what,
                              cs_error **err);

/* Perform REQ (url: a path like "/v2/...", or an absolute URL) with authentication for SCOPE
 * (space-separated scopes allowed), answering challenges; any final HTTP status is returned
 * in RESP with 0. */
int csi_registry_request(csi_http_resp *resp, cs_registry *r, const csi_http_req *req,
                         const char *scope, cs_error **err);

/* TLS options for R from OPTS (--ca-cert, insecure) and the certs.d directory: fills HOPTS'
 * CA bundle and client certificate (registry_tls.c). */
int csi_registry_setup_tls(cs_registry *r, csi_http_opts *hopts, const cs_registry_options *opts,
                           cs_error **err);

/* "repository:REPO:pull" */
int csi_registry_pull_scope(char **out, const char *repo, cs_error **err);

#endif
