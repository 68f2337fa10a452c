/* Newline-separated JSON message streams; see jsonstream.h. */
#include "config.h"

#include <string.h>

#include "error_int.h"
#include "json.h"
#include "jsonstream.h"

void
csi_jsonstream_init(csi_jsonstream *js, size_t max, const char *what, csi_jsonstream_fn cb,
                    void *payload)
{
    memset(js, 0, sizeof(*js));
    /* the cap is enforced here, before appending, so the buffer itself needs none */
    cs_buf_init(&js->pending, 0);
    js->max = max ? max : CSI_JSONSTREAM_MAX_DEFAULT;
    js->what = what ? what : "JSON stream";
    js->cb = cb;
    js->payload = payload;
}

void
csi_jsonstream_dispose(csi_jsonstream *js)
{
    if (js == NULL)
        return;
    cs_buf_dispose(&js->pending);
}

static int
fail(csi_jsonstream *js, int code)
{
    js->failed = code;
    return code;
}

static int
over_limit(csi_jsonstream *js, cs_error **err)
{
    csi_error_set(err, CS_ELIMIT, "%s: message on line %llu is over the %zu-byte limit", js->what,
                  (unsigned long long)js->nlines + 1, js->max);
    return fail(js, CS_ELIMIT);
}

static bool
is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Parse one complete line (without its "\n"): zero or more JSON objects. */
static int
parse_line(csi_jsonstream *js, const char *line, size_t len, cs_error **err)
{
    size_t pos = 0;
    int ret;

    if (len > js->max)
        return over_limit(js, err);
    js->nlines++;
    for (;;) {
        json_error_t jerr;
        json_t *msg;

        while (pos < len && is_blank(line[pos]))
            pos++;
        if (pos == len)
            return 0;
        /* DISABLE_EOF_CHECK: stop after one value, so "{..}{..}" yields both, as Go's
         * json.Decoder (which the docker CLI uses on these streams) would; without
         * JSON_DECODE_ANY only an object or array is accepted. */
        msg = json_loadb(line + pos, len - pos, JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL, &jerr);
        if (msg == NULL) {
            csi_error_set(err, CS_EPROTO, "%s: line %llu is not valid JSON (%s at byte %zu)",
                          js->what, (unsigned long long)js->nlines, csi_json_reason(&jerr),
                          pos + (jerr.position > 0 ? (size_t)jerr.position : 0));
            return fail(js, CS_EPROTO);
        }
        if (!json_is_object(msg) || jerr.position <= 0) {
            json_decref(msg);
            csi_error_set(err, CS_EPROTO, "%s: line %llu holds a JSON value that is not an object",
                          js->what, (unsigned long long)js->nlines);
            return fail(js, CS_EPROTO);
        }
        pos += (size_t)jerr.position;
        js->nmessages++;
        ret = js->cb ? js->cb(js->payload, msg, err) : 0;
        json_decref(msg);
        if (ret < 0)
            return fail(js, ret);
    }
}

int
csi_jsonstream_feed(csi_jsonstream *js, const char *data, size_t len, cs_error **err)
{
    const char *nl;
    size_t n;
    int ret;

    if (js->failed)
        return csi_error_set(err, js->failed, "%s: fed after a failure", js->what);
    while (len > 0) {
        nl = memchr(data, '\n', len);
        if (nl == NULL) {
            if (js->pending.len + len > js->max)
                return over_limit(js, err);
            ret = cs_buf_append(&js->pending, data, len, err);
            return ret < 0 ? fail(js, ret) : 0;
        }
        n = (size_t)(nl - data);
        if (js->pending.len == 0) {
            /* the whole line is in this chunk: parse it in place, no copy */
            ret = parse_line(js, data, n, err);
        } else {
            if (js->pending.len + n > js->max)
                return over_limit(js, err);
            ret = cs_buf_append(&js->pending, data, n, err);
            if (ret < 0)
                return fail(js, ret);
            ret = parse_line(js, js->pending.ptr, js->pending.len, err);
            cs_buf_clear(&js->pending);
        }
        if (ret < 0)
            return ret;
        data = nl + 1;
        len -= n + 1;
    }
    return 0;
}

int
csi_jsonstream_finish(csi_jsonstream *js, cs_error **err)
{
    int ret;

    if (js->failed)
        return csi_error_set(err, js->failed, "%s: finished after a failure", js->what);
    if (js->pending.len == 0)
        return 0;
    ret = parse_line(js, js->pending.ptr, js->pending.len, err);
    cs_buf_clear(&js->pending);
    return ret;
}

void
csi_engine_msg_classify(csi_engine_msg *out, const json_t *msg)
{
    const json_t *detail = json_object_get(msg, "errorDetail");
    const json_t *error = json_object_get(msg, "error");
    const char *text = NULL;
    int64_t code = 0;

    memset(out, 0, sizeof(*out));
    if (detail != NULL && !json_is_null(detail)) {
        text = csi_json_str(detail, "message");
        if (csi_json_int(&code, detail, "code") == 0)
            out->error_code = code;
    }
    /* "error" is the older, flat copy of errorDetail.message (moby JSONMessage.ErrorMessage) */
    if ((text == NULL || *text == '\0') && json_is_string(error) && *json_string_value(error))
        text = json_string_value(error);
    if (text != NULL && *text != '\0')
        out->error = text;
    else if ((detail != NULL && !json_is_null(detail)) || (error != NULL && !json_is_null(error)))
        out->error = "unspecified error";
    out->stream = csi_json_str(msg, "stream");
    out->status = csi_json_str(msg, "status");
    out->id = csi_json_str(msg, "id");
    out->aux = json_object_get(msg, "aux");
    if (json_is_null(out->aux))
        out->aux = NULL;
}
