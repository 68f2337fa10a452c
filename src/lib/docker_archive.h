/* Internal: the manifest.json of docker-archive tars (`docker save` / `docker load`),
 * moby daemon/internal/image/tarexport manifestItem. Pure. */
#ifndef CS_LIB_DOCKER_ARCHIVE_H
#define CS_LIB_DOCKER_ARCHIVE_H

#include <stddef.h>

#include <cachesync/buf.h>
#include <cachesync/error.h>

/* Caps on an untrusted manifest.json. */
#define CSI_DOCKER_ARCHIVE_MAX (1024 * 1024)
#define CSI_DOCKER_ARCHIVE_MAX_ITEMS 1024
#define CSI_DOCKER_ARCHIVE_MAX_LAYERS 4096
#define CSI_DOCKER_ARCHIVE_MAX_TAGS 4096

typedef struct csi_docker_archive_item {
    char *config;     /* path of the image config inside the tar */
    char **repo_tags; /* familiar references ("busybox:latest"); none for untagged images */
    size_t nrepo_tags;
    char **layers; /* paths of the layer tars, in diff_ids order */
    size_t nlayers;
} csi_docker_archive_item;

/* Append the manifest.json `docker load` reads for one image to OUT, compact:
 * [{"Config":"<config_name>","RepoTags":[...],"Layers":[...]}]. CONFIG_NAME and LAYERS must
 * be safe tar paths (CS_EINVAL otherwise). */
int csi_docker_archive_manifest(cs_buf *out, const char *config_name, const char *const *repo_tags,
                                size_t ntags, const char *const *layers, size_t nlayers,
                                cs_error **err);

/* Parse the manifest.json of a `docker save` tar (legacy "<id>/layer.tar" and Docker 25+
 * "blobs/sha256/<hex>" layouts alike). Every path is checked with csi_tar_path_is_safe;
 * "LayerSources" and "Parent" are ignored. At least one item; CS_EPROTO on a malformed
 * document, CS_ELIMIT over the caps. Free with csi_docker_archive_items_free. */
int csi_docker_archive_parse(csi_docker_archive_item **items_out, size_t *n_out, const char *data,
                             size_t len, cs_error **err);

void csi_docker_archive_items_free(csi_docker_archive_item *items, size_t n);

#endif
