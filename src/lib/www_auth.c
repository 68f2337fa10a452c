/* WWW-Authenticate challenges and token endpoint answers: see www_auth.h.
 *
 * Grammar (RFC 7235 section 2.1 and 4.1, RFC 7230 section 7):
 *   WWW-Authenticate = 1#challenge
 *   challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
 *   auth-param = token BWS "=" BWS ( token / quoted-string )
 * A comma separates both challenges and the parameters of one challenge, so after a comma
 * a token followed by "=" continues the current challenge and any other token starts a new
 * one. That is the rule distribution's and containers/image's parsers use too. */
#include "config.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "error_int.h"
#include "json.h"
#include "www_auth.h"

/* Bytes of input quoted in an error message: enough to locate the fault, and short
 * enough that a header carrying something sensitive is not copied into logs wholesale. */
#define SNIPPET_MAX 24

typedef struct parser {
    const char *s;
    size_t len;
    size_t pos;
} parser;

static bool
is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool
is_token68_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("-._~+/", c) != NULL;
}

/* CR and LF count as whitespace so a value with an unfolded continuation line or the
 * header line's own CRLF still parses. */
static bool
is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Unquoted parameter values: RFC 7235 allows only a token, but registries have been seen
 * sending unquoted URLs (`realm=https://...`), which need '/' and ':'. Anything visible
 * except the list and quoting delimiters is accepted. */
static bool
is_value_char(unsigned char c)
{
    return c > 0x20 && c != 0x7f && c != ',' && c != '"' && c != '\\';
}

static char
ascii_lower(char c)
{
    if (c >= 'A' && c <= 'Z')
        return (char)(c - 'A' + 'a');
    return c;
}

/* ASCII-only on purpose: strcasecmp follows the locale, and HTTP names are ASCII. */
static bool
ascii_casecmp_eq(const char *a, const char *b)
{
    while (*a != '\0' && ascii_lower(*a) == ascii_lower(*b)) {
        a++;
        b++;
    }
    return ascii_lower(*a) == ascii_lower(*b);
}

static void
skip_ws(parser *p)
{
    while (p->pos < p->len && is_ws((unsigned char)p->s[p->pos]))
        p->pos++;
}

static bool
at_end(const parser *p)
{
    return p->pos >= p->len;
}

static unsigned char
peek(const parser *p)
{
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : '\0';
}

static int
syntax_error(cs_error **err, const parser *p, const char *what)
{
    char snippet[SNIPPET_MAX + 4];
    size_t i, n = 0;

    for (i = p->pos; i < p->len && n < SNIPPET_MAX; i++) {
        unsigned char c = (unsigned char)p->s[i];

        /* Keep the message one printable line whatever the peer sent. */
        snippet[n++] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
    }
    if (i < p->len) {
        memcpy(snippet + n, "...", 3);
        n += 3;
    }
    snippet[n] = '\0';
    if (at_end(p))
        return csi_error_set(err, CS_EPROTO, "malformed WWW-Authenticate: %s at end of value",
                             what);
    return csi_error_set(err, CS_EPROTO, "malformed WWW-Authenticate: %s at byte %zu (\"%s\")",
                         what, p->pos, snippet);
}

static char *
dup_lower(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    size_t i;

    if (d == NULL)
        return NULL;
    for (i = 0; i < n; i++)
        d[i] = ascii_lower(s[i]);
    d[n] = '\0';
    return d;
}

static char *
dup_bytes(const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Run of token characters at the cursor; returns its length (0 when there is none). */
static size_t
scan_token(parser *p)
{
    size_t start = p->pos;

    while (p->pos < p->len && is_tchar((unsigned char)p->s[p->pos]))
        p->pos++;
    return p->pos - start;
}

/* quoted-string at the cursor (which is on the opening quote) -> *out, unescaped. */
static int
parse_quoted(char **out, parser *p, cs_error **err)
{
    char *buf = NULL;
    size_t n = 0;
    int ret;

    /* The unescaped text is never longer than what is left of the input. */
    buf = malloc(p->len - p->pos + 1);
    if (buf == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    p->pos++;
    for (;;) {
        unsigned char c;

        if (at_end(p)) {
            ret = syntax_error(err, p, "unterminated quoted string");
            goto out;
        }
        c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c == '\\') {
            p->pos++;
            if (at_end(p)) {
                ret = syntax_error(err, p, "unterminated quoted string");
                goto out;
            }
            c = (unsigned char)p->s[p->pos];
        }
        /* CTLs other than HTAB are not qdtext nor quoted-pair; letting CR or LF through
         * would also let a realm smuggle header lines into a later request. */
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            ret = syntax_error(err, p, "control character in quoted string");
            goto out;
        }
        buf[n++] = (char)c;
        p->pos++;
    }
    buf[n] = '\0';
    *out = buf;
    buf = NULL;
    ret = 0;
out:
    free(buf);
    return ret;
}

static int
add_param(csi_challenge *c, size_t *cap, char *name, char *value, cs_error **err)
{
    size_t i;

    /* A repeated name keeps its first value. distribution's map keeps the last one, but a
     * peer repeating realm= is suspect either way, and first-wins cannot be steered by
     * text appended to the end of a value. */
    for (i = 0; i < c->nparams; i++) {
        if (strcmp(c->params[i].name, name) == 0) {
            free(name);
            free(value);
            return 0;
        }
    }
    if (c->nparams == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        csi_auth_param *np;

        if (ncap > CSI_WWW_AUTH_MAX_PARAMS)
            ncap = CSI_WWW_AUTH_MAX_PARAMS;
        np = realloc(c->params, ncap * sizeof(*np));
        if (np == NULL) {
            free(name);
            free(value);
            return csi_error_oom(err);
        }
        c->params = np;
        *cap = ncap;
    }
    c->params[c->nparams].name = name;
    c->params[c->nparams].value = value;
    c->nparams++;
    return 0;
}

/* auth-param at the cursor, appended to C unless its name was already seen. */
static int
parse_param(csi_challenge *c, size_t *cap, size_t *seen, parser *p, cs_error **err)
{
    char *name = NULL;
    char *value = NULL;
    size_t start, n;
    int ret;

    if (*seen >= CSI_WWW_AUTH_MAX_PARAMS) {
        ret =
            csi_error_set(err, CS_ELIMIT, "WWW-Authenticate challenge has more than %d parameters",
                          CSI_WWW_AUTH_MAX_PARAMS);
        goto out;
    }
    (*seen)++;
    start = p->pos;
    n = scan_token(p);
    if (n == 0) {
        ret = syntax_error(err, p, "expected a parameter name");
        goto out;
    }
    name = dup_lower(p->s + start, n);
    if (name == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    skip_ws(p);
    if (peek(p) != '=') {
        ret = syntax_error(err, p, "expected '=' after parameter name");
        goto out;
    }
    p->pos++;
    skip_ws(p);
    if (peek(p) == '"') {
        ret = parse_quoted(&value, p, err);
        if (ret < 0)
            goto out;
    } else {
        start = p->pos;
        while (p->pos < p->len && is_value_char((unsigned char)p->s[p->pos]))
            p->pos++;
        if (p->pos == start) {
            ret = syntax_error(err, p, "expected a parameter value");
            goto out;
        }
        value = dup_bytes(p->s + start, p->pos - start);
        if (value == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
    }
    ret = add_param(c, cap, name, value, err);
    name = NULL;
    value = NULL;
out:
    free(name);
    free(value);
    return ret;
}

/* If a token68 starts at the cursor and runs to the end of the list element, consume it
 * into *out. Otherwise leave the cursor alone and set *out to NULL. */
static int
try_token68(char **out, parser *p, cs_error **err)
{
    size_t start = p->pos;
    size_t end;

    *out = NULL;
    while (p->pos < p->len && is_token68_char((unsigned char)p->s[p->pos]))
        p->pos++;
    if (p->pos > start) {
        while (p->pos < p->len && p->s[p->pos] == '=')
            p->pos++;
        end = p->pos;
        skip_ws(p);
        if (at_end(p) || peek(p) == ',') {
            *out = dup_bytes(p->s + start, end - start);
            return *out == NULL ? csi_error_oom(err) : 0;
        }
    }
    p->pos = start;
    return 0;
}

/* Append an empty challenge with scheme S (N bytes, lowercased) to *LIST. */
static int
append_challenge(csi_challenge **list, size_t *n, size_t *cap, const char *s, size_t len,
                 cs_error **err)
{
    csi_challenge *c;

    if (*n == CSI_WWW_AUTH_MAX_CHALLENGES)
        return csi_error_set(err, CS_ELIMIT, "WWW-Authenticate value has more than %d challenges",
                             CSI_WWW_AUTH_MAX_CHALLENGES);
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 2;
        csi_challenge *nl;

        if (ncap > CSI_WWW_AUTH_MAX_CHALLENGES)
            ncap = CSI_WWW_AUTH_MAX_CHALLENGES;
        nl = realloc(*list, ncap * sizeof(*nl));
        if (nl == NULL)
            return csi_error_oom(err);
        *list = nl;
        *cap = ncap;
    }
    c = &(*list)[*n];
    memset(c, 0, sizeof(*c));
    (*n)++;
    c->scheme = dup_lower(s, len);
    if (c->scheme == NULL)
        return csi_error_oom(err);
    return 0;
}

void
csi_challenges_free(csi_challenge *c, size_t n)
{
    size_t i, j;

    if (c == NULL)
        return;
    for (i = 0; i < n; i++) {
        for (j = 0; j < c[i].nparams; j++) {
            free(c[i].params[j].name);
            free(c[i].params[j].value);
        }
        free(c[i].params);
        free(c[i].scheme);
    }
    free(c);
}

int
csi_www_auth_parse(csi_challenge **out, size_t *n_out, const char *value, size_t len,
                   cs_error **err)
{
    csi_challenge *list = NULL;
    csi_challenge *cur = NULL;
    size_t n = 0, cap = 0;
    size_t pcap = 0, seen = 0;
    bool closed = false; /* the current challenge took a token68: no parameters may follow */
    parser p = {value, len, 0};
    int ret;

    if (value == NULL && len > 0) {
        ret = csi_error_set(err, CS_EINVAL, "WWW-Authenticate value is NULL");
        goto out;
    }
    if (len > CSI_WWW_AUTH_MAX_LEN) {
        ret = csi_error_set(err, CS_ELIMIT,
                            "WWW-Authenticate value is %zu bytes, over the %d-byte limit", len,
                            CSI_WWW_AUTH_MAX_LEN);
        goto out;
    }
    for (;;) {
        size_t start, tlen;
        char *tok68 = NULL;

        skip_ws(&p);
        if (at_end(&p))
            break;
        if (peek(&p) == ',') {
            /* Empty list elements are legal and ignored (RFC 7230 section 7). */
            p.pos++;
            continue;
        }
        start = p.pos;
        tlen = scan_token(&p);
        if (tlen == 0) {
            ret = syntax_error(err, &p, "expected an authentication scheme");
            goto out;
        }
        skip_ws(&p);
        if (peek(&p) == '=') {
            /* Another parameter of the current challenge. */
            p.pos = start;
            if (cur == NULL) {
                ret = syntax_error(err, &p, "parameter before any scheme");
                goto out;
            }
            if (closed) {
                ret = syntax_error(err, &p, "parameter after a token68");
                goto out;
            }
            ret = parse_param(cur, &pcap, &seen, &p, err);
            if (ret < 0)
                goto out;
        } else {
            /* A new challenge; the scheme must be followed by whitespace, ',' or the end. */
            if (start + tlen < len && !is_ws((unsigned char)value[start + tlen]) &&
                value[start + tlen] != ',') {
                p.pos = start + tlen;
                ret = syntax_error(err, &p, "unexpected character after scheme");
                goto out;
            }
            ret = append_challenge(&list, &n, &cap, value + start, tlen, err);
            if (ret < 0)
                goto out;
            /* The array may have moved: CUR is only ever the last element. */
            cur = &list[n - 1];
            pcap = 0;
            seen = 0;
            closed = false;
            if (!at_end(&p) && peek(&p) != ',') {
                ret = try_token68(&tok68, &p, err);
                if (ret < 0)
                    goto out;
                if (tok68 != NULL) {
                    char *empty = strdup("");

                    if (empty == NULL) {
                        free(tok68);
                        ret = csi_error_oom(err);
                        goto out;
                    }
                    seen++;
                    ret = add_param(cur, &pcap, empty, tok68, err);
                    if (ret < 0)
                        goto out;
                    closed = true;
                } else {
                    ret = parse_param(cur, &pcap, &seen, &p, err);
                    if (ret < 0)
                        goto out;
                }
            }
        }
        skip_ws(&p);
        if (!at_end(&p) && peek(&p) != ',') {
            ret = syntax_error(err, &p, "expected ','");
            goto out;
        }
    }
    if (n == 0) {
        ret = csi_error_set(err, CS_EPROTO, "malformed WWW-Authenticate: no challenge");
        goto out;
    }
    *out = list;
    *n_out = n;
    list = NULL;
    n = 0;
    ret = 0;
out:
    csi_challenges_free(list, n);
    return ret;
}

const char *
csi_challenge_param(const csi_challenge *c, const char *name)
{
    size_t i;

    if (c == NULL || name == NULL)
        return NULL;
    for (i = 0; i < c->nparams; i++) {
        if (ascii_casecmp_eq(c->params[i].name, name))
            return c->params[i].value;
    }
    return NULL;
}

const csi_challenge *
csi_challenge_find(const csi_challenge *c, size_t n, const char *scheme)
{
    size_t i;

    if (c == NULL || scheme == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        if (ascii_casecmp_eq(c[i].scheme, scheme))
            return &c[i];
    }
    return NULL;
}

/* ---- token endpoint answer ------------------------------------------------------------- */

static void
free_secret(char *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

/* A token goes verbatim into an Authorization header: anything but visible ASCII (CR, LF
 * above all) would corrupt or inject header lines. */
static bool
is_header_safe(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c < 0x21 || c > 0x7e)
            return false;
    }
    return true;
}

/* Member NAME of ROOT as a string: *out = NULL when absent, null or "". */
static int
get_opt_string(const char **out, json_t *root, const char *name, cs_error **err)
{
    json_t *v = json_object_get(root, name);

    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return csi_error_set(err, CS_EPROTO, "token response: \"%s\" is not a string", name);
    if (json_string_length(v) == 0)
        return 0;
    if (!is_header_safe(json_string_value(v)))
        return csi_error_set(err, CS_EPROTO,
                             "token response: \"%s\" contains characters not allowed in a "
                             "token",
                             name);
    *out = json_string_value(v);
    return 0;
}

int
csi_token_parse(csi_token *out, const char *body, size_t len, cs_error **err)
{
    csi_token t = CSI_TOKEN_INIT;
    json_t *root = NULL;
    json_t *exp;
    json_error_t jerr;
    const char *token, *access, *refresh;
    int ret;

    memset(out, 0, sizeof(*out));
    if (body == NULL && len > 0) {
        ret = csi_error_set(err, CS_EINVAL, "token response body is NULL");
        goto out;
    }
    if (len > CSI_TOKEN_MAX_BODY) {
        ret = csi_error_set(err, CS_ELIMIT, "token response is %zu bytes, over the %d-byte limit",
                            len, CSI_TOKEN_MAX_BODY);
        goto out;
    }
    /* Integers as reals: an absurd expires_in such as 1e30 or 99999999999999999999 is then
     * clamped like any other value instead of failing the whole exchange. */
    root = json_loadb(body ? body : "", len, JSON_DECODE_INT_AS_REAL, &jerr);
    if (root == NULL) {
        ret =
            csi_error_set(err, CS_EPROTO, "token response: invalid JSON (%s) at line %d, column %d",
                          csi_json_reason(&jerr), jerr.line, jerr.column);
        goto out;
    }
    if (!json_is_object(root)) {
        ret = csi_error_set(err, CS_EPROTO, "token response is not a JSON object");
        goto out;
    }
    ret = get_opt_string(&token, root, "token", err);
    if (ret < 0)
        goto out;
    ret = get_opt_string(&access, root, "access_token", err);
    if (ret < 0)
        goto out;
    ret = get_opt_string(&refresh, root, "refresh_token", err);
    if (ret < 0)
        goto out;
    /* token.md leaves the choice undefined when both differ. distribution's client (hence
     * dockerd), ggcr and regclient all take access_token, so registries are tested against
     * that; containers/image alone prefers token. */
    if (access == NULL)
        access = token;
    if (access == NULL) {
        ret = csi_error_set(err, CS_EPROTO,
                            "token response has neither \"token\" nor \"access_token\"");
        goto out;
    }
    t.expires_in = CSI_TOKEN_MIN_EXPIRES;
    exp = json_object_get(root, "expires_in");
    if (exp != NULL && !json_is_null(exp)) {
        double secs;

        if (!json_is_number(exp)) {
            ret = csi_error_set(err, CS_EPROTO, "token response: \"expires_in\" is not a number");
            goto out;
        }
        secs = json_number_value(exp);
        /* token.md: "a token should never be returned with less than 60 seconds to live";
         * every client clamps up to 60. The upper clamp keeps now + expires_in far from
         * time_t overflow and only means refreshing earlier than needed. */
        if (secs < CSI_TOKEN_MIN_EXPIRES)
            t.expires_in = CSI_TOKEN_MIN_EXPIRES;
        else if (secs > CSI_TOKEN_MAX_EXPIRES)
            t.expires_in = CSI_TOKEN_MAX_EXPIRES;
        else
            t.expires_in = (long)secs;
    }
    t.token = strdup(access);
    if (t.token == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    if (refresh != NULL) {
        t.refresh_token = strdup(refresh);
        if (t.refresh_token == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
    }
    *out = t;
    memset(&t, 0, sizeof(t));
    ret = 0;
out:
    csi_token_dispose(&t);
    json_decref(root);
    return ret;
}

void
csi_token_dispose(csi_token *t)
{
    if (t == NULL)
        return;
    free_secret(t->token);
    free_secret(t->refresh_token);
    memset(t, 0, sizeof(*t));
}
