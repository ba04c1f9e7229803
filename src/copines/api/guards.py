"""What runs before any route: the Origin check and the body-size cap (on /api/*), the
body-size cap on the console's forms (/admin/*), and the visitor message rules."""

from __future__ import annotations

import json
import unicodedata
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from copines.errors import InputError

ORIGIN_REFUSED = "Ce site n'est pas autorisé à utiliser le chat de L'Agence des Copines."
BODY_TOO_LARGE = "Ton message est trop long pour être envoyé ({limit} octets au plus)."
ADMIN_BODY_TOO_LARGE = (
    '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
    "<title>Envoi trop volumineux</title></head><body><h1>Envoi trop volumineux</h1>"
    "<p>Ce formulaire accepte {limit} octets au plus : raccourcis ton envoi et réessaie.</p>"
    "</body></html>"
)
# Console routes that read their body themselves, streamed under their own (larger) limit.
ADMIN_STREAMED = frozenset({"/admin/knowledge/upload"})


def normalise_origin(origin: str) -> str:
    """scheme://host[:port], lower case, without a trailing slash or path."""
    parts = urlsplit(origin.strip())
    if not parts.scheme or not parts.netloc:
        return origin.strip().rstrip("/").lower()
    return f"{parts.scheme}://{parts.netloc}".lower()


def clean_message(text: str, max_chars: int) -> str:
    """The trimmed message, or InputError (in French) when it is empty, longer than
    `max_chars` as sent, or has control characters (tabs and line breaks are fine)."""
    message = text.replace("\u2028", "\n").replace("\u2029", "\n").strip()
    if not message:
        raise InputError("Ton message est vide : écris ta question avant d'envoyer.")
    if len(text) > max_chars:  # as sent: the limit the API's schema states
        raise InputError(
            f"Ton message fait {len(text)} caractères : {max_chars} au plus, "
            "raccourcis-le un peu s'il te plaît."
        )
    for char in message:
        if char in "\n\t\r":
            continue
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InputError(
                "Ton message contient des caractères de contrôle invisibles ; "
                "retire-les et renvoie-le."
            )
    return message


class ApiGuard:
    """Pure ASGI middleware for /api/*: refuse foreign origins (403) and big bodies (413);
    and for the console's forms (/admin/*): refuse big bodies (413, a French page) before
    any form is parsed, signed in or not (the upload route keeps its own streamed limit).

    A request without an Origin header (curl, a server) passes: Origin is what browsers send,
    and it is browsers on other sites that this check keeps out. The service's own pages are
    allowed: its configured public origin, and the address of the socket it listens on; never
    the request's Host header, which the sender writes.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_origins: list[str],
        max_body_bytes: int,
        on_refusal=None,
        public_origin: str | None = None,
        admin_max_body_bytes: int = 256 * 1024,
    ):
        self.app = app
        self.allowed = {normalise_origin(o) for o in allowed_origins}
        if public_origin:
            self.allowed.add(normalise_origin(public_origin))
        self.any_origin = "*" in allowed_origins
        self.max_body = max_body_bytes
        self.admin_max_body = admin_max_body_bytes
        self.on_refusal = on_refusal or (lambda status: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if (
            (path == "/admin" or path.startswith("/admin/"))
            and scope["method"] in ("POST", "PUT", "PATCH")
            and path.rstrip("/") not in ADMIN_STREAMED
        ):
            page = ADMIN_BODY_TOO_LARGE.format(limit=self.admin_max_body)
            await self._limited(scope, receive, send, self.admin_max_body, page, html=True)
            return
        if not path.startswith("/api/"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        if (
            origin
            and scope["method"] != "OPTIONS"
            and not self.origin_allowed(origin, scope, headers)
        ):
            await self._refuse(send, 403, ORIGIN_REFUSED)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit_text = BODY_TOO_LARGE.format(limit=self.max_body)
        await self._limited(scope, receive, send, self.max_body, limit_text)

    async def _limited(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        limit: int,
        refusal: str,
        *,
        html: bool = False,
    ) -> None:
        """Run the app on the body if it holds at most `limit` bytes, else answer 413: the
        declared Content-Length is checked first, then the bytes are counted as they arrive
        (a chunked body declares nothing)."""
        declared_text = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"content-length"),
            "0",
        )
        try:
            declared = int(declared_text or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            await self._refuse(send, 413, refusal, html=html)
            return
        # Read the (small) body now, stopping past the cap, then hand it to the app.
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await self._refuse(send, 413, refusal, html=html)
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def origin_allowed(self, origin: str, scope: Scope, headers: dict[str, str]) -> bool:
        wanted = normalise_origin(origin)
        if self.any_origin or wanted in self.allowed:
            return True
        server = scope.get("server")
        if not server or server[1] is None:
            return False
        host, port = server
        host = f"[{host}]" if ":" in host else host
        default = {"http": 80, "https": 443}.get(scope.get("scheme", "http"))
        own = f"{scope.get('scheme', 'http')}://{host}" + (f":{port}" if port != default else "")
        return wanted == own.lower()

    async def _refuse(self, send: Send, status: int, detail: str, *, html: bool = False) -> None:
        self.on_refusal(status)
        if html:
            payload, kind = detail.encode(), b"text/html; charset=utf-8"
        else:
            payload = json.dumps({"detail": detail}, ensure_ascii=False).encode()
            kind = b"application/json; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", kind),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
