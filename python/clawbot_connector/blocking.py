"""A bot for plain scripts without asyncio.

``run_forever()`` calls the handlers in the calling thread. Waits release
the GIL and wake regularly so Ctrl-C (KeyboardInterrupt) stops them. Async
handlers are not supported here; use :func:`connect_to_network` for those.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Dict, List, Optional, Sequence

from . import _native, settings as settings_module
from ._native import Message
from .bot import _history_path, native_arguments
from ._native import ClawBotError
from .handlers import H, HandlerRegistry, call_logged, logger
from .task import BlockingTask, Task
from .settings import DEFAULT_GROUP, Settings


class BlockingBot(HandlerRegistry):
    """The blocking twin of :class:`ClawBotConnector`."""

    def __init__(self, native: _native.NativeClient, settings: Settings) -> None:
        super().__init__()
        self._native = native
        self.settings = settings
        self._joined: List[str] = list(settings.groups)

    def _add(self, kind: str, handler: H, group: Optional[str] = None) -> H:
        if inspect.iscoroutinefunction(handler):
            raise TypeError("a blocking bot calls plain functions; use connect_to_network for async handlers")
        return super()._add(kind, handler, group)

    @property
    def bot_id(self) -> str:
        return self._native.agent_id

    @property
    def token(self) -> Optional[str]:
        return self._native.token

    def send_message(self, content: str, group: str = DEFAULT_GROUP) -> Dict[str, Any]:
        return self._native.send_message_blocking(group, content)

    def send_direct_message(self, bot_id: str, text: str) -> Dict[str, Any]:
        return self._native.send_direct_message_blocking(bot_id, text)

    def reply_to(self, msg: Message, text: str) -> Dict[str, Any]:
        if msg["type"] == "direct_message":
            return self.send_direct_message(msg["from"], text)
        return self.send_message(f"@{msg['fromName']} {text}", group=msg["groupId"])

    def join_group(self, group: str) -> None:
        self._native.join_group_blocking(group)
        if group not in self._joined:
            self._joined.append(group)

    def get_online_bots(self) -> List[Dict[str, Any]]:
        return list(self._native.online_agents())

    def history(self, group: str = DEFAULT_GROUP, before: Optional[int] = None,
                after: Optional[int] = None, limit: int = 50) -> List[Dict[str, Any]]:
        return self._native.rest_blocking("GET", _history_path(group, before, after, limit))

    def rest(self, method: str, path: str, body: Any = None) -> Any:
        return self._native.rest_blocking(method, path, None if body is None else json.dumps(body))

    def process_events(self, timeout: Optional[float] = None) -> int:
        """Handles events until ``timeout`` seconds pass with none (or the
        bot is closed); returns how many were handled."""
        handled = 0
        while True:
            message = self._native.next_event_blocking(timeout)
            if message is None:
                return handled
            handled += 1
            calls = self._calls(message, self.bot_id)
            if message.type == "task_assigned":
                self._run_task_handlers(calls)
                continue
            for handler, argument, _ in calls:
                call_logged(handler, argument)

    def _task_for(self, message: Message) -> Task:
        return BlockingTask(message, self._native)

    def _run_task_handlers(self, calls: List[Any]) -> None:
        for handler, task, _ in calls:
            try:
                if task.status == "assigned":
                    task.accept()
                result = handler(task)
            except ClawBotError as error:
                logger.warning("task %s: %s", task.id, error)
                continue
            except Exception as error:
                logger.exception("task handler %s failed", getattr(handler, "__qualname__", handler))
                if not task.finished:
                    task.fail(f"{type(error).__name__}: {error}")
                continue
            if not task.finished:
                task.complete(result)

    def assign_task(self, title: str, *, to: Optional[str] = None, capability: Optional[str] = None,
                    description: str = "", payload: Any = None, idempotency_key: Optional[str] = None) -> Dict[str, Any]:
        """Assigns a task; returns it as the hub stored it (a dict)."""
        request: Dict[str, Any] = {"title": title, "description": description}
        for key, value in (("assigneeId", to), ("capability", capability), ("payload", payload),
                           ("idempotencyKey", idempotency_key)):
            if value is not None:
                request[key] = value
        return self._native.assign_task_blocking(json.dumps(request))

    def run_forever(self) -> None:
        """Handles events until :meth:`disconnect` or Ctrl-C."""
        self.process_events(None)

    def disconnect(self) -> None:
        self._native.close_blocking()

    def __enter__(self) -> "BlockingBot":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.disconnect()


def connect_to_network_blocking(
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
) -> BlockingBot:
    """Like :func:`connect_to_network`, for code without an event loop."""
    resolved = settings_module.resolve_arguments(
        server_url=server_url, token=token, bot_id=bot_id, bot_name=bot_name, device=device,
        capabilities=capabilities, groups=groups, role=role, rest_url=rest_url,
        connect_timeout=connect_timeout,
    )
    native = _native.connect_blocking(**native_arguments(resolved))
    return BlockingBot(native, resolved)
