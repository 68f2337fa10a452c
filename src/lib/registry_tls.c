/* Per-registry TLS as dockerd configures it: certs.d CAs and client certificates. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "error_int.h"
#include "log_int.h"
#include "registry_int.h"

/* ---- Docker's per-registry TLS directory (certs.d) -----------------------------------------
 *
 * dockerd's rule (docs "Verify repository client with certificates"; moby
 * registry.ReadCertsDirectory): in CERTS_DIR/HOST[:PORT]/, every *.crt is an extra CA, every
 * *.cert is a client certificate whose key is the *.key of the same base name (a .cert
 * without its .key, or a .key without its .cert, is an error). libcurl takes one CA file and
 * one client certificate, so:
 *  - the CAs become one private temporary bundle (mkstemp, mode 0600, in $TMPDIR or /tmp,
 *    removed by cs_registry_free): the system bundle libcurl would use by default (its
 *    built-in CURLINFO_CAINFO, else /etc/ssl/certs/ca-certificates.crt), then --ca-cert's
 *    file, then the certs.d *.crt files in name order. With CURLOPT_CAINFO set libcurl reads
 *    only that file, so the system CAs are copied in: extra CAs add trust, never replace it.
 *    (CURLOPT_CAPATH with a c_rehash'ed directory was the alternative; it needs hashing
 *    tools and a directory to clean up, for no gain.) No extra CA: nothing is written and
 *    libcurl keeps its defaults.
 *  - the first *.cert + *.key pair in name order is the client certificate; it is loaded with
 *    OpenSSL here, so an unreadable or malformed file, or a key that does not match, is an
 *    error naming the file before any connection. Further pairs are ignored (logged). */

static bool
has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcmp(s + n - m, suffix) == 0;
}

/* The CA bundle libcurl uses when CURLOPT_CAINFO is not set, or NULL if none is known. */
static char *
default_ca_bundle(void)
{
    static const char *const known[] = {
        "/etc/ssl/certs/ca-certificates.crt", /* Debian, Ubuntu, Alpine */
        "/etc/pki/tls/certs/ca-bundle.crt",   /* Fedora, RHEL */
        "/etc/ssl/ca-bundle.pem",             /* openSUSE */
        "/etc/ssl/cert.pem",                  /* BSDs, macOS */
    };
    char *path = NULL;
#if LIBCURL_VERSION_NUM >= 0x075400 /* CURLINFO_CAINFO: 7.84.0 */
    CURL *c = curl_easy_init();
    char *p = NULL;
    if (c != NULL && curl_easy_getinfo(c, CURLINFO_CAINFO, &p) == CURLE_OK && p != NULL &&
        access(p, R_OK) == 0)
        path = strdup(p);
    curl_easy_cleanup(c);
    if (path != NULL)
        return path;
#endif
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (access(known[i], R_OK) == 0)
            return strdup(known[i]);
    }
    return NULL;
}

/* Append file PATH (WHAT names its origin in errors) to OUT. */
static int
append_file(FILE *out, const char *path, const char *what, cs_error **err)
{
    char buf[16384];
    size_t n;
    FILE *in = fopen(path, "rb");

    if (in == NULL)
        return csi_error_errno(err, errno, "cannot read %s %s", what, path);
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        if (fwrite(buf, 1, n, out) != n) {
            fclose(in);
            return csi_error_errno(err, errno, "cannot write the CA bundle");
        }
    }
    if (ferror(in)) {
        int e = errno;
        fclose(in);
        return csi_error_errno(err, e, "cannot read %s %s", what, path);
    }
    fclose(in);
    /* a file without a final newline must not glue its END line to the next BEGIN line */
    if (fputc('\n', out) == EOF)
        return csi_error_errno(err, errno, "cannot write the CA bundle");
    return 0;
}

/* Write the system bundle + CA_FILE + CRTS[0..NCRT) to a new temporary file (*OUT). */
static int
write_ca_bundle(char **out, const char *ca_file, char **crts, size_t ncrt, cs_error **err)
{
    const char *tmp = getenv("TMPDIR");
    char *path = NULL, *sys = NULL;
    FILE *f = NULL;
    int fd, ret = 0;

    if (asprintf(&path, "%s/cachesync-ca-XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0)
        return csi_error_oom(err);
    fd = mkstemp(path);
    if (fd < 0) {
        ret = csi_error_errno(err, errno, "cannot create a CA bundle in %s",
                              tmp && *tmp ? tmp : "/tmp");
        free(path);
        return ret;
    }
    f = fdopen(fd, "wb");
    if (f == NULL) {
        ret = csi_error_errno(err, errno, "cannot create a CA bundle");
        close(fd);
        goto out;
    }
    sys = default_ca_bundle();
    if (sys != NULL)
        ret = append_file(f, sys, "the system CA bundle", err);
    else
        csi_log(CS_LOG_WARN, "no system CA bundle found: trusting only the extra CAs");
    if (ret == 0 && ca_file != NULL)
        ret = append_file(f, ca_file, "CA certificate (--ca-cert)", err);
    for (size_t i = 0; ret == 0 && i < ncrt; i++)
        ret = append_file(f, crts[i], "CA certificate", err);
    if (fclose(f) != 0 && ret == 0)
        ret = csi_error_errno(err, errno, "cannot write the CA bundle %s", path);
    if (ret == 0)
        csi_log(CS_LOG_DEBUG, "CA bundle %s: the system CAs (%s)%s%s and %zu certs.d CA file(s)",
                path, sys ? sys : "none found", ca_file ? ", --ca-cert " : "",
                ca_file ? ca_file : "", ncrt);
out:
    free(sys);
    if (ret < 0) {
        unlink(path);
        free(path);
        return ret;
    }
    *out = path;
    return 0;
}

/* Load CERT and KEY as OpenSSL would for the handshake: both PEM, and matching. */
static int
check_client_pair(const char *cert, const char *key, cs_error **err)
{
    FILE *f;
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    int ret = 0;

    if ((f = fopen(cert, "rb")) == NULL)
        return csi_error_errno(err, errno, "cannot read client certificate %s", cert);
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL) {
        ret = csi_error_set(err, CS_ERROR, "client certificate %s is not a PEM certificate", cert);
        goto out;
    }
    if ((f = fopen(key, "rb")) == NULL) {
        ret = csi_error_errno(err, errno, "cannot read client key %s", key);
        goto out;
    }
    k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (k == NULL) {
        ret = csi_error_set(err, CS_ERROR, "client key %s is not an unencrypted PEM private key",
                            key);
        goto out;
    }
    if (X509_check_private_key(x, k) != 1)
        ret = csi_error_set(err, CS_ERROR, "client key %s does not match client certificate %s",
                            key, cert);
out:
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
    return ret;
}

/* Read CERTS_DIR/HOST/: CA files into *CRTS (*NCRT; appended, name order) and the first
 * client pair into *CERT and *KEY (unless already set). A missing directory is no error. */
static int
read_host_dir(char ***crts, size_t *ncrt, char **cert, char **key, const char *certs_dir,
              const char *host, cs_error **err)
{
    struct dirent **ents = NULL;
    char *dir = NULL;
    int n, ret = 0;

    if (asprintf(&dir, "%s/%s", certs_dir, host) < 0)
        return csi_error_oom(err);
    n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) {
        if (errno != ENOENT && errno != ENOTDIR)
            ret = csi_error_errno(err, errno, "cannot read %s", dir);
        free(dir);
        return ret;
    }
    for (int i = 0; i < n && ret == 0; i++) {
        const char *name = ents[i]->d_name;
        char *path = NULL, *other = NULL;
        size_t base;

        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
            continue;
        if (has_suffix(name, ".crt")) {
            char **grown = realloc(*crts, (*ncrt + 1) * sizeof(**crts));
            if (grown == NULL || asprintf(&path, "%s/%s", dir, name) < 0) {
                if (grown != NULL)
                    *crts = grown;
                ret = csi_error_oom(err);
                break;
            }
            *crts = grown;
            (*crts)[(*ncrt)++] = path;
        } else if (has_suffix(name, ".cert") || has_suffix(name, ".key")) {
            bool is_cert = has_suffix(name, ".cert");
            base = strlen(name) - (is_cert ? 5 : 4);
            if (asprintf(&path, "%s/%s", dir, name) < 0 ||
                asprintf(&other, "%s/%.*s%s", dir, (int)base, name, is_cert ? ".key" : ".cert") <
                    0) {
                free(path);
                ret = csi_error_oom(err);
                break;
            }
            if (access(other, F_OK) != 0) {
                ret = is_cert ? csi_error_set(err, CS_ERROR,
                                              "client certificate %s has no key: missing %s", path,
                                              other)
                              : csi_error_set(err, CS_ERROR,
                                              "client key %s has no certificate: missing %s", path,
                                              other);
            } else if (is_cert && *cert == NULL) {
                *cert = path;
                *key = other;
                path = other = NULL;
            } else if (is_cert) {
                csi_log(CS_LOG_WARN, "%s: only one client certificate is used (%s); ignoring %s",
                        host, *cert, path);
            }
            free(path);
            free(other);
        }
    }
    for (int i = 0; i < n; i++)
        free(ents[i]);
    free(ents);
    free(dir);
    return ret;
}

/* Set up REG's TLS material from OPTS and the certs.d directory into HOPTS. */
int
csi_registry_setup_tls(cs_registry *reg, csi_http_opts *hopts, const cs_registry_options *opts,
                       cs_error **err)
{
    const char *dir = opts ? opts->certs_dir : NULL;
    const char *ca_file = opts ? opts->ca_file : NULL;
    char **crts = NULL, *cert = NULL, *key = NULL;
    size_t ncrt = 0;
    int ret;

    if (dir == NULL || *dir == '\0')
        dir = getenv("CACHESYNC_CERTS_D");
    if (dir == NULL || *dir == '\0')
        dir = "/etc/docker/certs.d";
    reg->certs_dir = strdup(dir);
    if (reg->certs_dir == NULL)
        return csi_error_oom(err);
    ret = read_host_dir(&crts, &ncrt, &cert, &key, dir, reg->domain, err);
    /* docker.io's certificates may also sit under the host the API lives on */
    if (ret == 0 && strcmp(reg->domain, reg->api_host) != 0)
        ret = read_host_dir(&crts, &ncrt, &cert, &key, dir, reg->api_host, err);
    if (ret == 0 && cert != NULL)
        ret = check_client_pair(cert, key, err);
    if (ret == 0 && (ca_file != NULL || ncrt > 0))
        ret = write_ca_bundle(&reg->ca_bundle, ca_file, crts, ncrt, err);
    if (ret == 0) {
        for (size_t i = 0; i < ncrt; i++)
            csi_log(CS_LOG_DEBUG, "%s: extra CA %s", reg->domain, crts[i]);
        if (cert != NULL)
            csi_log(CS_LOG_DEBUG, "%s: client certificate %s (key %s)", reg->domain, cert, key);
        hopts->ca_file = reg->ca_bundle;
        hopts->client_cert = cert;
        hopts->client_key = key;
        reg->client_cert = cert;
        cert = NULL;
    }
    for (size_t i = 0; i < ncrt; i++)
        free(crts[i]);
    free(crts);
    free(cert);
    /* KEY is only needed until csi_http_new copied it; the caller frees it */
    if (ret < 0)
        free(key);
    return ret;
}
