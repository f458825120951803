//! What a machine joining the network downloads: the one-line installer
//! (`GET /install-clawbot.sh`) and the connector wheels the operator put in
//! the downloads directory (`GET /downloads/...`, with `SHA256SUMS`).
//!
//! These need no token and show no secrets: the installer is filled in
//! with the hub's public URL, and with a join token only when the request
//! carries a valid one (never an admin or agent token).

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use clawbot_connector::protocol::ErrorCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::extract::Path;
use crate::auth::Principal;
use crate::error::HubError;
use crate::hub::Hub;

/// The installer, with `@@HUB_URL@@` and `@@JOIN_TOKEN@@` to fill in.
const INSTALLER: &str = include_str!("../../../assets/install-clawbot.sh");

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstallQuery {
    /// A join token to write into the installed configuration.
    pub token: Option<String>,
}

/// `GET /install-clawbot.sh`: `curl -fsSL http://HUB:3001/install-clawbot.sh | bash`.
#[utoipa::path(get, path = "/install-clawbot.sh", tag = "install", params(InstallQuery),
    responses((status = 200, description = "a bash script", content_type = "text/x-shellscript"),
              (status = 403, body = super::ErrorResponse)))]
pub async fn installer(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Query(query): Query<InstallQuery>,
) -> Result<Response, HubError> {
    let join_token = match query.token.as_deref().filter(|t| !t.is_empty()) {
        None => String::new(),
        Some(token) => {
            let principal = hub
                .auth()
                .authenticate(Some(token))
                .await
                .map_err(|error| HubError::new(error.code(), error.message()))?;
            if principal != Principal::Join {
                // Anyone who fetches the script can read it: only a join
                // token, which cannot take over existing agents, goes in.
                return Err(HubError::new(
                    ErrorCode::Forbidden,
                    "only a join token may be put into the installer; make one with POST /api/tokens {\"kind\":\"join\"}",
                ));
            }
            token.to_owned()
        }
    };
    let hub_url = public_url(&hub, &headers)?;
    let script = INSTALLER
        .replace("@@HUB_URL@@", &hub_url)
        .replace("@@JOIN_TOKEN@@", &join_token);
    Ok((
        [
            (header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        script,
    )
        .into_response())
}

/// The configured public URL, or `http://<Host>` of the request.
fn public_url(hub: &Hub, headers: &HeaderMap) -> Result<String, HubError> {
    if let Some(url) = &hub.config().public_url {
        return Ok(url.clone());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .ok_or_else(|| {
            HubError::new(
                ErrorCode::InvalidArgument,
                "no usable Host header; start the hub with --public-url",
            )
        })?;
    Ok(format!("http://{host}"))
}

/// A downloadable file name: letters, digits, `.`, `_`, `-`, `+`, never a
/// path.
fn check_file_name(name: &str) -> Result<(), HubError> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if valid {
        Ok(())
    } else {
        Err(HubError::new(ErrorCode::NotFound, "no such download"))
    }
}

/// The wheels on offer, sorted.
async fn wheel_names(hub: &Hub) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(mut entries) = tokio::fs::read_dir(&hub.config().downloads_dir).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_file = entry.file_type().await.is_ok_and(|kind| kind.is_file());
            if is_file && name.ends_with(".whl") && check_file_name(&name).is_ok() {
                names.push(name);
            }
        }
    }
    names.sort();
    names
}

/// `GET /downloads/SHA256SUMS`: `<sha256>  <file>` for every wheel, the
/// format `sha256sum -c` reads.
#[utoipa::path(get, path = "/downloads/SHA256SUMS", tag = "install",
    responses((status = 200, description = "checksums", content_type = "text/plain")))]
pub async fn checksums(State(hub): State<Hub>) -> Result<Response, HubError> {
    let mut text = String::new();
    for name in wheel_names(&hub).await {
        let path = hub.config().downloads_dir.join(&name);
        let bytes = tokio::fs::read(&path).await.map_err(|error| {
            tracing::warn!(%error, file = %path.display(), "cannot read a download");
            HubError::new(ErrorCode::Internal, "a download could not be read")
        })?;
        text.push_str(&format!(
            "{}  {name}\n",
            hex::encode(Sha256::digest(&bytes))
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// `GET /downloads/:file`: one wheel.
#[utoipa::path(get, path = "/downloads/{file}", tag = "install",
    params(("file" = String, Path, description = "a file listed in SHA256SUMS")),
    responses((status = 200, description = "the file", content_type = "application/octet-stream"),
              (status = 404, body = super::ErrorResponse)))]
pub async fn download(
    State(hub): State<Hub>,
    Path(name): Path<String>,
) -> Result<Response, HubError> {
    check_file_name(&name)?;
    if !wheel_names(&hub).await.contains(&name) {
        return Err(HubError::new(ErrorCode::NotFound, "no such download"));
    }
    let bytes = tokio::fs::read(hub.config().downloads_dir.join(&name))
        .await
        .map_err(|_| HubError::new(ErrorCode::NotFound, "no such download"))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response())
}
