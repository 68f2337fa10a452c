/* The command table, `help` and `version`. */
#include "config.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <libdeflate.h>
#include <zlib.h>
#include <zstd.h>

#include "cli_output.h"
#include "cmd.h"

static const char audit_usage[] =
    "usage: cachesync audit REF [--against OTHER] [--format table|json|dot]\n"
    "                           [--raw manifest|config]\n"
    "\n"
    "Show what an image's BuildKit cache covers: its layers with the Dockerfile step that\n"
    "made each and whether a cache record restores it, the totals, and warnings that\n"
    "explain a miss (no inline cache, layer count mismatch, metadata over BuildKit's 1 MiB,\n"
    "layers no record covers: the next fresh build misses from there; the fix is printed).\n"
    "\n"
    "  --against OTHER  compare: layers shared, where OTHER diverges, and what a build of\n"
    "                   OTHER reuses on a machine seeded with REF\n"
    "  --format FORMAT  table (default), json, or dot (Graphviz: records and layers)\n"
    "  --raw manifest   print the manifest (or index) REF names, byte for byte\n"
    "  --raw config     print the image config for the platform, byte for byte\n"
    "\n"
    "Every byte printed was verified against its sha256 digest.\n";

static const char pull_usage[] =
    "usage: cachesync pull REF [--fallback REF]... [--to TARGET]...\n"
    "\n"
    "Fetch an image (manifest, config, layers) from its registry into the local store,\n"
    "verified, in parallel and resumable, then deliver it to each TARGET, so that\n"
    "`docker build --cache-from REF` finds it (even with the registry gone).\n"
    "\n"
    "  --fallback REF   when REF does not exist, try this one (repeatable, in order);\n"
    "                   the daemon still gets the image tagged as REF\n"
    "  --to TARGET      docker (default): load into the daemon at DOCKER_HOST\n"
    "                   store: only the local store\n"
    "                   oci:DIR[:TAG]: an OCI image layout\n"
    "                   archive:FILE: a docker-archive tar (docker load -i FILE)\n"
    "\n"
    "Layers the daemon already holds (e.g. the base image's) are neither fetched nor sent;\n"
    "blobs already in the store are not fetched again; an interrupted pull resumes.\n";

static const char push_usage[] =
    "usage: cachesync push SOURCE REF [--tag TAG]... [--compression gzip|zstd]\n"
    "\n"
    "Push an image with its BuildKit inline cache to a registry, uploading only what the\n"
    "registry lacks.\n"
    "\n"
    "  SOURCE           docker:IMAGE (the default without a prefix): an image of the\n"
    "                   daemon at DOCKER_HOST; oci:DIR[:TAG]: an OCI layout;\n"
    "                   archive:FILE: a docker save tar\n"
    "  --tag TAG        also point TAG at the same manifest (repeatable)\n"
    "  --compression C  gzip (default) or zstd for layers compressed here\n"
    "\n"
    "The config goes up byte for byte, so moby.buildkit.cache.v0 survives. Every blob is\n"
    "checked with HEAD first; a blob the store saw in another repository of the same\n"
    "registry is mounted; a layer compressed once is never compressed again.\n";

static const char doctor_usage[] =
    "usage: cachesync doctor REF\n"
    "\n"
    "Will `docker build --cache-from REF` find the cache on this machine? Checks the daemon\n"
    "and its image store, an image tagged exactly REF, its inline cache metadata (present,\n"
    "under BuildKit's 1 MiB import limit, consistent layer count) and whether the registry\n"
    "answers (and whether that matters here). Ends with a verdict and the command that\n"
    "fixes what is wrong. Exit 0 only when ready.\n";

static const char version_usage[] = "usage: cachesync version\n\nPrint the version of "
                                    "cachesync and of the libraries it uses.\n";

static const char help_usage[] = "usage: cachesync help [COMMAND]\n";

const cli_cmd cli_cmds[] = {
    {"pull", cmd_pull, "pre-seed the builder with an image from a registry", pull_usage},
    {"push", cmd_push, "publish a build with its inline cache", push_usage},
    {"doctor", cmd_doctor, "will docker build --cache-from REF hit here?", doctor_usage},
    {"audit", cmd_audit, "show what a manifest and its cache cover", audit_usage},
    {"login", cmd_login, "log in to a registry (as docker login)", login_usage},
    {"logout", cmd_logout, "log out of a registry (as docker logout)", logout_usage},
    {"store", cmd_store, "list, verify and clean the local store", store_usage},
    {"version", cmd_version, "print version information", version_usage},
    {"help", cmd_help, "show help for a command", help_usage},
    {NULL, NULL, NULL, NULL},
};

const cli_cmd *
cli_cmd_find(const char *name)
{
    const cli_cmd *c;

    for (c = cli_cmds; c->name != NULL; c++) {
        if (strcmp(c->name, name) == 0)
            return c;
    }
    return NULL;
}

void
cli_print_usage(FILE *f)
{
    const cli_cmd *c;

    fputs("usage: cachesync [global options] COMMAND [options] ARGS\n\ncommands:\n", f);
    for (c = cli_cmds; c->name != NULL; c++)
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fputs("\nglobal options (before or after COMMAND):\n"
          "  -q, --quiet                  print nothing but errors\n"
          "  -v, --verbose                say more (twice: every HTTP request)\n"
          "      --json                   print one JSON object on stdout\n"
          "      --jobs N                 parallel transfers\n"
          "      --platform OS/ARCH[/V]   platform to pick from an index (default: this host)\n"
          "      --store DIR              local store (default $CACHESYNC_STORE or\n"
          "                               $XDG_CACHE_HOME/cachesync)\n"
          "      --docker-config DIR      Docker client config dir (default $DOCKER_CONFIG or\n"
          "                               ~/.docker)\n"
          "      --insecure-registry HOST plain HTTP or unverified TLS for HOST[:PORT]\n"
          "      --ca-cert FILE           trust the CA certificates in FILE\n"
          "\nexit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 authentication, 5 integrity\n",
          f);
}

int
cmd_help(int argc, char **argv)
{
    const cli_cmd *c = NULL;
    json_t *o = NULL, *list;
    int r;

    if (argc < 1 || strcmp(argv[0], "help") != 0) {
        /* `cachesync` alone or an unknown spelling: the overview */
        cli_print_usage(stdout);
        return CLI_EXIT_OK;
    }
    r = cli_parse(argc, argv, "help", NULL, NULL, NULL);
    if (r != 0)
        return r < 0 ? CLI_EXIT_OK : r;
    if (argc - optind > 1)
        return cli_usage("help", "unexpected argument \"%s\"", argv[optind + 1]);
    if (optind < argc) {
        c = cli_cmd_find(argv[optind]);
        if (c == NULL)
            return cli_usage("help", "unknown command \"%s\"", argv[optind]);
    }
    if (!cli_g.json) {
        if (c != NULL)
            fputs(c->usage, stdout);
        else
            cli_print_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (c != NULL) {
        o = json_pack("{s:s,s:s,s:s}", "command", c->name, "summary", c->summary, "usage",
                      c->usage);
    } else {
        list = json_array();
        for (c = cli_cmds; c->name != NULL; c++)
            json_array_append_new(list,
                                  json_pack("{s:s,s:s}", "name", c->name, "summary", c->summary));
        o = json_pack("{s:s,s:o}", "version", PACKAGE_VERSION, "commands", list);
    }
    if (o != NULL)
        cli_print_json(o);
    json_decref(o);
    return CLI_EXIT_OK;
}

int
cmd_version(int argc, char **argv)
{
    curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    int r = cli_parse(argc, argv, "version", NULL, NULL, NULL);

    if (r != 0)
        return r < 0 ? CLI_EXIT_OK : r;
    if (optind < argc)
        return cli_usage("version", "unexpected argument \"%s\"", argv[optind]);
    if (cli_g.json) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "version", PACKAGE_VERSION,
                              "libcurl", cv->version, "openssl", OpenSSL_version(OPENSSL_VERSION),
                              "jansson", JANSSON_VERSION, "zstd", ZSTD_versionString(), "zlib",
                              zlibVersion(), "libdeflate", LIBDEFLATE_VERSION_STRING);

        cli_print_json(o);
        json_decref(o);
        return CLI_EXIT_OK;
    }
    printf("cachesync %s\n", PACKAGE_VERSION);
    printf("libcurl %s, %s, jansson %s, zstd %s, zlib %s, libdeflate %s\n", cv->version,
           OpenSSL_version(OPENSSL_VERSION), JANSSON_VERSION, ZSTD_versionString(), zlibVersion(),
           LIBDEFLATE_VERSION_STRING);
    return CLI_EXIT_OK;
}
