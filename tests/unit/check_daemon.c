/* The Docker Engine API client (src/lib/daemon.c) against a REAL dockerd, named by
 * CS_TEST_DOCKER_HOST (unix://...); without it the suite is skipped (exit 77).
 * tests/integration/test_daemon.sh starts a throwaway daemon and runs this. The images it loads
 * are named cs-test/...; run it only against a daemon you can throw away.
 * Test cases: "open" (no daemon needed), "daemon" (the live daemon), "down" (unreachable
 * sockets; with CS_TEST_DOCKER_EXPECT_DOWN=1 CS_TEST_DOCKER_HOST itself must be down).
 * Pick one with CK_RUN_CASE=down. */
#include "config.h"

#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cachesync/buf.h>
#include <cachesync/daemon.h>
#include <cachesync/digest.h>
#include "cs_test.h"
#include "error_int.h"

/* ---- a docker-archive tar, built in memory ------------------------------------------------ */

/* Append one regular file to a ustar archive. */
static void
tar_add(cs_buf *t, const char *name, const void *data, size_t len)
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
    h[156] = '0';
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
tar_end(cs_buf *t)
{
    static const char zeros[1024];

    ck_assert_int_eq(cs_buf_append(t, zeros, sizeof(zeros), NULL), 0);
}

#define MAX_LAYERS 4

/* An image: its layer tars, their diff_ids, and a config naming them. */
typedef struct test_image {
    cs_buf layers[MAX_LAYERS];
    char diff_ids[MAX_LAYERS][CS_DIGEST_STRLEN];
    size_t nlayers;
    cs_buf config;
    char config_digest[CS_DIGEST_STRLEN];
} test_image;

/* A layer holding one file NAME with TEXT. */
static void
image_add_layer(test_image *img, const char *name, const char *text)
{
    cs_buf *l = &img->layers[img->nlayers];
    cs_error *err = NULL;

    ck_assert_uint_lt(img->nlayers, MAX_LAYERS);
    cs_buf_init(l, 0);
    tar_add(l, name, text, strlen(text));
    tar_end(l);
    /* the diff_id is the digest of the uncompressed layer tar */
    ck_assert_cs_ok(cs_digest_buffer(img->diff_ids[img->nlayers], l->ptr, l->len, &err), &err);
    img->nlayers++;
}

static void
image_finish(test_image *img, const char *arch)
{
    cs_error *err = NULL;
    size_t i;

    cs_buf_init(&img->config, 0);
    cs_buf_printf(&img->config, NULL,
                  "{\"architecture\":\"%s\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"/x\"]},"
                  "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[",
                  arch);
    for (i = 0; i < img->nlayers; i++)
        cs_buf_printf(&img->config, NULL, "%s\"%s\"", i ? "," : "", img->diff_ids[i]);
    cs_buf_puts(&img->config, "]}}", NULL);
    ck_assert_cs_ok(cs_digest_buffer(img->config_digest, img->config.ptr, img->config.len, &err),
                    &err);
}

static void
image_dispose(test_image *img)
{
    size_t i;

    for (i = 0; i < img->nlayers; i++)
        cs_buf_dispose(&img->layers[i]);
    cs_buf_dispose(&img->config);
}

/* docker save's layout: <config hex>.json, <diff hex>/layer.tar, manifest.json. Layers whose
 * bit is set in OMIT are listed in manifest.json but left out of the tar. TAG NULL: untagged. */
static void
archive_build(cs_buf *out, const test_image *img, const char *tag, unsigned omit)
{
    cs_buf manifest = CS_BUF_INIT;
    char name[128];
    size_t i;

    cs_buf_init(out, 0);
    snprintf(name, sizeof(name), "%s.json", img->config_digest + 7);
    tar_add(out, name, img->config.ptr, img->config.len);
    for (i = 0; i < img->nlayers; i++) {
        if (omit & (1u << i))
            continue;
        snprintf(name, sizeof(name), "%s/layer.tar", img->diff_ids[i] + 7);
        tar_add(out, name, img->layers[i].ptr, img->layers[i].len);
    }
    cs_buf_printf(&manifest, NULL,
                  "[{\"Config\":\"%s.json\",\"RepoTags\":", img->config_digest + 7);
    if (tag != NULL)
        cs_buf_printf(&manifest, NULL, "[\"%s\"]", tag);
    else
        cs_buf_puts(&manifest, "null", NULL);
    cs_buf_puts(&manifest, ",\"Layers\":[", NULL);
    for (i = 0; i < img->nlayers; i++)
        cs_buf_printf(&manifest, NULL, "%s\"%s/layer.tar\"", i ? "," : "", img->diff_ids[i] + 7);
    cs_buf_puts(&manifest, "]}]", NULL);
    tar_add(out, "manifest.json", manifest.ptr, manifest.len);
    tar_end(out);
    cs_buf_dispose(&manifest);
}

/* ---- a body source over memory ------------------------------------------------------------ */

typedef struct mem_src {
    const char *p;
    size_t len, off;
    size_t chunk;   /* at most this much per call (0 = as much as asked) */
    size_t fail_at; /* fail once this many bytes were given (0 = never) */
    int calls;
} mem_src;

static long
mem_read(void *payload, char *buf, size_t len, cs_error **err)
{
    mem_src *s = payload;
    size_t n = s->len - s->off;

    s->calls++;
    if (s->fail_at > 0 && s->off >= s->fail_at)
        return csi_error_set(err, CS_EDIGEST, "test source: layer sha256:feed does not match");
    if (n > len)
        n = len;
    if (s->chunk > 0 && n > s->chunk)
        n = s->chunk;
    memcpy(buf, s->p + s->off, n);
    s->off += n;
    return (long)n;
}

static int
load_buf(cs_daemon *d, const cs_buf *tar, cs_daemon_load_result *res, cs_error **err)
{
    mem_src src = {tar->ptr, tar->len, 0, 7000, 0, 0};

    return cs_daemon_load(d, mem_read, &src, res, err);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static const char *
test_host(void)
{
    return getenv("CS_TEST_DOCKER_HOST");
}

static cs_daemon *
open_test_daemon(void)
{
    cs_daemon *d = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_daemon_open(&d, test_host(), &err), &err);
    return d;
}

static const char *
daemon_arch(cs_daemon *d)
{
    const cs_daemon_info *info = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_daemon_get_info(&info, d, &err), &err);
    return info->arch;
}

static bool
on_containerd_store(cs_daemon *d)
{
    const cs_daemon_info *info = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_daemon_get_info(&info, d, &err), &err);
    return info->containerd_store;
}

static bool
strv_has(char *const *v, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0)
            return true;
    }
    return false;
}

/* The probe image: one layer with one file; always the same bytes, so the same ID. */
static void
probe_image(test_image *img, cs_daemon *d)
{
    memset(img, 0, sizeof(*img));
    image_add_layer(img, "cs-probe.txt", "cachesync daemon probe v1\n");
    image_finish(img, daemon_arch(d));
}

static void
load_probe(cs_daemon *d, test_image *img)
{
    cs_daemon_load_result res = {0};
    cs_error *err = NULL;
    cs_buf tar;

    probe_image(img, d);
    archive_build(&tar, img, "cs-test/probe:v1", 0);
    ck_assert_cs_ok(load_buf(d, &tar, &res, &err), &err);
    ck_assert_uint_eq(res.ntags, 1);
    ck_assert_str_eq(res.tags[0], "cs-test/probe:v1");
    ck_assert_ptr_null(res.tags[1]);
    cs_daemon_load_result_dispose(&res);
    cs_buf_dispose(&tar);
}

/* Text no daemon has seen: this process, this instant, a counter. */
static void
unique_text(char *out, size_t size, const char *what)
{
    static unsigned counter;
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, size, "%s %ld.%09ld %d %u\n", what, (long)ts.tv_sec, ts.tv_nsec, (int)getpid(),
             counter++);
}

/* ---- "open": no daemon needed --------------------------------------------------------------- */

START_TEST(test_open_hosts)
{
    static const struct {
        const char *host;
        int code;
    } cases[] = {
        {"tcp://127.0.0.1:2375", CS_EUNSUPPORTED},
        {"ssh://user@example.com", CS_EUNSUPPORTED},
        {"npipe:////./pipe/docker_engine", CS_EUNSUPPORTED},
        {"unix://", CS_EINVAL},
        {"/var/run/docker.sock", CS_EINVAL},
        {"unix:///ok/docker.sock", 0},
        {"unix://relative.sock", 0},
    };
    char longhost[300];
    cs_daemon *d = NULL;
    cs_error *err = NULL;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int ret = cs_daemon_open(&d, cases[i].host, &err);

        ck_assert_msg(ret == cases[i].code, "%s: got %d (%s)", cases[i].host, ret,
                      err ? err->message : "");
        if (ret == 0) {
            ck_assert_str_eq(cs_daemon_host(d), cases[i].host);
            cs_daemon_free(d);
            d = NULL;
        } else {
            ck_assert_ptr_nonnull(strstr(err->message, cases[i].host));
            cs_error_free(err);
            err = NULL;
        }
    }
    /* the tcp:// refusal says what works instead */
    ck_assert_int_eq(cs_daemon_open(&d, "tcp://h:2376", &err), CS_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err->message, "unix://"));
    cs_error_free(err);
    err = NULL;
    /* sockaddr_un holds 107 bytes of path */
    memcpy(longhost, "unix://", 7);
    memset(longhost + 7, 'a', 108);
    longhost[7 + 108] = '\0';
    ck_assert_int_eq(cs_daemon_open(&d, longhost, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    longhost[7 + 107] = '\0';
    ck_assert_cs_ok(cs_daemon_open(&d, longhost, &err), &err);
    cs_daemon_free(d);
    cs_daemon_free(NULL);
}
END_TEST

START_TEST(test_open_from_environment)
{
    char *saved = getenv("DOCKER_HOST") ? strdup(getenv("DOCKER_HOST")) : NULL;
    cs_daemon *d = NULL;
    cs_error *err = NULL;

    setenv("DOCKER_HOST", "unix:///from/env.sock", 1);
    ck_assert_cs_ok(cs_daemon_open(&d, NULL, &err), &err);
    ck_assert_str_eq(cs_daemon_host(d), "unix:///from/env.sock");
    cs_daemon_free(d);
    /* an explicit host wins over the environment */
    ck_assert_cs_ok(cs_daemon_open(&d, "unix:///explicit.sock", &err), &err);
    ck_assert_str_eq(cs_daemon_host(d), "unix:///explicit.sock");
    cs_daemon_free(d);
    setenv("DOCKER_HOST", "tcp://1.2.3.4:2375", 1);
    ck_assert_int_eq(cs_daemon_open(&d, NULL, &err), CS_EUNSUPPORTED);
    cs_error_free(err);
    err = NULL;
    unsetenv("DOCKER_HOST");
    ck_assert_cs_ok(cs_daemon_open(&d, NULL, &err), &err);
    ck_assert_str_eq(cs_daemon_host(d), "unix:///var/run/docker.sock");
    cs_daemon_free(d);
    setenv("DOCKER_HOST", "", 1);
    ck_assert_cs_ok(cs_daemon_open(&d, NULL, &err), &err);
    ck_assert_str_eq(cs_daemon_host(d), CS_DAEMON_DEFAULT_HOST);
    cs_daemon_free(d);
    if (saved != NULL)
        setenv("DOCKER_HOST", saved, 1);
    else
        unsetenv("DOCKER_HOST");
    free(saved);
}
END_TEST

START_TEST(test_common_prefix)
{
    char a[] = "sha256:aaaa", b[] = "sha256:bbbb", c[] = "sha256:cccc", x[] = "sha256:xxxx";
    char *base[] = {a, NULL}, *app[] = {a, b, c, NULL}, *other[] = {x, b, NULL};
    cs_daemon_chain chains[] = {{NULL, base, 1}, {NULL, app, 3}, {NULL, other, 2}};
    cs_daemon_chains set = {chains, 3};
    const char *want1[] = {a, b, x};
    const char *want2[] = {a, b, c, x};
    const char *want3[] = {b};
    const char *want4[] = {x, c};

    ck_assert_uint_eq(cs_daemon_common_prefix(&set, want1, 3), 2);
    ck_assert_uint_eq(cs_daemon_common_prefix(&set, want2, 4), 3);
    ck_assert_uint_eq(cs_daemon_common_prefix(&set, want2, 2), 2);
    /* a layer is held only with its whole chain below it: b alone is not */
    ck_assert_uint_eq(cs_daemon_common_prefix(&set, want3, 1), 0);
    ck_assert_uint_eq(cs_daemon_common_prefix(&set, want4, 2), 1);
    ck_assert_uint_eq(cs_daemon_common_prefix(&set, want1, 0), 0);
    ck_assert_uint_eq(cs_daemon_common_prefix(NULL, want1, 3), 0);
    ck_assert_uint_eq(cs_daemon_common_prefix(&set, NULL, 3), 0);
    set.nchains = 0;
    ck_assert_uint_eq(cs_daemon_common_prefix(&set, want1, 3), 0);
}
END_TEST

/* ---- "daemon": the live daemon -------------------------------------------------------------- */

START_TEST(test_info)
{
    cs_daemon *d = open_test_daemon();
    const cs_daemon_info *info = NULL, *again = NULL;
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_daemon_get_info(&info, d, &err), &err);
    fprintf(stderr,
            "# daemon %s: Docker %s (%d.%d), API %s (speaking %s), %s/%s, driver %s, "
            "containerd store: %s\n",
            cs_daemon_host(d), info->version, info->major, info->minor, info->api_version,
            info->negotiated_api, info->os, info->arch, info->driver,
            info->containerd_store ? "yes" : "no");
    ck_assert_str_ne(info->version, "");
    ck_assert_int_ge(info->major, 17);
    /* "20.10.24+dfsg1" -> 20, 10; "17.03.1-ce" -> 17, 3 */
    ck_assert_int_eq(atoi(info->version), info->major);
    ck_assert_ptr_nonnull(strchr(info->version, '.'));
    ck_assert_int_eq(atoi(strchr(info->version, '.') + 1), info->minor);
    ck_assert_str_ne(info->driver, "");
    ck_assert_str_ne(info->api_version, "");
    ck_assert_str_eq(info->os, "linux");
    ck_assert_str_ne(info->arch, "");
    /* the negotiated version is at most the daemon's and never below 1.24 */
    ck_assert_msg(strncmp(info->negotiated_api, "1.", 2) == 0 &&
                      atoi(info->negotiated_api + 2) >= 24,
                  "negotiated %s", info->negotiated_api);
    if (strncmp(info->api_version, "1.", 2) == 0 && atoi(info->api_version + 2) <= 52)
        ck_assert_str_eq(info->negotiated_api, info->api_version);
    /* cached: the same object */
    ck_assert_cs_ok(cs_daemon_get_info(&again, d, &err), &err);
    ck_assert_ptr_eq(again, info);
    cs_daemon_free(d);
}
END_TEST

START_TEST(test_inspect_missing)
{
    cs_daemon *d = open_test_daemon();
    cs_daemon_image *img = NULL;
    cs_error *err = NULL;

    ck_assert_int_eq(cs_daemon_image_inspect(&img, d, "cs-test/no-such-image:never", &err),
                     CS_ENOTFOUND);
    ck_assert_ptr_null(img);
    ck_assert_int_eq(err->http_status, 404);
    ck_assert_ptr_nonnull(strstr(err->message, "cs-test/no-such-image:never"));
    ck_assert_ptr_nonnull(strstr(err->message, cs_daemon_host(d)));
    cs_error_free(err);
    err = NULL;
    /* an invalid reference is the caller's mistake, not a missing image */
    ck_assert_int_eq(cs_daemon_image_inspect(&img, d, "NOT A NAME", &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(cs_daemon_image_inspect(&img, d, "", &err), CS_EINVAL);
    cs_error_free(err);
    cs_daemon_free(d);
}
END_TEST

START_TEST(test_load_and_inspect)
{
    cs_daemon *d = open_test_daemon();
    cs_daemon_image *img = NULL;
    cs_error *err = NULL;
    test_image probe;

    load_probe(d, &probe);
    ck_assert_cs_ok(cs_daemon_image_inspect(&img, d, "cs-test/probe:v1", &err), &err);
    /* with graph drivers the ID is the config's digest; the containerd store names the
     * manifest it synthesised instead */
    if (!on_containerd_store(d))
        ck_assert_str_eq(img->id, probe.config_digest);
    ck_assert_uint_eq(img->ndiff_ids, 1);
    ck_assert_str_eq(img->diff_ids[0], probe.diff_ids[0]);
    ck_assert_ptr_null(img->diff_ids[1]);
    ck_assert(strv_has(img->repo_tags, img->nrepo_tags, "cs-test/probe:v1"));
    ck_assert_str_eq(img->os, "linux");
    ck_assert_str_eq(img->architecture, daemon_arch(d));
    cs_daemon_image_free(img);
    /* by ID too */
    ck_assert_cs_ok(cs_daemon_image_inspect(&img, d, probe.config_digest, &err), &err);
    ck_assert_str_eq(img->diff_ids[0], probe.diff_ids[0]);
    cs_daemon_image_free(img);
    cs_daemon_image_free(NULL);
    image_dispose(&probe);
    cs_daemon_free(d);
}
END_TEST

START_TEST(test_load_untagged)
{
    cs_daemon *d = open_test_daemon();
    cs_daemon_load_result res = {0};
    cs_error *err = NULL;
    test_image img = {0};
    char text[128];
    cs_buf tar;

    unique_text(text, sizeof(text), "untagged");
    image_add_layer(&img, "untagged.txt", text);
    image_finish(&img, daemon_arch(d));
    archive_build(&tar, &img, NULL, 0);
    ck_assert_cs_ok(load_buf(d, &tar, &res, &err), &err);
    ck_assert_uint_eq(res.ntags, 0);
    ck_assert_uint_eq(res.nids, 1);
    if (!on_containerd_store(d))
        ck_assert_str_eq(res.ids[0], img.config_digest);
    cs_daemon_load_result_dispose(&res);
    cs_daemon_load_result_dispose(NULL);
    /* RES is optional */
    ck_assert_cs_ok(load_buf(d, &tar, NULL, &err), &err);
    cs_buf_dispose(&tar);
    image_dispose(&img);
    cs_daemon_free(d);
}
END_TEST

START_TEST(test_tag)
{
    cs_daemon *d = open_test_daemon();
    cs_daemon_image *v1 = NULL, *v2 = NULL, *latest = NULL;
    cs_error *err = NULL;
    test_image probe;
    int ret;

    load_probe(d, &probe);
    ck_assert_cs_ok(cs_daemon_tag(d, "cs-test/probe:v1", "cs-test/probe", "v2", &err), &err);
    ck_assert_cs_ok(cs_daemon_image_inspect(&v1, d, "cs-test/probe:v1", &err), &err);
    ck_assert_cs_ok(cs_daemon_image_inspect(&v2, d, "cs-test/probe:v2", &err), &err);
    ck_assert_str_eq(v2->id, v1->id);
    ck_assert(strv_has(v2->repo_tags, v2->nrepo_tags, "cs-test/probe:v2"));
    /* by ID, into another repository with a registry host, and the default tag */
    ck_assert_cs_ok(cs_daemon_tag(d, v1->id, "127.0.0.1:5000/cs-test/probe", NULL, &err), &err);
    ck_assert_cs_ok(
        cs_daemon_image_inspect(&latest, d, "127.0.0.1:5000/cs-test/probe:latest", &err), &err);
    ck_assert_str_eq(latest->id, v1->id);
    /* errors: a missing image, an invalid repository */
    ck_assert_int_eq(cs_daemon_tag(d, "cs-test/no-such-image:never", "cs-test/x", "1", &err),
                     CS_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err->message, "tag cs-test/no-such-image:never as cs-test/x:1"));
    cs_error_free(err);
    err = NULL;
    /* 20.10 answers 500 to an invalid repository (newer daemons 400): refused either way */
    ret = cs_daemon_tag(d, "cs-test/probe:v1", "NOT VALID", "1", &err);
    ck_assert_msg(ret == CS_EINVAL || ret == CS_EPROTO, "got %d", ret);
    ck_assert_ptr_nonnull(strstr(err->message, "invalid reference format"));
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(cs_daemon_tag(d, "cs-test/probe:v1", "", "1", &err), CS_EINVAL);
    cs_error_free(err);
    cs_daemon_image_free(v1);
    cs_daemon_image_free(v2);
    cs_daemon_image_free(latest);
    image_dispose(&probe);
    cs_daemon_free(d);
}
END_TEST

START_TEST(test_layer_chains)
{
    cs_daemon *d = open_test_daemon();
    cs_daemon_chains *chains = NULL;
    cs_error *err = NULL;
    test_image probe;
    const char *want[2], *unknown =
                             "sha256:"
                             "0000000000000000000000000000000000000000000000000000000000000000";
    bool found = false;
    size_t i;

    load_probe(d, &probe);
    ck_assert_cs_ok(cs_daemon_layer_chains(&chains, d, &err), &err);
    ck_assert_uint_ge(chains->nchains, 1);
    for (i = 0; i < chains->nchains; i++) {
        const cs_daemon_chain *c = &chains->chains[i];

        ck_assert_ptr_nonnull(c->image_id);
        ck_assert_ptr_null(c->diff_ids[c->ndiff_ids]);
        if (c->ndiff_ids == 1 && strcmp(c->diff_ids[0], probe.diff_ids[0]) == 0)
            found = true;
    }
    ck_assert_msg(found, "no chain holds the probe's layer %s", probe.diff_ids[0]);
    want[0] = probe.diff_ids[0];
    want[1] = unknown;
    ck_assert_uint_eq(cs_daemon_common_prefix(chains, want, 1), 1);
    ck_assert_uint_eq(cs_daemon_common_prefix(chains, want, 2), 1);
    ck_assert_uint_eq(cs_daemon_common_prefix(chains, want + 1, 1), 0);
    cs_daemon_chains_free(chains);
    cs_daemon_chains_free(NULL);
    image_dispose(&probe);
    cs_daemon_free(d);
}
END_TEST

START_TEST(test_load_missing_layer_file)
{
    cs_daemon *d = open_test_daemon();
    cs_daemon_load_result res = {0};
    cs_error *err = NULL;
    test_image img = {0};
    char text[128];
    cs_buf tar;

    /* a layer the daemon cannot have, listed in manifest.json but absent from the tar */
    unique_text(text, sizeof(text), "missing");
    image_add_layer(&img, "missing.txt", text);
    image_finish(&img, daemon_arch(d));
    archive_build(&tar, &img, "cs-test/missing:1", 1u << 0);
    ck_assert_int_eq(load_buf(d, &tar, &res, &err), CS_EPROTO);
    fprintf(stderr, "# missing layer file: %s\n", err->message);
    ck_assert_ptr_nonnull(strstr(err->message, cs_daemon_host(d)));
    ck_assert_ptr_nonnull(strstr(err->message, "load failed: "));
    /* the daemon's own words: "open .../<hex>/layer.tar: no such file or directory" */
    ck_assert_ptr_nonnull(strstr(err->message, img.diff_ids[0] + 7));
    ck_assert_uint_eq(res.ntags, 0);
    cs_error_free(err);
    cs_daemon_load_result_dispose(&res);
    cs_buf_dispose(&tar);
    image_dispose(&img);
    cs_daemon_free(d);
}
END_TEST

START_TEST(test_load_skips_held_layer)
{
    cs_daemon *d = open_test_daemon();
    cs_daemon_load_result res = {0};
    cs_daemon_chains *chains = NULL;
    cs_daemon_image *got = NULL;
    cs_error *err = NULL;
    test_image probe, img = {0};
    const char *ids[2];
    char text[128];
    cs_buf tar;
    int ret;

    load_probe(d, &probe);
    /* the probe's layer below a new one; the tar leaves the probe's layer file out */
    image_add_layer(&img, "cs-probe.txt", "cachesync daemon probe v1\n");
    ck_assert_str_eq(img.diff_ids[0], probe.diff_ids[0]);
    unique_text(text, sizeof(text), "on top");
    image_add_layer(&img, "top.txt", text);
    image_finish(&img, daemon_arch(d));
    ck_assert_cs_ok(cs_daemon_layer_chains(&chains, d, &err), &err);
    ids[0] = img.diff_ids[0];
    ids[1] = img.diff_ids[1];
    ck_assert_uint_eq(cs_daemon_common_prefix(chains, ids, 2), 1);
    cs_daemon_chains_free(chains);
    archive_build(&tar, &img, "cs-test/skip:1", 1u << 0);
    ret = load_buf(d, &tar, &res, &err);
    if (on_containerd_store(d)) {
        /* the containerd importer reads every file manifest.json names */
        ck_assert_int_eq(ret, CS_EPROTO);
        cs_error_free(err);
    } else {
        /* graph drivers: a layer held by chain ID is never opened (tarexport/load.go) */
        ck_assert_cs_ok(ret, &err);
        ck_assert_uint_eq(res.ntags, 1);
        ck_assert_str_eq(res.tags[0], "cs-test/skip:1");
        ck_assert_cs_ok(cs_daemon_image_inspect(&got, d, "cs-test/skip:1", &err), &err);
        ck_assert_str_eq(got->id, img.config_digest);
        ck_assert_uint_eq(got->ndiff_ids, 2);
        cs_daemon_image_free(got);
        ck_assert_cs_ok(cs_daemon_layer_chains(&chains, d, &err), &err);
        ck_assert_uint_eq(cs_daemon_common_prefix(chains, ids, 2), 2);
        cs_daemon_chains_free(chains);
    }
    cs_daemon_load_result_dispose(&res);
    cs_buf_dispose(&tar);
    image_dispose(&img);
    image_dispose(&probe);
    cs_daemon_free(d);
}
END_TEST

START_TEST(test_load_source_error_wins)
{
    cs_daemon *d = open_test_daemon();
    cs_error *err = NULL;
    test_image probe;
    mem_src src;
    cs_buf tar;

    probe_image(&probe, d);
    archive_build(&tar, &probe, "cs-test/never:1", 0);
    memset(&src, 0, sizeof(src));
    src.p = tar.ptr;
    src.len = tar.len;
    src.chunk = 512;
    src.fail_at = 1024;
    ck_assert_int_eq(cs_daemon_load(d, mem_read, &src, NULL, &err), CS_EDIGEST);
    ck_assert_str_eq(err->message, "test source: layer sha256:feed does not match");
    ck_assert_int_ge(src.calls, 3);
    cs_error_free(err);
    err = NULL;
    /* the daemon is still fine for the next request */
    ck_assert_cs_ok(load_buf(d, &tar, NULL, &err), &err);
    cs_buf_dispose(&tar);
    image_dispose(&probe);
    cs_daemon_free(d);
}
END_TEST

START_TEST(test_load_garbage)
{
    cs_daemon *d = open_test_daemon();
    cs_error *err = NULL;
    cs_buf junk = CS_BUF_INIT;
    size_t i;

    for (i = 0; i < 3000; i++)
        cs_buf_append(&junk, &(char){(char)(i * 7919 % 251)}, 1, NULL);
    ck_assert_int_eq(load_buf(d, &junk, NULL, &err), CS_EPROTO);
    fprintf(stderr, "# garbage: %s\n", err->message);
    ck_assert_ptr_nonnull(strstr(err->message, "load failed: "));
    cs_error_free(err);
    err = NULL;
    /* an empty body is no archive either */
    cs_buf_clear(&junk);
    ck_assert_int_eq(load_buf(d, &junk, NULL, &err), CS_EPROTO);
    fprintf(stderr, "# empty body: %s\n", err->message);
    cs_error_free(err);
    cs_buf_dispose(&junk);
    cs_daemon_free(d);
}
END_TEST

/* ---- "down": nobody answers ---------------------------------------------------------------- */

static void
assert_down(const char *host, const char *reason)
{
    cs_daemon *d = NULL;
    const cs_daemon_info *info = NULL;
    cs_daemon_image *img = NULL;
    cs_daemon_chains *chains = NULL;
    cs_error *err = NULL;
    mem_src src = {"x", 1, 0, 0, 0, 0};
    char want[512];

    ck_assert_cs_ok(cs_daemon_open(&d, host, &err), &err);
    ck_assert_int_eq(cs_daemon_get_info(&info, d, &err), CS_ENET);
    snprintf(want, sizeof(want), "cannot connect to the Docker daemon at %s: is dockerd running?",
             host);
    ck_assert_msg(strncmp(err->message, want, strlen(want)) == 0, "message: %s", err->message);
    if (reason != NULL)
        ck_assert_msg(strstr(err->message, reason) != NULL, "message: %s", err->message);
    fprintf(stderr, "# down: %s\n", err->message);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(cs_daemon_image_inspect(&img, d, "x", &err), CS_ENET);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(cs_daemon_layer_chains(&chains, d, &err), CS_ENET);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(cs_daemon_tag(d, "a", "b", "c", &err), CS_ENET);
    cs_error_free(err);
    err = NULL;
    /* the ping fails first: the source is never read */
    ck_assert_int_eq(cs_daemon_load(d, mem_read, &src, NULL, &err), CS_ENET);
    ck_assert_int_eq(src.calls, 0);
    cs_error_free(err);
    err = NULL;
    /* and without an error pointer */
    ck_assert_int_eq(cs_daemon_get_info(&info, d, NULL), CS_ENET);
    cs_daemon_free(d);
}

START_TEST(test_down_no_socket)
{
    char host[128];

    snprintf(host, sizeof(host), "unix:///tmp/cs-no-such-dir-%d/docker.sock", (int)getpid());
    assert_down(host, "No such file or directory");
}
END_TEST

START_TEST(test_down_stale_socket)
{
    struct sockaddr_un sun = {0};
    char dir[] = "/tmp/cs-stale-XXXXXX", host[160];
    int fd;

    /* a socket file nobody listens on, as a killed dockerd leaves behind */
    ck_assert_ptr_nonnull(mkdtemp(dir));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/docker.sock", dir);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(fd);
    snprintf(host, sizeof(host), "unix://%s", sun.sun_path);
    assert_down(host, "Connection refused");
    unlink(sun.sun_path);
    rmdir(dir);
}
END_TEST

START_TEST(test_down_test_host)
{
    const char *expect = getenv("CS_TEST_DOCKER_EXPECT_DOWN");

    if (expect == NULL || strcmp(expect, "1") != 0)
        return; /* the daemon is meant to be up */
    assert_down(test_host(), NULL);
}
END_TEST

static Suite *
daemon_suite(void)
{
    Suite *s = suite_create("daemon");
    TCase *open = tcase_create("open");
    TCase *live = tcase_create("daemon");
    TCase *down = tcase_create("down");

    tcase_add_test(open, test_open_hosts);
    tcase_add_test(open, test_open_from_environment);
    tcase_add_test(open, test_common_prefix);
    suite_add_tcase(s, open);

    /* loads register layers; under valgrind that takes a while */
    tcase_set_timeout(live, 300);
    tcase_add_test(live, test_info);
    tcase_add_test(live, test_inspect_missing);
    tcase_add_test(live, test_load_and_inspect);
    tcase_add_test(live, test_load_untagged);
    tcase_add_test(live, test_tag);
    tcase_add_test(live, test_layer_chains);
    tcase_add_test(live, test_load_missing_layer_file);
    tcase_add_test(live, test_load_skips_held_layer);
    tcase_add_test(live, test_load_source_error_wins);
    tcase_add_test(live, test_load_garbage);
    suite_add_tcase(s, live);

    tcase_add_test(down, test_down_no_socket);
    tcase_add_test(down, test_down_stale_socket);
    tcase_add_test(down, test_down_test_host);
    suite_add_tcase(s, down);
    return s;
}

int
main(void)
{
    SRunner *sr;
    int failed;

    if (test_host() == NULL || *test_host() == '\0') {
        fprintf(stderr, "SKIP: CS_TEST_DOCKER_HOST is not set (tests/integration/test_daemon.sh "
                        "starts a dockerd and sets it)\n");
        return 77;
    }
    sr = srunner_create(daemon_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
