//! Which events concern which agent: the `addressed` table (role 0: an
//! event addressed to the agent; role 1: a DM it sent), written in batches.
//!
//! Catch-up, the inbox and DM history look events up by agent. Two partial
//! indexes on `events` did that, and every DM then changed a page of each
//! at a different place (one per recipient, one per sender): 2.3 WAL pages
//! of 4 KiB per 64-byte DM at 25,000 DMs/s (references/BENCHMARKS.md). Here
//! entries are added many at a time, sorted, so each agent's page is
//! written once per batch, not once per event.
//!
//! Agents are split into [`BUCKETS`] by a hash of their id, and each
//! bucket is indexed up to its own mark (`addressed_state.indexed_upto`):
//! queries read an agent's entries up to its bucket's mark and scan
//! `events` after it, a tail of up to about 2 × [`BATCH`] rows plus one
//! commit's, found by seq. A commit indexes one bucket (more only when they fall far
//! behind), so the work is spread over the commits: indexing every agent at
//! once made the one commit that did it several milliseconds longer, and
//! every message in it and queued behind it waited.
//!
//! The [`Indexer`] runs on the writer thread around each commit. It reads
//! each committed event once, keeps the entries that still wait in memory
//! by bucket, and writes a bucket's entries when its turn comes. It reads
//! only committed events, so nothing it holds can be rolled back; what it
//! writes is forgotten only once the commit that wrote it succeeds.

use rusqlite::functions::FunctionFlags;
use rusqlite::{params, Connection};

use super::writer::{run_in_savepoint, Upkeep};
use super::StoreError;

/// Events a bucket may lag behind the newest before the writer indexes it.
/// With 200 agents at 25,000 DMs/s, 1,024 gave each agent about 4 entries
/// per page written, and `addressed` was half of the WAL's pages; 4,096
/// cut the WAL pages per commit by a third. The price is the tail: a
/// query scans up to about 8,192 events by seq (0.4 ms from the cache).
pub const BATCH: i64 = 4096;

/// Buckets of agents, each indexed up to its own mark. Fixed: which bucket
/// an agent is in is part of what is stored (migration 6 made 16 rows),
/// and so is [`bucket_of`].
pub const BUCKETS: usize = 16;

/// The bucket of an agent: FNV-1a (32 bits) of its id, modulo
/// [`BUCKETS`]. It must never change, or an agent's entries between its
/// old bucket's mark and its new one would be in neither part.
pub fn bucket_of(agent: &str) -> usize {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in agent.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash as usize % BUCKETS
}

/// Makes `addressed_bucket(agent)` ([`bucket_of`]) callable from SQL on
/// `connection`: the queries find an agent's mark with it.
pub fn register_bucket_function(connection: &Connection) -> rusqlite::Result<()> {
    connection.create_scalar_function(
        "addressed_bucket",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |context| {
            let agent = context
                .get_raw(0)
                .as_str()
                .map_err(|error| rusqlite::Error::UserFunctionError(Box::new(error)))?;
            Ok(bucket_of(agent) as i64)
        },
    )
}

/// Entries written by one INSERT statement while a bucket is indexed
/// (three parameters each, far below SQLite's limit of 32,766).
const ROWS_PER_INSERT: usize = 64;

/// `INSERT OR IGNORE INTO addressed` of `rows` rows. OR IGNORE: should
/// memory and the database ever disagree (a savepoint statement failing
/// after the rows were written), writing an entry twice must not fail the
/// bucket at every commit from then on.
fn insert_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?)"; rows].join(", ");
    format!("INSERT OR IGNORE INTO addressed (agent, role, seq) VALUES {values}")
}

/// Binds `entries` in order to the parameters of an [`insert_sql`]
/// statement of as many rows.
fn bind_entries(insert: &mut rusqlite::Statement<'_>, entries: &[&Entry]) -> rusqlite::Result<()> {
    for (row, entry) in entries.iter().enumerate() {
        let first = row * 3 + 1;
        insert.raw_bind_parameter(first, entry.agent.as_str())?;
        insert.raw_bind_parameter(first + 1, entry.role)?;
        insert.raw_bind_parameter(first + 2, entry.seq)?;
    }
    Ok(())
}

/// Writes `entries`, a whole number of `rows_per_statement`, with one
/// [`insert_sql`] statement of that many rows.
fn insert_rows(
    connection: &Connection,
    entries: &[&Entry],
    rows_per_statement: usize,
) -> rusqlite::Result<()> {
    debug_assert_eq!(
        entries.len() % rows_per_statement,
        0,
        "a whole number of statements"
    );
    if entries.is_empty() {
        return Ok(());
    }
    let mut insert = connection.prepare_cached(&insert_sql(rows_per_statement))?;
    for statement in entries.chunks_exact(rows_per_statement) {
        bind_entries(&mut insert, statement)?;
        insert.raw_execute()?;
    }
    Ok(())
}

/// One row of `addressed` still to be written.
struct Entry {
    agent: String,
    role: i64,
    seq: i64,
}

/// Keeps `addressed` up to date from the writer thread (see the module's
/// documentation).
pub struct Indexer {
    batch: i64,
    /// Each bucket's mark, as committed.
    marks: [i64; BUCKETS],
    /// The newest committed event: events up to it can no longer be
    /// rolled back.
    committed: i64,
    /// Events up to here have had their entries taken into `waiting`
    /// (or are indexed already).
    read_upto: i64,
    /// Entries of committed events not indexed yet, by bucket, in seq
    /// order.
    waiting: [Vec<Entry>; BUCKETS],
    /// What the current transaction indexed, applied once it commits.
    in_flight: Option<InFlight>,
}

struct InFlight {
    /// (bucket, its new mark, entries of `waiting` written).
    indexed: Vec<(usize, i64, usize)>,
    /// The newest event once this transaction commits.
    head: i64,
}

impl Indexer {
    /// Starts from what is stored: the marks, and the events after them,
    /// read on the first commit.
    pub fn load(connection: &Connection, batch: i64) -> Result<Indexer, StoreError> {
        let mut marks = [0; BUCKETS];
        let mut statement =
            connection.prepare("SELECT bucket, indexed_upto FROM addressed_state")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let bucket: i64 = row.get(0)?;
            let mark = usize::try_from(bucket)
                .ok()
                .and_then(|bucket| marks.get_mut(bucket))
                .ok_or(rusqlite::Error::IntegralValueOutOfRange(0, bucket))?;
            *mark = row.get(1)?;
        }
        let committed = super::messages::head_seq(connection)?;
        let read_upto = marks.iter().copied().min().unwrap_or(0);
        Ok(Indexer {
            batch: batch.max(1),
            marks,
            committed,
            read_upto,
            waiting: Default::default(),
            in_flight: None,
        })
    }

    /// Takes the entries of committed events not read yet into `waiting`.
    fn read_committed(&mut self, connection: &Connection) -> Result<(), StoreError> {
        if self.read_upto >= self.committed {
            return Ok(());
        }
        let mut statement = connection.prepare_cached(
            "SELECT seq, kind = 'direct_message', from_id, recipient FROM events
                WHERE seq > ?1 AND seq <= ?2",
        )?;
        let mut rows = statement.query(params![self.read_upto, self.committed])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let direct: bool = row.get(1)?;
            if let Some(recipient) = row.get::<_, Option<String>>(3)? {
                self.wait(recipient, 0, seq);
            }
            if direct {
                self.wait(row.get(2)?, 1, seq);
            }
        }
        self.read_upto = self.committed;
        Ok(())
    }

    fn wait(&mut self, agent: String, role: i64, seq: i64) {
        let bucket = bucket_of(&agent);
        // After a restart, events between the lowest mark and this
        // bucket's are already indexed for it.
        if seq > self.marks[bucket] {
            self.waiting[bucket].push(Entry { agent, role, seq });
        }
    }

    /// Writes `bucket`'s waiting entries, sorted by key, and moves its mark
    /// to the end of what has been read.
    fn index(&self, connection: &Connection, bucket: usize) -> Result<(), StoreError> {
        let mut entries: Vec<&Entry> = self.waiting[bucket].iter().collect();
        entries.sort_unstable_by(|a, b| (&a.agent, a.role, a.seq).cmp(&(&b.agent, b.role, b.seq)));
        // Many rows per statement: binding, stepping and resetting one
        // statement per entry cost about as much as the B-tree inserts. What
        // is left over goes a row at a time rather than as one statement of
        // its own size, which would keep up to 63 rarely used statements in
        // the connection's cache.
        let whole = entries.len() - entries.len() % ROWS_PER_INSERT;
        insert_rows(connection, &entries[..whole], ROWS_PER_INSERT)?;
        insert_rows(connection, &entries[whole..], 1)?;
        connection
            .prepare_cached("UPDATE addressed_state SET indexed_upto = ?2 WHERE bucket = ?1")?
            .execute(params![bucket as i64, self.read_upto])?;
        Ok(())
    }

    /// The buckets to index in a transaction whose newest event is `head`:
    /// the one furthest behind if it lags a batch, and any that lag two.
    /// Most commits index none, and find that out without allocating.
    fn due(&self, head: i64) -> Vec<usize> {
        let behind = |bucket: usize| head - self.marks[bucket];
        let furthest = (0..BUCKETS).max_by_key(|&bucket| (behind(bucket), usize::MAX - bucket));
        match furthest {
            Some(first) if behind(first) >= self.batch => std::iter::once(first)
                .chain(
                    (0..BUCKETS)
                        .filter(|&bucket| bucket != first && behind(bucket) >= 2 * self.batch),
                )
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Reads what has been committed since the last read and indexes the
    /// buckets `due`.
    fn index_due(
        &mut self,
        connection: &Connection,
        due: &[usize],
    ) -> Result<Vec<(usize, i64, usize)>, StoreError> {
        self.read_committed(connection)?;
        let mut indexed = Vec::with_capacity(due.len());
        for &bucket in due {
            self.index(connection, bucket)?;
            indexed.push((bucket, self.read_upto, self.waiting[bucket].len()));
        }
        Ok(indexed)
    }
}

impl Upkeep for Indexer {
    fn before_commit(&mut self, connection: &Connection) -> Result<(), StoreError> {
        self.in_flight = None;
        let head = super::messages::head_seq(connection)?;
        let due = self.due(head);
        let indexed = if due.is_empty() {
            Vec::new()
        } else {
            // Rows written before a failure must not stay for the commit:
            // the bucket's mark would not move, and the next attempt would
            // write them again.
            run_in_savepoint(connection, |connection| self.index_due(connection, &due))?
        };
        self.in_flight = Some(InFlight { indexed, head });
        Ok(())
    }

    fn after_commit(&mut self, committed: bool) {
        let Some(in_flight) = self.in_flight.take() else {
            return;
        };
        if !committed {
            return;
        }
        for (bucket, mark, written) in in_flight.indexed {
            self.waiting[bucket].drain(..written);
            self.marks[bucket] = mark;
        }
        self.committed = in_flight.head;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::event::EventKind;
    use crate::store::messages::{self, NewEvent};

    const AGENTS: [&str; 3] = ["a", "b", "c"];

    /// (kind, from, to) of event i: DMs between every pair and to oneself,
    /// and mentions.
    fn event(i: usize) -> (EventKind, &'static str, &'static str) {
        let from = AGENTS[i % 3];
        let to = AGENTS[(i / 3) % 3];
        let kind = if i % 7 == 6 {
            EventKind::Mention
        } else {
            EventKind::DirectMessage
        };
        (kind, from, to)
    }

    fn insert(connection: &Connection, i: usize) {
        let (kind, from, to) = event(i);
        messages::insert(
            connection,
            NewEvent {
                kind,
                from_id: from.into(),
                from_name: from.into(),
                group_id: None,
                recipient: Some(to.into()),
                content: format!("{i}"),
                client_id: None,
                ref_id: None,
                created_at: "2026-11-22T00:00:00.000Z".into(),
            },
        )
        .unwrap();
    }

    fn seqs(events: &[std::sync::Arc<crate::store::event::Event>]) -> Vec<i64> {
        events.iter().map(|event| event.seq).collect()
    }

    /// Every query gives the same answer wherever the indexed part ends:
    /// all indexed, none, or anywhere in between.
    #[test]
    fn queries_read_the_indexed_part_and_the_tail_as_one() {
        const N: usize = 40;
        let buckets: Vec<usize> = AGENTS.iter().map(|agent| bucket_of(agent)).collect();
        assert!(
            buckets[0] != buckets[1] && buckets[1] != buckets[2] && buckets[0] != buckets[2],
            "each agent has a mark of its own"
        );
        for indexed in 0..=N {
            // Agent k's bucket is indexed before event (indexed + 13k) mod
            // (N + 1): every mark everywhere, and the three marks apart.
            let marks: Vec<usize> = (0..AGENTS.len())
                .map(|k| (indexed + 13 * k) % (N + 1))
                .collect();
            let connection = crate::store::schema::migrated_in_memory();
            let mut indexer = Indexer::load(&connection, BATCH).unwrap();
            let mut index_marked = |i: usize| {
                for (k, mark) in marks.iter().enumerate() {
                    if *mark == i {
                        indexer.index_now(&connection, buckets[k]);
                    }
                }
            };
            for i in 0..N {
                index_marked(i);
                insert(&connection, i);
            }
            index_marked(N);
            for agent in AGENTS {
                // seq of event i is i + 1.
                let matching = |keep: &dyn Fn(usize) -> bool| -> Vec<i64> {
                    (0..N).filter(|&i| keep(i)).map(|i| i as i64 + 1).collect()
                };
                let to_agent = matching(&|i| event(i).2 == agent);
                let after = 5;
                assert_eq!(
                    seqs(&messages::backlog(&connection, agent, after, 100).unwrap()),
                    to_agent
                        .iter()
                        .copied()
                        .filter(|&s| s > after)
                        .collect::<Vec<_>>(),
                    "backlog of {agent}, marks {marks:?}"
                );
                assert_eq!(
                    seqs(&messages::inbox(&connection, agent, 0, 100).unwrap()),
                    to_agent,
                    "inbox of {agent}, marks {marks:?}"
                );
                let dms = matching(&|i| {
                    let (kind, from, to) = event(i);
                    kind == EventKind::DirectMessage && (from == agent || to == agent)
                });
                let history = messages::dm_history(&connection, agent, None, None, None, 100);
                assert_eq!(
                    seqs(&history.unwrap()),
                    dms,
                    "DMs of {agent}, marks {marks:?}"
                );
                // Pages, newest first from the end and oldest first from 0.
                let older = messages::dm_history(&connection, agent, None, Some(30), None, 4);
                let expected: Vec<i64> = dms.iter().copied().filter(|&s| s < 30).collect();
                let expected = expected[expected.len().saturating_sub(4)..].to_vec();
                assert_eq!(seqs(&older.unwrap()), expected, "older page of {agent}");
                let newer = messages::dm_history(&connection, agent, None, None, Some(3), 4);
                let expected: Vec<i64> = dms.iter().copied().filter(|&s| s > 3).take(4).collect();
                assert_eq!(seqs(&newer.unwrap()), expected, "newer page of {agent}");
                for other in AGENTS {
                    let between = matching(&|i| {
                        let (kind, from, to) = event(i);
                        kind == EventKind::DirectMessage
                            && ((from == agent && to == other) || (from == other && to == agent))
                    });
                    let history =
                        messages::dm_history(&connection, agent, Some(other), None, None, 100);
                    assert_eq!(seqs(&history.unwrap()), between, "{agent} with {other}");
                }
            }
        }
    }

    fn marks(connection: &Connection) -> Vec<i64> {
        connection
            .prepare("SELECT indexed_upto FROM addressed_state ORDER BY bucket")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn entries(connection: &Connection) -> Vec<(String, i64, i64)> {
        connection
            .prepare("SELECT agent, role, seq FROM addressed ORDER BY agent, role, seq")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// What `addressed` must hold once events 0..n are all indexed.
    fn all_entries(n: usize) -> Vec<(String, i64, i64)> {
        let mut expected = Vec::new();
        for i in 0..n {
            let (kind, from, to) = event(i);
            expected.push((to.to_string(), 0, i as i64 + 1));
            if kind == EventKind::DirectMessage {
                expected.push((from.to_string(), 1, i as i64 + 1));
            }
        }
        expected.sort();
        expected
    }

    /// What the writer does for a batch that commits.
    fn commit(indexer: &mut Indexer, connection: &Connection) {
        indexer.before_commit(connection).unwrap();
        indexer.after_commit(true);
    }

    impl Indexer {
        /// Indexes `bucket` up to the newest event, as if every event so
        /// far had been seen committed.
        fn index_now(&mut self, connection: &Connection, bucket: usize) {
            self.committed = messages::head_seq(connection).unwrap();
            self.read_committed(connection).unwrap();
            self.index(connection, bucket).unwrap();
            self.waiting[bucket].clear();
            self.marks[bucket] = self.read_upto;
        }
    }

    /// Buckets of several statements' worth of entries, and a remainder,
    /// are written whole and in the right columns.
    #[test]
    fn a_bucket_larger_than_one_insert_is_written_whole() {
        let n = 5 * ROWS_PER_INSERT;
        let buckets: std::collections::HashSet<usize> = AGENTS.map(bucket_of).into();
        assert_eq!(
            buckets.len(),
            AGENTS.len(),
            "each agent a bucket of its own"
        );
        let connection = crate::store::schema::migrated_in_memory();
        let mut indexer = Indexer::load(&connection, BATCH).unwrap();
        for i in 0..n {
            insert(&connection, i);
        }
        for agent in AGENTS {
            indexer.index_now(&connection, bucket_of(agent));
        }
        let written = entries(&connection);
        for agent in AGENTS {
            let of_agent = written.iter().filter(|(a, _, _)| a == agent).count();
            assert!(
                of_agent > ROWS_PER_INSERT && of_agent % ROWS_PER_INSERT != 0,
                "{agent} has {of_agent} entries: whole statements and a remainder"
            );
        }
        assert_eq!(written, all_entries(n));
    }

    #[test]
    fn one_bucket_is_indexed_once_it_lags_a_batch_and_all_that_lag_two() {
        let connection = crate::store::schema::migrated_in_memory();
        let mut indexer = Indexer::load(&connection, 10).unwrap();
        for i in 0..9 {
            insert(&connection, i);
        }
        commit(&mut indexer, &connection);
        assert_eq!(marks(&connection), vec![0; BUCKETS]);
        insert(&connection, 9);
        commit(&mut indexer, &connection);
        // 10 events: the first of the sixteen buckets 10 behind, up to
        // what was committed before this batch (9).
        let mut expected = vec![0; BUCKETS];
        expected[0] = 9;
        assert_eq!(marks(&connection), expected);
        for i in 10..20 {
            insert(&connection, i);
        }
        commit(&mut indexer, &connection);
        // The other fifteen are now 20 behind: all of them, and not the
        // first, only 11 behind.
        expected = vec![10; BUCKETS];
        expected[0] = 9;
        assert_eq!(marks(&connection), expected);
        // None of a, b and c is in bucket 0.
        assert_eq!(entries(&connection), all_entries(10));
    }

    /// A batch that does not commit takes its events with it, and the next
    /// batch's events take their seqs: the indexer must index only what
    /// was committed, and write again what the lost batch wrote.
    #[test]
    fn a_lost_batch_is_neither_indexed_nor_forgotten() {
        let connection = crate::store::schema::migrated_in_memory();
        let mut indexer = Indexer::load(&connection, 1).unwrap();
        insert(&connection, 0);
        commit(&mut indexer, &connection);
        commit(&mut indexer, &connection);
        // Lost: an (a, b) DM as seq 2, and bucket 12's entries for seq 1.
        connection.execute_batch("BEGIN").unwrap();
        insert(&connection, 3);
        indexer.before_commit(&connection).unwrap();
        connection.execute_batch("ROLLBACK").unwrap();
        indexer.after_commit(false);
        // Seq 2 again: an (a, a) DM.
        insert(&connection, 0);
        for _ in 0..2 * BUCKETS {
            commit(&mut indexer, &connection);
        }
        assert_eq!(marks(&connection), vec![2; BUCKETS]);
        let expected: Vec<(String, i64, i64)> = [(0, 1), (0, 2), (1, 1), (1, 2)]
            .iter()
            .map(|&(role, seq)| ("a".to_string(), role, seq))
            .collect();
        assert_eq!(entries(&connection), expected);
    }

    /// What waits is kept in memory; a writer that starts again finds it
    /// in `events` after each bucket's mark, once each.
    #[test]
    fn a_restarted_writer_finds_what_was_not_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.sqlite3");
        let open = || {
            let mut connection = Connection::open(&path).unwrap();
            crate::store::schema::migrations()
                .to_latest(&mut connection)
                .unwrap();
            connection
        };
        let connection = open();
        let mut indexer = Indexer::load(&connection, BATCH).unwrap();
        for i in 0..20 {
            insert(&connection, i);
            if i == 11 {
                indexer.index_now(&connection, bucket_of("b"));
            }
        }
        drop(connection);
        let connection = open();
        let mut indexer = Indexer::load(&connection, 1).unwrap();
        for _ in 0..2 * BUCKETS {
            commit(&mut indexer, &connection);
        }
        assert_eq!(marks(&connection), vec![20; BUCKETS]);
        assert_eq!(entries(&connection), all_entries(20));
    }

    /// The buckets are stored; the hash must not drift.
    #[test]
    fn bucket_of_is_fnv_1a() {
        assert_eq!(bucket_of(""), 0x811c_9dc5 % BUCKETS as u32 as usize);
        assert_eq!([bucket_of("a"), bucket_of("b"), bucket_of("c")], [12, 5, 2]);
        assert_eq!(
            bucket_of("clawdbot-macbook"),
            0xe2bf_1128 % BUCKETS as u32 as usize
        );
    }

    /// The step of `sql`'s plan, with 5 parameters bound.
    fn plan(connection: &Connection, sql: &str) -> Vec<String> {
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let count = statement.parameter_count();
        let values: [&dyn rusqlite::ToSql; 5] = [&"a", &"b", &1, &100, &10];
        statement
            .query_map(&values[..count], |row| row.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Every query reaches its rows through keys: no part of it reads a
    /// whole table, and only the backlog sorts
    /// (its group messages, as before `addressed`); the other parts come
    /// in seq order and are merged.
    #[test]
    fn every_query_reads_through_keys() {
        let connection = crate::store::schema::migrated_in_memory();
        let mut queries = vec![
            (messages::backlog_sql(), true),
            (messages::inbox_sql(), false),
        ];
        for with_other in [false, true] {
            let base = messages::dm_history_sql(with_other);
            queries.push((messages::older_page_sql(&base), false));
            queries.push((messages::newer_page_sql(&base), false));
        }
        for (sql, may_sort) in queries {
            let plan = plan(&connection, &sql);
            for step in &plan {
                assert!(!step.starts_with("SCAN"), "{step} in {plan:?}");
                assert!(
                    may_sort || !step.contains("TEMP B-TREE"),
                    "{step} in {plan:?}"
                );
            }
        }
    }
}
