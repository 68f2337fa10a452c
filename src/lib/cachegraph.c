/* BuildKit cache metadata (inline cache and cacheconfig.v0) decoded into one graph.
 *
 * The schema is moby/buildkit cache/remotecache/v1/types/spec.go; the rules are those of
 * its importer, cache/remotecache/v1/parse.go (parseRecord, getRemoteChain): any violation
 * there aborts the whole import, so here it is an error that names the record. The Go
 * decoder's leniencies that real exports rely on are kept: keys match case-insensitively,
 * null means "absent", "parent" defaults to 0. */
#include "config.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cachesync/cachegraph.h>
#include "error_int.h"
#include "json.h"

/* Base64 input: the decoded cap plus a third, plus line breaks Go's decoder would skip. */
#define MAX_BASE64 (CS_CACHEGRAPH_MAX_BYTES / 3 * 4 + CS_CACHEGRAPH_MAX_BYTES / 8)
#define ARENA_CHUNK (64u * 1024)

/* ---- arena: every string and array of a graph, freed at once ----------------------- */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used;
    size_t size;
    max_align_t data[];
} arena_chunk;

struct cs_cachegraph {
    cs_cachegraph_kind kind;
    cs_cache_record *records;
    size_t nrecords;
    cs_cache_layer *layers;
    size_t nlayers;
    size_t *chain_len; /* per layer: length of its parent chain, 0 when broken */
    size_t base_layers;
    arena_chunk *arena;
};

/* Zeroed memory owned by G; NULL for N == 0 or out of memory (*oom set). */
static void *
arena_alloc(cs_cachegraph *g, size_t n, bool *oom)
{
    const size_t align = alignof(max_align_t);
    arena_chunk *c = g->arena;
    void *p;

    if (n == 0)
        return NULL;
    if (n > SIZE_MAX - align) {
        *oom = true;
        return NULL;
    }
    n = (n + align - 1) / align * align;
    if (c == NULL || c->size - c->used < n) {
        size_t size = n > ARENA_CHUNK ? n : ARENA_CHUNK;

        c = malloc(sizeof(*c) + size);
        if (c == NULL) {
            *oom = true;
            return NULL;
        }
        c->size = size;
        c->used = 0;
        /* A chunk made for one big array goes behind the current one, which keeps its
         * free space for the small allocations that follow. */
        if (g->arena != NULL && n > ARENA_CHUNK) {
            c->next = g->arena->next;
            g->arena->next = c;
        } else {
            c->next = g->arena;
            g->arena = c;
        }
    }
    p = (char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

static void *
arena_array(cs_cachegraph *g, size_t count, size_t size, bool *oom)
{
    if (size != 0 && count > SIZE_MAX / size) {
        *oom = true;
        return NULL;
    }
    return arena_alloc(g, count * size, oom);
}

static char *
arena_strndup(cs_cachegraph *g, const char *s, size_t n, bool *oom)
{
    char *p = arena_alloc(g, n + 1, oom);

    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

void
cs_cachegraph_free(cs_cachegraph *g)
{
    arena_chunk *c, *next;

    if (g == NULL)
        return;
    for (c = g->arena; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    free(g);
}

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

typedef struct parse_ctx {
    cs_cachegraph *g;
    const char *holder; /* whose layers results index: "the image", "the cache config" */
    bool oom;
    cs_error **err;
} parse_ctx;

static int
oom(parse_ctx *pc)
{
    return csi_error_oom(pc->err);
}

/* Copy the string member NAME of OBJ into *OUT (left NULL when absent). WHERE names the
 * object in errors. */
static int
get_string(parse_ctx *pc, const char **out, const json_t *obj, const char *name, const char *where)
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
    *out = arena_strndup(pc->g, json_string_value(v), len, &pc->oom);
    return *out == NULL ? oom(pc) : 0;
}

static int
get_time(parse_ctx *pc, const char **out, const json_t *obj, const char *name, const char *where)
{
    int ret = get_string(pc, out, obj, name, where);

    if (ret == 0 && *out != NULL && !valid_time(*out, strlen(*out)))
        return csi_error_set(pc->err, CS_EPROTO, "%s: \"%s\" is not an RFC 3339 time", where, name);
    return ret;
}

/* Integer member; DEF when absent or null (Go leaves the zero value). */
static int
get_int(parse_ctx *pc, int64_t *out, const json_t *obj, const char *name, int64_t def,
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
get_array(parse_ctx *pc, const json_t **out, const json_t *obj, const char *name, size_t max,
          const char *where)
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
check_object(parse_ctx *pc, const json_t *v, const char *where, const char *what)
{
    if (v == NULL || json_is_null(v) || json_is_object(v))
        return 0;
    if (what == NULL)
        return csi_error_set(pc->err, CS_EPROTO, "%s is not a JSON object", where);
    return csi_error_set(pc->err, CS_EPROTO, "%s: %s is not a JSON object", where, what);
}

/* Why the parents of layer START do not form a chain, for record REC that uses it
 * (getRemoteChain: "invalid looping layer", "invalid layer index N"). */
static int
broken_chain(parse_ctx *pc, size_t rec, size_t start)
{
    const cs_cachegraph *g = pc->g;
    bool *seen = calloc(g->nlayers, sizeof(*seen));
    size_t l = start;
    int64_t p;
    int ret;

    if (seen == NULL)
        return oom(pc);
    for (;;) {
        seen[l] = true;
        p = g->layers[l].parent;
        if (p < 0 || (uint64_t)p >= g->nlayers) {
            ret = csi_error_set(pc->err, CS_EPROTO,
                                "record %zu: layer %zu has parent %lld but %s has %zu layers "
                                "(BuildKit: invalid layer index %lld)",
                                rec, l, (long long)p, pc->holder, g->nlayers, (long long)p);
            break;
        }
        if (seen[p]) {
            ret = csi_error_set(pc->err, CS_EPROTO,
                                "record %zu: the parents of layer %zu loop back to layer %lld "
                                "(BuildKit: invalid looping layer)",
                                rec, start, (long long)p);
            break;
        }
        l = (size_t)p;
    }
    free(seen);
    return ret;
}

/* A result index into the layers: in range, and (cacheconfig) its parents form a chain. */
static int
check_layer_index(parse_ctx *pc, size_t rec, int64_t idx, const char *what)
{
    const cs_cachegraph *g = pc->g;

    if (idx < 0 || (uint64_t)idx >= g->nlayers)
        return csi_error_set(pc->err, CS_EPROTO,
                             "record %zu: %slayer index %lld but %s has %zu layers "
                             "(BuildKit: invalid layer index %lld)",
                             rec, what, (long long)idx, pc->holder, g->nlayers, (long long)idx);
    if (g->chain_len[idx] == 0)
        return broken_chain(pc, rec, (size_t)idx);
    return 0;
}

static int
parse_results(parse_ctx *pc, cs_cache_record *r, size_t idx, const json_t *rj, const char *where)
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
    results = arena_array(pc->g, n, sizeof(*results), &pc->oom);
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
            ret = check_layer_index(pc, idx, layer, "");
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
        chain = arena_array(pc->g, json_array_size(list), sizeof(*chain), &pc->oom);
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
parse_inputs(parse_ctx *pc, cs_cache_record *r, size_t idx, const json_t *rj, const char *where)
{
    cs_cache_input *inputs;
    const json_t *arr;
    size_t i, j;
    int ret;

    ret = get_array(pc, &arr, rj, "inputs", CS_CACHEGRAPH_MAX_INPUTS, where);
    if (ret < 0 || arr == NULL)
        return ret;
    inputs = arena_array(pc->g, json_array_size(arr), sizeof(*inputs), &pc->oom);
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
        links = arena_array(pc->g, n, sizeof(*links), &pc->oom);
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
parse_record(parse_ctx *pc, size_t idx, const json_t *rj)
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

/* Walk the parents of every layer once: chain_len[i] = length of i's chain, 0 when it hits a
 * loop or an index out of range; chain_ok likewise. */
static int
compute_chains(parse_ctx *pc)
{
    cs_cachegraph *g = pc->g;
    unsigned char *state; /* 0 unknown, 1 on the current walk, 2 done */
    size_t *path, i;

    g->chain_len = arena_array(g, g->nlayers, sizeof(*g->chain_len), &pc->oom);
    if (pc->oom)
        return oom(pc);
    if (g->kind == CS_CACHEGRAPH_INLINE) {
        for (i = 0; i < g->nlayers; i++) {
            g->chain_len[i] = i + 1;
            g->layers[i].chain_ok = true;
        }
        return 0;
    }
    state = calloc(g->nlayers ? g->nlayers : 1, 1);
    path = malloc((g->nlayers ? g->nlayers : 1) * sizeof(*path));
    if (state == NULL || path == NULL) {
        free(state);
        free(path);
        return oom(pc);
    }
    for (i = 0; i < g->nlayers; i++) {
        size_t np = 0, len = 0, j = i;
        bool ok;

        for (;;) {
            int64_t p;

            if (state[j] == 2) {
                len = g->chain_len[j];
                ok = len > 0;
                break;
            }
            if (state[j] == 1) {
                ok = false;
                break;
            }
            state[j] = 1;
            path[np++] = j;
            p = g->layers[j].parent;
            /* getRemoteChain follows any parent but -1 */
            if (p == -1) {
                ok = true;
                break;
            }
            if (p < 0 || (uint64_t)p >= g->nlayers) {
                ok = false;
                break;
            }
            j = (size_t)p;
        }
        while (np > 0) {
            size_t k = path[--np];

            len = ok ? len + 1 : 0;
            g->chain_len[k] = len;
            g->layers[k].chain_ok = ok;
            state[k] = 2;
        }
    }
    free(state);
    free(path);
    return 0;
}

/* BuildKit walks the records depth-first and rejects a link back into the walk ("invalid
 * looping record"). The same walk, without recursion (100k records), also gives each
 * record's step depth: 0 for a record without inputs, else one more than the shallowest
 * record of its first input. */
typedef struct frame {
    size_t rec, in, ln;
} frame;

static int
check_loops(parse_ctx *pc, size_t *depth)
{
    cs_cachegraph *g = pc->g;
    unsigned char *state = calloc(g->nrecords ? g->nrecords : 1, 1);
    frame *stack = malloc((g->nrecords ? g->nrecords : 1) * sizeof(*stack));
    size_t s, sp = 0;
    int ret = 0;

    if (state == NULL || stack == NULL) {
        ret = oom(pc);
        goto out;
    }
    for (s = 0; s < g->nrecords; s++) {
        if (state[s] != 0)
            continue;
        stack[sp++] = (frame){s, 0, 0};
        state[s] = 1;
        while (sp > 0) {
            frame *f = &stack[sp - 1];
            const cs_cache_record *r = &g->records[f->rec];

            if (f->in < r->ninputs) {
                const cs_cache_input *in = &r->inputs[f->in];
                size_t t;

                if (f->ln >= in->nlinks) {
                    f->in++;
                    f->ln = 0;
                    continue;
                }
                t = in->links[f->ln++].record;
                if (state[t] == 1) {
                    char path[160];
                    size_t p = sp, k, used = 0;

                    while (p > 0 && stack[p - 1].rec != t)
                        p--;
                    for (k = p - 1; k < sp && used < sizeof(path) - 24; k++)
                        used += (size_t)snprintf(path + used, sizeof(path) - used, "%zu -> ",
                                                 stack[k].rec);
                    snprintf(path + used, sizeof(path) - used, "%s%zu", k < sp ? "... -> " : "", t);
                    ret = csi_error_set(pc->err, CS_EPROTO,
                                        "record %zu: its inputs lead back to it: %s "
                                        "(BuildKit: invalid looping record)",
                                        t, path);
                    goto out;
                }
                if (state[t] == 0) {
                    state[t] = 1;
                    stack[sp++] = (frame){t, 0, 0};
                }
                continue;
            }
            if (r->ninputs > 0) {
                size_t k, d = SIZE_MAX;

                for (k = 0; k < r->inputs[0].nlinks; k++) {
                    if (depth[r->inputs[0].links[k].record] < d)
                        d = depth[r->inputs[0].links[k].record];
                }
                depth[f->rec] = d + 1;
            }
            state[f->rec] = 2;
            sp--;
        }
    }
out:
    free(state);
    free(stack);
    return ret;
}

/* Dependents, dangling records, per-layer coverage and the base estimate. */
static int
finish(parse_ctx *pc)
{
    cs_cachegraph *g = pc->g;
    size_t *depth = calloc(g->nrecords ? g->nrecords : 1, sizeof(*depth));
    size_t *last = calloc(g->nlayers ? g->nlayers : 1, sizeof(*last));
    size_t i, j, k;
    bool any = false;
    int ret;

    if (depth == NULL || last == NULL) {
        ret = oom(pc);
        goto out;
    }
    ret = check_loops(pc, depth);
    if (ret < 0)
        goto out;
    for (i = 0; i < g->nrecords; i++) {
        const cs_cache_record *r = &g->records[i];

        for (j = 0; j < r->ninputs; j++) {
            for (k = 0; k < r->inputs[j].nlinks; k++)
                g->records[r->inputs[j].links[k].record].ndependents++;
        }
    }
    g->base_layers = SIZE_MAX;
    for (i = 0; i < g->nrecords; i++) {
        cs_cache_record *r = &g->records[i];

        r->dangling = r->nresults == 0 && r->ndependents == 0;
        for (j = 0; j < r->nresults; j++) {
            const cs_cache_result *res = &r->results[j];
            size_t len = res->chain ? res->nchain : g->chain_len[res->layer];
            size_t base = len > depth[i] ? len - depth[i] : 0;

            /* count records, not results: two results of one record at one layer are one */
            if (last[res->layer] != i + 1) {
                last[res->layer] = i + 1;
                g->layers[res->layer].coverage++;
            }
            if (base < g->base_layers)
                g->base_layers = base;
            any = true;
        }
    }
    if (!any)
        g->base_layers = 0;
out:
    free(depth);
    free(last);
    return ret;
}

static int
graph_new(parse_ctx *pc, cs_cachegraph **out, cs_cachegraph_kind kind, size_t nrecords,
          size_t nlayers)
{
    cs_cachegraph *g = calloc(1, sizeof(*g));
    size_t i;

    if (g == NULL)
        return csi_error_oom(pc->err);
    g->kind = kind;
    pc->g = g;
    *out = g;
    g->records = arena_array(g, nrecords, sizeof(*g->records), &pc->oom);
    g->layers = arena_array(g, nlayers, sizeof(*g->layers), &pc->oom);
    if (pc->oom)
        return oom(pc);
    g->nrecords = nrecords;
    g->nlayers = nlayers;
    for (i = 0; i < nlayers; i++) {
        g->layers[i].size = -1;
        g->layers[i].parent = (int64_t)i - 1;
    }
    return 0;
}

/* Records, once the layers are known. */
static int
parse_records(parse_ctx *pc, const json_t *arr)
{
    size_t i;
    int ret;

    ret = compute_chains(pc);
    for (i = 0; ret == 0 && i < pc->g->nrecords; i++)
        ret = parse_record(pc, i, json_array_get(arr, i));
    if (ret == 0)
        ret = finish(pc);
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
    parse_ctx pc = {NULL, "the image", false, err};
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
    ret = graph_new(&pc, &g, CS_CACHEGRAPH_INLINE, nrecords, nlayers);
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
parse_layer(parse_ctx *pc, size_t i, const json_t *lj)
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
    parse_ctx pc = {NULL, "the cache config", false, err};
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
    ret = graph_new(&pc, &g, CS_CACHEGRAPH_CACHECONFIG, json_array_size(records),
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

cs_cachegraph_kind
cs_cachegraph_kind_of(const cs_cachegraph *g)
{
    return g->kind;
}

size_t
cs_cachegraph_nrecords(const cs_cachegraph *g)
{
    return g->nrecords;
}

size_t
cs_cachegraph_nlayers(const cs_cachegraph *g)
{
    return g->nlayers;
}

const cs_cache_record *
cs_cachegraph_record(const cs_cachegraph *g, size_t i)
{
    return i < g->nrecords ? &g->records[i] : NULL;
}

const cs_cache_layer *
cs_cachegraph_layer(const cs_cachegraph *g, size_t i)
{
    return i < g->nlayers ? &g->layers[i] : NULL;
}

int
cs_cachegraph_layer_coverage(const cs_cachegraph *g, size_t i)
{
    if (i >= g->nlayers)
        return CS_EINVAL;
    /* at most CS_CACHEGRAPH_MAX_RECORDS, so it fits */
    return (int)g->layers[i].coverage;
}

size_t
cs_cachegraph_first_uncovered(const cs_cachegraph *g, size_t from)
{
    size_t i;

    for (i = from; i < g->nlayers; i++) {
        if (g->layers[i].coverage == 0)
            return i;
    }
    return g->nlayers;
}

size_t
cs_cachegraph_base_layers(const cs_cachegraph *g)
{
    return g->base_layers;
}

size_t
cs_cachegraph_chain(const cs_cachegraph *g, size_t layer, size_t *out, size_t max)
{
    size_t len, pos, l;

    if (layer >= g->nlayers || g->chain_len[layer] == 0)
        return 0;
    len = g->chain_len[layer];
    /* chain_len says the parents are in range and end at -1 after len - 1 steps */
    for (pos = len, l = layer; pos > 0; pos--) {
        if (pos - 1 < max)
            out[pos - 1] = l;
        l = (size_t)g->layers[l].parent;
    }
    return len;
}

static int
set_string(cs_cachegraph *g, const char **field, const char *value, const char *what,
           cs_error **err)
{
    size_t len;
    bool oom = false;

    if (value == NULL)
        return 0;
    len = strlen(value);
    if (len > CS_CACHEGRAPH_MAX_STRING)
        return csi_error_set(err, CS_ELIMIT, "%s is %zu bytes, over the limit of %u", what, len,
                             CS_CACHEGRAPH_MAX_STRING);
    /* the old copy stays in the arena until the graph is freed */
    *field = arena_strndup(g, value, len, &oom);
    return oom ? csi_error_oom(err) : 0;
}

int
cs_cachegraph_set_layer(cs_cachegraph *g, size_t i, const char *blob, const char *diff_id,
                        cs_error **err)
{
    int ret;

    if (i >= g->nlayers)
        return csi_error_set(err, CS_EINVAL, "layer %zu out of range (the graph has %zu layers)", i,
                             g->nlayers);
    ret = set_string(g, &g->layers[i].blob, blob, "blob digest", err);
    if (ret == 0)
        ret = set_string(g, &g->layers[i].diff_id, diff_id, "diff_id", err);
    return ret;
}

int
cs_cachegraph_apply_config(cs_cachegraph *g, const cs_image_config *cfg, cs_error **err)
{
    size_t i, l = 0;
    int ret = 0;

    if (g->kind != CS_CACHEGRAPH_INLINE)
        return csi_error_set(err, CS_EINVAL, "only an inline cache has the image's layers");
    if (cfg->ndiff_ids != g->nlayers)
        return csi_error_set(err, CS_EPROTO,
                             "the image config lists %zu diff_ids for %zu manifest layers: "
                             "BuildKit ignores this image's inline cache (invalid image with "
                             "mismatching manifest and config)",
                             cfg->ndiff_ids, g->nlayers);
    for (i = 0; ret == 0 && i < g->nlayers; i++)
        ret = set_string(g, &g->layers[i].diff_id, cfg->diff_ids[i], "diff_id", err);
    /* parseCreatedLayerInfo: the n-th history entry that made a layer describes layer n */
    for (i = 0; ret == 0 && i < cfg->nhistory && l < g->nlayers; i++) {
        const cs_history *h = &cfg->history[i];

        if (h->empty_layer)
            continue;
        ret = set_string(g, &g->layers[l].created_at, h->created, "history created", err);
        if (ret == 0)
            ret =
                set_string(g, &g->layers[l].description, h->created_by, "history created_by", err);
        l++;
    }
    return ret;
}
