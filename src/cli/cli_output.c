/* Everything the program says goes through here: errors and notes on stderr, results on
 * stdout, --json errors as one object on stdout. */
#include "config.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_output.h"
#include "cmd.h"

cli_globals cli_g = {.jobs = 0};

static void
vmsg(const char *prefix, const char *fmt, va_list ap)
{
    fprintf(stderr, "cachesync: %s", prefix);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void
cli_errorf(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vmsg("", fmt, ap);
    va_end(ap);
}

void
cli_warnf(const char *fmt, ...)
{
    va_list ap;

    if (cli_g.quiet)
        return;
    va_start(ap, fmt);
    vmsg("warning: ", fmt, ap);
    va_end(ap);
}

void
cli_notef(const char *fmt, ...)
{
    va_list ap;

    if (cli_g.quiet)
        return;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int
cli_exit_code(int code)
{
    switch (code) {
    case CS_OK:
        return CLI_EXIT_OK;
    case CS_EINVAL:
        return CLI_EXIT_USAGE;
    case CS_ENOTFOUND:
        return CLI_EXIT_NOTFOUND;
    case CS_EAUTH:
        return CLI_EXIT_AUTH;
    case CS_EDIGEST:
        return CLI_EXIT_INTEGRITY;
    default:
        return CLI_EXIT_FAILURE;
    }
}

static const char *
code_name(int code)
{
    switch (code) {
    case CS_EINVAL:
        return "usage";
    case CS_ENOTFOUND:
        return "not_found";
    case CS_EAUTH:
        return "auth";
    case CS_EDIGEST:
        return "integrity";
    default:
        return "failure";
    }
}

static void
json_error(int exit_code, const char *kind, const char *message)
{
    json_t *o = json_pack("{s:{s:i,s:s,s:s}}", "error", "code", exit_code, "kind", kind, "message",
                          message);

    if (o != NULL) {
        json_dumpf(o, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(o);
    }
}

int
cli_fail(cs_error *err)
{
    int code = err ? err->code : CS_ERROR;
    const char *msg = err && err->message ? err->message : cs_strerror(code);
    int rc = cli_exit_code(code);

    if (cli_g.json)
        json_error(rc, code_name(code), msg);
    cli_errorf("%s", msg);
    cs_error_free(err);
    return rc;
}

int
cli_usage(const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (cli_g.json)
        json_error(CLI_EXIT_USAGE, "usage", msg);
    if (cmd != NULL)
        fprintf(stderr, "cachesync %s: %s (see 'cachesync help %s')\n", cmd, msg, cmd);
    else
        fprintf(stderr, "cachesync: %s (see 'cachesync help')\n", msg);
    return CLI_EXIT_USAGE;
}

int
cli_global_option(int c, const char *arg, const char *cmd)
{
    char *end;
    long n;

    switch (c) {
    case 'q':
        cli_g.quiet = 1;
        return 1;
    case 'v':
        cli_g.verbose++;
        return 1;
    case 0x100:
        cli_g.json = true;
        return 1;
    case 0x101:
        n = strtol(arg, &end, 10);
        if (*arg == '\0' || *end != '\0' || n < 1 || n > 64)
            return -cli_usage(cmd, "--jobs takes a number from 1 to 64, not \"%s\"", arg);
        cli_g.jobs = (int)n;
        return 1;
    case 0x102:
        cli_g.platform = arg;
        return 1;
    case 0x103:
        cli_g.store = arg;
        return 1;
    case 0x104:
        cli_g.docker_config = arg;
        return 1;
    case 0x105:
        if (cli_g.ninsecure == CLI_MAX_INSECURE)
            return -cli_usage(cmd, "too many --insecure-registry options");
        cli_g.insecure[cli_g.ninsecure++] = arg;
        cli_g.insecure[cli_g.ninsecure] = NULL;
        return 1;
    case 0x106:
        cli_g.ca_cert = arg;
        return 1;
    default:
        return 0;
    }
}

void
cli_registry_options(cs_registry_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->docker_config_dir = cli_g.docker_config;
    opts->ca_file = cli_g.ca_cert;
    opts->insecure_registries = cli_g.ninsecure ? cli_g.insecure : NULL;
}

static void
log_line(cs_log_level level, const char *line, void *payload)
{
    static const char *const names[] = {"debug", "info", "warning"};

    (void)payload;
    fprintf(stderr, "cachesync: %s: %s\n", names[level], line);
}

void
cli_setup_logging(void)
{
    if (cli_g.verbose >= 2)
        cs_log_set_callback(log_line, CS_LOG_DEBUG, NULL);
    else if (cli_g.verbose == 1)
        cs_log_set_callback(log_line, CS_LOG_INFO, NULL);
    else if (!cli_g.quiet)
        cs_log_set_callback(log_line, CS_LOG_WARN, NULL);
    else
        cs_log_set_callback(NULL, CS_LOG_WARN, NULL);
}

/* ---- human formatting ------------------------------------------------------------------ */

const char *
cli_human_size(char *buf, size_t size, long long bytes)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
    double v = (double)bytes;
    int u = 0;

    if (bytes < 0) {
        snprintf(buf, size, "?");
        return buf;
    }
    /* decimal units, as docker prints sizes */
    while (v >= 1000.0 && u < 4) {
        v /= 1000.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%lld B", bytes);
    else
        snprintf(buf, size, "%.1f %s", v, units[u]);
    return buf;
}

void
cli_print_json(json_t *obj)
{
    json_dumpf(obj, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
}

/* ---- option parsing shared by the commands ----------------------------------------------- */

int
cli_parse(int argc, char **argv, const char *name, const struct option *cmd_opts,
          int (*handle)(int c, const char *arg, void *payload), void *payload)
{
    static const struct option globals[] = {CLI_GLOBAL_LONGOPTS};
    size_t ng = sizeof(globals) / sizeof(globals[0]), nc = 0, i;
    struct option *all;
    int c, r, ret = 0;

    while (cmd_opts != NULL && cmd_opts[nc].name != NULL)
        nc++;
    all = calloc(ng + nc + 1, sizeof(*all));
    if (all == NULL) {
        cli_errorf("out of memory");
        return CLI_EXIT_FAILURE;
    }
    for (i = 0; i < ng; i++)
        all[i] = globals[i];
    for (i = 0; i < nc; i++)
        all[ng + i] = cmd_opts[i];
    opterr = 0;
    /* GNU getopt permutes: options may follow operands, as users expect of docker */
    while ((c = getopt_long(argc, argv, ":" CLI_GLOBAL_SHORTOPTS, all, NULL)) != -1) {
        if (c == 'h') {
            const cli_cmd *cmd = cli_cmd_find(name);

            fputs(cmd ? cmd->usage : "", stdout);
            ret = -1;
            break;
        }
        if (c == '?') {
            ret = cli_usage(name, "unknown option \"%s\"", argv[optind - 1]);
            break;
        }
        if (c == ':') {
            ret = cli_usage(name, "option \"%s\" needs a value", argv[optind - 1]);
            break;
        }
        r = cli_global_option(c, optarg, name);
        if (r < 0) {
            ret = -r;
            break;
        }
        if (r == 1)
            continue;
        r = handle ? handle(c, optarg, payload) : cli_usage(name, "unexpected option");
        if (r != 0) {
            ret = r;
            break;
        }
    }
    free(all);
    cli_setup_logging();
    return ret;
}
