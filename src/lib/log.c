#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include "log_int.h"

static cs_log_cb log_cb;
static void *log_payload;
static cs_log_level log_min = CS_LOG_WARN;

void
cs_log_set_callback(cs_log_cb cb, cs_log_level min_level, void *payload)
{
    log_cb = cb;
    log_min = min_level;
    log_payload = payload;
}

int
csi_log_enabled(cs_log_level level)
{
    return log_cb != NULL && level >= log_min;
}

void
csi_log(cs_log_level level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    if (!csi_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    log_cb(level, line, log_payload);
}
