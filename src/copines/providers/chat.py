"""Chat models: any OpenAI-compatible `/chat/completions` API, OpenRouter by default.

One retry with backoff on a 5xx, a 429, a timeout or an answer of the wrong shape, then the
fallback model; any other 4xx is a `ProviderError` naming the model and the status. Tokens and
cost come from the API's `usage` (OpenRouter reports `cost`) or, failing that, from the price
table in Settings.

Every answer is checked before it counts: a body whose `choices[0].message.content` is not a
non-empty string, a streamed `delta` that is not an object, a stream that ends without `[DONE]`
or a `finish_reason`, all count as a failure of that model. A stream also has three deadlines:
the first piece of text (past it, the fallback model takes over), the longest gap between two
pieces, and the whole answer.
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
    """A failure worth a retry or the fallback model (5xx, 429, timeout, connection, a bad
    shape). `again` is False when the same model is not worth a second try (a missed
    first-token deadline: the fallback takes over at once)."""

    def __init__(
        self,
        error: ProviderError,
        response: httpx.Response | None = None,
        *,
        again: bool = True,
        cause: str = "provider",
    ):
        super().__init__(str(error))
        self.error = error
        self.response = response
        self.again = again
        self.cause = cause


class StreamCut(ProviderError):
    """A streamed answer failed after some of its text was sent (it cannot be taken back).

    Attributes:
        partial: the text sent before the failure.
        cause: `truncated` (ended without [DONE] or finish_reason, or the connection broke),
            `idle` (a gap between two pieces past the deadline), `deadline` (the whole answer
            past its deadline), or `provider` (an error or a malformed piece mid-stream).
    """

    def __init__(self, message: str, *, partial: str, cause: str, provider: str = "chat"):
        super().__init__(message, provider=provider)
        self.partial = partial
        self.cause = cause


def _bad_shape(model: str, what: str, status: int | None = None) -> _Retryable:
    return _Retryable(
        ProviderError(f"chat: model {model} sent {what}", provider="chat", status=status),
        cause="malformed",
    )


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
        prompt_tokens=_count(raw.get("prompt_tokens")),
        completion_tokens=_count(raw.get("completion_tokens")),
        cost_usd=float(cost)
        if isinstance(cost, int | float) and not isinstance(cost, bool)
        else None,
    )


def _count(value: Any) -> int:
    """A token count as reported, or 0 when it is not a sane integer."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value) if 0 <= value < 10**9 else 0


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
        first_token_timeout: float | None = None,
        idle_timeout: float | None = None,
        stream_deadline: float | None = None,
        answer_start_timeout: float | None = None,
    ):
        self.first_token_timeout = first_token_timeout
        self.answer_start_timeout = answer_start_timeout
        # Set by begin_shutdown (on the loop's clock): every wait ends by then.
        self.shutdown_at: float | None = None
        self.idle_timeout = idle_timeout
        self.stream_deadline = stream_deadline
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
        self._waits: set[asyncio.Timeout] = set()

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
            first_token_timeout=settings.llm_first_token_timeout,
            answer_start_timeout=settings.llm_answer_start_timeout,
            idle_timeout=settings.llm_idle_timeout,
            stream_deadline=settings.turn_deadline,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def begin_shutdown(self, grace: float) -> None:
        """The process is stopping: every call still waiting on a model gets `grace` seconds
        more, then fails with the cause `shutdown` (the fallback is not tried)."""
        self.shutdown_at = asyncio.get_running_loop().time() + grace
        for clock in list(self._waits):
            when = clock.when()
            if when is None or when > self.shutdown_at:
                clock.reschedule(self.shutdown_at)

    @contextlib.asynccontextmanager
    async def _wait_until(self, when: float | None) -> AsyncIterator[None]:
        """A timeout at `when` (or at the shutdown deadline, the earlier), that begin_shutdown
        can bring forward."""
        if self.shutdown_at is not None:
            when = self.shutdown_at if when is None else min(when, self.shutdown_at)
        async with asyncio.timeout_at(when) as clock:
            self._waits.add(clock)
            try:
                yield
            finally:
                self._waits.discard(clock)

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
        loop = asyncio.get_running_loop()
        end = loop.time() + self.stream_deadline if self.stream_deadline else None
        attempts: list[str] = []
        for current in self._plan(model, fallback):
            for attempt in range(self.retries + 1 if current == model else 1):
                if end is not None and loop.time() >= end:
                    attempts.append(f"{current}: not tried, the answer's deadline passed")
                    break
                try:
                    result = await self._complete_once(
                        messages, current, temperature, max_tokens, timeout, json_mode, end
                    )
                except TimeoutError as exc:
                    error = self._deadline_error(current, False, loop.time(), end)
                    if error.cause == "shutdown":
                        raise StreamCut(str(error.error), partial="", cause="shutdown") from exc
                    attempts.append(f"{current}: {error.error}")
                    break
                except _Retryable as exc:
                    attempts.append(f"{current}: {exc.error}")
                    if not exc.again:
                        break
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
        first_token_timeout: float | None = None,
        idle_timeout: float | None = None,
        deadline: float | None = None,
    ) -> AsyncIterator[ChatDelta]:
        """Stream `model`'s answer; the last delta carries the `ChatResult`.

        Retries and the fallback apply until the first piece of text has arrived (a model
        silent past `first_token_timeout` seconds hands over to the fallback at once); a
        failure after that raises `StreamCut` with the text already sent (it cannot be taken
        back). `idle_timeout` bounds the gap between two pieces and `deadline` the whole
        stream, fallback included (seconds; None: the client's settings, then no limit).

        Raises:
            StreamCut: a failure once text was sent (its cause says which).
            ProviderError: no model sent any text.
        """
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        first = first_token_timeout or self.first_token_timeout
        idle = idle_timeout or self.idle_timeout
        whole = deadline or self.stream_deadline
        end = loop.time() + whole if whole else None
        attempts: list[str] = []
        for current in self._plan(model, fallback):
            for attempt in range(self.retries + 1 if current == model else 1):
                if end is not None and loop.time() >= end:
                    attempts.append(f"{current}: not tried, the answer's deadline passed")
                    break
                sent: list[str] = []
                try:
                    async for delta in self._stream_once(
                        messages, current, temperature, max_tokens, first, idle, end
                    ):
                        if delta.result is not None:
                            delta.result.fell_back = current != model
                            delta.result.attempts = attempts
                            delta.result.elapsed_ms = (time.perf_counter() - started) * 1000
                        elif delta.text:
                            sent.append(delta.text)
                        yield delta
                    return
                except _Retryable as exc:
                    if sent or exc.cause == "shutdown":
                        raise StreamCut(
                            str(exc.error), partial="".join(sent), cause=exc.cause
                        ) from exc
                    attempts.append(f"{current}: {exc.error}")
                    if not exc.again:
                        break
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
        end: float | None,
    ) -> ChatResult:
        """One model's whole answer. Its response must begin within the answer-start deadline
        (a silent model leaves the rest of the answer's time to the fallback) and end by
        `end` (on the loop's clock).

        Raises:
            TimeoutError: a deadline passed (see `_deadline_error`).
        """
        payload = self._payload(messages, model, temperature, max_tokens, False, json_mode)
        loop = asyncio.get_running_loop()
        start = self.answer_start_timeout
        first_end = loop.time() + start if start else None
        if first_end is None or (end is not None and end < first_end):
            first_end = end
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with self._wait_until(first_end):
                    response = await stack.enter_async_context(
                        self._client.stream(
                            "POST",
                            self.url,
                            json=payload,
                            headers=self._headers,
                            timeout=self._timeout_for(timeout),
                        )
                    )
                async with self._wait_until(end):
                    await response.aread()
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
        except ValueError as exc:
            raise _bad_shape(model, "a body that is not JSON", response.status_code) from exc
        text = _answer_text(body)
        if text is None:
            raise _bad_shape(
                model, "an answer without a text in choices[0].message", response.status_code
            )
        if not text.strip():
            raise _bad_shape(model, "an empty answer", response.status_code)
        usage = _usage(body.get("usage")) or Usage()
        usage.cost_usd = cost_of(usage, model, self.prices)
        answered_by = body.get("model")
        return ChatResult(
            text=text,
            model=answered_by if isinstance(answered_by, str) and answered_by else model,
            usage=usage,
        )

    def _stream_line(self, line: str, model: str) -> tuple[str, str | None, Usage | None, str]:
        """One line of the SSE stream: (text piece, model, usage, state), where state is
        `""` (going on), `finished` (a finish_reason) or `done` ([DONE]).

        Raises:
            _Retryable: an error object, a finish_reason of `error`, or a piece of the wrong
                shape (not JSON, `choices` not a list, a `delta` or `content` of another type).
        """
        line = line.strip()
        if not line.startswith("data:"):
            return "", None, None, ""  # blank separators and ": keep-alive" comments
        data = line[5:].strip()
        if data == "[DONE]":
            return "", None, None, "done"
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise _bad_shape(model, "a stream piece that is not JSON") from exc
        if not isinstance(chunk, dict):
            raise _bad_shape(model, "a stream piece that is not an object")
        if "error" in chunk:
            raise _Retryable(
                ProviderError(f"chat: model {model} failed mid-stream", provider=self.provider)
            )
        choices = chunk.get("choices")
        if choices is None:
            choices = []
        if not isinstance(choices, list):
            raise _bad_shape(model, "a stream piece whose choices are not a list")
        pieces: list[str] = []
        state = ""
        for choice in choices:
            if not isinstance(choice, dict):
                raise _bad_shape(model, "a stream choice that is not an object")
            delta = choice.get("delta")
            if delta is None:
                delta = {}
            if not isinstance(delta, dict):
                raise _bad_shape(model, "a stream delta that is not an object")
            content = delta.get("content")
            if content is not None and not isinstance(content, str):
                raise _bad_shape(model, "a stream delta whose content is not a text")
            if content:
                pieces.append(content)
            reason = choice.get("finish_reason")
            if reason == "error":
                raise _Retryable(
                    ProviderError(f"chat: model {model} ended on an error", provider="chat")
                )
            if reason:
                state = "finished"
        answered_by = chunk.get("model")
        return (
            "".join(pieces),
            answered_by if isinstance(answered_by, str) and answered_by else None,
            _usage(chunk.get("usage")),
            state,
        )

    async def _stream_once(
        self,
        messages: list[dict[str, str]],
        model: str,
        temperature: float,
        max_tokens: int,
        first: float | None,
        idle: float | None,
        end: float | None,
    ) -> AsyncIterator[ChatDelta]:
        """One model's stream, under the three deadlines (`end` on the loop's clock)."""
        loop = asyncio.get_running_loop()
        payload = self._payload(messages, model, temperature, max_tokens, True)
        parts: list[str] = []
        usage: Usage | None = None
        answered_by = model
        first_end = loop.time() + first if first else None

        def next_deadline() -> float | None:
            """When the current wait must end: the first piece's, then the gap's, deadline,
            never past the whole answer's."""
            wait = first_end if not parts else (loop.time() + idle if idle else None)
            if wait is None:
                return end
            return wait if end is None else min(wait, end)

        finished = done = False
        # Each wait (the response's headers, then each network read) runs under the deadline
        # in force; never the time the caller spends between two pieces.
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with self._wait_until(next_deadline()):
                    response = await stack.enter_async_context(
                        self._client.stream("POST", self.url, json=payload, headers=self._headers)
                    )
                    if response.status_code >= 400:
                        body = (await response.aread()).decode("utf-8", "replace")
                        error = self._error(model, response.status_code, body)
                        if response.status_code in RETRYABLE_STATUS:
                            raise _Retryable(error, response)
                        raise error
                # Parsed a network read at a time: everything that arrived together becomes
                # one delta. A model writing token by token still gives one delta per token;
                # when the worker falls behind (hundreds of answers at once), the pieces that
                # queued up travel as one event instead of a dozen.
                reads = await stack.enter_async_context(contextlib.aclosing(_read_lines(response)))
                while not done:
                    try:
                        async with self._wait_until(next_deadline()):
                            lines = await anext(reads)
                    except StopAsyncIteration:
                        break
                    batch: list[str] = []
                    for line in lines:
                        piece, chunk_model, chunk_usage, state = self._stream_line(line, model)
                        answered_by = chunk_model or answered_by
                        usage = chunk_usage or usage
                        if piece:
                            batch.append(piece)
                        finished = finished or bool(state)
                        if state == "done":
                            done = True
                            break
                    if batch:
                        text = "".join(batch)
                        parts.append(text)
                        yield ChatDelta(text=text)
        except TimeoutError as exc:
            raise self._deadline_error(model, bool(parts), loop.time(), end) from exc
        except httpx.HTTPError as exc:
            error = self._transport_error(exc, model, f"stream from model {model} broke")
            error.cause = "truncated"
            raise error from exc
        if not finished:
            raise _Retryable(
                ProviderError(
                    f"chat: the stream of model {model} ended without [DONE] or a finish_reason",
                    provider=self.provider,
                ),
                cause="truncated",
            )
        if not "".join(parts).strip():
            raise _bad_shape(model, "an empty answer")
        usage = usage or Usage()
        usage.cost_usd = cost_of(usage, model, self.prices)
        yield ChatDelta(result=ChatResult(text="".join(parts), model=answered_by, usage=usage))

    def _deadline_error(self, model: str, sent: bool, now: float, end: float | None) -> _Retryable:
        """Which deadline passed: the shutdown's, the whole answer's, the first piece's, or a
        gap's."""
        if self.shutdown_at is not None and now >= self.shutdown_at - 0.01:
            message, cause = f"chat: model {model} stopped by the server's shutdown", "shutdown"
        elif end is not None and now >= end - 0.01:
            message, cause = f"chat: model {model} passed the answer's deadline", "deadline"
        elif not sent:
            message, cause = (
                f"chat: model {model} sent nothing before the first-token deadline",
                "first_token",
            )
        else:
            message, cause = f"chat: model {model} went silent past the idle deadline", "idle"
        # A silent model is not asked twice: the fallback takes over at once.
        return _Retryable(ProviderError(message, provider=self.provider), again=False, cause=cause)


def _answer_text(body: Any) -> str | None:
    """`choices[0].message.content` when the body has that shape and it is a text, else None."""
    if not isinstance(body, dict):
        return None
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    return content if isinstance(content, str) else None


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
