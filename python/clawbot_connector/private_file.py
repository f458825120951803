"""Writing JSON files only their owner can read, atomically: a reader (or a
crash) never sees half a file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping


def write_private_json(path: Path, data: Mapping[str, Any], *, sort_keys: bool = False) -> None:
    """Replaces ``path`` with ``data`` as JSON, mode 0600, in a 0700
    directory created if needed."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkstemp creates the file 0600 before anything is written to it.
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(dict(data), file, indent=2, sort_keys=sort_keys)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
