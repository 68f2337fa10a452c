/* Docker Engine API client (moby api/swagger.yaml; facts in
 * docs/reference/registry-and-daemon-protocols.md section 5): opening, version negotiation,
 * request plumbing, info. The image endpoints are in daemon_images.c. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cachesync/daemon.h>
#include "daemon_int.h"
#include "error_int.h"
#include "http.h"
#include "json.h"
#include "log_int.h"

/* The newest API version whose answers we know. Not 1.41 (Docker 20.10): Docker 29.0-29.2
 * refuse anything below 1.44. The endpoints and fields used here are unchanged up to 1.52
 * (Docker 29.0); a newer daemon is spoken to in 1.52, which it still accepts. */
#define API_MAX_MAJOR 1
#define API_MAX_MINOR 52
/* The oldest: quiet loads and JSON progress need 1.23, and 1.24 (Docker 1.12) is the floor
 * every daemon since 25.0 accepts (DOCKER_MIN_API_VERSION cannot go lower). */
#define API_MIN_MAJOR 1
#define API_MIN_MINOR 24

#define DOC_MAX (8u * 1024 * 1024) /* /version, /info, one image inspect */

#define SUN_PATH_SIZE sizeof(((struct sockaddr_un *)NULL)->sun_path)

/* curl needs a host in the URL; over a unix socket any will do (the Go client uses
 * api.moby.localhost), and dockerd ignores it. */
#define URL_BASE "http://localhost"

/* ---- opening ----------------------------------------------------------------------------- */

int
cs_daemon_open(cs_daemon **out, const char *docker_host, cs_error **err)
{
    csi_http_opts hopts = {0};
    const char *host = docker_host, *path;
    cs_daemon *d = NULL;
    int ret;

    if (host == NULL || *host == '\0')
        host = getenv("DOCKER_HOST");
    if (host == NULL || *host == '\0')
        host = CS_DAEMON_DEFAULT_HOST;
    if (strncmp(host, "unix://", 7) != 0) {
        if (strstr(host, "://") != NULL)
            return csi_error_set(err, CS_EUNSUPPORTED,
                                 "Docker host %.200s: only unix:// sockets are supported for "
                                 "now (tcp:// and ssh:// are not); set DOCKER_HOST to "
                                 "unix:///path/to/docker.sock",
                                 host);
        return csi_error_set(err, CS_EINVAL,
                             "Docker host %.200s: not an address; write it as "
                             "unix:///path/to/docker.sock",
                             host);
    }
    path = host + 7;
    if (*path == '\0')
        return csi_error_set(err, CS_EINVAL, "Docker host %s: no socket path", host);
    if (strlen(path) >= SUN_PATH_SIZE)
        return csi_error_set(err, CS_EINVAL,
                             "Docker host %.200s: socket path longer than the %zu bytes a unix "
                             "socket address holds",
                             host, SUN_PATH_SIZE - 1);
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return csi_error_oom(err);
    d->host = strdup(host);
    d->socket_path = strdup(path);
    if (d->host == NULL || d->socket_path == NULL) {
        ret = csi_error_oom(err);
        goto fail;
    }
    hopts.unix_socket = d->socket_path;
    /* A local daemon's 5xx is an answer, not congestion: retrying it only delays the error,
     * and loads (streamed bodies) are never retried anyway. */
    hopts.max_retries = 0;
    ret = csi_http_new(&d->http, &hopts, err);
    if (ret < 0)
        goto fail;
    *out = d;
    return 0;
fail:
    cs_daemon_free(d);
    return ret;
}

static void
info_free(cs_daemon_info *info)
{
    if (info == NULL)
        return;
    free(info->version);
    free(info->api_version);
    free(info->negotiated_api);
    free(info->os);
    free(info->arch);
    free(info->driver);
    free(info);
}

void
cs_daemon_free(cs_daemon *d)
{
    if (d == NULL)
        return;
    csi_http_free(d->http);
    info_free(d->info);
    free(d->host);
    free(d->socket_path);
    free(d);
}

const char *
cs_daemon_host(const cs_daemon *d)
{
    return d->host;
}

/* ---- transport errors -------------------------------------------------------------------- */

/* Why the socket refuses us, from connect(2) itself: libcurl's text for a unix socket talks of
 * "localhost port 80", which misleads. 0 when a connection works right now. */
static int
probe_errno(const cs_daemon *d)
{
    struct sockaddr_un sun = {0};
    int fd, e = 0;

    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", d->socket_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    if (connect(fd, (const struct sockaddr *)&sun, sizeof(sun)) < 0)
        e = errno;
    close(fd);
    return e;
}

/* The transport's reason without the "METHOD /path/to.sock: " prefix http.c puts first. */
static const char *
transport_reason(const cs_daemon *d, const cs_error *cause, const char *method)
{
    const char *m = cause ? cause->message : NULL;
    size_t ml, sl;

    if (m == NULL)
        return "transport error";
    ml = strlen(method);
    sl = strlen(d->socket_path);
    if (strncmp(m, method, ml) == 0 && m[ml] == ' ' &&
        strncmp(m + ml + 1, d->socket_path, sl) == 0 && strncmp(m + ml + 1 + sl, ": ", 2) == 0)
        return m + ml + 1 + sl + 2;
    return m;
}

/* CAUSE is http's CS_ENET for METHOD PATH; replace it with one that says what to do. */
static int
transport_error(cs_daemon *d, cs_error *cause, const char *method, const char *path, cs_error **err)
{
    int e = probe_errno(d), ret;

    if (e == EACCES || e == EPERM)
        ret = csi_error_set(err, CS_ENET,
                            "permission denied on the Docker daemon socket %s: run as root or as "
                            "a member of the docker group",
                            d->host);
    else if (e != 0)
        ret = csi_error_set(err, CS_ENET,
                            "cannot connect to the Docker daemon at %s: is dockerd running? "
                            "(connect: %s)",
                            d->host, strerror(e));
    else
        ret = csi_error_set(err, CS_ENET, "Docker daemon at %s: %s %s: %s", d->host, method, path,
                            transport_reason(d, cause, method));
    cs_error_free(cause);
    return ret;
}

/* ---- versions ---------------------------------------------------------------------------- */

/* "1.41" -> 1, 41; false unless it is exactly two dot-separated numbers. */
bool
csi_daemon_parse_api_version(const char *s, int *major, int *minor)
{
    char *end;
    long a, b;

    if (s == NULL || *s < '0' || *s > '9')
        return false;
    a = strtol(s, &end, 10);
    if (*end != '.' || end[1] < '0' || end[1] > '9')
        return false;
    b = strtol(end + 1, &end, 10);
    if (*end != '\0' || a > 1000 || b > 1000)
        return false;
    *major = (int)a;
    *minor = (int)b;
    return true;
}

/* Leading "MAJOR.MINOR" of a release version ("20.10.24+dfsg1", "17.03.1-ce"); 0, 0 if none. */
void
csi_daemon_parse_release(const char *s, int *major, int *minor)
{
    char *end;
    long a, b = 0;

    *major = *minor = 0;
    if (s == NULL || *s < '0' || *s > '9')
        return;
    a = strtol(s, &end, 10);
    if (*end == '.' && end[1] >= '0' && end[1] <= '9')
        b = strtol(end + 1, &end, 10);
    if (a > 100000 || b > 100000)
        return;
    *major = (int)a;
    *minor = (int)b;
}

/* GET /_ping (unversioned, as the Go client does) and settle the API version. */
static int
connect_daemon(cs_daemon *d, cs_error **err)
{
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    cs_error *cause = NULL;
    const char *hdr;
    int major, minor, ret;

    if (d->api[0] != '\0')
        return 0;
    req.method = "GET";
    req.url = URL_BASE "/_ping";
    req.max_body = CSI_DAEMON_PING_MAX;
    ret = csi_http_do(&resp, d->http, &req, &cause);
    if (ret < 0) {
        if (resp.transport_error != 0)
            ret = transport_error(d, cause, "GET", "/_ping", err);
        else if (err != NULL)
            *err = cause;
        else
            cs_error_free(cause);
        goto out;
    }
    hdr = csi_http_header_get(&resp, "api-version");
    /* Like the Go client, trust the header whatever the status (a daemon still starting may
     * answer 500 with it); without it only a 200 counts, meaning a daemon older than the
     * header, which speaks the 1.24 fallback at best. */
    if (hdr == NULL && resp.status != 200) {
        ret = csi_error_http(err, CS_EPROTO, resp.status,
                             "%s does not answer like a Docker daemon (GET /_ping: HTTP %ld)",
                             d->host, resp.status);
        goto out;
    }
    if (hdr == NULL) {
        major = API_MIN_MAJOR;
        minor = API_MIN_MINOR;
    } else if (!csi_daemon_parse_api_version(hdr, &major, &minor)) {
        ret = csi_error_set(err, CS_EPROTO, "Docker daemon at %s: unusable Api-Version \"%.40s\"",
                            d->host, hdr);
        goto out;
    }
    if (major < API_MIN_MAJOR || (major == API_MIN_MAJOR && minor < API_MIN_MINOR)) {
        ret = csi_error_set(err, CS_EUNSUPPORTED,
                            "Docker daemon at %s speaks API %d.%d; cachesync needs %d.%d "
                            "(Docker 1.12) or newer",
                            d->host, major, minor, API_MIN_MAJOR, API_MIN_MINOR);
        goto out;
    }
    if (major > API_MAX_MAJOR || (major == API_MAX_MAJOR && minor > API_MAX_MINOR)) {
        major = API_MAX_MAJOR;
        minor = API_MAX_MINOR;
    }
    snprintf(d->api, sizeof(d->api), "%d.%d", major, minor);
    csi_log(CS_LOG_DEBUG, "Docker daemon at %s: API %s (daemon: %s)", d->host, d->api,
            hdr ? hdr : "no Api-Version");
out:
    csi_http_resp_dispose(&resp);
    return ret;
}

/* ---- requests ---------------------------------------------------------------------------- */

int
csi_daemon_call(csi_http_resp *resp, cs_daemon *d, csi_http_req *req, const char *path,
                cs_error **err)
{
    cs_error *cause = NULL;
    char *url = NULL;
    int ret;

    ret = connect_daemon(d, err);
    if (ret < 0)
        return ret;
    if (asprintf(&url, URL_BASE "/v%s%s", d->api, path) < 0)
        return csi_error_oom(err);
    req->url = url;
    ret = csi_http_do(resp, d->http, req, &cause);
    req->url = NULL;
    free(url);
    if (ret < 0 && resp->transport_error != 0)
        return transport_error(d, cause, req->method, path, err);
    if (ret < 0) {
        if (err != NULL)
            *err = cause;
        else
            cs_error_free(cause);
    }
    return ret;
}

char *
csi_daemon_printable(const char *s, size_t max)
{
    size_t n = 0;
    char *out;

    while (n < max && s[n] != '\0')
        n++;
    out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        /* one printable line, whatever the daemon said: no line breaks, no terminal escapes */
        out[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
    return out;
}

char *
csi_daemon_error_text(const char *body, size_t len)
{
    json_t *root = NULL;
    const char *m = NULL;
    char *s = NULL;
    size_t n;

    if (body == NULL || len == 0)
        return NULL;
    if (csi_json_load_object(&root, body, len, 64 * 1024, "error", NULL) == 0)
        m = csi_json_str(root, "message");
    if (m != NULL) {
        s = csi_daemon_printable(m, CSI_DAEMON_ERROR_TEXT_MAX);
    } else if (root == NULL) {
        /* the first line, bounded by LEN: the body need not end in a NUL */
        for (n = 0; n < len && n < CSI_DAEMON_ERROR_TEXT_MAX && body[n] != '\r' &&
                    body[n] != '\n' && body[n] != '\0';
             n++)
            ;
        s = strndup(body, n);
        if (s != NULL) {
            char *p = csi_daemon_printable(s, n);

            free(s);
            s = p;
        }
    }
    json_decref(root);
    return s;
}

/* The daemon's {"message": "..."} (or the body's first line), malloc'd; NULL if none. */
static char *
error_text(const csi_http_resp *resp)
{
    return csi_daemon_error_text(resp->body.ptr, resp->body.len);
}

int
csi_daemon_status_error(cs_daemon *d, const csi_http_resp *resp, const char *what, cs_error **err)
{
    char *text = error_text(resp);
    const char *t = text ? text : "no details";
    int code;

    switch (resp->status) {
    case 400:
        code = CS_EINVAL;
        break;
    case 401:
    case 403:
        code = CS_EAUTH;
        break;
    case 404:
        code = CS_ENOTFOUND;
        break;
    case 409:
        code = CS_EEXISTS;
        break;
    default:
        code = CS_EPROTO;
        break;
    }
    code = csi_error_http(err, code, resp->status, "Docker daemon at %s: %s: %s (HTTP %ld)",
                          d->host, what, t, resp->status);
    free(text);
    return code;
}

int
csi_daemon_get_object(json_t **out, cs_daemon *d, const char *path, const char *what,
                      cs_error **err)
{
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    int ret;

    req.method = "GET";
    req.max_body = DOC_MAX;
    ret = csi_daemon_call(&resp, d, &req, path, err);
    if (ret == CS_ELIMIT)
        csi_error_wrap(err, "Docker daemon at %s: %s", d->host, what);
    if (ret < 0)
        goto out;
    if (resp.status != 200) {
        ret = csi_daemon_status_error(d, &resp, what, err);
        goto out;
    }
    ret = csi_json_load_object(out, resp.body.ptr ? resp.body.ptr : "", resp.body.len, DOC_MAX,
                               what, err);
    if (ret < 0)
        csi_error_wrap(err, "Docker daemon at %s", d->host);
out:
    csi_http_resp_dispose(&resp);
    return ret;
}

int
csi_daemon_dup_or_empty(char **out, const json_t *obj, const char *key, cs_error **err)
{
    const char *s = csi_json_str(obj, key);

    *out = strdup(s ? s : "");
    return *out ? 0 : csi_error_oom(err);
}

/* ---- info -------------------------------------------------------------------------------- */

/* The containerd image store reports DriverStatus [["driver-type",
 * "io.containerd.snapshotter.v1"]] and its snapshotter as Driver ("overlayfs", "stargz", ...):
 * moby daemon/containerd/service.go LayerStoreStatus() returns {"driver-type",
 * plugin.SnapshotPlugin} and StorageDriver() the snapshotter, which daemon/info.go
 * fillDriverInfo() copies into Driver and DriverStatus. Graph drivers report their own
 * pairs ("Backing Filesystem", ...), never driver-type. The pair is the signal, not the
 * driver's name, which a snapshotter can share with a graph driver (e.g. "zfs"). */
static bool
uses_containerd_store(const json_t *status)
{
    size_t i;
    const json_t *pair;

    json_array_foreach(status, i, pair)
    {
        const json_t *k = json_array_get(pair, 0), *v = json_array_get(pair, 1);

        if (json_is_string(k) && json_is_string(v) &&
            strcmp(json_string_value(k), "driver-type") == 0 &&
            strcmp(json_string_value(v), "io.containerd.snapshotter.v1") == 0)
            return true;
    }
    return false;
}

int
csi_daemon_info_from_json(cs_daemon_info **out, const json_t *ver, const json_t *inf,
                          const char *host, const char *api, cs_error **err)
{
    cs_daemon_info *info = NULL;
    int ret;

    if (!json_is_object(ver) || csi_json_str(ver, "Version") == NULL)
        return csi_error_set(err, CS_EPROTO, "Docker daemon at %s: GET /version gave no Version",
                             host);
    info = calloc(1, sizeof(*info));
    if (info == NULL)
        return csi_error_oom(err);
    ret = csi_daemon_dup_or_empty(&info->version, ver, "Version", err);
    if (ret == 0)
        ret = csi_daemon_dup_or_empty(&info->api_version, ver, "ApiVersion", err);
    if (ret == 0)
        ret = csi_daemon_dup_or_empty(&info->os, ver, "Os", err);
    if (ret == 0)
        ret = csi_daemon_dup_or_empty(&info->arch, ver, "Arch", err);
    if (ret == 0)
        ret = csi_daemon_dup_or_empty(&info->driver, inf, "Driver", err);
    if (ret < 0)
        goto fail;
    info->negotiated_api = strdup(api ? api : "");
    if (info->negotiated_api == NULL) {
        ret = csi_error_oom(err);
        goto fail;
    }
    info->containerd_store = uses_containerd_store(json_object_get(inf, "DriverStatus"));
    csi_daemon_parse_release(info->version, &info->major, &info->minor);
    *out = info;
    return 0;
fail:
    info_free(info);
    return ret;
}

void
csi_daemon_info_free(cs_daemon_info *info)
{
    info_free(info);
}

int
cs_daemon_get_info(const cs_daemon_info **out, cs_daemon *d, cs_error **err)
{
    json_t *ver = NULL, *inf = NULL;
    int ret;

    if (d->info != NULL) {
        *out = d->info;
        return 0;
    }
    ret = csi_daemon_get_object(&ver, d, "/version", "GET /version", err);
    if (ret == 0)
        ret = csi_daemon_get_object(&inf, d, "/info", "GET /info", err);
    if (ret == 0)
        ret = csi_daemon_info_from_json(&d->info, ver, inf, d->host, d->api, err);
    if (ret == 0)
        *out = d->info;
    json_decref(ver);
    json_decref(inf);
    return ret;
}
