/* Resolve a reference to an image: index -> platform manifest -> config. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cachesync/image.h>
#include "error_int.h"
#include "fsutil.h"

/* Indexes may nest (image-index.md "SHOULD support"); a chain deeper than this is a loop
 * or an attack. */
#define MAX_INDEX_DEPTH 4

void
cs_image_free(cs_image *img)
{
    if (img == NULL)
        return;
    cs_buf_dispose(&img->top);
    free(img->top_media_type);
    cs_buf_dispose(&img->manifest);
    cs_manifest_free(img->parsed);
    cs_buf_dispose(&img->config);
    cs_image_config_free(img->config_parsed);
    free(img);
}

/* A document by digest: from the store when it has it, else from the registry. */
static int
get_by_digest(cs_buf *out, char **mt_out, cs_registry *r, cs_store *store, const char *repo,
              const char *digest, const char *media_type, cs_error **err)
{
    if (store != NULL && cs_store_has_blob(store, digest, -1) &&
        cs_store_read_blob(out, store, digest, CS_MANIFEST_MAX, NULL) == 0) {
        *mt_out = media_type ? strdup(media_type) : NULL;
        return media_type && *mt_out == NULL ? csi_error_oom(err) : 0;
    }
    char got[CS_DIGEST_STRLEN];

    return cs_registry_get_manifest(out, mt_out, got, r, repo, digest, err);
}

int
cs_image_resolve(cs_image **out, cs_registry *r, const cs_reference *ref, const cs_platform *want,
                 cs_store *store, unsigned flags, cs_error **err)
{
    cs_platform host = {0};
    cs_image *img;
    cs_buf cur = CS_BUF_INIT;
    char *cur_mt = NULL;
    char cur_digest[CS_DIGEST_STRLEN];
    cs_manifest *m = NULL;
    int depth, ret;

    img = calloc(1, sizeof(*img));
    if (img == NULL)
        return csi_error_oom(err);
    if (want == NULL) {
        ret = cs_platform_host(&host, err);
        if (ret < 0)
            goto out;
        want = &host;
    }
    ret = cs_registry_get_manifest(&img->top, &img->top_media_type, img->top_digest, r, ref->path,
                                   cs_reference_target(ref), err);
    if (ret < 0)
        goto out;
    memcpy(cur_digest, img->top_digest, CS_DIGEST_STRLEN);
    ret = cs_manifest_parse(&m, img->top.ptr, img->top.len, img->top_media_type, err);
    if (ret < 0)
        goto wrap;
    ret = cs_buf_append(&cur, img->top.ptr, img->top.len, err);
    if (ret < 0)
        goto out;
    for (depth = 0; m->kind == CS_MANIFEST_INDEX; depth++) {
        const cs_descriptor *d = NULL;
        char *digest, *child_mt;

        if (depth == MAX_INDEX_DEPTH) {
            ret =
                csi_error_set(err, CS_ELIMIT, "indexes nested more than %d deep", MAX_INDEX_DEPTH);
            goto wrap;
        }
        ret = cs_manifest_select(&d, m, want, err);
        if (ret < 0)
            goto wrap;
        digest = strdup(d->digest);
        child_mt = strdup(d->media_type);
        if (digest == NULL || child_mt == NULL) {
            free(digest);
            free(child_mt);
            ret = csi_error_oom(err);
            goto out;
        }
        cs_manifest_free(m);
        m = NULL;
        free(cur_mt);
        cur_mt = NULL;
        ret = get_by_digest(&cur, &cur_mt, r, store, ref->path, digest, child_mt, err);
        snprintf(cur_digest, sizeof(cur_digest), "%s", digest);
        free(digest);
        free(child_mt);
        if (ret < 0)
            goto out;
        ret = cs_manifest_parse(&m, cur.ptr, cur.len, cur_mt, err);
        if (ret < 0)
            goto wrap;
        img->from_index = true;
    }
    img->manifest = cur;
    memset(&cur, 0, sizeof(cur));
    memcpy(img->manifest_digest, cur_digest, CS_DIGEST_STRLEN);
    img->parsed = m;
    m = NULL;
    if (!(flags & CS_IMAGE_NO_CONFIG)) {
        const cs_descriptor *cd = &img->parsed->config;

        if (store != NULL && cs_store_has_blob(store, cd->digest, cd->size) &&
            cs_store_read_blob(&img->config, store, cd->digest, CS_CONFIG_MAX, NULL) == 0)
            ret = 0;
        else
            ret = cs_registry_get_blob(&img->config, r, ref->path, cd->digest, cd->size,
                                       CS_CONFIG_MAX, err);
        if (ret < 0) {
            /* the manifest exists, so a missing config is a broken image, not a missing
             * reference: callers trying fallbacks on 404 must not skip past it */
            if (err != NULL && *err != NULL)
                (*err)->http_status = 0;
            goto out;
        }
        img->cache_export = strcmp(cd->media_type, CS_MEDIA_BUILDKIT_CACHECONFIG) == 0;
        if (!img->cache_export)
            ret = cs_image_config_parse(&img->config_parsed, img->config.ptr, img->config.len,
                                        err);
        if (ret < 0) {
            csi_error_wrap(err, "config %s", img->parsed->config.digest);
            goto out;
        }
    }
    *out = img;
    img = NULL;
    goto out;
wrap:
    csi_error_wrap(err, "%s/%s@%s", ref->domain, ref->path, cur_digest);
out:
    cs_platform_dispose(&host);
    cs_manifest_free(m);
    cs_buf_dispose(&cur);
    free(cur_mt);
    cs_image_free(img);
    return ret;
}

int
cs_image_from_source(cs_image **out, const cs_source_image *src, cs_error **err)
{
    char digest[CS_DIGEST_STRLEN];
    char *data = NULL;
    size_t len = 0;
    cs_image *img;
    int ret;

    img = calloc(1, sizeof(*img));
    if (img == NULL)
        return csi_error_oom(err);
    ret = cs_buf_append(&img->top, src->manifest, src->manifest_len, err);
    if (ret == 0)
        ret = cs_buf_append(&img->manifest, src->manifest, src->manifest_len, err);
    if (ret < 0)
        goto out;
    img->top_media_type = strdup(src->manifest_media_type);
    if (img->top_media_type == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    memcpy(img->top_digest, src->manifest_digest, CS_DIGEST_STRLEN);
    memcpy(img->manifest_digest, src->manifest_digest, CS_DIGEST_STRLEN);
    ret = cs_manifest_parse(&img->parsed, src->manifest, src->manifest_len,
                            src->manifest_media_type, err);
    if (ret < 0)
        goto out;
    ret = csi_fs_read_file(&data, &len, src->config.path, CS_CONFIG_MAX, err);
    if (ret < 0)
        goto out;
    ret = cs_digest_buffer(digest, data, len, err);
    if (ret == 0 && strcmp(digest, src->config.digest) != 0)
        ret = csi_error_set(err, CS_EDIGEST, "config %s: %s has digest %s", src->config.digest,
                            src->config.path, digest);
    if (ret == 0)
        ret = cs_buf_append(&img->config, data, len, err);
    if (ret == 0)
        ret = cs_image_config_parse(&img->config_parsed, data, len, err);
    if (ret < 0)
        goto out;
    *out = img;
    img = NULL;
out:
    free(data);
    cs_image_free(img);
    return ret;
}
