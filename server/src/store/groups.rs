//! The `groups` and `memberships` tables.

use rusqlite::{params, Connection, OptionalExtension};

use super::{messages, StoreError};

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct GroupRecord {
    pub id: String,
    pub name: String,
    pub description: String,
    pub owner_id: Option<String>,
    pub created_at: String,
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<GroupRecord> {
    Ok(GroupRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        owner_id: row.get(3)?,
        created_at: row.get(4)?,
    })
}

pub fn create(connection: &Connection, group: &GroupRecord) -> Result<bool, StoreError> {
    let inserted = connection
        .prepare_cached(
            "INSERT INTO groups (id, name, description, owner_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![
            group.id,
            group.name,
            group.description,
            group.owner_id,
            group.created_at
        ])?;
    Ok(inserted == 1)
}

pub fn get(connection: &Connection, id: &str) -> Result<Option<GroupRecord>, StoreError> {
    Ok(connection
        .prepare_cached(
            "SELECT id, name, description, owner_id, created_at FROM groups WHERE id = ?1",
        )?
        .query_row([id], from_row)
        .optional()?)
}

pub fn exists(connection: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(connection
        .prepare_cached("SELECT 1 FROM groups WHERE id = ?1")?
        .exists([id])?)
}

pub fn list(connection: &Connection) -> Result<Vec<GroupRecord>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT id, name, description, owner_id, created_at FROM groups ORDER BY created_at, id",
    )?;
    let rows = statement.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Adds `agent_id` to the group, creating the group if it does not exist.
/// Returns false when the agent was already a member.
pub fn join(
    connection: &Connection,
    agent_id: &str,
    group_id: &str,
    now: &str,
) -> Result<bool, StoreError> {
    create(
        connection,
        &GroupRecord {
            id: group_id.to_owned(),
            name: group_id.to_owned(),
            description: String::new(),
            owner_id: Some(agent_id.to_owned()),
            created_at: now.to_owned(),
        },
    )?;
    // A member receives what is stored after it joined, not the group's past.
    let head = messages::head_seq(connection)?;
    let inserted = connection
        .prepare_cached(
            "INSERT INTO memberships (agent_id, group_id, joined_seq, joined_at)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )?
        .execute(params![agent_id, group_id, head, now])?;
    Ok(inserted == 1)
}

/// Returns false when the agent was not a member.
pub fn leave(connection: &Connection, agent_id: &str, group_id: &str) -> Result<bool, StoreError> {
    let deleted = connection
        .prepare_cached("DELETE FROM memberships WHERE agent_id = ?1 AND group_id = ?2")?
        .execute(params![agent_id, group_id])?;
    Ok(deleted == 1)
}

pub fn members(connection: &Connection, group_id: &str) -> Result<Vec<String>, StoreError> {
    let mut statement = connection
        .prepare_cached("SELECT agent_id FROM memberships WHERE group_id = ?1 ORDER BY agent_id")?;
    let rows = statement.query_map([group_id], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every (group, agent) pair, to build the in-memory routing table at start.
pub fn all_memberships(connection: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut statement = connection.prepare("SELECT group_id, agent_id FROM memberships")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
