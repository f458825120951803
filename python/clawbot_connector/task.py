"""Tasks: what ``@bot.on_task`` handlers receive, and the handle
``bot.assign_task(...)`` returns.

A :class:`Task` reads like the original SDK's dict (``task['title']``) and
has ``accept()``, ``progress()``, ``complete()`` and ``fail()``. When an
``on_task`` handler returns, the task completes with the return value; if
it raises, the task fails with the error (unless the handler already
finished it).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

from ._native import ClawBotError, Message, NativeClient

#: States no task leaves.
TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out", "dead"})


class TaskFailed(ClawBotError):
    """An assigned task ended without a result (failed, cancelled, timed
    out or dead). ``status`` and ``error`` say how."""

    def __init__(self, task: Mapping[str, Any]) -> None:
        self.task = dict(task)
        self.status = str(task.get("status"))
        self.error = task.get("error")
        super().__init__(f"task {task.get('id')} {self.status}: {self.error or 'no result'}")


def _result_json(result: Any) -> str:
    # Anything JSON cannot hold is sent as its text.
    return json.dumps(result, default=str)


class Task(Mapping[str, Any]):
    """A task assigned to this agent (asyncio)."""

    def __init__(self, message: Message, native: Optional[NativeClient] = None) -> None:
        self._message = message
        self._native = native
        payload = message.payload
        self._body: Dict[str, Any] = dict(payload) if isinstance(payload, dict) else {}

    @property
    def id(self) -> str:
        return str(self._body.get("id", ""))

    @property
    def title(self) -> str:
        return str(self._body.get("title", ""))

    @property
    def description(self) -> str:
        return str(self._body.get("description", ""))

    @property
    def payload(self) -> Any:
        return self._body.get("payload")

    @property
    def status(self) -> str:
        return str(self._body.get("status", ""))

    @property
    def assigner_id(self) -> Optional[str]:
        return self._body.get("assignerId")

    @property
    def seq(self) -> Optional[int]:
        return self._message.seq

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def _apply(self, task: Mapping[str, Any]) -> Dict[str, Any]:
        self._body.update(task)
        return dict(task)

    def _ops(self) -> NativeClient:
        if self._native is None:
            raise RuntimeError("this task is not bound to a connection")
        return self._native

    async def accept(self) -> Dict[str, Any]:
        return self._apply(await self._ops().change_task(self.id, "accept"))

    async def progress(self, percent: int, note: str = "") -> Dict[str, Any]:
        return self._apply(await self._ops().change_task(self.id, "progress", percent=percent, note=note))

    async def complete(self, result: Any = None) -> Dict[str, Any]:
        return self._apply(await self._ops().change_task(self.id, "complete", result=_result_json(result)))

    async def fail(self, error: str) -> Dict[str, Any]:
        return self._apply(await self._ops().change_task(self.id, "fail", error=str(error)))

    def __getitem__(self, key: str) -> Any:
        return self._body[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._body)

    def __len__(self) -> int:
        return len(self._body)

    def __repr__(self) -> str:
        return f"Task({self._body!r})"


class BlockingTask(Task):
    """A task for the blocking bot: the same methods, without ``await``."""

    def accept(self) -> Dict[str, Any]:  # type: ignore[override]
        return self._apply(self._ops().change_task_blocking(self.id, "accept"))

    def progress(self, percent: int, note: str = "") -> Dict[str, Any]:  # type: ignore[override]
        return self._apply(self._ops().change_task_blocking(self.id, "progress", percent=percent, note=note))

    def complete(self, result: Any = None) -> Dict[str, Any]:  # type: ignore[override]
        return self._apply(self._ops().change_task_blocking(self.id, "complete", result=_result_json(result)))

    def fail(self, error: str) -> Dict[str, Any]:  # type: ignore[override]
        return self._apply(self._ops().change_task_blocking(self.id, "fail", error=str(error)))


ProgressCallback = Callable[[int, str], Any]


class TaskHandle:
    """A task this agent assigned: ``await handle`` for its result (or
    :class:`TaskFailed`), ``handle.on_progress(callback)``, ``await
    handle.cancel()``."""

    def __init__(self, native: NativeClient, task: Mapping[str, Any]) -> None:
        self._native = native
        self.task: Dict[str, Any] = dict(task)
        self._done: "asyncio.Future[Any]" = asyncio.get_running_loop().create_future()
        self._progress: List[ProgressCallback] = []
        self._settle()

    @property
    def id(self) -> str:
        return str(self.task["id"])

    @property
    def status(self) -> str:
        return str(self.task.get("status"))

    def on_progress(self, callback: ProgressCallback) -> ProgressCallback:
        """Calls ``callback(percent, note)`` on each progress report."""
        self._progress.append(callback)
        return callback

    def _update(self, task: Mapping[str, Any], change: Mapping[str, Any]) -> None:
        self.task = dict(task)
        if change.get("status") == "in_progress" and change.get("percent") is not None:
            for callback in self._progress:
                callback(int(change["percent"]), str(change.get("note") or ""))
        self._settle()

    def _settle(self) -> None:
        if self._done.done() or self.status not in TERMINAL:
            return
        if self.status == "completed":
            self._done.set_result(self.task.get("result"))
        else:
            self._done.set_exception(TaskFailed(self.task))

    async def result(self, timeout: Optional[float] = None) -> Any:
        """The task's result once completed; raises :class:`TaskFailed` if
        it ends otherwise, ``asyncio.TimeoutError`` after ``timeout``."""
        return await asyncio.wait_for(asyncio.shield(self._done), timeout)

    def __await__(self) -> Any:
        return self.result().__await__()

    async def cancel(self) -> None:
        self.task = dict(await self._native.change_task(self.id, "cancel"))
        self._settle()

    def __repr__(self) -> str:
        return f"TaskHandle({self.id}, {self.status})"
