/* cachesync: pull an image from a registry into the store and deliver it to targets.
 *
 * Plan, then execute: resolve REF (or the first fallback that exists), see what the store
 * and each target already hold, fetch only the missing blobs in parallel into the store
 * (verified, resumable), then deliver: the Docker daemon (a docker-archive streamed to
 * /images/load, tagged exactly as REF), an OCI layout, a docker-archive file, or the store
 * alone. Nothing unverified reaches a target. */
#ifndef CACHESYNC_PULL_H
#define CACHESYNC_PULL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cachesync/digest.h>
#include <cachesync/error.h>
#include <cachesync/manifest.h>
#include <cachesync/registry.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CS_TARGET_DOCKER = 1, /* the daemon at DOCKER_HOST */
    CS_TARGET_STORE,      /* the store only */
    CS_TARGET_OCI,        /* an OCI image layout directory */
    CS_TARGET_ARCHIVE,    /* a docker-archive tar file (docker load-able) */
} cs_target_kind;

typedef struct cs_target {
    cs_target_kind kind;
    char *path; /* OCI and ARCHIVE */
    char *tag;  /* OCI: the ref name in index.json, or NULL for REF's tag */
} cs_target;

/** Parse "docker", "store", "oci:DIR[:TAG]" or "archive:FILE". */
int cs_target_parse(cs_target *out, const char *spec, cs_error **err);
void cs_target_dispose(cs_target *t);

typedef enum {
    CS_PULL_RESOLVED,  /* message: which reference served, digest, platform */
    CS_PULL_PLANNED,   /* layers_total, layers_to_fetch, bytes_to_fetch */
    CS_PULL_PROGRESS,  /* a blob's bytes: digest, done, total */
    CS_PULL_FETCHED,   /* a blob verified in the store: digest, total */
    CS_PULL_DELIVERED, /* message: what a target got */
    CS_PULL_NOTE,      /* message: something the user should know */
    CS_PULL_LOADING,   /* the daemon load: done = archive bytes sent so far, total = its size;
                        * once done == total the daemon unpacks and registers the layers */
} cs_pull_event;

typedef struct cs_pull_progress {
    cs_pull_event event;
    const char *digest;
    uint64_t done, total;
    size_t layers_total, layers_to_fetch;
    uint64_t bytes_to_fetch;
    uint64_t bytes_done; /* PROGRESS and FETCHED: all blob bytes received so far */
    const char *message;
} cs_pull_progress;

typedef void (*cs_pull_progress_fn)(const cs_pull_progress *p, void *payload);

typedef struct cs_pull_options {
    const char *ref;
    const char *const *fallbacks; /* tried in order when REF does not exist */
    size_t nfallbacks;
    const cs_target *targets; /* none: the daemon */
    size_t ntargets;
    const char *store_dir;       /* NULL: the default store */
    const cs_platform *platform; /* NULL: the host's */
    int jobs;                    /* parallel transfers; <= 0: 6 */
    cs_registry_options registry;
    const char *docker_host; /* NULL: $DOCKER_HOST */
    cs_pull_progress_fn progress;
    void *progress_payload;
} cs_pull_options;

typedef struct cs_pull_delivery {
    char *target;  /* "docker", "oci:DIR:TAG", ... */
    char *outcome; /* "loaded", "already present", "tagged", "written" */
} cs_pull_delivery;

typedef struct cs_pull_result {
    char *ref;       /* REF, normalised */
    char *served_by; /* the reference that existed: REF or a fallback */
    char top_digest[CS_DIGEST_STRLEN];      /* what the served reference names */
    char manifest_digest[CS_DIGEST_STRLEN]; /* the platform's image manifest */
    char config_digest[CS_DIGEST_STRLEN];   /* the image ID */
    char *platform;
    size_t layers_total;
    size_t layers_fetched;   /* downloaded in this run */
    size_t layers_in_store;  /* already in the store */
    size_t layers_in_daemon; /* held by the daemon: neither fetched nor sent */
    uint64_t bytes_total;    /* compressed size of all layers */
    uint64_t bytes_fetched;  /* body bytes received from the registry */
    cs_pull_delivery *deliveries;
    size_t ndeliveries;
    double seconds;
} cs_pull_result;

int cs_pull(cs_pull_result **out, const cs_pull_options *opts, cs_error **err);
void cs_pull_result_free(cs_pull_result *r);

#ifdef __cplusplus
}
#endif
#endif
