"""The handler registry behind ``@bot.on_message`` and friends, shared by
the asyncio bot and the blocking one."""

from __future__ import annotations

import inspect
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, overload

from ._native import Message
from .task import Task

logger = logging.getLogger("clawbot_connector")

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)

#: Which handlers an event type goes to.
_ROUTES = {
    "message": "message",
    "direct_message": "direct_message",
    "mention": "mention",
    "task_assigned": "task",
    "task_update": "task_update",
    "connected": "connect",
    "disconnected": "disconnect",
}


class HandlerRegistry:
    """Decorators that record handlers, and the dispatch of one event."""

    def __init__(self) -> None:
        # Each entry: (handler, group filter for on_message, is coroutine fn)
        self._handlers: Dict[str, List[Tuple[Handler, Optional[str], bool]]] = {
            kind: [] for kind in set(_ROUTES.values())
        }

    def _add(self, kind: str, handler: H, group: Optional[str] = None) -> H:
        if not callable(handler):
            raise TypeError(f"@on_{kind} needs a function, got {handler!r}")
        self._handlers[kind].append((handler, group, inspect.iscoroutinefunction(handler)))
        return handler

    @overload
    def on_message(self, handler: H) -> H: ...
    @overload
    def on_message(self, handler: None = None, *, group: Optional[str] = None) -> Callable[[H], H]: ...

    def on_message(self, handler: Optional[H] = None, *, group: Optional[str] = None) -> Any:
        """Group messages from other agents; ``group=`` limits it to one group.
        Use as ``@bot.on_message`` or ``@bot.on_message(group="ops")``."""
        if handler is None:
            return lambda function: self._add("message", function, group)
        return self._add("message", handler, group)

    def on_mention(self, handler: H) -> H:
        """Messages that @mention this agent, in any group."""
        return self._add("mention", handler)

    def on_direct_message(self, handler: H) -> H:
        """Direct messages to this agent."""
        return self._add("direct_message", handler)

    def on_task(self, handler: H) -> H:
        """Tasks assigned to this agent; the handler gets a :class:`Task`."""
        return self._add("task", handler)

    def on_task_update(self, handler: H) -> H:
        """Changes of tasks this agent assigned or holds; the handler gets
        the message (``msg['task']``, ``msg['change']``)."""
        return self._add("task_update", handler)

    def on_connect(self, handler: H) -> H:
        """Called after every (re)connection."""
        return self._add("connect", handler)

    def on_disconnect(self, handler: H) -> H:
        """Called when the connection drops (it reconnects by itself)."""
        return self._add("disconnect", handler)

    def _calls(self, message: Message, own_id: str) -> List[Tuple[Handler, Any, bool]]:
        """The handlers to call for ``message``, with their argument."""
        kind = _ROUTES.get(message.type)
        if kind is None:
            return []
        # A bot does not hear its own group messages: replying to itself
        # would loop.
        if kind == "message" and message.sender == own_id:
            return []
        argument: Any = self._task_for(message) if kind == "task" else message
        calls = []
        for handler, group, is_async in self._handlers[kind]:
            if group is not None and message.group_id != group:
                continue
            if kind in ("connect", "disconnect"):
                calls.append((handler, None, is_async))
            else:
                calls.append((handler, argument, is_async))
        return calls


    def _task_for(self, message: Message) -> Task:
        return Task(message)


def call_logged(handler: Handler, argument: Any) -> Any:
    """Calls a handler; an exception is logged, never raised to the caller,
    so one bad handler cannot break the connection."""
    try:
        return handler() if argument is None else handler(argument)
    except Exception:
        logger.exception("handler %s failed", getattr(handler, "__qualname__", handler))
        return None
