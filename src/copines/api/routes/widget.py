"""GET /widget.js (the embeddable widget, its CSS and the experts inlined) and GET / (demo page)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from copines.api.routes.conversations import ASSISTANT_COLOR, initials_of
from copines.api.schemas import ExpertPublic
from copines.config import Settings
from copines.experts import Expert

router = APIRouter(tags=["widget"])

WIDGET_DIR = Path(__file__).resolve().parent.parent.parent / "widget"
FAVICON = Path(__file__).resolve().parent.parent / "static" / "favicon.svg"
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))


def suggestion_for(expert: Expert) -> str:
    """A quick-start question for the expert: one of her routing exemplars, short and asked."""
    for exemplar in expert.exemplars:
        if exemplar.endswith("?") and 25 <= len(exemplar) <= 90 and exemplar[0].isupper():
            return exemplar
    return expert.exemplars[0]


def widget_config(settings: Settings) -> dict[str, Any]:
    """What the widget needs to know of the service's settings."""
    return {
        "assistant": {
            "name": settings.assistant_name,
            "initials": initials_of(settings.assistant_name),
            "color": ASSISTANT_COLOR,
        },
        "privacyUrl": settings.privacy_url,
        "retentionMonths": max(1, round(settings.retention_days / 30.4)),
        "maxChars": settings.max_message_chars,
        "email": bool(settings.smtp_url and settings.smtp_url.get_secret_value()),
    }


def build_widget(experts: dict[str, Expert], settings: Settings) -> str:
    """widget.js with the CSS, the experts' public identity and the settings it needs inlined
    (one request to embed)."""
    config = widget_config(settings)
    script = (WIDGET_DIR / "widget.js").read_text(encoding="utf-8")
    css = (WIDGET_DIR / "widget.css").read_text(encoding="utf-8")
    public = [
        {
            **ExpertPublic.model_validate(e.model_dump()).model_dump(),
            "suggestion": suggestion_for(e),
        }
        for e in experts.values()
    ]
    # json.dumps of a str cannot close a <script>: the file is served as JavaScript anyway.
    return (
        script.replace('"__COPINES_CSS__"', json.dumps(css))
        .replace('"__COPINES_EXPERTS__"', json.dumps(public, ensure_ascii=False))
        .replace('"__COPINES_CONFIG__"', json.dumps(config, ensure_ascii=False))
    )


@router.get("/widget.js", response_class=Response)
async def read_widget(request: Request) -> Response:
    """The chat widget: add `<script src=".../widget.js" defer></script>` to any allowed page."""
    state = request.app.state
    if getattr(state, "widget_js", None) is None:
        state.widget_js = build_widget(state.deps.experts, state.deps.settings)
        state.widget_etag = '"' + hashlib.sha256(state.widget_js.encode()).hexdigest()[:16] + '"'
    if request.headers.get("if-none-match") == state.widget_etag:
        return Response(status_code=304, headers={"ETag": state.widget_etag})
    return Response(
        state.widget_js,
        media_type="application/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300", "ETag": state.widget_etag},
    )


@router.get("/favicon.ico", include_in_schema=False)
async def read_favicon() -> Response:
    """The agency's icon (an SVG: every current browser takes it at this address too)."""
    return Response(
        FAVICON.read_bytes(),
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def read_demo_page(request: Request) -> HTMLResponse:
    """A simple page of the agency with the widget embedded."""
    return templates.TemplateResponse(
        request, "demo.html", {"experts": list(request.app.state.deps.experts.values())}
    )
