"""The running daemon's state file, which ``clawbot-connector status`` reads.

It holds the daemon's pid, connection state, hub URL, agent id and last
event (never a token or message text), is replaced atomically so a reader
never sees half a file, and is readable only by its owner: who talks to
whom is nobody else's business.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Optional

from .event_log import now_iso
from .private_file import write_private_json

logger = logging.getLogger("clawbot_connector.daemon")


def write(path: Path, state: Dict[str, Any]) -> None:
    write_private_json(path, state, sort_keys=True)


def read(path: Path) -> Optional[Dict[str, Any]]:
    """The state, or None when there is no usable file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # It exists; it is just not ours to signal.
        return True
    return True


class StateFile:
    """The daemon's side: keeps the current state and rewrites the file on
    every change."""

    def __init__(self, path: Path, **fixed: Any) -> None:
        self.path = path
        self.state: Dict[str, Any] = {"pid": os.getpid(), "started_at": now_iso(), **fixed}

    def update(self, **changes: Any) -> None:
        self.state.update(changes)
        self.state["updated_at"] = now_iso()
        try:
            write(self.path, self.state)
        except OSError as error:
            # Status reporting is a convenience; losing it must not stop
            # the bridge.
            logger.warning("cannot write the state file %s: %s", self.path, error)
