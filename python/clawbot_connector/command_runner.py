"""Running one bridge command: an argv list, no shell, a time limit and a
cap on the output kept.

The command runs in a session of its own so that on a timeout the whole
process group is killed, including anything it started (``openclaw``
may run helpers that would otherwise keep running, and keep our pipes open).
"""

from __future__ import annotations

import asyncio
import codecs
import os
import signal
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Set

#: How much of the end of stderr goes into an error message.
STDERR_TAIL_BYTES = 2000
#: How long to wait for the pipes to close after the kill.
KILL_GRACE_SECS = 5.0
_CHUNK = 65536


@dataclass(frozen=True)
class CommandOutcome:
    """What a command did. ``error`` is None exactly when it exited 0."""

    output: str
    output_bytes: int
    truncated: bool
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Capture:
    """Bytes read from a pipe: the first ``limit`` (or the last, with
    ``keep_tail``), and how many there were. Kept on the object so a
    cancelled read still leaves what it got."""

    def __init__(self, limit: int, keep_tail: bool = False) -> None:
        self.limit = limit
        self.keep_tail = keep_tail
        self.kept = bytearray()
        self.total = 0

    async def drain(self, stream: Optional[asyncio.StreamReader]) -> None:
        if stream is None:
            return
        while True:
            chunk = await stream.read(_CHUNK)
            if not chunk:
                return
            self.total += len(chunk)
            if self.keep_tail:
                self.kept += chunk
                del self.kept[: max(0, len(self.kept) - self.limit)]
            elif len(self.kept) < self.limit:
                # Keep reading past the cap (and discard) so the command
                # never blocks on a full pipe.
                self.kept += chunk[: self.limit - len(self.kept)]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.kept)

    def text(self) -> str:
        # A cut may split a UTF-8 sequence; the incremental decoder holds
        # the partial character back instead of printing garbage for it.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return decoder.decode(bytes(self.kept), final=not self.truncated)


def _kill_group(process: "asyncio.subprocess.Process") -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:  # pragma: no cover - not a POSIX system
            process.kill()
    except ProcessLookupError:
        pass


def _exit_error(name: str, returncode: int, stderr: str) -> str:
    if returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with status {returncode}"
    detail = " ".join(stderr.split())
    return f"{name} {how}" + (f": {detail}" if detail else "")


async def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    max_output_bytes: int,
    stop: Optional[asyncio.Event] = None,
    env: Optional[Mapping[str, str]] = None,
) -> CommandOutcome:
    """Runs ``argv`` and returns its stdout (at most ``max_output_bytes``).
    It fails when the command exits non-zero, runs longer than ``timeout``
    seconds or ``stop`` is set; in the last two cases it is killed."""
    name = os.path.basename(argv[0])
    stdout = _Capture(max_output_bytes)
    stderr = _Capture(STDERR_TAIL_BYTES, keep_tail=True)

    def outcome(error: Optional[str]) -> CommandOutcome:
        return CommandOutcome(stdout.text(), stdout.total, stdout.truncated, error)

    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            env=None if env is None else dict(env),
        )
    except FileNotFoundError:
        return outcome(f"{argv[0]}: command not found")
    except PermissionError:
        return outcome(f"{argv[0]}: permission denied (is it executable?)")
    except OSError as error:
        return outcome(f"{argv[0]}: cannot run: {error.strerror or error}")

    work = asyncio.ensure_future(
        asyncio.gather(stdout.drain(process.stdout), stderr.drain(process.stderr), process.wait())
    )
    waiting: Set["asyncio.Future[Any]"] = {work}
    stopper = None
    if stop is not None:
        stopper = asyncio.ensure_future(stop.wait())
        waiting.add(stopper)
    try:
        done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if stopper is not None:
            stopper.cancel()
    if work in done:
        work.result()
        returncode = process.returncode
        assert returncode is not None
        return outcome(None if returncode == 0 else _exit_error(name, returncode, stderr.text()))

    _kill_group(process)
    try:
        await asyncio.wait_for(asyncio.shield(work), KILL_GRACE_SECS)
    except asyncio.TimeoutError:
        # Something escaped the process group and holds the pipes open;
        # stop reading rather than hang the daemon on it.
        work.cancel()
    if stop is not None and stop.is_set():
        return outcome(f"the connector stopped while {name} was running; it was killed")
    return outcome(f"{name} timed out after {timeout:g}s and was killed")
