#ifndef CS_CLI_OUTPUT_H
#define CS_CLI_OUTPUT_H

#include <jansson.h>
#include <stddef.h>

/* "12.3 MB" into BUF (decimal units, like docker). */
const char *cli_human_size(char *buf, size_t size, long long bytes);
/* The one JSON result object of a --json run, on stdout. */
void cli_print_json(json_t *obj);

#endif
