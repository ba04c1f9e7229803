"""Console page of the knowledge sources: their last sync, counts and errors; "sync now"."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from copines.api.routes.admin_common import DepsDep, FormSession, PageSession, render
from copines.errors import ConfigError
from copines.knowledge.sources.service import SyncService
from copines.knowledge.sources.sync import Syncer

router = APIRouter()

KIND_LABELS = {
    "page": "page web",
    "sitemap": "plan du site",
    "crawl": "exploration du site",
    "drive": "dossier Google Drive",
    "notion_database": "base Notion",
    "notion_page": "page Notion",
    "notion_search": "pages Notion partagées",
}
STATUS_LABELS = {
    "never": "jamais synchronisée",
    "ok": "à jour",
    "partial": "à jour, avec des erreurs",
    "failed": "échec : rien n'a été supprimé",
}


def sync_service(request: Request) -> SyncService:
    """The process's sync service (the app's lifespan makes it; a bare router, here)."""
    service = getattr(request.app.state, "sync", None)
    if service is None:
        service = request.app.state.sync = SyncService(request.app.state.deps)
    return service


@router.get("/sources")
async def read_sources(request: Request, deps: DepsDep, session: PageSession):
    """The sources with their last sync, counts and errors."""
    error = ""
    try:
        await Syncer(deps).register_file_sources()
    except ConfigError as exc:
        error = str(exc)
    service = sync_service(request)
    return render(
        request,
        "admin/sources.html",
        session,
        section="sources",
        sources=await deps.store.list_sources(),
        kinds=KIND_LABELS,
        statuses=STATUS_LABELS,
        running=service.running,
        interval=deps.settings.sync_interval_minutes,
        sources_file=str(deps.settings.resolved_sources_file),
        error=error or service.last_error,
    )


@router.post("/sources/sync")
async def sync_sources(request: Request, session: FormSession):
    """Start a sync of every source in the background."""
    started = sync_service(request).trigger()
    return RedirectResponse(
        f"/admin/sources?msg={'sync-started' if started else 'sync-running'}", status_code=303
    )
