"""Filling the bridge's command template: an argv list whose items may hold
``{placeholders}`` such as ``["openclaw", "agent", "--message", "{content}"]``.

Each item is filled in one pass, so text that arrives in an event (which
anyone on the network can write) is never itself read as a placeholder:
content ``"{task_id}"`` stays ``"{task_id}"``. ``{{`` and ``}}`` stand for
literal braces. The result is an argv list for ``subprocess`` without a
shell, so nothing in it is interpreted by one.
"""

from __future__ import annotations

import re
from typing import Dict, List, Mapping, Sequence, Set

#: The placeholders a template may use, and what each holds.
PLACEHOLDERS: Dict[str, str] = {
    "content": "the message text; for a task, its title and description",
    "from": "the sender's agent id; for a task, the assigner's",
    "from_name": "the sender's display name; for a task, the assigner's id",
    "group": "the group of a message, mention or task; empty for a DM",
    "task_id": "the task's id; empty for a message",
    "title": "the task's title; empty for a message",
    "description": "the task's description; empty for a message",
    "payload": "the task's payload as JSON; null for a message",
}

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


class TemplateError(ValueError):
    """A template item names an unknown placeholder or has a stray brace."""


def placeholders_in(item: str) -> Set[str]:
    """The placeholder names used in one template item; raises
    :class:`TemplateError` for unknown names and unbalanced braces."""
    names: Set[str] = set()
    rest = _TOKEN.sub(lambda match: _collect(match, names), item)
    if "{" in rest or "}" in rest:
        raise TemplateError(f"unbalanced brace in {item!r}; write {{{{ or }}}} for a literal brace")
    unknown = sorted(names - set(PLACEHOLDERS))
    if unknown:
        known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
        raise TemplateError(f"unknown placeholder {{{unknown[0]}}} in {item!r}; known: {known}")
    return names


def _collect(match: "re.Match[str]", names: Set[str]) -> str:
    if match.group(1) is not None:
        names.add(match.group(1))
    return ""


def fill(template: Sequence[str], values: Mapping[str, str]) -> List[str]:
    """The argv for one event. Every placeholder must be in ``values``
    (templates are checked with :func:`placeholders_in` when loaded)."""

    def replace(match: "re.Match[str]") -> str:
        text = match.group(0)
        if text == "{{":
            return "{"
        if text == "}}":
            return "}"
        return values[match.group(1)]

    return [_TOKEN.sub(replace, item) for item in template]
