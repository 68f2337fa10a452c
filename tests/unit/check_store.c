/* The local store: verified atomic blobs, resumable writers, locking, index.json refs; and
 * its administration: ls sizes and last use, verify, gc (what a ref needs, through an index
 * too; --older-than; --max-size in LRU order; never while another handle is open). */
#include "config.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <cachesync/store.h>
#include "cs_test.h"
#include "hashpipe.h"

static char tmpdir[64];
static cs_store *store;

static void
setup(void)
{
    cs_error *err = NULL;

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cs-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    ck_assert_cs_ok(cs_store_open(&store, tmpdir, &err), &err);
}

static void
teardown(void)
{
    char cmd[128];

    cs_store_free(store);
    store = NULL;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static char *
slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *d;
    long n;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    d = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(d, 1, (size_t)n, f), (size_t)n);
    d[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return d;
}

START_TEST(test_layout_created)
{
    char path[128];
    char *s;

    snprintf(path, sizeof(path), "%s/oci-layout", tmpdir);
    s = slurp(path, NULL);
    ck_assert_str_eq(s, "{\"imageLayoutVersion\":\"1.0.0\"}");
    free(s);
    snprintf(path, sizeof(path), "%s/index.json", tmpdir);
    s = slurp(path, NULL);
    ck_assert_ptr_nonnull(strstr(s, "\"manifests\":[]"));
    free(s);
    /* opening again keeps what is there */
    cs_store *again = NULL;
    ck_assert_int_eq(cs_store_open(&again, tmpdir, NULL), 0);
    cs_store_free(again);
}
END_TEST

START_TEST(test_put_and_read)
{
    char digest[CS_DIGEST_STRLEN];
    cs_buf b = CS_BUF_INIT;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_store_put_blob(store, NULL, "abc", 3, digest, &err), &err);
    ck_assert_str_eq(digest,
                     "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ck_assert(cs_store_has_blob(store, digest, 3));
    ck_assert(!cs_store_has_blob(store, digest, 4));
    ck_assert_cs_ok(cs_store_read_blob(&b, store, digest, 100, &err), &err);
    ck_assert_str_eq(b.ptr, "abc");
    cs_buf_dispose(&b);
    /* a wrong digest is refused and nothing appears */
    ck_assert_int_eq(cs_store_put_blob(store,
                                       "sha256:0000000000000000000000000000000000000000000000000"
                                       "000000000000000",
                                       "abc", 3, NULL, &err),
                     CS_EDIGEST);
    cs_error_free(err);
    err = NULL;
    ck_assert(!cs_store_has_blob(
        store, "sha256:0000000000000000000000000000000000000000000000000000000000000000", -1));
    ck_assert_int_eq(cs_store_read_blob(&b, store,
                                        "sha256:000000000000000000000000000000000000000000000000"
                                        "0000000000000000",
                                        100, &err),
                     CS_ENOTFOUND);
    cs_error_free(err);
}
END_TEST

START_TEST(test_read_detects_corruption)
{
    char digest[CS_DIGEST_STRLEN], *path = NULL;
    cs_buf b = CS_BUF_INIT;
    cs_error *err = NULL;
    FILE *f;

    ck_assert_int_eq(cs_store_put_blob(store, NULL, "hello", 5, digest, NULL), 0);
    ck_assert_int_eq(cs_store_blob_path(&path, store, digest, NULL), 0);
    f = fopen(path, "wb");
    fputs("jello", f);
    fclose(f);
    ck_assert_int_eq(cs_store_read_blob(&b, store, digest, 100, &err), CS_EDIGEST);
    ck_assert_ptr_nonnull(strstr(err->message, "corrupt"));
    cs_error_free(err);
    free(path);
}
END_TEST

START_TEST(test_bad_digest_names_no_file)
{
    char *path = NULL;
    cs_error *err = NULL;

    ck_assert_int_eq(cs_store_blob_path(&path, store, "sha256:../../etc/passwd", &err), CS_EPROTO);
    ck_assert_ptr_null(path);
    cs_error_free(err);
}
END_TEST

#define HELLO_DIGEST "sha256:936a185caaa266bb9cbe981e9e05cb78cd732b0b3280eb944412bb6f8f8f07af"

START_TEST(test_writer_resume)
{
    cs_store_writer *w = NULL;
    cs_error *err = NULL;

    /* first run writes part of "helloworld" and stops */
    ck_assert_cs_ok(cs_store_writer_open(&w, store, HELLO_DIGEST, 10, &err), &err);
    ck_assert(!cs_store_writer_present(w));
    ck_assert_uint_eq(cs_store_writer_offset(w), 0);
    ck_assert_cs_ok(cs_store_writer_write(w, "hello", 5, &err), &err);
    cs_store_writer_close(w);
    ck_assert(!cs_store_has_blob(store, HELLO_DIGEST, -1));
    /* the next one resumes at 5 and the digest covers the whole */
    ck_assert_cs_ok(cs_store_writer_open(&w, store, HELLO_DIGEST, 10, &err), &err);
    ck_assert_uint_eq(cs_store_writer_offset(w), 5);
    ck_assert_cs_ok(cs_store_writer_write(w, "world", 5, &err), &err);
    ck_assert_int_eq(cs_store_writer_write(w, "!", 1, &err), CS_EDIGEST);
    cs_error_free(err);
    err = NULL;
    ck_assert_cs_ok(cs_store_writer_commit(w, &err), &err);
    cs_store_writer_close(w);
    ck_assert(cs_store_has_blob(store, HELLO_DIGEST, 10));
    /* and a later writer finds it present */
    ck_assert_cs_ok(cs_store_writer_open(&w, store, HELLO_DIGEST, 10, &err), &err);
    ck_assert(cs_store_writer_present(w));
    cs_store_writer_close(w);
}
END_TEST

START_TEST(test_writer_mismatch_removes_partial)
{
    cs_store_writer *w = NULL;
    cs_error *err = NULL;
    char path[256];
    struct stat st;

    ck_assert_cs_ok(cs_store_writer_open(&w, store, HELLO_DIGEST, 10, &err), &err);
    ck_assert_cs_ok(cs_store_writer_write(w, "helloWorld", 10, &err), &err);
    ck_assert_int_eq(cs_store_writer_commit(w, &err), CS_EDIGEST);
    ck_assert_ptr_nonnull(strstr(err->message, HELLO_DIGEST));
    cs_error_free(err);
    cs_store_writer_close(w);
    ck_assert(!cs_store_has_blob(store, HELLO_DIGEST, -1));
    snprintf(path, sizeof(path), "%s/partial/%s", tmpdir, HELLO_DIGEST + 7);
    ck_assert_int_ne(stat(path, &st), 0);
    /* short data does not commit either */
    ck_assert_cs_ok(cs_store_writer_open(&w, store, HELLO_DIGEST, 10, &err), &err);
    ck_assert_uint_eq(cs_store_writer_offset(w), 0);
    ck_assert_cs_ok(cs_store_writer_write(w, "hell", 4, &err), &err);
    ck_assert_int_eq(cs_store_writer_commit(w, &err), CS_EDIGEST);
    cs_error_free(err);
    err = NULL;
    ck_assert_cs_ok(cs_store_writer_restart(w, &err), &err);
    ck_assert_cs_ok(cs_store_writer_write(w, "helloworld", 10, &err), &err);
    ck_assert_cs_ok(cs_store_writer_commit(w, &err), &err);
    cs_store_writer_close(w);
    ck_assert(cs_store_has_blob(store, HELLO_DIGEST, 10));
}
END_TEST

/* Verify apart from the commit (pull.c verifies on the transfer thread and commits on
 * another): a verified writer takes no more bytes, is not yet visible, and commits without
 * hashing again; a mismatch found by verify restarts the writer like a failed commit. */
START_TEST(test_writer_verify_then_commit)
{
    cs_store_writer *w = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_store_writer_open(&w, store, HELLO_DIGEST, 10, &err), &err);
    ck_assert_cs_ok(cs_store_writer_write(w, "helloWorld", 10, &err), &err);
    ck_assert_int_eq(cs_store_writer_verify(w, &err), CS_EDIGEST);
    cs_error_free(err);
    err = NULL;
    ck_assert_uint_eq(cs_store_writer_offset(w), 0);
    ck_assert_cs_ok(cs_store_writer_write(w, "helloworld", 10, &err), &err);
    ck_assert_cs_ok(cs_store_writer_verify(w, &err), &err);
    ck_assert_cs_ok(cs_store_writer_verify(w, &err), &err); /* twice is fine */
    ck_assert(!cs_store_has_blob(store, HELLO_DIGEST, -1));
    ck_assert_int_eq(cs_store_writer_write(w, "", 0, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_cs_ok(cs_store_writer_commit(w, &err), &err);
    cs_store_writer_close(w);
    ck_assert(cs_store_has_blob(store, HELLO_DIGEST, 10));
}
END_TEST

/* Two processes writing the same blob: the second waits, then finds it present. The child
 * is forked before the parent takes the lock (a forked child would inherit the lock). */
START_TEST(test_writer_lock_between_processes)
{
    cs_store_writer *w = NULL;
    int go[2], status;
    pid_t pid;
    char c;

    ck_assert_int_eq(pipe(go), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        cs_store *s2 = NULL;
        cs_store_writer *w2 = NULL;

        close(go[1]);
        if (read(go[0], &c, 1) != 1 || cs_store_open(&s2, tmpdir, NULL) != 0)
            _exit(2);
        if (cs_store_writer_open(&w2, s2, HELLO_DIGEST, 10, NULL) != 0)
            _exit(3);
        _exit(cs_store_writer_present(w2) ? 0 : 4);
    }
    close(go[0]);
    ck_assert_int_eq(cs_store_writer_open(&w, store, HELLO_DIGEST, 10, NULL), 0);
    ck_assert_int_eq(write(go[1], "x", 1), 1);
    usleep(200000); /* the child now waits on the lock */
    ck_assert_int_eq(cs_store_writer_write(w, "helloworld", 10, NULL), 0);
    ck_assert_int_eq(cs_store_writer_commit(w, NULL), 0);
    cs_store_writer_close(w);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    close(go[1]);
}
END_TEST

START_TEST(test_set_ref_replaces)
{
    static const char *const ann[] = {"io.cachesync.source", "reg/app:main", NULL};
    json_t *root, *m;
    char path[128];
    cs_error *err = NULL;

    ck_assert_cs_ok(
        cs_store_set_ref(store, "reg/app:main", "application/x", HELLO_DIGEST, 10, ann, &err),
        &err);
    ck_assert_cs_ok(
        cs_store_set_ref(store, "reg/app:dev", "application/x", HELLO_DIGEST, 10, NULL, &err),
        &err);
    ck_assert_cs_ok(
        cs_store_set_ref(store, "reg/app:main", "application/y", HELLO_DIGEST, 11, NULL, &err),
        &err);
    snprintf(path, sizeof(path), "%s/index.json", tmpdir);
    root = json_load_file(path, 0, NULL);
    ck_assert_ptr_nonnull(root);
    m = json_object_get(root, "manifests");
    ck_assert_uint_eq(json_array_size(m), 2);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(json_array_get(m, 1), "annotations"),
                                          "org.opencontainers.image.ref.name")),
        "reg/app:main");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 1), "mediaType")),
                     "application/y");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(json_array_get(m, 0), "annotations"),
                                          "io.containerd.image.name")),
        "reg/app:dev");
    json_decref(root);
}
END_TEST

/* ---- administration ------------------------------------------------------------------------ */

#define DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"

typedef struct image {
    char manifest[CS_DIGEST_STRLEN];
    char config[CS_DIGEST_STRLEN];
    char layers[4][CS_DIGEST_STRLEN];
    size_t nlayers;
    uint64_t bytes; /* manifest + config + distinct layers */
    size_t manifest_len;
} image;

static void
put(char digest[CS_DIGEST_STRLEN], const char *data, size_t len)
{
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_store_put_blob(store, NULL, data, len, digest, &err), &err);
}

/* An image whose layers have the given contents (a repeated content is one blob); DIFF_IDS
 * (may be NULL) go into the config's rootfs. */
static void
make_image(image *img, const char *const *layers, size_t n, const char *diff_id)
{
    char config[1024], manifest[2048];
    size_t i, k, off;

    memset(img, 0, sizeof(*img));
    snprintf(config, sizeof(config),
             "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\","
             "\"diff_ids\":[\"%s\"]},\"n\":\"%s\"}",
             diff_id ? diff_id
                     : "sha256:0000000000000000000000000000000000000000000000000000000000000000",
             layers[n - 1]);
    put(img->config, config, strlen(config));
    img->bytes = strlen(config);
    off = (size_t)snprintf(manifest, sizeof(manifest),
                           "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
                           "\"application/vnd.docker.container.image.v1+json\",\"digest\":\"%s\","
                           "\"size\":%zu},\"layers\":[",
                           DOCKER_MANIFEST, img->config, strlen(config));
    for (i = 0; i < n; i++) {
        bool dup = false;

        put(img->layers[i], layers[i], strlen(layers[i]));
        for (k = 0; k < i; k++)
            dup = dup || strcmp(img->layers[k], img->layers[i]) == 0;
        if (!dup)
            img->bytes += strlen(layers[i]);
        off += (size_t)snprintf(manifest + off, sizeof(manifest) - off,
                                "%s{\"mediaType\":\"application/"
                                "vnd.docker.image.rootfs.diff.tar.gzip\",\"digest\":\"%s\","
                                "\"size\":%zu}",
                                i ? "," : "", img->layers[i], strlen(layers[i]));
    }
    img->nlayers = n;
    snprintf(manifest + off, sizeof(manifest) - off, "]}");
    img->manifest_len = strlen(manifest);
    put(img->manifest, manifest, img->manifest_len);
    img->bytes += img->manifest_len;
}

/* Name REF -> DIGEST with last use at Unix time WHEN (0: now, as a pull records it). */
static void
name_ref(const char *ref, const char *mt, const char *digest, size_t size, time_t when)
{
    char t[32];
    const char *ann[] = {CS_STORE_ANN_LAST_USED, t, NULL};
    struct tm tm;
    cs_error *err = NULL;

    strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&when, &tm));
    ck_assert_cs_ok(
        cs_store_set_ref(store, ref, mt, digest, (int64_t)size, when ? ann : NULL, &err), &err);
}

static bool
has(const char *digest)
{
    return cs_store_has_blob(store, digest, -1);
}

static void
blob_file(char *path, size_t size, const char *digest)
{
    snprintf(path, size, "%s/blobs/sha256/%.64s", tmpdir, digest + 7);
}

static void
write_file(const char *path, const char *data, time_t mtime)
{
    FILE *f = fopen(path, "wb");

    ck_assert_ptr_nonnull(f);
    fputs(data, f);
    fclose(f);
    if (mtime != 0) {
        struct timeval tv[2] = {{mtime, 0}, {mtime, 0}};

        ck_assert_int_eq(utimes(path, tv), 0);
    }
}

/* An index naming IMG's manifest (present) and another platform's (absent, as a pull leaves
 * it). */
static void
make_index(char digest[CS_DIGEST_STRLEN], size_t *len, const image *img)
{
    char text[1024];

    snprintf(text, sizeof(text),
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
             "\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,\"platform\":"
             "{\"os\":\"linux\",\"architecture\":\"amd64\"}},{\"mediaType\":\"%s\",\"digest\":"
             "\"sha256:1111111111111111111111111111111111111111111111111111111111111111\","
             "\"size\":99,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\"}}]}",
             DOCKER_MANIFEST, img->manifest, img->manifest_len, DOCKER_MANIFEST);
    put(digest, text, strlen(text));
    *len = strlen(text);
}

static const cs_store_ref_info *
find_ref(const cs_store_listing *l, const char *name)
{
    for (size_t i = 0; i < l->nrefs; i++) {
        if (l->refs[i].ref != NULL && strcmp(l->refs[i].ref, name) == 0)
            return &l->refs[i];
    }
    ck_abort_msg("ref %s not listed", name);
    return NULL;
}

START_TEST(test_set_ref_records_last_use)
{
    static const char *const ann[] = {CS_STORE_ANN_LAST_USED, "2020-01-02T03:04:05Z", NULL};
    cs_store_listing *l = NULL;
    cs_error *err = NULL;
    time_t t0 = time(NULL), t1;

    ck_assert_cs_ok(cs_store_set_ref(store, "r/a:1", "application/x", HELLO_DIGEST, 10, NULL, &err),
                    &err);
    t1 = time(NULL);
    ck_assert_cs_ok(cs_store_set_ref(store, "r/b:1", "application/x", HELLO_DIGEST, 10, ann, &err),
                    &err);
    ck_assert_cs_ok(cs_store_list(&l, store, &err), &err);
    ck_assert_uint_eq(l->nrefs, 2);
    ck_assert(l->refs[0].last_used_recorded);
    ck_assert_int_ge(l->refs[0].last_used, (int64_t)t0);
    ck_assert_int_le(l->refs[0].last_used, (int64_t)t1);
    /* the caller's annotation wins (how tests and imports set a time) */
    ck_assert_int_eq(l->refs[1].last_used, 1577934245);
    /* the blob is not in the store: the ref needs it, nothing is there */
    ck_assert_uint_eq(l->refs[0].nmissing, 1);
    ck_assert_uint_eq(l->refs[0].size, 0);
    cs_store_listing_free(l);
}
END_TEST

START_TEST(test_parse_time)
{
    int64_t t = 0;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_store_parse_time(&t, "1970-01-01T00:00:00Z", &err), &err);
    ck_assert_int_eq(t, 0);
    ck_assert_cs_ok(cs_store_parse_time(&t, "2024-05-01T14:00:00.123+02:00", &err), &err);
    ck_assert_int_eq(t, 1714564800);
    ck_assert_cs_ok(cs_store_parse_time(&t, "2024-05-01t12:00:00z", &err), &err);
    ck_assert_int_eq(t, 1714564800);
    ck_assert_int_eq(cs_store_parse_time(&t, "2024-05-01", &err), CS_EINVAL);
    cs_error_free(err);
    ck_assert_int_eq(cs_store_parse_time(&t, "2024-13-01T00:00:00Z", NULL), CS_EINVAL);
    ck_assert_int_eq(cs_store_parse_time(&t, "2024-05-01T00:00:00", NULL), CS_EINVAL);
    ck_assert_int_eq(cs_store_parse_time(&t, "2024-05-01T00:00:00Zjunk", NULL), CS_EINVAL);
}
END_TEST

START_TEST(test_list_sizes)
{
    static const char *const la[] = {"base layer", "layer a"};
    static const char *const lb[] = {"base layer", "layer b", "layer b"};
    char idx[CS_DIGEST_STRLEN], extra[CS_DIGEST_STRLEN], path[256];
    cs_store_listing *l = NULL;
    const cs_store_ref_info *r;
    cs_error *err = NULL;
    image a, b;
    size_t idx_len;

    make_image(&a, la, 2, NULL);
    make_image(&b, lb, 3, NULL);
    make_index(idx, &idx_len, &b);
    name_ref("reg/a:1", DOCKER_MANIFEST, a.manifest, a.manifest_len, 0);
    name_ref("reg/b:list", "application/vnd.oci.image.index.v1+json", idx, idx_len, 0);
    put(extra, "nobody needs me", 15);
    snprintf(path, sizeof(path), "%s/partial/%s", tmpdir, HELLO_DIGEST + 7);
    write_file(path, "hel", 0);
    ck_assert_cs_ok(cs_store_list(&l, store, &err), &err);
    ck_assert_uint_eq(l->nrefs, 2);
    r = find_ref(l, "reg/a:1");
    ck_assert_str_eq(r->digest, a.manifest);
    ck_assert_str_eq(r->media_type, DOCKER_MANIFEST);
    ck_assert_uint_eq(r->size, a.bytes);
    ck_assert_uint_eq(r->nblobs, 4);
    ck_assert_uint_eq(r->nmissing, 0);
    /* through the index to the child present; the absent arm64 child is no missing blob; the
     * repeated layer counts once */
    r = find_ref(l, "reg/b:list");
    ck_assert_uint_eq(r->size, idx_len + b.bytes);
    ck_assert_uint_eq(r->nblobs, 5);
    ck_assert_uint_eq(r->nmissing, 0);
    /* 9 blobs: 2 manifests, 2 configs, 3 layers (base shared), the index, the extra */
    ck_assert_uint_eq(l->blobs, 9);
    ck_assert_uint_eq(l->bytes, a.bytes + b.bytes - strlen("base layer") + idx_len + 15);
    ck_assert_uint_eq(l->unreferenced_blobs, 1);
    ck_assert_uint_eq(l->unreferenced_bytes, 15);
    ck_assert_uint_eq(l->partial, 1);
    ck_assert_uint_eq(l->partial_bytes, 3);
    cs_store_listing_free(l);
}
END_TEST

START_TEST(test_verify_removes_corrupt)
{
    static const char *const la[] = {"layer one", "layer two"};
    cs_store_verify_result *v = NULL;
    char path[256], path2[256];
    cs_error *err = NULL;
    image a;
    size_t i;

    make_image(&a, la, 2, NULL);
    name_ref("reg/a:1", DOCKER_MANIFEST, a.manifest, a.manifest_len, 0);
    ck_assert_cs_ok(cs_store_verify(&v, store, NULL, NULL, &err), &err);
    ck_assert_uint_eq(v->checked, 4);
    ck_assert_uint_eq(v->bytes, a.bytes);
    ck_assert_uint_eq(v->ncorrupt, 0);
    ck_assert_uint_eq(v->nmissing, 0);
    cs_store_verify_result_free(v);

    /* one byte flipped (same size), one blob cut short */
    blob_file(path, sizeof(path), a.layers[0]);
    write_file(path, "layer 0ne", 0);
    blob_file(path2, sizeof(path2), a.layers[1]);
    write_file(path2, "layer", 0);
    ck_assert_cs_ok(cs_store_verify(&v, store, NULL, NULL, &err), &err);
    ck_assert_uint_eq(v->checked, 4);
    ck_assert_uint_eq(v->ncorrupt, 2);
    ck_assert_uint_eq(v->removed, 2);
    for (i = 0; i < 2; i++) {
        const cs_store_corrupt *c = &v->corrupt[i];

        ck_assert(c->removed);
        if (strcmp(c->digest, a.layers[0]) == 0) {
            ck_assert_str_eq(c->reason, "digest mismatch");
            ck_assert_str_eq(c->path, path);
            ck_assert_ptr_nonnull(strstr(c->detail, "content hashes to sha256:"));
        } else {
            ck_assert_str_eq(c->digest, a.layers[1]);
            ck_assert_str_eq(c->reason, "size mismatch");
            ck_assert_str_eq(c->detail, "5 bytes, its descriptor says 9");
        }
    }
    ck_assert(!has(a.layers[0]));
    ck_assert(!has(a.layers[1]));
    ck_assert(has(a.config));
    /* what the ref now lacks */
    ck_assert_uint_eq(v->nmissing, 2);
    ck_assert_str_eq(v->missing[0].ref, "reg/a:1");
    ck_assert(strcmp(v->missing[0].digest, a.layers[0]) == 0 ||
              strcmp(v->missing[1].digest, a.layers[0]) == 0);
    cs_store_verify_result_free(v);
    /* clean afterwards; the missing blobs are still listed */
    ck_assert_cs_ok(cs_store_verify(&v, store, NULL, NULL, &err), &err);
    ck_assert_uint_eq(v->checked, 2);
    ck_assert_uint_eq(v->ncorrupt, 0);
    ck_assert_uint_eq(v->nmissing, 2);
    cs_store_verify_result_free(v);
}
END_TEST

START_TEST(test_gc_keeps_what_refs_need)
{
    static const char *const la[] = {"shared base", "layer a"};
    static const char *const lb[] = {"shared base", "layer b"};
    static const char *const lc[] = {"layer c only"};
    char idx[CS_DIGEST_STRLEN], extra[CS_DIGEST_STRLEN], diff[CS_DIGEST_STRLEN];
    char path[256], stale[256], fresh[256], lock[300], tmpf[256], orphan[256];
    cs_store_gc_options o = {.older_than = -1, .max_size = -1, .timeout_ms = 1000};
    cs_store_gc_result *g = NULL;
    cs_error *err = NULL;
    image a, b, c;
    size_t idx_len, i;
    json_t *map;

    /* the uncompressed copy of a's first layer a pull made for an old Docker: kept with a */
    put(diff, "uncompressed base", 17);
    make_image(&a, la, 2, diff);
    make_image(&b, lb, 2, NULL);
    make_image(&c, lc, 1, NULL);
    make_index(idx, &idx_len, &b);
    name_ref("reg/a:1", DOCKER_MANIFEST, a.manifest, a.manifest_len, 0);
    name_ref("reg/b:list", "application/vnd.oci.image.index.v1+json", idx, idx_len, 0);
    put(extra, "nobody needs me", 15);
    /* c was named once, then forgotten: all of it goes */
    name_ref("reg/c:1", DOCKER_MANIFEST, c.manifest, c.manifest_len, 0);
    ck_assert_cs_ok(cs_store_remove_ref(store, "reg/c:1", NULL, &err), &err);
    ck_assert_int_eq(cs_store_remove_ref(store, "reg/c:1", NULL, &err), CS_ENOTFOUND);
    cs_error_free(err);
    err = NULL;
    /* a partial untouched for two days goes, one of an hour ago stays (it resumes) */
    snprintf(stale, sizeof(stale), "%s/partial/%064x", tmpdir, 1u);
    write_file(stale, "old bytes", time(NULL) - 2 * 86400);
    snprintf(lock, sizeof(lock), "%s.lock", stale);
    write_file(lock, "", 0);
    snprintf(fresh, sizeof(fresh), "%s/partial/%064x", tmpdir, 2u);
    write_file(fresh, "new", time(NULL) - 3600);
    snprintf(orphan, sizeof(orphan), "%s/partial/%064x.lock", tmpdir, 3u);
    write_file(orphan, "", 0);
    snprintf(tmpf, sizeof(tmpf), "%s/blobs/sha256/%s.tmp-abcdef", tmpdir, HELLO_DIGEST + 7);
    write_file(tmpf, "leftover", time(NULL) - 3 * 86400);
    /* layers.json remembers blobs kept and gone */
    snprintf(path, sizeof(path), "%s/layers.json", tmpdir);
    map = json_pack("{s:{s:{s:{s:s,s:i}},s:{s:{s:s,s:i}}},s:{s:{s:[s]},s:{s:[s]}}}", "layers",
                    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                    "gzip", "digest", a.layers[1], "size", 7,
                    "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
                    "gzip", "digest", c.layers[0], "size", 12, "blobs", a.layers[1], "seen", "r/x",
                    c.layers[0], "seen", "r/y");
    ck_assert_int_eq(json_dump_file(map, path, 0), 0);
    json_decref(map);

    ck_assert_cs_ok(cs_store_gc(&g, store, &o, &err), &err);
    ck_assert_uint_eq(g->nremoved_refs, 0);
    /* c's manifest, config and layer, and the extra blob */
    ck_assert_uint_eq(g->removed_blobs, 4);
    ck_assert_uint_eq(g->removed_partial, 2);
    ck_assert_uint_eq(g->freed_bytes, c.bytes + 15 + strlen("old bytes") + strlen("leftover"));
    ck_assert_uint_eq(g->refs, 2);
    ck_assert_uint_eq(g->layermap_pruned, 2);
    ck_assert(!has(extra));
    ck_assert(!has(c.manifest) && !has(c.config) && !has(c.layers[0]));
    ck_assert(has(a.manifest) && has(a.config) && has(diff));
    ck_assert(has(idx) && has(b.manifest) && has(b.config));
    for (i = 0; i < 2; i++)
        ck_assert(has(a.layers[i]) && has(b.layers[i]));
    ck_assert_int_ne(access(stale, F_OK), 0);
    ck_assert_int_ne(access(lock, F_OK), 0);
    ck_assert_int_ne(access(orphan, F_OK), 0);
    ck_assert_int_ne(access(tmpf, F_OK), 0);
    ck_assert_int_eq(access(fresh, F_OK), 0);
    ck_assert_uint_eq(g->blobs, 9); /* diff; a: 4; b: 3 (the base is shared); the index */
    cs_store_gc_result_free(g);
    map = json_load_file(path, 0, NULL);
    ck_assert_ptr_nonnull(map);
    ck_assert_uint_eq(json_object_size(json_object_get(map, "layers")), 1);
    ck_assert_ptr_nonnull(json_object_get(json_object_get(map, "blobs"), a.layers[1]));
    ck_assert_ptr_null(json_object_get(json_object_get(map, "blobs"), c.layers[0]));
    json_decref(map);
    /* nothing left to do */
    ck_assert_cs_ok(cs_store_gc(&g, store, NULL, &err), &err);
    ck_assert_uint_eq(g->removed_blobs, 0);
    ck_assert_uint_eq(g->freed_bytes, 0);
    cs_store_gc_result_free(g);
}
END_TEST

START_TEST(test_gc_older_than)
{
    static const char *const lo[] = {"shared", "old only"};
    static const char *const ln[] = {"shared", "new only"};
    cs_store_gc_options o = {.older_than = 30 * 86400, .max_size = -1, .timeout_ms = 1000};
    cs_store_gc_result *g = NULL;
    cs_store_listing *l = NULL;
    cs_error *err = NULL;
    image old, young;

    make_image(&old, lo, 2, NULL);
    make_image(&young, ln, 2, NULL);
    name_ref("reg/old:1", DOCKER_MANIFEST, old.manifest, old.manifest_len, time(NULL) - 40 * 86400);
    name_ref("reg/young:1", DOCKER_MANIFEST, young.manifest, young.manifest_len,
             time(NULL) - 20 * 86400);
    /* a dry run decides the same and removes nothing */
    o.dry_run = true;
    ck_assert_cs_ok(cs_store_gc(&g, store, &o, &err), &err);
    ck_assert_uint_eq(g->nremoved_refs, 1);
    ck_assert_uint_eq(g->removed_blobs, 3);
    cs_store_gc_result_free(g);
    ck_assert(has(old.manifest));
    o.dry_run = false;
    ck_assert_cs_ok(cs_store_gc(&g, store, &o, &err), &err);
    ck_assert_uint_eq(g->nremoved_refs, 1);
    ck_assert_str_eq(g->removed_refs[0].ref, "reg/old:1");
    ck_assert_str_eq(g->removed_refs[0].digest, old.manifest);
    ck_assert_str_eq(g->removed_refs[0].reason, "older-than");
    ck_assert_uint_eq(g->removed_blobs, 3);
    ck_assert_uint_eq(g->freed_bytes, old.bytes - strlen("shared"));
    cs_store_gc_result_free(g);
    ck_assert(!has(old.manifest) && !has(old.config) && !has(old.layers[1]));
    ck_assert(has(old.layers[0])); /* young needs it too */
    ck_assert_cs_ok(cs_store_list(&l, store, &err), &err);
    ck_assert_uint_eq(l->nrefs, 1);
    ck_assert_str_eq(l->refs[0].ref, "reg/young:1");
    ck_assert_uint_eq(l->unreferenced_bytes, 0);
    cs_store_listing_free(l);
}
END_TEST

START_TEST(test_gc_max_size_lru)
{
    static const char *const l1[] = {"1111111111111111111111111111111111111111"};
    static const char *const l2[] = {"2222222222222222222222222222222222222222"};
    static const char *const l3[] = {"3333333333333333333333333333333333333333"};
    cs_store_gc_options o = {.older_than = -1, .timeout_ms = 1000};
    cs_store_gc_result *g = NULL;
    cs_error *err = NULL;
    image i1, i2, i3;
    time_t now = time(NULL);

    make_image(&i1, l1, 1, NULL);
    make_image(&i2, l2, 1, NULL);
    make_image(&i3, l3, 1, NULL);
    /* used: i2 longest ago, then i3, then i1 (index.json order is not LRU order) */
    name_ref("reg/one:1", DOCKER_MANIFEST, i1.manifest, i1.manifest_len, now - 100);
    name_ref("reg/two:1", DOCKER_MANIFEST, i2.manifest, i2.manifest_len, now - 300);
    name_ref("reg/three:1", DOCKER_MANIFEST, i3.manifest, i3.manifest_len, now - 200);
    /* everything fits: nothing goes */
    o.max_size = (int64_t)(i1.bytes + i2.bytes + i3.bytes);
    ck_assert_cs_ok(cs_store_gc(&g, store, &o, &err), &err);
    ck_assert_uint_eq(g->nremoved_refs, 0);
    cs_store_gc_result_free(g);
    /* one byte less: the least recently used goes, only it */
    o.max_size = (int64_t)(i1.bytes + i2.bytes + i3.bytes) - 1;
    ck_assert_cs_ok(cs_store_gc(&g, store, &o, &err), &err);
    ck_assert_uint_eq(g->nremoved_refs, 1);
    ck_assert_str_eq(g->removed_refs[0].ref, "reg/two:1");
    ck_assert_str_eq(g->removed_refs[0].reason, "max-size");
    ck_assert_uint_eq(g->freed_bytes, i2.bytes);
    ck_assert_uint_eq(g->bytes, i1.bytes + i3.bytes);
    cs_store_gc_result_free(g);
    ck_assert(!has(i2.layers[0]) && has(i3.layers[0]) && has(i1.layers[0]));
    /* room for one: three (older) goes, one (newest) stays */
    o.max_size = (int64_t)i1.bytes;
    ck_assert_cs_ok(cs_store_gc(&g, store, &o, &err), &err);
    ck_assert_uint_eq(g->nremoved_refs, 1);
    ck_assert_str_eq(g->removed_refs[0].ref, "reg/three:1");
    cs_store_gc_result_free(g);
    ck_assert(has(i1.manifest) && !has(i3.manifest));
    /* room for nothing */
    o.max_size = 0;
    ck_assert_cs_ok(cs_store_gc(&g, store, &o, &err), &err);
    ck_assert_uint_eq(g->nremoved_refs, 1);
    ck_assert_uint_eq(g->blobs, 0);
    cs_store_gc_result_free(g);
}
END_TEST

START_TEST(test_gc_refuses_unreadable_manifest)
{
    static const char *const la[] = {"some layer"};
    char extra[CS_DIGEST_STRLEN], path[256];
    cs_store_gc_result *g = NULL;
    cs_error *err = NULL;
    image a;

    make_image(&a, la, 1, NULL);
    name_ref("reg/a:1", DOCKER_MANIFEST, a.manifest, a.manifest_len, 0);
    put(extra, "nobody needs me", 15);
    blob_file(path, sizeof(path), a.manifest);
    write_file(path, "{\"schemaVersion\":2}", 0);
    ck_assert_int_eq(cs_store_gc(&g, store, NULL, &err), CS_EDIGEST);
    ck_assert_ptr_nonnull(strstr(err->message, "reg/a:1"));
    ck_assert_ptr_nonnull(strstr(err->message, "store verify"));
    cs_error_free(err);
    err = NULL;
    ck_assert(has(extra) && has(a.layers[0]));
    /* verify removes the manifest; then gc may free what only it named */
    cs_store_verify_result *v = NULL;
    ck_assert_cs_ok(cs_store_verify(&v, store, NULL, NULL, &err), &err);
    ck_assert_uint_eq(v->ncorrupt, 1);
    cs_store_verify_result_free(v);
    ck_assert_cs_ok(cs_store_gc(&g, store, NULL, &err), &err);
    ck_assert_uint_eq(g->removed_blobs, 3);
    cs_store_gc_result_free(g);
}
END_TEST

/* A second process pulls: it writes a blob no ref names yet, then names it. gc must wait for
 * it (here: time out, then succeed once it is done) and keep the blob. */
START_TEST(test_gc_waits_for_a_writer)
{
    static const char layer[] = "a layer that a concurrent pull is writing";
    char digest[CS_DIGEST_STRLEN], c;
    cs_store_gc_options o = {.older_than = -1, .max_size = -1, .timeout_ms = 300};
    cs_store_gc_result *g = NULL;
    cs_error *err = NULL;
    int up[2], go[2], status;
    time_t t0;
    pid_t pid;

    ck_assert_int_eq(cs_digest_buffer(digest, layer, strlen(layer), NULL), 0);
    ck_assert_int_eq(pipe(up), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        cs_store *s2 = NULL;
        cs_store_writer *w = NULL;
        char m[1024], md[CS_DIGEST_STRLEN], cd[CS_DIGEST_STRLEN];

        close(up[0]);
        close(go[1]);
        if (cs_store_open(&s2, tmpdir, NULL) != 0 ||
            cs_store_writer_open(&w, s2, digest, (int64_t)strlen(layer), NULL) != 0 ||
            cs_store_writer_write(w, layer, 10, NULL) != 0)
            _exit(2);
        /* half written, not named: let the parent try gc */
        if (write(up[1], "h", 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(3);
        if (cs_store_writer_write(w, layer + 10, strlen(layer) - 10, NULL) != 0 ||
            cs_store_writer_commit(w, NULL) != 0)
            _exit(4);
        cs_store_writer_close(w);
        usleep(300000); /* committed, still not named: gc is waiting now */
        if (cs_store_put_blob(s2, NULL, "{}", 2, cd, NULL) != 0)
            _exit(5);
        snprintf(m, sizeof(m),
                 "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"x\","
                 "\"digest\":\"%s\",\"size\":2},\"layers\":[{\"mediaType\":\"y\",\"digest\":"
                 "\"%s\",\"size\":%zu}]}",
                 DOCKER_MANIFEST, cd, digest, strlen(layer));
        if (cs_store_put_blob(s2, NULL, m, strlen(m), md, NULL) != 0 ||
            cs_store_set_ref(s2, "reg/pulled:1", DOCKER_MANIFEST, md, (int64_t)strlen(m), NULL,
                             NULL) != 0)
            _exit(6);
        cs_store_free(s2);
        _exit(0);
    }
    close(up[1]);
    close(go[0]);
    ck_assert_int_eq(read(up[0], &c, 1), 1);
    /* another handle is open: gc gives up after its timeout, having touched nothing */
    t0 = time(NULL);
    ck_assert_int_eq(cs_store_gc(&g, store, &o, &err), CS_ERROR);
    ck_assert_ptr_nonnull(strstr(err->message, "in use by another process"));
    cs_error_free(err);
    err = NULL;
    ck_assert_int_le(time(NULL) - t0, 2);
    /* the partial is still there and the writer goes on */
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    o.timeout_ms = 20000;
    ck_assert_cs_ok(cs_store_gc(&g, store, &o, &err), &err);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    /* gc ran after the pull had named its blobs: all kept */
    ck_assert_uint_eq(g->removed_blobs, 0);
    ck_assert_uint_eq(g->refs, 1);
    ck_assert(has(digest));
    cs_store_gc_result_free(g);
    close(up[0]);
    close(go[1]);
}
END_TEST

/* While gc holds the store, a new handle waits for it (the turnstile), then opens. The child
 * is forked before the lock is taken (a forked child would inherit it). */
START_TEST(test_open_waits_for_gc)
{
    cs_error *err = NULL;
    int up[2], go[2], status;
    struct timespec a, b;
    pid_t pid;
    char c;

    ck_assert_int_eq(pipe(up), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        cs_store *s2 = NULL;

        close(up[0]);
        close(go[1]);
        if (read(go[0], &c, 1) != 1)
            _exit(4);
        clock_gettime(CLOCK_MONOTONIC, &a);
        if (cs_store_open(&s2, tmpdir, NULL) != 0)
            _exit(2);
        clock_gettime(CLOCK_MONOTONIC, &b);
        cs_store_free(s2);
        c = (char)((b.tv_sec - a.tv_sec) * 10 + (b.tv_nsec - a.tv_nsec) / 100000000);
        _exit(write(up[1], &c, 1) == 1 ? 0 : 3);
    }
    close(up[1]);
    close(go[0]);
    ck_assert_cs_ok(cs_store_lock_exclusive(store, 1000, &err), &err);
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    usleep(400000);
    cs_store_unlock_exclusive(store);
    ck_assert_int_eq(read(up[0], &c, 1), 1);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    /* tenths of a second the open waited */
    ck_assert_int_ge(c, 3);
    /* and exclusive use is taken again at once when nobody else is in */
    ck_assert_cs_ok(cs_store_lock_exclusive(store, 0, &err), &err);
    cs_store_unlock_exclusive(store);
    close(up[0]);
    close(go[1]);
}
END_TEST

/* ---- large blobs: hashed by a thread of their own (hashpipe.c) ---------------------------- */

#define BIG (40u << 20) /* over HASHPIPE_MIN (store_writer.c) */

/* N bytes of xorshift noise from SEED */
static unsigned char *
noise(size_t n, uint64_t seed)
{
    unsigned char *d = malloc(n);
    uint64_t x = seed | 1;
    size_t i;

    ck_assert_ptr_nonnull(d);
    for (i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        d[i] = (unsigned char)(x >> 24);
    }
    return d;
}

static void
digest_of(char out[CS_DIGEST_STRLEN], const unsigned char *d, size_t n)
{
    cs_hasher *h = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_hasher_new(&h, &err), &err);
    cs_hasher_update(h, d, n);
    cs_hasher_final(h, out);
    cs_hasher_free(h);
}

/* Write D[FROM, N) to W in uneven pieces, as libcurl hands them over. */
static void
write_pieces(cs_store_writer *w, const unsigned char *d, size_t from, size_t n)
{
    cs_error *err = NULL;
    size_t at = from, k = 0;

    while (at < n) {
        size_t len = 1 + (k++ * 7919) % 300000;

        if (len > n - at)
            len = n - at;
        ck_assert_cs_ok(cs_store_writer_write(w, d + at, len, &err), &err);
        at += len;
    }
}

START_TEST(test_hashpipe_direct)
{
    const size_t n = 8u << 20, pre = 1000;
    unsigned char *d = noise(n, 1);
    char want[CS_DIGEST_STRLEN], got[CS_DIGEST_STRLEN], path[128];
    csi_hashpipe *p = NULL;
    cs_hasher *h = NULL;
    cs_error *err = NULL;
    size_t at = pre, k = 0;
    int fd;

    digest_of(want, d, n);
    snprintf(path, sizeof(path), "%s/pipe", tmpdir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    /* a prefix hashed before the pipe starts (a resumed download), the rest behind the writes */
    ck_assert_int_eq(write(fd, d, pre), (ssize_t)pre);
    ck_assert_cs_ok(cs_hasher_new(&h, &err), &err);
    cs_hasher_update(h, d, pre);
    ck_assert_cs_ok(csi_hashpipe_start(&p, fd, path, h, pre, &err), &err);
    while (at < n) {
        size_t len = 1 + (k++ * 104729) % 200000;

        if (len > n - at)
            len = n - at;
        ck_assert_int_eq(write(fd, d + at, len), (ssize_t)len);
        at += len;
        csi_hashpipe_advance(p, at);
    }
    ck_assert_cs_ok(csi_hashpipe_finish(p, &err), &err);
    cs_hasher_final(h, got);
    ck_assert_str_eq(got, want);
    cs_hasher_free(h);

    /* told of bytes the file does not hold: an error, not a digest of less */
    ck_assert_cs_ok(cs_hasher_new(&h, &err), &err);
    ck_assert_int_eq(ftruncate(fd, 1u << 20), 0);
    ck_assert_cs_ok(csi_hashpipe_start(&p, fd, path, h, 0, &err), &err);
    csi_hashpipe_advance(p, 4u << 20);
    ck_assert_int_eq(csi_hashpipe_finish(p, &err), CS_EIO);
    ck_assert_ptr_nonnull(strstr(err->message, "shorter"));
    cs_error_free(err);
    err = NULL;
    cs_hasher_free(h);

    /* canceled while it has work: ends at once, and the file stays the caller's */
    ck_assert_cs_ok(cs_hasher_new(&h, &err), &err);
    ck_assert_cs_ok(csi_hashpipe_start(&p, fd, path, h, 0, &err), &err);
    csi_hashpipe_advance(p, 1u << 20);
    csi_hashpipe_cancel(p);
    csi_hashpipe_cancel(NULL);
    cs_hasher_free(h);
    ck_assert_int_eq(close(fd), 0);
    free(d);
}
END_TEST

/* A large blob through the writer: committed when right; refused, restarted and then
 * committed when a byte was wrong; resumed with its prefix hashed before the pipe starts;
 * closed half-written with its pipe still running. */
START_TEST(test_writer_large)
{
    unsigned char *d = noise(BIG, 2);
    char want[CS_DIGEST_STRLEN], path[256];
    cs_store_writer *w = NULL;
    cs_error *err = NULL;
    struct stat st;

    digest_of(want, d, BIG);
    ck_assert_cs_ok(cs_store_writer_open(&w, store, want, BIG, &err), &err);
    d[BIG / 2] ^= 1;
    write_pieces(w, d, 0, BIG);
    ck_assert_int_eq(cs_store_writer_commit(w, &err), CS_EDIGEST);
    cs_error_free(err);
    err = NULL;
    ck_assert_uint_eq(cs_store_writer_offset(w), 0);
    d[BIG / 2] ^= 1;
    write_pieces(w, d, 0, BIG);
    ck_assert_cs_ok(cs_store_writer_commit(w, &err), &err);
    cs_store_writer_close(w);
    ck_assert(cs_store_has_blob(store, want, BIG));

    /* another blob: 4 MiB, stopped; resumed, then stopped again mid-way; then finished */
    d[0] ^= 0xff;
    digest_of(want, d, BIG);
    ck_assert_cs_ok(cs_store_writer_open(&w, store, want, BIG, &err), &err);
    write_pieces(w, d, 0, 4u << 20);
    cs_store_writer_close(w);
    ck_assert_cs_ok(cs_store_writer_open(&w, store, want, BIG, &err), &err);
    ck_assert_uint_eq(cs_store_writer_offset(w), 4u << 20);
    write_pieces(w, d, 4u << 20, 20u << 20);
    cs_store_writer_close(w);
    snprintf(path, sizeof(path), "%s/partial/%s", tmpdir, want + 7);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 20u << 20);
    ck_assert_cs_ok(cs_store_writer_open(&w, store, want, BIG, &err), &err);
    ck_assert_uint_eq(cs_store_writer_offset(w), 20u << 20);
    write_pieces(w, d, 20u << 20, BIG);
    ck_assert_cs_ok(cs_store_writer_verify(w, &err), &err);
    ck_assert_cs_ok(cs_store_writer_commit(w, &err), &err);
    cs_store_writer_close(w);
    ck_assert(cs_store_has_blob(store, want, BIG));
    free(d);
}
END_TEST

static Suite *
store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("blobs");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_layout_created);
    tcase_add_test(tc, test_put_and_read);
    tcase_add_test(tc, test_read_detects_corruption);
    tcase_add_test(tc, test_bad_digest_names_no_file);
    tcase_add_test(tc, test_writer_resume);
    tcase_add_test(tc, test_writer_mismatch_removes_partial);
    tcase_add_test(tc, test_writer_verify_then_commit);
    tcase_add_test(tc, test_writer_lock_between_processes);
    tcase_add_test(tc, test_set_ref_replaces);
    suite_add_tcase(s, tc);

    tc = tcase_create("large");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120); /* valgrind hashes ~140 MB here without SHA extensions */
    tcase_add_test(tc, test_hashpipe_direct);
    tcase_add_test(tc, test_writer_large);
    suite_add_tcase(s, tc);

    tc = tcase_create("admin");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_set_ref_records_last_use);
    tcase_add_test(tc, test_parse_time);
    tcase_add_test(tc, test_list_sizes);
    tcase_add_test(tc, test_verify_removes_corrupt);
    tcase_add_test(tc, test_gc_keeps_what_refs_need);
    tcase_add_test(tc, test_gc_older_than);
    tcase_add_test(tc, test_gc_max_size_lru);
    tcase_add_test(tc, test_gc_refuses_unreadable_manifest);
    tcase_add_test(tc, test_gc_waits_for_a_writer);
    tcase_add_test(tc, test_open_waits_for_gc);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(store_suite)
