//! Versioned schema migrations. Never edit a released migration; append one.

use rusqlite_migration::{Migrations, M};

pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(
            r#"
        CREATE TABLE agents (
            id              TEXT PRIMARY KEY,
            name            TEXT NOT NULL,
            role            TEXT NOT NULL DEFAULT '',
            device          TEXT NOT NULL DEFAULT '',
            capabilities    TEXT NOT NULL DEFAULT '[]', -- JSON array of tags
            extra           TEXT NOT NULL DEFAULT '{}', -- other register fields
            cursor_seq      INTEGER NOT NULL DEFAULT 0, -- delivered/acked up to
            inbox_read_seq  INTEGER NOT NULL DEFAULT 0, -- inbox read up to
            joined_at       TEXT NOT NULL,
            last_seen       TEXT NOT NULL
        ) STRICT;

        CREATE TABLE groups (
            id          TEXT PRIMARY KEY,
            name        TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            owner_id    TEXT,
            created_at  TEXT NOT NULL
        ) STRICT;
        INSERT INTO groups (id, name, description, owner_id, created_at)
        VALUES ('clawdbots', 'clawdbots', 'The default group', NULL,
                strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

        -- Persistent membership; a member receives group messages after
        -- joined_seq only.
        CREATE TABLE memberships (
            agent_id    TEXT NOT NULL,
            group_id    TEXT NOT NULL,
            joined_seq  INTEGER NOT NULL,
            joined_at   TEXT NOT NULL,
            PRIMARY KEY (agent_id, group_id)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX memberships_by_group ON memberships (group_id);

        -- The one event log. A group message is one row whatever the group's
        -- size; DMs, mentions and task assignments are addressed rows.
        CREATE TABLE events (
            seq         INTEGER PRIMARY KEY AUTOINCREMENT,
            id          TEXT NOT NULL UNIQUE,
            kind        TEXT NOT NULL,
            from_id     TEXT NOT NULL,
            from_name   TEXT NOT NULL,
            group_id    TEXT,
            recipient   TEXT,
            content     TEXT NOT NULL,
            client_id   TEXT,
            ref_id      TEXT,
            created_at  TEXT NOT NULL
        ) STRICT;
        CREATE INDEX events_by_group ON events (group_id, seq)
            WHERE group_id IS NOT NULL AND kind = 'message';
        CREATE INDEX events_by_recipient ON events (recipient, seq)
            WHERE recipient IS NOT NULL;
        CREATE INDEX events_dm_by_sender ON events (from_id, seq)
            WHERE kind = 'direct_message';
        CREATE UNIQUE INDEX events_client_id ON events (from_id, client_id)
            WHERE client_id IS NOT NULL;

        -- Only hashes are stored; a token is shown once, when it is made.
        CREATE TABLE tokens (
            id          TEXT PRIMARY KEY,
            hash        TEXT NOT NULL UNIQUE,
            kind        TEXT NOT NULL,      -- admin | join | agent
            agent_id    TEXT,               -- for kind = agent
            label       TEXT NOT NULL DEFAULT '',
            created_at  TEXT NOT NULL
        ) STRICT;
        CREATE INDEX tokens_by_agent ON tokens (agent_id) WHERE agent_id IS NOT NULL;

        CREATE TABLE tasks (
            id          TEXT PRIMARY KEY,
            title       TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            assigner_id TEXT,
            assignee_id TEXT,
            group_id    TEXT,
            status      TEXT NOT NULL,
            priority    TEXT NOT NULL DEFAULT 'normal',
            body        TEXT NOT NULL DEFAULT '{}', -- the creation body as sent
            created_at  TEXT NOT NULL,
            updated_at  TEXT NOT NULL
        ) STRICT;
        CREATE INDEX tasks_by_assignee ON tasks (assignee_id);
        "#,
        ),
        // Once claimed, an agent stays claimed even if its last token is
        // revoked: only the admin minting a new agent token lets anyone
        // register it again.
        M::up(
            r#"
        ALTER TABLE agents ADD COLUMN claimed INTEGER NOT NULL DEFAULT 0;
        UPDATE agents SET claimed = 1
            WHERE id IN (SELECT agent_id FROM tokens WHERE kind = 'agent');
        "#,
        ),
        // The task lifecycle: capability routing, attempts, deadlines,
        // progress, results, idempotency, and every transition's history.
        M::up(
            r#"
        ALTER TABLE tasks ADD COLUMN capability TEXT;
        ALTER TABLE tasks ADD COLUMN payload TEXT;            -- JSON
        ALTER TABLE tasks ADD COLUMN result TEXT;             -- JSON
        ALTER TABLE tasks ADD COLUMN error TEXT;
        ALTER TABLE tasks ADD COLUMN progress_percent INTEGER;
        ALTER TABLE tasks ADD COLUMN progress_note TEXT;
        ALTER TABLE tasks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE tasks ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 3;
        ALTER TABLE tasks ADD COLUMN deadline TEXT;           -- ISO 8601 UTC
        ALTER TABLE tasks ADD COLUMN idempotency_key TEXT;
        ALTER TABLE tasks ADD COLUMN assigned_at TEXT;
        CREATE UNIQUE INDEX tasks_idempotency
            ON tasks (COALESCE(assigner_id, ''), idempotency_key)
            WHERE idempotency_key IS NOT NULL;
        CREATE INDEX tasks_by_status ON tasks (status);
        CREATE INDEX tasks_by_assigner ON tasks (assigner_id);

        CREATE TABLE task_history (
            id       INTEGER PRIMARY KEY,
            task_id  TEXT NOT NULL,
            status   TEXT NOT NULL,
            actor    TEXT NOT NULL,
            at       TEXT NOT NULL,
            percent  INTEGER,
            note     TEXT
        ) STRICT;
        CREATE INDEX task_history_by_task ON task_history (task_id, id);
        "#,
        ),
        // The task supervisor looks every second for open capability tasks
        // and open tasks past their deadline; without these it read every
        // open task (named-agent ones too) each time. The status lists are
        // store::tasks::OPEN_STATUSES: a partial index serves only queries
        // that repeat its WHERE terms.
        M::up(
            r#"
        CREATE INDEX tasks_open_with_capability ON tasks (capability)
            WHERE capability IS NOT NULL
              AND status IN ('pending', 'assigned', 'accepted', 'in_progress');
        CREATE INDEX tasks_open_by_deadline ON tasks (deadline)
            WHERE deadline IS NOT NULL
              AND status IN ('pending', 'assigned', 'accepted', 'in_progress');
        "#,
        ),
        // Which events concern which agent (role 0: addressed to it; role 1:
        // a DM it sent), kept in batches by store::addressed instead of two
        // partial indexes on `events` that every DM updated at scattered
        // places. Events after `indexed_upto` are found by scanning the
        // short tail of `events` instead.
        M::up(
            r#"
        CREATE TABLE addressed (
            agent   TEXT NOT NULL,
            role    INTEGER NOT NULL,
            seq     INTEGER NOT NULL,
            PRIMARY KEY (agent, role, seq)
        ) STRICT, WITHOUT ROWID;
        CREATE TABLE index_state (
            id            INTEGER PRIMARY KEY CHECK (id = 0),
            indexed_upto  INTEGER NOT NULL
        ) STRICT;
        INSERT INTO addressed (agent, role, seq)
            SELECT recipient, 0, seq FROM events WHERE recipient IS NOT NULL
            UNION ALL
            SELECT from_id, 1, seq FROM events WHERE kind = 'direct_message'
            ORDER BY 1, 2, 3;
        INSERT INTO index_state (id, indexed_upto)
            VALUES (0, (SELECT coalesce(max(seq), 0) FROM events));
        DROP INDEX events_by_recipient;
        DROP INDEX events_dm_by_sender;
        "#,
        ),
        // Each of the 16 buckets of agents (store::addressed::bucket_of) is
        // indexed up to its own mark; all start where the one mark was.
        M::up(
            r#"
        CREATE TABLE addressed_state (
            bucket        INTEGER PRIMARY KEY,
            indexed_upto  INTEGER NOT NULL
        ) STRICT;
        WITH RECURSIVE buckets(bucket) AS (
            SELECT 0 UNION ALL SELECT bucket + 1 FROM buckets WHERE bucket < 15
        )
        INSERT INTO addressed_state (bucket, indexed_upto)
            SELECT bucket, (SELECT indexed_upto FROM index_state) FROM buckets;
        DROP TABLE index_state;
        "#,
        ),
        // Client ids first: the connectors' ids are UUIDv7, ordered by
        // time whoever sends them, so new entries land at the end of the
        // index instead of at each sender's own place in it (one page per
        // sender in a commit).
        M::up(
            r#"
        DROP INDEX events_client_id;
        CREATE UNIQUE INDEX events_client_id ON events (client_id, from_id)
            WHERE client_id IS NOT NULL;
        "#,
        ),
        // `events` without two things every commit paid for and nothing
        // used: a unique index of `id` (the hub makes each id, a UUIDv7,
        // and looks events up by `seq`, never by `id`), and AUTOINCREMENT,
        // whose counter row in `sqlite_sequence` was one more page written
        // at every commit. Without it a new `seq` is one past the largest
        // stored, the same as long as events are never deleted (they are
        // not). Copies the table once.
        M::up(
            r#"
        CREATE TABLE events_rebuilt (
            seq         INTEGER PRIMARY KEY,
            id          TEXT NOT NULL,
            kind        TEXT NOT NULL,
            from_id     TEXT NOT NULL,
            from_name   TEXT NOT NULL,
            group_id    TEXT,
            recipient   TEXT,
            content     TEXT NOT NULL,
            client_id   TEXT,
            ref_id      TEXT,
            created_at  TEXT NOT NULL
        ) STRICT;
        INSERT INTO events_rebuilt
            SELECT seq, id, kind, from_id, from_name, group_id, recipient,
                   content, client_id, ref_id, created_at
            FROM events ORDER BY seq;
        DROP TABLE events;
        ALTER TABLE events_rebuilt RENAME TO events;
        CREATE INDEX events_by_group ON events (group_id, seq)
            WHERE group_id IS NOT NULL AND kind = 'message';
        CREATE UNIQUE INDEX events_client_id ON events (client_id, from_id)
            WHERE client_id IS NOT NULL;
        "#,
        ),
    ])
}

/// A fresh in-memory database with every migration applied, for tests.
#[cfg(test)]
pub fn migrated_in_memory() -> rusqlite::Connection {
    let mut connection = rusqlite::Connection::open_in_memory().unwrap();
    migrations().to_latest(&mut connection).unwrap();
    super::addressed::register_bucket_function(&connection).unwrap();
    connection
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        super::migrations().validate().unwrap();
    }

    /// Every stored event keeps its seq and columns when `events` is
    /// rebuilt without the index of `id` and without AUTOINCREMENT; the
    /// next seq follows the largest; the indexes the queries use are back.
    #[test]
    fn events_keep_their_seqs_when_the_table_is_rebuilt_without_the_id_index() {
        let mut connection = rusqlite::Connection::open_in_memory().unwrap();
        super::migrations().to_version(&mut connection, 7).unwrap();
        connection
            .execute_batch(
                "INSERT INTO events (id, kind, from_id, from_name, group_id, recipient, content, client_id, ref_id, created_at) VALUES
                    ('e1', 'message', 'a', 'A', 'g', NULL, 'to the group', 'c-1', NULL, 't1'),
                    ('e2', 'direct_message', 'a', 'A', NULL, 'b', 'to b', NULL, NULL, 't2'),
                    ('e3', 'mention', 'b', 'B', 'g', 'a', '@a', 'c-1', 'e1', 't3');",
            )
            .unwrap();
        let rows = |connection: &rusqlite::Connection| -> Vec<String> {
            connection
                .prepare("SELECT json_array(seq, id, kind, from_id, from_name, group_id, recipient, content, client_id, ref_id, created_at) FROM events ORDER BY seq")
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let before = rows(&connection);
        super::migrations().to_latest(&mut connection).unwrap();
        assert_eq!(rows(&connection), before);

        let indexes: Vec<(String, String)> = connection
            .prepare("SELECT name, origin FROM pragma_index_list('events') ORDER BY name")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            indexes,
            [
                ("events_by_group".to_owned(), "c".to_owned()),
                ("events_client_id".to_owned(), "c".to_owned())
            ]
        );
        connection
            .execute(
                "INSERT INTO events (id, kind, from_id, from_name, recipient, content, created_at)
                 VALUES ('e4', 'direct_message', 'b', 'B', 'a', 'to a', 't4')",
                [],
            )
            .unwrap();
        assert_eq!(connection.last_insert_rowid(), 4, "one past the largest");
        let counters: i64 = connection
            .query_row(
                "SELECT count(*) FROM sqlite_sequence WHERE name = 'events'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(
            counters, 0,
            "no AUTOINCREMENT counter to write at each commit"
        );
        let plan: Vec<String> = connection
            .prepare(
                "EXPLAIN QUERY PLAN
                 SELECT seq FROM events WHERE group_id = 'g' AND kind = 'message' ORDER BY seq",
            )
            .unwrap()
            .query_map([], |row| row.get(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let plan = plan.join("; ");
        assert!(plan.contains("events_by_group"), "{plan}");
    }

    /// Client ids stay unique per sender across the change of the index's
    /// column order, and one sender's id does not block another's.
    #[test]
    fn client_ids_stay_unique_per_sender_after_the_index_is_reordered() {
        let mut connection = rusqlite::Connection::open_in_memory().unwrap();
        super::migrations().to_version(&mut connection, 6).unwrap();
        let insert = |connection: &rusqlite::Connection, id: &str, from: &str, client: &str| {
            connection.execute(
                "INSERT INTO events (id, kind, from_id, from_name, recipient, content, client_id, created_at)
                 VALUES (?1, 'direct_message', ?2, ?2, 'z', 'hi', ?3, 't')",
                rusqlite::params![id, from, client],
            )
        };
        insert(&connection, "1", "a", "c-1").unwrap();
        super::migrations().to_latest(&mut connection).unwrap();
        let columns: Vec<String> = connection
            .prepare("SELECT name FROM pragma_index_info('events_client_id') ORDER BY seqno")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(columns, ["client_id", "from_id"]);
        let refused = insert(&connection, "2", "a", "c-1").unwrap_err();
        assert_eq!(
            refused.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation)
        );
        insert(&connection, "3", "b", "c-1").unwrap();
        insert(&connection, "4", "a", "c-2").unwrap();
        let found: String = connection
            .query_row(
                "SELECT id FROM events WHERE from_id = 'b' AND client_id = 'c-1'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(found, "3");
    }

    /// A database from before `addressed` gets every existing event's
    /// entries, and then reads the same.
    #[test]
    fn upgrading_indexes_the_events_already_stored() {
        let mut connection = rusqlite::Connection::open_in_memory().unwrap();
        super::migrations().to_version(&mut connection, 4).unwrap();
        connection
            .execute_batch(
                "INSERT INTO events (id, kind, from_id, from_name, group_id, recipient, content, created_at) VALUES
                   ('1', 'direct_message', 'a', 'A', NULL, 'b', 'hi', 't'),
                   ('2', 'message', 'a', 'A', 'g', NULL, 'all', 't'),
                   ('3', 'mention', 'a', 'A', 'g', 'c', 'all', 't'),
                   ('4', 'direct_message', 'b', 'B', NULL, 'b', 'self', 't');",
            )
            .unwrap();
        super::migrations().to_latest(&mut connection).unwrap();
        let entries: Vec<(String, i64, i64)> = connection
            .prepare("SELECT agent, role, seq FROM addressed ORDER BY agent, role, seq")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let expected = [
            ("a", 1, 1),
            ("b", 0, 1),
            ("b", 0, 4),
            ("b", 1, 4),
            ("c", 0, 3),
        ];
        let expected: Vec<(String, i64, i64)> = expected
            .iter()
            .map(|(agent, role, seq)| (agent.to_string(), *role, *seq))
            .collect();
        assert_eq!(entries, expected);
        let marks: Vec<i64> = connection
            .prepare("SELECT indexed_upto FROM addressed_state ORDER BY bucket")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(marks, [4; 16]);
        crate::store::addressed::register_bucket_function(&connection).unwrap();
        let history =
            crate::store::messages::dm_history(&connection, "b", None, None, None, 10).unwrap();
        let seqs: Vec<i64> = history.iter().map(|event| event.seq).collect();
        assert_eq!(seqs, [1, 4]);
    }
}
