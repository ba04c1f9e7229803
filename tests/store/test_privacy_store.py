"""One open escalation per conversation, the visitor's email, deletion and the retention purge,
on every store backend (SQLite, and real Postgres)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from copines.conversations import start_conversation
from copines.errors import InputError
from copines.store.base import Escalation, Feedback, Message


def _escalation(conversation_id: str, message_id: int | None, reason: str) -> Escalation:
    return Escalation(
        conversation_id=conversation_id,
        message_id=message_id,
        reason=reason,
        primary_need=reason,
        brief=f"Motif : {reason}.",
        meta={"rule": "semantic"},
    )


async def test_a_later_hand_off_updates_the_open_escalation(store):
    conversation, _ = await start_conversation(store)
    first_answer = await store.add_message(
        Message(conversation.id, "assistant", "a", agent="escalate")
    )
    first = _escalation(conversation.id, first_answer, "TVA")
    await store.add_escalation(first)
    assert not first.merged

    later_answer = await store.add_message(
        Message(conversation.id, "assistant", "b", agent="escalate")
    )
    later = _escalation(conversation.id, later_answer, "remboursement")
    await store.add_escalation(later)
    assert later.merged and later.id == first.id

    open_ones = await store.list_escalations("open")
    assert [e.id for e in open_ones] == [first.id]
    stored = open_ones[0]
    assert stored.reason == "remboursement" and stored.message_id == later_answer
    assert stored.meta["handoffs"] == 2 and stored.meta["rule"] == "semantic"
    await store.add_escalation(_escalation(conversation.id, later_answer, "encore"))
    assert (await store.get_escalation(first.id)).meta["handoffs"] == 3

    # Once handled, the next hand-off opens a new escalation; the handled one cannot be
    # reopened beside it (the store refuses a second open one).
    await store.set_escalation_status(first.id, "handled")
    again = _escalation(conversation.id, later_answer, "nouvelle demande")
    await store.add_escalation(again)
    assert not again.merged and again.id != first.id
    with pytest.raises(InputError):
        await store.set_escalation_status(first.id, "open")
    assert [e.id for e in await store.list_escalations("open")] == [again.id]

    # Another conversation has its own.
    other, _ = await start_conversation(store)
    await store.add_escalation(_escalation(other.id, None, "autre"))
    assert len(await store.list_escalations("open")) == 2


async def test_simultaneous_hand_offs_leave_one_open_escalation(store):
    conversation, _ = await start_conversation(store)
    escalations = [_escalation(conversation.id, None, f"raison {i}") for i in range(6)]
    await asyncio.gather(*(store.add_escalation(e) for e in escalations))
    open_ones = await store.list_escalations("open")
    assert len(open_ones) == 1
    assert sum(not e.merged for e in escalations) == 1
    assert open_ones[0].meta["handoffs"] == 6


async def test_email_deletion_and_purge(store):
    kept, _ = await start_conversation(store)
    gone, _ = await start_conversation(store)
    await store.set_conversation_email(kept.id, "Marie@Example.fr")
    await store.set_conversation_email(gone.id, "marie@example.fr")
    assert (await store.get_conversation(kept.id)).email == "Marie@Example.fr"
    found = await store.conversations_by_email(" MARIE@example.FR ")
    assert {c.id for c in found} == {kept.id, gone.id}

    answer = await store.add_message(Message(gone.id, "assistant", "réponse", agent="audrey"))
    await store.add_feedback(Feedback(gone.id, answer, -1, "pas clair"))
    await store.add_escalation(_escalation(gone.id, answer, "TVA"))
    assert await store.delete_conversation(gone.id)
    assert not await store.delete_conversation(gone.id)
    assert await store.get_conversation(gone.id) is None
    assert await store.get_messages(gone.id) == []
    assert await store.list_feedback(gone.id) == []
    assert [e for e in await store.list_escalations(None) if e.conversation_id == gone.id] == []

    await store.set_conversation_email(kept.id, None)
    assert (await store.get_conversation(kept.id)).email is None

    # The purge deletes what was last active before the cutoff, and only that.
    await store.add_message(Message(kept.id, "user", "bonjour"))
    assert await store.purge_conversations(datetime.now(UTC) - timedelta(days=1)) == 0
    assert await store.get_conversation(kept.id) is not None
    assert await store.purge_conversations(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert await store.get_conversation(kept.id) is None
    assert await store.get_messages(kept.id) == []


async def test_the_link_and_ip_keys_are_generated_once_and_outlive_the_admin_token(store, settings):
    from pydantic import SecretStr

    from copines.conversations import open_conversation
    from copines.privacy import load_keys, reopen_token

    first = await load_keys(store, settings.model_copy(update={"admin_token": SecretStr("a" * 24)}))
    rotated = await load_keys(
        store, settings.model_copy(update={"admin_token": SecretStr("b" * 24)})
    )
    assert first == rotated  # rotating the console's token leaves every reply link valid
    assert first.link != first.ip
    conversation, _ = await start_conversation(store)
    link = reopen_token(first.link, conversation.id, days=30)
    assert await open_conversation(store, conversation.id, link, rotated.link_accepted)

    # The operator sets her own secret and keeps the stored one as the previous: links signed
    # before the rotation still open, new ones are signed with the new secret.
    own = settings.model_copy(
        update={"link_secret": SecretStr("n" * 32), "link_secret_previous": None}
    )
    without_previous = await load_keys(store, own)
    assert not await open_conversation(store, conversation.id, link, without_previous.link_accepted)
    stored = await store.meta_setdefault("secret:link", "unused")
    rotating = await load_keys(
        store, own.model_copy(update={"link_secret_previous": SecretStr(stored)})
    )
    assert await open_conversation(store, conversation.id, link, rotating.link_accepted)
    assert rotating.link != first.link
