#ifndef CS_LIB_LOG_INT_H
#define CS_LIB_LOG_INT_H

#include <cachesync/log.h>

/* Log one line through the program's callback; cheap when nobody listens at that level. */
void csi_log(cs_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int csi_log_enabled(cs_log_level level);

#endif
