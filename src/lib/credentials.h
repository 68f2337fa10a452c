/* Docker client config lookup ($DOCKER_CONFIG/config.json), following docker/cli's
 * cli/config/configfile and cli/config/credentials: credHelpers, credsStore, auths.
 * csi_credential_lookup is a pure parser; csi_credential_load adds the file read. Running a
 * docker-credential-<helper> is the caller's business: a lookup only says which to ask.
 * Writing (what `docker login` and `docker logout` do to the file) is credstore.c's. */
#ifndef CS_LIB_CREDENTIALS_H
#define CS_LIB_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>

#include <cachesync/error.h>

struct json_t;

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

#define CSI_CREDENTIAL_INIT                                                                        \
    {                                                                                              \
        NULL, NULL, NULL, NULL, NULL                                                               \
    }

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

/* *DST = a deep copy of SRC (DST holds no allocations on entry, nor on failure). */
int csi_credential_copy(csi_credential *dst, const csi_credential *src, cs_error **err);

/* ---- pieces shared with credstore.c ------------------------------------------------------ */

/* The config.json path for CONFIG_DIR as csi_credential_load resolves it; *OUT = NULL when
 * there is no home directory to default to. */
int csi_credential_config_path(char **out, const char *config_dir, cs_error **err);

/* Read the config file PATH (at most CSI_CREDENTIAL_MAX_CONFIG bytes, NUL-terminated). A
 * missing file is 0 with *DATA_OUT = NULL. Release with csi_credential_free_config. */
int csi_credential_read_config(char **data_out, size_t *len_out, const char *path, cs_error **err);
/* Wipe and free what csi_credential_read_config returned; NULL is accepted. */
void csi_credential_free_config(char *data, size_t len);

/* Parse LEN bytes of a config file (jansson FLAGS) into a new object *OUT; an empty or
 * whitespace-only file is *OUT = NULL. Errors as csi_credential_lookup's, naming FILE. */
int csi_credential_parse(struct json_t **out, const char *json, size_t len, size_t flags,
                         const char *file, cs_error **err);

/* *OUT = the helper suffix that holds DOMAIN's credentials (credHelpers, then credsStore, with
 * csi_credential_lookup's precedence), newly allocated, or NULL for the file itself. */
int csi_credential_helper_for(char **out, const char *json, size_t len, const char *domain,
                              const char *file, cs_error **err);

/* Member NAME of OBJ, matched as Go's encoding/json matches struct fields: exactly if
 * possible, else ASCII case-insensitively (first in document order). Borrowed. */
struct json_t *csi_credential_member(struct json_t *obj, const char *name);

/* docker/cli credentials.ConvertToHostname: for "scheme://[user@]host[:port][/path]" the
 * host[:port], else everything before the first '/'. Writes into OUT (size > strlen(S)). */
void csi_credential_hostname(char *out, const char *s);

/* ---- writing (credstore.c) --------------------------------------------------------------- */

/* SERVER as `docker login SERVER` takes it (a host[:port] or a URL whose scheme and path are
 * dropped; NULL, "" or "docker.io" for Docker Hub) -> *KEY_OUT, its config key (as
 * csi_credential_key), and *DOMAIN_OUT, the registry to talk to ("docker.io" for Hub), both
 * newly allocated. CS_EINVAL for a name that cannot be a registry host. */
int csi_credstore_server(char **key_out, char **domain_out, const char *server, cs_error **err);

/* The config.json bytes JSON (LEN, may be NULL/empty: a new file) with auths[KEY] set, into
 * a new NUL-terminated *OUT (*OUT_LEN bytes). With USERNAME: "auth" = base64(user:password),
 * the entry's other secret fields (username, password, identitytoken, registrytoken) removed,
 * anything else in it (email, unknown fields) kept. With USERNAME NULL (the secret is in a
 * helper): the entry without secret fields, as docker/cli's native store leaves it. Every
 * other key of the file is kept as it was, in its order. FILE names the file in messages.
 * Release *OUT with csi_credential_free_config. */
int csi_credstore_set(char **out, size_t *out_len, const char *json, size_t len, const char *key,
                      const char *username, const char *password, const char *file, cs_error **err);

/* The config.json bytes JSON without the auths entries csi_credential_lookup would find for
 * KEY (the exact key, and legacy keys whose ConvertToHostname is KEY). *REMOVED tells whether
 * there were any; when not, *OUT is NULL (nothing to write). */
int csi_credstore_erase(char **out, size_t *out_len, bool *removed, const char *json, size_t len,
                        const char *key, const char *file, cs_error **err);

/* Replace the file PATH with LEN bytes of DATA: a temp file beside it (the directory is made,
 * 0700, when missing), mode 0600, fsync, rename, fsync of the directory; a symlink at PATH is
 * followed and its target replaced, as docker/cli does. */
int csi_credstore_write(const char *path, const char *data, size_t len, cs_error **err);

#endif
