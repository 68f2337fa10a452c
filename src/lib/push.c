/* cs_push: read the source into blobs, then HEAD / mount / upload each, then the manifest. */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include <cachesync/push.h>
#include <cachesync/reference.h>
#include <cachesync/source.h>
#include <cachesync/store.h>
#include "error_int.h"
#include "growing.h"
#include "layermap.h"
#include "log_int.h"
#include "registry_int.h"

/* blob uploads at once when --jobs does not say (docker push uses 5) */
#define DEFAULT_PUSH_JOBS 5
/* layers that can start uploading while the source is still being read */
#define EARLY_MAX 1024

typedef struct push {
    const cs_push_options *opts;
    cs_push_result *res;
    cs_reference *ref;
    cs_registry *reg;
    cs_store *store;
    char *repo_key;     /* "domain/path": how the layer map names this repository */
    pthread_mutex_t mu; /* results, events and the layer map, shared by the uploaders */
    /* blobs uploaded while they were compressed (under mu; see blob_growing) */
    struct stream *streams;
    size_t nstreams, capstreams, nextstream;
} push;

typedef struct stream {
    cs_growing_blob *g;
    bool taken; /* by an uploader, or given up by push_blob */
} stream;

void
cs_push_result_free(cs_push_result *r)
{
    size_t i;

    if (r == NULL)
        return;
    free(r->ref);
    free(r->media_type);
    for (i = 0; i < r->ntags; i++)
        free(r->tags[i]);
    free(r->tags);
    free(r);
}

static void
event(push *p, cs_push_event ev, const char *digest, uint64_t total, const char *fmt, ...)
{
    cs_push_progress pr = {0};
    char msg[1024];
    va_list ap;

    if (p->opts->progress == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pr.event = ev;
    pr.digest = digest;
    pr.total = total;
    pr.message = msg;
    pthread_mutex_lock(&p->mu);
    p->opts->progress(&pr, p->opts->progress_payload);
    pthread_mutex_unlock(&p->mu);
}

static void
step(push *p, const char *what, uint64_t done, uint64_t total)
{
    cs_push_progress pr = {0};

    if (p->opts->progress == NULL)
        return;
    pr.event = CS_PUSH_STEP;
    pr.message = what;
    pr.done = done;
    pr.total = total;
    pthread_mutex_lock(&p->mu);
    p->opts->progress(&pr, p->opts->progress_payload);
    pthread_mutex_unlock(&p->mu);
}

static void
source_progress(void *payload, const char *what, uint64_t done, uint64_t total)
{
    step(payload, what, done, total);
}

/* Mount from another repository of the same registry that the store saw holding the blob. */
static int
try_mount(bool *mounted, push *p, cs_registry *reg, const cs_source_blob *b, cs_error **err)
{
    char **repos = NULL;
    size_t n = 0, i, dlen = strlen(p->ref->domain);
    int ret;

    *mounted = false;
    pthread_mutex_lock(&p->mu);
    ret = csi_layermap_where(&repos, &n, p->store, b->digest, NULL);
    pthread_mutex_unlock(&p->mu);
    if (ret < 0)
        return 0;
    for (i = 0; i < n && !*mounted; i++) {
        const char *from = repos[i] + dlen + 1;

        if (strncmp(repos[i], p->ref->domain, dlen) != 0 || repos[i][dlen] != '/' ||
            strcmp(from, p->ref->path) == 0)
            continue;
        ret = cs_registry_mount_blob(mounted, reg, p->ref->path, b->digest, from, err);
        if (ret < 0)
            break;
        if (*mounted)
            event(p, CS_PUSH_BLOB, b->digest, (uint64_t)b->size, "mounted from %s", from);
    }
    csi_layermap_repos_free(repos);
    return 0;
}

/* Count under the lock. */
static void
tally(push *p, size_t *counter, uint64_t *bytes, uint64_t n)
{
    pthread_mutex_lock(&p->mu);
    if (counter != NULL)
        (*counter)++;
    if (bytes != NULL)
        *bytes += n;
    pthread_mutex_unlock(&p->mu);
}

/* Upload G while it is written (an uploader's task); never fails the push: a blob whose
 * stream failed goes up the usual way once complete. */
static void
stream_blob(push *p, cs_registry *reg, cs_growing_blob *g)
{
    enum csi_growing_upload how = CSI_GROWING_NOT_SENT;
    cs_error *e = NULL;
    uint64_t sent = 0;

    if (csi_registry_upload_growing(reg, p->ref->path, g, &sent, &how, &e) < 0)
        csi_log(CS_LOG_INFO, "%s; the layer goes up once compressed", e ? e->message : "failed");
    cs_error_free(e);
    tally(p, NULL, &p->res->bytes_uploaded, sent);
    csi_growing_uploaded(g, how, sent);
}

/* Was B sent while it was compressed (or found present then)? Waits for that upload's end.
 * A stream not yet started is given up: B goes the usual way. */
static bool
streamed(push *p, const cs_source_blob *b)
{
    cs_growing_blob *g = NULL;
    enum csi_growing_upload how;
    uint64_t sent = 0;
    size_t i;

    pthread_mutex_lock(&p->mu);
    for (i = 0; i < p->nstreams && g == NULL; i++) {
        if (!csi_growing_is(p->streams[i].g, b->digest))
            continue;
        if (!p->streams[i].taken) {
            p->streams[i].taken = true;
            break;
        }
        g = csi_growing_ref(p->streams[i].g);
    }
    pthread_mutex_unlock(&p->mu);
    if (g == NULL)
        return false;
    how = csi_growing_upload_wait(g, &sent);
    csi_growing_unref(g);
    if (how == CSI_GROWING_UPLOADED) {
        tally(p, &p->res->blobs_uploaded, NULL, 0);
        event(p, CS_PUSH_BLOB, b->digest, (uint64_t)b->size, "uploaded as it was compressed");
        return true;
    }
    if (how == CSI_GROWING_PRESENT) {
        /* its digest was known only at the end: the bytes sent before went for nothing */
        tally(p, &p->res->blobs_present, NULL, 0);
        event(p, CS_PUSH_BLOB, b->digest, (uint64_t)b->size,
              "exists (found once compressed, after %.1f MB of it were sent)", (double)sent / 1e6);
        return true;
    }
    return false;
}

static int
push_blob(push *p, cs_registry *reg, const cs_source_blob *b, cs_error **err)
{
    bool exists = false, mounted = false;
    uint64_t sent = 0;
    int ret;

    tally(p, &p->res->blobs_total, &p->res->bytes_total, (uint64_t)b->size);
    if (b->path == NULL) {
        /* a foreign (non-distributable) layer the source does not hold: registries fetch
         * it from its URLs; image-spec says such layers SHOULD NOT be uploaded */
        event(p, CS_PUSH_BLOB, b->digest, (uint64_t)b->size, "not uploaded (foreign layer)");
        return 0;
    }
    if (streamed(p, b))
        goto seen;
    ret = cs_registry_blob_exists(&exists, reg, p->ref->path, b->digest, b->size, err);
    if (ret < 0)
        return ret;
    if (exists) {
        tally(p, &p->res->blobs_present, NULL, 0);
        event(p, CS_PUSH_BLOB, b->digest, (uint64_t)b->size, "exists");
    } else {
        ret = try_mount(&mounted, p, reg, b, err);
        if (ret < 0)
            return ret;
        if (mounted) {
            tally(p, &p->res->blobs_mounted, NULL, 0);
        } else {
            ret =
                cs_registry_upload_blob(reg, p->ref->path, b->digest, b->size, b->path, &sent, err);
            tally(p, NULL, &p->res->bytes_uploaded, sent);
            if (ret < 0)
                return ret;
            tally(p, &p->res->blobs_uploaded, NULL, 0);
            event(p, CS_PUSH_BLOB, b->digest, (uint64_t)b->size, "uploaded");
        }
    }
seen:
    /* remember where it is, for mounts into other repositories later */
    pthread_mutex_lock(&p->mu);
    csi_layermap_seen(p->store, b->digest, p->repo_key, NULL);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* ---- uploading several blobs at once ------------------------------------------------------ */

/* Uploaders share a queue; each has a registry client of its own (a connection and token
 * cache; the first one is the caller's, the others start from its scheme, so none probes
 * https again). The queue opens before the source is read: layers compressed during the
 * export are queued as they land in the store (blob_ready), so they go up while the export
 * goes on; after the load the rest is queued and the queue closed. The first failure stops
 * the queue; the others finish their blob. */
typedef struct uploads {
    push *p;
    pthread_cond_t cv;        /* a blob was queued, or the queue closed or stopped */
    const cs_source_blob **q; /* queued, in order (under p->mu) */
    size_t n, cap, next;
    cs_source_blob *own; /* copies of the blobs blob_ready queued */
    size_t nown, capown;
    bool open, stop;
    int ret;
    cs_error *err;
    struct uploader *w;
    size_t nw;
} uploads;

typedef struct uploader {
    uploads *u;
    cs_registry *reg;
    pthread_t thread;
    bool started;
} uploader;

static void *
upload_worker(void *arg)
{
    uploader *w = arg;
    uploads *u = w->u;
    cs_error *e = NULL;

    for (;;) {
        const cs_source_blob *b;
        int ret;

        pthread_mutex_lock(&u->p->mu);
        while (!u->stop && u->next == u->n && u->p->nextstream == u->p->nstreams && u->open)
            pthread_cond_wait(&u->cv, &u->p->mu);
        if (!u->stop && u->p->nextstream < u->p->nstreams) {
            /* a blob being compressed first: whoever meets its digest waits for it */
            stream *s = &u->p->streams[u->p->nextstream++];
            cs_growing_blob *g = NULL;

            if (!s->taken) {
                s->taken = true;
                g = csi_growing_ref(s->g);
            }
            pthread_mutex_unlock(&u->p->mu);
            if (g != NULL) {
                stream_blob(u->p, w->reg, g);
                csi_growing_unref(g);
            }
            continue;
        }
        if (u->stop || u->next == u->n) {
            pthread_mutex_unlock(&u->p->mu);
            break;
        }
        b = u->q[u->next++];
        pthread_mutex_unlock(&u->p->mu);
        ret = push_blob(u->p, w->reg, b, &e);
        if (ret < 0) {
            pthread_mutex_lock(&u->p->mu);
            if (u->ret == 0) {
                u->ret = ret;
                u->err = e;
                e = NULL;
            }
            u->stop = true;
            pthread_cond_broadcast(&u->cv);
            pthread_mutex_unlock(&u->p->mu);
            cs_error_free(e);
            break;
        }
    }
    return NULL;
}

static int
registry_like(cs_registry **out, const push *p, cs_error **err)
{
    int ret = cs_registry_new(out, p->ref->domain, &p->opts->registry, err);

    if (ret == 0 && p->reg->base != NULL) {
        (*out)->base = strdup(p->reg->base);
        if ((*out)->base == NULL) {
            cs_registry_free(*out);
            *out = NULL;
            return csi_error_oom(err);
        }
    }
    return ret;
}

/* Start the uploaders on an empty, open queue. Without threads (jobs 1, or none could
 * start) the queue is worked through by uploads_finish in the calling thread. */
static int
uploads_start(uploads *u, push *p, cs_error **err)
{
    size_t i, nw = p->opts->jobs > 0 ? (size_t)p->opts->jobs : DEFAULT_PUSH_JOBS;
    int ret = 0;

    memset(u, 0, sizeof(*u));
    u->p = p;
    u->open = true;
    pthread_cond_init(&u->cv, NULL);
    /* slots for layers queued during the load; past them a layer waits for the end */
    u->own = calloc(EARLY_MAX, sizeof(*u->own));
    u->capown = u->own != NULL ? EARLY_MAX : 0;
    if (nw <= 1)
        return 0;
    u->w = calloc(nw, sizeof(*u->w));
    if (u->w == NULL)
        return csi_error_oom(err);
    u->nw = nw;
    for (i = 0; i < nw && ret == 0; i++) {
        u->w[i].u = u;
        /* the caller's client is busy with the source's questions meanwhile: a copy each */
        ret = registry_like(&u->w[i].reg, p, err);
        if (ret == 0 && pthread_create(&u->w[i].thread, NULL, upload_worker, &u->w[i]) == 0)
            u->w[i].started = true;
    }
    return ret;
}

/* Queue B (kept by the caller until uploads_finish returns) unless a blob of that digest is
 * queued already (under p->mu). */
static int
queue_locked(uploads *u, const cs_source_blob *b)
{
    size_t i;

    for (i = 0; i < u->n; i++) {
        if (strcmp(u->q[i]->digest, b->digest) == 0)
            return 0;
    }
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 64;
        const cs_source_blob **q = realloc(u->q, cap * sizeof(*q));

        if (q == NULL)
            return CS_ENOMEM;
        u->q = q;
        u->cap = cap;
    }
    u->q[u->n++] = b;
    pthread_cond_signal(&u->cv);
    return 0;
}

/* cs_source_options.blob_ready: a layer made during the export, queued at once. A copy is
 * kept (the source's own list comes only when the load ends); a failure to queue only means
 * it goes up after the load instead. */
static void
blob_ready(void *payload, const char *digest, int64_t size, const char *path)
{
    uploads *u = payload;
    cs_source_blob *b;

    pthread_mutex_lock(&u->p->mu);
    if (u->nown == u->capown) {
        /* the queue points into OWN: never move it, allocate blocks of fixed slots instead */
        pthread_mutex_unlock(&u->p->mu);
        return;
    }
    b = &u->own[u->nown];
    b->digest = strdup(digest);
    b->path = strdup(path);
    b->size = size;
    if (b->digest != NULL && b->path != NULL && queue_locked(u, b) == 0) {
        u->nown++;
    } else {
        free(b->digest);
        free(b->path);
        memset(b, 0, sizeof(*b));
    }
    pthread_mutex_unlock(&u->p->mu);
}

/* cs_source_options.blob_growing: a large new layer is being compressed; an uploader sends
 * its chunks as they are written (the first free one: streams go before queued blobs). Its
 * digest comes at the end, and push_blob then waits for this upload instead of making
 * another. Dropped when it cannot be kept: the blob goes up once complete. */
static void
blob_growing(void *payload, cs_growing_blob *g)
{
    uploads *u = payload;
    push *p = u->p;

    pthread_mutex_lock(&p->mu);
    if (!u->stop && p->nstreams == p->capstreams) {
        size_t cap = p->capstreams ? p->capstreams * 2 : 8;
        stream *ns = realloc(p->streams, cap * sizeof(*ns));

        if (ns != NULL) {
            p->streams = ns;
            p->capstreams = cap;
        }
    }
    if (!u->stop && p->nstreams < p->capstreams) {
        p->streams[p->nstreams].g = csi_growing_ref(g);
        p->streams[p->nstreams].taken = false;
        p->nstreams++;
        pthread_cond_signal(&u->cv);
    }
    pthread_mutex_unlock(&p->mu);
}

/* Queue BLOBS (N), close the queue, wait for the uploaders; the first failure. */
static int
uploads_finish(uploads *u, const cs_source_blob **blobs, size_t n, cs_error **err)
{
    push *p = u->p;
    size_t i;
    int ret = 0;

    pthread_mutex_lock(&p->mu);
    for (i = 0; i < n && ret == 0; i++)
        ret = queue_locked(u, blobs[i]) < 0 ? csi_error_oom(err) : 0;
    if (ret < 0)
        u->stop = true;
    u->open = false;
    pthread_cond_broadcast(&u->cv);
    pthread_mutex_unlock(&p->mu);
    for (i = 0; i < u->nw; i++) {
        if (u->w[i].started)
            pthread_join(u->w[i].thread, NULL);
        u->w[i].started = false;
    }
    /* no thread ran (or some could not start and left a share): do it here */
    if (ret == 0 && u->ret == 0) {
        for (i = u->next; i < u->n && ret == 0; i++)
            ret = push_blob(p, p->reg, u->q[i], err);
        u->next = u->n;
    }
    if (ret == 0 && u->ret < 0) {
        ret = u->ret;
        if (err != NULL) {
            *err = u->err;
            u->err = NULL;
        }
    }
    return ret;
}

/* Stop (if still running) and free. */
static void
uploads_free(uploads *u)
{
    size_t i;

    if (u->p == NULL)
        return;
    pthread_mutex_lock(&u->p->mu);
    u->stop = true;
    u->open = false;
    pthread_cond_broadcast(&u->cv);
    pthread_mutex_unlock(&u->p->mu);
    for (i = 0; i < u->nw; i++) {
        if (u->w[i].started)
            pthread_join(u->w[i].thread, NULL);
        cs_registry_free(u->w[i].reg);
    }
    free(u->w);
    for (i = 0; i < u->nown; i++) {
        free(u->own[i].digest);
        free(u->own[i].path);
    }
    free(u->own);
    free(u->q);
    for (i = 0; i < u->p->nstreams; i++)
        csi_growing_unref(u->p->streams[i].g);
    free(u->p->streams);
    u->p->streams = NULL;
    u->p->nstreams = u->p->capstreams = u->p->nextstream = 0;
    cs_error_free(u->err);
    pthread_cond_destroy(&u->cv);
    memset(u, 0, sizeof(*u));
}

/* Does every tag already name exactly this manifest? A registry accepts a manifest only once
 * it holds its blobs, so then nothing needs a HEAD or an upload: an unchanged push costs the
 * ping and one GET per tag. The manifest is compared byte for byte, not by the registry's
 * digest header. Any failure here just means "push normally". */
static bool
already_pushed(push *p, const cs_source_image *img)
{
    cs_buf got = CS_BUF_INIT;
    char digest[CS_DIGEST_STRLEN];
    char *mt = NULL;
    cs_error *e = NULL;
    bool same = true;
    size_t i;

    for (i = 0; i < p->res->ntags && same; i++) {
        const char *tag = strrchr(p->res->tags[i], ':') + 1;

        same = cs_registry_get_manifest(&got, &mt, digest, p->reg, p->ref->path, tag, &e) == 0 &&
               got.len == img->manifest_len && memcmp(got.ptr, img->manifest, got.len) == 0 &&
               strcmp(digest, img->manifest_digest) == 0;
        cs_error_free(e);
        e = NULL;
        free(mt);
        mt = NULL;
        cs_buf_dispose(&got);
    }
    return same;
}

static int
larger_first(const void *a, const void *b)
{
    const cs_source_blob *x = *(const cs_source_blob *const *)a;
    const cs_source_blob *y = *(const cs_source_blob *const *)b;

    return x->size < y->size ? 1 : x->size > y->size ? -1 : strcmp(x->digest, y->digest);
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
add_tag(push *p, const char *tag, cs_error **err)
{
    cs_reference *t = NULL;
    char **tags;
    char *s;
    int ret;

    ret = cs_reference_with_target(&t, p->ref, tag, err);
    if (ret < 0)
        return ret;
    s = cs_reference_to_string(t, 0);
    cs_reference_free(t);
    tags = realloc(p->res->tags, (p->res->ntags + 1) * sizeof(*tags));
    if (s == NULL || tags == NULL) {
        free(s);
        return csi_error_oom(err);
    }
    p->res->tags = tags;
    tags[p->res->ntags++] = s;
    return 0;
}

/* PUT the manifest under TAG. docker-registry verifies a manifest's blobs by reading their
 * link files, which it rewrites in place (filesystem driver Writer: truncate, then write)
 * whenever a blob is uploaded or mounted again: a concurrent push of the same image can make
 * it read an empty link and answer 400 DIGEST_INVALID (or BLOB_UNKNOWN) for blobs that are
 * there (seen in the fault campaign's "same push twice at once"). Such an answer is asked
 * again, twice, after a short wait; the second answer stands. */
static int
put_manifest(push *p, const cs_source_image *img, const char *tag, cs_error **err)
{
    int tries, ret = 0;

    for (tries = 0; tries < 3; tries++) {
        cs_error *e = NULL;

        ret = cs_registry_put_manifest(p->reg, p->ref->path, tag, img->manifest_media_type,
                                       img->manifest, img->manifest_len, &e);
        if (ret == 0)
            return 0;
        if (tries == 2 || e == NULL || e->http_status != 400 ||
            (strstr(e->message, "DIGEST_INVALID") == NULL &&
             strstr(e->message, "BLOB_UNKNOWN") == NULL)) {
            if (err != NULL)
                *err = e;
            else
                cs_error_free(e);
            return ret;
        }
        csi_log(CS_LOG_INFO,
                "%s; the registry may be relinking those blobs for a concurrent "
                "push: trying again",
                e->message);
        cs_error_free(e);
        usleep(200000u << tries);
    }
    return ret;
}

int
cs_push(cs_push_result **out, const cs_push_options *opts, cs_error **err)
{
    cs_source_options so = {0};
    cs_source_image *img = NULL;
    cs_source src = {0};
    const cs_source_blob **todo = NULL;
    uploads up = {0};
    push p = {0};
    double t0 = now_s();
    size_t i, k, ntodo = 0;
    int ret;

    p.opts = opts;
    pthread_mutex_init(&p.mu, NULL);
    p.res = calloc(1, sizeof(*p.res));
    if (p.res == NULL) {
        pthread_mutex_destroy(&p.mu);
        return csi_error_oom(err);
    }
    ret = cs_reference_parse(&p.ref, opts->ref, err);
    if (ret < 0)
        goto out;
    if (p.ref->digest != NULL) {
        ret = csi_error_set(err, CS_EINVAL,
                            "push to %s: name a tag, not a digest (the digest comes from what "
                            "is pushed)",
                            opts->ref);
        goto out;
    }
    p.res->ref = cs_reference_to_string(p.ref, 0);
    if (p.res->ref == NULL || asprintf(&p.repo_key, "%s/%s", p.ref->domain, p.ref->path) < 0) {
        p.repo_key = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    ret = add_tag(&p, p.ref->tag, err);
    for (i = 0; ret == 0 && i < opts->ntags; i++)
        ret = add_tag(&p, opts->tags[i], err);
    if (ret < 0)
        goto out;
    ret = cs_source_parse(&src, opts->source, err);
    if (ret == 0)
        ret = cs_store_open(&p.store, opts->store_dir, err);
    /* the layer map's two updates per layer wait in memory until the end (layermap.h) */
    if (ret == 0)
        ret = csi_layermap_defer(p.store, err);
    if (ret == 0)
        ret = cs_registry_new(&p.reg, p.ref->domain, &opts->registry, err);
    /* ask the registry first: a wrong password should not wait for an export */
    if (ret == 0)
        ret = cs_registry_ping(p.reg, err);
    if (ret == 0)
        ret = uploads_start(&up, &p, err);
    if (ret < 0)
        goto out;
    so.blob_ready = blob_ready;
    so.blob_ready_payload = &up;
    /* with uploaders of their own, large new layers go up as they are compressed */
    if (up.nw > 0) {
        so.blob_growing = blob_growing;
        so.blob_growing_payload = &up;
    }
    so.docker_host = opts->docker_host;
    so.compression = opts->compression;
    so.platform = opts->platform;
    so.progress = source_progress;
    so.progress_payload = &p;
    ret = cs_source_load(&img, &src, p.store, &so, err);
    if (ret < 0) {
        csi_error_wrap(err, "source %s", opts->source);
        goto out;
    }
    p.res->layers_compressed = img->layers_compressed;
    p.res->layers_reused = img->layers_reused;
    memcpy(p.res->manifest_digest, img->manifest_digest, CS_DIGEST_STRLEN);
    p.res->media_type = strdup(img->manifest_media_type);
    if (p.res->media_type == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    event(&p, CS_PUSH_SOURCE, img->manifest_digest, 0, "%s: %zu layers, manifest %s", opts->source,
          img->nlayers, img->manifest_digest);
    if (already_pushed(&p, img)) {
        cs_error *e = NULL;

        /* layers queued during the load only asked HEAD (or mounted, uploaded what the
         * registry lacked after all): let them end, then count as for any no-op */
        if (uploads_finish(&up, NULL, 0, &e) < 0)
            csi_log(CS_LOG_DEBUG, "early uploads: %s", e ? e->message : "failed");
        cs_error_free(e);
        p.res->blobs_total = p.res->blobs_present = 0;
        p.res->bytes_total = 0;
        for (i = 0; i < img->nlayers; i++) {
            bool dup = false;

            for (k = 0; k < i; k++)
                dup = dup || strcmp(img->layers[k].digest, img->layers[i].digest) == 0;
            if (!dup) {
                p.res->blobs_total++;
                p.res->bytes_total += (uint64_t)img->layers[i].size;
            }
        }
        p.res->blobs_total++;
        p.res->bytes_total += (uint64_t)img->config.size;
        p.res->blobs_present = p.res->blobs_total;
        event(&p, CS_PUSH_NOTE, img->manifest_digest, 0,
              "%s already names manifest %s: nothing to upload", p.res->ref, img->manifest_digest);
        goto record;
    }
    /* blobs before the manifest (the registry may refuse a manifest whose blobs it lacks);
     * the same blob twice is pushed once; the largest first, so the longest upload starts
     * early */
    todo = calloc(img->nlayers + 1, sizeof(*todo));
    if (todo == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    for (i = 0; i < img->nlayers; i++) {
        bool dup = false;

        for (k = 0; k < i; k++)
            dup = dup || strcmp(img->layers[k].digest, img->layers[i].digest) == 0;
        if (!dup)
            todo[ntodo++] = &img->layers[i];
    }
    todo[ntodo++] = &img->config;
    qsort(todo, ntodo, sizeof(*todo), larger_first);
    ret = uploads_finish(&up, todo, ntodo, err);
    if (ret < 0)
        goto out;
    for (i = 0; i < p.res->ntags; i++) {
        const char *tag = strrchr(p.res->tags[i], ':') + 1;

        ret = put_manifest(&p, img, tag, err);
        if (ret < 0)
            goto out;
        event(&p, CS_PUSH_MANIFEST, img->manifest_digest, img->manifest_len, "%s", p.res->tags[i]);
    }
record:
    /* the store keeps what was pushed, so pulling it back here costs nothing */
    ret = cs_store_put_blob(p.store, img->manifest_digest, img->manifest, img->manifest_len, NULL,
                            err);
    if (ret == 0)
        ret = cs_store_set_ref(p.store, p.res->ref, img->manifest_media_type, img->manifest_digest,
                               (int64_t)img->manifest_len, NULL, err);
    if (ret < 0)
        goto out;
    p.res->seconds = now_s() - t0;
    *out = p.res;
    p.res = NULL;
out:
    uploads_free(&up);
    if (p.store != NULL) {
        cs_error *e = NULL;

        /* what was stored and uploaded so far, a failed push's included */
        if (csi_layermap_flush(p.store, &e) < 0)
            csi_log(CS_LOG_WARN, "layer map: %s", e ? e->message : "update failed");
        cs_error_free(e);
    }
    free(todo);
    pthread_mutex_destroy(&p.mu);
    cs_push_result_free(p.res);
    cs_source_image_free(img);
    cs_source_dispose(&src);
    cs_reference_free(p.ref);
    cs_registry_free(p.reg);
    cs_store_free(p.store);
    free(p.repo_key);
    return ret;
}
