/* cachesync doctor: will `docker build --cache-from REF` hit here? */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "cli_output.h"
#include "cmd.h"

static const char *const marks[] = {"ok", "warn", "FAIL"};

int
cmd_doctor(int argc, char **argv)
{
    cs_doctor_options o = {0};
    cs_doctor_report *rep = NULL;
    cs_error *err = NULL;
    size_t i;
    int r;

    r = cli_parse(argc, argv, "doctor", NULL, NULL, NULL);
    if (r != 0)
        return r < 0 ? CLI_EXIT_OK : r;
    if (argc - optind != 1)
        return cli_usage("doctor", argc - optind < 1 ? "missing REF" : "too many arguments");
    o.ref = argv[optind];
    o.store_dir = cli_g.store;
    cli_registry_options(&o.registry);
    if (cs_doctor(&rep, &o, &err) < 0)
        return cli_fail(err);
    if (cli_g.json) {
        json_t *checks = json_array(), *obj;

        for (i = 0; i < rep->nchecks; i++)
            json_array_append_new(checks, json_pack("{s:s,s:s,s:s}", "name", rep->checks[i].name,
                                                    "status", marks[rep->checks[i].status],
                                                    "detail", rep->checks[i].detail));
        obj = json_pack("{s:s,s:b,s:o,s:s?}", "ref", rep->ref, "ready", rep->ready, "checks",
                        checks, "fix", rep->fix);
        if (obj != NULL)
            cli_print_json(obj);
        json_decref(obj);
    } else {
        for (i = 0; i < rep->nchecks; i++)
            printf("%-4s  %-13s %s\n", marks[rep->checks[i].status], rep->checks[i].name,
                   rep->checks[i].detail);
        if (rep->ready)
            printf("\nready: docker build --cache-from %s will find the cache here\n", rep->ref);
        else
            printf("\nnot ready: docker build --cache-from %s would miss\nfix: %s\n", rep->ref,
                   rep->fix ? rep->fix : "see the failed checks above");
    }
    r = rep->ready ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    cs_doctor_report_free(rep);
    return r;
}
