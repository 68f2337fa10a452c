/* The cachesync program: command table, shared options, output helpers. */
#ifndef CS_CLI_CMD_H
#define CS_CLI_CMD_H

#include <getopt.h>
#include <stdbool.h>

#include <cachesync/cachesync.h>

/* Exit codes (design.md): the contract scripts rely on. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILURE = 1,
    CLI_EXIT_USAGE = 2,
    CLI_EXIT_NOTFOUND = 3,
    CLI_EXIT_AUTH = 4,
    CLI_EXIT_INTEGRITY = 5,
};

#define CLI_MAX_INSECURE 32

/* Global options, valid before or after the command. */
typedef struct cli_globals {
    int quiet;
    int verbose;
    bool json;
    int jobs;
    const char *platform;
    const char *store;
    const char *docker_config;
    const char *ca_cert;
    const char *insecure[CLI_MAX_INSECURE + 1];
    int ninsecure;
} cli_globals;

extern cli_globals cli_g;

typedef struct cli_cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
    const char *usage; /* full help text */
} cli_cmd;

const cli_cmd *cli_cmd_find(const char *name);
extern const cli_cmd cli_cmds[];

/* Long options shared by every command; command tables append theirs after these. */
#define CLI_GLOBAL_LONGOPTS                                                                        \
    {"quiet", no_argument, NULL, 'q'}, {"verbose", no_argument, NULL, 'v'},                        \
        {"json", no_argument, NULL, 0x100}, {"jobs", required_argument, NULL, 0x101},              \
        {"platform", required_argument, NULL, 0x102}, {"store", required_argument, NULL, 0x103},   \
        {"docker-config", required_argument, NULL, 0x104},                                         \
        {"insecure-registry", required_argument, NULL, 0x105},                                     \
        {"ca-cert", required_argument, NULL, 0x106},                                               \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }
#define CLI_GLOBAL_SHORTOPTS "qvh"

/* Handle a global option returned by getopt_long: 1 handled, 0 not global, <0 exit code
 * negated (usage error already printed). */
int cli_global_option(int c, const char *arg, const char *cmd);

/* Messages, to stderr; nothing else writes there. */
void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warnf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_notef(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Report a library error (text on stderr, or JSON on stdout with --json); returns the exit
 * code for it and frees ERR. */
int cli_fail(cs_error *err);
/* A usage error of CMD: message plus a hint, exit code 2. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cli_exit_code(int cs_code);

/* Registry options from the global options. */
void cli_registry_options(cs_registry_options *opts);

void cli_setup_logging(void);

/* Parse a command's ARGV (argv[0] is its name) with the global options plus CMD_OPTS
 * (NULL-terminated, may be NULL); HANDLE gets the command's own options and returns 0 or an
 * exit code. Returns 0 to go on (operands from optind), -1 when --help was printed (exit
 * 0), or an exit code. */
int cli_parse(int argc, char **argv, const char *name, const struct option *cmd_opts,
              int (*handle)(int c, const char *arg, void *payload), void *payload);

#include <stdio.h>
void cli_print_usage(FILE *f);

int cmd_audit(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_store(int argc, char **argv);
extern const char store_usage[];
int cmd_login(int argc, char **argv);
int cmd_logout(int argc, char **argv);
extern const char login_usage[];
extern const char logout_usage[];
int cmd_version(int argc, char **argv);
int cmd_help(int argc, char **argv);

#endif
