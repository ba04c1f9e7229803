"""Syncs inside the web service: on an interval (COPINES_SYNC_INTERVAL_MINUTES) and on the
console's "sync now", one at a time per process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from copines.errors import CopinesError
from copines.knowledge.sources.sync import Syncer, SyncReport

if TYPE_CHECKING:
    from copines.deps import Deps

log = logging.getLogger("copines.sync")


class SyncService:
    def __init__(self, deps: Deps):
        self.deps = deps
        self.interval = max(0.0, deps.settings.sync_interval_minutes) * 60
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._loop_task: asyncio.Task | None = None
        self.last_report: SyncReport | None = None
        self.last_error: str = ""

    @property
    def running(self) -> bool:
        return self._lock.locked()

    def start(self) -> None:
        """Start the interval loop when an interval is set."""
        if self.interval > 0 and self._loop_task is None:
            self._loop_task = asyncio.create_task(self._every_interval(), name="copines-sync")

    def trigger(self) -> bool:
        """Start a sync in the background; False when one is running already."""
        if self.running:
            return False
        self._task = asyncio.create_task(self.run_once(), name="copines-sync-now")
        return True

    async def run_once(self) -> SyncReport | None:
        async with self._lock:
            syncer = Syncer(self.deps, say=log.info)
            try:
                self.last_report = await syncer.sync()
                self.last_error = ""
                log.info("sync done: %s", self.last_report.totals())
            except CopinesError as exc:  # sources.yaml unreadable, for one
                self.last_error = str(exc)
                log.error("sync failed: %s", exc)
            finally:
                await syncer.aclose()
            return self.last_report

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except Exception:  # the loop outlives one bad sync
                log.exception("scheduled sync crashed")

    async def aclose(self) -> None:
        for task in (self._loop_task, self._task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
