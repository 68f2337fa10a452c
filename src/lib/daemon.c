/* Docker Engine API client (moby api/swagger.yaml; facts in
 * docs/reference/registry-and-daemon-protocols.md section 5). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cachesync/daemon.h>
#include <cachesync/digest.h>
#include "error_int.h"
#include "http.h"
#include "json.h"
#include "jsonstream.h"
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

#define PING_MAX (64u * 1024)
#define DOC_MAX (8u * 1024 * 1024)   /* /version, /info, one image inspect */
#define LIST_MAX (64u * 1024 * 1024) /* /images/json of a daemon with many images */
#define ERROR_TEXT_MAX 300           /* bytes of a daemon's error text we quote */

#define SUN_PATH_SIZE sizeof(((struct sockaddr_un *)NULL)->sun_path)

/* curl needs a host in the URL; over a unix socket any will do (the Go client uses
 * api.moby.localhost), and dockerd ignores it. */
#define URL_BASE "http://localhost"

struct cs_daemon {
    char *host;        /* "unix:///var/run/docker.sock": names the daemon in errors */
    char *socket_path; /* "/var/run/docker.sock" */
    csi_http *http;
    char api[16]; /* negotiated API version, "" until the first ping */
    cs_daemon_info *info;
};

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
static bool
parse_api_version(const char *s, int *major, int *minor)
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
static void
parse_release(const char *s, int *major, int *minor)
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
    req.max_body = PING_MAX;
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
    } else if (!parse_api_version(hdr, &major, &minor)) {
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

/* Perform REQ against PATH ("/images/json") under the negotiated version; any HTTP status is
 * a success here. A failing body source or sink keeps its own error. */
static int
call(csi_http_resp *resp, cs_daemon *d, csi_http_req *req, const char *path, cs_error **err)
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

/* The daemon's {"message": "..."} (or the body's first line), malloc'd; NULL if none. */
static char *
error_text(const csi_http_resp *resp)
{
    json_t *root = NULL;
    const char *m = NULL;
    char *s = NULL;
    size_t n;

    if (resp->body.len == 0)
        return NULL;
    if (csi_json_load_object(&root, resp->body.ptr, resp->body.len, 64 * 1024, "error", NULL) == 0)
        m = csi_json_str(root, "message");
    if (m != NULL) {
        s = strndup(m, ERROR_TEXT_MAX);
    } else if (root == NULL) {
        n = strcspn(resp->body.ptr, "\r\n");
        s = strndup(resp->body.ptr, n < ERROR_TEXT_MAX ? n : ERROR_TEXT_MAX);
    }
    json_decref(root);
    return s;
}

/* An error for a non-2xx answer to WHAT ("inspect image app:1"). */
static int
status_error(cs_daemon *d, const csi_http_resp *resp, const char *what, cs_error **err)
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

/* GET PATH and parse the 200 answer as a JSON object; a non-200 is a status_error for WHAT. */
static int
get_object(json_t **out, cs_daemon *d, const char *path, const char *what, cs_error **err)
{
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    int ret;

    req.method = "GET";
    req.max_body = DOC_MAX;
    ret = call(&resp, d, &req, path, err);
    if (ret == CS_ELIMIT)
        csi_error_wrap(err, "Docker daemon at %s: %s", d->host, what);
    if (ret < 0)
        goto out;
    if (resp.status != 200) {
        ret = status_error(d, &resp, what, err);
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

static int
dup_or_empty(char **out, const json_t *obj, const char *key, cs_error **err)
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
cs_daemon_get_info(const cs_daemon_info **out, cs_daemon *d, cs_error **err)
{
    json_t *ver = NULL, *inf = NULL;
    cs_daemon_info *info = NULL;
    int ret;

    if (d->info != NULL) {
        *out = d->info;
        return 0;
    }
    ret = get_object(&ver, d, "/version", "GET /version", err);
    if (ret == 0)
        ret = get_object(&inf, d, "/info", "GET /info", err);
    if (ret < 0)
        goto out;
    if (csi_json_str(ver, "Version") == NULL) {
        ret = csi_error_set(err, CS_EPROTO, "Docker daemon at %s: GET /version gave no Version",
                            d->host);
        goto out;
    }
    info = calloc(1, sizeof(*info));
    if (info == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = dup_or_empty(&info->version, ver, "Version", err);
    if (ret == 0)
        ret = dup_or_empty(&info->api_version, ver, "ApiVersion", err);
    if (ret == 0)
        ret = dup_or_empty(&info->os, ver, "Os", err);
    if (ret == 0)
        ret = dup_or_empty(&info->arch, ver, "Arch", err);
    if (ret == 0)
        ret = dup_or_empty(&info->driver, inf, "Driver", err);
    if (ret < 0)
        goto out;
    info->negotiated_api = strdup(d->api);
    if (info->negotiated_api == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    info->containerd_store = uses_containerd_store(json_object_get(inf, "DriverStatus"));
    parse_release(info->version, &info->major, &info->minor);
    d->info = info;
    info = NULL;
    *out = d->info;
out:
    info_free(info);
    json_decref(ver);
    json_decref(inf);
    return ret;
}

/* ---- images ------------------------------------------------------------------------------ */

static void
strv_free(char **v, size_t n)
{
    size_t i;

    for (i = 0; i < n && v != NULL; i++)
        free(v[i]);
    free(v);
}

/* Copy a JSON array of strings (null or absent = empty) into a NULL-terminated vector. */
static int
strv_from_json(char ***out, size_t *n_out, const json_t *arr, const char *what, cs_error **err)
{
    char **v;
    size_t i, n;

    *out = NULL;
    *n_out = 0;
    if (arr != NULL && !json_is_null(arr) && !json_is_array(arr))
        return csi_error_set(err, CS_EPROTO, "%s is not an array", what);
    n = json_array_size(arr);
    v = calloc(n + 1, sizeof(*v));
    if (v == NULL)
        return csi_error_oom(err);
    for (i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);

        if (!json_is_string(e)) {
            strv_free(v, i);
            return csi_error_set(err, CS_EPROTO, "%s[%zu] is not a string", what, i);
        }
        v[i] = strdup(json_string_value(e));
        if (v[i] == NULL) {
            strv_free(v, i);
            return csi_error_oom(err);
        }
    }
    *out = v;
    *n_out = n;
    return 0;
}

void
cs_daemon_image_free(cs_daemon_image *img)
{
    if (img == NULL)
        return;
    free(img->id);
    strv_free(img->repo_tags, img->nrepo_tags);
    strv_free(img->repo_digests, img->nrepo_digests);
    strv_free(img->diff_ids, img->ndiff_ids);
    free(img->os);
    free(img->architecture);
    free(img->variant);
    free(img);
}

/* The parts of an ImageInspect answer we use. WHAT names the image in errors. */
static int
image_from_json(cs_daemon_image **out, const json_t *root, const char *what, cs_error **err)
{
    cs_daemon_image *img;
    const char *id = csi_json_str(root, "Id");
    size_t i;
    int ret;

    if (id == NULL || *id == '\0')
        return csi_error_set(err, CS_EPROTO, "%s: the answer has no Id", what);
    img = calloc(1, sizeof(*img));
    if (img == NULL)
        return csi_error_oom(err);
    img->id = strdup(id);
    if (img->id == NULL) {
        ret = csi_error_oom(err);
        goto fail;
    }
    ret = strv_from_json(&img->repo_tags, &img->nrepo_tags, json_object_get(root, "RepoTags"),
                         "RepoTags", err);
    if (ret == 0)
        ret = strv_from_json(&img->repo_digests, &img->nrepo_digests,
                             json_object_get(root, "RepoDigests"), "RepoDigests", err);
    if (ret == 0)
        ret = strv_from_json(&img->diff_ids, &img->ndiff_ids,
                             json_object_get(json_object_get(root, "RootFS"), "Layers"),
                             "RootFS.Layers", err);
    if (ret < 0) {
        csi_error_wrap(err, "%s", what);
        goto fail;
    }
    /* diff_ids will name files and build chain IDs: only well-formed digests pass */
    for (i = 0; i < img->ndiff_ids; i++) {
        if (cs_digest_validate(img->diff_ids[i], NULL) < 0) {
            ret = csi_error_set(err, CS_EPROTO, "%s: layer %zu is not a sha256 digest (%.80s)",
                                what, i, img->diff_ids[i]);
            goto fail;
        }
    }
    ret = dup_or_empty(&img->os, root, "Os", err);
    if (ret == 0)
        ret = dup_or_empty(&img->architecture, root, "Architecture", err);
    if (ret < 0)
        goto fail;
    if (csi_json_str(root, "Variant") != NULL && *csi_json_str(root, "Variant") != '\0') {
        img->variant = strdup(csi_json_str(root, "Variant"));
        if (img->variant == NULL) {
            ret = csi_error_oom(err);
            goto fail;
        }
    }
    *out = img;
    return 0;
fail:
    cs_daemon_image_free(img);
    return ret;
}

int
cs_daemon_image_inspect(cs_daemon_image **out, cs_daemon *d, const char *name, cs_error **err)
{
    cs_buf path = CS_BUF_INIT;
    cs_error *gerr = NULL;
    json_t *root = NULL;
    char *what = NULL;
    int ret;

    if (name == NULL || *name == '\0')
        return csi_error_set(err, CS_EINVAL, "no image name to inspect");
    if (asprintf(&what, "image %.300s", name) < 0) {
        what = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    /* the route is /images/{name:.*}/json; escaping keeps '/', ':' and '@' of a reference
     * intact through the URL (dockerd decodes the path before routing) */
    ret = cs_buf_puts(&path, "/images/", err);
    if (ret == 0)
        ret = csi_http_query_escape(&path, name, err);
    if (ret == 0)
        ret = cs_buf_puts(&path, "/json", err);
    if (ret < 0)
        goto out;
    ret = get_object(&root, d, path.ptr, what, &gerr);
    if (ret == CS_ENOTFOUND)
        csi_error_http(err, CS_ENOTFOUND, 404, "image %.300s not found in the Docker daemon at %s",
                       name, d->host);
    if (ret < 0) {
        if (ret != CS_ENOTFOUND && err != NULL) {
            *err = gerr;
            gerr = NULL;
        }
        goto out;
    }
    ret = image_from_json(out, root, what, err);
    if (ret < 0)
        csi_error_wrap(err, "Docker daemon at %s", d->host);
out:
    cs_error_free(gerr);
    json_decref(root);
    free(what);
    cs_buf_dispose(&path);
    return ret;
}

/* ---- layer chains ------------------------------------------------------------------------ */

void
cs_daemon_chains_free(cs_daemon_chains *c)
{
    size_t i;

    if (c == NULL)
        return;
    for (i = 0; i < c->nchains; i++) {
        free(c->chains[i].image_id);
        strv_free(c->chains[i].diff_ids, c->chains[i].ndiff_ids);
    }
    free(c->chains);
    free(c);
}

size_t
cs_daemon_common_prefix(const cs_daemon_chains *c, const char *const *diff_ids, size_t n)
{
    size_t best = 0, i, k;

    if (c == NULL || diff_ids == NULL)
        return 0;
    for (i = 0; i < c->nchains && best < n; i++) {
        const cs_daemon_chain *ch = &c->chains[i];

        for (k = 0; k < n && k < ch->ndiff_ids; k++) {
            if (diff_ids[k] == NULL || ch->diff_ids[k] == NULL ||
                strcmp(diff_ids[k], ch->diff_ids[k]) != 0)
                break;
        }
        if (k > best)
            best = k;
    }
    return best;
}

/* GET /images/json?all=1 into a JSON array. */
static int
list_images(json_t **out, cs_daemon *d, cs_error **err)
{
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    json_error_t jerr;
    json_t *root;
    int ret;

    req.method = "GET";
    req.max_body = LIST_MAX;
    ret = call(&resp, d, &req, "/images/json?all=1", err);
    if (ret == CS_ELIMIT)
        csi_error_wrap(err, "Docker daemon at %s: image list", d->host);
    if (ret < 0)
        goto out;
    if (resp.status != 200) {
        ret = status_error(d, &resp, "list images", err);
        goto out;
    }
    root = json_loadb(resp.body.ptr ? resp.body.ptr : "", resp.body.len, JSON_ALLOW_NUL, &jerr);
    if (!json_is_array(root)) {
        json_decref(root);
        ret = csi_error_set(err, CS_EPROTO, "Docker daemon at %s: the image list is %s", d->host,
                            root ? "not a JSON array" : csi_json_reason(&jerr));
        goto out;
    }
    *out = root;
out:
    csi_http_resp_dispose(&resp);
    return ret;
}

int
cs_daemon_layer_chains(cs_daemon_chains **out, cs_daemon *d, cs_error **err)
{
    cs_daemon_chains *c = NULL;
    json_t *list = NULL, *seen = NULL, *e;
    size_t i;
    int ret;

    ret = list_images(&list, d, err);
    if (ret < 0)
        return ret;
    c = calloc(1, sizeof(*c));
    seen = json_object();
    if (c == NULL || seen == NULL ||
        (json_array_size(list) > 0 &&
         (c->chains = calloc(json_array_size(list), sizeof(*c->chains))) == NULL)) {
        ret = csi_error_oom(err);
        goto out;
    }
    json_array_foreach(list, i, e)
    {
        const char *id = csi_json_str(e, "Id");
        cs_daemon_image *img = NULL;
        cs_error *ierr = NULL;

        /* the containerd store lists an image once per name, all with the same Id */
        if (id == NULL || *id == '\0' || json_object_get(seen, id) != NULL)
            continue;
        if (json_object_set_new(seen, id, json_true()) < 0) {
            ret = csi_error_oom(err);
            goto out;
        }
        ret = cs_daemon_image_inspect(&img, d, id, &ierr);
        if (ret == CS_ENOTFOUND) {
            /* removed since the listing: it holds nothing any more */
            cs_error_free(ierr);
            ret = 0;
            continue;
        }
        if (ret < 0) {
            if (err != NULL)
                *err = ierr;
            else
                cs_error_free(ierr);
            goto out;
        }
        c->chains[c->nchains].image_id = img->id;
        c->chains[c->nchains].diff_ids = img->diff_ids;
        c->chains[c->nchains].ndiff_ids = img->ndiff_ids;
        c->nchains++;
        img->id = NULL;
        img->diff_ids = NULL;
        img->ndiff_ids = 0;
        cs_daemon_image_free(img);
    }
    *out = c;
    c = NULL;
out:
    cs_daemon_chains_free(c);
    json_decref(list);
    json_decref(seen);
    return ret;
}

/* ---- tag --------------------------------------------------------------------------------- */

int
cs_daemon_tag(cs_daemon *d, const char *image, const char *repo, const char *tag, cs_error **err)
{
    cs_buf path = CS_BUF_INIT;
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    char *what = NULL;
    int ret;

    if (image == NULL || *image == '\0' || repo == NULL || *repo == '\0')
        return csi_error_set(err, CS_EINVAL, "tag: an image and a repository are needed");
    ret = cs_buf_puts(&path, "/images/", err);
    if (ret == 0)
        ret = csi_http_query_escape(&path, image, err);
    if (ret == 0)
        ret = cs_buf_puts(&path, "/tag?repo=", err);
    if (ret == 0)
        ret = csi_http_query_escape(&path, repo, err);
    if (ret == 0 && tag != NULL && *tag != '\0') {
        ret = cs_buf_puts(&path, "&tag=", err);
        if (ret == 0)
            ret = csi_http_query_escape(&path, tag, err);
    }
    if (ret < 0)
        goto out;
    req.method = "POST";
    req.body = "";
    req.body_len = 0;
    req.max_body = PING_MAX;
    ret = call(&resp, d, &req, path.ptr, err);
    if (ret < 0)
        goto out;
    if (resp.status < 200 || resp.status > 299) {
        if (asprintf(&what, "tag %.300s as %.300s%s%.200s", image, repo, tag && *tag ? ":" : "",
                     tag && *tag ? tag : "") < 0) {
            what = NULL;
            ret = csi_error_oom(err);
            goto out;
        }
        ret = status_error(d, &resp, what, err);
    }
out:
    free(what);
    cs_buf_dispose(&path);
    csi_http_resp_dispose(&resp);
    return ret;
}

/* ---- load -------------------------------------------------------------------------------- */

void
cs_daemon_load_result_dispose(cs_daemon_load_result *res)
{
    if (res == NULL)
        return;
    strv_free(res->tags, res->ntags);
    strv_free(res->ids, res->nids);
    memset(res, 0, sizeof(*res));
}

static int
strv_push(char ***v, size_t *n, const char *s, size_t len, cs_error **err)
{
    char **nv = realloc(*v, (*n + 2) * sizeof(**v));

    if (nv == NULL)
        return csi_error_oom(err);
    *v = nv;
    nv[*n] = strndup(s, len);
    if (nv[*n] == NULL)
        return csi_error_oom(err);
    (*n)++;
    nv[*n] = NULL;
    return 0;
}

typedef struct load_ctx {
    cs_daemon *d;
    csi_jsonstream js;
    cs_daemon_load_result *res;
} load_ctx;

/* The text after PREFIX in a "stream" line, without its line end; NULL if it does not match. */
static const char *
after_prefix(const char *s, const char *prefix, size_t *len)
{
    size_t pl = strlen(prefix), n;

    if (strncmp(s, prefix, pl) != 0)
        return NULL;
    s += pl;
    n = strcspn(s, "\r\n");
    *len = n;
    return n > 0 ? s : NULL;
}

static int
load_message(void *payload, json_t *msg, cs_error **err)
{
    load_ctx *ctx = payload;
    csi_engine_msg m;
    const char *s;
    size_t n;

    csi_engine_msg_classify(&m, msg);
    if (m.error != NULL)
        return csi_error_set(err, CS_EPROTO, "Docker daemon at %s: load failed: %.*s", ctx->d->host,
                             ERROR_TEXT_MAX * 4, m.error);
    if (m.stream != NULL) {
        /* moby image/tarexport/load.go: "Loaded image: %s\n" per tag, "Loaded image ID: %s\n"
         * for an image loaded without one */
        s = after_prefix(m.stream, "Loaded image ID: ", &n);
        if (s != NULL)
            return ctx->res ? strv_push(&ctx->res->ids, &ctx->res->nids, s, n, err) : 0;
        s = after_prefix(m.stream, "Loaded image: ", &n);
        if (s != NULL)
            return ctx->res ? strv_push(&ctx->res->tags, &ctx->res->ntags, s, n, err) : 0;
        csi_log(CS_LOG_DEBUG, "docker load: %.*s", (int)strcspn(m.stream, "\r\n"), m.stream);
    } else if (m.status != NULL) {
        csi_log(CS_LOG_DEBUG, "docker load: %s %s", m.status, m.id ? m.id : "");
    }
    return 0;
}

static int
load_sink(void *payload, const char *data, size_t len, cs_error **err)
{
    load_ctx *ctx = payload;

    return csi_jsonstream_feed(&ctx->js, data, len, err);
}

int
cs_daemon_load(cs_daemon *d, cs_daemon_source_fn source, void *payload, cs_daemon_load_result *res,
               cs_error **err)
{
    static const char *const hdrs[] = {"Content-Type: application/x-tar", NULL};
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    load_ctx ctx = {0};
    char *what = NULL;
    int ret;

    if (asprintf(&what, "Docker daemon at %s: load answer", d->host) < 0)
        return csi_error_oom(err);
    ctx.d = d;
    ctx.res = res;
    csi_jsonstream_init(&ctx.js, 0, what, load_message, &ctx);
    req.method = "POST";
    req.headers = hdrs;
    req.source = source;
    req.source_payload = payload;
    req.sink = load_sink;
    req.sink_payload = &ctx;
    req.no_retry = true;
    /* with quiet=1 the daemon says nothing while it unpacks what it received, which for a
     * large layer on a slow disk takes longer than any stall timeout */
    req.no_stall_timeout = true;
    /* quiet=1: no progress bars, only the result lines and errors (skopeo does the same) */
    ret = call(&resp, d, &req, "/images/load?quiet=1", err);
    if (ret < 0)
        goto out;
    if (resp.status != 200) {
        ret = status_error(d, &resp, "load", err);
        goto out;
    }
    ret = csi_jsonstream_finish(&ctx.js, err);
out:
    csi_jsonstream_dispose(&ctx.js);
    csi_http_resp_dispose(&resp);
    free(what);
    return ret;
}

/* ---- save -------------------------------------------------------------------------------- */

int
cs_daemon_image_save(cs_daemon *d, const char *name,
                     int (*sink)(void *payload, const char *data, size_t len, cs_error **err),
                     void *payload, cs_error **err)
{
    cs_buf path = CS_BUF_INIT;
    csi_http_resp resp = {0};
    csi_http_req req = {0};
    char *what = NULL;
    int ret;

    if (name == NULL || *name == '\0')
        return csi_error_set(err, CS_EINVAL, "no image name to export");
    /* the route is /images/{name:.*}/get: escaped like inspect's */
    ret = cs_buf_puts(&path, "/images/", err);
    if (ret == 0)
        ret = csi_http_query_escape(&path, name, err);
    if (ret == 0)
        ret = cs_buf_puts(&path, "/get", err);
    if (ret < 0)
        goto out;
    req.method = "GET";
    req.sink = sink;
    req.sink_payload = payload;
    req.max_body = PING_MAX; /* only an error body is collected */
    req.no_retry = true;     /* the sink has consumed what came: a retry would repeat it */
    /* the sink may compress a layer between reads, and the daemon may take long to start
     * (it tars the layers as it goes) */
    req.no_stall_timeout = true;
    ret = call(&resp, d, &req, path.ptr, err);
    if (ret < 0)
        goto out;
    if (resp.status == 404) {
        ret = csi_error_http(err, CS_ENOTFOUND, 404,
                             "image %.300s not found in the Docker daemon at %s", name, d->host);
        goto out;
    }
    if (resp.status != 200) {
        if (asprintf(&what, "export image %.300s", name) < 0) {
            what = NULL;
            ret = csi_error_oom(err);
            goto out;
        }
        ret = status_error(d, &resp, what, err);
    }
out:
    free(what);
    cs_buf_dispose(&path);
    csi_http_resp_dispose(&resp);
    return ret;
}
