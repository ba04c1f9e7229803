"""What every console route shares: templates, the session dependencies, CSRF, formatting."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates

from copines.admin.analytics import step_label
from copines.admin.auth import SESSION_COOKIE, Session, admin_token, csrf_ok, read_session
from copines.admin.turns import CONSOLE_TZ
from copines.deps import Deps
from copines.experts import ESCALATE, SHARED
from copines.routing.decision import ASSISTANT

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))

# Console pages run no script, load nothing from elsewhere and may not be framed.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
OWNER_LABELS = {
    SHARED: "Commun",
    ESCALATE: "Équipe (escalade)",
    ASSISTANT: "Assistante (politesse)",
    "inconnu": "Inconnu",
}
NEUTRAL = "#6b6375"


def get_deps(request: Request) -> Deps:
    return request.app.state.deps


DepsDep = Annotated[Deps, Depends(get_deps)]


async def _session(request: Request) -> tuple[Session | None, str | None]:
    """The session the cookie proves, unless it was closed by signing out (a copied cookie
    stops working everywhere at that moment, not at its expiry)."""
    deps = get_deps(request)
    token = admin_token(deps.settings)
    session = read_session(token, request.cookies.get(SESSION_COOKIE))
    if session is not None and await deps.store.session_revoked(session.nonce):
        session = None
    return session, token


async def read_console_session(request: Request) -> tuple[Session | None, str | None]:
    """The console session proved by the cookie alone (no body read): (session, token)."""
    return await _session(request)


UPLOAD_TOO_LARGE = (
    "Envoi trop gros : {limit} au plus en une fois. Envoie les fichiers en plusieurs fois."
)


async def read_form_limited(request: Request, limit: int, max_files: int):
    """The multipart form, refused with 413 when the Content-Length says more than `limit`
    bytes, or as soon as the bytes received pass it (counted while they stream in)."""
    text = UPLOAD_TOO_LARGE.format(limit=f"{limit / 1024 / 1024:.0f} Mo")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            too_big = False
        if too_big:
            raise HTTPException(status_code=413, detail=text)
    received = 0
    receive = request.receive

    async def counted() -> dict:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(status_code=413, detail=text)
        return message

    limited = Request(request.scope, counted)
    return await limited.form(max_files=max_files, max_fields=20)


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/admin/login?next=" + quote(target, safe="")


async def page_session(request: Request) -> Session:
    """The console session of a page request; without one, off to the login form."""
    session, _ = await _session(request)
    if session is None:
        raise HTTPException(status_code=303, headers={"Location": login_url(request)})
    return session


async def api_session(request: Request) -> Session:
    """The console session of an API request; without one, 401."""
    session, _ = await _session(request)
    if session is None:
        raise HTTPException(status_code=401, detail="admin session required; sign in at /admin")
    return session


async def form_session(request: Request) -> Session:
    """A signed-in form post carrying this session's CSRF token (403 otherwise)."""
    session, token = await _session(request)
    if session is None or token is None:
        raise HTTPException(status_code=303, headers={"Location": "/admin/login"})
    form = await request.form()
    given = form.get("csrf_token")
    if not isinstance(given, str) or not csrf_ok(session, token, given):
        raise HTTPException(status_code=403, detail="jeton CSRF manquant ou invalide")
    return session


PageSession = Annotated[Session, Depends(page_session)]
ApiSession = Annotated[Session, Depends(api_session)]
FormSession = Annotated[Session, Depends(form_session)]


AUTHOR_COOKIE = "copines_admin_name"
MAX_AUTHOR_CHARS = 60


def author_name(request: Request) -> str:
    """The display name given at sign-in (signs the team's replies to visitors)."""
    name = " ".join(request.cookies.get(AUTHOR_COOKIE, "").split())[:MAX_AUTHOR_CHARS]
    return name or "L'équipe"


def render(request: Request, template: str, session: Session | None, **context: Any):
    """A console page, with what the layout needs (experts, CSRF token, section)."""
    deps = get_deps(request)
    token = admin_token(deps.settings)
    context.setdefault("notice", NOTICES.get(request.query_params.get("msg", ""), ""))
    if session is not None:
        context.setdefault("author_name", author_name(request))
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "experts": deps.experts,
            "csrf": session.csrf_token(token) if session and token else "",
            "owner_name": lambda o: owner_name(deps, o),
            "owner_color": lambda o: owner_color(deps, o),
            **context,
        },
        headers=PAGE_HEADERS,
    )


def owner_name(deps: Deps, owner: str | None) -> str:
    if owner is None:
        return "—"
    expert = deps.experts.get(owner)
    return expert.name if expert else OWNER_LABELS.get(owner, owner)


def owner_color(deps: Deps, owner: str | None) -> str:
    expert = deps.experts.get(owner or "")
    return expert.color if expert else NEUTRAL


NOTICES = {
    "replied": "Réponse envoyée : la visiteuse la voit dans le widget (elle n'a pas laissé "
    "d'email).",
    "replied-email": "Réponse envoyée : la visiteuse la voit dans le widget et la reçoit par "
    "email, avec un lien pour reprendre la conversation.",
    "replied-no-email": "Réponse enregistrée dans le widget, mais l'email n'a pas pu partir : "
    "vérifiez COPINES_SMTP_URL.",
    "open-elsewhere": "Cette conversation a déjà une escalade ouverte : traitez celle-là.",
    "erased": "Conversation supprimée avec ses messages, escalades, avis et email.",
    "handled": "Escalade marquée comme traitée.",
    "reopened": "Escalade rouverte.",
    "owner": "Propriétaire mis à jour.",
    "deleted": "Document supprimé.",
    "empty": "Message vide : rien n'a été envoyé.",
    "sync-started": "Synchronisation lancée : recharge la page dans un moment pour voir le bilan.",
    "sync-running": "Une synchronisation est déjà en cours.",
}


# The days a console filter may name; a date outside is brought to the nearest bound (the
# page shows the period used), so that no day arithmetic or time zone shift overflows.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2199, 12, 31)
# The largest id accepted: what JSON numbers (and the widget's JavaScript) hold exactly; far
# below what SQLite and Postgres (bigint) store, so no lookup overflows.
MAX_ID = 2**53 - 1


def parse_day(value: str | None) -> date | None:
    try:
        day = date.fromisoformat(value) if value else None
    except ValueError:
        return None
    if day is None:
        return None
    return min(max(day, FIRST_DAY), LAST_DAY)


def valid_id(value: int) -> bool:
    """True when `value` can be a stored row's id (a larger number cannot be looked up)."""
    return 1 <= value <= MAX_ID


def period(since: str | None, until: str | None, default_days: int = 30) -> tuple[date, date]:
    """The [start, end] days of a filter (the agency's days), the last `default_days` by default."""
    end = parse_day(until) or datetime.now(CONSOLE_TZ).date()
    start = parse_day(since) or end - timedelta(days=default_days - 1)
    if start > end:
        start, end = end, start
    return start, end


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """The datetimes covering whole days start..end, in the agency's time zone."""
    lo = datetime(start.year, start.month, start.day, tzinfo=CONSOLE_TZ)
    hi = datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=CONSOLE_TZ)
    return lo, hi


def fmt_dt(value: datetime | None) -> str:
    return value.astimezone(CONSOLE_TZ).strftime("%d/%m/%Y %H:%M") if value else "—"


def fmt_money(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4f} $" if value < 1 else f"{value:.2f} $"


def fmt_pct(value: float) -> str:
    return f"{value * 100:.0f} %"


def plural(n: Any, singular: str, plural_form: str | None = None) -> str:
    """`n` with the French form of the word: « 0 tour », « 1 tour », « 2 tours »."""
    try:
        many = abs(float(n)) >= 2
    except (TypeError, ValueError):
        many = True
    return f"{n} {(plural_form or singular + 's') if many else singular}"


TEMPLATES.env.filters["dt"] = fmt_dt
TEMPLATES.env.filters["plural"] = plural
TEMPLATES.env.filters["money"] = fmt_money
TEMPLATES.env.filters["pct"] = fmt_pct


def fmt_value(value: Any) -> str:
    """Any stored metadata value, readable: floats to 3 decimals, lists joined."""
    if isinstance(value, bool):
        return "oui" if value else "non"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list | tuple):
        return ", ".join(fmt_value(v) for v in value) or "—"
    if isinstance(value, dict):
        return ", ".join(f"{k} : {fmt_value(v)}" for k, v in value.items()) or "—"
    return "—" if value is None or value == "" else str(value)


TEMPLATES.env.filters["val"] = fmt_value

KEY_LABELS = {
    "router": "routeur",
    "confidence": "confiance",
    "rule": "règle",
    "scores": "scores du routeur",
    "primary_need": "besoin principal",
    "secondary_needs": "besoins secondaires",
    "reasoning": "raisonnement",
    "upsell_reason": "raison de l'upsell",
    "loop": "boucle",
    "loop_similarity": "similarité (boucle)",
    "fell_back": "modèle de secours",
    "error": "erreur",
    "switched_from": "changée depuis",
    "kept_previous": "experte gardée",
    "orchestrator": "orchestrateur",
    "fallback_reason": "raison du repli",
    "retrieval": "recherche",
    "best_score": "meilleur score",
    "escalation_id": "escalade",
    "author": "auteur",
}


def key_label(key: Any) -> str:
    return KEY_LABELS.get(str(key), str(key).replace("_", " "))


def has_value(value: Any) -> bool:
    return value not in (None, "", [], {})


TEMPLATES.env.filters["key"] = key_label
TEMPLATES.env.filters["step"] = step_label
TEMPLATES.env.tests["present"] = has_value


SENTIMENT_LABELS = {
    "positive": "positif",
    "neutral": "neutre",
    "negative": "négatif",
    "frustrated": "frustré",
    "confused": "perdue",
    "urgent": "urgent",
    "inconnu": "inconnu",
}


def sentiment_label(value: str | None) -> str:
    return SENTIMENT_LABELS.get(value, value) if value else "—"


TEMPLATES.env.filters["sentiment"] = sentiment_label
