/* docker-archive manifest.json (moby daemon/internal/image/tarexport: manifestItem with
 * Config, RepoTags, Layers, Parent, LayerSources). */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "docker_archive.h"
#include "error_int.h"
#include "json.h"
#include "tar.h"

/* A JSON array of strings from NAMES into *OUT. */
static int
string_array(json_t **out, const char *const *names, size_t n, const char *what, bool paths,
             cs_error **err)
{
    json_t *arr = json_array();
    size_t i;
    int ret = 0;

    if (arr == NULL)
        return csi_error_oom(err);
    for (i = 0; i < n; i++) {
        json_t *s;

        if (names[i] == NULL || (paths && !csi_tar_path_is_safe(names[i]))) {
            ret = csi_error_set(err, CS_EINVAL, "%s[%zu] is not a valid archive path", what, i);
            goto out;
        }
        /* json_string refuses invalid UTF-8, which no Docker tool would read back */
        s = json_string(names[i]);
        if (s == NULL) {
            ret = csi_error_set(err, CS_EINVAL, "%s[%zu] is not valid UTF-8", what, i);
            goto out;
        }
        if (json_array_append_new(arr, s) < 0) {
            ret = csi_error_oom(err);
            goto out;
        }
    }
    *out = arr;
    arr = NULL;

out:
    json_decref(arr);
    return ret;
}

int
csi_docker_archive_manifest(cs_buf *out, const char *config_name, const char *const *repo_tags,
                            size_t ntags, const char *const *layers, size_t nlayers, cs_error **err)
{
    json_t *root = NULL, *item = NULL, *v;
    char *text = NULL;
    int ret = 0;

    if (config_name == NULL || !csi_tar_path_is_safe(config_name))
        return csi_error_set(err, CS_EINVAL, "config name is not a valid archive path");
    root = json_array();
    item = json_object();
    if (root == NULL || item == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    v = json_string(config_name);
    if (v == NULL) {
        ret = csi_error_set(err, CS_EINVAL, "config name is not valid UTF-8");
        goto out;
    }
    /* jansson keeps insertion order: Config, RepoTags, Layers, as docker save writes them */
    if (json_object_set_new(item, "Config", v) < 0) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = string_array(&v, repo_tags, ntags, "RepoTags", false, err);
    if (ret < 0)
        goto out;
    if (json_object_set_new(item, "RepoTags", v) < 0) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = string_array(&v, layers, nlayers, "Layers", true, err);
    if (ret < 0)
        goto out;
    if (json_object_set_new(item, "Layers", v) < 0) {
        ret = csi_error_oom(err);
        goto out;
    }
    if (json_array_append(root, item) < 0) {
        ret = csi_error_oom(err);
        goto out;
    }
    text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    ret = cs_buf_puts(out, text, err);

out:
    free(text);
    json_decref(item);
    json_decref(root);
    return ret;
}

static void
item_dispose(csi_docker_archive_item *it)
{
    size_t i;

    free(it->config);
    for (i = 0; i < it->nrepo_tags; i++)
        free(it->repo_tags[i]);
    free(it->repo_tags);
    for (i = 0; i < it->nlayers; i++)
        free(it->layers[i]);
    free(it->layers);
    memset(it, 0, sizeof(*it));
}

void
csi_docker_archive_items_free(csi_docker_archive_item *items, size_t n)
{
    size_t i;

    if (items == NULL)
        return;
    for (i = 0; i < n; i++)
        item_dispose(&items[i]);
    free(items);
}

/* A string array member into *OUT and *N_OUT; a missing or null member is an empty list when
 * OPTIONAL. *N_OUT counts the strings copied so far, so the caller can free on failure. */
static int
parse_strings(char ***out, size_t *n_out, const json_t *obj, const char *key, bool optional,
              bool paths, size_t max, size_t index, cs_error **err)
{
    const json_t *arr = json_object_get(obj, key);
    size_t i, n;

    if ((arr == NULL || json_is_null(arr)) && optional)
        return 0;
    if (!json_is_array(arr))
        return csi_error_set(err, CS_EPROTO,
                             "manifest.json item %zu: %s is missing or not an array", index, key);
    n = json_array_size(arr);
    if (n > max)
        return csi_error_set(err, CS_ELIMIT,
                             "manifest.json item %zu: %zu %s, over the limit of %zu", index, n, key,
                             max);
    if (n == 0)
        return 0;
    *out = calloc(n, sizeof(**out));
    if (*out == NULL)
        return csi_error_oom(err);
    for (i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        const char *s = json_string_value(v);

        if (s == NULL || s[0] == '\0')
            return csi_error_set(err, CS_EPROTO, "manifest.json item %zu: %s[%zu] is not a string",
                                 index, key, i);
        if (paths && !csi_tar_path_is_safe(s))
            return csi_error_set(err, CS_EPROTO,
                                 "manifest.json item %zu: %s[%zu] is an unsafe "
                                 "path",
                                 index, key, i);
        (*out)[i] = strdup(s);
        if ((*out)[i] == NULL)
            return csi_error_oom(err);
        *n_out = i + 1;
    }
    return 0;
}

static int
parse_item(csi_docker_archive_item *it, const json_t *obj, size_t index, cs_error **err)
{
    const char *config;
    int ret;

    if (!json_is_object(obj))
        return csi_error_set(err, CS_EPROTO, "manifest.json item %zu is not an object", index);
    config = csi_json_str(obj, "Config");
    if (config == NULL || !csi_tar_path_is_safe(config))
        return csi_error_set(err, CS_EPROTO,
                             "manifest.json item %zu: Config is missing or an "
                             "unsafe path",
                             index);
    it->config = strdup(config);
    if (it->config == NULL)
        return csi_error_oom(err);
    /* Docker writes "RepoTags":null for an untagged image */
    ret = parse_strings(&it->repo_tags, &it->nrepo_tags, obj, "RepoTags", true, false,
                        CSI_DOCKER_ARCHIVE_MAX_TAGS, index, err);
    if (ret == 0)
        ret = parse_strings(&it->layers, &it->nlayers, obj, "Layers", false, true,
                            CSI_DOCKER_ARCHIVE_MAX_LAYERS, index, err);
    return ret;
}

int
csi_docker_archive_parse(csi_docker_archive_item **items_out, size_t *n_out, const char *data,
                         size_t len, cs_error **err)
{
    csi_docker_archive_item *items = NULL;
    json_error_t jerr;
    json_t *root = NULL;
    size_t i, n = 0;
    int ret = 0;

    if (len > CSI_DOCKER_ARCHIVE_MAX)
        return csi_error_set(err, CS_ELIMIT, "manifest.json is %zu bytes, over the %d-byte limit",
                             len, CSI_DOCKER_ARCHIVE_MAX);
    /* no JSON_ALLOW_NUL: a NUL in a path would be cut short by every C string user */
    root = json_loadb(data, len, 0, &jerr);
    if (root == NULL)
        return csi_error_set(err, CS_EPROTO, "manifest.json is not valid JSON: %s at byte %d",
                             csi_json_reason(&jerr), jerr.position);
    if (!json_is_array(root)) {
        ret = csi_error_set(err, CS_EPROTO, "manifest.json is not a JSON array");
        goto out;
    }
    n = json_array_size(root);
    if (n == 0) {
        ret = csi_error_set(err, CS_EPROTO, "manifest.json lists no images");
        goto out;
    }
    if (n > CSI_DOCKER_ARCHIVE_MAX_ITEMS) {
        ret = csi_error_set(err, CS_ELIMIT, "manifest.json lists %zu images, over the limit of %d",
                            n, CSI_DOCKER_ARCHIVE_MAX_ITEMS);
        goto out;
    }
    items = calloc(n, sizeof(*items));
    if (items == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    for (i = 0; i < n; i++) {
        ret = parse_item(&items[i], json_array_get(root, i), i, err);
        if (ret < 0)
            goto out;
    }
    *items_out = items;
    *n_out = n;
    items = NULL;

out:
    csi_docker_archive_items_free(items, n);
    json_decref(root);
    return ret;
}
