"""How the daemon reports an event: one log line, and a small record for the
state file.

Log lines are single lines whatever the content holds (newlines and control
characters are escaped) and quote at most an excerpt of it, so a log stays
greppable and a huge message cannot flood it. Nothing here touches tokens.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Dict, Optional

from ._native import Message

#: How much message text a log line quotes.
EXCERPT_CHARS = 120


def excerpt(text: Optional[str], limit: int = EXCERPT_CHARS) -> str:
    """``text`` shortened and quoted as one JSON string (so escaped)."""
    text = text or ""
    if len(text) > limit:
        text = text[:limit] + "…"
    return json.dumps(text, ensure_ascii=False)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _task_of(message: Message) -> Dict[str, Any]:
    task = message.payload
    return task if isinstance(task, dict) else {}


def describe(message: Message) -> Optional[str]:
    """The log line for ``message``; None for events not worth a line
    (presence lists, which the hub sends on every change)."""
    kind = message.type
    seq = f" (seq {message.seq})" if message.seq is not None else ""
    who = message.sender or "?"
    if kind == "message":
        return f"message from {who} in {message.group_id}{seq}: {excerpt(message.content)}"
    if kind == "mention":
        return f"mention from {who} in {message.group_id}{seq}: {excerpt(message.content)}"
    if kind == "direct_message":
        return f"direct message from {who}{seq}: {excerpt(message.content)}"
    if kind == "task_assigned":
        task = _task_of(message)
        by = f" by {task['assignerId']}" if task.get("assignerId") else ""
        return f"task {task.get('id')} assigned{by}{seq}: {excerpt(str(task.get('title', '')))}"
    if kind == "task_update":
        task = message.get("task") or {}
        return f"task {task.get('id')} is now {task.get('status')} (by {who})"
    if kind == "system":
        return f"system in {message.group_id}: {excerpt(message.content)}"
    if kind == "connected":
        return f"connected as {message.to}, resuming after seq {message.seq}"
    if kind == "disconnected":
        return f"disconnected ({message.content}); reconnecting"
    return None


def record(message: Message) -> Dict[str, Any]:
    """What the state file keeps of the last event: who, where, when, never
    the content."""
    entry: Dict[str, Any] = {"type": message.type, "at": now_iso()}
    for key, value in (("from", message.sender), ("group", message.group_id), ("seq", message.seq)):
        if value is not None:
            entry[key] = value
    if message.type == "task_assigned":
        task = _task_of(message)
        entry["task_id"] = task.get("id")
        if task.get("groupId"):
            entry["group"] = task["groupId"]
    elif message.type == "task_update":
        entry["task_id"] = (message.get("task") or {}).get("id")
    return entry
