"""The bridge from the network to the local OpenClaw: an event (a task, a
mention, a DM) fills the command template, the command runs, and its output
becomes the task's result or the reply.

Events are handled one at a time, in order, as the SDK dispatches them: one
agent works on one thing at a time, and OpenClaw sessions are not meant to
be driven concurrently.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from contextlib import contextmanager
from typing import Dict, Iterator, Mapping, Optional

from ._native import ClawBotError, HubRejected, Message
from .bot import ClawBotConnector
from .command_runner import CommandOutcome, run_command
from .command_template import fill
from .daemon_config import BridgeConfig, executable_allowed
from .task import Task

logger = logging.getLogger("clawbot_connector.daemon")

#: Environment variables the command does not inherit. It acts on what
#: other agents wrote, so it should not hold this agent's credential.
WITHHELD_ENVIRONMENT = ("CLAWBOT_TOKEN",)


def message_values(message: Message) -> Dict[str, str]:
    """Placeholder values for a mention or DM."""
    return {
        "content": message.content or "",
        "from": message.sender or "",
        "from_name": message.from_name or message.sender or "",
        "group": message.group_id or "",
        "task_id": "",
        "title": "",
        "description": "",
        "payload": "null",
    }


def task_values(task: Task) -> Dict[str, str]:
    """Placeholder values for a task. ``{content}`` is what to do: the title,
    and the description under it when there is one."""
    content = task.title + (f"\n\n{task.description}" if task.description else "")
    assigner = task.assigner_id or ""
    return {
        "content": content,
        "from": assigner,
        "from_name": assigner,
        "group": str(task.get("groupId") or ""),
        "task_id": task.id,
        "title": task.title,
        "description": task.description,
        "payload": json.dumps(task.payload, ensure_ascii=False),
    }


class Bridge:
    """Runs the configured command for the events the config says to answer."""

    def __init__(self, config: BridgeConfig, stopping: asyncio.Event,
                 environ: Optional[Mapping[str, str]] = None) -> None:
        self.config = config
        self.stopping = stopping
        source = os.environ if environ is None else environ
        self._environment = {key: value for key, value in source.items() if key not in WITHHELD_ENVIRONMENT}
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextmanager
    def _working(self) -> Iterator[None]:
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def idle(self) -> None:
        """Returns once no event is being handled: on shutdown, a killed
        command's task is marked failed before the connection closes."""
        await self._idle.wait()

    def attach(self, bot: ClawBotConnector) -> None:
        """Registers handlers for the events the config answers. Tasks get a
        handler only then: registering one makes the SDK accept every task,
        and a daemon that only logs should leave tasks for someone else."""
        if self.config.answers("task"):
            bot.on_task(self.handle_task)
        if self.config.answers("mention"):
            bot.on_mention(lambda message: self.answer(bot, message))
        if self.config.answers("direct_message"):
            bot.on_direct_message(lambda message: self.answer(bot, message))

    async def run(self, values: Mapping[str, str]) -> CommandOutcome:
        argv = fill(self.config.command, values)
        if not executable_allowed(self.config, argv[0]):
            name = os.path.basename(argv[0])
            return CommandOutcome("", 0, False, (
                f"refusing to run {argv[0]!r}: {name!r} is not in bridge.allowed_executables"))
        return await run_command(
            argv,
            timeout=self.config.timeout_secs,
            max_output_bytes=self.config.max_output_bytes,
            stop=self.stopping,
            env=self._environment,
        )

    def reply_text(self, outcome: CommandOutcome) -> str:
        text = outcome.output.rstrip()
        if outcome.truncated:
            text += f"\n[output truncated to {self.config.max_output_bytes} bytes of {outcome.output_bytes}]"
        return text

    async def handle_task(self, task: Task) -> None:
        """Finishes the task itself (rather than returning a value to the
        SDK) so that a failure reads as the command's error and a result
        the hub refuses still ends the task."""
        with self._working():
            await self._handle_task(task)

    async def _handle_task(self, task: Task) -> None:
        if self.stopping.is_set():
            await self._fail(task, "the connector is stopping; the task was not started")
            return
        logger.info("task %s: running %s", task.id, os.path.basename(self.config.command[0]))
        outcome = await self.run(task_values(task))
        if not outcome.ok:
            await self._fail(task, str(outcome.error))
            logger.warning("task %s failed: %s", task.id, outcome.error)
            return
        result = self.reply_text(outcome)
        try:
            await task.complete(result)
        except HubRejected as error:
            if error.code != "too_large":
                logger.warning("task %s: the hub refused the result: %s", task.id, error)
                return
            refused = (f"the output ({len(result.encode())} bytes) is more than the hub accepts as a result; "
                       "lower bridge.max_output_bytes")
            await self._fail(task, refused)
            logger.warning("task %s failed: %s", task.id, refused)
            return
        except ClawBotError as error:
            logger.warning("task %s: could not complete it: %s", task.id, error)
            return
        logger.info("task %s completed (%d bytes of output%s)", task.id, outcome.output_bytes,
                    ", truncated" if outcome.truncated else "")

    async def _fail(self, task: Task, error: str) -> None:
        try:
            await task.fail(error)
        except ClawBotError as refused:
            # Cancelled or timed out meanwhile: nothing left to report to.
            logger.warning("task %s: could not mark it failed: %s", task.id, refused)

    async def answer(self, bot: ClawBotConnector, message: Message) -> None:
        """Replies to a mention or DM with the command's output."""
        with self._working():
            await self._answer(bot, message)

    async def _answer(self, bot: ClawBotConnector, message: Message) -> None:
        what = "mention" if message.type == "mention" else "direct message"
        if self.stopping.is_set():
            return
        outcome = await self.run(message_values(message))
        if not outcome.ok:
            # The error stays here: it may describe this machine, and the
            # sender asked a question, not for a stack trace.
            logger.warning("%s from %s: not answered: %s", what, message.sender, outcome.error)
            return
        text = self.reply_text(outcome)
        if not text:
            logger.info("%s from %s: the command printed nothing; no reply", what, message.sender)
            return
        try:
            sent = await bot.reply_to(message, text)
        except ClawBotError as error:
            logger.warning("%s from %s: the reply was refused: %s", what, message.sender, error)
            return
        logger.info("replied to %s from %s (seq %s, %d bytes)", what, message.sender, sent.get("seq"),
                    len(text.encode()))
