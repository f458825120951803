"""``clawbot-connector status``: what the running daemon last wrote in its
state file, checked against whether its process is still alive (a daemon
that was killed cannot say so itself)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, TextIO

from . import instance_lock, state_file

#: Exit codes, as an init script's ``status`` uses them.
CONNECTED = 0
NOT_CONNECTED = 1
NOT_RUNNING = 3


def report(path: Path) -> Dict[str, Any]:
    """The state file's content plus ``running``, ``connected`` and
    ``state_file``."""
    state = state_file.read(path) or {}
    # The pid alone could have been reused since a crash; the daemon's lock
    # cannot outlive it.
    running = (state.get("state") != "stopped" and state_file.pid_alive(state.get("pid"))
               and instance_lock.is_held(instance_lock.lock_path_for(path)) is not False)
    return {
        **state,
        "state_file": str(path),
        "running": running,
        "connected": running and state.get("state") == "connected",
    }


def exit_code(summary: Dict[str, Any]) -> int:
    if summary["connected"]:
        return CONNECTED
    return NOT_CONNECTED if summary["running"] else NOT_RUNNING


def _last_event(event: Any) -> str:
    if not isinstance(event, dict):
        return "none yet"
    text = str(event.get("type", "?")).replace("_", " ")
    if event.get("task_id"):
        text += f" {event['task_id']}"
    if event.get("from"):
        text += f" from {event['from']}"
    if event.get("group"):
        text += f" in {event['group']}"
    return text + f" at {event.get('at', '?')}"


def lines(summary: Dict[str, Any]) -> List[str]:
    """The human-readable report."""
    if not summary.get("pid"):
        return [f"not running (no state in {summary['state_file']}; start it with `clawbot-connector run`)"]
    if summary["running"]:
        headline = str(summary.get("state", "unknown"))
    elif summary.get("state") == "stopped":
        headline = f"not running (stopped at {summary.get('stopped_at', '?')})"
    else:
        headline = f"not running (process {summary['pid']} is gone; it was {summary.get('state', 'unknown')})"
    bridge = summary.get("bridge")
    rows = [
        headline,
        f"  hub:        {summary.get('hub', '?')}",
        f"  agent:      {summary.get('agent_id', '?')}",
        f"  pid:        {summary['pid']} (started {summary.get('started_at', '?')})",
        f"  bridge:     {', '.join(bridge) if bridge else 'off (logging only)'}",
        f"  last event: {_last_event(summary.get('last_event'))}",
    ]
    if summary["running"] and summary.get("state") == "connected":
        rows.insert(1, f"  since:      {summary.get('connected_at', '?')}")
    if summary.get("last_error") and not summary["connected"]:
        rows.append(f"  last error: {summary['last_error']}")
    return rows


def show(path: Path, as_json: bool, out: TextIO) -> int:
    summary = report(path)
    if as_json:
        out.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    else:
        out.write("\n".join(lines(summary)) + "\n")
    return exit_code(summary)
