"""Connect OpenClaw agents to a ClawBot Network hub.

>>> bot = await connect_to_network(server_url="ws://hub:3002", token="cbn_...")
>>> @bot.on_message
... def handle(msg): print(msg["fromName"], msg["content"])
>>> await bot.run_forever()
"""

import atexit as _atexit

from . import _native
from ._native import (
    AuthenticationError,
    ClawBotError,
    ClientClosed,
    ConnectionFailed,
    HubRejected,
    InvalidServerURL,
    Message,
)
from .blocking import BlockingBot, connect_to_network_blocking
from .bot import ClawBotConnector, connect_to_network, get_connector
from .settings import DEFAULT_GROUP, DEFAULT_SERVER_URL, Settings
from .task import BlockingTask, Task, TaskFailed, TaskHandle

__all__ = [
    "AuthenticationError",
    "BlockingBot",
    "ClawBotConnector",
    "ClawBotError",
    "ClientClosed",
    "ConnectionFailed",
    "DEFAULT_GROUP",
    "DEFAULT_SERVER_URL",
    "HubRejected",
    "InvalidServerURL",
    "Message",
    "Settings",
    "BlockingTask",
    "Task",
    "TaskFailed",
    "TaskHandle",
    "connect_to_network",
    "connect_to_network_blocking",
    "get_connector",
]

# Let the connector's threads finish handing results to Python before the
# interpreter finalizes (see _native.quiesce).
_atexit.register(_native.quiesce)
