/* cachesync audit: what an image in a registry holds and whether it carries inline cache. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_output.h"
#include "cmd.h"

enum { RAW_NONE, RAW_MANIFEST, RAW_CONFIG };
enum { FMT_TABLE, FMT_JSON };

typedef struct audit_opts {
    int raw;
    int format;
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
        else
            return cli_usage("audit", "--format takes table or json, not \"%s\"", arg);
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
print_json(const cs_reference *ref, const cs_image *img, const cs_audit *au)
{
    const cs_image_config *c = img->config_parsed;
    json_t *o, *layers = json_array(), *cache;
    char *refs = cs_reference_to_string(ref, 0), *plat = cs_platform_to_string(&c->platform);
    long long total = 0;
    size_t i;

    for (i = 0; i < au->nlayers; i++) {
        const cs_audit_layer *l = &au->layers[i];

        total += l->size;
        json_array_append_new(
            layers, json_pack("{s:i,s:s,s:I,s:s,s:s?,s:s?,s:b}", "index", (int)i, "digest",
                              l->digest, "size", (json_int_t)l->size, "media_type", l->media_type,
                              "diff_id", l->diff_id, "created_by", l->step, "covered",
                              l->covered));
    }
    cache = json_pack("{s:b,s:i,s:I,s:i,s:I,s:i}", "inline", au->has_cache, "records",
                      (int)au->records, "metadata_bytes", (json_int_t)au->metadata_bytes,
                      "layers_covered", (int)au->layers_covered, "bytes_covered",
                      (json_int_t)au->bytes_covered, "base_layers", (int)au->base_layers);
    if (au->first_uncovered_set)
        json_object_set_new(cache, "first_uncovered", json_integer((json_int_t)au->first_uncovered));
    o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:s,s:I},s:b,s:I,s:i,s:I,s:o,s:o,s:o,s:s?}",
                  "reference", refs ? refs : "", "digest", img->top_digest, "media_type",
                  img->top_media_type ? img->top_media_type : "", "manifest_digest",
                  img->manifest_digest, "platform", plat ? plat : "", "config", "digest",
                  img->parsed->config.digest, "size", (json_int_t)img->parsed->config.size,
                  "inline_cache", c->has_inline_cache, "inline_cache_bytes",
                  (json_int_t)c->inline_cache_bytes, "layer_count", (int)img->parsed->nlayers,
                  "layers_size", (json_int_t)total, "layers", layers, "cache", cache,
                  "warnings", json_strings(au->warnings, au->nwarnings), "fix", au->fix);
    if (o != NULL)
        cli_print_json(o);
    json_decref(o);
    free(refs);
    free(plat);
    return CLI_EXIT_OK;
}

static int
print_table(const cs_reference *ref, const cs_image *img, const cs_audit *au)
{
    const cs_image_config *c = img->config_parsed;
    char *refs = cs_reference_to_string(ref, 0), *plat = cs_platform_to_string(&c->platform);
    char sz[32], sz2[32], step[160];
    long long total = 0;
    size_t i;

    for (i = 0; i < au->nlayers; i++)
        total += au->layers[i].size;
    printf("reference  %s\n", refs ? refs : "?");
    printf("digest     %s (%s)\n", img->top_digest,
           img->top_media_type ? img->top_media_type : "?");
    if (img->from_index)
        printf("manifest   %s\n", img->manifest_digest);
    printf("platform   %s\n", plat ? plat : "?");
    printf("config     %s (%s)\n", img->parsed->config.digest,
           cli_human_size(sz, sizeof(sz), img->parsed->config.size));
    if (au->has_cache)
        printf("cache      inline cache metadata present (moby.buildkit.cache.v0, %s, %zu "
               "records)\n",
               cli_human_size(sz, sizeof(sz), (long long)au->metadata_bytes), au->records);
    else
        printf("cache      no inline cache (build with --build-arg BUILDKIT_INLINE_CACHE=1)\n");
    printf("layers     %zu, %s compressed\n\n", au->nlayers, cli_human_size(sz, sizeof(sz), total));
    printf("%3s  %-9s  %-5s  %-19s  %-6s %s\n", "#", "SIZE", "TYPE", "DIGEST", "CACHE", "STEP");
    for (i = 0; i < au->nlayers; i++) {
        const cs_audit_layer *l = &au->layers[i];
        const char *cov = !au->has_cache ? "-" : l->covered ? "yes" : i < au->base_layers ? "base" : "NO";

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
    free(refs);
    free(plat);
    return CLI_EXIT_OK;
}

int
cmd_audit(int argc, char **argv)
{
    static const struct option opts[] = {{"raw", required_argument, NULL, 'r'},
                                         {"format", required_argument, NULL, 'f'},
                                         {NULL, 0, NULL, 0}};
    audit_opts o = {RAW_NONE, FMT_TABLE};
    cs_registry_options ropts;
    cs_platform want = {0}, *wantp = NULL;
    cs_reference *ref = NULL;
    cs_registry *reg = NULL;
    cs_image *img = NULL;
    cs_audit *au = NULL;
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
    if (cs_reference_parse(&ref, argv[optind], &err) < 0)
        return cli_fail(err);
    if (cli_g.platform != NULL) {
        if (cs_platform_parse(&want, cli_g.platform, &err) < 0) {
            r = cli_fail(err);
            goto out;
        }
        wantp = &want;
    }
    cli_registry_options(&ropts);
    if (cs_registry_new(&reg, ref->domain, &ropts, &err) < 0 ||
        cs_image_resolve(&img, reg, ref, wantp, NULL, o.raw == RAW_MANIFEST ? CS_IMAGE_NO_CONFIG : 0,
                         &err) < 0) {
        r = cli_fail(err);
        goto out;
    }
    if (o.raw == RAW_MANIFEST) {
        fwrite(img->top.ptr, 1, img->top.len, stdout);
        r = CLI_EXIT_OK;
    } else if (o.raw == RAW_CONFIG) {
        fwrite(img->config.ptr, 1, img->config.len, stdout);
        r = CLI_EXIT_OK;
    } else {
        char *refs = cs_reference_to_string(ref, 0);

        if (refs == NULL || cs_audit_image(&au, img, refs, &err) < 0) {
            free(refs);
            r = cli_fail(err);
            goto out;
        }
        free(refs);
        r = o.format == FMT_JSON ? print_json(ref, img, au) : print_table(ref, img, au);
    }
out:
    cs_audit_free(au);
    cs_image_free(img);
    cs_registry_free(reg);
    cs_reference_free(ref);
    cs_platform_dispose(&want);
    return r;
}
