/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The A/B suite's guest workload: dirty a working set of guest RAM at a
 * target rate and verify, page by page, that guest RAM still holds what
 * was last written to it.
 *
 * usage: dirtier [W_MIB [R_MIBS]]
 *   With no arguments, W and R come from the kernel command line:
 *   dirtier.w=MiB (working set, default 16) and dirtier.r=MiB/s (rate;
 *   0 idle, -1 as fast as it can; default 0).
 *
 * Every 4 KiB page of the working set holds, in its first 16 bytes, its
 * page index and the generation (pass over the working set) that wrote it
 * last.  The writer sweeps the working set page by page, pass after pass;
 * before it rewrites a page it checks the page's words.  Besides, every
 * heartbeat reads back the whole working set: the pages the current pass
 * has already rewritten must hold the current generation, the others the
 * one before.  Any difference prints
 *
 *     DIRTIER CORRUPT page=N want=IDX/GEN have=IDX/GEN
 *
 * once (then the program goes on, idle, heartbeats only).  A heartbeat
 * line goes to stdout (the serial console) every 100 ms of guest time:
 *
 *     DIRTIER HB n=COUNT pass=GEN dirtied=MIB
 *
 * Built static (gcc -static -O2) for an initramfs with busybox.
 */

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE        4096UL
#define MIB         (1024UL * 1024UL)
#define HB_NS       100000000LL     /* heartbeat period */
#define TICK_NS     2000000LL       /* rate-limited writer's time slice */

static uint64_t *mem;
static unsigned long npages;
static unsigned long long gen = 1;  /* generation being written */
static unsigned long cursor;        /* pages of generation GEN written */
static int corrupt;

static long long now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t *page(unsigned long i)
{
    return mem + i * (PAGE / sizeof(uint64_t));
}

static void report(unsigned long i, unsigned long long want)
{
    volatile uint64_t *p = page(i);

    if (!corrupt) {
        printf("DIRTIER CORRUPT page=%lu want=%lu/%llu have=%llu/%llu\n",
               i, i, want, (unsigned long long)p[0],
               (unsigned long long)p[1]);
        fflush(stdout);
    }
    corrupt = 1;
}

/* The generation page I must hold right now. */
static unsigned long long expected(unsigned long i)
{
    return i < cursor ? gen : gen - 1;
}

static void check(unsigned long i)
{
    volatile uint64_t *p = page(i);

    if (p[0] != i || p[1] != expected(i)) {
        report(i, expected(i));
    }
}

/* Verify then rewrite the next page of the sweep. */
static void write_next(void)
{
    volatile uint64_t *p = page(cursor);

    check(cursor);
    p[0] = cursor;
    p[1] = gen;
    if (++cursor == npages) {
        cursor = 0;
        gen++;
    }
}

static void verify_all(void)
{
    unsigned long i;

    for (i = 0; i < npages && !corrupt; i++) {
        check(i);
    }
}

static long cmdline_value(const char *key, long dflt)
{
    char buf[4096], *s;
    size_t n;
    FILE *f = fopen("/proc/cmdline", "r");

    if (!f) {
        return dflt;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    for (s = buf; (s = strstr(s, key)); s++) {
        if ((s == buf || s[-1] == ' ') && s[strlen(key)] == '=') {
            return strtol(s + strlen(key) + 1, NULL, 10);
        }
    }
    return dflt;
}

int main(int argc, char **argv)
{
    long w = argc > 1 ? atol(argv[1]) : cmdline_value("dirtier.w", 16);
    long r = argc > 2 ? atol(argv[2]) : cmdline_value("dirtier.r", 0);
    /* OWED: pages earned, in millionths of a page */
    unsigned long long hb = 0, dirtied = 0, owed = 0;
    long long last, next_hb, t;
    unsigned long i;

    if (w < 1) {
        w = 1;
    }
    npages = (unsigned long)w * MIB / PAGE;
    if (posix_memalign((void **)&mem, PAGE, npages * PAGE)) {
        printf("DIRTIER FAILED to allocate %ld MiB\n", w);
        return 1;
    }
    /* Generation 0: every page written once, before the first heartbeat. */
    for (i = 0; i < npages; i++) {
        page(i)[0] = i;
        page(i)[1] = 0;
    }
    printf("DIRTIER START w=%ld r=%ld pages=%lu\n", w, r, npages);
    fflush(stdout);

    last = now_ns();
    next_hb = last;
    for (;;) {
        t = now_ns();
        if (t >= next_hb) {
            verify_all();
            printf("DIRTIER HB n=%llu pass=%llu dirtied=%llu\n", hb++, gen,
                   dirtied * PAGE / MIB);
            fflush(stdout);
            next_hb += HB_NS;
            if (next_hb < t) {
                next_hb = t + HB_NS;    /* the guest was stopped */
            }
        }
        if (corrupt || r == 0) {
            /* Idle: nothing to write until the next heartbeat. */
            t = next_hb - now_ns();
        } else if (r < 0) {
            for (i = 0; i < 256; i++) {
                write_next();
            }
            dirtied += 256;
            continue;
        } else {
            /*
             * R MiB/s: earn pages for the time since the last slice, at
             * most one heartbeat's worth (a guest that TCG could not keep
             * up with, or that was stopped, does not burst afterwards).
             */
            owed += (unsigned long long)(t - last) / 1000 * r *
                    (MIB / PAGE);
            if (owed > (unsigned long long)r * (MIB / PAGE) * 100000) {
                owed = (unsigned long long)r * (MIB / PAGE) * 100000;
            }
            last = t;
            for (; owed >= 1000000; owed -= 1000000) {
                write_next();
                dirtied++;
            }
            t = TICK_NS;
        }
        if (t > 0) {
            struct timespec ts = { t / 1000000000LL, t % 1000000000LL };
            nanosleep(&ts, NULL);
        }
    }
}
