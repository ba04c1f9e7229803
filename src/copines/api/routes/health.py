"""/healthz (process up), /readyz (store and embedder ready), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from copines.api.deps import DepsDep, MetricsDep
from copines.api.schemas import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthPublic)
async def read_health() -> HealthPublic:
    """The process is up."""
    return HealthPublic(status="ok")


@router.get("/readyz", response_model=HealthPublic, responses={503: {"model": HealthPublic}})
async def read_ready(request: Request, deps: DepsDep) -> Response:
    """Ready to answer: the store replies and the embedder is loaded."""
    checks = {
        "store": await deps.store.ping(),
        "embedder": bool(getattr(request.app.state, "embedder_ready", False)),
    }
    limiter = request.app.state.limits.limiter
    if hasattr(limiter, "ping"):
        checks["redis"] = await limiter.ping()
    ready = checks["store"] and checks["embedder"]
    body = HealthPublic(status="ready" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def read_metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics of this worker."""
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
