//! The `tasks` and `task_history` tables.

use clawbot_connector::protocol::{TaskChange, TaskProgress, TaskStatus, TaskView};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};

use super::StoreError;

/// A stored task.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    /// The row number: a stable cursor for paging.
    pub number: i64,
    pub id: String,
    pub title: String,
    pub description: String,
    pub payload: Option<Value>,
    pub priority: String,
    pub status: TaskStatus,
    pub assigner_id: Option<String>,
    pub assignee_id: Option<String>,
    pub capability: Option<String>,
    pub group_id: Option<String>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub deadline: Option<String>,
    pub progress: Option<TaskProgress>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub idempotency_key: Option<String>,
    /// Extra fields of the original REST body, kept for `task_assigned`.
    pub body: Map<String, Value>,
    pub assigned_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl TaskRecord {
    pub fn view(&self) -> TaskView {
        TaskView {
            id: self.id.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            payload: self.payload.clone(),
            priority: self.priority.clone(),
            status: self.status,
            assigner_id: self.assigner_id.clone(),
            assignee_id: self.assignee_id.clone(),
            capability: self.capability.clone(),
            group_id: self.group_id.clone(),
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            deadline: self.deadline.clone(),
            progress: self.progress.clone(),
            result: self.result.clone(),
            error: self.error.clone(),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
        }
    }

    /// The `task_assigned` body: the original's fields (the creation body,
    /// `id`, `created_at`) and the task as it is now.
    pub fn assigned_json(&self) -> Value {
        let mut task = self.body.clone();
        if let Ok(Value::Object(view)) = serde_json::to_value(self.view()) {
            task.extend(view);
        }
        Value::Object(task)
    }

    /// The original's snake_case row (`GET /api/tasks`), plus the new
    /// fields in the same style and `cursor` for paging.
    pub fn row_json(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "cursor": self.number,
            "title": self.title,
            "description": self.description,
            "assigner_id": self.assigner_id,
            "assignee_id": self.assignee_id,
            "group_id": self.group_id,
            "status": self.status,
            "priority": self.priority,
            "capability": self.capability,
            "payload": self.payload,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "deadline": self.deadline,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }
}

const COLUMNS: &str = "rowid, id, title, description, payload, priority, status, assigner_id, \
     assignee_id, capability, group_id, attempts, max_attempts, deadline, progress_percent, \
     progress_note, result, error, idempotency_key, body, assigned_at, created_at, updated_at";

fn json_column(text: Option<String>) -> Option<Value> {
    text.and_then(|text| serde_json::from_str(&text).ok())
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    let status: String = row.get(6)?;
    let percent: Option<i64> = row.get(14)?;
    let note: Option<String> = row.get(15)?;
    let body: String = row.get(19)?;
    Ok(TaskRecord {
        number: row.get(0)?,
        id: row.get(1)?,
        title: row.get(2)?,
        description: row.get(3)?,
        payload: json_column(row.get(4)?),
        priority: row.get(5)?,
        status: TaskStatus::parse(&status).unwrap_or(TaskStatus::Pending),
        assigner_id: row.get(7)?,
        assignee_id: row.get(8)?,
        capability: row.get(9)?,
        group_id: row.get(10)?,
        attempts: row.get(11)?,
        max_attempts: row.get(12)?,
        deadline: row.get(13)?,
        progress: percent.map(|percent| TaskProgress {
            percent: percent.clamp(0, 100) as u8,
            note: note.unwrap_or_default(),
        }),
        result: json_column(row.get(16)?),
        error: row.get(17)?,
        idempotency_key: row.get(18)?,
        body: serde_json::from_str(&body).unwrap_or_default(),
        assigned_at: row.get(20)?,
        created_at: row.get(21)?,
        updated_at: row.get(22)?,
    })
}

fn json_text(value: &Option<Value>) -> Option<String> {
    value.as_ref().map(Value::to_string)
}

/// Stores a new task; returns it with its row number.
pub fn insert(connection: &Connection, task: &TaskRecord) -> Result<TaskRecord, StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO tasks (id, title, description, payload, priority, status, assigner_id,
                assignee_id, capability, group_id, attempts, max_attempts, deadline,
                progress_percent, progress_note, result, error, idempotency_key, body,
                assigned_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                ?17, ?18, ?19, ?20, ?21, ?22)",
        )?
        .execute(params![
            task.id,
            task.title,
            task.description,
            json_text(&task.payload),
            task.priority,
            task.status.as_str(),
            task.assigner_id,
            task.assignee_id,
            task.capability,
            task.group_id,
            task.attempts,
            task.max_attempts,
            task.deadline,
            task.progress.as_ref().map(|p| p.percent),
            task.progress.as_ref().map(|p| p.note.clone()),
            json_text(&task.result),
            task.error,
            task.idempotency_key,
            Value::Object(task.body.clone()).to_string(),
            task.assigned_at,
            task.created_at,
            task.updated_at
        ])?;
    get(connection, &task.id)?.ok_or(StoreError::CommitFailed)
}

/// Writes every mutable field of `task` back.
pub fn update(connection: &Connection, task: &TaskRecord) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "UPDATE tasks SET status = ?2, assignee_id = ?3, attempts = ?4, progress_percent = ?5,
                progress_note = ?6, result = ?7, error = ?8, assigned_at = ?9, updated_at = ?10
             WHERE id = ?1",
        )?
        .execute(params![
            task.id,
            task.status.as_str(),
            task.assignee_id,
            task.attempts,
            task.progress.as_ref().map(|p| p.percent),
            task.progress.as_ref().map(|p| p.note.clone()),
            json_text(&task.result),
            task.error,
            task.assigned_at,
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

pub fn find_by_idempotency_key(
    connection: &Connection,
    assigner_id: Option<&str>,
    key: &str,
) -> Result<Option<TaskRecord>, StoreError> {
    Ok(connection
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tasks
             WHERE COALESCE(assigner_id, '') = COALESCE(?1, '') AND idempotency_key = ?2"
        ))?
        .query_row(params![assigner_id, key], from_row)
        .optional()?)
}

/// Filters for listing tasks; `None` means any.
#[derive(Debug, Default, Clone)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub assignee_id: Option<String>,
    pub assigner_id: Option<String>,
    pub capability: Option<String>,
    /// Only tasks with a smaller cursor (older).
    pub before: Option<i64>,
}

/// Newest first.
pub fn list(
    connection: &Connection,
    filter: &TaskFilter,
    limit: usize,
) -> Result<Vec<TaskRecord>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tasks
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR assignee_id = ?2)
           AND (?3 IS NULL OR assigner_id = ?3) AND (?4 IS NULL OR capability = ?4)
           AND (?5 IS NULL OR rowid < ?5)
         ORDER BY rowid DESC LIMIT ?6 + 0"
    ))?;
    let rows = statement.query_map(
        params![
            filter.status.map(TaskStatus::as_str),
            filter.assignee_id,
            filter.assigner_id,
            filter.capability,
            filter.before,
            limit as i64
        ],
        from_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn in_statuses(statuses: &[TaskStatus]) -> String {
    statuses
        .iter()
        .map(|status| format!("'{}'", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The statuses of a task not yet finished, as the partial indexes of
/// schema migration 4 spell them. A query must repeat them to use those
/// indexes; the queries name their index (`INDEXED BY`), so that SQLite
/// refuses to prepare them rather than quietly read every open task, and
/// does not pick the status index instead on a database never analyzed.
const OPEN_STATUSES: &str = "'pending', 'assigned', 'accepted', 'in_progress'";

/// Not yet finished and past their deadline at `now` (ISO 8601 UTC, which
/// compares correctly as text).
pub fn overdue(connection: &Connection, now: &str) -> Result<Vec<TaskRecord>, StoreError> {
    let mut statement = connection.prepare_cached(&overdue_sql())?;
    let rows = statement.query_map([now], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn overdue_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM tasks INDEXED BY tasks_open_by_deadline
         WHERE deadline IS NOT NULL AND status IN ({OPEN_STATUSES}) AND deadline < ?1"
    )
}

fn open_for_capabilities_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM tasks INDEXED BY tasks_open_with_capability
         WHERE capability IS NOT NULL AND status IN ({OPEN_STATUSES}) ORDER BY rowid"
    )
}

/// Not yet finished tasks for any agent with a capability (the ones the
/// hub routes), oldest first.
pub fn open_for_capabilities(connection: &Connection) -> Result<Vec<TaskRecord>, StoreError> {
    let mut statement = connection.prepare_cached(&open_for_capabilities_sql())?;
    let rows = statement.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How busy an agent is: tasks it holds, and when it was last given one.
pub fn load_of(connection: &Connection, agent_id: &str) -> Result<(i64, String), StoreError> {
    let in_flight = in_statuses(&[
        TaskStatus::Assigned,
        TaskStatus::Accepted,
        TaskStatus::InProgress,
    ]);
    Ok(connection
        .prepare_cached(&format!(
            "SELECT
                (SELECT COUNT(*) FROM tasks WHERE assignee_id = ?1 AND status IN ({in_flight})),
                COALESCE((SELECT MAX(assigned_at) FROM tasks WHERE assignee_id = ?1), '')"
        ))?
        .query_row([agent_id], |row| Ok((row.get(0)?, row.get(1)?)))?)
}

pub fn add_history(
    connection: &Connection,
    task_id: &str,
    change: &TaskChange,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO task_history (task_id, status, actor, at, percent, note)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            task_id,
            change.status.as_str(),
            change.actor,
            change.at,
            change.percent,
            change.note
        ])?;
    Ok(())
}

pub fn history(connection: &Connection, task_id: &str) -> Result<Vec<TaskChange>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT status, actor, at, percent, note FROM task_history WHERE task_id = ?1 ORDER BY id",
    )?;
    let rows = statement.query_map([task_id], |row| {
        let status: String = row.get(0)?;
        Ok(TaskChange {
            status: TaskStatus::parse(&status).unwrap_or(TaskStatus::Pending),
            actor: row.get(1)?,
            at: row.get(2)?,
            percent: row.get::<_, Option<i64>>(3)?.map(|p| p.clamp(0, 100) as u8),
            note: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_statuses_are_the_unfinished_ones() {
        let unfinished: Vec<String> = TaskStatus::ALL
            .into_iter()
            .filter(|status| !status.is_terminal())
            .map(|status| format!("'{}'", status.as_str()))
            .collect();
        assert_eq!(OPEN_STATUSES, unfinished.join(", "));
    }

    /// The supervisor's two queries run every second; each must use its
    /// partial index rather than read every open task.
    #[test]
    fn the_supervisors_queries_use_their_partial_indexes() {
        let connection = crate::store::schema::migrated_in_memory();
        for (sql, index) in [
            (overdue_sql(), "tasks_open_by_deadline"),
            (open_for_capabilities_sql(), "tasks_open_with_capability"),
        ] {
            let mut plan = connection
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            // Unbound parameters are NULL, which is enough for a plan.
            let mut rows = plan.raw_query();
            let mut steps: Vec<String> = Vec::new();
            while let Some(row) = rows.next().unwrap() {
                steps.push(row.get(3).unwrap());
            }
            assert!(
                steps.iter().any(|step| step.contains(index)),
                "{index} not used: {steps:?}"
            );
        }
    }
}
