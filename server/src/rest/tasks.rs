//! `/api/tasks`: the original's task endpoints. The full lifecycle comes
//! with the tasks issue; here a task is stored and reaches its assignee,
//! online now or on reconnect.

use axum::extract::State;
use axum::http::StatusCode;
use clawbot_connector::protocol::ErrorCode;
use serde_json::{Map, Value};

use super::auth::Caller;
use super::extract::{Json, Path};
use crate::auth::Principal;
use crate::error::HubError;
use crate::hub::Hub;
use crate::store::tasks;

/// `GET /api/tasks`: the newest 500 tasks (the original's rows).
#[utoipa::path(get, path = "/api/tasks", tag = "tasks",
    responses((status = 200, description = "task rows", body = [Object])))]
pub async fn list(State(hub): State<Hub>, _caller: Caller) -> Result<Json<Vec<Value>>, HubError> {
    let tasks = hub
        .store()
        .read(|connection| tasks::list(connection, 500))
        .await?;
    Ok(Json(
        tasks.iter().map(tasks::TaskRecord::to_row_json).collect(),
    ))
}

/// `GET /api/tasks/:id`.
#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "task id")),
    responses((status = 200, description = "a task row", body = Object),
              (status = 404, body = super::ErrorResponse)))]
pub async fn get(
    State(hub): State<Hub>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, HubError> {
    let wanted = id.clone();
    let task = hub
        .store()
        .read(move |connection| tasks::get(connection, &wanted))
        .await?;
    task.map(|task| Json(task.to_row_json()))
        .ok_or_else(|| HubError::new(ErrorCode::NotFound, format!("no task '{id}'")))
}

/// `POST /api/tasks`: the original's body `{title, description, assignerId,
/// assigneeId, groupId, priority}`; answers with the body plus `id` and
/// `created_at`, and sends `task_assigned` to the assignee.
#[utoipa::path(post, path = "/api/tasks", tag = "tasks", request_body = Object,
    responses((status = 201, description = "the task", body = Object),
              (status = 404, body = super::ErrorResponse)))]
pub async fn create(
    State(hub): State<Hub>,
    caller: Caller,
    Json(mut body): Json<Map<String, Value>>,
) -> Result<(StatusCode, Json<Value>), HubError> {
    let named = match body.get("assignerId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => {
            return Err(HubError::new(
                ErrorCode::InvalidArgument,
                "assignerId must be a string",
            ))
        }
    };
    match (&caller.0, &named) {
        (Principal::Join, _) => {
            return Err(HubError::new(
                ErrorCode::Forbidden,
                "a join token cannot create tasks",
            ))
        }
        // The admin, or anyone in --open mode (as the original hub let
        // its clients), may create a task with no assigner.
        (Principal::Admin | Principal::Anonymous, None) => {}
        _ => {
            let assigner = caller.acting_agent(&hub, named.as_deref()).await?;
            body.insert("assignerId".into(), Value::String(assigner));
        }
    }
    let task = hub.create_task(body).await?;
    Ok((StatusCode::CREATED, Json(task.to_assigned_json())))
}
