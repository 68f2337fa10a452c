/* The daemon's JSON message streams (src/lib/jsonstream.c). */
#include "config.h"

#include "cs_test.h"
#include "error_int.h"
#include "jsonstream.h"

/* A real answer of dockerd 20.10.24 to POST /images/load?quiet=0 (a new layer), then the
 * quiet answers seen for a load without a tag and a failed load: streamformatter ends every
 * message with "\r\n". */
static const char load_stream[] =
    "{\"status\":\"Loading layer\",\"progressDetail\":{\"current\":32768,\"total\":307200},"
    "\"progress\":\"[=====\\u003e                                             ]  "
    "32.77kB/307.2kB\",\"id\":\"56ce09283850\"}\r\n"
    "{\"status\":\"Loading layer\",\"progressDetail\":{\"current\":307200,\"total\":307200},"
    "\"progress\":\"[==================================================\\u003e]  "
    "307.2kB/307.2kB\",\"id\":\"56ce09283850\"}\r\n"
    "{\"stream\":\"Loaded image: cs-test/new:1\\n\"}\r\n"
    "{\"stream\":\"Loaded image ID: "
    "sha256:c77515a6601f64c5f4c476dbbf716d6d8d9b84d9f446e7af74b382ef8d021dbd\\n\"}\r\n"
    "\r\n"
    "  {\"a\":1} {\"b\":[1,2,{\"c\":null}]}\t\r\n"
    "{\"errorDetail\":{\"message\":\"open /x/l/layer.tar: no such file or directory\"},"
    "\"error\":\"open /x/l/layer.tar: no such file or directory\"}\r\n";

#define LOAD_STREAM_MESSAGES 7

/* Collects every message as compact, key-sorted JSON, one per line. */
typedef struct collect {
    cs_buf out;
    size_t n;
    int stop_at; /* return CS_ECANCELED on this message (1-based); 0 = never */
} collect;

static int
collect_cb(void *payload, json_t *msg, cs_error **err)
{
    collect *c = payload;
    char *s;
    int ret;

    c->n++;
    if (c->stop_at > 0 && (size_t)c->stop_at == c->n)
        return csi_error_set(err, CS_ECANCELED, "stopped by the callback");
    s = json_dumps(msg, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    ck_assert_ptr_nonnull(s);
    ret = cs_buf_printf(&c->out, NULL, "%s\n", s);
    ck_assert_int_eq(ret, 0);
    free(s);
    return 0;
}

/* Feed DATA in pieces ending at the offsets CUTS (ascending, < len), then finish. */
static int
run_cuts(collect *c, const char *data, size_t len, const size_t *cuts, size_t ncuts, size_t max,
         cs_error **err)
{
    csi_jsonstream js;
    size_t from = 0, i;
    int ret = 0;

    memset(c, 0, sizeof(*c));
    csi_jsonstream_init(&js, max, "test stream", collect_cb, c);
    for (i = 0; i <= ncuts && ret == 0; i++) {
        size_t to = i < ncuts ? cuts[i] : len;

        ret = csi_jsonstream_feed(&js, data + from, to - from, err);
        from = to;
    }
    if (ret == 0)
        ret = csi_jsonstream_finish(&js, err);
    csi_jsonstream_dispose(&js);
    return ret;
}

static int
run_whole(collect *c, const char *data, size_t len, size_t max, cs_error **err)
{
    return run_cuts(c, data, len, NULL, 0, max, err);
}

START_TEST(test_every_split_position)
{
    const size_t len = sizeof(load_stream) - 1;
    collect ref, c;
    cs_error *err = NULL;
    size_t cut[2];
    int ret;

    /* the stream ends with an error message, which parses: the classifier judges it */
    ck_assert_cs_ok(run_whole(&ref, load_stream, len, 0, &err), &err);
    ck_assert_uint_eq(ref.n, LOAD_STREAM_MESSAGES);
    for (cut[0] = 0; cut[0] <= len; cut[0]++) {
        ret = run_cuts(&c, load_stream, len, cut, 1, 0, &err);
        ck_assert_msg(ret == 0, "cut at %zu: %s", cut[0], err ? err->message : "");
        ck_assert_uint_eq(c.n, ref.n);
        ck_assert_str_eq(c.out.ptr, ref.out.ptr);
        cs_buf_dispose(&c.out);
    }
    /* two cuts, every pair within the first messages (the rest is covered by one cut) */
    for (cut[0] = 0; cut[0] < 260; cut[0]++) {
        for (cut[1] = cut[0]; cut[1] < 260; cut[1] += 7) {
            ck_assert_int_eq(run_cuts(&c, load_stream, len, cut, 2, 0, &err), 0);
            ck_assert_str_eq(c.out.ptr, ref.out.ptr);
            cs_buf_dispose(&c.out);
        }
    }
    cs_buf_dispose(&ref.out);
}
END_TEST

START_TEST(test_byte_by_byte)
{
    const size_t len = sizeof(load_stream) - 1;
    collect ref, c;
    cs_error *err = NULL;
    size_t *cuts = malloc(len * sizeof(*cuts)), i;

    ck_assert_ptr_nonnull(cuts);
    for (i = 0; i < len; i++)
        cuts[i] = i;
    ck_assert_cs_ok(run_whole(&ref, load_stream, len, 0, &err), &err);
    ck_assert_cs_ok(run_cuts(&c, load_stream, len, cuts, len, 0, &err), &err);
    ck_assert_str_eq(c.out.ptr, ref.out.ptr);
    ck_assert_str_eq(ref.out.ptr,
                     "{\"id\":\"56ce09283850\",\"progress\":\"[=====>                       "
                     "                      ]  32.77kB/307.2kB\",\"progressDetail\":{\"current\":"
                     "32768,\"total\":307200},\"status\":\"Loading layer\"}\n"
                     "{\"id\":\"56ce09283850\",\"progress\":\"[================================"
                     "==================>]  307.2kB/307.2kB\",\"progressDetail\":{\"current\":"
                     "307200,\"total\":307200},\"status\":\"Loading layer\"}\n"
                     "{\"stream\":\"Loaded image: cs-test/new:1\\n\"}\n"
                     "{\"stream\":\"Loaded image ID: sha256:c77515a6601f64c5f4c476dbbf716d6d8d9b"
                     "84d9f446e7af74b382ef8d021dbd\\n\"}\n"
                     "{\"a\":1}\n"
                     "{\"b\":[1,2,{\"c\":null}]}\n"
                     "{\"error\":\"open /x/l/layer.tar: no such file or directory\","
                     "\"errorDetail\":{\"message\":\"open /x/l/layer.tar: no such file or "
                     "directory\"}}\n");
    cs_buf_dispose(&ref.out);
    cs_buf_dispose(&c.out);
    free(cuts);
}
END_TEST

START_TEST(test_crlf_and_blank_lines)
{
    static const char in[] = "\r\n\n  \t\r\n{\"status\":\"a\"}\r\n\r\n{\"status\":\"b\"}\n"
                             "{\"status\":\"c\"}\r";
    collect c;
    cs_error *err = NULL;

    ck_assert_cs_ok(run_whole(&c, in, sizeof(in) - 1, 0, &err), &err);
    ck_assert_uint_eq(c.n, 3);
    ck_assert_str_eq(c.out.ptr, "{\"status\":\"a\"}\n{\"status\":\"b\"}\n{\"status\":\"c\"}\n");
    cs_buf_dispose(&c.out);
}
END_TEST

START_TEST(test_last_message_without_newline)
{
    static const char in[] = "{\"stream\":\"x\"}\n{\"stream\":\"y\"}";
    csi_jsonstream js;
    collect c = {0};
    cs_error *err = NULL;

    csi_jsonstream_init(&js, 0, "s", collect_cb, &c);
    ck_assert_cs_ok(csi_jsonstream_feed(&js, in, sizeof(in) - 1, &err), &err);
    ck_assert_uint_eq(c.n, 1); /* the second waits for its newline or the end */
    ck_assert_cs_ok(csi_jsonstream_finish(&js, &err), &err);
    ck_assert_uint_eq(c.n, 2);
    ck_assert_uint_eq(js.nmessages, 2);
    csi_jsonstream_dispose(&js);
    cs_buf_dispose(&c.out);
}
END_TEST

START_TEST(test_error_line)
{
    static const char in[] =
        "{\"errorDetail\":{\"message\":\"Error processing tar file(exit status 1): archive/tar: "
        "invalid tar header\"},\"error\":\"Error processing tar file(exit status 1): "
        "archive/tar: invalid tar header\"}\r\n";
    json_t *msg;
    csi_engine_msg m;

    msg = json_loadb(in, sizeof(in) - 1, 0, NULL);
    ck_assert_ptr_nonnull(msg);
    csi_engine_msg_classify(&m, msg);
    ck_assert_str_eq(m.error,
                     "Error processing tar file(exit status 1): archive/tar: invalid tar header");
    ck_assert_ptr_null(m.stream);
    ck_assert_ptr_null(m.status);
    json_decref(msg);
}
END_TEST

static void
classify_case(const char *json, const char *error, int64_t code, const char *stream,
              const char *status, const char *id, bool aux)
{
    json_t *msg = json_loads(json, 0, NULL);
    csi_engine_msg m;

    ck_assert_msg(msg != NULL, "bad test JSON %s", json);
    csi_engine_msg_classify(&m, msg);
    if (error == NULL)
        ck_assert_msg(m.error == NULL, "%s: error %s", json, m.error);
    else
        ck_assert_msg(m.error != NULL && strcmp(m.error, error) == 0, "%s: error %s", json,
                      m.error ? m.error : "(null)");
    ck_assert_int_eq(m.error_code, code);
    ck_assert_msg((m.stream == NULL) == (stream == NULL), "%s: stream", json);
    if (stream != NULL)
        ck_assert_str_eq(m.stream, stream);
    ck_assert_msg((m.status == NULL) == (status == NULL), "%s: status", json);
    if (status != NULL)
        ck_assert_str_eq(m.status, status);
    ck_assert_msg((m.id == NULL) == (id == NULL), "%s: id", json);
    if (id != NULL)
        ck_assert_str_eq(m.id, id);
    ck_assert_msg((m.aux != NULL) == aux, "%s: aux", json);
    json_decref(msg);
}

START_TEST(test_classify)
{
    classify_case("{\"stream\":\"Loaded image: a:1\\n\"}", NULL, 0, "Loaded image: a:1\n", NULL,
                  NULL, false);
    classify_case("{\"status\":\"Loading layer\",\"id\":\"abc\",\"progressDetail\":{}}", NULL, 0,
                  NULL, "Loading layer", "abc", false);
    classify_case("{\"aux\":{\"ID\":\"sha256:x\"}}", NULL, 0, NULL, NULL, NULL, true);
    classify_case("{\"aux\":null}", NULL, 0, NULL, NULL, NULL, false);
    /* errorDetail wins over error; its code is kept */
    classify_case("{\"errorDetail\":{\"code\":401,\"message\":\"denied\"},\"error\":\"other\"}",
                  "denied", 401, NULL, NULL, NULL, false);
    /* the flat "error" alone (older daemons, other tools) */
    classify_case("{\"error\":\"unexpected EOF\"}", "unexpected EOF", 0, NULL, NULL, NULL, false);
    /* errorDetail without text still fails, with error's text if any */
    classify_case("{\"errorDetail\":{\"message\":\"\"},\"error\":\"flat\"}", "flat", 0, NULL, NULL,
                  NULL, false);
    classify_case("{\"errorDetail\":{}}", "unspecified error", 0, NULL, NULL, NULL, false);
    classify_case("{\"errorDetail\":{\"message\":5}}", "unspecified error", 0, NULL, NULL, NULL,
                  false);
    classify_case("{\"error\":\"\"}", "unspecified error", 0, NULL, NULL, NULL, false);
    classify_case("{\"error\":{\"x\":1}}", "unspecified error", 0, NULL, NULL, NULL, false);
    /* null members are absent (Go's omitempty pointers) */
    classify_case("{\"errorDetail\":null,\"error\":null,\"stream\":\"s\"}", NULL, 0, "s", NULL,
                  NULL, false);
    /* wrong types are ignored, not trusted */
    classify_case("{\"stream\":1,\"status\":[],\"id\":{}}", NULL, 0, NULL, NULL, NULL, false);
    classify_case("{}", NULL, 0, NULL, NULL, NULL, false);
}
END_TEST

START_TEST(test_huge_line)
{
    const size_t max = CSI_JSONSTREAM_MAX_DEFAULT;
    char *big = malloc(max + 2);
    csi_jsonstream js;
    collect c = {0};
    cs_error *err = NULL;
    size_t off;
    int ret = 0;

    ck_assert_ptr_nonnull(big);
    /* {"s":"xxxx...x"} exactly MAX bytes: accepted */
    memset(big, 'x', max);
    memcpy(big, "{\"s\":\"", 6);
    memcpy(big + max - 2, "\"}", 2);
    big[max] = '\n';
    csi_jsonstream_init(&js, 0, "s", collect_cb, &c);
    ck_assert_cs_ok(csi_jsonstream_feed(&js, big, max + 1, &err), &err);
    ck_assert_uint_eq(c.n, 1);
    /* and the same line split */
    ck_assert_cs_ok(csi_jsonstream_feed(&js, big, 1000, &err), &err);
    ck_assert_cs_ok(csi_jsonstream_feed(&js, big + 1000, max + 1 - 1000, &err), &err);
    ck_assert_uint_eq(c.n, 2);
    csi_jsonstream_dispose(&js);
    cs_buf_dispose(&c.out);

    /* one byte more, fed in 4 KiB chunks: CS_ELIMIT as soon as the cap is passed, before any
     * newline arrives, so an endless line cannot grow the buffer */
    memset(big, 'x', max + 1);
    memcpy(big, "{\"s\":\"", 6);
    memcpy(big + max - 1, "\"}", 2);
    memset(&c, 0, sizeof(c));
    csi_jsonstream_init(&js, 0, "docker load answer", collect_cb, &c);
    for (off = 0; off < max + 1 && ret == 0; off += 4096) {
        size_t n = max + 1 - off < 4096 ? max + 1 - off : 4096;

        ret = csi_jsonstream_feed(&js, big + off, n, &err);
    }
    ck_assert_int_eq(ret, CS_ELIMIT);
    ck_assert_uint_ge(off, max);
    ck_assert_ptr_nonnull(strstr(err->message, "docker load answer"));
    ck_assert_ptr_nonnull(strstr(err->message, "1048576-byte limit"));
    ck_assert_uint_le(js.pending.len, max);
    cs_error_free(err);
    err = NULL;
    /* sticky */
    ck_assert_int_eq(csi_jsonstream_feed(&js, "{}\n", 3, &err), CS_ELIMIT);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_jsonstream_finish(&js, &err), CS_ELIMIT);
    cs_error_free(err);
    err = NULL;
    ck_assert_uint_eq(c.n, 0);
    csi_jsonstream_dispose(&js);

    /* with its newline in one chunk too */
    big[max + 1] = '\n';
    ck_assert_int_eq(run_whole(&c, big, max + 2, 0, &err), CS_ELIMIT);
    cs_error_free(err);
    err = NULL;
    cs_buf_dispose(&c.out);
    free(big);
}
END_TEST

START_TEST(test_small_cap)
{
    static const char in[] = "{\"a\":\"0123456789\"}\n{\"a\":\"01234567890123456789\"}\n";
    collect c;
    cs_error *err = NULL;

    /* 18 bytes pass a cap of 18; the 28-byte second line does not */
    ck_assert_int_eq(run_whole(&c, in, sizeof(in) - 1, 18, &err), CS_ELIMIT);
    ck_assert_uint_eq(c.n, 1);
    ck_assert_ptr_nonnull(strstr(err->message, "line 2"));
    cs_error_free(err);
    cs_buf_dispose(&c.out);
}
END_TEST

static void
garbage_case(const char *in, int code, size_t delivered, const char *what)
{
    collect c;
    cs_error *err = NULL;
    int ret = run_whole(&c, in, strlen(in), 0, &err);

    ck_assert_msg(ret == code, "%s: got %d, want %d", what, ret, code);
    ck_assert_msg(c.n == delivered, "%s: %zu messages delivered, want %zu", what, c.n, delivered);
    if (code != 0) {
        ck_assert_ptr_nonnull(err);
        ck_assert_int_eq(err->code, code);
        ck_assert_ptr_nonnull(strstr(err->message, "test stream: line"));
        /* the input is never quoted back */
        ck_assert_ptr_null(strstr(err->message, "s3cret"));
    }
    cs_error_free(err);
    cs_buf_dispose(&c.out);
}

START_TEST(test_garbage)
{
    garbage_case("{\"a\":1}\nnot json s3cret\n{\"b\":2}\n", CS_EPROTO, 1, "text");
    garbage_case("{\"a\":1}\n[1,2]\n", CS_EPROTO, 1, "array");
    garbage_case("12\n", CS_EPROTO, 0, "number");
    garbage_case("\"s3cret\"\n", CS_EPROTO, 0, "string");
    garbage_case("{\"a\":1} x\n", CS_EPROTO, 1, "trailing garbage on a line");
    garbage_case("{\"a\":1}{\n", CS_EPROTO, 1, "second object cut");
    garbage_case("{\"a\":\"s3cret\n\"}\n", CS_EPROTO, 0, "newline inside a string");
    garbage_case("{\"a\":1}\n{\"a\":", CS_EPROTO, 1, "truncated at the end");
    garbage_case("{\"a\":\"\xff\xfe\"}\n", CS_EPROTO, 0, "invalid UTF-8");
    garbage_case("{\"a\":\"x\\u0000y\"}\n", 0, 1, "escaped NUL inside a string is data");
    garbage_case("", 0, 0, "empty stream");
}
END_TEST

START_TEST(test_nul_byte_line)
{
    static const char in[] = "{\"a\":1}\n\0\n";
    collect c;
    cs_error *err = NULL;

    ck_assert_int_eq(run_whole(&c, in, sizeof(in) - 1, 0, &err), CS_EPROTO);
    ck_assert_uint_eq(c.n, 1);
    cs_error_free(err);
    cs_buf_dispose(&c.out);
}
END_TEST

START_TEST(test_callback_stops)
{
    csi_jsonstream js;
    collect c = {0};
    cs_error *err = NULL;

    c.stop_at = 2;
    csi_jsonstream_init(&js, 0, "s", collect_cb, &c);
    ck_assert_int_eq(csi_jsonstream_feed(&js, "{}\n{}\n{}\n", 9, &err), CS_ECANCELED);
    ck_assert_str_eq(err->message, "stopped by the callback");
    ck_assert_uint_eq(c.n, 2);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_jsonstream_feed(&js, "{}\n", 3, &err), CS_ECANCELED);
    ck_assert_uint_eq(c.n, 2);
    cs_error_free(err);
    csi_jsonstream_dispose(&js);
    cs_buf_dispose(&c.out);
}
END_TEST

START_TEST(test_no_callback_and_null_err)
{
    csi_jsonstream js;

    /* no callback: messages are only counted; errors without an err pointer still fail */
    csi_jsonstream_init(&js, 0, NULL, NULL, NULL);
    ck_assert_int_eq(csi_jsonstream_feed(&js, "{}\n{} {}\n", 9, NULL), 0);
    ck_assert_uint_eq(js.nmessages, 3);
    ck_assert_uint_eq(js.nlines, 2);
    ck_assert_int_eq(csi_jsonstream_feed(&js, "x\n", 2, NULL), CS_EPROTO);
    ck_assert_int_eq(csi_jsonstream_finish(&js, NULL), CS_EPROTO);
    csi_jsonstream_dispose(&js);
    csi_jsonstream_dispose(NULL);
}
END_TEST

static Suite *
jsonstream_suite(void)
{
    Suite *s = suite_create("jsonstream");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_every_split_position);
    tcase_add_test(tc, test_byte_by_byte);
    tcase_add_test(tc, test_crlf_and_blank_lines);
    tcase_add_test(tc, test_last_message_without_newline);
    tcase_add_test(tc, test_error_line);
    tcase_add_test(tc, test_classify);
    tcase_add_test(tc, test_huge_line);
    tcase_add_test(tc, test_small_cap);
    tcase_add_test(tc, test_garbage);
    tcase_add_test(tc, test_nul_byte_line);
    tcase_add_test(tc, test_callback_stops);
    tcase_add_test(tc, test_no_callback_and_null_err);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(jsonstream_suite)
