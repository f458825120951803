//! The `events` table: group messages, DMs, mentions and task assignments,
//! each with its sequence number.

use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};

use super::event::{Event, EventKind};
use super::StoreError;

/// What a caller asks to store; the store gives it a seq and an id.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: EventKind,
    pub from_id: String,
    pub from_name: String,
    pub group_id: Option<String>,
    pub recipient: Option<String>,
    pub content: String,
    pub client_id: Option<String>,
    pub ref_id: Option<String>,
    pub created_at: String,
}

// Every `LIMIT ?n` here is written `LIMIT ?n + 0`. SQLite's planner looks
// at the value bound to a bare `LIMIT ?n`, so it marks the statement to be
// prepared again whenever that parameter is bound: every single run. That
// re-preparation was ~17% of a history request's CPU; an expression it does
// not evaluate at planning time keeps the cached statement.

/// One page of history, at most 500 events.
pub const MAX_PAGE: usize = 500;

/// The highest sequence number stored so far (0 when none).
pub fn head_seq(connection: &Connection) -> Result<i64, StoreError> {
    Ok(connection
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events")?
        .query_row([], |row| row.get(0))?)
}

pub fn insert(connection: &Connection, new: NewEvent) -> Result<Arc<Event>, StoreError> {
    // Time-ordered (v7): ids sort in the order events were stored. Unique
    // by construction; nothing looks an event up by its id, so since
    // migration 8 no index of them is kept, one page less at each commit.
    let id = uuid::Uuid::now_v7().to_string();
    connection
        .prepare_cached(
            "INSERT INTO events (id, kind, from_id, from_name, group_id, recipient, content,
                                 client_id, ref_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            id,
            new.kind.as_str(),
            new.from_id,
            new.from_name,
            new.group_id,
            new.recipient,
            new.content,
            new.client_id,
            new.ref_id,
            new.created_at
        ])?;
    let seq = connection.last_insert_rowid();
    Ok(Arc::new(Event::new(
        seq,
        id,
        new.kind,
        new.from_id,
        new.from_name,
        new.group_id,
        new.recipient,
        new.content,
        new.client_id,
        new.ref_id,
        new.created_at,
    )))
}

/// The event a sender already stored under this client id, if any.
pub fn find_by_client_id(
    connection: &Connection,
    from_id: &str,
    client_id: &str,
) -> Result<Option<Event>, StoreError> {
    Ok(connection
        .prepare_cached(&format!(
            "SELECT {} FROM events WHERE from_id = ?1 AND client_id = ?2",
            Event::COLUMNS
        ))?
        .query_row(params![from_id, client_id], Event::from_row)
        .optional()?)
}

fn collect(
    statement: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<Arc<Event>>, StoreError> {
    let rows = statement.query_map(params, |row| Event::from_row(row).map(Arc::new))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// What `agent_id` should receive after `after_seq`, oldest first: events
/// addressed to it, and messages of its groups stored after it joined them.
pub fn backlog(
    connection: &Connection,
    agent_id: &str,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<Arc<Event>>, StoreError> {
    let mut statement = connection.prepare_cached(&backlog_sql())?;
    collect(&mut statement, params![agent_id, after_seq, limit as i64])
}

/// The query of [`backlog`]: addressed events, indexed ones through
/// `addressed` and then the tail not indexed yet (see store::addressed),
/// and group messages.
pub(super) fn backlog_sql() -> String {
    let addressed = addressed_to_sql(None);
    let group_columns = prefixed_columns("e");
    format!(
        "{addressed}
         UNION ALL
         SELECT {group_columns} FROM memberships m
            JOIN events e ON e.group_id = m.group_id AND e.kind = 'message'
                         AND e.seq > max(?2, m.joined_seq)
            WHERE m.agent_id = ?1
         ORDER BY seq LIMIT ?3 + 0"
    )
}

/// Where the indexed part of agent ?1's entries ends (see store::addressed).
const INDEXED_UPTO: &str =
    "(SELECT indexed_upto FROM addressed_state WHERE bucket = addressed_bucket(?1))";

/// Events addressed to ?1 after ?2 (of `kinds` only, an SQL list, if
/// given): the indexed ones through `addressed`, then the tail not indexed
/// yet (see store::addressed).
fn addressed_to_sql(kinds: Option<&str>) -> String {
    let columns = Event::COLUMNS;
    let indexed_columns = addressed_columns();
    let (indexed_kinds, tail_kinds) = match kinds {
        Some(kinds) => (
            format!("AND i.kind IN {kinds}"),
            format!("AND kind IN {kinds}"),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "SELECT {indexed_columns} FROM addressed a JOIN events i ON i.seq = a.seq
            WHERE a.agent = ?1 AND a.role = 0 AND a.seq > ?2 {indexed_kinds}
         UNION ALL
         SELECT {columns} FROM events
            WHERE seq > max(?2, {INDEXED_UPTO}) AND recipient = ?1
              {tail_kinds}"
    )
}

/// The columns of an event read through `addressed a JOIN events i`, with
/// `seq` taken from `a`, so that SQLite sees the rows come in seq order
/// from `addressed`'s key and does not sort them.
fn addressed_columns() -> String {
    prefixed_columns("i").replacen("i.seq", "a.seq", 1)
}

fn prefixed_columns(alias: &str) -> String {
    Event::COLUMNS
        .split(", ")
        .map(|column| format!("{alias}.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A page of a group's messages as the JSON array `GET
/// /api/groups/{id}/messages` returns (the original's row shape, plus
/// `seq`), oldest first. With `after`, the first `limit` after it;
/// otherwise the last `limit` before `before` (or the end).
///
/// Written straight from the rows: building an [`Event`] per row (eleven
/// `String`s) and then serializing it was most of a page's allocation.
/// Returns the JSON and the number of rows.
pub fn group_history_json(
    connection: &Connection,
    group_id: &str,
    before: Option<i64>,
    after: Option<i64>,
    limit: usize,
) -> Result<(String, usize), StoreError> {
    let before = before.unwrap_or(i64::MAX);
    let limit = limit.min(MAX_PAGE) as i64;
    let (mut statement, newest_first) = match after {
        Some(_) => (
            connection.prepare_cached(&newer_page_sql(GROUP_ROWS))?,
            false,
        ),
        None => (
            connection.prepare_cached(&older_page_sql(GROUP_ROWS))?,
            true,
        ),
    };
    let mut rows = statement.query(params![
        group_id,
        Option::<&str>::None,
        after,
        before,
        limit
    ])?;
    // Each row's JSON goes into one buffer; `ends` marks where each ends,
    // so a newest-first page can be put in order without re-rendering.
    let mut rendered = Vec::with_capacity(limit as usize * 256);
    let mut ends = Vec::with_capacity(limit as usize);
    while let Some(row) = rows.next()? {
        let text = |index: usize| -> rusqlite::Result<&str> {
            row.get_ref(index)?.as_str().map_err(|error| {
                rusqlite::Error::FromSqlConversionFailure(
                    index,
                    rusqlite::types::Type::Text,
                    Box::new(error),
                )
            })
        };
        let created_at = text(5)?;
        let row = GroupRow {
            id: text(1)?,
            seq: row.get(0)?,
            kind: "message",
            from_id: text(2)?,
            from_name: text(3)?,
            group_id,
            content: text(4)?,
            timestamp: created_at,
            created_at,
        };
        serde_json::to_writer(&mut rendered, &row).expect("rows always serialize");
        ends.push(rendered.len());
    }
    let count = ends.len();
    let mut json = String::with_capacity(rendered.len() + count + 2);
    json.push('[');
    let spans = ends.iter().enumerate().map(|(index, &end)| {
        let start = if index == 0 { 0 } else { ends[index - 1] };
        start..end
    });
    let spans: Vec<_> = if newest_first {
        spans.rev().collect()
    } else {
        spans.collect()
    };
    for (index, span) in spans.into_iter().enumerate() {
        if index > 0 {
            json.push(',');
        }
        json.push_str(std::str::from_utf8(&rendered[span]).expect("serde_json writes UTF-8"));
    }
    json.push(']');
    Ok((json, count))
}

/// The query of a group page, before its seq window: binds ?1 (the group).
const GROUP_ROWS: &str = "SELECT seq, id, from_id, from_name, content, created_at FROM events \
     WHERE group_id = ?1 AND kind = 'message' {window}";

/// The original hub's row shape for a group message, plus `seq`.
#[derive(serde::Serialize)]
struct GroupRow<'a> {
    id: &'a str,
    seq: i64,
    #[serde(rename = "type")]
    kind: &'static str,
    from_id: &'a str,
    from_name: &'a str,
    group_id: &'a str,
    content: &'a str,
    timestamp: &'a str,
    created_at: &'a str,
}

/// A page of the DMs `agent_id` sent or received, optionally only those
/// exchanged with `with`; ordered as [`group_history`].
pub fn dm_history(
    connection: &Connection,
    agent_id: &str,
    with: Option<&str>,
    before: Option<i64>,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<Arc<Event>>, StoreError> {
    let base = dm_history_sql(with.is_some());
    page(connection, &base, agent_id, with, before, after, limit)
}

/// The query of [`dm_history`], without its seq window and order. Each
/// part has a `{window}` (or `{window_a}` over `addressed`), where `page`
/// puts the seq bounds. A DM to oneself is both sent and received: it
/// comes from the sent part only.
pub(super) fn dm_history_sql(with_other: bool) -> String {
    let columns = Event::COLUMNS;
    let indexed_columns = addressed_columns();
    let (sent_to, received_from, tail) = if with_other {
        (
            "AND i.recipient = ?2",
            "AND i.from_id = ?2",
            "((from_id = ?1 AND recipient = ?2) OR (from_id = ?2 AND recipient = ?1))",
        )
    } else {
        ("", "", "(from_id = ?1 OR recipient = ?1)")
    };
    format!(
        "SELECT {indexed_columns} FROM addressed a JOIN events i ON i.seq = a.seq
            WHERE a.agent = ?1 AND a.role = 1 {sent_to} {{window_a}}
         UNION ALL
         SELECT {indexed_columns} FROM addressed a JOIN events i ON i.seq = a.seq
            WHERE a.agent = ?1 AND a.role = 0 AND i.kind = 'direct_message'
              {received_from} AND i.from_id <> ?1 {{window_a}}
         UNION ALL
         SELECT {columns} FROM events
            WHERE seq > {INDEXED_UPTO} AND kind = 'direct_message'
              AND {tail} {{window}}"
    )
}

/// DMs and mentions addressed to `agent_id` after `after_seq`: the inbox.
pub fn inbox(
    connection: &Connection,
    agent_id: &str,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<Arc<Event>>, StoreError> {
    let mut statement = connection.prepare_cached(&inbox_sql())?;
    collect(&mut statement, params![agent_id, after_seq, limit as i64])
}

/// The query of [`inbox`].
pub(super) fn inbox_sql() -> String {
    let addressed = addressed_to_sql(Some("('direct_message', 'mention')"));
    format!("{addressed} ORDER BY seq LIMIT ?3 + 0")
}

/// The first `?5` events after `?3` and before `?4`.
pub(super) fn newer_page_sql(base: &str) -> String {
    let base = base
        .replace("{window}", "AND seq > ?3 AND seq < ?4")
        .replace("{window_a}", "AND a.seq > ?3 AND a.seq < ?4");
    format!("{base} ORDER BY seq ASC LIMIT ?5 + 0")
}

/// The last `?5` events before `?4`, newest first.
pub(super) fn older_page_sql(base: &str) -> String {
    let base = base
        .replace("{window}", "AND seq < ?4")
        .replace("{window_a}", "AND a.seq < ?4");
    format!("{base} ORDER BY seq DESC LIMIT ?5 + 0")
}

/// Runs `base` (which binds ?1 and ?2 and has a `{window}` in each of its
/// parts, where the seq bounds go) and returns the page oldest first.
fn page(
    connection: &Connection,
    base: &str,
    first: &str,
    second: Option<&str>,
    before: Option<i64>,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<Arc<Event>>, StoreError> {
    let before = before.unwrap_or(i64::MAX);
    let limit = limit.min(MAX_PAGE) as i64;
    match after {
        Some(after) => {
            let mut statement = connection.prepare_cached(&newer_page_sql(base))?;
            collect(&mut statement, params![first, second, after, before, limit])
        }
        None => {
            let mut statement = connection.prepare_cached(&older_page_sql(base))?;
            let mut events = collect(
                &mut statement,
                params![first, second, Option::<i64>::None, before, limit],
            )?;
            events.reverse();
            Ok(events)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    #[test]
    fn a_history_page_reuses_its_prepared_statement() {
        let connection = crate::store::schema::migrated_in_memory();
        for n in 0..20 {
            insert(
                &connection,
                NewEvent {
                    kind: EventKind::Message,
                    from_id: "a".into(),
                    from_name: "A".into(),
                    group_id: Some("clawdbots".into()),
                    recipient: None,
                    content: format!("m{n}"),
                    client_id: None,
                    ref_id: None,
                    created_at: "2026-01-01T00:00:00.000Z".into(),
                },
            )
            .unwrap();
        }
        for (before, limit) in [(None, 5), (Some(15), 3), (Some(10), 7)] {
            let (json, count) =
                group_history_json(&connection, "clawdbots", before, None, limit).unwrap();
            assert_eq!(count, limit);
            let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
            let seqs: Vec<i64> = rows
                .iter()
                .map(|row| row["seq"].as_i64().unwrap())
                .collect();
            let newest = before.unwrap_or(21) - 1;
            let expected: Vec<i64> = (newest - limit as i64 + 1..=newest).collect();
            assert_eq!(seqs, expected, "oldest first, ending before {before:?}");
            let (_, newer) =
                group_history_json(&connection, "clawdbots", None, Some(2), limit).unwrap();
            assert_eq!(newer, limit);
        }
        for sql in [older_page_sql(GROUP_ROWS), newer_page_sql(GROUP_ROWS)] {
            let statement = connection.prepare_cached(&sql).unwrap();
            assert_eq!(statement.get_status(StatementStatus::Run), 3, "{sql}");
            assert_eq!(statement.get_status(StatementStatus::RePrepare), 0, "{sql}");
        }
    }
}
