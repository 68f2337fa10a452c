/* cachesync: `docker login` and `docker logout` for the Docker client config. Login checks
 * the credentials against the registry first (GET /v2/ with Basic, or the token flow, as
 * dockerd's login does) and only then stores them where Docker would: the credential helper
 * of credHelpers[HOST] or credsStore, or "auth" = base64(user:password) in
 * $DOCKER_CONFIG/config.json (default ~/.docker), under the key Docker uses (Docker Hub:
 * "https://index.docker.io/v1/"). Every other key of config.json is kept; the file is
 * replaced atomically and left with mode 0600. */
#ifndef CACHESYNC_LOGIN_H
#define CACHESYNC_LOGIN_H

#include <stdbool.h>
#include <cachesync/error.h>
#include <cachesync/registry.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cs_login_options {
    /* HOST[:PORT], or a URL whose scheme and path are ignored (as docker login takes it);
     * NULL, "", "docker.io" or "https://index.docker.io/v1/" for Docker Hub */
    const char *server;
    /* both NULL: verify the credentials already stored for the server (CS_ENOTFOUND when
     * there are none); the user name must be non-empty and hold no ':', the password
     * non-empty */
    const char *username;
    const char *password;
    cs_registry_options registry; /* the docker config directory, TLS, insecure registries */
} cs_login_options;

typedef struct cs_login_result {
    char *registry;    /* the registry spoken to: "docker.io", "127.0.0.1:5000" */
    char *server_key;  /* its key in config.json and for helpers */
    char *username;    /* login: the user verified; logout: NULL */
    char *helper;      /* the docker-credential-<helper> suffix used, or NULL for config.json */
    char *config_path; /* the config.json read (and written) */
    bool stored;       /* login: credentials were written (not when stored ones were only
                          verified); logout: credentials were stored and are now removed
                          (false: "Not logged in") */
} cs_login_result;

/** Verify OPTS' credentials with the registry, then store them. A refusal is CS_EAUTH naming
 * the registry, and nothing is written; so is a failure of the credential helper (one that
 * is not on PATH is CS_ERROR naming it). */
int cs_login(cs_login_result **out, const cs_login_options *opts, cs_error **err);

/** Remove the credentials stored for OPTS->server (username and password are ignored): from
 * its credential helper (`erase`) and from config.json's auths, legacy keys naming the same
 * host included. Nothing stored is success with result->stored false. */
int cs_logout(cs_login_result **out, const cs_login_options *opts, cs_error **err);

void cs_login_result_free(cs_login_result *r);

#ifdef __cplusplus
}
#endif
#endif
