/* cs_pull: resolve, plan, fetch into the store; delivery is in pull_deliver.c. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error_int.h"
#include "log_int.h"
#include "pull_int.h"

#define DEFAULT_JOBS 6

int
cs_target_parse(cs_target *out, const char *spec, cs_error **err)
{
    cs_target t = {0};
    const char *rest;

    if (strcmp(spec, "docker") == 0) {
        t.kind = CS_TARGET_DOCKER;
    } else if (strcmp(spec, "store") == 0) {
        t.kind = CS_TARGET_STORE;
    } else if (strncmp(spec, "archive:", 8) == 0 && spec[8] != '\0') {
        t.kind = CS_TARGET_ARCHIVE;
        t.path = strdup(spec + 8);
        if (t.path == NULL)
            return csi_error_oom(err);
    } else if (strncmp(spec, "oci:", 4) == 0 && spec[4] != '\0') {
        const char *colon;

        rest = spec + 4;
        t.kind = CS_TARGET_OCI;
        /* oci:DIR[:TAG], as skopeo reads it: the last ':' splits off a tag */
        colon = strrchr(rest, ':');
        if (colon != NULL && colon != rest && colon[1] != '\0' && strchr(colon, '/') == NULL) {
            t.path = strndup(rest, (size_t)(colon - rest));
            t.tag = strdup(colon + 1);
            if (t.tag == NULL) {
                free(t.path);
                return csi_error_oom(err);
            }
        } else {
            t.path = strdup(rest);
        }
        if (t.path == NULL) {
            free(t.tag);
            return csi_error_oom(err);
        }
    } else if (strncmp(spec, "buildkit:", 9) == 0) {
        return csi_error_set(err, CS_EUNSUPPORTED, "target %s: buildkit:DIR is not supported yet",
                             spec);
    } else {
        return csi_error_set(err, CS_EINVAL,
                             "invalid target \"%.100s\": expected docker, store, oci:DIR[:TAG] "
                             "or archive:FILE",
                             spec);
    }
    *out = t;
    return 0;
}

void
cs_target_dispose(cs_target *t)
{
    if (t == NULL)
        return;
    free(t->path);
    free(t->tag);
    memset(t, 0, sizeof(*t));
}

void
cs_pull_result_free(cs_pull_result *r)
{
    size_t i;

    if (r == NULL)
        return;
    free(r->ref);
    free(r->served_by);
    free(r->platform);
    for (i = 0; i < r->ndeliveries; i++) {
        free(r->deliveries[i].target);
        free(r->deliveries[i].outcome);
    }
    free(r->deliveries);
    free(r);
}

void
csi_pull_event(csi_pull *p, cs_pull_event ev, const char *fmt, ...)
{
    cs_pull_progress pr = {0};
    char msg[1024];
    va_list ap;

    if (p->opts->progress == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pr.event = ev;
    pr.message = msg;
    pthread_mutex_lock(&p->event_mu);
    p->opts->progress(&pr, p->opts->progress_payload);
    pthread_mutex_unlock(&p->event_mu);
}

void
csi_pull_event_bytes(csi_pull *p, cs_pull_event ev, const char *digest, uint64_t done,
                     uint64_t total)
{
    cs_pull_progress pr = {0};

    if (p->opts->progress == NULL)
        return;
    pr.event = ev;
    pr.digest = digest;
    pr.done = done;
    pr.total = total;
    pthread_mutex_lock(&p->event_mu);
    p->opts->progress(&pr, p->opts->progress_payload);
    pthread_mutex_unlock(&p->event_mu);
}

int
csi_pull_add_delivery(csi_pull *p, const char *target, const char *outcome, cs_error **err)
{
    cs_pull_delivery *d;

    d = realloc(p->res->deliveries, (p->res->ndeliveries + 1) * sizeof(*d));
    if (d == NULL)
        return csi_error_oom(err);
    p->res->deliveries = d;
    d = &d[p->res->ndeliveries];
    d->target = strdup(target);
    d->outcome = strdup(outcome);
    if (d->target == NULL || d->outcome == NULL) {
        free(d->target);
        free(d->outcome);
        return csi_error_oom(err);
    }
    p->res->ndeliveries++;
    csi_pull_event(p, CS_PULL_DELIVERED, "%s: %s", target, outcome);
    return 0;
}

/* Find the first of REF and its fallbacks that exists; a missing one (HTTP 404 for its
 * manifest) moves on, any other failure stops. */
static int
resolve(csi_pull *p, cs_error **err)
{
    const cs_pull_options *o = p->opts;
    size_t i;
    int ret;

    for (i = 0; i <= o->nfallbacks; i++) {
        const char *cand = i == 0 ? o->ref : o->fallbacks[i - 1];
        cs_reference *r = NULL;
        cs_error *e = NULL;

        ret = cs_reference_parse(&r, cand, err);
        if (ret < 0)
            return ret;
        cs_registry_free(p->reg);
        p->reg = NULL;
        ret = cs_registry_new(&p->reg, r->domain, &o->registry, err);
        if (ret < 0) {
            cs_reference_free(r);
            return ret;
        }
        ret = cs_image_resolve(&p->img, p->reg, r, o->platform, p->store, 0, &e);
        if (ret == 0) {
            p->served = r;
            return 0;
        }
        cs_reference_free(r);
        if (ret != CS_ENOTFOUND || e->http_status != 404 || i == o->nfallbacks) {
            if (ret == CS_ENOTFOUND && e->http_status == 404 && o->nfallbacks > 0) {
                ret = csi_error_set(err, CS_ENOTFOUND,
                                    "%s not found, nor any of its %zu fallbacks (last: %s)", o->ref,
                                    o->nfallbacks, e->message);
                cs_error_free(e);
                return ret;
            }
            *err = e;
            return ret;
        }
        csi_pull_event(p, CS_PULL_NOTE, "%s: not found, trying %s", cand, o->fallbacks[i]);
        cs_error_free(e);
    }
    return csi_error_set(err, CS_ENOTFOUND, "%s not found", o->ref);
}

/* Keep what resolve verified: the documents go into the store first. */
static int
store_documents(csi_pull *p, cs_error **err)
{
    cs_image *img = p->img;
    int ret;

    ret = cs_store_put_blob(p->store, img->top_digest, img->top.ptr, img->top.len, NULL, err);
    if (ret == 0 && img->from_index)
        ret = cs_store_put_blob(p->store, img->manifest_digest, img->manifest.ptr,
                                img->manifest.len, NULL, err);
    if (ret == 0)
        ret = cs_store_put_blob(p->store, img->parsed->config.digest, img->config.ptr,
                                img->config.len, NULL, err);
    return ret;
}

/* ---- fetching --------------------------------------------------------------------------- */

/* Commits off the transfer thread. A blob's fsync (and its directory's) took ~0.6 ms each,
 * 140 of them for a 60-layer image, and ran on the thread that drives every transfer: while
 * it waited, no other blob's bytes were read. Now that thread only verifies the digest (so a
 * mismatch still restarts the transfer) and queues the writer; this thread makes it durable
 * and visible, then releases the bytes to a streamed load. fetch_needed waits for the queue
 * before it returns, so every blob is committed as before when a pull goes on. */
typedef struct wctx wctx;

typedef struct committer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wctx *head, *tail;
    bool started, closing;
    pthread_t thread;
    int ret; /* the first failure */
    cs_error *err;
} committer;

/* A blob's sink: its store writer, and the stream slot reading it when a load streams. */
struct wctx {
    cs_store_writer *w;
    csi_pull_slot *slot;
    committer *cm;
    wctx *next; /* in the committer's queue */
};

static void *
committer_main(void *arg)
{
    committer *cm = arg;
    cs_error *e = NULL;
    wctx *c;
    int ret;

    pthread_mutex_lock(&cm->mu);
    for (;;) {
        while (cm->head == NULL && !cm->closing)
            pthread_cond_wait(&cm->cv, &cm->mu);
        c = cm->head;
        if (c == NULL)
            break;
        cm->head = c->next;
        if (cm->head == NULL)
            cm->tail = NULL;
        pthread_mutex_unlock(&cm->mu);
        ret = cs_store_writer_commit(c->w, &e);
        csi_pull_slot_finished(c->slot, ret == 0);
        pthread_mutex_lock(&cm->mu);
        if (ret < 0 && cm->ret == 0) {
            cm->ret = ret;
            cm->err = e;
        } else {
            cs_error_free(e);
        }
        e = NULL;
    }
    pthread_mutex_unlock(&cm->mu);
    return NULL;
}

/* Hand C's verified writer over; false if no thread could start (then commit here). */
static bool
committer_queue(committer *cm, wctx *c)
{
    pthread_mutex_lock(&cm->mu);
    if (!cm->started) {
        if (pthread_create(&cm->thread, NULL, committer_main, cm) != 0) {
            pthread_mutex_unlock(&cm->mu);
            return false;
        }
        cm->started = true;
    }
    c->next = NULL;
    if (cm->tail != NULL)
        cm->tail->next = c;
    else
        cm->head = c;
    cm->tail = c;
    pthread_cond_signal(&cm->cv);
    pthread_mutex_unlock(&cm->mu);
    return true;
}

/* Wait until every queued blob is committed; the first failure, if any. */
static int
committer_finish(committer *cm, cs_error **err)
{
    int ret;

    pthread_mutex_lock(&cm->mu);
    cm->closing = true;
    pthread_cond_signal(&cm->cv);
    pthread_mutex_unlock(&cm->mu);
    if (cm->started)
        pthread_join(cm->thread, NULL);
    cm->started = false;
    ret = cm->ret;
    if (ret < 0 && err != NULL && *err == NULL) {
        *err = cm->err;
        cm->err = NULL;
    }
    cs_error_free(cm->err);
    cm->err = NULL;
    return ret;
}

static int
w_write(void *payload, const void *data, size_t len, cs_error **err)
{
    wctx *c = payload;
    int ret = cs_store_writer_write(c->w, data, len, err);

    if (ret == 0)
        csi_pull_slot_wrote(c->slot, len);
    return ret;
}

static int
w_restart(void *payload, cs_error **err)
{
    wctx *c = payload;

    csi_pull_slot_restarted(c->slot);
    return cs_store_writer_restart(c->w, err);
}

static int
w_finish(void *payload, cs_error **err)
{
    wctx *c = payload;
    int ret = cs_store_writer_verify(c->w, err);

    if (ret == 0 && c->cm != NULL && committer_queue(c->cm, c))
        return 0;
    if (ret == 0)
        ret = cs_store_writer_commit(c->w, err);
    csi_pull_slot_finished(c->slot, ret == 0);
    return ret;
}

/* A read-only descriptor of PATH for a streamed load (-1 if it cannot be opened: that
 * slot then fails the streamed load, and the caller loads from the store). */
static int
open_ro(const char *path)
{
    return path != NULL ? open(path, O_RDONLY | O_CLOEXEC) : -1;
}

static void
slot_from_store(csi_pull *p, size_t layer, const cs_descriptor *d)
{
    char *path = NULL;

    if (p->stream == NULL)
        return;
    if (cs_store_blob_path(&path, p->store, d->digest, NULL) == 0)
        csi_pull_slot_ready(p, layer, open_ro(path), (uint64_t)d->size, (uint64_t)d->size, true);
    else
        csi_pull_slot_ready(p, layer, -1, 0, 0, false);
    free(path);
}

static void
fetch_progress(void *payload, const cs_blob_fetch *b, size_t delta, bool finished)
{
    csi_pull *p = payload;
    cs_pull_progress pr = {0};

    p->bytes_done += delta;

    if (p->opts->progress == NULL)
        return;
    pr.event = finished ? CS_PULL_FETCHED : CS_PULL_PROGRESS;
    pr.digest = b->digest;
    pr.done = b->sink.offset;
    pr.total = (uint64_t)b->size;
    pr.bytes_done = p->bytes_done;
    pthread_mutex_lock(&p->event_mu);
    p->opts->progress(&pr, p->opts->progress_payload);
    pthread_mutex_unlock(&p->event_mu);
}

static bool
wants(const cs_pull_options *o, cs_target_kind kind)
{
    size_t i;

    if (o->ntargets == 0)
        return kind == CS_TARGET_DOCKER;
    for (i = 0; i < o->ntargets; i++) {
        if (o->targets[i].kind == kind)
            return true;
    }
    return false;
}

/* Fetch the layers I with NEED[I] that the store lacks; COUNT says whether to count them in
 * the result's layer tallies (the first plan does, a later top-up does not). */
static int
fetch_needed(csi_pull *p, const bool *need, bool count, cs_error **err)
{
    const cs_pull_options *o = p->opts;
    const cs_manifest *m = p->img->parsed;
    cs_blob_fetch *blobs = NULL;
    cs_store_writer **writers = NULL;
    wctx *ctx = NULL;
    size_t *layer_of = NULL;
    cs_pull_progress pr = {0};
    committer cm = {.ret = 0};
    size_t i, n = 0;
    int ret = 0, cret;

    pthread_mutex_init(&cm.mu, NULL);
    pthread_cond_init(&cm.cv, NULL);
    blobs = calloc(m->nlayers ? m->nlayers : 1, sizeof(*blobs));
    writers = calloc(m->nlayers ? m->nlayers : 1, sizeof(*writers));
    ctx = calloc(m->nlayers ? m->nlayers : 1, sizeof(*ctx));
    layer_of = calloc(m->nlayers ? m->nlayers : 1, sizeof(*layer_of));
    if (blobs == NULL || writers == NULL || ctx == NULL || layer_of == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    for (i = 0; i < m->nlayers; i++) {
        const cs_descriptor *d = &m->layers[i];
        size_t dup = SIZE_MAX;

        if (!need[i]) {
            if (count)
                p->res->layers_in_daemon++;
            continue;
        }
        if (cs_store_has_blob(p->store, d->digest, d->size)) {
            if (count)
                p->res->layers_in_store++;
            slot_from_store(p, i, d);
            continue;
        }
        /* the same blob twice in one image is fetched once */
        for (size_t k = 0; k < n && dup == SIZE_MAX; k++) {
            if (strcmp(blobs[k].digest, d->digest) == 0)
                dup = layer_of[k];
        }
        if (dup != SIZE_MAX) {
            csi_pull_slot_alias(p, i, dup);
            continue;
        }
        ret = cs_store_writer_open(&writers[n], p->store, d->digest, d->size, err);
        if (ret < 0)
            goto out;
        if (cs_store_writer_present(writers[n])) {
            /* another process finished it while we waited for its lock */
            cs_store_writer_close(writers[n]);
            writers[n] = NULL;
            if (count)
                p->res->layers_in_store++;
            slot_from_store(p, i, d);
            continue;
        }
        ctx[n].w = writers[n];
        ctx[n].cm = &cm;
        if (p->stream != NULL) {
            ctx[n].slot = &p->stream->slots[i];
            csi_pull_slot_ready(p, i, open_ro(cs_store_writer_partial_path(writers[n])),
                                (uint64_t)d->size, cs_store_writer_offset(writers[n]), false);
        }
        layer_of[n] = i;
        blobs[n].digest = d->digest;
        blobs[n].size = d->size;
        blobs[n].sink.offset = cs_store_writer_offset(writers[n]);
        blobs[n].sink.write = w_write;
        blobs[n].sink.restart = w_restart;
        blobs[n].sink.finish = w_finish;
        blobs[n].sink.payload = &ctx[n];
        pr.bytes_to_fetch += (uint64_t)d->size - blobs[n].sink.offset;
        n++;
    }
    pr.event = CS_PULL_PLANNED;
    pr.layers_total = m->nlayers;
    pr.layers_to_fetch = n;
    if (o->progress != NULL)
        o->progress(&pr, o->progress_payload);
    ret = cs_registry_fetch_blobs(p->reg, p->served->path, blobs, n,
                                  o->jobs > 0 ? o->jobs : DEFAULT_JOBS, fetch_progress, p, err);
    cret = committer_finish(&cm, ret < 0 ? NULL : err);
    if (ret == 0)
        ret = cret;
    for (i = 0; i < n; i++)
        p->res->bytes_fetched += blobs[i].bytes_received;
    if (ret < 0)
        goto out;
    p->res->layers_fetched += n;
out:
    committer_finish(&cm, NULL);
    pthread_cond_destroy(&cm.cv);
    pthread_mutex_destroy(&cm.mu);
    for (i = 0; writers != NULL && i < m->nlayers; i++)
        cs_store_writer_close(writers[i]);
    free(writers);
    free(ctx);
    free(layer_of);
    free(blobs);
    return ret;
}

static int
fetch_layers(csi_pull *p, cs_error **err)
{
    const cs_pull_options *o = p->opts;
    size_t i, n = p->img->parsed->nlayers;
    bool all = wants(o, CS_TARGET_STORE) || wants(o, CS_TARGET_OCI) || wants(o, CS_TARGET_ARCHIVE);
    bool docker_needs = wants(o, CS_TARGET_DOCKER) && !p->daemon_has_ref && !p->daemon_has_image;
    bool *need = calloc(n ? n : 1, sizeof(*need));
    int ret;

    if (need == NULL)
        return csi_error_oom(err);
    for (i = 0; i < n; i++) {
        p->res->bytes_total += (uint64_t)p->img->parsed->layers[i].size;
        need[i] = all || (docker_needs && i >= p->daemon_prefix);
    }
    ret = fetch_needed(p, need, true, err);
    free(need);
    return ret;
}

int
csi_pull_fetch_prefix(csi_pull *p, size_t count, cs_error **err)
{
    size_t i, n = p->img->parsed->nlayers;
    bool *need = calloc(n ? n : 1, sizeof(*need));
    int ret;

    if (need == NULL)
        return csi_error_oom(err);
    for (i = 0; i < n && i < count; i++)
        need[i] = true;
    ret = fetch_needed(p, need, false, err);
    free(need);
    return ret;
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
record_ref(csi_pull *p, cs_error **err)
{
    char *served = cs_reference_to_string(p->served, 0);
    const char *ann[] = {"io.cachesync.source", served, NULL};
    int ret;

    if (served == NULL)
        return csi_error_oom(err);
    ret = cs_store_set_ref(p->store, p->res->ref, p->img->parsed->media_type,
                           p->img->manifest_digest, (int64_t)p->img->manifest.len, ann, err);
    free(served);
    return ret;
}

int
cs_pull(cs_pull_result **out, const cs_pull_options *opts, cs_error **err)
{
    csi_pull p = {0};
    double t0 = now_s();
    size_t i;
    int ret;

    p.opts = opts;
    pthread_mutex_init(&p.event_mu, NULL);
    p.res = calloc(1, sizeof(*p.res));
    if (p.res == NULL)
        return csi_error_oom(err);
    ret = cs_reference_parse(&p.ref, opts->ref, err);
    if (ret < 0)
        goto out;
    for (i = 0; i < opts->nfallbacks; i++) {
        cs_reference *f = NULL;

        ret = cs_reference_parse(&f, opts->fallbacks[i], err);
        cs_reference_free(f);
        if (ret < 0)
            goto out;
    }
    p.res->ref = cs_reference_to_string(p.ref, 0);
    if (p.res->ref == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = cs_store_open(&p.store, opts->store_dir, err);
    if (ret < 0)
        goto out;
    /* the daemon first: a daemon that is down should fail before any download */
    if (wants(opts, CS_TARGET_DOCKER)) {
        ret = cs_daemon_open(&p.daemon, opts->docker_host, err);
        if (ret == 0)
            ret = cs_daemon_get_info(&p.dinfo, p.daemon, err);
        if (ret < 0)
            goto out;
    }
    ret = resolve(&p, err);
    if (ret < 0)
        goto out;
    if (p.img->cache_export) {
        ret = csi_error_set(err, CS_EUNSUPPORTED,
                            "%s is a BuildKit registry cache export, not an image: give it to "
                            "docker buildx build --cache-from type=registry,ref=%s",
                            opts->ref, opts->ref);
        goto out;
    }
    p.res->served_by = cs_reference_to_string(p.served, 0);
    p.res->platform = cs_platform_to_string(&p.img->config_parsed->platform);
    if (p.res->served_by == NULL || p.res->platform == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    memcpy(p.res->top_digest, p.img->top_digest, CS_DIGEST_STRLEN);
    memcpy(p.res->manifest_digest, p.img->manifest_digest, CS_DIGEST_STRLEN);
    snprintf(p.res->config_digest, CS_DIGEST_STRLEN, "%s", p.img->parsed->config.digest);
    p.res->layers_total = p.img->parsed->nlayers;
    csi_pull_event(&p, CS_PULL_RESOLVED, "%s %s (%s, %zu layers)", p.res->served_by,
                   p.res->manifest_digest, p.res->platform, p.res->layers_total);
    ret = store_documents(&p, err);
    if (ret < 0)
        goto out;
    if (p.daemon != NULL) {
        ret = csi_pull_plan_docker(&p, err);
        if (ret < 0)
            goto out;
        /* CACHESYNC_NO_STREAM=1: load only after the download, as before (benchmarks) */
        if (csi_pull_stream_possible(&p) && getenv("CACHESYNC_NO_STREAM") == NULL) {
            ret = csi_pull_stream_start(&p, err);
            if (ret < 0)
                goto out;
        }
    }
    ret = fetch_layers(&p, err);
    if (p.stream != NULL)
        (void)csi_pull_stream_end(&p, ret < 0, NULL);
    if (ret < 0)
        goto out;
    ret = record_ref(&p, err);
    if (ret < 0)
        goto out;
    for (i = 0; i < opts->ntargets || (i == 0 && opts->ntargets == 0); i++) {
        const cs_target *t = opts->ntargets ? &opts->targets[i] : NULL;
        cs_target_kind kind = t ? t->kind : CS_TARGET_DOCKER;

        switch (kind) {
        case CS_TARGET_DOCKER:
            ret = csi_pull_deliver_docker(&p, err);
            break;
        case CS_TARGET_STORE:
            ret = csi_pull_add_delivery(&p, "store", cs_store_dir(p.store), err);
            break;
        case CS_TARGET_OCI:
            ret = csi_pull_deliver_oci(&p, t, err);
            break;
        case CS_TARGET_ARCHIVE:
            ret = csi_pull_deliver_archive(&p, t, err);
            break;
        }
        if (ret < 0)
            goto out;
    }
    p.res->seconds = now_s() - t0;
    *out = p.res;
    p.res = NULL;
out:
    if (p.stream != NULL && p.stream->started)
        (void)csi_pull_stream_end(&p, true, NULL);
    csi_pull_stream_free(p.stream);
    pthread_mutex_destroy(&p.event_mu);
    cs_pull_result_free(p.res);
    cs_reference_free(p.ref);
    cs_reference_free(p.served);
    cs_image_free(p.img);
    cs_registry_free(p.reg);
    cs_store_free(p.store);
    cs_daemon_free(p.daemon);
    return ret;
}
