/* Internal: what the daemon client's source files share (daemon.c: opening, version
 * negotiation, request plumbing, info; daemon_images.c: the image endpoints). */
#ifndef CS_LIB_DAEMON_INT_H
#define CS_LIB_DAEMON_INT_H

#include <jansson.h>

#include <cachesync/daemon.h>
#include "http.h"

/* Cap on small answers: /_ping, and the error bodies of requests whose success has none. */
#define CSI_DAEMON_PING_MAX (64u * 1024)
/* Bytes of a daemon's error text we quote. */
#define CSI_DAEMON_ERROR_TEXT_MAX 300

struct cs_daemon {
    char *host;        /* "unix:///var/run/docker.sock": names the daemon in errors */
    char *socket_path; /* "/var/run/docker.sock" */
    csi_http *http;
    char api[16]; /* negotiated API version, "" until the first ping */
    cs_daemon_info *info;
};

/* Perform REQ against PATH ("/images/json") under the negotiated version (pinging first if
 * need be); any HTTP status is a success here. A failing body source or sink keeps its own
 * error; a transport failure says what to do about the socket. */
int csi_daemon_call(csi_http_resp *resp, cs_daemon *d, csi_http_req *req, const char *path,
                    cs_error **err);

/* An error for a non-2xx answer RESP to WHAT ("inspect image app:1"): 400 -> CS_EINVAL,
 * 401/403 -> CS_EAUTH, 404 -> CS_ENOTFOUND, 409 -> CS_EEXISTS, else CS_EPROTO; with the
 * daemon's own message. */
int csi_daemon_status_error(cs_daemon *d, const csi_http_resp *resp, const char *what,
                            cs_error **err);

/* GET PATH and parse the 200 answer as a JSON object; a non-200 is a status error for WHAT. */
int csi_daemon_get_object(json_t **out, cs_daemon *d, const char *path, const char *what,
                          cs_error **err);

/* *OUT = a copy of OBJ's string member KEY, or "" when it has none. */
int csi_daemon_dup_or_empty(char **out, const json_t *obj, const char *key, cs_error **err);

#endif
