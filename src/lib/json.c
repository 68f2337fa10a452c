#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "error_int.h"
#include "json.h"

int
csi_json_load_object(json_t **out, const char *data, size_t len, size_t max, const char *what,
                     cs_error **err)
{
    json_error_t jerr;
    json_t *root;

    if (len > max)
        return csi_error_set(err, CS_ELIMIT, "%s is %zu bytes, over the %zu-byte limit", what, len,
                             max);
    /* JSON_ALLOW_NUL: a NUL inside a string is data, not the end of the document. */
    root = json_loadb(data, len, JSON_ALLOW_NUL, &jerr);
    if (root == NULL)
        return csi_error_set(err, CS_EPROTO, "%s is not valid JSON: %s at byte %d", what,
                             csi_json_reason(&jerr), jerr.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return csi_error_set(err, CS_EPROTO, "%s is not a JSON object", what);
    }
    *out = root;
    return 0;
}

const char *
csi_json_reason(const json_error_t *jerr)
{
    switch (json_error_code(jerr)) {
    case json_error_premature_end_of_input:
        return "truncated";
    case json_error_invalid_utf8:
        return "invalid UTF-8";
    case json_error_end_of_input_expected:
        return "trailing data";
    case json_error_wrong_type:
        return "not an object";
    case json_error_null_character:
    case json_error_null_byte_in_key:
        return "NUL character";
    case json_error_stack_overflow:
        return "nested too deeply";
    case json_error_numeric_overflow:
        return "number out of range";
    default:
        return "syntax error";
    }
}

const char *
csi_json_str(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

int
csi_json_int(int64_t *out, const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);

    if (v == NULL)
        return CS_ENOTFOUND;
    if (!json_is_integer(v))
        return CS_EPROTO;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

int
csi_json_strdup(char **out, const json_t *obj, const char *key, cs_error **err)
{
    const char *s = csi_json_str(obj, key);

    *out = NULL;
    if (s == NULL)
        return 0;
    *out = strdup(s);
    if (*out == NULL)
        return csi_error_oom(err);
    return 0;
}
