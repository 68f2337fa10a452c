/* Many blobs at once from one registry: parallel streams over libcurl multi, each resumed
 * with Range after a dropped connection (distribution-spec "Pulling blobs": registries
 * SHOULD support Range; a 206 must start where we asked), verified by its sink. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error_int.h"
#include "log_int.h"
#include "registry_int.h"

/* Tries per blob before giving up. Each try that made progress resumes where it stopped. */
#define MAX_TRIES 8
#define MAX_AUTH_RETRIES 2
#define BACKOFF_START_MS 250
#define BACKOFF_MAX_MS 8000
/* A registry's Retry-After is obeyed up to this (a 429 asking for a day must not hang a CI
 * job; the request is simply retried, and counted, after this long). */
#define RETRY_AFTER_MAX_MS 30000

typedef struct job {
    cs_registry *r;
    const char *repo;
    const char *scope;
    cs_fetch_progress_fn progress;
    void *payload;
} job;

typedef struct blob_item {
    csi_http_item item;
    cs_blob_fetch *blob;
    job *job;
    char *url;
    char *authz;   /* "Authorization: ..." or NULL */
    char range[64];
    const char *headers[3];
    int auth_retries;
    long backoff_ms;
    uint64_t offset_at_start; /* to tell whether the last try made progress */
    bool resumed;             /* started from bytes an earlier run left */
} blob_item;

static int
sink_write(void *payload, const char *data, size_t len, cs_error **err)
{
    blob_item *b = payload;
    int ret;

    if ((uint64_t)len > (uint64_t)b->blob->size - b->blob->sink.offset)
        return csi_error_set(err, CS_EDIGEST, "blob %s from %s: more than its %" PRId64 " bytes",
                             b->blob->digest, b->job->r->domain, b->blob->size);
    ret = b->blob->sink.write(b->blob->sink.payload, data, len, err);
    if (ret < 0)
        return ret;
    b->blob->sink.offset += len;
    b->blob->bytes_received += len;
    if (b->job->progress != NULL)
        b->job->progress(b->job->payload, b->blob, len, false);
    return 0;
}

/* The body about to come must be the rest of the blob from byte FROM: a Content-Length (or
 * a Content-Range total) that disagrees with the descriptor's size cannot be its bytes, and
 * says so before any of them is stored (distribution-spec: the descriptor's size is part of
 * what the content must match). Without a Content-Length (chunked) the sink counts. */
static int
check_length(blob_item *b, const csi_http_resp *resp, uint64_t from, cs_error **err)
{
    const char *cl = csi_http_header_get(resp, "content-length");
    const char *cr = csi_http_header_get(resp, "content-range");
    uint64_t want = (uint64_t)b->blob->size - from;
    unsigned long long n, a, z, total;
    char *end;

    if (cr != NULL && sscanf(cr, "bytes %llu-%llu/%llu", &a, &z, &total) == 3 &&
        total != (unsigned long long)b->blob->size)
        return csi_error_set(err, CS_EDIGEST,
                             "blob %s from %s: the registry says it has %llu bytes, the "
                             "manifest says %" PRId64,
                             b->blob->digest, b->job->r->domain, total, b->blob->size);
    if (cl == NULL || csi_http_header_get(resp, "content-encoding") != NULL)
        return 0;
    errno = 0;
    n = strtoull(cl, &end, 10);
    if (errno != 0 || end == cl || (*end != '\0' && *end != ' ' && *end != '\t'))
        return 0; /* curl judges the framing */
    if (n != want)
        return csi_error_set(err, CS_EDIGEST,
                             "blob %s from %s: the registry sends %llu bytes from byte %" PRIu64
                             " (Content-Length), but the manifest says the blob has %" PRId64,
                             b->blob->digest, b->job->r->domain, n, from, b->blob->size);
    return 0;
}

/* A 206 must cover exactly from our offset; a 200 means the server sent it all again. */
static int
sink_begin(void *payload, const csi_http_resp *resp, cs_error **err)
{
    blob_item *b = payload;
    const char *cr;
    unsigned long long first = 0;
    int ret;

    if (resp->status == 206) {
        cr = csi_http_header_get(resp, "content-range");
        if (cr == NULL || sscanf(cr, "bytes %llu-", &first) != 1 ||
            first != b->blob->sink.offset)
            return csi_error_set(err, CS_EPROTO,
                                 "blob %s from %s: partial content does not start at byte %" PRIu64,
                                 b->blob->digest, b->job->r->domain, b->blob->sink.offset);
        return check_length(b, resp, b->blob->sink.offset, err);
    }
    ret = check_length(b, resp, 0, err);
    if (ret < 0)
        return ret;
    if (b->blob->sink.offset > 0) {
        csi_log(CS_LOG_INFO, "blob %s: server ignored Range, fetching it whole",
                b->blob->digest);
        ret = b->blob->sink.restart(b->blob->sink.payload, err);
        if (ret < 0)
            return ret;
        b->blob->sink.offset = 0;
    }
    return 0;
}

/* Set up the next try: fresh Authorization and a Range from what the sink holds. */
static int
prepare(blob_item *b, cs_error **err)
{
    size_t n = 0;
    int ret;

    csi_auth_free_secret(b->authz);
    b->authz = NULL;
    ret = csi_auth_header(&b->authz, b->job->r->auth, b->job->r->http, b->job->scope, err);
    if (ret < 0)
        return ret;
    if (b->authz != NULL)
        b->headers[n++] = b->authz;
    if (b->blob->sink.offset > 0) {
        snprintf(b->range, sizeof(b->range), "Range: bytes=%" PRIu64 "-", b->blob->sink.offset);
        b->headers[n++] = b->range;
    }
    b->headers[n] = NULL;
    b->item.req.headers = b->headers;
    b->offset_at_start = b->blob->sink.offset;
    b->blob->tries++;
    return 0;
}

static int
retry_later(blob_item *b, long wait_ms, const char *why, cs_error **err)
{
    /* a try that moved forward earns a fresh set of tries: only stalls count */
    if (b->blob->sink.offset > b->offset_at_start)
        b->blob->tries = 0;
    if (b->blob->tries >= MAX_TRIES)
        return csi_error_set(err, CS_ENET, "blob %s from %s: %s (gave up after %d tries)",
                             b->blob->digest, b->job->r->domain, why, b->blob->tries);
    if (wait_ms < 0) {
        wait_ms = b->backoff_ms;
        b->backoff_ms = b->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b->backoff_ms * 2;
    } else if (wait_ms > RETRY_AFTER_MAX_MS) {
        wait_ms = RETRY_AFTER_MAX_MS;
    }
    csi_log(CS_LOG_INFO, "blob %s: %s; resuming at byte %" PRIu64 " in %ld ms", b->blob->digest,
            why, b->blob->sink.offset, wait_ms);
    b->item.retry_in_ms = wait_ms;
    return prepare(b, err) < 0 ? -1 : 1;
}

/* The sink holds all SIZE bytes already (an earlier run was stopped between the last byte
 * and the commit): verify and commit them without asking the registry, whose answer to
 * Range: bytes=SIZE- can only be a 416. Returns 1 when the blob still has to be fetched (its
 * bytes did not verify; the sink starts over). */
static int
finish_held(blob_item *b, cs_error **err)
{
    cs_error *e = NULL;
    int ret;

    ret = b->blob->sink.finish(b->blob->sink.payload, &e);
    if (ret == 0) {
        if (b->job->progress != NULL)
            b->job->progress(b->job->payload, b->blob, 0, true);
        return 0;
    }
    if (ret != CS_EDIGEST) {
        *err = e;
        return csi_error_wrap(err, "%s/%s", b->job->r->domain, b->job->repo);
    }
    csi_log(CS_LOG_INFO, "blob %s: the bytes an earlier run left did not verify; fetching it whole",
            b->blob->digest);
    cs_error_free(e);
    ret = b->blob->sink.restart(b->blob->sink.payload, err);
    if (ret < 0)
        return ret;
    b->blob->sink.offset = 0;
    b->resumed = false;
    return 1;
}

static int
on_done(void *payload, csi_http_item *it, cs_error **err)
{
    blob_item *b = (blob_item *)it;
    long status = it->resp.status;
    char *what = NULL;
    int ret;

    (void)payload;
    /* A registry's 416 may itself be broken (docker-registry 2.8 keeps the blob's
     * Content-Length on its short error body): the status is what counts. */
    if (it->result == CS_ENET && status == 416) {
        cs_error_free(it->error);
        it->error = NULL;
        it->result = 0;
    }
    /* Every byte arrived but the connection ended badly (a Content-Length larger than the
     * body, a close before the chunked end): verify what we hold before asking again. */
    if (it->result == CS_ENET && b->blob->sink.offset == (uint64_t)b->blob->size) {
        cs_error_free(it->error);
        it->error = NULL;
        it->result = 0;
        status = 200;
    }
    if (it->result < 0) {
        /* a sink's verdict (digest, disk) is final; a broken connection is not */
        if (it->result != CS_ENET) {
            *err = it->error;
            it->error = NULL;
            return it->result;
        }
        ret = retry_later(b, -1, it->error ? it->error->message : "transfer failed", err);
        if (ret < 0 && *err == NULL) {
            *err = it->error;
            it->error = NULL;
        }
        return ret;
    }
    if (status == 200 || status == 206) {
        if (b->blob->sink.offset < (uint64_t)b->blob->size)
            return retry_later(b, -1, "connection closed early", err);
        ret = b->blob->sink.finish(b->blob->sink.payload, err);
        if (ret == CS_EDIGEST && b->resumed) {
            /* the bytes an earlier run left may be the bad ones: fetch it whole, once */
            csi_log(CS_LOG_INFO, "blob %s: resumed data did not verify; fetching it whole",
                    b->blob->digest);
            cs_error_free(*err);
            *err = NULL;
            b->resumed = false;
            b->blob->sink.offset = 0;
            b->item.retry_in_ms = 0;
            return prepare(b, err) < 0 ? -1 : 1;
        }
        if (ret < 0)
            return csi_error_wrap(err, "%s/%s", b->job->r->domain, b->job->repo);
        if (b->job->progress != NULL)
            b->job->progress(b->job->payload, b->blob, 0, true);
        return 0;
    }
    if (status == 401 && b->auth_retries < MAX_AUTH_RETRIES) {
        /* typically a token that expired during a long transfer: renew and resume */
        b->auth_retries++;
        ret = csi_auth_challenge(b->job->r->auth, &it->resp, b->job->scope,
                                 strncmp(b->job->r->base, "https:", 6) == 0, err);
        if (ret < 0)
            return ret;
        b->item.retry_in_ms = 0;
        return prepare(b, err) < 0 ? -1 : 1;
    }
    if (status == 416) {
        /* our Range is past what the server has: our partial data cannot be right */
        ret = b->blob->sink.restart(b->blob->sink.payload, err);
        if (ret < 0)
            return ret;
        b->blob->sink.offset = 0;
        return retry_later(b, 0, "range not satisfiable", err);
    }
    if (status == 408 || status == 429 || status >= 500) {
        char why[64];

        snprintf(why, sizeof(why), "HTTP %ld", status);
        return retry_later(
            b,
            csi_http_retry_after_ms(csi_http_header_get(&it->resp, "retry-after"),
                                    (long)time(NULL)),
            why, err);
    }
    if (asprintf(&what, "blob %s in %s", b->blob->digest, b->job->repo) < 0)
        return csi_error_oom(err);
    ret = csi_registry_status_error(b->job->r, &it->resp, what, err);
    free(what);
    return ret;
}

int
cs_registry_fetch_blobs(cs_registry *r, const char *repo, cs_blob_fetch *blobs, size_t n,
                        int parallel, cs_fetch_progress_fn progress, void *payload,
                        cs_error **err)
{
    blob_item *items = NULL;
    csi_http_item **ptrs = NULL;
    char *scope = NULL;
    job j = {r, repo, NULL, progress, payload};
    size_t i, nfetch = 0;
    int ret;

    if (n == 0)
        return 0;
    ret = cs_registry_ping(r, err);
    if (ret < 0)
        return ret;
    ret = csi_registry_pull_scope(&scope, repo, err);
    if (ret < 0)
        return ret;
    j.scope = scope;
    items = calloc(n, sizeof(*items));
    ptrs = calloc(n, sizeof(*ptrs));
    if (items == NULL || ptrs == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    for (i = 0; i < n; i++) {
        blob_item *b = &items[i];

        ret = cs_digest_validate(blobs[i].digest, err);
        if (ret < 0)
            goto out;
        b->blob = &blobs[i];
        b->job = &j;
        b->resumed = blobs[i].sink.offset > 0;
        b->backoff_ms = BACKOFF_START_MS;
        if (asprintf(&b->url, "%s/v2/%s/blobs/%s", r->base, repo, blobs[i].digest) < 0) {
            b->url = NULL;
            ret = csi_error_oom(err);
            goto out;
        }
        b->item.req.method = "GET";
        b->item.req.url = b->url;
        b->item.req.sink = sink_write;
        b->item.req.begin = sink_begin;
        b->item.req.sink_payload = b;
        b->item.req.max_body = 64 * 1024; /* error bodies only: blob bytes go to the sink */
        if (blobs[i].size >= 0 && blobs[i].sink.offset == (uint64_t)blobs[i].size) {
            ret = finish_held(b, err);
            if (ret < 0)
                goto out;
            if (ret == 0)
                continue;
        }
        ret = prepare(b, err);
        if (ret < 0)
            goto out;
        ptrs[nfetch++] = &b->item;
    }
    ret = csi_http_run(r->http, ptrs, nfetch, parallel, on_done, &j, err);
out:
    for (i = 0; items != NULL && i < n; i++) {
        csi_http_item_dispose(&items[i].item);
        free(items[i].url);
        csi_auth_free_secret(items[i].authz);
    }
    free(items);
    free(ptrs);
    free(scope);
    return ret;
}
