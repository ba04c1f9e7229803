"""HTTP for the sources: redirects followed by hand (each hop through the address guard, to the
address it checked), a size cap while streaming, a deadline per request, a pace per host."""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from copines.config import Settings
from copines.errors import CopinesError
from copines.knowledge.sources.guard import AddressGuard, AddressRefused, Unresolvable

REDIRECTS = {301, 302, 303, 307, 308}
# Headers that carry a credential: never sent on to another origin by a redirect.
CREDENTIAL_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-api-key"}
# Content-Encoding values this client decodes itself (bounded), with zlib's window bits.
ENCODINGS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


class FetchError(CopinesError):
    """A request that gave nothing usable; the message is one line for the sync report."""


def origin_of(url: str) -> tuple[str, str, int | None]:
    parts = httpx.URL(url)
    return parts.scheme, parts.host, parts.port


def without_userinfo(url: str) -> str:
    """`url` with any `user:password@` taken out (for messages: a password is never shown)."""
    try:
        parts = httpx.URL(url)
    except httpx.InvalidURL:
        return url
    return str(parts.copy_with(userinfo=b"")) if parts.userinfo else url


def refuse_userinfo(url: str) -> None:
    """Raises FetchError for an address that carries a user name or password: credentials
    belong in settings, not in addresses kept in document names and URLs."""
    try:
        has_userinfo = bool(httpx.URL(url).userinfo)
    except httpx.InvalidURL:
        return
    if has_userinfo:
        raise FetchError(
            f"refused: {without_userinfo(url)} carries a user name or password "
            "(user:password@); give the address without it"
        )


class Inflater:
    """Bounded decompression: expands at most `limit` bytes, whatever the compressed size
    (a small gzip bomb is stopped once its output passes the cap, never expanded whole)."""

    def __init__(self, wbits: int, limit: int, what: str):
        self._zlib = zlib.decompressobj(wbits=wbits)
        self.limit = limit
        self.what = what
        self.size = 0
        self.fed = False

    def feed(self, data: bytes) -> bytes:
        self.fed = self.fed or bool(data)
        out: list[bytes] = []
        while data:
            try:
                part = self._zlib.decompress(data, self.limit - self.size + 1)
            except zlib.error as exc:
                raise FetchError(f"broken compressed data: {self.what} ({exc})") from exc
            self.size += len(part)
            if self.size > self.limit:
                raise FetchError(
                    f"too large: {self.what} is over {self.limit} bytes once decompressed, cut off"
                )
            out.append(part)
            data = self._zlib.unconsumed_tail
            if self._zlib.eof:
                break
        return b"".join(out)

    def finish(self) -> bytes:
        if self.fed and not self._zlib.eof:
            raise FetchError(f"broken compressed data: {self.what} is cut short")
        return b""


def inflate(data: bytes, wbits: int, limit: int, what: str) -> bytes:
    inflater = Inflater(wbits, limit, what)
    out = inflater.feed(data)
    inflater.finish()
    return out


@dataclass
class Fetched:
    url: str  # where the answer came from, after redirects
    status: int
    headers: httpx.Headers
    content: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        import json

        return json.loads(self.content)


class Fetcher:
    """One HTTP client for a sync. `guard` None: the endpoints are trusted settings (the Drive
    and Notion APIs), reached without the address guard."""

    def __init__(
        self,
        *,
        user_agent: str,
        timeout: float = 20.0,
        connect_timeout: float = 5.0,
        max_bytes: int = 5_000_000,
        max_redirects: int = 5,
        delay: float = 0.0,
        guard: AddressGuard | None = None,
        verify: ssl.SSLContext | bool = True,
    ):
        self.user_agent = user_agent
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.delay = delay
        self.guard = guard
        self.host_delays: dict[str, float] = {}  # robots.txt's Crawl-delay, per host
        self._last: dict[str, float] = {}
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            verify=verify,
            # Guarded requests go to an address, with the name in Host and TLS: a pooled
            # connection is keyed by the address only and would serve another name without its
            # certificate being checked. Requests are paced anyway; reuse would gain little.
            limits=httpx.Limits(max_keepalive_connections=0 if guard is not None else 20),
        )

    @classmethod
    def for_web(cls, settings: Settings, guard: AddressGuard | None = None) -> Fetcher:
        return cls(
            user_agent=settings.fetch_user_agent,
            timeout=settings.fetch_timeout,
            connect_timeout=settings.fetch_connect_timeout,
            max_bytes=settings.fetch_max_bytes,
            max_redirects=settings.fetch_max_redirects,
            delay=settings.fetch_delay,
            guard=guard or AddressGuard(settings.fetch_allow_networks),
        )

    @classmethod
    def for_api(cls, settings: Settings) -> Fetcher:
        return cls(
            user_agent=settings.fetch_user_agent,
            timeout=settings.fetch_timeout,
            connect_timeout=settings.fetch_connect_timeout,
            max_bytes=max(settings.fetch_max_bytes, 20_000_000),
            max_redirects=settings.fetch_max_redirects,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _pace(self, host: str) -> None:
        wait = max(self.delay, self.host_delays.get(host, 0.0))
        last = self._last.get(host)
        if last is not None and wait > 0:
            remaining = last + wait - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining)
        self._last[host] = time.monotonic()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
        data: dict[str, str] | None = None,
        may_follow: Callable[[str], Awaitable[bool]] | None = None,
    ) -> Fetched:
        """Send a request and read its answer whole; redirects followed, each hop checked
        (by the address guard, and by `may_follow` when given: robots.txt for pages).

        Raises:
            FetchError: refused address, unreachable host, timeout, redirect loop, too large.
        """
        seen: list[str] = []
        headers = dict(headers or {})
        for _hop in range(self.max_redirects + 1):
            if url in seen:
                raise FetchError(f"redirect loop: {' -> '.join([*seen, url])}")
            if seen and may_follow is not None and not await may_follow(url):
                raise FetchError(f"refused by robots.txt: {url} (redirected from {seen[0]})")
            seen.append(url)
            answer = await self._once(method, url, headers, json, data)
            location = answer.headers.get("location")
            if answer.status not in REDIRECTS or not location:
                return answer
            previous, url = url, urljoin(url, location)
            if origin_of(url) != origin_of(previous):
                headers = {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
            if answer.status == 303 or (answer.status in (301, 302) and method == "POST"):
                method, json, data = "GET", None, None
        raise FetchError(f"too many redirects (more than {self.max_redirects}) from {seen[0]}")

    async def get(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        may_follow: Callable[[str], Awaitable[bool]] | None = None,
    ) -> Fetched:
        return await self.request("GET", url, headers=headers, may_follow=may_follow)

    async def _once(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None,
        json: Any,
        data: dict[str, str] | None,
    ) -> Fetched:
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise FetchError(f"not a valid address: {url} ({exc})") from exc
        if target.scheme not in ("http", "https") or not target.host:
            raise FetchError(f"not an http(s) address: {without_userinfo(url)}")
        refuse_userinfo(url)
        # Compressed answers are decoded here, bounded (see `_read`): only what it can bound.
        sent = {
            "User-Agent": self.user_agent,
            "Accept-Encoding": "gzip, deflate",
            **(headers or {}),
        }
        extensions: dict[str, Any] = {}
        if self.guard is not None:
            port = target.port or (443 if target.scheme == "https" else 80)
            try:
                address = await self.guard.address_for(target.host, port)
            except (AddressRefused, Unresolvable) as exc:
                raise FetchError(str(exc)) from exc
            # Connect to the checked address; the name still goes in Host and in TLS (SNI and
            # the certificate check).
            sent["Host"] = target.netloc.decode("ascii")
            if target.scheme == "https":
                extensions["sni_hostname"] = target.host
            target = target.copy_with(host=address)
        await self._pace(target.host if self.guard is None else sent["Host"])
        request = self._client.build_request(
            method, target, headers=sent, json=json, data=data, extensions=extensions
        )
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client.send(request, stream=True)
                try:
                    content = await self._read(response, url)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise FetchError(f"timed out after {self.timeout:g} s: {url}") from exc
        except httpx.ConnectError as exc:
            raise FetchError(f"unreachable host: {url} ({exc or type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise FetchError(f"HTTP error from {url}: {exc or type(exc).__name__}") from exc
        return Fetched(url, response.status_code, response.headers, content)

    async def _read(self, response: httpx.Response, url: str) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError(f"too large: {url} announces {declared} bytes (cap {self.max_bytes})")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        inflater: Inflater | None = None
        if encoding in ENCODINGS:
            inflater = Inflater(ENCODINGS[encoding], self.max_bytes, url)
        elif encoding not in ("", "identity"):
            raise FetchError(f"unsupported content encoding '{encoding}': {url}")
        parts: list[bytes] = []
        size = 0
        # Raw bytes: httpx would expand a compressed chunk whole before any size check.
        async for part in response.aiter_raw():
            size += len(part)
            if size > self.max_bytes:
                raise FetchError(f"too large: {url} is over {self.max_bytes} bytes, cut off")
            parts.append(inflater.feed(part) if inflater is not None else part)
        if inflater is not None:
            inflater.finish()
        return b"".join(parts)


def http_problem(fetched: Fetched) -> str:
    """One report line for an answer that is not a success."""
    reason = httpx.codes.get_reason_phrase(fetched.status) or "error"
    return f"HTTP {fetched.status} {reason.lower()}: {fetched.url}"
