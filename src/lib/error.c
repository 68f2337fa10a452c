/* Error objects: see include/cachesync/error.h and src/lib/error_int.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_int.h"

static char oom_message[] = "out of memory";
static cs_error oom_error = {CS_ENOMEM, 0, 0, oom_message};

void
cs_error_free(cs_error *err)
{
    if (err == NULL || err == &oom_error)
        return;
    free(err->message);
    free(err);
}

const char *
cs_strerror(int code)
{
    switch (code) {
    case CS_OK:
        return "success";
    case CS_ENOMEM:
        return "out of memory";
    case CS_EINVAL:
        return "invalid argument";
    case CS_ENOTFOUND:
        return "not found";
    case CS_EEXISTS:
        return "already exists";
    case CS_EAUTH:
        return "authentication failed";
    case CS_EDIGEST:
        return "integrity check failed";
    case CS_EPROTO:
        return "protocol error";
    case CS_ENET:
        return "network error";
    case CS_EIO:
        return "I/O error";
    case CS_EUNSUPPORTED:
        return "not supported";
    case CS_ECANCELED:
        return "canceled";
    case CS_ELIMIT:
        return "size limit exceeded";
    default:
        return "error";
    }
}

int
csi_error_oom(cs_error **err)
{
    if (err != NULL)
        *err = &oom_error;
    return CS_ENOMEM;
}

static int
error_new(cs_error **err, int code, int sys_errno, long http_status, char *message)
{
    cs_error *e;

    if (message == NULL)
        return csi_error_oom(err);
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        free(message);
        return csi_error_oom(err);
    }
    e->code = code;
    e->sys_errno = sys_errno;
    e->http_status = http_status;
    e->message = message;
    *err = e;
    return code;
}

static char *vformat(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static char *
vformat(const char *fmt, va_list ap)
{
    char *s = NULL;

    if (vasprintf(&s, fmt, ap) < 0)
        return NULL;
    /* Messages quote what peers sent (registries, daemons, files): keep every one a single
     * printable line, whatever they sent (no line breaks, no terminal escapes). */
    for (char *c = s; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' ';
    }
    return s;
}

int
csi_error_setv(cs_error **err, int code, const char *fmt, va_list ap)
{
    if (err == NULL)
        return code;
    return error_new(err, code, 0, 0, vformat(fmt, ap));
}

int
csi_error_set(cs_error **err, int code, const char *fmt, ...)
{
    va_list ap;
    int ret;

    va_start(ap, fmt);
    ret = csi_error_setv(err, code, fmt, ap);
    va_end(ap);
    return ret;
}

int
csi_error_errno(cs_error **err, int errnum, const char *fmt, ...)
{
    va_list ap;
    char *head, *msg = NULL;

    if (err == NULL)
        return CS_EIO;
    va_start(ap, fmt);
    head = vformat(fmt, ap);
    va_end(ap);
    if (head != NULL && asprintf(&msg, "%s: %s", head, strerror(errnum)) < 0)
        msg = NULL;
    free(head);
    return error_new(err, CS_EIO, errnum, 0, msg);
}

int
csi_error_http(cs_error **err, int code, long status, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    va_start(ap, fmt);
    code = error_new(err, code, 0, status, vformat(fmt, ap));
    va_end(ap);
    return code;
}

int
csi_error_wrap(cs_error **err, const char *fmt, ...)
{
    va_list ap;
    char *head, *msg = NULL;
    cs_error *e;

    if (err == NULL || *err == NULL)
        return CS_ERROR;
    e = *err;
    if (e == &oom_error)
        return CS_ENOMEM;
    va_start(ap, fmt);
    head = vformat(fmt, ap);
    va_end(ap);
    if (head == NULL || asprintf(&msg, "%s: %s", head, e->message) < 0) {
        free(head);
        return e->code; /* keep the original message rather than lose it */
    }
    free(head);
    free(e->message);
    e->message = msg;
    return e->code;
}
