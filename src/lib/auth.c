/* Registry authentication: see auth.h. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth.h"
#include "credentials.h"
#include "credhelper.h"
#include "error_int.h"
#include "log_int.h"
#include "www_auth.h"

#define TOKEN_BODY_MAX (64u * 1024)
/* Renew a token this many seconds before it expires, so a request never carries a token
 * that dies in flight (regclient renews 5 s early; long uploads want more room). */
#define TOKEN_EARLY_S 15
#define MAX_TOKENS 64

typedef enum { SCHEME_NONE, SCHEME_BASIC, SCHEME_BEARER } scheme;

typedef struct token_entry {
    char *scope; /* "" for no scope */
    char *token;
    time_t expires;
} token_entry;

struct csi_auth {
    char *domain;
    char *config_dir;
    bool creds_loaded;
    csi_credential cred;
    scheme scheme;
    char *realm, *service;
    token_entry tokens[MAX_TOKENS];
    size_t ntokens;
    int failures; /* consecutive 401s since the last success, to stop retry loops */
};

void
csi_auth_free_secret(char *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

int
csi_auth_new(csi_auth **out, const char *domain, const char *config_dir, cs_error **err)
{
    csi_auth *a = calloc(1, sizeof(*a));

    if (a == NULL)
        return csi_error_oom(err);
    a->domain = strdup(domain);
    a->config_dir = config_dir ? strdup(config_dir) : NULL;
    if (a->domain == NULL || (config_dir && a->config_dir == NULL)) {
        csi_auth_free(a);
        return csi_error_oom(err);
    }
    *out = a;
    return 0;
}

static void
tokens_clear(csi_auth *a)
{
    size_t i;

    for (i = 0; i < a->ntokens; i++) {
        free(a->tokens[i].scope);
        csi_auth_free_secret(a->tokens[i].token);
    }
    a->ntokens = 0;
}

void
csi_auth_free(csi_auth *a)
{
    if (a == NULL)
        return;
    tokens_clear(a);
    csi_credential_dispose(&a->cred);
    free(a->domain);
    free(a->config_dir);
    free(a->realm);
    free(a->service);
    free(a);
}

static int
load_creds(csi_auth *a, cs_error **err)
{
    int ret;

    if (a->creds_loaded)
        return 0;
    ret = csi_credential_load(&a->cred, a->config_dir, a->domain, err);
    if (ret < 0)
        return ret;
    if (a->cred.helper != NULL) {
        /* credHelpers/credsStore: the secret lives in docker-credential-<helper>, asked with
         * the same key as config.json's auths (docker/cli getAuthConfigKey) */
        csi_credential got = CSI_CREDENTIAL_INIT;

        ret = csi_credhelper_get(&got, a->cred.helper, csi_credential_key(a->domain), err);
        if (ret < 0) {
            csi_credential_dispose(&a->cred);
            return ret;
        }
        csi_credential_dispose(&a->cred);
        a->cred = got;
    }
    a->creds_loaded = true;
    return 0;
}

int
csi_auth_set_credential(csi_auth *a, const csi_credential *c, cs_error **err)
{
    csi_credential copy = CSI_CREDENTIAL_INIT;
    int ret = csi_credential_copy(&copy, c, err);

    if (ret < 0)
        return ret;
    tokens_clear(a);
    csi_credential_dispose(&a->cred);
    a->cred = copy;
    a->creds_loaded = true;
    return 0;
}

bool
csi_auth_has_credentials(csi_auth *a)
{
    return a->creds_loaded && (a->cred.username != NULL || a->cred.identity_token != NULL ||
                               a->cred.registry_token != NULL);
}

/* "Authorization: Basic base64(user:password)" */
static int
basic_header(char **out, const csi_credential *c, cs_error **err)
{
    size_t ulen = strlen(c->username), plen = c->password ? strlen(c->password) : 0;
    size_t raw_len = ulen + 1 + plen;
    unsigned char *raw = NULL;
    char *line = NULL;
    int ret = 0;

    raw = malloc(raw_len + 1);
    line = malloc(sizeof("Authorization: Basic ") + 4 * ((raw_len + 2) / 3) + 1);
    if (raw == NULL || line == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    memcpy(raw, c->username, ulen);
    raw[ulen] = ':';
    if (plen)
        memcpy(raw + ulen + 1, c->password, plen);
    strcpy(line, "Authorization: Basic ");
    EVP_EncodeBlock((unsigned char *)line + strlen(line), raw, (int)raw_len);
    *out = line;
    line = NULL;
out:
    if (raw != NULL) {
        OPENSSL_cleanse(raw, raw_len);
        free(raw);
    }
    free(line);
    return ret;
}

static token_entry *
token_find(csi_auth *a, const char *scope)
{
    size_t i;

    for (i = 0; i < a->ntokens; i++) {
        if (strcmp(a->tokens[i].scope, scope) == 0)
            return &a->tokens[i];
    }
    return NULL;
}

static int
token_store(csi_auth *a, const char *scope, char *token, long expires_in, cs_error **err)
{
    token_entry *t = token_find(a, scope);

    if (t == NULL) {
        if (a->ntokens == MAX_TOKENS)
            tokens_clear(a);
        t = &a->tokens[a->ntokens];
        t->scope = strdup(scope);
        if (t->scope == NULL) {
            csi_auth_free_secret(token);
            return csi_error_oom(err);
        }
        t->token = NULL;
        a->ntokens++;
    }
    csi_auth_free_secret(t->token);
    t->token = token;
    t->expires = time(NULL) + expires_in;
    return 0;
}

/* GET <realm>?service=..&scope=.. with Basic credentials when WITH_BASIC
 * (distribution docs/spec/auth/token.md "Requesting a Token"). */
static int
fetch_token_get(char **token_out, long *expires_out, csi_auth *a, csi_http *http,
                const char *scope, bool with_basic, cs_error **err)
{
    cs_buf url = CS_BUF_INIT;
    char *basic = NULL;
    const char *hdrs[2] = {NULL, NULL};
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    csi_token tok = {0};
    int ret;

    ret = cs_buf_puts(&url, a->realm, err);
    if (ret == 0 && a->service != NULL) {
        ret = cs_buf_puts(&url, strchr(a->realm, '?') ? "&service=" : "?service=", err);
        if (ret == 0)
            ret = csi_http_query_escape(&url, a->service, err);
    }
    /* one scope parameter per resource scope ("repository:a:pull,push repository:b:pull"
     * for a cross-repository mount), as the token GET takes them */
    for (const char *sc = scope; ret == 0 && sc != NULL && *sc;) {
        size_t n = strcspn(sc, " ");
        char *one = strndup(sc, n);

        if (one == NULL) {
            ret = csi_error_oom(err);
            break;
        }
        if (n > 0) {
            ret = cs_buf_puts(&url, strchr(url.ptr, '?') ? "&scope=" : "?scope=", err);
            if (ret == 0)
                ret = csi_http_query_escape(&url, one, err);
        }
        free(one);
        sc += n;
        while (*sc == ' ')
            sc++;
    }
    if (ret == 0 && with_basic) {
        ret = cs_buf_puts(&url, strchr(url.ptr, '?') ? "&account=" : "?account=", err);
        if (ret == 0)
            ret = csi_http_query_escape(&url, a->cred.username, err);
        if (ret == 0)
            ret = basic_header(&basic, &a->cred, err);
        hdrs[0] = basic;
    }
    if (ret < 0)
        goto out;
    req.method = "GET";
    req.url = url.ptr;
    req.headers = hdrs;
    req.max_body = TOKEN_BODY_MAX;
    ret = csi_http_do(&resp, http, &req, err);
    if (ret < 0) {
        csi_error_wrap(err, "token for %s", a->domain);
        goto out;
    }
    if (resp.status == 401 || resp.status == 403) {
        if (with_basic)
            ret = csi_error_http(err, CS_EAUTH, resp.status,
                                 "%s: wrong username or password for %s (token server answered "
                                 "HTTP %ld); run: docker login %s",
                                 a->domain, a->cred.username, resp.status, a->domain);
        else
            ret = csi_error_http(err, CS_EAUTH, resp.status,
                                 "%s: the token server refused anonymous access (HTTP %ld); "
                                 "run: docker login %s",
                                 a->domain, resp.status, a->domain);
        goto out;
    }
    if (resp.status != 200) {
        ret = csi_error_http(err, CS_EPROTO, resp.status, "%s: token server answered HTTP %ld",
                             a->domain, resp.status);
        goto out;
    }
    ret = csi_token_parse(&tok, resp.body.ptr, resp.body.len, err);
    if (ret < 0) {
        csi_error_wrap(err, "%s: token server", a->domain);
        goto out;
    }
    *token_out = tok.token;
    tok.token = NULL;
    *expires_out = tok.expires_in;
out:
    csi_token_dispose(&tok);
    csi_auth_free_secret(basic);
    csi_http_resp_dispose(&resp);
    cs_buf_dispose(&url);
    return ret;
}

/* "host[:port]" of URL, for messages (at most 200 bytes). */
static void
url_host(char *dst, size_t dstsz, const char *url)
{
    const char *h = strstr(url, "://");
    size_t n;

    h = h ? h + 3 : url;
    n = strcspn(h, "/?#");
    if (n > 200)
        n = 200;
    snprintf(dst, dstsz, "%.*s", (int)n, h);
}

/* OAuth2 POST <realm> with grant_type=refresh_token (distribution docs/spec/auth/oauth.md),
 * for an identity token from `docker login` or a credential helper's "<token>" answer.
 * *FALLBACK is set (and 0 returned) when the token server does not do OAuth2 (404 or 405 to
 * the POST: "refer to Token Documentation for using the HTTP GET method"). */
static int
fetch_token_oauth(char **token_out, long *expires_out, bool *fallback, csi_auth *a,
                  csi_http *http, const char *scope, cs_error **err)
{
    static const char *const hdrs[] = {"Content-Type: application/x-www-form-urlencoded",
                                       NULL};
    cs_buf form = CS_BUF_INIT;
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    csi_token tok = {0};
    char host[256];
    int ret;

    *fallback = false;
    ret = cs_buf_puts(&form, "grant_type=refresh_token&client_id=cachesync", err);
    if (ret == 0 && a->service != NULL) {
        ret = cs_buf_puts(&form, "&service=", err);
        if (ret == 0)
            ret = csi_http_query_escape(&form, a->service, err);
    }
    if (ret == 0 && scope != NULL && *scope) {
        /* one space-separated scope field, as the OAuth2 form takes it */
        ret = cs_buf_puts(&form, "&scope=", err);
        if (ret == 0)
            ret = csi_http_query_escape(&form, scope, err);
    }
    if (ret == 0)
        ret = cs_buf_puts(&form, "&refresh_token=", err);
    if (ret == 0)
        ret = csi_http_query_escape(&form, a->cred.identity_token, err);
    if (ret < 0)
        goto out;
    req.method = "POST";
    req.url = a->realm;
    req.headers = hdrs;
    req.body = form.ptr;
    req.body_len = form.len;
    req.max_body = TOKEN_BODY_MAX;
    ret = csi_http_do(&resp, http, &req, err);
    if (ret < 0) {
        csi_error_wrap(err, "token for %s", a->domain);
        goto out;
    }
    url_host(host, sizeof(host), a->realm);
    if (resp.status == 404 || resp.status == 405) {
        csi_log(CS_LOG_DEBUG, "%s: token server %s does not take OAuth2 POST (HTTP %ld); "
                "using GET", a->domain, host, resp.status);
        *fallback = true;
        goto out;
    }
    /* RFC 6749 answers a bad refresh token with 400 invalid_grant; distribution-style
     * servers with 401 */
    if (resp.status == 401 || resp.status == 403 ||
        (resp.status == 400 && resp.body.ptr != NULL &&
         memmem(resp.body.ptr, resp.body.len, "invalid_grant", 13) != NULL)) {
        ret = csi_error_http(err, CS_EAUTH, resp.status,
                             "identity token refused by %s (HTTP %ld); run: docker login %s",
                             host, resp.status, a->domain);
        goto out;
    }
    if (resp.status != 200) {
        ret = csi_error_http(err, CS_EPROTO, resp.status,
                             "%s: token server %s answered HTTP %ld to the OAuth2 POST",
                             a->domain, host, resp.status);
        goto out;
    }
    ret = csi_token_parse(&tok, resp.body.ptr, resp.body.len, err);
    if (ret < 0) {
        csi_error_wrap(err, "%s: token server", a->domain);
        goto out;
    }
    *token_out = tok.token;
    tok.token = NULL;
    *expires_out = tok.expires_in;
out:
    csi_token_dispose(&tok);
    csi_http_resp_dispose(&resp);
    if (form.ptr != NULL)
        OPENSSL_cleanse(form.ptr, form.len);
    cs_buf_dispose(&form);
    return ret;
}

/* A token for SCOPE. With an identity token: the OAuth2 POST flow; when the token server
 * has none (404/405), the GET flow as ggcr does, with Basic only when a password is known
 * too (docker sends Basic for passwords only; an identity token alone means an anonymous
 * GET, which gets what anonymous users get). Otherwise the GET flow, with Basic when there
 * is a username. */
static int
fetch_token(char **token_out, long *expires_out, csi_auth *a, csi_http *http, const char *scope,
            cs_error **err)
{
    if (a->cred.identity_token != NULL) {
        bool fallback = false;
        int ret = fetch_token_oauth(token_out, expires_out, &fallback, a, http, scope, err);

        if (ret < 0 || !fallback)
            return ret;
        return fetch_token_get(token_out, expires_out, a, http, scope,
                               a->cred.username != NULL && a->cred.password != NULL, err);
    }
    return fetch_token_get(token_out, expires_out, a, http, scope, a->cred.username != NULL,
                           err);
}

int
csi_auth_header(char **out, csi_auth *a, csi_http *http, const char *scope, cs_error **err)
{
    token_entry *t;
    char *token = NULL;
    long expires_in = 0;
    int ret;

    *out = NULL;
    if (scope == NULL)
        scope = "";
    switch (a->scheme) {
    case SCHEME_NONE:
        return 0;
    case SCHEME_BASIC:
        ret = load_creds(a, err);
        if (ret < 0 || a->cred.username == NULL)
            return ret;
        return basic_header(out, &a->cred, err);
    case SCHEME_BEARER:
        break;
    }
    ret = load_creds(a, err);
    if (ret < 0)
        return ret;
    t = token_find(a, scope);
    if (t == NULL || t->expires - TOKEN_EARLY_S <= time(NULL)) {
        if (a->cred.registry_token != NULL) {
            token = strdup(a->cred.registry_token);
            expires_in = 3600;
            if (token == NULL)
                return csi_error_oom(err);
        } else {
            ret = fetch_token(&token, &expires_in, a, http, scope, err);
            if (ret < 0)
                return ret;
        }
        ret = token_store(a, scope, token, expires_in, err);
        if (ret < 0)
            return ret;
        t = token_find(a, scope);
    }
    if (asprintf(out, "Authorization: Bearer %s", t->token) < 0) {
        *out = NULL;
        return csi_error_oom(err);
    }
    return 0;
}

int
csi_auth_challenge(csi_auth *a, const csi_http_resp *resp, const char *scope, bool https,
                   cs_error **err)
{
    cs_buf joined = CS_BUF_INIT;
    csi_challenge *ch = NULL;
    const csi_challenge *bearer, *basic;
    size_t nch = 0;
    scheme before = a->scheme;
    token_entry *t;
    int ret;

    ret = load_creds(a, err);
    if (ret < 0)
        return ret;
    ret = csi_http_header_join(&joined, resp, "www-authenticate", err);
    if (ret < 0)
        goto out;
    if (joined.len == 0) {
        ret = csi_error_http(err, CS_EAUTH, resp->status,
                             "%s answered HTTP 401 without a challenge", a->domain);
        goto out;
    }
    ret = csi_www_auth_parse(&ch, &nch, joined.ptr, joined.len, err);
    if (ret < 0) {
        csi_error_wrap(err, "%s: WWW-Authenticate", a->domain);
        goto out;
    }
    bearer = csi_challenge_find(ch, nch, "bearer");
    basic = csi_challenge_find(ch, nch, "basic");
    if (bearer != NULL) {
        const char *realm = csi_challenge_param(bearer, "realm");
        const char *service = csi_challenge_param(bearer, "service");

        if (realm == NULL ||
            (strncmp(realm, "https://", 8) != 0 && strncmp(realm, "http://", 7) != 0)) {
            ret = csi_error_set(err, CS_EPROTO, "%s: Bearer challenge without a usable realm",
                                a->domain);
            goto out;
        }
        /* A TLS registry must not send its credentials to a plain-HTTP token server
         * (ggcr validateRealmURL). */
        if (https && strncmp(realm, "https://", 8) != 0) {
            ret = csi_error_set(err, CS_EAUTH,
                                "%s: refusing token realm %.200s: not https for an https "
                                "registry",
                                a->domain, realm);
            goto out;
        }
        free(a->realm);
        free(a->service);
        a->realm = strdup(realm);
        a->service = service ? strdup(service) : NULL;
        if (a->realm == NULL || (service && a->service == NULL)) {
            ret = csi_error_oom(err);
            goto out;
        }
        a->scheme = SCHEME_BEARER;
    } else if (basic != NULL) {
        a->scheme = SCHEME_BASIC;
    } else {
        ret = csi_error_set(err, CS_EUNSUPPORTED, "%s: unsupported authentication scheme: %.80s",
                            a->domain, joined.ptr);
        goto out;
    }
    t = token_find(a, scope ? scope : "");
    if (t != NULL)
        t->expires = 0;
    /* The first 401 teaches the scheme; a 401 after we answered it means the answer was
     * wrong (Basic) or not enough (Bearer: the token lacks the rights). */
    a->failures++;
    if (a->scheme == before && a->failures > 1) {
        if (a->scheme == SCHEME_BASIC && a->cred.username != NULL)
            ret = csi_error_http(err, CS_EAUTH, 401,
                                 "%s: wrong username or password for %s; run: docker login %s",
                                 a->domain, a->cred.username, a->domain);
        else if (a->cred.username == NULL && a->cred.identity_token == NULL &&
                 a->cred.registry_token == NULL)
            ret = csi_error_http(err, CS_EAUTH, 401,
                                 "%s requires authentication; run: docker login %s", a->domain,
                                 a->domain);
        else
            ret = csi_error_http(err, CS_EAUTH, 401, "%s denied access to %s", a->domain,
                                 scope && *scope ? scope : "the registry");
        goto out;
    }
    if (a->scheme == SCHEME_BASIC && a->cred.username == NULL) {
        ret = csi_error_http(err, CS_EAUTH, 401, "%s requires authentication; run: docker login %s",
                             a->domain, a->domain);
        goto out;
    }
    ret = 0;
out:
    csi_challenges_free(ch, nch);
    cs_buf_dispose(&joined);
    return ret;
}

void
csi_auth_ok(csi_auth *a)
{
    a->failures = 0;
}
