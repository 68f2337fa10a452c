/* oci:DIR[:TAG] (see include/cachesync/source.h): an OCI image layout pushes as it is. The
 * manifest (through an index, the platform's) and config are read and verified; layers are
 * checked for presence and size and stay in DIR. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include <cachesync/manifest.h>
#include <cachesync/source.h>
#include "error_int.h"
#include "fsutil.h"
#include "json.h"
#include "source_int.h"

#define INDEX_MAX (64u * 1024 * 1024) /* an OCI layout's index.json */
#define INDEX_DEPTH 4                 /* indexes nested in indexes */

typedef struct oci_dir {
    const char *dir;
    char *real; /* realpath of DIR */
} oci_dir;

/* DIR/blobs/sha256/<hex> for DIGEST, checked: inside DIR once symlinks are resolved, a
 * regular file of SIZE bytes. CS_ENOTFOUND when absent. */
static int
oci_blob_path(char **out, const oci_dir *od, const char *digest, int64_t size, cs_error **err)
{
    char *path = NULL, *real = NULL;
    size_t rl = strlen(od->real);
    struct stat sb;
    int ret;

    ret = cs_digest_validate(digest, err);
    if (ret < 0)
        return ret;
    if (asprintf(&path, "%s/blobs/sha256/%s", od->dir, digest + 7) < 0)
        return csi_error_oom(err);
    real = realpath(path, NULL);
    if (real == NULL) {
        ret = errno == ENOENT
                  ? csi_error_set(err, CS_ENOTFOUND, "blob %s is not in %s", digest, od->dir)
                  : csi_error_errno(err, errno, "resolve %s", path);
        goto out;
    }
    if (strncmp(real, od->real, rl) != 0 || (real[rl] != '/' && od->real[rl - 1] != '/')) {
        ret = csi_error_set(err, CS_EINVAL, "%s is a link out of %s", path, od->dir);
        goto out;
    }
    if (stat(real, &sb) != 0) {
        ret = csi_error_errno(err, errno, "stat %s", path);
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        ret = csi_error_set(err, CS_EINVAL, "%s is not a regular file", path);
        goto out;
    }
    if (size >= 0 && sb.st_size != size) {
        ret = csi_error_set(err, CS_EDIGEST, "%s has %lld bytes, its descriptor says %lld", path,
                            (long long)sb.st_size, (long long)size);
        goto out;
    }
    *out = path;
    path = NULL;
out:
    free(real);
    free(path);
    return ret;
}

/* Read a (small) blob of the layout, verifying its size and digest. */
static int
oci_read_blob(char **data_out, size_t *len_out, char **path_out, const oci_dir *od,
              const char *digest, int64_t size, size_t max, cs_error **err)
{
    char got[CS_DIGEST_STRLEN];
    char *path = NULL, *data = NULL;
    size_t len = 0;
    int ret;

    if (size < 0 || (uint64_t)size > max)
        return csi_error_set(err, CS_ELIMIT, "blob %s of %lld bytes exceeds %zu bytes", digest,
                             (long long)size, max);
    ret = oci_blob_path(&path, od, digest, size, err);
    if (ret == 0)
        ret = csi_fs_read_file(&data, &len, path, max, err);
    if (ret == 0)
        ret = cs_digest_buffer(got, data, len, err);
    if (ret < 0)
        goto out;
    if ((int64_t)len != size || strcmp(got, digest) != 0) {
        ret = csi_error_set(err, CS_EDIGEST, "%s has content with digest %s", path, got);
        goto out;
    }
    *data_out = data;
    *len_out = len;
    data = NULL;
    if (path_out != NULL) {
        *path_out = path;
        path = NULL;
    }
out:
    free(data);
    free(path);
    return ret;
}

static const char *
ref_name(const json_t *desc)
{
    return csi_json_str(json_object_get(desc, "annotations"), "org.opencontainers.image.ref.name");
}

/* The index.json entry for TAG (NULL: the only one). */
static int
oci_pick(const json_t **out, const json_t *manifests, const char *dir, const char *tag,
         cs_error **err)
{
    cs_buf names = CS_BUF_INIT;
    const json_t *d, *found = NULL;
    size_t i;
    int ret;

    json_array_foreach(manifests, i, d)
    {
        const char *n = ref_name(d);
        const char *full =
            csi_json_str(json_object_get(d, "annotations"), "io.containerd.image.name");

        if (tag != NULL &&
            ((n != NULL && strcmp(n, tag) == 0) || (full != NULL && strcmp(full, tag) == 0))) {
            found = d;
            break;
        }
        if (names.len < 2000)
            cs_buf_printf(&names, NULL, "%s%.100s", names.len ? ", " : "", n ? n : "(unnamed)");
    }
    if (tag == NULL && json_array_size(manifests) == 1)
        found = json_array_get(manifests, 0);
    if (found != NULL) {
        *out = found;
        cs_buf_dispose(&names);
        return 0;
    }
    if (json_array_size(manifests) == 0)
        ret = csi_error_set(err, CS_ENOTFOUND, "OCI layout %s holds no image", dir);
    else if (tag == NULL)
        ret = csi_error_set(err, CS_EINVAL,
                            "OCI layout %s holds %zu images (%s): name one as oci:%s:NAME", dir,
                            json_array_size(manifests), names.ptr ? names.ptr : "", dir);
    else
        ret = csi_error_set(err, CS_ENOTFOUND, "OCI layout %s has no image named %s (it has: %s)",
                            dir, tag, names.ptr ? names.ptr : "");
    cs_buf_dispose(&names);
    return ret;
}

/* Layers the spec says never to upload; a layout may leave their files out. */
static bool
non_distributable(const char *media_type)
{
    return media_type != NULL && (strstr(media_type, ".nondistributable.") != NULL ||
                                  strstr(media_type, ".foreign.") != NULL);
}

static int
oci_image(cs_source_image **out, const oci_dir *od, char *mdata, size_t mlen, const char *digest,
          cs_manifest *m, cs_error **err)
{
    cs_source_image *img;
    cs_error *lerr = NULL;
    char *cdata = NULL;
    size_t clen, i;
    int ret;

    img = calloc(1, sizeof(*img));
    if (img == NULL)
        return csi_error_oom(err);
    if (m->nlayers > 0) {
        img->layers = calloc(m->nlayers, sizeof(*img->layers));
        if (img->layers == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
    }
    /* the config is small and its digest is the image's identity: read and check it whole */
    ret = oci_read_blob(&cdata, &clen, &img->config.path, od, m->config.digest, m->config.size,
                        CS_CONFIG_MAX, err);
    if (ret < 0)
        goto out;
    img->config.digest = strdup(m->config.digest);
    img->config.media_type = strdup(m->config.media_type);
    img->config.size = m->config.size;
    if (img->config.digest == NULL || img->config.media_type == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    /* layers are checked for presence and size only: the registry verifies every digest on
     * upload, and hashing gigabytes here would double the push's reading */
    for (i = 0; i < m->nlayers; i++) {
        const cs_descriptor *l = &m->layers[i];
        cs_source_blob *b = &img->layers[i];

        img->nlayers = i + 1;
        b->size = l->size;
        b->digest = strdup(l->digest);
        b->media_type = strdup(l->media_type);
        if (b->digest == NULL || b->media_type == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
        ret = oci_blob_path(&b->path, od, l->digest, l->size, &lerr);
        if (ret == CS_ENOTFOUND && non_distributable(l->media_type))
            ret = 0;
        if (ret < 0) {
            if (err != NULL) {
                *err = lerr;
                lerr = NULL;
            }
            goto out;
        }
        cs_error_free(lerr);
        lerr = NULL;
    }
    img->manifest = mdata;
    img->manifest_len = mlen;
    img->manifest_media_type = strdup(m->media_type);
    if (img->manifest_media_type == NULL) {
        img->manifest = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    snprintf(img->manifest_digest, sizeof(img->manifest_digest), "%s", digest);
    *out = img;
    img = NULL;
out:
    free(cdata);
    cs_source_image_free(img);
    return ret;
}

int
csi_source_load_oci(cs_source_image **out, const cs_source *src, const csi_source_settings *st,
                    cs_error **err)
{
    cs_platform host = {0};
    const cs_platform *want = st->opts->platform;
    oci_dir od = {src->path, NULL};
    const json_t *desc = NULL;
    json_t *index = NULL;
    cs_manifest *m = NULL;
    char *path = NULL, *data = NULL, *mt = NULL;
    char digest[CS_DIGEST_STRLEN];
    size_t len = 0;
    int64_t size;
    int ret, depth;

    od.real = realpath(src->path, NULL);
    if (od.real == NULL) {
        ret = errno == ENOENT ? csi_error_set(err, CS_ENOTFOUND, "%s does not exist", src->path)
                              : csi_error_errno(err, errno, "resolve %s", src->path);
        goto out;
    }
    if (asprintf(&path, "%s/index.json", src->path) < 0) {
        path = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    ret = csi_fs_read_file(&data, &len, path, INDEX_MAX, err);
    if (ret == CS_ENOTFOUND)
        csi_error_wrap(err, "not an OCI layout");
    if (ret == 0)
        ret = csi_json_load_object(&index, data, len, INDEX_MAX, path, err);
    free(data);
    data = NULL;
    if (ret < 0)
        goto out;
    if (!json_is_array(json_object_get(index, "manifests"))) {
        ret = csi_error_set(err, CS_EPROTO, "%s has no manifests array", path);
        goto out;
    }
    ret = oci_pick(&desc, json_object_get(index, "manifests"), src->path, src->tag, err);
    if (ret < 0)
        goto out;
    if (csi_json_str(desc, "digest") == NULL || csi_json_int(&size, desc, "size") < 0) {
        ret = csi_error_set(err, CS_EPROTO, "%s: an entry has no digest or size", path);
        goto out;
    }
    snprintf(digest, sizeof(digest), "%s", csi_json_str(desc, "digest"));
    if (strlen(csi_json_str(desc, "digest")) >= sizeof(digest)) {
        ret = csi_error_set(err, CS_EPROTO, "%s: a digest is malformed", path);
        goto out;
    }
    ret = csi_json_strdup(&mt, desc, "mediaType", err);
    if (ret < 0)
        goto out;
    for (depth = 0;; depth++) {
        const cs_descriptor *child;

        ret = oci_read_blob(&data, &len, NULL, &od, digest, size, CS_MANIFEST_MAX, err);
        if (ret == 0)
            ret = cs_manifest_parse(&m, data, len, mt, err);
        if (ret < 0) {
            csi_error_wrap(err, "OCI layout %s", src->path);
            goto out;
        }
        if (m->kind == CS_MANIFEST_IMAGE)
            break;
        if (depth == INDEX_DEPTH) {
            ret = csi_error_set(err, CS_ELIMIT, "OCI layout %s: indexes nested over %d deep",
                                src->path, INDEX_DEPTH);
            goto out;
        }
        if (want == NULL) {
            ret = cs_platform_host(&host, err);
            if (ret < 0)
                goto out;
            want = &host;
        }
        ret = cs_manifest_select(&child, m, want, err);
        if (ret < 0) {
            csi_error_wrap(err, "OCI layout %s", src->path);
            goto out;
        }
        snprintf(digest, sizeof(digest), "%s", child->digest);
        size = child->size;
        free(mt);
        mt = strdup(child->media_type);
        cs_manifest_free(m);
        m = NULL;
        free(data);
        data = NULL;
        if (mt == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
    }
    ret = oci_image(out, &od, data, len, digest, m, err);
    if (ret == 0)
        data = NULL; /* the image has it */
    else
        csi_error_wrap(err, "OCI layout %s", src->path);
out:
    cs_platform_dispose(&host);
    cs_manifest_free(m);
    json_decref(index);
    free(od.real);
    free(data);
    free(path);
    free(mt);
    return ret;
}
