"""Waiting for barriers and consuming completions, with LISTEN as a wake-up and the tables as
the truth.

A waiter owns one connection, opened from a conninfo string. With ``listen=True`` it LISTENs on
the barriers' channels and is woken by their notifications; whether or not it is woken, it
re-reads the state every ``poll_interval`` seconds, so a missed notification (a reconnect, a
listener that was not there yet) costs latency, never a completion. With ``listen=False`` it only
polls: use that behind a transaction-pooling PgBouncer, where LISTEN does not work.

A lost connection is reopened (after ``reconnect_delay`` seconds, then again until it works);
what was claimed in the transaction that was lost is rolled back by the server and handed out
again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncGenerator, Callable, Generator, Optional

import psycopg

from . import _calls
from ._types import BarrierStatus, Completion, Notification
from .client import AsyncBarriers, Barriers
from .errors import UnknownBarrier

log = logging.getLogger(__name__)

Match = Optional[Callable[[Notification], bool]]


def _matches(match: Match, payload: str) -> bool:
    if match is None:
        return True
    try:
        return match(Notification.parse(payload))
    except (ValueError, KeyError, TypeError):
        # Not one of pg_barrier's payloads: someone else NOTIFYs on this channel; re-read anyway.
        return True


def _for_barrier(id: str) -> Match:
    return lambda notification: notification.id == id


class _Settings:
    """What the two waiters share: their settings and the channels they listen on."""

    def __init__(
        self,
        conninfo: str,
        *,
        listen: bool = True,
        poll_interval: float = 1.0,
        reconnect_delay: float = 0.5,
        schema: Optional[str] = None,
        **connect_kwargs: Any,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.conninfo = conninfo
        self.listen = listen
        self.poll_interval = poll_interval
        self.reconnect_delay = reconnect_delay
        self.schema = schema
        # Autocommit: the waiter's transactions are explicit, and notifications are delivered
        # between them. Nothing prepared, so the same waiter works through PgBouncer.
        self.connect_kwargs = {**connect_kwargs, "autocommit": True, "prepare_threshold": None}
        self.channels: set[str] = set()


class Waiter(_Settings):
    """Waits for barriers and hands out completions on a connection of its own (synchronous)::

        with Waiter(dsn) as waiter:
            status = waiter.wait("report-42", timeout=60)     # any State but PENDING
            for completion in waiter.completions("etl_done"):
                handle(completion)   # committed as handed out when the next one is asked for
    """

    _conn: Optional[psycopg.Connection[Any]] = None
    _loop: Optional[Generator[Completion, None, None]] = None

    def __enter__(self) -> "Waiter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._close_loop()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def connection(self) -> psycopg.Connection[Any]:
        """The waiter's connection, opened (and its channels listened to) when needed."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._drop()
            conn = psycopg.connect(self.conninfo, **self.connect_kwargs)
            if self.listen:
                for channel in sorted(self.channels):
                    conn.execute(_calls.listen(channel))
            self._conn = conn
        return self._conn

    def _listen(self, channel: str) -> bool:
        """LISTENs on ``channel`` if it does not yet: true when it just started to."""
        if not self.listen or channel in self.channels:
            return False
        self.connection.execute(_calls.listen(channel))
        self.channels.add(channel)
        return True

    def _pause(self, seconds: float, match: Match) -> None:
        """Returns after a notification ``match`` accepts, or after ``seconds``."""
        if not (self.listen and self.channels):
            time.sleep(seconds)
            return
        for notify in self.connection.notifies(timeout=seconds):
            if _matches(match, notify.payload):
                return

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _lost(self, error: psycopg.OperationalError) -> None:
        log.warning("pg_barrier waiter: connection lost (%s); reconnecting", error)
        self._drop()
        time.sleep(self.reconnect_delay)

    def _close_loop(self) -> None:
        """Closes the last completions loop, if it was left without being closed (its generator
        still referenced): its claim rolls back, as leaving the loop promised, before this
        connection does anything else."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.close()

    def wait(self, id: str, timeout: float) -> BarrierStatus:
        """The barrier's status once its round is finished: complete, complete with failures,
        aborted or expired. An open barrier (``sealed=False``) is not finished before it is
        sealed, even with every report in.

        Raises :class:`TimeoutError` if it is still pending after ``timeout`` seconds and
        :class:`~pg_barrier.errors.UnknownBarrier` if there is no such barrier.
        """
        self._close_loop()
        deadline = time.monotonic() + timeout
        while True:
            try:
                state = Barriers(self.connection, schema=self.schema).status(id)
                if state is None:
                    raise UnknownBarrier(f'barrier "{id}" does not exist')
                if state.status.finished:
                    return state
                if self._listen(state.channel):
                    # A notification sent before LISTEN took effect is not delivered: read again.
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f'barrier "{id}" is still pending after {timeout} s')
                self._pause(min(self.poll_interval, left), _for_barrier(id))
            except psycopg.OperationalError as error:
                if time.monotonic() >= deadline:
                    raise
                self._lost(error)

    def completions(
        self, channel: Optional[str] = None, *, idle_timeout: Optional[float] = None
    ) -> Generator[Completion, None, None]:
        """Completions claimed one at a time with ``barrier_completions(channel)``.

        Each is claimed in a transaction that stays open while you handle it and commits when
        you ask for the next one: if your handling raises, or you break out of the loop, that
        transaction rolls back and the completion is handed out again (to this or another
        consumer). No completion is handed to two consumers that both commit. With a
        ``channel`` and ``listen=True`` the waiter is woken by that channel's notifications;
        without a channel it polls. Stops after ``idle_timeout`` seconds without a completion
        (never, if None). The waiter has one connection: calling ``wait`` or ``completions``
        again ends the previous loop (rolling back its current claim).
        """
        self._close_loop()
        self._loop = self._completions(channel, idle_timeout)
        return self._loop

    def _completions(
        self, channel: Optional[str], idle_timeout: Optional[float]
    ) -> Generator[Completion, None, None]:
        idle_since = time.monotonic()
        while True:
            closing = False
            try:
                if channel is not None and self._listen(channel):
                    continue
                conn = self.connection
                with conn.transaction():
                    claimed = Barriers(conn, schema=self.schema).completions(channel, 1)
                    if claimed:
                        try:
                            yield claimed[0]
                        except GeneratorExit:
                            closing = True  # the loop was left: roll the claim back
                            raise
                if claimed:
                    idle_since = time.monotonic()
                    continue
                pause = self.poll_interval
                if idle_timeout is not None:
                    left = idle_since + idle_timeout - time.monotonic()
                    if left <= 0:
                        return
                    pause = min(pause, left)
                self._pause(pause, None)
            except psycopg.OperationalError as error:
                if closing:
                    # The connection died under the rollback: the server rolled back anyway.
                    self._drop()
                    return
                self._lost(error)


class AsyncWaiter(_Settings):
    """The asyncio twin of :class:`Waiter`::

        async with AsyncWaiter(dsn) as waiter:
            status = await waiter.wait("report-42", timeout=60)
            async for completion in waiter.completions("etl_done"):
                await handle(completion)
    """

    _conn: Optional[psycopg.AsyncConnection[Any]] = None
    _loop: Optional[AsyncGenerator[Completion, None]] = None

    async def __aenter__(self) -> "AsyncWaiter":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._close_loop()
        await self._drop()

    async def connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            await self._drop()
            conn = await psycopg.AsyncConnection.connect(self.conninfo, **self.connect_kwargs)
            if self.listen:
                for channel in sorted(self.channels):
                    await conn.execute(_calls.listen(channel))
            self._conn = conn
        return self._conn

    async def _listen(self, channel: str) -> bool:
        if not self.listen or channel in self.channels:
            return False
        await (await self.connection()).execute(_calls.listen(channel))
        self.channels.add(channel)
        return True

    async def _pause(self, seconds: float, match: Match) -> None:
        if not (self.listen and self.channels):
            await asyncio.sleep(seconds)
            return
        async for notify in (await self.connection()).notifies(timeout=seconds):
            if _matches(match, notify.payload):
                return

    async def _lost(self, error: psycopg.OperationalError) -> None:
        log.warning("pg_barrier waiter: connection lost (%s); reconnecting", error)
        await self._drop()
        await asyncio.sleep(self.reconnect_delay)

    async def _close_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            await loop.aclose()

    async def _drop(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def wait(self, id: str, timeout: float) -> BarrierStatus:
        """See :meth:`Waiter.wait`."""
        await self._close_loop()
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = await self.connection()
                state = await AsyncBarriers(conn, schema=self.schema).status(id)
                if state is None:
                    raise UnknownBarrier(f'barrier "{id}" does not exist')
                if state.status.finished:
                    return state
                if await self._listen(state.channel):
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f'barrier "{id}" is still pending after {timeout} s')
                await self._pause(min(self.poll_interval, left), _for_barrier(id))
            except psycopg.OperationalError as error:
                if time.monotonic() >= deadline:
                    raise
                await self._lost(error)

    def completions(
        self, channel: Optional[str] = None, *, idle_timeout: Optional[float] = None
    ) -> AsyncGenerator[Completion, None]:
        """See :meth:`Waiter.completions`. Break out of the loop inside
        ``contextlib.aclosing(...)`` so that the open claim is rolled back at once; otherwise
        it is rolled back by the waiter's next call."""
        if self._loop is not None:
            # Not awaited here (this is not a coroutine): the new loop closes the old first.
            previous, self._loop = self._loop, None
        else:
            previous = None
        self._loop = self._completions(channel, idle_timeout, previous)
        return self._loop

    async def _completions(
        self,
        channel: Optional[str],
        idle_timeout: Optional[float],
        previous: Optional[AsyncGenerator[Completion, None]],
    ) -> AsyncGenerator[Completion, None]:
        if previous is not None:
            await previous.aclose()
        idle_since = time.monotonic()
        while True:
            closing = False
            try:
                if channel is not None and await self._listen(channel):
                    continue
                conn = await self.connection()
                async with conn.transaction():
                    claimed = await AsyncBarriers(conn, schema=self.schema).completions(
                        channel, 1
                    )
                    if claimed:
                        try:
                            yield claimed[0]
                        except GeneratorExit:
                            closing = True
                            raise
                if claimed:
                    idle_since = time.monotonic()
                    continue
                pause = self.poll_interval
                if idle_timeout is not None:
                    left = idle_since + idle_timeout - time.monotonic()
                    if left <= 0:
                        return
                    pause = min(pause, left)
                await self._pause(pause, None)
            except psycopg.OperationalError as error:
                if closing:
                    await self._drop()
                    return
                await self._lost(error)
