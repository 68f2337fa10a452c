/* Internal: the state a pull shares between planning (pull.c) and delivery
 * (pull_deliver.c). */
#ifndef CS_LIB_PULL_INT_H
#define CS_LIB_PULL_INT_H

#include <pthread.h>

#include <cachesync/daemon.h>
#include <cachesync/image.h>
#include <cachesync/pull.h>
#include <cachesync/reference.h>
#include <cachesync/store.h>

/* Streaming a load while the layers download (pull_stream.c): each layer the daemon gets has
 * a slot saying how much of it is in the store so far. */
enum csi_slot_state {
    CSI_SLOT_WAIT,    /* not planned yet */
    CSI_SLOT_WRITING, /* being downloaded: AVAIL bytes are in the partial file */
    CSI_SLOT_DONE,    /* verified and committed */
    CSI_SLOT_FAILED,  /* the download restarted after bytes were sent, or failed */
};

typedef struct csi_pull_stream csi_pull_stream;

typedef struct csi_pull_slot {
    csi_pull_stream *st;
    struct csi_pull_slot *alias; /* the same blob earlier in the image */
    enum csi_slot_state state;
    int fd; /* the blob, or the partial file being written (which survives its rename) */
    uint64_t size, avail;
    bool read_any;
    /* the layer goes to the daemon decompressed (a blob of ours: csi_pull_slot_size) */
    bool raw;
    uint64_t raw_size;
    struct csi_pgunzip *unz; /* while it streams */
} csi_pull_slot;

typedef struct csi_pull csi_pull;

struct csi_pull_stream {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    csi_pull_slot *slots; /* one per layer */
    size_t nslots;
    bool fetch_over; /* no slot changes any more: readers of unfinished ones give up */
    pthread_t thread;
    bool started;
    int load_ret;
    cs_error *load_err;
};

typedef struct csi_pull {
    const cs_pull_options *opts;
    cs_pull_result *res;
    cs_reference *ref;    /* REF as asked */
    cs_reference *served; /* the reference that existed */
    cs_registry *reg;
    cs_image *img;
    cs_store *store;
    /* the daemon, when a target */
    cs_daemon *daemon;
    const cs_daemon_info *dinfo;
    size_t daemon_prefix;     /* leading layers the daemon holds */
    bool daemon_has_ref;      /* REF already names this image */
    bool daemon_has_image;    /* the image is there under another name */
    uint64_t bytes_done;      /* received so far, for progress */
    csi_pull_stream *stream;  /* the load runs while the layers download */
    pthread_mutex_t event_mu; /* progress callbacks come from both threads, one at a time */
} csi_pull;

void csi_pull_event(csi_pull *p, cs_pull_event ev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void csi_pull_event_bytes(csi_pull *p, cs_pull_event ev, const char *digest, uint64_t done,
                          uint64_t total);
int csi_pull_add_delivery(csi_pull *p, const char *target, const char *outcome, cs_error **err);

/* What the daemon holds of the image (sets daemon_* fields). */
int csi_pull_plan_docker(csi_pull *p, cs_error **err);
/* Fetch layers [0, N) into the store (for a daemon that would not skip them). */
int csi_pull_fetch_prefix(csi_pull *p, size_t n, cs_error **err);

/* Would a load streamed during the download work here (no layer needs transcoding)? */
bool csi_pull_stream_possible(const csi_pull *p);
/* Start loading into the daemon while the fetch runs; csi_pull_stream_end after it. */
int csi_pull_stream_start(csi_pull *p, cs_error **err);
/* The fetch is over (FAILED: it failed): wait for the load and return its outcome. */
int csi_pull_stream_end(csi_pull *p, bool failed, cs_error **err);
void csi_pull_stream_free(csi_pull_stream *st);
/* Slot updates from the fetch (no-ops without a stream). */
void csi_pull_slot_ready(csi_pull *p, size_t layer, int fd, uint64_t size, uint64_t avail,
                         bool done);
void csi_pull_slot_alias(csi_pull *p, size_t layer, size_t earlier);
void csi_pull_slot_wrote(csi_pull_slot *s, size_t len);
void csi_pull_slot_restarted(csi_pull_slot *s);
void csi_pull_slot_finished(csi_pull_slot *s, bool ok);
/* csi_archive_reader_fn of a slot: waits for the bytes; the last one once verified */
long csi_pull_slot_read(void *payload, char *buf, size_t len, uint64_t off, cs_error **err);
/* A slot as a csi_archive_add_reader_late entry: csi_pull_slot_size decides, when the stream
 * reaches the layer, whether it goes as its blob or decompressed (see pull_stream.c), and
 * csi_pull_slot_read_layer supplies the bytes either way. */
int csi_pull_slot_size(void *payload, uint64_t *size, cs_error **err);
long csi_pull_slot_read_layer(void *payload, char *buf, size_t len, uint64_t off, cs_error **err);
void csi_pull_slot_dispose(csi_pull_slot *s);

/* A docker-archive of the image for the daemon (pull_deliver.c); with STREAM, layers are read
 * through the stream's slots. */
struct csi_archive;
int csi_pull_build_archive(struct csi_archive **out, csi_pull *p, size_t first,
                           const char *repo_tag, bool transcode, bool stream, cs_error **err);

/* Send archive A to the daemon's load, reporting CS_PULL_LOADING progress. */
int csi_pull_daemon_load(csi_pull *p, struct csi_archive *a, cs_error **err);

/* Deliver from the store (every blob the target needs is there). */
int csi_pull_deliver_docker(csi_pull *p, cs_error **err);
int csi_pull_deliver_archive(csi_pull *p, const cs_target *t, cs_error **err);
int csi_pull_deliver_oci(csi_pull *p, const cs_target *t, cs_error **err);

#endif
