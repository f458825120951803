"""SKILL.md's examples run as written against a real hub."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

from clawbot_connector import connect_to_network
from conftest import ROOT

WAIT = 30


def blocks(language: str) -> List[str]:
    text = (ROOT / "SKILL.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def script_env(hub, home: Path, bot_id: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWBOT_")}
    env.update(HOME=str(home), CLAWBOT_SERVER_URL=hub.ws, CLAWBOT_REST_URL=hub.http,
               CLAWBOT_BOT_ID=bot_id, CLAWBOT_TOKEN=hub.agent_token(bot_id))
    return env


async def test_the_ask_tell_and_hand_work_example(hub, tmp_path):
    script = next(b for b in blocks("python") if "assign_task" in b)
    worker = await connect_to_network(**hub.bot_args("clawdbot-macbook", capabilities=["xcode"]))

    @worker.on_task
    async def run_tests(task):
        await task.progress(50, "half the tests")
        return {"passed": 42, "branch": task.payload["branch"]}

    path = tmp_path / "example.py"
    path.write_text(script)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(path), env=script_env(hub, tmp_path, "release-script"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode == 0, err.decode()
    output = out.decode()
    assert "online:" in output and "clawdbot-macbook" in output
    assert "50% half the tests" in output
    result_line = next(line for line in output.splitlines() if line.startswith("result: "))
    assert "'passed': 42" in result_line and "'branch': 'release-1.4'" in result_line
    assert "Release 1.4 starts now" in output  # the history at the end
    await worker.disconnect()


async def test_the_listener_example_reacts(hub, tmp_path):
    script = next(b for b in blocks("python") if "run_forever" in b)
    path = tmp_path / "listener.py"
    path.write_text(script)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(path), env=script_env(hub, tmp_path, "listener"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        alice = await connect_to_network(**hub.bot_args("alice", bot_name="Alice"))
        # Wait for the listener to be online: the hub tells alice who is.
        for _ in range(100):
            if any(a["id"] == "listener" for a in await alice.list_agents() if a["status"] == "online"):
                break
            await asyncio.sleep(0.05)
        replies: "asyncio.Queue[Any]" = asyncio.Queue()
        alice.on_mention(replies.put_nowait)
        alice.on_direct_message(replies.put_nowait)
        await alice.send_message("hey @listener")
        assert (await asyncio.wait_for(replies.get(), WAIT))["content"] == "@Alice on it"
        await alice.send_direct_message("listener", "hi")
        assert (await asyncio.wait_for(replies.get(), WAIT))["content"] == "got: hi"
        handle = await alice.assign_task("Lint", to="listener")
        assert await handle.result(timeout=WAIT) == {"summary": "did Lint"}
        line = await asyncio.wait_for(process.stdout.readline(), WAIT)
        assert line.decode().strip() == "[clawdbots] Alice: hey @listener"
        await alice.disconnect()
    finally:
        process.terminate()
        await process.wait()


def test_the_blocking_example(hub, tmp_path):
    script = next(b for b in blocks("python") if "connect_to_network_blocking" in b)
    env = script_env(hub, tmp_path, "nightly-report")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    rows = hub.request("GET", "/api/groups/clawdbots/messages")
    assert rows[-1]["content"] == "Nightly report is ready"


def test_the_http_example(hub, tmp_path):
    script = next(b for b in blocks("bash") if "/api/agents" in b)
    config = tmp_path / ".clawbot-network"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"rest_url": hub.http, "token": hub.agent_token("x")}))
    done = subprocess.run(["bash", "-c", "set -e\n" + script], env={**os.environ, "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    first = json.JSONDecoder().raw_decode(done.stdout)[0]
    assert isinstance(first, list)
