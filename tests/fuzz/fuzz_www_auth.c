/* Fuzz target: the same untrusted bytes as a WWW-Authenticate value, a token endpoint
 * answer and a Docker config.json. Built with -fsanitize=fuzzer, and with replay.c so the
 * corpus runs in `make check`. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "credentials.h"
#include "www_auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    csi_challenge *c = NULL;
    csi_token t = CSI_TOKEN_INIT;
    csi_credential cred = CSI_CREDENTIAL_INIT;
    cs_error *err = NULL;
    size_t n = 0, i;

    if (csi_www_auth_parse(&c, &n, s, size, &err) == 0) {
        /* Walk the result so a bad length or pointer shows up under ASan. */
        for (i = 0; i < n; i++) {
            if (csi_challenge_find(c, n, c[i].scheme) == NULL)
                __builtin_trap();
            (void)csi_challenge_param(&c[i], "realm");
            if (c[i].nparams > 0 &&
                csi_challenge_param(&c[i], c[i].params[0].name) != c[i].params[0].value)
                __builtin_trap();
        }
    }
    csi_challenges_free(c, n);
    cs_error_free(err);
    err = NULL;

    if (csi_token_parse(&t, s, size, &err) == 0) {
        if (t.token == NULL || t.token[0] == '\0' || t.expires_in < CSI_TOKEN_MIN_EXPIRES ||
            t.expires_in > CSI_TOKEN_MAX_EXPIRES)
            __builtin_trap();
    }
    csi_token_dispose(&t);
    cs_error_free(err);
    err = NULL;

    if (csi_credential_lookup(&cred, s, size, "example.com", &err) == 0) {
        /* A helper answer carries nothing else (credentials.h). */
        if (cred.helper != NULL && (cred.username != NULL || cred.password != NULL ||
                                    cred.identity_token != NULL || cred.registry_token != NULL))
            __builtin_trap();
    }
    csi_credential_dispose(&cred);
    cs_error_free(err);
    return 0;
}
