/*
 * What the disk's syncs cost the *other* core of this VM. One thread,
 * pinned to SYNC_CPU, writes BYTES at the next place of a 16 MiB file and
 * fdatasyncs it, RATE times a second, sleeping in between so that its core
 * is otherwise idle. With `busy` that thread spins between its syncs and a
 * second thread on SYNC_CPU spins for the whole run, so that the core has
 * work while a sync waits too, as a loaded hub's core has its tokio worker
 * while the writer syncs. Another, pinned to PROBE_CPU, reads the clock in a
 * tight loop for the whole run and adds up the gaps between two reads:
 * time in which that core ran something else or nothing at all. It also
 * reports PROBE_CPU's steal time from /proc/stat (time the host ran
 * something other than this vCPU while it had work).
 *
 * On a bare machine the probe's gaps do not depend on what another core
 * writes. On a VM whose host does the block device's work on the CPUs
 * that run the vCPUs, they do: every synced write takes a slice of both
 * vCPUs, in pauses of milliseconds, at least while neither vCPU is idle.
 * A latency target in milliseconds is then bounded by the storage traffic,
 * whichever core carries it.
 *
 *   cc -O2 -pthread -o /tmp/sync_steal bench/floor/sync_steal.c
 *   /tmp/sync_steal [rate] [bytes] [seconds] [directory] [sync_cpu] [probe_cpu] [busy]
 *
 * Defaults: 1000 syncs/s of 4096 bytes for 5 s in /tmp, syncs on cpu 1,
 * probe on cpu 0, the syncing core idle between syncs. Rate 0 writes
 * nothing: the probe's baseline (with `busy`, the other core spins).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FILE_BYTES (16L << 20)

static double rate, seconds;
static long bytes;
static int sync_cpu, probe_cpu, busy, fd;
static char *buffer;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
        perror("sched_setaffinity");
        exit(1);
    }
}

/* PROBE_CPU's steal time so far, in milliseconds (/proc/stat counts in
 * USER_HZ ticks). */
static double steal_ms(int cpu) {
    FILE *stat = fopen("/proc/stat", "r");
    if (!stat) { perror("/proc/stat"); exit(1); }
    char name[16], want[16];
    snprintf(want, sizeof want, "cpu%d", cpu);
    unsigned long long field[8];
    double steal = -1;
    while (fscanf(stat, "%15s %llu %llu %llu %llu %llu %llu %llu %llu%*[^\n]", name, &field[0],
                  &field[1], &field[2], &field[3], &field[4], &field[5], &field[6],
                  &field[7]) == 9) {
        if (strcmp(name, want) == 0) {
            steal = field[7] * 1000.0 / (double)sysconf(_SC_CLK_TCK);
            break;
        }
    }
    fclose(stat);
    if (steal < 0) { fprintf(stderr, "no %s in /proc/stat\n", want); exit(1); }
    return steal;
}

/* With `busy`: keeps SYNC_CPU occupied while the syncing thread waits on
 * the disk. */
static void *spinning(void *unused) {
    (void)unused;
    pin(sync_cpu);
    double start = now();
    while (now() - start < seconds) {
    }
    return NULL;
}

static void *syncing(void *unused) {
    (void)unused;
    pin(sync_cpu);
    double start = now();
    long n = 0, at = 0;
    if (rate == 0) {
        while (now() - start < seconds) {
        }
        return NULL;
    }
    while (now() - start < seconds) {
        double due = start + n / rate;
        double wait = due - now();
        if (busy) {
            while (now() < due) {
            }
        } else if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
        if (at + bytes > FILE_BYTES) at = 0;
        if (pwrite(fd, buffer, bytes, at) != bytes) { perror("pwrite"); exit(1); }
        if (fdatasync(fd) != 0) { perror("fdatasync"); exit(1); }
        at += bytes;
        n++;
    }
    printf("%ld synced writes of %ld bytes on cpu %d (%.0f/s), that core %s between them\n", n,
           bytes, sync_cpu, n / (now() - start), busy ? "busy" : "idle");
    return NULL;
}

int main(int argc, char **argv) {
    rate = argc > 1 ? atof(argv[1]) : 1000;
    bytes = argc > 2 ? atol(argv[2]) : 4096;
    seconds = argc > 3 ? atof(argv[3]) : 5;
    const char *directory = argc > 4 ? argv[4] : "/tmp";
    sync_cpu = argc > 5 ? atoi(argv[5]) : 1;
    probe_cpu = argc > 6 ? atoi(argv[6]) : 0;
    busy = argc > 7 && strcmp(argv[7], "busy") == 0;
    if ((argc > 7 && !busy) || rate < 0 || bytes <= 0 || bytes > FILE_BYTES || seconds <= 0 || sync_cpu == probe_cpu) {
        fprintf(stderr, "usage: sync_steal [rate >= 0] [bytes 1..16M] [seconds > 0] [directory] "
                        "[sync_cpu] [probe_cpu, another] [busy]\n");
        return 2;
    }
    pthread_t syncer;
    if (rate > 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/sync_steal.XXXXXX", directory);
        fd = mkstemp(path);
        if (fd < 0) { perror("mkstemp"); return 1; }
        unlink(path);
        buffer = calloc(1, FILE_BYTES);
        if (!buffer) { perror("calloc"); return 1; }
        /* Allocated and synced before the clock starts. */
        if (pwrite(fd, buffer, FILE_BYTES, 0) != FILE_BYTES || fsync(fd) != 0) {
            perror("preparing the file");
            return 1;
        }
    }
    pin(probe_cpu);
    double steal_before = steal_ms(probe_cpu);
    int other = rate > 0 || busy;
    if (other && pthread_create(&syncer, NULL, syncing, NULL) != 0) {
        perror("pthread_create");
        return 1;
    }
    pthread_t spinner;
    if (busy && rate > 0 && pthread_create(&spinner, NULL, spinning, NULL) != 0) {
        perror("pthread_create");
        return 1;
    }
    double start = now(), last = start, lost = 0, worst = 0;
    long over_1ms = 0, over_5ms = 0;
    for (;;) {
        double t = now(), gap = t - last;
        last = t;
        if (t - start > seconds) break;
        if (gap > 0.0001) lost += gap;
        if (gap > 0.001) over_1ms++;
        if (gap > 0.005) over_5ms++;
        if (gap > worst) worst = gap;
    }
    double elapsed = last - start, steal = steal_ms(probe_cpu) - steal_before;
    if (other) pthread_join(syncer, NULL);
    if (busy && rate > 0) pthread_join(spinner, NULL);
    printf("probe on cpu %d for %.1f s: %.0f ms lost in gaps over 0.1 ms (%.1f%%), %ld over 1 ms, "
           "%ld over 5 ms, worst %.2f ms; steal %.0f ms\n",
           probe_cpu, elapsed, lost * 1e3, lost / elapsed * 100, over_1ms, over_5ms, worst * 1e3,
           steal);
    return 0;
}
