/* Image sources for push (src/lib/source*.c): parsing SOURCE, docker-archive files in the
 * layouts Docker writes (<= 24 legacy, 25+ OCI blobs, containerd's compressed blobs), OCI
 * layouts, and what goes wrong with each. Archives and layouts are built here, byte by byte.
 *
 * With CS_TEST_DOCKER_HOST (unix://...) and CS_TEST_IMAGE set, the "daemon" case also loads
 * docker:$CS_TEST_IMAGE from that daemon twice (export, then the fast path) and checks every
 * blob; CS_TEST_IMAGE_ID (`docker image inspect -f {{.Id}}`) is compared when set.
 * tests/integration/test_source.sh starts a dockerd, builds the image and runs this. */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cachesync/buf.h>
#include <cachesync/daemon.h>
#include <cachesync/digest.h>
#include <cachesync/manifest.h>
#include <cachesync/source.h>
#include <cachesync/store.h>
#include "compress.h"
#include "cs_test.h"
#include "layermap.h"
#include "source_int.h"

static char tmpdir[64];
static char storedir[128];
static cs_store *store;

static void
setup(void)
{
    cs_error *err = NULL;

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cs-src-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(storedir, sizeof(storedir), "%s/store", tmpdir);
    ck_assert_cs_ok(cs_store_open(&store, storedir, &err), &err);
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

/* ---- building tars ------------------------------------------------------------------------ */

/* One ustar entry; LINK is the link target of type '1'/'2' entries. Names up to 99 bytes. */
static void
tar_entry(cs_buf *t, const char *name, char type, const char *link, const void *data, size_t len)
{
    unsigned char h[512] = {0};
    static const char zeros[512];
    unsigned sum = 0;
    size_t i;

    ck_assert_uint_lt(strlen(name), 100);
    memcpy(h, name, strlen(name));
    memcpy(h + 100, "0000644", 7);
    memcpy(h + 108, "0000000", 7);
    memcpy(h + 116, "0000000", 7);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)len);
    snprintf((char *)h + 136, 12, "%011llo", 1700000000ULL);
    memset(h + 148, ' ', 8);
    h[156] = (unsigned char)type;
    if (link != NULL) {
        ck_assert_uint_lt(strlen(link), 100);
        memcpy(h + 157, link, strlen(link));
    }
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    for (i = 0; i < sizeof(h); i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    ck_assert_int_eq(cs_buf_append(t, h, sizeof(h), NULL), 0);
    if (len > 0)
        ck_assert_int_eq(cs_buf_append(t, data, len, NULL), 0);
    if (len % 512 != 0)
        ck_assert_int_eq(cs_buf_append(t, zeros, 512 - len % 512, NULL), 0);
}

static void
tar_file(cs_buf *t, const char *name, const void *data, size_t len)
{
    tar_entry(t, name, '0', NULL, data, len);
}

static void
tar_str(cs_buf *t, const char *name, const char *s)
{
    tar_file(t, name, s, strlen(s));
}

static void
tar_end(cs_buf *t)
{
    static const char zeros[1024];

    ck_assert_int_eq(cs_buf_append(t, zeros, sizeof(zeros), NULL), 0);
}

static void
sha256(char out[CS_DIGEST_STRLEN], const void *data, size_t len)
{
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_digest_buffer(out, data, len, &err), &err);
}

static void
write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    ck_assert_msg(f != NULL, "cannot create %s", path);
    if (len > 0)
        ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static void
read_whole(cs_buf *out, const char *path)
{
    char chunk[65536];
    FILE *f = fopen(path, "rb");
    size_t n;

    ck_assert_msg(f != NULL, "cannot open %s", path);
    cs_buf_init(out, 0);
    for (;;) {
        n = fread(chunk, 1, sizeof(chunk), f);
        if (n == 0)
            break;
        ck_assert_int_eq(cs_buf_append(out, chunk, n, NULL), 0);
    }
    fclose(f);
}

static int
buf_sink(void *payload, const char *data, size_t len, cs_error **err)
{
    return cs_buf_append(payload, data, len, err);
}

/* Decompress (gzip, zstd or nothing) a whole buffer. */
static void
decompress(cs_buf *out, const cs_buf *in)
{
    csi_decompressor *d = NULL;
    cs_error *err = NULL;

    cs_buf_init(out, 0);
    ck_assert_cs_ok(csi_decompressor_new(&d, CSI_COMP_AUTO, UINT64_MAX, buf_sink, out, &err), &err);
    ck_assert_cs_ok(csi_decompressor_feed(d, in->ptr, in->len, &err), &err);
    ck_assert_cs_ok(csi_decompressor_finish(d, &err), &err);
    csi_decompressor_free(d);
}

static void
compress_buf(cs_buf *out, const cs_buf *in, csi_compression kind)
{
    csi_compressor *c = NULL;
    cs_error *err = NULL;

    cs_buf_init(out, 0);
    ck_assert_cs_ok(csi_compressor_new(&c, kind, 0, buf_sink, out, &err), &err);
    ck_assert_cs_ok(csi_compressor_feed(c, in->ptr, in->len, &err), &err);
    ck_assert_cs_ok(csi_compressor_finish(c, &err), &err);
    csi_compressor_free(c);
}

/* ---- a test image ------------------------------------------------------------------------- */

#define MAX_LAYERS 4

typedef struct test_image {
    cs_buf layers[MAX_LAYERS]; /* uncompressed layer tars */
    char diff_ids[MAX_LAYERS][CS_DIGEST_STRLEN];
    size_t nlayers;
    cs_buf config;
    char config_digest[CS_DIGEST_STRLEN];
} test_image;

/* A layer with one file NAME holding TEXT, repeated REPEAT times (for some bulk). */
static void
image_add_layer(test_image *img, const char *name, const char *text, size_t repeat)
{
    cs_buf content = CS_BUF_INIT, *l = &img->layers[img->nlayers];
    size_t i;

    ck_assert_uint_lt(img->nlayers, MAX_LAYERS);
    for (i = 0; i < repeat; i++)
        cs_buf_puts(&content, text, NULL);
    cs_buf_init(l, 0);
    tar_file(l, name, content.ptr ? content.ptr : "", content.len);
    tar_end(l);
    sha256(img->diff_ids[img->nlayers], l->ptr, l->len);
    img->nlayers++;
    cs_buf_dispose(&content);
}

/* The config, in the odd spacing and key order no serialiser would reproduce: only bytes kept
 * as they are give back the same digest. Carries an inline cache key like BuildKit's. */
static void
image_finish(test_image *img)
{
    size_t i;

    cs_buf_init(&img->config, 0);
    cs_buf_puts(&img->config, "{\"rootfs\": {\"type\":\"layers\",  \"diff_ids\":[", NULL);
    for (i = 0; i < img->nlayers; i++)
        cs_buf_printf(&img->config, NULL, "%s\"%s\"", i ? ", " : "", img->diff_ids[i]);
    cs_buf_puts(&img->config,
                "]},\n \"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"/x\"]},"
                "\"moby.buildkit.cache.v0\":\"W3sibGF5ZXJzIjpbXX1d\"}",
                NULL);
    sha256(img->config_digest, img->config.ptr, img->config.len);
}

static void
image_two_layers(test_image *img)
{
    memset(img, 0, sizeof(*img));
    image_add_layer(img, "base.txt", "the base layer of a test image\n", 2000);
    image_add_layer(img, "app.txt", "application bits\n", 3000);
    image_finish(img);
}

static void
image_dispose(test_image *img)
{
    size_t i;

    for (i = 0; i < img->nlayers; i++)
        cs_buf_dispose(&img->layers[i]);
    cs_buf_dispose(&img->config);
}

/* Legacy layer directory name for layer I: any hex will do (the loader never trusts it). */
static void
v1id(char *out, size_t size, size_t i)
{
    snprintf(out, size, "%064zx", 0xabc0 + i);
}

/* Docker <= 24: <v1id>/{VERSION,json,layer.tar}, <config hex>.json, manifest.json,
 * repositories. The layer files go into the tar in REVERSE order: the order comes from
 * manifest.json only. */
static void
archive_legacy(cs_buf *out, const test_image *img)
{
    cs_buf m = CS_BUF_INIT;
    char name[160], id[72];
    size_t i;

    cs_buf_init(out, 0);
    for (i = img->nlayers; i-- > 0;) {
        v1id(id, sizeof(id), i);
        snprintf(name, sizeof(name), "%s/", id);
        tar_entry(out, name, '5', NULL, NULL, 0);
        snprintf(name, sizeof(name), "%s/VERSION", id);
        tar_str(out, name, "1.0");
        snprintf(name, sizeof(name), "%s/json", id);
        tar_str(out, name, "{\"id\":\"legacy\"}");
        snprintf(name, sizeof(name), "%s/layer.tar", id);
        tar_file(out, name, img->layers[i].ptr, img->layers[i].len);
    }
    snprintf(name, sizeof(name), "%s.json", img->config_digest + 7);
    tar_file(out, name, img->config.ptr, img->config.len);
    cs_buf_printf(&m, NULL, "[{\"Config\":\"%s.json\",\"RepoTags\":[\"app:1\"],\"Layers\":[",
                  img->config_digest + 7);
    for (i = 0; i < img->nlayers; i++) {
        v1id(id, sizeof(id), i);
        cs_buf_printf(&m, NULL, "%s\"%s/layer.tar\"", i ? "," : "", id);
    }
    cs_buf_puts(&m, "]}]", NULL);
    tar_file(out, "manifest.json", m.ptr, m.len);
    tar_str(out, "repositories", "{\"app\":{\"1\":\"x\"}}");
    tar_end(out);
    cs_buf_dispose(&m);
}

/* Docker 25+: every file under blobs/sha256/ by its digest, an OCI index, and manifest.json
 * pointing at the blobs. With COMPRESS the layers are stored compressed (as the containerd
 * store exports registry blobs) and named by the compressed digest. */
static void
archive_blobs(cs_buf *out, const test_image *img, csi_compression compress)
{
    cs_buf m = CS_BUF_INIT, oci = CS_BUF_INIT, comp[MAX_LAYERS];
    char name[160], lname[160], dg[CS_DIGEST_STRLEN], lnames[MAX_LAYERS][CS_DIGEST_STRLEN];
    size_t i;

    cs_buf_init(out, 0);
    tar_entry(out, "blobs/", '5', NULL, NULL, 0);
    tar_entry(out, "blobs/sha256/", '5', NULL, NULL, 0);
    for (i = 0; i < img->nlayers; i++) {
        const cs_buf *b = &img->layers[i];

        if (compress != CSI_COMP_NONE) {
            compress_buf(&comp[i], b, compress);
            b = &comp[i];
        }
        sha256(lnames[i], b->ptr, b->len);
        snprintf(name, sizeof(name), "blobs/sha256/%s", lnames[i] + 7);
        tar_file(out, name, b->ptr, b->len);
        /* a legacy v1 config per layer, unreferenced */
        snprintf(name, sizeof(name), "{\"layer\":%zu}", i);
        sha256(dg, name, strlen(name));
        snprintf(lname, sizeof(lname), "blobs/sha256/%s", dg + 7);
        tar_str(out, lname, name);
        if (compress != CSI_COMP_NONE)
            cs_buf_dispose(&comp[i]);
    }
    snprintf(name, sizeof(name), "blobs/sha256/%s", img->config_digest + 7);
    tar_file(out, name, img->config.ptr, img->config.len);
    /* the OCI manifest Docker 25 writes beside it (unused by the loader) */
    cs_buf_printf(&oci, NULL,
                  "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
                  "\"digest\":\"%s\",\"size\":%zu},\"layers\":[]}",
                  CS_MEDIA_OCI_MANIFEST, CS_MEDIA_OCI_CONFIG, img->config_digest, img->config.len);
    sha256(dg, oci.ptr, oci.len);
    snprintf(name, sizeof(name), "blobs/sha256/%s", dg + 7);
    tar_file(out, name, oci.ptr, oci.len);
    tar_str(out, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
    cs_buf_printf(&m, NULL,
                  "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\","
                  "\"size\":%zu}]}",
                  CS_MEDIA_OCI_MANIFEST, dg, oci.len);
    tar_file(out, "index.json", m.ptr, m.len);
    cs_buf_clear(&m);
    cs_buf_printf(&m, NULL, "[{\"Config\":\"blobs/sha256/%s\",\"RepoTags\":null,\"Layers\":[",
                  img->config_digest + 7);
    for (i = 0; i < img->nlayers; i++)
        cs_buf_printf(&m, NULL, "%s\"blobs/sha256/%s\"", i ? "," : "", lnames[i] + 7);
    cs_buf_puts(&m, "]}]", NULL);
    tar_file(out, "manifest.json", m.ptr, m.len);
    tar_end(out);
    cs_buf_dispose(&m);
    cs_buf_dispose(&oci);
}

/* ---- loading and checking ----------------------------------------------------------------- */

static int
load_spec(cs_source_image **out, const char *spec, const char *compression, cs_error **err)
{
    cs_source_options opts = {0};
    cs_source src;
    int ret;

    ret = cs_source_parse(&src, spec, err);
    if (ret < 0)
        return ret;
    opts.compression = compression;
    ret = cs_source_load(out, &src, store, &opts, err);
    cs_source_dispose(&src);
    return ret;
}

static char archive_path[160];

static int
load_archive_buf(cs_source_image **out, const cs_buf *tar, const char *compression, cs_error **err)
{
    char spec[200];

    snprintf(archive_path, sizeof(archive_path), "%s/image.tar", tmpdir);
    write_file(archive_path, tar->ptr, tar->len);
    snprintf(spec, sizeof(spec), "archive:%s", archive_path);
    return load_spec(out, spec, compression, err);
}

/* The store's tmp/ holds nothing once a load is over, whatever its outcome. */
static void
assert_tmp_empty(void)
{
    char path[200];
    struct dirent *de;
    DIR *d;

    snprintf(path, sizeof(path), "%s/tmp", storedir);
    d = opendir(path);
    if (d == NULL)
        return;
    for (de = readdir(d); de != NULL; de = readdir(d))
        ck_assert_msg(de->d_name[0] == '.', "left behind in tmp/: %s", de->d_name);
    closedir(d);
}

/* Every blob of IMG is what it claims, the config is IMG's byte for byte, and each layer
 * decompresses to the original layer tar ORDER[i] (the manifest's order). */
static void
check_image(const cs_source_image *got, const test_image *img, const char *compression)
{
    bool zstd = compression != NULL && strcmp(compression, "zstd") == 0;
    cs_manifest *m = NULL;
    cs_error *err = NULL;
    cs_buf b, plain;
    char dg[CS_DIGEST_STRLEN];
    size_t i;

    ck_assert_cs_ok(cs_manifest_parse(&m, got->manifest, got->manifest_len, NULL, &err), &err);
    ck_assert_int_eq(m->kind, CS_MANIFEST_IMAGE);
    ck_assert_str_eq(got->manifest_media_type,
                     zstd ? CS_MEDIA_OCI_MANIFEST : CS_MEDIA_DOCKER_MANIFEST);
    ck_assert_str_eq(m->media_type, got->manifest_media_type);
    sha256(dg, got->manifest, got->manifest_len);
    ck_assert_str_eq(got->manifest_digest, dg);
    /* compact, with the keys in the order registries and docker write them */
    ck_assert_ptr_nonnull(strstr(got->manifest, "{\"schemaVersion\":2,\"mediaType\":\""));
    ck_assert_ptr_null(strchr(got->manifest, ' '));
    ck_assert_ptr_null(strchr(got->manifest, '\n'));

    ck_assert_str_eq(m->config.digest, img->config_digest);
    ck_assert_int_eq(m->config.size, (int64_t)img->config.len);
    ck_assert_str_eq(m->config.media_type, zstd ? CS_MEDIA_OCI_CONFIG : CS_MEDIA_DOCKER_CONFIG);
    ck_assert_str_eq(got->config.digest, img->config_digest);
    ck_assert_str_eq(got->config.media_type, m->config.media_type);
    read_whole(&b, got->config.path);
    ck_assert_uint_eq(b.len, img->config.len);
    ck_assert_int_eq(memcmp(b.ptr, img->config.ptr, b.len), 0);
    cs_buf_dispose(&b);

    ck_assert_uint_eq(got->nlayers, img->nlayers);
    ck_assert_uint_eq(m->nlayers, img->nlayers);
    for (i = 0; i < img->nlayers; i++) {
        const cs_source_blob *l = &got->layers[i];

        ck_assert_str_eq(l->media_type,
                         zstd ? CS_MEDIA_OCI_LAYER_ZSTD : CS_MEDIA_DOCKER_LAYER_GZIP);
        ck_assert_str_eq(m->layers[i].media_type, l->media_type);
        ck_assert_str_eq(m->layers[i].digest, l->digest);
        ck_assert_int_eq(m->layers[i].size, l->size);
        read_whole(&b, l->path);
        ck_assert_int_eq((int64_t)b.len, l->size);
        sha256(dg, b.ptr, b.len);
        ck_assert_str_eq(dg, l->digest);
        ck_assert_int_eq(csi_compress_sniff((const unsigned char *)b.ptr, b.len),
                         zstd ? CSI_COMP_ZSTD : CSI_COMP_GZIP);
        decompress(&plain, &b);
        ck_assert_uint_eq(plain.len, img->layers[i].len);
        ck_assert_int_eq(memcmp(plain.ptr, img->layers[i].ptr, plain.len), 0);
        cs_buf_dispose(&plain);
        cs_buf_dispose(&b);
    }
    cs_manifest_free(m);
    assert_tmp_empty();
}

/* RET (a call that set *ERRP) failed with CODE and a message holding NEEDLE; *ERRP is
 * freed and reset. */
static void
assert_fails(int ret, cs_error **errp, int code, const char *needle)
{
    cs_error *err = *errp;

    ck_assert_msg(ret == code, "expected %d, got %d (%s)", code, ret,
                  err ? err->message : "no message");
    ck_assert_ptr_nonnull(err);
    if (getenv("CS_TEST_VERBOSE") != NULL)
        fprintf(stderr, "# %d: %s\n", code, err->message);
    if (needle != NULL)
        ck_assert_msg(strstr(err->message, needle) != NULL, "\"%s\" not in: %s", needle,
                      err->message);
    cs_error_free(err);
    *errp = NULL;
    assert_tmp_empty();
}

/* ---- parse -------------------------------------------------------------------------------- */

START_TEST(test_parse)
{
    static const struct {
        const char *spec;
        int code;
        cs_source_kind kind;
        const char *name, *path, *tag;
    } cases[] = {
        {"app", 0, CS_SOURCE_DOCKER, "app", NULL, NULL},
        {"app:1.0", 0, CS_SOURCE_DOCKER, "app:1.0", NULL, NULL},
        {"127.0.0.1:5000/team/app:main", 0, CS_SOURCE_DOCKER, "127.0.0.1:5000/team/app:main", NULL,
         NULL},
        {"docker:app:1", 0, CS_SOURCE_DOCKER, "app:1", NULL, NULL},
        {"docker:sha256:0123abcd", 0, CS_SOURCE_DOCKER, "sha256:0123abcd", NULL, NULL},
        {"oci:/tmp/layout", 0, CS_SOURCE_OCI, NULL, "/tmp/layout", NULL},
        {"oci:/tmp/layout:v1", 0, CS_SOURCE_OCI, NULL, "/tmp/layout", "v1"},
        {"oci:rel/dir:latest", 0, CS_SOURCE_OCI, NULL, "rel/dir", "latest"},
        {"oci:/a:b/c", 0, CS_SOURCE_OCI, NULL, "/a:b/c", NULL},
        {"oci:/a:b/c:t", 0, CS_SOURCE_OCI, NULL, "/a:b/c", "t"},
        {"oci:/dir:", 0, CS_SOURCE_OCI, NULL, "/dir:", NULL},
        {"oci::tag", 0, CS_SOURCE_OCI, NULL, ":tag", NULL},
        {"archive:/tmp/x.tar", 0, CS_SOURCE_ARCHIVE, NULL, "/tmp/x.tar", NULL},
        {"archive:x:y.tar", 0, CS_SOURCE_ARCHIVE, NULL, "x:y.tar", NULL},
        {"", CS_EINVAL, 0, NULL, NULL, NULL},
        {"docker:", CS_EINVAL, 0, NULL, NULL, NULL},
        {"oci:", CS_EINVAL, 0, NULL, NULL, NULL},
        {"archive:", CS_EINVAL, 0, NULL, NULL, NULL},
    };
    cs_error *err = NULL;
    cs_source s;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int ret = cs_source_parse(&s, cases[i].spec, &err);

        ck_assert_msg(ret == cases[i].code, "%s: got %d", cases[i].spec, ret);
        if (ret < 0) {
            ck_assert_ptr_nonnull(err);
            cs_error_free(err);
            err = NULL;
            continue;
        }
        ck_assert_msg(s.kind == cases[i].kind, "%s: kind %d", cases[i].spec, (int)s.kind);
        if (cases[i].name)
            ck_assert_str_eq(s.name, cases[i].name);
        else
            ck_assert_ptr_null(s.name);
        if (cases[i].path)
            ck_assert_str_eq(s.path, cases[i].path);
        else
            ck_assert_ptr_null(s.path);
        if (cases[i].tag)
            ck_assert_str_eq(s.tag, cases[i].tag);
        else
            ck_assert_ptr_null(s.tag);
        cs_source_dispose(&s);
        cs_source_dispose(&s); /* twice is fine */
    }
    ck_assert_int_eq(cs_source_parse(&s, NULL, &err), CS_EINVAL);
    cs_error_free(err);
}
END_TEST

/* ---- archive: the legacy layout ----------------------------------------------------------- */

START_TEST(test_archive_legacy)
{
    cs_source_image *got = NULL, *again = NULL;
    cs_error *err = NULL;
    test_image img;
    cs_buf tar;

    image_two_layers(&img);
    archive_legacy(&tar, &img);
    ck_assert_cs_ok(load_archive_buf(&got, &tar, NULL, &err), &err);
    check_image(got, &img, "gzip");
    ck_assert(got->exported);
    ck_assert_uint_eq(got->layers_compressed, 2);
    ck_assert_uint_eq(got->layers_reused, 0);
    /* the config blob landed in the store, the manifest names exactly these bytes */
    ck_assert(cs_store_has_blob(store, img.config_digest, (int64_t)img.config.len));

    /* again: layers.json knows both layers, nothing is compressed, the same manifest */
    ck_assert_cs_ok(load_archive_buf(&again, &tar, "gzip", &err), &err);
    check_image(again, &img, "gzip");
    ck_assert_uint_eq(again->layers_reused, 2);
    ck_assert_uint_eq(again->layers_compressed, 0);
    ck_assert_str_eq(again->manifest_digest, got->manifest_digest);
    ck_assert_uint_eq(again->manifest_len, got->manifest_len);
    ck_assert_int_eq(memcmp(again->manifest, got->manifest, got->manifest_len), 0);
    cs_source_image_free(again);
    again = NULL;

    /* zstd is another blob per layer: compressed once, then reused */
    ck_assert_cs_ok(load_archive_buf(&again, &tar, "zstd", &err), &err);
    check_image(again, &img, "zstd");
    ck_assert_uint_eq(again->layers_compressed, 2);
    cs_source_image_free(again);
    ck_assert_cs_ok(load_archive_buf(&again, &tar, "zstd", &err), &err);
    ck_assert_uint_eq(again->layers_reused, 2);
    ck_assert_uint_eq(again->layers_compressed, 0);
    cs_source_image_free(again);

    cs_source_image_free(got);
    cs_source_image_free(NULL);
    cs_buf_dispose(&tar);
    image_dispose(&img);
}
END_TEST

/* A layer known to layers.json whose blob left the store is compressed again. */
START_TEST(test_archive_reuse_needs_blob)
{
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    test_image img;
    cs_buf tar;

    image_two_layers(&img);
    archive_legacy(&tar, &img);
    ck_assert_cs_ok(load_archive_buf(&got, &tar, NULL, &err), &err);
    ck_assert_int_eq(unlink(got->layers[1].path), 0);
    cs_source_image_free(got);
    ck_assert_cs_ok(load_archive_buf(&got, &tar, NULL, &err), &err);
    check_image(got, &img, "gzip");
    ck_assert_uint_eq(got->layers_reused, 1);
    ck_assert_uint_eq(got->layers_compressed, 1);
    cs_source_image_free(got);
    cs_buf_dispose(&tar);
    image_dispose(&img);
}
END_TEST

/* What the progress callback saw. */
typedef struct progress_log {
    pthread_t loader; /* the thread that called cs_source_load */
    int foreign;      /* calls from any other thread */
    int starts, ends; /* "compress" reports with DONE 0, and with DONE == TOTAL */
} progress_log;

static void
log_progress(void *payload, const char *what, uint64_t done, uint64_t total)
{
    progress_log *pl = payload;

    if (!pthread_equal(pthread_self(), pl->loader))
        pl->foreign++;
    if (strncmp(what, "compress ", 9) != 0)
        return;
    pl->starts += done == 0;
    pl->ends += done == total;
}

/* Layers compress in threads, while the stream goes on: whatever their number, the very same
 * blobs; every progress report comes from the loading thread, each layer's first and last
 * exactly once; a compression that fails fails the load and leaves nothing behind. */
START_TEST(test_archive_parallel)
{
    static const int jobs[] = {1, 2, 4, 0, -1};
    cs_source_image *got = NULL;
    cs_source_options opts = {0};
    char spec[200], first[CS_DIGEST_STRLEN] = "";
    cs_error *err = NULL;
    progress_log pl;
    test_image img;
    cs_source src;
    cs_buf tar;
    size_t i, k;

    /* over a progress step (4 MiB) each, and each compressing at its own pace */
    memset(&img, 0, sizeof(img));
    image_add_layer(&img, "a.txt", "layer a: some text that repeats, and repeats\n", 100000);
    image_add_layer(&img, "b.txt", "b\n", 2300000);
    image_add_layer(&img, "c.txt", "layer c holds other text, at another pace, c c c\n", 90000);
    image_add_layer(&img, "d.txt", "dddd dd d\n", 480000);
    image_finish(&img);
    archive_legacy(&tar, &img);
    snprintf(archive_path, sizeof(archive_path), "%s/image.tar", tmpdir);
    write_file(archive_path, tar.ptr, tar.len);
    snprintf(spec, sizeof(spec), "archive:%s", archive_path);
    ck_assert_cs_ok(cs_source_parse(&src, spec, &err), &err);
    opts.progress = log_progress;
    opts.progress_payload = &pl;
    for (k = 0; k < sizeof(jobs) / sizeof(jobs[0]); k++) {
        memset(&pl, 0, sizeof(pl));
        pl.loader = pthread_self();
        opts.jobs = jobs[k];
        ck_assert_cs_ok(cs_source_load(&got, &src, store, &opts, &err), &err);
        check_image(got, &img, "gzip");
        ck_assert_uint_eq(got->layers_compressed, img.nlayers);
        ck_assert_int_eq(pl.foreign, 0);
        ck_assert_int_eq(pl.starts, (int)img.nlayers);
        ck_assert_int_eq(pl.ends, (int)img.nlayers);
        if (k == 0)
            memcpy(first, got->manifest_digest, sizeof(first));
        ck_assert_str_eq(got->manifest_digest, first);
        /* forget the blobs: the next load compresses every layer again */
        for (i = 0; i < got->nlayers; i++)
            ck_assert_int_eq(unlink(got->layers[i].path), 0);
        cs_source_image_free(got);
        got = NULL;
    }

    /* a level gzip refuses: the threads fail, the first error is the load's */
    opts.jobs = 2;
    opts.level = 99;
    assert_fails(cs_source_load(&got, &src, store, &opts, &err), &err, CS_EINVAL, "gzip level 99");
    ck_assert_ptr_null(got);

    cs_source_dispose(&src);
    cs_buf_dispose(&tar);
    image_dispose(&img);
}
END_TEST

/* `docker save | gzip` is an archive too. */
START_TEST(test_archive_compressed_file)
{
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    test_image img;
    cs_buf tar, gz;

    image_two_layers(&img);
    archive_legacy(&tar, &img);
    compress_buf(&gz, &tar, CSI_COMP_GZIP);
    ck_assert_cs_ok(load_archive_buf(&got, &gz, NULL, &err), &err);
    check_image(got, &img, "gzip");
    cs_source_image_free(got);
    cs_buf_dispose(&gz);
    cs_buf_dispose(&tar);
    image_dispose(&img);
}
END_TEST

/* Through a pipe, written in small uneven pieces: every entry boundary falls somewhere else in
 * the chunks the loader sees. */
START_TEST(test_archive_pipe)
{
    static const size_t sizes[] = {1, 7, 300, 511, 512, 513, 1000, 3, 4096, 12345};
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    char path[200], spec[220];
    test_image img;
    cs_buf tar;
    pid_t pid;
    int status;

    image_two_layers(&img);
    archive_blobs(&tar, &img, CSI_COMP_NONE);
    snprintf(path, sizeof(path), "%s/pipe", tmpdir);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(path, O_WRONLY);
        size_t off = 0, i = 0;

        while (fd >= 0 && off < tar.len) {
            size_t n = sizes[i++ % (sizeof(sizes) / sizeof(sizes[0]))];
            ssize_t w;

            n = n < tar.len - off ? n : tar.len - off;
            w = write(fd, tar.ptr + off, n);
            if (w <= 0)
                _exit(1);
            off += (size_t)w;
            usleep(100);
        }
        _exit(fd >= 0 ? 0 : 1);
    }
    snprintf(spec, sizeof(spec), "archive:%s", path);
    ck_assert_cs_ok(load_spec(&got, spec, NULL, &err), &err);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    check_image(got, &img, "gzip");
    cs_source_image_free(got);
    cs_buf_dispose(&tar);
    image_dispose(&img);
}
END_TEST

/* ---- archive: the Docker 25+ and containerd layouts ----------------------------------------- */

START_TEST(test_archive_blobs_layout)
{
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    test_image img;
    cs_buf tar;

    image_two_layers(&img);
    archive_blobs(&tar, &img, CSI_COMP_NONE);
    ck_assert_cs_ok(load_archive_buf(&got, &tar, NULL, &err), &err);
    check_image(got, &img, "gzip");
    ck_assert_uint_eq(got->layers_compressed, 2);
    cs_source_image_free(got);
    /* named by their diff_ids, known layers are only hashed on the second pass */
    ck_assert_cs_ok(load_archive_buf(&got, &tar, NULL, &err), &err);
    check_image(got, &img, "gzip");
    ck_assert_uint_eq(got->layers_reused, 2);
    ck_assert_uint_eq(got->layers_compressed, 0);
    cs_source_image_free(got);
    cs_buf_dispose(&tar);
    image_dispose(&img);
}
END_TEST

/* The containerd store exports the registry's gzip blobs: pushed as they are (the digest the
 * registry already knows), or recompressed for zstd. */
START_TEST(test_archive_compressed_layers)
{
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    char dg[CS_DIGEST_STRLEN];
    cs_buf tar, gz;
    test_image img;
    size_t i;

    image_two_layers(&img);
    archive_blobs(&tar, &img, CSI_COMP_GZIP);
    ck_assert_cs_ok(load_archive_buf(&got, &tar, "gzip", &err), &err);
    check_image(got, &img, "gzip");
    ck_assert_uint_eq(got->layers_compressed, 0);
    ck_assert_uint_eq(got->layers_reused, 0);
    for (i = 0; i < img.nlayers; i++) {
        compress_buf(&gz, &img.layers[i], CSI_COMP_GZIP);
        sha256(dg, gz.ptr, gz.len);
        ck_assert_str_eq(got->layers[i].digest, dg);
        cs_buf_dispose(&gz);
    }
    cs_source_image_free(got);
    ck_assert_cs_ok(load_archive_buf(&got, &tar, "zstd", &err), &err);
    check_image(got, &img, "zstd");
    ck_assert_uint_eq(got->layers_compressed, 2);
    cs_source_image_free(got);
    cs_buf_dispose(&tar);
    image_dispose(&img);

    /* zstd blobs exported, zstd wanted: as they are */
    image_two_layers(&img);
    archive_blobs(&tar, &img, CSI_COMP_ZSTD);
    ck_assert_cs_ok(load_archive_buf(&got, &tar, "zstd", &err), &err);
    check_image(got, &img, "zstd");
    ck_assert_uint_eq(got->layers_compressed, 0);
    cs_source_image_free(got);
    cs_buf_dispose(&tar);
    image_dispose(&img);
}
END_TEST

/* The same layer twice: docker save <= 24 writes the second as a symlink to the first. */
START_TEST(test_archive_symlinked_layer)
{
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    cs_buf tar = CS_BUF_INIT, m = CS_BUF_INIT;
    char name[160], a[72], b[72], link[160];
    test_image img;

    memset(&img, 0, sizeof(img));
    image_add_layer(&img, "same.txt", "twice\n", 100);
    image_add_layer(&img, "same.txt", "twice\n", 100);
    image_finish(&img);
    ck_assert_str_eq(img.diff_ids[0], img.diff_ids[1]);
    v1id(a, sizeof(a), 0);
    v1id(b, sizeof(b), 1);
    tar_entry(&tar, "./", '5', NULL, NULL, 0); /* as `tar -C dir -cf x .` writes */
    snprintf(name, sizeof(name), "%s/layer.tar", a);
    tar_file(&tar, name, img.layers[0].ptr, img.layers[0].len);
    snprintf(name, sizeof(name), "%s/layer.tar", b);
    snprintf(link, sizeof(link), "../%s/layer.tar", a);
    tar_entry(&tar, name, '2', link, NULL, 0);
    snprintf(name, sizeof(name), "%s.json", img.config_digest + 7);
    tar_file(&tar, name, img.config.ptr, img.config.len);
    cs_buf_printf(&m, NULL,
                  "[{\"Config\":\"%s.json\",\"RepoTags\":[],\"Layers\":[\"%s/layer.tar\","
                  "\"./%s/layer.tar\"]}]",
                  img.config_digest + 7, a, b);
    tar_file(&tar, "manifest.json", m.ptr, m.len);
    tar_end(&tar);
    ck_assert_cs_ok(load_archive_buf(&got, &tar, NULL, &err), &err);
    check_image(got, &img, "gzip");
    ck_assert_str_eq(got->layers[0].digest, got->layers[1].digest);
    cs_source_image_free(got);
    cs_buf_dispose(&tar);
    cs_buf_dispose(&m);
    image_dispose(&img);
}
END_TEST

/* ---- archive: what must fail -------------------------------------------------------------- */

START_TEST(test_archive_wrong_diff_id)
{
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    test_image img, other;
    cs_buf tar;

    /* the config promises another second layer than the archive holds */
    image_two_layers(&img);
    memset(&other, 0, sizeof(other));
    image_add_layer(&other, "base.txt", "the base layer of a test image\n", 2000);
    image_add_layer(&other, "app.txt", "a different application\n", 10);
    image_finish(&other);
    cs_buf_dispose(&img.config);
    img.config = other.config;
    memcpy(img.config_digest, other.config_digest, sizeof(img.config_digest));
    memset(&other.config, 0, sizeof(other.config));
    archive_legacy(&tar, &img);
    assert_fails(load_archive_buf(&got, &tar, NULL, &err), &err, CS_EDIGEST, "layer 1");
    ck_assert_ptr_null(got);
    cs_buf_dispose(&tar);
    image_dispose(&other);
    image_dispose(&img);
}
END_TEST

START_TEST(test_archive_layer_count)
{
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    test_image img;
    cs_buf tar;

    image_two_layers(&img);
    /* a config with one diff_id for an archive of two layers */
    img.nlayers = 1;
    cs_buf_dispose(&img.config);
    image_finish(&img);
    img.nlayers = 2;
    archive_legacy(&tar, &img);
    assert_fails(load_archive_buf(&got, &tar, NULL, &err), &err, CS_EDIGEST, "2 layers");
    cs_buf_dispose(&tar);
    image_dispose(&img);
}
END_TEST

START_TEST(test_archive_unsafe_paths)
{
    static const char *const names[] = {"../escape", "/etc/cron.d/x", "a/../../b", "a//b"};
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    test_image img;
    cs_buf tar, bad;
    size_t i;

    image_two_layers(&img);
    archive_legacy(&tar, &img);
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        cs_buf_init(&bad, 0);
        tar_str(&bad, names[i], "x");
        cs_buf_append(&bad, tar.ptr, tar.len, NULL);
        assert_fails(load_archive_buf(&got, &bad, NULL, &err), &err, CS_EPROTO, "unsafe path");
        cs_buf_dispose(&bad);
    }
    cs_buf_dispose(&tar);
    image_dispose(&img);
}
END_TEST

/* manifest.json naming a layer through a link that leaves the archive, or to nothing. */
START_TEST(test_archive_bad_links)
{
    static const char *const targets[] = {"../../etc/passwd", "/etc/passwd", "missing.tar"};
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    cs_buf tar = CS_BUF_INIT, m = CS_BUF_INIT;
    char name[160];
    test_image img;
    size_t i;

    memset(&img, 0, sizeof(img));
    image_add_layer(&img, "f", "x", 1);
    image_finish(&img);
    for (i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        cs_buf_init(&tar, 0);
        cs_buf_init(&m, 0);
        tar_entry(&tar, "l/layer.tar", '2', targets[i], NULL, 0);
        snprintf(name, sizeof(name), "%s.json", img.config_digest + 7);
        tar_file(&tar, name, img.config.ptr, img.config.len);
        cs_buf_printf(&m, NULL, "[{\"Config\":\"%s.json\",\"Layers\":[\"l/layer.tar\"]}]",
                      img.config_digest + 7);
        tar_file(&tar, "manifest.json", m.ptr, m.len);
        tar_end(&tar);
        assert_fails(load_archive_buf(&got, &tar, NULL, &err), &err, CS_EPROTO, "does not hold");
        cs_buf_dispose(&tar);
        cs_buf_dispose(&m);
    }
    image_dispose(&img);
}
END_TEST

START_TEST(test_archive_truncated)
{
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    test_image img;
    cs_buf tar;
    size_t full;

    image_two_layers(&img);
    archive_legacy(&tar, &img);
    full = tar.len;
    /* cut inside a layer's data, at a block boundary, and without the end marker */
    tar.len = 3000;
    assert_fails(load_archive_buf(&got, &tar, NULL, &err), &err, CS_EPROTO, "truncated");
    tar.len = 2048;
    assert_fails(load_archive_buf(&got, &tar, NULL, &err), &err, CS_EPROTO, NULL);
    tar.len = full - 1024;
    assert_fails(load_archive_buf(&got, &tar, NULL, &err), &err, CS_EPROTO,
                 "end-of-archive marker");
    /* what a failed export looks like: the daemon's JSON error after a partial tar */
    tar.len = 5000;
    cs_buf_puts(&tar,
                "{\"errorDetail\":{\"message\":\"open /var/lib/docker/overlay2/x: no such file "
                "or directory\"},\"error\":\"open /var/lib/docker/overlay2/x: no such file or "
                "directory\"}\r\n",
                NULL);
    assert_fails(load_archive_buf(&got, &tar, NULL, &err), &err, CS_EPROTO,
                 "holds a failed export: open /var/lib/docker/overlay2/x");
    /* the same at an entry boundary, where it reads as a bad header block */
    tar.len = 512 * 3;
    {
        char big[1200];

        memset(big, 'x', sizeof(big));
        big[sizeof(big) - 1] = '\0';
        cs_buf_printf(&tar, NULL, "{\"error\":\"export failed: %s\"}\n", big);
    }
    assert_fails(load_archive_buf(&got, &tar, NULL, &err), &err, CS_EPROTO, "export failed: xxx");
    cs_buf_dispose(&tar);
    image_dispose(&img);

    /* an error-shaped object inside a layer is data, not the daemon's word */
    {
        const char *decoy;

        memset(&img, 0, sizeof(img));
        image_add_layer(&img, "log.json", "{\"error\":\"decoy\"} and then some text\n", 50);
        image_finish(&img);
        archive_legacy(&tar, &img);
        decoy = memmem(tar.ptr, tar.len, "{\"error\":\"decoy\"}", 17);
        ck_assert_ptr_nonnull(decoy);
        tar.len = (size_t)(decoy - tar.ptr) + 17 + 3;
        assert_fails(load_archive_buf(&got, &tar, NULL, &err), &err, CS_EPROTO, "truncated");
        cs_buf_dispose(&tar);
        image_dispose(&img);
    }
}
END_TEST

START_TEST(test_archive_not_docker_save)
{
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    cs_buf tar = CS_BUF_INIT;
    char path[200];

    tar_str(&tar, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
    tar_str(&tar, "index.json", "{\"schemaVersion\":2,\"manifests\":[]}");
    tar_end(&tar);
    assert_fails(load_archive_buf(&got, &tar, NULL, &err), &err, CS_EPROTO, "no manifest.json");
    cs_buf_clear(&tar);
    cs_buf_puts(&tar, "this is not a tar file at all", NULL);
    assert_fails(load_archive_buf(&got, &tar, NULL, &err), &err, CS_EPROTO, NULL);
    snprintf(path, sizeof(path), "archive:%s/none.tar", tmpdir);
    assert_fails(load_spec(&got, path, NULL, &err), &err, CS_ENOTFOUND, "none.tar");
    assert_fails(load_spec(&got, "archive:/tmp", "gzip", &err), &err, CS_EINVAL, "directory");
    assert_fails(load_spec(&got, "archive:/x.tar", "xz", &err), &err, CS_EINVAL, "xz");
    cs_buf_dispose(&tar);
}
END_TEST

START_TEST(test_archive_two_images)
{
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    test_image img;
    cs_buf tar = CS_BUF_INIT, m = CS_BUF_INIT;
    char name[160];

    memset(&img, 0, sizeof(img));
    image_add_layer(&img, "f", "x", 1);
    image_finish(&img);
    tar_file(&tar, "l/layer.tar", img.layers[0].ptr, img.layers[0].len);
    snprintf(name, sizeof(name), "%s.json", img.config_digest + 7);
    tar_file(&tar, name, img.config.ptr, img.config.len);
    cs_buf_printf(&m, NULL,
                  "[{\"Config\":\"%s.json\",\"RepoTags\":[\"a:1\"],\"Layers\":[\"l/layer.tar\"]},"
                  "{\"Config\":\"%s.json\",\"RepoTags\":[\"b:2\"],\"Layers\":[\"l/layer.tar\"]}]",
                  img.config_digest + 7, img.config_digest + 7);
    tar_file(&tar, "manifest.json", m.ptr, m.len);
    tar_end(&tar);
    assert_fails(load_archive_buf(&got, &tar, NULL, &err), &err, CS_EINVAL, "a:1, b:2");
    cs_buf_dispose(&tar);
    cs_buf_dispose(&m);
    image_dispose(&img);
}
END_TEST

/* ---- oci ---------------------------------------------------------------------------------- */

static char layout[160];

static void
layout_blob(char out[CS_DIGEST_STRLEN], const void *data, size_t len)
{
    char path[300];

    sha256(out, data, len);
    snprintf(path, sizeof(path), "%s/blobs/sha256/%s", layout, out + 7);
    write_file(path, data, len);
}

/* An image manifest for IMG with gzip layers, its blobs written; the manifest's bytes into M. */
static void
layout_image(cs_buf *m, char digest[CS_DIGEST_STRLEN], const test_image *img)
{
    char dg[CS_DIGEST_STRLEN];
    cs_buf gz;
    size_t i;

    layout_blob(dg, img->config.ptr, img->config.len);
    cs_buf_init(m, 0);
    cs_buf_printf(m, NULL,
                  "{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"%s\",\n  \"config\": "
                  "{\"mediaType\": \"%s\", \"digest\": \"%s\", \"size\": %zu},\n  \"layers\": [",
                  CS_MEDIA_OCI_MANIFEST, CS_MEDIA_OCI_CONFIG, dg, img->config.len);
    for (i = 0; i < img->nlayers; i++) {
        compress_buf(&gz, &img->layers[i], CSI_COMP_GZIP);
        layout_blob(dg, gz.ptr, gz.len);
        cs_buf_printf(m, NULL, "%s{\"mediaType\": \"%s\", \"digest\": \"%s\", \"size\": %zu}",
                      i ? ", " : "", CS_MEDIA_OCI_LAYER_GZIP, dg, gz.len);
        cs_buf_dispose(&gz);
    }
    cs_buf_puts(m, "]\n}\n", NULL);
    layout_blob(digest, m->ptr, m->len);
}

static void
layout_init(void)
{
    char path[300];

    snprintf(layout, sizeof(layout), "%s/layout", tmpdir);
    snprintf(path, sizeof(path), "%s/blobs/sha256", layout);
    {
        char cmd[400];

        snprintf(cmd, sizeof(cmd), "mkdir -p %s", path);
        ck_assert_int_eq(system(cmd), 0);
    }
    snprintf(path, sizeof(path), "%s/oci-layout", layout);
    write_file(path, "{\"imageLayoutVersion\":\"1.0.0\"}", 30);
}

static void
layout_index(const char *json)
{
    char path[300];

    snprintf(path, sizeof(path), "%s/index.json", layout);
    write_file(path, json, strlen(json));
}

static void
check_oci_image(const cs_source_image *got, const cs_buf *m, const char *digest,
                const test_image *img)
{
    char path[300];
    size_t i;

    ck_assert_uint_eq(got->manifest_len, m->len);
    ck_assert_int_eq(memcmp(got->manifest, m->ptr, m->len), 0);
    ck_assert_str_eq(got->manifest_digest, digest);
    ck_assert_str_eq(got->manifest_media_type, CS_MEDIA_OCI_MANIFEST);
    ck_assert_str_eq(got->config.digest, img->config_digest);
    ck_assert_str_eq(got->config.media_type, CS_MEDIA_OCI_CONFIG);
    ck_assert_int_eq(got->config.size, (int64_t)img->config.len);
    snprintf(path, sizeof(path), "%s/blobs/sha256/%s", layout, img->config_digest + 7);
    ck_assert_str_eq(got->config.path, path);
    ck_assert_uint_eq(got->nlayers, img->nlayers);
    for (i = 0; i < got->nlayers; i++) {
        snprintf(path, sizeof(path), "%s/blobs/sha256/%s", layout, got->layers[i].digest + 7);
        ck_assert_str_eq(got->layers[i].path, path);
        ck_assert_str_eq(got->layers[i].media_type, CS_MEDIA_OCI_LAYER_GZIP);
    }
    ck_assert(!got->exported);
    ck_assert_uint_eq(got->layers_compressed, 0);
}

START_TEST(test_oci_tags)
{
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    char d1[CS_DIGEST_STRLEN], d2[CS_DIGEST_STRLEN], spec[300];
    test_image a, b;
    cs_buf m1, m2, idx = CS_BUF_INIT;

    layout_init();
    image_two_layers(&a);
    memset(&b, 0, sizeof(b));
    image_add_layer(&b, "other", "other image\n", 5);
    image_finish(&b);
    layout_image(&m1, d1, &a);
    layout_image(&m2, d2, &b);
    cs_buf_printf(&idx, NULL,
                  "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\","
                  "\"size\":%zu,\"annotations\":{\"org.opencontainers.image.ref.name\":\"v1\"}},"
                  "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,\"annotations\":{"
                  "\"org.opencontainers.image.ref.name\":\"v2\",\"io.containerd.image.name\":"
                  "\"reg.example/app:v2\"}}]}",
                  CS_MEDIA_OCI_MANIFEST, d1, m1.len, CS_MEDIA_OCI_MANIFEST, d2, m2.len);
    layout_index(idx.ptr);

    snprintf(spec, sizeof(spec), "oci:%s:v1", layout);
    ck_assert_cs_ok(load_spec(&got, spec, NULL, &err), &err);
    check_oci_image(got, &m1, d1, &a);
    cs_source_image_free(got);
    snprintf(spec, sizeof(spec), "oci:%s:v2", layout);
    ck_assert_cs_ok(load_spec(&got, spec, "zstd", &err), &err); /* pushed as it is */
    check_oci_image(got, &m2, d2, &b);
    cs_source_image_free(got);
    /* the full name works too */
    {
        cs_source src = {CS_SOURCE_OCI, NULL, layout, (char *)"reg.example/app:v2"};

        ck_assert_cs_ok(cs_source_load(&got, &src, store, NULL, &err), &err);
        ck_assert_str_eq(got->manifest_digest, d2);
        cs_source_image_free(got);
    }
    snprintf(spec, sizeof(spec), "oci:%s", layout);
    assert_fails(load_spec(&got, spec, NULL, &err), &err, CS_EINVAL, "v1, v2");
    snprintf(spec, sizeof(spec), "oci:%s:v3", layout);
    assert_fails(load_spec(&got, spec, NULL, &err), &err, CS_ENOTFOUND, "v1, v2");
    snprintf(spec, sizeof(spec), "oci:%s/nothing-here", tmpdir);
    assert_fails(load_spec(&got, spec, NULL, &err), &err, CS_ENOTFOUND, NULL);

    /* one image, no tag needed */
    cs_buf_clear(&idx);
    cs_buf_printf(&idx, NULL,
                  "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\","
                  "\"size\":%zu}]}",
                  CS_MEDIA_OCI_MANIFEST, d1, m1.len);
    layout_index(idx.ptr);
    snprintf(spec, sizeof(spec), "oci:%s", layout);
    ck_assert_cs_ok(load_spec(&got, spec, NULL, &err), &err);
    check_oci_image(got, &m1, d1, &a);
    cs_source_image_free(got);

    cs_buf_dispose(&idx);
    cs_buf_dispose(&m1);
    cs_buf_dispose(&m2);
    image_dispose(&a);
    image_dispose(&b);
}
END_TEST

START_TEST(test_oci_platform_index)
{
    cs_source_image *got = NULL;
    cs_source_options opts = {0};
    cs_platform arm = {0};
    cs_error *err = NULL;
    char d1[CS_DIGEST_STRLEN], d2[CS_DIGEST_STRLEN], di[CS_DIGEST_STRLEN];
    test_image a, b;
    cs_buf m1, m2, index = CS_BUF_INIT, idx = CS_BUF_INIT;
    cs_source src = {CS_SOURCE_OCI, NULL, NULL, (char *)"multi"};

    layout_init();
    image_two_layers(&a);
    memset(&b, 0, sizeof(b));
    image_add_layer(&b, "arm", "arm64 bits\n", 5);
    image_finish(&b);
    layout_image(&m1, d1, &a);
    layout_image(&m2, d2, &b);
    cs_buf_printf(&index, NULL,
                  "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":["
                  "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,\"platform\":"
                  "{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
                  "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,\"platform\":"
                  "{\"os\":\"linux\",\"architecture\":\"arm64\"}}]}",
                  CS_MEDIA_OCI_INDEX, CS_MEDIA_OCI_MANIFEST, d1, m1.len, CS_MEDIA_OCI_MANIFEST, d2,
                  m2.len);
    layout_blob(di, index.ptr, index.len);
    cs_buf_printf(&idx, NULL,
                  "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\","
                  "\"size\":%zu,\"annotations\":{\"org.opencontainers.image.ref.name\":"
                  "\"multi\"}}]}",
                  CS_MEDIA_OCI_INDEX, di, index.len);
    layout_index(idx.ptr);
    src.path = layout;
    ck_assert_cs_ok(cs_platform_parse(&arm, "linux/arm64", &err), &err);
    opts.platform = &arm;
    ck_assert_cs_ok(cs_source_load(&got, &src, store, &opts, &err), &err);
    check_oci_image(got, &m2, d2, &b);
    cs_source_image_free(got);
    cs_platform_dispose(&arm);
    ck_assert_cs_ok(cs_platform_parse(&arm, "linux/s390x", &err), &err);
    assert_fails(cs_source_load(&got, &src, store, &opts, &err), &err, CS_ENOTFOUND, "arm64");
    cs_platform_dispose(&arm);
    cs_buf_dispose(&index);
    cs_buf_dispose(&idx);
    cs_buf_dispose(&m1);
    cs_buf_dispose(&m2);
    image_dispose(&a);
    image_dispose(&b);
}
END_TEST

START_TEST(test_oci_broken)
{
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    char d1[CS_DIGEST_STRLEN], path[300], spec[300], target[300], outside[300];
    test_image a;
    cs_buf m1, idx = CS_BUF_INIT;
    cs_manifest *pm = NULL;

    layout_init();
    image_two_layers(&a);
    layout_image(&m1, d1, &a);
    cs_buf_printf(&idx, NULL,
                  "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\","
                  "\"size\":%zu}]}",
                  CS_MEDIA_OCI_MANIFEST, d1, m1.len);
    layout_index(idx.ptr);
    snprintf(spec, sizeof(spec), "oci:%s", layout);
    ck_assert_cs_ok(cs_manifest_parse(&pm, m1.ptr, m1.len, NULL, &err), &err);

    /* a layer blob that is a symlink out of the layout */
    snprintf(path, sizeof(path), "%s/blobs/sha256/%s", layout, pm->layers[0].digest + 7);
    snprintf(outside, sizeof(outside), "%s/outside", tmpdir);
    ck_assert_int_eq(rename(path, outside), 0);
    ck_assert_int_eq(symlink(outside, path), 0);
    assert_fails(load_spec(&got, spec, NULL, &err), &err, CS_EINVAL, "link out of");
    /* a symlink that stays inside is fine */
    ck_assert_int_eq(unlink(path), 0);
    snprintf(target, sizeof(target), "%s/blobs/real-layer", layout);
    ck_assert_int_eq(rename(outside, target), 0);
    ck_assert_int_eq(symlink("../real-layer", path), 0);
    ck_assert_cs_ok(load_spec(&got, spec, NULL, &err), &err);
    cs_source_image_free(got);
    got = NULL;
    /* a missing layer */
    unlink(path);
    assert_fails(load_spec(&got, spec, NULL, &err), &err, CS_ENOTFOUND, pm->layers[0].digest);
    /* a layer of the wrong size */
    write_file(path, "short", 5);
    assert_fails(load_spec(&got, spec, NULL, &err), &err, CS_EDIGEST, "5 bytes");
    /* a config whose bytes do not match its digest */
    snprintf(path, sizeof(path), "%s/blobs/sha256/%s", layout, a.config_digest + 7);
    write_file(path, a.config.ptr, a.config.len);
    ((char *)a.config.ptr)[3] ^= 1;
    write_file(path, a.config.ptr, a.config.len);
    assert_fails(load_spec(&got, spec, NULL, &err), &err, CS_EDIGEST, NULL);
    /* a manifest whose bytes do not match the index's digest */
    snprintf(path, sizeof(path), "%s/blobs/sha256/%s", layout, d1 + 7);
    m1.ptr[0] = ' ';
    write_file(path, m1.ptr, m1.len);
    assert_fails(load_spec(&got, spec, NULL, &err), &err, CS_EDIGEST, NULL);
    /* an index.json that is not JSON, or names a digest that could escape */
    layout_index("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"x\",\"digest\":"
                 "\"sha256:../../../../etc/passwd\",\"size\":5}]}");
    assert_fails(load_spec(&got, spec, NULL, &err), &err, CS_EPROTO, NULL);
    layout_index("not json");
    assert_fails(load_spec(&got, spec, NULL, &err), &err, CS_EPROTO, NULL);
    layout_index("{\"schemaVersion\":2,\"manifests\":[]}");
    assert_fails(load_spec(&got, spec, NULL, &err), &err, CS_ENOTFOUND, "no image");

    cs_manifest_free(pm);
    cs_buf_dispose(&idx);
    cs_buf_dispose(&m1);
    image_dispose(&a);
}
END_TEST

/* ---- a real daemon ------------------------------------------------------------------------- */

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Each layer blob decompresses to the diff_id the config names. */
static void
check_daemon_layers(const cs_source_image *got, const char *compression)
{
    cs_image_config *cfg = NULL;
    cs_error *err = NULL;
    cs_buf config, blob, plain;
    char dg[CS_DIGEST_STRLEN];
    size_t i;

    read_whole(&config, got->config.path);
    sha256(dg, config.ptr, config.len);
    ck_assert_str_eq(dg, got->config.digest);
    ck_assert_cs_ok(cs_image_config_parse(&cfg, config.ptr, config.len, &err), &err);
    ck_assert_uint_eq(cfg->ndiff_ids, got->nlayers);
    for (i = 0; i < got->nlayers; i++) {
        read_whole(&blob, got->layers[i].path);
        ck_assert_int_eq((int64_t)blob.len, got->layers[i].size);
        sha256(dg, blob.ptr, blob.len);
        ck_assert_str_eq(dg, got->layers[i].digest);
        ck_assert_int_eq(csi_compress_sniff((const unsigned char *)blob.ptr, blob.len),
                         strcmp(compression, "zstd") == 0 ? CSI_COMP_ZSTD : CSI_COMP_GZIP);
        decompress(&plain, &blob);
        sha256(dg, plain.ptr, plain.len);
        ck_assert_str_eq(dg, cfg->diff_ids[i]);
        cs_buf_dispose(&plain);
        cs_buf_dispose(&blob);
    }
    cs_image_config_free(cfg);
    cs_buf_dispose(&config);
    assert_tmp_empty();
}

static int
docker_load(cs_source_image **out, const char *spec, const char *compression, double *secs,
            cs_error **err)
{
    cs_source_options opts = {0};
    cs_source src;
    double t0;
    int ret;

    ck_assert_cs_ok(cs_source_parse(&src, spec, err), err);
    opts.docker_host = getenv("CS_TEST_DOCKER_HOST");
    opts.compression = compression;
    t0 = now_s();
    ret = cs_source_load(out, &src, store, &opts, err);
    *secs = now_s() - t0;
    cs_source_dispose(&src);
    return ret;
}

START_TEST(test_docker_image)
{
    const char *image = getenv("CS_TEST_IMAGE"), *want_id = getenv("CS_TEST_IMAGE_ID");
    cs_source_image *first = NULL, *again = NULL;
    cs_daemon_image *di = NULL;
    cs_daemon *d = NULL;
    cs_error *err = NULL;
    char spec[400];
    double t1, t2, t3, t4;

    ck_assert_msg(image != NULL && *image, "set CS_TEST_IMAGE to an image the daemon holds");
    ck_assert_cs_ok(cs_daemon_open(&d, getenv("CS_TEST_DOCKER_HOST"), &err), &err);
    ck_assert_cs_ok(cs_daemon_image_inspect(&di, d, image, &err), &err);
    snprintf(spec, sizeof(spec), "docker:%s", image);

    ck_assert_cs_ok(docker_load(&first, spec, NULL, &t1, &err), &err);
    ck_assert(first->exported);
    ck_assert_str_eq(first->config.digest, di->id);
    if (want_id != NULL && *want_id)
        ck_assert_str_eq(first->config.digest, want_id);
    ck_assert_uint_eq(first->nlayers, di->ndiff_ids);
    ck_assert_uint_eq(first->layers_compressed + first->layers_reused, first->nlayers);
    check_daemon_layers(first, "gzip");

    /* unchanged image: no export, no compression, the same manifest */
    ck_assert_cs_ok(docker_load(&again, spec, "gzip", &t2, &err), &err);
    ck_assert(!again->exported);
    ck_assert_uint_eq(again->layers_reused, again->nlayers);
    ck_assert_uint_eq(again->layers_compressed, 0);
    ck_assert_str_eq(again->manifest_digest, first->manifest_digest);
    check_daemon_layers(again, "gzip");
    fprintf(stderr,
            "# docker:%s: %zu layers; first load %.3f s (exported, %zu compressed), again %.3f s "
            "(fast path)\n",
            image, first->nlayers, t1, first->layers_compressed, t2);
    cs_source_image_free(again);
    cs_source_image_free(first);

    /* zstd: one export to compress, then the fast path too */
    ck_assert_cs_ok(docker_load(&first, spec, "zstd", &t3, &err), &err);
    ck_assert(first->exported);
    ck_assert_str_eq(first->manifest_media_type, CS_MEDIA_OCI_MANIFEST);
    check_daemon_layers(first, "zstd");
    ck_assert_cs_ok(docker_load(&again, spec, "zstd", &t4, &err), &err);
    ck_assert(!again->exported);
    ck_assert_str_eq(again->manifest_digest, first->manifest_digest);
    fprintf(stderr, "# docker:%s zstd: first load %.3f s, again %.3f s\n", image, t3, t4);
    cs_source_image_free(again);
    cs_source_image_free(first);

    /* the store lost a layer blob: exported again, the others reused */
    {
        char *path = NULL;

        ck_assert_cs_ok(docker_load(&first, spec, NULL, &t1, &err), &err);
        ck_assert_cs_ok(cs_store_blob_path(&path, store, first->layers[0].digest, &err), &err);
        ck_assert_int_eq(unlink(path), 0);
        free(path);
        ck_assert_cs_ok(docker_load(&again, spec, NULL, &t2, &err), &err);
        ck_assert(again->exported);
        ck_assert_uint_eq(again->layers_reused + again->layers_compressed, again->nlayers);
        ck_assert_uint_ge(again->layers_compressed, 1);
        check_daemon_layers(again, "gzip");
        cs_source_image_free(again);
        cs_source_image_free(first);
    }

    cs_daemon_image_free(di);
    cs_daemon_free(d);
}
END_TEST

START_TEST(test_docker_missing)
{
    cs_source_image *got = NULL;
    cs_error *err = NULL;
    double t;

    assert_fails(docker_load(&got, "docker:cs-test/no-such-image:404", NULL, &t, &err), &err,
                 CS_ENOTFOUND, "cs-test/no-such-image:404");
    /* a daemon that is not there */
    {
        cs_source_options opts = {0};
        cs_source src = {CS_SOURCE_DOCKER, (char *)"app", NULL, NULL};

        opts.docker_host = "unix:///nonexistent/docker.sock";
        assert_fails(cs_source_load(&got, &src, store, &opts, &err), &err, CS_ENET,
                     "/nonexistent/docker.sock");
    }
}
END_TEST

/* <store>/tmp: a push's work files carry its pid, and its process holds tmp/.owner-PID locked
 * while it lives; the next push removes the files of a process that is gone, never those of a
 * live one (issue #7: a kill -9 during a push left its exported layers in tmp/ for good). */
static void
touch(const char *dir, const char *name)
{
    char path[400];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "x", 1), 1);
    close(fd);
}

static bool
exists(const char *dir, const char *name)
{
    char path[400];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

START_TEST(test_tmp_files_of_dead_pushes)
{
    char tmp[200], name[64], live_owner[64], live_file[64], *dir = NULL;
    cs_error *err = NULL;
    int pipefd[2], status;
    pid_t child;
    char c;

    snprintf(tmp, sizeof(tmp), "%s/tmp", storedir);
    ck_assert_int_eq(mkdir(tmp, 0755), 0);
    /* a push that died: its lock file is there, nobody holds it */
    touch(tmp, ".owner-999999");
    touch(tmp, "entry-999999-abcdef");
    touch(tmp, "blob-999999-XyZ012");
    /* not a work file of ours: left alone */
    touch(tmp, "notes.txt");
    /* a live push: another process holds its lock */
    ck_assert_int_eq(pipe(pipefd), 0);
    child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        char path[300];
        int fd;

        snprintf(path, sizeof(path), "%s/.owner-%ld", tmp, (long)getpid());
        fd = open(path, O_RDWR | O_CREAT, 0600);
        if (fd < 0 || flock(fd, LOCK_EX) != 0 || write(pipefd[1], "k", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
    snprintf(live_owner, sizeof(live_owner), ".owner-%ld", (long)child);
    snprintf(live_file, sizeof(live_file), "entry-%ld-Q1w2E3", (long)child);
    touch(tmp, live_file);

    ck_assert_cs_ok(csi_source_tmp_dir(&dir, store, &err), &err);
    ck_assert_str_eq(dir, tmp);
    ck_assert(!exists(tmp, "entry-999999-abcdef"));
    ck_assert(!exists(tmp, "blob-999999-XyZ012"));
    ck_assert(!exists(tmp, ".owner-999999"));
    ck_assert(exists(tmp, "notes.txt"));
    ck_assert(exists(tmp, live_file));
    ck_assert(exists(tmp, live_owner));
    snprintf(name, sizeof(name), ".owner-%ld", (long)getpid());
    ck_assert(exists(tmp, name)); /* ours, held */
    free(dir);

    /* the live push ends without cleaning up (killed): the next push removes its files */
    kill(child, SIGKILL);
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_cs_ok(csi_source_tmp_dir(&dir, store, &err), &err);
    ck_assert(!exists(tmp, live_file));
    ck_assert(!exists(tmp, live_owner));
    ck_assert(exists(tmp, name));
    free(dir);
    close(pipefd[0]);
    close(pipefd[1]);
}
END_TEST

static Suite *
source_suite(void)
{
    Suite *s = suite_create("source");
    TCase *parse = tcase_create("parse");
    TCase *archive = tcase_create("archive");
    TCase *oci = tcase_create("oci");
    const char *host = getenv("CS_TEST_DOCKER_HOST");

    tcase_add_test(parse, test_parse);
    suite_add_tcase(s, parse);

    tcase_add_checked_fixture(archive, setup, teardown);
    tcase_set_timeout(archive, 120);
    tcase_add_test(archive, test_archive_legacy);
    tcase_add_test(archive, test_archive_reuse_needs_blob);
    tcase_add_test(archive, test_archive_parallel);
    tcase_add_test(archive, test_archive_compressed_file);
    tcase_add_test(archive, test_archive_pipe);
    tcase_add_test(archive, test_archive_blobs_layout);
    tcase_add_test(archive, test_archive_compressed_layers);
    tcase_add_test(archive, test_archive_symlinked_layer);
    tcase_add_test(archive, test_archive_wrong_diff_id);
    tcase_add_test(archive, test_archive_layer_count);
    tcase_add_test(archive, test_archive_unsafe_paths);
    tcase_add_test(archive, test_archive_bad_links);
    tcase_add_test(archive, test_archive_truncated);
    tcase_add_test(archive, test_archive_not_docker_save);
    tcase_add_test(archive, test_archive_two_images);
    tcase_add_test(archive, test_tmp_files_of_dead_pushes);
    suite_add_tcase(s, archive);

    tcase_add_checked_fixture(oci, setup, teardown);
    tcase_add_test(oci, test_oci_tags);
    tcase_add_test(oci, test_oci_platform_index);
    tcase_add_test(oci, test_oci_broken);
    suite_add_tcase(s, oci);

    /* only against a daemon someone started for it (tests/integration/test_source.sh) */
    if (host != NULL && *host != '\0') {
        TCase *daemon = tcase_create("daemon");

        tcase_add_checked_fixture(daemon, setup, teardown);
        /* exports and compresses real layers; under valgrind that takes a while */
        tcase_set_timeout(daemon, 600);
        tcase_add_test(daemon, test_docker_image);
        tcase_add_test(daemon, test_docker_missing);
        suite_add_tcase(s, daemon);
    }
    return s;
}

CS_TEST_MAIN(source_suite)
