"""Visitor identity: a conversation id and an unguessable token that only the visitor holds."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence

from copines.privacy import reopen_token_valid
from copines.store.base import Conversation, Store


def hash_token(token: str) -> str:
    """The stored form of a visitor token (the token itself is never stored)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def start_conversation(store: Store) -> tuple[Conversation, str]:
    """Create a conversation; returns it and the visitor's token (shown once)."""
    token = secrets.token_urlsafe(32)
    conversation = await store.create_conversation(str(uuid.uuid4()), hash_token(token))
    return conversation, token


async def open_conversation(
    store: Store,
    conversation_id: str,
    token: str | None,
    link_keys: Sequence[bytes] = (),
) -> Conversation | None:
    """The conversation if `token` is its token, or an unexpired reopen credential from a
    reply's email signed by one of `link_keys`; None otherwise (unknown id or wrong token)."""
    if not token or not conversation_id or len(conversation_id) > 64:
        return None
    conversation = await store.get_conversation(conversation_id)
    if conversation is None:
        return None
    if hmac.compare_digest(conversation.token_hash, hash_token(token)):
        return conversation
    if link_keys and reopen_token_valid(link_keys, token, conversation_id):
        return conversation
    return None
