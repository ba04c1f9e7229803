"""Request and response models of the public API (what OpenAPI at /docs shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The largest id accepted: what JSON numbers (and the widget's JavaScript) hold exactly; far
# below what SQLite and Postgres (bigint) store, so no lookup overflows.
MAX_ID = 2**53 - 1
# What a message may hold: no control characters (tabs and line breaks are fine) and at
# least one visible character (the rules of api.guards.clean_message, which also turns the
# Unicode line and paragraph separators into line breaks).
_FORBIDDEN = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
MESSAGE_PATTERN = rf"^[^{_FORBIDDEN}]*[^{_FORBIDDEN}\s][^{_FORBIDDEN}]*$"


class ChatCreate(BaseModel):
    """One visitor message. Omit `conversation_id` to start a conversation.

    The conversation token goes in the `X-Conversation-Token` header (preferred) or in `token`.
    """

    model_config = ConfigDict(regex_engine="python-re")  # the same regex as the checks

    message: str = Field(
        min_length=1,
        pattern=MESSAGE_PATTERN,
        # Checked by the route against the `max_message_chars` setting, which the app's
        # OpenAPI states here (copines.api.app.state_limits).
        json_schema_extra={"maxLength": 2000},
        description="The visitor's message: at most `maxLength` characters, at least one "
        "visible, no control characters (tabs and line breaks are fine).",
    )
    conversation_id: str | None = Field(None, max_length=64)
    token: str | None = Field(
        None, max_length=128, description="Or the X-Conversation-Token header."
    )


class SourcePublic(BaseModel):
    filename: str
    title: str = ""
    url: str | None = Field(None, description="The document's public page, when it has one.")
    owner: str = ""
    score: float | None = None
    heading: str = ""


class ChatPublic(BaseModel):
    """The whole turn: who answered, the answer, its sources and what post-processing saw."""

    conversation_id: str
    token: str | None = Field(None, description="Only when this message started the conversation.")
    message_id: int | None
    user_message_id: int | None = None
    response: str
    agent: str = Field(
        description="The expert's id, 'assistant' (small talk) or 'escalate' (a human)."
    )
    agent_name: str
    label: str | None = Field(None, description="experte, or assistante for a hand-off.")
    color: str | None = None
    initials: str | None = None
    confidence: float
    router: str | None = None
    sources: list[SourcePublic] = []
    escalated: bool
    loop_detected: bool
    sentiment: str
    upsell: bool
    model: str | None = None
    timings_ms: dict[str, float] = {}
    error: str | None = None


class MessagePublic(BaseModel):
    id: int
    role: Literal["user", "assistant", "team"] | str
    content: str
    agent: str | None = None
    agent_name: str | None = None
    label: str | None = Field(None, description="experte, assistante or équipe.")
    color: str | None = None
    initials: str | None = None
    sources: list[SourcePublic] = []
    status: str = "ok"
    created_at: datetime | None = None


class ConversationPublic(BaseModel):
    """A conversation's messages, oldest first (those after `after` when it is given)."""

    conversation_id: str
    expert: str | None = None
    email: str | None = Field(None, description="Where the team's replies are also sent.")
    messages: list[MessagePublic]


class EmailUpdate(BaseModel):
    """An address for the team's replies; an empty string removes it."""

    email: str = Field(max_length=254)


class FeedbackCreate(BaseModel):
    """Thumbs up or down on one answer. The token goes in `X-Conversation-Token` or `token`."""

    conversation_id: str = Field(max_length=64)
    message_id: int = Field(ge=1, le=MAX_ID)
    rating: Literal["up", "down"]
    comment: str = Field("", max_length=1000)
    token: str | None = Field(None, max_length=128)


class FeedbackPublic(BaseModel):
    id: int
    message_id: int
    rating: Literal["up", "down"]


class ExpertPublic(BaseModel):
    id: str
    name: str
    title: str
    color: str
    initials: str


class ErrorPublic(BaseModel):
    """Every refusal: a French sentence for the visitor (and `errors` for a developer)."""

    detail: str
    errors: list[dict[str, Any]] | None = None


class FieldError(BaseModel):
    loc: list[str | int]
    type: str | None = None
    msg: str | None = None


class ValidationErrorPublic(BaseModel):
    """A request that does not fit the schema: a French sentence about its first problem, and
    every problem in `errors` (422)."""

    detail: str
    errors: list[FieldError] = []


class HealthPublic(BaseModel):
    status: str
    checks: dict[str, bool] = {}
