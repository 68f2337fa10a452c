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

/* ---- pure parsers of the daemon's answers (fuzzed: tests/fuzz/fuzz_daemon.c) ----------------- */

/* "1.41" -> 1, 41; false unless it is exactly two dot-separated numbers of at most 1000. */
bool csi_daemon_parse_api_version(const char *s, int *major, int *minor);
/* Leading "MAJOR.MINOR" of a release ("20.10.24+dfsg1"); 0, 0 if none. */
void csi_daemon_parse_release(const char *s, int *major, int *minor);
/* A copy of at most MAX bytes of S with control characters (line breaks, escapes) made spaces
 * and trailing blanks cut: the daemon's words are quoted in one-line errors. */
char *csi_daemon_printable(const char *s, size_t max);
/* The daemon's error body: its {"message": ...}, else its first line; at most
 * CSI_DAEMON_ERROR_TEXT_MAX bytes, malloc'd; NULL when there is none. */
char *csi_daemon_error_text(const char *body, size_t len);
/* GET /version and GET /info answers (VER, INF) -> *OUT; HOST names the daemon in errors, API
 * is the negotiated version. */
int csi_daemon_info_from_json(cs_daemon_info **out, const json_t *ver, const json_t *inf,
                              const char *host, const char *api, cs_error **err);
void csi_daemon_info_free(cs_daemon_info *info);
/* An ImageInspect answer -> *OUT (diff_ids checked to be sha256 digests). */
int csi_daemon_image_from_json(cs_daemon_image **out, const json_t *root, const char *what,
                               cs_error **err);
/* A whole POST /images/load answer (a JSON message stream), fed CHUNK bytes at a time (0: at
 * once), as cs_daemon_load reads it: an error message is CS_EPROTO naming HOST; RES (may be
 * NULL) gets the tags and IDs loaded. */
int csi_daemon_load_answer(cs_daemon_load_result *res, const char *host, const char *data,
                           size_t len, size_t chunk, cs_error **err);

#endif
