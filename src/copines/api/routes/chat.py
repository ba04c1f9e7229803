"""POST /api/chat (the whole turn as JSON) and POST /api/chat/stream (server-sent events)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse

from copines.api.deps import (
    ClientIP,
    DepsDep,
    LimitsDep,
    MetricsDep,
    TokenHeader,
    TurnsDep,
)
from copines.api.guards import clean_message
from copines.api.metrics import Metrics
from copines.api.routes.conversations import ASSISTANT_COLOR, initials_of
from copines.api.schemas import ChatCreate, ChatPublic, ErrorPublic, ValidationErrorPublic
from copines.conversations import hash_token, open_conversation, start_conversation
from copines.deps import Deps
from copines.errors import InputError, StoreBusyError
from copines.privacy import link_key
from copines.routing import ASSISTANT
from copines.store.base import Conversation

log = logging.getLogger("copines.api")
router = APIRouter(prefix="/api", tags=["chat"])

NOT_FOUND = "Cette conversation est introuvable : recharge la page pour en commencer une nouvelle."
RATE_LIMITED = {
    "ip_minute": "Tu envoies beaucoup de messages d'un coup : attends une minute avant de réessayer.",
    "conversation_minute": "Tu envoies beaucoup de messages d'un coup : "
    "attends une minute avant de réessayer.",
    "ip_day": "Tu as atteint le nombre de messages possibles pour aujourd'hui. "
    "Reviens demain, ou écris directement à l'équipe.",
    "ip_new_conversations": "Trop de nouvelles conversations ont été ouvertes depuis ta connexion : "
    "réessaie un peu plus tard.",
}
TEAM_COLOR, TEAM_INITIALS = "#6B7280", "EQ"  # the team's badge, as in the turn's decision event
STREAM_FAILED = "Oups, la réponse s'est interrompue. Réessaie dans quelques secondes."
STORE_BUSY = "Le service est très sollicité en ce moment : réessaie dans quelques secondes."
SHUTTING_DOWN = (
    "Le service redémarre à l'instant : renvoie ton message dans une minute, il sera bien reçu."
)
KEEPALIVE = b": attente\n\n"  # an SSE comment: the widget ignores it, proxies see traffic

REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorPublic, "description": "Unknown conversation, or wrong token."},
    413: {"model": ErrorPublic, "description": "Body larger than the cap."},
    422: {"model": ValidationErrorPublic, "description": "Empty, too long or malformed message."},
    429: {"model": ErrorPublic, "description": "Rate limited; see Retry-After."},
    503: {
        "model": ErrorPublic,
        "description": "Database busy, or the service is restarting; see Retry-After.",
    },
}


@dataclass
class Opened:
    conversation_id: str
    message: str
    new_token: str | None  # only when this message starts the conversation
    conversation: Conversation | None = None  # as just read or created (the turn reuses it)


async def open_turn(
    body: ChatCreate,
    header_token: str | None,
    ip: str,
    deps: Deps,
    limits: LimitsDep,
    metrics: MetricsDep,
    turns: Any = None,
) -> Opened:
    """Validate, rate limit, then find (or start) the conversation; refusals are HTTP errors
    (a 503 once the process is stopping: `turns.stopping`)."""
    started = time.perf_counter()
    if getattr(turns, "stopping", False):
        raise HTTPException(503, detail=SHUTTING_DOWN, headers={"Retry-After": "30"})
    opened = await _open_turn(body, header_token, ip, deps, limits, metrics)
    metrics.open_seconds.observe(time.perf_counter() - started)
    return opened


async def _open_turn(
    body: ChatCreate,
    header_token: str | None,
    ip: str,
    deps: Deps,
    limits: LimitsDep,
    metrics: MetricsDep,
) -> Opened:
    try:
        message = clean_message(body.message, deps.settings.max_message_chars)
    except InputError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    token = header_token or body.token
    if body.conversation_id and not token:
        raise HTTPException(404, detail=NOT_FOUND)
    token_key = hash_token(token)[:24] if body.conversation_id and token else None
    refusal = await limits.check_message(ip, token_key, new_conversation=not body.conversation_id)
    if refusal is not None:
        metrics.rate_limited.labels(rule=refusal.rule.name).inc()
        raise HTTPException(
            429,
            detail=RATE_LIMITED.get(refusal.rule.name, RATE_LIMITED["ip_minute"]),
            headers={"Retry-After": refusal.retry_after_header},
        )
    if body.conversation_id:
        conversation = await open_conversation(
            deps.store, body.conversation_id, token, link_key(deps.settings)
        )
        if conversation is None:
            raise HTTPException(404, detail=NOT_FOUND)
        return Opened(conversation.id, message, None, conversation)
    conversation, new_token = await start_conversation(deps.store)
    # The first message counts against the new token too, like every later one.
    await limits.count_new_token(hash_token(new_token)[:24])
    return Opened(conversation.id, message, new_token, conversation)


_END = object()


async def with_keepalive(events: AsyncIterator[bytes], every: float) -> AsyncIterator[bytes]:
    """`events`, with an SSE comment whenever nothing was sent for `every` seconds (while the
    model thinks, or the database is locked), so that no proxy closes the stream.

    One task runs the turn and hands its events over through a small queue; waiting on the
    queue under a timeout costs a timer per event, not a task.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=32)

    async def produce() -> None:
        try:
            async for item in events:
                await queue.put(item)
        except Exception as exc:  # handed over: the response's own handler reports it
            await queue.put(exc)
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        await queue.put(_END)

    producer = asyncio.ensure_future(produce())
    try:
        while True:
            try:
                async with asyncio.timeout(every):
                    item = await queue.get()
            except TimeoutError:
                yield KEEPALIVE
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer


def public_turn(result_public: dict[str, Any], opened: Opened, deps: Deps) -> dict[str, Any]:
    """The turn's public object, plus the new token and the expert's colour and initials."""
    payload = dict(result_public)
    payload["conversation_id"] = opened.conversation_id
    payload["token"] = opened.new_token
    expert = deps.experts.get(payload.get("agent", ""))
    if expert is None and payload.get("agent") in ("escalate", ASSISTANT):
        # Hand-offs and small talk are the assistant's messages: signed with her name.
        name = deps.settings.assistant_name
        payload.update(
            agent_name=name, label="assistante", color=ASSISTANT_COLOR, initials=initials_of(name)
        )
    elif expert is not None:
        payload.setdefault("label", "experte")
    payload.setdefault("color", expert.color if expert else TEAM_COLOR)
    payload.setdefault("initials", expert.initials if expert else TEAM_INITIALS)
    return payload


def record_turn(metrics: Metrics, payload: dict[str, Any], usage: dict[str, Any] | None) -> None:
    """Feed the metrics, with the tokens and cost stored with the answer (the turn hands them
    over: no read back of what it just wrote)."""
    try:
        metrics.record_turn(payload, usage)
    except Exception:  # metrics must never fail a turn
        log.warning("metrics: could not record message %s", payload.get("message_id"))


@router.post("/chat", response_model=ChatPublic, responses=REFUSALS)
async def create_chat(
    body: ChatCreate,
    deps: DepsDep,
    turns: TurnsDep,
    limits: LimitsDep,
    metrics: MetricsDep,
    ip: ClientIP,
    x_conversation_token: TokenHeader = None,
) -> dict[str, Any]:
    """Send a message and get the whole answer (starts a conversation when none is given)."""
    opened = await open_turn(body, x_conversation_token, ip, deps, limits, metrics, turns)
    metrics.in_flight.inc()
    try:
        result = await turns.run(
            opened.conversation_id, opened.message, conversation=opened.conversation
        )
    finally:
        metrics.in_flight.dec()
    payload = public_turn(result.to_public(), opened, deps)
    record_turn(metrics, payload, getattr(result, "usage", None))  # microseconds: inline
    return payload


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


@router.post(
    "/chat/stream",
    responses={
        **REFUSALS,
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-sent events: decision, token..., sources, done (the same "
            "object as POST /api/chat) or error ({message, retryable}).",
        },
    },
)
async def create_chat_stream(
    body: ChatCreate,
    deps: DepsDep,
    turns: TurnsDep,
    limits: LimitsDep,
    metrics: MetricsDep,
    ip: ClientIP,
    x_conversation_token: TokenHeader = None,
) -> StreamingResponse:
    """Send a message and receive the answer as it is written (server-sent events)."""
    started = time.perf_counter()
    opened = await open_turn(body, x_conversation_token, ip, deps, limits, metrics, turns)

    async def events() -> AsyncIterator[bytes]:
        metrics.in_flight.inc()
        first_token = True
        try:
            async for event in turns.stream(
                opened.conversation_id, opened.message, conversation=opened.conversation
            ):
                data = event.data
                if event.event == "decision":
                    data = {
                        **data,
                        "conversation_id": opened.conversation_id,
                        "token": opened.new_token,
                    }
                elif event.event == "token" and first_token:
                    first_token = False
                    metrics.first_token_seconds.observe(time.perf_counter() - started)
                elif event.event == "done":
                    data = public_turn(data, opened, deps)
                    yield sse("done", data)
                    result = getattr(event, "result", None)
                    record_turn(metrics, data, getattr(result, "usage", None))
                    continue
                yield sse(event.event, data)
        except StoreBusyError:
            metrics.turn_errors.labels(kind="store_busy").inc()
            yield sse("error", {"code": "store_busy", "message": STORE_BUSY, "retryable": True})
        except Exception:
            log.exception("stream failed for conversation %s", opened.conversation_id)
            metrics.turn_errors.labels(kind="stream").inc()
            yield sse(
                "error", {"code": "server_error", "message": STREAM_FAILED, "retryable": True}
            )
        finally:
            metrics.in_flight.dec()

    return StreamingResponse(
        with_keepalive(events(), deps.settings.sse_keepalive_seconds),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
