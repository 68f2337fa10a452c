/* Delivering a pulled image from the store to its targets: the Docker daemon, a
 * docker-archive file, an OCI layout. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "archive.h"
#include "compress.h"
#include "docker_archive.h"
#include "error_int.h"
#include "fsutil.h"
#include "json.h"
#include "log_int.h"
#include "pull_int.h"

/* A layer transcoded for an old daemon can expand a lot; past this it is treated as a
 * decompression bomb. */
#define TRANSCODE_MAX (64ull * 1024 * 1024 * 1024)

static bool
is_zstd(const char *media_type)
{
    size_t n = strlen(media_type);

    return n >= 5 &&
           (strcmp(media_type + n - 5, "+zstd") == 0 || strcmp(media_type + n - 5, ".zstd") == 0);
}

int
csi_pull_plan_docker(csi_pull *p, cs_error **err)
{
    const cs_image_config *c = p->img->config_parsed;
    const char *config = p->img->parsed->config.digest;
    cs_daemon_image *di = NULL;
    cs_daemon_chains *chains = NULL;
    cs_error *e = NULL;
    char *familiar;
    int ret;

    if (p->dinfo->containerd_store)
        csi_pull_event(p, CS_PULL_NOTE,
                       "the daemon at %s uses the containerd image store: its builds resolve "
                       "--cache-from at the registry, so the registry must be reachable for "
                       "the manifest (the layers are now local)",
                       cs_daemon_host(p->daemon));
    familiar = cs_reference_to_string(p->ref, CS_REF_FAMILIAR);
    if (familiar == NULL)
        return csi_error_oom(err);
    ret = cs_daemon_image_inspect(&di, p->daemon, familiar, &e);
    free(familiar);
    if (ret == 0 && strcmp(di->id, config) == 0) {
        p->daemon_has_ref = true;
        goto out;
    }
    cs_daemon_image_free(di);
    di = NULL;
    if (ret < 0 && ret != CS_ENOTFOUND) {
        *err = e;
        return ret;
    }
    cs_error_free(e);
    e = NULL;
    ret = cs_daemon_image_inspect(&di, p->daemon, config, &e);
    if (ret == 0) {
        p->daemon_has_image = true;
        goto out;
    }
    if (ret != CS_ENOTFOUND) {
        *err = e;
        return ret;
    }
    cs_error_free(e);
    /* Layers the daemon holds (same diff_id chain, e.g. the base image's) are neither
     * fetched nor sent: its loader skips a layer whose chain it has before reading it. */
    if (c->ndiff_ids == p->img->parsed->nlayers) {
        ret = cs_daemon_layer_chains(&chains, p->daemon, err);
        if (ret < 0)
            return ret;
        p->daemon_prefix =
            cs_daemon_common_prefix(chains, (const char *const *)c->diff_ids, c->ndiff_ids);
        cs_daemon_chains_free(chains);
    }
    ret = 0;
out:
    cs_daemon_image_free(di);
    return ret;
}

/* The layer file to send for layer I: the blob as it is, or for a zstd layer on a daemon
 * that cannot read zstd (Docker < 23), the plain tar, made once and kept in the store under
 * its diff_id (which verifies it). */
static int
layer_source(char **path_out, uint64_t *size_out, csi_pull *p, size_t i, cs_error **err)
{
    const cs_descriptor *d = &p->img->parsed->layers[i];
    const cs_image_config *c = p->img->config_parsed;
    char digest[CS_DIGEST_STRLEN], *src = NULL;
    uint64_t size = 0;
    struct stat st;
    int ret;

    ret = cs_store_blob_path(&src, p->store, d->digest, err);
    if (ret < 0)
        return ret;
    if (!is_zstd(d->media_type) || p->dinfo->containerd_store || p->dinfo->major >= 23 ||
        i >= c->ndiff_ids) {
        *path_out = src;
        *size_out = (uint64_t)d->size;
        return 0;
    }
    ret = cs_store_blob_path(path_out, p->store, c->diff_ids[i], err);
    if (ret < 0)
        goto out;
    if (stat(*path_out, &st) == 0) {
        *size_out = (uint64_t)st.st_size;
        goto out;
    }
    csi_pull_event(p, CS_PULL_NOTE,
                   "layer %zu is zstd, which Docker %s cannot load: sending it "
                   "as plain tar",
                   i, p->dinfo->version);
    ret = csi_decompress_file(src, *path_out, TRANSCODE_MAX, digest, &size, err);
    if (ret == 0 && strcmp(digest, c->diff_ids[i]) != 0) {
        unlink(*path_out);
        ret = csi_error_set(err, CS_EDIGEST,
                            "layer %s uncompresses to %s, but the config says diff_id %s",
                            d->digest, digest, c->diff_ids[i]);
    }
    *size_out = size;
out:
    if (ret < 0) {
        free(*path_out);
        *path_out = NULL;
    }
    free(src);
    return ret;
}

/* A docker-archive of the image: config, the layers from FIRST on (earlier ones are listed
 * but left out: the daemon holds them), manifest.json naming REPO_TAG. */
int
csi_pull_build_archive(csi_archive **out, csi_pull *p, size_t first, const char *repo_tag,
                       bool transcode, bool stream, cs_error **err)
{
    const cs_manifest *m = p->img->parsed;
    csi_archive *a = NULL;
    char **names = NULL, config_name[80];
    cs_buf manifest = CS_BUF_INIT;
    size_t i;
    int ret;

    ret = csi_archive_new(&a, err);
    if (ret < 0)
        return ret;
    names = calloc(m->nlayers ? m->nlayers : 1, sizeof(*names));
    if (names == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    snprintf(config_name, sizeof(config_name), "%s.json", m->config.digest + 7);
    ret = csi_archive_add_mem(a, config_name, p->img->config.ptr, p->img->config.len, err);
    for (i = 0; ret == 0 && i < m->nlayers; i++) {
        char *path = NULL;
        uint64_t size = 0;

        if (asprintf(&names[i], "%s.tar", m->layers[i].digest + 7) < 0) {
            names[i] = NULL;
            ret = csi_error_oom(err);
            break;
        }
        if (i < first)
            continue;
        if (stream) {
            ret = csi_archive_add_reader_late(a, names[i], (uint64_t)m->layers[i].size,
                                              csi_pull_slot_size, csi_pull_slot_read_layer,
                                              &p->stream->slots[i], err);
            continue;
        }
        if (transcode) {
            ret = layer_source(&path, &size, p, i, err);
        } else {
            ret = cs_store_blob_path(&path, p->store, m->layers[i].digest, err);
            size = (uint64_t)m->layers[i].size;
        }
        if (ret == 0)
            ret = csi_archive_add_file(a, names[i], path, size, err);
        free(path);
    }
    if (ret == 0)
        ret = csi_docker_archive_manifest(&manifest, config_name, &repo_tag, repo_tag ? 1 : 0,
                                          (const char *const *)names, m->nlayers, err);
    if (ret == 0)
        ret = csi_archive_add_mem(a, "manifest.json", manifest.ptr, manifest.len, err);
    if (ret < 0)
        goto out;
    *out = a;
    a = NULL;
out:
    for (i = 0; names != NULL && i < m->nlayers; i++)
        free(names[i]);
    free(names);
    cs_buf_dispose(&manifest);
    csi_archive_free(a);
    return ret;
}

/* The load's body, counted for progress (an event per MiB at most). */
typedef struct counted {
    csi_pull *p;
    csi_archive *a;
    uint64_t sent, total, reported;
} counted;

static long
counted_read(void *payload, char *buf, size_t len, cs_error **err)
{
    counted *c = payload;
    long n = csi_archive_read(c->a, buf, len, err);

    if (n > 0) {
        c->sent += (uint64_t)n;
        /* a layer sent decompressed makes the total known only as the stream reaches it */
        c->total = csi_archive_size(c->a);
        if (c->sent - c->reported >= (1u << 20) || c->sent == c->total) {
            c->reported = c->sent;
            csi_pull_event_bytes(c->p, CS_PULL_LOADING, NULL, c->sent, c->total);
        }
    }
    return n;
}

int
csi_pull_daemon_load(csi_pull *p, csi_archive *a, cs_error **err)
{
    cs_daemon_load_result res = {0};
    counted c = {p, a, 0, csi_archive_size(a), 0};
    int ret;

    csi_pull_event_bytes(p, CS_PULL_LOADING, NULL, 0, c.total);
    ret = cs_daemon_load(p->daemon, counted_read, &c, &res, err);
    cs_daemon_load_result_dispose(&res);
    return ret;
}

static int
load(csi_pull *p, size_t first, const char *repo_tag, cs_error **err)
{
    csi_archive *a = NULL;
    int ret;

    ret = csi_pull_build_archive(&a, p, first, repo_tag, true, false, err);
    if (ret < 0)
        return ret;
    ret = csi_pull_daemon_load(p, a, err);
    csi_archive_free(a);
    return ret;
}

int
csi_pull_deliver_docker(csi_pull *p, cs_error **err)
{
    const char *config = p->img->parsed->config.digest;
    char *familiar = NULL, *name = NULL, outcome[160];
    cs_daemon_image *di = NULL;
    cs_error *e = NULL;
    size_t sent;
    int ret;

    familiar = cs_reference_to_string(p->ref, CS_REF_FAMILIAR);
    name = cs_reference_to_string(p->ref, CS_REF_FAMILIAR | CS_REF_NAME_ONLY);
    if (familiar == NULL || name == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    if (p->daemon_has_ref) {
        ret = csi_pull_add_delivery(p, "docker", "already present, nothing loaded", err);
        goto out;
    }
    if (p->ref->tag == NULL) {
        csi_pull_event(p, CS_PULL_NOTE, "%s names a digest: the daemon image gets no tag",
                       familiar);
    }
    if (p->daemon_has_image) {
        ret = p->ref->tag ? cs_daemon_tag(p->daemon, config, name, p->ref->tag, err) : 0;
        if (ret == 0)
            ret = csi_pull_add_delivery(p, "docker", "image present, tagged", err);
        goto out;
    }
    ret = -1;
    if (p->stream != NULL) {
        /* the load ran during the download */
        ret = p->stream->load_ret;
        if (ret < 0) {
            csi_log(CS_LOG_DEBUG,
                    "the load during the download failed (%s): loading from the "
                    "store",
                    p->stream->load_err ? p->stream->load_err->message : "?");
        }
    }
    if (ret < 0)
        ret = load(p, p->daemon_prefix, p->ref->tag ? familiar : NULL, &e);
    if (ret < 0 && p->daemon_prefix > 0 && ret != CS_EDIGEST && ret != CS_EIO) {
        /* the daemon would not skip the layers it holds: send them all */
        csi_pull_event(p, CS_PULL_NOTE,
                       "the daemon refused the archive without its own layers "
                       "(%s); sending all layers",
                       e->message);
        cs_error_free(e);
        e = NULL;
        ret = csi_pull_fetch_prefix(p, p->daemon_prefix, err);
        if (ret < 0)
            goto out;
        p->res->layers_in_daemon = 0;
        p->daemon_prefix = 0;
        ret = load(p, 0, p->ref->tag ? familiar : NULL, err);
    } else if (ret < 0) {
        *err = e;
        e = NULL;
    }
    if (ret < 0) {
        csi_error_wrap(err, "load into the daemon at %s", cs_daemon_host(p->daemon));
        goto out;
    }
    /* trust, but check: the tag must now name exactly this image */
    if (p->ref->tag != NULL) {
        ret = cs_daemon_image_inspect(&di, p->daemon, familiar, err);
        if (ret < 0)
            goto out;
        if (strcmp(di->id, config) != 0 && !p->dinfo->containerd_store) {
            ret = csi_error_set(err, CS_EPROTO, "after the load, %s names %s in the daemon, not %s",
                                familiar, di->id, config);
            goto out;
        }
    }
    sent = p->img->parsed->nlayers - p->daemon_prefix;
    snprintf(outcome, sizeof(outcome), "loaded as %s (%zu layers sent, %zu already there)",
             familiar, sent, p->daemon_prefix);
    ret = csi_pull_add_delivery(p, "docker", outcome, err);
out:
    cs_error_free(e);
    cs_daemon_image_free(di);
    free(familiar);
    free(name);
    return ret;
}

int
csi_pull_deliver_archive(csi_pull *p, const cs_target *t, cs_error **err)
{
    csi_archive *a = NULL;
    char *familiar = cs_reference_to_string(p->ref, CS_REF_FAMILIAR), *label = NULL;
    int ret;

    if (familiar == NULL)
        return csi_error_oom(err);
    ret = csi_pull_build_archive(&a, p, 0, p->ref->tag ? familiar : NULL, false, false, err);
    if (ret == 0)
        ret = csi_archive_write_file(a, t->path, err);
    if (ret == 0 && asprintf(&label, "archive:%s", t->path) < 0) {
        label = NULL;
        ret = csi_error_oom(err);
    }
    if (ret == 0)
        ret = csi_pull_add_delivery(p, label, "written", err);
    csi_archive_free(a);
    free(familiar);
    free(label);
    return ret;
}

/* ---- OCI image layout (image-spec image-layout.md) -------------------------------------- */

static int
oci_put(const char *dir, const cs_store *store, const char *digest, cs_error **err)
{
    char *src = NULL, *dst = NULL;
    int ret;

    ret = cs_store_blob_path(&src, store, digest, err);
    if (ret < 0)
        return ret;
    if (asprintf(&dst, "%s/blobs/sha256/%s", dir, digest + 7) < 0) {
        free(src);
        return csi_error_oom(err);
    }
    ret = csi_fs_link_or_copy(src, dst, err);
    free(src);
    free(dst);
    return ret;
}

int
csi_pull_deliver_oci(csi_pull *p, const cs_target *t, cs_error **err)
{
    const cs_manifest *m = p->img->parsed;
    const char *tag = t->tag ? t->tag : (p->ref->tag ? p->ref->tag : "latest");
    char *path = NULL, *text = NULL, *label = NULL, *data = NULL;
    json_t *root = NULL, *list, *desc;
    cs_buf oci = CS_BUF_INIT;
    char oci_digest[CS_DIGEST_STRLEN];
    size_t i, len = 0;
    cs_error *e = NULL;
    int ret;

    if (asprintf(&path, "%s/blobs/sha256", t->path) < 0) {
        path = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    ret = csi_fs_mkdirs(path, err);
    free(path);
    path = NULL;
    if (ret < 0)
        goto out;
    /* blobs first, the index last: a reader never sees a ref whose blobs are missing */
    for (i = 0; ret == 0 && i < m->nlayers; i++)
        ret = oci_put(t->path, p->store, m->layers[i].digest, err);
    if (ret == 0)
        ret = oci_put(t->path, p->store, m->config.digest, err);
    /* other OCI tools read only OCI media types from a layout (skopeo's oci: transport skips
     * other descriptors), so a Docker schema2 manifest goes in converted, as skopeo copy
     * does; the config and layers are the same blobs */
    if (ret == 0)
        ret = cs_manifest_to_oci(&oci, p->img->manifest.ptr, p->img->manifest.len, err);
    if (ret == 0)
        ret = cs_store_put_blob(p->store, NULL, oci.ptr, oci.len, oci_digest, err);
    if (ret == 0)
        ret = oci_put(t->path, p->store, oci_digest, err);
    if (ret < 0)
        goto out;
    if (asprintf(&path, "%s/oci-layout", t->path) < 0) {
        path = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    ret = csi_fs_write_atomic(path, "{\"imageLayoutVersion\":\"1.0.0\"}", 30, err);
    free(path);
    path = NULL;
    if (ret < 0)
        goto out;
    if (asprintf(&path, "%s/index.json", t->path) < 0) {
        path = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    ret = csi_fs_read_file(&data, &len, path, 64u << 20, &e);
    if (ret == 0) {
        ret = csi_json_load_object(&root, data, len, 64u << 20, path, err);
        if (ret < 0)
            goto out;
    } else if (ret == CS_ENOTFOUND) {
        root = json_pack("{s:i,s:s,s:[]}", "schemaVersion", 2, "mediaType", CS_MEDIA_OCI_INDEX,
                         "manifests");
    } else {
        *err = e;
        e = NULL;
        goto out;
    }
    list = json_object_get(root, "manifests");
    if (!json_is_array(list)) {
        list = json_array();
        json_object_set_new(root, "manifests", list);
    }
    for (i = json_array_size(list); i-- > 0;) {
        const char *name = csi_json_str(json_object_get(json_array_get(list, i), "annotations"),
                                        "org.opencontainers.image.ref.name");

        if (name != NULL && strcmp(name, tag) == 0)
            json_array_remove(list, i);
    }
    desc = json_pack("{s:s,s:s,s:I,s:{s:s}}", "mediaType", CS_MEDIA_OCI_MANIFEST, "digest",
                     oci_digest, "size", (json_int_t)oci.len, "annotations",
                     "org.opencontainers.image.ref.name", tag);
    if (desc == NULL || json_array_append_new(list, desc) != 0) {
        ret = csi_error_oom(err);
        goto out;
    }
    text = json_dumps(root, JSON_COMPACT);
    if (text == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = csi_fs_write_atomic(path, text, strlen(text), err);
    if (ret == 0 && asprintf(&label, "oci:%s:%s", t->path, tag) < 0) {
        label = NULL;
        ret = csi_error_oom(err);
    }
    if (ret == 0)
        ret = csi_pull_add_delivery(p, label, "written", err);
out:
    cs_buf_dispose(&oci);
    cs_error_free(e);
    json_decref(root);
    free(data);
    free(text);
    free(path);
    free(label);
    return ret;
}
