/* Progress lines on stderr: a live block on a terminal, plain lines elsewhere. */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_output.h"
#include "cli_progress.h"
#include "cmd.h"

#define MAX_ITEMS 64
#define MIN_REDRAW 0.1 /* at most ten redraws a second on events */
#define TICK_NS (250 * 1000 * 1000)

typedef struct item {
    char key[80];
    char label[40];
    char state[24];
    uint64_t done, total;
    double t0;
} item;

struct cli_progress {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t ticker;
    bool tty, color, ticking, stop, heap;
    item items[MAX_ITEMS];
    size_t nitems;
    char status[256];
    double t0, last_draw;
    int drawn; /* lines of the live block on screen */
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Remove the live block (cursor ends where it began). Caller holds mu. */
static void
erase(cli_progress *pg)
{
    if (pg->drawn > 0) {
        fprintf(stderr, "\033[%dA", pg->drawn);
        fputs("\r\033[J", stderr);
    }
    pg->drawn = 0;
}

static void
draw_line(cli_progress *pg, const item *it, double t)
{
    char a[32], b[32], r[32];
    double el = t - it->t0;
    const char *on = pg->color ? "\033[36m" : "", *off = pg->color ? "\033[0m" : "";

    fprintf(stderr, "\r\033[K%s: %s%s%s", it->label, on, it->state, off);
    if (it->total > 0)
        fprintf(stderr, "  %s / %s  %s/s", cli_human_size(a, sizeof(a), (long long)it->done),
                cli_human_size(b, sizeof(b), (long long)it->total),
                cli_human_size(r, sizeof(r), el > 0.05 ? (long long)(it->done / el) : 0));
    fputc('\n', stderr);
}

/* Caller holds mu. */
static void
redraw(cli_progress *pg)
{
    double t = now_s();
    size_t i;

    erase(pg);
    for (i = 0; i < pg->nitems; i++)
        draw_line(pg, &pg->items[i], t);
    pg->drawn = (int)pg->nitems;
    if (pg->status[0] != '\0') {
        fprintf(stderr, "\r\033[K%s  [%.1fs]\n", pg->status, t - pg->t0);
        pg->drawn++;
    }
    fflush(stderr);
    pg->last_draw = t;
}

static void *
tick(void *arg)
{
    cli_progress *pg = arg;
    struct timespec ts;

    pthread_mutex_lock(&pg->mu);
    while (!pg->stop) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += TICK_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&pg->cv, &pg->mu, &ts);
        if (!pg->stop && (pg->nitems > 0 || pg->status[0] != '\0'))
            redraw(pg);
    }
    pthread_mutex_unlock(&pg->mu);
    return NULL;
}

cli_progress *
cli_progress_start(void)
{
    static cli_progress fallback; /* plain lines when allocation fails */
    cli_progress *pg = calloc(1, sizeof(*pg));
    const char *nc = getenv("NO_COLOR");

    if (pg == NULL) {
        pg = &fallback;
        memset(pg, 0, sizeof(*pg));
    } else {
        pg->heap = true;
    }
    pthread_mutex_init(&pg->mu, NULL);
    pthread_cond_init(&pg->cv, NULL);
    pg->t0 = now_s();
    /* -v interleaves log lines: a live block would garble them */
    pg->tty =
        pg->heap && isatty(STDERR_FILENO) && !cli_g.quiet && !cli_g.json && cli_g.verbose == 0;
    pg->color = pg->tty && (nc == NULL || *nc == '\0');
    if (pg->tty && pthread_create(&pg->ticker, NULL, tick, pg) == 0)
        pg->ticking = true;
    return pg;
}

void
cli_progress_finish(cli_progress *pg)
{
    if (pg == NULL)
        return;
    pthread_mutex_lock(&pg->mu);
    pg->stop = true;
    pthread_cond_broadcast(&pg->cv);
    pthread_mutex_unlock(&pg->mu);
    if (pg->ticking)
        pthread_join(pg->ticker, NULL);
    pthread_mutex_lock(&pg->mu);
    if (pg->tty)
        erase(pg);
    fflush(stderr);
    pthread_mutex_unlock(&pg->mu);
    pthread_cond_destroy(&pg->cv);
    pthread_mutex_destroy(&pg->mu);
    if (pg->heap)
        free(pg);
}

bool
cli_progress_is_tty(const cli_progress *pg)
{
    return pg->tty;
}

static item *
find(cli_progress *pg, const char *key, bool create)
{
    size_t i;

    for (i = 0; i < pg->nitems; i++) {
        if (strcmp(pg->items[i].key, key) == 0)
            return &pg->items[i];
    }
    if (!create || pg->nitems == MAX_ITEMS)
        return NULL;
    memset(&pg->items[pg->nitems], 0, sizeof(item));
    snprintf(pg->items[pg->nitems].key, sizeof(pg->items[0].key), "%s", key);
    pg->items[pg->nitems].t0 = now_s();
    return &pg->items[pg->nitems++];
}

void
cli_progress_item(cli_progress *pg, const char *key, const char *label, const char *state,
                  uint64_t done, uint64_t total)
{
    item *it;

    if (!pg->tty)
        return;
    pthread_mutex_lock(&pg->mu);
    it = find(pg, key, false);
    if (it == NULL) {
        /* a new line is drawn at once: every layer shows up, however fast it goes */
        it = find(pg, key, true);
        pg->last_draw = 0;
    }
    if (it != NULL) {
        snprintf(it->label, sizeof(it->label), "%s", label);
        snprintf(it->state, sizeof(it->state), "%s", state);
        it->done = done;
        it->total = total;
        if (now_s() - pg->last_draw >= MIN_REDRAW)
            redraw(pg);
    }
    pthread_mutex_unlock(&pg->mu);
}

/* Print a permanent line above the live block. Caller holds mu. */
static void
vprint(cli_progress *pg, const char *fmt, va_list ap)
{
    if (cli_g.quiet)
        return;
    if (pg->tty)
        erase(pg);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    if (pg->tty)
        redraw(pg);
}

void
cli_progress_item_done(cli_progress *pg, const char *key, const char *fmt, ...)
{
    va_list ap;
    item *it;

    pthread_mutex_lock(&pg->mu);
    it = find(pg, key, false);
    if (it != NULL) {
        size_t i = (size_t)(it - pg->items);

        memmove(&pg->items[i], &pg->items[i + 1], (pg->nitems - i - 1) * sizeof(item));
        pg->nitems--;
    }
    va_start(ap, fmt);
    vprint(pg, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&pg->mu);
}

void
cli_progress_status(cli_progress *pg, const char *fmt, ...)
{
    va_list ap;

    if (!pg->tty)
        return;
    pthread_mutex_lock(&pg->mu);
    va_start(ap, fmt);
    vsnprintf(pg->status, sizeof(pg->status), fmt, ap);
    va_end(ap);
    if (now_s() - pg->last_draw >= MIN_REDRAW)
        redraw(pg);
    pthread_mutex_unlock(&pg->mu);
}

void
cli_progress_print(cli_progress *pg, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&pg->mu);
    va_start(ap, fmt);
    vprint(pg, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&pg->mu);
}
