"""The ``clawbot-connector`` command: ``run``, ``status`` and ``send``.

Exit codes: 0 success; 1 failure (hub unreachable, message refused, the
connection ended unexpectedly); 2 bad usage or configuration (including a
token or URL the hub refuses: retrying will not fix those); ``status`` uses
1 for running but not connected and 3 for not running.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from . import daemon_config
from ._native import AuthenticationError, ClawBotError, InvalidServerURL
from .daemon import run_daemon
from .daemon_config import ConfigError
from .instance_lock import AlreadyRunning
from .redaction import MaskingFormatter
from .send import send_once
from .status import show

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
PROGRAM = "clawbot-connector"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Keep this machine's agent on a ClawBot Network hub and bridge it to OpenClaw.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def with_config(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", type=Path, metavar="PATH",
                         help="config file (default: $CLAWBOT_CONFIG, else ~/.clawbot-network/config.json)")

    run = commands.add_parser("run", help="stay connected, log events, run the bridge command")
    with_config(run)
    run.add_argument("-v", "--verbose", action="store_true", help="log debug detail too")

    status = commands.add_parser("status", help="show whether the daemon runs and is connected")
    with_config(status)
    status.add_argument("--json", action="store_true", help="print the state as JSON")

    send = commands.add_parser("send", help="send one message and print its seq")
    with_config(send)
    target = send.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="AGENT", help="send a direct message to this agent id")
    target.add_argument("--group", metavar="GROUP", help="send to this group")
    send.add_argument("text", nargs="+", metavar="TEXT", help="the message (several words are joined by spaces)")
    return parser


def configure_logging(verbose: bool) -> MaskingFormatter:
    """One line per record on stderr, with known tokens masked."""
    formatter = MaskingFormatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return formatter


def _error(message: str) -> None:
    sys.stderr.write(f"{PROGRAM}: error: {message}\n")


def _run(arguments: argparse.Namespace) -> int:
    formatter = configure_logging(arguments.verbose)
    config = daemon_config.load(arguments.config)
    return asyncio.run(run_daemon(config, formatter))


def _status(arguments: argparse.Namespace) -> int:
    # Status reads the state file only; it must work even when the config
    # it sits next to is broken.
    path = arguments.config or daemon_config.default_config_path()
    return show(daemon_config.state_path_for(path), arguments.json, sys.stdout)


def _send(arguments: argparse.Namespace) -> int:
    config = daemon_config.load(arguments.config)
    text = " ".join(arguments.text)
    try:
        sent = send_once(config, text, to=arguments.to, group=arguments.group)
    except (AuthenticationError, InvalidServerURL) as error:
        _error(str(error))
        return EXIT_CONFIG
    except ClawBotError as error:
        _error(str(error))
        return EXIT_FAILED
    except (OSError, ValueError) as error:
        # Only saving a newly issued agent token touches files here.
        _error(f"could not save this agent's token in {config.config_path}: {error}")
        return EXIT_FAILED
    print(sent.get("seq"))
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    arguments = build_parser().parse_args(None if argv is None else list(argv))
    handlers = {"run": _run, "status": _status, "send": _send}
    try:
        return handlers[arguments.command](arguments)
    except ConfigError as error:
        _error(str(error))
        return EXIT_CONFIG
    except AlreadyRunning as error:
        _error(str(error))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
