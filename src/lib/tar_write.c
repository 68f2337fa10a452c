/* Writing ustar + PAX tar headers (POSIX.1-2001 pax format, GNU base-256 numbers where a
 * value outgrows its octal field). Pure: headers go into a buffer. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_int.h"
#include "tar.h"
#include "tar_int.h"

/* WIDTH-1 zero-padded octal digits and a NUL; the caller checked that V fits. */
static void
put_octal(unsigned char *field, size_t width, uint64_t v)
{
    size_t i = width - 1;

    field[i] = '\0';
    while (i-- > 0) {
        field[i] = (unsigned char)('0' + (v & 7));
        v >>= 3;
    }
}

/* GNU base-256: first byte 0x80 (positive) or 0xff (negative), then big-endian two's
 * complement, sign-extended over the whole field. */
static void
put_base256(unsigned char *field, size_t width, int64_t v)
{
    uint64_t u = (uint64_t)v;
    size_t i, k;

    for (i = width - 1, k = 0; i >= 1; i--, k++) {
        if (k < 8)
            field[i] = (unsigned char)((u >> (8 * k)) & 0xff);
        else
            field[i] = v < 0 ? 0xff : 0x00;
    }
    field[0] = v < 0 ? 0xff : 0x80;
}

static void
put_time(unsigned char *field, int64_t t)
{
    if (t >= 0 && (uint64_t)t < OCTAL11_LIMIT)
        put_octal(field, 12, (uint64_t)t);
    else
        put_base256(field, 12, t);
}

static void
put_checksum(unsigned char *hdr)
{
    unsigned sum = 0;
    size_t i;

    memset(hdr + OFF_CHKSUM, ' ', 8);
    for (i = 0; i < CSI_TAR_BLOCK; i++)
        sum += hdr[i];
    /* "%06o\0 ", the form GNU tar and Go write */
    put_octal(hdr + OFF_CHKSUM, 7, sum);
    hdr[OFF_CHKSUM + 7] = ' ';
}

static void
fill_header(unsigned char *hdr, const char *name, size_t name_len, const char *prefix,
            size_t prefix_len, uint64_t size, unsigned mode, int64_t mtime, char typeflag)
{
    memset(hdr, 0, CSI_TAR_BLOCK);
    memcpy(hdr + OFF_NAME, name, name_len);
    put_octal(hdr + OFF_MODE, 8, mode);
    put_octal(hdr + OFF_UID, 8, 0);
    put_octal(hdr + OFF_GID, 8, 0);
    if (size < OCTAL11_LIMIT)
        put_octal(hdr + OFF_SIZE, 12, size);
    else
        put_base256(hdr + OFF_SIZE, 12, (int64_t)size);
    put_time(hdr + OFF_MTIME, mtime);
    hdr[OFF_TYPEFLAG] = (unsigned char)typeflag;
    memcpy(hdr + OFF_MAGIC, "ustar", 6);
    memcpy(hdr + OFF_VERSION, "00", 2);
    put_octal(hdr + OFF_DEVMAJOR, 8, 0);
    put_octal(hdr + OFF_DEVMINOR, 8, 0);
    if (prefix_len > 0)
        memcpy(hdr + OFF_PREFIX, prefix, prefix_len);
    put_checksum(hdr);
}

/* Where to split NAME into ustar prefix + "/" + name: 0 when it fits the name field as is,
 * the prefix length, or (size_t)-1 when no split fits. */
static size_t
ustar_split(const char *name, size_t len)
{
    size_t p, first, last;

    if (len <= LEN_NAME)
        return 0;
    first = len - LEN_NAME - 1;
    last = len - 2 < LEN_PREFIX ? len - 2 : LEN_PREFIX;
    for (p = first > 0 ? first : 1; p <= last; p++) {
        if (name[p] == '/')
            return p;
    }
    return (size_t)-1;
}

static size_t
decimal_digits(size_t n)
{
    size_t d = 1;

    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

/* One "LEN key=value\n" record; LEN counts the whole record, its own digits included. */
static int
pax_record(cs_buf *b, const char *key, const char *value, size_t vlen, cs_error **err)
{
    size_t base = strlen(key) + vlen + 3;
    size_t d = decimal_digits(base);
    int ret;

    if (decimal_digits(base + d) != d)
        d++;
    ret = cs_buf_printf(b, err, "%zu %s=", base + d, key);
    if (ret == 0)
        ret = cs_buf_append(b, value, vlen, err);
    if (ret == 0)
        ret = cs_buf_append(b, "\n", 1, err);
    return ret;
}

int
csi_tar_header(cs_buf *out, const char *name, uint64_t size, unsigned mode, int64_t mtime,
               char typeflag, cs_error **err)
{
    static const char zeros[CSI_TAR_BLOCK];
    unsigned char hdr[CSI_TAR_BLOCK];
    char pax_name[LEN_NAME + 1];
    const char *base;
    cs_buf pax = CS_BUF_INIT;
    size_t start = out->len, len, split, name_len;
    bool need_pax_path, need_pax_size;
    int ret = 0;

    len = name != NULL ? strlen(name) : 0;
    if (len == 0 || len > CSI_TAR_NAME_MAX)
        return csi_error_set(err, CS_EINVAL, "tar entry name is empty or over %d bytes",
                             CSI_TAR_NAME_MAX);
    if (mode > 07777)
        return csi_error_set(err, CS_EINVAL, "tar entry %s: mode %o has more than 07777", name,
                             mode);
    if (typeflag == '\0')
        return csi_error_set(err, CS_EINVAL, "tar entry %s: no type flag", name);
    if (size > (uint64_t)INT64_MAX)
        return csi_error_set(err, CS_EINVAL, "tar entry %s: size out of range", name);
    split = ustar_split(name, len);
    need_pax_path = split == (size_t)-1;
    need_pax_size = size >= OCTAL11_LIMIT;
    if (need_pax_path || need_pax_size) {
        char num[24];

        if (need_pax_path)
            ret = pax_record(&pax, "path", name, len, err);
        if (ret == 0 && need_pax_size) {
            snprintf(num, sizeof(num), "%llu", (unsigned long long)size);
            ret = pax_record(&pax, "size", num, strlen(num), err);
        }
        if (ret < 0)
            goto out;
        /* The 'x' header's own name only shows in tools that don't know PAX; Go and GNU
         * tar use a PaxHeaders directory and the base name, so do we. */
        base = strrchr(name, '/');
        base = base != NULL && base[1] != '\0' ? base + 1 : name;
        snprintf(pax_name, sizeof(pax_name), "PaxHeaders.0/%s", base);
        fill_header(hdr, pax_name, strlen(pax_name), NULL, 0, pax.len, 0644, mtime, CSI_TAR_PAX);
        ret = cs_buf_append(out, hdr, sizeof(hdr), err);
        if (ret == 0)
            ret = cs_buf_append(out, pax.ptr, pax.len, err);
        if (ret == 0)
            ret = cs_buf_append(out, zeros, csi_tar_padding(pax.len), err);
        if (ret < 0)
            goto out;
    }
    if (need_pax_path) {
        /* the PAX path wins; the ustar field keeps the first bytes for old readers */
        fill_header(hdr, name, LEN_NAME, NULL, 0, size, mode, mtime, typeflag);
    } else if (split > 0) {
        name_len = len - split - 1;
        fill_header(hdr, name + split + 1, name_len, name, split, size, mode, mtime, typeflag);
    } else {
        fill_header(hdr, name, len, NULL, 0, size, mode, mtime, typeflag);
    }
    ret = cs_buf_append(out, hdr, sizeof(hdr), err);

out:
    if (ret < 0 && out->ptr != NULL) {
        /* leave OUT as it was: a half-written header would corrupt the stream */
        out->len = start;
        out->ptr[start] = '\0';
    }
    cs_buf_dispose(&pax);
    return ret;
}
