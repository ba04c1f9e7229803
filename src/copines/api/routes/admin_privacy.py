"""The console's personal-data requests: find a visitor's conversations by her email, export
them as JSON, delete them (RGPD access and erasure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from copines.api.routes.admin_common import DepsDep, FormSession, PageSession, render
from copines.store.base import Conversation, Store

router = APIRouter()


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


async def export_conversation(store: Store, conversation: Conversation) -> dict[str, Any]:
    """Everything kept about one conversation, as the visitor may ask for it."""
    messages = await store.get_messages(conversation.id)
    escalations = [
        e for e in await store.list_escalations(None) if e.conversation_id == conversation.id
    ]
    feedback = await store.list_feedback(conversation.id)
    return {
        "conversation_id": conversation.id,
        "email": conversation.email,
        "expert": conversation.expert,
        "created_at": _iso(conversation.created_at),
        "last_activity": _iso(conversation.updated_at),
        "messages": [
            {
                "id": m.id,
                "role": m.role,
                "content": m.content,
                "agent": m.agent,
                "author": m.meta.get("author_name") if m.role == "team" else None,
                "sentiment": m.meta.get("sentiment"),
                "upsell": m.meta.get("upsell"),
                "sources": [s.get("filename") for s in m.sources if isinstance(s, dict)],
                "created_at": _iso(m.created_at),
            }
            for m in messages
        ],
        "escalations": [
            {
                "id": e.id,
                "status": e.status,
                "reason": e.reason,
                "brief": e.brief,
                "created_at": _iso(e.created_at),
            }
            for e in escalations
        ],
        "feedback": [
            {"message_id": f.message_id, "rating": f.rating, "comment": f.comment} for f in feedback
        ],
    }


def _download(payload: Any, name: str) -> Response:
    return Response(
        json.dumps(payload, ensure_ascii=False, indent=2),
        media_type="application/json; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


# The visitor's email travels in form bodies only, never in a URL: URLs end up in access logs,
# the browser's history and Referer headers.
@router.get("/privacy")
async def read_privacy(request: Request, deps: DepsDep, session: PageSession):
    """The search form."""
    return _privacy_page(request, deps, session, "", [])


@router.post("/privacy")
async def search_privacy(
    request: Request, deps: DepsDep, session: FormSession, email: Annotated[str, Form()] = ""
):
    """Find a visitor's conversations by the email she left."""
    email = email.strip()[:254]
    found = await deps.store.conversations_by_email(email) if email else []
    return _privacy_page(request, deps, session, email, found)


def _privacy_page(request: Request, deps: DepsDep, session, email: str, found: list):
    return render(
        request,
        "admin/privacy.html",
        session,
        section="privacy",
        email=email,
        found=found,
        retention_days=deps.settings.retention_days,
    )


@router.post("/privacy/export")
async def export_by_email(deps: DepsDep, session: FormSession, email: Annotated[str, Form()] = ""):
    """Every conversation of that email, as one JSON file."""
    found = await deps.store.conversations_by_email(email.strip()[:254])
    payload = {
        "email": email.strip(),
        "exported_at": _iso(datetime.now(UTC)),
        "conversations": [await export_conversation(deps.store, c) for c in found],
    }
    return _download(payload, "donnees-visiteuse.json")


@router.post("/privacy/delete")
async def delete_by_email(deps: DepsDep, session: FormSession, email: Annotated[str, Form()] = ""):
    """Delete every conversation of that email."""
    for conversation in await deps.store.conversations_by_email(email.strip()[:254]):
        await deps.store.delete_conversation(conversation.id)
    return RedirectResponse("/admin/privacy?msg=erased", status_code=303)


@router.get("/conversations/{conversation_id}/export")
async def export_one(deps: DepsDep, session: PageSession, conversation_id: str):
    """One conversation, as a JSON file."""
    conversation = await deps.store.get_conversation(conversation_id)
    if conversation is None:
        raise HTTPException(status_code=404, detail="conversation introuvable")
    payload = await export_conversation(deps.store, conversation)
    return _download(payload, f"conversation-{conversation_id[:8]}.json")


@router.post("/conversations/{conversation_id}/delete")
async def delete_one(deps: DepsDep, session: FormSession, conversation_id: str):
    """Delete one conversation with its messages, escalations, feedback and email."""
    if not await deps.store.delete_conversation(conversation_id):
        raise HTTPException(status_code=404, detail="conversation introuvable")
    return RedirectResponse("/admin/conversations?msg=erased", status_code=303)
