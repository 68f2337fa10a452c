/* Incremental parser of the Docker daemon's JSON message streams (newline-separated JSON
 * objects, as moby's streamformatter writes them with "\r\n" after each), fed chunks cut
 * anywhere, plus a classifier of one Engine API message (api/types/jsonstream/message.go).
 * Pure: no I/O. Also serves the other daemon streams (push, pull, build progress). */
#ifndef CS_LIB_JSONSTREAM_H
#define CS_LIB_JSONSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include <cachesync/buf.h>
#include <cachesync/error.h>

/* One message line may hold at most this many bytes unless the parser is given another cap. */
#define CSI_JSONSTREAM_MAX_DEFAULT (1024u * 1024)

/* Called once per message in stream order. MSG is a JSON object, borrowed for the call only
 * (json_incref it to keep it). Return < 0 (setting *err) to stop the stream. */
typedef int (*csi_jsonstream_fn)(void *payload, json_t *msg, cs_error **err);

typedef struct csi_jsonstream {
    cs_buf pending; /* the start of a message whose newline has not arrived yet */
    size_t max;     /* cap on one message line, without its line terminator */
    uint64_t nmessages;
    uint64_t nlines;
    const char *what; /* names the stream in errors ("docker load answer") */
    csi_jsonstream_fn cb;
    void *payload;
    int failed; /* sticky: the cs_status of the first failure, 0 while fine */
} csi_jsonstream;

/* Prepare JS. MAX 0 = CSI_JSONSTREAM_MAX_DEFAULT. WHAT must outlive the parser. */
void csi_jsonstream_init(csi_jsonstream *js, size_t max, const char *what, csi_jsonstream_fn cb,
                         void *payload);

/* Feed the next LEN bytes. Every complete line is parsed and handed to the callback before
 * this returns. Blank lines and a "\r" before "\n" are ignored; several objects on one line
 * are parsed one by one (as Go's json.Decoder would). A line that is not JSON objects is
 * CS_EPROTO, a line over the cap CS_ELIMIT (reported as soon as the cap is passed, before
 * its newline). After a failure every further call fails with the same code. */
int csi_jsonstream_feed(csi_jsonstream *js, const char *data, size_t len, cs_error **err);

/* End of stream: parse a last line that had no newline. */
int csi_jsonstream_finish(csi_jsonstream *js, cs_error **err);

void csi_jsonstream_dispose(csi_jsonstream *js);

/* What one Engine API message says; every pointer borrows from the message (NULL if absent). */
typedef struct csi_engine_msg {
    const char *error;  /* errorDetail.message, else error; set whenever either is present */
    int64_t error_code; /* errorDetail.code, 0 when none */
    const char *stream; /* "stream": builder/load output text, usually newline-terminated */
    const char *status; /* "status": progress status ("Loading layer") */
    const char *id;     /* "id": the layer or image the status is about */
    const json_t *aux;  /* "aux": structured side data (push digests, build IDs) */
} csi_engine_msg;

/* Classify MSG (a JSON object). A message is an error when it has a non-null "errorDetail" or
 * "error" member, even one without text (then error reads "unspecified error"). */
void csi_engine_msg_classify(csi_engine_msg *out, const json_t *msg);

#endif
