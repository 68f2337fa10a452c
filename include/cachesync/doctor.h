/* cachesync: will `docker build --cache-from REF` hit on this machine? Each check reports
 * ok, warn or fail with a one-line detail; the verdict is ready when none failed, and the
 * report names the command that fixes what is wrong. */
#ifndef CACHESYNC_DOCTOR_H
#define CACHESYNC_DOCTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <cachesync/error.h>
#include <cachesync/registry.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CS_CHECK_OK = 0, CS_CHECK_WARN = 1, CS_CHECK_FAIL = 2 } cs_check_status;

typedef struct cs_check {
    char *name;   /* "daemon", "image store", "image", "inline cache", "layers", "metadata size",
                     "registry" */
    cs_check_status status;
    char *detail; /* one line */
} cs_check;

typedef struct cs_doctor_report {
    char *ref; /* REF, normalised */
    cs_check *checks;
    size_t nchecks;
    bool ready;
    char *fix; /* the command that fixes the first failure, or NULL */
} cs_doctor_report;

typedef struct cs_doctor_options {
    const char *ref;
    const char *docker_host;
    const char *store_dir;
    cs_registry_options registry;
} cs_doctor_options;

/** Run the checks. Only a malformed REF or out of memory fail the call itself; everything
 * else is a finding in the report. */
int cs_doctor(cs_doctor_report **out, const cs_doctor_options *opts, cs_error **err);
void cs_doctor_report_free(cs_doctor_report *r);

#ifdef __cplusplus
}
#endif
#endif
