"""GET /api/conversations/{id}: a visitor's own history, so the widget can restore it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from copines.api.deps import DepsDep, TokenHeader
from copines.api.schemas import (
    MAX_ID,
    ConversationPublic,
    ErrorPublic,
    MessagePublic,
    ValidationErrorPublic,
)
from copines.conversations import open_conversation
from copines.deps import Deps
from copines.store.base import Message

router = APIRouter(prefix="/api", tags=["conversations"])

TEAM_NAME = "L'équipe"
NOT_FOUND = "Cette conversation est introuvable : recharge la page pour en commencer une nouvelle."


def message_public(message: Message, deps: Deps) -> MessagePublic:
    """A stored message as the widget shows it (who speaks, with her colour and initials)."""
    name = color = initials = None
    if message.role == "team" or (message.role == "assistant" and message.agent == "escalate"):
        name, color, initials = TEAM_NAME, "#6B7280", "EQ"
    elif message.role == "assistant":
        expert = deps.experts.get(message.agent or "")
        if expert is not None:
            name, color, initials = expert.name, expert.color, expert.initials
    sources: list[dict[str, Any]] = [s for s in message.sources if isinstance(s, dict)]
    return MessagePublic(
        id=message.id or 0,
        role=message.role,
        content=message.content,
        agent=message.agent,
        agent_name=name,
        color=color,
        initials=initials,
        sources=sources,
        status=message.status,
        created_at=message.created_at,
    )


@router.get(
    "/conversations/{conversation_id}",
    response_model=ConversationPublic,
    responses={
        404: {"model": ErrorPublic, "description": "Unknown conversation or wrong token."},
        422: {"model": ValidationErrorPublic, "description": "A parameter out of its range."},
    },
)
async def read_conversation(
    conversation_id: str,
    deps: DepsDep,
    x_conversation_token: TokenHeader = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="Only messages after this id.")
    ] = None,
) -> ConversationPublic:
    """Read your conversation (token in X-Conversation-Token), optionally after a message id."""
    conversation = await open_conversation(deps.store, conversation_id, x_conversation_token)
    if conversation is None:
        raise HTTPException(404, detail=NOT_FOUND)
    messages = await deps.store.get_messages(conversation.id, after_id=after)
    return ConversationPublic(
        conversation_id=conversation.id,
        expert=conversation.expert,
        messages=[message_public(m, deps) for m in messages],
    )
