/* Decoding of BuildKit cache metadata into the graph of cachegraph.c: the inline cache
 * (base64 of a JSON array of records) and the cacheconfig.v0 blob, read with the leniencies
 * of Go's encoding/json that real exports rely on. The checks that need the whole graph are
 * in cachegraph.c. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cachesync/cachegraph.h>
#include "cachegraph_int.h"
#include "error_int.h"
#include "json.h"

/* Base64 input: the decoded cap plus a third, plus line breaks Go's decoder would skip. */
#define MAX_BASE64 (CS_CACHEGRAPH_MAX_BYTES / 3 * 4 + CS_CACHEGRAPH_MAX_BYTES / 8)

/* ---- Go's encoding/json leniencies ------------------------------------------------------ */

static char
ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Does KEY match the field NAME as Go's encoding/json matches them? It folds case with
 * Unicode simple folding (fold.go: foldName), under which exactly two non-ASCII runes fold
 * to ASCII letters: U+017F LATIN SMALL LETTER LONG S to 's' and U+212A KELVIN SIGN to 'k'. */
static bool
key_matches(const char *key, const char *name)
{
    const unsigned char *k = (const unsigned char *)key;

    for (; *name != '\0'; name++) {
        char c = ascii_lower(*name);

        if (k[0] < 0x80) {
            if (ascii_lower((char)k[0]) != c)
                return false;
            k++;
        } else if (c == 's' && k[0] == 0xc5 && k[1] == 0xbf) {
            k += 2;
        } else if (c == 'k' && k[0] == 0xe2 && k[1] == 0x84 && k[2] == 0xaa) {
            k += 3;
        } else {
            return false;
        }
    }
    return *k == '\0';
}

/* The value Go would decode into field NAME: members are applied in document order, so the
 * last matching one wins, and a null leaves the field as it was. NULL when none. (jansson
 * keeps one member per exact key, at its first position: a document that repeats a key
 * exactly and also spells it another way may pick differently from Go.) */
static const json_t *
member(const json_t *obj, const char *name)
{
    const json_t *found = NULL;
    const char *key;
    json_t *value;

    json_object_foreach((json_t *)obj, key, value)
    {
        if (!json_is_null(value) && key_matches(key, name))
            found = value;
    }
    return found;
}

static int
days_in(int month, int year)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);

    return month == 2 && leap ? 29 : days[month - 1];
}

/* N digits at S as a number within [LO, HI]; -1 otherwise. */
static int
digits(const char *s, int n, int lo, int hi)
{
    int v = 0, i;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= lo && v <= hi ? v : -1;
}

/* time.Time's UnmarshalJSON accepts only RFC 3339 (Go time/format_rfc3339.go
 * parseStrictRFC3339): "2006-01-02T15:04:05[.frac](Z|+07:00)" with fields in range; any
 * other string fails the whole import. */
static bool
valid_time(const char *s, size_t len)
{
    int year, month;
    size_t i = 19;

    if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
        return false;
    year = digits(s, 4, 0, 9999);
    month = digits(s + 5, 2, 1, 12);
    if (year < 0 || month < 0 || digits(s + 8, 2, 1, days_in(month, year)) < 0 ||
        digits(s + 11, 2, 0, 23) < 0 || digits(s + 14, 2, 0, 59) < 0 ||
        digits(s + 17, 2, 0, 59) < 0)
        return false;
    if (s[i] == '.' && i + 1 < len && s[i + 1] >= '0' && s[i + 1] <= '9') {
        i++;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (len - i == 1)
        return s[i] == 'Z';
    return len - i == 6 && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':' &&
           digits(s + i + 1, 2, 0, 23) >= 0 && digits(s + i + 4, 2, 0, 59) >= 0;
}

/* ---- parsing ------------------------------------------------------------------------------ */

static int
oom(csi_cachegraph_ctx *pc)
{
    return csi_error_oom(pc->err);
}

/* Copy the string member NAME of OBJ into *OUT (left NULL when absent). WHERE names the
 * object in errors. */
static int
get_string(csi_cachegraph_ctx *pc, const char **out, const json_t *obj, const char *name,
           const char *where)
{
    const json_t *v = member(obj, name);
    size_t len;

    *out = NULL;
    if (v == NULL)
        return 0;
    if (!json_is_string(v))
        return csi_error_set(pc->err, CS_EPROTO, "%s: \"%s\" is not a string", where, name);
    len = json_string_length(v);
    if (len > CS_CACHEGRAPH_MAX_STRING)
        return csi_error_set(pc->err, CS_ELIMIT, "%s: \"%s\" is %zu bytes, over the limit of %u",
                             where, name, len, CS_CACHEGRAPH_MAX_STRING);
    *out = csi_cachegraph_strndup(pc->g, json_string_value(v), len, &pc->oom);
    return *out == NULL ? oom(pc) : 0;
}

static int
get_time(csi_cachegraph_ctx *pc, const char **out, const json_t *obj, const char *name,
         const char *where)
{
    int ret = get_string(pc, out, obj, name, where);

    if (ret == 0 && *out != NULL && !valid_time(*out, strlen(*out)))
        return csi_error_set(pc->err, CS_EPROTO, "%s: \"%s\" is not an RFC 3339 time", where, name);
    return ret;
}

/* Integer member; DEF when absent or null (Go leaves the zero value). */
static int
get_int(csi_cachegraph_ctx *pc, int64_t *out, const json_t *obj, const char *name, int64_t def,
        const char *where)
{
    const json_t *v = member(obj, name);

    *out = def;
    if (v == NULL)
        return 0;
    /* Go decodes a JSON number into an int with strconv.ParseInt: 3.0 and 1e2 fail. */
    if (!json_is_integer(v))
        return csi_error_set(pc->err, CS_EPROTO, "%s: \"%s\" is not an integer", where, name);
    *out = (int64_t)json_integer_value(v);
    return 0;
}

/* Array member (NULL when absent or null) of at most MAX elements. */
static int
get_array(csi_cachegraph_ctx *pc, const json_t **out, const json_t *obj, const char *name,
          size_t max, const char *where)
{
    const json_t *v = member(obj, name);

    *out = NULL;
    if (v == NULL)
        return 0;
    if (!json_is_array(v))
        return csi_error_set(pc->err, CS_EPROTO, "%s: \"%s\" is not an array", where, name);
    if (json_array_size(v) > max)
        return csi_error_set(pc->err, CS_ELIMIT, "%s: %zu entries in \"%s\", over the limit of %zu",
                             where, json_array_size(v), name, max);
    *out = v;
    return 0;
}

/* A null element decodes as Go's zero value, so it stands for an empty object. WHAT, when
 * not NULL, names the element inside WHERE. */
static int
check_object(csi_cachegraph_ctx *pc, const json_t *v, const char *where, const char *what)
{
    if (v == NULL || json_is_null(v) || json_is_object(v))
        return 0;
    if (what == NULL)
        return csi_error_set(pc->err, CS_EPROTO, "%s is not a JSON object", where);
    return csi_error_set(pc->err, CS_EPROTO, "%s: %s is not a JSON object", where, what);
}

static int
parse_results(csi_cachegraph_ctx *pc, cs_cache_record *r, size_t idx, const json_t *rj,
              const char *where)
{
    cs_cache_result *results;
    const json_t *layers, *chains;
    size_t i, j, n, nres = 0;
    int ret;

    /* CacheRecord: Results `json:"layers"`, ChainedResults `json:"chains"` */
    ret = get_array(pc, &layers, rj, "layers", CS_CACHEGRAPH_MAX_RESULTS, where);
    if (ret == 0)
        ret = get_array(pc, &chains, rj, "chains", CS_CACHEGRAPH_MAX_RESULTS, where);
    if (ret < 0)
        return ret;
    n = json_array_size(layers) + json_array_size(chains);
    if (n > CS_CACHEGRAPH_MAX_RESULTS)
        return csi_error_set(pc->err, CS_ELIMIT, "%s: %zu results, over the limit of %u", where, n,
                             CS_CACHEGRAPH_MAX_RESULTS);
    results = csi_cachegraph_calloc(pc->g, n, sizeof(*results), &pc->oom);
    if (pc->oom)
        return oom(pc);
    for (i = 0; i < json_array_size(layers); i++) {
        const json_t *res = json_array_get(layers, i);
        char what[40];
        cs_cache_result *out = &results[nres];
        int64_t layer = 0;

        snprintf(what, sizeof(what), "result %zu", i);
        ret = check_object(pc, res, where, what);
        if (ret == 0)
            ret = get_int(pc, &layer, res, "layer", 0, where);
        if (ret == 0)
            ret = get_time(pc, &out->created_at, res, "createdAt", where);
        if (ret == 0)
            ret = csi_cachegraph_check_layer(pc, idx, layer, "");
        if (ret < 0)
            return ret;
        out->layer = (size_t)layer;
        nres++;
    }
    for (i = 0; i < json_array_size(chains); i++) {
        const json_t *res = json_array_get(chains, i), *list;
        cs_cache_result *out = &results[nres];
        size_t *chain;
        char what[48];

        snprintf(what, sizeof(what), "chain %zu", i);
        ret = check_object(pc, res, where, what);
        if (ret == 0)
            ret = get_array(pc, &list, res, "layers", CS_CACHEGRAPH_MAX_CHAIN, where);
        if (ret == 0)
            ret = get_time(pc, &out->created_at, res, "createdAt", where);
        if (ret < 0)
            return ret;
        /* parseRecord adds an empty chain as a result without layers: it restores
         * nothing and ends nowhere, so the model leaves it out. */
        if (json_array_size(list) == 0)
            continue;
        chain = csi_cachegraph_calloc(pc->g, json_array_size(list), sizeof(*chain), &pc->oom);
        if (pc->oom)
            return oom(pc);
        snprintf(what, sizeof(what), "chain %zu has ", i);
        for (j = 0; j < json_array_size(list); j++) {
            const json_t *v = json_array_get(list, j);
            int64_t layer = 0;

            /* []int: a null element stays 0 */
            if (!json_is_null(v) && !json_is_integer(v))
                return csi_error_set(pc->err, CS_EPROTO, "%s: chain %zu holds a non-integer", where,
                                     i);
            if (json_is_integer(v))
                layer = (int64_t)json_integer_value(v);
            /* ParseConfig takes "chains" indexes as they are, without parents. */
            if (layer < 0 || (uint64_t)layer >= pc->g->nlayers)
                return csi_error_set(pc->err, CS_EPROTO,
                                     "record %zu: %slayer index %lld but %s has %zu layers "
                                     "(BuildKit: invalid layer index %lld)",
                                     idx, what, (long long)layer, pc->holder, pc->g->nlayers,
                                     (long long)layer);
            chain[j] = (size_t)layer;
        }
        out->chain = chain;
        out->nchain = json_array_size(list);
        out->layer = chain[out->nchain - 1];
        nres++;
    }
    r->results = results;
    r->nresults = nres;
    return 0;
}

static int
parse_inputs(csi_cachegraph_ctx *pc, cs_cache_record *r, size_t idx, const json_t *rj,
             const char *where)
{
    cs_cache_input *inputs;
    const json_t *arr;
    size_t i, j;
    int ret;

    ret = get_array(pc, &arr, rj, "inputs", CS_CACHEGRAPH_MAX_INPUTS, where);
    if (ret < 0 || arr == NULL)
        return ret;
    inputs = csi_cachegraph_calloc(pc->g, json_array_size(arr), sizeof(*inputs), &pc->oom);
    if (pc->oom)
        return oom(pc);
    for (i = 0; i < json_array_size(arr); i++) {
        const json_t *group = json_array_get(arr, i);
        cs_cache_link *links;
        size_t n;

        if (!json_is_null(group) && !json_is_array(group))
            return csi_error_set(pc->err, CS_EPROTO, "%s: input %zu is not an array", where, i);
        n = json_array_size(group);
        if (n > CS_CACHEGRAPH_MAX_LINKS)
            return csi_error_set(pc->err, CS_ELIMIT,
                                 "%s: input %zu has %zu links, over the limit of %u", where, i, n,
                                 CS_CACHEGRAPH_MAX_LINKS);
        /* parseRecord: an op input that no record feeds cannot be matched */
        if (n == 0)
            return csi_error_set(pc->err, CS_EPROTO,
                                 "record %zu: input %zu has no links "
                                 "(BuildKit: invalid empty input for record %zu)",
                                 idx, i, idx);
        links = csi_cachegraph_calloc(pc->g, n, sizeof(*links), &pc->oom);
        if (pc->oom)
            return oom(pc);
        for (j = 0; j < n; j++) {
            const json_t *lj = json_array_get(group, j);
            char what[48];
            int64_t link = 0;

            snprintf(what, sizeof(what), "input %zu link %zu", i, j);
            ret = check_object(pc, lj, where, what);
            if (ret == 0)
                ret = get_int(pc, &link, lj, "link", 0, where);
            if (ret == 0)
                ret = get_string(pc, &links[j].selector, lj, "selector", where);
            if (ret < 0)
                return ret;
            if (link < 0 || (uint64_t)link >= pc->g->nrecords)
                return csi_error_set(pc->err, CS_EPROTO,
                                     "record %zu: input %zu links to record %lld but there are "
                                     "%zu records (BuildKit: invalid record ID: %lld)",
                                     idx, i, (long long)link, pc->g->nrecords, (long long)link);
            links[j].record = (size_t)link;
        }
        inputs[i].links = links;
        inputs[i].nlinks = n;
    }
    r->inputs = inputs;
    r->ninputs = json_array_size(arr);
    return 0;
}

static int
parse_record(csi_cachegraph_ctx *pc, size_t idx, const json_t *rj)
{
    cs_cache_record *r = &pc->g->records[idx];
    char where[40];
    int ret;

    snprintf(where, sizeof(where), "record %zu", idx);
    ret = check_object(pc, rj, where, NULL);
    if (ret == 0)
        ret = get_string(pc, &r->digest, rj, "digest", where);
    if (ret == 0 && r->digest == NULL)
        r->digest = "";
    if (ret == 0)
        ret = parse_inputs(pc, r, idx, rj, where);
    if (ret == 0)
        ret = parse_results(pc, r, idx, rj, where);
    return ret;
}

/* Records, once the layers are known. */
static int
parse_records(csi_cachegraph_ctx *pc, const json_t *arr)
{
    size_t i;
    int ret;

    ret = csi_cachegraph_chains(pc);
    for (i = 0; ret == 0 && i < pc->g->nrecords; i++)
        ret = parse_record(pc, i, json_array_get(arr, i));
    if (ret == 0)
        ret = csi_cachegraph_finish(pc);
    return ret;
}

static int
load_json(json_t **out, const char *data, size_t len, const char *what, cs_error **err)
{
    json_error_t jerr;

    if (len > CS_CACHEGRAPH_MAX_BYTES)
        return csi_error_set(err, CS_ELIMIT, "%s is %zu bytes, over the %u-byte limit", what, len,
                             CS_CACHEGRAPH_MAX_BYTES);
    if (len == 0)
        return csi_error_set(err, CS_EPROTO, "%s is empty", what);
    /* JSON_DECODE_ANY: a top-level null is valid (no records). No JSON_ALLOW_NUL: a NUL in
     * a digest would cut it short in C. */
    *out = json_loadb(data, len, JSON_DECODE_ANY, &jerr);
    if (*out == NULL)
        return csi_error_set(err, CS_EPROTO, "%s is not valid JSON: %s at byte %d", what,
                             csi_json_reason(&jerr), jerr.position);
    return 0;
}

/* ---- base64 ------------------------------------------------------------------------------ */

static int
b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Go's base64.StdEncoding.Decode, which encoding/json applies to a []byte field: the
 * standard alphabet, '=' padding required, '\r' and '\n' skipped anywhere, the unused bits
 * of the last quantum not checked. */
static int
base64_decode(char **out, size_t *out_len, const char *in, size_t len, cs_error **err)
{
    unsigned char *buf;
    uint32_t v = 0;
    size_t i, n = 0;
    int q = 0, pads = 0;
    int ret = 0;

    if (len > MAX_BASE64)
        return csi_error_set(err, CS_ELIMIT, "inline cache is %zu bytes, over the limit of %u", len,
                             (unsigned)MAX_BASE64);
    buf = malloc(len / 4 * 3 + 3);
    if (buf == NULL)
        return csi_error_oom(err);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        int d;

        if (c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            /* padding completes a quantum of two or three characters */
            if (pads == 0 && q < 2)
                break;
            if (pads == 0 && q == 2) {
                pads = 1;
                continue;
            }
            if (pads == 1 && q == 2) {
                buf[n++] = (unsigned char)(v >> 4);
                q = 0;
                pads = 2;
                continue;
            }
            if (pads == 0 && q == 3) {
                buf[n++] = (unsigned char)(v >> 10);
                buf[n++] = (unsigned char)(v >> 2);
                q = 0;
                pads = 2;
                continue;
            }
            break;
        }
        d = b64_value(c);
        if (d < 0 || pads > 0)
            break;
        v = (v << 6) | (uint32_t)d;
        if (++q == 4) {
            buf[n++] = (unsigned char)(v >> 16);
            buf[n++] = (unsigned char)(v >> 8);
            buf[n++] = (unsigned char)v;
            v = 0;
            q = 0;
        }
    }
    if (i < len)
        ret = csi_error_set(err, CS_EPROTO, "inline cache is not valid base64: %s at byte %zu",
                            in[i] == '=' ? "misplaced padding"
                            : pads > 0   ? "data after padding"
                                         : "bad character",
                            i);
    else if (q != 0 || pads == 1)
        ret = csi_error_set(err, CS_EPROTO, "inline cache is not valid base64: truncated");
    if (ret < 0) {
        free(buf);
        return ret;
    }
    *out = (char *)buf;
    *out_len = n;
    return 0;
}

/* ---- public --------------------------------------------------------------------------------- */

int
cs_cachegraph_parse_inline(cs_cachegraph **out, const char *data, size_t len, size_t nlayers,
                           cs_error **err)
{
    csi_cachegraph_ctx pc = {NULL, "the image", false, err};
    cs_cachegraph *g = NULL;
    char *decoded = NULL;
    const char *text = data;
    json_t *root = NULL;
    size_t i, text_len = len, nrecords;
    int ret;

    *out = NULL;
    if (nlayers > CS_CACHEGRAPH_MAX_LAYERS)
        return csi_error_set(err, CS_ELIMIT, "%zu layers, over the limit of %u", nlayers,
                             CS_CACHEGRAPH_MAX_LAYERS);
    /* The value exactly as it stands between the config's quotes is the same text: Go's
     * encoder writes base64 with no escapes. */
    if (len >= 2 && data[0] == '"' && data[len - 1] == '"') {
        text++;
        text_len -= 2;
    }
    for (i = 0; i < text_len; i++) {
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r' && text[i] != '\n')
            break;
    }
    if (i == text_len || text[i] != '[') {
        ret = base64_decode(&decoded, &text_len, text, text_len, err);
        if (ret < 0)
            return ret;
        text = decoded;
    }
    ret = load_json(&root, text, text_len, "inline cache", err);
    if (ret < 0)
        goto out;
    /* importInlineCache: json.Unmarshal(img.Cache, &config.Records), a []CacheRecord, which
     * a JSON null leaves empty */
    if (!json_is_array(root) && !json_is_null(root)) {
        ret = csi_error_set(err, CS_EPROTO, "inline cache is not a JSON array of records");
        goto out;
    }
    nrecords = json_array_size(root);
    if (nrecords > CS_CACHEGRAPH_MAX_RECORDS) {
        ret = csi_error_set(err, CS_ELIMIT, "inline cache has %zu records, over the limit of %u",
                            nrecords, CS_CACHEGRAPH_MAX_RECORDS);
        goto out;
    }
    /* importInlineCache synthesises layers[i] = {manifest.layers[i], parent i-1} */
    ret = csi_cachegraph_new(&pc, &g, CS_CACHEGRAPH_INLINE, nrecords, nlayers);
    if (ret == 0)
        ret = parse_records(&pc, root);
    if (ret < 0)
        goto out;
    *out = g;
    g = NULL;
out:
    cs_cachegraph_free(g);
    json_decref(root);
    free(decoded);
    return ret;
}

static int
parse_layer(csi_cachegraph_ctx *pc, size_t i, const json_t *lj)
{
    cs_cache_layer *l = &pc->g->layers[i];
    const json_t *ann;
    char where[40];
    int64_t parent = 0, size = -1;
    int ret;

    snprintf(where, sizeof(where), "layer %zu", i);
    ret = check_object(pc, lj, where, NULL);
    if (ret == 0)
        ret = get_string(pc, &l->blob, lj, "blob", where);
    /* ParentIndex has omitempty: parent 0 is not written, so absent means 0 */
    if (ret == 0)
        ret = get_int(pc, &parent, lj, "parent", 0, where);
    if (ret < 0)
        return ret;
    l->parent = parent;
    ann = member(lj, "annotations");
    if (ann == NULL)
        return 0;
    ret = check_object(pc, ann, where, "annotations");
    if (ret == 0)
        ret = get_string(pc, &l->media_type, ann, "mediaType", where);
    if (ret == 0)
        ret = get_string(pc, &l->diff_id, ann, "diffID", where);
    if (ret == 0)
        ret = get_int(pc, &size, ann, "size", -1, where);
    if (ret == 0)
        ret = get_time(pc, &l->created_at, ann, "createdAt", where);
    if (ret == 0)
        l->size = size;
    return ret;
}

int
cs_cachegraph_parse_cacheconfig(cs_cachegraph **out, const char *json, size_t len, cs_error **err)
{
    csi_cachegraph_ctx pc = {NULL, "the cache config", false, err};
    const json_t *layers = NULL, *records = NULL;
    cs_cachegraph *g = NULL;
    json_t *root = NULL;
    size_t i;
    int ret;

    *out = NULL;
    ret = load_json(&root, json, len, "cache config", err);
    if (ret < 0)
        return ret;
    /* Parse: json.Unmarshal into a CacheConfig struct; null leaves it empty */
    if (!json_is_object(root) && !json_is_null(root)) {
        ret = csi_error_set(err, CS_EPROTO, "cache config is not a JSON object");
        goto out;
    }
    if (json_is_object(root)) {
        ret = get_array(&pc, &layers, root, "layers", CS_CACHEGRAPH_MAX_LAYERS, "cache config");
        if (ret == 0)
            ret = get_array(&pc, &records, root, "records", CS_CACHEGRAPH_MAX_RECORDS,
                            "cache config");
        if (ret < 0)
            goto out;
    }
    ret = csi_cachegraph_new(&pc, &g, CS_CACHEGRAPH_CACHECONFIG, json_array_size(records),
                             json_array_size(layers));
    for (i = 0; ret == 0 && i < g->nlayers; i++)
        ret = parse_layer(&pc, i, json_array_get(layers, i));
    if (ret == 0)
        ret = parse_records(&pc, records);
    if (ret < 0)
        goto out;
    *out = g;
    g = NULL;
out:
    cs_cachegraph_free(g);
    json_decref(root);
    return ret;
}
