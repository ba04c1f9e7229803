"""The sync lease: one process at a time syncs a store (the service's workers, `copines sync`,
`copines ingest URL`, `copines sources remove`). A lease is renewed while its sync runs, so a
crawl longer than the lease keeps it; a process that dies loses it when it expires."""

from __future__ import annotations

import time

from copines.errors import CopinesError, StoreBusyError
from copines.store.base import Store

# How long a lease lasts without renewal (a process that dies mid-way holds it that long).
LEASE_SECONDS = 3600.0
NAME = "sync"


class LeaseLost(CopinesError):
    """The lease expired and another process took it: this sync must stop."""


class Lease:
    def __init__(self, store: Store, holder: str, seconds: float = LEASE_SECONDS):
        self.store = store
        self.holder = holder
        self.seconds = seconds
        self.renew_every = seconds / 4
        self._claimed_at: float | None = None

    async def claim(self) -> bool:
        """Take the lease; False when another process holds it."""
        if not await self.store.claim_lease(NAME, self.holder, self.seconds):
            return False
        self._claimed_at = time.monotonic()
        return True

    async def claim_or_busy(self) -> None:
        """Raises StoreBusyError when another process holds the lease."""
        if not await self.claim():
            raise StoreBusyError("another process is syncing the sources; try again later")

    async def renew(self) -> None:
        """Extend the lease when a quarter of it has passed (called between items).

        Raises:
            LeaseLost: it expired and another process holds it now.
        """
        if self._claimed_at is None or time.monotonic() - self._claimed_at < self.renew_every:
            return
        if not await self.store.claim_lease(NAME, self.holder, self.seconds):
            self._claimed_at = None
            raise LeaseLost("the sync lease expired and another process took it: this sync stopped")
        self._claimed_at = time.monotonic()

    async def release(self) -> None:
        self._claimed_at = None
        await self.store.release_lease(NAME, self.holder)
