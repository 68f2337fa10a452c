/* cachesync store ls | verify | gc: look after the local store. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_output.h"
#include "cmd.h"

#define LS_USAGE                                                                                   \
    "usage: cachesync store ls\n"                                                                  \
    "\n"                                                                                           \
    "List the refs of the store: manifest digest, the bytes of the blobs each keeps here\n"        \
    "(manifest, config, layers; through an index, the child manifests present) and when it\n"      \
    "was last pulled or pushed; then the totals: blobs, bytes, bytes no ref needs (what gc\n"      \
    "frees) and partial files (interrupted downloads, resumed by the next pull).\n"

#define VERIFY_USAGE                                                                               \
    "usage: cachesync store verify\n"                                                              \
    "\n"                                                                                           \
    "Re-hash every blob and remove those whose size or sha256 does not match (the next pull\n"     \
    "of a ref that needs one fetches it again); name the blobs refs need that are missing\n"       \
    "(normal after `pull --to docker`, which fetches only what the daemon lacks) and list\n"       \
    "partial files. Exit 5 when a blob was corrupt, 0 when all were sound.\n"

#define GC_USAGE                                                                                   \
    "usage: cachesync store gc [--older-than DAYS] [--max-size SIZE] [--wait SECONDS]\n"           \
    "                          [--dry-run]\n"                                                      \
    "\n"                                                                                           \
    "Remove the blobs no ref needs, and partial downloads and temp files untouched for a day;\n"   \
    "forget refs first when asked:\n"                                                              \
    "\n"                                                                                           \
    "  --older-than DAYS  forget refs not pulled or pushed for DAYS days (decimals allowed)\n"     \
    "  --max-size SIZE    then forget refs, least recently used first, until the blobs of\n"       \
    "                     the others fit in SIZE: bytes, or with K, M, G, T (powers of 1024)\n"    \
    "  --wait SECONDS     gc runs alone: wait this long (default 60) for the pulls and pushes\n"   \
    "                     using the store to finish; new ones wait for gc\n"                       \
    "  --dry-run          print what would be removed, remove nothing\n"

const char store_usage[] =
    "usage: cachesync store ls | verify | gc [options]\n"
    "\n"
    "Look after the local store (--store DIR, else $CACHESYNC_STORE, else\n"
    "$XDG_CACHE_HOME/cachesync): an OCI image layout every pull and push goes through.\n"
    "`cachesync store COMMAND --help` tells more.\n"
    "\n"
    "  ls      the refs with their sizes and last use; totals\n"
    "  verify  re-hash every blob, remove corrupt ones (exit 5 if any)\n"
    "  gc [--older-than DAYS] [--max-size SIZE] [--wait SECONDS] [--dry-run]\n"
    "          remove what no ref needs, after forgetting old refs if asked\n";

#define DEFAULT_WAIT_S 60

typedef struct store_args {
    double older_than_days; /* < 0: not given */
    long long max_size;     /* < 0: not given */
    double wait_s;
    bool dry_run;
    bool gc_only; /* an option only gc takes was given */
} store_args;

/* "10G", "500M", "1.5k", "1024" */
static int
parse_size(long long *out, const char *arg)
{
    static const char units[] = "KMGT";
    char *end;
    double v, mul = 1;
    const char *u;

    errno = 0;
    v = strtod(arg, &end);
    if (end == arg || errno != 0 || v < 0)
        return -1;
    if (*end != '\0') {
        char c = (char)(end[0] & ~0x20);

        u = c != '\0' ? strchr(units, c) : NULL;
        if (u == NULL)
            return -1;
        for (long i = 0; i <= u - units; i++)
            mul *= 1024;
        end++;
        if ((*end == 'i' || *end == 'I') && (end[1] == 'B' || end[1] == 'b'))
            end += 2;
        else if (*end == 'B' || *end == 'b')
            end++;
        if (*end != '\0')
            return -1;
    }
    if (v * mul > 9.0e18)
        return -1;
    *out = (long long)(v * mul);
    return 0;
}

static int
parse_number(double *out, const char *arg, double max)
{
    char *end;

    errno = 0;
    *out = strtod(arg, &end);
    return end != arg && *end == '\0' && errno == 0 && *out >= 0 && *out <= max ? 0 : -1;
}

static int
store_option(int c, const char *arg, void *payload)
{
    store_args *a = payload;

    a->gc_only = true;
    switch (c) {
    case 'o':
        if (parse_number(&a->older_than_days, arg, 100000) < 0)
            return cli_usage("store", "--older-than takes a number of days, not \"%s\"", arg);
        return 0;
    case 'm':
        if (parse_size(&a->max_size, arg) < 0)
            return cli_usage("store",
                             "--max-size takes bytes or a size like 500M or 10G, not \"%s\"", arg);
        return 0;
    case 'w':
        if (parse_number(&a->wait_s, arg, 86400 * 7) < 0)
            return cli_usage("store", "--wait takes a number of seconds, not \"%s\"", arg);
        return 0;
    case 'n':
        a->dry_run = true;
        return 0;
    default:
        return cli_usage("store", "unexpected option");
    }
}

/* "2024-05-01T12:00:00Z" into BUF; NULL for -1 (unknown). */
static const char *
rfc3339(char *buf, size_t size, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (t < 0 || gmtime_r(&tt, &tm) == NULL)
        return NULL;
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

/* "3 days", "5 hours", "12 minutes", "40 seconds" */
static const char *
age(char *buf, size_t size, int64_t t)
{
    int64_t d = (int64_t)time(NULL) - t;

    if (d < 0)
        d = 0;
    if (d >= 2 * 86400)
        snprintf(buf, size, "%lld days", (long long)(d / 86400));
    else if (d >= 2 * 3600)
        snprintf(buf, size, "%lld hours", (long long)(d / 3600));
    else if (d >= 120)
        snprintf(buf, size, "%lld minutes", (long long)(d / 60));
    else
        snprintf(buf, size, "%lld seconds", (long long)d);
    return buf;
}

static const char *
plural(size_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* ---- ls ------------------------------------------------------------------------------------ */

/* "263.4 kB", or "263.4 kB +2 missing" when blobs it needs are not here; returns the length. */
static int
size_text(char *buf, size_t size, const cs_store_ref_info *r)
{
    char b[32];

    cli_human_size(b, sizeof(b), (long long)r->size);
    if (r->nmissing > 0)
        return snprintf(buf, size, "%s +%zu missing", b, r->nmissing);
    return snprintf(buf, size, "%s", b);
}

static int
run_ls(cs_store *s)
{
    cs_store_listing *l = NULL;
    cs_error *err = NULL;
    char b1[64], b2[32], b3[32], t[32];
    int w = 3, ws = 4;
    size_t i;

    if (cs_store_list(&l, s, &err) < 0)
        return cli_fail(err);
    if (cli_g.json) {
        json_t *refs = json_array(), *o;

        for (i = 0; refs != NULL && i < l->nrefs; i++) {
            const cs_store_ref_info *r = &l->refs[i];
            const char *lu = rfc3339(t, sizeof(t), r->last_used);

            json_array_append_new(
                refs, json_pack("{s:s?,s:s,s:s,s:I,s:i,s:i,s:s?,s:b}", "ref", r->ref, "digest",
                                r->digest, "media_type", r->media_type, "size", (json_int_t)r->size,
                                "blobs", (int)r->nblobs, "missing", (int)r->nmissing, "last_used",
                                lu, "last_used_recorded", r->last_used_recorded));
        }
        o = json_pack("{s:s,s:o,s:I,s:I,s:I,s:I,s:I,s:I}", "store", cs_store_dir(s), "refs", refs,
                      "blobs", (json_int_t)l->blobs, "bytes", (json_int_t)l->bytes,
                      "unreferenced_blobs", (json_int_t)l->unreferenced_blobs, "unreferenced_bytes",
                      (json_int_t)l->unreferenced_bytes, "partial", (json_int_t)l->partial,
                      "partial_bytes", (json_int_t)l->partial_bytes);
        if (o != NULL)
            cli_print_json(o);
        json_decref(o);
        cs_store_listing_free(l);
        return CLI_EXIT_OK;
    }
    for (i = 0; i < l->nrefs; i++) {
        int n = (int)strlen(l->refs[i].ref ? l->refs[i].ref : "(unnamed)");

        w = n > w ? n : w;
        n = size_text(b1, sizeof(b1), &l->refs[i]);
        ws = n > ws ? n : ws;
    }
    if (l->nrefs > 0)
        printf("%-*s  %-19s  %-*s  %s\n", w, "REF", "DIGEST", ws, "SIZE", "LAST USED");
    for (i = 0; i < l->nrefs; i++) {
        const cs_store_ref_info *r = &l->refs[i];

        size_text(b1, sizeof(b1), r);
        printf("%-*s  %.19s  %-*s  ", w, r->ref ? r->ref : "(unnamed)", r->digest, ws, b1);
        if (rfc3339(t, sizeof(t), r->last_used) == NULL)
            printf("-\n");
        else
            printf("%s (%s ago%s)\n", t, age(b2, sizeof(b2), r->last_used),
                   r->last_used_recorded ? "" : ", stored");
    }
    if (l->nrefs > 0)
        putchar('\n');
    printf("%s: %zu %s, %zu %s, %s (%s needed by no ref); %zu partial %s (%s)\n", cs_store_dir(s),
           l->nrefs, plural(l->nrefs, "ref", "refs"), l->blobs, plural(l->blobs, "blob", "blobs"),
           cli_human_size(b1, sizeof(b1), (long long)l->bytes),
           cli_human_size(b2, sizeof(b2), (long long)l->unreferenced_bytes), l->partial,
           plural(l->partial, "file", "files"),
           cli_human_size(b3, sizeof(b3), (long long)l->partial_bytes));
    cs_store_listing_free(l);
    return CLI_EXIT_OK;
}

/* ---- verify -------------------------------------------------------------------------------- */

static void
on_verify(const char *digest, uint64_t size, void *payload)
{
    char b[32];

    (void)payload;
    if (cli_g.verbose)
        cli_notef("checking %s (%s)", digest, cli_human_size(b, sizeof(b), (long long)size));
}

static void
verify_json(const cs_store_verify_result *r)
{
    json_t *corrupt = json_array(), *missing = json_array(), *partial = json_array(), *o;
    char t[32];
    size_t i;

    for (i = 0; i < r->ncorrupt; i++)
        json_array_append_new(
            corrupt, json_pack("{s:s,s:s,s:s,s:s,s:b}", "digest", r->corrupt[i].digest, "path",
                               r->corrupt[i].path, "reason", r->corrupt[i].reason, "detail",
                               r->corrupt[i].detail, "removed", r->corrupt[i].removed));
    for (i = 0; i < r->nmissing; i++)
        json_array_append_new(missing, json_pack("{s:s?,s:s}", "ref", r->missing[i].ref, "digest",
                                                 r->missing[i].digest));
    for (i = 0; i < r->npartial; i++)
        json_array_append_new(partial, json_pack("{s:s,s:I,s:s?}", "path", r->partial[i].path,
                                                 "size", (json_int_t)r->partial[i].size, "modified",
                                                 rfc3339(t, sizeof(t), r->partial[i].mtime)));
    o = json_pack("{s:I,s:I,s:o,s:I,s:o,s:o}", "checked", (json_int_t)r->checked, "bytes",
                  (json_int_t)r->bytes, "corrupt", corrupt, "removed", (json_int_t)r->removed,
                  "missing", missing, "partial", partial);
    if (o != NULL)
        cli_print_json(o);
    json_decref(o);
}

static int
run_verify(cs_store *s)
{
    cs_store_verify_result *r = NULL;
    cs_error *err = NULL;
    char b1[32], b2[32];
    size_t i;
    int rc;

    if (cs_store_verify(&r, s, on_verify, NULL, &err) < 0)
        return cli_fail(err);
    rc = r->ncorrupt > 0 ? CLI_EXIT_INTEGRITY : CLI_EXIT_OK;
    if (cli_g.json) {
        verify_json(r);
        cs_store_verify_result_free(r);
        return rc;
    }
    for (i = 0; i < r->ncorrupt; i++)
        printf("corrupt  %s  %s: %s; %s\n", r->corrupt[i].digest, r->corrupt[i].reason,
               r->corrupt[i].detail, r->corrupt[i].removed ? "removed" : "NOT removed");
    for (i = 0; i < r->nmissing; i++)
        printf("missing  %s  needed by %s\n", r->missing[i].digest,
               r->missing[i].ref ? r->missing[i].ref : "(unnamed)");
    for (i = 0; i < r->npartial; i++)
        printf("partial  %s  %s, untouched for %s\n", r->partial[i].path,
               cli_human_size(b1, sizeof(b1), (long long)r->partial[i].size),
               age(b2, sizeof(b2), r->partial[i].mtime));
    printf("checked %zu %s (%s): %zu corrupt, %zu removed; %zu missing\n", r->checked,
           plural(r->checked, "blob", "blobs"), cli_human_size(b1, sizeof(b1), (long long)r->bytes),
           r->ncorrupt, r->removed, r->nmissing);
    if (r->ncorrupt > 0)
        cli_errorf("%zu corrupt %s %s: pull the refs that need %s again to fetch %s", r->ncorrupt,
                   plural(r->ncorrupt, "blob", "blobs"),
                   r->removed == r->ncorrupt ? "removed" : "found (some could not be removed)",
                   plural(r->ncorrupt, "it", "them"), plural(r->ncorrupt, "it", "them"));
    cs_store_verify_result_free(r);
    return rc;
}

/* ---- gc ------------------------------------------------------------------------------------ */

static void
gc_json(const cs_store_gc_result *r)
{
    json_t *refs = json_array(), *o;
    char t[32];
    size_t i;

    for (i = 0; i < r->nremoved_refs; i++)
        json_array_append_new(refs, json_pack("{s:s?,s:s,s:s,s:s?}", "ref", r->removed_refs[i].ref,
                                              "digest", r->removed_refs[i].digest, "reason",
                                              r->removed_refs[i].reason, "last_used",
                                              rfc3339(t, sizeof(t), r->removed_refs[i].last_used)));
    o = json_pack("{s:o,s:I,s:I,s:I,s:I,s:b,s:{s:I,s:I,s:I}}", "removed_refs", refs,
                  "removed_blobs", (json_int_t)r->removed_blobs, "removed_partial",
                  (json_int_t)r->removed_partial, "freed_bytes", (json_int_t)r->freed_bytes,
                  "layermap_pruned", (json_int_t)r->layermap_pruned, "dry_run", r->dry_run, "after",
                  "refs", (json_int_t)r->refs, "blobs", (json_int_t)r->blobs, "bytes",
                  (json_int_t)r->bytes);
    if (o != NULL)
        cli_print_json(o);
    json_decref(o);
}

static int
run_gc(cs_store *s, const store_args *a)
{
    cs_store_gc_options o = {.older_than = -1, .max_size = -1};
    cs_store_gc_result *r = NULL;
    const char *verb = a->dry_run ? "would remove" : "removed";
    cs_error *err = NULL;
    char b1[32], b2[32], t[32];
    size_t i;

    if (a->older_than_days >= 0)
        o.older_than = (int64_t)(a->older_than_days * 86400);
    o.max_size = a->max_size;
    o.timeout_ms = (int)(a->wait_s * 1000);
    o.dry_run = a->dry_run;
    if (cs_store_gc(&r, s, &o, &err) < 0)
        return cli_fail(err);
    if (cli_g.json) {
        gc_json(r);
        cs_store_gc_result_free(r);
        return CLI_EXIT_OK;
    }
    for (i = 0; i < r->nremoved_refs; i++) {
        const cs_store_gc_ref *g = &r->removed_refs[i];

        printf("%s ref %s  %s  (%s; last used %s)\n", verb, g->ref ? g->ref : "(unnamed)",
               g->digest, g->reason, rfc3339(t, sizeof(t), g->last_used) ? t : "never");
    }
    printf("%s %zu %s and %zu partial %s: %s freed; the store %s %zu %s, %zu %s, %s\n", verb,
           r->removed_blobs, plural(r->removed_blobs, "blob", "blobs"), r->removed_partial,
           plural(r->removed_partial, "file", "files"),
           cli_human_size(b1, sizeof(b1), (long long)r->freed_bytes),
           a->dry_run ? "would keep" : "keeps", r->refs, plural(r->refs, "ref", "refs"), r->blobs,
           plural(r->blobs, "blob", "blobs"), cli_human_size(b2, sizeof(b2), (long long)r->bytes));
    cs_store_gc_result_free(r);
    return CLI_EXIT_OK;
}

/* ---- entry --------------------------------------------------------------------------------- */

/* `store SUB --help`: that subcommand's text (cli_parse would print the whole store_usage). */
static bool
sub_help(int argc, char **argv)
{
    const char *sub = NULL;
    bool help = false;
    int i;

    for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            help = true;
        else if (sub == NULL && argv[i][0] != '-')
            sub = argv[i];
    }
    if (!help || sub == NULL)
        return false;
    if (strcmp(sub, "ls") == 0)
        fputs(LS_USAGE, stdout);
    else if (strcmp(sub, "verify") == 0)
        fputs(VERIFY_USAGE, stdout);
    else if (strcmp(sub, "gc") == 0)
        fputs(GC_USAGE, stdout);
    else
        return false;
    return true;
}

int
cmd_store(int argc, char **argv)
{
    static const struct option opts[] = {{"older-than", required_argument, NULL, 'o'},
                                         {"max-size", required_argument, NULL, 'm'},
                                         {"wait", required_argument, NULL, 'w'},
                                         {"dry-run", no_argument, NULL, 'n'},
                                         {NULL, 0, NULL, 0}};
    store_args a = {-1, -1, DEFAULT_WAIT_S, false, false};
    cs_store *s = NULL;
    cs_error *err = NULL;
    const char *sub;
    int r;

    if (sub_help(argc, argv))
        return CLI_EXIT_OK;
    r = cli_parse(argc, argv, "store", opts, store_option, &a);
    if (r != 0)
        return r < 0 ? CLI_EXIT_OK : r;
    if (optind >= argc)
        return cli_usage("store", "missing ls, verify or gc");
    sub = argv[optind];
    if (strcmp(sub, "ls") != 0 && strcmp(sub, "verify") != 0 && strcmp(sub, "gc") != 0)
        return cli_usage("store", "unknown subcommand \"%s\" (ls, verify or gc)", sub);
    if (argc - optind > 1)
        return cli_usage("store", "unexpected argument \"%s\"", argv[optind + 1]);
    if (a.gc_only && strcmp(sub, "gc") != 0)
        return cli_usage("store", "--older-than, --max-size, --wait and --dry-run are gc's");
    if (cs_store_open(&s, cli_g.store, &err) < 0)
        return cli_fail(err);
    if (strcmp(sub, "ls") == 0)
        r = run_ls(s);
    else if (strcmp(sub, "verify") == 0)
        r = run_verify(s);
    else
        r = run_gc(s, &a);
    cs_store_free(s);
    return r;
}
