"""Chat models: any OpenAI-compatible `/chat/completions` API, OpenRouter by default.

One retry with backoff on a 5xx, a 429 or a timeout, then the fallback model; any other 4xx is
a `ProviderError` naming the model and the status. Tokens and cost come from the API's `usage`
(OpenRouter reports `cost`) or, failing that, from the price table in Settings.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from copines.config import Settings
from copines.errors import ConfigError, ProviderError
from copines.providers.http import RETRYABLE_STATUS, async_client, retry_delay

log = logging.getLogger("copines.chat")


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


@dataclass
class ChatResult:
    """One completed answer."""

    text: str
    model: str  # the model that answered (the fallback's name when it took over)
    usage: Usage = field(default_factory=Usage)
    fell_back: bool = False
    attempts: list[str] = field(default_factory=list)  # "model: outcome" for each failed try
    elapsed_ms: float = 0.0


@dataclass
class ChatDelta:
    """A piece of a streamed answer; the last one carries `result`."""

    text: str = ""
    result: ChatResult | None = None


class _Retryable(Exception):
    """A failure worth a retry or the fallback model (5xx, 429, timeout, connection)."""

    def __init__(self, error: ProviderError, response: httpx.Response | None = None):
        super().__init__(str(error))
        self.error = error
        self.response = response


def cost_of(usage: Usage, model: str, prices: dict[str, tuple[float, float]]) -> float | None:
    """Dollars for a call: the API's own figure, else the price table, else None."""
    if usage.cost_usd is not None:
        return usage.cost_usd
    price = prices.get(model)
    if price is None:
        return None
    return round(
        (usage.prompt_tokens * price[0] + usage.completion_tokens * price[1]) / 1_000_000, 8
    )


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    cost = raw.get("cost")
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
    )


class ChatClient:
    """Calls chat models; one instance per process (it holds a connection pool).

    Args:
        base_url: the API root, e.g. OpenRouter's `/api/v1`.
        api_key: sent as a bearer token; never logged.
        fallback_model: answers when the asked model fails twice (5xx, 429, timeout).
    """

    provider = "chat"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        fallback_model: str | None,
        referer: str = "",
        title: str = "",
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        retries: int = 1,
        prices: dict[str, tuple[float, float]] | None = None,
        backoff: float = 0.25,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.fallback_model = fallback_model
        self.retries = retries
        self.prices = prices or {}
        self.backoff = backoff
        self.read_timeout = read_timeout
        # OpenRouter reports each call's cost when asked; other servers may refuse the field.
        self.openrouter = "openrouter.ai" in base_url
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        if referer:
            self._headers["HTTP-Referer"] = referer
        if title:
            self._headers["X-Title"] = title
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        # One connection per streamed answer: a pool of 100 would queue the rest.
        self._client = async_client(self._timeout, max_connections=2000)

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatClient:
        """The configured client. Raises ConfigError when no model can be called."""
        if not settings.llm_enabled:
            raise ConfigError(
                "no OPENROUTER_API_KEY (and no COPINES_LLM_BASE_URL of your own): answering "
                "offline; set one of them to use the models"
            )
        key = (
            settings.openrouter_api_key.get_secret_value() if settings.openrouter_api_key else None
        )
        return cls(
            base_url=settings.llm_base_url,
            api_key=key,
            fallback_model=settings.fallback_model,
            referer=settings.http_referer,
            title=settings.app_title,
            connect_timeout=settings.llm_connect_timeout,
            read_timeout=settings.llm_read_timeout,
            retries=settings.llm_retries,
            prices=settings.prices,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # Public API ----------------------------------------------------------------------
    async def complete(
        self,
        messages: list[dict[str, str]],
        model: str,
        *,
        temperature: float = 0.7,
        max_tokens: int = 1000,
        timeout: float | None = None,
        fallback: bool = True,
        json_mode: bool = False,
    ) -> ChatResult:
        """The whole answer of `model` (or of the fallback model, see the class doc).

        Raises:
            ProviderError: every attempt failed, or a 4xx other than 429 (names model and status).
        """
        started = time.perf_counter()
        attempts: list[str] = []
        for current in self._plan(model, fallback):
            for attempt in range(self.retries + 1 if current == model else 1):
                try:
                    result = await self._complete_once(
                        messages, current, temperature, max_tokens, timeout, json_mode
                    )
                except _Retryable as exc:
                    attempts.append(f"{current}: {exc.error}")
                    if attempt < self.retries and current == model:
                        await asyncio.sleep(retry_delay(attempt + 1, exc.response, self.backoff))
                    continue
                result.fell_back = current != model
                result.attempts = attempts
                result.elapsed_ms = (time.perf_counter() - started) * 1000
                if attempts:
                    log.warning("chat: answered by %s after %s", current, "; ".join(attempts))
                return result
        raise ProviderError(
            f"chat: no model answered ({'; '.join(attempts)})", provider=self.provider
        )

    async def stream(
        self,
        messages: list[dict[str, str]],
        model: str,
        *,
        temperature: float = 0.7,
        max_tokens: int = 1000,
        fallback: bool = True,
    ) -> AsyncIterator[ChatDelta]:
        """Stream `model`'s answer; the last delta carries the `ChatResult`.

        Retries and the fallback apply until the first piece of text has arrived; a failure
        after that raises `ProviderError` (the text already sent cannot be taken back).
        """
        started = time.perf_counter()
        attempts: list[str] = []
        for current in self._plan(model, fallback):
            for attempt in range(self.retries + 1 if current == model else 1):
                sent = False
                try:
                    async for delta in self._stream_once(
                        messages, current, temperature, max_tokens
                    ):
                        if delta.result is not None:
                            delta.result.fell_back = current != model
                            delta.result.attempts = attempts
                            delta.result.elapsed_ms = (time.perf_counter() - started) * 1000
                        elif delta.text:
                            sent = True
                        yield delta
                    return
                except _Retryable as exc:
                    if sent:
                        raise exc.error from exc
                    attempts.append(f"{current}: {exc.error}")
                    if attempt < self.retries and current == model:
                        await asyncio.sleep(retry_delay(attempt + 1, exc.response, self.backoff))
        raise ProviderError(
            f"chat: no model answered ({'; '.join(attempts)})", provider=self.provider
        )

    # Internals -----------------------------------------------------------------------
    def _plan(self, model: str, fallback: bool) -> list[str]:
        if fallback and self.fallback_model and self.fallback_model != model:
            return [model, self.fallback_model]
        return [model]

    def _payload(
        self,
        messages: list[dict[str, str]],
        model: str,
        temperature: float,
        max_tokens: int,
        stream: bool,
        json_mode: bool = False,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "stream": stream,
        }
        if self.openrouter:
            payload["usage"] = {"include": True}
        if stream:
            payload["stream_options"] = {"include_usage": True}
        if json_mode:
            payload["response_format"] = {"type": "json_object"}
        return payload

    def _transport_error(self, exc: httpx.HTTPError, model: str, broken: str) -> _Retryable:
        """A timeout or a broken connection: worth a retry, then the fallback model."""
        if isinstance(exc, httpx.TimeoutException):
            message = f"chat: model {model} timed out"
        else:
            message = f"chat: {broken} ({type(exc).__name__})"
        return _Retryable(ProviderError(message, provider=self.provider))

    def _error(self, model: str, status: int, body: str) -> ProviderError:
        detail = body.strip().replace("\n", " ")[:200]
        return ProviderError(
            f"chat: model {model} answered HTTP {status}: {detail}",
            provider=self.provider,
            status=status,
        )

    def _timeout_for(self, timeout: float | None) -> httpx.Timeout:
        if timeout is None:
            return self._timeout
        return httpx.Timeout(timeout, connect=min(timeout, self._timeout.connect or timeout))

    async def _complete_once(
        self,
        messages: list[dict[str, str]],
        model: str,
        temperature: float,
        max_tokens: int,
        timeout: float | None,
        json_mode: bool,
    ) -> ChatResult:
        payload = self._payload(messages, model, temperature, max_tokens, False, json_mode)
        try:
            response = await self._client.post(
                self.url, json=payload, headers=self._headers, timeout=self._timeout_for(timeout)
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(
                exc, model, f"cannot reach {self.url} for model {model}"
            ) from exc
        if response.status_code >= 400:
            error = self._error(model, response.status_code, response.text)
            if response.status_code in RETRYABLE_STATUS:
                raise _Retryable(error, response)
            raise error
        try:
            body = response.json()
            text = body["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise _Retryable(
                ProviderError(
                    f"chat: model {model} sent an answer without choices[0].message",
                    provider=self.provider,
                    status=response.status_code,
                )
            ) from exc
        usage = _usage(body.get("usage")) or Usage()
        usage.cost_usd = cost_of(usage, model, self.prices)
        return ChatResult(text=text, model=body.get("model") or model, usage=usage)

    def _stream_line(self, line: str, model: str) -> tuple[str, str | None, Usage | None, bool]:
        """One line of the SSE stream: (text piece, model, usage, the stream is over)."""
        line = line.strip()
        if not line.startswith("data:"):
            return "", None, None, False  # blank separators and ": keep-alive" comments
        data = line[5:].strip()
        if data == "[DONE]":
            return "", None, None, True
        try:
            chunk = json.loads(data)
        except ValueError:
            return "", None, None, False
        if not isinstance(chunk, dict):
            return "", None, None, False
        if "error" in chunk:
            raise _Retryable(
                ProviderError(
                    f"chat: model {model} failed mid-stream: {str(chunk['error'])[:200]}",
                    provider=self.provider,
                )
            )
        pieces = [
            (choice.get("delta") or {}).get("content") or ""
            for choice in chunk.get("choices") or []
            if isinstance(choice, dict)
        ]
        return "".join(pieces), chunk.get("model"), _usage(chunk.get("usage")), False

    async def _stream_once(
        self,
        messages: list[dict[str, str]],
        model: str,
        temperature: float,
        max_tokens: int,
    ) -> AsyncIterator[ChatDelta]:
        payload = self._payload(messages, model, temperature, max_tokens, True)
        parts: list[str] = []
        usage: Usage | None = None
        answered_by = model
        try:
            async with self._client.stream(
                "POST", self.url, json=payload, headers=self._headers
            ) as response:
                if response.status_code >= 400:
                    body = (await response.aread()).decode("utf-8", "replace")
                    error = self._error(model, response.status_code, body)
                    if response.status_code in RETRYABLE_STATUS:
                        raise _Retryable(error, response)
                    raise error
                # Parsed a network read at a time: everything that arrived together becomes
                # one delta. A model writing token by token still gives one delta per token;
                # when the worker falls behind (hundreds of answers at once), the pieces that
                # queued up travel as one event instead of a dozen (about 40 µs each).
                done = False
                async with contextlib.aclosing(_read_lines(response)) as reads:
                    async for lines in reads:
                        batch: list[str] = []
                        for line in lines:
                            piece, chunk_model, chunk_usage, done = self._stream_line(line, model)
                            answered_by = chunk_model or answered_by
                            usage = chunk_usage or usage
                            if piece:
                                batch.append(piece)
                            if done:
                                break
                        if batch:
                            text = "".join(batch)
                            parts.append(text)
                            yield ChatDelta(text=text)
                        if done:
                            break
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, model, f"stream from model {model} broke") from exc
        usage = usage or Usage()
        usage.cost_usd = cost_of(usage, model, self.prices)
        yield ChatDelta(result=ChatResult(text="".join(parts), model=answered_by, usage=usage))


async def _read_lines(response: httpx.Response) -> AsyncIterator[list[str]]:
    """The complete lines of each network read (a last line without its newline included)."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""
    async for raw in response.aiter_bytes():
        lines = (pending + decoder.decode(raw)).split("\n")
        pending = lines.pop()
        yield lines
    if pending := pending + decoder.decode(b"", final=True):
        yield [pending]
