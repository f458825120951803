"""The daemon's configuration: the SDK's connection settings plus the
``"bridge"`` section of the same ``config.json``.

Connection settings resolve as the SDK resolves them (``CLAWBOT_*``
environment variables beat the file, the file beats defaults). The bridge is
read from the file only, and strictly: a misspelt key would otherwise
silently turn a safety limit off.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import settings as settings_module
from .command_template import TemplateError, placeholders_in
from .settings import Settings

#: The kinds of event the bridge can answer.
RESPONDABLE = ("task", "mention", "direct_message")


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class BridgeConfig:
    """How events are handed to the local OpenClaw.

    ``command`` empty means the daemon only logs what it receives.
    """

    command: Tuple[str, ...] = ()
    allowed_executables: Tuple[str, ...] = ()
    timeout_secs: float = 600.0
    max_output_bytes: int = 65536
    respond_to: Tuple[str, ...] = ("task",)

    @property
    def enabled(self) -> bool:
        return bool(self.command)

    def answers(self, kind: str) -> bool:
        """Whether events of ``kind`` run the command."""
        return self.enabled and kind in self.respond_to


@dataclass(frozen=True)
class DaemonConfig:
    settings: Settings
    bridge: BridgeConfig
    config_path: Path
    state_path: Path
    #: Top-level keys of the file, for a warning about typos.
    unknown_keys: List[str] = field(default_factory=list)


def default_config_path() -> Path:
    """``$CLAWBOT_CONFIG``, else ``~/.clawbot-network/config.json``."""
    return settings_module.config_path()


def state_path_for(config_path: Path) -> Path:
    """The state file sits next to the config it belongs to, so two daemons
    with two configs do not overwrite each other's state."""
    return config_path.parent / "state.json"


def read_config_file(path: Path, required: bool) -> Dict[str, Any]:
    """The file as a dict: empty when absent and not ``required``."""
    if not path.exists():
        if required:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    try:
        return settings_module.load_config_file(path)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON: {error}") from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None


def load(path: Optional[Path] = None) -> DaemonConfig:
    """Reads and checks everything ``run`` needs; raises :class:`ConfigError`."""
    required = path is not None
    config_path = path if path is not None else default_config_path()
    file_values = read_config_file(config_path, required)
    try:
        resolved = settings_module.resolve({}, file=file_values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{config_path}: bad connection settings: {error}") from None
    _check_settings(resolved, config_path)
    bridge = parse_bridge(file_values.get("bridge"), config_path)
    known = set(Settings.__dataclass_fields__) | {"bridge"}
    return DaemonConfig(
        settings=resolved,
        bridge=bridge,
        config_path=config_path,
        state_path=state_path_for(config_path),
        unknown_keys=sorted(key for key in file_values if key not in known),
    )


def _check_settings(resolved: Settings, where: Path) -> None:
    # The SDK trusts its caller's types; a hand-edited file may not.
    for name in ("server_url", "bot_id", "bot_name", "device", "role"):
        if not isinstance(getattr(resolved, name), str):
            raise ConfigError(f"{where}: {name!r} must be a string")
    if resolved.token is not None and not isinstance(resolved.token, str):
        raise ConfigError(f"{where}: 'token' must be a string")
    for name in ("capabilities", "groups"):
        values = getattr(resolved, name)
        if not all(isinstance(value, str) for value in values):
            raise ConfigError(f"{where}: {name!r} must be a list of strings")
    if not isinstance(resolved.connect_timeout, (int, float)) or resolved.connect_timeout <= 0:
        raise ConfigError(f"{where}: 'connect_timeout' must be a positive number of seconds")


def parse_bridge(raw: Any, where: Path) -> BridgeConfig:
    """The ``"bridge"`` section, checked; absent means log only."""
    if raw is None:
        return BridgeConfig()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: 'bridge' must be an object")
    known = set(BridgeConfig.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key bridge.{unknown[0]}; known: {', '.join(sorted(known))}")
    defaults = BridgeConfig()
    command = _string_list(raw, "command", where)
    allowed = _string_list(raw, "allowed_executables", where)
    _check_command(command, where)
    for name in allowed:
        # Names, not paths: the check is on the basename of argv[0].
        if not name or "/" in name or "\\" in name:
            raise ConfigError(f"{where}: bridge.allowed_executables holds names like 'openclaw', not {name!r}")
    respond_to = _string_list(raw, "respond_to", where, default=list(defaults.respond_to))
    for kind in respond_to:
        if kind not in RESPONDABLE:
            raise ConfigError(f"{where}: bridge.respond_to: {kind!r} is not one of {', '.join(RESPONDABLE)}")
    return BridgeConfig(
        command=tuple(command),
        allowed_executables=tuple(allowed),
        timeout_secs=_positive(raw, "timeout_secs", defaults.timeout_secs, where),
        max_output_bytes=int(_positive(raw, "max_output_bytes", defaults.max_output_bytes, where, whole=True)),
        respond_to=tuple(respond_to),
    )


def _string_list(raw: Mapping[str, Any], key: str, where: Path, default: Optional[List[str]] = None) -> List[str]:
    value = raw.get(key)
    if value is None:
        return list(default or [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: bridge.{key} must be a list of strings")
    return list(value)


def _check_command(command: List[str], where: Path) -> None:
    if not command:
        return
    if not command[0].strip():
        raise ConfigError(f"{where}: bridge.command[0] must name the program to run")
    for position, item in enumerate(command):
        try:
            used = placeholders_in(item)
        except TemplateError as error:
            raise ConfigError(f"{where}: bridge.command: {error}") from None
        # The program itself must be fixed: an event must not choose what
        # runs, only what it is told.
        if position == 0 and used:
            raise ConfigError(f"{where}: bridge.command[0] must not contain a placeholder")


def _positive(raw: Mapping[str, Any], key: str, default: float, where: Path, whole: bool = False) -> float:
    value = raw.get(key, default)
    # bool is an int in Python; `true` is not a limit.
    valid = isinstance(value, int) if whole else isinstance(value, (int, float))
    if not valid or isinstance(value, bool) or value <= 0:
        kind = "a positive whole number" if whole else "a positive number"
        raise ConfigError(f"{where}: bridge.{key} must be {kind}")
    return float(value) if not whole else value


def executable_allowed(bridge: BridgeConfig, program: str) -> bool:
    """Whether ``program`` (argv[0]) may run: its basename is allowlisted."""
    return os.path.basename(program) in bridge.allowed_executables
