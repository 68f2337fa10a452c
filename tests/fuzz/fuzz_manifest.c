/* libFuzzer target: manifests, indexes, image configs and platform selection over
 * untrusted bytes. */
#include <stdint.h>
#include <stdlib.h>

#include <cachesync/manifest.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cs_manifest *m = NULL;
    cs_image_config *c = NULL;
    cs_error *err = NULL;

    if (cs_manifest_parse(&m, (const char *)data, size, NULL, &err) == 0) {
        if (m->kind == CS_MANIFEST_INDEX) {
            cs_platform p = {0};
            const cs_descriptor *d = NULL;

            if (cs_platform_parse(&p, "linux/amd64", NULL) == 0) {
                cs_error *e2 = NULL;

                if (cs_manifest_select(&d, m, &p, &e2) == 0 && d->digest == NULL)
                    abort();
                cs_error_free(e2);
            }
            cs_platform_dispose(&p);
        }
        cs_manifest_free(m);
    }
    cs_error_free(err);
    err = NULL;
    if (cs_image_config_parse(&c, (const char *)data, size, &err) == 0)
        cs_image_config_free(c);
    cs_error_free(err);
    return 0;
}
