/* Docker client config lookup ($DOCKER_CONFIG/config.json), following docker/cli's
 * cli/config/configfile and cli/config/credentials: credHelpers, credsStore, auths.
 * csi_credential_lookup is a pure parser; csi_credential_load adds the file read. Running a
 * docker-credential-<helper> is the caller's business: a lookup only says which to ask. */
#ifndef CS_LIB_CREDENTIALS_H
#define CS_LIB_CREDENTIALS_H

#include <stddef.h>

#include <cachesync/error.h>

#define CSI_CREDENTIAL_MAX_CONFIG (1024 * 1024) /* bytes of config.json; over -> CS_ELIMIT */
#define CSI_CREDENTIAL_HUB_KEY "https://index.docker.io/v1/"

/* Every field is NULL or a non-empty string owned by the struct. All NULL means anonymous.
 * When helper is set every other field is NULL. */
typedef struct csi_credential {
    char *username;
    char *password;
    char *identity_token; /* OAuth2 refresh token from `docker login` (identitytoken) */
    char *registry_token; /* ready-made Bearer token (registrytoken) */
    char *helper;         /* ask docker-credential-<helper> with csi_credential_key(domain) */
} csi_credential;

#define CSI_CREDENTIAL_INIT {NULL, NULL, NULL, NULL, NULL}

/* The config key for registry host DOMAIN (host[:port]): CSI_CREDENTIAL_HUB_KEY for
 * docker.io, index.docker.io and registry-1.docker.io (ASCII case-insensitive), else DOMAIN
 * itself. Borrowed: a static string or DOMAIN. NULL for NULL. */
const char *csi_credential_key(const char *domain);

/* Look DOMAIN up in the LEN bytes of a config.json. Precedence as docker/cli's
 * getConfiguredCredentialStore: credHelpers[key] (an empty value there selects auths and
 * skips credsStore), then credsStore, then auths[key], then the first auths key whose
 * hostname (scheme, user info and path stripped, as ConvertToHostname) equals key.
 * Field names match case-insensitively, as Go's encoding/json does; map keys exactly.
 * An empty or whitespace-only file is an empty config, as in docker/cli.
 * Returns 0 (nothing found is 0 with all fields NULL), CS_EPROTO for malformed JSON, wrong
 * field types or an undecodable "auth" (the message names "config.json" and never quotes
 * secrets), CS_ELIMIT over CSI_CREDENTIAL_MAX_CONFIG, CS_EINVAL for an empty DOMAIN,
 * CS_ENOMEM. On failure *OUT holds no allocations; on success release it with
 * csi_credential_dispose. */
int csi_credential_lookup(csi_credential *out, const char *config_json, size_t len,
                          const char *domain, cs_error **err);

/* Read CONFIG_DIR/config.json and look DOMAIN up. CONFIG_DIR NULL or "" means
 * $DOCKER_CONFIG, else $HOME/.docker (the passwd entry's home when HOME is unset). A missing
 * file, or no home directory at all, is anonymous (0, fields NULL). An unreadable file is
 * CS_EIO naming the path; parse errors are as csi_credential_lookup's, naming the path. */
int csi_credential_load(csi_credential *out, const char *config_dir, const char *domain,
                        cs_error **err);

/* Wipe and free the fields of C and reset them to NULL; NULL is accepted. */
void csi_credential_dispose(csi_credential *c);

#endif
