/* OCI distribution API client (opencontainers/distribution-spec spec.md). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include <cachesync/manifest.h>
#include <cachesync/registry.h>
#include "auth.h"
#include "error_int.h"
#include "http.h"
#include "json.h"
#include "log_int.h"
#include "registry_int.h"

/* docker.io is an alias; the API lives on registry-1.docker.io (moby DefaultRegistryHost). */
static const char *
api_host_of(const char *domain)
{
    return strcmp(domain, "docker.io") == 0 ? "registry-1.docker.io" : domain;
}

int
cs_registry_new(cs_registry **out, const char *domain, const cs_registry_options *opts,
                cs_error **err)
{
    csi_http_opts hopts = {0};
    cs_registry *r;
    int ret;

    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return csi_error_oom(err);
    r->domain = strdup(domain);
    r->api_host = strdup(api_host_of(domain));
    if (r->domain == NULL || r->api_host == NULL) {
        ret = csi_error_oom(err);
        goto fail;
    }
    r->loopback = csi_http_host_is_loopback(r->api_host);
    if (opts != NULL && opts->insecure_registries != NULL) {
        for (const char *const *h = opts->insecure_registries; *h != NULL; h++) {
            if (strcasecmp(*h, domain) == 0 || strcasecmp(*h, r->api_host) == 0)
                r->insecure = true;
        }
    }
    hopts.max_retries = -1;
    hopts.insecure_tls = r->insecure;
    ret = csi_registry_setup_tls(r, &hopts, opts, err);
    if (ret < 0)
        goto fail;
    ret = csi_http_new(&r->http, &hopts, err);
    free((char *)hopts.client_key);
    if (ret == 0)
        ret = csi_auth_new(&r->auth, domain, opts ? opts->docker_config_dir : NULL, err);
    if (ret < 0)
        goto fail;
    *out = r;
    return 0;
fail:
    cs_registry_free(r);
    return ret;
}

void
cs_registry_free(cs_registry *r)
{
    if (r == NULL)
        return;
    csi_http_free(r->http);
    csi_auth_free(r->auth);
    if (r->ca_bundle != NULL)
        unlink(r->ca_bundle);
    free(r->ca_bundle);
    free(r->certs_dir);
    free(r->client_cert);
    free(r->domain);
    free(r->api_host);
    free(r->base);
    free(r);
}

const char *
cs_registry_base_url(const cs_registry *r)
{
    return r->base;
}

/* The message of a distribution error body: "CODE: message", or NULL. */
static char *
error_body_summary(const csi_http_resp *resp)
{
    json_t *root = NULL, *e;
    char *s = NULL;

    if (resp->body.len == 0 ||
        csi_json_load_object(&root, resp->body.ptr, resp->body.len, 1 << 20, "error", NULL) < 0)
        return NULL;
    e = json_array_get(json_object_get(root, "errors"), 0);
    if (json_is_object(e) && csi_json_str(e, "code") != NULL) {
        if (asprintf(&s, "%.60s: %.200s", csi_json_str(e, "code"),
                     csi_json_str(e, "message") ? csi_json_str(e, "message") : "") < 0)
            s = NULL;
    }
    json_decref(root);
    /* the registry's words go into a one-line error: no line breaks, no terminal escapes */
    for (char *c = s; c != NULL && *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' ';
    }
    return s;
}

/* An error for a non-2xx answer to WHAT ("manifest app:tag"). */
int
csi_registry_status_error(cs_registry *r, const csi_http_resp *resp, const char *what,
                          cs_error **err)
{
    char *detail = error_body_summary(resp);
    const char *d = detail ? detail : "";
    const char *sep = detail ? " (" : "";
    const char *end = detail ? ")" : "";
    int ret;

    switch (resp->status) {
    case 404:
        ret = csi_error_http(err, CS_ENOTFOUND, 404, "%s not found on %s%s%s%s", what, r->domain,
                             sep, d, end);
        break;
    case 401:
    case 403:
        ret =
            csi_error_http(err, CS_EAUTH, resp->status, "%s: access to %s denied (HTTP %ld)%s%s%s",
                           r->domain, what, resp->status, sep, d, end);
        break;
    case 429:
        ret = csi_error_http(err, CS_ENET, 429,
                             "%s: too many requests for %s, retries exhausted%s%s%s", r->domain,
                             what, sep, d, end);
        break;
    default:
        ret = csi_error_http(err, resp->status >= 500 ? CS_ENET : CS_EPROTO, resp->status,
                             "%s: %s answered HTTP %ld%s%s%s", r->domain, what, resp->status, sep,
                             d, end);
        break;
    }
    free(detail);
    return ret;
}

/* Try one scheme for GET /v2/. */
static int
ping_at(csi_http_resp *resp, cs_registry *r, const char *scheme, cs_error **err)
{
    csi_http_req req = {0};
    char *url = NULL;
    int ret;

    if (asprintf(&url, "%s://%s/v2/", scheme, r->api_host) < 0)
        return csi_error_oom(err);
    req.method = "GET";
    req.url = url;
    req.max_body = 64 * 1024;
    ret = csi_http_do(resp, r->http, &req, err);
    free(url);
    return ret;
}

/* Did the handshake fail because the server wants a client certificate (TLS alerts
 * "certificate required", "handshake failure" after a CertificateRequest, "bad certificate")? */
static bool
client_cert_wanted(const cs_error *e)
{
    return e != NULL && (strstr(e->message, "certificate required") != NULL ||
                         strstr(e->message, "bad certificate") != NULL ||
                         strstr(e->message, "unknown ca") != NULL);
}

int
cs_registry_ping(cs_registry *r, cs_error **err)
{
    csi_http_resp resp = {0};
    const char *scheme = "https";
    cs_error *first = NULL;
    int ret;

    if (r->base != NULL)
        return 0;
    /* A loopback registry without any TLS setting (no --ca-cert, no certs.d CA or client
     * certificate) is almost always plain HTTP: asking it that first saves loading the system
     * CA bundle for a handshake that fails (~25 ms, most of a no-op pull). An HTTPS server
     * answers plain HTTP with 400 or drops it; then TLS is tried as below. */
    if (r->loopback && r->ca_bundle == NULL && r->client_cert == NULL) {
        ret = ping_at(&resp, r, "http", &first);
        if (ret == 0 && resp.status != 400) {
            scheme = "http";
            goto answered;
        }
        cs_error_free(first);
        first = NULL;
        csi_http_resp_dispose(&resp);
        memset(&resp, 0, sizeof(resp));
    }
    ret = ping_at(&resp, r, "https", &first);
    /* dockerd allows plain HTTP for loopback and --insecure-registry hosts, trying TLS
     * first (moby daemon/pkg/registry service_v2.go); we fall back only when the TLS
     * handshake itself failed, never over a certificate that did not verify. */
    if (ret < 0 && (r->loopback || r->insecure) && resp.tls_handshake_failed &&
        !client_cert_wanted(first)) {
        cs_error_free(first);
        first = NULL;
        scheme = "http";
        ret = ping_at(&resp, r, "http", &first);
    }
    if (ret < 0) {
        if (resp.tls_untrusted)
            ret = csi_error_set(err, CS_ENET,
                                "%s: TLS certificate not trusted (%s); give its CA with "
                                "--ca-cert FILE or put it in %s/%s/ca.crt",
                                r->domain, first ? first->message : "", r->certs_dir, r->domain);
        else if (resp.transport_error == CURLE_SSL_CERTPROBLEM && r->client_cert)
            ret = csi_error_set(err, CS_ENET, "%s: client certificate %s refused by TLS (%s)",
                                r->domain, r->client_cert, first ? first->message : "");
        else if (client_cert_wanted(first))
            ret = csi_error_set(err, CS_ENET,
                                "%s: the registry requires a TLS client certificate%s%s (%s); "
                                "put it in %s/%s/client.cert and its key in client.key",
                                r->domain, r->client_cert ? " and refused " : "",
                                r->client_cert ? r->client_cert : "", first ? first->message : "",
                                r->certs_dir, r->domain);
        else
            ret = csi_error_set(err, CS_ENET, "cannot reach registry %s: %s", r->domain,
                                first ? first->message : "transport error");
        cs_error_free(first);
        goto out;
    }
answered:
    if (resp.status == 401) {
        ret = csi_auth_challenge(r->auth, &resp, NULL, strcmp(scheme, "https") == 0, err);
        if (ret < 0)
            goto out;
        csi_auth_ok(r->auth);
    } else if (resp.status != 200) {
        ret = csi_error_http(err, CS_EPROTO, resp.status,
                             "%s does not speak the registry API (GET /v2/ answered HTTP %ld)",
                             r->domain, resp.status);
        goto out;
    }
    if (asprintf(&r->base, "%s://%s", scheme, r->api_host) < 0) {
        r->base = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    csi_log(CS_LOG_DEBUG, "registry %s at %s", r->domain, r->base);
out:
    csi_http_resp_dispose(&resp);
    return ret;
}

#define MAX_EXTRA_HEADERS 6

/* scheme, lower-case host and port (80/443 when not written) of an http(s) URL */
static bool
url_origin(char *out, size_t size, const char *url)
{
    char host[256];
    const char *colon;
    bool https = strncmp(url, "https://", 8) == 0;
    int n;

    if (!https && strncmp(url, "http://", 7) != 0)
        return false;
    if (!csi_http_url_host(host, sizeof(host), url))
        return false;
    for (char *c = host; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    /* the port's colon: after a bracketed IPv6 address, else the only one */
    colon = host[0] == '[' ? strstr(host, "]:") : strchr(host, ':');
    if (colon != NULL && host[0] == '[')
        colon++;
    if (colon != NULL)
        n = snprintf(out, size, "%s://%.*s:%s", https ? "https" : "http", (int)(colon - host), host,
                     colon + 1);
    else
        n = snprintf(out, size, "%s://%s:%s", https ? "https" : "http", host, https ? "443" : "80");
    return n > 0 && (size_t)n < size;
}

/* Whether URL (absolute) points somewhere else than the registry: an upload Location on
 * another host. Credentials go to the registry only, never to where it sends us (as Docker,
 * whose authorizer keeps challenges per host, and as curl does for redirects). */
static bool
foreign_url(const cs_registry *r, const char *url)
{
    char a[320], b[320];

    return !url_origin(a, sizeof(a), url) || !url_origin(b, sizeof(b), r->base) ||
           strcmp(a, b) != 0;
}

/* Perform REQ (its url is a path like "/v2/...") with authentication for SCOPE, answering
 * challenges; returns 0 with any final HTTP status in RESP. */
int
csi_registry_request(csi_http_resp *resp, cs_registry *r, const csi_http_req *req_in,
                     const char *scope, cs_error **err)
{
    const char *hdrs[MAX_EXTRA_HEADERS + 2];
    csi_http_req req = *req_in;
    char *authz = NULL, *url = NULL;
    bool foreign = false;
    size_t n = 0;
    int attempt, ret;

    ret = cs_registry_ping(r, err);
    if (ret < 0)
        return ret;
    /* paths are relative to the registry; upload Locations may be absolute (spec: "MAY be
     * absolute or relative") */
    if (strncmp(req_in->url, "http://", 7) == 0 || strncmp(req_in->url, "https://", 8) == 0) {
        url = strdup(req_in->url);
        foreign = url != NULL && foreign_url(r, url);
        if (foreign)
            csi_log(CS_LOG_DEBUG, "%s is not %s: no credentials sent there", url, r->base);
    } else if (asprintf(&url, "%s%s", r->base, req_in->url) < 0) {
        url = NULL;
    }
    if (url == NULL)
        return csi_error_oom(err);
    req.url = url;
    for (attempt = 0; attempt < 3; attempt++) {
        ret = foreign ? 0 : csi_auth_header(&authz, r->auth, r->http, scope, err);
        if (ret < 0)
            break;
        n = 0;
        for (const char *const *h = req_in->headers; h && *h && n < MAX_EXTRA_HEADERS; h++)
            hdrs[n++] = *h;
        if (authz != NULL)
            hdrs[n++] = authz;
        hdrs[n] = NULL;
        req.headers = hdrs;
        ret = csi_http_do(resp, r->http, &req, err);
        csi_auth_free_secret(authz);
        authz = NULL;
        if (ret < 0)
            break;
        if (foreign)
            break; /* its challenge is not the registry's: nothing of ours answers it */
        if (resp->status != 401) {
            if (resp->status < 400)
                csi_auth_ok(r->auth);
            break;
        }
        /* a streamed body was consumed by the refused try: resend only what can be rewound
         * (a token that expired during a long upload lands here) */
        if (req.source != NULL &&
            (req.source_rewind == NULL || req.source_rewind(req.source_payload) < 0))
            break;
        ret = csi_auth_challenge(r->auth, resp, scope, strncmp(r->base, "https:", 6) == 0, err);
        if (ret < 0)
            break;
    }
    free(url);
    return ret;
}

int
csi_registry_pull_scope(char **out, const char *repo, cs_error **err)
{
    if (asprintf(out, "repository:%s:pull", repo) < 0) {
        *out = NULL;
        return csi_error_oom(err);
    }
    return 0;
}

static bool
is_digest(const char *target)
{
    return strchr(target, ':') != NULL;
}

int
cs_registry_get_manifest(cs_buf *out, char **media_type_out, char digest_out[CS_DIGEST_STRLEN],
                         cs_registry *r, const char *repo, const char *target, cs_error **err)
{
    static const char *const hdrs[] = {"Accept: " CS_MANIFEST_ACCEPT, NULL};
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    char *scope = NULL, *path = NULL, *what = NULL, *mt = NULL;
    char digest[CS_DIGEST_STRLEN];
    const char *hdr_digest;
    int ret;

    if (asprintf(&what, "manifest %s%s%s", repo, is_digest(target) ? "@" : ":", target) < 0 ||
        asprintf(&path, "/v2/%s/manifests/%s", repo, target) < 0) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = csi_registry_pull_scope(&scope, repo, err);
    if (ret < 0)
        goto out;
    req.method = "GET";
    req.url = path;
    req.headers = hdrs;
    req.max_body = CS_MANIFEST_MAX;
    ret = csi_registry_request(&resp, r, &req, scope, err);
    if (ret < 0) {
        if (ret == CS_ELIMIT)
            csi_error_wrap(err, "%s", what);
        goto out;
    }
    if (resp.status != 200) {
        ret = csi_registry_status_error(r, &resp, what, err);
        goto out;
    }
    ret = cs_digest_buffer(digest, resp.body.ptr ? resp.body.ptr : "", resp.body.len, err);
    if (ret < 0)
        goto out;
    /* Pulling by digest: the bytes must hash to it (distribution-spec "Pulling manifests").
     * By tag the registry's header is only a hint, which we check when it uses sha256. */
    if (is_digest(target) && strcmp(digest, target) != 0) {
        ret = csi_error_set(err, CS_EDIGEST, "%s from %s: content has digest %s", what, r->domain,
                            digest);
        goto out;
    }
    hdr_digest = csi_http_header_get(&resp, "docker-content-digest");
    if (!is_digest(target) && hdr_digest != NULL && strncmp(hdr_digest, "sha256:", 7) == 0 &&
        strcmp(hdr_digest, digest) != 0) {
        ret = csi_error_set(err, CS_EDIGEST,
                            "%s from %s: registry says digest %.80s but the content has %s", what,
                            r->domain, hdr_digest, digest);
        goto out;
    }
    if (csi_http_header_get(&resp, "content-type") != NULL) {
        mt = strdup(csi_http_header_get(&resp, "content-type"));
        if (mt == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
    }
    cs_buf_dispose(out);
    *out = resp.body;
    memset(&resp.body, 0, sizeof(resp.body));
    if (out->ptr == NULL)
        cs_buf_puts(out, "", NULL);
    memcpy(digest_out, digest, CS_DIGEST_STRLEN);
    *media_type_out = mt;
    mt = NULL;
out:
    free(mt);
    free(scope);
    free(path);
    free(what);
    csi_http_resp_dispose(&resp);
    return ret;
}

int
cs_registry_head_manifest(char **media_type_out, char digest_out[CS_DIGEST_STRLEN],
                          int64_t *size_out, cs_registry *r, const char *repo, const char *target,
                          cs_error **err)
{
    static const char *const hdrs[] = {"Accept: " CS_MANIFEST_ACCEPT, NULL};
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    char *scope = NULL, *path = NULL, *what = NULL, *mt = NULL;
    const char *dg, *cl, *ct;
    int ret;

    if (asprintf(&what, "manifest %s%s%s", repo, is_digest(target) ? "@" : ":", target) < 0 ||
        asprintf(&path, "/v2/%s/manifests/%s", repo, target) < 0) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = csi_registry_pull_scope(&scope, repo, err);
    if (ret < 0)
        goto out;
    req.method = "HEAD";
    req.url = path;
    req.headers = hdrs;
    ret = csi_registry_request(&resp, r, &req, scope, err);
    if (ret < 0)
        goto out;
    if (resp.status != 200) {
        ret = csi_registry_status_error(r, &resp, what, err);
        goto out;
    }
    dg = csi_http_header_get(&resp, "docker-content-digest");
    cl = csi_http_header_get(&resp, "content-length");
    ct = csi_http_header_get(&resp, "content-type");
    if (dg == NULL || cs_digest_validate(dg, NULL) < 0) {
        ret = csi_error_set(err, CS_EUNSUPPORTED, "%s: %s gave no usable Docker-Content-Digest",
                            what, r->domain);
        goto out;
    }
    if (ct != NULL) {
        mt = strdup(ct);
        if (mt == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
    }
    snprintf(digest_out, CS_DIGEST_STRLEN, "%s", dg);
    *size_out = cl ? strtoll(cl, NULL, 10) : -1;
    *media_type_out = mt;
    mt = NULL;
out:
    free(mt);
    free(scope);
    free(path);
    free(what);
    csi_http_resp_dispose(&resp);
    return ret;
}

int
cs_registry_get_blob(cs_buf *out, cs_registry *r, const char *repo, const char *digest,
                     int64_t size, size_t max, cs_error **err)
{
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    char *scope = NULL, *path = NULL;
    char got[CS_DIGEST_STRLEN];
    int ret;

    ret = cs_digest_validate(digest, err);
    if (ret < 0)
        return ret;
    if (size >= 0 && (uint64_t)size > max)
        return csi_error_set(err, CS_ELIMIT, "blob %s is %lld bytes, over the %zu-byte limit",
                             digest, (long long)size, max);
    if (asprintf(&path, "/v2/%s/blobs/%s", repo, digest) < 0) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = csi_registry_pull_scope(&scope, repo, err);
    if (ret < 0)
        goto out;
    req.method = "GET";
    req.url = path;
    /* one byte over the expected size, so a longer body shows as a size mismatch */
    req.max_body = size >= 0 ? (size_t)size + 1 : max;
    ret = csi_registry_request(&resp, r, &req, scope, err);
    if (ret == CS_ELIMIT && size >= 0) {
        if (err != NULL) {
            cs_error_free(*err);
            *err = NULL;
        }
        ret = csi_error_set(err, CS_EDIGEST, "blob %s from %s: larger than its %lld bytes", digest,
                            r->domain, (long long)size);
        goto out;
    }
    if (ret < 0)
        goto out;
    if (resp.status != 200) {
        char *what = NULL;

        if (asprintf(&what, "blob %s in %s", digest, repo) < 0)
            ret = csi_error_oom(err);
        else
            ret = csi_registry_status_error(r, &resp, what, err);
        free(what);
        goto out;
    }
    if (size >= 0 && resp.body.len != (size_t)size) {
        ret = csi_error_set(err, CS_EDIGEST, "blob %s from %s: got %zu bytes, expected %lld",
                            digest, r->domain, resp.body.len, (long long)size);
        goto out;
    }
    ret = cs_digest_buffer(got, resp.body.ptr ? resp.body.ptr : "", resp.body.len, err);
    if (ret < 0)
        goto out;
    if (strcmp(got, digest) != 0) {
        ret = csi_error_set(err, CS_EDIGEST, "blob %s from %s: content has digest %s", digest,
                            r->domain, got);
        goto out;
    }
    cs_buf_dispose(out);
    *out = resp.body;
    memset(&resp.body, 0, sizeof(resp.body));
    if (out->ptr == NULL)
        cs_buf_puts(out, "", NULL);
out:
    free(scope);
    free(path);
    csi_http_resp_dispose(&resp);
    return ret;
}
