"""The web service's sync on an interval: off by default, and when set, it runs by itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from copines.knowledge.sources.service import SyncService
from tests.fakes.site import FakeSite, page
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


async def test_a_long_sync_renews_its_lease(make_deps, tmp_path: Path):
    from copines.knowledge.sources.lease import Lease
    from copines.knowledge.sources.sync import Syncer
    from copines.store.base import SourceRecord

    with FakeSite() as site:
        links = [f"/blog/p{i}" for i in range(4)]
        site.pages["/blog/"] = page(
            "Le blog",
            ("Articles", "Nos articles de la semaine pour les praticiennes."),
            links=links,
        )
        for path in links:
            site.pages[path] = page(path, ("Partie", f"Le texte de {path}, assez long pour vivre."))
            site.delays[path] = 1.0  # five pages: 5 s or more, a lease of 3 s must be renewed
        async with make_deps(**LOCAL) as deps:
            lease = Lease(deps.store, "worker-a", seconds=3.0)
            assert await lease.claim()
            syncer = Syncer(deps, lease=lease)
            await syncer.add_source(SourceRecord("blog", "crawl", f"{site.url}/blog/"))
            taken: list[bool] = []

            async def another_worker() -> None:
                for _ in range(10):  # throughout the sync, past the unrenewed lease's end
                    await asyncio.sleep(0.45)
                    taken.append(await deps.store.claim_lease("sync", "worker-b", 60))

            try:
                report, _ = await asyncio.gather(syncer.sync(), another_worker())
            finally:
                await syncer.aclose()
                await lease.release()
        assert taken == [False] * 10
        assert len(report.sources[0].added) == 5


async def test_a_sync_whose_lease_was_taken_stops(make_deps, tmp_path: Path):
    from copines.errors import CopinesError
    from copines.knowledge.sources.lease import Lease, LeaseLost
    from copines.knowledge.sources.sync import Syncer
    from copines.store.base import SourceRecord

    with FakeSite() as site:
        site.pages["/a"] = page("A", ("Partie", "Le texte de la page A, assez long."))
        async with make_deps(**LOCAL) as deps:
            lease = Lease(deps.store, "worker-a", seconds=0.2)
            assert await lease.claim()
            await asyncio.sleep(0.3)  # expired while a long request ran...
            assert await deps.store.claim_lease("sync", "worker-b", 60)  # ...and taken
            syncer = Syncer(deps, lease=lease)
            await syncer.add_source(SourceRecord("a", "page", f"{site.url}/a"))
            try:
                try:
                    await syncer.sync()
                except CopinesError as exc:
                    assert isinstance(exc, LeaseLost)
                else:
                    raise AssertionError("the sync went on without its lease")
            finally:
                await syncer.aclose()
        assert "/a" not in site.paths()


async def test_a_syncer_that_cannot_be_built_releases_the_lease(make_deps, tmp_path: Path):
    async with make_deps(**LOCAL) as deps:
        # A setting the Settings check would refuse, forced in after it: Syncer() raises.
        deps.settings.fetch_allow_networks = ["not-a-network"]
        service = SyncService(deps)
        with pytest.raises(ValueError, match="not-a-network"):
            await service.run_once()
        assert await deps.store.claim_lease("sync", "someone-else", 60)  # free again


async def test_two_quick_triggers_start_one_sync(make_deps, tmp_path: Path):
    with FakeSite() as site:
        site.pages["/blog/instagram-hooks"] = HOOKS
        sources = write_sources(
            tmp_path, f"sources:\n  - name: hooks\n    page: {site.url}/blog/instagram-hooks\n"
        )
        async with make_deps(**LOCAL, sources_file=sources) as deps:
            service = SyncService(deps)
            try:
                assert service.trigger() is True
                assert service.trigger() is False  # the first has not started yet
                for _ in range(100):
                    if not service.running:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await service.aclose()
        assert [r.path for r in site.requests].count("/blog/instagram-hooks") == 1
