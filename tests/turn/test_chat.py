"""The chat client against a real local OpenAI-compatible server."""

from __future__ import annotations

import logging

import pytest
from tests.conftest import make_settings
from tests.fakes.openai_chat import BreakStream, FakeChat, Hang, Reply, Status
from tests.turn.conftest import KEY

from copines.errors import ConfigError, ProviderError
from copines.providers.chat import ChatClient, ChatResult

MODEL, FALLBACK = "m/primary", "m/fallback"
MESSAGES = [{"role": "system", "content": "Tu es un test."}, {"role": "user", "content": "Salut"}]


def client(fake: FakeChat, **kw) -> ChatClient:
    values = dict(
        base_url=fake.url,
        api_key=KEY,
        fallback_model=FALLBACK,
        referer="https://lagencedescopines.com",
        title="Copines test",
        read_timeout=1.0,
        backoff=0.01,
        prices={MODEL: (1.0, 2.0)},
    )
    values.update(kw)
    return ChatClient(**values)


async def test_complete_sends_attribution_headers_and_reads_usage_cost(fake_chat: FakeChat):
    fake_chat.script(MODEL, Reply("Bonjour !", cost=0.0042, prompt_tokens=11, completion_tokens=3))
    chat = client(fake_chat)
    try:
        result = await chat.complete(MESSAGES, MODEL)
    finally:
        await chat.aclose()
    assert result.text == "Bonjour !"
    assert result.model == MODEL and not result.fell_back
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (11, 3)
    assert result.usage.cost_usd == pytest.approx(0.0042)
    [request] = fake_chat.requests
    headers = {k.lower(): v for k, v in request.headers.items()}  # names are case-insensitive
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["http-referer"] == "https://lagencedescopines.com"
    assert headers["x-title"] == "Copines test"
    assert request.body["messages"] == MESSAGES


async def test_cost_falls_back_to_the_price_table(fake_chat: FakeChat):
    fake_chat.script(
        MODEL, Reply("ok", cost=None, prompt_tokens=1_000_000, completion_tokens=500_000)
    )
    chat = client(fake_chat)
    try:
        result = await chat.complete(MESSAGES, MODEL)
    finally:
        await chat.aclose()
    assert result.usage.cost_usd == pytest.approx(1.0 + 1.0)


async def streamed(fake_chat: FakeChat) -> tuple[list[str], ChatResult | None]:
    """The deltas' texts of one streamed answer, and its final result."""
    chat = client(fake_chat)
    pieces, result = [], None
    try:
        async for delta in chat.stream(MESSAGES, MODEL):
            if delta.result:
                result = delta.result
            else:
                pieces.append(delta.text)
    finally:
        await chat.aclose()
    return pieces, result


async def test_stream_parses_sse_chunks_and_final_usage(fake_chat: FakeChat):
    text = "Voici trois étapes simples pour commencer ton tunnel aujourd'hui."
    # A model that writes its pieces 20 ms apart: each piece is its own delta, as it comes.
    fake_chat.script(MODEL, Reply(text, cost=0.001, chunk_words=2, chunk_delay=0.02))
    pieces, result = await streamed(fake_chat)
    assert len(pieces) == 5 and "".join(pieces) == text
    assert result is not None and result.text == text and result.usage.cost_usd == 0.001
    assert fake_chat.requests[0].body["stream"] is True


async def test_stream_coalesces_pieces_that_arrive_together(fake_chat: FakeChat):
    """A burst of SSE events read in one go becomes fewer deltas, and nothing is lost or
    reordered, accents included (a multi-byte letter may straddle two reads)."""
    text = " ".join(f"étape{i} déjà" for i in range(400))
    fake_chat.script(MODEL, Reply(text, chunk_words=1))
    pieces, result = await streamed(fake_chat)
    assert "".join(pieces) == text and result is not None and result.text == text
    assert 1 <= len(pieces) < 800  # 800 events were written back to back


@pytest.mark.parametrize("failure", [Status(503), Status(429, retry_after=0.01), Status(500)])
async def test_retry_once_then_fallback_model(fake_chat: FakeChat, failure: Status):
    fake_chat.script(MODEL, failure, failure)
    fake_chat.script(FALLBACK, Reply("Réponse du modèle de secours."))
    chat = client(fake_chat)
    try:
        result = await chat.complete(MESSAGES, MODEL)
    finally:
        await chat.aclose()
    assert result.fell_back and result.model == FALLBACK
    assert result.text == "Réponse du modèle de secours."
    assert [r.model for r in fake_chat.requests] == [MODEL, MODEL, FALLBACK]
    assert all(str(failure.code) in a for a in result.attempts)


async def test_one_retry_can_succeed_without_fallback(fake_chat: FakeChat):
    fake_chat.script(MODEL, Status(502), Reply("Deuxième essai."))
    chat = client(fake_chat)
    try:
        result = await chat.complete(MESSAGES, MODEL)
    finally:
        await chat.aclose()
    assert result.text == "Deuxième essai." and not result.fell_back
    assert [r.model for r in fake_chat.requests] == [MODEL, MODEL]


async def test_timeout_goes_to_fallback(fake_chat: FakeChat):
    fake_chat.script(MODEL, Hang(3), Hang(3))
    fake_chat.script(FALLBACK, Reply("Je réponds à temps."))
    chat = client(fake_chat, read_timeout=0.3)
    try:
        result = await chat.complete(MESSAGES, MODEL)
    finally:
        await chat.aclose()
    assert result.fell_back and result.text == "Je réponds à temps."


async def test_stream_falls_back_before_the_first_token(fake_chat: FakeChat):
    fake_chat.script(MODEL, Status(503), Status(503))
    fake_chat.script(FALLBACK, Reply("Secours en streaming."))
    chat = client(fake_chat)
    text, result = "", None
    try:
        async for delta in chat.stream(MESSAGES, MODEL):
            text += delta.text
            result = delta.result or result
    finally:
        await chat.aclose()
    assert text == "Secours en streaming." and result is not None and result.fell_back


async def test_stream_broken_after_text_raises(fake_chat: FakeChat):
    fake_chat.script(MODEL, BreakStream("Début de réponse"))
    chat = client(fake_chat)
    try:
        with pytest.raises(ProviderError):
            async for _ in chat.stream(MESSAGES, MODEL):
                pass
    finally:
        await chat.aclose()


@pytest.mark.parametrize("code", [400, 401, 404])
async def test_other_4xx_is_a_clear_error_without_fallback(
    fake_chat: FakeChat, code: int, caplog: pytest.LogCaptureFixture
):
    fake_chat.script(MODEL, Status(code))
    chat = client(fake_chat)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(ProviderError) as info:
            await chat.complete(MESSAGES, MODEL)
    finally:
        await chat.aclose()
    assert MODEL in str(info.value) and str(code) in str(info.value)
    assert info.value.status == code
    assert [r.model for r in fake_chat.requests] == [MODEL]
    assert KEY not in caplog.text and KEY not in str(info.value)


async def test_every_model_failing_raises_naming_them(fake_chat: FakeChat):
    fake_chat.default(MODEL, Status(503))
    fake_chat.default(FALLBACK, Status(503))
    chat = client(fake_chat)
    try:
        with pytest.raises(ProviderError) as info:
            await chat.complete(MESSAGES, MODEL)
    finally:
        await chat.aclose()
    assert MODEL in str(info.value) and FALLBACK in str(info.value)


def test_from_settings_refuses_without_a_model(tmp_path):
    with pytest.raises(ConfigError, match="OPENROUTER_API_KEY"):
        ChatClient.from_settings(make_settings(tmp_path))
