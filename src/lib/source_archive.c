/* docker:IMAGE and archive:FILE (see source_int.h): the daemon's export or the file's bytes
 * go through the stream loader (source_stream.c), then manifest.json ties its records together
 * into the image push sends. A re-push of an image the store already holds needs no export. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cachesync/daemon.h>
#include <cachesync/source.h>
#include "compress.h"
#include "docker_archive.h"
#include "error_int.h"
#include "fsutil.h"
#include "source_int.h"

/* ---- manifest.json ------------------------------------------------------------------------ */

static int
item_config(char **data_out, size_t *len_out, cs_image_config **cfg_out, csi_source_rec **rec_out,
            csi_source_loader *L, const csi_docker_archive_item *item, cs_error **err)
{
    csi_source_rec *r = csi_source_loader_resolve(L, item->config);
    char *data = NULL;
    size_t len = 0;
    int ret;

    if (r == NULL)
        return csi_error_set(err, CS_EPROTO,
                             "manifest.json names config %.200s, which the "
                             "archive does not hold",
                             item->config);
    if (r->kind == CSI_REC_BIG)
        return csi_error_set(err, CS_ELIMIT, "config %.200s exceeds %u bytes", item->config,
                             CS_CONFIG_MAX);
    if (r->kind != CSI_REC_DOC)
        return csi_error_set(err, CS_EPROTO, "config %.200s is a layer, not a JSON document",
                             item->config);
    ret = csi_fs_read_file(&data, &len, r->tmp, CS_CONFIG_MAX, err);
    if (ret < 0)
        return ret;
    ret = cs_image_config_parse(cfg_out, data, len, err);
    if (ret < 0) {
        csi_error_wrap(err, "config %.200s", item->config);
        free(data);
        return ret;
    }
    *data_out = data;
    *len_out = len;
    *rec_out = r;
    return 0;
}

static bool
same_diff_ids(const cs_image_config *cfg, char *const *ids, size_t n)
{
    size_t i;

    if (cfg->ndiff_ids != n)
        return false;
    for (i = 0; i < n; i++) {
        if (strcmp(cfg->diff_ids[i], ids[i]) != 0)
            return false;
    }
    return true;
}

/* Which image of manifest.json is ours: the only one, else the daemon's (by config digest,
 * or on the containerd store, whose image ID is no config digest, by its layers). */
static int
select_item(const csi_docker_archive_item **out, csi_source_loader *L,
            const csi_docker_archive_item *items, size_t n, cs_error **err)
{
    cs_buf names = CS_BUF_INIT;
    size_t i, k;
    int ret;

    if (n == 1) {
        *out = &items[0];
        return 0;
    }
    for (i = 0; i < n && L->want_diff_ids != NULL; i++) {
        csi_source_rec *r = csi_source_loader_resolve(L, items[i].config);
        cs_image_config *cfg = NULL;
        char *data = NULL;
        size_t len;
        bool match;

        if (L->want_config != NULL) {
            match = r != NULL && strcmp(r->digest, L->want_config) == 0;
        } else {
            if (item_config(&data, &len, &cfg, &r, L, &items[i], NULL) < 0)
                continue;
            match = same_diff_ids(cfg, L->want_diff_ids, L->nwant);
            cs_image_config_free(cfg);
            free(data);
        }
        if (match) {
            *out = &items[i];
            return 0;
        }
    }
    for (i = 0; i < n; i++) {
        for (k = 0; k < items[i].nrepo_tags; k++)
            cs_buf_printf(&names, NULL, "%s%.100s", names.len ? ", " : "", items[i].repo_tags[k]);
    }
    if (L->want_diff_ids != NULL)
        ret = csi_error_set(err, CS_EPROTO, "none of the %zu images it holds%s%s%s is %.300s", n,
                            names.len ? " (" : "", names.len ? names.ptr : "", names.len ? ")" : "",
                            L->name);
    else
        ret = csi_error_set(err, CS_EINVAL, "it holds %zu images%s%s%s; push one image per archive",
                            n, names.len ? " (" : "", names.len ? names.ptr : "",
                            names.len ? ")" : "");
    cs_buf_dispose(&names);
    return ret;
}

/* The whole archive was read: tie its files together through manifest.json. */
static int
assemble(cs_source_image **out, csi_source_loader *L, cs_error **err)
{
    csi_docker_archive_item *items = NULL;
    const csi_docker_archive_item *item = NULL;
    cs_image_config *cfg = NULL;
    csi_source_layer *layers = NULL;
    csi_source_rec **lrecs = NULL; /* of each layer */
    size_t nitems = 0, i, ncomp = 0, nreuse = 0, clen = 0;
    char *cdata = NULL;
    csi_source_rec *crec = NULL;
    int ret;

    if (!L->have_manifest) {
        ret = csi_error_set(err, CS_EPROTO,
                            "no manifest.json: not a docker save archive (an OCI layout? use "
                            "oci:DIR)");
        goto out;
    }
    ret =
        csi_docker_archive_parse(&items, &nitems, L->manifest_json.ptr ? L->manifest_json.ptr : "",
                                 L->manifest_json.len, err);
    if (ret == 0)
        ret = select_item(&item, L, items, nitems, err);
    if (ret == 0)
        ret = item_config(&cdata, &clen, &cfg, &crec, L, item, err);
    if (ret < 0)
        goto out;
    if (L->want_config != NULL && strcmp(crec->digest, L->want_config) != 0) {
        ret =
            csi_error_set(err, CS_EDIGEST, "the exported config has digest %s, not the image ID %s",
                          crec->digest, L->want_config);
        goto out;
    }
    if (item->nlayers != cfg->ndiff_ids) {
        ret = csi_error_set(err, CS_EDIGEST,
                            "manifest.json lists %zu layers, the config's rootfs.diff_ids %zu",
                            item->nlayers, cfg->ndiff_ids);
        goto out;
    }
    layers = calloc(item->nlayers + 1, sizeof(*layers));
    lrecs = calloc(item->nlayers + 1, sizeof(*lrecs));
    if (layers == NULL || lrecs == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    for (i = 0; i < item->nlayers; i++) {
        csi_source_rec *r = csi_source_loader_resolve(L, item->layers[i]);

        if (r == NULL) {
            ret = csi_error_set(err, CS_EPROTO,
                                "manifest.json names layer %.200s, which the archive does not "
                                "hold",
                                item->layers[i]);
            goto out;
        }
        if (r->kind == CSI_REC_DOC)
            ret = csi_source_loader_layer(L, r, CSI_COMP_NONE, NULL,
                                          err); /* a layer that did not look it */
        if (ret < 0)
            goto out;
        if (r->kind == CSI_REC_BIG) {
            ret =
                csi_error_set(err, CS_EPROTO, "layer %.200s is neither a tar nor gzip or zstd data",
                              item->layers[i]);
            goto out;
        }
        if (strcmp(r->diff_id, cfg->diff_ids[i]) != 0 || r->kind != CSI_REC_LAYER) {
            ret = csi_error_set(err, CS_EDIGEST,
                                "layer %zu (%.200s) has diff_id %s, but the config says %s", i,
                                item->layers[i], r->diff_id, cfg->diff_ids[i]);
            goto out;
        }
        lrecs[i] = r;
        ncomp += r->how == CSI_HOW_COMPRESSED;
        nreuse += r->how == CSI_HOW_REUSED;
    }
    /* every layer is there or being compressed: wait for the compressions */
    ret = csi_source_pool_wait(L->pool, err);
    if (ret < 0)
        goto out;
    for (i = 0; i < item->nlayers; i++) {
        csi_source_rec *r = lrecs[i];

        if (r->job != 0) {
            csi_source_pool_result(L->pool, r->job - 1, r->blob, &r->blob_size);
            r->job = 0;
        }
        memcpy(layers[i].digest, r->blob, CS_DIGEST_STRLEN);
        layers[i].size = r->blob_size;
    }
    /* byte for byte: the image ID and BuildKit's inline cache live in these bytes */
    ret = cs_store_put_blob(L->store, crec->digest, cdata, clen, NULL, err);
    if (ret == 0)
        ret = csi_source_make_image(out, L->store, L->st, crec->digest, (int64_t)clen, layers,
                                    item->nlayers, err);
    if (ret < 0)
        goto out;
    (*out)->layers_compressed = ncomp;
    (*out)->layers_reused = nreuse;
    (*out)->exported = true;
out:
    if (ret < 0)
        csi_error_wrap(err, "%s", L->origin);
    csi_docker_archive_items_free(items, nitems);
    cs_image_config_free(cfg);
    free(cdata);
    free(layers);
    free(lrecs);
    return ret;
}

/* ---- docker ------------------------------------------------------------------------------- */

/* A re-push of an image whose config and layers the store already has: no export at all.
 * CS_ENOTFOUND (no message) when that is not the case.
 * It needs no word from the daemon on which image store it runs: the classic store's image ID
 * is the config's digest, and the blob of that name, hashed on reading, must be an image
 * config with the image's diff_ids. The containerd store's image ID is its manifest's or
 * index's digest, whose blob here can only be that manifest or index, which has no
 * rootfs.diff_ids (cs_image_config_parse requires them): there it never matches. */
static int
docker_fast_path(cs_source_image **out, cs_store *store, const csi_source_settings *st,
                 const cs_daemon_image *di, cs_error **err)
{
    cs_buf config = CS_BUF_INIT;
    cs_image_config *cfg = NULL;
    csi_source_layer *layers = NULL;
    csi_layermap_view *map = NULL;
    size_t i;
    int ret;

    if (!cs_store_has_blob(store, di->id, -1) ||
        cs_store_read_blob(&config, store, di->id, CS_CONFIG_MAX, NULL) < 0 ||
        cs_image_config_parse(&cfg, config.ptr, config.len, NULL) < 0 ||
        !same_diff_ids(cfg, di->diff_ids, di->ndiff_ids) ||
        csi_layermap_view_open(&map, store, NULL) < 0) {
        ret = CS_ENOTFOUND;
        goto out;
    }
    layers = calloc(di->ndiff_ids + 1, sizeof(*layers));
    if (layers == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    for (i = 0; i < di->ndiff_ids; i++) {
        if (!csi_source_layer_known_in(layers[i].digest, &layers[i].size, store, map,
                                       di->diff_ids[i], st->comp_name)) {
            ret = CS_ENOTFOUND;
            goto out;
        }
    }
    ret = csi_source_make_image(out, store, st, di->id, (int64_t)config.len, layers, di->ndiff_ids,
                                err);
    if (ret == 0)
        (*out)->layers_reused = di->ndiff_ids;
out:
    cs_buf_dispose(&config);
    cs_image_config_free(cfg);
    csi_layermap_view_free(map);
    free(layers);
    return ret;
}

int
csi_source_load_docker(cs_source_image **out, const cs_source *src, cs_store *store,
                       const csi_source_settings *st, cs_error **err)
{
    const cs_daemon_info *info = NULL;
    cs_daemon_image *di = NULL;
    cs_error *terr = NULL;
    cs_daemon *d = NULL;
    char *origin = NULL;
    csi_source_loader L;
    bool classic;
    int ret, tret;

    memset(&L, 0, sizeof(L));
    L.cur.fd = -1;
    ret = cs_daemon_open(&d, st->opts->docker_host, err);
    if (ret == 0)
        ret = cs_daemon_image_inspect(&di, d, src->name, err);
    if (ret < 0)
        goto out;
    /* work files of a push killed after its blobs were all in the store: the fast path
     * below makes none, and nothing else would remove them */
    csi_source_sweep_tmp(store);
    /* before GET /version and /info, the daemon's slowest answers (Docker 20.10 runs runc
     * and docker-init for each, ~15 ms together): an unchanged re-push needs neither */
    ret = docker_fast_path(out, store, st, di, err);
    if (ret != CS_ENOTFOUND)
        goto out;
    ret = cs_daemon_get_info(&info, d, err);
    if (ret < 0)
        goto out;
    /* the classic store's image ID is the config's digest; the containerd store's is its
     * manifest's (or index's), which says nothing of the config */
    classic = !info->containerd_store;
    if (asprintf(&origin, "Docker daemon at %s: export of %.300s", cs_daemon_host(d), src->name) <
        0) {
        origin = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    ret = csi_source_loader_init(&L, store, st, origin, src->name, err);
    if (ret < 0)
        goto out;
    L.from_daemon = true;
    L.want_config = classic ? di->id : NULL;
    L.want_diff_ids = di->diff_ids;
    L.nwant = di->ndiff_ids;
    L.progress_what = "export";
    csi_source_progress(st, "export", 0, 0);
    /* by ID on the classic store: the very image inspected, even if the tag moves meanwhile */
    tret = cs_daemon_image_save(d, classic ? di->id : src->name, csi_source_loader_feed, &L, &terr);
    ret = csi_source_loader_end(&L, tret, terr, err);
    if (ret == 0) {
        csi_source_progress(st, "export", L.total_in, L.total_in);
        ret = assemble(out, &L, err);
    }
out:
    csi_source_loader_dispose(&L);
    free(origin);
    cs_daemon_image_free(di);
    cs_daemon_free(d);
    return ret;
}

/* ---- archive ------------------------------------------------------------------------------ */

int
csi_source_load_archive(cs_source_image **out, const cs_source *src, cs_store *store,
                        const csi_source_settings *st, cs_error **err)
{
    csi_decompressor *dec = NULL;
    cs_error *terr = NULL;
    char *origin = NULL, *in = NULL;
    struct stat sb;
    csi_source_loader L;
    uint64_t done = 0, reported = 0, total;
    int fd = -1, ret, tret = 0;

    memset(&L, 0, sizeof(L));
    L.cur.fd = -1;
    if (asprintf(&origin, "archive %.1000s", src->path) < 0) {
        origin = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    fd = open(src->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ret = errno == ENOENT ? csi_error_set(err, CS_ENOTFOUND, "%s does not exist", src->path)
                              : csi_error_errno(err, errno, "open %s", src->path);
        goto out;
    }
    if (fstat(fd, &sb) != 0) {
        ret = csi_error_errno(err, errno, "stat %s", src->path);
        goto out;
    }
    /* a pipe is fine too (`docker save app | cachesync push archive:/dev/stdin REF`): the
     * archive is read once, front to back */
    if (S_ISDIR(sb.st_mode)) {
        ret = csi_error_set(err, CS_EINVAL, "%s is a directory (an OCI layout? use oci:%s)",
                            src->path, src->path);
        goto out;
    }
    total = S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size : 0;
    ret = csi_source_loader_init(&L, store, st, origin, src->path, err);
    if (ret == 0) {
        in = malloc(CSI_SOURCE_IO_BUF);
        if (in == NULL)
            ret = csi_error_oom(err);
    }
    /* `docker load` takes a gzip'd or zstd'd archive too */
    if (ret == 0)
        ret =
            csi_decompressor_new(&dec, CSI_COMP_AUTO, UINT64_MAX, csi_source_loader_feed, &L, err);
    if (ret < 0)
        goto out;
    csi_source_progress(st, "read", 0, total);
    for (;;) {
        ssize_t r = read(fd, in, CSI_SOURCE_IO_BUF);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            tret = csi_error_errno(&terr, errno, "read %s", src->path);
            break;
        }
        if (r == 0) {
            tret = csi_decompressor_finish(dec, &terr);
            break;
        }
        tret = csi_decompressor_feed(dec, in, (size_t)r, &terr);
        if (tret < 0)
            break;
        done += (uint64_t)r;
        if (done - reported >= CSI_SOURCE_PROGRESS_STEP) {
            csi_source_progress(st, "read", done, total);
            reported = done;
        }
    }
    ret = csi_source_loader_end(&L, tret, terr, err);
    if (ret == 0) {
        csi_source_progress(st, "read", done, total);
        ret = assemble(out, &L, err);
    }
out:
    if (fd >= 0)
        close(fd);
    csi_decompressor_free(dec);
    csi_source_loader_dispose(&L);
    free(origin);
    free(in);
    return ret;
}
