/* Manifests, indexes and image configs (opencontainers/image-spec manifest.md,
 * image-index.md, config.md; distribution manifest-v2-2.md). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <cachesync/digest.h>
#include <cachesync/manifest.h>
#include "error_int.h"
#include "json.h"

/* Bounds on counts, so a hostile document cannot make us allocate without limit; far above
 * anything real (Docker caps images at 127 layers on overlay2). */
#define MAX_LAYERS 4096
#define MAX_MANIFESTS 4096
#define MAX_HISTORY 8192

bool
cs_media_type_is_manifest(const char *mt)
{
    return mt != NULL &&
           (strcmp(mt, CS_MEDIA_OCI_MANIFEST) == 0 || strcmp(mt, CS_MEDIA_DOCKER_MANIFEST) == 0);
}

bool
cs_media_type_is_index(const char *mt)
{
    return mt != NULL &&
           (strcmp(mt, CS_MEDIA_OCI_INDEX) == 0 || strcmp(mt, CS_MEDIA_DOCKER_LIST) == 0);
}

void
cs_platform_dispose(cs_platform *p)
{
    if (p == NULL)
        return;
    free(p->os);
    free(p->architecture);
    free(p->variant);
    free(p->os_version);
    memset(p, 0, sizeof(*p));
}

static void
descriptor_dispose(cs_descriptor *d)
{
    free(d->media_type);
    free(d->digest);
    if (d->platform != NULL) {
        cs_platform_dispose(d->platform);
        free(d->platform);
    }
    memset(d, 0, sizeof(*d));
}

void
cs_manifest_free(cs_manifest *m)
{
    size_t i;

    if (m == NULL)
        return;
    free(m->media_type);
    descriptor_dispose(&m->config);
    for (i = 0; i < m->nlayers; i++)
        descriptor_dispose(&m->layers[i]);
    free(m->layers);
    for (i = 0; i < m->nmanifests; i++)
        descriptor_dispose(&m->manifests[i]);
    free(m->manifests);
    free(m);
}

static int
parse_platform(cs_platform **out, const json_t *obj, const char *where, cs_error **err)
{
    cs_platform *p;
    int ret;

    if (!json_is_object(obj))
        return csi_error_set(err, CS_EPROTO, "%s: platform is not an object", where);
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return csi_error_oom(err);
    ret = csi_json_strdup(&p->os, obj, "os", err);
    if (ret == 0)
        ret = csi_json_strdup(&p->architecture, obj, "architecture", err);
    if (ret == 0)
        ret = csi_json_strdup(&p->variant, obj, "variant", err);
    if (ret == 0)
        ret = csi_json_strdup(&p->os_version, obj, "os.version", err);
    if (ret == 0 && (p->os == NULL || p->architecture == NULL))
        ret = csi_error_set(err, CS_EPROTO, "%s: platform lacks os or architecture", where);
    if (ret < 0) {
        cs_platform_dispose(p);
        free(p);
        return ret;
    }
    *out = p;
    return 0;
}

/* At most SIZE - 1 bytes of S for an error message: one printable line whatever the registry
 * sent (control characters become '?'). */
static const char *
printable(char *dst, size_t size, const char *s)
{
    size_t i;

    for (i = 0; s != NULL && s[i] != '\0' && i + 1 < size; i++)
        dst[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    dst[i] = '\0';
    return dst;
}

static int
parse_descriptor(cs_descriptor *d, const json_t *obj, const char *where, cs_error **err)
{
    const json_t *plat;
    int64_t size = 0;
    int ret;

    if (!json_is_object(obj))
        return csi_error_set(err, CS_EPROTO, "%s is not an object", where);
    if (csi_json_str(obj, "mediaType") == NULL)
        return csi_error_set(err, CS_EPROTO, "%s has no mediaType", where);
    ret = cs_digest_validate(csi_json_str(obj, "digest"), err);
    if (ret < 0)
        return csi_error_wrap(err, "%s", where);
    ret = csi_json_int(&size, obj, "size");
    if (ret < 0 || size < 0)
        return csi_error_set(err, CS_EPROTO, "%s has no valid size", where);
    d->size = size;
    ret = csi_json_strdup(&d->media_type, obj, "mediaType", err);
    if (ret == 0)
        ret = csi_json_strdup(&d->digest, obj, "digest", err);
    plat = json_object_get(obj, "platform");
    if (ret == 0 && plat != NULL)
        ret = parse_platform(&d->platform, plat, where, err);
    if (ret == 0 && d->platform != NULL)
        d->attestation = strcmp(d->platform->os, "unknown") == 0 &&
                         strcmp(d->platform->architecture, "unknown") == 0;
    if (ret < 0)
        descriptor_dispose(d);
    return ret;
}

static int
parse_descriptor_array(cs_descriptor **out, size_t *n_out, const json_t *arr, const char *name,
                       size_t max, cs_error **err)
{
    cs_descriptor *ds = NULL;
    char where[64];
    size_t i, n;
    int ret = 0;

    if (!json_is_array(arr))
        return csi_error_set(err, CS_EPROTO, "\"%s\" is missing or not an array", name);
    n = json_array_size(arr);
    if (n > max)
        return csi_error_set(err, CS_ELIMIT, "%zu %s, over the limit of %zu", n, name, max);
    if (n > 0) {
        ds = calloc(n, sizeof(*ds));
        if (ds == NULL)
            return csi_error_oom(err);
    }
    for (i = 0; i < n; i++) {
        snprintf(where, sizeof(where), "%s[%zu]", name, i);
        ret = parse_descriptor(&ds[i], json_array_get(arr, i), where, err);
        if (ret < 0)
            break;
    }
    if (ret < 0) {
        while (i-- > 0)
            descriptor_dispose(&ds[i]);
        free(ds);
        return ret;
    }
    *out = ds;
    *n_out = n;
    return 0;
}

/* The media type without parameters ("a/b; charset=x" -> "a/b"), into BUF. */
static const char *
bare_type(char *buf, size_t size, const char *ct)
{
    size_t n;

    if (ct == NULL)
        return NULL;
    n = strcspn(ct, "; \t");
    if (n >= size)
        n = size - 1;
    memcpy(buf, ct, n);
    buf[n] = '\0';
    return buf[0] ? buf : NULL;
}

int
cs_manifest_parse(cs_manifest **out, const char *data, size_t len, const char *content_type,
                  cs_error **err)
{
    char ctbuf[256];
    const char *field, *header, *mt;
    cs_manifest *m = NULL;
    json_t *root = NULL;
    int64_t schema = 0;
    int ret;

    ret = csi_json_load_object(&root, data, len, CS_MANIFEST_MAX, "manifest", err);
    if (ret < 0)
        return ret;
    field = csi_json_str(root, "mediaType");
    header = bare_type(ctbuf, sizeof(ctbuf), content_type);
    if (csi_json_int(&schema, root, "schemaVersion") != 0 || schema != 2) {
        if (schema == 1)
            ret = csi_error_set(err, CS_EUNSUPPORTED,
                                "manifest is Docker schema 1, which is not supported");
        else
            ret = csi_error_set(err, CS_EPROTO, "manifest has no schemaVersion 2");
        goto out;
    }
    /* distribution-spec: "If the manifest has a mediaType field, clients SHOULD reject
     * unless the mediaType field's value matches the type specified by the Content-Type
     * header". application/json and octet-stream are what servers send when they don't
     * know; those are no contradiction. */
    if (field != NULL && header != NULL && strcmp(field, header) != 0 &&
        (cs_media_type_is_manifest(header) || cs_media_type_is_index(header))) {
        char a[101], b[101];

        ret = csi_error_set(err, CS_EPROTO, "manifest says mediaType %s but was served as %s",
                            printable(a, sizeof(a), field), printable(b, sizeof(b), header));
        goto out;
    }
    mt = field;
    if (mt == NULL && (cs_media_type_is_manifest(header) || cs_media_type_is_index(header)))
        mt = header;
    /* OCI documents may omit mediaType; the shape then tells. */
    if (mt == NULL)
        mt =
            json_object_get(root, "manifests") != NULL ? CS_MEDIA_OCI_INDEX : CS_MEDIA_OCI_MANIFEST;
    if (!cs_media_type_is_manifest(mt) && !cs_media_type_is_index(mt)) {
        char a[101];

        ret = csi_error_set(err, CS_EUNSUPPORTED, "unsupported manifest media type %s",
                            printable(a, sizeof(a), mt));
        goto out;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    m->media_type = strdup(mt);
    if (m->media_type == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    if (cs_media_type_is_index(mt)) {
        m->kind = CS_MANIFEST_INDEX;
        ret = parse_descriptor_array(&m->manifests, &m->nmanifests,
                                     json_object_get(root, "manifests"), "manifests", MAX_MANIFESTS,
                                     err);
    } else {
        m->kind = CS_MANIFEST_IMAGE;
        ret = parse_descriptor(&m->config, json_object_get(root, "config"), "config", err);
        if (ret == 0)
            ret = parse_descriptor_array(&m->layers, &m->nlayers, json_object_get(root, "layers"),
                                         "layers", MAX_LAYERS, err);
    }
    if (ret < 0)
        goto out;
    *out = m;
    m = NULL;
out:
    cs_manifest_free(m);
    json_decref(root);
    return ret;
}

/* ---- conversion ----------------------------------------------------------------------- */

static const char *
oci_type_of(const char *mt)
{
    static const struct {
        const char *docker, *oci;
    } map[] = {
        {CS_MEDIA_DOCKER_MANIFEST, CS_MEDIA_OCI_MANIFEST},
        {CS_MEDIA_DOCKER_CONFIG, CS_MEDIA_OCI_CONFIG},
        {CS_MEDIA_DOCKER_LAYER_GZIP, CS_MEDIA_OCI_LAYER_GZIP},
        {CS_MEDIA_DOCKER_LAYER_TAR, CS_MEDIA_OCI_LAYER_TAR},
        {CS_MEDIA_DOCKER_LAYER_ZSTD, CS_MEDIA_OCI_LAYER_ZSTD},
        {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
         "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"},
    };
    size_t i;

    for (i = 0; mt != NULL && i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(mt, map[i].docker) == 0)
            return map[i].oci;
    }
    return mt;
}

static void
retype(json_t *desc)
{
    const char *mt = csi_json_str(desc, "mediaType");
    const char *oci = oci_type_of(mt);

    if (mt != NULL && oci != mt)
        json_object_set_new(desc, "mediaType", json_string(oci));
}

int
cs_manifest_to_oci(cs_buf *out, const char *data, size_t len, cs_error **err)
{
    cs_manifest *m = NULL;
    json_t *root = NULL, *layers;
    char *text = NULL;
    size_t i;
    int ret;

    ret = cs_manifest_parse(&m, data, len, NULL, err);
    if (ret < 0)
        return ret;
    if (m->kind != CS_MANIFEST_IMAGE) {
        ret = csi_error_set(err, CS_EINVAL, "only image manifests can be converted to OCI");
        goto out;
    }
    cs_buf_clear(out);
    if (strcmp(m->media_type, CS_MEDIA_OCI_MANIFEST) == 0) {
        ret = cs_buf_append(out, data, len, err);
        goto out;
    }
    ret = csi_json_load_object(&root, data, len, CS_MANIFEST_MAX, "manifest", err);
    if (ret < 0)
        goto out;
    json_object_set_new(root, "mediaType", json_string(CS_MEDIA_OCI_MANIFEST));
    retype(json_object_get(root, "config"));
    layers = json_object_get(root, "layers");
    for (i = 0; i < json_array_size(layers); i++)
        retype(json_array_get(layers, i));
    text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = cs_buf_puts(out, text, err);
out:
    free(text);
    json_decref(root);
    cs_manifest_free(m);
    return ret;
}

/* ---- image config ----------------------------------------------------------------------- */

void
cs_image_config_free(cs_image_config *c)
{
    size_t i;

    if (c == NULL)
        return;
    cs_platform_dispose(&c->platform);
    free(c->inline_cache);
    for (i = 0; i < c->ndiff_ids; i++)
        free(c->diff_ids[i]);
    free(c->diff_ids);
    for (i = 0; i < c->nhistory; i++) {
        free(c->history[i].created_by);
        free(c->history[i].created);
    }
    free(c->history);
    free(c);
}

static int
parse_history(cs_image_config *c, const json_t *arr, cs_error **err)
{
    size_t i, n;
    int ret;

    if (arr == NULL)
        return 0;
    if (!json_is_array(arr))
        return csi_error_set(err, CS_EPROTO, "image config: history is not an array");
    n = json_array_size(arr);
    if (n > MAX_HISTORY)
        return csi_error_set(err, CS_ELIMIT, "image config: %zu history entries", n);
    if (n == 0)
        return 0;
    c->history = calloc(n, sizeof(*c->history));
    if (c->history == NULL)
        return csi_error_oom(err);
    for (i = 0; i < n; i++) {
        const json_t *h = json_array_get(arr, i);

        if (!json_is_object(h))
            return csi_error_set(err, CS_EPROTO, "image config: history[%zu] is not an object", i);
        c->nhistory = i + 1;
        ret = csi_json_strdup(&c->history[i].created_by, h, "created_by", err);
        if (ret == 0)
            ret = csi_json_strdup(&c->history[i].created, h, "created", err);
        if (ret < 0)
            return ret;
        c->history[i].empty_layer = json_is_true(json_object_get(h, "empty_layer"));
    }
    return 0;
}

int
cs_image_config_parse(cs_image_config **out, const char *data, size_t len, cs_error **err)
{
    const json_t *rootfs, *ids, *cache;
    cs_image_config *c = NULL;
    json_t *root = NULL;
    size_t i, n;
    int ret;

    ret = csi_json_load_object(&root, data, len, CS_CONFIG_MAX, "image config", err);
    if (ret < 0)
        return ret;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = csi_json_strdup(&c->platform.os, root, "os", err);
    if (ret == 0)
        ret = csi_json_strdup(&c->platform.architecture, root, "architecture", err);
    if (ret == 0)
        ret = csi_json_strdup(&c->platform.variant, root, "variant", err);
    if (ret == 0)
        ret = csi_json_strdup(&c->platform.os_version, root, "os.version", err);
    if (ret < 0)
        goto out;
    rootfs = json_object_get(root, "rootfs");
    ids = json_object_get(rootfs, "diff_ids");
    if (!json_is_object(rootfs) || !json_is_array(ids)) {
        ret = csi_error_set(err, CS_EPROTO, "image config has no rootfs.diff_ids");
        goto out;
    }
    n = json_array_size(ids);
    if (n > MAX_LAYERS) {
        ret = csi_error_set(err, CS_ELIMIT, "image config lists %zu layers", n);
        goto out;
    }
    c->diff_ids = calloc(n ? n : 1, sizeof(char *));
    if (c->diff_ids == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    for (i = 0; i < n; i++) {
        const char *id = json_string_value(json_array_get(ids, i));

        ret = cs_digest_validate(id, err);
        if (ret < 0) {
            csi_error_wrap(err, "image config: rootfs.diff_ids[%zu]", i);
            goto out;
        }
        c->diff_ids[i] = strdup(id);
        if (c->diff_ids[i] == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
        c->ndiff_ids = i + 1;
    }
    ret = parse_history(c, json_object_get(root, "history"), err);
    if (ret < 0)
        goto out;
    /* BuildKit's inline cache exporter writes this top-level key (moby/buildkit
     * exporter/containerimage/writer.go); its value is base64 of a JSON document. */
    cache = json_object_get(root, "moby.buildkit.cache.v0");
    if (json_is_string(cache)) {
        c->has_inline_cache = true;
        c->inline_cache_bytes = json_string_length(cache);
        c->inline_cache = strndup(json_string_value(cache), c->inline_cache_bytes);
        if (c->inline_cache == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
    }
    *out = c;
    c = NULL;
out:
    cs_image_config_free(c);
    json_decref(root);
    return ret;
}
