/* Image references, parsed and normalised the way Docker does it: ParseNormalizedNamed
 * followed by TagNameOnly from github.com/distribution/reference (normalize.go,
 * reference.go, regexp.go; facts in docs/reference/registry-and-daemon-protocols.md 2.8).
 *
 * The grammar is checked by hand instead of with regular expressions: every piece of a
 * reference (domain, path, tag, digest) is delimited by a character the others cannot
 * contain, so splitting first and then checking each piece accepts exactly what the
 * anchored regexps accept, in linear time and with a precise message for each failure.
 *
 * Pure: no I/O, no global state; every string is malloc'd and owned by the reference. */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cachesync/reference.h>
#include "error_int.h"

/* normalize.go: defaultDomain, legacyDefaultDomain, officialRepoPrefix, defaultTag. */
#define DEFAULT_DOMAIN "docker.io"
#define LEGACY_DOMAIN "index.docker.io"
#define OFFICIAL_PREFIX "library/"
#define OFFICIAL_PREFIX_LEN (sizeof(OFFICIAL_PREFIX) - 1)
#define DEFAULT_TAG "latest"
/* Docker Hub's canonical name is not the host that serves /v2/ (moby DefaultRegistryHost). */
#define HUB_API_HOST "registry-1.docker.io"

/* reference.go RepositoryNameTotalLengthMax. Since distribution/reference v0.6.0 (commit
 * aaca75e, "Exclude domain from name length check") only the path counts, not the domain. */
#define PATH_MAX_LEN 255
/* regexp.go tag = [\w][\w.-]{0,127} */
#define TAG_MAX_LEN 128
/* regexp.go identifier = [a-f0-9]{64}: a bare image ID is refused as a name. */
#define IDENTIFIER_LEN 64
/* regexp.go digestPat: at least 128 bits of hex for algorithms we do not know. */
#define DIGEST_MIN_HEX 32

/* Quoted copies of user input in messages are capped so a hostile megabyte-long
 * reference cannot produce a megabyte-long error line. */
#define QUOTE_MAX 160
#define QUOTE_BUF (QUOTE_MAX + 8)

/* The character classes are ASCII-only on purpose: <ctype.h> depends on the locale and is
 * undefined for negative chars, while the reference grammar is plain ASCII. */
static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool
is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool
is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static bool
is_alnum(char c)
{
    return is_digit(c) || is_lower(c) || is_upper(c);
}

static bool
is_lower_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f');
}

static bool
is_hex(char c)
{
    return is_lower_hex(c) || (c >= 'A' && c <= 'F');
}

/* Go's \w */
static bool
is_word(char c)
{
    return is_alnum(c) || c == '_';
}

static bool
span_eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static bool
span_has(const char *s, size_t n, const char *set)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strchr(set, s[i]) != NULL)
            return true;
    }
    return false;
}

static bool
span_has_upper(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (is_upper(s[i]))
            return true;
    }
    return false;
}

/* Copy N bytes of S into DST (QUOTE_BUF bytes) so that the result is printable ASCII on
 * one line: quotes, backslashes, control and non-ASCII bytes are escaped, and the copy
 * stops with "..." once QUOTE_MAX bytes are used. */
static void
quote_span(char *dst, const char *s, size_t n)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[5];
        size_t elen;

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c < 0x20 || c >= 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            elen = 4;
        } else {
            esc[0] = (char)c;
            elen = 1;
        }
        if (o + elen > QUOTE_MAX) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(dst + o, esc, elen);
        o += elen;
    }
    dst[o] = '\0';
}

/* All parse errors share one shape, `invalid reference "<input>": <what>`, so a user can
 * always tell which argument was refused. */
static int ref_fail(cs_error **err, const char *input, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
ref_fail(cs_error **err, const char *input, const char *fmt, ...)
{
    char quoted[QUOTE_BUF];
    char what[4 * QUOTE_BUF];
    va_list ap;

    quote_span(quoted, input, strlen(input));
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return csi_error_set(err, CS_EINVAL, "invalid reference \"%s\": %s", quoted, what);
}

/* regexp.go domainNameComponent: [a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9] */
static bool
valid_domain_component(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (i = 0; i < n; i++) {
        if (!is_alnum(s[i]) && s[i] != '-')
            return false;
    }
    return true;
}

/* Checks regexp.go domainAndPort = host optionalPort, where host is a dotted domain name
 * (IPv4 addresses included) or \[[a-fA-F0-9:]+\]. Returns NULL when valid, else why not. */
static const char *
check_domain(const char *s, size_t n)
{
    size_t host_end, i, start;

    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);

        /* Zone identifiers (%eth0) and embedded IPv4 are excluded on purpose upstream. */
        if (close == NULL || close == s + 1)
            return "IPv6 address must be hex digits and ':' inside [ ]";
        for (i = 1; s + i < close; i++) {
            if (!is_hex(s[i]) && s[i] != ':')
                return "IPv6 address must be hex digits and ':' inside [ ]";
        }
        host_end = (size_t)(close - s) + 1;
    } else {
        const char *colon = memchr(s, ':', n);

        host_end = colon != NULL ? (size_t)(colon - s) : n;
        start = 0;
        for (i = 0; i <= host_end; i++) {
            if (i == host_end || s[i] == '.') {
                if (!valid_domain_component(s + start, i - start))
                    return "each dot-separated part must be letters, digits and inner '-'";
                start = i + 1;
            }
        }
    }
    if (host_end == n)
        return NULL;
    if (s[host_end] != ':' || host_end + 1 == n)
        return "port must be ':' followed by digits";
    for (i = host_end + 1; i < n; i++) {
        if (!is_digit(s[i]))
            return "port must be ':' followed by digits";
    }
    return NULL;
}

/* regexp.go pathComponent: [a-z0-9]+ joined by one of the separators (?:[._]|__|[-]+). */
static bool
valid_path_component(const char *s, size_t n)
{
    size_t i = 0;

    for (;;) {
        size_t start = i;

        while (i < n && (is_lower(s[i]) || is_digit(s[i])))
            i++;
        if (i == start)
            return false;
        if (i == n)
            return true;
        if (s[i] == '.') {
            i++;
        } else if (s[i] == '_') {
            i++;
            if (i < n && s[i] == '_')
                i++;
        } else if (s[i] == '-') {
            while (i < n && s[i] == '-')
                i++;
        } else {
            return false;
        }
    }
}

/* regexp.go tag = [\w][\w.-]{0,127}. Returns NULL when valid, else why not. */
static const char *
check_tag(const char *s, size_t n)
{
    size_t i;

    if (n == 0)
        return "tag is empty";
    if (n > TAG_MAX_LEN)
        return "tag is longer than 128 characters";
    if (!is_word(s[0]))
        return "tag must start with a letter, digit or '_'";
    for (i = 1; i < n; i++) {
        if (!is_word(s[i]) && s[i] != '.' && s[i] != '-')
            return "tag may only contain letters, digits, '_', '.' and '-'";
    }
    return NULL;
}

/* digest := algorithm ":" hex. The algorithm follows regexp.go digestPat narrowed to lower
 * case, as go-digest's DigestRegexp requires; sha256/sha384/sha512 must have exactly their
 * length in lowercase hex (go-digest algorithm.go anchoredEncodedRegexps). Docker refuses
 * other algorithms as unsupported; we accept them with >= 32 hex digits so that a registry
 * can be asked about them. Returns NULL when valid, else why not. */
static const char *
check_digest(const char *s, size_t n)
{
    const char *colon = memchr(s, ':', n);
    size_t alg_len, hex_len, i, want = 0;
    const char *hex;
    bool comp_start = true;

    if (n == 0)
        return "digest is empty";
    if (colon == NULL)
        return "digest must be <algorithm>:<hex>";
    alg_len = (size_t)(colon - s);
    hex = colon + 1;
    hex_len = n - alg_len - 1;
    if (alg_len == 0)
        return "digest algorithm is empty";
    for (i = 0; i < alg_len; i++) {
        char c = s[i];

        if (comp_start && !is_lower(c))
            return "digest algorithm parts must start with a lowercase letter";
        if (!comp_start && (c == '-' || c == '_' || c == '+' || c == '.')) {
            comp_start = true;
            continue;
        }
        if (!is_lower(c) && !is_digit(c))
            return "digest algorithm must be lowercase letters and digits joined by -_+.";
        comp_start = false;
    }
    if (comp_start)
        return "digest algorithm must not end with a separator";

    if (span_eq(s, alg_len, "sha256"))
        want = 64;
    else if (span_eq(s, alg_len, "sha384"))
        want = 96;
    else if (span_eq(s, alg_len, "sha512"))
        want = 128;
    if (want != 0) {
        if (hex_len != want)
            return want == 64   ? "sha256 digest must have 64 hex digits"
                   : want == 96 ? "sha384 digest must have 96 hex digits"
                                : "sha512 digest must have 128 hex digits";
        for (i = 0; i < hex_len; i++) {
            if (!is_lower_hex(hex[i]))
                return "digest must be lowercase hex";
        }
        return NULL;
    }
    if (hex_len < DIGEST_MIN_HEX)
        return "digest must have at least 32 hex digits";
    for (i = 0; i < hex_len; i++) {
        if (!is_hex(hex[i]))
            return "digest must be hex digits";
    }
    return NULL;
}

static bool
is_identifier(const char *s)
{
    size_t i;

    for (i = 0; i < IDENTIFIER_LEN; i++) {
        if (!is_lower_hex(s[i]))
            return false;
    }
    return s[IDENTIFIER_LEN] == '\0';
}

static char *
dup_span(const char *s, size_t n)
{
    char *p = malloc(n + 1);

    if (p == NULL)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static char *
dup_two(const char *a, size_t alen, const char *b, size_t blen)
{
    char *p = malloc(alen + blen + 1);

    if (p == NULL)
        return NULL;
    memcpy(p, a, alen);
    memcpy(p + alen, b, blen);
    p[alen + blen] = '\0';
    return p;
}

void
cs_reference_free(cs_reference *ref)
{
    if (ref == NULL)
        return;
    free(ref->domain);
    free(ref->path);
    free(ref->tag);
    free(ref->digest);
    free(ref);
}

/* The pieces of a reference string, as spans into the input, before anything is copied. */
struct ref_parts {
    const char *domain;
    size_t domain_len;
    bool hub_prefix; /* "library/" goes in front of the path */
    const char *path;
    size_t path_len;
    const char *tag; /* NULL when absent */
    size_t tag_len;
    const char *digest; /* NULL when absent */
    size_t digest_len;
};

/* normalize.go splitDockerDomain: decide from the first '/'-separated component whether the
 * input names a registry. Nothing is validated yet; Docker too splits first, then checks. */
static void
split_docker_domain(struct ref_parts *p, const char *s, const char **rest)
{
    const char *slash = strchr(s, '/');
    size_t first_len;

    p->domain = DEFAULT_DOMAIN;
    p->domain_len = strlen(DEFAULT_DOMAIN);
    *rest = s;
    if (slash == NULL) {
        /* A single component is always a Docker Hub official image, even "localhost" or
         * "example.com:5000" (tag 5000): upstream keeps this for compatibility (FIXME). */
        p->hub_prefix = true;
        return;
    }
    first_len = (size_t)(slash - s);
    if (span_eq(s, first_len, LEGACY_DOMAIN)) {
        *rest = slash + 1;
    } else if (span_eq(s, first_len, "localhost") || span_has(s, first_len, ".:") ||
               span_has_upper(s, first_len)) {
        /* Namespaces are lowercase, so an uppercase first component can only be a host. */
        p->domain = s;
        p->domain_len = first_len;
        *rest = slash + 1;
    }
    p->hub_prefix = span_eq(p->domain, p->domain_len, DEFAULT_DOMAIN) && strchr(*rest, '/') == NULL;
}

/* remainder := path [":" tag] ["@" digest]. The path has neither ':' nor '@' and a tag has
 * no '@', so the first '@' starts the digest and the first ':' before it starts the tag. */
static void
split_remainder(struct ref_parts *p, const char *rest)
{
    const char *at = strchr(rest, '@');
    const char *name_end = at != NULL ? at : rest + strlen(rest);
    const char *colon = memchr(rest, ':', (size_t)(name_end - rest));

    p->path = rest;
    p->path_len = (size_t)((colon != NULL ? colon : name_end) - rest);
    p->tag = NULL;
    p->tag_len = 0;
    if (colon != NULL) {
        p->tag = colon + 1;
        p->tag_len = (size_t)(name_end - p->tag);
    }
    p->digest = NULL;
    p->digest_len = 0;
    if (at != NULL) {
        p->digest = at + 1;
        p->digest_len = strlen(p->digest);
    }
}

static int
check_parts(const struct ref_parts *p, const char *input, cs_error **err)
{
    char q[QUOTE_BUF];
    const char *why;
    size_t i, start, total;

    why = check_domain(p->domain, p->domain_len);
    if (why != NULL) {
        /* Docker would fall back to an empty domain when the whole name still matches the
         * path grammar ("foo_bar.com/app"); a reference without a registry is useless
         * here, so it is an error. */
        quote_span(q, p->domain, p->domain_len);
        return ref_fail(err, input, "invalid registry domain \"%s\": %s", q, why);
    }
    start = 0;
    for (i = 0; i <= p->path_len; i++) {
        if (i < p->path_len && p->path[i] != '/')
            continue;
        if (i == start)
            return ref_fail(err, input,
                            "repository path has an empty component "
                            "(leading, trailing or double '/')");
        if (!valid_path_component(p->path + start, i - start)) {
            quote_span(q, p->path + start, i - start);
            return ref_fail(err, input,
                            "invalid repository path component \"%s\": must be lowercase "
                            "letters and digits joined by '.', '_', '__' or '-'",
                            q);
        }
        start = i + 1;
    }
    total = p->path_len + (p->hub_prefix ? OFFICIAL_PREFIX_LEN : 0);
    if (total > PATH_MAX_LEN)
        return ref_fail(err, input, "repository path is longer than %d characters", PATH_MAX_LEN);
    if (p->tag != NULL) {
        why = check_tag(p->tag, p->tag_len);
        if (why != NULL) {
            quote_span(q, p->tag, p->tag_len);
            return ref_fail(err, input, "invalid tag \"%s\": %s", q, why);
        }
    }
    if (p->digest != NULL) {
        why = check_digest(p->digest, p->digest_len);
        if (why != NULL) {
            quote_span(q, p->digest, p->digest_len);
            return ref_fail(err, input, "invalid digest \"%s\": %s", q, why);
        }
    }
    return 0;
}

int
cs_reference_parse(cs_reference **out, const char *str, cs_error **err)
{
    struct ref_parts parts;
    cs_reference *ref = NULL;
    const char *rest, *colon;
    int ret;

    if (out == NULL || str == NULL)
        return csi_error_set(err, CS_EINVAL, "invalid reference: none given");
    if (str[0] == '\0')
        return ref_fail(err, str, "reference is empty");
    /* normalize.go ParseNormalizedNamed: only the whole input is compared, so
     * "<64 hex>:tag" and "docker.io/<64 hex>" remain valid names. */
    if (is_identifier(str))
        return ref_fail(err, str, "repository name cannot be a 64-byte hexadecimal string");

    split_docker_domain(&parts, str, &rest);
    /* ParseNormalizedNamed looks for uppercase up to the first ':' of the remainder, before
     * any grammar check, so "foo/Bar" gets this message rather than a generic one. */
    colon = strchr(rest, ':');
    if (span_has_upper(rest, colon != NULL ? (size_t)(colon - rest) : strlen(rest)))
        return ref_fail(err, str, "repository name must be lowercase");
    split_remainder(&parts, rest);
    ret = check_parts(&parts, str, err);
    if (ret < 0)
        return ret;

    ref = calloc(1, sizeof(*ref));
    if (ref == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    ref->domain = dup_span(parts.domain, parts.domain_len);
    if (parts.hub_prefix)
        ref->path = dup_two(OFFICIAL_PREFIX, OFFICIAL_PREFIX_LEN, parts.path, parts.path_len);
    else
        ref->path = dup_span(parts.path, parts.path_len);
    /* TagNameOnly: "latest" only when there is neither a tag nor a digest. */
    if (parts.tag != NULL)
        ref->tag = dup_span(parts.tag, parts.tag_len);
    else if (parts.digest == NULL)
        ref->tag = dup_span(DEFAULT_TAG, strlen(DEFAULT_TAG));
    if (parts.digest != NULL)
        ref->digest = dup_span(parts.digest, parts.digest_len);
    if (ref->domain == NULL || ref->path == NULL ||
        (ref->tag == NULL && (parts.tag != NULL || parts.digest == NULL)) ||
        (ref->digest == NULL && parts.digest != NULL)) {
        ret = csi_error_oom(err);
        goto out;
    }
    *out = ref;
    ref = NULL;
    ret = 0;
out:
    cs_reference_free(ref);
    return ret;
}

char *
cs_reference_to_string(const cs_reference *ref, unsigned flags)
{
    const char *domain, *path, *tag = NULL, *digest = NULL;
    size_t len, dlen = 0, plen, tlen = 0, glen = 0;
    char *s, *o;

    if (ref == NULL || ref->domain == NULL || ref->path == NULL)
        return NULL;
    domain = ref->domain;
    path = ref->path;
    if ((flags & CS_REF_FAMILIAR) && strcmp(domain, DEFAULT_DOMAIN) == 0) {
        /* normalize.go familiarizeName: "library/" goes only when one component is left. */
        domain = NULL;
        if (strncmp(path, OFFICIAL_PREFIX, OFFICIAL_PREFIX_LEN) == 0 &&
            strchr(path + OFFICIAL_PREFIX_LEN, '/') == NULL)
            path += OFFICIAL_PREFIX_LEN;
    }
    if (!(flags & CS_REF_NAME_ONLY)) {
        tag = ref->tag;
        digest = ref->digest;
    }
    if (domain != NULL)
        dlen = strlen(domain) + 1;
    plen = strlen(path);
    if (tag != NULL)
        tlen = strlen(tag) + 1;
    if (digest != NULL)
        glen = strlen(digest) + 1;
    len = dlen + plen + tlen + glen;
    s = malloc(len + 1);
    if (s == NULL)
        return NULL;
    o = s;
    if (domain != NULL) {
        memcpy(o, domain, dlen - 1);
        o += dlen - 1;
        *o++ = '/';
    }
    memcpy(o, path, plen);
    o += plen;
    if (tag != NULL) {
        *o++ = ':';
        memcpy(o, tag, tlen - 1);
        o += tlen - 1;
    }
    if (digest != NULL) {
        *o++ = '@';
        memcpy(o, digest, glen - 1);
        o += glen - 1;
    }
    *o = '\0';
    return s;
}

const char *
cs_reference_api_host(const cs_reference *ref)
{
    if (ref == NULL)
        return NULL;
    if (strcmp(ref->domain, DEFAULT_DOMAIN) == 0)
        return HUB_API_HOST;
    return ref->domain;
}

const char *
cs_reference_target(const cs_reference *ref)
{
    if (ref == NULL)
        return NULL;
    /* A digest pins the content; a tag next to it is only informative (ParseDockerRef). */
    return ref->digest != NULL ? ref->digest : ref->tag;
}

int
cs_reference_with_target(cs_reference **out, const cs_reference *ref, const char *target,
                         cs_error **err)
{
    cs_reference *copy = NULL;
    char q[QUOTE_BUF];
    const char *why;
    bool is_digest;
    size_t n;
    int ret;

    if (out == NULL || ref == NULL || target == NULL)
        return csi_error_set(err, CS_EINVAL, "invalid reference target: none given");
    n = strlen(target);
    /* Tags cannot contain ':', so a ':' can only mean "alg:hex". */
    is_digest = strchr(target, ':') != NULL;
    why = is_digest ? check_digest(target, n) : check_tag(target, n);
    if (why != NULL) {
        quote_span(q, target, n);
        return csi_error_set(err, CS_EINVAL, "invalid %s \"%s\": %s", is_digest ? "digest" : "tag",
                             q, why);
    }

    copy = calloc(1, sizeof(*copy));
    if (copy == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    copy->domain = dup_span(ref->domain, strlen(ref->domain));
    copy->path = dup_span(ref->path, strlen(ref->path));
    if (is_digest)
        copy->digest = dup_span(target, n);
    else
        copy->tag = dup_span(target, n);
    if (copy->domain == NULL || copy->path == NULL || (copy->digest == NULL && copy->tag == NULL)) {
        ret = csi_error_oom(err);
        goto out;
    }
    *out = copy;
    copy = NULL;
    ret = 0;
out:
    cs_reference_free(copy);
    return ret;
}
