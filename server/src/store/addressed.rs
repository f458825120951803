//! Which events concern which agent: the `addressed` table (role 0: an
//! event addressed to the agent; role 1: a DM it sent), written in batches.
//!
//! Catch-up, the inbox and DM history look events up by agent. Two partial
//! indexes on `events` did that, and every DM then changed a page of each
//! at a different place (one per recipient, one per sender): 2.3 WAL pages
//! of 4 KiB per 64-byte DM at 25,000 DMs/s (references/BENCHMARKS.md). Here
//! the writer adds the entries of many events at once, sorted, so each
//! agent's page is written once per batch; the queries read the entries up
//! to `index_state.indexed_upto` and scan `events` after it, a tail of at
//! most about [`BATCH`] rows found by seq.

use rusqlite::{params, Connection};

use super::StoreError;

/// Events left unindexed before the writer indexes them.
pub const BATCH: i64 = 1024;

/// Indexes the events after `indexed_upto` if there are at least `batch`
/// of them. Runs in the writer's transaction, before its commit.
pub fn maintain(connection: &Connection, batch: i64) -> Result<(), StoreError> {
    let upto: i64 = connection
        .prepare_cached("SELECT indexed_upto FROM index_state")?
        .query_row([], |row| row.get(0))?;
    let head: i64 = connection
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM events")?
        .query_row([], |row| row.get(0))?;
    if head - upto < batch.max(1) {
        return Ok(());
    }
    connection
        .prepare_cached(
            "INSERT INTO addressed (agent, role, seq)
                SELECT recipient, 0, seq FROM events
                    WHERE seq > ?1 AND seq <= ?2 AND recipient IS NOT NULL
                UNION ALL
                SELECT from_id, 1, seq FROM events
                    WHERE seq > ?1 AND seq <= ?2 AND kind = 'direct_message'
                ORDER BY 1, 2, 3",
        )?
        .execute(params![upto, head])?;
    connection
        .prepare_cached("UPDATE index_state SET indexed_upto = ?1")?
        .execute([head])?;
    Ok(())
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
        for indexed in 0..=N {
            let connection = crate::store::schema::migrated_in_memory();
            for i in 0..N {
                if i == indexed {
                    maintain(&connection, 0).unwrap();
                }
                insert(&connection, i);
            }
            if indexed == N {
                maintain(&connection, 0).unwrap();
            }
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
                    "backlog of {agent}, indexed up to event {indexed}"
                );
                assert_eq!(
                    seqs(&messages::inbox(&connection, agent, 0, 100).unwrap()),
                    to_agent,
                    "inbox of {agent}, indexed up to event {indexed}"
                );
                let dms = matching(&|i| {
                    let (kind, from, to) = event(i);
                    kind == EventKind::DirectMessage && (from == agent || to == agent)
                });
                let history = messages::dm_history(&connection, agent, None, None, None, 100);
                assert_eq!(seqs(&history.unwrap()), dms, "DMs of {agent}");
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

    #[test]
    fn the_writer_indexes_only_once_a_batch_has_gathered() {
        let connection = crate::store::schema::migrated_in_memory();
        let upto = |connection: &Connection| -> i64 {
            connection
                .query_row("SELECT indexed_upto FROM index_state", [], |row| row.get(0))
                .unwrap()
        };
        for i in 0..9 {
            insert(&connection, i);
        }
        maintain(&connection, 10).unwrap();
        assert_eq!(upto(&connection), 0);
        insert(&connection, 9);
        maintain(&connection, 10).unwrap();
        assert_eq!(upto(&connection), 10);
        let entries: i64 = connection
            .query_row("SELECT count(*) FROM addressed", [], |row| row.get(0))
            .unwrap();
        // Every event is addressed to someone; the 9 DMs among the first
        // ten (event 6 is a mention) have a sender's entry as well.
        assert_eq!(entries, 10 + 9);
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
    /// whole table (`index_state` has one row), and only the backlog sorts
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
            for step in plan.iter().filter(|step| *step != "SCAN index_state") {
                assert!(!step.starts_with("SCAN"), "{step} in {plan:?}");
                assert!(
                    may_sort || !step.contains("TEMP B-TREE"),
                    "{step} in {plan:?}"
                );
            }
        }
    }
}
