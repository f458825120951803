//! The `agents` table: everyone who ever registered, online or not.

use clawbot_connector::protocol::AgentInfo;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};

use super::StoreError;

#[derive(Debug, Clone)]
pub struct AgentRecord {
    pub id: String,
    pub name: String,
    pub role: String,
    pub device: String,
    pub capabilities: Vec<String>,
    pub extra: Map<String, Value>,
    /// Everything up to here was delivered (legacy) or acknowledged (v2).
    pub cursor_seq: i64,
    pub inbox_read_seq: i64,
    pub joined_at: String,
    pub last_seen: String,
}

const COLUMNS: &str = "id, name, role, device, capabilities, extra, cursor_seq, \
     inbox_read_seq, joined_at, last_seen";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRecord> {
    let capabilities: String = row.get(4)?;
    let extra: String = row.get(5)?;
    Ok(AgentRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        role: row.get(2)?,
        device: row.get(3)?,
        capabilities: serde_json::from_str(&capabilities).unwrap_or_default(),
        extra: serde_json::from_str(&extra).unwrap_or_default(),
        cursor_seq: row.get(6)?,
        inbox_read_seq: row.get(7)?,
        joined_at: row.get(8)?,
        last_seen: row.get(9)?,
    })
}

/// Records a register: creates the agent or refreshes what it says of
/// itself. The cursor is left alone.
pub fn upsert(
    connection: &Connection,
    agent: &AgentInfo,
    name: &str,
    now: &str,
) -> Result<AgentRecord, StoreError> {
    let capabilities = serde_json::to_string(&agent.capabilities).unwrap_or_else(|_| "[]".into());
    let extra = serde_json::to_string(&agent.extra).unwrap_or_else(|_| "{}".into());
    connection
        .prepare_cached(
            "INSERT INTO agents (id, name, role, device, capabilities, extra, joined_at, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
             ON CONFLICT (id) DO UPDATE SET
                name = excluded.name, role = excluded.role, device = excluded.device,
                capabilities = excluded.capabilities, extra = excluded.extra,
                last_seen = excluded.last_seen",
        )?
        .execute(params![
            agent.id,
            name,
            agent.role.as_deref().unwrap_or(""),
            agent.device.as_deref().unwrap_or(""),
            capabilities,
            extra,
            now
        ])?;
    get(connection, &agent.id)?.ok_or(StoreError::CommitFailed)
}

pub fn get(connection: &Connection, id: &str) -> Result<Option<AgentRecord>, StoreError> {
    Ok(connection
        .prepare_cached(&format!("SELECT {COLUMNS} FROM agents WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

pub fn exists(connection: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(connection
        .prepare_cached("SELECT 1 FROM agents WHERE id = ?1")?
        .exists([id])?)
}

pub fn list(connection: &Connection) -> Result<Vec<AgentRecord>, StoreError> {
    let mut statement =
        connection.prepare_cached(&format!("SELECT {COLUMNS} FROM agents ORDER BY id"))?;
    let rows = statement.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn touch_last_seen(connection: &Connection, id: &str, now: &str) -> Result<(), StoreError> {
    connection
        .prepare_cached("UPDATE agents SET last_seen = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

/// Records that the agent is claimed (see `tokens::is_claimed`).
pub fn mark_claimed(connection: &Connection, id: &str) -> Result<(), StoreError> {
    connection
        .prepare_cached("UPDATE agents SET claimed = 1 WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Moves the delivery cursor forward, never back.
pub fn advance_cursor(connection: &Connection, id: &str, seq: i64) -> Result<(), StoreError> {
    connection
        .prepare_cached("UPDATE agents SET cursor_seq = max(cursor_seq, ?2) WHERE id = ?1")?
        .execute(params![id, seq])?;
    Ok(())
}

pub fn advance_inbox_read(connection: &Connection, id: &str, seq: i64) -> Result<(), StoreError> {
    connection
        .prepare_cached("UPDATE agents SET inbox_read_seq = max(inbox_read_seq, ?2) WHERE id = ?1")?
        .execute(params![id, seq])?;
    Ok(())
}
