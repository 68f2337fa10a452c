/* HTTP over libcurl; see http.h for the policy. */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "error_int.h"
#include "http.h"
#include "log_int.h"

#define DEFAULT_MAX_BODY (1024u * 1024)
#define ERROR_BODY_MAX (64u * 1024)
#define MAX_HEADERS 256

struct csi_http {
    CURL *curl; /* one easy handle: libcurl keeps its connections alive across requests */
    csi_http_opts opts;
    char *ca_file, *client_cert, *client_key, *unix_socket;
};

/* State of one transfer, shared with the curl callbacks. */
typedef struct xfer {
    const csi_http_req *req;
    csi_http_resp *resp;
    CURL *curl;
    cs_error *sink_err; /* sticky: a callback cannot return a cs_error */
    int sink_ret;
    bool sunk;
    bool sourced;
        /* the body source was read from: the request cannot be repeated */ /* bytes went to the
                                                                               sink: the request
                                                                               cannot be repeated
                                                                               blindly */
} xfer;

static int global_ready;

int
csi_http_new(csi_http **out, const csi_http_opts *opts, cs_error **err)
{
    csi_http *h;

    if (!global_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return csi_error_set(err, CS_ERROR, "cannot initialise libcurl");
        global_ready = 1;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        return csi_error_oom(err);
    if (opts != NULL)
        h->opts = *opts;
    else
        h->opts.max_retries = -1;
    if (h->opts.max_retries < 0)
        h->opts.max_retries = 4;
    if (h->opts.max_retry_wait_ms <= 0)
        h->opts.max_retry_wait_ms = 30000;
        /* keep our own copies: options outlive the caller's strings */
#define DUP(f)                                                                                     \
    if (h->opts.f != NULL) {                                                                       \
        h->f = strdup(h->opts.f);                                                                  \
        if (h->f == NULL)                                                                          \
            goto oom;                                                                              \
        h->opts.f = h->f;                                                                          \
    }
    DUP(ca_file)
    DUP(client_cert)
    DUP(client_key)
    DUP(unix_socket)
#undef DUP
    h->curl = curl_easy_init();
    if (h->curl == NULL)
        goto oom;
    *out = h;
    return 0;
oom:
    csi_http_free(h);
    return csi_error_oom(err);
}

void
csi_http_free(csi_http *h)
{
    if (h == NULL)
        return;
    if (h->curl != NULL)
        curl_easy_cleanup(h->curl);
    free(h->ca_file);
    free(h->client_cert);
    free(h->client_key);
    free(h->unix_socket);
    free(h);
}

static void
headers_clear(csi_http_resp *resp)
{
    size_t i;

    for (i = 0; i < resp->nheaders; i++) {
        free(resp->headers[i].name);
        free(resp->headers[i].value);
    }
    free(resp->headers);
    resp->headers = NULL;
    resp->nheaders = 0;
}

void
csi_http_resp_dispose(csi_http_resp *resp)
{
    if (resp == NULL)
        return;
    headers_clear(resp);
    cs_buf_dispose(&resp->body);
    free(resp->url);
    memset(resp, 0, sizeof(*resp));
}

const char *
csi_http_header_get(const csi_http_resp *resp, const char *name)
{
    size_t i;

    for (i = 0; i < resp->nheaders; i++) {
        if (strcasecmp(resp->headers[i].name, name) == 0)
            return resp->headers[i].value;
    }
    return NULL;
}

int
csi_http_header_join(cs_buf *out, const csi_http_resp *resp, const char *name, cs_error **err)
{
    size_t i;
    int ret;

    for (i = 0; i < resp->nheaders; i++) {
        if (strcasecmp(resp->headers[i].name, name) != 0)
            continue;
        ret = cs_buf_printf(out, err, "%s%s", out->len ? ", " : "", resp->headers[i].value);
        if (ret < 0)
            return ret;
    }
    if (out->ptr == NULL)
        return cs_buf_puts(out, "", err);
    return 0;
}

static size_t
header_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    xfer *x = userp;
    csi_http_resp *resp = x->resp;
    size_t len = size * nmemb, n = len, nl;
    const char *colon, *v;
    csi_http_header *hs;

    /* A new status line starts a new response (redirect, 100-continue): keep only the
     * final response's headers. */
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        headers_clear(resp);
        return len;
    }
    while (n > 0 && (data[n - 1] == '\r' || data[n - 1] == '\n'))
        n--;
    colon = memchr(data, ':', n);
    if (colon == NULL || resp->nheaders >= MAX_HEADERS)
        return len;
    nl = (size_t)(colon - data);
    v = colon + 1;
    while (v < data + n && (*v == ' ' || *v == '\t'))
        v++;
    hs = realloc(resp->headers, (resp->nheaders + 1) * sizeof(*hs));
    if (hs == NULL)
        return 0;
    resp->headers = hs;
    hs[resp->nheaders].name = strndup(data, nl);
    hs[resp->nheaders].value = strndup(v, (size_t)(data + n - v));
    if (hs[resp->nheaders].name == NULL || hs[resp->nheaders].value == NULL) {
        free(hs[resp->nheaders].name);
        free(hs[resp->nheaders].value);
        return 0;
    }
    for (char *c = hs[resp->nheaders].name; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    resp->nheaders++;
    return len;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    xfer *x = userp;
    size_t len = size * nmemb;
    long status = 0;

    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
    x->resp->bytes_received += len;
    if (x->req->sink != NULL && status >= 200 && status < 300) {
        if (!x->sunk && x->req->begin != NULL) {
            /* headers are complete once the body starts: let the caller check them */
            x->resp->status = status;
            x->sink_ret = x->req->begin(x->req->sink_payload, x->resp, &x->sink_err);
            if (x->sink_ret < 0)
                return 0;
        }
        x->sunk = true;
        x->sink_ret = x->req->sink(x->req->sink_payload, data, len, &x->sink_err);
        return x->sink_ret < 0 ? 0 : len;
    }
    if (x->req->sink != NULL || status < 200 || status >= 300) {
        /* error bodies are diagnostics: keep the start, drop the rest quietly */
        size_t room = x->resp->body.len < ERROR_BODY_MAX ? ERROR_BODY_MAX - x->resp->body.len : 0;

        if (room > 0)
            cs_buf_append(&x->resp->body, data, len < room ? len : room, NULL);
        return len;
    }
    x->sink_ret = cs_buf_append(&x->resp->body, data, len, &x->sink_err);
    return x->sink_ret < 0 ? 0 : len;
}

static size_t
read_cb(char *buf, size_t size, size_t nmemb, void *userp)
{
    xfer *x = userp;
    long n;

    x->sourced = true;
    n = x->req->source(x->req->source_payload, buf, size * nmemb, &x->sink_err);
    if (n < 0) {
        x->sink_ret = (int)n;
        return CURL_READFUNC_ABORT;
    }
    return (size_t)n;
}

static bool
status_retryable(long status)
{
    return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
           status == 504;
}

static bool
curl_retryable(CURLcode rc)
{
    switch (rc) {
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

long
csi_http_retry_after_ms(const char *value, long now)
{
    char *end;
    long secs;
    time_t when;

    if (value == NULL || *value == '\0')
        return -1;
    if (isdigit((unsigned char)value[0])) {
        secs = strtol(value, &end, 10);
        if (*end != '\0' && !isspace((unsigned char)*end))
            return -1;
        return secs > 86400 ? 86400000 : secs * 1000;
    }
    when = curl_getdate(value, NULL);
    if (when < 0)
        return -1;
    return when <= now ? 0 : (long)(when - now) * 1000;
}

bool
csi_http_url_host(char *out, size_t size, const char *url)
{
    const char *p = strstr(url, "://"), *end;
    size_t n;

    if (p == NULL)
        return false;
    p += 3;
    end = p + strcspn(p, "/?#");
    /* drop userinfo, which we never put in URLs, but a redirect might */
    for (const char *at = p; at < end; at++) {
        if (*at == '@')
            p = at + 1;
    }
    n = (size_t)(end - p);
    if (n == 0 || n >= size)
        return false;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

bool
csi_http_host_is_loopback(const char *host)
{
    char name[256];
    size_t n;
    const char *colon;

    if (host[0] == '[') {
        const char *close = strchr(host, ']');

        return close != NULL && (size_t)(close - host) == 4 && strncmp(host, "[::1]", 5) == 0;
    }
    colon = strchr(host, ':');
    n = colon ? (size_t)(colon - host) : strlen(host);
    if (n >= sizeof(name))
        return false;
    memcpy(name, host, n);
    name[n] = '\0';
    if (strcasecmp(name, "localhost") == 0)
        return true;
    /* 127.0.0.0/8, written as a dotted quad */
    if (strncmp(name, "127.", 4) == 0) {
        int dots = 0;

        for (const char *c = name; *c; c++) {
            if (*c == '.')
                dots++;
            else if (!isdigit((unsigned char)*c))
                return false;
        }
        return dots == 3;
    }
    return false;
}

int
csi_http_query_escape(cs_buf *out, const char *s, cs_error **err)
{
    static const char hex[] = "0123456789ABCDEF";
    int ret = 0;

    for (; *s && ret == 0; s++) {
        unsigned char c = (unsigned char)*s;

        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            ret = cs_buf_append(out, s, 1, err);
        } else {
            char enc[3] = {'%', hex[c >> 4], hex[c & 15]};

            ret = cs_buf_append(out, enc, 3, err);
        }
    }
    return ret;
}

static int
setup(CURL *c, csi_http *h, const csi_http_req *req, xfer *x, struct curl_slist **hdrs_out,
      cs_error **err)
{
    struct curl_slist *hdrs = NULL, *tmp;
    const char *const *hp;

    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "cachesync/" PACKAGE_VERSION);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, req->no_redirect ? 0L : 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    /* blobs are large: fewer, bigger reads and store writes (strace: 16 KiB reads made
     * write, recvfrom and poll a third of a pull's time each) */
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 15000L);
    /* a stalled transfer (under 1 byte/s for 60 s) is a dead one */
    if (!req->no_stall_timeout) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    }
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, h->opts.insecure_tls ? 0L : 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, h->opts.insecure_tls ? 0L : 2L);
    if (h->opts.ca_file != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, h->opts.ca_file);
    if (h->opts.client_cert != NULL) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, h->opts.client_cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, h->opts.client_key);
    }
    if (h->opts.unix_socket != NULL)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, h->opts.unix_socket);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (req->source != NULL) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(c, CURLOPT_READDATA, x);
        if (req->source_sized) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->source_size);
        } else {
            tmp = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
            if (tmp == NULL)
                goto oom;
            hdrs = tmp;
        }
    } else if (strcmp(req->method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
        if (req->body != NULL || strcmp(req->method, "DELETE") != 0) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? req->body : "");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
            /* keep the method on 301/302/303 like the registry spec expects */
            curl_easy_setopt(c, CURLOPT_POSTREDIR, (long)CURL_REDIR_POST_ALL);
        }
    }
    /* no "Expect: 100-continue" round trip before bodies */
    tmp = curl_slist_append(hdrs, "Expect:");
    if (tmp == NULL)
        goto oom;
    hdrs = tmp;
    for (hp = req->headers; hp != NULL && *hp != NULL; hp++) {
        tmp = curl_slist_append(hdrs, *hp);
        if (tmp == NULL)
            goto oom;
        hdrs = tmp;
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    *hdrs_out = hdrs;
    return 0;
oom:
    curl_slist_free_all(hdrs);
    return csi_error_oom(err);
}

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

int
csi_http_do(csi_http_resp *resp, csi_http *h, const csi_http_req *req, cs_error **err)
{
    char errbuf[CURL_ERROR_SIZE], host[256];
    struct curl_slist *hdrs = NULL;
    long backoff_ms = 500, wait_ms;
    int attempt, ret = 0;
    CURLcode rc;

    for (attempt = 0;; attempt++) {
        xfer x = {req, resp, h->curl, NULL, 0, false, false};
        char *eff = NULL;

        csi_http_resp_dispose(resp);
        cs_buf_init(&resp->body, req->max_body ? req->max_body : DEFAULT_MAX_BODY);
        ret = setup(h->curl, h, req, &x, &hdrs, err);
        if (ret < 0)
            return ret;
        errbuf[0] = '\0';
        curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, errbuf);
        csi_log(CS_LOG_DEBUG, "> %s %s", req->method, req->url);
        rc = curl_easy_perform(h->curl);
        curl_slist_free_all(hdrs);
        hdrs = NULL;
        curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &resp->status);
        if (curl_easy_getinfo(h->curl, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff)
            resp->url = strdup(eff);
        if (x.sink_err != NULL || x.sink_ret < 0) {
            /* the sink (or the body cap) stopped the transfer: its error is the story */
            if (err != NULL)
                *err = x.sink_err;
            else
                cs_error_free(x.sink_err);
            return x.sink_ret < 0 ? x.sink_ret : CS_ERROR;
        }
        if (rc != CURLE_OK) {
            if (!csi_http_url_host(host, sizeof(host), req->url))
                snprintf(host, sizeof(host), "%s", "server");
            if (!req->no_retry && !x.sunk && !x.sourced && curl_retryable(rc) &&
                attempt < h->opts.max_retries) {
                csi_log(CS_LOG_INFO, "%s %s: %s; retrying in %ld ms", req->method, host,
                        errbuf[0] ? errbuf : curl_easy_strerror(rc), backoff_ms);
                sleep_ms(backoff_ms);
                backoff_ms *= 2;
                continue;
            }
            resp->transport_error = (int)rc;
            resp->tls_handshake_failed = rc == CURLE_SSL_CONNECT_ERROR;
            resp->tls_untrusted =
                rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE;
            return csi_error_set(err, CS_ENET, "%s %s: %s", req->method,
                                 h->opts.unix_socket ? h->opts.unix_socket : host,
                                 errbuf[0] ? errbuf : curl_easy_strerror(rc));
        }
        csi_log(CS_LOG_DEBUG, "< %ld %s (%llu bytes)", resp->status, req->url,
                (unsigned long long)resp->bytes_received);
        if (!req->no_retry && !x.sunk && !x.sourced && status_retryable(resp->status) &&
            attempt < h->opts.max_retries) {
            wait_ms =
                csi_http_retry_after_ms(csi_http_header_get(resp, "retry-after"), (long)time(NULL));
            if (wait_ms < 0)
                wait_ms = backoff_ms;
            if (wait_ms > h->opts.max_retry_wait_ms)
                wait_ms = h->opts.max_retry_wait_ms;
            csi_log(CS_LOG_INFO, "%s %s: HTTP %ld; retrying in %ld ms", req->method, req->url,
                    resp->status, wait_ms);
            sleep_ms(wait_ms);
            backoff_ms *= 2;
            continue;
        }
        return 0;
    }
}

/* ---- many transfers at once over one multi handle ----------------------------------------- */

typedef struct slot {
    CURL *curl;
    xfer x;
    struct curl_slist *hdrs;
    csi_http_item *item;
    char errbuf[CURL_ERROR_SIZE];
} slot;

static long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The outcome of a finished transfer into ITEM: status, URL, and a transport or sink error. */
static void
slot_finish(slot *sl, CURLcode rc)
{
    csi_http_item *it = sl->item;
    char host[256], *eff = NULL;

    curl_easy_getinfo(sl->curl, CURLINFO_RESPONSE_CODE, &it->resp.status);
    if (curl_easy_getinfo(sl->curl, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff) {
        free(it->resp.url);
        it->resp.url = strdup(eff);
    }
    curl_slist_free_all(sl->hdrs);
    sl->hdrs = NULL;
    it->result = 0;
    it->sunk = sl->x.sunk;
    if (sl->x.sink_err != NULL || sl->x.sink_ret < 0) {
        it->result = sl->x.sink_ret < 0 ? sl->x.sink_ret : CS_ERROR;
        it->error = sl->x.sink_err;
    } else if (rc != CURLE_OK) {
        if (!csi_http_url_host(host, sizeof(host), it->req.url))
            snprintf(host, sizeof(host), "%s", "server");
        it->resp.transport_error = (int)rc;
        it->resp.tls_handshake_failed = rc == CURLE_SSL_CONNECT_ERROR;
        it->resp.tls_untrusted =
            rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE;
        it->result = csi_error_set(&it->error, CS_ENET, "%s %s: %s", it->req.method, host,
                                   sl->errbuf[0] ? sl->errbuf : curl_easy_strerror(rc));
    }
    sl->item = NULL;
}

int
csi_http_run(csi_http *h, csi_http_item **items, size_t n, int parallel, csi_http_done_fn done,
              void *payload, cs_error **err)
{
    CURLM *m = NULL;
    slot *slots = NULL;
    size_t i, finished = 0;
    int running = 0, nslots, ret = 0;

    if (n == 0)
        return 0;
    nslots = parallel < 1 ? 1 : parallel;
    if ((size_t)nslots > n)
        nslots = (int)n;
    m = curl_multi_init();
    slots = calloc((size_t)nslots, sizeof(*slots));
    if (m == NULL || slots == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    for (i = 0; i < n; i++) {
        items[i]->state = CSI_HTTP_ITEM_PENDING;
        items[i]->ready_at = 0;
    }
    while (finished < n) {
        long now = now_ms(), wait = 1000;
        CURLMsg *msg;
        int left;

        /* start what may start */
        for (i = 0; i < n && running < nslots; i++) {
            csi_http_item *it = items[i];
            slot *sl = NULL;

            if (it->state != CSI_HTTP_ITEM_PENDING || it->ready_at > now)
                continue;
            for (int k = 0; k < nslots; k++) {
                if (slots[k].item == NULL) {
                    sl = &slots[k];
                    break;
                }
            }
            if (sl->curl == NULL) {
                sl->curl = curl_easy_init();
                if (sl->curl == NULL) {
                    ret = csi_error_oom(err);
                    goto out;
                }
            }
            csi_http_resp_dispose(&it->resp);
            cs_buf_init(&it->resp.body, it->req.max_body ? it->req.max_body : DEFAULT_MAX_BODY);
            cs_error_free(it->error);
            it->error = NULL;
            it->result = 0;
            memset(&sl->x, 0, sizeof(sl->x));
            sl->x.req = &it->req;
            sl->x.resp = &it->resp;
            sl->x.curl = sl->curl;
            ret = setup(sl->curl, h, &it->req, &sl->x, &sl->hdrs, err);
            if (ret < 0)
                goto out;
            sl->errbuf[0] = '\0';
            curl_easy_setopt(sl->curl, CURLOPT_ERRORBUFFER, sl->errbuf);
            curl_easy_setopt(sl->curl, CURLOPT_PRIVATE, sl);
            csi_log(CS_LOG_DEBUG, "> %s %s", it->req.method, it->req.url);
            if (curl_multi_add_handle(m, sl->curl) != CURLM_OK) {
                ret = csi_error_set(err, CS_ERROR, "cannot start a transfer");
                goto out;
            }
            sl->item = it;
            it->state = CSI_HTTP_ITEM_RUNNING;
            running++;
        }
        if (curl_multi_perform(m, &left) != CURLM_OK) {
            ret = csi_error_set(err, CS_ERROR, "transfer engine failed");
            goto out;
        }
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            slot *sl = NULL;
            csi_http_item *it;
            int r;

            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&sl);
            curl_multi_remove_handle(m, msg->easy_handle);
            it = sl->item;
            slot_finish(sl, msg->data.result);
            running--;
            csi_log(CS_LOG_DEBUG, "< %ld %s (%llu bytes)", it->resp.status, it->req.url,
                    (unsigned long long)it->resp.bytes_received);
            it->retry_in_ms = 0;
            r = done(payload, it, err);
            if (r < 0) {
                ret = r;
                goto out;
            }
            if (r == 1) {
                it->state = CSI_HTTP_ITEM_PENDING;
                it->ready_at = now_ms() + it->retry_in_ms;
            } else {
                it->state = CSI_HTTP_ITEM_DONE;
                finished++;
            }
        }
        if (finished == n)
            break;
        now = now_ms();
        for (i = 0; i < n; i++) {
            if (items[i]->state == CSI_HTTP_ITEM_PENDING) {
                long d = items[i]->ready_at - now;

                if (d < wait)
                    wait = d < 0 ? 0 : d;
            }
        }
        if (running > 0)
            curl_multi_poll(m, NULL, 0, (int)wait, NULL);
        else if (wait > 0)
            sleep_ms(wait);
    }
out:
    for (int k = 0; slots != NULL && k < nslots; k++) {
        if (slots[k].curl == NULL)
            continue;
        if (slots[k].item != NULL) {
            curl_multi_remove_handle(m, slots[k].curl);
            cs_error_free(slots[k].x.sink_err);
            slots[k].item->state = CSI_HTTP_ITEM_DONE;
        }
        curl_slist_free_all(slots[k].hdrs);
        curl_easy_cleanup(slots[k].curl);
    }
    free(slots);
    if (m != NULL)
        curl_multi_cleanup(m);
    return ret;
}

void
csi_http_item_dispose(csi_http_item *it)
{
    if (it == NULL)
        return;
    csi_http_resp_dispose(&it->resp);
    cs_error_free(it->error);
    it->error = NULL;
}
