/* tar headers (writer and reader), PAX records, path safety, the streaming reader, and the
 * archive producer read back through that reader.
 *
 * Manual check against GNU tar (run once by hand, not part of the suite, which stays pure):
 * an archive written by csi_archive_write_file with a 255-char PAX name, a 150-char
 * prefix-split name, a directory and an empty file lists with `tar -tvf` exactly as added,
 * and `tar -xf` reproduces the contents; archives made by `tar --format=gnu` (long names
 * as 'L' entries) and `tar --format=posix` parse with csi_tar_reader. Those GNU tar files
 * seed tests/fuzz/corpus/fuzz_tar. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include <cachesync/buf.h>
#include "archive.h"
#include "cs_test.h"
#include "error_int.h"
#include "tar.h"

#define OCTAL11 (UINT64_C(1) << 33)

/* ---- helpers --------------------------------------------------------------------------- */

/* A name of LEN bytes with a '/' at each position of SLASHES (a -1 terminated list). */
static char *
make_name(size_t len, const int *slashes)
{
    char *s = malloc(len + 1);
    size_t i;

    ck_assert_ptr_nonnull(s);
    for (i = 0; i < len; i++)
        s[i] = (char)('a' + i % 26);
    for (; slashes != NULL && *slashes >= 0; slashes++)
        s[*slashes] = '/';
    s[len] = '\0';
    return s;
}

/* Parse the header block(s) at P (as csi_tar_header wrote them) into E, applying a PAX
 * header if there is one; returns the bytes consumed. */
static size_t
parse_written(csi_tar_entry *e, const char *p, size_t len)
{
    cs_error *err = NULL;
    csi_tar_entry pax = {0};
    size_t used = 0;

    ck_assert_uint_ge(len, CSI_TAR_BLOCK);
    ck_assert_cs_ok(csi_tar_parse_header(e, (const unsigned char *)p, &err), &err);
    if (e->typeflag == CSI_TAR_PAX) {
        size_t plen = (size_t)e->size;

        pax = *e;
        used = CSI_TAR_BLOCK + plen + csi_tar_padding(plen);
        ck_assert_uint_eq(len, used + CSI_TAR_BLOCK);
        ck_assert_cs_ok(csi_tar_parse_header(e, (const unsigned char *)p + used, &err), &err);
        ck_assert_cs_ok(csi_tar_parse_pax(e, p + CSI_TAR_BLOCK, plen, &err), &err);
        csi_tar_entry_dispose(&pax);
    } else {
        ck_assert_uint_eq(len, CSI_TAR_BLOCK);
    }
    /* every header block is ustar */
    ck_assert_int_eq(memcmp(p + used + 257,
                            "ustar\0"
                            "00",
                            8),
                     0);
    return used + CSI_TAR_BLOCK;
}

/* ---- writer -> parser round trips ------------------------------------------------------ */

static const int slash_60[] = {60, -1};
static const int slash_155[] = {155, -1};
static const int slash_10_200[] = {10, 200, -1};

static const struct {
    size_t name_len;
    const int *slashes;
    uint64_t size;
    bool pax; /* an 'x' header is expected */
} rt_cases[] = {
    {1, NULL, 0, false},
    {13, NULL, 1, false},
    {99, NULL, 511, false},
    {100, NULL, 512, false},       /* fills the name field, no NUL */
    {101, NULL, 513, true},        /* no slash: cannot split */
    {150, slash_60, 4096, false},  /* prefix split */
    {256, slash_155, 10, false},   /* longest split: 155 + '/' + 100 */
    {257, slash_155, 10, true},    /* name part 101 */
    {255, NULL, 1, true},          /* PAX path */
    {255, slash_10_200, 1, true},  /* no usable slash */
    {5, NULL, OCTAL11 - 1, false}, /* largest octal size */
    {5, NULL, OCTAL11, true},      /* 8 GiB: PAX + base-256 */
    {5, NULL, UINT64_C(1) << 40, true},
    {300, NULL, UINT64_C(1) << 36, true},
    {4000, NULL, 7, true},
    {5, NULL, (uint64_t)INT64_MAX, true}, /* the largest size, in PAX and base-256 */
};

START_TEST(test_header_roundtrip)
{
    char *name = make_name(rt_cases[_i].name_len, rt_cases[_i].slashes);
    cs_buf out = CS_BUF_INIT;
    csi_tar_entry e = {0};
    cs_error *err = NULL;

    ck_assert_cs_ok(
        csi_tar_header(&out, name, rt_cases[_i].size, 0640, 1700000000, CSI_TAR_REG, &err), &err);
    ck_assert_uint_eq(out.len % CSI_TAR_BLOCK, 0);
    ck_assert_int_eq(((unsigned char *)out.ptr)[156] == CSI_TAR_PAX, rt_cases[_i].pax);
    parse_written(&e, out.ptr, out.len);
    ck_assert_str_eq(e.name, name);
    ck_assert_uint_eq(e.size, rt_cases[_i].size);
    ck_assert_uint_eq(e.mode, 0640);
    ck_assert_int_eq(e.mtime, 1700000000);
    ck_assert_int_eq(e.typeflag, CSI_TAR_REG);
    ck_assert_str_eq(e.linkname, "");
    csi_tar_entry_dispose(&e);
    free(name);
    cs_buf_dispose(&out);
}
END_TEST

START_TEST(test_header_fields)
{
    static const char name[] = "blobs/sha256/"
                               "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                               "/layer.tar.with.a.rather.long.name";
    cs_buf out = CS_BUF_INIT;
    csi_tar_entry e = {0};
    cs_error *err = NULL;

    /* byte-exact against what GNU tar writes for the same fields */
    ck_assert_cs_ok(csi_tar_header(&out, "manifest.json", 1234, 0644, 0, CSI_TAR_REG, &err), &err);
    ck_assert_uint_eq(out.len, CSI_TAR_BLOCK);
    ck_assert_str_eq(out.ptr, "manifest.json");
    ck_assert_str_eq(out.ptr + 100, "0000644");
    ck_assert_str_eq(out.ptr + 124, "00000002322");
    ck_assert_str_eq(out.ptr + 136, "00000000000");
    ck_assert_int_eq(out.ptr[148 + 6], '\0');
    ck_assert_int_eq(out.ptr[148 + 7], ' ');
    ck_assert_int_eq(out.ptr[156], '0');
    cs_buf_clear(&out);

    /* a name over 100 bytes with a slash in reach: prefix split, no PAX */
    ck_assert_uint_gt(strlen(name), 100);
    ck_assert_cs_ok(csi_tar_header(&out, name, 0, 0755, 0, CSI_TAR_DIR, &err), &err);
    ck_assert_uint_eq(out.len, CSI_TAR_BLOCK);
    ck_assert_str_eq(out.ptr + 345, "blobs/sha256");
    ck_assert_int_eq(strncmp(out.ptr, "0123456789abcdef", 16), 0);
    ck_assert_cs_ok(csi_tar_parse_header(&e, (unsigned char *)out.ptr, &err), &err);
    ck_assert_str_eq(e.name, name);
    ck_assert_int_eq(e.typeflag, CSI_TAR_DIR);
    csi_tar_entry_dispose(&e);

    /* negative and huge mtimes go base-256 */
    cs_buf_clear(&out);
    ck_assert_cs_ok(csi_tar_header(&out, "t", 0, 0644, -1, CSI_TAR_REG, &err), &err);
    ck_assert_uint_eq((unsigned char)out.ptr[136], 0xff);
    ck_assert_cs_ok(csi_tar_parse_header(&e, (unsigned char *)out.ptr, &err), &err);
    ck_assert_int_eq(e.mtime, -1);
    csi_tar_entry_dispose(&e);
    cs_buf_clear(&out);
    ck_assert_cs_ok(csi_tar_header(&out, "t", 0, 0644, INT64_C(1) << 40, CSI_TAR_REG, &err), &err);
    ck_assert_cs_ok(csi_tar_parse_header(&e, (unsigned char *)out.ptr, &err), &err);
    ck_assert_int_eq(e.mtime, INT64_C(1) << 40);
    csi_tar_entry_dispose(&e);
    cs_buf_dispose(&out);
}
END_TEST

START_TEST(test_big_size_base256)
{
    cs_buf out = CS_BUF_INIT;
    csi_tar_entry e = {0};
    cs_error *err = NULL;
    uint64_t size = (UINT64_C(1) << 40) + 3;
    size_t skip;

    ck_assert_cs_ok(csi_tar_header(&out, "big.tar", size, 0644, 0, CSI_TAR_REG, &err), &err);
    /* the ustar header alone (a reader that skips PAX) still has the size, in base-256 */
    skip = out.len - CSI_TAR_BLOCK;
    ck_assert_uint_eq((unsigned char)out.ptr[skip + 124], 0x80);
    ck_assert_cs_ok(csi_tar_parse_header(&e, (unsigned char *)out.ptr + skip, &err), &err);
    ck_assert_uint_eq(e.size, size);
    csi_tar_entry_dispose(&e);
    /* and the PAX record says the same */
    ck_assert_ptr_nonnull(strstr(out.ptr + CSI_TAR_BLOCK, "22 size=1099511627779\n"));
    cs_buf_dispose(&out);
}
END_TEST

START_TEST(test_header_bad_args)
{
    cs_buf out = CS_BUF_INIT;
    cs_error *err = NULL;
    char *huge = make_name(CSI_TAR_NAME_MAX + 1, NULL);

    cs_buf_puts(&out, "keep", &err);
    ck_assert_int_eq(csi_tar_header(&out, "", 0, 0644, 0, '0', &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_tar_header(&out, "a", 0, 010644, 0, '0', &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_tar_header(&out, "a", 0, 0644, 0, '\0', &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_tar_header(&out, huge, 0, 0644, 0, '0', &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_tar_header(&out, "a", UINT64_MAX, 0644, 0, '0', &err), CS_EINVAL);
    cs_error_free(err);
    ck_assert_str_eq(out.ptr, "keep");
    free(huge);
    cs_buf_dispose(&out);
}
END_TEST

START_TEST(test_padding)
{
    ck_assert_uint_eq(csi_tar_padding(0), 0);
    ck_assert_uint_eq(csi_tar_padding(1), 511);
    ck_assert_uint_eq(csi_tar_padding(511), 1);
    ck_assert_uint_eq(csi_tar_padding(512), 0);
    ck_assert_uint_eq(csi_tar_padding(513), 511);
    ck_assert_uint_eq(csi_tar_padding(UINT64_MAX), 1);
}
END_TEST

/* ---- header parser ------------------------------------------------------------------------ */

static void
set_checksum(unsigned char *b, bool signed_sum)
{
    int sum = 0;
    size_t i;

    memset(b + 148, ' ', 8);
    for (i = 0; i < CSI_TAR_BLOCK; i++)
        sum += signed_sum ? (signed char)b[i] : b[i];
    snprintf((char *)b + 148, 8, "%06o", sum & 0777777);
}

static void
base_block(unsigned char *b)
{
    cs_buf out = CS_BUF_INIT;
    cs_error *err = NULL;

    ck_assert_cs_ok(csi_tar_header(&out, "file", 10, 0644, 0, CSI_TAR_REG, &err), &err);
    memcpy(b, out.ptr, CSI_TAR_BLOCK);
    cs_buf_dispose(&out);
}

START_TEST(test_checksum)
{
    unsigned char b[CSI_TAR_BLOCK];
    csi_tar_entry e = {0};
    cs_error *err = NULL;

    base_block(b);
    b[0] = 'F';
    ck_assert_int_eq(csi_tar_parse_header(&e, b, &err), CS_EPROTO);
    ck_assert_ptr_nonnull(strstr(err->message, "checksum"));
    ck_assert_ptr_null(e.name);
    cs_error_free(err);
    err = NULL;

    /* high bytes: old tars summed signed chars; both sums are accepted */
    base_block(b);
    b[0] = 0xc3;
    b[1] = 0xa9;
    set_checksum(b, true);
    ck_assert_cs_ok(csi_tar_parse_header(&e, b, &err), &err);
    ck_assert_str_eq(e.name, "\xc3\xa9le");
    csi_tar_entry_dispose(&e);
    set_checksum(b, false);
    ck_assert_cs_ok(csi_tar_parse_header(&e, b, &err), &err);
    csi_tar_entry_dispose(&e);
}
END_TEST

START_TEST(test_zero_block)
{
    unsigned char b[CSI_TAR_BLOCK] = {0};
    csi_tar_entry e = {0};
    cs_error *err = NULL;

    ck_assert_int_eq(csi_tar_parse_header(&e, b, &err), CSI_TAR_ZERO_BLOCK);
    ck_assert_ptr_null(err);
    ck_assert_ptr_null(e.name);
}
END_TEST

/* Mutations of a valid header at OFFSET (LEN bytes of BYTES); each must fail. */
static const struct {
    size_t offset;
    const char *bytes;
    size_t len;
} bad_fields[] = {
    {257, "ustaX", 5},                                             /* magic */
    {257, "\0\0\0\0\0\0", 6},                                      /* V7: unsupported */
    {124, "0000000001x", 11},                                      /* size: bad digit */
    {124, "00000\00000001", 11},                                   /* digits after NUL */
    {124, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe", 12}, /* negative */
    {124, "\x80\x00\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00", 12}, /* over 63 bits */
    {124, "\x80\x00\x00\x00\x80\x00\x00\x00\x00\x00\x00\x00", 12}, /* sign bit */
    {100, "07x7", 4},                                              /* mode */
    {136, "0000000001 1", 12},                                     /* mtime */
    {136, "1-", 2},                                                /* mtime */
};

START_TEST(test_bad_header)
{
    unsigned char b[CSI_TAR_BLOCK];
    csi_tar_entry e = {0};
    cs_error *err = NULL;

    base_block(b);
    memcpy(b + bad_fields[_i].offset, bad_fields[_i].bytes, bad_fields[_i].len);
    set_checksum(b, false);
    ck_assert_int_eq(csi_tar_parse_header(&e, b, &err), CS_EPROTO);
    ck_assert_ptr_null(e.name);
    cs_error_free(err);
}
END_TEST

START_TEST(test_lenient_numbers)
{
    unsigned char b[CSI_TAR_BLOCK];
    csi_tar_entry e = {0};
    cs_error *err = NULL;

    /* leading spaces, space terminator, full-width digits, Go's c_ISREG bits in mode,
     * GNU magic, old '\0' type flag */
    base_block(b);
    memcpy(b + 124, "        12 ", 11);
    memcpy(b + 100, "0100755", 8);
    memcpy(b + 136, "000000000017", 12);
    memcpy(b + 257, "ustar  \0", 8);
    b[156] = '\0';
    set_checksum(b, false);
    ck_assert_cs_ok(csi_tar_parse_header(&e, b, &err), &err);
    ck_assert_uint_eq(e.size, 10);
    ck_assert_uint_eq(e.mode, 0755);
    ck_assert_int_eq(e.mtime, 15);
    ck_assert_int_eq(e.typeflag, CSI_TAR_REG);
    csi_tar_entry_dispose(&e);
}
END_TEST

/* ---- PAX records ----------------------------------------------------------------------- */

START_TEST(test_pax_records)
{
    static const char recs[] = "30 mtime=1700000000.123456789\n"
                               "21 path=dir/file.txt\n"
                               "15 size=123456\n"
                               "19 linkpath=target\n"
                               "25 SCHILY.xattr.user.a=b\n"
                               "5 x=\n"
                               "8 path=\n";
    csi_tar_entry e = {0};
    cs_error *err = NULL;

    ck_assert_cs_ok(csi_tar_parse_pax(&e, recs, strlen(recs), &err), &err);
    ck_assert_str_eq(e.name, "dir/file.txt");
    ck_assert_str_eq(e.linkname, "target");
    ck_assert_uint_eq(e.size, 123456);
    ck_assert_int_eq(e.mtime, 1700000000);
    ck_assert_cs_ok(csi_tar_parse_pax(&e, "12 mtime=-5\n", 12, &err), &err);
    ck_assert_int_eq(e.mtime, -5);
    ck_assert_cs_ok(csi_tar_parse_pax(&e, "", 0, &err), &err);
    ck_assert_cs_ok(csi_tar_parse_pax(&e, "28 size=9223372036854775807\n", 28, &err), &err);
    ck_assert_uint_eq(e.size, (uint64_t)INT64_MAX);
    csi_tar_entry_dispose(&e);
}
END_TEST

static const struct {
    const char *data;
    size_t len;
    int code;
} bad_pax[] = {
    {"abc", 3, CS_EPROTO},
    {"7 a=b\n", 6, CS_EPROTO}, /* length past the end */
    {"5 a=b\n", 6, CS_EPROTO}, /* length short of the newline */
    {"6 ab\nx", 6, CS_EPROTO}, /* no '=' */
    {"6 =ab\n", 6, CS_EPROTO}, /* empty key */
    {"6 a=bx", 6, CS_EPROTO},  /* no newline */
    {"99999999999999999999 a=b\n", 25, CS_EPROTO},
    {"0 a=b\n", 6, CS_EPROTO},
    {"12 path=a\0b\n", 12, CS_EPROTO}, /* NUL in a path */
    {"12 size=-12\n", 12, CS_EPROTO},
    {"12 size=1x2\n", 12, CS_EPROTO},
    {"29 size=99999999999999999999\n", 29, CS_EPROTO},
    {"28 size=9223372036854775808\n", 28, CS_EPROTO}, /* INT64_MAX + 1 */
    {"12 mtime=x1\n", 12, CS_EPROTO},
    {"7 a\0=b\n", 7, CS_EPROTO}, /* NUL in a key */
    {"6 a=b\n ", 7, CS_EPROTO},  /* trailing garbage */
};

START_TEST(test_pax_bad)
{
    csi_tar_entry e = {0};
    cs_error *err = NULL;
    int ret = csi_tar_parse_pax(&e, bad_pax[_i].data, bad_pax[_i].len, &err);

    ck_assert_msg(ret == bad_pax[_i].code, "case %d: got %d", _i, ret);
    ck_assert_ptr_nonnull(err);
    cs_error_free(err);
    csi_tar_entry_dispose(&e);
}
END_TEST

START_TEST(test_pax_too_big)
{
    size_t n = CSI_TAR_META_MAX + 1;
    char *big = malloc(n);
    csi_tar_entry e = {0};
    cs_error *err = NULL;

    ck_assert_ptr_nonnull(big);
    memset(big, '1', n);
    ck_assert_int_eq(csi_tar_parse_pax(&e, big, n, &err), CS_ELIMIT);
    cs_error_free(err);
    free(big);
}
END_TEST

/* ---- path safety ----------------------------------------------------------------------- */

static const struct {
    const char *name;
    bool safe;
} paths[] = {
    {"a", true},
    {"manifest.json", true},
    {"blobs/sha256/abc", true},
    {"./a", true},
    {"././a/./b", true},
    {"dir/", true},
    {"..a", true},
    {"a..", true},
    {"a/..b/c", true},
    {".hidden", true},
    {"", false},
    {".", false},
    {"./", false},
    {"./.", false},
    {"..", false},
    {"../a", false},
    {"a/..", false},
    {"a/../b", false},
    {"a/../../etc/passwd", false},
    {"/etc/passwd", false},
    {"/", false},
    {"a//b", false},
    {"a/b//", false},
    {"//a", false},
};

START_TEST(test_path_safety)
{
    ck_assert_msg(csi_tar_path_is_safe(paths[_i].name) == paths[_i].safe, "\"%s\"", paths[_i].name);
}
END_TEST

START_TEST(test_path_safety_null)
{
    ck_assert(!csi_tar_path_is_safe(NULL));
}
END_TEST

/* ---- streaming reader ------------------------------------------------------------------ */

#define MAX_GOT 32

struct got {
    int n;
    char *names[MAX_GOT];
    char *links[MAX_GOT];
    uint64_t sizes[MAX_GOT];
    char types[MAX_GOT];
    cs_buf data[MAX_GOT];
    int abort_at; /* entry index whose data callback fails, or -1 */
    bool misfed;  /* data came without its entry, or empty */
};

static void
got_init(struct got *g)
{
    memset(g, 0, sizeof(*g));
    g->abort_at = -1;
}

static void
got_dispose(struct got *g)
{
    int i;

    for (i = 0; i < g->n; i++) {
        free(g->names[i]);
        free(g->links[i]);
        cs_buf_dispose(&g->data[i]);
    }
    memset(g, 0, sizeof(*g));
}

static int
on_entry(void *payload, const csi_tar_entry *e, cs_error **err)
{
    struct got *g = payload;

    (void)err;
    ck_assert_int_lt(g->n, MAX_GOT);
    g->names[g->n] = strdup(e->name);
    g->links[g->n] = strdup(e->linkname);
    g->sizes[g->n] = e->size;
    g->types[g->n] = e->typeflag;
    cs_buf_init(&g->data[g->n], 0);
    g->n++;
    return 0;
}

static int
on_data(void *payload, const csi_tar_entry *e, const char *data, size_t len, cs_error **err)
{
    struct got *g = payload;

    /* no ck_assert here: in fork mode each one is a write to Check's pipe, and this runs
     * once per byte in the 1-byte feeds; checked after the read instead */
    if (g->n == 0 || strcmp(e->name, g->names[g->n - 1]) != 0 || len == 0)
        g->misfed = true;
    if (g->n - 1 == g->abort_at)
        return csi_error_set(err, CS_ECANCELED, "stopped by the test");
    return cs_buf_append(&g->data[g->n - 1], data, len, err);
}

/* Read STREAM through a reader in CHUNK-byte pieces; returns feed/finish's result. */
static int
read_stream(struct got *g, const char *stream, size_t len, size_t chunk, cs_error **err)
{
    csi_tar_reader *r = NULL;
    size_t off, n;
    int ret;

    ck_assert_cs_ok(csi_tar_reader_new(&r, on_entry, on_data, g, err), err);
    for (off = 0, ret = 0; off < len && ret == 0; off += n) {
        n = len - off < chunk ? len - off : chunk;
        ret = csi_tar_reader_feed(r, stream + off, n, err);
    }
    if (ret == 0)
        ret = csi_tar_reader_finish(r, err);
    csi_tar_reader_free(r);
    ck_assert(!g->misfed);
    return ret;
}

/* The whole stream of archive A. */
static char *
archive_bytes(csi_archive *a, size_t *len_out, size_t chunk)
{
    cs_buf out = CS_BUF_INIT;
    cs_error *err = NULL;
    char *buf = malloc(chunk);
    long n;

    ck_assert_ptr_nonnull(buf);
    for (;;) {
        n = csi_archive_read(a, buf, chunk, &err);
        ck_assert_msg(n >= 0, "read: %s", err ? err->message : "");
        if (n == 0)
            break;
        ck_assert_uint_le((size_t)n, chunk);
        ck_assert_cs_ok(cs_buf_append(&out, buf, (size_t)n, &err), &err);
    }
    /* the end stays the end */
    ck_assert_int_eq(csi_archive_read(a, buf, chunk, &err), 0);
    free(buf);
    *len_out = out.len;
    return cs_buf_detach(&out);
}

static char tmpdir[64];

static void
setup(void)
{
    strcpy(tmpdir, "/tmp/cs_tar_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static void
write_bytes(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static char *
read_all(const char *path, size_t *len_out)
{
    cs_buf b = CS_BUF_INIT;
    cs_error *err = NULL;
    char chunk[65536];
    FILE *f = fopen(path, "rb");
    size_t n;

    ck_assert_ptr_nonnull(f);
    for (;;) {
        n = fread(chunk, 1, sizeof(chunk), f);
        if (n == 0)
            break;
        ck_assert_cs_ok(cs_buf_append(&b, chunk, n, &err), &err);
    }
    fclose(f);
    *len_out = b.len;
    return cs_buf_detach(&b);
}

static int
count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n;
}

/* An archive with every kind of entry we write: memory, files (empty, block-sized, odd,
 * larger than a read), a directory, a prefix-split name and a 255-char PAX name. */
struct sample {
    csi_archive *a;
    char *long_name;
    char *split_name;
    char *big;
    size_t big_len;
};

static void
sample_build(struct sample *s)
{
    static const char manifest[] = "[{\"Config\":\"c.json\",\"RepoTags\":[],\"Layers\":[]}]";
    cs_error *err = NULL;
    char path[128];
    size_t i;

    memset(s, 0, sizeof(*s));
    s->long_name = make_name(255, NULL);
    s->split_name = make_name(150, slash_60);
    s->big_len = 600 * 1024 + 7;
    s->big = malloc(s->big_len);
    ck_assert_ptr_nonnull(s->big);
    for (i = 0; i < s->big_len; i++)
        s->big[i] = (char)(i * 7 + i / 512);
    snprintf(path, sizeof(path), "%s/big", tmpdir);
    write_bytes(path, s->big, s->big_len);
    snprintf(path, sizeof(path), "%s/empty", tmpdir);
    write_bytes(path, "", 0);

    ck_assert_cs_ok(csi_archive_new(&s->a, &err), &err);
    ck_assert_cs_ok(csi_archive_add_dir(s->a, "blobs", &err), &err);
    ck_assert_cs_ok(csi_archive_add_dir(s->a, "blobs/sha256/", &err), &err);
    snprintf(path, sizeof(path), "%s/big", tmpdir);
    ck_assert_cs_ok(csi_archive_add_file(s->a, "blobs/sha256/big", path, s->big_len, &err), &err);
    snprintf(path, sizeof(path), "%s/empty", tmpdir);
    ck_assert_cs_ok(csi_archive_add_file(s->a, "empty", path, 0, &err), &err);
    ck_assert_cs_ok(csi_archive_add_mem(s->a, s->long_name, "long", 4, &err), &err);
    ck_assert_cs_ok(csi_archive_add_mem(s->a, s->split_name, s->big, 512, &err), &err);
    ck_assert_cs_ok(csi_archive_add_mem(s->a, "manifest.json", manifest, strlen(manifest), &err),
                    &err);
}

static void
sample_check(const struct sample *s, const struct got *g)
{
    ck_assert_int_eq(g->n, 7);
    ck_assert_str_eq(g->names[0], "blobs/");
    ck_assert_int_eq(g->types[0], CSI_TAR_DIR);
    ck_assert_str_eq(g->names[1], "blobs/sha256/");
    ck_assert_str_eq(g->names[2], "blobs/sha256/big");
    ck_assert_int_eq(g->types[2], CSI_TAR_REG);
    ck_assert_uint_eq(g->sizes[2], s->big_len);
    ck_assert_uint_eq(g->data[2].len, s->big_len);
    ck_assert_int_eq(memcmp(g->data[2].ptr, s->big, s->big_len), 0);
    ck_assert_str_eq(g->names[3], "empty");
    ck_assert_uint_eq(g->data[3].len, 0);
    ck_assert_str_eq(g->names[4], s->long_name);
    ck_assert_str_eq(g->data[4].ptr, "long");
    ck_assert_str_eq(g->names[5], s->split_name);
    ck_assert_uint_eq(g->data[5].len, 512);
    ck_assert_int_eq(memcmp(g->data[5].ptr, s->big, 512), 0);
    ck_assert_str_eq(g->names[6], "manifest.json");
    ck_assert_ptr_nonnull(strstr(g->data[6].ptr, "\"Config\":\"c.json\""));
}

static void
sample_dispose(struct sample *s)
{
    csi_archive_free(s->a);
    free(s->long_name);
    free(s->split_name);
    free(s->big);
}

/* odd read sizes for the archive, odd feed sizes for the reader */
static const size_t chunks[][2] = {
    {7, 1},      {511, 513},   {512, 7},        {513, 512},
    {4096, 333}, {65537, 511}, {1 << 20, 4096}, {100, 1 << 20},
};

START_TEST(test_archive_through_reader)
{
    struct sample s;
    struct got g;
    cs_error *err = NULL;
    size_t len, len2;
    char *stream, *stream2;

    sample_build(&s);
    stream = archive_bytes(s.a, &len, chunks[_i][0]);
    ck_assert_uint_eq(len, csi_archive_size(s.a));
    ck_assert_uint_eq(len % CSI_TAR_BLOCK, 0);
    /* the two end blocks */
    ck_assert_uint_ge(len, 2 * CSI_TAR_BLOCK);
    for (size_t i = len - 2 * CSI_TAR_BLOCK; i < len; i++)
        ck_assert_int_eq(stream[i], 0);
    got_init(&g);
    ck_assert_cs_ok(read_stream(&g, stream, len, chunks[_i][1], &err), &err);
    sample_check(&s, &g);
    got_dispose(&g);

    /* rewinding gives the same bytes again */
    csi_archive_rewind(s.a);
    stream2 = archive_bytes(s.a, &len2, 4096);
    ck_assert_uint_eq(len2, len);
    ck_assert_int_eq(memcmp(stream, stream2, len), 0);
    free(stream2);
    free(stream);
    sample_dispose(&s);
}
END_TEST

START_TEST(test_reader_truncated)
{
    struct sample s;
    struct got g;
    cs_error *err = NULL;
    /* cut inside a header, inside data, inside padding, at an entry boundary */
    static const size_t cuts[] = {100, 512 * 3 + 1, 512 * 3 + 600 * 1024 + 8, 512 * 2};
    size_t len, cut;
    char *stream;
    int ret;

    sample_build(&s);
    stream = archive_bytes(s.a, &len, 1 << 16);
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        cut = cuts[i];
        got_init(&g);
        ret = read_stream(&g, stream, cut, 333, &err);
        ck_assert_msg(ret == CS_EPROTO, "cut %zu: %d", cut, ret);
        ck_assert_ptr_nonnull(strstr(err->message, i == 3 ? "end-of-archive" : "truncated"));
        cs_error_free(err);
        err = NULL;
        got_dispose(&g);
    }
    /* one end block then EOF is what GNU tar accepts too */
    got_init(&g);
    ck_assert_cs_ok(read_stream(&g, stream, len - CSI_TAR_BLOCK, 1000, &err), &err);
    ck_assert_int_eq(g.n, 7);
    got_dispose(&g);
    /* bytes after the end marker are ignored */
    got_init(&g);
    {
        char *more = malloc(len + 100);

        memcpy(more, stream, len);
        memset(more + len, 'x', 100);
        ck_assert_cs_ok(read_stream(&g, more, len + 100, 4096, &err), &err);
        free(more);
    }
    ck_assert_int_eq(g.n, 7);
    got_dispose(&g);
    free(stream);
    sample_dispose(&s);
}
END_TEST

/* Build a small stream by hand: header blocks, data, padding. */
static void
add_entry(cs_buf *out, const char *name, char type, const char *data, size_t len)
{
    static const char zeros[CSI_TAR_BLOCK];
    cs_error *err = NULL;

    ck_assert_cs_ok(csi_tar_header(out, name, len, 0644, 0, type, &err), &err);
    ck_assert_cs_ok(cs_buf_append(out, data, len, &err), &err);
    ck_assert_cs_ok(cs_buf_append(out, zeros, csi_tar_padding(len), &err), &err);
}

static void
add_end(cs_buf *out)
{
    static const char zeros[2 * CSI_TAR_BLOCK];
    cs_error *err = NULL;

    ck_assert_cs_ok(cs_buf_append(out, zeros, sizeof(zeros), &err), &err);
}

START_TEST(test_reader_gnu_and_pax)
{
    cs_buf t = CS_BUF_INIT;
    struct got g;
    cs_error *err = NULL;
    char *long_name = make_name(300, NULL);
    unsigned char *hdr;

    /* GNU long name and long link, a global header, a PAX header overriding both, a hard
     * link claiming a size (header-only: no data follows), a symlink */
    add_entry(&t, "././@LongLink", CSI_TAR_GNU_LONGNAME, long_name, strlen(long_name) + 1);
    add_entry(&t, "././@LongLink", CSI_TAR_GNU_LONGLINK, "the/target", 11);
    add_entry(&t, "short", CSI_TAR_SYMLINK, "", 0);
    add_entry(&t, "pax_global_header", CSI_TAR_PAX_GLOBAL, "17 comment=hello\n", 17);
    add_entry(&t, "PaxHeaders/x", CSI_TAR_PAX, "14 path=p/q/r\n", 14);
    add_entry(&t, "PaxHeaders/x", CSI_TAR_PAX, "17 path=from/pax\n18 linkpath=lnk/2\n", 35);
    add_entry(&t, "ignored", CSI_TAR_SYMLINK, "", 0);
    /* a hard link header with size 5: header-only type, the size is not data */
    ck_assert_cs_ok(csi_tar_header(&t, "hard", 5, 0644, 0, CSI_TAR_LINK, &err), &err);
    add_entry(&t, "data", CSI_TAR_REG, "12345", 5);
    add_end(&t);
    /* the last header with '\0' as type flag (pre-POSIX regular file) */
    hdr = (unsigned char *)t.ptr + t.len - 4 * CSI_TAR_BLOCK;
    ck_assert_str_eq((char *)hdr, "data");
    hdr[156] = '\0';
    set_checksum(hdr, false);

    for (size_t c = 1; c <= 1024; c = c * 3 + 1) {
        got_init(&g);
        ck_assert_cs_ok(read_stream(&g, t.ptr, t.len, c, &err), &err);
        ck_assert_int_eq(g.n, 4);
        ck_assert_str_eq(g.names[0], long_name);
        ck_assert_str_eq(g.links[0], "the/target");
        ck_assert_int_eq(g.types[0], CSI_TAR_SYMLINK);
        ck_assert_str_eq(g.names[1], "from/pax");
        ck_assert_str_eq(g.links[1], "lnk/2");
        ck_assert_str_eq(g.names[2], "hard");
        ck_assert_uint_eq(g.sizes[2], 0);
        ck_assert_str_eq(g.names[3], "data");
        ck_assert_str_eq(g.data[3].ptr, "12345");
        ck_assert_int_eq(g.types[3], CSI_TAR_REG);
        got_dispose(&g);
    }
    free(long_name);
    cs_buf_dispose(&t);
}
END_TEST

START_TEST(test_reader_errors)
{
    cs_buf t = CS_BUF_INIT;
    struct got g;
    cs_error *err = NULL;
    csi_tar_reader *r = NULL;
    static const char zeros[CSI_TAR_BLOCK];

    /* a lone zero block before another entry */
    add_entry(&t, "a", CSI_TAR_REG, "x", 1);
    cs_buf_append(&t, zeros, CSI_TAR_BLOCK, &err);
    add_entry(&t, "b", CSI_TAR_REG, "y", 1);
    add_end(&t);
    got_init(&g);
    ck_assert_int_eq(read_stream(&g, t.ptr, t.len, 512, &err), CS_EPROTO);
    ck_assert_ptr_nonnull(strstr(err->message, "zero block"));
    cs_error_free(err);
    err = NULL;
    got_dispose(&g);

    /* a PAX header and then the end */
    cs_buf_clear(&t);
    add_entry(&t, "PaxHeaders/x", CSI_TAR_PAX, "14 path=p/q/r\n", 14);
    add_end(&t);
    got_init(&g);
    ck_assert_int_eq(read_stream(&g, t.ptr, t.len, 512, &err), CS_EPROTO);
    cs_error_free(err);
    err = NULL;
    got_dispose(&g);

    /* a bad PAX record */
    cs_buf_clear(&t);
    add_entry(&t, "PaxHeaders/x", CSI_TAR_PAX, "99 path=p\n", 10);
    add_entry(&t, "a", CSI_TAR_REG, "x", 1);
    add_end(&t);
    got_init(&g);
    ck_assert_int_eq(read_stream(&g, t.ptr, t.len, 100, &err), CS_EPROTO);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(g.n, 0);
    got_dispose(&g);

    /* an oversized PAX header is refused before its data is buffered */
    cs_buf_clear(&t);
    ck_assert_cs_ok(
        csi_tar_header(&t, "PaxHeaders/x", CSI_TAR_META_MAX + 1, 0644, 0, CSI_TAR_PAX, &err), &err);
    got_init(&g);
    ck_assert_int_eq(read_stream(&g, t.ptr, t.len, 512, &err), CS_ELIMIT);
    cs_error_free(err);
    err = NULL;
    got_dispose(&g);

    /* an entry with an empty name */
    cs_buf_clear(&t);
    add_entry(&t, "PaxHeaders/x", CSI_TAR_PAX, "5 a=\n", 5);
    add_entry(&t, "a", CSI_TAR_REG, "x", 1);
    add_end(&t);
    t.ptr[2 * CSI_TAR_BLOCK] = '\0'; /* wipe the name "a" */
    set_checksum((unsigned char *)t.ptr + 2 * CSI_TAR_BLOCK, false);
    got_init(&g);
    ck_assert_int_eq(read_stream(&g, t.ptr, t.len, 512, &err), CS_EPROTO);
    ck_assert_ptr_nonnull(strstr(err->message, "empty name"));
    cs_error_free(err);
    err = NULL;
    got_dispose(&g);

    /* a callback error stops the reader, which then stays failed */
    cs_buf_clear(&t);
    add_entry(&t, "a", CSI_TAR_REG, "x", 1);
    add_end(&t);
    got_init(&g);
    g.abort_at = 0;
    ck_assert_cs_ok(csi_tar_reader_new(&r, on_entry, on_data, &g, &err), &err);
    ck_assert_int_eq(csi_tar_reader_feed(r, t.ptr, t.len, &err), CS_ECANCELED);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_tar_reader_feed(r, t.ptr, 1, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(csi_tar_reader_finish(r, &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    ck_assert(!csi_tar_reader_done(r));
    csi_tar_reader_free(r);
    got_dispose(&g);

    /* an empty input has no end marker */
    got_init(&g);
    ck_assert_int_eq(read_stream(&g, "", 0, 1, &err), CS_EPROTO);
    cs_error_free(err);
    got_dispose(&g);
    cs_buf_dispose(&t);
}
END_TEST

START_TEST(test_reader_no_callbacks)
{
    cs_buf t = CS_BUF_INIT;
    cs_error *err = NULL;
    csi_tar_reader *r = NULL;

    add_entry(&t, "a", CSI_TAR_REG, "xyz", 3);
    add_end(&t);
    ck_assert_cs_ok(csi_tar_reader_new(&r, NULL, NULL, NULL, &err), &err);
    ck_assert_cs_ok(csi_tar_reader_feed(r, t.ptr, t.len, &err), &err);
    ck_assert(csi_tar_reader_done(r));
    ck_assert_cs_ok(csi_tar_reader_finish(r, &err), &err);
    csi_tar_reader_free(r);
    cs_buf_dispose(&t);
}
END_TEST

/* ---- archive producer ------------------------------------------------------------------ */

START_TEST(test_archive_write_file)
{
    struct sample s;
    struct got g;
    cs_error *err = NULL;
    char path[128], *file, *stream;
    size_t len, flen;
    struct stat st;

    sample_build(&s);
    snprintf(path, sizeof(path), "%s/out.tar", tmpdir);
    /* read partly first: write_file must start from the beginning anyway */
    {
        char buf[100];

        ck_assert_int_eq(csi_archive_read(s.a, buf, sizeof(buf), &err), 100);
    }
    ck_assert_cs_ok(csi_archive_write_file(s.a, path, &err), &err);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0644);
    file = read_all(path, &flen);
    csi_archive_rewind(s.a);
    stream = archive_bytes(s.a, &len, 12345);
    ck_assert_uint_eq(flen, len);
    ck_assert_int_eq(memcmp(file, stream, len), 0);
    got_init(&g);
    ck_assert_cs_ok(read_stream(&g, file, flen, 65536, &err), &err);
    sample_check(&s, &g);
    got_dispose(&g);
    /* only big, empty and out.tar: no temp file left */
    ck_assert_int_eq(count_files(tmpdir), 3);
    free(file);
    free(stream);
    sample_dispose(&s);
}
END_TEST

START_TEST(test_archive_size_mismatch)
{
    csi_archive *a = NULL;
    cs_error *err = NULL;
    char src[128], dst[128], buf[4096];
    long n;

    snprintf(src, sizeof(src), "%s/layer", tmpdir);
    snprintf(dst, sizeof(dst), "%s/out.tar", tmpdir);
    write_bytes(src, "0123456789", 10);

    /* declared longer than the file */
    ck_assert_cs_ok(csi_archive_new(&a, &err), &err);
    ck_assert_cs_ok(csi_archive_add_file(a, "layer.tar", src, 11, &err), &err);
    ck_assert_int_eq(csi_archive_write_file(a, dst, &err), CS_EDIGEST);
    ck_assert_ptr_nonnull(strstr(err->message, src));
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(access(dst, F_OK), -1);
    ck_assert_int_eq(count_files(tmpdir), 1);
    /* the stream stays failed until rewound */
    ck_assert_int_eq(csi_archive_read(a, buf, sizeof(buf), &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    csi_archive_free(a);

    /* declared shorter than the file */
    ck_assert_cs_ok(csi_archive_new(&a, &err), &err);
    ck_assert_cs_ok(csi_archive_add_file(a, "layer.tar", src, 9, &err), &err);
    n = csi_archive_read(a, buf, sizeof(buf), &err);
    ck_assert_int_eq(n, CS_EDIGEST);
    ck_assert_ptr_nonnull(strstr(err->message, src));
    cs_error_free(err);
    err = NULL;
    csi_archive_free(a);

    /* a missing file is an I/O error naming it, and leaves nothing behind */
    ck_assert_cs_ok(csi_archive_new(&a, &err), &err);
    ck_assert_cs_ok(csi_archive_add_file(a, "x", "/nonexistent/cs-file", 1, &err), &err);
    ck_assert_int_eq(csi_archive_write_file(a, dst, &err), CS_EIO);
    ck_assert_int_eq(err->sys_errno, ENOENT);
    ck_assert_ptr_nonnull(strstr(err->message, "/nonexistent/cs-file"));
    cs_error_free(err);
    err = NULL;
    ck_assert_int_eq(count_files(tmpdir), 1);
    /* a directory that does not exist */
    ck_assert_int_eq(csi_archive_write_file(a, "/nonexistent/dir/out.tar", &err), CS_EIO);
    cs_error_free(err);
    csi_archive_free(a);
}
END_TEST

START_TEST(test_archive_file_changes_while_streaming)
{
    csi_archive *a = NULL;
    cs_error *err = NULL;
    char src[128], buf[CSI_TAR_BLOCK + 4];
    FILE *f;

    snprintf(src, sizeof(src), "%s/layer", tmpdir);
    write_bytes(src, "0123456789", 10);
    ck_assert_cs_ok(csi_archive_new(&a, &err), &err);
    ck_assert_cs_ok(csi_archive_add_file(a, "layer.tar", src, 10, &err), &err);
    /* header plus 4 bytes: the file is open now */
    ck_assert_int_eq(csi_archive_read(a, buf, sizeof(buf), &err), (long)sizeof(buf));
    f = fopen(src, "ab");
    fputs("more", f);
    fclose(f);
    ck_assert_int_eq(csi_archive_read(a, buf, sizeof(buf), &err), CS_EDIGEST);
    ck_assert_ptr_nonnull(strstr(err->message, "grew"));
    cs_error_free(err);
    err = NULL;
    csi_archive_rewind(a);
    ck_assert_int_eq(csi_archive_read(a, buf, sizeof(buf), &err), CS_EDIGEST);
    cs_error_free(err);
    err = NULL;
    /* truncated under us */
    write_bytes(src, "0123456789", 10);
    csi_archive_rewind(a);
    ck_assert_int_eq(csi_archive_read(a, buf, sizeof(buf), &err), (long)sizeof(buf));
    ck_assert_int_eq(truncate(src, 6), 0);
    ck_assert_int_eq(csi_archive_read(a, buf, sizeof(buf), &err), CS_EDIGEST);
    ck_assert_ptr_nonnull(strstr(err->message, "shrank"));
    cs_error_free(err);
    csi_archive_free(a);
}
END_TEST

START_TEST(test_archive_bad_names)
{
    static const char *const bad[] = {"", "/abs", "../up", "a/../b", "a//b", ".", NULL};
    csi_archive *a = NULL;
    cs_error *err = NULL;
    char buf[2 * CSI_TAR_BLOCK + 1];
    size_t i;

    ck_assert_cs_ok(csi_archive_new(&a, &err), &err);
    for (i = 0; bad[i] != NULL; i++) {
        ck_assert_int_eq(csi_archive_add_mem(a, bad[i], "x", 1, &err), CS_EINVAL);
        cs_error_free(err);
        err = NULL;
        ck_assert_int_eq(csi_archive_add_file(a, bad[i], "/etc/hostname", 1, &err), CS_EINVAL);
        cs_error_free(err);
        err = NULL;
    }
    ck_assert_int_eq(csi_archive_add_dir(a, "../x", &err), CS_EINVAL);
    cs_error_free(err);
    err = NULL;
    /* nothing was added: the stream is just the end blocks */
    ck_assert_uint_eq(csi_archive_size(a), 2 * CSI_TAR_BLOCK);
    ck_assert_int_eq(csi_archive_read(a, buf, sizeof(buf), &err), 2 * CSI_TAR_BLOCK);
    ck_assert_int_eq(csi_archive_read(a, buf, sizeof(buf), &err), 0);
    csi_archive_free(a);
}
END_TEST

static Suite *
tar_suite(void)
{
    Suite *s = suite_create("tar");
    TCase *tc = tcase_create("header");

    tcase_add_loop_test(tc, test_header_roundtrip, 0,
                        (int)(sizeof(rt_cases) / sizeof(rt_cases[0])));
    tcase_add_test(tc, test_header_fields);
    tcase_add_test(tc, test_big_size_base256);
    tcase_add_test(tc, test_header_bad_args);
    tcase_add_test(tc, test_padding);
    tcase_add_test(tc, test_checksum);
    tcase_add_test(tc, test_zero_block);
    tcase_add_loop_test(tc, test_bad_header, 0, (int)(sizeof(bad_fields) / sizeof(bad_fields[0])));
    tcase_add_test(tc, test_lenient_numbers);
    suite_add_tcase(s, tc);

    tc = tcase_create("pax");
    tcase_add_test(tc, test_pax_records);
    tcase_add_loop_test(tc, test_pax_bad, 0, (int)(sizeof(bad_pax) / sizeof(bad_pax[0])));
    tcase_add_test(tc, test_pax_too_big);
    suite_add_tcase(s, tc);

    tc = tcase_create("path");
    tcase_add_loop_test(tc, test_path_safety, 0, (int)(sizeof(paths) / sizeof(paths[0])));
    tcase_add_test(tc, test_path_safety_null);
    suite_add_tcase(s, tc);

    tc = tcase_create("reader");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_archive_through_reader, 0,
                        (int)(sizeof(chunks) / sizeof(chunks[0])));
    tcase_add_test(tc, test_reader_truncated);
    tcase_add_test(tc, test_reader_gnu_and_pax);
    tcase_add_test(tc, test_reader_errors);
    tcase_add_test(tc, test_reader_no_callbacks);
    suite_add_tcase(s, tc);

    tc = tcase_create("archive");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_archive_write_file);
    tcase_add_test(tc, test_archive_size_mismatch);
    tcase_add_test(tc, test_archive_file_changes_while_streaming);
    tcase_add_test(tc, test_archive_bad_names);
    suite_add_tcase(s, tc);
    return s;
}

CS_TEST_MAIN(tar_suite)
