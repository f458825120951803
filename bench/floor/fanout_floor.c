/*
 * The fan-out floor in C: the least time one core needs to hand one small
 * frame to each of N connected loopback TCP sockets, with no hub at all.
 * bench/floor/loopback_floor.py measures the same from Python; this one
 * leaves no interpreter in the way and also tries io_uring, which puts all
 * N sends in one submission instead of N system calls.
 *
 * A sender pinned to core 0 writes 200 bytes to each of N sockets
 * (TCP_NODELAY, as the hub's); a reader pinned to core 1 drains them with
 * epoll, as a client machine would. Each round reports the time until the
 * sender is done and until the reader has read from every socket. On
 * loopback each send also runs the receiving side of TCP on the sender's
 * core, so this is what one core pays per member before any hub work.
 *
 * Build and run (needs Debian's liburing-dev):
 *   cc -O2 -o /tmp/fanout_floor bench/floor/fanout_floor.c -luring
 *   ulimit -n 20000; /tmp/fanout_floor [sockets=1000, at most 32768] [rounds=50]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FRAME_BYTES 200

static void die(const char *what) {
    perror(what);
    exit(1);
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        die("sched_setaffinity");
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Reads until every socket has delivered one frame per round, then tells
 * the sender the time through `done`. Never returns. */
static void drain(int *readers, int count, int done) {
    pin_to(1);
    int poll = epoll_create1(0);
    if (poll < 0)
        die("epoll_create1");
    for (int i = 0; i < count; i++) {
        struct epoll_event event = {.events = EPOLLIN, .data.u32 = (unsigned)i};
        if (epoll_ctl(poll, EPOLL_CTL_ADD, readers[i], &event) != 0)
            die("epoll_ctl");
    }
    long *bytes = calloc(count, sizeof *bytes);
    long round_bytes = FRAME_BYTES, complete = 0;
    static char buffer[65536];
    struct epoll_event ready[1024];
    for (;;) {
        int n = epoll_wait(poll, ready, 1024, -1);
        for (int k = 0; k < n; k++) {
            int i = (int)ready[k].data.u32;
            ssize_t got = recv(readers[i], buffer, sizeof buffer, MSG_DONTWAIT);
            if (got <= 0)
                continue;
            long before = bytes[i];
            bytes[i] += got;
            if (before < round_bytes && bytes[i] >= round_bytes)
                complete++;
        }
        if (complete == count) {
            double at = now_ms();
            if (write(done, &at, sizeof at) != sizeof at)
                die("write");
            complete = 0;
            round_bytes += FRAME_BYTES;
        }
    }
}

static void send_all(int *writers, int count, const char *frame, struct io_uring *ring) {
    if (!ring) {
        for (int i = 0; i < count; i++)
            if (send(writers[i], frame, FRAME_BYTES, MSG_NOSIGNAL) != FRAME_BYTES)
                die("send");
        return;
    }
    for (int i = 0; i < count; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        if (!sqe) {
            fprintf(stderr, "io_uring: submission queue full\n");
            exit(1);
        }
        io_uring_prep_send(sqe, writers[i], frame, FRAME_BYTES, MSG_NOSIGNAL);
    }
    if (io_uring_submit_and_wait(ring, count) < 0)
        die("io_uring_submit_and_wait");
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(ring, head, cqe) {
        if (cqe->res != FRAME_BYTES) {
            fprintf(stderr, "io_uring send: %d\n", cqe->res);
            exit(1);
        }
        seen++;
    }
    io_uring_cq_advance(ring, seen);
}

static void measure(const char *how, int *writers, int count, int rounds, int done,
                    struct io_uring *ring) {
    char frame[FRAME_BYTES];
    memset(frame, 'x', sizeof frame);
    double *sent = calloc(rounds, sizeof *sent), *read_all = calloc(rounds, sizeof *read_all);
    for (int r = 0; r < rounds; r++) {
        double started = now_ms();
        send_all(writers, count, frame, ring);
        sent[r] = now_ms() - started;
        double at;
        if (read(done, &at, sizeof at) != sizeof at)
            die("read");
        read_all[r] = at - started;
        /* Start each round from idle sockets and an idle reader. */
        usleep(20000);
    }
    qsort(sent, rounds, sizeof *sent, by_value);
    qsort(read_all, rounds, sizeof *read_all, by_value);
    double median_sent = sent[rounds / 2], best_sent = sent[0];
    double median_read = read_all[rounds / 2], best_read = read_all[0];
    free(sent);
    free(read_all);
    printf("%-9s one %d-byte frame to each of %d sockets: sender done median %.2f ms "
           "(best %.2f, %.1f us per socket); reader has all median %.2f ms (best %.2f)\n",
           how, FRAME_BYTES, count, median_sent, best_sent, median_sent * 1e3 / count,
           median_read, best_read);
}

int main(int argc, char **argv) {
    int count = argc > 1 ? atoi(argv[1]) : 1000;
    int rounds = argc > 2 ? atoi(argv[2]) : 50;
    /* 32768: the most entries an io_uring submission queue may have. */
    if (count < 1 || count > 32768 || rounds < 1) {
        fprintf(stderr, "usage: %s [sockets, 1-32768] [rounds]\n", argv[0]);
        return 2;
    }
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    if (listener < 0 || bind(listener, (void *)&address, sizeof address) != 0 ||
        listen(listener, count) != 0 || getsockname(listener, (void *)&address, &length) != 0)
        die("listen");
    int *readers = calloc(count, sizeof *readers), *writers = calloc(count, sizeof *writers);
    int one = 1;
    for (int i = 0; i < count; i++) {
        readers[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (readers[i] < 0 || connect(readers[i], (void *)&address, sizeof address) != 0)
            die("connect (raise ulimit -n?)");
        writers[i] = accept(listener, NULL, NULL);
        if (writers[i] < 0)
            die("accept");
        if (setsockopt(writers[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
            die("setsockopt TCP_NODELAY");
    }
    int pipe_ends[2];
    if (pipe(pipe_ends) != 0)
        die("pipe");
    pid_t reader = fork();
    if (reader < 0)
        die("fork");
    if (reader == 0) {
        close(pipe_ends[0]);
        drain(readers, count, pipe_ends[1]);
    }
    /* Without the write end here, a reader that dies ends our reads. */
    close(pipe_ends[1]);
    pin_to(0);
    measure("send()", writers, count, rounds, pipe_ends[0], NULL);
    struct io_uring ring;
    int error = io_uring_queue_init((unsigned)count, &ring, 0);
    if (error == 0) {
        measure("io_uring", writers, count, rounds, pipe_ends[0], &ring);
        io_uring_queue_exit(&ring);
    } else
        fprintf(stderr, "io_uring unavailable: %s\n", strerror(-error));
    kill(reader, SIGKILL);
    waitpid(reader, NULL, 0);
    return 0;
}
