//! Tokens and who a request or connection speaks for.
//!
//! Three kinds of token exist (see [`TokenKind`]); every one is 256 random
//! bits shown once and stored hashed. In `--open` mode a request without a
//! token is [`Principal::Anonymous`], which may use agent ids nobody has
//! claimed, as the original hub let everyone do.

use clawbot_connector::protocol::ErrorCode;
use sha2::{Digest, Sha256};

use crate::store::tokens::{self, TokenKind, TokenRecord};
use crate::store::{now_iso, Store, StoreError};

/// Who is speaking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Join,
    Agent(String),
    /// No token, accepted only in `--open` mode.
    Anonymous,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin)
    }
}

/// A fresh token: `cbn_` and 64 hex digits.
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("cbn_{}", hex::encode(bytes))
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Stores a new token of `kind` and returns it with its record.
pub fn mint(
    connection: &rusqlite::Connection,
    kind: TokenKind,
    agent_id: Option<&str>,
    label: &str,
) -> Result<(String, TokenRecord), StoreError> {
    let token = generate_token();
    let record = TokenRecord {
        id: format!("tok-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
        kind,
        agent_id: agent_id.map(str::to_owned),
        label: label.to_owned(),
        created_at: now_iso(),
    };
    tokens::insert(connection, &record, &hash_token(&token))?;
    Ok((token, record))
}

/// Resolves tokens to principals.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    /// Hash of the admin token given by flag or environment; it lives only
    /// in memory so changing the flag rotates it.
    configured_admin_hash: Option<String>,
    open: bool,
}

pub enum AuthError {
    Missing,
    Unknown,
    Store(StoreError),
}

impl AuthError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing | AuthError::Unknown => ErrorCode::Unauthorized,
            AuthError::Store(_) => ErrorCode::Internal,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            AuthError::Missing => {
                "a token is required: send 'Authorization: Bearer <token>' (or ?token= on the WebSocket URL)"
            }
            AuthError::Unknown => "the token is not valid on this hub",
            AuthError::Store(_) => "the hub could not check the token",
        }
    }
}

impl Authenticator {
    pub fn new(store: Store, configured_admin_token: Option<&str>, open: bool) -> Self {
        Authenticator {
            store,
            configured_admin_hash: configured_admin_token.map(hash_token),
            open,
        }
    }

    pub async fn authenticate(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return if self.open {
                Ok(Principal::Anonymous)
            } else {
                Err(AuthError::Missing)
            };
        };
        let hash = hash_token(token);
        if self.configured_admin_hash.as_deref() == Some(hash.as_str()) {
            return Ok(Principal::Admin);
        }
        let record = self
            .store
            .read_here(move |connection| tokens::find_by_hash(connection, &hash))
            .await
            .map_err(AuthError::Store)?;
        match record {
            // A configured admin token replaces the generated one: setting
            // --token is how the operator rotates it.
            Some(record)
                if record.kind == TokenKind::Admin && self.configured_admin_hash.is_some() =>
            {
                Err(AuthError::Unknown)
            }
            Some(record) => Ok(match record.kind {
                TokenKind::Admin => Principal::Admin,
                TokenKind::Join => Principal::Join,
                TokenKind::Agent => Principal::Agent(record.agent_id.unwrap_or_default()),
            }),
            None => Err(AuthError::Unknown),
        }
    }
}

/// On first start with no admin token configured, makes one, stores its hash
/// and writes it to `<data dir>/admin-token` readable by the owner only.
/// Returns the path when a token was created.
pub async fn ensure_admin_token(
    store: &Store,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    let has_admin = store
        .read(|connection| tokens::has_kind(connection, TokenKind::Admin))
        .await?;
    if has_admin {
        return Ok(None);
    }
    let (token, _) = store
        .writer
        .write(|connection| {
            mint(
                connection,
                TokenKind::Admin,
                None,
                "generated at first start",
            )
        })
        .await?;
    let path = data_dir.join("admin-token");
    write_private_file(&path, &format!("{token}\n"))?;
    Ok(Some(path))
}

/// Writes a file only its owner can read (mode 0600 on Unix).
pub fn write_private_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}
