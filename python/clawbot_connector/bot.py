"""The asyncio bot: ``connect_to_network`` and ``ClawBotConnector``."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from typing import Any, Dict, Generator, List, Optional, Sequence
from urllib.parse import quote

from . import _native, settings as settings_module
from ._native import ClawBotError, Message
from .handlers import HandlerRegistry, call_logged
from .task import TERMINAL, Task, TaskHandle
from .settings import DEFAULT_GROUP, Settings

logger = logging.getLogger("clawbot_connector")

_current: Optional["ClawBotConnector"] = None


class ClawBotConnector(HandlerRegistry):
    """One agent's connection to the hub.

    Register handlers with the decorators, then ``await bot.run_forever()``.
    Handlers run one at a time, in the order events arrive; a handler may be
    a plain function or ``async def``. Register handlers before the first
    ``await`` after connecting: events are dispatched from then on.

    Sending while the connection is down does not fail: the message is
    queued, sent once when the connection is back, and the call returns when
    the hub has stored it.
    """

    def __init__(self, native: _native.NativeClient, settings: Settings) -> None:
        super().__init__()
        self._native = native
        self.settings = settings
        self._joined: List[str] = list(settings.groups)
        self._closed = asyncio.Event()
        self._handles: Dict[str, TaskHandle] = {}
        # Updates that arrived before `assign_task` returned its handle.
        self._early_updates: Dict[str, List[Message]] = {}
        self._pump = asyncio.get_running_loop().create_task(self._dispatch_events())

    @property
    def bot_id(self) -> str:
        return self._native.agent_id

    @property
    def token(self) -> Optional[str]:
        """The token in use; after a first claim, this agent's own
        credential (store it: it is shown only once)."""
        return self._native.token

    @property
    def is_connected(self) -> bool:
        return self._native.is_connected

    async def _dispatch_events(self) -> None:
        own_id = self.bot_id
        try:
            while True:
                # Everything that has arrived, in order: one hand-off from
                # Rust per batch, not per event.
                batch = await self._native.next_events()
                if batch is None:
                    break
                for message in batch:
                    if message.type == "task_update":
                        self._route_update(message)
                    calls = self._calls(message, own_id)
                    if message.type == "task_assigned":
                        await self._run_task_handlers(calls)
                        continue
                    for handler, argument, is_async in calls:
                        result = call_logged(handler, argument)
                        # Most plain handlers return None: skip the check.
                        if is_async or (result is not None and inspect.isawaitable(result)):
                            try:
                                await result
                            except Exception:
                                logger.exception("handler %s failed", getattr(handler, "__qualname__", handler))
        finally:
            self._closed.set()

    def _task_for(self, message: Message) -> Task:
        return Task(message, self._native)

    async def _run_task_handlers(self, calls: List[Any]) -> None:
        """Accepts the task, runs the handlers, and finishes it with the
        first handler's return value, or fails it with its exception."""
        for handler, task, is_async in calls:
            try:
                if task.status == "assigned":
                    await task.accept()
                result = handler(task)
                if is_async or inspect.isawaitable(result):
                    result = await result
            except ClawBotError as error:
                logger.warning("task %s: %s", task.id, error)
                continue
            except Exception as error:
                logger.exception("task handler %s failed", getattr(handler, "__qualname__", handler))
                if not task.finished:
                    await self._quietly(task.fail(f"{type(error).__name__}: {error}"))
                continue
            if not task.finished:
                await self._quietly(task.complete(result))

    @staticmethod
    async def _quietly(change: Any) -> None:
        try:
            await change
        except ClawBotError as error:
            logger.warning("task change refused: %s", error)

    def _route_update(self, message: Message) -> None:
        task_id = str(message["task"]["id"])
        handle = self._handles.get(task_id)
        if handle is None:
            early = self._early_updates.setdefault(task_id, [])
            early.append(message)
            if len(self._early_updates) > 1000:
                self._early_updates.pop(next(iter(self._early_updates)))
            return
        handle._update(message["task"], message["change"])
        if handle.status in TERMINAL:
            self._handles.pop(task_id, None)

    async def assign_task(
        self,
        title: str,
        *,
        to: Optional[str] = None,
        capability: Optional[str] = None,
        description: str = "",
        payload: Any = None,
        deadline: Any = None,
        idempotency_key: Optional[str] = None,
        priority: Any = None,
        max_attempts: Optional[int] = None,
        group: Optional[str] = None,
    ) -> TaskHandle:
        """Assigns a task to agent ``to`` or to the least busy online agent
        with ``capability``; returns a :class:`TaskHandle` (``await`` it for
        the result). ``deadline`` is a datetime or an ISO 8601 string; an
        ``idempotency_key`` makes a retry return the same task."""
        request: Dict[str, Any] = {"title": title, "description": description}
        for key, value in (
            ("assigneeId", to),
            ("capability", capability),
            ("payload", payload),
            ("deadline", deadline.isoformat() if hasattr(deadline, "isoformat") else deadline),
            ("idempotencyKey", idempotency_key),
            ("priority", priority),
            ("maxAttempts", max_attempts),
            ("groupId", group),
        ):
            if value is not None:
                request[key] = value
        task = await self._native.assign_task(json.dumps(request))
        handle = TaskHandle(self._native, task)
        self._handles[handle.id] = handle
        for message in self._early_updates.pop(handle.id, []):
            handle._update(message["task"], message["change"])
        return handle

    async def send_message(self, content: str, group: str = DEFAULT_GROUP) -> Dict[str, Any]:
        """Sends to a group; returns the hub's confirmation
        (``{'id', 'seq', 'duplicate', 'unknownMentions', ...}``)."""
        return await self._native.send_message(group, content)

    async def send_direct_message(self, bot_id: str, text: str) -> Dict[str, Any]:
        """Sends a direct message to one agent."""
        return await self._native.send_direct_message(bot_id, text)

    async def reply_to(self, msg: Message, text: str) -> Dict[str, Any]:
        """Answers a message: a DM is answered by DM; a group message or
        mention by ``@<sender name> text`` in its group."""
        if msg["type"] == "direct_message":
            return await self.send_direct_message(msg["from"], text)
        return await self.send_message(f"@{msg['fromName']} {text}", group=msg["groupId"])

    async def broadcast(self, text: str) -> List[Dict[str, Any]]:
        """Sends ``text`` to every group this bot has joined."""
        return [await self.send_message(text, group) for group in (self._joined or [DEFAULT_GROUP])]

    async def join_group(self, group: str) -> None:
        await self._native.join_group(group)
        if group not in self._joined:
            self._joined.append(group)

    async def leave_group(self, group: str) -> None:
        await self._native.leave_group(group)
        if group in self._joined:
            self._joined.remove(group)

    def get_online_bots(self) -> List[Dict[str, Any]]:
        """The agents online now, as the hub last announced."""
        return list(self._native.online_agents())

    async def list_agents(self) -> List[Dict[str, Any]]:
        """Every known agent, online or not (REST)."""
        return await self._native.rest("GET", "api/agents")

    async def history(
        self,
        group: str = DEFAULT_GROUP,
        before: Optional[int] = None,
        after: Optional[int] = None,
        limit: int = 50,
    ) -> List[Dict[str, Any]]:
        """A page of a group's messages, oldest first (REST). Pass the first
        row's ``seq`` as ``before`` for the page before it."""
        return await self._native.rest("GET", _history_path(group, before, after, limit))

    async def rest(self, method: str, path: str, body: Any = None) -> Any:
        """Any other REST call, with this bot's token."""
        return await self._native.rest(method, path, None if body is None else json.dumps(body))

    async def run_forever(self) -> None:
        """Runs handlers until :meth:`disconnect`."""
        await self._closed.wait()

    async def disconnect(self) -> None:
        await self._native.close()
        await self._closed.wait()

    async def __aenter__(self) -> "ClawBotConnector":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.disconnect()


def _history_path(group: str, before: Optional[int], after: Optional[int], limit: int) -> str:
    query = [f"limit={int(limit)}"]
    if before is not None:
        query.append(f"before={int(before)}")
    if after is not None:
        query.append(f"after={int(after)}")
    return f"api/groups/{quote(group, safe='')}/messages?{'&'.join(query)}"


def native_arguments(resolved: Settings) -> Dict[str, Any]:
    """Settings as the native ``connect`` takes them."""
    return dict(
        server_url=resolved.server_url,
        agent_id=resolved.bot_id,
        token=resolved.token,
        name=resolved.bot_name,
        role=resolved.role or None,
        device=resolved.device,
        capabilities=list(resolved.capabilities),
        groups=list(resolved.groups),
        rest_url=resolved.rest_url,
        connect_timeout=resolved.connect_timeout,
    )


class _Connecting:
    """What ``connect_to_network`` returns: await it for the bot, or use it
    as ``async with connect_to_network(...) as bot:``."""

    def __init__(self, resolved: Settings) -> None:
        self._settings = resolved
        self._bot: Optional[ClawBotConnector] = None

    async def _open(self) -> ClawBotConnector:
        global _current
        native = await _native.connect(**native_arguments(self._settings))
        self._bot = ClawBotConnector(native, self._settings)
        _current = self._bot
        return self._bot

    def __await__(self) -> Generator[Any, None, ClawBotConnector]:
        return self._open().__await__()

    async def __aenter__(self) -> ClawBotConnector:
        return await self._open()

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._bot is not None:
            await self._bot.disconnect()


def connect_to_network(
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
) -> _Connecting:
    """Connects this agent to the hub and returns once it is registered and
    its groups (default ``["clawdbots"]``) are joined.

    Settings not given come from ``CLAWBOT_*`` environment variables, then
    ``~/.clawbot-network/config.json``, then defaults (hub
    ``ws://127.0.0.1:3002``, id ``clawdbot-<hostname>``, name from the
    OpenClaw SOUL.md). Raises ``InvalidServerURL``, ``ConnectionFailed``,
    ``AuthenticationError`` or ``HubRejected``; never hangs silently.
    """
    resolved = settings_module.resolve_arguments(
        server_url=server_url, token=token, bot_id=bot_id, bot_name=bot_name, device=device,
        capabilities=capabilities, groups=groups, role=role, rest_url=rest_url,
        connect_timeout=connect_timeout,
    )
    return _Connecting(resolved)


def get_connector() -> ClawBotConnector:
    """The bot most recently connected in this process."""
    if _current is None:
        raise RuntimeError("not connected: call `await connect_to_network(...)` first")
    return _current
