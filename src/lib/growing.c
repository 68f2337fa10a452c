/* A blob being written, followed by a reader: see growing.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error_int.h"
#include "growing.h"

struct cs_growing_blob {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    int fd;
    char *path;
    uint64_t avail;
    enum csi_growing_state state;
    char digest[CS_DIGEST_STRLEN];
    enum csi_growing_upload upload;
    uint64_t sent;
};

int
csi_growing_new(cs_growing_blob **out, const char *path, cs_error **err)
{
    cs_growing_blob *g = calloc(1, sizeof(*g));

    if (g == NULL)
        return csi_error_oom(err);
    g->path = strdup(path);
    if (g->path == NULL) {
        free(g);
        return csi_error_oom(err);
    }
    /* a descriptor of its own, not a dup: a dup shares the writer's file offset, which the
     * reader's lseek would move under the writer's writes */
    g->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (g->fd < 0) {
        int e = errno;

        free(g->path);
        free(g);
        return csi_error_errno(err, e, "open %s", path);
    }
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->refs = 1;
    *out = g;
    return 0;
}

cs_growing_blob *
csi_growing_ref(cs_growing_blob *g)
{
    pthread_mutex_lock(&g->mu);
    g->refs++;
    pthread_mutex_unlock(&g->mu);
    return g;
}

void
csi_growing_unref(cs_growing_blob *g)
{
    int left;

    if (g == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    left = --g->refs;
    pthread_mutex_unlock(&g->mu);
    if (left > 0)
        return;
    close(g->fd);
    free(g->path);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

void
csi_growing_wrote(cs_growing_blob *g, uint64_t avail)
{
    pthread_mutex_lock(&g->mu);
    if (g->state == CSI_GROWING_OPEN && avail > g->avail) {
        g->avail = avail;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
}

void
csi_growing_done(cs_growing_blob *g, const char *digest, uint64_t size)
{
    pthread_mutex_lock(&g->mu);
    if (g->state == CSI_GROWING_OPEN) {
        g->state = CSI_GROWING_DONE;
        g->avail = size;
        snprintf(g->digest, sizeof(g->digest), "%s", digest);
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
}

void
csi_growing_fail(cs_growing_blob *g)
{
    pthread_mutex_lock(&g->mu);
    if (g->state == CSI_GROWING_OPEN) {
        g->state = CSI_GROWING_FAILED;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
}

enum csi_growing_state
csi_growing_wait(cs_growing_blob *g, uint64_t want, uint64_t *avail)
{
    enum csi_growing_state s;

    pthread_mutex_lock(&g->mu);
    while (g->state == CSI_GROWING_OPEN && g->avail < want)
        pthread_cond_wait(&g->cv, &g->mu);
    s = g->state;
    *avail = g->avail;
    pthread_mutex_unlock(&g->mu);
    return s;
}

int
csi_growing_fd(const cs_growing_blob *g)
{
    return g->fd;
}

const char *
csi_growing_path(const cs_growing_blob *g)
{
    return g->path;
}

const char *
csi_growing_digest(const cs_growing_blob *g)
{
    /* written once, under the lock, before the state says done; read after a wait */
    return g->digest;
}

bool
csi_growing_is(cs_growing_blob *g, const char *digest)
{
    bool is;

    pthread_mutex_lock(&g->mu);
    is = g->state == CSI_GROWING_DONE && strcmp(g->digest, digest) == 0;
    pthread_mutex_unlock(&g->mu);
    return is;
}

void
csi_growing_uploaded(cs_growing_blob *g, enum csi_growing_upload how, uint64_t sent)
{
    pthread_mutex_lock(&g->mu);
    g->upload = how;
    g->sent = sent;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

enum csi_growing_upload
csi_growing_upload_wait(cs_growing_blob *g, uint64_t *sent)
{
    enum csi_growing_upload how;

    pthread_mutex_lock(&g->mu);
    while (g->upload == CSI_GROWING_UPLOADING)
        pthread_cond_wait(&g->cv, &g->mu);
    how = g->upload;
    if (sent != NULL)
        *sent = g->sent;
    pthread_mutex_unlock(&g->mu);
    return how;
}
