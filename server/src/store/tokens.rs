//! The `tokens` table. Only SHA-256 hashes of tokens are stored: a token is
//! 256 random bits, so a fast hash is enough to make a stolen database
//! useless for connecting.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Full control: REST administration, and may claim new agent ids.
    Admin,
    /// May claim new agent ids and read shared data; nothing else.
    Join,
    /// One agent's own credential.
    Agent,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Admin => "admin",
            TokenKind::Join => "join",
            TokenKind::Agent => "agent",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "admin" => TokenKind::Admin,
            "join" => TokenKind::Join,
            "agent" => TokenKind::Agent,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub id: String,
    pub kind: TokenKind,
    pub agent_id: Option<String>,
    pub label: String,
    pub created_at: String,
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    let kind: String = row.get(1)?;
    Ok(TokenRecord {
        id: row.get(0)?,
        // An unknown kind can only come from a newer hub; treat it as the
        // least privileged.
        kind: TokenKind::parse(&kind).unwrap_or(TokenKind::Join),
        agent_id: row.get(2)?,
        label: row.get(3)?,
        created_at: row.get(4)?,
    })
}

pub fn insert(connection: &Connection, record: &TokenRecord, hash: &str) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO tokens (id, hash, kind, agent_id, label, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            record.id,
            hash,
            record.kind.as_str(),
            record.agent_id,
            record.label,
            record.created_at
        ])?;
    Ok(())
}

pub fn find_by_hash(
    connection: &Connection,
    hash: &str,
) -> Result<Option<TokenRecord>, StoreError> {
    Ok(connection
        .prepare_cached("SELECT id, kind, agent_id, label, created_at FROM tokens WHERE hash = ?1")?
        .query_row([hash], from_row)
        .optional()?)
}

pub fn has_kind(connection: &Connection, kind: TokenKind) -> Result<bool, StoreError> {
    Ok(connection
        .prepare_cached("SELECT 1 FROM tokens WHERE kind = ?1")?
        .exists([kind.as_str()])?)
}

/// An agent is claimed once it has had a credential of its own.
pub fn is_claimed(connection: &Connection, agent_id: &str) -> Result<bool, StoreError> {
    Ok(connection
        .prepare_cached(
            "SELECT 1 FROM tokens WHERE agent_id = ?1 AND kind = 'agent'
             UNION ALL SELECT 1 FROM agents WHERE id = ?1 AND claimed = 1",
        )?
        .exists([agent_id])?)
}

pub fn list(connection: &Connection) -> Result<Vec<TokenRecord>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT id, kind, agent_id, label, created_at FROM tokens ORDER BY created_at",
    )?;
    let rows = statement.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn delete(connection: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(connection
        .prepare_cached("DELETE FROM tokens WHERE id = ?1")?
        .execute([id])?
        == 1)
}
