//! The background side of tasks: deadlines, leases, and pending tasks.
//!
//! A task held by an agent is leased to it for as long as its connection
//! lives: the hub pings every connection and drops a dead one within the
//! idle timeout, so the lease follows the heartbeat, not a guessed
//! duration, and a long task whose agent is alive is never handed out
//! twice. When the agent disconnects it has one more idle timeout to come
//! back; after that a capability task goes to another eligible agent (up
//! to its maximum attempts, then it is dead), while a task for a named
//! agent waits for that agent.

use std::time::Duration;

use clawbot_connector::protocol::TaskStatus;

use super::tasks::{Actor, TaskOp};
use super::Hub;
use crate::store::{now_iso, tasks};

/// How often deadlines and leases are checked even when nothing happens.
const TICK: Duration = Duration::from_secs(1);

pub(super) async fn supervise(hub: Hub) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = hub.shared.tasks_changed.notified() => {}
            () = hub.shared.shutdown.cancelled() => return,
        }
        if let Err(error) = hub.supervise_once().await {
            tracing::warn!(message = %error.message, "task supervision failed; retrying");
        }
    }
}

impl Hub {
    async fn supervise_once(&self) -> Result<(), crate::error::HubError> {
        let now = now_iso();
        let overdue = self
            .store()
            .read(move |connection| tasks::overdue(connection, &now))
            .await?;
        for task in overdue {
            self.apply_quietly(&task.id, TaskOp::TimeOut).await;
        }
        // A task for a named agent waits for that agent: only capability
        // tasks are routed.
        let open = self.store().read(tasks::open_for_capabilities).await?;
        let grace = self.config().idle_timeout;
        for task in open {
            let Some(capability) = &task.capability else {
                continue;
            };
            let candidates = self.online_with_capability(capability);
            if task.status == TaskStatus::Pending {
                if !candidates.is_empty() {
                    self.apply_quietly(&task.id, TaskOp::Offer { candidates })
                        .await;
                }
                continue;
            }
            let lapsed = task
                .assignee_id
                .as_deref()
                .and_then(|assignee| self.offline_for(assignee))
                .is_some_and(|offline| offline >= grace);
            if lapsed {
                tracing::info!(task = %task.id, assignee = ?task.assignee_id, "lease lapsed");
                self.apply_quietly(&task.id, TaskOp::Lapse { candidates })
                    .await;
            }
        }
        Ok(())
    }

    /// A hub-made change; a task that moved on meanwhile refuses it, which
    /// is fine.
    async fn apply_quietly(&self, task_id: &str, op: TaskOp) {
        if let Err(error) = self.change_task(Actor::Hub, task_id, op).await {
            tracing::debug!(task = task_id, message = %error.message, "task change skipped");
        }
    }
}
