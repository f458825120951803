"""One daemon per config: an advisory lock on a file next to the state file.

Two daemons with one agent id would take the hub connection from each other
without end (the hub keeps one connection per id) and run commands twice.
The operating system drops the lock when the holder dies however it dies, so
unlike a recorded pid it cannot go stale or point at an unrelated process
that reused the number; ``status`` asks it too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking, no guard
    fcntl = None  # type: ignore[assignment]

#: How long a starting daemon waits for the lock: `status` holds it for an
#: instant while it looks.
ACQUIRE_SECS = 2.0


def lock_path_for(state_path: Path) -> Path:
    return state_path.with_suffix(".lock")


class AlreadyRunning(Exception):
    """Another daemon holds the lock."""


class InstanceLock:
    """Held from :meth:`acquire` until the process exits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._descriptor: Optional[int] = None

    def acquire(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + ACQUIRE_SECS
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(descriptor)
                    raise AlreadyRunning(f"another `clawbot-connector run` holds {self.path}") from None
                time.sleep(0.05)
                continue
            self._descriptor = descriptor
            return


def is_held(path: Path) -> Optional[bool]:
    """Whether a daemon holds the lock at ``path``; None when that cannot be
    told (no lock file, or no locking on this system)."""
    if fcntl is None:  # pragma: no cover
        return None
    try:
        descriptor = os.open(str(path), os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        # Closing also releases the shared lock if we got it.
        os.close(descriptor)
    return False
