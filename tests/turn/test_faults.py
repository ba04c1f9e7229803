"""Faults injected into a turn through the fake model server: answers of the wrong shape,
truncated, slow or endless streams, and a database locked while the answer is saved."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest
from tests.fakes.openai_chat import FakeChat, Hang, Raw, RawStream, Reply
from tests.turn.conftest import EXPERT, FALLBACK
from tests.turn.test_turn import AUDREY_Q, new_conversation

from copines.turn import APOLOGY, CUT_SHORT, TurnRunner

FALLBACK_TEXT = "Réponse du modèle de secours."


@pytest.fixture
def backend() -> str:
    """These faults are the model client's and SQLite's lock: SQLite only."""
    return "sqlite"


def chunk(content, model: str = EXPERT, finish: str | None = None) -> dict:
    return {
        "id": "x",
        "model": model,
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }


async def turn_of(runner: TurnRunner, deps, streaming: bool):
    """Run one turn; (public result, events or [], stored answer)."""
    cid = await new_conversation(deps)
    events = []
    if streaming:
        events = [e async for e in runner.stream(cid, AUDREY_Q)]
        assert events[-1].event == "done"
        result = events[-1].data
    else:
        result = (await runner.run(cid, AUDREY_Q)).to_public()
    user, answer = await deps.store.get_messages(cid)
    assert user.content == AUDREY_Q and answer.role == "assistant"
    return result, events, answer


BAD_BODIES = {
    "object content": {"choices": [{"message": {"role": "assistant", "content": {"a": 1}}}]},
    "no choices": {"choices": []},
    "choices not a list": {"choices": "nope"},
    "empty text": {"choices": [{"message": {"role": "assistant", "content": "   "}}]},
    "not an object": ["a", "list"],
}
BAD_STREAMS = {
    "string delta": [{"id": "x", "choices": [{"delta": "Bonjour", "finish_reason": None}]}],
    "object content": [chunk({"text": "Bonjour"})],
    "not json": ["{this is not json"],
    "empty text": [chunk(""), chunk(None, finish="stop")],
}


@pytest.mark.parametrize("shape", list(BAD_BODIES))
async def test_a_whole_answer_of_the_wrong_shape_goes_to_the_fallback(
    llm_deps, fake_chat: FakeChat, shape
):
    fake_chat.default(EXPERT, Raw(BAD_BODIES[shape]))
    fake_chat.default(FALLBACK, Reply(FALLBACK_TEXT))
    runner = TurnRunner(llm_deps)
    result, _, answer = await turn_of(runner, llm_deps, streaming=False)
    await runner.aclose()
    assert result["error"] is None and result["model"] == FALLBACK
    assert result["response"] == FALLBACK_TEXT
    assert answer.status == "ok" and answer.meta["fell_back"] is True


@pytest.mark.parametrize("shape", list(BAD_STREAMS))
async def test_a_stream_of_the_wrong_shape_goes_to_the_fallback(
    llm_deps, fake_chat: FakeChat, shape
):
    fake_chat.default(EXPERT, RawStream(BAD_STREAMS[shape], done=True))
    fake_chat.default(FALLBACK, Reply(FALLBACK_TEXT))
    runner = TurnRunner(llm_deps)
    result, events, answer = await turn_of(runner, llm_deps, streaming=True)
    await runner.aclose()
    assert [e.event for e in events if e.event in ("error", "done")] == ["done"]
    assert result["model"] == FALLBACK and result["response"] == FALLBACK_TEXT
    assert answer.status == "ok" and answer.content == FALLBACK_TEXT


@pytest.mark.parametrize("streaming", [False, True])
async def test_every_model_of_the_wrong_shape_gives_the_apology_and_an_answer_row(
    llm_deps, fake_chat: FakeChat, streaming
):
    bad = RawStream(BAD_STREAMS["string delta"], done=True) if streaming else Raw({"choices": []})
    fake_chat.default(EXPERT, bad)
    fake_chat.default(FALLBACK, bad)
    runner = TurnRunner(llm_deps)
    result, events, answer = await turn_of(runner, llm_deps, streaming)
    await runner.aclose()
    assert result["error"] == "model_unavailable" and result["response"] == APOLOGY
    if streaming:
        error = [e for e in events if e.event == "error"][0].data
        assert error["code"] == "model_unavailable" and error["message"] == APOLOGY
        assert "choices" not in str(error) and EXPERT not in str(error)
    assert answer.status == "failed" and answer.content == APOLOGY
    assert EXPERT in answer.meta["error"]  # the detail stays for the team


async def test_a_stream_without_done_or_finish_reason_is_stored_as_truncated(
    llm_deps, fake_chat: FakeChat
):
    fake_chat.default(EXPERT, RawStream([chunk("Voici le début "), chunk("de la réponse")]))
    runner = TurnRunner(llm_deps)
    result, events, answer = await turn_of(runner, llm_deps, streaming=True)
    await runner.aclose()
    assert [e.event for e in events][-2:] == ["error", "done"]
    assert events[-2].data["code"] == "truncated" and events[-2].data["message"] == CUT_SHORT
    assert result["error"] == "truncated"
    assert answer.status == "truncated" and answer.content == "Voici le début de la réponse"
    assert answer.meta["cause"] == "truncated"


async def test_a_truncated_stream_with_nothing_shown_goes_to_the_fallback(
    llm_deps, fake_chat: FakeChat
):
    fake_chat.default(EXPERT, RawStream([chunk("")]))  # ends with no text, no [DONE]
    fake_chat.default(FALLBACK, Reply(FALLBACK_TEXT))
    runner = TurnRunner(llm_deps)
    result, _, answer = await turn_of(runner, llm_deps, streaming=True)
    await runner.aclose()
    assert result["model"] == FALLBACK and answer.status == "ok"


async def test_a_silent_model_hands_over_at_the_first_token_deadline(
    llm_deps_factory, fake_chat: FakeChat
):
    deps = await llm_deps_factory(llm_first_token_timeout=0.5, llm_read_timeout=30.0)
    fake_chat.default(EXPERT, Hang(20))
    fake_chat.default(FALLBACK, Reply(FALLBACK_TEXT))
    runner = TurnRunner(deps)
    started = time.perf_counter()
    result, _, answer = await turn_of(runner, deps, streaming=True)
    elapsed = time.perf_counter() - started
    await runner.aclose()
    assert result["model"] == FALLBACK and answer.status == "ok"
    assert len(fake_chat.for_model(EXPERT)) == 1  # a silent model is not asked twice
    assert elapsed < 10  # the 20 s hang was not waited out


async def test_a_trickling_model_is_cut_at_the_idle_and_whole_answer_deadlines(
    llm_deps_factory, fake_chat: FakeChat
):
    # One piece every 0.4 s, forever (40 pieces): the whole answer's deadline (1.5 s) ends it.
    deps = await llm_deps_factory(turn_deadline=1.5, llm_idle_timeout=1.0)
    fake_chat.default(EXPERT, RawStream([chunk("mot ")] * 40, gap=0.4, done=True))
    runner = TurnRunner(deps)
    result, events, answer = await turn_of(runner, deps, streaming=True)
    assert result["error"] == "truncated" and answer.status == "truncated"
    assert answer.meta["cause"] == "deadline" and answer.content.startswith("mot")
    # A gap longer than the idle deadline ends it too.
    fake_chat.default(EXPERT, RawStream([chunk("un "), chunk("deux ")], gap=1.4, done=True))
    deps2 = await llm_deps_factory(turn_deadline=10, llm_idle_timeout=0.5)
    runner2 = TurnRunner(deps2)
    result, events, answer = await turn_of(runner2, deps2, streaming=True)
    await runner.aclose()
    await runner2.aclose()
    assert answer.status == "truncated" and answer.meta["cause"] == "idle"
    assert answer.content == "un "


async def test_every_model_hanging_gives_the_apology_within_the_deadlines(
    llm_deps_factory, fake_chat: FakeChat
):
    deps = await llm_deps_factory(llm_first_token_timeout=0.5, llm_read_timeout=30.0)
    fake_chat.default(EXPERT, Hang(20))
    fake_chat.default(FALLBACK, Hang(20))
    runner = TurnRunner(deps)
    started = time.perf_counter()
    result, _, answer = await turn_of(runner, deps, streaming=True)
    elapsed = time.perf_counter() - started
    await runner.aclose()
    assert result["response"] == APOLOGY and answer.status == "failed"
    assert elapsed < 10


def hold_lock(path: str, seconds: float, started: threading.Event) -> threading.Thread:
    """Another process's long write: an exclusive transaction on the SQLite file."""

    def run() -> None:
        db = sqlite3.connect(path, timeout=0, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        started.set()
        time.sleep(seconds)
        db.execute("ROLLBACK")
        db.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


async def test_a_database_locked_while_the_answer_is_saved_loses_nothing(
    llm_deps_factory, fake_chat: FakeChat
):
    # A lock that outlasts the busy timeout (0.3 s) three times over.
    deps = await llm_deps_factory(sqlite_busy_timeout_ms=300, save_retry_seconds=10)
    fake_chat.default(EXPERT, Reply("un deux trois quatre cinq six", chunk_delay=0.05))
    runner = TurnRunner(deps)
    cid = await new_conversation(deps)
    path = deps.settings.resolved_database_url.removeprefix("sqlite:///")
    locked = threading.Event()
    events = []
    holder = None
    async for event in runner.stream(cid, AUDREY_Q):
        events.append(event)
        if event.event == "token" and holder is None:
            holder = hold_lock(path, 1.2, locked)
            await asyncio.to_thread(locked.wait, 5)
    holder.join()
    await runner.aclose()
    assert [e.event for e in events][-1] == "done"
    assert "error" not in [e.event for e in events]
    done = events[-1].data
    assert done["message_id"] is not None
    _, answer = await deps.store.get_messages(cid)
    assert answer.id == done["message_id"] and answer.status == "ok"
    assert answer.content == "un deux trois quatre cinq six"


async def test_a_lock_longer_than_the_retries_queues_the_answer(
    llm_deps_factory, fake_chat: FakeChat
):
    deps = await llm_deps_factory(sqlite_busy_timeout_ms=200, save_retry_seconds=0.5)
    fake_chat.default(EXPERT, Reply("un deux trois quatre", chunk_delay=0.05))
    runner = TurnRunner(deps)
    cid = await new_conversation(deps)
    path = deps.settings.resolved_database_url.removeprefix("sqlite:///")
    locked = threading.Event()
    events = []
    holder = None
    async for event in runner.stream(cid, AUDREY_Q):
        events.append(event)
        if event.event == "token" and holder is None:
            holder = hold_lock(path, 2.0, locked)
            await asyncio.to_thread(locked.wait, 5)
    # She got her done at once, without an id; the answer lands once the lock goes.
    assert events[-1].event == "done" and events[-1].data["message_id"] is None
    holder.join()
    await runner.drain()
    await runner.aclose()
    _, answer = await deps.store.get_messages(cid)
    assert answer.status == "ok" and answer.content == "un deux trois quatre"


HANDOFF_Q = "Je voudrais parler à une vraie personne de l'équipe"


@pytest.mark.parametrize(
    ("question", "write"),
    [(AUDREY_Q, "set_conversation_expert"), (HANDOFF_Q, "add_escalation")],
    ids=["expert", "escalation"],
)
async def test_a_visitor_leaving_once_her_answer_is_stored_keeps_one_answer(
    llm_deps_factory, fake_chat: FakeChat, monkeypatch, question, write
):
    deps = await llm_deps_factory(sqlite_busy_timeout_ms=200)
    fake_chat.default(EXPERT, Reply("un deux trois quatre", chunk_delay=0.02))
    runner = TurnRunner(deps)
    cid = await new_conversation(deps)
    path = deps.settings.resolved_database_url.removeprefix("sqlite:///")
    store = deps.store
    original = getattr(store, write)
    locked, inserted = threading.Event(), asyncio.Event()
    holders: list[threading.Thread] = []

    async def write_after_a_lock(*args, **kwargs):
        # The answer row is in; another writer takes the lock before what follows it.
        if not holders:
            holders.append(hold_lock(path, 1.0, locked))
            await asyncio.to_thread(locked.wait, 5)
            inserted.set()
        return await original(*args, **kwargs)

    monkeypatch.setattr(store, write, write_after_a_lock)

    async def visit() -> None:
        async for _ in runner.stream(cid, question):
            pass

    visitor = asyncio.create_task(visit())
    await asyncio.wait_for(inserted.wait(), 20)
    await asyncio.sleep(0.2)  # inside the retries on the lock
    visitor.cancel()  # she closes the tab
    with pytest.raises(asyncio.CancelledError):
        await visitor
    await asyncio.to_thread(holders[0].join)
    await runner.drain()
    await runner.aclose()
    messages = await store.get_messages(cid)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].status == "ok"
    # What followed the answer was done all the same.
    if write == "set_conversation_expert":
        assert (await store.get_conversation(cid)).expert == messages[1].agent == "audrey"
    else:
        [escalation] = await store.list_escalations("open")
        assert escalation.message_id == messages[1].id


async def test_a_lock_longer_than_the_retries_keeps_the_text_of_a_visitor_who_left(
    llm_deps_factory, fake_chat: FakeChat
):
    deps = await llm_deps_factory(sqlite_busy_timeout_ms=200, save_retry_seconds=0.5)
    fake_chat.default(EXPERT, Reply("un deux trois quatre cinq six sept huit", chunk_delay=0.3))
    runner = TurnRunner(deps)
    cid = await new_conversation(deps)
    path = deps.settings.resolved_database_url.removeprefix("sqlite:///")
    locked = threading.Event()
    stream = runner.stream(cid, AUDREY_Q)
    shown = []
    async for event in stream:
        if event.event == "token":
            shown.append(event.data["text"])
            break
    # A lock four times longer than the retries, then she leaves mid-answer.
    holder = hold_lock(path, 2.0, locked)
    await asyncio.to_thread(locked.wait, 5)
    await stream.aclose()
    await asyncio.to_thread(holder.join)  # the loop runs the save's retries meanwhile
    await runner.drain()
    await runner.aclose()
    _, answer = await deps.store.get_messages(cid)
    assert answer.status == "truncated" and answer.content == "".join(shown)
    assert answer.meta["cause"] == "client_left"


async def test_a_visitor_leaving_while_her_answer_waits_for_the_lock_gets_it_stored_whole(
    llm_deps_factory, fake_chat: FakeChat, monkeypatch
):
    deps = await llm_deps_factory(sqlite_busy_timeout_ms=200)
    fake_chat.default(EXPERT, Reply("un deux trois quatre", chunk_delay=0.02))
    runner = TurnRunner(deps)
    cid = await new_conversation(deps)
    path = deps.settings.resolved_database_url.removeprefix("sqlite:///")
    store = deps.store
    add_message = store.add_message
    locked, saving = threading.Event(), asyncio.Event()
    holders: list[threading.Thread] = []

    async def add_after_a_lock(message):
        if message.role == "assistant" and not holders:
            holders.append(hold_lock(path, 1.0, locked))
            await asyncio.to_thread(locked.wait, 5)
            saving.set()
        return await add_message(message)

    monkeypatch.setattr(store, "add_message", add_after_a_lock)

    async def visit() -> None:
        async for _ in runner.stream(cid, AUDREY_Q):
            pass

    visitor = asyncio.create_task(visit())
    await asyncio.wait_for(saving.wait(), 20)
    await asyncio.sleep(0.2)  # inside the retries on the lock
    visitor.cancel()
    with pytest.raises(asyncio.CancelledError):
        await visitor
    await asyncio.to_thread(holders[0].join)
    await runner.drain()
    await runner.aclose()
    messages = await store.get_messages(cid)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].status == "ok" and messages[1].content == "un deux trois quatre"
