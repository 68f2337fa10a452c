/* Fuzz target: untrusted bytes as a registry manifest converted for an OCI layout target
 * (cs_manifest_to_oci, src/lib/manifest.c). What converts must parse again as an OCI image
 * manifest naming the same config and the same layers, in order, with the same sizes.
 * Built with -fsanitize=fuzzer, and with replay.c so the corpus runs in `make check`. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cachesync/buf.h>
#include <cachesync/manifest.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
same_desc(const cs_descriptor *a, const cs_descriptor *b)
{
    return strcmp(a->digest, b->digest) == 0 && a->size == b->size;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cs_manifest *in = NULL, *out = NULL;
    cs_buf oci = CS_BUF_INIT;
    cs_error *err = NULL;
    size_t i;

    if (cs_manifest_to_oci(&oci, (const char *)data, size, &err) < 0) {
        if (err == NULL || strchr(err->message, '\n') != NULL)
            __builtin_trap();
        cs_error_free(err);
        cs_buf_dispose(&oci);
        return 0;
    }
    if (cs_manifest_parse(&in, (const char *)data, size, NULL, &err) < 0 ||
        in->kind != CS_MANIFEST_IMAGE)
        __builtin_trap();
    if (cs_manifest_parse(&out, oci.ptr, oci.len, CS_MEDIA_OCI_MANIFEST, &err) < 0 ||
        out->kind != CS_MANIFEST_IMAGE || strcmp(out->media_type, CS_MEDIA_OCI_MANIFEST) != 0)
        __builtin_trap();
    if (!same_desc(&in->config, &out->config) || in->nlayers != out->nlayers)
        __builtin_trap();
    for (i = 0; i < in->nlayers; i++) {
        if (!same_desc(&in->layers[i], &out->layers[i]))
            __builtin_trap();
    }
    cs_manifest_free(in);
    cs_manifest_free(out);
    cs_buf_dispose(&oci);
    return 0;
}
