/*
 * How many synced writes per second this machine's disk takes before it
 * stalls: writes BYTES at the next place of a 16 MiB file and fdatasyncs
 * it, RATE times a second (evenly paced; 0 = back to back), for SECONDS,
 * and counts the write+sync pairs that took longer than 5 ms. A disk behind
 * a rate limiter (as cloud block devices are) shows a cliff: no stall below
 * its budget, stalls of tens of milliseconds many times a second above it.
 *
 *   cc -O2 -o /tmp/sync_budget bench/floor/sync_budget.c
 *   taskset -c 0 /tmp/sync_budget [rate] [bytes] [seconds] [directory] [-v]
 *
 * The file is made in `directory` (default /tmp): give the hub's data
 * directory's disk. -v prints every stall with its time from the start. It syncs with
 * fdatasync; SQLite calls fsync, which on ext4 also writes the inode when
 * only its times changed (no difference measured here: the hub's file
 * system has no journal).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FILE_BYTES (16L << 20)
#define STALL 0.005

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    double rate = argc > 1 ? atof(argv[1]) : 3000;
    long bytes = argc > 2 ? atol(argv[2]) : 4096;
    double seconds = argc > 3 ? atof(argv[3]) : 10;
    const char *directory = argc > 4 ? argv[4] : "/tmp";
    int verbose = argc > 5 && strcmp(argv[5], "-v") == 0;
    if (bytes <= 0 || bytes > FILE_BYTES || seconds <= 0 || rate < 0) {
        fprintf(stderr,
                "usage: sync_budget [rate >= 0] [bytes 1..16M] [seconds > 0] [directory] [-v]\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/sync_budget.XXXXXX", directory);
    int fd = mkstemp(path);
    if (fd < 0) { perror("mkstemp"); return 1; }
    unlink(path);
    char *buffer = calloc(1, FILE_BYTES);
    if (!buffer) { perror("calloc"); return 1; }
    /* The whole file exists and is synced before the clock starts, so no
     * measured write allocates blocks. */
    if (pwrite(fd, buffer, FILE_BYTES, 0) != FILE_BYTES || fsync(fd) != 0) {
        perror("preparing the file");
        return 1;
    }
    long capacity = (long)((rate > 0 ? rate : 100000) * seconds) + 16;
    double *took = malloc(sizeof(double) * capacity);
    if (!took) { perror("malloc"); return 1; }
    long n = 0, stalls = 0, at = 0;
    double stalled = 0, start = now();
    while (n < capacity && now() - start < seconds) {
        if (rate > 0)
            while (now() < start + n / rate) {
            }
        if (at + bytes > FILE_BYTES) at = 0;
        double before = now();
        if (pwrite(fd, buffer, bytes, at) != bytes) { perror("pwrite"); return 1; }
        if (fdatasync(fd) != 0) { perror("fdatasync"); return 1; }
        double after = now();
        at += bytes;
        took[n++] = after - before;
        if (after - before > STALL) {
            stalls++;
            stalled += after - before;
            if (verbose)
                printf("%.3f s: %.2f ms\n", before - start, (after - before) * 1e3);
        }
    }
    double elapsed = now() - start;
    if (n == 0) { fprintf(stderr, "no write finished in time\n"); return 1; }
    qsort(took, n, sizeof(double), by_value);
    printf("%.0f synced writes/s of %ld bytes for %.0f s: p50 %.2f ms, p99 %.2f ms, max %.2f ms; "
           "%ld over 5 ms, %.0f ms of %.0f stalled\n",
           n / elapsed, bytes, elapsed, took[n / 2] * 1e3, took[n * 99 / 100] * 1e3,
           took[n - 1] * 1e3, stalls, stalled * 1e3, elapsed * 1e3);
    return 0;
}
