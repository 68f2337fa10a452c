/* The scan store ls, verify and gc share: see store_int.h. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include <cachesync/manifest.h>
#include "error_int.h"
#include "fsutil.h"
#include "json.h"
#include "store_int.h"

#define INDEX_MAX (64u * 1024 * 1024)
#define DEPTH_MAX 4 /* index -> index -> manifest: deeper nesting is not followed */

void
csi_store_scan_dispose(csi_store_scan *sc)
{
    size_t i;

    for (i = 0; i < sc->nrefs; i++) {
        free(sc->refs[i].name);
        free(sc->refs[i].media_type);
        free(sc->refs[i].blobs);
        free(sc->refs[i].missing);
        free(sc->refs[i].broken);
    }
    for (i = 0; i < sc->nleft; i++) {
        free(sc->left[i].path);
        free(sc->left[i].lock);
    }
    for (i = 0; i < sc->nlocks; i++)
        free(sc->locks[i]);
    free(sc->refs);
    free(sc->blobs);
    free(sc->left);
    free(sc->locks);
}

/* Make room for one more element in *ARR (of N, capacity *CAP, elements of SIZE bytes). */
static int
grow(void *arr, size_t n, size_t *cap, size_t size, cs_error **err)
{
    void **p = arr, *q;
    size_t c;

    if (n < *cap)
        return 0;
    c = *cap ? *cap * 2 : 16;
    q = realloc(*p, c * size);
    if (q == NULL)
        return csi_error_oom(err);
    *p = q;
    *cap = c;
    return 0;
}

static bool
is_hex64(const char *name)
{
    size_t i;

    for (i = 0; i < 64; i++) {
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false;
    }
    return name[64] == '\0';
}

static int
cmp_blob(const void *a, const void *b)
{
    return strcmp(((const csi_store_blob *)a)->hex, ((const csi_store_blob *)b)->hex);
}

csi_store_blob *
csi_store_find_blob(const csi_store_scan *sc, const char *digest)
{
    csi_store_blob key;

    if (sc->nblobs == 0 || strncmp(digest, "sha256:", 7) != 0 || strlen(digest + 7) != 64)
        return NULL;
    memcpy(key.hex, digest + 7, 65);
    return bsearch(&key, sc->blobs, sc->nblobs, sizeof(csi_store_blob), cmp_blob);
}

static int
add_leftover(csi_store_scan *sc, const char *path, const char *lock, const struct stat *st,
             cs_error **err)
{
    csi_store_leftover *l;
    int ret = grow(&sc->left, sc->nleft, &sc->capleft, sizeof(csi_store_leftover), err);

    if (ret < 0)
        return ret;
    l = &sc->left[sc->nleft];
    l->path = strdup(path);
    l->lock = lock ? strdup(lock) : NULL;
    l->size = (uint64_t)st->st_size;
    l->mtime = (int64_t)st->st_mtime;
    if (l->path == NULL || (lock != NULL && l->lock == NULL)) {
        free(l->path);
        free(l->lock);
        return csi_error_oom(err);
    }
    sc->nleft++;
    return 0;
}

typedef enum { DIR_BLOBS, DIR_PARTIAL, DIR_TMP, DIR_ROOT } dir_kind;

/* One directory of the store: blobs, partial downloads and their locks, temp files left by
 * an atomic write (NAME.tmp-XXXXXX) or a push (tmp/). */
static int
scan_dir(csi_store_scan *sc, dir_kind kind, const char *sub, cs_error **err)
{
    char *dir = NULL, *path = NULL, *lock = NULL;
    struct dirent *de;
    struct stat st;
    DIR *d = NULL;
    int ret = 0;

    if (asprintf(&dir, "%s%s", cs_store_dir(sc->s), sub) < 0)
        return csi_error_oom(err);
    d = opendir(dir);
    if (d == NULL) {
        if (errno != ENOENT)
            ret = csi_error_errno(err, errno, "open %s", dir);
        goto out;
    }
    while (ret == 0 && (errno = 0, de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        bool hex = strlen(n) == 64 && is_hex64(n), temp = strstr(n, ".tmp-") != NULL;

        free(path);
        free(lock);
        path = lock = NULL;
        if (n[0] == '.' || (kind == DIR_ROOT && !temp))
            continue;
        if (asprintf(&path, "%s/%s", dir, n) < 0) {
            path = NULL;
            ret = csi_error_oom(err);
            break;
        }
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (kind == DIR_BLOBS && hex) {
            ret = grow(&sc->blobs, sc->nblobs, &sc->capblobs, sizeof(csi_store_blob), err);
            if (ret == 0) {
                csi_store_blob *b = &sc->blobs[sc->nblobs++];

                memset(b, 0, sizeof(*b));
                memcpy(b->hex, n, 65);
                b->size = (uint64_t)st.st_size;
                b->mtime = (int64_t)st.st_mtime;
                b->want = -1;
            }
        } else if (kind == DIR_PARTIAL && strlen(n) == 69 && strcmp(n + 64, ".lock") == 0) {
            ret = grow(&sc->locks, sc->nlocks, &sc->caplocks, sizeof(char *), err);
            if (ret == 0) {
                sc->locks[sc->nlocks++] = path;
                path = NULL;
            }
        } else if (kind == DIR_PARTIAL && hex) {
            if (asprintf(&lock, "%s.lock", path) < 0) {
                lock = NULL;
                ret = csi_error_oom(err);
            } else {
                ret = add_leftover(sc, path, lock, &st, err);
            }
        } else if (kind == DIR_TMP || temp) {
            ret = add_leftover(sc, path, NULL, &st, err);
        }
    }
    if (ret == 0 && errno != 0)
        ret = csi_error_errno(err, errno, "read %s", dir);
out:
    if (d != NULL)
        closedir(d);
    free(path);
    free(lock);
    free(dir);
    return ret;
}

int
cs_store_parse_time(int64_t *out, const char *text, cs_error **err)
{
    int y, mo, d, h, mi, s, n = 0, oh = 0, om = 0;
    struct tm tm = {0};
    const char *p;
    time_t t;

    if (text == NULL ||
        sscanf(text, "%4d-%2d-%2d%*[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &n) != 6 ||
        n == 0)
        goto bad;
    p = text + n;
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d", &oh, &om) == 2 &&
               strlen(p) == 6) {
        if (*p == '-') {
            oh = -oh;
            om = -om;
        }
        p += 6;
    } else {
        goto bad;
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
        goto bad;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    t = timegm(&tm);
    *out = (int64_t)t - (int64_t)oh * 3600 - (int64_t)om * 60;
    return 0;
bad:
    return csi_error_set(err, CS_EINVAL, "\"%.40s\" is not an RFC 3339 time", text ? text : "");
}

/* ---- what each ref needs ------------------------------------------------------------------ */

/* Note that R needs DIGEST (SIZE per its descriptor, -1 unknown). *OUT: its csi_store_blob, or NULL
 * when it is not in the store (then listed as missing when REQUIRED). */
static int
need(csi_store_blob **out, csi_store_scan *sc, csi_store_ref *r, const char *digest, int64_t size,
     bool required, cs_error **err)
{
    csi_store_blob *b = csi_store_find_blob(sc, digest);
    size_t i, idx;
    void *p;

    *out = b;
    if (b == NULL) {
        if (!required)
            return 0;
        for (i = 0; i < r->nmissing; i++) {
            if (strcmp(r->missing[i], digest) == 0)
                return 0;
        }
        p = realloc(r->missing, (r->nmissing + 1) * sizeof(*r->missing));
        if (p == NULL)
            return csi_error_oom(err);
        r->missing = p;
        snprintf(r->missing[r->nmissing++], CS_DIGEST_STRLEN, "%s", digest);
        return 0;
    }
    if (size >= 0 && b->want < 0)
        b->want = size;
    idx = (size_t)(b - sc->blobs);
    for (i = 0; i < r->nblobs; i++) {
        if (r->blobs[i] == idx)
            return 0;
    }
    p = realloc(r->blobs, (r->nblobs + 1) * sizeof(*r->blobs));
    if (p == NULL)
        return csi_error_oom(err);
    r->blobs = p;
    r->blobs[r->nblobs++] = idx;
    return 0;
}

/* A descriptor's digest (validated) and size (-1 when absent or bad); NULL when unusable. */
static const char *
desc_digest(json_t *desc, int64_t *size)
{
    const char *digest = csi_json_str(desc, "digest");

    if (digest == NULL || cs_digest_validate(digest, NULL) < 0)
        return NULL;
    if (csi_json_int(size, desc, "size") < 0 || *size < 0)
        *size = -1;
    return digest;
}

static int
load_blob_json(json_t **out, csi_store_scan *sc, csi_store_ref *r, const char *digest, size_t max)
{
    cs_buf data = CS_BUF_INIT;
    cs_error *e = NULL;
    int ret;

    ret = cs_store_read_blob(&data, sc->s, digest, max, &e);
    if (ret == 0)
        ret = csi_json_load_object(out, data.ptr, data.len, max, digest, &e);
    if (ret < 0 && r != NULL && r->broken == NULL && ret != CS_ENOMEM) {
        r->broken = strdup(e ? e->message : digest);
        if (r->broken == NULL)
            ret = CS_ENOMEM;
    }
    cs_error_free(e);
    cs_buf_dispose(&data);
    return ret;
}

/* The uncompressed layers a pull kept for an older Docker are named by the config's diff_ids:
 * keep them while their image stays. A config that cannot be read keeps none (verify reports
 * it). */
static int
walk_config(csi_store_scan *sc, csi_store_ref *r, const char *digest, cs_error **err)
{
    json_t *config = NULL, *ids, *v;
    csi_store_blob *b;
    size_t i;
    int ret = 0;

    if (load_blob_json(&config, sc, NULL, digest, CS_CONFIG_MAX) < 0)
        return 0;
    ids = json_object_get(json_object_get(config, "rootfs"), "diff_ids");
    json_array_foreach(ids, i, v)
    {
        if (json_is_string(v) && cs_digest_validate(json_string_value(v), NULL) == 0)
            ret = need(&b, sc, r, json_string_value(v), -1, false, err);
        if (ret < 0)
            break;
    }
    json_decref(config);
    return ret;
}

static int
walk(csi_store_scan *sc, csi_store_ref *r, const char *digest, int64_t size, bool required,
     int depth, cs_error **err)
{
    json_t *m = NULL, *list, *d;
    const char *dg;
    int64_t sz;
    csi_store_blob *b;
    size_t i;
    int ret;

    ret = need(&b, sc, r, digest, size, required, err);
    if (ret < 0 || b == NULL || depth > DEPTH_MAX)
        return ret;
    if (load_blob_json(&m, sc, r, digest, CS_MANIFEST_MAX) < 0)
        return r->broken != NULL ? 0 : csi_error_oom(err);
    /* an index: the children present (a pull keeps one platform) */
    list = json_object_get(m, "manifests");
    json_array_foreach(list, i, d)
    {
        if ((dg = desc_digest(d, &sz)) != NULL)
            ret = walk(sc, r, dg, sz, false, depth + 1, err);
        if (ret < 0)
            goto out;
    }
    /* an image: its config and layers */
    if ((dg = desc_digest(json_object_get(m, "config"), &sz)) != NULL) {
        ret = need(&b, sc, r, dg, sz, true, err);
        if (ret == 0 && b != NULL)
            ret = walk_config(sc, r, dg, err);
        if (ret < 0)
            goto out;
    }
    list = json_object_get(m, "layers");
    json_array_foreach(list, i, d)
    {
        /* foreign layers (Windows bases) are fetched from their urls, never stored */
        if ((dg = desc_digest(d, &sz)) != NULL)
            ret = need(&b, sc, r, dg, sz, json_object_get(d, "urls") == NULL, err);
        if (ret < 0)
            goto out;
    }
out:
    json_decref(m);
    return ret;
}

static int
scan_refs(csi_store_scan *sc, cs_error **err)
{
    char *path = NULL, *data = NULL;
    json_t *root = NULL, *list, *d;
    size_t i, len = 0;
    int ret;

    if (asprintf(&path, "%s/index.json", cs_store_dir(sc->s)) < 0)
        return csi_error_oom(err);
    ret = csi_fs_read_file(&data, &len, path, INDEX_MAX, err);
    if (ret == 0)
        ret = csi_json_load_object(&root, data, len, INDEX_MAX, path, err);
    if (ret < 0)
        goto out;
    list = json_object_get(root, "manifests");
    sc->refs = calloc(json_array_size(list) + 1, sizeof(csi_store_ref));
    if (sc->refs == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    json_array_foreach(list, i, d)
    {
        json_t *ann = json_object_get(d, "annotations");
        const char *dg, *name = csi_json_str(ann, "org.opencontainers.image.ref.name");
        const char *mt = csi_json_str(d, "mediaType");
        csi_store_ref *r = &sc->refs[sc->nrefs];
        csi_store_blob *top;
        int64_t sz;

        if ((dg = desc_digest(d, &sz)) == NULL)
            continue; /* names nothing we could hold */
        sc->nrefs++;
        snprintf(r->digest, sizeof(r->digest), "%s", dg);
        r->name = name ? strdup(name) : NULL;
        r->media_type = strdup(mt ? mt : "");
        if ((name != NULL && r->name == NULL) || r->media_type == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
        r->recorded = cs_store_parse_time(&r->last_used, csi_json_str(ann, CS_STORE_ANN_LAST_USED),
                                          NULL) == 0;
        top = csi_store_find_blob(sc, dg);
        if (!r->recorded)
            r->last_used = top ? top->mtime : -1;
        ret = walk(sc, r, dg, sz, true, 0, err);
        if (ret < 0)
            goto out;
    }
out:
    json_decref(root);
    free(data);
    free(path);
    return ret;
}

int
csi_store_scan_load(csi_store_scan *sc, cs_store *s, cs_error **err)
{
    int ret;

    memset(sc, 0, sizeof(*sc));
    sc->s = s;
    ret = scan_dir(sc, DIR_BLOBS, "/blobs/sha256", err);
    if (ret == 0)
        ret = scan_dir(sc, DIR_PARTIAL, "/partial", err);
    if (ret == 0)
        ret = scan_dir(sc, DIR_TMP, "/tmp", err);
    if (ret == 0)
        ret = scan_dir(sc, DIR_ROOT, "", err);
    if (ret == 0 && sc->nblobs > 0)
        qsort(sc->blobs, sc->nblobs, sizeof(csi_store_blob), cmp_blob);
    if (ret == 0)
        ret = scan_refs(sc, err);
    return ret;
}

/* How many of the refs not dropped need each blob. */
void
csi_store_count_users(csi_store_scan *sc)
{
    size_t i, k;

    for (i = 0; i < sc->nblobs; i++)
        sc->blobs[i].users = 0;
    for (i = 0; i < sc->nrefs; i++) {
        for (k = 0; !sc->refs[i].dropped && k < sc->refs[i].nblobs; k++)
            sc->blobs[sc->refs[i].blobs[k]].users++;
    }
}

uint64_t
csi_store_ref_bytes(const csi_store_scan *sc, const csi_store_ref *r)
{
    uint64_t n = 0;
    size_t k;

    for (k = 0; k < r->nblobs; k++)
        n += sc->blobs[r->blobs[k]].size;
    return n;
}
