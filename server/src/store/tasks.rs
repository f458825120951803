//! The `tasks` table, as the original hub's REST API shaped it.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};

use super::StoreError;

#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub id: String,
    pub title: String,
    pub description: String,
    pub assigner_id: Option<String>,
    pub assignee_id: Option<String>,
    pub group_id: Option<String>,
    pub status: String,
    pub priority: String,
    /// The creation body as the client sent it (extra fields kept).
    pub body: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
}

impl TaskRecord {
    /// The shape `GET /api/tasks` returns (the original's snake_case row).
    pub fn to_row_json(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "assigner_id": self.assigner_id,
            "assignee_id": self.assignee_id,
            "group_id": self.group_id,
            "status": self.status,
            "priority": self.priority,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }

    /// The shape `task_assigned` and `POST /api/tasks` carry: the creation
    /// body plus `id`, `created_at` (the original's), and `status`.
    pub fn to_assigned_json(&self) -> Value {
        let mut task = self.body.clone();
        task.insert("id".into(), self.id.clone().into());
        task.insert("title".into(), self.title.clone().into());
        task.insert("status".into(), self.status.clone().into());
        task.insert("created_at".into(), self.created_at.clone().into());
        Value::Object(task)
    }
}

const COLUMNS: &str = "id, title, description, assigner_id, assignee_id, group_id, status, \
     priority, body, created_at, updated_at";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    let body: String = row.get(8)?;
    Ok(TaskRecord {
        id: row.get(0)?,
        title: row.get(1)?,
        description: row.get(2)?,
        assigner_id: row.get(3)?,
        assignee_id: row.get(4)?,
        group_id: row.get(5)?,
        status: row.get(6)?,
        priority: row.get(7)?,
        body: serde_json::from_str(&body).unwrap_or_default(),
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
    })
}

pub fn insert(connection: &Connection, task: &TaskRecord) -> Result<(), StoreError> {
    connection
        .prepare_cached(&format!(
            "INSERT INTO tasks ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ))?
        .execute(params![
            task.id,
            task.title,
            task.description,
            task.assigner_id,
            task.assignee_id,
            task.group_id,
            task.status,
            task.priority,
            Value::Object(task.body.clone()).to_string(),
            task.created_at,
            task.updated_at
        ])?;
    Ok(())
}

pub fn get(connection: &Connection, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    Ok(connection
        .prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

pub fn list(connection: &Connection, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tasks ORDER BY created_at DESC, id LIMIT ?1"
    ))?;
    let rows = statement.query_map([limit as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
