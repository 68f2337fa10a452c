/* <store>/layers.json: see layermap.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <jansson.h>

#include "error_int.h"
#include "fsutil.h"
#include "json.h"
#include "layermap.h"
#include "log_int.h"

#define FILE_NAME "layers.json"
#define LOCK_NAME "layers.json.lock"

static int
check_compression(const char *compression, cs_error **err)
{
    if (compression != NULL &&
        (strcmp(compression, "gzip") == 0 || strcmp(compression, "zstd") == 0))
        return 0;
    return csi_error_set(err, CS_EINVAL, "layer map: unknown compression \"%.20s\"",
                         compression ? compression : "(null)");
}

/* Repository names end up in JSON and in mount requests: printable ASCII, no spaces. */
static int
check_repo(const char *repo, cs_error **err)
{
    size_t n;
    const char *p;

    if (repo == NULL || *repo == '\0')
        return csi_error_set(err, CS_EINVAL, "layer map: no repository");
    n = strlen(repo);
    if (n > CSI_LAYERMAP_REPO_MAX)
        return csi_error_set(err, CS_EINVAL, "layer map: repository name over %d bytes",
                             CSI_LAYERMAP_REPO_MAX);
    for (p = repo; *p != '\0'; p++) {
        if (*p <= ' ' || *p >= 0x7f)
            return csi_error_set(err, CS_EINVAL, "layer map: bad repository name \"%.100s\"", repo);
    }
    return 0;
}

static int
map_path(char **out, const cs_store *s, const char *name, cs_error **err)
{
    if (asprintf(out, "%s/%s", cs_store_dir(s), name) < 0) {
        *out = NULL;
        return csi_error_oom(err);
    }
    return 0;
}

/* The document, or an empty one when the file is missing, over the cap or not a JSON object:
 * a cache that went bad is rebuilt, never a reason to fail a push. */
static int
load(json_t **out, const cs_store *s, cs_error **err)
{
    cs_error *rerr = NULL;
    json_error_t jerr;
    char *path = NULL, *data = NULL;
    json_t *root = NULL;
    size_t len = 0;
    int ret;

    ret = map_path(&path, s, FILE_NAME, err);
    if (ret < 0)
        return ret;
    ret = csi_fs_read_file(&data, &len, path, CSI_LAYERMAP_MAX, &rerr);
    if (ret == 0) {
        root = json_loadb(data, len, 0, &jerr);
        if (!json_is_object(root)) {
            csi_log(CS_LOG_WARN, "%s is %s; starting it afresh", path,
                    root ? "not a JSON object" : csi_json_reason(&jerr));
            json_decref(root);
            root = NULL;
        }
    } else if (ret == CS_ELIMIT) {
        csi_log(CS_LOG_WARN, "%s: %s; starting it afresh", path, rerr->message);
        ret = 0;
    } else if (ret == CS_ENOTFOUND) {
        ret = 0;
    } else {
        if (err != NULL) {
            *err = rerr;
            rerr = NULL;
        }
        goto out;
    }
    if (root == NULL)
        root = json_object();
    if (root == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    *out = root;
out:
    cs_error_free(rerr);
    free(data);
    free(path);
    return ret;
}

/* ROOT[KEY] as an object, created (replacing whatever else was there) when missing. */
static json_t *
section(json_t *root, const char *key)
{
    json_t *o = json_object_get(root, key);

    if (json_is_object(o))
        return o;
    o = json_object();
    if (o == NULL || json_object_set_new(root, key, o) < 0)
        return NULL;
    return o;
}

typedef int (*edit_fn)(json_t *root, void *arg, cs_error **err);

/* Serialise ROOT; when over the cap, forget mount hints, then everything EDIT did not add. */
static int
dump_capped(char **out, json_t **root, edit_fn edit, void *arg, cs_error **err)
{
    char *text;
    int ret;

    text = json_dumps(*root, JSON_COMPACT);
    if (text != NULL && strlen(text) > CSI_LAYERMAP_MAX && json_object_get(*root, "blobs")) {
        free(text);
        json_object_del(*root, "blobs");
        text = json_dumps(*root, JSON_COMPACT);
    }
    if (text != NULL && strlen(text) > CSI_LAYERMAP_MAX) {
        free(text);
        json_decref(*root);
        *root = json_object();
        if (*root == NULL)
            return csi_error_oom(err);
        ret = edit(*root, arg, err);
        if (ret < 0)
            return ret;
        text = json_dumps(*root, JSON_COMPACT);
    }
    if (text == NULL)
        return csi_error_oom(err);
    *out = text;
    return 0;
}

/* Read, EDIT, replace: all under the lock, so concurrent updates serialise. */
static int
update(cs_store *s, edit_fn edit, void *arg, cs_error **err)
{
    char *path = NULL, *lock = NULL, *text = NULL;
    json_t *root = NULL;
    int lock_fd = -1, ret;

    ret = map_path(&path, s, FILE_NAME, err);
    if (ret == 0)
        ret = map_path(&lock, s, LOCK_NAME, err);
    if (ret < 0)
        goto out;
    lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0) {
        ret = csi_error_errno(err, errno, "open %s", lock);
        goto out;
    }
    while (flock(lock_fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            ret = csi_error_errno(err, errno, "lock %s", lock);
            goto out;
        }
    }
    ret = load(&root, s, err);
    if (ret < 0)
        goto out;
    ret = edit(root, arg, err);
    if (ret < 0)
        goto out;
    ret = dump_capped(&text, &root, edit, arg, err);
    if (ret < 0)
        goto out;
    ret = csi_fs_write_atomic(path, text, strlen(text), err);
out:
    if (lock_fd >= 0)
        close(lock_fd); /* releases the flock */
    json_decref(root);
    free(text);
    free(lock);
    free(path);
    return ret;
}

/* ---- deferred updates ------------------------------------------------------------------- */

/* One update() writes layers.json whole, with two fsyncs: per layer of a 60-layer push (one
 * put as it is stored, one seen as it is uploaded) that was ~120 writes of a growing file, on
 * the export's reading thread and under the uploaders' shared lock. Deferred, the edits wait
 * in memory and one update applies them all. Losing them (a killed run) costs only what the
 * file is for: a later recompression, a mount hint. Reads go to the file and do not see them. */
typedef struct pending {
    struct pending *next;
    bool seen; /* else a put */
    char diff_id[CS_DIGEST_STRLEN], digest[CS_DIGEST_STRLEN], compression[8];
    int64_t size;
    char repo[CSI_LAYERMAP_REPO_MAX + 1];
} pending;

typedef struct deferred {
    struct deferred *next;
    cs_store *store;
    pending *head, **tail;
} deferred;

static pthread_mutex_t defer_mu = PTHREAD_MUTEX_INITIALIZER;
static deferred *defer_list;

static deferred *
defer_find(cs_store *s)
{
    deferred *d;

    for (d = defer_list; d != NULL && d->store != s; d = d->next)
        ;
    return d;
}

int
csi_layermap_defer(cs_store *s, cs_error **err)
{
    deferred *d;

    pthread_mutex_lock(&defer_mu);
    if (defer_find(s) == NULL) {
        d = calloc(1, sizeof(*d));
        if (d == NULL) {
            pthread_mutex_unlock(&defer_mu);
            return csi_error_oom(err);
        }
        d->store = s;
        d->tail = &d->head;
        d->next = defer_list;
        defer_list = d;
    }
    pthread_mutex_unlock(&defer_mu);
    return 0;
}

/* Queue P (taken) when S defers: true; else false and P is the caller's. */
static bool
defer_add(cs_store *s, pending *p)
{
    deferred *d;

    pthread_mutex_lock(&defer_mu);
    d = defer_find(s);
    if (d != NULL) {
        p->next = NULL;
        *d->tail = p;
        d->tail = &p->next;
    }
    pthread_mutex_unlock(&defer_mu);
    return d != NULL;
}

static int seen_apply(json_t *root, const char *digest, const char *repo, cs_error **err);
static int put_apply(json_t *root, const char *diff_id, const char *compression, const char *digest,
                     int64_t size, cs_error **err);

static int
pending_edit(json_t *root, void *arg, cs_error **err)
{
    const pending *p;
    int ret = 0;

    for (p = arg; p != NULL && ret == 0; p = p->next)
        ret = p->seen ? seen_apply(root, p->digest, p->repo, err)
                      : put_apply(root, p->diff_id, p->compression, p->digest, p->size, err);
    return ret;
}

int
csi_layermap_flush(cs_store *s, cs_error **err)
{
    deferred **dp, *d = NULL;
    pending *p, *next;
    int ret = 0;

    pthread_mutex_lock(&defer_mu);
    for (dp = &defer_list; *dp != NULL; dp = &(*dp)->next) {
        if ((*dp)->store == s) {
            d = *dp;
            *dp = d->next;
            break;
        }
    }
    pthread_mutex_unlock(&defer_mu);
    if (d == NULL)
        return 0;
    if (d->head != NULL)
        ret = update(s, pending_edit, d->head, err);
    for (p = d->head; p != NULL; p = next) {
        next = p->next;
        free(p);
    }
    free(d);
    return ret;
}

/* ---- layers ------------------------------------------------------------------------------ */

struct csi_layermap_view {
    json_t *root;
};

int
csi_layermap_view_open(csi_layermap_view **out, cs_store *s, cs_error **err)
{
    csi_layermap_view *v;
    int ret;

    v = calloc(1, sizeof(*v));
    if (v == NULL)
        return csi_error_oom(err);
    ret = load(&v->root, s, err);
    if (ret < 0) {
        free(v);
        return ret;
    }
    *out = v;
    return 0;
}

void
csi_layermap_view_free(csi_layermap_view *v)
{
    if (v == NULL)
        return;
    json_decref(v->root);
    free(v);
}

int
csi_layermap_view_get(char digest_out[CS_DIGEST_STRLEN], int64_t *size_out,
                      const csi_layermap_view *v, const char *diff_id, const char *compression,
                      cs_error **err)
{
    json_t *entry;
    const char *digest;
    int64_t size = -1;
    int ret;

    ret = cs_digest_validate(diff_id, err);
    if (ret == 0)
        ret = check_compression(compression, err);
    if (ret < 0)
        return ret;
    entry =
        json_object_get(json_object_get(json_object_get(v->root, "layers"), diff_id), compression);
    digest = csi_json_str(entry, "digest");
    /* entries come from a file anyone could have edited: only well-formed ones count */
    if (digest == NULL || cs_digest_validate(digest, NULL) < 0 ||
        csi_json_int(&size, entry, "size") < 0 || size < 0)
        return csi_error_set(err, CS_ENOTFOUND, "no %s blob recorded for layer %s", compression,
                             diff_id);
    snprintf(digest_out, CS_DIGEST_STRLEN, "%s", digest);
    if (size_out != NULL)
        *size_out = size;
    return 0;
}

int
csi_layermap_get(char digest_out[CS_DIGEST_STRLEN], int64_t *size_out, cs_store *s,
                 const char *diff_id, const char *compression, cs_error **err)
{
    csi_layermap_view *v = NULL;
    int ret;

    /* the arguments first: a bad one is an error whatever the file holds */
    ret = cs_digest_validate(diff_id, err);
    if (ret == 0)
        ret = check_compression(compression, err);
    if (ret == 0)
        ret = csi_layermap_view_open(&v, s, err);
    if (ret == 0)
        ret = csi_layermap_view_get(digest_out, size_out, v, diff_id, compression, err);
    csi_layermap_view_free(v);
    return ret;
}

typedef struct put_args {
    const char *diff_id, *compression, *digest;
    int64_t size;
} put_args;

static int
put_apply(json_t *root, const char *diff_id, const char *compression, const char *digest,
          int64_t size, cs_error **err)
{
    json_t *layers, *entry, *blob;

    layers = section(root, "layers");
    entry = layers ? section(layers, diff_id) : NULL;
    blob = json_pack("{s:s,s:I}", "digest", digest, "size", (json_int_t)size);
    if (entry == NULL || blob == NULL || json_object_set_new(entry, compression, blob) < 0)
        return csi_error_oom(err);
    return 0;
}

static int
put_edit(json_t *root, void *arg, cs_error **err)
{
    const put_args *a = arg;

    return put_apply(root, a->diff_id, a->compression, a->digest, a->size, err);
}

int
csi_layermap_put(cs_store *s, const char *diff_id, const char *compression, const char *digest,
                 int64_t size, cs_error **err)
{
    put_args a = {diff_id, compression, digest, size};
    int ret;

    ret = cs_digest_validate(diff_id, err);
    if (ret == 0)
        ret = cs_digest_validate(digest, err);
    if (ret == 0)
        ret = check_compression(compression, err);
    if (ret == 0 && size < 0)
        ret = csi_error_set(err, CS_EINVAL, "layer map: negative size for %s", digest);
    if (ret < 0)
        return ret;
    {
        pending *p = calloc(1, sizeof(*p));

        if (p != NULL) {
            snprintf(p->diff_id, sizeof(p->diff_id), "%s", diff_id);
            snprintf(p->digest, sizeof(p->digest), "%s", digest);
            snprintf(p->compression, sizeof(p->compression), "%s", compression);
            p->size = size;
            if (defer_add(s, p))
                return 0;
            free(p);
        }
    }
    return update(s, put_edit, &a, err);
}

/* ---- where blobs were seen --------------------------------------------------------------- */

typedef struct seen_args {
    const char *digest, *repo;
} seen_args;

static int
seen_edit(json_t *root, void *arg, cs_error **err)
{
    const seen_args *a = arg;

    return seen_apply(root, a->digest, a->repo, err);
}

static int
seen_apply(json_t *root, const char *digest, const char *repo, cs_error **err)
{
    json_t *blobs, *entry, *seen, *v;
    size_t i;

    blobs = section(root, "blobs");
    entry = blobs ? section(blobs, digest) : NULL;
    if (entry == NULL)
        return csi_error_oom(err);
    seen = json_object_get(entry, "seen");
    if (!json_is_array(seen)) {
        seen = json_array();
        if (seen == NULL || json_object_set_new(entry, "seen", seen) < 0)
            return csi_error_oom(err);
    }
    /* most recent first: a repository seen again moves to the front */
    for (i = json_array_size(seen); i-- > 0;) {
        v = json_array_get(seen, i);
        if (!json_is_string(v) || strcmp(json_string_value(v), repo) == 0)
            json_array_remove(seen, i);
    }
    if (json_array_insert_new(seen, 0, json_string(repo)) < 0)
        return csi_error_oom(err);
    while (json_array_size(seen) > CSI_LAYERMAP_SEEN_MAX)
        json_array_remove(seen, json_array_size(seen) - 1);
    return 0;
}

int
csi_layermap_seen(cs_store *s, const char *blob_digest, const char *registry_repo, cs_error **err)
{
    seen_args a = {blob_digest, registry_repo};
    int ret;

    ret = cs_digest_validate(blob_digest, err);
    if (ret == 0)
        ret = check_repo(registry_repo, err);
    if (ret < 0)
        return ret;
    {
        pending *p = calloc(1, sizeof(*p));

        if (p != NULL) {
            p->seen = true;
            snprintf(p->digest, sizeof(p->digest), "%s", blob_digest);
            snprintf(p->repo, sizeof(p->repo), "%s", registry_repo);
            if (defer_add(s, p))
                return 0;
            free(p);
        }
    }
    return update(s, seen_edit, &a, err);
}

void
csi_layermap_repos_free(char **repos)
{
    char **p;

    for (p = repos; p != NULL && *p != NULL; p++)
        free(*p);
    free(repos);
}

int
csi_layermap_where(char ***repos_out, size_t *n_out, cs_store *s, const char *blob_digest,
                   cs_error **err)
{
    json_t *root = NULL, *seen, *v;
    char **repos = NULL;
    size_t i, n = 0;
    int ret;

    ret = cs_digest_validate(blob_digest, err);
    if (ret == 0)
        ret = load(&root, s, err);
    if (ret < 0)
        return ret;
    seen = json_object_get(json_object_get(json_object_get(root, "blobs"), blob_digest), "seen");
    repos = calloc(json_array_size(seen) + 1, sizeof(*repos));
    if (repos == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    json_array_foreach(seen, i, v)
    {
        /* the file is untrusted input: skip what put_edit would never have written, and
         * stop where it would have (each repository named costs a push a mount request) */
        if (n == CSI_LAYERMAP_SEEN_MAX)
            break;
        if (!json_is_string(v) || check_repo(json_string_value(v), NULL) < 0)
            continue;
        repos[n] = strdup(json_string_value(v));
        if (repos[n] == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
        n++;
    }
    *repos_out = repos;
    *n_out = n;
    repos = NULL;
out:
    csi_layermap_repos_free(repos);
    json_decref(root);
    return ret;
}

/* ---- pruning ----------------------------------------------------------------------------- */

typedef struct prune_args {
    bool (*keep)(const char *blob_digest, void *arg);
    void *arg;
    size_t removed;
} prune_args;

static int
prune_edit(json_t *root, void *arg, cs_error **err)
{
    prune_args *a = arg;
    json_t *layers = json_object_get(root, "layers"), *blobs = json_object_get(root, "blobs");
    json_t *entry, *blob;
    const char *diff_id, *comp, *digest;
    void *tmp, *tmp2;

    (void)err;
    json_object_foreach_safe(layers, tmp, diff_id, entry)
    {
        json_object_foreach_safe(entry, tmp2, comp, blob)
        {
            digest = csi_json_str(blob, "digest");
            if (digest == NULL || !a->keep(digest, a->arg)) {
                json_object_del(entry, comp);
                a->removed++;
            }
        }
        if (!json_is_object(entry) || json_object_size(entry) == 0)
            json_object_del(layers, diff_id);
    }
    json_object_foreach_safe(blobs, tmp, digest, blob)
    {
        if (!a->keep(digest, a->arg)) {
            json_object_del(blobs, digest);
            a->removed++;
        }
    }
    return 0;
}

int
csi_layermap_prune(size_t *removed_out, cs_store *s,
                   bool (*keep)(const char *blob_digest, void *arg), void *arg, cs_error **err)
{
    prune_args a = {keep, arg, 0};
    int ret = update(s, prune_edit, &a, err);

    if (ret == 0 && removed_out != NULL)
        *removed_out = a.removed;
    return ret;
}
