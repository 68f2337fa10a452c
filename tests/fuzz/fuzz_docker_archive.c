/* Fuzz target: untrusted bytes as the manifest.json of a `docker save` tar. What parses must
 * name only safe paths, and must survive being written back and parsed again unchanged.
 * Built with -fsanitize=fuzzer, and with replay.c so the corpus runs in `make check`. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cachesync/buf.h>
#include "docker_archive.h"
#include "tar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
same_strings(char **a, size_t na, char **b, size_t nb)
{
    size_t i;

    if (na != nb)
        return false;
    for (i = 0; i < na; i++) {
        if (strcmp(a[i], b[i]) != 0)
            return false;
    }
    return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    csi_docker_archive_item *items = NULL, *again = NULL;
    cs_buf out = CS_BUF_INIT;
    cs_error *err = NULL;
    size_t n = 0, n2 = 0, i, j;
    const csi_docker_archive_item *it;

    if (csi_docker_archive_parse(&items, &n, (const char *)data, size, &err) < 0) {
        if (err == NULL || items != NULL || strchr(err->message, '\n') != NULL)
            __builtin_trap();
        cs_error_free(err);
        return 0;
    }
    if (n == 0 || n > CSI_DOCKER_ARCHIVE_MAX_ITEMS)
        __builtin_trap();
    for (i = 0; i < n; i++) {
        if (!csi_tar_path_is_safe(items[i].config))
            __builtin_trap();
        for (j = 0; j < items[i].nlayers; j++) {
            if (!csi_tar_path_is_safe(items[i].layers[j]))
                __builtin_trap();
        }
        for (j = 0; j < items[i].nrepo_tags; j++) {
            if (items[i].repo_tags[j][0] == '\0')
                __builtin_trap();
        }
    }
    it = &items[0];
    if (csi_docker_archive_manifest(&out, it->config, (const char *const *)it->repo_tags,
                                    it->nrepo_tags, (const char *const *)it->layers, it->nlayers,
                                    &err) != 0)
        __builtin_trap();
    if (csi_docker_archive_parse(&again, &n2, out.ptr, out.len, &err) != 0 || n2 != 1 ||
        strcmp(again[0].config, it->config) != 0 ||
        !same_strings(again[0].repo_tags, again[0].nrepo_tags, it->repo_tags, it->nrepo_tags) ||
        !same_strings(again[0].layers, again[0].nlayers, it->layers, it->nlayers))
        __builtin_trap();
    csi_docker_archive_items_free(again, n2);
    csi_docker_archive_items_free(items, n);
    cs_buf_dispose(&out);
    return 0;
}
