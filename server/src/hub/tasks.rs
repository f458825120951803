//! Creating tasks as the original hub's `POST /api/tasks` did, and making
//! sure the assignee hears of them, now or when it reconnects.

use clawbot_connector::protocol::ErrorCode;
use serde_json::{Map, Value};

use super::Hub;
use crate::error::HubError;
use crate::ids;
use crate::store::event::EventKind;
use crate::store::messages::{self, NewEvent};
use crate::store::tasks::{self, TaskRecord};
use crate::store::{agents, now_iso, StoreError};

impl Hub {
    /// Stores a task from the original's body (`title, description,
    /// assignerId, assigneeId, groupId, priority`, extra fields kept) and a
    /// `task_assigned` event for the assignee.
    pub async fn create_task(&self, body: Map<String, Value>) -> Result<TaskRecord, HubError> {
        let title = optional_string(&body, "title")?
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| HubError::new(ErrorCode::InvalidArgument, "title is required"))?;
        ids::check_content(&title, self.config().max_body_bytes)?;
        let description = optional_string(&body, "description")?.unwrap_or_default();
        if description.len() > self.config().max_body_bytes {
            return Err(HubError::new(
                ErrorCode::TooLarge,
                "description is over the size limit",
            ));
        }
        let assigner_id = optional_string(&body, "assignerId")?;
        let assignee_id = optional_string(&body, "assigneeId")?;
        let group_id = optional_string(&body, "groupId")?;
        for (what, id) in [
            ("assignerId", &assigner_id),
            ("assigneeId", &assignee_id),
            ("groupId", &group_id),
        ] {
            if let Some(id) = id {
                ids::check_id(what, id)?;
            }
        }
        let priority = match body.get("priority") {
            None | Some(Value::Null) => "normal".to_owned(),
            Some(Value::String(p)) => p.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                return Err(HubError::new(
                    ErrorCode::InvalidArgument,
                    "priority must be a string or number",
                ))
            }
        };
        let now = now_iso();
        let task = TaskRecord {
            id: format!("task-{}", uuid::Uuid::new_v4().simple()),
            title,
            description,
            assigner_id,
            assignee_id,
            group_id,
            status: "pending".into(),
            priority,
            body,
            created_at: now.clone(),
            updated_at: now,
        };
        let hub = self.clone();
        let stored = task.clone();
        let event = self
            .store()
            .writer
            .write_then(
                move |connection| {
                    let Some(assignee) = &stored.assignee_id else {
                        tasks::insert(connection, &stored)?;
                        return Ok(None);
                    };
                    if !agents::exists(connection, assignee)? {
                        return Err(StoreError::rejected(
                            ErrorCode::UnknownAgent,
                            format!("no agent '{assignee}' has ever registered"),
                        ));
                    }
                    tasks::insert(connection, &stored)?;
                    let from_id = stored.assigner_id.clone().unwrap_or_default();
                    let event = messages::insert(
                        connection,
                        NewEvent {
                            kind: EventKind::TaskAssigned,
                            from_name: from_id.clone(),
                            from_id,
                            group_id: None,
                            recipient: Some(assignee.clone()),
                            content: stored.to_assigned_json().to_string(),
                            client_id: None,
                            ref_id: Some(stored.id.clone()),
                            created_at: stored.created_at.clone(),
                        },
                    )?;
                    Ok(Some(event))
                },
                move |event| {
                    if let Some(event) = event {
                        hub.dispatch(std::slice::from_ref(event));
                    }
                },
            )
            .await?;
        let _ = event;
        Ok(task)
    }
}

/// A field that must be a string when present.
fn optional_string(body: &Map<String, Value>, key: &str) -> Result<Option<String>, HubError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(HubError::new(
            ErrorCode::InvalidArgument,
            format!("{key} must be a string"),
        )),
    }
}
