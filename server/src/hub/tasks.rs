//! Tasks: creation for a named agent or for "any agent with capability X",
//! and every transition of their lifecycle.
//!
//! Every change runs as one writer job that reads the task, checks who may
//! do what in which state, writes the task and its history, and stores a
//! `task_update` event for the assigner and the assignee (a `task_assigned`
//! for a new assignee). Dispatch after the commit pushes them live, and
//! agents that are offline get them on reconnect like any other event.
//! The background side (deadlines, leases, pending tasks) is in
//! [`super::task_supervisor`].

use clawbot_connector::protocol::{
    AssignTask, ErrorCode, TaskChange, TaskProgress, TaskStatus, TaskView,
};
use serde_json::{Map, Value};

use super::Hub;
use crate::error::HubError;
use crate::ids;
use crate::store::event::{Event, EventKind};
use crate::store::messages::{self, NewEvent};
use crate::store::tasks::{self, TaskRecord};
use crate::store::{agents, now_iso, StoreError};

/// Attempts a capability task gets unless the assigner says otherwise.
const DEFAULT_MAX_ATTEMPTS: u32 = 3;
const MAX_ATTEMPTS_LIMIT: u32 = 100;
/// Longest progress note, in characters.
const MAX_NOTE_CHARS: usize = 1000;

/// Who makes a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Agent(String),
    Admin,
    /// The hub itself: deadlines, lapsed leases, reassignment.
    Hub,
}

impl Actor {
    fn name(&self) -> String {
        match self {
            Actor::Agent(id) => id.clone(),
            Actor::Admin => "admin".into(),
            Actor::Hub => "hub".into(),
        }
    }
}

/// A change to a task.
#[derive(Debug, Clone)]
pub enum TaskOp {
    Accept,
    Progress {
        percent: u8,
        note: String,
    },
    Complete {
        result: Value,
    },
    Fail {
        error: String,
    },
    Cancel,
    /// The deadline passed (hub only).
    TimeOut,
    /// The assignee's lease lapsed; offer the task to another of
    /// `candidates` or give up (hub only).
    Lapse {
        candidates: Vec<String>,
    },
    /// A pending task may go to one of `candidates` (hub only).
    Offer {
        candidates: Vec<String>,
    },
}

fn rejected(code: ErrorCode, message: impl Into<String>) -> StoreError {
    StoreError::rejected(code, message)
}

/// The events a change produces, to dispatch after the commit.
type Outcome = (TaskRecord, Vec<std::sync::Arc<Event>>);

impl Hub {
    /// Creates a task. Returns it, and whether it existed already (the same
    /// idempotency key from the same assigner).
    pub async fn create_task(
        &self,
        assigner: Option<String>,
        request: AssignTask,
        body: Map<String, Value>,
    ) -> Result<(TaskView, bool), HubError> {
        // Checked first: the idempotency lookup below is by assigner.
        if let Some(id) = &assigner {
            ids::check_id("assignerId", id)?;
        }
        // A retry finds its task before anything that may have changed
        // since the first attempt (a deadline now past) is checked again.
        if let Some(key) = &request.idempotency_key {
            ids::check_client_id(key).map_err(|_| {
                HubError::new(
                    ErrorCode::InvalidId,
                    "idempotencyKey must be 1 to 128 printable ASCII characters",
                )
            })?;
            let (assigner, key) = (assigner.clone(), key.clone());
            let existing = self
                .store()
                .read(move |connection| {
                    tasks::find_by_idempotency_key(connection, assigner.as_deref(), &key)
                })
                .await?;
            if let Some(existing) = existing {
                return Ok((existing.view(), true));
            }
        }
        let limit = self.config().max_body_bytes;
        if request.title.trim().is_empty() {
            return Err(HubError::new(
                ErrorCode::InvalidArgument,
                "title is required",
            ));
        }
        ids::check_content(&request.title, limit)?;
        if request.description.len() > limit {
            return Err(HubError::new(
                ErrorCode::TooLarge,
                "description is over the size limit",
            ));
        }
        if request
            .payload
            .as_ref()
            .is_some_and(|p| p.to_string().len() > limit)
        {
            return Err(HubError::new(
                ErrorCode::TooLarge,
                "payload is over the size limit",
            ));
        }
        for (what, id) in [
            ("assigneeId", &request.assignee_id),
            ("groupId", &request.group_id),
        ] {
            if let Some(id) = id {
                ids::check_id(what, id)?;
            }
        }
        if let Some(capability) = &request.capability {
            ids::check_capabilities(std::slice::from_ref(capability))?;
        }
        if request.assignee_id.is_some() && request.capability.is_some() {
            return Err(HubError::new(
                ErrorCode::InvalidArgument,
                "give either assigneeId or capability, not both",
            ));
        }
        let max_attempts = request.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts) {
            return Err(HubError::new(
                ErrorCode::InvalidArgument,
                format!("maxAttempts must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
            ));
        }
        let priority = match &request.priority {
            None | Some(Value::Null) => "normal".to_owned(),
            Some(Value::String(text)) if !text.is_empty() && text.len() <= 32 => text.clone(),
            Some(Value::Number(number)) => number.to_string(),
            Some(_) => {
                return Err(HubError::new(
                    ErrorCode::InvalidArgument,
                    "priority must be a short string or a number",
                ))
            }
        };
        let deadline = match &request.deadline {
            None => None,
            Some(text) => Some(parse_deadline(text)?),
        };
        let candidates = match &request.capability {
            Some(capability) => {
                if !self.capability_known(capability) {
                    return Err(HubError::new(
                        ErrorCode::UnknownCapability,
                        format!("no agent has ever offered the capability '{capability}'"),
                    ));
                }
                self.online_with_capability(capability)
            }
            None => Vec::new(),
        };
        // The body travels to the assignee in `task_assigned`; the
        // assigner's idempotency key is none of its business.
        let mut body = body;
        body.remove("idempotencyKey");
        let now = now_iso();
        let record = TaskRecord {
            number: 0,
            id: format!("task-{}", uuid::Uuid::new_v4().simple()),
            title: request.title,
            description: request.description,
            payload: request.payload,
            priority,
            status: TaskStatus::Pending,
            assigner_id: assigner,
            assignee_id: request.assignee_id,
            capability: request.capability,
            group_id: request.group_id,
            attempts: 0,
            max_attempts,
            deadline,
            progress: None,
            result: None,
            error: None,
            idempotency_key: request.idempotency_key,
            body,
            assigned_at: None,
            created_at: now.clone(),
            updated_at: now,
        };
        let hub = self.clone();
        let (task, existed, _) = self
            .store()
            .writer
            .write_then(
                move |connection| create_job(connection, record, &candidates),
                move |(_, _, events)| hub.dispatch(events),
            )
            .await?;
        self.tasks_changed();
        Ok((task.view(), existed))
    }

    /// Applies `op` as `actor`; returns the task as it is afterwards.
    pub async fn change_task(
        &self,
        actor: Actor,
        task_id: &str,
        op: TaskOp,
    ) -> Result<TaskView, HubError> {
        let limit = self.config().max_body_bytes;
        match &op {
            TaskOp::Progress { percent, note } => {
                if *percent > 100 {
                    return Err(HubError::new(
                        ErrorCode::InvalidArgument,
                        "percent must be 0 to 100",
                    ));
                }
                if note.chars().count() > MAX_NOTE_CHARS {
                    return Err(HubError::new(ErrorCode::TooLarge, "the note is too long"));
                }
            }
            TaskOp::Complete { result } if result.to_string().len() > limit => {
                return Err(HubError::new(
                    ErrorCode::TooLarge,
                    format!("the result is over {limit} bytes"),
                ));
            }
            TaskOp::Fail { error } if error.len() > limit => {
                return Err(HubError::new(
                    ErrorCode::TooLarge,
                    format!("the error is over {limit} bytes"),
                ));
            }
            _ => {}
        }
        let task_id = task_id.to_owned();
        let hub = self.clone();
        let (task, _) = self
            .store()
            .writer
            .write_then(
                move |connection| change_job(connection, &actor, &task_id, op),
                move |(_, events)| hub.dispatch(events),
            )
            .await?;
        if task.status.is_terminal() || task.status == TaskStatus::Pending {
            self.tasks_changed();
        }
        Ok(task.view())
    }
}

fn parse_deadline(text: &str) -> Result<String, HubError> {
    let deadline = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| {
        HubError::new(
            ErrorCode::InvalidArgument,
            "deadline must be an ISO 8601 (RFC 3339) time",
        )
    })?;
    let deadline = deadline.with_timezone(&chrono::Utc);
    if deadline <= chrono::Utc::now() {
        return Err(HubError::new(
            ErrorCode::InvalidArgument,
            "deadline is in the past",
        ));
    }
    Ok(deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn create_job(
    connection: &rusqlite::Connection,
    mut record: TaskRecord,
    candidates: &[String],
) -> Result<(TaskRecord, bool, Vec<std::sync::Arc<Event>>), StoreError> {
    if let Some(key) = &record.idempotency_key {
        if let Some(existing) =
            tasks::find_by_idempotency_key(connection, record.assigner_id.as_deref(), key)?
        {
            return Ok((existing, true, Vec::new()));
        }
    }
    if let Some(assignee) = &record.assignee_id {
        if !agents::exists(connection, assignee)? {
            return Err(rejected(
                ErrorCode::UnknownAgent,
                format!("no agent '{assignee}' has ever registered"),
            ));
        }
    } else if record.capability.is_some() {
        record.assignee_id = least_busy(connection, candidates, None)?;
    }
    if record.assignee_id.is_some() {
        record.status = TaskStatus::Assigned;
        record.attempts = 1;
        record.assigned_at = Some(record.created_at.clone());
    }
    let record = tasks::insert(connection, &record)?;
    let actor = record.assigner_id.clone().unwrap_or_else(|| "admin".into());
    let change = TaskChange {
        status: record.status,
        actor,
        at: record.created_at.clone(),
        percent: None,
        note: None,
    };
    tasks::add_history(connection, &record.id, &change)?;
    let mut events = Vec::new();
    if let Some(assignee) = &record.assignee_id {
        events.push(assigned_event(connection, &record, assignee)?);
    }
    Ok((record, false, events))
}

fn change_job(
    connection: &rusqlite::Connection,
    actor: &Actor,
    task_id: &str,
    op: TaskOp,
) -> Result<Outcome, StoreError> {
    let mut task = tasks::get(connection, task_id)?
        .ok_or_else(|| rejected(ErrorCode::NotFound, format!("no task '{task_id}'")))?;
    let is_assignee = matches!(actor, Actor::Agent(id) if task.assignee_id.as_deref() == Some(id));
    let is_assigner = match actor {
        Actor::Admin => true,
        Actor::Agent(id) => task.assigner_id.as_deref() == Some(id.as_str()),
        Actor::Hub => false,
    };
    let hub_only = matches!(
        op,
        TaskOp::TimeOut | TaskOp::Lapse { .. } | TaskOp::Offer { .. }
    );
    let allowed = match &op {
        TaskOp::Cancel => is_assigner,
        _ if hub_only => *actor == Actor::Hub,
        _ => is_assignee,
    };
    if !allowed {
        let who = match &op {
            TaskOp::Cancel => "only the assigner or the admin may cancel",
            _ => "only the task's assignee may do that",
        };
        return Err(rejected(
            ErrorCode::Forbidden,
            format!("{who} (task '{task_id}')"),
        ));
    }
    let from = task.status;
    let out_of_order = |what: &str| {
        rejected(
            ErrorCode::InvalidTransition,
            format!("cannot {what} a task that is {}", from.as_str()),
        )
    };
    let now = now_iso();
    let mut change = TaskChange {
        status: from,
        actor: actor.name(),
        at: now.clone(),
        percent: None,
        note: None,
    };
    let previous_assignee = task.assignee_id.clone();
    match op {
        TaskOp::Accept => {
            if from != TaskStatus::Assigned {
                return Err(out_of_order("accept"));
            }
            task.status = TaskStatus::Accepted;
        }
        TaskOp::Progress { percent, note } => {
            if !matches!(from, TaskStatus::Accepted | TaskStatus::InProgress) {
                return Err(out_of_order("report progress on"));
            }
            task.status = TaskStatus::InProgress;
            task.progress = Some(TaskProgress {
                percent,
                note: note.clone(),
            });
            change.percent = Some(percent);
            change.note = Some(note);
        }
        TaskOp::Complete { result } => {
            if !matches!(from, TaskStatus::Accepted | TaskStatus::InProgress) {
                return Err(out_of_order("complete"));
            }
            task.status = TaskStatus::Completed;
            task.result = Some(result);
        }
        TaskOp::Fail { error } => {
            if !matches!(from, TaskStatus::Accepted | TaskStatus::InProgress) {
                return Err(out_of_order("fail"));
            }
            task.status = TaskStatus::Failed;
            change.note = Some(error.clone());
            task.error = Some(error);
        }
        TaskOp::Cancel => {
            if from.is_terminal() {
                return Err(out_of_order("cancel"));
            }
            task.status = TaskStatus::Cancelled;
        }
        TaskOp::TimeOut => {
            if from.is_terminal() {
                return Err(out_of_order("time out"));
            }
            task.status = TaskStatus::TimedOut;
            task.error = Some("the deadline passed".into());
        }
        TaskOp::Lapse { candidates } => {
            if !from.is_in_flight() {
                return Err(out_of_order("reassign"));
            }
            if task.attempts >= task.max_attempts {
                task.status = TaskStatus::Dead;
                task.error = Some(format!("gave up after {} attempts", task.attempts));
            } else {
                assign_next(
                    connection,
                    &mut task,
                    &candidates,
                    previous_assignee.as_deref(),
                    &now,
                )?;
            }
        }
        TaskOp::Offer { candidates } => {
            if from != TaskStatus::Pending {
                return Err(out_of_order("offer"));
            }
            assign_next(connection, &mut task, &candidates, None, &now)?;
            if task.status == TaskStatus::Pending {
                // Nobody took it; nothing changed.
                return Ok((task, Vec::new()));
            }
        }
    }
    change.status = task.status;
    if task.status == TaskStatus::TimedOut || task.status == TaskStatus::Dead {
        change.note = task.error.clone();
    }
    task.updated_at = now;
    tasks::update(connection, &task)?;
    tasks::add_history(connection, &task.id, &change)?;

    // Tell everyone involved: the assigner, the assignee, and an assignee
    // the task was taken from; the agent that made the change has its
    // answer already.
    let mut recipients: Vec<String> = Vec::new();
    for agent in [&task.assigner_id, &task.assignee_id, &previous_assignee]
        .into_iter()
        .flatten()
    {
        let is_actor = matches!(actor, Actor::Agent(id) if id == agent);
        if !recipients.contains(agent) && !is_actor {
            recipients.push(agent.clone());
        }
    }
    let mut events = Vec::new();
    let content = serde_json::json!({ "task": task.view(), "change": change }).to_string();
    for recipient in recipients {
        let newly_assigned = task.assignee_id.as_deref() == Some(recipient.as_str())
            && previous_assignee.as_deref() != Some(recipient.as_str());
        if newly_assigned {
            events.push(assigned_event(connection, &task, &recipient)?);
        } else if agents::exists(connection, &recipient)? {
            events.push(messages::insert(
                connection,
                NewEvent {
                    kind: EventKind::TaskUpdate,
                    from_id: change.actor.clone(),
                    from_name: change.actor.clone(),
                    group_id: None,
                    recipient: Some(recipient),
                    content: content.clone(),
                    client_id: None,
                    ref_id: Some(task.id.clone()),
                    created_at: change.at.clone(),
                },
            )?);
        }
    }
    Ok((task, events))
}

/// Gives the task to the least busy of `candidates` (other than
/// `excluded`), or makes it pending when there is none.
fn assign_next(
    connection: &rusqlite::Connection,
    task: &mut TaskRecord,
    candidates: &[String],
    excluded: Option<&str>,
    now: &str,
) -> Result<(), StoreError> {
    task.progress = None;
    match least_busy(connection, candidates, excluded)? {
        Some(agent) => {
            task.assignee_id = Some(agent);
            task.status = TaskStatus::Assigned;
            task.attempts += 1;
            task.assigned_at = Some(now.to_owned());
        }
        None => {
            task.assignee_id = None;
            task.status = TaskStatus::Pending;
        }
    }
    Ok(())
}

/// The candidate holding the fewest tasks; ties go to the one that was
/// given a task longest ago, then by id, so equal agents take turns.
fn least_busy(
    connection: &rusqlite::Connection,
    candidates: &[String],
    excluded: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let mut best: Option<(i64, String, String)> = None;
    for candidate in candidates {
        if Some(candidate.as_str()) == excluded {
            continue;
        }
        let (load, last_assigned) = tasks::load_of(connection, candidate)?;
        let key = (load, last_assigned, candidate.clone());
        if best.as_ref().is_none_or(|current| key < *current) {
            best = Some(key);
        }
    }
    Ok(best.map(|(_, _, agent)| agent))
}

fn assigned_event(
    connection: &rusqlite::Connection,
    task: &TaskRecord,
    assignee: &str,
) -> Result<std::sync::Arc<Event>, StoreError> {
    let from = task.assigner_id.clone().unwrap_or_else(|| "admin".into());
    messages::insert(
        connection,
        NewEvent {
            kind: EventKind::TaskAssigned,
            from_name: from.clone(),
            from_id: from,
            group_id: None,
            recipient: Some(assignee.to_owned()),
            content: task.assigned_json().to_string(),
            client_id: None,
            ref_id: Some(task.id.clone()),
            created_at: now_iso(),
        },
    )
}
