/* Internal: the state a pull shares between planning (pull.c) and delivery
 * (pull_deliver.c). */
#ifndef CS_LIB_PULL_INT_H
#define CS_LIB_PULL_INT_H

#include <cachesync/daemon.h>
#include <cachesync/image.h>
#include <cachesync/pull.h>
#include <cachesync/reference.h>
#include <cachesync/store.h>

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
    size_t daemon_prefix;  /* leading layers the daemon holds */
    bool daemon_has_ref;   /* REF already names this image */
    bool daemon_has_image; /* the image is there under another name */
    uint64_t bytes_done;   /* received so far, for progress */
} csi_pull;

void csi_pull_event(csi_pull *p, cs_pull_event ev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int csi_pull_add_delivery(csi_pull *p, const char *target, const char *outcome, cs_error **err);

/* What the daemon holds of the image (sets daemon_* fields). */
int csi_pull_plan_docker(csi_pull *p, cs_error **err);
/* Fetch layers [0, N) into the store (for a daemon that would not skip them). */
int csi_pull_fetch_prefix(csi_pull *p, size_t n, cs_error **err);

/* Deliver from the store (every blob the target needs is there). */
int csi_pull_deliver_docker(csi_pull *p, cs_error **err);
int csi_pull_deliver_archive(csi_pull *p, const cs_target *t, cs_error **err);
int csi_pull_deliver_oci(csi_pull *p, const cs_target *t, cs_error **err);

#endif
