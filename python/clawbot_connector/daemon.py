"""``clawbot-connector run``: stay connected, log what arrives, hand tasks
(and, if configured, mentions and DMs) to the local OpenClaw, and keep a
state file for ``clawbot-connector status``.

Reconnecting after a drop is the SDK's job; the daemon adds retrying the
*first* connection too, because a service started at login must not give up
when the hub is briefly unreachable. What retrying cannot fix (a wrong URL,
a refused token, a name taken by another agent) ends it with exit code 2.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any, Callable, List, Optional, Tuple

from . import _native
from ._native import AuthenticationError, ConnectionFailed, HubRejected, InvalidServerURL, Message
from .bot import ClawBotConnector, native_arguments
from .bridge import Bridge
from .credential_store import save_token
from .daemon_config import ConfigError, DaemonConfig, executable_allowed
from .event_log import describe, now_iso, record
from .instance_lock import AlreadyRunning, InstanceLock, lock_path_for
from .redaction import MaskingFormatter, display_url
from .settings import Settings
from . import state_file
from .state_file import StateFile

logger = logging.getLogger("clawbot_connector.daemon")

EXIT_STOPPED = 0
EXIT_FAILED = 1

#: Delays between attempts at the first connection.
FIRST_RETRY_SECS = 1.0
MAX_RETRY_SECS = 30.0
#: How long a stop waits for a killed command's task to be reported, and
#: then for the connection to close.
STOP_GRACE_SECS = 10.0


class ObservedConnector(ClawBotConnector):
    """The SDK's bot, with every event shown to ``observe`` before the
    handlers run. The daemon logs tasks it does not take on; registering an
    ``on_task`` handler just to see them would make the SDK accept them."""

    def __init__(self, native: _native.NativeClient, settings: Settings,
                 observe: Callable[[Message], None]) -> None:
        self._observe = observe
        super().__init__(native, settings)

    def _calls(self, message: Message, own_id: str) -> List[Tuple[Any, Any, bool]]:
        try:
            self._observe(message)
        except Exception:
            logger.exception("could not record an event")
        return super()._calls(message, own_id)


class Daemon:
    """One run of the daemon; create it inside the event loop."""

    def __init__(self, config: DaemonConfig, formatter: Optional[MaskingFormatter] = None) -> None:
        self.config = config
        self.settings = config.settings
        self.formatter = formatter
        self.stopping = asyncio.Event()
        self.bridge = Bridge(config.bridge, self.stopping)
        self.hub = display_url(self.settings.server_url)
        self.state = StateFile(
            config.state_path,
            hub=self.hub,
            agent_id=self.settings.bot_id,
            config=str(config.config_path),
            bridge=list(config.bridge.respond_to) if config.bridge.enabled else [],
        )
        if formatter is not None:
            formatter.add_secret(self.settings.token)
        # Held for as long as this process lives.
        self._lock = InstanceLock(lock_path_for(config.state_path))

    async def run(self) -> int:
        self._hold_instance_lock()
        self._install_signal_handlers()
        self._log_start()
        self.state.update(state="connecting")
        try:
            bot = await self._connect()
        except (AuthenticationError, InvalidServerURL, HubRejected) as error:
            self.state.update(state="stopped", last_error=str(error), stopped_at=now_iso())
            raise ConfigError(f"cannot connect as {self.settings.bot_id} to {self.hub}: {error}") from None
        if bot is None:
            return self._stopped()
        self._save_credential(bot)
        self.bridge.attach(bot)
        closed = asyncio.ensure_future(bot.run_forever())
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({closed, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        code = EXIT_STOPPED
        if not self.stopping.is_set():
            logger.error("the connection ended without a stop request")
            code = EXIT_FAILED
            self.stopping.set()
        await self._disconnect(bot)
        self._stopped()
        return code

    def _hold_instance_lock(self) -> None:
        try:
            self._lock.acquire()
        except AlreadyRunning:
            other = (state_file.read(self.config.state_path) or {}).get("pid", "?")
            raise AlreadyRunning(f"another `clawbot-connector run` (pid {other}) already uses "
                                 f"{self.config.config_path}; stop it first") from None

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, self._request_stop, signum)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not POSIX
                pass

    def _request_stop(self, signum: int) -> None:
        if self.stopping.is_set():
            return
        logger.info("received %s; stopping", signal.Signals(signum).name)
        self.stopping.set()

    def _log_start(self) -> None:
        bridge = self.config.bridge
        if bridge.enabled:
            what = f"bridging {', '.join(bridge.respond_to)} to {os.path.basename(bridge.command[0])}"
            if not executable_allowed(bridge, bridge.command[0]):
                logger.warning("bridge.command runs %r, which bridge.allowed_executables does not list: "
                               "every bridged event will be refused", bridge.command[0])
        else:
            what = "no bridge.command: logging only"
        for key in self.config.unknown_keys:
            logger.warning("ignoring unknown key %r in %s", key, self.config.config_path)
        logger.info("starting as %s, hub %s, %s (pid %d)", self.settings.bot_id, self.hub, what, os.getpid())

    async def _connect(self) -> Optional[ObservedConnector]:
        """Connects, retrying while the hub is unreachable; None if stopped
        first."""
        delay = FIRST_RETRY_SECS
        while True:
            # The daemon never asks who is online; following presence would
            # cost the hub a frame for every machine on every arrival.
            attempt = asyncio.ensure_future(
                _native.connect(**native_arguments(self.settings), presence=False))
            if not await self._unless_stopped(attempt):
                attempt.cancel()
                return None
            try:
                native = attempt.result()
            except ConnectionFailed as error:
                logger.warning("cannot reach the hub at %s (%s); retrying in %gs", self.hub, error, delay)
                self.state.update(state="disconnected", last_error=str(error))
                if not await self._unless_stopped(asyncio.ensure_future(asyncio.sleep(delay))):
                    return None
                delay = min(delay * 2, MAX_RETRY_SECS)
                continue
            return ObservedConnector(native, self.settings, self._observe)

    async def _unless_stopped(self, work: "asyncio.Future[Any]") -> bool:
        """Waits for ``work`` or a stop; True when ``work`` finished first."""
        stop = asyncio.ensure_future(self.stopping.wait())
        done, _ = await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if work not in done:
            work.cancel()
            return False
        return True

    def _observe(self, message: Message) -> None:
        # A bot's own group messages come back to it; they are not news.
        if message.type == "message" and message.sender == self.settings.bot_id:
            return
        line = describe(message)
        if line is None:
            return
        if message.type == "task_assigned" and not self.config.bridge.answers("task"):
            line += " (left alone: the bridge does not take tasks)"
        # The file first, then the line: whoever reads the line (a person, a
        # test) finds the state file already saying so.
        if message.type == "connected":
            self.state.update(state="connected", connected_at=now_iso(), last_error=None)
        elif message.type == "disconnected":
            self.state.update(state="disconnected", last_error=message.content)
        else:
            self.state.update(last_event=record(message))
        logger.info("%s", line)
        if message.type == "disconnected" and "4000" in (message.content or ""):
            # The hub keeps one connection per agent id. `send` does this
            # once; a second daemon with the same id would do it forever.
            logger.warning("another connection registered as %s; if this repeats, two daemons share one id",
                           self.settings.bot_id)

    def _save_credential(self, bot: ClawBotConnector) -> None:
        """Keeps the agent token the hub issued when this connection claimed
        the agent id (see ``credential_store``)."""
        token = bot.token
        if not token or token == self.settings.token:
            return
        if self.formatter is not None:
            self.formatter.add_secret(token)
        try:
            save_token(self.config.config_path, token)
        except (OSError, ValueError) as error:
            logger.error("the hub issued this agent's own token, but it could not be saved in %s (%s); "
                         "after a restart the admin must mint a new one (POST /api/tokens)",
                         self.config.config_path, error)
            return
        logger.info("claimed the agent id %s; its own token replaces the join token in %s",
                    self.settings.bot_id, self.config.config_path)
        if os.environ.get("CLAWBOT_TOKEN"):
            logger.warning("CLAWBOT_TOKEN is set and would override the saved token; unset it before the next start")

    async def _disconnect(self, bot: ClawBotConnector) -> None:
        try:
            # A command still running was killed by the stop; let its task be
            # reported failed while the connection is still there.
            await asyncio.wait_for(self.bridge.idle(), STOP_GRACE_SECS)
        except asyncio.TimeoutError:
            logger.warning("an event was still being handled after %gs; disconnecting anyway", STOP_GRACE_SECS)
        try:
            await asyncio.wait_for(bot.disconnect(), STOP_GRACE_SECS)
        except asyncio.TimeoutError:
            logger.warning("the connection did not close within %gs", STOP_GRACE_SECS)

    def _stopped(self) -> int:
        self.state.update(state="stopped", stopped_at=now_iso())
        logger.info("stopped")
        return EXIT_STOPPED


async def run_daemon(config: DaemonConfig, formatter: Optional[MaskingFormatter] = None) -> int:
    """Runs until SIGTERM or SIGINT; returns the exit code."""
    return await Daemon(config, formatter).run()
