/* cachesync pull: pre-seed the builder from a registry. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_output.h"
#include "cli_progress.h"
#include "cmd.h"

#define MAX_LIST 16

typedef struct pull_args {
    const char *fallbacks[MAX_LIST];
    size_t nfallbacks;
    const char *targets[MAX_LIST];
    size_t ntargets;
} pull_args;

static int
pull_option(int c, const char *arg, void *payload)
{
    pull_args *a = payload;

    switch (c) {
    case 'f':
        if (a->nfallbacks == MAX_LIST)
            return cli_usage("pull", "at most %d --fallback options", MAX_LIST);
        a->fallbacks[a->nfallbacks++] = arg;
        return 0;
    case 't':
        if (a->ntargets == MAX_LIST)
            return cli_usage("pull", "at most %d --to options", MAX_LIST);
        a->targets[a->ntargets++] = arg;
        return 0;
    default:
        return cli_usage("pull", "unexpected option");
    }
}

/* What the user sees while it runs (cli_progress.h): on a terminal a line per layer being
 * fetched, the daemon load, and a total line; otherwise one line per finished step. */
typedef struct view {
    cli_progress *pg;
    size_t to_fetch, fetched;
    uint64_t bytes_to_fetch, bytes_done;
    bool unpacking;
} view;

static void
view_status(view *v)
{
    char a[32], b[32];

    cli_progress_status(v->pg, "total: %zu/%zu layers, %s / %s", v->fetched, v->to_fetch,
                        cli_human_size(a, sizeof(a), (long long)v->bytes_done),
                        cli_human_size(b, sizeof(b), (long long)v->bytes_to_fetch));
}

static void
on_progress(const cs_pull_progress *p, void *payload)
{
    view *v = payload;
    char a[32], label[24];

    switch (p->event) {
    case CS_PULL_PLANNED:
        v->to_fetch = p->layers_to_fetch;
        v->bytes_to_fetch = p->bytes_to_fetch;
        cli_progress_print(v->pg, "fetching %zu of %zu layers (%s)", p->layers_to_fetch,
                           p->layers_total,
                           cli_human_size(a, sizeof(a), (long long)p->bytes_to_fetch));
        view_status(v);
        break;
    case CS_PULL_PROGRESS:
        v->bytes_done = p->bytes_done;
        snprintf(label, sizeof(label), "%.19s", p->digest);
        cli_progress_item(v->pg, p->digest, label, "downloading", p->done, p->total);
        view_status(v);
        break;
    case CS_PULL_FETCHED:
        v->fetched++;
        v->bytes_done = p->bytes_done;
        cli_progress_item_done(v->pg, p->digest, "fetched %.19s (%s)", p->digest,
                               cli_human_size(a, sizeof(a), (long long)p->total));
        view_status(v);
        break;
    case CS_PULL_LOADING:
        if (p->total > 0 && p->done == p->total && !v->unpacking) {
            v->unpacking = true;
            cli_progress_item(v->pg, "load", "docker", "unpacking", 0, 0);
        } else if (!v->unpacking) {
            cli_progress_item(v->pg, "load", "docker", "sending", p->done, p->total);
        }
        break;
    case CS_PULL_RESOLVED:
        cli_progress_print(v->pg, "resolved %s", p->message);
        break;
    case CS_PULL_DELIVERED:
        cli_progress_item_done(v->pg, "load", "%s", p->message);
        break;
    case CS_PULL_NOTE:
        cli_progress_print(v->pg, "note: %s", p->message);
        break;
    }
}

static void
print_json(const cs_pull_result *r)
{
    json_t *o, *dl = json_array();
    size_t i;

    for (i = 0; i < r->ndeliveries; i++)
        json_array_append_new(dl, json_pack("{s:s,s:s}", "target", r->deliveries[i].target,
                                            "outcome", r->deliveries[i].outcome));
    o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:{s:i,s:i,s:i,s:i,s:I,s:I},s:o,s:f}", "ref", r->ref,
                  "served_by", r->served_by, "digest", r->top_digest, "manifest_digest",
                  r->manifest_digest, "config_digest", r->config_digest, "platform", r->platform,
                  "layers", "total", (int)r->layers_total, "fetched", (int)r->layers_fetched,
                  "in_store", (int)r->layers_in_store, "in_daemon", (int)r->layers_in_daemon,
                  "bytes_total", (json_int_t)r->bytes_total, "bytes_fetched",
                  (json_int_t)r->bytes_fetched, "targets", dl, "seconds", r->seconds);
    if (o != NULL)
        cli_print_json(o);
    json_decref(o);
}

int
cmd_pull(int argc, char **argv)
{
    static const struct option opts[] = {{"fallback", required_argument, NULL, 'f'},
                                         {"to", required_argument, NULL, 't'},
                                         {NULL, 0, NULL, 0}};
    pull_args a = {{0}, 0, {0}, 0};
    cs_target targets[MAX_LIST];
    cs_pull_options po = {0};
    cs_pull_result *res = NULL;
    cs_platform plat = {0};
    cs_error *err = NULL;
    view v = {0};
    size_t i, nt = 0;
    char b1[32];
    int r;

    r = cli_parse(argc, argv, "pull", opts, pull_option, &a);
    if (r != 0)
        return r < 0 ? CLI_EXIT_OK : r;
    if (optind >= argc)
        return cli_usage("pull", "missing REF");
    if (argc - optind > 1)
        return cli_usage("pull", "unexpected argument \"%s\"", argv[optind + 1]);
    for (i = 0; i < a.ntargets; i++) {
        if (cs_target_parse(&targets[nt], a.targets[i], &err) < 0) {
            r = cli_fail(err);
            goto out;
        }
        nt++;
    }
    if (cli_g.platform != NULL) {
        if (cs_platform_parse(&plat, cli_g.platform, &err) < 0) {
            r = cli_fail(err);
            goto out;
        }
        po.platform = &plat;
    }
    po.ref = argv[optind];
    po.fallbacks = a.fallbacks;
    po.nfallbacks = a.nfallbacks;
    po.targets = targets;
    po.ntargets = nt;
    po.store_dir = cli_g.store;
    po.jobs = cli_g.jobs;
    cli_registry_options(&po.registry);
    v.pg = cli_progress_start();
    po.progress = on_progress;
    po.progress_payload = &v;
    if (!cli_g.quiet)
        cli_notef("pulling %s", po.ref);
    r = cs_pull(&res, &po, &err);
    cli_progress_finish(v.pg);
    v.pg = NULL;
    if (r < 0) {
        r = cli_fail(err);
        goto out;
    }
    if (cli_g.json)
        print_json(res);
    if (!cli_g.quiet)
        cli_notef("done in %.2fs: %zu of %zu layers fetched (%s), %zu in the store, %zu in the "
                  "daemon%s%s",
                  res->seconds, res->layers_fetched, res->layers_total,
                  cli_human_size(b1, sizeof(b1), (long long)res->bytes_fetched),
                  res->layers_in_store, res->layers_in_daemon,
                  strcmp(res->served_by, res->ref) != 0 ? "; served by " : "",
                  strcmp(res->served_by, res->ref) != 0 ? res->served_by : "");
    r = CLI_EXIT_OK;
out:
    cs_pull_result_free(res);
    for (i = 0; i < nt; i++)
        cs_target_dispose(&targets[i]);
    cs_platform_dispose(&plat);
    return r;
}
