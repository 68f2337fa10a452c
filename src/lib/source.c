/* Image sources for push: see include/cachesync/source.h. The docker-archive layouts are in
 * docs/reference/registry-and-daemon-protocols.md section 4: Docker <= 24 writes
 * <v1id>/layer.tar (uncompressed) + <config hex>.json + manifest.json + repositories, Docker
 * 25+ adds an OCI layout and writes every file as blobs/sha256/<hex>, and the containerd image
 * store exports the registry's compressed blobs as they are. manifest.json, which all of them
 * write and which comes last, is what ties the files together. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include <cachesync/daemon.h>
#include <cachesync/source.h>
#include "compress.h"
#include "docker_archive.h"
#include "error_int.h"
#include "fsutil.h"
#include "json.h"
#include "jsonstream.h"
#include "layermap.h"
#include "log_int.h"
#include "tar.h"

#define INDEX_MAX (64u * 1024 * 1024) /* an OCI layout's index.json */
#define MAX_ENTRIES 16384             /* files kept track of in one docker-archive */
#define LINK_HOPS 8                   /* links followed from one name */
#define IO_BUF (1u << 20)
#define PROGRESS_STEP (4u << 20)
/* The end of the stream kept to find the JSON error the daemon appends when an export fails
 * after it started; after a failure, how much more is read looking for it. */
#define TAIL_MAX 8192
#define DRAIN_MAX (64u * 1024)

/* ---- parsing ----------------------------------------------------------------------------- */

int
cs_source_parse(cs_source *out, const char *spec, cs_error **err)
{
    cs_source s = {0};
    const char *rest, *colon;
    bool tagged;
    int ret = 0;

    if (spec == NULL || *spec == '\0')
        return csi_error_set(err, CS_EINVAL, "no source given");
    if (strncmp(spec, "oci:", 4) == 0) {
        rest = spec + 4;
        s.kind = CS_SOURCE_OCI;
        /* oci:DIR[:TAG], as skopeo reads it: the last ':' splits off a tag */
        colon = strrchr(rest, ':');
        tagged = colon != NULL && colon != rest && colon[1] != '\0' && strchr(colon, '/') == NULL;
        s.path = tagged ? strndup(rest, (size_t)(colon - rest)) : strdup(rest);
        s.tag = tagged ? strdup(colon + 1) : NULL;
        if (s.path == NULL || (tagged && s.tag == NULL))
            ret = csi_error_oom(err);
    } else if (strncmp(spec, "archive:", 8) == 0) {
        s.kind = CS_SOURCE_ARCHIVE;
        s.path = strdup(spec + 8);
        if (s.path == NULL)
            ret = csi_error_oom(err);
    } else {
        s.kind = CS_SOURCE_DOCKER;
        s.name = strdup(strncmp(spec, "docker:", 7) == 0 ? spec + 7 : spec);
        if (s.name == NULL)
            ret = csi_error_oom(err);
    }
    if (ret < 0)
        goto out;
    if ((s.kind == CS_SOURCE_DOCKER && *s.name == '\0') ||
        (s.kind != CS_SOURCE_DOCKER && *s.path == '\0')) {
        ret = csi_error_set(err, CS_EINVAL,
                            "invalid source \"%.100s\": expected docker:IMAGE, oci:DIR[:TAG], "
                            "archive:FILE or an image name",
                            spec);
        goto out;
    }
    *out = s;
    memset(&s, 0, sizeof(s));
out:
    cs_source_dispose(&s);
    return ret;
}

void
cs_source_dispose(cs_source *s)
{
    if (s == NULL)
        return;
    free(s->name);
    free(s->path);
    free(s->tag);
    memset(s, 0, sizeof(*s));
}

static void
blob_dispose(cs_source_blob *b)
{
    free(b->digest);
    free(b->media_type);
    free(b->path);
    memset(b, 0, sizeof(*b));
}

void
cs_source_image_free(cs_source_image *img)
{
    size_t i;

    if (img == NULL)
        return;
    free(img->manifest);
    free(img->manifest_media_type);
    blob_dispose(&img->config);
    for (i = 0; i < img->nlayers; i++)
        blob_dispose(&img->layers[i]);
    free(img->layers);
    free(img);
}

/* ---- shared helpers ---------------------------------------------------------------------- */

/* The options in force, with defaults filled in. */
typedef struct settings {
    const cs_source_options *opts; /* never NULL */
    csi_compression comp;
    const char *comp_name;
} settings;

static int
settings_init(settings *st, const cs_source_options *opts, cs_error **err)
{
    static const cs_source_options none = {0};
    const char *c;

    st->opts = opts ? opts : &none;
    c = st->opts->compression;
    if (c == NULL || strcmp(c, "gzip") == 0) {
        st->comp = CSI_COMP_GZIP;
        st->comp_name = "gzip";
    } else if (strcmp(c, "zstd") == 0) {
        st->comp = CSI_COMP_ZSTD;
        st->comp_name = "zstd";
    } else {
        return csi_error_set(err, CS_EINVAL, "unknown compression \"%.40s\": use gzip or zstd", c);
    }
    return 0;
}

static void
progress(const settings *st, const char *what, uint64_t done, uint64_t total)
{
    if (st->opts->progress != NULL)
        st->opts->progress(st->opts->progress_payload, what, done, total);
}

static bool
strv_has(char *const *v, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0)
            return true;
    }
    return false;
}

static int
write_all(int fd, const char *p, size_t n, const char *path, cs_error **err)
{
    ssize_t w;

    while (n > 0) {
        w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return csi_error_errno(err, errno, "write %s", path);
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A blob descriptor for the image, its file in the store. */
static int
store_blob(cs_source_blob *b, cs_store *store, const char *digest, int64_t size,
           const char *media_type, cs_error **err)
{
    b->size = size;
    b->digest = strdup(digest);
    b->media_type = strdup(media_type);
    if (b->digest == NULL || b->media_type == NULL)
        return csi_error_oom(err);
    return cs_store_blob_path(&b->path, store, digest, err);
}

/* The layer the store already compressed DIFF_ID into, if it still holds it. */
static bool
layer_known(char blob[CS_DIGEST_STRLEN], int64_t *size, cs_store *store, const char *diff_id,
            const char *comp_name)
{
    return csi_layermap_get(blob, size, store, diff_id, comp_name, NULL) == 0 &&
           cs_store_has_blob(store, blob, *size);
}

typedef struct built_layer {
    char digest[CS_DIGEST_STRLEN];
    int64_t size;
} built_layer;

/* The manifest push sends for a config and compressed layers in the store: Docker schema2 for
 * gzip (what `docker push` writes, so every registry and tool takes it), OCI for zstd (zstd
 * layers have a media type in the OCI spec only; Docker's is a containerd constant). */
static int
make_image(cs_source_image **out, cs_store *store, const settings *st, const char *config_digest,
           int64_t config_size, const built_layer *layers, size_t n, cs_error **err)
{
    bool oci = st->comp == CSI_COMP_ZSTD;
    const char *mt = oci ? CS_MEDIA_OCI_MANIFEST : CS_MEDIA_DOCKER_MANIFEST;
    const char *ct = oci ? CS_MEDIA_OCI_CONFIG : CS_MEDIA_DOCKER_CONFIG;
    const char *lt = oci ? CS_MEDIA_OCI_LAYER_ZSTD : CS_MEDIA_DOCKER_LAYER_GZIP;
    cs_source_image *img;
    cs_buf m = CS_BUF_INIT;
    size_t i;
    int ret;

    img = calloc(1, sizeof(*img));
    if (img == NULL)
        return csi_error_oom(err);
    if (n > 0) {
        img->layers = calloc(n, sizeof(*img->layers));
        if (img->layers == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
    }
    /* digests are validated and media types constant: nothing here needs JSON escaping */
    ret = cs_buf_printf(&m, err,
                        "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
                        "\"%s\",\"digest\":\"%s\",\"size\":%lld},\"layers\":[",
                        mt, ct, config_digest, (long long)config_size);
    for (i = 0; ret == 0 && i < n; i++)
        ret = cs_buf_printf(&m, err, "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%lld}",
                            i ? "," : "", lt, layers[i].digest, (long long)layers[i].size);
    if (ret == 0)
        ret = cs_buf_puts(&m, "]}", err);
    if (ret == 0)
        ret = cs_digest_buffer(img->manifest_digest, m.ptr, m.len, err);
    if (ret == 0)
        ret = store_blob(&img->config, store, config_digest, config_size, ct, err);
    for (i = 0; ret == 0 && i < n; i++) {
        ret = store_blob(&img->layers[i], store, layers[i].digest, layers[i].size, lt, err);
        img->nlayers = i + 1;
    }
    if (ret < 0)
        goto out;
    img->manifest_len = m.len;
    img->manifest = cs_buf_detach(&m);
    img->manifest_media_type = strdup(mt);
    if (img->manifest == NULL || img->manifest_media_type == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    *out = img;
    img = NULL;
out:
    cs_buf_dispose(&m);
    cs_source_image_free(img);
    return ret;
}

/* ---- writing blobs into the store ---------------------------------------------------------- */

static int
tmp_dir(char **out, cs_store *store, cs_error **err)
{
    if (asprintf(out, "%s/tmp", cs_store_dir(store)) < 0) {
        *out = NULL;
        return csi_error_oom(err);
    }
    return csi_fs_mkdirs(*out, err);
}

/* A new empty file in DIR; *PATH_OUT malloc'd. */
static int
tmp_file(int *fd_out, char **path_out, const char *dir, const char *prefix, cs_error **err)
{
    char *path = NULL;
    int fd;

    if (asprintf(&path, "%s/%s-XXXXXX", dir, prefix) < 0)
        return csi_error_oom(err);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        int ret = csi_error_errno(err, errno, "create %s", path);

        free(path);
        return ret;
    }
    *fd_out = fd;
    *path_out = path;
    return 0;
}

/* TMP (a file in the store's tmp/, on the store's file system) holds exactly the bytes of
 * DIGEST, hashed as they were written: make it that blob. This is cs_store_put_blob for a
 * file whose digest was only known once it was complete. */
static int
commit_blob(cs_store *store, const char *tmp, const char *digest, cs_error **err)
{
    char *path = NULL, *dir = NULL;
    int fd, ret;

    ret = cs_store_blob_path(&path, store, digest, err);
    if (ret < 0)
        return ret;
    fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
        ret = csi_error_errno(err, errno, "sync %s", tmp);
        goto out;
    }
    /* an existing blob has the same bytes: replacing it is harmless and atomic */
    if (rename(tmp, path) != 0) {
        ret = csi_error_errno(err, errno, "rename %s to %s", tmp, path);
        goto out;
    }
    if (asprintf(&dir, "%s/blobs/sha256", cs_store_dir(store)) >= 0)
        csi_fs_fsync_dir(dir);
out:
    if (fd >= 0)
        close(fd);
    free(dir);
    free(path);
    return ret;
}

typedef struct hash_file {
    int fd;
    const char *path;
    cs_hasher *h;
    uint64_t n;
} hash_file;

static int
hash_file_write(void *payload, const char *data, size_t len, cs_error **err)
{
    hash_file *hf = payload;
    int ret = write_all(hf->fd, data, len, hf->path, err);

    if (ret == 0) {
        cs_hasher_update(hf->h, data, len);
        hf->n += len;
    }
    return ret;
}

static int
to_compressor(void *payload, const char *data, size_t len, cs_error **err)
{
    return csi_compressor_feed(payload, data, len, err);
}

/* Compress the layer file SRC (uncompressed, or compressed some other way) into a new store
 * blob; fixed buffers whatever its size. */
static int
compress_into_store(char digest_out[CS_DIGEST_STRLEN], int64_t *size_out, cs_store *store,
                    const settings *st, const char *tmpdir, const char *src, uint64_t src_size,
                    const char *diff_id, char *buf, cs_error **err)
{
    hash_file hf = {-1, NULL, NULL, 0};
    csi_decompressor *dec = NULL;
    csi_compressor *comp = NULL;
    char *tmp = NULL, what[40];
    uint64_t done = 0, reported = 0;
    int in = -1, ret;

    snprintf(what, sizeof(what), "compress %.19s", diff_id);
    ret = cs_hasher_new(&hf.h, err);
    if (ret == 0)
        ret = tmp_file(&hf.fd, &tmp, tmpdir, "blob", err);
    if (ret < 0)
        goto out;
    hf.path = tmp;
    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        ret = csi_error_errno(err, errno, "open %s", src);
        goto out;
    }
    ret = csi_compressor_new(&comp, st->comp, st->opts->level, hash_file_write, &hf, err);
    if (ret == 0)
        ret = csi_decompressor_new(&dec, CSI_COMP_AUTO, UINT64_MAX, to_compressor, comp, err);
    if (ret < 0)
        goto out;
    progress(st, what, 0, src_size);
    for (;;) {
        ssize_t r = read(in, buf, IO_BUF);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ret = csi_error_errno(err, errno, "read %s", src);
            goto out;
        }
        if (r == 0)
            break;
        ret = csi_decompressor_feed(dec, buf, (size_t)r, err);
        if (ret < 0)
            goto out;
        done += (uint64_t)r;
        if (done - reported >= PROGRESS_STEP) {
            progress(st, what, done, src_size);
            reported = done;
        }
    }
    ret = csi_decompressor_finish(dec, err);
    if (ret == 0)
        ret = csi_compressor_finish(comp, err);
    if (ret < 0)
        goto out;
    progress(st, what, done, src_size);
    ret = close(hf.fd);
    hf.fd = -1;
    if (ret != 0) {
        ret = csi_error_errno(err, errno, "close %s", tmp);
        goto out;
    }
    cs_hasher_final(hf.h, digest_out);
    ret = commit_blob(store, tmp, digest_out, err);
    if (ret < 0)
        goto out;
    *size_out = (int64_t)hf.n;
out:
    if (in >= 0)
        close(in);
    if (hf.fd >= 0)
        close(hf.fd);
    if (ret < 0 && tmp != NULL)
        unlink(tmp);
    csi_decompressor_free(dec);
    csi_compressor_free(comp);
    cs_hasher_free(hf.h);
    free(tmp);
    return ret;
}

/* ---- reading a docker-archive stream ------------------------------------------------------- */

enum rec_kind {
    REC_DOC,    /* a small file kept in tmp/ until manifest.json says what it is */
    REC_BIG,    /* neither a layer nor small: only its digest was kept */
    REC_LAYER,  /* a layer whose blob is in the store */
    REC_UNUSED, /* a layer the image does not have (another platform's): dropped */
    REC_LINK,   /* a symlink or hard link to another entry of the archive */
};

enum rec_how { HOW_NONE, HOW_REUSED, HOW_COMPRESSED, HOW_AS_IS };

/* One file of the archive. */
typedef struct rec {
    char *name; /* cleaned: no "./", no trailing '/' */
    enum rec_kind kind;
    char *link; /* REC_LINK: the cleaned target, NULL when it leaves the archive */
    char *tmp;  /* REC_DOC: its bytes */
    char digest[CS_DIGEST_STRLEN]; /* of its bytes */
    uint64_t size;
    char diff_id[CS_DIGEST_STRLEN]; /* REC_LAYER, REC_UNUSED */
    char blob[CS_DIGEST_STRLEN];    /* REC_LAYER: the compressed blob */
    int64_t blob_size;
    enum rec_how how;
} rec;

enum cur_mode { CUR_SKIP, CUR_MANIFEST, CUR_FILE };

/* The entry whose data is streaming. */
typedef struct cur_file {
    enum cur_mode mode;
    size_t rec; /* CUR_FILE: index in recs */
    uint64_t size, got;
    unsigned char head[CSI_TAR_BLOCK]; /* collected before deciding what the file is */
    size_t head_len;
    bool started;
    bool layer;       /* a tar or compressed data */
    bool verify_only; /* a layer named by its digest whose blob the store holds: hash only */
    bool name_digest_set;
    char name_digest[CS_DIGEST_STRLEN]; /* blobs/sha256/<hex> names its content */
    csi_compression sniffed;
    int fd;
    char *tmp;
    csi_decompressor *dec; /* compressed layers: for the diff_id */
} cur_file;

typedef struct loader {
    cs_store *store;
    const settings *st;
    char *tmpdir;
    const char *origin; /* "Docker daemon at unix://...: export of IMAGE", "archive FILE" */
    const char *name;   /* the image or file */
    bool from_daemon;
    /* what the daemon promised, for docker sources */
    const char *want_config; /* the image ID when it is the config's digest */
    char *const *want_diff_ids;
    size_t nwant;

    csi_tar_reader *tar;
    rec *recs;
    size_t nrecs, caprecs;
    cs_buf manifest_json;
    bool have_manifest;
    cur_file cur;
    cs_hasher *raw, *diff;
    char *buf; /* IO_BUF bytes for compression: never the buffer the stream is read into,
                * which the tar reader is still walking while a layer is compressed */

    /* the stream */
    bool failed;    /* the tar reader stopped: FAIL_ERR says why */
    bool cb_failed; /* ... because one of our callbacks failed, not the tar's structure */
    cs_error *fail_err;
    int fail_code;
    uint64_t drained;
    bool trailing; /* non-zero bytes after the end-of-archive marker */
    char tail[TAIL_MAX];
    uint64_t total_in;
    const char *progress_what; /* "export": report stream bytes */
    uint64_t progress_last;
} loader;

/* "./a/./b/" -> "a/b"; NAME already passed csi_tar_path_is_safe. */
static char *
clean_name(const char *name)
{
    char *out = malloc(strlen(name) + 1), *o = out;
    const char *p = name;

    if (out == NULL)
        return NULL;
    while (*p != '\0') {
        size_t n = strcspn(p, "/");

        if (!(n == 1 && p[0] == '.') && n > 0) {
            if (o != out)
                *o++ = '/';
            memcpy(o, p, n);
            o += n;
        }
        p += n;
        if (*p == '/')
            p++;
    }
    *o = '\0';
    return out;
}

/* Where a link entry points, as an archive name: a symlink's TARGET is relative to the link's
 * directory, a hard link's to the archive's root. NULL (not an error) when it leaves the
 * archive; *OOM set when out of memory. */
static char *
link_target(const char *link_name, const char *target, bool symlink, bool *oom)
{
    char *joined = NULL, *out = NULL, *o;
    const char *slash = strrchr(link_name, '/'), *p;
    size_t dir_len = symlink && slash != NULL ? (size_t)(slash - link_name) : 0;

    *oom = false;
    if (target[0] == '/' || target[0] == '\0')
        return NULL;
    if (asprintf(&joined, "%.*s%s%s", (int)dir_len, link_name, dir_len ? "/" : "", target) < 0) {
        *oom = true;
        return NULL;
    }
    out = malloc(strlen(joined) + 1);
    if (out == NULL) {
        *oom = true;
        goto out;
    }
    o = out;
    for (p = joined; *p != '\0';) {
        size_t n = strcspn(p, "/");

        if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (o == out) {
                free(out);
                out = NULL;
                goto out;
            }
            while (o > out && o[-1] != '/')
                o--;
            if (o > out)
                o--;
        } else if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (o != out)
                *o++ = '/';
            memcpy(o, p, n);
            o += n;
        }
        p += n;
        if (*p == '/')
            p++;
    }
    *o = '\0';
    if (o == out) {
        free(out);
        out = NULL;
    }
out:
    free(joined);
    return out;
}

static rec *
find_rec(loader *L, const char *name)
{
    size_t i;

    for (i = 0; i < L->nrecs; i++) {
        if (strcmp(L->recs[i].name, name) == 0)
            return &L->recs[i];
    }
    return NULL;
}

/* The file NAME (a path from manifest.json, already checked safe) stands for, links followed;
 * NULL when there is none. */
static rec *
resolve(loader *L, const char *name)
{
    char *clean = clean_name(name);
    rec *r = clean ? find_rec(L, clean) : NULL;
    int hops;

    for (hops = 0; r != NULL && r->kind == REC_LINK && hops < LINK_HOPS; hops++)
        r = r->link ? find_rec(L, r->link) : NULL;
    free(clean);
    return r != NULL && r->kind != REC_LINK ? r : NULL;
}

/* Takes NAME. */
static int
add_rec(rec **out, loader *L, char *name, cs_error **err)
{
    rec *r;

    if (find_rec(L, name) != NULL) {
        int ret = csi_error_set(err, CS_EPROTO, "the archive holds %.200s twice", name);

        free(name);
        return ret;
    }
    if (L->nrecs >= MAX_ENTRIES) {
        free(name);
        return csi_error_set(err, CS_ELIMIT, "the archive holds over %d files", MAX_ENTRIES);
    }
    if (L->nrecs == L->caprecs) {
        size_t cap = L->caprecs ? L->caprecs * 2 : 32;

        r = realloc(L->recs, cap * sizeof(*r));
        if (r == NULL) {
            free(name);
            return csi_error_oom(err);
        }
        L->recs = r;
        L->caprecs = cap;
    }
    r = &L->recs[L->nrecs++];
    memset(r, 0, sizeof(*r));
    r->name = name;
    *out = r;
    return 0;
}

/* Files docker save writes that are not blobs: nothing we need is in them. */
static bool
is_metadata(const char *name)
{
    const char *slash = strchr(name, '/');

    if (strcmp(name, "repositories") == 0 || strcmp(name, "index.json") == 0 ||
        strcmp(name, "oci-layout") == 0)
        return true;
    /* legacy <v1id>/VERSION and <v1id>/json */
    return slash != NULL && strchr(slash + 1, '/') == NULL &&
           (strcmp(slash + 1, "VERSION") == 0 || strcmp(slash + 1, "json") == 0);
}

static bool
looks_like_tar(const unsigned char *head, size_t len)
{
    size_t i;

    if (len < CSI_TAR_BLOCK)
        return false;
    if (memcmp(head + 257, "ustar", 5) == 0)
        return true;
    /* an empty layer is just the end-of-archive marker */
    for (i = 0; i < len; i++) {
        if (head[i] != 0)
            return false;
    }
    return true;
}

static void
cur_reset(loader *L)
{
    cur_file *c = &L->cur;

    if (c->fd >= 0)
        close(c->fd);
    if (c->tmp != NULL)
        unlink(c->tmp);
    free(c->tmp);
    csi_decompressor_free(c->dec);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->mode = CUR_SKIP;
}

static int
diff_sink(void *payload, const char *data, size_t len, cs_error **err)
{
    loader *L = payload;

    cs_hasher_update(L->diff, data, len);
    return 0;
}

/* A layer file is complete (R's tmp, digest and diff_id set; SNIFFED its compression): find
 * or make its compressed blob. */
static int
process_layer(loader *L, rec *r, csi_compression sniffed, cs_error **err)
{
    const settings *st = L->st;
    int ret = 0;

    if (L->want_diff_ids != NULL && !strv_has(L->want_diff_ids, L->nwant, r->diff_id)) {
        /* not this image's (a multi-platform export): nothing to keep */
        r->kind = REC_UNUSED;
        goto out;
    }
    if (layer_known(r->blob, &r->blob_size, L->store, r->diff_id, st->comp_name)) {
        csi_log(CS_LOG_DEBUG, "layer %s: %s blob %s, already in the store", r->diff_id,
                st->comp_name, r->blob);
        r->how = HOW_REUSED;
        r->kind = REC_LAYER;
        goto out;
    }
    if (sniffed == st->comp) {
        /* already what we push (the containerd store exports registry blobs as they are):
         * the same bytes, so the digest the registry may already hold */
        ret = commit_blob(L->store, r->tmp, r->digest, err);
        if (ret < 0)
            goto out;
        free(r->tmp);
        r->tmp = NULL;
        memcpy(r->blob, r->digest, CS_DIGEST_STRLEN);
        r->blob_size = (int64_t)r->size;
        r->how = HOW_AS_IS;
    } else {
        ret = compress_into_store(r->blob, &r->blob_size, L->store, st, L->tmpdir, r->tmp, r->size,
                                  r->diff_id, L->buf, err);
        if (ret < 0)
            goto out;
        r->how = HOW_COMPRESSED;
    }
    r->kind = REC_LAYER;
    csi_log(CS_LOG_DEBUG, "layer %s: %s blob %s (%lld bytes)%s", r->diff_id, st->comp_name, r->blob,
            (long long)r->blob_size, r->how == HOW_AS_IS ? ", exported so" : ", compressed now");
    {
        cs_error *merr = NULL;

        /* the blob is safely stored; forgetting the mapping costs a later run time only */
        if (csi_layermap_put(L->store, r->diff_id, st->comp_name, r->blob, r->blob_size, &merr) < 0)
            csi_log(CS_LOG_WARN, "layer map: %s", merr ? merr->message : "update failed");
        cs_error_free(merr);
    }
out:
    if (r->tmp != NULL) {
        unlink(r->tmp);
        free(r->tmp);
        r->tmp = NULL;
    }
    return ret;
}

static int
file_write(loader *L, const void *data, size_t len, cs_error **err)
{
    cur_file *c = &L->cur;
    int ret = 0;

    cs_hasher_update(L->raw, data, len);
    if (c->fd >= 0)
        ret = write_all(c->fd, data, len, c->tmp, err);
    if (ret == 0 && c->dec != NULL)
        ret = csi_decompressor_feed(c->dec, data, len, err);
    return ret;
}

/* Enough of the file is known (its first block, or all of a smaller one) to decide what it is. */
static int
file_start(loader *L, cs_error **err)
{
    cur_file *c = &L->cur;
    rec *r = &L->recs[c->rec];
    char blob[CS_DIGEST_STRLEN];
    int64_t bsize;
    int ret = 0;

    c->started = true;
    c->sniffed = csi_compress_sniff(c->head, c->head_len);
    c->layer = c->sniffed != CSI_COMP_NONE || looks_like_tar(c->head, c->head_len);
    if (strncmp(r->name, "blobs/sha256/", 13) == 0 && strchr(r->name + 13, '/') == NULL) {
        snprintf(c->name_digest, sizeof(c->name_digest), "sha256:%.64s", r->name + 13);
        c->name_digest_set =
            cs_digest_validate(c->name_digest, NULL) == 0 && strlen(r->name + 13) == 64;
    }
    /* Docker 25+ names an uncompressed layer by its diff_id: when the store has its blob,
     * checking the bytes is all there is to do */
    if (c->layer && c->sniffed == CSI_COMP_NONE && c->name_digest_set &&
        (L->want_diff_ids == NULL || strv_has(L->want_diff_ids, L->nwant, c->name_digest)) &&
        layer_known(blob, &bsize, L->store, c->name_digest, L->st->comp_name))
        c->verify_only = true;
    else if (c->layer || c->size <= CS_CONFIG_MAX)
        ret = tmp_file(&c->fd, &c->tmp, L->tmpdir, "entry", err);
    if (ret == 0 && c->layer && c->sniffed != CSI_COMP_NONE)
        ret = csi_decompressor_new(&c->dec, c->sniffed, UINT64_MAX, diff_sink, L, err);
    if (ret == 0)
        ret = file_write(L, c->head, c->head_len, err);
    return ret;
}

static int
file_end(loader *L, cs_error **err)
{
    cur_file *c = &L->cur;
    rec *r = &L->recs[c->rec];
    int ret = 0;

    if (!c->started) {
        ret = file_start(L, err);
        if (ret < 0)
            goto out;
    }
    if (c->dec != NULL) {
        ret = csi_decompressor_finish(c->dec, err);
        if (ret < 0) {
            csi_error_wrap(err, "archive entry %.200s", r->name);
            goto out;
        }
        cs_hasher_final(L->diff, r->diff_id);
    }
    cs_hasher_final(L->raw, r->digest);
    r->size = c->size;
    if (c->dec == NULL)
        memcpy(r->diff_id, r->digest, CS_DIGEST_STRLEN);
    if (c->name_digest_set && strcmp(r->digest, c->name_digest) != 0) {
        ret = csi_error_set(err, CS_EDIGEST, "archive entry %.200s has content with digest %s",
                            r->name, r->digest);
        goto out;
    }
    if (c->fd >= 0) {
        if (close(c->fd) != 0) {
            c->fd = -1;
            ret = csi_error_errno(err, errno, "close %s", c->tmp);
            goto out;
        }
        c->fd = -1;
    }
    if (c->verify_only) {
        r->kind = REC_LAYER;
        ret = layer_known(r->blob, &r->blob_size, L->store, r->diff_id, L->st->comp_name)
                  ? 0
                  : csi_error_set(err, CS_ENOTFOUND, "layer %s left the store", r->diff_id);
        r->how = HOW_REUSED;
        csi_log(CS_LOG_DEBUG, "layer %s: checked, %s blob %s already in the store", r->diff_id,
                L->st->comp_name, r->blob);
        goto out;
    }
    r->tmp = c->tmp; /* the record owns it now */
    c->tmp = NULL;
    if (c->layer)
        ret = process_layer(L, r, c->sniffed, err);
    else
        r->kind = r->tmp != NULL ? REC_DOC : REC_BIG;
out:
    cur_reset(L);
    return ret;
}

static int
on_entry(void *payload, const csi_tar_entry *e, cs_error **err)
{
    loader *L = payload;
    char *name;
    rec *r;
    bool oom;
    int ret;

    cur_reset(L);
    /* `tar -C dir -cf x .` starts with the directory "./" itself */
    if (e->typeflag == CSI_TAR_DIR && strspn(e->name, "./") == strlen(e->name) &&
        strstr(e->name, "..") == NULL)
        return 0;
    if (!csi_tar_path_is_safe(e->name))
        return csi_error_set(err, CS_EPROTO, "tar entry with an unsafe path \"%.200s\"", e->name);
    if (e->typeflag == CSI_TAR_DIR)
        return 0;
    name = clean_name(e->name);
    if (name == NULL)
        return csi_error_oom(err);
    if (e->typeflag == CSI_TAR_SYMLINK || e->typeflag == CSI_TAR_LINK) {
        /* docker save <= 24 links a layer seen twice to its first copy, skopeo every
         * <v1id>/layer.tar to its blob: a link only ever names another entry, never a file
         * outside the archive (nothing is extracted) */
        ret = add_rec(&r, L, name, err);
        if (ret < 0)
            return ret;
        r->kind = REC_LINK;
        r->link = link_target(r->name, e->linkname, e->typeflag == CSI_TAR_SYMLINK, &oom);
        return oom ? csi_error_oom(err) : 0;
    }
    if (e->typeflag != CSI_TAR_REG && e->typeflag != '7') {
        free(name); /* devices, fifos: never part of an image export */
        return 0;
    }
    if (strcmp(name, "manifest.json") == 0) {
        free(name);
        if (L->have_manifest)
            return csi_error_set(err, CS_EPROTO, "the archive holds manifest.json twice");
        if (e->size > CSI_DOCKER_ARCHIVE_MAX)
            return csi_error_set(err, CS_ELIMIT, "manifest.json of %llu bytes exceeds %d bytes",
                                 (unsigned long long)e->size, CSI_DOCKER_ARCHIVE_MAX);
        L->have_manifest = true;
        L->cur.mode = CUR_MANIFEST;
        return 0;
    }
    if (is_metadata(name)) {
        free(name);
        return 0;
    }
    ret = add_rec(&r, L, name, err);
    if (ret < 0)
        return ret;
    r->kind = REC_BIG; /* until complete */
    L->cur.mode = CUR_FILE;
    L->cur.rec = L->nrecs - 1;
    L->cur.size = e->size;
    if (e->size == 0)
        return file_end(L, err);
    return 0;
}

static int
on_data(void *payload, const csi_tar_entry *e, const char *data, size_t len, cs_error **err)
{
    loader *L = payload;
    cur_file *c = &L->cur;
    size_t n;
    int ret = 0;

    switch (c->mode) {
    case CUR_MANIFEST:
        return cs_buf_append(&L->manifest_json, data, len, err);
    case CUR_FILE:
        break;
    default:
        return 0;
    }
    c->got += len;
    if (!c->started) {
        n = sizeof(c->head) - c->head_len;
        n = n < len ? n : len;
        memcpy(c->head + c->head_len, data, n);
        c->head_len += n;
        data += n;
        len -= n;
        if (c->head_len == sizeof(c->head))
            ret = file_start(L, err);
    }
    if (ret == 0 && len > 0)
        ret = file_write(L, data, len, err);
    if (ret == 0 && c->got == c->size)
        ret = file_end(L, err);
    return ret;
}

/* Callbacks report through the tar reader; remember that the failure was ours. */
static int
on_entry_cb(void *payload, const csi_tar_entry *e, cs_error **err)
{
    int ret = on_entry(payload, e, err);

    if (ret < 0)
        ((loader *)payload)->cb_failed = true;
    return ret;
}

static int
on_data_cb(void *payload, const csi_tar_entry *e, const char *data, size_t len, cs_error **err)
{
    int ret = on_data(payload, e, data, len, err);

    if (ret < 0)
        ((loader *)payload)->cb_failed = true;
    return ret;
}

static void
tail_add(loader *L, const char *data, size_t len)
{
    size_t pos;

    if (len >= TAIL_MAX) {
        data += len - TAIL_MAX;
        L->total_in += len - TAIL_MAX;
        len = TAIL_MAX;
    }
    while (len > 0) {
        size_t n;

        pos = (size_t)(L->total_in % TAIL_MAX);
        n = TAIL_MAX - pos < len ? TAIL_MAX - pos : len;
        memcpy(L->tail + pos, data, n);
        data += n;
        len -= n;
        L->total_in += n;
    }
}

/* Bytes of the stream, in order (the tar, after the archive's decompression if any). */
static int
stream_feed(void *payload, const char *data, size_t len, cs_error **err)
{
    loader *L = payload;
    cs_error *e = NULL;
    size_t i;
    int ret;

    tail_add(L, data, len);
    if (L->progress_what != NULL && L->total_in - L->progress_last >= PROGRESS_STEP) {
        progress(L->st, L->progress_what, L->total_in, 0);
        L->progress_last = L->total_in;
    }
    if (L->failed) {
        /* keep reading a little: the daemon's own error may follow */
        L->drained += len;
        if (L->drained > DRAIN_MAX)
            return csi_error_set(err, CS_ECANCELED, "stopped reading after a failure");
        return 0;
    }
    if (csi_tar_reader_done(L->tar)) {
        for (i = 0; i < len && !L->trailing; i++)
            L->trailing = data[i] != 0;
        return 0;
    }
    ret = csi_tar_reader_feed(L->tar, data, len, &e);
    if (ret < 0) {
        L->failed = true;
        L->fail_code = ret;
        L->fail_err = e;
        cur_reset(L);
    }
    return 0;
}

/* The daemon's error message near the end of the stream (malloc'd), or NULL. */
static char *
daemon_error(const loader *L)
{
    size_t len = L->total_in < TAIL_MAX ? (size_t)L->total_in : TAIL_MAX;
    size_t start = (size_t)(L->total_in % TAIL_MAX), i, tries = 0;
    char *buf, *msg = NULL;

    buf = malloc(len + 1);
    if (buf == NULL)
        return NULL;
    if (len < TAIL_MAX) {
        memcpy(buf, L->tail, len);
    } else {
        memcpy(buf, L->tail + start, TAIL_MAX - start);
        memcpy(buf + TAIL_MAX - start, L->tail, start);
    }
    /* the daemon's message ends the stream (streamformatter.FormatError writes it, then "\r\n"):
     * only a JSON object running to the very end counts, never one inside a layer's data */
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        len--;
    buf[len] = '\0';
    for (i = len; i-- > 0 && msg == NULL && tries < 64;) {
        json_error_t jerr;
        csi_engine_msg m;
        const char *text;
        json_t *o;

        if (buf[i] != '{' || i + 1 >= len || buf[i + 1] != '"')
            continue;
        tries++;
        o = json_loadb(buf + i, len - i, 0, &jerr);
        if (json_is_object(o)) {
            csi_engine_msg_classify(&m, o);
            text = m.error ? m.error : csi_json_str(o, "message");
            if (text != NULL)
                msg = strndup(text, 600);
        }
        json_decref(o);
    }
    free(buf);
    return msg;
}

/* The stream is over (TRANSFER_RET: how its transport ended; TERR its error, taken). */
static int
stream_end(loader *L, int transfer_ret, cs_error *terr, cs_error **err)
{
    cs_error *e = NULL;
    char *derr = NULL;
    int ret = 0;

    if (L->failed || transfer_ret < 0 || L->trailing || !csi_tar_reader_done(L->tar))
        derr = daemon_error(L);
    if (derr != NULL) {
        ret = csi_error_set(err, CS_EPROTO, "%s %s: %s", L->origin,
                            L->from_daemon ? "failed" : "holds a failed export", derr);
    } else if (L->failed && L->cb_failed) {
        if (err != NULL) {
            *err = L->fail_err;
            L->fail_err = NULL;
        }
        ret = csi_error_wrap(err, "%s", L->origin);
        if (ret == CS_ERROR)
            ret = L->fail_code;
    } else if (L->failed) {
        ret = csi_error_set(err, CS_EPROTO, "%s: not a valid tar stream: %s", L->origin,
                            L->fail_err ? L->fail_err->message : "?");
    } else if (transfer_ret < 0) {
        if (err != NULL) {
            *err = terr;
            terr = NULL;
        }
        ret = transfer_ret;
    } else if (csi_tar_reader_finish(L->tar, &e) < 0) {
        ret = csi_error_set(err, CS_EPROTO, "%s: %s%s", L->origin, e ? e->message : "truncated",
                            L->from_daemon ? " (the export stopped early; the daemon's log may "
                                             "say why)"
                                           : "");
    }
    cs_error_free(e);
    cs_error_free(terr);
    free(derr);
    return ret;
}

/* The config of ITEM: its bytes (malloc'd) and parsed form. */
static int
item_config(char **data_out, size_t *len_out, cs_image_config **cfg_out, rec **rec_out, loader *L,
            const csi_docker_archive_item *item, cs_error **err)
{
    rec *r = resolve(L, item->config);
    char *data = NULL;
    size_t len = 0;
    int ret;

    if (r == NULL)
        return csi_error_set(err, CS_EPROTO,
                             "manifest.json names config %.200s, which the "
                             "archive does not hold",
                             item->config);
    if (r->kind == REC_BIG)
        return csi_error_set(err, CS_ELIMIT, "config %.200s exceeds %u bytes", item->config,
                             CS_CONFIG_MAX);
    if (r->kind != REC_DOC)
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
select_item(const csi_docker_archive_item **out, loader *L, const csi_docker_archive_item *items,
            size_t n, cs_error **err)
{
    cs_buf names = CS_BUF_INIT;
    size_t i, k;
    int ret;

    if (n == 1) {
        *out = &items[0];
        return 0;
    }
    for (i = 0; i < n && L->want_diff_ids != NULL; i++) {
        rec *r = resolve(L, items[i].config);
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
assemble(cs_source_image **out, loader *L, cs_error **err)
{
    csi_docker_archive_item *items = NULL;
    const csi_docker_archive_item *item = NULL;
    cs_image_config *cfg = NULL;
    built_layer *layers = NULL;
    size_t nitems = 0, i, ncomp = 0, nreuse = 0, clen = 0;
    char *cdata = NULL;
    rec *crec = NULL;
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
    if (layers == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    for (i = 0; i < item->nlayers; i++) {
        rec *r = resolve(L, item->layers[i]);

        if (r == NULL) {
            ret = csi_error_set(err, CS_EPROTO,
                                "manifest.json names layer %.200s, which the archive does not "
                                "hold",
                                item->layers[i]);
            goto out;
        }
        if (r->kind == REC_DOC)
            ret = process_layer(L, r, CSI_COMP_NONE, err); /* a layer that did not look it */
        if (ret < 0)
            goto out;
        if (r->kind == REC_BIG) {
            ret =
                csi_error_set(err, CS_EPROTO, "layer %.200s is neither a tar nor gzip or zstd data",
                              item->layers[i]);
            goto out;
        }
        if (strcmp(r->diff_id, cfg->diff_ids[i]) != 0 || r->kind != REC_LAYER) {
            ret = csi_error_set(err, CS_EDIGEST,
                                "layer %zu (%.200s) has diff_id %s, but the config says %s", i,
                                item->layers[i], r->diff_id, cfg->diff_ids[i]);
            goto out;
        }
        memcpy(layers[i].digest, r->blob, CS_DIGEST_STRLEN);
        layers[i].size = r->blob_size;
        ncomp += r->how == HOW_COMPRESSED;
        nreuse += r->how == HOW_REUSED;
    }
    /* byte for byte: the image ID and BuildKit's inline cache live in these bytes */
    ret = cs_store_put_blob(L->store, crec->digest, cdata, clen, NULL, err);
    if (ret == 0)
        ret = make_image(out, L->store, L->st, crec->digest, (int64_t)clen, layers, item->nlayers,
                         err);
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
    return ret;
}

static int
loader_init(loader *L, cs_store *store, const settings *st, const char *origin, const char *name,
            cs_error **err)
{
    int ret;

    memset(L, 0, sizeof(*L));
    L->cur.fd = -1;
    L->store = store;
    L->st = st;
    L->origin = origin;
    L->name = name;
    cs_buf_init(&L->manifest_json, CSI_DOCKER_ARCHIVE_MAX);
    ret = tmp_dir(&L->tmpdir, store, err);
    if (ret == 0)
        ret = cs_hasher_new(&L->raw, err);
    if (ret == 0)
        ret = cs_hasher_new(&L->diff, err);
    if (ret == 0)
        ret = csi_tar_reader_new(&L->tar, on_entry_cb, on_data_cb, L, err);
    if (ret == 0) {
        L->buf = malloc(IO_BUF);
        if (L->buf == NULL)
            ret = csi_error_oom(err);
    }
    return ret;
}

static void
loader_dispose(loader *L)
{
    size_t i;

    cur_reset(L);
    for (i = 0; i < L->nrecs; i++) {
        if (L->recs[i].tmp != NULL)
            unlink(L->recs[i].tmp);
        free(L->recs[i].tmp);
        free(L->recs[i].name);
        free(L->recs[i].link);
    }
    free(L->recs);
    csi_tar_reader_free(L->tar);
    cs_hasher_free(L->raw);
    cs_hasher_free(L->diff);
    cs_buf_dispose(&L->manifest_json);
    cs_error_free(L->fail_err);
    free(L->tmpdir);
    free(L->buf);
}

/* ---- docker ------------------------------------------------------------------------------- */

/* A re-push of an image whose config and layers the store already has: no export at all.
 * CS_ENOTFOUND (no message) when that is not the case. */
static int
docker_fast_path(cs_source_image **out, cs_store *store, const settings *st,
                 const cs_daemon_image *di, cs_error **err)
{
    cs_buf config = CS_BUF_INIT;
    cs_image_config *cfg = NULL;
    built_layer *layers = NULL;
    size_t i;
    int ret;

    if (!cs_store_has_blob(store, di->id, -1) ||
        cs_store_read_blob(&config, store, di->id, CS_CONFIG_MAX, NULL) < 0 ||
        cs_image_config_parse(&cfg, config.ptr, config.len, NULL) < 0 ||
        !same_diff_ids(cfg, di->diff_ids, di->ndiff_ids)) {
        ret = CS_ENOTFOUND;
        goto out;
    }
    layers = calloc(di->ndiff_ids + 1, sizeof(*layers));
    if (layers == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    for (i = 0; i < di->ndiff_ids; i++) {
        if (!layer_known(layers[i].digest, &layers[i].size, store, di->diff_ids[i],
                         st->comp_name)) {
            ret = CS_ENOTFOUND;
            goto out;
        }
    }
    ret = make_image(out, store, st, di->id, (int64_t)config.len, layers, di->ndiff_ids, err);
    if (ret == 0)
        (*out)->layers_reused = di->ndiff_ids;
out:
    cs_buf_dispose(&config);
    cs_image_config_free(cfg);
    free(layers);
    return ret;
}

static int
load_docker(cs_source_image **out, const cs_source *src, cs_store *store, const settings *st,
            cs_error **err)
{
    const cs_daemon_info *info = NULL;
    cs_daemon_image *di = NULL;
    cs_error *terr = NULL;
    cs_daemon *d = NULL;
    char *origin = NULL;
    loader L;
    bool classic;
    int ret, tret;

    memset(&L, 0, sizeof(L));
    L.cur.fd = -1;
    ret = cs_daemon_open(&d, st->opts->docker_host, err);
    if (ret == 0)
        ret = cs_daemon_get_info(&info, d, err);
    if (ret == 0)
        ret = cs_daemon_image_inspect(&di, d, src->name, err);
    if (ret < 0)
        goto out;
    /* the classic store's image ID is the config's digest; the containerd store's is its
     * manifest's (or index's), which says nothing of the config */
    classic = !info->containerd_store;
    if (classic) {
        ret = docker_fast_path(out, store, st, di, err);
        if (ret != CS_ENOTFOUND)
            goto out;
    }
    if (asprintf(&origin, "Docker daemon at %s: export of %.300s", cs_daemon_host(d), src->name) <
        0) {
        origin = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    ret = loader_init(&L, store, st, origin, src->name, err);
    if (ret < 0)
        goto out;
    L.from_daemon = true;
    L.want_config = classic ? di->id : NULL;
    L.want_diff_ids = di->diff_ids;
    L.nwant = di->ndiff_ids;
    L.progress_what = "export";
    progress(st, "export", 0, 0);
    /* by ID on the classic store: the very image inspected, even if the tag moves meanwhile */
    tret = cs_daemon_image_save(d, classic ? di->id : src->name, stream_feed, &L, &terr);
    ret = stream_end(&L, tret, terr, err);
    if (ret == 0) {
        progress(st, "export", L.total_in, L.total_in);
        ret = assemble(out, &L, err);
    }
out:
    loader_dispose(&L);
    free(origin);
    cs_daemon_image_free(di);
    cs_daemon_free(d);
    return ret;
}

/* ---- archive ------------------------------------------------------------------------------ */

static int
load_archive(cs_source_image **out, const cs_source *src, cs_store *store, const settings *st,
             cs_error **err)
{
    csi_decompressor *dec = NULL;
    cs_error *terr = NULL;
    char *origin = NULL, *in = NULL;
    struct stat sb;
    loader L;
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
    ret = loader_init(&L, store, st, origin, src->path, err);
    if (ret == 0) {
        in = malloc(IO_BUF);
        if (in == NULL)
            ret = csi_error_oom(err);
    }
    /* `docker load` takes a gzip'd or zstd'd archive too */
    if (ret == 0)
        ret = csi_decompressor_new(&dec, CSI_COMP_AUTO, UINT64_MAX, stream_feed, &L, err);
    if (ret < 0)
        goto out;
    progress(st, "read", 0, total);
    for (;;) {
        ssize_t r = read(fd, in, IO_BUF);

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
        if (done - reported >= PROGRESS_STEP) {
            progress(st, "read", done, total);
            reported = done;
        }
    }
    ret = stream_end(&L, tret, terr, err);
    if (ret == 0) {
        progress(st, "read", done, total);
        ret = assemble(out, &L, err);
    }
out:
    if (fd >= 0)
        close(fd);
    csi_decompressor_free(dec);
    loader_dispose(&L);
    free(origin);
    free(in);
    return ret;
}

/* ---- oci ---------------------------------------------------------------------------------- */

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

#define INDEX_DEPTH 4

static int
load_oci(cs_source_image **out, const cs_source *src, const settings *st, cs_error **err)
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

/* ---- entry -------------------------------------------------------------------------------- */

int
cs_source_load(cs_source_image **out, const cs_source *src, cs_store *store,
               const cs_source_options *opts, cs_error **err)
{
    settings st;
    int ret;

    ret = settings_init(&st, opts, err);
    if (ret < 0)
        return ret;
    switch (src->kind) {
    case CS_SOURCE_DOCKER:
        return load_docker(out, src, store, &st, err);
    case CS_SOURCE_ARCHIVE:
        return load_archive(out, src, store, &st, err);
    case CS_SOURCE_OCI:
        return load_oci(out, src, &st, err);
    default:
        return csi_error_set(err, CS_EINVAL, "unknown source kind %d", (int)src->kind);
    }
}
