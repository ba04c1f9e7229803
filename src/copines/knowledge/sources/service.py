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
from copines.knowledge.sources.sync import Syncer, SyncReport

if TYPE_CHECKING:
    from copines.deps import Deps

log = logging.getLogger("copines.sync")
# How long a sync may hold the lease if its process dies mid-way (a finished sync releases it).
LEASE_SECONDS = 3600.0


class SyncService:
    def __init__(self, deps: Deps):
        self.deps = deps
        self.interval = max(0.0, deps.settings.sync_interval_minutes) * 60
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._loop_task: asyncio.Task | None = None
        self.last_report: SyncReport | None = None
        self.last_error: str = ""
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

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
        """One sync, unless another process of the service holds the sync lease."""
        async with self._lock:
            if not await self.deps.store.claim_lease("sync", self.holder, LEASE_SECONDS):
                self.last_error = "another process of the service is syncing; try again later"
                log.info("sync skipped: %s", self.last_error)
                return None
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
                await self.deps.store.release_lease("sync", self.holder)
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
