/* Pushing to a registry (distribution-spec spec.md "Push"): HEAD before anything, cross-
 * repository mounts, monolithic and chunked uploads, manifests last with their exact bytes. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cachesync/digest.h>
#include <cachesync/manifest.h>
#include "error_int.h"
#include "growing.h"
#include "log_int.h"
#include "registry_int.h"

/* Blobs up to this size go up in one PUT; larger ones in PATCH chunks of this size, so a
 * long upload never rides on one token or one connection (ggcr#2084: a 3.5 GB single PATCH
 * dies at a proxy's 15 minutes). */
#define CHUNK CSI_UPLOAD_CHUNK

static int
push_scope(char **out, const char *repo, const char *from, cs_error **err)
{
    int n = from ? asprintf(out, "repository:%s:pull,push repository:%s:pull", repo, from)
                 : asprintf(out, "repository:%s:pull,push", repo);

    if (n < 0) {
        *out = NULL;
        return csi_error_oom(err);
    }
    return 0;
}

int
cs_registry_blob_exists(bool *exists, cs_registry *r, const char *repo, const char *digest,
                        int64_t size, cs_error **err)
{
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    char *path = NULL, *scope = NULL, *what = NULL;
    const char *cl;
    int ret;

    *exists = false;
    ret = cs_digest_validate(digest, err);
    if (ret < 0)
        return ret;
    if (asprintf(&path, "/v2/%s/blobs/%s", repo, digest) < 0) {
        path = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    ret = push_scope(&scope, repo, NULL, err);
    if (ret < 0)
        goto out;
    req.method = "HEAD";
    req.url = path;
    ret = csi_registry_request(&resp, r, &req, scope, err);
    if (ret < 0)
        goto out;
    if (resp.status == 404)
        goto out;
    if (resp.status != 200) {
        if (asprintf(&what, "blob %s in %s", digest, repo) < 0)
            ret = csi_error_oom(err);
        else
            ret = csi_registry_status_error(r, &resp, what, err);
        goto out;
    }
    cl = csi_http_header_get(&resp, "content-length");
    *exists = size < 0 || cl == NULL || strtoll(cl, NULL, 10) == size;
out:
    free(what);
    free(scope);
    free(path);
    csi_http_resp_dispose(&resp);
    return ret;
}

/* The next URL of an upload session: the Location header, relative or absolute. */
static int
location(char **out, const csi_http_resp *resp, cs_registry *r, cs_error **err)
{
    const char *loc = csi_http_header_get(resp, "location");

    if (loc == NULL || *loc == '\0')
        return csi_error_set(err, CS_EPROTO, "%s: upload answer without a Location", r->domain);
    if (strncmp(loc, "http://", 7) == 0 || strncmp(loc, "https://", 8) == 0)
        *out = strdup(loc);
    else if (loc[0] == '/')
        *out = strdup(loc); /* relative to the registry: request() prefixes the base */
    else
        return csi_error_set(err, CS_EPROTO, "%s: unusable upload Location %.100s", r->domain, loc);
    return *out == NULL ? csi_error_oom(err) : 0;
}

/* Cancel an upload session; failures are ignored (distribution-spec: "SHOULD ignore"). */
static void
cancel(cs_registry *r, const char *url, const char *scope)
{
    csi_http_resp resp = {0};
    csi_http_req req = {0};

    if (url == NULL)
        return;
    req.method = "DELETE";
    req.url = url;
    req.no_retry = true;
    csi_registry_request(&resp, r, &req, scope, NULL);
    csi_http_resp_dispose(&resp);
}

int
cs_registry_mount_blob(bool *mounted, cs_registry *r, const char *repo, const char *digest,
                       const char *from_repo, cs_error **err)
{
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    char *path = NULL, *scope = NULL, *loc = NULL;
    int ret;

    *mounted = false;
    /* FROM_REPO comes from the store's layer map, a file: only a repository path (lower-case
     * letters, digits, separators) goes into the query and the token scope */
    if (from_repo == NULL || *from_repo == '\0' ||
        strspn(from_repo, "abcdefghijklmnopqrstuvwxyz0123456789._-/") != strlen(from_repo) ||
        cs_digest_validate(digest, NULL) < 0)
        return 0;
    if (asprintf(&path, "/v2/%s/blobs/uploads/?mount=%s&from=%s", repo, digest, from_repo) < 0) {
        path = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    ret = push_scope(&scope, repo, from_repo, err);
    if (ret < 0)
        goto out;
    req.method = "POST";
    req.url = path;
    req.body = "";
    ret = csi_registry_request(&resp, r, &req, scope, NULL);
    /* any failure means "upload it instead" (Harbor answers 401 for an unknown source;
     * Docker Hub refuses some mounts) */
    if (ret < 0) {
        ret = 0;
        goto out;
    }
    if (resp.status == 201) {
        *mounted = true;
    } else if (resp.status == 202 && location(&loc, &resp, r, NULL) == 0) {
        /* a plain upload session was opened instead: close it */
        cancel(r, loc, scope);
    }
out:
    free(loc);
    free(scope);
    free(path);
    csi_http_resp_dispose(&resp);
    return ret;
}

typedef struct file_source {
    int fd;
    uint64_t left;
    uint64_t sent;
    const char *path;
    uint64_t start, len; /* the byte range of the request being sent, for a resend */
} file_source;

/* Begin a request body of LEN bytes at offset START. */
static int
source_at(file_source *fs, uint64_t start, uint64_t len)
{
    if (lseek(fs->fd, (off_t)start, SEEK_SET) < 0)
        return -1;
    fs->start = start;
    fs->len = len;
    fs->left = len;
    return 0;
}

static int
rewind_file(void *payload)
{
    file_source *fs = payload;

    /* what was sent stays counted: SENT is what crossed the network, resends included */
    return source_at(fs, fs->start, fs->len);
}

static long
read_file(void *payload, char *buf, size_t len, cs_error **err)
{
    file_source *fs = payload;
    ssize_t n;

    if (fs->left == 0)
        return 0;
    if (len > fs->left)
        len = (size_t)fs->left;
    do {
        n = read(fs->fd, buf, len);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return csi_error_errno(err, errno, "read %s", fs->path);
    if (n == 0)
        return csi_error_set(err, CS_EIO, "%s ended early", fs->path);
    fs->left -= (uint64_t)n;
    fs->sent += (uint64_t)n;
    return n;
}

/* URL + "digest=..." with '?' or '&' as the Location's query needs (it "MAY contain
 * critical query parameters": never rebuild it). */
static int
with_digest(char **out, const char *url, const char *digest, cs_error **err)
{
    if (asprintf(out, "%s%sdigest=%s", url, strchr(url, '?') ? "&" : "?", digest) < 0) {
        *out = NULL;
        return csi_error_oom(err);
    }
    return 0;
}

/* PATCH bytes [OFF, OFF + N) of FS to *LOC, each with its Content-Range (inclusive, no
 * "bytes " prefix, spec.md "Pushing a blob in chunks"); *LOC becomes the next Location. */
static int
patch_chunk(cs_registry *r, char **loc, file_source *fs, uint64_t off, uint64_t n,
            const char *scope, const char *what, cs_error **err)
{
    static const char *const octet = "Content-Type: application/octet-stream";
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    char range[96];
    const char *hdrs[] = {octet, range, NULL};
    int ret;

    /* Content-Length comes from source_size */
    snprintf(range, sizeof(range), "Content-Range: %" PRIu64 "-%" PRIu64, off, off + n - 1);
    req.method = "PATCH";
    req.url = *loc;
    req.headers = hdrs;
    req.source = read_file;
    req.source_rewind = rewind_file;
    req.source_payload = fs;
    req.source_sized = true;
    req.source_size = n;
    if (source_at(fs, off, n) < 0)
        return csi_error_errno(err, errno, "seek %s", fs->path);
    ret = csi_registry_request(&resp, r, &req, scope, err);
    /* ECR answers a PATCH with 201 (regclient blob.go) */
    if (ret == 0 && resp.status != 202 && resp.status != 201)
        ret = csi_registry_status_error(r, &resp, what, err);
    if (ret == 0) {
        free(*loc);
        *loc = NULL;
        ret = location(loc, &resp, r, err);
    }
    csi_http_resp_dispose(&resp);
    return ret;
}

/* One upload attempt: POST, then PUT (small) or PATCH... + PUT (large). With G, the blob is
 * still being written: each chunk goes as soon as the file holds it, and DIGEST and SIZE
 * come from G once it is done (see csi_registry_upload_growing). */
static int
upload_once(cs_registry *r, const char *repo, const char *digest, int64_t size, int fd,
            const char *path, const char *scope, uint64_t *sent, cs_growing_blob *g,
            enum csi_growing_upload *how, cs_error **err)
{
    static const char *const octet[] = {"Content-Type: application/octet-stream", NULL};
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    char *start = NULL, *loc = NULL, *put = NULL, *what = NULL;
    file_source fs = {fd, (uint64_t)size, 0, path, 0, 0};
    uint64_t off = 0;
    int ret;

    if (lseek(fd, 0, SEEK_SET) < 0)
        return csi_error_errno(err, errno, "seek %s", path);
    if (asprintf(&start, "/v2/%s/blobs/uploads/", repo) < 0 ||
        asprintf(&what, "upload of %s to %s",
                 digest != NULL ? digest : "a layer as it is compressed", repo) < 0) {
        ret = csi_error_oom(err);
        goto out;
    }
    req.method = "POST";
    req.url = start;
    req.body = "";
    ret = csi_registry_request(&resp, r, &req, scope, err);
    if (ret < 0)
        goto out;
    if (resp.status != 202) {
        ret = csi_registry_status_error(r, &resp, what, err);
        goto out;
    }
    ret = location(&loc, &resp, r, err);
    if (ret < 0)
        goto out;
    if (g != NULL) {
        enum csi_growing_state st;
        uint64_t avail;
        bool exists = false;

        /* a chunk as soon as the file holds one; the rest below, once it is complete */
        for (;;) {
            st = csi_growing_wait(g, off + CHUNK, &avail);
            if (st != CSI_GROWING_OPEN)
                break;
            ret = patch_chunk(r, &loc, &fs, off, CHUNK, scope, what, err);
            if (ret < 0)
                goto out;
            off += CHUNK;
        }
        if (st == CSI_GROWING_FAILED) {
            /* not a blob to push after all: ret 0, the session is cancelled below */
            *how = CSI_GROWING_NOT_SENT;
            goto out;
        }
        digest = csi_growing_digest(g);
        size = (int64_t)avail;
        /* its digest known at last: if the registry holds that blob already (the same layer
         * pushed from elsewhere: compression here is deterministic), the rest stays here and
         * the session goes instead of a second commit */
        ret = cs_registry_blob_exists(&exists, r, repo, digest, size, err);
        if (ret < 0)
            goto out;
        if (exists) {
            *how = CSI_GROWING_PRESENT;
            goto out;
        }
    }
    /* large blobs: the (rest of the) chunks, following each new Location */
    while ((uint64_t)size > CHUNK && off < (uint64_t)size) {
        uint64_t n = (uint64_t)size - off < CHUNK ? (uint64_t)size - off : CHUNK;

        ret = patch_chunk(r, &loc, &fs, off, n, scope, what, err);
        if (ret < 0)
            goto out;
        off += n;
    }
    ret = with_digest(&put, loc, digest, err);
    if (ret < 0)
        goto out;
    memset(&req, 0, sizeof(req));
    req.method = "PUT";
    req.url = put;
    req.headers = octet;
    if (off < (uint64_t)size) {
        /* the whole (small) blob rides on the closing PUT: one request */
        if (source_at(&fs, 0, (uint64_t)size) < 0) {
            ret = csi_error_errno(err, errno, "seek %s", path);
            goto out;
        }
        req.source = read_file;
        req.source_rewind = rewind_file;
        req.source_payload = &fs;
        req.source_sized = true;
        req.source_size = (uint64_t)size;
    } else {
        req.body = "";
    }
    ret = csi_registry_request(&resp, r, &req, scope, err);
    if (ret < 0)
        goto out;
    if (resp.status != 201 && resp.status != 204) {
        ret = csi_registry_status_error(r, &resp, what, err);
        goto out;
    }
    if (how != NULL)
        *how = CSI_GROWING_UPLOADED;
out:
    *sent += fs.sent;
    if (ret < 0 || (how != NULL && *how != CSI_GROWING_UPLOADED))
        cancel(r, loc, scope);
    free(start);
    free(loc);
    free(put);
    free(what);
    csi_http_resp_dispose(&resp);
    return ret;
}

int
csi_registry_upload_growing(cs_registry *r, const char *repo, cs_growing_blob *g,
                            uint64_t *sent_out, enum csi_growing_upload *how, cs_error **err)
{
    char *scope = NULL;
    uint64_t sent = 0;
    int ret;

    *how = CSI_GROWING_NOT_SENT;
    ret = push_scope(&scope, repo, NULL, err);
    if (ret == 0)
        ret = upload_once(r, repo, NULL, 0, csi_growing_fd(g), csi_growing_path(g), scope, &sent, g,
                          how, err);
    if (ret < 0) {
        *how = CSI_GROWING_NOT_SENT;
        csi_error_wrap(err, "upload to %s/%s while compressing", r->domain, repo);
    }
    if (sent_out != NULL)
        *sent_out = sent;
    free(scope);
    return ret;
}

int
cs_registry_upload_blob(cs_registry *r, const char *repo, const char *digest, int64_t size,
                        const char *path, uint64_t *sent_out, cs_error **err)
{
    char *scope = NULL;
    uint64_t sent = 0;
    int fd, tries, ret;

    ret = cs_digest_validate(digest, err);
    if (ret < 0)
        return ret;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return csi_error_errno(err, errno, "open %s", path);
    ret = push_scope(&scope, repo, NULL, err);
    /* a dropped connection or a 5xx mid-upload starts a new session: the registry may have
     * lost the old one (it restarted), and the bytes are local */
    for (tries = 0; ret == 0 && tries < 3; tries++) {
        cs_error *e = NULL;

        ret = upload_once(r, repo, digest, size, fd, path, scope, &sent, NULL, NULL, &e);
        if (ret == 0 || ret != CS_ENET || tries == 2) {
            if (ret < 0 && err != NULL) {
                *err = e;
                csi_error_wrap(err, "upload of %.19s to %s/%s", digest, r->domain, repo);
            } else {
                cs_error_free(e);
            }
            break;
        }
        csi_log(CS_LOG_INFO, "upload of %s: %s; starting it again", digest, e->message);
        cs_error_free(e);
        ret = 0;
        usleep(500000u << tries);
    }
    if (sent_out != NULL)
        *sent_out = sent;
    close(fd);
    free(scope);
    return ret;
}

int
cs_registry_put_manifest(cs_registry *r, const char *repo, const char *target,
                         const char *media_type, const char *data, size_t len, cs_error **err)
{
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    char *path = NULL, *scope = NULL, *ct = NULL, *what = NULL;
    char digest[CS_DIGEST_STRLEN];
    const char *hdrs[2] = {NULL, NULL};
    const char *got;
    int ret;

    ret = cs_digest_buffer(digest, data, len, err);
    if (ret < 0)
        return ret;
    if (asprintf(&path, "/v2/%s/manifests/%s", repo, target) < 0 ||
        asprintf(&ct, "Content-Type: %s", media_type) < 0 ||
        asprintf(&what, "manifest %s:%s", repo, target) < 0) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = push_scope(&scope, repo, NULL, err);
    if (ret < 0)
        goto out;
    hdrs[0] = ct;
    req.method = "PUT";
    req.url = path;
    req.headers = hdrs;
    req.body = data;
    req.body_len = len;
    ret = csi_registry_request(&resp, r, &req, scope, err);
    if (ret < 0)
        goto out;
    if (resp.status != 201 && resp.status != 200) {
        ret = csi_registry_status_error(r, &resp, what, err);
        goto out;
    }
    /* distribution-spec: the returned digest "MUST be equal to the client provided digest" */
    got = csi_http_header_get(&resp, "docker-content-digest");
    if (got != NULL && strncmp(got, "sha256:", 7) == 0 && strcmp(got, digest) != 0)
        ret = csi_error_set(err, CS_EDIGEST, "%s on %s: registry stored %.80s, we sent %s", what,
                            r->domain, got, digest);
out:
    free(path);
    free(scope);
    free(ct);
    free(what);
    csi_http_resp_dispose(&resp);
    return ret;
}
