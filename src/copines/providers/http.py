"""Retrying HTTP helper shared by the embeddings, rerank and chat providers."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from typing import Any

import httpx
from httpx_aiohttp import AiohttpTransport

from copines.errors import ProviderError

log = logging.getLogger("copines.providers")

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def async_client(
    timeout: httpx.Timeout, max_connections: int, max_keepalive: int = 200
) -> httpx.AsyncClient:
    """An httpx client whose requests travel over aiohttp.

    httpcore's pool checks every open connection for each request: with hundreds of visitors
    at once it took most of the worker's event loop and added 0.6-2.3 s to a streamed answer's
    first token (aiohttp: 70-250 ms; docs/benchmarks.md, section load).
    """
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive)
    return httpx.AsyncClient(
        timeout=timeout, limits=limits, transport=AiohttpTransport(limits=limits)
    )


def retry_delay(attempt: int, response: httpx.Response | None = None, base: float = 0.25) -> float:
    """Seconds to wait before retry `attempt` (1-based): Retry-After when short, else backoff."""
    if response is not None:
        after = response.headers.get("retry-after")
        if after:
            try:
                return min(float(after), 5.0)
            except ValueError:
                pass
    return base * (2 ** (attempt - 1)) * (0.8 + 0.4 * random.random())


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    payload: Mapping[str, Any],
    *,
    provider: str,
    headers: Mapping[str, str] | None = None,
    retries: int = 2,
    timeout: httpx.Timeout | float | None = None,
) -> dict[str, Any]:
    """POST JSON and return the decoded body, retrying timeouts, 429 and 5xx.

    Raises:
        ProviderError: after the last attempt, or at once on another 4xx.
    """
    last: Exception | None = None
    for attempt in range(retries + 1):
        response = None
        try:
            response = await client.post(
                url, json=payload, headers=headers, timeout=timeout or httpx.USE_CLIENT_DEFAULT
            )
        except httpx.TimeoutException as exc:
            last = ProviderError(f"{provider}: timed out calling {url}", provider=provider)
            last.__cause__ = exc
        except httpx.HTTPError as exc:
            last = ProviderError(f"{provider}: cannot reach {url} ({exc})", provider=provider)
            last.__cause__ = exc
        else:
            if response.status_code < 400:
                try:
                    body = response.json()
                except ValueError as exc:
                    raise ProviderError(
                        f"{provider}: answered {response.status_code} with a body that is not JSON",
                        provider=provider,
                        status=response.status_code,
                    ) from exc
                if not isinstance(body, dict):
                    raise ProviderError(
                        f"{provider}: expected a JSON object", provider=provider, status=200
                    )
                return body
            detail = response.text[:200]
            last = ProviderError(
                f"{provider}: HTTP {response.status_code} from {url}: {detail}",
                provider=provider,
                status=response.status_code,
            )
            if response.status_code not in RETRYABLE_STATUS:
                raise last
        if attempt < retries:
            delay = retry_delay(attempt + 1, response)
            log.warning("%s; retrying in %.2fs", last, delay)
            await asyncio.sleep(delay)
    assert last is not None
    raise last
