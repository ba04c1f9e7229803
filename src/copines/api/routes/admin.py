"""The agency's console at /admin: sign-in, escalation inbox, replies to visitors.

Conversations and analytics live in admin_insights.py, knowledge bases in admin_knowledge.py.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse

from copines.admin.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    LoginThrottle,
    admin_token,
    new_session,
    tokens_match,
)
from copines.admin.markers import markers_of
from copines.admin.turns import read_turns
from copines.api.routes import admin_insights, admin_knowledge, admin_privacy, admin_sources
from copines.api.routes.admin_common import (
    AUTHOR_COOKIE,
    MAX_AUTHOR_CHARS,
    ApiSession,
    DepsDep,
    FormSession,
    PageSession,
    author_name,
    render,
    valid_id,
)
from copines.errors import CopinesError, InputError, NotFoundError
from copines.mail import Mailer
from copines.store.base import Escalation, Message

router = APIRouter(prefix="/admin", include_in_schema=False)
STATIC = Path(__file__).resolve().parent.parent / "static"
MAX_REPLY_CHARS = 4000


def _safe_next(target: str | None) -> str:
    """Only console paths, never another site."""
    if target and target.startswith("/admin") and not target.startswith("//"):
        return target
    return "/admin/escalations"


def _throttle(request: Request) -> LoginThrottle:
    """The process's sign-in throttle (one per app)."""
    state = request.app.state
    throttle = getattr(state, "login_throttle", None)
    if throttle is None:
        settings = request.app.state.deps.settings
        throttle = LoginThrottle(settings.login_free_attempts, settings.login_max_delay)
        state.login_throttle = throttle
    return throttle


def _cookie_secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/static/admin.css")
async def read_stylesheet() -> FileResponse:
    """The console's stylesheet."""
    return FileResponse(STATIC / "admin.css", media_type="text/css")


@router.get("/login")
async def read_login(request: Request, deps: DepsDep, next: str = "", error: str = ""):
    """The sign-in form."""
    nonce = secrets.token_urlsafe(24)
    response = render(
        request,
        "admin/login.html",
        None,
        login_csrf=nonce,
        next=_safe_next(next),
        error=error,
        enabled=admin_token(deps.settings) is not None,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        nonce,
        max_age=900,
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request),
    )
    return response


@router.post("/login")
async def create_session(
    request: Request,
    deps: DepsDep,
    token: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
):
    """Check the admin token and open a session signed with the person's display name."""
    expected = admin_token(deps.settings)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not csrf_token or not tokens_match(csrf_token, cookie):
        raise HTTPException(status_code=403, detail="jeton CSRF manquant ou invalide")
    throttle = _throttle(request)
    ip = request.client.host if request.client else "?"
    wait = throttle.wait_for(ip)
    if wait > 0:
        raise HTTPException(
            status_code=429,
            detail=f"Trop d'essais de connexion : attends {math.ceil(wait)} s avant de réessayer.",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    if expected is None or not tokens_match(token, expected):
        throttle.failed(ip)
        await asyncio.sleep(0.2)
        target = quote(_safe_next(next), safe="")
        return RedirectResponse(f"/admin/login?error=1&next={target}", status_code=303)
    throttle.succeeded(ip)
    _, value = new_session(expected)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request),
    )
    response.set_cookie(
        AUTHOR_COOKIE,
        " ".join(name.split())[:MAX_AUTHOR_CHARS],
        max_age=SESSION_SECONDS,
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/admin")
    return response


@router.post("/logout")
async def delete_session(request: Request, session: FormSession, deps: DepsDep):
    """Close the session: its cookie is refused from now on, wherever it was copied."""
    await deps.store.revoke_session(session.nonce, session.expires)
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/admin", httponly=True, samesite="strict")
    return response


@router.get("")
@router.get("/")
async def read_home(session: PageSession):
    """The console opens on the inbox."""
    return RedirectResponse("/admin/escalations", status_code=303)


# Escalations ------------------------------------------------------------------------------
def _question_of(escalation: Escalation, messages: list[Message]) -> Message | None:
    """The visitor's message that escalated: the last one at or before the escalation."""
    users = [m for m in messages if m.role == "user"]
    if escalation.message_id is not None:
        before = [m for m in users if (m.id or 0) <= escalation.message_id]
        if before:
            return before[-1]
    if escalation.created_at is not None:
        before = [m for m in users if m.created_at and m.created_at <= escalation.created_at]
        if before:
            return before[-1]
    return users[-1] if users else None


def _router_scores(escalation: Escalation, messages: list[Message]) -> dict[str, float]:
    """How close the router found each expert (kept in the hand-off answer's metadata)."""
    for message in messages:
        if message.id == escalation.message_id and isinstance(message.meta.get("scores"), dict):
            return {k: float(v) for k, v in message.meta["scores"].items()}
    scores = escalation.meta.get("scores")
    return {k: float(v) for k, v in scores.items()} if isinstance(scores, dict) else {}


async def _briefs(deps, escalations: list[Escalation]) -> list[dict]:
    briefs = []
    for escalation in escalations:
        messages = await deps.store.get_messages(escalation.conversation_id)
        question = _question_of(escalation, messages)
        answer = next((m for m in messages if m.id == escalation.message_id), None)
        handoffs = escalation.meta.get("handoffs", 1)
        briefs.append(
            {
                "escalation": escalation,
                "question": question,
                "markers": markers_of(
                    question, answer, handoffs if isinstance(handoffs, int) else 1
                ),
                "replies": sum(m.role == "team" for m in messages),
                "router_scores": _router_scores(escalation, messages),
            }
        )
    return briefs


async def _searches(deps, question: Message | None) -> dict:
    """What each expert's base holds for the question, searched now (hand-offs keep none)."""
    if question is None:
        return {}
    out = {}
    for expert in deps.experts:
        try:
            out[expert] = await deps.retriever.search(expert, question.content[:2000])
        except CopinesError:
            continue
    return out


@router.get("/escalations")
async def read_escalations(
    request: Request, deps: DepsDep, session: PageSession, status: str = "open"
):
    """The inbox: escalations newest first, open ones by default."""
    wanted = None if status == "all" else ("handled" if status == "handled" else "open")
    escalations = await deps.store.list_escalations(wanted)
    open_count = len(await deps.store.list_escalations("open"))
    return render(
        request,
        "admin/escalations.html",
        session,
        section="escalations",
        status=status if wanted or status == "all" else "open",
        briefs=await _briefs(deps, escalations[:200]),
        open_count=open_count,
    )


@router.get("/escalations/{escalation_id}")
async def read_escalation(
    request: Request, deps: DepsDep, session: PageSession, escalation_id: int
):
    """One escalation: its brief, the transcript and the reply box."""
    if not valid_id(escalation_id):
        raise HTTPException(status_code=404, detail="escalade introuvable")
    escalation = await deps.store.get_escalation(escalation_id)
    if escalation is None:
        raise HTTPException(status_code=404, detail="escalade introuvable")
    messages = await deps.store.get_messages(escalation.conversation_id)
    feedback = await deps.store.list_feedback(escalation.conversation_id)
    turns = {t.message.id: t for t in read_turns(messages, feedback, [escalation])}
    question = _question_of(escalation, messages)
    conversation = await deps.store.get_conversation(escalation.conversation_id)
    return render(
        request,
        "admin/escalation.html",
        session,
        section="escalations",
        escalation=escalation,
        email=conversation.email if conversation else None,
        question=question,
        messages=messages,
        turns=turns,
        router_scores=_router_scores(escalation, messages),
        searches=await _searches(deps, question),
    )


@router.post("/escalations/{escalation_id}/status")
async def update_escalation_status(
    deps: DepsDep,
    session: FormSession,
    escalation_id: int,
    status: Annotated[str, Form()],
):
    """Mark an escalation handled, or reopen it."""
    if status not in ("open", "handled"):
        raise HTTPException(status_code=422, detail="statut inconnu")
    if not valid_id(escalation_id):
        raise HTTPException(status_code=404, detail="escalade introuvable")
    try:
        await deps.store.set_escalation_status(escalation_id, status)
    except NotFoundError as exc:
        raise HTTPException(status_code=404, detail="escalade introuvable") from exc
    except InputError:
        return RedirectResponse(
            f"/admin/escalations/{escalation_id}?msg=open-elsewhere", status_code=303
        )
    msg = "handled" if status == "handled" else "reopened"
    return RedirectResponse(f"/admin/escalations/{escalation_id}?msg={msg}", status_code=303)


@router.post("/conversations/{conversation_id}/reply")
async def create_team_reply(
    request: Request,
    deps: DepsDep,
    session: FormSession,
    conversation_id: str,
    content: Annotated[str, Form()] = "",
    escalation_id: Annotated[int | None, Form()] = None,
    handled: Annotated[str, Form()] = "",
):
    """Answer the visitor, signed with your display name; the widget shows it, and it goes by
    email too when she left an address."""
    if escalation_id is not None and not valid_id(escalation_id):
        raise HTTPException(status_code=404, detail="escalade introuvable")
    conversation = await deps.store.get_conversation(conversation_id)
    if conversation is None:
        raise HTTPException(status_code=404, detail="conversation introuvable")
    back = (
        f"/admin/escalations/{escalation_id}"
        if escalation_id is not None
        else f"/admin/conversations/{conversation_id}"
    )
    text = content.strip()[:MAX_REPLY_CHARS]
    if not text:
        return RedirectResponse(f"{back}?msg=empty", status_code=303)
    author = author_name(request)
    meta: dict = {"author": "team", "author_name": author}
    if escalation_id is not None:
        escalation = await deps.store.get_escalation(escalation_id)
        if escalation is None or escalation.conversation_id != conversation_id:
            raise HTTPException(status_code=404, detail="escalade introuvable")
        meta["escalation_id"] = escalation_id
    message_id = await deps.store.add_message(
        Message(conversation_id=conversation_id, role="team", content=text, meta=meta)
    )
    if escalation_id is not None and handled:
        await deps.store.set_escalation_status(escalation_id, "handled")
    msg = "replied"
    if conversation.email:
        mailer = Mailer(deps.settings)
        sent = mailer.enabled and await mailer.send_reply(
            conversation.email, conversation_id, author, text
        )
        msg = "replied-email" if sent else "replied-no-email"
    # Back at the new message, not at the top of the page.
    return RedirectResponse(f"{back}?msg={msg}#m{message_id}", status_code=303)


# JSON API ---------------------------------------------------------------------------------
@router.get("/api/escalations")
async def list_escalations_json(deps: DepsDep, session: ApiSession, status: str = "open"):
    """Escalations as JSON, newest first."""
    escalations = await deps.store.list_escalations(None if status == "all" else status)
    return [
        {
            "id": e.id,
            "conversation_id": e.conversation_id,
            "status": e.status,
            "reason": e.reason,
            "primary_need": e.primary_need,
            "brief": e.brief,
            "closest_expert": e.closest_expert,
            "meta": e.meta,
            "created_at": e.created_at.isoformat() if e.created_at else None,
        }
        for e in escalations
    ]


router.include_router(admin_insights.router)
router.include_router(admin_knowledge.router)
router.include_router(admin_privacy.router)
router.include_router(admin_sources.router)
