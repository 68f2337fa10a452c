/* Fuzz target: untrusted bytes as a layer blob that claims to be ours (pgunzip.c, which
 * pull_stream.c uses to send such a layer to the daemon decompressed). The total comes from
 * the blob's footer when it has one, else from its first 3 bytes (at most 16 MiB); the blob is
 * read back with read sizes from the first byte. The reader must never return more than the
 * total, and succeed only with exactly the total. Then the same bytes go through pgzip and
 * back and must come out equal. Built with -fsanitize=fuzzer, and with replay.c so the corpus
 * runs in `make check`. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cachesync/buf.h>
#include "pgunzip.h"
#include "pgzip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
blob_fd(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_pgunzip", MFD_CLOEXEC);

    if (fd < 0 || write(fd, data, size) != (ssize_t)size)
        __builtin_trap();
    return fd;
}

/* Read it all: the bytes, or -1 on an error (which must have a one-line message). */
static long long
read_all(const uint8_t *data, size_t size, uint64_t total, size_t chunk, cs_buf *keep)
{
    csi_pgunzip *u = NULL;
    cs_error *err = NULL;
    char buf[4096];
    long long got = 0;
    int fd = blob_fd(data, size);
    long r;

    if (csi_pgunzip_new(&u, fd, size, total, "fuzz blob", &err) < 0)
        __builtin_trap();
    for (;;) {
        r = csi_pgunzip_read(u, buf, chunk, &err);
        if (r <= 0)
            break;
        if (buf[0] == 0x7f && buf[r - 1] == 0x7f)
            got += 0; /* touch both ends so ASan sees a bad length */
        got += r;
        if ((uint64_t)got > total || csi_pgunzip_pos(u) != (uint64_t)got)
            __builtin_trap();
        if (keep != NULL && cs_buf_append(keep, buf, (size_t)r, NULL) < 0)
            __builtin_trap();
    }
    if (r < 0 && (err == NULL || strchr(err->message, '\n') != NULL))
        __builtin_trap();
    if (r == 0 && (uint64_t)got != total)
        __builtin_trap();
    cs_error_free(err);
    csi_pgunzip_free(u);
    close(fd);
    return r < 0 ? -1 : got;
}

static int
sink(void *payload, const char *d, size_t len, cs_error **err)
{
    return cs_buf_append(payload, d, len, err);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t chunks[] = {4096, 1, 7, 1000};
    uint64_t total = 0;
    cs_buf z = CS_BUF_INIT, back = CS_BUF_INIT;
    csi_pgzip *g = NULL;
    cs_error *err = NULL;

    if (size < 4)
        return 0;
    if (size < CSI_PGZIP_FOOTER || !csi_pgzip_total_size(&total, data + size - CSI_PGZIP_FOOTER))
        total = (uint64_t)data[1] | (uint64_t)data[2] << 8 | (uint64_t)data[3] << 16;
    (void)read_all(data, size, total, chunks[data[0] & 3], NULL);

    if (size > 64 * 1024)
        return 0;
    csi_pgzip_set_threads(1);
    if (csi_pgzip_new(&g, 1 + data[0] % 9, sink, &z, &err) < 0 ||
        csi_pgzip_feed(g, data, size, &err) < 0 || csi_pgzip_finish(g, &err) < 0)
        __builtin_trap();
    csi_pgzip_free(g);
    if (!csi_pgzip_total_size(&total, (const unsigned char *)z.ptr + z.len - CSI_PGZIP_FOOTER) ||
        total != size)
        __builtin_trap();
    if (read_all((const uint8_t *)z.ptr, z.len, total, 4096, &back) != (long long)size ||
        memcmp(back.ptr, data, size) != 0)
        __builtin_trap();
    cs_buf_dispose(&z);
    cs_buf_dispose(&back);
    return 0;
}
