"""The asyncio SDK against a real hub."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, List

import pytest

import clawbot_connector
from clawbot_connector import (
    AuthenticationError,
    ConnectionFailed,
    HubRejected,
    InvalidServerURL,
    Task,
    connect_to_network,
    get_connector,
)

WAIT = 10


async def next_item(queue: "asyncio.Queue[Any]") -> Any:
    return await asyncio.wait_for(queue.get(), WAIT)


async def test_connect_returns_once_registered_and_joined(hub):
    bot = await connect_to_network(**hub.bot_args("alice"))
    assert bot.bot_id == "alice" and bot.is_connected
    agent = hub.request("GET", "/api/agents/alice")
    assert agent["status"] == "online"
    assert agent["groups"] == ["clawdbots"]
    assert get_connector() is bot
    await bot.disconnect()


async def test_each_decorator_fires_with_the_original_fields(hub):
    alice = await connect_to_network(**hub.bot_args("alice", bot_name="Alice"))
    bob = await connect_to_network(**hub.bot_args("bob", bot_name="Bob"))
    seen: "asyncio.Queue[Any]" = asyncio.Queue()

    @bob.on_message
    def on_message(msg):
        seen.put_nowait(("message", msg))

    @bob.on_message(group="ops")
    async def on_ops(msg):
        seen.put_nowait(("ops", msg))

    @bob.on_mention
    async def on_mention(msg):
        seen.put_nowait(("mention", msg))

    @bob.on_direct_message
    def on_dm(msg):
        seen.put_nowait(("dm", msg))

    @bob.on_task
    def on_task(task):
        seen.put_nowait(("task", task))

    await alice.send_message("hello @Bob")
    kind, msg = await next_item(seen)
    assert kind == "message"
    assert (msg["fromName"], msg["content"], msg["groupId"], msg["from"]) == ("Alice", "hello @Bob", "clawdbots", "alice")
    assert msg.from_name == "Alice" and msg.seq > 0
    kind, mention = await next_item(seen)
    assert kind == "mention" and mention["messageId"] == msg["id"]

    await alice.send_direct_message("bob", "psst")
    kind, dm = await next_item(seen)
    assert (kind, dm["content"], dm["to"], dm["type"]) == ("dm", "psst", "bob", "direct_message")

    await bob.join_group("ops")
    await alice.join_group("ops")
    await alice.send_message("ops only", group="ops")
    kinds = {(await next_item(seen))[0] for _ in range(2)}
    assert kinds == {"message", "ops"}

    created = hub.request("POST", "/api/tasks", {"title": "Deploy", "description": "v2", "assigneeId": "bob"})
    kind, task = await next_item(seen)
    assert kind == "task" and isinstance(task, Task)
    assert task["title"] == "Deploy" and task.title == "Deploy" and task.id == created["id"]
    await alice.disconnect()
    await bob.disconnect()


async def test_reply_to_answers_in_the_group_or_by_dm(hub):
    alice = await connect_to_network(**hub.bot_args("alice", bot_name="Alice"))
    bob = await connect_to_network(**hub.bot_args("bob", bot_name="Bob"))
    heard: "asyncio.Queue[Any]" = asyncio.Queue()

    @bob.on_message
    async def answer(msg):
        await bob.reply_to(msg, "on it")

    @bob.on_direct_message
    async def answer_dm(msg):
        await bob.reply_to(msg, "got your DM")

    alice.on_mention(heard.put_nowait)
    alice.on_direct_message(heard.put_nowait)
    await alice.send_message("can someone deploy?")
    mention = await next_item(heard)
    assert mention["content"] == "@Alice on it" and mention["from"] == "bob"
    await alice.send_direct_message("bob", "hi")
    dm = await next_item(heard)
    assert (dm["type"], dm["content"]) == ("direct_message", "got your DM")
    await alice.disconnect()
    await bob.disconnect()


async def test_an_offline_agent_gets_what_it_missed_on_connect(hub):
    bob = await connect_to_network(**hub.bot_args("bob"))
    bob_token = bob.token
    await bob.disconnect()
    alice = await connect_to_network(**hub.bot_args("alice"))
    await alice.send_direct_message("bob", "while you were out")
    await alice.send_message("group news")
    got: "asyncio.Queue[Any]" = asyncio.Queue()
    bob = await connect_to_network(server_url=hub.ws, rest_url=hub.http, token=bob_token, bot_id="bob")
    bob.on_direct_message(got.put_nowait)
    bob.on_message(got.put_nowait)
    assert (await next_item(got))["content"] == "while you were out"
    assert (await next_item(got))["content"] == "group news"
    await alice.disconnect()
    await bob.disconnect()


async def test_a_hub_restart_mid_conversation_loses_and_doubles_nothing(hub):
    alice = await connect_to_network(**hub.bot_args("alice"))
    bob = await connect_to_network(**hub.bot_args("bob"))
    received: List[str] = []
    a_third = asyncio.Event()
    done = asyncio.Event()
    disconnects: "asyncio.Queue[Any]" = asyncio.Queue()
    total = 40

    @bob.on_message
    def collect(msg):
        received.append(msg["content"])
        if len(received) == total // 3:
            a_third.set()
        if len(received) == total:
            done.set()

    bob.on_disconnect(lambda: disconnects.put_nowait(True))

    async def talk():
        for n in range(total):
            await alice.send_message(f"m{n}")

    sender = asyncio.create_task(talk())
    await asyncio.wait_for(a_third.wait(), WAIT)
    hub.restart_same_ports()
    await next_item(disconnects)
    await asyncio.wait_for(sender, 30)
    await asyncio.wait_for(done.wait(), 30)
    assert received == [f"m{n}" for n in range(total)]
    await alice.disconnect()
    await bob.disconnect()


async def test_a_failing_handler_is_logged_and_the_bot_keeps_going(hub, caplog):
    alice = await connect_to_network(**hub.bot_args("alice"))
    bob = await connect_to_network(**hub.bot_args("bob"))
    got: "asyncio.Queue[Any]" = asyncio.Queue()

    @bob.on_direct_message
    def broken(msg):
        raise RuntimeError("boom")

    bob.on_direct_message(got.put_nowait)
    with caplog.at_level(logging.ERROR, logger="clawbot_connector"):
        await alice.send_direct_message("bob", "one")
        await alice.send_direct_message("bob", "two")
        assert (await next_item(got))["content"] == "one"
        assert (await next_item(got))["content"] == "two"
    assert "boom" in caplog.text
    await alice.disconnect()
    await bob.disconnect()


async def test_async_with_disconnects(hub):
    async with connect_to_network(**hub.bot_args("alice")) as bot:
        assert bot.is_connected
    assert hub.request("GET", "/api/agents/alice")["status"] in ("online", "offline")
    assert not bot.is_connected


async def test_history_and_agents(hub):
    bot = await connect_to_network(**hub.bot_args("alice"))
    for n in range(3):
        await bot.send_message(f"h{n}")
    rows = await bot.history(limit=2)
    assert [row["content"] for row in rows] == ["h1", "h2"]
    older = await bot.history(before=rows[0]["seq"])
    assert [row["content"] for row in older] == ["h0"]
    agents = await bot.list_agents()
    assert [a["id"] for a in agents] == ["alice"]
    await bot.disconnect()


async def test_errors_are_clear_exceptions(hub):
    with pytest.raises(InvalidServerURL):
        await connect_to_network(server_url="http://nope", bot_id="x")
    with pytest.raises(ConnectionFailed):
        await connect_to_network(server_url="ws://127.0.0.1:1", bot_id="x", connect_timeout=3)
    with pytest.raises(AuthenticationError):
        await connect_to_network(server_url=hub.ws, token="cbn_wrong", bot_id="x")
    with pytest.raises(clawbot_connector.ClawBotError):
        await connect_to_network(server_url=hub.ws, bot_id="x")  # no token
    bot = await connect_to_network(**hub.bot_args("alice"))
    with pytest.raises(HubRejected) as error:
        await bot.send_direct_message("nobody", "x")
    assert error.value.code == "unknown_agent"
    await bot.send_message("still fine")
    await bot.disconnect()


async def test_the_original_skill_usage_runs_as_written(hub):
    # The original SKILL.md, with the `await`s it forgot.
    from clawbot_connector import connect_to_network

    macbook = await connect_to_network(**hub.bot_args("clawdbot-macbook"))
    tasks: "asyncio.Queue[Any]" = asyncio.Queue()
    macbook.on_direct_message(tasks.put_nowait)

    bot = await connect_to_network(**hub.bot_args("clawdbot-vps"))
    printed: List[str] = []

    @bot.on_message
    def handle_message(msg):
        printed.append(f"[{msg['fromName']}] {msg['content']}")

    @bot.on_mention
    def handle_mention(msg):
        ...

    @bot.on_task
    def handle_task(task):
        print(task["title"])

    await bot.send_direct_message("clawdbot-macbook", "/task Deploy new version")
    assert (await next_item(tasks))["content"] == "/task Deploy new version"
    await bot.disconnect()
    await macbook.disconnect()


async def _until(condition: Any) -> bool:
    """Whether ``condition()`` holds within WAIT seconds. The SDK has no
    event for presence, so this polls what it keeps."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_get_online_bots_follows_who_comes_and_goes(hub):
    from clawbot_connector import _native

    alice = await connect_to_network(**hub.bot_args("alice"))
    bob = await connect_to_network(**hub.bot_args("bob"))

    def online(bot: Any) -> List[str]:
        return [agent["id"] for agent in bot.get_online_bots()]

    assert await _until(lambda: online(alice) == ["alice", "bob"]), online(alice)
    # A client that does not follow presence (as the daemon connects) is
    # told nothing: its list stays empty while alice's keeps up.
    quiet = await _native.connect(server_url=hub.ws, rest_url=hub.http, agent_id="carol",
                                  token=hub.agent_token("carol"), presence=False)
    await bob.disconnect()
    assert await _until(lambda: online(alice) == ["alice", "carol"]), online(alice)
    assert list(quiet.online_agents()) == []
    await quiet.close()
    await alice.disconnect()


async def test_an_event_is_neither_lost_nor_reordered_when_a_wait_for_it_is_cancelled(hub):
    from clawbot_connector import _native

    alice = await connect_to_network(**hub.bot_args("alice"))
    bob = await _native.connect(server_url=hub.ws, rest_url=hub.http, agent_id="bob",
                                token=hub.agent_token("bob"))
    # Take what registering brought (connected, presence) until it is quiet.
    while await bob.next_events(timeout=0.3):
        pass
    waiting = asyncio.ensure_future(bob.next_events())
    await asyncio.sleep(0)  # let the wait start on the runtime
    waiting.cancel()
    await alice.send_direct_message("bob", "first")
    await alice.send_direct_message("bob", "second")
    contents: List[str] = []
    while len(contents) < 2:
        batch = await bob.next_events(timeout=WAIT)
        assert batch, "the messages never came"
        contents += [m["content"] for m in batch if m.type == "direct_message"]
    assert contents == ["first", "second"]
    await bob.close()
    await alice.disconnect()
