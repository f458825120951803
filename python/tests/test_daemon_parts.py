"""The daemon's parts on their own: the command template, the bridge
config, the command runner, redaction and the entry points."""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from pathlib import Path

import pytest

from clawbot_connector import daemon_config
from clawbot_connector.command_runner import run_command
from clawbot_connector.command_template import TemplateError, fill, placeholders_in
from clawbot_connector.daemon_config import ConfigError, parse_bridge
from clawbot_connector.redaction import MaskingFormatter, display_url

WHERE = Path("config.json")


def test_a_template_is_filled_in_one_pass():
    values = {"content": "say {task_id} and {{x}}", "task_id": "task-1"}
    argv = fill(["openclaw", "--message={content}", "{task_id}", "{{literal}}"], values)
    # Event text that looks like a placeholder stays as written.
    assert argv == ["openclaw", "--message=say {task_id} and {{x}}", "task-1", "{literal}"]


@pytest.mark.parametrize("item, error", [
    ("{nope}", "unknown placeholder {nope}"),
    ("{content", "unbalanced brace"),
    ("a}b", "unbalanced brace"),
    ("{content.__class__}", "unknown placeholder"),
])
def test_bad_template_items_are_refused(item, error):
    with pytest.raises(TemplateError, match=error.replace("{", r"\{").replace("}", r"\}").replace(".", r"\.")):
        placeholders_in(item)


def test_placeholders_are_found():
    assert placeholders_in("{from}:{payload} {{not}}") == {"from", "payload"}


def test_a_bridge_has_safe_defaults():
    bridge = parse_bridge({"command": ["openclaw", "{content}"], "allowed_executables": ["openclaw"]}, WHERE)
    assert (bridge.timeout_secs, bridge.max_output_bytes, bridge.respond_to) == (600.0, 65536, ("task",))
    assert bridge.answers("task") and not bridge.answers("mention")
    assert daemon_config.executable_allowed(bridge, "/opt/homebrew/bin/openclaw")
    assert not daemon_config.executable_allowed(bridge, "/usr/bin/openclaw-evil")
    logging_only = parse_bridge(None, WHERE)
    assert not logging_only.enabled and not logging_only.answers("task")


@pytest.mark.parametrize("raw", [
    {"command": ["openclaw"], "timeout_secs": True},
    {"command": ["openclaw"], "max_output_bytes": -1},
    {"command": ["", "x"]},
    {"command": ["openclaw"], "respond_to": "task"},
])
def test_bad_bridge_values_are_config_errors(raw):
    with pytest.raises(ConfigError):
        parse_bridge(raw, WHERE)


async def test_the_runner_returns_stdout_and_passes_arguments_verbatim():
    outcome = await run_command([sys.executable, "-c", "import sys; print(sys.argv[1])", "$(id) ; rm -rf /"],
                                timeout=10, max_output_bytes=1000)
    assert outcome.ok and outcome.output == "$(id) ; rm -rf /\n" and not outcome.truncated


async def test_the_runner_cuts_at_the_cap_without_breaking_a_character():
    # "é" is two bytes; a cap of 3 bytes splits the second one.
    outcome = await run_command([sys.executable, "-c", "import sys; sys.stdout.write('éé')"],
                                timeout=10, max_output_bytes=3)
    assert (outcome.output, outcome.output_bytes, outcome.truncated) == ("é", 4, True)


async def test_the_runner_reports_a_missing_program_and_a_failure():
    missing = await run_command(["/nonexistent/openclaw"], timeout=10, max_output_bytes=10)
    assert missing.error == "/nonexistent/openclaw: command not found"
    failing = await run_command([sys.executable, "-c", "import sys; print('partial'); sys.exit('boom')"],
                                timeout=10, max_output_bytes=100)
    assert failing.error is not None and failing.error.endswith("exited with status 1: boom")


async def test_the_runner_kills_on_stop():
    stop = asyncio.Event()
    running = asyncio.ensure_future(run_command(
        [sys.executable, "-c", "print('started', flush=True); import time; time.sleep(60)"],
        timeout=60, max_output_bytes=100, stop=stop))
    asyncio.get_running_loop().call_soon(stop.set)
    outcome = await asyncio.wait_for(running, 20)
    assert outcome.error is not None and "the connector stopped while" in outcome.error


def test_tokens_are_masked_in_log_lines():
    formatter = MaskingFormatter("%(message)s")
    formatter.add_secret("cbn_secret_value_123")
    formatter.add_secret("short")  # too short to be a token; never masked
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token %s in a short line", ("cbn_secret_value_123",),
                               None)
    assert formatter.format(record) == "token [redacted] in a short line"


def test_urls_are_shown_without_credentials_or_query():
    assert display_url("wss://user:pw@hub.example.com:8443/ws?token=abc") == "wss://hub.example.com:8443/ws"
    assert display_url("ws://127.0.0.1:3002") == "ws://127.0.0.1:3002"


def test_the_console_script_names_a_callable():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    module, _, function = project["project"]["scripts"]["clawbot-connector"].partition(":")
    assert module == "clawbot_connector.cli"
    assert callable(getattr(importlib.import_module(module), function))
