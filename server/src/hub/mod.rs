//! The hub's live state: who is connected, who is in which group, and the
//! routing of committed events to connections.
//!
//! The database is the truth; this is a cache of what routing needs on
//! every message (memberships, names for mentions) plus what only exists
//! while connected (sessions). Every change to the cache that mirrors the
//! database is made in a writer `after` step, in commit order.

pub mod membership;
pub mod messaging;
pub mod outbox;
pub mod session;
mod task_supervisor;
pub mod tasks;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use clawbot_connector::protocol::{AgentStatus, AgentSummary, ServerFrame, CLOSE_REPLACED};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::mentions::Directory;
use crate::store::agents::{self, AgentRecord};
use crate::store::event::{Event, EventKind};
use crate::store::{groups, now_iso, Store, StoreError};
use outbox::Rendered;
use session::Session;

/// How long presence changes are gathered before they go out (`agent_list`
/// to legacy clients, `presence` to v2 followers): a burst of registers
/// costs one broadcast, not one each.
const PRESENCE_DEBOUNCE: Duration = Duration::from_millis(100);
/// How often delivery cursors of live sessions are saved.
const CURSOR_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long a register waits for the connection it replaces to stop
/// reading. What that socket already holds is read in microseconds; a
/// client that went away without closing costs its replacement this much.
const RETIRE_WAIT: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    config: Config,
    store: Store,
    auth: Authenticator,
    /// Connected agents by id. Std mutexes throughout: each is held for a
    /// few map operations and never across an `.await`.
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Group id to member agent ids, mirroring `memberships`.
    members: Mutex<HashMap<String, HashSet<String>>>,
    /// Names and ids for mention matching, mirroring `agents`.
    directory: RwLock<Directory>,
    /// Profiles of every known agent, for presence and listings.
    profiles: RwLock<HashMap<String, AgentRecord>>,
    /// Agents that came or went since the last presence broadcast.
    presence_changes: Mutex<HashSet<String>>,
    /// Wakes the presence broadcast.
    presence_changed: Notify,
    next_conn_id: AtomicU64,
    /// Open WebSocket connections, so shutdown can wait for them to save
    /// their cursors.
    connections: TaskTracker,
    /// When each offline agent that was online since start went away, and
    /// what it had confirmed; an agent not in here and not online has been
    /// away since `started`.
    departures: Mutex<HashMap<String, Departure>>,
    started: Instant,
    /// Wakes the task supervisor: an agent came, a task ended or waits.
    tasks_changed: Notify,
    shutdown: CancellationToken,
}

/// An agent's last connection ended.
struct Departure {
    at: Instant,
    /// What that connection had confirmed. Its cursor is saved to the store
    /// a moment later; a reconnect in between must not resume from the
    /// older stored one and deliver again what was confirmed.
    cursor: i64,
}

/// Closes a connection that a newer one of the same agent replaces.
fn close_replaced(session: &Session) {
    session
        .outbox
        .close(CLOSE_REPLACED, "replaced by a newer connection");
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    /// Loads routing state from the store and starts the background tasks.
    pub async fn start(
        config: Config,
        store: Store,
        shutdown: CancellationToken,
    ) -> Result<Hub, StoreError> {
        let (known_agents, memberships) = store
            .read(|connection| {
                Ok((
                    agents::list(connection)?,
                    groups::all_memberships(connection)?,
                ))
            })
            .await?;
        let mut directory = Directory::default();
        let mut profiles = HashMap::new();
        for agent in known_agents {
            directory.upsert(&agent.id, &agent.name);
            profiles.insert(agent.id.clone(), agent);
        }
        let mut members: HashMap<String, HashSet<String>> = HashMap::new();
        for (group_id, agent_id) in memberships {
            members.entry(group_id).or_default().insert(agent_id);
        }
        let auth = Authenticator::new(store.clone(), config.admin_token.as_deref(), config.open);
        let hub = Hub {
            shared: Arc::new(Shared {
                config,
                store,
                auth,
                sessions: Mutex::new(HashMap::new()),
                members: Mutex::new(members),
                directory: RwLock::new(directory),
                profiles: RwLock::new(profiles),
                presence_changes: Mutex::new(HashSet::new()),
                presence_changed: Notify::new(),
                next_conn_id: AtomicU64::new(1),
                connections: TaskTracker::new(),
                departures: Mutex::new(HashMap::new()),
                started: Instant::now(),
                tasks_changed: Notify::new(),
                shutdown,
            }),
        };
        tokio::spawn(hub.clone().broadcast_presence());
        tokio::spawn(hub.clone().flush_cursors_periodically());
        tokio::spawn(task_supervisor::supervise(hub.clone()));
        Ok(hub)
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn auth(&self) -> &Authenticator {
        &self.shared.auth
    }

    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shared.shutdown
    }

    pub fn connections(&self) -> &TaskTracker {
        &self.shared.connections
    }

    pub fn next_conn_id(&self) -> u64 {
        self.shared.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_online(&self, agent_id: &str) -> bool {
        lock(&self.shared.sessions).contains_key(agent_id)
    }

    pub fn online_count(&self) -> usize {
        lock(&self.shared.sessions).len()
    }

    pub fn session(&self, agent_id: &str) -> Option<Arc<Session>> {
        lock(&self.shared.sessions).get(agent_id).cloned()
    }

    /// Records a registered profile for listings and mentions.
    pub fn remember_agent(&self, agent: &AgentRecord) {
        self.shared
            .directory
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .upsert(&agent.id, &agent.name);
        self.shared
            .profiles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent.id.clone(), agent.clone());
    }

    pub fn resolve_mentions(&self, text: &str) -> crate::mentions::Resolved {
        self.shared
            .directory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .resolve(text)
    }

    /// Another agent whose id is `name` (case-insensitively), if any: a
    /// display name must not pass for someone else's id.
    pub fn name_is_anothers_id(&self, agent_id: &str, name: &str) -> Option<String> {
        self.shared
            .directory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .id_owner_other_than(agent_id, name)
    }

    /// Wakes the task supervisor.
    pub fn tasks_changed(&self) {
        self.shared.tasks_changed.notify_one();
    }

    /// How long an agent has been offline; `None` while it is online.
    pub fn offline_for(&self, agent_id: &str) -> Option<Duration> {
        if self.is_online(agent_id) {
            return None;
        }
        let since = lock(&self.shared.departures)
            .get(agent_id)
            .map_or(self.shared.started, |departure| departure.at);
        Some(since.elapsed())
    }

    /// Online agents that declared `capability`, by id.
    pub fn online_with_capability(&self, capability: &str) -> Vec<String> {
        let online: Vec<String> = lock(&self.shared.sessions).keys().cloned().collect();
        let profiles = self
            .shared
            .profiles
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut capable: Vec<String> = online
            .into_iter()
            .filter(|id| {
                profiles
                    .get(id)
                    .is_some_and(|agent| agent.capabilities.iter().any(|c| c == capability))
            })
            .collect();
        capable.sort();
        capable
    }

    /// Whether any known agent, online or not, declared `capability`.
    pub fn capability_known(&self, capability: &str) -> bool {
        self.shared
            .profiles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|agent| agent.capabilities.iter().any(|c| c == capability))
    }

    /// Whether `agent_id` is known to have registered. Profiles are added
    /// only after the registration commits and agents are never removed,
    /// so `true` is final; `false` may be a registration that committed a
    /// moment ago, which only the database can tell.
    pub fn is_known_agent(&self, agent_id: &str) -> bool {
        self.shared
            .profiles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(agent_id)
    }

    pub fn agent_name(&self, agent_id: &str) -> Option<String> {
        self.shared
            .profiles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent_id)
            .map(|agent| agent.name.clone())
    }

    /// Closes the agent's live connection, if it has one, and waits (at most
    /// [`RETIRE_WAIT`]) until it has stopped reading. What the client
    /// confirmed on it just before reconnecting may still sit unread in its
    /// socket; once read it counts in the cursor that [`Hub::attach`]
    /// returns, and the new connection does not send it again.
    pub async fn retire(&self, agent_id: &str) {
        let Some(live) = lock(&self.shared.sessions).get(agent_id).cloned() else {
            return;
        };
        close_replaced(&live);
        let _ = tokio::time::timeout(RETIRE_WAIT, live.outbox.reading_done.cancelled()).await;
    }

    /// Makes `session` the agent's live connection; a previous connection of
    /// the same agent is closed with [`CLOSE_REPLACED`]. Returns the highest
    /// seq the agent's earlier connections confirmed that the store may not
    /// have yet (0 if none).
    pub fn attach(&self, session: Arc<Session>) -> i64 {
        let previous =
            lock(&self.shared.sessions).insert(session.agent_id.clone(), Arc::clone(&session));
        if let Some(previous) = &previous {
            close_replaced(previous);
        }
        let departed = lock(&self.shared.departures).remove(&session.agent_id);
        self.presence_changed(&session.agent_id);
        self.tasks_changed();
        let replaced = previous.map_or(0, |previous| previous.cursor());
        replaced.max(departed.map_or(0, |departure| departure.cursor))
    }

    /// Removes `session` if it is still the agent's live connection, and
    /// saves its cursor and last-seen time.
    pub async fn detach(&self, session: &Arc<Session>) {
        let removed = {
            let mut sessions = lock(&self.shared.sessions);
            let current = sessions
                .get(&session.agent_id)
                .is_some_and(|live| live.conn_id == session.conn_id);
            if current {
                sessions.remove(&session.agent_id);
                // Under the same lock as the removal: a register that no
                // longer finds this session finds its cursor here.
                let departure = Departure {
                    at: Instant::now(),
                    cursor: session.cursor(),
                };
                lock(&self.shared.departures).insert(session.agent_id.clone(), departure);
            }
            current
        };
        let agent_id = session.agent_id.clone();
        let cursor = session.cursor();
        let now = now_iso();
        let saved = self
            .store()
            .writer
            .write(move |connection| {
                agents::advance_cursor(connection, &agent_id, cursor)?;
                agents::touch_last_seen(connection, &agent_id, &now)
            })
            .await;
        if let Err(error) = saved {
            tracing::warn!(%error, agent = %session.agent_id, "could not save the cursor");
        }
        if removed {
            if let Some(profile) = self
                .shared
                .profiles
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&session.agent_id)
            {
                profile.last_seen = now_iso();
            }
        }
        if removed {
            self.presence_changed(&session.agent_id);
        }
    }

    fn presence_changed(&self, agent_id: &str) {
        lock(&self.shared.presence_changes).insert(agent_id.to_owned());
        self.shared.presence_changed.notify_one();
    }

    /// Hands committed events to the live sessions that should see them.
    /// Runs on the writer thread, in commit order.
    pub fn dispatch(&self, events: &[Arc<Event>]) {
        let sessions = lock(&self.shared.sessions);
        for event in events {
            match (event.kind, &event.group_id, &event.recipient) {
                (EventKind::Message, Some(group_id), _) => {
                    let members = lock(&self.shared.members);
                    for member in members.get(group_id).into_iter().flatten() {
                        if let Some(session) = sessions.get(member) {
                            session.outbox.offer_event(event);
                        }
                    }
                }
                (_, _, Some(recipient)) => {
                    if let Some(session) = sessions.get(recipient) {
                        session.outbox.offer_event(event);
                    }
                }
                _ => {}
            }
        }
    }

    /// Mirrors a committed join or leave. Runs on the writer thread.
    pub fn set_member(&self, group_id: &str, agent_id: &str, member: bool) {
        let mut members = lock(&self.shared.members);
        if member {
            members
                .entry(group_id.to_owned())
                .or_default()
                .insert(agent_id.to_owned());
        } else if let Some(set) = members.get_mut(group_id) {
            set.remove(agent_id);
        }
    }

    /// Sends an ephemeral frame to the online members of a group.
    pub fn notify_group(&self, group_id: &str, except: &str, frame: &ServerFrame) {
        let rendered = render(frame);
        let sessions = lock(&self.shared.sessions);
        let members = lock(&self.shared.members);
        for member in members.get(group_id).into_iter().flatten() {
            if member == except {
                continue;
            }
            if let Some(session) = sessions.get(member) {
                session.outbox.push_frame(rendered.clone());
            }
        }
    }

    /// Every known agent with its status, by id.
    pub fn agent_summaries(&self) -> Vec<AgentSummary> {
        let online: HashSet<String> = lock(&self.shared.sessions).keys().cloned().collect();
        let now = now_iso();
        let profiles = self
            .shared
            .profiles
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut summaries: Vec<AgentSummary> = profiles
            .values()
            .map(|agent| summarize(agent, online.contains(&agent.id), &now))
            .collect();
        summaries.sort_by(|a, b| a.id.cmp(&b.id));
        summaries
    }

    pub fn agent_summary(&self, agent_id: &str) -> Option<AgentSummary> {
        let online = self.is_online(agent_id);
        let profiles = self
            .shared
            .profiles
            .read()
            .unwrap_or_else(|p| p.into_inner());
        profiles
            .get(agent_id)
            .map(|agent| summarize(agent, online, &now_iso()))
    }

    /// The original's `agent_list`: online agents only.
    pub fn agent_list_frame(&self) -> Rendered {
        let agents = self
            .agent_summaries()
            .into_iter()
            .filter(|agent| agent.status == AgentStatus::Online)
            .collect();
        render(&ServerFrame::AgentList { agents })
    }

    /// `presence`: the agents in `changed` as they are now, by id.
    fn presence_frame(&self, changed: &HashSet<String>) -> Rendered {
        let now = now_iso();
        let online: Vec<bool> = {
            let sessions = lock(&self.shared.sessions);
            changed.iter().map(|id| sessions.contains_key(id)).collect()
        };
        let profiles = self
            .shared
            .profiles
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut agents: Vec<AgentSummary> = changed
            .iter()
            .zip(online)
            .filter_map(|(id, online)| profiles.get(id).map(|agent| summarize(agent, online, &now)))
            .collect();
        drop(profiles);
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        render(&ServerFrame::Presence { agents })
    }

    /// After presence changes, gathered for [`PRESENCE_DEBOUNCE`]: the
    /// whole `agent_list` to every legacy connection, as the original did,
    /// and only what changed to v2 connections that follow presence. v2
    /// connections that do not follow it get nothing, so a hub full of
    /// them does no work per connection when agents come and go.
    async fn broadcast_presence(self) {
        loop {
            tokio::select! {
                () = self.shared.presence_changed.notified() => {}
                () = self.shared.shutdown.cancelled() => return,
            }
            tokio::time::sleep(PRESENCE_DEBOUNCE).await;
            let changed = std::mem::take(&mut *lock(&self.shared.presence_changes));
            if changed.is_empty() {
                continue;
            }
            let (legacy, followers): (Vec<Arc<Session>>, Vec<Arc<Session>>) =
                lock(&self.shared.sessions)
                    .values()
                    .filter(|session| session.follows_presence)
                    .cloned()
                    .partition(|session| !session.is_v2());
            if !legacy.is_empty() {
                let frame = self.agent_list_frame();
                for session in legacy {
                    session.outbox.push_frame(frame.clone());
                }
            }
            if !followers.is_empty() {
                let frame = self.presence_frame(&changed);
                for session in followers {
                    session.outbox.push_frame(frame.clone());
                }
            }
        }
    }

    /// Saves the cursors of live sessions now and then, so a crash costs at
    /// most a second of redelivery, never a loss.
    async fn flush_cursors_periodically(self) {
        let mut saved: HashMap<String, i64> = HashMap::new();
        let mut interval = tokio::time::interval(CURSOR_FLUSH_INTERVAL);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = self.shared.shutdown.cancelled() => return,
            }
            let sessions: Vec<Arc<Session>> =
                lock(&self.shared.sessions).values().cloned().collect();
            let changed: Vec<(String, i64)> = sessions
                .iter()
                .map(|session| (session.agent_id.clone(), session.cursor()))
                .filter(|(agent_id, cursor)| saved.get(agent_id) != Some(cursor) && *cursor > 0)
                .collect();
            if changed.is_empty() {
                continue;
            }
            let to_save = changed.clone();
            let result = self
                .store()
                .writer
                .write(move |connection| {
                    for (agent_id, cursor) in &to_save {
                        agents::advance_cursor(connection, agent_id, *cursor)?;
                    }
                    Ok(())
                })
                .await;
            match result {
                Ok(()) => saved.extend(changed),
                Err(error) => tracing::warn!(%error, "could not save cursors"),
            }
            saved.retain(|agent_id, _| sessions.iter().any(|s| &s.agent_id == agent_id));
        }
    }
}

/// Renders a frame to JSON text once.
pub fn render(frame: &ServerFrame) -> Rendered {
    serde_json::to_string(frame)
        .expect("frames always serialize")
        .into()
}

fn summarize(agent: &AgentRecord, online: bool, now: &str) -> AgentSummary {
    AgentSummary {
        id: agent.id.clone(),
        name: agent.name.clone(),
        role: agent.role.clone(),
        device: agent.device.clone(),
        status: if online {
            AgentStatus::Online
        } else {
            AgentStatus::Offline
        },
        capabilities: agent.capabilities.clone(),
        last_seen: if online {
            now.to_owned()
        } else {
            agent.last_seen.clone()
        },
        joined_at: agent.joined_at.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::Poll;

    use super::outbox::Outbox;
    use super::*;
    use crate::config::Synchronous;

    fn session(conn_id: u64, confirmed: i64) -> Arc<Session> {
        let outbox = Outbox::new(16, 1 << 20);
        outbox.set_sent_seq(confirmed);
        outbox.confirm(confirmed);
        Arc::new(Session {
            conn_id,
            agent_id: "bob".into(),
            name: "Bob".into(),
            protocol: 1,
            outbox,
            registered_at_seq: 0,
            follows_presence: false,
        })
    }

    /// A connection ends and its cursor waits behind a busy writer; a new
    /// connection of the same agent attaching meanwhile must still learn
    /// what the old one confirmed, or it sends those events again.
    #[tokio::test]
    async fn attach_returns_what_a_just_ended_connection_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let opened = Store::open(dir.path(), Synchronous::Normal, Duration::ZERO).unwrap();
        let hub = Hub::start(
            Config::for_tests(dir.path()),
            opened.store,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(hub.attach(session(1, 5)), 0);
        let old = lock(&hub.shared.sessions).get("bob").cloned().unwrap();

        // Hold the writer, so that detach cannot save the cursor yet.
        let (release, held) = hub.store().writer.hold().await;
        // Polled once, detach leaves the live map and then waits for the
        // writer.
        let mut detaching = Box::pin(hub.detach(&old));
        let first = std::future::poll_fn(|cx| Poll::Ready(detaching.as_mut().poll(cx))).await;
        assert!(first.is_pending());
        assert!(!hub.is_online("bob"));

        assert_eq!(hub.attach(session(2, 0)), 5);
        release.send(()).unwrap();
        held.await.unwrap();
        detaching.await;
    }
}
