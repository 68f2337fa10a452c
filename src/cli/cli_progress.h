/* Progress on stderr. On a terminal: a live block of one line per active transfer plus a
 * status line, redrawn at most ten times a second and at least every quarter second (so a
 * long step never looks hung); finished items become permanent lines above it. Elsewhere:
 * only the permanent lines, one per finished step, no control characters. -q and --json
 * print none of it. Safe to call from several threads. */
#ifndef CS_CLI_PROGRESS_H
#define CS_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct cli_progress cli_progress;

/* Starts the redraw ticker on a terminal. Never NULL (falls back to plain lines). */
cli_progress *cli_progress_start(void);
/* Stops the ticker, removes the live block, frees PG. */
void cli_progress_finish(cli_progress *pg);
bool cli_progress_is_tty(const cli_progress *pg);

/* Create or update the live line KEY: "LABEL: STATE  DONE / TOTAL  RATE". TOTAL 0: no sizes. */
void cli_progress_item(cli_progress *pg, const char *key, const char *label, const char *state,
                       uint64_t done, uint64_t total);
/* Remove the live line KEY and print LINE permanently in its place (as cli_notef would). */
void cli_progress_item_done(cli_progress *pg, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The status line at the bottom of the block (elapsed time is appended). */
void cli_progress_status(cli_progress *pg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A permanent line, printed above the live block. */
void cli_progress_print(cli_progress *pg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
