/* Docker credential helpers (docker/docker-credential-helpers client protocol): run
 * `docker-credential-<helper> get`, the server key on stdin, and read
 * {"ServerURL","Username","Secret"} from stdout; `store` takes that object on stdin, `erase`
 * the server key. Helpers print their errors on stdout. */
#ifndef CS_LIB_CREDHELPER_H
#define CS_LIB_CREDHELPER_H

#include <stdbool.h>

#include <cachesync/error.h>

#include "credentials.h"

#define CSI_CREDHELPER_MAX_OUTPUT (64u * 1024) /* bytes of helper stdout; over -> CS_ELIMIT */

/* Ask docker-credential-HELPER (found on PATH) for the credentials of SERVER_KEY (as
 * csi_credential_key gives it). On success *OUT (which must hold no allocations; its helper
 * field is left alone) gets username + password, or identity_token when the helper answers
 * Username "<token>"; a helper that says "credentials not found" (exit non-zero) is 0 with
 * nothing set: anonymous. Errors: CS_EINVAL for a HELPER that is not [A-Za-z0-9._-]+,
 * CS_ERROR when docker-credential-HELPER is not on PATH, CS_EIO when it cannot be run,
 * CS_EAUTH when it fails (the message quotes the first line of its output, where helpers
 * print their errors; never the secret), CS_EPROTO for an answer that is not the JSON
 * object, CS_ELIMIT over CSI_CREDHELPER_MAX_OUTPUT, CS_ENOMEM. Its stderr is the caller's. */
int csi_credhelper_get(csi_credential *out, const char *helper, const char *server_key,
                       cs_error **err);

/* `docker-credential-HELPER store` with {"ServerURL": SERVER_KEY, "Username": USERNAME,
 * "Secret": SECRET} (docker/cli passes Username "<token>" and the identity token as SECRET
 * for one). Errors as csi_credhelper_get's, except that a helper's failure is CS_ERROR
 * (quoting the first line of its output). */
int csi_credhelper_store(const char *helper, const char *server_key, const char *username,
                         const char *secret, cs_error **err);

/* `docker-credential-HELPER erase` of SERVER_KEY. *FOUND is false when the helper says
 * "credentials not found" (0 is returned: nothing to erase is no failure). Errors as
 * csi_credhelper_store's. */
int csi_credhelper_erase(bool *found, const char *helper, const char *server_key, cs_error **err);

#endif
