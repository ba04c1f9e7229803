"""Console pages for the knowledge bases: documents, upload, owner, delete, search, gaps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse
from starlette.datastructures import UploadFile as StarletteUpload

from copines.admin.auth import csrf_ok
from copines.admin.gaps import LOW_SCORE, SAME_TOPIC, knowledge_gaps, score_escalations
from copines.admin.turns import read_turns
from copines.api.routes.admin_common import (
    DepsDep,
    FormSession,
    PageSession,
    day_bounds,
    period,
    read_console_session,
    read_form_limited,
    render,
)
from copines.errors import ConfigError, CopinesError, NotFoundError
from copines.experts import owner_choices
from copines.knowledge.ingest import IngestResult
from copines.knowledge.loaders import SUPPORTED

router = APIRouter()
FORM_OVERHEAD = 64 * 1024  # the form's other fields and its multipart boundaries


async def _knowledge_page(request: Request, deps, session, **context):
    documents = await deps.store.list_documents()
    owners = owner_choices(deps.experts)
    by_owner = {o: [d for d in documents if d.owner == o] for o in owners}
    others = [d for d in documents if d.owner not in owners]
    if others:
        by_owner["?"] = others
    return render(
        request,
        "admin/knowledge.html",
        session,
        section="knowledge",
        by_owner=by_owner,
        owners=owners,
        total_chunks=sum(d.chunks for d in documents),
        accept=",".join(sorted(SUPPORTED)),
        **context,
    )


@router.get("/knowledge")
async def read_knowledge(
    request: Request, deps: DepsDep, session: PageSession, expert: str = "", q: str = ""
):
    """Documents per owner, the upload form, and the search an expert would run."""
    search = None
    error = ""
    expert = expert if expert in deps.experts else next(iter(deps.experts))
    if q.strip():
        try:
            search = await deps.retriever.search(expert, q.strip()[:2000])
        except CopinesError as exc:
            error = str(exc)
    return await _knowledge_page(
        request, deps, session, search=search, search_expert=expert, q=q, error=error
    )


@router.post("/knowledge/upload")
async def create_documents(request: Request, deps: DepsDep):
    """Ingest uploaded files into a knowledge base (owner auto or chosen).

    Nothing of the body is read before the session is checked; then it is read under a
    streamed count (and refused at once on a larger Content-Length), and each file is parsed
    off the event loop, under limits (copines.knowledge.parsing).
    """
    session, token = await read_console_session(request)
    if session is None or token is None:
        raise HTTPException(status_code=303, headers={"Location": "/admin/login"})
    settings = deps.settings
    limit = settings.upload_max_bytes + FORM_OVERHEAD
    form = await read_form_limited(request, limit, settings.upload_max_files * 5)
    given = form.get("csrf_token")
    if not isinstance(given, str) or not csrf_ok(session, token, given):
        raise HTTPException(status_code=403, detail="jeton CSRF manquant ou invalide")
    owner = form.get("owner") or "auto"
    if not isinstance(owner, str) or (owner != "auto" and owner not in owner_choices(deps.experts)):
        raise HTTPException(status_code=422, detail="propriétaire inconnu")
    files = [f for f in form.getlist("files") if isinstance(f, StarletteUpload)]
    ingester = deps.ingester()
    results: list[IngestResult] = []
    error = ""
    for number, upload in enumerate(files, start=1):
        name = Path(upload.filename or "").name
        if not name:
            continue
        if number > settings.upload_max_files:
            results.append(
                IngestResult(
                    name,
                    "skipped",
                    detail=f"non lu : {settings.upload_max_files} fichiers au plus par envoi, "
                    "renvoie les suivants à part",
                )
            )
            continue
        if Path(name).suffix.lower() not in SUPPORTED:
            results.append(
                IngestResult(name, "skipped", detail="type de fichier non pris en charge")
            )
            continue
        data = await upload.read()
        try:
            results.append(await ingester.ingest_file(Path(name), data, owner))
        except ConfigError as exc:
            error = str(exc)
            break
        except CopinesError as exc:
            results.append(IngestResult(name, "skipped", detail=str(exc)))
        finally:
            await upload.close()
    return await _knowledge_page(
        request,
        deps,
        session,
        results=results,
        error=error,
        search=None,
        search_expert=next(iter(deps.experts)),
        q="",
    )


@router.post("/knowledge/owner")
async def update_owner(
    deps: DepsDep,
    session: FormSession,
    filename: Annotated[str, Form()],
    owner: Annotated[str, Form()],
):
    """Give a document to another expert, or to the shared base."""
    if owner not in owner_choices(deps.experts):
        raise HTTPException(status_code=422, detail="propriétaire inconnu")
    try:
        await deps.store.set_owner(filename, owner, "chosen in the console")
    except NotFoundError as exc:
        raise HTTPException(status_code=404, detail="document introuvable") from exc
    return RedirectResponse("/admin/knowledge?msg=owner", status_code=303)


@router.post("/knowledge/delete")
async def delete_document(deps: DepsDep, session: FormSession, filename: Annotated[str, Form()]):
    """Delete a document and its passages."""
    try:
        await deps.store.delete_document(filename)
    except NotFoundError as exc:
        raise HTTPException(status_code=404, detail="document introuvable") from exc
    return RedirectResponse("/admin/knowledge?msg=deleted", status_code=303)


@router.get("/gaps")
async def read_gaps(
    request: Request,
    deps: DepsDep,
    session: PageSession,
    since: str = "",
    until: str = "",
    seuil: float = LOW_SCORE,
):
    """Per expert, the questions her knowledge answered badly, grouped by topic."""
    start, end = period(since, until)
    seuil = seuil if 0.0 <= seuil <= 1.0 else LOW_SCORE  # NaN and out-of-range: the default
    lo, hi = day_bounds(start, end)
    messages = await deps.store.messages_between(lo, hi)
    turns = read_turns(
        messages, await deps.store.list_feedback(), await deps.store.list_escalations(None)
    )
    await score_escalations(turns, deps.retriever)
    gaps = await knowledge_gaps(turns, deps.embedder, low_score=seuil, same_topic=SAME_TOPIC)
    return render(
        request,
        "admin/gaps.html",
        session,
        section="gaps",
        gaps=gaps,
        since=start.isoformat(),
        until=end.isoformat(),
        seuil=seuil,
    )
