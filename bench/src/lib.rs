//! `clawbot-bench`: an open-loop load generator for ClawBot Network hubs.
//!
//! It speaks the original (legacy) protocol, which the Node.js hub also
//! understands, and protocol v2. Load is *open-loop*: every message or
//! request has a time it is scheduled for, fixed before the run starts, and
//! latency is measured from that time. A hub that slows down therefore shows
//! its queueing as latency instead of quietly lowering the offered rate.
//!
//! # Map
//!
//! - [`cli`]: the command line (clap): target options shared by every
//!   scenario, and one subcommand per scenario.
//! - [`target`]: where the load goes. Refuses anything but loopback unless a
//!   host is explicitly allowed; mints per-agent tokens over REST; opens
//!   WebSocket connections to the address it checked.
//! - [`ws`]: frames on the wire: building the few client frames we send,
//!   probing server frames cheaply, registering, and a receive loop with
//!   deadlines, a stop signal and v2 acknowledgements.
//! - [`schedule`]: the clock and the open-loop schedule (when message `i` is
//!   due, which messages belong to the warm-up).
//! - [`pipeline`]: sending a fixed number of messages as fast as the hub
//!   confirms them (fills backlogs and history before a measurement).
//! - [`stats`]: latency histograms (HDR), error tallies, CPU time and RSS
//!   read from `/proc`.
//! - [`report`]: one result per scenario: a human line, a JSON line, and the
//!   table that `clawbot-bench report` prints from JSON lines.
//! - [`compare`]: the results of several hubs (`--label`) side by side,
//!   with ratios to a baseline (`clawbot-bench report --compare original`).
//! - [`scenarios`]: one file per scenario (`dm`, `fanout`, `idle`, `backlog`,
//!   `history`).

pub mod cli;
pub mod compare;
pub mod pipeline;
pub mod report;
pub mod scenarios;
pub mod schedule;
pub mod stats;
pub mod target;
pub mod ws;
