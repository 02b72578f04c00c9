"""Wake-ups: "batch X changed", from the commit that changed it to the requests waiting on it.

Publishing (sync, from any process: workers, beat, web) is `batch_changed(batch_id)`, called by
`batches.lifecycle` and `batches.services` inside the transaction: the message goes out once
it commits, so a woken reader always sees the change.

Waiting (async, web processes under ASGI) goes through one `Hub` per process and event loop,
with one listener for the whole process, never one per request:
- with `EVENTS_URL` (Redis, the production default: the broker's URL), a pub/sub connection
  subscribed to every batch's channel;
- without (the embedded default, SQLite and the file broker), a short poll of the counters of
  the batches someone waits on: one query per round for the whole process.

Held requests and event streams are capped per process and per holder (an API token, a portal
session): past the cap the caller gets `TooBusy` (a 429 with Retry-After).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import cache
from typing import Any, TypeVar
from uuid import UUID

import redis
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Sum
from django.http import HttpRequest

from batches.models import Batch
from portal.errors import TweezerError

log = logging.getLogger(__name__)
T = TypeVar("T")


class TooBusy(TweezerError):
    """Too many held requests or streams, in this process or for this token: come back later."""

    status_code = 429

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=settings.HOLD_RETRY_AFTER_SECONDS)


# --- Publishing ------------------------------------------------------------------------------


def batch_changed(batch_id: UUID | str) -> None:
    """Tell the waiters of this batch once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: publish(batch_id), robust=True)


def publish(batch_id: UUID | str) -> None:
    key = str(batch_id)
    hub = _hub
    if hub is not None and not hub.loop.is_closed():
        # A sync view of this very process (a cancel, an add_jobs): no need to wait for the poll.
        hub.loop.call_soon_threadsafe(hub.wake, key)
    if settings.EVENTS_URL:
        try:
            _publisher(settings.EVENTS_URL).publish(settings.EVENTS_CHANNEL + key, b"")
        except redis.RedisError as exc:
            # Waiters then answer at the end of their hold: later, but correct.
            log.warning("could not publish batch %s's change: %s", key, exc)


@cache
def _publisher(url: str) -> redis.Redis:
    # redis-py's pool notices a fork and opens new connections in the child.
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


# --- Waiting -------------------------------------------------------------------------------


def _fingerprints(keys: list[str]) -> dict[str, tuple[Any, ...]]:
    """What a waiter may care about, per batch: its status and job counters."""
    try:
        rows = Batch.objects.filter(pk__in=keys).values_list(
            "pk", "status", "jobs_count", "pending_jobs", "running_jobs", "done_jobs", "error_jobs", "canceled_jobs"
        )
        return {str(row[0]): tuple(row[1:]) for row in rows}
    except Exception:
        connection.close()  # a broken connection (the database restarted): a new one next round
        raise


# Subscribed to every batch: the portal's list and queue streams, which filter what they hear.
ANY = "*"


def _all_fingerprint() -> tuple[Any, ...]:
    """Without pub/sub, what `ANY` waiters may care about: the active batches and the last end."""
    active = Batch.objects.filter(status__in=("PENDING", "RUNNING")).aggregate(
        n=Count("pk"), pending=Sum("pending_jobs"), running=Sum("running_jobs"), done=Sum("done_jobs"),
        error=Sum("error_jobs"), canceled=Sum("canceled_jobs"), activity=Max("last_activity_at"),
    )  # fmt: skip
    return (*active.values(), Batch.objects.aggregate(end=Max("end_datetime"))["end"])


class Hub:
    """The waiters of one process (its event loop), and the one listener that wakes them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiters: dict[str, set[asyncio.Event]] = {}
        self.listener: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.held: dict[str, int] = {}
        self.closing = False
        self._answer_on_shutdown()

    def _answer_on_shutdown(self) -> None:
        """On SIGTERM or SIGINT, answer every held request now, with the status as it is.

        The server (uvicorn) stops accepting, then waits for open requests: without this a
        restart would wait for every hold to run out. Chained before the server's own handler,
        and only where that handler is Python's (the event loop's main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            if not callable(previous):
                continue

            def handler(number: int, frame: Any, previous: Any = previous) -> None:
                self.loop.call_soon_threadsafe(self.close)
                previous(number, frame)

            signal.signal(signum, handler)

    def close(self) -> None:
        self.closing = True
        self.wake_all()

    def waiting(self) -> int:
        """How many requests and streams wait now (the tests check that leavers are gone)."""
        return sum(len(events) for events in self.waiters.values())

    def wake(self, key: str) -> None:
        for event in (*self.waiters.get(key, ()), *self.waiters.get(ANY, ())):
            event.set()

    def wake_all(self) -> None:
        for key in list(self.waiters):
            self.wake(key)

    def check(self, holder: str) -> None:
        """TooBusy if `holder` could not take a slot now."""
        total = sum(self.held.values())
        if total >= settings.HOLD_MAX_PER_PROCESS:
            raise TooBusy(f"This server holds {total} waiting requests already: ask again in a moment.")
        if self.held.get(holder, 0) >= settings.HOLD_MAX_PER_TOKEN:
            raise TooBusy(
                f"This token has {settings.HOLD_MAX_PER_TOKEN} waiting requests already (the limit): "
                "ask again in a moment."
            )

    @asynccontextmanager
    async def slot(self, holder: str) -> AsyncIterator[None]:
        """One of the process's and the holder's held requests or streams, or TooBusy."""
        self.check(holder)
        self.held[holder] = self.held.get(holder, 0) + 1
        try:
            yield
        finally:
            self.held[holder] -= 1
            if not self.held[holder]:
                del self.held[holder]

    @asynccontextmanager
    async def subscribe(self, batch_id: UUID | str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever the batch may have changed; the listener is ready on entry, so a
        change committed after the caller's next read is never missed."""
        key = str(batch_id)
        event = asyncio.Event()
        self.waiters.setdefault(key, set()).add(event)
        try:
            await self._start_listener()
            yield event
        finally:
            events = self.waiters.get(key, set())
            events.discard(event)
            if not events:
                self.waiters.pop(key, None)

    async def _start_listener(self) -> None:
        if self.listener is None or self.listener.done():
            self.ready = asyncio.Event()
            listen = self._listen_redis(settings.EVENTS_URL) if settings.EVENTS_URL else self._poll()
            self.listener = self.loop.create_task(listen, name="tweezer-events")
        await self.ready.wait()

    async def _poll(self) -> None:
        seen: dict[str, tuple[Any, ...] | None] = {}
        self.ready.set()
        while True:
            keys = list(self.waiters)
            if keys:
                now: dict[str, tuple[Any, ...] | None]
                try:
                    batches = [key for key in keys if key != ANY]
                    now = dict(await sync_to_async(_fingerprints, thread_sensitive=False)(batches))
                    if ANY in keys:
                        now[ANY] = await sync_to_async(_all_fingerprint, thread_sensitive=False)()
                except Exception:  # the database away for a moment: try again next round
                    log.exception("polling the batches' counters failed")
                    now = {key: seen.get(key) for key in keys}
                for key in keys:
                    # A key polled for the first time wakes its waiters too: they re-read, so
                    # a change between their own read and this poll is not missed.
                    if key not in seen or seen[key] != now.get(key):
                        self.wake(key)
                seen = {key: now.get(key) for key in keys}
            await asyncio.sleep(settings.EVENTS_POLL_SECONDS)

    async def _listen_redis(self, url: str) -> None:
        delay = 0.5
        while True:
            client = aioredis.Redis.from_url(url)
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(settings.EVENTS_CHANNEL + "*")
                while (await pubsub.get_message(timeout=5)) is None:
                    pass  # the subscription's confirmation: from now on nothing is missed
                self.ready.set()
                self.wake_all()  # whatever was published while we were away
                delay = 0.5
                async for message in pubsub.listen():
                    if message["type"] == "pmessage":
                        channel = message["channel"].decode()
                        self.wake(channel.removeprefix(settings.EVENTS_CHANNEL))
            except (redis.RedisError, OSError) as exc:
                log.warning("events listener lost Redis (%s); retrying in %s s", exc, delay)
                self.ready.set()  # waiters fall back on their deadline meanwhile
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
            finally:
                await pubsub.aclose()
                await client.aclose()


_hub: Hub | None = None


def hub() -> Hub:
    """This process's hub (a new one if the event loop changed, as between tests)."""
    global _hub
    loop = asyncio.get_running_loop()
    if _hub is None or _hub.loop is not loop:
        _hub = Hub(loop)
    return _hub


def holder_of(request: HttpRequest) -> str:
    """Whom a held request counts against: its API token, else its signed-in user."""
    header = request.headers.get("Authorization", "")
    if header:
        return "token:" + hashlib.sha256(header.encode()).hexdigest()[:16]
    return f"user:{getattr(request.user, 'pk', None)}"


async def hold(
    request: HttpRequest,
    batch_id: UUID | str,
    read: Callable[[], Awaitable[T]],
    answer: Callable[[T], bool],
) -> T:
    """`read()` again each time the batch changes, until `answer(state)` or `STATUS_HOLD_SECONDS`.

    The caller has checked that the state is worth waiting on (the batch or job is not over)."""
    deadline = time.monotonic() + settings.STATUS_HOLD_SECONDS
    events = hub()
    async with events.slot(holder_of(request)), events.subscribe(batch_id) as changed:
        state = await read()
        while not answer(state) and not events.closing:
            left = deadline - time.monotonic()
            try:
                await asyncio.wait_for(changed.wait(), timeout=max(left, 0))
            except TimeoutError:
                return await read()  # the hold is over: the state as it is now
            changed.clear()
            state = await read()
    return state
