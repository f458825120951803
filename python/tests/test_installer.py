"""The one-line installer, for real: piped from a running hub into a
temporary HOME, installing the wheel built in this run from the hub's
downloads; the daemon it sets up comes online and runs a stand-in OpenClaw
command for a task. Re-running keeps the config; --uninstall removes it."""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import pytest

from conftest import ROOT, TOOL_ENV, WHEEL_DIR, Hub

DEADLINE = 60.0


def wait_for(what: str, check: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """Polls a REST endpoint or a file until `check` returns something."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built in this run (scripts/test-all sets CLAWBOT_WHEEL_DIR);
    built here with maturin when it is not given."""
    if WHEEL_DIR:
        return Path(WHEEL_DIR)
    out = tmp_path_factory.mktemp("wheels")
    maturin = Path(sys.executable).with_name("maturin")
    subprocess.run([str(maturin), "build", "--quiet", "--out", str(out)], cwd=ROOT / "python", check=True,
                   env=TOOL_ENV)
    return out


@pytest.fixture
def hub_with_downloads(tmp_path: Path, wheel_dir: Path) -> Iterator[Hub]:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for wheel in wheel_dir.glob("*.whl"):
        shutil.copy(wheel, downloads)
    assert any(downloads.iterdir()), "no wheel to offer"
    running = Hub(tmp_path / "data", ["--downloads-dir", str(downloads)])
    yield running
    running.stop()


def run_installer(hub: Hub, home: Path, query: str, *args: str) -> subprocess.CompletedProcess:
    """`curl -fsSL HUB/install-clawbot.sh | bash -s -- ARGS` with HOME=home."""
    env = {**os.environ, "HOME": str(home)}
    for name in list(env):
        if name.startswith("CLAWBOT_") or name in ("VIRTUAL_ENV", "PYTHONHOME"):
            env.pop(name)
    command = f"curl -fsSL '{hub.http}/install-clawbot.sh{query}' | bash -s -- {' '.join(args)}"
    return subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def agent(hub: Hub, agent_id: str) -> Dict[str, Any]:
    try:
        return hub.request("GET", f"/api/agents/{agent_id}")
    except Exception:
        return {}


def test_install_connect_run_a_task_reinstall_and_uninstall(hub_with_downloads: Hub, tmp_path: Path):
    hub = hub_with_downloads
    home = tmp_path / "home-mac"
    home.mkdir()
    join = hub.request("POST", "/api/tokens", {"kind": "join"})["token"]
    installed = run_installer(hub, home, f"?token={join}", "--no-service", "--bot-id", "ci-mac",
                              "--capabilities", "build")
    assert installed.returncode == 0, installed.stderr
    assert "Installed the connector from the hub" in installed.stdout
    base = home / ".clawbot-network"
    config_path = base / "config.json"
    config = json.loads(config_path.read_text())
    assert config["server_url"] == hub.http.replace("http://", "ws://") + "/ws"
    assert config["token"] == join and config["bot_id"] == "ci-mac" and config["capabilities"] == ["build"]
    assert (config_path.stat().st_mode & 0o777) == 0o600
    assert (base.stat().st_mode & 0o777) == 0o700

    # A stand-in for OpenClaw: prints what it was asked, as a task's result.
    openclaw = tmp_path / "openclaw"
    openclaw.write_text("#!/bin/sh\necho \"openclaw did: $2\"\n")
    openclaw.chmod(0o755)
    config["bridge"] = {
        "command": [str(openclaw), "agent", "{title}"],
        "allowed_executables": ["openclaw"],
        "timeout_secs": 30,
        "respond_to": ["task"],
    }
    config_path.write_text(json.dumps(config))

    env = {**os.environ, "HOME": str(home)}
    subprocess.run([str(base / "start.sh"), "--background"], env=env, check=True)
    try:
        online = wait_for("ci-mac online", lambda: agent(hub, "ci-mac").get("status") == "online")
        assert online
        assert agent(hub, "ci-mac")["capabilities"] == ["build"]
        task = hub.request("POST", "/api/tasks", {"title": "Ship v2", "capability": "build"})
        done = wait_for("the task result", lambda: (
            lambda stored: stored if stored["status"] in ("completed", "failed") else None
        )(hub.request("GET", f"/api/tasks/{task['id']}")))
        assert done["status"] == "completed", done
        assert "openclaw did: Ship v2" in json.dumps(done["result"])
        status = subprocess.run([str(base / "venv" / "bin" / "clawbot-connector"), "status"],
                                env=env, capture_output=True, text=True)
        assert status.returncode == 0 and "ci-mac" in status.stdout, status.stdout + status.stderr
    finally:
        subprocess.run([str(base / "stop.sh")], env=env)
    wait_for("ci-mac offline", lambda: agent(hub, "ci-mac").get("status") == "offline")

    # Re-running upgrades in place and keeps the config (and the bridge).
    again = run_installer(hub, home, "", "--no-service")
    assert again.returncode == 0, again.stderr
    assert "Keeping the existing" in again.stdout
    assert json.loads(config_path.read_text())["bridge"]["command"][0] == str(openclaw)

    removed = run_installer(hub, home, "", "--uninstall")
    assert removed.returncode == 0, removed.stderr
    assert not base.exists()


def test_installer_errors_are_clear(hub_with_downloads: Hub, tmp_path: Path):
    hub = hub_with_downloads
    home = tmp_path / "home-new-machine"
    home.mkdir()
    old_python = tmp_path / "python-too-old"
    old_python.write_text("#!/bin/sh\nexit 1\n")
    old_python.chmod(0o755)
    failed = run_installer(hub, home, "", "--no-service", "--python", str(old_python))
    assert failed.returncode != 0 and "Python 3.9 or newer" in failed.stderr
    failed = run_installer(hub, home, "", "--no-service", "--python", "/nonexistent/python3")
    assert failed.returncode != 0 and "was not found" in failed.stderr
    failed = run_installer(hub, home, "", "--no-service", "--hub", "http://127.0.0.1:1")
    assert failed.returncode != 0 and "cannot reach the hub" in failed.stderr
    assert not (home / ".clawbot-network").exists()


def test_the_launch_agent_plist_parses(hub_with_downloads: Hub, tmp_path: Path):
    printed = run_installer(hub_with_downloads, tmp_path, "", "--print-launch-agent")
    assert printed.returncode == 0, printed.stderr
    plist = plistlib.loads(printed.stdout.encode())
    assert plist["Label"] == "network.clawbot.connector"
    assert plist["ProgramArguments"] == [str(tmp_path / ".clawbot-network" / "start.sh")]
    assert plist["KeepAlive"] is True and plist["RunAtLoad"] is True
