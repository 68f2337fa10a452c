/* Image sources for push: see include/cachesync/source.h. Parsing, the options in force,
 * helpers for writing blobs into the store, and the manifest push sends for a docker or
 * archive source; the sources themselves are in source_archive.c (docker-archive streams, read
 * by source_stream.c, compressed by source_pool.c) and source_oci.c. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cachesync/source.h>
#include "compress.h"
#include "error_int.h"
#include "fsutil.h"
#include "layermap.h"
#include "log_int.h"
#include "source_int.h"

/* Compression threads when the options leave it open, and at most. */
#define JOBS_DEFAULT_MAX 4
#define JOBS_MAX 64

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

static int
settings_init(csi_source_settings *st, const cs_source_options *opts, cs_error **err)
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
    if (st->opts->jobs > 0) {
        st->jobs = st->opts->jobs < JOBS_MAX ? st->opts->jobs : JOBS_MAX;
    } else {
        unsigned cpus = csi_cpus();

        st->jobs = cpus < JOBS_DEFAULT_MAX ? (int)cpus : JOBS_DEFAULT_MAX;
    }
    return 0;
}

void
csi_source_progress(const csi_source_settings *st, const char *what, uint64_t done, uint64_t total)
{
    if (st->opts->progress != NULL)
        st->opts->progress(st->opts->progress_payload, what, done, total);
}

bool
csi_source_strv_has(char *const *v, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0)
            return true;
    }
    return false;
}

int
csi_source_write_all(int fd, const char *p, size_t n, const char *path, cs_error **err)
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

bool
csi_source_layer_known(char blob[CS_DIGEST_STRLEN], int64_t *size, cs_store *store,
                       const char *diff_id, const char *comp_name)
{
    return csi_layermap_get(blob, size, store, diff_id, comp_name, NULL) == 0 &&
           cs_store_has_blob(store, blob, *size);
}

bool
csi_source_layer_known_in(char blob[CS_DIGEST_STRLEN], int64_t *size, cs_store *store,
                          const csi_layermap_view *map, const char *diff_id, const char *comp_name)
{
    return csi_layermap_view_get(blob, size, map, diff_id, comp_name, NULL) == 0 &&
           cs_store_has_blob(store, blob, *size);
}

void
csi_source_layer_stored(cs_store *store, const csi_source_settings *st, const char *diff_id,
                        const char *blob, int64_t size, const char *how)
{
    cs_error *merr = NULL;

    csi_log(CS_LOG_DEBUG, "layer %s: %s blob %s (%lld bytes), %s", diff_id, st->comp_name, blob,
            (long long)size, how);
    /* the blob is safely stored; forgetting the mapping costs a later run time only */
    if (csi_layermap_put(store, diff_id, st->comp_name, blob, size, &merr) < 0)
        csi_log(CS_LOG_WARN, "layer map: %s", merr ? merr->message : "update failed");
    cs_error_free(merr);
}

void
csi_source_blob_ready(cs_store *store, const csi_source_settings *st, const char *blob,
                      int64_t size)
{
    char *path = NULL;

    if (st->opts->blob_ready == NULL || cs_store_blob_path(&path, store, blob, NULL) < 0)
        return;
    st->opts->blob_ready(st->opts->blob_ready_payload, blob, size, path);
    free(path);
}

/* The manifest push sends for a config and compressed layers in the store: Docker schema2 for
 * gzip (what `docker push` writes, so every registry and tool takes it), OCI for zstd (zstd
 * layers have a media type in the OCI spec only; Docker's is a containerd constant). */
int
csi_source_make_image(cs_source_image **out, cs_store *store, const csi_source_settings *st,
                      const char *config_digest, int64_t config_size,
                      const csi_source_layer *layers, size_t n, cs_error **err)
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

/* ---- <store>/tmp: work files of pushes ------------------------------------------------------
 * A push's work files are tmp/PREFIX-PID-XXXXXX. While the push runs, its process holds an
 * flock on tmp/.owner-PID (taken once per process and store, released by the kernel when the
 * process ends, however it ends), so a file whose owner lock anyone can take was left by a
 * push that was killed or crashed: the next push removes it. Files of processes that predate
 * the lock (no .owner-PID) are removed once they are a day old. */

#define OWNER_PREFIX ".owner-"
#define STALE_SECONDS (24 * 60 * 60)

/* the owner locks this process holds: one per store */
static pthread_mutex_t owner_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char *tmp;
    int fd;
} owners[8];

static int
own_tmp(const char *tmp, cs_error **err)
{
    char *path = NULL;
    int fd = -1, ret = 0;
    size_t i;

    pthread_mutex_lock(&owner_mu);
    for (i = 0; i < sizeof(owners) / sizeof(owners[0]) && owners[i].tmp != NULL; i++) {
        if (strcmp(owners[i].tmp, tmp) == 0)
            goto out;
    }
    if (asprintf(&path, "%s/" OWNER_PREFIX "%ld", tmp, (long)getpid()) < 0) {
        path = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        ret = csi_error_errno(err, errno, "lock %s", path);
        goto out;
    }
    if (i < sizeof(owners) / sizeof(owners[0])) {
        owners[i].tmp = strdup(tmp);
        if (owners[i].tmp != NULL) {
            owners[i].fd = fd; /* held until the process ends */
            fd = -1;
        }
    }
out:
    pthread_mutex_unlock(&owner_mu);
    if (fd >= 0)
        close(fd);
    free(path);
    return ret;
}

/* The owner PID of a work file NAME (PREFIX-PID-XXXXXX), or -1. */
static long
owner_of(const char *name)
{
    const char *end = strrchr(name, '-'), *start;
    char *stop;
    long pid;

    if (end == NULL || strlen(end + 1) != 6)
        return -1;
    for (start = end; start > name && start[-1] != '-'; start--)
        ;
    if (start == name || start == end)
        return -1;
    pid = strtol(start, &stop, 10);
    return stop == end && pid > 0 ? pid : -1;
}

/* 1 when the owner lock of PID is free (its process is gone), -1 when held, 0 when there is
 * none. */
static int
owner_gone(const char *tmp, long pid)
{
    char *path = NULL;
    int fd, gone;

    if (asprintf(&path, "%s/" OWNER_PREFIX "%ld", tmp, pid) < 0)
        return -1;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        free(path);
        return 0;
    }
    gone = flock(fd, LOCK_EX | LOCK_NB) == 0;
    close(fd);
    free(path);
    return gone ? 1 : -1;
}

/* Remove the work files that pushes which did not finish left in TMP (first pass), then the
 * lock files of their owners (second pass, once their files are gone). */
static void
sweep_tmp(const char *tmp)
{
    time_t now = time(NULL);
    struct dirent *e;
    struct stat st;
    char *path;

    for (int pass = 0; pass < 2; pass++) {
        DIR *d = opendir(tmp);

        if (d == NULL)
            return;
        while ((e = readdir(d)) != NULL) {
            bool owner = strncmp(e->d_name, OWNER_PREFIX, strlen(OWNER_PREFIX)) == 0;
            char *stop = NULL;
            long pid;
            int gone;

            if (owner != (pass == 1))
                continue;
            if (owner) {
                pid = strtol(e->d_name + strlen(OWNER_PREFIX), &stop, 10);
                if (*stop != '\0')
                    pid = -1;
            } else {
                pid = owner_of(e->d_name);
            }
            if (pid <= 0 || pid == (long)getpid())
                continue;
            if (asprintf(&path, "%s/%s", tmp, e->d_name) < 0)
                break;
            gone = owner_gone(tmp, pid);
            if (!owner && gone == 0 && lstat(path, &st) == 0 && now - st.st_mtime > STALE_SECONDS)
                gone = 1;
            if (gone == 1 && lstat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                if (!owner)
                    csi_log(CS_LOG_DEBUG, "removing %s, left by a push that did not finish", path);
                unlink(path);
            }
            free(path);
        }
        closedir(d);
    }
}

int
csi_source_tmp_dir(char **out, cs_store *store, cs_error **err)
{
    int ret;

    if (asprintf(out, "%s/tmp", cs_store_dir(store)) < 0) {
        *out = NULL;
        return csi_error_oom(err);
    }
    ret = csi_fs_mkdirs(*out, err);
    if (ret == 0)
        ret = own_tmp(*out, err);
    if (ret == 0)
        sweep_tmp(*out);
    if (ret < 0) {
        free(*out);
        *out = NULL;
    }
    return ret;
}

void
csi_source_sweep_tmp(cs_store *store)
{
    char *tmp = NULL;
    struct stat st;

    if (asprintf(&tmp, "%s/tmp", cs_store_dir(store)) < 0)
        return;
    if (stat(tmp, &st) == 0 && S_ISDIR(st.st_mode))
        sweep_tmp(tmp);
    free(tmp);
}

int
csi_source_tmp_file(int *fd_out, char **path_out, const char *dir, const char *prefix,
                    cs_error **err)
{
    char *path = NULL;
    int fd;

    if (asprintf(&path, "%s/%s-%ld-XXXXXX", dir, prefix, (long)getpid()) < 0)
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

/* This is cs_store_put_blob for a file whose digest was only known once it was complete; TMP
 * is on the store's file system. */
int
csi_source_commit_blob(cs_store *store, const char *tmp, const char *digest, cs_error **err)
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

/* ---- entry -------------------------------------------------------------------------------- */

int
cs_source_load(cs_source_image **out, const cs_source *src, cs_store *store,
               const cs_source_options *opts, cs_error **err)
{
    csi_source_settings st;
    int ret;

    ret = settings_init(&st, opts, err);
    if (ret < 0)
        return ret;
    switch (src->kind) {
    case CS_SOURCE_DOCKER:
        return csi_source_load_docker(out, src, store, &st, err);
    case CS_SOURCE_ARCHIVE:
        return csi_source_load_archive(out, src, store, &st, err);
    case CS_SOURCE_OCI:
        return csi_source_load_oci(out, src, &st, err);
    default:
        return csi_error_set(err, CS_EINVAL, "unknown source kind %d", (int)src->kind);
    }
}
