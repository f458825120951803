"""Fixtures: the real hub binary on port 0 with a temporary data directory,
and helpers to make agent tokens over its REST API."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "py-test-admin-token"
# Read before any test isolates HOME and clears CLAWBOT_* variables.
HUB_BIN = os.environ.get("CLAWBOT_HUB_BIN")
WHEEL_DIR = os.environ.get("CLAWBOT_WHEEL_DIR")
# Tools (cargo, rustup, maturin) need the real home's settings.
TOOL_ENV = {
    **os.environ,
    "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(Path.home() / ".rustup")),
    "CARGO_HOME": os.environ.get("CARGO_HOME", str(Path.home() / ".cargo")),
}


def hub_binary() -> Path:
    if HUB_BIN:
        return Path(HUB_BIN)
    binary = ROOT / "target" / "debug" / "clawbot-hub"
    if not binary.exists():
        subprocess.run(["cargo", "build", "-p", "clawbot-hub"], cwd=ROOT, check=True, env=TOOL_ENV)
    return binary


class Hub:
    """A running hub; restartable on the same ports and data directory."""

    def __init__(self, data_dir: Path, extra_args: List[str]) -> None:
        self.data_dir = data_dir
        self.extra_args = extra_args
        self.process: Optional[subprocess.Popen[str]] = None
        self.http = ""
        self.ws = ""
        self.log = data_dir.parent / "hub.log"
        self.start(["--port", "0", "--ws-port", "0"])

    def start(self, ports: List[str]) -> None:
        log = open(self.log, "a")
        self.process = subprocess.Popen(
            [str(hub_binary()), "--bind", "127.0.0.1", "--data-dir", str(self.data_dir),
             "--token", ADMIN, *ports, *self.extra_args],
            stdout=subprocess.PIPE, stderr=log, text=True,
            env={**os.environ, "RUST_LOG": "info"},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("clawbot-hub listening"), f"hub did not start: {line!r}"
        fields = dict(part.split("=", 1) for part in line.split()[2:])
        self.http = f"http://{fields['http']}"
        self.ws = f"ws://{fields['ws']}"

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def restart_same_ports(self) -> None:
        """A crash (SIGKILL) and a restart on the same ports."""
        self.kill()
        self.start(["--port", self.http.rsplit(":", 1)[1], "--ws-port", self.ws.rsplit(":", 1)[1]])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def request(self, method: str, path: str, body: Any = None, token: str = ADMIN) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.http}{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            return json.loads(text) if text else None

    def agent_token(self, agent_id: str) -> str:
        return self.request("POST", "/api/tokens", {"kind": "agent", "agentId": agent_id})["token"]

    def bot_args(self, bot_id: str, **extra: Any) -> Dict[str, Any]:
        """Arguments for connect_to_network as a given agent."""
        return dict(server_url=self.ws, rest_url=self.http, token=self.agent_token(bot_id),
                    bot_id=bot_id, bot_name=extra.pop("bot_name", bot_id.title()), **extra)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    running = Hub(tmp_path / "data", [])
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads the real ~/.clawbot-network or CLAWBOT_* settings."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith("CLAWBOT_") or name == "OPENCLAW_WORKSPACE":
            monkeypatch.delenv(name)
    return home
