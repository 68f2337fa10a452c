/* Growable byte buffer with a cap: every network-filled buffer has one. */
#include "config.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cachesync/buf.h>
#include "error_int.h"

void
cs_buf_init(cs_buf *buf, size_t max)
{
    buf->ptr = NULL;
    buf->len = 0;
    buf->cap = 0;
    buf->max = max;
}

static int
grow(cs_buf *buf, size_t extra, cs_error **err)
{
    size_t need, cap;
    char *p;

    if (extra > SIZE_MAX - buf->len - 1)
        return csi_error_set(err, CS_ELIMIT, "buffer size overflow");
    need = buf->len + extra + 1;
    if (buf->max != 0 && need - 1 > buf->max)
        return csi_error_set(err, CS_ELIMIT, "data larger than the %zu-byte limit", buf->max);
    if (need <= buf->cap)
        return 0;
    cap = buf->cap ? buf->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = realloc(buf->ptr, cap);
    if (p == NULL)
        return csi_error_oom(err);
    buf->ptr = p;
    buf->cap = cap;
    return 0;
}

int
cs_buf_append(cs_buf *buf, const void *data, size_t len, cs_error **err)
{
    int ret = grow(buf, len, err);

    if (ret < 0)
        return ret;
    if (len > 0)
        memcpy(buf->ptr + buf->len, data, len);
    buf->len += len;
    buf->ptr[buf->len] = '\0';
    return 0;
}

int
cs_buf_puts(cs_buf *buf, const char *s, cs_error **err)
{
    return cs_buf_append(buf, s, strlen(s), err);
}

int
cs_buf_printf(cs_buf *buf, cs_error **err, const char *fmt, ...)
{
    va_list ap;
    int n, ret;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return csi_error_set(err, CS_EINVAL, "bad format string");
    ret = grow(buf, (size_t)n, err);
    if (ret < 0)
        return ret;
    va_start(ap, fmt);
    vsnprintf(buf->ptr + buf->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf->len += (size_t)n;
    return 0;
}

void
cs_buf_clear(cs_buf *buf)
{
    buf->len = 0;
    if (buf->ptr != NULL)
        buf->ptr[0] = '\0';
}

char *
cs_buf_detach(cs_buf *buf)
{
    char *p = buf->ptr;

    if (p == NULL)
        p = calloc(1, 1);
    buf->ptr = NULL;
    buf->len = 0;
    buf->cap = 0;
    return p;
}

void
cs_buf_dispose(cs_buf *buf)
{
    free(buf->ptr);
    buf->ptr = NULL;
    buf->len = 0;
    buf->cap = 0;
}
