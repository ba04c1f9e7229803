"""Syncs inside the web service: on an interval (COPINES_SYNC_INTERVAL_MINUTES) and on the
console's "sync now", one at a time per process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING

from copines.errors import CopinesError
from copines.knowledge.sources.lease import LEASE_SECONDS, Lease
from copines.knowledge.sources.sync import Syncer, SyncReport

if TYPE_CHECKING:
    from copines.deps import Deps

log = logging.getLogger("copines.sync")


class SyncService:
    def __init__(self, deps: Deps, lease_seconds: float | None = None):
        self.deps = deps
        self.lease_seconds = lease_seconds
        self.interval = max(0.0, deps.settings.sync_interval_minutes) * 60
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._loop_task: asyncio.Task | None = None
        self.last_report: SyncReport | None = None
        self.last_error: str = ""
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    @property
    def running(self) -> bool:
        """A sync runs, or one was triggered and has not started yet."""
        pending = self._task is not None and not self._task.done()
        return self._lock.locked() or pending

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
        """One sync, unless another process of the service holds the sync lease."""
        async with self._lock:
            lease = Lease(self.deps.store, self.holder, self.lease_seconds or LEASE_SECONDS)
            if not await lease.claim():
                self.last_error = "another process of the service is syncing; try again later"
                log.info("sync skipped: %s", self.last_error)
                return None
            syncer: Syncer | None = None
            try:
                syncer = Syncer(self.deps, say=log.info, lease=lease)
                self.last_report = await syncer.sync()
                self.last_error = ""
                log.info("sync done: %s", self.last_report.totals())
            except CopinesError as exc:  # sources.yaml unreadable, for one
                self.last_error = str(exc)
                log.error("sync failed: %s", exc)
            finally:
                try:
                    if syncer is not None:
                        await syncer.aclose()
                finally:
                    await lease.release()
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
