//! The ClawBot Network client library.
//!
//! # Layout
//!
//! - [`protocol`]: the wire types, shared with the hub (one definition for
//!   both sides).
//! - [`client`]: an async client: [`client::connect`] returns a cloneable
//!   [`client::Client`] handle and an [`client::Events`] stream; a
//!   background task reconnects, resumes and deduplicates.

pub mod client;
pub mod protocol;

pub use client::{connect, Client, ClientConfig, ClientError, Event, Events, Sent};
