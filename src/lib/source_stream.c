/* The docker-archive stream loader (see source_int.h): a `docker save` tar, read once front to
 * back, becomes records of its files. Small files wait in tmp/ for manifest.json to say what
 * they are, layers are hashed as they stream (their diff_id), written to tmp/ and handed to the
 * compression pool, links are remembered. The layouts are in
 * docs/reference/registry-and-daemon-protocols.md section 4: Docker <= 24 writes
 * <v1id>/layer.tar (uncompressed) + <config hex>.json + manifest.json + repositories, Docker
 * 25+ adds an OCI layout and writes every file as blobs/sha256/<hex>, and the containerd image
 * store exports the registry's compressed blobs as they are. manifest.json, which all of them
 * write and which comes last, is what ties the files together (source_archive.c). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "compress.h"
#include "docker_archive.h"
#include "error_int.h"
#include "json.h"
#include "jsonstream.h"
#include "log_int.h"
#include "pgzip.h"
#include "source_int.h"
#include "tar.h"

#define MAX_ENTRIES 16384 /* files kept track of in one docker-archive */
#define LINK_HOPS 8       /* links followed from one name */
/* After a failure, how much more of the stream is read looking for the daemon's error. */
#define DRAIN_MAX (64u * 1024)

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

static csi_source_rec *
find_rec(csi_source_loader *L, const char *name)
{
    size_t i;

    for (i = 0; i < L->nrecs; i++) {
        if (strcmp(L->recs[i].name, name) == 0)
            return &L->recs[i];
    }
    return NULL;
}

/* NAME is already checked safe. */
csi_source_rec *
csi_source_loader_resolve(csi_source_loader *L, const char *name)
{
    char *clean = clean_name(name);
    csi_source_rec *r = clean ? find_rec(L, clean) : NULL;
    int hops;

    for (hops = 0; r != NULL && r->kind == CSI_REC_LINK && hops < LINK_HOPS; hops++)
        r = r->link ? find_rec(L, r->link) : NULL;
    free(clean);
    return r != NULL && r->kind != CSI_REC_LINK ? r : NULL;
}

/* Takes NAME. */
static int
add_rec(csi_source_rec **out, csi_source_loader *L, char *name, cs_error **err)
{
    csi_source_rec *r;

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
cur_reset(csi_source_loader *L)
{
    csi_source_cur *c = &L->cur;

    if (c->fd >= 0)
        close(c->fd);
    if (c->tmp != NULL)
        unlink(c->tmp);
    free(c->tmp);
    csi_decompressor_free(c->dec);
    csi_source_spec_free(c->spec);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->mode = CSI_CUR_SKIP;
}

static int
diff_sink(void *payload, const char *data, size_t len, cs_error **err)
{
    csi_source_loader *L = payload;

    cs_hasher_update(L->diff, data, len);
    return 0;
}

int
csi_source_loader_layer(csi_source_loader *L, csi_source_rec *r, csi_compression sniffed,
                        csi_source_spec **specp, cs_error **err)
{
    const csi_source_settings *st = L->st;
    csi_source_spec *spec = specp != NULL ? *specp : NULL;
    char *tmp;
    size_t id;
    int ret = 0;

    if (L->want_diff_ids != NULL && !csi_source_strv_has(L->want_diff_ids, L->nwant, r->diff_id)) {
        /* not this image's (a multi-platform export): nothing to keep */
        r->kind = CSI_REC_UNUSED;
        goto out;
    }
    if (csi_source_layer_known(r->blob, &r->blob_size, L->store, r->diff_id, st->comp_name)) {
        csi_log(CS_LOG_DEBUG, "layer %s: %s blob %s, already in the store%s", r->diff_id,
                st->comp_name, r->blob,
                spec != NULL ? " (its early compression was for nothing)" : "");
        r->how = CSI_HOW_REUSED;
        r->kind = CSI_REC_LAYER;
        goto out;
    }
    if (csi_source_pool_find(&id, L->pool, r->diff_id)) {
        /* the archive holds this layer twice (gzip'd and not, say): one blob will do, as if
         * the layer map had known it already */
        csi_log(CS_LOG_DEBUG, "layer %s: %s blob already being made%s", r->diff_id, st->comp_name,
                spec != NULL ? " (its early compression was for nothing)" : "");
        r->job = id + 1;
        r->how = CSI_HOW_REUSED;
    } else if (spec != NULL) {
        /* compressed as it streamed: the blob's fsync and renames are the pool's, while the
         * next entry streams (for an image of many small layers, they held up the export's
         * reading at every layer) */
        *specp = NULL;
        ret =
            csi_source_pool_submit_spec(&id, L->pool, spec, r->diff_id, r->blob, r->blob_size, err);
        if (ret < 0)
            goto out;
        r->job = id + 1;
        r->how = CSI_HOW_COMPRESSED;
    } else if (sniffed == st->comp) {
        /* already what we push (the containerd store exports registry blobs as they are):
         * the same bytes, so the digest the registry may already hold */
        ret = csi_source_commit_blob(L->store, r->tmp, r->digest, err);
        if (ret < 0)
            goto out;
        free(r->tmp);
        r->tmp = NULL;
        memcpy(r->blob, r->digest, CS_DIGEST_STRLEN);
        r->blob_size = (int64_t)r->size;
        r->how = CSI_HOW_AS_IS;
        csi_source_layer_stored(L->store, st, r->diff_id, r->blob, r->blob_size, "exported so");
        csi_source_blob_ready(L->store, st, r->blob, r->blob_size);
    } else {
        /* the pool takes the file: compressed while the stream goes on */
        tmp = r->tmp;
        r->tmp = NULL;
        ret = csi_source_pool_submit(&id, L->pool, tmp, r->size, r->diff_id, err);
        if (ret < 0)
            goto out;
        r->job = id + 1;
        r->how = CSI_HOW_COMPRESSED;
    }
    r->kind = CSI_REC_LAYER;
out:
    if (r->tmp != NULL) {
        unlink(r->tmp);
        free(r->tmp);
        r->tmp = NULL;
    }
    return ret;
}

static int
file_write(csi_source_loader *L, const void *data, size_t len, cs_error **err)
{
    csi_source_cur *c = &L->cur;
    int ret = 0;

    cs_hasher_update(L->raw, data, len);
    if (c->fd >= 0)
        ret = csi_source_write_all(c->fd, data, len, c->tmp, err);
    if (ret == 0 && c->spec != NULL)
        ret = csi_source_spec_feed(c->spec, data, len, err);
    if (ret == 0 && c->dec != NULL)
        ret = csi_decompressor_feed(c->dec, data, len, err);
    return ret;
}

/* Enough of the file is known (its first block, or all of a smaller one) to decide what it is. */
static int
file_start(csi_source_loader *L, cs_error **err)
{
    csi_source_cur *c = &L->cur;
    csi_source_rec *r = &L->recs[c->rec];
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
        (L->want_diff_ids == NULL ||
         csi_source_strv_has(L->want_diff_ids, L->nwant, c->name_digest)) &&
        csi_source_layer_known(blob, &bsize, L->store, c->name_digest, L->st->comp_name))
        c->verify_only = true;
    else if (c->layer && c->sniffed == CSI_COMP_NONE && csi_source_spec_wanted(L, c->size))
        ret = csi_source_spec_start(&c->spec, L, err);
    else if (c->layer || c->size <= CS_CONFIG_MAX)
        ret = csi_source_tmp_file(&c->fd, &c->tmp, L->tmpdir, "entry", err);
    if (ret == 0 && c->layer && c->sniffed != CSI_COMP_NONE)
        ret = csi_decompressor_new(&c->dec, c->sniffed, UINT64_MAX, diff_sink, L, err);
    if (ret == 0)
        ret = file_write(L, c->head, c->head_len, err);
    return ret;
}

static int
file_end(csi_source_loader *L, cs_error **err)
{
    csi_source_cur *c = &L->cur;
    csi_source_rec *r = &L->recs[c->rec];
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
        r->kind = CSI_REC_LAYER;
        ret = csi_source_layer_known(r->blob, &r->blob_size, L->store, r->diff_id, L->st->comp_name)
                  ? 0
                  : csi_error_set(err, CS_ENOTFOUND, "layer %s left the store", r->diff_id);
        r->how = CSI_HOW_REUSED;
        csi_log(CS_LOG_DEBUG, "layer %s: checked, %s blob %s already in the store", r->diff_id,
                L->st->comp_name, r->blob);
        goto out;
    }
    r->tmp = c->tmp; /* the record owns it now */
    c->tmp = NULL;
    if (c->spec != NULL) {
        /* here, not in the pool: the compressor's block buffers go back to pgzip's shared
         * budget before the next layer's stream takes any (a stream with none may always make
         * one beyond it: peak RSS 15.5 -> 16.5 MB when two streams overlapped) */
        ret = csi_source_spec_finish(c->spec, r->blob, &r->blob_size, err);
        if (ret < 0)
            goto out;
    }
    if (c->layer)
        ret = csi_source_loader_layer(L, r, c->sniffed, &c->spec, err);
    else
        r->kind = r->tmp != NULL ? CSI_REC_DOC : CSI_REC_BIG;
out:
    cur_reset(L);
    return ret;
}

static int
on_entry(void *payload, const csi_tar_entry *e, cs_error **err)
{
    csi_source_loader *L = payload;
    char *name;
    csi_source_rec *r;
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
        r->kind = CSI_REC_LINK;
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
        L->cur.mode = CSI_CUR_MANIFEST;
        return 0;
    }
    if (is_metadata(name)) {
        free(name);
        return 0;
    }
    ret = add_rec(&r, L, name, err);
    if (ret < 0)
        return ret;
    r->kind = CSI_REC_BIG; /* until complete */
    L->cur.mode = CSI_CUR_FILE;
    L->cur.rec = L->nrecs - 1;
    L->cur.size = e->size;
    if (e->size == 0)
        return file_end(L, err);
    return 0;
}

static int
on_data(void *payload, const csi_tar_entry *e, const char *data, size_t len, cs_error **err)
{
    csi_source_loader *L = payload;
    csi_source_cur *c = &L->cur;
    size_t n;
    int ret = 0;

    switch (c->mode) {
    case CSI_CUR_MANIFEST:
        return cs_buf_append(&L->manifest_json, data, len, err);
    case CSI_CUR_FILE:
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
        ((csi_source_loader *)payload)->cb_failed = true;
    return ret;
}

static int
on_data_cb(void *payload, const csi_tar_entry *e, const char *data, size_t len, cs_error **err)
{
    int ret = on_data(payload, e, data, len, err);

    if (ret < 0)
        ((csi_source_loader *)payload)->cb_failed = true;
    return ret;
}

/* The stream stopped with CODE (E: why, taken); OURS: because of us, not the tar's structure. */
static void
fail(csi_source_loader *L, int code, cs_error *e, bool ours)
{
    L->failed = true;
    L->cb_failed = ours;
    L->fail_code = code;
    L->fail_err = e;
    cur_reset(L);
}

static void
tail_add(csi_source_loader *L, const char *data, size_t len)
{
    size_t pos;

    if (len >= CSI_SOURCE_TAIL_MAX) {
        data += len - CSI_SOURCE_TAIL_MAX;
        L->total_in += len - CSI_SOURCE_TAIL_MAX;
        len = CSI_SOURCE_TAIL_MAX;
    }
    while (len > 0) {
        size_t n;

        pos = (size_t)(L->total_in % CSI_SOURCE_TAIL_MAX);
        n = CSI_SOURCE_TAIL_MAX - pos < len ? CSI_SOURCE_TAIL_MAX - pos : len;
        memcpy(L->tail + pos, data, n);
        data += n;
        len -= n;
        L->total_in += n;
    }
}

int
csi_source_loader_feed(void *payload, const char *data, size_t len, cs_error **err)
{
    csi_source_loader *L = payload;
    cs_error *e = NULL;
    size_t i;
    int ret;

    tail_add(L, data, len);
    if (L->progress_what != NULL && L->total_in - L->progress_last >= CSI_SOURCE_PROGRESS_STEP) {
        csi_source_progress(L->st, L->progress_what, L->total_in, 0);
        L->progress_last = L->total_in;
    }
    if (!L->failed) {
        /* a compression that failed stops the stream as a failing callback would */
        ret = csi_source_pool_poll(L->pool, &e);
        if (ret < 0) {
            fail(L, ret, e, true);
            return 0;
        }
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
    if (ret < 0)
        fail(L, ret, e, L->cb_failed);
    return 0;
}

/* The daemon's error message near the end of the stream (malloc'd), or NULL. */
static char *
daemon_error(const csi_source_loader *L)
{
    size_t len = L->total_in < CSI_SOURCE_TAIL_MAX ? (size_t)L->total_in : CSI_SOURCE_TAIL_MAX;
    size_t start = (size_t)(L->total_in % CSI_SOURCE_TAIL_MAX), i, tries = 0;
    char *buf, *msg = NULL;

    buf = malloc(len + 1);
    if (buf == NULL)
        return NULL;
    if (len < CSI_SOURCE_TAIL_MAX) {
        memcpy(buf, L->tail, len);
    } else {
        memcpy(buf, L->tail + start, CSI_SOURCE_TAIL_MAX - start);
        memcpy(buf + CSI_SOURCE_TAIL_MAX - start, L->tail, start);
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

int
csi_source_loader_end(csi_source_loader *L, int transfer_ret, cs_error *terr, cs_error **err)
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

int
csi_source_loader_init(csi_source_loader *L, cs_store *store, const csi_source_settings *st,
                       const char *origin, const char *name, cs_error **err)
{
    int ret;

    memset(L, 0, sizeof(*L));
    L->cur.fd = -1;
    L->store = store;
    L->st = st;
    L->origin = origin;
    L->name = name;
    cs_buf_init(&L->manifest_json, CSI_DOCKER_ARCHIVE_MAX);
    ret = csi_source_tmp_dir(&L->tmpdir, store, err);
    if (ret == 0)
        ret = cs_hasher_new(&L->raw, err);
    if (ret == 0)
        ret = cs_hasher_new(&L->diff, err);
    if (ret == 0)
        ret = csi_tar_reader_new(&L->tar, on_entry_cb, on_data_cb, L, err);
    if (ret == 0)
        ret = csi_source_pool_new(&L->pool, store, st, L->tmpdir, err);
    if (ret == 0) {
        /* one compression pool for all the layers, not one per layer */
        csi_pgzip_hold();
        L->pgzip_held = true;
    }
    return ret;
}

void
csi_source_loader_dispose(csi_source_loader *L)
{
    size_t i;

    /* first: its threads may still be writing into tmp/ */
    csi_source_pool_free(L->pool);
    L->pool = NULL;
    cur_reset(L);
    if (L->pgzip_held)
        csi_pgzip_release();
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
    free(L->spec_sizes);
    free(L->tmpdir);
}
