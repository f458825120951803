"""``clawbot-connector send``: connect with the config, send one message,
disconnect.

The hub allows one connection per agent id, so while the daemon runs with
the same config, this briefly replaces its connection; the daemon
reconnects by itself and nothing is lost (see PROTOCOL.md, "Replaced
connections").
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from . import _native
from .blocking import BlockingBot
from .bot import native_arguments
from .credential_store import save_token
from .daemon_config import DaemonConfig


def send_once(config: DaemonConfig, text: str, *, to: Optional[str] = None,
              group: Optional[str] = None) -> Dict[str, Any]:
    """Sends ``text`` to agent ``to`` or to ``group``; returns the hub's
    confirmation (``seq``, ``id``, ...)."""
    if (to is None) == (group is None):
        raise ValueError("give exactly one of `to` and `group`")
    settings = config.settings
    bot = BlockingBot(_native.connect_blocking(**native_arguments(settings)), settings)
    try:
        if bot.token and bot.token != settings.token:
            # This connection claimed the agent id: keep its credential, as
            # the daemon does, or the next start would be locked out.
            save_token(config.config_path, bot.token)
        if to is not None:
            return bot.send_direct_message(to, text)
        assert group is not None
        return bot.send_message(text, group)
    finally:
        bot.disconnect()
