//! `/api/tasks`: create (the original's body still works), list with
//! filters and paging, read one with its history, and every lifecycle
//! operation.

use axum::extract::State;
use axum::http::StatusCode;
use clawbot_connector::protocol::{AssignTask, ErrorCode, TaskStatus};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::auth::Caller;
use super::extract::{Json, Path, Query};
use crate::auth::Principal;
use crate::error::HubError;
use crate::hub::tasks::{Actor, TaskOp};
use crate::hub::Hub;
use crate::store::tasks::{self, TaskFilter};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// pending, assigned, accepted, in_progress, completed, failed,
    /// cancelled, timed_out or dead.
    pub status: Option<String>,
    pub assignee: Option<String>,
    pub assigner: Option<String>,
    pub capability: Option<String>,
    /// Only tasks older than this row's `cursor`.
    pub before: Option<i64>,
    /// 1 to 500, default 50.
    pub limit: Option<i64>,
}

/// `GET /api/tasks`: newest first, in the original's row shape plus the
/// lifecycle fields; page with `before=<cursor of the last row>`.
#[utoipa::path(get, path = "/api/tasks", tag = "tasks", params(TaskQuery),
    responses((status = 200, description = "task rows", body = [Object])))]
pub async fn list(
    State(hub): State<Hub>,
    _caller: Caller,
    Query(query): Query<TaskQuery>,
) -> Result<Json<Vec<Value>>, HubError> {
    let status = match &query.status {
        None => None,
        Some(text) => Some(TaskStatus::parse(text).ok_or_else(|| {
            HubError::new(
                ErrorCode::InvalidArgument,
                format!("unknown status '{text}'"),
            )
        })?),
    };
    let limit = match query.limit {
        None => 50,
        Some(limit @ 1..=500) => limit as usize,
        Some(_) => {
            return Err(HubError::new(
                ErrorCode::InvalidArgument,
                "limit must be between 1 and 500",
            ))
        }
    };
    let filter = TaskFilter {
        status,
        assignee_id: query.assignee,
        assigner_id: query.assigner,
        capability: query.capability,
        before: query.before,
    };
    let rows = hub
        .store()
        .read(move |connection| tasks::list(connection, &filter, limit))
        .await?;
    Ok(Json(rows.iter().map(tasks::TaskRecord::row_json).collect()))
}

/// `GET /api/tasks/:id`: the task and every transition (`history`).
#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "task id")),
    responses((status = 200, description = "a task row with its history", body = Object),
              (status = 404, body = super::ErrorResponse)))]
pub async fn get(
    State(hub): State<Hub>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, HubError> {
    let wanted = id.clone();
    let found = hub
        .store()
        .read(move |connection| {
            Ok(match tasks::get(connection, &wanted)? {
                Some(task) => Some((task, tasks::history(connection, &wanted)?)),
                None => None,
            })
        })
        .await?;
    let (task, history) =
        found.ok_or_else(|| HubError::new(ErrorCode::NotFound, format!("no task '{id}'")))?;
    let mut row = task.row_json();
    row["history"] = serde_json::to_value(history).unwrap_or_default();
    Ok(Json(row))
}

/// `POST /api/tasks`: the original's body `{title, description, assignerId,
/// assigneeId, groupId, priority}`, plus `capability`, `payload`,
/// `deadline`, `idempotencyKey`, `maxAttempts`. Answers with the body plus
/// `id`, `created_at` and the lifecycle fields; 200 instead of 201 when the
/// idempotency key returned an existing task.
#[utoipa::path(post, path = "/api/tasks", tag = "tasks", request_body = Object,
    responses((status = 201, description = "the task", body = Object),
              (status = 200, description = "the existing task for this idempotency key", body = Object),
              (status = 404, body = super::ErrorResponse)))]
pub async fn create(
    State(hub): State<Hub>,
    caller: Caller,
    Json(body): Json<Map<String, Value>>,
) -> Result<(StatusCode, Json<Value>), HubError> {
    let request: AssignTask = serde_json::from_value(Value::Object(body.clone()))
        .map_err(|error| HubError::new(ErrorCode::InvalidArgument, format!("bad task: {error}")))?;
    let assigner = match (&caller.0, &request.assigner_id) {
        (Principal::Join, _) => {
            return Err(HubError::new(
                ErrorCode::Forbidden,
                "a join token cannot create tasks",
            ))
        }
        // The admin, or anyone in --open mode (as the original hub let its
        // clients), may create a task with no assigner.
        (Principal::Admin | Principal::Anonymous, None) => None,
        (_, named) => Some(caller.acting_agent(&hub, named.as_deref()).await?),
    };
    let (task, existed) = hub.create_task(assigner, request, body.clone()).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut answer = body;
    if let Ok(Value::Object(view)) = serde_json::to_value(task) {
        answer.extend(view);
    }
    Ok((status, Json(Value::Object(answer))))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ChangeBody {
    /// progress: 0 to 100.
    pub percent: Option<u8>,
    /// progress: a note.
    pub note: Option<String>,
    /// complete: any JSON.
    pub result: Option<Value>,
    /// fail: what went wrong.
    pub error: Option<String>,
}

/// `POST /api/tasks/:id/:action` with action accept, progress, complete,
/// fail or cancel. Answers with the task row as it is afterwards.
#[utoipa::path(post, path = "/api/tasks/{id}/{action}", tag = "tasks",
    params(("id" = String, Path, description = "task id"),
           ("action" = String, Path, description = "accept, progress, complete, fail or cancel")),
    request_body = ChangeBody,
    responses((status = 200, description = "the task row", body = Object),
              (status = 409, description = "not allowed in the task's state", body = super::ErrorResponse),
              (status = 403, body = super::ErrorResponse)))]
pub async fn change(
    State(hub): State<Hub>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, HubError> {
    // The body is optional (accept and cancel need none).
    let body: ChangeBody = if body.iter().all(u8::is_ascii_whitespace) {
        ChangeBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            HubError::new(ErrorCode::InvalidArgument, format!("bad body: {error}"))
        })?
    };
    let op = match action.as_str() {
        "accept" => TaskOp::Accept,
        "progress" => TaskOp::Progress {
            percent: body.percent.ok_or_else(|| {
                HubError::new(ErrorCode::InvalidArgument, "progress needs percent")
            })?,
            note: body.note.unwrap_or_default(),
        },
        "complete" => TaskOp::Complete {
            result: body.result.unwrap_or(Value::Null),
        },
        "fail" => TaskOp::Fail {
            error: body
                .error
                .ok_or_else(|| HubError::new(ErrorCode::InvalidArgument, "fail needs error"))?,
        },
        "cancel" => TaskOp::Cancel,
        other => {
            return Err(HubError::new(
                ErrorCode::NotFound,
                format!("no task action '{other}'"),
            ))
        }
    };
    let actor = match &caller.0 {
        Principal::Admin => Actor::Admin,
        Principal::Agent(id) => Actor::Agent(id.clone()),
        _ => {
            return Err(HubError::new(
                ErrorCode::Forbidden,
                "task changes need the agent's own token or the admin token",
            ))
        }
    };
    hub.change_task(actor, &id, op).await?;
    let wanted = id.clone();
    let task = hub
        .store()
        .read(move |connection| tasks::get(connection, &wanted))
        .await?
        .ok_or_else(|| HubError::new(ErrorCode::NotFound, format!("no task '{id}'")))?;
    Ok(Json(task.row_json()))
}
