/* Fuzz target: untrusted bytes as a tar stream (the daemon's `docker save` output) through
 * csi_tar_reader in several chunkings, which must all agree; each 512-byte block as a lone
 * header; the bytes as PAX records; and a writer -> parser round trip of a name and size
 * taken from the input. Built with -fsanitize=fuzzer, and with replay.c so the corpus runs
 * in `make check`. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cachesync/buf.h>
#include "tar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct tally {
    uint64_t entries;
    uint64_t bytes;      /* data bytes over all entries */
    uint64_t entry_left; /* data bytes the current entry still owes */
    uint64_t safe;       /* entries with a safe name, to compare across chunkings */
};

static int
on_entry(void *payload, const csi_tar_entry *e, cs_error **err)
{
    struct tally *t = payload;

    (void)err;
    /* the previous entry got all its data before this header */
    if (t->entry_left != 0 || e->name == NULL || e->name[0] == '\0' || e->linkname == NULL ||
        e->mode > 07777)
        __builtin_trap();
    t->entries++;
    t->entry_left = e->size;
    if (csi_tar_path_is_safe(e->name))
        t->safe++;
    return 0;
}

static int
on_data(void *payload, const csi_tar_entry *e, const char *data, size_t len, cs_error **err)
{
    struct tally *t = payload;

    (void)e;
    (void)err;
    if (len == 0 || len > t->entry_left)
        __builtin_trap();
    /* touch the bytes so ASan sees a bad pointer */
    if (data[0] == 0x7f && data[len - 1] == 0x7f)
        t->bytes += 0;
    t->entry_left -= len;
    t->bytes += len;
    return 0;
}

static int
run(struct tally *t, const uint8_t *data, size_t size, size_t chunk)
{
    csi_tar_reader *r = NULL;
    cs_error *err = NULL;
    size_t off, n;
    int ret;

    memset(t, 0, sizeof(*t));
    if (csi_tar_reader_new(&r, on_entry, on_data, t, &err) < 0)
        __builtin_trap();
    ret = 0;
    for (off = 0; off < size && ret == 0; off += n) {
        n = size - off < chunk ? size - off : chunk;
        ret = csi_tar_reader_feed(r, data + off, n, &err);
    }
    if (ret == 0)
        ret = csi_tar_reader_finish(r, &err);
    if (ret < 0 && (err == NULL || strchr(err->message, '\n') != NULL))
        __builtin_trap();
    /* a finished stream owes no data */
    if (ret == 0 && t->entry_left != 0)
        __builtin_trap();
    cs_error_free(err);
    csi_tar_reader_free(r);
    return ret;
}

/* Write a header for a name and size taken from the input, and read it back. */
static void
round_trip(const uint8_t *data, size_t size)
{
    char name[1024];
    cs_buf out = CS_BUF_INIT;
    csi_tar_entry e = {0}, pax = {0};
    cs_error *err = NULL;
    uint64_t fsize = 0;
    int64_t mtime;
    size_t i, nlen, used = 0;

    if (size < 16)
        return;
    for (i = 0; i < 8; i++)
        fsize = (fsize << 8) | data[i];
    mtime = (int64_t)(fsize ^ 0x5555555555555555u);
    fsize &= (UINT64_C(1) << (data[8] & 63)) - 1; /* small and huge sizes alike */
    nlen = size - 9 < sizeof(name) - 1 ? size - 9 : sizeof(name) - 1;
    memcpy(name, data + 9, nlen);
    name[nlen] = '\0';
    if (csi_tar_header(&out, name, fsize, 0644, mtime, CSI_TAR_REG, &err) < 0) {
        cs_error_free(err);
        return;
    }
    if (out.len % CSI_TAR_BLOCK != 0 ||
        csi_tar_parse_header(&e, (const unsigned char *)out.ptr, &err) != 0)
        __builtin_trap();
    if (e.typeflag == CSI_TAR_PAX) {
        pax = e;
        memset(&e, 0, sizeof(e));
        used = CSI_TAR_BLOCK + pax.size + csi_tar_padding(pax.size);
        if (used + CSI_TAR_BLOCK != out.len ||
            csi_tar_parse_header(&e, (const unsigned char *)out.ptr + used, &err) != 0 ||
            csi_tar_parse_pax(&e, out.ptr + CSI_TAR_BLOCK, pax.size, &err) != 0)
            __builtin_trap();
    }
    if (strcmp(e.name, name) != 0 || e.size != fsize || e.mtime != mtime ||
        e.typeflag != CSI_TAR_REG || e.mode != 0644)
        __builtin_trap();
    csi_tar_entry_dispose(&pax);
    csi_tar_entry_dispose(&e);
    cs_buf_dispose(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t chunks[] = {1, 7, 512, 513};
    struct tally whole, part;
    csi_tar_entry e = {0};
    cs_error *err = NULL;
    size_t i, off;
    int ret;

    ret = run(&whole, data, size, size > 0 ? size : 1);
    for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        /* the same bytes in other pieces give the same outcome */
        if (run(&part, data, size, chunks[i]) != ret || part.entries != whole.entries ||
            part.bytes != whole.bytes || part.safe != whole.safe)
            __builtin_trap();
    }
    for (off = 0; off + CSI_TAR_BLOCK <= size; off += CSI_TAR_BLOCK) {
        if (csi_tar_parse_header(&e, data + off, &err) == 0)
            csi_tar_entry_dispose(&e);
        cs_error_free(err);
        err = NULL;
    }
    if (csi_tar_parse_pax(&e, (const char *)data, size, &err) < 0)
        cs_error_free(err);
    csi_tar_entry_dispose(&e);
    round_trip(data, size);
    return 0;
}
