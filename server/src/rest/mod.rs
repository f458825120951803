//! The HTTP side: every REST route, registered in [`router`], and the
//! OpenAPI document that describes them.

pub mod agents;
pub mod auth;
mod extract;
pub mod groups;
pub mod install;
mod pagination;
mod rows;
pub mod tasks;
pub mod tokens;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use clawbot_connector::protocol::{ErrorBody, ErrorCode};
use serde::Serialize;
use tower_http::cors::CorsLayer;
use utoipa::OpenApi;

use crate::error::HubError;
use crate::hub::Hub;
use crate::store::now_iso;

/// Every error body: `{"error": {"code", "message"}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ClawBot Network hub",
        description = "REST API of the ClawBot Network hub. \
        Send `Authorization: Bearer <token>`; WebSocket protocol in references/PROTOCOL.md."
    ),
    paths(
        health,
        agents::list,
        agents::get,
        agents::inbox,
        agents::mark_inbox_read,
        agents::direct_messages,
        groups::list,
        groups::create,
        groups::get,
        groups::history,
        groups::post,
        tasks::list,
        tasks::get,
        tasks::create,
        tasks::change,
        tokens::create,
        tokens::list,
        tokens::revoke,
        install::installer,
        install::checksums,
        install::download,
    ),
    components(schemas(ErrorResponse, ErrorCode))
)]
pub struct ApiDoc;

/// The HTTP port's routes (REST, the OpenAPI document, and `/ws`).
pub fn router(hub: Hub) -> Router {
    let body_limit = hub.config().max_frame_bytes;
    Router::new()
        .route("/api/health", get(health))
        .route("/api/openapi.json", get(openapi))
        .route("/api/agents", get(agents::list))
        .route("/api/agents/{id}", get(agents::get))
        .route("/api/agents/{id}/inbox", get(agents::inbox))
        .route("/api/agents/{id}/inbox/read", post(agents::mark_inbox_read))
        .route("/api/agents/{id}/messages", get(agents::direct_messages))
        .route("/api/groups", get(groups::list).post(groups::create))
        .route("/api/groups/{id}", get(groups::get))
        .route(
            "/api/groups/{id}/messages",
            get(groups::history).post(groups::post),
        )
        .route("/api/tasks", get(tasks::list).post(tasks::create))
        .route("/api/tasks/{id}", get(tasks::get))
        .route("/api/tasks/{id}/{action}", post(tasks::change))
        .route("/api/tokens", get(tokens::list).post(tokens::create))
        .route("/api/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/ws", get(crate::ws::upgrade))
        .route("/install-clawbot.sh", get(install::installer))
        .route("/downloads/SHA256SUMS", get(install::checksums))
        .route("/downloads/{file}", get(install::download))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CorsLayer::permissive())
        .with_state(hub)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always "ok" while the hub answers.
    status: &'static str,
    /// Agents online now.
    agents: usize,
    timestamp: String,
}

/// `GET /api/health`: needs no token and shows no secrets.
#[utoipa::path(get, path = "/api/health", tag = "hub", responses((status = 200, body = Health)))]
pub async fn health(State(hub): State<Hub>) -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok",
        agents: hub.online_count(),
        timestamp: now_iso(),
    })
}

/// `GET /api/openapi.json`.
async fn openapi() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

async fn method_not_allowed() -> HubError {
    HubError::new(
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method",
    )
}

async fn not_found() -> HubError {
    HubError::new(ErrorCode::NotFound, "no such endpoint")
}
