"""The blocking bot for plain scripts, and where settings come from."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from clawbot_connector import connect_to_network_blocking, settings
from clawbot_connector.settings import DEFAULT_SERVER_URL, resolve


def test_blocking_bot_sends_and_runs_handlers(hub):
    alice = connect_to_network_blocking(**hub.bot_args("alice", bot_name="Alice"))
    with connect_to_network_blocking(**hub.bot_args("bob")) as bob:
        got = []
        bob.on_direct_message(got.append)
        sent = alice.send_direct_message("bob", "hi")
        assert sent["seq"] > 0
        alice.send_message("to the group")
        # Handles what is there, then returns after a quiet second.
        assert bob.process_events(timeout=1.0) >= 1
        assert [m["content"] for m in got] == ["hi"]
        with pytest.raises(TypeError):
            @bob.on_message
            async def not_here(msg):
                ...
    alice.disconnect()


def test_ctrl_c_stops_a_blocking_wait(hub, tmp_path):
    script = tmp_path / "wait.py"
    args = hub.bot_args("waiter")
    script.write_text(textwrap.dedent(f"""
        import sys
        from clawbot_connector import connect_to_network_blocking
        bot = connect_to_network_blocking(**{args!r})
        try:
            print("ready", flush=True)
            bot.run_forever()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(0)
    """))
    # Python turns SIGINT into KeyboardInterrupt only if the process did not
    # start with it ignored, as it is under a shell that ran this test in
    # the background: the child gets the default disposition back.
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert out.strip() == "interrupted"
    assert process.returncode == 0


def test_defaults_never_point_at_a_remote_hub(isolated_home):
    resolved = resolve({}, file={})
    assert resolved.server_url == DEFAULT_SERVER_URL == "ws://127.0.0.1:3002"
    assert resolved.bot_id.startswith("clawdbot-")
    assert resolved.bot_name == f"ClawBot@{socket.gethostname()}"
    assert resolved.groups == ["clawdbots"]
    assert resolved.device


def test_arguments_beat_environment_beat_config_file(isolated_home, monkeypatch):
    config_dir = isolated_home / ".clawbot-network"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps({
        "server_url": "ws://from-file:3002", "token": "file-token", "bot_id": "file-bot",
        "capabilities": ["gpu"], "unknown_key": 1,
    }))
    monkeypatch.setattr(settings, "CONFIG_DIR", config_dir)
    resolved = resolve({})
    assert (resolved.server_url, resolved.token, resolved.bot_id, resolved.capabilities) == (
        "ws://from-file:3002", "file-token", "file-bot", ["gpu"])
    monkeypatch.setenv("CLAWBOT_TOKEN", "env-token")
    monkeypatch.setenv("CLAWBOT_CAPABILITIES", "xcode, gpu")
    resolved = resolve({})
    assert resolved.token == "env-token" and resolved.capabilities == ["xcode", "gpu"]
    resolved = resolve({"token": "arg-token", "bot_id": None})
    assert resolved.token == "arg-token" and resolved.bot_id == "file-bot"


def test_name_comes_from_the_openclaw_soul(isolated_home, monkeypatch):
    workspace = isolated_home / ".openclaw" / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "SOUL.md").write_text("# Soul\n\n- **Name:** 老邢\n- Role: builder\n")
    assert resolve({}, file={}).bot_name == "老邢"
    monkeypatch.setenv("CLAWBOT_BOT_NAME", "Env Name")
    assert resolve({}, file={}).bot_name == "Env Name"


def test_a_broken_config_file_is_an_error(isolated_home, monkeypatch):
    path = isolated_home / "config.json"
    path.write_text("[1, 2]")
    monkeypatch.setenv("CLAWBOT_CONFIG", str(path))
    with pytest.raises(ValueError):
        resolve({})
