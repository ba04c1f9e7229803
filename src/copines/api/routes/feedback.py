"""POST /api/feedback: thumbs up or down on one answer."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from copines.api.deps import DepsDep, TokenHeader
from copines.api.schemas import (
    ErrorPublic,
    FeedbackCreate,
    FeedbackPublic,
    ValidationErrorPublic,
)
from copines.conversations import open_conversation
from copines.privacy import link_key
from copines.store.base import Feedback

router = APIRouter(prefix="/api", tags=["feedback"])

NOT_FOUND = "Cette réponse est introuvable dans ta conversation."


@router.post(
    "/feedback",
    response_model=FeedbackPublic,
    status_code=201,
    responses={
        404: {"model": ErrorPublic, "description": "Not an answer of your conversation."},
        413: {"model": ErrorPublic, "description": "Body larger than the cap."},
        422: {"model": ValidationErrorPublic, "description": "A field missing or out of range."},
    },
)
async def create_feedback(
    body: FeedbackCreate, deps: DepsDep, x_conversation_token: TokenHeader = None
) -> FeedbackPublic:
    """Rate one answer of your conversation (a second rating replaces the first)."""
    token = x_conversation_token or body.token
    conversation = await open_conversation(
        deps.store, body.conversation_id, token, link_key(deps.settings)
    )
    if conversation is None:
        raise HTTPException(404, detail=NOT_FOUND)
    message = await deps.store.get_message(body.message_id)
    if message is None or message.conversation_id != conversation.id or message.role != "assistant":
        raise HTTPException(404, detail=NOT_FOUND)
    feedback_id = await deps.store.add_feedback(
        Feedback(
            conversation_id=conversation.id,
            message_id=body.message_id,
            rating=1 if body.rating == "up" else -1,
            comment=body.comment.strip(),
        )
    )
    return FeedbackPublic(id=feedback_id, message_id=body.message_id, rating=body.rating)
