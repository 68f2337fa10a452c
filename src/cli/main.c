/* cachesync: global options, then one command from the table. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_GLOBAL_LONGOPTS, {"version", no_argument, NULL, 0x1ff}, {NULL, 0, NULL, 0}};
    const cli_cmd *cmd;
    int c, r, first;

    /* "+": stop at the command name; options after it are the command's to parse (and
     * global options are accepted there too). */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+" CLI_GLOBAL_SHORTOPTS, longopts, NULL)) != -1) {
        if (c == 'h')
            return cmd_help(1, argv);
        if (c == 0x1ff)
            return cmd_version(1, argv);
        if (c == '?' || c == ':')
            return cli_usage(NULL, "unknown or incomplete option \"%s\"", argv[optind - 1]);
        r = cli_global_option(c, optarg, NULL);
        if (r < 0)
            return -r;
    }
    if (optind >= argc) {
        cli_print_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    first = optind;
    cmd = cli_cmd_find(argv[first]);
    if (cmd == NULL)
        return cli_usage(NULL, "unknown command \"%s\"", argv[first]);
    /* the command parses argv from its own name on; optind = 0 re-initialises GNU getopt */
    optind = 0;
    r = cmd->fn(argc - first, argv + first);
    fflush(stdout);
    if (ferror(stdout)) {
        cli_errorf("cannot write to standard output");
        return CLI_EXIT_FAILURE;
    }
    return r;
}
