/* cachesync: a client of the local Docker daemon's Engine API, over its unix socket.
 * No I/O until the first call, which pings /_ping and negotiates the API version: the lower
 * of the daemon's Api-Version and the newest cachesync knows (never below 1.24). Every later
 * request uses /v<version>/ paths. Loads stream a docker-archive tar and read the daemon's
 * JSON message stream, where a failure arrives inside an HTTP 200 answer. */
#ifndef CACHESYNC_DAEMON_H
#define CACHESYNC_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <cachesync/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CS_DAEMON_DEFAULT_HOST "unix:///var/run/docker.sock"

typedef struct cs_daemon cs_daemon;

typedef struct cs_daemon_info {
    char *version;         /* "20.10.24+dfsg1" (GET /version) */
    char *api_version;     /* the daemon's newest API version, "1.41" */
    char *negotiated_api;  /* the API version cachesync speaks to it, "1.41" */
    char *os;              /* "linux" */
    char *arch;            /* as GOARCH: "amd64", "arm64" */
    char *driver;          /* storage driver or snapshotter: "overlay2", "overlayfs" */
    bool containerd_store; /* images live in containerd's image store (Docker 29's default):
                              load keeps compressed blobs, --cache-from asks the registry */
    int major, minor;      /* of version: 20 and 10 for "20.10.24"; 0 when it does not parse */
} cs_daemon_info;

/* Every char ** list below is also NULL-terminated. */
typedef struct cs_daemon_image {
    char *id; /* "sha256:..." (the config digest; the manifest digest on the containerd store) */
    char **repo_tags; /* "name:tag" */
    size_t nrepo_tags;
    char **repo_digests; /* "name@sha256:..." (only after a pull or push) */
    size_t nrepo_digests;
    char **diff_ids; /* RootFS.Layers, bottom first */
    size_t ndiff_ids;
    char *os;
    char *architecture;
    char *variant; /* NULL when none */
} cs_daemon_image;

/* The layer list (diff_ids, bottom first) of one image the daemon holds. */
typedef struct cs_daemon_chain {
    char *image_id;
    char **diff_ids;
    size_t ndiff_ids;
} cs_daemon_chain;

typedef struct cs_daemon_chains {
    cs_daemon_chain *chains;
    size_t nchains;
} cs_daemon_chains;

/* What a load reported, in order. */
typedef struct cs_daemon_load_result {
    char **tags; /* from "Loaded image: NAME:TAG" */
    size_t ntags;
    char **ids; /* from "Loaded image ID: sha256:..." (images loaded without a tag) */
    size_t nids;
} cs_daemon_load_result;

/* Supplies the body of a load: fills BUF with up to LEN bytes and returns how many, 0 at the
 * end, or < 0 (setting *err) to abort. */
typedef long (*cs_daemon_source_fn)(void *payload, char *buf, size_t len, cs_error **err);

/** A client for DOCKER_HOST (NULL: $DOCKER_HOST, else CS_DAEMON_DEFAULT_HOST). Only unix://
 * addresses for now: tcp:// and ssh:// are CS_EUNSUPPORTED. No I/O yet. */
int cs_daemon_open(cs_daemon **out, const char *docker_host, cs_error **err);
void cs_daemon_free(cs_daemon *d);

/** The address in use ("unix:///var/run/docker.sock"), for messages. */
const char *cs_daemon_host(const cs_daemon *d);

/** Version, storage driver and image store of the daemon (GET /version and /info), fetched
 * once; the result belongs to D. An unreachable daemon is CS_ENET. */
int cs_daemon_get_info(const cs_daemon_info **out, cs_daemon *d, cs_error **err);

/** GET /images/{name}/json. NAME is a reference or an image ID. CS_ENOTFOUND when the daemon
 * has no such image. */
int cs_daemon_image_inspect(cs_daemon_image **out, cs_daemon *d, const char *name, cs_error **err);
void cs_daemon_image_free(cs_daemon_image *img);

/** The layer lists of every image the daemon holds (intermediate ones included), to tell which
 * layers it already has. */
int cs_daemon_layer_chains(cs_daemon_chains **out, cs_daemon *d, cs_error **err);
void cs_daemon_chains_free(cs_daemon_chains *c);

/** How many leading layers of DIFF_IDS (N entries) some image in C has, in that exact order:
 * the daemon holds those layers (a layer is identified by its whole chain below it), and its
 * loader skips them without reading their files. Pure; C may be NULL. */
size_t cs_daemon_common_prefix(const cs_daemon_chains *c, const char *const *diff_ids, size_t n);

/** Tag IMAGE (a reference or an ID) as REPO:TAG (TAG NULL: the daemon's default, "latest"). */
int cs_daemon_tag(cs_daemon *d, const char *image, const char *repo, const char *tag,
                  cs_error **err);

/** GET /images/{name}/get: stream the `docker save` tar of NAME (a reference or an image ID)
 * to SINK, which returns < 0 (setting *err) to stop. CS_ENOTFOUND when the daemon has no
 * such image; a failing SINK's own error is returned as it is. The tar is the caller's to
 * check: when the export fails after streaming started, the daemon can only append a JSON
 * error message to the stream, so a truncated tar or one ending in {"errorDetail":...} is a
 * failed export even though this returns 0. */
int cs_daemon_image_save(cs_daemon *d, const char *name,
                         int (*sink)(void *payload, const char *data, size_t len, cs_error **err),
                         void *payload, cs_error **err);

/** POST /images/load?quiet=1 with the tar SOURCE streams (docker-archive format, see
 * docs: manifest.json + config + layers). A failure the daemon reports in its message stream
 * is CS_EPROTO with the daemon's text; a failing SOURCE's own error is returned as it is.
 * RES (zeroed by the caller, may be NULL) collects what loaded, also on failure; dispose it
 * either way. */
int cs_daemon_load(cs_daemon *d, cs_daemon_source_fn source, void *payload,
                   cs_daemon_load_result *res, cs_error **err);
void cs_daemon_load_result_dispose(cs_daemon_load_result *res);

#ifdef __cplusplus
}
#endif
#endif
