"""The visitor's own conversation: read it (the widget restores it), leave or remove an email
for the team's replies, delete it."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response

from copines.api.deps import DepsDep, TokenHeader
from copines.api.schemas import (
    MAX_ID,
    ConversationPublic,
    EmailUpdate,
    ErrorPublic,
    MessagePublic,
    ValidationErrorPublic,
)
from copines.conversations import open_conversation
from copines.deps import Deps
from copines.privacy import link_key
from copines.routing import ASSISTANT, ASSISTANT_COLOR
from copines.store.base import Conversation, Message
from copines.text import initials_of

router = APIRouter(prefix="/api", tags=["conversations"])

TEAM_NAME = "L'équipe"
TEAM_COLOR = "#6B7280"
NOT_FOUND = "Cette conversation est introuvable : recharge la page pour en commencer une nouvelle."
BAD_EMAIL = "Cette adresse email ne semble pas valide : vérifie-la (exemple : prenom@domaine.fr)."
EMAIL_RE = re.compile(r"^[^@\s<>,;\"]{1,64}@[^@\s<>,;\"]+\.[^@\s<>,;\"]{2,}$")
NOT_FOUND_RESPONSE: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorPublic, "description": "Unknown conversation or wrong token."}
}


def message_public(message: Message, deps: Deps) -> MessagePublic:
    """A stored message as the widget shows it: who speaks (the expert, the assistant for the
    automatic messages, or the named person of the team), with her colour and initials."""
    name = color = initials = label = None
    if message.role == "team":
        name = str(message.meta.get("author_name") or TEAM_NAME)
        color, initials, label = TEAM_COLOR, initials_of(name), "équipe"
    elif message.role == "assistant" and message.agent in ("escalate", ASSISTANT):
        name = deps.settings.assistant_name
        color, initials, label = ASSISTANT_COLOR, initials_of(name), "assistante"
    elif message.role == "assistant":
        expert = deps.experts.get(message.agent or "")
        if expert is not None:
            name, color, initials, label = expert.name, expert.color, expert.initials, "experte"
    sources: list[dict[str, Any]] = [s for s in message.sources if isinstance(s, dict)]
    return MessagePublic(
        id=message.id or 0,
        role=message.role,
        content=message.content,
        agent=message.agent,
        agent_name=name,
        label=label,
        color=color,
        initials=initials,
        sources=sources,
        status=message.status,
        created_at=message.created_at,
    )


async def visitor_conversation(deps: Deps, conversation_id: str, token: str | None) -> Conversation:
    conversation = await open_conversation(
        deps.store, conversation_id, token, link_key(deps.settings)
    )
    if conversation is None:
        raise HTTPException(404, detail=NOT_FOUND)
    return conversation


@router.get(
    "/conversations/{conversation_id}",
    response_model=ConversationPublic,
    responses={
        **NOT_FOUND_RESPONSE,
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
    conversation = await visitor_conversation(deps, conversation_id, x_conversation_token)
    messages = await deps.store.get_messages(conversation.id, after_id=after)
    return ConversationPublic(
        conversation_id=conversation.id,
        expert=conversation.expert,
        email=conversation.email,
        messages=[message_public(m, deps) for m in messages],
    )


@router.post(
    "/conversations/{conversation_id}/email",
    status_code=204,
    responses={
        **NOT_FOUND_RESPONSE,
        422: {"model": ErrorPublic, "description": "Not an email address."},
    },
)
async def update_conversation_email(
    conversation_id: str, body: EmailUpdate, deps: DepsDep, x_conversation_token: TokenHeader = None
) -> Response:
    """Leave an email to receive the team's replies (an empty one removes it)."""
    conversation = await visitor_conversation(deps, conversation_id, x_conversation_token)
    email = body.email.strip()
    if email and not EMAIL_RE.match(email):
        raise HTTPException(422, detail=BAD_EMAIL)
    await deps.store.set_conversation_email(conversation.id, email or None)
    return Response(status_code=204)


@router.delete("/conversations/{conversation_id}", status_code=204, responses=NOT_FOUND_RESPONSE)
async def delete_conversation(
    conversation_id: str, deps: DepsDep, x_conversation_token: TokenHeader = None
) -> Response:
    """Delete your conversation for good: its messages, hand-off, feedback and email."""
    conversation = await visitor_conversation(deps, conversation_id, x_conversation_token)
    await deps.store.delete_conversation(conversation.id)
    return Response(status_code=204)
