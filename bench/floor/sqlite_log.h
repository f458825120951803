/*
 * The narrowest SQLite store of DMs, shared by sqlite_floor.c (the store
 * alone) and dm_floor.c's `sqlite` mode (the store behind sockets): one
 * row of about 100 bytes per DM in a table with no index but its rowid
 * (optionally a 16-byte ordered client id with a unique index), WAL mode,
 * synchronous=FULL, the WAL copied back by a thread of its own with
 * PASSIVE checkpoints every 100 ms, and the writer copying the last few
 * frames itself once the log is long, as server/src/store/checkpointer.rs
 * does. Header-only so that each floor stays one `cc` command.
 */
#ifndef SQLITE_LOG_H
#define SQLITE_LOG_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SQLITE_LOG_CHECKPOINT_EVERY_US 100000
/* As the hub: past this many WAL pages, with little left to copy, the
 * writer copies the rest itself so that its next commit restarts the log. */
#define SQLITE_LOG_RESTART_AFTER_PAGES 4096
#define SQLITE_LOG_LEFT_FOR_THE_WRITER 512

struct sqlite_log {
    char path[4096];
    int with_index;
    sqlite3 *db;
    sqlite3_stmt *begin, *insert, *commit;
    pthread_t checkpointer;
    atomic_int done, restart_wanted;
};

static inline void sqlite_log_must(int rc, sqlite3 *db, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "%s: %s\n", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        exit(1);
    }
}

static inline void sqlite_log_exec(sqlite3 *db, const char *sql) {
    char *error = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &error) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, error);
        exit(1);
    }
}

static inline sqlite3 *sqlite_log_connect(const char *path) {
    sqlite3 *db;
    sqlite_log_must(sqlite3_open(path, &db), NULL, "open");
    sqlite_log_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                        "PRAGMA busy_timeout=5000; PRAGMA wal_autocheckpoint=0;");
    return db;
}

/* A checkpoint that meets the other one running returns SQLITE_BUSY
 * having copied nothing; as the hub, that is not an error. */
static inline void sqlite_log_checkpoint(sqlite3 *db, int *pages, int *copied) {
    int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, pages, copied);
    if (rc != SQLITE_BUSY) sqlite_log_must(rc, db, "checkpoint");
}

static inline void *sqlite_log_checkpointer(void *arg) {
    struct sqlite_log *log = arg;
    sqlite3 *db = sqlite_log_connect(log->path);
    while (!atomic_load(&log->done)) {
        usleep(SQLITE_LOG_CHECKPOINT_EVERY_US);
        int pages = 0, copied = 0;
        sqlite_log_checkpoint(db, &pages, &copied);
        if (pages > SQLITE_LOG_RESTART_AFTER_PAGES &&
            pages - copied <= SQLITE_LOG_LEFT_FOR_THE_WRITER)
            atomic_store(&log->restart_wanted, 1);
    }
    sqlite3_close(db);
    return NULL;
}

static inline void sqlite_log_step(struct sqlite_log *log, sqlite3_stmt *statement, const char *what) {
    sqlite_log_must(sqlite3_step(statement), log->db, what);
    sqlite3_reset(statement);
}

/* Creates `directory`/floor.sqlite3, refusing one that exists, and starts
 * its checkpointer. */
static inline void sqlite_log_open(struct sqlite_log *log, const char *directory, int with_index) {
    memset(log, 0, sizeof *log);
    snprintf(log->path, sizeof log->path, "%s/floor.sqlite3", directory);
    if (access(log->path, F_OK) == 0) {
        fprintf(stderr, "%s exists; give an empty directory\n", log->path);
        exit(2);
    }
    log->with_index = with_index;
    log->db = sqlite_log_connect(log->path);
    sqlite_log_exec(log->db,
                    with_index ? "CREATE TABLE log(seq INTEGER PRIMARY KEY,"
                                 " client_id BLOB NOT NULL, record BLOB NOT NULL);"
                                 "CREATE UNIQUE INDEX log_client_id ON log(client_id);"
                               : "CREATE TABLE log(seq INTEGER PRIMARY KEY, record BLOB NOT NULL);");
    sqlite_log_must(sqlite3_prepare_v2(log->db,
                                       with_index
                                           ? "INSERT INTO log(client_id, record) VALUES (?1, ?2)"
                                           : "INSERT INTO log(record) VALUES (?2)",
                                       -1, &log->insert, NULL),
                    log->db, "prepare");
    sqlite_log_must(sqlite3_prepare_v2(log->db, "BEGIN", -1, &log->begin, NULL), log->db,
                    "prepare");
    sqlite_log_must(sqlite3_prepare_v2(log->db, "COMMIT", -1, &log->commit, NULL), log->db,
                    "prepare");
    if (pthread_create(&log->checkpointer, NULL, sqlite_log_checkpointer, log) != 0) {
        perror("pthread_create");
        exit(1);
    }
}

static inline void sqlite_log_begin(struct sqlite_log *log) { sqlite_log_step(log, log->begin, "begin"); }

/* One DM's row; `number` makes its client id (big-endian, so later ids
 * sort after earlier ones, as UUIDv7 ids do). */
static inline void sqlite_log_insert(struct sqlite_log *log, long number, const void *record,
                              size_t len) {
    unsigned char client_id[16] = {0};
    for (int b = 0; b < 8; b++) client_id[15 - b] = (unsigned char)(number >> (8 * b));
    sqlite3_bind_blob(log->insert, 1, client_id, sizeof client_id, SQLITE_STATIC);
    sqlite3_bind_blob(log->insert, 2, record, (int)len, SQLITE_STATIC);
    sqlite_log_step(log, log->insert, "insert");
}

/* Commits; between two transactions, copies the WAL's last frames when the
 * checkpointer asked. */
static inline void sqlite_log_commit(struct sqlite_log *log) {
    sqlite_log_step(log, log->commit, "commit");
    if (atomic_exchange(&log->restart_wanted, 0)) {
        int pages, copied;
        sqlite_log_checkpoint(log->db, &pages, &copied);
    }
}

static inline void sqlite_log_close(struct sqlite_log *log) {
    atomic_store(&log->done, 1);
    pthread_join(log->checkpointer, NULL);
    sqlite3_finalize(log->insert);
    sqlite3_finalize(log->begin);
    sqlite3_finalize(log->commit);
    sqlite3_close(log->db);
}

#endif
