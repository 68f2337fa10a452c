/* Reading ustar + PAX tar headers and streams (POSIX.1-2001 pax format; GNU base-256 numbers
 * and long names read as GNU tar and Go's archive/tar read them); the writer is tar_write.c.
 * Everything here is pure. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_int.h"
#include "tar.h"
#include "tar_int.h"

void
csi_tar_entry_dispose(csi_tar_entry *e)
{
    if (e == NULL)
        return;
    free(e->name);
    free(e->linkname);
    memset(e, 0, sizeof(*e));
}

size_t
csi_tar_padding(uint64_t size)
{
    return (size_t)((CSI_TAR_BLOCK - size % CSI_TAR_BLOCK) % CSI_TAR_BLOCK);
}

/* ---- header parsing -------------------------------------------------------------------- */

/* A numeric field: GNU base-256 when the high bit of the first byte is set (the algorithm of
 * Go's archive/tar parseNumeric), else octal with optional leading spaces or NULs and a
 * NUL/space terminator. -1 on malformed or overflowing values. */
static int
parse_numeric(int64_t *out, const unsigned char *f, size_t width)
{
    uint64_t x = 0;
    size_t i = 0;

    if (f[0] & 0x80) {
        unsigned char inv = (f[0] & 0x40) ? 0xff : 0x00;

        for (i = 0; i < width; i++) {
            unsigned char c = f[i] ^ inv;

            if (i == 0)
                c &= 0x7f;
            if ((x >> 56) != 0)
                return -1;
            x = (x << 8) | c;
        }
        if ((x >> 63) != 0)
            return -1;
        *out = inv ? ~(int64_t)x : (int64_t)x;
        return 0;
    }
    while (i < width && (f[i] == ' ' || f[i] == '\0'))
        i++;
    for (; i < width && f[i] >= '0' && f[i] <= '7'; i++) {
        if (x >= (UINT64_C(1) << 60))
            return -1;
        x = (x << 3) | (uint64_t)(f[i] - '0');
    }
    /* what follows the digits must be terminators only: "12\0x" is not a number */
    for (; i < width; i++) {
        if (f[i] != ' ' && f[i] != '\0')
            return -1;
    }
    *out = (int64_t)x;
    return 0;
}

static bool
all_zero(const unsigned char *block)
{
    size_t i;

    for (i = 0; i < CSI_TAR_BLOCK; i++) {
        if (block[i] != 0)
            return false;
    }
    return true;
}

static bool
checksum_ok(const unsigned char *block, int64_t stored)
{
    int64_t usum = 0, ssum = 0;
    size_t i;

    for (i = 0; i < CSI_TAR_BLOCK; i++) {
        unsigned char c = (i >= OFF_CHKSUM && i < OFF_CHKSUM + 8) ? ' ' : block[i];

        usum += c;
        ssum += (signed char)c;
    }
    return stored == usum || stored == ssum;
}

static char *
strndup_field(const unsigned char *f, size_t width)
{
    size_t n = strnlen((const char *)f, width);
    char *s = malloc(n + 1);

    if (s != NULL) {
        memcpy(s, f, n);
        s[n] = '\0';
    }
    return s;
}

int
csi_tar_parse_header(csi_tar_entry *out, const unsigned char block[CSI_TAR_BLOCK], cs_error **err)
{
    csi_tar_entry e = {0};
    int64_t chksum, mode, size, mtime;
    bool ustar;
    size_t nlen, plen;
    int ret = 0;

    if (all_zero(block))
        return CSI_TAR_ZERO_BLOCK;
    if (parse_numeric(&chksum, block + OFF_CHKSUM, 8) < 0 || !checksum_ok(block, chksum))
        return csi_error_set(err, CS_EPROTO, "tar header checksum mismatch");
    if (memcmp(block + OFF_MAGIC, "ustar\0", 6) == 0) {
        ustar = true;
    } else if (memcmp(block + OFF_MAGIC, "ustar  \0", 8) == 0) {
        ustar = false; /* old GNU: the prefix field holds other things */
    } else {
        return csi_error_set(err, CS_EPROTO, "tar header is neither ustar nor GNU format");
    }
    if (parse_numeric(&mode, block + OFF_MODE, 8) < 0 || mode < 0)
        return csi_error_set(err, CS_EPROTO, "tar header has a malformed mode");
    if (parse_numeric(&size, block + OFF_SIZE, 12) < 0)
        return csi_error_set(err, CS_EPROTO, "tar header has a malformed size");
    if (size < 0)
        return csi_error_set(err, CS_EPROTO, "tar header has a negative size");
    if (parse_numeric(&mtime, block + OFF_MTIME, 12) < 0)
        return csi_error_set(err, CS_EPROTO, "tar header has a malformed mtime");

    nlen = strnlen((const char *)block + OFF_NAME, LEN_NAME);
    plen = ustar ? strnlen((const char *)block + OFF_PREFIX, LEN_PREFIX) : 0;
    e.name = malloc(plen + 1 + nlen + 1);
    if (e.name == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    if (plen > 0) {
        memcpy(e.name, block + OFF_PREFIX, plen);
        e.name[plen] = '/';
        memcpy(e.name + plen + 1, block + OFF_NAME, nlen);
        e.name[plen + 1 + nlen] = '\0';
    } else {
        memcpy(e.name, block + OFF_NAME, nlen);
        e.name[nlen] = '\0';
    }
    e.linkname = strndup_field(block + OFF_LINKNAME, LEN_LINKNAME);
    if (e.linkname == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    /* Go's FileInfoHeader also stores the file type bits (c_ISDIR...); keep permissions */
    e.mode = (unsigned)(mode & 07777);
    e.size = (uint64_t)size;
    e.mtime = mtime;
    e.typeflag = block[OFF_TYPEFLAG] == '\0' ? CSI_TAR_REG : (char)block[OFF_TYPEFLAG];
    *out = e;
    return 0;

out:
    csi_tar_entry_dispose(&e);
    return ret;
}

/* ---- PAX records ----------------------------------------------------------------------- */

static int
parse_pax_uint(uint64_t *out, const char *s, size_t n)
{
    uint64_t x = 0;
    size_t i;

    if (n == 0)
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (x > ((uint64_t)INT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return -1;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    *out = x;
    return 0;
}

/* "[-]digits[.digits]": keep whole seconds. */
static int
parse_pax_time(int64_t *out, const char *s, size_t n)
{
    bool neg = n > 0 && s[0] == '-';
    const char *dot;
    uint64_t secs, frac;
    size_t ilen;

    if (neg) {
        s++;
        n--;
    }
    dot = memchr(s, '.', n);
    ilen = dot != NULL ? (size_t)(dot - s) : n;
    if (parse_pax_uint(&secs, s, ilen) < 0)
        return -1;
    if (dot != NULL && ilen + 1 < n && parse_pax_uint(&frac, dot + 1, n - ilen - 1) < 0)
        return -1;
    *out = neg ? -(int64_t)secs : (int64_t)secs;
    return 0;
}

static int
replace_string(char **dst, const char *value, size_t vlen, const char *key, cs_error **err)
{
    char *s;

    if (memchr(value, '\0', vlen) != NULL)
        return csi_error_set(err, CS_EPROTO, "PAX %s contains a NUL byte", key);
    s = malloc(vlen + 1);
    if (s == NULL)
        return csi_error_oom(err);
    memcpy(s, value, vlen);
    s[vlen] = '\0';
    free(*dst);
    *dst = s;
    return 0;
}

int
csi_tar_parse_pax(csi_tar_entry *e, const char *data, size_t len, cs_error **err)
{
    size_t pos = 0;
    int ret;

    if (len > CSI_TAR_META_MAX)
        return csi_error_set(err, CS_ELIMIT, "PAX header of %zu bytes exceeds %d bytes", len,
                             CSI_TAR_META_MAX);
    while (pos < len) {
        const char *rec = data + pos, *key, *eq, *value;
        size_t avail = len - pos, n = 0, i = 0, klen, vlen;

        for (; i < avail && rec[i] >= '0' && rec[i] <= '9'; i++) {
            n = n * 10 + (size_t)(rec[i] - '0');
            if (n > avail)
                return csi_error_set(err, CS_EPROTO, "PAX record length exceeds the header");
        }
        if (i == 0 || i >= avail || rec[i] != ' ' || n <= i + 1 || rec[n - 1] != '\n')
            return csi_error_set(err, CS_EPROTO, "malformed PAX record at byte %zu", pos);
        key = rec + i + 1;
        eq = memchr(key, '=', (size_t)(rec + n - 1 - key));
        if (eq == NULL || eq == key)
            return csi_error_set(err, CS_EPROTO, "malformed PAX record at byte %zu", pos);
        klen = (size_t)(eq - key);
        if (memchr(key, '\0', klen) != NULL)
            return csi_error_set(err, CS_EPROTO, "PAX record key contains a NUL byte");
        value = eq + 1;
        vlen = (size_t)(rec + n - 1 - value);
        ret = 0;
        /* an empty value means "no override" in pax(1): keep the header's field */
        if (klen == 4 && memcmp(key, "path", 4) == 0 && vlen > 0) {
            ret = replace_string(&e->name, value, vlen, "path", err);
        } else if (klen == 8 && memcmp(key, "linkpath", 8) == 0 && vlen > 0) {
            ret = replace_string(&e->linkname, value, vlen, "linkpath", err);
        } else if (klen == 4 && memcmp(key, "size", 4) == 0 && vlen > 0) {
            uint64_t size;

            if (parse_pax_uint(&size, value, vlen) < 0)
                return csi_error_set(err, CS_EPROTO, "PAX size is not a valid size");
            e->size = size;
        } else if (klen == 5 && memcmp(key, "mtime", 5) == 0 && vlen > 0) {
            int64_t t;

            if (parse_pax_time(&t, value, vlen) < 0)
                return csi_error_set(err, CS_EPROTO, "PAX mtime is not a valid time");
            e->mtime = t;
        }
        if (ret < 0)
            return ret;
        pos += n;
    }
    return 0;
}

bool
csi_tar_path_is_safe(const char *name)
{
    const char *p = name, *slash;
    size_t n, real = 0;

    if (name == NULL || name[0] == '\0' || name[0] == '/')
        return false;
    while (*p != '\0') {
        slash = strchr(p, '/');
        n = slash != NULL ? (size_t)(slash - p) : strlen(p);
        if (n == 0)
            return false;
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return false;
        if (!(n == 1 && p[0] == '.'))
            real++;
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    return real > 0;
}

/* ---- streaming reader ------------------------------------------------------------------ */

enum reader_state {
    ST_HEADER, /* collecting a header block */
    ST_DATA,   /* passing an entry's data */
    ST_PAD,    /* skipping the padding after the data */
    ST_ZERO1,  /* one zero block seen: the next must be zero too */
    ST_END,
    ST_FAILED,
};

struct csi_tar_reader {
    csi_tar_entry_fn on_entry;
    csi_tar_data_fn on_data;
    void *payload;
    enum reader_state state;
    unsigned char block[CSI_TAR_BLOCK];
    size_t have;         /* bytes of BLOCK collected */
    csi_tar_entry entry; /* the entry whose data is passing */
    char meta;           /* typeflag of a metadata entry being read, or 0 */
    uint64_t remaining;  /* data bytes left in the current entry */
    size_t pad;          /* padding bytes left */
    cs_buf meta_data;    /* data of the metadata entry being read */
    /* metadata for the next entry */
    char *pax;
    size_t pax_len;
    char *longname;
    char *longlink;
};

int
csi_tar_reader_new(csi_tar_reader **out, csi_tar_entry_fn on_entry, csi_tar_data_fn on_data,
                   void *payload, cs_error **err)
{
    csi_tar_reader *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return csi_error_oom(err);
    r->on_entry = on_entry;
    r->on_data = on_data;
    r->payload = payload;
    r->state = ST_HEADER;
    cs_buf_init(&r->meta_data, CSI_TAR_META_MAX);
    *out = r;
    return 0;
}

static void
drop_pending(csi_tar_reader *r)
{
    free(r->pax);
    free(r->longname);
    free(r->longlink);
    r->pax = NULL;
    r->pax_len = 0;
    r->longname = NULL;
    r->longlink = NULL;
}

void
csi_tar_reader_free(csi_tar_reader *r)
{
    if (r == NULL)
        return;
    csi_tar_entry_dispose(&r->entry);
    cs_buf_dispose(&r->meta_data);
    drop_pending(r);
    free(r);
}

bool
csi_tar_reader_done(const csi_tar_reader *r)
{
    return r->state == ST_END;
}

static bool
has_pending(const csi_tar_reader *r)
{
    return r->pax != NULL || r->longname != NULL || r->longlink != NULL;
}

static bool
header_only(char typeflag)
{
    return typeflag >= '1' && typeflag <= '6';
}

/* A GNU long name's data is the name, usually NUL-terminated. */
static int
take_long_name(char **dst, cs_buf *b, cs_error **err)
{
    size_t n = b->len > 0 ? strnlen(b->ptr, b->len) : 0;
    char *s = malloc(n + 1);

    if (s == NULL)
        return csi_error_oom(err);
    if (n > 0)
        memcpy(s, b->ptr, n);
    s[n] = '\0';
    free(*dst);
    *dst = s;
    return 0;
}

/* The data of a metadata entry is complete: keep it for the next entry. */
static int
meta_done(csi_tar_reader *r, cs_error **err)
{
    int ret = 0;

    switch (r->meta) {
    case CSI_TAR_PAX:
        /* a second 'x' before an entry replaces the first, as in Go's reader */
        free(r->pax);
        r->pax_len = r->meta_data.len;
        r->pax = cs_buf_detach(&r->meta_data);
        cs_buf_init(&r->meta_data, CSI_TAR_META_MAX);
        if (r->pax == NULL)
            ret = csi_error_oom(err);
        break;
    case CSI_TAR_GNU_LONGNAME:
        ret = take_long_name(&r->longname, &r->meta_data, err);
        break;
    case CSI_TAR_GNU_LONGLINK:
        ret = take_long_name(&r->longlink, &r->meta_data, err);
        break;
    default:
        break;
    }
    cs_buf_clear(&r->meta_data);
    r->meta = 0;
    return ret;
}

/* The data (and padding) of the current entry are over. */
static int
data_done(csi_tar_reader *r, cs_error **err)
{
    int ret = 0;

    if (r->meta != 0)
        ret = meta_done(r, err);
    r->state = r->pad > 0 ? ST_PAD : ST_HEADER;
    r->have = 0;
    return ret;
}

static int
start_entry(csi_tar_reader *r, cs_error **err)
{
    csi_tar_entry *e = &r->entry;
    int ret;

    if (r->longname != NULL) {
        free(e->name);
        e->name = r->longname;
        r->longname = NULL;
    }
    if (r->longlink != NULL) {
        free(e->linkname);
        e->linkname = r->longlink;
        r->longlink = NULL;
    }
    if (r->pax != NULL) {
        ret = csi_tar_parse_pax(e, r->pax, r->pax_len, err);
        if (ret < 0)
            return ret;
    }
    drop_pending(r);
    if (e->name[0] == '\0')
        return csi_error_set(err, CS_EPROTO, "tar entry has an empty name");
    if (e->size > (uint64_t)INT64_MAX)
        return csi_error_set(err, CS_EPROTO, "tar entry %.200s: size out of range", e->name);
    if (header_only(e->typeflag))
        e->size = 0;
    r->remaining = e->size;
    r->pad = csi_tar_padding(e->size);
    if (r->on_entry != NULL) {
        ret = r->on_entry(r->payload, e, err);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int
header_block(csi_tar_reader *r, cs_error **err)
{
    csi_tar_entry *e = &r->entry;
    int ret;

    csi_tar_entry_dispose(e);
    ret = csi_tar_parse_header(e, r->block, err);
    r->have = 0;
    if (ret < 0)
        return ret;
    if (ret == CSI_TAR_ZERO_BLOCK) {
        if (has_pending(r))
            return csi_error_set(err, CS_EPROTO, "tar extended header is not followed by an entry");
        r->state = r->state == ST_ZERO1 ? ST_END : ST_ZERO1;
        return 0;
    }
    if (r->state == ST_ZERO1)
        return csi_error_set(err, CS_EPROTO, "tar stream has a lone zero block before an entry");
    switch (e->typeflag) {
    case CSI_TAR_PAX:
    case CSI_TAR_PAX_GLOBAL:
    case CSI_TAR_GNU_LONGNAME:
    case CSI_TAR_GNU_LONGLINK:
        if (e->size > CSI_TAR_META_MAX)
            return csi_error_set(err, CS_ELIMIT,
                                 "tar extended header of %llu bytes exceeds %d bytes",
                                 (unsigned long long)e->size, CSI_TAR_META_MAX);
        r->meta = e->typeflag;
        r->remaining = e->size;
        r->pad = csi_tar_padding(e->size);
        csi_tar_entry_dispose(e);
        break;
    default:
        ret = start_entry(r, err);
        if (ret < 0)
            return ret;
        break;
    }
    if (r->remaining > 0) {
        r->state = ST_DATA;
        return 0;
    }
    return data_done(r, err);
}

static int
feed_data(csi_tar_reader *r, const char *p, size_t n, cs_error **err)
{
    if (r->meta == CSI_TAR_PAX_GLOBAL)
        return 0; /* global headers carry nothing we use */
    if (r->meta != 0)
        return cs_buf_append(&r->meta_data, p, n, err);
    if (r->on_data != NULL)
        return r->on_data(r->payload, &r->entry, p, n, err);
    return 0;
}

int
csi_tar_reader_feed(csi_tar_reader *r, const void *data, size_t len, cs_error **err)
{
    const char *p = data;
    size_t n;
    int ret = 0;

    if (r->state == ST_FAILED)
        return csi_error_set(err, CS_EINVAL, "tar reader used after an error");
    while (len > 0 && r->state != ST_END) {
        switch (r->state) {
        case ST_HEADER:
        case ST_ZERO1:
            n = CSI_TAR_BLOCK - r->have;
            n = n < len ? n : len;
            memcpy(r->block + r->have, p, n);
            r->have += n;
            if (r->have == CSI_TAR_BLOCK)
                ret = header_block(r, err);
            break;
        case ST_DATA:
            n = r->remaining < len ? (size_t)r->remaining : len;
            ret = feed_data(r, p, n, err);
            r->remaining -= n;
            if (ret == 0 && r->remaining == 0)
                ret = data_done(r, err);
            break;
        case ST_PAD:
            n = r->pad < len ? r->pad : len;
            r->pad -= n;
            if (r->pad == 0)
                r->state = ST_HEADER;
            break;
        default:
            n = len;
            break;
        }
        if (ret < 0)
            goto out;
        p += n;
        len -= n;
    }

out:
    if (ret < 0)
        r->state = ST_FAILED;
    return ret;
}

int
csi_tar_reader_finish(csi_tar_reader *r, cs_error **err)
{
    switch (r->state) {
    case ST_END:
    case ST_ZERO1:
        if (r->have == 0)
            return 0;
        break;
    case ST_FAILED:
        return csi_error_set(err, CS_EINVAL, "tar reader used after an error");
    case ST_HEADER:
        if (r->have == 0 && !has_pending(r))
            return csi_error_set(err, CS_EPROTO,
                                 "tar stream ends without the end-of-archive marker");
        break;
    default:
        break;
    }
    return csi_error_set(err, CS_EPROTO, "tar stream is truncated");
}
