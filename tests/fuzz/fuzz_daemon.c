/* Fuzz target: untrusted bytes as the Docker daemon's answers (src/lib/daemon*.c). The first
 * byte picks what they are:
 *   'v' GET /version + "\n\n" + GET /info    'i' an ImageInspect answer
 *   'l' a POST /images/load answer (the second byte: the read size, as the socket delivers it)
 *   'e' an error body                        'a' API and release version strings
 * What parses must keep its promises: image IDs non-empty and diff_ids sha256 digests, load
 * results one line each, error texts within their cap, failures with one message line.
 * Built with -fsanitize=fuzzer, and with replay.c so the corpus runs in `make check`. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cachesync/daemon.h>
#include <cachesync/digest.h>
#include "daemon_int.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_err(int ret, cs_error *err)
{
    if (ret < 0 && (err == NULL || err->message == NULL || strchr(err->message, '\n') != NULL))
        __builtin_trap();
    cs_error_free(err);
}

static void
check_lines(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] == NULL || v[i][0] == '\0' || strpbrk(v[i], "\r\n") != NULL)
            __builtin_trap();
    }
    if (n > 0 && v[n] != NULL)
        __builtin_trap();
}

static void
image(const char *d, size_t n)
{
    json_t *root = NULL;
    cs_daemon_image *img = NULL;
    cs_error *err = NULL;
    int ret;

    if (csi_json_load_object(&root, d, n, 8u << 20, "image", NULL) < 0)
        return;
    ret = csi_daemon_image_from_json(&img, root, "image x", &err);
    if (ret == 0) {
        if (img->id == NULL || img->id[0] == '\0' || img->os == NULL || img->architecture == NULL)
            __builtin_trap();
        for (size_t i = 0; i < img->ndiff_ids; i++) {
            if (cs_digest_validate(img->diff_ids[i], NULL) < 0)
                __builtin_trap();
        }
        if (img->diff_ids != NULL && img->diff_ids[img->ndiff_ids] != NULL)
            __builtin_trap();
        cs_daemon_image_free(img);
    } else if (img != NULL) {
        __builtin_trap();
    }
    check_err(ret, err);
    json_decref(root);
}

static void
info(const char *d, size_t n)
{
    const char *sep = NULL;
    json_t *ver = NULL, *inf = NULL;
    cs_daemon_info *i = NULL;
    cs_error *err = NULL;
    int ret;

    for (size_t k = 0; k + 1 < n; k++) {
        if (d[k] == '\n' && d[k + 1] == '\n') {
            sep = d + k;
            break;
        }
    }
    if (sep == NULL)
        return;
    csi_json_load_object(&ver, d, (size_t)(sep - d), 8u << 20, "version", NULL);
    csi_json_load_object(&inf, sep + 2, n - (size_t)(sep - d) - 2, 8u << 20, "info", NULL);
    ret = csi_daemon_info_from_json(&i, ver, inf, "unix:///fuzz.sock", "1.41", &err);
    if (ret == 0) {
        if (i->version == NULL || i->driver == NULL || i->major < 0 || i->minor < 0 ||
            i->major > 100000 || i->minor > 100000)
            __builtin_trap();
        csi_daemon_info_free(i);
    }
    check_err(ret, err);
    json_decref(ver);
    json_decref(inf);
}

static void
load(const char *d, size_t n)
{
    cs_daemon_load_result res = {0};
    cs_error *err = NULL;
    size_t chunk;
    int ret;

    if (n == 0)
        return;
    chunk = (unsigned char)d[0];
    ret = csi_daemon_load_answer(&res, "unix:///fuzz.sock", d + 1, n - 1, chunk, &err);
    check_lines(res.tags, res.ntags);
    check_lines(res.ids, res.nids);
    check_err(ret, err);
    cs_daemon_load_result_dispose(&res);
}

static void
error_text(const char *d, size_t n)
{
    char *s = csi_daemon_error_text(d, n);

    if (s != NULL && strlen(s) > CSI_DAEMON_ERROR_TEXT_MAX)
        __builtin_trap();
    free(s);
}

static void
versions(const char *d, size_t n)
{
    char *s = strndup(d, n);
    int a = -1, b = -1;

    if (s == NULL)
        return;
    if (csi_daemon_parse_api_version(s, &a, &b) && (a < 0 || b < 0 || a > 1000 || b > 1000))
        __builtin_trap();
    csi_daemon_parse_release(s, &a, &b);
    if (a < 0 || b < 0 || a > 100000 || b > 100000)
        __builtin_trap();
    free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *d = (const char *)data + 1;
    size_t n = size - 1;

    if (size == 0)
        return 0;
    switch (data[0]) {
    case 'v':
        info(d, n);
        break;
    case 'i':
        image(d, n);
        break;
    case 'l':
        load(d, n);
        break;
    case 'e':
        error_text(d, n);
        break;
    case 'a':
        versions(d, n);
        break;
    default:
        /* anything else: every parser on the same bytes */
        image((const char *)data, size);
        load((const char *)data, size);
        error_text((const char *)data, size);
        break;
    }
    return 0;
}
