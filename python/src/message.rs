//! One Python class for every event the hub sends, readable both like the
//! original SDK's dicts (`msg['fromName']`, `task['title']`) and by
//! attribute (`msg.from_name`).

use clawbot_connector::Event;
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::convert::to_python;

#[pyclass(module = "clawbot_connector._native", frozen, get_all)]
pub struct Message {
    /// `message`, `direct_message`, `mention`, `task_assigned`, `system`,
    /// `agent_list`, `connected` or `disconnected`.
    pub r#type: String,
    /// The hub's sequence number of a stored event.
    pub seq: Option<i64>,
    pub id: Option<String>,
    /// The sender's agent id (`msg['from']`).
    pub sender: Option<String>,
    /// The sender's display name (`msg['fromName']`).
    pub from_name: Option<String>,
    pub group_id: Option<String>,
    pub to: Option<String>,
    pub content: Option<String>,
    pub timestamp: Option<String>,
    /// For a mention: the id of the group message that carried it.
    pub message_id: Option<String>,
    pub client_id: Option<String>,
    /// A task's body (`task_assigned`) or the agents (`agent_list`).
    pub payload: Option<Py<PyAny>>,
}

impl Message {
    fn blank(kind: &str) -> Self {
        Message {
            r#type: kind.to_owned(),
            seq: None,
            id: None,
            sender: None,
            from_name: None,
            group_id: None,
            to: None,
            content: None,
            timestamp: None,
            message_id: None,
            client_id: None,
            payload: None,
        }
    }

    pub fn from_event(py: Python<'_>, event: Event) -> PyResult<Self> {
        Ok(match event {
            Event::Message(m) => Message {
                seq: Some(m.seq),
                id: Some(m.id),
                sender: Some(m.from),
                from_name: Some(m.from_name),
                group_id: Some(m.group_id),
                content: Some(m.content),
                timestamp: Some(m.timestamp),
                client_id: m.client_id,
                ..Message::blank("message")
            },
            Event::DirectMessage(m) => Message {
                seq: Some(m.seq),
                id: Some(m.id),
                sender: Some(m.from),
                from_name: Some(m.from_name),
                to: Some(m.to),
                content: Some(m.content),
                timestamp: Some(m.timestamp),
                client_id: m.client_id,
                ..Message::blank("direct_message")
            },
            Event::Mention(m) => Message {
                seq: Some(m.seq),
                id: Some(m.id),
                sender: Some(m.from),
                from_name: Some(m.from_name),
                group_id: Some(m.group_id),
                content: Some(m.content),
                timestamp: Some(m.timestamp),
                message_id: Some(m.message_id),
                ..Message::blank("mention")
            },
            Event::TaskAssigned { seq, task } => Message {
                seq: Some(seq),
                id: task["id"].as_str().map(str::to_owned),
                sender: task["assignerId"].as_str().map(str::to_owned),
                payload: Some(to_python(py, &task)?),
                ..Message::blank("task_assigned")
            },
            Event::TaskUpdate { seq, task, change } => {
                let payload = serde_json::json!({ "task": task, "change": change });
                Message {
                    seq: Some(seq),
                    id: Some(task.id.clone()),
                    sender: Some(change.actor.clone()),
                    timestamp: Some(change.at.clone()),
                    payload: Some(to_python(py, &payload)?),
                    ..Message::blank("task_update")
                }
            }
            Event::System {
                group_id,
                content,
                timestamp,
            } => Message {
                group_id: Some(group_id),
                content: Some(content),
                timestamp: Some(timestamp),
                ..Message::blank("system")
            },
            Event::AgentList(agents) => {
                let list = PyList::empty(py);
                for agent in agents {
                    list.append(to_python(
                        py,
                        &serde_json::to_value(agent).unwrap_or_default(),
                    )?)?;
                }
                Message {
                    payload: Some(list.into_any().unbind()),
                    ..Message::blank("agent_list")
                }
            }
            Event::Connected {
                agent_id,
                resumed_from,
            } => Message {
                seq: Some(resumed_from),
                to: Some(agent_id),
                ..Message::blank("connected")
            },
            Event::Disconnected { reason } => Message {
                content: Some(reason),
                ..Message::blank("disconnected")
            },
        })
    }

    /// One field by its original name: what `msg['content']` reads. Only
    /// that field becomes a Python object, not all of them (handlers read
    /// one or two fields of every event).
    fn field(&self, py: Python<'_>, key: &str) -> Option<Py<PyAny>> {
        let text = |value: &Option<String>| {
            value
                .as_deref()
                .map(|v| pyo3::types::PyString::new(py, v).into_any().unbind())
        };
        match key {
            "type" => text(&Some(self.r#type.clone())),
            "seq" => self
                .seq
                .map(|s| s.into_pyobject(py).unwrap().into_any().unbind()),
            "id" => text(&self.id),
            "from" => text(&self.sender),
            "fromName" => text(&self.from_name),
            "groupId" => text(&self.group_id),
            "to" => text(&self.to),
            "content" => text(&self.content),
            "timestamp" => text(&self.timestamp),
            "messageId" => text(&self.message_id),
            "clientId" => text(&self.client_id),
            _ => self
                .fields(py)
                .into_iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| value),
        }
    }

    /// The original frame's field names and their values.
    fn fields(&self, py: Python<'_>) -> Vec<(&'static str, Py<PyAny>)> {
        let text = |value: &Option<String>| {
            value
                .as_ref()
                .map(|v| v.into_pyobject(py).unwrap().into_any().unbind())
        };
        let mut fields: Vec<(&'static str, Option<Py<PyAny>>)> = vec![
            ("type", text(&Some(self.r#type.clone()))),
            (
                "seq",
                self.seq
                    .map(|s| s.into_pyobject(py).unwrap().into_any().unbind()),
            ),
            ("id", text(&self.id)),
            ("from", text(&self.sender)),
            ("fromName", text(&self.from_name)),
            ("groupId", text(&self.group_id)),
            ("to", text(&self.to)),
            ("content", text(&self.content)),
            ("timestamp", text(&self.timestamp)),
            ("messageId", text(&self.message_id)),
            ("clientId", text(&self.client_id)),
        ];
        match self.r#type.as_str() {
            "task_assigned" => {
                fields.push(("task", self.payload.as_ref().map(|p| p.clone_ref(py))))
            }
            "task_update" => {
                if let Some(payload) = &self.payload {
                    let payload = payload.bind(py);
                    for key in ["task", "change"] {
                        fields.push((key, payload.get_item(key).ok().map(|v| v.unbind())));
                    }
                }
            }
            "agent_list" => fields.push(("agents", self.payload.as_ref().map(|p| p.clone_ref(py)))),
            _ => {}
        }
        fields
            .into_iter()
            .filter_map(|(key, value)| value.map(|value| (key, value)))
            .collect()
    }
}

#[pymethods]
impl Message {
    fn __getitem__(&self, py: Python<'_>, key: &str) -> PyResult<Py<PyAny>> {
        self.field(py, key)
            .ok_or_else(|| PyKeyError::new_err(key.to_owned()))
    }

    #[pyo3(signature = (key, default=None))]
    fn get(&self, py: Python<'_>, key: &str, default: Option<Py<PyAny>>) -> Py<PyAny> {
        self.__getitem__(py, key)
            .unwrap_or_else(|_| default.unwrap_or_else(|| py.None()))
    }

    fn __contains__(&self, py: Python<'_>, key: &str) -> bool {
        self.field(py, key).is_some()
    }

    fn keys(&self, py: Python<'_>) -> Vec<&'static str> {
        self.fields(py).into_iter().map(|(name, _)| name).collect()
    }

    /// The event as a plain dict with the original frame's field names.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (key, value) in self.fields(py) {
            dict.set_item(key, value)?;
        }
        Ok(dict)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Message({})", self.to_dict(py)?.repr()?))
    }
}
