/* Fuzz target: the daemon's JSON message streams. The first two bytes pick how the rest is cut
 * into chunks and the per-message cap; the stream must give the same messages, classifications
 * and result whether fed whole or in those chunks. Built with -fsanitize=fuzzer, and with
 * replay.c so the corpus runs in `make check`. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every message and its classification, rendered, so two runs can be compared. */
static int
record(void *payload, json_t *msg, cs_error **err)
{
    cs_buf *out = payload;
    csi_engine_msg m;
    char *s;
    int ret;

    csi_engine_msg_classify(&m, msg);
    /* walk what the classifier returned so a bad pointer shows up under ASan */
    if (m.error != NULL && m.error[0] == '\0')
        __builtin_trap();
    s = json_dumps(msg, JSON_COMPACT | JSON_SORT_KEYS);
    if (s == NULL)
        __builtin_trap();
    ret = cs_buf_printf(out, err, "%s|e=%zu:%lld|s=%zu|t=%zu|i=%zu|a=%d\n", s,
                        m.error ? strlen(m.error) : (size_t)-1, (long long)m.error_code,
                        m.stream ? strlen(m.stream) : (size_t)-1,
                        m.status ? strlen(m.status) : (size_t)-1, m.id ? strlen(m.id) : (size_t)-1,
                        m.aux != NULL);
    free(s);
    return ret;
}

/* Feed DATA cut into chunks of 1..(pattern % 17 + 1) bytes (pattern 0: whole), then finish. */
static int
run(cs_buf *out, const char *data, size_t size, unsigned pattern, size_t max)
{
    csi_jsonstream js;
    cs_error *err = NULL;
    size_t off = 0, step = 1;
    int ret = 0;

    csi_jsonstream_init(&js, max, "fuzz", record, out);
    while (off < size && ret == 0) {
        size_t n = pattern == 0 ? size - off : (step++ * 7 + pattern) % (pattern % 17 + 1) + 1;

        if (n > size - off)
            n = size - off;
        ret = csi_jsonstream_feed(&js, data + off, n, &err);
        off += n;
    }
    if (ret == 0)
        ret = csi_jsonstream_finish(&js, &err);
    if ((ret < 0) != (err != NULL) || (err != NULL && err->code != ret))
        __builtin_trap();
    /* a stream never keeps more than its cap waiting */
    if (js.pending.len > js.max)
        __builtin_trap();
    cs_error_free(err);
    csi_jsonstream_dispose(&js);
    return ret;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cs_buf whole = CS_BUF_INIT, cut = CS_BUF_INIT;
    unsigned pattern;
    size_t max;
    int r1, r2;

    if (size < 2)
        return 0;
    pattern = data[0];
    /* a small cap makes CS_ELIMIT reachable; 0 keeps the real 1 MiB */
    max = data[1] == 0 ? 0 : (size_t)data[1] * 2;
    data += 2;
    size -= 2;
    r1 = run(&whole, (const char *)data, size, 0, max);
    r2 = run(&cut, (const char *)data, size, pattern | 1, max);
    if (r1 != r2 || whole.len != cut.len ||
        (whole.len > 0 && memcmp(whole.ptr, cut.ptr, whole.len) != 0))
        __builtin_trap();
    cs_buf_dispose(&whole);
    cs_buf_dispose(&cut);
    return 0;
}
