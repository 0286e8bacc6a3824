"""Waiting in tests without fixed sleeps: poll a condition until a deadline, and let a Textual app under Pilot
finish its workers and queued writes before looking at it."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from textual.worker import WorkerCancelled

from tests.factories.screens import screen_text

# How long a wait may last before the test calls it a hang. Not a performance budget: every wait below returns
# as soon as its event happens (workers done, the screen idle, a condition true), so the figure only bounds how
# long a broken test takes to fail, and is set far above anything a loaded 2-core machine needs.
HANG_S = 180.0


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               details: Callable[[], str] = lambda: "", *, poll: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy and return that; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{details()}".rstrip())
        time.sleep(poll)


def _screen_busy(screen) -> bool:
    """Screens that load in workers say so: `loaded` (first load done), `busy` or `_pending_writes` (queued
    database writes)."""
    return bool(getattr(screen, "_pending_writes", 0) or getattr(screen, "busy", 0)
                or not getattr(screen, "loaded", True))


async def settle(app, pilot, timeout: float = HANG_S) -> None:
    """Wait until the app's workers are done and the screen in front is idle."""
    end = time.monotonic() + timeout
    while True:
        await pilot.pause()
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:  # an exclusive worker replaced by a newer one: wait again
            pass
        await pilot.pause()
        if not _screen_busy(app.screen):
            return
        assert time.monotonic() < end, f"{type(app.screen).__name__} did not settle in {timeout} s"
        await pilot.pause(0.02)


async def until(app, pilot, predicate: Callable[[], Any], timeout: float = HANG_S,
                refresh: Callable[[], Any] | None = None) -> None:
    """Settle the app until `predicate()` holds; `refresh` asks the screen to poll again (a poll already in
    flight may have missed the change)."""
    deadline = time.monotonic() + timeout
    while True:
        await settle(app, pilot, timeout)
        if predicate():
            return
        assert time.monotonic() < deadline, f"condition not reached in {timeout} s; screen:\n{screen_text(app)}"
        if refresh is not None:
            refresh()
        await asyncio.sleep(0.05)


async def open_by_key(app, pilot, key: str, screen_class: str):
    """Press a dashboard screen key once the app is idle; return the screen it opened, settled."""
    await settle(app, pilot)
    await pilot.press(key)
    await settle(app, pilot)
    assert type(app.screen).__name__ == screen_class
    return app.screen
