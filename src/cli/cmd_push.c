/* cachesync push: publish a build with its inline cache, uploading only what is missing. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_output.h"
#include "cli_progress.h"
#include "cmd.h"

#define MAX_TAGS 16

typedef struct push_args {
    const char *tags[MAX_TAGS];
    size_t ntags;
    const char *compression;
} push_args;

static int
push_option(int c, const char *arg, void *payload)
{
    push_args *a = payload;

    switch (c) {
    case 't':
        if (a->ntags == MAX_TAGS)
            return cli_usage("push", "at most %d --tag options", MAX_TAGS);
        a->tags[a->ntags++] = arg;
        return 0;
    case 'c':
        if (strcmp(arg, "gzip") != 0 && strcmp(arg, "zstd") != 0)
            return cli_usage("push", "--compression takes gzip or zstd, not \"%s\"", arg);
        a->compression = arg;
        return 0;
    default:
        return cli_usage("push", "unexpected option");
    }
}

/* A live line per step of the source (the daemon's export, each layer compressed) and per
 * upload; a finished compression becomes a line of its own. */
static void
step(cli_progress *pg, const cs_push_progress *p)
{
    const char *what = p->message;
    char label[40], sz[32];

    if (strncmp(what, "compress ", 9) == 0) {
        snprintf(label, sizeof(label), "%.19s", what + 9);
        if (p->total > 0 && p->done == p->total)
            cli_progress_item_done(pg, what, "compressed %s (%s)", label,
                                   cli_human_size(sz, sizeof(sz), (long long)p->total));
        else
            cli_progress_item(pg, what, label, "compressing", p->done, p->total);
    } else if (strncmp(what, "upload ", 7) == 0) {
        snprintf(label, sizeof(label), "%.19s", what + 7);
        cli_progress_item(pg, what, label, "uploading", p->done, p->total);
    } else {
        /* "export" (the daemon's image stream) or "read" (an archive file) */
        cli_progress_item(pg, what, strcmp(what, "export") == 0 ? "docker" : "archive",
                          strcmp(what, "export") == 0 ? "exporting" : "reading", p->done, p->total);
    }
}

/* On a terminal a status line says which step runs (reading and compressing a large image
 * takes a while); every finished step is a line of its own. */
static void
on_progress(const cs_push_progress *p, void *payload)
{
    cli_progress *pg = payload;
    char sz[32];

    switch (p->event) {
    case CS_PUSH_SOURCE:
        cli_progress_print(pg, "read %s", p->message);
        cli_progress_status(pg, "uploading what the registry lacks");
        break;
    case CS_PUSH_BLOB: {
        char key[96];

        snprintf(key, sizeof(key), "upload %s", p->digest);
        cli_progress_item_done(pg, key, "%.19s %s (%s)", p->digest, p->message,
                               cli_human_size(sz, sizeof(sz), (long long)p->total));
        break;
    }
    case CS_PUSH_STEP:
        step(pg, p);
        break;
    case CS_PUSH_MANIFEST:
        cli_progress_print(pg, "pushed %s@%s", p->message, p->digest);
        break;
    case CS_PUSH_NOTE:
        cli_progress_print(pg, "note: %s", p->message);
        break;
    }
}

static void
print_json(const cs_push_result *r)
{
    json_t *tags = json_array(), *o;
    size_t i;

    for (i = 0; i < r->ntags; i++)
        json_array_append_new(tags, json_string(r->tags[i]));
    o = json_pack("{s:s,s:s,s:s,s:{s:i,s:i,s:i,s:i,s:I,s:I},s:{s:i,s:i},s:o,s:f}", "ref", r->ref,
                  "digest", r->manifest_digest, "media_type", r->media_type, "blobs", "total",
                  (int)r->blobs_total, "uploaded", (int)r->blobs_uploaded, "mounted",
                  (int)r->blobs_mounted, "present", (int)r->blobs_present, "bytes_total",
                  (json_int_t)r->bytes_total, "bytes_uploaded", (json_int_t)r->bytes_uploaded,
                  "layers", "compressed", (int)r->layers_compressed, "reused",
                  (int)r->layers_reused, "tags", tags, "seconds", r->seconds);
    if (o != NULL)
        cli_print_json(o);
    json_decref(o);
}

int
cmd_push(int argc, char **argv)
{
    static const struct option opts[] = {{"tag", required_argument, NULL, 't'},
                                         {"compression", required_argument, NULL, 'c'},
                                         {NULL, 0, NULL, 0}};
    push_args a = {{0}, 0, NULL};
    cs_push_options po = {0};
    cs_push_result *res = NULL;
    cs_platform plat = {0};
    cs_error *err = NULL;
    cli_progress *pg;
    char b1[32];
    int r;

    r = cli_parse(argc, argv, "push", opts, push_option, &a);
    if (r != 0)
        return r < 0 ? CLI_EXIT_OK : r;
    if (argc - optind != 2)
        return cli_usage("push", argc - optind < 2 ? "needs SOURCE and REF" : "too many arguments");
    if (cli_g.platform != NULL) {
        if (cs_platform_parse(&plat, cli_g.platform, &err) < 0)
            return cli_fail(err);
        po.platform = &plat;
    }
    po.source = argv[optind];
    po.ref = argv[optind + 1];
    po.tags = a.tags;
    po.ntags = a.ntags;
    po.compression = a.compression ? a.compression : "gzip";
    po.store_dir = cli_g.store;
    po.jobs = cli_g.jobs;
    cli_registry_options(&po.registry);
    if (!cli_g.quiet)
        cli_notef("pushing %s to %s", po.source, po.ref);
    pg = cli_progress_start();
    cli_progress_status(pg, "reading %s", po.source);
    po.progress = on_progress;
    po.progress_payload = pg;
    r = cs_push(&res, &po, &err);
    cli_progress_finish(pg);
    if (r < 0) {
        r = cli_fail(err);
        goto out;
    }
    if (cli_g.json)
        print_json(res);
    if (!cli_g.quiet)
        cli_notef("done in %.2fs: %zu blobs uploaded, %zu mounted, %zu already there (%s sent); "
                  "%zu layers compressed, %zu reused",
                  res->seconds, res->blobs_uploaded, res->blobs_mounted, res->blobs_present,
                  cli_human_size(b1, sizeof(b1), (long long)res->bytes_uploaded),
                  res->layers_compressed, res->layers_reused);
    r = CLI_EXIT_OK;
out:
    cs_push_result_free(res);
    cs_platform_dispose(&plat);
    return r;
}
