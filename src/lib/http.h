/* Internal HTTP client over libcurl: TLS verification on by default, redirects followed
 * without sending Authorization to another host (libcurl >= 7.58 drops custom Authorization
 * headers on a cross-host redirect; we never set CURLOPT_UNRESTRICTED_AUTH), capped bodies,
 * retries with backoff on 408/429/5xx honouring Retry-After, connection reuse.
 * Knows nothing of registries or image formats. */
#ifndef CS_LIB_HTTP_H
#define CS_LIB_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cachesync/buf.h>
#include <cachesync/error.h>

typedef struct csi_http csi_http;

typedef struct csi_http_opts {
    const char *ca_file;     /* extra CA bundle; NULL = the system's */
    const char *client_cert; /* PEM client certificate for mutual TLS, or NULL */
    const char *client_key;
    bool insecure_tls;       /* skip certificate verification (--insecure-registry) */
    const char *unix_socket; /* talk HTTP over this unix socket (Engine API) */
    int max_retries;         /* retries of 408/429/5xx and dropped connections; -1 = default 4 */
    long max_retry_wait_ms;  /* cap on one wait (Retry-After included); 0 = default 30 s */
} csi_http_opts;

/* Supplies a streamed request body: fills BUF with up to LEN bytes and returns how many,
 * 0 at the end, or < 0 (setting *err) to abort. */
typedef long (*csi_http_source_fn)(void *payload, char *buf, size_t len, cs_error **err);

struct csi_http_resp;

/* Called once before the first byte of a 2xx body reaches the sink, with the response's
 * status and headers complete: return < 0 (setting *err) to refuse it. */
typedef int (*csi_http_begin_fn)(void *payload, const struct csi_http_resp *resp, cs_error **err);

/* Receives a 2xx body as it streams; return < 0 (and set *err) to abort the transfer. */
typedef int (*csi_http_sink_fn)(void *payload, const char *data, size_t len, cs_error **err);

typedef struct csi_http_req {
    const char *method; /* GET, HEAD, PUT, POST, PATCH, DELETE */
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
    const char *body;           /* request body, or NULL */
    size_t body_len;
    csi_http_source_fn source; /* or a streamed body (never retried) */
    void *source_payload;
    bool source_sized;         /* its length is known: sent with Content-Length, not chunked */
    uint64_t source_size;
    int (*source_rewind)(void *payload); /* start the body again (for a resend); may be NULL */
    size_t max_body;       /* cap on a collected body; 0 = 1 MiB */
    csi_http_sink_fn sink; /* stream 2xx bodies here instead of collecting them */
    csi_http_begin_fn begin; /* optional check before a sink gets its first byte */
    void *sink_payload;
    bool no_redirect; /* do not follow redirects */
    bool no_retry;    /* the caller retries itself */
    bool no_stall_timeout; /* the peer may go silent for long (a daemon unpacking a load) */
} csi_http_req;

typedef struct csi_http_header {
    char *name; /* lower case */
    char *value;
} csi_http_header;

typedef struct csi_http_resp {
    long status;
    cs_buf body;              /* collected body (error bodies are kept even with a sink) */
    csi_http_header *headers; /* of the final response, after redirects */
    size_t nheaders;
    char *url;                 /* the effective URL after redirects */
    uint64_t bytes_received;   /* body bytes of the final response */
    int transport_error;       /* the CURLcode when csi_http_do failed with CS_ENET, else 0 */
    bool tls_handshake_failed; /* the TLS handshake itself failed (peer may speak plain HTTP) */
    bool tls_untrusted;        /* the peer's certificate did not verify */
} csi_http_resp;

int csi_http_new(csi_http **out, const csi_http_opts *opts, cs_error **err);
void csi_http_free(csi_http *http);

/* Perform REQ. Any HTTP status is a success here (resp->status tells); transport failures
 * (connect, TLS, reset, timeout) are CS_ENET, a sink's failure is its own error. RESP must be
 * zeroed or disposed before the call. */
int csi_http_do(csi_http_resp *resp, csi_http *http, const csi_http_req *req, cs_error **err);
void csi_http_resp_dispose(csi_http_resp *resp);

/* ---- many transfers at once (libcurl multi: one connection pool, parallel streams) ------ */

enum { CSI_HTTP_ITEM_PENDING, CSI_HTTP_ITEM_RUNNING, CSI_HTTP_ITEM_DONE };

typedef struct csi_http_item {
    csi_http_req req;   /* set by the caller; the done callback may change it to run again */
    csi_http_resp resp; /* the outcome of the last try */
    int result;         /* 0, or the code of a transport or sink failure of the last try */
    cs_error *error;    /* its message; a done callback may take it (set to NULL) */
    bool sunk;          /* the last try delivered body bytes to the sink */
    long retry_in_ms;   /* set by a done callback that asks to run again */
    void *user;
    /* private to csi_http_run */
    int state;
    long ready_at;
} csi_http_item;

/* After each try of ITEM: return 0 when it is finished, 1 to run it again (after
 * item->retry_in_ms), or < 0 (setting *err) to stop everything. */
typedef int (*csi_http_done_fn)(void *payload, csi_http_item *item, cs_error **err);

/* Run N items, at most PARALLEL at a time, calling DONE after each try. Returns the first
 * error a DONE callback reported (remaining transfers are cancelled), else 0. No automatic
 * retries here: the callback decides. */
int csi_http_run(csi_http *h, csi_http_item **items, size_t n, int parallel, csi_http_done_fn done,
                 void *payload, cs_error **err);
void csi_http_item_dispose(csi_http_item *it);

/* The first header NAME (case-insensitive) of the final response, or NULL. */
const char *csi_http_header_get(const csi_http_resp *resp, const char *name);
/* All NAME headers joined by ", " into OUT (empty when none). */
int csi_http_header_join(cs_buf *out, const csi_http_resp *resp, const char *name, cs_error **err);

/* Milliseconds to wait from a Retry-After value (seconds or an HTTP date); -1 if unusable. */
long csi_http_retry_after_ms(const char *value, long now);

/* The host[:port] part of an absolute URL into OUT (size SIZE); false if none. */
bool csi_http_url_host(char *out, size_t size, const char *url);

/* Is HOST (as in a reference: "127.0.0.1:5000", "[::1]:5000", "localhost") on loopback? */
bool csi_http_host_is_loopback(const char *host);

/* Percent-encode S for a query parameter, appended to OUT. */
int csi_http_query_escape(cs_buf *out, const char *s, cs_error **err);

#endif
