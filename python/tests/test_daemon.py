"""The connector daemon as a real process (``python -m clawbot_connector
run``) against the real hub, with a stand-in OpenClaw: a script that prints
what it was given.

Tests wait on events (lines on the daemon's stderr, the exit of a process,
a task reaching a final state over REST), never for a fixed time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from clawbot_connector import BlockingBot, connect_to_network_blocking

#: The longest any single wait may take; reached only when something is wrong.
WAIT = 20.0
FINAL = ("completed", "failed", "cancelled", "timed_out", "dead")

# The stand-in OpenClaw. Its first argument says what to do; every run is
# appended to calls.log next to it, so a test can tell it never ran.
FAKE_OPENCLAW = textwrap.dedent("""\
    import json, os, sys
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "calls.log"), "a") as log:
        log.write(json.dumps(sys.argv[1:]) + "\\n")
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "echo":
        print("openclaw heard: " + json.dumps(args))
        print("token seen: " + str("CLAWBOT_TOKEN" in os.environ))
    elif mode == "flood":
        sys.stdout.write("x" * int(args[0]))
    elif mode == "fail":
        sys.stderr.write("model unavailable\\n")
        sys.exit(3)
""")


@pytest.fixture
def openclaw(tmp_path: Path) -> Path:
    """The stand-in command, executable, named ``openclaw``."""
    directory = tmp_path / "bin"
    directory.mkdir()
    script = directory / "openclaw"
    script.write_text(f"#!{sys.executable}\n{FAKE_OPENCLAW}")
    script.chmod(0o755)
    return script


@pytest.fixture
def sleeper(tmp_path: Path) -> Path:
    """An ``openclaw`` that never finishes. It is a shell script so that it
    has written its pid, and its helper's, long before any time limit; the
    helper shows the whole process group is killed."""
    directory = tmp_path / "slow"
    directory.mkdir()
    script = directory / "openclaw"
    script.write_text('#!/bin/sh\nsleep 120 &\necho "$$ $!" > "$1.tmp" && mv "$1.tmp" "$1"\nwait\n')
    script.chmod(0o755)
    return script


def calls_of(openclaw: Path) -> List[List[str]]:
    log = openclaw.parent / "calls.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


class DaemonProcess:
    """``python -m clawbot_connector run``, with its stderr read line by line
    in a thread so tests can wait for a line and the pipe never fills."""

    def __init__(self, config: Optional[Path], env: Optional[Dict[str, str]] = None) -> None:
        command = [sys.executable, "-m", "clawbot_connector", "run"]
        if config is not None:
            command += ["--config", str(config)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, **(env or {})})
        self.lines: List[str] = []
        self._cursor = 0
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<eof>")
            self._changed.notify_all()

    @property
    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str) -> "re.Match[str]":
        """The first line from here on that matches ``pattern``."""
        deadline = time.monotonic() + WAIT
        with self._changed:
            while True:
                while self._cursor < len(self.lines):
                    line = self.lines[self._cursor]
                    self._cursor += 1
                    match = re.search(pattern, line)
                    if match:
                        return match
                    if line == "<eof>":
                        raise AssertionError(f"daemon exited before {pattern!r}:\n{self.log_unlocked()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no line matching {pattern!r} within {WAIT}s:\n{self.log_unlocked()}")
                self._changed.wait(remaining)

    def log_unlocked(self) -> str:
        return "\n".join(self.lines)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(timeout=WAIT)
        self._reader.join(timeout=WAIT)
        return code


@pytest.fixture
def daemons() -> Iterator[List[DaemonProcess]]:
    """Daemons a test started; any still running at the end are killed."""
    started: List[DaemonProcess] = []
    yield started
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


def write_config(path: Path, hub: Any, agent_id: str, token: Optional[str] = None, **extra: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "server_url": hub.ws,
        "rest_url": hub.http,
        "token": token or hub.agent_token(agent_id),
        "bot_id": agent_id,
        "bot_name": agent_id.title(),
        **extra,
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


def bridge(openclaw: Path, *args: str, **settings: Any) -> Dict[str, Any]:
    return {"command": [str(openclaw), *args], "allowed_executables": ["openclaw"], **settings}


def start(daemons: List[DaemonProcess], config: Optional[Path], env: Optional[Dict[str, str]] = None) -> DaemonProcess:
    daemon = DaemonProcess(config, env)
    daemons.append(daemon)
    daemon.wait_for(r"INFO connected as ")
    return daemon


def cli(*args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-m", "clawbot_connector", *args],
                          capture_output=True, text=True, timeout=WAIT)


def assign(hub: Any, to: str, title: str, description: str = "", payload: Any = None) -> str:
    body: Dict[str, Any] = {"title": title, "description": description, "assigneeId": to}
    if payload is not None:
        body["payload"] = payload
    return str(hub.request("POST", "/api/tasks", body)["id"])


def finished_task(hub: Any, task_id: str) -> Dict[str, Any]:
    """Polls the task over REST until it is in a final state."""
    deadline = time.monotonic() + WAIT
    while True:
        task: Dict[str, Any] = hub.request("GET", f"/api/tasks/{task_id}")
        if task["status"] in FINAL:
            return task
        assert time.monotonic() < deadline, f"task still {task['status']} after {WAIT}s"
        time.sleep(0.05)


def next_event(bot: BlockingBot, got: List[Any]) -> Any:
    """Handles the bot's events until a handler appended to ``got``."""
    deadline = time.monotonic() + WAIT
    while not got:
        assert time.monotonic() < deadline, "no event arrived"
        bot.process_events(timeout=0.1)
    return got.pop(0)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A killed orphan may linger as a zombie until its new parent reaps it.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return False


def test_a_task_runs_the_command_and_its_output_is_the_result(hub, tmp_path, openclaw, daemons):
    config = write_config(tmp_path / "mini" / "config.json", hub, "mini", bridge=bridge(
        openclaw, "echo", "--message", "{content}", "--task", "{task_id}", "--payload", "{payload}",
        "--from", "{from}", "{{literal}}"))
    # The token also in the environment, where the command could inherit it.
    daemon = start(daemons, config, env={"CLAWBOT_TOKEN": json.loads(config.read_text())["token"]})
    # Shell syntax in what others write stays text: no shell ever sees it.
    task_id = assign(hub, "mini", "Build", "the app; $(touch pwned) `id`", payload={"app": "Clawd"})
    task = finished_task(hub, task_id)
    assert task["status"] == "completed", task
    heard = ["--message", "Build\n\nthe app; $(touch pwned) `id`", "--task", task_id,
             "--payload", '{"app": "Clawd"}', "--from", "", "{literal}"]
    # The command does not inherit the agent's token.
    assert task["result"] == f"openclaw heard: {json.dumps(heard)}\ntoken seen: False"
    assert not (Path.cwd() / "pwned").exists()
    daemon.wait_for(rf"task {task_id} completed")
    assert daemon.stop() == 0


def test_a_mention_and_a_dm_are_answered_with_the_output(hub, tmp_path, openclaw, daemons):
    config = write_config(tmp_path / "mini" / "config.json", hub, "mini", bridge=bridge(
        openclaw, "echo", "{from}", "{from_name}", "{group}", "{content}",
        respond_to=["mention", "direct_message"]))
    daemon = start(daemons, config)
    with connect_to_network_blocking(**hub.bot_args("alice", bot_name="Alice")) as alice:
        mentions: List[Any] = []
        dms: List[Any] = []
        alice.on_mention(mentions.append)
        alice.on_direct_message(dms.append)
        alice.send_message("@Mini what is {title}?")
        reply = next_event(alice, mentions)
        heard = json.dumps(["alice", "Alice", "clawdbots", "@Mini what is {title}?"])
        assert (reply["from"], reply["groupId"]) == ("mini", "clawdbots")
        assert reply["content"] == f"@Alice openclaw heard: {heard}\ntoken seen: False"
        daemon.wait_for(r"replied to mention from alice")

        alice.send_direct_message("mini", "psst")
        reply = next_event(alice, dms)
        assert reply["from"] == "mini"
        assert reply["content"] == f"openclaw heard: {json.dumps(['alice', 'Alice', '', 'psst'])}\ntoken seen: False"
    daemon.wait_for(r"replied to direct message from alice")
    assert daemon.stop(signal.SIGINT) == 0


def test_an_executable_not_on_the_allowlist_fails_the_task(hub, tmp_path, openclaw, daemons):
    config = write_config(tmp_path / "mini" / "config.json", hub, "mini", bridge={
        "command": [str(openclaw), "echo", "{content}"], "allowed_executables": ["claude"]})
    daemon = DaemonProcess(config)
    daemons.append(daemon)
    daemon.wait_for(r"WARNING .*allowed_executables does not list")
    daemon.wait_for(r"connected as mini")
    task = finished_task(hub, assign(hub, "mini", "Anything"))
    assert task["status"] == "failed"
    assert task["error"] == f"refusing to run {str(openclaw)!r}: 'openclaw' is not in bridge.allowed_executables"
    assert calls_of(openclaw) == []
    assert daemon.stop() == 0


def test_a_command_over_its_time_limit_is_killed_and_the_task_fails(hub, tmp_path, sleeper, daemons):
    pids = tmp_path / "pids"
    config = write_config(tmp_path / "mini" / "config.json", hub, "mini",
                          bridge=bridge(sleeper, str(pids), timeout_secs=1))
    daemon = start(daemons, config)
    task = finished_task(hub, assign(hub, "mini", "Think hard"))
    assert task["status"] == "failed"
    assert task["error"] == "openclaw timed out after 1s and was killed"
    command, helper = (int(pid) for pid in pids.read_text().split())
    assert process_gone(command)
    deadline = time.monotonic() + WAIT
    while not process_gone(helper):
        assert time.monotonic() < deadline, "the command's helper outlived the kill"
        time.sleep(0.05)
    assert daemon.stop() == 0


def test_output_over_the_cap_is_truncated(hub, tmp_path, openclaw, daemons):
    config = write_config(tmp_path / "mini" / "config.json", hub, "mini",
                          bridge=bridge(openclaw, "flood", "5000", max_output_bytes=1000))
    daemon = start(daemons, config)
    task = finished_task(hub, assign(hub, "mini", "Talk a lot"))
    assert task["status"] == "completed"
    assert task["result"] == "x" * 1000 + "\n[output truncated to 1000 bytes of 5000]"
    daemon.wait_for(r"completed \(5000 bytes of output, truncated\)")
    assert daemon.stop() == 0


def test_a_failing_command_fails_the_task_with_its_stderr(hub, tmp_path, openclaw, daemons):
    config = write_config(tmp_path / "mini" / "config.json", hub, "mini", bridge=bridge(openclaw, "fail"))
    daemon = start(daemons, config)
    task = finished_task(hub, assign(hub, "mini", "Try"))
    assert (task["status"], task["error"]) == ("failed", "openclaw exited with status 3: model unavailable")
    assert daemon.stop() == 0


def test_a_stop_kills_the_running_command_and_fails_its_task(hub, tmp_path, sleeper, daemons):
    pids = tmp_path / "pids"
    config = write_config(tmp_path / "mini" / "config.json", hub, "mini", bridge=bridge(sleeper, str(pids)))
    daemon = start(daemons, config)
    task_id = assign(hub, "mini", "Long job")
    daemon.wait_for(rf"task {task_id}: running openclaw")
    deadline = time.monotonic() + WAIT
    while not pids.exists():
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    assert daemon.stop() == 0
    task = finished_task(hub, task_id)
    assert (task["status"], task["error"]) == (
        "failed", "the connector stopped while openclaw was running; it was killed")
    assert process_gone(int(pids.read_text().split()[0]))


def test_without_a_command_it_only_logs_and_leaves_tasks_alone(hub, tmp_path, daemons):
    config = write_config(tmp_path / "mini" / "config.json", hub, "mini")
    daemon = start(daemons, config)
    task_id = assign(hub, "mini", "Not for a logger")
    daemon.wait_for(rf"task {task_id} assigned \(seq \d+\): \"Not for a logger\" \(left alone")
    assert hub.request("GET", f"/api/tasks/{task_id}")["status"] == "assigned"
    with connect_to_network_blocking(**hub.bot_args("alice", bot_name="Alice")) as alice:
        alice.send_message("line one\nline two @Mini")
        alice.send_direct_message("mini", "a DM")
    daemon.wait_for(r'message from alice in clawdbots \(seq \d+\): "line one\\nline two @Mini"$')
    daemon.wait_for(r'mention from alice in clawdbots')
    daemon.wait_for(r'direct message from alice \(seq \d+\): "a DM"$')
    assert daemon.stop(signal.SIGINT) == 0


def test_status_while_running_and_after_sigterm(hub, isolated_home, daemons):
    # The default places: ~/.clawbot-network/config.json and state.json.
    config = write_config(isolated_home / ".clawbot-network" / "config.json", hub, "mini")
    token = json.loads(config.read_text())["token"]
    daemon = start(daemons, None)

    shown = cli("status")
    assert shown.returncode == 0, shown
    assert shown.stdout.splitlines()[0] == "connected"
    assert "agent:      mini" in shown.stdout and f"hub:        {hub.ws}" in shown.stdout
    state = json.loads(cli("status", "--json").stdout)
    assert (state["connected"], state["agent_id"], state["pid"]) == (True, "mini", daemon.process.pid)
    state_path = isolated_home / ".clawbot-network" / "state.json"
    assert stat.S_IMODE(state_path.stat().st_mode) == 0o600

    with connect_to_network_blocking(**hub.bot_args("alice")) as alice:
        alice.send_direct_message("mini", "hello")
    daemon.wait_for(r"direct message from alice")
    assert json.loads(cli("status", "--json").stdout)["last_event"]["type"] == "direct_message"
    assert "last event: direct message from alice at " in cli("status").stdout

    assert daemon.stop() == 0
    daemon.wait_for(r"INFO stopped$")
    stopped = cli("status")
    assert stopped.returncode == 3
    assert stopped.stdout.startswith("not running (stopped at ")
    assert token not in daemon.log and token not in state_path.read_text()


def test_a_second_daemon_with_the_same_config_refuses_to_start(hub, tmp_path, daemons):
    config = write_config(tmp_path / "mini" / "config.json", hub, "mini")
    first = start(daemons, config)
    second = cli("run", "--config", str(config))
    assert second.returncode == 1
    assert f"another `clawbot-connector run` (pid {first.process.pid}) already uses {config}" in second.stderr
    assert cli("status", "--config", str(config)).returncode == 0
    assert first.stop() == 0


def test_status_of_a_killed_daemon_says_it_is_gone(hub, tmp_path, daemons):
    config = write_config(tmp_path / "mini" / "config.json", hub, "mini")
    daemon = start(daemons, config)
    daemon.process.kill()
    daemon.process.wait()
    shown = cli("status", "--config", str(config))
    assert shown.returncode == 3
    assert shown.stdout.startswith(f"not running (process {daemon.process.pid} is gone; it was connected)")


def test_it_reconnects_after_the_hub_restarts(hub, tmp_path, openclaw, daemons):
    config = write_config(tmp_path / "mini" / "config.json", hub, "mini",
                          bridge=bridge(openclaw, "echo", "{title}"))
    daemon = start(daemons, config)
    hub.restart_same_ports()
    daemon.wait_for(r"disconnected \(.*\); reconnecting")
    daemon.wait_for(r"connected as mini")
    assert cli("status", "--config", str(config)).returncode == 0
    task = finished_task(hub, assign(hub, "mini", "After the restart"))
    assert task["result"].startswith('openclaw heard: ["After the restart"]')
    assert daemon.stop() == 0


def test_a_join_token_claims_the_id_and_the_agent_token_is_kept(hub, tmp_path, daemons):
    join = hub.request("POST", "/api/tokens", {"kind": "join"})["token"]
    config = write_config(tmp_path / "mini" / "config.json", hub, "mini", token=join, groups=["clawdbots"])
    daemon = start(daemons, config)
    assert "claimed the agent id mini; its own token replaces the join token" in daemon.log
    saved = json.loads(config.read_text())
    assert saved["token"] != join and saved["token"].startswith("cbn_")
    assert saved["groups"] == ["clawdbots"] and saved["bot_id"] == "mini"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert daemon.stop() == 0
    # Restarted, it connects with its own token: the join token no longer
    # could.
    again = start(daemons, config)
    assert again.stop() == 0
    for secret in (join, saved["token"]):
        assert secret not in daemon.log and secret not in again.log


def test_send_delivers_a_direct_message_and_prints_its_seq(hub, tmp_path):
    config = write_config(tmp_path / "mini" / "config.json", hub, "mini")
    with connect_to_network_blocking(**hub.bot_args("bob")) as bob:
        dms: List[Any] = []
        bob.on_direct_message(dms.append)
        sent = cli("send", "--config", str(config), "--to", "bob", "hello", "bob")
        assert sent.returncode == 0, sent.stderr
        seq = int(sent.stdout)
        dm = next_event(bob, dms)
        assert (dm["from"], dm["content"], dm["seq"]) == ("mini", "hello bob", seq)
    to_group = cli("send", "--config", str(config), "--group", "clawdbots", "hi all")
    assert to_group.returncode == 0 and int(to_group.stdout) > 0
    history = hub.request("GET", "/api/groups/clawdbots/messages")
    assert [(m["from_id"], m["content"], m["seq"]) for m in history] == [("mini", "hi all", int(to_group.stdout))]
    unknown = cli("send", "--config", str(config), "--to", "nobody", "hi")
    assert unknown.returncode == 1 and "nobody" in unknown.stderr


@pytest.mark.parametrize("bridge_section, complaint", [
    ("openclaw --message {content}", "bridge' must be an object"),
    ({"command": "openclaw {content}"}, "bridge.command must be a list of strings"),
    ({"command": ["openclaw", "{contnet}"]}, "unknown placeholder {contnet}"),
    ({"command": ["{content}"]}, "bridge.command[0] must not contain a placeholder"),
    ({"command": ["openclaw"], "timeout": 5}, "unknown key bridge.timeout"),
    ({"command": ["openclaw"], "timeout_secs": 0}, "bridge.timeout_secs must be a positive number"),
    ({"command": ["openclaw"], "max_output_bytes": 1.5}, "bridge.max_output_bytes must be a positive whole"),
    ({"command": ["openclaw"], "respond_to": ["everything"]}, "'everything' is not one of"),
    ({"command": ["openclaw"], "allowed_executables": ["/usr/bin/openclaw"]}, "names like 'openclaw'"),
])
def test_a_bad_bridge_config_exits_2_with_the_reason(tmp_path, bridge_section, complaint):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"bot_id": "mini", "bridge": bridge_section}))
    result = cli("run", "--config", str(config))
    assert result.returncode == 2
    assert complaint in result.stderr and str(config) in result.stderr


def test_an_unusable_config_file_exits_2(tmp_path):
    missing = cli("run", "--config", str(tmp_path / "nope.json"))
    assert (missing.returncode, "does not exist" in missing.stderr) == (2, True)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = cli("run", "--config", str(broken))
    assert (result.returncode, "is not valid JSON" in result.stderr) == (2, True)
    broken.write_text(json.dumps({"capabilities": [1, 2]}))
    result = cli("run", "--config", str(broken))
    assert (result.returncode, "'capabilities' must be a list of strings" in result.stderr) == (2, True)


def test_a_refused_token_exits_2_without_printing_it(hub, tmp_path):
    config = write_config(tmp_path / "config.json", hub, "mini", token="cbn_not-a-real-token-0123456789")
    result = cli("run", "--config", str(config))
    assert result.returncode == 2
    assert "cannot connect as mini" in result.stderr
    assert "cbn_not-a-real-token-0123456789" not in result.stderr
    shown = cli("status", "--config", str(config))
    assert shown.returncode == 3 and "last error: " in shown.stdout


def test_an_unreachable_hub_is_retried_until_stopped(tmp_path, daemons):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"server_url": f"ws://127.0.0.1:{port}", "bot_id": "mini", "token": "cbn_x"}))
    daemon = DaemonProcess(config)
    daemons.append(daemon)
    daemon.wait_for(r"WARNING cannot reach the hub at ws://127.0.0.1:\d+ .*; retrying in 1s")
    daemon.wait_for(r"retrying in 2s")
    shown = cli("status", "--config", str(config))
    assert shown.returncode == 1 and shown.stdout.startswith("disconnected")
    assert daemon.stop() == 0
