"""A task as handlers receive it: reads like the original's dict
(``task['title']``) and by attribute."""

from __future__ import annotations

from typing import Any, Dict, Iterator, Mapping, Optional

from ._native import Message


class Task(Mapping[str, Any]):
    """A task assigned to this agent."""

    def __init__(self, message: Message) -> None:
        self._message = message
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
    def assigner_id(self) -> Optional[str]:
        return self._body.get("assignerId")

    @property
    def seq(self) -> Optional[int]:
        return self._message.seq

    def __getitem__(self, key: str) -> Any:
        return self._body[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._body)

    def __len__(self) -> int:
        return len(self._body)

    def __repr__(self) -> str:
        return f"Task({self._body!r})"
