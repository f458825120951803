"""The SDK side of tasks: on_task handlers finish tasks by returning or
raising; assign_task handles await results, report progress, cancel."""

from __future__ import annotations

import asyncio
from typing import Any, List

import pytest

from clawbot_connector import TaskFailed, connect_to_network, connect_to_network_blocking

WAIT = 10


async def test_a_returning_handler_completes_the_task_with_its_value(hub):
    boss = await connect_to_network(**hub.bot_args("boss"))
    worker = await connect_to_network(**hub.bot_args("worker", capabilities=["xcode"]))
    seen: List[Any] = []

    @worker.on_task
    async def build(task):
        seen.append((task["title"], task.payload, task.status))
        await task.progress(50, "halfway")
        return {"artifact": f"{task.payload['app']}.ipa"}

    handle = await boss.assign_task("Build", capability="xcode", payload={"app": "Clawd"})
    progress: List[Any] = []
    handle.on_progress(lambda percent, note: progress.append((percent, note)))
    result = await handle.result(timeout=WAIT)
    assert result == {"artifact": "Clawd.ipa"}
    assert seen == [("Build", {"app": "Clawd"}, "accepted")]
    assert progress == [(50, "halfway")]
    assert handle.status == "completed"
    stored = hub.request("GET", f"/api/tasks/{handle.id}")
    assert [h["status"] for h in stored["history"]] == ["assigned", "accepted", "in_progress", "completed"]
    await boss.disconnect()
    await worker.disconnect()


async def test_a_raising_handler_fails_the_task(hub):
    boss = await connect_to_network(**hub.bot_args("boss"))
    worker = await connect_to_network(**hub.bot_args("worker"))

    @worker.on_task
    def broken(task):
        raise ValueError("no disk space")

    handle = await boss.assign_task("Deploy", to="worker")
    with pytest.raises(TaskFailed) as failure:
        await handle
    assert failure.value.status == "failed"
    assert "no disk space" in failure.value.error
    await boss.disconnect()
    await worker.disconnect()


async def test_cancel_tells_the_worker_and_the_handle_raises(hub):
    boss = await connect_to_network(**hub.bot_args("boss"))
    worker = await connect_to_network(**hub.bot_args("worker"))
    started = asyncio.Event()
    release = asyncio.Event()
    updates: "asyncio.Queue[Any]" = asyncio.Queue()

    @worker.on_task
    async def slow(task):
        started.set()
        await release.wait()
        return "too late"

    worker.on_task_update(updates.put_nowait)
    handle = await boss.assign_task("Slow", to="worker")
    await asyncio.wait_for(started.wait(), WAIT)
    await handle.cancel()
    with pytest.raises(TaskFailed):
        await handle
    release.set()
    update = await asyncio.wait_for(updates.get(), WAIT)
    assert update["change"]["status"] == "cancelled"
    assert update["task"]["id"] == handle.id
    await boss.disconnect()
    await worker.disconnect()


async def test_an_idempotency_key_returns_the_same_task(hub):
    boss = await connect_to_network(**hub.bot_args("boss"))
    worker = await connect_to_network(**hub.bot_args("worker"))
    first = await boss.assign_task("Once", to="worker", idempotency_key="job-1")
    second = await boss.assign_task("Once", to="worker", idempotency_key="job-1")
    assert first.id == second.id
    assert len(hub.request("GET", "/api/tasks")) == 1
    await boss.disconnect()
    await worker.disconnect()


def test_the_blocking_bot_runs_task_handlers_too(hub):
    boss = connect_to_network_blocking(**hub.bot_args("boss"))
    with connect_to_network_blocking(**hub.bot_args("worker")) as worker:
        @worker.on_task
        def add(task):
            return sum(task.payload)

        task = boss.assign_task("Add", to="worker", payload=[1, 2, 3])
        worker.process_events(timeout=1.0)
        stored = hub.request("GET", f"/api/tasks/{task['id']}")
        assert stored["status"] == "completed" and stored["result"] == 6
    boss.disconnect()
