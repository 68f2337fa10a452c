/* Fuzz target: untrusted bytes as the store's layers.json (src/lib/layermap.c), as a damaged
 * or hostile store would hold it. It is only a cache: whatever it holds, reads give either
 * nothing or well-formed answers, and an update followed by a read gives back what was
 * written. Runs on a store in /dev/shm (else $TMPDIR or /tmp), made once per process.
 * Built with -fsanitize=fuzzer, and with replay.c so the corpus runs in `make check`. */
#include "config.h"

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cachesync/digest.h>
#include <cachesync/store.h>
#include "layermap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DIFF "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define BLOB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define NEWB "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static cs_store *store;
static char map[512];

static void
setup(void)
{
    char dir[256];
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");

    snprintf(dir, sizeof(dir), "%s/cs-fuzz-layermap-XXXXXX", base ? base : "/tmp");
    if (mkdtemp(dir) == NULL || cs_store_open(&store, dir, NULL) < 0)
        abort();
    snprintf(map, sizeof(map), "%s/layers.json", dir);
}

static void
check_repos(char **repos, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (repos[i] == NULL || repos[i][0] == '\0' || strlen(repos[i]) > CSI_LAYERMAP_REPO_MAX)
            __builtin_trap();
    }
    if (repos != NULL && repos[n] != NULL)
        __builtin_trap();
    if (n > CSI_LAYERMAP_SEEN_MAX)
        __builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char digest[CS_DIGEST_STRLEN];
    char **repos = NULL;
    cs_error *err = NULL;
    int64_t bsize = -1;
    size_t n = 0;
    int fd, ret;

    if (store == NULL)
        setup();
    fd = open(map, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || (size > 0 && write(fd, data, size) != (ssize_t)size) || close(fd) != 0)
        abort();

    /* reads: nothing, or well-formed */
    ret = csi_layermap_get(digest, &bsize, store, DIFF, "gzip", &err);
    if (ret == 0 && (cs_digest_validate(digest, NULL) < 0 || bsize < 0))
        __builtin_trap();
    cs_error_free(err);
    err = NULL;
    ret = csi_layermap_where(&repos, &n, store, BLOB, &err);
    if (ret == 0) {
        check_repos(repos, n);
        csi_layermap_repos_free(repos);
    }
    cs_error_free(err);
    err = NULL;

    /* an update always works, and reads back */
    if (csi_layermap_put(store, DIFF, "zstd", NEWB, 4242, &err) < 0)
        __builtin_trap();
    if (csi_layermap_get(digest, &bsize, store, DIFF, "zstd", &err) < 0 ||
        strcmp(digest, NEWB) != 0 || bsize != 4242)
        __builtin_trap();
    if (csi_layermap_seen(store, BLOB, "127.0.0.1:5000/fuzz/app", &err) < 0)
        __builtin_trap();
    repos = NULL;
    if (csi_layermap_where(&repos, &n, store, BLOB, &err) < 0 || n == 0 ||
        strcmp(repos[0], "127.0.0.1:5000/fuzz/app") != 0)
        __builtin_trap();
    check_repos(repos, n);
    csi_layermap_repos_free(repos);
    return 0;
}
