/* cs_login / cs_logout: see cachesync/login.h. The order is docker's: check with the
 * registry, then store (helper first, then config.json), so a refused login writes nothing. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <cachesync/login.h>
#include "auth.h"
#include "credentials.h"
#include "credhelper.h"
#include "error_int.h"
#include "http.h"
#include "log_int.h"
#include "registry_int.h"

#define USERNAME_MAX 1024
#define PASSWORD_MAX (16 * 1024) /* what a helper's answer (64 KiB cap) still carries back */

void
cs_login_result_free(cs_login_result *r)
{
    if (r == NULL)
        return;
    free(r->registry);
    free(r->server_key);
    free(r->username);
    free(r->helper);
    free(r->config_path);
    free(r);
}

static bool
has_control(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    }
    return false;
}

static int
check_input(const cs_login_options *o, cs_error **err)
{
    if (o->username == NULL && o->password == NULL)
        return 0;
    if (o->username == NULL || o->username[0] == '\0')
        return csi_error_set(err, CS_EINVAL, "login: a user name is required");
    if (strlen(o->username) > USERNAME_MAX || strchr(o->username, ':') != NULL ||
        has_control(o->username))
        return csi_error_set(err, CS_EINVAL,
                             "login: the user name may not hold ':' or control characters (at "
                             "most %d bytes)",
                             USERNAME_MAX);
    if (o->password == NULL || o->password[0] == '\0')
        return csi_error_set(err, CS_EINVAL, "login: a password is required");
    if (strlen(o->password) > PASSWORD_MAX)
        return csi_error_set(err, CS_EINVAL, "login: the password is over %d bytes", PASSWORD_MAX);
    return 0;
}

/* Fill R's registry, server key and config path, and read the config file into *DATA (NULL
 * when there is none). */
static int
prepare(cs_login_result *r, char **data, size_t *len, const cs_login_options *o, cs_error **err)
{
    int ret;

    *data = NULL;
    *len = 0;
    ret = csi_credstore_server(&r->server_key, &r->registry, o->server, err);
    if (ret < 0)
        return ret;
    ret = csi_credential_config_path(&r->config_path, o->registry.docker_config_dir, err);
    if (ret < 0)
        return ret;
    if (r->config_path == NULL)
        return csi_error_set(err, CS_ERROR,
                             "no home directory for the docker config: set DOCKER_CONFIG or "
                             "give --docker-config DIR");
    ret = csi_credential_read_config(data, len, r->config_path, err);
    if (ret < 0)
        return ret;
    return csi_credential_helper_for(&r->helper, *data, *len, r->server_key, r->config_path, err);
}

/* The credentials stored for R's server, as the registry client would use them: CS_ENOTFOUND
 * unless there are a user name and a password (docker login re-checks only those). */
static int
stored_credential(csi_credential *out, const cs_login_result *r, const char *data, size_t len,
                  cs_error **err)
{
    int ret;

    if (r->helper != NULL)
        ret = csi_credhelper_get(out, r->helper, r->server_key, err);
    else
        ret = csi_credential_lookup(out, data, len, r->server_key, err);
    if (ret < 0)
        return ret;
    if (out->username == NULL || out->password == NULL) {
        csi_credential_dispose(out);
        return csi_error_set(err, CS_ENOTFOUND, "no stored user name and password for %s",
                             r->server_key);
    }
    return 0;
}

/* A refusal from the auth code ("HOST: wrong username or password for U; run: docker login
 * HOST") as a login failure: the registry once, no advice to run what is running. */
static int
refusal(cs_error **err, const char *domain)
{
    char hint[300], *msg, *start;
    size_t n, hn;
    long status;
    int ret;

    if (err == NULL || *err == NULL)
        return CS_EAUTH;
    status = (*err)->http_status;
    msg = strdup((*err)->message);
    if (msg == NULL)
        return CS_EAUTH;
    snprintf(hint, sizeof(hint), "; run: docker login %s", domain);
    n = strlen(msg);
    hn = strlen(hint);
    if (n >= hn && strcmp(msg + n - hn, hint) == 0)
        msg[n - hn] = '\0';
    start = msg;
    if (strncmp(start, domain, strlen(domain)) == 0 &&
        strncmp(start + strlen(domain), ": ", 2) == 0)
        start += strlen(domain) + 2;
    cs_error_free(*err);
    *err = NULL;
    ret = csi_error_http(err, CS_EAUTH, status, "login to %s failed: %s", domain, start);
    free(msg);
    return ret;
}

/* GET /v2/ with CRED, answering the registry's challenge as any request would: Basic, or a
 * token for no scope from the realm (what dockerd's loginV2 does). */
static int
verify(const cs_login_result *res, const csi_credential *cred, const cs_login_options *o,
       cs_error **err)
{
    cs_registry *r = NULL;
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    int ret;

    ret = cs_registry_new(&r, res->registry, &o->registry, err);
    if (ret < 0)
        return ret;
    ret = csi_auth_set_credential(r->auth, cred, err);
    if (ret < 0)
        goto out;
    req.method = "GET";
    req.url = "/v2/";
    req.max_body = 64 * 1024;
    ret = csi_registry_request(&resp, r, &req, NULL, err);
    if (ret == CS_EAUTH) {
        ret = refusal(err, res->registry);
        goto out;
    }
    if (ret < 0)
        goto out;
    if (resp.status == 401 || resp.status == 403) {
        ret = csi_error_http(err, CS_EAUTH, resp.status, "login to %s failed: HTTP %ld",
                             res->registry, resp.status);
        goto out;
    }
    if (resp.status != 200) {
        ret = csi_registry_status_error(r, &resp, "/v2/", err);
        goto out;
    }
    csi_log(CS_LOG_DEBUG, "%s accepted the credentials of %s", res->registry, cred->username);
out:
    csi_http_resp_dispose(&resp);
    cs_registry_free(r);
    return ret;
}

/* Apply csi_credstore_set to the file as it is now (another program may have changed it
 * while we talked to the registry) and replace it. */
static int
write_entry(const cs_login_result *r, const char *username, const char *password, cs_error **err)
{
    char *data = NULL, *out = NULL;
    size_t len = 0, out_len = 0;
    int ret;

    ret = csi_credential_read_config(&data, &len, r->config_path, err);
    if (ret == 0)
        ret = csi_credstore_set(&out, &out_len, data, len, r->server_key, username, password,
                                r->config_path, err);
    if (ret == 0)
        ret = csi_credstore_write(r->config_path, out, out_len, err);
    csi_credential_free_config(out, out_len);
    csi_credential_free_config(data, len);
    return ret;
}

int
cs_login(cs_login_result **out, const cs_login_options *opts, cs_error **err)
{
    cs_login_result *r = NULL;
    csi_credential cred = CSI_CREDENTIAL_INIT;
    char *data = NULL;
    size_t len = 0;
    int ret;

    *out = NULL;
    ret = check_input(opts, err);
    if (ret < 0)
        return ret;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return csi_error_oom(err);
    ret = prepare(r, &data, &len, opts, err);
    if (ret < 0)
        goto out;
    if (opts->username == NULL) {
        ret = stored_credential(&cred, r, data, len, err);
    } else {
        cred.username = strdup(opts->username);
        cred.password = strdup(opts->password);
        if (cred.username == NULL || cred.password == NULL)
            ret = csi_error_oom(err);
    }
    if (ret < 0)
        goto out;
    r->username = strdup(cred.username);
    if (r->username == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = verify(r, &cred, opts, err);
    if (ret < 0 || opts->username == NULL)
        goto out;
    /* docker/cli nativeStore.Store: the helper first; config.json then keeps an entry
     * without secrets, which is how `docker logout` knows the server */
    if (r->helper != NULL) {
        ret = csi_credhelper_store(r->helper, r->server_key, cred.username, cred.password, err);
        if (ret == 0)
            ret = write_entry(r, NULL, NULL, err);
    } else {
        ret = write_entry(r, cred.username, cred.password, err);
    }
    if (ret == 0)
        r->stored = true;
out:
    csi_credential_dispose(&cred);
    csi_credential_free_config(data, len);
    if (ret < 0) {
        cs_login_result_free(r);
        return ret;
    }
    *out = r;
    return 0;
}

int
cs_logout(cs_login_result **out, const cs_login_options *opts, cs_error **err)
{
    cs_login_result *r = NULL;
    char *data = NULL, *edited = NULL;
    size_t len = 0, elen = 0;
    bool in_helper = false, in_file = false;
    int ret;

    *out = NULL;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return csi_error_oom(err);
    ret = prepare(r, &data, &len, opts, err);
    if (ret < 0)
        goto out;
    if (r->helper != NULL) {
        ret = csi_credhelper_erase(&in_helper, r->helper, r->server_key, err);
        if (ret < 0)
            goto out;
    }
    csi_credential_free_config(data, len);
    data = NULL;
    len = 0;
    /* the file as it is now, as in login */
    ret = csi_credential_read_config(&data, &len, r->config_path, err);
    if (ret == 0)
        ret = csi_credstore_erase(&edited, &elen, &in_file, data, len, r->server_key,
                                  r->config_path, err);
    if (ret == 0 && in_file)
        ret = csi_credstore_write(r->config_path, edited, elen, err);
    if (ret == 0)
        r->stored = in_helper || in_file;
out:
    csi_credential_free_config(edited, elen);
    csi_credential_free_config(data, len);
    if (ret < 0) {
        cs_login_result_free(r);
        return ret;
    }
    *out = r;
    return 0;
}
