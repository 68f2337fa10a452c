/* cachesync: the library never prints; it hands log lines to a callback the program sets. */
#ifndef CACHESYNC_LOG_H
#define CACHESYNC_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CS_LOG_DEBUG = 0, CS_LOG_INFO = 1, CS_LOG_WARN = 2 } cs_log_level;

/** Called with one line (no newline). Secrets are already redacted. */
typedef void (*cs_log_cb)(cs_log_level level, const char *line, void *payload);

/** Set the process-wide log callback (NULL to silence) and the lowest level passed to it. */
void cs_log_set_callback(cs_log_cb cb, cs_log_level min_level, void *payload);

#ifdef __cplusplus
}
#endif
#endif
