/*
 * What the disk of this machine allows a hub that stores every message
 * with synchronous=FULL: one thread appends group commits to a log file and
 * syncs each (as SQLite's WAL does at every commit), while a second thread
 * copies the same bytes into a "database" file and syncs it every 100 ms
 * (as a checkpointer does; the fourth argument changes the interval: 0
 * copies continuously, a negative one never copies). No hub, no SQLite, no sockets: only the writes
 * and the syncs that persisting the messages needs.
 *
 *   cc -O2 -pthread -o /tmp/commit_floor bench/floor/commit_floor.c
 *   /tmp/commit_floor [messages/s] [bytes stored per message] [seconds] [copy every ms]
 *                     [least us between two commits]
 *
 * The log is reused from its start once it reaches 16 MiB (as a WAL that
 * restarts), so after the first lap no write extends the file. A commit
 * takes whatever messages arrived while the previous one was syncing, or
 * since the previous one began if the fifth argument spaces them out (the
 * messages are not real: `rate` of them arrive per second, evenly). The
 * latency of a message is from its arrival to the end of the sync of the
 * commit that carries it. Run pinned, e.g. `taskset -c 0`.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LAP (16L << 20)
#define DB_SIZE (64L << 20)
#define PAGE 4096

static double rate;
static long bytes_per_message;
static double seconds;
static atomic_long pending_copy; /* bytes the checkpointer still has to copy */
static atomic_int done;
static long copy_interval_us = 100000;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void *checkpointer(void *arg) {
    int fd = *(int *)arg;
    char *page = aligned_alloc(PAGE, PAGE);
    memset(page, 7, PAGE);
    unsigned seed = 1;
    while (!atomic_load(&done)) {
        if (copy_interval_us < 0) { /* never copy: the log alone */
            struct timespec pause = {0, 10 * 1000 * 1000};
            nanosleep(&pause, NULL);
            continue;
        }
        struct timespec pause = {copy_interval_us / 1000000, (copy_interval_us % 1000000) * 1000};
        nanosleep(&pause, NULL);
        long bytes = atomic_exchange(&pending_copy, 0);
        if (bytes == 0) continue;
        /* Whole pages at scattered places, as B-tree pages are. */
        for (long copied = 0; copied < bytes; copied += PAGE) {
            long at = (rand_r(&seed) % (DB_SIZE / PAGE)) * PAGE;
            if (pwrite(fd, page, PAGE, at) != PAGE) { perror("pwrite db"); exit(1); }
        }
        if (fsync(fd) != 0) { perror("fsync db"); exit(1); }
    }
    return NULL;
}

int main(int argc, char **argv) {
    rate = argc > 1 ? atof(argv[1]) : 25000;
    bytes_per_message = argc > 2 ? atol(argv[2]) : 200;
    seconds = argc > 3 ? atof(argv[3]) : 10;
    if (argc > 4) copy_interval_us = atol(argv[4]) * 1000;
    double commit_gap = argc > 5 ? atof(argv[5]) / 1e6 : 0;
    char log_path[] = "/tmp/commit_floor_log.XXXXXX";
    char db_path[] = "/tmp/commit_floor_db.XXXXXX";
    int log_fd = mkstemp(log_path), db_fd = mkstemp(db_path);
    if (log_fd < 0 || db_fd < 0) { perror("mkstemp"); return 1; }
    unlink(log_path);
    unlink(db_path);
    /* Both files exist at full size before the clock starts, written and
     * synced, so no measured write allocates blocks. */
    char *zero = calloc(1, 1 << 20);
    for (long at = 0; at < LOG_LAP; at += 1 << 20) pwrite(log_fd, zero, 1 << 20, at);
    for (long at = 0; at < DB_SIZE; at += 1 << 20) pwrite(db_fd, zero, 1 << 20, at);
    fsync(log_fd);
    fsync(db_fd);

    pthread_t copier;
    pthread_create(&copier, NULL, checkpointer, &db_fd);

    long max_samples = (long)(rate * seconds) + 16;
    double *latency = malloc(sizeof(double) * max_samples);
    double *sync_time = malloc(sizeof(double) * (long)(seconds * 20000 + 16));
    long samples = 0, syncs = 0, log_at = 0;
    char *buffer = calloc(1, 64 << 20);
    double start = now(), end = start + seconds;
    long committed = 0; /* messages committed so far */
    double last_commit = 0;
    while (now() < end) {
        double t = now();
        if (t < last_commit + commit_gap) continue; /* paced: not yet */
        long arrived = (long)((t - start) * rate);
        long batch = arrived - committed;
        if (batch == 0) continue; /* nothing arrived yet: poll again */
        long bytes = batch * bytes_per_message;
        if (log_at + bytes > LOG_LAP) log_at = 0;
        last_commit = t;
        if (pwrite(log_fd, buffer, bytes, log_at) != bytes) { perror("pwrite log"); return 1; }
        log_at += bytes;
        double before = now();
        if (fdatasync(log_fd) != 0) { perror("fdatasync"); return 1; }
        double after = now();
        sync_time[syncs++] = after - before;
        for (long i = committed; i < arrived; i++) latency[samples++] = after - (start + i / rate);
        committed = arrived;
        atomic_fetch_add(&pending_copy, bytes);
    }
    atomic_store(&done, 1);
    pthread_join(copier, NULL);

    qsort(latency, samples, sizeof(double), cmp);
    qsort(sync_time, syncs, sizeof(double), cmp);
#define AT(a, n, q) ((a)[(long)((n - 1) * (q))] * 1e3)
    printf("%.0f messages/s, %ld bytes each (%.1f MB/s to the log, the same to the database): "
           "%ld commits, %.0f messages per commit\n",
           rate, bytes_per_message, rate * bytes_per_message / 1e6, syncs,
           (double)samples / syncs);
    printf("  log sync: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", AT(sync_time, syncs, 0.5),
           AT(sync_time, syncs, 0.99), AT(sync_time, syncs, 1.0));
    printf("  message until durable: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
           AT(latency, samples, 0.5), AT(latency, samples, 0.99), AT(latency, samples, 1.0));
    return 0;
}
