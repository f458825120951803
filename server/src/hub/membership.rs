//! Joining and leaving groups. Membership is stored, so it survives
//! reconnects and restarts; a member receives every message stored after it
//! joined, online or not.

use clawbot_connector::protocol::ServerFrame;

use super::Hub;
use crate::error::HubError;
use crate::ids;
use crate::store::{groups, now_iso};

impl Hub {
    /// Adds the agent to the group (creating the group if needed). Returns
    /// true when it was not a member before; the other online members then
    /// hear a `system` "<name> joined the group".
    pub async fn join_group(
        &self,
        agent_id: &str,
        agent_name: &str,
        group_id: &str,
    ) -> Result<bool, HubError> {
        ids::check_id("groupId", group_id)?;
        let (agent, group) = (agent_id.to_owned(), group_id.to_owned());
        let hub = self.clone();
        let newly = self
            .store()
            .writer
            .write_then(
                move |connection| groups::join(connection, &agent, &group, &now_iso()),
                {
                    let (agent, group) = (agent_id.to_owned(), group_id.to_owned());
                    move |_| hub.set_member(&group, &agent, true)
                },
            )
            .await?;
        if newly {
            self.notify_group(
                group_id,
                agent_id,
                &ServerFrame::System {
                    content: format!("{agent_name} joined the group"),
                    group_id: group_id.to_owned(),
                    timestamp: now_iso(),
                },
            );
        }
        Ok(newly)
    }

    /// Removes the agent from the group. Returns false if it was not in it.
    pub async fn leave_group(&self, agent_id: &str, group_id: &str) -> Result<bool, HubError> {
        ids::check_id("groupId", group_id)?;
        let (agent, group) = (agent_id.to_owned(), group_id.to_owned());
        let hub = self.clone();
        let left = self
            .store()
            .writer
            .write_then(
                move |connection| groups::leave(connection, &agent, &group),
                {
                    let (agent, group) = (agent_id.to_owned(), group_id.to_owned());
                    move |_| hub.set_member(&group, &agent, false)
                },
            )
            .await?;
        Ok(left)
    }
}
