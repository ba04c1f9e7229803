"""What routes receive: the app's parts as `Annotated` aliases."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Header, Request

from copines.api.metrics import Metrics
from copines.api.ratelimit import ChatLimits
from copines.config import Settings
from copines.deps import Deps
from copines.privacy import hash_ip

if TYPE_CHECKING:
    from copines.turn import TurnRunner


async def get_deps(request: Request) -> Deps:
    return request.app.state.deps


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_turns(request: Request) -> TurnRunner:
    return request.app.state.turns


async def get_limits(request: Request) -> ChatLimits:
    return request.app.state.limits


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def _caller(request: Request, settings: Settings) -> str:
    """Who called: the socket peer, or the last X-Forwarded-For hop when the service sits
    behind a proxy we trust (the last hop is the one that proxy wrote)."""
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1]
    return request.client.host if request.client else "unknown"


def _within(address: str, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in networks)


def visitor_address(request: Request, settings: Settings) -> str:
    """The visitor's address. A call from one of the n8n instances in front of the API
    (COPINES_N8N_ADDRESSES) carries it in X-Copines-Visitor-IP; the header is ignored from
    anyone else, so a visitor cannot choose her own rate-limit key."""
    caller = _caller(request, settings)
    if settings.n8n_addresses and _within(caller, settings.n8n_addresses):
        forwarded = request.headers.get("x-copines-visitor-ip", "").strip()
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            pass
    return caller


async def client_ip(request: Request) -> str:
    """The visitor's address as it may be kept (rate-limit keys): a keyed hash, never in clear."""
    settings: Settings = request.app.state.settings
    return hash_ip(request.app.state.deps.keys.ip, visitor_address(request, settings))


DepsDep = Annotated[Deps, Depends(get_deps)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TurnsDep = Annotated[Any, Depends(get_turns)]  # a copines.turn.TurnRunner
LimitsDep = Annotated[ChatLimits, Depends(get_limits)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ClientIP = Annotated[str, Depends(client_ip)]
TokenHeader = Annotated[
    str | None,
    Header(
        alias="X-Conversation-Token",
        description="The conversation's token, returned when the conversation was created.",
    ),
]
