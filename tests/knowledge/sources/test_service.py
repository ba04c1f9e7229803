"""The web service's sync on an interval: off by default, and when set, it runs by itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

from copines.knowledge.sources.service import SyncService
from tests.fakes.site import FakeSite
from tests.knowledge.sources.conftest import LOCAL, write_sources
from tests.knowledge.sources.test_web_sync import HOOKS


async def test_the_interval_sync_is_off_by_default_and_runs_when_set(make_deps, tmp_path: Path):
    with FakeSite() as site:
        site.pages["/blog/instagram-hooks"] = HOOKS
        sources = write_sources(
            tmp_path, f"sources:\n  - name: hooks\n    page: {site.url}/blog/instagram-hooks\n"
        )
        async with make_deps(**LOCAL, sources_file=sources) as deps:
            idle = SyncService(deps)
            idle.start()
            await asyncio.sleep(0.3)
            assert idle.last_report is None and site.requests == []
            await idle.aclose()

        async with make_deps(**LOCAL, sources_file=sources, sync_interval_minutes=0.002) as deps:
            service = SyncService(deps)
            service.start()
            try:
                for _ in range(100):
                    if service.last_report is not None:
                        break
                    await asyncio.sleep(0.1)
            finally:
                await service.aclose()
            assert service.last_report is not None
            assert service.last_report.totals()["added"] == 1
            assert (await deps.store.list_sources())[0].last_status == "ok"


async def test_one_process_at_a_time_holds_the_sync_lease(make_deps, tmp_path: Path):
    async with make_deps(**LOCAL) as deps:
        store = deps.store
        assert await store.claim_lease("sync", "worker-a", 60)
        assert await store.claim_lease("sync", "worker-a", 60)  # its holder extends it
        assert not await store.claim_lease("sync", "worker-b", 60)
        await store.release_lease("sync", "worker-b")  # not its lease: nothing happens
        assert not await store.claim_lease("sync", "worker-b", 60)
        await store.release_lease("sync", "worker-a")
        assert await store.claim_lease("sync", "worker-b", 0.2)
        await asyncio.sleep(0.3)  # expired: free again
        assert await store.claim_lease("sync", "worker-a", 60)

        busy = SyncService(deps)
        assert await busy.run_once() is None
        assert "another process" in busy.last_error
        await store.release_lease("sync", "worker-a")
        assert (await busy.run_once()) is not None and busy.last_error == ""
