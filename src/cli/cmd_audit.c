/* cachesync audit: what an image in a registry holds and whether it carries inline cache. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_output.h"
#include "cmd.h"

enum { RAW_NONE, RAW_MANIFEST, RAW_CONFIG };
enum { FMT_TABLE, FMT_JSON, FMT_DOT };

typedef struct audit_opts {
    int raw;
    int format;
    const char *against;
} audit_opts;

static int
audit_option(int c, const char *arg, void *payload)
{
    audit_opts *o = payload;

    switch (c) {
    case 'r':
        if (strcmp(arg, "manifest") == 0)
            o->raw = RAW_MANIFEST;
        else if (strcmp(arg, "config") == 0)
            o->raw = RAW_CONFIG;
        else
            return cli_usage("audit", "--raw takes manifest or config, not \"%s\"", arg);
        return 0;
    case 'f':
        if (strcmp(arg, "table") == 0)
            o->format = FMT_TABLE;
        else if (strcmp(arg, "json") == 0)
            o->format = FMT_JSON;
        else if (strcmp(arg, "dot") == 0)
            o->format = FMT_DOT;
        else
            return cli_usage("audit", "--format takes table, json or dot, not \"%s\"", arg);
        return 0;
    case 'a':
        o->against = arg;
        return 0;
    default:
        return cli_usage("audit", "unexpected option");
    }
}

/* Short, readable media type: "gzip", "zstd", "tar", else the full type. */
static const char *
layer_kind(const char *mt)
{
    size_t n = strlen(mt);

    if ((n >= 4 && strcmp(mt + n - 4, "gzip") == 0))
        return "gzip";
    if (n >= 4 && strcmp(mt + n - 4, "zstd") == 0)
        return "zstd";
    if (n >= 3 && strcmp(mt + n - 3, "tar") == 0)
        return "tar";
    return mt;
}

/* A history entry as a Dockerfile line, for display: BuildKit writes
 * "RUN |1 ARG=v /bin/sh -c cmd # buildkit", the classic builder "/bin/sh -c #(nop) ENV x". */
static void
step_display(char *out, size_t size, const char *step)
{
    const char *s = step ? step : "";
    const char *sh = strstr(s, "/bin/sh -c ");
    size_t n;

    if (strncmp(s, "/bin/sh -c #(nop) ", 18) == 0)
        snprintf(out, size, "%s", s + 18);
    else if (strncmp(s, "/bin/sh -c ", 11) == 0)
        snprintf(out, size, "RUN %s", s + 11);
    else if (strncmp(s, "RUN ", 4) == 0 && sh != NULL)
        snprintf(out, size, "RUN %s", sh + 11);
    else
        snprintf(out, size, "%s", s);
    n = strlen(out);
    if (n > 11 && strcmp(out + n - 11, " # buildkit") == 0)
        out[n - 11] = '\0';
    for (char *p = out; *p; p++) {
        if (*p == '\n' || *p == '\t' || *p == '\r')
            *p = ' ';
    }
}

static json_t *
json_strings(char *const *v, size_t n)
{
    json_t *a = json_array();
    size_t i;

    for (i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static int
print_json(const char *label, const cs_image *img, const cs_audit *au)
{
    const cs_image_config *c = img->config_parsed;
    json_t *o, *layers = json_array(), *cache;
    char *plat = c ? cs_platform_to_string(&c->platform) : NULL;
    long long total = 0;
    size_t i;

    for (i = 0; i < au->nlayers; i++) {
        const cs_audit_layer *l = &au->layers[i];

        total += l->size;
        json_array_append_new(layers, json_pack("{s:i,s:s,s:I,s:s,s:s?,s:s?,s:b}", "index", (int)i,
                                                "digest", l->digest, "size", (json_int_t)l->size,
                                                "media_type", l->media_type, "diff_id", l->diff_id,
                                                "created_by", l->step, "covered", l->covered));
    }
    cache = json_pack("{s:b,s:i,s:I,s:i,s:I,s:i}", "inline", au->has_cache, "records",
                      (int)au->records, "metadata_bytes", (json_int_t)au->metadata_bytes,
                      "layers_covered", (int)au->layers_covered, "bytes_covered",
                      (json_int_t)au->bytes_covered, "base_layers", (int)au->base_layers);
    if (au->first_uncovered_set)
        json_object_set_new(cache, "first_uncovered",
                            json_integer((json_int_t)au->first_uncovered));
    o = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:{s:s,s:I},s:b,s:I,s:i,s:I,s:o,s:o,s:o,s:s?}", "reference", label,
        "digest", img->top_digest, "media_type", img->top_media_type ? img->top_media_type : "",
        "manifest_digest", img->manifest_digest, "platform", plat ? plat : "", "config", "digest",
        img->parsed->config.digest, "size", (json_int_t)img->parsed->config.size, "inline_cache",
        c && c->has_inline_cache, "inline_cache_bytes", (json_int_t)(c ? c->inline_cache_bytes : 0),
        "layer_count", (int)img->parsed->nlayers, "layers_size", (json_int_t)total, "layers",
        layers, "cache", cache, "warnings", json_strings(au->warnings, au->nwarnings), "fix",
        au->fix);
    if (o != NULL)
        cli_print_json(o);
    json_decref(o);
    free(plat);
    return CLI_EXIT_OK;
}

static int
print_table(const char *label, const cs_image *img, const cs_audit *au)
{
    const cs_image_config *c = img->config_parsed;
    char *plat = c ? cs_platform_to_string(&c->platform) : NULL;
    char sz[32], sz2[32], step[160];
    long long total = 0;
    size_t i;

    for (i = 0; i < au->nlayers; i++)
        total += au->layers[i].size;
    printf("reference  %s\n", label);
    printf("digest     %s (%s)\n", img->top_digest,
           img->top_media_type ? img->top_media_type : "?");
    if (img->from_index)
        printf("manifest   %s\n", img->manifest_digest);
    printf("platform   %s\n", plat ? plat : "?");
    printf("config     %s (%s)\n", img->parsed->config.digest,
           cli_human_size(sz, sizeof(sz), img->parsed->config.size));
    if (img->cache_export)
        printf("cache      BuildKit registry cache export (%s, %zu records)\n",
               cli_human_size(sz, sizeof(sz), (long long)au->metadata_bytes), au->records);
    else if (au->has_cache)
        printf("cache      inline cache metadata present (moby.buildkit.cache.v0, %s, %zu "
               "records)\n",
               cli_human_size(sz, sizeof(sz), (long long)au->metadata_bytes), au->records);
    else
        printf("cache      no inline cache (build with --build-arg BUILDKIT_INLINE_CACHE=1)\n");
    printf("layers     %zu, %s compressed\n\n", au->nlayers, cli_human_size(sz, sizeof(sz), total));
    printf("%3s  %-9s  %-5s  %-19s  %-6s %s\n", "#", "SIZE", "TYPE", "DIGEST", "CACHE", "STEP");
    for (i = 0; i < au->nlayers; i++) {
        const cs_audit_layer *l = &au->layers[i];
        const char *cov = !au->has_cache        ? "-"
                          : l->covered          ? "yes"
                          : i < au->base_layers ? "base"
                                                : "NO";

        step_display(step, sizeof(step), l->step);
        printf("%3zu  %-9s  %-5s  %-19.19s  %-6s %s\n", i, cli_human_size(sz, sizeof(sz), l->size),
               layer_kind(l->media_type), l->digest, cov, step);
    }
    if (au->has_cache)
        printf("\ncovered    %zu of %zu layers (%s of %s)\n", au->layers_covered, au->nlayers,
               cli_human_size(sz, sizeof(sz), (long long)au->bytes_covered),
               cli_human_size(sz2, sizeof(sz2), total));
    for (i = 0; i < au->nwarnings; i++)
        printf("warning: %s\n", au->warnings[i]);
    if (au->fix != NULL)
        printf("fix: %s\n", au->fix);
    free(plat);
    return CLI_EXIT_OK;
}

/* A DOT string literal body: quotes and backslashes escaped, newlines as \n. */
static void
dot_str(const char *s)
{
    for (; s != NULL && *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        if (*s == '\n')
            fputs("\\n", stdout);
        else
            putchar(*s);
    }
}

/* Graphviz: records (ellipses) link to the records they depend on; a record's results point
 * at the layer its chain ends at (boxes, labelled with the step that made them). */
static int
print_dot(const cs_audit *au)
{
    char step[160];
    size_t i, j, k;

    puts("digraph cache {\n  rankdir=LR;\n  node [fontsize=10];");
    for (i = 0; i < au->nlayers; i++) {
        step_display(step, sizeof(step), au->layers[i].step);
        printf("  l%zu [shape=box, style=%s, label=\"layer %zu\\n", i,
               au->layers[i].covered ? "solid" : "dashed", i);
        dot_str(step);
        puts("\"];");
        if (i > 0)
            printf("  l%zu -> l%zu [style=dotted, arrowhead=none];\n", i - 1, i);
    }
    for (i = 0; au->graph != NULL && i < cs_cachegraph_nrecords(au->graph); i++) {
        const cs_cache_record *r = cs_cachegraph_record(au->graph, i);

        printf("  r%zu [label=\"record %zu\\n%.19s\"%s];\n", i, i, r->digest,
               r->dangling ? ", style=dashed" : "");
        for (j = 0; j < r->ninputs; j++) {
            for (k = 0; k < r->inputs[j].nlinks; k++) {
                printf("  r%zu -> r%zu [label=\"input %zu", r->inputs[j].links[k].record, i, j);
                if (r->inputs[j].links[k].selector != NULL) {
                    fputs(" ", stdout);
                    dot_str(r->inputs[j].links[k].selector);
                }
                puts("\"];");
            }
        }
        for (j = 0; j < r->nresults; j++)
            printf("  r%zu -> l%zu [color=blue, label=\"result\"];\n", i, r->results[j].layer);
    }
    puts("}");
    return CLI_EXIT_OK;
}

static void
print_against(const char *ref, const char *other, const cs_audit *b, const cs_audit *o, bool json)
{
    cs_audit_compare c;
    char step[160];

    cs_audit_against(&c, b, o);
    if (json) {
        json_t *j = json_pack("{s:s,s:s,s:i,s:i,s:i,s:b,s:i,s:s?}", "base", ref, "other", other,
                              "shared_by_digest", (int)c.shared_by_digest, "shared_by_diff_id",
                              (int)c.shared_by_diff_id, "common_prefix", (int)c.common_prefix,
                              "diverges", c.diverges, "reusable", (int)c.reusable,
                              "divergence_step", c.divergence_step);

        if (c.diverges)
            json_object_set_new(j, "first_divergence",
                                json_integer((json_int_t)c.first_divergence));
        cli_print_json(j);
        json_decref(j);
        return;
    }
    printf("base       %s (%zu layers)\nother      %s (%zu layers)\n", ref, b->nlayers, other,
           o->nlayers);
    printf("shared     %zu layers by digest, %zu by content (diff_id)\n", c.shared_by_digest,
           c.shared_by_diff_id);
    printf("common     the first %zu layers are the same chain\n", c.common_prefix);
    if (c.diverges) {
        step_display(step, sizeof(step), c.divergence_step);
        printf("diverges   at layer %zu: %s\n", c.first_divergence, step);
    } else {
        printf("diverges   nowhere: every layer of the other image is in the base\n");
    }
    printf("reuse      a build of the other image on a machine seeded with the base restores "
           "%zu of its %zu layers from cache\n",
           c.reusable, o->nlayers);
}

/* A local source ("docker:", "oci:", "archive:")? A bare name is a registry reference
 * here: audit's default is the registry, unlike push's. */
static bool
is_source(const char *s)
{
    return strncmp(s, "docker:", 7) == 0 || strncmp(s, "oci:", 4) == 0 ||
           strncmp(s, "archive:", 8) == 0;
}

/* Load a local source through the store (as push would: compressed once, remembered) and
 * return its image. */
static int
load_source(cs_image **out, const char *spec, const cs_platform *want, cs_error **err)
{
    cs_source_options so = {0};
    cs_source_image *si = NULL;
    cs_source src = {0};
    cs_store *store = NULL;
    int ret;

    ret = cs_source_parse(&src, spec, err);
    if (ret == 0)
        ret = cs_store_open(&store, cli_g.store, err);
    so.platform = want;
    if (ret == 0)
        ret = cs_source_load(&si, &src, store, &so, err);
    if (ret == 0)
        ret = cs_image_from_source(out, si, err);
    cs_source_image_free(si);
    cs_source_dispose(&src);
    cs_store_free(store);
    return ret;
}

/* Resolve (a registry reference) or load (a local source) one image and audit it; LABEL gets
 * the normalised reference or the source spec. RAW_MANIFEST needs neither config nor audit. */
static int
audit_one(cs_image **img_out, cs_audit **au_out, char **label, const char *str,
          const cs_platform *want, bool raw_manifest, cs_error **err)
{
    cs_registry_options ropts;
    cs_reference *ref = NULL;
    cs_registry *reg = NULL;
    int ret;

    if (is_source(str)) {
        *label = strdup(str);
        ret = *label ? load_source(img_out, str, want, err) : CS_ENOMEM;
    } else {
        ret = cs_reference_parse(&ref, str, err);
        if (ret < 0)
            return ret;
        *label = cs_reference_to_string(ref, 0);
        cli_registry_options(&ropts);
        ret = *label ? cs_registry_new(&reg, ref->domain, &ropts, err) : CS_ENOMEM;
        if (ret == 0)
            ret = cs_image_resolve(img_out, reg, ref, want, NULL,
                                   raw_manifest ? CS_IMAGE_NO_CONFIG : 0, err);
    }
    if (ret == 0 && !raw_manifest)
        ret = cs_audit_image(au_out, *img_out, *label, err);
    if (ret == 0 && !raw_manifest) {
        cs_platform host = {0};

        if (want == NULL && cs_platform_host(&host, NULL) == 0)
            want = &host;
        if (want != NULL)
            ret = cs_audit_check_platform(*au_out, *img_out, want, err);
        cs_platform_dispose(&host);
    }
    cs_registry_free(reg);
    cs_reference_free(ref);
    return ret;
}

int
cmd_audit(int argc, char **argv)
{
    static const struct option opts[] = {{"raw", required_argument, NULL, 'r'},
                                         {"format", required_argument, NULL, 'f'},
                                         {"against", required_argument, NULL, 'a'},
                                         {NULL, 0, NULL, 0}};
    audit_opts o = {RAW_NONE, FMT_TABLE, NULL};
    cs_platform want = {0}, *wantp = NULL;
    char *label = NULL, *label2 = NULL;
    cs_image *img = NULL, *img2 = NULL;
    cs_audit *au = NULL, *au2 = NULL;
    cs_error *err = NULL;
    int r;

    r = cli_parse(argc, argv, "audit", opts, audit_option, &o);
    if (r != 0)
        return r < 0 ? CLI_EXIT_OK : r;
    if (optind >= argc)
        return cli_usage("audit", "missing REF");
    if (argc - optind > 1)
        return cli_usage("audit", "unexpected argument \"%s\"", argv[optind + 1]);
    if (cli_g.json)
        o.format = FMT_JSON;
    if (o.against != NULL && (o.raw != RAW_NONE || o.format == FMT_DOT))
        return cli_usage("audit", "--against compares two images: not with --raw or dot");
    if (cli_g.platform != NULL) {
        if (cs_platform_parse(&want, cli_g.platform, &err) < 0)
            return cli_fail(err);
        wantp = &want;
    }
    if (audit_one(&img, &au, &label, argv[optind], wantp, o.raw == RAW_MANIFEST, &err) < 0) {
        r = cli_fail(err);
        goto out;
    }
    if (o.against != NULL) {
        if (audit_one(&img2, &au2, &label2, o.against, wantp, false, &err) < 0) {
            r = cli_fail(err);
            goto out;
        }
        print_against(label, label2, au, au2, o.format == FMT_JSON);
        r = CLI_EXIT_OK;
    } else if (o.raw == RAW_MANIFEST) {
        fwrite(img->top.ptr, 1, img->top.len, stdout);
        r = CLI_EXIT_OK;
    } else if (o.raw == RAW_CONFIG) {
        fwrite(img->config.ptr, 1, img->config.len, stdout);
        r = CLI_EXIT_OK;
    } else {
        r = o.format == FMT_JSON  ? print_json(label, img, au)
            : o.format == FMT_DOT ? print_dot(au)
                                  : print_table(label, img, au);
    }
out:
    cs_audit_free(au);
    cs_audit_free(au2);
    cs_image_free(img);
    cs_image_free(img2);
    free(label);
    free(label2);
    cs_platform_dispose(&want);
    return r;
}
