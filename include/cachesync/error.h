/* cachesync: error reporting.
 *
 * Every fallible function returns an int: 0 on success or a negative cs_status on failure,
 * and takes `cs_error **err` as its last parameter. On failure *err (when err is not NULL)
 * receives a newly allocated error describing what failed and where; on success *err is
 * left untouched. Free with cs_error_free().
 */
#ifndef CACHESYNC_ERROR_H
#define CACHESYNC_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CS_OK = 0,
    CS_ERROR = -1,         /* generic or unexpected */
    CS_ENOMEM = -2,        /* out of memory */
    CS_EINVAL = -3,        /* bad argument or malformed user input (a reference, an option) */
    CS_ENOTFOUND = -4,     /* unknown repository, tag, blob, file */
    CS_EEXISTS = -5,       /* already exists */
    CS_EAUTH = -6,         /* 401/403 after credentials were tried */
    CS_EDIGEST = -7,       /* content digest or size mismatch */
    CS_EPROTO = -8,        /* peer violated the protocol: bad status, bad JSON, bad tar */
    CS_ENET = -9,          /* transport failure: connect, TLS, reset */
    CS_EIO = -10,          /* OS or file error; sys_errno is set */
    CS_EUNSUPPORTED = -11, /* media type, API version or feature not supported */
    CS_ECANCELED = -12,    /* a callback asked to stop */
    CS_ELIMIT = -13,       /* input over a size or count cap */
} cs_status;

typedef struct cs_error {
    int code;         /* a cs_status, < 0 */
    int sys_errno;    /* errno when code == CS_EIO, else 0 */
    long http_status; /* HTTP status when the failure was an HTTP answer, else 0 */
    char *message;    /* "context: cause", one line, no trailing newline */
} cs_error;

/** Free an error; NULL and the static out-of-memory error are accepted. */
void cs_error_free(cs_error *err);

/** A short constant description of a cs_status code. */
const char *cs_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
