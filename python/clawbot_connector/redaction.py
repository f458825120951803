"""Keeping secrets out of what the daemon prints: a log formatter that masks
known tokens wherever they appear (including in exception text), and URLs
shown without credentials or query strings."""

from __future__ import annotations

import logging
from typing import List, Optional
from urllib.parse import urlsplit, urlunsplit

MASK = "[redacted]"


class MaskingFormatter(logging.Formatter):
    """Formats records as usual, then replaces every registered secret.
    Masking the finished line catches secrets no call site meant to log,
    such as a URL or an error message that happens to contain one."""

    def __init__(self, fmt: Optional[str] = None, datefmt: Optional[str] = None) -> None:
        super().__init__(fmt, datefmt)
        self._secrets: List[str] = []

    def add_secret(self, secret: Optional[str]) -> None:
        # Very short strings would mask ordinary words; real tokens are long.
        if secret and len(secret) >= 8 and secret not in self._secrets:
            self._secrets.append(secret)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for secret in self._secrets:
            line = line.replace(secret, MASK)
        return line


def display_url(url: str) -> str:
    """``url`` without user:password and query, which can carry tokens."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
