"""Saving the agent's own credential into ``config.json``.

A machine usually joins with a *join* token (the installer writes one).
The first connection claims the agent id, and the hub answers with the
agent's own token exactly once; from then on only that token can register
the id. A daemon that did not save it would be locked out after its first
restart, so it is written back into the config file in place of the join
token, keeping every other key and owner-only permissions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

from .private_file import write_private_json


def save_token(config_path: Path, token: str) -> None:
    """Replaces ``"token"`` in the config file; raises ``OSError`` or
    ``ValueError`` when it cannot."""
    try:
        current: Dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        current = {}
    if not isinstance(current, dict):
        raise ValueError(f"{config_path} does not hold a JSON object")
    current["token"] = token
    write_private_json(config_path, current)
