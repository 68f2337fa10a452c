/* Internal jansson helpers: size-capped parsing and typed getters that never crash on
 * untrusted shapes. json_t never crosses the public API. */
#ifndef CS_LIB_JSON_H
#define CS_LIB_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <cachesync/error.h>

/* Parse DATA (LEN bytes, need not be NUL-terminated) as a JSON object. WHAT names the
 * document in errors ("manifest", "image config"). Over MAX bytes is CS_ELIMIT. */
int csi_json_load_object(json_t **out, const char *data, size_t len, size_t max, const char *what,
                         cs_error **err);

/* A short reason for a parse failure that never quotes the input (jansson's own text
 * can quote it, and inputs may hold secrets). */
const char *csi_json_reason(const json_error_t *jerr);

/* Borrowed string member, or NULL when absent or not a string. */
const char *csi_json_str(const json_t *obj, const char *key);

/* Integer member: 0 on success, CS_EPROTO when present but not an integer, CS_ENOTFOUND
 * when absent. */
int csi_json_int(int64_t *out, const json_t *obj, const char *key);

/* Copy of a string member (NULL when absent); CS_ENOMEM on allocation failure. */
int csi_json_strdup(char **out, const json_t *obj, const char *key, cs_error **err);

#endif
