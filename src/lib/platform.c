/* Platforms: parse, normalise and match as containerd does (containerd/platforms
 * database.go normalizeArch, image-spec image-index.md "platform"). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include <cachesync/buf.h>
#include <cachesync/manifest.h>
#include "error_int.h"

/* Normalised copies of ARCH and VARIANT into the out parameters (static strings or the
 * inputs themselves; never allocated). */
static void
normalize_arch(const char **arch, const char **variant)
{
    const char *a = *arch, *v = *variant ? *variant : "";

    if (strcmp(a, "i386") == 0) {
        a = "386";
        v = "";
    } else if (strcmp(a, "x86_64") == 0 || strcmp(a, "x86-64") == 0 || strcmp(a, "amd64") == 0) {
        a = "amd64";
        if (strcmp(v, "v1") == 0)
            v = "";
    } else if (strcmp(a, "aarch64") == 0 || strcmp(a, "arm64") == 0) {
        a = "arm64";
        if (strcmp(v, "8") == 0 || strcmp(v, "v8") == 0 || strcmp(v, "v8.0") == 0)
            v = "";
    } else if (strcmp(a, "armhf") == 0) {
        a = "arm";
        v = "v7";
    } else if (strcmp(a, "armel") == 0) {
        a = "arm";
        v = "v6";
    } else if (strcmp(a, "arm") == 0) {
        if (*v == '\0' || strcmp(v, "7") == 0)
            v = "v7";
        else if (strcmp(v, "5") == 0)
            v = "v5";
        else if (strcmp(v, "6") == 0)
            v = "v6";
        else if (strcmp(v, "8") == 0)
            v = "v8";
    }
    *arch = a;
    *variant = *v ? v : NULL;
}

static int
set_platform(cs_platform *out, const char *os, const char *arch, const char *variant,
             cs_error **err)
{
    cs_platform p = {0};

    normalize_arch(&arch, &variant);
    p.os = strdup(os);
    p.architecture = strdup(arch);
    p.variant = variant ? strdup(variant) : NULL;
    if (p.os == NULL || p.architecture == NULL || (variant && p.variant == NULL)) {
        cs_platform_dispose(&p);
        return csi_error_oom(err);
    }
    for (char *c = p.os; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    *out = p;
    return 0;
}

int
cs_platform_parse(cs_platform *out, const char *str, cs_error **err)
{
    char buf[128], *parts[4] = {0};
    size_t n = 0;
    char *s, *save = NULL;

    if (str == NULL || strlen(str) >= sizeof(buf))
        return csi_error_set(err, CS_EINVAL, "invalid platform \"%.100s\"", str ? str : "");
    strcpy(buf, str);
    for (s = strtok_r(buf, "/", &save); s != NULL; s = strtok_r(NULL, "/", &save)) {
        if (n == 3)
            return csi_error_set(err, CS_EINVAL,
                                 "invalid platform \"%s\": expected OS/ARCH[/VARIANT]", str);
        parts[n++] = s;
    }
    if (n < 2 || strchr(str, '/') == str || str[strlen(str) - 1] == '/' || strstr(str, "//"))
        return csi_error_set(err, CS_EINVAL, "invalid platform \"%s\": expected OS/ARCH[/VARIANT]",
                             str);
    for (size_t i = 0; i < n; i++) {
        for (s = parts[i]; *s; s++) {
            if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
                return csi_error_set(err, CS_EINVAL, "invalid platform \"%s\"", str);
        }
    }
    return set_platform(out, parts[0], parts[1], parts[2], err);
}

int
cs_platform_host(cs_platform *out, cs_error **err)
{
    struct utsname u;

    if (uname(&u) != 0)
        return csi_error_errno(err, errno, "uname");
    return set_platform(out, "linux", u.machine, NULL, err);
}

char *
cs_platform_to_string(const cs_platform *p)
{
    char *s = NULL;
    int n;

    if (p->variant != NULL)
        n = asprintf(&s, "%s/%s/%s", p->os ? p->os : "?", p->architecture ? p->architecture : "?",
                     p->variant);
    else
        n = asprintf(&s, "%s/%s", p->os ? p->os : "?", p->architecture ? p->architecture : "?");
    return n < 0 ? NULL : s;
}

static bool
streq_null(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

bool
cs_platform_matches(const cs_platform *want, const cs_platform *cand)
{
    const char *wa, *wv, *ca, *cv;

    if (want->os == NULL || cand->os == NULL || want->architecture == NULL ||
        cand->architecture == NULL)
        return false;
    if (strcasecmp(want->os, cand->os) != 0)
        return false;
    wa = want->architecture;
    wv = want->variant;
    ca = cand->architecture;
    cv = cand->variant;
    normalize_arch(&wa, &wv);
    normalize_arch(&ca, &cv);
    if (strcmp(wa, ca) != 0)
        return false;
    /* A platform that names no variant takes any (ggcr Satisfies: only specified fields
     * must be equal); arm always has one after normalisation. */
    if (wv != NULL && !streq_null(wv, cv))
        return false;
    if (want->os_version != NULL && !streq_null(want->os_version, cand->os_version))
        return false;
    return true;
}

int
cs_manifest_select(const cs_descriptor **out, const cs_manifest *index, const cs_platform *want,
                   cs_error **err)
{
    cs_buf offered = CS_BUF_INIT;
    char *ws = NULL;
    size_t i;
    int ret;

    for (i = 0; i < index->nmanifests; i++) {
        const cs_descriptor *d = &index->manifests[i];

        if (d->attestation || d->platform == NULL)
            continue;
        if (!cs_media_type_is_manifest(d->media_type) && !cs_media_type_is_index(d->media_type))
            continue;
        /* image-index.md: "the first matching entry SHOULD be used" */
        if (cs_platform_matches(want, d->platform)) {
            *out = d;
            return 0;
        }
    }
    for (i = 0; i < index->nmanifests; i++) {
        char *s;

        if (index->manifests[i].attestation || index->manifests[i].platform == NULL)
            continue;
        s = cs_platform_to_string(index->manifests[i].platform);
        if (s == NULL || cs_buf_printf(&offered, NULL, "%s%s", offered.len ? ", " : "", s) < 0) {
            free(s);
            cs_buf_dispose(&offered);
            return csi_error_oom(err);
        }
        free(s);
    }
    ws = cs_platform_to_string(want);
    ret = csi_error_set(err, CS_ENOTFOUND, "no image for platform %s in the index (it has: %s)",
                        ws ? ws : "?", offered.len ? offered.ptr : "none");
    free(ws);
    cs_buf_dispose(&offered);
    return ret;
}
