/*
 * The least a hub must do for target 1, with nothing else: a WebSocket
 * server that takes v2 `direct_message` frames, appends each to a log,
 * makes the log durable with fdatasync in group commits (one at a time,
 * the next starting no sooner than WINDOW µs after the last when that one
 * carried two or more, as the hub's commit window), and only then sends
 * the sender its `sent` and the recipient the message. No SQLite, no JSON
 * parser (fields are found by name; the generator's frames are plain
 * ASCII), no tokens, no history: whatever latency `clawbot-bench dm`
 * measures against it is the machine's, not the hub's.
 *
 *   cc -O2 -pthread -o /tmp/dm_floor bench/floor/dm_floor.c -lcrypto -lsqlite3
 *   taskset -c 0 /tmp/dm_floor PORT [directory] [window_us] [nosync|sqlite]
 *   taskset -c 1 clawbot-bench --open-hub --ws-url ws://127.0.0.1:PORT \
 *       --http-url http://127.0.0.1:PORT --hub-pid PID --protocol v2 \
 *       dm --pairs 100 --rate 25000 --warmup 1 --duration 4
 *
 * The event loop runs on one thread and the syncs on another (both on the
 * core it is started on), as the hub's tokio worker and writer do. The log
 * is a 64 MiB file in `directory` (default /tmp), written from its start
 * again when full. One frame per read is not assumed; frames are taken
 * whole from each connection's buffer. Single-frame messages only; a DM
 * whose `to` or `content` (up to 511 bytes) cannot be taken, or whose
 * recipient is not connected, gets an `error` frame. A benchmark tool, not
 * a hub: a connection that closes while its DMs wait for their commit may
 * see its slot reused by the next one before they are sent.
 *
 * `sqlite` stores each DM's record as a row of the narrowest SQLite store
 * (sqlite_log.h: one table, rowid only, WAL, synchronous=FULL, its own
 * checkpointer) in `directory`/floor.sqlite3 instead of the log file, each
 * group commit one transaction: the least a hub that keeps DMs in SQLite
 * must do, with the same sockets.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sqlite_log.h"

#define MAX_CONNS 4096
#define LOG_BYTES (64L << 20)
#define IN_BYTES (1 << 20)

struct conn {
    int fd, upgraded;
    char id[128];
    char *in;
    size_t in_len;
    char *out;
    size_t out_len, out_cap;
    int dirty;
};

/* One stored DM waiting for its commit. */
struct dm {
    long seq;
    int from, to;
    char content[512];
};

struct batch {
    struct dm *dms;
    size_t len, cap;
    char *log;
    size_t log_len, log_cap;
};

static struct conn conns[MAX_CONNS];
static int epfd, done_fd, log_fd;
static long next_seq = 1, log_at = 0;
static double window;
/* `nosync`: write and sync nothing, to tell the disk's part from the rest. */
static int no_sync;
/* `sqlite`: each commit a SQLite transaction instead of the log's sync. */
static int use_sqlite;
static struct sqlite_log sqlite_store;
static long sqlite_rows;

/* The batch being filled, the one being synced, and the sync thread's
 * hand-off. */
static struct batch filling, syncing;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int sync_busy, sync_ready;
static double last_start;
static size_t last_size;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void grow(char **buffer, size_t *cap, size_t need) {
    if (need <= *cap) return;
    while (*cap < need) *cap = *cap ? *cap * 2 : 4096;
    *buffer = realloc(*buffer, *cap);
    if (!*buffer) die("realloc");
}

/* Connections with output waiting, flushed once per turn of the loop. */
static int dirty[MAX_CONNS], dirty_count;

static void append(struct conn *c, const char *data, size_t len) {
    grow(&c->out, &c->out_cap, c->out_len + len);
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    if (!c->dirty) {
        c->dirty = 1;
        dirty[dirty_count++] = (int)(c - conns);
    }
}

/* A server text frame (unmasked) around `text`. */
static void send_text(struct conn *c, const char *text, size_t len) {
    unsigned char header[4];
    size_t header_len;
    header[0] = 0x81;
    if (len < 126) {
        header[1] = (unsigned char)len;
        header_len = 2;
    } else {
        header[1] = 126;
        header[2] = (unsigned char)(len >> 8);
        header[3] = (unsigned char)len;
        header_len = 4;
    }
    append(c, (const char *)header, header_len);
    append(c, text, len);
}

static void flush(struct conn *c) {
    size_t sent = 0;
    while (sent < c->out_len) {
        ssize_t n = send(c->fd, c->out + sent, c->out_len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            /* Loopback buffers are large; a full one means a reader that
             * stopped. Wait for it rather than drop anything. */
            struct epoll_event ev = {.events = EPOLLOUT};
            int waiter = epoll_create1(0);
            epoll_ctl(waiter, EPOLL_CTL_ADD, c->fd, &ev);
            epoll_wait(waiter, &ev, 1, 1000);
            close(waiter);
            continue;
        }
        if (n <= 0) break;
        sent += (size_t)n;
    }
    c->out_len = 0;
}

/* The string value of "name" in `json`, copied to `out`. */
static int field(const char *json, size_t len, const char *name, char *out, size_t cap) {
    char key[64];
    int key_len = snprintf(key, sizeof key, "\"%s\":\"", name);
    const char *at = memmem(json, len, key, (size_t)key_len);
    if (!at) return 0;
    at += key_len;
    const char *end = memchr(at, '"', (size_t)(json + len - at));
    if (!end || (size_t)(end - at) >= cap) return 0;
    memcpy(out, at, (size_t)(end - at));
    out[end - at] = 0;
    return 1;
}

static int find_agent(const char *id) {
    for (int i = 0; i < MAX_CONNS; i++)
        if (conns[i].fd >= 0 && conns[i].upgraded && strcmp(conns[i].id, id) == 0) return i;
    return -1;
}

/* Whether connection I is still the open, registered agent ID: a slot in
 * the cache below outlives the connection it was made for. */
static int is_agent(int i, const char *id) {
    return i >= 0 && conns[i].fd >= 0 && conns[i].upgraded && strcmp(conns[i].id, id) == 0;
}

/* A cache of recipients by name, so a DM does not scan every connection. */
#define SLOTS 8192
static struct {
    char id[128];
    int conn;
} by_id[SLOTS];

static unsigned hash(const char *s) {
    unsigned h = 2166136261u;
    while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static void remember(const char *id, int conn);

static int lookup(const char *id) {
    unsigned h = hash(id) % SLOTS;
    for (int probe = 0; probe < SLOTS; probe++, h = (h + 1) % SLOTS) {
        if (by_id[h].id[0] == 0) break;
        if (strcmp(by_id[h].id, id) == 0) {
            if (is_agent(by_id[h].conn, id)) return by_id[h].conn;
            break;
        }
    }
    int found = find_agent(id);
    if (found >= 0) remember(id, found);
    return found;
}

static void remember(const char *id, int conn) {
    unsigned h = hash(id) % SLOTS;
    for (int probe = 0; probe < SLOTS; probe++, h = (h + 1) % SLOTS) {
        if (by_id[h].id[0] == 0 || strcmp(by_id[h].id, id) == 0) {
            snprintf(by_id[h].id, sizeof by_id[h].id, "%s", id);
            by_id[h].conn = conn;
            return;
        }
    }
}

static void handle_text(int i, const char *json, size_t len) {
    struct conn *c = &conns[i];
    char kind[64];
    if (!field(json, len, "type", kind, sizeof kind)) return;
    if (strcmp(kind, "direct_message") == 0) {
        char to[128];
        if (filling.len == filling.cap) {
            filling.cap = filling.cap ? filling.cap * 2 : 1024;
            filling.dms = realloc(filling.dms, filling.cap * sizeof *filling.dms);
            if (!filling.dms) die("realloc");
        }
        struct dm *dm = &filling.dms[filling.len];
        /* The generator's DMs always fit and always name a connected agent;
         * anything else is answered, not silently dropped, so that a run
         * that goes wrong shows it. */
        if (!field(json, len, "to", to, sizeof to) ||
            !field(json, len, "content", dm->content, sizeof dm->content)) {
            const char *error = "{\"type\":\"error\",\"code\":\"unsupported\"}";
            send_text(c, error, strlen(error));
            return;
        }
        dm->to = lookup(to);
        if (dm->to < 0) {
            const char *error = "{\"type\":\"error\",\"code\":\"unknown_recipient\"}";
            send_text(c, error, strlen(error));
            return;
        }
        dm->seq = next_seq++;
        dm->from = i;
        filling.len++;
        char record[1024];
        int n = snprintf(record, sizeof record, "%ld %s %s %s\n", dm->seq, c->id, to, dm->content);
        grow(&filling.log, &filling.log_cap, filling.log_len + (size_t)n);
        memcpy(filling.log + filling.log_len, record, (size_t)n);
        filling.log_len += (size_t)n;
    } else if (strcmp(kind, "register") == 0) {
        if (!field(json, len, "id", c->id, sizeof c->id)) return;
        remember(c->id, i);
        char reply[256];
        int n = snprintf(reply, sizeof reply, "{\"type\":\"registered\",\"agentId\":\"%s\"}", c->id);
        send_text(c, reply, (size_t)n);
        send_text(c, "{\"type\":\"caught_up\"}", 20);
    } else if (strcmp(kind, "heartbeat") == 0) {
        send_text(c, "{\"type\":\"heartbeat_ack\"}", 24);
    }
    /* ack and anything else: nothing to do. */
}

static void close_conn(int i) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, conns[i].fd, NULL);
    close(conns[i].fd);
    conns[i].fd = -1;
}

static void upgrade(int i) {
    struct conn *c = &conns[i];
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) return;
    char key[128];
    const char *at = memmem(c->in, c->in_len, "Sec-WebSocket-Key: ", 19);
    if (!at) at = memmem(c->in, c->in_len, "sec-websocket-key: ", 19);
    if (!at) { close_conn(i); return; }
    at += 19;
    const char *eol = memchr(at, '\r', (size_t)(end - at) + 1);
    size_t key_len = (size_t)(eol - at);
    if (key_len > 60) { close_conn(i); return; }
    memcpy(key, at, key_len);
    memcpy(key + key_len, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((unsigned char *)key, key_len + 36, digest);
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char accept[32];
    int o = 0;
    for (int k = 0; k < 21; k += 3) {
        unsigned v = digest[k] << 16 | (k + 1 < 20 ? digest[k + 1] << 8 : 0) |
                     (k + 2 < 20 ? digest[k + 2] : 0);
        accept[o++] = b64[v >> 18 & 63];
        accept[o++] = b64[v >> 12 & 63];
        accept[o++] = k + 1 < 20 ? b64[v >> 6 & 63] : '=';
        accept[o++] = k + 2 < 20 ? b64[v & 63] : '=';
    }
    accept[o] = 0;
    char reply[256];
    int n = snprintf(reply, sizeof reply,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    append(c, reply, (size_t)n);
    flush(c);
    size_t used = (size_t)(end + 4 - c->in);
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    c->upgraded = 1;
}

/* Takes every whole frame from the connection's buffer. */
static void frames(int i) {
    struct conn *c = &conns[i];
    size_t at = 0;
    while (c->in_len - at >= 2) {
        unsigned char *f = (unsigned char *)c->in + at;
        int opcode = f[0] & 15;
        uint64_t len = f[1] & 127;
        size_t header = 2;
        if (len == 126) {
            if (c->in_len - at < 4) break;
            len = (uint64_t)f[2] << 8 | f[3];
            header = 4;
        } else if (len == 127) {
            if (c->in_len - at < 10) break;
            len = 0;
            for (int k = 0; k < 8; k++) len = len << 8 | f[2 + k];
            header = 10;
        }
        int masked = f[1] & 128;
        if (c->in_len - at < header + (masked ? 4 : 0) + len) break;
        unsigned char *payload = f + header + (masked ? 4 : 0);
        if (masked)
            for (uint64_t k = 0; k < len; k++) payload[k] ^= f[header + k % 4];
        if (opcode == 1) handle_text(i, (char *)payload, (size_t)len);
        else if (opcode == 8) { close_conn(i); return; }
        else if (opcode == 9) {
            unsigned char pong[2] = {0x8a, 0};
            append(c, (char *)pong, 2);
        }
        at += header + (masked ? 4 : 0) + len;
    }
    memmove(c->in, c->in + at, c->in_len - at);
    c->in_len -= at;
}

/* The batch's records (one a line in its log buffer), a row each, in one
 * transaction. */
static void store_in_sqlite(void) {
    sqlite_log_begin(&sqlite_store);
    const char *at = syncing.log, *end = syncing.log + syncing.log_len;
    while (at < end) {
        const char *line_end = memchr(at, '\n', (size_t)(end - at));
        if (!line_end) line_end = end;
        sqlite_log_insert(&sqlite_store, sqlite_rows++, at, (size_t)(line_end - at));
        at = line_end + 1;
    }
    sqlite_log_commit(&sqlite_store);
}

static void *sync_thread(void *unused) {
    (void)unused;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (!sync_ready) pthread_cond_wait(&wake, &lock);
        sync_ready = 0;
        pthread_mutex_unlock(&lock);
        if (use_sqlite) {
            store_in_sqlite();
        } else if (!no_sync) {
            size_t len = syncing.log_len;
            if (log_at + (long)len > LOG_BYTES) log_at = 0;
            if (pwrite(log_fd, syncing.log, len, log_at) != (ssize_t)len) die("pwrite");
            if (fdatasync(log_fd) != 0) die("fdatasync");
            log_at += (long)len;
        }
        uint64_t one = 1;
        if (write(done_fd, &one, sizeof one) != sizeof one) die("eventfd");
    }
    return NULL;
}

/* Starts a commit of what has been filled if none is running and the
 * window allows; returns the seconds until it would, or -1. */
static double maybe_commit(void) {
    if (sync_busy || filling.len == 0) return -1;
    double t = now();
    if (last_size >= 2 && t < last_start + window) return last_start + window - t;
    struct batch swap = syncing;
    syncing = filling;
    filling = swap;
    filling.len = 0;
    filling.log_len = 0;
    last_start = t;
    last_size = syncing.len;
    sync_busy = 1;
    pthread_mutex_lock(&lock);
    sync_ready = 1;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    return -1;
}

static void committed(void) {
    char frame[1024];
    for (size_t k = 0; k < syncing.len; k++) {
        struct dm *dm = &syncing.dms[k];
        struct conn *from = &conns[dm->from], *to = &conns[dm->to];
        int n = snprintf(frame, sizeof frame, "{\"type\":\"sent\",\"id\":\"%ld\",\"seq\":%ld}",
                         dm->seq, dm->seq);
        if (from->fd >= 0) send_text(from, frame, (size_t)n);
        n = snprintf(frame, sizeof frame,
                     "{\"type\":\"direct_message\",\"id\":\"%ld\",\"seq\":%ld,\"from\":\"%s\","
                     "\"to\":\"%s\",\"content\":\"%s\"}",
                     dm->seq, dm->seq, from->id, to->id, dm->content);
        if (to->fd >= 0) send_text(to, frame, (size_t)n);
    }
    sync_busy = 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: dm_floor PORT [directory] [window_us] [nosync|sqlite]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *directory = argc > 2 ? argv[2] : "/tmp";
    window = (argc > 3 ? atof(argv[3]) : 1000) / 1e6;
    no_sync = argc > 4 && strcmp(argv[4], "nosync") == 0;
    use_sqlite = argc > 4 && strcmp(argv[4], "sqlite") == 0;
    if (use_sqlite) {
        sqlite_log_open(&sqlite_store, directory, 0);
    } else if (!no_sync) {
        char path[4096];
        snprintf(path, sizeof path, "%s/dm_floor.XXXXXX", directory);
        log_fd = mkstemp(path);
        if (log_fd < 0) die("mkstemp");
        unlink(path);
        char *zeros = calloc(1, LOG_BYTES);
        if (!zeros || pwrite(log_fd, zeros, LOG_BYTES, 0) != LOG_BYTES || fsync(log_fd) != 0)
            die("preparing the log");
        free(zeros);
    }

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int yes = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0) die("bind");
    if (listen(listener, 4096) != 0) die("listen");
    epfd = epoll_create1(0);
    done_fd = eventfd(0, EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = MAX_CONNS};
    epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &ev);
    ev.data.u32 = MAX_CONNS + 1;
    epoll_ctl(epfd, EPOLL_CTL_ADD, done_fd, &ev);
    for (int i = 0; i < MAX_CONNS; i++) conns[i].fd = -1;
    pthread_t syncer;
    if (pthread_create(&syncer, NULL, sync_thread, NULL) != 0) die("pthread_create");
    printf("dm_floor listening on 127.0.0.1:%d, log in %s, window %.0f us%s\n", port, directory,
           window * 1e6, no_sync ? ", no syncs" : use_sqlite ? ", stored in SQLite" : "");
    fflush(stdout);

    struct epoll_event events[256];
    double timeout = -1;
    for (;;) {
        struct timespec wait = {(time_t)timeout, (long)((timeout - (time_t)timeout) * 1e9)};
        int n = epoll_pwait2(epfd, events, 256, timeout < 0 ? NULL : &wait, NULL);
        for (int e = 0; e < n; e++) {
            uint32_t tag = events[e].data.u32;
            if (tag == MAX_CONNS) {
                int fd;
                while ((fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    int i = 0;
                    while (i < MAX_CONNS && conns[i].fd >= 0) i++;
                    if (i == MAX_CONNS) { close(fd); continue; }
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
                    struct conn *c = &conns[i];
                    c->fd = fd;
                    c->upgraded = 0;
                    c->id[0] = 0;
                    c->in_len = 0;
                    c->out_len = 0;
                    if (!c->in) c->in = malloc(IN_BYTES);
                    struct epoll_event cev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &cev);
                }
            } else if (tag == MAX_CONNS + 1) {
                uint64_t count;
                if (read(done_fd, &count, sizeof count) == sizeof count) committed();
            } else {
                struct conn *c = &conns[tag];
                if (c->fd < 0) continue;
                ssize_t got = recv(c->fd, c->in + c->in_len, IN_BYTES - c->in_len, 0);
                if (got <= 0) {
                    if (got < 0 && errno == EAGAIN) continue;
                    close_conn((int)tag);
                    continue;
                }
                c->in_len += (size_t)got;
                if (!c->upgraded) upgrade((int)tag);
                if (c->fd >= 0 && c->upgraded) frames((int)tag);
            }
        }
        timeout = maybe_commit();
        for (int k = 0; k < dirty_count; k++) {
            struct conn *c = &conns[dirty[k]];
            if (c->fd >= 0) flush(c);
            c->dirty = 0;
            c->out_len = 0;
        }
        dirty_count = 0;
    }
}
