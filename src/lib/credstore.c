/* Writing the Docker client config as `docker login` and `docker logout` do (docker/cli
 * cli/config/configfile Save, credentials/file_store.go): see credentials.h. Every key of the
 * file that is not the one entry being changed stays as it was. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "credentials.h"
#include "error_int.h"
#include "fsutil.h"

/* The fields of an auths entry that hold or imply a secret (docker/cli types.AuthConfig). */
static const char *const secret_fields[] = {"auth", "username", "password", "identitytoken",
                                            "registrytoken"};

static bool
host_char_ok(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_' || c == ':' || c == '[' || c == ']';
}

int
csi_credstore_server(char **key_out, char **domain_out, const char *server, cs_error **err)
{
    char *host = NULL;
    const char *key;
    int ret = 0;

    *key_out = NULL;
    *domain_out = NULL;
    if (server == NULL || server[0] == '\0')
        server = "docker.io";
    host = malloc(strlen(server) + 1);
    if (host == NULL)
        return csi_error_oom(err);
    csi_credential_hostname(host, server);
    for (const char *p = host; *p; p++) {
        if (!host_char_ok(*p)) {
            host[0] = '\0';
            break;
        }
    }
    if (host[0] == '\0' || host[0] == '-' || host[0] == ':' || host[strlen(host) - 1] == ':') {
        ret = csi_error_set(err, CS_EINVAL, "\"%.100s\" does not name a registry (HOST[:PORT])",
                            server);
        goto out;
    }
    key = csi_credential_key(host);
    *key_out = strdup(key);
    *domain_out = strdup(key == host ? host : "docker.io");
    if (*key_out == NULL || *domain_out == NULL) {
        free(*key_out);
        free(*domain_out);
        *key_out = *domain_out = NULL;
        ret = csi_error_oom(err);
    }
out:
    free(host);
    return ret;
}

/* Wipe every string in V (recursively) before it goes back to the allocator. */
static void
wipe(json_t *v)
{
    size_t i;
    void *it;

    if (json_is_string(v)) {
        OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
    } else if (json_is_array(v)) {
        for (i = 0; i < json_array_size(v); i++)
            wipe(json_array_get(v, i));
    } else if (json_is_object(v)) {
        for (it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it))
            wipe(json_object_iter_value(it));
    }
}

static void
free_root(json_t *root)
{
    wipe(root);
    json_decref(root);
}

/* Delete every member of OBJ whose name is NAME, ASCII case-insensitively (Go's decoder
 * would have read any of them as the field). */
static void
delete_field(json_t *obj, const char *name)
{
    void *it = json_object_iter(obj);

    while (it != NULL) {
        const char *k = json_object_iter_key(it);
        void *next = json_object_iter_next(obj, it);
        size_t i;

        for (i = 0; k[i] != '\0' && name[i] != '\0'; i++) {
            char a = k[i] >= 'A' && k[i] <= 'Z' ? (char)(k[i] - 'A' + 'a') : k[i];

            if (a != name[i])
                break;
        }
        if (k[i] == '\0' && name[i] == '\0') {
            wipe(json_object_iter_value(it));
            json_object_del(obj, k);
        }
        it = next;
    }
}

/* The name under which OBJ holds member NAME (as csi_credential_member matches it), or NAME
 * when it has none. Borrowed. */
static const char *
member_name(json_t *obj, const char *name)
{
    json_t *v = csi_credential_member(obj, name);
    void *it;

    if (v == NULL)
        return name;
    for (it = json_object_iter(obj); it != NULL; it = json_object_iter_next(obj, it)) {
        if (json_object_iter_value(it) == v)
            return json_object_iter_key(it);
    }
    return name;
}

/* *OUT = ROOT's auths object, made when absent or null. */
static int
auths_of(json_t **out, json_t *root, bool create, const char *file, cs_error **err)
{
    json_t *auths = csi_credential_member(root, "auths");

    *out = NULL;
    if (auths != NULL && json_is_object(auths)) {
        *out = auths;
        return 0;
    }
    if (auths != NULL && !json_is_null(auths))
        return csi_error_set(err, CS_EPROTO, "%s: \"auths\" is not an object", file);
    if (!create)
        return 0;
    auths = json_object();
    if (auths == NULL || json_object_set_new(root, member_name(root, "auths"), auths) != 0)
        return csi_error_oom(err);
    *out = auths;
    return 0;
}

/* ROOT as the bytes of a config file, in one allocation of the exact size (no reallocations
 * that would leave copies of the secrets behind): *OUT, NUL-terminated, *OUT_LEN bytes. */
static int
dump(char **out, size_t *out_len, json_t *root, cs_error **err)
{
    /* docker/cli indents with a tab; any indentation reads the same */
    const size_t flags = JSON_INDENT(2);
    size_t n = json_dumpb(root, NULL, 0, flags);
    char *buf;

    if (n == 0)
        return csi_error_oom(err);
    buf = malloc(n + 2);
    if (buf == NULL)
        return csi_error_oom(err);
    if (json_dumpb(root, buf, n, flags) != n) {
        OPENSSL_cleanse(buf, n + 2);
        free(buf);
        return csi_error_oom(err);
    }
    buf[n] = '\n';
    buf[n + 1] = '\0';
    *out = buf;
    *out_len = n + 1;
    return 0;
}

/* base64(USERNAME:PASSWORD), as docker/cli encodeAuth; a new string. */
static int
encode_auth(char **out, const char *username, const char *password, cs_error **err)
{
    size_t ulen = strlen(username), plen = strlen(password), rlen = ulen + 1 + plen;
    unsigned char *raw = malloc(rlen);
    char *enc = malloc(4 * ((rlen + 2) / 3) + 1);
    int ret = 0;

    *out = NULL;
    if (raw == NULL || enc == NULL || rlen > INT_MAX / 2) {
        free(enc);
        ret = csi_error_oom(err);
        goto out;
    }
    memcpy(raw, username, ulen);
    raw[ulen] = ':';
    memcpy(raw + ulen + 1, password, plen);
    EVP_EncodeBlock((unsigned char *)enc, raw, (int)rlen);
    *out = enc;
out:
    if (raw != NULL)
        OPENSSL_cleanse(raw, rlen);
    free(raw);
    return ret;
}

int
csi_credstore_set(char **out, size_t *out_len, const char *json, size_t len, const char *key,
                  const char *username, const char *password, const char *file, cs_error **err)
{
    json_t *root = NULL, *auths, *entry;
    char *auth = NULL;
    json_t *auth_v = NULL;
    size_t i;
    int ret;

    *out = NULL;
    *out_len = 0;
    if (key == NULL || key[0] == '\0')
        return csi_error_set(err, CS_EINVAL, "%s: no registry key to store", file);
    if (username != NULL && (username[0] == '\0' || strchr(username, ':') != NULL))
        return csi_error_set(err, CS_EINVAL,
                             "a user name must be non-empty and hold no ':' (it would not read "
                             "back from \"auth\")");
    /* JSON_ALLOW_NUL: a "\u0000" elsewhere in the file survives the rewrite */
    ret = csi_credential_parse(&root, json, len, JSON_ALLOW_NUL, file, err);
    if (ret < 0)
        return ret;
    if (root == NULL && (root = json_object()) == NULL)
        return csi_error_oom(err);
    ret = auths_of(&auths, root, true, file, err);
    if (ret < 0)
        goto out;
    entry = json_object_get(auths, key);
    if (!json_is_object(entry)) {
        entry = json_object();
        if (entry == NULL || json_object_set_new(auths, key, entry) != 0) {
            ret = csi_error_oom(err);
            goto out;
        }
    }
    for (i = 0; i < sizeof(secret_fields) / sizeof(secret_fields[0]); i++)
        delete_field(entry, secret_fields[i]);
    if (username != NULL) {
        ret = encode_auth(&auth, username, password ? password : "", err);
        if (ret < 0)
            goto out;
        auth_v = json_string(auth);
        if (auth_v == NULL || json_object_set_new(entry, "auth", auth_v) != 0) {
            ret = csi_error_oom(err);
            goto out;
        }
    }
    ret = dump(out, out_len, root, err);
out:
    if (auth != NULL) {
        OPENSSL_cleanse(auth, strlen(auth));
        free(auth);
    }
    free_root(root);
    return ret;
}

int
csi_credstore_erase(char **out, size_t *out_len, bool *removed, const char *json, size_t len,
                    const char *key, const char *file, cs_error **err)
{
    json_t *root = NULL, *auths = NULL;
    char *host = NULL;
    void *it;
    int ret;

    *out = NULL;
    *out_len = 0;
    *removed = false;
    if (key == NULL || key[0] == '\0')
        return csi_error_set(err, CS_EINVAL, "%s: no registry key to erase", file);
    ret = csi_credential_parse(&root, json, len, JSON_ALLOW_NUL, file, err);
    if (ret < 0 || root == NULL)
        return ret;
    ret = auths_of(&auths, root, false, file, err);
    if (ret < 0 || auths == NULL)
        goto out;
    /* what csi_credential_lookup would find: the key, and legacy keys naming its host (a
     * logout that left "https://HOST/v1/" behind would still be logged in) */
    it = json_object_iter(auths);
    while (it != NULL) {
        const char *k = json_object_iter_key(it);
        void *next = json_object_iter_next(auths, it);
        char *nh = realloc(host, strlen(k) + 1);

        if (nh == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
        host = nh;
        csi_credential_hostname(host, k);
        if (strcmp(k, key) == 0 || strcmp(host, key) == 0) {
            wipe(json_object_iter_value(it));
            json_object_del(auths, k);
            *removed = true;
        }
        it = next;
    }
    if (*removed)
        ret = dump(out, out_len, root, err);
out:
    free(host);
    free_root(root);
    return ret;
}

/* mkdir -p DIR with mode 0700 for what it makes, as docker/cli makes ~/.docker. */
static int
make_dirs(const char *dir, cs_error **err)
{
    char buf[PATH_MAX];
    size_t i, n = strlen(dir);

    if (n == 0 || n >= sizeof(buf))
        return csi_error_set(err, CS_EINVAL, "bad directory \"%.100s\"", dir);
    memcpy(buf, dir, n + 1);
    for (i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return csi_error_errno(err, errno, "cannot create directory %s", buf);
        buf[i] = dir[i];
    }
    return 0;
}

int
csi_credstore_write(const char *path, const char *data, size_t len, cs_error **err)
{
    char *target = NULL, *dir = NULL, *tmp = NULL, *slash;
    struct stat st;
    bool have_old;
    int fd = -1, ret;

    /* docker/cli Save: filepath.EvalSymlinks, so a config.json symlinked into a dotfiles
     * repository stays a symlink; a dangling one is replaced */
    target = realpath(path, NULL);
    if (target == NULL)
        target = strdup(path);
    dir = target != NULL ? strdup(target) : NULL;
    if (target == NULL || dir == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    slash = strrchr(dir, '/');
    if (slash == NULL) {
        strcpy(dir, ".");
    } else {
        slash[slash == dir ? 1 : 0] = '\0';
        ret = make_dirs(dir, err);
        if (ret < 0)
            goto out;
    }
    have_old = stat(target, &st) == 0;
    if (asprintf(&tmp, "%s.tmp-XXXXXX", target) < 0) {
        tmp = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    fd = mkstemp(tmp);
    if (fd < 0) {
        ret = csi_error_errno(err, errno, "cannot create %s", tmp);
        free(tmp);
        tmp = NULL;
        goto out;
    }
    if (fchmod(fd, 0600) != 0) {
        ret = csi_error_errno(err, errno, "cannot set the mode of %s", tmp);
        goto out;
    }
    /* keep the owner of a file root rewrites for a user (sudo cachesync login); failing
     * that, the new file is root's and 0600, which is safe */
    if (have_old && (st.st_uid != geteuid() || st.st_gid != getegid()) &&
        fchown(fd, st.st_uid, st.st_gid) != 0 && errno != EPERM) {
        ret = csi_error_errno(err, errno, "cannot set the owner of %s", tmp);
        goto out;
    }
    ret = csi_fs_write_all(fd, data, len, tmp, err);
    if (ret < 0)
        goto out;
    if (fsync(fd) != 0) {
        ret = csi_error_errno(err, errno, "cannot write %s", tmp);
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        ret = csi_error_errno(err, errno, "cannot write %s", tmp);
        goto out;
    }
    fd = -1;
    if (rename(tmp, target) != 0) {
        ret = csi_error_errno(err, errno, "cannot replace %s", target);
        goto out;
    }
    free(tmp);
    tmp = NULL;
    csi_fs_fsync_dir(dir);
    ret = 0;
out:
    if (fd >= 0)
        close(fd);
    if (tmp != NULL)
        unlink(tmp);
    free(tmp);
    free(dir);
    free(target);
    return ret;
}
