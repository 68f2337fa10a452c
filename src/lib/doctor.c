/* cs_doctor: the conditions under which Docker's BuildKit uses a local image as cache
 * (buildkit-cache-formats.md section 4: moby's localinlinecache reads the local image's raw
 * config under the exact RepoTag; a local image without metadata silently defeats
 * --cache-from; the containerd store always resolves at the registry). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cachesync/daemon.h>
#include <cachesync/doctor.h>
#include <cachesync/image.h>
#include <cachesync/reference.h>
#include <cachesync/store.h>
#include "error_int.h"

/* BuildKit refuses inline cache metadata larger than this on import. */
#define INLINE_CACHE_MAX (1024 * 1024)

typedef struct doc {
    cs_doctor_report *r;
    int oom;
} doc;

static void
add(doc *d, const char *name, cs_check_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
add(doc *d, const char *name, cs_check_status st, const char *fmt, ...)
{
    cs_check *c;
    va_list ap;

    c = realloc(d->r->checks, (d->r->nchecks + 1) * sizeof(*c));
    if (c == NULL) {
        d->oom = 1;
        return;
    }
    d->r->checks = c;
    c = &c[d->r->nchecks];
    c->name = strdup(name);
    c->status = st;
    va_start(ap, fmt);
    if (vasprintf(&c->detail, fmt, ap) < 0)
        c->detail = NULL;
    va_end(ap);
    if (c->name == NULL || c->detail == NULL) {
        free(c->name);
        free(c->detail);
        d->oom = 1;
        return;
    }
    d->r->nchecks++;
    if (st == CS_CHECK_FAIL)
        d->r->ready = false;
}

static void set_fix(doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The fix for the first failure found (later failures usually follow from it). */
static void
set_fix(doc *d, const char *fmt, ...)
{
    va_list ap;

    if (d->r->fix != NULL)
        return;
    va_start(ap, fmt);
    if (vasprintf(&d->r->fix, fmt, ap) < 0) {
        d->r->fix = NULL;
        d->oom = 1;
    }
    va_end(ap);
}

void
cs_doctor_report_free(cs_doctor_report *r)
{
    size_t i;

    if (r == NULL)
        return;
    for (i = 0; i < r->nchecks; i++) {
        free(r->checks[i].name);
        free(r->checks[i].detail);
    }
    free(r->checks);
    free(r->ref);
    free(r->fix);
    free(r);
}

/* The local image's config bytes: from the store (a pull or push put it there), else from
 * the registry by its digest (the image ID), else unknown. */
static int
config_of(cs_buf *out, const char **where, const char *image_id, const cs_reference *ref,
          cs_store *store, cs_registry *reg)
{
    if (store != NULL && cs_store_read_blob(out, store, image_id, 16u << 20, NULL) == 0) {
        *where = "the store";
        return 0;
    }
    if (reg != NULL &&
        cs_registry_get_blob(out, reg, ref->path, image_id, -1, 16u << 20, NULL) == 0) {
        *where = "the registry";
        return 0;
    }
    return -1;
}

int
cs_doctor(cs_doctor_report **out, const cs_doctor_options *o, cs_error **err)
{
    doc d = {0};
    cs_reference *ref = NULL;
    cs_daemon *dm = NULL;
    const cs_daemon_info *info = NULL;
    cs_daemon_image *img = NULL;
    cs_registry *reg = NULL;
    cs_store *store = NULL;
    cs_image_config *cfg = NULL;
    cs_buf config = CS_BUF_INIT;
    cs_error *e = NULL;
    char *familiar = NULL, *mt = NULL, digest[CS_DIGEST_STRLEN];
    const char *where = NULL;
    bool registry_up = false;
    int64_t msize = 0;
    int ret;

    ret = cs_reference_parse(&ref, o->ref, err);
    if (ret < 0)
        return ret;
    d.r = calloc(1, sizeof(*d.r));
    familiar = cs_reference_to_string(ref, CS_REF_FAMILIAR);
    if (d.r == NULL || familiar == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    d.r->ready = true;
    d.r->ref = cs_reference_to_string(ref, 0);
    /* the registry first: several findings below depend on whether it answers */
    if (cs_registry_new(&reg, ref->domain, &o->registry, NULL) == 0 &&
        cs_registry_head_manifest(&mt, digest, &msize, reg, ref->path, cs_reference_target(ref),
                                  &e) == 0)
        registry_up = true;
    cs_store_open(&store, o->store_dir, NULL);

    if (cs_daemon_open(&dm, o->docker_host, &e) < 0 || cs_daemon_get_info(&info, dm, &e) < 0) {
        add(&d, "daemon", CS_CHECK_FAIL, "%s", e ? e->message : "unreachable");
        set_fix(&d, "start dockerd, or point DOCKER_HOST at it");
        goto verdict;
    }
    add(&d, "daemon", CS_CHECK_OK, "Docker %s at %s (API %s)", info->version, cs_daemon_host(dm),
        info->negotiated_api);
    if (info->containerd_store)
        add(&d, "image store", registry_up ? CS_CHECK_WARN : CS_CHECK_FAIL,
            "containerd image store: --cache-from ignores local images and resolves %s at the "
            "registry, which %s",
            familiar, registry_up ? "answers" : "does not answer");
    else
        add(&d, "image store", CS_CHECK_OK,
            "classic store (%s): --cache-from %s uses the local image, no registry needed",
            info->driver ? info->driver : "?", familiar);
    cs_error_free(e);
    e = NULL;
    if (cs_daemon_image_inspect(&img, dm, familiar, &e) < 0) {
        add(&d, "image", CS_CHECK_FAIL, "no image tagged %s in the daemon", familiar);
        set_fix(&d, "cachesync pull %s", d.r->ref);
        goto registry;
    }
    add(&d, "image", CS_CHECK_OK, "%s is %.19s (%zu layers)", familiar, img->id, img->ndiff_ids);
    if (config_of(&config, &where, img->id, ref, store, registry_up ? reg : NULL) < 0) {
        add(&d, "inline cache", CS_CHECK_WARN,
            "cannot read the image's config here (not in the store, registry unreachable)");
        goto registry;
    }
    if (cs_image_config_parse(&cfg, config.ptr, config.len, NULL) < 0) {
        add(&d, "inline cache", CS_CHECK_FAIL, "the image's config (from %s) does not parse",
            where);
        goto registry;
    }
    if (!cfg->has_inline_cache) {
        add(&d, "inline cache", CS_CHECK_FAIL,
            "the config has no moby.buildkit.cache.v0: the image was built without "
            "--build-arg BUILDKIT_INLINE_CACHE=1, so --cache-from %s finds no cache",
            familiar);
        set_fix(&d, "rebuild with --build-arg BUILDKIT_INLINE_CACHE=1 and push it, then "
                    "cachesync pull %s",
                d.r->ref);
    } else {
        add(&d, "inline cache", CS_CHECK_OK, "moby.buildkit.cache.v0 present (config from %s)",
            where);
        add(&d, "metadata size", cfg->inline_cache_bytes > INLINE_CACHE_MAX ? CS_CHECK_FAIL
                                                                            : CS_CHECK_OK,
            "%zu bytes of cache metadata (BuildKit imports at most %d)", cfg->inline_cache_bytes,
            INLINE_CACHE_MAX);
    }
    if (cfg->ndiff_ids != img->ndiff_ids)
        add(&d, "layers", CS_CHECK_FAIL,
            "the config lists %zu layers but the daemon's image has %zu: BuildKit ignores the "
            "cache",
            cfg->ndiff_ids, img->ndiff_ids);
    else
        add(&d, "layers", CS_CHECK_OK, "%zu layers, consistent with the config", cfg->ndiff_ids);
registry:
    if (registry_up)
        add(&d, "registry", CS_CHECK_OK, "%s answers for %s (%s)", ref->domain, familiar, digest);
    else
        add(&d, "registry", info && info->containerd_store ? CS_CHECK_FAIL : CS_CHECK_OK,
            "%s does not answer for %s: %s", ref->domain, familiar,
            info && info->containerd_store ? "this daemon needs it"
                                           : "not needed once the image is local");
verdict:
    if (d.oom) {
        ret = csi_error_oom(err);
        goto out;
    }
    *out = d.r;
    d.r = NULL;
    ret = 0;
out:
    cs_doctor_report_free(d.r);
    cs_error_free(e);
    cs_image_config_free(cfg);
    cs_buf_dispose(&config);
    cs_daemon_image_free(img);
    cs_daemon_free(dm);
    cs_registry_free(reg);
    cs_store_free(store);
    cs_reference_free(ref);
    free(familiar);
    free(mt);
    return ret;
}
