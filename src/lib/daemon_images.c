/* Docker Engine API client, the image endpoints: inspect, layer chains, tag, load, save (moby
 * api/swagger.yaml; facts in docs/reference/registry-and-daemon-protocols.md section 5). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cachesync/daemon.h>
#include <cachesync/digest.h>
#include "daemon_int.h"
#include "error_int.h"
#include "http.h"
#include "json.h"
#include "jsonstream.h"
#include "log_int.h"

#define LIST_MAX (64u * 1024 * 1024) /* /images/json of a daemon with many images */

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
int
csi_daemon_image_from_json(cs_daemon_image **out, const json_t *root, const char *what,
                           cs_error **err)
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
    ret = csi_daemon_dup_or_empty(&img->os, root, "Os", err);
    if (ret == 0)
        ret = csi_daemon_dup_or_empty(&img->architecture, root, "Architecture", err);
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
    ret = csi_daemon_get_object(&root, d, path.ptr, what, &gerr);
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
    ret = csi_daemon_image_from_json(out, root, what, err);
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
    ret = csi_daemon_call(&resp, d, &req, "/images/json?all=1", err);
    if (ret == CS_ELIMIT)
        csi_error_wrap(err, "Docker daemon at %s: image list", d->host);
    if (ret < 0)
        goto out;
    if (resp.status != 200) {
        ret = csi_daemon_status_error(d, &resp, "list images", err);
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
    req.max_body = CSI_DAEMON_PING_MAX;
    ret = csi_daemon_call(&resp, d, &req, path.ptr, err);
    if (ret < 0)
        goto out;
    if (resp.status < 200 || resp.status > 299) {
        if (asprintf(&what, "tag %.300s as %.300s%s%.200s", image, repo, tag && *tag ? ":" : "",
                     tag && *tag ? tag : "") < 0) {
            what = NULL;
            ret = csi_error_oom(err);
            goto out;
        }
        ret = csi_daemon_status_error(d, &resp, what, err);
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
    const char *host; /* the daemon, in errors */
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
    if (m.error != NULL) {
        char *text = csi_daemon_printable(m.error, CSI_DAEMON_ERROR_TEXT_MAX * 4);
        int ret = csi_error_set(err, CS_EPROTO, "Docker daemon at %s: load failed: %s", ctx->host,
                                text ? text : "(out of memory)");

        free(text);
        return ret;
    }
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
csi_daemon_load_answer(cs_daemon_load_result *res, const char *host, const char *data, size_t len,
                       size_t chunk, cs_error **err)
{
    load_ctx ctx = {0};
    char *what = NULL;
    size_t off = 0, n;
    int ret = 0;

    if (asprintf(&what, "Docker daemon at %s: load answer", host) < 0)
        return csi_error_oom(err);
    ctx.host = host;
    ctx.res = res;
    csi_jsonstream_init(&ctx.js, 0, what, load_message, &ctx);
    if (chunk == 0)
        chunk = len ? len : 1;
    while (ret == 0 && off < len) {
        n = len - off < chunk ? len - off : chunk;
        ret = csi_jsonstream_feed(&ctx.js, data + off, n, err);
        off += n;
    }
    if (ret == 0)
        ret = csi_jsonstream_finish(&ctx.js, err);
    csi_jsonstream_dispose(&ctx.js);
    free(what);
    return ret;
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
    ctx.host = d->host;
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
    ret = csi_daemon_call(&resp, d, &req, "/images/load?quiet=1", err);
    if (ret < 0)
        goto out;
    if (resp.status != 200) {
        ret = csi_daemon_status_error(d, &resp, "load", err);
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
    req.max_body = CSI_DAEMON_PING_MAX; /* only an error body is collected */
    req.no_retry = true; /* the sink has consumed what came: a retry would repeat it */
    /* the sink may compress a layer between reads, and the daemon may take long to start
     * (it tars the layers as it goes) */
    req.no_stall_timeout = true;
    ret = csi_daemon_call(&resp, d, &req, path.ptr, err);
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
        ret = csi_daemon_status_error(d, &resp, what, err);
    }
out:
    free(what);
    cs_buf_dispose(&path);
    csi_http_resp_dispose(&resp);
    return ret;
}
