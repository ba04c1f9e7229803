"""The fetcher's limits against a real local server: compressed bodies expanded only up to the
size cap, credentials never carried to another origin, addresses with a password refused."""

from __future__ import annotations

import gzip
import tracemalloc

import pytest

from copines.knowledge.sources.guard import AddressGuard
from copines.knowledge.sources.http import Fetcher, FetchError
from copines.knowledge.sources.web import read_sitemap
from tests.fakes.site import FakeSite, gzip_bomb, page

CAP = 1_000_000


def fetcher(max_bytes: int = CAP) -> Fetcher:
    return Fetcher(
        user_agent="copines-test/1",
        timeout=10.0,
        max_bytes=max_bytes,
        guard=AddressGuard(["127.0.0.1/32"]),
    )


async def _peak_while(coro) -> tuple[int, BaseException | None]:
    """Run `coro` and return the peak of Python memory it allocated, with what it raised."""
    gzip_bomb()  # made (40 MB, once) before measuring: the server's side is not ours
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        raised: BaseException | None = None
        try:
            await coro
        except Exception as exc:
            raised = exc
        return tracemalloc.get_traced_memory()[1] - before, raised
    finally:
        tracemalloc.stop()


async def test_a_gzipped_sitemap_is_expanded_only_up_to_the_cap():
    with FakeSite() as site:
        fetch = fetcher()
        try:
            peak, raised = await _peak_while(read_sitemap(fetch, f"{site.url}/bomb.xml.gz", 10))
        finally:
            await fetch.aclose()
    assert isinstance(raised, FetchError)
    assert "sitemap unreadable" in str(raised) and "once decompressed" in str(raised)
    assert peak < 10 * CAP, f"{peak} bytes allocated to read a 40 MB gzip bomb"


async def test_a_gzip_encoded_answer_is_expanded_only_up_to_the_cap():
    with FakeSite() as site:
        fetch = fetcher()
        try:
            peak, raised = await _peak_while(fetch.get(f"{site.url}/bomb"))
        finally:
            await fetch.aclose()
    assert isinstance(raised, FetchError) and "too large" in str(raised)
    assert peak < 10 * CAP, f"{peak} bytes allocated to read a 40 MB gzip bomb"


async def test_a_small_gzip_encoded_answer_is_decoded():
    with FakeSite() as site:
        site.pages["/p"] = page("Titre", ("Partie", "Texte"))
        fetch = fetcher()
        try:
            fetched = await fetch.get(f"{site.url}/p")
            assert fetched.content == site.pages["/p"].encode()
            sent = site.requests[-1].headers["Accept-Encoding"]
            assert "gzip" in sent and "br" not in sent and "zstd" not in sent
        finally:
            await fetch.aclose()
    assert gzip.decompress(gzip.compress(b"x")) == b"x"


async def test_credentials_are_not_sent_to_another_origin_by_a_redirect():
    with FakeSite() as first, FakeSite() as other:
        other.pages["/landing"] = page("Ailleurs", ("Partie", "Texte"))
        first.pages["/landing"] = page("Ici", ("Partie", "Texte"))
        fetch = fetcher()
        secret = {"Authorization": "Bearer s3cret", "Cookie": "session=1", "X-Trace": "kept"}
        try:
            # Same origin: the token follows.
            await fetch.get(f"{first.url}/redirect?to=/landing", headers=secret)
            assert first.requests[-1].headers.get("Authorization") == "Bearer s3cret"
            # Another origin (another port): the token and the cookie stay behind.
            to = f"{other.url}/landing"
            fetched = await fetch.get(f"{first.url}/redirect?to={to}", headers=secret)
        finally:
            await fetch.aclose()
    assert fetched.status == 200 and fetched.url == to
    landed = other.requests[-1].headers
    assert "Authorization" not in landed and "Cookie" not in landed
    assert landed["X-Trace"] == "kept"


@pytest.mark.parametrize("where", ["start", "redirect"])
async def test_an_address_with_a_password_is_refused(where: str):
    with FakeSite() as site:
        site.pages["/p"] = page("Titre", ("Partie", "Texte"))
        with_password = f"http://user:hunter2@127.0.0.1:{site.port}/p"
        url = with_password if where == "start" else f"{site.url}/redirect?to={with_password}"
        fetch = fetcher()
        try:
            with pytest.raises(FetchError, match="carries a user name or password") as caught:
                await fetch.get(url)
        finally:
            await fetch.aclose()
        assert "hunter2" not in str(caught.value)
        assert "/p" not in [r.path for r in site.requests]
