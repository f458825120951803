/*
 * The least SQLite can do for target 1 on this machine: each DM stored as
 * one row of about 100 bytes in a table with no index but its rowid (the
 * size of the record `dm_floor.c` logs), in WAL mode with
 * synchronous=FULL, committed in groups spaced by a commit window as the
 * hub's writer spaces them, with the WAL copied back by a second thread
 * (sqlite_log.h, shared with dm_floor.c's `sqlite` mode). No sockets, no
 * JSON, no second table, no indexes: if this misses a latency, a hub that
 * keeps its DMs in SQLite before confirming them misses it too.
 *
 *   cc -O2 -pthread -o /tmp/sqlite_floor bench/floor/sqlite_floor.c -lsqlite3
 *   taskset -c 0 /tmp/sqlite_floor DIR [DMs/s] [seconds] [window us] [index]
 *
 * DIR must exist and not hold a floor.sqlite3 yet (the run creates it and
 * leaves it for inspection). `index` adds a 16-byte client id to every row, ordered
 * as the connector's UUIDv7 ids are, with a unique index on it, as the
 * hub's index of client ids (it also writes two `addressed` entries). DMs are due evenly at the given rate;
 * the writer sleeps until the window since its last commit has passed,
 * inserts every DM due by then, commits, and a DM's latency runs from its
 * due time to the end of that commit. The first second is warm-up.
 * Prints p50/p99/max, the process's CPU and the bytes it wrote per DM.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "sqlite_log.h"

#define RECORD_BYTES 100

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_until(double t) {
    struct timespec ts;
    double left = t - now();
    if (left <= 0) return;
    ts.tv_sec = (time_t)left;
    ts.tv_nsec = (long)((left - ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static long bytes_written(void) {
    FILE *f = fopen("/proc/self/io", "r");
    char line[256];
    long bytes = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "write_bytes: %ld", &bytes) == 1) break;
    if (f) fclose(f);
    return bytes;
}

static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
           usage.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [DMs/s] [seconds] [window us] [index]\n", argv[0]);
        return 2;
    }
    double rate = argc > 2 ? atof(argv[2]) : 25000;
    double seconds = argc > 3 ? atof(argv[3]) : 10;
    double window = (argc > 4 ? atof(argv[4]) : 1000) / 1e6;
    int with_index = argc > 5 && strcmp(argv[5], "index") == 0;
    struct sqlite_log log;
    sqlite_log_open(&log, argv[1], with_index);
    unsigned char record[RECORD_BYTES];
    memset(record, 'x', sizeof record);

    double warmup = 1.0;
    long total = (long)(rate * (seconds + warmup));
    long first_measured = (long)(rate * warmup);
    double *latency = malloc(sizeof(double) * (size_t)(total - first_measured));
    long measured = 0, sent = 0, commits = 0;
    double start = now(), last_commit_start = 0;
    double cpu_at = 0, measure_from = 0;
    long written_at = 0;

    while (sent < total) {
        sleep_until(last_commit_start + window);
        double t = now();
        last_commit_start = t;
        long due = (long)((t - start) * rate) + 1;
        if (due > total) due = total;
        if (due <= sent) continue;
        if (sent < first_measured && due >= first_measured) {
            cpu_at = cpu_seconds();
            written_at = bytes_written();
            measure_from = t;
        }
        sqlite_log_begin(&log);
        for (long i = sent; i < due; i++) sqlite_log_insert(&log, i, record, sizeof record);
        sqlite_log_commit(&log);
        double end = now();
        commits++;
        for (long i = sent; i < due; i++)
            if (i >= first_measured) latency[measured++] = end - (start + i / rate);
        sent = due;
    }
    double elapsed = now() - measure_from;
    double cpu = cpu_seconds() - cpu_at;
    long written = bytes_written() - written_at;
    sqlite_log_close(&log);
    if (measured == 0) {
        fprintf(stderr, "nothing measured: give more seconds or a higher rate\n");
        return 1;
    }

    qsort(latency, (size_t)measured, sizeof(double), cmp);
    printf("sqlite floor (%s): %.0f DMs/s for %.0f s, window %.0f us, %ld commits: "
           "p50 %.2f ms, p99 %.2f ms, max %.1f ms; core %.0f%%; %.0f bytes written per DM\n",
           with_index ? "table + client-id index" : "table only", rate, seconds, window * 1e6,
           commits, latency[measured / 2] * 1e3, latency[(long)(measured * 0.99)] * 1e3,
           latency[measured - 1] * 1e3, 100 * cpu / elapsed, (double)written / measured);
    return 0;
}
