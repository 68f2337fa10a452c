/* Docker client config lookup: see credentials.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "credentials.h"
#include "error_int.h"
#include "json.h"

static char
ascii_lower(char c)
{
    if (c >= 'A' && c <= 'Z')
        return (char)(c - 'A' + 'a');
    return c;
}

/* ASCII-only: strcasecmp follows the locale, and these are host and field names. */
static bool
ascii_casecmp_eq(const char *a, const char *b)
{
    while (*a != '\0' && ascii_lower(*a) == ascii_lower(*b)) {
        a++;
        b++;
    }
    return ascii_lower(*a) == ascii_lower(*b);
}

const char *
csi_credential_key(const char *domain)
{
    if (domain == NULL)
        return NULL;
    /* docker/cli getAuthConfigKey maps docker.io and index.docker.io; registry-1.docker.io
     * is the host those names are served from, so a caller holding the resolved host gets
     * the same key. */
    if (ascii_casecmp_eq(domain, "docker.io") || ascii_casecmp_eq(domain, "index.docker.io") ||
        ascii_casecmp_eq(domain, "registry-1.docker.io"))
        return CSI_CREDENTIAL_HUB_KEY;
    return domain;
}

static void
free_secret(char *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

void
csi_credential_dispose(csi_credential *c)
{
    if (c == NULL)
        return;
    free_secret(c->username);
    free_secret(c->password);
    free_secret(c->identity_token);
    free_secret(c->registry_token);
    free(c->helper);
    memset(c, 0, sizeof(*c));
}

json_t *
csi_credential_member(json_t *obj, const char *name)
{
    json_t *v;
    void *it;

    v = json_object_get(obj, name);
    if (v != NULL)
        return v;
    /* An explicit iterator rather than json_object_foreach, which clang-format cannot lay
     * out as a loop. */
    for (it = json_object_iter(obj); it != NULL; it = json_object_iter_next(obj, it)) {
        if (ascii_casecmp_eq(json_object_iter_key(it), name))
            return json_object_iter_value(it);
    }
    return NULL;
}

/* Member NAME of OBJ as a string: *out = NULL when absent, null or "" (Go's zero value).
 * KEY names the auths entry OBJ is, for the message; NULL for the top level. */
static int
member_string(const char **out, json_t *obj, const char *name, const char *key, const char *file,
              cs_error **err)
{
    json_t *v = csi_credential_member(obj, name);

    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        if (key != NULL)
            return csi_error_set(err, CS_EPROTO, "%s: \"%s\" of auths entry %s is not a string",
                                 file, name, key);
        return csi_error_set(err, CS_EPROTO, "%s: \"%s\" is not a string", file, name);
    }
    if (json_string_length(v) > 0)
        *out = json_string_value(v);
    return 0;
}

static int
b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Standard base64 with mandatory padding, as Go's base64.StdEncoding (which docker/cli's
 * decodeAuth uses): CR and LF are skipped, '=' only ends the last quantum, nothing may
 * follow it. Returns the decoded length, or -1 for invalid input. OUT must hold
 * len / 4 * 3 bytes. */
static long
b64_decode(unsigned char *out, const char *in, size_t len)
{
    unsigned int q[4];
    size_t i, o = 0;
    int nq = 0, pad = 0;
    bool done = false;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        int v;

        if (c == '\r' || c == '\n')
            continue;
        if (done)
            return -1;
        if (c == '=') {
            /* "x===" and "====" are not valid endings: at least two sextets come first. */
            if (nq < 2)
                return -1;
            pad++;
            q[nq++] = 0;
        } else {
            if (pad > 0)
                return -1;
            v = b64_value(c);
            if (v < 0)
                return -1;
            q[nq++] = (unsigned int)v;
        }
        if (nq == 4) {
            unsigned int w = q[0] << 18 | q[1] << 12 | q[2] << 6 | q[3];

            out[o++] = (unsigned char)(w >> 16);
            if (pad < 2)
                out[o++] = (unsigned char)(w >> 8);
            if (pad < 1)
                out[o++] = (unsigned char)w;
            nq = 0;
            done = pad > 0;
        }
    }
    /* An incomplete quantum: unpadded input, which StdEncoding rejects too. */
    if (nq != 0)
        return -1;
    return (long)o;
}

/* "auth" = base64(user:password) -> OUT's username and password (docker/cli decodeAuth:
 * split at the first ':', non-empty user, NULs trimmed from both ends of the password). */
static int
decode_auth(csi_credential *out, const char *auth, const char *key, const char *file,
            cs_error **err)
{
    unsigned char *buf = NULL;
    size_t alen = strlen(auth);
    size_t cap = alen / 4 * 3 + 1;
    const unsigned char *colon, *pass, *pend;
    long n;
    int ret;

    buf = malloc(cap);
    if (buf == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    n = b64_decode(buf, auth, alen);
    if (n < 0) {
        ret = csi_error_set(err, CS_EPROTO, "%s: \"auth\" for %s is not valid base64", file, key);
        goto out;
    }
    colon = memchr(buf, ':', (size_t)n);
    if (colon == NULL || colon == buf) {
        ret = csi_error_set(err, CS_EPROTO,
                            "%s: \"auth\" for %s does not decode to a non-empty user:password",
                            file, key);
        goto out;
    }
    pass = colon + 1;
    pend = buf + n;
    while (pass < pend && *pass == '\0')
        pass++;
    while (pend > pass && pend[-1] == '\0')
        pend--;
    /* A NUL left inside either part would silently cut the C string short. */
    if (memchr(buf, '\0', (size_t)(colon - buf)) != NULL ||
        memchr(pass, '\0', (size_t)(pend - pass)) != NULL) {
        ret = csi_error_set(err, CS_EPROTO, "%s: \"auth\" for %s contains a NUL byte", file, key);
        goto out;
    }
    out->username = strndup((const char *)buf, (size_t)(colon - buf));
    if (out->username == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    if (pend > pass) {
        out->password = strndup((const char *)pass, (size_t)(pend - pass));
        if (out->password == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
    }
    ret = 0;
out:
    if (buf != NULL)
        OPENSSL_cleanse(buf, cap);
    free(buf);
    return ret;
}

void
csi_credential_hostname(char *out, const char *s)
{
    const char *p = strstr(s, "://");
    const char *auth, *end, *at, *host, *hend, *port = NULL;

    if (p != NULL) {
        auth = p + 3;
        end = auth + strcspn(auth, "/?#");
        /* User info ends at the last '@' of the authority, as in net/url. */
        at = NULL;
        for (host = auth; host < end; host++) {
            if (*host == '@')
                at = host;
        }
        host = at != NULL ? at + 1 : auth;
        if (host < end && *host == '[') {
            /* IPv6 literal: Hostname() drops the brackets, JoinHostPort restores them only
             * together with a port. */
            hend = memchr(host, ']', (size_t)(end - host));
            if (hend != NULL) {
                if (hend + 1 < end && hend[1] == ':' && hend + 2 < end)
                    port = hend + 2;
                if (port != NULL) {
                    memcpy(out, host, (size_t)(end - host));
                    out[end - host] = '\0';
                } else {
                    memcpy(out, host + 1, (size_t)(hend - host - 1));
                    out[hend - host - 1] = '\0';
                }
                if (out[0] != '\0')
                    return;
            }
        } else {
            hend = memchr(host, ':', (size_t)(end - host));
            if (hend == NULL)
                hend = end;
            else if (hend + 1 < end)
                port = hend + 1;
            if (hend > host) {
                size_t n = (size_t)((port != NULL ? end : hend) - host);

                memcpy(out, host, n);
                out[n] = '\0';
                return;
            }
        }
    }
    /* No scheme, or no usable host after it. */
    end = strchr(s, '/');
    if (end == NULL)
        end = s + strlen(s);
    memcpy(out, s, (size_t)(end - s));
    out[end - s] = '\0';
}

/* *OUT = the auths entry for KEY: exact key first, then legacy keys carrying a scheme or
 * path (docker/cli fileStore.Get), in document order. Borrowed; NULL if none. */
static int
find_auth_entry(json_t **out, json_t *auths, const char *key, cs_error **err)
{
    char *host = NULL;
    void *it;
    int ret = 0;

    *out = json_object_get(auths, key);
    if (*out != NULL)
        goto out;
    for (it = json_object_iter(auths); it != NULL; it = json_object_iter_next(auths, it)) {
        const char *k = json_object_iter_key(it);
        char *nh = realloc(host, strlen(k) + 1);

        if (nh == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
        host = nh;
        csi_credential_hostname(host, k);
        if (strcmp(host, key) == 0) {
            *out = json_object_iter_value(it);
            break;
        }
    }
out:
    free(host);
    return ret;
}

static int
dup_field(char **dst, const char *src, cs_error **err)
{
    if (src == NULL)
        return 0;
    *dst = strdup(src);
    if (*dst == NULL)
        return csi_error_oom(err);
    return 0;
}

static bool
all_whitespace(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    }
    return true;
}

/* *OUT = the helper suffix to ask for KEY, or NULL to read auths (getConfiguredCredentialStore).
 * Borrowed from ROOT. */
static int
select_helper(const char **out, json_t *root, const char *key, const char *file, cs_error **err)
{
    json_t *helpers, *h;

    *out = NULL;
    helpers = csi_credential_member(root, "credHelpers");
    if (helpers != NULL && !json_is_null(helpers)) {
        if (!json_is_object(helpers))
            return csi_error_set(err, CS_EPROTO, "%s: \"credHelpers\" is not an object", file);
        h = json_object_get(helpers, key);
        if (h != NULL) {
            if (!json_is_null(h) && !json_is_string(h))
                return csi_error_set(err, CS_EPROTO,
                                     "%s: \"credHelpers\" entry for %s is not a string", file, key);
            /* An existing but empty entry selects the plain file store and skips credsStore:
             * getConfiguredCredentialStore returns it as it is. */
            if (json_is_string(h) && json_string_length(h) > 0)
                *out = json_string_value(h);
            return 0;
        }
    }
    return member_string(out, root, "credsStore", NULL, file, err);
}

/* Fill C (all NULL on entry) from the auths entry for KEY, if any. */
static int
read_auths(csi_credential *c, json_t *root, const char *key, const char *file, cs_error **err)
{
    json_t *auths, *entry;
    const char *auth, *user, *pass, *idtok, *regtok;
    int ret;

    auths = csi_credential_member(root, "auths");
    if (auths == NULL || json_is_null(auths))
        return 0;
    if (!json_is_object(auths))
        return csi_error_set(err, CS_EPROTO, "%s: \"auths\" is not an object", file);
    ret = find_auth_entry(&entry, auths, key, err);
    if (ret < 0)
        return ret;
    if (entry == NULL || json_is_null(entry))
        return 0;
    if (!json_is_object(entry))
        return csi_error_set(err, CS_EPROTO, "%s: auths entry %s is not an object", file, key);
    ret = member_string(&auth, entry, "auth", key, file, err);
    if (ret < 0)
        return ret;
    ret = member_string(&user, entry, "username", key, file, err);
    if (ret < 0)
        return ret;
    ret = member_string(&pass, entry, "password", key, file, err);
    if (ret < 0)
        return ret;
    ret = member_string(&idtok, entry, "identitytoken", key, file, err);
    if (ret < 0)
        return ret;
    ret = member_string(&regtok, entry, "registrytoken", key, file, err);
    if (ret < 0)
        return ret;
    /* A non-empty "auth" replaces the legacy username/password fields (LoadFromReader). */
    if (auth != NULL) {
        ret = decode_auth(c, auth, key, file, err);
    } else {
        ret = dup_field(&c->username, user, err);
        if (ret == 0)
            ret = dup_field(&c->password, pass, err);
    }
    if (ret == 0)
        ret = dup_field(&c->identity_token, idtok, err);
    if (ret == 0)
        ret = dup_field(&c->registry_token, regtok, err);
    return ret;
}

int
csi_credential_parse(json_t **out, const char *json, size_t len, size_t flags, const char *file,
                     cs_error **err)
{
    json_error_t jerr;
    json_t *root;

    *out = NULL;
    if (len > CSI_CREDENTIAL_MAX_CONFIG)
        return csi_error_set(err, CS_ELIMIT, "%s is %zu bytes, over the %d-byte limit", file, len,
                             CSI_CREDENTIAL_MAX_CONFIG);
    /* docker/cli ignores io.EOF from the decoder: an empty file is an empty config. */
    if (json == NULL || all_whitespace(json, len))
        return 0;
    root = json_loadb(json, len, flags, &jerr);
    if (root == NULL)
        return csi_error_set(err, CS_EPROTO, "%s: invalid JSON (%s) at line %d, column %d", file,
                             csi_json_reason(&jerr), jerr.line, jerr.column);
    if (!json_is_object(root)) {
        json_decref(root);
        return csi_error_set(err, CS_EPROTO, "%s: not a JSON object", file);
    }
    *out = root;
    return 0;
}

/* csi_credential_lookup, naming FILE in messages. */
static int
lookup(csi_credential *out, const char *json, size_t len, const char *domain, const char *file,
       cs_error **err)
{
    csi_credential c = CSI_CREDENTIAL_INIT;
    json_t *root = NULL;
    const char *key = csi_credential_key(domain);
    const char *helper;
    int ret;

    memset(out, 0, sizeof(*out));
    if (key == NULL || key[0] == '\0') {
        ret = csi_error_set(err, CS_EINVAL, "credential lookup: empty registry name");
        goto out;
    }
    ret = csi_credential_parse(&root, json, len, 0, file, err);
    if (ret < 0 || root == NULL)
        goto out;
    ret = select_helper(&helper, root, key, file, err);
    if (ret < 0)
        goto out;
    if (helper != NULL)
        ret = dup_field(&c.helper, helper, err);
    else
        ret = read_auths(&c, root, key, file, err);
    if (ret < 0)
        goto out;
    *out = c;
    memset(&c, 0, sizeof(c));
out:
    csi_credential_dispose(&c);
    json_decref(root);
    return ret;
}

int
csi_credential_lookup(csi_credential *out, const char *config_json, size_t len, const char *domain,
                      cs_error **err)
{
    return lookup(out, config_json, len, domain, "config.json", err);
}

int
csi_credential_helper_for(char **out, const char *json, size_t len, const char *domain,
                          const char *file, cs_error **err)
{
    const char *key = csi_credential_key(domain);
    const char *helper = NULL;
    json_t *root = NULL;
    int ret;

    *out = NULL;
    if (key == NULL || key[0] == '\0')
        return csi_error_set(err, CS_EINVAL, "credential lookup: empty registry name");
    ret = csi_credential_parse(&root, json, len, 0, file, err);
    if (ret == 0 && root != NULL)
        ret = select_helper(&helper, root, key, file, err);
    if (ret == 0)
        ret = dup_field(out, helper, err);
    json_decref(root);
    return ret;
}

int
csi_credential_copy(csi_credential *dst, const csi_credential *src, cs_error **err)
{
    csi_credential c = CSI_CREDENTIAL_INIT;
    int ret;

    ret = dup_field(&c.username, src->username, err);
    if (ret == 0)
        ret = dup_field(&c.password, src->password, err);
    if (ret == 0)
        ret = dup_field(&c.identity_token, src->identity_token, err);
    if (ret == 0)
        ret = dup_field(&c.registry_token, src->registry_token, err);
    if (ret == 0)
        ret = dup_field(&c.helper, src->helper, err);
    if (ret < 0) {
        csi_credential_dispose(&c);
        return ret;
    }
    *dst = c;
    return 0;
}

/* The user's home directory, newly allocated, or *out = NULL when there is none. Like
 * docker's homedir.Get: $HOME, else the passwd entry. */
static int
home_dir(char **out, cs_error **err)
{
    const char *home = getenv("HOME");
    struct passwd pw, *res = NULL;
    char *buf = NULL;
    long size;
    int ret;

    *out = NULL;
    if (home != NULL && home[0] != '\0') {
        *out = strdup(home);
        ret = *out == NULL ? csi_error_oom(err) : 0;
        goto out;
    }
    size = sysconf(_SC_GETPW_R_SIZE_MAX);
    if (size < 16384)
        size = 16384;
    buf = malloc((size_t)size);
    if (buf == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    /* No entry or a lookup failure both mean "no home": the caller goes anonymous. */
    if (getpwuid_r(getuid(), &pw, buf, (size_t)size, &res) != 0 || res == NULL ||
        pw.pw_dir == NULL || pw.pw_dir[0] == '\0') {
        ret = 0;
        goto out;
    }
    *out = strdup(pw.pw_dir);
    ret = *out == NULL ? csi_error_oom(err) : 0;
out:
    free(buf);
    return ret;
}

int
csi_credential_config_path(char **out, const char *config_dir, cs_error **err)
{
    const char *env = getenv("DOCKER_CONFIG");
    char *home = NULL;
    int ret;

    *out = NULL;
    if (config_dir != NULL && config_dir[0] != '\0') {
        ret = asprintf(out, "%s/config.json", config_dir);
    } else if (env != NULL && env[0] != '\0') {
        ret = asprintf(out, "%s/config.json", env);
    } else {
        ret = home_dir(&home, err);
        if (ret < 0 || home == NULL)
            goto out;
        ret = asprintf(out, "%s/.docker/config.json", home);
    }
    if (ret < 0) {
        *out = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    ret = 0;
out:
    free(home);
    return ret;
}

void
csi_credential_free_config(char *data, size_t len)
{
    if (data == NULL)
        return;
    OPENSSL_cleanse(data, len);
    free(data);
}

int
csi_credential_read_config(char **data_out, size_t *len_out, const char *path, cs_error **err)
{
    char *data = NULL;
    size_t len = 0;
    int fd = -1;
    int ret;

    *data_out = NULL;
    *len_out = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        /* No config is the normal state of a machine that never ran `docker login`. */
        ret = errno == ENOENT ? 0 : csi_error_errno(err, errno, "cannot open %s", path);
        goto out;
    }
    /* One allocation of cap + 1 bytes: growing with realloc would leave stray copies of
     * the secrets in freed memory, and one byte over the cap detects an oversized file. */
    data = malloc(CSI_CREDENTIAL_MAX_CONFIG + 1);
    if (data == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    while (len < CSI_CREDENTIAL_MAX_CONFIG + 1) {
        ssize_t r = read(fd, data + len, CSI_CREDENTIAL_MAX_CONFIG + 1 - len);

        if (r < 0) {
            if (errno == EINTR)
                continue;
            ret = csi_error_errno(err, errno, "cannot read %s", path);
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (len > CSI_CREDENTIAL_MAX_CONFIG) {
        ret = csi_error_set(err, CS_ELIMIT, "%s is larger than the %d-byte limit", path,
                            CSI_CREDENTIAL_MAX_CONFIG);
        goto out;
    }
    /* a NUL terminator for whoever prints or scans it; the cap + 1 bytes leave room */
    data[len] = '\0';
    *data_out = data;
    *len_out = len;
    data = NULL;
    ret = 0;
out:
    if (fd >= 0)
        close(fd);
    csi_credential_free_config(data, len);
    return ret;
}

int
csi_credential_load(csi_credential *out, const char *config_dir, const char *domain, cs_error **err)
{
    char *path = NULL;
    char *data = NULL;
    size_t len = 0;
    int ret;

    memset(out, 0, sizeof(*out));
    ret = csi_credential_config_path(&path, config_dir, err);
    if (ret < 0 || path == NULL)
        goto out;
    ret = csi_credential_read_config(&data, &len, path, err);
    if (ret < 0 || data == NULL)
        goto out;
    ret = lookup(out, data, len, domain, path, err);
out:
    csi_credential_free_config(data, len);
    free(path);
    return ret;
}
