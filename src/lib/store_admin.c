/* store ls, verify and gc: see include/cachesync/store.h. All three start from one scan of
 * the store (store_scan.c). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error_int.h"
#include "layermap.h"
#include "store_int.h"

#define DAY (24 * 3600)

/* ---- ls ----------------------------------------------------------------------------------- */

void
cs_store_listing_free(cs_store_listing *l)
{
    size_t i;

    if (l == NULL)
        return;
    for (i = 0; i < l->nrefs; i++) {
        free(l->refs[i].ref);
        free(l->refs[i].media_type);
    }
    free(l->refs);
    free(l);
}

int
cs_store_list(cs_store_listing **out, cs_store *s, cs_error **err)
{
    cs_store_listing *l = NULL;
    csi_store_scan sc;
    size_t i;
    int ret;

    ret = csi_store_scan_load(&sc, s, err);
    if (ret < 0)
        goto out;
    l = calloc(1, sizeof(*l));
    if (l == NULL || (l->refs = calloc(sc.nrefs + 1, sizeof(*l->refs))) == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    csi_store_count_users(&sc);
    for (i = 0; i < sc.nrefs; i++) {
        cs_store_ref_info *ri = &l->refs[l->nrefs++];
        csi_store_ref *r = &sc.refs[i];

        ri->ref = r->name;
        ri->media_type = r->media_type;
        r->name = r->media_type = NULL;
        memcpy(ri->digest, r->digest, CS_DIGEST_STRLEN);
        ri->size = csi_store_ref_bytes(&sc, r);
        ri->nblobs = r->nblobs;
        ri->nmissing = r->nmissing;
        ri->last_used = r->last_used;
        ri->last_used_recorded = r->recorded;
    }
    for (i = 0; i < sc.nblobs; i++) {
        l->blobs++;
        l->bytes += sc.blobs[i].size;
        if (sc.blobs[i].users == 0) {
            l->unreferenced_blobs++;
            l->unreferenced_bytes += sc.blobs[i].size;
        }
    }
    for (i = 0; i < sc.nleft; i++) {
        l->partial++;
        l->partial_bytes += sc.left[i].size;
    }
    *out = l;
    l = NULL;
out:
    cs_store_listing_free(l);
    csi_store_scan_dispose(&sc);
    return ret;
}

/* ---- verify ------------------------------------------------------------------------------- */

void
cs_store_verify_result_free(cs_store_verify_result *r)
{
    size_t i;

    if (r == NULL)
        return;
    for (i = 0; i < r->ncorrupt; i++) {
        free(r->corrupt[i].path);
        free(r->corrupt[i].detail);
    }
    for (i = 0; i < r->nmissing; i++)
        free(r->missing[i].ref);
    for (i = 0; i < r->npartial; i++)
        free(r->partial[i].path);
    free(r->corrupt);
    free(r->missing);
    free(r->partial);
    free(r);
}

/* Hash the blob at PATH; *GONE when it vanished (another verify removed it). A mismatch is
 * recorded in RES and the file removed, only if it is still the file that was hashed. */
static int
check_blob(cs_store_verify_result *res, csi_store_blob *b, const char *path, char *buf,
           size_t bufsize, cs_hasher *h, cs_error **err)
{
    char digest[CS_DIGEST_STRLEN], got[CS_DIGEST_STRLEN];
    cs_store_corrupt *c;
    struct stat st, now;
    uint64_t n = 0;
    int fd, ret = 0;

    snprintf(digest, sizeof(digest), "sha256:%s", b->hex);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : csi_error_errno(err, errno, "open %s", path);
    if (fstat(fd, &st) != 0) {
        ret = csi_error_errno(err, errno, "stat %s", path);
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, buf, bufsize);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ret = csi_error_errno(err, errno, "read %s", path);
            goto out;
        }
        if (r == 0)
            break;
        cs_hasher_update(h, buf, (size_t)r);
        n += (uint64_t)r;
    }
    cs_hasher_final(h, got);
    res->checked++;
    res->bytes += n;
    if (strcmp(got, digest) == 0)
        goto out;
    c = &res->corrupt[res->ncorrupt];
    memcpy(c->digest, digest, CS_DIGEST_STRLEN);
    c->path = strdup(path);
    if (b->want >= 0 && (uint64_t)b->want != n) {
        c->reason = "size mismatch";
        if (asprintf(&c->detail, "%llu bytes, its descriptor says %lld", (unsigned long long)n,
                     (long long)b->want) < 0)
            c->detail = NULL;
    } else {
        c->reason = "digest mismatch";
        if (asprintf(&c->detail, "content hashes to %s", got) < 0)
            c->detail = NULL;
    }
    if (c->path == NULL || c->detail == NULL) {
        free(c->path);
        free(c->detail);
        ret = csi_error_oom(err);
        goto out;
    }
    res->ncorrupt++;
    /* a pull may have replaced it with good bytes meanwhile: remove only what was hashed */
    if (stat(path, &now) == 0 && now.st_ino == st.st_ino && now.st_dev == st.st_dev &&
        unlink(path) == 0) {
        c->removed = true;
        b->removed = true;
        res->removed++;
    }
out:
    close(fd);
    return ret;
}

static int
add_missing(cs_store_verify_result *res, const char *name, const char *digest, cs_error **err)
{
    cs_store_missing *p = realloc(res->missing, (res->nmissing + 1) * sizeof(*p));

    if (p == NULL)
        return csi_error_oom(err);
    res->missing = p;
    p = &p[res->nmissing];
    p->ref = name ? strdup(name) : NULL;
    if (name != NULL && p->ref == NULL)
        return csi_error_oom(err);
    snprintf(p->digest, sizeof(p->digest), "%s", digest);
    res->nmissing++;
    return 0;
}

int
cs_store_verify(cs_store_verify_result **out, cs_store *s, cs_store_verify_progress progress,
                void *payload, cs_error **err)
{
    cs_store_verify_result *res;
    cs_hasher *h = NULL;
    char *buf = NULL, *path = NULL;
    size_t i, k;
    csi_store_scan sc;
    int ret;

    res = calloc(1, sizeof(*res));
    if (res == NULL)
        return csi_error_oom(err);
    ret = csi_store_scan_load(&sc, s, err);
    if (ret < 0)
        goto out;
    buf = malloc(1 << 20);
    res->corrupt = calloc(sc.nblobs + 1, sizeof(*res->corrupt));
    res->partial = calloc(sc.nleft + 1, sizeof(*res->partial));
    if (buf == NULL || res->corrupt == NULL || res->partial == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = cs_hasher_new(&h, err);
    for (i = 0; ret == 0 && i < sc.nblobs; i++) {
        char digest[CS_DIGEST_STRLEN];

        snprintf(digest, sizeof(digest), "sha256:%s", sc.blobs[i].hex);
        free(path);
        path = NULL;
        ret = cs_store_blob_path(&path, s, digest, err);
        if (ret < 0)
            break;
        if (progress != NULL)
            progress(digest, sc.blobs[i].size, payload);
        ret = check_blob(res, &sc.blobs[i], path, buf, 1 << 20, h, err);
    }
    if (ret < 0)
        goto out;
    /* what refs need and the store lacks, now that corrupt blobs are gone */
    for (i = 0; ret == 0 && i < sc.nrefs; i++) {
        csi_store_ref *r = &sc.refs[i];

        for (k = 0; ret == 0 && k < r->nmissing; k++)
            ret = add_missing(res, r->name, r->missing[k], err);
        for (k = 0; ret == 0 && k < r->nblobs; k++) {
            char digest[CS_DIGEST_STRLEN];

            snprintf(digest, sizeof(digest), "sha256:%s", sc.blobs[r->blobs[k]].hex);
            if (sc.blobs[r->blobs[k]].removed)
                ret = add_missing(res, r->name, digest, err);
        }
    }
    for (i = 0; ret == 0 && i < sc.nleft; i++) {
        res->partial[i].path = sc.left[i].path;
        res->partial[i].size = sc.left[i].size;
        res->partial[i].mtime = sc.left[i].mtime;
        sc.left[i].path = NULL;
        res->npartial++;
    }
    if (ret < 0)
        goto out;
    *out = res;
    res = NULL;
out:
    cs_store_verify_result_free(res);
    cs_hasher_free(h);
    csi_store_scan_dispose(&sc);
    free(path);
    free(buf);
    return ret;
}

/* ---- gc ----------------------------------------------------------------------------------- */

void
cs_store_gc_result_free(cs_store_gc_result *r)
{
    size_t i;

    if (r == NULL)
        return;
    for (i = 0; i < r->nremoved_refs; i++)
        free(r->removed_refs[i].ref);
    free(r->removed_refs);
    free(r);
}

/* Least recently used first; refs never recorded before all others; then index.json order. */
static int
cmp_lru(const void *a, const void *b)
{
    const csi_store_ref *x = *(csi_store_ref *const *)a, *y = *(csi_store_ref *const *)b;

    if (x->last_used != y->last_used)
        return x->last_used < y->last_used ? -1 : 1;
    return x < y ? -1 : x > y;
}

static void
drop(csi_store_scan *sc, csi_store_ref *r, const char *why, uint64_t *kept_bytes)
{
    size_t k;

    r->dropped = why;
    for (k = 0; k < r->nblobs; k++) {
        csi_store_blob *b = &sc->blobs[r->blobs[k]];

        if (--b->users == 0)
            *kept_bytes -= b->size;
    }
}

/* Decide which refs go: --older-than first, then --max-size in LRU order. */
static int
choose_refs(csi_store_scan *sc, const cs_store_gc_options *o, cs_error **err)
{
    int64_t cutoff = (int64_t)time(NULL) - o->older_than;
    uint64_t kept = 0;
    csi_store_ref **order;
    size_t i, n = 0;

    csi_store_count_users(sc);
    for (i = 0; i < sc->nblobs; i++)
        kept += sc->blobs[i].users ? sc->blobs[i].size : 0;
    for (i = 0; o->older_than >= 0 && i < sc->nrefs; i++) {
        if (sc->refs[i].last_used < cutoff)
            drop(sc, &sc->refs[i], "older-than", &kept);
    }
    if (o->max_size < 0 || kept <= (uint64_t)o->max_size)
        return 0;
    order = calloc(sc->nrefs + 1, sizeof(*order));
    if (order == NULL)
        return csi_error_oom(err);
    for (i = 0; i < sc->nrefs; i++) {
        if (!sc->refs[i].dropped)
            order[n++] = &sc->refs[i];
    }
    qsort(order, n, sizeof(*order), cmp_lru);
    for (i = 0; i < n && kept > (uint64_t)o->max_size; i++)
        drop(sc, order[i], "max-size", &kept);
    free(order);
    return 0;
}

static int
record_dropped(cs_store_gc_result *res, const csi_store_ref *r, cs_error **err)
{
    cs_store_gc_ref *g = &res->removed_refs[res->nremoved_refs];

    g->ref = r->name ? strdup(r->name) : NULL;
    if (r->name != NULL && g->ref == NULL)
        return csi_error_oom(err);
    memcpy(g->digest, r->digest, CS_DIGEST_STRLEN);
    g->last_used = r->last_used;
    g->reason = r->dropped;
    res->nremoved_refs++;
    return 0;
}

/* Forget R in index.json; an entry already gone (a duplicate removed with the first) is fine. */
static int
remove_ref(cs_store *s, const csi_store_ref *r, cs_error **err)
{
    cs_error *e = NULL;
    int ret = cs_store_remove_ref(s, r->name, r->digest, &e);

    if (ret == CS_ENOTFOUND)
        ret = 0;
    if (ret < 0 && err != NULL)
        *err = e;
    else
        cs_error_free(e);
    return ret;
}

static int
remove_file(const char *path, cs_error **err)
{
    if (unlink(path) != 0 && errno != ENOENT)
        return csi_error_errno(err, errno, "remove %s", path);
    return 0;
}

/* A partial whose lock someone holds is being written (by a process that did not open the
 * store the way this library does: belt and braces under the exclusive lock). */
static bool
lock_free(const char *lock)
{
    int fd = open(lock, O_RDONLY | O_CLOEXEC);
    bool ok;

    if (fd < 0)
        return errno == ENOENT;
    ok = flock(fd, LOCK_EX | LOCK_NB) == 0;
    close(fd);
    return ok;
}

static int
sweep_leftovers(csi_store_scan *sc, cs_store_gc_result *res, const cs_store_gc_options *o,
                cs_error **err)
{
    int64_t cutoff = (int64_t)time(NULL) - (o->partial_age > 0 ? o->partial_age : DAY);
    struct stat st;
    size_t i;
    int ret = 0;

    for (i = 0; ret == 0 && i < sc->nleft; i++) {
        csi_store_leftover *l = &sc->left[i];

        if (l->mtime >= cutoff || (l->lock != NULL && !lock_free(l->lock)))
            continue;
        if (!o->dry_run)
            ret = remove_file(l->path, err);
        res->removed_partial++;
        res->freed_bytes += l->size;
        free(l->lock); /* its lock file goes with the orphans below */
        l->lock = NULL;
        if (!o->dry_run) {
            free(l->path);
            l->path = NULL;
        }
    }
    /* the lock files of blobs no longer being written: one per blob ever fetched otherwise */
    for (i = 0; ret == 0 && !o->dry_run && i < sc->nlocks; i++) {
        char *partial = sc->locks[i];
        size_t n = strlen(partial);

        partial[n - 5] = '\0';
        if (stat(partial, &st) == 0)
            continue;
        partial[n - 5] = '.';
        if (lock_free(partial))
            ret = remove_file(partial, err);
    }
    return ret;
}

static bool
blob_kept(const char *digest, void *arg)
{
    const csi_store_blob *b = csi_store_find_blob(arg, digest);

    return b != NULL && !b->removed;
}

int
cs_store_gc(cs_store_gc_result **out, cs_store *s, const cs_store_gc_options *opts, cs_error **err)
{
    cs_store_gc_options none = {.older_than = -1, .max_size = -1, .timeout_ms = -1};
    const cs_store_gc_options *o = opts ? opts : &none;
    cs_store_gc_result *res;
    char *path = NULL;
    struct stat st;
    bool locked = false;
    size_t i;
    csi_store_scan sc;
    int ret;

    memset(&sc, 0, sizeof(sc));
    res = calloc(1, sizeof(*res));
    if (res == NULL)
        return csi_error_oom(err);
    res->dry_run = o->dry_run;
    ret = cs_store_lock_exclusive(s, o->timeout_ms, err);
    if (ret < 0)
        goto out;
    locked = true;
    ret = csi_store_scan_load(&sc, s, err);
    if (ret == 0)
        ret = choose_refs(&sc, o, err);
    if (ret < 0)
        goto out;
    for (i = 0; i < sc.nrefs; i++) {
        const csi_store_ref *r = &sc.refs[i];

        if (r->broken != NULL && !r->dropped) {
            ret = csi_error_set(err, CS_EDIGEST,
                                "ref %s: %s; nothing was removed: run `cachesync store verify` "
                                "(it removes what is corrupt), then gc again",
                                r->name ? r->name : r->digest, r->broken);
            goto out;
        }
    }
    res->removed_refs = calloc(sc.nrefs + 1, sizeof(*res->removed_refs));
    if (res->removed_refs == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    for (i = 0; ret == 0 && i < sc.nrefs; i++) {
        if (!sc.refs[i].dropped)
            continue;
        ret = record_dropped(res, &sc.refs[i], err);
        if (ret == 0 && !o->dry_run)
            ret = remove_ref(s, &sc.refs[i], err);
    }
    for (i = 0; ret == 0 && i < sc.nblobs; i++) {
        csi_store_blob *b = &sc.blobs[i];

        if (b->users == 0) {
            char digest[CS_DIGEST_STRLEN];

            snprintf(digest, sizeof(digest), "sha256:%s", b->hex);
            free(path);
            path = NULL;
            ret = cs_store_blob_path(&path, s, digest, err);
            if (ret == 0 && !o->dry_run)
                ret = remove_file(path, err);
            b->removed = ret == 0;
            res->removed_blobs++;
            res->freed_bytes += b->size;
        } else {
            res->blobs++;
            res->bytes += b->size;
        }
    }
    res->refs = sc.nrefs - res->nremoved_refs;
    if (ret == 0)
        ret = sweep_leftovers(&sc, res, o, err);
    if (ret < 0)
        goto out;
    free(path);
    if (asprintf(&path, "%s/layers.json", cs_store_dir(s)) < 0) {
        path = NULL;
        ret = csi_error_oom(err);
        goto out;
    }
    if (!o->dry_run && res->removed_blobs > 0 && stat(path, &st) == 0)
        ret = csi_layermap_prune(&res->layermap_pruned, s, blob_kept, &sc, err);
    if (ret < 0)
        goto out;
    *out = res;
    res = NULL;
out:
    if (locked)
        cs_store_unlock_exclusive(s);
    cs_store_gc_result_free(res);
    csi_store_scan_dispose(&sc);
    free(path);
    return ret;
}
