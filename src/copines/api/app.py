"""create_app(settings): the web service (public API, widget, demo page, and the admin console
when its module is present)."""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from copines.api import lifecycle
from copines.api.guards import ApiGuard
from copines.api.metrics import Metrics
from copines.api.ratelimit import ChatLimits, build_limiter
from copines.api.routes import chat, conversations, feedback, health, widget
from copines.config import Settings, get_settings
from copines.deps import Deps
from copines.errors import InputError, NotFoundError, StoreBusyError
from copines.privacy import purge_forever
from copines.providers.embeddings import Embedder

log = logging.getLogger("copines.api")

STORE_BUSY = "Le service est très sollicité en ce moment : réessaie dans quelques secondes."
SERVER_ERROR = "Oups, une erreur de notre côté. Réessaie dans un instant."
BAD_JSON = "Le corps de la requête n'est pas un JSON valide ({where})."


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One readable French sentence for the first problem of a request."""
    if not errors:
        return "Requête invalide."
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    field = ".".join(loc)
    kind = first.get("type", "")
    if kind == "json_invalid":
        position = next((p for p in first.get("loc", ()) if isinstance(p, int)), None)
        where = f"erreur vers le caractère {position}" if position is not None else "illisible"
        return BAD_JSON.format(where=where) + " Vérifie les guillemets et les virgules."
    if field == "message" and isinstance(first.get("input"), str):
        # The visitor's own message: the sentence written for her (empty, too long, hidden
        # characters), as the route would have said it.
        from copines.api.guards import clean_message
        from copines.errors import InputError

        try:
            clean_message(
                first["input"], len(first["input"]) if kind != "string_too_long" else 2000
            )
        except InputError as exc:
            return str(exc)
    if kind == "missing":
        return f"Le champ « {field} » est obligatoire."
    if kind in ("model_attributes_type", "dict_type") and not field:
        return "Le corps de la requête doit être un objet JSON."
    if kind == "string_too_long":
        limit = (first.get("ctx") or {}).get("max_length")
        return f"Le champ « {field} » est trop long ({limit} caractères au plus)."
    if kind == "literal_error":
        expected = (first.get("ctx") or {}).get("expected", "")
        return f"Le champ « {field} » doit valoir {expected}."
    if kind == "string_type":
        return f"Le champ « {field} » doit être un texte."
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        ctx = first.get("ctx") or {}
        low, high = ctx.get("ge", ctx.get("gt")), ctx.get("le", ctx.get("lt"))
        bound = f"au moins {low}" if low is not None else f"au plus {high}"
        return f"Le champ « {field} » est hors des valeurs permises ({bound})."
    if kind in ("int_type", "int_parsing"):
        return f"Le champ « {field} » doit être un nombre entier."
    return f"Le champ « {field} » n'a pas le bon format (le détail est dans « errors »)."


def add_error_handlers(app: FastAPI) -> None:
    """Every refusal is JSON `{detail}` with a French sentence (and the right status)."""

    @app.exception_handler(RequestValidationError)
    async def on_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")}
            for e in exc.errors()
        ]
        app.state.metrics.http_errors.labels(status="422").inc()
        return JSONResponse(
            {"detail": validation_message(list(exc.errors())), "errors": errors}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # A body that is not even text (FastAPI's own English 400): a 422 like bad JSON.
            app.state.metrics.http_errors.labels(status="422").inc()
            detail = BAD_JSON.format(where="illisible") + " Envoie du JSON en UTF-8."
            return JSONResponse({"detail": detail, "errors": []}, status_code=422)
        app.state.metrics.http_errors.labels(status=str(exc.status_code)).inc()
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(StoreBusyError)
    async def on_busy(_request: Request, exc: StoreBusyError) -> JSONResponse:
        log.warning("store busy: %s", exc)
        app.state.metrics.http_errors.labels(status="503").inc()
        return JSONResponse({"detail": STORE_BUSY}, status_code=503, headers={"Retry-After": "2"})

    @app.exception_handler(InputError)
    async def on_input(_request: Request, exc: InputError) -> JSONResponse:
        app.state.metrics.http_errors.labels(status="422").inc()
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(NotFoundError)
    async def on_not_found(_request: Request, exc: NotFoundError) -> JSONResponse:
        app.state.metrics.http_errors.labels(status="404").inc()
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        app.state.metrics.http_errors.labels(status="500").inc()
        return JSONResponse({"detail": SERVER_ERROR}, status_code=500)


def add_docs(app: FastAPI) -> None:
    """OpenAPI's Swagger UI at /docs, with its script and styles served by us."""
    from pathlib import Path

    import fastapi_offline
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    static = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs-static", StaticFiles(directory=static), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def read_docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="copines: API",
            swagger_js_url="/docs-static/swagger-ui-bundle.js",
            swagger_css_url="/docs-static/swagger-ui.css",
            swagger_favicon_url="/docs-static/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )


def state_limits(app: FastAPI, settings: Settings) -> None:
    """The OpenAPI schema states the limits in force (a setting, not a constant)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            message = schema["components"]["schemas"]["ChatCreate"]["properties"]["message"]
            message["maxLength"] = settings.max_message_chars
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def include_admin(app: FastAPI) -> None:
    """The console (issue 6) lives in copines.api.routes.admin when it is built."""
    try:
        module = importlib.import_module("copines.api.routes.admin")
    except ModuleNotFoundError as exc:
        if exc.name == "copines.api.routes.admin":
            return
        raise
    app.include_router(module.router)


def create_app(
    settings: Settings | None = None,
    *,
    embedder: Embedder | None = None,
    turn_runner: Callable[[Deps], Any] | None = None,
    purge_schedule: bool = True,
) -> FastAPI:
    """The web service. `embedder` lets tests share one loaded model between apps;
    `turn_runner` builds the TurnRunner from the Deps (default: copines.turn.TurnRunner);
    `purge_schedule` runs the retention purge now and every `purge_interval_hours`."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        deps = await Deps.create(settings, embedder=embedder)
        warm = getattr(deps.embedder, "warm_up", None)
        if warm is not None:
            await asyncio.to_thread(warm)
        app.state.embedder_ready = True
        limiter = build_limiter(settings)
        app.state.deps = deps
        app.state.limits = ChatLimits(settings, limiter)
        if turn_runner is None:
            from copines.turn import TurnRunner

            turns = TurnRunner(deps)
        else:
            turns = turn_runner(deps)
        app.state.turns = turns
        prepare = getattr(turns, "prepare", None)
        if prepare is not None:
            await prepare()  # routing exemplars embedded before the first visitor
        undo_signals = (
            lifecycle.install(turns, settings.shutdown_grace)
            if hasattr(turns, "begin_shutdown")
            else (lambda: None)
        )
        # What startup built lives as long as the process: out of the garbage collector's
        # sight, so that its full collections (several during a burst of visitors) do not
        # walk the app, the models and the indexes every time.
        from copines.knowledge.sources.service import SyncService

        app.state.sync = SyncService(deps)
        app.state.sync.start()
        gc.collect()
        gc.freeze()
        purging = (
            asyncio.create_task(purge_forever(deps.store, settings), name="retention-purge")
            if purge_schedule
            else None
        )
        try:
            yield
        finally:
            undo_signals()
            if purging is not None:
                purging.cancel()
            await app.state.sync.aclose()
            try:
                close = getattr(turns, "aclose", None)
                await (close() if close is not None else turns.drain())
            finally:
                await limiter.aclose()
                await deps.aclose()

    app = FastAPI(
        title="copines",
        summary="The assistant of L'Agence des Copines: Audrey, Carole and the team.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served below from local files: nothing served may come from a CDN
        redoc_url=None,
    )
    add_docs(app)
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.embedder_ready = False
    add_error_handlers(app)
    state_limits(app, settings)
    for module in (chat, conversations, feedback, health, widget):
        app.include_router(module.router)
    include_admin(app)
    app.add_middleware(
        ApiGuard,
        allowed_origins=settings.allowed_origins,
        max_body_bytes=settings.max_body_bytes,
        admin_max_body_bytes=settings.admin_max_body_bytes,
        public_origin=settings.public_origin,
        on_refusal=lambda status: app.state.metrics.http_errors.labels(status=str(status)).inc(),
    )
    # Outermost: answers preflights and adds CORS headers, refusals included.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Content-Type", "X-Conversation-Token"],
        expose_headers=["Retry-After"],
        max_age=600,
    )
    return app


def create_served_app() -> FastAPI:
    """The app as `copines serve` runs it (in each worker process): logging set up first, as
    JSON lines on stdout at the `log_level` setting."""
    from copines.logs import setup_logging

    settings = get_settings()
    setup_logging(settings=settings)
    return create_app(settings)
