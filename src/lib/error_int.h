/* Internal error helpers: the function that detects a failure sets the message. */
#ifndef CS_LIB_ERROR_INT_H
#define CS_LIB_ERROR_INT_H

#include <stdarg.h>
#include <cachesync/error.h>

/* Set *err (if err != NULL) and return code. On allocation failure *err points to a static
 * out-of-memory error and CS_ENOMEM is returned instead. */
int csi_error_set(cs_error **err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int csi_error_setv(cs_error **err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* As csi_error_set with code CS_EIO, recording errno and appending strerror(errnum). */
int csi_error_errno(cs_error **err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* As csi_error_set, recording an HTTP status. */
int csi_error_http(cs_error **err, int code, long status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prefix context to an existing error ("context: old message"); returns (*err)->code, or
 * CS_ERROR when there is no error. Use only at layer boundaries. */
int csi_error_wrap(cs_error **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Out of memory, without allocating. */
int csi_error_oom(cs_error **err);

#endif
