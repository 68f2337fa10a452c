/* The local store: see include/cachesync/store.h. Layout per opencontainers/image-spec
 * image-layout.md; extra directories (partial/, tmp/) are allowed there. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <cachesync/store.h>
#include "error_int.h"
#include "fsutil.h"
#include "json.h"
#include "store_int.h"

#define INDEX_MAX (64u * 1024 * 1024)
#define LAYOUT_JSON "{\"imageLayoutVersion\":\"1.0.0\"}"

int
cs_store_default_dir(char **out, cs_error **err)
{
    const char *v = getenv("CACHESYNC_STORE");
    int n;

    if (v != NULL && *v)
        n = asprintf(out, "%s", v);
    else if ((v = getenv("XDG_CACHE_HOME")) != NULL && *v)
        n = asprintf(out, "%s/cachesync", v);
    else if ((v = getenv("HOME")) != NULL && *v)
        n = asprintf(out, "%s/.cache/cachesync", v);
    else
        return csi_error_set(err, CS_EINVAL,
                             "no store directory: set --store, CACHESYNC_STORE or HOME");
    if (n < 0) {
        *out = NULL;
        return csi_error_oom(err);
    }
    return 0;
}

static int
ensure_file(const char *dir, const char *name, const char *content, cs_error **err)
{
    char *path = NULL;
    struct stat st;
    int ret = 0;

    if (asprintf(&path, "%s/%s", dir, name) < 0)
        return csi_error_oom(err);
    if (stat(path, &st) != 0) {
        if (errno != ENOENT)
            ret = csi_error_errno(err, errno, "stat %s", path);
        else
            ret = csi_fs_write_atomic(path, content, strlen(content), err);
    }
    free(path);
    return ret;
}

/* ---- who uses the store ------------------------------------------------------------------
 *
 * gc must not delete a blob that a running pull or push is about to name in index.json: a
 * pull writes its layers first and the ref last, a push compresses layers into the store long
 * before its manifest exists, and a pull that found an old unreferenced blob present relies on
 * it without writing it (so "skip blobs newer than gc's start" would not be enough). So every
 * handle holds a shared flock on store.lock from cs_store_open to cs_store_free, and gc holds
 * it exclusively: it runs only while no other handle is open, and no handle opens while it
 * runs. The library's users keep a handle for one operation, so gc waits at most for the
 * pulls and pushes already running (bounded by its timeout, then a clear error).
 *
 * flock does not favour a waiting exclusive lock, so a steady stream of pulls would starve gc.
 * A turnstile fixes that: openers pass through gc.lock (shared, dropped at once) before taking
 * store.lock, and gc takes gc.lock exclusively first, so new openers queue behind it while the
 * running ones finish. gc drops its own shared lock before queueing, so two gcs cannot wait
 * for each other. Both files are never removed; descriptors are O_CLOEXEC, so the helpers the
 * library runs do not inherit the locks. */

static int
open_lock_file(int *fd_out, const cs_store *s, const char *name, cs_error **err)
{
    char *path = NULL;
    int fd;

    if (asprintf(&path, "%s/%s", s->dir, name) < 0)
        return csi_error_oom(err);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    /* a read-only store (a mounted cache) can be read: locks are for writers */
    if (fd < 0 && (errno == EROFS || errno == EACCES))
        fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT) {
        int ret = csi_error_errno(err, errno, "open %s", path);

        free(path);
        return ret;
    }
    free(path);
    *fd_out = fd;
    return 0;
}

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* flock until DEADLINE (now_ms(); < 0: no deadline). 0, or EWOULDBLOCK when it passed, or an
 * errno. */
static int
lock_until(int fd, int op, int64_t deadline)
{
    for (;;) {
        int64_t left;

        if (flock(fd, op | (deadline >= 0 ? LOCK_NB : 0)) == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK || deadline < 0)
            return errno;
        left = deadline - now_ms();
        if (left <= 0)
            return EWOULDBLOCK;
        usleep((useconds_t)(left < 50 ? left : 50) * 1000);
    }
}

static int
enter_shared(cs_store *s, cs_error **err)
{
    int gate = -1, ret, e;

    ret = open_lock_file(&gate, s, "gc.lock", err);
    if (ret == 0)
        ret = open_lock_file(&s->use_fd, s, "store.lock", err);
    if (ret < 0 || gate < 0 || s->use_fd < 0)
        goto out;
    e = lock_until(gate, LOCK_SH, -1);
    if (e == 0)
        e = lock_until(s->use_fd, LOCK_SH, -1);
    if (e != 0)
        ret = csi_error_errno(err, e, "lock %s/store.lock", s->dir);
out:
    if (gate >= 0)
        close(gate); /* through the turnstile */
    return ret;
}

int
cs_store_lock_exclusive(cs_store *s, int timeout_ms, cs_error **err)
{
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    int gate = -1, ret, e;

    if (s->gate_fd >= 0)
        return 0;
    if (s->use_fd < 0)
        return csi_error_errno(err, EROFS, "lock %s for exclusive use", s->dir);
    ret = open_lock_file(&gate, s, "gc.lock", err);
    if (ret < 0)
        return ret;
    if (gate < 0)
        return csi_error_errno(err, EROFS, "lock %s for exclusive use", s->dir);
    /* queue without holding our shared lock: another gc queued first waits for it */
    flock(s->use_fd, LOCK_UN);
    e = lock_until(gate, LOCK_EX, deadline);
    if (e == 0)
        e = lock_until(s->use_fd, LOCK_EX, deadline);
    if (e != 0) {
        close(gate);
        lock_until(s->use_fd, LOCK_SH, -1);
        if (e == EWOULDBLOCK)
            return csi_error_set(err, CS_ERROR,
                                 "store %s is in use by another process (a pull, push or gc); "
                                 "waited %d s for it: try again when it is done",
                                 s->dir, (timeout_ms + 999) / 1000);
        return csi_error_errno(err, e, "lock %s/store.lock", s->dir);
    }
    s->gate_fd = gate;
    return 0;
}

void
cs_store_unlock_exclusive(cs_store *s)
{
    if (s->gate_fd < 0)
        return;
    /* shared again before the turnstile opens: no gc can slip in between */
    lock_until(s->use_fd, LOCK_SH, -1);
    close(s->gate_fd);
    s->gate_fd = -1;
}

int
cs_store_open(cs_store **out, const char *dir, cs_error **err)
{
    cs_store *s;
    char *sub = NULL;
    int ret;

    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return csi_error_oom(err);
    s->use_fd = -1;
    s->gate_fd = -1;
    if (dir != NULL) {
        s->dir = strdup(dir);
        ret = s->dir ? 0 : csi_error_oom(err);
    } else {
        ret = cs_store_default_dir(&s->dir, err);
    }
    if (ret < 0)
        goto fail;
    /* strip trailing slashes so paths print cleanly */
    for (size_t n = strlen(s->dir); n > 1 && s->dir[n - 1] == '/'; n--)
        s->dir[n - 1] = '\0';
    const char *subs[] = {"blobs/sha256", "partial", NULL};
    for (const char **p = subs; *p != NULL; p++) {
        if (asprintf(&sub, "%s/%s", s->dir, *p) < 0) {
            sub = NULL;
            ret = csi_error_oom(err);
            goto fail;
        }
        ret = csi_fs_mkdirs(sub, err);
        free(sub);
        sub = NULL;
        if (ret < 0)
            goto fail;
    }
    ret = ensure_file(s->dir, "oci-layout", LAYOUT_JSON, err);
    if (ret == 0)
        ret = ensure_file(s->dir, "index.json",
                          "{\"schemaVersion\":2,\"mediaType\":\"application/"
                          "vnd.oci.image.index.v1+json\",\"manifests\":[]}",
                          err);
    if (ret == 0)
        ret = enter_shared(s, err);
    if (ret < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    csi_error_wrap(err, "store %s", s->dir ? s->dir : "?");
    cs_store_free(s);
    return ret;
}

void
cs_store_free(cs_store *s)
{
    if (s == NULL)
        return;
    if (s->gate_fd >= 0)
        close(s->gate_fd);
    if (s->use_fd >= 0)
        close(s->use_fd); /* releases the flock */
    free(s->dir);
    free(s);
}

const char *
cs_store_dir(const cs_store *s)
{
    return s->dir;
}

int
cs_store_blob_path(char **out, const cs_store *s, const char *digest, cs_error **err)
{
    int ret = cs_digest_validate(digest, err);

    if (ret < 0)
        return ret;
    if (asprintf(out, "%s/blobs/sha256/%s", s->dir, digest + 7) < 0) {
        *out = NULL;
        return csi_error_oom(err);
    }
    return 0;
}

bool
cs_store_has_blob(const cs_store *s, const char *digest, int64_t size)
{
    char *path = NULL;
    struct stat st;
    bool ok;

    if (cs_store_blob_path(&path, s, digest, NULL) < 0)
        return false;
    ok = stat(path, &st) == 0 && S_ISREG(st.st_mode) && (size < 0 || st.st_size == size);
    free(path);
    return ok;
}

int
cs_store_put_blob(cs_store *s, const char *digest, const void *data, size_t len,
                  char digest_out[CS_DIGEST_STRLEN], cs_error **err)
{
    char got[CS_DIGEST_STRLEN];
    char *path = NULL;
    int ret;

    ret = cs_digest_buffer(got, data, len, err);
    if (ret < 0)
        return ret;
    if (digest != NULL && strcmp(digest, got) != 0)
        return csi_error_set(err, CS_EDIGEST, "blob %s: content has digest %s", digest, got);
    ret = cs_store_blob_path(&path, s, got, err);
    if (ret < 0)
        return ret;
    if (!cs_store_has_blob(s, got, (int64_t)len))
        ret = csi_fs_write_atomic(path, data, len, err);
    free(path);
    if (ret == 0 && digest_out != NULL)
        memcpy(digest_out, got, CS_DIGEST_STRLEN);
    return ret;
}

int
cs_store_read_blob(cs_buf *out, const cs_store *s, const char *digest, size_t max, cs_error **err)
{
    char got[CS_DIGEST_STRLEN];
    char *path = NULL;
    cs_buf b = CS_BUF_INIT;
    char chunk[65536];
    int fd = -1, ret;

    ret = cs_store_blob_path(&path, s, digest, err);
    if (ret < 0)
        return ret;
    cs_buf_init(&b, max);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ret = errno == ENOENT ? csi_error_set(err, CS_ENOTFOUND, "blob %s not in the store", digest)
                              : csi_error_errno(err, errno, "open %s", path);
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ret = csi_error_errno(err, errno, "read %s", path);
            goto out;
        }
        if (r == 0)
            break;
        ret = cs_buf_append(&b, chunk, (size_t)r, err);
        if (ret < 0)
            goto out;
    }
    ret = cs_digest_buffer(got, b.ptr ? b.ptr : "", b.len, err);
    if (ret < 0)
        goto out;
    if (strcmp(got, digest) != 0) {
        ret = csi_error_set(err, CS_EDIGEST, "store blob %s is corrupt (content has digest %s)",
                            digest, got);
        goto out;
    }
    if (b.ptr == NULL)
        cs_buf_puts(&b, "", NULL);
    cs_buf_dispose(out);
    *out = b;
    memset(&b, 0, sizeof(b));
out:
    if (fd >= 0)
        close(fd);
    cs_buf_dispose(&b);
    free(path);
    return ret;
}

/* ---- index.json ------------------------------------------------------------------------- */

typedef int (*index_edit_fn)(json_t *manifests, void *arg, cs_error **err);

/* Read index.json, EDIT its manifests array, replace it: all under index.json.lock. */
static int
index_update(cs_store *s, index_edit_fn edit, void *arg, cs_error **err)
{
    char *path = NULL, *lock = NULL, *text = NULL, *data = NULL;
    json_t *root = NULL, *manifests;
    size_t len = 0;
    int lock_fd = -1, ret;

    if (asprintf(&path, "%s/index.json", s->dir) < 0 ||
        asprintf(&lock, "%s/index.json.lock", s->dir) < 0) {
        ret = csi_error_oom(err);
        goto out;
    }
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
    ret = csi_fs_read_file(&data, &len, path, INDEX_MAX, err);
    if (ret == 0)
        ret = csi_json_load_object(&root, data, len, INDEX_MAX, "store index.json", err);
    if (ret < 0)
        goto out;
    manifests = json_object_get(root, "manifests");
    if (!json_is_array(manifests)) {
        manifests = json_array();
        if (manifests == NULL || json_object_set_new(root, "manifests", manifests) != 0) {
            ret = csi_error_oom(err);
            goto out;
        }
    }
    ret = edit(manifests, arg, err);
    if (ret < 0)
        goto out;
    text = json_dumps(root, JSON_COMPACT);
    if (text == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = csi_fs_write_atomic(path, text, strlen(text), err);
out:
    if (lock_fd >= 0)
        close(lock_fd);
    free(text);
    free(data);
    json_decref(root);
    free(path);
    free(lock);
    return ret;
}

static const char *
ref_name(json_t *desc)
{
    return csi_json_str(json_object_get(desc, "annotations"), "org.opencontainers.image.ref.name");
}

typedef struct set_args {
    const char *ref, *media_type, *digest;
    int64_t size;
    const char *const *annotations;
} set_args;

static int
set_edit(json_t *manifests, void *arg, cs_error **err)
{
    const set_args *a = arg;
    char now[32];
    struct tm tm;
    time_t t = time(NULL);
    json_t *ann, *desc;
    size_t i;

    for (i = json_array_size(manifests); i-- > 0;) {
        const char *name = ref_name(json_array_get(manifests, i));

        if (name != NULL && strcmp(name, a->ref) == 0)
            json_array_remove(manifests, i);
    }
    strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    ann = json_pack("{s:s,s:s,s:s}", "io.containerd.image.name", a->ref,
                    "org.opencontainers.image.ref.name", a->ref, CS_STORE_ANN_LAST_USED, now);
    for (const char *const *p = a->annotations; ann && p != NULL && p[0] != NULL && p[1] != NULL;
         p += 2)
        json_object_set_new(ann, p[0], json_string(p[1]));
    desc = ann == NULL ? NULL
                       : json_pack("{s:s,s:s,s:I,s:o}", "mediaType", a->media_type, "digest",
                                   a->digest, "size", (json_int_t)a->size, "annotations", ann);
    if (desc == NULL || json_array_append_new(manifests, desc) != 0)
        return csi_error_oom(err);
    return 0;
}

int
cs_store_set_ref(cs_store *s, const char *ref, const char *media_type, const char *digest,
                 int64_t size, const char *const *annotations, cs_error **err)
{
    set_args a = {ref, media_type, digest, size, annotations};

    return index_update(s, set_edit, &a, err);
}

typedef struct remove_args {
    const char *ref, *digest;
    size_t removed;
} remove_args;

static int
remove_edit(json_t *manifests, void *arg, cs_error **err)
{
    remove_args *a = arg;
    size_t i;

    for (i = json_array_size(manifests); i-- > 0;) {
        json_t *d = json_array_get(manifests, i);
        const char *name = ref_name(d), *digest = csi_json_str(d, "digest");

        if ((a->ref == NULL ? name != NULL : name == NULL || strcmp(name, a->ref) != 0) ||
            (a->digest != NULL && (digest == NULL || strcmp(digest, a->digest) != 0)))
            continue;
        json_array_remove(manifests, i);
        a->removed++;
    }
    if (a->removed == 0)
        return csi_error_set(err, CS_ENOTFOUND, "no ref %s%s%s in the store",
                             a->ref ? a->ref : "(unnamed)", a->digest ? " naming " : "",
                             a->digest ? a->digest : "");
    return 0;
}

int
cs_store_remove_ref(cs_store *s, const char *ref, const char *digest, cs_error **err)
{
    remove_args a = {ref, digest, 0};

    return index_update(s, remove_edit, &a, err);
}
