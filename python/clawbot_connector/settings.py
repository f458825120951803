"""Where settings come from: arguments, then ``CLAWBOT_*`` environment
variables, then ``~/.clawbot-network/config.json``, then defaults.

The default hub is ``ws://127.0.0.1:3002`` (this machine), never a remote
address.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

DEFAULT_SERVER_URL = "ws://127.0.0.1:3002"
DEFAULT_GROUP = "clawdbots"
CONFIG_DIR = Path.home() / ".clawbot-network"

_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Settings:
    """Everything needed to connect, after every source is merged."""

    server_url: str = DEFAULT_SERVER_URL
    token: Optional[str] = None
    bot_id: str = ""
    bot_name: str = ""
    device: str = ""
    role: str = ""
    capabilities: List[str] = field(default_factory=list)
    groups: List[str] = field(default_factory=lambda: [DEFAULT_GROUP])
    rest_url: Optional[str] = None
    connect_timeout: float = 10.0


def config_path() -> Path:
    """``$CLAWBOT_CONFIG``, else ``~/.clawbot-network/config.json``."""
    explicit = os.environ.get("CLAWBOT_CONFIG")
    return Path(explicit) if explicit else CONFIG_DIR / "config.json"


def load_config_file(path: Optional[Path] = None) -> Dict[str, Any]:
    """The config file as a dict; empty when there is none. A file that is
    not a JSON object is an error, not something to ignore silently."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def _split(value: str) -> List[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _environment() -> Dict[str, Any]:
    names = {
        "server_url": "CLAWBOT_SERVER_URL",
        "rest_url": "CLAWBOT_REST_URL",
        "token": "CLAWBOT_TOKEN",
        "bot_id": "CLAWBOT_BOT_ID",
        "bot_name": "CLAWBOT_BOT_NAME",
        "device": "CLAWBOT_DEVICE",
        "role": "CLAWBOT_ROLE",
    }
    found: Dict[str, Any] = {key: os.environ[var] for key, var in names.items() if os.environ.get(var)}
    for key, var in (("capabilities", "CLAWBOT_CAPABILITIES"), ("groups", "CLAWBOT_GROUPS")):
        if os.environ.get(var) is not None:
            found[key] = _split(os.environ[var])
    return found


def default_bot_id() -> str:
    """``clawdbot-<hostname>``, made a valid agent id."""
    host = _ID_CHARS.sub("-", socket.gethostname()).strip("-._") or "host"
    return f"clawdbot-{host}"[:64]


def soul_name(workspace: Optional[Path] = None) -> Optional[str]:
    """The ``Name:`` line of the OpenClaw workspace's SOUL.md, if any."""
    candidates = []
    if workspace is not None:
        candidates.append(workspace)
    if os.environ.get("OPENCLAW_WORKSPACE"):
        candidates.append(Path(os.environ["OPENCLAW_WORKSPACE"]))
    candidates.append(Path.home() / ".openclaw" / "workspace")
    for directory in candidates:
        try:
            text = (directory / "SOUL.md").read_text(encoding="utf-8")
        except OSError:
            continue
        for line in text.splitlines():
            # Accept "Name: X", "- **Name:** X", "# Name: X".
            stripped = line.strip().lstrip("-*#> ").replace("**", "")
            match = re.match(r"(?i)name\s*:\s*(.+)", stripped)
            if match and match.group(1).strip():
                return match.group(1).strip()
    return None


def default_device() -> str:
    system = platform.system()
    return f"{'macOS' if system == 'Darwin' else system or 'unknown'}-{platform.machine() or 'unknown'}"


def resolve(arguments: Mapping[str, Any], file: Optional[Mapping[str, Any]] = None) -> Settings:
    """Merges arguments (non-None win), environment, config file, defaults."""
    merged: Dict[str, Any] = {}
    file_values = load_config_file() if file is None else dict(file)
    known = set(Settings.__dataclass_fields__)
    for source in (file_values, _environment(), {k: v for k, v in arguments.items() if v is not None}):
        merged.update({key: value for key, value in source.items() if key in known})
    if not merged.get("bot_id"):
        merged["bot_id"] = default_bot_id()
    if not merged.get("bot_name"):
        merged["bot_name"] = soul_name() or f"ClawBot@{socket.gethostname()}"
    if not merged.get("device"):
        merged["device"] = default_device()
    for key in ("capabilities", "groups"):
        if isinstance(merged.get(key), str):
            merged[key] = _split(merged[key])
        if key in merged:
            merged[key] = list(merged[key])
    return Settings(**merged)


def resolve_arguments(
    server_url: Optional[str] = None,
    token: Optional[str] = None,
    bot_id: Optional[str] = None,
    bot_name: Optional[str] = None,
    device: Optional[str] = None,
    capabilities: Optional[Sequence[str]] = None,
    groups: Optional[Sequence[str]] = None,
    role: Optional[str] = None,
    rest_url: Optional[str] = None,
    connect_timeout: Optional[float] = None,
) -> Settings:
    """The keyword arguments of ``connect_to_network`` (and its blocking
    twin), merged with the other sources by :func:`resolve`."""
    return resolve(
        dict(
            server_url=server_url,
            token=token,
            bot_id=bot_id,
            bot_name=bot_name,
            device=device,
            capabilities=None if capabilities is None else list(capabilities),
            groups=None if groups is None else list(groups),
            role=role,
            rest_url=rest_url,
            connect_timeout=connect_timeout,
        )
    )
